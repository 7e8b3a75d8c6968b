//! The OTLP/HTTP receiver: `POST /otlp/v1/traces` and `POST /otlp/v1/logs`.
//!
//! Follows the OTLP/HTTP specification so that an unmodified OpenTelemetry
//! SDK or Collector can export here: protobuf or JSON bodies (the response uses
//! the request's encoding), optional gzip, a limit on the decompressed size
//! (413, which clients do not retry), failures as a `google.rpc.Status`, and
//! `partial_success` when some spans or records were refused. The GenAI
//! mapping itself lives in `tracevault_schemas::otlp`; event ids derived from
//! (trace, span, position) make a resent batch append nothing new.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracevault_schemas::Event;
use tracevault_schemas::otlp::{self as mapping, Rejected};
use tracevault_vault::record::{Prepared, Salts};
use tracevault_vault::token::{Claims, Role};

use super::{body, otlp_count};
use crate::error::ApiError;
use crate::{AppState, auth, metrics::Source};

/// The header that picks one of the token's namespaces.
pub const NAMESPACE_HEADER: &str = "x-tracevault-namespace";

/// The two OTLP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (the OTLP JSON mapping).
    Json,
}

impl Encoding {
    /// The encoding named by the request's `Content-Type`, if supported.
    pub fn of(headers: &HeaderMap) -> Option<Encoding> {
        let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the body of every OTLP failure response.
#[derive(Clone, PartialEq, Message, Serialize)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    #[serde(skip)]
    details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.ErrorInfo`: carries our stable error code as `reason`.
#[derive(Clone, PartialEq, Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
}

const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// The gRPC status code matching an HTTP status, as OTLP/HTTP clients read it.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 => 5,             // NOT_FOUND
        409 => 10,            // ABORTED
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

/// Renders an [`ApiError`] as an OTLP failure: same HTTP status (and
/// `Retry-After` for 429/503), body a `google.rpc.Status` in `enc`, whose
/// `ErrorInfo` detail (protobuf) or `details[0].reason` (JSON) is our stable code.
pub fn error_response(mut e: ApiError, enc: Encoding) -> Response {
    // OTLP clients drop a batch on any status but 429/502/503/504. A fenced
    // namespace is a fail-over in progress: the retry belongs at the new owner.
    if e.status == StatusCode::CONFLICT && e.code == "namespace_fenced" {
        e.status = StatusCode::SERVICE_UNAVAILABLE;
    }
    if e.status.is_server_error() {
        tracing::warn!(code = e.code, "{}", e.message);
    }
    let status = Status {
        code: grpc_code(e.status),
        message: e.message.clone(),
        details: vec![Any {
            type_url: ERROR_INFO_TYPE.into(),
            value: ErrorInfo {
                reason: e.code.into(),
                domain: "tracevault".into(),
            }
            .encode_to_vec(),
        }],
    };
    let body = match enc {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::json!({
            "code": status.code,
            "message": status.message,
            "details": [{"@type": ERROR_INFO_TYPE, "reason": e.code, "domain": "tracevault"}],
        })
        .to_string()
        .into_bytes(),
    };
    let mut resp = (e.status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(enc.content_type()),
    );
    if e.status == StatusCode::SERVICE_UNAVAILABLE || e.status == StatusCode::TOO_MANY_REQUESTS {
        h.insert(header::RETRY_AFTER, HeaderValue::from(e.retry_after_s));
    }
    resp.extensions_mut()
        .insert(crate::metrics::ErrorCode(e.code));
    resp
}

/// The namespace an OTLP request writes to: the `x-tracevault-namespace`
/// header (which must be one of the token's), else the token's only namespace.
fn namespace(claims: &Claims, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(v) = headers.get(NAMESPACE_HEADER) {
        let ns = v
            .to_str()
            .map_err(|_| {
                ApiError::bad_request("invalid_namespace", "namespace header is not ASCII")
            })?
            .trim()
            .to_string();
        auth::authorize(claims, &[Role::Writer], Some(&ns))?;
        tracevault_vault::validate_namespace(&ns, false)?;
        return Ok(ns);
    }
    match claims.ns.as_slice() {
        [only] if only != "*" => {
            tracevault_vault::validate_namespace(only, false)?;
            Ok(only.clone())
        }
        _ => Err(ApiError::bad_request(
            "namespace_required",
            format!(
                "this token covers several namespaces; name one in the {NAMESPACE_HEADER} header"
            ),
        )),
    }
}

/// What the two signals share: decoding, mapping and the response type.
trait Signal: Message + Default + DeserializeOwned + Send + 'static {
    type Response: Message + Serialize;
    const SOURCE: Source;
    /// What a rejected item is called in messages (`spans`, `log records`).
    const ITEMS: &'static str;
    /// Maps the request, handing each accepted item's events to `sink`.
    fn map_each(&self, sink: &mut dyn FnMut(Vec<Event>)) -> Rejected;
    fn is_empty(&self) -> bool {
        self.items() == 0
    }
    /// Spans or log records in the request.
    fn items(&self) -> u64;
    /// Bytes of resource and scope the mapping copies into each item's first
    /// event, summed over the items (the raw attributes are kept per event).
    fn repeated_bytes(&self) -> u64;
    fn response(rejected: i64, message: String) -> Self::Response;
}

impl Signal for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const SOURCE: Source = Source::OtlpTraces;
    const ITEMS: &'static str = "spans";
    fn map_each(&self, sink: &mut dyn FnMut(Vec<Event>)) -> Rejected {
        mapping::map_traces_each(self, sink)
    }
    fn items(&self) -> u64 {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum()
    }
    fn repeated_bytes(&self) -> u64 {
        let mut total = 0u64;
        for r in &self.resource_spans {
            let res = r.resource.as_ref().map_or(0, |x| x.encoded_len()) as u64;
            for s in &r.scope_spans {
                let scope = s.scope.as_ref().map_or(0, |x| x.encoded_len()) as u64;
                total = total.saturating_add((res + scope).saturating_mul(s.spans.len() as u64));
            }
        }
        total
    }
    fn response(rejected: i64, message: String) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (rejected > 0 || !message.is_empty()).then_some(
                ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message,
                },
            ),
        }
    }
}

impl Signal for ExportLogsServiceRequest {
    type Response = ExportLogsServiceResponse;
    const SOURCE: Source = Source::OtlpLogs;
    const ITEMS: &'static str = "log records";
    fn map_each(&self, sink: &mut dyn FnMut(Vec<Event>)) -> Rejected {
        mapping::map_logs_each(self, sink)
    }
    fn items(&self) -> u64 {
        self.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum()
    }
    fn repeated_bytes(&self) -> u64 {
        let mut total = 0u64;
        for r in &self.resource_logs {
            let res = r.resource.as_ref().map_or(0, |x| x.encoded_len()) as u64;
            for s in &r.scope_logs {
                let scope = s.scope.as_ref().map_or(0, |x| x.encoded_len()) as u64;
                total =
                    total.saturating_add((res + scope).saturating_mul(s.log_records.len() as u64));
            }
        }
        total
    }
    fn response(rejected: i64, message: String) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (rejected > 0 || !message.is_empty()).then_some(
                ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message,
                },
            ),
        }
    }
}

/// `POST /otlp/v1/traces`.
pub async fn traces(
    State(st): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::extract::Request,
) -> Response {
    export::<ExportTraceServiceRequest>(st, uri, headers, body).await
}

/// `POST /otlp/v1/logs`.
pub async fn logs(
    State(st): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::extract::Request,
) -> Response {
    export::<ExportLogsServiceRequest>(st, uri, headers, body).await
}

async fn export<S: Signal>(
    st: AppState,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::extract::Request,
) -> Response {
    let enc = Encoding::of(&headers).unwrap_or(Encoding::Protobuf);
    match export_inner::<S>(st, uri, headers, body).await {
        Ok(Exported::Here(bytes)) => {
            let mut resp = (StatusCode::OK, bytes).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(enc.content_type()),
            );
            resp
        }
        Ok(Exported::Forwarded(resp)) => resp,
        Err(e) => error_response(e, enc),
    }
}

/// What an export became: the answer's body, or the answer of the node
/// holding the namespace, as it gave it.
enum Exported {
    Here(Bytes),
    Forwarded(Response),
}

/// Result of the blocking part of an export: what to append, and what to say
/// about the rest.
struct Decoded {
    events: Vec<Prepared>,
    /// How many of `events` each accepted span (or record) gave, in order.
    items: Vec<usize>,
    rejected: u64,
    messages: Vec<String>,
}

async fn export_inner<S: Signal>(
    st: AppState,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::extract::Request,
) -> Result<Exported, ApiError> {
    let started = std::time::Instant::now();
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Writer], None)?;
    let ns = namespace(&claims, &headers)?;
    let max = st.limits.max_otlp_body_bytes;
    let raw = crate::write::read_body(&st, body, max).await?;
    let Some(enc) = Encoding::of(&headers) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "OTLP/HTTP bodies must be application/x-protobuf or application/json",
        ));
    };
    // Refused before decoding when the token is already in debt; charged
    // (its events, not one more) once they are counted.
    st.rate_limit(&claims, 0)?;
    let limits = st.limits.clone();
    let raw_len = raw.len();
    // Kept (a reference) in case the namespace is held by another node.
    let (forward_body, forward_headers) = (raw.clone(), headers.clone());
    let _decoding = st
        .otlp_decoding
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("shutting_down", "the server is stopping"))?;
    let (again_headers, again_raw, again_limits) = (headers.clone(), raw.clone(), limits.clone());
    let decoded =
        tokio::task::spawn_blocking(move || decode::<S>(&headers, raw, enc, &limits, max))
            .await
            .map_err(|e| ApiError::unavailable("internal", e.to_string()))??;
    let mut new = 0;
    let (mut rejected, mut messages) = (decoded.rejected, decoded.messages);
    if !decoded.events.is_empty() {
        st.rate_limit(&claims, decoded.events.len() as u64)?;
        let request = (uri.path(), &forward_headers, forward_body);
        match crate::cluster::append_or_forward(&st, &ns, decoded.events, &claims.sub, request)
            .await
        {
            Ok(crate::cluster::Appended::Here(receipts)) => {
                new = receipts.iter().filter(|r| !r.duplicate).count() as u64;
            }
            Ok(crate::cluster::Appended::Forwarded(resp)) => {
                return Ok(Exported::Forwarded(resp));
            }
            // One span reusing another's event ids: the others are not to
            // be lost with it (OTLP clients drop a batch answered 409).
            // Appended span by span (the batch was refused whole, so nothing
            // of it is in the log; it is decoded again rather than kept, so
            // that the common case copies nothing), the conflicting ones are
            // rejected.
            Err(e) if e.code == "event_id_conflict" && decoded.items.len() > 1 => {
                let again = tokio::task::spawn_blocking(move || {
                    decode::<S>(&again_headers, again_raw, enc, &again_limits, max)
                })
                .await
                .map_err(|e| ApiError::unavailable("internal", e.to_string()))??;
                let mut conflicting = 0u64;
                let mut events = again.events.into_iter();
                for n in again.items {
                    let item: Vec<Prepared> = events.by_ref().take(n).collect();
                    match st.vault.append_prepared(&ns, item, &claims.sub).await {
                        Ok(r) => new += r.iter().filter(|r| !r.duplicate).count() as u64,
                        Err(e) => match ApiError::from(e) {
                            e if e.code == "event_id_conflict" => conflicting += 1,
                            e => return Err(e),
                        },
                    }
                }
                rejected += conflicting;
                messages.push(format!(
                    "{conflicting} {} refused: their event ids are already in the log with other content",
                    S::ITEMS
                ));
            }
            Err(e) => return Err(e),
        }
    }
    st.metrics
        .ingested(&ns, S::SOURCE, new, raw_len as u64, started.elapsed());
    let message = messages.join("; ");
    let resp = S::response(rejected as i64, message);
    let body = match enc {
        Encoding::Protobuf => resp.encode_to_vec(),
        Encoding::Json => {
            // `{}` rather than `{"partialSuccess": null}` for a full success.
            let mut v = serde_json::to_value(&resp)
                .map_err(|e| ApiError::unavailable("internal", e.to_string()))?;
            if let serde_json::Value::Object(m) = &mut v {
                m.retain(|_, x| !x.is_null());
            }
            v.to_string().into_bytes()
        }
    };
    Ok(Exported::Here(Bytes::from(body)))
}

/// The members of OTLP/JSON's `AnyValue` oneof: one object holds one.
const ANY_VALUE_MEMBERS: &[&str] = &[
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
];

/// Decodes, checks, maps and seals an OTLP request body (CPU-heavy: run it
/// off the async threads).
fn decode<S: Signal>(
    headers: &HeaderMap,
    raw: Bytes,
    enc: Encoding,
    limits: &crate::Limits,
    max: usize,
) -> Result<Decoded, ApiError> {
    let body = body::decode_body(headers, raw, max)?;
    let items_max = limits.max_otlp_items_per_request as u64;
    let too_many = |what: String| {
        ApiError::too_large(
            "too_many_items",
            format!("{what}; at most {items_max} {} per request", S::ITEMS),
        )
    };
    match enc {
        Encoding::Protobuf => {
            // Counted before decoding, or not decoded at all: bytes the
            // count cannot walk are refused (skipping the count let them
            // decode into whatever they held).
            let malformed = || {
                ApiError::bad_request(
                    "invalid_protobuf",
                    "body is not well-formed protobuf (its fields could not be walked)",
                )
            };
            let n = otlp_count::protobuf_items(&body).ok_or_else(malformed)?;
            if n > items_max {
                return Err(too_many(format!("the request holds {n} {}", S::ITEMS)));
            }
            // Empty resources, scopes or attributes are not items but
            // become structs all the same: as for JSON's objects, at
            // most 50 messages per item allowed.
            let n = otlp_count::protobuf_messages(&body).ok_or_else(malformed)?;
            if n > items_max.saturating_mul(50) {
                return Err(too_many(format!("the request holds {n} protobuf messages")));
            }
        }
        Encoding::Json => {
            let n = otlp_count::json_objects(&body);
            if n > items_max.saturating_mul(50) {
                return Err(too_many(format!("the request holds {n} JSON objects")));
            }
            // The OTLP/JSON decoder keeps the last of a repeated field, or
            // of two members of an AnyValue (`{"stringValue":"A",
            // "stringValue":"B"}` or `{"stringValue":"A","intValue":"5"}`
            // was stored as the last): refused, as repeated keys are on the
            // native doors.
            tracevault_schemas::strict_json::check_object_keys(&body, ANY_VALUE_MEMBERS).map_err(
                |e| {
                    ApiError::bad_request(
                        "invalid_json",
                        format!("body is not valid OTLP JSON: {e}"),
                    )
                },
            )?;
        }
    }
    let req: S = match enc {
        Encoding::Protobuf => S::decode(&body[..]).map_err(|e| {
            ApiError::bad_request(
                "invalid_protobuf",
                format!("body is not a valid OTLP protobuf message: {e}"),
            )
        })?,
        Encoding::Json => serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("body is not valid OTLP JSON: {e}"))
        })?,
    };
    let items = req.items();
    if items > items_max {
        return Err(too_many(format!("the request holds {items} {}", S::ITEMS)));
    }
    // Every item's first event keeps the resource and scope attributes:
    // refuse requests where that copying alone would outgrow the body.
    let repeated = req.repeated_bytes();
    if repeated > (max as u64).saturating_mul(4) {
        return Err(ApiError::too_large(
            "too_large_when_mapped",
            format!(
                "resource and scope attributes repeated on each of the {items} {} come to {repeated} bytes; send fewer {} per request or smaller resource attributes",
                S::ITEMS,
                S::ITEMS
            ),
        ));
    }
    let mut messages = Vec::new();
    if req.is_empty() && !is_trivially_empty(&body) {
        messages.push(format!(
            "the request decoded to no {}; OTLP JSON uses lowerCamelCase keys (resourceSpans, scopeSpans, ...), unknown keys are ignored",
            S::ITEMS
        ));
    }
    let sealed = seal_each::<S>(&req, limits)?;
    messages.extend(sealed.rejected.messages);
    if sealed.oversized > 0 {
        messages.push(format!(
            "{} {} refused: an event would exceed {} bytes",
            sealed.oversized,
            S::ITEMS,
            limits.max_event_bytes
        ));
    }
    Ok(Decoded {
        events: sealed.events,
        items: sealed.items,
        rejected: sealed.rejected.count + sealed.oversized,
        messages,
    })
}

/// `""`, `{}` and the empty protobuf message carry nothing to warn about.
fn is_trivially_empty(body: &[u8]) -> bool {
    let t: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    t.is_empty() || t == b"{}"
}

/// The events of a request, prepared (salted, canonicalised, digested) span
/// by span (or record by record) as the mapping yields them.
struct Sealed {
    events: Vec<Prepared>,
    /// Events per accepted span (or record), in order.
    items: Vec<usize>,
    rejected: Rejected,
    /// Spans (or records) refused whole because one of their events' stored
    /// payload (content and attributes) would exceed `max_event_bytes`.
    oversized: u64,
}

fn seal_each<S: Signal>(req: &S, limits: &crate::Limits) -> Result<Sealed, ApiError> {
    let mut salts = Salts::new();
    let mut events = Vec::new();
    let mut items = Vec::new();
    let (mut count, mut oversized) = (0usize, 0u64);
    let mut failed = None;
    let rejected = req.map_each(&mut |item: Vec<Event>| {
        count += item.len();
        if count > limits.max_otlp_events_per_request || failed.is_some() {
            return;
        }
        let prepared: Result<Vec<Prepared>, _> =
            item.into_iter().map(|e| salts.prepare(e)).collect();
        match prepared {
            Ok(p)
                if p.iter()
                    .all(|e| e.payload_bytes() <= limits.max_event_bytes) =>
            {
                items.push(p.len());
                events.extend(p)
            }
            Ok(_) => oversized += 1,
            Err(e) => failed = Some(e),
        }
    });
    if count > limits.max_otlp_events_per_request {
        return Err(ApiError::too_large(
            "too_many_events",
            format!(
                "this request maps to {count} events; at most {} allowed per request",
                limits.max_otlp_events_per_request
            ),
        ));
    }
    if let Some(e) = failed {
        return Err(ApiError::unavailable("seal_failed", e.to_string()));
    }
    Ok(Sealed {
        events,
        items,
        rejected,
        oversized,
    })
}
