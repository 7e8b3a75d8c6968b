//! Erasing published entries of this log: the segments holding them are
//! rewritten without their payloads ([`crate::erasure::erase_in_store`]),
//! then the write-ahead log files that still hold them are removed.

use super::*;
use crate::erasure::{Erased, IndexRanges, erase_in_store};

/// Why an erasure could not be done now (each is worth retrying later).
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// An index of the order is not covered by a checkpoint yet.
    #[error("entry {0} is not published yet; erase it after the next checkpoint")]
    NotPublished(u64),
    /// The log refused (fenced, failed, lease lapsed, shut down).
    #[error(transparent)]
    Log(#[from] AppendError),
    /// Rewriting failed (store error, or a segment that is not ours).
    #[error("rewriting segments: {0}")]
    Rewrite(String),
    /// The WAL still holds entries of the order.
    #[error("{0}")]
    Wal(String),
}

/// How long an erasure waits for a checkpoint it needs.
const PUBLISH_WAIT: Duration = Duration::from_secs(30);

impl Appender {
    /// Erases the payloads (content, attributes, salt) of `indices` from
    /// the store and from this server's WAL. The caller has recorded the
    /// order in `_audit` first. Every record, leaf, tile, checkpoint and
    /// proof stays as it was. Idempotent; compaction waits meanwhile.
    pub async fn erase(&self, indices: &IndexRanges) -> Result<Erased, EraseError> {
        let Some(max) = indices.max() else {
            return Ok(Erased::default());
        };
        self.shared.check()?;
        if self.published_size() <= max
            && self.wait_published(max + 1, PUBLISH_WAIT).await.is_none()
        {
            return Err(EraseError::NotPublished(max));
        }
        let out = {
            let _rewriting = self.shared.rewrite_lock.lock().await;
            self.shared.check()?;
            erase_in_store(
                &self.ctx.store,
                &self.shared.ns,
                &self.shared.origin,
                &self.ctx.key,
                trusted_roots(self.shared.clone(), self.tiles.clone()),
                indices,
                self.shared.cfg.segment_compression,
            )
            .await
            .map_err(|e| EraseError::Rewrite(e.to_string()))?
        };
        self.shared
            .erased_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(indices.clone());
        // Wakes the sequencer, which drops those salts from its window.
        self.append(Vec::new(), "").await?;
        self.purge_wal(max).await?;
        Ok(out)
    }

    /// Removes every WAL file holding an entry at or below `max` (all
    /// published): the sequencer starts a new file, and once everything
    /// before it is published, the older files are deleted.
    async fn purge_wal(&self, max: u64) -> Result<(), EraseError> {
        for _ in 0..3 {
            if self.shared.wal_oldest.load(Ordering::SeqCst) > max {
                return Ok(());
            }
            self.shared.wal_rotate.store(true, Ordering::SeqCst);
            // An empty append wakes the sequencer: it rotates, then
            // releases what is published.
            self.append(Vec::new(), "").await?;
            let durable = self.durable_size();
            if self.wait_published(durable, PUBLISH_WAIT).await.is_none() {
                return Err(EraseError::NotPublished(durable.saturating_sub(1)));
            }
            self.append(Vec::new(), "").await?;
        }
        if self.shared.wal_oldest.load(Ordering::SeqCst) > max {
            Ok(())
        } else {
            Err(EraseError::Wal(format!(
                "the write-ahead log of {} still holds entries up to {max}",
                self.shared.ns
            )))
        }
    }
}
