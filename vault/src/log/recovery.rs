//! Opening a namespace: from its latest checkpoint, right-edge tiles and
//! newest session-state snapshot plus the last segments (a bounded read,
//! whatever the log's size), or, for a store without them, by rebuilding
//! the state from every segment (each checked against the log key and the
//! chain); then checking it against the last checkpoint this server signed
//! and replaying the WAL on top.

use super::*;
use crate::reader::LogReader;
use crate::session_state::{SessionState, parse_state_name};
use crate::tiles::{TileBuilder, TileId};

/// Where the open finds the hashes of entries already in the store.
pub(super) enum Stored {
    /// Every leaf, rebuilt from every segment (a store without tiles or
    /// snapshots, and read-only snapshots of one).
    Tree(MerkleTree),
    /// The tiles of the latest checkpoint (checked against its signed
    /// root) and the leaves of segments published after it.
    Tiles {
        tiles: Box<TileTree>,
        /// The tree's edge at the checkpoint.
        at_checkpoint: TileBuilder,
        /// Leaves `checkpoint..published` (segments written after it).
        beyond: Vec<Hash>,
        /// The level-0 tile last read by [`Stored::leaf`] (the WAL is
        /// checked in index order: one tile read per 256 entries).
        row: Option<(u64, Vec<Hash>)>,
    },
}

impl Stored {
    /// The stored leaf at `idx < published`.
    /// The stored leaf at `idx < published` (`Ok(None)`: there is none;
    /// `Err`: the tiles could not be read).
    async fn leaf(&mut self, idx: u64) -> Result<Option<Hash>, ProofError> {
        match self {
            Stored::Tree(t) => Ok(t.leaf(idx)),
            Stored::Tiles {
                tiles,
                at_checkpoint,
                beyond,
                row,
            } => {
                let cp = at_checkpoint.size();
                if idx < cp {
                    let w = crate::tiles::TILE_WIDTH;
                    let t = idx / w;
                    if row.as_ref().is_none_or(|(i, _)| *i != t) {
                        let hashes = tiles.level_hashes(0, t * w, ((t + 1) * w).min(cp)).await?;
                        *row = Some((t, hashes));
                    }
                    Ok(row
                        .as_ref()
                        .and_then(|(_, r)| r.get((idx - t * w) as usize).copied()))
                } else {
                    Ok(beyond.get((idx - cp) as usize).copied())
                }
            }
        }
    }

    /// The root at `size <= published`.
    async fn root_at(&mut self, size: u64) -> Option<Hash> {
        match self {
            Stored::Tree(t) => t.root_at(size).ok(),
            Stored::Tiles {
                tiles,
                at_checkpoint,
                beyond,
                ..
            } => {
                let cp = at_checkpoint.size();
                if size == 0 {
                    Some(crate::merkle::empty_root())
                } else if size <= cp {
                    tiles.range(0, size).await.ok()
                } else {
                    let mut edge = at_checkpoint.clone();
                    for leaf in beyond.get(..(size - cp) as usize)? {
                        edge.push(*leaf, |_, _| {});
                    }
                    Some(edge.root())
                }
            }
        }
    }
}

/// Everything loaded from the store and WAL at open.
pub(super) struct Loaded {
    pub(super) stored: Stored,
    /// The tree at `published`, as its right edge.
    pub(super) edge: TileBuilder,
    /// Entries durable (published, then the WAL's on top).
    pub(super) len: u64,
    pub(super) chain: Hash,
    pub(super) sessions: HashMap<String, u64>,
    pub(super) dedup: Dedup,
    pub(super) tail: VecDeque<Arc<Entry>>,
    pub(super) published: u64,
    pub(super) published_chain: Hash,
    pub(super) latest: Option<(u64, String)>,
    pub(super) last_received: i64,
    /// The tree's root at the end of every segment read (checked against
    /// the segment's signed header): what compaction checks segments with.
    pub(super) segment_roots: std::collections::BTreeMap<u64, Hash>,
    /// What the publisher needs to write the next session-state snapshot:
    /// the size of the newest one in the store, and the sessions published
    /// entries after it changed (next `session_seq`), with their newest
    /// `received_at`.
    pub(super) snapshots: SnapshotBase,
    /// Tiles the published size needs that the open found missing: written
    /// before anything else.
    pub(super) missing_tiles: Vec<(TileId, Bytes)>,
}

/// The newest session-state snapshot and what was published since.
#[derive(Default)]
pub(super) struct SnapshotBase {
    /// Size of the newest snapshot in the store (0: none; then `since`
    /// holds every session).
    pub(super) size: u64,
    /// Next `session_seq` of each session published entries after it changed.
    pub(super) since: HashMap<String, u64>,
    /// The largest `received_at` published.
    pub(super) last_received: i64,
    /// Sessions in the newest snapshot: the next one is due only after at
    /// least twice as many entries, so that rewriting every counter costs
    /// at most about one counter per two entries published.
    pub(super) sessions: u64,
    /// No more snapshots until the next open (the last one is unreadable).
    pub(super) disabled: bool,
}

impl SnapshotBase {
    /// Stops snapshots (and forgets what they would need).
    pub(super) fn disable(&mut self) {
        self.disabled = true;
        self.since = HashMap::new();
    }

    /// Notes a published entry.
    pub(super) fn absorb(&mut self, e: &Entry) {
        if self.disabled {
            return;
        }
        let next = self.since.entry(e.session_id.clone()).or_insert(0);
        *next = (*next).max(e.session_seq.saturating_add(1));
        self.last_received = self.last_received.max(e.received_at);
    }
}

impl Loaded {
    fn empty(cfg: &LogConfig, stored: Stored) -> Loaded {
        Loaded {
            stored,
            edge: TileBuilder::default(),
            len: 0,
            chain: [0; 32],
            sessions: HashMap::new(),
            dedup: Dedup::new(cfg.dedup_window),
            tail: VecDeque::new(),
            published: 0,
            published_chain: [0; 32],
            latest: None,
            last_received: 0,
            segment_roots: std::collections::BTreeMap::new(),
            snapshots: SnapshotBase::default(),
            missing_tiles: Vec::new(),
        }
    }

    /// Takes in an entry that continues the log (checked by the caller).
    pub(super) fn absorb(&mut self, e: &Entry) {
        self.len = e.idx + 1;
        self.chain = e.chain_hash;
        let next = self.sessions.entry(e.session_id.clone()).or_insert(0);
        *next = (*next).max(e.session_seq.saturating_add(1));
        self.dedup.absorb(e);
        self.last_received = self.last_received.max(e.received_at);
    }

    /// The tree built by [`load_store`] (always [`Stored::Tree`] there).
    pub(super) fn tree(&self) -> Option<&MerkleTree> {
        match &self.stored {
            Stored::Tree(t) => Some(t),
            Stored::Tiles { .. } => None,
        }
    }
}

pub(super) fn inconsistent(ns: &str, reason: String) -> OpenError {
    OpenError::Inconsistent {
        ns: ns.to_string(),
        reason,
    }
}

/// Reads every segment of `ns` in order and rebuilds the log state. Segments
/// are checked for contiguity and chain continuity (full verification is
/// `tracevault verify`'s job).
pub(super) async fn load_store(
    ctx: &LogContext,
    ns: &str,
    snapshot: bool,
) -> Result<Loaded, OpenError> {
    // A snapshot of a namespace another server is writing reads the pointer
    // first and stops there: segments and checkpoints published meanwhile are
    // not part of it (and are not inconsistencies).
    let limit = if snapshot {
        match ctx.store.get(&layout::latest_checkpoint(ns)).await? {
            Some(b) => {
                let name = format!("{}/{ns}", ctx.vault_origin);
                let cp = note::open_checkpoint(
                    &String::from_utf8_lossy(&b),
                    &name,
                    &ctx.key.verifying_key(),
                )
                .map_err(|e| inconsistent(ns, format!("latest checkpoint: {e}")))?;
                Some((cp.size, String::from_utf8_lossy(&b).to_string()))
            }
            None => Some((0, String::new())),
        }
    } else {
        None
    };
    let mut l = Loaded::empty(&ctx.cfg, Stored::Tree(MerkleTree::new()));
    let mut tree = MerkleTree::new();
    let names = ctx.store.list_names(&layout::segments(ns)).await?;
    // After an interrupted merge, small segments may sit under the merged one:
    // the cover counts (the compactor cleans up); contiguity is checked below.
    let tiling = crate::tiling::tile(names.iter().map(String::as_str));
    for &(first, last) in &tiling.cover {
        if limit.as_ref().is_some_and(|(size, _)| first >= *size) {
            break;
        }
        if first != tree.len() {
            return Err(inconsistent(
                ns,
                format!("segment {first}-{last} does not start at {}", tree.len()),
            ));
        }
        let bytes = ctx
            .store
            .get(&layout::segment_named(ns, &tiling.name((first, last))))
            .await?
            .ok_or_else(|| inconsistent(ns, format!("segment {first}-{last} vanished")))?;
        // Everything this server will sign on top of must itself be signed by
        // our key and intact: never extend (and so endorse) forged data.
        let vk = ctx.key.verifying_key();
        let seg = tokio::task::spawn_blocking(move || {
            let seg = segment::decode(bytes.clone()).map_err(|e| e.to_string())?;
            if !segment::verify_header_signature(&seg.header, &seg.signature, &vk) {
                return Err("header signature does not verify with the log key".to_string());
            }
            if !segment::file_digest_matches(&seg.header, &seg.signature, &bytes) {
                return Err("file bytes differ from the signed file digest".to_string());
            }
            if (seg.header.first, seg.header.last) != (first, last) {
                return Err("header range differs from the object name".to_string());
            }
            for e in &seg.entries {
                let rec = e.committed_record_bytes().map_err(|e| e.to_string())?;
                if crate::merkle::leaf_hash(&rec) != e.leaf_hash {
                    return Err(format!("entry {} does not match its leaf hash", e.idx));
                }
            }
            Ok(seg)
        })
        .await
        .map_err(|e| inconsistent(ns, e.to_string()))?
        .map_err(|e| inconsistent(ns, format!("segment {first}-{last}: {e}")))?;
        if hex::encode(l.chain) != seg.header.chain_in {
            return Err(inconsistent(
                ns,
                format!("segment {first}-{last} does not continue the chain"),
            ));
        }
        for e in &seg.entries {
            if e.idx != tree.len()
                || crate::record::chain_next(&l.chain, &e.leaf_hash) != e.chain_hash
            {
                return Err(inconsistent(
                    ns,
                    format!("segment {first}-{last} breaks the chain at index {}", e.idx),
                ));
            }
            tree.push(e.leaf_hash);
            l.absorb(e);
            l.snapshots.absorb(e);
        }
        {
            use base64::Engine;
            let root = base64::engine::general_purpose::STANDARD.encode(tree.root());
            if seg.header.root != root || hex::encode(l.chain) != seg.header.chain_out {
                return Err(inconsistent(
                    ns,
                    format!("segment {first}-{last}: signed root or chain differs from the data"),
                ));
            }
        }
        l.segment_roots.insert(tree.len(), tree.root());
        if tree.len() != last + 1 {
            return Err(inconsistent(
                ns,
                format!("segment {first}-{last} holds {} rows", seg.entries.len()),
            ));
        }
    }
    l.published = tree.len();
    l.published_chain = l.chain;
    l.edge = TileBuilder::from_tree(&tree, l.published)
        .ok_or_else(|| inconsistent(ns, "the tree is shorter than the published size".into()))?;
    l.stored = Stored::Tree(tree);
    let tree = l.tree().expect("just set");
    if let Some((size, text)) = limit {
        if size == 0 {
            return Ok(l);
        }
        let name = format!("{}/{ns}", ctx.vault_origin);
        let cp = note::open_checkpoint(&text, &name, &ctx.key.verifying_key())
            .map_err(|e| inconsistent(ns, format!("latest checkpoint: {e}")))?;
        if l.published != size || tree.root_at(size).ok() != Some(cp.root) {
            return Err(inconsistent(
                ns,
                format!("the segments do not match the latest checkpoint of size {size}"),
            ));
        }
        l.latest = Some((size, text));
        return Ok(l);
    }
    if let Some(bytes) = ctx.store.get(&layout::latest_checkpoint(ns)).await? {
        let text = String::from_utf8_lossy(&bytes).to_string();
        let name = format!("{}/{ns}", ctx.vault_origin);
        let cp = note::open_checkpoint(&text, &name, &ctx.key.verifying_key())
            .map_err(|e| inconsistent(ns, format!("latest checkpoint: {e}")))?;
        if cp.size > l.published {
            return Err(inconsistent(
                ns,
                format!(
                    "latest checkpoint covers {} entries but the segments hold {}",
                    cp.size, l.published
                ),
            ));
        }
        if tree.root_at(cp.size).ok() != Some(cp.root) {
            return Err(inconsistent(
                ns,
                format!(
                    "latest checkpoint root differs from the data at size {}",
                    cp.size
                ),
            ));
        }
        l.latest = Some((cp.size, text));
    }
    check_not_rolled_back(ctx, ns, l.published).await?;
    Ok(l)
}

/// Immutable checkpoints beyond the segments mean the store lost data.
/// Only names after `published` are listed (checkpoints grow by one per
/// publish: a year of them must not be listed at every open).
async fn check_not_rolled_back(
    ctx: &LogContext,
    ns: &str,
    published: u64,
) -> Result<(), OpenError> {
    let newest = ctx
        .store
        .list_names_after(&layout::checkpoints(ns), &format!("{published:020}"))
        .await?
        .into_iter()
        .filter_map(|n| n.parse::<u64>().ok())
        .max();
    if let Some(size) = newest
        && size > published
    {
        return Err(inconsistent(
            ns,
            format!(
                "checkpoint {size} exists but the segments hold only {published} entries (store rolled back?)"
            ),
        ));
    }
    Ok(())
}

/// The session-state snapshots of `ns` as (size, object bytes), newest first.
pub(super) async fn snapshots_newest_first(
    store: &Store,
    ns: &str,
) -> Result<Vec<(u64, u64)>, StoreError> {
    let mut v: Vec<(u64, u64)> = store
        .list_sized(&layout::states(ns))
        .await?
        .into_iter()
        .filter_map(|(n, len)| Some((parse_state_name(&n)?, len)))
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    Ok(v)
}

/// Reads and opens the snapshot of `ns` at `size` whose object the listing
/// gave as `listed_len` bytes: refused unread when too large, so a planted
/// object cannot exhaust memory. The inner error says why a snapshot
/// cannot be used (gone, too large, not ours).
pub(super) async fn read_snapshot(
    store: &Store,
    ns: &str,
    origin: &str,
    vk: &ed25519_dalek::VerifyingKey,
    size: u64,
    listed_len: u64,
) -> Result<Result<SessionState, String>, StoreError> {
    let path = layout::state_at(ns, size);
    if listed_len > crate::session_state::MAX_STATE_BYTES as u64 {
        return Ok(Err(format!(
            "{path} is {listed_len} bytes, more than a snapshot may be"
        )));
    }
    let Some(bytes) = store.get(&path).await? else {
        return Ok(Err(format!("{path} vanished")));
    };
    Ok(SessionState::open(&bytes, origin, size, vk).map_err(|e| format!("{path}: {e}")))
}

/// Opens `ns` without reading every segment: the latest checkpoint, its
/// right-edge tiles (checked against its signed root), the newest
/// session-state snapshot at or below it (signed; its root checked against
/// the tiles), then only the segments that hold the last `dedup_window`
/// entries and those after the snapshot, each checked against the log key,
/// the chain and the tiles. `None` when the store has no checkpoint, no
/// snapshot or tiles that do not check: the caller then reads every
/// segment (a store written before tiles or snapshots; built once).
async fn load_from_snapshot(ctx: &LogContext, ns: &str) -> Result<Option<Loaded>, OpenError> {
    let Some(b) = ctx.store.get(&layout::latest_checkpoint(ns)).await? else {
        return Ok(None);
    };
    let origin = format!("{}/{ns}", ctx.vault_origin);
    let vk = ctx.key.verifying_key();
    let text = String::from_utf8_lossy(&b).to_string();
    let cp = note::open_checkpoint(&text, &origin, &vk)
        .map_err(|e| inconsistent(ns, format!("latest checkpoint: {e}")))?;
    let mut tiles = TileTree::new(LogReader::new(ctx.store.clone()), ns, cp.size)
        .with_cache_limit(ctx.cfg.tile_cache_tiles);
    if let Err(e) = tiles.trust(cp.root).await {
        tracing::warn!(ns, "opening from every segment: {e}");
        return Ok(None);
    }
    let unreadable = |e: ProofError| inconsistent(ns, format!("tiles: {e}"));
    // The newest snapshot at or below the checkpoint that is ours and
    // agrees with the tree. One that does not is skipped (loudly): an older
    // one, or reading every segment, is always as correct, so a planted
    // object can cost time but never lock the namespace.
    let mut found = None;
    for (size, bytes_len) in snapshots_newest_first(&ctx.store, ns).await? {
        if size > cp.size {
            continue;
        }
        match read_snapshot(&ctx.store, ns, &origin, &vk, size, bytes_len).await? {
            Ok(snap) => {
                let root = if size == 0 {
                    crate::merkle::empty_root()
                } else {
                    tiles.range(0, size).await.map_err(unreadable)?
                };
                if root == snap.root {
                    found = Some(snap);
                    break;
                }
                tracing::error!(
                    ns,
                    size,
                    "a session-state snapshot signed with the log key disagrees with the tree (run `tracevault verify`); skipped"
                );
            }
            Err(why) => tracing::warn!(ns, size, "session-state snapshot skipped: {why}"),
        }
    }
    let Some(snap) = found else {
        return Ok(None);
    };
    let snap_size = snap.size;
    let snap_path = layout::state_at(ns, snap_size);
    let at_checkpoint = tiles.builder().await.map_err(unreadable)?;
    if at_checkpoint.root() != cp.root {
        return Err(inconsistent(
            ns,
            "the right-edge tiles do not hash to the latest checkpoint".into(),
        ));
    }
    let segments = LogReader::new(ctx.store.clone())
        .segments(ns, cp.size)
        .await
        .map_err(|e| inconsistent(ns, e.to_string()))?;
    let start = snap_size.min(cp.size.saturating_sub(ctx.cfg.dedup_window as u64));
    let mut l = Loaded::empty(&ctx.cfg, Stored::Tree(MerkleTree::new()));
    l.snapshots.sessions = snap.sessions.len() as u64;
    l.sessions = snap.sessions.into_iter().collect();
    l.snapshots.size = snap_size;
    l.snapshots.last_received = snap.last_received;
    l.last_received = snap.last_received;
    l.len = start;
    l.chain = snap.chain;
    let mut edge = at_checkpoint.clone();
    let mut beyond = Vec::new();
    let mut new_tiles: std::collections::BTreeMap<TileId, Bytes> = Default::default();
    let mut first_read = true;
    for seg in segments.iter().filter(|s| s.last >= start) {
        let (first, last) = (seg.first, seg.last);
        let bytes = ctx
            .store
            .get(&seg.path)
            .await?
            .ok_or_else(|| inconsistent(ns, format!("segment {first}-{last} vanished")))?;
        // Signed by our key and intact: the same checks as a full open,
        // except that leaves under the checkpoint are checked through the
        // tiles (the segment's signed root), not rehashed from the rows.
        let vk2 = vk;
        let recheck_from = cp.size;
        // Entries under the snapshot are read only for the `event_id`
        // window: a segment whose statistics say it has no id (covered by
        // the signed digest checked first) needs no row decoded.
        let ids_only = last < snap_size;
        let (header, entries) = tokio::task::spawn_blocking(move || {
            let (header, signature) = segment::decode_header(&bytes).map_err(|e| e.to_string())?;
            if !segment::verify_header_signature(&header, &signature, &vk2) {
                return Err("header signature does not verify with the log key".to_string());
            }
            if !segment::file_digest_matches(&header, &signature, &bytes) {
                return Err("file bytes differ from the signed file digest".to_string());
            }
            if (header.first, header.last) != (first, last) {
                return Err("header range differs from the object name".to_string());
            }
            if ids_only && !segment::holds_event_ids(&bytes).map_err(|e| e.to_string())? {
                return Ok((header, None));
            }
            let d = segment::decode(bytes).map_err(|e| e.to_string())?;
            for e in d.entries.iter().filter(|e| e.idx >= recheck_from) {
                let rec = e.committed_record_bytes().map_err(|e| e.to_string())?;
                if crate::merkle::leaf_hash(&rec) != e.leaf_hash {
                    return Err(format!("entry {} does not match its leaf hash", e.idx));
                }
            }
            Ok((header, Some(d.entries)))
        })
        .await
        .map_err(|e| inconsistent(ns, e.to_string()))?
        .map_err(|e| inconsistent(ns, format!("segment {first}-{last}: {e}")))?;
        let header_only = entries.is_none();
        let entries = entries.unwrap_or_default();
        if !header_only && entries.len() as u64 != last - first + 1 {
            return Err(inconsistent(
                ns,
                format!("segment {first}-{last} holds {} rows", entries.len()),
            ));
        }
        let mut chain = if first_read {
            hex32(&header.chain_in)
                .ok_or_else(|| inconsistent(ns, format!("segment {first}-{last}: bad chain_in")))?
        } else {
            if hex::encode(l.chain) != header.chain_in {
                return Err(inconsistent(
                    ns,
                    format!("segment {first}-{last} does not continue the chain"),
                ));
            }
            l.chain
        };
        if first_read && first == snap_size && chain != snap.chain {
            return Err(inconsistent(
                ns,
                format!("{snap_path}: its chain differs from segment {first}-{last}"),
            ));
        }
        first_read = false;
        for (i, e) in entries.iter().enumerate() {
            if e.idx != first + i as u64
                || crate::record::chain_next(&chain, &e.leaf_hash) != e.chain_hash
            {
                return Err(inconsistent(
                    ns,
                    format!("segment {first}-{last} breaks the chain at index {}", e.idx),
                ));
            }
            chain = e.chain_hash;
            if e.idx + 1 == snap_size && e.chain_hash != snap.chain {
                return Err(inconsistent(
                    ns,
                    format!("{snap_path}: its chain differs from entry {}", e.idx),
                ));
            }
            if e.idx >= cp.size {
                beyond.push(e.leaf_hash);
                // Tiles of sizes past the checkpoint: maybe never written.
                edge.push(e.leaf_hash, |id, hashes| {
                    new_tiles.insert(id, hashes.iter().flatten().copied().collect());
                });
            }
            if e.idx >= start {
                l.dedup.absorb(e);
                l.len = e.idx + 1;
                l.chain = e.chain_hash;
                if e.idx >= snap_size {
                    let next = l.sessions.entry(e.session_id.clone()).or_insert(0);
                    *next = (*next).max(e.session_seq.saturating_add(1));
                    l.snapshots.absorb(e);
                    l.last_received = l.last_received.max(e.received_at);
                }
            }
        }
        if header_only {
            chain = hex32(&header.chain_out).ok_or_else(|| {
                inconsistent(ns, format!("segment {first}-{last}: bad chain_out"))
            })?;
            if end_is(last, snap_size) && chain != snap.chain {
                return Err(inconsistent(
                    ns,
                    format!("{snap_path}: its chain differs from segment {first}-{last}"),
                ));
            }
        }
        l.chain = chain;
        // The segment's signed root against the tree (the tiles, checked
        // against the signed checkpoint; or the edge grown past it).
        let end = last + 1;
        let root = if end <= cp.size {
            tiles.range(0, end).await.map_err(unreadable)?
        } else {
            edge.root()
        };
        use base64::Engine;
        if header.root != base64::engine::general_purpose::STANDARD.encode(root)
            || hex::encode(chain) != header.chain_out
        {
            return Err(inconsistent(
                ns,
                format!("segment {first}-{last}: signed root or chain differs from the tree"),
            ));
        }
        l.segment_roots.insert(end, root);
        l.len = end;
    }
    if l.len < cp.size {
        return Err(inconsistent(
            ns,
            format!(
                "the segments hold {} entries, the latest checkpoint {}",
                l.len, cp.size
            ),
        ));
    }
    // Only the tiles the sizes past the checkpoint add (a crash between a
    // segment and its checkpoint) may be missing.
    let needed: std::collections::BTreeSet<TileId> = crate::tiles::new_tiles(cp.size, edge.size())
        .into_iter()
        .collect();
    l.missing_tiles = new_tiles
        .into_iter()
        .filter(|(id, _)| needed.contains(id))
        .collect();
    l.published = l.len;
    l.published_chain = l.chain;
    l.edge = edge;
    l.latest = Some((cp.size, text));
    l.stored = Stored::Tiles {
        tiles: Box::new(tiles),
        at_checkpoint,
        beyond,
        row: None,
    };
    check_not_rolled_back(ctx, ns, l.published).await?;
    tracing::info!(
        ns,
        size = l.published,
        snapshot = snap_size,
        read_from = start,
        "opened from the checkpoint, tiles and session snapshot"
    );
    Ok(Some(l))
}

/// Whether a segment ending at `last` ends at `size`.
fn end_is(last: u64, size: u64) -> bool {
    last.checked_add(1) == Some(size)
}

fn hex32(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok().map(|_| out)
}

/// Writes the session-state snapshot at the published size of a namespace
/// just read from every segment, so that the next open need not.
pub(super) async fn snapshot_after_full_read(
    ctx: &LogContext,
    ns: &str,
    l: &mut Loaded,
) -> Result<(), OpenError> {
    if l.published == 0 {
        return Ok(());
    }
    let mut sessions: Vec<(String, u64)> =
        std::mem::take(&mut l.snapshots.since).into_iter().collect();
    sessions.sort();
    l.snapshots.sessions = sessions.len() as u64;
    let st = SessionState {
        origin: format!("{}/{ns}", ctx.vault_origin),
        size: l.published,
        root: l.edge.root(),
        chain: l.published_chain,
        last_received: l.snapshots.last_received,
        sessions,
    };
    write_snapshot(&ctx.store, ns, &st, &ctx.key)
        .await
        .map_err(|e| match e {
            SnapshotWriteError::Store(e) => OpenError::Store(e),
            SnapshotWriteError::Foreign(m) | SnapshotWriteError::Encode(m) => inconsistent(ns, m),
        })?;
    l.snapshots.size = l.published;
    tracing::info!(ns, size = l.published, "session-state snapshot written");
    Ok(())
}

/// Why a snapshot could not be written.
pub(super) enum SnapshotWriteError {
    Store(StoreError),
    /// The name holds another snapshot: not this log's.
    Foreign(String),
    /// The snapshot could not be encoded (nothing written).
    Encode(String),
}

/// Writes a snapshot create-only (an existing one must be the same bytes:
/// snapshots are deterministic), then removes the older ones.
pub(super) async fn write_snapshot(
    store: &Store,
    ns: &str,
    st: &SessionState,
    key: &SigningKey,
) -> Result<(), SnapshotWriteError> {
    let path = layout::state_at(ns, st.size);
    let body = Bytes::from(
        st.encode(key)
            .map_err(|e| SnapshotWriteError::Encode(e.to_string()))?,
    );
    match store.put_create(&path, body.clone()).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists(_)) => {
            let existing = store.get(&path).await.map_err(SnapshotWriteError::Store)?;
            let existing = existing.unwrap_or_default();
            if existing[..] != body[..] {
                // Ours (signed) and different: the key made two states of
                // one size. Anything else is debris: replace it.
                if SessionState::open(&existing, &st.origin, st.size, &key.verifying_key()).is_ok()
                {
                    return Err(SnapshotWriteError::Foreign(format!(
                        "{path} is signed with the log key and differs from this log's state at that size"
                    )));
                }
                tracing::warn!(ns, "replacing {path}: it is not a snapshot of this log");
                store
                    .put_overwrite(&path, body)
                    .await
                    .map_err(SnapshotWriteError::Store)?;
            }
        }
        Err(e) => return Err(SnapshotWriteError::Store(e)),
    }
    // Older snapshots are superseded; a failed delete only leaves a file.
    if let Ok(names) = store.list_names(&layout::states(ns)).await {
        for old in names.iter().filter_map(|n| parse_state_name(n)) {
            if old < st.size
                && let Err(e) = store.delete(&layout::state_at(ns, old)).await
            {
                tracing::warn!(ns, "removing an old session snapshot: {e}");
            }
        }
    }
    Ok(())
}

/// Rebuilds the state of `ns` from the store, checks it against the last
/// checkpoint this server signed, then replays the WAL on top: entries the
/// segments already hold must match them, the rest must extend the log.
/// Also says whether every segment was read (then the caller writes a
/// snapshot, once every check passed and the lease is renewed: nothing is
/// written on top of a namespace the open refuses).
pub(super) async fn recover(
    ctx: &LogContext,
    ns: &str,
    wal_dir: &FsPath,
) -> Result<(Loaded, Wal, bool), OpenError> {
    let t0 = Instant::now();
    let (mut l, full_read) = match load_from_snapshot(ctx, ns).await? {
        Some(l) => (l, false),
        None => (load_store(ctx, ns, false).await?, true),
    };
    let loaded_ms = t0.elapsed().as_millis() as u64;
    check_last_signed(ctx, ns, wal_dir, &mut l).await?;
    let checked_ms = t0.elapsed().as_millis() as u64;
    let (dir, published) = (wal_dir.to_path_buf(), l.published);
    let (wal, recovered) = tokio::task::spawn_blocking(move || Wal::open(&dir, published))
        .await
        .map_err(|e| inconsistent(ns, e.to_string()))??;
    let mut replayed = 0u64;
    for e in recovered.entries {
        if e.idx < l.published {
            let stored = l.stored.leaf(e.idx).await.map_err(|err| {
                inconsistent(
                    ns,
                    format!("reading the stored leaf of WAL entry {}: {err}", e.idx),
                )
            })?;
            if stored != Some(e.leaf_hash) {
                return Err(inconsistent(
                    ns,
                    format!("WAL entry {} differs from the stored segment", e.idx),
                ));
            }
            continue;
        }
        let expected_leaf = crate::merkle::leaf_hash(
            &e.committed_record_bytes()
                .map_err(|err| inconsistent(ns, err.to_string()))?,
        );
        if e.idx != l.len
            || expected_leaf != e.leaf_hash
            || crate::record::chain_next(&l.chain, &e.leaf_hash) != e.chain_hash
        {
            return Err(inconsistent(
                ns,
                format!("WAL entry {} does not extend the log at {}", e.idx, l.len),
            ));
        }
        l.absorb(&e);
        l.tail.push_back(Arc::new(e));
        replayed += 1;
    }
    if replayed > 0 || recovered.truncated_bytes > 0 {
        tracing::info!(
            ns,
            replayed,
            truncated = recovered.truncated_bytes,
            "recovered from the WAL"
        );
    }
    tracing::debug!(
        ns,
        loaded_ms,
        checked_ms,
        replayed_ms = t0.elapsed().as_millis() as u64,
        "recovery phases"
    );
    Ok((l, wal, full_read))
}

/// The last checkpoint this server signed for a namespace, kept beside its
/// WAL so that a store rolled back behind our back is noticed at open.
const SIGNED_FILE: &str = "last-signed-checkpoint";

async fn check_last_signed(
    ctx: &LogContext,
    ns: &str,
    wal_dir: &FsPath,
    l: &mut Loaded,
) -> Result<(), OpenError> {
    let Ok(text) = std::fs::read_to_string(wal_dir.join(SIGNED_FILE)) else {
        return Ok(());
    };
    let name = format!("{}/{ns}", ctx.vault_origin);
    let cp = note::open_checkpoint(&text, &name, &ctx.key.verifying_key())
        .map_err(|e| inconsistent(ns, format!("{SIGNED_FILE}: {e}")))?;
    if cp.size > l.published {
        return Err(inconsistent(
            ns,
            format!(
                "this server signed a checkpoint of size {} but the store holds {} entries (store rolled back)",
                cp.size, l.published
            ),
        ));
    }
    if l.stored.root_at(cp.size).await != Some(cp.root) {
        return Err(inconsistent(
            ns,
            format!(
                "the store's tree at size {} differs from the checkpoint this server signed (fork)",
                cp.size
            ),
        ));
    }
    Ok(())
}

/// Records the newest signed checkpoint (temporary file, fsync, rename).
pub(super) fn save_last_signed(wal_dir: &FsPath, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = wal_dir.join(format!("{SIGNED_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, wal_dir.join(SIGNED_FILE))?;
    std::fs::File::open(wal_dir)?.sync_all()
}
