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
//! group's pages hold, and that the footer and its Parquet schema are
//! exactly what the writer writes, so that readers which believe other
//! footer fields than parquet-rs does (DuckDB, pyarrow) see the same
//! statistics and types. Four attacker reviews shaped these rules; each has
//! a forged-footer test in `segment.rs`. Footer fields that re-encode as
//! they are, whatever they say, are held to what the writer writes
//! ([`unwritten_fields`]): key-value entries, the embedded Arrow schema, the
//! declared sort order, distinct counts, the writer's name and the layout
//! fields readers disagree on. (Page indexes are not checked: no reader of
//! ours uses them; stock DataFusion with its page index on can be misled by
//! a re-sealed segment's, see docs/architecture.md.)

use std::sync::Arc;

use arrow_array::{
    Array, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{FieldRef, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{
    ARROW_SCHEMA_META_KEY, ArrowSchemaConverter, ProjectionMask, encode_arrow_schema,
};
use parquet::basic::Type as PhysicalType;
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::{
    ParquetMetaData, ParquetMetaDataOptions, ParquetMetaDataReader, ParquetMetaDataWriter,
};
use parquet::file::statistics::Statistics;

use crate::segment::SegmentError;
use tracevault_schemas::rows::{col, segment_schema};

fn pq<E: std::fmt::Display>(e: E) -> SegmentError {
    SegmentError::Format(e.to_string())
}

/// What one column chunk actually holds.
#[derive(Default)]
struct Seen {
    nulls: u64,
    min_i: Option<i64>,
    max_i: Option<i64>,
    min_b: Option<Vec<u8>>,
    max_b: Option<Vec<u8>>,
    /// First value a bloom filter does not admit.
    not_in_bloom: Option<String>,
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
}

/// Checks every row group's statistics and bloom filters of `bytes` (a
/// segment file) against its rows, decoding the columns that have either.
/// Returns one message per disagreement; `Err` when the file cannot be read.
/// (`verify` shows a [`PruningCheck`] the batches it decodes anyway.)
pub fn check_pruning_metadata(bytes: &Bytes) -> Result<Vec<String>, SegmentError> {
    let mut check = PruningCheck::new(bytes)?;
    let meta = crate::parquet_input::load(bytes)?;
    for g in 0..check.groups.len() {
        // At least one column, so that a group without statistics still has
        // its rows counted.
        let mut leaves = check.groups[g].leaves.clone();
        leaves.push(0);
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

/// Whether the footer of `bytes` is exactly what parquet-rs writes for the
/// metadata it reads from it, as the segment writer wrote it. Readers differ
/// in which footer fields they believe: parquet-rs ignores the deprecated
/// `min`/`max` once `min_value` or `max_value` is set, DuckDB takes each
/// bound from whichever is there, pyarrow takes the deprecated ones when
/// `column_orders` is missing. The statistics this module checks are
/// parquet-rs's; a footer edited to show other readers other statistics (or
/// carrying any field parquet-rs drops) does not re-encode to itself.
///
/// Read back, the metadata loses two things the writer put there, which
/// [`metadata_as_written`] restores before encoding: the page encoding statistics (kept whole, not as
/// the usual mask) and the deprecated `min`/`max` beside `min_value` and
/// `max_value`, which the writer adds for columns of signed sort order.
fn footer_is_canonical(bytes: &Bytes) -> Result<bool, SegmentError> {
    let n = bytes.len();
    let Some(len) = n
        .checked_sub(8)
        .and_then(|at| bytes.get(at..at + 4))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_le_bytes(b) as usize)
    else {
        return Ok(false);
    };
    let Some(written) = n.checked_sub(8 + len).and_then(|start| bytes.get(start..)) else {
        return Ok(false);
    };
    let meta = metadata_as_written(bytes)?;
    let mut again = Vec::with_capacity(written.len());
    ParquetMetaDataWriter::new(&mut again, &meta)
        .finish()
        .map_err(pq)?;
    Ok(again == written)
}

/// The metadata of `bytes` as the writer had it when it wrote the footer
/// (see [`footer_is_canonical`]).
pub(crate) fn metadata_as_written(bytes: &Bytes) -> Result<ParquetMetaData, SegmentError> {
    let options = ParquetMetaDataOptions::new().with_encoding_stats_as_mask(false);
    let meta = ParquetMetaDataReader::new()
        .with_metadata_options(Some(options))
        .parse_and_finish(bytes)
        .map_err(pq)?;
    let mut groups = Vec::with_capacity(meta.num_row_groups());
    for rg in meta.row_groups() {
        let mut columns = Vec::with_capacity(rg.num_columns());
        for c in rg.columns() {
            let signed = c.column_descr().sort_order().is_signed();
            columns.push(match c.statistics() {
                Some(st) if signed => c
                    .clone()
                    .into_builder()
                    .set_statistics(with_deprecated_min_max(st.clone()))
                    .build()
                    .map_err(pq)?,
                _ => c.clone(),
            });
        }
        groups.push(
            rg.clone()
                .into_builder()
                .set_column_metadata(columns)
                .build()
                .map_err(pq)?,
        );
    }
    Ok(meta.into_builder().set_row_groups(groups).build())
}

/// Whether the footer's Parquet schema is the one the segment writer
/// derives from the segment's Arrow schema (either form of `salt`; see
/// [`tracevault_schemas::rows::is_segment_schema`]). parquet-rs reads a segment through the Arrow
/// schema stored beside it, so a Parquet type edited underneath (say a
/// timestamp no longer adjusted to UTC, or no timestamp at all) changes
/// nothing for our readers; DuckDB and pyarrow read the Parquet types and
/// would shift every time window by the local zone's offset.
fn schema_is_as_written(meta: &ParquetMetaData) -> bool {
    let stored = meta.file_metadata().schema_descr().root_schema();
    let written = segment_schema();
    [false, true].into_iter().any(|salt_required| {
        let fields: Vec<FieldRef> = written
            .fields()
            .iter()
            .map(|f| match salt_required && f.name() == col::SALT {
                true => Arc::new(f.as_ref().clone().with_nullable(false)),
                false => f.clone(),
            })
            .collect();
        ArrowSchemaConverter::new()
            .convert(&Schema::new(fields))
            .is_ok_and(|d| d.root_schema() == stored)
    })
}

/// The footer fields of `meta` that the segment writer never writes so
/// (one message each). A canonical footer ([`footer_is_canonical`]) can
/// still say anything in these, and other readers believe them: pyarrow's
/// `to_pandas` takes column names, index and types from a `pandas` entry
/// (an extra entry could relabel `content` as `attributes`), a second
/// header key may be the one another reader takes, an edited Arrow schema
/// changes types and metadata for every Arrow reader, a declared sort order
/// lets an engine skip sorting (or merging) by it, and distinct counts feed
/// planners. So: exactly the writer's three entries, once each; its Arrow
/// schema, byte for byte (either form of `salt`); its sort order or none
/// (none claims nothing); no distinct counts; its `created_by`; and per
/// column chunk the layout fields readers disagree on (below).
fn unwritten_fields(meta: &ParquetMetaData) -> Vec<String> {
    use crate::segment::{HEADER_KEY, SIGNATURE_KEY};
    let mut out = Vec::new();
    let kv = meta
        .file_metadata()
        .key_value_metadata()
        .map_or(&[][..], Vec::as_slice);
    let mut keys: Vec<&str> = kv.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    let mut written = [ARROW_SCHEMA_META_KEY, HEADER_KEY, SIGNATURE_KEY];
    written.sort_unstable();
    if keys != written {
        let mut list: Vec<String> = keys.iter().take(8).map(|k| shown(k)).collect();
        if keys.len() > 8 {
            list.push(format!("... ({} in all)", keys.len()));
        }
        out.push(format!(
            "the footer's key-value entries are [{}], not the writer's {written:?} once each (other readers would believe the others)",
            list.join(", ")
        ));
    }
    let arrow = kv
        .iter()
        .find(|e| e.key == ARROW_SCHEMA_META_KEY)
        .and_then(|e| e.value.as_deref());
    // An entry without a value counts as another schema: readers then fall
    // back to the Parquet types.
    if !arrow.is_some_and(|a| written_arrow_schemas().iter().any(|w| w == a)) {
        out.push(
            "the footer's Arrow schema is not the one the writer writes (Arrow readers would see other types or metadata)".into(),
        );
    }
    let created_by = meta.file_metadata().created_by();
    if created_by != Some(crate::segment::CREATED_BY) {
        out.push(format!(
            "the footer says it was written by {}, not by {:?} (readers switch workarounds for other writers on it)",
            created_by.map_or("nobody".into(), shown),
            crate::segment::CREATED_BY
        ));
    }
    let sorting = crate::segment::sorting_columns();
    for (g, rg) in meta.row_groups().iter().enumerate() {
        if rg.sorting_columns().is_some_and(|s| *s != sorting) {
            out.push(format!(
                "row group {g}: declares the sort order {:?}, the writer {sorting:?} (engines could skip sorting by it)",
                rg.sorting_columns()
            ));
        }
        for c in rg.columns() {
            let name = c.column_path().string();
            // parquet-rs starts a chunk at its dictionary page offset when
            // there is one; Arrow C++ (pyarrow) at the lower of the two. A
            // dictionary offset past the data page offset gives the two
            // readers different bytes to decode.
            if c.dictionary_page_offset()
                .is_some_and(|d| d >= c.data_page_offset())
            {
                out.push(format!(
                    "row group {g}: column {name} starts at its dictionary page offset {:?} for some readers, at its data page offset {} for others",
                    c.dictionary_page_offset(),
                    c.data_page_offset()
                ));
            }
            if c.file_path().is_some() {
                out.push(format!(
                    "row group {g}: column {name} names another file for its data (readers honouring it would read that)"
                ));
            }
            if c.bloom_filter_offset().is_some() != c.bloom_filter_length().is_some() {
                out.push(format!(
                    "row group {g}: column {name} has a bloom filter offset without its length, or a length without its offset"
                ));
            }
            if c.statistics()
                .and_then(|st| st.distinct_count_opt())
                .is_some()
            {
                out.push(format!(
                    "row group {g}: column {name} declares a distinct count, which the writer never writes (planners would believe it)"
                ));
            }
        }
    }
    out
}

/// One message per column chunk whose page headers would not read the same
/// for every reader ([`crate::page_headers`]).
fn page_problems(bytes: &[u8], meta: &ParquetMetaData) -> Vec<String> {
    let mut out = Vec::new();
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for c in rg.columns() {
            if let Some(p) = crate::page_headers::chunk_problem(bytes, c) {
                out.push(format!(
                    "row group {g}: column {}: {p} (other readers would decode other pages)",
                    c.column_path().string()
                ));
            }
        }
    }
    out
}

/// A footer string as a finding shows it: quoted, cut to 64 characters
/// (the key holder can make one as long as the file).
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    match cut.len() < s.len() {
        true => format!("{cut:?}..."),
        false => format!("{cut:?}"),
    }
}

/// The embedded Arrow schema as the segment writer writes it: of
/// [`segment_schema`], and of its form before erasure (`salt` required).
fn written_arrow_schemas() -> &'static [String; 2] {
    static WRITTEN: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    WRITTEN.get_or_init(|| {
        let now = segment_schema();
        let before: Vec<FieldRef> = now
            .fields()
            .iter()
            .map(|f| match f.name() == col::SALT {
                true => Arc::new(f.as_ref().clone().with_nullable(false)),
                false => f.clone(),
            })
            .collect();
        [
            encode_arrow_schema(&now),
            encode_arrow_schema(&Schema::new_with_metadata(before, now.metadata().clone())),
        ]
    })
}

/// `st`, to be written with the deprecated `min`/`max` fields as well.
pub(crate) fn with_deprecated_min_max(st: Statistics) -> Statistics {
    match st {
        Statistics::Boolean(v) => Statistics::Boolean(v.with_backwards_compatible_min_max(true)),
        Statistics::Int32(v) => Statistics::Int32(v.with_backwards_compatible_min_max(true)),
        Statistics::Int64(v) => Statistics::Int64(v.with_backwards_compatible_min_max(true)),
        Statistics::Int96(v) => Statistics::Int96(v.with_backwards_compatible_min_max(true)),
        Statistics::Float(v) => Statistics::Float(v.with_backwards_compatible_min_max(true)),
        Statistics::Double(v) => Statistics::Double(v.with_backwards_compatible_min_max(true)),
        Statistics::ByteArray(v) => {
            Statistics::ByteArray(v.with_backwards_compatible_min_max(true))
        }
        Statistics::FixedLenByteArray(v) => {
            Statistics::FixedLenByteArray(v.with_backwards_compatible_min_max(true))
        }
    }
}

/// The statistics and bloom filters of one segment file, checked against
/// its rows as a reader decodes them: each row group's batches shown to
/// [`PruningCheck::observe`] with that group's index (any projection
/// holding the checked columns). `verify` decodes every column of every row
/// anyway; a second reader of the checked columns was a few percent of its
/// CPU. Which group a row is in must come from the reader of that group
/// alone: the footer's row counts are the attacker's to change (declaring
/// 16,383 and 16,385 rows for two groups of 16,384 moves a row past the
/// first group's statistics without touching a page).
pub struct PruningCheck {
    meta: Arc<ParquetMetaData>,
    /// Whether the footer re-encodes to itself ([`footer_is_canonical`]).
    canonical: bool,
    /// Footer fields the writer never writes so ([`unwritten_fields`]).
    unwritten: Vec<String>,
    /// Per row group: the checked columns and what their rows hold.
    groups: Vec<GroupCheck>,
    error: Option<SegmentError>,
}

/// The checked columns of one row group.
struct GroupCheck {
    /// Leaf column indexes (a segment's schema is flat: field indexes too).
    leaves: Vec<usize>,
    blooms: Vec<Option<Sbbf>>,
    seen: Vec<Seen>,
    /// Rows decoded from the group's pages, with statistics or not: a group
    /// stripped of them still must not declare fewer rows than it holds
    /// (readers that trust the count would drop the rest).
    rows: u64,
}

impl PruningCheck {
    /// Reads the footer and bloom filters of `bytes`.
    pub fn new(bytes: &Bytes) -> Result<Self, SegmentError> {
        let meta = crate::parquet_input::load(bytes)?.metadata().clone();
        let mut groups = Vec::with_capacity(meta.num_row_groups());
        for rg in meta.row_groups() {
            // Columns with statistics or a bloom filter, whatever their type:
            // the writer gives none to the hash and salt columns, but a
            // forged footer may, and outside tools would prune by them.
            let leaves: Vec<usize> = (0..rg.num_columns())
                .filter(|&c| {
                    let cc = rg.column(c);
                    cc.statistics().is_some() || cc.bloom_filter_offset().is_some()
                })
                .collect();
            let blooms = leaves
                .iter()
                .map(|&c| Sbbf::read_from_column_chunk(rg.column(c), bytes).map_err(pq))
                .collect::<Result<_, _>>()?;
            let seen = leaves.iter().map(|_| Seen::default()).collect();
            groups.push(GroupCheck {
                leaves,
                blooms,
                seen,
                rows: 0,
            });
        }
        Ok(PruningCheck {
            canonical: footer_is_canonical(bytes)? && schema_is_as_written(&meta),
            unwritten: unwritten_fields(&meta)
                .into_iter()
                .chain(page_problems(bytes, &meta))
                .collect(),
            meta,
            groups,
            error: None,
        })
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
        let (Some(rg), Some(g)) = (
            self.meta.row_groups().get(group),
            self.groups.get_mut(group),
        ) else {
            return Err(SegmentError::Format(format!("no row group {group}")));
        };
        g.rows += part.num_rows() as u64;
        for (k, s) in g.seen.iter_mut().enumerate() {
            let name = rg.column(g.leaves[k]).column_path().string();
            let a = part
                .column_by_name(&name)
                .ok_or_else(|| SegmentError::Format(format!("column {name} was not decoded")))?;
            s.nulls += a.null_count() as u64;
            let bloom = g.blooms[k].as_ref();
            if let Some(a) = a.as_any().downcast_ref::<StringArray>() {
                s.strings(a.iter().flatten(), bloom);
            } else if let Some(a) = a.as_any().downcast_ref::<StringViewArray>() {
                s.strings(a.iter().flatten(), bloom);
            } else if let Some(a) = a.as_any().downcast_ref::<Int64Array>() {
                s.ints(a.iter().flatten(), bloom);
            } else if let Some(a) = a.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                s.ints(a.iter().flatten(), bloom);
            } else if let Some(a) = a.as_any().downcast_ref::<FixedSizeBinaryArray>() {
                for v in a.iter().flatten() {
                    s.bytes(v);
                    if s.not_in_bloom.is_none() && bloom.is_some_and(|b| !b.check(v)) {
                        s.not_in_bloom = Some(hex::encode(v));
                    }
                }
            } else {
                return Err(SegmentError::Format(format!(
                    "column {name} has an unexpected type {}",
                    a.data_type()
                )));
            }
        }
        Ok(())
    }

    /// One message per statistic or bloom filter that does not admit every
    /// row of its row group; `Err` when a column could not be checked.
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
        for (
            g,
            (
                rg,
                GroupCheck {
                    leaves, seen, rows, ..
                },
            ),
        ) in self.meta.row_groups().iter().zip(&self.groups).enumerate()
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
            for (k, s) in seen.iter().enumerate() {
                let cc = rg.column(leaves[k]);
                let name = cc.column_path().string();
                let mut bad = |what: String| {
                    findings.push(format!(
                        "row group {g}: {what} of column {name} disagree with its rows (queries could skip rows)"
                    ))
                };
                if let Some(v) = &s.not_in_bloom {
                    bad(format!("the bloom filter (value {v:?} not admitted)"));
                }
                let Some(st) = cc.statistics() else { continue };
                if st.null_count_opt().is_some_and(|n| n != s.nulls) {
                    bad(format!(
                        "null count {:?} (nulls read: {})",
                        st.null_count_opt(),
                        s.nulls
                    ));
                }
                let as_i64 = |b: &[u8]| <[u8; 8]>::try_from(b).ok().map(i64::from_le_bytes);
                let (min, max) = (st.min_bytes_opt(), st.max_bytes_opt());
                // A bound marked exact must be the rows' own: readers answer
                // min() and max() from it without reading a row.
                let (min_exact, max_exact) = (st.min_is_exact(), st.max_is_exact());
                let wrong = match cc.column_type() {
                    PhysicalType::INT64 => {
                        let lo = min.map(|b| as_i64(b).zip(s.min_i).is_none_or(|(m, v)| m <= v));
                        let hi = max.map(|b| as_i64(b).zip(s.max_i).is_none_or(|(m, v)| m >= v));
                        let malformed = min.is_some_and(|b| as_i64(b).is_none())
                            || max.is_some_and(|b| as_i64(b).is_none());
                        let inexact =
                            (min_exact && min.is_some() && min.and_then(as_i64) != s.min_i)
                                || (max_exact && max.is_some() && max.and_then(as_i64) != s.max_i);
                        malformed || lo == Some(false) || hi == Some(false) || inexact
                    }
                    _ => {
                        let lo = min.zip(s.min_b.as_deref()).is_none_or(|(m, v)| m <= v);
                        let hi = max.zip(s.max_b.as_deref()).is_none_or(|(m, v)| m >= v);
                        let inexact = (min_exact && min.is_some() && min != s.min_b.as_deref())
                            || (max_exact && max.is_some() && max != s.max_b.as_deref());
                        !lo || !hi || inexact
                    }
                };
                if wrong {
                    bad("min/max statistics".into());
                }
            }
        }
        Ok(findings)
    }
}
