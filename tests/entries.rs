//! Entry reads (`GET /v1/logs/{ns}/entries/{index}`): masked per the
//! caller's profile (built-in strict, or a policy file), the committed record
//! still checkable against the receipt's leaf hash, only within the reader's
//! namespaces and window, every read recorded in `_audit`, and the raw value
//! untouched in the Parquet files.

mod common;

use common::*;
use serde_json::{Value, json};
use sha2::Digest;

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";

async fn read(c: &reqwest::Client, url: &str, ns: &str, i: u64, tok: &str) -> (u16, Value) {
    let r = c
        .get(format!("{url}/v1/logs/{ns}/entries/{i}"))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_masked_windowed_audited_and_still_provable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[log]\nflush_interval_ms = 50\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "alpha", "agent");
    let batch = json!({"events": [
        {"session_id": "s1", "kind": "prompt", "content": format!("mail {EMAIL} pay with {CARD} please")},
        {"session_id": "s1", "kind": "tool_call", "name": "lookup", "content": {"user": EMAIL, "n": 3},
         "attributes": {"http": {"client_ip": "10.1.2.3"}, "plain": "nothing here"}},
    ]});
    let (s, r) = post_events(&c, &srv.url, "alpha", &w, batch, "?wait=checkpoint").await;
    assert_eq!(s, 200, "{r}");
    let reader = token(&data, "reader", "alpha", "auditor");

    // Text content: masked by the built-in strict profile.
    let (s, e0) = read(&c, &srv.url, "alpha", 0, &reader).await;
    assert_eq!(s, 200, "{e0}");
    let content = e0["event"]["content"].as_str().unwrap();
    assert!(
        !content.contains(EMAIL) && !content.contains("4111"),
        "{content}"
    );
    assert!(
        content.contains("[REDACTED:email]") && content.contains("[REDACTED:card]"),
        "{content}"
    );
    assert_eq!(e0["masking_profile"], "builtin-strict");
    // JSON content and nested attributes too.
    let (s, e1) = read(&c, &srv.url, "alpha", 1, &reader).await;
    assert_eq!(s, 200, "{e1}");
    let text = e1["event"].to_string();
    assert!(
        !text.contains(EMAIL) && !text.contains("10.1.2.3"),
        "{text}"
    );
    assert_eq!(e1["event"]["content"]["n"], 3);
    assert_eq!(e1["event"]["attributes"]["plain"], "nothing here");

    // The committed record (digests only for content and attributes) is what
    // the receipt's leaf hash covers, and the inclusion proof checks out.
    for (i, e) in [(0usize, &e0), (1, &e1)] {
        let leaf_bytes = serde_json::to_vec(&e["leaf"]).unwrap();
        let mut h = sha2::Sha256::new();
        h.update([0u8]);
        h.update(&leaf_bytes);
        assert_eq!(
            hex::encode(h.finalize()),
            r["receipts"][i]["leaf_hash"].as_str().unwrap()
        );
        assert_eq!(e["leaf_hash"], r["receipts"][i]["leaf_hash"]);
        assert!(!e["leaf"].to_string().contains(EMAIL));
        assert!(e["leaf"]["content_digest"].is_string());
    }

    // Who may read what.
    assert_eq!(
        read(&c, &srv.url, "alpha", 0, &w).await.0,
        403,
        "writers never read"
    );
    let other = token(&data, "reader", "beta", "auditor");
    assert_eq!(read(&c, &srv.url, "alpha", 0, &other).await.0, 403);
    assert_eq!(read(&c, &srv.url, "alpha", 99, &reader).await.0, 404);
    assert_eq!(read(&c, &srv.url, "_audit", 0, &reader).await.0, 403);
    // A window that ended before the events arrived: the entries do not exist for it.
    let old_window = reader_token_window(
        &data,
        "alpha",
        "late",
        "2020-01-01T00:00:00Z",
        "2021-01-01T00:00:00Z",
    );
    let (s, body) = read(&c, &srv.url, "alpha", 0, &old_window).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("no_such_entry")),
        "{body}"
    );

    // Admins read the access log like any namespace; it holds the reads.
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert_eq!(srv.terminate(), Some(0));
    let audit = stored_rows(&data, "_audit");
    let reads: Vec<Value> = audit
        .iter()
        .filter(|r| r["name"] == "entry_read")
        .map(|r| serde_json::from_str(r["content"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(reads.len(), 2, "{audit:?}");
    assert!(
        reads
            .iter()
            .all(|r| r["ns"] == "alpha" && r["profile"] == "builtin-strict")
    );
    assert!(
        audit
            .iter()
            .any(|r| r["name"] == "entry_read" && r["actor"] == "auditor")
    );
    // The raw values are still in the Parquet files.
    let rows = stored_rows(&data, "alpha");
    assert!(rows[0]["content"].as_str().unwrap().contains(EMAIL));
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let (s, a0) = read(&c, &srv.url, "_audit", 0, admin.trim()).await;
    assert_eq!(s, 200, "{a0}");
    assert_eq!(srv.terminate(), Some(0));
    let (code, out, err) = verify(&["--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_file_hashes_equal_values_equally() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = dir.path().join("masking.toml");
    std::fs::write(
        &policy,
        "[[profile]]\nname = \"joinable\"\nroles = [\"reader\"]\n\n[[profile.rule]]\ndetector = \"email\"\naction = \"hash\"\n\n[[profile.rule]]\ndetector = \"all\"\naction = \"redact\"\n",
    )
    .unwrap();
    let cfg = config(
        dir.path(),
        &format!("masking_policy = {:?}\n", policy.to_str().unwrap()),
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "alpha", "agent");
    let batch = json!({"events": [
        {"session_id": "s", "kind": "prompt", "content": format!("from {EMAIL}")},
        {"session_id": "s", "kind": "prompt", "content": format!("again {EMAIL}")},
        {"session_id": "s", "kind": "prompt", "content": "other john@example.org"},
    ]});
    assert_eq!(
        post_events(&c, &srv.url, "alpha", &w, batch, "").await.0,
        200
    );
    let reader = token(&data, "reader", "alpha", "auditor");
    let mut tags = Vec::new();
    for i in 0..3 {
        let (s, e) = read(&c, &srv.url, "alpha", i, &reader).await;
        assert_eq!(s, 200, "{e}");
        assert_eq!(e["masking_profile"], "joinable");
        let content = e["event"]["content"].as_str().unwrap().to_string();
        assert!(!content.contains("@example"), "{content}");
        let tag = content.split_whitespace().last().unwrap().to_string();
        assert!(tag.starts_with("[HASH:email:"), "{content}");
        tags.push(tag);
    }
    assert_eq!(tags[0], tags[1], "equal values hash equally");
    assert_ne!(tags[0], tags[2]);
    // A broken policy file stops the server from starting (no silent fallback).
    std::fs::write(
        &policy,
        "[[profile]]\nname = \"x\"\n[[profile.rule]]\ndetector = \"nope\"\naction = \"redact\"\n",
    )
    .unwrap();
    drop(srv);
    let err = Server::try_start(
        &dir.path().join("data2"),
        &["--config", cfg.to_str().unwrap()],
    )
    .err();
    assert!(
        err.is_some_and(|e| e.contains("nope") || e.contains("masking")),
        "server started with a broken policy"
    );
}
