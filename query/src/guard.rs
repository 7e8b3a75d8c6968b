//! What a caller's SQL may run: an explicit allowlist of functions, each
//! bounded in what it may allocate, and no plan shape that can run away.
//!
//! DataFusion's scalar functions allocate their results outside the query's
//! memory pool, so a single call (`repeat(x, 100000000000)`, `lpad(x,
//! 2147483647)`, `range(0, 10000000000)`) or a chain of small amplifications
//! (`encode(encode(encode(...)))`, concat of a concat) could exhaust the
//! process and take ingest down with it. So, after the plan is optimized and
//! before it runs:
//!
//! - every scalar, aggregate and window function must be on the allowlists
//!   below (anything else, including functions added by a DataFusion upgrade,
//!   is refused by name);
//! - every scalar function call is wrapped in [`Bounded`]: functions whose
//!   output can be far larger than their input (repeat, pads, concat,
//!   replace, series, array builders) have it estimated from their arguments
//!   *before* they run, and every function's output is measured after it
//!   runs; beyond [`GuardLimits::max_call_bytes`] the query fails with a
//!   clear error. A chain of amplifications therefore stops at the first call
//!   over the bound, having allocated at most a small multiple of it;
//! - the only table is the caller's `traces` (no table functions such as
//!   `range()` or `generate_series()` in `FROM`), there are no recursive
//!   CTEs, and `||` is refused in favour of the bounded `concat()`.
//!
//! Aggregates (`string_agg`, `array_agg`, ...), joins and sorts keep their
//! state in the query's memory pool, which DataFusion accounts; CPU is bound
//! by the query timeout and the query engine's lower priority.

use std::any::Any;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::{ScalarFunction, WindowFunctionDefinition};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, LogicalPlan, Operator, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

use crate::scan::TracesTable;

/// Bounds applied to one query's function calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct GuardLimits {
    /// Most bytes one scalar function call may produce (for one batch).
    pub max_call_bytes: usize,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            max_call_bytes: 64 << 20,
        }
    }
}

/// How a function's output size is known before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Estimate {
    /// At most a small constant times its input (or fixed size): measured
    /// after it runs.
    After,
    /// At most the sum of its arguments (concat, array builders).
    Sum,
    /// `repeat(s, n)`: `len(s) * n` per row.
    Repeat,
    /// `lpad/rpad(s, n[, fill])`: up to 4 bytes per character of `n`.
    Pad,
    /// `replace(s, from, to)`, `regexp_replace(s, re, to[, flags])`: every
    /// position of `s` may become `to` (with `$0` references).
    Replace,
    /// `range/generate_series(start, stop[, step])` as lists: 8 bytes per
    /// element.
    Series,
    /// `array_repeat(elem, n)`: `n` copies of `elem`.
    ArrayRepeat,
}

/// The scalar functions a caller may use, with how each is bounded.
const SCALAR: &[(&str, Estimate)] = &[
    // Strings.
    ("ascii", Estimate::After),
    ("bit_length", Estimate::After),
    ("btrim", Estimate::After),
    ("character_length", Estimate::After),
    ("chr", Estimate::After),
    ("concat", Estimate::Sum),
    ("concat_ws", Estimate::Sum),
    ("contains", Estimate::After),
    ("ends_with", Estimate::After),
    ("find_in_set", Estimate::After),
    ("initcap", Estimate::After),
    ("left", Estimate::After),
    // Not `levenshtein`: quadratic in its arguments' lengths, in one call
    // nothing can interrupt (two strings of `max_call_bytes` would take
    // hours; a query timeout cannot stop a call already running).
    ("lower", Estimate::After),
    ("lpad", Estimate::Pad),
    ("ltrim", Estimate::After),
    ("octet_length", Estimate::After),
    ("overlay", Estimate::Sum),
    ("repeat", Estimate::Repeat),
    ("replace", Estimate::Replace),
    ("reverse", Estimate::After),
    ("right", Estimate::After),
    ("rpad", Estimate::Pad),
    ("rtrim", Estimate::After),
    ("split_part", Estimate::After),
    ("starts_with", Estimate::After),
    ("strpos", Estimate::After),
    ("substr", Estimate::After),
    ("substr_index", Estimate::After),
    ("to_hex", Estimate::After),
    ("translate", Estimate::After),
    ("upper", Estimate::After),
    ("uuid", Estimate::After),
    // Encodings (hash functions are not built: DataFusion's
    // `crypto_expressions` feature is off).
    ("encode", Estimate::After),
    ("decode", Estimate::After),
    // Regular expressions (the regex crate bounds compiled size and time).
    ("regexp_like", Estimate::After),
    ("regexp_match", Estimate::After),
    ("regexp_count", Estimate::After),
    ("regexp_instr", Estimate::After),
    ("regexp_replace", Estimate::Replace),
    // Numbers.
    ("abs", Estimate::After),
    ("ceil", Estimate::After),
    ("floor", Estimate::After),
    ("round", Estimate::After),
    ("trunc", Estimate::After),
    ("ln", Estimate::After),
    ("log", Estimate::After),
    ("log10", Estimate::After),
    ("log2", Estimate::After),
    ("exp", Estimate::After),
    ("power", Estimate::After),
    ("sqrt", Estimate::After),
    ("cbrt", Estimate::After),
    ("signum", Estimate::After),
    ("pi", Estimate::After),
    ("random", Estimate::After),
    ("gcd", Estimate::After),
    ("lcm", Estimate::After),
    ("isnan", Estimate::After),
    ("iszero", Estimate::After),
    ("nanvl", Estimate::After),
    // Conditionals and types.
    ("coalesce", Estimate::After),
    ("nullif", Estimate::After),
    ("nvl", Estimate::After),
    ("nvl2", Estimate::After),
    ("greatest", Estimate::After),
    ("least", Estimate::After),
    ("arrow_cast", Estimate::After),
    ("arrow_typeof", Estimate::After),
    ("get_field", Estimate::After),
    // Time.
    ("now", Estimate::After),
    ("current_date", Estimate::After),
    ("current_time", Estimate::After),
    ("date_bin", Estimate::After),
    ("date_part", Estimate::After),
    ("date_trunc", Estimate::After),
    ("from_unixtime", Estimate::After),
    ("make_date", Estimate::After),
    ("to_char", Estimate::After),
    ("to_date", Estimate::After),
    ("to_timestamp", Estimate::After),
    ("to_timestamp_seconds", Estimate::After),
    ("to_timestamp_millis", Estimate::After),
    ("to_timestamp_micros", Estimate::After),
    ("to_unixtime", Estimate::After),
    // Arrays (the `sessions` view's `kinds` and `array_agg` results).
    ("make_array", Estimate::Sum),
    ("array_length", Estimate::After),
    ("cardinality", Estimate::After),
    ("array_has", Estimate::After),
    ("array_has_all", Estimate::After),
    ("array_has_any", Estimate::After),
    ("array_element", Estimate::After),
    ("array_position", Estimate::After),
    ("array_to_string", Estimate::Sum),
    ("array_distinct", Estimate::After),
    ("array_sort", Estimate::After),
    ("array_slice", Estimate::After),
    ("array_repeat", Estimate::ArrayRepeat),
    ("range", Estimate::Series),
    ("generate_series", Estimate::Series),
];

/// Aggregates a caller may use; their state lives in the query's memory pool.
const AGGREGATE: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "first_value",
    "last_value",
    "median",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "stddev",
    "stddev_pop",
    "var",
    "var_pop",
    "bool_and",
    "bool_or",
    "grouping",
];

/// Window functions a caller may use (aggregates above work as windows too).
const WINDOW: &[&str] = &[
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
];

/// Every name on the allowlists (for tests and docs).
pub fn allowed_functions() -> impl Iterator<Item = &'static str> {
    SCALAR
        .iter()
        .map(|(n, _)| *n)
        .chain(AGGREGATE.iter().copied())
        .chain(WINDOW.iter().copied())
}

/// Locks a fresh session's function registry down to the allowlists: every
/// allowed scalar function is replaced by its [`Bounded`] wrapper under the
/// same name (and aliases), so that even constant folding while planning
/// runs the checks; everything else, table functions included, is removed,
/// so SQL naming it fails at planning, before anything is evaluated.
pub fn lock_down(ctx: &SessionContext, limits: GuardLimits) {
    let state = ctx.state();
    for (name, f) in state.scalar_functions() {
        match bounded(f.clone(), limits) {
            Ok(b) => ctx.register_udf(b),
            Err(_) => ctx.deregister_udf(name),
        }
    }
    for (name, f) in state.aggregate_functions() {
        if !AGGREGATE.contains(&f.name()) {
            ctx.deregister_udaf(name);
        }
    }
    for (name, f) in state.window_functions() {
        if !WINDOW.contains(&f.name()) {
            ctx.deregister_udwf(name);
        }
    }
    for name in state.table_functions().keys() {
        ctx.deregister_udtf(name);
    }
}

/// Checks the plan as the SQL planner made it, before the optimizer folds
/// any constant: no `||`, no recursion, and every scalar call already a
/// [`Bounded`] one (from the locked-down registry).
pub fn check_unoptimized(plan: &LogicalPlan) -> DfResult<()> {
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::RecursiveQuery(_) = node {
            return Err(refused(
                "recursive CTEs are not allowed (they can run without bound)".into(),
            ));
        }
        node.apply_expressions(|e| {
            e.apply(|e| {
                match e {
                    Expr::BinaryExpr(b) if b.op == Operator::StringConcat => {
                        return Err(refused(
                            "the || operator is not allowed; use concat(a, b), which is bounded"
                                .into(),
                        ));
                    }
                    Expr::ScalarFunction(f)
                        if !(f.func.inner().as_ref() as &dyn Any).is::<Bounded>() =>
                    {
                        return Err(refused(format!(
                            "function {} is not allowed",
                            f.func.name()
                        )));
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(())
}

fn refused(m: String) -> DataFusionError {
    DataFusionError::Plan(m)
}

/// Checks an optimized plan against the rules above and wraps every scalar
/// function call in [`Bounded`]. The result is what may be executed.
pub fn secure(plan: LogicalPlan, limits: GuardLimits) -> DfResult<LogicalPlan> {
    let plan = plan
        .transform_up_with_subqueries(|node| {
            check_node(&node)?;
            node.map_expressions(|e| e.transform_up(|e| guard_expr(e, limits)))
        })?
        .data;
    // The wrapping may not change what was checked: check the result again
    // (a wrapped call is its inner function's name).
    plan.apply_with_subqueries(|node| {
        check_node(node)?;
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(plan)
}

/// The plan-shape rules of one node.
fn check_node(node: &LogicalPlan) -> DfResult<()> {
    match node {
        LogicalPlan::RecursiveQuery(_) => Err(refused(
            "recursive CTEs are not allowed (they can run without bound)".into(),
        )),
        LogicalPlan::TableScan(scan) => {
            let ours = source_as_provider(&scan.source)
                .ok()
                .is_some_and(|p| (p.as_ref() as &dyn Any).is::<TracesTable>());
            if ours {
                Ok(())
            } else {
                Err(refused(format!(
                    "table {} is not allowed: only traces (and the view sessions) can be read",
                    scan.table_name
                )))
            }
        }
        _ => Ok(()),
    }
}

/// `inner` wrapped in [`Bounded`] under its own name, if it is on the
/// allowlist: the one place a scalar function is admitted, whether from the
/// SQL (the locked-down registry, the optimized plan) or from a
/// distributed plan being decoded (`crate::distributed`).
pub(crate) fn bounded(inner: Arc<ScalarUDF>, limits: GuardLimits) -> DfResult<ScalarUDF> {
    let name = inner.name();
    let Some(&(_, estimate)) = SCALAR.iter().find(|(n, _)| *n == name) else {
        return Err(refused(format!("function {name} is not allowed")));
    };
    Ok(ScalarUDF::new_from_impl(Bounded {
        inner,
        estimate,
        limits,
    }))
}

/// Refuses what is not allowed in one expression node; wraps scalar calls.
fn guard_expr(e: Expr, limits: GuardLimits) -> DfResult<Transformed<Expr>> {
    match e {
        Expr::ScalarFunction(f) => {
            if (f.func.inner().as_ref() as &dyn Any).is::<Bounded>() {
                return Ok(Transformed::no(Expr::ScalarFunction(f)));
            }
            Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                func: Arc::new(bounded(f.func.clone(), limits)?),
                args: f.args,
            })))
        }
        Expr::AggregateFunction(ref a) => {
            let name = a.func.name();
            if AGGREGATE.contains(&name) {
                Ok(Transformed::no(e))
            } else {
                Err(refused(format!("aggregate {name} is not allowed")))
            }
        }
        Expr::WindowFunction(ref w) => {
            let (name, ok) = match &w.fun {
                WindowFunctionDefinition::AggregateUDF(a) => {
                    (a.name().to_string(), AGGREGATE.contains(&a.name()))
                }
                WindowFunctionDefinition::WindowUDF(f) => {
                    (f.name().to_string(), WINDOW.contains(&f.name()))
                }
            };
            if ok {
                Ok(Transformed::no(e))
            } else {
                Err(refused(format!("window function {name} is not allowed")))
            }
        }
        Expr::BinaryExpr(ref b) if b.op == Operator::StringConcat => Err(refused(
            "the || operator is not allowed; use concat(a, b), which is bounded".into(),
        )),
        other => Ok(Transformed::no(other)),
    }
}

/// A scalar function whose output is bounded ([`GuardLimits`]). Delegates
/// everything to the function it wraps but the call itself, which it checks
/// before (by [`Estimate`]) and after (by the bytes produced).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Bounded {
    inner: Arc<ScalarUDF>,
    estimate: Estimate,
    limits: GuardLimits,
}

impl Bounded {
    /// The bounds this call is checked against.
    pub(crate) fn limits(&self) -> GuardLimits {
        self.limits
    }

    fn over(&self, what: &str, bytes: usize) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "{}() would {what} {bytes} bytes, more than the {} bytes one call may produce",
            self.inner.name(),
            self.limits.max_call_bytes
        ))
    }

    /// An upper bound of the bytes the call will produce.
    fn estimate(&self, args: &[ColumnarValue], rows: usize) -> usize {
        let rows = rows.max(1);
        match self.estimate {
            Estimate::After => 0,
            Estimate::Sum => args.iter().map(|a| total_bytes(a, rows)).sum(),
            Estimate::Repeat => per_row(rows, |i| {
                let len = str_len(args.first(), i);
                let n = int_at(args.get(1), i).unwrap_or(0).max(0) as u128;
                len as u128 * n
            }),
            Estimate::Pad => per_row(rows, |i| {
                let len = str_len(args.first(), i) as u128;
                let n = int_at(args.get(1), i).unwrap_or(0).max(0) as u128;
                len + n * 4
            }),
            Estimate::Replace => per_row(rows, |i| {
                let len = str_len(args.first(), i) as u128;
                let to = str_len(args.get(2), i) as u128;
                (len + 1) * (to + 1) * 2
            }),
            Estimate::Series => per_row(rows, |i| {
                let (start, stop) = (int_at(args.first(), i), int_at(args.get(1), i));
                let step = if args.len() > 2 {
                    int_at(args.get(2), i)
                } else {
                    Some(1)
                };
                match (start, stop, step) {
                    (Some(a), Some(b), Some(s)) if s != 0 => {
                        ((b as i128 - a as i128).unsigned_abs() / s.unsigned_abs() as u128 + 1) * 8
                    }
                    (Some(_), Some(_), Some(_)) => 0,
                    // Not integers (dates, timestamps): refused below.
                    _ => u128::MAX,
                }
            }),
            Estimate::ArrayRepeat => per_row(rows, |i| {
                let elem = args.first().map_or(0, |a| total_bytes(a, rows) / rows) as u128;
                let n = int_at(args.get(1), i).unwrap_or(0).max(0) as u128;
                (elem + 8) * n
            }),
        }
    }
}

/// Sums `f` over the rows, saturating at `usize::MAX`.
fn per_row(rows: usize, f: impl Fn(usize) -> u128) -> usize {
    let mut total: u128 = 0;
    for i in 0..rows {
        total = total.saturating_add(f(i));
        if total > usize::MAX as u128 {
            return usize::MAX;
        }
    }
    total as usize
}

/// Bytes an argument holds for `rows` rows (a scalar counts once per row).
fn total_bytes(a: &ColumnarValue, rows: usize) -> usize {
    match a {
        ColumnarValue::Array(arr) => arr.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size().saturating_mul(rows),
    }
}

/// Byte length of a string argument at row `i` (0 for null or non-strings).
fn str_len(a: Option<&ColumnarValue>, i: usize) -> usize {
    match a {
        Some(ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        )) => s.len(),
        Some(ColumnarValue::Array(arr)) if i < arr.len() && !arr.is_null(i) => {
            array_str_len(arr, i)
        }
        _ => 0,
    }
}

fn array_str_len(arr: &ArrayRef, i: usize) -> usize {
    match arr.data_type() {
        DataType::Utf8 => arr.as_string::<i32>().value(i).len(),
        DataType::LargeUtf8 => arr.as_string::<i64>().value(i).len(),
        DataType::Utf8View => arr.as_string_view().value(i).len(),
        _ => 0,
    }
}

/// An integer argument at row `i` (`None` for null or non-integers).
fn int_at(a: Option<&ColumnarValue>, i: usize) -> Option<i64> {
    match a? {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(v) => v,
            _ => None,
        },
        ColumnarValue::Array(arr) => {
            if i >= arr.len() || arr.is_null(i) || !arr.data_type().is_integer() {
                return None;
            }
            let arr = arrow::compute::cast(arr, &DataType::Int64).ok()?;
            Some(arr.as_primitive::<Int64Type>().value(i))
        }
    }
}

/// Bytes a result holds.
fn output_bytes(v: &ColumnarValue) -> usize {
    match v {
        ColumnarValue::Array(a) => a.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size(),
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    /// Simplifications of functions bounded by a constant factor are kept
    /// (some, like `arrow_cast` or `now`, only work simplified); functions
    /// that can amplify are never simplified, so that constant folding goes
    /// through [`Bounded::invoke_with_args`] and its checks (a simplifier
    /// that merges literal arguments would allocate unchecked).
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        if self.estimate == Estimate::After {
            self.inner.simplify(args, info)
        } else {
            Ok(ExprSimplifyResult::Original(args))
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if self.estimate == Estimate::Series
            && args
                .args
                .iter()
                .any(|a| !a.data_type().is_integer() && !a.data_type().is_null())
        {
            return Err(DataFusionError::Plan(format!(
                "{}() is allowed over integers only here",
                self.inner.name()
            )));
        }
        let before = self.estimate(&args.args, args.number_rows);
        if before > self.limits.max_call_bytes {
            return Err(self.over("produce", before));
        }
        let out = self.inner.invoke_with_args(args)?;
        let after = output_bytes(&out);
        if after > self.limits.max_call_bytes {
            return Err(self.over("have produced", after));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every allowlisted name is a function DataFusion registers (a typo
    /// would silently shrink the allowlist), and locking a session down
    /// leaves exactly the allowlist, every scalar one bounded.
    #[test]
    fn the_allowlists_name_real_functions_and_nothing_else_survives() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let missing: Vec<&str> = SCALAR
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !state.scalar_functions().contains_key(*n))
            .chain(
                AGGREGATE
                    .iter()
                    .copied()
                    .filter(|n| !state.aggregate_functions().contains_key(*n)),
            )
            .chain(WINDOW.iter().copied().filter(|n| {
                !state.window_functions().contains_key(*n)
                    && !state.aggregate_functions().contains_key(*n)
            }))
            .collect();
        assert!(missing.is_empty(), "not DataFusion functions: {missing:?}");
        lock_down(&ctx, GuardLimits::default());
        let state = ctx.state();
        for f in state.scalar_functions().values() {
            assert!(SCALAR.iter().any(|(n, _)| *n == f.name()), "{}", f.name());
            assert!(
                (f.inner().as_ref() as &dyn Any).is::<Bounded>(),
                "{}",
                f.name()
            );
        }
        for f in state.aggregate_functions().values() {
            assert!(AGGREGATE.contains(&f.name()), "{}", f.name());
        }
        assert!(state.table_functions().is_empty());
        // Quadratic and uninterruptible within a call: never admitted.
        assert!(!state.scalar_functions().contains_key("levenshtein"));
    }
}
