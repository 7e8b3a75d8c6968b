//! The vault: per-namespace append-only logs of trace events, kept as a hash
//! chain plus an RFC 6962 Merkle tree, with Ed25519-signed C2SP checkpoints
//! and Parquet segments on object storage; and the verifier that proves a
//! store intact or names what changed.
//!
//! Entry points: [`Vault`] (open, append, proofs, shutdown),
//! [`verify::verify_store`], and the primitives in [`record`], [`merkle`],
//! [`note`] and [`segment`] that third parties can reuse to check our output.

pub mod approval;
mod bloom_filter;
mod codec;
pub mod compact;
mod compressed_pages;
pub mod config;
pub mod cosignature;
mod delta_encoding;
mod direct_write;
mod encoded_runs;
pub mod erasure;
mod footer_rules;
mod footer_shape;
pub mod jcs;
pub mod keys;
pub mod lease;
pub mod log;
pub mod merkle;
pub mod note;
mod page_headers;
mod page_index;
pub mod parquet_input;
pub mod pruning;
mod reader;
pub mod record;
pub mod segment;
pub mod session_state;
pub mod store;
mod thrift_strict;
pub mod tile_proofs;
pub mod tiles;
pub mod tiling;
pub mod token;
mod vault;
pub mod verify;
pub(crate) mod wal;
pub mod witness;
pub(crate) mod worker_pool;

/// The vault's own namespace: its access log, the export and erasure
/// workflows (written by the server only, never erased).
pub const AUDIT_NS: &str = "_audit";

pub use config::LogConfig;
pub use log::{AppendError, Appender, EraseError, LogStats, PublishedTree, Receipt};
pub use reader::{LogReader, ReadPlan, SegmentObject};
pub use store::Store;
pub use vault::{
    LogView, NamespaceInfo, VAULT_FORMAT, Vault, VaultError, VaultMeta, VaultOptions, read_meta,
    validate_namespace,
};
