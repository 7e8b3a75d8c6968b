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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_checkpoint_object_fails_reads_instead_of_hiding_removed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    build(&data).await;
    // A second server on the same store reads `n` without writing it: its
    // floor comes from the store's checkpoint object.
    let rdata = dir.path().join("r");
    std::fs::create_dir_all(rdata.join("keys")).unwrap();
    for k in ["log.key", "issuer.key"] {
        let (from, to) = (data.join("keys").join(k), rdata.join("keys").join(k));
        if from.exists() {
            std::fs::copy(from, to).unwrap();
        }
    }
    let store = tracevault_vault::Store::local(&store_dir(&data)).unwrap();
    let reader = Vault::open(opts_with_store(&rdata, store, 20))
        .await
        .unwrap();
    assert_eq!(reader.read_plan("n").await.unwrap().segments.len(), 3);
    // The newest segment removed and the checkpoint object garbled: the
    // floor it gave (15 entries) must not silently become 0, so the read
    // fails instead of answering with the two segments left.
    let segs = segments(&data);
    std::fs::remove_file(segs.last().unwrap()).unwrap();
    std::fs::write(store_dir(&data).join("ns/n/checkpoint"), b"garbage").unwrap();
    match reader.read_plan("n").await {
        Err(VaultError::Read(m)) => assert!(m.contains("unreadable"), "{m}"),
        other => panic!("expected a read error, got {other:?}"),
    }
    reader.shutdown(Duration::from_secs(5)).await;
}

/// `LogReader` reads a store while a server holds its data directory (no
/// lock, no WAL, no key), and fails rather than answering partially when a
/// segment under the checkpoint is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_reader_reads_a_held_store_and_refuses_holes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    build(&data).await;
    let writer = open(&data, 20).await; // holds the lock while we read
    let reader = tracevault_vault::LogReader::new(
        tracevault_vault::Store::local(&store_dir(&data)).unwrap(),
    );
    assert_eq!(reader.namespaces().await.unwrap(), vec!["n".to_string()]);
    assert_eq!(reader.published_size("n").await.unwrap(), 15);
    let segs = reader.segments("n", 15).await.unwrap();
    let ranges: Vec<(u64, u64)> = segs.iter().map(|s| (s.first, s.last)).collect();
    assert_eq!(ranges, vec![(0, 4), (5, 9), (10, 14)]);
    assert_eq!(reader.entry("n", 7, 15).await.unwrap().unwrap().idx, 7);
    assert!(reader.entry("n", 15, 15).await.unwrap().is_none());
    let (in_segs, keys) = reader.session_keys("n", "s").await.unwrap();
    assert_eq!((in_segs.len(), keys.len()), (3, 15));
    let (key, s) = &keys[6];
    let bytes = reader
        .segment_bytes("n", &in_segs[*s as usize])
        .await
        .unwrap();
    let rows = tracevault_vault::LogReader::entries_in(&in_segs[*s as usize], bytes, &[key.idx]);
    assert_eq!(rows.unwrap()[0].idx, 6);
    // The middle segment removed: below the checkpoint, a hole is an error
    // for every read, never a shorter answer.
    std::fs::remove_file(&segments(&data)[1]).unwrap();
    match reader.segments("n", 15).await {
        Err(VaultError::Read(m)) => assert!(m.contains("entries 5-9"), "{m}"),
        other => panic!("expected a hole, got {other:?}"),
    }
    assert!(matches!(
        reader.entry("n", 7, 15).await,
        Err(VaultError::Read(_))
    ));
    assert!(reader.session_keys("n", "s").await.is_err());
    writer.shutdown(Duration::from_secs(5)).await;
}
