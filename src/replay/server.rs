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

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tracevault_replay::{Integrity, ReplayEvent, SessionInfo, Source, SourceError, TimelineIndex};
use tracevault_vault::{merkle, note};

use super::{Verdict, set};

/// Rows per index query at first: the server's default `max_result_rows`.
/// Halved while the server refuses it as too large (a lower setting).
const INDEX_CHUNK: usize = 100_000;
/// Columns of a page.
const COLUMNS: &str = "idx, session_seq, kind, ts, received_at, name, actor, model, event_id, span_id, parent_span_id, content, attributes, leaf_hash";
/// Inclusion proofs fetched at once one by one (servers without the batch
/// endpoint).
const PROOF_CONCURRENCY: usize = 16;
/// Indices per batch proof request (`POST .../proof/inclusion`; the server
/// takes up to 1000).
const PROOF_BATCH: usize = 500;
/// Batch proof requests in flight at once.
const BATCH_CONCURRENCY: usize = 4;

/// SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A client of the query API for one session.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> Result<reqwest::Response, SourceError> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        ok(r).await
    }

    /// Runs `sql`; the result as Arrow record batches (the index of a large
    /// session: Arrow IPC is far cheaper than JSON on both ends).
    async fn query_arrow(&self, sql: &str) -> Result<Vec<RecordBatch>, SourceError> {
        let r = self
            .http
            .post(format!("{}/v1/query", self.base))
            .bearer_auth(&self.token)
            .header("accept", "application/vnd.apache.arrow.stream")
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        let bytes = ok(r)
            .await?
            .bytes()
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| SourceError::Data(format!("Arrow answer: {e}")))
    }

    /// Runs `sql`; the rows as JSON arrays.
    async fn query(&self, sql: &str) -> Result<Vec<Vec<Value>>, SourceError> {
        let r = self
            .http
            .post(format!("{}/v1/query", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        let body: Value = ok(r)
            .await?
            .json()
            .await
            .map_err(|e| SourceError::Data(e.to_string()))?;
        serde_json::from_value(body["rows"].clone()).map_err(|e| SourceError::Data(e.to_string()))
    }
}

/// The response when 2xx, else its error as a [`SourceError`].
async fn ok(r: reqwest::Response) -> Result<reqwest::Response, SourceError> {
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    Err(SourceError::Unavailable(format!(
        "{status}: {} {}",
        body["error"]["code"].as_str().unwrap_or(""),
        body["error"]["message"].as_str().unwrap_or("")
    )))
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
    if r.len() != 14 {
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
    api: Api,
    ns: String,
    session: String,
    /// Log index of each position.
    idxs: Vec<u64>,
    /// `(index, leaf hash)` of every event, for the proof checker.
    leaves: Arc<Mutex<Vec<(u64, String)>>>,
    index: Option<TimelineIndex>,
    info: SessionInfo,
    verdict: Verdict,
    /// The pinned key, until the proof checker starts: after the first
    /// page, so that its requests do not delay the first frame.
    checker: Option<Option<String>>,
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
    ) -> anyhow::Result<Self> {
        tracevault_schemas::Event::from_value(json!({"session_id": session, "kind": "message"}))
            .map_err(|e| anyhow::anyhow!("--session: {e}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let api = Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            base: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
        };
        let ns = match ns {
            Some(n) => n.to_string(),
            None => {
                let rows = rt.block_on(api.query(&format!(
                    "SELECT DISTINCT ns FROM traces WHERE session_id = {}",
                    lit(session)
                )))?;
                let all: Vec<String> = rows.iter().filter_map(|r| text(r.first()?)).collect();
                match all.as_slice() {
                    [one] => one.clone(),
                    [] => anyhow::bail!(
                        "no session {session} in the namespaces and window of this token"
                    ),
                    _ => anyhow::bail!(
                        "session {session} is in namespaces {all:?}; pick one with --ns"
                    ),
                }
            }
        };
        tracevault_vault::validate_namespace(&ns, true)?;
        let mut s = ServerSource {
            rt,
            api,
            ns,
            session: session.to_string(),
            idxs: Vec::new(),
            leaves: Arc::new(Mutex::new(Vec::new())),
            index: Some(TimelineIndex::new()),
            info: SessionInfo::default(),
            verdict: Arc::new(Mutex::new(Integrity::Checking)),
            checker: None,
            chunk: INDEX_CHUNK,
        };
        s.read_more()?;
        anyhow::ensure!(
            !s.idxs.is_empty(),
            "no event of session {session} in namespace {} visible to this token",
            s.ns
        );
        s.info.session_id = s.session.clone();
        s.info.namespace = s.ns.clone();
        s.info.origin = format!("server {}", s.api.base);
        s.update_info();
        s.checker = Some(key);
        Ok(s)
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
            let batches = match self.rt.block_on(self.api.query_arrow(&format!(
                "SELECT idx, session_seq, kind, arrow_cast(ts, 'Int64') AS ts, arrow_cast(received_at, 'Int64') AS received_at, leaf_hash FROM traces WHERE {} AND idx > {after} ORDER BY idx LIMIT {chunk}",
                self.where_session()
            ))) {
                Err(SourceError::Unavailable(m)) if m.starts_with("413") && chunk > 1 => {
                    self.chunk = chunk / 2;
                    continue;
                }
                r => r?,
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
        let len = self.len();
        if start >= len {
            return Err(SourceError::OutOfRange { start, len });
        }
        let end = (start + count.max(1) as u64).min(len);
        let mut events = Vec::with_capacity((end - start) as usize);
        let mut at = start;
        while at < end {
            // At most `chunk` rows a query (the server's result bound).
            let to = (at + self.chunk as u64).min(end);
            let (a, b) = (self.idxs[at as usize], self.idxs[to as usize - 1]);
            let rows = match self.rt.block_on(self.api.query(&format!(
                "SELECT {COLUMNS} FROM traces WHERE {} AND idx >= {a} AND idx <= {b} ORDER BY idx",
                self.where_session()
            ))) {
                Err(SourceError::Unavailable(m)) if m.starts_with("413") && self.chunk > 1 => {
                    self.chunk /= 2;
                    continue;
                }
                r => r?,
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
        if let Some(key) = self.checker.take() {
            self.rt.spawn(check_proofs(
                self.api.clone(),
                self.ns.clone(),
                key,
                self.leaves.clone(),
                self.verdict.clone(),
            ));
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
        let rows = self.rt.block_on(self.api.query(&format!(
            "SELECT idx FROM traces WHERE {} AND idx {cmp} {at} AND ({hit}) ORDER BY idx {order} LIMIT 1",
            self.where_session()
        )))?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_u64)
            .and_then(|i| self.idxs.binary_search(&i).ok())
            .map(|p| p as u64))
    }
}

/// Why a check step did not succeed: the server could not be reached (try
/// again later), or what it gave does not verify (the log is not what it
/// claims).
enum Check {
    Unreachable(String),
    Bad(Option<u64>, String),
}

impl From<SourceError> for Check {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Unavailable(m) => Check::Unreachable(m),
            other => Check::Bad(None, other.to_string()),
        }
    }
}

/// The key of `ns` to check with: the pinned one, else the server's own.
async fn namespace_key(api: &Api, ns: &str, pinned: Option<&str>) -> Result<String, Check> {
    if let Some(k) = pinned
        && k.contains('+')
    {
        return Ok(k.to_string());
    }
    let v: Value = api
        .get("/v1/vault")
        .await?
        .json()
        .await
        .map_err(|e| Check::Unreachable(e.to_string()))?;
    let served = v["namespaces"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["ns"] == ns))
        .and_then(|n| n["verifier_key"].as_str())
        .map(str::to_string)
        .ok_or_else(|| Check::Bad(None, "the server did not give the namespace's key".into()))?;
    match pinned {
        // A bare pinned key: the log's name from the server, the key ours
        // (the name is not a secret; the key is what is trusted).
        Some(k) => {
            let (name, _) = note::parse_verifier_key(&served)
                .map_err(|e| Check::Bad(None, format!("the server's key: {e}")))?;
            note::verifier_key_for(&name, k).map_err(|e| Check::Bad(None, format!("--key: {e}")))
        }
        None => Ok(served),
    }
}

/// The latest checkpoint, signature checked, and consistent with the one
/// before (`prev`: size and root) by an RFC 6962 consistency proof.
async fn next_checkpoint(
    api: &Api,
    ns: &str,
    name: &str,
    pubkey: &ed25519_dalek::VerifyingKey,
    prev: Option<(u64, [u8; 32])>,
) -> Result<note::Checkpoint, Check> {
    let text = api
        .get(&format!("/v1/logs/{ns}/checkpoint"))
        .await?
        .text()
        .await
        .map_err(|e| Check::Unreachable(e.to_string()))?;
    let cp = note::open_checkpoint(&text, name, pubkey)
        .map_err(|e| Check::Bad(None, format!("checkpoint: {e}")))?;
    let Some((size, root)) = prev else {
        return Ok(cp);
    };
    if cp.size < size {
        return Err(Check::Bad(
            None,
            format!("the checkpoint went back from size {size} to {}", cp.size),
        ));
    }
    if cp.size == size {
        return if cp.root == root {
            Ok(cp)
        } else {
            Err(Check::Bad(
                None,
                format!("two different trees of size {size} (a fork)"),
            ))
        };
    }
    let p: Value = api
        .get(&format!(
            "/v1/logs/{ns}/proof/consistency?from={size}&to={}",
            cp.size
        ))
        .await?
        .json()
        .await
        .map_err(|e| Check::Unreachable(e.to_string()))?;
    let hashes: Option<Vec<[u8; 32]>> = p["hashes"].as_array().and_then(|a| {
        a.iter()
            .map(|h| B64.decode(h.as_str()?).ok()?.try_into().ok())
            .collect()
    });
    match hashes {
        Some(h) if merkle::verify_consistency(size, cp.size, &h, &root, &cp.root).is_ok() => Ok(cp),
        _ => Err(Check::Bad(
            None,
            format!(
                "checkpoint {} is not consistent with checkpoint {size} (history rewritten)",
                cp.size
            ),
        )),
    }
}

/// Base64 proof hashes as 32-byte hashes; `None` if any is not one.
fn decode_hashes<'a>(hashes: impl IntoIterator<Item = Option<&'a str>>) -> Option<Vec<[u8; 32]>> {
    hashes
        .into_iter()
        .map(|h| B64.decode(h?).ok()?.try_into().ok())
        .collect()
}

/// Checks a proof the server gave for event `i`, whose leaf hash is `leaf`
/// (hex): the log's leaf hash (`served`) is the event's, and the audit path
/// `hashes` leads from it to the root of `cp`.
fn verify_proof(
    cp: &note::Checkpoint,
    i: u64,
    leaf: &str,
    served: Option<&str>,
    hashes: Option<Vec<[u8; 32]>>,
) -> Result<(), Check> {
    if served != Some(leaf) {
        return Err(Check::Bad(
            Some(i),
            "the log's leaf hash differs from the event's (event changed)".into(),
        ));
    }
    let leaf_bytes: Option<[u8; 32]> = hex::decode(leaf).ok().and_then(|b| b.try_into().ok());
    match (hashes, leaf_bytes) {
        (Some(h), Some(l)) if merkle::verify_inclusion(&l, i, cp.size, &h, &cp.root).is_ok() => {
            Ok(())
        }
        _ => Err(Check::Bad(
            Some(i),
            format!(
                "inclusion proof does not reach the checkpoint root at size {}",
                cp.size
            ),
        )),
    }
}

/// Checks one event's inclusion proof against `cp` (`GET`, one event).
async fn check_one(
    api: Api,
    ns: String,
    cp: note::Checkpoint,
    i: u64,
    leaf: String,
) -> Result<(), Check> {
    let p: Value = api
        .get(&format!(
            "/v1/logs/{ns}/proof/inclusion?index={i}&size={}",
            cp.size
        ))
        .await?
        .json()
        .await
        .map_err(|e| Check::Unreachable(e.to_string()))?;
    let hashes = p["hashes"]
        .as_array()
        .and_then(|a| decode_hashes(a.iter().map(Value::as_str)));
    verify_proof(&cp, i, &leaf, p["leaf_hash"].as_str(), hashes)
}

/// The answer of `POST /v1/logs/{ns}/proof/inclusion`.
#[derive(Deserialize)]
struct BatchAnswer {
    size: u64,
    proofs: Vec<BatchProof>,
}

/// One proof of a [`BatchAnswer`].
#[derive(Deserialize)]
struct BatchProof {
    index: u64,
    leaf_hash: String,
    hashes: Vec<String>,
}

/// How a batch of proofs went.
enum Batch {
    /// Every proof of the batch (this many) checks out.
    Checked(usize),
    /// The server has no batch endpoint (404 or 405: an older server) or
    /// takes no body that large (413).
    Unsupported,
}

/// Checks the inclusion proofs of `batch` (`(index, leaf hash)`, at most
/// [`PROOF_BATCH`]) against `cp` with one `POST`. The answer must hold
/// exactly the proofs asked for, in order, at the checkpoint's size: anything
/// else fails, naming the first event concerned when the fault is about one.
async fn check_batch(
    api: &Api,
    ns: &str,
    cp: &note::Checkpoint,
    batch: &[(u64, String)],
) -> Result<Batch, Check> {
    let indices: Vec<u64> = batch.iter().map(|(i, _)| *i).collect();
    let r = api
        .http
        .post(format!("{}/v1/logs/{ns}/proof/inclusion", api.base))
        .bearer_auth(&api.token)
        .json(&json!({"size": cp.size, "indices": indices}))
        .send()
        .await
        .map_err(|e| Check::Unreachable(e.to_string()))?;
    // 404/405: an older server without the endpoint; 413: a server whose
    // body limit is below a batch. Either way, one proof per request works.
    if matches!(
        r.status(),
        reqwest::StatusCode::NOT_FOUND
            | reqwest::StatusCode::METHOD_NOT_ALLOWED
            | reqwest::StatusCode::PAYLOAD_TOO_LARGE
    ) {
        return Ok(Batch::Unsupported);
    }
    let body = ok(r)
        .await?
        .bytes()
        .await
        .map_err(|e| Check::Unreachable(e.to_string()))?;
    // Not JSON at all (cut short, a proxy's page): try again later. JSON
    // that is not the documented answer: the server's answer is wrong.
    let answer: BatchAnswer = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Check::Bad(
            None,
            format!("the server's batch of inclusion proofs is malformed: {e}"),
        ),
        _ => Check::Unreachable(format!("batch of inclusion proofs: {e}")),
    })?;
    if answer.size != cp.size {
        return Err(Check::Bad(
            None,
            format!(
                "asked for proofs at size {}, the server answered size {}",
                cp.size, answer.size
            ),
        ));
    }
    for ((i, leaf), p) in batch.iter().zip(&answer.proofs) {
        if p.index != *i {
            return Err(Check::Bad(
                Some(*i),
                format!(
                    "the server answered the proof of index {} where {i} was asked (proofs missing or reordered)",
                    p.index
                ),
            ));
        }
        let hashes = decode_hashes(p.hashes.iter().map(|h| Some(h.as_str())));
        verify_proof(cp, *i, leaf, Some(&p.leaf_hash), hashes)?;
    }
    if answer.proofs.len() != batch.len() {
        return Err(Check::Bad(
            batch.get(answer.proofs.len()).map(|(i, _)| *i),
            format!(
                "asked for {} inclusion proofs, the server answered {}",
                batch.len(),
                answer.proofs.len()
            ),
        ));
    }
    Ok(Batch::Checked(batch.len()))
}

/// Checks every listed event's inclusion proof against the latest signed
/// checkpoint (opened with the pinned key, else the server's own), as the
/// list grows, and every new checkpoint's consistency with the previous one.
/// The verdict names the first index that fails; an unreachable server only
/// makes it "unverified" until the next try.
///
/// Proofs are asked for in batches of [`PROOF_BATCH`] (`POST`, a few at
/// once); a server without that endpoint (404/405) or with a smaller body limit (413) is asked one event at a
/// time (`GET`) from then on. Progress is kept across retries: a proof
/// checked against an earlier checkpoint holds for every later one, since
/// each checkpoint is checked to be consistent with the one before.
async fn check_proofs(
    api: Api,
    ns: String,
    pinned: Option<String>,
    leaves: Arc<Mutex<Vec<(u64, String)>>>,
    verdict: Verdict,
) {
    let mut backoff = Duration::from_secs(1);
    let mut checked = 0usize;
    let mut prev: Option<(u64, [u8; 32])> = None;
    let mut key: Option<(String, ed25519_dalek::VerifyingKey)> = None;
    // Until the server shows it has no batch endpoint.
    let mut batches = true;
    loop {
        let step = async {
            if key.is_none() {
                let k = namespace_key(&api, &ns, pinned.as_deref()).await?;
                let (name, pk) = note::parse_verifier_key(&k)
                    .ok()
                    .and_then(|(n, pk)| Some((n, ed25519_dalek::VerifyingKey::from_bytes(&pk).ok()?)))
                    .ok_or_else(|| Check::Bad(None, format!("{k:?} is not a verifier key")))?;
                if !name.ends_with(&format!("/{ns}")) {
                    return Err(Check::Bad(None, format!("the key {name} is not the key of namespace {ns}")));
                }
                key = Some((name, pk));
            }
            let Some((name, pubkey)) = &key else {
                return Ok(false);
            };
            let pending: Vec<(u64, String)> = match leaves.lock() {
                Ok(l) => l[checked.min(l.len())..].to_vec(),
                Err(_) => return Err(Check::Bad(None, "the event list is unreadable".into())),
            };
            if pending.is_empty() {
                return Ok(false);
            }
            set(&verdict, Integrity::Checking);
            let cp = next_checkpoint(&api, &ns, name, pubkey, prev).await?;
            prev = Some((cp.size, cp.root));
            let ready: Vec<(u64, String)> =
                pending.into_iter().take_while(|(i, _)| *i < cp.size).collect();
            let mut rest: &[(u64, String)] = &ready;
            if batches {
                let asks: Vec<_> = ready
                    .chunks(PROOF_BATCH)
                    .map(|c| check_batch(&api, &ns, &cp, c))
                    .collect();
                let mut results = futures::stream::iter(asks).buffered(BATCH_CONCURRENCY);
                while let Some(r) = results.next().await {
                    match r? {
                        Batch::Checked(n) => {
                            checked += n;
                            rest = &rest[n..];
                        }
                        Batch::Unsupported => {
                            batches = false;
                            break;
                        }
                    }
                }
            }
            let mut results = futures::stream::iter(
                rest.iter()
                    .cloned()
                    .map(|(i, leaf)| check_one(api.clone(), ns.clone(), cp.clone(), i, leaf)),
            )
            .buffered(PROOF_CONCURRENCY);
            while let Some(r) = results.next().await {
                r?;
                checked += 1;
            }
            // A poisoned list is never "nothing left to check": fail closed.
            let waiting = leaves
                .lock()
                .map(|l| l.len().saturating_sub(checked))
                .map_err(|_| Check::Bad(None, "the event list is unreadable".into()))?;
            if waiting == 0 {
                set(
                    &verdict,
                    if pinned.is_some() {
                        Integrity::Verified {
                            checkpoint_size: cp.size,
                            events_checked: checked as u64,
                        }
                    } else {
                        Integrity::Unverified {
                            reason: format!(
                                "{checked} proofs check against the server's own key; pin it with --key"
                            ),
                        }
                    },
                );
            }
            // Events newer than the checkpoint: one is signed within seconds.
            Ok(waiting > 0)
        }
        .await;
        match step {
            Ok(more) => {
                backoff = Duration::from_secs(1);
                let pause = if more { 500 } else { 1000 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(Check::Bad(index, reason)) => {
                return set(&verdict, Integrity::Failed { index, reason });
            }
            Err(Check::Unreachable(why)) => {
                set(
                    &verdict,
                    Integrity::Unverified {
                        reason: format!("server unreachable ({why}); retrying"),
                    },
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(15));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::{Query, State};
    use axum::routing::get;
    use tracevault_vault::merkle::MerkleTree;

    use super::*;

    /// How the mock server answers batch requests.
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// As the real server does.
        Batch,
        /// No batch endpoint (an older server): POST → 405.
        NoBatch,
        /// Two proofs of the second batch swapped.
        Reordered,
        /// The last proof of the second batch left out.
        Missing,
        /// The answer claims another size.
        WrongSize,
        /// One hash of one proof changed.
        BadHash,
        /// The batch endpoint answers 503.
        Down,
        /// The server's body limit is below a batch: 413.
        TooLarge,
    }

    struct Mock {
        mode: Mode,
        tree: MerkleTree,
        note: String,
        gets: AtomicUsize,
        posts: AtomicUsize,
    }

    fn proof(m: &Mock, index: u64, size: u64) -> Value {
        let hashes = m.tree.inclusion_proof(index, size).unwrap();
        json!({
            "index": index,
            "leaf_hash": hex::encode(m.tree.leaf(index).unwrap()),
            "hashes": hashes.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        })
    }

    async fn one(
        State(m): State<Arc<Mock>>,
        Query(q): Query<std::collections::HashMap<String, u64>>,
    ) -> axum::Json<Value> {
        m.gets.fetch_add(1, Ordering::SeqCst);
        let mut p = proof(&m, q["index"], q["size"]);
        p["size"] = json!(q["size"]);
        axum::Json(p)
    }

    async fn many(
        State(m): State<Arc<Mock>>,
        axum::Json(req): axum::Json<Value>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        m.posts.fetch_add(1, Ordering::SeqCst);
        match m.mode {
            Mode::Down => return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
            Mode::TooLarge => return axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            _ => {}
        }
        let size = req["size"].as_u64().unwrap();
        let mut proofs: Vec<Value> = req["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| proof(&m, i.as_u64().unwrap(), size))
            .collect();
        let second = req["indices"][0].as_u64() == Some(2 * PROOF_BATCH as u64);
        match m.mode {
            Mode::Reordered if second => proofs.swap(3, 4),
            Mode::Missing if second => {
                proofs.pop();
            }
            Mode::BadHash if second => proofs[7]["hashes"][2] = json!(B64.encode([0u8; 32])),
            _ => {}
        }
        let size = if m.mode == Mode::WrongSize {
            size - 1
        } else {
            size
        };
        axum::Json(json!({"size": size, "proofs": proofs})).into_response()
    }

    /// Events at even indices 0, 2, … of a log of 2 × 1200 entries (three
    /// batches), checked by [`check_proofs`] against a mock server.
    async fn run(mode: Mode, done: impl Fn(&Integrity) -> bool) -> (Integrity, Arc<Mock>) {
        let mut tree = MerkleTree::new();
        for i in 0..2400u32 {
            tree.push(merkle::leaf_hash(&i.to_be_bytes()));
        }
        let origin = "vault.test/prod";
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let cp = note::Checkpoint {
            origin: origin.into(),
            size: tree.len(),
            root: tree.root(),
        };
        let note_text = note::sign_checkpoint(&cp, origin, &key);
        let vkey = note::verifier_key(origin, &key.verifying_key().to_bytes());
        let leaves: Vec<(u64, String)> = (0..1200u64)
            .map(|k| (2 * k, hex::encode(tree.leaf(2 * k).unwrap())))
            .collect();
        let mock = Arc::new(Mock {
            mode,
            tree,
            note: note_text,
            gets: AtomicUsize::new(0),
            posts: AtomicUsize::new(0),
        });
        let mut proofs = get(one);
        if mode != Mode::NoBatch {
            proofs = proofs.post(many);
        }
        let app = axum::Router::new()
            .route(
                "/v1/logs/{ns}/checkpoint",
                get(|State(m): State<Arc<Mock>>| async move { m.note.clone() }),
            )
            .route("/v1/logs/{ns}/proof/inclusion", proofs)
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let api = Api {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            token: "t".into(),
        };
        let verdict: Verdict = Arc::new(Mutex::new(Integrity::Checking));
        let checker = tokio::spawn(check_proofs(
            api,
            "prod".into(),
            Some(vkey),
            Arc::new(Mutex::new(leaves)),
            verdict.clone(),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let last = loop {
            let v = verdict.lock().unwrap().clone();
            if done(&v) || std::time::Instant::now() > deadline {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        checker.abort();
        server.abort();
        (last, mock)
    }

    fn verified(v: &Integrity) -> bool {
        matches!(v, Integrity::Verified { .. })
    }

    fn failed(v: &Integrity) -> bool {
        matches!(v, Integrity::Failed { .. })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proofs_are_checked_in_batches() {
        let (v, m) = run(Mode::Batch, |v| verified(v) || failed(v)).await;
        assert!(
            matches!(
                v,
                Integrity::Verified {
                    checkpoint_size: 2400,
                    events_checked: 1200
                }
            ),
            "{v:?}"
        );
        assert_eq!(m.posts.load(Ordering::SeqCst), 3);
        assert_eq!(m.gets.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_without_batches_is_asked_one_proof_at_a_time() {
        for mode in [Mode::NoBatch, Mode::TooLarge] {
            let (v, m) = run(mode, |v| verified(v) || failed(v)).await;
            assert!(
                matches!(
                    v,
                    Integrity::Verified {
                        events_checked: 1200,
                        ..
                    }
                ),
                "{v:?}"
            );
            assert_eq!(m.gets.load(Ordering::SeqCst), 1200);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_batch_answer_fails_naming_the_first_event_concerned() {
        // The second batch starts at event 500, log index 1000.
        for (mode, index, why) in [
            (Mode::Reordered, Some(1006), "reordered"),
            (Mode::Missing, Some(1998), "asked for 500"),
            (Mode::BadHash, Some(1014), "does not reach"),
            (Mode::WrongSize, None, "answered size 2399"),
        ] {
            let (v, _) = run(mode, |v| verified(v) || failed(v)).await;
            match &v {
                Integrity::Failed { index: i, reason } => {
                    assert_eq!(*i, index, "{reason}");
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("expected a failure, got {other:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unavailable_batch_endpoint_is_retried_not_failed() {
        let (v, m) = run(
            Mode::Down,
            |v| matches!(v, Integrity::Unverified { reason } if reason.contains("retrying")),
        )
        .await;
        assert!(
            matches!(&v, Integrity::Unverified { reason } if reason.contains("503")),
            "{v:?}"
        );
        assert_eq!(m.gets.load(Ordering::SeqCst), 0, "no fallback on 503");
    }
}
