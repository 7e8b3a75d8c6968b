//! The publisher: turns durable entries into a segment, then a checkpoint,
//! then the `checkpoint` pointer; renews the lease and compacts.

use super::*;
use crate::tiles::{self, TileId};

pub(super) struct Publisher {
    pub(super) ctx: Arc<LogContext>,
    pub(super) shared: Arc<Shared>,
    pub(super) lease: Lease,
    /// Last index of a segment whose upload was attempted but not yet
    /// checkpointed: a retry must write exactly the same range.
    pub(super) inflight: Option<u64>,
    pub(super) last_renew: tokio::time::Instant,
    pub(super) last_compact: tokio::time::Instant,
    pub(super) wal_dir: std::path::PathBuf,
    /// The newest session-state snapshot and the sessions published since.
    pub(super) snapshots: super::recovery::SnapshotBase,
    /// The tree in the store (shared with the proofs): roots for
    /// compaction at sizes this server did not compute since its open.
    pub(super) tiles: super::SharedTiles,
    /// The next full segment, being encoded while this one is written.
    pub(super) next_encode: Option<Lookahead>,
}

/// A segment encoded ahead: while one segment's object, tiles and checkpoint
/// are written (mostly waiting on the disk or the network), the next full
/// segment of the tail is encoded on another thread. Used only if the next
/// publish takes exactly the same entries under the same seal; entries in
/// the tail never change, so the bytes are the same as encoding them then.
pub(super) struct Lookahead {
    first: u64,
    last: u64,
    chain_in: Hash,
    root: Hash,
    encoded:
        tokio::task::JoinHandle<Result<(segment::SegmentHeader, Bytes), segment::SegmentError>>,
}

/// The entries of the next segment from `tail` (from its start, or after a
/// retried range ends at `inflight`), and whether that segment is full
/// (rows or bytes at the configured maximum) and large (a quarter of it).
fn next_batch<'a>(
    tail: impl Iterator<Item = &'a Arc<Entry>>,
    cfg: &LogConfig,
    inflight: Option<u64>,
) -> (Vec<Arc<Entry>>, bool, bool) {
    let mut bytes = 0;
    let mut batch: Vec<Arc<Entry>> = Vec::new();
    for e in tail {
        let full = match inflight {
            // A retry writes exactly the range it tried before.
            Some(last) => e.idx > last,
            None => {
                !batch.is_empty()
                    && (batch.len() >= cfg.segment_max_rows || bytes >= cfg.segment_max_bytes)
            }
        };
        if full {
            break;
        }
        bytes += e.approx_size();
        batch.push(e.clone());
    }
    let full = batch.len() >= cfg.segment_max_rows || bytes >= cfg.segment_max_bytes;
    let large = batch.len() * 4 >= cfg.segment_max_rows || bytes * 4 >= cfg.segment_max_bytes;
    (batch, full, large)
}

/// Why no session-state snapshot was written this round.
pub(super) enum SnapshotSkip {
    /// Another log's snapshot under our name: stop writing.
    Fenced(String),
    /// A store error: try again next round.
    Retry(String),
    /// The previous snapshot cannot be read back: no new one can be built
    /// from it until the next open (which starts from an older one, or
    /// from every segment).
    Disabled(String),
}

impl From<StoreError> for SnapshotSkip {
    fn from(e: StoreError) -> Self {
        SnapshotSkip::Retry(e.to_string())
    }
}

pub(super) enum PublishError {
    Fenced(String),
    Retry(String),
}

impl From<LeaseError> for PublishError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::Fenced { .. } => PublishError::Fenced(e.to_string()),
            other => PublishError::Retry(other.to_string()),
        }
    }
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        PublishError::Retry(e.to_string())
    }
}

/// What one [`Publisher::publish_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    /// The tail was empty.
    Nothing,
    /// A segment of all the tail (less than a full segment), and whether
    /// it was large (a quarter of a full one or more: the log is busy).
    Part { large: bool },
    /// A full segment (rows or bytes): more may be waiting.
    Full,
}

impl Publisher {
    pub(super) async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        mut force_checkpoint: bool,
    ) {
        let interval = Duration::from_millis(self.shared.cfg.flush_interval_ms.max(10));
        let mut backoff = interval;
        loop {
            let stopping = *shutdown.borrow();
            let mut failed = false;
            match self.step(&mut force_checkpoint, stopping).await {
                Ok(()) => {}
                Err(PublishError::Fenced(msg)) => {
                    // Never touch the log again: another server owns it now.
                    self.shared.fail(STATUS_FENCED, msg);
                    return;
                }
                Err(PublishError::Retry(msg)) => {
                    tracing::warn!(ns = %self.shared.ns, "publishing failed, will retry: {msg}");
                    self.shared.publish_failures.fetch_add(1, Ordering::Relaxed);
                    failed = true;
                }
            }
            if stopping && (!failed || self.shared.check().is_err()) {
                break;
            }
            backoff = if failed {
                (backoff * 2).min(Duration::from_secs(5))
            } else {
                interval
            };
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                // Not while backing off: a waiter must not make a failing
                // store be hammered.
                _ = self.shared.publish_wanted.notified(), if !failed => {}
                r = shutdown.changed() => {
                    if r.is_err() {
                        // The log was dropped without `shutdown` (as in a crash): stop
                        // here. Without this the loop would spin (`changed` fails at
                        // once) and keep writing to the store behind a new owner of
                        // the data directory. The WAL holds everything unpublished.
                        return;
                    }
                }
            }
        }
        if self.shared.check().is_ok()
            && let Err(e) = self.lease.release().await
        {
            tracing::warn!(ns = %self.shared.ns, "releasing the lease: {e}");
        }
    }

    /// One round: renew if due, write a missing checkpoint, publish the tail.
    ///
    /// One segment per round, the tail as it stands, unless the log is busy
    /// (the segment just cut was full, or a quarter of a full one or more:
    /// then the next goes at once, so a heavy ingest never waits on the
    /// interval) or stopping (then all of it). Publishing again as
    /// soon as one publish ends would cut a segment of whatever arrived
    /// meanwhile: under a steady trickle (a live session stream), segments
    /// of a dozen entries, each with its claim, checkpoint and signature,
    /// costing the writers the CPU. Entries still wait at most about one
    /// `flush_interval_ms` plus a publish, as before; entries someone waits
    /// for (cluster-mode receipts, `?wait=checkpoint`) wake the publisher at
    /// once (`Shared::publish_wanted`), and those are cut as they come.
    async fn step(
        &mut self,
        force_checkpoint: &mut bool,
        stopping: bool,
    ) -> Result<(), PublishError> {
        self.renew_if_due().await?;
        if *force_checkpoint {
            self.checkpoint_current().await?;
            *force_checkpoint = false;
        }
        loop {
            match self.publish_once().await? {
                Published::Nothing => break,
                Published::Part { large: false } if !stopping => break,
                Published::Part { .. } | Published::Full => self.renew_if_due().await?,
            }
        }
        match self.snapshot_if_due().await {
            Ok(()) => {}
            Err(SnapshotSkip::Fenced(m)) => return Err(PublishError::Fenced(m)),
            // Never a reason to stop publishing: the next open reads more.
            Err(SnapshotSkip::Retry(m)) => {
                tracing::warn!(ns = %self.shared.ns, "session-state snapshot: {m}; will retry");
            }
            Err(SnapshotSkip::Disabled(m)) => {
                tracing::warn!(
                    ns = %self.shared.ns,
                    "session-state snapshots stop until the next open: {m}"
                );
                self.snapshots.disable();
            }
        }
        self.compact_if_due().await;
        Ok(())
    }

    /// Writes a session-state snapshot at the published size once
    /// `state_snapshot_entries` entries (or twice the sessions of the last
    /// snapshot, if more) were published since the last one
    /// (see [`crate::session_state`]): the previous snapshot's counters,
    /// read back, updated with the sessions published since. A failed write
    /// is retried next round and never stops publishing (the next open
    /// then reads a little more); a snapshot of another log under our name
    /// fences the writer.
    async fn snapshot_if_due(&mut self) -> Result<(), SnapshotSkip> {
        let every = self
            .shared
            .cfg
            .state_snapshot_entries
            .max(self.snapshots.sessions.saturating_mul(2))
            .max(1);
        let (size, root, chain) = {
            let st = self
                .shared
                .state
                .read()
                .map_err(|_| SnapshotSkip::Fenced("state lock poisoned".into()))?;
            (st.edge.size(), st.edge.root(), st.published_chain)
        };
        if self.snapshots.disabled
            || size < self.snapshots.size.saturating_add(every)
            || self.shared.check().is_err()
        {
            return Ok(());
        }
        let ns = &self.shared.ns;
        let origin = &self.shared.origin;
        let vk = self.ctx.key.verifying_key();
        let mut sessions: HashMap<String, u64> = if self.snapshots.size == 0 {
            HashMap::new()
        } else {
            let base = self.snapshots.size;
            let listed = super::recovery::snapshots_newest_first(&self.ctx.store, ns).await?;
            let Some(&(_, len)) = listed.iter().find(|(s, _)| *s == base) else {
                return Err(SnapshotSkip::Disabled(format!(
                    "the snapshot at {base} vanished"
                )));
            };
            match super::recovery::read_snapshot(&self.ctx.store, ns, origin, &vk, base, len)
                .await?
            {
                Ok(prev) => prev.sessions.into_iter().collect(),
                Err(why) => return Err(SnapshotSkip::Disabled(why)),
            }
        };
        for (id, next) in &self.snapshots.since {
            let n = sessions.entry(id.clone()).or_insert(0);
            *n = (*n).max(*next);
        }
        let mut sessions: Vec<(String, u64)> = sessions.into_iter().collect();
        sessions.sort();
        let snap = crate::session_state::SessionState {
            origin: origin.clone(),
            size,
            root,
            chain,
            last_received: self.snapshots.last_received,
            sessions,
        };
        super::recovery::write_snapshot(&self.ctx.store, ns, &snap, &self.ctx.key)
            .await
            .map_err(|e| match e {
                super::recovery::SnapshotWriteError::Store(e) => SnapshotSkip::Retry(e.to_string()),
                super::recovery::SnapshotWriteError::Encode(m) => SnapshotSkip::Disabled(m),
                super::recovery::SnapshotWriteError::Foreign(m) => SnapshotSkip::Fenced(m),
            })?;
        self.snapshots.size = size;
        self.snapshots.sessions = snap.sessions.len() as u64;
        self.snapshots.since.clear();
        tracing::debug!(ns = %ns, size, "session-state snapshot written");
        Ok(())
    }

    /// Merges small segments now and then (see [`crate::compact`]). Failures
    /// are logged and retried next time; they never stop publishing.
    async fn compact_if_due(&mut self) {
        let cfg = &self.shared.cfg;
        if cfg.compact_interval_ms == 0
            || self.last_compact.elapsed() < Duration::from_millis(cfg.compact_interval_ms)
            || self.shared.check().is_err()
        {
            return;
        }
        self.last_compact = tokio::time::Instant::now();
        // An erasure is rewriting segments: merge next time.
        let Ok(_rewriting) = self.shared.rewrite_lock.try_lock() else {
            return;
        };
        let policy = crate::compact::CompactPolicy {
            target_rows: cfg.compact_target_rows.max(2),
            min_segments: cfg.compact_min_segments.max(2),
            compression: cfg.segment_compression,
        };
        let root_at = super::trusted_roots(self.shared.clone(), self.tiles.clone());
        let r = crate::compact::compact_once(
            &self.ctx.store,
            &self.shared.ns,
            &self.shared.origin,
            &self.ctx.key,
            root_at,
            policy,
        )
        .await;
        match r {
            Err(e) => tracing::warn!(ns = %self.shared.ns, "compaction: {e}"),
            Ok(0) => {}
            // Merged: forget the roots of ends that are no segment's any more.
            Ok(_) => self.prune_segment_roots().await,
        }
    }

    /// Keeps the roots of the current segments' ends only (and any past
    /// the listing, published meanwhile), so the map does not grow with
    /// the number of publishes.
    async fn prune_segment_roots(&self) {
        let Ok(names) = self
            .ctx
            .store
            .list_names(&layout::segments(&self.shared.ns))
            .await
        else {
            return;
        };
        let cover = crate::tiling::tile(names.iter().map(String::as_str)).cover;
        let ends: std::collections::BTreeSet<u64> = cover.iter().map(|(_, b)| b + 1).collect();
        let newest = ends.iter().next_back().copied().unwrap_or(0);
        if let Ok(mut st) = self.shared.state.write() {
            st.segment_roots
                .retain(|end, _| ends.contains(end) || *end > newest);
        }
    }

    /// Renews the lease when a third of its TTL has passed since the last renewal.
    async fn renew_if_due(&mut self) -> Result<(), PublishError> {
        let every = Duration::from_millis((self.shared.cfg.lease_ttl_ms / 3).max(100) as u64);
        if self.last_renew.elapsed() < every {
            return Ok(());
        }
        let started = Instant::now();
        self.lease.renew().await?;
        self.last_renew = tokio::time::Instant::now();
        // Count validity from when the renewal was sent, not when it returned.
        let until =
            started + Duration::from_millis((self.shared.cfg.lease_ttl_ms.max(0) as u64) * 3 / 4);
        *self
            .shared
            .lease_valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = until;
        Ok(())
    }

    /// Encodes and seals a segment on a blocking thread.
    fn encode(
        &self,
        entries: Vec<Arc<Entry>>,
        chain_in: Hash,
        root: Hash,
    ) -> tokio::task::JoinHandle<Result<(segment::SegmentHeader, Bytes), segment::SegmentError>>
    {
        let key = self.ctx.key.clone();
        let key_id = note::key_id(&self.shared.origin, &key.verifying_key().to_bytes());
        let compression = self.shared.cfg.segment_compression;
        tokio::task::spawn_blocking(move || {
            let seal = SegmentSeal {
                chain_in,
                root,
                key_id,
                key: &key,
            };
            segment::encode_with(&entries, &seal, compression)
        })
    }

    /// Starts encoding the full segment that follows `last` (whose chain
    /// hash is `chain_in`, and `edge` the tree up to it), if the tail holds
    /// one already; see [`Lookahead`].
    fn encode_ahead(&mut self, last: u64, chain_in: Hash, edge: &crate::tiles::TileBuilder) {
        let Ok(st) = self.shared.state.read() else {
            return;
        };
        let after = st.tail.iter().skip_while(|e| e.idx <= last);
        let (batch, full, _) = next_batch(after, &self.shared.cfg, None);
        drop(st);
        if !full || batch.first().is_none_or(|e| e.idx != last + 1) {
            return;
        }
        let mut edge = edge.clone();
        for e in &batch {
            edge.push(e.leaf_hash, |_, _| {});
        }
        let root = edge.root();
        let (first, next_last) = (batch[0].idx, batch[batch.len() - 1].idx);
        self.next_encode = Some(Lookahead {
            first,
            last: next_last,
            chain_in,
            root,
            encoded: self.encode(batch, chain_in, root),
        });
    }

    /// Publishes one segment of the tail. Returns what it did.
    async fn publish_once(&mut self) -> Result<Published, PublishError> {
        if let Err(e) = self.shared.check() {
            return Err(PublishError::Fenced(e.to_string()));
        }
        let cfg = &self.shared.cfg;
        let inflight = self.inflight;
        let (batch, chain_in, root, edge, new_tiles, full, large) = {
            let st = self
                .shared
                .state
                .read()
                .map_err(|_| PublishError::Fenced("state lock poisoned".into()))?;
            if st.tail.is_empty() {
                return Ok(Published::Nothing);
            }
            let (batch, full, large) = next_batch(st.tail.iter(), cfg, inflight);
            // The tree after the batch, from the published edge; and the
            // tiles the new size adds, as the batch fills them.
            let mut edge = st.edge.clone();
            let wanted: std::collections::BTreeSet<TileId> =
                tiles::new_tiles(edge.size(), edge.size() + batch.len() as u64)
                    .into_iter()
                    .collect();
            let mut new_tiles: std::collections::BTreeMap<TileId, Bytes> = Default::default();
            for e in &batch {
                edge.push(e.leaf_hash, |id, hashes| {
                    if wanted.contains(&id) {
                        new_tiles.insert(id, hashes.iter().flatten().copied().collect());
                    }
                });
            }
            if edge.size() != batch[batch.len() - 1].idx + 1 {
                return Err(PublishError::Fenced(format!(
                    "the tail does not continue the published tree at {}",
                    st.edge.size()
                )));
            }
            let root = edge.root();
            (
                batch,
                st.published_chain,
                root,
                edge,
                new_tiles,
                full,
                large,
            )
        };
        let (first, last) = (batch[0].idx, batch[batch.len() - 1].idx);
        let ns = self.shared.ns.clone();
        let ns = &ns;
        // Where a publish spends its time, for the debug log (operators
        // tuning the flush interval and segment size; docs/benchmarks.md).
        let began = Instant::now();
        let claimed_until = self.lease.claim(first, last).await?;
        let claimed = began.elapsed();
        self.inflight = Some(last);
        let ahead = self
            .next_encode
            .take()
            .filter(|a| (a.first, a.last, a.chain_in, a.root) == (first, last, chain_in, root));
        let encoding = match ahead {
            Some(a) => {
                self.shared
                    .segments_encoded_ahead
                    .fetch_add(1, Ordering::Relaxed);
                a.encoded
            }
            None => self.encode(batch.clone(), chain_in, root),
        };
        let (_, bytes) = encoding
            .await
            .map_err(|e| PublishError::Retry(e.to_string()))?
            .map_err(|e| PublishError::Retry(e.to_string()))?;
        let encoded = began.elapsed();
        self.encode_ahead(last, batch[batch.len() - 1].chain_hash, &edge);
        // The write is issued before the claim's deadline (with a margin for
        // the request), or the claim is renewed first: fenced if another
        // writer superseded it meanwhile.
        if !self.lease.claim_is_fresh(claimed_until) {
            self.lease.claim(first, last).await?;
        }
        match self
            .ctx
            .store
            .put_create(&layout::segment(ns, first, last), bytes)
            .await
        {
            Ok(()) => {
                self.shared
                    .segments_uploaded
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(StoreError::AlreadyExists(p)) => {
                // Our own earlier attempt (its acknowledgement was lost), or someone else's?
                self.check_own_segment(
                    ns,
                    first,
                    last,
                    chain_in,
                    root,
                    batch[batch.len() - 1].chain_hash,
                )
                .await
                .map_err(|why| {
                    PublishError::Fenced(format!("segment {p} exists and is not ours: {why}"))
                })?;
            }
            Err(e) => return Err(e.into()),
        }
        let size = last + 1;
        let stored = began.elapsed();
        let tile_count = new_tiles.len();
        self.write_tiles(new_tiles.into_iter().collect()).await?;
        let tiled = began.elapsed();
        let note_text = self.write_checkpoint(size, root).await?;
        self.inflight = None;
        {
            let mut st = self
                .shared
                .state
                .write()
                .map_err(|_| PublishError::Fenced("state lock poisoned".into()))?;
            for _ in 0..batch.len() {
                if let Some(e) = st.tail.pop_front() {
                    st.tail_bytes = st.tail_bytes.saturating_sub(e.approx_size());
                }
            }
            st.published_chain = batch[batch.len() - 1].chain_hash;
            st.latest_note = Some((size, note_text));
            st.edge = edge;
            st.segment_roots.insert(size, root);
        }
        for e in &batch {
            self.snapshots.absorb(e);
        }
        self.shared.published.store(size, Ordering::SeqCst);
        self.shared.published_tx.send_replace(size);
        self.shared
            .checkpoint_at_ms
            .store(unix_ms_now(), Ordering::Relaxed);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            ns = %ns,
            first,
            last,
            claim_ms = ms(claimed),
            encode_ms = ms(encoded - claimed),
            segment_ms = ms(stored - encoded),
            tiles = tile_count,
            tiles_ms = ms(tiled - stored),
            checkpoint_ms = ms(began.elapsed() - tiled),
            "published segment"
        );
        Ok(if full {
            Published::Full
        } else {
            Published::Part { large }
        })
    }

    /// Checks that an existing segment object is the one we meant to write:
    /// signed by our key, same range, same chain and root.
    async fn check_own_segment(
        &self,
        ns: &str,
        first: u64,
        last: u64,
        chain_in: Hash,
        root: Hash,
        chain_out: Hash,
    ) -> Result<(), String> {
        let bytes = self
            .ctx
            .store
            .get(&layout::segment(ns, first, last))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("it vanished")?;
        let (h, sig) = segment::decode_header(&bytes).map_err(|e| e.to_string())?;
        use base64::Engine;
        let ok = segment::verify_header_signature(&h, &sig, &self.ctx.key.verifying_key())
            && segment::file_digest_matches(&h, &sig, &bytes)
            && (h.first, h.last) == (first, last)
            && h.chain_in == hex::encode(chain_in)
            && h.chain_out == hex::encode(chain_out)
            && h.root == base64::engine::general_purpose::STANDARD.encode(root);
        if ok {
            Ok(())
        } else {
            Err("its signed header differs".into())
        }
    }

    /// Signs and stores the checkpoint for `size` (create-only), then the pointer.
    async fn write_checkpoint(&self, size: u64, root: Hash) -> Result<String, PublishError> {
        let ns = &self.shared.ns;
        let cp = Checkpoint {
            origin: self.shared.origin.clone(),
            size,
            root,
        };
        let text = note::sign_checkpoint(&cp, &self.shared.origin, &self.ctx.key);
        let path = layout::checkpoint_at(ns, size);
        let text = match self
            .ctx
            .store
            .put_create(&path, Bytes::from(text.clone()))
            .await
        {
            Ok(()) => text,
            Err(StoreError::AlreadyExists(_)) => {
                // Written before a crash? Then it must be ours and agree.
                let existing = self.ctx.store.get(&path).await?.unwrap_or_default();
                let existing = String::from_utf8_lossy(&existing).to_string();
                match note::open_checkpoint(
                    &existing,
                    &self.shared.origin,
                    &self.ctx.key.verifying_key(),
                ) {
                    Ok(c) if c.root == root && c.size == size => existing,
                    _ => {
                        return Err(PublishError::Fenced(format!(
                            "checkpoint {path} exists and disagrees"
                        )));
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        self.ctx
            .store
            .put_overwrite(&layout::latest_checkpoint(ns), Bytes::from(text.clone()))
            .await?;
        let (dir, t) = (self.wal_dir.clone(), text.clone());
        tokio::task::spawn_blocking(move || save_last_signed(&dir, &t))
            .await
            .map_err(|e| PublishError::Retry(e.to_string()))?
            .map_err(|e| PublishError::Retry(format!("recording the signed checkpoint: {e}")))?;
        Ok(text)
    }

    /// Checkpoints the already published size (after a crash between segment and checkpoint).
    async fn checkpoint_current(&self) -> Result<(), PublishError> {
        let size = self.shared.published.load(Ordering::SeqCst);
        let root = {
            let st = self
                .shared
                .state
                .read()
                .map_err(|_| PublishError::Fenced("state lock poisoned".into()))?;
            // The tiles up to `size` were written at open.
            if st.edge.size() != size {
                return Err(PublishError::Fenced(format!(
                    "the published tree holds {} entries, not {size}",
                    st.edge.size()
                )));
            }
            st.edge.root()
        };
        let text = self.write_checkpoint(size, root).await?;
        if let Ok(mut st) = self.shared.state.write() {
            st.latest_note = Some((size, text));
        }
        self.shared.published_tx.send_replace(size);
        self.shared
            .checkpoint_at_ms
            .store(unix_ms_now(), Ordering::Relaxed);
        Ok(())
    }
}
