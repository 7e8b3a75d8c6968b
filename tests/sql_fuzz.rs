//! A generated SQL fuzz against a real server (issue 12): thousands of
//! random expressions over the `traces` columns and every allowed function,
//! nested, with hostile literals (huge counts, negative sizes, long strings),
//! run by a reader while a writer ingests and a prober checks `/healthz`.
//! Every answer must be 200 or a JSON 4xx, the server must stay up, and
//! every acknowledged event must be in the log at the end.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const COLUMNS: [&str; 12] = [
    "content",
    "attributes",
    "name",
    "actor",
    "session_id",
    "event_id",
    "kind",
    "idx",
    "session_seq",
    "received_at",
    "ts",
    "leaf_hash",
];

const LITERALS: [&str; 16] = [
    "0",
    "1",
    "-1",
    "3",
    "2147483647",
    "-2147483648",
    "9223372036854775807",
    "100000000000",
    "'a'",
    "''",
    "'€'",
    "'%'",
    "'ab|cd'",
    "NULL",
    "1.5",
    "'2026-01-01T00:00:00Z'",
];

fn expr(rng: &mut StdRng, scalars: &[&str], depth: u32) -> String {
    if depth == 0 || rng.random_bool(0.3) {
        return if rng.random_bool(0.5) {
            COLUMNS[rng.random_range(0..COLUMNS.len())].to_string()
        } else {
            LITERALS[rng.random_range(0..LITERALS.len())].to_string()
        };
    }
    let f = scalars[rng.random_range(0..scalars.len())];
    let n = rng.random_range(0..=3);
    let args: Vec<String> = (0..n).map(|_| expr(rng, scalars, depth - 1)).collect();
    format!("{f}({})", args.join(", "))
}

fn query(rng: &mut StdRng, scalars: &[&str], aggregates: &[&str]) -> String {
    let e = expr(rng, scalars, 3);
    match rng.random_range(0..4) {
        0 => {
            let a = aggregates[rng.random_range(0..aggregates.len())];
            format!("SELECT {a}({e}) FROM traces")
        }
        1 => format!(
            "SELECT {e} FROM traces WHERE {} LIMIT 20",
            expr(rng, scalars, 2)
        ),
        2 => format!("SELECT {e}"),
        _ => format!("SELECT {e}, count(*) FROM traces GROUP BY 1 LIMIT 20"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sql_never_hurts_the_server_or_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 50\n[query]\ntimeout_s = 5\nmax_concurrent_per_token = 4\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let url = srv.url.clone();
    let c = client();
    let writer = token(&data, "writer", "fuzz", "w");
    let reader = token(&data, "reader", "fuzz", "r");
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let admin = admin.trim().to_string();
    // Some rows to run over: text and JSON content, names, attributes.
    let seed: Vec<Value> = (0..40)
        .map(|i| {
            json!({"session_id": format!("s{}", i % 4), "kind": "tool_call",
                "name": format!("tool-{i}"), "actor": "alice@example.com",
                "event_id": format!("e{i}"),
                "content": if i % 2 == 0 { json!(format!("call {i} ab|cd €")) } else { json!({"q": i, "s": "x"}) },
                "attributes": {"k": i}})
        })
        .collect();
    let (s, b) = post_events(&c, &url, "fuzz", &writer, json!({"events": seed}), "").await;
    assert_eq!(s, 200, "{b}");

    let stop = Arc::new(AtomicBool::new(false));
    // A writer that keeps ingesting and remembers every receipt.
    let ingest = {
        let (c, url, writer, stop) = (c.clone(), url.clone(), writer.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut slowest = Duration::ZERO;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // About 200 events/s: the table stays small enough for
                // the 5 s query timeout in a debug build over a long run.
                let events: Vec<Value> = (0..10)
                    .map(|i| json!({"session_id": "live", "kind": "output", "content": format!("line {n}-{i}")}))
                    .collect();
                let t = Instant::now();
                let (s, b) =
                    post_events(&c, &url, "fuzz", &writer, json!({"events": events}), "").await;
                slowest = slowest.max(t.elapsed());
                assert_eq!(s, 200, "append during the fuzz: {b}");
                for r in b["receipts"].as_array().unwrap() {
                    acked.push(r["index"].as_u64().unwrap());
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (acked, slowest)
        })
    };
    // A prober of /healthz.
    let probe = {
        let (c, url, stop) = (c.clone(), url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (s, _) = get(&c, &format!("{url}/healthz"), None).await;
                assert_eq!(s, 200);
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            slowest
        })
    };

    let all: Vec<&str> = tracevault_query::guard::allowed_functions().collect();
    let aggregates = [
        "count",
        "min",
        "max",
        "string_agg",
        "array_agg",
        "sum",
        "avg",
    ];
    let scalars: Vec<&str> = all
        .iter()
        .copied()
        .filter(|f| !aggregates.contains(f))
        .collect();
    let mut rng = StdRng::seed_from_u64(12);
    // Every allowed function once at the top of an expression, then random
    // queries (more with TRACEVAULT_FUZZ_QUERIES, for a long run).
    let random: usize = std::env::var("TRACEVAULT_FUZZ_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut sqls: Vec<String> = scalars
        .iter()
        .map(|f| {
            let args: Vec<String> = (0..rng.random_range(1..=3))
                .map(|_| expr(&mut rng, &scalars, 2))
                .collect();
            format!("SELECT {f}({}) FROM traces LIMIT 5", args.join(", "))
        })
        .collect();
    sqls.extend((0..random).map(|_| query(&mut rng, &scalars, &aggregates)));
    let queries = sqls.len();
    let (mut ok, mut refused) = (0u32, 0u32);
    let started = Instant::now();
    for (i, sql) in sqls.into_iter().enumerate() {
        let r = c
            .post(format!("{url}/v1/query"))
            .bearer_auth(&reader)
            .json(&json!({"sql": sql}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("query {i} killed the connection: {e}\n{sql}"));
        let s = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        match s {
            200 => ok += 1,
            400..=499 => {
                assert!(
                    body["error"]["code"].is_string(),
                    "{s} without a JSON error: {sql}"
                );
                refused += 1;
            }
            // The per-token and per-server query slots are 4: never reached
            // sequentially, so any 5xx is a failure.
            _ => panic!("query {i} answered {s}: {body}\n{sql}"),
        }
    }
    let fuzz_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (acked, slowest_ack) = ingest.await.unwrap();
    let slowest_health = probe.await.unwrap();
    eprintln!(
        "sql fuzz: {queries} queries ({ok} answered, {refused} refused) in {fuzz_time:?}; \
         {} events acked meanwhile, slowest ack {slowest_ack:?}, slowest /healthz {slowest_health:?}",
        acked.len()
    );
    assert!(ok > 30 && refused > 30, "the fuzz exercised both paths");
    // Every acknowledged event is in the log.
    let need = acked.iter().max().copied().unwrap_or(0) + 1;
    assert!(wait_size(&c, &url, "fuzz", &admin, need).await >= need);
    let (s, b) = {
        let r = c
            .post(format!("{url}/v1/query"))
            .bearer_auth(&admin)
            .json(&json!({"sql": "SELECT count(*) FROM traces WHERE ns = 'fuzz' AND session_id = 'live'"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"][0][0].as_u64(), Some(acked.len() as u64), "{b}");
    assert_eq!(srv.terminate(), Some(0));
}
