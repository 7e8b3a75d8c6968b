//! The receipt of a performed erasure, for the data subject: the order's
//! id, namespace and erased indices, and every `_audit` step of the order
//! (request, approvals, performed) with its committed record, content, salt
//! and RFC 6962 inclusion proof against a signed `_audit` checkpoint. It
//! proves, offline and with only the log key, that the erasure was ordered,
//! approved by someone other than the requester, and performed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};

use super::{ERASURES_SESSION, IndexRanges, Orders, State, Step};
use crate::record::{Hash, field_digest};
use crate::{AUDIT_NS, Vault, VaultError, jcs, merkle, note};

/// `format` of a receipt.
pub const RECEIPT_FORMAT: &str = "tracevault-erasure-receipt/1";

/// How long building a receipt waits for a checkpoint covering its steps.
const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Builds the receipt of order `id` of `ns`, whose steps are the `_audit`
/// entries `audit_indices`.
pub async fn build(
    vault: &Vault,
    id: &str,
    ns: &str,
    indices: &IndexRanges,
    audit_indices: &[u64],
) -> Result<Value, VaultError> {
    let fail = |m: String| VaultError::Read(format!("erasure receipt {id}: {m}"));
    let need = audit_indices.iter().max().map_or(0, |i| i + 1);
    let log = vault.log(AUDIT_NS).await?;
    if log.wait_published(need, WAIT).await.is_none() {
        return Err(fail(
            "no signed _audit checkpoint covers its steps yet".into(),
        ));
    }
    let view = vault
        .view(AUDIT_NS)
        .await?
        .ok_or_else(|| fail("_audit cannot be read".into()))?;
    let (size, checkpoint) = view
        .latest_checkpoint()
        .filter(|(s, _)| *s >= need)
        .ok_or_else(|| fail("no _audit checkpoint".into()))?;
    let mut steps = Vec::with_capacity(audit_indices.len());
    for &i in audit_indices {
        let e = vault
            .entry(AUDIT_NS, i)
            .await?
            .ok_or_else(|| fail(format!("_audit entry {i} is missing")))?;
        let record: Value = serde_json::from_slice(
            &e.committed_record_bytes()
                .map_err(|x| fail(x.to_string()))?,
        )
        .map_err(|x| fail(x.to_string()))?;
        let (_, proof) = view
            .inclusion_proof(i, size)
            .await
            .map_err(|x| fail(x.to_string()))?;
        steps.push(json!({
            "index": i,
            "record": record,
            "content": e.content,
            "salt": e.salt.map(hex::encode),
            "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({
        "format": RECEIPT_FORMAT,
        "id": id,
        "namespace": ns,
        "indices": indices,
        "entries": indices.count(),
        "audit_checkpoint": checkpoint,
        "steps": steps,
    }))
}

/// What a receipt proves.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceiptCheck {
    /// Order id.
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// Entries erased.
    pub entries: u64,
    /// The `_audit` checkpoint size the steps are proven against.
    pub audit_size: u64,
    /// Steps proven.
    pub steps: usize,
}

fn hash32(s: &str) -> Option<Hash> {
    hex::decode(s).ok()?.try_into().ok()
}

/// Checks a receipt offline with the log's public key: the `_audit`
/// checkpoint's signature, every step's content against its digest, its
/// record against its leaf and its leaf against the checkpoint's root; then
/// that the steps, replayed under the workflow's rules, make the order
/// performed, over exactly the receipt's indices.
pub fn verify(receipt: &Value, key: &VerifyingKey) -> Result<ReceiptCheck, String> {
    if receipt["format"] != RECEIPT_FORMAT {
        return Err(format!("not a receipt ({RECEIPT_FORMAT})"));
    }
    let id = receipt["id"].as_str().ok_or("no id")?;
    let ns = receipt["namespace"].as_str().ok_or("no namespace")?;
    let indices: IndexRanges =
        serde_json::from_value(receipt["indices"].clone()).map_err(|e| format!("indices: {e}"))?;
    let text = receipt["audit_checkpoint"]
        .as_str()
        .ok_or("no audit_checkpoint")?;
    let origin = text.lines().next().unwrap_or_default();
    if !origin.ends_with(&format!("/{AUDIT_NS}")) {
        return Err(format!(
            "the checkpoint is of {origin:?}, not of an _audit log"
        ));
    }
    let cp = note::open_checkpoint(text, origin, key)
        .map_err(|e| format!("audit_checkpoint does not verify with the key: {e}"))?;
    let mut orders = Orders::new(Default::default());
    let steps = receipt["steps"].as_array().ok_or("no steps")?;
    let mut last: Option<u64> = None;
    for (n, s) in steps.iter().enumerate() {
        let bad = |m: &str| format!("step {n}: {m}");
        let index = s["index"].as_u64().ok_or_else(|| bad("no index"))?;
        // Replayed in log order, each once, as the server applied them.
        if last.is_some_and(|l| index <= l) {
            return Err(bad("steps are not in increasing _audit order"));
        }
        last = Some(index);
        let record = &s["record"];
        let bytes = jcs::to_canonical_vec(record).map_err(|e| bad(&e.to_string()))?;
        let leaf = merkle::leaf_hash(&bytes);
        let proof: Vec<Hash> = s["proof"]
            .as_array()
            .ok_or_else(|| bad("no proof"))?
            .iter()
            .map(|h| B64.decode(h.as_str()?).ok()?.try_into().ok())
            .collect::<Option<_>>()
            .ok_or_else(|| bad("malformed proof"))?;
        merkle::verify_inclusion(&leaf, index, cp.size, &proof, &cp.root)
            .map_err(|e| bad(&format!("not in the signed _audit tree: {e}")))?;
        if record["index"].as_u64() != Some(index)
            || record["ns"] != AUDIT_NS
            || record["session_id"] != ERASURES_SESSION
        {
            return Err(bad(
                "the record is not an erasure step of _audit at its index",
            ));
        }
        let content = s["content"].as_str().ok_or_else(|| bad("no content"))?;
        let salt = s["salt"]
            .as_str()
            .and_then(hash32)
            .ok_or_else(|| bad("no salt"))?;
        let digest = record["content_digest"].as_str().and_then(hash32);
        if digest != Some(field_digest("content", &salt, content.as_bytes())) {
            return Err(bad("content does not match the record's digest"));
        }
        let step: Step =
            serde_json::from_str(content).map_err(|e| bad(&format!("not an erasure step: {e}")))?;
        orders.apply(&step, index);
    }
    let o = orders
        .get(id)
        .ok_or_else(|| format!("the steps hold no order {id}"))?;
    if o.ns != ns || o.indices != indices {
        return Err("the order's namespace or indices differ from the receipt's".into());
    }
    if orders.state(o, i64::MAX) != State::Performed {
        return Err(format!(
            "the proven steps do not make order {id} approved and performed"
        ));
    }
    Ok(ReceiptCheck {
        id: id.to_string(),
        namespace: ns.to_string(),
        entries: indices.count(),
        audit_size: cp.size,
        steps: steps.len(),
    })
}
