//! The tree in the store as C2SP tiles, read by a third-party tile client:
//! Go's golang.org/x/mod/sumdb/tlog `TileHashReader` fetches the signed
//! checkpoint and the tiles over HTTP, checks each tile against the signed
//! root, finds every leaf hash equal to the one recomputed here from the
//! Parquet rows, and proves consistency from an older checkpoint with the
//! tiles alone (tests/independent/tlogcheck/tiles.go).

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

/// Every leaf hash of `ns`, recomputed from the stored rows (the committed
/// record of each row, hashed as RFC 6962 leaves), in index order.
fn leaves_from_rows(data: &std::path::Path, ns: &str) -> Vec<String> {
    let dir = data.join("store/ns").join(ns).join("segments");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let seg = tracevault_vault::segment::decode(std::fs::read(f).unwrap().into()).unwrap();
        for e in seg.entries {
            let rec = e.committed_record_bytes().unwrap();
            assert_eq!(out.len() as u64, e.idx);
            out.push(hex::encode(tracevault_vault::merkle::leaf_hash(&rec)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_tile_client_follows_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 20\nsegment_max_rows = 200\n",
    );
    let server = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let writer = token(&data, "writer", "prod", "agent");
    let reader = token(&data, "reader", "prod", "auditor");
    let post = |n: u64, from: u64| {
        let events: Vec<_> = (from..from + n)
            .map(|i| json!({"session_id": format!("s{}", i % 7), "kind": "output", "content": format!("event {i}")}))
            .collect();
        json!({ "events": events })
    };
    // 300 events first (a full level-0 tile and a partial one), the old
    // checkpoint saved; then 400 more (a level-1 tile of width 2).
    let (s, v) = post_events(
        &c,
        &server.url,
        "prod",
        &writer,
        post(300, 0),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, old) = get(
        &c,
        &format!("{}/v1/logs/prod/checkpoint", server.url),
        Some(&reader),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(old.lines().nth(1), Some("300"));
    let old_file = dir.path().join("old.checkpoint");
    std::fs::write(&old_file, &old).unwrap();
    let (s, v) = post_events(
        &c,
        &server.url,
        "prod",
        &writer,
        post(400, 300),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(wait_size(&c, &server.url, "prod", &reader, 700).await, 700);

    let (_, vault) = get(&c, &format!("{}/v1/vault", server.url), Some(&reader)).await;
    let vault: serde_json::Value = serde_json::from_str(&vault).unwrap();
    let vk = vault["namespaces"][0]["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let leaves = leaves_from_rows(&data, "prod");
    assert_eq!(leaves.len(), 700);
    let leaves_file = dir.path().join("leaves");
    std::fs::write(&leaves_file, leaves.join("\n")).unwrap();

    let tlogcheck = go_tlogcheck(dir.path());
    let run = |token: &str, leaves: &std::path::Path| {
        Command::new(&tlogcheck)
            .args(["tiles", &server.url, "prod", &vk, token])
            .arg(leaves)
            .arg(&old_file)
            .output()
            .unwrap()
    };
    let go = run(&reader, &leaves_file);
    let said = String::from_utf8_lossy(&go.stdout);
    assert!(
        go.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&go.stderr)
    );
    let said: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(said["size"], 700, "{said}");
    assert_eq!(said["leaves"], 700, "{said}");
    assert_eq!(said["consistent_from"], 300, "{said}");

    // The tiles are immutable, cacheable, and only for the namespace's roles.
    let r = c
        .get(format!("{}/v1/logs/prod/tile/0/000", server.url))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(r.bytes().await.unwrap().len(), 256 * 32);
    let (s, _) = get(&c, &format!("{}/v1/logs/prod/tile/0/000", server.url), None).await;
    assert_eq!(s, 401);
    let other = token(&data, "reader", "other", "auditor");
    let (s, _) = get(
        &c,
        &format!("{}/v1/logs/prod/tile/0/000", server.url),
        Some(&other),
    )
    .await;
    assert_eq!(s, 403);
    let (s, body) = get(
        &c,
        &format!("{}/v1/logs/prod/tile/0/x000/000", server.url),
        Some(&reader),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("invalid_tile_path"), "{body}");
    let (s, body) = get(
        &c,
        &format!("{}/v1/logs/prod/tile/0/009", server.url),
        Some(&reader),
    )
    .await;
    assert_eq!(s, 404, "{body}");

    // `verify --since` the saved checkpoint: consistent through the tiles,
    // and only the entries after it read.
    let (code, out, err) = verify(&[
        "--data",
        data.to_str().unwrap(),
        "--key",
        &vk,
        "--since",
        old_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK: 1 namespaces, 700 entries"), "{out}");

    // A leaf hash that differs from the rows (one row changed after the
    // fact would give this) is named by the client...
    let mut bent = leaves.clone();
    bent[517] = hex::encode([7u8; 32]);
    let bent_file = dir.path().join("bent-leaves");
    std::fs::write(&bent_file, bent.join("\n")).unwrap();
    let go = run(&reader, &bent_file);
    let err = String::from_utf8_lossy(&go.stderr);
    assert_eq!(go.status.code(), Some(1), "{err}");
    assert!(err.contains("leaf 517"), "{err}");
    // ...and so is a tile changed in the store: it no longer hashes to the
    // signed root.
    let tile = data.join("store/ns/prod/tile/0/001");
    let mut bytes = std::fs::read(&tile).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&tile, &bytes).unwrap();
    let go = run(&reader, &leaves_file);
    let err = String::from_utf8_lossy(&go.stderr);
    assert_eq!(go.status.code(), Some(1), "{err}");
}
