//! Roots and proofs read from the tiles in the store (by `TileTree`, by the
//! writer, and by a server that does not write the namespace) equal those
//! of a reference tree in memory built from the receipts, at every
//! checkpoint size, and verify against the signed checkpoints; a changed
//! tile gives a proof that does not.

mod common;

use std::time::Duration;

use common::*;
use tracevault_vault::merkle::{verify_consistency, verify_inclusion};
use tracevault_vault::tile_proofs::TileTree;
use tracevault_vault::verify::VerifyOptions;
use tracevault_vault::{LogReader, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_from_tiles_equal_proofs_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let vault = open(&data, 20).await;
    let mut sizes = Vec::new();
    let mut next = 0u64;
    // The reference: a tree in memory of the receipts' leaf hashes.
    let mut reference = tracevault_vault::merkle::MerkleTree::new();
    for batch in [1u64, 255, 44, 400, 70] {
        let events = (next..next + batch).map(|i| ev("s", i, None)).collect();
        for r in vault.append("n", events, "w").await.unwrap() {
            let mut h = [0u8; 32];
            hex::decode_to_slice(&r.leaf_hash, &mut h).unwrap();
            reference.push(h);
        }
        next += batch;
        let log = vault.log("n").await.unwrap();
        let (size, _) = log
            .wait_published(next, Duration::from_secs(10))
            .await
            .unwrap();
        sizes.push(size);
    }
    let log = vault.log("n").await.unwrap();
    let reader = LogReader::new(Store::local(&store_dir(&data)).unwrap());
    let root_of = |size: u64| reference.root_at(size).unwrap();
    for &size in &sizes {
        let mut tiles = TileTree::new(reader.clone(), "n", size);
        let root = tiles.root().await.unwrap();
        assert_eq!(root, root_of(size), "root at {size}");
        for index in [0, size / 2, size - 1] {
            let (leaf, want) = (
                reference.leaf(index).unwrap(),
                reference.inclusion_proof(index, size).unwrap(),
            );
            // The writer serves the same (from the tiles too, now).
            assert_eq!(
                log.inclusion_proof(index, size).await.unwrap(),
                (leaf, want.clone())
            );
            let got = tiles.inclusion_proof(index).await.unwrap();
            assert_eq!(got, want, "inclusion of {index} at {size}");
            assert_eq!(tiles.leaf(index).await.unwrap(), leaf);
            verify_inclusion(&leaf, index, size, &got, &root).unwrap();
        }
        for &old in sizes.iter().filter(|s| **s < size) {
            let got = tiles.consistency_proof(old).await.unwrap();
            assert_eq!(got, reference.consistency_proof(old, size).unwrap());
            verify_consistency(old, size, &got, &root_of(old), &root).unwrap();
        }
    }
    // A server that does not write `n` serves its proofs from the tiles
    // (a view loaded without reading any segment), the same proofs.
    let want: Vec<_> = [0, 300, next - 1]
        .iter()
        .map(|&i| {
            (
                reference.leaf(i).unwrap(),
                reference.inclusion_proof(i, next).unwrap(),
            )
        })
        .collect();
    let want_consistency = reference.consistency_proof(256, next).unwrap();
    let want_leaf_257 = reference.leaf(257).unwrap();
    let want_leaf_256 = reference.leaf(256).unwrap();
    let reference_leaf_700 = reference.leaf(700).unwrap();
    vault.shutdown(Duration::from_secs(5)).await;
    drop(vault);
    // Another server (its own data directory, the same keys and store).
    let rdata = dir.path().join("r");
    std::fs::create_dir_all(rdata.join("keys")).unwrap();
    std::fs::copy(data.join("keys/log.key"), rdata.join("keys/log.key")).unwrap();
    let store = Store::local(&store_dir(&data)).unwrap();
    let other = tracevault_vault::Vault::open(opts_with_store(&rdata, store, 20))
        .await
        .unwrap();
    let view = other.view("n").await.unwrap().unwrap();
    assert!(matches!(view, tracevault_vault::LogView::Store(_)));
    for (k, &i) in [0, 300, next - 1].iter().enumerate() {
        assert_eq!(view.inclusion_proof(i, next).await.unwrap(), want[k]);
    }
    assert_eq!(
        view.consistency_proof(256, next).await.unwrap(),
        want_consistency
    );
    assert!(matches!(
        view.inclusion_proof(next, next).await,
        Err(tracevault_vault::tile_proofs::ProofError::Invalid(_))
    ));
    other.shutdown(Duration::from_secs(5)).await;

    // One hash of a full leaf tile changed (leaf 256): the root does not
    // read it (the level-1 tile holds that subtree), but a proof through it
    // no longer verifies against the signed root.
    let tile = store_dir(&data).join("ns/n/tile/0/001");
    let mut b = std::fs::read(&tile).unwrap();
    b[0] ^= 1;
    std::fs::write(&tile, &b).unwrap();
    let mut tiles = TileTree::new(reader.clone(), "n", next);
    let root = root_of(next);
    assert_eq!(tiles.root().await.unwrap(), root);
    let leaf = want_leaf_257;
    let proof = tiles.inclusion_proof(257).await.unwrap();
    assert!(verify_inclusion(&leaf, 257, next, &proof, &root).is_err());
    assert_ne!(tiles.leaf(256).await.unwrap(), want_leaf_256);
    // Trusted at the signed root, the tree checks every tile it reads
    // against the one above it: the changed tile is an error, not a proof.
    let mut trusted = TileTree::new(reader.clone(), "n", next);
    trusted.trust(root).await.unwrap();
    assert!(trusted.inclusion_proof(257).await.is_err());
    assert!(trusted.leaf(256).await.is_err());
    // Proofs that do not touch it are still served, and verify.
    let proof = trusted.inclusion_proof(700).await.unwrap();
    verify_inclusion(&reference_leaf_700, 700, next, &proof, &root).unwrap();
    // Trusting another root fails.
    assert!(
        TileTree::new(reader.clone(), "n", next)
            .trust([0; 32])
            .await
            .is_err()
    );
}

/// A store written before tiles (its tile objects gone) gets them at the
/// writer's next open, and verifies clean, its proofs served from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_tiles_gets_them_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let vault = open(&data, 20).await;
    let events = (0..600).map(|i| ev("s", i, None)).collect();
    vault.append("n", events, "w").await.unwrap();
    let log = vault.log("n").await.unwrap();
    log.wait_published(600, Duration::from_secs(10))
        .await
        .unwrap();
    vault.shutdown(Duration::from_secs(5)).await;
    drop((log, vault));
    std::fs::remove_dir_all(store_dir(&data).join("ns/n/tile")).unwrap();
    let r = verify(&store_dir(&data), VerifyOptions::default()).await;
    assert!(r.findings.is_empty(), "{}", describe(&r));
    assert!(
        r.warnings.iter().any(|w| w.contains("no tiles")),
        "{}",
        describe(&r)
    );

    let vault = open(&data, 20).await;
    vault
        .append("n", vec![ev("s", 600, None)], "w")
        .await
        .unwrap();
    let log = vault.log("n").await.unwrap();
    log.wait_published(601, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(store_dir(&data).join("ns/n/tile/0/001").exists());
    let (leaf, proof) = log.inclusion_proof(300, 601).await.unwrap();
    let (_, text) = log.latest_checkpoint().unwrap();
    let cp =
        tracevault_vault::note::open_checkpoint(&text, &vault.origin_of("n"), &vault.public_key())
            .unwrap();
    verify_inclusion(&leaf, 300, 601, &proof, &cp.root).unwrap();
    vault.shutdown(Duration::from_secs(5)).await;
    let r = verify(&store_dir(&data), VerifyOptions::default()).await;
    assert!(
        r.findings.is_empty() && !r.warnings.iter().any(|w| w.contains("no tiles")),
        "{}",
        describe(&r)
    );
}
