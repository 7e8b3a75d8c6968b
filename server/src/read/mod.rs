//! The read side's HTTP endpoints: entries and SQL, over `query` (the SQL
//! engine, its guard and worker processes, masking). Every row that leaves
//! the server through them is masked per the caller's profile and recorded
//! in `_audit` first.
//!
//! - `GET /v1/logs/{ns}/entries/{index}` (reader, admin): the committed record
//!   (what the leaf hash covers: digests only for content and attributes) and
//!   the stored event, masked.
//! - `POST /v1/query` (reader, admin) `{"sql"}`: SQL over table `traces` and
//!   view `sessions`, enforced and masked below SQL (`tracevault_query::sql`);
//!   JSON rows, or Arrow IPC with `Accept: application/vnd.apache.arrow.stream`.

use std::path::Path as FsPath;
use std::sync::Arc;

mod answer;

use crate::{ApiError, AppState, StartError, audit, auth};
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use tracevault_query::masking::{Masker, Policy};
use tracevault_vault::token::{Claims, Role};

/// Bounds of SQL queries (config section `[query]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Most rows the scan of a caller's `traces` may produce for one query (refused beyond).
    pub max_scan_rows: usize,
    /// Most rows in a result (refused beyond, never cut).
    pub max_result_rows: usize,
    /// Memory one query's operators may use (MiB).
    pub memory_mb: usize,
    /// Wall-clock limit of one query (seconds).
    pub timeout_s: u64,
    /// Longest SQL text (bytes).
    pub max_sql_bytes: usize,
    /// Queries run at once; more get `503 busy` (each has its own memory pool).
    pub max_concurrent: usize,
    /// Worker threads of the query engine's own runtime.
    pub threads: usize,
    /// Queries one token may run at once (fairness); more get `503 busy`.
    pub max_concurrent_per_token: usize,
    /// Most bytes in a result (refused beyond, never cut).
    pub max_result_bytes: usize,
    /// Most bytes one function call may produce for one batch (the guard
    /// against allocation bombs, `query::guard`).
    pub max_call_bytes: usize,
    /// Scheduling priority (nice, 0-19) of the query engine's threads (and
    /// worker processes): the heaviest queries yield the CPU to ingest and
    /// health checks.
    pub nice: i32,
    /// Where queries run: `process` (a worker process per query, with its
    /// own memory limit: an engine fault fails the query, never the server)
    /// or `thread` (in the server, on the query engine's threads).
    pub isolation: Isolation,
    /// Memory a query worker process may use (MiB; 0: `memory_mb` + 512).
    pub worker_memory_mb: usize,
    /// How long a client may take no bytes of a query's answer (seconds).
    /// The answer keeps its query slot until it is read; a client that
    /// stops reading for this long has it dropped and its connection closed.
    pub answer_stall_timeout_s: u64,
    /// What runs the planned query: `embedded` (DataFusion here, the
    /// default) or `ballista` (a Ballista cluster: `ballista_scheduler`).
    pub engine: EngineKind,
    /// The Ballista scheduler, `df://HOST:PORT` (with `engine = "ballista"`).
    pub ballista_scheduler: Option<String>,
}

/// `[query] engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// DataFusion in this server (or its query worker processes).
    #[default]
    Embedded,
    /// Apache DataFusion Ballista: planned and secured here, run by the
    /// cluster's executors (docs/distributed-sql.md).
    Ballista,
}

/// Where queries run (`[query] isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A worker process per query.
    Process,
    /// In the server process.
    Thread,
}

impl QueryConfig {
    /// The bounds of one query.
    pub fn limits(&self) -> tracevault_query::sql::QueryLimits {
        tracevault_query::sql::QueryLimits {
            max_scan_rows: self.max_scan_rows,
            max_result_rows: self.max_result_rows,
            memory_bytes: self.memory_mb << 20,
            timeout: std::time::Duration::from_secs(self.timeout_s.max(1)),
            max_result_bytes: self.max_result_bytes,
            guard: tracevault_query::guard::GuardLimits {
                max_call_bytes: self.max_call_bytes,
            },
        }
    }
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_scan_rows: 10_000_000,
            max_result_rows: 100_000,
            memory_mb: 512,
            timeout_s: 30,
            max_sql_bytes: 64 << 10,
            max_concurrent: 4,
            threads: 2,
            max_concurrent_per_token: 2,
            max_result_bytes: 128 << 20,
            max_call_bytes: 64 << 20,
            nice: 10,
            isolation: Isolation::Process,
            worker_memory_mb: 0,
            answer_stall_timeout_s: 30,
            engine: EngineKind::Embedded,
            ballista_scheduler: None,
        }
    }
}

/// What the read endpoints need besides the server state.
pub struct ReadContext {
    /// The masking policy (the built-in strict one unless configured).
    pub policy: Policy,
    /// Key of the `hash` action; never leaves the server.
    pub hash_key: [u8; 32],
    /// Query bounds.
    pub query: QueryConfig,
    /// Slots for running queries (`max_concurrent`).
    pub slots: Arc<tokio::sync::Semaphore>,
    /// The query engine's own runtime, so CPU-bound scans and masking never
    /// occupy the worker threads that acknowledge writes.
    pub engine: tokio::runtime::Handle,
    /// Query slots per token (`max_concurrent_per_token`).
    pub per_token: crate::fair::PerKeySlots,
    /// How worker processes are started (`isolation = "process"`).
    pub worker: Option<tracevault_query::worker::WorkerConfig>,
    /// The masking policy's text, for worker processes (`None`: built-in).
    pub policy_toml: Option<String>,
    /// What runs planned queries (`[query] engine`).
    pub sql_engine: tracevault_query::sql::Engine,
}

/// A running query's hold on the engine: a slot of the server's and one of
/// its token's.
pub struct QuerySlot {
    _slot: tokio::sync::OwnedSemaphorePermit,
    _own: crate::fair::KeySlot,
}

/// Starts the query runtime on a thread of its own; it lives as long as the
/// process (a runtime cannot be dropped from async code).
fn start_engine(threads: usize, nice: i32) -> Result<tokio::runtime::Handle, StartError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("query-engine".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name("query-worker")
                .on_thread_start(move || tracevault_query::priority::lower_this_thread(nice))
                .enable_all()
                .build();
            match rt {
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
        .map_err(|e| StartError(format!("starting the query engine thread: {e}")))?;
    rx.recv()
        .map_err(|_| StartError("the query engine thread ended".into()))?
        .map_err(|e| StartError(format!("building the query runtime: {e}")))
}

/// This process's own executable, to start query workers with. On Linux
/// `/proc/self/exe`, which names the image this server runs even after the
/// file at its path was replaced (an upgrade in place): a worker of another
/// build would not speak this one's protocol, and would mask with its own
/// code (found by an attacker review: every query failed after a rebuild).
fn own_executable() -> Result<std::path::PathBuf, StartError> {
    let proc_self = std::path::PathBuf::from("/proc/self/exe");
    if cfg!(target_os = "linux") && proc_self.exists() {
        return Ok(proc_self);
    }
    std::env::current_exe().map_err(|e| StartError(format!("locating this executable: {e}")))
}

/// `<data>/spill`, emptied: what queries of an earlier run spilled there
/// (rows, see [`tracevault_query::sql::spill_into`]) is removed before
/// this one starts. The data directory is this server's alone.
fn empty_spill_dir(data: &FsPath) -> Result<std::path::PathBuf, StartError> {
    let dir = data.join("spill");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StartError(format!("emptying {}: {e}", dir.display()))),
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| StartError(format!("creating {}: {e}", dir.display())))?;
    Ok(dir)
}

impl ReadContext {
    /// Loads the policy file (if any) and the hash key
    /// (`<data>/keys/masking.key`, created 0600 on first use).
    pub fn load(
        data: &FsPath,
        policy_file: Option<&FsPath>,
        query: QueryConfig,
        store_url: &str,
    ) -> Result<ReadContext, StartError> {
        let (policy, policy_toml) = match policy_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    StartError(format!("reading masking policy {}: {e}", p.display()))
                })?;
                let policy = Policy::from_toml(&text)
                    .map_err(|e| StartError(format!("masking policy {}: {e}", p.display())))?;
                (policy, Some(text))
            }
            None => (Policy::default_policy(), None),
        };
        let spill_dir = empty_spill_dir(data)?;
        // In-process queries spill there too (the first server of this
        // process decides: tests run several in one).
        tracevault_query::sql::spill_into(spill_dir.clone());
        let worker = match query.isolation {
            Isolation::Thread => None,
            Isolation::Process => {
                if !(store_url.starts_with("file://") || store_url.starts_with("s3://")) {
                    return Err(StartError(format!(
                        "[query] isolation = \"process\" needs a file:// or s3:// store (have {store_url})"
                    )));
                }
                let mb = if query.worker_memory_mb == 0 {
                    query.memory_mb + 512
                } else {
                    query.worker_memory_mb
                };
                Some(tracevault_query::worker::WorkerConfig {
                    exe: own_executable()?,
                    store_url: store_url.to_string(),
                    memory_bytes: (mb as u64) << 20,
                    nice: query.nice,
                    threads: query.threads,
                    spare: Default::default(),
                    spill_dir,
                })
            }
        };
        let (key, _) = tracevault_vault::keys::load_or_create(&data.join("keys/masking.key"))
            .map_err(|e| StartError(e.to_string()))?;
        let sql_engine = match (query.engine, &query.ballista_scheduler) {
            (EngineKind::Embedded, _) => tracevault_query::sql::Engine::Embedded,
            (EngineKind::Ballista, Some(url)) if url.starts_with("df://") => {
                tracevault_query::sql::Engine::Ballista {
                    scheduler: url.clone(),
                    masking_id: tracevault_query::distributed::masking_id(
                        policy_toml.as_deref(),
                        &key.to_bytes(),
                    ),
                }
            }
            (EngineKind::Ballista, _) => {
                return Err(StartError(
                    "[query] engine = \"ballista\" needs ballista_scheduler = \"df://HOST:PORT\""
                        .into(),
                ));
            }
        };
        let engine = start_engine(query.threads, query.nice)?;
        if let Some(w) = &worker
            && sql_engine == tracevault_query::sql::Engine::Embedded
        {
            let (w, limits) = (w.clone(), query.limits());
            engine.spawn(async move { w.start_spare(&limits) });
        }
        Ok(ReadContext {
            policy,
            hash_key: key.to_bytes(),
            slots: Arc::new(tokio::sync::Semaphore::new(query.max_concurrent.max(1))),
            engine,
            per_token: crate::fair::PerKeySlots::new(query.max_concurrent_per_token),
            worker,
            policy_toml,
            sql_engine,
            query,
        })
    }
}

impl ReadContext {
    /// A query slot for `claims`' token: `503 busy` when the server runs
    /// `max_concurrent` queries, or this token already runs its share.
    pub fn take_slot(&self, claims: &Claims) -> Result<QuerySlot, ApiError> {
        let own = self
            .per_token
            .try_take(&crate::auth::budget_key(claims))
            .ok_or_else(|| {
                ApiError::unavailable(
                    "busy",
                    format!(
                        "this token already runs {} queries; retry when one ends",
                        self.per_token.per_key()
                    ),
                )
            })?;
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable(
                "busy",
                format!(
                    "{} queries are running; retry shortly",
                    self.query.max_concurrent
                ),
            )
        })?;
        Ok(QuerySlot {
            _slot: slot,
            _own: own,
        })
    }
}

impl ReadContext {
    /// Runs a caller's SQL where `[query] isolation` says (a worker process,
    /// or the engine's threads here), holding `slot` until it ends (even if
    /// the client goes away: the query is bounded by its timeout). Returns
    /// the result and the masking counts for the access log.
    pub async fn run_sql(
        &self,
        vault: &tracevault_vault::Vault,
        claims: &Claims,
        access: &tracevault_query::sql::Access,
        sql: &str,
        slot: QuerySlot,
    ) -> (
        Result<tracevault_query::sql::QueryResult, tracevault_query::sql::QueryError>,
        std::collections::BTreeMap<String, u64>,
        Option<QuerySlot>,
    ) {
        use tracevault_query::sql::QueryError;
        let limits = self.query.limits();
        let (vault, access, sql) = (vault.clone(), access.clone(), sql.to_string());
        // A Ballista query is planned here and run by the cluster: no worker.
        let worker = match self.sql_engine {
            tracevault_query::sql::Engine::Embedded => self.worker.as_ref(),
            tracevault_query::sql::Engine::Ballista { .. } => None,
        };
        let task = match worker {
            Some(cfg) => {
                let caller = tracevault_query::worker::Caller {
                    policy_toml: self.policy_toml.clone(),
                    role: role_name(claims).to_string(),
                    claims: claim_map(claims),
                };
                let (cfg, key) = (cfg.clone(), self.hash_key);
                self.engine.spawn(async move {
                    let job = tracevault_query::worker::Job {
                        cfg: &cfg,
                        vault: &vault,
                        access: &access,
                        caller: &caller,
                        hash_key: &key,
                        sql: &sql,
                        limits,
                    };
                    match tracevault_query::worker::run(job).await {
                        Ok(a) => (Ok(a.result), a.masked, Some(slot)),
                        Err(e) => (Err(e), Default::default(), Some(slot)),
                    }
                })
            }
            None => {
                let profile = self
                    .policy
                    .profile_for(role_name(claims), &claim_map(claims));
                let masker = Arc::new(Masker::new(profile, &self.hash_key));
                let engine = self.sql_engine.clone();
                self.engine.spawn(async move {
                    let source: Arc<dyn tracevault_query::ReadPlanSource> = Arc::new(vault);
                    let r = tracevault_query::sql::run_on(
                        source, &access, &masker, &sql, limits, &engine,
                    )
                    .await;
                    (r, masker.counts(), Some(slot))
                })
            }
        };
        task.await.unwrap_or_else(|e| {
            (
                Err(QueryError::Failed(format!("the query task failed: {e}"))),
                Default::default(),
                None,
            )
        })
    }

    /// Runs `render` (turning a result into its answer's bytes: seconds of
    /// CPU for a large JSON answer) on the query engine's threads, which
    /// yield to ingest, holding `slot` meanwhile (a client gone meanwhile
    /// does not free it early); gives the slot back with the bytes.
    async fn render_on_engine(
        &self,
        slot: Option<QuerySlot>,
        render: impl FnOnce() -> Result<Vec<u8>, ApiError> + Send + 'static,
    ) -> Result<(Vec<u8>, Option<QuerySlot>), ApiError> {
        self.engine
            .spawn(async move { render().map(|bytes| (bytes, slot)) })
            .await
            .map_err(|e| ApiError::unavailable("internal", format!("rendering the answer: {e}")))?
    }
}

/// The read routes, to be merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/logs/{ns}/entries/{index}", get(entry))
        .route("/v1/query", axum::routing::post(query))
}

/// A reader's window as Unix microseconds (inclusive bounds).
pub(crate) fn window(c: &Claims) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let parse = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| {
                tracevault_schemas::parse_timestamp(name, s)
                    .map(|t| t.timestamp_micros())
                    .map_err(|e| {
                        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
                    })
            })
            .transpose()
    };
    Ok((parse("win_from", &c.win_from)?, parse("win_to", &c.win_to)?))
}

/// Masks the stored event in place: string fields per their column, JSON
/// content and attributes recursively; a `drop` removes the field.
fn mask_event(m: &Masker, event: &mut Map<String, Value>) {
    // Structural fields are never masked (as in SQL, where they also prune).
    let keys: Vec<String> = event
        .keys()
        .filter(|k| !matches!(k.as_str(), "ns" | "kind" | "index" | "session_seq"))
        .cloned()
        .collect();
    for k in keys {
        let Some(v) = event.get_mut(&k) else { continue };
        let keep = match v {
            Value::String(s) => match m.mask_str(&k, s) {
                None => false,
                Some(std::borrow::Cow::Borrowed(_)) => true,
                Some(std::borrow::Cow::Owned(masked)) => {
                    *s = masked;
                    true
                }
            },
            other => {
                m.mask_json(&k, other);
                !other.is_null()
            }
        };
        if !keep {
            event.remove(&k);
        }
    }
}

/// Fields of the committed record that hold a column's value verbatim
/// (shared with export bundles, which withhold records the same way).
use tracevault_query::masking::VERBATIM as LEAF_TEXT_FIELDS;

/// Masks the verbatim column values of the committed record like the same
/// columns of the event, so the leaf never shows what the event hides.
/// Returns the fields changed: with them masked, the leaf hash can no longer
/// be recomputed from the shown record, but the inclusion proof of
/// `leaf_hash` still checks.
fn mask_leaf(m: &Masker, leaf: &mut Value) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let Value::Object(o) = leaf else {
        return changed;
    };
    for f in LEAF_TEXT_FIELDS {
        let Some(Value::String(v)) = o.get(f) else {
            continue;
        };
        match m.mask_str(f, v) {
            Some(std::borrow::Cow::Borrowed(_)) => {}
            Some(std::borrow::Cow::Owned(masked)) => {
                o.insert(f.to_string(), Value::String(masked));
                changed.push(f);
            }
            None => {
                o.insert(f.to_string(), Value::String("[WITHHELD]".into()));
                changed.push(f);
            }
        }
    }
    changed
}

async fn entry(
    State(st): State<AppState>,
    Extension(rc): Extension<Arc<ReadContext>>,
    path: Result<Path<(String, u64)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    let (ns, index) = path
        .map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    auth::authorize(&claims, &[Role::Reader, Role::Admin], Some(&ns))?;
    tracevault_vault::validate_namespace(&ns, claims.role == Role::Admin)?;
    let (from_us, to_us) = window(&claims)?;
    let access = tracevault_query::sql::Access {
        namespaces: vec![ns.clone()],
        from_us,
        to_us,
        diagnostics: false,
    };
    let not_found = || {
        ApiError::not_found(
            "no_such_entry",
            format!("namespace {ns} has no entry {index} in this token's window"),
        )
    };
    // Reading an entry reads its segment: it takes a query slot, so that
    // many at once are refused (`503 busy`) rather than all loaded.
    // Charged once it has a slot: a `503 busy` is not a read.
    let _slot = rc.take_slot(&claims)?;
    st.charge_read(&claims, "")?;
    let e = st.vault.entry(&ns, index).await?.ok_or_else(not_found)?;
    // Outside the reader's window looks exactly like absent.
    if !access.admits(&e.ns, e.received_at) {
        return Err(not_found());
    }
    let record = e
        .committed_record_bytes()
        .map_err(|err| ApiError::unavailable("internal", err.to_string()))?;
    let mut leaf: Value = serde_json::from_slice(&record)
        .map_err(|err| ApiError::unavailable("internal", err.to_string()))?;
    let role = role_name(&claims);
    let claim_map = claim_map(&claims);
    let profile = rc.policy.profile_for(role, &claim_map);
    let masker = Masker::new(profile, &rc.hash_key);
    let withheld = mask_leaf(&masker, &mut leaf);
    let mut event = match e.to_event_json() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    mask_event(&masker, &mut event);
    // Recorded before the row leaves: no audit entry, no read.
    audit::append(
        &st.vault,
        vec![audit::event(
            audit::ENTRY_READS,
            "entry_read",
            &claims.sub,
            json!({"ns": ns, "index": index, "role": role, "jti": claims.jti,
                       "profile": profile.name, "masked": masker.counts()}),
        )],
    )
    .await?;
    Ok(Json(json!({
        "index": index,
        // With a verbatim column masked, the record and its hash would let a
        // reader confirm guesses of it: withhold both (docs/masking.md).
        "leaf_hash": if withheld.is_empty() { json!(hex::encode(e.leaf_hash)) } else { Value::Null },
        "leaf": if withheld.is_empty() { leaf } else { Value::Null },
        "leaf_masked": withheld,
        "event": Value::Object(event),
        "masking_profile": profile.name,
    })))
}

pub(crate) fn role_name(c: &Claims) -> &'static str {
    c.role.as_str()
}

pub(crate) fn claim_map(c: &Claims) -> Map<String, Value> {
    match serde_json::to_value(c) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

async fn query(
    State(st): State<AppState>,
    Extension(rc): Extension<Arc<ReadContext>>,
    abort: Option<Extension<crate::listener::ConnectionAbort>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    use tracevault_query::sql::Access;
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Reader, Role::Admin], None)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("body_too_large", "the query request is too large")
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })?;
    if body.len() > rc.query.max_sql_bytes + 1024 {
        return Err(ApiError::too_large(
            "body_too_large",
            "the query request is too large",
        ));
    }
    let req: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("expected {{\"sql\": \"...\"}}: {e}"),
        )
    })?;
    if req.sql.len() > rc.query.max_sql_bytes {
        return Err(ApiError::too_large(
            "sql_too_large",
            format!("SQL is at most {} bytes", rc.query.max_sql_bytes),
        ));
    }
    let namespaces = if claims.ns.iter().any(|n| n == "*") && claims.role == Role::Admin {
        let mut all: Vec<String> = st
            .vault
            .namespaces()
            .await?
            .into_iter()
            .map(|n| n.ns)
            .collect();
        if !all.iter().any(|n| n == audit::AUDIT_NS) {
            all.push(audit::AUDIT_NS.to_string());
        }
        all
    } else {
        let mut own = claims.ns.clone();
        own.sort();
        own.dedup();
        for ns in &own {
            tracevault_vault::validate_namespace(ns, claims.role == Role::Admin)?;
        }
        own
    };
    let (from_us, to_us) = if claims.role == Role::Reader {
        window(&claims)?
    } else {
        (None, None)
    };
    let access = Access {
        namespaces,
        from_us,
        to_us,
        // Plans and scan statistics describe whole row groups, including rows
        // outside a reader's window: for admins only.
        diagnostics: claims.role == Role::Admin,
    };
    // Charged once it has a slot: a `503 busy` is not a read.
    let slot = rc.take_slot(&claims)?;
    st.charge_read(&claims, &req.sql)?;
    let role = role_name(&claims);
    let profile = rc.policy.profile_for(role, &claim_map(&claims));
    let (outcome, masked, slot) = rc
        .run_sql(&st.vault, &claims, &access, &req.sql, slot)
        .await;
    // The record names the error by its code only: an engine's message can
    // quote a row's value (a failed cast prints it), and `_audit` is never
    // erased. The caller gets the message, masked as its rows are.
    let outcome = outcome.map_err(query_error);
    let (rows, scan, error) = match &outcome {
        Ok(r) => (Some(r.rows), Some(r.scan), None),
        Err(e) => (None, None, Some(e.code)),
    };
    // A token revoked or expired while its query ran gets no answer (the
    // query is still recorded below).
    let still_valid = auth::check_live(&st, &claims);
    // Every query is recorded, answered or not, before anything is returned.
    audit::append(
        &st.vault,
        vec![audit::event(
            audit::QUERIES,
            "query",
            &claims.sub,
            json!({"sql": req.sql, "role": role, "jti": claims.jti, "ns": access.namespaces,
                       "profile": profile.name, "rows": rows, "scan": scan, "error": error,
                       "masked": masked}),
        )],
    )
    .await?;
    still_valid?;
    let result = outcome?;
    let wants_arrow = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(ARROW_STREAM));
    let mut extra = serde_json::Map::new();
    extra.insert("masking_profile".into(), json!(profile.name));
    if access.diagnostics {
        extra.insert("scan".into(), json!(result.scan));
    }
    let max = rc.query.max_result_bytes;
    let (bytes, slot) = rc
        .render_on_engine(slot, move || {
            if wants_arrow {
                tracevault_query::rows::to_arrow_ipc(&result.schema, &result.batches)
                    .map_err(|e| ApiError::unavailable("internal", e))
            } else {
                tracevault_query::rows::to_json(&result.schema, &result.batches, &extra, max)
                    .map_err(|e| ApiError::too_large("result_too_large", e.to_string()))
            }
        })
        .await?;
    let content_type = if wants_arrow {
        ARROW_STREAM
    } else {
        "application/json"
    };
    let stall = std::time::Duration::from_secs(rc.query.answer_stall_timeout_s.max(1));
    let len = bytes.len();
    let mut response = (
        [(axum::http::header::CONTENT_TYPE, content_type)],
        answer::held(bytes, slot, stall, abort.map(|a| a.0)),
    )
        .into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_LENGTH, len.into());
    Ok(response)
}

/// The answer to a query that failed: status, stable code and message.
fn query_error(e: tracevault_query::sql::QueryError) -> ApiError {
    use tracevault_query::sql::QueryError;
    match e {
        QueryError::Refused(m) => ApiError::bad_request("invalid_query", m),
        QueryError::ScanTooLarge(..) => ApiError::too_large("scan_too_large", e.to_string()),
        QueryError::ResultTooLarge(_) | QueryError::ResultTooManyBytes(_) => {
            ApiError::too_large("result_too_large", e.to_string())
        }
        QueryError::Timeout(_) => ApiError::unavailable("query_timeout", e.to_string()),
        QueryError::Failed(_) => ApiError::bad_request("query_failed", e.to_string()),
        QueryError::Vault(v) => v.into(),
    }
}
