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

/// At open, from the tree rebuilt from the segments: every tile the
/// published size needs that the store does not hold. That covers segments
/// published after the latest checkpoint (a crash between the two), a store
/// written before tiles (built once, with progress in the log), and tiles
/// removed or never written by another writer. Written before any
/// checkpoint can need them; listing them costs little next to the segment
/// reads the open does anyway.
pub(super) async fn store_missing_tiles(
    ctx: &LogContext,
    ns: &str,
    l: &Loaded,
) -> Result<(), OpenError> {
    if l.published == 0 {
        return Ok(());
    }
    let Some(tree) = l.tree() else {
        // Opened from the tiles: only those past the checkpoint can be missing.
        return put_tiles(&ctx.store, ns, l.missing_tiles.clone())
            .await
            .map_err(|e| match e {
                TileWriteError::Foreign(m) => inconsistent(ns, m),
                TileWriteError::Store(e) => OpenError::Store(e),
            });
    };
    let stored: std::collections::HashSet<TileId> = ctx
        .store
        .list_recursive(&layout::tiles(ns))
        .await?
        .into_iter()
        .filter_map(|(rel, _)| TileId::parse(&format!("tile/{rel}")))
        .collect();
    let missing: Vec<TileId> = tiles::new_tiles(0, l.published)
        .into_iter()
        .filter(|id| !stored.contains(id))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let backfill = stored.is_empty();
    if backfill {
        tracing::info!(
            ns,
            size = l.published,
            tiles = missing.len(),
            "building the tiles of a store written before tiles"
        );
    } else {
        tracing::info!(
            ns,
            size = l.published,
            tiles = missing.len(),
            "writing missing tiles"
        );
    }
    let mut written = 0;
    for chunk in missing.chunks(BACKFILL_BATCH) {
        let bodies = chunk
            .iter()
            .map(|id| {
                tiles::tile_bytes(tree, *id)
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
        if backfill {
            tracing::info!(ns, written, of = missing.len(), "tiles built");
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
