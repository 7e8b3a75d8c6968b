//! Publishing the tree as C2SP tiles ([`crate::tiles`]): the tiles a
//! checkpoint needs are written create-only before the checkpoint, so a
//! checkpoint in the store is always served by tiles in the store. A tile
//! that already exists must hold the same bytes (our own earlier attempt);
//! different bytes mean someone else wrote into our namespace: fenced.

use futures::StreamExt;

use super::publisher::{PublishError, Publisher};
use super::recovery::Loaded;
use super::*;
use crate::tiles::{self, TileId};

/// Tiles written at once.
const TILE_WRITES_IN_FLIGHT: usize = 8;
/// Tiles taken from the tree per batch while backfilling (bounds the copy
/// held in memory: 1024 full tiles are 8 MiB).
const BACKFILL_BATCH: usize = 1024;

/// Why a tile could not be written.
enum TileWriteError {
    /// The name holds other hashes: not this log's.
    Foreign(String),
    Store(StoreError),
}

/// Writes one tile create-only; an existing tile must hold the same bytes.
async fn put_tile(store: &Store, ns: &str, id: TileId, body: Bytes) -> Result<(), TileWriteError> {
    let path = layout::tile(ns, &id);
    match store.put_create(&path, body.clone()).await {
        Ok(()) => Ok(()),
        Err(StoreError::AlreadyExists(_)) => {
            let existing = store.get(&path).await.map_err(TileWriteError::Store)?;
            if existing.as_deref() == Some(&body[..]) {
                Ok(())
            } else {
                Err(TileWriteError::Foreign(format!(
                    "tile {path} exists with other hashes than this log's"
                )))
            }
        }
        Err(e) => Err(TileWriteError::Store(e)),
    }
}

/// Writes tiles, a few at once.
async fn put_tiles(
    store: &Store,
    ns: &str,
    bodies: Vec<(TileId, Bytes)>,
) -> Result<(), TileWriteError> {
    let results: Vec<Result<(), TileWriteError>> = futures::stream::iter(bodies)
        .map(|(id, body)| put_tile(store, ns, id, body))
        .buffer_unordered(TILE_WRITES_IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect()
}

/// At open, from the tree rebuilt from the segments: the tiles of segments
/// published after the latest checkpoint (a crash between the two), and,
/// for a store written before tiles, every tile (once, with progress in
/// the log). Written before any checkpoint can need them.
pub(super) async fn store_missing_tiles(
    ctx: &LogContext,
    ns: &str,
    l: &Loaded,
) -> Result<(), OpenError> {
    let latest = l.latest.as_ref().map_or(0, |(s, _)| *s);
    let present = match tiles::probe(latest) {
        Some(probe) => ctx.store.get(&layout::tile(ns, &probe)).await?.is_some(),
        None => true,
    };
    let from = if present { latest } else { 0 };
    let mut ids = tiles::new_tiles(from, l.published);
    if ids.is_empty() {
        return Ok(());
    }
    // The probe tile last, alone: once it is there, all the others are
    // (tiles are otherwise written a few at once, in no order).
    let last = ids.pop().map(|p| vec![p]).unwrap_or_default();
    if !present {
        tracing::info!(
            ns,
            size = l.published,
            tiles = ids.len() + 1,
            "building the tiles of a store written before tiles"
        );
    }
    let (total, mut written) = (ids.len() + last.len(), 0);
    for chunk in ids.chunks(BACKFILL_BATCH).chain([&last[..]]) {
        let bodies = chunk
            .iter()
            .map(|id| {
                tiles::tile_bytes(&l.tree, *id)
                    .map(|b| (*id, Bytes::from(b)))
                    .ok_or_else(|| {
                        inconsistent(ns, format!("tile {} is beyond the tree", id.path()))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        put_tiles(&ctx.store, ns, bodies)
            .await
            .map_err(|e| match e {
                TileWriteError::Foreign(m) => inconsistent(ns, m),
                TileWriteError::Store(e) => OpenError::Store(e),
            })?;
        written += chunk.len();
        if !present {
            tracing::info!(ns, written, of = total, "tiles built");
        }
    }
    Ok(())
}

impl Publisher {
    /// Writes the tiles a new checkpoint needs.
    pub(super) async fn write_tiles(
        &self,
        bodies: Vec<(TileId, Bytes)>,
    ) -> Result<(), PublishError> {
        put_tiles(&self.ctx.store, &self.shared.ns, bodies)
            .await
            .map_err(|e| match e {
                TileWriteError::Foreign(m) => PublishError::Fenced(m),
                TileWriteError::Store(e) => e.into(),
            })
    }
}
