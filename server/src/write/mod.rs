//! The write doors: the native API (`POST /v1/logs/{ns}/events`, JSON and
//! NDJSON), live session streams ([`stream`]) and OTLP/HTTP ([`otlp`]), with
//! what every write request goes through first ([`shed_writes`]: the token
//! from the headers, a write slot, a deadline) and the per-token rate limit.

pub(crate) mod body;
pub(crate) mod otlp;
pub(crate) mod otlp_count;
pub(crate) mod stream;
pub(crate) mod upload;

use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use tracevault_vault::record::Prepared;
use tracevault_vault::token::Role;
use tracevault_vault::{note, validate_namespace};

use crate::{ApiError, AppState, auth, body_bytes, metrics, path_ns, query};

/// 429 with a `Retry-After` of `wait`: over the writer's rate limit.
pub(crate) fn rate_limited(wait: Duration) -> ApiError {
    crate::ratelimit::rate_limited(wait, "write")
}

/// Guards every write request before its body is read: the token must be
/// valid (401 otherwise, so unauthenticated clients can never hold a write
/// slot), and beyond `max_inflight_writes` concurrent writes, or
/// `max_inflight_writes_per_token` of one token, the answer is 503 with
/// `Retry-After`. The body must arrive whole within `write_timeout_s` of the
/// headers (408 otherwise), so slow senders cannot pin a slot; once it has,
/// the request runs to its answer whatever the time (its waits have their
/// own bounds: `overload_wait_ms`, `checkpoint_wait_ms`), so a `408` always
/// means nothing was appended ([`upload`]).
pub(crate) async fn shed_writes(
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
    let claims = match auth::authenticate(&st, req.headers()) {
        Ok(c) => c,
        Err(e) => return reject(e),
    };
    let Some(_own) = st.write_slots.try_take(&auth::budget_key(&claims)) else {
        return reject(ApiError::unavailable(
            "overloaded",
            format!(
                "this token already has {} write requests in flight; retry later",
                st.write_slots.per_key()
            ),
        ));
    };
    let Ok(_permit) = st.write_permits.clone().try_acquire_owned() else {
        return reject(ApiError::unavailable(
            "overloaded",
            "too many write requests in flight; retry later",
        ));
    };
    let limit = Duration::from_secs(st.limits.write_timeout_s.max(1));
    let received = upload::Received::default();
    let (parts, body) = req.into_parts();
    let req = axum::extract::Request::from_parts(parts, received.watch(body));
    let run = next.run(req);
    tokio::pin!(run);
    tokio::select! {
        resp = &mut run => resp,
        () = tokio::time::sleep(limit) => {
            // The route is not being polled here: if its body is not whole
            // yet, it has not appended anything, and dropping it is safe.
            if received.whole() {
                run.await
            } else {
                reject(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the request body did not arrive within {} s (upload too slow?); nothing was appended",
                        limit.as_secs()
                    ),
                ))
            }
        }
    }
}

/// Reads a write request's body, once everything the headers and path can
/// refuse it for has been checked (token, role, namespace, query): a writer
/// for one namespace sending to another is answered 403 without the server
/// taking its body. `max` is the route's `DefaultBodyLimit`, named here for
/// the error message.
pub(crate) async fn read_body(
    st: &AppState,
    req: axum::extract::Request,
    max: usize,
) -> Result<Bytes, ApiError> {
    use axum::extract::FromRequest;
    body_bytes(Bytes::from_request(req, st).await, max)
}

/// The answer to an append, serialized straight from the receipts (not
/// through a `serde_json::Value` tree: one map and three keys per event).
#[derive(serde::Serialize)]
struct Receipts<'a> {
    receipts: &'a [tracevault_vault::Receipt],
    #[serde(skip_serializing_if = "Option::is_none")]
    proofs: Option<&'a [String]>,
}

#[derive(Deserialize)]
pub(crate) struct AppendQuery {
    #[serde(default)]
    wait: Option<String>,
}

pub(crate) async fn append_events(
    State(st): State<AppState>,
    ns: Result<Path<String>, PathRejection>,
    q: Result<Query<AppendQuery>, QueryRejection>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    let ns = path_ns(ns)?;
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Writer], Some(&ns))?;
    let q = query(q)?;
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
    let body = read_body(&st, body, st.limits.max_body_bytes).await?;
    let started = std::time::Instant::now();
    let raw_len = body.len() as u64;
    // Refused before decoding when the token is already in debt; charged
    // (its events, not one more) once they are counted.
    st.rate_limit(&claims, 0)?;
    let limits = st.limits.clone();
    // Kept (a reference, not a copy) in case the namespace is held by
    // another node and the request is forwarded there as it came.
    let raw = body.clone();
    let hdrs = headers.clone();
    // Decompression, parsing, validation and payload hashing run off the async
    // threads and in parallel across requests; the sequencer only hashes the
    // small committed record.
    let _decoding = st
        .native_decoding
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("shutting_down", "the server is stopping"))?;
    let events = tokio::task::spawn_blocking(move || {
        let body = body::decode_body(&headers, body, limits.max_body_bytes)?;
        let events = body::parse_events(&headers, &body, &limits)?;
        Prepared::batch(events).map_err(|e| ApiError::unavailable("seal_failed", e.to_string()))
    })
    .await
    .map_err(|e| ApiError::unavailable("internal", e.to_string()))??;
    drop(_decoding);
    st.rate_limit(&claims, events.len() as u64)?;
    let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let receipts =
        match crate::cluster::append_or_forward(&st, &ns, events, &claims.sub, (pq, &hdrs, raw))
            .await?
        {
            crate::cluster::Appended::Here(r) => r,
            crate::cluster::Appended::Forwarded(resp) => return Ok(resp),
        };
    let n = receipts.iter().filter(|r| !r.duplicate).count() as u64;
    st.metrics
        .ingested(&ns, metrics::Source::Api, n, raw_len, started.elapsed());
    if !wait_checkpoint {
        return Ok(Json(Receipts {
            receipts: &receipts,
            proofs: None,
        })
        .into_response());
    }
    let log = st.vault.log(&ns).await?;
    let need = receipts.iter().map(|r| r.index + 1).max().unwrap_or(0);
    let timeout = Duration::from_millis(st.limits.checkpoint_wait_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let (size, note_text) = log.wait_published(need, timeout).await.ok_or_else(|| {
        ApiError::unavailable(
            "checkpoint_timeout",
            "events are durable but no checkpoint covered them in time; poll the checkpoint",
        )
    })?;
    // With a witness policy the receipt carries the cosigned checkpoint.
    let (size, note_text) = match &st.witnessing {
        None => (size, note_text),
        Some(w) => w
            .wait_cosigned(&st.vault, &ns, need, deadline)
            .await
            .ok_or_else(|| {
                ApiError::unavailable(
                    "checkpoint_timeout",
                    "events are durable and checkpointed but the witnesses have not cosigned them in time; poll the checkpoint",
                )
            })?,
    };
    let mut proofs = Vec::with_capacity(receipts.len());
    for r in &receipts {
        let (_, proof) = log
            .inclusion_proof(r.index, size)
            .await
            .map_err(|e| ApiError::unavailable("internal", e.to_string()))?;
        proofs.push(note::format_tlog_proof(r.index, &proof, &note_text));
    }
    Ok(Json(Receipts {
        receipts: &receipts,
        proofs: Some(&proofs),
    })
    .into_response())
}
