//! The object store and the vault's object layout (SPEC section 5).
//!
//! Everything durable beyond the WAL goes through `object_store`. On the local
//! file system, `object_store` renames a fully written temporary file into
//! place (so a half-written object is never visible) but does not fsync; the
//! [`Store`] adds an fsync of the file and its directory, because the WAL is
//! released once an object is written and power loss must not undo it.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

/// Store failures, split by what the caller should do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create-only write found the object already there.
    #[error("object {0} already exists")]
    AlreadyExists(String),
    /// A conditional update lost a race.
    #[error("object {0} changed concurrently")]
    Precondition(String),
    /// The store does not support an operation.
    #[error("store does not support {0}")]
    NotSupported(String),
    /// Anything else (network, permissions, ...): usually worth a retry.
    #[error("object store: {0}")]
    Other(String),
    /// Bad store URL or configuration.
    #[error("store configuration: {0}")]
    Config(String),
}

fn map_err(path: &Path, e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::AlreadyExists { .. } => StoreError::AlreadyExists(path.to_string()),
        object_store::Error::Precondition { .. } => StoreError::Precondition(path.to_string()),
        object_store::Error::NotImplemented { operation, .. } => {
            StoreError::NotSupported(operation)
        }
        other => StoreError::Other(other.to_string()),
    }
}

/// The bytes of a `get`. A local file is read into a buffer that is not
/// zeroed first: `object_store` zeroes the whole buffer before reading into
/// it, a pass over every byte read (1.6% of `verify`'s CPU on an LZ4 store).
/// Other stores stream as `object_store` does. A file that is shorter than
/// its listed range by the time it is read is an error, as there.
async fn read_whole(path: &Path, r: object_store::GetResult) -> Result<Bytes, StoreError> {
    use object_store::GetResultPayload;
    let object_store::GetResult {
        payload,
        meta,
        range,
        attributes,
    } = r;
    match payload {
        GetResultPayload::File(mut file, fs_path) => {
            let name = path.to_string();
            let read = move || {
                use std::io::{Read, Seek, SeekFrom};
                let want = (range.end - range.start) as usize;
                let mut buf = Vec::with_capacity(want);
                file.seek(SeekFrom::Start(range.start))
                    .and_then(|_| file.take(want as u64).read_to_end(&mut buf))
                    .map_err(|e| StoreError::Other(format!("{}: {e}", fs_path.display())))?;
                if buf.len() != want {
                    return Err(StoreError::Other(format!(
                        "{name}: read {} of {want} bytes (file shortened while read)",
                        buf.len()
                    )));
                }
                Ok(Bytes::from(buf))
            };
            // Off the async threads when there are some, as object_store does.
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => rt
                    .spawn_blocking(read)
                    .await
                    .map_err(|e| StoreError::Other(format!("read task: {e}")))?,
                Err(_) => read(),
            }
        }
        payload => object_store::GetResult {
            payload,
            meta,
            range,
            attributes,
        }
        .bytes()
        .await
        .map_err(|e| map_err(path, e)),
    }
}

/// An object and the version token needed to update it conditionally.
pub struct Versioned {
    /// Contents.
    pub bytes: Bytes,
    /// For `PutMode::Update`.
    pub version: UpdateVersion,
}

/// The vault's object store plus, for the local file system, its root path.
/// Objects at least this large (segments, not tiles or checkpoints) are
/// written to a local store without the page cache ([`crate::direct_write`]).
const DIRECT_MIN_BYTES: usize = 1 << 20;

/// Why a direct local write failed.
enum DirectPutError {
    /// A create-only write found the object there.
    Exists,
    /// The file system refused.
    Io(std::io::Error),
}

/// Writes the object at `full` as object_store's local store does (a staged
/// file named `<name>#<digits>`, which its listings skip, then linked into
/// place create-only, or renamed over the old one), but with a direct,
/// durable write. `Ok(false)`: the file system refuses direct writes;
/// nothing was written.
fn put_local_direct(full: &FsPath, bytes: &[u8], create: bool) -> Result<bool, DirectPutError> {
    let io = DirectPutError::Io;
    if let Some(dir) = full.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let staged = |n: u64| {
        let mut p = full.as_os_str().to_owned();
        p.push(format!("#{n}"));
        PathBuf::from(p)
    };
    let mut n = u64::from(std::process::id()) << 20;
    let staging = loop {
        let path = staged(n);
        match crate::direct_write::create_durable(&path, bytes) {
            Ok(true) => break path,
            Ok(false) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(io(e)),
        }
    };
    let placed = if create {
        std::fs::hard_link(&staging, full)
    } else {
        std::fs::rename(&staging, full)
    };
    if create || placed.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    match placed {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(DirectPutError::Exists),
        Err(e) => Err(io(e)),
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
    description: String,
}

impl Store {
    /// Opens a store from a URL: `s3://bucket[/prefix]` (credentials and endpoint
    /// from `AWS_*` variables), `file:///abs/path`, or `memory://` (tests).
    pub fn from_url(url: &str) -> Result<Store, StoreError> {
        Store::from_url_with(url, &[])
    }

    /// Like [`Store::from_url`], with S3 settings (`aws_endpoint`,
    /// `aws_allow_http`, ...) that take precedence over the environment.
    pub fn from_url_with(url: &str, s3_options: &[(&str, &str)]) -> Result<Store, StoreError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Config(format!("{url}: no bucket")));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (k, v) in s3_options {
                let key = k
                    .parse()
                    .map_err(|e: object_store::Error| StoreError::Config(e.to_string()))?;
                builder = builder.with_config(key, *v);
            }
            let s3 = builder
                .build()
                .map_err(|e| StoreError::Config(e.to_string()))?;
            let prefix = prefix.trim_matches('/');
            let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(Store {
                inner,
                local_root: None,
                description: url.to_string(),
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Store::local(FsPath::new(path));
        }
        if url == "memory://" {
            return Ok(Store::memory());
        }
        Err(StoreError::Config(format!(
            "unsupported store URL {url:?} (use s3://bucket/prefix or file:///path)"
        )))
    }

    /// A local file-system store rooted at `root` (created if absent).
    pub fn local(root: &FsPath) -> Result<Store, StoreError> {
        crate::wal::ensure_private_dir(root)
            .map_err(|e| StoreError::Config(format!("{}: {e}", root.display())))?;
        let root = root
            .canonicalize()
            .map_err(|e| StoreError::Config(format!("{}: {e}", root.display())))?;
        let fs = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Store {
            inner: Arc::new(fs),
            local_root: Some(root.clone()),
            description: format!("file://{}", root.display()),
        })
    }

    /// Wraps any `object_store` implementation (no local fsync is added).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, description: &str) -> Store {
        Store {
            inner,
            local_root: None,
            description: description.to_string(),
        }
    }

    /// An in-memory store (unit tests).
    pub fn memory() -> Store {
        Store {
            inner: Arc::new(InMemory::new()),
            local_root: None,
            description: "memory://".into(),
        }
    }

    /// Where this store is, for messages.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The raw `object_store` handle (for readers such as a query engine).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.inner.clone()
    }

    /// Makes a new local object durable (the file, then its directory), on
    /// a blocking thread: an fsync can take milliseconds, and must not hold
    /// an async worker that acknowledges writes meanwhile.
    async fn fsync_local(&self, path: &Path) -> Result<(), StoreError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let file = root.join(path.as_ref());
        tokio::task::spawn_blocking(move || {
            let sync = |p: &FsPath| std::fs::File::open(p).and_then(|f| f.sync_all());
            sync(&file).map_err(|e| StoreError::Other(format!("fsync {}: {e}", file.display())))?;
            if let Some(dir) = file.parent() {
                sync(dir)
                    .map_err(|e| StoreError::Other(format!("fsync {}: {e}", dir.display())))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Other(format!("fsync task: {e}")))?
    }

    async fn put_mode(&self, path: &Path, bytes: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let bytes = match (&self.local_root, &mode) {
            (Some(root), PutMode::Create | PutMode::Overwrite)
                if bytes.len() >= DIRECT_MIN_BYTES =>
            {
                let full = root.join(path.as_ref());
                let create = matches!(mode, PutMode::Create);
                let (bytes, done) = tokio::task::spawn_blocking(move || {
                    let done = put_local_direct(&full, &bytes, create);
                    (bytes, done)
                })
                .await
                .map_err(|e| StoreError::Other(format!("write task: {e}")))?;
                match done {
                    Ok(true) => return self.fsync_local(path).await,
                    Ok(false) => bytes,
                    Err(DirectPutError::Exists) => {
                        return Err(StoreError::AlreadyExists(path.to_string()));
                    }
                    Err(DirectPutError::Io(e)) => {
                        return Err(StoreError::Other(format!("{path}: {e}")));
                    }
                }
            }
            _ => bytes,
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.inner
            .put_opts(path, PutPayload::from_bytes(bytes), opts)
            .await
            .map_err(|e| map_err(path, e))?;
        self.fsync_local(path).await
    }

    /// Writes a new object; fails with [`StoreError::AlreadyExists`] if it exists.
    pub async fn put_create(&self, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
        self.put_mode(path, bytes, PutMode::Create).await
    }

    /// Writes or replaces an object (only for pointers such as the latest checkpoint).
    pub async fn put_overwrite(&self, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
        self.put_mode(path, bytes, PutMode::Overwrite).await
    }

    /// Replaces an object only if it is still at `version`.
    pub async fn put_update(
        &self,
        path: &Path,
        bytes: Bytes,
        version: UpdateVersion,
    ) -> Result<(), StoreError> {
        self.put_mode(path, bytes, PutMode::Update(version)).await
    }

    /// Checks that the store answers: reads the vault description (a missing
    /// object is an answer too). Used by the readiness check.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let path = layout::vault_json();
        match self.inner.head(&path).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(&path, e)),
        }
    }

    /// Reads an object; `None` when absent.
    pub async fn get(&self, path: &Path) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get_versioned(path).await?.map(|v| v.bytes))
    }

    /// Reads an object with its version; `None` when absent.
    pub async fn get_versioned(&self, path: &Path) -> Result<Option<Versioned>, StoreError> {
        match self.inner.get(path).await {
            Ok(r) => {
                let version = UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let bytes = read_whole(path, r).await?;
                Ok(Some(Versioned { bytes, version }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_err(path, e)),
        }
    }

    /// Deletes an object (absent is fine).
    pub async fn delete(&self, path: &Path) -> Result<(), StoreError> {
        match self.inner.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(path, e)),
        }
    }

    /// Lists every object below `prefix`, at any depth, as (path relative to
    /// `prefix`, size in bytes), sorted by path.
    pub async fn list_recursive(&self, prefix: &Path) -> Result<Vec<(String, u64)>, StoreError> {
        use futures::TryStreamExt;
        let metas: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| map_err(prefix, e))?;
        let base = format!("{prefix}/");
        let mut out: Vec<(String, u64)> = metas
            .into_iter()
            .filter_map(|m| {
                let rel = m.location.as_ref().strip_prefix(&base)?.to_string();
                Some((rel, m.size))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Lists object names (last path segment) directly under `prefix`, sorted.
    pub async fn list_names(&self, prefix: &Path) -> Result<Vec<String>, StoreError> {
        let r = self
            .inner
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(|e| map_err(prefix, e))?;
        let mut names: Vec<String> = r
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Lists the names of objects under `prefix` that sort after `after`
    /// (a name under `prefix`), sorted: on S3 a `StartAfter` listing, so
    /// its cost follows what was added since, not everything stored (the
    /// local file system still walks the directory).
    pub async fn list_names_after(
        &self,
        prefix: &Path,
        after: &str,
    ) -> Result<Vec<String>, StoreError> {
        use futures::TryStreamExt;
        let offset = Path::from(format!("{prefix}/{after}"));
        let metas: Vec<object_store::ObjectMeta> = self
            .inner
            .list_with_offset(Some(prefix), &offset)
            .try_collect()
            .await
            .map_err(|e| map_err(prefix, e))?;
        let base = format!("{prefix}/");
        let mut names: Vec<String> = metas
            .into_iter()
            .filter_map(|m| {
                let rel = m.location.as_ref().strip_prefix(&base)?;
                (!rel.contains('/')).then(|| rel.to_string())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Lists objects directly under `prefix` as (name, size in bytes), sorted
    /// by name: what a reader needs to fetch byte ranges of them.
    pub async fn list_sized(&self, prefix: &Path) -> Result<Vec<(String, u64)>, StoreError> {
        let r = self
            .inner
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(|e| map_err(prefix, e))?;
        let mut out: Vec<(String, u64)> = r
            .objects
            .iter()
            .filter_map(|o| Some((o.location.filename()?.to_string(), o.size)))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Lists sub-"directories" directly under `prefix`, sorted.
    pub async fn list_dirs(&self, prefix: &Path) -> Result<Vec<String>, StoreError> {
        let r = self
            .inner
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(|e| map_err(prefix, e))?;
        let mut names: Vec<String> = r
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// Object names of the layout (SPEC section 5).
pub mod layout {
    use object_store::path::Path;

    /// `vault.json`.
    pub fn vault_json() -> Path {
        Path::from("vault.json")
    }
    /// `ns/`.
    pub fn namespaces() -> Path {
        Path::from("ns")
    }
    /// `ns/{ns}/segments`.
    pub fn segments(ns: &str) -> Path {
        Path::from(format!("ns/{ns}/segments"))
    }
    /// `ns/{ns}/segments/{first:020}-{last:020}.parquet`.
    pub fn segment(ns: &str, first: u64, last: u64) -> Path {
        Path::from(format!(
            "ns/{ns}/segments/{}",
            crate::segment::segment_file_name(first, last)
        ))
    }
    /// `ns/{ns}/segments/{name}`: a segment object by its listed file name
    /// (any generation, see [`crate::segment::segment_file_name_gen`]).
    pub fn segment_named(ns: &str, name: &str) -> Path {
        Path::from(format!("ns/{ns}/segments/{name}"))
    }
    /// `ns/{ns}/tile`: the namespace's C2SP hash tiles.
    pub fn tiles(ns: &str) -> Path {
        Path::from(format!("ns/{ns}/tile"))
    }
    /// `ns/{ns}/tile/<L>/<N>[.p/<W>]` (immutable; see [`crate::tiles`]).
    pub fn tile(ns: &str, id: &crate::tiles::TileId) -> Path {
        Path::from(format!("ns/{ns}/{}", id.path()))
    }
    /// `ns/{ns}/checkpoints`.
    pub fn checkpoints(ns: &str) -> Path {
        Path::from(format!("ns/{ns}/checkpoints"))
    }
    /// `ns/{ns}/checkpoints/{size:020}` (immutable).
    pub fn checkpoint_at(ns: &str, size: u64) -> Path {
        Path::from(format!("ns/{ns}/checkpoints/{size:020}"))
    }
    /// `ns/{ns}/checkpoint` (the latest; a pointer, overwritten).
    pub fn latest_checkpoint(ns: &str) -> Path {
        Path::from(format!("ns/{ns}/checkpoint"))
    }
    /// `ns/{ns}/state`: the sequencer's session counters, snapshotted.
    pub fn states(ns: &str) -> Path {
        Path::from(format!("ns/{ns}/state"))
    }
    /// `ns/{ns}/state/{size:020}` (immutable; see `vault::log::state`).
    pub fn state_at(ns: &str, size: u64) -> Path {
        Path::from(format!("ns/{ns}/state/{size:020}"))
    }
    /// `ns/{ns}/checkpoint.cosigned`: the newest checkpoint cosigned by
    /// the witness policy's threshold (overwritten).
    pub fn cosigned_checkpoint(ns: &str) -> Path {
        Path::from(format!("ns/{ns}/checkpoint.cosigned"))
    }
    /// `cluster/nodes`: where servers sharing the store register.
    pub fn cluster_nodes() -> Path {
        Path::from("cluster/nodes")
    }
    /// `cluster/nodes/{instance}`: one server's registration (rewritten at
    /// each heartbeat, deleted on a clean stop).
    pub fn cluster_node(instance: &str) -> Path {
        Path::from(format!("cluster/nodes/{instance}"))
    }
    /// `ns/{ns}/lease` (which server may append).
    pub fn lease(ns: &str) -> Path {
        Path::from(format!("ns/{ns}/lease"))
    }
    /// `ns/{ns}/claims/{first:020}` (create-only claim of the next segment position).
    pub fn claim(ns: &str, first: u64) -> Path {
        Path::from(format!("ns/{ns}/claims/{first:020}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local read returns exactly the object's bytes, and a file that is
    /// shorter than its listed size by the time it is read (truncated by
    /// someone with the disk, mid-`verify`) is an error, never a short
    /// buffer taken for the whole object.
    #[tokio::test]
    async fn local_reads_are_whole_or_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let p = Path::from("ns/x/segments/a.parquet");
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        store
            .put_create(&p, Bytes::from(body.clone()))
            .await
            .unwrap();
        assert_eq!(store.get(&p).await.unwrap().unwrap(), body);

        let file = dir.path().join("short");
        std::fs::write(&file, &body[..10]).unwrap();
        let listed = object_store::GetResult {
            payload: object_store::GetResultPayload::File(
                std::fs::File::open(&file).unwrap(),
                file.clone(),
            ),
            meta: object_store::ObjectMeta {
                location: Path::from("short"),
                last_modified: chrono::Utc::now(),
                size: 20,
                e_tag: None,
                version: None,
            },
            range: 0..20,
            attributes: Default::default(),
        };
        let err = read_whole(&Path::from("short"), listed).await.unwrap_err();
        assert!(err.to_string().contains("read 10 of 20 bytes"), "{err}");
    }

    #[tokio::test]
    async fn create_is_create_only_on_memory_and_local() {
        let dir = tempfile::tempdir().unwrap();
        for store in [Store::memory(), Store::local(dir.path()).unwrap()] {
            let p = Path::from("a/b");
            store
                .put_create(&p, Bytes::from_static(b"1"))
                .await
                .unwrap();
            let e = store
                .put_create(&p, Bytes::from_static(b"2"))
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::AlreadyExists(_)), "{e}");
            assert_eq!(
                store.get(&p).await.unwrap().unwrap(),
                Bytes::from_static(b"1")
            );
            assert!(store.get(&Path::from("a/c")).await.unwrap().is_none());
            assert_eq!(store.list_names(&Path::from("a")).await.unwrap(), ["b"]);
            for n in ["c", "d/e"] {
                let p = Path::from(format!("a/{n}"));
                store
                    .put_create(&p, Bytes::from_static(b"x"))
                    .await
                    .unwrap();
            }
            let after = store.list_names_after(&Path::from("a"), "b").await.unwrap();
            assert_eq!(after, ["c"], "only names after the offset, at this level");
            assert_eq!(store.list_dirs(&Path::from("")).await.unwrap(), ["a"]);
        }
    }

    /// Large objects on a local store take the direct path: same answers as
    /// small ones (create-only, overwrite, read back whole, in listings), and
    /// no staging file is left or listed.
    #[tokio::test]
    async fn large_local_objects_are_written_directly_with_the_same_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let big = |seed: u8| {
            Bytes::from(
                (0..DIRECT_MIN_BYTES + 4097)
                    .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                    .collect::<Vec<u8>>(),
            )
        };
        let p = Path::from("ns/x/segments/s.parquet");
        store.put_create(&p, big(1)).await.unwrap();
        let e = store.put_create(&p, big(2)).await.unwrap_err();
        assert!(matches!(e, StoreError::AlreadyExists(_)), "{e}");
        assert_eq!(store.get(&p).await.unwrap().unwrap(), big(1));
        store.put_overwrite(&p, big(3)).await.unwrap();
        assert_eq!(store.get(&p).await.unwrap().unwrap(), big(3));
        let listed = store.list_recursive(&Path::from("ns")).await.unwrap();
        assert_eq!(
            listed,
            [("x/segments/s.parquet".to_string(), big(3).len() as u64)]
        );
        let on_disk: Vec<_> = std::fs::read_dir(dir.path().join("ns/x/segments"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(on_disk, ["s.parquet"], "no staging file left");
    }
}
