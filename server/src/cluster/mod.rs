//! Servers sharing one store (SPEC section 11; issue 17, what exists so
//! far): each server registers itself in the store under
//! `cluster/nodes/{instance}` (its advertised URL and a heartbeat, rewritten
//! every `[cluster] heartbeat_ms`, deleted on a clean stop), signed with the
//! log key the nodes share; `GET /v1/cluster` (admin) shows the nodes and
//! which one holds each namespace's lease, read from the store (so every
//! node answers the same); and a write for a namespace another live node
//! holds is forwarded to that node ([`forward`]); `_audit` records and
//! workflow steps are made by the node holding `_audit`, which the others
//! call with requests signed by the log key ([`peer`]).
//!
//! Why signed: a forwarded request carries the client's bearer token. An
//! operator with write access to the bucket but not the keys could
//! otherwise register a node of their own, point a lease at it, and collect
//! tokens; a registration that does not verify with the log key is never
//! forwarded to.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracevault_vault::lease::LeaseRecord;
use tracevault_vault::store::layout;
use tracevault_vault::token::Role;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};

use crate::{ApiError, AppState, auth};

pub mod forward;
pub mod peer;

pub use forward::{Appended, append_or_forward, forward};

/// Domain separator of registration signatures.
const NODE_DOMAIN: &[u8] = b"tracevault/cluster-node/v1\n";
/// Header marking a forwarded request (never forwarded again).
pub const FORWARDED: &str = "x-tracevault-forwarded";

/// A registration as stored: the record and its signature by the log key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedNode {
    node: NodeRecord,
    /// Base64 Ed25519 signature over the domain and the record's JCS text.
    sig: String,
}

fn signed_bytes(node: &NodeRecord) -> Option<Vec<u8>> {
    let v = serde_json::to_value(node).ok()?;
    let mut out = NODE_DOMAIN.to_vec();
    out.extend(tracevault_vault::jcs::to_canonical_vec(&v).ok()?);
    Some(out)
}

/// A registration read from the store, checked against the log key.
fn open_node(bytes: &[u8], key: &ed25519_dalek::VerifyingKey) -> Result<NodeRecord, String> {
    let s: SignedNode = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let sig = B64
        .decode(&s.sig)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or("malformed signature")?;
    let msg = signed_bytes(&s.node).ok_or("unencodable record")?;
    key.verify(&msg, &sig)
        .map_err(|_| "the registration is not signed by the log key".to_string())?;
    Ok(s.node)
}

/// Most nodes and namespaces one answer lists.
const MAX_LISTED: usize = 10_000;

/// A node's registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Instance id (stable per data directory; the owner named in leases).
    pub instance: String,
    /// The URL other nodes and clients reach it at (`[cluster] advertise`).
    pub advertise: Option<String>,
    /// When it started (Unix ms).
    pub started_at_ms: i64,
    /// Its last heartbeat (Unix ms).
    pub heartbeat_ms: i64,
    /// Heartbeat interval (ms): a node is live while its last heartbeat is
    /// less than three intervals old.
    pub every_ms: u64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Registers this node and renews its heartbeat every `every` until the
/// server stops; then removes the registration. A failed write is logged
/// and retried at the next beat.
pub fn spawn_heartbeat(st: AppState, key: SigningKey, advertise: Option<String>, every: Duration) {
    tokio::spawn(async move {
        let store = st.vault.store().clone();
        let instance = st.vault.instance_id().to_string();
        let path = layout::cluster_node(&instance);
        let started_at_ms = now_ms();
        let mut stop = st.stopping();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let rec = NodeRecord {
                instance: instance.clone(),
                advertise: advertise.clone(),
                started_at_ms,
                heartbeat_ms: now_ms(),
                every_ms: every.as_millis() as u64,
            };
            let Some(msg) = signed_bytes(&rec) else {
                continue;
            };
            let signed = SignedNode {
                sig: B64.encode(key.sign(&msg).to_bytes()),
                node: rec,
            };
            let Ok(bytes) = serde_json::to_vec(&signed) else {
                continue;
            };
            if let Err(e) = store.put_overwrite(&path, Bytes::from(bytes)).await {
                tracing::warn!("cluster heartbeat: {e}");
            }
        }
        if let Err(e) = store.delete(&path).await {
            tracing::warn!("removing this node's cluster registration: {e}");
        }
    });
}

/// `GET /v1/cluster`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/cluster", get(cluster))
}

async fn cluster(State(st): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Admin], None)?;
    let store = st.vault.store();
    let now = now_ms();
    let mut nodes = Vec::new();
    for name in store
        .list_names(&layout::cluster_nodes())
        .await
        .map_err(|e| ApiError::unavailable("store_unavailable", e.to_string()))?
        .into_iter()
        .take(MAX_LISTED)
    {
        let Some(b) = store
            .get(&layout::cluster_node(&name))
            .await
            .map_err(|e| ApiError::unavailable("store_unavailable", e.to_string()))?
        else {
            continue; // stopped meanwhile
        };
        match open_node(&b, &st.vault.public_key()) {
            Ok(n) => {
                let live = now - n.heartbeat_ms < 3 * n.every_ms as i64;
                nodes.push(json!({"instance": n.instance, "advertise": n.advertise,
                    "started_at_ms": n.started_at_ms, "heartbeat_ms": n.heartbeat_ms, "live": live}));
            }
            Err(e) => nodes.push(json!({"instance": name, "error": e})),
        }
    }
    let mut leases = Vec::new();
    for ns in st
        .vault
        .reader()
        .namespaces()
        .await?
        .into_iter()
        .take(MAX_LISTED)
    {
        let Some(b) = store
            .get(&layout::lease(&ns))
            .await
            .map_err(|e| ApiError::unavailable("store_unavailable", e.to_string()))?
        else {
            leases.push(json!({"ns": ns, "owner": null}));
            continue;
        };
        match serde_json::from_slice::<LeaseRecord>(&b) {
            Ok(l) => leases.push(json!({"ns": ns, "owner": l.owner,
                "renewed_at_ms": l.renewed_at_ms, "ttl_ms": l.ttl_ms,
                "live": now - l.renewed_at_ms < l.ttl_ms})),
            Err(e) => leases.push(json!({"ns": ns, "error": e.to_string()})),
        }
    }
    Ok(Json(json!({
        "self": st.vault.instance_id(),
        "nodes": nodes,
        "leases": leases,
    })))
}

/// The advertised URL of node `owner`, when its registration in the store
/// verifies with the log key, names it, is live, and advertises a URL:
/// the only nodes a request (and the client's token in it) is sent to.
pub(crate) async fn live_node_url(vault: &tracevault_vault::Vault, owner: &str) -> Option<String> {
    let b = vault
        .store()
        .get(&layout::cluster_node(owner))
        .await
        .ok()??;
    let node = match open_node(&b, &vault.public_key()) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(owner, "not calling node: {e}");
            return None;
        }
    };
    if node.instance != owner || now_ms() - node.heartbeat_ms >= 3 * node.every_ms as i64 {
        return None;
    }
    node.advertise
}
