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
//!
//! This module lists the store, has the segments checked in parallel and
//! hands them in index order to `fold` (the tree, the chain and the roots
//! rebuilt from their leaves); the other parts check one thing each:
//! `checkpoint_check` (the stored checkpoints, read first, and their roots
//! against the tree), `segment_check` (a segment file on its own),
//! `tree_check` (the stored tiles, and where an incremental run resumes),
//! `state_check` (session-state snapshots) and `erasure_orders` (erased
//! entries against the orders in `_audit`).

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use futures::StreamExt;

use crate::note;
use crate::record::Hash;
use crate::store::{Store, StoreError, layout};
use crate::vault::read_meta;

mod checkpoint_check;
mod erasure_orders;
mod fold;
mod segment_check;
mod state_check;
mod tree_check;

use checkpoint_check::{Rebuilt, check_pinned_root, check_stored_roots, read_checkpoints};
use erasure_orders::{check_erasures, load_orders};
use fold::{Fold, Folding};
use segment_check::{SegmentOutcome, check_segment};
use state_check::StateCheck;
use tree_check::{TileCheck, resume_from_tiles};

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
    /// With `witnesses`: entries past the newest checkpoint that meets the
    /// policy are a finding, not a warning (`verify --require-witnessed`).
    pub require_witnessed: bool,
}

fn hex32(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok().map(|_| out)
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
    // Incremental: the state at the pinned size is proven through the tiles,
    // so only what was added after it is read.
    let since = pinned
        .clone()
        .filter(|_| opts.incremental && pinned.as_ref().is_some_and(|p| p.size > 0));
    let from = since.as_ref().map_or(0, |p| p.size);
    // Checkpoints first, so their sizes are known while the tree is streamed,
    // and so that a live store's newer segments cannot look like a truncation.
    let read =
        read_checkpoints(store, ns, origin, key, from, pinned.as_ref(), opts, report).await?;
    let checkpoints = read.by_size;
    summary.checkpoints = read.objects;
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
    let first_read = ranges.first().map(|r| r.0);
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
    // Incremental: the tree, tiles and chain resume at `from`; the chain is
    // taken from the first segment read (the proven prefix covers the rest).
    let resumed = match &since {
        None => None,
        Some(old) => {
            let newest = checkpoints.keys().next_back().copied().unwrap_or(0);
            match resume_from_tiles(store, ns, old, newest, &checkpoints).await {
                Ok(builder) => Some(builder),
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
    };
    let resuming = resumed.is_some();
    let mut fold = Fold::new(ns, resumed, wanted);
    // Incremental: the chain is not in the checkpoint, so the resumed
    // segment's `chain_in` is held to the signed `chain_out` of the segment
    // before it (or to the empty chain at the log's start).
    if resuming && let Some(first) = first_read {
        let anchor = if first == 0 {
            Ok(Some([0; 32]))
        } else {
            previous_chain_out(store, ns, &tiling, first, key).await
        };
        match anchor {
            Ok(Some(chain)) => fold.anchor_resume(chain),
            // No segment ends there: the listing's hole is already a finding.
            Ok(None) => {}
            Err(message) => report.findings.push(Finding {
                ns: ns.into(),
                object: format!("segment before entry {first}"),
                index: None,
                message,
            }),
        }
    }
    let mut vanished = false;
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
        let mut with = Folding {
            store,
            seg_prefix: &seg_prefix,
            tiles: &mut tiles,
            states: &mut states,
            report,
        };
        if !fold.take(seg, &mut with).await? {
            break;
        }
    }
    let Fold {
        tree,
        roots,
        stopped,
        ..
    } = fold;
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
    let rebuilt = Rebuilt {
        roots: &roots,
        size: tree.size(),
        stopped: stopped.as_deref(),
    };
    check_stored_roots(ns, &checkpoints, from, &rebuilt, report);
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
    if tree.size() > max_cp {
        report.warnings.push(format!(
            "{ns}: entries {max_cp}..{} are not covered by a checkpoint yet",
            tree.size()
        ));
    }
    if let Some(p) = &pinned {
        check_pinned_root(ns, origin, p, &rebuilt, report);
    }
    Ok((summary, false))
}

/// The signed `chain_out` of the segment that ends at entry `first - 1`:
/// where the chain continues into the segment starting at `first` (`None`
/// when no segment ends there).
async fn previous_chain_out(
    store: &Store,
    ns: &str,
    tiling: &crate::tiling::Tiling,
    first: u64,
    key: &VerifyingKey,
) -> Result<Option<Hash>, String> {
    let Some(name) = tiling
        .all_named()
        .into_iter()
        .find(|((_, last), _)| last + 1 == first)
        .map(|(_, name)| name)
    else {
        return Ok(None);
    };
    let path = layout::segment_named(ns, &name);
    let bytes = store
        .get(&path)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{path} vanished: the chain cannot be anchored"))?;
    let (h, sig) = crate::segment::decode_header(&bytes).map_err(|e| format!("{path}: {e}"))?;
    if !crate::segment::verify_header_signature(&h, &sig, key) {
        return Err(format!("{path}: header signature does not verify"));
    }
    hex32(&h.chain_out)
        .map(Some)
        .ok_or_else(|| format!("{path}: malformed chain_out"))
}
