//! The log end to end on real files: appends and receipts, idempotent retries,
//! checkpoints and proofs, restart, crash recovery from the WAL, the
//! data-directory lock, and fencing between two servers sharing a store.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use tracevault_vault::lease::LeaseError;
use tracevault_vault::log::OpenError;
use tracevault_vault::merkle::{verify_consistency, verify_inclusion};
use tracevault_vault::note::{self, Checkpoint};
use tracevault_vault::store::layout;
use tracevault_vault::verify::VerifyOptions;
use tracevault_vault::{AppendError, Receipt, Store, Vault, VaultError, segment};

fn open_cp(vault: &Vault, ns: &str, text: &str) -> Checkpoint {
    let cp = note::open_checkpoint(text, &vault.origin_of(ns), &vault.public_key())
        .expect("checkpoint opens");
    assert_eq!(cp.origin, vault.origin_of(ns));
    cp
}

/// Every receipt's inclusion proof verifies against `cp`.
async fn assert_included(vault: &Vault, ns: &str, receipts: &[Receipt], cp: &Checkpoint) {
    let log = vault.log(ns).await.unwrap();
    for r in receipts {
        let (leaf, proof) = log
            .inclusion_proof(r.index, cp.size)
            .await
            .expect("inclusion proof");
        assert_eq!(hex::encode(leaf), r.leaf_hash, "leaf of index {}", r.index);
        verify_inclusion(&leaf, r.index, cp.size, &proof, &cp.root)
            .unwrap_or_else(|e| panic!("inclusion of {} in {}: {e:?}", r.index, cp.size));
        // The same proof must not verify for another index or leaf.
        if cp.size > 1 {
            let other = if r.index == 0 { 1 } else { r.index - 1 };
            assert!(verify_inclusion(&leaf, other, cp.size, &proof, &cp.root).is_err());
        }
        let mut bad = leaf;
        bad[0] ^= 1;
        assert!(verify_inclusion(&bad, r.index, cp.size, &proof, &cp.root).is_err());
    }
}

/// Leaf hash of every entry in the store's segments, by index.
async fn stored_leaves(store_root: &std::path::Path, ns: &str) -> HashMap<u64, String> {
    let store = Store::local(store_root).unwrap();
    let mut out = HashMap::new();
    for name in store.list_names(&layout::segments(ns)).await.unwrap() {
        let (a, b) = segment::parse_segment_file_name(&name).unwrap();
        let bytes = store
            .get(&layout::segment(ns, a, b))
            .await
            .unwrap()
            .unwrap();
        for e in segment::decode(bytes).unwrap().entries {
            assert!(
                out.insert(e.idx, hex::encode(e.leaf_hash)).is_none(),
                "index {} stored twice",
                e.idx
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_retry_prove_restart_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let ns = "alpha";
    let vault = open(data, 50).await;
    let origin = vault.origin_of(ns);
    assert_eq!(origin, format!("{}/{ns}", vault.meta().origin));

    // Batch 1: two sessions interleaved.
    let batch: Vec<_> = (0..6)
        .map(|i| {
            ev(
                if i % 2 == 0 { "s1" } else { "s2" },
                i,
                Some(&format!("e{i}")),
            )
        })
        .collect();
    let r1 = vault.append(ns, batch, "writer-a").await.unwrap();
    assert_eq!(
        r1.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(
        r1.iter().map(|r| r.session_seq).collect::<Vec<_>>(),
        [0, 0, 1, 1, 2, 2]
    );
    assert!(r1.iter().all(|r| !r.duplicate && r.leaf_hash.len() == 64));

    // Retries of e1 and e4 return the original receipts; a new event continues.
    let r2 = vault
        .append(
            ns,
            vec![
                ev("s2", 1, Some("e1")),
                ev("s1", 4, Some("e4")),
                ev("s1", 6, Some("e6")),
                ev("s3", 7, None),
            ],
            "writer-a",
        )
        .await
        .unwrap();
    assert_eq!(
        r2[0],
        Receipt {
            duplicate: true,
            ..r1[1].clone()
        }
    );
    assert_eq!(
        r2[1],
        Receipt {
            duplicate: true,
            ..r1[4].clone()
        }
    );
    assert_eq!(
        (r2[2].index, r2[2].session_seq, r2[2].duplicate),
        (6, 3, false)
    );
    assert_eq!(
        (r2[3].index, r2[3].session_seq, r2[3].duplicate),
        (7, 0, false)
    );
    // The same event_id twice in one request: one entry, the second is the duplicate.
    let r3 = vault
        .append(
            ns,
            vec![ev("s3", 8, Some("e8")), ev("s3", 8, Some("e8"))],
            "writer-b",
        )
        .await
        .unwrap();
    assert_eq!(r3[0].index, 8);
    assert_eq!(
        r3[1],
        Receipt {
            duplicate: true,
            ..r3[0].clone()
        }
    );

    let log = vault.log(ns).await.unwrap();
    assert_eq!(log.durable_size(), 9);
    let (size1, text1) = log
        .wait_published(9, WAIT)
        .await
        .expect("published within the timeout");
    assert_eq!(size1, 9);
    assert_eq!(log.published_size(), 9);
    let cp1 = open_cp(&vault, ns, &text1);
    assert_eq!(cp1.size, 9);
    // The checkpoint objects in the store are exactly that note.
    let store = vault.store().clone();
    let immut = store
        .get(&layout::checkpoint_at(ns, 9))
        .await
        .unwrap()
        .expect("checkpoints/9");
    assert_eq!(std::str::from_utf8(&immut).unwrap(), text1);
    let latest = store
        .get(&layout::latest_checkpoint(ns))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(std::str::from_utf8(&latest).unwrap(), text1);
    // The advertised verifier key names the same origin and key.
    let (name, pk) = note::parse_verifier_key(&vault.verifier_key(ns)).unwrap();
    assert_eq!(
        (name.as_str(), pk),
        (origin.as_str(), vault.public_key().to_bytes())
    );
    assert_eq!(
        vault.meta().log_public_key,
        B64.encode(vault.public_key().to_bytes())
    );

    let mut all: Vec<Receipt> = r1.iter().chain(&r2[2..]).chain(&r3[..1]).cloned().collect();
    assert_included(&vault, ns, &all, &cp1).await;

    // More entries, a second checkpoint, and consistency between the two.
    let r4 = vault
        .append(
            ns,
            (10..15).map(|i| ev("s1", i, None)).collect(),
            "writer-a",
        )
        .await
        .unwrap();
    assert_eq!(
        r4.iter().map(|r| r.session_seq).collect::<Vec<_>>(),
        [4, 5, 6, 7, 8]
    );
    all.extend(r4.iter().cloned());
    let (_, text2) = log.wait_published(14, WAIT).await.unwrap();
    let cp2 = open_cp(&vault, ns, &text2);
    assert_eq!(cp2.size, 14);
    assert_included(&vault, ns, &all, &cp2).await;
    let proof = log.consistency_proof(cp1.size, cp2.size).await.unwrap();
    verify_consistency(cp1.size, cp2.size, &proof, &cp1.root, &cp2.root).expect("consistent");
    assert!(verify_consistency(cp1.size, cp2.size, &proof, &cp2.root, &cp1.root).is_err());

    vault.shutdown(Duration::from_secs(10)).await;
    let vault_id = vault.meta().vault_id.clone();
    drop(log);
    drop(vault);

    // Restart: same identity, state continues.
    let vault = open(data, 50).await;
    assert_eq!(vault.meta().vault_id, vault_id);
    let log = vault.log(ns).await.unwrap();
    assert_eq!((log.durable_size(), log.published_size()), (14, 14));
    assert_eq!(
        log.latest_checkpoint().map(|(s, t)| (s, t == text2)),
        Some((14, true))
    );
    // Retries (the same writer, the same event) after the restart.
    let mut r5 = vault
        .append(
            ns,
            vec![
                ev("s1", 0, Some("e0")),
                ev("s1", 21, Some("e21")),
                ev("s2", 22, None),
            ],
            "writer-a",
        )
        .await
        .unwrap();
    r5.extend(
        vault
            .append(ns, vec![ev("s3", 8, Some("e8"))], "writer-b")
            .await
            .unwrap(),
    );
    // Another event under a remembered key is a conflict: nothing appended.
    let conflict = vault
        .append(
            ns,
            vec![ev("s3", 9, None), ev("s1", 20, Some("e0"))],
            "writer-a",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, VaultError::Append(AppendError::Conflict(_))),
        "{conflict}"
    );
    assert_eq!(
        r5[0],
        Receipt {
            duplicate: true,
            ..r1[0].clone()
        },
        "dedup survives a restart"
    );
    assert_eq!((r5[1].index, r5[1].session_seq), (14, 9));
    assert_eq!((r5[2].index, r5[2].session_seq), (15, 3));
    assert_eq!(
        r5[3],
        Receipt {
            duplicate: true,
            ..r3[0].clone()
        }
    );
    all.extend([r5[1].clone(), r5[2].clone()]);
    let (_, text3) = log.wait_published(16, WAIT).await.unwrap();
    let cp3 = open_cp(&vault, ns, &text3);
    assert_eq!(cp3.size, 16);
    assert_included(&vault, ns, &all, &cp3).await;
    for (old, _) in [(&cp1, 0), (&cp2, 1)] {
        let proof = log.consistency_proof(old.size, cp3.size).await.unwrap();
        verify_consistency(old.size, cp3.size, &proof, &old.root, &cp3.root)
            .expect("consistent across restart");
    }
    vault.shutdown(Duration::from_secs(10)).await;
    drop(log);
    drop(vault);

    // A reopened log starts where it stopped, even with nothing new to publish.
    let report = verify(
        &store_dir(data),
        VerifyOptions {
            pinned_checkpoint: Some(text3.clone()),
            ..pinned(open_cp_key(data))
        },
    )
    .await;
    assert_clean(&report);
    assert_eq!(report.namespaces.len(), 1);
    assert_eq!(
        (
            report.namespaces[0].entries,
            report.namespaces[0].checkpoints > 0
        ),
        (16, true)
    );
    // Older pinned checkpoints are consistent with the store too.
    for t in [&text1, &text2] {
        let r = verify(
            &store_dir(data),
            VerifyOptions {
                pinned_checkpoint: Some(t.to_string()),
                ..pinned(open_cp_key(data))
            },
        )
        .await;
        assert_clean(&r);
    }
    let leaves = stored_leaves(&store_dir(data), ns).await;
    assert_eq!(leaves.len(), 16);
    for r in &all {
        assert_eq!(leaves.get(&r.index), Some(&r.leaf_hash));
    }
}

/// The log public key of the vault in `data`, read from its key file.
fn open_cp_key(data: &std::path::Path) -> ed25519_dalek::VerifyingKey {
    tracevault_vault::keys::load_or_create(&data.join("keys/log.key"))
        .unwrap()
        .0
        .verifying_key()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_lock_excludes_a_second_vault() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), 50).await;
    a.append("n1", vec![ev("s", 0, None)], "w").await.unwrap();
    match Vault::open(opts(dir.path(), 50)).await {
        Err(VaultError::DataDir(msg)) => assert!(msg.contains("in use"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second vault opened a locked data directory"),
    }
    a.shutdown(Duration::from_secs(10)).await;
    drop(a);
    // Released with the vault.
    let b = open(dir.path(), 50).await;
    assert_eq!(b.log("n1").await.unwrap().durable_size(), 1);
    b.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_publishing_is_recovered_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let ns = "crashy";
    // Nothing gets published: the flush interval is an hour.
    let vault = open(data, 3_600_000).await;
    // The publisher makes one pass when the log opens; let it go to sleep
    // first, so that nothing appended below can be published.
    vault.log(ns).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut receipts = Vec::new();
    for round in 0..3u64 {
        let evs = (0..4)
            .map(|i| {
                ev(
                    &format!("s{}", i % 2),
                    round * 4 + i,
                    Some(&format!("id{}", round * 4 + i)),
                )
            })
            .collect();
        receipts.extend(vault.append(ns, evs, "w").await.unwrap());
    }
    let key = vault.public_key();
    let log = vault.log(ns).await.unwrap();
    assert_eq!((log.durable_size(), log.published_size()), (12, 0));
    drop(log);
    // Crash: no shutdown, nothing flushed.
    drop(vault);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seg_dir = store_dir(data).join("ns").join(ns).join("segments");
    assert!(
        list_files(&seg_dir).is_empty(),
        "a dropped (crashed) vault must not keep publishing in the background: {:?}",
        list_files(&seg_dir)
    );
    // A torn, unacknowledged write at the end of the WAL is cut off on recovery.
    let wal_dir = data.join("wal").join(ns);
    let wal_files = list_files(&wal_dir);
    assert_eq!(wal_files.len(), 1, "{wal_files:?}");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(wal_dir.join(&wal_files[0]))
            .unwrap();
        f.write_all(&[200, 0, 0, 0, 9, 9, 9, 9, b'{', b'"'])
            .unwrap();
    }

    // Restart with a short interval: recovery publishes the WAL without any new append.
    let vault = open(data, 50).await;
    let log = vault.log(ns).await.unwrap();
    assert_eq!(log.durable_size(), 12);
    let (size, text) = log
        .wait_published(12, WAIT)
        .await
        .expect("recovered entries are published");
    let cp = open_cp(&vault, ns, &text);
    assert_eq!(size, 12);
    assert_included(&vault, ns, &receipts, &cp).await;
    // Dedup and session numbering survive the crash.
    let again = vault
        .append(
            ns,
            vec![
                ev("s1", 5, Some("id5")),
                ev("s0", 99, None),
                ev("s1", 98, None),
            ],
            "w",
        )
        .await
        .unwrap();
    assert_eq!(
        again[0],
        Receipt {
            duplicate: true,
            ..receipts[5].clone()
        }
    );
    assert_eq!((again[1].index, again[1].session_seq), (12, 6));
    assert_eq!((again[2].index, again[2].session_seq), (13, 6));
    receipts.extend(again[1..].iter().cloned());
    log.wait_published(14, WAIT).await.unwrap();
    vault.shutdown(Duration::from_secs(10)).await;
    drop(log);
    drop(vault);

    let leaves = stored_leaves(&store_dir(data), ns).await;
    assert_eq!(leaves.len(), 14);
    for r in &receipts {
        assert_eq!(
            leaves.get(&r.index),
            Some(&r.leaf_hash),
            "index {}",
            r.index
        );
    }
    assert_clean(
        &verify(
            &store_dir(data),
            VerifyOptions {
                pinned_checkpoint: Some(text),
                ..pinned(key)
            },
        )
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_partial_publish_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let ns = "partial";
    let vault = open(data, 20).await;
    let mut receipts = vault
        .append(ns, (0..5).map(|i| ev("s", i, None)).collect(), "w")
        .await
        .unwrap();
    vault
        .log(ns)
        .await
        .unwrap()
        .wait_published(5, WAIT)
        .await
        .unwrap();
    // Acked but maybe not published when the "crash" happens.
    receipts.extend(
        vault
            .append(ns, (5..9).map(|i| ev("s", i, None)).collect(), "w")
            .await
            .unwrap(),
    );
    let key = vault.public_key();
    drop(vault);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let vault = open(data, 20).await;
    let log = vault.log(ns).await.unwrap();
    assert_eq!(log.durable_size(), 9);
    let (_, text) = log.wait_published(9, WAIT).await.unwrap();
    let cp = open_cp(&vault, ns, &text);
    assert_included(&vault, ns, &receipts, &cp).await;
    let r = vault.append(ns, vec![ev("s", 9, None)], "w").await.unwrap();
    assert_eq!((r[0].index, r[0].session_seq), (9, 9));
    vault.shutdown(Duration::from_secs(10)).await;
    drop(log);
    drop(vault);
    let leaves = stored_leaves(&store_dir(data), ns).await;
    assert_eq!(leaves.len(), 10);
    for r in &receipts {
        assert_eq!(leaves.get(&r.index), Some(&r.leaf_hash));
    }
    assert_clean(&verify(&store_dir(data), pinned(key)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_server_on_a_shared_store_is_fenced() {
    let root = tempfile::tempdir().unwrap();
    let store_root = root.path().join("shared-store");
    let (da, db) = (root.path().join("a"), root.path().join("b"));
    let store = Store::local(&store_root).unwrap();
    let a = Vault::open(opts_with_store(&da, store.clone(), 50))
        .await
        .unwrap();
    let ra = a
        .append(
            "shared",
            (0..3).map(|i| ev("s", i, Some(&format!("x{i}")))).collect(),
            "a",
        )
        .await
        .unwrap();
    a.log("shared")
        .await
        .unwrap()
        .wait_published(3, WAIT)
        .await
        .unwrap();

    // A server with another log key may not even open the store.
    match Vault::open(opts_with_store(&db, Store::local(&store_root).unwrap(), 50)).await {
        Err(VaultError::Meta(msg)) => assert!(
            msg.contains("refusing to sign with a different key"),
            "{msg}"
        ),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a store whose vault.json names another key"),
    }
    // Same key (copied), different instance: opens, but is fenced from "shared".
    std::fs::remove_dir_all(db.join("keys")).unwrap();
    std::fs::create_dir_all(db.join("keys")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(db.join("keys"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::copy(da.join("keys/log.key"), db.join("keys/log.key")).unwrap();
        std::fs::set_permissions(
            db.join("keys/log.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let b = Vault::open(opts_with_store(&db, Store::local(&store_root).unwrap(), 50))
        .await
        .unwrap();
    assert_eq!(b.meta(), a.meta());
    let before = list_files(&store_root);
    let err = b
        .append(
            "shared",
            vec![ev("s", 0, Some("x0")), ev("s", 11, None)],
            "a",
        )
        .await
        .unwrap_err();
    let fenced = matches!(
        &err,
        VaultError::Open(OpenError::Lease(LeaseError::Fenced { .. }))
    ) || matches!(&err, VaultError::Append(AppendError::Fenced(_)));
    assert!(fenced, "expected fencing, got {err}");
    assert!(list_files(&db.join("wal").join("shared")).iter().all(|f| {
        std::fs::metadata(db.join("wal/shared").join(f))
            .unwrap()
            .len()
            == 0
    }));
    // A keeps working; B wrote nothing.
    let ra2 = a
        .append("shared", vec![ev("s", 3, None)], "a")
        .await
        .unwrap();
    assert_eq!((ra2[0].index, ra2[0].session_seq), (3, 3));
    a.log("shared")
        .await
        .unwrap()
        .wait_published(4, WAIT)
        .await
        .unwrap();
    let after = list_files(&store_root);
    let new: Vec<_> = after.iter().filter(|f| !before.contains(f)).collect();
    assert!(
        new.iter().all(|f| f.contains("00000000000000000003")
            || f.ends_with("checkpoints/00000000000000000004")
            || f.ends_with("tile/0/000.p/4")),
        "only A's segment/checkpoint/claim/tile for index 3 may be new: {new:?}"
    );
    // B may still serve namespaces nobody else holds.
    b.append("bonly", vec![ev("q", 0, None)], "b")
        .await
        .unwrap();
    b.log("bonly")
        .await
        .unwrap()
        .wait_published(1, WAIT)
        .await
        .unwrap();

    // After A shuts down (releasing its lease), B takes over and continues the log.
    a.shutdown(Duration::from_secs(10)).await;
    let rb = b
        .append(
            "shared",
            vec![ev("s", 0, Some("x0")), ev("s", 11, None)],
            "a",
        )
        .await
        .unwrap();
    assert_eq!(
        rb[0],
        Receipt {
            duplicate: true,
            ..ra[0].clone()
        }
    );
    assert_eq!((rb[1].index, rb[1].session_seq), (4, 4));
    let (_, text) = b
        .log("shared")
        .await
        .unwrap()
        .wait_published(5, WAIT)
        .await
        .unwrap();
    // Now A (restarted on its own data dir) is the fenced one.
    drop(a);
    let a = Vault::open(opts_with_store(&da, Store::local(&store_root).unwrap(), 50))
        .await
        .unwrap();
    let err = a
        .append("shared", vec![ev("s", 12, None)], "a")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            VaultError::Open(OpenError::Lease(LeaseError::Fenced { .. }))
        ),
        "{err}"
    );
    b.shutdown(Duration::from_secs(10)).await;
    a.shutdown(Duration::from_secs(10)).await;

    let report = verify(
        &store_root,
        VerifyOptions {
            pinned_checkpoint: Some(text),
            ..pinned(b.public_key())
        },
    )
    .await;
    assert_clean(&report);
    let sizes: HashMap<_, _> = report
        .namespaces
        .iter()
        .map(|s| (s.ns.clone(), s.entries))
        .collect();
    assert_eq!(
        sizes,
        HashMap::from([("shared".to_string(), 5), ("bonly".to_string(), 1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_at_reads_only_the_segments_holding_the_indices() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut o = opts(data, 20);
    o.log.compact_interval_ms = 0;
    let vault = Vault::open(o).await.unwrap();
    let log = vault.log("n").await.unwrap();
    // Three segments: 0-3, 4-7, 8-11.
    for b in 0..3u64 {
        let batch = (0..4).map(|i| ev("s", b * 4 + i, None)).collect();
        vault.append("n", batch, "w").await.unwrap();
        assert!(
            log.wait_published((b + 1) * 4, Duration::from_secs(10))
                .await
                .is_some()
        );
    }
    let segs = std::fs::read_dir(store_dir(data).join("ns/n/segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(segs.len(), 3, "{segs:?}");
    let want: std::collections::BTreeSet<u64> = [1, 9, 11, 40].into();
    let got = vault
        .entries_at("n", std::sync::Arc::new(want.clone()))
        .await
        .unwrap();
    assert_eq!(got.iter().map(|e| e.idx).collect::<Vec<_>>(), [1, 9, 11]);
    // The middle segment damaged: a full scan fails on it, a read of 1, 9
    // and 11 never opens it; one of 5 does.
    let middle = segs
        .iter()
        .find(|p| p.to_string_lossy().contains("00000000000000000004-"))
        .unwrap();
    let bytes = std::fs::read(middle).unwrap();
    std::fs::write(middle, &bytes[..bytes.len() / 2]).unwrap();
    assert!(vault.scan_entries("n", |_| true, usize::MAX).await.is_err());
    let again = vault
        .entries_at("n", std::sync::Arc::new(want))
        .await
        .unwrap();
    assert_eq!(again.len(), 3);
    let five = vault.entries_at("n", std::sync::Arc::new([5].into())).await;
    assert!(five.is_err(), "{five:?}");
    // The newest segment removed: the listing tiles 0-7 with no hole, but
    // the checkpoint covers 12 entries, so reads refuse, and so does an
    // entry read of the lost range.
    let newest = segs
        .iter()
        .find(|p| p.to_string_lossy().contains("00000000000000000008-"))
        .unwrap();
    let saved = std::fs::read(newest).unwrap();
    std::fs::remove_file(newest).unwrap();
    let err = vault
        .scan_entries("n", |_| true, usize::MAX)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("entries 8-11 of n are missing"), "{err}");
    let err = vault.entry("n", 9).await.unwrap_err().to_string();
    assert!(err.contains("entry 9 of n is missing"), "{err}");
    assert!(vault.entry("n", 12).await.unwrap().is_none());
    std::fs::write(newest, saved).unwrap();
    assert_eq!(vault.entry("n", 9).await.unwrap().unwrap().idx, 9);

    // Removed: every read says which entries are missing, none answers
    // without them.
    std::fs::remove_file(middle).unwrap();
    let err = vault
        .entries_at("n", std::sync::Arc::new([1].into()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("entries 4-7 of n are missing"), "{err}");
    let err = vault.entry("n", 5).await.unwrap_err().to_string();
    assert!(err.contains("entry 5 of n is missing"), "{err}");
    assert!(five.is_err(), "{five:?}");
}

/// Appends over the bound on unpublished entries wait for the publisher (which
/// they wake) rather than failing at once; with `overload_wait_ms = 0` they
/// get `Overloaded` at once.
#[tokio::test]
async fn appends_over_the_unpublished_bound_wait_for_room() {
    let bounded = |data: &std::path::Path, wait_ms: u64| {
        // The publisher's own interval is a minute: only a waiting append
        // can make it publish within this test.
        let mut o = opts(data, 60_000);
        o.log.compact_interval_ms = 0;
        o.log.max_unpublished_events = 10;
        o.log.overload_wait_ms = wait_ms;
        o
    };
    let batch = |from: u64| {
        (from..from + 5)
            .map(|i| ev("s", i, None))
            .collect::<Vec<_>>()
    };
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(bounded(dir.path(), 10_000)).await.unwrap();
    for b in 0..4u64 {
        let r = vault.append("n", batch(b * 5), "w").await;
        assert_eq!(r.map(|r| r.len()).ok(), Some(5), "batch {b}");
    }
    // The last two waited for a publish each; what is left fits the bound.
    let log = vault.log("n").await.unwrap();
    assert_eq!(log.durable_size(), 20);
    assert!(log.latest_checkpoint().is_some_and(|(size, _)| size >= 10));

    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(bounded(dir.path(), 0)).await.unwrap();
    vault.append("n", batch(0), "w").await.unwrap();
    vault.append("n", batch(5), "w").await.unwrap();
    let refused = vault.append("n", batch(10), "w").await;
    assert!(
        matches!(refused, Err(VaultError::Append(AppendError::Overloaded(_)))),
        "{refused:?}"
    );
}

/// A backlog of full segments is published with each next segment encoded
/// while the previous one is written; the segments so written verify like
/// any other, and a change of the tail's shape (here a smaller segment after
/// the backlog) falls back to encoding at publish time.
#[tokio::test]
async fn a_backlog_is_published_with_the_next_segment_encoded_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut o = opts(data, 60_000);
    o.log.compact_interval_ms = 0;
    o.log.segment_max_rows = 10;
    let vault = Vault::open(o).await.unwrap();
    let log = vault.log("n").await.unwrap();
    let events = (0..53).map(|i| ev("s", i, None)).collect();
    vault.append("n", events, "w").await.unwrap();
    assert!(
        log.wait_published(53, Duration::from_secs(20))
            .await
            .is_some()
    );
    let stats = log.stats();
    assert_eq!(stats.segments_uploaded, 6);
    // Segments 2-5 followed a full one in a backlog: each was encoded while
    // the one before it was written. The last (3 rows) was not full.
    assert_eq!(stats.segments_encoded_ahead, 4);
    vault.shutdown(Duration::from_secs(10)).await;
    drop(log);
    drop(vault);
    let report = verify(&store_dir(data), pinned(open_cp_key(data))).await;
    assert_clean(&report);
    assert_eq!(report.namespaces[0].entries, 53);
}
