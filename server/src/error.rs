//! The API's error shape: `{"error": {"code", "message"}}` with a stable
//! snake_case code and the right status, per SPEC section 3.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracevault_vault::lease::LeaseError;
use tracevault_vault::log::OpenError;
use tracevault_vault::{AppendError, VaultError};

/// An API error: status, stable code, human message.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds for `Retry-After` (429 and 503 only).
    pub retry_after_s: u64,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: 1,
        }
    }
    /// The same error with another `Retry-After`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_s = secs.max(1);
        self
    }
    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 413.
    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }
    /// 404.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    /// 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, "{}", self.message);
        }
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after_s));
        }
        resp.extensions_mut()
            .insert(crate::metrics::ErrorCode(self.code));
        resp
    }
}

/// Most distinct codes [`intern_code`] keeps.
const MAX_INTERNED: usize = 512;

/// The `&'static` code for `code`, an error code another node of the
/// cluster answered with (the same binary: a small, fixed set), so that
/// its refusal reaches the client unchanged. Codes are interned once each;
/// past [`MAX_INTERNED`] distinct codes (or a code that is not snake_case
/// of at most 64 bytes) the answer is `holder_refused`.
pub fn intern_code(code: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static CODES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let valid = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return "holder_refused";
    }
    let Ok(mut set) = CODES.get_or_init(Mutex::default).lock() else {
        return "holder_refused";
    };
    if let Some(c) = set.get(code) {
        return c;
    }
    if set.len() >= MAX_INTERNED {
        return "holder_refused";
    }
    let leaked: &'static str = Box::leak(code.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// The HTTP face of a workflow refusal (exports, erasure orders).
impl From<tracevault_vault::approval::Refusal> for ApiError {
    fn from(r: tracevault_vault::approval::Refusal) -> Self {
        use tracevault_vault::approval::RefusalKind;
        let status = match r.kind {
            RefusalKind::Invalid => StatusCode::BAD_REQUEST,
            RefusalKind::Forbidden => StatusCode::FORBIDDEN,
            RefusalKind::NotFound => StatusCode::NOT_FOUND,
            RefusalKind::Conflict => StatusCode::CONFLICT,
        };
        ApiError::new(status, r.code, r.message)
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Overloaded(_) => ApiError::unavailable("overloaded", e.to_string()),
            AppendError::Fenced(_) => {
                ApiError::new(StatusCode::CONFLICT, "namespace_fenced", e.to_string())
            }
            AppendError::Failed(_) => ApiError::unavailable("log_unavailable", e.to_string()),
            AppendError::Closed => ApiError::unavailable("shutting_down", e.to_string()),
            AppendError::LeaseLapsed => ApiError::unavailable("lease_lapsed", e.to_string()),
            AppendError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "event_id_conflict", e.to_string())
            }
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Append(a) => a.into(),
            VaultError::BadNamespace(_) => {
                ApiError::bad_request("invalid_namespace", e.to_string())
            }
            VaultError::Open(OpenError::Lease(LeaseError::Fenced { .. })) => {
                ApiError::new(StatusCode::CONFLICT, "namespace_fenced", e.to_string())
            }
            VaultError::NotInStore(_) => ApiError::unavailable("not_yet_in_store", e.to_string()),
            VaultError::Open(OpenError::Inconsistent { .. }) => {
                ApiError::unavailable("namespace_inconsistent", e.to_string())
            }
            other => ApiError::unavailable("store_unavailable", other.to_string()),
        }
    }
}
