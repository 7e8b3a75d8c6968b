//! The vault's promises against hostile users, each attack run against a
//! real server on loopback (issue 12): a revoked writer's open stream, a
//! writer trying to suppress another's event, a reader trying to take the
//! server down with SQL, unauthenticated and slow traffic, framework errors
//! that must still be the JSON shape, and a revoked bootstrap admin token.
//! One server serves every case (a restart at the end), and after each
//! attack it must still answer `/healthz` and acknowledge appends.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use serde_json::{Value, json};

/// The server still answers health checks and acknowledges an append.
async fn still_serving(c: &reqwest::Client, url: &str, writer: &str) {
    let (s, _) = get(c, &format!("{url}/healthz"), None).await;
    assert_eq!(s, 200, "healthz");
    let (s, b) = post_events(
        c,
        url,
        "alpha",
        writer,
        json!({"events": [{"session_id": "canary", "kind": "annotation", "content": "alive"}]}),
        "",
    )
    .await;
    assert_eq!(s, 200, "append after an attack: {b}");
}

/// Sends raw bytes on a new connection; returns what the server answered
/// before closing (or within `wait`).
fn raw(addr: &str, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_fail_closed_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 50\n\
         [limits]\ndenied_audit_interval_s = 1\nbody_read_timeout_s = 2\n",
    );
    let args = ["--config", cfg.to_str().unwrap()];
    let srv = Server::start(&data, &args);
    let url = srv.url.clone();
    let addr = url.trim_start_matches("http://").to_string();
    let c = client();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let admin = admin.trim().to_string();
    let canary = token(&data, "writer", "alpha", "canary");
    let reader = token(&data, "reader", "alpha", "auditor");

    // 1. A revoked writer's open stream ends within a second, idle or not.
    let w = token(&data, "writer", "alpha", "streamer");
    let jti = {
        let (_, b) = get(&c, &format!("{url}/v1/vault"), Some(&w)).await;
        assert!(b.contains("origin"), "{b}");
        let payload = w.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        claims["jti"].as_str().unwrap().to_string()
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|i| (i, rx))
    }));
    // A client of its own: a connection whose request body outlives its
    // response is closed by the server, and must not go back to the pool.
    let resp = client()
        .post(format!("{url}/v1/logs/alpha/sessions/s-rev/stream"))
        .bearer_auth(&w)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut lines = Lines::of(resp);
    tx.send(Ok(Bytes::from(
        "{\"kind\":\"output\",\"content\":\"before\"}\n",
    )))
    .await
    .unwrap();
    assert_eq!(lines.next().await.unwrap()["line"], 1);
    let (s, b) = post_json(
        &c,
        &format!("{url}/v1/tokens/revoke"),
        &admin,
        json!({"jti": jti, "reason": "compromised"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let revoked_at = Instant::now();
    // Nothing more is sent: the stream still ends, with the reason.
    let err = lines.next().await.unwrap();
    assert_eq!(err["error"]["code"], "token_revoked", "{err}");
    let summary = lines.next().await.unwrap();
    assert_eq!(summary["summary"]["end"], "token_revoked", "{summary}");
    assert_eq!(summary["summary"]["committed"], 1, "{summary}");
    assert!(
        revoked_at.elapsed() < Duration::from_secs(5),
        "the stream outlived its revocation by {:?}",
        revoked_at.elapsed()
    );
    drop(tx);
    still_serving(&c, &url, &canary).await;

    // 2. No writer can suppress another's event through its event_id.
    let a = token(&data, "writer", "alpha", "writer-a");
    let b_tok = token(&data, "writer", "alpha", "writer-b");
    let ev = |content: &str| {
        json!({"events": [{"session_id": "shared", "kind": "tool_call", "event_id": "call-1",
            "content": content}]})
    };
    let (s, ra) = post_events(&c, &url, "alpha", &a, ev("A's squatting copy"), "").await;
    assert_eq!(s, 200, "{ra}");
    let (s, rb) = post_events(&c, &url, "alpha", &b_tok, ev("B's real call"), "").await;
    assert_eq!(s, 200, "{rb}");
    assert!(rb["receipts"][0].get("duplicate").is_none(), "{rb}");
    assert_ne!(rb["receipts"][0]["index"], ra["receipts"][0]["index"]);
    // B's retry is a duplicate of B's own event...
    let (s, retry) = post_events(&c, &url, "alpha", &b_tok, ev("B's real call"), "").await;
    assert_eq!(s, 200);
    assert_eq!(retry["receipts"][0]["duplicate"], true, "{retry}");
    assert_eq!(retry["receipts"][0]["index"], rb["receipts"][0]["index"]);
    // ...and a different event under the same key is a conflict: the whole
    // request is refused, its other event included.
    let before = wait_size(&c, &url, "alpha", &admin, 0).await;
    let mixed = json!({"events": [
        {"session_id": "shared", "kind": "output", "content": "innocent"},
        {"session_id": "shared", "kind": "tool_call", "event_id": "call-1", "content": "forged"}]});
    let (s, body) = post_events(&c, &url, "alpha", &b_tok, mixed, "").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("event_id_conflict")),
        "{body}"
    );
    let (_, q) = post_json(
        &c,
        &format!("{url}/v1/query"),
        &reader,
        json!({"sql": "SELECT count(*) FROM traces WHERE content IN ('innocent', 'forged')"}),
    )
    .await;
    assert_eq!(
        q["rows"][0][0], 0,
        "nothing of a refused request is stored: {q}"
    );
    assert!(wait_size(&c, &url, "alpha", &admin, before).await >= before);

    // 3. No reader can take the server down with SQL: allocation bombs,
    // table functions, recursion, and functions off the allowlist fail alone.
    let bombs = [
        "SELECT length(repeat(arrow_cast('ab','LargeUtf8'), 100000000000))",
        "SELECT lpad(content, 2147483647, '€') FROM traces",
        "SELECT range(0, 10000000000)",
        "SELECT generate_series(1, 10000000000)",
        "SELECT array_repeat(content, 1000000000) FROM traces",
        "SELECT * FROM range(0, 10000000000)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        "SELECT content || content FROM traces",
        "SELECT replace(repeat('a', 1000000), '', repeat('b', 1000)) ",
        "SELECT version()",
    ];
    for sql in bombs {
        let (s, body) =
            post_json(&c, &format!("{url}/v1/query"), &reader, json!({"sql": sql})).await;
        assert!(
            s == 400 || s == 413,
            "{sql}: expected a JSON 4xx, got {s} {body}"
        );
        assert!(body["error"]["code"].is_string(), "{sql}: {body}");
    }
    // A chain of small amplifications stops at the per-call bound.
    // (x0 = content, x1 = concat(x0, x0), ...: 2^40 times the content.)
    let mut chain = "WITH x0 AS (SELECT content AS x FROM traces)".to_string();
    for i in 1..=40 {
        chain.push_str(&format!(
            ", x{i} AS (SELECT concat(x, x) AS x FROM x{})",
            i - 1
        ));
    }
    chain.push_str(" SELECT length(x) FROM x40");
    let (s, body) = post_json(
        &c,
        &format!("{url}/v1/query"),
        &reader,
        json!({"sql": chain}),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    // Ordinary SQL still works, bounded functions included.
    let (s, body) = post_json(
        &c,
        &format!("{url}/v1/query"),
        &reader,
        json!({"sql": "SELECT count(*), max(length(concat(session_id, repeat('x', 3)))), \
                       sum(cardinality(range(0, 3))) FROM traces"}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    still_serving(&c, &url, &canary).await;

    // 4. Unauthenticated traffic costs nothing lasting: the token is checked
    // before any byte of a body, a flood adds a bounded number of _audit
    // entries, and a slow body is cut off.
    let answer = raw(
        &addr,
        b"POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"sql\":",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("missing_token"), "{answer}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let audit_before = wait_size(&c, &url, "_audit", &admin, 0).await;
    let started = Instant::now();
    let flood = 500;
    let mut tasks = Vec::new();
    for i in 0..flood {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let tok = (i % 2 == 0).then_some("not.a.token");
            get(&c, &format!("{url}/v1/vault"), tok).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let audit_after = wait_size(&c, &url, "_audit", &admin, audit_before + 1).await;
    let bound = elapsed.as_secs() + 4;
    assert!(
        audit_after > audit_before && audit_after - audit_before <= bound,
        "{flood} denied requests in {elapsed:?} grew _audit from {audit_before} to {audit_after} (bound {bound})"
    );
    // A slow body (one byte a second) is answered 408 within the read timeout.
    let started = Instant::now();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..30 {
        let _ = s.write_all(b" ");
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("request_timeout"), "{got}");
    assert!(started.elapsed() < Duration::from_secs(15));

    // A writer sending to a namespace its token does not cover is refused
    // on its headers: the answer comes with none of the announced megabyte
    // sent (the server does not wait for, or hold, a body it will refuse).
    for (path, extra) in [
        ("/v1/logs/beta/events", ""),
        ("/otlp/v1/traces", "x-tracevault-namespace: beta\r\n"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {canary}\r\n\
             Content-Type: application/json\r\n{extra}Content-Length: 1000000\r\n\r\n"
        );
        let got = raw(&addr, head.as_bytes(), Duration::from_secs(5));
        assert!(got.starts_with("HTTP/1.1 403"), "{path}: {got:?}");
        assert!(
            got.contains("does not cover namespace beta"),
            "{path}: {got}"
        );
    }

    // 5. Every error is the JSON shape, the framework's own included.
    let approver = token(&data, "approver", "alpha", "boss");
    let r = c
        .post(format!("{url}/v1/exports/nope/approve"))
        .bearer_auth(&approver)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    let r = c
        .post(format!("{url}/v1/exports/nope/approve"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "authenticated before the content type");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_token");
    still_serving(&c, &url, &canary).await;

    // 6. A revoked bootstrap admin token is replaced at the next start.
    let payload = admin.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let (s, b) = post_json(
        &c,
        &format!("{url}/v1/tokens/revoke"),
        &admin,
        json!({"jti": claims["jti"], "reason": "leaked"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        get(&c, &format!("{url}/v1/vault"), Some(&admin)).await.0,
        401
    );
    assert_eq!(srv.terminate(), Some(0));
    let srv = Server::start(&data, &args);
    let fresh = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert_ne!(fresh.trim(), admin);
    assert_eq!(
        get(&c, &format!("{}/v1/vault", srv.url), Some(fresh.trim()))
            .await
            .0,
        200
    );
    assert_eq!(srv.terminate(), Some(0));
    let (code, out, err) = verify(&["--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Even past the function guard (here set to allow 4 GiB per call), a query
/// that exhausts memory kills only its own worker process: the query fails
/// with a JSON error, the server keeps answering and acknowledging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_exhausts_memory_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[query]\nworker_memory_mb = 150\nmax_call_bytes = 4294967296\nmemory_mb = 4096\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let url = srv.url.clone();
    let c = client();
    let writer = token(&data, "writer", "alpha", "w");
    let reader = token(&data, "reader", "alpha", "r");
    still_serving(&c, &url, &writer).await;
    let (s, body) = post_json(
        &c,
        &format!("{url}/v1/query"),
        &reader,
        json!({"sql": "SELECT length(repeat(content, 20000000)) FROM traces"}),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["code"], "query_failed", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("worker process ended"),
        "{body}"
    );
    still_serving(&c, &url, &writer).await;
    // And ordinary queries go on working.
    let count_all = || async {
        let (s, body) = post_json(
            &c,
            &format!("{url}/v1/query"),
            &reader,
            json!({"sql": "SELECT count(*) FROM traces"}),
        )
        .await;
        assert_eq!((s, body["rows"][0][0].as_u64()), (200, Some(2)), "{body}");
    };
    count_all().await;
    // A worker is kept started for the next query; one that died while
    // idle (here killed) is replaced, and the query does not notice.
    let spares = settled_workers(srv.child.id());
    assert_eq!(spares.len(), 1, "one idle worker: {spares:?}");
    let killed = std::process::Command::new("kill")
        .args(["-9", &spares[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(100));
    count_all().await;
    let after = settled_workers(srv.child.id());
    assert!(
        after.len() == 1 && after != spares,
        "a new idle worker: {after:?}"
    );
    assert_eq!(srv.terminate(), Some(0));
}

/// [`idle_workers`] once the workers that answered have exited: each is
/// reaped after its answer is taken, and may still be unmapping itself when
/// the response arrives (up to two seconds).
fn settled_workers(server: u32) -> Vec<u32> {
    let mut seen = idle_workers(server);
    for _ in 0..40 {
        if seen.len() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        seen = idle_workers(server);
    }
    seen
}

/// Live `query-worker` children of `server` (reaped ones are gone from
/// /proc; a killed one not yet reaped is a zombie and is left out).
fn idle_workers(server: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if rest.len() > 1
            && rest[0] != "Z"
            && rest[1] == server.to_string()
            && String::from_utf8_lossy(&cmd).contains("query-worker")
        {
            out.push(pid);
        }
    }
    out
}

/// A writer that keeps uploads open (slowly, or never finishing them) holds
/// at most its share of the write slots: the other writers still write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_writer_cannot_hold_every_write_slot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[limits]\nmax_inflight_writes = 4\nmax_inflight_writes_per_token = 2\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let addr = srv.url.trim_start_matches("http://").to_string();
    let c = client();
    let hog = token(&data, "writer", "alpha", "hog");
    let other = token(&data, "writer", "alpha", "other");
    // Two uploads that announce 100 bytes and send none.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "POST /v1/logs/alpha/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {hog}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let one = json!({"events": [{"session_id": "s", "kind": "output", "content": "x"}]});
    let (s, b) = post_events(&c, &srv.url, "alpha", &hog, one.clone(), "").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("overloaded")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this token"),
        "{b}"
    );
    let (s, b) = post_events(&c, &srv.url, "alpha", &other, one.clone(), "").await;
    assert_eq!(s, 200, "{b}");
    // Once the hog's uploads are gone, it writes again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, b) = post_events(&c, &srv.url, "alpha", &hog, one, "").await;
    assert_eq!(s, 200, "{b}");
}

/// `write_timeout_s` bounds the upload, never the answer: a write whose body
/// came in time is answered for what happened to it (here the witness it
/// waits on never answers, so `503 checkpoint_timeout` after the append),
/// not `408`, which a client would take as "not stored" and send again; and
/// a body that does not come in time is cut off with `408` before anything
/// of it is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_timeout_never_follows_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A witness that takes connections and never answers: `?wait=checkpoint`
    // then waits its whole `checkpoint_wait_ms`, longer than the write
    // deadline.
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stall_url = format!("http://{}/witness", stall.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = stall.accept().await {
            held.push(sock);
        }
    });
    let stall_key = tracevault_vault::cosignature::Cosigner::of(
        "witness.test/stall",
        &ed25519_dalek::SigningKey::from_bytes(&[6; 32]),
    )
    .verifier_key();
    let cfg = config(
        dir.path(),
        &format!(
            "[log]\nflush_interval_ms = 50\n[limits]\nwrite_timeout_s = 2\ncheckpoint_wait_ms = 3500\n[witnesses]\nthreshold = 1\n[[witnesses.witness]]\nurl = \"{stall_url}\"\nkey = \"{stall_key}\"\n"
        ),
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let addr = srv.url.trim_start_matches("http://").to_string();
    let c = client();
    let w = token(&data, "writer", "alpha", "w");
    let event = |id: &str| json!({"events": [{"session_id": "s", "kind": "output", "content": id, "event_id": id}]});

    let started = Instant::now();
    let (s, b) = post_events(
        &c,
        &srv.url,
        "alpha",
        &w,
        event("in-time"),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("checkpoint_timeout")),
        "{b}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(3400),
        "{:?}",
        started.elapsed()
    );
    // It was stored, once: the same event again is a duplicate.
    let (s, b) = post_events(&c, &srv.url, "alpha", &w, event("in-time"), "").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["receipts"][0]["duplicate"], true, "{b}");

    // A body that stops short of its announced length: 408 at the deadline,
    // and nothing of it appended.
    let started = Instant::now();
    let part = event("too-slow").to_string();
    let answer = raw(
        &addr,
        format!(
            "POST /v1/logs/alpha/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {w}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{part}",
            part.len() + 10
        )
        .as_bytes(),
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("nothing was appended"), "{answer}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    let (s, b) = post_events(&c, &srv.url, "alpha", &w, event("too-slow"), "").await;
    assert_eq!(s, 200, "{b}");
    assert!(b["receipts"][0].get("duplicate").is_none(), "{b}");
    assert_eq!(srv.terminate(), Some(0));
}

/// The routes with small bodies (queries, exports, erasures, approvals,
/// batch proofs) hold little for slow or oversized senders: at most
/// `max_body_reads` bodies are read at once (503 beyond, never a queue of
/// buffers), each within its route's limit (413 past it, not past
/// `max_body_bytes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_large_bodies_cannot_fill_the_servers_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[limits]\nmax_body_reads = 2\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let addr = srv.url.trim_start_matches("http://").to_string();
    let c = client();
    let reader = token(&data, "reader", "alpha", "r");
    let writer = token(&data, "writer", "alpha", "w");
    let query = json!({"sql": "SELECT count(*) FROM traces"});
    // Two bodies announced and never sent take both reads.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "POST /v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, b) = post_json(&c, &format!("{}/v1/query", srv.url), &reader, query.clone()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("overloaded")),
        "{b}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, b) = post_json(&c, &format!("{}/v1/query", srv.url), &reader, query).await;
    assert_eq!(s, 200, "{b}");
    // A query body past max_request_body_bytes (1 MiB), and a batch of
    // proofs past its own 64 KiB, are refused when they pass the limit.
    let big = json!({"sql": format!("SELECT 1 -- {}", "x".repeat(1 << 20))});
    let (s, b) = post_json(&c, &format!("{}/v1/query", srv.url), &reader, big).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("body_too_large")),
        "{b}"
    );
    let many = json!({"indices": vec![0; 40_000]});
    let (s, b) = post_json(
        &c,
        &format!("{}/v1/logs/alpha/proof/inclusion", srv.url),
        &writer,
        many,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("body_too_large")),
        "{b}"
    );
    assert_eq!(srv.terminate(), Some(0));
}

/// Spill files hold rows (values an erasure may later remove from the
/// store): queries spill only under `<data>/spill`, a worker's directory is
/// removed once the worker is gone however it ended (here: killed while it
/// spilled), and what an earlier run left there is removed at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_files_live_under_the_data_dir_and_go_with_their_worker() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let leftover = data.join("spill/w-4000000/datafusion-x");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("spill.arrow"), "rows of a killed run").unwrap();
    let cfg = config(
        dir.path(),
        "[query]\nmemory_mb = 4\ntimeout_s = 60\nthreads = 1\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    assert!(
        !data.join("spill/w-4000000").exists(),
        "an earlier run's spill files must be removed at start"
    );
    let c = client();
    let reader = token(&data, "reader", "alpha", "auditor");
    let writer = token(&data, "writer", "alpha", "w");
    append_numbered(&c, &srv.url, "alpha", &writer, 300, |i| format!("{i:04}")).await;
    // 27M distinct keys grouped in 4 MiB of memory: the aggregate spills.
    let spilling = spawn_sql(
        &c,
        &srv.url,
        &reader,
        "SELECT count(*) FROM (SELECT concat(a.content, b.content, c.content) AS k, count(*) \
         FROM traces a, traces b, traces c GROUP BY k) g",
    );
    // Wait for a spill file in a worker's own directory.
    let spill = data.join("spill");
    let mut worker = None;
    for _ in 0..600 {
        for w in std::fs::read_dir(&spill).unwrap().flatten() {
            let files = walk_files(&w.path());
            if !files.is_empty() {
                worker = Some(w.path());
            }
        }
        if worker.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let worker = worker.expect("the query spilled under <data>/spill");
    let pid: u32 = worker.file_name().unwrap().to_str().unwrap()["w-".len()..]
        .parse()
        .unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (s, b) = spilling.await.unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("query_failed")),
        "a killed worker fails its query alone: {b}"
    );
    for _ in 0..100 {
        if !worker.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        !worker.exists(),
        "the killed worker's spill files are removed: {:?}",
        walk_files(&worker)
    );
    assert_eq!(srv.terminate(), Some(0));
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A reader that sends queries and never reads the answers holds at most
/// its query slots, and only until it has read nothing for
/// `answer_stall_timeout_s`: the answer keeps its slot until read (other
/// queries get `503 busy` meanwhile, where each unread answer used to stay
/// in memory with its slot free: 3 GB for 50), then it is dropped and the
/// connection closed short of its `Content-Length`. A client that reads
/// slowly but steadily gets all of it, however long that takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_answers_hold_their_slot_only_until_the_client_stalls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[query]\nmax_concurrent = 1\nanswer_stall_timeout_s = 2\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let slow = token(&data, "reader", "alpha", "slow");
    let other = token(&data, "reader", "alpha", "other");
    let sql_text = r#"{"sql": "SELECT repeat('x', 40000000) AS a"}"#;
    let addr = srv.url.trim_start_matches("http://").to_string();
    let mut sock = TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "POST /v1/query HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {slow}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{sql_text}",
        sql_text.len()
    )
    .unwrap();
    // The answer is ready once its head arrives; then stop reading.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        sock.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let announced: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .expect("the answer's length is announced")
        .trim()
        .parse()
        .unwrap();
    assert!(announced > 40_000_000, "{announced}");
    let (s, b) = sql(&c, &srv.url, &other, "SELECT 1 AS one").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("busy")),
        "an unread answer holds its slot: {b}"
    );
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let (s, b) = sql(&c, &srv.url, &other, "SELECT 1 AS one").await;
    assert_eq!((s, b["rows"].clone()), (200, json!([[1]])), "{b}");
    // The connection was closed: what it still delivers (the kernel's
    // buffers) ends short of the announced length.
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    assert!(
        rest.len() < announced,
        "the expired answer is cut: {} of {announced} bytes",
        rest.len()
    );
    // A steady reader, up to 10 MB a second over four seconds (two stall timeouts),
    // gets the whole answer.
    let mut sock = TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "POST /v1/query HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {other}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{sql_text}",
        sql_text.len()
    )
    .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1_000_000];
    loop {
        let n = sock.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        got > announced,
        "all of it, with its head: {got} of {announced}"
    );
    assert_eq!(srv.terminate(), Some(0));
}

/// Query workers run the server's own image, not whatever file is at its
/// path now: after an upgrade in place (the file replaced while the old
/// server runs) queries went to a worker of another build, which refused
/// them (another protocol) or could mask by other rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_run_the_servers_own_image_after_its_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let exe = dir.path().join("tracevault-copy");
    std::fs::copy(BIN, &exe).unwrap();
    let srv = Server::spawn_exe(&exe, &serve_args(&data, std::iter::empty()), &[], &data).unwrap();
    let c = client();
    let reader = token(&data, "reader", "alpha", "r");
    let (s, b) = sql(&c, &srv.url, &reader, "SELECT 1 AS one").await;
    assert_eq!((s, b["rows"].clone()), (200, json!([[1]])), "{b}");
    // An upgrade in place: a new file renamed over the old path.
    let next = dir.path().join("next");
    std::fs::write(&next, "#!/bin/sh\necho 'another build' >&2\nexit 7\n").unwrap();
    std::fs::set_permissions(&next, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&next, &exe).unwrap();
    // The idle spare (started from the old file) is replaced on the next
    // query: kill it so that query starts a worker of its own.
    for pid in settled_workers(srv.child.id()) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..2 {
        let (s, b) = sql(&c, &srv.url, &reader, "SELECT 2 AS two").await;
        assert_eq!((s, b["rows"].clone()), (200, json!([[2]])), "{b}");
    }
    assert_eq!(srv.terminate(), Some(0));
}

/// Every query, entry read and export request adds an entry to `_audit`,
/// which is never erased: a reader looping on queries (64 KiB of SQL each)
/// could grow it without end. Reads are rate-limited per token, a query
/// counting one more per 4 KiB of SQL; other tokens are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_cannot_grow_the_access_log_at_will() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[limits]\nreader_requests_per_s = 1\nreader_burst_requests = 4\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let loud = token(&data, "reader", "alpha", "loud");
    let quiet = token(&data, "reader", "alpha", "quiet");
    // The burst of 4 (a fifth may pass on what refilled meanwhile).
    let mut passed = 0;
    let r = loop {
        let r = c
            .post(format!("{}/v1/query", srv.url))
            .bearer_auth(&loud)
            .json(&json!({"sql": "SELECT 1 AS one"}))
            .send()
            .await
            .unwrap();
        if r.status() != 200 || passed == 10 {
            break r;
        }
        passed += 1;
    };
    assert!((4..=5).contains(&passed), "{passed} passed");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "rate_limited", "{b}");
    // Entry reads count too.
    let r = c
        .get(format!("{}/v1/logs/alpha/entries/0", srv.url))
        .bearer_auth(&loud)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // A long SQL text costs more: 16 KiB of comment is five requests' worth,
    // which puts a burst of 4 into debt after one query.
    let (s, b) = sql(&c, &srv.url, &quiet, "SELECT 1 AS one").await;
    assert_eq!(s, 200, "another token is not limited: {b}");
    let long = format!("SELECT 1 AS one -- {}", "x".repeat(16 << 10));
    let (s, b) = sql(&c, &srv.url, &quiet, &long).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = sql(&c, &srv.url, &quiet, "SELECT 1 AS one").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{b}"
    );
    // Charged as recorded: 3,000 control characters are 18,000 bytes of
    // JSON in `_audit` (five requests' worth), not 3,000.
    let ctrl = token(&data, "reader", "alpha", "ctrl");
    let escaped = format!("SELECT 1 AS one -- {}", "\u{1}".repeat(3000));
    let (s, b) = sql(&c, &srv.url, &ctrl, &escaped).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = sql(&c, &srv.url, &ctrl, "SELECT 1 AS one").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{b}"
    );
    assert_eq!(srv.terminate(), Some(0));
}
