//! The load generator of live session streams (`bench ingest --format
//! stream`): `sessions` streams open at once, each sending its lines one
//! write at a time, as an agent does, on a fixed timetable when a rate is
//! given (open loop: latency counts from the scheduled send time). The
//! latency measured is per line: from sending it to reading its receipt on
//! the same, still open, request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{LoadError, LoadPlan, LoadReport, checkpoint_lag, checkpoint_size, payload};
use crate::Client;

/// What one stream measured.
struct Measured {
    latencies_ms: Vec<f64>,
    max_index: Option<u64>,
    bytes: u64,
}

/// Runs `plan` as session streams.
pub(super) async fn run(client: &Client, plan: &LoadPlan) -> Result<LoadReport, LoadError> {
    let sessions = plan.sessions.max(1);
    let size_before = checkpoint_size(client, &plan.ns).await;
    let run: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    // A few distinct lines, so that building them does not limit the server.
    let lines: Arc<Vec<Bytes>> = Arc::new(
        (0..8u64)
            .map(|i| {
                let mut l = json!({"kind": "output", "content": payload(plan.size, i * 7_919)})
                    .to_string()
                    .into_bytes();
                l.push(b'\n');
                Bytes::from(l)
            })
            .collect(),
    );
    let per_session = plan.events.div_ceil(sessions);
    // Each session's share of the rate; sessions start spread over one
    // period, so their lines do not all fall on the same instant.
    let rate = plan.rate.map(|r| r / sessions as f64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let n = per_session.min(plan.events.saturating_sub(s * per_session));
        if n == 0 {
            break;
        }
        let offset = rate.map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(s as f64 / sessions as f64 / r)
        });
        let session = format!("bench-{run:x}-{s}");
        tasks.push(tokio::spawn(one_stream(
            client.clone(),
            plan.ns.clone(),
            session,
            n,
            rate,
            start + offset,
            lines.clone(),
        )));
    }
    let mut latencies_ms = Vec::new();
    let mut max_index = None;
    let mut bytes_sent = 0;
    for t in tasks {
        let m = t.await.map_err(|e| LoadError::Worker(e.to_string()))??;
        latencies_ms.extend(m.latencies_ms);
        max_index = max_index.max(m.max_index);
        bytes_sent += m.bytes;
    }
    let seconds = start.elapsed().as_secs_f64();
    let expect = max_index.map_or(size_before, |i| i + 1);
    let checkpoint_lag_ms = checkpoint_lag(client, &plan.ns, expect).await;
    latencies_ms.sort_by(|x, y| x.total_cmp(y));
    Ok(LoadReport {
        events: plan.events,
        seconds,
        bytes_sent,
        latencies_ms,
        retried: 0,
        rate_limited: 0,
        checkpoint_lag_ms,
    })
}

/// One session's stream: `n` lines, at `rate` lines/s from `first` (else as
/// fast as the stream takes them), each timed to its receipt.
async fn one_stream(
    client: Client,
    ns: String,
    session: String,
    n: u64,
    rate: Option<f64>,
    first: Instant,
    lines: Arc<Vec<Bytes>>,
) -> Result<Measured, LoadError> {
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let producer = tokio::spawn(async move {
        let mut bytes = 0u64;
        for i in 0..n {
            let at = match rate {
                Some(r) => {
                    let at = first + Duration::from_secs_f64(i as f64 / r);
                    tokio::time::sleep_until(at.into()).await;
                    at
                }
                None => Instant::now(),
            };
            let line = lines[(i % lines.len() as u64) as usize].clone();
            bytes += line.len() as u64;
            if sent_tx.send(at).is_err() || body_tx.send(Ok(line)).await.is_err() {
                break;
            }
        }
        bytes
    });
    let body = futures::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut receipts = client.stream_session(&ns, &session, body).await?;
    let mut m = Measured {
        latencies_ms: Vec::with_capacity(n as usize),
        max_index: None,
        bytes: 0,
    };
    while let Some(line) = receipts.next_line().await {
        let v: Value = serde_json::from_slice(&line?)?;
        if let Some(summary) = v.get("summary") {
            if summary["end"] != "eof" {
                return Err(refused(&session, &v));
            }
            break;
        }
        if v.get("error").is_some() {
            return Err(refused(&session, &v));
        }
        if v.get("line").is_some() {
            let sent = sent_rx
                .recv()
                .await
                .ok_or_else(|| LoadError::Worker("a receipt for a line never sent".into()))?;
            m.latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
            m.max_index = m.max_index.max(v["index"].as_u64());
        }
    }
    m.bytes = producer
        .await
        .map_err(|e| LoadError::Worker(e.to_string()))?;
    if m.latencies_ms.len() as u64 != n {
        return Err(LoadError::Worker(format!(
            "stream {session}: {} receipts for {n} lines",
            m.latencies_ms.len()
        )));
    }
    Ok(m)
}

fn refused(session: &str, v: &Value) -> LoadError {
    LoadError::Refused {
        status: crate::StatusCode::OK,
        body: format!("stream {session}: {v}"),
    }
}
