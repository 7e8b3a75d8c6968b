//! The access log: what the server records about access to itself, as
//! entries of the vault's own `_audit` namespace, so the trail is as
//! tamper-evident as the traces. Token issues and revocations are recorded
//! before they take effect (if recording fails, they do not happen); denied
//! requests are counted per kind and recorded as one entry per interval
//! ([`DeniedLog`]), so that unauthenticated traffic costs nothing lasting.
//!
//! Revocations are entries too (session `token-revocations`): the set of
//! revoked token ids is rebuilt from `_audit` at start-up, so it survives
//! restarts without a side file.
//!
//! With several nodes on one store, `_audit` is written by the node holding
//! its lease: every record goes through [`append`], which appends here or
//! calls that node ([`crate::cluster::peer`]), and workflow steps are
//! checked and recorded there ([`holder`], [`record_step`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};
use tracevault_schemas::{Event, Kind};
use tracevault_vault::lease::LeaseError;
use tracevault_vault::log::OpenError;
use tracevault_vault::{Receipt, Vault, VaultError};

use crate::cluster::peer;
use crate::{ApiError, AppState};

/// The vault's access log namespace, and the session of export steps:
/// named where bundles are verified (`tracevault_query::export`).
pub use tracevault_query::export::{AUDIT_NS, EXPORTS_SESSION as EXPORTS};
/// Session of revocation entries.
pub const REVOCATIONS: &str = "token-revocations";
/// Session of token issue entries.
pub const TOKEN_ISSUES: &str = "token-issues";
/// Session of denied-request entries.
pub const DENIED: &str = "denied-requests";
/// Session of entry-read records.
pub const ENTRY_READS: &str = "entry-reads";
/// Session of query records.
pub const QUERIES: &str = "queries";

/// `ingested_by` of entries the server writes about itself.
pub const SERVER: &str = "tracevault";

/// One access-log event of `session`, named `name`, by `actor`.
pub fn event(session: &str, name: &str, actor: &str, content: Value) -> Event {
    Event {
        session_id: session.to_string(),
        kind: Kind::Annotation,
        ts: Some(chrono::Utc::now()),
        event_id: None,
        trace_id: None,
        span_id: None,
        parent_span_id: None,
        name: Some(name.to_string()),
        actor: Some(actor.chars().take(1024).collect()),
        model: None,
        content: Some(content),
        attributes: None,
    }
}

/// Which node records in `_audit`: `Some(owner)` when another node holds
/// its lease (a live one, read from the store), else `None`: this node
/// holds it or may take it (it does so when it records, not by asking, so
/// that a server that records nothing leaves `_audit` alone).
pub async fn holder(vault: &Vault) -> Result<Option<String>, ApiError> {
    let store_down = |e: tracevault_vault::store::StoreError| {
        ApiError::unavailable("store_unavailable", e.to_string())
    };
    let Some(b) = vault
        .store()
        .get(&tracevault_vault::store::layout::lease(AUDIT_NS))
        .await
        .map_err(store_down)?
    else {
        return Ok(None);
    };
    let lease: tracevault_vault::lease::LeaseRecord = serde_json::from_slice(&b)
        .map_err(|e| ApiError::unavailable("store_unavailable", format!("_audit's lease: {e}")))?;
    let now = chrono::Utc::now().timestamp_millis();
    let live = now < lease.renewed_at_ms.saturating_add(lease.ttl_ms);
    Ok(
        (live && !lease.owner.is_empty() && lease.owner != vault.instance_id())
            .then_some(lease.owner),
    )
}

/// Has a workflow step decided where `_audit` is written: `here` when this
/// node holds (or may take) it, else `call` to `path` on the node that
/// holds it, whose answer is returned. A step that meets a node having
/// just taken `_audit` (nothing was recorded here) goes to that node.
/// Returns the answer, and whether it came from another node.
pub async fn decide_where_written<T, F>(
    vault: &Vault,
    path: &str,
    call: &impl serde::Serialize,
    here: impl FnOnce() -> F,
) -> Result<(T, bool), ApiError>
where
    T: serde::de::DeserializeOwned,
    F: std::future::Future<Output = Result<T, ApiError>>,
{
    let owner = match holder(vault).await? {
        None => match here().await {
            Err(e) if e.code == "namespace_fenced" => holder(vault).await?.ok_or(e)?,
            done => return done.map(|v| (v, false)),
        },
        Some(owner) => owner,
    };
    Ok((peer::call(vault, &owner, path, call).await?, true))
}

/// The internal route through which the other nodes append to `_audit`.
pub const APPEND_PATH: &str = "/v1/internal/audit/append";
/// Most events one call appends.
const MAX_CALL_EVENTS: usize = 64;

/// Appends access-log `events` to `_audit`: here, or, when another node
/// holds `_audit`, through that node. The receipts say the records are in
/// (what is recorded before an answer leaves is recorded, whichever node
/// answers).
pub async fn append(vault: &Vault, events: Vec<Event>) -> Result<Vec<Receipt>, ApiError> {
    match vault.append_system(AUDIT_NS, events.clone(), SERVER).await {
        Err(VaultError::Open(OpenError::Lease(LeaseError::Fenced { owner }))) => {
            #[derive(serde::Deserialize)]
            struct Appended {
                receipts: Vec<Receipt>,
            }
            let a: Appended =
                peer::call(vault, &owner, APPEND_PATH, &json!({ "events": events })).await?;
            Ok(a.receipts)
        }
        r => Ok(r?),
    }
}

/// Records one workflow step (export, erasure) in `_audit` session
/// `session`, named `name`, by `by`, on this node, which must hold `_audit`
/// (the callers check and apply steps only where `_audit` is written; see
/// [`holder`]). `apply` is called with the step's `_audit` index as soon as
/// it is appended, also when the answer then fails because the store did
/// not take it in time (cluster mode: `not_yet_in_store`): the step is in
/// the log and will be published, so the state must count it, or a later
/// step applied first would make the workflow skip it for good.
pub async fn record_step(
    vault: &Vault,
    session: &str,
    name: &str,
    by: &str,
    content: Value,
    apply: impl FnOnce(u64),
) -> Result<u64, VaultError> {
    match vault
        .append_system(AUDIT_NS, vec![event(session, name, by, content)], SERVER)
        .await
    {
        Ok(r) => {
            let idx = r.first().map(|r| r.index).ok_or_else(|| {
                VaultError::Read("a recorded step came back without a receipt".into())
            })?;
            apply(idx);
            Ok(idx)
        }
        Err(VaultError::NotInStore(idx)) => {
            apply(idx);
            Err(VaultError::NotInStore(idx))
        }
        Err(e) => Err(e),
    }
}

/// The internal route of [`append`] (called by the other nodes only).
pub fn routes() -> Router<AppState> {
    Router::new().route(APPEND_PATH, post(append_here))
}

/// Takes only calls the body guard authenticated as a node's (the
/// [`peer::Caller`] it puts on the request; without it the route fails).
async fn append_here(
    State(st): State<AppState>,
    axum::Extension(_node): axum::Extension<peer::Caller>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Call {
        events: Vec<Value>,
    }
    let invalid = |m: String| ApiError::bad_request("invalid_call", m);
    let call: Call = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
    if call.events.is_empty() || call.events.len() > MAX_CALL_EVENTS {
        return Err(invalid(format!(
            "a call appends 1 to {MAX_CALL_EVENTS} events"
        )));
    }
    let events = call
        .events
        .iter()
        .map(|v| Event::from_json(&v.to_string()).map_err(|e| invalid(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    // Appended here or refused: never passed on again.
    let receipts = st.vault.append_system(AUDIT_NS, events, SERVER).await?;
    Ok(Json(json!({ "receipts": receipts })))
}

/// The token id a revocation entry revokes.
fn revoked_jti(e: &tracevault_vault::record::Entry) -> Option<String> {
    let v: Value = serde_json::from_str(e.content.as_deref()?).ok()?;
    v.get("jti").and_then(Value::as_str).map(str::to_string)
}

/// Revoked token ids.
#[derive(Default)]
pub struct Revocations {
    set: RwLock<HashSet<String>>,
}

impl Revocations {
    /// Whether `jti` is revoked. A poisoned lock counts as revoked (fail closed).
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.set.read().map(|s| s.contains(jti)).unwrap_or(true)
    }

    fn insert(&self, jti: String) {
        if let Ok(mut s) = self.set.write() {
            s.insert(jti);
        }
    }

    /// Rebuilds the set from `_audit` (retrying a read that raced compaction).
    pub async fn load(&self, vault: &Vault) -> Result<usize, VaultError> {
        let mut attempt = 0;
        let entries = loop {
            match vault.session_entries(AUDIT_NS, REVOCATIONS).await {
                Ok(e) => break e,
                Err(VaultError::Read(_)) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let mut n = 0;
        for e in entries {
            if let Some(jti) = revoked_jti(&e) {
                self.insert(jti);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Applies the revocations recorded in `_audit` entries `from..to` of
    /// the store (those other servers sharing it recorded; each server
    /// applies its own at once). Returns how many were new.
    pub async fn follow(&self, vault: &Vault, from: u64, to: u64) -> Result<usize, VaultError> {
        let entries = vault
            .reader()
            .published_session_entries(AUDIT_NS, REVOCATIONS, from, to)
            .await?;
        let mut n = 0;
        for jti in entries.iter().filter_map(revoked_jti) {
            if !self.is_revoked(&jti) {
                n += 1;
            }
            self.insert(jti);
        }
        Ok(n)
    }

    /// Records the revocation of `jti` in `_audit`, then applies it.
    pub async fn revoke(
        &self,
        vault: &Vault,
        jti: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Receipt, ApiError> {
        let content = json!({"jti": jti, "reason": reason});
        let mut r = append(
            vault,
            vec![event(REVOCATIONS, "token_revoked", by, content)],
        )
        .await?;
        self.insert(jti.to_string());
        Ok(r.remove(0))
    }
}

/// Distinct (status, code, method, path) groups kept per interval; further
/// denials are still counted, in the interval's `other` total.
const MAX_DENIED_GROUPS: usize = 64;

/// One denied request, as the access log groups it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Denial {
    /// HTTP status (401 or 403).
    pub status: u16,
    /// The stable error code.
    pub code: &'static str,
    /// Request method.
    pub method: String,
    /// Request path (at most 128 characters, others than letters, digits
    /// and `/-_.` replaced by `_`).
    pub path: String,
}

/// Denials counted since the last record.
#[derive(Default)]
struct Pending {
    since: Option<chrono::DateTime<chrono::Utc>>,
    groups: HashMap<Denial, (u64, Option<String>)>,
    other: u64,
    total: u64,
}

impl Pending {
    fn add(&mut self, d: Denial, request_id: Option<String>, n: u64) {
        self.since.get_or_insert_with(chrono::Utc::now);
        self.total += n;
        if let Some(g) = self.groups.get_mut(&d) {
            g.0 += n;
        } else if self.groups.len() < MAX_DENIED_GROUPS {
            self.groups.insert(d, (n, request_id));
        } else {
            self.other += n;
        }
    }

    /// Merges counts that could not be recorded back in, for the next try.
    fn merge(&mut self, older: Pending) {
        if let Some(t) = older.since {
            self.since = Some(self.since.map_or(t, |s| s.min(t)));
        }
        for (d, (n, id)) in older.groups {
            self.add(d, id, n);
            self.total -= n;
        }
        self.other += older.other;
        self.total += older.total;
    }

    fn record(&self) -> Value {
        let mut groups: Vec<Value> = self
            .groups
            .iter()
            .map(|(d, (n, id))| {
                json!({"status": d.status, "code": d.code, "method": d.method,
                       "path": d.path, "count": n, "first_request_id": id})
            })
            .collect();
        groups.sort_by(|a, b| b["count"].as_u64().cmp(&a["count"].as_u64()));
        json!({
            "from": self.since.map(|t| tracevault_schemas::format_timestamp(&t)),
            "to": tracevault_schemas::format_timestamp(&chrono::Utc::now()),
            "total": self.total,
            "groups": groups,
            "other": self.other,
        })
    }
}

/// Denied requests (401, 403), counted per (status, code, method, path)
/// and recorded as one `requests_denied` entry per interval that had any.
/// A flood of unauthenticated requests therefore costs the access log at
/// most one entry per interval, and memory at most [`MAX_DENIED_GROUPS`]
/// groups; nothing is dropped from the counts. Counts that could not be
/// appended are kept for the next interval; the last interval is recorded
/// when the server stops.
pub struct DeniedLog {
    pending: Arc<Mutex<Pending>>,
    /// The recording task: awaited at shutdown, so that the last counts are
    /// in `_audit` before the logs close.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl DeniedLog {
    /// Starts the task that records the counts in `vault`'s `_audit` every
    /// `every`, and once more when `stop` turns true.
    pub fn start(
        vault: Vault,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> DeniedLog {
        let pending: Arc<Mutex<Pending>> = Arc::default();
        let task_pending = pending.clone();
        let task = tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(every) => false,
                    r = stop.wait_for(|s| *s) => { let _ = r; true }
                };
                let taken = match task_pending.lock() {
                    Ok(mut p) => std::mem::take(&mut *p),
                    Err(_) => return,
                };
                if taken.total > 0 {
                    let ev = event(DENIED, "requests_denied", SERVER, taken.record());
                    if let Err(e) = append(&vault, vec![ev]).await {
                        tracing::error!(
                            "recording {} denied requests in {AUDIT_NS}: {}; kept for the next interval",
                            taken.total,
                            e.message
                        );
                        if let Ok(mut p) = task_pending.lock() {
                            p.merge(taken);
                        }
                    }
                }
                if stopping {
                    return;
                }
            }
        });
        DeniedLog {
            pending,
            task: Mutex::new(Some(task)),
        }
    }

    /// Waits (up to `timeout`) for the last record, once the server is
    /// stopping: called before the vault shuts its logs down.
    pub async fn finish(&self, timeout: Duration) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task
            && tokio::time::timeout(timeout, t).await.is_err()
        {
            tracing::warn!("the last denied-request counts were not recorded in time");
        }
    }

    /// Counts one denied request.
    pub fn record(&self, d: Denial, request_id: Option<String>) {
        if let Ok(mut p) = self.pending.lock() {
            p.add(d, request_id, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(path: &str) -> Denial {
        Denial {
            status: 401,
            code: "missing_token",
            method: "GET".into(),
            path: path.into(),
        }
    }

    #[test]
    fn denials_group_and_nothing_is_dropped_past_the_group_bound() {
        let mut p = Pending::default();
        for i in 0..(MAX_DENIED_GROUPS + 10) {
            p.add(denial(&format!("/x/{i}")), None, 1);
        }
        p.add(denial("/x/0"), None, 1);
        assert_eq!(p.total, MAX_DENIED_GROUPS as u64 + 11);
        assert_eq!(p.other, 10);
        assert_eq!(p.groups[&denial("/x/0")].0, 2);
        let r = p.record();
        assert_eq!(r["total"], MAX_DENIED_GROUPS as u64 + 11);
        assert_eq!(r["groups"][0]["count"], 2);
        // Counts that failed to be recorded are merged into the next interval.
        let mut next = Pending::default();
        next.add(denial("/x/0"), None, 1);
        next.merge(p);
        assert_eq!(next.total, MAX_DENIED_GROUPS as u64 + 12);
        assert_eq!(next.groups[&denial("/x/0")].0, 3);
    }
}
