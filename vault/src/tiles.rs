//! C2SP `tlog-tiles`: the Merkle tree of a namespace published as immutable
//! hash tiles next to its checkpoints, so that any standard client, witness
//! or monitor can follow the log, and a process needs no more than the
//! right edge of the tree.
//!
//! Layout (pure functions, no I/O): tiles have height 8 (256 hashes). The
//! tile at level `L`, index `N` holds the hashes of the complete subtrees of
//! height `8L` number `256N` to `256N + W - 1` (level 0: the leaf hashes),
//! concatenated. A tile with fewer than 256 hashes is *partial*, at the
//! right edge of a tree, and named with its width: `tile/<L>/<N>.p/<W>`.
//! `N` is written in 3-digit groups, all but the last prefixed with `x`
//! (`1234067` is `x001/x234/067`).

use crate::merkle::MerkleTree;
use crate::record::Hash;

/// Tile height: a tile spans 8 levels of the tree.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Highest tile level: a tree of up to 2^64 leaves needs levels 0..=7.
pub const MAX_LEVEL: u8 = 7;

/// One tile's coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Level: 0 holds leaf hashes, level `L` hashes of subtrees of 256^L leaves.
    pub level: u8,
    /// Index within the level.
    pub index: u64,
    /// Hashes held: 256 for a full tile, 1..=255 for a partial one.
    pub width: u16,
}

impl TileId {
    /// True for a partial (right-edge) tile.
    pub fn is_partial(&self) -> bool {
        u64::from(self.width) < TILE_WIDTH
    }

    /// The same tile, full.
    pub fn full(&self) -> TileId {
        TileId {
            width: TILE_WIDTH as u16,
            ..*self
        }
    }

    /// `tile/<L>/<N>[.p/<W>]`, the path under a log's prefix.
    pub fn path(&self) -> String {
        let mut groups = Vec::new();
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        let mut out = format!("tile/{}/", self.level);
        for (i, g) in groups.iter().rev().enumerate() {
            if i + 1 < groups.len() {
                out.push_str(&format!("x{g:03}/"));
            } else {
                out.push_str(&format!("{g:03}"));
            }
        }
        if self.is_partial() {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }

    /// Parses a path made by [`TileId::path`]. Only the canonical spelling
    /// is accepted (no leading `x000` group, 3 digits per group, width
    /// 1..=255 after `.p/`), so every tile has exactly one name.
    pub fn parse(path: &str) -> Option<TileId> {
        let rest = path.strip_prefix("tile/")?;
        let (level, rest) = rest.split_once('/')?;
        let level: u8 = parse_decimal(level)?.try_into().ok()?;
        if level > MAX_LEVEL {
            return None;
        }
        let (rest, width) = match rest.split_once(".p/") {
            Some((n, w)) => {
                let w = parse_decimal(w)?;
                if w == 0 || w >= TILE_WIDTH {
                    return None;
                }
                (n, w as u16)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (last, dirs) = parts.split_last()?;
        let mut index: u64 = 0;
        for (i, d) in dirs.iter().enumerate() {
            let g = d.strip_prefix('x')?;
            let v = three_digits(g)?;
            if i == 0 && v == 0 {
                return None;
            }
            index = index.checked_mul(1000)?.checked_add(v)?;
        }
        index = index.checked_mul(1000)?.checked_add(three_digits(last)?)?;
        // A tile whose hashes would lie past 2^64 leaves names nothing (and
        // its span would overflow).
        let span_bits = TILE_HEIGHT * (u32::from(level) + 1);
        if span_bits < 64 && index >= 1u64 << (64 - span_bits) {
            return None;
        }
        Some(TileId {
            level,
            index,
            width,
        })
    }

    /// The hashes this tile holds, as indices at tree level `8 * level`:
    /// `start..end`.
    pub fn hash_range(&self) -> (u64, u64) {
        let start = self.index * TILE_WIDTH;
        (start, start + u64::from(self.width))
    }
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The tiles a tree of `size` leaves has at its right edge: for each level,
/// the partial tile (if the level's hash count is not a multiple of 256).
/// With the full tiles left of them, they hold every hash needed for any
/// root or proof at this size.
pub fn edge_tiles(size: u64) -> Vec<TileId> {
    levels(size)
        .filter_map(|level| {
            let n = size >> (TILE_HEIGHT * u32::from(level));
            let w = n % TILE_WIDTH;
            (w > 0).then_some(TileId {
                level,
                index: n / TILE_WIDTH,
                width: w as u16,
            })
        })
        .collect()
}

/// Levels that hold at least one hash at `size`.
fn levels(size: u64) -> impl Iterator<Item = u8> {
    (0..=MAX_LEVEL).take_while(move |l| {
        let shift = TILE_HEIGHT * u32::from(*l);
        shift < 64 && size >> shift > 0
    })
}

/// The tiles to publish when the tree grows from `old` to `new` leaves:
/// every tile completed in between (including one that was partial at
/// `old`) and, per level, the partial tile at `new` unless that level did
/// not change. In level order, then index order.
pub fn new_tiles(old: u64, new: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    if new <= old {
        return out;
    }
    for level in levels(new) {
        let shift = TILE_HEIGHT * u32::from(level);
        let old_n = old >> shift;
        let new_n = new >> shift;
        if old_n == new_n {
            continue;
        }
        for index in (old_n / TILE_WIDTH)..(new_n / TILE_WIDTH) {
            out.push(TileId {
                level,
                index,
                width: TILE_WIDTH as u16,
            });
        }
        let w = new_n % TILE_WIDTH;
        if w > 0 {
            out.push(TileId {
                level,
                index: new_n / TILE_WIDTH,
                width: w as u16,
            });
        }
    }
    out
}

/// The bytes of tile `id` from a tree that holds it (`None` if the tree is
/// too small): its hashes, concatenated.
pub fn tile_bytes(tree: &MerkleTree, id: TileId) -> Option<Vec<u8>> {
    let (start, end) = id.hash_range();
    let level = usize::from(id.level) * TILE_HEIGHT as usize;
    let hashes = tree.level_hashes(level, start, end)?;
    Some(hashes.iter().flat_map(|h| h.iter().copied()).collect())
}

/// Splits tile bytes into hashes (`None` unless a whole number of them).
pub fn tile_hashes(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect(),
    )
}

/// The right edge of a tree: per tile level, the hashes of the tile not yet
/// full. It grows the tree leaf by leaf (seeing every tile as it changes),
/// and gives the root, in memory that does not grow with the log (256
/// hashes per level). `verify` rebuilds the tiles with it; a namespace's
/// writer keeps its tree as one.
#[derive(Debug, Clone, Default)]
pub struct TileBuilder {
    /// Per level, the hashes of the tile being filled.
    open: Vec<Vec<Hash>>,
    /// Per level, the hashes pushed so far.
    counts: Vec<u64>,
    /// Per level, the open tile's compact range: the roots of the perfect
    /// subtrees its hashes make, largest first, with their heights within
    /// the tile. Kept as hashes arrive, so each node of the tree is hashed
    /// once, a full tile's root is its single node, and the tree's root
    /// takes a few hashes per level (a log with a checkpoint per entry asks
    /// `verify` for a root per entry).
    edges: Vec<Vec<(u32, Hash)>>,
}

impl TileBuilder {
    /// The edge of `tree` at `size` leaves (`None` if the tree is smaller).
    pub fn from_tree(tree: &MerkleTree, size: u64) -> Option<TileBuilder> {
        let (mut open, mut counts) = (Vec::new(), Vec::new());
        for level in levels(size) {
            let count = size >> (TILE_HEIGHT * u32::from(level));
            let start = count / TILE_WIDTH * TILE_WIDTH;
            let height = usize::from(level) * TILE_HEIGHT as usize;
            open.push(tree.level_hashes(height, start, count)?.to_vec());
            counts.push(count);
        }
        Some(TileBuilder::resume(open, counts))
    }

    /// Leaves pushed so far (the tree size).
    pub fn size(&self) -> u64 {
        self.counts.first().copied().unwrap_or(0)
    }

    /// The RFC 6962 root of the tree so far: the perfect subtrees of its
    /// decomposition are the open tiles' compact ranges, from the highest
    /// level down.
    pub fn root(&self) -> Hash {
        let roots: Vec<Hash> = self
            .edges
            .iter()
            .rev()
            .flat_map(|edge| edge.iter().map(|(_, h)| *h))
            .collect();
        crate::merkle::fold_subtrees(&roots)
    }

    /// A builder that continues a tree whose levels hold `counts[L]` hashes,
    /// `open[L]` being those of the level's last, unfinished tile.
    pub fn resume(open: Vec<Vec<Hash>>, counts: Vec<u64>) -> TileBuilder {
        let edges = open
            .iter()
            .map(|hashes| {
                let mut edge = Vec::new();
                for h in hashes {
                    push_edge(&mut edge, *h);
                }
                edge
            })
            .collect();
        TileBuilder {
            open,
            counts,
            edges,
        }
    }

    /// Appends a leaf hash. `each` sees every tile this push changes, with
    /// its hashes as of now: the level-0 tile at its new width and, when a
    /// tile fills up, the tile above it that gains its root.
    pub fn push(&mut self, leaf: Hash, mut each: impl FnMut(TileId, &[Hash])) {
        let mut carry = leaf;
        let mut level = 0usize;
        loop {
            if self.open.len() == level {
                self.open.push(Vec::with_capacity(TILE_WIDTH as usize));
                self.counts.push(0);
                self.edges.push(Vec::new());
            }
            self.open[level].push(carry);
            push_edge(&mut self.edges[level], carry);
            self.counts[level] += 1;
            let count = self.counts[level];
            let width = self.open[level].len() as u64;
            let id = TileId {
                level: level as u8,
                index: (count - 1) / TILE_WIDTH,
                width: width as u16,
            };
            each(id, &self.open[level]);
            if width < TILE_WIDTH {
                return;
            }
            // A full tile is one perfect subtree: its root goes up a level.
            carry = self.edges[level][0].1;
            self.open[level].clear();
            self.edges[level].clear();
            level += 1;
        }
    }
}

/// Adds `hash` to a compact range, merging equal heights as RFC 6962 does.
fn push_edge(edge: &mut Vec<(u32, Hash)>, hash: Hash) {
    let mut cur = (0u32, hash);
    while let Some(&(height, left)) = edge.last() {
        if height != cur.0 {
            break;
        }
        edge.pop();
        cur = (height + 1, crate::merkle::node_hash(&left, &cur.1));
    }
    edge.push(cur);
}

/// Every tile a checkpoint of `size` needs: all full tiles below it and
/// its right edge.
pub fn tiles_of(size: u64) -> Vec<TileId> {
    new_tiles(0, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(level: u8, index: u64, width: u16) -> TileId {
        TileId {
            level,
            index,
            width,
        }
    }

    #[test]
    fn paths_follow_the_spec() {
        assert_eq!(t(0, 0, 256).path(), "tile/0/000");
        assert_eq!(t(1, 1234067, 256).path(), "tile/1/x001/x234/067");
        assert_eq!(t(0, 1234067, 8).path(), "tile/0/x001/x234/067.p/8");
        assert_eq!(t(2, 1000, 255).path(), "tile/2/x001/000.p/255");
        for id in [
            t(0, 0, 256),
            t(1, 1234067, 256),
            t(0, 5, 1),
            t(3, 999, 200),
            t(0, 1000, 256),
        ] {
            assert_eq!(TileId::parse(&id.path()), Some(id), "{}", id.path());
        }
        for bad in [
            "tile/0/x000/001",
            "tile/0/01",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/08",
            "tile/00/001",
            "tile/64/001",
            "tile/0/001/",
            "tile/0/y001/002",
            "tile/entries/001",
            "tile/8/000",
            "tile/0/x072/x057/x594/x037/x927/936",
            "tile/0/",
            "tile/0/1234",
        ] {
            assert_eq!(TileId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn new_tiles_match_the_go_reference() {
        // The same coordinates as golang.org/x/mod/sumdb/tlog NewTiles(8, old, new)
        // restricted to the newest width of each partial tile.
        assert_eq!(new_tiles(0, 1), vec![t(0, 0, 1)]);
        assert_eq!(new_tiles(0, 256), vec![t(0, 0, 256), t(1, 0, 1)]);
        assert_eq!(new_tiles(256, 300), vec![t(0, 1, 44)]);
        assert_eq!(
            new_tiles(200, 600),
            vec![t(0, 0, 256), t(0, 1, 256), t(0, 2, 88), t(1, 0, 2)]
        );
        assert_eq!(new_tiles(600, 600), vec![]);
        assert_eq!(new_tiles(600, 500), vec![]);
        assert_eq!(
            new_tiles(65535, 65536),
            vec![t(0, 255, 256), t(1, 0, 256), t(2, 0, 1)]
        );
        assert_eq!(edge_tiles(600), vec![t(0, 2, 88), t(1, 0, 2)]);
        assert_eq!(edge_tiles(512), vec![t(1, 0, 2)]);
        assert_eq!(edge_tiles(0), vec![]);
    }

    #[test]
    fn tile_bytes_are_the_tree_levels() {
        let mut tree = MerkleTree::new();
        for i in 0..600u32 {
            tree.push(crate::merkle::leaf_hash(&i.to_be_bytes()));
        }
        let leaves = tile_bytes(&tree, t(0, 2, 88)).unwrap();
        assert_eq!(leaves.len(), 88 * 32);
        assert_eq!(&leaves[..32], &tree.leaf(512).unwrap());
        let up = tile_hashes(&tile_bytes(&tree, t(1, 0, 2)).unwrap()).unwrap();
        // A level-1 hash is the root of 256 leaves.
        let mut first = MerkleTree::new();
        for i in 0..256u32 {
            first.push(crate::merkle::leaf_hash(&i.to_be_bytes()));
        }
        assert_eq!(up[0], first.root());
        assert!(tile_bytes(&tree, t(0, 2, 89)).is_none());
        assert!(tile_bytes(&tree, t(0, 3, 1)).is_none());
    }

    /// The shared C2SP vectors (../shared/vectors/c2sp-v1.json, copied into
    /// the repository), computed independently of this code.
    #[test]
    fn c2sp_vectors() {
        use sha2::Digest;
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/c2sp-v1.json")).unwrap();
        for p in v["tile_paths"].as_array().unwrap() {
            let id = t(
                p["level"].as_u64().unwrap() as u8,
                p["index"].as_u64().unwrap(),
                p["width"].as_u64().unwrap_or(256) as u16,
            );
            assert_eq!(id.path(), p["path"].as_str().unwrap());
            assert_eq!(TileId::parse(p["path"].as_str().unwrap()), Some(id));
        }
        let tv = &v["tiles"];
        let size = tv["tree_size"].as_u64().unwrap();
        let mut tree = MerkleTree::new();
        for i in 0..size {
            tree.push(crate::merkle::leaf_hash(format!("leaf {i}").as_bytes()));
        }
        use base64::Engine;
        let root = base64::engine::general_purpose::STANDARD.encode(tree.root());
        assert_eq!(root, tv["root_b64"].as_str().unwrap());
        let want: Vec<&str> = tv["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["path"].as_str().unwrap())
            .collect();
        let ours: Vec<String> = new_tiles(0, size).iter().map(TileId::path).collect();
        assert_eq!(ours, want);
        for tile in tv["tiles"].as_array().unwrap() {
            let id = TileId::parse(tile["path"].as_str().unwrap()).unwrap();
            let bytes = tile_bytes(&tree, id).unwrap();
            assert_eq!(bytes.len() as u64, tile["hashes"].as_u64().unwrap() * 32);
            assert_eq!(
                hex::encode(sha2::Sha256::digest(&bytes)),
                tile["sha256_of_tile_bytes"].as_str().unwrap()
            );
            assert_eq!(
                hex::encode(&bytes[..32]),
                tile["first_hash_hex"].as_str().unwrap()
            );
        }
    }

    #[test]
    fn the_builder_sees_every_tile_of_the_tree() {
        let mut tree = MerkleTree::new();
        let mut b = TileBuilder::default();
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..70_000u32 {
            let leaf = crate::merkle::leaf_hash(&i.to_be_bytes());
            tree.push(leaf);
            b.push(leaf, |id, hashes| {
                let bytes: Vec<u8> = hashes.iter().flatten().copied().collect();
                seen.insert(id, bytes);
            });
        }
        for id in tiles_of(70_000).into_iter().chain(new_tiles(0, 300)) {
            assert_eq!(
                seen.get(&id),
                tile_bytes(&tree, id).as_ref(),
                "{}",
                id.path()
            );
        }
        assert!(seen.contains_key(&t(2, 0, 1)));
    }

    #[test]
    fn the_edge_gives_the_root_and_continues_a_tree() {
        let mut tree = MerkleTree::new();
        let mut edge = TileBuilder::default();
        assert_eq!(edge.root(), tree.root());
        for i in 0..70_000u32 {
            let leaf = crate::merkle::leaf_hash(&i.to_be_bytes());
            tree.push(leaf);
            edge.push(leaf, |_, _| {});
            let n = u64::from(i) + 1;
            if n < 600 || n % 997 == 0 || n == 65_536 || n == 65_537 {
                assert_eq!(edge.root(), tree.root(), "size {n}");
                let resumed = TileBuilder::from_tree(&tree, n).unwrap();
                assert_eq!(resumed.root(), tree.root(), "from_tree at {n}");
                assert_eq!(resumed.size(), n);
            }
        }
        // An edge taken at an earlier size continues to the same tree.
        let mut again = TileBuilder::from_tree(&tree, 1000).unwrap();
        for i in 1000..70_000u64 {
            again.push(tree.leaf(i).unwrap(), |_, _| {});
        }
        assert_eq!(again.root(), tree.root());
        assert!(TileBuilder::from_tree(&tree, 70_001).is_none());
    }
}
