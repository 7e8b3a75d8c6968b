//! The write side of tracevault over HTTP (axum): appending events with
//! durable receipts, and the evidence endpoints (checkpoints, inclusion and
//! consistency proofs, vault description) that writers and third parties use
//! to check what the vault holds. SPEC sections 2 and 3.

pub mod audit;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod erasures;
mod error;
mod evidence;
pub mod exports;
pub mod fair;
pub mod follow;
pub mod listener;
pub mod metrics;
mod ops;
mod ratelimit;
pub mod read;
mod start;
mod throttle;
pub mod witness;
pub mod witnessing;
mod write;

pub use auth::external;
pub use evidence::{
    MAX_PROOF_BATCH, MAX_PROOF_BATCH_BODY_BYTES, PROOF_BATCH_WAIT, PROOF_BATCHES_AT_ONCE,
};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use tracevault_vault::Vault;
use tracevault_vault::token::{Claims, TokenIssuer};

pub use error::ApiError;
pub use start::Server;

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
    /// Largest body of a query, export, erasure, approval or batch-proof
    /// request (the body guard's limit; writes have `max_body_bytes`).
    pub max_request_body_bytes: usize,
    /// Bodies of those requests read at once (503 beyond): with the limit
    /// above, what slow senders holding connections can make the server hold.
    pub max_body_reads: usize,
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
    /// Write requests one token may have in flight at once; more get 503
    /// `overloaded`, so one writer (say, uploading slowly) cannot take every
    /// write slot and lock the others out.
    pub max_inflight_writes_per_token: usize,
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
    /// Native (JSON, NDJSON) requests parsed and sealed at once; others wait
    /// their turn. A request's events are held parsed (as JSON values, up to
    /// about 16 times the body for small numbers) until sealed: this bounds
    /// that memory across requests, as `max_otlp_decoding` does for OTLP.
    pub max_native_decoding: usize,
    /// Events per second one writer token may append (0 = unlimited); over
    /// it, 429 with `Retry-After` (session streams wait instead).
    pub writer_events_per_s: u64,
    /// Burst allowance of that rate, in events.
    pub writer_burst_events: u64,
    /// Reads recorded in `_audit` (queries, entry reads, export requests)
    /// per second one token may make (0 = unlimited); a query or export
    /// counts one more per 4 KiB of SQL. Over it, 429 with `Retry-After`:
    /// `_audit` is never erased, and each read adds to it.
    pub reader_requests_per_s: u64,
    /// Burst allowance of that rate, in requests.
    pub reader_burst_requests: u64,
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
    /// Longest time the body of a write request (appends, OTLP exports, token
    /// issues) may take to arrive, from its headers (408 beyond, and then
    /// nothing was appended); once the body is whole the request runs to its
    /// answer. Session streams are not bound by it.
    pub write_timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 << 20,
            max_request_body_bytes: 1 << 20,
            max_body_reads: 64,
            max_event_bytes: 1 << 20,
            max_events_per_request: 10_000,
            checkpoint_wait_ms: 10_000,
            max_token_ttl_s: 30 * 24 * 3600,
            max_inflight_writes: 64,
            max_inflight_writes_per_token: 32,
            max_otlp_body_bytes: 20 << 20,
            max_otlp_events_per_request: 100_000,
            max_otlp_items_per_request: 20_000,
            max_otlp_decoding: 4,
            max_native_decoding: 8,
            writer_events_per_s: 200_000,
            writer_burst_events: 400_000,
            reader_requests_per_s: 100,
            reader_burst_requests: 500,
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
    /// Write slots per token (`max_inflight_writes_per_token`).
    write_slots: Arc<fair::PerKeySlots>,
    /// Permits for open session streams (`max_streams`).
    pub stream_permits: Arc<tokio::sync::Semaphore>,
    /// Stream slots per token (`max_streams_per_token`).
    stream_slots: Arc<fair::PerKeySlots>,
    /// Permits for OTLP decoding (`max_otlp_decoding`).
    otlp_decoding: Arc<tokio::sync::Semaphore>,
    /// Permits for native request decoding (`max_native_decoding`).
    native_decoding: Arc<tokio::sync::Semaphore>,
    /// Permits for batch proof requests being computed
    /// ([`PROOF_BATCHES_AT_ONCE`]).
    proof_batches: Arc<tokio::sync::Semaphore>,
    /// The last object-store probe of `/readyz` and when it ran: anyone may
    /// ask for readiness, and each probe is a request to the store.
    ready_probe: Arc<tokio::sync::Mutex<Option<ops::Probe>>>,
    /// Per-token write rate limits.
    limiter: Arc<ratelimit::RateLimiter>,
    /// Per-token limits of the reads recorded in `_audit`.
    read_limiter: Arc<ratelimit::RateLimiter>,
    /// Counters for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Whether `/metrics` is served without a token (else: admin tokens only).
    pub metrics_public: bool,
    /// Whether checkpoints and hash tiles are served without a token
    /// (`public_log`; they hold only signed sizes, roots and salted hashes).
    pub public_log: bool,
    /// Revoked token ids (rebuilt from `_audit` at start-up).
    revocations: Arc<audit::Revocations>,
    /// Denied requests on their way to `_audit`.
    denied: Arc<audit::DeniedLog>,
    /// Set when the server stops: open session streams end (with their summary)
    /// so that the graceful shutdown is not held up by them.
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// External token issuers (JWKS); none unless configured.
    external: Arc<external::ExternalIssuers>,
    /// The witness client (`[witnesses]`); none unless configured: then
    /// the checkpoint served is the newest one the policy cosigned.
    pub witnessing: Option<Arc<witnessing::Witnessing>>,
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
            write_slots: Arc::new(fair::PerKeySlots::new(limits.max_inflight_writes_per_token)),
            stream_permits: Arc::new(tokio::sync::Semaphore::new(limits.max_streams.max(1))),
            stream_slots: Arc::new(fair::PerKeySlots::new(limits.max_streams_per_token)),
            otlp_decoding: Arc::new(tokio::sync::Semaphore::new(limits.max_otlp_decoding.max(1))),
            native_decoding: Arc::new(tokio::sync::Semaphore::new(
                limits.max_native_decoding.max(1),
            )),
            proof_batches: Arc::new(tokio::sync::Semaphore::new(PROOF_BATCHES_AT_ONCE)),
            ready_probe: Arc::default(),
            limiter: Arc::new(ratelimit::RateLimiter::new(
                limits.writer_events_per_s,
                limits.writer_burst_events,
            )),
            read_limiter: Arc::new(ratelimit::RateLimiter::new(
                limits.reader_requests_per_s,
                limits.reader_burst_requests,
            )),
            metrics: Arc::new(metrics::Metrics::default()),
            metrics_public: true,
            public_log: false,
            revocations: Arc::new(audit::Revocations::default()),
            denied,
            shutdown,
            external: Arc::default(),
            witnessing: None,
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
    /// Says when the server stops (for background tasks).
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Waits for the tasks that record in `_audit` at shutdown (the last
    /// denied-request counts), before the vault closes its logs.
    pub async fn finish_recording(&self, timeout: Duration) {
        self.denied.finish(timeout).await;
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Charges `events` to the writer token's rate limit; 429 when over it.
    fn rate_limit(&self, claims: &Claims, events: u64) -> Result<(), ApiError> {
        self.limiter
            .take(&auth::budget_key(claims), events)
            .map_err(write::rate_limited)
    }

    /// Charges a read that `_audit` records to the token's read rate limit:
    /// one, and one more per 4 KiB of `sql` as the record holds it (JSON
    /// text: a control character takes six bytes there); 429 when over it.
    pub(crate) fn charge_read(&self, claims: &Claims, sql: &str) -> Result<(), ApiError> {
        let recorded: usize = sql
            .bytes()
            .map(|b| match b {
                b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
                0..=0x1f => 6,
                _ => 1,
            })
            .sum();
        let cost = 1 + (recorded / 4096) as u64;
        self.read_limiter
            .take(&auth::budget_key(claims), cost)
            .map_err(|wait| ratelimit::rate_limited(wait, "read"))
    }
}

/// What one body guard allows ([`guard_body`]): the largest body of its
/// routes, and the bodies being read at once, shared by every guarded route.
#[derive(Clone)]
pub struct BodyGuard {
    st: AppState,
    max: usize,
    reads: Arc<tokio::sync::Semaphore>,
}

/// Guards the routes that take a small JSON body besides the writes
/// (queries, exports and erasures with their approvals, batch proofs, calls
/// between nodes): the token (or, for a node's call, its signature, which
/// covers the body's digest) is checked from the headers before any byte of
/// the body is read, so a caller that cannot act costs the server no body;
/// at most `max_body_reads` bodies are read at once (503 beyond; calls
/// between nodes are not counted); and the
/// body must arrive whole within `body_read_timeout_s` (408 otherwise) and
/// within the route's limit (413): `max_request_body_bytes`, or less for
/// batch proofs. A node's call, once its signature is checked, may be as
/// large as `max_body_bytes`. Requests without a body pass through.
pub async fn guard_body(
    State(g): State<BodyGuard>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let st = &g.st;
    let path = req.uri().path().to_string();
    let (caller, max) = if path.starts_with(cluster::peer::INTERNAL_PREFIX) {
        match cluster::peer::authenticate(&st.vault, &path, req.headers()) {
            Ok(c) => (Some(c), st.limits.max_body_bytes),
            Err(e) => return e.into_response(),
        }
    } else {
        if let Err(e) = auth::authenticate(st, req.headers()) {
            return e.into_response();
        }
        (None, g.max)
    };
    // (A node's call, its signature checked, does not wait behind readers'
    // bodies: slow readers must not stop the cluster's audit records.)
    let _reading = match caller {
        Some(_) => None,
        None => match g.reads.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                return ApiError::unavailable(
                    "overloaded",
                    "too many request bodies are being read at once; retry",
                )
                .retry_after(1)
                .into_response();
            }
        },
    };
    let (mut parts, body) = req.into_parts();
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
    let bytes = match tokio::time::timeout(limit, read).await {
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    limit.as_secs()
                ),
            )
            .into_response();
        }
        Ok(Err(e)) => return e.into_response(),
        Ok(Ok(bytes)) => bytes,
    };
    drop(_reading);
    if let Some(caller) = caller {
        if let Err(e) = caller.check_body(&bytes) {
            return e.into_response();
        }
        parts.extensions.insert(caller);
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Counts every failed response by status and stable code, and logs it.
async fn count_rejections(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    // Recorded in `_audit` (never erased) for denials, which anyone can
    // cause: the caller's id only when it is a plain short id.
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
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
                // Short, and only the characters of the API's paths: the
                // caller chooses it, and it stays in `_audit` for good.
                path: path
                    .chars()
                    .take(128)
                    .map(|c| match c {
                        'a'..='z' | 'A'..='Z' | '0'..='9' | '/' | '-' | '_' | '.' => c,
                        _ => '_',
                    })
                    .collect(),
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
    let reads = Arc::new(tokio::sync::Semaphore::new(
        state.limits.max_body_reads.max(1),
    ));
    let guard = |max: usize| BodyGuard {
        st: state.clone(),
        max,
        reads: reads.clone(),
    };
    let small = state.limits.max_request_body_bytes;
    let writes = Router::new()
        .route("/v1/tokens", post(auth::tokens::issue_token))
        .route("/v1/tokens/revoke", post(auth::tokens::revoke_token))
        .route("/v1/logs/{ns}/events", post(write::append_events))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            write::shed_writes,
        ));
    let otlp = Router::new()
        .route("/otlp/v1/traces", post(write::otlp::traces))
        .route("/otlp/v1/logs", post(write::otlp::logs))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            write::shed_writes,
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
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics_text))
        .route(
            "/v1/logs/{ns}/sessions/{session_id}/stream",
            post(write::stream::session_stream),
        )
        .route("/v1/vault", get(evidence::vault_info))
        .route("/v1/logs/{ns}/checkpoint", get(evidence::checkpoint))
        .route("/v1/logs/{ns}/tile/{*tile}", get(evidence::tile))
        .route(
            "/v1/logs/{ns}/proof/inclusion",
            get(evidence::inclusion)
                .post(evidence::inclusion_batch)
                .layer(DefaultBodyLimit::max(
                    MAX_PROOF_BATCH_BODY_BYTES.min(raw_limit),
                ))
                .layer(axum::middleware::from_fn_with_state(
                    guard(MAX_PROOF_BATCH_BODY_BYTES.min(small)),
                    guard_body,
                )),
        )
        .route(
            "/v1/logs/{ns}/proof/consistency",
            get(evidence::consistency),
        )
        .merge(writes)
        .merge(otlp)
        .merge(extra.route_layer(axum::middleware::from_fn_with_state(
            guard(small),
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

/// Maps axum's body rejection (e.g. over the raw size limit) to our JSON error.
pub(crate) fn body_bytes(b: Result<Bytes, BytesRejection>, max: usize) -> Result<Bytes, ApiError> {
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
pub(crate) fn path_ns(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(ns)| ns)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
}

/// Maps a query-string rejection to our JSON error.
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}
