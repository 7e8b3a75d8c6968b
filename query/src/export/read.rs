//! Random access to a bundle's rows without checking anything, for readers
//! such as `tracevault replay` that show a few rows at a time (and verify
//! the bundle separately, with [`super::verify_bundle`]).
//!
//! Opening reads only the tar headers and the Parquet footer; the row keys
//! are a projection of six small columns; rows are decoded page by page
//! through a row selection; `proofs.jsonl` lines are parsed only for the
//! rows asked for.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

use arrow::array::{Array, StringArray, TimestampMicrosecondArray, UInt64Array};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReaderBuilder, RowSelection,
};
use serde::Deserialize;
use tracevault_vault::record::{Entry, Hash};

use super::ExportError;
use super::verify::{member_ranges, rows_of};

/// What locates and orders one row: enough to build a timeline without
/// decoding any payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKey {
    /// Position of the row in `events.parquet`.
    pub row: u64,
    /// Log index.
    pub idx: u64,
    /// Session id (as shipped: masked when the profile masks it).
    pub session_id: String,
    /// Position within the session.
    pub session_seq: u64,
    /// Wire kind.
    pub kind: String,
    /// Writer's timestamp (µs), when it sent one.
    pub ts: Option<i64>,
    /// Server receive time (µs).
    pub received_at: i64,
}

/// A bundle opened for reading rows on demand.
pub struct BundleReader {
    file: Bytes,
    proofs: Range<usize>,
    parquet: Bytes,
    meta: ArrowReaderMetadata,
    /// First row of each row group, and the total after the last.
    group_starts: Vec<u64>,
    ns: String,
    export_id: String,
    proof_lines: OnceLock<Vec<Range<usize>>>,
    withheld_by_index: OnceLock<HashMap<u64, (Vec<String>, bool)>>,
}

fn unreadable(what: &str) -> impl Fn(parquet::errors::ParquetError) -> ExportError + '_ {
    move |e| ExportError::Unreadable(format!("{what}: {e}"))
}

/// The part of a `proofs.jsonl` line a reader needs. `withheld` is read as
/// `verify_bundle` reads it (its string elements), so both agree on what
/// was withheld.
#[derive(Deserialize)]
struct ProofLite {
    index: u64,
    #[serde(default)]
    withheld: serde_json::Value,
    #[serde(default)]
    erased: bool,
}

impl ProofLite {
    /// The fields withheld, and whether the row was erased.
    fn marks(self) -> (Vec<String>, bool) {
        let erased = self.erased;
        let withheld = match self.withheld {
            serde_json::Value::Array(a) => a
                .into_iter()
                .filter_map(|v| match v {
                    serde_json::Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        (withheld, erased)
    }
}

impl BundleReader {
    /// Opens `file` (a whole bundle): its tar headers, manifest and Parquet
    /// footer with page index. Nothing is verified.
    pub fn open(file: Bytes) -> Result<BundleReader, ExportError> {
        let (members, _) = member_ranges(&file)?;
        let get = |m: &str| {
            members
                .get(m)
                .cloned()
                .ok_or_else(|| ExportError::Unreadable(format!("member {m} missing")))
        };
        let manifest: serde_json::Value = serde_json::from_slice(&file[get("manifest.json")?])
            .map_err(|e| ExportError::Unreadable(format!("manifest.json: {e}")))?;
        let parquet = file.slice(get("events.parquet")?);
        // No page index: pages are read in sequence, exactly as
        // `verify_bundle` reads them, so an offset index pointing elsewhere
        // cannot show rows that were never verified.
        let meta = tracevault_vault::parquet_input::load(&parquet)
            .map_err(|e| ExportError::Unreadable(format!("events.parquet: {e}")))?;
        let mut group_starts = vec![0u64];
        for rg in meta.metadata().row_groups() {
            let last = group_starts.last().copied().unwrap_or_default();
            let next = u64::try_from(rg.num_rows())
                .ok()
                .and_then(|n| last.checked_add(n))
                .ok_or_else(|| {
                    ExportError::Unreadable("events.parquet: impossible row counts".into())
                })?;
            group_starts.push(next);
        }
        Ok(BundleReader {
            proofs: get("proofs.jsonl")?,
            parquet,
            meta,
            group_starts,
            ns: manifest["ns"].as_str().unwrap_or_default().to_string(),
            export_id: manifest["export_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            file,
            proof_lines: OnceLock::new(),
            withheld_by_index: OnceLock::new(),
        })
    }

    /// The namespace the manifest names.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The export id the manifest names.
    pub fn export_id(&self) -> &str {
        &self.export_id
    }

    /// Rows in `events.parquet`.
    pub fn num_rows(&self) -> u64 {
        self.group_starts.last().copied().unwrap_or_default()
    }

    /// The key of every row, in file order (decodes six small columns only).
    pub fn keys(&self) -> Result<Vec<RowKey>, ExportError> {
        let cols = [
            "idx",
            "session_id",
            "session_seq",
            "kind",
            "ts",
            "received_at",
        ];
        let mask = ProjectionMask::columns(self.meta.parquet_schema(), cols);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.parquet.clone(),
            self.meta.clone(),
        )
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(unreadable("events.parquet"))?;
        // Capacity from the footer's claim, bounded: the footer is untrusted.
        let mut out = Vec::with_capacity(self.num_rows().min(1 << 20) as usize);
        for b in reader {
            let b = b.map_err(|e| ExportError::Unreadable(format!("events.parquet: {e}")))?;
            let col = |n: &str| {
                b.column_by_name(n).ok_or_else(|| {
                    ExportError::Unreadable(format!("events.parquet: column {n} missing"))
                })
            };
            let mistyped =
                |n: &str| ExportError::Unreadable(format!("events.parquet: column {n} mistyped"));
            let u = |n: &str| {
                col(n)?
                    .as_any()
                    .downcast_ref::<UInt64Array>()
                    .ok_or_else(|| mistyped(n))
            };
            let s = |n: &str| {
                col(n)?
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| mistyped(n))
            };
            let t = |n: &str| {
                col(n)?
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .ok_or_else(|| mistyped(n))
            };
            let (idx, sid, seq, kind, ts, rec) = (
                u("idx")?,
                s("session_id")?,
                u("session_seq")?,
                s("kind")?,
                t("ts")?,
                t("received_at")?,
            );
            for i in 0..b.num_rows() {
                out.push(RowKey {
                    row: out.len() as u64,
                    idx: idx.value(i),
                    session_id: if sid.is_null(i) {
                        String::new()
                    } else {
                        sid.value(i).to_string()
                    },
                    session_seq: seq.value(i),
                    kind: kind.value(i).to_string(),
                    ts: (!ts.is_null(i)).then(|| ts.value(i)),
                    received_at: rec.value(i),
                });
            }
        }
        Ok(out)
    }

    /// The rows at positions `rows` (ascending, no repeats), decoded in
    /// full: the entry as shipped (masked values as masked; salt, digests
    /// and chain hash zero) and its leaf hash. Only the row groups and pages
    /// that hold them are read.
    pub fn rows(&self, rows: &[u64]) -> Result<Vec<(Entry, Hash)>, ExportError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if rows.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ExportError::Build(
                "rows must be ascending without repeats".into(),
            ));
        }
        let total = self.num_rows();
        if let Some(&last) = rows.last().filter(|&&r| r >= total) {
            return Err(ExportError::Build(format!(
                "row {last} is past the end ({total} rows)"
            )));
        }
        // The row groups that hold a wanted row, and each wanted row's
        // position among the rows of those groups only.
        let group_of = |r: u64| self.group_starts.partition_point(|&s| s <= r) - 1;
        let mut groups: Vec<usize> = rows.iter().map(|&r| group_of(r)).collect();
        groups.dedup();
        let mut base = HashMap::new();
        let mut acc = 0u64;
        for &g in &groups {
            base.insert(g, acc);
            acc += self.group_starts[g + 1] - self.group_starts[g];
        }
        let ranges = rows.iter().map(|&r| {
            let g = group_of(r);
            let at = (base[&g] + r - self.group_starts[g]) as usize;
            at..at + 1
        });
        let selection = RowSelection::from_consecutive_ranges(ranges, acc as usize);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.parquet.clone(),
            self.meta.clone(),
        )
        .with_row_groups(groups)
        .with_row_selection(selection)
        .with_batch_size(rows.len().clamp(1, 8192))
        .build()
        .map_err(unreadable("events.parquet"))?;
        let mut out = Vec::with_capacity(rows.len());
        for b in reader {
            let b = b.map_err(|e| ExportError::Unreadable(format!("events.parquet: {e}")))?;
            for r in rows_of(&b).map_err(ExportError::Unreadable)? {
                out.push((r.entry, r.leaf.unwrap_or_default()));
            }
        }
        if out.len() != rows.len() {
            return Err(ExportError::Unreadable(format!(
                "events.parquet: {} rows asked, {} read",
                rows.len(),
                out.len()
            )));
        }
        Ok(out)
    }

    /// Fields withheld (masked) from the row at position `row`, whose log
    /// index is `idx`, per its `proofs.jsonl` line. Bundles write one line
    /// per row in row order; should that not hold, every line is read once.
    pub fn withheld(&self, row: u64, idx: u64) -> Vec<String> {
        self.marks(row, idx).0
    }

    /// Whether the row at position `row` (log index `idx`) was erased
    /// under an erasure order (its `proofs.jsonl` line says so, under the
    /// manifest's signature): its values and salt are gone.
    pub fn erased(&self, row: u64, idx: u64) -> bool {
        self.marks(row, idx).1
    }

    fn marks(&self, row: u64, idx: u64) -> (Vec<String>, bool) {
        let proofs = &self.file[self.proofs.clone()];
        let lines = self.proof_lines.get_or_init(|| {
            let mut out = Vec::new();
            let mut start = 0;
            for (i, b) in proofs.iter().enumerate() {
                if *b == b'\n' {
                    out.push(start..i);
                    start = i + 1;
                }
            }
            if start < proofs.len() {
                out.push(start..proofs.len());
            }
            out
        });
        let at = lines
            .get(row as usize)
            .and_then(|r| serde_json::from_slice::<ProofLite>(&proofs[r.clone()]).ok());
        match at {
            Some(p) if p.index == idx => p.marks(),
            _ => self
                .withheld_by_index
                .get_or_init(|| {
                    lines
                        .iter()
                        .filter_map(|r| {
                            serde_json::from_slice::<ProofLite>(&proofs[r.clone()]).ok()
                        })
                        .map(|p| (p.index, p.marks()))
                        .collect()
                })
                .get(&idx)
                .cloned()
                .unwrap_or_default(),
        }
    }
}
