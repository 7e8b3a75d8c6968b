//! End-to-end: a real server on a loopback socket, real JWTs from the CLI,
//! events in every accepted encoding, and everything it hands out (receipts,
//! checkpoints, proofs, tlog-proofs, Parquet segments) checked by an
//! independent Python implementation of the specs, pyarrow and DuckDB.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn independent_check(job: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independent/check.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "independent check failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_api_receipts_proofs_and_segments_check_out_independently() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // LZ4 segments here (zstd, the default, everywhere else): pyarrow and
    // DuckDB read them below as they read zstd ones.
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 100\nsegment_compression = \"lz4\"\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "alpha", "pipeline-a");
    let url = &srv.url;

    // JSON batch with ?wait=checkpoint: receipts and C2SP tlog-proofs.
    let (s, r1) = post_events(
        &c,
        url,
        "alpha",
        &w,
        json!({"events": [
            {"session_id": "s1", "kind": "prompt", "content": "What is 2+2?", "ts": "2026-11-22T01:02:03Z"},
            {"session_id": "s1", "kind": "reasoning", "content": "Adding two and two gives four."},
            {"session_id": "s1", "kind": "tool_call", "content": {"tool": "calc", "args": {"expr": "2+2"}},
             "attributes": {"gen_ai.request.model": "m-1", "i": 3, "ünï": "cödé"}, "event_id": "call-1",
             "name": "calc", "actor": "agent:planner", "model": "m-1", "trace_id": "t1", "span_id": "sp1"}
        ]}),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200, "{r1}");
    let receipts = r1["receipts"].as_array().unwrap().clone();
    assert_eq!(
        receipts
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(
        receipts
            .iter()
            .map(|r| r["session_seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let proofs = r1["proofs"].as_array().unwrap().clone();
    assert_eq!(proofs.len(), 3);

    // NDJSON, gzip-compressed, with a retry of the event with event_id call-1
    // (the same event, its keys in another order: a retry carries the same
    // event, or it is a conflict).
    let retry = json!({"event_id": "call-1", "span_id": "sp1", "trace_id": "t1", "model": "m-1",
        "actor": "agent:planner", "name": "calc", "attributes": {"ünï": "cödé", "i": 3, "gen_ai.request.model": "m-1"},
        "content": {"args": {"expr": "2+2"}, "tool": "calc"}, "kind": "tool_call", "session_id": "s1"});
    let nd = format!("{{\"session_id\":\"s2\",\"kind\":\"input\",\"content\":\"ls\"}}\n{retry}\n");
    let resp = c
        .post(format!("{url}/v1/logs/alpha/events"))
        .bearer_auth(&w)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gzip(nd.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r2: Value = resp.json().await.unwrap();
    assert_eq!(r2["receipts"][0]["index"], 3);
    assert_eq!(r2["receipts"][0]["session_seq"], 0);
    assert_eq!(
        r2["receipts"][1],
        json!({"index": 2, "leaf_hash": receipts[2]["leaf_hash"], "session_seq": 2, "duplicate": true})
    );

    // Checkpoint covering everything, once published.
    let vault: Value =
        serde_json::from_str(&get(&c, &format!("{url}/v1/vault"), Some(&w)).await.1).unwrap();
    let vkey = vault["namespaces"][0]["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(vault["log_public_key"], srv.public_key());
    let mut note = String::new();
    for _ in 0..100 {
        let (s, text) = get(&c, &format!("{url}/v1/logs/alpha/checkpoint"), Some(&w)).await;
        assert_eq!(s, 200);
        if text.lines().nth(1) == Some("4") {
            note = text;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!note.is_empty(), "no checkpoint of size 4 within 5 s");
    let old_note = proofs[0]
        .as_str()
        .unwrap()
        .split_once("\n\n")
        .unwrap()
        .1
        .to_string();
    let old_size: u64 = old_note.lines().nth(1).unwrap().parse().unwrap();
    let mut inclusion = Vec::new();
    for i in 0..4u64 {
        let (s, body) = get(
            &c,
            &format!("{url}/v1/logs/alpha/proof/inclusion?index={i}&size=4"),
            Some(&w),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        inclusion.push(serde_json::from_str::<Value>(&body).unwrap());
    }
    let (s, body) = get(
        &c,
        &format!("{url}/v1/logs/alpha/proof/consistency?from={old_size}&to=4"),
        Some(&w),
    )
    .await;
    assert_eq!(s, 200);
    let cons: Value = serde_json::from_str(&body).unwrap();

    let mut all_receipts = receipts.clone();
    all_receipts.push(r2["receipts"][0].clone());
    let seg_dir = data.join("store/ns/alpha/segments");
    let mut segments: Vec<String> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    segments.sort();
    let job = json!({
        "vkey": vkey,
        "checkpoint": note,
        "inclusion": inclusion,
        "consistency": [{"from": old_size, "to": 4, "hashes": cons["hashes"], "old_note": old_note}],
        "tlog_proofs": proofs,
        "tlog_leaves": receipts.iter().map(|r| r["leaf_hash"].clone()).collect::<Vec<_>>(),
        "segments": segments,
        // pyarrow names Parquet's LZ4_RAW codec "LZ4".
        "segment_codec": "LZ4",
        "receipts": all_receipts,
    });
    let out = independent_check(&job);
    assert_eq!(out["size"], 4);
    assert_eq!(out["inclusion_checked"], 4);
    assert_eq!(out["consistency_checked"], 1);
    assert_eq!(out["tlog_checked"], 3);
    assert_eq!(out["rows"], 4);
    assert_eq!(out["duckdb_rows"], 4);
    assert_eq!(
        (out["duckdb_min"].as_u64(), out["duckdb_max"].as_u64()),
        (Some(0), Some(3))
    );

    // A tampered proof must fail the independent checker (it is not a rubber stamp).
    let mut bad = job.clone();
    bad["inclusion"][1]["leaf_hash"] = json!(receipts[0]["leaf_hash"]);
    bad["segments"] = json!([]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independent/check.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(bad.to_string().as_bytes())
        .unwrap();
    assert!(!child.wait().unwrap().success());

    // Graceful shutdown: exit 0, final checkpoint, lease released, verify clean.
    assert_eq!(srv.terminate(), Some(0));
    assert!(!data.join("store/ns/alpha/lease").exists());
    let (code, out, err) = verify(&[
        "--data",
        data.to_str().unwrap(),
        "--key",
        vault["log_public_key"].as_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK: 1 namespaces, 4 entries"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 100\n[limits]\nmax_events_per_request = 3\nmax_event_bytes = 2000\nmax_body_bytes = 10000\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let url = &srv.url;
    let w = token(&data, "writer", "alpha", "w");
    let other = token(&data, "writer", "beta", "w");
    let reader = token(&data, "reader", "alpha", "r");
    let ev = json!({"session_id": "s", "kind": "output", "content": "x"});
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();

    // Authentication and authorization.
    let r = c
        .post(format!("{url}/v1/logs/alpha/events"))
        .json(&json!({"events": [ev]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(code(&r.json().await.unwrap()), "missing_token");
    let (s, b) = post_events(&c, url, "alpha", "not.a.jwt", json!({"events": [ev]}), "").await;
    assert_eq!((s, code(&b)), (401, "invalid_token".into()));
    let forged = format!("{}x", &w[..w.len() - 1]);
    let (s, b) = post_events(&c, url, "alpha", &forged, json!({"events": [ev]}), "").await;
    assert_eq!((s, code(&b)), (401, "invalid_token".into()));
    let (s, b) = post_events(&c, url, "alpha", &other, json!({"events": [ev]}), "").await;
    assert_eq!((s, code(&b)), (403, "forbidden".into()));
    let (s, b) = post_events(&c, url, "alpha", &reader, json!({"events": [ev]}), "").await;
    assert_eq!((s, code(&b)), (403, "forbidden".into()));
    let (s, _) = get(&c, &format!("{url}/v1/vault"), None).await;
    assert_eq!(s, 401);
    let (s, _) = get(&c, &format!("{url}/healthz"), None).await;
    assert_eq!(s, 200);

    // Bad events: precise field, nothing written (the valid first event is not appended either).
    let (s, b) = post_events(
        &c,
        url,
        "alpha",
        &w,
        json!({"events": [ev, {"session_id": "s", "kind": "nope"}]}),
        "",
    )
    .await;
    assert_eq!((s, code(&b)), (400, "invalid_event".into()));
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("events[1].kind"),
        "{b}"
    );
    let (s, b) = post_events(
        &c,
        url,
        "alpha",
        &w,
        json!({"events": [{"session_id": "s", "kind": "input", "extra": 1}]}),
        "",
    )
    .await;
    assert_eq!((s, code(&b)), (400, "invalid_event".into()));
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("events[0].extra"),
        "{b}"
    );
    let (s, b) = post_events(&c, url, "alpha", &w, json!({"evnts": []}), "").await;
    assert_eq!((s, code(&b)), (400, "invalid_json".into()));
    let (s, b) = post_events(
        &c,
        url,
        "alpha",
        &w,
        json!({"events": [ev, ev, ev, ev]}),
        "",
    )
    .await;
    assert_eq!((s, code(&b)), (413, "too_many_events".into()));
    let big = json!({"session_id": "s", "kind": "output", "content": "x".repeat(3000)});
    let (s, b) = post_events(&c, url, "alpha", &w, json!({"events": [big]}), "").await;
    assert_eq!((s, code(&b)), (413, "event_too_large".into()));
    let r = c
        .post(format!("{url}/v1/logs/alpha/events"))
        .bearer_auth(&w)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gzip(&vec![b' '; 50_000]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        413,
        "a gzip bomb is refused by its decompressed size"
    );
    assert_eq!(code(&r.json().await.unwrap()), "body_too_large");
    let r = c
        .post(format!("{url}/v1/logs/alpha/events"))
        .bearer_auth(&w)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let (s, b) = post_events(
        &c,
        url,
        "alpha",
        &w,
        json!({"events": [ev]}),
        "?wait=forever",
    )
    .await;
    assert_eq!((s, code(&b)), (400, "invalid_query".into()));

    // Nothing was appended by any of the above: the namespace does not exist yet.
    let (s, b) = get(&c, &format!("{url}/v1/logs/alpha/checkpoint"), Some(&w)).await;
    assert_eq!(s, 404, "{b}");

    // A good request still works; then proofs beyond the tree are refused cleanly.
    let (s, _) = post_events(
        &c,
        url,
        "alpha",
        &w,
        json!({"events": [ev]}),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = get(
        &c,
        &format!("{url}/v1/logs/alpha/proof/inclusion?index=5&size=9"),
        Some(&w),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("invalid_proof_request"));
    let (s, b) = get(
        &c,
        &format!("{url}/v1/logs/alpha/proof/inclusion?index=abc&size=1"),
        Some(&w),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = get(&c, &format!("{url}/v1/logs/beta/checkpoint"), Some(&w)).await;
    assert_eq!(s, 403, "{b}");

    // Wrong method and undecodable path segments still get the JSON error shape.
    let r = c
        .delete(format!("{url}/v1/logs/alpha/events"))
        .bearer_auth(&w)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(code(&r.json().await.unwrap()), "method_not_allowed");
    let r = c
        .get(format!("{url}/v1/logs/%FF/checkpoint"))
        .bearer_auth(&w)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code(&r.json().await.unwrap()), "invalid_path");
    // Proofs only for sizes a checkpoint covers.
    let (s, b) = get(
        &c,
        &format!("{url}/v1/logs/alpha/proof/inclusion?index=0&size=2"),
        Some(&w),
    )
    .await;
    assert_eq!(s, 400, "{b}");

    // Admin-only token endpoint.
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let r = c
        .post(format!("{url}/v1/tokens"))
        .bearer_auth(&w)
        .json(&json!({"role": "writer", "ns": ["x"], "sub": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(format!("{url}/v1/tokens"))
        .bearer_auth(admin.trim())
        .json(&json!({"role": "writer", "ns": ["gamma"], "sub": "svc", "ttl_s": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let minted: Value = r.json().await.unwrap();
    let (s, _) = post_events(
        &c,
        url,
        "gamma",
        minted["token"].as_str().unwrap(),
        json!({"events": [ev]}),
        "",
    )
    .await;
    assert_eq!(s, 200);
    let r = c
        .post(format!("{url}/v1/tokens"))
        .bearer_auth(admin.trim())
        .json(&json!({"role": "writer", "ns": ["*"], "sub": "svc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// `POST /v1/logs/{ns}/proof/inclusion`: a body, its status and JSON answer.
async fn post_proofs(
    c: &reqwest::Client,
    url: &str,
    ns: &str,
    tok: Option<&str>,
    body: String,
) -> (u16, Value) {
    let mut r = c
        .post(format!("{url}/v1/logs/{ns}/proof/inclusion"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = tok {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_inclusion_proofs_equal_the_gets_and_refuse_bad_requests_whole() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use tracevault_vault::{merkle, note};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[log]\nflush_interval_ms = 100\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let url = &srv.url;
    let w = token(&data, "writer", "alpha", "w");
    let reader = token(&data, "reader", "alpha", "r");
    let other_w = token(&data, "writer", "beta", "w");
    let other_r = token(&data, "reader", "beta", "r");
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();

    let events: Vec<Value> = (0..13)
        .map(|i| json!({"session_id": "s", "kind": "output", "content": format!("line {i}")}))
        .collect();
    let (s, b) = post_events(
        &c,
        url,
        "alpha",
        &w,
        json!({ "events": events }),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(wait_size(&c, url, "alpha", &w, 13).await, 13);
    let (_, note_text) = get(&c, &format!("{url}/v1/logs/alpha/checkpoint"), Some(&w)).await;
    let (_, vault) = get(&c, &format!("{url}/v1/vault"), Some(&w)).await;
    let vault: Value = serde_json::from_str(&vault).unwrap();
    let (name, pk) =
        note::parse_verifier_key(vault["namespaces"][0]["verifier_key"].as_str().unwrap()).unwrap();
    let pk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    let cp = note::open_checkpoint(&note_text, &name, &pk).unwrap();
    assert_eq!(cp.size, 13);

    // In request order, duplicates answered as asked, each proof what the
    // GET gives for that index, and each one reaching the signed root.
    let asked = [12u64, 0, 5, 5, 7, 1];
    for tok in [&w, &reader] {
        let (s, b) = post_proofs(
            &c,
            url,
            "alpha",
            Some(tok),
            json!({"size": 13, "indices": asked}).to_string(),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["size"], 13);
        let proofs = b["proofs"].as_array().unwrap();
        assert_eq!(proofs.len(), asked.len());
        for (p, &i) in proofs.iter().zip(&asked) {
            let (s, one) = get(
                &c,
                &format!("{url}/v1/logs/alpha/proof/inclusion?index={i}&size=13"),
                Some(tok),
            )
            .await;
            assert_eq!(s, 200, "{one}");
            let one: Value = serde_json::from_str(&one).unwrap();
            let mut expected = one.clone();
            expected.as_object_mut().unwrap().remove("size");
            assert_eq!(p, &expected, "index {i}");
            assert_eq!(p.as_object().unwrap().len(), 3, "{p}");
            let leaf: [u8; 32] = hex::decode(p["leaf_hash"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let hashes: Vec<[u8; 32]> = p["hashes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
                .collect();
            merkle::verify_inclusion(&leaf, i, 13, &hashes, &cp.root).unwrap();
        }
    }
    // Exactly the limit is accepted.
    let full: Vec<u64> = (0..1000).map(|i| i % 13).collect();
    let (s, b) = post_proofs(
        &c,
        url,
        "alpha",
        Some(&w),
        json!({"size": 13, "indices": full}).to_string(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["proofs"].as_array().unwrap().len(), 1000);
    assert_eq!(b["proofs"][999]["index"], 999 % 13);

    // Same authorization as the GET: other namespaces' tokens are refused.
    let good = json!({"size": 13, "indices": [0]}).to_string();
    for tok in [&other_w, &other_r] {
        let (s, b) = post_proofs(&c, url, "alpha", Some(tok), good.clone()).await;
        assert_eq!((s, code(&b)), (403, "forbidden".into()), "{b}");
        let (s, _) = get(
            &c,
            &format!("{url}/v1/logs/alpha/proof/inclusion?index=0&size=13"),
            Some(tok),
        )
        .await;
        assert_eq!(s, 403);
    }
    let (s, b) = post_proofs(&c, url, "alpha", None, good.clone()).await;
    assert_eq!((s, code(&b)), (401, "missing_token".into()), "{b}");

    // Too many, or none: 400 with a stable code.
    let over: Vec<u64> = vec![0; 1001];
    let (s, b) = post_proofs(
        &c,
        url,
        "alpha",
        Some(&w),
        json!({"size": 13, "indices": over}).to_string(),
    )
    .await;
    assert_eq!((s, code(&b)), (400, "too_many_indices".into()), "{b}");
    let (s, b) = post_proofs(
        &c,
        url,
        "alpha",
        Some(&w),
        json!({"size": 13, "indices": []}).to_string(),
    )
    .await;
    assert_eq!((s, code(&b)), (400, "no_indices".into()), "{b}");

    // One index the GET refuses (not below size, size beyond the signed
    // tree) fails the whole request with the GET's error: nothing partial.
    for (indices, size, bad) in [
        (vec![0u64, 1, 13, 2], 13u64, 13u64),
        (vec![0, 1], 14, 0),
        (vec![0, 1], 1_000_000, 0),
    ] {
        let (s, b) = post_proofs(
            &c,
            url,
            "alpha",
            Some(&w),
            json!({"size": size, "indices": indices}).to_string(),
        )
        .await;
        assert_eq!((s, code(&b)), (400, "invalid_proof_request".into()), "{b}");
        assert!(b.get("proofs").is_none(), "{b}");
        let (s, one) = get(
            &c,
            &format!("{url}/v1/logs/alpha/proof/inclusion?index={bad}&size={size}"),
            Some(&w),
        )
        .await;
        assert_eq!(s, 400);
        assert_eq!(b, serde_json::from_str::<Value>(&one).unwrap());
    }

    // Not the documented JSON: 400 invalid_json; a body over the bound: 413.
    for body in [
        "{\"size\": 13, \"indices\": [0,".to_string(),
        "not json".into(),
        json!({"size": "13", "indices": [0]}).to_string(),
        json!({"size": 13, "indices": [-1]}).to_string(),
        json!({"size": 13}).to_string(),
        json!({"size": 13, "indices": [0], "extra": 1}).to_string(),
    ] {
        let (s, b) = post_proofs(&c, url, "alpha", Some(&w), body.clone()).await;
        assert_eq!((s, code(&b)), (400, "invalid_json".into()), "{body}: {b}");
    }
    let huge = format!(
        "{{\"size\": 13, \"indices\": [0]{}}}",
        " ".repeat(tracevault_server::MAX_PROOF_BATCH_BODY_BYTES)
    );
    let (s, b) = post_proofs(&c, url, "alpha", Some(&w), huge).await;
    assert_eq!((s, code(&b)), (413, "body_too_large".into()), "{b}");

    // Other methods still get the JSON 405.
    let r = c
        .put(format!("{url}/v1/logs/alpha/proof/inclusion"))
        .bearer_auth(&w)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(code(&r.json().await.unwrap()), "method_not_allowed");
    assert_eq!(srv.terminate(), Some(0));
}

/// `?wait=checkpoint` wakes the publisher: with a publish interval of ten
/// minutes, the receipts still come back with a checkpoint, within the
/// 10 s `checkpoint_wait_ms` (without the wake-up: 503 `checkpoint_timeout`).
/// Two writers waiting at once are both answered (one publish or two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_checkpoint_publishes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[log]\nflush_interval_ms = 600000\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "alpha", "w");
    let post = |i: usize| {
        let (c, url, w) = (c.clone(), srv.url.clone(), w.clone());
        async move {
            let ev = json!({"session_id": format!("s{i}"), "kind": "output", "content": "x"});
            post_events(
                &c,
                &url,
                "alpha",
                &w,
                json!({"events": [ev]}),
                "?wait=checkpoint",
            )
            .await
        }
    };
    let ((s1, b1), (s2, b2)) = tokio::join!(post(1), post(2));
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    for b in [&b1, &b2] {
        let proof = b["proofs"][0].as_str().unwrap_or_default();
        assert!(proof.starts_with("c2sp.org/tlog-proof@v1"), "{b}");
    }
    assert_eq!(srv.terminate(), Some(0));
}

/// With one native request decoded at a time, concurrent writers take turns
/// (the decoding permit is released after sealing, before the append) and
/// every event lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_requests_take_turns_to_be_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[limits]\nmax_native_decoding = 1\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "turns", "w");
    let sends = (0..8).map(|r| {
        let (c, url, w) = (c.clone(), srv.url.clone(), w.clone());
        async move {
            let events: Vec<Value> = (0..100)
                .map(|i| json!({"session_id": format!("s{r}"), "kind": "output", "content": format!("{r}-{i}")}))
                .collect();
            post_events(&c, &url, "turns", &w, json!({"events": events}), "").await.0
        }
    });
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(wait_size(&c, &srv.url, "turns", &w, 800).await, 800);
}
