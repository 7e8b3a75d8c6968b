//! Distributed SQL (`[query] engine = "ballista"`, docs/distributed-sql.md):
//! a `tracevault ballista scheduler` and two executors on loopback. The
//! same queries (a reader's adversarial SQL, masked content, an admin's
//! aggregates) give exactly the same answers through the cluster as
//! embedded; an admin's aggregate over a multi-segment namespace equals
//! DuckDB's over the same Parquet files; and with an executor killed the
//! answer is an error or the right one, never a partial one. (An executor
//! with another masking key refusing a plan is checked where the plan is
//! decoded: `query/src/distributed/codec.rs`.)

mod common;

use std::process::Command;

use common::ballista::Cluster;
use common::*;
use serde_json::{Value, json};

/// The queries compared, each with the token that runs it.
const READER_QUERIES: [&str; 5] = [
    "SELECT ns, idx, session_id, content FROM traces ORDER BY ns, idx",
    "SELECT * FROM traces WHERE ns = 'beta' OR 1 = 1 ORDER BY ns, idx",
    "SELECT session_id, count(*) AS n FROM traces GROUP BY session_id ORDER BY session_id",
    "SELECT count(*) AS n FROM traces t1 JOIN traces t2 ON t1.session_id = t2.session_id",
    "SELECT content FROM traces WHERE content LIKE '%@%' ORDER BY idx",
];
/// A query that runs for a while (a four-way self-join with a shuffle),
/// during which an executor is killed.
const SLOW: &str = "SELECT a.session_id, count(*) AS n FROM traces a, traces b, traces c, traces d \
     WHERE concat(a.content, b.content) <> concat(c.content, d.content) GROUP BY a.session_id ORDER BY a.session_id";
/// (Not `_audit`, which grows with every query.)
const ADMIN_QUERIES: [&str; 3] = [
    "SELECT ns, count(*) AS n, sum(length(content)) AS bytes FROM traces WHERE ns <> '_audit' GROUP BY ns ORDER BY ns",
    "SELECT kind, count(DISTINCT session_id) AS sessions FROM traces WHERE ns <> '_audit' GROUP BY kind ORDER BY kind",
    "SELECT ns, max(idx) AS last FROM traces WHERE session_id = 's3' GROUP BY ns ORDER BY ns",
];

async fn answers(c: &reqwest::Client, url: &str, reader: &str, admin: &str) -> Vec<(u16, Value)> {
    let mut out = Vec::new();
    for q in READER_QUERIES {
        out.push(sql(c, url, reader, q).await);
    }
    for q in ADMIN_QUERIES {
        out.push(sql(c, url, admin, q).await);
    }
    // Only the rows and columns: scan statistics differ by engine.
    out.into_iter()
        .map(|(s, v)| {
            (
                s,
                json!({"columns": v["columns"], "rows": v["rows"], "error": v["error"]}),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ballista_cluster_answers_as_embedded_and_enforces_below_sql() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Small segments, so that namespaces span several files.
    let cfg = config(dir.path(), "[log]\nsegment_max_rows = 7\n");
    let cfg_arg = ["--config", cfg.to_str().unwrap()];
    let srv = Server::start(&data, &cfg_arg);
    let c = client();
    for ns in ["alpha", "beta"] {
        let w = token(&data, "writer", ns, "agent");
        for s in 0..4 {
            let events: Vec<Value> = (0..6)
                .map(|i| {
                    json!({"session_id": format!("s{s}"), "kind": if i % 2 == 0 { "prompt" } else { "response" },
                           "content": format!("{ns} s{s} e{i}: mail bob{i}@example.com about order {i}")})
                })
                .collect();
            let (st, r) = post_events(
                &c,
                &srv.url,
                ns,
                &w,
                json!({"events": events}),
                "?wait=checkpoint",
            )
            .await;
            assert_eq!(st, 200, "{r}");
        }
    }
    let reader = token(&data, "reader", "alpha", "auditor");
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let admin = admin.trim().to_string();
    let embedded = answers(&c, &srv.url, &reader, &admin).await;
    for (s, v) in &embedded {
        assert_eq!(*s, 200, "{v}");
    }
    let (s, slow_embedded) = sql(&c, &srv.url, &reader, SLOW).await;
    assert_eq!(s, 200, "{slow_embedded}");
    assert_eq!(srv.terminate(), Some(0));

    // The cluster: a scheduler and two executors reading the same store.
    let mut cluster = Cluster::scheduler();
    cluster.add_executor(&data, None, &dir.path().join("w1"));
    cluster.add_executor(&data, None, &dir.path().join("w2"));
    let cfg = config(
        dir.path(),
        &format!(
            "[log]\nsegment_max_rows = 7\n[query]\n{}",
            cluster.query_config()
        ),
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let distributed = answers(&c, &srv.url, &reader, &admin).await;
    for (i, (e, d)) in embedded.iter().zip(&distributed).enumerate() {
        assert_eq!(
            e,
            d,
            "query {i}: embedded and Ballista differ: {}",
            d.1.to_string().chars().take(600).collect::<String>()
        );
    }
    // The reader saw only alpha, masked (no address leaves).
    let all = distributed[1].1.to_string();
    assert!(!all.contains("\"beta\""), "{all}");
    assert!(!all.contains("@example.com"), "{all}");
    assert!(all.contains("alpha"), "{all}");

    // An admin's aggregate equals DuckDB's over the same Parquet files.
    let glob = data.join("store/ns/alpha/segments/*.parquet");
    let files = std::fs::read_dir(data.join("store/ns/alpha/segments"))
        .unwrap()
        .count();
    assert!(files > 2, "alpha spans several segments ({files})");
    let duck = Command::new(python())
        .args([
            "-c",
            "import duckdb,sys; print(duckdb.sql(f\"SELECT count(*), count(DISTINCT session_id), max(idx) FROM read_parquet('{sys.argv[1]}')\").fetchall()[0])",
            glob.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        duck.status.success(),
        "{}",
        String::from_utf8_lossy(&duck.stderr)
    );
    let (s, ours) = sql(
        &c,
        &srv.url,
        &admin,
        "SELECT count(*), count(DISTINCT session_id), max(idx) FROM traces WHERE ns = 'alpha'",
    )
    .await;
    assert_eq!(s, 200, "{ours}");
    let row = &ours["rows"][0];
    let theirs = String::from_utf8_lossy(&duck.stdout).trim().to_string();
    assert_eq!(
        format!("({}, {}, {})", row[0], row[1], row[2]),
        theirs,
        "DuckDB reads the same files"
    );

    // An admin's EXPLAIN ANALYZE shows the stages as the cluster ran them:
    // the mask inside, with the rows it let through.
    let (s, v) = sql(
        &c,
        &srv.url,
        &admin,
        "EXPLAIN ANALYZE SELECT session_id, count(*) FROM traces WHERE ns = 'alpha' GROUP BY session_id",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let stages = v["rows"].as_array().unwrap();
    assert!(stages.len() >= 2, "a shuffle between two stages: {v}");
    let text = v.to_string();
    for part in [
        "Stage 1",
        "ShuffleWriterExec",
        "MaskExec",
        "metrics=[tracevault_rows=",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }

    // One executor killed while a query runs, then another query with it
    // gone: each gets an error or the right answer, never a partial one.
    let running = {
        let (c, url, reader) = (c.clone(), srv.url.clone(), reader.clone());
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            let r = sql(&c, &url, &reader, SLOW).await;
            (r, t.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    drop(cluster.executors.pop());
    let ((s, v), took) = running.await.unwrap();
    eprintln!(
        "an executor killed 150 ms into a query of {took:?}: {s} {}",
        v["error"]
    );
    if s == 200 {
        assert_eq!(v["rows"], slow_embedded["rows"], "a partial answer");
    } else {
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let q = READER_QUERIES[0];
    let (s, v) = sql(&c, &srv.url, &reader, q).await;
    eprintln!("with an executor gone: {s} {}", v["error"]);
    if s == 200 {
        assert_eq!(v["rows"], embedded[0].1["rows"], "a partial answer");
    } else {
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    assert_eq!(srv.terminate(), Some(0));

    // The access log tells the same of a query either way: what it scanned
    // and what was masked (on the executors, counted back).
    let audit = stored_rows(&data, "_audit");
    let records: Vec<Value> = audit
        .iter()
        .filter(|r| r["name"] == "query")
        .map(|r| serde_json::from_str(r["content"].as_str().unwrap()).unwrap())
        .filter(|r: &Value| r["sql"] == READER_QUERIES[4])
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    let (e, d) = (&records[0], &records[1]);
    assert_eq!(e["masked"], d["masked"], "{e} / {d}");
    assert!(e["masked"]["email"].as_u64() > Some(0), "{e}");
    assert_eq!(e["rows"], d["rows"], "{e} / {d}");
    assert_eq!(e["scan"]["rows"], d["scan"]["rows"], "{e} / {d}");
    assert!(d["scan"]["rows"].as_u64() > Some(0), "{d}");
}
