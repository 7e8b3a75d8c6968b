//! Export bundles (issue 5, `docs/exports.md`): one tar file that carries the
//! selected events (masked per the requester's profile) and its own proofs,
//! so its recipient can check it offline with only the log's verifier key.
//!
//! Members, in order: `manifest.json` (JCS; SHA-256 of every other member),
//! `manifest.sig` (Ed25519 by the log key over a domain separator and the
//! manifest), `checkpoint` (the signed note the proofs are against),
//! `events.parquet` (the rows), `proofs.jsonl` (per row: committed record,
//! leaf hash, inclusion proof), `approvals.jsonl` (the request's history,
//! each step with its `_audit` record and inclusion proof) and
//! `audit_checkpoint` (the signed `_audit` checkpoint those proofs are against).

mod bundle;
mod history;
mod read;
mod verify;
pub mod workflow;

pub use bundle::{BundleInput, BundleRow, BundleWriter, write_bundle};
pub use history::{AUDIT_NS, EXPORTS_SESSION, history_for, history_lines, history_steps};
pub use read::{BundleReader, RowKey};
pub use verify::{BundleReport, rows_signed, verify_bundle, verify_bundle_with};

/// `format` of the manifest.
pub const FORMAT: &str = "tracevault-export/1";
/// Domain separator of manifest signatures (never confusable with
/// checkpoint, segment-header or token signatures made by the same key).
pub const MANIFEST_DOMAIN: &[u8] = b"tracevault/export-manifest/v1\n";
/// Member names, in bundle order.
pub const MEMBERS: [&str; 7] = [
    "manifest.json",
    "manifest.sig",
    "checkpoint",
    "events.parquet",
    "proofs.jsonl",
    "approvals.jsonl",
    "audit_checkpoint",
];
/// Largest member a verifier reads (a bundle is refused beyond, not cut).
pub const MAX_MEMBER_BYTES: u64 = 8 << 30;

/// The committed record's verbatim columns (see [`crate::masking::VERBATIM`]):
/// when the requester's profile masks one, the record is withheld from the
/// bundle.
pub use crate::masking::VERBATIM;

/// The frozen selection's digest: SHA-256 (hex) of `"{idx}:{leaf hex}\n"`
/// for each row in index order. Recorded when an export is requested,
/// re-checked at download, and recomputed by the verifier from the proofs.
pub fn selection_digest(rows: impl IntoIterator<Item = (u64, [u8; 32])>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (idx, leaf) in rows {
        h.update(format!("{idx}:{}\n", hex::encode(leaf)).as_bytes());
    }
    hex::encode(h.finalize())
}

/// Why a bundle could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Building failed (a bug or bad input).
    #[error("building the bundle: {0}")]
    Build(String),
    /// The file is not a readable bundle (damaged, truncated, too large).
    #[error("{0}")]
    Unreadable(String),
}
