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
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
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

/// What a writer gets back for each event, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The entry's index in the namespace log.
    pub index: u64,
    /// Hex leaf hash (what inclusion proofs prove).
    pub leaf_hash: String,
    /// Position within the session.
    pub session_seq: u64,
    /// True when this `event_id` was already in the log: the original receipt.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
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
    tree: MerkleTree,
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
    /// Until when (monotonic clock) the lease is known to be ours: the last
    /// successful renewal plus three quarters of the TTL. Appends stop past it,
    /// so a server cut off from the store stops acknowledging writes before
    /// another server may take the namespace over.
    lease_valid_until: Mutex<Instant>,
    /// Segments this server has written (for `/metrics`).
    segments_uploaded: AtomicU64,
    /// Publish attempts that failed and will be retried (store errors).
    publish_failures: AtomicU64,
    /// When (Unix ms) the latest checkpoint was published; 0 before the first.
    checkpoint_at_ms: AtomicU64,
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

/// Where a batch's receipts (or its error) are sent.
type Reply = oneshot::Sender<Result<Vec<Receipt>, AppendError>>;

struct AppendReq {
    events: Vec<Prepared>,
    ingested_by: String,
    reply: Reply,
}

/// An open namespace log.
pub struct NsLog {
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

/// What the sequencer thread owns.
struct Sequencer {
    ns: String,
    wal: Wal,
    next: u64,
    chain: Hash,
    last_received: i64,
    sessions: HashMap<String, u64>,
    dedup: Dedup,
}

/// A bounded map of recent events that carry an `event_id`, for idempotent
/// retries. The key is `(ingested_by, session_id, event_id)`, hashed: one
/// writer's ids never collide with another's, so no writer can pre-empt (and
/// so suppress) another's event by posting its id first. Each key keeps the
/// original receipt and the fingerprint of the event
/// ([`Entry::event_fingerprint`]): a retry must carry the same event, and
/// the same key with a different event is a conflict, never a silent
/// duplicate.
struct Dedup {
    map: HashMap<Hash, (Receipt, Hash)>,
    order: VecDeque<Hash>,
    cap: usize,
}

/// What the dedupe window says of an event.
enum Seen<'a> {
    /// No `event_id`, or not seen within the window: append it.
    New,
    /// The same event again: answer with the original receipt.
    Duplicate(&'a Receipt),
    /// Another event under the same key.
    Conflict,
}

/// The dedupe key of an event: its writer, session and `event_id`, each
/// length-prefixed so no two triples share an encoding.
fn dedup_key(ingested_by: &str, session_id: &str, event_id: &str) -> Hash {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [ingested_by, session_id, event_id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

impl Dedup {
    fn insert(&mut self, key: Hash, r: Receipt, fingerprint: Hash) {
        if self.cap == 0 {
            return;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.order.push_back(key);
        self.map.insert(key, (r, fingerprint));
    }

    fn seen(&self, key: &Hash, fingerprint: &Hash) -> Seen<'_> {
        match self.map.get(key) {
            None => Seen::New,
            Some((r, f)) if f == fingerprint => Seen::Duplicate(r),
            Some(_) => Seen::Conflict,
        }
    }

    /// Remembers a stored entry (at open, from segments and the WAL).
    fn absorb(&mut self, e: &Entry) {
        if let Some(id) = &e.event_id {
            let key = dedup_key(&e.ingested_by, &e.session_id, id);
            self.insert(key, receipt(e), e.event_fingerprint());
        }
    }
}

fn receipt(e: &Entry) -> Receipt {
    Receipt {
        index: e.idx,
        leaf_hash: crate::record::hex32(&e.leaf_hash),
        session_seq: e.session_seq,
        duplicate: false,
    }
}

/// Everything loaded from the store and WAL at open.
struct Loaded {
    tree: MerkleTree,
    chain: Hash,
    sessions: HashMap<String, u64>,
    dedup: Dedup,
    tail: VecDeque<Arc<Entry>>,
    published: u64,
    published_chain: Hash,
    latest: Option<(u64, String)>,
    last_received: i64,
}

impl Loaded {
    fn absorb(&mut self, e: &Entry) {
        self.tree.push(e.leaf_hash);
        self.chain = e.chain_hash;
        let next = self.sessions.entry(e.session_id.clone()).or_insert(0);
        *next = (*next).max(e.session_seq + 1);
        self.dedup.absorb(e);
        self.last_received = self.last_received.max(e.received_at);
    }
}

fn inconsistent(ns: &str, reason: String) -> OpenError {
    OpenError::Inconsistent {
        ns: ns.to_string(),
        reason,
    }
}

/// Reads every segment of `ns` in order and rebuilds the log state. Segments
/// are checked for contiguity and chain continuity (full verification is
/// `tracevault verify`'s job).
async fn load_store(ctx: &LogContext, ns: &str, snapshot: bool) -> Result<Loaded, OpenError> {
    // A snapshot of a namespace another server is writing reads the pointer
    // first and stops there: segments and checkpoints published meanwhile are
    // not part of it (and are not inconsistencies).
    let limit = if snapshot {
        match ctx.store.get(&layout::latest_checkpoint(ns)).await? {
            Some(b) => {
                let name = format!("{}/{ns}", ctx.vault_origin);
                let cp = note::open_checkpoint(
                    &String::from_utf8_lossy(&b),
                    &name,
                    &ctx.key.verifying_key(),
                )
                .map_err(|e| inconsistent(ns, format!("latest checkpoint: {e}")))?;
                Some((cp.size, String::from_utf8_lossy(&b).to_string()))
            }
            None => Some((0, String::new())),
        }
    } else {
        None
    };
    let mut l = Loaded {
        tree: MerkleTree::new(),
        chain: [0; 32],
        sessions: HashMap::new(),
        dedup: Dedup {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: ctx.cfg.dedup_window,
        },
        tail: VecDeque::new(),
        published: 0,
        published_chain: [0; 32],
        latest: None,
        last_received: 0,
    };
    let names = ctx.store.list_names(&layout::segments(ns)).await?;
    // After an interrupted merge, small segments may sit under the merged one:
    // the cover counts (the compactor cleans up); contiguity is checked below.
    let tiling = crate::tiling::tile(names.iter().map(String::as_str));
    for (first, last) in tiling.cover {
        if limit.as_ref().is_some_and(|(size, _)| first >= *size) {
            break;
        }
        if first != l.tree.len() {
            return Err(inconsistent(
                ns,
                format!("segment {first}-{last} does not start at {}", l.tree.len()),
            ));
        }
        let bytes = ctx
            .store
            .get(&layout::segment(ns, first, last))
            .await?
            .ok_or_else(|| inconsistent(ns, format!("segment {first}-{last} vanished")))?;
        // Everything this server will sign on top of must itself be signed by
        // our key and intact: never extend (and so endorse) forged data.
        let vk = ctx.key.verifying_key();
        let seg = tokio::task::spawn_blocking(move || {
            let seg = segment::decode(bytes.clone()).map_err(|e| e.to_string())?;
            if !segment::verify_header_signature(&seg.header, &seg.signature, &vk) {
                return Err("header signature does not verify with the log key".to_string());
            }
            if !segment::file_digest_matches(&seg.header, &seg.signature, &bytes) {
                return Err("file bytes differ from the signed file digest".to_string());
            }
            if (seg.header.first, seg.header.last) != (first, last) {
                return Err("header range differs from the object name".to_string());
            }
            for e in &seg.entries {
                let rec = e.committed_record_bytes().map_err(|e| e.to_string())?;
                if crate::merkle::leaf_hash(&rec) != e.leaf_hash {
                    return Err(format!("entry {} does not match its leaf hash", e.idx));
                }
            }
            Ok(seg)
        })
        .await
        .map_err(|e| inconsistent(ns, e.to_string()))?
        .map_err(|e| inconsistent(ns, format!("segment {first}-{last}: {e}")))?;
        if hex::encode(l.chain) != seg.header.chain_in {
            return Err(inconsistent(
                ns,
                format!("segment {first}-{last} does not continue the chain"),
            ));
        }
        for e in &seg.entries {
            if e.idx != l.tree.len()
                || crate::record::chain_next(&l.chain, &e.leaf_hash) != e.chain_hash
            {
                return Err(inconsistent(
                    ns,
                    format!("segment {first}-{last} breaks the chain at index {}", e.idx),
                ));
            }
            l.absorb(e);
        }
        {
            use base64::Engine;
            let root = base64::engine::general_purpose::STANDARD.encode(l.tree.root());
            if seg.header.root != root || hex::encode(l.chain) != seg.header.chain_out {
                return Err(inconsistent(
                    ns,
                    format!("segment {first}-{last}: signed root or chain differs from the data"),
                ));
            }
        }
        if l.tree.len() != last + 1 {
            return Err(inconsistent(
                ns,
                format!("segment {first}-{last} holds {} rows", seg.entries.len()),
            ));
        }
    }
    l.published = l.tree.len();
    l.published_chain = l.chain;
    if let Some((size, text)) = limit {
        if size == 0 {
            return Ok(l);
        }
        let name = format!("{}/{ns}", ctx.vault_origin);
        let cp = note::open_checkpoint(&text, &name, &ctx.key.verifying_key())
            .map_err(|e| inconsistent(ns, format!("latest checkpoint: {e}")))?;
        if l.published != size || l.tree.root_at(size).ok() != Some(cp.root) {
            return Err(inconsistent(
                ns,
                format!("the segments do not match the latest checkpoint of size {size}"),
            ));
        }
        l.latest = Some((size, text));
        return Ok(l);
    }
    if let Some(bytes) = ctx.store.get(&layout::latest_checkpoint(ns)).await? {
        let text = String::from_utf8_lossy(&bytes).to_string();
        let name = format!("{}/{ns}", ctx.vault_origin);
        let cp = note::open_checkpoint(&text, &name, &ctx.key.verifying_key())
            .map_err(|e| inconsistent(ns, format!("latest checkpoint: {e}")))?;
        if cp.size > l.published {
            return Err(inconsistent(
                ns,
                format!(
                    "latest checkpoint covers {} entries but the segments hold {}",
                    cp.size, l.published
                ),
            ));
        }
        if l.tree.root_at(cp.size).ok() != Some(cp.root) {
            return Err(inconsistent(
                ns,
                format!(
                    "latest checkpoint root differs from the data at size {}",
                    cp.size
                ),
            ));
        }
        l.latest = Some((cp.size, text));
    }
    // Immutable checkpoints beyond the segments mean the store lost data.
    let newest = ctx
        .store
        .list_names(&layout::checkpoints(ns))
        .await?
        .into_iter()
        .filter_map(|n| n.parse::<u64>().ok())
        .max();
    if let Some(size) = newest
        && size > l.published
    {
        return Err(inconsistent(
            ns,
            format!(
                "checkpoint {size} exists but the segments hold only {} entries (store rolled back?)",
                l.published
            ),
        ));
    }
    Ok(l)
}

/// A read-only view of a namespace this server does not write: its tree and
/// latest checkpoint, rebuilt from the store (with the same checks as an
/// open), without taking the lease. Reads must never make a server the
/// writer of a namespace.
pub struct Snapshot {
    tree: MerkleTree,
    latest: Option<(u64, String)>,
}

impl Snapshot {
    /// Loads the namespace from the store.
    pub async fn load(ctx: &LogContext, ns: &str) -> Result<Snapshot, OpenError> {
        let l = load_store(ctx, ns, true).await?;
        Ok(Snapshot {
            tree: l.tree,
            latest: l.latest,
        })
    }

    /// The latest signed checkpoint seen when the snapshot was taken.
    pub fn latest_checkpoint(&self) -> Option<(u64, String)> {
        self.latest.clone()
    }

    fn published(&self) -> u64 {
        self.latest.as_ref().map_or(0, |(s, _)| *s)
    }

    /// Inclusion proof, for sizes the latest checkpoint covers.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), MerkleError> {
        inclusion_within(&self.tree, self.published(), index, size)
    }

    /// Consistency proof, for sizes the latest checkpoint covers.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, MerkleError> {
        consistency_within(&self.tree, self.published(), from, to)
    }
}

/// Proofs are served only for sizes a signed checkpoint covers (`published`):
/// an unpublished size could never be checked against anything.
fn inclusion_within(
    tree: &MerkleTree,
    published: u64,
    index: u64,
    size: u64,
) -> Result<(Hash, Vec<Hash>), MerkleError> {
    if size > published {
        return Err(MerkleError::SizeOutOfRange {
            size,
            len: published,
        });
    }
    let proof = tree.inclusion_proof(index, size)?;
    let leaf = tree
        .leaf(index)
        .ok_or(MerkleError::IndexOutOfRange { index, size })?;
    Ok((leaf, proof))
}

/// See [`inclusion_within`].
fn consistency_within(
    tree: &MerkleTree,
    published: u64,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, MerkleError> {
    if to > published {
        return Err(MerkleError::SizeOutOfRange {
            size: to,
            len: published,
        });
    }
    tree.consistency_proof(from, to)
}

/// The last checkpoint this server signed for a namespace, kept beside its
/// WAL so that a store rolled back behind our back is noticed at open.
const SIGNED_FILE: &str = "last-signed-checkpoint";

fn check_last_signed(
    ctx: &LogContext,
    ns: &str,
    wal_dir: &FsPath,
    tree: &MerkleTree,
) -> Result<(), OpenError> {
    let Ok(text) = std::fs::read_to_string(wal_dir.join(SIGNED_FILE)) else {
        return Ok(());
    };
    let name = format!("{}/{ns}", ctx.vault_origin);
    let cp = note::open_checkpoint(&text, &name, &ctx.key.verifying_key())
        .map_err(|e| inconsistent(ns, format!("{SIGNED_FILE}: {e}")))?;
    if cp.size > tree.len() {
        return Err(inconsistent(
            ns,
            format!(
                "this server signed a checkpoint of size {} but the store holds {} entries (store rolled back)",
                cp.size,
                tree.len()
            ),
        ));
    }
    if tree.root_at(cp.size).ok() != Some(cp.root) {
        return Err(inconsistent(
            ns,
            format!(
                "the store's tree at size {} differs from the checkpoint this server signed (fork)",
                cp.size
            ),
        ));
    }
    Ok(())
}

/// Records the newest signed checkpoint (temporary file, fsync, rename).
fn save_last_signed(wal_dir: &FsPath, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = wal_dir.join(format!("{SIGNED_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, wal_dir.join(SIGNED_FILE))?;
    std::fs::File::open(wal_dir)?.sync_all()
}

impl NsLog {
    /// Opens the log of `ns`: takes the lease, rebuilds state from the store,
    /// replays the WAL, and starts the sequencer and publisher.
    pub async fn open(
        ctx: Arc<LogContext>,
        ns: &str,
        wal_dir: &FsPath,
    ) -> Result<Arc<NsLog>, OpenError> {
        let lease = Lease::acquire(&ctx.store, ns, &ctx.instance_id, ctx.cfg.lease_ttl_ms).await?;
        let mut l = load_store(&ctx, ns, false).await?;
        check_last_signed(&ctx, ns, wal_dir, &l.tree)?;
        let (dir, published) = (wal_dir.to_path_buf(), l.published);
        let (wal, recovered) = tokio::task::spawn_blocking(move || Wal::open(&dir, published))
            .await
            .map_err(|e| inconsistent(ns, e.to_string()))??;
        let mut replayed = 0u64;
        for e in recovered.entries {
            if e.idx < l.published {
                let stored = l.tree.leaf(e.idx);
                if stored != Some(e.leaf_hash) {
                    return Err(inconsistent(
                        ns,
                        format!("WAL entry {} differs from the stored segment", e.idx),
                    ));
                }
                continue;
            }
            let expected_leaf = crate::merkle::leaf_hash(
                &e.committed_record_bytes()
                    .map_err(|err| inconsistent(ns, err.to_string()))?,
            );
            if e.idx != l.tree.len()
                || expected_leaf != e.leaf_hash
                || crate::record::chain_next(&l.chain, &e.leaf_hash) != e.chain_hash
            {
                return Err(inconsistent(
                    ns,
                    format!(
                        "WAL entry {} does not extend the log at {}",
                        e.idx,
                        l.tree.len()
                    ),
                ));
            }
            l.absorb(&e);
            l.tail.push_back(Arc::new(e));
            replayed += 1;
        }
        if replayed > 0 || recovered.truncated_bytes > 0 {
            tracing::info!(
                ns,
                replayed,
                truncated = recovered.truncated_bytes,
                "recovered from the WAL"
            );
        }
        // Loading may have taken a while: renew now and count the lease's
        // validity from this renewal, not from the end of the open.
        let renewed_at = Instant::now();
        lease.renew().await?;
        let durable = l.tree.len();
        let tail_bytes = l.tail.iter().map(|e| e.approx_size()).sum();
        let (durable_tx, _) = watch::channel(durable);
        let (published_tx, _) = watch::channel(l.published);
        let shared = Arc::new(Shared {
            ns: ns.to_string(),
            origin: format!("{}/{ns}", ctx.vault_origin),
            cfg: ctx.cfg.clone(),
            published: AtomicU64::new(l.published),
            state: RwLock::new(State {
                tree: l.tree,
                tail: l.tail,
                tail_bytes,
                published_chain: l.published_chain,
                latest_note: l.latest.clone(),
            }),
            status: AtomicU8::new(STATUS_OK),
            status_msg: Mutex::new(String::new()),
            durable_tx,
            published_tx,
            lease_valid_until: Mutex::new(lease_margin_deadline(renewed_at, ctx.cfg.lease_ttl_ms)),
            segments_uploaded: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
            checkpoint_at_ms: AtomicU64::new(0),
        });
        let seq = Sequencer {
            ns: ns.to_string(),
            wal,
            next: durable,
            chain: l.chain,
            last_received: l.last_received,
            sessions: l.sessions,
            dedup: l.dedup,
        };
        let (tx, rx) = mpsc::channel(ctx.cfg.queue_requests.max(1));
        let sh = shared.clone();
        let group_max = ctx.cfg.group_max_events.max(1);
        let sequencer = std::thread::Builder::new()
            .name(format!("seq-{ns}"))
            .spawn(move || sequencer_loop(seq, rx, sh, group_max))
            .map_err(|e| inconsistent(ns, format!("cannot start sequencer: {e}")))?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let publisher = Publisher {
            ctx: ctx.clone(),
            shared: shared.clone(),
            lease,
            inflight: None,
            last_renew: tokio::time::Instant::from_std(renewed_at),
            last_compact: tokio::time::Instant::now(),
            wal_dir: wal_dir.to_path_buf(),
        };
        // A checkpoint for segments written just before a crash, if it is missing.
        let needs_checkpoint =
            l.latest.as_ref().map(|(s, _)| *s) != Some(l.published) && l.published > 0;
        let handle = tokio::spawn(publisher.run(shutdown_rx, needs_checkpoint));
        Ok(Arc::new(NsLog {
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
        {
            let st = self
                .shared
                .state
                .read()
                .map_err(|_| AppendError::Failed("state lock poisoned".into()))?;
            if st.tail.len() + events.len() > self.shared.cfg.max_unpublished_events
                || st.tail_bytes > self.shared.cfg.max_unpublished_bytes
            {
                return Err(AppendError::Overloaded(
                    "too many entries wait for the object store",
                ));
            }
        }
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
        let ok = tokio::time::timeout(timeout, rx.wait_for(|p| *p >= size)).await;
        match ok {
            Ok(Ok(_)) => self.latest_checkpoint().filter(|(s, _)| *s >= size),
            _ => None,
        }
    }

    /// RFC 6962 inclusion proof of `index` in the tree of `size` (size <= the latest checkpoint).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), MerkleError> {
        let st = self
            .shared
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inclusion_within(&st.tree, self.published_size(), index, size)
    }

    /// RFC 6962 consistency proof between two sizes (both <= the latest checkpoint).
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, MerkleError> {
        let st = self
            .shared
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        consistency_within(&st.tree, self.published_size(), from, to)
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

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn sequencer_loop(
    mut s: Sequencer,
    mut rx: mpsc::Receiver<AppendReq>,
    shared: Arc<Shared>,
    group_max: usize,
) {
    let mut entries: Vec<Entry> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut reqs = vec![first];
        let mut n = reqs[0].events.len();
        while n < group_max {
            match rx.try_recv() {
                Ok(r) => {
                    n += r.events.len();
                    reqs.push(r);
                }
                Err(_) => break,
            }
        }
        // Re-check here, not only at enqueue: a request may have waited in the
        // queue past the lease deadline. Sealing and the WAL write follow at once.
        let valid_until = *shared
            .lease_valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refused = match shared.check() {
            Err(e) => Some(e),
            Ok(()) if Instant::now() > valid_until => Some(AppendError::LeaseLapsed),
            Ok(()) => None,
        };
        if let Some(e) = refused {
            for r in reqs {
                let _ = r.reply.send(Err(clone_err(&e)));
            }
            continue;
        }
        entries.clear();
        let mut answers: Vec<(Reply, Result<Vec<Receipt>, AppendError>)> = Vec::new();
        let mut failed = None;
        let mut pending = reqs.into_iter();
        for req in pending.by_ref() {
            // All or nothing: a request with an `event_id` conflict is refused
            // before any of its events is sealed.
            if let Some(msg) = conflict(&s.dedup, &req) {
                answers.push((req.reply, Err(AppendError::Conflict(msg))));
                continue;
            }
            let mut receipts = Vec::with_capacity(req.events.len());
            for ev in req.events {
                let key = ev
                    .event_id()
                    .map(|id| dedup_key(&req.ingested_by, ev.session_id(), id));
                if let Some(key) = &key
                    && let Seen::Duplicate(r) = s.dedup.seen(key, ev.fingerprint())
                {
                    receipts.push(Receipt {
                        duplicate: true,
                        ..r.clone()
                    });
                    continue;
                }
                let fingerprint = *ev.fingerprint();
                s.last_received = s.last_received.max(now_micros());
                let session_seq = *s.sessions.get(ev.session_id()).unwrap_or(&0);
                let session_id = ev.session_id().to_string();
                let sealed = ev.seal(Position {
                    ns: &s.ns,
                    idx: s.next,
                    session_seq,
                    received_at: s.last_received,
                    ingested_by: &req.ingested_by,
                    prev_chain: s.chain,
                });
                match sealed {
                    Ok(e) => {
                        s.next += 1;
                        s.chain = e.chain_hash;
                        s.sessions.insert(session_id, session_seq + 1);
                        let r = receipt(&e);
                        if let Some(key) = key {
                            s.dedup.insert(key, r.clone(), fingerprint);
                        }
                        receipts.push(r);
                        entries.push(e);
                    }
                    Err(e) => {
                        failed = Some(format!("sealing failed: {e}"));
                        break;
                    }
                }
            }
            answers.push((req.reply, Ok(receipts)));
            if failed.is_some() {
                break;
            }
        }
        // Requests after a failure get the failure too, not a dropped channel.
        answers.extend(pending.map(|r| (r.reply, Ok(Vec::new()))));
        if failed.is_none()
            && let Err(e) = s.wal.append(&entries)
        {
            failed = Some(format!("WAL write failed: {e}"));
        }
        if let Some(msg) = failed {
            // Fail closed: after a failed write or fsync we cannot know what is on
            // disk, so nothing more is acknowledged until a restart recovers.
            shared.fail(STATUS_FAILED, msg.clone());
            for (reply, _) in answers {
                let _ = reply.send(Err(AppendError::Failed(msg.clone())));
            }
            // Entries sealed before the failure are not in the tree: their
            // dedupe keys must not answer later retries as duplicates. The
            // log is failed (nothing more is acknowledged) until a restart
            // rebuilds the window from what is really stored.
            continue;
        }
        // The entries are in the WAL; they must also be in the tree before a
        // receipt says so. A poisoned state lock (a panic elsewhere) means
        // they cannot be: fail as a failed write does (no receipt; a restart
        // recovers them from the WAL), never acknowledge entries left out.
        let added = match shared.state.write() {
            Ok(mut st) => {
                for e in entries.drain(..) {
                    st.tree.push(e.leaf_hash);
                    st.tail_bytes += e.approx_size();
                    st.tail.push_back(Arc::new(e));
                }
                true
            }
            Err(_) => false,
        };
        if !added {
            let msg =
                "the log's state lock is poisoned; restart to recover from the WAL".to_string();
            shared.fail(STATUS_FAILED, msg.clone());
            for (reply, _) in answers {
                let _ = reply.send(Err(AppendError::Failed(msg.clone())));
            }
            continue;
        }
        shared.durable_tx.send_replace(s.next);
        for (reply, outcome) in answers {
            let _ = reply.send(outcome);
        }
        if let Err(e) = s.wal.release_below(shared.published.load(Ordering::SeqCst)) {
            tracing::warn!(ns = %s.ns, "WAL cleanup: {e}");
        }
    }
}

fn clone_err(e: &AppendError) -> AppendError {
    match e {
        AppendError::Overloaded(m) => AppendError::Overloaded(m),
        AppendError::Fenced(m) => AppendError::Fenced(m.clone()),
        AppendError::Failed(m) => AppendError::Failed(m.clone()),
        AppendError::Closed => AppendError::Closed,
        AppendError::LeaseLapsed => AppendError::LeaseLapsed,
        AppendError::Conflict(m) => AppendError::Conflict(m.clone()),
    }
}

/// The first `event_id` conflict of `req`, if any: an event whose key the
/// window (or an earlier event of the same request) holds for a different
/// event.
fn conflict(dedup: &Dedup, req: &AppendReq) -> Option<String> {
    let mut own: HashMap<Hash, &Hash> = HashMap::new();
    for ev in &req.events {
        let Some(id) = ev.event_id() else { continue };
        let key = dedup_key(&req.ingested_by, ev.session_id(), id);
        let clash = match dedup.seen(&key, ev.fingerprint()) {
            Seen::Conflict => true,
            Seen::Duplicate(_) => false,
            Seen::New => own
                .insert(key, ev.fingerprint())
                .is_some_and(|f| f != ev.fingerprint()),
        };
        if clash {
            let shown: String = id.chars().take(128).collect();
            return Some(format!(
                "event_id {shown:?} of session {:?} was already used by this writer for a different event; nothing of this request was appended",
                ev.session_id()
            ));
        }
    }
    None
}

struct Publisher {
    ctx: Arc<LogContext>,
    shared: Arc<Shared>,
    lease: Lease,
    /// Last index of a segment whose upload was attempted but not yet
    /// checkpointed: a retry must write exactly the same range.
    inflight: Option<u64>,
    last_renew: tokio::time::Instant,
    last_compact: tokio::time::Instant,
    wal_dir: std::path::PathBuf,
}

enum PublishError {
    Fenced(String),
    Retry(String),
}

impl From<LeaseError> for PublishError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::Fenced { .. } => PublishError::Fenced(e.to_string()),
            other => PublishError::Retry(other.to_string()),
        }
    }
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        PublishError::Retry(e.to_string())
    }
}

impl Publisher {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>, mut force_checkpoint: bool) {
        let interval = Duration::from_millis(self.shared.cfg.flush_interval_ms.max(10));
        let mut backoff = interval;
        loop {
            let stopping = *shutdown.borrow();
            let mut failed = false;
            match self.step(&mut force_checkpoint).await {
                Ok(()) => {}
                Err(PublishError::Fenced(msg)) => {
                    // Never touch the log again: another server owns it now.
                    self.shared.fail(STATUS_FENCED, msg);
                    return;
                }
                Err(PublishError::Retry(msg)) => {
                    tracing::warn!(ns = %self.shared.ns, "publishing failed, will retry: {msg}");
                    self.shared.publish_failures.fetch_add(1, Ordering::Relaxed);
                    failed = true;
                }
            }
            if stopping && (!failed || self.shared.check().is_err()) {
                break;
            }
            backoff = if failed {
                (backoff * 2).min(Duration::from_secs(5))
            } else {
                interval
            };
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                r = shutdown.changed() => {
                    if r.is_err() {
                        // The log was dropped without `shutdown` (as in a crash): stop
                        // here. Without this the loop would spin (`changed` fails at
                        // once) and keep writing to the store behind a new owner of
                        // the data directory. The WAL holds everything unpublished.
                        return;
                    }
                }
            }
        }
        if self.shared.check().is_ok()
            && let Err(e) = self.lease.release().await
        {
            tracing::warn!(ns = %self.shared.ns, "releasing the lease: {e}");
        }
    }

    /// One round: renew if due, write a missing checkpoint, publish the tail.
    async fn step(&mut self, force_checkpoint: &mut bool) -> Result<(), PublishError> {
        self.renew_if_due().await?;
        if *force_checkpoint {
            self.checkpoint_current().await?;
            *force_checkpoint = false;
        }
        while self.publish_once().await? {
            self.renew_if_due().await?;
        }
        self.compact_if_due().await;
        Ok(())
    }

    /// Merges small segments now and then (see [`crate::compact`]). Failures
    /// are logged and retried next time; they never stop publishing.
    async fn compact_if_due(&mut self) {
        let cfg = &self.shared.cfg;
        if cfg.compact_interval_ms == 0
            || self.last_compact.elapsed() < Duration::from_millis(cfg.compact_interval_ms)
            || self.shared.check().is_err()
        {
            return;
        }
        self.last_compact = tokio::time::Instant::now();
        let policy = crate::compact::CompactPolicy {
            target_rows: cfg.compact_target_rows.max(2),
            min_segments: cfg.compact_min_segments.max(2),
        };
        let shared = self.shared.clone();
        let root_at = move |size: u64| {
            let st = shared
                .state
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            st.tree.root_at(size).ok()
        };
        let r = crate::compact::compact_once(
            &self.ctx.store,
            &self.shared.ns,
            &self.shared.origin,
            &self.ctx.key,
            root_at,
            policy,
        )
        .await;
        if let Err(e) = r {
            tracing::warn!(ns = %self.shared.ns, "compaction: {e}");
        }
    }

    /// Renews the lease when a third of its TTL has passed since the last renewal.
    async fn renew_if_due(&mut self) -> Result<(), PublishError> {
        let every = Duration::from_millis((self.shared.cfg.lease_ttl_ms / 3).max(100) as u64);
        if self.last_renew.elapsed() < every {
            return Ok(());
        }
        let started = Instant::now();
        self.lease.renew().await?;
        self.last_renew = tokio::time::Instant::now();
        // Count validity from when the renewal was sent, not when it returned.
        let until =
            started + Duration::from_millis((self.shared.cfg.lease_ttl_ms.max(0) as u64) * 3 / 4);
        *self
            .shared
            .lease_valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = until;
        Ok(())
    }

    /// Publishes one segment of the tail. Returns whether it did anything.
    async fn publish_once(&mut self) -> Result<bool, PublishError> {
        if let Err(e) = self.shared.check() {
            return Err(PublishError::Fenced(e.to_string()));
        }
        let cfg = &self.shared.cfg;
        let inflight = self.inflight;
        let (batch, chain_in, root) = {
            let st = self
                .shared
                .state
                .read()
                .map_err(|_| PublishError::Fenced("state lock poisoned".into()))?;
            if st.tail.is_empty() {
                return Ok(false);
            }
            let mut bytes = 0;
            let mut batch: Vec<Arc<Entry>> = Vec::new();
            for e in st.tail.iter() {
                let full = match inflight {
                    // A retry writes exactly the range it tried before.
                    Some(last) => e.idx > last,
                    None => {
                        !batch.is_empty()
                            && (batch.len() >= cfg.segment_max_rows
                                || bytes >= cfg.segment_max_bytes)
                    }
                };
                if full {
                    break;
                }
                bytes += e.approx_size();
                batch.push(e.clone());
            }
            let last = batch[batch.len() - 1].idx;
            let root = st
                .tree
                .root_at(last + 1)
                .map_err(|e| PublishError::Fenced(e.to_string()))?;
            (batch, st.published_chain, root)
        };
        let (first, last) = (batch[0].idx, batch[batch.len() - 1].idx);
        let ns = self.shared.ns.clone();
        let ns = &ns;
        self.lease.claim(first, last).await?;
        self.inflight = Some(last);
        let key = self.ctx.key.clone();
        let key_id = note::key_id(&self.shared.origin, &key.verifying_key().to_bytes());
        let entries = batch.clone();
        let (_, bytes) = tokio::task::spawn_blocking(move || {
            let seal = SegmentSeal {
                chain_in,
                root,
                key_id,
                key: &key,
            };
            segment::encode(&entries, &seal)
        })
        .await
        .map_err(|e| PublishError::Retry(e.to_string()))?
        .map_err(|e| PublishError::Retry(e.to_string()))?;
        match self
            .ctx
            .store
            .put_create(&layout::segment(ns, first, last), bytes)
            .await
        {
            Ok(()) => {
                self.shared
                    .segments_uploaded
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(StoreError::AlreadyExists(p)) => {
                // Our own earlier attempt (its acknowledgement was lost), or someone else's?
                self.check_own_segment(
                    ns,
                    first,
                    last,
                    chain_in,
                    root,
                    batch[batch.len() - 1].chain_hash,
                )
                .await
                .map_err(|why| {
                    PublishError::Fenced(format!("segment {p} exists and is not ours: {why}"))
                })?;
            }
            Err(e) => return Err(e.into()),
        }
        let size = last + 1;
        let note_text = self.write_checkpoint(size, root).await?;
        self.inflight = None;
        {
            let mut st = self
                .shared
                .state
                .write()
                .map_err(|_| PublishError::Fenced("state lock poisoned".into()))?;
            for _ in 0..batch.len() {
                if let Some(e) = st.tail.pop_front() {
                    st.tail_bytes = st.tail_bytes.saturating_sub(e.approx_size());
                }
            }
            st.published_chain = batch[batch.len() - 1].chain_hash;
            st.latest_note = Some((size, note_text));
        }
        self.shared.published.store(size, Ordering::SeqCst);
        self.shared.published_tx.send_replace(size);
        self.shared
            .checkpoint_at_ms
            .store(unix_ms_now(), Ordering::Relaxed);
        tracing::debug!(ns = %ns, first, last, "published segment");
        Ok(true)
    }

    /// Checks that an existing segment object is the one we meant to write:
    /// signed by our key, same range, same chain and root.
    async fn check_own_segment(
        &self,
        ns: &str,
        first: u64,
        last: u64,
        chain_in: Hash,
        root: Hash,
        chain_out: Hash,
    ) -> Result<(), String> {
        let bytes = self
            .ctx
            .store
            .get(&layout::segment(ns, first, last))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("it vanished")?;
        let (h, sig) = segment::decode_header(&bytes).map_err(|e| e.to_string())?;
        use base64::Engine;
        let ok = segment::verify_header_signature(&h, &sig, &self.ctx.key.verifying_key())
            && segment::file_digest_matches(&h, &sig, &bytes)
            && (h.first, h.last) == (first, last)
            && h.chain_in == hex::encode(chain_in)
            && h.chain_out == hex::encode(chain_out)
            && h.root == base64::engine::general_purpose::STANDARD.encode(root);
        if ok {
            Ok(())
        } else {
            Err("its signed header differs".into())
        }
    }

    /// Signs and stores the checkpoint for `size` (create-only), then the pointer.
    async fn write_checkpoint(&self, size: u64, root: Hash) -> Result<String, PublishError> {
        let ns = &self.shared.ns;
        let cp = Checkpoint {
            origin: self.shared.origin.clone(),
            size,
            root,
        };
        let text = note::sign_checkpoint(&cp, &self.shared.origin, &self.ctx.key);
        let path = layout::checkpoint_at(ns, size);
        let text = match self
            .ctx
            .store
            .put_create(&path, Bytes::from(text.clone()))
            .await
        {
            Ok(()) => text,
            Err(StoreError::AlreadyExists(_)) => {
                // Written before a crash? Then it must be ours and agree.
                let existing = self.ctx.store.get(&path).await?.unwrap_or_default();
                let existing = String::from_utf8_lossy(&existing).to_string();
                match note::open_checkpoint(
                    &existing,
                    &self.shared.origin,
                    &self.ctx.key.verifying_key(),
                ) {
                    Ok(c) if c.root == root && c.size == size => existing,
                    _ => {
                        return Err(PublishError::Fenced(format!(
                            "checkpoint {path} exists and disagrees"
                        )));
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        self.ctx
            .store
            .put_overwrite(&layout::latest_checkpoint(ns), Bytes::from(text.clone()))
            .await?;
        let (dir, t) = (self.wal_dir.clone(), text.clone());
        tokio::task::spawn_blocking(move || save_last_signed(&dir, &t))
            .await
            .map_err(|e| PublishError::Retry(e.to_string()))?
            .map_err(|e| PublishError::Retry(format!("recording the signed checkpoint: {e}")))?;
        Ok(text)
    }

    /// Checkpoints the already published size (after a crash between segment and checkpoint).
    async fn checkpoint_current(&self) -> Result<(), PublishError> {
        let size = self.shared.published.load(Ordering::SeqCst);
        let root = {
            let st = self
                .shared
                .state
                .read()
                .map_err(|_| PublishError::Fenced("state lock poisoned".into()))?;
            st.tree
                .root_at(size)
                .map_err(|e| PublishError::Fenced(e.to_string()))?
        };
        let text = self.write_checkpoint(size, root).await?;
        if let Ok(mut st) = self.shared.state.write() {
            st.latest_note = Some((size, text));
        }
        self.shared.published_tx.send_replace(size);
        self.shared
            .checkpoint_at_ms
            .store(unix_ms_now(), Ordering::Relaxed);
        Ok(())
    }
}
