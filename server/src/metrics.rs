//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! A handful of counters and one histogram kept with atomics and small maps;
//! no metrics framework, because the set is small and fixed. Label values
//! come from bounded sets (namespaces this server writes, sources, error
//! codes), so the output cannot grow without bound from request input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracevault_vault::LogStats;

/// Where events came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// `POST /v1/logs/{ns}/events`.
    Api,
    /// `POST /v1/logs/{ns}/sessions/{id}/stream`.
    Stream,
    /// `POST /otlp/v1/traces`.
    OtlpTraces,
    /// `POST /otlp/v1/logs`.
    OtlpLogs,
}

impl Source {
    const ALL: [Source; 4] = [
        Source::Api,
        Source::Stream,
        Source::OtlpTraces,
        Source::OtlpLogs,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Stream => "stream",
            Source::OtlpTraces => "otlp_traces",
            Source::OtlpLogs => "otlp_logs",
        }
    }
}

/// Response extension naming the stable error code of a failed request, so
/// the metrics middleware can count rejections by code.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Upper bounds (seconds) of the ack latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram of durations.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    /// New entries appended (retried duplicates excluded), by (namespace, source).
    events: Mutex<BTreeMap<(String, Source), u64>>,
    /// Request body bytes received (as sent, before decompression), by source.
    bytes: [AtomicU64; 4],
    /// Time from request start to durable receipt, by source.
    ack: [Histogram; 4],
    /// Failed requests, by (HTTP status, stable code).
    rejected: Mutex<BTreeMap<(u16, &'static str), u64>>,
}

fn idx(s: Source) -> usize {
    s as usize
}

impl Metrics {
    /// Records `events` appended to `ns` from `source`, `bytes` of request
    /// body, acknowledged `latency` after the request started.
    pub fn ingested(&self, ns: &str, source: Source, events: u64, bytes: u64, latency: Duration) {
        if let Ok(mut m) = self.events.lock() {
            *m.entry((ns.to_string(), source)).or_default() += events;
        }
        self.bytes[idx(source)].fetch_add(bytes, Ordering::Relaxed);
        if events > 0 {
            self.ack[idx(source)].observe(latency);
        }
    }

    /// Counts a failed request.
    pub fn rejected(&self, status: u16, code: &'static str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry((status, code)).or_default() += 1;
        }
    }

    /// Appends the witness lag of each namespace: entries checkpointed but
    /// not yet covered by a checkpoint the witness policy cosigned.
    pub fn render_witness_lag(o: &mut String, lags: &[(String, u64)]) {
        header(
            o,
            "tracevault_witness_lag_entries",
            "gauge",
            "Entries covered by the latest checkpoint but not yet by one the witnesses cosigned.",
        );
        for (ns, lag) in lags {
            let _ = writeln!(
                o,
                "tracevault_witness_lag_entries{{ns=\"{}\"}} {lag}",
                esc(ns)
            );
        }
    }

    /// Appends who this node is and how many namespaces it writes (several
    /// nodes on one store: `docs/cluster.md`).
    pub fn render_node(o: &mut String, instance: &str, leases_held: usize) {
        header(
            o,
            "tracevault_node_info",
            "gauge",
            "This node: its instance id (the owner named in the leases it holds).",
        );
        let _ = writeln!(
            o,
            "tracevault_node_info{{instance=\"{}\"}} 1",
            esc(instance)
        );
        header(
            o,
            "tracevault_cluster_leases_held",
            "gauge",
            "Namespaces this node holds the lease of and writes.",
        );
        let _ = writeln!(o, "tracevault_cluster_leases_held {leases_held}");
    }

    /// Renders everything, with the vault's per-namespace log stats and the
    /// number of write requests in flight.
    pub fn render(
        &self,
        logs: &[(String, LogStats)],
        writes_in_flight: u64,
        now_ms: u64,
    ) -> String {
        let mut o = String::with_capacity(4096);
        header(
            &mut o,
            "tracevault_events_ingested_total",
            "counter",
            "Events appended to the log, by namespace and source.",
        );
        if let Ok(m) = self.events.lock() {
            for ((ns, src), n) in m.iter() {
                let _ = writeln!(
                    o,
                    "tracevault_events_ingested_total{{ns=\"{}\",source=\"{}\"}} {n}",
                    esc(ns),
                    src.as_str()
                );
            }
        }
        header(
            &mut o,
            "tracevault_server_bytes_total",
            "counter",
            "Request body bytes received by ingest endpoints, before decompression.",
        );
        for s in Source::ALL {
            let _ = writeln!(
                o,
                "tracevault_server_bytes_total{{source=\"{}\"}} {}",
                s.as_str(),
                self.bytes[idx(s)].load(Ordering::Relaxed)
            );
        }
        header(
            &mut o,
            "tracevault_ack_latency_seconds",
            "histogram",
            "Time from request start to durable receipt.",
        );
        for s in Source::ALL {
            let h = &self.ack[idx(s)];
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "tracevault_ack_latency_seconds_bucket{{source=\"{}\",le=\"{b}\"}} {}",
                    s.as_str(),
                    h.buckets[i].load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "tracevault_ack_latency_seconds_bucket{{source=\"{}\",le=\"+Inf\"}} {count}",
                s.as_str()
            );
            let _ = writeln!(
                o,
                "tracevault_ack_latency_seconds_sum{{source=\"{}\"}} {}",
                s.as_str(),
                h.sum_us.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                o,
                "tracevault_ack_latency_seconds_count{{source=\"{}\"}} {count}",
                s.as_str()
            );
        }
        header(
            &mut o,
            "tracevault_rejected_requests_total",
            "counter",
            "Requests answered with an error, by HTTP status and stable error code.",
        );
        if let Ok(m) = self.rejected.lock() {
            for ((status, code), n) in m.iter() {
                let _ = writeln!(
                    o,
                    "tracevault_rejected_requests_total{{status=\"{status}\",code=\"{code}\"}} {n}"
                );
            }
        }
        header(
            &mut o,
            "tracevault_write_requests_in_flight",
            "gauge",
            "Write requests being handled (bounded by limits.max_inflight_writes).",
        );
        let _ = writeln!(o, "tracevault_write_requests_in_flight {writes_in_flight}");
        type Stat = fn(&LogStats, u64) -> Option<f64>;
        let per_ns: [(&str, &str, &str, Stat); 7] = [
            (
                "tracevault_queue_depth",
                "gauge",
                "Append requests waiting for the namespace's sequencer.",
                |s, _| Some(s.queued_requests as f64),
            ),
            (
                "tracevault_unpublished_entries",
                "gauge",
                "Durable entries not yet covered by a checkpoint in the store.",
                |s, _| Some(s.durable.saturating_sub(s.published) as f64),
            ),
            (
                "tracevault_log_size",
                "gauge",
                "Entries in the namespace's log (durable).",
                |s, _| Some(s.durable as f64),
            ),
            (
                "tracevault_segment_uploads_total",
                "counter",
                "Segments written to the object store by this server.",
                |s, _| Some(s.segments_uploaded as f64),
            ),
            (
                "tracevault_segments_encoded_ahead_total",
                "counter",
                "Segments encoded while the previous one was being written.",
                |s, _| Some(s.segments_encoded_ahead as f64),
            ),
            (
                "tracevault_publish_failures_total",
                "counter",
                "Failed publish attempts (retried) against the object store.",
                |s, _| Some(s.publish_failures as f64),
            ),
            (
                "tracevault_checkpoint_age_seconds",
                "gauge",
                "Seconds since this server last published a checkpoint.",
                |s, now| {
                    (s.checkpoint_at_ms > 0)
                        .then(|| now.saturating_sub(s.checkpoint_at_ms) as f64 / 1e3)
                },
            ),
        ];
        for (name, ty, help, f) in per_ns {
            header(&mut o, name, ty, help);
            for (ns, s) in logs {
                if let Some(v) = f(s, now_ms) {
                    let _ = writeln!(o, "{name}{{ns=\"{}\"}} {v}", esc(ns));
                }
            }
        }
        o
    }
}

fn header(o: &mut String, name: &str, ty: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {ty}");
}

/// Escapes a label value (namespaces are restricted, but be safe).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_log_stats() {
        let m = Metrics::default();
        m.ingested("a", Source::OtlpTraces, 3, 100, Duration::from_millis(3));
        m.ingested("a", Source::OtlpTraces, 2, 50, Duration::from_millis(700));
        m.rejected(400, "invalid_json");
        let stats = LogStats {
            durable: 10,
            published: 7,
            queued_requests: 1,
            segments_uploaded: 2,
            segments_encoded_ahead: 1,
            publish_failures: 0,
            checkpoint_at_ms: 1_000,
        };
        let out = m.render(&[("a".into(), stats)], 4, 3_500);
        for line in [
            "tracevault_events_ingested_total{ns=\"a\",source=\"otlp_traces\"} 5",
            "tracevault_server_bytes_total{source=\"otlp_traces\"} 150",
            "tracevault_ack_latency_seconds_bucket{source=\"otlp_traces\",le=\"0.005\"} 1",
            "tracevault_ack_latency_seconds_bucket{source=\"otlp_traces\",le=\"1\"} 2",
            "tracevault_ack_latency_seconds_count{source=\"otlp_traces\"} 2",
            "tracevault_rejected_requests_total{status=\"400\",code=\"invalid_json\"} 1",
            "tracevault_write_requests_in_flight 4",
            "tracevault_unpublished_entries{ns=\"a\"} 3",
            "tracevault_checkpoint_age_seconds{ns=\"a\"} 2.5",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }
}
