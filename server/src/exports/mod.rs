//! Exports under approval over HTTP (`docs/exports.md`, SPEC section 3):
//! `POST /v1/exports` (reader), `GET /v1/exports[?state=]`,
//! `GET /v1/exports/{id}`, `POST /v1/exports/{id}/approve|deny` (approver),
//! `GET /v1/exports/{id}/bundle` (the requester, once approved).
//!
//! Every step is checked by the workflow (`tracevault_query::export::workflow`),
//! recorded in `_audit` session `exports`, and only then applied; at start-up
//! the state is rebuilt from that history. Steps are checked and recorded by
//! the node holding `_audit` (the others call it: [`STEP_PATH`]), against a
//! state that has caught up with every step published.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::{ApiError, AppState, StartError, audit, auth};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use tracevault_query::export::workflow::{
    Actor, ExportPolicy, Exports, Selection, State as ExportState, Transition,
};
use tracevault_query::export::{BundleInput, BundleRow, BundleWriter, selection_digest};
use tracevault_query::masking::Masker;
use tracevault_query::sql::{Access, QueryError};
use tracevault_vault::Vault;
use tracevault_vault::token::{Claims, Role};

use crate::cluster::peer;
use crate::follow::Synced;
use crate::read::{ReadContext, claim_map, role_name, window};

/// The internal route through which the other nodes have a step checked
/// and recorded by the node holding `_audit`.
pub const STEP_PATH: &str = "/v1/internal/exports/step";

/// `_audit` session holding the history of every export.
pub use crate::audit::EXPORTS as EXPORTS_SESSION;

/// The workflow state and the key that signs bundles.
pub struct ExportContext {
    exports: Arc<tokio::sync::Mutex<Synced<Exports>>>,
    key: SigningKey,
}

impl ExportContext {
    /// Rebuilds the workflow from `_audit` (fail closed: an unreadable
    /// history stops the start).
    pub async fn load(
        vault: &Vault,
        policy: ExportPolicy,
        key: SigningKey,
    ) -> Result<Self, StartError> {
        policy
            .check()
            .map_err(|e| StartError(format!("config: {e}")))?;
        let mut exports = Exports::new(policy);
        // What the store had before the history is read: later steps are
        // caught up with (those read twice are applied once).
        let published = vault
            .reader()
            .published_size(audit::AUDIT_NS)
            .await
            .map_err(|e| StartError(format!("reading _audit's checkpoint: {e}")))?;
        let entries = vault
            .session_entries(audit::AUDIT_NS, EXPORTS_SESSION)
            .await
            .map_err(|e| StartError(format!("reading the export history from _audit: {e}")))?;
        for e in entries {
            let t: Option<Transition> = e
                .content
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok());
            match t {
                Some(t) => exports.apply_recorded(&t, e.idx),
                None => {
                    return Err(StartError(format!(
                        "_audit entry {} of session exports is not a workflow step",
                        e.idx
                    )));
                }
            }
        }
        Ok(ExportContext {
            exports: Arc::new(tokio::sync::Mutex::new(Synced::new(exports, published))),
            key,
        })
    }
}

impl ExportContext {
    /// Catches up before answering a read (a node that has not followed a
    /// step yet answers as the node that recorded it would); a store that
    /// cannot be read leaves the answer as this node knows it.
    pub async fn catch_up_for_read(&self, vault: &Vault) {
        if let Err(e) = self.follow(vault).await {
            tracing::warn!("catching up with _audit: {e}");
        }
    }

    /// Applies the export steps other nodes recorded in `_audit` and
    /// published since the last call: every node shows the same requests.
    pub async fn follow(&self, vault: &Vault) -> Result<(), String> {
        let mut x = self.exports.lock().await;
        catch_up(&mut x, vault).await
    }
}

/// Applies the published export steps `x` has not applied yet.
async fn catch_up(x: &mut Synced<Exports>, vault: &Vault) -> Result<(), String> {
    x.catch_up(vault, EXPORTS_SESSION, |x, content, idx| {
        let t: Transition = serde_json::from_str(content).map_err(|_| "not an export step")?;
        x.apply_recorded(&t, idx);
        Ok(())
    })
    .await
}

/// The export routes, merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/exports", post(request).get(list))
        .route("/v1/exports/{id}", get(status))
        .route("/v1/exports/{id}/approve", post(approve))
        .route("/v1/exports/{id}/deny", post(deny))
        .route("/v1/exports/{id}/bundle", get(bundle))
        .route(STEP_PATH, post(step_here))
}

/// A step another node has this one (holding `_audit`) check and record,
/// for a token that node authenticated.
#[derive(serde::Serialize, serde::Deserialize)]
struct StepCall {
    claims: Claims,
    step: Transition,
}

async fn step_here(
    State(st): State<AppState>,
    Extension(xc): Extension<Arc<ExportContext>>,
    Extension(_node): Extension<peer::Caller>,
    body: bytes::Bytes,
) -> Result<Json<Value>, ApiError> {
    let call: StepCall = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_call", e.to_string()))?;
    Ok(Json(commit_here(&st, &xc, &call.claims, call.step).await?))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Has step `t` checked, recorded and applied where `_audit` is written:
/// here ([`commit_here`]) or by the node holding it, whose answer is this
/// node's too (then this node catches up, so that it shows the step at once
/// when it is published). Returns the request's view after.
async fn commit(
    st: &AppState,
    xc: &Arc<ExportContext>,
    claims: &Claims,
    t: Transition,
) -> Result<Value, ApiError> {
    let call = StepCall {
        claims: claims.clone(),
        step: t.clone(),
    };
    let (view, elsewhere) = audit::decide_where_written(&st.vault, STEP_PATH, &call, || {
        commit_here(st, xc, claims, t)
    })
    .await?;
    if elsewhere && let Err(e) = xc.follow(&st.vault).await {
        tracing::warn!("catching up with _audit after a step: {e}");
    }
    Ok(view)
}

/// Catches up with `_audit`, checks `t`, records it, then applies it, all
/// under the workflow lock and in a task of its own: a client that goes
/// away cannot leave a step recorded but not applied. Only on the node
/// holding `_audit` (recording fails elsewhere).
async fn commit_here(
    st: &AppState,
    xc: &Arc<ExportContext>,
    claims: &Claims,
    t: Transition,
) -> Result<Value, ApiError> {
    let (st, exports, claims) = (st.clone(), xc.exports.clone(), claims.clone());
    let task = tokio::spawn(async move {
        let mut x = exports.lock().await;
        catch_up(&mut x, &st.vault).await.map_err(|e| {
            ApiError::unavailable("store_unavailable", format!("catching up with _audit: {e}"))
        })?;
        let at = now();
        if x.policy().require_person && claims.person.is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "person_required",
                "[exports] require_person is set: this token names no person (person claim or the issuer's identity_claim)",
            ));
        }
        x.check(&t, &|ns| claims.allows_ns(ns), at)
            .map_err(ApiError::from)?;
        let name = t.event_name();
        let content = serde_json::to_value(&t)
            .map_err(|e| ApiError::unavailable("internal", e.to_string()))?;
        audit::record_step(
            &st.vault,
            EXPORTS_SESSION,
            name,
            &claims.sub,
            content,
            |idx| x.apply_recorded(&t, idx),
        )
        .await?;
        let r = x
            .get(t.id())
            .ok_or_else(|| ApiError::unavailable("internal", "the step was not applied"))?;
        Ok::<Value, ApiError>(view(r, x.state(r, at)))
    });
    task.await
        .map_err(|e| ApiError::unavailable("internal", e.to_string()))?
}

/// Records the expiry of every request past its TTL or download window,
/// every `every` (and once at start-up), on the node holding `_audit`, so that the end of a request is an
/// entry in its `_audit` history like every other step. Runs until the
/// server stops; a failed write is retried at the next round.
pub fn spawn_expiry_recorder(st: AppState, xc: Arc<ExportContext>, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Recorded where `_audit` is written, on a state caught up with it.
            match audit::holder(&st.vault).await {
                Ok(None) => {}
                Ok(Some(_)) => continue,
                Err(e) => {
                    tracing::warn!("export expiries: {}", e.message);
                    continue;
                }
            }
            let mut x = xc.exports.lock().await;
            if let Err(e) = catch_up(&mut x, &st.vault).await {
                tracing::warn!("export expiries: catching up with _audit: {e}");
                continue;
            }
            for t in x.due_expiries(now()) {
                let content = match serde_json::to_value(&t) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "encoding an export expiry");
                        continue;
                    }
                };
                let recorded = audit::record_step(
                    &st.vault,
                    EXPORTS_SESSION,
                    t.event_name(),
                    audit::SERVER,
                    content,
                    |idx| x.apply_recorded(&t, idx),
                )
                .await;
                match recorded {
                    Ok(_) => tracing::info!(export = t.id(), "export expired"),
                    Err(e) => {
                        tracing::warn!(export = t.id(), error = %e, "recording an export expiry failed; retrying later");
                        break;
                    }
                }
            }
        }
    });
}

/// The longest reason or comment kept with a step.
const MAX_TEXT_BYTES: usize = 4096;

fn check_text(what: &'static str, code: &'static str, text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ApiError::bad_request(
            code,
            format!(
                "the {what} is {} bytes; at most {MAX_TEXT_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(())
}

fn view(r: &tracevault_query::export::workflow::Request, state: ExportState) -> Value {
    json!({
        "id": r.id, "state": state, "namespace": r.ns, "requester": r.requester,
        "reason": r.reason, "selection": r.selection, "requested_at": r.requested_at,
        "approvals": r.approvals.iter().map(|(a, at, c)| json!({"by": a, "at": at, "comment": c})).collect::<Vec<_>>(),
        "denied": r.denied.as_ref().map(|(a, at, c)| json!({"by": a, "at": at, "comment": c})),
        "approved_at": r.approved_at, "downloads": r.downloads, "expired_at": r.expired_at,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    namespace: String,
    sql: Option<String>,
    session_id: Option<String>,
    reason: String,
}

/// What a selection is: `sql` or `session` with its text, the checkpoint
/// size it is taken below, and the requester's window.
pub(crate) struct Pick<'a> {
    pub(crate) by: &'a str,
    pub(crate) value: &'a str,
    pub(crate) size: u64,
    pub(crate) window: (Option<i64>, Option<i64>),
}

/// The selection's rows: the entries of `ns` below `size` that the
/// requester's SQL (or session) yields under its access, in index order,
/// with the digest of their `(idx, leaf_hash)` list and the newest
/// `received_at` among them. Exports and erasure orders select this way.
pub(crate) async fn select(
    st: &AppState,
    rc: &ReadContext,
    claims: &Claims,
    ns: &str,
    pick: Pick<'_>,
) -> Result<(Vec<u64>, String, Option<i64>), ApiError> {
    let Pick {
        by,
        value,
        size,
        window,
    } = pick;
    let inner = match by {
        "session" => format!(
            "SELECT idx FROM traces WHERE session_id = '{}'",
            value.replace('\'', "''")
        ),
        _ => value.to_string(),
    };
    // The selection on lines of its own, so a trailing `--` comment cannot
    // swallow the wrapper (the bounds are enforced again below anyway).
    let q = format!("SELECT DISTINCT idx FROM (\n{inner}\n) q WHERE idx < {size} ORDER BY idx");
    let access = Access {
        namespaces: vec![ns.to_string()],
        from_us: window.0,
        to_us: window.1,
        diagnostics: false,
    };
    // A query like any other: a slot (the requester's), and where queries run.
    let slot = rc.take_slot(claims)?;
    st.charge_read(claims, &q)?;
    let (outcome, _, _) = rc.run_sql(&st.vault, claims, &access, &q, slot).await;
    let result = outcome.map_err(|e| match e {
        QueryError::ScanTooLarge(..)
        | QueryError::ResultTooLarge(_)
        | QueryError::ResultTooManyBytes(_) => {
            ApiError::too_large("selection_too_large", e.to_string())
        }
        QueryError::Timeout(_) => ApiError::unavailable("query_timeout", e.to_string()),
        QueryError::Vault(v) => v.into(),
        e => ApiError::bad_request(
            "invalid_selection",
            format!("the selection must be SQL returning the idx column of traces: {e}"),
        ),
    })?;
    let mut wanted = BTreeSet::new();
    for b in &result.batches {
        let col = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .ok_or_else(|| {
                ApiError::bad_request("invalid_selection", "idx must be the traces column idx")
            })?;
        wanted.extend(col.iter().flatten());
    }
    // Whatever indices the SQL produced, only rows the requester may see
    // (its window, below the frozen size) are exported.
    wanted.retain(|i| *i < size);
    // Read a chunk of entries at a time: only the index and leaf hash of
    // each row are kept.
    let wanted: Vec<u64> = wanted.into_iter().collect();
    let mut kept = Vec::with_capacity(wanted.len());
    let mut newest: Option<i64> = None;
    for chunk in wanted.chunks(SELECT_CHUNK) {
        let entries = st
            .vault
            .entries_at(ns, Arc::new(chunk.iter().copied().collect()))
            .await?;
        for e in entries
            .iter()
            .filter(|e| access.admits(&e.ns, e.received_at))
        {
            newest = newest.max(Some(e.received_at));
            kept.push((e.idx, e.leaf_hash));
        }
    }
    let digest = selection_digest(kept.iter().copied());
    Ok((kept.into_iter().map(|(i, _)| i).collect(), digest, newest))
}

/// The bytes of `file`, in chunks of 64 KiB, as a body stream.
fn file_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    futures::stream::try_unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 << 10];
        let n = f.read(&mut buf).await?;
        buf.truncate(n);
        Ok((n > 0).then(|| (bytes::Bytes::from(buf), f)))
    })
}

/// Entries read at once while selecting and while writing a bundle.
const SELECT_CHUNK: usize = 4096;

fn masker_for(rc: &ReadContext, c: &Claims) -> Arc<Masker> {
    let profile = rc.policy.profile_for(role_name(c), &claim_map(c));
    Arc::new(Masker::new(profile, &rc.hash_key))
}

async fn request(
    State(st): State<AppState>,
    Extension(rc): Extension<Arc<ReadContext>>,
    Extension(xc): Extension<Arc<ExportContext>>,
    headers: HeaderMap,
    body: Result<Json<RequestBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Reader], None)?;
    xc.catch_up_for_read(&st.vault).await;
    let Json(b) = body.map_err(|e| ApiError::bad_request("invalid_json", e.body_text()))?;
    auth::authorize(&claims, &[Role::Reader], Some(&b.namespace))?;
    tracevault_vault::validate_namespace(&b.namespace, false)?;
    if b.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason_required",
            "an export needs a reason",
        ));
    }
    check_text("reason", "reason_too_long", &b.reason)?;
    let (by, value) = match (&b.sql, &b.session_id) {
        (Some(s), None) => ("sql", s.clone()),
        (None, Some(s)) => ("session", s.clone()),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_selection",
                "give exactly one of sql and session_id",
            ));
        }
    };
    if value.len() > rc.query.max_sql_bytes {
        return Err(ApiError::too_large(
            "sql_too_large",
            "the selection is too long",
        ));
    }
    let size = match st.vault.view(&b.namespace).await? {
        Some(v) => v.latest_checkpoint().map_or(0, |c| c.0),
        None => 0,
    };
    if size == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_export",
            format!("namespace {} has no signed checkpoint yet", b.namespace),
        ));
    }
    let win = window(&claims)?;
    let masker = masker_for(&rc, &claims);
    let (indices, digest, _) = select(
        &st,
        &rc,
        &claims,
        &b.namespace,
        Pick {
            by,
            value: &value,
            size,
            window: win,
        },
    )
    .await?;
    if indices.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "empty_selection",
            "the selection holds no rows this token may see (its namespace, window and the latest checkpoint)",
        ));
    }
    let mut id = [0u8; 12];
    tracevault_vault::keys::random_bytes(&mut id)
        .map_err(|e| ApiError::unavailable("internal", e.to_string()))?;
    let t = Transition::Requested {
        id: hex::encode(id),
        ns: b.namespace.clone(),
        by: Actor::from(&claims),
        reason: b.reason.clone(),
        selection: Selection {
            by: by.into(),
            value,
            size,
            rows: indices.len() as u64,
            digest: digest.clone(),
            from_us: win.0,
            to_us: win.1,
        },
        profile: masker.profile().name.clone(),
        policy: *xc.exports.lock().await.policy(),
        at: now(),
    };
    let id = t.id().to_string();
    commit(&st, &xc, &claims, t).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "state": "pending", "rows": indices.len(), "selection_digest": digest})),
    )
        .into_response())
}

/// Exports listed per page by default.
const LIST_DEFAULT: usize = 100;
/// Most exports listed per page.
const LIST_MAX: usize = 1000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    /// Page size (1 to [`LIST_MAX`], default [`LIST_DEFAULT`]).
    limit: Option<usize>,
    /// Start after this export id (the previous page's `next`).
    after: Option<String>,
}

async fn list(
    State(st): State<AppState>,
    Extension(xc): Extension<Arc<ExportContext>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Reader, Role::Approver, Role::Admin], None)?;
    xc.catch_up_for_read(&st.vault).await;
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query_string", e.body_text()))?;
    let limit = q.limit.unwrap_or(LIST_DEFAULT);
    if !(1..=LIST_MAX).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit is 1 to {LIST_MAX}"),
        ));
    }
    let want = match q.state.as_deref() {
        None => None,
        Some(s) => Some(
            serde_json::from_value::<ExportStateName>(Value::String(s.into()))
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_state",
                        "state is pending, approved, denied, expired or downloaded",
                    )
                })?
                .0,
        ),
    };
    let x = xc.exports.lock().await;
    let me = Actor::from(&claims);
    let mut page: Vec<(String, Value)> = x
        .list(None, want, now())
        .filter(|(r, _)| q.after.as_deref().is_none_or(|a| r.id.as_str() > a))
        .filter(|(r, _)| match claims.role {
            Role::Reader => r.requester == me,
            _ => claims.allows_ns(&r.ns),
        })
        .take(limit + 1)
        .map(|(r, s)| (r.id.clone(), view(r, s)))
        .collect();
    // One more than asked tells whether a next page exists.
    let next = (page.len() > limit).then(|| {
        page.truncate(limit);
        page.last().map(|(id, _)| id.clone())
    });
    let items: Vec<Value> = page.into_iter().map(|(_, v)| v).collect();
    Ok(Json(json!({"exports": items, "next": next.flatten()})))
}

/// `?state=` names.
struct ExportStateName(ExportState);

impl<'de> serde::Deserialize<'de> for ExportStateName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let map: BTreeMap<&str, ExportState> = [
            ("pending", ExportState::Pending),
            ("approved", ExportState::Approved),
            ("denied", ExportState::Denied),
            ("expired", ExportState::Expired),
            ("downloaded", ExportState::Downloaded),
        ]
        .into_iter()
        .collect();
        map.get(s.as_str())
            .copied()
            .map(ExportStateName)
            .ok_or_else(|| serde::de::Error::custom("unknown state"))
    }
}

async fn status(
    State(st): State<AppState>,
    Extension(xc): Extension<Arc<ExportContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Reader, Role::Approver, Role::Admin], None)?;
    xc.catch_up_for_read(&st.vault).await;
    let x = xc.exports.lock().await;
    let not_found = || ApiError::not_found("no_such_export", format!("no export {id}"));
    let r = x.get(&id).ok_or_else(not_found)?;
    let visible = match claims.role {
        Role::Reader => r.requester == Actor::from(&claims),
        _ => claims.allows_ns(&r.ns),
    };
    if !visible {
        return Err(not_found());
    }
    Ok(Json(view(r, x.state(r, now()))))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    comment: String,
}

async fn decide(
    st: AppState,
    xc: Arc<ExportContext>,
    headers: HeaderMap,
    id: String,
    body: Option<Json<Decision>>,
    approve: bool,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Approver], None)?;
    let comment = body.map(|Json(d)| d.comment).unwrap_or_default();
    check_text("comment", "comment_too_long", &comment)?;
    let t = if approve {
        Transition::Approved {
            id: id.clone(),
            by: Actor::from(&claims),
            comment,
            at: now(),
        }
    } else {
        Transition::Denied {
            id: id.clone(),
            by: Actor::from(&claims),
            comment,
            at: now(),
        }
    };
    Ok(Json(commit(&st, &xc, &claims, t).await?))
}

async fn approve(
    State(st): State<AppState>,
    Extension(xc): Extension<Arc<ExportContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Result<Json<Value>, ApiError> {
    decide(st, xc, headers, id, body, true).await
}

async fn deny(
    State(st): State<AppState>,
    Extension(xc): Extension<Arc<ExportContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Result<Json<Value>, ApiError> {
    decide(st, xc, headers, id, body, false).await
}

/// Whether window `outer` holds all of window `inner` (bounds in
/// microseconds, `None` unbounded).
fn window_covers(outer: (Option<i64>, Option<i64>), inner: (Option<i64>, Option<i64>)) -> bool {
    let from_ok = match (outer.0, inner.0) {
        (None, _) => true,
        (Some(o), Some(i)) => i >= o,
        (Some(_), None) => false,
    };
    let to_ok = match (outer.1, inner.1) {
        (None, _) => true,
        (Some(o), Some(i)) => i <= o,
        (Some(_), None) => false,
    };
    from_ok && to_ok
}

async fn bundle(
    State(st): State<AppState>,
    Extension(rc): Extension<Arc<ReadContext>>,
    Extension(xc): Extension<Arc<ExportContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Reader], None)?;
    xc.catch_up_for_read(&st.vault).await;
    // Checked now (cheap refusals first), and again when recorded: the
    // bundle is built without holding the workflow lock.
    let t = Transition::Downloaded {
        id: id.clone(),
        by: Actor::from(&claims),
        at: now(),
    };
    let r = {
        let x = xc.exports.lock().await;
        x.check(&t, &|ns| claims.allows_ns(ns), now())
            .map_err(ApiError::from)?;
        x.get(&id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("no_such_export", format!("no export {id}")))?
    };
    // The frozen selection, re-run on the same snapshot: what the approvers
    // saw is exactly what leaves, or nothing does.
    let sel = &r.selection;
    let masker = masker_for(&rc, &claims);
    if masker.profile().name != r.profile {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "profile_changed",
            format!(
                "the export was requested under masking profile {}, this token gets {}; request it again",
                r.profile,
                masker.profile().name
            ),
        ));
    }
    // The downloading token must still see every row the request could:
    // a narrower window now is narrower access, never read past.
    if !window_covers(window(&claims)?, (sel.from_us, sel.to_us)) {
        return Err(ApiError::forbidden(
            "window_changed",
            "this token's window no longer covers the window the export was requested under; request it again",
        ));
    }
    let (indices, digest, _) = select(
        &st,
        &rc,
        &claims,
        &r.ns,
        Pick {
            by: &sel.by,
            value: &sel.value,
            size: sel.size,
            window: (sel.from_us, sel.to_us),
        },
    )
    .await?;
    if digest != sel.digest {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "selection_changed",
            "the selection no longer yields the rows that were approved (it depends on time or randomness); request the export again",
        ));
    }
    let view = st.vault.view(&r.ns).await?.ok_or_else(|| {
        ApiError::unavailable("unavailable", format!("namespace {} cannot be read", r.ns))
    })?;
    let (size, checkpoint) = view
        .latest_checkpoint()
        .ok_or_else(|| ApiError::unavailable("unavailable", "no checkpoint"))?;
    // Under a witness policy the bundle carries the cosigned checkpoint,
    // which must cover the frozen selection.
    let (size, checkpoint) = match &st.witnessing {
        None => (size, checkpoint),
        Some(w) => w
            .cosigned(&st.vault, &r.ns)
            .await
            .filter(|(s, _)| *s >= sel.size)
            .ok_or_else(|| {
                ApiError::unavailable(
                    "checkpoint_not_witnessed",
                    "the witnesses have not cosigned a checkpoint covering this export yet; retry",
                )
            })?,
    };
    // The request's history, proven in `_audit` (the session id of a
    // session selection as the requester's profile shows it).
    let show_masker = masker.clone();
    let show = move |mut c: Value| {
        if c["selection"]["by"] == "session"
            && let Some(v) = c["selection"]["value"].as_str()
        {
            let shown = show_masker
                .mask_str("session_id", v)
                .map(|m| m.into_owned());
            c["selection"]["value"] = shown.map_or(Value::Null, Value::String);
        }
        c
    };
    let unavailable = |e: tracevault_query::export::ExportError| {
        ApiError::unavailable("unavailable", e.to_string())
    };
    let (history, audit_checkpoint) = match &st.witnessing {
        None => tracevault_query::export::history_for(
            &st.vault,
            &id,
            &show,
            std::time::Duration::from_secs(10),
        )
        .await
        .map_err(unavailable)?,
        // The history is proven against a cosigned `_audit` checkpoint, so
        // the witnesses vouch for the approvals as for the rows.
        Some(w) => {
            let (steps, need) = tracevault_query::export::history_steps(&st.vault, &id)
                .await
                .map_err(unavailable)?;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            let (size, note) = w
                .wait_cosigned(&st.vault, audit::AUDIT_NS, need, deadline)
                .await
                .ok_or_else(|| {
                    ApiError::unavailable(
                        "checkpoint_not_witnessed",
                        "the witnesses have not cosigned an _audit checkpoint covering this export's history yet; retry",
                    )
                })?;
            let lines = tracevault_query::export::history_lines(&st.vault, steps, size, &show)
                .await
                .map_err(unavailable)?;
            (lines, note)
        }
    };
    let input = BundleInput {
        export_id: id.clone(),
        ns: r.ns.clone(),
        checkpoint,
        size,
        selection_digest: sel.digest.clone(),
        requester: r.requester.sub.clone(),
        approvers: r.approvals.iter().map(|(a, _, _)| a.sub.clone()).collect(),
        created_at: chrono::Utc::now().to_rfc3339(),
        approvals: history,
        audit_checkpoint,
        rows: Vec::new(),
    };
    // Assembled in an unnamed file under the data directory, a chunk of
    // rows at a time, then streamed: memory does not grow with the export.
    let tmp_dir = st.vault.data_dir().join("tmp");
    let internal = |e: String| ApiError::unavailable("internal", e);
    std::fs::create_dir_all(&tmp_dir).map_err(|e| internal(e.to_string()))?;
    let mut file = tempfile::tempfile_in(&tmp_dir).map_err(|e| internal(e.to_string()))?;
    let key = xc.key.clone();
    let rt = tokio::runtime::Handle::current();
    let (vault, ns) = (st.vault.clone(), r.ns.clone());
    let file = tokio::task::spawn_blocking(move || {
        let mut w =
            BundleWriter::new(&input, &masker, &key, &tmp_dir).map_err(|e| e.to_string())?;
        for chunk in indices.chunks(SELECT_CHUNK) {
            let wanted = Arc::new(chunk.iter().copied().collect());
            let entries = rt
                .block_on(vault.entries_at(&ns, wanted))
                .map_err(|e| e.to_string())?;
            // The selection was just re-run and matched: every row is there.
            if entries.len() != chunk.len() {
                return Err(format!(
                    "{} of {} selected entries could be read",
                    entries.len(),
                    chunk.len()
                ));
            }
            let mut rows = Vec::with_capacity(entries.len());
            for e in entries {
                let (_, proof) = rt
                    .block_on(view.inclusion_proof(e.idx, size))
                    .map_err(|e| e.to_string())?;
                rows.push(BundleRow { entry: e, proof });
            }
            w.push(&rows).map_err(|e| e.to_string())?;
        }
        w.finish(&mut file).map_err(|e| e.to_string())?;
        std::io::Seek::rewind(&mut file).map_err(|e| e.to_string())?;
        Ok::<_, String>(file)
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(internal)?;
    let len = file.metadata().map_err(|e| internal(e.to_string()))?.len();
    // The token is checked again (revoked or expired while the bundle was
    // built: nothing leaves), then the download is recorded before the
    // bundle leaves (and refused if another download got there first).
    auth::check_live(&st, &claims)?;
    commit(&st, &xc, &claims, t).await?;
    let body = axum::body::Body::from_stream(file_stream(tokio::fs::File::from_std(file)));
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/x-tar".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"export-{id}.tar\""),
            ),
            (axum::http::header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}
