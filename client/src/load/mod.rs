//! A load generator for the write API (what `tracevault bench ingest`
//! runs). Each worker sends batches and measures the time from send to
//! receipt (the ack latency, which includes the server's fsync). With a
//! rate, batches are scheduled on a fixed timetable (open loop), and latency
//! is measured from the scheduled send time, so queueing delay is not hidden
//! (no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::events::Encoding;
use crate::{Client, Error, StatusCode};

mod otlp;
mod stream;

use otlp::OtlpBodies;

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadFormat {
    /// `POST /v1/logs/{ns}/events`, JSON batches.
    Api,
    /// `POST /otlp/v1/traces`, `application/x-protobuf`.
    OtlpProto,
    /// `POST /otlp/v1/traces`, `application/json`.
    OtlpJson,
    /// `POST /v1/logs/{ns}/sessions/{id}/stream`: `sessions` live streams,
    /// one NDJSON line per write.
    Stream,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Namespace written.
    pub ns: String,
    /// Total events.
    pub events: u64,
    /// Events per request.
    pub batch: u64,
    /// Requests in flight.
    pub concurrency: u64,
    /// Content bytes per event.
    pub size: usize,
    /// Target events per second (open loop); `None`: as fast as possible.
    pub rate: Option<f64>,
    /// The encoding (OTLP: 2 log events per span, the span and the prompt).
    pub format: LoadFormat,
    /// Native API only: give each run of this many consecutive events its
    /// own session, with kinds cycling as agents write them; 0: 64 sessions
    /// interleaved in every request, all `output`.
    pub session_events: u64,
    /// Streams only: session streams open at once (the events are shared
    /// out evenly; the rate is the total over all of them).
    pub sessions: u64,
}

/// Why a load run stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A plan that cannot run (zero or absurd counts).
    #[error("{0}")]
    Plan(String),
    /// The server refused a request (other than a 503, which is retried).
    #[error("server answered {status}: {body}")]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// The answer's body.
        body: String,
    },
    /// The request could not be sent or answered.
    #[error("sending: {0}")]
    Client(#[from] Error),
    /// A body could not be built.
    #[error("building a request: {0}")]
    Json(#[from] serde_json::Error),
    /// A worker task failed.
    #[error("a worker stopped: {0}")]
    Worker(String),
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Events sent.
    pub events: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// Bytes of request bodies sent.
    pub bytes_sent: u64,
    /// Ack latencies (ms), sorted.
    pub latencies_ms: Vec<f64>,
    /// Requests retried after a 503 or a 429.
    pub retried: u64,
    /// Of those, the 429s (`rate_limited`: the token's limit, not the
    /// server's capacity).
    pub rate_limited: u64,
    /// Milliseconds from the end of the run until a checkpoint covered the
    /// last acknowledged event (NaN if none within 30 s).
    pub checkpoint_lag_ms: f64,
}

impl LoadReport {
    /// The report as one JSON object (what `bench ingest --json` prints).
    pub fn to_json(&self) -> Value {
        let mb = self.bytes_sent as f64 / 1e6;
        json!({
            "events": self.events,
            "seconds": self.seconds,
            "events_per_sec": self.events as f64 / self.seconds,
            "mb_per_sec": mb / self.seconds,
            "p50_ms": percentile(&self.latencies_ms, 0.50),
            "p99_ms": percentile(&self.latencies_ms, 0.99),
            "max_ms": self.latencies_ms.last().copied().unwrap_or(0.0),
            "checkpoint_lag_ms": self.checkpoint_lag_ms,
            "retried": self.retried,
            "rate_limited": self.rate_limited,
        })
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let out = self.to_json();
        let num = |k: &str| out[k].as_f64().unwrap_or(0.0);
        write!(
            f,
            "{} events in {:.2}s: {:.0} events/s, {:.1} MB/s; ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests, {} retried after 503/429, {} of them rate-limited); checkpoint covered the last ack after {:.0} ms",
            self.events,
            self.seconds,
            num("events_per_sec"),
            num("mb_per_sec"),
            num("p50_ms"),
            num("p99_ms"),
            num("max_ms"),
            self.latencies_ms.len(),
            self.retried,
            self.rate_limited,
            self.checkpoint_lag_ms
        )
    }
}

/// The longest pause before a retry, whatever `Retry-After` says: a load
/// generator measures, it does not wait out a long ban.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

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

/// Log events one benchmark span becomes.
const EVENTS_PER_SPAN: u64 = 2;

/// A deterministic, compressible-but-not-trivial payload of `n` bytes.
fn payload(n: usize, seed: u64) -> String {
    tracevault_schemas::sample::chat_text(n, seed)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl LoadPlan {
    /// Refuses plans that cannot run, and bounds every count so that no
    /// index arithmetic comes near overflow.
    pub fn check(&self) -> Result<(), LoadError> {
        if self.batch == 0 || self.concurrency == 0 || self.events == 0 {
            return Err(LoadError::Plan(
                "events, batch and concurrency must be positive".into(),
            ));
        }
        if self.events > 1_000_000_000_000 || self.batch > 1_000_000 || self.concurrency > 10_000 {
            return Err(LoadError::Plan(
                "at most 10^12 events, batches of 10^6 and 10^4 clients".into(),
            ));
        }
        if self.format == LoadFormat::Stream && !(1..=100_000).contains(&self.sessions) {
            return Err(LoadError::Plan("streams: 1 to 100000 sessions".into()));
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(LoadError::Plan("the rate must be a positive number".into()));
        }
        Ok(())
    }
}

/// Runs `plan` against the server `client` talks to (its token a writer's).
pub async fn run(client: &Client, plan: &LoadPlan) -> Result<LoadReport, LoadError> {
    plan.check()?;
    let a = plan;
    let encoding = match a.format {
        LoadFormat::Api => Encoding::Json,
        LoadFormat::OtlpProto => Encoding::OtlpProto,
        LoadFormat::OtlpJson => Encoding::OtlpJson,
        LoadFormat::Stream => return stream::run(client, plan).await,
    };
    let size_before = checkpoint_size(client, &a.ns).await;
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
    // OTLP: full requests are patched copies of a few templates (new trace
    // ids each time), so that building them does not limit the server.
    let otlp: Option<Arc<OtlpBodies>> = match a.format {
        LoadFormat::Api => None,
        f => Some(Arc::new(OtlpBodies::new(
            f,
            run,
            a.batch.div_ceil(EVENTS_PER_SPAN),
            a.size,
        )?)),
    };
    let next = Arc::new(AtomicU64::new(0));
    let max_index = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let bytes_sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (client, bodies, otlp, next, bytes_sent, max_index, retries, limited) = (
            client.clone(),
            bodies.clone(),
            otlp.clone(),
            next.clone(),
            bytes_sent.clone(),
            max_index.clone(),
            retries.clone(),
            limited.clone(),
        );
        let (rate, batch, total, ns, session_events) =
            (a.rate, a.batch, a.events, a.ns.clone(), a.session_events);
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
                let body: bytes::Bytes = if let Some(otlp) = &otlp {
                    // OTLP: `batch` counts log events; ids are unique per span,
                    // so every request is new work (no idempotent replays).
                    otlp.body(k, n.div_ceil(EVENTS_PER_SPAN))?.into()
                } else if n == batch && session_events > 0 {
                    body.replace(REQUEST_MARK, &format!("s{k:08}")).into()
                } else if n == batch {
                    body.clone().into()
                } else {
                    let v: Value =
                        serde_json::from_str(&body.replace(REQUEST_MARK, &format!("s{k:08}")))?;
                    let evs: Vec<_> = v["events"]
                        .as_array()
                        .map(|e| e[..n as usize].to_vec())
                        .unwrap_or_default();
                    json!({ "events": evs }).to_string().into()
                };
                bytes_sent.fetch_add(body.len() as u64, Ordering::Relaxed);
                // A 503 (load shed) or 429 (rate limited) is retried after
                // the server's Retry-After (else a short pause), as a real
                // client would; the latency then includes the wait.
                let text = loop {
                    match client.append(&ns, encoding, body.clone()).await {
                        Ok(text) => break text,
                        Err(Error::Status(e)) if e.is_retryable() => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            if e.status == StatusCode::TOO_MANY_REQUESTS {
                                limited.fetch_add(1, Ordering::Relaxed);
                            }
                            let wait = e.retry_after.unwrap_or(Duration::from_millis(20));
                            tokio::time::sleep(wait.min(MAX_RETRY_WAIT)).await;
                        }
                        Err(Error::Status(e)) => {
                            return Err(LoadError::Refused {
                                status: e.status,
                                body: String::from_utf8_lossy(&e.body).into_owned(),
                            });
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                lat.push(scheduled.elapsed().as_secs_f64() * 1000.0);
                if let Some(i) = last_index(&text) {
                    max_index.fetch_max(i, Ordering::Relaxed);
                }
            }
            Ok::<_, LoadError>(lat)
        }));
    }
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await.map_err(|e| LoadError::Worker(e.to_string()))??);
    }
    let seconds = start.elapsed().as_secs_f64();
    let expect = match a.format {
        LoadFormat::Api => max_index.load(Ordering::Relaxed) + 1,
        _ => size_before + batches * a.batch.div_ceil(EVENTS_PER_SPAN) * EVENTS_PER_SPAN,
    };
    let checkpoint_lag_ms = checkpoint_lag(client, &a.ns, expect).await;
    lat.sort_by(|x, y| x.total_cmp(y));
    Ok(LoadReport {
        events: a.events,
        seconds,
        bytes_sent: bytes_sent.load(Ordering::Relaxed),
        latencies_ms: lat,
        retried: retries.load(Ordering::Relaxed),
        rate_limited: limited.load(Ordering::Relaxed),
        checkpoint_lag_ms,
    })
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
        let pb = otlp::otlp_body(LoadFormat::OtlpProto, 9, 3, 10, 1024).unwrap();
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
            serde_json::from_slice(&otlp::otlp_body(LoadFormat::OtlpJson, 9, 4, 10, 1024).unwrap())
                .unwrap();
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
