//! The tree of a namespace as the store holds it, for reading a namespace
//! this server does not write; and the rule that proofs are served only for
//! sizes a signed checkpoint covers.

use super::*;
use crate::reader::LogReader;
use crate::tile_proofs::{ProofError, TileTree};

/// A read-only view of a namespace this server does not write: its latest
/// checkpoint, and its tree read from the tiles in the store (a handful of
/// tiles per proof, nothing held but a bounded cache), without taking the
/// lease. Reads must never make a server the writer of a namespace. A store
/// written before tiles has its tree rebuilt in memory instead, with the
/// same checks as an open.
pub struct PublishedTree {
    latest: Option<(u64, String)>,
    hashes: Hashes,
}

enum Hashes {
    /// Rebuilt from every segment (a store written before tiles).
    Memory(MerkleTree),
    /// Read from the tiles of the latest checkpoint's size.
    Tiles(Box<tokio::sync::Mutex<TileTree>>),
}

impl PublishedTree {
    /// Loads the namespace: from its tiles when the store has them (the
    /// checkpoint's signature checked, and the tiles must hash to its
    /// root), else from every segment.
    pub async fn load(ctx: &LogContext, ns: &str) -> Result<PublishedTree, OpenError> {
        if let Some(t) = Self::from_tiles(ctx, ns).await? {
            return Ok(t);
        }
        let l = load_store(ctx, ns, true).await?;
        let super::recovery::Stored::Tree(tree) = l.stored else {
            return Err(inconsistent(ns, "the segments could not be read".into()));
        };
        Ok(PublishedTree {
            latest: l.latest,
            hashes: Hashes::Memory(tree),
        })
    }

    async fn from_tiles(ctx: &LogContext, ns: &str) -> Result<Option<PublishedTree>, OpenError> {
        let Some(b) = ctx.store.get(&layout::latest_checkpoint(ns)).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&b).to_string();
        let name = format!("{}/{ns}", ctx.vault_origin);
        let cp = note::open_checkpoint(&text, &name, &ctx.key.verifying_key())
            .map_err(|e| inconsistent(ns, format!("latest checkpoint: {e}")))?;
        if cp.size == 0 {
            return Ok(None);
        }
        let reader = LogReader::new(ctx.store.clone());
        let mut tiles =
            TileTree::new(reader, ns, cp.size).with_cache_limit(ctx.cfg.tile_cache_tiles);
        // The tiles must hash to the signed root; then every tile a proof
        // reads is checked against the one above it.
        match tiles.trust(cp.root).await {
            Ok(()) => {}
            // Tiles missing, unreadable or not this root's (a store written
            // before tiles, tiles lost or changed): rebuild from the segments,
            // which are checked against the key.
            Err(e) => {
                tracing::warn!(ns, "reading the tree from the segments: {e}");
                return Ok(None);
            }
        }
        Ok(Some(PublishedTree {
            latest: Some((cp.size, text)),
            hashes: Hashes::Tiles(Box::new(tokio::sync::Mutex::new(tiles))),
        }))
    }

    /// The latest signed checkpoint seen when the view was loaded.
    pub fn latest_checkpoint(&self) -> Option<(u64, String)> {
        self.latest.clone()
    }

    fn published(&self) -> u64 {
        self.latest.as_ref().map_or(0, |(s, _)| *s)
    }

    /// Inclusion proof (leaf hash and path), for sizes the latest checkpoint covers.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<(Hash, Vec<Hash>), ProofError> {
        match &self.hashes {
            Hashes::Memory(tree) => Ok(inclusion_within(tree, self.published(), index, size)?),
            Hashes::Tiles(tiles) => {
                let mut tiles = tiles.lock().await;
                let proof = tiles.inclusion_proof_at(index, size).await?;
                Ok((tiles.leaf(index).await?, proof))
            }
        }
    }

    /// Consistency proof, for sizes the latest checkpoint covers.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
        match &self.hashes {
            Hashes::Memory(tree) => Ok(consistency_within(tree, self.published(), from, to)?),
            Hashes::Tiles(tiles) => Ok(tiles
                .lock()
                .await
                .consistency_proof_between(from, to)
                .await?),
        }
    }
}

/// Proofs are served only for sizes a signed checkpoint covers (`published`):
/// an unpublished size could never be checked against anything.
pub(super) fn inclusion_within(
    tree: &MerkleTree,
    published: u64,
    index: u64,
    size: u64,
) -> Result<(Hash, Vec<Hash>), MerkleError> {
    if size > published {
        return Err(MerkleError::SizeOutOfRange {
            size,
            len: published,
        });
    }
    let proof = tree.inclusion_proof(index, size)?;
    let leaf = tree
        .leaf(index)
        .ok_or(MerkleError::IndexOutOfRange { index, size })?;
    Ok((leaf, proof))
}

/// See [`inclusion_within`].
pub(super) fn consistency_within(
    tree: &MerkleTree,
    published: u64,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, MerkleError> {
    if to > published {
        return Err(MerkleError::SizeOutOfRange {
            size: to,
            len: published,
        });
    }
    tree.consistency_proof(from, to)
}
