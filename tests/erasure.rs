//! Erasure and retention end to end (docs/erasure.md, SPEC section 10): an
//! admin orders the erasure of a data subject's session, an approver other
//! than the requester approves, the server erases. Afterwards the erased
//! values occur nowhere under the data directory while the other sessions'
//! do; Go's sumdb/tlog still verifies every leaf taken before and the
//! consistency from the checkpoint before; SQL, entry reads and the receipt
//! show the erasure; `verify` exits 0, and 1 after the same removal done
//! without an order. Writers, readers, approvers and self-approval are
//! refused, as is a request inside `min_retention` without the override;
//! retention erases only what is older than its setting.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

async fn send(
    c: &reqwest::Client,
    method: &str,
    url: &str,
    tok: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = match method {
        "POST" => c.post(url),
        _ => c.get(url),
    }
    .bearer_auth(tok);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Every file under `root` holding `needle`.
fn files_holding(root: &Path, needle: &str) -> Vec<String> {
    fn walk(dir: &Path, needle: &[u8], out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, needle, out);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                out.push(p.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, needle.as_bytes(), &mut out);
    out
}

/// The leaf hash of every stored row of `ns`, rebuilt from its record.
fn leaves_from_rows(data: &Path, ns: &str) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(data.join("store/ns").join(ns).join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let seg = tracevault_vault::segment::decode(std::fs::read(f).unwrap().into()).unwrap();
        for e in seg.entries {
            assert_eq!(out.len() as u64, e.idx);
            let rec = e.committed_record_bytes().unwrap();
            out.push(hex::encode(tracevault_vault::merkle::leaf_hash(&rec)));
        }
    }
    out
}

async fn sql(c: &reqwest::Client, url: &str, tok: &str, q: &str) -> Vec<Value> {
    let (s, b) = send(
        c,
        "POST",
        &format!("{url}/v1/query"),
        tok,
        Some(json!({"sql": q})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["rows"].as_array().unwrap().clone()
}

fn tv(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tracevault"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_erasure_removes_the_values_everywhere_and_every_proof_still_holds() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 50\ncompact_interval_ms = 0\n\
         [retention]\ncheck_interval_s = 1\n\
         [retention.namespaces.prod]\nmin_retention = \"1h\"\n\
         [retention.namespaces.ret]\npayload_retention = \"8s\"\n\
         [query]\nisolation = \"thread\"\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let (c, url) = (client(), srv.url.clone());
    let w = token(&data, "writer", "prod,ret", "agent");
    let admin = token(&data, "admin", "prod", "ann");
    let reader = token(&data, "reader", "prod,ret", "auditor");
    let bob = token(&data, "approver", "prod", "bob");
    let ann_approver = token(&data, "approver", "prod", "ann");
    let ret_admin = token(&data, "admin", "ret", "ret-admin");

    // Retention's first batch, written now, erased once 8 s old.
    let old: Vec<Value> = (0..3)
        .map(|i| json!({"session_id": "r", "kind": "prompt", "content": format!("OLD-ret-{i}-qx")}))
        .collect();
    let (s, _) = post_events(
        &c,
        &url,
        "ret",
        &w,
        json!({"events": old}),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200);

    // A data subject's session and another one, over several segments.
    for round in 0..3 {
        let evs: Vec<Value> = (0..4)
            .map(|i| {
                let (sid, tag) = if i % 2 == 0 {
                    ("victim", "SECRET-victim")
                } else {
                    ("other", "KEEP-other")
                };
                json!({"session_id": sid, "kind": "prompt", "actor": "agent",
                       "content": format!("{tag}-{round}-{i}-qx"),
                       "attributes": {"email": format!("{tag}-{round}-{i}@mail.qx")}})
            })
            .collect();
        let (s, r) = post_events(
            &c,
            &url,
            "prod",
            &w,
            json!({"events": evs}),
            "?wait=checkpoint",
        )
        .await;
        assert_eq!(s, 200, "{r}");
    }
    assert!(!files_holding(&data, "SECRET-victim-1-0-qx").is_empty());
    let before = c
        .get(format!("{url}/v1/logs/prod/checkpoint"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let before_file = dir.path().join("before.checkpoint");
    std::fs::write(&before_file, &before).unwrap();
    // Read before the erasure: the server now holds these segments' footers
    // (in-process queries share them); the reads after it must not use them.
    let rows = sql(
        &c,
        &url,
        &reader,
        "SELECT content FROM traces WHERE session_id = 'victim' ORDER BY idx",
    )
    .await;
    assert_eq!(rows.len(), 6);
    assert!(
        rows[0][0]
            .as_str()
            .unwrap()
            .starts_with("SECRET-victim-0-0"),
        "{rows:?}"
    );
    let leaves_before = leaves_from_rows(&data, "prod");
    assert_eq!(leaves_before.len(), 12);

    // Who may not order an erasure, and what is refused.
    let order =
        json!({"namespace": "prod", "session_id": "victim", "reason": "GDPR art. 17 request #41"});
    for (who, tok) in [("writer", &w), ("reader", &reader), ("approver", &bob)] {
        let (s, b) = send(
            &c,
            "POST",
            &format!("{url}/v1/erasures"),
            tok,
            Some(order.clone()),
        )
        .await;
        assert_eq!(s, 403, "{who}: {b}");
    }
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/erasures"),
        &ret_admin,
        Some(order.clone()),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "admin of another namespace: {b}"
    );
    let mut no_reason = order.clone();
    no_reason["reason"] = json!(" ");
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/erasures"),
        &admin,
        Some(no_reason),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("reason_required")),
        "{b}"
    );
    let mut two = order.clone();
    two["actor"] = json!("agent");
    let (s, b) = send(&c, "POST", &format!("{url}/v1/erasures"), &admin, Some(two)).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_selection")),
        "{b}"
    );
    let audit = json!({"namespace": "_audit", "session_id": "erasures", "reason": "hide it"});
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/erasures"),
        &token(&data, "admin", "*", "root"),
        Some(audit),
    )
    .await;
    assert!(s == 400 || s == 403, "_audit is never erased: {s} {b}");
    // min_retention (1h in prod): fresh entries are kept unless overridden.
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/erasures"),
        &admin,
        Some(order.clone()),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("within_min_retention")),
        "{b}"
    );
    let mut order = order;
    order["override_min_retention"] = json!(true);
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/erasures"),
        &admin,
        Some(order),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["entries"], 6);
    let id = b["id"].as_str().unwrap().to_string();

    // The requester never decides, under any role; a stranger's deny needs a reason.
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/erasures/{id}/approve"),
        &ann_approver,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("self_approval")),
        "{b}"
    );
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/erasures/{id}/approve"),
        &admin,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 403, "an admin is no approver: {b}");
    // Nor under an approver token the requester minted for the occasion.
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/tokens"),
        &admin,
        Some(json!({"role": "approver", "ns": ["prod"], "sub": "dpo-2", "ttl_s": 600})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let minted = b["token"].as_str().unwrap().to_string();
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/erasures/{id}/approve"),
        &minted,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("self_approval")),
        "{b}"
    );
    let (s, b) = send(&c, "GET", &format!("{url}/v1/erasures/{id}"), &bob, None).await;
    assert_eq!((s, b["state"].as_str()), (200, Some("pending")), "{b}");
    assert_eq!(
        b["indices"],
        json!([[0, 0], [2, 2], [4, 4], [6, 6], [8, 8], [10, 10]])
    );
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/erasures/{id}/approve"),
        &bob,
        Some(json!({"comment": "checked the request"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");

    // Performed in the background; the receipt comes with the order.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let (s, b) = send(&c, "GET", &format!("{url}/v1/erasures/{id}"), &admin, None).await;
        assert_eq!(s, 200, "{b}");
        if b["state"] == "performed" {
            break b;
        }
        assert!(Instant::now() < deadline, "not performed: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["performed"]["entries"], 6, "{status}");
    let receipt_file = dir.path().join("receipt.json");
    std::fs::write(
        &receipt_file,
        serde_json::to_vec(&status["receipt"]).unwrap(),
    )
    .unwrap();
    let key = srv.public_key();
    let (code, out, err) = tv(&[
        "erase",
        "verify-receipt",
        receipt_file.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"entries\": 6"), "{out}");
    // A receipt that claims more than was ordered does not verify.
    let mut forged = status["receipt"].clone();
    forged["indices"] = json!([[0, 11]]);
    std::fs::write(&receipt_file, serde_json::to_vec(&forged).unwrap()).unwrap();
    let (code, out, _) = tv(&[
        "erase",
        "verify-receipt",
        receipt_file.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert_eq!(code, 1, "{out}");

    // The values are nowhere under the data directory; the others are.
    for round in 0..3 {
        for i in [0, 2] {
            let v = format!("SECRET-victim-{round}-{i}");
            assert_eq!(files_holding(&data, &v), Vec::<String>::new(), "{v}");
        }
        assert!(!files_holding(&data, &format!("KEEP-other-{round}-1-qx")).is_empty());
    }
    // Reads show the erasure.
    let rows = sql(
        &c,
        &url,
        &reader,
        "SELECT content, attributes FROM traces WHERE session_id = 'victim' ORDER BY idx",
    )
    .await;
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter().all(|r| r == &json!(["[ERASED]", "[ERASED]"])),
        "{rows:?}"
    );
    let rows = sql(
        &c,
        &url,
        &reader,
        "SELECT content FROM traces WHERE session_id = 'other' ORDER BY idx",
    )
    .await;
    assert_eq!(rows[0], json!(["KEEP-other-0-1-qx"]));
    let (s, b) = send(
        &c,
        "GET",
        &format!("{url}/v1/logs/prod/entries/2"),
        &reader,
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["event"]["erased"], true, "{b}");
    assert!(
        b["event"].get("content").is_none() && b["leaf_hash"] == json!(leaves_before[2]),
        "{b}"
    );

    // An export of the session after the erasure: the bundle carries the
    // erased rows as erased, and verifies offline.
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/exports"),
        &reader,
        Some(json!({"namespace": "prod", "session_id": "victim", "reason": "audit after erasure"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let ex = format!("{url}/v1/exports/{}", b["id"].as_str().unwrap());
    let (s, b) = send(&c, "POST", &format!("{ex}/approve"), &bob, Some(json!({}))).await;
    assert_eq!(s, 200, "{b}");
    let bundle = c
        .get(format!("{ex}/bundle"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    let bundle = bundle.bytes().await.unwrap();
    assert!(!String::from_utf8_lossy(&bundle).contains("SECRET-victim"));
    let bundle_file = dir.path().join("victim.tar");
    std::fs::write(&bundle_file, &bundle).unwrap();

    // Go's sumdb/tlog: every leaf taken before the erasure is still in the
    // tree, read from the tiles, consistent with the checkpoint before.
    let leaves_after = leaves_from_rows(&data, "prod");
    assert_eq!(
        leaves_after, leaves_before,
        "records rebuild to the same leaves"
    );
    let leaves_file = dir.path().join("leaves");
    std::fs::write(&leaves_file, leaves_before.join("\n")).unwrap();
    let (_, v) = send(&c, "GET", &format!("{url}/v1/vault"), &admin, None).await;
    let vk = v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["ns"] == "prod")
        .unwrap()["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let go = Command::new(go_tlogcheck(dir.path()))
        .args(["tiles", &url, "prod", &vk, &reader])
        .arg(&leaves_file)
        .arg(&before_file)
        .output()
        .unwrap();
    assert!(
        go.status.success(),
        "{}{}",
        String::from_utf8_lossy(&go.stdout),
        String::from_utf8_lossy(&go.stderr)
    );
    let (code, out, err) = tv(&["verify-bundle", bundle_file.to_str().unwrap(), "--key", &vk]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("6 rows") && err.contains("6 erased"), "{err}");
    // Replayed from the bundle, the erased rows show as erased.
    let mut replay =
        tracevault_replay::sources::bundle::open(&bundle_file, None, Some(vk.clone()), None)
            .unwrap();
    let shown = tracevault_replay::Source::page(&mut replay, 0, 6).unwrap();
    assert_eq!(shown.len(), 6);
    assert!(
        shown
            .iter()
            .all(|e| e.content.as_deref() == Some("[ERASED]")),
        "{:?}",
        shown.iter().map(|e| &e.content).collect::<Vec<_>>()
    );

    // Retention: the first batch (older than 8 s by now) is erased, a
    // batch written now is not.
    let wait = Duration::from_secs(9).saturating_sub(started.elapsed());
    tokio::time::sleep(wait).await;
    let new: Vec<Value> = (0..3)
        .map(|i| json!({"session_id": "r", "kind": "prompt", "content": format!("NEW-ret-{i}-qx")}))
        .collect();
    let (s, _) = post_events(
        &c,
        &url,
        "ret",
        &w,
        json!({"events": new}),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = sql(
            &c,
            &url,
            &reader,
            "SELECT content FROM traces WHERE ns = 'ret' ORDER BY idx",
        )
        .await;
        let shown: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
        if shown[..3] == ["[ERASED]"; 3] {
            assert_eq!(shown[3..], ["NEW-ret-0-qx", "NEW-ret-1-qx", "NEW-ret-2-qx"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not run: {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, b) = send(
        &c,
        "GET",
        &format!("{url}/v1/erasures?state=performed"),
        &ret_admin,
        None,
    )
    .await;
    let runs = b["erasures"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{b}");
    assert_eq!(runs[0]["entries"], 3);
    assert!(
        runs[0]["requester"].is_null()
            && runs[0]["reason"].as_str().unwrap().starts_with("retention")
    );
    assert!(files_holding(&data, "OLD-ret-1-qx").is_empty());

    // verify: the erasures are under orders.
    srv.terminate();
    let d = data.to_str().unwrap();
    let (code, out, err) = verify(&["--data", d, "--key", &key]);
    assert_eq!(code, 0, "{out}{err}");
    // The same removal without an order (another entry of `other`) is a finding.
    let copy = dir.path().join("copy");
    copy_dir(&data, &copy);
    std::fs::remove_file(copy.join("lock")).ok();
    {
        let vault = tracevault_vault::Vault::open(tracevault_vault::VaultOptions {
            data_dir: copy.clone(),
            store: None,
            origin: None,
            log: tracevault_vault::LogConfig {
                flush_interval_ms: 10,
                ..Default::default()
            },
        })
        .await
        .unwrap();
        let log = vault.log("prod").await.unwrap();
        log.erase(&tracevault_vault::erasure::IndexRanges::from_sorted([3]))
            .await
            .unwrap();
        vault.shutdown(Duration::from_secs(10)).await;
    }
    let (code, out, err) = verify(&["--data", copy.to_str().unwrap(), "--key", &key]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("entry 3 has no content, attributes or salt"),
        "{out}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
