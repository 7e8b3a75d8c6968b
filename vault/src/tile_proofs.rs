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
    /// Full tiles fetched so far (a proof needs a handful), each checked
    /// against its parent tile once the tree is trusted.
    cache: HashMap<TileId, Vec<Hash>>,
    /// The right-edge (partial) tiles at this size: never evicted; checked
    /// together against the trusted root.
    edge: HashMap<TileId, Vec<Hash>>,
    /// The root the tiles are checked against ([`TileTree::trust`]).
    trusted: Option<Hash>,
}

/// A tile's future (tiles are checked against their parents, recursively).
type TileFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<&'a [Hash], VaultError>> + Send + 'a>,
>;

/// The root of a perfect subtree's hashes (a power of two of them).
fn subtree_root(hashes: &[Hash]) -> Hash {
    let mut row: Vec<Hash> = hashes.to_vec();
    while row.len() > 1 {
        row = row
            .chunks(2)
            .map(|p| merkle::node_hash(&p[0], &p[1]))
            .collect();
    }
    row.first().copied().unwrap_or_else(merkle::empty_root)
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
            edge: HashMap::new(),
            trusted: None,
        }
    }

    /// Checks the tiles against `root`, the tree's root at this size from a
    /// source the caller trusts (a signed checkpoint, the writer's own
    /// edge): the right-edge tiles must hash to it, and from then on every
    /// full tile read must hash to its entry in the tile above it, as Go's
    /// `sumdb/tlog` `TileHashReader` checks. A tile changed in the store is
    /// then an error, never a wrong proof served.
    pub async fn trust(&mut self, root: Hash) -> Result<(), ProofError> {
        self.trusted = None;
        self.edge.clear();
        self.cache.clear();
        let got = self.root().await?;
        if got != root {
            self.edge.clear();
            return Err(ProofError::Unavailable(VaultError::Read(format!(
                "the tiles of {} do not hash to the root of size {}; run `tracevault verify`",
                self.ns, self.size
            ))));
        }
        self.trusted = Some(root);
        Ok(())
    }

    /// Whether [`TileTree::trust`] has checked the tiles at this size.
    pub fn is_trusted(&self) -> bool {
        self.trusted.is_some()
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
    /// change), the right edge is read again, and the tree must be trusted
    /// again at the new size.
    pub fn set_size(&mut self, size: u64) {
        if size != self.size {
            self.size = size;
            self.edge.clear();
            self.trusted = None;
        }
    }

    async fn fetch(&self, id: TileId) -> Result<Vec<Hash>, VaultError> {
        let bytes = self.reader.tile(&self.ns, id).await?.ok_or_else(|| {
            VaultError::Read(format!(
                "{} of {} is missing from the store; run `tracevault verify`",
                id.path(),
                self.ns
            ))
        })?;
        tile_hashes(&bytes)
            .ok_or_else(|| VaultError::Read(format!("{} of {} is malformed", id.path(), self.ns)))
    }

    /// The hashes of tile (`level`, `index`) at this size: full, or the
    /// right-edge partial tile. Once trusted, a full tile must hash to its
    /// entry in the tile above it (checked recursively, up to the edge the
    /// trusted root checked).
    fn tile(&mut self, level: u8, index: u64) -> TileFuture<'_> {
        Box::pin(async move {
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
            if id.is_partial() {
                if !self.edge.contains_key(&id) {
                    if self.trusted.is_some() {
                        // The edge was read in full when trusted.
                        return Err(VaultError::Read(format!(
                            "{} of {} is not part of the trusted edge",
                            id.path(),
                            self.ns
                        )));
                    }
                    let hashes = self.fetch(id).await?;
                    self.edge.insert(id, hashes);
                }
                return Ok(&self.edge[&id][..]);
            }
            if !self.cache.contains_key(&id) {
                let hashes = self.fetch(id).await?;
                if self.trusted.is_some() {
                    let own = subtree_root(&hashes);
                    let parent = self.tile(level + 1, index / TILE_WIDTH).await?;
                    if parent.get((index % TILE_WIDTH) as usize) != Some(&own) {
                        return Err(VaultError::Read(format!(
                            "{} of {} does not match the tile above it; run `tracevault verify`",
                            id.path(),
                            self.ns
                        )));
                    }
                }
                // Bounded: a long-lived tree drops its cache rather than
                // grow towards the whole tree (the edge stays).
                if self.cache.len() >= self.cache_limit {
                    self.cache.clear();
                }
                self.cache.insert(id, hashes);
            }
            Ok(&self.cache[&id][..])
        })
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
        let row: Vec<Hash> = tile
            .get(at..at + n)
            .ok_or_else(|| {
                VaultError::Read(format!("subtree {height}/{index} is not in its tile"))
            })?
            .to_vec();
        Ok(subtree_root(&row))
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

    /// The right edge at this size, to grow the tree from: per tile level,
    /// the hashes of the level's unfinished tile. Read from the tiles, so
    /// only as trustworthy as [`TileTree::trust`] made them; callers check
    /// the builder's root against the trusted one.
    pub async fn builder(&mut self) -> Result<crate::tiles::TileBuilder, ProofError> {
        let mut open = Vec::new();
        let mut counts = Vec::new();
        for level in 0..=crate::tiles::MAX_LEVEL {
            let shift = TILE_HEIGHT * u32::from(level);
            if shift >= 64 || self.size >> shift == 0 {
                break;
            }
            let count = self.size >> shift;
            let start = count / TILE_WIDTH * TILE_WIDTH;
            open.push(self.level_hashes(level, start, count).await?);
            counts.push(count);
        }
        Ok(crate::tiles::TileBuilder::resume(open, counts))
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
