//! What query engines skip by must agree with the rows.
//!
//! A SQL scan (DataFusion, DuckDB, ...) skips a row group when its footer
//! statistics (min, max, null count) or a bloom filter say a filter cannot
//! match. Those live in the footer, outside the rows that `verify` checks
//! against the log, so a segment re-signed by the key holder could keep
//! every row intact yet hide some of them from queries with forged
//! statistics. This module checks, per row group, that every statistic and
//! bloom filter admits every stored value (and that bounds marked exact are
//! the rows' own), that every declared row and value count is what the
//! group's pages hold, and (through [`crate::footer_rules`]) that the footer
//! and its Parquet schema are exactly what the writer writes, so that
//! readers which believe other footer fields than parquet-rs does (DuckDB,
//! pyarrow) see the same statistics and types. Attacker reviews shaped these
//! rules; each has a forged-file test in `segment.rs`. Page headers and page indexes are read
//! strictly ([`crate::page_headers`], [`crate::page_index`]) and each page's
//! declared nulls, bounds, sizes and first row are checked against the rows
//! it holds: stock DataFusion skips pages by them.

use std::sync::Arc;

use arrow_array::{
    Array, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray,
};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Type as PhysicalType;
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::ParquetMetaData;

use crate::footer_rules;
use crate::page_index::ChunkIndex;
use crate::segment::SegmentError;

fn pq<E: std::fmt::Display>(e: E) -> SegmentError {
    SegmentError::Format(e.to_string())
}

/// What one page (or, merged, one column chunk) actually holds.
#[derive(Default)]
struct Seen {
    rows: u64,
    nulls: u64,
    min_i: Option<i64>,
    max_i: Option<i64>,
    min_b: Option<Vec<u8>>,
    max_b: Option<Vec<u8>>,
    /// The byte lengths of its byte array values, summed.
    lengths: u64,
    /// First value a bloom filter does not admit.
    not_in_bloom: Option<String>,
}

/// What a column's rows are looked at for.
#[derive(Clone, Copy)]
struct Wanted {
    /// Minimum and maximum (statistics or a column index to check).
    bounds: bool,
    /// Summed value lengths (the offset index declares them per page).
    lengths: bool,
}

impl Seen {
    fn int(&mut self, v: i64) {
        self.min_i = Some(self.min_i.map_or(v, |m| m.min(v)));
        self.max_i = Some(self.max_i.map_or(v, |m| m.max(v)));
    }
    fn strings<'a>(&mut self, values: impl Iterator<Item = &'a str>, bloom: Option<&Sbbf>) {
        for v in values {
            self.bytes(v.as_bytes());
            if self.not_in_bloom.is_none() && bloom.is_some_and(|b| !b.check(v)) {
                self.not_in_bloom = Some(v.to_string());
            }
        }
    }
    fn ints(&mut self, values: impl Iterator<Item = i64>, bloom: Option<&Sbbf>) {
        for v in values {
            self.int(v);
            if self.not_in_bloom.is_none() && bloom.is_some_and(|b| !b.check(&v)) {
                self.not_in_bloom = Some(v.to_string());
            }
        }
    }
    fn bytes(&mut self, v: &[u8]) {
        if self.min_b.as_deref().is_none_or(|m| v < m) {
            self.min_b = Some(v.to_vec());
        }
        if self.max_b.as_deref().is_none_or(|m| v > m) {
            self.max_b = Some(v.to_vec());
        }
    }

    /// Takes the rows of `a` (a column of one page, or part of one).
    fn take(&mut self, a: &dyn Array, bloom: Option<&Sbbf>, want: Wanted) -> Result<(), String> {
        self.rows += a.len() as u64;
        self.nulls += a.null_count() as u64;
        let scan = want.bounds || bloom.is_some();
        if let Some(a) = a.as_any().downcast_ref::<StringArray>() {
            if want.lengths {
                self.lengths += match a.null_count() {
                    0 => (a.value_offsets()[a.len()] - a.value_offsets()[0]) as u64,
                    _ => a.iter().flatten().map(|v| v.len() as u64).sum::<u64>(),
                };
            }
            if scan {
                self.strings(a.iter().flatten(), bloom);
            }
        } else if let Some(a) = a.as_any().downcast_ref::<StringViewArray>() {
            if want.lengths {
                // A view's low 32 bits are its length.
                self.lengths += match a.null_count() {
                    0 => a.views().iter().map(|v| u64::from(*v as u32)).sum::<u64>(),
                    _ => a.iter().flatten().map(|v| v.len() as u64).sum::<u64>(),
                };
            }
            if scan {
                self.strings(a.iter().flatten(), bloom);
            }
        } else if let Some(a) = a.as_any().downcast_ref::<Int64Array>() {
            if scan {
                self.ints(a.iter().flatten(), bloom);
            }
        } else if let Some(a) = a.as_any().downcast_ref::<TimestampMicrosecondArray>() {
            if scan {
                self.ints(a.iter().flatten(), bloom);
            }
        } else if let Some(a) = a.as_any().downcast_ref::<FixedSizeBinaryArray>() {
            for v in a.iter().flatten() {
                if !scan {
                    break;
                }
                self.bytes(v);
                if self.not_in_bloom.is_none() && bloom.is_some_and(|b| !b.check(v)) {
                    self.not_in_bloom = Some(hex::encode(v));
                }
            }
        } else {
            return Err(format!("an unexpected type {}", a.data_type()));
        }
        Ok(())
    }

    /// Folds another page's rows in.
    fn merge(&mut self, o: &Seen) {
        self.rows += o.rows;
        self.nulls += o.nulls;
        self.lengths += o.lengths;
        for v in [o.min_i, o.max_i].into_iter().flatten() {
            self.int(v);
        }
        for v in [&o.min_b, &o.max_b].into_iter().flatten() {
            self.bytes(v);
        }
        if self.not_in_bloom.is_none() {
            self.not_in_bloom = o.not_in_bloom.clone();
        }
    }

    /// Whether `bound`, plain-encoded as statistics and column indexes hold
    /// it, is at or below (`lower`) or at or above every value seen.
    fn admits(&self, ty: PhysicalType, bound: &[u8], lower: bool) -> bool {
        match ty {
            PhysicalType::INT64 => as_i64(bound).is_some_and(|m| match lower {
                true => self.min_i.is_none_or(|v| m <= v),
                false => self.max_i.is_none_or(|v| m >= v),
            }),
            _ => match lower {
                true => self.min_b.as_deref().is_none_or(|v| bound <= v),
                false => self.max_b.as_deref().is_none_or(|v| bound >= v),
            },
        }
    }

    /// Whether `bound` is the lowest (`lower`) or highest value seen itself.
    fn is_own(&self, ty: PhysicalType, bound: &[u8], lower: bool) -> bool {
        match (ty, lower) {
            (PhysicalType::INT64, true) => as_i64(bound).is_some() && as_i64(bound) == self.min_i,
            (PhysicalType::INT64, false) => as_i64(bound).is_some() && as_i64(bound) == self.max_i,
            (_, true) => self.min_b.as_deref() == Some(bound),
            (_, false) => self.max_b.as_deref() == Some(bound),
        }
    }
}

fn as_i64(b: &[u8]) -> Option<i64> {
    <[u8; 8]>::try_from(b).ok().map(i64::from_le_bytes)
}

/// How two plain-encoded bounds of a column of type `ty` compare (`None`
/// when one is not a value of the type).
fn compare(ty: PhysicalType, a: &[u8], b: &[u8]) -> Option<std::cmp::Ordering> {
    match ty {
        PhysicalType::INT64 => Some(as_i64(a)?.cmp(&as_i64(b)?)),
        _ => Some(a.cmp(b)),
    }
}

/// Checks every row group's statistics, bloom filters and page indexes of
/// `bytes` (a segment file) against its rows, decoding every column.
/// Returns one message per disagreement; `Err` when the file cannot be read.
/// (`verify` shows a [`PruningCheck`] the batches it decodes anyway.)
pub fn check_pruning_metadata(bytes: &Bytes) -> Result<Vec<String>, SegmentError> {
    let mut check = PruningCheck::new(bytes)?;
    let meta = crate::parquet_input::load(bytes)?;
    for g in 0..check.groups.len() {
        let leaves: Vec<usize> = check.groups[g].columns.iter().map(|c| c.leaf).collect();
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
                .with_row_groups(vec![g])
                .with_projection(ProjectionMask::leaves(meta.parquet_schema(), leaves))
                .with_batch_size(8192)
                .build()
                .map_err(pq)?;
        for batch in reader {
            check.observe(g, &batch.map_err(pq)?);
        }
    }
    check.finish()
}

/// The statistics, bloom filters and page indexes of one segment file,
/// checked against its rows as a reader decodes them: each row group's
/// batches shown to [`PruningCheck::observe`] with that group's index (every
/// column). `verify` decodes every column of every row anyway; a second
/// reader of the checked columns was a few percent of its CPU. Which group
/// a row is in must come from the reader of that group alone: the footer's
/// row counts are the attacker's to change (declaring 16,383 and 16,385
/// rows for two groups of 16,384 moves a row past the first group's
/// statistics without touching a page). Which page a row is in comes from
/// the page headers ([`crate::page_headers`]), which the offset index must
/// match ([`crate::page_index`]).
pub struct PruningCheck {
    meta: Arc<ParquetMetaData>,
    /// Whether the footer re-encodes to itself ([`footer_is_canonical`]).
    canonical: bool,
    /// Footer fields the writer never writes so ([`unwritten_fields`]), and
    /// page headers or indexes that do not read the same for every reader.
    unwritten: Vec<String>,
    /// Whether page headers or encoded values read differently for other
    /// readers ([`PruningCheck::pages_misread`]).
    undecodable: bool,
    /// Per row group: its columns and what their rows hold.
    groups: Vec<GroupCheck>,
    error: Option<SegmentError>,
}

/// The columns of one row group.
struct GroupCheck {
    columns: Vec<ColumnCheck>,
    /// Rows decoded from the group's pages, with statistics or not: a group
    /// stripped of them still must not declare fewer rows than it holds
    /// (readers that trust the count would drop the rest).
    rows: u64,
}

/// One column chunk: what to look at, and what each of its pages holds.
struct ColumnCheck {
    /// Leaf column index (a segment's schema is flat: its field index too).
    leaf: usize,
    name: String,
    bloom: Option<Sbbf>,
    want: Wanted,
    /// Its pages' rows and indexes; one page of all rows when its page
    /// headers could not be walked (a finding already).
    index: ChunkIndex,
    pages: Vec<Seen>,
}

impl PruningCheck {
    /// Reads the footer, bloom filters, page headers and page indexes of
    /// `bytes`.
    pub fn new(bytes: &Bytes) -> Result<Self, SegmentError> {
        let meta = crate::parquet_input::load(bytes)?.metadata().clone();
        let written = footer_rules::metadata_as_written(bytes)?;
        let mut unwritten = footer_rules::unwritten_fields(&meta);
        unwritten.extend(footer_rules::row_group_summaries(&written));
        let mut groups = Vec::with_capacity(meta.num_row_groups());
        let mut undecodable = false;
        for (g, rg) in meta.row_groups().iter().enumerate() {
            // Decoding is bounded by what the writer writes: a row group of
            // more rows is not its, and a few bytes of runs could make
            // every reader decode billions.
            if rg.num_rows() < 0 || rg.num_rows() > crate::segment::ROW_GROUP_ROWS as i64 {
                undecodable = true;
                unwritten.push(format!(
                    "row group {g}: declares {} rows, more than the writer puts in a row group (readers would decode them all)",
                    rg.num_rows()
                ));
            }
            let mut columns = Vec::with_capacity(rg.num_columns());
            for (leaf, c) in rg.columns().iter().enumerate() {
                let name = c.column_path().string();
                let walked = crate::page_headers::walk(bytes, c);
                if let (Ok(pages), Some(w)) = (&walked, written.row_groups().get(g))
                    && let Some(p) = footer_rules::chunk_summary_problem(w.column(leaf), pages)
                {
                    unwritten.push(format!(
                        "row group {g}: column {name}: {p} (readers planning by the footer would be misled)"
                    ));
                }
                let delta = walked.as_ref().is_ok_and(|p| {
                    p.encodings.iter().any(|&(_, e)| {
                        e == crate::page_headers::DELTA_BINARY_PACKED
                            || e == crate::page_headers::DELTA_BYTE_ARRAY
                    })
                });
                let index = match walked {
                    Err(p) => {
                        undecodable = true;
                        unwritten.push(format!(
                            "row group {g}: column {name}: {p} (other readers would decode other pages)"
                        ));
                        None
                    }
                    Ok(pages) => match crate::page_index::read(bytes, c, pages.data) {
                        Err(p) => {
                            unwritten.push(format!(
                                "row group {g}: column {name}: {p} (engines reading page indexes would skip or misread pages)"
                            ));
                            None
                        }
                        Ok(index) => Some(index).filter(|i| i.bounds.len() >= 2),
                    },
                };
                if index.is_some()
                    && let Some(p) = crate::encoded_runs::values_problem(
                        bytes,
                        c,
                        usize::try_from(rg.num_rows()).unwrap_or(0),
                        delta,
                    )
                {
                    undecodable = true;
                    unwritten.push(format!(
                        "row group {g}: column {name}: {p} (other readers would decode other values)"
                    ));
                }
                let index = index.unwrap_or_else(|| ChunkIndex {
                    bounds: vec![0, u64::MAX],
                    ..ChunkIndex::default()
                });
                // Statistics, bloom filters and column indexes are checked on
                // any column that has them, whatever its type: the writer
                // gives the hash and salt columns none, but a forged footer
                // may, and outside tools would prune by them.
                if let Some(p) = crate::bloom_filter::header_problem(bytes, c) {
                    unwritten.push(format!(
                        "row group {g}: column {name}: {p} (readers would probe other bits)"
                    ));
                }
                let plain =
                    |h: &crate::page_headers::DataPage| h.encoding == crate::page_headers::PLAIN;
                let want = Wanted {
                    bounds: c.statistics().is_some()
                        || index.column.is_some()
                        || index.headers.iter().any(|h| h.statistics.is_some()),
                    lengths: index.unencoded.is_some()
                        || c.unencoded_byte_array_data_bytes().is_some()
                        || (c.column_type() == PhysicalType::BYTE_ARRAY
                            && index.headers.iter().any(plain)),
                };
                columns.push(ColumnCheck {
                    leaf,
                    name,
                    bloom: Sbbf::read_from_column_chunk(c, bytes).map_err(pq)?,
                    want,
                    pages: (1..index.bounds.len()).map(|_| Seen::default()).collect(),
                    index,
                });
            }
            groups.push(GroupCheck { columns, rows: 0 });
        }
        Ok(PruningCheck {
            canonical: footer_rules::footer_is_canonical(bytes, &written)?
                && footer_rules::schema_is_as_written(&meta),
            unwritten,
            undecodable,
            meta,
            groups,
            error: None,
        })
    }

    /// Whether some page is not as the writer writes it in a way that makes
    /// readers decode other pages or values than `verify`'s reader would:
    /// such a file is not handed to a decoder at all (parquet-rs panics on
    /// some of them), and [`PruningCheck::findings_before_decoding`] says why.
    pub fn pages_misread(&self) -> bool {
        self.undecodable
    }

    /// What was found before any row was decoded: the footer and page
    /// rules, for a file whose rows are not decoded ([`Self::pages_misread`]).
    pub fn findings_before_decoding(self) -> Vec<String> {
        self.unwritten
    }

    /// Takes rows that the reader of row group `group` decoded.
    pub fn observe(&mut self, group: usize, batch: &RecordBatch) {
        if self.error.is_none()
            && let Err(e) = self.observe_group(group, batch)
        {
            self.error = Some(e);
        }
    }

    fn observe_group(&mut self, group: usize, part: &RecordBatch) -> Result<(), SegmentError> {
        let Some(g) = self.groups.get_mut(group) else {
            return Err(SegmentError::Format(format!("no row group {group}")));
        };
        let (start, n) = (g.rows, part.num_rows() as u64);
        g.rows += n;
        for c in &mut g.columns {
            let a = part.column_by_name(&c.name).ok_or_else(|| {
                SegmentError::Format(format!("column {} was not decoded", c.name))
            })?;
            // The pages these rows are in; rows past the last page's (which
            // the counts checks report) go to the last page.
            let last = c.pages.len() - 1;
            let mut p = c
                .index
                .bounds
                .partition_point(|&b| b <= start)
                .saturating_sub(1);
            let mut at = start;
            while at < start + n {
                let end = match p >= last {
                    true => start + n,
                    false => c.index.bounds[p + 1].min(start + n),
                };
                let rows = a.slice((at - start) as usize, (end - at) as usize);
                c.pages[p.min(last)]
                    .take(&rows, c.bloom.as_ref(), c.want)
                    .map_err(|e| SegmentError::Format(format!("column {}: {e}", c.name)))?;
                (at, p) = (end, p + 1);
            }
        }
        Ok(())
    }

    /// One message per statistic, bloom filter or page index that does not
    /// admit every row it describes; `Err` when a column could not be
    /// checked.
    pub fn finish(self) -> Result<Vec<String>, SegmentError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut findings = self.unwritten;
        if !self.canonical {
            findings.push(
                "the footer is not as the segment writer writes it (other readers would see other statistics or types)".into(),
            );
        }
        let declared: i64 = self.meta.row_groups().iter().map(|rg| rg.num_rows()).sum();
        let total = self.meta.file_metadata().num_rows();
        if total != declared {
            findings.push(format!(
                "the footer declares {total} rows, its row groups {declared} (readers could drop rows)"
            ));
        }
        for (g, (rg, GroupCheck { columns, rows })) in
            self.meta.row_groups().iter().zip(&self.groups).enumerate()
        {
            if rg.num_rows() != *rows as i64 {
                findings.push(format!(
                    "row group {g}: declares {} rows, its pages hold {rows} (readers could drop rows)",
                    rg.num_rows()
                ));
            }
            for c in rg.columns() {
                if c.num_values() != *rows as i64 {
                    findings.push(format!(
                        "row group {g}: column {} declares {} values, its pages hold {rows} rows (readers could drop rows)",
                        c.column_path().string(),
                        c.num_values()
                    ));
                }
            }
            for col in columns {
                let cc = rg.column(col.leaf);
                let mut chunk = Seen::default();
                for p in &col.pages {
                    chunk.merge(p);
                }
                if let Some(p) = plain_problem(col, cc) {
                    findings.push(format!(
                        "row group {g}: column {}: {p} (other readers would decode other values)",
                        col.name
                    ));
                }
                let mut bad = |what: String| {
                    findings.push(format!(
                        "row group {g}: {what} of column {} disagree with its rows (queries could skip rows)",
                        col.name
                    ))
                };
                if let Some(v) = &chunk.not_in_bloom {
                    bad(format!("the bloom filter (value {v:?} not admitted)"));
                }
                for problem in page_problems(col, cc.column_type()) {
                    bad(problem);
                }
                // Size statistics: byte arrays' value bytes and the count of
                // values at each definition level (none by repetition level:
                // the columns are flat).
                if cc
                    .unencoded_byte_array_data_bytes()
                    .is_some_and(|n| n != chunk.lengths as i64)
                    || cc.repetition_level_histogram().is_some()
                    || cc.definition_level_histogram().is_some_and(|h| {
                        h.values() != [chunk.nulls as i64, (chunk.rows - chunk.nulls) as i64]
                    })
                {
                    bad("the size statistics".into());
                }
                let Some(st) = cc.statistics() else { continue };
                if st.null_count_opt().is_some_and(|n| n != chunk.nulls) {
                    bad(format!(
                        "null count {:?} (nulls read: {})",
                        st.null_count_opt(),
                        chunk.nulls
                    ));
                }
                let ty = cc.column_type();
                let (min, max) = (st.min_bytes_opt(), st.max_bytes_opt());
                // A bound marked exact must be the rows' own: readers answer
                // min() and max() from it without reading a row.
                let wrong = min.is_some_and(|b| !chunk.admits(ty, b, true))
                    || max.is_some_and(|b| !chunk.admits(ty, b, false))
                    || (st.min_is_exact() && min.is_some_and(|b| !chunk.is_own(ty, b, true)))
                    || (st.max_is_exact() && max.is_some_and(|b| !chunk.is_own(ty, b, false)));
                if wrong {
                    bad("min/max statistics".into());
                }
            }
        }
        Ok(findings)
    }
}

/// The first plain-encoded page of a column chunk whose value bytes are not
/// exactly its values, if there is one. Plain values carry no count of
/// their own: readers take as many as the page header says and ignore what
/// follows, so bytes after them could hold anything; and the sizes are the
/// writer's only when nothing but the values is there. (Delta and
/// dictionary encodings are decoded by [`crate::encoded_runs`].)
fn plain_problem(
    col: &ColumnCheck,
    cc: &parquet::file::metadata::ColumnChunkMetaData,
) -> Option<String> {
    let width = match cc.column_type() {
        PhysicalType::INT64 | PhysicalType::DOUBLE => Some(8),
        PhysicalType::INT32 | PhysicalType::FLOAT => Some(4),
        PhysicalType::INT96 => Some(12),
        PhysicalType::FIXED_LEN_BYTE_ARRAY => u64::try_from(cc.column_descr().type_length()).ok(),
        PhysicalType::BYTE_ARRAY | PhysicalType::BOOLEAN => None,
    };
    for (k, (h, seen)) in col.index.headers.iter().zip(&col.pages).enumerate() {
        if h.encoding != crate::page_headers::PLAIN {
            continue;
        }
        let present = seen.rows - seen.nulls;
        let want = match (cc.column_type(), width) {
            (PhysicalType::BYTE_ARRAY, _) => seen.lengths + 4 * present,
            (PhysicalType::BOOLEAN, _) => present.div_ceil(8),
            (_, Some(w)) => w * present,
            (_, None) => return Some(format!("page {k}: plain values of no width")),
        };
        if h.value_bytes != want as i64 {
            return Some(format!(
                "page {k}: {} bytes of plain values where its {present} values take {want}",
                h.value_bytes
            ));
        }
    }
    None
}

/// What in a column chunk's page index or page headers disagrees with the
/// rows of its pages, one message each (cut to the first few pages).
fn page_problems(col: &ColumnCheck, ty: PhysicalType) -> Vec<String> {
    let mut out = Vec::new();
    let ix = &col.index;
    for (k, seen) in col.pages.iter().enumerate() {
        if out.len() >= 4 {
            break;
        }
        let rows = ix.bounds[k + 1].saturating_sub(ix.bounds[k]);
        let header = ix.headers.get(k);
        if let Some(n) = header.map(|h| h.nulls)
            && n != seen.nulls as i64
        {
            out.push(format!(
                "page {k}'s header null count {n} (nulls read: {})",
                seen.nulls
            ));
        }
        if let Some(st) = header.and_then(|h| h.statistics.as_ref()) {
            let wrong = st.lower.iter().any(|b| !seen.admits(ty, b, true))
                || st.upper.iter().any(|b| !seen.admits(ty, b, false))
                || st.null_count.is_some_and(|n| n != seen.nulls as i64)
                || st.distinct_count
                || st
                    .exact_min
                    .as_ref()
                    .is_some_and(|b| !seen.is_own(ty, b, true))
                || st
                    .exact_max
                    .as_ref()
                    .is_some_and(|b| !seen.is_own(ty, b, false));
            if wrong {
                out.push(format!("page {k}'s header statistics"));
            }
        }
        if let Some(u) = &ix.unencoded
            && u[k] != seen.lengths as i64
        {
            out.push(format!(
                "the offset index's unencoded size {} of page {k} (bytes read: {})",
                u[k], seen.lengths
            ));
        }
        let Some(ci) = &ix.column else { continue };
        let all_null = seen.nulls == rows;
        let ok = match ci.null_pages[k] {
            true => all_null && ci.min[k].is_empty() && ci.max[k].is_empty(),
            false => {
                !all_null && seen.admits(ty, &ci.min[k], true) && seen.admits(ty, &ci.max[k], false)
            }
        };
        if !ok {
            out.push(format!("the column index's bounds of page {k}"));
        }
        if ci
            .null_counts
            .as_ref()
            .is_some_and(|v| v[k] != seen.nulls as i64)
        {
            out.push(format!(
                "the column index's null count of page {k} (nulls read: {})",
                seen.nulls
            ));
        }
        if let Some(h) = &ci.def_levels
            && (h[2 * k], h[2 * k + 1]) != (seen.nulls as i64, (rows - seen.nulls) as i64)
        {
            out.push(format!(
                "the column index's definition level histogram of page {k}"
            ));
        }
    }
    // Engines binary-search bounds declared ordered: every non-null page's
    // must be in that order.
    if let Some(ci) = &ix.column
        && ci.order != crate::page_index::UNORDERED
    {
        let want = match ci.order == crate::page_index::ASCENDING {
            true => std::cmp::Ordering::Less,
            false => std::cmp::Ordering::Greater,
        };
        let pages: Vec<usize> = (0..ci.null_pages.len())
            .filter(|&k| !ci.null_pages[k])
            .collect();
        let in_order = pages.windows(2).all(|w| {
            [&ci.min, &ci.max]
                .iter()
                .all(|b| compare(ty, &b[w[0]], &b[w[1]]).is_some_and(|o| o == want || o.is_eq()))
        });
        if !in_order {
            out.push("the column index's declared page order".into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_index::{ASCENDING, ColumnIndex, DESCENDING, UNORDERED};

    /// Two pages of an INT64 column holding 1..=2 and 3..=4, described by a
    /// column index with `min`, `max` and `order`.
    fn two_pages(min: [i64; 2], max: [i64; 2], order: i32) -> Vec<String> {
        let mut pages = [Seen::default(), Seen::default()];
        for (k, p) in pages.iter_mut().enumerate() {
            p.rows = 2;
            p.ints([2 * k as i64 + 1, 2 * k as i64 + 2].into_iter(), None);
        }
        let col = ColumnCheck {
            leaf: 0,
            name: "idx".into(),
            bloom: None,
            want: Wanted {
                bounds: true,
                lengths: false,
            },
            index: ChunkIndex {
                bounds: vec![0, 2, 4],
                headers: Vec::new(),
                unencoded: None,
                column: Some(ColumnIndex {
                    null_pages: vec![false, false],
                    min: min.iter().map(|v| v.to_le_bytes().to_vec()).collect(),
                    max: max.iter().map(|v| v.to_le_bytes().to_vec()).collect(),
                    order,
                    null_counts: Some(vec![0, 0]),
                    def_levels: None,
                }),
            },
            pages: pages.into(),
        };
        page_problems(&col, PhysicalType::INT64)
    }

    #[test]
    fn a_declared_page_order_must_hold() {
        assert!(two_pages([1, 3], [2, 4], ASCENDING).is_empty());
        assert!(two_pages([1, 3], [2, 4], UNORDERED).is_empty());
        // Engines binary-searching a list declared descending would look
        // for 3 in the wrong half.
        assert_eq!(
            two_pages([1, 3], [2, 4], DESCENDING),
            ["the column index's declared page order"]
        );
        // Bounds that admit every row but are out of the declared order.
        assert_eq!(
            two_pages([1, 0], [5, 4], ASCENDING),
            ["the column index's declared page order"]
        );
        // A page whose maximum leaves out its last row.
        assert_eq!(
            two_pages([1, 3], [2, 3], ASCENDING),
            ["the column index's bounds of page 1"]
        );
    }
}
