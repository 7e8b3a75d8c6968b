//! Live session streams end to end: receipts come back while the request is
//! still open, bad lines are answered in-band without ending the stream, a
//! client killed mid-line loses only that line, and `tracevault stream` pipes
//! a shell's output into the vault.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_stream_back_while_the_request_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &[]);
    let w = token(&data, "writer", "term", "shell-recorder");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|i| (i, rx))
    }));
    let resp = client()
        .post(format!("{}/v1/logs/term/sessions/sess-1/stream", srv.url))
        .bearer_auth(&w)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut lines = Lines::of(resp);
    // Each line's receipt arrives before the next line is even sent.
    let mut indexes = Vec::new();
    for i in 0..3 {
        let ev = json!({"kind": "output", "content": format!("tick {i}")});
        tx.send(Ok(Bytes::from(format!("{ev}\n")))).await.unwrap();
        let r = lines.next().await.unwrap();
        assert_eq!(r["line"], i + 1, "{r}");
        assert_eq!(r["session_seq"], i, "{r}");
        indexes.push(r["index"].as_u64().unwrap());
    }
    // Bad lines are answered in-band; the stream goes on.
    tx.send(Ok(Bytes::from_static(b"{not json\n")))
        .await
        .unwrap();
    let r = lines.next().await.unwrap();
    assert_eq!(
        (r["line"].as_u64(), r["error"]["code"].as_str()),
        (Some(4), Some("invalid_json")),
        "{r}"
    );
    let other = json!({"session_id": "someone-else", "kind": "output", "content": "x"});
    tx.send(Ok(Bytes::from(format!("{other}\n"))))
        .await
        .unwrap();
    let r = lines.next().await.unwrap();
    assert_eq!(r["error"]["code"], "session_mismatch", "{r}");
    // One chunk carrying two lines, split across a chunk boundary mid-line.
    tx.send(Ok(Bytes::from_static(
        b"{\"kind\":\"input\",\"content\":\"ls\"}\n{\"kind\":\"out",
    )))
    .await
    .unwrap();
    tx.send(Ok(Bytes::from_static(b"put\",\"content\":\"a b c\"}\n")))
        .await
        .unwrap();
    for want in [6, 7] {
        let r = lines.next().await.unwrap();
        assert_eq!(r["line"], want, "{r}");
        indexes.push(r["index"].as_u64().unwrap());
    }
    drop(tx);
    let s = lines.next().await.unwrap();
    let s = &s["summary"];
    assert_eq!(s["committed"], 5, "{s}");
    assert_eq!(s["rejected_lines"], 2, "{s}");
    assert_eq!(s["end"], "eof");
    assert_eq!(s["ranges"], json!([[0, 4]]));
    assert_eq!(indexes, [0, 1, 2, 3, 4]);
    assert!(lines.next().await.is_none());

    let c = client();
    assert_eq!(wait_size(&c, &srv.url, "term", &w, 5).await, 5);
    let rows = stored_rows(&data, "term");
    let contents: Vec<&str> = rows
        .iter()
        .map(|r| r["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["tick 0", "tick 1", "tick 2", "ls", "a b c"]);
    assert!(
        rows.iter()
            .all(|r| r["session_id"] == "sess-1" && r["ingested_by"] == "shell-recorder")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_line_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &[]);
    let w = token(&data, "writer", "term", "w");
    let addr = srv.url.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/logs/term/sessions/killed/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {w}\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = |s: &str| format!("{:x}\r\n{s}\r\n", s.len());
    let payload = "{\"kind\":\"output\",\"content\":\"one\"}\n{\"kind\":\"output\",\"content\":\"two\"}\n{\"kind\":\"output\",\"content\":\"thr";
    sock.write_all(chunk(payload).as_bytes()).await.unwrap();
    // Read until both receipts have been sent to us.
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while String::from_utf8_lossy(&got)
        .matches("\"leaf_hash\"")
        .count()
        < 2
    {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, sock.read(&mut buf))
            .await
            .expect("receipts in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The client dies with half a line sent.
    drop(sock);
    let c = client();
    assert_eq!(wait_size(&c, &srv.url, "term", &w, 2).await, 2);
    // A graceful stop publishes everything durable: the store then holds
    // exactly the two acknowledged lines, never the unfinished third.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(srv.terminate(), Some(0));
    let rows = stored_rows(&data, "term");
    let contents: Vec<&str> = rows
        .iter()
        .map(|r| r["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["one", "two"]);
    let (code, out, err) = verify(&["--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracevault_stream_pipes_stdin_into_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &[]);
    let w = token(&data, "writer", "shell", "operator");
    let mut child = Command::new(BIN)
        .args([
            "stream",
            "--server",
            &srv.url,
            "--token",
            &w,
            "--session",
            "tty-7",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "$ echo hello").unwrap();
    writeln!(stdin, "hello").unwrap();
    writeln!(
        stdin,
        "{}",
        json!({"kind": "input", "content": "exit", "actor": "operator"})
    )
    .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let receipts: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(receipts.len(), 3, "{stdout}");
    assert!(stderr.contains("\"committed\":3"), "{stderr}");

    let c = client();
    assert_eq!(wait_size(&c, &srv.url, "shell", &w, 3).await, 3);
    let rows = stored_rows(&data, "shell");
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("output", "$ echo hello"),
            ("output", "hello"),
            ("input", "exit")
        ]
    );

    // A writer token for another namespace is refused before anything is read.
    let other = token(&data, "writer", "elsewhere", "x");
    let out = Command::new(BIN)
        .args([
            "stream",
            "--server",
            &srv.url,
            "--token",
            &other,
            "--namespace",
            "shell",
            "--session",
            "s",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_refused_in_order_and_shutdown_ends_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[limits]\nmax_event_bytes = 200\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let w = token(&data, "writer", "term", "w");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|i| (i, rx))
    }));
    let resp = client()
        .post(format!("{}/v1/logs/term/sessions/long/stream", srv.url))
        .bearer_auth(&w)
        .body(body)
        .send()
        .await
        .unwrap();
    let mut lines = Lines::of(resp);
    // In one chunk: a good line, a complete 300-byte line, and the start of an
    // unfinished 300-byte line. Answers come in line order.
    let long = json!({"kind": "output", "content": "x".repeat(300)}).to_string();
    let chunk = format!(
        "{{\"kind\":\"output\",\"content\":\"ok\"}}\n{long}\n{}",
        &long[..250]
    );
    tx.send(Ok(Bytes::from(chunk))).await.unwrap();
    let a = lines.next().await.unwrap();
    let b = lines.next().await.unwrap();
    let c = lines.next().await.unwrap();
    assert_eq!(
        (a["line"].as_u64(), a["index"].as_u64()),
        (Some(1), Some(0)),
        "{a}"
    );
    assert_eq!(
        (b["line"].as_u64(), b["error"]["code"].as_str()),
        (Some(2), Some("event_too_large")),
        "{b}"
    );
    assert_eq!(
        (c["line"].as_u64(), c["error"]["code"].as_str()),
        (Some(3), Some("event_too_large")),
        "{c}"
    );
    // The rest of line 3 is skipped; line 4 is fine.
    tx.send(Ok(Bytes::from(format!(
        "{}\n{{\"kind\":\"output\",\"content\":\"after\"}}\n",
        &long[250..]
    ))))
    .await
    .unwrap();
    let d = lines.next().await.unwrap();
    assert_eq!(
        (d["line"].as_u64(), d["index"].as_u64()),
        (Some(4), Some(1)),
        "{d}"
    );
    // SIGTERM with the stream still open: the stream ends with its summary
    // and the server exits cleanly instead of waiting for the client.
    let pid = srv.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let s = lines.next().await.unwrap();
    assert_eq!(s["summary"]["end"], "shutting_down", "{s}");
    assert_eq!(s["summary"]["committed"], 2, "{s}");
    assert_eq!(s["summary"]["rejected_lines"], 2, "{s}");
    drop(tx);
    assert_eq!(srv.terminate(), Some(0));
}

/// Lines that arrive while an append is being made durable share the next
/// append, and a steady stream is published in few segments: four streams
/// of 2,000 one-line writes each (`tracevault bench ingest --format
/// stream`) take far fewer appends than lines and a handful of segments
/// (before: one append per write, and a segment per publish of whatever
/// arrived meanwhile, hundreds of them). Every line gets its receipt, in
/// order, and is in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_streams_share_appends_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[log]\ncompact_interval_ms = 0\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let w = token(&data, "writer", "fast", "agents");
    let report = bench_ingest(
        &srv.url,
        &w,
        &[
            "--ns",
            "fast",
            "--format",
            "stream",
            "--sessions",
            "4",
            "--events",
            "8000",
            "--size",
            "200",
        ],
    );
    assert_eq!(report["events"], 8000, "{report}");
    let c = client();
    assert_eq!(wait_size(&c, &srv.url, "fast", &w, 8000).await, 8000);
    let (_, metrics) = get(&c, &format!("{}/metrics", srv.url), None).await;
    let appends: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tracevault_ack_latency_seconds_count{source=\"stream\"} "))
        .and_then(|n| n.trim().parse().ok())
        .expect("stream appends counted");
    assert!(appends < 2000, "{appends} appends for 8000 lines");
    let segments = std::fs::read_dir(data.join("store/ns/fast/segments"))
        .unwrap()
        .count();
    assert!(segments <= 20, "{segments} segments for 8000 lines");
    assert_eq!(srv.terminate(), Some(0));
}

/// With receipts sent once the store holds the lines (`ack_after_publish`,
/// as in cluster mode), a store slower than `ack_publish_timeout_ms` ends
/// the stream, but its error line says the lines are durable (resending
/// lines without an `event_id` would store them twice), and they are
/// published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_durable_but_not_yet_in_the_store_are_not_called_lost() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[log]\nack_after_publish = true\nack_publish_timeout_ms = 1\nflush_interval_ms = 500\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let w = token(&data, "writer", "term", "w");
    let resp = client()
        .post(format!("{}/v1/logs/term/sessions/slow/stream", srv.url))
        .bearer_auth(&w)
        .body(
            "{\"kind\":\"output\",\"content\":\"one\"}\nnot json\n\
             {\"kind\":\"output\",\"content\":\"two\"}\n",
        )
        .send()
        .await
        .unwrap();
    let mut lines = Lines::of(resp);
    // The refused line is answered on its own first: the durable range
    // names event lines only.
    let e = lines.next().await.unwrap();
    assert_eq!(
        (e["line"].as_u64(), e["error"]["code"].as_str()),
        (Some(2), Some("invalid_json")),
        "{e}"
    );
    let e = lines.next().await.unwrap();
    assert_eq!(e["error"]["code"], "not_yet_in_store", "{e}");
    assert_eq!(
        (e["lines"].clone(), e["durable"].clone()),
        (json!([1, 3]), json!(true)),
        "{e}"
    );
    let s = lines.next().await.unwrap();
    assert_eq!(s["summary"]["end"], "not_yet_in_store", "{s}");
    assert_eq!(s["summary"]["rejected_lines"], 1, "{s}");
    // Both lines reach the store all the same.
    let c = client();
    let mut size = 0;
    for _ in 0..100 {
        let (status, body) = get(
            &c,
            &format!("{}/v1/logs/term/checkpoint", srv.url),
            Some(&w),
        )
        .await;
        // A C2SP note: origin, then the tree size.
        if status == 200 {
            size = body
                .lines()
                .nth(1)
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            if size == 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(size, 2);
}

/// A stream's lines go into the log in appends no larger than a request may
/// be, so a burst larger than the log's unpublished bound is taken in turns
/// (it was one append that could never find room, and ended the stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_unpublished_bound_is_taken_in_turns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[log]\nmax_unpublished_events = 150\nflush_interval_ms = 50\n\
         [limits]\nmax_events_per_request = 100\nmax_otlp_events_per_request = 100\nstream_retry_ms = 2000\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let w = token(&data, "writer", "term", "w");
    let resp = client()
        .post(format!("{}/v1/logs/term/sessions/burst/stream", srv.url))
        .bearer_auth(&w)
        .body(numbered_lines(1000))
        .send()
        .await
        .unwrap();
    let a = Lines::of(resp).until_summary().await;
    assert!(a.errors.is_empty(), "{:?}", a.errors);
    assert_eq!(a.receipts.len(), 1000);
    assert_eq!(a.summary["summary"]["end"], "eof", "{}", a.summary);
    assert_eq!(a.summary["summary"]["committed"], 1000, "{}", a.summary);
}

/// When one append of a stream's batch fails (here the writer's rate limit
/// outlasts `stream_retry_ms`), the appends before it are committed and
/// their lines get receipts: the error line names only the lines not
/// committed. (The receipts were dropped and the error line named every
/// line of the batch: a client resent committed lines, stored twice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_keeps_the_receipts_of_the_appends_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[limits]\nmax_events_per_request = 100\nwriter_events_per_s = 100\n\
         writer_burst_events = 100\nstream_retry_ms = 200\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let w = token(&data, "writer", "term", "w");
    // 300 short lines in one write: one batch of more than 100 lines.
    let resp = client()
        .post(format!("{}/v1/logs/term/sessions/chunks/stream", srv.url))
        .bearer_auth(&w)
        .body(numbered_lines(300))
        .send()
        .await
        .unwrap();
    let StreamAnswer {
        receipts,
        errors,
        summary,
    } = Lines::of(resp).until_summary().await;
    let k = receipts.len() as u64;
    assert!(k >= 100, "the first append's lines are answered: {k}");
    assert_eq!(receipts, (1..=k).collect::<Vec<_>>());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["error"]["code"], "rate_limited", "{}", errors[0]);
    assert_eq!(errors[0]["lines"][0], k + 1, "{}", errors[0]);
    assert_eq!(summary["summary"]["end"], "append_failed", "{summary}");
    assert_eq!(summary["summary"]["committed"], k, "{summary}");
    // The log holds exactly the lines that got receipts.
    let c = client();
    let reader = token(&data, "reader", "term", "r");
    let (s, b) = sql(&c, &srv.url, &reader, "SELECT count(*) AS n FROM traces").await;
    assert_eq!((s, b["rows"][0][0].as_u64()), (200, Some(k)), "{b}");
}
