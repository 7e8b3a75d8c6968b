//! What query engines skip by must agree with the rows.
//!
//! A SQL scan (DataFusion, DuckDB, ...) skips a row group when its footer
//! statistics (min, max, null count) or a bloom filter say a filter cannot
//! match. Those live in the footer, outside the rows that `verify` checks
//! against the log, so a segment re-signed by the key holder could keep
//! every row intact yet hide some of them from queries with forged
//! statistics. This module checks, per row group, that every statistic and
//! bloom filter admits every stored value. (Page indexes are not checked:
//! no reader of ours uses them.)

use arrow_array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Type as PhysicalType;
use parquet::bloom_filter::Sbbf;

use crate::segment::SegmentError;

fn pq<E: std::fmt::Display>(e: E) -> SegmentError {
    SegmentError::Format(e.to_string())
}

/// What one column chunk actually holds.
#[derive(Default)]
struct Seen {
    rows: u64,
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
/// segment file) against its rows. Returns one message per disagreement;
/// `Err` when the file cannot be read.
pub fn check_pruning_metadata(bytes: &Bytes) -> Result<Vec<String>, SegmentError> {
    let meta = crate::parquet_input::load(bytes)?;
    let schema = meta.parquet_schema();
    let mut findings = Vec::new();
    for (g, rg) in meta.metadata().row_groups().iter().enumerate() {
        // Columns with statistics or a bloom filter, of the types we store
        // as Int64 (integers, timestamps) or byte arrays (strings).
        let leaves: Vec<usize> = (0..rg.num_columns())
            .filter(|&c| {
                let cc = rg.column(c);
                (cc.statistics().is_some() || cc.bloom_filter_offset().is_some())
                    && matches!(
                        cc.column_type(),
                        PhysicalType::INT64 | PhysicalType::BYTE_ARRAY
                    )
            })
            .collect();
        if leaves.is_empty() {
            continue;
        }
        let blooms: Vec<Option<Sbbf>> = leaves
            .iter()
            .map(|&c| Sbbf::read_from_column_chunk(rg.column(c), bytes).map_err(pq))
            .collect::<Result<_, _>>()?;
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
                .with_row_groups(vec![g])
                .with_projection(ProjectionMask::leaves(schema, leaves.iter().copied()))
                .with_batch_size(8192)
                .build()
                .map_err(pq)?;
        let mut seen: Vec<Seen> = leaves.iter().map(|_| Seen::default()).collect();
        for batch in reader {
            let batch = batch.map_err(pq)?;
            for (k, s) in seen.iter_mut().enumerate() {
                let a = batch.column(k);
                s.rows += a.len() as u64;
                s.nulls += a.null_count() as u64;
                let bloom = blooms[k].as_ref();
                if let Some(a) = a.as_any().downcast_ref::<StringArray>() {
                    for v in a.iter().flatten() {
                        s.bytes(v.as_bytes());
                        if s.not_in_bloom.is_none() && bloom.is_some_and(|b| !b.check(v)) {
                            s.not_in_bloom = Some(v.to_string());
                        }
                    }
                } else if let Some(a) = a.as_any().downcast_ref::<Int64Array>() {
                    for v in a.iter().flatten() {
                        s.int(v);
                        if s.not_in_bloom.is_none() && bloom.is_some_and(|b| !b.check(&v)) {
                            s.not_in_bloom = Some(v.to_string());
                        }
                    }
                } else if let Some(a) = a.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                    for v in a.iter().flatten() {
                        s.int(v);
                        if s.not_in_bloom.is_none() && bloom.is_some_and(|b| !b.check(&v)) {
                            s.not_in_bloom = Some(v.to_string());
                        }
                    }
                } else {
                    return Err(SegmentError::Format(format!(
                        "column {} has an unexpected type {}",
                        rg.column(leaves[k]).column_path(),
                        a.data_type()
                    )));
                }
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
            if s.rows != rg.num_rows().max(0) as u64 {
                bad(format!(
                    "row count {} (rows read: {})",
                    rg.num_rows(),
                    s.rows
                ));
            }
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
            let wrong = match cc.column_type() {
                PhysicalType::INT64 => {
                    let lo = min.map(|b| as_i64(b).zip(s.min_i).is_none_or(|(m, v)| m <= v));
                    let hi = max.map(|b| as_i64(b).zip(s.max_i).is_none_or(|(m, v)| m >= v));
                    let malformed = min.is_some_and(|b| as_i64(b).is_none())
                        || max.is_some_and(|b| as_i64(b).is_none());
                    malformed || lo == Some(false) || hi == Some(false)
                }
                _ => {
                    let lo = min.zip(s.min_b.as_deref()).is_none_or(|(m, v)| m <= v);
                    let hi = max.zip(s.max_b.as_deref()).is_none_or(|(m, v)| m >= v);
                    !lo || !hi
                }
            };
            if wrong {
                bad("min/max statistics".into());
            }
        }
    }
    Ok(findings)
}
