//! One namespace's append-only log: sequencing with group commit, and the
//! publisher that turns durable entries into segments and checkpoints.
//!
//! Write path: `append` hands a batch to the namespace's sequencer thread over
//! a bounded queue (full queue: [`AppendError::Overloaded`], never unbounded
//! memory). The sequencer drains every waiting batch, seals the events
//! (index, session_seq, salt, digests, leaf and chain hash), writes them to the
//! WAL with one fdatasync, then updates the in-memory tree and answers every
//! batch with its receipts. Receipts therefore always follow an fsync.
//!
//! Publish path: every `flush_interval_ms` the publisher takes the durable but
//! unpublished entries, claims their position, writes the segment create-only,
//! then the checkpoint for the new size create-only, then the `checkpoint`
//! pointer. Only then does the WAL let go of those entries. A checkpoint thus
//! never covers an entry whose segment is not in the store.

use std::collections::{HashMap, VecDeque};
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::LogConfig;
use crate::lease::{Lease, LeaseError};
use crate::merkle::{MerkleError, MerkleTree};
use crate::note::{self, Checkpoint};
use crate::record::{Entry, Hash, Position, Prepared};
use crate::segment::{self, SegmentSeal};
use crate::store::{Store, StoreError, layout};
use crate::wal::Wal;

mod dedup;
mod eraser;
mod published_tree;
mod publisher;
mod recovery;
mod sequencer;
mod tile_publisher;

use crate::tile_proofs::{ProofError, TileTree};
use dedup::{Dedup, Seen, dedup_key, receipt};
pub use eraser::EraseError;
pub use published_tree::PublishedTree;
use publisher::Publisher;
use recovery::{inconsistent, load_store, recover, save_last_signed};
use sequencer::{AppendReq, Sequencer, sequencer_loop};

/// What a writer gets back for each event, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Receipt {
    /// The entry's index in the namespace log.
    pub index: u64,
    /// Hex leaf hash (what inclusion proofs prove).
    pub leaf_hash: String,
    /// Position within the session.
    pub session_seq: u64,
    /// True when this `event_id` was already in the log: the original receipt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Why an append was refused. Nothing of the request was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Too much queued or unpublished: retry later.
    #[error("the log is busy ({0}); retry later")]
    Overloaded(&'static str),
    /// Another server holds this namespace.
    #[error("{0}")]
    Fenced(String),
    /// The log stopped after a failure it cannot recover from by itself.
    #[error("the log is unavailable: {0}")]
    Failed(String),
    /// The server is shutting down.
    #[error("the log is shutting down")]
    Closed,
    /// The lease could not be renewed in time (store unreachable?): appends
    /// pause rather than risk acknowledging writes another server may own.
    #[error("the namespace lease could not be renewed recently; retry later")]
    LeaseLapsed,
    /// An event reuses the `event_id` of a different event by the same writer
    /// in the same session (within the dedupe window): the request is refused
    /// whole, nothing appended.
    #[error("{0}")]
    Conflict(String),
}

/// Failures opening a namespace log.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// See [`LeaseError`].
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// See [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The WAL could not be opened.
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    /// Store, WAL and checkpoints disagree: refuse to append on top of it.
    #[error("namespace {ns}: {reason} (run `tracevault verify`)")]
    Inconsistent {
        /// Namespace.
        ns: String,
        /// What disagrees.
        reason: String,
    },
}

const STATUS_OK: u8 = 0;
const STATUS_FENCED: u8 = 1;
const STATUS_FAILED: u8 = 2;

/// State shared by the sequencer, the publisher and readers.
struct State {
    /// The tree at the published size, as its right edge (the hashes of the
    /// tiles not yet full: bounded, whatever the log's size). The durable
    /// tree is it plus the tail's leaves; older hashes are in the tiles.
    edge: crate::tiles::TileBuilder,
    /// The root at the end of each segment of the log (from the segments
    /// checked at open, and those published since): compaction checks the
    /// segments it merges against these, never against objects in the
    /// store. One entry per segment; pruned as segments merge.
    segment_roots: std::collections::BTreeMap<u64, Hash>,
    /// Durable entries not yet in a segment, in index order.
    tail: VecDeque<Arc<Entry>>,
    tail_bytes: usize,
    /// Chain hash after the last published entry.
    published_chain: Hash,
    /// Latest signed checkpoint note and its size.
    latest_note: Option<(u64, String)>,
}

struct Shared {
    ns: String,
    origin: String,
    cfg: LogConfig,
    state: RwLock<State>,
    status: AtomicU8,
    status_msg: Mutex<String>,
    published: AtomicU64,
    durable_tx: watch::Sender<u64>,
    published_tx: watch::Sender<u64>,
    /// Someone waits for entries to be published (a receipt in cluster
    /// mode, `?wait=checkpoint`): the publisher goes at once instead of at
    /// the end of its interval. What arrives during that publish waits for
    /// the next, which follows at once: a group commit to the store.
    publish_wanted: tokio::sync::Notify,
    /// Until when (monotonic clock) the lease is known to be ours: the last
    /// successful renewal plus three quarters of the TTL. Appends stop past it,
    /// so a server cut off from the store stops acknowledging writes before
    /// another server may take the namespace over.
    lease_valid_until: Mutex<Instant>,
    /// Segments this server has written (for `/metrics`).
    segments_uploaded: AtomicU64,
    segments_encoded_ahead: AtomicU64,
    /// Publish attempts that failed and will be retried (store errors).
    publish_failures: AtomicU64,
    /// When (Unix ms) the latest checkpoint was published; 0 before the first.
    checkpoint_at_ms: AtomicU64,
    /// Held while segments are rewritten (an erasure); compaction, which
    /// rewrites the same objects, skips its round meanwhile.
    rewrite_lock: tokio::sync::Mutex<()>,
    /// Set by an erasure: the sequencer starts a new WAL file.
    wal_rotate: AtomicBool,
    /// Entries erased since the sequencer last looked: their salts leave
    /// the dedupe window.
    erased_since: Mutex<Vec<crate::erasure::IndexRanges>>,
    /// The first index of the oldest WAL file (no entry below it is in the WAL).
    wal_oldest: AtomicU64,
}

/// Operational counters of one namespace log, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// Entries durable on this server (tree size, published or not).
    pub durable: u64,
    /// Entries covered by the latest checkpoint.
    pub published: u64,
    /// Append requests waiting for the sequencer.
    pub queued_requests: u64,
    /// Segments written by this server since the log was opened.
    pub segments_uploaded: u64,
    /// Of those, segments encoded while the previous one was written.
    pub segments_encoded_ahead: u64,
    /// Failed publish attempts (retried) since the log was opened.
    pub publish_failures: u64,
    /// Unix ms of the latest checkpoint published by this server (0: none yet).
    pub checkpoint_at_ms: u64,
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lease_margin_deadline(from: Instant, ttl_ms: i64) -> Instant {
    from + Duration::from_millis((ttl_ms.max(0) as u64) * 3 / 4)
}

impl Shared {
    fn fail(&self, status: u8, msg: String) {
        tracing::error!(ns = %self.ns, "{msg}");
        if let Ok(mut m) = self.status_msg.lock() {
            *m = msg;
        }
        self.status.store(status, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), AppendError> {
        let msg = || {
            self.status_msg
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default()
        };
        match self.status.load(Ordering::SeqCst) {
            STATUS_OK => Ok(()),
            STATUS_FENCED => Err(AppendError::Fenced(msg())),
            _ => Err(AppendError::Failed(msg())),
        }
    }
}

/// The tree in the store, read through one bounded cache, shared by the
/// proofs and the compactor.
type SharedTiles = Arc<tokio::sync::Mutex<TileTree>>;

/// The tiles at the published size, trusted against this server's own edge
/// of the tree (never as read from the store).
async fn trusted_tiles<'a>(
    shared: &Shared,
    tiles: &'a SharedTiles,
) -> Result<tokio::sync::MutexGuard<'a, TileTree>, ProofError> {
    let (size, root) = {
        let st = shared.state.read().map_err(|_| {
            ProofError::Unavailable(crate::VaultError::Read("state lock poisoned".into()))
        })?;
        (st.edge.size(), st.edge.root())
    };
    let mut t = tiles.lock().await;
    t.set_size(size);
    if !t.is_trusted() {
        t.trust(root).await?;
    }
    Ok(t)
}

/// Roots of the tree at given sizes, as this server computed them from
/// checked data (the segments' ends it knows), else from the tiles
/// authenticated against its own edge: never as read from the store, which
/// an operator can change. What compaction and erasure check the segments
/// they rewrite against.
fn trusted_roots(
    shared: Arc<Shared>,
    tiles: SharedTiles,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Hash>> + Send>> {
    move |size: u64| {
        let (shared, tiles) = (shared.clone(), tiles.clone());
        Box::pin(async move {
            let known = shared
                .state
                .read()
                .ok()
                .and_then(|st| st.segment_roots.get(&size).copied());
            if known.is_some() {
                return known;
            }
            let mut t = trusted_tiles(&shared, &tiles).await.ok()?;
            if size == 0 || size > t.size() {
                return None;
            }
            t.range(0, size).await.ok()
        })
    }
}

/// An open namespace log.
pub struct Appender {
    ctx: Arc<LogContext>,
    /// Proofs are read from the tiles in the store, through one cache
    /// (bounded; see [`TileTree`]).
    tiles: SharedTiles,
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<AppendReq>>>,
    sequencer: Mutex<Option<std::thread::JoinHandle<()>>>,
    publisher: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    shutdown_tx: watch::Sender<bool>,
}

/// Everything needed to open a log.
pub struct LogContext {
    /// The store.
    pub store: Store,
    /// The log signing key.
    pub key: SigningKey,
    /// Vault origin (`tracevault.local/<id>`); the namespace is appended.
    pub vault_origin: String,
    /// This server instance (lease owner).
    pub instance_id: String,
    /// Tunables.
    pub cfg: LogConfig,
}
impl Appender {
    /// Opens the log of `ns`: takes the lease, rebuilds state from the store,
    /// replays the WAL, and starts the sequencer and publisher.
    pub async fn open(
        ctx: Arc<LogContext>,
        ns: &str,
        wal_dir: &FsPath,
    ) -> Result<Arc<Appender>, OpenError> {
        let started = Instant::now();
        let lease = Lease::acquire(&ctx.store, ns, &ctx.instance_id, ctx.cfg.lease_ttl_ms).await?;
        let (mut l, wal, full_read) = recover(&ctx, ns, wal_dir).await?;
        let recovered_ms = started.elapsed().as_millis() as u64;
        // Loading may have taken a while: renew before writing anything,
        // and count the lease's validity from this renewal.
        let renewed_at = Instant::now();
        lease.renew().await?;
        // The tiles of the published size must be in the store before its
        // checkpoint is written or served (built once for a store written
        // before tiles); then the tree is kept as its right edge only.
        tile_publisher::store_missing_tiles(&ctx, ns, &l).await?;
        if full_read {
            recovery::snapshot_after_full_read(&ctx, ns, &mut l).await?;
        }
        // From here the tree is its right edge only.
        let recovery::Loaded {
            edge,
            len: durable,
            chain,
            sessions,
            dedup,
            tail,
            published,
            published_chain,
            latest,
            last_received,
            segment_roots,
            snapshots,
            ..
        } = l;
        let tail_bytes = tail.iter().map(|e| e.approx_size()).sum();
        let (durable_tx, _) = watch::channel(durable);
        let (published_tx, _) = watch::channel(published);
        let shared = Arc::new(Shared {
            ns: ns.to_string(),
            origin: format!("{}/{ns}", ctx.vault_origin),
            cfg: ctx.cfg.clone(),
            published: AtomicU64::new(published),
            state: RwLock::new(State {
                edge,
                segment_roots,
                tail,
                tail_bytes,
                published_chain,
                latest_note: latest.clone(),
            }),
            status: AtomicU8::new(STATUS_OK),
            status_msg: Mutex::new(String::new()),
            durable_tx,
            published_tx,
            publish_wanted: tokio::sync::Notify::new(),
            lease_valid_until: Mutex::new(lease_margin_deadline(renewed_at, ctx.cfg.lease_ttl_ms)),
            segments_uploaded: AtomicU64::new(0),
            segments_encoded_ahead: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
            checkpoint_at_ms: AtomicU64::new(0),
            rewrite_lock: tokio::sync::Mutex::new(()),
            wal_rotate: AtomicBool::new(false),
            erased_since: Mutex::new(Vec::new()),
            wal_oldest: AtomicU64::new(wal.oldest()),
        });
        let seq = Sequencer {
            ns: ns.to_string(),
            wal,
            next: durable,
            chain,
            last_received,
            sessions,
            dedup,
        };
        let (tx, rx) = mpsc::channel(ctx.cfg.queue_requests.max(1));
        let sh = shared.clone();
        let group_max = ctx.cfg.group_max_events.max(1);
        let sequencer = std::thread::Builder::new()
            .name(format!("seq-{ns}"))
            .spawn(move || sequencer_loop(seq, rx, sh, group_max))
            .map_err(|e| inconsistent(ns, format!("cannot start sequencer: {e}")))?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let tiles: SharedTiles = Arc::new(tokio::sync::Mutex::new(
            TileTree::new(
                crate::reader::LogReader::new(ctx.store.clone()),
                ns,
                published,
            )
            .with_cache_limit(ctx.cfg.tile_cache_tiles),
        ));
        let publisher = Publisher {
            tiles: tiles.clone(),
            ctx: ctx.clone(),
            shared: shared.clone(),
            lease,
            inflight: None,
            next_encode: None,
            last_renew: tokio::time::Instant::from_std(renewed_at),
            last_compact: tokio::time::Instant::now(),
            wal_dir: wal_dir.to_path_buf(),
            snapshots,
        };
        // A checkpoint for segments written just before a crash, if it is missing.
        let needs_checkpoint = latest.as_ref().map(|(s, _)| *s) != Some(published) && published > 0;
        let handle = tokio::spawn(publisher.run(shutdown_rx, needs_checkpoint));
        tracing::info!(
            ns,
            durable,
            published,
            ms = started.elapsed().as_millis() as u64,
            recovered_ms,
            "namespace open for writing"
        );
        Ok(Arc::new(Appender {
            ctx,
            tiles,
            shared,
            tx: Mutex::new(Some(tx)),
            sequencer: Mutex::new(Some(sequencer)),
            publisher: tokio::sync::Mutex::new(Some(handle)),
            shutdown_tx,
        }))
    }

    /// Appends prepared events; resolves once they are durable.
    pub async fn append(
        &self,
        events: Vec<Prepared>,
        ingested_by: &str,
    ) -> Result<Vec<Receipt>, AppendError> {
        self.shared.check()?;
        let valid_until = *self
            .shared
            .lease_valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if Instant::now() > valid_until {
            return Err(AppendError::LeaseLapsed);
        }
        self.wait_for_room(events.len()).await?;
        let tx = self
            .tx
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .ok_or(AppendError::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.try_send(AppendReq {
            events,
            ingested_by: ingested_by.to_string(),
            reply,
        })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AppendError::Overloaded("sequencer queue full"),
            mpsc::error::TrySendError::Closed(_) => AppendError::Closed,
        })?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    /// Waits (up to `overload_wait_ms`) until `n` more entries fit under the
    /// bounds on durable but unpublished entries, asking the publisher to
    /// publish at once meanwhile; past the wait: 503 `overloaded`.
    async fn wait_for_room(&self, n: usize) -> Result<(), AppendError> {
        let cfg = &self.shared.cfg;
        let deadline = Instant::now() + Duration::from_millis(cfg.overload_wait_ms);
        let mut published = self.shared.published_tx.subscribe();
        loop {
            let full = {
                let st = self
                    .shared
                    .state
                    .read()
                    .map_err(|_| AppendError::Failed("state lock poisoned".into()))?;
                st.tail.len() + n > cfg.max_unpublished_events
                    || st.tail_bytes > cfg.max_unpublished_bytes
            };
            if !full {
                return Ok(());
            }
            self.shared.check()?;
            self.shared.publish_wanted.notify_one();
            let left = deadline.saturating_duration_since(Instant::now());
            // A publish (or the deadline) ends each wait; then look again.
            if left.is_zero()
                || tokio::time::timeout(left, published.changed())
                    .await
                    .is_err()
            {
                return Err(AppendError::Overloaded(
                    "too many entries wait for the object store",
                ));
            }
        }
    }

    /// False once the log is fenced or failed (it then serves nothing new).
    pub fn is_healthy(&self) -> bool {
        self.shared.check().is_ok()
    }

    /// Entries that are durable (the tree size including the unpublished tail).
    pub fn durable_size(&self) -> u64 {
        *self.shared.durable_tx.borrow()
    }

    /// Copies of the durable entries not yet in a published segment; `None`
    /// if the state is unreadable (a panic poisoned it): callers fail closed.
    pub fn unpublished_entries(&self) -> Option<Vec<Entry>> {
        self.shared
            .state
            .read()
            .ok()
            .map(|st| st.tail.iter().map(|e| (**e).clone()).collect())
    }

    /// Operational counters (queue depth, uploads, checkpoint time).
    pub fn stats(&self) -> LogStats {
        let queued_requests = self
            .tx
            .lock()
            .ok()
            .and_then(|g| {
                g.as_ref()
                    .map(|tx| (tx.max_capacity() - tx.capacity()) as u64)
            })
            .unwrap_or(0);
        LogStats {
            durable: self.durable_size(),
            published: self.published_size(),
            queued_requests,
            segments_uploaded: self.shared.segments_uploaded.load(Ordering::Relaxed),
            segments_encoded_ahead: self.shared.segments_encoded_ahead.load(Ordering::Relaxed),
            publish_failures: self.shared.publish_failures.load(Ordering::Relaxed),
            checkpoint_at_ms: self.shared.checkpoint_at_ms.load(Ordering::Relaxed),
        }
    }

    /// Entries covered by the latest checkpoint.
    pub fn published_size(&self) -> u64 {
        self.shared.published.load(Ordering::SeqCst)
    }

    /// The latest signed checkpoint note.
    pub fn latest_checkpoint(&self) -> Option<(u64, String)> {
        self.shared
            .state
            .read()
            .ok()
            .and_then(|s| s.latest_note.clone())
    }

    /// Waits until a checkpoint covers `size` entries (or `timeout` passes).
    pub async fn wait_published(&self, size: u64, timeout: Duration) -> Option<(u64, String)> {
        let mut rx = self.shared.published_tx.subscribe();
        if *rx.borrow() < size {
            self.shared.publish_wanted.notify_one();
        }
        let ok = tokio::time::timeout(timeout, rx.wait_for(|p| *p >= size)).await;
        match ok {
            Ok(Ok(_)) => self.latest_checkpoint().filter(|(s, _)| *s >= size),
            _ => None,
        }
    }

    /// The tree at the latest checkpoint, read from its tiles (written
    /// before the checkpoint, so always there), each checked against this
    /// server's own edge of the tree (never trusted as read from the store).
    async fn published_tiles(&self) -> Result<tokio::sync::MutexGuard<'_, TileTree>, ProofError> {
        trusted_tiles(&self.shared, &self.tiles).await
    }

    /// RFC 6962 inclusion proof of `index` in the tree of `size` (size <= the
    /// latest checkpoint), with the leaf hash: from the tiles.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<(Hash, Vec<Hash>), ProofError> {
        let mut tiles = self.published_tiles().await?;
        let proof = tiles.inclusion_proof_at(index, size).await?;
        Ok((tiles.leaf(index).await?, proof))
    }

    /// RFC 6962 consistency proof between two sizes (both <= the latest
    /// checkpoint): from the tiles.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
        self.published_tiles()
            .await?
            .consistency_proof_between(from, to)
            .await
    }

    /// The checkpoint origin (and key name) of this namespace.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// Stops accepting appends, publishes everything durable, writes the final
    /// checkpoint and releases the lease.
    pub async fn shutdown(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let seq = self.sequencer.lock().ok().and_then(|mut s| s.take());
        if let Some(h) = seq {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        let _ = self.shutdown_tx.send(true);
        if let Some(h) = self.publisher.lock().await.take() {
            let _ = h.await;
        }
    }
}
