//! `tracevault bench ingest`: a load generator for the write API. Each worker
//! sends batches and measures the time from send to receipt (the ack latency,
//! which includes the server's fsync). With `--rate`, batches are scheduled on
//! a fixed timetable (open loop), and latency is measured from the scheduled
//! send time, so queueing delay is not hidden (no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tracevault_client::events::Encoding;
use tracevault_client::{Client, StatusCode};

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
    /// What to send: the native JSON API, or OTLP/HTTP spans (protobuf or
    /// JSON), each span a GenAI chat call whose one input message carries
    /// `--size` bytes (2 log events per span: the span and the prompt).
    #[arg(long, value_enum, default_value = "api")]
    format: Format,
    /// Native API only: give each run of this many consecutive events its
    /// own session (ids `s<request>-<n>`), with kinds cycling through prompt,
    /// reasoning, tool_call, tool_result, response and output, as agents
    /// write them (sessions local in time). 0: 64 sessions interleaved in
    /// every request, all `output`.
    #[arg(long, default_value_t = 0)]
    session_events: u64,
}

/// Kinds `--session-events` cycles through.
const KINDS: [&str; 6] = [
    "prompt",
    "reasoning",
    "tool_call",
    "tool_result",
    "response",
    "output",
];
/// Placeholder for the request number in pre-built bodies.
const REQUEST_MARK: &str = "@@REQ@@";

/// Request encodings `bench ingest` can drive.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `POST /v1/logs/{ns}/events`, JSON batches.
    Api,
    /// `POST /otlp/v1/traces`, `application/x-protobuf`.
    OtlpProto,
    /// `POST /otlp/v1/traces`, `application/json`.
    OtlpJson,
}

/// Log events one benchmark span becomes.
const EVENTS_PER_SPAN: u64 = 2;

/// An OTLP export of `n` GenAI spans with ids unique to this run (`run`, a
/// random nonce) and batch `k`, encoded for `format`.
fn otlp_body(format: Format, run: u64, k: u64, n: u64, size: usize) -> anyhow::Result<Vec<u8>> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    };
    let start = 1_795_000_000_000_000_000u64 + k * 1_000_000;
    let spans = (0..n)
        .map(|i| {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&run.to_be_bytes());
            trace_id[8..].copy_from_slice(&((k << 32) | i).to_be_bytes());
            let messages = json!([{"role": "user", "parts": [{"type": "text", "content": payload(size, k * 1_000_003 + i)}]}]);
            Span {
                trace_id: trace_id.to_vec(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                name: "chat bench-model".into(),
                kind: 3,
                start_time_unix_nano: start + i,
                end_time_unix_nano: start + i + 1000,
                attributes: vec![
                    kv("gen_ai.operation.name", "chat".into()),
                    kv("gen_ai.request.model", "bench-model".into()),
                    kv("gen_ai.conversation.id", format!("bench-{}", (k * n + i) % 64)),
                    kv("gen_ai.input.messages", messages.to_string()),
                ],
                ..Default::default()
            }
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Ok(match format {
        Format::OtlpJson => serde_json::to_vec(&req)?,
        _ => prost::Message::encode_to_vec(&req),
    })
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
    // Bounds that keep every count and index arithmetic far from overflow.
    anyhow::ensure!(
        a.events <= 1_000_000_000_000 && a.batch <= 1_000_000 && a.concurrency <= 10_000,
        "at most 10^12 events, batches of 10^6 and 10^4 clients"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(a))
}

async fn run_async(a: IngestArgs) -> anyhow::Result<()> {
    let client = Client::builder()
        .pool_max_idle_per_host(a.concurrency as usize)
        .build(&a.url, &a.token)?;
    let encoding = match a.format {
        Format::Api => Encoding::Json,
        Format::OtlpProto => Encoding::OtlpProto,
        Format::OtlpJson => Encoding::OtlpJson,
    };
    let size_before = checkpoint_size(&client, &a.ns).await;
    let run: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let batches = a.events.div_ceil(a.batch);
    // Pre-build a few distinct bodies so request building does not limit the server.
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..8u64)
            .map(|b| {
                let events: Vec<_> = (0..a.batch)
                    .map(|i| {
                        let (session, kind) = match a.session_events {
                            0 => (format!("bench-{}", (b * a.batch + i) % 64), "output"),
                            n => (
                                format!("{REQUEST_MARK}-{}", i / n),
                                KINDS[(i % KINDS.len() as u64) as usize],
                            ),
                        };
                        json!({"session_id": session, "kind": kind,
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
        let (client, bodies, next, bytes_sent, max_index, retries) = (
            client.clone(),
            bodies.clone(),
            next.clone(),
            bytes_sent.clone(),
            max_index.clone(),
            retries.clone(),
        );
        let (rate, batch, total, format, size, ns, session_events) = (
            a.rate,
            a.batch,
            a.events,
            a.format,
            a.size,
            a.ns.clone(),
            a.session_events,
        );
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
                let body: bytes::Bytes = if format != Format::Api {
                    // OTLP: `batch` counts log events; ids are unique per span,
                    // so every request is new work (no idempotent replays).
                    otlp_body(format, run, k, n.div_ceil(EVENTS_PER_SPAN), size)?.into()
                } else if n == batch && session_events > 0 {
                    body.replace(REQUEST_MARK, &format!("s{k:08}")).into()
                } else if n == batch {
                    body.clone().into()
                } else {
                    let v: serde_json::Value =
                        serde_json::from_str(&body.replace(REQUEST_MARK, &format!("s{k:08}")))?;
                    let evs: Vec<_> = v["events"]
                        .as_array()
                        .map(|e| e[..n as usize].to_vec())
                        .unwrap_or_default();
                    json!({ "events": evs }).to_string().into()
                };
                bytes_sent.fetch_add(body.len() as u64, Ordering::Relaxed);
                // A 503 (load shed) is retried after a pause, as a real client
                // would; the latency then includes the wait.
                let text = loop {
                    match client.append(&ns, encoding, body.clone()).await {
                        Ok(text) => break text,
                        Err(tracevault_client::Error::Status(e))
                            if e.status == StatusCode::SERVICE_UNAVAILABLE =>
                        {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(tracevault_client::Error::Status(e)) => anyhow::bail!(
                            "server answered {}: {}",
                            e.status,
                            String::from_utf8_lossy(&e.body)
                        ),
                        Err(e) => return Err(anyhow::Error::new(e).context("sending")),
                    }
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
    let expect = match a.format {
        Format::Api => max_index.load(Ordering::Relaxed) + 1,
        _ => size_before + batches * a.batch.div_ceil(EVENTS_PER_SPAN) * EVENTS_PER_SPAN,
    };
    let lag = checkpoint_lag(&client, &a.ns, expect).await;
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

/// The tree size a signed checkpoint states (its second line), unopened:
/// a load generator measures, it does not verify.
fn stated_size(note: &str) -> Option<u64> {
    note.lines().nth(1)?.parse().ok()
}

/// The size of the namespace's latest checkpoint (0 if none).
async fn checkpoint_size(client: &Client, ns: &str) -> u64 {
    client
        .checkpoint(ns)
        .await
        .ok()
        .and_then(|t| stated_size(&t))
        .unwrap_or(0)
}

/// Milliseconds from the end of the run until a checkpoint covers `size` entries.
async fn checkpoint_lag(client: &Client, ns: &str, size: u64) -> f64 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if let Ok(text) = client.checkpoint(ns).await
            && stated_size(&text).is_some_and(|s| s >= size)
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

    #[test]
    fn otlp_bodies_map_to_two_new_events_per_span() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        let pb = otlp_body(Format::OtlpProto, 9, 3, 10, 1024).unwrap();
        let req: ExportTraceServiceRequest = prost::Message::decode(&pb[..]).unwrap();
        let mapped = tracevault_schemas::otlp::map_traces(&req);
        assert_eq!(mapped.rejected, 0, "{:?}", mapped.messages);
        assert_eq!(mapped.events.len() as u64, 10 * EVENTS_PER_SPAN);
        assert_eq!(
            mapped.events[1]
                .content
                .as_ref()
                .and_then(|c| c.as_str())
                .map(str::len),
            Some(1024)
        );
        // Another batch number gives other ids (no dedup across requests).
        let other: ExportTraceServiceRequest =
            serde_json::from_slice(&otlp_body(Format::OtlpJson, 9, 4, 10, 1024).unwrap()).unwrap();
        let ids = |r: &ExportTraceServiceRequest| {
            tracevault_schemas::otlp::map_traces(r)
                .events
                .into_iter()
                .map(|e| e.event_id)
                .collect::<Vec<_>>()
        };
        let (a, b) = (ids(&req), ids(&other));
        assert!(a.iter().all(|id| !b.contains(id)));
    }
}
