//! Erasure orders over HTTP (`docs/erasure.md`, SPEC section 10):
//! `POST /v1/erasures` (admin), `GET /v1/erasures[?state=]`,
//! `GET /v1/erasures/{id}` (admin or approver of the namespace),
//! `POST /v1/erasures/{id}/approve|deny` (approver, never the requester).
//!
//! Every step is checked by [`tracevault_vault::erasure::Orders`], recorded
//! in `_audit` session `erasures`, and only then applied; at start-up the
//! orders are rebuilt from that history and approved orders not yet
//! performed are resumed. Retention runs ([`retention`]) record their own
//! orders, which need no approval.
//!
//! With several nodes, steps are checked and recorded by the node holding
//! `_audit` (the others call it: [`STEP_PATH`]), retention runs there too,
//! and an order is performed by the node holding its namespace.

pub mod retention;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tracevault_vault::approval::Actor;
use tracevault_vault::erasure::{
    ERASURES_SESSION, ErasurePolicy, IndexRanges, Order, Orders, Selection, State as OrderState,
    Step,
};
use tracevault_vault::token::{Claims, Role};
use tracevault_vault::{AUDIT_NS, Vault};

use crate::cluster::peer;
use crate::exports::{Pick, select};
use crate::follow::Synced;
use crate::read::ReadContext;
use crate::{ApiError, AppState, StartError, audit, auth};
use retention::RetentionConfig;

/// The internal route through which the other nodes have a step checked
/// and recorded by the node holding `_audit`.
pub const STEP_PATH: &str = "/v1/internal/erasures/step";

/// The orders and the retention settings.
pub struct ErasureContext {
    orders: tokio::sync::Mutex<Synced<Orders>>,
    /// Serialises the runs that change the store (one order at a time).
    running: tokio::sync::Mutex<()>,
    retention: RetentionConfig,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl ErasureContext {
    /// Rebuilds the orders from `_audit` (fail closed: an unreadable
    /// history stops the start).
    pub async fn load(
        vault: &Vault,
        policy: ErasurePolicy,
        retention: RetentionConfig,
    ) -> Result<Self, StartError> {
        policy
            .check()
            .map_err(|e| StartError(format!("config: {e}")))?;
        retention.check().map_err(StartError)?;
        let mut orders = Orders::new(policy);
        let published = vault
            .reader()
            .published_size(AUDIT_NS)
            .await
            .map_err(|e| StartError(format!("reading _audit's checkpoint: {e}")))?;
        let entries = vault
            .session_entries(AUDIT_NS, ERASURES_SESSION)
            .await
            .map_err(|e| StartError(format!("reading the erasure orders from _audit: {e}")))?;
        for e in entries {
            let step: Option<Step> = e
                .content
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok());
            match step {
                Some(s) => orders.apply(&s, e.idx),
                None => {
                    return Err(StartError(format!(
                        "_audit entry {} of session erasures is not an erasure step",
                        e.idx
                    )));
                }
            }
        }
        Ok(ErasureContext {
            orders: tokio::sync::Mutex::new(Synced::new(orders, published)),
            running: tokio::sync::Mutex::new(()),
            retention,
        })
    }
}

impl ErasureContext {
    /// Catches up before answering a read (a node that has not followed a
    /// step yet answers as the node that recorded it would); a store that
    /// cannot be read leaves the answer as this node knows it.
    pub async fn catch_up_for_read(&self, vault: &Vault) {
        if let Err(e) = self.follow(vault).await {
            tracing::warn!("catching up with _audit: {e}");
        }
    }

    /// Applies the erasure steps other nodes recorded in `_audit` and
    /// published since the last call: every node shows the same orders.
    pub async fn follow(&self, vault: &Vault) -> Result<(), String> {
        let mut o = self.orders.lock().await;
        catch_up(&mut o, vault).await
    }
}

/// Applies the published erasure steps `o` has not applied yet.
async fn catch_up(o: &mut Synced<Orders>, vault: &Vault) -> Result<(), String> {
    o.catch_up(vault, ERASURES_SESSION, |o, content, idx| {
        let s: Step = serde_json::from_str(content).map_err(|_| "not an erasure step")?;
        o.apply(&s, idx);
        Ok(())
    })
    .await
}

/// The erasure routes, merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/erasures", post(request).get(list))
        .route("/v1/erasures/{id}", get(status))
        .route("/v1/erasures/{id}/approve", post(approve))
        .route("/v1/erasures/{id}/deny", post(deny))
        .route(STEP_PATH, post(step_here))
}

/// A step another node has this one (holding `_audit`) check and record:
/// for a token that node authenticated, or for the server itself.
#[derive(serde::Serialize, serde::Deserialize)]
struct StepCall {
    claims: Option<Claims>,
    step: Step,
}

async fn step_here(
    State(st): State<AppState>,
    Extension(ec): Extension<Arc<ErasureContext>>,
    Extension(_node): Extension<peer::Caller>,
    body: bytes::Bytes,
) -> Result<Json<Value>, ApiError> {
    let call: StepCall = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_call", e.to_string()))?;
    commit_here(&st, &ec, call.claims.as_ref(), call.step).await?;
    Ok(Json(json!({"recorded": true})))
}

/// Has `step` checked, recorded and applied where `_audit` is written:
/// here ([`commit_here`]) or by the node holding it (then this node catches
/// up, so that it shows the step at once when it is published).
async fn commit(
    st: &AppState,
    ec: &Arc<ErasureContext>,
    claims: Option<&Claims>,
    step: Step,
) -> Result<(), ApiError> {
    let call = StepCall {
        claims: claims.cloned(),
        step: step.clone(),
    };
    let (_, elsewhere): (Value, bool) =
        audit::decide_where_written(&st.vault, STEP_PATH, &call, || async {
            commit_here(st, ec, claims, step)
                .await
                .map(|()| Value::Null)
        })
        .await?;
    if elsewhere && let Err(e) = ec.follow(&st.vault).await {
        tracing::warn!("catching up with _audit after a step: {e}");
    }
    Ok(())
}

/// Catches up with `_audit`, checks `step` (for `claims`, or for the server
/// itself), records it, then applies it, under the orders' lock and in a
/// task of its own (a client going away cannot leave a step recorded but
/// not applied). Only on the node holding `_audit`.
async fn commit_here(
    st: &AppState,
    ec: &Arc<ErasureContext>,
    claims: Option<&Claims>,
    step: Step,
) -> Result<(), ApiError> {
    let (st, ec, claims) = (st.clone(), ec.clone(), claims.cloned());
    tokio::spawn(async move {
        let mut o = ec.orders.lock().await;
        catch_up(&mut o, &st.vault).await.map_err(|e| {
            ApiError::unavailable("store_unavailable", format!("catching up with _audit: {e}"))
        })?;
        let at = now();
        let allowed = |ns: &str| claims.as_ref().is_none_or(|c| c.allows_ns(ns));
        o.check(&step, &allowed, at).map_err(ApiError::from)?;
        let content = serde_json::to_value(&step)
            .map_err(|e| ApiError::unavailable("internal", e.to_string()))?;
        let by = claims.as_ref().map_or(audit::SERVER, |c| c.sub.as_str());
        let name = step.event_name();
        audit::record_step(&st.vault, ERASURES_SESSION, name, by, content, |idx| {
            o.apply(&step, idx)
        })
        .await?;
        Ok::<(), ApiError>(())
    })
    .await
    .map_err(|e| ApiError::unavailable("internal", e.to_string()))?
}

/// Waits (up to `timeout`) until `_audit`'s checkpoint in the store covers
/// its first `n` entries, whichever node writes it.
async fn audit_published(vault: &Vault, n: u64, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if vault
            .reader()
            .published_size(AUDIT_NS)
            .await
            .is_ok_and(|s| s >= n)
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Performs every approved order not yet performed, oldest first, and
/// records each as performed. A failure is logged and retried at the next
/// round (the erasure is idempotent).
async fn run_due(st: &AppState, ec: &Arc<ErasureContext>) {
    let _one = ec.running.lock().await;
    let due: Vec<(String, String, IndexRanges, u64)> = ec
        .orders
        .lock()
        .await
        .due()
        .into_iter()
        .map(|o| {
            let recorded = o.audit_indices.iter().max().map_or(0, |i| i + 1);
            (o.id.clone(), o.ns.clone(), o.indices.clone(), recorded)
        })
        .collect();
    for (id, ns, indices, recorded) in due {
        let started = std::time::Instant::now();
        // Nothing changes before the order's steps are under a signed
        // `_audit` checkpoint: `verify` and receipts count only those.
        if !audit_published(&st.vault, recorded, Duration::from_secs(30)).await {
            tracing::warn!(erasure = %id, "its _audit steps are not checkpointed yet; will retry");
            continue;
        }
        // Performed by the node holding the namespace.
        let outcome = match st.vault.log(&ns).await {
            Ok(log) => log.erase(&indices).await.map_err(|e| e.to_string()),
            Err(tracevault_vault::VaultError::Open(tracevault_vault::log::OpenError::Lease(
                tracevault_vault::lease::LeaseError::Fenced { owner },
            ))) => {
                tracing::debug!(erasure = %id, ns, owner, "left to the node holding the namespace");
                continue;
            }
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(done) => {
                // Every entry of the order is erased now, those an
                // interrupted run erased included (recording only this
                // run's would read as entries left unerased).
                let step = Step::Performed {
                    id: id.clone(),
                    entries: done.entries + done.already,
                    segments: done.segments,
                    at: now(),
                };
                match commit(st, ec, None, step).await {
                    Ok(()) => tracing::info!(
                        erasure = %id, ns, entries = done.entries, already = done.already,
                        segments = done.segments, ms = started.elapsed().as_millis() as u64,
                        "erasure performed"
                    ),
                    Err(e) => {
                        tracing::warn!(erasure = %id, "recording the erasure as performed: {}; will retry", e.message)
                    }
                }
            }
            Err(e) => tracing::warn!(erasure = %id, ns, "erasure failed, will retry: {e}"),
        }
    }
}

/// Runs due orders (at once, and every `every`) and the retention rounds,
/// until the server stops.
pub fn spawn_runner(st: AppState, ec: Arc<ErasureContext>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_retention: Option<std::time::Instant> = None;
        loop {
            tick.tick().await;
            if *st.stopping().borrow() {
                return;
            }
            let interval = Duration::from_secs(ec.retention.check_interval_s.max(1));
            if ec.retention.enabled() && last_retention.is_none_or(|t| t.elapsed() >= interval) {
                last_retention = Some(std::time::Instant::now());
                retention::run(&st, &ec).await;
            }
            run_due(&st, &ec).await;
        }
    });
}

/// The longest reason or comment kept with a step.
const MAX_TEXT_BYTES: usize = 4096;

fn order_view(o: &Order, state: OrderState) -> Value {
    json!({
        "id": o.id, "state": state, "namespace": o.ns, "requester": o.requester,
        "reason": o.reason, "selection": o.selection, "indices": o.indices,
        "entries": o.indices.count(), "override_min_retention": o.override_min_retention,
        "requested_at": o.requested_at,
        "approvals": o.approvals.iter().map(|(a, at, c)| json!({"by": a, "at": at, "comment": c})).collect::<Vec<_>>(),
        "denied": o.denied.as_ref().map(|(a, at, c)| json!({"by": a, "at": at, "comment": c})),
        "approved_at": o.approved_at,
        "performed": o.performed.map(|(at, entries, segments)| json!({"at": at, "entries": entries, "segments": segments})),
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    namespace: String,
    session_id: Option<String>,
    actor: Option<String>,
    event_id: Option<String>,
    sql: Option<String>,
    from: Option<String>,
    to: Option<String>,
    reason: String,
    #[serde(default)]
    override_min_retention: bool,
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn rfc3339_us(what: &str, s: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|e| ApiError::bad_request("invalid_selection", format!("{what}: {e}")))
}

async fn request(
    State(st): State<AppState>,
    Extension(rc): Extension<Arc<ReadContext>>,
    Extension(ec): Extension<Arc<ErasureContext>>,
    headers: HeaderMap,
    body: Result<Json<RequestBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Admin], None)?;
    let Json(b) = body.map_err(|e| ApiError::bad_request("invalid_json", e.body_text()))?;
    auth::authorize(&claims, &[Role::Admin], Some(&b.namespace))?;
    // `_audit` (and any reserved namespace) is never erased.
    tracevault_vault::validate_namespace(&b.namespace, false)?;
    if b.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason_required",
            "an erasure needs a reason",
        ));
    }
    if b.reason.len() > MAX_TEXT_BYTES {
        return Err(ApiError::bad_request(
            "reason_too_long",
            format!("the reason is at most {MAX_TEXT_BYTES} bytes"),
        ));
    }
    let one = |v: &Option<String>| v.is_some() as u8;
    let given = one(&b.session_id) + one(&b.actor) + one(&b.event_id) + one(&b.sql);
    let time = b.from.is_some() || b.to.is_some();
    if given + time as u8 != 1 {
        return Err(ApiError::bad_request(
            "invalid_selection",
            "give exactly one of session_id, actor, event_id, sql, or from and to",
        ));
    }
    let (by, value, window, sql) = if time {
        let (Some(f), Some(t)) = (&b.from, &b.to) else {
            return Err(ApiError::bad_request(
                "invalid_selection",
                "a time range needs both from and to",
            ));
        };
        let (f, t) = (rfc3339_us("from", f)?, rfc3339_us("to", t)?);
        if t <= f {
            return Err(ApiError::bad_request(
                "invalid_selection",
                "to must be after from",
            ));
        }
        // `to` is exclusive; the access window is inclusive.
        (
            "time",
            String::new(),
            (Some(f), Some(t - 1)),
            "SELECT idx FROM traces".to_string(),
        )
    } else if let Some(s) = &b.session_id {
        (
            "session_id",
            s.clone(),
            (None, None),
            format!("SELECT idx FROM traces WHERE session_id = {}", quoted(s)),
        )
    } else if let Some(s) = &b.actor {
        (
            "actor",
            s.clone(),
            (None, None),
            format!("SELECT idx FROM traces WHERE actor = {}", quoted(s)),
        )
    } else if let Some(s) = &b.event_id {
        (
            "event_id",
            s.clone(),
            (None, None),
            format!("SELECT idx FROM traces WHERE event_id = {}", quoted(s)),
        )
    } else {
        let s = b.sql.clone().unwrap_or_default();
        ("sql", s.clone(), (None, None), s)
    };
    if value.len() > rc.query.max_sql_bytes {
        return Err(ApiError::too_large(
            "sql_too_large",
            "the selection is too long",
        ));
    }
    // A token with a window selects inside it, as for every other read.
    let token_window = crate::read::window(&claims)?;
    let window = (
        window.0.max(token_window.0),
        match (window.1, token_window.1) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    );
    let size = match st.vault.view(&b.namespace).await? {
        Some(v) => v.latest_checkpoint().map_or(0, |c| c.0),
        None => 0,
    };
    if size == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_erase",
            format!("namespace {} has no signed checkpoint yet", b.namespace),
        ));
    }
    let (indices, _, newest) = select(
        &st,
        &rc,
        &claims,
        &b.namespace,
        Pick {
            by: "sql",
            value: &sql,
            size,
            window,
        },
    )
    .await?;
    let min_s = ec.retention.min_retention_s(&b.namespace);
    if let (Some(newest), Some(min_s)) = (newest, min_s)
        && !b.override_min_retention
    {
        let young_after =
            chrono::Utc::now().timestamp_micros() - (min_s as i64).saturating_mul(1_000_000);
        if newest > young_after {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "within_min_retention",
                format!(
                    "the selection holds entries younger than min_retention ({min_s} s) of {}; they must be kept (set override_min_retention, recorded with the order, to erase them anyway)",
                    b.namespace
                ),
            ));
        }
    }
    let mut id = [0u8; 12];
    tracevault_vault::keys::random_bytes(&mut id)
        .map_err(|e| ApiError::unavailable("internal", e.to_string()))?;
    let indices = IndexRanges::from_sorted(indices);
    let entries = indices.count();
    let step = Step::Requested {
        id: hex::encode(id),
        ns: b.namespace.clone(),
        by: Actor::from(&claims),
        reason: b.reason.clone(),
        selection: Selection {
            by: by.into(),
            value,
            from_us: window.0,
            to_us: window.1.map(|t| t + 1),
            size,
        },
        indices,
        override_min_retention: b.override_min_retention,
        policy: *ec.orders.lock().await.policy(),
        at: now(),
    };
    let id = step.id().to_string();
    commit(&st, &ec, Some(&claims), step).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "state": "pending", "entries": entries})),
    )
        .into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
}

async fn list(
    State(st): State<AppState>,
    Extension(ec): Extension<Arc<ErasureContext>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Approver, Role::Admin], None)?;
    ec.catch_up_for_read(&st.vault).await;
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query_string", e.body_text()))?;
    let want = match q.state.as_deref() {
        None => None,
        Some(s) => Some(
            serde_json::from_value::<OrderState>(Value::String(s.into())).map_err(|_| {
                ApiError::bad_request(
                    "invalid_state",
                    "state is pending, approved, performed, denied or expired",
                )
            })?,
        ),
    };
    let o = ec.orders.lock().await;
    let t = now();
    let items: Vec<Value> = o
        .all()
        .filter(|r| claims.allows_ns(&r.ns))
        .map(|r| (r, o.state(r, t)))
        .filter(|(_, s)| want.is_none_or(|w| w == *s))
        .take(1000)
        .map(|(r, s)| {
            let mut v = order_view(r, s);
            // Lists stay small: the ranges are in each order's own view.
            v["indices"] = Value::Null;
            v
        })
        .collect();
    Ok(Json(json!({"erasures": items})))
}

async fn status(
    State(st): State<AppState>,
    Extension(ec): Extension<Arc<ErasureContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Approver, Role::Admin], None)?;
    ec.catch_up_for_read(&st.vault).await;
    let (mut view, performed, ns, indices, audit) = {
        let o = ec.orders.lock().await;
        let r = o
            .get(&id)
            .filter(|r| claims.allows_ns(&r.ns))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_erasure",
                    format!("no erasure {id}"),
                )
            })?;
        (
            order_view(r, o.state(r, now())),
            r.performed.is_some(),
            r.ns.clone(),
            r.indices.clone(),
            r.audit_indices.clone(),
        )
    };
    if performed {
        view["receipt"] =
            tracevault_vault::erasure::receipt::build(&st.vault, &id, &ns, &indices, &audit)
                .await?;
    }
    Ok(Json(view))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    comment: String,
}

async fn decide(
    st: AppState,
    ec: Arc<ErasureContext>,
    headers: HeaderMap,
    id: String,
    body: Option<Json<DecisionBody>>,
    approve: bool,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Approver], None)?;
    let comment = body.map(|b| b.0.comment).unwrap_or_default();
    if comment.len() > MAX_TEXT_BYTES {
        return Err(ApiError::bad_request(
            "comment_too_long",
            format!("the comment is at most {MAX_TEXT_BYTES} bytes"),
        ));
    }
    if !approve && comment.trim().is_empty() {
        return Err(ApiError::bad_request(
            "comment_required",
            "a deny needs a comment",
        ));
    }
    if approve {
        refuse_minted_by_requester(&st, &ec, &id, &claims).await?;
    }
    let (by, at) = (Actor::from(&claims), now());
    let step = if approve {
        Step::Approved {
            id: id.clone(),
            by,
            comment,
            at,
        }
    } else {
        Step::Denied {
            id: id.clone(),
            by,
            comment,
            at,
        }
    };
    commit(&st, &ec, Some(&claims), step).await?;
    let (view, due) = {
        let o = ec.orders.lock().await;
        let r = o
            .get(&id)
            .ok_or_else(|| ApiError::unavailable("internal", "the step was not applied"))?;
        let s = o.state(r, now());
        (order_view(r, s), s == OrderState::Approved)
    };
    if due {
        // Perform now, in the background (the runner retries a failure).
        let (st, ec) = (st.clone(), ec.clone());
        tokio::spawn(async move { run_due(&st, &ec).await });
    }
    Ok(Json(view))
}

/// An approval by a token the requester minted (`POST /v1/tokens`,
/// recorded in `_audit`), or that anyone minted with a token the requester
/// minted, down any chain, is the requester approving under another name:
/// refused, whatever issuer the requester's own token came from. (Tokens
/// minted on the box with `tracevault token issue` are the operator's, and
/// not recorded.)
async fn refuse_minted_by_requester(
    st: &AppState,
    ec: &Arc<ErasureContext>,
    id: &str,
    claims: &Claims,
) -> Result<(), ApiError> {
    let requester = ec
        .orders
        .lock()
        .await
        .get(id)
        .and_then(|o| o.requester.clone());
    let Some(requester) = requester else {
        return Ok(()); // no such order, or a retention run: the workflow says so
    };
    let minters = crate::auth::tokens::minters(&st.vault, &claims.jti).await?;
    if minters
        .iter()
        .any(|m| crate::auth::tokens::may_be(m, &requester))
    {
        return Err(ApiError::forbidden(
            "self_approval",
            "this approver token was minted by the erasure's requester (or with a token the requester minted)",
        ));
    }
    Ok(())
}

async fn approve(
    State(st): State<AppState>,
    Extension(ec): Extension<Arc<ErasureContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<DecisionBody>>,
) -> Result<Json<Value>, ApiError> {
    decide(st, ec, headers, id, body, true).await
}

async fn deny(
    State(st): State<AppState>,
    Extension(ec): Extension<Arc<ErasureContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<DecisionBody>>,
) -> Result<Json<Value>, ApiError> {
    decide(st, ec, headers, id, body, false).await
}
