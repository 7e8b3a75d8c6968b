//! Parquet segments: a run of consecutive entries, sorted by `idx`, zstd
//! compressed, with a signed header in the footer key-value metadata
//! (SPEC section 5).
//!
//! The header binds the segment to the log: its index range, the chain hash
//! before and after it, and the Merkle tree size and root after it. It also
//! carries `file_sha256`: the SHA-256 of every byte of the file, with the two
//! footer values that hold the header and its signature replaced by zero
//! bytes (they cannot cover themselves). So a flipped bit anywhere, in a data
//! page, a statistic, a page index or the footer, is caught, even where it
//! would not change a decoded value. The writer first writes the file with
//! placeholders of the exact final lengths, digests it, then patches the real
//! header and signature in place.

use std::borrow::Borrow;
use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray,
    StringViewArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, FieldRef, Schema};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{
    BloomFilterPosition, EnabledStatistics, WriterProperties, WriterVersion,
};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracevault_schemas::Kind;
use tracevault_schemas::rows::{col, is_segment_schema, segment_schema};

use crate::jcs;
use crate::record::{ContentType, Entry, EntryRef, Hash};

/// Footer key holding the header (JCS JSON).
pub const HEADER_KEY: &str = "tracevault.segment.header";
/// Footer key holding the base64 Ed25519 signature over the header.
pub const SIGNATURE_KEY: &str = "tracevault.segment.signature";
/// Domain separator of header signatures, so they can never be confused with
/// checkpoint or token signatures made by the same key.
const HEADER_DOMAIN: &[u8] = b"tracevault/segment-header/v1\n";
/// Rows per Parquet row group: large enough for good compression, small enough
/// that a one-session lookup can skip most of a big segment.
pub const ROW_GROUP_ROWS: usize = 16 * 1024;

/// How a segment's pages are compressed (`[log] segment_compression`). Every
/// reader takes either: the codec is recorded per column chunk by Parquet
/// itself, so a store may hold both and a change of setting needs no
/// migration. Hashes, signatures and digests cover the decoded rows, never
/// the compressed bytes (except `file_sha256`, which covers the file as
/// written, whatever its codec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentCompression {
    /// Zstandard level 1: the smaller files (1.74x smaller than LZ4 on chat
    /// text), for 1.3-1.6x LZ4's time to encode a segment and 1.1-1.6x to
    /// decode one (`segment_codec` in docs/benchmarks.md).
    #[default]
    Zstd,
    /// LZ4 (Parquet's `LZ4_RAW`): the cheaper codec to write and to read,
    /// for servers bound by CPU rather than by storage.
    Lz4,
    /// No codec: the largest files (about twice LZ4's on chat text) and the
    /// least CPU, for stores on a compressing file system or where CPU is
    /// scarcer than storage. `verify` spends most of its time hashing then
    /// (LZ4 decompression was an eighth of its CPU).
    None,
}

impl SegmentCompression {
    fn parquet(self) -> Compression {
        match self {
            SegmentCompression::Zstd => {
                Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default())
            }
            SegmentCompression::Lz4 => Compression::LZ4_RAW,
            SegmentCompression::None => Compression::UNCOMPRESSED,
        }
    }
}

/// The signed facts about one segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    /// Format version (1).
    pub v: u32,
    /// Namespace.
    pub ns: String,
    /// First index in the segment.
    pub first: u64,
    /// Last index in the segment (inclusive).
    pub last: u64,
    /// Chain hash before `first` (hex).
    pub chain_in: String,
    /// Chain hash after `last` (hex).
    pub chain_out: String,
    /// Tree size after this segment (`last + 1`).
    pub tree_size: u64,
    /// Merkle root at `tree_size` (base64, as in checkpoints).
    pub root: String,
    /// Bytes of the file before the footer (row groups), for information.
    pub data_len: u64,
    /// SHA-256 (hex) of the whole file with the header and signature footer
    /// values zeroed (see the module docs).
    pub file_sha256: String,
    /// C2SP key id (hex) of the signing key, for precise error messages.
    pub key_id: String,
}

impl SegmentHeader {
    fn signed_bytes(&self) -> Result<Vec<u8>, SegmentError> {
        let v = serde_json::to_value(self).map_err(|e| SegmentError::Format(e.to_string()))?;
        let mut out = HEADER_DOMAIN.to_vec();
        out.extend(jcs::to_canonical_vec(&v).map_err(|e| SegmentError::Format(e.to_string()))?);
        Ok(out)
    }

    /// The object name this header implies.
    pub fn object_name(&self) -> String {
        segment_file_name(self.first, self.last)
    }
}

/// `{first:020}-{last:020}.parquet`: the name a segment is written under.
pub fn segment_file_name(first: u64, last: u64) -> String {
    segment_file_name_gen(first, last, 0)
}

/// The name of generation `gen` of the segment `first..=last`: generation 0
/// is `{first:020}-{last:020}.parquet`; a segment rewritten in place (an
/// erasure) is written create-only as the next generation,
/// `{first:020}-{last:020}-e{gen:04}.parquet` (at least four digits), and
/// the older one is deleted
/// after it. Readers take the highest generation of a range.
pub fn segment_file_name_gen(first: u64, last: u64, generation: u32) -> String {
    match generation {
        0 => format!("{first:020}-{last:020}.parquet"),
        g => format!("{first:020}-{last:020}-e{g:04}.parquet"),
    }
}

/// Parses a segment file name back into `(first, last)`.
pub fn parse_segment_file_name(name: &str) -> Option<(u64, u64)> {
    parse_segment_name(name).map(|(a, b, _)| (a, b))
}

/// Parses a segment file name back into `(first, last, generation)`.
pub fn parse_segment_name(name: &str) -> Option<(u64, u64, u32)> {
    let stem = name.strip_suffix(".parquet")?;
    let (a, rest) = stem.split_once('-')?;
    let (b, generation) = match rest.split_once("-e") {
        None => (rest, 0),
        Some((b, g)) => {
            // Exactly one spelling per generation, so two names never hold
            // the same generation of one range.
            let g_num: u32 = g.parse().ok()?;
            if g_num == 0 || g != format!("{g_num:04}") {
                return None;
            }
            (b, g_num)
        }
    };
    if a.len() != 20 || b.len() != 20 || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?, generation))
}

/// Segment encoding and decoding failures.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Parquet or Arrow failed.
    #[error("parquet: {0}")]
    Parquet(String),
    /// The file is readable but not a valid segment.
    #[error("{0}")]
    Format(String),
    /// Nothing to write.
    #[error("a segment needs at least one entry")]
    Empty,
}

impl From<crate::parquet_input::InputError> for SegmentError {
    fn from(e: crate::parquet_input::InputError) -> Self {
        match e {
            crate::parquet_input::InputError::Parquet(e) => pq(e),
            e => SegmentError::Format(e.to_string()),
        }
    }
}

fn pq<E: std::fmt::Display>(e: E) -> SegmentError {
    SegmentError::Parquet(e.to_string())
}

/// What the writer knows about the tree after the segment.
pub struct SegmentSeal<'a> {
    /// Chain hash before the first entry.
    pub chain_in: Hash,
    /// Merkle root after the last entry.
    pub root: Hash,
    /// C2SP key id of `key`.
    pub key_id: [u8; 4],
    /// The log key.
    pub key: &'a SigningKey,
}

/// The 32-byte columns of uniformly random bytes (SHA-256 outputs and
/// salts), stored uncompressed whatever the segment's codec.
pub const RANDOM_COLUMNS: [&str; 5] = [
    col::LEAF_HASH,
    col::SALT,
    col::CONTENT_DIGEST,
    col::ATTRIBUTES_DIGEST,
    col::CHAIN_HASH,
];

/// The footer's `created_by`: readers switch workarounds for known writers'
/// bugs on it, so `verify` refuses any other.
pub(crate) const CREATED_BY: &str = "tracevault";

/// The order every row group declares: by `idx`, ascending (rows are
/// appended in log order). `verify` refuses any other declaration.
pub(crate) fn sorting_columns() -> Vec<SortingColumn> {
    vec![SortingColumn {
        column_idx: 1,
        descending: false,
        nulls_first: false,
    }]
}

fn writer_props(compression: SegmentCompression) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(compression.parquet())
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_bloom_filter_position(BloomFilterPosition::AfterRowGroup)
        .set_sorting_columns(Some(sorting_columns()))
        .set_created_by(CREATED_BY.to_string());
    for c in [col::SESSION_ID, col::EVENT_ID, col::TRACE_ID] {
        b = b.set_column_bloom_filter_enabled(ColumnPath::from(c), true);
    }
    // Payloads, hashes and salts are unique per row: a dictionary never pays
    // off and min/max statistics never prune anything, so skip both (they were
    // a large share of encode time). Pruning columns (ns, idx, session_id,
    // kind, ts, received_at, ...) keep page statistics. Without a dictionary
    // a version 2 writer would fall back to DELTA_BYTE_ARRAY, which looks for
    // a prefix shared with the previous value: random hashes and payloads
    // share none, and every reader (`verify` first) then rebuilds each value
    // by copying. PLAIN stores them as they are.
    for c in [col::CONTENT, col::ATTRIBUTES]
        .into_iter()
        .chain(RANDOM_COLUMNS)
    {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_encoding(ColumnPath::from(c), Encoding::PLAIN)
            .set_column_statistics_enabled(ColumnPath::from(c), EnabledStatistics::None);
    }
    // Hashes and salts are uniformly random: no codec shrinks them, and
    // running one anyway cost the writer about a tenth of its compression
    // time (and every reader a pass to undo it). Stored as they are.
    for c in RANDOM_COLUMNS {
        b = b.set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED);
    }
    // Indexes and receive times rise row by row: a dictionary of all of
    // them costs more than their deltas, which pack into a few bits.
    for c in [col::IDX, col::RECEIVED_AT] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    b.build()
}

/// Byte lengths of an entry's string columns, in the order
/// [`entries_to_batch`] takes its builders: `ns`, `session_id`, `kind`,
/// `ingested_by`, then the nine optional columns.
fn string_lengths(e: &Entry) -> [usize; 13] {
    let len = |v: &Option<String>| v.as_ref().map_or(0, String::len);
    [
        e.ns.len(),
        e.session_id.len(),
        e.kind.as_str().len(),
        e.ingested_by.len(),
        len(&e.event_id),
        len(&e.trace_id),
        len(&e.span_id),
        len(&e.parent_span_id),
        len(&e.name),
        len(&e.actor),
        len(&e.model),
        len(&e.content),
        len(&e.attributes),
    ]
}

/// Builds the Arrow batch of `entries` in the segment schema.
pub fn entries_to_batch<E: Borrow<Entry>>(entries: &[E]) -> Result<RecordBatch, SegmentError> {
    let n = entries.len();
    // Every string column is sized up front: grown by doubling, the content
    // and attributes columns (tens of MB per segment) were copied again at
    // each step, into memory the kernel had to hand out and zero afresh.
    let mut sizes = [0usize; 13];
    for e in entries {
        let e: &Entry = e.borrow();
        for (size, len) in sizes.iter_mut().zip(string_lengths(e)) {
            *size += len;
        }
    }
    let mut builders = sizes
        .map(|bytes| StringBuilder::with_capacity(n, bytes))
        .into_iter();
    let mut next = || builders.next().unwrap_or_default();
    let (mut ns, mut session_id, mut kind, mut ingested_by) = (next(), next(), next(), next());
    let mut opt: Vec<StringBuilder> = (0..9).map(|_| next()).collect();
    let mut content_type = StringBuilder::with_capacity(n, n * 4);
    let mut idx = Int64Builder::with_capacity(n);
    let mut session_seq = Int64Builder::with_capacity(n);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut received_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut leaf = FixedSizeBinaryBuilder::with_capacity(n, 32);
    let mut salt = FixedSizeBinaryBuilder::with_capacity(n, 32);
    let mut cd = FixedSizeBinaryBuilder::with_capacity(n, 32);
    let mut ad = FixedSizeBinaryBuilder::with_capacity(n, 32);
    let mut chain = FixedSizeBinaryBuilder::with_capacity(n, 32);
    let as_i64 =
        |v: u64| i64::try_from(v).map_err(|_| SegmentError::Format(format!("{v} exceeds i64")));
    for e in entries {
        let e: &Entry = e.borrow();
        ns.append_value(&e.ns);
        idx.append_value(as_i64(e.idx)?);
        session_id.append_value(&e.session_id);
        session_seq.append_value(as_i64(e.session_seq)?);
        kind.append_value(e.kind.as_str());
        ts.append_option(e.ts);
        received_at.append_value(e.received_at);
        ingested_by.append_value(&e.ingested_by);
        let fields = [
            &e.event_id,
            &e.trace_id,
            &e.span_id,
            &e.parent_span_id,
            &e.name,
            &e.actor,
            &e.model,
            &e.content,
            &e.attributes,
        ];
        for (b, v) in opt.iter_mut().zip(fields) {
            b.append_option(v.as_deref());
        }
        leaf.append_value(e.leaf_hash).map_err(pq)?;
        content_type.append_option(e.content_type.map(ContentType::as_str));
        match &e.salt {
            Some(v) => salt.append_value(v).map_err(pq)?,
            None => salt.append_null(),
        }
        match &e.content_digest {
            Some(d) => cd.append_value(d).map_err(pq)?,
            None => cd.append_null(),
        }
        match &e.attributes_digest {
            Some(d) => ad.append_value(d).map_err(pq)?,
            None => ad.append_null(),
        }
        chain.append_value(e.chain_hash).map_err(pq)?;
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(ns.finish()),
        Arc::new(idx.finish()),
        Arc::new(session_id.finish()),
        Arc::new(session_seq.finish()),
        Arc::new(kind.finish()),
        Arc::new(ts.finish()),
        Arc::new(received_at.finish()),
        Arc::new(ingested_by.finish()),
    ];
    for mut b in opt {
        cols.push(Arc::new(b.finish()));
    }
    cols.push(Arc::new(leaf.finish()));
    cols.push(Arc::new(content_type.finish()));
    cols.push(Arc::new(salt.finish()));
    cols.push(Arc::new(cd.finish()));
    cols.push(Arc::new(ad.finish()));
    cols.push(Arc::new(chain.finish()));
    RecordBatch::try_new(segment_schema(), cols).map_err(pq)
}

/// Encodes `entries` (consecutive, sorted by index) into a signed Parquet
/// file, compressed with the default codec ([`SegmentCompression::Zstd`]).
pub fn encode<E: Borrow<Entry>>(
    entries: &[E],
    seal: &SegmentSeal<'_>,
) -> Result<(SegmentHeader, Bytes), SegmentError> {
    encode_with(entries, seal, SegmentCompression::default())
}

/// Encodes `entries` (consecutive, sorted by index) into a signed Parquet
/// file compressed with `compression`.
pub fn encode_with<E: Borrow<Entry>>(
    entries: &[E],
    seal: &SegmentSeal<'_>,
    compression: SegmentCompression,
) -> Result<(SegmentHeader, Bytes), SegmentError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Err(SegmentError::Empty);
    };
    let (first, last): (&Entry, &Entry) = (first.borrow(), last.borrow());
    let batch = entries_to_batch(entries)?;
    // Room for about twice the usual compression, so the file is rarely
    // copied into a bigger buffer on its way.
    let strings: usize = entries
        .iter()
        .map(|e| string_lengths(e.borrow()).iter().sum::<usize>())
        .sum();
    let mut w = ArrowWriter::try_new(
        Vec::with_capacity(strings / 2 + entries.len() * 200),
        segment_schema(),
        Some(writer_props(compression)),
    )
    .map_err(pq)?;
    w.write(&batch).map_err(pq)?;
    w.flush().map_err(pq)?;
    // Push the buffered bytes through, so `inner()` holds everything before the footer.
    w.sync().map_err(pq)?;
    let data_len = w.inner().len() as u64;
    let mut header = SegmentHeader {
        v: 1,
        ns: first.ns.clone(),
        first: first.idx,
        last: last.idx,
        chain_in: hex::encode(seal.chain_in),
        chain_out: hex::encode(last.chain_hash),
        tree_size: last.idx + 1,
        root: B64.encode(seal.root),
        data_len,
        file_sha256: "0".repeat(64),
        key_id: hex::encode(seal.key_id),
    };
    let header_text = |h: &SegmentHeader| -> Result<String, SegmentError> {
        jcs::to_canonical_string(&serde_json::to_value(h).map_err(pq)?).map_err(pq)
    };
    // Placeholders of the exact final lengths (the digest is fixed-width hex,
    // an Ed25519 signature is always 88 base64 characters).
    let placeholder_header = header_text(&header)?;
    let placeholder_sig = B64.encode([0u8; 64]);
    w.append_key_value_metadata(KeyValue::new(
        HEADER_KEY.to_string(),
        placeholder_header.clone(),
    ));
    w.append_key_value_metadata(KeyValue::new(
        SIGNATURE_KEY.to_string(),
        placeholder_sig.clone(),
    ));
    let mut bytes = w.into_inner().map_err(pq)?;
    let footer = footer_range(&bytes)?;
    let h_at = find_in(&bytes, footer.clone(), placeholder_header.as_bytes())
        .ok_or_else(|| SegmentError::Format("header placeholder not found in the footer".into()))?;
    let s_at = find_in(&bytes, footer, placeholder_sig.as_bytes()).ok_or_else(|| {
        SegmentError::Format("signature placeholder not found in the footer".into())
    })?;
    let holes = [
        (h_at, placeholder_header.len()),
        (s_at, placeholder_sig.len()),
    ];
    let digest = digest_with_holes(&bytes, &holes)
        .ok_or_else(|| SegmentError::Format("footer placeholders overlap".into()))?;
    header.file_sha256 = hex::encode(digest);
    let real_header = header_text(&header)?;
    let sig = B64.encode(seal.key.sign(&header.signed_bytes()?).to_bytes());
    if real_header.len() != placeholder_header.len() || sig.len() != placeholder_sig.len() {
        return Err(SegmentError::Format("footer values changed length".into()));
    }
    bytes[h_at..h_at + real_header.len()].copy_from_slice(real_header.as_bytes());
    bytes[s_at..s_at + sig.len()].copy_from_slice(sig.as_bytes());
    let bytes = Bytes::from(bytes);
    // Check the result as a verifier will, so a patch that landed anywhere but
    // the footer values can never be published. The digest above skipped
    // exactly `holes` and nothing outside them has changed since, so a
    // verifier that finds its holes at the same places computes that same
    // digest: comparing the places spares hashing the file a second time.
    let (read_back, read_sig) = decode_header(&bytes)?;
    if read_back != header
        || !verify_header_signature(&read_back, &read_sig, &seal.key.verifying_key())
        || footer_holes(&read_back, &read_sig, &bytes) != Some(holes)
    {
        return Err(SegmentError::Format(
            "the sealed segment does not verify".into(),
        ));
    }
    Ok((header, bytes))
}

/// The byte range of the Parquet footer (thrift metadata) of a file.
fn footer_range(file: &[u8]) -> Result<std::ops::Range<usize>, SegmentError> {
    let n = file.len();
    if n < 12 || &file[n - 4..] != b"PAR1" {
        return Err(SegmentError::Format("not a Parquet file".into()));
    }
    let len = u32::from_le_bytes([file[n - 8], file[n - 7], file[n - 6], file[n - 5]]) as usize;
    let start = (n - 8)
        .checked_sub(len)
        .ok_or_else(|| SegmentError::Format("footer length out of range".into()))?;
    Ok(start..n - 8)
}

fn find_in(file: &[u8], range: std::ops::Range<usize>, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    file.get(range.clone())?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + range.start)
}

/// SHA-256 of `file` with each `(offset, len)` hole read as zero bytes;
/// `None` when holes overlap or leave the file (a malformed footer).
fn digest_with_holes(file: &[u8], holes: &[(usize, usize)]) -> Option<[u8; 32]> {
    let mut holes = holes.to_vec();
    holes.sort();
    let mut h = Sha256::new();
    let mut at = 0;
    for (off, len) in holes {
        h.update(file.get(at..off)?);
        h.update(vec![0u8; len]);
        at = off.checked_add(len)?;
    }
    h.update(file.get(at..)?);
    Some(h.finalize().into())
}

/// A segment file read back: header, signature and rows, not yet verified.
pub struct DecodedSegment {
    /// The header as found in the footer.
    pub header: SegmentHeader,
    /// The header signature bytes.
    pub signature: Vec<u8>,
    /// The rows, in file order.
    pub entries: Vec<Entry>,
}

/// Reads the footer header and signature without decoding rows.
fn read_header(kv: Option<&Vec<KeyValue>>) -> Result<(SegmentHeader, Vec<u8>), SegmentError> {
    let find = |k: &str| {
        kv.and_then(|kv| kv.iter().find(|e| e.key == k))
            .and_then(|e| e.value.clone())
    };
    let h = find(HEADER_KEY)
        .ok_or_else(|| SegmentError::Format("footer has no segment header".into()))?;
    let s = find(SIGNATURE_KEY)
        .ok_or_else(|| SegmentError::Format("footer has no header signature".into()))?;
    let header: SegmentHeader = serde_json::from_str(&h)
        .map_err(|e| SegmentError::Format(format!("segment header: {e}")))?;
    let signature = B64
        .decode(s)
        .map_err(|_| SegmentError::Format("header signature is not base64".into()))?;
    Ok((header, signature))
}

/// Refuses a footer that could make parquet-rs recurse or reserve without
/// bound ([`crate::footer_shape`]) before it parses one.
pub(crate) fn footer_parses_safely(bytes: &[u8]) -> Result<(), SegmentError> {
    match crate::footer_shape::problem(bytes) {
        None => Ok(()),
        Some(p) => Err(SegmentError::Format(p)),
    }
}

/// Reads only the signed header and its signature from the footer, without
/// decoding any rows: what is left to check when data pages are damaged.
pub fn decode_header(bytes: &Bytes) -> Result<(SegmentHeader, Vec<u8>), SegmentError> {
    footer_parses_safely(bytes)?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(bytes)
        .map_err(pq)?;
    read_header(meta.file_metadata().key_value_metadata())
}

/// Whether any row of the segment may carry an `event_id`, from the footer
/// statistics alone (no row decoded): false only when every row group's
/// null count of `event_id` equals its row count. Statistics are covered
/// by the signed file digest (check it first); `verify` checks them against
/// the rows for files re-sealed by the key holder.
pub fn holds_event_ids(bytes: &Bytes) -> Result<bool, SegmentError> {
    footer_parses_safely(bytes)?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(bytes)
        .map_err(pq)?;
    for rg in meta.row_groups() {
        let Some(cc) = rg
            .columns()
            .iter()
            .find(|c| c.column_path().string() == col::EVENT_ID)
        else {
            return Ok(true);
        };
        let all_null = cc
            .statistics()
            .and_then(|st| st.null_count_opt())
            .is_some_and(|n| i64::try_from(n).ok() == Some(rg.num_rows()));
        if !all_null {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A segment file's reader metadata: loaded as every untrusted Parquet file
/// is ([`crate::parquet_input`]: no string column decoded unchecked), with
/// the columns of the segment schema.
fn segment_metadata(bytes: &Bytes) -> Result<ArrowReaderMetadata, SegmentError> {
    let meta = crate::parquet_input::load(bytes)?;
    if !is_segment_schema(meta.schema().fields()) {
        return Err(SegmentError::Format(
            "columns differ from the segment schema".into(),
        ));
    }
    Ok(meta)
}

/// Decodes a segment file batch by batch, handing each entry to `f` in file
/// order, so that memory stays bounded by one batch whatever the segment size.
/// Returns the footer header and signature.
pub fn decode_each(
    bytes: Bytes,
    mut f: impl FnMut(Entry),
) -> Result<(SegmentHeader, Vec<u8>), SegmentError> {
    decode_rows(bytes, |e| f(e.to_entry()))
}

/// As [`decode_each`], with each row borrowed from its decoded batch
/// ([`batch_rows`]) instead of copied into an owned entry.
pub fn decode_rows(
    bytes: Bytes,
    f: impl FnMut(EntryRef<'_>),
) -> Result<(SegmentHeader, Vec<u8>), SegmentError> {
    decode_batches_and_rows(bytes, |_, _| {}, f)
}

/// As [`decode_rows`], showing each decoded batch (every column, payloads
/// as string views), with the index of its row group, to `batches` before
/// its rows go to `f`: for checks of
/// whole columns ([`crate::pruning::PruningCheck`]) that would otherwise
/// decode the file again.
pub fn decode_batches_and_rows(
    bytes: Bytes,
    mut batches: impl FnMut(usize, &RecordBatch),
    mut f: impl FnMut(EntryRef<'_>),
) -> Result<(SegmentHeader, Vec<u8>), SegmentError> {
    let meta = segment_metadata(&bytes)?;
    let (header, signature) = read_header(meta.metadata().file_metadata().key_value_metadata())?;
    let meta = with_viewed_payloads(meta)?;
    // One reader per row group, so that which group a batch came from is
    // what was decoded from that group's pages, never what the footer's row
    // counts say (see `PruningCheck`).
    for g in 0..meta.metadata().num_row_groups() {
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
                .with_row_groups(vec![g])
                .with_batch_size(4096)
                .build()
                .map_err(pq)?;
        for batch in reader {
            let batch = batch.map_err(pq)?;
            batches(g, &batch);
            batch_rows(&batch, &mut f)?;
        }
    }
    Ok((header, signature))
}

/// The columns that row readers take as string views (`Utf8View`).
///
/// The payloads are nearly all of a segment's bytes. Read as plain strings,
/// each value is copied out of its decompressed page into a new buffer, which
/// the reader grows by doubling (copying it again): together 8% of `verify`'s
/// CPU. As views they point into the decompressed pages themselves
/// (UTF-8 is still validated).
const VIEWED_COLUMNS: [&str; 2] = [col::CONTENT, col::ATTRIBUTES];

/// `meta` (of a file whose schema [`is_segment_schema`] accepted) reading
/// [`VIEWED_COLUMNS`] as views. The reader wants the file's own fields back
/// (nullability and metadata included), with only the type changed.
fn with_viewed_payloads(meta: ArrowReaderMetadata) -> Result<ArrowReaderMetadata, SegmentError> {
    let fields: Vec<FieldRef> = meta
        .schema()
        .fields()
        .iter()
        .map(|f| match VIEWED_COLUMNS.contains(&f.name().as_str()) {
            true => Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View)),
            false => f.clone(),
        })
        .collect();
    let schema = Schema::new_with_metadata(fields, meta.schema().metadata().clone());
    ArrowReaderMetadata::try_new(
        meta.metadata().clone(),
        ArrowReaderOptions::new().with_schema(Arc::new(schema)),
    )
    .map_err(pq)
}

/// Decodes only the entries of session `session`, in file order: the
/// `session_id` column is read first, then only the matching rows (and the
/// pages holding them) in full. For a reader of one session among many
/// (`tracevault replay --data`); nothing is verified here. Returns how many
/// entries matched.
pub fn decode_session(
    bytes: Bytes,
    session: &str,
    mut f: impl FnMut(Entry),
) -> Result<u64, SegmentError> {
    // No page index: pages are read in sequence, as `verify` reads them.
    let meta = segment_metadata(&bytes)?;
    let only_sid = ProjectionMask::columns(meta.parquet_schema(), [col::SESSION_ID]);
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
        .with_projection(only_sid)
        .with_batch_size(8192)
        .build()
        .map_err(pq)?;
    let mut filters = Vec::new();
    let mut matched = 0u64;
    for batch in reader {
        let batch = batch.map_err(pq)?;
        let sid = column::<StringArray>(&batch, col::SESSION_ID)?;
        let hit: BooleanArray = sid.iter().map(|v| Some(v == Some(session))).collect();
        matched += hit.true_count() as u64;
        filters.push(hit);
    }
    if matched == 0 {
        return Ok(0);
    }
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, meta)
        .with_row_selection(RowSelection::from_filters(&filters))
        .with_batch_size(4096)
        .build()
        .map_err(pq)?;
    let mut buf = Vec::with_capacity(4096);
    let mut decoded = 0u64;
    for batch in reader {
        let batch = batch.map_err(pq)?;
        batch_to_entries(&batch, &mut buf)?;
        decoded += buf.len() as u64;
        buf.drain(..).for_each(&mut f);
    }
    if decoded != matched {
        return Err(SegmentError::Format(format!(
            "{matched} rows of session {session:?} found, {decoded} decoded"
        )));
    }
    Ok(matched)
}

/// Where one entry of a session is and when it happened: what a timeline
/// needs, without the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    /// Log index.
    pub idx: u64,
    /// Position within the session.
    pub session_seq: u64,
    /// Event kind.
    pub kind: Kind,
    /// Writer's timestamp (µs), when it sent one.
    pub ts: Option<i64>,
    /// Receive time (µs).
    pub received_at: i64,
}

/// The [`SessionKey`] of every entry of session `session` in a segment
/// file, in file order, decoding six small columns only. Nothing is
/// verified here.
pub fn decode_session_keys(bytes: Bytes, session: &str) -> Result<Vec<SessionKey>, SegmentError> {
    let meta = segment_metadata(&bytes)?;
    let cols = [
        col::IDX,
        col::SESSION_ID,
        col::SESSION_SEQ,
        col::KIND,
        col::TS,
        col::RECEIVED_AT,
    ];
    let mask = ProjectionMask::columns(meta.parquet_schema(), cols);
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, meta)
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(pq)?;
    let mut out = Vec::new();
    for batch in reader {
        let b = batch.map_err(pq)?;
        let sid = column::<StringArray>(&b, col::SESSION_ID)?;
        let idx = column::<Int64Array>(&b, col::IDX)?;
        let seq = column::<Int64Array>(&b, col::SESSION_SEQ)?;
        let kind = column::<StringArray>(&b, col::KIND)?;
        let ts = column::<TimestampMicrosecondArray>(&b, col::TS)?;
        let rec = column::<TimestampMicrosecondArray>(&b, col::RECEIVED_AT)?;
        for i in 0..b.num_rows() {
            if sid.is_null(i) || sid.value(i) != session {
                continue;
            }
            let k = kind.value(i);
            out.push(SessionKey {
                idx: u64::try_from(idx.value(i))
                    .map_err(|_| SegmentError::Format(format!("row {i}: negative idx")))?,
                session_seq: u64::try_from(seq.value(i))
                    .map_err(|_| SegmentError::Format(format!("row {i}: negative session_seq")))?,
                kind: Kind::parse(k)
                    .ok_or_else(|| SegmentError::Format(format!("row {i}: unknown kind {k:?}")))?,
                ts: (!ts.is_null(i)).then(|| ts.value(i)),
                received_at: rec.value(i),
            });
        }
    }
    Ok(out)
}

/// Decodes only the entries at log indices `wanted` (ascending) of a
/// segment whose first index is `first`: a segment holds `first..=last` in
/// order, so index `i` is row `i - first`, and only those rows (and the
/// pages holding them) are decoded. Each decoded entry must carry the index
/// its row stands for, else the segment is not what its name says (an
/// error). Nothing else is verified here.
pub fn decode_indices(
    bytes: Bytes,
    first: u64,
    wanted: &[u64],
    mut f: impl FnMut(Entry),
) -> Result<(), SegmentError> {
    if wanted.is_empty() {
        return Ok(());
    }
    if wanted.windows(2).any(|w| w[0] >= w[1]) || wanted[0] < first {
        return Err(SegmentError::Format(
            "wanted indices must ascend from the segment's first".into(),
        ));
    }
    let meta = segment_metadata(&bytes)?;
    let rows = meta.metadata().file_metadata().num_rows().max(0) as u64;
    if let Some(&last) = wanted.last().filter(|&&i| i - first >= rows) {
        return Err(SegmentError::Format(format!(
            "index {last} is past the segment's {rows} rows from {first}"
        )));
    }
    let ranges = wanted.iter().map(|&i| {
        let r = (i - first) as usize;
        r..r + 1
    });
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, meta)
        .with_row_selection(RowSelection::from_consecutive_ranges(ranges, rows as usize))
        .with_batch_size(4096)
        .build()
        .map_err(pq)?;
    let mut buf = Vec::with_capacity(4096);
    let mut expect = wanted.iter();
    for batch in reader {
        let batch = batch.map_err(pq)?;
        batch_to_entries(&batch, &mut buf)?;
        for e in buf.drain(..) {
            match expect.next() {
                Some(&i) if i == e.idx => f(e),
                want => {
                    return Err(SegmentError::Format(format!(
                        "row for index {want:?} holds index {}: rows out of place",
                        e.idx
                    )));
                }
            }
        }
    }
    if expect.next().is_some() {
        return Err(SegmentError::Format("fewer rows decoded than asked".into()));
    }
    Ok(())
}

/// Decodes a whole segment file.
pub fn decode(bytes: Bytes) -> Result<DecodedSegment, SegmentError> {
    let meta = segment_metadata(&bytes)?;
    let (header, signature) = read_header(meta.metadata().file_metadata().key_value_metadata())?;
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, meta)
        .with_batch_size(8192)
        .build()
        .map_err(pq)?;
    let mut entries = Vec::new();
    for batch in reader {
        let batch = batch.map_err(pq)?;
        batch_to_entries(&batch, &mut entries)?;
    }
    Ok(DecodedSegment {
        header,
        signature,
        entries,
    })
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, SegmentError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| SegmentError::Format(format!("column {name} missing or mistyped")))
}

/// A string column of a segment batch, as the reader gave it: copied into
/// its own buffer (`Utf8`) or viewed in the decoded pages (`Utf8View`, see
/// [`VIEWED_COLUMNS`]).
enum Strings<'a> {
    Copied(&'a StringArray),
    Viewed(&'a StringViewArray),
}

impl<'a> Strings<'a> {
    fn of(b: &'a RecordBatch, name: &str) -> Result<Self, SegmentError> {
        column::<StringArray>(b, name)
            .map(Strings::Copied)
            .or_else(|_| column::<StringViewArray>(b, name).map(Strings::Viewed))
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Strings::Copied(a) => (!a.is_null(i)).then(|| a.value(i)),
            Strings::Viewed(a) => (!a.is_null(i)).then(|| a.value(i)),
        }
    }
}

fn hash_at(a: &FixedSizeBinaryArray, i: usize, name: &str) -> Result<Option<Hash>, SegmentError> {
    if a.is_null(i) {
        return Ok(None);
    }
    a.value(i)
        .try_into()
        .map(Some)
        .map_err(|_| SegmentError::Format(format!("{name} is not 32 bytes")))
}

fn req<T>(v: Option<T>, name: &str, i: usize) -> Result<T, SegmentError> {
    v.ok_or_else(|| SegmentError::Format(format!("row {i}: {name} is null")))
}

/// Converts a segment batch back into entries.
pub fn batch_to_entries(b: &RecordBatch, out: &mut Vec<Entry>) -> Result<(), SegmentError> {
    out.reserve(b.num_rows());
    batch_rows(b, |e| out.push(e.to_entry()))
}

/// Hands each row of a segment batch to `f`, borrowed from the batch's
/// buffers: nothing is copied, so a reader that only checks rows (`verify`)
/// pays for no owned entries.
pub fn batch_rows(b: &RecordBatch, mut f: impl FnMut(EntryRef<'_>)) -> Result<(), SegmentError> {
    let s = |n| column::<StringArray>(b, n);
    let (ns, session_id, kind, ingested_by) = (
        s(col::NS)?,
        s(col::SESSION_ID)?,
        s(col::KIND)?,
        s(col::INGESTED_BY)?,
    );
    let idx = column::<Int64Array>(b, col::IDX)?;
    let seq = column::<Int64Array>(b, col::SESSION_SEQ)?;
    let ts = column::<TimestampMicrosecondArray>(b, col::TS)?;
    let recv = column::<TimestampMicrosecondArray>(b, col::RECEIVED_AT)?;
    let names = [
        col::EVENT_ID,
        col::TRACE_ID,
        col::SPAN_ID,
        col::PARENT_SPAN_ID,
        col::NAME,
        col::ACTOR,
        col::MODEL,
        col::CONTENT,
        col::ATTRIBUTES,
        col::CONTENT_TYPE,
    ];
    let opt: Vec<Strings> = names
        .iter()
        .map(|n| Strings::of(b, n))
        .collect::<Result<_, _>>()?;
    let fixed = |n| column::<FixedSizeBinaryArray>(b, n);
    let (leaf, salt, cd, ad, chain) = (
        fixed(col::LEAF_HASH)?,
        fixed(col::SALT)?,
        fixed(col::CONTENT_DIGEST)?,
        fixed(col::ATTRIBUTES_DIGEST)?,
        fixed(col::CHAIN_HASH)?,
    );
    for i in 0..b.num_rows() {
        let kind_s = kind.value(i);
        let content_type =
            match opt[9].get(i) {
                None => None,
                Some(t) => Some(ContentType::parse(t).ok_or_else(|| {
                    SegmentError::Format(format!("row {i}: unknown content_type"))
                })?),
            };
        let to_u64 = |v: i64, n: &str| {
            u64::try_from(v).map_err(|_| SegmentError::Format(format!("row {i}: negative {n}")))
        };
        f(EntryRef {
            ns: ns.value(i),
            idx: to_u64(idx.value(i), "idx")?,
            session_id: session_id.value(i),
            session_seq: to_u64(seq.value(i), "session_seq")?,
            kind: Kind::parse(kind_s)
                .ok_or_else(|| SegmentError::Format(format!("row {i}: unknown kind {kind_s:?}")))?,
            ts: (!ts.is_null(i)).then(|| ts.value(i)),
            received_at: recv.value(i),
            ingested_by: ingested_by.value(i),
            event_id: opt[0].get(i),
            trace_id: opt[1].get(i),
            span_id: opt[2].get(i),
            parent_span_id: opt[3].get(i),
            name: opt[4].get(i),
            actor: opt[5].get(i),
            model: opt[6].get(i),
            content: opt[7].get(i),
            attributes: opt[8].get(i),
            content_type,
            salt: hash_at(salt, i, "salt")?,
            content_digest: hash_at(cd, i, "content_digest")?,
            attributes_digest: hash_at(ad, i, "attributes_digest")?,
            leaf_hash: req(hash_at(leaf, i, "leaf_hash")?, "leaf_hash", i)?,
            chain_hash: req(hash_at(chain, i, "chain_hash")?, "chain_hash", i)?,
        });
    }
    Ok(())
}

/// Checks the header signature with `key`.
pub fn verify_header_signature(
    header: &SegmentHeader,
    signature: &[u8],
    key: &VerifyingKey,
) -> bool {
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    match header.signed_bytes() {
        Ok(msg) => key.verify(&msg, &sig).is_ok(),
        Err(_) => false,
    }
}

/// Checks the header's `file_sha256` against the file: every byte of it, with
/// the footer values holding exactly this header (as RFC 8785 text) and this
/// signature (as base64) read as zeros.
pub fn file_digest_matches(header: &SegmentHeader, signature: &[u8], file: &[u8]) -> bool {
    match footer_holes(header, signature, file).and_then(|h| digest_with_holes(file, &h)) {
        Some(d) => hex::encode(d) == header.file_sha256,
        None => false,
    }
}

/// Where a verifier finds the two values the file digest skips: the first
/// occurrence in the footer of the header's canonical text and of the
/// signature's base64, as `(offset, len)`; `None` when either is missing.
fn footer_holes(
    header: &SegmentHeader,
    signature: &[u8],
    file: &[u8],
) -> Option<[(usize, usize); 2]> {
    let footer = footer_range(file).ok()?;
    let text = jcs::to_canonical_string(&serde_json::to_value(header).ok()?).ok()?;
    let sig = B64.encode(signature);
    let h_at = find_in(file, footer.clone(), text.as_bytes())?;
    let s_at = find_in(file, footer, sig.as_bytes())?;
    Some([(h_at, text.len()), (s_at, sig.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Sequence;
    use tracevault_schemas::Event;

    /// A seal with a fixed chain start, root and key id, signed by `key`.
    fn test_seal(key: &SigningKey) -> SegmentSeal<'_> {
        SegmentSeal {
            chain_in: [0; 32],
            root: [1; 32],
            key_id: [1, 2, 3, 4],
            key,
        }
    }

    pub(crate) fn sample_entries(n: u64) -> Vec<Entry> {
        let mut prev = [0u8; 32];
        (0..n)
            .map(|i| {
                let ev = Event::from_value(serde_json::json!({
                    "session_id": format!("s{}", i % 3), "kind": "output", "content": format!("line {i}"),
                    "attributes": {"i": i}
                }))
                .unwrap();
                let e = Entry::seal(
                    ev,
                    Sequence { ns: "t", idx: i, session_seq: i / 3, received_at: 1_000 + i as i64, ingested_by: "w", salt: [i as u8; 32], prev_chain: prev },
                )
                .unwrap();
                prev = e.chain_hash;
                e
            })
            .collect()
    }

    #[test]
    fn decode_session_yields_exactly_that_sessions_entries_across_row_groups() {
        let key = SigningKey::from_bytes(&[7; 32]);
        // More than two row groups, three interleaved sessions.
        let entries = sample_entries(2 * ROW_GROUP_ROWS as u64 + 100);
        let seal = test_seal(&key);
        let (_, bytes) = encode(&entries, &seal).unwrap();
        let mut got = Vec::new();
        let n = decode_session(bytes.clone(), "s1", |e| got.push(e)).unwrap();
        let want: Vec<&Entry> = entries.iter().filter(|e| e.session_id == "s1").collect();
        assert_eq!(n as usize, want.len());
        assert_eq!(got.iter().collect::<Vec<_>>(), want);
        assert_eq!(
            decode_session(bytes.clone(), "nope", |_| panic!()).unwrap(),
            0
        );
        assert!(decode_session(bytes.slice(..bytes.len() / 2), "s1", |_| {}).is_err());
        let keys = decode_session_keys(bytes.clone(), "s1").unwrap();
        assert_eq!(keys.len(), want.len());
        for (k, e) in keys.iter().zip(&want) {
            assert_eq!(
                (k.idx, k.session_seq, k.kind, k.ts, k.received_at),
                (e.idx, e.session_seq, e.kind, e.ts, e.received_at)
            );
        }
    }

    #[test]
    fn unique_columns_are_plain_rising_ones_delta_packed_and_rows_read_back_alike() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let key = SigningKey::from_bytes(&[7; 32]);
        let entries = sample_entries(300);
        let (_, bytes) = encode(&entries, &test_seal(&key)).unwrap();
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let rg = reader.metadata().row_group(0);
        let encodings = |name: &str| {
            let c = rg
                .columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap();
            c.encodings().collect::<Vec<_>>()
        };
        for name in [
            col::CONTENT,
            col::ATTRIBUTES,
            col::LEAF_HASH,
            col::SALT,
            col::CHAIN_HASH,
        ] {
            let e = encodings(name);
            assert!(e.contains(&Encoding::PLAIN), "{name}: {e:?}");
            assert!(!e.contains(&Encoding::DELTA_BYTE_ARRAY), "{name}: {e:?}");
            assert!(!e.contains(&Encoding::RLE_DICTIONARY), "{name}: {e:?}");
        }
        for name in [col::IDX, col::RECEIVED_AT] {
            let e = encodings(name);
            assert!(e.contains(&Encoding::DELTA_BINARY_PACKED), "{name}: {e:?}");
            assert!(!e.contains(&Encoding::RLE_DICTIONARY), "{name}: {e:?}");
        }
        // The borrowed rows `verify` checks are the entries, as the owned
        // decoder gives them.
        let mut borrowed = Vec::new();
        decode_rows(bytes.clone(), |e| borrowed.push(e.to_entry())).unwrap();
        let mut owned = Vec::new();
        decode_each(bytes, |e| owned.push(e)).unwrap();
        assert_eq!(borrowed, entries);
        assert_eq!(owned, entries);
    }

    /// `clean`'s values as bytes, nulls kept, with row `bad` made invalid
    /// UTF-8: what a writer that skipped the UTF-8 check could store.
    fn bytes_with_bad_row(clean: &StringArray, bad: usize) -> arrow_array::BinaryArray {
        arrow_array::BinaryArray::from_iter((0..clean.len()).map(|i| {
            clean.is_valid(i).then(|| {
                let mut v = clean.value(i).as_bytes().to_vec();
                if i == bad {
                    v.extend_from_slice(&[0xff, 0xfe]);
                }
                v
            })
        }))
    }

    /// Payloads are read as views into the decoded pages: a file whose
    /// `content` or `attributes` bytes are not UTF-8 (written by something
    /// that skipped the check) must still be refused, never handed on as
    /// `&str`.
    #[test]
    fn payloads_that_are_not_utf8_are_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let entries = sample_entries(50);
        let (_, good) = encode(&entries, &test_seal(&key)).unwrap();
        let (header, sig) = decode_header(&good).unwrap();
        let write = |batch: &RecordBatch| {
            let mut w = ArrowWriter::try_new(
                Vec::new(),
                segment_schema(),
                Some(writer_props(SegmentCompression::Zstd)),
            )
            .unwrap();
            w.write(batch).unwrap();
            w.append_key_value_metadata(KeyValue::new(
                HEADER_KEY.into(),
                serde_json::to_string(&header).unwrap(),
            ));
            w.append_key_value_metadata(KeyValue::new(SIGNATURE_KEY.into(), B64.encode(&sig)));
            Bytes::from(w.into_inner().unwrap())
        };
        let batch = entries_to_batch(&entries).unwrap();
        // The same file written this way reads back: only the bytes differ.
        decode_rows(write(&batch), |_| {}).unwrap();
        for name in VIEWED_COLUMNS {
            let at = batch.schema().index_of(name).unwrap();
            let clean = batch
                .column(at)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let bytes = bytes_with_bad_row(clean, 7);
            // SAFETY: deliberately invalid UTF-8, the input under test; the
            // array is only handed to the Parquet writer, which copies bytes.
            let bad = unsafe {
                StringArray::new_unchecked(
                    bytes.offsets().clone(),
                    bytes.values().clone(),
                    clean.nulls().cloned(),
                )
            };
            let mut columns = batch.columns().to_vec();
            columns[at] = Arc::new(bad);
            let tampered = RecordBatch::try_new(batch.schema(), columns).unwrap();
            let mut rows = 0;
            let err = decode_rows(write(&tampered), |_| rows += 1).unwrap_err();
            assert!(err.to_string().contains("UTF-8"), "{name}: {err}");
            assert!(rows < 8, "{name}: the bad row was handed on");
        }
    }

    /// A file that stores a string column as bare bytes (no UTF-8
    /// annotation) while its embedded Arrow schema calls it a string would be
    /// decoded into strings nobody checked ([`crate::parquet_input`]). Every
    /// segment reader refuses it before handing on a row, whichever column.
    #[test]
    fn columns_declared_strings_but_stored_as_bytes_are_refused() {
        use arrow_schema::Field;
        use parquet::arrow::arrow_writer::ArrowWriterOptions;
        let key = SigningKey::from_bytes(&[7; 32]);
        let entries = sample_entries(50);
        let (_, good) = encode(&entries, &test_seal(&key)).unwrap();
        let (header, sig) = decode_header(&good).unwrap();
        let batch = entries_to_batch(&entries).unwrap();
        for name in [col::CONTENT, col::SESSION_ID, col::NS] {
            let at = batch.schema().index_of(name).unwrap();
            let clean = batch
                .column(at)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let bytes = bytes_with_bad_row(clean, 7);
            let mut fields: Vec<Field> = segment_schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields[at] = fields[at].clone().with_data_type(DataType::Binary);
            let stored = Arc::new(Schema::new(fields));
            let mut columns = batch.columns().to_vec();
            columns[at] = Arc::new(bytes);
            let tampered = RecordBatch::try_new(stored.clone(), columns).unwrap();
            let options = ArrowWriterOptions::new()
                .with_properties(writer_props(SegmentCompression::Zstd))
                .with_skip_arrow_metadata(true);
            let mut w = ArrowWriter::try_new_with_options(Vec::new(), stored, options).unwrap();
            w.write(&tampered).unwrap();
            w.append_key_value_metadata(KeyValue::new(
                "ARROW:schema".into(),
                parquet::arrow::encode_arrow_schema(&segment_schema()),
            ));
            w.append_key_value_metadata(KeyValue::new(
                HEADER_KEY.into(),
                serde_json::to_string(&header).unwrap(),
            ));
            w.append_key_value_metadata(KeyValue::new(SIGNATURE_KEY.into(), B64.encode(&sig)));
            let file = Bytes::from(w.into_inner().unwrap());
            let refused = |err: SegmentError| {
                let msg = err.to_string();
                assert!(
                    msg.contains(&format!("column {name} is declared a string")),
                    "{name}: {msg}"
                );
            };
            let mut rows = 0;
            refused(decode_rows(file.clone(), |_| rows += 1).unwrap_err());
            assert_eq!(rows, 0, "{name}: a row was handed on");
            refused(decode(file.clone()).map(|_| ()).unwrap_err());
            refused(decode_session(file.clone(), "s", |_| rows += 1).unwrap_err());
            refused(decode_session_keys(file.clone(), "s").unwrap_err());
            refused(decode_indices(file.clone(), 0, &[7], |_| rows += 1).unwrap_err());
            refused(crate::pruning::check_pruning_metadata(&file).unwrap_err());
            assert_eq!(rows, 0, "{name}: a row was handed on");
        }
    }

    #[test]
    fn either_codec_is_recorded_per_column_and_reads_back_the_same_rows() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let key = SigningKey::from_bytes(&[7; 32]);
        let entries = sample_entries(300);
        let mut headers = Vec::new();
        for (codec, want) in [
            (SegmentCompression::Zstd, "ZSTD"),
            (SegmentCompression::Lz4, "LZ4_RAW"),
            (SegmentCompression::None, "UNCOMPRESSED"),
        ] {
            let (header, bytes) = encode_with(&entries, &test_seal(&key), codec).unwrap();
            let reader = SerializedFileReader::new(bytes.clone()).unwrap();
            for c in reader.metadata().row_group(0).columns() {
                let got = format!("{:?}", c.compression());
                let path = c.column_path().string();
                // Hashes and salts are stored uncompressed whatever the codec.
                let want = if RANDOM_COLUMNS.contains(&path.as_str()) {
                    "UNCOMPRESSED"
                } else {
                    want
                };
                assert!(got.starts_with(want), "{codec:?} {path}: {got}");
            }
            let decoded = decode(bytes.clone()).unwrap();
            assert_eq!(decoded.header, header);
            assert_eq!(decoded.entries, entries, "{codec:?}");
            let mut borrowed = Vec::new();
            decode_rows(bytes, |e| borrowed.push(e.to_entry())).unwrap();
            assert_eq!(borrowed, entries, "{codec:?}");
            headers.push(header);
        }
        // Same rows, same signed facts; only the file (and its digest) differs.
        let (zstd, others) = headers.split_at_mut(1);
        for other in others {
            assert_ne!(zstd[0].file_sha256, other.file_sha256);
            other.file_sha256.clone_from(&zstd[0].file_sha256);
            other.data_len = zstd[0].data_len;
            assert_eq!(zstd[0], *other);
        }
    }

    #[test]
    fn decode_indices_reads_exactly_the_rows_asked_for() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let seal = test_seal(&key);
        // A segment of indices 100.. (rows shifted as in a later segment).
        let mut entries = sample_entries(ROW_GROUP_ROWS as u64 + 200);
        for e in &mut entries {
            e.idx += 100;
        }
        let (_, bytes) = encode(&entries, &seal).unwrap();
        let wanted = [
            100,
            101,
            5000,
            ROW_GROUP_ROWS as u64 + 150,
            ROW_GROUP_ROWS as u64 + 299,
        ];
        let mut got = Vec::new();
        decode_indices(bytes.clone(), 100, &wanted, |e| got.push(e)).unwrap();
        let want: Vec<&Entry> = wanted
            .iter()
            .map(|i| &entries[(*i - 100) as usize])
            .collect();
        assert_eq!(got.iter().collect::<Vec<_>>(), want);
        // Past the end, unsorted, below the first, or a wrong first index.
        assert!(
            decode_indices(bytes.clone(), 100, &[ROW_GROUP_ROWS as u64 + 300], |_| {}).is_err()
        );
        assert!(decode_indices(bytes.clone(), 100, &[200, 150], |_| {}).is_err());
        assert!(decode_indices(bytes.clone(), 100, &[99], |_| {}).is_err());
        assert!(decode_indices(bytes, 101, &[101, 102], |_| {}).is_err());
    }

    #[test]
    fn statistics_and_bloom_filters_must_admit_every_row() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let seal = test_seal(&key);
        let (_, bytes) = encode(&sample_entries(2 * ROW_GROUP_ROWS as u64 + 10), &seal).unwrap();
        // The check as `verify` runs it: shown the batches the row reader
        // decodes, group by group.
        let on_rows = |bytes: &Bytes| {
            let mut check = crate::pruning::PruningCheck::new(bytes).unwrap();
            decode_batches_and_rows(bytes.clone(), |g, b| check.observe(g, b), |_| {}).unwrap();
            check.finish().unwrap()
        };
        assert_eq!(
            crate::pruning::check_pruning_metadata(&bytes).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(on_rows(&bytes), Vec::<String>::new());
        // Zero the bitset of the last row group's session_id bloom filter:
        // it no longer admits the sessions stored there.
        let meta = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .unwrap();
        let rg = meta.row_groups().last().unwrap();
        let cc = (0..rg.num_columns())
            .map(|c| rg.column(c))
            .find(|c| c.column_path().string() == col::SESSION_ID)
            .unwrap();
        let off = cc.bloom_filter_offset().unwrap() as usize;
        let len = cc.bloom_filter_length().unwrap() as usize;
        let mut forged = bytes.to_vec();
        forged[off + 32..off + len].fill(0);
        let forged = Bytes::from(forged);
        for findings in [
            crate::pruning::check_pruning_metadata(&forged).unwrap(),
            on_rows(&forged),
        ] {
            assert_eq!(findings.len(), 1, "{findings:?}");
            assert!(
                findings[0].contains("row group 2: the bloom filter")
                    && findings[0].contains("session_id"),
                "{findings:?}"
            );
        }
    }

    /// A three-row-group segment (16,384, 16,384 and 10 rows) whose footer
    /// `edit` changed, pages untouched.
    fn forge(edit: impl FnOnce(&mut Vec<parquet::file::metadata::RowGroupMetaData>)) -> Vec<u8> {
        use parquet::file::metadata::ParquetMetaDataWriter;
        let key = SigningKey::from_bytes(&[7; 32]);
        let n = 2 * ROW_GROUP_ROWS + 10;
        let (_, bytes) = encode(&sample_entries(n as u64), &test_seal(&key)).unwrap();
        // As written, so that only `edit` makes it differ from the writer's.
        let meta = crate::footer_rules::metadata_as_written(&bytes).unwrap();
        let mut groups = meta.row_groups().to_vec();
        edit(&mut groups);
        let meta = meta.into_builder().set_row_groups(groups).build();
        let mut forged = bytes[..footer_range(&bytes).unwrap().start].to_vec();
        ParquetMetaDataWriter::new(&mut forged, &meta)
            .finish()
            .unwrap();
        forged
    }

    /// What the pruning check finds in `forged` as `verify` runs it, and as
    /// `check_pruning_metadata` does, once every row is seen decoded.
    fn footer_findings(forged: Vec<u8>) -> Vec<Vec<String>> {
        let n = 2 * ROW_GROUP_ROWS + 10;
        let forged = Bytes::from(forged);
        let mut check = crate::pruning::PruningCheck::new(&forged).unwrap();
        let mut rows = 0;
        decode_batches_and_rows(forged.clone(), |g, b| check.observe(g, b), |_| rows += 1).unwrap();
        assert_eq!(rows, n, "every row is still decoded");
        vec![
            check.finish().unwrap(),
            crate::pruning::check_pruning_metadata(&forged).unwrap(),
        ]
    }

    /// Asserts that each of `prefixes` begins some finding.
    fn assert_found(findings: &[String], prefixes: &[&str]) {
        for prefix in prefixes {
            assert!(
                findings.iter().any(|f| f.starts_with(prefix)),
                "{prefix:?} not in {findings:?}"
            );
        }
    }

    /// Group `g` of `groups` with column `name`'s metadata passed through
    /// `edit`.
    fn edit_column(
        groups: &mut [parquet::file::metadata::RowGroupMetaData],
        g: usize,
        name: &str,
        edit: impl FnOnce(
            parquet::file::metadata::ColumnChunkMetaDataBuilder,
        ) -> parquet::file::metadata::ColumnChunkMetaDataBuilder,
    ) {
        let mut columns = groups[g].columns().to_vec();
        let at = columns
            .iter()
            .position(|c| c.column_path().string() == name)
            .unwrap();
        columns[at] = edit(columns[at].clone().into_builder()).build().unwrap();
        groups[g] = groups[g]
            .clone()
            .into_builder()
            .set_column_metadata(columns)
            .build()
            .unwrap();
    }

    /// Group 0 of `groups` with the statistics of column `name` replaced.
    fn set_statistics(
        groups: &mut [parquet::file::metadata::RowGroupMetaData],
        name: &str,
        st: parquet::file::statistics::Statistics,
    ) {
        edit_column(groups, 0, name, |c| c.set_statistics(st));
    }

    #[test]
    fn rows_belong_to_the_row_group_whose_pages_hold_them() {
        // The key holder changes only the footer's row counts: two groups of
        // 16,384 declared as 16,383 and 16,385, so that the first group's
        // last row would be checked against the second group's statistics
        // (which a forger would then lower it out of).
        let forged = forge(|groups| {
            for (g, delta) in [(0, -1), (1, 1)] {
                let declared = groups[g].num_rows() + delta;
                groups[g] = groups[g]
                    .clone()
                    .into_builder()
                    .set_num_rows(declared)
                    .build()
                    .unwrap();
            }
        });
        // More rows than the writer puts in a group: `verify` does not
        // decode the file (a forged count can make readers decode billions).
        let check = crate::pruning::PruningCheck::new(&Bytes::from(forged.clone())).unwrap();
        assert!(check.pages_misread());
        assert_found(
            &check.findings_before_decoding(),
            &["row group 1: declares 16385 rows, more than the writer puts in a row group"],
        );
        for findings in footer_findings(forged) {
            assert_found(
                &findings,
                &[
                    "row group 0: declares 16383 rows, its pages hold 16384",
                    "row group 1: declares 16385 rows, its pages hold 16384",
                ],
            );
        }
    }

    #[test]
    fn a_row_group_without_statistics_still_has_its_rows_counted() {
        // Group 0 stripped of statistics and bloom filters (which only stops
        // pruning), then declared one row and one value per column short:
        // readers that trust the counts would drop its last row.
        let stripped = footer_findings(forge(|groups| {
            let g = &groups[0];
            let columns = g
                .columns()
                .iter()
                .map(|c| {
                    c.clone()
                        .into_builder()
                        .clear_statistics()
                        .set_bloom_filter_offset(None)
                        .set_bloom_filter_length(None)
                        .set_num_values(c.num_values() - 1)
                        .build()
                        .unwrap()
                })
                .collect();
            groups[0] = g
                .clone()
                .into_builder()
                .set_num_rows(g.num_rows() - 1)
                .set_column_metadata(columns)
                .build()
                .unwrap();
        }));
        for findings in stripped {
            assert_found(
                &findings,
                &[
                    "row group 0: declares 16383 rows, its pages hold 16384",
                    "row group 0: column idx declares 16383 values",
                ],
            );
        }
    }

    #[test]
    fn the_file_row_count_must_be_the_sum_of_its_row_groups() {
        // Parquet's metadata writer sums the groups itself, so the file's
        // count is patched in the Thrift bytes: field 3 (i64, compact header
        // 0x16) of 32,778 rows (zigzag varint 94 80 04) made 32,777.
        let mut forged = forge(|_| {});
        let footer = footer_range(&forged).unwrap();
        let at = footer.start
            + forged[footer]
                .windows(4)
                .position(|w| w == [0x16, 0x94, 0x80, 0x04])
                .unwrap();
        forged[at + 1] = 0x92;
        for findings in footer_findings(forged) {
            assert_eq!(
                findings,
                [
                    // Parquet's writer would have written the sum.
                    "the footer is not as the segment writer writes it (other readers would see other statistics or types)",
                    "the footer declares 32777 rows, its row groups 32778 (readers could drop rows)"
                ]
            );
        }
    }

    #[test]
    fn a_footer_must_re_encode_to_itself() {
        // A field parquet-rs reads past without keeping (here an unknown
        // i32, id 15, before the stop of the file's metadata; the deprecated
        // `max` beside a `max_value` is one other readers prune by) makes a
        // footer that is not the writer's.
        let mut forged = forge(|_| {});
        let footer = footer_range(&forged).unwrap();
        assert_eq!(forged[footer.end - 1], 0, "the struct's stop");
        forged.splice(footer.end - 1..footer.end - 1, [0x85, 0x02]);
        let len = (footer.len() + 2) as u32;
        let at = forged.len() - 8;
        forged[at..at + 4].copy_from_slice(&len.to_le_bytes());
        for findings in footer_findings(forged) {
            assert_eq!(
                findings,
                [
                    "the footer is not as the segment writer writes it (other readers would see other statistics or types)"
                ]
            );
        }
    }

    /// A segment (as [`forge`]) whose file metadata `edit` changed (its
    /// key-value entries and Parquet schema), row groups as written.
    fn forge_file(
        edit: impl FnOnce(
            &mut Vec<KeyValue>,
            &mut parquet::schema::types::SchemaDescPtr,
            &mut Option<String>,
        ),
    ) -> Vec<u8> {
        use parquet::file::metadata::{
            FileMetaData, ParquetMetaDataBuilder, ParquetMetaDataWriter,
        };
        let key = SigningKey::from_bytes(&[7; 32]);
        let n = 2 * ROW_GROUP_ROWS + 10;
        let (_, bytes) = encode(&sample_entries(n as u64), &test_seal(&key)).unwrap();
        let meta = crate::footer_rules::metadata_as_written(&bytes).unwrap();
        let fm = meta.file_metadata();
        let mut kv = fm.key_value_metadata().cloned().unwrap_or_default();
        let mut schema = fm.schema_descr_ptr();
        let mut created_by = fm.created_by().map(str::to_string);
        edit(&mut kv, &mut schema, &mut created_by);
        let file = FileMetaData::new(
            fm.version(),
            fm.num_rows(),
            created_by,
            Some(kv),
            schema,
            fm.column_orders().cloned(),
        );
        let meta = ParquetMetaDataBuilder::new(file)
            .set_row_groups(meta.row_groups().to_vec())
            .build();
        let mut forged = bytes[..footer_range(&bytes).unwrap().start].to_vec();
        ParquetMetaDataWriter::new(&mut forged, &meta)
            .finish()
            .unwrap();
        forged
    }

    /// [`forge_file`] editing the key-value entries only.
    fn forge_entries(edit: impl FnOnce(&mut Vec<KeyValue>)) -> Vec<u8> {
        forge_file(|kv, _, _| edit(kv))
    }

    #[test]
    fn the_parquet_schema_must_be_the_writers() {
        // `ts` and `received_at` declared timestamps not adjusted to UTC in
        // the Parquet schema; the Arrow schema beside it still says UTC, so
        // parquet-rs reads the same rows, but DuckDB reads local times.
        use parquet::arrow::ArrowSchemaConverter;
        let local: Vec<arrow_schema::FieldRef> = segment_schema()
            .fields()
            .iter()
            .map(
                |f| match f.name() == col::TS || f.name() == col::RECEIVED_AT {
                    true => Arc::new(f.as_ref().clone().with_data_type(DataType::Timestamp(
                        arrow_schema::TimeUnit::Microsecond,
                        None,
                    ))),
                    false => f.clone(),
                },
            )
            .collect();
        let descr = ArrowSchemaConverter::new()
            .convert(&Schema::new(local))
            .unwrap();
        // (Every row is still decoded: `footer_findings` asserts it.)
        let forged = forge_file(|_, schema, _| *schema = Arc::new(descr));
        for findings in footer_findings(forged) {
            assert_eq!(
                findings,
                [
                    "the footer is not as the segment writer writes it (other readers would see other statistics or types)"
                ]
            );
        }
    }

    #[test]
    fn footer_fields_that_other_readers_believe_are_the_writers_own() {
        // Each forged footer re-encodes to itself and keeps every row and
        // statistic honest; only the field it edits is wrong.
        let entries = "the footer's key-value entries are";
        // pyarrow's to_pandas would take column labels from this (here:
        // `content` shown under the name `attributes`).
        let pandas = forge_entries(|kv| {
            kv.push(KeyValue::new(
                "pandas".into(),
                r#"{"columns": [{"name": "attributes", "field_name": "content"}]}"#.to_string(),
            ))
        });
        // A second header: ours reads the first, another reader the last.
        let second_header = forge_entries(|kv| {
            let h = kv.iter().find(|e| e.key == HEADER_KEY).unwrap().clone();
            kv.push(h);
        });
        let no_header = forge_entries(|kv| kv.retain(|e| e.key != SIGNATURE_KEY));
        for forged in [pandas, second_header] {
            for findings in footer_findings(forged) {
                assert_eq!(findings.len(), 1, "{findings:?}");
                assert_found(&findings, &[entries]);
            }
        }
        // Findings show the key holder's strings cut short, however long.
        let flood = forge_file(|kv, _, created_by| {
            kv.extend((0..100).map(|i| KeyValue::new(format!("{i}{}", "k".repeat(10_000)), None)));
            *created_by = Some("w".repeat(100_000));
        });
        for findings in footer_findings(flood) {
            assert_eq!(findings.len(), 2, "{findings:?}");
            assert_found(
                &findings,
                &[entries, "the footer says it was written by \"www"],
            );
            assert!(findings.iter().all(|f| f.len() < 1_000), "{findings:?}");
            assert!(findings[0].contains("(103 in all)"), "{}", findings[0]);
        }
        // (A footer without its signature fails before: no verifiable header.)
        assert!(decode_header(&Bytes::from(no_header)).is_err());

        // The Arrow schema every Arrow reader goes by, given metadata.
        let schema = forge_entries(|kv| {
            let mut meta = std::collections::HashMap::new();
            meta.insert("pandas".to_string(), "{}".to_string());
            let edited = Schema::new_with_metadata(segment_schema().fields().clone(), meta);
            let e = kv.iter_mut().find(|e| e.key == "ARROW:schema").unwrap();
            e.value = Some(parquet::arrow::encode_arrow_schema(&edited));
        });
        let valueless = forge_entries(|kv| {
            let e = kv.iter_mut().find(|e| e.key == "ARROW:schema").unwrap();
            e.value = None;
        });
        for forged in [schema, valueless] {
            for findings in footer_findings(forged) {
                assert_eq!(
                    findings,
                    [
                        "the footer's Arrow schema is not the one the writer writes (Arrow readers would see other types or metadata)"
                    ]
                );
            }
        }

        // A sort order by `session_id`: an engine trusting it would merge
        // or group rows as if they were.
        let sorted = forge(|groups| {
            groups[1] = groups[1]
                .clone()
                .into_builder()
                .set_sorting_columns(Some(vec![SortingColumn {
                    column_idx: 2,
                    descending: false,
                    nulls_first: false,
                }]))
                .build()
                .unwrap();
        });
        for findings in footer_findings(sorted) {
            assert_eq!(findings.len(), 1, "{findings:?}");
            assert_found(&findings, &["row group 1: declares the sort order"]);
        }

        // A distinct count on `idx`, bounds left exact and true.
        use parquet::file::statistics::{Statistics, ValueStatistics};
        let st = ValueStatistics::new(Some(0i64), Some(16_383), Some(3), Some(0), false)
            .with_min_is_exact(true)
            .with_max_is_exact(true);
        let st = crate::footer_rules::with_deprecated_min_max(Statistics::Int64(st));
        let counted = forge(|groups| set_statistics(groups, col::IDX, st));
        for findings in footer_findings(counted) {
            assert_eq!(
                findings,
                [
                    "row group 0: column idx declares a distinct count, which the writer never writes (planners would believe it)"
                ]
            );
        }
    }

    #[test]
    fn chunk_layout_fields_that_readers_differ_on_are_the_writers() {
        // Found by an attacker review: each forged footer re-encodes to
        // itself and parquet-rs reads the same rows from it.
        // The writer named as another: pyarrow then decodes pages with the
        // workarounds of old parquet-cpp (and fails on ours).
        let other_writer =
            forge_file(|_, _, created_by| *created_by = Some("parquet-cpp version 1.0.0".into()));
        for findings in footer_findings(other_writer) {
            assert_eq!(findings.len(), 1, "{findings:?}");
            assert_found(&findings, &["the footer says it was written by"]);
        }
        // `content` (no dictionary) given a dictionary page offset at its
        // first page and a data page offset before it: parquet-rs starts at
        // the former, pyarrow at the lower, so bytes planted before the
        // chunk would be what pyarrow decodes.
        let split = forge(|groups| {
            let first = groups[0].column(segment_schema().index_of(col::CONTENT).unwrap());
            let first = first.data_page_offset();
            edit_column(groups, 0, col::CONTENT, |c| {
                c.set_dictionary_page_offset(Some(first))
                    .set_data_page_offset(first - 1)
            });
        });
        for findings in footer_findings(split) {
            // (The page walk finds the same forgery its own way.)
            assert_eq!(findings.len(), 2, "{findings:?}");
            assert_found(
                &findings,
                &[
                    "row group 0: column content starts at its dictionary page offset",
                    "row group 0: column content: a dictionary page offset where there is no dictionary page",
                ],
            );
        }
        // Data said to be in another file; a bloom filter's length dropped.
        let elsewhere = forge(|groups| {
            edit_column(groups, 1, col::CONTENT, |c| {
                c.set_file_path("other.parquet".into())
            });
            edit_column(groups, 1, col::SESSION_ID, |c| {
                c.set_bloom_filter_length(None)
            });
        });
        for findings in footer_findings(elsewhere) {
            assert_eq!(findings.len(), 2, "{findings:?}");
            assert_found(
                &findings,
                &[
                    "row group 1: column content names another file",
                    "row group 1: column session_id has a bloom filter offset without its length",
                ],
            );
        }
    }

    /// A 100-row segment (one row group, one page per column chunk) and its
    /// footer as written.
    fn hundred_rows() -> (Bytes, parquet::file::metadata::ParquetMetaData) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let (_, bytes) = encode(&sample_entries(100), &test_seal(&key)).unwrap();
        let meta = crate::footer_rules::metadata_as_written(&bytes).unwrap();
        (bytes, meta)
    }

    /// Column `name`'s chunk in row group 0 of `meta`.
    fn chunk<'a>(
        meta: &'a parquet::file::metadata::ParquetMetaData,
        name: &str,
    ) -> &'a parquet::file::metadata::ColumnChunkMetaData {
        meta.row_group(0)
            .column(segment_schema().index_of(name).unwrap())
    }

    #[test]
    fn page_headers_must_read_the_same_for_every_reader() {
        use crate::page_headers::chunk_problem;
        // A real segment's chunks all pass.
        let (bytes, meta) = hundred_rows();
        for c in meta.row_group(0).columns() {
            assert_eq!(chunk_problem(&bytes, c), None, "{}", c.column_path());
        }
        // One version 2 data page of 3 values and a 10-byte body, after the
        // magic, described by `content`'s metadata moved there (stored as
        // it is: the body is no zstd frame).
        let page = |header: &[u8], declared_len: usize, values: i64| {
            let mut file = b"PAR1".to_vec();
            file.extend_from_slice(header);
            file.extend_from_slice(&[0; 10]);
            let c = chunk(&meta, col::CONTENT)
                .clone()
                .into_builder()
                .set_dictionary_page_offset(None)
                .set_data_page_offset(4)
                .set_compression(parquet::basic::Compression::UNCOMPRESSED)
                .set_total_compressed_size((header.len() + declared_len) as i64)
                .set_num_values(values)
                .build()
                .unwrap();
            chunk_problem(&file, &c)
        };
        // num_values 0 (replaced below), num_nulls 0, num_rows 3, then zeros.
        let v2 = [
            0x15, 0x00, 0x15, 0x00, 0x15, 0x06, 0x15, 0x00, 0x15, 0x00, 0x15, 0x00, 0x00,
        ];
        let mut honest = vec![0x15, 0x06, 0x15, 0x14, 0x15, 0x14, 0x5c];
        honest.extend_from_slice(&[0x15, 0x06]);
        honest.extend_from_slice(&v2[2..]);
        honest.push(0x00);
        assert_eq!(page(&honest, 10, 3), None);
        // The review's forgery: a field again, tagged i64 (parquet-rs takes
        // the last copy whatever its tag; Arrow C++ and DuckDB skip it).
        let mut again = honest[..6].to_vec();
        again.extend_from_slice(&[0x06, 0x06, 0x02]);
        again.extend_from_slice(&[0x5c, 0x15, 0x06]);
        again.extend_from_slice(&v2[2..]);
        again.push(0x00);
        let e = page(&again, 10, 3).unwrap();
        assert!(e.contains("out of order or repeated"), "{e}");
        // A field tagged with another type than its own.
        let mut tagged = honest.clone();
        tagged[4] = 0x16;
        let e = page(&tagged, 10, 3).unwrap();
        assert!(e.contains("tagged with type 6"), "{e}");
        // An index page (sequential readers skip it, body and all).
        let mut index = honest.clone();
        index[1] = 0x02;
        let e = page(&index, 10, 3).unwrap();
        assert!(e.contains("type 1 where the writer puts none"), "{e}");
        // Bytes after the last page, and values the footer does not declare.
        assert!(page(&honest, 12, 3).is_some());
        let e = page(&honest, 10, 4).unwrap();
        assert!(e.contains("hold 3 values, the footer declares 4"), "{e}");
        // Repetition level bytes in a flat column.
        let mut levels = honest.clone();
        assert_eq!(levels[17..19], [0x15, 0x00]);
        levels[18] = 0x08;
        let e = page(&levels, 10, 3).unwrap();
        assert!(
            e.contains("0 definition and 4 repetition level bytes"),
            "{e}"
        );
        // A version 1 data page (its header declares level encodings,
        // which readers honour differently).
        let mut v1 = vec![0x15, 0x00, 0x15, 0x14, 0x15, 0x14, 0x2c, 0x15, 0x06];
        v1.extend_from_slice(&[0x15, 0x00, 0x15, 0x00, 0x15, 0x00, 0x00, 0x00]);
        let e = page(&v1, 10, 3).unwrap();
        assert!(e.contains("field 5 is not one the writer writes"), "{e}");
        // Values encoded as dictionary indexes with no dictionary, or RLE.
        // (and DELTA_LENGTH_BYTE_ARRAY, which the writer never writes).
        for (encoding, name) in [
            (0x10, "encoded 8"),
            (0x06, "encoded 3"),
            (0x0c, "encoded 6"),
        ] {
            let mut other = honest.clone();
            assert_eq!(other[13..15], [0x15, 0x00]);
            other[14] = encoding;
            let e = page(&other, 10, 3).unwrap();
            assert!(e.contains(name), "{e}");
        }
        // More values than a row group of the writer's holds (16,385,
        // zigzag 82 80 02), which a few bytes of runs could declare.
        let mut big = honest[..7].to_vec();
        big.extend_from_slice(&[0x15, 0x82, 0x80, 0x02, 0x15, 0x00, 0x15, 0x82, 0x80, 0x02]);
        big.extend_from_slice(&v2[6..]);
        big.push(0x00);
        let e = page(&big, 10, 16_385).unwrap();
        assert!(
            e.contains("more than the writer puts in a row group"),
            "{e}"
        );
        // A field the writer does not know.
        let mut unknown = honest[..6].to_vec();
        unknown.extend_from_slice(&[0x35, 0x00]);
        unknown.extend_from_slice(&honest[6..]);
        let e = page(&unknown, 10, 3).unwrap();
        assert!(e.contains("not one the writer writes"), "{e}");
    }

    #[test]
    fn page_indexes_must_match_the_pages() {
        // A real segment's page indexes edited in place, lengths unchanged:
        // what engines reading them (stock DataFusion) would skip or read.
        let (bytes, meta) = hundred_rows();
        let clean = crate::pruning::check_pruning_metadata(&bytes).unwrap();
        assert_eq!(clean, Vec::<String>::new());
        let findings = |name: &str, column_index: bool, edit: &dyn Fn(&mut [u8])| {
            let c = chunk(&meta, name);
            let (at, len) = match column_index {
                true => (c.column_index_offset(), c.column_index_length()),
                false => (c.offset_index_offset(), c.offset_index_length()),
            };
            let at = at.unwrap() as usize;
            let mut forged = bytes.to_vec();
            edit(&mut forged[at..at + len.unwrap() as usize]);
            let mut f = crate::pruning::check_pruning_metadata(&Bytes::from(forged)).unwrap();
            assert_eq!(f.len(), 1, "{name}: {f:?}");
            f.remove(0)
        };
        // Column index of `session_id` (one page): null flag, min, max,
        // boundary order, null counts, as 19 12 02 | 19 18 n min | 19 18
        // n max | 15 02 | 19 16 00 | 00.
        let lowered = findings(col::SESSION_ID, true, &|ci| {
            let max = 6 + ci[5] as usize + 3;
            ci[max] = b'!';
        });
        assert_eq!(
            lowered,
            "row group 0: the column index's bounds of page 0 of column session_id disagree with its rows (queries could skip rows)"
        );
        let null_page = findings(col::SESSION_ID, true, &|ci| ci[2] = 0x01);
        assert!(
            null_page.contains("column index's bounds of page 0"),
            "{null_page}"
        );
        let nulls = findings(col::SESSION_ID, true, &|ci| {
            let n = ci.len();
            ci[n - 2] = 0x02;
        });
        assert!(
            nulls.contains("column index's null count of page 0 (nulls read: 0)"),
            "{nulls}"
        );
        let tagged = findings(col::SESSION_ID, true, &|ci| ci[0] = 0x1a);
        assert!(
            tagged.contains("column index: field 1 tagged with type 10"),
            "{tagged}"
        );
        let order = findings(col::SESSION_ID, true, &|ci| {
            let n = ci.len();
            ci[n - 5] = 0x08;
        });
        assert!(order.contains("boundary order 4"), "{order}");
        // `ts` (null in every row): 19 12 01 | 19 18 00 | 19 18 00 | 15 02
        // | 19 16 c8 01 | 29 26 c8 01 00 | 00, the histogram [100, 0].
        let histogram = findings(col::TS, true, &|ci| {
            let n = ci.len();
            ci[n - 2] = 0x02;
        });
        assert!(
            histogram.contains("definition level histogram of page 0"),
            "{histogram}"
        );
        // Offset index of `session_id`: 19 1c | 16 offset 15 size 16 00 00 |
        // 19 16 unencoded | 00.
        let moved = findings(col::SESSION_ID, false, &|oi| oi[3] ^= 0x02);
        assert!(moved.contains("offset index page 0 at Some("), "{moved}");
        let first_row = findings(col::SESSION_ID, false, &|oi| {
            let at = oi.windows(3).position(|w| w == [0x16, 0x00, 0x00]).unwrap();
            oi[at + 1] = 0x02;
        });
        assert!(first_row.contains("first row Some(1)"), "{first_row}");
        let unencoded = findings(col::SESSION_ID, false, &|oi| {
            let n = oi.len();
            oi[n - 2] ^= 0x02;
        });
        assert!(
            unencoded.contains("the offset index's unencoded size"),
            "{unencoded}"
        );
    }

    #[test]
    fn page_headers_declare_the_nulls_they_hold() {
        // `ts` is null in every row: its page header's num_nulls (the
        // second field of its version 2 header) lowered from 100 to 1.
        let (bytes, meta) = hundred_rows();
        let ts = chunk(&meta, col::TS);
        let at = ts.data_page_offset() as usize;
        let mut forged = bytes.to_vec();
        // 15 (type) 15 (sizes) 15 | 5c 15 c8 01 (values) 15 c8 01 (nulls) ...
        let header = &forged[at..at + 64];
        let v2 = header.windows(2).position(|w| w == [0x5c, 0x15]).unwrap();
        assert_eq!(header[v2 + 4..v2 + 7], [0x15, 0xc8, 0x01]);
        forged[at + v2 + 5] = 0x82;
        let f = crate::pruning::check_pruning_metadata(&Bytes::from(forged)).unwrap();
        assert_eq!(
            f,
            [
                // (C++ readers would look for 35 dictionary indexes.)
                "row group 0: column ts: dictionary indexes: 0 values where the page has 35 (other readers would decode other values)",
                "row group 0: page 0's header null count 65 (nulls read: 100) of column ts disagree with its rows (queries could skip rows)"
            ]
        );
    }

    #[test]
    fn statistics_in_page_headers_must_admit_the_pages_rows() {
        // The writer writes none; another writer's would be read by tools
        // that skip pages by them. A file written with them is clean; its
        // `session_id` page's maximum lowered in place is a finding.
        let key = SigningKey::from_bytes(&[7; 32]);
        let entries = sample_entries(100);
        let (_, good) = encode(&entries, &test_seal(&key)).unwrap();
        let (header, sig) = decode_header(&good).unwrap();
        let props = writer_props(SegmentCompression::Zstd)
            .into_builder()
            .set_write_page_header_statistics(true)
            .build();
        let mut w = ArrowWriter::try_new(Vec::new(), segment_schema(), Some(props)).unwrap();
        w.write(&entries_to_batch(&entries).unwrap()).unwrap();
        w.append_key_value_metadata(KeyValue::new(
            HEADER_KEY.into(),
            serde_json::to_string(&header).unwrap(),
        ));
        w.append_key_value_metadata(KeyValue::new(SIGNATURE_KEY.into(), B64.encode(&sig)));
        let file = w.into_inner().unwrap();
        let findings =
            |f: Vec<u8>| crate::pruning::check_pruning_metadata(&Bytes::from(f)).unwrap();
        assert_eq!(findings(file.clone()), Vec::<String>::new());
        let meta = crate::footer_rules::metadata_as_written(&Bytes::from(file.clone())).unwrap();
        let c = chunk(&meta, col::SESSION_ID);
        let at = c.data_page_offset() as usize;
        // Sessions are s0..s2: the page's max_value "s2" (field 5 of the
        // statistics, length 2) becomes "s0", which leaves out s1 and s2.
        let mut forged = file;
        let max = forged[at..at + 64]
            .windows(3)
            .position(|w| w == [0x02, b's', b'2'])
            .unwrap();
        forged[at + max + 2] = b'0';
        assert_eq!(
            findings(forged),
            [
                "row group 0: page 0's header statistics of column session_id disagree with its rows (queries could skip rows)"
            ]
        );
    }

    #[test]
    fn bloom_filter_headers_must_read_the_same_for_every_reader() {
        // `session_id`'s filter header, 15 <numBytes> 2c 1c 00 00 1c 1c 00
        // 00 1c 1c 00 00 00, edited in place.
        let (bytes, meta) = hundred_rows();
        let c = chunk(&meta, col::SESSION_ID);
        let at = c.bloom_filter_offset().unwrap() as usize;
        assert_eq!(bytes[at], 0x15);
        let findings = |edit: &dyn Fn(&mut [u8])| {
            let mut forged = bytes.to_vec();
            edit(&mut forged[at..]);
            crate::pruning::check_pruning_metadata(&Bytes::from(forged))
                .unwrap_or_else(|e| vec![e.to_string()])
        };
        // numBytes tagged as bytes: DuckDB skips it, parquet-rs reads it.
        let tagged = findings(&|b| b[0] = 0x18);
        assert!(
            tagged.iter().any(|f| f
                .contains("column session_id: bloom filter header: field 1 tagged with type 8")),
            "{tagged:?}"
        );
        // numBytes other than the rest of the length (one block fewer; a
        // varint's low bits, so the same number of bytes).
        let short = findings(&|b| b[1] ^= 0x40);
        assert!(
            short
                .iter()
                .any(|f| f.contains("bloom filter header declares")),
            "{short:?}"
        );
        // A hash other than the one the format defines.
        let hash = findings(&|b| {
            let at = b
                .windows(4)
                .position(|w| w == [0x1c, 0x1c, 0x00, 0x00])
                .unwrap();
            b[at + 1] = 0x2c;
        });
        assert!(
            hash.iter().any(|f| f.contains("bloom filter header")),
            "{hash:?}"
        );
    }

    #[test]
    fn stored_pages_are_as_long_as_they_declare_unpacked() {
        // `leaf_hash` is stored without a codec: parquet-rs never checks its
        // pages' unpacked size, DuckDB refuses a file where it is off. Its
        // header, 15 06 15 <unpacked> 15 <size> ..., one more byte declared.
        let (bytes, meta) = hundred_rows();
        let c = chunk(&meta, col::LEAF_HASH);
        let at = c.data_page_offset() as usize;
        assert_eq!(bytes[at..at + 3], [0x15, 0x06, 0x15]);
        let mut forged = bytes.to_vec();
        forged[at + 3] ^= 0x02;
        let f = crate::pruning::check_pruning_metadata(&Bytes::from(forged)).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].contains("column leaf_hash: page at")
                && f[0].contains("3200 bytes stored as they are, 3201 declared unpacked"),
            "{f:?}"
        );
    }

    #[test]
    fn definition_levels_read_the_same_for_every_reader() {
        // `ts` is null in every row: its levels are one run of 100 zeros,
        // c8 01 00, right after its page header. A repeated 2 instead
        // reads as "present" to parquet-rs and is refused by pyarrow.
        let (bytes, meta) = hundred_rows();
        let ts = chunk(&meta, col::TS);
        let at = ts.data_page_offset() as usize;
        let run = bytes[at..at + 64]
            .windows(3)
            .position(|w| w == [0xc8, 0x01, 0x00])
            .unwrap();
        let mut forged = bytes.to_vec();
        forged[at + run + 2] = 0x02;
        // (parquet-rs then fails to read the page: the finding is made
        // before any row is read.)
        let forged = Bytes::from(forged);
        assert!(crate::pruning::check_pruning_metadata(&forged).is_err());
        let f = crate::pruning::PruningCheck::new(&forged)
            .unwrap()
            .finish()
            .unwrap();
        assert!(
            f.iter().any(|f| f.contains("column ts: page at")
                && f.contains("definition levels: a repeated value of 2, above 1")),
            "{f:?}"
        );
    }

    #[test]
    fn dictionaries_hold_the_entries_they_declare() {
        // `session_id`'s dictionary (s0, s1, s2) declared to hold 4: every
        // reader but `verify`'s fails on it (the SQL door included).
        let (bytes, meta) = hundred_rows();
        let c = chunk(&meta, col::SESSION_ID);
        let at = c.dictionary_page_offset().unwrap() as usize;
        // ... 4c (dictionary_page_header) 15 06 (num_values 3) 15 00 ...
        let n = bytes[at..at + 32]
            .windows(4)
            .position(|w| w == [0x4c, 0x15, 0x06, 0x15])
            .unwrap();
        let mut forged = bytes.to_vec();
        forged[at + n + 2] = 0x08;
        let f = crate::pruning::PruningCheck::new(&Bytes::from(forged))
            .unwrap()
            .finish()
            .unwrap();
        assert!(
            f.iter().any(|f| f
                == "row group 0: column session_id: a dictionary of 3 entries declaring 4 (other readers would decode other values)"),
            "{f:?}"
        );
    }

    /// What the pruning check finds in `file` before and after its rows
    /// are decoded, as `verify` runs it (rows are decoded only when no page
    /// would read differently for other readers).
    fn value_findings(file: Vec<u8>) -> (bool, Vec<String>) {
        let file = Bytes::from(file);
        let mut check = crate::pruning::PruningCheck::new(&file).unwrap();
        if check.pages_misread() {
            return (true, check.findings_before_decoding());
        }
        decode_batches_and_rows(file, |g, b| check.observe(g, b), |_| {}).unwrap();
        (false, check.finish().unwrap())
    }

    /// A hundred rows stored without a codec, so that page contents can be
    /// edited in place.
    fn hundred_stored_rows() -> Bytes {
        let key = SigningKey::from_bytes(&[7; 32]);
        let seal = test_seal(&key);
        encode_with(&sample_entries(100), &seal, SegmentCompression::None)
            .unwrap()
            .1
    }

    /// The last data page of column `name` in row group 0 of `file`, and
    /// where its values start.
    fn last_page(file: &Bytes, name: &str) -> (crate::page_headers::DataPage, usize) {
        let meta = crate::footer_rules::metadata_as_written(file).unwrap();
        let pages = crate::page_headers::walk(file, chunk(&meta, name)).unwrap();
        let p = pages.data.last().unwrap().clone();
        let values = (p.offset + p.size - p.value_bytes) as usize;
        (p, values)
    }

    #[test]
    fn plain_values_fill_their_pages_exactly() {
        let bytes = hundred_stored_rows();
        assert_eq!(value_findings(bytes.to_vec()), (false, vec![]));
        // `content`'s last value one byte shorter: readers take the 100
        // values the header declares and ignore the byte left over, where
        // anything could be written.
        let (page, values) = last_page(&bytes, col::CONTENT);
        let end = (page.offset + page.size) as usize;
        let mut at = values;
        let mut last = at;
        while at < end {
            last = at;
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
            at += 4 + len as usize;
        }
        assert_eq!(at, end);
        let mut forged = bytes.to_vec();
        forged[last] -= 1;
        let (misread, f) = value_findings(forged);
        assert!(!misread);
        let n = page.value_bytes;
        let want = format!(
            "row group 0: column content: page 0: {n} bytes of plain values where its 100 values take {} (other readers would decode other values)",
            n - 1
        );
        assert!(f.contains(&want), "{f:?}");
    }

    #[test]
    fn dictionaries_are_the_values_in_order_of_first_use() {
        // `session_id` is s0, s1, s2, s0, ...: a dictionary of s0, s1, s2
        // and indexes 0, 1, 2, 0, ..., two bits each, in one bit-packed run
        // of 13 groups (1b) after the width (02).
        let bytes = hundred_stored_rows();
        let (page, values) = last_page(&bytes, col::SESSION_ID);
        assert_eq!(page.encoding, crate::page_headers::RLE_DICTIONARY);
        assert_eq!(bytes[values..values + 3], [0x02, 0x1b, 0b00_10_01_00]);
        let indexes = values + 2..values + 2 + 26;
        let found = |forged: Vec<u8>| {
            let (misread, f) = value_findings(forged);
            assert!(misread, "{f:?}");
            f
        };
        let column = "row group 0: column session_id: ";
        let why = " (other readers would decode other values)";
        // The first row using entry 1: readers show s1, and the dictionary
        // is not the writer's.
        let mut forged = bytes.to_vec();
        forged[values + 2] |= 1;
        let want = format!(
            "{column}dictionary indexes: index 1 used before index 0 (not the writer's order of first use){why}"
        );
        assert!(found(forged).contains(&want));
        // No row left using s2: indexes 0 and 1 need one bit, not two.
        let mut forged = bytes.to_vec();
        for b in &mut forged[indexes] {
            for k in 0..4 {
                if (*b >> (2 * k)) & 3 == 2 {
                    *b &= !(3 << (2 * k));
                }
            }
        }
        let want = format!("{column}dictionary indexes 2 bits wide where 1 hold them{why}");
        assert!(found(forged).contains(&want));
        // `session_seq` is i / 3: 34 entries, indexes 6 bits wide. Row 99,
        // the only one of 33, moved to 32 (bits 2-7 of the run's byte 74):
        // the width still fits, but entry 33 is one no page uses.
        let (_, values) = last_page(&bytes, col::SESSION_SEQ);
        assert_eq!(bytes[values..values + 2], [0x06, 0x1b]);
        let at = values + 2 + 74;
        assert_eq!(bytes[at] >> 2, 33);
        let mut forged = bytes.to_vec();
        forged[at] &= !(1 << 2);
        let want = format!(
            "row group 0: column session_seq: a dictionary of 34 entries whose pages use 33{why}"
        );
        let f = found(forged);
        assert!(f.contains(&want), "{f:?}");
        // s2 rewritten as s1 in the dictionary: two entries of one value.
        let meta = crate::footer_rules::metadata_as_written(&bytes).unwrap();
        let dict = chunk(&meta, col::SESSION_ID)
            .dictionary_page_offset()
            .unwrap() as usize;
        let s2 = bytes[dict..]
            .windows(6)
            .position(|w| w == b"\x02\0\0\0s2")
            .unwrap();
        let mut forged = bytes.to_vec();
        forged[dict + s2 + 5] = b'1';
        let want = format!("{column}a dictionary of 3 entries holding 2 distinct values{why}");
        assert!(found(forged).contains(&want));
    }

    #[test]
    fn only_the_writers_codecs_are_read() {
        // `session_id` declared GZIP: a review showed DuckDB and zlib
        // inflate different streams from one gzip body (DuckDB does not
        // skip the header's file name). Refused before any row is decoded.
        use parquet::basic::{Compression, GzipLevel};
        let forged = forge(|groups| {
            edit_column(groups, 0, col::SESSION_ID, |c| {
                c.set_compression(Compression::GZIP(GzipLevel::default()))
            })
        });
        let check = crate::pruning::PruningCheck::new(&Bytes::from(forged)).unwrap();
        assert!(check.pages_misread());
        assert_found(
            &check.findings_before_decoding(),
            &["row group 0: column session_id: compressed with GZIP"],
        );
    }

    #[test]
    fn delta_packed_values_are_the_writers_form() {
        let bytes = hundred_stored_rows();
        // `idx` 0..=99: 80 02 (blocks of 256) 04 (4 miniblocks) 64 (100
        // values) 00 (first 0), then one block: 02 (minimum delta 1) and
        // four miniblocks 0 bits wide.
        let (_, values) = last_page(&bytes, col::IDX);
        assert_eq!(
            bytes[values..values + 10],
            [0x80, 0x02, 0x04, 0x64, 0x00, 0x02, 0, 0, 0, 0]
        );
        // A header declaring 99 values: the file is not decoded, and the
        // finding says why.
        let mut forged = bytes.to_vec();
        forged[values + 3] = 0x63;
        let (misread, f) = value_findings(forged);
        assert!(misread);
        assert!(
            f.contains(&"row group 0: column idx: delta-packed values: a header of 99 values where the page has 100 (other readers would decode other values)".to_string()),
            "{f:?}"
        );
        // A miniblock declared 8 bits wide whose bytes then run past the page.
        let mut forged = bytes.to_vec();
        forged[values + 9] = 8;
        let (misread, f) = value_findings(forged);
        assert!(misread);
        assert!(
            f.iter()
                .any(|f| f.starts_with("row group 0: column idx: delta-packed values:")),
            "{f:?}"
        );
    }

    #[test]
    fn a_dictionary_that_falls_back_to_delta_encoded_byte_arrays_is_the_writers_form() {
        // 9,000 distinct session ids of 120 bytes outgrow the writer's 1 MiB
        // dictionary: later pages fall back to DELTA_BYTE_ARRAY. Such
        // segments must verify clean, and their values must be checked.
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut prev = [0u8; 32];
        let entries: Vec<Entry> = (0..9_000u64)
            .map(|i| {
                let ev = Event::from_value(serde_json::json!({
                    "session_id": format!("{:0>112}-{i:07}", "s"), "kind": "output", "content": "x"
                }))
                .unwrap();
                let e = Entry::seal(
                    ev,
                    Sequence {
                        ns: "t",
                        idx: i,
                        session_seq: 0,
                        received_at: 1_000 + i as i64,
                        ingested_by: "w",
                        salt: [i as u8; 32],
                        prev_chain: prev,
                    },
                )
                .unwrap();
                prev = e.chain_hash;
                e
            })
            .collect();
        let (_, bytes) = encode_with(&entries, &test_seal(&key), SegmentCompression::None).unwrap();
        let meta = crate::footer_rules::metadata_as_written(&bytes).unwrap();
        let pages = crate::page_headers::walk(&bytes, chunk(&meta, col::SESSION_ID)).unwrap();
        assert!(
            pages
                .encodings
                .contains(&(3, crate::page_headers::DELTA_BYTE_ARRAY)),
            "{:?}",
            pages.encodings
        );
        assert_eq!(value_findings(bytes.to_vec()), (false, vec![]));
        // The count in the header of the last page's prefix lengths, one off.
        let (page, values) = last_page(&bytes, col::SESSION_ID);
        assert_eq!(page.encoding, crate::page_headers::DELTA_BYTE_ARRAY);
        assert_eq!(bytes[values..values + 3], [0x80, 0x01, 0x04]);
        let mut forged = bytes.to_vec();
        match forged[values + 3] & 0x7f {
            0 => forged[values + 3] += 1,
            _ => forged[values + 3] -= 1,
        }
        let (misread, f) = value_findings(forged);
        assert!(misread);
        assert!(
            f.iter().any(|f| f.starts_with(
                "row group 0: column session_id: delta-encoded byte arrays: prefix lengths: a header of"
            )),
            "{f:?}"
        );
    }

    #[test]
    fn footer_summaries_are_the_pages_own() {
        // Fields that re-encode as they are and that the reviews saw no
        // reader act on, held to the pages anyway: a chunk's unpacked size,
        // its encodings and page counts by encoding, its size statistics,
        // and a row group's ordinal (readers splitting files use them).
        use parquet::basic::Encoding;
        type Edit = Box<dyn FnOnce(&mut Vec<parquet::file::metadata::RowGroupMetaData>)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "row group 0: column content: the footer declares",
                Box::new(|groups| {
                    let n = groups[0].column(segment_schema().index_of(col::CONTENT).unwrap());
                    let n = n.uncompressed_size() + 1;
                    edit_column(groups, 0, col::CONTENT, |c| {
                        c.set_total_uncompressed_size(n)
                    })
                }),
            ),
            (
                "row group 0: column idx: the footer lists encodings",
                Box::new(|groups| {
                    edit_column(groups, 0, col::IDX, |c| {
                        c.set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
                    })
                }),
            ),
            (
                "row group 1: column kind: the footer counts pages by encoding",
                Box::new(|groups| {
                    edit_column(groups, 1, col::KIND, |c| {
                        c.set_page_encoding_stats(Vec::new())
                    })
                }),
            ),
            (
                "row group 0: the size statistics of column session_id",
                Box::new(|groups| {
                    edit_column(groups, 0, col::SESSION_ID, |c| {
                        c.set_unencoded_byte_array_data_bytes(Some(1))
                    })
                }),
            ),
            (
                "row group 1: its ordinal, offset or sizes",
                Box::new(|groups| {
                    groups[1] = groups[1]
                        .clone()
                        .into_builder()
                        .set_ordinal(0)
                        .build()
                        .unwrap()
                }),
            ),
        ];
        for (want, edit) in cases {
            for findings in footer_findings(forge(edit)) {
                assert_found(&findings, &[want]);
            }
        }
    }

    #[test]
    fn statistics_marked_exact_must_be_the_rows_own() {
        // `idx` of group 0 (0..=16383) given a max of 10^9 marked exact:
        // it admits every row, but DuckDB answers max(idx) from it.
        use parquet::file::statistics::{Statistics, ValueStatistics};
        let st = ValueStatistics::new(Some(0i64), Some(1_000_000_000), None, Some(0), false)
            .with_min_is_exact(true)
            .with_max_is_exact(true);
        let st = crate::footer_rules::with_deprecated_min_max(Statistics::Int64(st));
        let widened = footer_findings(forge(|groups| set_statistics(groups, col::IDX, st)));
        for findings in widened {
            assert_eq!(
                findings,
                [
                    "row group 0: min/max statistics of column idx disagree with its rows (queries could skip rows)"
                ]
            );
        }
    }

    #[test]
    fn statistics_on_hash_columns_are_checked_too() {
        // The writer gives the hash columns no statistics; a forged footer
        // gives `leaf_hash` a min/max that leaves out some rows' hashes, by
        // which an outside tool would skip the group when asked for them.
        use parquet::data_type::FixedLenByteArray;
        use parquet::file::statistics::Statistics;
        let min = FixedLenByteArray::from(vec![0x00; 32]);
        let max = FixedLenByteArray::from(vec![0x80; 32]);
        let st = Statistics::fixed_len_byte_array(Some(min), Some(max), None, Some(0), false);
        let forged = footer_findings(forge(|groups| set_statistics(groups, col::LEAF_HASH, st)));
        for findings in forged {
            assert_eq!(
                findings,
                [
                    "row group 0: min/max statistics of column leaf_hash disagree with its rows (queries could skip rows)"
                ],
            );
        }
    }

    #[test]
    fn encode_decode_round_trip_with_valid_signature() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let entries = sample_entries(40);
        let seal = test_seal(&key);
        let (header, bytes) = encode(&entries, &seal).unwrap();
        assert_eq!((header.first, header.last, header.tree_size), (0, 39, 40));
        let d = decode(bytes.clone()).unwrap();
        assert_eq!(d.header, header);
        assert_eq!(d.entries, entries);
        assert!(verify_header_signature(
            &d.header,
            &d.signature,
            &key.verifying_key()
        ));
        assert!(!verify_header_signature(
            &d.header,
            &d.signature,
            &SigningKey::from_bytes(&[8; 32]).verifying_key()
        ));
        assert!(file_digest_matches(&header, &d.signature, &bytes));
        let mut flipped = bytes.to_vec();
        flipped[10] ^= 1;
        assert!(!file_digest_matches(&header, &d.signature, &flipped));
        // A flipped bit in the footer (statistics, indexes) is caught too.
        let footer = footer_range(&bytes).unwrap();
        let mut in_footer = bytes.to_vec();
        in_footer[footer.start + 3] ^= 1;
        assert!(!file_digest_matches(&header, &d.signature, &in_footer));
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(
            parse_segment_file_name(&segment_file_name(3, 99)),
            Some((3, 99))
        );
        assert_eq!(parse_segment_file_name("3-99.parquet"), None);
        let g = segment_file_name_gen(3, 99, 2);
        assert_eq!(g, "00000000000000000003-00000000000000000099-e0002.parquet");
        assert_eq!(parse_segment_name(&g), Some((3, 99, 2)));
        assert_eq!(
            parse_segment_name(&segment_file_name(3, 99)),
            Some((3, 99, 0))
        );
        for bad in ["-e0000", "-e2", "-e00002", "-e+002"] {
            let n = format!("{}{bad}.parquet", &segment_file_name(3, 99)[..41]);
            assert_eq!(parse_segment_name(&n), None, "{n}");
        }
    }
}
