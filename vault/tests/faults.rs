//! Store faults during publishing: a checkpoint write that fails, and a
//! segment write that succeeds but reports failure. The real local file-system
//! store sits under a thin wrapper that injects those failures; the log must
//! retry exactly the same segment, recognise its own object, never fence
//! itself, and leave a store that verifies.

mod common;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use tracevault_vault::{Store, Vault};

/// Fails the next `fail_checkpoints` checkpoint writes, and reports the next
/// `lie_segments` segment writes as failed after performing them.
#[derive(Debug)]
struct Flaky {
    inner: LocalFileSystem,
    fail_checkpoints: AtomicU32,
    lie_segments: AtomicU32,
    /// While set, every write of a lease object fails (the store is unreachable for renewals).
    fail_leases: std::sync::atomic::AtomicBool,
}

impl fmt::Display for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flaky({})", self.inner)
    }
}

fn take(c: &AtomicU32) -> bool {
    c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "flaky",
        source: "injected failure".into(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let p = location.as_ref();
        if p.ends_with("/lease") && self.fail_leases.load(Ordering::SeqCst) {
            return Err(injected());
        }
        if p.contains("/checkpoints/") && take(&self.fail_checkpoints) {
            return Err(injected());
        }
        let r = self.inner.put_opts(location, payload, opts).await?;
        if p.contains("/segments/") && take(&self.lie_segments) {
            return Err(injected());
        }
        Ok(r)
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// The real local store under `root`, wrapped with no faults armed yet.
fn flaky_store(root: &std::path::Path) -> (Arc<Flaky>, Store) {
    let flaky = Arc::new(Flaky {
        inner: LocalFileSystem::new_with_prefix(root).unwrap(),
        fail_checkpoints: AtomicU32::new(0),
        lie_segments: AtomicU32::new(0),
        fail_leases: Default::default(),
    });
    let store = Store::from_object_store(flaky.clone(), "flaky");
    (flaky, store)
}

async fn run(fail_checkpoints: u32, lie_segments: u32) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = dir.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let (flaky, store) = flaky_store(&root);
    let vault = Vault::open(opts_with_store(&data, store, 20))
        .await
        .unwrap();
    flaky
        .fail_checkpoints
        .store(fail_checkpoints, Ordering::SeqCst);
    flaky.lie_segments.store(lie_segments, Ordering::SeqCst);
    let first = vault
        .append("n", (0..10).map(|i| ev("s", i, None)).collect(), "w")
        .await
        .unwrap();
    // More entries arrive while the first segment is being retried.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let second = vault
        .append("n", (10..25).map(|i| ev("s", i, None)).collect(), "w")
        .await
        .unwrap();
    assert_eq!(first.len() + second.len(), 25);
    let log = vault.log("n").await.unwrap();
    let cp = log.wait_published(25, Duration::from_secs(30)).await;
    assert!(
        cp.is_some(),
        "the log never published after transient store failures"
    );
    assert_eq!(
        flaky.fail_checkpoints.load(Ordering::SeqCst),
        0,
        "the faults were exercised"
    );
    assert_eq!(
        flaky.lie_segments.load(Ordering::SeqCst),
        0,
        "the faults were exercised"
    );
    // Not fenced: appends keep working.
    let more = vault
        .append("n", vec![ev("s", 99, None)], "w")
        .await
        .unwrap();
    assert_eq!(more[0].index, 25);
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    let report = verify(&root, Default::default()).await;
    assert!(report.findings.is_empty(), "{}", describe(&report));
    // Reopening succeeds (no overlapping segments were left behind).
    let vault = Vault::open(opts_with_store(&data, Store::local(&root).unwrap(), 20))
        .await
        .unwrap();
    assert_eq!(
        vault
            .append("n", vec![ev("s", 100, None)], "w")
            .await
            .unwrap()[0]
            .index,
        26
    );
    vault.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checkpoint_writes_are_retried_without_fencing() {
    run(3, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_write_reported_as_failed_is_recognised_as_ours() {
    run(0, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_pause_while_the_lease_cannot_be_renewed() {
    use tracevault_vault::{AppendError, LogConfig, VaultError, VaultOptions};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = dir.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let (flaky, store) = flaky_store(&root);
    let log = LogConfig {
        flush_interval_ms: 20,
        lease_ttl_ms: 600,
        ..Default::default()
    };
    let vault = Vault::open(VaultOptions {
        log,
        ..opts_with_store(&data, store, 20)
    })
    .await
    .unwrap();
    vault
        .append("n", vec![ev("s", 0, None)], "w")
        .await
        .unwrap();
    // The store stops accepting lease renewals: within 3/4 of the TTL appends stop.
    flaky.fail_leases.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    match vault.append("n", vec![ev("s", 1, None)], "w").await {
        Err(VaultError::Append(AppendError::LeaseLapsed)) => {}
        other => panic!("expected a lapsed lease, got {other:?}"),
    }
    // Renewals work again: so do appends, and nothing was lost or duplicated.
    flaky.fail_leases.store(false, Ordering::SeqCst);
    let mut ok = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(r) = vault.append("n", vec![ev("s", 2, None)], "w").await {
            ok = Some(r);
            break;
        }
    }
    assert_eq!(
        ok.expect("appends resume after a successful renewal")[0].index,
        1
    );
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    let report = verify(&root, Default::default()).await;
    assert!(report.findings.is_empty(), "{}", describe(&report));
}
