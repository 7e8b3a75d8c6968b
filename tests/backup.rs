//! Backup and restore (`docs/cluster.md`): a node stopped cleanly is copied
//! (its store, `keys/`, `instance`) and restored onto a fresh data
//! directory and a fresh store; the copy verifies, its entries match the
//! receipts sent before, and it goes on appending with the same key, its
//! next checkpoint consistent with the last one before the backup (checked
//! by the client crate, a consistency proof across the two servers). A
//! restore without the log key refuses to start.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};
use tracevault_client::Client;
use tracevault_client::checkpoints::{CheckpointTracker, namespace_key};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn batch(tag: &str) -> Value {
    json!({"events": (0..4).map(|i| json!({"session_id": "s", "kind": "output",
        "event_id": format!("{tag}-{i}"), "content": format!("{tag} {i}")})).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_onto_a_fresh_directory_and_store_verifies_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, keyless) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("keyless"),
    );
    let a = Server::start(&a_dir, &[]);
    let pk = a.public_key();
    let c = client();
    let w = token(&a_dir, "writer", "prod", "agent");
    let reader = token(&a_dir, "reader", "prod", "auditor");
    let mut receipts = Vec::new();
    for tag in ["one", "two"] {
        let (s, r) = post_events(&c, &a.url, "prod", &w, batch(tag), "?wait=checkpoint").await;
        assert_eq!(s, 200, "{r}");
        receipts.extend(r["receipts"].as_array().unwrap().iter().cloned());
    }
    let before = Client::new(&a.url, &reader).unwrap();
    let (name, key) = namespace_key(&before, "prod", Some(&pk)).await.unwrap();
    let mut tracker = CheckpointTracker::new("prod", name, key);
    let last = tracker.next(&before).await.unwrap();
    assert_eq!(last.size, 8);
    // Backup: a clean stop (everything published, leases released), then
    // the store, the keys and the instance id.
    assert_eq!(a.terminate(), Some(0));
    copy_dir(&a_dir.join("store"), &b_dir.join("store"));
    copy_dir(&a_dir.join("keys"), &b_dir.join("keys"));
    std::fs::copy(a_dir.join("instance"), b_dir.join("instance")).unwrap();
    // The original is gone (the machine is lost).
    copy_dir(&a_dir.join("store"), &keyless.join("store"));
    std::fs::remove_dir_all(&a_dir).unwrap();

    // The copy verifies before it is started.
    let (code, out, err) = verify(&["--data", b_dir.to_str().unwrap(), "--key", &pk]);
    assert_eq!(code, 0, "{out}{err}");
    let b = Server::start(&b_dir, &[]);
    assert_eq!(b.public_key(), pk, "the same log key");
    let reader_b = token(&b_dir, "reader", "prod", "auditor");
    for r in &receipts {
        let i = r["index"].as_u64().unwrap();
        let (s, e) = get(
            &c,
            &format!("{}/v1/logs/prod/entries/{i}", b.url),
            Some(&reader_b),
        )
        .await;
        assert_eq!(s, 200, "{e}");
        let e: Value = serde_json::from_str(&e).unwrap();
        assert_eq!(e["leaf_hash"], r["leaf_hash"], "entry {i}");
    }
    // Tokens minted before the backup still work (same issuer key), and
    // appends go on at the next index; a retry of an old event gets its
    // original receipt.
    let (s, r) = post_events(&c, &b.url, "prod", &w, batch("three"), "?wait=checkpoint").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["receipts"][0]["index"], 8, "{r}");
    let (s, r) = post_events(&c, &b.url, "prod", &w, batch("one"), "").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["receipts"][0]["index"], 0, "{r}");
    assert_eq!(r["receipts"][0]["duplicate"], true, "{r}");
    // The new checkpoint extends the last one before the backup.
    let after = Client::new(&b.url, &reader).unwrap();
    let next = tracker.next(&after).await.unwrap();
    assert_eq!(next.size, 12);
    assert_eq!(b.terminate(), Some(0));
    let (code, out, err) = verify(&["--data", b_dir.to_str().unwrap(), "--key", &pk]);
    assert_eq!(code, 0, "{out}{err}");

    // A restore without the log key (a fresh one would be generated) is
    // refused: the store's vault.json names another key.
    let e = Server::try_start(&keyless, &[])
        .err()
        .expect("a restore without the log key starts");
    assert!(e.contains("log key"), "{e}");
}
