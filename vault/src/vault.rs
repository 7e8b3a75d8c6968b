//! The vault: every namespace log of one store, its identity (`vault.json`),
//! and the data directory that holds keys, WAL and the instance lock.
//!
//! Data directory layout:
//! `keys/log.key`, `keys/issuer.key` (0600), `instance` (this server's lease
//! owner id), `lock` (held exclusively while a server runs), `wal/<ns>/`, and
//! `store/` when the store is the local default.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use tracevault_schemas::Event;

use crate::config::LogConfig;
use crate::keys::{self, KeyError};
use crate::lease::LeaseError;
use crate::log::{AppendError, Appender, LogContext, OpenError, PublishedTree, Receipt};
use crate::note;
use crate::reader::{LogReader, ReadPlan, SegmentDecoder};
use crate::record::Entry;
use crate::record::{Prepared, RecordError};
use crate::store::{Store, StoreError, layout};
use crate::tile_proofs::ProofError;

/// `vault.json`: the identity of a store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VaultMeta {
    /// Format marker.
    pub format: String,
    /// Random id chosen at creation.
    pub vault_id: String,
    /// Checkpoint origin prefix (`tracevault.local/<vault_id>`).
    pub origin: String,
    /// Base64 of the 32-byte Ed25519 log public key.
    pub log_public_key: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// Format marker in `vault.json`.
pub const VAULT_FORMAT: &str = "tracevault/v1";

impl VaultMeta {
    /// The log public key.
    pub fn public_key(&self) -> Result<VerifyingKey, String> {
        let b = B64
            .decode(&self.log_public_key)
            .map_err(|_| "log_public_key is not base64".to_string())?;
        let b: [u8; 32] = b
            .try_into()
            .map_err(|_| "log_public_key is not 32 bytes".to_string())?;
        VerifyingKey::from_bytes(&b).map_err(|e| format!("log_public_key: {e}"))
    }
}

/// Reads `vault.json` from a store.
pub async fn read_meta(store: &Store) -> Result<Option<VaultMeta>, VaultError> {
    match store.get(&layout::vault_json()).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| VaultError::Meta(format!("vault.json: {e}"))),
    }
}

/// Vault-level failures.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// See [`KeyError`].
    #[error(transparent)]
    Key(#[from] KeyError),
    /// See [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// See [`OpenError`].
    #[error(transparent)]
    Open(#[from] OpenError),
    /// `vault.json` problems, or a key that does not match it.
    #[error("{0}")]
    Meta(String),
    /// The data directory is in use or unusable.
    #[error("{0}")]
    DataDir(String),
    /// A namespace name that cannot be used.
    #[error(
        "invalid namespace {0:?}: use 1-64 characters of [a-z0-9._-], starting with a letter or digit"
    )]
    BadNamespace(String),
    /// See [`AppendError`].
    #[error(transparent)]
    Append(#[from] AppendError),
    /// An event could not be prepared (canonical JSON, random generator).
    #[error("event could not be sealed: {0}")]
    Record(#[from] RecordError),
    /// Stored entries could not be read back (a segment failed to decode).
    #[error("reading the log: {0}")]
    Read(String),
    /// With `ack_after_publish`: the entries are durable on this node but
    /// not in the store yet (retry with the same `event_id`s).
    #[error(
        "entries up to {0} are durable on this node but not yet in the store; retry (with the same event_id) for the receipt"
    )]
    NotInStore(u64),
}

/// Checks a namespace name. Names starting with `_` are reserved for the
/// vault's own logs (such as `_audit`) and accepted only when `system` is set.
pub fn validate_namespace(ns: &str, system: bool) -> Result<(), VaultError> {
    let body = if system {
        ns.strip_prefix('_').unwrap_or(ns)
    } else {
        ns
    };
    let ok = !body.is_empty()
        && ns.len() <= 64
        && body
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(VaultError::BadNamespace(ns.to_string()))
    }
}

/// Options for opening a vault.
pub struct VaultOptions {
    /// Data directory (keys, WAL, lock; the local store by default).
    pub data_dir: PathBuf,
    /// The store (default: `<data>/store` on the local file system).
    pub store: Option<Store>,
    /// Origin for a new vault (default `tracevault.local/<vault id>`).
    pub origin: Option<String>,
    /// Log tunables.
    pub log: LogConfig,
}

/// Read-only published_trees kept at once (each holds a namespace's whole tree).
const MAX_PUBLISHED_TREES: usize = 8;

/// What reads of a namespace go through.
pub enum LogView {
    /// This server writes the namespace.
    Open(Arc<Appender>),
    /// The store's published tree (a namespace this server does not write).
    Store(Arc<PublishedTree>),
}

impl LogView {
    /// The latest signed checkpoint (size, note).
    pub fn latest_checkpoint(&self) -> Option<(u64, String)> {
        match self {
            LogView::Open(l) => l.latest_checkpoint(),
            LogView::Store(s) => s.latest_checkpoint(),
        }
    }

    /// Inclusion proof of `index` at `size` (covered by a checkpoint).
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<(crate::record::Hash, Vec<crate::record::Hash>), ProofError> {
        match self {
            LogView::Open(l) => l.inclusion_proof(index, size).await,
            LogView::Store(s) => s.inclusion_proof(index, size).await,
        }
    }

    /// Consistency proof between two sizes (covered by a checkpoint).
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<crate::record::Hash>, ProofError> {
        match self {
            LogView::Open(l) => l.consistency_proof(from, to).await,
            LogView::Store(s) => s.consistency_proof(from, to).await,
        }
    }
}

/// A namespace as listed by `/v1/vault`.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceInfo {
    /// Name.
    pub ns: String,
    /// C2SP verifier key of its checkpoints.
    pub verifier_key: String,
    /// Entries covered by its latest checkpoint.
    pub size: u64,
}

struct Inner {
    ctx: Arc<LogContext>,
    /// Store-side reads (segments, checkpoints) go through the reader.
    reader: LogReader,
    meta: VaultMeta,
    data_dir: PathBuf,
    /// One cell per namespace, so that opening one (which may read the whole
    /// namespace from the store) never blocks appends to the others.
    logs: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Appender>>>>>,
    /// Read-only views of namespaces this server does not write.
    published_trees: tokio::sync::Mutex<HashMap<String, Arc<PublishedTree>>>,
    _lock: File,
}

/// An open vault. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

fn data_err(p: &FsPath, e: std::io::Error) -> VaultError {
    VaultError::DataDir(format!("{}: {e}", p.display()))
}

fn instance_id(data: &FsPath) -> Result<String, VaultError> {
    let path = data.join("instance");
    match fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let mut b = [0u8; 8];
            keys::random_bytes(&mut b)?;
            let id = hex::encode(b);
            // Atomic and durable: a lost or empty id after a power cut would make
            // this server a stranger to its own leases and claims.
            keys::write_secret_file(&path, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
    }
}

/// Loads (or creates) the log key and checks it against `vault.json`,
/// creating `vault.json` for a new store.
async fn load_meta(
    store: &Store,
    key: &SigningKey,
    origin: Option<String>,
) -> Result<VaultMeta, VaultError> {
    let pk = B64.encode(key.verifying_key().to_bytes());
    for _ in 0..3 {
        if let Some(meta) = read_meta(store).await? {
            if meta.format != VAULT_FORMAT {
                return Err(VaultError::Meta(format!(
                    "vault.json has unknown format {:?}",
                    meta.format
                )));
            }
            if meta.log_public_key != pk {
                return Err(VaultError::Meta(format!(
                    "the store's vault.json names log key {} but this data directory holds key {pk}; \
                     refusing to sign with a different key",
                    meta.log_public_key
                )));
            }
            return Ok(meta);
        }
        let mut id = [0u8; 8];
        keys::random_bytes(&mut id)?;
        let vault_id = hex::encode(id);
        let meta = VaultMeta {
            format: VAULT_FORMAT.into(),
            origin: origin
                .clone()
                .unwrap_or_else(|| format!("tracevault.local/{vault_id}")),
            vault_id,
            log_public_key: pk.clone(),
            created_at: tracevault_schemas::format_timestamp(&chrono::Utc::now()),
        };
        let body = serde_json::to_vec_pretty(&meta).map_err(|e| VaultError::Meta(e.to_string()))?;
        match store
            .put_create(&layout::vault_json(), Bytes::from(body))
            .await
        {
            Ok(()) => return Ok(meta),
            Err(StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(VaultError::Meta(
        "vault.json keeps changing; is another server creating it?".into(),
    ))
}

impl Vault {
    /// Opens the vault: locks the data directory, loads keys, checks or
    /// creates `vault.json`, and recovers every namespace with WAL data.
    pub async fn open(opts: VaultOptions) -> Result<Vault, VaultError> {
        let data = opts.data_dir.clone();
        crate::wal::ensure_private_dir(&data).map_err(|e| data_err(&data, e))?;
        let lock_path = data.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| data_err(&lock_path, e))?;
        lock.try_lock().map_err(|_| {
            VaultError::DataDir(format!(
                "{} is in use by another tracevault process (lock {} is held)",
                data.display(),
                lock_path.display()
            ))
        })?;
        let (key, created) = keys::load_or_create(&data.join("keys/log.key"))?;
        if created {
            tracing::info!("created the log signing key");
        }
        let store = match opts.store {
            Some(s) => s,
            None => Store::local(&data.join("store"))?,
        };
        let meta = load_meta(&store, &key, opts.origin).await?;
        let ctx = Arc::new(LogContext {
            store,
            key,
            vault_origin: meta.origin.clone(),
            instance_id: instance_id(&data)?,
            cfg: opts.log,
        });
        let vault = Vault {
            inner: Arc::new(Inner {
                reader: LogReader::new(ctx.store.clone()),
                ctx,
                meta,
                data_dir: data.clone(),
                logs: tokio::sync::Mutex::new(HashMap::new()),
                published_trees: tokio::sync::Mutex::new(HashMap::new()),
                _lock: lock,
            }),
        };
        // Namespaces with WAL data must publish it even if nobody writes again.
        let wal_root = data.join("wal");
        if let Ok(dirs) = fs::read_dir(&wal_root) {
            for d in dirs.flatten() {
                let ns = d.file_name().to_string_lossy().to_string();
                let has_data = fs::read_dir(d.path())
                    .map(|it| {
                        it.flatten()
                            .any(|f| f.metadata().map(|m| m.len() > 0).unwrap_or(false))
                    })
                    .unwrap_or(false);
                if has_data && validate_namespace(&ns, true).is_ok() {
                    match vault.log(&ns).await {
                        Ok(_) => {}
                        // Held by another server (a failover): this server must still
                        // start and serve its other namespaces. Appends to `ns` keep
                        // failing as fenced until the lease comes back.
                        Err(VaultError::Open(OpenError::Lease(e @ LeaseError::Fenced { .. }))) => {
                            tracing::warn!(ns = %ns, "not recovering the WAL of this namespace: {e}");
                        }
                        // One damaged or unreachable namespace must not take the
                        // others down: report it and keep serving; appends to it
                        // retry the open (and fail with this error) later.
                        Err(e) => tracing::error!(ns = %ns, "namespace unavailable: {e}"),
                    }
                }
            }
        }
        Ok(vault)
    }

    /// `vault.json` of this vault.
    pub fn meta(&self) -> &VaultMeta {
        &self.inner.meta
    }

    /// The log public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.inner.ctx.key.verifying_key()
    }

    /// Signs a message one node sends another with the log key the nodes of
    /// a cluster share (SPEC section 11). The message must begin with its
    /// own domain separator (`tracevault/...\n`, a first line no vault uses
    /// as its checkpoint origin), so that it cannot pass for a checkpoint.
    pub fn sign_node_message(&self, msg: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer;
        debug_assert!(msg.starts_with(b"tracevault/"));
        self.inner.ctx.key.sign(msg)
    }

    /// This server instance's id (stable per data directory): the owner
    /// named in the leases it holds.
    pub fn instance_id(&self) -> &str {
        &self.inner.ctx.instance_id
    }

    /// The data directory.
    pub fn data_dir(&self) -> &FsPath {
        &self.inner.data_dir
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.ctx.store
    }

    /// Checkpoint origin (and key name) of a namespace.
    pub fn origin_of(&self, ns: &str) -> String {
        format!("{}/{ns}", self.inner.meta.origin)
    }

    /// C2SP verifier key of a namespace.
    pub fn verifier_key(&self, ns: &str) -> String {
        note::verifier_key(&self.origin_of(ns), &self.public_key().to_bytes())
    }

    /// The open log of `ns`, opening (and recovering) it on first use.
    pub async fn log(&self, ns: &str) -> Result<Arc<Appender>, VaultError> {
        validate_namespace(ns, true)?;
        let cell = self
            .inner
            .logs
            .lock()
            .await
            .entry(ns.to_string())
            .or_default()
            .clone();
        let log = cell
            .get_or_try_init(|| async {
                let wal_dir = self.inner.data_dir.join("wal").join(ns);
                Appender::open(self.inner.ctx.clone(), ns, &wal_dir).await
            })
            .await?;
        Ok(log.clone())
    }

    /// Appends to one of the vault's own logs (`_audit`): what the server
    /// records about access to itself. Never reachable by writer tokens.
    pub async fn append_system(
        &self,
        ns: &str,
        events: Vec<Event>,
        ingested_by: &str,
    ) -> Result<Vec<Receipt>, VaultError> {
        if !ns.starts_with('_') {
            return Err(VaultError::BadNamespace(ns.to_string()));
        }
        validate_namespace(ns, true)?;
        let prepared = Prepared::batch(events)?;
        let log = self.log(ns).await?;
        let receipts = log.append(prepared, ingested_by).await?;
        self.acknowledge(&log, receipts).await
    }

    /// Returns `receipts` once they may be sent: at once, or with
    /// `ack_after_publish` (cluster mode) once the store holds the entries
    /// (`NotInStore` if that takes longer than `ack_publish_timeout_ms`).
    async fn acknowledge(
        &self,
        log: &Appender,
        receipts: Vec<Receipt>,
    ) -> Result<Vec<Receipt>, VaultError> {
        let cfg = &self.inner.ctx.cfg;
        if cfg.ack_after_publish {
            // Duplicates too: their original may not be published yet.
            let need = receipts.iter().map(|r| r.index + 1).max().unwrap_or(0);
            let wait = std::time::Duration::from_millis(cfg.ack_publish_timeout_ms);
            if log.wait_published(need, wait).await.is_none() {
                return Err(VaultError::NotInStore(need.saturating_sub(1)));
            }
        }
        Ok(receipts)
    }

    /// Every entry of session `session_id` in `ns`, in index order: from the
    /// segments in the store and, when this server writes `ns`, its durable
    /// but unpublished tail. Reads each segment's `session_id` column, and
    /// decodes only the session's rows: meant for the small system sessions
    /// (export steps in `_audit`, which grows with every query).
    pub async fn session_entries(
        &self,
        ns: &str,
        session_id: &str,
    ) -> Result<Vec<Entry>, VaultError> {
        let sid = session_id.to_string();
        let tail_sid = sid.clone();
        self.scan_segments(
            ns,
            move |e| e.session_id == tail_sid,
            move |_, _| {
                let sid = sid.clone();
                Some(Box::new(move |bytes| {
                    let mut rows = Vec::new();
                    crate::segment::decode_session(bytes, &sid, |e| rows.push(e)).map(|_| rows)
                }) as SegmentDecoder)
            },
            usize::MAX,
        )
        .await
    }

    /// The store-only reader of this vault's store.
    pub fn reader(&self) -> &LogReader {
        &self.inner.reader
    }

    /// The open, healthy-or-not appender of `ns`, if this server opened it.
    async fn open_appender(&self, ns: &str) -> Option<Arc<Appender>> {
        let open = self.inner.logs.lock().await.get(ns).cloned();
        open.and_then(|c| c.get().cloned())
    }

    /// What a reader of `ns` must read to see every acknowledged entry: the
    /// segment objects covering the published prefix (one cover, no
    /// overlaps, in index order) and, when this server writes `ns`, the
    /// durable but unpublished entries after them. The tail is taken before
    /// the listing, so an entry published meanwhile is in the listing (and
    /// dropped from the tail), never in neither.
    pub async fn read_plan(&self, ns: &str) -> Result<ReadPlan, VaultError> {
        validate_namespace(ns, true)?;
        let log = self.open_appender(ns).await;
        let mut tail = match &log {
            Some(log) => log
                .unpublished_entries()
                .ok_or_else(|| VaultError::Read(format!("the state of {ns} is unreadable")))?,
            None => Vec::new(),
        };
        // Taken before listing: a signed checkpoint only ever covers entries
        // whose segments are already in the store.
        let floor = self.published_floor(ns, log.as_ref()).await?;
        let segments = self.inner.reader.segments(ns, floor).await?;
        let covered = segments.last().map_or(0, |s| s.last + 1);
        tail.retain(|e| e.idx >= covered);
        Ok(ReadPlan { segments, tail })
    }

    /// Entries `0..floor` of `ns` must be in store segments: the size of the
    /// latest checkpoint (this server's, when it writes `ns`; else the
    /// store's). A listing that covers less has lost a segment.
    async fn published_floor(
        &self,
        ns: &str,
        log: Option<&Arc<Appender>>,
    ) -> Result<u64, VaultError> {
        match log {
            Some(log) => Ok(log.latest_checkpoint().map_or(0, |c| c.0)),
            None => self.inner.reader.published_size(ns).await,
        }
    }

    /// Every entry of `ns` for which `keep` holds, in index order (segments
    /// in the store plus this server's unpublished tail; a full scan). Stops
    /// reading once more than `limit` entries are kept, so a caller can
    /// refuse an oversized scan without holding all of it in memory: a
    /// result longer than `limit` is incomplete by design.
    pub async fn scan_entries(
        &self,
        ns: &str,
        keep: impl Fn(&Entry) -> bool + Send + Sync + Clone + 'static,
        limit: usize,
    ) -> Result<Vec<Entry>, VaultError> {
        let tail_keep = keep.clone();
        self.scan_segments(
            ns,
            move |e| tail_keep(e),
            move |_, _| {
                let keep = keep.clone();
                Some(Box::new(move |bytes| {
                    crate::segment::decode(bytes)
                        .map(|seg| seg.entries.into_iter().filter(|e| keep(e)).collect())
                }) as SegmentDecoder)
            },
            limit,
        )
        .await
    }

    /// The entries of `ns` at `indices` (those that exist), in index order.
    /// Only the segments whose index range holds one of them are read, and
    /// of those only the rows asked for are decoded, so fetching a session's
    /// entries (in chunks, even) does not decode the whole log.
    pub async fn entries_at(
        &self,
        ns: &str,
        indices: Arc<BTreeSet<u64>>,
    ) -> Result<Vec<Entry>, VaultError> {
        let keep = indices.clone();
        self.scan_segments(
            ns,
            move |e| keep.contains(&e.idx),
            LogReader::indices_decoder(indices),
            usize::MAX,
        )
        .await
    }

    /// The entries of the durable tail for which `keep` is true, and of each
    /// segment `(first, last)` for which `decoder` gives a decoder, what it
    /// decodes; in index order, up to about `limit`.
    async fn scan_segments(
        &self,
        ns: &str,
        keep: impl Fn(&Entry) -> bool,
        decoder: impl Fn(u64, u64) -> Option<SegmentDecoder>,
        limit: usize,
    ) -> Result<Vec<Entry>, VaultError> {
        let plan = self.read_plan(ns).await?;
        let tail = plan.tail.into_iter().filter(|e| keep(e)).collect();
        self.inner
            .reader
            .decode_segments(ns, plan.segments, decoder, limit, tail)
            .await
    }

    /// Entry `index` of `ns`: from this server's unpublished tail when it
    /// writes `ns`, else from the store segment covering it. `None` when the
    /// log has no such entry (yet).
    pub async fn entry(&self, ns: &str, index: u64) -> Result<Option<Entry>, VaultError> {
        validate_namespace(ns, true)?;
        let log = self.open_appender(ns).await;
        if let Some(log) = &log {
            let tail = log
                .unpublished_entries()
                .ok_or_else(|| VaultError::Read(format!("the state of {ns} is unreadable")))?;
            if let Some(e) = tail.into_iter().find(|e| e.idx == index) {
                return Ok(Some(e));
            }
        }
        let floor = self.published_floor(ns, log.as_ref()).await?;
        self.inner.reader.entry(ns, index, floor).await
    }

    /// The logs this server has open (written by it), by namespace, for monitoring.
    pub async fn open_logs(&self) -> Vec<(String, Arc<Appender>)> {
        let cells: Vec<_> = self
            .inner
            .logs
            .lock()
            .await
            .iter()
            .map(|(ns, c)| (ns.clone(), c.clone()))
            .collect();
        cells
            .into_iter()
            .filter_map(|(ns, c)| c.get().map(|l| (ns, l.clone())))
            .collect()
    }

    /// A view for reading `ns` (checkpoint, proofs): the open log when this
    /// server writes it, otherwise the store's published tree, reloaded
    /// when the store's latest checkpoint moves. `None` when the namespace has
    /// no checkpoint yet. Reads never take the namespace lease.
    pub async fn view(&self, ns: &str) -> Result<Option<LogView>, VaultError> {
        validate_namespace(ns, true)?;
        let open = self.open_appender(ns).await;
        // A fenced or failed log is frozen: read the store instead.
        if let Some(l) = open.filter(|l| l.is_healthy()) {
            return Ok(Some(LogView::Open(l)));
        }
        let Some(pointer) = self
            .inner
            .ctx
            .store
            .get(&layout::latest_checkpoint(ns))
            .await?
        else {
            return Ok(None);
        };
        let size: Option<u64> = String::from_utf8_lossy(&pointer)
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok());
        // One load at a time (concurrent readers wait for it instead of each
        // re-reading the namespace), and a small cache.
        let mut published_trees = self.inner.published_trees.lock().await;
        if let Some(snap) = published_trees.get(ns)
            && snap.latest_checkpoint().map(|(s, _)| s) == size
        {
            return Ok(Some(LogView::Store(snap.clone())));
        }
        // The writer may merge segments while we read them: retry a few times.
        let mut attempt = 0;
        let snap = loop {
            match PublishedTree::load(&self.inner.ctx, ns).await {
                Ok(s) => break Arc::new(s),
                Err(e) if attempt < 3 => {
                    tracing::debug!(ns, "published tree load retried: {e}");
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if published_trees.len() >= MAX_PUBLISHED_TREES && !published_trees.contains_key(ns) {
            // Each holds a whole tree: keep only a few.
            if let Some(k) = published_trees.keys().next().cloned() {
                published_trees.remove(&k);
            }
        }
        published_trees.insert(ns.to_string(), snap.clone());
        Ok(Some(LogView::Store(snap)))
    }

    /// Appends validated events to `ns`; resolves once they are durable.
    pub async fn append(
        &self,
        ns: &str,
        events: Vec<Event>,
        ingested_by: &str,
    ) -> Result<Vec<Receipt>, VaultError> {
        let prepared = Prepared::batch(events)?;
        self.append_prepared(ns, prepared, ingested_by).await
    }

    /// Appends events prepared by the caller (see [`Prepared`]: callers can do
    /// the payload hashing in parallel); resolves once they are durable.
    pub async fn append_prepared(
        &self,
        ns: &str,
        events: Vec<Prepared>,
        ingested_by: &str,
    ) -> Result<Vec<Receipt>, VaultError> {
        validate_namespace(ns, false)?;
        let log = self.log(ns).await?;
        let receipts = log.append(events, ingested_by).await?;
        self.acknowledge(&log, receipts).await
    }

    /// Every namespace in the store (and any open one), with size and key.
    pub async fn namespaces(&self) -> Result<Vec<NamespaceInfo>, VaultError> {
        let mut names = self.inner.reader.namespaces().await?;
        let open: Vec<(String, u64)> = {
            let logs = self.inner.logs.lock().await;
            logs.iter()
                .filter_map(|(k, c)| c.get().map(|l| (k.clone(), l.published_size())))
                .collect()
        };
        for (n, _) in &open {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names.sort();
        let mut out = Vec::new();
        for ns in names {
            let size = match open.iter().find(|(n, _)| *n == ns) {
                Some((_, s)) => *s,
                None => self.inner.reader.listed_size(&ns).await?,
            };
            out.push(NamespaceInfo {
                verifier_key: self.verifier_key(&ns),
                ns,
                size,
            });
        }
        Ok(out)
    }

    /// Flushes and closes every log (graceful shutdown), releasing leases.
    pub async fn shutdown(&self, timeout: Duration) {
        let logs: Vec<Arc<Appender>> = self
            .inner
            .logs
            .lock()
            .await
            .values()
            .filter_map(|c| c.get().cloned())
            .collect();
        let all = futures::future::join_all(logs.iter().map(|l| l.shutdown()));
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!(
                "shutdown timed out; unpublished entries stay in the WAL and are published on restart"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names() {
        for ok in ["a", "prod", "team-1.agents_x", "0abc"] {
            validate_namespace(ok, false).unwrap();
        }
        for bad in ["", "A", "-a", "a/b", "_audit", "a b", &"x".repeat(65)] {
            assert!(validate_namespace(bad, false).is_err(), "{bad}");
        }
        validate_namespace("_audit", true).unwrap();
    }
}
