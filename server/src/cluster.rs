//! Servers sharing one store (SPEC section 11; issue 17, what exists so
//! far): each server registers itself in the store under
//! `cluster/nodes/{instance}` (its advertised URL and a heartbeat, rewritten
//! every `[cluster] heartbeat_ms`, deleted on a clean stop), signed with the
//! log key the nodes share; `GET /v1/cluster` (admin) shows the nodes and
//! which one holds each namespace's lease, read from the store (so every
//! node answers the same); and a write for a namespace another live node
//! holds is forwarded to that node ([`forward`]).
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

/// Longest a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

fn http() -> &'static reqwest::Client {
    static C: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// Forwards a write (`path_and_query`, its headers and raw body) to node
/// `owner`, which holds the namespace's lease: to the URL of its signed,
/// live registration. Returns the holder's answer (status, body). `None`
/// when the owner cannot be reached that way (no live signed registration,
/// no advertised URL, or this request was forwarded already): the caller
/// answers as before (`409 namespace_fenced`).
pub async fn forward(
    st: &AppState,
    owner: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Result<(axum::http::StatusCode, Bytes), ApiError>> {
    if headers.contains_key(FORWARDED) || owner == st.vault.instance_id() {
        return None;
    }
    let b = st
        .vault
        .store()
        .get(&layout::cluster_node(owner))
        .await
        .ok()??;
    let node = match open_node(&b, &st.vault.public_key()) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(owner, "not forwarding to node: {e}");
            return None;
        }
    };
    if node.instance != owner || now_ms() - node.heartbeat_ms >= 3 * node.every_ms as i64 {
        return None;
    }
    let base = node.advertise?;
    let mut req = http()
        .post(format!("{}{path_and_query}", base.trim_end_matches('/')))
        .header(FORWARDED, "1")
        .body(body);
    // The request's own headers (token, content type and encoding, the
    // OTLP namespace header, ...), not the connection's.
    const HOP: [&str; 9] = [
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
    ];
    for (name, value) in headers {
        if !HOP.contains(&name.as_str()) && name.as_str() != FORWARDED {
            req = req.header(name.as_str(), value.as_bytes());
        }
    }
    Some(
        async {
            let r = req.send().await.map_err(|e| {
                ApiError::unavailable(
                    "forward_failed",
                    format!("the namespace is held by node {owner}, which did not answer: {e}"),
                )
            })?;
            let status = axum::http::StatusCode::from_u16(r.status().as_u16())
                .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
            let body = r.bytes().await.map_err(|e| {
                ApiError::unavailable(
                    "forward_failed",
                    format!("reading node {owner}'s answer: {e}"),
                )
            })?;
            Ok((status, body))
        }
        .await,
    )
}

/// What an append became: receipts from this node's log, or the answer of
/// the node holding the namespace, which the request was forwarded to.
pub enum Appended {
    /// Appended here.
    Here(Vec<tracevault_vault::Receipt>),
    /// Forwarded: the holder's status and body, to return as they are.
    Forwarded(axum::http::StatusCode, Bytes),
}

/// Appends `events` to `ns`, or, when another live node holds the
/// namespace, forwards the request as it came (`path_and_query`, `headers`,
/// `raw` body) to that node: the one rule every write door follows.
pub async fn append_or_forward(
    st: &AppState,
    ns: &str,
    events: Vec<tracevault_vault::record::Prepared>,
    ingested_by: &str,
    request: (&str, &HeaderMap, Bytes),
) -> Result<Appended, ApiError> {
    use tracevault_vault::VaultError;
    use tracevault_vault::lease::LeaseError;
    use tracevault_vault::log::OpenError;
    match st.vault.append_prepared(ns, events, ingested_by).await {
        Ok(r) => Ok(Appended::Here(r)),
        Err(VaultError::Open(OpenError::Lease(LeaseError::Fenced { owner }))) => {
            let (path_and_query, headers, raw) = request;
            match forward(st, &owner, path_and_query, headers, raw).await {
                Some(answer) => answer.map(|(status, body)| Appended::Forwarded(status, body)),
                None => {
                    Err(VaultError::Open(OpenError::Lease(LeaseError::Fenced { owner })).into())
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}
