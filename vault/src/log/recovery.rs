//! Opening a namespace: rebuilding its state from the store segments (each
//! checked against the log key and the chain) and checking it against the
//! checkpoints, including the last one this server signed.

use super::*;

/// Everything loaded from the store and WAL at open.
pub(super) struct Loaded {
    pub(super) tree: MerkleTree,
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
}

impl Loaded {
    pub(super) fn absorb(&mut self, e: &Entry) {
        self.tree.push(e.leaf_hash);
        self.chain = e.chain_hash;
        let next = self.sessions.entry(e.session_id.clone()).or_insert(0);
        *next = (*next).max(e.session_seq + 1);
        self.dedup.absorb(e);
        self.last_received = self.last_received.max(e.received_at);
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
    let mut l = Loaded {
        tree: MerkleTree::new(),
        chain: [0; 32],
        sessions: HashMap::new(),
        dedup: Dedup {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: ctx.cfg.dedup_window,
        },
        tail: VecDeque::new(),
        published: 0,
        published_chain: [0; 32],
        latest: None,
        last_received: 0,
        segment_roots: std::collections::BTreeMap::new(),
    };
    let names = ctx.store.list_names(&layout::segments(ns)).await?;
    // After an interrupted merge, small segments may sit under the merged one:
    // the cover counts (the compactor cleans up); contiguity is checked below.
    let tiling = crate::tiling::tile(names.iter().map(String::as_str));
    for (first, last) in tiling.cover {
        if limit.as_ref().is_some_and(|(size, _)| first >= *size) {
            break;
        }
        if first != l.tree.len() {
            return Err(inconsistent(
                ns,
                format!("segment {first}-{last} does not start at {}", l.tree.len()),
            ));
        }
        let bytes = ctx
            .store
            .get(&layout::segment(ns, first, last))
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
            if e.idx != l.tree.len()
                || crate::record::chain_next(&l.chain, &e.leaf_hash) != e.chain_hash
            {
                return Err(inconsistent(
                    ns,
                    format!("segment {first}-{last} breaks the chain at index {}", e.idx),
                ));
            }
            l.absorb(e);
        }
        {
            use base64::Engine;
            let root = base64::engine::general_purpose::STANDARD.encode(l.tree.root());
            if seg.header.root != root || hex::encode(l.chain) != seg.header.chain_out {
                return Err(inconsistent(
                    ns,
                    format!("segment {first}-{last}: signed root or chain differs from the data"),
                ));
            }
        }
        l.segment_roots.insert(l.tree.len(), l.tree.root());
        if l.tree.len() != last + 1 {
            return Err(inconsistent(
                ns,
                format!("segment {first}-{last} holds {} rows", seg.entries.len()),
            ));
        }
    }
    l.published = l.tree.len();
    l.published_chain = l.chain;
    if let Some((size, text)) = limit {
        if size == 0 {
            return Ok(l);
        }
        let name = format!("{}/{ns}", ctx.vault_origin);
        let cp = note::open_checkpoint(&text, &name, &ctx.key.verifying_key())
            .map_err(|e| inconsistent(ns, format!("latest checkpoint: {e}")))?;
        if l.published != size || l.tree.root_at(size).ok() != Some(cp.root) {
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
        if l.tree.root_at(cp.size).ok() != Some(cp.root) {
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
    // Immutable checkpoints beyond the segments mean the store lost data.
    let newest = ctx
        .store
        .list_names(&layout::checkpoints(ns))
        .await?
        .into_iter()
        .filter_map(|n| n.parse::<u64>().ok())
        .max();
    if let Some(size) = newest
        && size > l.published
    {
        return Err(inconsistent(
            ns,
            format!(
                "checkpoint {size} exists but the segments hold only {} entries (store rolled back?)",
                l.published
            ),
        ));
    }
    Ok(l)
}

/// Rebuilds the state of `ns` from the store, checks it against the last
/// checkpoint this server signed, then replays the WAL on top: entries the
/// segments already hold must match them, the rest must extend the log.
pub(super) async fn recover(
    ctx: &LogContext,
    ns: &str,
    wal_dir: &FsPath,
) -> Result<(Loaded, Wal), OpenError> {
    let mut l = load_store(ctx, ns, false).await?;
    check_last_signed(ctx, ns, wal_dir, &l.tree)?;
    let (dir, published) = (wal_dir.to_path_buf(), l.published);
    let (wal, recovered) = tokio::task::spawn_blocking(move || Wal::open(&dir, published))
        .await
        .map_err(|e| inconsistent(ns, e.to_string()))??;
    let mut replayed = 0u64;
    for e in recovered.entries {
        if e.idx < l.published {
            let stored = l.tree.leaf(e.idx);
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
        if e.idx != l.tree.len()
            || expected_leaf != e.leaf_hash
            || crate::record::chain_next(&l.chain, &e.leaf_hash) != e.chain_hash
        {
            return Err(inconsistent(
                ns,
                format!(
                    "WAL entry {} does not extend the log at {}",
                    e.idx,
                    l.tree.len()
                ),
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
    Ok((l, wal))
}

/// The last checkpoint this server signed for a namespace, kept beside its
/// WAL so that a store rolled back behind our back is noticed at open.
const SIGNED_FILE: &str = "last-signed-checkpoint";

pub(super) fn check_last_signed(
    ctx: &LogContext,
    ns: &str,
    wal_dir: &FsPath,
    tree: &MerkleTree,
) -> Result<(), OpenError> {
    let Ok(text) = std::fs::read_to_string(wal_dir.join(SIGNED_FILE)) else {
        return Ok(());
    };
    let name = format!("{}/{ns}", ctx.vault_origin);
    let cp = note::open_checkpoint(&text, &name, &ctx.key.verifying_key())
        .map_err(|e| inconsistent(ns, format!("{SIGNED_FILE}: {e}")))?;
    if cp.size > tree.len() {
        return Err(inconsistent(
            ns,
            format!(
                "this server signed a checkpoint of size {} but the store holds {} entries (store rolled back)",
                cp.size,
                tree.len()
            ),
        ));
    }
    if tree.root_at(cp.size).ok() != Some(cp.root) {
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
