//! Running a caller's SQL in a worker process, so that the worst a query can
//! do is fail itself.
//!
//! [`crate::guard`] bounds what each function may allocate, but a query runs
//! on an engine of some million lines: an engine bug, or an allocation path
//! the guard did not foresee, must not take ingest down with it. So the
//! server runs each query in a child process of its own binary
//! (`tracevault query-worker`), with:
//! - a memory limit (`RLIMIT_DATA`): past it the worker's allocation fails
//!   and the worker dies, never the server;
//! - a lower CPU priority (nice) and a CPU-time limit (`RLIMIT_CPU`), and a
//!   wall-clock deadline after which the server kills it;
//! - nothing but what the query may read: the server takes the read plans
//!   (segment list and unpublished tail of the caller's namespaces) and hands
//!   them over with the caller's access, masking profile and hash key on
//!   stdin; the worker reads segments straight from the store, applies the
//!   access rule and masking below SQL exactly as in-process, and answers on
//!   stdout with a JSON header line and the result as an Arrow IPC stream.
//!
//! The protocol is private to this module: both ends are in this file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracevault_vault::{ReadPlan, Store, Vault, VaultError};

use crate::masking::{Masker, Policy};
use crate::scan::FixedReadPlans;
use crate::sql::{self, Access, QueryError, QueryLimits, QueryResult, ScanStats};

/// How the server starts query workers.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The executable to run with the `query-worker` argument (the server's
    /// own binary).
    pub exe: PathBuf,
    /// The store URL the worker opens (`file:///…` or `s3://…`; S3
    /// credentials come from the inherited environment).
    pub store_url: String,
    /// Memory the worker process may use (bytes; `RLIMIT_DATA`).
    pub memory_bytes: u64,
    /// Nice value of the worker (0-19).
    pub nice: i32,
    /// Worker threads of the worker's query runtime.
    pub threads: usize,
    /// A worker started ahead of the next query (see [`Spare`]).
    pub spare: Spare,
    /// Where workers spill: each into `w-{pid}` under it, removed by the
    /// server once the worker has exited, however it ended (see
    /// [`crate::sql::spill_into`]). The server empties it at start.
    pub spill_dir: PathBuf,
}

impl WorkerConfig {
    /// The worker's arguments (its limits) for queries under `limits`.
    fn args(&self, limits: &QueryLimits) -> Vec<String> {
        // Whole seconds of CPU time: the wall-clock limit on both cores,
        // plus a little for start-up.
        let cpu = limits.timeout.as_secs().saturating_mul(2).saturating_add(5);
        vec![
            format!("--memory-bytes={}", self.memory_bytes),
            format!("--cpu-seconds={cpu}"),
            format!("--nice={}", self.nice.clamp(0, 19)),
            format!("--spill-dir={}", self.spill_dir.display()),
        ]
    }

    /// Starts the spare for queries under `limits` (at server start, so the
    /// first query finds it too). Must run inside the Tokio runtime that
    /// runs the queries.
    pub fn start_spare(&self, limits: &QueryLimits) {
        let args = self.args(limits);
        match start_worker(&self.exe, &args) {
            Ok(child) => {
                *self.spare.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((args, child))
            }
            Err(e) => tracing::warn!("starting a spare query worker: {e}"),
        }
    }
}

/// One worker process started ahead of need.
///
/// Starting the worker (exec, loading the binary, its runtime) costs about
/// 10 ms, a fifth of a one-session lookup. A worker takes its request only
/// once started, so the server keeps one started and idle, waiting on its
/// stdin; a query takes it and starts the next. Isolation is unchanged: a
/// worker still runs exactly one query, and an idle one has nothing but its
/// limits (it learns the query, the access and the key from its request).
/// An idle worker whose server is gone reads the end of its stdin and exits.
#[derive(Debug, Clone, Default)]
pub struct Spare(Arc<std::sync::Mutex<Option<Started>>>);

/// A started worker and the arguments it was started with.
type Started = (Vec<String>, tokio::process::Child);

impl Spare {
    /// A started worker for `args`: the spare if it was started with them
    /// and is still alive, else a new one. The next spare is started by
    /// [`Spare::refill`] once this query has its answer: started now, its
    /// start-up (loading the binary, faulting its pages in) would take CPU
    /// from the query that took this one.
    fn take(
        &self,
        exe: &std::path::Path,
        args: &[String],
    ) -> Result<tokio::process::Child, QueryError> {
        let taken = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match taken {
            Some((a, mut child)) if a == args => match child.try_wait() {
                Ok(None) => Ok(child),
                _ => start_worker(exe, args),
            },
            _ => start_worker(exe, args),
        }
    }

    /// Starts the next spare for `args` unless one is waiting already.
    fn refill(&self, exe: &std::path::Path, args: &[String]) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return;
        }
        // A failure to start the spare is not this query's: the next query
        // starts its own worker and says why if it cannot.
        match start_worker(exe, args) {
            Ok(next) => *slot = Some((args.to_vec(), next)),
            Err(e) => tracing::warn!("starting a spare query worker: {e}"),
        }
    }
}

/// Starts `exe query-worker ARGS` with piped stdio, killed when dropped.
fn start_worker(
    exe: &std::path::Path,
    args: &[String],
) -> Result<tokio::process::Child, QueryError> {
    let mut cmd = tokio::process::Command::new(exe);
    // The binary's allocator (mimalloc) reserves address space in arenas of
    // 1 GiB by default, which `RLIMIT_DATA` counts as used: a worker limited
    // to 1 GiB could not allocate at all. In 64 MiB steps the limit measures
    // what the query uses. (Ignored by any other allocator.)
    cmd.env("MIMALLOC_ARENA_RESERVE", "64MiB");
    // The worker sets its own limits first thing (before it reads the
    // request): no code runs between fork and exec here, so the spawn can
    // be a cheap vfork-style posix_spawn whatever the server's size.
    cmd.arg("query-worker")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn()
        .map_err(|e| failed(format!("starting the query worker: {e}")))
}

/// What the server knows of the caller, for the worker to mask as it would.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Caller {
    /// The masking policy text (`None`: the built-in strict policy).
    pub policy_toml: Option<String>,
    /// The caller's role name.
    pub role: String,
    /// The caller's token claims (profile selection).
    pub claims: Map<String, Value>,
}

/// What a worker answers.
#[derive(Debug)]
pub struct Answer {
    /// The result.
    pub result: QueryResult,
    /// Matches per masking label, for the access log.
    pub masked: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct Request {
    sql: String,
    access: Access,
    limits: QueryLimits,
    store_url: String,
    caller: Caller,
    /// Hex of the `hash` action's key (stdin only: never in argv or env).
    hash_key: String,
    threads: usize,
    plans: HashMap<String, ReadPlan>,
}

/// The request on the worker's stdin: the [`Request`] as one line of JSON,
/// then the file statistics of the plans' segments (so that the worker
/// skips segments that cannot match without reading their footers), each
/// as its object path and its protobuf ([`crate::footers::encoded_statistics`]),
/// both prefixed by their length (4 bytes, big-endian). Raw bytes rather
/// than hex in the JSON: 240 segments' statistics were 540 KB of hex that
/// both ends wrote, escaped and parsed for every query.
fn encode_request(r: &Request, statistics: &[(String, Arc<[u8]>)]) -> Result<Vec<u8>, QueryError> {
    let mut out = serde_json::to_vec(r).map_err(failed)?;
    out.push(b'\n');
    for (path, stats) in statistics {
        for part in [path.as_bytes(), stats] {
            let len = u32::try_from(part.len()).map_err(|_| failed("statistics too large"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    Ok(out)
}

/// The inverse of [`encode_request`]. Statistics that do not decode are
/// left out (their segments are opened and pruned as without); a request
/// cut short is refused.
fn decode_request(input: &[u8]) -> Result<(Request, HashMap<String, Arc<Statistics>>), String> {
    let nl = input
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no request line")?;
    let request: Request = serde_json::from_slice(&input[..nl]).map_err(|e| e.to_string())?;
    let mut rest = &input[nl + 1..];
    let mut statistics = HashMap::new();
    while !rest.is_empty() {
        let path = std::str::from_utf8(length_prefixed(&mut rest)?).map_err(|e| e.to_string())?;
        if let Some(stats) = crate::footers::decode(length_prefixed(&mut rest)?) {
            statistics.insert(path.to_string(), stats);
        }
    }
    Ok((request, statistics))
}

/// Takes one part prefixed by its length (4 bytes, big-endian) off `rest`.
fn length_prefixed<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let (len, tail) = rest
        .split_first_chunk::<4>()
        .ok_or("statistics cut short")?;
    let len = u32::from_be_bytes(*len) as usize;
    if tail.len() < len {
        return Err("statistics cut short".into());
    }
    let (part, tail) = tail.split_at(len);
    *rest = tail;
    Ok(part)
}

/// The worker's header line.
#[derive(Serialize, Deserialize)]
struct Header {
    error: Option<ErrorWire>,
    rows: usize,
    scan: ScanStats,
    masked: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct ErrorWire {
    kind: String,
    message: String,
    a: usize,
    b: usize,
}

fn to_wire(e: &QueryError) -> ErrorWire {
    let (kind, a, b) = match e {
        QueryError::Refused(_) => ("refused", 0, 0),
        QueryError::ScanTooLarge(a, b) => ("scan_too_large", *a, *b),
        QueryError::ResultTooLarge(a) => ("result_too_large", *a, 0),
        QueryError::ResultTooManyBytes(a) => ("result_too_many_bytes", *a, 0),
        QueryError::Timeout(d) => ("timeout", d.as_millis() as usize, 0),
        QueryError::Failed(_) => ("failed", 0, 0),
        QueryError::Vault(_) => ("vault", 0, 0),
    };
    let message = match e {
        QueryError::Refused(m) | QueryError::Failed(m) => m.clone(),
        QueryError::Vault(VaultError::Read(m)) => m.clone(),
        other => other.to_string(),
    };
    ErrorWire {
        kind: kind.into(),
        message,
        a,
        b,
    }
}

fn from_wire(e: ErrorWire) -> QueryError {
    match e.kind.as_str() {
        "refused" => QueryError::Refused(e.message),
        "scan_too_large" => QueryError::ScanTooLarge(e.a, e.b),
        "result_too_large" => QueryError::ResultTooLarge(e.a),
        "result_too_many_bytes" => QueryError::ResultTooManyBytes(e.a),
        "timeout" => QueryError::Timeout(Duration::from_millis(e.a as u64)),
        "vault" => QueryError::Vault(VaultError::Read(e.message)),
        _ => QueryError::Failed(e.message),
    }
}

fn failed(m: impl std::fmt::Display) -> QueryError {
    QueryError::Failed(m.to_string())
}

/// One query for a worker: who asks, what, and under which bounds.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    /// How to start the worker.
    pub cfg: &'a WorkerConfig,
    /// The server's vault (the read plans are taken from it).
    pub vault: &'a Vault,
    /// What the caller may see.
    pub access: &'a Access,
    /// Who the caller is, for masking.
    pub caller: &'a Caller,
    /// Key of the `hash` masking action.
    pub hash_key: &'a [u8; 32],
    /// The SQL.
    pub sql: &'a str,
    /// The query's bounds.
    pub limits: QueryLimits,
}

/// Runs a query in a worker process (the server's side). The read plans of
/// the caller's namespaces are taken here. A segment merged away before the
/// worker read it is retried with fresh read plans (as in-process queries
/// are).
pub async fn run(job: Job<'_>) -> Result<Answer, QueryError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match run_once(job).await {
            Err(QueryError::Vault(VaultError::Read(m)))
                if m.starts_with(sql::VANISHED) && attempt < 3 =>
            {
                tracing::debug!(attempt, "query worker retried: {m}");
            }
            other => return other,
        }
    }
}

async fn run_once(job: Job<'_>) -> Result<Answer, QueryError> {
    let Job {
        cfg,
        vault,
        access,
        caller,
        hash_key,
        sql,
        limits,
    } = job;
    let mut plans = HashMap::new();
    for ns in &access.namespaces {
        let plan = match vault.read_plan(ns).await {
            Ok(p) => p,
            Err(VaultError::BadNamespace(_)) => continue,
            Err(e) => return Err(QueryError::Vault(e)),
        };
        plans.insert(ns.clone(), plan);
    }
    // Footers not yet cached are read a few at a time (once per segment
    // for the life of the server).
    let store = vault.store().object_store();
    let segments: Vec<(object_store::path::Path, u64)> = plans
        .values()
        .flat_map(|p| p.segments.iter().map(|s| (s.path.clone(), s.size)))
        .collect();
    let reads = segments.into_iter().map(|(path, size)| {
        let store = store.clone();
        async move {
            let s = crate::footers::encoded_statistics(&store, &path, size).await?;
            Some((path.to_string(), s))
        }
    });
    let statistics: Vec<(String, Arc<[u8]>)> = futures::stream::iter(reads)
        .buffer_unordered(8)
        .filter_map(std::future::ready)
        .collect()
        .await;
    let request = Request {
        sql: sql.to_string(),
        access: access.clone(),
        limits,
        store_url: cfg.store_url.clone(),
        caller: caller.clone(),
        hash_key: hex::encode(hash_key),
        threads: cfg.threads,
        plans,
    };
    let input = encode_request(&request, &statistics)?;
    drop((request, statistics));

    let args = cfg.args(&limits);
    let mut child = cfg.spare.take(&cfg.exe, &args)?;
    // Removed when this function returns, however the worker ended; a
    // worker still running then is killed first (`kill_on_drop`).
    let spill = child
        .id()
        .map(|pid| SpillDir(worker_spill_dir(&cfg.spill_dir, pid)));
    let mut stdin = child.stdin.take().ok_or_else(|| failed("worker stdin"))?;
    let mut stdout = child.stdout.take().ok_or_else(|| failed("worker stdout"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| failed("worker stderr"))?;
    // The answer is bounded: the result cap plus the header.
    let cap = limits
        .max_result_bytes
        .saturating_mul(2)
        .saturating_add(1 << 20);
    let exchange = async {
        let write = async {
            stdin.write_all(&input).await?;
            stdin.shutdown().await?;
            drop(stdin);
            Ok::<_, std::io::Error>(())
        };
        let read = async {
            let mut out = Vec::new();
            (&mut stdout)
                .take(cap as u64 + 1)
                .read_to_end(&mut out)
                .await?;
            Ok::<_, std::io::Error>(out)
        };
        let errs = async {
            let mut e = Vec::new();
            let _ = (&mut stderr).take(16 << 10).read_to_end(&mut e).await;
            e
        };
        let (w, r, e) = tokio::join!(write, read, errs);
        (w, r, e)
    };
    // The worker enforces the same timeout itself; this is the backstop.
    let deadline = limits.timeout + Duration::from_secs(5);
    let exchanged = tokio::time::timeout(deadline, exchange).await;
    cfg.spare.refill(&cfg.exe, &args);
    let (w, r, errs) = match exchanged {
        Ok(x) => x,
        Err(_) => {
            let _ = child.kill().await;
            return Err(QueryError::Timeout(limits.timeout));
        }
    };
    let out = r.map_err(|e| failed(format!("reading the query worker: {e}")))?;
    // A whole answer (a result, or an error the worker reported) is the
    // answer: the worker closed its output after writing it, and is reaped
    // meanwhile instead of waited for (its exit unmaps a large process).
    if w.is_ok()
        && out.len() <= cap
        && let Some(answer) = whole_answer(&out)
    {
        tokio::spawn(async move {
            let _ = child.wait().await;
            drop(spill);
        });
        return answer;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| failed(format!("query worker: {e}")))?;
    if !status.success() || w.is_err() {
        return Err(died(status, &errs));
    }
    if out.len() > cap {
        return Err(QueryError::ResultTooManyBytes(limits.max_result_bytes));
    }
    parse_answer(&out)
}

/// A worker's own spill directory under the server's `dir`.
fn worker_spill_dir(dir: &std::path::Path, pid: u32) -> PathBuf {
    dir.join(format!("w-{pid}"))
}

/// A worker's spill directory, removed (with whatever a killed worker left
/// in it) when dropped: after the worker has exited.
struct SpillDir(PathBuf);

impl Drop for SpillDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing {}: {e}", self.0.display()),
        }
    }
}

/// The answer in `out` if it is whole: its header line and, for a result,
/// the complete Arrow stream after it. `None` when it is not (the worker
/// died while writing, or wrote something else): then its exit says why.
fn whole_answer(out: &[u8]) -> Option<Result<Answer, QueryError>> {
    let nl = out.iter().position(|&b| b == b'\n')?;
    let header: Header = serde_json::from_slice(&out[..nl]).ok()?;
    match header.error {
        Some(_) => Some(parse_answer(out)),
        None => parse_answer(out).ok().map(Ok),
    }
}

/// Why a worker ended without an answer, in words for the caller.
fn died(status: std::process::ExitStatus, stderr: &[u8]) -> QueryError {
    use std::os::unix::process::ExitStatusExt;
    let text = String::from_utf8_lossy(stderr);
    let first: String = text
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    tracing::warn!(?status, "query worker ended without an answer: {first}");
    let why = match status.signal() {
        Some(libc::SIGXCPU) => "it used up its CPU time".to_string(),
        Some(libc::SIGKILL) => "it was killed (out of memory?)".to_string(),
        Some(libc::SIGABRT) => "it ran out of memory or hit an engine fault".to_string(),
        Some(s) => format!("signal {s}"),
        None => format!("exit status {}", status.code().unwrap_or(-1)),
    };
    QueryError::Failed(format!(
        "the query's worker process ended without an answer ({why}); the query alone failed"
    ))
}

fn parse_answer(out: &[u8]) -> Result<Answer, QueryError> {
    let nl = out
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| failed("the query worker gave no header"))?;
    let header: Header = serde_json::from_slice(&out[..nl])
        .map_err(|e| failed(format!("query worker header: {e}")))?;
    if let Some(e) = header.error {
        return Err(from_wire(e));
    }
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(&out[nl + 1..]), None)
            .map_err(|e| failed(format!("query worker result: {e}")))?;
    let schema: SchemaRef = reader.schema();
    let batches = reader
        .collect::<Result<Vec<RecordBatch>, _>>()
        .map_err(|e| failed(format!("query worker result: {e}")))?;
    Ok(Answer {
        result: QueryResult {
            schema,
            batches,
            rows: header.rows,
            scan: header.scan,
        },
        masked: header.masked,
    })
}

/// The limits a worker puts on itself before it reads its request.
#[derive(Debug, Clone, Copy)]
pub struct SelfLimits {
    /// `RLIMIT_DATA` (bytes).
    pub memory_bytes: u64,
    /// `RLIMIT_CPU` (seconds).
    pub cpu_seconds: u64,
    /// Nice value (0-19).
    pub nice: i32,
}

/// Applies `l` to this process; an error means the worker must not run.
fn limit_self(l: SelfLimits) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    // SAFETY: setrlimit and setpriority only read their integer arguments.
    unsafe {
        let data = libc::rlimit {
            rlim_cur: l.memory_bytes as libc::rlim_t,
            rlim_max: l.memory_bytes as libc::rlim_t,
        };
        if libc::setrlimit(libc::RLIMIT_DATA, &data) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let cpu = libc::rlimit {
            rlim_cur: l.cpu_seconds as libc::rlim_t,
            rlim_max: l.cpu_seconds.saturating_add(1) as libc::rlim_t,
        };
        if libc::setrlimit(libc::RLIMIT_CPU, &cpu) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::setpriority(libc::PRIO_PROCESS, 0, l.nice.clamp(0, 19)) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The worker's side: limits itself, reads the request on stdin, runs it,
/// answers on stdout. Returns the process exit code (0 whenever an answer,
/// result or error, was written).
pub fn worker_main(limits: SelfLimits, spill_dir: &std::path::Path) -> i32 {
    if let Err(e) = limit_self(limits) {
        eprintln!("query worker: setting its limits: {e}");
        return 2;
    }
    // Its own directory, which the server removes once this process has
    // exited (a killed worker's spill files included). Without it, no query:
    // spilling into the OS temporary directory would leave rows where
    // nothing cleans them.
    let own = worker_spill_dir(spill_dir, std::process::id());
    if let Err(e) = std::fs::create_dir_all(&own) {
        eprintln!("query worker: creating {}: {e}", own.display());
        return 2;
    }
    crate::sql::spill_into(own);
    let mut input = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut input) {
        eprintln!("query worker: reading the request: {e}");
        return 2;
    }
    // An idle spare whose server ended (or dropped it) reads nothing.
    if input.is_empty() {
        return 0;
    }
    let (request, statistics) = match decode_request(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("query worker: bad request: {e}");
            return 2;
        }
    };
    drop(input);
    let (header, body) = match answer(request, statistics) {
        Ok((result, masked)) => match crate::rows::to_arrow_ipc(&result.schema, &result.batches) {
            Ok(bytes) => (
                Header {
                    error: None,
                    rows: result.rows,
                    scan: result.scan,
                    masked,
                },
                bytes,
            ),
            Err(e) => (error_header(&failed(e)), Vec::new()),
        },
        Err(e) => (error_header(&e), Vec::new()),
    };
    let mut out = std::io::stdout().lock();
    let line = serde_json::to_vec(&header).unwrap_or_default();
    let ok = std::io::Write::write_all(&mut out, &line)
        .and_then(|_| std::io::Write::write_all(&mut out, b"\n"))
        .and_then(|_| std::io::Write::write_all(&mut out, &body))
        .and_then(|_| std::io::Write::flush(&mut out));
    drop(out);
    // The server reads both pipes to their end: close them now rather than
    // when the exit has unmapped this process (milliseconds for a binary
    // this size). Nothing is written after the answer.
    #[cfg(unix)]
    // SAFETY: closes this process's own stdout and stderr; no Rust handle
    // writes to them after this point (the worker returns and exits).
    unsafe {
        libc::close(1);
        libc::close(2);
    }
    if ok.is_err() { 3 } else { 0 }
}

fn error_header(e: &QueryError) -> Header {
    Header {
        error: Some(to_wire(e)),
        rows: 0,
        scan: ScanStats::default(),
        masked: BTreeMap::new(),
    }
}

fn answer(
    r: Request,
    statistics: HashMap<String, Arc<Statistics>>,
) -> Result<(QueryResult, BTreeMap<String, u64>), QueryError> {
    let policy = match &r.caller.policy_toml {
        Some(t) => Policy::from_toml(t).map_err(|e| failed(format!("masking policy: {e}")))?,
        None => Policy::default_policy(),
    };
    let key: [u8; 32] = hex::decode(&r.hash_key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| failed("hash key"))?;
    let profile = policy.profile_for(&r.caller.role, &r.caller.claims);
    let masker = Arc::new(Masker::new(profile, &key));
    let store = Store::from_url(&r.store_url).map_err(|e| failed(format!("store: {e}")))?;
    let source = Arc::new(FixedReadPlans {
        store,
        plans: r.plans,
        statistics,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(r.threads.max(1))
        .enable_all()
        .build()
        .map_err(failed)?;
    let result = rt.block_on(sql::run(source, &r.access, &masker, &r.sql, r.limits))?;
    Ok((result, masker.counts()))
}

#[cfg(test)]
mod tests {
    use datafusion::common::stats::Precision;
    use prost::Message;
    use tracevault_schemas::rows::segment_schema;

    use super::*;

    fn request() -> Request {
        Request {
            sql: "SELECT 1\n-- a newline inside the SQL".into(),
            access: Access {
                namespaces: vec!["a".into()],
                from_us: Some(1),
                to_us: None,
                diagnostics: false,
            },
            limits: QueryLimits {
                max_scan_rows: 1,
                max_result_rows: 1,
                memory_bytes: 1,
                timeout: Duration::from_secs(1),
                max_result_bytes: 1,
                guard: Default::default(),
            },
            store_url: "file:///tmp".into(),
            caller: Caller {
                policy_toml: None,
                role: "reader".into(),
                claims: Map::new(),
            },
            hash_key: "00".into(),
            threads: 1,
            plans: HashMap::new(),
        }
    }

    fn stats(rows: usize) -> Arc<[u8]> {
        let mut s = Statistics::new_unknown(&segment_schema());
        s.num_rows = Precision::Exact(rows);
        datafusion_proto_common::protobuf_common::Statistics::from(&s)
            .encode_to_vec()
            .into()
    }

    /// Statistics travel as raw bytes after the request line and come back
    /// by path; unreadable statistics are left out (their segment is then
    /// opened and pruned without), a request cut short is refused.
    #[test]
    fn the_request_and_its_statistics_travel_whole() {
        let sent = vec![
            ("ns/a/segments/1.parquet".to_string(), stats(7)),
            ("ns/a/segments/2.parquet".to_string(), Arc::from(&b"zz"[..])),
            ("ns/a/segments/3.parquet".to_string(), stats(9)),
        ];
        let bytes = encode_request(&request(), &sent).unwrap();
        let (r, got) = decode_request(&bytes).unwrap();
        assert_eq!(r.sql, request().sql);
        assert_eq!(got.len(), 2);
        assert_eq!(got["ns/a/segments/3.parquet"].num_rows, Precision::Exact(9));
        assert_eq!(got["ns/a/segments/1.parquet"].num_rows, Precision::Exact(7));
        for cut in [1, 5, 40] {
            let e = decode_request(&bytes[..bytes.len() - cut]).err();
            assert_eq!(e.as_deref(), Some("statistics cut short"), "cut {cut}");
        }
        assert!(decode_request(b"{\"sql\":1}").is_err());
        // Without statistics at all.
        let (_, none) = decode_request(&encode_request(&request(), &[]).unwrap()).unwrap();
        assert!(none.is_empty());
    }
}
