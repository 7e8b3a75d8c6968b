//! The footer as the segment writer writes it.
//!
//! Readers believe different footer fields: parquet-rs ignores the
//! deprecated `min`/`max` once `min_value` or `max_value` is set, DuckDB takes
//! each bound from whichever is there, pyarrow takes the deprecated ones when
//! `column_orders` is missing, and fields that re-encode as they are
//! (key-value entries, the embedded Arrow schema, the sort order, the
//! writer's name, layout fields, summaries) are each read by some reader for
//! something. `verify` holds the footer of a re-sealed segment to what the
//! writer writes: it must re-encode to itself ([`footer_is_canonical`]), its
//! Parquet schema must be the writer's ([`schema_is_as_written`]), fields that
//! re-encode whatever they say must be the writer's ([`unwritten_fields`]),
//! and its summaries must be its pages' ([`chunk_summary_problem`],
//! [`row_group_summaries`]). What the statistics say about the rows is
//! checked in [`crate::pruning`].

use std::sync::Arc;

use arrow_schema::{FieldRef, Schema};
use bytes::Bytes;
use parquet::arrow::{ARROW_SCHEMA_META_KEY, ArrowSchemaConverter, encode_arrow_schema};
use parquet::file::metadata::{
    ParquetMetaData, ParquetMetaDataOptions, ParquetMetaDataReader, ParquetMetaDataWriter,
};
use parquet::file::statistics::Statistics;

use crate::segment::SegmentError;
use tracevault_schemas::rows::{col, segment_schema};

fn pq<E: std::fmt::Display>(e: E) -> SegmentError {
    SegmentError::Format(e.to_string())
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
pub(crate) fn footer_is_canonical(
    bytes: &Bytes,
    meta: &ParquetMetaData,
) -> Result<bool, SegmentError> {
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
    let mut again = Vec::with_capacity(written.len());
    ParquetMetaDataWriter::new(&mut again, meta)
        .finish()
        .map_err(pq)?;
    Ok(again == written)
}

/// The metadata of `bytes` as the writer had it when it wrote the footer
/// (see [`footer_is_canonical`]).
pub(crate) fn metadata_as_written(bytes: &Bytes) -> Result<ParquetMetaData, SegmentError> {
    crate::segment::footer_parses_safely(bytes)?;
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
pub(crate) fn schema_is_as_written(meta: &ParquetMetaData) -> bool {
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
pub(crate) fn unwritten_fields(meta: &ParquetMetaData) -> Vec<String> {
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

/// Where a column chunk's summary in the footer (read as written, encoding
/// statistics whole) disagrees with the walk of its pages: the encodings it
/// lists (the pages' and RLE, which the writer always adds), its page
/// encoding statistics, and its unpacked size. Readers choose decoders and
/// size buffers by them (pyarrow reads a chunk as dictionary-encoded when
/// the statistics say every data page is).
pub(crate) fn chunk_summary_problem(
    c: &parquet::file::metadata::ColumnChunkMetaData,
    pages: &crate::page_headers::ChunkPages,
) -> Option<String> {
    const RLE: i32 = 3;
    let mut used: Vec<i32> = pages.encodings.iter().map(|&(_, e)| e).collect();
    used.push(RLE);
    used.sort_unstable();
    used.dedup();
    let mut listed: Vec<i32> = c.encodings().map(|e| e as i32).collect();
    listed.sort_unstable();
    if listed != used {
        return Some(format!(
            "the footer lists encodings {listed:?}, its pages use {used:?}"
        ));
    }
    if let Some(stats) = c.page_encoding_stats() {
        let mut declared: Vec<(i32, i32, i32)> = stats
            .iter()
            .map(|s| (s.page_type as i32, s.encoding as i32, s.count))
            .collect();
        declared.sort_unstable();
        let mut counted: Vec<(i32, i32, i32)> = Vec::new();
        for &(ty, e) in &pages.encodings {
            match counted.iter_mut().find(|(t, x, _)| (*t, *x) == (ty, e)) {
                Some(entry) => entry.2 += 1,
                None => counted.push((ty, e, 1)),
            }
        }
        counted.sort_unstable();
        if declared != counted {
            return Some(format!(
                "the footer counts pages by encoding as {declared:?}, its pages are {counted:?}"
            ));
        }
    }
    if c.uncompressed_size() != pages.unpacked {
        return Some(format!(
            "the footer declares {} bytes unpacked, its pages {}",
            c.uncompressed_size(),
            pages.unpacked
        ));
    }
    None
}

/// Where a row group's summary in the footer disagrees with its columns':
/// its ordinal, its offset (the first chunk's start) and its total sizes.
/// Readers that split a file among workers assign row groups by them.
pub(crate) fn row_group_summaries(meta: &ParquetMetaData) -> Vec<String> {
    let mut out = Vec::new();
    for (g, rg) in meta.row_groups().iter().enumerate() {
        let first = rg
            .columns()
            .first()
            .map(|c| c.dictionary_page_offset().unwrap_or(c.data_page_offset()));
        let unpacked: i64 = rg.columns().iter().map(|c| c.uncompressed_size()).sum();
        let packed: i64 = rg.columns().iter().map(|c| c.compressed_size()).sum();
        let wrong = rg.ordinal().is_some_and(|o| i64::from(o) != g as i64)
            || rg.file_offset().is_some_and(|o| Some(o) != first)
            || rg.total_byte_size() != unpacked
            || rg.compressed_size() != packed
            || rg.columns().iter().any(|c| c.file_offset() != 0);
        if wrong {
            out.push(format!(
                "row group {g}: its ordinal, offset or sizes are not its columns' (readers splitting the file by them could skip it)"
            ));
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
