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

use std::sync::Arc;
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
use tracevault_vault::lease::LeaseError;
use tracevault_vault::log::OpenError;
use tracevault_vault::record::Prepared;
use tracevault_vault::token::{Claims, Role};
use tracevault_vault::{AppendError, VaultError, validate_namespace};

use crate::error::ApiError;
use crate::metrics::Source;
use crate::{AppState, auth};

/// Batches of lines (one per network read) a stream queues while an append
/// is being made durable.
const STREAM_QUEUE: usize = 64;
/// Bytes a stream may hold queued beyond two of its longest lines: the
/// lines' text and their bookkeeping (see [`Queue`]).
const STREAM_QUEUE_BYTES: usize = 4 << 20;
/// What a queued line costs beyond its text (its `Line`, and an error's
/// message if it has one): a body of bare newlines queues no text at all,
/// but a `Line` each.
const LINE_COST: usize = 128;
/// Most lines one append of a stream takes from its queue.
const MAX_STREAM_BATCH_LINES: usize = 10_000;

/// Most index ranges listed in the summary (the receipts list every index).
const MAX_SUMMARY_RANGES: usize = 1000;

fn too_long(max: usize) -> ApiError {
    ApiError::too_large(
        "event_too_large",
        format!("line is longer than {max} bytes; skipped to the next newline"),
    )
}

/// The summary's `end` for a token that stopped being valid.
fn end_reason(e: &ApiError) -> &'static str {
    if e.code == "token_revoked" {
        "token_revoked"
    } else {
        "token_expired"
    }
}

/// `POST /v1/logs/{ns}/sessions/{session_id}/stream`.
pub async fn session_stream(
    State(st): State<AppState>,
    uri: axum::http::Uri,
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
    let budget = auth::budget_key(&claims);
    let own_slot = st.stream_slots.try_take(&budget).ok_or_else(|| {
        ApiError::unavailable(
            "too_many_streams",
            format!(
                "this token already holds {} open session streams; close one first",
                st.stream_slots.per_key()
            ),
        )
    })?;
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
    // request with a status instead of an in-band error; one that another
    // node holds is streamed to it (this node's stream slots held meanwhile).
    let body = match st.vault.log(&ns).await {
        Ok(_) => body,
        Err(VaultError::Open(OpenError::Lease(LeaseError::Fenced { owner }))) => {
            let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
            match crate::cluster::forward::forward_stream(&st, &owner, pq, &headers, body).await {
                Ok(answer) => {
                    let mut resp = answer?;
                    let held = (permit, own_slot);
                    let inner = std::mem::take(resp.body_mut());
                    // The slots are released when the forwarded answer ends.
                    let stream = inner.into_data_stream().map(move |chunk| {
                        let _ = &held;
                        chunk
                    });
                    *resp.body_mut() = Body::from_stream(stream);
                    return Ok(resp);
                }
                Err(_) => {
                    return Err(
                        VaultError::Open(OpenError::Lease(LeaseError::Fenced { owner })).into(),
                    );
                }
            }
        }
        Err(e) => return Err(e.into()),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let ingest = StreamIngest {
        st,
        ns,
        session,
        claims,
        budget,
        tx,
    };
    tokio::spawn(async move {
        let _permit = (permit, own_slot);
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
    /// The writer's token: checked again (revocation, expiry) before every
    /// append and at least once a second, so a stream never outlives it.
    claims: Claims,
    /// The token's rate-limit key ([`auth::budget_key`]).
    budget: String,
    tx: mpsc::Sender<Bytes>,
}

/// What happened over the stream's life, for the summary line.
#[derive(Default)]
struct Tally {
    committed: u64,
    duplicates: u64,
    first: Option<u64>,
    last: Option<u64>,
    ranges: Vec<(u64, u64)>,
    ranges_truncated: bool,
    rejected_lines: u64,
    discarded_bytes: u64,
}

impl Tally {
    fn add(&mut self, index: u64, duplicate: bool) {
        if duplicate {
            self.duplicates += 1;
        } else {
            self.committed += 1;
        }
        self.first = Some(self.first.map_or(index, |f| f.min(index)));
        self.last = Some(self.last.map_or(index, |l| l.max(index)));
        let full = self.ranges.len() >= MAX_SUMMARY_RANGES;
        match self.ranges.last_mut() {
            Some((a, b)) if *a <= index && index <= *b => {}
            Some((_, b)) if *b + 1 == index => *b = index,
            _ if full => self.ranges_truncated = true,
            _ => self.ranges.push((index, index)),
        }
    }
}

/// One line of the body, numbered from 1: its text, or why it was refused
/// before parsing (too long).
struct Line {
    n: u64,
    text: Result<Bytes, ApiError>,
}

/// Why the receipts could not be delivered.
struct Stalled;

/// Lines read and not yet committed, and the room they hold.
struct Queued {
    lines: Vec<Line>,
    held: tokio::sync::OwnedSemaphorePermit,
}

/// The reader's side of a stream's queue: bounded in batches (the channel)
/// and in bytes (`room`: a batch waits for room for its text and its lines'
/// bookkeeping; with none, the body is not read and TCP pushes back).
struct Queue {
    tx: mpsc::Sender<Queued>,
    room: Arc<tokio::sync::Semaphore>,
    budget: usize,
}

impl Queue {
    /// Queues `lines`, read from `bytes` bytes of body, once there is room.
    /// `Err` when the committer has stopped.
    async fn send(&self, lines: Vec<Line>, bytes: usize) -> Result<(), ()> {
        let cost = bytes
            .saturating_add(lines.len().saturating_mul(LINE_COST))
            .min(self.budget);
        let held = self
            .room
            .clone()
            .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
            .await
            .map_err(|_| ())?;
        self.tx.send(Queued { lines, held }).await.map_err(|_| ())
    }

    /// Resolves when the committer has stopped.
    async fn closed(&self) {
        self.tx.closed().await
    }
}

/// How often an open stream re-checks its token while idle.
const TOKEN_CHECK_EVERY: Duration = Duration::from_millis(500);

impl StreamIngest {
    /// Queues a response line. A client that stopped reading loses its
    /// receipts, never its events; one that reads nothing for the idle
    /// timeout while receipts wait is `Stalled` and the stream ends.
    async fn send(&self, v: Value) -> Result<(), Stalled> {
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        let idle = Duration::from_secs(self.st.limits.stream_idle_timeout_s.max(1));
        match self.tx.send_timeout(Bytes::from(line), idle).await {
            Ok(()) | Err(mpsc::error::SendTimeoutError::Closed(_)) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(Stalled),
        }
    }

    /// Reads the body and commits its lines, the two side by side: lines
    /// read while an append is being made durable queue up (boundedly) and
    /// go together into the next append, one group commit for all of them,
    /// however the client cut its writes. With the queue full the body is
    /// not read, which pushes back on the client through TCP.
    async fn run(self, body: Body) {
        let (tx, queued) = mpsc::channel::<Queued>(STREAM_QUEUE);
        let budget = STREAM_QUEUE_BYTES
            .saturating_add(self.st.limits.max_event_bytes.saturating_mul(2))
            .min(u32::MAX as usize);
        let queue = Queue {
            tx,
            room: Arc::new(tokio::sync::Semaphore::new(budget)),
            budget,
        };
        let reading = self.read(body, queue);
        let this = &self;
        let committing = async move {
            // Owned here: dropped when the committer stops, which stops the
            // reader at once.
            let mut queued = queued;
            let mut tally = Tally::default();
            while let Some(Queued { mut lines, held }) = queued.recv().await {
                let mut held = vec![held];
                while lines.len() < MAX_STREAM_BATCH_LINES {
                    match queued.try_recv() {
                        Ok(more) => {
                            lines.extend(more.lines);
                            held.push(more.held);
                        }
                        Err(_) => break,
                    }
                }
                // The room is given back once the lines are committed.
                let committed = this.commit(lines, &mut tally).await;
                drop(held);
                if let Err(end) = committed {
                    return (tally, Some(end));
                }
            }
            (tally, None)
        };
        let ((read_end, discarded), (mut tally, commit_end)) = tokio::join!(reading, committing);
        tally.discarded_bytes += discarded;
        let end = commit_end.unwrap_or(read_end);
        let ranges: Vec<[u64; 2]> = tally.ranges.iter().map(|&(a, b)| [a, b]).collect();
        tracing::info!(ns = %self.ns, session = %self.session, committed = tally.committed, end, "session stream ended");
        let _ = self
            .send(json!({"summary": {
                "committed": tally.committed,
                "duplicates": tally.duplicates,
                "first_index": tally.first,
                "last_index": tally.last,
                "ranges": ranges,
                "ranges_truncated": tally.ranges_truncated,
                "rejected_lines": tally.rejected_lines,
                "discarded_bytes": tally.discarded_bytes,
                "end": end,
            }}))
            .await;
    }

    /// Reads the body into lines and queues them for [`Self::run`]'s
    /// committer, until the body ends, the client goes, the token stops
    /// being valid, the server shuts down, or the committer stops. Returns
    /// why it stopped and the bytes it discarded.
    async fn read(&self, body: Body, queue: Queue) -> (&'static str, u64) {
        let idle = Duration::from_secs(self.st.limits.stream_idle_timeout_s.max(1));
        let max_line = self.st.limits.max_event_bytes;
        let mut shutdown = self.st.shutdown.subscribe();
        let mut body = body.into_data_stream();
        let mut buf = BytesMut::new();
        // How much of `buf` is known to hold no newline (no rescans).
        let mut scanned = 0usize;
        // Bytes read but never made a line (the summary's `discarded_bytes`).
        let mut discarded = 0u64;
        let mut line_no = 0u64;
        // Skipping the rest of an over-long line until its newline.
        let mut skipping = false;
        let mut idle_until = tokio::time::Instant::now() + idle;
        let mut token_check = tokio::time::interval(TOKEN_CHECK_EVERY);
        token_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            if *shutdown.borrow() {
                discarded += buf.len() as u64;
                break "shutting_down";
            }
            let next = tokio::select! {
                n = tokio::time::timeout_at(idle_until, body.next()) => n,
                _ = shutdown.changed() => continue,
                // The committer stopped (its reason is the stream's end).
                _ = queue.closed() => break "append_failed",
                _ = token_check.tick() => {
                    match self.token_end().await {
                        Some(end) => {
                            discarded += buf.len() as u64;
                            break end;
                        }
                        None => continue,
                    }
                }
            };
            idle_until = tokio::time::Instant::now() + idle;
            let chunk = match next {
                Err(_) => break "idle_timeout",
                Ok(None) => {
                    // A clean end of body: the last line needs no newline.
                    if !buf.is_empty() && !skipping {
                        line_no += 1;
                        let text = buf.split().freeze();
                        let cost = text.len();
                        let line = self.checked(line_no, text, max_line);
                        if queue.send(vec![line], cost).await.is_err() {
                            break "append_failed";
                        }
                    }
                    break "eof";
                }
                Ok(Some(Err(_))) => {
                    // The client went away: only the unfinished line is lost.
                    discarded += buf.len() as u64;
                    break "disconnected";
                }
                Ok(Some(Ok(c))) => c,
            };
            buf.extend_from_slice(&chunk);
            let mut lines = Vec::new();
            while let Some(off) = buf[scanned..].iter().position(|&b| b == b'\n') {
                let pos = scanned + off;
                let text = buf.split_to(pos + 1).freeze();
                scanned = 0;
                if skipping {
                    skipping = false;
                    discarded += text.len() as u64;
                    continue;
                }
                line_no += 1;
                lines.push(self.checked(line_no, text.slice(..pos), max_line));
            }
            scanned = buf.len();
            if skipping {
                discarded += buf.len() as u64;
                buf.clear();
                scanned = 0;
            } else if buf.len() > max_line {
                // The unfinished line is already too long: refuse it now (in
                // order, after this chunk's complete lines) and skip its rest.
                line_no += 1;
                discarded += buf.len() as u64;
                buf.clear();
                scanned = 0;
                skipping = true;
                lines.push(Line {
                    n: line_no,
                    text: Err(too_long(max_line)),
                });
            }
            if !lines.is_empty() && queue.send(lines, chunk.len()).await.is_err() {
                // The committer stopped (its reason is the stream's end).
                break "append_failed";
            }
        };
        (end, discarded)
    }

    /// When the token is no longer valid (revoked, expired): sends the error
    /// line and gives the stream's end reason.
    async fn token_end(&self) -> Option<&'static str> {
        let e = auth::check_live(&self.st, &self.claims).err()?;
        let _ = self
            .send(json!({"error": {"code": e.code, "message": e.message}}))
            .await;
        Some(end_reason(&e))
    }

    /// A complete line, refused at once if longer than `max` bytes.
    fn checked(&self, n: u64, text: Bytes, max: usize) -> Line {
        let text = if text.len() > max {
            Err(too_long(max))
        } else {
            Ok(text)
        };
        Line { n, text }
    }

    /// Parses `lines`, appends the valid ones as one batch and streams their
    /// receipts (and the errors of invalid ones) in line order. `Err` ends the
    /// stream (with the reason for the summary).
    async fn commit(&self, lines: Vec<Line>, tally: &mut Tally) -> Result<(), &'static str> {
        let started = Instant::now();
        let bytes: usize = lines
            .iter()
            .map(|l| l.text.as_ref().map_or(0, |t| t.len() + 1))
            .sum();
        let mut outcome: Vec<(u64, Result<usize, ApiError>)> = Vec::with_capacity(lines.len());
        let mut events = Vec::new();
        for l in lines {
            match l.text.and_then(|t| self.parse(&t)) {
                Ok(Some(ev)) => {
                    outcome.push((l.n, Ok(events.len())));
                    events.push(ev);
                }
                Ok(None) => {} // blank line
                Err(e) => outcome.push((l.n, Err(e))),
            }
        }
        let mut stopped = None;
        let receipts = if events.is_empty() {
            Vec::new()
        } else {
            let first = outcome.first().map(|o| o.0).unwrap_or(0);
            let last = outcome.last().map(|o| o.0).unwrap_or(0);
            if let Err(e) = auth::check_live(&self.st, &self.claims) {
                let _ = self
                    .send(json!({"lines": [first, last], "error": {"code": e.code, "message": e.message}}))
                    .await;
                return Err(end_reason(&e));
            }
            let appended = self.append_lines(events).await;
            stopped = appended.stopped;
            appended.receipts
        };
        self.st.metrics.ingested(
            &self.ns,
            Source::Stream,
            receipts
                .iter()
                .filter(|r| r.as_ref().is_ok_and(|r| !r.duplicate))
                .count() as u64,
            bytes as u64,
            started.elapsed(),
        );
        // Lines are answered in order up to the first event an append did
        // not take; the appends before it are committed and get their
        // receipts (dropping them made a client resend committed lines).
        let mut rest = outcome.into_iter().peekable();
        while let Some((n, o)) =
            rest.next_if(|(_, o)| o.as_ref().map_or(true, |&i| i < receipts.len()))
        {
            let line = match o.and_then(|i| receipts[i].clone()) {
                Ok(r) => {
                    tally.add(r.index, r.duplicate);
                    let mut v = json!({"line": n, "index": r.index, "leaf_hash": r.leaf_hash, "session_seq": r.session_seq});
                    if r.duplicate {
                        v["duplicate"] = json!(true);
                    }
                    v
                }
                Err(e) => {
                    tally.rejected_lines += 1;
                    json!({"line": n, "error": {"code": e.code, "message": e.message}})
                }
            };
            self.send(line)
                .await
                .map_err(|Stalled| "client_not_reading")?;
        }
        // Lines left without an error would mean the log gave fewer receipts
        // than events: they are never answered as committed.
        let stopped = stopped.or_else(|| {
            rest.peek().is_some().then(|| {
                let e = ApiError::unavailable("internal", "the log answered too few receipts");
                (e, 0)
            })
        });
        match stopped {
            None => Ok(()),
            Some((e, tried)) => Err(self.answer_not_committed(rest, e, tried, tally).await),
        }
    }

    /// Answers the lines from the first event an append did not take, after
    /// `e` stopped the appends (`tried`: the events of the append that
    /// failed), and says why the stream ends. Lines refused on their own
    /// (invalid JSON or event) get their own error line first, so that no
    /// range is read as naming them: the ranges name event lines, those of
    /// the failed append, then those never tried.
    async fn answer_not_committed(
        &self,
        rest: impl Iterator<Item = (u64, Result<usize, ApiError>)>,
        e: ApiError,
        tried: usize,
        tally: &mut Tally,
    ) -> &'static str {
        let mut events: Vec<u64> = Vec::new();
        for (n, o) in rest {
            match o {
                Ok(_) => events.push(n),
                Err(refused) => {
                    tally.rejected_lines += 1;
                    let line = json!({"line": n, "error": {"code": refused.code, "message": refused.message}});
                    if self.send(line).await.is_err() {
                        return "client_not_reading";
                    }
                }
            }
        }
        let first = events.first().copied().unwrap_or(0);
        let last = events.last().copied().unwrap_or(first);
        let error = json!({"code": e.code, "message": e.message});
        if e.code != "not_yet_in_store" {
            let _ = self
                .send(json!({"lines": [first, last], "error": error}))
                .await;
            return "append_failed";
        }
        // Durable on this node, not yet confirmed in the store (with
        // receipts sent once there): the failed append's lines are not lost,
        // and resending them (without event_id) would store them twice.
        let durable = &events[..tried.min(events.len())];
        let failed_last = durable.last().copied().unwrap_or(first);
        let _ = self
            .send(json!({"lines": [first, failed_last], "durable": true, "error": error}))
            .await;
        if let Some(&next) = events.get(durable.len()) {
            let _ = self
                .send(json!({"lines": [next, last], "error": {"code": "not_appended",
                    "message": "an earlier line's append did not complete; these lines were not appended"}}))
                .await;
        }
        "not_yet_in_store"
    }

    /// One line → an event of this session. `Ok(None)` for a blank line.
    fn parse(&self, text: &[u8]) -> Result<Option<Prepared>, ApiError> {
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let mut v: Value = tracevault_schemas::strict_json::from_slice(text)
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

    /// Appends the lines' events as one batch; when the batch is refused for
    /// an `event_id` conflict, appends them one at a time instead, so that
    /// only the conflicting lines are refused (in-band, the stream goes on).
    async fn append_lines(&self, events: Vec<Prepared>) -> Appended {
        // No more per append than a request may carry (which the log's
        // unpublished bound is checked to admit at start-up): a larger
        // append could never find room and would end the stream.
        let most = self.st.limits.max_events_per_request.max(1);
        if events.len() > most {
            let mut out = Appended::default();
            for part in events.chunks(most) {
                let next = Box::pin(self.append_lines(part.to_vec())).await;
                out.receipts.extend(next.receipts);
                if next.stopped.is_some() {
                    out.stopped = next.stopped;
                    break;
                }
            }
            return out;
        }
        match self.append(&events).await {
            Ok(r) => Appended {
                receipts: r.into_iter().map(Ok).collect(),
                stopped: None,
            },
            Err(e) if e.code == "event_id_conflict" && events.len() > 1 => {
                let mut out = Appended::default();
                for ev in &events {
                    match self.append(std::slice::from_ref(ev)).await {
                        Ok(mut r) if r.len() == 1 => out.receipts.push(Ok(r.remove(0))),
                        Ok(_) => {
                            let e = ApiError::unavailable(
                                "internal",
                                "the log answered one event with a wrong number of receipts",
                            );
                            out.stopped = Some((e, 1));
                            break;
                        }
                        Err(e) if e.code == "event_id_conflict" => out.receipts.push(Err(e)),
                        Err(e) => {
                            out.stopped = Some((e, 1));
                            break;
                        }
                    }
                }
                out
            }
            Err(e) => Appended {
                receipts: Vec::new(),
                stopped: Some((e, events.len())),
            },
        }
    }

    /// Appends, waiting out rate limits and transient overload for a bounded
    /// time (the body is not read meanwhile: backpressure reaches the client).
    async fn append(
        &self,
        events: &[Prepared],
    ) -> Result<Vec<tracevault_vault::Receipt>, ApiError> {
        let deadline = Instant::now() + Duration::from_millis(self.st.limits.stream_retry_ms);
        while let Err(wait) = self.st.limiter.take(&self.budget, events.len() as u64) {
            if Instant::now() + wait > deadline {
                return Err(super::rate_limited(wait));
            }
            tokio::time::sleep(wait).await;
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            match self
                .st
                .vault
                .append_prepared(&self.ns, events.to_vec(), &self.claims.sub)
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

/// What [`StreamIngest::append_lines`] did: a receipt (or an in-band
/// refusal) for each event taken, in order, and the error that stopped it
/// with the number of events of the append that failed (the events after
/// those were not tried).
#[derive(Default)]
struct Appended {
    receipts: Vec<Result<tracevault_vault::Receipt, ApiError>>,
    stopped: Option<(ApiError, usize)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank_lines(n: u64) -> Vec<Line> {
        (0..n)
            .map(|n| Line {
                n,
                text: Ok(Bytes::new()),
            })
            .collect()
    }

    /// A body of bare newlines queues no text but a `Line` per newline: the
    /// queue is bounded by what it holds, not by how many reads made it, so
    /// a stream whose committer is stuck cannot grow without end.
    #[tokio::test]
    async fn a_stream_queue_holds_at_most_its_budget() {
        let (tx, mut rx) = mpsc::channel::<Queued>(STREAM_QUEUE);
        let budget = 10 * LINE_COST;
        let queue = Queue {
            tx,
            room: Arc::new(tokio::sync::Semaphore::new(budget)),
            budget,
        };
        // Six newlines: their cost fits.
        queue.send(blank_lines(6), 6).await.unwrap();
        // Six more do not, while the first six are held...
        let more = tokio::time::timeout(Duration::from_millis(200), queue.send(blank_lines(6), 6));
        assert!(more.await.is_err(), "queued past the budget");
        // ...and fit once the committer has taken and committed them.
        let first = rx.recv().await.unwrap();
        assert_eq!(first.lines.len(), 6);
        drop(first);
        queue.send(blank_lines(6), 6).await.unwrap();
        // A batch costlier than the whole budget waits for all of it, then
        // goes alone (never refused, never stuck).
        drop(rx.recv().await.unwrap());
        queue.send(blank_lines(1000), 1000).await.unwrap();
        assert_eq!(queue.room.available_permits(), 0);
        // A stopped committer fails the reader's send instead.
        drop(rx);
        assert!(queue.send(blank_lines(1), 1).await.is_err());
    }
}
