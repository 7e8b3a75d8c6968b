//! One segment file checked on its own, before it is folded into the tree:
//! the header's signature, the file digest, the pruning metadata, every
//! row's field digests, leaf hash and chain link, and which indexes the rows
//! hold. What the fold needs of it (leaves, chain hashes, session facts)
//! comes back in a [`SegmentOutcome`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;

use super::{Finding, hex32};
use crate::merkle::leaf_hash;
use crate::record::{EntryRef, Hash, chain_next, field_digest};
use crate::segment::{self, SegmentHeader};

/// Most findings reported per segment before summarising.
pub(super) const MAX_PER_SEGMENT: usize = 20;

/// What the order checks need of a row.
struct RowFacts {
    idx: u64,
    leaf_hash: Hash,
    chain_hash: Hash,
    session: SessionFacts,
}

/// What the session-state snapshot check needs of a row.
/// A segment's rows share one copy of each session id (most sessions span
/// many rows), so checking a row allocates nothing.
#[derive(Clone)]
pub(super) struct SessionFacts {
    pub(super) session_id: Arc<str>,
    pub(super) session_seq: u64,
    pub(super) received_at: i64,
}

/// The footer of a streamed segment.
struct DecodedFacts {
    header: SegmentHeader,
    signature: Vec<u8>,
}

pub(super) struct SegmentOutcome {
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) object: String,
    pub(super) header: Option<SegmentHeader>,
    pub(super) leaves: Vec<Hash>,
    /// Per leaf, in the same order: its chain hash and session facts.
    pub(super) rows: Vec<(Hash, SessionFacts)>,
    pub(super) chain_out: Option<Hash>,
    pub(super) findings: Vec<Finding>,
    pub(super) bytes: u64,
    /// Message bytes put through SHA-256 for this segment ([`NsSummary::hashed`]).
    pub(super) hashed: u64,
    /// Indices of rows without payload and salt (erased), in row order.
    pub(super) erased: Vec<u64>,
}

/// For a segment whose rows cannot be checked: whether its footer is still
/// the signed one and its data pages changed.
fn changed_file(bytes: &bytes::Bytes, key: &VerifyingKey) -> Option<String> {
    let (h, sig) = segment::decode_header(bytes).ok()?;
    (segment::verify_header_signature(&h, &sig, key)
        && !segment::file_digest_matches(&h, &sig, bytes))
    .then(|| "file bytes differ from the signed file digest (Parquet file changed)".into())
}

/// Checks one segment file on its own (signature, digests, rows, chain).
pub(super) fn check_segment(
    ns: &str,
    (first, last): (u64, u64),
    object: String,
    bytes: bytes::Bytes,
    key: &VerifyingKey,
    key_id: [u8; 4],
    erased_by_orders: &crate::erasure::IndexRanges,
) -> SegmentOutcome {
    let mut out = SegmentOutcome {
        first,
        last,
        object: object.clone(),
        header: None,
        leaves: Vec::new(),
        rows: Vec::new(),
        chain_out: None,
        findings: Vec::new(),
        bytes: bytes.len() as u64,
        hashed: 0,
        erased: Vec::new(),
    };
    let mut find = |index: Option<u64>, message: String| {
        out.findings.push(Finding {
            ns: ns.to_string(),
            object: object.clone(),
            index,
            message,
        })
    };
    // Stream the rows: per-row content checks happen as rows are decoded, and
    // only (index, leaf, chain) of each row is kept for the order checks.
    // Sized up front from the object's name, at most one row per 64 bytes
    // of file (a row takes five 32-byte hashes and salts stored as they
    // are): a name cannot make the checker reserve more than the file.
    let mut rows: Vec<RowFacts> = Vec::with_capacity(
        (last.saturating_sub(first).saturating_add(1)).min(bytes.len() as u64 / 64) as usize,
    );
    // Statistics and bloom filters that would make a query skip rows,
    // checked on the batches decoded for the rows.
    let mut pruning = crate::pruning::PruningCheck::new(&bytes);
    // Pages that other readers would read otherwise are not decoded at all:
    // the rows `verify` would see are not the rows others see, and
    // parquet-rs panics on some such pages.
    if let Ok(p) = &pruning
        && p.pages_misread()
    {
        if let Ok(p) = pruning {
            for f in p.findings_before_decoding() {
                find(None, f);
            }
        }
        find(
            None,
            "rows not checked: its pages would not read the same for every reader".into(),
        );
        if let Some(f) = changed_file(&bytes, key) {
            find(None, f);
        }
        out.hashed = bytes.len() as u64;
        return out;
    }
    let mut sessions: HashMap<String, Arc<str>> = HashMap::new();
    let mut content: Vec<(u64, String)> = Vec::new();
    let mut erased: Vec<u64> = Vec::new();
    // The file digest covers the file but its footer's two signed strings.
    let mut hashed = bytes.len() as u64;
    // One buffer for every row's committed record.
    let mut record = String::with_capacity(1024);
    // Rows of one session often come together: the last one's id is reused
    // without a lookup.
    let mut last_session: Option<Arc<str>> = None;
    let observe = |group: usize, b: &arrow_array::RecordBatch| {
        if let Ok(p) = pruning.as_mut() {
            p.observe(group, b)
        }
    };
    let decoded = segment::decode_batches_and_rows(bytes.clone(), observe, |e| {
        // Per row: its field digests (domain, name, salt, value), leaf hash
        // (0x00 and the record), chain link (two hashes), and about one
        // Merkle node (0x01 and two hashes).
        let fields = [e.content, e.attributes]
            .iter()
            .filter_map(|v| v.map(|v| v.len() as u64 + 64))
            .sum::<u64>();
        hashed += fields + 64 + 65;
        if e.ns != ns {
            content.push((e.idx, format!("row names namespace {:?}", e.ns)));
        }
        for msg in check_digests(&e) {
            content.push((e.idx, msg));
        }
        if e.is_erased() {
            erased.push(e.idx);
        } else if erased_by_orders.contains(e.idx) {
            content.push((
                e.idx,
                "holds its payload though a performed erasure order erased it (erasure undone, or an old copy put back)".into(),
            ));
        }
        record.clear();
        match e.write_committed_record(&mut record) {
            Ok(()) => {
                hashed += record.len() as u64 + 1;
                if leaf_hash(record.as_bytes()) != e.leaf_hash {
                    content.push((
                        e.idx,
                        "committed record does not match its leaf hash (metadata edited)".into(),
                    ));
                }
            }
            Err(err) => content.push((e.idx, format!("committed record cannot be rebuilt: {err}"))),
        }
        let session_id = match &last_session {
            Some(id) if **id == *e.session_id => id.clone(),
            _ => {
                let id = match sessions.get(e.session_id) {
                    Some(id) => id.clone(),
                    None => {
                        let id: Arc<str> = e.session_id.into();
                        sessions.insert(e.session_id.to_string(), id.clone());
                        id
                    }
                };
                last_session = Some(id.clone());
                id
            }
        };
        rows.push(RowFacts {
            idx: e.idx,
            leaf_hash: e.leaf_hash,
            chain_hash: e.chain_hash,
            session: SessionFacts {
                session_id,
                session_seq: e.session_seq,
                received_at: e.received_at,
            },
        });
    });
    out.hashed = hashed;
    let seg = match decoded {
        Ok((header, signature)) => DecodedFacts { header, signature },
        Err(e) => {
            find(
                None,
                format!("segment is unreadable (file damaged or replaced): {e}"),
            );
            if let Some(f) = changed_file(&bytes, key) {
                find(None, f);
            }
            return out;
        }
    };
    match pruning.and_then(crate::pruning::PruningCheck::finish) {
        Ok(problems) => {
            for p in problems {
                find(None, p);
            }
        }
        Err(e) => find(
            None,
            format!("statistics and bloom filters are unreadable: {e}"),
        ),
    }
    let h = &seg.header;
    if !segment::verify_header_signature(h, &seg.signature, key) {
        if h.key_id != hex::encode(key_id) {
            find(
                None,
                format!(
                    "segment header is signed by another key (key id {}, expected {})",
                    h.key_id,
                    hex::encode(key_id)
                ),
            );
        } else {
            find(
                None,
                "segment header signature is invalid (header edited or re-signed)".into(),
            );
        }
    }
    if !segment::file_digest_matches(h, &seg.signature, &bytes) {
        find(
            None,
            "file bytes differ from the signed file digest (Parquet file changed)".into(),
        );
    }
    if (h.first, h.last) != (first, last) || h.tree_size != last + 1 || h.ns != ns {
        find(
            None,
            format!(
                "header says ns {} range {}-{} size {}, but the object is {ns} {first}-{last}",
                h.ns, h.first, h.last, h.tree_size
            ),
        );
    }
    let expected_rows = last.saturating_sub(first) + 1;
    if rows.len() as u64 != expected_rows {
        find(
            None,
            format!(
                "segment holds {} rows, expected {expected_rows} (row dropped or duplicated)",
                rows.len()
            ),
        );
    }
    let mut chain = match hex32(&h.chain_in) {
        Some(c) => c,
        None => {
            find(None, "header chain_in is not a hash".into());
            [0; 32]
        }
    };
    let mut reported = 0usize;
    let mut extra = 0usize;
    let mut row_findings: Vec<(Option<u64>, String)> = Vec::new();
    for (idx, msg) in content {
        if reported < MAX_PER_SEGMENT {
            row_findings.push((Some(idx), msg));
            reported += 1;
        } else {
            extra += 1;
        }
    }
    let mut report = |index: Option<u64>, message: String, out: &mut Vec<(Option<u64>, String)>| {
        if reported < MAX_PER_SEGMENT {
            out.push((index, message));
            reported += 1;
        } else {
            extra += 1;
        }
    };

    // Which indexes the rows hold: missing, duplicated, foreign or out of order.
    // The log is defined by index, so the chain and the tree are checked in
    // index order; row order is a separate finding.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    // What a sound segment holds: exactly `first..=last`, in order. Then
    // none of the checks below can find anything, so skip counting.
    let in_order = rows.len() as u64 == expected_rows
        && rows
            .iter()
            .enumerate()
            .all(|(p, e)| e.idx == first + p as u64);
    if !in_order {
        order.sort_by_key(|&p| (rows[p].idx, p));
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for e in &rows {
            *counts.entry(e.idx).or_default() += 1;
        }
        let mut next = first;
        for (&idx, &n) in &counts {
            if idx < first || idx > last {
                continue;
            }
            if idx > next {
                let msg = if idx - next == 1 {
                    format!("entry {next} is missing from the segment (row dropped)")
                } else {
                    format!(
                        "entries {next}-{} are missing from the segment (rows dropped)",
                        idx - 1
                    )
                };
                report(Some(next), msg, &mut row_findings);
            }
            if n > 1 {
                report(
                    Some(idx),
                    format!("entry {idx} appears {n} times (row duplicated)"),
                    &mut row_findings,
                );
            }
            next = idx + 1;
        }
        if next <= last {
            let msg = if next == last {
                format!("entry {next} is missing from the segment (row dropped)")
            } else {
                format!("entries {next}-{last} are missing from the segment (rows dropped)")
            };
            report(Some(next), msg, &mut row_findings);
        }
        let permutation = rows.len() as u64 == expected_rows
            && counts.len() as u64 == expected_rows
            && counts.keys().all(|i| (first..=last).contains(i));
        let mut prev_idx: Option<u64> = None;
        for (pos, e) in rows.iter().enumerate() {
            let want = first + pos as u64;
            if e.idx < first || e.idx > last {
                report(
                    Some(e.idx),
                    format!(
                        "row {pos} holds entry {}, outside the segment's range {first}-{last}",
                        e.idx
                    ),
                    &mut row_findings,
                );
            } else if permutation && e.idx != want {
                report(
                    Some(e.idx),
                    format!(
                        "row {pos} holds entry {}, expected {want} (rows reordered)",
                        e.idx
                    ),
                    &mut row_findings,
                );
            } else if !permutation && prev_idx.is_some_and(|p| e.idx < p) {
                report(
                    Some(e.idx),
                    format!(
                        "row {pos} holds entry {} after entry {} (rows reordered)",
                        e.idx,
                        prev_idx.unwrap_or(0)
                    ),
                    &mut row_findings,
                );
            }
            prev_idx = Some(e.idx);
        }
    }

    // Content: digests and leaf hash of every row; the chain in index order.
    let mut chain_before: Option<Hash> = None; // chain before the last index seen
    let mut last_seen: Option<u64> = None;
    for &pos in &order {
        let e = &rows[pos];
        let prev = match last_seen {
            None if e.idx == first => Some(chain),
            Some(l) if e.idx == l + 1 => Some(chain),
            Some(l) if e.idx == l => chain_before, // a duplicate: same predecessor
            _ => None,                             // after a gap (already reported)
        };
        if let Some(p) = prev
            && chain_next(&p, &e.leaf_hash) != e.chain_hash
        {
            report(
                Some(e.idx),
                "chain hash does not follow from the previous entry (chain broken)".into(),
                &mut row_findings,
            );
        }
        if last_seen != Some(e.idx) {
            chain_before = prev;
            chain = e.chain_hash;
            last_seen = Some(e.idx);
        }
        out.leaves.push(e.leaf_hash);
        out.rows.push((e.chain_hash, e.session.clone()));
    }
    if hex32(&h.chain_out) != Some(chain) {
        report(
            None,
            "last chain hash differs from the signed header's chain_out".into(),
            &mut row_findings,
        );
    }
    for (i, m) in row_findings {
        find(i, m);
    }
    if extra > 0 {
        find(
            None,
            format!("... and {extra} more problems in this segment"),
        );
    }
    out.chain_out = Some(chain);
    out.erased = erased;
    out.header = Some(seg.header);
    out
}

/// Recomputes the field digests of an entry from its stored values. An
/// entry without its salt is erased: it must hold no value either (whether
/// an erasure order covers it is checked once the namespace is read).
pub(super) fn check_digests(e: &EntryRef<'_>) -> Vec<String> {
    let mut msgs = Vec::new();
    let Some(salt) = &e.salt else {
        for (name, value) in [("content", e.content), ("attributes", e.attributes)] {
            if value.is_some() {
                msgs.push(format!(
                    "{name} present but the salt is gone (erased entry holding a value)"
                ));
            }
        }
        return msgs;
    };
    for (name, value, digest) in [
        ("content", e.content, e.content_digest),
        ("attributes", e.attributes, e.attributes_digest),
    ] {
        match (value, digest) {
            (Some(v), Some(d)) => {
                if field_digest(name, salt, v.as_bytes()) != d {
                    msgs.push(format!("{name} does not match its digest (value edited)"));
                }
            }
            (None, None) => {}
            (Some(_), None) => msgs.push(format!("{name} present without a digest")),
            (None, Some(_)) => msgs.push(format!(
                "{name} missing but its digest is present (value removed)"
            )),
        }
    }
    if e.content.is_some() != e.content_type.is_some() {
        msgs.push("content_type does not match the presence of content".into());
    }
    msgs
}
