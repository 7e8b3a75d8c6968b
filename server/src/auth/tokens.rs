//! Token issue and revocation over HTTP (admin): `POST /v1/tokens` and
//! `POST /v1/tokens/revoke`, each recorded in `_audit` before it takes
//! effect.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tracevault_vault::token::{MAX_JTI_BYTES, Role};
use tracevault_vault::validate_namespace;

use crate::{ApiError, AppState, audit, auth, body_bytes};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    role: String,
    #[serde(alias = "namespaces")]
    ns: Vec<String>,
    sub: String,
    #[serde(default)]
    ttl_s: Option<i64>,
    #[serde(default)]
    win_from: Option<String>,
    #[serde(default)]
    win_to: Option<String>,
    #[serde(default)]
    person: Option<String>,
}

pub(crate) async fn issue_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    let body = body_bytes(body, st.limits.max_body_bytes)?;
    auth::authorize(&claims, &[Role::Admin], None)?;
    let req: TokenRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_role",
            "role must be writer, reader, approver or admin",
        )
    })?;
    for ns in &req.ns {
        if !(ns == "*" && role == Role::Admin) {
            validate_namespace(ns, role == Role::Admin)?;
        }
    }
    for (name, w) in [("win_from", &req.win_from), ("win_to", &req.win_to)] {
        if let Some(w) = w {
            tracevault_schemas::parse_timestamp(name, w)
                .map_err(|e| ApiError::bad_request("invalid_window", e.to_string()))?;
        }
    }
    let ttl = req.ttl_s.unwrap_or(3600);
    let max_ttl = if role == Role::Reader {
        st.limits
            .max_token_ttl_s
            .min(st.limits.max_reader_token_ttl_s)
    } else {
        st.limits.max_token_ttl_s
    };
    if ttl <= 0 || ttl > max_ttl {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            format!("ttl_s must be between 1 and {max_ttl} for this role"),
        ));
    }
    if role == Role::Reader && req.win_from.is_none() {
        return Err(ApiError::bad_request(
            "window_required",
            "a reader token needs win_from (for all of history: 1970-01-01T00:00:00Z)",
        ));
    }
    let (token, new) = st
        .tokens
        .issue_for(
            role,
            req.ns,
            &req.sub,
            ttl,
            (req.win_from, req.win_to),
            req.person.as_deref(),
        )
        .map_err(|e| ApiError::bad_request("invalid_token_request", e.to_string()))?;
    // Recorded before it is handed out: a token that is not in the access
    // log never leaves the server.
    let record = json!({"jti": new.jti, "role": new.role, "ns": new.ns, "sub": new.sub,
        "iat": new.iat, "exp": new.exp, "win_from": new.win_from, "win_to": new.win_to,
        "person": new.person});
    audit::append(
        &st.vault,
        vec![audit::event(
            audit::TOKEN_ISSUES,
            "token_issued",
            &claims.sub,
            record,
        )],
    )
    .await?;
    Ok(Json(json!({"token": token, "claims": new})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    jti: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/tokens/revoke` (admin): records the revocation in `_audit`,
/// then refuses the token everywhere on this server at once.
pub(crate) async fn revoke_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Admin], None)?;
    let body = body_bytes(body, st.limits.max_body_bytes)?;
    let req: RevokeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    if req.jti.is_empty() || req.jti.len() > MAX_JTI_BYTES {
        return Err(ApiError::bad_request(
            "invalid_jti",
            format!("jti must be 1-{MAX_JTI_BYTES} bytes"),
        ));
    }
    if req.reason.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(ApiError::bad_request(
            "invalid_reason",
            "reason is at most 1024 bytes",
        ));
    }
    let receipt = st
        .revocations
        .revoke(&st.vault, &req.jti, &claims.sub, req.reason.as_deref())
        .await?;
    Ok(Json(json!({"revoked": req.jti, "receipt": receipt})))
}
