//! Crash safety: a client posts events and records every receipt while the
//! server is killed with SIGKILL at random moments and restarted. Every
//! receipt ever sent must match an entry of the log afterwards, no session
//! number may be handed out twice across the restarts (the namespace reopens
//! from its session-state snapshot and the last entries, small windows here),
//! and the store must verify (snapshots included).

mod common;

use std::time::Duration;

use common::*;
use rand::Rng;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receipt_survives_kill_9_loops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 50\nsegment_max_rows = 64\ndedup_window = 50\nstate_snapshot_entries = 100\n",
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let c = client();
    let mut receipts: Vec<(u64, String, String, u64)> = Vec::new();
    let mut rng = rand::rng();
    let mut tok = None;
    for round in 0..6 {
        let srv = Server::start(&data, &["--config", &cfg]);
        let w = tok
            .get_or_insert_with(|| token(&data, "writer", "crash", "crash-client"))
            .clone();
        let url = srv.url.clone();
        let c2 = c.clone();
        // Two concurrent writers so kills land in the middle of group commits.
        let mut writers = Vec::new();
        for wid in 0..2 {
            let (c3, url, w) = (c2.clone(), url.clone(), w.clone());
            writers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let mut n = 0u64;
                loop {
                    let batch: Vec<Value> = (0..(1 + (n % 37)))
                        .map(|i| json!({"session_id": format!("w{wid}"), "kind": "output",
                                        "content": format!("round {round} writer {wid} batch {n} line {i} {}", "x".repeat(200))}))
                        .collect();
                    n += 1;
                    let r = c3
                        .post(format!("{url}/v1/logs/crash/events"))
                        .bearer_auth(&w)
                        .json(&json!({"events": batch}))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    let Ok(r) = r else { break };
                    if r.status() != 200 {
                        break;
                    }
                    let Ok(body) = r.json::<Value>().await else { break };
                    for rc in body["receipts"].as_array().unwrap() {
                        got.push((
                            rc["index"].as_u64().unwrap(),
                            rc["leaf_hash"].as_str().unwrap().to_string(),
                            format!("w{wid}"),
                            rc["session_seq"].as_u64().unwrap(),
                        ));
                    }
                }
                got
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..900))).await;
        srv.kill9();
        for wr in writers {
            receipts.extend(wr.await.unwrap());
        }
    }
    // Sessions continue across every restart: no (session, seq) twice.
    let mut seen = std::collections::HashSet::new();
    for (index, _, session, seq) in &receipts {
        assert!(
            seen.insert((session.clone(), *seq)),
            "session {session} seq {seq} handed out twice (again at index {index})"
        );
    }
    assert!(
        receipts.len() > 100,
        "the client got too few receipts ({}) for the test to mean anything",
        receipts.len()
    );

    // Restart and let the recovered tail be published.
    let srv = Server::start(&data, &["--config", &cfg]);
    let w = tok.unwrap();
    let max = receipts.iter().map(|r| r.0).max().unwrap();
    let mut size = 0;
    // Opening re-reads every segment and then publishes the recovered
    // tail: on a loaded machine that takes a while, so wait up to a minute.
    for _ in 0..1200 {
        let (s, text) = get(
            &c,
            &format!("{}/v1/logs/crash/checkpoint", srv.url),
            Some(&w),
        )
        .await;
        if s == 200 {
            size = text.lines().nth(1).unwrap().parse::<u64>().unwrap();
            if size > max {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        size > max,
        "checkpoint size {size} does not cover receipt index {max}"
    );
    for (index, leaf, _, _) in &receipts {
        let (s, body) = get(
            &c,
            &format!(
                "{}/v1/logs/crash/proof/inclusion?index={index}&size={size}",
                srv.url
            ),
            Some(&w),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["leaf_hash"].as_str().unwrap(),
            leaf,
            "receipt for index {index} does not match the log"
        );
    }
    assert_eq!(srv.terminate(), Some(0));
    let (code, out, err) = verify(&["--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}
