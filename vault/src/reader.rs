//! The store-only lifecycle of the logs: [`LogReader`] reads what the store
//! holds (segments, checkpoints) with no data-directory lock, no WAL and no
//! signing key, so that `verify`, `replay --data`, exports and query nodes
//! can read a store while a server writes it, or with no server at all.
//!
//! The writing lifecycle is the [`crate::log::Appender`] (WAL, lease,
//! sequencer, publisher), which [`crate::Vault`] opens per namespace. Which
//! segment objects make up a log is decided by [`crate::tiling`]; this
//! module is the one place that lists a namespace's segments to read them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::record::Entry;
use crate::segment::{self, SegmentError, SessionKey};
use crate::store::{Store, layout};
use crate::tiles::TileId;
use crate::vault::{VaultError, VaultMeta, read_meta, validate_namespace};
use crate::verify::{Report, VerifyError, VerifyOptions, verify_store};

/// One segment object a reader must read (see [`LogReader::segments`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentObject {
    /// Object path in the store.
    #[serde(with = "path_serde")]
    pub path: object_store::path::Path,
    /// Size in bytes, as listed.
    pub size: u64,
    /// First entry index in it.
    pub first: u64,
    /// Last entry index in it.
    pub last: u64,
}

mod path_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &object_store::path::Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<object_store::path::Path, D::Error> {
        Ok(object_store::path::Path::from(String::deserialize(d)?))
    }
}

/// What a reader of one namespace must read to see every acknowledged entry
/// at one moment (see [`crate::Vault::read_plan`]): the segment objects that
/// tile the published prefix, and the durable entries not yet in a segment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadPlan {
    /// Segments covering indices `0..=last`, in index order.
    pub segments: Vec<SegmentObject>,
    /// Acknowledged entries after the last segment, in index order.
    pub tail: Vec<Entry>,
}

/// Decodes the wanted entries of one segment file (run off the async threads).
pub(crate) type SegmentDecoder = Box<dyn FnOnce(Bytes) -> Result<Vec<Entry>, SegmentError> + Send>;

/// Reads the logs of a store: no lock, no WAL, no key. Cheap to clone.
#[derive(Clone)]
pub struct LogReader {
    store: Store,
}

/// Listings retried when a segment seems missing (compaction swaps segments).
const LIST_ATTEMPTS: u32 = 3;

impl LogReader {
    /// A reader of `store`.
    pub fn new(store: Store) -> LogReader {
        LogReader { store }
    }

    /// The store read.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `vault.json`, if the store has one.
    pub async fn meta(&self) -> Result<Option<VaultMeta>, VaultError> {
        read_meta(&self.store).await
    }

    /// Every namespace in the store (system ones, `_audit`, included).
    pub async fn namespaces(&self) -> Result<Vec<String>, VaultError> {
        Ok(self.store.list_dirs(&layout::namespaces()).await?)
    }

    /// Runs `tracevault verify` over the store (see [`verify_store`]).
    pub async fn verify(&self, opts: &VerifyOptions) -> Result<Report, VerifyError> {
        verify_store(&self.store, opts).await
    }

    /// The size of the store's latest checkpoint of `ns` (0 when there is
    /// none). A checkpoint object that is there but unreadable is an error:
    /// it must not switch off the check for removed segments.
    pub async fn published_size(&self, ns: &str) -> Result<u64, VaultError> {
        let Some(b) = self.store.get(&layout::latest_checkpoint(ns)).await? else {
            return Ok(0);
        };
        checkpoint_size(&b).ok_or_else(|| {
            VaultError::Read(format!(
                "the latest checkpoint of {ns} is unreadable; run `tracevault verify`"
            ))
        })
    }

    /// Like [`LogReader::published_size`], for listings: an unreadable
    /// checkpoint shows as size 0 rather than failing the whole list.
    pub(crate) async fn listed_size(&self, ns: &str) -> Result<u64, VaultError> {
        Ok(self
            .store
            .get(&layout::latest_checkpoint(ns))
            .await?
            .and_then(|b| checkpoint_size(&b))
            .unwrap_or(0))
    }

    /// The segment objects that tile `ns` from index 0, in index order.
    /// Entries `0..floor` must be in them (a signed checkpoint covers
    /// them): a hole below `floor` means a segment was removed, and fails
    /// rather than giving a silently partial read. A listing taken while
    /// compaction swaps segments can show a transient hole, so the listing
    /// is retried before failing.
    pub async fn segments(&self, ns: &str, floor: u64) -> Result<Vec<SegmentObject>, VaultError> {
        validate_namespace(ns, true)?;
        let mut attempt = 1;
        loop {
            let listed = self.store.list_sized(&layout::segments(ns)).await?;
            let sizes: HashMap<&str, u64> =
                listed.iter().map(|(n, size)| (n.as_str(), *size)).collect();
            let tiling = crate::tiling::tile(listed.iter().map(|(n, _)| n.as_str()));
            match tiling.hole_below(floor) {
                None => {
                    return Ok(tiling
                        .cover
                        .iter()
                        .map(|&(first, last)| {
                            let name = tiling.name((first, last));
                            SegmentObject {
                                size: sizes.get(name.as_str()).copied().unwrap_or(0),
                                path: layout::segment_named(ns, &name),
                                first,
                                last,
                            }
                        })
                        .collect());
                }
                Some(_) if attempt < LIST_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Some((a, b)) => {
                    return Err(VaultError::Read(format!(
                        "entries {a}-{b} of {ns} are missing from the store (a segment was removed); run `tracevault verify`"
                    )));
                }
            }
        }
    }

    /// The bytes of tile `id` of `ns` (`None` if the store has no such
    /// tile). A partial tile that is not stored is cut from the full tile
    /// when that exists: its hashes are a prefix of the full tile's.
    pub async fn tile(&self, ns: &str, id: TileId) -> Result<Option<Bytes>, VaultError> {
        validate_namespace(ns, true)?;
        let want = usize::from(id.width) * 32;
        let found = match self.store.get(&layout::tile(ns, &id)).await? {
            Some(b) => Some(b),
            None if id.is_partial() => self
                .store
                .get(&layout::tile(ns, &id.full()))
                .await?
                .map(|b| b.slice(..want.min(b.len()))),
            None => None,
        };
        match found {
            Some(b) if b.len() != want => Err(VaultError::Read(format!(
                "tile {} of {ns} holds {} bytes, not {want}; run `tracevault verify`",
                id.path(),
                b.len()
            ))),
            other => Ok(other),
        }
    }

    /// The bytes of one segment. Gone since the listing means merged away
    /// by compaction: an error (retry), never a silently partial read.
    pub async fn segment_bytes(&self, ns: &str, seg: &SegmentObject) -> Result<Bytes, VaultError> {
        self.store.get(&seg.path).await?.ok_or_else(|| {
            VaultError::Read(format!(
                "segment {}-{} of {ns} vanished during the read (compaction); retry",
                seg.first, seg.last
            ))
        })
    }

    /// What `decoder` gives for each segment it accepts, in index order, up
    /// to about `limit` entries (reading stops once more are held).
    pub(crate) async fn decode_segments(
        &self,
        ns: &str,
        segments: Vec<SegmentObject>,
        decoder: impl Fn(u64, u64) -> Option<SegmentDecoder>,
        limit: usize,
        mut out: Vec<Entry>,
    ) -> Result<Vec<Entry>, VaultError> {
        for seg in segments {
            if out.len() > limit {
                break;
            }
            let (first, last) = (seg.first, seg.last);
            let Some(decode) = decoder(first, last) else {
                continue;
            };
            let bytes = self.segment_bytes(ns, &seg).await?;
            let rows = tokio::task::spawn_blocking(move || decode(bytes))
                .await
                .map_err(|e| VaultError::Read(e.to_string()))?
                .map_err(|e| VaultError::Read(format!("segment {first}-{last}: {e}")))?;
            out.extend(rows);
        }
        out.sort_by_key(|e| e.idx);
        out.dedup_by_key(|e| e.idx);
        Ok(out)
    }

    /// Entry `index` of `ns` from the store segment holding it; `None` when
    /// no segment holds it and `index >= floor` (not published yet). Below
    /// `floor` a missing entry means a removed segment: an error.
    pub async fn entry(
        &self,
        ns: &str,
        index: u64,
        floor: u64,
    ) -> Result<Option<Entry>, VaultError> {
        validate_namespace(ns, true)?;
        let missing = || {
            VaultError::Read(format!(
                "entry {index} of {ns} is missing from the store (a segment was removed); run `tracevault verify`"
            ))
        };
        for _attempt in 0..LIST_ATTEMPTS {
            let names = self.store.list_names(&layout::segments(ns)).await?;
            let tiling = crate::tiling::tile(names.iter().map(String::as_str));
            let Some((first, last)) = tiling.holding(index) else {
                return if index < floor {
                    Err(missing())
                } else {
                    Ok(None)
                };
            };
            let path = layout::segment_named(ns, &tiling.name((first, last)));
            let Some(bytes) = self.store.get(&path).await? else {
                continue; // merged away since the listing: list again
            };
            // Only the row of `index` (and the pages holding it) is decoded.
            let found = tokio::task::spawn_blocking(move || {
                let mut found = None;
                segment::decode_indices(bytes, first, &[index], |e| found = Some(e)).map(|()| found)
            })
            .await
            .map_err(|e| VaultError::Read(e.to_string()))?
            .map_err(|e| VaultError::Read(format!("segment {first}-{last}: {e}")))?;
            return match found {
                None if index < floor => Err(missing()),
                found => Ok(found),
            };
        }
        Err(VaultError::Read(format!(
            "the segment holding entry {index} of {ns} kept moving (compaction); retry"
        )))
    }

    /// Every entry of session `session` of `ns` at index `from` or later
    /// in the segments, up to the store's published size `floor` (a missing
    /// segment below it fails). Segments ending before `from` are not read.
    pub async fn published_session_entries(
        &self,
        ns: &str,
        session: &str,
        from: u64,
        floor: u64,
    ) -> Result<Vec<Entry>, VaultError> {
        let segments: Vec<SegmentObject> = self
            .segments(ns, floor)
            .await?
            .into_iter()
            .filter(|s| s.last >= from)
            .collect();
        let sid = session.to_string();
        self.decode_segments(
            ns,
            segments,
            move |_, _| {
                let sid = sid.clone();
                Some(Box::new(move |bytes| {
                    let mut rows = Vec::new();
                    crate::segment::decode_session(bytes, &sid, |e| rows.push(e)).map(|_| rows)
                }) as SegmentDecoder)
            },
            usize::MAX,
            Vec::new(),
        )
        .await
        .map(|mut v| {
            v.retain(|e| e.idx >= from);
            v
        })
    }

    /// The keys (index, seq, kind, times) of every published entry of
    /// session `session` in `ns`, in log order, each with the position in
    /// the returned segment list of the segment holding it; decoding six
    /// small columns per segment. Rows are read later with
    /// [`LogReader::entries_in`].
    pub async fn session_keys(
        &self,
        ns: &str,
        session: &str,
    ) -> Result<(Vec<SegmentObject>, Vec<(SessionKey, u32)>), VaultError> {
        let floor = self.published_size(ns).await?;
        let segments = self.segments(ns, floor).await?;
        let mut keys: Vec<(SessionKey, u32)> = Vec::new();
        for (s, seg) in segments.iter().enumerate() {
            let bytes = self.segment_bytes(ns, seg).await?;
            let sid = session.to_string();
            let found =
                tokio::task::spawn_blocking(move || segment::decode_session_keys(bytes, &sid))
                    .await
                    .map_err(|e| VaultError::Read(e.to_string()))?
                    .map_err(|e| {
                        VaultError::Read(format!("segment {}-{}: {e}", seg.first, seg.last))
                    })?;
            let s = u32::try_from(s)
                .map_err(|_| VaultError::Read(format!("{ns} has too many segments")))?;
            keys.extend(found.into_iter().map(|k| (k, s)));
        }
        keys.sort_by_key(|(k, _)| k.idx);
        keys.dedup_by_key(|(k, _)| k.idx);
        Ok((segments, keys))
    }

    /// The entries at `indices` of one segment (already fetched), decoding
    /// only those rows.
    pub fn entries_in(
        seg: &SegmentObject,
        bytes: Bytes,
        indices: &[u64],
    ) -> Result<Vec<Entry>, VaultError> {
        let mut rows = Vec::with_capacity(indices.len());
        segment::decode_indices(bytes, seg.first, indices, |e| rows.push(e))
            .map_err(|e| VaultError::Read(format!("segment {}-{}: {e}", seg.first, seg.last)))?;
        Ok(rows)
    }

    /// A decoder for the rows of `indices` that fall in a segment, for
    /// [`LogReader::decode_segments`].
    pub(crate) fn indices_decoder(
        indices: Arc<BTreeSet<u64>>,
    ) -> impl Fn(u64, u64) -> Option<SegmentDecoder> {
        move |first, last| {
            let here: Vec<u64> = indices.range(first..=last).copied().collect();
            (!here.is_empty()).then(|| -> SegmentDecoder {
                Box::new(move |bytes| {
                    let mut rows = Vec::with_capacity(here.len());
                    segment::decode_indices(bytes, first, &here, |e| rows.push(e)).map(|_| rows)
                })
            })
        }
    }
}

/// The size line of a checkpoint note (C2SP: origin, size, root).
pub(crate) fn checkpoint_size(note: &[u8]) -> Option<u64> {
    std::str::from_utf8(note)
        .ok()?
        .lines()
        .nth(1)?
        .parse::<u64>()
        .ok()
}
