//! The tree as its tiles: the stored tiles checked against the leaves as
//! they are folded, and an incremental run's starting point read from the
//! tiles of a pinned checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use super::{Finding, Report};
use crate::note;
use crate::record::Hash;
use crate::store::{Store, StoreError, layout};
use crate::tile_proofs::TileTree;
use crate::tiles::{self, TileBuilder, TileId};

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
pub(super) async fn resume_from_tiles(
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

/// The stored tiles of a namespace against the tiles rebuilt from its
/// leaves: a changed tile, a tile a checkpoint needs that is missing, and a
/// tile beyond the data or under a name that is not a tile are findings.
pub(super) struct TileCheck {
    /// Listed tiles not yet checked, by coordinates.
    listed: BTreeMap<TileId, String>,
    /// Tiles checked against the data.
    checked: BTreeSet<TileId>,
    /// Listed tiles whose content the leaves pushed so far determine.
    pending: Vec<(TileId, Vec<u8>)>,
}

impl TileCheck {
    /// Lists the tiles of `ns` that reach past entry `from` (all when 0).
    pub(super) async fn list(
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
    pub(super) fn push(&mut self, tree: &mut TileBuilder, leaf: Hash) {
        let (listed, pending) = (&self.listed, &mut self.pending);
        tree.push(leaf, |id, hashes| {
            if listed.contains_key(&id) {
                pending.push((id, hashes.iter().flatten().copied().collect()));
            }
        });
    }

    /// Fetches and compares the tiles the leaves so far determine.
    pub(super) async fn check_pending(
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
    pub(super) fn finish(
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
