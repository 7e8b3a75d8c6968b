//! Table `traces` for one caller: a streaming, pruned scan of the segment
//! Parquet files in the store plus the acknowledged but unpublished tail.
//!
//! The plan under every query is
//! `MaskExec <- Union(DataSourceExec(parquet), memory tail)`:
//! - the Parquet scan reads only the columns the query needs and skips row
//!   groups and pages with the caller's namespace and `received_at` window
//!   (statistics) and with the query's own filters on columns the caller's
//!   masking profile leaves untouched (statistics and the `session_id`,
//!   `event_id`, `trace_id` bloom filters), so a one-session lookup does not
//!   read the vault;
//! - [`MaskExec`] enforces the access rule row by row (whatever the pruning
//!   did), turns stored columns into the `traces` types, and masks every
//!   string column per the caller's profile, batch by batch, before any
//!   operator of the caller's SQL sees a value.
//!
//! Filters on masked columns are never used below the mask: they would let a
//! reader probe raw values. DataFusion re-applies every filter above the
//! scan (pushdown is declared inexact), on masked values.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{
    Array, ArrayRef, BooleanArray, FixedSizeBinaryArray, RecordBatch, RecordBatchOptions,
    StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, col, lit};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use object_store::path::Path;
use tracevault_schemas::rows::{TRACES_COLUMNS, col as c, segment_schema};
use tracevault_vault::record::Entry;
use tracevault_vault::{ReadPlan, Vault, VaultError};

use crate::checked_parquet::CheckedReaderFactory;
use crate::masking::Masker;
use crate::sql::{Access, traces_schema};

/// URL under which the vault's store is registered in a query's runtime.
pub(crate) const STORE_URL: &str = "tracevault://store/";

/// Segment column holding the content type (needed to mask JSON content as JSON).
const CONTENT_TYPE_COL: usize = TRACES_COLUMNS;
/// Stored column `salt`: null once the entry is erased.
const SALT_COL: usize = TRACES_COLUMNS + 1;
/// What `content` and `attributes` read as for an erased entry (docs/erasure.md).
pub const ERASED_MARKER: &str = "[ERASED]";
/// [`MaskExec`]'s metric of the rows it let through (after the access
/// rule): how a distributed query's scan size comes back to the server.
pub(crate) const ROWS_METRIC: &str = "tracevault_rows";
/// Prefix of [`MaskExec`]'s metrics of values masked, per label.
pub(crate) const MASKED_METRIC: &str = "tracevault_masked:";
/// Start of the error of a scan past `max_scan_rows` (also recognised in a
/// distributed query's error text).
pub(crate) const SCAN_BOUND: &str = "the query would scan more than";
/// Segment/traces column positions used here.
const NS: usize = 0;
const IDX: usize = 1;
const SESSION_ID: usize = 2;
const SESSION_SEQ: usize = 3;
const KIND: usize = 4;
const RECEIVED_AT: usize = 6;
const INGESTED_BY: usize = 7;
const CONTENT: usize = 15;
const ATTRIBUTES: usize = 16;
const LEAF_HASH: usize = 17;

/// What all partitions of one query's scan share.
#[derive(Debug)]
pub(crate) struct ScanShared {
    pub(crate) access: Access,
    pub(crate) masker: Arc<Masker>,
    /// Rows the caller's scan has produced so far (all partitions).
    pub(crate) scanned: AtomicUsize,
    /// Segment files planned.
    pub(crate) files: AtomicUsize,
    pub(crate) max_scan_rows: usize,
    /// The first vault error met while planning (typed, for the API).
    pub(crate) fault: std::sync::Mutex<Option<VaultError>>,
}

impl ScanShared {
    /// The same caller's scan, counting from zero: what one partition of a
    /// distributed query shares (its counts travel back as metrics).
    fn fresh(&self) -> ScanShared {
        ScanShared {
            access: self.access.clone(),
            masker: Arc::new(self.masker.fresh()),
            scanned: AtomicUsize::new(0),
            files: AtomicUsize::new(0),
            max_scan_rows: self.max_scan_rows,
            fault: std::sync::Mutex::new(None),
        }
    }

    fn fail(&self, e: VaultError) -> DataFusionError {
        let msg = e.to_string();
        if let Ok(mut f) = self.fault.lock() {
            f.get_or_insert(e);
        }
        DataFusionError::Execution(msg)
    }
}

/// Where a query's scan gets what it reads: for each namespace, the segment
/// objects and the acknowledged but unpublished tail ([`ReadPlan`]),
/// and the object store holding the segments. The server's [`Vault`] is one;
/// a query worker process gets [`FixedReadPlans`] taken by the server.
#[async_trait]
pub trait ReadPlanSource: Send + Sync {
    /// The consistent read of `ns` (`BadNamespace` when it does not exist).
    async fn read_plan(&self, ns: &str) -> Result<ReadPlan, VaultError>;
    /// The store the segments are read from.
    fn object_store(&self) -> Arc<dyn object_store::ObjectStore>;
    /// File statistics of the segment at `path` of `size` bytes, if known
    /// without reading it ([`crate::footers`]).
    fn file_statistics(&self, path: &Path, size: u64) -> Option<Arc<Statistics>> {
        crate::footers::cached_statistics(path, size)
    }
}

#[async_trait]
impl ReadPlanSource for Vault {
    async fn read_plan(&self, ns: &str) -> Result<ReadPlan, VaultError> {
        Vault::read_plan(self, ns).await
    }
    fn object_store(&self) -> Arc<dyn object_store::ObjectStore> {
        self.store().object_store()
    }
}

/// Read plans taken beforehand (by the server, for a worker process).
pub struct FixedReadPlans {
    /// The store holding the segments.
    pub store: tracevault_vault::Store,
    /// Per namespace; a namespace not listed has no rows.
    pub plans: std::collections::HashMap<String, ReadPlan>,
    /// File statistics of the plans' segments, by object path.
    pub statistics: std::collections::HashMap<String, Arc<Statistics>>,
}

#[async_trait]
impl ReadPlanSource for FixedReadPlans {
    async fn read_plan(&self, ns: &str) -> Result<ReadPlan, VaultError> {
        self.plans
            .get(ns)
            .cloned()
            .ok_or_else(|| VaultError::BadNamespace(format!("no read plan of {ns}")))
    }
    fn object_store(&self) -> Arc<dyn object_store::ObjectStore> {
        self.store.object_store()
    }
    fn file_statistics(&self, path: &Path, size: u64) -> Option<Arc<Statistics>> {
        self.statistics
            .get(path.as_ref())
            .cloned()
            .or_else(|| crate::footers::cached_statistics(path, size))
    }
}

/// The caller's `traces` table.
pub(crate) struct TracesTable {
    pub(crate) source: Arc<dyn ReadPlanSource>,
    pub(crate) shared: Arc<ScanShared>,
}

impl fmt::Debug for TracesTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracesTable")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// Columns whose stored values may be used for pruning when the caller's
/// profile leaves them untouched (same type in `traces` and in segments).
const PRUNABLE: [&str; 8] = [
    c::NS,
    c::KIND,
    c::TS,
    c::RECEIVED_AT,
    c::SESSION_ID,
    c::EVENT_ID,
    c::TRACE_ID,
    c::MODEL,
];

impl TracesTable {
    /// Whether filter `e` only names columns whose stored values are what
    /// the caller sees, so it may prune below the mask.
    fn prunable(&self, e: &Expr) -> bool {
        let mut ok = true;
        let _ = e.apply(|n| {
            if let Expr::Column(column) = n {
                let name = column.name.as_str();
                let typed_same = PRUNABLE.contains(&name);
                let unmasked = matches!(name, c::TS | c::RECEIVED_AT | c::KIND | c::NS)
                    || self.shared.masker.leaves_column(name);
                if !(typed_same && unmasked) {
                    ok = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        ok
    }

    /// A filter on `idx` or `session_seq` (`UInt64` in `traces`, `Int64` in
    /// segments: every stored value is below 2^63) rewritten over the
    /// stored type, for the Parquet scan (statistics, bloom filters and its row
    /// filter: it drops rows, so it must be exactly equivalent on stored
    /// values, which it is; the original filter runs again above the scan).
    /// Only plain shapes are taken
    /// (a column compared with literals, `BETWEEN`, `IN`, and `AND`/`OR` of
    /// those), where the two types order the values alike; anything else
    /// is `None` and prunes nothing. These columns are never masked.
    fn int_filter(e: &Expr) -> Option<Expr> {
        use datafusion::logical_expr::{Between, BinaryExpr, Operator};
        let int_col = |e: &Expr| match e {
            Expr::Column(c) if matches!(c.name.as_str(), c::IDX | c::SESSION_SEQ) => {
                Some(col(c.name.as_str()))
            }
            _ => None,
        };
        let int_lit = |e: &Expr| match e {
            Expr::Literal(ScalarValue::UInt64(Some(v)), _) => i64::try_from(*v).ok().map(lit),
            Expr::Literal(ScalarValue::Int64(Some(v)), _) => Some(lit(*v)),
            _ => None,
        };
        let cmp = |op: Operator| {
            matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
            )
        };
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(op, Operator::And | Operator::Or) =>
            {
                Some(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(Self::int_filter(left)?),
                    *op,
                    Box::new(Self::int_filter(right)?),
                )))
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if cmp(*op) => {
                let (l, r) = match (int_col(left), int_lit(right)) {
                    (Some(l), Some(r)) => (l, r),
                    _ => (int_lit(left)?, int_col(right)?),
                };
                Some(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(l),
                    *op,
                    Box::new(r),
                )))
            }
            Expr::Between(Between {
                expr,
                negated,
                low,
                high,
            }) => Some(Expr::Between(Between::new(
                Box::new(int_col(expr)?),
                *negated,
                Box::new(int_lit(low)?),
                Box::new(int_lit(high)?),
            ))),
            Expr::InList(l) => Some(int_col(&l.expr)?.in_list(
                l.list.iter().map(int_lit).collect::<Option<Vec<_>>>()?,
                l.negated,
            )),
            _ => None,
        }
    }

    /// The access rule as an expression over segment columns (for pruning;
    /// [`MaskExec`] enforces it exactly).
    fn access_expr(&self) -> Option<Expr> {
        let a = &self.shared.access;
        let ts = |us: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(us),
                Some("UTC".into()),
            ))
        };
        let mut e = col(c::NS).in_list(
            a.namespaces.iter().map(|n| lit(n.as_str())).collect(),
            false,
        );
        if let Some(f) = a.from_us {
            e = e.and(col(c::RECEIVED_AT).gt_eq(ts(f)));
        }
        if let Some(t) = a.to_us {
            e = e.and(col(c::RECEIVED_AT).lt_eq(ts(t)));
        }
        (!a.namespaces.is_empty()).then_some(e)
    }
}

#[async_trait]
impl TableProvider for TracesTable {
    fn schema(&self) -> SchemaRef {
        traces_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.prunable(f) || Self::int_filter(f).is_some() {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let out_cols: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..TRACES_COLUMNS).collect());
        // Stored columns to read: the projected ones plus what enforcement
        // (ns, received_at) and masking (content_type) need.
        let mut read = out_cols.clone();
        read.extend([NS, RECEIVED_AT]);
        if out_cols.contains(&CONTENT) {
            read.push(CONTENT_TYPE_COL);
        }
        // An erased entry (no salt) shows a marker in its payload columns.
        if out_cols.contains(&CONTENT) || out_cols.contains(&ATTRIBUTES) {
            read.push(SALT_COL);
        }
        // The leaf hash of a row whose verbatim columns the profile masks is
        // withheld: read those columns to know, whether projected or not.
        let leaf_guard = if out_cols.contains(&LEAF_HASH) {
            leaf_guard(&self.shared.masker)
        } else {
            Vec::new()
        };
        read.extend(leaf_guard.iter().map(|g| g.0));
        read.sort_unstable();
        read.dedup();

        let access = &self.shared.access;
        let mut files: Vec<PartitionedFile> = Vec::new();
        let mut tail: Vec<Entry> = Vec::new();
        for ns in &access.namespaces {
            let plan = match self.source.read_plan(ns).await {
                Ok(s) => s,
                // A namespace that does not exist (yet) has no rows.
                Err(VaultError::BadNamespace(_)) => continue,
                Err(e) => return Err(self.shared.fail(e)),
            };
            // With statistics, DataFusion skips a segment that cannot match
            // before opening it.
            files.extend(plan.segments.into_iter().map(|s| {
                let file = PartitionedFile::new(s.path.to_string(), s.size);
                match self.source.file_statistics(&s.path, s.size) {
                    Some(stats) => file.with_statistics(stats),
                    None => file,
                }
            }));
            tail.extend(
                plan.tail
                    .into_iter()
                    .filter(|e| access.admits(&e.ns, e.received_at)),
            );
        }

        self.shared.files.fetch_add(files.len(), Ordering::Relaxed);
        let seg_schema = segment_schema();
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            let df_schema = DFSchema::try_from(seg_schema.as_ref().clone())?;
            let mut predicate = self.access_expr();
            let usable = filters.iter().filter_map(|f| {
                if self.prunable(f) {
                    Some(unnormalize_col(f.clone()))
                } else {
                    Self::int_filter(f)
                }
            });
            for f in usable {
                predicate = Some(match predicate {
                    Some(p) => p.and(f),
                    None => f,
                });
            }
            let mut source = ParquetSource::new(seg_schema.clone())
                .with_parquet_file_reader_factory(Arc::new(CheckedReaderFactory(Arc::new(
                    CachedParquetFileReaderFactory::new(
                        self.source.object_store(),
                        crate::footers::footer_cache(),
                    ),
                ))))
                .with_metadata_size_hint(crate::footers::FOOTER_READ_BYTES)
                .with_bloom_filter_on_read(true)
                // Row-group statistics and bloom filters are checked against
                // the rows by `verify` (vault::pruning); page indexes are
                // not, so they are never trusted to skip anything.
                .with_enable_page_index(false)
                .with_pushdown_filters(true);
            if let Some(p) = predicate {
                // A filter that cannot be planned over stored columns only
                // loses pruning, never rows: everything is filtered again above.
                if let Ok(phys) = state.create_physical_expr(p, &df_schema) {
                    source = source.with_predicate(phys);
                }
            }
            let parts = state.config().target_partitions().max(1);
            let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); parts.min(files.len())];
            let n_groups = groups.len();
            for (i, f) in files.into_iter().enumerate() {
                groups[i % n_groups].push(f);
            }
            let url = ObjectStoreUrl::parse(STORE_URL)?;
            let config = FileScanConfigBuilder::new(url, Arc::new(source))
                .with_projection_indices(Some(read.clone()))?
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }
        if !tail.is_empty() {
            let batch = tracevault_vault::segment::entries_to_batch(&tail)
                .map_err(|e| self.shared.fail(VaultError::Read(e.to_string())))?;
            inputs.push(MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                seg_schema.clone(),
                Some(read.clone()),
            )?);
        }
        let input: Arc<dyn ExecutionPlan> = if inputs.is_empty() {
            Arc::new(EmptyExec::new(Arc::new(seg_schema.project(&read)?)))
        } else {
            UnionExec::try_new(inputs)?
        };
        Ok(Arc::new(MaskExec::new(
            input,
            out_cols,
            &read,
            self.shared.clone(),
        )?))
    }
}

impl Access {
    /// Whether a row of `ns` received at `received_us` is visible.
    /// The reader-window rule, the one place it is written: whether a row
    /// of `ns` received at `received_us` (Unix microseconds) is visible.
    /// SQL (below the mask), entry reads and export selections all ask it.
    pub fn admits(&self, ns: &str, received_us: i64) -> bool {
        self.namespaces.iter().any(|n| n == ns)
            && self.from_us.is_none_or(|f| received_us >= f)
            && self.to_us.is_none_or(|t| received_us <= t)
    }
}

/// The verbatim columns of the committed record (`query::masking::VERBATIM`)
/// that `m` may mask, with their `traces` positions: a row where one of them
/// is masked gets no `leaf_hash`, because with the rest of the record shown
/// the hash would let a reader confirm guesses of the masked value.
fn leaf_guard(m: &Masker) -> Vec<(usize, &'static str)> {
    let schema = traces_schema();
    crate::masking::VERBATIM
        .into_iter()
        .filter(|name| !m.leaves_column(name))
        .filter_map(|name| Some((schema.index_of(name).ok()?, name)))
        .collect()
}

/// Enforces the access rule and masks, batch by batch.
#[derive(Debug)]
pub(crate) struct MaskExec {
    input: Arc<dyn ExecutionPlan>,
    /// `traces` columns produced, in output order.
    out_cols: Vec<usize>,
    /// Stored columns read, in input order.
    read: Vec<usize>,
    /// Decoded on a node without the masking policy and key (a distributed
    /// query's scheduler): it plans, it never runs.
    stub: bool,
    /// The spec it was decoded from (re-encoded as it came).
    carried: Option<Arc<MaskSpec>>,
    /// Position in the input batch of each stored column read (by segment index).
    pos: Vec<Option<usize>>,
    /// Verbatim columns whose masking withholds a row's `leaf_hash`.
    leaf_guard: Vec<(usize, &'static str)>,
    schema: SchemaRef,
    shared: Arc<ScanShared>,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl MaskExec {
    pub(crate) fn new(
        input: Arc<dyn ExecutionPlan>,
        out_cols: Vec<usize>,
        read: &[usize],
        shared: Arc<ScanShared>,
    ) -> DfResult<MaskExec> {
        let schema = Arc::new(traces_schema().project(&out_cols)?);
        let mut pos = vec![None; segment_schema().fields().len()];
        for (i, &s) in read.iter().enumerate() {
            pos[s] = Some(i);
        }
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        let leaf_guard = if out_cols.contains(&LEAF_HASH) {
            leaf_guard(&shared.masker)
        } else {
            Vec::new()
        };
        Ok(MaskExec {
            input,
            out_cols,
            read: read.to_vec(),
            stub: false,
            carried: None,
            pos,
            leaf_guard,
            schema,
            shared,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// What another node needs to rebuild this operator: the caller's
    /// access, its profile's name, and the id of the masking policy and key
    /// it was planned with (`masking_id` on the server that planned it; a
    /// decoded operator keeps its own); never the key. `None` without an id.
    pub(crate) fn spec(&self, masking_id: Option<&str>) -> Option<MaskSpec> {
        if let Some(c) = &self.carried {
            return Some(c.as_ref().clone());
        }
        Some(MaskSpec {
            out_cols: self.out_cols.clone(),
            read: self.read.clone(),
            access: self.shared.access.clone(),
            profile: self.shared.masker.profile().name.clone(),
            masking_id: masking_id?.to_string(),
            max_scan_rows: self.shared.max_scan_rows,
            leaf_guard: self.leaf_guard.iter().map(|g| g.1.to_string()).collect(),
        })
    }

    /// Rebuilds the operator from `spec` over `input`: with this node's
    /// masking (an executor), which must be the one the plan was made with
    /// (else the plan is refused), or, without (a scheduler), as a stub that
    /// plans but refuses to run.
    pub(crate) fn from_spec(
        input: Arc<dyn ExecutionPlan>,
        spec: MaskSpec,
        masking: Option<&crate::distributed::NodeMasking>,
    ) -> DfResult<MaskExec> {
        let (masker, stub) = match masking {
            Some(m) => {
                if m.id != spec.masking_id {
                    return Err(DataFusionError::Plan(
                        "this executor's masking policy or key differs from the server's; refusing the plan".into(),
                    ));
                }
                let profile = m.policy.profile_named(&spec.profile).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "no masking profile {} on this executor",
                        spec.profile
                    ))
                })?;
                (Arc::new(Masker::new(profile, &m.key)), false)
            }
            None => {
                // The strict profile and no key: a stub never runs (execute
                // refuses), it only takes part in planning.
                let policy = crate::masking::Policy::default_policy();
                let strict = policy.profile_for("", &Default::default()).clone();
                (Arc::new(Masker::new(&strict, &[0u8; 32])), true)
            }
        };
        let carried = Arc::new(spec.clone());
        let shared = Arc::new(ScanShared {
            access: spec.access,
            masker,
            scanned: AtomicUsize::new(0),
            files: AtomicUsize::new(0),
            max_scan_rows: spec.max_scan_rows,
            fault: std::sync::Mutex::new(None),
        });
        let mut exec = MaskExec::new(input, spec.out_cols, &spec.read, shared)?;
        exec.stub = stub;
        exec.carried = Some(carried);
        if stub {
            let schema = traces_schema();
            exec.leaf_guard = crate::masking::VERBATIM
                .into_iter()
                .filter(|n| spec.leaf_guard.iter().any(|g| g == n))
                .filter_map(|n| Some((schema.index_of(n).ok()?, n)))
                .collect();
        }
        Ok(exec)
    }

    fn column(&self, b: &RecordBatch, seg_col: usize) -> DfResult<ArrayRef> {
        self.pos
            .get(seg_col)
            .copied()
            .flatten()
            .map(|i| b.column(i).clone())
            .ok_or_else(|| DataFusionError::Internal(format!("column {seg_col} not read")))
    }
}

impl DisplayAs for MaskExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "MaskExec: profile={}, namespaces={:?}",
            self.shared.masker.profile().name,
            self.shared.access.namespaces
        )
    }
}

impl ExecutionPlan for MaskExec {
    fn name(&self) -> &str {
        "MaskExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal("MaskExec has one child".into()));
        }
        let input = children.swap_remove(0);
        let props = PlanProperties::new(
            EquivalenceProperties::new(self.schema.clone()),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(MaskExec {
            input,
            out_cols: self.out_cols.clone(),
            read: self.read.clone(),
            stub: self.stub,
            carried: self.carried.clone(),
            pos: self.pos.clone(),
            leaf_guard: self.leaf_guard.clone(),
            schema: self.schema.clone(),
            shared: self.shared.clone(),
            props: Arc::new(props),
            metrics: self.metrics.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if self.stub {
            return Err(DataFusionError::Execution(
                "MaskExec was decoded without the masking policy and key: it runs on executors only".into(),
            ));
        }
        let input = self.input.execute(partition, context)?;
        // Decoded from a distributed plan (an executor's task): counts of its
        // own, reported through metrics, which the server adds up.
        let per_task = self.carried.is_some();
        let shared = if per_task {
            Arc::new(self.shared.fresh())
        } else {
            self.shared.clone()
        };
        let this = MaskExec {
            input: self.input.clone(),
            out_cols: self.out_cols.clone(),
            read: self.read.clone(),
            stub: false,
            carried: None,
            pos: self.pos.clone(),
            leaf_guard: self.leaf_guard.clone(),
            schema: self.schema.clone(),
            shared,
            props: self.props.clone(),
            metrics: self.metrics.clone(),
        };
        let rows = MetricBuilder::new(&self.metrics).counter(ROWS_METRIC, partition);
        let mut masked: BTreeMap<String, Count> = BTreeMap::new();
        let stream = input.map(move |b| {
            let out = this.mask_batch(&b?)?;
            rows.add(out.num_rows());
            if per_task {
                for (label, n) in this.shared.masker.counts() {
                    let c = masked.entry(label).or_insert_with_key(|label| {
                        MetricBuilder::new(&this.metrics)
                            .counter(format!("{MASKED_METRIC}{label}"), partition)
                    });
                    c.add((n as usize).saturating_sub(c.value()));
                }
            }
            Ok(out)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

impl MaskExec {
    /// For each row of `b`: whether the profile masks one of its verbatim
    /// values, so that its `leaf_hash` must be withheld (null).
    fn withheld_leaves(&self, b: &RecordBatch) -> DfResult<Vec<bool>> {
        let mut out = vec![false; b.num_rows()];
        let m = &self.shared.masker;
        for &(col, name) in &self.leaf_guard {
            let a = self.column(b, col)?;
            let a = a
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| DataFusionError::Internal(format!("{name}: not a string column")))?;
            for (i, w) in out.iter_mut().enumerate() {
                if !*w
                    && !a.is_null(i)
                    && !matches!(
                        m.mask_str(name, a.value(i)),
                        Some(std::borrow::Cow::Borrowed(_))
                    )
                {
                    *w = true;
                }
            }
        }
        Ok(out)
    }

    /// Keeps the caller's rows of `b` and returns them as masked `traces` rows.
    fn mask_batch(&self, b: &RecordBatch) -> DfResult<RecordBatch> {
        let internal = |m: &str| DataFusionError::Internal(m.to_string());
        let ns = self.column(b, NS)?;
        let ns = ns
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| internal("ns type"))?;
        let rec = self.column(b, RECEIVED_AT)?;
        let rec = rec
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| internal("received_at type"))?;
        let keep: BooleanArray = (0..b.num_rows())
            .map(|i| {
                Some(
                    !ns.is_null(i)
                        && !rec.is_null(i)
                        && self.shared.access.admits(ns.value(i), rec.value(i)),
                )
            })
            .collect();
        let b = filter_record_batch(b, &keep)?;
        let n = b.num_rows();
        let total = self.shared.scanned.fetch_add(n, Ordering::Relaxed) + n;
        if total > self.shared.max_scan_rows {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{SCAN_BOUND} {} rows",
                self.shared.max_scan_rows
            )));
        }
        let m = &self.shared.masker;
        let erased: Vec<bool> = match self.column(&b, SALT_COL) {
            Ok(s) if self.out_cols.contains(&CONTENT) || self.out_cols.contains(&ATTRIBUTES) => {
                (0..n).map(|i| s.is_null(i)).collect()
            }
            _ => Vec::new(),
        };
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.out_cols.len());
        for (i, &oc) in self.out_cols.iter().enumerate() {
            let a = self.column(&b, oc)?;
            let name = self.schema.field(i).name().as_str();
            let out: ArrayRef = match oc {
                // Structural columns are never masked (and may prune).
                NS | KIND => a,
                IDX | SESSION_SEQ => cast(&a, &DataType::UInt64)?,
                LEAF_HASH => {
                    let h = a
                        .as_any()
                        .downcast_ref::<FixedSizeBinaryArray>()
                        .ok_or_else(|| internal("leaf_hash type"))?;
                    let withheld = self.withheld_leaves(&b)?;
                    let mut s = StringBuilder::with_capacity(n, n * 64);
                    for i in 0..n {
                        if withheld.get(i).copied().unwrap_or(true) {
                            s.append_null();
                        } else {
                            s.append_value(hex::encode(h.value(i)));
                        }
                    }
                    Arc::new(s.finish())
                }
                _ if a.data_type() != &DataType::Utf8 || m.leaves_column(name) => a,
                CONTENT => {
                    let ct = self.column(&b, CONTENT_TYPE_COL)?;
                    let ct = ct
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| internal("content_type type"))?;
                    let json: Vec<bool> = (0..n)
                        .map(|i| !ct.is_null(i) && ct.value(i) == "json")
                        .collect();
                    mark_erased(mask_strings(m, name, &a, |i| json[i], false)?, &erased)?
                }
                ATTRIBUTES => mark_erased(mask_strings(m, name, &a, |_| true, false)?, &erased)?,
                SESSION_ID | INGESTED_BY => mask_strings(m, name, &a, |_| false, true)?,
                _ => mask_strings(m, name, &a, |_| false, false)?,
            };
            cols.push(out);
        }
        let opts = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            cols,
            &opts,
        )?)
    }
}

/// [`MaskExec`] as it travels in a distributed plan.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MaskSpec {
    out_cols: Vec<usize>,
    read: Vec<usize>,
    access: crate::sql::Access,
    profile: String,
    masking_id: String,
    max_scan_rows: usize,
    leaf_guard: Vec<String>,
}

/// Replaces the value of every erased row (`erased[i]`) by
/// [`ERASED_MARKER`].
fn mark_erased(a: ArrayRef, erased: &[bool]) -> DfResult<ArrayRef> {
    if !erased.iter().any(|e| *e) {
        return Ok(a);
    }
    let s = a
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("payload: not a string column".into()))?;
    let out: StringArray = (0..s.len())
        .map(|i| match erased.get(i) {
            Some(true) => Some(ERASED_MARKER),
            _ => (!s.is_null(i)).then(|| s.value(i)),
        })
        .collect();
    Ok(Arc::new(out))
}

/// Masks a string column; `is_json(i)` says whether row `i` holds JSON text
/// (masked as JSON, paths apply). A dropped value becomes null, or `""`
/// when the column is not nullable.
fn mask_strings(
    m: &Masker,
    column: &str,
    a: &ArrayRef,
    is_json: impl Fn(usize) -> bool,
    non_null: bool,
) -> DfResult<ArrayRef> {
    let s = a
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal(format!("{column}: not a string column")))?;
    let mut out = StringBuilder::with_capacity(s.len(), s.value_data().len());
    for i in 0..s.len() {
        if s.is_null(i) {
            out.append_null();
            continue;
        }
        let v = s.value(i);
        let masked: Option<std::borrow::Cow<'_, str>> = if is_json(i) {
            match serde_json::from_str::<serde_json::Value>(v) {
                Ok(mut j) => {
                    if m.mask_json(column, &mut j) {
                        (!j.is_null()).then(|| j.to_string().into())
                    } else {
                        Some(v.into())
                    }
                }
                // Stored JSON text that does not parse: mask it as text (fail closed).
                Err(_) => m.mask_str(column, v),
            }
        } else {
            m.mask_str(column, v)
        };
        match masked {
            Some(t) => out.append_value(t),
            None if non_null => out.append_value(""),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}
