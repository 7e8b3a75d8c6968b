//! Following `_audit` in the store: what other servers sharing the store
//! recorded there (token revocations, export and erasure steps) reaches this
//! one within `[cluster] follow_audit_ms` plus the recording server's
//! checkpoint interval. `_audit` is the single source of truth: only the
//! server holding its lease records steps (and checks them against a state
//! that has applied everything published), the others apply what it
//! published, each step once.

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
            let exports = xc.follow(&st.vault, read_to, size).await;
            let erasures = ec.follow(&st.vault, read_to, size).await;
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
