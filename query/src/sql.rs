//! SQL over the vault for one caller (DataFusion).
//!
//! Enforcement lives below SQL: the only table the caller's session knows,
//! `traces`, is a scan built for that caller ([`crate::scan`]) that yields
//! only the rows it may see (its namespaces, its `received_at` window) with
//! every string column already masked per its profile. Whatever SQL it
//! writes (`OR 1=1`, unions, subqueries, CTEs) can only recombine those
//! rows. The session refuses DDL, DML and statements, has no
//! `information_schema`, no URL tables and no file-reading table functions,
//! so no data can be named directly. The scan streams: memory is bounded by
//! the query's memory pool, time by its timeout, and the rows a caller may
//! scan by `max_scan_rows`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::analyze::AnalyzeExec;
use datafusion::physical_plan::explain::ExplainExec;
use datafusion::physical_plan::metrics::{MetricValue, MetricsSet};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use tracevault_vault::VaultError;

use crate::masking::Masker;
use crate::scan::{ReadPlanSource, STORE_URL, ScanShared, TracesTable};

/// What the caller may see.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Access {
    /// Namespaces (already resolved: no `*`).
    pub namespaces: Vec<String>,
    /// Window start, Unix microseconds of `received_at` (inclusive).
    pub from_us: Option<i64>,
    /// Window end (inclusive).
    pub to_us: Option<i64>,
    /// May see plans (`EXPLAIN`) and scan statistics. Both describe whole
    /// row groups, rows outside a reader's window included, so only callers
    /// that see everything of their namespaces (admins) get them.
    pub diagnostics: bool,
}

/// Bounds of one query.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct QueryLimits {
    /// Most rows the caller's scan may produce (refused beyond, never cut).
    pub max_scan_rows: usize,
    /// Most rows in a result (refused beyond, never cut).
    pub max_result_rows: usize,
    /// Memory the query's operators may use.
    pub memory_bytes: usize,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Most bytes in a result (Arrow memory of its batches; refused beyond).
    pub max_result_bytes: usize,
    /// Bounds of each function call ([`crate::guard`]).
    pub guard: crate::guard::GuardLimits,
}

/// Why a query failed; each maps to a stable API code.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL is invalid or not allowed (DDL, DML, unknown table...).
    #[error("{0}")]
    Refused(String),
    /// The caller's visible rows exceed `max_scan_rows`.
    #[error("the query would scan more than {1} rows (at least {0}); use a narrower token window")]
    ScanTooLarge(usize, usize),
    /// The result exceeds `max_result_rows`.
    #[error("the result has more than {0} rows; add a LIMIT or narrow the WHERE clause")]
    ResultTooLarge(usize),
    /// The result exceeds `max_result_bytes`.
    #[error("the result is larger than {0} bytes; select fewer columns or rows")]
    ResultTooManyBytes(usize),
    /// The query ran out of time.
    #[error("the query did not finish within {0:?}")]
    Timeout(Duration),
    /// The execution failed (memory limit, ...).
    #[error("query failed: {0}")]
    Failed(String),
    /// The vault could not be read.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// A query's result.
#[derive(Debug)]
pub struct QueryResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
    /// Row count.
    pub rows: usize,
    /// What the scan read to answer.
    pub scan: ScanStats,
}

/// What one query's scan read: for the access log, the API and benchmarks,
/// and to show that pruning works (a one-session lookup reads a few row
/// groups, not the vault).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct ScanStats {
    /// Rows the caller's table produced (after the access rule).
    pub rows: usize,
    /// Segment files planned (after the namespace choice).
    pub files: usize,
    /// Of those files, how many were skipped whole, without being opened,
    /// because their statistics exclude the query's filters.
    #[serde(default)]
    pub files_pruned: usize,
    /// Row groups in the files opened that were considered.
    pub row_groups: usize,
    /// Row groups skipped by statistics or bloom filters.
    pub row_groups_pruned: usize,
    /// Bytes read from the store by the Parquet scans.
    pub bytes_scanned: usize,
}

/// The columns of table `traces` (SPEC section 5), in order.
pub fn traces_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    Arc::new(Schema::new(vec![
        s("ns", false),
        Field::new("idx", DataType::UInt64, false),
        s("session_id", false),
        Field::new("session_seq", DataType::UInt64, false),
        s("kind", false),
        Field::new("ts", ts(), true),
        Field::new("received_at", ts(), false),
        s("ingested_by", false),
        s("event_id", true),
        s("trace_id", true),
        s("span_id", true),
        s("parent_span_id", true),
        s("name", true),
        s("actor", true),
        s("model", true),
        s("content", true),
        s("attributes", true),
        // Null when the caller's profile masks one of the row's verbatim
        // values (docs/masking.md): the hash would confirm guesses of it.
        s("leaf_hash", true),
    ]))
}

/// Where a planned query runs (`[query] engine`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Engine {
    /// Here, with DataFusion.
    #[default]
    Embedded,
    /// On a Ballista cluster ([`crate::distributed`]).
    Ballista {
        /// The scheduler, `df://HOST:PORT`.
        scheduler: String,
        /// [`crate::distributed::masking_id`] of this server's masking.
        masking_id: String,
    },
}

/// Runs `sql` for a caller: builds its masked, windowed `traces` (and the
/// `sessions` view over it), then executes in a locked-down session.
pub async fn run(
    source: Arc<dyn ReadPlanSource>,
    access: &Access,
    masker: &Arc<Masker>,
    sql: &str,
    limits: QueryLimits,
) -> Result<QueryResult, QueryError> {
    run_on(source, access, masker, sql, limits, &Engine::Embedded).await
}

/// [`run`], on `engine`: planned, checked and secured here the same way
/// whatever the engine; only the finished plan runs elsewhere.
pub async fn run_on(
    source: Arc<dyn ReadPlanSource>,
    access: &Access,
    masker: &Arc<Masker>,
    sql: &str,
    limits: QueryLimits,
    engine: &Engine,
) -> Result<QueryResult, QueryError> {
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let shared = Arc::new(ScanShared {
            access: access.clone(),
            masker: masker.clone(),
            scanned: AtomicUsize::new(0),
            files: AtomicUsize::new(0),
            max_scan_rows: limits.max_scan_rows,
            fault: std::sync::Mutex::new(None),
        });
        let work = execute(source.clone(), shared.clone(), sql, limits, engine);
        let outcome = tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| QueryError::Timeout(limits.timeout))?;
        let e = match outcome {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        let scanned = shared.scanned.load(Ordering::Relaxed);
        if scanned > limits.max_scan_rows {
            return Err(QueryError::ScanTooLarge(scanned, limits.max_scan_rows));
        }
        if let Some(v) = shared.fault.lock().ok().and_then(|mut f| f.take()) {
            return Err(QueryError::Vault(v));
        }
        // A segment merged away by compaction between listing and reading:
        // list again (the merged segment replaces it) rather than fail.
        match e {
            QueryError::Vault(VaultError::Read(m)) if m.starts_with(VANISHED) && attempt < 3 => {
                tracing::debug!(attempt, "query retried: {m}");
            }
            e => return Err(e),
        }
    }
}

/// Prefix of the error for a segment that vanished during a query.
pub(crate) const VANISHED: &str = "a segment vanished during the query";

/// How many times its memory a query (or a Ballista task) may spill to disk.
pub(crate) const SPILL_PER_MEMORY: u64 = 4;

/// The runtime of one query or Ballista task: `memory_bytes` of memory pool,
/// and at most [`SPILL_PER_MEMORY`] times that in spill files (DataFusion's
/// default is 100 GB of the OS temporary directory per query: a sort of a
/// self-join would fill the disk until the timeout).
pub(crate) fn bounded_runtime(memory_bytes: usize) -> RuntimeEnvBuilder {
    let mut disk = DiskManagerBuilder::default()
        .with_max_temp_directory_size((memory_bytes as u64).saturating_mul(SPILL_PER_MEMORY));
    if let Some(dir) = SPILL_DIR.get() {
        // DataFusion creates only the last component: a directory removed
        // meanwhile (by hand, or a test's data directory) is made again. One
        // that cannot be made disables spilling (a query that needs it
        // fails) rather than spilling where nothing cleans up.
        disk = match std::fs::create_dir_all(dir) {
            Ok(()) => disk.with_mode(DiskManagerMode::Directories(vec![dir.clone()])),
            Err(e) => {
                tracing::warn!(
                    "spill directory {}: {e}; queries cannot spill",
                    dir.display()
                );
                disk.with_mode(DiskManagerMode::Disabled)
            }
        };
    }
    RuntimeEnvBuilder::new()
        .with_memory_limit(memory_bytes, 1.0)
        .with_disk_manager_builder(disk)
}

/// Where this process's queries spill (see [`spill_into`]).
static SPILL_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes every query of this process spill into `dir` instead of the
/// operating system's temporary directory. Spill files hold rows (masked
/// ones, but also values an erasure later removes from the store): a
/// process killed mid-query leaves them behind, and only a directory the
/// vault owns can be emptied after it (`serve` empties `<data>/spill` at
/// start and each query worker's own directory when the worker exits).
/// Set once per process: the first call wins and later ones return false.
pub fn spill_into(dir: PathBuf) -> bool {
    SPILL_DIR.set(dir).is_ok()
}

/// Plans and runs `sql` over the caller's `traces` in a locked-down session.
async fn execute(
    source: Arc<dyn ReadPlanSource>,
    shared: Arc<ScanShared>,
    sql: &str,
    limits: QueryLimits,
    engine: &Engine,
) -> Result<QueryResult, QueryError> {
    let failed = |e: DataFusionError| QueryError::Failed(e.to_string());
    let runtime = bounded_runtime(limits.memory_bytes)
        .build_arc()
        .map_err(failed)?;
    let url = url::Url::parse(STORE_URL).map_err(|e| QueryError::Failed(e.to_string()))?;
    runtime.register_object_store(&url, source.object_store());
    let config = SessionConfig::new().with_information_schema(false);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    crate::guard::lock_down(&ctx, limits.guard);
    let table = TracesTable {
        source,
        shared: shared.clone(),
    };
    ctx.register_table("traces", Arc::new(table))
        .map_err(failed)?;
    ctx.sql(
        "CREATE VIEW sessions AS SELECT ns, session_id, min(received_at) AS first_at, \
         max(received_at) AS last_at, count(*) AS events, array_agg(DISTINCT kind) AS kinds \
         FROM traces GROUP BY ns, session_id",
    )
    .await
    .map_err(failed)?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(|e| QueryError::Refused(e.to_string()))?;
    if !shared.access.diagnostics
        && matches!(
            df.logical_plan(),
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)
        )
    {
        return Err(QueryError::Refused(
            "EXPLAIN is for admins: plans and their statistics describe rows outside a reader's window"
                .into(),
        ));
    }
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let task = Arc::new(df.task_ctx());
    // Optimized, then checked and bounded (`crate::guard`), then planned as
    // is: nothing runs that the guard did not see.
    crate::guard::check_unoptimized(df.logical_plan())
        .map_err(|e| QueryError::Refused(e.to_string()))?;
    let state = ctx.state();
    let optimized = state
        .optimize(df.logical_plan())
        .map_err(|e| QueryError::Refused(e.to_string()))?;
    let secured = crate::guard::secure(optimized, limits.guard)
        .map_err(|e| QueryError::Refused(e.to_string()))?;
    let plan = state
        .query_planner()
        .create_physical_plan(&secured, &state)
        .await
        .map_err(vanished)?;
    // EXPLAIN reads nothing: it is rendered here whatever the engine.
    let on_cluster = match engine {
        Engine::Ballista {
            scheduler,
            masking_id,
        } if plan.downcast_ref::<ExplainExec>().is_none() => Some((scheduler, masking_id)),
        _ => None,
    };
    // EXPLAIN ANALYZE on a cluster runs the query there and shows the stages
    // as the cluster ran them, with their metrics.
    let analyze = on_cluster.is_some() && plan.downcast_ref::<AnalyzeExec>().is_some();
    let (mut stream, job) = match on_cluster {
        None => (execute_stream(plan.clone(), task).map_err(vanished)?, None),
        Some((scheduler, masking_id)) => {
            let run = match plan.children().first() {
                Some(input) if analyze => (*input).clone(),
                _ => plan.clone(),
            };
            let (job, stream) = crate::distributed::Job::submit(run, scheduler, masking_id)
                .await
                .map_err(|e| cluster_error(e, &limits))?;
            (stream, Some(job))
        }
    };
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut bytes = 0usize;
    while let Some(b) = stream.next().await {
        let b = match (b, &job) {
            (Ok(b), _) => b,
            (Err(e), Some(_)) => return Err(cluster_error(e, &limits)),
            (Err(e), None) => return Err(vanished(e)),
        };
        if analyze {
            continue;
        }
        rows += b.num_rows();
        if rows > limits.max_result_rows {
            return Err(QueryError::ResultTooLarge(limits.max_result_rows));
        }
        bytes = bytes.saturating_add(b.get_array_memory_size());
        if bytes > limits.max_result_bytes {
            return Err(QueryError::ResultTooManyBytes(limits.max_result_bytes));
        }
        batches.push(b);
    }
    drop(stream);
    let mut scan = ScanStats::default();
    collect_stats(&plan, &mut scan);
    scan.rows = shared.scanned.load(Ordering::Relaxed);
    scan.files = shared.files.load(Ordering::Relaxed);
    if let Some(job) = job {
        // What the executors read and masked comes back as the job's
        // metrics: the scan bound holds for the whole query (each task
        // also stops at it), and the access log counts what was masked.
        let finished = job.finish().await.map_err(|e| cluster_error(e, &limits))?;
        let mut masked = BTreeMap::new();
        for m in &finished.metrics {
            add_metrics(m, &mut scan, &mut masked);
        }
        if scan.rows > limits.max_scan_rows {
            return Err(QueryError::ScanTooLarge(scan.rows, limits.max_scan_rows));
        }
        shared.masker.add_counts(&masked);
        if analyze {
            (batches, rows) = stages_batch(&schema, &finished.stages)?;
        }
    }
    Ok(QueryResult {
        schema,
        batches,
        rows,
        scan,
    })
}

/// The stages of a query run by the cluster as `EXPLAIN ANALYZE` rows
/// (`plan_type`, `plan`): one per stage.
fn stages_batch(
    schema: &SchemaRef,
    stages: &[crate::distributed::StagePlan],
) -> Result<(Vec<RecordBatch>, usize), QueryError> {
    let types: Vec<String> = stages
        .iter()
        .map(|s| format!("Stage {} ({} partitions)", s.stage_id, s.partitions))
        .collect();
    let plans: Vec<String> = stages.iter().map(|s| s.operators.join("\n")).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::StringArray::from(types)),
            Arc::new(arrow::array::StringArray::from(plans)),
        ],
    )
    .map_err(|e| QueryError::Failed(e.to_string()))?;
    Ok((vec![batch], stages.len()))
}

/// A distributed query's failure: past the scan bound on an executor
/// (its task stopped at `max_scan_rows`), a segment vanished (retried), or
/// the cluster's error.
fn cluster_error(e: DataFusionError, limits: &QueryLimits) -> QueryError {
    if e.to_string().contains(crate::scan::SCAN_BOUND) {
        return QueryError::ScanTooLarge(limits.max_scan_rows + 1, limits.max_scan_rows);
    }
    match vanished(e) {
        QueryError::Failed(m) => QueryError::Failed(format!("the Ballista cluster: {m}")),
        other => other,
    }
}

/// Adds up what the Parquet scans under `plan` read and skipped.
fn collect_stats(plan: &Arc<dyn ExecutionPlan>, out: &mut ScanStats) {
    if let Some(metrics) = plan.metrics() {
        add_metrics(&metrics, out, &mut BTreeMap::new());
    }
    for child in plan.children() {
        collect_stats(child, out);
    }
}

/// Adds what one operator's `metrics` say was read, skipped and masked:
/// the Parquet scans' bytes and pruning, and, from a distributed query's
/// `MaskExec`s, the rows they let through and the values they masked.
fn add_metrics(metrics: &MetricsSet, out: &mut ScanStats, masked: &mut BTreeMap<String, u64>) {
    for m in metrics.iter() {
        match m.value() {
            MetricValue::Count { name, count } if name.as_ref() == "bytes_scanned" => {
                out.bytes_scanned += count.value();
            }
            MetricValue::Count { name, count } if name.as_ref() == crate::scan::ROWS_METRIC => {
                out.rows += count.value();
            }
            MetricValue::Count { name, count } => {
                if let Some(label) = name.strip_prefix(crate::scan::MASKED_METRIC) {
                    *masked.entry(label.to_string()).or_insert(0) += count.value() as u64;
                }
            }
            MetricValue::PruningMetrics {
                name,
                pruning_metrics,
            } => match name.as_ref() {
                "row_groups_pruned_statistics" => {
                    out.row_groups += pruning_metrics.pruned() + pruning_metrics.matched();
                    out.row_groups_pruned += pruning_metrics.pruned();
                }
                "row_groups_pruned_bloom_filter" => {
                    out.row_groups_pruned += pruning_metrics.pruned();
                }
                "files_ranges_pruned_statistics" => {
                    out.files_pruned += pruning_metrics.pruned();
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// A segment merged away between listing and reading (compaction) is a
/// retryable vault read error, not a query failure.
fn vanished(e: DataFusionError) -> QueryError {
    let not_found = match e.find_root() {
        DataFusionError::ObjectStore(os) => {
            matches!(os.as_ref(), object_store::Error::NotFound { .. })
        }
        // Wrapped by the Parquet reader, which keeps only the message
        // ("Failed to fetch metadata for file ns/…/segments/…: Object
        // Store error: Object at location … not found").
        other => {
            let m = format!("{other:?}");
            m.contains("NotFound {") || (m.contains("segments/") && m.contains("not found"))
        }
    };
    if not_found {
        return QueryError::Vault(VaultError::Read(format!(
            "{VANISHED} (compaction); retry: {e}"
        )));
    }
    QueryError::Failed(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spilling is bounded by the query's memory, not by DataFusion's
    /// default of 100 GB of the temporary directory.
    #[test]
    fn a_query_spills_at_most_a_few_times_its_memory() {
        let rt = bounded_runtime(8 << 20).build().unwrap();
        assert_eq!(
            rt.disk_manager.max_temp_directory_size(),
            (8 << 20) * SPILL_PER_MEMORY
        );
    }

    #[test]
    fn a_segment_merged_away_mid_query_is_retryable() {
        // What the Parquet reader reports when compaction deleted a file.
        let e = DataFusionError::ParquetError(Box::new(parquet::errors::ParquetError::General(
            "Failed to fetch metadata for file ns/prod/segments/00000000000000005556-00000000000000005566.parquet: \
             Object Store error: Object at location /d/store/ns/prod/segments/x.parquet not found: \
             No such file or directory (os error 2)"
                .into(),
        )));
        assert!(
            matches!(vanished(e), QueryError::Vault(VaultError::Read(m)) if m.starts_with(VANISHED))
        );
        let other = DataFusionError::Execution("division by zero".into());
        assert!(matches!(vanished(other), QueryError::Failed(_)));
    }
}
