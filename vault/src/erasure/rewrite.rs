//! Rewriting segments without the payloads of erased entries.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use serde::Serialize;

use super::IndexRanges;
use crate::Store;
use crate::compact::{CompactError, fetch_own};
use crate::record::Hash;
use crate::segment::{self, SegmentSeal, parse_segment_name, segment_file_name_gen};
use crate::store::{StoreError, layout};

/// What one erasure run changed in the store.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// Entries whose payload this run removed.
    pub entries: u64,
    /// Entries of the order that were erased already (an earlier, or
    /// interrupted, run).
    pub already: u64,
    /// Segments rewritten.
    pub segments: u64,
    /// Leftover segment objects (older generations, merged-away parts)
    /// that held entries of the order and were deleted.
    pub leftovers_deleted: u64,
    /// Bytes of the rewritten segments.
    pub bytes_written: u64,
}

/// Erases the payloads of `indices` of `ns` in the store: every segment of
/// the cover that holds one is fetched, checked to be ours and signed for
/// the tree root `root_at` gives at its end (the writer's trusted tree,
/// never the store's word), rewritten without those payloads as the next
/// generation of its range, and its older generation deleted. Leftovers
/// that still hold an entry of `indices` (a superseded generation, a
/// segment merged away but not yet deleted) are deleted under their
/// verified cover. Idempotent: a second run over the same indices changes
/// nothing, and a run interrupted anywhere is completed by the next.
/// The caller excludes compaction for the duration (it rewrites the same
/// objects). Rewritten segments are compressed with `compression`.
pub async fn erase_in_store<F, Fut>(
    store: &Store,
    ns: &str,
    origin: &str,
    key: &SigningKey,
    root_at: F,
    indices: &IndexRanges,
    compression: segment::SegmentCompression,
) -> Result<Erased, CompactError>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Option<Hash>>,
{
    let mut out = Erased::default();
    if indices.is_empty() {
        return Ok(out);
    }
    let root_of = async |end: u64| {
        root_at(end)
            .await
            .ok_or_else(|| CompactError::Foreign(format!("tree has no size {end}")))
    };
    let names = store.list_names(&layout::segments(ns)).await?;
    let tiling = crate::tiling::tile(names.iter().map(String::as_str));
    let key_id = crate::note::key_id(origin, &key.verifying_key().to_bytes());
    for &(first, last) in &tiling.cover {
        if !indices.intersects(first, last) {
            continue;
        }
        let name = tiling.name((first, last));
        let root = root_of(last + 1).await?;
        let seg = fetch_own(store, ns, ((first, last), &name), key, root).await?;
        let mut entries = seg.entries;
        let mut changed = 0u64;
        for e in entries.iter_mut().filter(|e| indices.contains(e.idx)) {
            if e.is_erased() {
                out.already += 1;
            } else {
                e.erase();
                changed += 1;
            }
        }
        if changed > 0 {
            let mut chain_in = [0u8; 32];
            hex::decode_to_slice(&seg.header.chain_in, &mut chain_in)
                .map_err(|e| CompactError::Foreign(format!("segment {name}: chain_in: {e}")))?;
            let generation = parse_segment_name(&name).map_or(0, |(_, _, g)| g);
            let next = generation.checked_add(1).ok_or_else(|| {
                CompactError::Foreign(format!("segment {name} has no generation left"))
            })?;
            let k = key.clone();
            let (header, bytes) = tokio::task::spawn_blocking(move || {
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
            // The same range, chain and tree state as the segment it replaces.
            if (header.first, header.last, &header.chain_out, &header.root)
                != (first, last, &seg.header.chain_out, &B64.encode(root))
            {
                return Err(CompactError::Foreign(format!(
                    "rewriting {name} changed its signed facts"
                )));
            }
            let new_name = segment_file_name_gen(first, last, next);
            out.bytes_written += bytes.len() as u64;
            match store
                .put_create(&layout::segment_named(ns, &new_name), bytes)
                .await
            {
                Ok(()) => {}
                // Listed after ours: someone else rewrote it meanwhile.
                Err(StoreError::AlreadyExists(p)) => {
                    return Err(CompactError::Foreign(format!(
                        "{p} appeared during the erasure; run it again"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            store.delete(&layout::segment_named(ns, &name)).await?;
            out.entries += changed;
            out.segments += 1;
            tracing::info!(ns, segment = %new_name, erased = changed, "segment rewritten without erased payloads");
        }
        // Older generations of this range still hold the payloads.
        for (r, old) in &tiling.superseded {
            if *r == (first, last) {
                store.delete(&layout::segment_named(ns, old)).await?;
                out.leftovers_deleted += 1;
            }
        }
    }
    // Parts of an interrupted merge, and older generations of covered
    // ranges, that hold an entry of the order: their cover holds that entry
    // too, so it was checked (and rewritten) above.
    let leftovers = tiling.covered.iter().map(|&r| (r, tiling.name(r))).chain(
        tiling
            .superseded
            .iter()
            .filter(|(r, _)| !tiling.cover.contains(r))
            .cloned(),
    );
    for ((a, b), name) in leftovers {
        if !indices.intersects(a, b) {
            continue;
        }
        if !tiling.cover.iter().any(|&(ca, cb)| ca <= a && b <= cb) {
            continue;
        }
        store.delete(&layout::segment_named(ns, &name)).await?;
        out.leftovers_deleted += 1;
    }
    Ok(out)
}
