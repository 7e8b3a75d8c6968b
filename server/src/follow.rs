//! Following `_audit` in the store: what other servers sharing the store
//! recorded there (token revocations, export and erasure steps) reaches this
//! one within `[cluster] follow_audit_ms` plus the recording server's
//! checkpoint interval. `_audit` is the single source of truth: only the
//! server holding its lease records steps (and checks them against a state
//! that has applied everything published, [`Synced::catch_up`]), the others
//! call it for that ([`crate::cluster::peer`]) and apply what it published,
//! each step once.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use crate::AppState;
use crate::erasures::ErasureContext;
use crate::exports::ExportContext;

/// Reads the store's `_audit` checkpoint every `every` and, when it grew,
/// applies the revocations, export steps and erasure steps of the entries
/// added since. Runs until the server stops.
pub fn spawn(st: AppState, xc: Arc<ExportContext>, ec: Arc<ErasureContext>, every: Duration) {
    tokio::spawn(async move {
        let mut stop = st.stopping();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut read_to = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let size = match st
                .vault
                .reader()
                .published_size(crate::audit::AUDIT_NS)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("following _audit: {e}");
                    continue;
                }
            };
            if size <= read_to {
                continue;
            }
            let revoked = st.revocations.follow(&st.vault, read_to, size).await;
            let exports = xc.follow(&st.vault).await;
            let erasures = ec.follow(&st.vault).await;
            match (revoked, exports, erasures) {
                (Ok(n), Ok(()), Ok(())) => {
                    if n > 0 {
                        tracing::info!(n, "revocations recorded by other servers applied");
                    }
                    read_to = size;
                }
                (r, x, e) => tracing::warn!(
                    revocations = ?r.err(), exports = ?x.err(), erasures = ?e.err(),
                    "following _audit failed; will retry"
                ),
            }
        }
    });
}

/// A workflow's state and how far into the store's `_audit` it has applied
/// (entries `0..to`). Steps are applied at their `_audit` index, each once,
/// so applying a range twice changes nothing.
pub struct Synced<T> {
    state: T,
    to: u64,
}

impl<T> Synced<T> {
    /// `state`, built from the store's `_audit` up to `to` at least.
    pub fn new(state: T, to: u64) -> Self {
        Synced { state, to }
    }

    /// Applies the steps of `_audit` session `session` published since the
    /// last call, with `apply(state, content, index)`: done before a step is
    /// checked where `_audit` is written (so a node that has just taken the
    /// lease over decides on the whole history), and by [`spawn`].
    pub async fn catch_up(
        &mut self,
        vault: &tracevault_vault::Vault,
        session: &str,
        apply: impl Fn(&mut T, &str, u64) -> Result<(), String>,
    ) -> Result<(), String> {
        let reader = vault.reader();
        let size = reader
            .published_size(crate::audit::AUDIT_NS)
            .await
            .map_err(|e| e.to_string())?;
        if size <= self.to {
            return Ok(());
        }
        let entries = reader
            .published_session_entries(crate::audit::AUDIT_NS, session, self.to, size)
            .await
            .map_err(|e| e.to_string())?;
        for e in entries.iter().filter(|e| e.idx >= self.to && e.idx < size) {
            let content = e.content.as_deref().unwrap_or_default();
            apply(&mut self.state, content, e.idx)
                .map_err(|m| format!("_audit entry {}: {m}", e.idx))?;
        }
        self.to = size;
        Ok(())
    }
}

impl<T> Deref for Synced<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.state
    }
}

impl<T> DerefMut for Synced<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.state
    }
}
