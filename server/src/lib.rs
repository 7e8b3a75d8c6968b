//! The write side of tracevault over HTTP (axum): appending events with
//! durable receipts, and the evidence endpoints (checkpoints, inclusion and
//! consistency proofs, vault description) that writers and third parties use
//! to check what the vault holds. SPEC sections 2 and 3.

pub mod audit;
pub mod auth;
mod body;
mod error;
pub mod exports;
pub mod external;
pub mod fair;
pub mod listener;
pub mod metrics;
mod otlp;
mod otlp_count;
mod ratelimit;
pub mod read;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tracevault_vault::record::Prepared;
use tracevault_vault::token::{Claims, MAX_JTI_BYTES, Role, TokenIssuer};
use tracevault_vault::{Vault, note, validate_namespace};

pub use error::ApiError;

/// Why the server could not be built (configuration, keys, history): said
/// once, before it listens.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Request limits. Every one is a config key (`[limits]`, docs/configuration.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, after decompression.
    pub max_body_bytes: usize,
    /// Largest single event (its JSON text).
    pub max_event_bytes: usize,
    /// Most events in one request.
    pub max_events_per_request: usize,
    /// How long `?wait=checkpoint` waits before answering 503.
    pub checkpoint_wait_ms: u64,
    /// Longest lifetime of a token issued over HTTP (seconds).
    pub max_token_ttl_s: i64,
    /// Write requests (appends, OTLP exports, token issues) handled at once;
    /// more get 503. Together with the body limits this bounds the memory
    /// request bodies can take.
    pub max_inflight_writes: usize,
    /// Largest OTLP/HTTP body, after decompression (the OTLP endpoints only).
    pub max_otlp_body_bytes: usize,
    /// Most events one OTLP request may map to (a span gives one event per
    /// message part); more is refused whole with 413.
    pub max_otlp_events_per_request: usize,
    /// Most spans (or log records) in one OTLP request, counted on the wire
    /// before decoding; more → 413. For JSON bodies, at most 50 times as many
    /// `{` bytes. Bounds the memory one request can expand into.
    pub max_otlp_items_per_request: usize,
    /// OTLP requests decoded and mapped at once (the CPU- and memory-heavy
    /// part); others wait their turn. Bounds the peak memory of decoding.
    pub max_otlp_decoding: usize,
    /// Events per second one writer token may append (0 = unlimited); over
    /// it, 429 with `Retry-After` (session streams wait instead).
    pub writer_events_per_s: u64,
    /// Burst allowance of that rate, in events.
    pub writer_burst_events: u64,
    /// Session streams open at once; more get 503.
    pub max_streams: usize,
    /// Session streams one token may hold open at once; more get 503
    /// `too_many_streams`, so one writer cannot take every stream slot.
    pub max_streams_per_token: usize,
    /// A session stream with no data for this long is closed (with its summary).
    pub stream_idle_timeout_s: u64,
    /// How long a session stream keeps retrying an append the log refused
    /// for a transient reason (overload, lease renewal) before giving up.
    pub stream_retry_ms: u64,
    /// How long the readiness check waits for the object store.
    pub ready_timeout_ms: u64,
    /// Longest life of a reader token, counted from its `iat`, whatever its
    /// `exp` says (SPEC section 2: default 12 h).
    pub max_reader_token_ttl_s: i64,
    /// Denied requests (401, 403) are counted and recorded in `_audit` as one
    /// entry per this many seconds (only for intervals that had any).
    pub denied_audit_interval_s: u64,
    /// Longest time a request body may take to arrive, on the routes that
    /// are not bound by `write_timeout_s` (queries, exports, approvals, batch
    /// proofs); beyond it `408 request_timeout`. Session streams have their
    /// own idle limit.
    pub body_read_timeout_s: u64,
    /// Longest time a write request (appends, OTLP exports, token issues) may
    /// take from its headers to its answer, body upload included (408 beyond).
    /// Keep it above `checkpoint_wait_ms`. Session streams are not bound by it.
    pub write_timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 << 20,
            max_event_bytes: 1 << 20,
            max_events_per_request: 10_000,
            checkpoint_wait_ms: 10_000,
            max_token_ttl_s: 30 * 24 * 3600,
            max_inflight_writes: 64,
            max_otlp_body_bytes: 20 << 20,
            max_otlp_events_per_request: 100_000,
            max_otlp_items_per_request: 20_000,
            max_otlp_decoding: 4,
            writer_events_per_s: 200_000,
            writer_burst_events: 400_000,
            max_streams: 256,
            max_streams_per_token: 64,
            stream_idle_timeout_s: 3600,
            stream_retry_ms: 30_000,
            ready_timeout_ms: 2_000,
            max_reader_token_ttl_s: 12 * 3600,
            write_timeout_s: 60,
            denied_audit_interval_s: 10,
            body_read_timeout_s: 30,
        }
    }
}

impl Limits {
    /// Refuses combinations that could never work: a request larger than
    /// the log's unpublished bound would get 503 forever, and a write deadline
    /// shorter than the checkpoint wait would cut every `?wait=checkpoint`.
    pub fn check(&self, log: &tracevault_vault::LogConfig) -> Result<(), String> {
        for (name, n) in [
            ("max_events_per_request", self.max_events_per_request),
            (
                "max_otlp_events_per_request",
                self.max_otlp_events_per_request,
            ),
        ] {
            if n > log.max_unpublished_events {
                return Err(format!(
                    "[limits] {name} = {n} exceeds [log] max_unpublished_events = {}: such requests could never be accepted",
                    log.max_unpublished_events
                ));
            }
        }
        if self.write_timeout_s.saturating_mul(1000) <= self.checkpoint_wait_ms {
            return Err(format!(
                "[limits] write_timeout_s = {} must be longer than checkpoint_wait_ms = {}",
                self.write_timeout_s, self.checkpoint_wait_ms
            ));
        }
        Ok(())
    }
}

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// The vault.
    pub vault: Vault,
    /// Token issuer and verifier.
    pub tokens: Arc<TokenIssuer>,
    /// Request limits.
    pub limits: Limits,
    /// Permits for write requests in flight (`max_inflight_writes`).
    pub write_permits: Arc<tokio::sync::Semaphore>,
    /// Permits for open session streams (`max_streams`).
    pub stream_permits: Arc<tokio::sync::Semaphore>,
    /// Stream slots per token (`max_streams_per_token`).
    stream_slots: Arc<fair::PerKeySlots>,
    /// Permits for OTLP decoding (`max_otlp_decoding`).
    otlp_decoding: Arc<tokio::sync::Semaphore>,
    /// Permits for batch proof requests being computed
    /// ([`PROOF_BATCHES_AT_ONCE`]).
    proof_batches: Arc<tokio::sync::Semaphore>,
    /// Per-token write rate limits.
    limiter: Arc<ratelimit::RateLimiter>,
    /// Counters for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Whether `/metrics` is served without a token (else: admin tokens only).
    pub metrics_public: bool,
    /// Revoked token ids (rebuilt from `_audit` at start-up).
    revocations: Arc<audit::Revocations>,
    /// Denied requests on their way to `_audit`.
    denied: Arc<audit::DeniedLog>,
    /// Set when the server stops: open session streams end (with their summary)
    /// so that the graceful shutdown is not held up by them.
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// External token issuers (JWKS); none unless configured.
    external: Arc<external::ExternalIssuers>,
}

impl AppState {
    /// Builds the state, sizing the write permits from `limits`.
    pub fn new(vault: Vault, tokens: Arc<TokenIssuer>, limits: Limits) -> AppState {
        let permits = Arc::new(tokio::sync::Semaphore::new(
            limits.max_inflight_writes.max(1),
        ));
        let shutdown = Arc::new(tokio::sync::watch::channel(false).0);
        let denied = Arc::new(audit::DeniedLog::start(
            vault.clone(),
            Duration::from_secs(limits.denied_audit_interval_s.max(1)),
            shutdown.subscribe(),
        ));
        AppState {
            vault,
            tokens,
            write_permits: permits,
            stream_permits: Arc::new(tokio::sync::Semaphore::new(limits.max_streams.max(1))),
            stream_slots: Arc::new(fair::PerKeySlots::new(limits.max_streams_per_token)),
            otlp_decoding: Arc::new(tokio::sync::Semaphore::new(limits.max_otlp_decoding.max(1))),
            proof_batches: Arc::new(tokio::sync::Semaphore::new(PROOF_BATCHES_AT_ONCE)),
            limiter: Arc::new(ratelimit::RateLimiter::new(
                limits.writer_events_per_s,
                limits.writer_burst_events,
            )),
            metrics: Arc::new(metrics::Metrics::default()),
            metrics_public: true,
            revocations: Arc::new(audit::Revocations::default()),
            denied,
            shutdown,
            external: Arc::default(),
            limits,
        }
    }

    /// Accepts the tokens of these external issuers too (docs/auth.md).
    pub fn set_external_issuers(&mut self, issuers: Arc<external::ExternalIssuers>) {
        self.external = issuers;
    }

    /// Rebuilds the revoked-token set from `_audit`. Call before serving: a
    /// server that cannot read its revocations must not accept tokens.
    pub async fn load_revocations(&self) -> Result<usize, tracevault_vault::VaultError> {
        self.revocations.load(&self.vault).await
    }

    /// Whether token id `jti` has been revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revocations.is_revoked(jti)
    }

    /// Tells long-lived requests (session streams) to finish: their complete
    /// lines are committed and the summary sent; called on SIGTERM/SIGINT.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Charges `events` to the writer token's rate limit; 429 when over it.
    fn rate_limit(&self, claims: &Claims, events: u64) -> Result<(), ApiError> {
        self.limiter.take(&claims.jti, events).map_err(rate_limited)
    }
}

/// 429 with a `Retry-After` of `wait` (rounded up to whole seconds).
fn rate_limited(wait: Duration) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "this token is over its write rate limit; retry in {} ms",
            wait.as_millis()
        ),
    )
    .retry_after(wait.as_secs_f64().ceil() as u64)
}

/// Guards every write request before its body is read: the token must be
/// valid (401 otherwise, so unauthenticated clients can never hold a write
/// slot), and beyond `max_inflight_writes` concurrent writes the answer is 503
/// with `Retry-After`. The whole request, body upload included, must finish
/// within `write_timeout_s` (408 otherwise), so slow senders cannot pin a slot.
async fn shed_writes(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let otlp = req
        .uri()
        .path()
        .starts_with("/otlp/")
        .then(|| otlp::Encoding::of(req.headers()).unwrap_or(otlp::Encoding::Protobuf));
    let reject = |e: ApiError| match otlp {
        Some(enc) => otlp::error_response(e, enc),
        None => e.into_response(),
    };
    if let Err(e) = auth::authenticate(&st, req.headers()) {
        return reject(e);
    }
    let Ok(_permit) = st.write_permits.clone().try_acquire_owned() else {
        return reject(ApiError::unavailable(
            "overloaded",
            "too many write requests in flight; retry later",
        ));
    };
    let limit = Duration::from_secs(st.limits.write_timeout_s.max(1));
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => reject(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request was not completed within {} s (upload too slow?)",
                limit.as_secs()
            ),
        )),
    }
}

/// Guards the routes that read a body and are not write requests (queries,
/// exports and their approvals, batch proofs): the token is checked from the
/// headers before any byte of the body is read (401/403 cost the server no
/// body), and the body must arrive whole within `body_read_timeout_s` (408
/// otherwise) and within `max_body_bytes` (413), so a slow or endless sender
/// cannot hold a connection or memory. Requests without a body pass through.
pub async fn guard_body(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if let Err(e) = auth::authenticate(&st, req.headers()) {
        return e.into_response();
    }
    let (parts, body) = req.into_parts();
    let max = st.limits.max_body_bytes;
    let limit = Duration::from_secs(st.limits.body_read_timeout_s.max(1));
    let read = async move {
        let mut stream = body.into_data_stream();
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
            if buf.len() + chunk.len() > max {
                return Err(ApiError::too_large(
                    "body_too_large",
                    format!("request body exceeds {max} bytes"),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(limit, read).await {
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                limit.as_secs()
            ),
        )
        .into_response(),
        Ok(Err(e)) => e.into_response(),
        Ok(Ok(bytes)) => {
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(req).await
        }
    }
}

/// Counts every failed response by status and stable code, and logs it.
async fn count_rejections(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut resp = next.run(req).await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        if resp.extensions().get::<metrics::ErrorCode>().is_none() {
            resp = json_error(resp).await;
        }
        let code = resp
            .extensions()
            .get::<metrics::ErrorCode>()
            .map(|c| c.0)
            .unwrap_or("other");
        st.metrics.rejected(status.as_u16(), code);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let denial = audit::Denial {
                status: status.as_u16(),
                code,
                method,
                path: path.chars().take(512).collect(),
            };
            st.denied.record(denial, request_id);
        }
    }
    resp
}

/// Turns an error answered by the framework rather than by our handlers (an
/// extractor's plain-text 400/415/422, a layer's 413) into the API's JSON
/// error shape, keeping its status and text: every error a client sees has
/// a stable code.
async fn json_error(resp: Response) -> Response {
    let status = resp.status();
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_json",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut out = ApiError::new(status, code, text).into_response();
    for (name, value) in parts.headers.iter() {
        if name == header::RETRY_AFTER || name == header::ALLOW {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// Builds the router with `extra` routes (the read side, wired by the
/// binary), which get the same layers: request ids, tracing, rejection
/// counting and denied-request auditing.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    // Compressed bodies are capped at the same size as decompressed ones.
    let raw_limit = state.limits.max_body_bytes;
    let writes = Router::new()
        .route("/v1/tokens", post(issue_token))
        .route("/v1/tokens/revoke", post(revoke_token))
        .route("/v1/logs/{ns}/events", post(append_events))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            shed_writes,
        ));
    let otlp = Router::new()
        .route("/otlp/v1/traces", post(otlp::traces))
        .route("/otlp/v1/logs", post(otlp::logs))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            shed_writes,
        ))
        .layer(DefaultBodyLimit::max(state.limits.max_otlp_body_bytes));
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    let trace = tower_http::trace::TraceLayer::new_for_http().make_span_with(
        |req: &axum::http::Request<axum::body::Body>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
        },
    );
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route(
            "/v1/logs/{ns}/sessions/{session_id}/stream",
            post(stream::session_stream),
        )
        .route("/v1/vault", get(vault_info))
        .route("/v1/logs/{ns}/checkpoint", get(checkpoint))
        .route(
            "/v1/logs/{ns}/proof/inclusion",
            get(inclusion)
                .post(inclusion_batch)
                .layer(DefaultBodyLimit::max(
                    MAX_PROOF_BATCH_BODY_BYTES.min(raw_limit),
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    guard_body,
                )),
        )
        .route("/v1/logs/{ns}/proof/consistency", get(consistency))
        .merge(writes)
        .merge(otlp)
        .merge(extra.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard_body,
        )))
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(raw_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_rejections,
        ))
        .layer(trace)
        .layer(tower_http::request_id::PropagateRequestIdLayer::new(
            request_id.clone(),
        ))
        .layer(tower_http::request_id::SetRequestIdLayer::new(
            request_id,
            NextRequestId::default(),
        ))
        .with_state(state)
}

/// Request ids for requests that bring none: `<random prefix>-<counter>`,
/// unique per process run, cheap, and sortable within a run.
#[derive(Clone)]
struct NextRequestId {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for NextRequestId {
    fn default() -> Self {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        NextRequestId {
            prefix: hex::encode(b).into(),
            next: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }
}

impl tower_http::request_id::MakeRequestId for NextRequestId {
    fn make_request_id<B>(
        &mut self,
        _: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the object store answers within `ready_timeout_ms` and no open
/// log has failed or been fenced; 503 otherwise (take this server out of a
/// load balancer, it cannot acknowledge writes).
async fn readyz(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let timeout = Duration::from_millis(st.limits.ready_timeout_ms);
    match tokio::time::timeout(timeout, st.vault.store().probe()).await {
        Err(_) => {
            return Err(ApiError::unavailable(
                "store_unreachable",
                format!(
                    "the object store did not answer within {} ms",
                    timeout.as_millis()
                ),
            ));
        }
        Ok(Err(e)) => {
            // Details (endpoint, bucket) go to the log, not to unauthenticated callers.
            tracing::warn!("readiness: the object store failed: {e}");
            return Err(ApiError::unavailable(
                "store_unreachable",
                "the object store failed (see the server log)",
            ));
        }
        Ok(Ok(())) => {}
    }
    let failed: Vec<String> = st
        .vault
        .open_logs()
        .await
        .into_iter()
        .filter(|(_, l)| !l.is_healthy())
        .map(|(ns, _)| ns)
        .collect();
    if !failed.is_empty() {
        tracing::warn!(
            "readiness: namespaces not accepting writes: {}",
            failed.join(", ")
        );
        return Err(ApiError::unavailable(
            "log_unavailable",
            format!(
                "{} namespace(s) not accepting writes (see the server log)",
                failed.len()
            ),
        ));
    }
    Ok(Json(json!({"status": "ready"})))
}

async fn metrics_text(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if !st.metrics_public
        && let Err(e) = auth::authenticate(&st, &headers)
            .and_then(|c| auth::authorize(&c, &[Role::Admin], None))
    {
        return e.into_response();
    }
    let logs: Vec<_> = st
        .vault
        .open_logs()
        .await
        .into_iter()
        .map(|(ns, l)| (ns, l.stats()))
        .collect();
    let in_flight = st
        .limits
        .max_inflight_writes
        .max(1)
        .saturating_sub(st.write_permits.available_permits()) as u64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&logs, in_flight, now_ms),
    )
        .into_response()
}

async fn vault_info(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    let all = st.vault.namespaces().await?;
    let visible: Vec<_> = all
        .into_iter()
        .filter(|n| claims.allows_ns(&n.ns))
        .collect();
    Ok(Json(json!({
        "origin": st.vault.meta().origin,
        "log_public_key": B64.encode(st.vault.public_key().to_bytes()),
        "namespaces": visible,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
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

async fn issue_token(
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
    st.vault
        .append_system(
            audit::AUDIT_NS,
            vec![audit::event(
                audit::TOKEN_ISSUES,
                "token_issued",
                &claims.sub,
                record,
            )],
            audit::SERVER,
        )
        .await?;
    Ok(Json(json!({"token": token, "claims": new})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    jti: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/tokens/revoke` (admin): records the revocation in `_audit`,
/// then refuses the token everywhere on this server at once.
async fn revoke_token(
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

#[derive(Deserialize)]
struct AppendQuery {
    #[serde(default)]
    wait: Option<String>,
}

async fn append_events(
    State(st): State<AppState>,
    ns: Result<Path<String>, PathRejection>,
    q: Result<Query<AppendQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let ns = path_ns(ns)?;
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Writer], Some(&ns))?;
    let q = query(q)?;
    let body = body_bytes(body, st.limits.max_body_bytes)?;
    validate_namespace(&ns, false)?;
    let wait_checkpoint = match q.wait.as_deref() {
        None => false,
        Some("checkpoint") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown wait mode {other:?}"),
            ));
        }
    };
    let started = std::time::Instant::now();
    let raw_len = body.len() as u64;
    st.rate_limit(&claims, 1)?;
    let limits = st.limits.clone();
    // Decompression, parsing, validation and payload hashing run off the async
    // threads and in parallel across requests; the sequencer only hashes the
    // small committed record.
    let events = tokio::task::spawn_blocking(move || {
        let body = body::decode_body(&headers, body, limits.max_body_bytes)?;
        let events = body::parse_events(&headers, &body, &limits)?;
        Prepared::batch(events).map_err(|e| ApiError::unavailable("seal_failed", e.to_string()))
    })
    .await
    .map_err(|e| ApiError::unavailable("internal", e.to_string()))??;
    st.rate_limit(&claims, events.len() as u64)?;
    let receipts = st.vault.append_prepared(&ns, events, &claims.sub).await?;
    let n = receipts.iter().filter(|r| !r.duplicate).count() as u64;
    st.metrics
        .ingested(&ns, metrics::Source::Api, n, raw_len, started.elapsed());
    if !wait_checkpoint {
        return Ok(Json(json!({"receipts": receipts})));
    }
    let log = st.vault.log(&ns).await?;
    let need = receipts.iter().map(|r| r.index + 1).max().unwrap_or(0);
    let timeout = Duration::from_millis(st.limits.checkpoint_wait_ms);
    let (size, note_text) = log.wait_published(need, timeout).await.ok_or_else(|| {
        ApiError::unavailable(
            "checkpoint_timeout",
            "events are durable but no checkpoint covered them in time; poll the checkpoint",
        )
    })?;
    let mut proofs = Vec::with_capacity(receipts.len());
    for r in &receipts {
        let (_, proof) = log
            .inclusion_proof(r.index, size)
            .map_err(|e| ApiError::unavailable("internal", e.to_string()))?;
        proofs.push(note::format_tlog_proof(r.index, &proof, &note_text));
    }
    Ok(Json(json!({"receipts": receipts, "proofs": proofs})))
}

/// Resolves the log of an existing namespace for a token allowed to see it.
async fn readable_log(
    st: &AppState,
    headers: &HeaderMap,
    ns: &str,
) -> Result<tracevault_vault::LogView, ApiError> {
    let claims = auth::authenticate(st, headers)?;
    auth::authorize(
        &claims,
        &[Role::Writer, Role::Reader, Role::Approver, Role::Admin],
        Some(ns),
    )?;
    validate_namespace(ns, true)?;
    st.vault.view(ns).await?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_namespace",
            format!("namespace {ns} has no entries yet"),
        )
    })
}

async fn checkpoint(
    State(st): State<AppState>,
    ns: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ns = path_ns(ns)?;
    let log = readable_log(&st, &headers, &ns).await?;
    let (_, text) = log.latest_checkpoint().ok_or_else(|| {
        ApiError::not_found(
            "no_checkpoint",
            format!("namespace {ns} has no checkpoint yet"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: Option<u64>,
    size: Option<u64>,
}

fn proof_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_proof_request", e.to_string())
}

async fn inclusion(
    State(st): State<AppState>,
    ns: Result<Path<String>, PathRejection>,
    q: Result<Query<InclusionQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let ns = path_ns(ns)?;
    let log = readable_log(&st, &headers, &ns).await?;
    let q = query(q)?;
    let (Some(index), Some(size)) = (q.index, q.size) else {
        return Err(proof_error("index and size are required unsigned integers"));
    };
    let (leaf, hashes) = log.inclusion_proof(index, size).map_err(proof_error)?;
    Ok(Json(json!({
        "index": index,
        "size": size,
        "leaf_hash": hex::encode(leaf),
        "hashes": hashes.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    })))
}

/// Most indices one `POST /v1/logs/{ns}/proof/inclusion` may ask for; more
/// is refused whole (400 `too_many_indices`). Bounds the work and the answer
/// (about 1 KB per proof in a large log) of one request.
pub const MAX_PROOF_BATCH: usize = 1000;

/// Largest body of a `POST /v1/logs/{ns}/proof/inclusion` (or
/// `max_body_bytes`, if lower); larger → 413 `body_too_large`. A full batch
/// of 20-digit indices is about 22 KB.
pub const MAX_PROOF_BATCH_BODY_BYTES: usize = 64 << 10;

/// Batch proof requests computed at once; others wait their turn, up to
/// [`PROOF_BATCH_WAIT`], then get 503 `busy`. One batch is up to a thousand
/// proofs: this keeps them from taking every blocking thread and core.
pub const PROOF_BATCHES_AT_ONCE: usize = 4;
/// How long a batch proof request waits for its turn.
pub const PROOF_BATCH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionBatchRequest {
    size: u64,
    indices: Vec<u64>,
}

/// `POST /v1/logs/{ns}/proof/inclusion` `{"size": N, "indices": [i, ...]}`
/// (any role of ns): the inclusion proofs of `indices` in the tree of `size`,
/// in request order, each as the GET gives it; duplicates are answered as
/// asked. All or nothing: one index the GET would refuse fails the request
/// with the GET's error. An addition to SPEC's API, for batch verification.
async fn inclusion_batch(
    State(st): State<AppState>,
    ns: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let ns = path_ns(ns)?;
    let log = readable_log(&st, &headers, &ns).await?;
    let body = body_bytes(
        body,
        MAX_PROOF_BATCH_BODY_BYTES.min(st.limits.max_body_bytes),
    )?;
    let req: InclusionBatchRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    if req.indices.is_empty() {
        return Err(ApiError::bad_request(
            "no_indices",
            "indices must list at least one leaf index",
        ));
    }
    if req.indices.len() > MAX_PROOF_BATCH {
        return Err(ApiError::bad_request(
            "too_many_indices",
            format!(
                "at most {MAX_PROOF_BATCH} indices per request ({} given)",
                req.indices.len()
            ),
        ));
    }
    let size = req.size;
    let permit = tokio::time::timeout(PROOF_BATCH_WAIT, st.proof_batches.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::unavailable("busy", "too many batch proof requests; retry shortly")
        })?;
    // Up to a thousand proofs: off the async threads.
    let proofs = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        req.indices
            .iter()
            .map(|&index| {
                let (leaf, hashes) = log.inclusion_proof(index, size).map_err(proof_error)?;
                Ok(json!({
                    "index": index,
                    "leaf_hash": hex::encode(leaf),
                    "hashes": hashes.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
                }))
            })
            .collect::<Result<Vec<Value>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::unavailable("internal", e.to_string()))??;
    Ok(Json(json!({"size": size, "proofs": proofs})))
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: Option<u64>,
    to: Option<u64>,
}

async fn consistency(
    State(st): State<AppState>,
    ns: Result<Path<String>, PathRejection>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let ns = path_ns(ns)?;
    let log = readable_log(&st, &headers, &ns).await?;
    let q = query(q)?;
    let (Some(from), Some(to)) = (q.from, q.to) else {
        return Err(proof_error("from and to are required unsigned integers"));
    };
    let hashes = log.consistency_proof(from, to).map_err(proof_error)?;
    Ok(Json(json!({
        "from": from,
        "to": to,
        "hashes": hashes.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    })))
}

/// Maps axum's body rejection (e.g. over the raw size limit) to our JSON error.
fn body_bytes(b: Result<Bytes, BytesRejection>, max: usize) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                "body_too_large",
                format!("request body exceeds {max} bytes"),
            )
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })
}

/// Maps a path rejection (e.g. bad percent-encoding) to our JSON error.
fn path_ns(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(ns)| ns)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
}

/// Maps a query-string rejection to our JSON error.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}
