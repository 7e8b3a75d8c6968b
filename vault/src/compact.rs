//! Background compaction: segments are flushed small and often (so that
//! checkpoints follow acks within a second or two) and merged here into large
//! ones, so that readers and `verify` face few objects.
//!
//! A merge writes the new segment create-only, signed for the same tree state
//! as the segments it replaces, and only then deletes them. Until the delete,
//! both exist: readers and `verify` take the largest segment starting at each
//! position and check that any segment it covers holds the same entries. A
//! segment is only ever deleted when a segment covering it has been checked to
//! be ours: signed by the log key, intact, and signed for the tree root this
//! server holds in memory. A planted "cover" can therefore never make the
//! compactor delete real data.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;

use crate::merkle::MerkleTree;
use crate::record::Hash;
use crate::segment::{self, SegmentSeal};
use crate::store::{Store, StoreError, layout};

/// When and how much to merge (part of [`crate::LogConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct CompactPolicy {
    /// Merge runs of segments up to this many rows in total.
    pub target_rows: u64,
    /// Merge a run only once it has this many segments (or reaches half the target).
    pub min_segments: usize,
    /// Codec of the merged segment.
    pub compression: segment::SegmentCompression,
}

pub use crate::tiling::{Range, cover_order, split_covered};

/// Most segments merged in one round, and most leftovers deleted in one round:
/// a round runs inside the publisher, so it must stay short (a few seconds of
/// object-store calls) for checkpoints and lease renewals to keep their pace.
pub const MAX_SEGMENTS_PER_ROUND: usize = 128;

/// Picks the first run of consecutive small segments worth merging.
pub fn pick_run(cover: &[(u64, u64)], policy: CompactPolicy) -> Option<(usize, usize)> {
    let small = |&(a, b): &(u64, u64)| b - a + 1 < policy.target_rows / 2;
    let mut i = 0;
    while i < cover.len() {
        if !small(&cover[i]) {
            i += 1;
            continue;
        }
        let (mut j, mut rows) = (i, 0u64);
        while j < cover.len()
            && j - i < MAX_SEGMENTS_PER_ROUND
            && small(&cover[j])
            && (j == i || cover[j].0 == cover[j - 1].1 + 1)
        {
            let r = cover[j].1 - cover[j].0 + 1;
            if rows + r > policy.target_rows {
                break;
            }
            rows += r;
            j += 1;
        }
        if j - i >= 2 && (j - i >= policy.min_segments || rows >= policy.target_rows / 2) {
            return Some((i, j));
        }
        i = j.max(i + 1);
    }
    None
}

/// Why a compaction round stopped.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The store failed; try again later.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something found in the store is not what this server wrote.
    #[error("{0}")]
    Foreign(String),
}

/// Fetches segment `name` (of range `first..=last`) and checks it is ours
/// and signed for `tree`'s state.
pub(crate) async fn fetch_own(
    store: &Store,
    ns: &str,
    ((first, last), name): ((u64, u64), &str),
    key: &SigningKey,
    tree_root_at_end: Hash,
) -> Result<segment::DecodedSegment, CompactError> {
    let bytes = store
        .get(&layout::segment_named(ns, name))
        .await?
        .ok_or_else(|| CompactError::Foreign(format!("segment {first}-{last} vanished")))?;
    let vk = key.verifying_key();
    let seg = tokio::task::spawn_blocking(move || {
        let seg = segment::decode(bytes.clone()).map_err(|e| e.to_string())?;
        let ok = segment::verify_header_signature(&seg.header, &seg.signature, &vk)
            && segment::file_digest_matches(&seg.header, &seg.signature, &bytes)
            && (seg.header.first, seg.header.last) == (first, last)
            && seg.entries.len() as u64 == last - first + 1
            && seg
                .entries
                .iter()
                .enumerate()
                .all(|(i, e)| e.idx == first + i as u64);
        if ok {
            Ok(seg)
        } else {
            Err(format!("segment {first}-{last} is not intact or not ours"))
        }
    })
    .await
    .map_err(|e| CompactError::Foreign(e.to_string()))?
    .map_err(CompactError::Foreign)?;
    if seg.header.root != B64.encode(tree_root_at_end) {
        return Err(CompactError::Foreign(format!(
            "segment {first}-{last} is not signed for this log's tree"
        )));
    }
    Ok(seg)
}

/// One round: deletes segments already covered by a verified merge, then
/// merges at most one run. Returns the number of objects written or deleted.
pub async fn compact_once<F, Fut>(
    store: &Store,
    ns: &str,
    origin: &str,
    key: &SigningKey,
    tree: F,
    policy: CompactPolicy,
) -> Result<usize, CompactError>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Option<Hash>>,
{
    let names = store.list_names(&layout::segments(ns)).await?;
    let tiling = crate::tiling::tile(names.iter().map(String::as_str));
    let (cover, covered) = (&tiling.cover, &tiling.covered);
    let root_at = async |size: u64| {
        tree(size)
            .await
            .ok_or_else(|| CompactError::Foreign(format!("tree has no size {size}")))
    };
    let mut changed = 0;
    // Leftovers of an interrupted merge or rewrite (covered ranges, in every
    // generation, and older generations of a listed range): delete them
    // only under a verified cover (each cover checked once per round).
    let mut verified: Vec<Range> = Vec::new();
    let leftovers = covered
        .iter()
        .map(|&r| (r, tiling.name(r)))
        .chain(tiling.superseded.iter().cloned());
    for ((a, b), name) in leftovers.take(MAX_SEGMENTS_PER_ROUND) {
        let Some(&c) = cover.iter().rev().find(|&&(ca, cb)| ca <= a && b <= cb) else {
            continue;
        };
        if !verified.contains(&c) {
            let cname = tiling.name(c);
            fetch_own(store, ns, (c, &cname), key, root_at(c.1 + 1).await?).await?;
            verified.push(c);
        }
        if name == tiling.name(c) {
            continue; // the cover itself (never deleted here)
        }
        store.delete(&layout::segment_named(ns, &name)).await?;
        changed += 1;
    }
    if changed > 0 {
        // One kind of work per round keeps rounds short.
        return Ok(changed);
    }
    let Some((i, j)) = pick_run(cover, policy) else {
        return Ok(changed);
    };
    let run = &cover[i..j];
    let (first, last) = (run[0].0, run[run.len() - 1].1);
    let mut entries = Vec::with_capacity((last - first + 1) as usize);
    let mut chain_in: Option<Hash> = None;
    for &r in run {
        let name = tiling.name(r);
        let seg = fetch_own(store, ns, (r, &name), key, root_at(r.1 + 1).await?).await?;
        if chain_in.is_none() {
            let mut c = [0u8; 32];
            hex::decode_to_slice(&seg.header.chain_in, &mut c)
                .map_err(|e| CompactError::Foreign(e.to_string()))?;
            chain_in = Some(c);
        }
        entries.extend(seg.entries);
    }
    let root = root_at(last + 1).await?;
    let key_id = crate::note::key_id(origin, &key.verifying_key().to_bytes());
    let k = key.clone();
    let chain_in = chain_in.unwrap_or([0; 32]);
    let compression = policy.compression;
    let (_, bytes) = tokio::task::spawn_blocking(move || {
        segment::encode_with(
            &entries,
            &SegmentSeal {
                chain_in,
                root,
                key_id,
                key: &k,
            },
            compression,
        )
    })
    .await
    .map_err(|e| CompactError::Foreign(e.to_string()))?
    .map_err(|e| CompactError::Foreign(e.to_string()))?;
    match store
        .put_create(&layout::segment(ns, first, last), bytes)
        .await
    {
        Ok(()) => {}
        // Written by an earlier round that stopped before deleting: verify it.
        Err(StoreError::AlreadyExists(_)) => {
            let name = segment::segment_file_name(first, last);
            fetch_own(store, ns, ((first, last), &name), key, root).await?;
        }
        Err(e) => return Err(e.into()),
    }
    changed += 1;
    for &r in run {
        store
            .delete(&layout::segment_named(ns, &tiling.name(r)))
            .await?;
        changed += 1;
    }
    tracing::debug!(ns, first, last, merged = run.len(), "compacted segments");
    Ok(changed)
}

/// `MerkleTree::root_at` as the root source [`compact_once`] takes.
pub fn roots(tree: &MerkleTree) -> impl Fn(u64) -> std::future::Ready<Option<Hash>> + '_ {
    move |s| std::future::ready(tree.root_at(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_ranges_are_split_off() {
        let mut r = vec![(10, 19), (0, 4), (0, 19), (5, 9), (20, 29)];
        cover_order(&mut r);
        assert_eq!(r, vec![(0, 19), (0, 4), (5, 9), (10, 19), (20, 29)]);
        let (cover, covered) = split_covered(&r);
        assert_eq!(cover, vec![(0, 19), (20, 29)]);
        assert_eq!(covered, vec![(0, 4), (5, 9), (10, 19)]);
    }

    #[test]
    fn runs_of_small_segments_are_picked() {
        let p = CompactPolicy {
            target_rows: 100,
            min_segments: 3,
            compression: Default::default(),
        };
        let segs: Vec<(u64, u64)> = (0..5).map(|i| (i * 10, i * 10 + 9)).collect();
        assert_eq!(pick_run(&segs, p), Some((0, 5)));
        assert_eq!(
            pick_run(&segs[..2], p),
            None,
            "two small segments of 20 rows: wait"
        );
        let big = vec![(0, 99), (100, 109), (110, 119), (120, 129), (130, 139)];
        assert_eq!(pick_run(&big, p), Some((1, 5)));
        // The run stops at the target.
        let many: Vec<(u64, u64)> = (0..20).map(|i| (i * 20, i * 20 + 19)).collect();
        assert_eq!(pick_run(&many, p), Some((0, 5)));
    }
}
