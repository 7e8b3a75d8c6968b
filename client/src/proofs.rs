//! The evidence a server gives about its log, as served (nothing here is
//! trusted yet; [`crate::checkpoints`] and [`crate::proof_check`] check it):
//! signed checkpoints, RFC 6962 inclusion proofs (one, or a batch with one
//! `POST`) and consistency proofs, and the namespaces' verifier keys.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::json;

use crate::{Client, Error};

/// `GET /v1/vault`, the part a reader needs.
#[derive(Debug, Clone, Deserialize)]
pub struct VaultInfo {
    /// The namespaces this token may see.
    pub namespaces: Vec<NamespaceInfo>,
}

/// One namespace of [`VaultInfo`].
#[derive(Debug, Clone, Deserialize)]
pub struct NamespaceInfo {
    /// The namespace.
    pub ns: String,
    /// Its C2SP verifier key (`name+id+base64`).
    #[serde(default)]
    pub verifier_key: Option<String>,
}

/// An inclusion proof: the leaf hash the log holds at `index` and the audit
/// path from it to the root of the tree of the size asked for.
#[derive(Debug, Clone, Deserialize)]
pub struct InclusionProof {
    /// The log index.
    pub index: u64,
    /// The leaf hash the log holds there (hex).
    pub leaf_hash: String,
    /// The audit path (base64 hashes).
    pub hashes: Vec<String>,
}

/// The answer of a batch of inclusion proofs.
#[derive(Debug, Clone, Deserialize)]
pub struct InclusionProofs {
    /// The tree size the proofs lead to.
    pub size: u64,
    /// The proofs, in the order asked for.
    pub proofs: Vec<InclusionProof>,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsistencyProof {
    /// The proof (base64 hashes).
    pub hashes: Vec<String>,
}

/// Base64 proof hashes as 32-byte hashes; `None` if any is not one.
pub fn decode_hashes(hashes: &[String]) -> Option<Vec<[u8; 32]>> {
    hashes
        .iter()
        .map(|h| B64.decode(h).ok()?.try_into().ok())
        .collect()
}

impl Client {
    /// `GET /v1/vault`: the namespaces this token sees, with their keys.
    pub async fn vault_info(&self) -> Result<VaultInfo, Error> {
        Client::send_json(self.get("/v1/vault"), "vault info").await
    }

    /// `GET /v1/logs/{ns}/checkpoint`: the latest signed checkpoint, a C2SP
    /// signed note (not opened here).
    pub async fn checkpoint(&self, ns: &str) -> Result<String, Error> {
        let body = Client::send_bytes(self.get(&format!("/v1/logs/{ns}/checkpoint"))).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET /v1/logs/{ns}/proof/inclusion?index=..&size=..`: one proof.
    pub async fn inclusion_proof(
        &self,
        ns: &str,
        index: u64,
        size: u64,
    ) -> Result<InclusionProof, Error> {
        let path = format!("/v1/logs/{ns}/proof/inclusion?index={index}&size={size}");
        Client::send_json(self.get(&path), "inclusion proof").await
    }

    /// `POST /v1/logs/{ns}/proof/inclusion`: the proofs of `indices` (the
    /// server takes up to 1000) in the tree of `size`, with one request.
    /// Older servers answer 404 or 405, servers with a small body limit 413.
    pub async fn inclusion_proofs(
        &self,
        ns: &str,
        size: u64,
        indices: &[u64],
    ) -> Result<InclusionProofs, Error> {
        let req = self
            .post(&format!("/v1/logs/{ns}/proof/inclusion"))
            .json(&json!({"size": size, "indices": indices}));
        Client::send_json(req, "batch of inclusion proofs").await
    }

    /// `GET /v1/logs/{ns}/proof/consistency?from=..&to=..`.
    pub async fn consistency_proof(
        &self,
        ns: &str,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, Error> {
        let path = format!("/v1/logs/{ns}/proof/consistency?from={from}&to={to}");
        Client::send_json(self.get(&path), "consistency proof").await
    }
}
