//! Exports under approval end to end: a reader requests a session export
//! with a reason; self-approval, approval by a writer or by an approver of
//! another namespace, download before approval and a second download are
//! refused; an approved bundle verifies offline with only the verifier key;
//! the whole history is queryable in `_audit` and `verify` covers it.

mod common;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_export_is_approved_downloaded_once_and_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[log]\nflush_interval_ms = 50\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let url = &srv.url;
    let w = token(&data, "writer", "prod", "agent");
    let events: Vec<Value> = (0..6)
        .map(|i| {
            json!({"session_id": if i < 4 { "s1" } else { "s2" }, "kind": "prompt",
                        "content": format!("step {i} for jane.doe@example.com")})
        })
        .collect();
    let (s, r) = post_events(
        &c,
        url,
        "prod",
        &w,
        json!({"events": events}),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let alice = token(&data, "reader", "prod", "alice");
    let bob = token(&data, "approver", "prod", "bob");
    let alice_approver = token(&data, "approver", "prod", "alice");
    let dev_approver = token(&data, "approver", "dev", "carol");

    // A reason is mandatory; the namespace must be the reader's.
    let req =
        |reason: &str, ns: &str| json!({"namespace": ns, "session_id": "s1", "reason": reason});
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/exports"),
        &alice,
        Some(req(" ", "prod")),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("reason_required")),
        "{b}"
    );
    let (s, _) = send(
        &c,
        "POST",
        &format!("{url}/v1/exports"),
        &alice,
        Some(req("x", "dev")),
    )
    .await;
    assert_eq!(s, 403);
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/exports"),
        &w,
        Some(req("x", "prod")),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/exports"),
        &alice,
        Some(req("incident 42", "prod")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["rows"], 4, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let ex = format!("{url}/v1/exports/{id}");

    // Whatever indices a selection's SQL makes up, only rows in the
    // requester's window are exported.
    let old = reader_token_window(
        &data,
        "prod",
        "eve",
        "2020-01-01T00:00:00Z",
        "2021-01-01T00:00:00Z",
    );
    let forged = json!({"namespace": "prod", "reason": "probe",
        "sql": "SELECT arrow_cast(column1, 'UInt64') AS idx FROM (VALUES (0), (1), (2)) --"});
    let (s, b) = send(&c, "POST", &format!("{url}/v1/exports"), &old, Some(forged)).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("empty_selection")),
        "{b}"
    );

    // The approver's inbox.
    let (s, b) = send(
        &c,
        "GET",
        &format!("{url}/v1/exports?state=pending"),
        &bob,
        None,
    )
    .await;
    assert_eq!(
        (s, b["exports"][0]["id"].as_str()),
        (200, Some(id.as_str())),
        "{b}"
    );
    // Refusals.
    let (s, b) = send(&c, "GET", &format!("{ex}/bundle"), &alice, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("not_approved")),
        "{b}"
    );
    let (s, b) = send(&c, "POST", &format!("{ex}/approve"), &alice_approver, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("self_approval")),
        "{b}"
    );
    // Nor under a subject that differs only by case or an invisible character.
    for variant in ["Alice", "ALICE"] {
        let tok = token(&data, "approver", "prod", variant);
        let (s, b) = send(&c, "POST", &format!("{ex}/approve"), &tok, None).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (403, Some("self_approval")),
            "{variant}: {b}"
        );
    }
    let (s, _) = send(&c, "POST", &format!("{ex}/approve"), &w, None).await;
    assert_eq!(s, 403);
    let (s, _) = send(&c, "POST", &format!("{ex}/approve"), &alice, None).await;
    assert_eq!(s, 403);
    let (s, b) = send(&c, "POST", &format!("{ex}/approve"), &dev_approver, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("wrong_namespace")),
        "{b}"
    );
    // Approved once; a second approval by the same identity is refused.
    let (s, b) = send(
        &c,
        "POST",
        &format!("{ex}/approve"),
        &bob,
        Some(json!({"comment": "ok"})),
    )
    .await;
    assert_eq!((s, b["state"].as_str()), (200, Some("approved")), "{b}");
    let (s, _) = send(&c, "POST", &format!("{ex}/approve"), &bob, None).await;
    assert_eq!(s, 409);

    // The requester under a token whose window no longer covers the
    // request's: refused (narrower access now is never read past).
    let narrowed = reader_token_window(
        &data,
        "prod",
        "alice",
        "2099-01-01T00:00:00Z",
        "2100-01-01T00:00:00Z",
    );
    let (s, b) = send(&c, "GET", &format!("{ex}/bundle"), &narrowed, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("window_changed")),
        "{b}"
    );
    // Only the requester downloads, once.
    let (s, _) = send(
        &c,
        "GET",
        &format!("{ex}/bundle"),
        &token(&data, "reader", "prod", "mallory"),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let r = c
        .get(format!("{ex}/bundle"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let declared = r.content_length();
    let bytes = r.bytes().await.unwrap();
    assert_eq!(
        declared,
        Some(bytes.len() as u64),
        "streamed with its length"
    );
    assert!(!String::from_utf8_lossy(&bytes).contains("jane.doe@example.com"));
    // Assembled in an unnamed file: nothing is left behind.
    let left: Vec<_> = std::fs::read_dir(data.join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let (s, b) = send(&c, "GET", &format!("{ex}/bundle"), &alice, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("already_downloaded")),
        "{b}"
    );

    // Offline: only the file and the verifier key.
    let (_, vault) = get(&c, &format!("{url}/v1/vault"), Some(&alice)).await;
    let vault: Value = serde_json::from_str(&vault).unwrap();
    let vk = vault["namespaces"][0]["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let file = dir.path().join("export.tar");
    std::fs::write(&file, &bytes).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["verify-bundle", file.to_str().unwrap(), "--key", &vk])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("4 rows") && err.contains("4 bound"), "{err}");
    // The request and its approval come with their proofs in `_audit`.
    assert!(
        err.contains("history: 2 steps proven in _audit, 2 bound"),
        "{err}"
    );

    // A denied request ends there; this time through `tracevault export`.
    let cli = |tok: &str, args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("export")
            .args(args)
            .args(["--server", url.as_str(), "--token", tok])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = cli(
        &alice,
        &[
            "request",
            "--namespace",
            "prod",
            "--session",
            "s2",
            "--reason",
            "again",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(made["rows"], 2, "{made}");
    let id2 = made["id"].as_str().unwrap().to_string();
    let (code, out, err) = cli(&bob, &["deny", &id2, "--comment", "no"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"state\":\"denied\""), "{out}");
    let dan = token(&data, "approver", "prod", "dan");
    let (code, _, err) = cli(&dan, &["approve", &id2]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not_pending"), "{err}");
    let (code, _, err) = cli(
        &alice,
        &[
            "download",
            &id2,
            "-o",
            dir.path().join("x.tar").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("denied"), "{err}");
    let (code, out, _) = cli(&bob, &["list", "--state", "denied"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&id2), "{out}");

    // The history is in _audit, and survives a restart.
    assert_eq!(srv.terminate(), Some(0));
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let (s, b) = send(
        &c,
        "GET",
        &format!("{}/v1/exports/{id}", srv.url),
        &bob,
        None,
    )
    .await;
    assert_eq!((s, b["state"].as_str()), (200, Some("downloaded")), "{b}");
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let (s, b) = send(
        &c,
        "POST",
        &format!("{}/v1/query", srv.url),
        admin.trim(),
        Some(json!({"sql": "SELECT name FROM traces WHERE ns = '_audit' AND session_id = 'exports' ORDER BY idx"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["rows"],
        json!([
            ["export_requested"],
            ["export_approved"],
            ["export_downloaded"],
            ["export_requested"],
            ["export_denied"]
        ]),
        "{b}"
    );
    assert_eq!(srv.terminate(), Some(0));
    let (code, out, err) = verify(&["--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_requests_are_refused_and_their_end_is_recorded_in_audit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 50\n[exports]\nrequest_ttl_s = 2\ndownload_window_s = 2\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let url = &srv.url;
    let w = token(&data, "writer", "prod", "agent");
    let (s, r) = post_events(
        &c,
        url,
        "prod",
        &w,
        json!({"events": [{"session_id": "s1", "kind": "prompt", "content": "hi"}]}),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let alice = token(&data, "reader", "prod", "alice");
    let bob = token(&data, "approver", "prod", "bob");
    let ask = |reason: &str| json!({"namespace": "prod", "session_id": "s1", "reason": reason});
    let mut ids = Vec::new();
    for reason in ["never decided", "never downloaded"] {
        let (s, b) = send(
            &c,
            "POST",
            &format!("{url}/v1/exports"),
            &alice,
            Some(ask(reason)),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    // Reasons and comments are bounded.
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/exports"),
        &alice,
        Some(ask(&"x".repeat(5000))),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("reason_too_long")),
        "{b}"
    );
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/exports/{}/approve", ids[1]),
        &bob,
        Some(json!({"comment": "y".repeat(5000)})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("comment_too_long")),
        "{b}"
    );
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/exports/{}/approve", ids[1]),
        &bob,
        None,
    )
    .await;
    assert_eq!((s, b["state"].as_str()), (200, Some("approved")), "{b}");

    // Both run out: the pending one's TTL, the approved one's window.
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let history = |srv_url: String| {
        let (c, admin) = (c.clone(), admin.trim().to_string());
        async move {
            let (s, b) = send(
                &c,
                "POST",
                &format!("{srv_url}/v1/query"),
                &admin,
                Some(json!({"sql": "SELECT name FROM traces WHERE ns = '_audit' AND session_id = 'exports' ORDER BY idx"})),
            )
            .await;
            assert_eq!(s, 200, "{b}");
            b["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r[0].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let names = loop {
        let names = history(url.clone()).await;
        if names.iter().filter(|n| *n == "export_expired").count() == 2
            || std::time::Instant::now() > deadline
        {
            break names;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(
        names,
        [
            "export_requested",
            "export_requested",
            "export_approved",
            "export_expired",
            "export_expired"
        ],
    );
    let (s, b) = send(
        &c,
        "POST",
        &format!("{url}/v1/exports/{}/approve", ids[0]),
        &bob,
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("not_pending")),
        "{b}"
    );
    let (s, b) = send(
        &c,
        "GET",
        &format!("{url}/v1/exports/{}/bundle", ids[1]),
        &alice,
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("expired")),
        "{b}"
    );
    let (s, b) = send(
        &c,
        "GET",
        &format!("{url}/v1/exports?state=expired"),
        &bob,
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["exports"].as_array().unwrap().len(), 2, "{b}");
    assert!(b["exports"][0]["expired_at"].is_i64(), "{b}");
    assert!(b["next"].is_null(), "one page holds both: {b}");
    // Paged: one per page, in id order, the second page after the first's `next`.
    let all: Vec<Value> = b["exports"].as_array().unwrap().clone();
    let (s, p1) = send(
        &c,
        "GET",
        &format!("{url}/v1/exports?state=expired&limit=1"),
        &bob,
        None,
    )
    .await;
    assert_eq!(s, 200, "{p1}");
    assert_eq!(p1["exports"].as_array().unwrap(), &all[..1], "{p1}");
    let next = p1["next"].as_str().unwrap();
    assert_eq!(Some(next), all[0]["id"].as_str());
    let (s, p2) = send(
        &c,
        "GET",
        &format!("{url}/v1/exports?state=expired&limit=1&after={next}"),
        &bob,
        None,
    )
    .await;
    assert_eq!(s, 200, "{p2}");
    assert_eq!(p2["exports"].as_array().unwrap(), &all[1..], "{p2}");
    assert!(p2["next"].is_null(), "{p2}");
    for (q, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=1001", "invalid_limit"),
        ("limit=x", "invalid_query_string"),
        ("page=2", "invalid_query_string"),
        ("state=lost", "invalid_state"),
    ] {
        let (s, e) = send(&c, "GET", &format!("{url}/v1/exports?{q}"), &bob, None).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (400, Some(code)),
            "{q}: {e}"
        );
    }

    // After a restart: still expired, nothing recorded twice, store intact.
    assert_eq!(srv.terminate(), Some(0));
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let (s, b) = send(
        &c,
        "GET",
        &format!("{}/v1/exports/{}", srv.url, ids[1]),
        &alice,
        None,
    )
    .await;
    assert_eq!((s, b["state"].as_str()), (200, Some("expired")), "{b}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(history(srv.url.clone()).await.len(), 5);
    assert_eq!(srv.terminate(), Some(0));
    let (code, out, err) = verify(&["--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A hostile server cannot make the CLI hold more than the client's bound:
/// a gzip answer of a few hundred KB that inflates to 600 MiB is refused at
/// `MAX_ANSWER_BYTES` (512 MiB), with a clear error, not read to the end.
#[test]
fn a_hostile_servers_answer_is_cut_at_the_clients_bound() {
    let (mut child, url) = stand_in_server(&["inflating"]);
    let out = std::process::Command::new(BIN)
        .args(["export", "status", "x", "--server", &url, "--token", "t"])
        .output()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("exceeds 536870912 bytes"), "{err}");
}
