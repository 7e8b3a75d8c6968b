//! The vault: every namespace log of one store, its identity (`vault.json`),
//! and the data directory that holds keys, WAL and the instance lock.
//!
//! Data directory layout:
//! `keys/log.key`, `keys/issuer.key` (0600), `instance` (this server's lease
//! owner id), `lock` (held exclusively while a server runs), `wal/<ns>/`, and
//! `store/` when the store is the local default.

use std::collections::HashMap;
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
use crate::log::{AppendError, LogContext, NsLog, OpenError, Receipt, Snapshot};
use crate::note;
use crate::record::{Prepared, RecordError};
use crate::store::{Store, StoreError, layout};

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

/// Decodes the wanted entries of one segment file (run off the async threads).
type SegmentDecoder = Box<
    dyn FnOnce(bytes::Bytes) -> Result<Vec<crate::record::Entry>, crate::segment::SegmentError>
        + Send,
>;

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

/// Read-only snapshots kept at once (each holds a namespace's whole tree).
const MAX_SNAPSHOTS: usize = 8;

/// What reads of a namespace go through.
pub enum LogView {
    /// This server writes the namespace.
    Open(Arc<NsLog>),
    /// A read-only snapshot of the store.
    Snapshot(Arc<Snapshot>),
}

impl LogView {
    /// The latest signed checkpoint (size, note).
    pub fn latest_checkpoint(&self) -> Option<(u64, String)> {
        match self {
            LogView::Open(l) => l.latest_checkpoint(),
            LogView::Snapshot(s) => s.latest_checkpoint(),
        }
    }

    /// Inclusion proof of `index` at `size` (covered by a checkpoint).
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<(crate::record::Hash, Vec<crate::record::Hash>), crate::merkle::MerkleError> {
        match self {
            LogView::Open(l) => l.inclusion_proof(index, size),
            LogView::Snapshot(s) => s.inclusion_proof(index, size),
        }
    }

    /// Consistency proof between two sizes (covered by a checkpoint).
    pub fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<crate::record::Hash>, crate::merkle::MerkleError> {
        match self {
            LogView::Open(l) => l.consistency_proof(from, to),
            LogView::Snapshot(s) => s.consistency_proof(from, to),
        }
    }
}

/// One segment object a reader must read (see [`Vault::read_snapshot`]).
#[derive(Debug, Clone)]
pub struct SegmentObject {
    /// Object path in the store.
    pub path: object_store::path::Path,
    /// Size in bytes, as listed.
    pub size: u64,
    /// First entry index in it.
    pub first: u64,
    /// Last entry index in it.
    pub last: u64,
}

/// A consistent read of one namespace (see [`Vault::read_snapshot`]).
#[derive(Debug, Clone, Default)]
pub struct ReadSnapshot {
    /// Segments covering indices `0..=last`, in index order.
    pub segments: Vec<SegmentObject>,
    /// Acknowledged entries after the last segment, in index order.
    pub tail: Vec<crate::record::Entry>,
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
    meta: VaultMeta,
    data_dir: PathBuf,
    /// One cell per namespace, so that opening one (which may read the whole
    /// namespace from the store) never blocks appends to the others.
    logs: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<NsLog>>>>>,
    /// Read-only views of namespaces this server does not write.
    snapshots: tokio::sync::Mutex<HashMap<String, Arc<Snapshot>>>,
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
                ctx,
                meta,
                data_dir: data.clone(),
                logs: tokio::sync::Mutex::new(HashMap::new()),
                snapshots: tokio::sync::Mutex::new(HashMap::new()),
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
    pub async fn log(&self, ns: &str) -> Result<Arc<NsLog>, VaultError> {
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
                NsLog::open(self.inner.ctx.clone(), ns, &wal_dir).await
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
        Ok(log.append(prepared, ingested_by).await?)
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
    ) -> Result<Vec<crate::record::Entry>, VaultError> {
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

    /// What a reader of `ns` must read to see every acknowledged entry: the
    /// segment objects covering the published prefix (one cover, no
    /// overlaps, in index order) and, when this server writes `ns`, the
    /// durable but unpublished entries after them. The tail is taken before
    /// the listing, so an entry published meanwhile is in the listing (and
    /// dropped from the tail), never in neither.
    pub async fn read_snapshot(&self, ns: &str) -> Result<ReadSnapshot, VaultError> {
        validate_namespace(ns, true)?;
        let open = self.inner.logs.lock().await.get(ns).cloned();
        let mut tail = Vec::new();
        let log = open.and_then(|c| c.get().cloned());
        if let Some(log) = &log {
            tail = log
                .unpublished_entries()
                .ok_or_else(|| VaultError::Read(format!("the state of {ns} is unreadable")))?;
        }
        // Taken before listing: a signed checkpoint only ever covers entries
        // whose segments are already in the store.
        let floor = self.published_floor(ns, log.as_ref()).await?;
        // The segments must tile the log from index 0: a hole means a
        // segment was removed from the store, and a reader must never get a
        // silently partial answer. A listing taken while compaction swaps
        // segments can show a transient hole, so list again before failing.
        let mut attempt = 0;
        let (sizes, ranges) = loop {
            let listed = self
                .inner
                .ctx
                .store
                .list_sized(&layout::segments(ns))
                .await?;
            let sizes: HashMap<(u64, u64), u64> = listed
                .iter()
                .filter_map(|(n, size)| Some((crate::segment::parse_segment_file_name(n)?, *size)))
                .collect();
            let tiling = crate::tiling::tile(listed.iter().map(|(n, _)| n.as_str()));
            match tiling.hole_below(floor) {
                None => break (sizes, tiling.cover),
                Some(_) if attempt < 2 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Some((a, b)) => {
                    return Err(VaultError::Read(format!(
                        "entries {a}-{b} of {ns} are missing from the store (a segment was removed); run `tracevault verify`"
                    )));
                }
            }
        };
        let covered = ranges.last().map_or(0, |r| r.1 + 1);
        tail.retain(|e| e.idx >= covered);
        let segments = ranges
            .into_iter()
            .map(|(first, last)| SegmentObject {
                path: layout::segment(ns, first, last),
                size: sizes.get(&(first, last)).copied().unwrap_or(0),
                first,
                last,
            })
            .collect();
        Ok(ReadSnapshot { segments, tail })
    }

    /// Entries `0..floor` of `ns` must be in store segments: the size of the
    /// latest checkpoint (this server's, when it writes `ns`; else the
    /// store's). A listing that covers less has lost a segment.
    async fn published_floor(&self, ns: &str, log: Option<&Arc<NsLog>>) -> Result<u64, VaultError> {
        if let Some(log) = log {
            return Ok(log.latest_checkpoint().map_or(0, |c| c.0));
        }
        let text = self
            .inner
            .ctx
            .store
            .get(&layout::latest_checkpoint(ns))
            .await?;
        let Some(b) = text else {
            return Ok(0);
        };
        // A checkpoint object that is there but unreadable must not switch
        // off the check for removed segments (floor 0): fail the read.
        std::str::from_utf8(&b)
            .ok()
            .and_then(|t| t.lines().nth(1)?.parse::<u64>().ok())
            .ok_or_else(|| {
                VaultError::Read(format!(
                    "the latest checkpoint of {ns} is unreadable; run `tracevault verify`"
                ))
            })
    }

    /// Every entry of `ns` for which `keep` holds, in index order (segments
    /// in the store plus this server's unpublished tail; a full scan). Stops
    /// reading once more than `limit` entries are kept, so a caller can
    /// refuse an oversized scan without holding all of it in memory: a
    /// result longer than `limit` is incomplete by design.
    pub async fn scan_entries(
        &self,
        ns: &str,
        keep: impl Fn(&crate::record::Entry) -> bool + Send + Sync + Clone + 'static,
        limit: usize,
    ) -> Result<Vec<crate::record::Entry>, VaultError> {
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
        indices: std::sync::Arc<std::collections::BTreeSet<u64>>,
    ) -> Result<Vec<crate::record::Entry>, VaultError> {
        let keep = indices.clone();
        self.scan_segments(
            ns,
            move |e| keep.contains(&e.idx),
            move |first, last| {
                let here: Vec<u64> = indices.range(first..=last).copied().collect();
                (!here.is_empty()).then(|| -> SegmentDecoder {
                    Box::new(move |bytes| {
                        let mut rows = Vec::with_capacity(here.len());
                        crate::segment::decode_indices(bytes, first, &here, |e| rows.push(e))
                            .map(|_| rows)
                    })
                })
            },
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
        keep: impl Fn(&crate::record::Entry) -> bool,
        decoder: impl Fn(u64, u64) -> Option<SegmentDecoder>,
        limit: usize,
    ) -> Result<Vec<crate::record::Entry>, VaultError> {
        let snap = self.read_snapshot(ns).await?;
        let mut out: Vec<crate::record::Entry> =
            snap.tail.into_iter().filter(|e| keep(e)).collect();
        let store = &self.inner.ctx.store;
        for seg in snap.segments {
            if out.len() > limit {
                break;
            }
            let (first, last) = (seg.first, seg.last);
            let Some(decode) = decoder(first, last) else {
                continue;
            };
            let Some(bytes) = store.get(&seg.path).await? else {
                // Merged away after the listing: the merged segment may not be
                // in it. Never return a partial read: the caller retries.
                return Err(VaultError::Read(format!(
                    "segment {first}-{last} of {ns} vanished during the read (compaction); retry"
                )));
            };
            let rows = tokio::task::spawn_blocking(move || decode(bytes))
                .await
                .map_err(|e| VaultError::Read(e.to_string()))?
                .map_err(|e| VaultError::Read(format!("segment {first}-{last}: {e}")))?;
            out.extend(rows);
        }
        out.sort_by_key(|e| e.idx);
        out.dedup_by_key(|e| e.idx);
        Ok(out)
    }

    /// Entry `index` of `ns`: from this server's unpublished tail when it
    /// writes `ns`, else from the store segment covering it. `None` when the
    /// log has no such entry (yet).
    pub async fn entry(
        &self,
        ns: &str,
        index: u64,
    ) -> Result<Option<crate::record::Entry>, VaultError> {
        validate_namespace(ns, true)?;
        let open = self.inner.logs.lock().await.get(ns).cloned();
        let log = open.and_then(|c| c.get().cloned());
        if let Some(log) = &log {
            let tail = log
                .unpublished_entries()
                .ok_or_else(|| VaultError::Read(format!("the state of {ns} is unreadable")))?;
            if let Some(e) = tail.into_iter().find(|e| e.idx == index) {
                return Ok(Some(e));
            }
        }
        let floor = self.published_floor(ns, log.as_ref()).await?;
        let missing = || {
            VaultError::Read(format!(
                "entry {index} of {ns} is missing from the store (a segment was removed); run `tracevault verify`"
            ))
        };
        let store = &self.inner.ctx.store;
        for _attempt in 0..3 {
            let names = store.list_names(&layout::segments(ns)).await?;
            let tiling = crate::tiling::tile(names.iter().map(String::as_str));
            let Some((first, last)) = tiling.holding(index) else {
                return if index < floor {
                    Err(missing())
                } else {
                    Ok(None)
                };
            };
            let Some(bytes) = store.get(&layout::segment(ns, first, last)).await? else {
                continue; // merged away since the listing: list again
            };
            let seg = tokio::task::spawn_blocking(move || crate::segment::decode(bytes))
                .await
                .map_err(|e| VaultError::Read(e.to_string()))?
                .map_err(|e| VaultError::Read(format!("segment {first}-{last}: {e}")))?;
            return match seg.entries.into_iter().find(|e| e.idx == index) {
                None if index < floor => Err(missing()),
                found => Ok(found),
            };
        }
        Err(VaultError::Read(format!(
            "the segment holding entry {index} of {ns} kept moving (compaction); retry"
        )))
    }

    /// The logs this server has open (written by it), by namespace, for monitoring.
    pub async fn open_logs(&self) -> Vec<(String, Arc<NsLog>)> {
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
    /// server writes it, otherwise a read-only snapshot of the store, refreshed
    /// when the store's latest checkpoint moves. `None` when the namespace has
    /// no checkpoint yet. Reads never take the namespace lease.
    pub async fn view(&self, ns: &str) -> Result<Option<LogView>, VaultError> {
        validate_namespace(ns, true)?;
        let open = self
            .inner
            .logs
            .lock()
            .await
            .get(ns)
            .and_then(|c| c.get().cloned());
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
        let mut snapshots = self.inner.snapshots.lock().await;
        if let Some(snap) = snapshots.get(ns)
            && snap.latest_checkpoint().map(|(s, _)| s) == size
        {
            return Ok(Some(LogView::Snapshot(snap.clone())));
        }
        // The writer may merge segments while we read them: retry a few times.
        let mut attempt = 0;
        let snap = loop {
            match Snapshot::load(&self.inner.ctx, ns).await {
                Ok(s) => break Arc::new(s),
                Err(e) if attempt < 3 => {
                    tracing::debug!(ns, "snapshot load retried: {e}");
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if snapshots.len() >= MAX_SNAPSHOTS && !snapshots.contains_key(ns) {
            // Each snapshot holds a whole tree: keep only a few.
            if let Some(k) = snapshots.keys().next().cloned() {
                snapshots.remove(&k);
            }
        }
        snapshots.insert(ns.to_string(), snap.clone());
        Ok(Some(LogView::Snapshot(snap)))
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
        Ok(log.append(events, ingested_by).await?)
    }

    /// Every namespace in the store (and any open one), with size and key.
    pub async fn namespaces(&self) -> Result<Vec<NamespaceInfo>, VaultError> {
        let mut names = self
            .inner
            .ctx
            .store
            .list_dirs(&layout::namespaces())
            .await?;
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
                None => match self
                    .inner
                    .ctx
                    .store
                    .get(&layout::latest_checkpoint(&ns))
                    .await?
                {
                    Some(b) => String::from_utf8_lossy(&b)
                        .lines()
                        .nth(1)
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0),
                    None => 0,
                },
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
        let logs: Vec<Arc<NsLog>> = self
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
