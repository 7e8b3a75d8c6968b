//! SQL over the vault (`POST /v1/query`): a reader sees only its namespaces
//! and window whatever SQL it writes, values are masked below SQL (even
//! inside expressions and predicates), the session refuses DDL, DML, COPY,
//! URL tables and `information_schema`, results are JSON or Arrow IPC, and
//! every query lands in `_audit`.

mod common;

use common::*;
use serde_json::{Value, json};

const EMAIL: &str = "jane.doe@example.com";

fn col(body: &Value, row: usize, c: usize) -> &Value {
    &body["rows"][row][c]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_only_their_rows_masked_whatever_sql_they_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // LZ4 segments (`[log] segment_compression`): the SQL engines (DataFusion,
    // and Ballista's executors in the Ballista pass) read them as zstd ones.
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 50\nsegment_compression = \"lz4\"\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let url = &srv.url;
    for (ns, n) in [("alpha", 3), ("beta", 2)] {
        let w = token(&data, "writer", ns, "agent");
        let events: Vec<Value> = (0..n)
            .map(|i| {
                json!({"session_id": format!("{ns}-s{}", i % 2), "kind": "prompt",
                            "content": format!("{ns} {i} contact {EMAIL}")})
            })
            .collect();
        let (s, r) = post_events(&c, url, ns, &w, json!({"events": events}), "").await;
        assert_eq!(s, 200, "{r}");
    }
    let reader = token(&data, "reader", "alpha", "auditor");

    // Plain query: only alpha, masked.
    let (s, b) = sql(
        &c,
        url,
        &reader,
        "SELECT ns, idx, content FROM traces ORDER BY idx",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"].as_array().unwrap().len(), 3, "{b}");
    assert_eq!(b["columns"][0]["name"], "ns");
    for r in b["rows"].as_array().unwrap() {
        assert_eq!(r[0], "alpha");
        let content = r[2].as_str().unwrap();
        assert!(
            !content.contains(EMAIL) && content.contains("[REDACTED:email]"),
            "{content}"
        );
    }
    // Adversarial SQL cannot widen the view.
    for q in [
        "SELECT count(*) FROM traces WHERE 1=1 OR ns = 'beta'",
        "SELECT count(*) FROM (SELECT * FROM traces UNION ALL SELECT * FROM traces WHERE ns = 'beta') t WHERE ns = 'alpha'",
        "WITH x AS (SELECT * FROM traces WHERE ns <> 'alpha') SELECT count(*) + 3 FROM x",
        "SELECT count(*) FROM traces WHERE ns IN (SELECT ns FROM traces) OR true",
    ] {
        let (s, b) = sql(&c, url, &reader, q).await;
        assert_eq!(s, 200, "{q}: {b}");
        assert_eq!(col(&b, 0, 0), 3, "{q}: {b}");
    }
    let (_, b) = sql(
        &c,
        url,
        &reader,
        "SELECT count(*) FROM traces WHERE ns = 'beta'",
    )
    .await;
    assert_eq!(col(&b, 0, 0), 0);
    // Raw values cannot be probed through predicates or functions either.
    let (_, b) = sql(
        &c,
        url,
        &reader,
        "SELECT count(*) FROM traces WHERE content LIKE '%jane%'",
    )
    .await;
    assert_eq!(col(&b, 0, 0), 0, "{b}");
    let (_, b) = sql(
        &c,
        url,
        &reader,
        "SELECT upper(content) FROM traces LIMIT 1",
    )
    .await;
    assert!(!b.to_string().to_lowercase().contains("jane.doe"), "{b}");
    // Ways to name data directly, or change anything, are refused.
    for q in [
        "CREATE TABLE x AS SELECT * FROM traces",
        "CREATE EXTERNAL TABLE e STORED AS PARQUET LOCATION '/etc/'",
        "COPY traces TO '/tmp/out.parquet'",
        "INSERT INTO traces SELECT * FROM traces",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM 'file:///etc/passwd'",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "DROP TABLE traces",
        "SET datafusion.catalog.information_schema = true",
        "SELECT 1; SELECT 2",
        // Prepared statements: a session state of their own, never kept.
        "PREPARE p(VARCHAR) AS SELECT * FROM traces WHERE session_id = $1",
        "EXECUTE p('alpha-s0')",
        "DEALLOCATE p",
        "CREATE VIEW v AS SELECT * FROM traces",
        "CREATE FUNCTION f(INT) RETURNS INT RETURN $1",
        // Quadratic, and uninterruptible once a call runs.
        "SELECT levenshtein(content, content) FROM traces",
    ] {
        let (s, b) = sql(&c, url, &reader, q).await;
        assert_eq!(s, 400, "{q} was not refused: {b}");
    }
    // The sessions view.
    let (s, b) = sql(
        &c,
        url,
        &reader,
        "SELECT session_id, events FROM sessions ORDER BY session_id",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"], json!([["alpha-s0", 2], ["alpha-s1", 1]]));
    // Arrow IPC on request.
    let r = c
        .post(format!("{url}/v1/query"))
        .bearer_auth(&reader)
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&json!({"sql": "SELECT idx FROM traces"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    // Read back by pyarrow, an independent Arrow implementation.
    let mut py = std::process::Command::new(python())
        .args(["-c", "import sys, pyarrow.ipc as ipc; t = ipc.open_stream(sys.stdin.buffer.read()).read_all(); print(t.num_rows, t.schema.names)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    py.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = py.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3 ['idx']");
    // Writers never query; a window that ended before the events sees nothing.
    let w = token(&data, "writer", "alpha", "agent");
    assert_eq!(sql(&c, url, &w, "SELECT 1").await.0, 403);
    let old = reader_token_window(
        &data,
        "alpha",
        "late",
        "2020-01-01T00:00:00Z",
        "2021-01-01T00:00:00Z",
    );
    let (s, b) = sql(&c, url, &old, "SELECT count(*) FROM traces").await;
    assert_eq!((s, col(&b, 0, 0).clone()), (200, json!(0)), "{b}");
    // The CLI: CSV and table output, and exit 1 when the server refuses.
    let cli = |format: &str, q: &str| {
        std::process::Command::new(BIN)
            .args([
                "query", "--server", url, "--token", &reader, "--format", format, q,
            ])
            .output()
            .unwrap()
    };
    let out = cli("csv", "SELECT ns, count(*) AS n FROM traces GROUP BY ns");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ns,n\nalpha,3\n");
    let out = cli(
        "table",
        "SELECT kind, count(*) AS n FROM traces GROUP BY kind",
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("kind") && text.contains("prompt | 3") && text.ends_with("(1 rows)\n"),
        "{text}"
    );
    let out = cli("table", "DROP TABLE traces");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("400"));
    // Admins query the access log: every query above is there with its SQL.
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let (s, b) = sql(
        &c,
        url,
        admin.trim(),
        "SELECT count(*) FROM traces WHERE ns = '_audit' AND name = 'query'",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(col(&b, 0, 0).as_u64().unwrap() >= 20, "{b}");
    // A query that fails on a row's value: the engine's message quotes the
    // value (to the caller, as its profile shows it), but `_audit`, which is
    // never erased, records only the error's code.
    let (s, b) = sql(
        &c,
        url,
        admin.trim(),
        "SELECT CAST(content AS BIGINT) FROM traces WHERE ns = 'alpha'",
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b.to_string().contains("Cannot cast string 'alpha"),
        "the caller sees the value (masked as its profile masks it): {b}"
    );
    assert_eq!(srv.terminate(), Some(0));
    let audit = stored_rows(&data, "_audit");
    let failed: Vec<&Value> = audit
        .iter()
        .filter(|r| r["name"] == "query" && r["content"].as_str().unwrap().contains("CAST(content"))
        .collect();
    assert_eq!(failed.len(), 1, "{audit:?}");
    let record: Value = serde_json::from_str(failed[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(record["error"], "query_failed", "{record}");
    assert!(
        audit
            .iter()
            .all(|r| !r["content"].as_str().unwrap_or("").contains("Cannot cast")),
        "a row's value reached _audit"
    );
    assert!(audit.iter().any(|r| r["name"] == "query"
        && r["actor"] == "auditor"
        && r["content"].as_str().unwrap().contains("OR ns = 'beta'")));
    let (code, out, err) = verify(&["--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_results_are_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[query]\nmax_result_rows = 5\nmax_scan_rows = 50\nmax_result_bytes = 20000\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "alpha", "agent");
    let events: Vec<Value> = (0..20)
        .map(|i| json!({"session_id": "s", "kind": "output", "content": i.to_string()}))
        .collect();
    assert_eq!(
        post_events(&c, &srv.url, "alpha", &w, json!({"events": events}), "")
            .await
            .0,
        200
    );
    let reader = token(&data, "reader", "alpha", "auditor");
    let (s, b) = sql(&c, &srv.url, &reader, "SELECT * FROM traces").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("result_too_large")),
        "{b}"
    );
    let (s, b) = sql(
        &c,
        &srv.url,
        &reader,
        "SELECT idx FROM traces ORDER BY idx LIMIT 5",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"], json!([[0], [1], [2], [3], [4]]));
    // Small as Arrow (columns of nulls take no memory), huge as JSON: the
    // rendered text is held to the same budget, and refused past it.
    let wide: Vec<String> = (0..1000).map(|i| format!("NULL AS c{i}")).collect();
    let wide = format!("SELECT {} FROM traces LIMIT 5", wide.join(", "));
    let (s, b) = sql(&c, &srv.url, &reader, &wide).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("result_too_large")),
        "{b}"
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains("as JSON"),
        "{b}"
    );
    // More visible rows than max_scan_rows: refused.
    let events: Vec<Value> = (0..40)
        .map(|i| json!({"session_id": "s", "kind": "output", "content": i.to_string()}))
        .collect();
    assert_eq!(
        post_events(&c, &srv.url, "alpha", &w, json!({"events": events}), "")
            .await
            .0,
        200
    );
    let (s, b) = sql(&c, &srv.url, &reader, "SELECT count(*) FROM traces").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("scan_too_large")),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_lookups_prune_segments_and_see_the_unpublished_tail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Phase 1: eight sessions, each published in its own segment.
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 50\ncompact_interval_ms = 0\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "alpha", "agent");
    for k in 0..8u64 {
        let events: Vec<Value> = (0..30)
            .map(|i| json!({"session_id": format!("s{k}"), "kind": "output", "content": format!("{k}/{i}")}))
            .collect();
        let (s, r) = post_events(&c, &srv.url, "alpha", &w, json!({"events": events}), "").await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(
            wait_size(&c, &srv.url, "alpha", &w, (k + 1) * 30).await,
            (k + 1) * 30
        );
    }
    assert_eq!(srv.terminate(), Some(0));
    let segments = std::fs::read_dir(data.join("store/ns/alpha/segments"))
        .unwrap()
        .count();
    assert_eq!(segments, 8);

    // Phase 2: a server that publishes rarely, so new events stay in the tail.
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 60000\ncompact_interval_ms = 0\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let url = &srv.url;
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"session_id": "s3", "kind": "output", "content": format!("tail {i}")}))
        .collect();
    let (s, r) = post_events(&c, url, "alpha", &w, json!({"events": events}), "").await;
    assert_eq!(s, 200, "{r}");
    let reader = token(&data, "reader", "alpha", "auditor");
    // Scan statistics and plans describe whole row groups (rows outside a
    // reader's window included): admins see them, readers do not.
    let admin = token(&data, "admin", "alpha", "ops");
    let q = "SELECT count(*) FROM traces WHERE session_id = 's5'";
    let (s, b) = sql(&c, url, &reader, q).await;
    assert_eq!((s, col(&b, 0, 0).clone()), (200, json!(30)), "{b}");
    assert!(b.get("scan").is_none(), "{b}");
    for q in [
        "EXPLAIN SELECT * FROM traces",
        "EXPLAIN ANALYZE SELECT * FROM traces",
    ] {
        let (s, b) = sql(&c, url, &reader, q).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("invalid_query")),
            "{b}"
        );
    }
    let (s, b) = sql(&c, url, &admin, &format!("EXPLAIN {q}")).await;
    assert_eq!(s, 200, "{b}");
    assert!(b.to_string().contains("MaskExec"), "{b}");

    // A one-session lookup reads one segment's row group, not the vault.
    let (s, b) = sql(&c, url, &admin, q).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(col(&b, 0, 0), 30, "{b}");
    assert_eq!(b["scan"]["files"], 8, "{b}");
    assert_eq!(b["scan"]["row_groups"], 8, "{b}");
    assert_eq!(b["scan"]["row_groups_pruned"], 7, "{b}");
    // 30 rows from the segment (row filter pushed into the Parquet decoder)
    // plus the 5 tail rows, which the filter above the scan drops.
    assert_eq!(b["scan"]["rows"], 35, "{b}");
    // Log index filters prune too (idx is UInt64 in `traces`, Int64 in the
    // segments: plain comparisons are rewritten for pruning), and answer
    // exactly what the unpruned filter answers.
    for (q, count, pruned) in [
        ("idx BETWEEN 35 AND 44", 10, 7),
        ("idx >= 35 AND idx <= 44", 10, 7),
        ("44 >= idx AND idx > 34", 10, 7),
        ("idx IN (5, 200)", 2, 6),
        ("idx < 3 OR idx = 239", 4, 6),
        ("idx > 18446744073709551614", 0, 0),
        ("idx + 0 BETWEEN 35 AND 44", 10, 0),
        ("NOT (idx < 35) AND idx < 45", 10, 0),
    ] {
        let (s, b) = sql(
            &c,
            url,
            &admin,
            &format!("SELECT count(*) FROM traces WHERE {q}"),
        )
        .await;
        assert_eq!(s, 200, "{q}: {b}");
        assert_eq!(col(&b, 0, 0), count, "{q}: {b}");
        // Each segment here is one row group: skipped whole by the file's
        // statistics (once its footer is known) or opened and its row
        // group pruned.
        let scan = &b["scan"];
        assert!(
            scan["row_groups_pruned"].as_u64().unwrap() + scan["files_pruned"].as_u64().unwrap()
                >= pruned,
            "{q}: {b}"
        );
    }
    // The acknowledged, unpublished tail is visible at once, exactly once.
    let (s, b) = sql(
        &c,
        url,
        &reader,
        "SELECT count(*), count(DISTINCT idx), max(idx) FROM traces WHERE session_id = 's3'",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"], json!([[35, 35, 244]]), "{b}");
    let (_, b) = sql(&c, url, &reader, "SELECT count(*) FROM traces").await;
    assert_eq!(col(&b, 0, 0), 245, "{b}");
    // A filter on a column the profile masks is never used below the mask
    // (it would let a reader probe stored values): it prunes nothing and is
    // applied to the masked values (this one holds nothing to mask).
    let (_, b) = sql(
        &c,
        url,
        &admin,
        "SELECT count(*) FROM traces WHERE content = '5/7'",
    )
    .await;
    assert_eq!(col(&b, 0, 0), 1, "{b}");
    assert_eq!(b["scan"]["row_groups_pruned"], 0, "{b}");
    assert_eq!(srv.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_beyond_max_concurrent_are_refused_busy_and_slow_ones_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[query]\nmax_concurrent = 1\ntimeout_s = 3\nthreads = 1\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let reader = token(&data, "reader", "alpha", "auditor");
    // 200 rows, joined with themselves four times: 1.6e9 combinations (table
    // functions such as generate_series are not allowed).
    let writer = token(&data, "writer", "alpha", "w");
    append_numbered(&c, &srv.url, "alpha", &writer, 200, |i| format!("{i}")).await;
    let slow = spawn_sql(
        &c,
        &srv.url,
        &reader,
        "SELECT count(*) FROM traces a, traces b, traces c, traces d \
         WHERE concat(a.content, b.content) <> concat(c.content, d.content)",
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let (s, b) = sql(&c, &srv.url, &reader, "SELECT 1").await;
    assert_eq!((s, b["error"]["code"].as_str()), (503, Some("busy")), "{b}");
    // Reading an entry reads a segment: it waits for no slot either.
    let entry = |i: u64| {
        c.get(format!("{}/v1/logs/alpha/entries/{i}", srv.url))
            .bearer_auth(&reader)
            .send()
    };
    let r = entry(7).await.unwrap();
    assert_eq!(r.status(), 503);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "busy", "{b}");
    let (s, b) = slow.await.unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("query_timeout")),
        "{b}"
    );
    // The slot is free again.
    let (s, b) = sql(&c, &srv.url, &reader, "SELECT 1 AS one").await;
    assert_eq!((s, b["rows"].clone()), (200, json!([[1]])), "{b}");
    let r = entry(7).await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["index"], 7, "{b}");
}
