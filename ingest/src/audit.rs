//! The access log: what the server records about access to itself, as
//! entries of the vault's own `_audit` namespace, so the trail is as
//! tamper-evident as the traces. Token issues and revocations are recorded
//! before they take effect (if recording fails, they do not happen); denied
//! requests go through a bounded queue, and if it overflows the loss itself is
//! recorded (never silently dropped).
//!
//! Revocations are entries too (session `token-revocations`): the set of
//! revoked token ids is rebuilt from `_audit` at start-up, so it survives
//! restarts without a side file.

use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracevault_schemas::{Event, Kind};
use tracevault_vault::{Receipt, Vault, VaultError};

/// The vault's access log namespace.
pub const AUDIT_NS: &str = "_audit";
/// Session of revocation entries.
pub const REVOCATIONS: &str = "token-revocations";
/// Session of token issue entries.
pub const TOKEN_ISSUES: &str = "token-issues";
/// Session of denied-request entries.
pub const DENIED: &str = "denied-requests";
/// `ingested_by` of entries the server writes about itself.
pub const SERVER: &str = "tracevault";

/// Denied requests waiting to be recorded; beyond, they are counted as lost.
const DENIED_QUEUE: usize = 4096;

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
            let jti = e
                .content
                .as_deref()
                .and_then(|c| serde_json::from_str::<Value>(c).ok())
                .and_then(|v| v.get("jti").and_then(Value::as_str).map(str::to_string));
            if let Some(jti) = jti {
                self.insert(jti);
                n += 1;
            }
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
    ) -> Result<Receipt, VaultError> {
        let content = json!({"jti": jti, "reason": reason});
        let mut r = vault
            .append_system(
                AUDIT_NS,
                vec![event(REVOCATIONS, "token_revoked", by, content)],
                SERVER,
            )
            .await?;
        self.insert(jti.to_string());
        Ok(r.remove(0))
    }
}

/// The bounded queue of denied requests and its writer task.
pub struct DeniedLog {
    tx: mpsc::Sender<Value>,
    lost: std::sync::Arc<AtomicU64>,
}

impl DeniedLog {
    /// Starts the writer task appending to `vault`'s `_audit`.
    pub fn start(vault: Vault) -> DeniedLog {
        let (tx, mut rx) = mpsc::channel::<Value>(DENIED_QUEUE);
        let lost = std::sync::Arc::new(AtomicU64::new(0));
        let lost2 = lost.clone();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 256).await > 0 {
                let mut events: Vec<Event> = batch
                    .drain(..)
                    .map(|c| event(DENIED, "request_denied", "anonymous", c))
                    .collect();
                let n_lost = lost2.swap(0, Ordering::Relaxed);
                if n_lost > 0 {
                    events.push(event(
                        DENIED,
                        "audit_records_lost",
                        SERVER,
                        json!({"lost": n_lost, "why": "the denied-request queue was full"}),
                    ));
                }
                let n = events.len() as u64;
                if let Err(e) = vault.append_system(AUDIT_NS, events, SERVER).await {
                    tracing::error!("recording {n} denied requests in {AUDIT_NS}: {e}");
                    lost2.fetch_add(n, Ordering::Relaxed);
                }
            }
        });
        DeniedLog { tx, lost }
    }

    /// Queues a denied request; counted as lost if the queue is full.
    pub fn record(&self, content: Value) {
        if self.tx.try_send(content).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}
