//! Verifying a bundle offline, with only the log's verifier key: the
//! manifest's signature and member digests, the checkpoint's signature,
//! every committed record against its leaf hash and inclusion proof, and
//! every Parquet row against its committed record (fields the requester's
//! profile masked are reported as withheld, never as verified).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use arrow::array::{
    Array, FixedSizeBinaryArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracevault_schemas::Kind;
use tracevault_vault::record::{ContentType, Entry, Hash, field_digest};
use tracevault_vault::{jcs, merkle, note};

use super::{ExportError, FORMAT, MANIFEST_DOMAIN, MAX_MEMBER_BYTES, MEMBERS};

/// What verifying a bundle found. `findings` empty means intact.
#[derive(Debug, Default, serde::Serialize)]
pub struct BundleReport {
    /// The export id the manifest names.
    pub export_id: String,
    /// The namespace.
    pub ns: String,
    /// Checkpoint size the proofs are against.
    pub size: u64,
    /// Rows in `events.parquet`.
    pub rows: u64,
    /// Rows whose every shown field is bound to its committed record.
    pub bound: u64,
    /// Rows whose record is withheld (a verbatim column masked): only their
    /// leaf hash's inclusion is proven, not the row's values.
    pub unbound: u64,
    /// Masked fields, by name: withheld, not verified.
    pub withheld: BTreeMap<String, u64>,
    /// Rows whose content, attributes and salt were erased under an
    /// erasure order: their records and proofs stand, their values are gone.
    pub erased: u64,
    /// Workflow steps in `approvals.jsonl` proven in `_audit`.
    pub history_steps: u64,
    /// Of those, steps whose content is bound to their record (a step whose
    /// shown form was masked is proven included, not bound).
    pub history_bound: u64,
    /// Every integrity failure, one precise message each.
    pub findings: Vec<String>,
}

struct ProofLine {
    leaf: Hash,
    record: Option<Value>,
    withheld: Vec<String>,
    /// The entry's payload was erased (the manifest's signature covers
    /// this line, so only the vault can say so).
    erased: bool,
}

/// A 32-byte hash from hex.
pub(super) fn hash32(s: &str) -> Option<Hash> {
    hex::decode(s).ok()?.try_into().ok()
}

/// An inclusion proof from a JSON list of base64 hashes; `None` when it is
/// not one.
pub(super) fn proof_hashes(v: &Value) -> Option<Vec<Hash>> {
    v.as_array()?
        .iter()
        .map(|h| B64.decode(h.as_str()?).ok()?.try_into().ok())
        .collect()
}

/// Where each member's data lies in the file.
type Members = HashMap<String, Range<usize>>;

/// Locates the members of the tar file without copying them, refusing
/// oversized, truncated or non-regular ones. Unexpected and repeated
/// members are findings.
pub(crate) fn member_ranges(file: &[u8]) -> Result<(Members, Vec<String>), ExportError> {
    let bad = |e: std::io::Error| ExportError::Unreadable(format!("not a readable bundle: {e}"));
    let mut out = HashMap::new();
    let mut findings = Vec::new();
    let mut archive = tar::Archive::new(std::io::Cursor::new(file));
    let mut order = Vec::new();
    let mut end = 0u64;
    // Raw entries: every header as it is in the file. A bundle is plain
    // ustar members only, as the server writes it. PAX and GNU extension
    // headers (long names, sparse maps, size overrides) are refused: other
    // tar readers honour extensions this one ignores, so a member could
    // extract differently from what was hashed here.
    for entry in archive.entries_with_seek().map_err(bad)?.raw(true) {
        let entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular
            || entry.header().as_ustar().is_none()
        {
            return Err(ExportError::Unreadable(format!(
                "member {name:?} is not a plain ustar file (extension headers and other member types are refused)"
            )));
        }
        let size = entry.header().size().map_err(bad)?;
        if entry.size() != size {
            return Err(ExportError::Unreadable(format!(
                "member {name} has a PAX size ({}) that differs from its header size ({size})",
                entry.size()
            )));
        }
        if size > MAX_MEMBER_BYTES {
            return Err(ExportError::Unreadable(format!(
                "member {name} is {size} bytes, more than {MAX_MEMBER_BYTES}"
            )));
        }
        let start = entry.raw_file_position();
        let range = start
            .checked_add(size)
            .filter(|end| *end <= file.len() as u64)
            .map(|end| start as usize..end as usize)
            .ok_or_else(|| {
                ExportError::Unreadable(format!(
                    "not a readable bundle: member {name} is cut short"
                ))
            })?;
        end = end.max(range.end as u64);
        if !MEMBERS.contains(&name.as_str()) {
            findings.push(format!("unexpected member {name:?} (added to the bundle)"));
            continue;
        }
        order.push(name.clone());
        if out.insert(name.clone(), range).is_some() {
            findings.push(format!("member {name} appears twice"));
        }
    }
    if order.iter().map(String::as_str).ne(MEMBERS.iter().copied()) && out.len() == MEMBERS.len() {
        findings.push(format!(
            "members are not in the bundle's order ({})",
            MEMBERS.join(", ")
        ));
    }
    // After the last member (padded to a block) only the end-of-archive
    // zeros: bytes there are read by some tools and not by others.
    let after = (end.div_ceil(512) * 512).min(file.len() as u64) as usize;
    if file[after..].iter().any(|b| *b != 0) {
        findings.push("bytes after the end of the archive (appended to the bundle)".into());
    }
    Ok((out, findings))
}

/// Whether `manifest.sig` is `pubkey`'s signature of `manifest.json`.
fn manifest_signed<'a>(get: &impl Fn(&str) -> &'a [u8], pubkey: &VerifyingKey) -> bool {
    B64.decode(get("manifest.sig").trim_ascii())
        .ok()
        .and_then(|s| Signature::from_slice(&s).ok())
        .is_some_and(|sig| {
            let mut signed = MANIFEST_DOMAIN.to_vec();
            signed.extend_from_slice(get("manifest.json"));
            pubkey.verify(&signed, &sig).is_ok()
        })
}

/// Whether `file`'s rows are the ones the log key signed for: the manifest's
/// signature by `verifier_key` holds and `events.parquet` has the hash the
/// manifest gives. Cheap (one signature, one hash): what a reader that
/// decodes rows before the full check ([`verify_bundle`]) is done asks
/// first, since a crafted Parquet file of a few KB can ask for gigabytes.
pub fn rows_signed(file: &[u8], verifier_key: &str) -> Result<bool, ExportError> {
    let (_, pk) = note::parse_log_key(verifier_key)
        .map_err(|e| ExportError::Unreadable(format!("verifier key: {e}")))?;
    let pubkey = VerifyingKey::from_bytes(&pk)
        .map_err(|e| ExportError::Unreadable(format!("verifier key: {e}")))?;
    let (members, _) = member_ranges(file)?;
    let get = |m: &str| members.get(m).map_or(&[][..], |r| &file[r.clone()]);
    if !manifest_signed(&get, &pubkey) {
        return Ok(false);
    }
    let manifest: Value = serde_json::from_slice(get("manifest.json"))
        .map_err(|e| ExportError::Unreadable(format!("manifest.json: {e}")))?;
    Ok(manifest["members"]["events.parquet"].as_str()
        == Some(hex::encode(Sha256::digest(get("events.parquet"))).as_str()))
}

/// The origin line of the bundle's checkpoint (the log's name), for a key
/// given bare.
fn bundle_origin(file: &[u8]) -> Result<String, ExportError> {
    let (members, _) = member_ranges(file)?;
    members
        .get("checkpoint")
        .and_then(|r| std::str::from_utf8(&file[r.clone()]).ok())
        .and_then(|t| t.lines().next())
        .map(str::to_string)
        .ok_or_else(|| ExportError::Unreadable("the bundle has no readable checkpoint".into()))
}

/// Verifies `file` against `verifier_key` (the C2SP verifier key of the
/// bundle's namespace log, or the bare base64 log public key). `progress(done, total)` is called per row.
/// `Err` only when the file cannot be read as a bundle at all.
pub fn verify_bundle(
    file: &[u8],
    verifier_key: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BundleReport, ExportError> {
    verify_bundle_with(file, verifier_key, None, progress)
}

/// [`verify_bundle`], and the bundle's checkpoint must carry the
/// cosignatures `witnesses` asks for (a finding otherwise).
pub fn verify_bundle_with(
    file: &[u8],
    verifier_key: &str,
    witnesses: Option<&tracevault_vault::cosignature::WitnessPolicy>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BundleReport, ExportError> {
    let (name, pk) = note::parse_log_key(verifier_key)
        .map_err(|e| ExportError::Unreadable(format!("verifier key: {e}")))?;
    // A bare key: the log's name is the origin the bundle's checkpoint
    // claims, which the key must then have signed.
    let name = match name {
        Some(n) => n,
        None => bundle_origin(file)?,
    };
    let pubkey = VerifyingKey::from_bytes(&pk)
        .map_err(|e| ExportError::Unreadable(format!("verifier key: {e}")))?;
    let (members, mut findings) = member_ranges(file)?;
    let mut report = BundleReport::default();
    let missing: Vec<&str> = MEMBERS
        .iter()
        .copied()
        .filter(|m| !members.contains_key(*m))
        .collect();
    if !missing.is_empty() {
        findings.push(format!("members missing: {}", missing.join(", ")));
        report.findings = findings;
        return Ok(report);
    }
    let get = |m: &str| members.get(m).map_or(&[][..], |r| &file[r.clone()]);

    // The manifest and its signature.
    let manifest_bytes = get("manifest.json");
    let sig_ok = manifest_signed(&get, &pubkey);
    if !sig_ok {
        findings.push("manifest.sig: not a valid signature of manifest.json by this key (manifest changed or signed by another key)".into());
    }
    let manifest: Value = match serde_json::from_slice(manifest_bytes) {
        Ok(v) => v,
        Err(e) => {
            findings.push(format!("manifest.json: not JSON: {e}"));
            report.findings = findings;
            return Ok(report);
        }
    };
    if manifest["format"] != FORMAT {
        findings.push(format!(
            "manifest.json: format is {}, expected {FORMAT}",
            manifest["format"]
        ));
    }
    report.export_id = manifest["export_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    report.ns = manifest["ns"].as_str().unwrap_or_default().to_string();
    let mut changed = Vec::new();
    for m in &MEMBERS[2..] {
        let want = manifest["members"][*m].as_str().unwrap_or_default();
        if hex::encode(Sha256::digest(get(m))) != want {
            findings.push(format!(
                "{m}: SHA-256 differs from the manifest (member changed)"
            ));
            changed.push(*m);
        }
    }

    // The checkpoint.
    let cp = match std::str::from_utf8(get("checkpoint"))
        .map_err(|e| e.to_string())
        .and_then(|t| note::open_checkpoint(t, &name, &pubkey).map_err(|e| e.to_string()))
    {
        Ok(cp) => cp,
        Err(e) => {
            findings.push(format!("checkpoint: {e}"));
            report.findings = findings;
            return Ok(report);
        }
    };
    report.size = cp.size;
    if let Some(why) = witnesses.and_then(|p| {
        std::str::from_utf8(get("checkpoint"))
            .ok()
            .and_then(|t| p.shortfall(t))
    }) {
        findings.push(format!("checkpoint: {why}"));
    }
    if manifest["checkpoint_size"].as_u64() != Some(cp.size) {
        findings.push(format!(
            "checkpoint: size {} but the manifest says {}",
            cp.size, manifest["checkpoint_size"]
        ));
    }
    if !cp.origin.ends_with(&format!("/{}", report.ns)) {
        findings.push(format!(
            "checkpoint: log {} is not the log of namespace {}",
            cp.origin, report.ns
        ));
    }

    // The history: who asked and who approved, proven in `_audit`.
    let history = super::history::check_history(
        get("approvals.jsonl"),
        get("audit_checkpoint"),
        &name,
        &pubkey,
        &manifest,
        witnesses,
        &mut findings,
    );
    report.history_steps = history.steps;
    report.history_bound = history.bound;

    // Proofs: each record hashes to its leaf, each leaf is in the tree.
    let mut proofs: HashMap<u64, ProofLine> = HashMap::new();
    for (n, line) in get("proofs.jsonl").split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                findings.push(format!("proofs.jsonl line {}: not JSON: {e}", n + 1));
                continue;
            }
        };
        let (Some(index), Some(leaf)) = (
            v["index"].as_u64(),
            v["leaf_hash"].as_str().and_then(hash32),
        ) else {
            findings.push(format!(
                "proofs.jsonl line {}: no index or leaf_hash",
                n + 1
            ));
            continue;
        };
        let proof = proof_hashes(&v["proof"]);
        let Some(proof) = proof else {
            findings.push(format!(
                "entry {index}: inclusion proof is not a list of base64 hashes"
            ));
            continue;
        };
        if let Err(e) = merkle::verify_inclusion(&leaf, index, cp.size, &proof, &cp.root) {
            findings.push(format!(
                "entry {index}: inclusion proof does not reach the checkpoint root ({e})"
            ));
        }
        let record = (!v["record"].is_null()).then(|| v["record"].clone());
        if let Some(r) = &record {
            match jcs::to_canonical_vec(r) {
                Ok(bytes) if merkle::leaf_hash(&bytes) == leaf => {}
                Ok(_) => findings.push(format!(
                    "entry {index}: committed record does not hash to its leaf hash (record changed)"
                )),
                Err(e) => findings.push(format!("entry {index}: committed record: {e}")),
            }
        }
        let withheld = v["withheld"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let line = ProofLine {
            leaf,
            record,
            withheld,
            erased: v["erased"] == Value::Bool(true),
        };
        if proofs.insert(index, line).is_some() {
            findings.push(format!("entry {index}: two proofs (row duplicated)"));
        }
    }

    // The rows are the selection the approvers saw.
    let mut listed: Vec<(u64, Hash)> = proofs.iter().map(|(i, p)| (*i, p.leaf)).collect();
    listed.sort_unstable();
    if manifest["selection_digest"].as_str() != Some(super::selection_digest(listed).as_str()) {
        findings.push(
            "proofs.jsonl: the rows are not the approved selection (selection_digest differs)"
                .into(),
        );
    }

    // Rows: each bound to its committed record, one batch at a time. Only
    // from a file the key signed for: a Parquet file is a program for its
    // reader's memory (a few KB can describe gigabytes of values), so one
    // that is already known not to be the exported one is not decoded.
    if !sig_ok || changed.contains(&"events.parquet") {
        findings.push(
            "events.parquet: not decoded, since the manifest's signature or its hash does not hold"
                .into(),
        );
        report.findings = findings;
        return Ok(report);
    }
    let file = Bytes::copy_from_slice(get("events.parquet"));
    let reader = tracevault_vault::parquet_input::load(&file)
        .map_err(|e| e.to_string())
        .and_then(|meta| {
            let total = meta.metadata().file_metadata().num_rows().max(0) as u64;
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
                .with_batch_size(4096)
                .build()
                .map(|r| (total, r))
                .map_err(|e| e.to_string())
        });
    let (total, reader) = match reader {
        Ok(r) => r,
        Err(e) => {
            findings.push(format!("events.parquet: unreadable: {e}"));
            report.findings = findings;
            return Ok(report);
        }
    };
    let mut seen: HashMap<u64, ()> = HashMap::new();
    let mut done = 0u64;
    for b in reader {
        let b = match b {
            Ok(b) => b,
            Err(e) => {
                findings.push(format!("events.parquet: unreadable after {done} rows: {e}"));
                report.findings = findings;
                return Ok(report);
            }
        };
        match rows_of(&b) {
            Ok(rows) => {
                for row in rows {
                    check_row(&row, &proofs, &mut report, &mut findings);
                    if seen.insert(row.idx, ()).is_some() {
                        findings.push(format!("entry {}: row appears twice", row.idx));
                    }
                    done += 1;
                    progress(done, total);
                }
            }
            Err(e) => findings.push(format!("events.parquet: {e}")),
        }
    }
    report.rows = done;
    let mut dropped: Vec<u64> = proofs
        .keys()
        .filter(|i| !seen.contains_key(i))
        .copied()
        .collect();
    dropped.sort_unstable();
    for i in dropped.iter().take(20) {
        findings.push(format!("entry {i}: has a proof but no row (row dropped)"));
    }
    if dropped.len() > 20 {
        findings.push(format!("... and {} more rows dropped", dropped.len() - 20));
    }
    if manifest["rows"].as_u64() != Some(done) {
        findings.push(format!(
            "events.parquet: {done} rows, the manifest says {}",
            manifest["rows"]
        ));
    }
    report.findings = findings;
    Ok(report)
}

/// One row of `events.parquet`, as stored in the bundle.
pub(crate) struct Row {
    idx: u64,
    pub(crate) entry: Entry,
    pub(crate) leaf: Option<Hash>,
    salt: Option<[u8; 32]>,
}

pub(crate) fn rows_of(b: &RecordBatch) -> Result<Vec<Row>, String> {
    let s = |n: &str| {
        b.column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| format!("column {n} missing or mistyped"))
    };
    let u = |n: &str| {
        b.column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .ok_or_else(|| format!("column {n} missing or mistyped"))
    };
    let t = |n: &str| {
        b.column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or_else(|| format!("column {n} missing or mistyped"))
    };
    let (idx, seq, ts, rec) = (u("idx")?, u("session_seq")?, t("ts")?, t("received_at")?);
    let salt = b
        .column_by_name("salt")
        .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
        .ok_or("column salt missing or mistyped")?;
    let names = [
        "ns",
        "session_id",
        "kind",
        "ingested_by",
        "event_id",
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "actor",
        "model",
        "content",
        "content_type",
        "attributes",
        "leaf_hash",
    ];
    let cols: Vec<&StringArray> = names.iter().map(|n| s(n)).collect::<Result<_, _>>()?;
    let get = |c: usize, i: usize| (!cols[c].is_null(i)).then(|| cols[c].value(i).to_string());
    let mut out = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let kind = get(2, i).unwrap_or_default();
        let entry = Entry {
            ns: get(0, i).unwrap_or_default(),
            idx: idx.value(i),
            session_id: get(1, i).unwrap_or_default(),
            session_seq: seq.value(i),
            kind: Kind::parse(&kind)
                .ok_or_else(|| format!("row {}: unknown kind {kind:?}", idx.value(i)))?,
            ts: (!ts.is_null(i)).then(|| ts.value(i)),
            received_at: rec.value(i),
            ingested_by: get(3, i).unwrap_or_default(),
            event_id: get(4, i),
            trace_id: get(5, i),
            span_id: get(6, i),
            parent_span_id: get(7, i),
            name: get(8, i),
            actor: get(9, i),
            model: get(10, i),
            content: get(11, i),
            content_type: get(12, i).and_then(|c| ContentType::parse(&c)),
            attributes: get(13, i),
            // Not shipped with the row (see `Row::salt`); zero, as the
            // digests and chain hash, so the entry never reads as erased:
            // the proof line says whether it is.
            salt: Some([0; 32]),
            content_digest: None,
            attributes_digest: None,
            leaf_hash: [0; 32],
            chain_hash: [0; 32],
        };
        out.push(Row {
            idx: idx.value(i),
            entry,
            leaf: get(14, i).as_deref().and_then(hash32),
            salt: (!salt.is_null(i))
                .then(|| salt.value(i).try_into().ok())
                .flatten(),
        });
    }
    Ok(out)
}

/// Binds one row to its proof line: same leaf hash, and (when the record is
/// shown) the record rebuilt from the row's values is byte for byte the
/// record that hashes to the leaf.
fn check_row(
    row: &Row,
    proofs: &HashMap<u64, ProofLine>,
    report: &mut BundleReport,
    findings: &mut Vec<String>,
) {
    let i = row.idx;
    let Some(p) = proofs.get(&i) else {
        findings.push(format!(
            "entry {i}: row has no proof (row added or swapped in)"
        ));
        return;
    };
    if row.leaf != Some(p.leaf) {
        findings.push(format!(
            "entry {i}: row's leaf_hash differs from its proof's (row swapped)"
        ));
        return;
    }
    for f in &p.withheld {
        *report.withheld.entry(f.clone()).or_default() += 1;
    }
    if p.erased {
        if row.salt.is_some() || row.entry.content.is_some() || row.entry.attributes.is_some() {
            findings.push(format!(
                "entry {i}: marked erased but the row holds a value or salt"
            ));
            return;
        }
        report.erased += 1;
    }
    let Some(record) = &p.record else {
        if !p
            .withheld
            .iter()
            .any(|f| super::VERBATIM.contains(&f.as_str()))
        {
            findings.push(format!(
                "entry {i}: committed record withheld though no verbatim column is masked"
            ));
            return;
        }
        report.unbound += 1;
        return;
    };
    // Without the salt, a shown (unmasked) content or attributes value is
    // not tied to its digest: say so rather than count it verified.
    if row.salt.is_none() {
        for (f, shown) in [
            ("content", row.entry.content.is_some()),
            ("attributes", row.entry.attributes.is_some()),
        ] {
            if shown && !p.withheld.iter().any(|w| w == f) {
                *report
                    .withheld
                    .entry(format!("{f} (unverified: salt withheld)"))
                    .or_default() += 1;
            }
        }
    }
    let digest = |field: &str, value: &Option<String>| -> Option<Hash> {
        match (row.salt, value) {
            (Some(salt), Some(v)) => Some(field_digest(field, &salt, v.as_bytes())),
            // Withheld (masked): take the record's digest, the value is not verified.
            _ => record[format!("{field}_digest")].as_str().and_then(hash32),
        }
    };
    let mut e = row.entry.clone();
    e.content_digest = digest("content", &e.content);
    e.attributes_digest = digest("attributes", &e.attributes);
    if row.salt.is_none()
        && (e.content.is_some() || e.attributes.is_some())
        && !p
            .withheld
            .iter()
            .any(|f| f == "content" || f == "attributes")
    {
        findings.push(format!(
            "entry {i}: salt missing though nothing is withheld"
        ));
        return;
    }
    let rebuilt = e
        .committed_record_bytes()
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    match rebuilt {
        Some(r) if &r == record => report.bound += 1,
        Some(Value::Object(r)) => {
            let mut fields: Vec<&str> = r
                .iter()
                .filter(|(k, v)| record.get(k.as_str()) != Some(*v))
                .map(|(k, _)| k.as_str())
                .collect();
            if let Value::Object(want) = record {
                fields.extend(
                    want.keys()
                        .filter(|k| !r.contains_key(*k))
                        .map(String::as_str),
                );
            }
            findings.push(format!(
                "entry {i}: row differs from its committed record in {} (row changed)",
                fields.join(", ")
            ));
        }
        _ => findings.push(format!("entry {i}: row cannot be turned into a record")),
    }
}
