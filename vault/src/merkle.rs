//! RFC 6962 / RFC 9162 Merkle tree over SHA-256 leaf hashes.
//!
//! Each namespace's log is committed to by the Merkle tree hash (MTH) of its
//! leaf hashes (SPEC section 4). Proofs produced here must verify with
//! standard tooling (e.g. `transparency-dev/merkle`), so the tree shape, the
//! domain-separated hashing and the proof layouts follow RFC 6962 section 2.1
//! exactly, and the verifiers are the RFC 9162 section 2.1.3.2 / 2.1.4.2
//! algorithms transcribed step by step.
//!
//! [`MerkleTree`] is incremental: it stores the hash of every *complete*
//! aligned subtree (level 0 = the leaves, level k = subtrees of 2^k leaves), so
//! appending costs amortised O(1) hashes, memory stays about two hashes per
//! leaf, and the root, proofs and roots of any historical size need only
//! O(log n) hashing.

use sha2::{Digest, Sha256};

/// A SHA-256 output; every hash in the tree has this type.
pub type Hash = [u8; 32];

/// Why a tree query or a proof verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index that is not inside the tree it is meant to be in.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The offending leaf index.
        index: u64,
        /// The tree size it was checked against.
        size: u64,
    },
    /// A tree size larger than the number of leaves the tree holds.
    #[error("tree size {size} exceeds the {len} leaves held")]
    SizeOutOfRange {
        /// The requested size.
        size: u64,
        /// The number of leaves actually held.
        len: u64,
    },
    /// A consistency query or proof whose old size exceeds its new size.
    #[error("old tree size {from} is larger than new tree size {to}")]
    InvalidRange {
        /// The old tree size.
        from: u64,
        /// The new tree size.
        to: u64,
    },
    /// The proof has the wrong number of hashes for the given sizes/index.
    #[error("proof has the wrong number of hashes for these tree sizes")]
    WrongProofLength,
    /// The proof is well formed but does not lead to the expected root(s).
    #[error("proof does not match the expected root hash")]
    RootMismatch,
}

/// `SHA-256(0x00 || data)`: the RFC 6962 leaf hash. The 0x00 prefix separates
/// leaves from interior nodes so that no leaf can pose as a subtree.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the RFC 6962 interior node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// `SHA-256("")`: RFC 6962's hash of the empty tree, the root of a log with no
/// entries yet.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly smaller than `n` (RFC 6962's split point k).
/// Requires `n >= 2`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// An append-only RFC 6962 Merkle tree that keeps the hashes of all complete
/// subtrees, so that roots and proofs for the current or any earlier size can
/// be produced without rehashing the leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[k][j]` = MTH of leaves `[j * 2^k, (j + 1) * 2^k)`.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Creates an empty tree (root = [`empty_root`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf *hash* (the caller computes it, normally with
    /// [`leaf_hash`] over the committed record). Amortised O(1) hashing: each
    /// complete subtree is hashed exactly once, when its last leaf arrives.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(carry);
            let n = row.len();
            if !n.is_multiple_of(2) {
                break;
            }
            carry = node_hash(&row[n - 2], &row[n - 1]);
            level += 1;
        }
    }

    /// Number of leaves appended so far (the current tree size).
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// True when no leaf has been appended yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at index `i`, if present; lets callers rebuild entries'
    /// receipts without keeping a second copy of the hashes.
    pub fn leaf(&self, i: u64) -> Option<Hash> {
        let row = self.levels.first()?;
        usize::try_from(i).ok().and_then(|i| row.get(i)).copied()
    }

    /// The hashes of the complete subtrees of height `level` number
    /// `start..end` (level 0: leaf hashes): what a C2SP tile holds. `None`
    /// unless all of them are complete.
    pub fn level_hashes(&self, level: usize, start: u64, end: u64) -> Option<&[Hash]> {
        let row = self.levels.get(level)?;
        let (start, end) = (usize::try_from(start).ok()?, usize::try_from(end).ok()?);
        row.get(start..end)
    }

    /// Root of the tree at its current size, in O(log n).
    pub fn root(&self) -> Hash {
        let n = self.len();
        if n == 0 {
            empty_root()
        } else {
            self.subtree(0, n)
        }
    }

    /// Root of the tree as it was when it held `size` leaves; needed to sign
    /// or check checkpoints of earlier sizes.
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        self.check_size(size)?;
        Ok(if size == 0 {
            empty_root()
        } else {
            self.subtree(0, size)
        })
    }

    /// RFC 6962 section 2.1.1 audit path for leaf `index` in the tree of size
    /// `size`, ordered from the leaf's sibling up to the root's child (the
    /// order RFC 9162 verifiers and C2SP tlog-proof expect).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(size)?;
        let ranges = inclusion_ranges(index, size)?;
        Ok(ranges.iter().map(|&(s, n)| self.subtree(s, n)).collect())
    }

    /// RFC 6962 section 2.1.2 consistency proof between the trees of sizes
    /// `from` and `to`. Empty when `from == 0` or `from == to` (nothing to
    /// prove; see [`verify_consistency`]).
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(to)?;
        let ranges = consistency_ranges(from, to)?;
        Ok(ranges.iter().map(|&(s, n)| self.subtree(s, n)).collect())
    }

    fn check_size(&self, size: u64) -> Result<(), MerkleError> {
        let len = self.len();
        if size > len {
            return Err(MerkleError::SizeOutOfRange { size, len });
        }
        Ok(())
    }

    /// MTH of leaves `[start, start + n)`; requires `n >= 1` and
    /// `start + n <= len` (so every index below fits in `usize`).
    fn subtree(&self, start: u64, n: u64) -> Hash {
        let roots: Vec<Hash> = perfect_subtrees(start, n)
            .into_iter()
            .map(|(height, index)| self.levels[height as usize][index as usize])
            .collect();
        fold_subtrees(&roots)
    }
}

/// The ranges `(start, n)` of leaves whose MTH, in this order, make the RFC
/// 6962 section 2.1.1 audit path of leaf `index` in a tree of `size`: pure
/// layout, so that a tree in memory and a tree in tiles give the same proof.
pub fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::with_capacity(64);
    path(index, 0, size, &mut out);
    Ok(out)
}

/// The ranges `(start, n)` of leaves whose MTH, in this order, make the RFC
/// 6962 section 2.1.2 consistency proof from `from` to `to` (none when
/// `from == 0` or `from == to`).
pub fn consistency_ranges(from: u64, to: u64) -> Result<Vec<(u64, u64)>, MerkleError> {
    if from > to {
        return Err(MerkleError::InvalidRange { from, to });
    }
    let mut out = Vec::with_capacity(64);
    if from > 0 && from < to {
        subproof(from, 0, to, true, &mut out);
    }
    Ok(out)
}

/// PATH(m, D[start:start+n]) from RFC 6962 section 2.1.1.
fn path(m: u64, start: u64, n: u64, out: &mut Vec<(u64, u64)>) {
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if m < k {
        path(m, start, k, out);
        out.push((start + k, n - k));
    } else {
        path(m - k, start + k, n - k, out);
        out.push((start, k));
    }
}

/// SUBPROOF(m, D[start:start+n], b) from RFC 6962 section 2.1.2.
fn subproof(m: u64, start: u64, n: u64, b: bool, out: &mut Vec<(u64, u64)>) {
    if m == n {
        if !b {
            out.push((start, n));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, start, k, b, out);
        out.push((start + k, n - k));
    } else {
        subproof(m - k, start + k, n - k, false, out);
        out.push((start, k));
    }
}

/// The complete subtrees `(height, index)` whose hashes make the MTH of
/// leaves `[start, start + n)` (`n >= 1`), left to right: one per set bit
/// of `n`, largest first. Every range an RFC 6962 proof or root uses
/// starts aligned to its largest piece, so the pieces are aligned subtrees.
pub fn perfect_subtrees(start: u64, n: u64) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    for height in (0..64u32).rev() {
        let size = 1u64 << height;
        if n & size != 0 {
            out.push((height, at >> height));
            at += size;
        }
    }
    out
}

/// The MTH of a range from the hashes of its [`perfect_subtrees`]: folded
/// from the right, as RFC 6962 splits a range at its largest power of two.
pub fn fold_subtrees(roots: &[Hash]) -> Hash {
    let mut it = roots.iter().rev();
    let Some(mut acc) = it.next().copied() else {
        return empty_root();
    };
    for left in it {
        acc = node_hash(left, &acc);
    }
    acc
}

/// Verifies that `leaf` is at `index` in the tree of `size` leaves whose root
/// is `root`, using the RFC 9162 section 2.1.3.2 algorithm. This is what a
/// client runs on a receipt, so it trusts nothing but its arguments.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    // Step 1.
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // Steps 2-3.
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if sn == 0 {
            return Err(MerkleError::WrongProofLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    if sn != 0 {
        return Err(MerkleError::WrongProofLength);
    }
    if r != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of size `to` with root `new_root` extends the tree of
/// size `from` with root `old_root` (append-only: no rollback, no fork), using
/// the RFC 9162 section 2.1.4.2 algorithm for `0 < from < to`.
///
/// Degenerate cases, which carry no proof hashes and so must have an empty
/// `proof`: `from == to` requires `old_root == new_root`; `from == 0` requires
/// `old_root` to be [`empty_root`] (every tree extends the empty tree).
pub fn verify_consistency(
    from: u64,
    to: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), MerkleError> {
    if from > to {
        return Err(MerkleError::InvalidRange { from, to });
    }
    if from == 0 || from == to {
        if !proof.is_empty() {
            return Err(MerkleError::WrongProofLength);
        }
        let ok = if from == 0 {
            *old_root == empty_root() && (to != 0 || *new_root == *old_root)
        } else {
            old_root == new_root
        };
        return if ok {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    // Step 1.
    if proof.is_empty() {
        return Err(MerkleError::WrongProofLength);
    }
    // Step 2: if `from` is a power of two, `old_root` is the implicit first
    // element of the path.
    let mut rest = proof.iter();
    let seed = if from.is_power_of_two() {
        *old_root
    } else {
        match rest.next() {
            Some(h) => *h,
            None => return Err(MerkleError::WrongProofLength),
        }
    };
    // Step 3.
    let mut fn_ = from - 1;
    let mut sn = to - 1;
    // Step 4.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let mut fr = seed;
    let mut sr = seed;
    // Step 6.
    for c in rest {
        if sn == 0 {
            return Err(MerkleError::WrongProofLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(MerkleError::WrongProofLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    // ---- Known-answer vectors -------------------------------------------
    // Source: github.com/transparency-dev/merkle, testonly/constants.go
    // (LeafInputs, RootHashes, NodeHashes) and proof/verify_test.go
    // (inclusionProofs, consistencyProofs), originally from
    // google/certificate-transparency's merkle tree tests. Note the Go
    // inclusion vectors use 1-based leaf numbers; converted to 0-based here.

    const LEAF_INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    const LEAF_HASHES: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ];

    /// (0-based index, size, proof)
    const INCLUSION: &[(u64, u64, &[&str])] = &[
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    const CONSISTENCY: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn kat_tree() -> MerkleTree {
        let mut t = MerkleTree::new();
        for input in LEAF_INPUTS {
            t.push(leaf_hash(&hex::decode(input).unwrap()));
        }
        t
    }

    fn hashes(list: &[&str]) -> Vec<Hash> {
        list.iter().map(|s| h(s)).collect()
    }

    #[test]
    fn kat_leaf_hashes_and_roots() {
        let t = kat_tree();
        assert_eq!(empty_root(), h(ROOTS[0]));
        for (i, want) in LEAF_HASHES.iter().enumerate() {
            assert_eq!(t.leaf(i as u64), Some(h(want)));
        }
        assert_eq!(t.leaf(8), None);
        for (size, want) in ROOTS.iter().enumerate() {
            assert_eq!(t.root_at(size as u64).unwrap(), h(want), "size {size}");
        }
        assert_eq!(t.root(), h(ROOTS[8]));
        // Incremental roots agree with historical ones.
        let mut inc = MerkleTree::new();
        assert_eq!(inc.root(), h(ROOTS[0]));
        for (i, input) in LEAF_INPUTS.iter().enumerate() {
            inc.push(leaf_hash(&hex::decode(input).unwrap()));
            assert_eq!(inc.root(), h(ROOTS[i + 1]));
            assert_eq!(inc.len(), i as u64 + 1);
        }
    }

    #[test]
    fn kat_inclusion_proofs() {
        let t = kat_tree();
        for &(index, size, proof) in INCLUSION {
            let want = hashes(proof);
            assert_eq!(
                t.inclusion_proof(index, size).unwrap(),
                want,
                "{index}/{size}"
            );
            let leaf = t.leaf(index).unwrap();
            let root = t.root_at(size).unwrap();
            verify_inclusion(&leaf, index, size, &want, &root).unwrap();
        }
    }

    #[test]
    fn kat_consistency_proofs() {
        let t = kat_tree();
        for &(from, to, proof) in CONSISTENCY {
            let want = hashes(proof);
            assert_eq!(t.consistency_proof(from, to).unwrap(), want, "{from}->{to}");
            let r1 = t.root_at(from).unwrap();
            let r2 = t.root_at(to).unwrap();
            verify_consistency(from, to, &want, &r1, &r2).unwrap();
        }
    }

    #[test]
    fn spec_vectors_merkle_roots() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/spec-v1.json")).unwrap();
        let mut t = MerkleTree::new();
        for r in v["records"].as_array().unwrap() {
            let want = h(r["leaf_hash_hex"].as_str().unwrap());
            // leaf_hash = SHA-256(0x00 || JCS bytes).
            assert_eq!(leaf_hash(r["jcs"].as_str().unwrap().as_bytes()), want);
            t.push(want);
        }
        let roots = v["merkle_roots"].as_array().unwrap();
        assert!(!roots.is_empty());
        for r in roots {
            let size = r["leaves"].as_u64().unwrap();
            let want = B64.decode(r["root_b64"].as_str().unwrap()).unwrap();
            assert_eq!(
                t.root_at(size).unwrap().as_slice(),
                want.as_slice(),
                "size {size}"
            );
        }
    }

    #[test]
    fn errors_on_bad_queries() {
        let t = kat_tree();
        assert_eq!(
            t.root_at(9),
            Err(MerkleError::SizeOutOfRange { size: 9, len: 8 })
        );
        assert_eq!(
            t.inclusion_proof(3, 3),
            Err(MerkleError::IndexOutOfRange { index: 3, size: 3 })
        );
        assert_eq!(
            t.inclusion_proof(0, 0),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert!(matches!(
            t.inclusion_proof(0, 9),
            Err(MerkleError::SizeOutOfRange { .. })
        ));
        assert!(matches!(
            t.inclusion_proof(u64::MAX, u64::MAX),
            Err(MerkleError::SizeOutOfRange { .. })
        ));
        assert_eq!(
            t.consistency_proof(5, 4),
            Err(MerkleError::InvalidRange { from: 5, to: 4 })
        );
        assert!(matches!(
            t.consistency_proof(1, 9),
            Err(MerkleError::SizeOutOfRange { .. })
        ));
        assert_eq!(t.consistency_proof(0, 8).unwrap(), Vec::<Hash>::new());
        assert_eq!(t.consistency_proof(8, 8).unwrap(), Vec::<Hash>::new());
        let empty = MerkleTree::new();
        assert!(empty.is_empty());
        assert_eq!(empty.leaf(0), None);
        assert_eq!(empty.consistency_proof(0, 0).unwrap(), Vec::<Hash>::new());
        assert!(empty.inclusion_proof(0, 0).is_err());
    }

    #[test]
    fn degenerate_verifications() {
        let e = empty_root();
        let a = h(ROOTS[1]);
        let b = h(ROOTS[2]);
        // Out-of-range indices never verify (transparency-dev probes).
        for (i, s) in [(0, 0), (1, 0), (2, 1), (u64::MAX, 3)] {
            assert!(verify_inclusion(&a, i, s, &[], &a).is_err());
        }
        // Single-leaf tree: root == leaf, empty proof.
        verify_inclusion(&a, 0, 1, &[], &a).unwrap();
        assert_eq!(
            verify_inclusion(&a, 0, 1, &[], &b),
            Err(MerkleError::RootMismatch)
        );
        assert_eq!(
            verify_inclusion(&a, 0, 1, &[a], &a),
            Err(MerkleError::WrongProofLength)
        );
        // Consistency edge cases.
        verify_consistency(0, 0, &[], &e, &e).unwrap();
        verify_consistency(0, 5, &[], &e, &b).unwrap();
        verify_consistency(3, 3, &[], &b, &b).unwrap();
        assert!(verify_consistency(0, 0, &[], &a, &b).is_err());
        assert!(verify_consistency(0, 5, &[], &a, &b).is_err());
        assert!(verify_consistency(0, 5, &[e], &e, &b).is_err());
        assert!(verify_consistency(3, 3, &[], &a, &b).is_err());
        assert!(verify_consistency(3, 3, &[a], &a, &a).is_err());
        assert!(verify_consistency(1, 2, &[], &a, &b).is_err());
        assert!(matches!(
            verify_consistency(2, 1, &[], &a, &b),
            Err(MerkleError::InvalidRange { .. })
        ));
    }

    // ---- Randomised cross-check against a naive reference ---------------

    /// splitmix64: deterministic test randomness without extra dependencies.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            z ^ (z >> 31)
        }
        fn hash(&mut self) -> Hash {
            let mut out = [0u8; 32];
            for chunk in out.chunks_mut(8) {
                chunk.copy_from_slice(&self.next().to_le_bytes());
            }
            out
        }
    }

    /// RFC 6962 MTH, PATH and SUBPROOF straight from their recursive
    /// definitions over a leaf slice (memoised only to keep debug-mode test
    /// time low; the memo is keyed by the exact leaf range).
    struct Reference<'a> {
        leaves: &'a [Hash],
        memo: std::collections::HashMap<(usize, usize), Hash>,
    }

    impl Reference<'_> {
        /// MTH(D[a:b]).
        fn mth(&mut self, a: usize, b: usize) -> Hash {
            if let Some(h) = self.memo.get(&(a, b)) {
                return *h;
            }
            let h = match b - a {
                0 => empty_root(),
                1 => self.leaves[a],
                n => {
                    let k = split_point(n as u64) as usize;
                    let l = self.mth(a, a + k);
                    let r = self.mth(a + k, b);
                    node_hash(&l, &r)
                }
            };
            self.memo.insert((a, b), h);
            h
        }

        /// PATH(m, D[a:b]).
        fn path(&mut self, m: usize, a: usize, b: usize) -> Vec<Hash> {
            let n = b - a;
            if n <= 1 {
                return vec![];
            }
            let k = split_point(n as u64) as usize;
            if m < k {
                let mut p = self.path(m, a, a + k);
                p.push(self.mth(a + k, b));
                p
            } else {
                let mut p = self.path(m - k, a + k, b);
                p.push(self.mth(a, a + k));
                p
            }
        }

        /// SUBPROOF(m, D[a:b], flag).
        fn subproof(&mut self, m: usize, a: usize, b: usize, flag: bool) -> Vec<Hash> {
            let n = b - a;
            if m == n {
                return if flag { vec![] } else { vec![self.mth(a, b)] };
            }
            let k = split_point(n as u64) as usize;
            if m <= k {
                let mut p = self.subproof(m, a, a + k, flag);
                p.push(self.mth(a + k, b));
                p
            } else {
                let mut p = self.subproof(m - k, a + k, b, false);
                p.push(self.mth(a, a + k));
                p
            }
        }
    }

    fn ref_mth(d: &[Hash]) -> Hash {
        Reference {
            leaves: d,
            memo: Default::default(),
        }
        .mth(0, d.len())
    }

    /// Flips one pseudo-random bit of one pseudo-random proof element.
    fn flip(proof: &[Hash], rng: &mut Rng) -> Vec<Hash> {
        let mut p = proof.to_vec();
        let r = rng.next() as usize;
        let n = p.len();
        p[r % n][(r >> 8) % 32] ^= 1 << ((r >> 16) % 8);
        p
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // indices are tree sizes, not just positions
    fn randomized_cross_check_up_to_70() {
        const MAX: usize = 70;
        let mut rng = Rng(0x7472_6163_6576_6175);
        let leaves: Vec<Hash> = (0..MAX).map(|_| rng.hash()).collect();
        let mut t = MerkleTree::new();
        for l in &leaves {
            t.push(*l);
        }
        let mut reference = Reference {
            leaves: &leaves,
            memo: Default::default(),
        };
        let roots: Vec<Hash> = (0..=MAX).map(|n| reference.mth(0, n)).collect();
        let bogus = rng.hash();
        for size in 0..=MAX {
            let root = roots[size];
            assert_eq!(t.root_at(size as u64).unwrap(), root, "root_at {size}");
            let s = size as u64;
            for index in 0..size {
                let i = index as u64;
                let proof = t.inclusion_proof(i, s).unwrap();
                assert_eq!(proof, reference.path(index, 0, size), "path {index}/{size}");
                let leaf = leaves[index];
                verify_inclusion(&leaf, i, s, &proof, &root).unwrap();
                // Corruptions (after transparency-dev's corruptInclusionProof).
                if !proof.is_empty() {
                    let bad = flip(&proof, &mut rng);
                    assert!(verify_inclusion(&leaf, i, s, &bad, &root).is_err());
                }
                assert!(verify_inclusion(&bogus, i, s, &proof, &root).is_err());
                assert!(verify_inclusion(&leaf, i, s, &proof, &bogus).is_err());
                for wrong in [i.wrapping_sub(1), i + 1, i ^ 2] {
                    if wrong != i && leaves.get(wrong as usize) != Some(&leaf) {
                        assert!(verify_inclusion(&leaf, wrong, s, &proof, &root).is_err());
                    }
                }
                // Only sizes that change the proof's shape can be detected:
                // e.g. the proof for (1, 5) is also a valid-shaped proof for
                // (1, 6), and binds to the root alone.
                for wrong_size in [s * 2, s / 2] {
                    if wrong_size != s {
                        assert!(verify_inclusion(&leaf, i, wrong_size, &proof, &root).is_err());
                    }
                }
                let mut longer = proof.clone();
                longer.push(root);
                assert!(verify_inclusion(&leaf, i, s, &longer, &root).is_err());
                let mut prefixed = vec![root];
                prefixed.extend_from_slice(&proof);
                assert!(verify_inclusion(&leaf, i, s, &prefixed, &root).is_err());
                if !proof.is_empty() {
                    assert!(
                        verify_inclusion(&leaf, i, s, &proof[..proof.len() - 1], &root).is_err()
                    );
                }
            }
            for from in 0..=size {
                let f = from as u64;
                let proof = t.consistency_proof(f, s).unwrap();
                let want = if from == 0 || from == size {
                    vec![]
                } else {
                    reference.subproof(from, 0, size, true)
                };
                assert_eq!(proof, want, "consistency {from}->{size}");
                let old = roots[from];
                verify_consistency(f, s, &proof, &old, &root).unwrap();
                if proof.is_empty() {
                    continue;
                }
                let bad = flip(&proof, &mut rng);
                assert!(verify_consistency(f, s, &bad, &old, &root).is_err());
                assert!(verify_consistency(f, s, &proof, &bogus, &root).is_err());
                assert!(verify_consistency(f, s, &proof, &old, &bogus).is_err());
                assert!(verify_consistency(f, s, &proof, &root, &old).is_err());
                assert!(verify_consistency(f, s, &[], &old, &root).is_err());
                for (wf, ws) in [(f - 1, s), (f + 1, s), (f ^ 2, s), (f, s * 2), (f, s / 2)] {
                    if (wf, ws) != (f, s) {
                        assert!(verify_consistency(wf, ws, &proof, &old, &root).is_err());
                    }
                }
                let mut longer = proof.clone();
                longer.push(old);
                assert!(verify_consistency(f, s, &longer, &old, &root).is_err());
                let mut prefixed = vec![proof[0]];
                prefixed.extend_from_slice(&proof);
                assert!(verify_consistency(f, s, &prefixed, &old, &root).is_err());
                assert!(verify_consistency(f, s, &proof[..proof.len() - 1], &old, &root).is_err());
            }
        }
    }

    #[test]
    fn larger_tree_spot_checks() {
        let mut rng = Rng(42);
        let leaves: Vec<Hash> = (0..3000).map(|_| rng.hash()).collect();
        let mut t = MerkleTree::new();
        for l in &leaves {
            t.push(*l);
        }
        // Memory: about two hashes per leaf.
        let stored: usize = t.levels.iter().map(Vec::len).sum();
        assert!(stored < 2 * leaves.len());
        for &size in &[1usize, 2, 1023, 1024, 1025, 2047, 2999, 3000] {
            let root = ref_mth(&leaves[..size]);
            assert_eq!(t.root_at(size as u64).unwrap(), root);
            for &index in &[0, size / 3, size - 1] {
                let proof = t.inclusion_proof(index as u64, size as u64).unwrap();
                verify_inclusion(&leaves[index], index as u64, size as u64, &proof, &root).unwrap();
            }
            for &from in &[1usize, size / 2, size - 1] {
                if from == 0 {
                    continue;
                }
                let proof = t.consistency_proof(from as u64, size as u64).unwrap();
                let old = t.root_at(from as u64).unwrap();
                verify_consistency(from as u64, size as u64, &proof, &old, &root).unwrap();
            }
        }
        assert_eq!(t.root(), ref_mth(&leaves));
    }
}
