//! Writing a bundle: mask the rows per the requester's profile, keep what
//! still proves them, and seal the whole with a signed manifest.

use std::io::{Read, Seek, Write};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracevault_vault::jcs;
use tracevault_vault::record::{ContentType, Entry, Hash};

use super::{ExportError, FORMAT, MANIFEST_DOMAIN, VERBATIM};
use crate::masking::Masker;

/// Rows per row group of `events.parquet`: small enough that a reader
/// showing a few rows (`tracevault replay --bundle`) decodes little.
const ROW_GROUP_ROWS: usize = 8192;

/// One selected entry and its inclusion proof against the bundle's checkpoint.
pub struct BundleRow {
    /// The entry as stored (unmasked; masked while writing).
    pub entry: Entry,
    /// RFC 6962 inclusion proof of `entry.leaf_hash` at the checkpoint size.
    pub proof: Vec<Hash>,
}

/// Everything a bundle states about itself besides the rows.
pub struct BundleInput {
    /// The export request's id.
    pub export_id: String,
    /// The namespace exported.
    pub ns: String,
    /// The signed checkpoint note the proofs are against.
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    /// SHA-256 (hex) of the frozen selection, as recorded at request time.
    pub selection_digest: String,
    /// Who requested it.
    pub requester: String,
    /// Who approved it.
    pub approvers: Vec<String>,
    /// When the bundle was made (RFC 3339).
    pub created_at: String,
    /// The request's history (one JSON value per line of `approvals.jsonl`,
    /// made by [`super::history_for`]).
    pub approvals: Vec<Value>,
    /// The signed `_audit` checkpoint the history's proofs are against.
    pub audit_checkpoint: String,
    /// The rows, in index order.
    pub rows: Vec<BundleRow>,
}

/// The columns of `events.parquet`: the `traces` columns (masked), the
/// content type, and the salt where every salted field is shown unmasked.
pub(crate) fn events_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("idx", DataType::UInt64, false),
        Field::new("ns", DataType::Utf8, false),
        s("session_id"),
        Field::new("session_seq", DataType::UInt64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("ts", ts(), true),
        Field::new("received_at", ts(), false),
        s("ingested_by"),
        s("event_id"),
        s("trace_id"),
        s("span_id"),
        s("parent_span_id"),
        s("name"),
        s("actor"),
        s("model"),
        s("content"),
        s("content_type"),
        s("attributes"),
        Field::new("salt", DataType::FixedSizeBinary(32), true),
        Field::new("leaf_hash", DataType::Utf8, false),
    ]))
}

/// One row after masking, and what masking withheld.
struct Masked {
    verbatim: Vec<Option<String>>,
    content: Option<String>,
    attributes: Option<String>,
    withheld: Vec<&'static str>,
}

fn mask_entry(m: &Masker, e: &Entry) -> Masked {
    let values = [
        Some(&e.session_id),
        Some(&e.ingested_by),
        e.event_id.as_ref(),
        e.trace_id.as_ref(),
        e.span_id.as_ref(),
        e.parent_span_id.as_ref(),
        e.name.as_ref(),
        e.actor.as_ref(),
        e.model.as_ref(),
    ];
    let mut withheld = Vec::new();
    let mut verbatim = Vec::with_capacity(VERBATIM.len());
    for (col, v) in VERBATIM.into_iter().zip(values) {
        let out = v.and_then(|v| m.mask_str(col, v).map(|c| c.into_owned()));
        if out.as_ref() != v {
            withheld.push(col);
        }
        verbatim.push(out);
    }
    let json = |col: &str, text: &str| -> Option<String> {
        match serde_json::from_str::<Value>(text) {
            Ok(mut j) => {
                if !m.mask_json(col, &mut j) {
                    Some(text.to_string())
                } else {
                    (!j.is_null()).then(|| j.to_string())
                }
            }
            // Stored JSON that does not parse: mask it as text (fail closed).
            Err(_) => m.mask_str(col, text).map(|c| c.into_owned()),
        }
    };
    let content = e.content.as_deref().and_then(|c| match e.content_type {
        Some(ContentType::Json) => json("content", c),
        _ => m.mask_str("content", c).map(|c| c.into_owned()),
    });
    if content != e.content {
        withheld.push("content");
    }
    let attributes = e.attributes.as_deref().and_then(|a| json("attributes", a));
    if attributes != e.attributes {
        withheld.push("attributes");
    }
    Masked {
        verbatim,
        content,
        attributes,
        withheld,
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn build(e: impl std::fmt::Display) -> ExportError {
    ExportError::Build(e.to_string())
}

/// Writes the bundle (a tar file) for `input` (with its `rows`) in memory,
/// masking with `masker` and signing the manifest with the log key. For
/// large selections, [`BundleWriter`] holds one chunk of rows at a time.
pub fn write_bundle(
    input: &BundleInput,
    masker: &Masker,
    key: &SigningKey,
) -> Result<Vec<u8>, ExportError> {
    let mut w = BundleWriter::new(input, masker, key, &std::env::temp_dir())?;
    w.push(&input.rows)?;
    let mut out = Vec::new();
    w.finish(&mut out)?;
    Ok(out)
}

/// A bundle written a chunk of rows at a time: rows go to
/// `events.parquet` and `proofs.jsonl` in unnamed temporary files (hashed
/// as they are written), and [`BundleWriter::finish`] writes the tar,
/// manifest first, copying the members from those files. Memory holds one
/// chunk and one Parquet row group, whatever the selection's size.
pub struct BundleWriter<'a> {
    input: &'a BundleInput,
    masker: &'a Masker,
    key: &'a SigningKey,
    parquet: ArrowWriter<std::fs::File>,
    proofs: std::io::BufWriter<std::fs::File>,
    proofs_hash: Sha256,
    proofs_len: u64,
    rows: u64,
}

impl<'a> BundleWriter<'a> {
    /// Starts a bundle for `input` (its `rows` are ignored: give them to
    /// [`BundleWriter::push`]); temporary files go to `tmp_dir`.
    pub fn new(
        input: &'a BundleInput,
        masker: &'a Masker,
        key: &'a SigningKey,
        tmp_dir: &std::path::Path,
    ) -> Result<BundleWriter<'a>, ExportError> {
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(build)?))
            .set_created_by("tracevault export".into())
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let tmp = || tempfile::tempfile_in(tmp_dir).map_err(build);
        Ok(BundleWriter {
            input,
            masker,
            key,
            parquet: ArrowWriter::try_new(tmp()?, events_schema(), Some(props)).map_err(build)?,
            proofs: std::io::BufWriter::new(tmp()?),
            proofs_hash: Sha256::new(),
            proofs_len: 0,
            rows: 0,
        })
    }

    /// Adds `rows` (in index order, after those already pushed).
    pub fn push(&mut self, rows: &[BundleRow]) -> Result<(), ExportError> {
        let n = rows.len();
        if n == 0 {
            return Ok(());
        }
        let masker = self.masker;
        let mut idx = UInt64Builder::with_capacity(n);
        let mut seq = UInt64Builder::with_capacity(n);
        let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut rec = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut ns = StringBuilder::new();
        let mut kind = StringBuilder::new();
        let mut verbatim: Vec<StringBuilder> =
            VERBATIM.iter().map(|_| StringBuilder::new()).collect();
        let (mut content, mut ctype, mut attrs, mut leaf) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut salt = FixedSizeBinaryBuilder::with_capacity(n, 32);
        for row in rows {
            let e = &row.entry;
            if e.ns != self.input.ns {
                return Err(build(format!(
                    "entry {} is not of namespace {}",
                    e.idx, self.input.ns
                )));
            }
            let m = mask_entry(masker, e);
            idx.append_value(e.idx);
            ns.append_value(&e.ns);
            seq.append_value(e.session_seq);
            kind.append_value(e.kind.as_str());
            ts.append_option(e.ts);
            rec.append_value(e.received_at);
            for (b, v) in verbatim.iter_mut().zip(&m.verbatim) {
                b.append_option(v.as_deref());
            }
            content.append_option(m.content.as_deref());
            ctype.append_option(e.content_type.map(ContentType::as_str));
            attrs.append_option(m.attributes.as_deref());
            // With anything of the row masked, the salt would let a recipient
            // rebuild the digests and confirm guesses of the masked value
            // (content, attributes, or a verbatim field) against the leaf.
            // An erased entry has no salt any more (nor values).
            match e.salt {
                Some(s) if m.withheld.is_empty() => salt.append_value(s).map_err(build)?,
                _ => salt.append_null(),
            }
            leaf.append_value(hex::encode(e.leaf_hash));
            let record = if m.withheld.iter().any(|f| VERBATIM.contains(f)) {
                Value::Null
            } else {
                let bytes = e.committed_record_bytes().map_err(build)?;
                serde_json::from_slice(&bytes).map_err(build)?
            };
            let mut line = json!({
                "index": e.idx,
                "leaf_hash": hex::encode(e.leaf_hash),
                "record": record,
                "withheld": m.withheld,
                "proof": row.proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
            });
            if e.is_erased() {
                // Its payload was erased under an order (docs/erasure.md):
                // the record and proof stand, the values are gone.
                line["erased"] = Value::Bool(true);
            }
            let mut line = line.to_string().into_bytes();
            line.push(b'\n');
            self.proofs_hash.update(&line);
            self.proofs_len += line.len() as u64;
            self.proofs.write_all(&line).map_err(build)?;
        }
        let mut cols: Vec<ArrayRef> = vec![Arc::new(idx.finish()), Arc::new(ns.finish())];
        let mut verbatim = verbatim
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let mut next = || verbatim.next().ok_or_else(|| build("column count"));
        cols.push(next()?); // session_id
        cols.push(Arc::new(seq.finish()));
        cols.push(Arc::new(kind.finish()));
        cols.push(Arc::new(ts.finish()));
        cols.push(Arc::new(rec.finish()));
        for _ in 1..VERBATIM.len() {
            cols.push(next()?); // ingested_by .. model
        }
        cols.push(Arc::new(content.finish()));
        cols.push(Arc::new(ctype.finish()));
        cols.push(Arc::new(attrs.finish()));
        cols.push(Arc::new(salt.finish()));
        cols.push(Arc::new(leaf.finish()));
        let batch = RecordBatch::try_new(events_schema(), cols).map_err(build)?;
        self.parquet.write(&batch).map_err(build)?;
        self.rows += n as u64;
        Ok(())
    }

    /// Seals the bundle: writes the tar to `out`.
    pub fn finish(self, out: &mut impl Write) -> Result<(), ExportError> {
        let input = self.input;
        let mut parquet = self.parquet.into_inner().map_err(build)?;
        let parquet_len = parquet.stream_position().map_err(build)?;
        parquet.rewind().map_err(build)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = parquet.read(&mut buf).map_err(build)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let parquet_hash = hex::encode(h.finalize());
        parquet.rewind().map_err(build)?;
        let mut proofs = self.proofs.into_inner().map_err(|e| build(e.error()))?;
        proofs.rewind().map_err(build)?;
        let proofs_hash = hex::encode(self.proofs_hash.finalize());

        let mut approvals = Vec::new();
        for a in &input.approvals {
            approvals.extend_from_slice(a.to_string().as_bytes());
            approvals.push(b'\n');
        }
        let members = json!({
            "checkpoint": sha256_hex(input.checkpoint.as_bytes()),
            "events.parquet": parquet_hash,
            "proofs.jsonl": proofs_hash,
            "approvals.jsonl": sha256_hex(&approvals),
            "audit_checkpoint": sha256_hex(input.audit_checkpoint.as_bytes()),
        });
        let manifest = json!({
            "format": FORMAT,
            "export_id": input.export_id,
            "ns": input.ns,
            "checkpoint_size": input.size,
            "rows": self.rows,
            "selection_digest": input.selection_digest,
            "requester": input.requester,
            "approvers": input.approvers,
            "masking_profile": self.masker.profile().name,
            "created_at": input.created_at,
            "members": members,
        });
        let manifest = jcs::to_canonical_vec(&manifest).map_err(build)?;
        let mut signed = MANIFEST_DOMAIN.to_vec();
        signed.extend_from_slice(&manifest);
        let sig = B64.encode(self.key.sign(&signed).to_bytes());

        let mut tar = tar::Builder::new(out);
        let mut add = |name: &str, size: u64, data: &mut dyn Read| {
            let mut h = tar::Header::new_ustar();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, name, data).map_err(build)
        };
        add("manifest.json", manifest.len() as u64, &mut &manifest[..])?;
        add("manifest.sig", sig.len() as u64, &mut sig.as_bytes())?;
        let cp = input.checkpoint.as_bytes();
        add("checkpoint", cp.len() as u64, &mut &cp[..])?;
        add("events.parquet", parquet_len, &mut parquet)?;
        add("proofs.jsonl", self.proofs_len, &mut proofs)?;
        add(
            "approvals.jsonl",
            approvals.len() as u64,
            &mut &approvals[..],
        )?;
        let acp = input.audit_checkpoint.as_bytes();
        add("audit_checkpoint", acp.len() as u64, &mut &acp[..])?;
        tar.finish().map_err(build)
    }
}
