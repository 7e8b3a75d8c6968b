//! The evidence endpoints any role of a namespace may read: the vault's
//! description, the signed checkpoint, and inclusion (single and batch) and
//! consistency proofs (SPEC section 3).

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tracevault_vault::tile_proofs::ProofError;
use tracevault_vault::token::Role;
use tracevault_vault::validate_namespace;

use crate::{ApiError, AppState, auth, body_bytes, path_ns, query};

pub(crate) async fn vault_info(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    let all = st.vault.namespaces().await?;
    let visible: Vec<_> = all
        .into_iter()
        .filter(|n| claims.allows_ns(&n.ns))
        .collect();
    let witnesses = st.witnessing.as_ref().map(|w| {
        let p = w.policy();
        json!({
            "threshold": p.threshold,
            "witnesses": p.witnesses.iter().map(|c| c.verifier_key()).collect::<Vec<_>>(),
        })
    });
    Ok(Json(json!({
        "origin": st.vault.meta().origin,
        "log_public_key": B64.encode(st.vault.public_key().to_bytes()),
        "namespaces": visible,
        "witness_policy": witnesses,
    })))
}

/// Checks that the caller may read the evidence of `ns`: any role of the
/// namespace, or anyone when `public_log` is set (checkpoints and tiles
/// only; see docs/configuration.md).
fn may_read_evidence(
    st: &AppState,
    headers: &HeaderMap,
    ns: &str,
    public: bool,
) -> Result<(), ApiError> {
    if !public {
        let claims = auth::authenticate(st, headers)?;
        auth::authorize(
            &claims,
            &[Role::Writer, Role::Reader, Role::Approver, Role::Admin],
            Some(ns),
        )?;
    }
    validate_namespace(ns, true)?;
    Ok(())
}

/// Resolves the log of an existing namespace for a token allowed to see it.
async fn readable_log(
    st: &AppState,
    headers: &HeaderMap,
    ns: &str,
) -> Result<tracevault_vault::LogView, ApiError> {
    may_read_evidence(st, headers, ns, false)?;
    st.vault.view(ns).await?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_namespace",
            format!("namespace {ns} has no entries yet"),
        )
    })
}

pub(crate) async fn checkpoint(
    State(st): State<AppState>,
    ns: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ns = path_ns(ns)?;
    may_read_evidence(&st, &headers, &ns, st.public_log)?;
    let log = st.vault.view(&ns).await?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_namespace",
            format!("namespace {ns} has no entries yet"),
        )
    })?;
    let (_, text) = log.latest_checkpoint().ok_or_else(|| {
        ApiError::not_found(
            "no_checkpoint",
            format!("namespace {ns} has no checkpoint yet"),
        )
    })?;
    // With a witness policy, the checkpoint is the newest one it cosigned.
    let text = match &st.witnessing {
        None => text,
        Some(w) => {
            w.cosigned(&st.vault, &ns)
                .await
                .ok_or_else(|| {
                    ApiError::unavailable(
                        "checkpoint_not_witnessed",
                        format!("no checkpoint of {ns} is cosigned by the witness policy yet"),
                    )
                })?
                .1
        }
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET /v1/logs/{ns}/tile/<L>/<N>[.p/<W>]`: a C2SP tlog-tiles hash tile.
/// Tiles never change once written (a partial tile is named by its width),
/// so they are cacheable for good.
pub(crate) async fn tile(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (ns, rest) = p
        .map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    may_read_evidence(&st, &headers, &ns, st.public_log)?;
    let path = format!("tile/{rest}");
    let id = tracevault_vault::tiles::TileId::parse(&path).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_tile_path",
            format!("{path} is not a tile path (tile/<L>/<N>[.p/<W>], C2SP tlog-tiles)"),
        )
    })?;
    let bytes =
        st.vault.reader().tile(&ns, id).await?.ok_or_else(|| {
            ApiError::not_found("no_tile", format!("namespace {ns} has no {path}"))
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct InclusionQuery {
    index: Option<u64>,
    size: Option<u64>,
}

fn proof_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_proof_request", e.to_string())
}

/// A proof that could not be given: the request's fault (400), or the
/// store's (a tile missing or unreadable: the vault error's status).
fn proof_failed(e: ProofError) -> ApiError {
    match e {
        ProofError::Invalid(m) => proof_error(m),
        ProofError::Unavailable(v) => v.into(),
    }
}

pub(crate) async fn inclusion(
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
    let (leaf, hashes) = log
        .inclusion_proof(index, size)
        .await
        .map_err(proof_failed)?;
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
pub(crate) struct InclusionBatchRequest {
    size: u64,
    indices: Vec<u64>,
}

/// `POST /v1/logs/{ns}/proof/inclusion` `{"size": N, "indices": [i, ...]}`
/// (any role of ns): the inclusion proofs of `indices` in the tree of `size`,
/// in request order, each as the GET gives it; duplicates are answered as
/// asked. All or nothing: one index the GET would refuse fails the request
/// with the GET's error. An addition to SPEC's API, for batch verification.
pub(crate) async fn inclusion_batch(
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
    let rt = tokio::runtime::Handle::current();
    let proofs = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        req.indices
            .iter()
            .map(|&index| {
                let (leaf, hashes) = rt
                    .block_on(log.inclusion_proof(index, size))
                    .map_err(proof_failed)?;
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
pub(crate) struct ConsistencyQuery {
    from: Option<u64>,
    to: Option<u64>,
}

pub(crate) async fn consistency(
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
    let hashes = log
        .consistency_proof(from, to)
        .await
        .map_err(proof_failed)?;
    Ok(Json(json!({
        "from": from,
        "to": to,
        "hashes": hashes.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    })))
}
