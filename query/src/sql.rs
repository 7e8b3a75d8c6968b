//! SQL over the vault for one caller (DataFusion).
//!
//! Enforcement lives below SQL: the only table the caller's session knows,
//! `traces`, is built for that caller from the rows it may see (its
//! namespaces, its `received_at` window) with `content`, `attributes` and
//! every other string column already masked per its profile. Whatever SQL
//! it writes (`OR 1=1`, unions, subqueries, CTEs) can only recombine those
//! rows. The session refuses DDL, DML and statements, has no
//! `information_schema`, no URL tables and no file-reading table functions,
//! so no data can be named directly.
//!
//! This first version materialises the caller's visible rows in memory (a
//! `MemTable`) before planning, bounded by `max_scan_rows`; pruning on
//! `ns`/`received_at`/`session_id` with a streaming scan is the next step.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, RecordBatch, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use tracevault_vault::record::Entry;
use tracevault_vault::{Vault, VaultError};

use crate::masking::Masker;

/// What the caller may see.
#[derive(Debug, Clone)]
pub struct Access {
    /// Namespaces (already resolved: no `*`).
    pub namespaces: Vec<String>,
    /// Window start, Unix microseconds of `received_at` (inclusive).
    pub from_us: Option<i64>,
    /// Window end (inclusive).
    pub to_us: Option<i64>,
}

/// Bounds of one query.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Most rows the caller's table may hold (refused beyond, never cut).
    pub max_scan_rows: usize,
    /// Most rows in a result (refused beyond, never cut).
    pub max_result_rows: usize,
    /// Memory the query's operators may use.
    pub memory_bytes: usize,
    /// Wall-clock limit.
    pub timeout: Duration,
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
        s("leaf_hash", false),
    ]))
}

/// Masks one optional string column value (`None` when dropped).
fn masked(m: &Masker<'_>, column: &str, v: Option<&str>) -> Option<String> {
    let v = v?;
    m.mask_str(column, v).map(|c| c.into_owned())
}

/// JSON text columns are masked as JSON (paths apply), then re-serialised.
fn masked_json(m: &Masker<'_>, column: &str, v: Option<&str>, is_json: bool) -> Option<String> {
    let v = v?;
    if !is_json {
        return masked(m, column, Some(v));
    }
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(mut j) => {
            m.mask_json(column, &mut j);
            (!j.is_null()).then(|| j.to_string())
        }
        // Stored JSON text that does not parse: mask it as text (fail closed).
        Err(_) => masked(m, column, Some(v)),
    }
}

/// Builds the caller's rows of `traces`, masked.
fn to_batch(entries: &[Entry], m: &Masker<'_>) -> Result<RecordBatch, QueryError> {
    let n = entries.len();
    let mut strs: Vec<StringBuilder> = (0..13)
        .map(|_| StringBuilder::with_capacity(n, n * 16))
        .collect();
    let mut idx = UInt64Builder::with_capacity(n);
    let mut seq = UInt64Builder::with_capacity(n);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut rec = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    for e in entries {
        let json_content = e.content_type == Some(tracevault_vault::record::ContentType::Json);
        let cols: [Option<String>; 13] = [
            Some(e.ns.clone()),
            masked(m, "session_id", Some(&e.session_id)),
            Some(e.kind.as_str().to_string()),
            masked(m, "ingested_by", Some(&e.ingested_by)),
            masked(m, "event_id", e.event_id.as_deref()),
            masked(m, "trace_id", e.trace_id.as_deref()),
            masked(m, "span_id", e.span_id.as_deref()),
            masked(m, "parent_span_id", e.parent_span_id.as_deref()),
            masked(m, "name", e.name.as_deref()),
            masked(m, "actor", e.actor.as_deref()),
            masked(m, "model", e.model.as_deref()),
            masked_json(m, "content", e.content.as_deref(), json_content),
            masked_json(m, "attributes", e.attributes.as_deref(), true),
        ];
        for (b, v) in strs.iter_mut().zip(cols) {
            b.append_option(v);
        }
        idx.append_value(e.idx);
        seq.append_value(e.session_seq);
        ts.append_option(e.ts);
        rec.append_value(e.received_at);
    }
    let mut s = strs
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut next = || {
        s.next()
            .ok_or_else(|| QueryError::Failed("column count".into()))
    };
    // Non-null columns must stay non-null: a dropped session_id or
    // ingested_by becomes an empty string rather than breaking the schema.
    let mut leaf = StringBuilder::with_capacity(n, n * 64);
    for e in entries {
        leaf.append_value(hex::encode(e.leaf_hash));
    }
    let (ns, session, kind, ingested) = (next()?, next()?, next()?, next()?);
    let fix = |a: ArrayRef| -> ArrayRef {
        if a.null_count() == 0 {
            return a;
        }
        let s = a.as_any().downcast_ref::<arrow::array::StringArray>();
        match s {
            Some(s) => Arc::new(
                s.iter()
                    .map(|v| Some(v.unwrap_or("").to_string()))
                    .collect::<arrow::array::StringArray>(),
            ),
            None => a,
        }
    };
    let columns: Vec<ArrayRef> = vec![
        ns,
        Arc::new(idx.finish()),
        fix(session),
        Arc::new(seq.finish()),
        kind,
        Arc::new(ts.finish()),
        Arc::new(rec.finish()),
        fix(ingested),
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        Arc::new(leaf.finish()),
    ];
    RecordBatch::try_new(traces_schema(), columns).map_err(|e| QueryError::Failed(e.to_string()))
}

/// Runs `sql` for a caller: builds its masked, windowed `traces` (and the
/// `sessions` view over it), then executes in a locked-down session.
pub async fn run(
    vault: &Vault,
    access: &Access,
    masker: &Masker<'_>,
    sql: &str,
    limits: QueryLimits,
) -> Result<QueryResult, QueryError> {
    let work = async {
        let mut entries = Vec::new();
        for ns in &access.namespaces {
            let (from, to) = (access.from_us, access.to_us);
            let room = limits.max_scan_rows.saturating_sub(entries.len());
            let rows = vault
                .scan_entries(
                    ns,
                    move |e| {
                        from.is_none_or(|f| e.received_at >= f)
                            && to.is_none_or(|t| e.received_at <= t)
                    },
                    room,
                )
                .await;
            let rows = match rows {
                Ok(r) => r,
                // A namespace that does not exist (yet) has no rows.
                Err(VaultError::BadNamespace(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            entries.extend(rows);
            if entries.len() > limits.max_scan_rows {
                return Err(QueryError::ScanTooLarge(
                    entries.len(),
                    limits.max_scan_rows,
                ));
            }
        }
        let batch = to_batch(&entries, masker)?;
        drop(entries);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()
            .map_err(|e| QueryError::Failed(e.to_string()))?;
        let config = SessionConfig::new().with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let table = MemTable::try_new(traces_schema(), vec![vec![batch]])
            .map_err(|e| QueryError::Failed(e.to_string()))?;
        ctx.register_table("traces", Arc::new(table))
            .map_err(|e| QueryError::Failed(e.to_string()))?;
        ctx.sql(
            "CREATE VIEW sessions AS SELECT ns, session_id, min(received_at) AS first_at, \
             max(received_at) AS last_at, count(*) AS events, array_agg(DISTINCT kind) AS kinds \
             FROM traces GROUP BY ns, session_id",
        )
        .await
        .map_err(|e| QueryError::Failed(e.to_string()))?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx
            .sql_with_options(sql, options)
            .await
            .map_err(|e| QueryError::Refused(e.to_string()))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df
            .execute_stream()
            .await
            .map_err(|e| QueryError::Failed(e.to_string()))?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(b) = stream.next().await {
            let b = b.map_err(|e| QueryError::Failed(e.to_string()))?;
            rows += b.num_rows();
            if rows > limits.max_result_rows {
                return Err(QueryError::ResultTooLarge(limits.max_result_rows));
            }
            batches.push(b);
        }
        Ok(QueryResult {
            schema,
            batches,
            rows,
        })
    };
    tokio::time::timeout(limits.timeout, work)
        .await
        .map_err(|_| QueryError::Timeout(limits.timeout))?
}
