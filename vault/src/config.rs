//! Tunables of the log. Every field is documented in `docs/configuration.md`
//! (section `[log]`); defaults are chosen for a small server.

use serde::Deserialize;

/// How the log batches, publishes and bounds its work.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// How often unpublished entries are written out as a segment and covered
    /// by a new checkpoint (milliseconds). Bounds the ack-to-checkpoint delay.
    pub flush_interval_ms: u64,
    /// Most rows in one segment; a larger backlog is split.
    pub segment_max_rows: usize,
    /// Most payload bytes (approximate, before compression) in one segment.
    pub segment_max_bytes: usize,
    /// Codec of the segments written from now on (published, merged and
    /// rewritten by an erasure): `zstd` (smaller), `lz4` (cheaper to write
    /// and to read) or `none` (cheapest, largest). Segments already stored
    /// keep theirs; readers take any.
    pub segment_compression: crate::segment::SegmentCompression,
    /// Most events sealed and fsynced together in one group commit.
    pub group_max_events: usize,
    /// Append requests that may wait for the sequencer before callers get 503.
    pub queue_requests: usize,
    /// Durable but not yet published entries allowed before appends get 503.
    /// This is what keeps "a checkpoint covers every ack within 2 s" true
    /// when writers outrun the publisher: they are slowed down instead.
    pub max_unpublished_events: usize,
    /// Same bound in approximate bytes.
    pub max_unpublished_bytes: usize,
    /// How long an append over those bounds waits for the publisher to
    /// make room before it gets 503 (milliseconds; 0 refuses at once).
    /// Waiting here, rather than sending the writer away for a whole
    /// `Retry-After` second, keeps the WAL and the publisher busy under a
    /// sustained load (docs/benchmarks.md, issue 19).
    pub overload_wait_ms: u64,
    /// How many entries back `event_id`s are remembered for idempotent
    /// retries (an open reads this many entries back to rebuild the window).
    pub dedup_window: usize,
    /// A session-state snapshot is written to the store every this many
    /// published entries; an open reads the entries after the newest one.
    pub state_snapshot_entries: u64,
    /// Lease validity without renewal (milliseconds).
    pub lease_ttl_ms: i64,
    /// How often small segments are merged in the background (milliseconds; 0 disables).
    pub compact_interval_ms: u64,
    /// Merged segments hold up to this many rows.
    pub compact_target_rows: u64,
    /// A run of small segments is merged once it has this many segments
    /// (or half the target rows).
    pub compact_min_segments: usize,
    /// Hash tiles (8 KiB each at most) kept in memory per namespace for
    /// serving proofs from the tiles in the store; past it the cache starts
    /// over.
    pub tile_cache_tiles: usize,
    /// Acknowledge an append only once its entries are in the store (in a
    /// segment covered by a signed checkpoint), not when they are fsynced
    /// to this node's WAL: losing the node, disk included, then loses no
    /// acknowledged event (`[cluster] enabled`, docs/configuration.md).
    pub ack_after_publish: bool,
    /// How long an append waits for that (milliseconds); past it the
    /// caller is told to retry (the entries stay durable in the WAL and are
    /// published later: a retry with the same `event_id` gets the original
    /// receipt).
    pub ack_publish_timeout_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            flush_interval_ms: 500,
            segment_max_rows: 50_000,
            segment_max_bytes: 64 << 20,
            segment_compression: crate::segment::SegmentCompression::default(),
            group_max_events: 20_000,
            queue_requests: 1024,
            max_unpublished_events: 150_000,
            max_unpublished_bytes: 256 << 20,
            overload_wait_ms: 1_000,
            dedup_window: 1_000_000,
            state_snapshot_entries: 100_000,
            lease_ttl_ms: 30_000,
            compact_interval_ms: 10_000,
            compact_target_rows: 50_000,
            compact_min_segments: 8,
            tile_cache_tiles: 4096,
            ack_after_publish: false,
            ack_publish_timeout_ms: 10_000,
        }
    }
}
