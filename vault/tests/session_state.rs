//! Opening a namespace from its checkpoint, tiles and session-state
//! snapshot: only the last entries are read, `session_seq` continues from
//! the snapshot, the `event_id` window is rebuilt from the entries it
//! spans, and a snapshot that lies is refused (forged) or found (`verify`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tracevault_vault::log::OpenError;
use tracevault_vault::{LogConfig, Vault, VaultError, VaultOptions};

/// Small windows, so that a short log already has entries an open skips.
fn small_opts(data: &Path) -> VaultOptions {
    VaultOptions {
        log: LogConfig {
            flush_interval_ms: 20,
            dedup_window: 4,
            state_snapshot_entries: 5,
            compact_interval_ms: 0,
            ..Default::default()
        },
        ..opts(data, 20)
    }
}

/// Six segments of five entries: session `b` writes only the first entry,
/// `a` the rest, each with an `event_id`.
async fn build(data: &Path) {
    let vault = Vault::open(small_opts(data)).await.unwrap();
    for round in 0..6u64 {
        let events = (0..5)
            .map(|i| {
                let n = round * 5 + i;
                let s = if n == 0 { "b" } else { "a" };
                ev(s, n, Some(&format!("id-{n}")))
            })
            .collect();
        let r = vault.append("n", events, "w").await.unwrap();
        let log = vault.log("n").await.unwrap();
        assert!(log.wait_published(r[4].index + 1, WAIT).await.is_some());
    }
    vault.shutdown(Duration::from_secs(10)).await;
}

fn state_files(data: &Path) -> Vec<std::path::PathBuf> {
    let dir = store_dir(data).join("ns/n/state");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_reads_the_last_entries_only_and_sessions_continue() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    build(&data).await;
    // Old snapshots are removed as new ones are written.
    let states = state_files(&data);
    assert_eq!(states.len(), 1, "{states:?}");
    // The first segment (session b's only entry) damaged: an open that
    // read it would refuse the namespace; this one never reads it.
    let first =
        store_dir(&data).join("ns/n/segments/00000000000000000000-00000000000000000004.parquet");
    let mut bytes = std::fs::read(&first).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();

    let vault = Vault::open(small_opts(&data)).await.unwrap();
    let r = vault
        .append("n", vec![ev("b", 100, None), ev("a", 101, None)], "w")
        .await
        .unwrap();
    assert_eq!(r[0].index, 30);
    // b's counter comes from the snapshot (its entry was not read).
    assert_eq!((r[0].session_seq, r[1].session_seq), (1, 29));
    // A retry within the last 4 entries is answered with its receipt...
    let again = vault
        .append("n", vec![ev("a", 29, Some("id-29"))], "w")
        .await
        .unwrap();
    assert!(again[0].duplicate);
    assert_eq!(again[0].index, 29);
    // ...and an older one is a new entry (the documented window).
    let old = vault
        .append("n", vec![ev("a", 20, Some("id-20"))], "w")
        .await
        .unwrap();
    assert!(!old[0].duplicate);
    assert_eq!(old[0].index, 32);
    let log = vault.log("n").await.unwrap();
    assert!(log.wait_published(33, WAIT).await.is_some());
    drop(log);
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);

    // verify reads everything: the damaged segment is found, and the
    // snapshots agree with the entries.
    let report = verify(&store_dir(&data), Default::default()).await;
    let text = describe(&report);
    assert!(
        text.contains("00000000000000000000-00000000000000000004"),
        "{text}"
    );

    // Without snapshots (a store written before them) the next open reads
    // every segment, which now refuses the damaged one.
    std::fs::write(&first, {
        bytes[mid] ^= 0xff;
        &bytes
    })
    .unwrap();
    for f in state_files(&data) {
        std::fs::remove_file(f).unwrap();
    }
    let vault = Vault::open(small_opts(&data)).await.unwrap();
    let r = vault
        .append("n", vec![ev("b", 102, None)], "w")
        .await
        .unwrap();
    assert_eq!(r[0].session_seq, 2);
    vault.shutdown(Duration::from_secs(10)).await;
    // ...and writes one at once, so it happens once.
    assert!(!state_files(&data).is_empty());
    let (key, _) = tracevault_vault::keys::load_or_create(&data.join("keys/log.key")).unwrap();
    assert_clean(&verify(&store_dir(&data), pinned(key.verifying_key())).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_snapshot_is_skipped_or_found() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    build(&data).await;
    let path = state_files(&data).pop().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let body = text.lines().next().unwrap().to_string();
    let mut st: serde_json::Value = serde_json::from_str(&body).unwrap();
    let size = st["size"].as_u64().unwrap();
    let (key, _) = tracevault_vault::keys::load_or_create(&data.join("keys/log.key")).unwrap();
    let vk = key.verifying_key();

    // The key holder lowers session a's counter and re-signs: verify names
    // the snapshot...
    for s in st["sessions"].as_array_mut().unwrap() {
        if s[0] == "a" {
            s[1] = serde_json::json!(3);
        }
    }
    let forged: tracevault_vault::session_state::SessionState =
        serde_json::from_value(st.clone()).unwrap();
    std::fs::write(&path, forged.encode(&key).unwrap()).unwrap();
    let found = describe(&verify(&store_dir(&data), pinned(vk)).await);
    assert!(
        found.contains("session-state snapshot differs from the entries")
            && found.contains("session counters")
            && found.contains(&format!("ns/n/state/{size:020}")),
        "{found}"
    );
    // ...and a writer that trusted it hands out a number twice, which verify
    // finds in the entries even once the snapshot is gone.
    let vault = Vault::open(small_opts(&data)).await.unwrap();
    let r = vault
        .append("n", vec![ev("a", 99, None)], "w")
        .await
        .unwrap();
    assert_eq!(r[0].session_seq, 3);
    let log = vault.log("n").await.unwrap();
    assert!(log.wait_published(r[0].index + 1, WAIT).await.is_some());
    drop(log);
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    for f in state_files(&data) {
        std::fs::remove_file(f).unwrap();
    }
    let found = describe(&verify(&store_dir(&data), pinned(vk)).await);
    assert!(
        found.contains(&format!("index={}", r[0].index))
            && found.contains("session_seq 3 where 29 was next"),
        "{found}"
    );

    // Anyone else's signature (or garbage): skipped, never a lock-out. The
    // open reads every segment instead and numbers correctly; verify names
    // such an object while it is there.
    let dir2 = tempfile::tempdir().unwrap();
    let data2 = dir2.path().join("d");
    build(&data2).await;
    let path2 = state_files(&data2).pop().unwrap();
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let st2: tracevault_vault::session_state::SessionState = serde_json::from_str(
        std::fs::read_to_string(&path2)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let mut lowered = st2.clone();
    for s in lowered.sessions.iter_mut() {
        if s.0 == "a" {
            s.1 = 3;
        }
    }
    std::fs::write(&path2, lowered.encode(&other).unwrap()).unwrap();
    // A planted object just below it, too.
    let planted = store_dir(&data2).join(format!("ns/n/state/{:020}", st2.size - 1));
    std::fs::write(&planted, b"garbage").unwrap();
    let (key2, _) = tracevault_vault::keys::load_or_create(&data2.join("keys/log.key")).unwrap();
    let found = describe(&verify(&store_dir(&data2), pinned(key2.verifying_key())).await);
    assert!(
        found.contains(&format!("state/{:020}", st2.size)) && found.contains("does not verify"),
        "{found}"
    );
    let vault = Vault::open(small_opts(&data2)).await.unwrap();
    let r = vault
        .append("n", vec![ev("a", 99, None)], "w")
        .await
        .unwrap();
    assert_eq!(r[0].session_seq, 29);
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    // The full read wrote a good snapshot, which superseded both objects.
    let states = state_files(&data2);
    assert_eq!(states.len(), 1, "{states:?}");
    assert_clean(&verify(&store_dir(&data2), pinned(key2.verifying_key())).await);
}

/// Segments without any `event_id`, under the snapshot, are read for
/// their signed footer only (no row decoded), yet still checked whole: a
/// changed byte refuses the namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_without_ids_are_checked_but_not_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let opts = || VaultOptions {
        log: LogConfig {
            dedup_window: 1000,
            ..small_opts(&data).log
        },
        ..small_opts(&data)
    };
    {
        let vault = Vault::open(opts()).await.unwrap();
        for round in 0..4u64 {
            let events = (0..5).map(|i| ev("s", round * 5 + i, None)).collect();
            let r = vault.append("n", events, "w").await.unwrap();
            let log = vault.log("n").await.unwrap();
            assert!(log.wait_published(r[4].index + 1, WAIT).await.is_some());
        }
        vault.shutdown(Duration::from_secs(10)).await;
    }
    {
        let vault = Vault::open(opts()).await.unwrap();
        let r = vault
            .append("n", vec![ev("s", 20, None)], "w")
            .await
            .unwrap();
        assert_eq!((r[0].index, r[0].session_seq), (20, 20));
        let log = vault.log("n").await.unwrap();
        assert!(log.wait_published(21, WAIT).await.is_some());
        drop(log);
        vault.shutdown(Duration::from_secs(10)).await;
    }
    let first =
        store_dir(&data).join("ns/n/segments/00000000000000000000-00000000000000000004.parquet");
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&first, &bytes).unwrap();
    let vault = Vault::open(opts()).await.unwrap();
    match vault.append("n", vec![ev("s", 21, None)], "w").await {
        Err(VaultError::Open(OpenError::Inconsistent { reason, .. })) => {
            assert!(reason.contains("signed file digest"), "{reason}")
        }
        other => panic!("expected the namespace to be refused, got {other:?}"),
    }
    vault.shutdown(Duration::from_secs(5)).await;
}
