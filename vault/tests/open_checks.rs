//! A server never signs on top of data it did not sign: at open, a segment
//! that is not ours, or a store rolled back behind the server's back, makes
//! the namespace refuse appends (and write nothing) instead of extending it.

mod common;

use std::time::Duration;

use common::*;
use tracevault_vault::log::OpenError;
use tracevault_vault::{Vault, VaultError};

/// A store with three segments in namespace `n`, cleanly shut down.
async fn build(data: &std::path::Path) {
    let vault = open(data, 20).await;
    for round in 0..3u64 {
        let events = (0..5).map(|i| ev("s", round * 5 + i, None)).collect();
        let r = vault.append("n", events, "w").await.unwrap();
        let log = vault.log("n").await.unwrap();
        assert!(
            log.wait_published(r[4].index + 1, Duration::from_secs(10))
                .await
                .is_some()
        );
    }
    vault.shutdown(Duration::from_secs(10)).await;
}

fn segments(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(store_dir(data).join("ns/n/segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

async fn expect_refused(data: &std::path::Path, what: &str) {
    let before = list_files(&store_dir(data));
    let vault: Vault = open(data, 20).await;
    match vault.append("n", vec![ev("s", 100, None)], "w").await {
        Err(VaultError::Open(OpenError::Inconsistent { reason, .. })) => {
            assert!(reason.contains(what), "unexpected reason: {reason}")
        }
        other => panic!("expected the namespace to be refused, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    vault.shutdown(Duration::from_secs(5)).await;
    let mut after = list_files(&store_dir(data));
    after.retain(|f| !f.ends_with("/lease"));
    let mut before = before;
    before.retain(|f| !f.ends_with("/lease"));
    assert_eq!(
        before, after,
        "nothing may be written on top of a refused namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_not_signed_for_its_position_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    build(&data).await;
    // An operator copies a valid segment to the next position.
    let segs = segments(&data);
    let dst = segs[0]
        .parent()
        .unwrap()
        .join("00000000000000000015-00000000000000000019.parquet");
    std::fs::copy(&segs[0], dst).unwrap();
    expect_refused(&data, "header range differs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    build(&data).await;
    // An operator removes the last segment and every trace of it in the store.
    let segs = segments(&data);
    std::fs::remove_file(segs.last().unwrap()).unwrap();
    let cps = store_dir(&data).join("ns/n/checkpoints");
    for e in std::fs::read_dir(&cps).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 10
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::copy(
        cps.join(format!("{:020}", 10)),
        store_dir(&data).join("ns/n/checkpoint"),
    )
    .unwrap();
    expect_refused(&data, "rolled back").await;
}
