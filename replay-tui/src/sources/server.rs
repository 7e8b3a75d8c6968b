//! `--server URL --token T --session ID`: replay through the query API with
//! a reader token, so the reader sees the session masked as its token
//! dictates and every page read is in the access log. Pages are read by log
//! index range (pruned by segment statistics), search runs as SQL on the
//! server, and a background task checks every event's inclusion proof
//! against a signed checkpoint, with the pinned verifier key.
//!
//! What this cannot catch: a server that serves a changed value with the
//! right leaf hash (the salt that binds values to their digests is not
//! given to readers). `--data` (verify) and `--bundle` (verify-bundle) bind
//! values too.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracevault_vault::cosignature::WitnessPolicy;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use serde_json::{Value, json};
use tracevault_client::proof_check::{Leaves, Progress, ProofChecker};
use tracevault_client::query::literal as lit;
use tracevault_client::{Client, StatusCode};

use super::{OpenError, Verdict, set};
use crate::{Integrity, ReplayEvent, SessionInfo, Source, SourceError, TimelineIndex};

/// Rows per index query at first: the server's default `max_result_rows`.
/// Halved while the server refuses it as too large (a lower setting).
const INDEX_CHUNK: usize = 100_000;
/// Columns of a page.
const COLUMNS: &str = "idx, session_seq, kind, ts, received_at, name, actor, model, event_id, span_id, parent_span_id, content, attributes, leaf_hash, ingested_by";

/// A client error as the replayer reports it: the server's answer not
/// understood is bad data, anything else (network, refusal) makes the
/// source unavailable.
fn source_error(e: tracevault_client::Error) -> SourceError {
    match e {
        tracevault_client::Error::Json { .. } | tracevault_client::Error::Arrow(_) => {
            SourceError::Data(e.to_string())
        }
        other => SourceError::Unavailable(other.to_string()),
    }
}

/// Whether the server refused a result as too large (413): the query is
/// asked again for fewer rows.
fn too_large(e: &tracevault_client::Error) -> bool {
    e.status() == Some(StatusCode::PAYLOAD_TOO_LARGE)
}

/// The verdict the header shows for what the proof checker reports.
fn integrity(p: Progress) -> Integrity {
    match p {
        Progress::Checking => Integrity::Checking,
        Progress::Checked {
            checkpoint_size,
            events_checked,
            pinned: true,
        } => Integrity::InLog {
            checkpoint_size,
            events_checked,
        },
        Progress::Checked {
            events_checked,
            pinned: false,
            ..
        } => Integrity::Unverified {
            reason: format!(
                "{events_checked} proofs check against the server's own key; pin it with --key"
            ),
        },
        Progress::Failed { index, reason } => Integrity::Failed { index, reason },
        Progress::Retrying { why } => Integrity::Unverified {
            reason: format!("server unreachable ({why}); retrying"),
        },
    }
}

fn micros(v: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.timestamp_micros())
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// A page row (columns as [`COLUMNS`]) as an event.
fn event(r: &[Value]) -> Result<ReplayEvent, SourceError> {
    let bad = || SourceError::Data(format!("unexpected row {r:?}"));
    if r.len() != 15 {
        return Err(bad());
    }
    let content = text(&r[11]);
    let content_type = match content.as_deref().map(str::trim_start) {
        Some(c) if c.starts_with('{') || c.starts_with('[') => "json",
        _ => "text",
    };
    Ok(ReplayEvent {
        idx: r[0].as_u64().ok_or_else(bad)?,
        session_seq: r[1].as_u64().ok_or_else(bad)?,
        kind: text(&r[2]).ok_or_else(bad)?,
        ts: micros(&r[3]),
        received_at: micros(&r[4]).ok_or_else(bad)?,
        name: text(&r[5]),
        actor: text(&r[6]),
        model: text(&r[7]),
        ingested_by: text(&r[14]),
        event_id: text(&r[8]).unwrap_or_default(),
        span_id: text(&r[9]),
        parent_span_id: text(&r[10]),
        content,
        content_type: content_type.into(),
        attributes: text(&r[12]),
        masked: Vec::new(),
        leaf_hash: text(&r[13]).ok_or_else(bad)?,
    })
}

/// One session read through the server.
pub struct ServerSource {
    rt: tokio::runtime::Runtime,
    client: Client,
    ns: String,
    session: String,
    /// Log index of each position.
    idxs: Vec<u64>,
    /// Leaf hash of each position, as the index read it (what the proof
    /// checker proves): a page row must carry the same.
    leaf_at: Vec<String>,
    /// `(index, leaf hash)` of every event, for the proof checker.
    leaves: Leaves,
    index: Option<TimelineIndex>,
    info: SessionInfo,
    verdict: Verdict,
    /// The pinned key, until the proof checker starts: after the first
    /// page, so that its requests do not delay the first frame.
    checker: Option<Option<String>>,
    /// A checkpoint from an earlier run every served one must extend.
    since: Option<String>,
    /// Cosignatures the checkpoints must carry.
    witnesses: Option<WitnessPolicy>,
    /// Rows per index query (see [`INDEX_CHUNK`]).
    chunk: usize,
}

impl ServerSource {
    /// Finds the session (in `ns`, or the only namespace of the token that
    /// holds it), reads its index, and starts the proof checker.
    pub fn open(
        url: &str,
        token: &str,
        session: &str,
        ns: Option<&str>,
        key: Option<String>,
        witnesses: Option<WitnessPolicy>,
    ) -> Result<Self, OpenError> {
        tracevault_schemas::Event::from_value(json!({"session_id": session, "kind": "message"}))
            .map_err(|e| OpenError::Refused(format!("--session: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let client = Client::builder()
            .timeout(Duration::from_secs(60))
            .build(url, token)?;
        let ns = match ns {
            Some(n) => n.to_string(),
            None => {
                let rows = rt
                    .block_on(client.query_rows(&format!(
                        "SELECT DISTINCT ns FROM traces WHERE session_id = {}",
                        lit(session)
                    )))
                    .map_err(source_error)?;
                let all: Vec<String> = rows.iter().filter_map(|r| text(r.first()?)).collect();
                match all.as_slice() {
                    [one] => one.clone(),
                    [] => {
                        return Err(OpenError::Refused(format!(
                            "no session {session} in the namespaces and window of this token"
                        )));
                    }
                    _ => {
                        return Err(OpenError::Refused(format!(
                            "session {session} is in namespaces {all:?}; pick one with --ns"
                        )));
                    }
                }
            }
        };
        tracevault_vault::validate_namespace(&ns, true)?;
        let mut s = ServerSource {
            rt,
            client,
            ns,
            session: session.to_string(),
            idxs: Vec::new(),
            leaf_at: Vec::new(),
            leaves: Arc::new(Mutex::new(Vec::new())),
            index: Some(TimelineIndex::new()),
            info: SessionInfo::default(),
            verdict: Arc::new(Mutex::new(Integrity::Checking)),
            checker: None,
            witnesses,
            since: None,
            chunk: INDEX_CHUNK,
        };
        s.read_more()?;
        if s.idxs.is_empty() {
            return Err(OpenError::Refused(format!(
                "no event of session {session} in namespace {} visible to this token",
                s.ns
            )));
        }
        s.info.session_id = s.session.clone();
        s.info.namespace = s.ns.clone();
        s.info.origin = format!("server {}", s.client.base());
        s.update_info();
        s.checker = Some(key);
        Ok(s)
    }

    /// Every checkpoint the server shows must be consistent with
    /// `checkpoint`, a signed note kept from an earlier run (a receipt, an
    /// export bundle, a `verify`): a server holding the key cannot then show
    /// this reader another history than the one seen before.
    pub fn since(mut self, checkpoint: Option<String>) -> Self {
        self.since = checkpoint;
        self
    }

    fn where_session(&self) -> String {
        format!(
            "ns = {} AND session_id = {}",
            lit(&self.ns),
            lit(&self.session)
        )
    }

    /// Reads the index of events after the last one known; returns how many.
    fn read_more(&mut self) -> Result<usize, SourceError> {
        let mut added = 0;
        loop {
            let after = self.idxs.last().map_or(-1, |i| *i as i128);
            let chunk = self.chunk;
            let batches = match self.rt.block_on(self.client.query_arrow(&format!(
                "SELECT idx, session_seq, kind, arrow_cast(ts, 'Int64') AS ts, arrow_cast(received_at, 'Int64') AS received_at, leaf_hash FROM traces WHERE {} AND idx > {after} ORDER BY idx LIMIT {chunk}",
                self.where_session()
            ))) {
                Err(e) if too_large(&e) && chunk > 1 => {
                    self.chunk = chunk / 2;
                    continue;
                }
                r => r.map_err(source_error)?,
            };
            let mut n = 0;
            let mut leaves = self
                .leaves
                .lock()
                .map_err(|_| SourceError::Data("checker poisoned".into()))?;
            for b in &batches {
                let col = |i: usize, t: &DataType| {
                    arrow::compute::cast(b.column(i), t)
                        .map_err(|e| SourceError::Data(format!("index column {i}: {e}")))
                };
                let (idx, seq, kind) = (
                    col(0, &DataType::UInt64)?,
                    col(1, &DataType::UInt64)?,
                    col(2, &DataType::Utf8)?,
                );
                let (ts, rec, leaf) = (
                    col(3, &DataType::Int64)?,
                    col(4, &DataType::Int64)?,
                    col(5, &DataType::Utf8)?,
                );
                let (idx, seq) = (
                    idx.as_primitive::<UInt64Type>(),
                    seq.as_primitive::<UInt64Type>(),
                );
                let (ts, rec) = (
                    ts.as_primitive::<Int64Type>(),
                    rec.as_primitive::<Int64Type>(),
                );
                let (kind, leaf) = (kind.as_string::<i32>(), leaf.as_string::<i32>());
                for r in 0..b.num_rows() {
                    if idx.is_null(r) || seq.is_null(r) || rec.is_null(r) || leaf.is_null(r) {
                        return Err(SourceError::Data(format!("index row {r} has nulls")));
                    }
                    let mut e = ReplayEvent::timeline_only(
                        idx.value(r),
                        seq.value(r),
                        kind.value(r),
                        (!ts.is_null(r)).then(|| ts.value(r)),
                        rec.value(r),
                    );
                    e.leaf_hash = leaf.value(r).to_string();
                    if self.idxs.last().is_some_and(|last| e.idx <= *last) {
                        return Err(SourceError::Data("index rows out of order".into()));
                    }
                    if let Some(ix) = self.index.as_mut() {
                        ix.push(&e);
                    }
                    self.idxs.push(e.idx);
                    self.leaf_at.push(e.leaf_hash.clone());
                    self.info.last_us = Some(e.time_us());
                    self.info.first_us.get_or_insert(e.time_us());
                    leaves.push((e.idx, e.leaf_hash));
                    n += 1;
                }
            }
            added += n;
            if n < chunk {
                return Ok(added);
            }
        }
    }

    fn update_info(&mut self) {
        self.info.event_count = self.idxs.len() as u64;
    }
}

impl Source for ServerSource {
    fn info(&self) -> SessionInfo {
        self.info.clone()
    }

    fn len(&self) -> u64 {
        self.idxs.len() as u64
    }

    fn page(&mut self, start: u64, count: usize) -> Result<Vec<ReplayEvent>, SourceError> {
        let range = crate::page_range(start, count, self.len())?;
        let end = range.end as u64;
        let mut events = Vec::with_capacity((end - start) as usize);
        let mut at = start;
        while at < end {
            // At most `chunk` rows a query (the server's result bound).
            let to = (at + self.chunk as u64).min(end);
            let (a, b) = (self.idxs[at as usize], self.idxs[to as usize - 1]);
            let rows = match self.rt.block_on(self.client.query_rows(&format!(
                "SELECT {COLUMNS} FROM traces WHERE {} AND idx >= {a} AND idx <= {b} ORDER BY idx",
                self.where_session()
            ))) {
                Err(e) if too_large(&e) && self.chunk > 1 => {
                    self.chunk /= 2;
                    continue;
                }
                r => r.map_err(source_error)?,
            };
            for r in &rows {
                events.push(event(r)?);
            }
            at = to;
        }
        // The rows must be exactly those positions, or every cached position
        // after them would shift.
        let want = &self.idxs[start as usize..end as usize];
        if events.len() != want.len() || events.iter().zip(want).any(|(e, i)| e.idx != *i) {
            return Err(SourceError::Data(format!(
                "the server answered {} rows for positions {start}..{end}; the session changed under the reader?",
                events.len()
            )));
        }
        // And each row must be the one whose leaf hash is proven: a page is a
        // second query, which a server could answer with other rows.
        let proven = &self.leaf_at[start as usize..end as usize];
        if let Some(e) = events.iter().zip(proven).find(|(e, l)| e.leaf_hash != **l) {
            let index = e.0.idx;
            set(
                &self.verdict,
                Integrity::Failed {
                    index: Some(index),
                    reason: "the row shown is not the one whose leaf hash is proven".into(),
                },
            );
            return Err(SourceError::Data(format!(
                "event {index}: the server showed a row whose leaf hash is not the proven one"
            )));
        }
        if let Some(key) = self.checker.take() {
            let verdict = self.verdict.clone();
            let checker = ProofChecker::new(self.client.clone(), &self.ns, key)
                .since(self.since.clone())
                .with_witnesses(self.witnesses.clone());
            self.rt
                .spawn(checker.run(self.leaves.clone(), move |p| set(&verdict, integrity(p))));
        }
        Ok(events)
    }

    fn index(&mut self) -> Result<TimelineIndex, SourceError> {
        match self.index.take() {
            Some(ix) => Ok(ix),
            None => Ok(TimelineIndex::new()),
        }
    }

    fn integrity(&mut self) -> Integrity {
        self.verdict
            .lock()
            .map(|g| g.clone())
            .unwrap_or(Integrity::Unverified {
                reason: "the proof checker stopped".into(),
            })
    }

    fn refresh(&mut self) -> Result<bool, SourceError> {
        self.index = None;
        let added = self.read_more()?;
        self.update_info();
        if added > 0 {
            // Not verified until the checker has seen the new events too.
            set(&self.verdict, Integrity::Checking);
        }
        Ok(added > 0)
    }

    /// Search runs on the server, over the values this reader sees (masked
    /// values are searched as masked).
    fn search(
        &mut self,
        query: &str,
        from: u64,
        forward: bool,
    ) -> Result<Option<u64>, SourceError> {
        let len = self.len();
        if query.is_empty() || len == 0 {
            return Ok(None);
        }
        let at = self.idxs[from.min(len - 1) as usize];
        let q = lit(&query.to_lowercase());
        let hit = ["content", "name", "actor", "kind", "model", "attributes"]
            .map(|c| format!("strpos(lower(coalesce({c}, '')), {q}) > 0"))
            .join(" OR ");
        let (cmp, order) = if forward {
            (">=", "ASC")
        } else {
            ("<=", "DESC")
        };
        let rows = self
            .rt
            .block_on(self.client.query_rows(&format!(
                "SELECT idx FROM traces WHERE {} AND idx {cmp} {at} AND ({hit}) ORDER BY idx {order} LIMIT 1",
                self.where_session()
            )))
            .map_err(source_error)?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_u64)
            .and_then(|i| self.idxs.binary_search(&i).ok())
            .map(|p| p as u64))
    }
}
