//! The tree of a namespace as the store holds it, for reading a namespace
//! this server does not write; and the rule that proofs are served only for
//! sizes a signed checkpoint covers.

use super::*;

/// A read-only view of a namespace this server does not write: its tree and
/// latest checkpoint, rebuilt from the store (with the same checks as an
/// open), without taking the lease. Reads must never make a server the
/// writer of a namespace.
pub struct PublishedTree {
    tree: MerkleTree,
    latest: Option<(u64, String)>,
}

impl PublishedTree {
    /// Loads the namespace from the store.
    pub async fn load(ctx: &LogContext, ns: &str) -> Result<PublishedTree, OpenError> {
        let l = load_store(ctx, ns, true).await?;
        Ok(PublishedTree {
            tree: l.tree,
            latest: l.latest,
        })
    }

    /// The latest signed checkpoint seen when the snapshot was taken.
    pub fn latest_checkpoint(&self) -> Option<(u64, String)> {
        self.latest.clone()
    }

    fn published(&self) -> u64 {
        self.latest.as_ref().map_or(0, |(s, _)| *s)
    }

    /// Inclusion proof, for sizes the latest checkpoint covers.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), MerkleError> {
        inclusion_within(&self.tree, self.published(), index, size)
    }

    /// Consistency proof, for sizes the latest checkpoint covers.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, MerkleError> {
        consistency_within(&self.tree, self.published(), from, to)
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
