//! `tracevault verify`: proves a store intact or says exactly what changed.
//!
//! Everything the format allows is checked, with nothing taken on trust from
//! the store except what the pinned key (or, failing that, `vault.json`)
//! signs: every segment's header signature and data digest; every row's
//! field digests, leaf hash and chain link (every link, not only the ends);
//! contiguous indexes with no duplicates; chain continuity across segments;
//! each header's tree root; every stored checkpoint's signature and root; and
//! consistency with a pinned checkpoint. Segments are fetched and checked in
//! parallel and streamed through the tree's open tiles (one hash per node),
//! so memory is bounded by the number of segments in flight, not the size of
//! the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use futures::StreamExt;

use crate::merkle::leaf_hash;
use crate::note;
use crate::record::{EntryRef, Hash, chain_next, field_digest};
use crate::segment::{self, SegmentHeader};
use crate::store::{Store, StoreError, layout};
use crate::tile_proofs::TileTree;
use crate::tiles::{self, TileBuilder, TileId};
use crate::vault::read_meta;

/// One integrity problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Namespace (empty for vault-level findings).
    pub ns: String,
    /// The object concerned.
    pub object: String,
    /// The entry index concerned, if any.
    pub index: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = if self.ns.is_empty() { "-" } else { &self.ns };
        write!(f, "ns={ns} object={}", self.object)?;
        if let Some(i) = self.index {
            write!(f, " index={i}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Per-namespace totals.
#[derive(Debug, Clone, Default)]
pub struct NsSummary {
    /// Namespace.
    pub ns: String,
    /// Entries found.
    pub entries: u64,
    /// Segments found.
    pub segments: usize,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// Segment bytes read.
    pub bytes: u64,
    /// Message bytes put through SHA-256 to check the segments (file
    /// digests, field digests, leaf hashes, chain links, Merkle nodes;
    /// without SHA-256's padding): `verify`'s speed against the hash bound.
    pub hashed: u64,
    /// Entries found erased (payload and salt removed), each checked
    /// against the erasure orders recorded in `_audit`.
    pub erased_entries: crate::erasure::IndexRanges,
    /// Number of erased entries found.
    pub erased: u64,
}

/// The outcome of a verification.
#[derive(Debug, Default)]
pub struct Report {
    /// Integrity failures (exit 1 when non-empty).
    pub findings: Vec<Finding>,
    /// Things worth knowing that are not failures.
    pub warnings: Vec<String>,
    /// What was checked.
    pub namespaces: Vec<NsSummary>,
}

/// Errors that stop verification (exit 2), as opposed to findings.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// See [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad arguments or an unusable store.
    #[error("{0}")]
    Usage(String),
}

/// Progress callback: called with bytes of each segment once checked.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// What to verify and against what.
#[derive(Default, Clone)]
pub struct VerifyOptions {
    /// Expected log key; otherwise the key in `vault.json` is used (with a warning).
    pub pinned_key: Option<VerifyingKey>,
    /// A checkpoint obtained earlier: the store must be consistent with it.
    pub pinned_checkpoint: Option<String>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Incremental (`verify --since`): with a pinned checkpoint, prove the
    /// store consistent with it through the tiles and check only the
    /// entries added after it (and the tiles and checkpoints they make).
    pub incremental: bool,
    /// Segments checked at once.
    pub concurrency: usize,
    /// Progress reporting.
    pub progress: Option<Progress>,
    /// Witness cosignatures the checkpoint presented as current (the pinned
    /// one, else the store's latest) must carry.
    pub witnesses: Option<crate::cosignature::WitnessPolicy>,
}

/// Most findings reported per segment before summarising.
const MAX_PER_SEGMENT: usize = 20;

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
struct SessionFacts {
    session_id: Arc<str>,
    session_seq: u64,
    received_at: i64,
}

/// The footer of a streamed segment.
struct DecodedFacts {
    header: SegmentHeader,
    signature: Vec<u8>,
}

struct SegmentOutcome {
    first: u64,
    last: u64,
    object: String,
    header: Option<SegmentHeader>,
    leaves: Vec<Hash>,
    /// Per leaf, in the same order: its chain hash and session facts.
    rows: Vec<(Hash, SessionFacts)>,
    chain_out: Option<Hash>,
    findings: Vec<Finding>,
    bytes: u64,
    /// Message bytes put through SHA-256 for this segment ([`NsSummary::hashed`]).
    hashed: u64,
    /// Indices of rows without payload and salt (erased), in row order.
    erased: Vec<u64>,
}

fn hex32(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok().map(|_| out)
}

/// Checks one segment file on its own (signature, digests, rows, chain).
fn check_segment(
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
    let mut rows: Vec<RowFacts> = Vec::new();
    let mut sessions: HashMap<String, Arc<str>> = HashMap::new();
    let mut content: Vec<(u64, String)> = Vec::new();
    let mut erased: Vec<u64> = Vec::new();
    // The file digest covers the file but its footer's two signed strings.
    let mut hashed = bytes.len() as u64;
    // One buffer for every row's committed record.
    let mut record = String::with_capacity(1024);
    let decoded = segment::decode_rows(bytes.clone(), |e| {
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
        let session_id = match sessions.get(e.session_id) {
            Some(id) => id.clone(),
            None => {
                let id: Arc<str> = e.session_id.into();
                sessions.insert(e.session_id.to_string(), id.clone());
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
            // The footer may still be intact: say whether the data pages changed.
            if let Ok((h, sig)) = segment::decode_header(&bytes)
                && segment::verify_header_signature(&h, &sig, key)
                && !segment::file_digest_matches(&h, &sig, &bytes)
            {
                find(
                    None,
                    "file bytes differ from the signed file digest (Parquet file changed)".into(),
                );
            }
            return out;
        }
    };
    // Statistics and bloom filters that would make a query skip rows.
    match crate::pruning::check_pruning_metadata(&bytes) {
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

/// Most findings reported per namespace for erased entries without an order.
const MAX_ERASURE_FINDINGS: usize = 20;

/// The erasure orders recorded in `_audit`, each step proven (see
/// [`proven_erasure_steps`]); steps that cannot be are findings, an
/// unreadable `_audit` a warning (then no erased entry is accepted).
async fn load_orders(
    store: &Store,
    vault_origin: &str,
    key: &VerifyingKey,
    report: &mut Report,
) -> crate::erasure::Orders {
    let audit = crate::AUDIT_NS;
    let mut orders = crate::erasure::Orders::new(Default::default());
    match proven_erasure_steps(store, vault_origin, key).await {
        Ok((steps, unproven)) => {
            for (idx, step) in steps {
                orders.apply(&step, idx);
            }
            for (idx, why) in unproven {
                report.findings.push(Finding {
                    ns: audit.into(),
                    object: format!("ns/{audit}"),
                    index: Some(idx),
                    message: format!(
                        "erasure step cannot be proven ({why}); its order does not count"
                    ),
                });
            }
        }
        Err(why) => report.warnings.push(format!(
            "erasure orders could not be read from {audit}: {why}; every erased entry is reported"
        )),
    }
    orders
}

/// Checks every erased entry found against the erasure orders: an entry
/// may lack its payload and salt only when an approved order (or a
/// retention run) lists it. The orders count only when each of their steps
/// is proven: its content matches its digest, its record its leaf, and that
/// leaf is in the `_audit` tree of the latest signed `_audit` checkpoint
/// (read through its tiles).
fn check_erasures(orders: &crate::erasure::Orders, report: &mut Report) {
    let audit = crate::AUDIT_NS;
    let mut findings = Vec::new();
    for s in &report.namespaces {
        let allowed = if s.ns == audit {
            // The access log is never erased.
            crate::erasure::IndexRanges::new()
        } else {
            orders.erasable(&s.ns)
        };
        let bad = s.erased_entries.minus(&allowed);
        for &(a, b) in bad.ranges().iter().take(MAX_ERASURE_FINDINGS) {
            let which = if a == b {
                format!("entry {a} has")
            } else {
                format!("entries {a}-{b} have")
            };
            findings.push(Finding {
                ns: s.ns.clone(),
                object: layout::segments(&s.ns).to_string(),
                index: Some(a),
                message: format!(
                    "{which} no content, attributes or salt, and no erasure order in {audit} covers them (payload removed, not erased)"
                ),
            });
        }
        if bad.ranges().len() > MAX_ERASURE_FINDINGS {
            findings.push(Finding {
                ns: s.ns.clone(),
                object: layout::segments(&s.ns).to_string(),
                index: None,
                message: format!(
                    "... and {} more ranges of entries erased without an order",
                    bad.ranges().len() - MAX_ERASURE_FINDINGS
                ),
            });
        }
    }
    report.findings.extend(findings);
}

/// The erasure steps of `_audit` below its latest signed checkpoint, each
/// proven, and the indices of those that could not be (with why).
#[allow(clippy::type_complexity)]
async fn proven_erasure_steps(
    store: &Store,
    vault_origin: &str,
    key: &VerifyingKey,
) -> Result<(Vec<(u64, crate::erasure::Step)>, Vec<(u64, String)>), String> {
    let audit = crate::AUDIT_NS;
    let Some(text) = store
        .get(&layout::latest_checkpoint(audit))
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok((Vec::new(), Vec::new()));
    };
    let text = String::from_utf8_lossy(&text).to_string();
    let cp = note::open_checkpoint(&text, &format!("{vault_origin}/{audit}"), key)
        .map_err(|e| format!("its latest checkpoint does not verify: {e}"))?;
    let reader = crate::LogReader::new(store.clone());
    let entries = reader
        .published_session_entries(audit, crate::erasure::ERASURES_SESSION, 0, cp.size)
        .await
        .map_err(|e| e.to_string())?;
    let mut tiles = TileTree::new(reader, audit, cp.size);
    tiles
        .trust(cp.root)
        .await
        .map_err(|e| format!("its tiles do not match its checkpoint: {e}"))?;
    let (mut steps, mut unproven) = (Vec::new(), Vec::new());
    for e in entries.into_iter().filter(|e| e.idx < cp.size) {
        let why = if !check_digests(&e.view()).is_empty() || e.is_erased() {
            Some("its content does not match its digest".to_string())
        } else if e
            .committed_record_bytes()
            .map(|r| leaf_hash(&r) != e.leaf_hash)
            .unwrap_or(true)
        {
            Some("its record does not match its leaf".to_string())
        } else {
            match tiles.leaf(e.idx).await {
                Ok(l) if l == e.leaf_hash => None,
                Ok(_) => Some("its leaf is not the one in the signed tree".to_string()),
                Err(err) => Some(format!("its leaf cannot be read from the tiles: {err}")),
            }
        };
        let step = e
            .content
            .as_deref()
            .and_then(|c| serde_json::from_str::<crate::erasure::Step>(c).ok());
        match (why, step) {
            (Some(w), _) => unproven.push((e.idx, w)),
            (None, None) => unproven.push((e.idx, "it is not an erasure step".into())),
            (None, Some(s)) => steps.push((e.idx, s)),
        }
    }
    Ok((steps, unproven))
}

/// Recomputes the field digests of an entry from its stored values. An
/// entry without its salt is erased: it must hold no value either (whether
/// an erasure order covers it is checked once the namespace is read).
fn check_digests(e: &EntryRef<'_>) -> Vec<String> {
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

/// Verifies a whole store (or one namespace of it).
pub async fn verify_store(store: &Store, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let mut report = Report::default();
    let meta = read_meta(store)
        .await
        .map_err(|e| VerifyError::Usage(e.to_string()))?;
    let namespaces = store.list_dirs(&layout::namespaces()).await?;
    let Some(meta) = meta else {
        if namespaces.is_empty() {
            return Err(VerifyError::Usage(format!(
                "{} holds no vault (no vault.json)",
                store.describe()
            )));
        }
        report.findings.push(Finding {
            ns: String::new(),
            object: "vault.json".into(),
            index: None,
            message: "vault.json is missing".into(),
        });
        return Ok(report);
    };
    let stored_key = meta.public_key();
    let key = match (&opts.pinned_key, &stored_key) {
        (Some(pinned), Ok(stored)) => {
            if pinned != stored {
                report.findings.push(Finding {
                    ns: String::new(),
                    object: "vault.json".into(),
                    index: None,
                    message: format!(
                        "vault key swapped: vault.json names {}, the pinned key is {}",
                        meta.log_public_key,
                        B64.encode(pinned.to_bytes())
                    ),
                });
            }
            *pinned
        }
        (Some(pinned), Err(e)) => {
            report.findings.push(Finding {
                ns: String::new(),
                object: "vault.json".into(),
                index: None,
                message: e.clone(),
            });
            *pinned
        }
        (None, Ok(stored)) => {
            report.warnings.push(format!(
                "no --key given: trusting the key recorded in vault.json ({}); pin it to detect a swapped key",
                meta.log_public_key
            ));
            *stored
        }
        (None, Err(e)) => return Err(VerifyError::Usage(format!("vault.json: {e}; pass --key"))),
    };
    let mut pinned = None;
    if let Some(text) = &opts.pinned_checkpoint {
        let origin = text.lines().next().unwrap_or_default().to_string();
        let ns = origin
            .strip_prefix(&format!("{}/", meta.origin))
            .ok_or_else(|| {
                VerifyError::Usage(format!(
                    "pinned checkpoint origin {origin:?} is not a namespace of this vault ({})",
                    meta.origin
                ))
            })?
            .to_string();
        match note::open_checkpoint(text, &origin, &key) {
            Ok(cp) => pinned = Some((ns, cp)),
            Err(e) => {
                return Err(VerifyError::Usage(format!(
                    "pinned checkpoint does not verify with the log key: {e}"
                )));
            }
        }
    }
    // A checkpoint of another namespace than the one asked for is a usage
    // error; the pinned namespace gone from the store is a finding (below).
    if let Some((pns, _)) = &pinned
        && let Some(only) = opts.namespace.as_ref().filter(|only| *only != pns)
    {
        return Err(VerifyError::Usage(format!(
            "the pinned checkpoint is of namespace {pns}, not of --namespace {only}"
        )));
    }
    let selected: Vec<String> = match &opts.namespace {
        Some(ns) if pinned.is_some() && !namespaces.contains(ns) => Vec::new(),
        Some(ns) => {
            if !namespaces.contains(ns) {
                return Err(VerifyError::Usage(format!(
                    "namespace {ns} is not in the store"
                )));
            }
            vec![ns.clone()]
        }
        None => namespaces,
    };
    let orders = load_orders(store, &meta.origin, &key, &mut report).await;
    for ns in selected {
        let origin = format!("{}/{ns}", meta.origin);
        let pin = pinned
            .as_ref()
            .filter(|(p, _)| *p == ns)
            .map(|(_, cp)| cp.clone());
        // A segment deleted mid-run (a live server merging) means the listing
        // is stale: check the namespace again from a fresh listing.
        let mut attempt = 0;
        loop {
            let mut part = Report::default();
            let (summary, vanished) = verify_namespace(
                store,
                &ns,
                &origin,
                &key,
                pin.clone(),
                opts,
                Arc::new(orders.performed(&ns)),
                &mut part,
            )
            .await?;
            if vanished && attempt < 3 {
                attempt += 1;
                continue;
            }
            if vanished {
                part.findings.push(Finding {
                    ns: ns.clone(),
                    object: layout::segments(&ns).to_string(),
                    index: None,
                    message: "segments kept disappearing while being read; verify a quiet store"
                        .into(),
                });
            }
            report.findings.extend(part.findings);
            report.warnings.extend(part.warnings);
            report.namespaces.push(summary);
            break;
        }
    }
    check_erasures(&orders, &mut report);
    if let Some((ns, _)) = &pinned
        && !report.namespaces.iter().any(|s| &s.ns == ns)
    {
        report.findings.push(Finding {
            ns: ns.clone(),
            object: format!("ns/{ns}"),
            index: None,
            message: "the pinned checkpoint's namespace is missing from the store (rollback)"
                .into(),
        });
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn verify_namespace(
    store: &Store,
    ns: &str,
    origin: &str,
    key: &VerifyingKey,
    pinned: Option<note::Checkpoint>,
    opts: &VerifyOptions,
    erased_by_orders: Arc<crate::erasure::IndexRanges>,
    report: &mut Report,
) -> Result<(NsSummary, bool), VerifyError> {
    let mut summary = NsSummary {
        ns: ns.to_string(),
        ..Default::default()
    };
    let key_id = note::key_id(origin, &key.to_bytes());
    // Checkpoints first, so their sizes are known while the tree is streamed,
    // and so that a live store's newer segments cannot look like a truncation.
    let cp_prefix = layout::checkpoints(ns);
    // By size; several objects may hold the same size (`checkpoints/{size}` and the pointer).
    let mut checkpoints: BTreeMap<u64, Vec<(String, note::Checkpoint)>> = BTreeMap::new();
    // Incremental: the state at the pinned size is proven through the tiles,
    // so only what was added after it is read.
    let since = pinned
        .clone()
        .filter(|_| opts.incremental && pinned.as_ref().is_some_and(|p| p.size > 0));
    let from = since.as_ref().map_or(0, |p| p.size);
    let names: Vec<String> = store
        .list_names(&cp_prefix)
        .await?
        .into_iter()
        .filter(|n| from == 0 || n.parse::<u64>().map_or(true, |size| size >= from))
        .collect();
    let fetched: Vec<(String, Result<Option<bytes::Bytes>, StoreError>)> =
        futures::stream::iter(names)
            .map(|name| {
                let p = object_store::path::Path::from(format!("{cp_prefix}/{name}"));
                async move {
                    let r = store.get(&p).await;
                    (name, r)
                }
            })
            .buffered(16)
            .collect()
            .await;
    let mut cp_objects: Vec<(String, String)> = Vec::new();
    for (name, r) in fetched {
        let object = format!("{cp_prefix}/{name}");
        let Some(bytes) = r? else { continue };
        cp_objects.push((object.clone(), String::from_utf8_lossy(&bytes).to_string()));
        if name.len() != 20 || name.parse::<u64>().is_err() {
            report.findings.push(Finding {
                ns: ns.into(),
                object,
                index: None,
                message: "unexpected object among checkpoints".into(),
            });
            cp_objects.pop();
        }
    }
    let latest_obj = layout::latest_checkpoint(ns).to_string();
    let latest_text = store
        .get(&layout::latest_checkpoint(ns))
        .await?
        .map(|b| String::from_utf8_lossy(&b).to_string());
    if let Some(t) = &latest_text {
        cp_objects.push((latest_obj.clone(), t.clone()));
    }
    // The newest checkpoint witnesses cosigned (with a witness policy).
    let cosigned_obj = layout::cosigned_checkpoint(ns).to_string();
    let cosigned_text = store
        .get(&layout::cosigned_checkpoint(ns))
        .await?
        .map(|b| String::from_utf8_lossy(&b).to_string());
    if let Some(t) = &cosigned_text {
        cp_objects.push((cosigned_obj.clone(), t.clone()));
    }
    let named_for_size = |o: &String| o != &latest_obj && o != &cosigned_obj;
    for (object, text) in &cp_objects {
        match note::open_checkpoint(text, origin, key) {
            Ok(cp) => {
                if named_for_size(object) && !object.ends_with(&format!("{:020}", cp.size)) {
                    report.findings.push(Finding {
                        ns: ns.into(),
                        object: object.clone(),
                        index: None,
                        message: format!(
                            "object name does not match the checkpoint's size {}",
                            cp.size
                        ),
                    });
                }
                checkpoints
                    .entry(cp.size)
                    .or_default()
                    .push((object.clone(), cp));
            }
            Err(e) => report.findings.push(Finding {
                ns: ns.into(),
                object: object.clone(),
                index: None,
                message: format!("checkpoint does not verify (forged or altered): {e}"),
            }),
        }
    }
    summary.checkpoints = cp_objects.len();
    if let Some(policy) = &opts.witnesses {
        let (object, text) = match (&pinned, &opts.pinned_checkpoint, &cosigned_text) {
            (Some(_), Some(t), _) => (format!("pinned checkpoint {origin}"), Some(t.clone())),
            (_, _, Some(t)) => (cosigned_obj.clone(), Some(t.clone())),
            _ => (latest_obj.clone(), latest_text.clone()),
        };
        // Say how far the witnessed history reaches: entries after the
        // cosigned checkpoint are not witnessed yet.
        if let (None, Some(c), Some(l)) = (&pinned, &cosigned_text, &latest_text) {
            let size = |t: &str| t.lines().nth(1).and_then(|n| n.parse::<u64>().ok());
            if let (Some(cs), Some(ls)) = (size(c), size(l))
                && cs < ls
            {
                report.warnings.push(format!(
                    "{ns}: witnessed up to size {cs} of {ls}: the newest {} entries are not cosigned yet",
                    ls - cs
                ));
            }
        }
        if let Some(message) = text.and_then(|t| policy.shortfall(&t)) {
            report.findings.push(Finding {
                ns: ns.into(),
                object,
                index: None,
                message,
            });
        }
    }
    // Tiles are listed after the checkpoints and before the segments: on a
    // live store a listed tile's segment is always in the later listing.
    let mut tiles = TileCheck::list(store, ns, from, report).await?;
    // Snapshots too: one written meanwhile is never beyond the segments.
    let mut states = StateCheck::list(store, ns, origin, key, since.is_none(), report).await?;
    // Segments are listed after the checkpoints: on a live store, segments
    // published meanwhile are only extra (not yet checkpointed), never a gap.
    let seg_prefix = layout::segments(ns);
    let names = store.list_names(&seg_prefix).await?;
    let tiling = crate::tiling::tile(names.iter().map(String::as_str));
    for name in &tiling.unexpected {
        report.findings.push(Finding {
            ns: ns.into(),
            object: format!("{seg_prefix}/{name}"),
            index: None,
            message: "unexpected object among segments".into(),
        });
    }
    // Incremental: a segment removed under the pin is still a finding (the
    // listing shows it for free), though its entries are not read.
    // (A missing tail is the rollback finding's, below.)
    let listed_end = tiling.cover.last().map_or(0, |c| c.1 + 1);
    if let Some((a, b)) = tiling.hole_below(from.min(listed_end)).filter(|_| from > 0) {
        report.findings.push(Finding {
            ns: ns.into(),
            object: seg_prefix.to_string(),
            index: Some(a),
            message: format!(
                "entries {a}-{b} are missing (segment dropped under the pinned checkpoint)"
            ),
        });
    }
    // Incremental: from the segment holding entry `from - 1` on (its chain
    // out is where the new entries' chain starts).
    let named: Vec<((u64, u64), String)> = tiling
        .all_named()
        .into_iter()
        .filter(|((_, last), _)| last + 1 >= from)
        .collect();
    let ranges: Vec<(u64, u64)> = named.iter().map(|(r, _)| *r).collect();
    summary.segments = ranges.len();

    let mut wanted: BTreeSet<u64> = checkpoints.keys().copied().collect();
    if let Some(p) = &pinned {
        wanted.insert(p.size);
    }

    // Stream segments: check in parallel, fold in index order.
    let concurrency = opts.concurrency.max(1);
    let checkers = &crate::worker_pool::WorkerPool::new("verify", concurrency)
        .map_err(|e| VerifyError::Usage(format!("cannot start the checking threads: {e}")))?;
    let key2 = *key;
    let mut stream = futures::stream::iter(named)
        .map(|((first, last), name)| {
            let path = layout::segment_named(ns, &name);
            let ns = ns.to_string();
            let erased_by_orders = erased_by_orders.clone();
            async move {
                let object = path.to_string();
                let bytes = store.get(&path).await?;
                let Some(bytes) = bytes else {
                    return Ok::<_, StoreError>(None);
                };
                let obj = object.clone();
                let ns2 = ns.clone();
                let must = erased_by_orders.clone();
                let out = checkers
                    .run(move || {
                        check_segment(&ns, (first, last), object, bytes, &key2, key_id, &must)
                    })
                    .await;
                // A file crafted to break the checker is a finding about that
                // file, never a reason to stop checking the rest of the store.
                let out = out.unwrap_or_else(|e| SegmentOutcome {
                    first,
                    last,
                    object: obj.clone(),
                    header: None,
                    leaves: Vec::new(),
                    rows: Vec::new(),
                    chain_out: None,
                    findings: vec![Finding {
                        ns: ns2,
                        object: obj,
                        index: None,
                        message: format!("segment could not be checked (malformed file): {e}"),
                    }],
                    bytes: 0,
                    hashed: 0,
                    erased: Vec::new(),
                });
                Ok(Some(out))
            }
        })
        // Two segments beyond the threads: a thread that finishes while an
        // earlier segment is still being checked (the fold takes segments in
        // order) starts on the next one instead of waiting.
        .buffered(concurrency + 2);
    // The tree as its tiles: the leaves folded so far, giving its root at
    // any size and every tile as it is completed, with one hash per node.
    let mut tree = TileBuilder::default();
    let mut vanished = false;
    let mut chain: Hash = [0; 32];
    // Incremental: the tree, tiles and chain resume at `from`; the chain is
    // taken from the first segment read (the proven prefix covers the rest).
    let mut resume_chain = false;
    if let Some(old) = &since {
        let newest = checkpoints.keys().next_back().copied().unwrap_or(0);
        match resume_from_tiles(store, ns, old, newest, &checkpoints).await {
            Ok(builder) => {
                tree = builder;
                resume_chain = true;
            }
            Err(message) => {
                report.findings.push(Finding {
                    ns: ns.into(),
                    object: format!("pinned checkpoint {origin} size {}", old.size),
                    index: None,
                    message,
                });
                return Ok((summary, false));
            }
        }
    }
    // The last segment folded into the tree: its first index and leaves.
    let mut cover: Option<(u64, Vec<Hash>)> = None;
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    // Why the tree could not be rebuilt past `tree.size()`, if it stopped early.
    let mut stopped: Option<String> = None;
    if wanted.contains(&tree.size()) {
        roots.insert(tree.size(), tree.root());
    }
    while let Some(res) = stream.next().await {
        let Some(seg) = res? else {
            // Deleted between listing and reading: a live server merged it.
            vanished = true;
            break;
        };
        summary.bytes += seg.bytes;
        summary.hashed += seg.hashed;
        // Every erased row, in the cover or in a leftover, must be under an
        // order (checked once `_audit` is read).
        if !seg.erased.is_empty() {
            summary
                .erased_entries
                .union(&crate::erasure::IndexRanges::from_sorted(
                    seg.erased.iter().copied(),
                ));
        }
        if let Some(p) = &opts.progress {
            p(seg.bytes);
        }
        report.findings.extend(seg.findings.iter().cloned());
        let find = |message: String| Finding {
            ns: ns.into(),
            object: seg.object.clone(),
            index: None,
            message,
        };
        // Incremental: the segment holding the pinned size's last entries
        // (its rows were checked above) is folded from the pin on, and the
        // chain is taken from it.
        let resuming = std::mem::take(&mut resume_chain);
        if seg.first < tree.size() && !resuming {
            // A segment inside the previous one (left by an interrupted merge)
            // is fine when it holds exactly the same entries.
            let same = cover.as_ref().is_some_and(|(cf, leaves)| {
                seg.first >= *cf
                    && seg.last < tree.size()
                    && seg.header.is_some()
                    && seg.leaves.len() as u64 == seg.last - seg.first + 1
                    && leaves.get((seg.first - cf) as usize..=(seg.last - cf) as usize)
                        == Some(&seg.leaves[..])
            });
            if !same {
                report.findings.push(find(format!(
                    "segment overlaps entries already covered up to {} with different entries (duplicate or forged segment)",
                    tree.size() - 1
                )));
            }
            continue;
        }
        if seg.first > tree.size() {
            let next = seg.object.rsplit('/').next().unwrap_or_default();
            report.findings.push(Finding {
                ns: ns.into(),
                object: seg_prefix.to_string(),
                index: Some(tree.size()),
                message: format!(
                    "entries {}-{} are missing (segment dropped; the next segment is {next})",
                    tree.size(),
                    seg.first - 1
                ),
            });
            // The tree cannot be rebuilt across a hole; stop folding.
            stopped = Some(format!(
                "entries {}-{} are missing",
                tree.size(),
                seg.first - 1
            ));
            break;
        }
        let Some(h) = &seg.header else {
            stopped = Some(format!("{} is unreadable", seg.object));
            break;
        };
        if seg.leaves.len() as u64 != seg.last - seg.first + 1 {
            // Row count findings were reported; the tree past here is meaningless.
            stopped = Some(format!("{} holds the wrong rows", seg.object));
            break;
        }
        if !resuming && hex32(&h.chain_in) != Some(chain) {
            report.findings.push(find("chain_in does not continue the previous segment's chain (segment replaced or reordered)".into()));
        }
        let skip = tree.size().saturating_sub(seg.first) as usize;
        for (i, leaf) in seg.leaves[skip..].iter().enumerate() {
            tiles.push(&mut tree, *leaf);
            if wanted.contains(&tree.size()) {
                roots.insert(tree.size(), tree.root());
            }
            if let Some((chain, facts)) = seg.rows.get(skip + i) {
                states.push(ns, tree.size() - 1, chain, facts, report);
                states.check_at(ns, tree.size(), &tree, report);
            }
        }
        tiles.check_pending(store, ns, report).await?;
        if B64.encode(tree.root()) != h.root {
            report.findings.push(find(format!(
                "signed header root does not match the tree at size {}",
                tree.size()
            )));
        }
        chain = seg.chain_out.unwrap_or(chain);
        cover = Some((seg.first, seg.leaves));
    }
    drop(stream);
    if vanished {
        return Ok((summary, true));
    }
    summary.entries = tree.size();
    summary.erased = summary.erased_entries.count();
    let last_range_end = ranges.iter().map(|(_, b)| b + 1).max().unwrap_or(0);
    if last_range_end > tree.size() && !report.findings.iter().any(|f| f.ns == ns) {
        report.findings.push(Finding {
            ns: ns.into(),
            object: seg_prefix.to_string(),
            index: Some(tree.size()),
            message: "entries after this index could not be checked".into(),
        });
    }
    let unchecked = |size: u64, what: &str| match &stopped {
        Some(why) => format!(
            "{what} covers {size} entries and could not be checked: the tree could only be rebuilt up to {} ({why})",
            tree.size()
        ),
        None => format!(
            "{what} covers {size} entries but the store holds only {} (tail truncated or segments dropped)",
            tree.size()
        ),
    };
    for (size, objects) in &checkpoints {
        for (object, cp) in objects {
            match roots.get(size) {
                Some(root) if *root == cp.root => {}
                Some(_) => report.findings.push(Finding {
                    ns: ns.into(),
                    object: object.clone(),
                    index: None,
                    message: format!("checkpoint root does not match the data at size {size}"),
                }),
                None => report.findings.push(Finding {
                    ns: ns.into(),
                    object: object.clone(),
                    index: Some(tree.size()),
                    message: unchecked(*size, "checkpoint"),
                }),
            }
        }
    }
    states.finish(ns, tree.size(), report);
    let max_cp = checkpoints.keys().next_back().copied().unwrap_or(0);
    tiles.finish(
        ns,
        from,
        max_cp.min(tree.size()),
        max_cp.max(tree.size()),
        stopped.is_none(),
        report,
    );
    let pointer_size = checkpoints
        .iter()
        .find(|(_, v)| v.iter().any(|(o, _)| o == &latest_obj))
        .map(|(s, _)| *s);
    let newest_immutable = checkpoints
        .iter()
        .rev()
        .find(|(_, v)| v.iter().any(|(o, _)| named_for_size(o)))
        .map(|(s, _)| *s);
    if let (Some(p), Some(n)) = (pointer_size, newest_immutable)
        && p < n
    {
        report.warnings.push(format!(
            "{ns}: the latest-checkpoint pointer ({p}) lags the newest checkpoint ({n})"
        ));
    }
    if tree.size() > max_cp {
        report.warnings.push(format!(
            "{ns}: entries {max_cp}..{} are not covered by a checkpoint yet",
            tree.size()
        ));
    }
    if let Some(p) = pinned {
        let object = format!("pinned checkpoint {origin} size {}", p.size);
        match roots.get(&p.size) {
            Some(root) if *root == p.root => {}
            Some(_) => report.findings.push(Finding {
                ns: ns.into(),
                object,
                index: None,
                message: format!(
                    "fork: the store's tree at size {} differs from the pinned checkpoint",
                    p.size
                ),
            }),
            None if stopped.is_some() => report.findings.push(Finding {
                ns: ns.into(),
                object,
                index: Some(tree.size()),
                message: unchecked(p.size, "the pinned checkpoint"),
            }),
            None => report.findings.push(Finding {
                ns: ns.into(),
                object,
                index: Some(tree.size()),
                message: format!(
                    "rollback: the pinned checkpoint covers {} entries, the store only {}",
                    p.size,
                    tree.size()
                ),
            }),
        }
    }
    Ok((summary, false))
}

/// The tree size a tile's content implies (its last hash's last leaf + 1;
/// `u64::MAX` when that is past 2^64, which `TileId::parse` refuses).
fn leaves_spanned(id: &TileId) -> u64 {
    let end = u128::from(id.index) * u128::from(tiles::TILE_WIDTH) + u128::from(id.width);
    u64::try_from(end << (tiles::TILE_HEIGHT * u32::from(id.level))).unwrap_or(u64::MAX)
}

/// The state of the tree at a pinned checkpoint `old`, read from the tiles
/// of the newest checkpoint (`newest`): the store's tree is proven
/// consistent from `old` to `newest` (RFC 6962, with both signed roots),
/// and the complete subtrees at `old` must hash to its signed root. Gives
/// the tree's open tiles at `old`, to fold the entries after it; or why the
/// store is not consistent with the pin.
async fn resume_from_tiles(
    store: &Store,
    ns: &str,
    old: &note::Checkpoint,
    newest: u64,
    checkpoints: &BTreeMap<u64, Vec<(String, note::Checkpoint)>>,
) -> Result<TileBuilder, String> {
    if newest < old.size {
        return Err(format!(
            "rollback: the pinned checkpoint covers {} entries, the store's newest checkpoint {newest}",
            old.size
        ));
    }
    let new_root = checkpoints
        .get(&newest)
        .and_then(|v| v.first())
        .map(|(_, cp)| cp.root)
        .ok_or("the store has no checkpoint to verify from")?;
    let reader = crate::reader::LogReader::new(store.clone());
    let mut tt = TileTree::new(reader, ns, newest);
    let unreadable =
        |e: crate::tile_proofs::ProofError| format!("the tiles could not be read: {e}");
    // Every tile read below is checked against the one above it, up to the
    // newest signed root.
    tt.trust(new_root).await.map_err(|e| format!("fork: {e}"))?;
    let proof = tt.consistency_proof(old.size).await.map_err(unreadable)?;
    crate::merkle::verify_consistency(old.size, newest, &proof, &old.root, &new_root).map_err(
        |e| format!("fork: the store's tiles are not consistent with the pinned checkpoint ({e})"),
    )?;
    let mut subtrees = Vec::new();
    for (height, index) in crate::merkle::perfect_subtrees(0, old.size) {
        subtrees.push(tt.subtree(height, index).await.map_err(unreadable)?);
    }
    if crate::merkle::fold_subtrees(&subtrees) != old.root {
        return Err("fork: the tiles at the pinned size do not hash to its root".into());
    }
    // The open tiles, read separately, must give the same root: never
    // resume on hashes that were not the ones checked above.
    let mut at_old = TileTree::new(crate::reader::LogReader::new(store.clone()), ns, old.size);
    let builder = at_old.builder().await.map_err(unreadable)?;
    if builder.root() != old.root {
        return Err("fork: the tiles at the pinned size do not hash to its root".into());
    }
    Ok(builder)
}

/// The session-state snapshots of a namespace against the state rebuilt
/// from its entries: each must say exactly the root, chain, newest
/// `received_at` and session counters of the entries under its size. One
/// with a lowered counter would make the writer reuse a `session_seq`.
/// (Incremental runs do not know the sessions under the pin: they only
/// check the snapshots' signatures.)
struct StateCheck {
    /// Snapshots not yet checked, by size.
    pending: BTreeMap<u64, (String, crate::session_state::SessionState)>,
    sessions: HashMap<Arc<str>, u64>,
    last_received: i64,
    chain: Hash,
    active: bool,
    /// session_seq findings so far (reported up to a cap).
    seq_findings: usize,
}

impl StateCheck {
    async fn list(
        store: &Store,
        ns: &str,
        origin: &str,
        key: &VerifyingKey,
        active: bool,
        report: &mut Report,
    ) -> Result<StateCheck, VerifyError> {
        let prefix = layout::states(ns);
        let mut pending = BTreeMap::new();
        for name in store.list_names(&prefix).await? {
            let object = format!("{prefix}/{name}");
            let find = |message: String| Finding {
                ns: ns.into(),
                object: object.clone(),
                index: None,
                message,
            };
            let Some(size) = crate::session_state::parse_state_name(&name) else {
                report.findings.push(find(
                    "unexpected object among session-state snapshots".into(),
                ));
                continue;
            };
            let Some(bytes) = store.get(&layout::state_at(ns, size)).await? else {
                continue; // superseded and removed meanwhile
            };
            match crate::session_state::SessionState::open(&bytes, origin, size, key) {
                Ok(st) => {
                    pending.insert(size, (object, st));
                }
                Err(e) => report.findings.push(find(format!(
                    "session-state snapshot does not verify (forged or altered): {e}"
                ))),
            }
        }
        Ok(StateCheck {
            pending,
            sessions: Default::default(),
            last_received: 0,
            chain: [0; 32],
            active,
            seq_findings: 0,
        })
    }

    fn push(&mut self, ns: &str, idx: u64, chain: &Hash, row: &SessionFacts, report: &mut Report) {
        if !self.active {
            return;
        }
        // (A shared id: cloning it allocates nothing.)
        let next = self.sessions.entry(row.session_id.clone()).or_insert(0);
        // The writer numbers each session 0, 1, 2, ...: a gap or a repeat
        // is an entry dropped, or a number handed out twice (as a lowered
        // counter in a snapshot would make it).
        if row.session_seq != *next {
            if self.seq_findings < MAX_PER_SEGMENT {
                report.findings.push(Finding {
                    ns: ns.into(),
                    object: format!("session {:?}", row.session_id),
                    index: Some(idx),
                    message: format!(
                        "session_seq {} where {} was next (entry dropped, or a number handed out twice)",
                        row.session_seq, *next
                    ),
                });
            }
            self.seq_findings += 1;
        }
        *next = (*next).max(row.session_seq.saturating_add(1));
        self.last_received = self.last_received.max(row.received_at);
        self.chain = *chain;
    }

    fn check_at(&mut self, ns: &str, size: u64, tree: &TileBuilder, report: &mut Report) {
        if !self.active {
            return;
        }
        let Some((object, st)) = self.pending.remove(&size) else {
            return;
        };
        let mut wrong = Vec::new();
        if st.root != tree.root() {
            wrong.push("root");
        }
        if st.chain != self.chain {
            wrong.push("chain");
        }
        if st.last_received != self.last_received {
            wrong.push("last received_at");
        }
        let mut sessions: Vec<(&str, u64)> =
            self.sessions.iter().map(|(s, n)| (&**s, *n)).collect();
        sessions.sort();
        if st.sessions.len() != sessions.len()
            || st
                .sessions
                .iter()
                .zip(&sessions)
                .any(|(a, b)| (a.0.as_str(), a.1) != *b)
        {
            wrong.push("session counters");
        }
        if !wrong.is_empty() {
            report.findings.push(Finding {
                ns: ns.into(),
                object,
                index: None,
                message: format!(
                    "session-state snapshot differs from the entries under size {size} ({})",
                    wrong.join(", ")
                ),
            });
        }
    }

    fn finish(self, ns: &str, size: u64, report: &mut Report) {
        if !self.active {
            return;
        }
        if self.seq_findings > MAX_PER_SEGMENT {
            report.findings.push(Finding {
                ns: ns.into(),
                object: "sessions".into(),
                index: None,
                message: format!(
                    "... and {} more session_seq problems",
                    self.seq_findings - MAX_PER_SEGMENT
                ),
            });
        }
        for (s, (object, _)) in self.pending {
            report.findings.push(Finding {
                ns: ns.into(),
                object,
                index: Some(size),
                message: format!(
                    "session-state snapshot covers {s} entries but the store holds only {size}"
                ),
            });
        }
    }
}

/// The stored tiles of a namespace against the tiles rebuilt from its
/// leaves: a changed tile, a tile a checkpoint needs that is missing, and a
/// tile beyond the data or under a name that is not a tile are findings.
struct TileCheck {
    /// Listed tiles not yet checked, by coordinates.
    listed: BTreeMap<TileId, String>,
    /// Tiles checked against the data.
    checked: BTreeSet<TileId>,
    /// Listed tiles whose content the leaves pushed so far determine.
    pending: Vec<(TileId, Vec<u8>)>,
}

impl TileCheck {
    /// Lists the tiles of `ns` that reach past entry `from` (all when 0).
    async fn list(
        store: &Store,
        ns: &str,
        from: u64,
        report: &mut Report,
    ) -> Result<TileCheck, StoreError> {
        let prefix = layout::tiles(ns);
        let mut listed = BTreeMap::new();
        for (rel, _) in store.list_recursive(&prefix).await? {
            let object = format!("{prefix}/{rel}");
            match TileId::parse(&format!("tile/{rel}")) {
                Some(id) if leaves_spanned(&id) <= from => {}
                Some(id) => {
                    listed.insert(id, object);
                }
                None => report.findings.push(Finding {
                    ns: ns.into(),
                    object,
                    index: None,
                    message: "unexpected object among tiles".into(),
                }),
            }
        }
        Ok(TileCheck {
            listed,
            checked: BTreeSet::new(),
            pending: Vec::new(),
        })
    }

    /// Pushes `leaf` onto `tree`, noting each listed tile it completes or grows.
    fn push(&mut self, tree: &mut TileBuilder, leaf: Hash) {
        let (listed, pending) = (&self.listed, &mut self.pending);
        tree.push(leaf, |id, hashes| {
            if listed.contains_key(&id) {
                pending.push((id, hashes.iter().flatten().copied().collect()));
            }
        });
    }

    /// Fetches and compares the tiles the leaves so far determine.
    async fn check_pending(
        &mut self,
        store: &Store,
        ns: &str,
        report: &mut Report,
    ) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        type Fetched = (TileId, Vec<u8>, Result<Option<bytes::Bytes>, StoreError>);
        let fetched: Vec<Fetched> = futures::stream::iter(pending)
            .map(|(id, want)| async move {
                let got = store.get(&layout::tile(ns, &id)).await;
                (id, want, got)
            })
            .buffered(16)
            .collect()
            .await;
        for (id, want, got) in fetched {
            let object = self.listed.remove(&id).unwrap_or_default();
            match got? {
                Some(b) if b[..] == want[..] => {}
                Some(_) => report.findings.push(Finding {
                    ns: ns.into(),
                    object,
                    index: u64::try_from(
                        (u128::from(id.index) * u128::from(tiles::TILE_WIDTH))
                            << (tiles::TILE_HEIGHT * u32::from(id.level)),
                    )
                    .ok(),
                    message: "tile does not hold the hashes of the log's entries (changed, or from another log)".into(),
                }),
                None => report.findings.push(Finding {
                    ns: ns.into(),
                    object,
                    index: None,
                    message: "tile vanished while being checked".into(),
                }),
            }
            self.checked.insert(id);
        }
        Ok(())
    }

    /// After the last leaf: tiles never matched are beyond the data (when
    /// they reach past both the data and the newest checkpoint: a tile of a
    /// checkpoint whose entries are gone is explained by that finding); the
    /// tiles the newest checkpoint (`size`) needs must all have been there.
    fn finish(
        self,
        ns: &str,
        from: u64,
        size: u64,
        reach: u64,
        complete: bool,
        report: &mut Report,
    ) {
        // (Incremental: the tiles under `from` were read to resume.)
        if from == 0 && self.checked.is_empty() && self.listed.is_empty() {
            if size > 0 {
                report.warnings.push(format!(
                    "{ns}: no tiles (a store written before tiles; a server builds them when it next opens the namespace)"
                ));
            }
            return;
        }
        if complete {
            let beyond = |id: &TileId| leaves_spanned(id) > reach;
            for (id, object) in self.listed.iter().filter(|(id, _)| beyond(id)) {
                report.findings.push(Finding {
                    ns: ns.into(),
                    object: object.clone(),
                    index: None,
                    message: format!("tile {} is beyond the log's data", id.path()),
                });
            }
        }
        for id in tiles::new_tiles(from, size) {
            let served = self.checked.contains(&id)
                || (id.is_partial() && self.checked.contains(&id.full()));
            if !served {
                report.findings.push(Finding {
                    ns: ns.into(),
                    object: layout::tile(ns, &id).to_string(),
                    index: None,
                    message: format!("tile is missing (checkpoint {size} needs it)"),
                });
            }
        }
    }
}
