//! The checked segments folded in index order: the tree rebuilt from their
//! leaves (its tiles checked as they complete), the chain carried from one
//! segment to the next, the roots at the sizes checkpoints sign, and where
//! the rebuilding had to stop.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::segment_check::SegmentOutcome;
use super::state_check::StateCheck;
use super::tree_check::TileCheck;
use super::{Finding, Report, VerifyError, hex32};
use crate::record::Hash;
use crate::store::Store;
use crate::tiles::TileBuilder;

/// What folding a segment reports to and checks beside the tree.
pub(super) struct Folding<'a> {
    pub(super) store: &'a Store,
    /// Where the namespace's segments are, for findings about the listing.
    pub(super) seg_prefix: &'a object_store::path::Path,
    pub(super) tiles: &'a mut TileCheck,
    pub(super) states: &'a mut StateCheck,
    pub(super) report: &'a mut Report,
}

/// The state of the fold.
pub(super) struct Fold<'a> {
    ns: &'a str,
    /// The tree as its tiles: the leaves folded so far, giving its root at
    /// any size and every tile as it is completed, with one hash per node.
    pub(super) tree: TileBuilder,
    /// The chain hash after the last entry folded.
    chain: Hash,
    /// Incremental: the next segment holds the pinned size's last entries;
    /// it is folded from the pin on and the chain is taken from it.
    resuming: bool,
    /// Incremental: the signed `chain_out` of the segment before the
    /// resumed one (the empty chain when it starts the log), which the
    /// resumed segment's `chain_in` must continue.
    resume_chain: Option<Hash>,
    /// The last segment folded into the tree: its first index and leaves.
    cover: Option<(u64, Vec<Hash>)>,
    /// The sizes whose roots are wanted (checkpoints, the pin).
    wanted: BTreeSet<u64>,
    /// The tree's root at each wanted size it reached.
    pub(super) roots: BTreeMap<u64, Hash>,
    /// Why the tree could not be rebuilt past `tree.size()`, if it stopped early.
    pub(super) stopped: Option<String>,
}

impl<'a> Fold<'a> {
    /// A fold from the empty tree, or from `resumed` (incremental runs).
    pub(super) fn new(ns: &'a str, resumed: Option<TileBuilder>, wanted: BTreeSet<u64>) -> Self {
        let resuming = resumed.is_some();
        let tree = resumed.unwrap_or_default();
        let mut roots = BTreeMap::new();
        if wanted.contains(&tree.size()) {
            roots.insert(tree.size(), tree.root());
        }
        Fold {
            ns,
            tree,
            chain: [0; 32],
            resuming,
            resume_chain: None,
            cover: None,
            wanted,
            roots,
            stopped: None,
        }
    }

    /// Incremental: anchors the resumed segment's `chain_in` to `chain`.
    pub(super) fn anchor_resume(&mut self, chain: Hash) {
        self.resume_chain = Some(chain);
    }

    /// Folds the next segment in index order. `false` when the tree cannot
    /// be rebuilt past it (a hole, an unreadable segment, wrong rows): the
    /// reason is in `stopped`.
    pub(super) async fn take(
        &mut self,
        seg: SegmentOutcome,
        with: &mut Folding<'_>,
    ) -> Result<bool, VerifyError> {
        let ns = self.ns;
        let tree = &mut self.tree;
        let report = &mut *with.report;
        let find = |message: String| Finding {
            ns: ns.into(),
            object: seg.object.clone(),
            index: None,
            message,
        };
        let resuming = std::mem::take(&mut self.resuming);
        if seg.first < tree.size() && !resuming {
            // A segment inside the previous one (left by an interrupted merge)
            // is fine when it holds exactly the same entries.
            let same = self.cover.as_ref().is_some_and(|(cf, leaves)| {
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
            return Ok(true);
        }
        if seg.first > tree.size() {
            let next = seg.object.rsplit('/').next().unwrap_or_default();
            report.findings.push(Finding {
                ns: ns.into(),
                object: with.seg_prefix.to_string(),
                index: Some(tree.size()),
                message: format!(
                    "entries {}-{} are missing (segment dropped; the next segment is {next})",
                    tree.size(),
                    seg.first - 1
                ),
            });
            // The tree cannot be rebuilt across a hole; stop folding.
            self.stopped = Some(format!(
                "entries {}-{} are missing",
                tree.size(),
                seg.first - 1
            ));
            return Ok(false);
        }
        let Some(h) = &seg.header else {
            self.stopped = Some(format!("{} is unreadable", seg.object));
            return Ok(false);
        };
        if seg.leaves.len() as u64 != seg.last - seg.first + 1 {
            // Row count findings were reported; the tree past here is meaningless.
            self.stopped = Some(format!("{} holds the wrong rows", seg.object));
            return Ok(false);
        }
        if !resuming && hex32(&h.chain_in) != Some(self.chain) {
            report.findings.push(find("chain_in does not continue the previous segment's chain (segment replaced or reordered)".into()));
        }
        if resuming
            && let Some(want) = self.resume_chain
            && hex32(&h.chain_in) != Some(want)
        {
            report.findings.push(find("chain_in does not continue the signed chain_out of the segment before it (the chain after the pinned checkpoint was rewritten)".into()));
        }
        let skip = tree.size().saturating_sub(seg.first) as usize;
        for (i, leaf) in seg.leaves[skip..].iter().enumerate() {
            with.tiles.push(tree, *leaf);
            if self.wanted.contains(&tree.size()) {
                self.roots.insert(tree.size(), tree.root());
            }
            if let Some((chain, facts)) = seg.rows.get(skip + i) {
                with.states.push(ns, tree.size() - 1, chain, facts, report);
                with.states.check_at(ns, tree.size(), tree, report);
            }
        }
        with.tiles.check_pending(with.store, ns, report).await?;
        if B64.encode(tree.root()) != h.root {
            report.findings.push(find(format!(
                "signed header root does not match the tree at size {}",
                tree.size()
            )));
        }
        self.chain = seg.chain_out.unwrap_or(self.chain);
        self.cover = Some((seg.first, seg.leaves));
        Ok(true)
    }
}
