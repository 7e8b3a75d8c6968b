//! Publishing the tree as C2SP tiles ([`crate::tiles`]): the tiles a
//! checkpoint needs are written create-only before the checkpoint, so a
//! checkpoint in the store is always served by tiles in the store. A tile
//! that already exists must hold the same bytes (our own earlier attempt);
//! different bytes mean someone else wrote into our namespace: fenced.

use futures::StreamExt;

use super::publisher::{PublishError, Publisher};
use super::*;
use crate::tiles::{self, TileId};

/// Tiles written at once.
const TILE_WRITES_IN_FLIGHT: usize = 8;
/// Tiles taken from the tree per batch while backfilling (bounds the copy
/// held in memory: 1024 full tiles are 8 MiB).
const BACKFILL_BATCH: usize = 1024;

impl Publisher {
    /// Writes the tiles that the tree at `new` has and the tree at `old`
    /// did not (see [`tiles::new_tiles`]).
    pub(super) async fn publish_tiles(&self, old: u64, new: u64) -> Result<(), PublishError> {
        let ids = tiles::new_tiles(old, new);
        for chunk in ids.chunks(BACKFILL_BATCH) {
            self.write_tiles(chunk).await?;
        }
        Ok(())
    }

    /// Stores written before tiles existed get theirs once, at first open:
    /// when the right edge of the published size is missing, every tile of
    /// that size is written (those already there are checked, not rewritten).
    pub(super) async fn backfill_tiles(&self) -> Result<(), PublishError> {
        let size = self.shared.published.load(Ordering::SeqCst);
        let Some(probe) = tiles::probe(size) else {
            return Ok(());
        };
        let ns = &self.shared.ns;
        if self
            .ctx
            .store
            .get(&layout::tile(ns, &probe))
            .await?
            .is_some()
        {
            return Ok(());
        }
        let ids = tiles::new_tiles(0, size);
        tracing::info!(ns = %ns, size, tiles = ids.len(), "building the tiles of a store written before tiles");
        for (i, chunk) in ids.chunks(BACKFILL_BATCH).enumerate() {
            self.write_tiles(chunk).await?;
            tracing::info!(ns = %ns, written = (i * BACKFILL_BATCH + chunk.len()), of = ids.len(), "tiles built");
        }
        Ok(())
    }

    async fn write_tiles(&self, ids: &[TileId]) -> Result<(), PublishError> {
        let bodies: Vec<(TileId, Bytes)> = {
            let st = self
                .shared
                .state
                .read()
                .map_err(|_| PublishError::Fenced("state lock poisoned".into()))?;
            ids.iter()
                .map(|id| {
                    tiles::tile_bytes(&st.tree, *id)
                        .map(|b| (*id, Bytes::from(b)))
                        .ok_or_else(|| {
                            PublishError::Fenced(format!("tile {} is beyond the tree", id.path()))
                        })
                })
                .collect::<Result<_, _>>()?
        };
        let results: Vec<Result<(), PublishError>> = futures::stream::iter(bodies)
            .map(|(id, body)| self.write_tile(id, body))
            .buffer_unordered(TILE_WRITES_IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn write_tile(&self, id: TileId, body: Bytes) -> Result<(), PublishError> {
        let path = layout::tile(&self.shared.ns, &id);
        match self.ctx.store.put_create(&path, body.clone()).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists(_)) => {
                let existing = self.ctx.store.get(&path).await?;
                if existing.as_deref() == Some(&body[..]) {
                    Ok(())
                } else {
                    Err(PublishError::Fenced(format!(
                        "tile {path} exists with other hashes than this log's"
                    )))
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}
