//! Roots and proofs of a tree read from its tiles in the store, the way a
//! tile client (Go's `sumdb/tlog` `TileHashReader`) reads them: only the
//! tiles a proof touches are fetched (at most two per level), so nothing
//! needs the whole tree in memory. The proof layout is the same pure
//! function the in-memory tree uses ([`crate::merkle::inclusion_ranges`]).

use std::collections::HashMap;

use crate::merkle::{self, MerkleError, consistency_ranges, fold_subtrees, inclusion_ranges};
use crate::reader::LogReader;
use crate::record::Hash;
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH, TileId, tile_hashes};
use crate::vault::VaultError;

/// Tiles kept per tree unless told otherwise (8 KiB each at most: 32 MiB).
const DEFAULT_CACHED_TILES: usize = 4096;

/// A tree of `size` leaves of namespace `ns`, read from its tiles.
pub struct TileTree {
    reader: LogReader,
    ns: String,
    size: u64,
    /// Most tiles cached.
    cache_limit: usize,
    /// Tiles fetched so far (a proof needs a handful; callers keep one
    /// `TileTree` per request or per checkpoint).
    cache: HashMap<TileId, Vec<Hash>>,
}

/// Why a proof could not be given.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The request itself: an index or size the tree does not have.
    #[error(transparent)]
    Invalid(#[from] MerkleError),
    /// The store could not give the hashes (a tile missing or unreadable).
    #[error(transparent)]
    Unavailable(#[from] VaultError),
}

fn proof_err(e: MerkleError) -> ProofError {
    ProofError::Invalid(e)
}

impl TileTree {
    /// The tree of `size` leaves of `ns` (a size a checkpoint covers: its
    /// right-edge tiles are in the store).
    pub fn new(reader: LogReader, ns: &str, size: u64) -> TileTree {
        TileTree {
            reader,
            ns: ns.to_string(),
            size,
            cache_limit: DEFAULT_CACHED_TILES,
            cache: HashMap::new(),
        }
    }

    /// The same, caching at most `tiles` tiles (at least one).
    pub fn with_cache_limit(mut self, tiles: usize) -> TileTree {
        self.cache_limit = tiles.max(1);
        self
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The same log at another size: full tiles stay cached (they never
    /// change), partial ones are dropped (another size has other ones).
    pub fn set_size(&mut self, size: u64) {
        if size != self.size {
            self.size = size;
            self.cache.retain(|id, _| !id.is_partial());
        }
    }

    /// The hashes of tile (`level`, `index`) at this size: full, or the
    /// right-edge partial tile.
    async fn tile(&mut self, level: u8, index: u64) -> Result<&[Hash], VaultError> {
        let count = self.size >> (TILE_HEIGHT * u32::from(level));
        let start = index * TILE_WIDTH;
        if start >= count {
            return Err(VaultError::Read(format!(
                "tile {level}/{index} is beyond the tree of size {}",
                self.size
            )));
        }
        let id = TileId {
            level,
            index,
            width: (count - start).min(TILE_WIDTH) as u16,
        };
        if !self.cache.contains_key(&id) {
            // Bounded: a long-lived tree (a published view) drops its cache
            // rather than grow towards the whole tree.
            if self.cache.len() >= self.cache_limit {
                self.cache.clear();
            }
            let bytes = self.reader.tile(&self.ns, id).await?.ok_or_else(|| {
                VaultError::Read(format!(
                    "{} of {} is missing from the store; run `tracevault verify`",
                    id.path(),
                    self.ns
                ))
            })?;
            let hashes = tile_hashes(&bytes).ok_or_else(|| {
                VaultError::Read(format!("{} of {} is malformed", id.path(), self.ns))
            })?;
            self.cache.insert(id, hashes);
        }
        Ok(&self.cache[&id])
    }

    /// The hash of the complete subtree of `height` number `index`: from
    /// the tile at level `height / 8`, hashing up the `2^(height % 8)`
    /// hashes it spans there.
    pub async fn subtree(&mut self, height: u32, index: u64) -> Result<Hash, ProofError> {
        let level = height / TILE_HEIGHT;
        let rest = height % TILE_HEIGHT;
        let first = index << rest;
        let n = 1usize << rest;
        let tile = self.tile(level as u8, first / TILE_WIDTH).await?;
        let at = (first % TILE_WIDTH) as usize;
        let mut row: Vec<Hash> = tile
            .get(at..at + n)
            .ok_or_else(|| {
                VaultError::Read(format!("subtree {height}/{index} is not in its tile"))
            })?
            .to_vec();
        while row.len() > 1 {
            row = row
                .chunks(2)
                .map(|p| merkle::node_hash(&p[0], &p[1]))
                .collect();
        }
        Ok(row[0])
    }

    /// The hashes `start..end` of tree level `8 * level` (one tile's worth
    /// at most: `start..end` must lie in one tile).
    pub async fn level_hashes(
        &mut self,
        level: u8,
        start: u64,
        end: u64,
    ) -> Result<Vec<Hash>, ProofError> {
        if start == end {
            return Ok(Vec::new());
        }
        let index = start / TILE_WIDTH;
        let tile = self.tile(level, index).await?;
        let (a, b) = (
            (start % TILE_WIDTH) as usize,
            (end - index * TILE_WIDTH) as usize,
        );
        tile.get(a..b).map(<[Hash]>::to_vec).ok_or_else(|| {
            ProofError::Unavailable(VaultError::Read(format!(
                "hashes {start}..{end} of level {level} are not in one tile"
            )))
        })
    }

    fn within(&self, size: u64) -> Result<(), ProofError> {
        if size > self.size {
            return Err(proof_err(MerkleError::SizeOutOfRange {
                size,
                len: self.size,
            }));
        }
        Ok(())
    }

    /// The MTH of leaves `[start, start + n)`.
    pub async fn range(&mut self, start: u64, n: u64) -> Result<Hash, ProofError> {
        let mut roots = Vec::new();
        for (height, index) in merkle::perfect_subtrees(start, n) {
            roots.push(self.subtree(height, index).await?);
        }
        Ok(fold_subtrees(&roots))
    }

    /// The root at this size.
    pub async fn root(&mut self) -> Result<Hash, ProofError> {
        if self.size == 0 {
            return Ok(merkle::empty_root());
        }
        self.range(0, self.size).await
    }

    /// The leaf hash at `index`.
    pub async fn leaf(&mut self, index: u64) -> Result<Hash, ProofError> {
        if index >= self.size {
            return Err(proof_err(MerkleError::IndexOutOfRange {
                index,
                size: self.size,
            }));
        }
        self.subtree(0, index).await
    }

    /// RFC 6962 inclusion proof of `index` at this size.
    pub async fn inclusion_proof(&mut self, index: u64) -> Result<Vec<Hash>, ProofError> {
        self.inclusion_proof_at(index, self.size).await
    }

    /// RFC 6962 inclusion proof of `index` in the tree of `size <=` this
    /// size: the subtrees it needs are complete here too, so this size's
    /// tiles hold them (earlier sizes need no tiles of their own).
    pub async fn inclusion_proof_at(
        &mut self,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, ProofError> {
        self.within(size)?;
        let ranges = inclusion_ranges(index, size).map_err(proof_err)?;
        let mut out = Vec::with_capacity(ranges.len());
        for (s, n) in ranges {
            out.push(self.range(s, n).await?);
        }
        Ok(out)
    }

    /// RFC 6962 consistency proof from `from` to this size.
    pub async fn consistency_proof(&mut self, from: u64) -> Result<Vec<Hash>, ProofError> {
        self.consistency_proof_between(from, self.size).await
    }

    /// RFC 6962 consistency proof from `from` to `to <=` this size.
    pub async fn consistency_proof_between(
        &mut self,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, ProofError> {
        self.within(to)?;
        let ranges = consistency_ranges(from, to).map_err(proof_err)?;
        let mut out = Vec::with_capacity(ranges.len());
        for (s, n) in ranges {
            out.push(self.range(s, n).await?);
        }
        Ok(out)
    }
}
