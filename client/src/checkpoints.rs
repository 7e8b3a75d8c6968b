//! Following a log's checkpoints as a reader who trusts one key and nothing
//! the server says: each checkpoint is opened under the pinned verifier key,
//! and each new one must extend the one before (an RFC 6962 consistency
//! proof), so the log can neither go back nor fork without it showing.

use tracevault_vault::{merkle, note};

use crate::proofs::decode_hashes;
use crate::{Client, Error};

/// Why a check did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The server could not be reached, or its answer not read: nothing is
    /// known either way; try again later.
    #[error("{0}")]
    Unreachable(String),
    /// What the server gave does not verify: the log is not what it claims.
    #[error("{reason}")]
    Bad {
        /// The log index the failure is about, when it is about one event.
        index: Option<u64>,
        /// What failed.
        reason: String,
    },
}

impl CheckError {
    /// A failure not tied to one event.
    pub fn bad(reason: impl Into<String>) -> CheckError {
        CheckError::Bad {
            index: None,
            reason: reason.into(),
        }
    }

    /// A failure about the event at log index `index`.
    pub fn bad_at(index: u64, reason: impl Into<String>) -> CheckError {
        CheckError::Bad {
            index: Some(index),
            reason: reason.into(),
        }
    }

    /// A client error seen by a checker: an answer that did not come, or
    /// came cut short, is "unreachable"; a well-formed answer of the wrong
    /// shape is `shape_bad`.
    pub(crate) fn from_client(e: Error, shape_bad: impl FnOnce() -> CheckError) -> CheckError {
        match e {
            Error::Json { ref source, .. }
                if source.classify() == serde_json::error::Category::Data =>
            {
                shape_bad()
            }
            other => CheckError::Unreachable(other.to_string()),
        }
    }
}

/// The key to check namespace `ns` with, as `(log name, key)`: the pinned
/// one (a C2SP verifier key, or a bare base64 key given the log's name by
/// the server: the name is no secret, the key is what is trusted), else the
/// server's own. The key's name must be the namespace's.
pub async fn namespace_key(
    client: &Client,
    ns: &str,
    pinned: Option<&str>,
) -> Result<(String, ed25519_dalek::VerifyingKey), CheckError> {
    let text = match pinned {
        Some(k) if names_its_log(k) => k.to_string(),
        _ => served_key(client, ns, pinned).await?,
    };
    let (name, pk) = note::parse_verifier_key(&text)
        .ok()
        .and_then(|(n, pk)| Some((n, ed25519_dalek::VerifyingKey::from_bytes(&pk).ok()?)))
        .ok_or_else(|| CheckError::bad(format!("{text:?} is not a verifier key")))?;
    if !name.ends_with(&format!("/{ns}")) {
        return Err(CheckError::bad(format!(
            "the key {name} is not the key of namespace {ns}"
        )));
    }
    Ok((name, pk))
}

/// Whether `key` is a verifier key (it names its log), not a bare base64
/// key, which may contain `+` as well and gets the log's name from the
/// server.
fn names_its_log(key: &str) -> bool {
    matches!(note::parse_log_key(key), Ok((Some(_), _)))
}

/// The server's verifier key of `ns`; with a bare `pinned` key, that key
/// under the server's log name.
async fn served_key(client: &Client, ns: &str, pinned: Option<&str>) -> Result<String, CheckError> {
    let missing = || CheckError::bad("the server did not give the namespace's key");
    let info = client
        .vault_info()
        .await
        .map_err(|e| CheckError::from_client(e, missing))?;
    let served = info
        .namespaces
        .into_iter()
        .find(|n| n.ns == ns)
        .and_then(|n| n.verifier_key)
        .ok_or_else(missing)?;
    let Some(bare) = pinned else {
        return Ok(served);
    };
    let (name, _) = note::parse_verifier_key(&served)
        .map_err(|e| CheckError::bad(format!("the server's key: {e}")))?;
    note::verifier_key_for(&name, bare).map_err(|e| CheckError::bad(format!("--key: {e}")))
}

/// Successive checkpoints of one namespace, each checked against the last.
pub struct CheckpointTracker {
    ns: String,
    name: String,
    key: ed25519_dalek::VerifyingKey,
    /// Size and root of the last checkpoint accepted.
    last: Option<(u64, [u8; 32])>,
    /// Cosignatures every checkpoint must carry, if any.
    witnesses: Option<tracevault_vault::cosignature::WitnessPolicy>,
}

impl CheckpointTracker {
    /// A tracker of `ns`'s checkpoints signed by `key` under log name `name`
    /// (see [`namespace_key`]).
    pub fn new(ns: &str, name: String, key: ed25519_dalek::VerifyingKey) -> CheckpointTracker {
        CheckpointTracker {
            ns: ns.to_string(),
            name,
            key,
            last: None,
            witnesses: None,
        }
    }

    /// The same, and every checkpoint must carry the cosignatures
    /// `witnesses` asks for (none: no requirement).
    pub fn with_witnesses(
        mut self,
        witnesses: Option<tracevault_vault::cosignature::WitnessPolicy>,
    ) -> CheckpointTracker {
        self.witnesses = witnesses;
        self
    }

    /// The same, starting from `text`, a checkpoint kept from an earlier
    /// run (a receipt, a bundle, `verify`): every checkpoint the server shows
    /// must extend it, so a server holding the key cannot show this reader
    /// another history than the one it saw before.
    pub fn starting_from(mut self, text: &str) -> Result<CheckpointTracker, CheckError> {
        let cp = note::open_checkpoint(text, &self.name, &self.key)
            .map_err(|e| CheckError::bad(format!("the pinned checkpoint: {e}")))?;
        self.last = Some((cp.size, cp.root));
        Ok(self)
    }

    /// The latest checkpoint: its signature checked, and consistent with the
    /// one accepted before (same size: same root; larger: a consistency
    /// proof; smaller: refused). Once accepted it is the one the next is
    /// checked against.
    pub async fn next(&mut self, client: &Client) -> Result<note::Checkpoint, CheckError> {
        let text = client
            .checkpoint(&self.ns)
            .await
            .map_err(|e| CheckError::Unreachable(e.to_string()))?;
        let cp = note::open_checkpoint(&text, &self.name, &self.key)
            .map_err(|e| CheckError::bad(format!("checkpoint: {e}")))?;
        if let Some(why) = self.witnesses.as_ref().and_then(|p| p.shortfall(&text)) {
            return Err(CheckError::bad(format!("checkpoint {}: {why}", cp.size)));
        }
        if let Some((size, root)) = self.last {
            self.extends(client, size, &root, &cp).await?;
        }
        self.last = Some((cp.size, cp.root));
        Ok(cp)
    }

    /// Whether `cp` extends the tree of `size` and `root`.
    async fn extends(
        &self,
        client: &Client,
        size: u64,
        root: &[u8; 32],
        cp: &note::Checkpoint,
    ) -> Result<(), CheckError> {
        if cp.size < size {
            return Err(CheckError::bad(format!(
                "the checkpoint went back from size {size} to {}",
                cp.size
            )));
        }
        if cp.size == size {
            return if cp.root == *root {
                Ok(())
            } else {
                Err(CheckError::bad(format!(
                    "two different trees of size {size} (a fork)"
                )))
            };
        }
        let rewritten = || {
            CheckError::bad(format!(
                "checkpoint {} is not consistent with checkpoint {size} (history rewritten)",
                cp.size
            ))
        };
        let proof = client
            .consistency_proof(&self.ns, size, cp.size)
            .await
            .map_err(|e| CheckError::from_client(e, rewritten))?;
        let hashes = decode_hashes(&proof.hashes).ok_or_else(rewritten)?;
        merkle::verify_consistency(size, cp.size, &hashes, root, &cp.root).map_err(|_| rewritten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_key_with_a_plus_is_not_taken_for_a_verifier_key() {
        let bare = "DVebtVJ+2ZVX2QYwXmWRFOQZOG+pQq86tAzBqWVInls=";
        assert!(bare.contains('+'));
        assert!(!names_its_log(bare));
        let key: [u8; 32] =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bare)
                .unwrap()
                .try_into()
                .unwrap();
        assert!(names_its_log(&note::verifier_key(
            "example.org/log/prod",
            &key
        )));
    }
}
