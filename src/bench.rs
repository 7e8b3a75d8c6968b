//! `tracevault bench ingest`: a load generator for the write API. Each worker
//! sends batches and measures the time from send to receipt (the ack latency,
//! which includes the server's fsync). With `--rate`, batches are scheduled on
//! a fixed timetable (open loop), and latency is measured from the scheduled
//! send time, so queueing delay is not hidden (no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;

/// Options of `bench ingest`.
#[derive(Args, Clone)]
pub struct IngestArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8470")]
    url: String,
    /// Writer token.
    #[arg(long, env = "TRACEVAULT_TOKEN")]
    token: String,
    /// Namespace.
    #[arg(long)]
    ns: String,
    /// Total events.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    batch: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: u64,
    /// Content bytes per event.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Target events per second (open loop); default: as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// A deterministic, compressible-but-not-trivial payload of `n` bytes.
fn payload(n: usize, seed: u64) -> String {
    const WORDS: [&str; 16] = [
        "the",
        "model",
        "called",
        "tool",
        "search",
        "with",
        "query",
        "result",
        "reasoning",
        "step",
        "token",
        "agent",
        "plan",
        "observe",
        "answer",
        "because",
    ];
    let mut s = String::with_capacity(n + 16);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while s.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[(x % 16) as usize]);
        s.push(' ');
    }
    s.truncate(n);
    s
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the load and prints the result.
pub fn run(a: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.batch > 0 && a.concurrency > 0 && a.events > 0,
        "events, batch and concurrency must be positive"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(a))
}

async fn run_async(a: IngestArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency as usize)
        .build()?;
    let url = format!("{}/v1/logs/{}/events", a.url.trim_end_matches('/'), a.ns);
    let batches = a.events.div_ceil(a.batch);
    // Pre-build a few distinct bodies so request building does not limit the server.
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..8u64)
            .map(|b| {
                let events: Vec<_> = (0..a.batch)
                    .map(|i| {
                        json!({"session_id": format!("bench-{}", (b * a.batch + i) % 64), "kind": "output",
                               "content": payload(a.size, b * 1_000_003 + i)})
                    })
                    .collect();
                json!({ "events": events }).to_string()
            })
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let max_index = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let bytes_sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (client, url, token, bodies, next, bytes_sent, max_index, retries) = (
            client.clone(),
            url.clone(),
            a.token.clone(),
            bodies.clone(),
            next.clone(),
            bytes_sent.clone(),
            max_index.clone(),
            retries.clone(),
        );
        let (rate, batch, total) = (a.rate, a.batch, a.events);
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= batches {
                    break;
                }
                let n = batch.min(total - k * batch);
                let scheduled = match rate {
                    Some(r) => {
                        let at = start + Duration::from_secs_f64((k * batch) as f64 / r);
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => Instant::now(),
                };
                let body = &bodies[(k % bodies.len() as u64) as usize];
                let body = if n == batch {
                    body.clone()
                } else {
                    let v: serde_json::Value = serde_json::from_str(body)?;
                    let evs: Vec<_> = v["events"]
                        .as_array()
                        .map(|e| e[..n as usize].to_vec())
                        .unwrap_or_default();
                    json!({ "events": evs }).to_string()
                };
                bytes_sent.fetch_add(body.len() as u64, Ordering::Relaxed);
                // A 503 (load shed) is retried after a pause, as a real client
                // would; the latency then includes the wait.
                let text = loop {
                    let resp = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .context("sending")?;
                    let status = resp.status();
                    let text = resp.text().await?;
                    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                        retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    anyhow::ensure!(status.is_success(), "server answered {status}: {text}");
                    break text;
                };
                lat.push(scheduled.elapsed().as_secs_f64() * 1000.0);
                if let Some(i) = last_index(&text) {
                    max_index.fetch_max(i, Ordering::Relaxed);
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    let lag = checkpoint_lag(&client, &a, max_index.load(Ordering::Relaxed) + 1).await;
    lat.sort_by(|x, y| x.total_cmp(y));
    let mb = bytes_sent.load(Ordering::Relaxed) as f64 / 1e6;
    let out = json!({
        "events": a.events,
        "seconds": secs,
        "events_per_sec": a.events as f64 / secs,
        "mb_per_sec": mb / secs,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": lat.last().copied().unwrap_or(0.0),
        "checkpoint_lag_ms": lag,
        "retried_503": retries.load(Ordering::Relaxed),
    });
    if a.json {
        println!("{out}");
    } else {
        println!(
            "{} events in {:.2}s: {:.0} events/s, {:.1} MB/s; ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests, {} retried after 503); checkpoint covered the last ack after {:.0} ms",
            a.events,
            secs,
            out["events_per_sec"].as_f64().unwrap_or(0.0),
            out["mb_per_sec"].as_f64().unwrap_or(0.0),
            out["p50_ms"].as_f64().unwrap_or(0.0),
            out["p99_ms"].as_f64().unwrap_or(0.0),
            out["max_ms"].as_f64().unwrap_or(0.0),
            lat.len(),
            retries.load(Ordering::Relaxed),
            lag
        );
    }
    Ok(())
}

/// The last receipt index in a response body (cheap scan, no full parse).
fn last_index(body: &str) -> Option<u64> {
    let at = body.rfind("\"index\":")? + 8;
    body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// Milliseconds from the end of the run until a checkpoint covers `size` entries.
async fn checkpoint_lag(client: &reqwest::Client, a: &IngestArgs, size: u64) -> f64 {
    let url = format!(
        "{}/v1/logs/{}/checkpoint",
        a.url.trim_end_matches('/'),
        a.ns
    );
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = client.get(&url).bearer_auth(&a.token).send().await
            && let Ok(text) = r.text().await
            && text
                .lines()
                .nth(1)
                .and_then(|l| l.parse::<u64>().ok())
                .is_some_and(|s| s >= size)
        {
            return t.elapsed().as_secs_f64() * 1000.0;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f64::NAN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_exact_size_and_varies() {
        assert_eq!(payload(1024, 1).len(), 1024);
        assert_ne!(payload(64, 1), payload(64, 2));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert_eq!(
            last_index(r#"{"receipts":[{"index":7,"x":1},{"index":12,"leaf_hash":"a"}]}"#),
            Some(12)
        );
        assert_eq!(last_index("{}"), None);
    }
}
