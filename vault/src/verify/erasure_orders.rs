//! Erased entries against the erasure orders recorded in `_audit`: an entry
//! may lack its payload and salt only where a proven order says so.

use ed25519_dalek::VerifyingKey;

use super::segment_check::check_digests;
use super::{Finding, Report};
use crate::merkle::leaf_hash;
use crate::note;
use crate::store::{Store, layout};
use crate::tile_proofs::TileTree;

/// Most findings reported per namespace for erased entries without an order.
const MAX_ERASURE_FINDINGS: usize = 20;

/// The erasure orders recorded in `_audit`, each step proven (see
/// [`proven_erasure_steps`]); steps that cannot be are findings, an
/// unreadable `_audit` a warning (then no erased entry is accepted).
pub(super) async fn load_orders(
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
pub(super) fn check_erasures(orders: &crate::erasure::Orders, report: &mut Report) {
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
