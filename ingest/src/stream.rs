//! Live session streams: `POST /v1/logs/{ns}/sessions/{session_id}/stream`.
//!
//! The request body is NDJSON that may stay open for hours. Complete lines
//! are appended as they arrive (all complete lines of a network read form one
//! append, so a fast producer gets group commits and a slow one gets low
//! latency), and each line's receipt is written to the response *while the
//! request is still open*, as soon as the event is durable.
//!
//! Response lines (NDJSON), in line order:
//! - `{"line": n, "index", "leaf_hash", "session_seq"}`: line `n` (1-based) is durable;
//! - `{"line": n, "error": {"code", "message"}}`: line `n` was refused (bad JSON,
//!   wrong session, too long); the stream goes on;
//! - last, `{"summary": {"committed", "first_index", "last_index", "ranges",
//!   "rejected_lines", "discarded_bytes", "end"}}`.
//!
//! A client that disconnects mid-line loses only that unfinished line: every
//! complete line read before the disconnect is appended. Failures of the log
//! itself (overloaded, lease lapsed) are retried for a bounded time while the
//! body is not read, which pushes back on the client through TCP; if the log
//! stays unavailable the stream ends with an error line and the summary.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracevault_schemas::{Event, validate_session_id};
use tracevault_vault::record::Prepared;
use tracevault_vault::token::Role;
use tracevault_vault::{AppendError, VaultError, validate_namespace};

use crate::error::ApiError;
use crate::metrics::Source;
use crate::{AppState, auth};

/// Most index ranges listed in the summary (the receipts list every index).
const MAX_SUMMARY_RANGES: usize = 1000;

/// `POST /v1/logs/{ns}/sessions/{session_id}/stream`.
pub async fn session_stream(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (ns, session) = path
        .map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Writer], Some(&ns))?;
    validate_namespace(&ns, false)?;
    validate_session_id(&session)
        .map_err(|e| ApiError::bad_request("invalid_session_id", e.to_string()))?;
    if let Some(enc) = headers.get(header::CONTENT_ENCODING)
        && !enc.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            "session streams are not compressed (each line must be readable as it arrives)",
        ));
    }
    let permit = st.stream_permits.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(
            "too_many_streams",
            format!(
                "{} session streams are open; retry later",
                st.limits.max_streams
            ),
        )
    })?;
    // Open the log now, so that a namespace that cannot be opened fails the
    // request with a status instead of an in-band error.
    st.vault.log(&ns).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let ingest = StreamIngest {
        st,
        ns,
        session,
        sub: claims.sub,
        jti: claims.jti,
        tx,
    };
    tokio::spawn(async move {
        let _permit = permit;
        ingest.run(body).await;
    });
    let out = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(out),
    )
        .into_response())
}

struct StreamIngest {
    st: AppState,
    ns: String,
    session: String,
    sub: String,
    jti: String,
    tx: mpsc::Sender<Bytes>,
}

/// What happened over the stream's life, for the summary line.
#[derive(Default)]
struct Tally {
    committed: u64,
    ranges: Vec<(u64, u64)>,
    ranges_truncated: bool,
    rejected_lines: u64,
    discarded_bytes: u64,
}

impl Tally {
    fn add(&mut self, index: u64) {
        self.committed += 1;
        let full = self.ranges.len() >= MAX_SUMMARY_RANGES;
        match self.ranges.last_mut() {
            Some((_, b)) if *b + 1 == index => *b = index,
            _ if full => self.ranges_truncated = true,
            _ => self.ranges.push((index, index)),
        }
    }
}

/// One complete line of the body, numbered from 1.
struct Line {
    n: u64,
    text: Bytes,
}

impl StreamIngest {
    async fn send(&self, v: Value) {
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        // A client that stopped reading loses its receipts, never its events.
        let _ = self.tx.send(Bytes::from(line)).await;
    }

    async fn run(self, body: Body) {
        let idle = Duration::from_secs(self.st.limits.stream_idle_timeout_s.max(1));
        let max_line = self.st.limits.max_event_bytes;
        let mut body = body.into_data_stream();
        let mut buf = BytesMut::new();
        let mut tally = Tally::default();
        let mut line_no = 0u64;
        // Skipping the rest of an over-long line until its newline.
        let mut skipping = false;
        let end = loop {
            let chunk = match tokio::time::timeout(idle, body.next()).await {
                Err(_) => break "idle_timeout",
                Ok(None) => {
                    // A clean end of body: the last line needs no newline.
                    if !buf.is_empty() && !skipping {
                        line_no += 1;
                        let text = buf.split().freeze();
                        if let Err(end) = self
                            .commit(vec![Line { n: line_no, text }], &mut tally)
                            .await
                        {
                            break end;
                        }
                    }
                    break "eof";
                }
                Ok(Some(Err(_))) => {
                    // The client went away: only the unfinished line is lost.
                    tally.discarded_bytes += buf.len() as u64;
                    break "disconnected";
                }
                Ok(Some(Ok(c))) => c,
            };
            let received = chunk.len();
            buf.extend_from_slice(&chunk);
            let mut lines = Vec::new();
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let text = buf.split_to(pos + 1).freeze();
                if skipping {
                    skipping = false;
                    tally.discarded_bytes += text.len() as u64;
                    continue;
                }
                line_no += 1;
                lines.push(Line {
                    n: line_no,
                    text: text.slice(..pos),
                });
            }
            if buf.len() > max_line {
                line_no += 1;
                tally.rejected_lines += 1;
                tally.discarded_bytes += buf.len() as u64;
                buf.clear();
                skipping = true;
                self.send(json!({"line": line_no, "error": {"code": "event_too_large",
                    "message": format!("line is longer than {max_line} bytes; skipped to the next newline")}}))
                    .await;
            } else if skipping {
                tally.discarded_bytes += buf.len() as u64;
                buf.clear();
            }
            let _ = received;
            if !lines.is_empty()
                && let Err(end) = self.commit(lines, &mut tally).await
            {
                break end;
            }
        };
        let ranges: Vec<[u64; 2]> = tally.ranges.iter().map(|&(a, b)| [a, b]).collect();
        tracing::info!(ns = %self.ns, session = %self.session, committed = tally.committed, end, "session stream ended");
        self.send(json!({"summary": {
            "committed": tally.committed,
            "first_index": tally.ranges.first().map(|r| r.0),
            "last_index": tally.ranges.last().map(|r| r.1),
            "ranges": ranges,
            "ranges_truncated": tally.ranges_truncated,
            "rejected_lines": tally.rejected_lines,
            "discarded_bytes": tally.discarded_bytes,
            "end": end,
        }}))
        .await;
    }

    /// Parses `lines`, appends the valid ones as one batch and streams their
    /// receipts (and the errors of invalid ones) in line order. `Err` ends the
    /// stream: the log stayed unavailable.
    async fn commit(&self, lines: Vec<Line>, tally: &mut Tally) -> Result<(), &'static str> {
        let started = Instant::now();
        let bytes: usize = lines.iter().map(|l| l.text.len() + 1).sum();
        let mut outcome: Vec<(u64, Result<usize, ApiError>)> = Vec::with_capacity(lines.len());
        let mut events = Vec::new();
        for l in &lines {
            match self.parse(&l.text) {
                Ok(Some(ev)) => {
                    outcome.push((l.n, Ok(events.len())));
                    events.push(ev);
                }
                Ok(None) => {} // blank line
                Err(e) => outcome.push((l.n, Err(e))),
            }
        }
        let receipts = if events.is_empty() {
            Vec::new()
        } else {
            match self.append(events).await {
                Ok(r) => r,
                Err(e) => {
                    let first = lines.first().map(|l| l.n).unwrap_or(0);
                    let last = lines.last().map(|l| l.n).unwrap_or(0);
                    self.send(json!({"lines": [first, last], "error": {"code": e.code, "message": e.message}}))
                        .await;
                    return Err("append_failed");
                }
            }
        };
        self.st.metrics.ingested(
            &self.ns,
            Source::Stream,
            receipts.iter().filter(|r| !r.duplicate).count() as u64,
            bytes as u64,
            started.elapsed(),
        );
        for (n, o) in outcome {
            match o {
                Ok(i) => {
                    let r = &receipts[i];
                    tally.add(r.index);
                    let mut v = json!({"line": n, "index": r.index, "leaf_hash": r.leaf_hash, "session_seq": r.session_seq});
                    if r.duplicate {
                        v["duplicate"] = json!(true);
                    }
                    self.send(v).await;
                }
                Err(e) => {
                    tally.rejected_lines += 1;
                    self.send(json!({"line": n, "error": {"code": e.code, "message": e.message}}))
                        .await;
                }
            }
        }
        Ok(())
    }

    /// One line → an event of this session. `Ok(None)` for a blank line.
    fn parse(&self, text: &[u8]) -> Result<Option<Prepared>, ApiError> {
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let mut v: Value = serde_json::from_slice(text)
            .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
        if let Value::Object(m) = &mut v {
            match m.get("session_id") {
                None => {
                    m.insert("session_id".into(), Value::String(self.session.clone()));
                }
                Some(Value::String(s)) if *s == self.session => {}
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "session_mismatch",
                        format!(
                            "session_id must be absent or {:?} on this stream",
                            self.session
                        ),
                    ));
                }
            }
        }
        let ev = Event::from_value(v)
            .map_err(|e| ApiError::bad_request("invalid_event", e.to_string()))?;
        Prepared::new(ev)
            .map(Some)
            .map_err(|e| ApiError::unavailable("seal_failed", e.to_string()))
    }

    /// Appends, waiting out rate limits and transient overload for a bounded
    /// time (the body is not read meanwhile: backpressure reaches the client).
    async fn append(
        &self,
        events: Vec<Prepared>,
    ) -> Result<Vec<tracevault_vault::Receipt>, ApiError> {
        let deadline = Instant::now() + Duration::from_millis(self.st.limits.stream_retry_ms);
        while let Err(wait) = self.st.limiter.take(&self.jti, events.len() as u64) {
            if Instant::now() + wait > deadline {
                return Err(crate::rate_limited(wait));
            }
            tokio::time::sleep(wait).await;
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            match self
                .st
                .vault
                .append_prepared(&self.ns, events.clone(), &self.sub)
                .await
            {
                Ok(r) => return Ok(r),
                Err(VaultError::Append(AppendError::Overloaded(_) | AppendError::LeaseLapsed))
                    if Instant::now() + backoff < deadline =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
