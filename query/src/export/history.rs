//! The request's history in a bundle (`approvals.jsonl`): each workflow step
//! is an `_audit` entry, shipped with its committed record and an inclusion
//! proof against a signed `_audit` checkpoint (`audit_checkpoint`), so a
//! recipient can check offline who requested and who approved, not only
//! take the manifest's word for it.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};
use tracevault_vault::record::{Entry, Hash, field_digest};
use tracevault_vault::{jcs, merkle, note};

use super::ExportError;
use super::verify::{hash32, proof_hashes};

/// The vault's access log namespace (the server writes it; bundles prove
/// their history in it).
pub use tracevault_vault::AUDIT_NS;
/// The `_audit` session holding the export workflow's steps.
pub const EXPORTS_SESSION: &str = "exports";

/// One line of `approvals.jsonl` for the `_audit` entry `e` holding a
/// workflow step, with its inclusion `proof`. `shown` is the step as the
/// requester's profile shows it; when it differs from the stored step, the
/// stored text and its salt are left out (they would reveal what masking
/// hid), and the step is proven included but its content is not bound.
fn history_line(e: &Entry, shown: &Value, proof: &[Hash]) -> Result<Value, ExportError> {
    let build = |m: String| ExportError::Build(format!("history entry {}: {m}", e.idx));
    let bytes = e
        .committed_record_bytes()
        .map_err(|x| build(x.to_string()))?;
    let record: Value = serde_json::from_slice(&bytes).map_err(|x| build(x.to_string()))?;
    let stored: Option<Value> = e
        .content
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok());
    let exact = stored.as_ref() == Some(shown);
    Ok(json!({
        "index": e.idx,
        "leaf_hash": hex::encode(e.leaf_hash),
        "record": record,
        "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        "step": shown,
        "content": if exact { e.content.clone().map(Value::String) } else { None },
        "salt": if exact { e.salt.map(hex::encode) } else { None },
    }))
}

/// The `_audit` entries holding the steps of export `export_id`, with
/// their steps, and the size a checkpoint must have to cover them all.
pub async fn history_steps(
    vault: &tracevault_vault::Vault,
    export_id: &str,
) -> Result<(Vec<(Entry, Value)>, u64), ExportError> {
    let steps: Vec<(Entry, Value)> = vault
        .session_entries(AUDIT_NS, EXPORTS_SESSION)
        .await
        .map_err(|e| history_error(e.to_string()))?
        .into_iter()
        .filter_map(|e| {
            let step: Value = serde_json::from_str(e.content.as_deref()?).ok()?;
            (step["id"] == export_id).then_some((e, step))
        })
        .collect();
    let need = steps.iter().map(|(e, _)| e.idx + 1).max().unwrap_or(0);
    Ok((steps, need))
}

/// `approvals.jsonl` lines for `steps` ([`history_steps`]), each proven
/// in the `_audit` tree of `size` (a checkpoint of that size must cover
/// them). `show` turns a stored step into what the requester may see (its
/// masking of the selection).
pub async fn history_lines(
    vault: &tracevault_vault::Vault,
    steps: Vec<(Entry, Value)>,
    size: u64,
    show: &(dyn Fn(Value) -> Value + Sync),
) -> Result<Vec<Value>, ExportError> {
    let view = vault
        .view(AUDIT_NS)
        .await
        .map_err(|e| history_error(e.to_string()))?
        .ok_or_else(|| history_error("_audit cannot be read".into()))?;
    let mut lines = Vec::with_capacity(steps.len());
    for (e, step) in steps {
        let (_, proof) = view
            .inclusion_proof(e.idx, size)
            .await
            .map_err(|x| history_error(x.to_string()))?;
        lines.push(history_line(&e, &show(step), &proof)?);
    }
    Ok(lines)
}

fn history_error(m: String) -> ExportError {
    ExportError::Build(format!("export history: {m}"))
}

/// The history of export `export_id` as `approvals.jsonl` lines, with the
/// signed `_audit` checkpoint their proofs are against: the latest one,
/// waited for (up to `wait`) until it covers the newest step (one is
/// signed within the log's checkpoint interval). Under a witness policy
/// the server picks a cosigned checkpoint instead ([`history_steps`],
/// [`history_lines`]).
pub async fn history_for(
    vault: &tracevault_vault::Vault,
    export_id: &str,
    show: &(dyn Fn(Value) -> Value + Sync),
    wait: std::time::Duration,
) -> Result<(Vec<Value>, String), ExportError> {
    let (steps, need) = history_steps(vault, export_id).await?;
    // From the store, whichever node writes `_audit`.
    let deadline = tokio::time::Instant::now() + wait;
    let (size, checkpoint) = loop {
        let view = vault
            .view(AUDIT_NS)
            .await
            .map_err(|e| history_error(e.to_string()))?
            .ok_or_else(|| history_error("_audit cannot be read".into()))?;
        if let Some(c) = view.latest_checkpoint().filter(|(s, _)| *s >= need) {
            break c;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(history_error(format!(
                "no signed _audit checkpoint covers entry {} yet",
                need.saturating_sub(1)
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    Ok((history_lines(vault, steps, size, show).await?, checkpoint))
}

/// What checking the history found.
#[derive(Debug, Default, serde::Serialize)]
pub struct HistoryReport {
    /// Steps whose inclusion in `_audit` is proven.
    pub steps: u64,
    /// Of those, steps whose shown content is bound to the record.
    pub bound: u64,
}

/// Checks `approvals.jsonl` against `audit_checkpoint`, signed by the same
/// log key under the name `<vault origin>/_audit` (derived from the
/// namespace key's name `<vault origin>/<ns>`). Findings are pushed, one
/// precise message each.
pub fn check_history(
    lines: &[u8],
    audit_checkpoint: &[u8],
    ns_key_name: &str,
    pubkey: &VerifyingKey,
    manifest: &Value,
    witnesses: Option<&tracevault_vault::cosignature::WitnessPolicy>,
    findings: &mut Vec<String>,
) -> HistoryReport {
    let mut report = HistoryReport::default();
    let origin = ns_key_name.rsplit_once('/').map_or("", |(o, _)| o);
    let audit_name = format!("{origin}/{AUDIT_NS}");
    let cp = match std::str::from_utf8(audit_checkpoint)
        .map_err(|e| e.to_string())
        .and_then(|t| note::open_checkpoint(t, &audit_name, pubkey).map_err(|e| e.to_string()))
    {
        Ok(cp) => cp,
        Err(e) => {
            findings.push(format!("audit_checkpoint: {e}"));
            return report;
        }
    };
    // Under a witness policy the history is witnessed too: a key holder
    // could otherwise prove invented approvals in a private `_audit` tree.
    if let Some(why) = witnesses.and_then(|p| {
        std::str::from_utf8(audit_checkpoint)
            .ok()
            .and_then(|t| p.shortfall(t))
    }) {
        findings.push(format!("audit_checkpoint: {why}"));
    }
    let export_id = manifest["export_id"].as_str().unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut requester = None;
    let mut approvers = BTreeSet::new();
    for (n, line) in lines.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let at = format!("approvals.jsonl line {}", n + 1);
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                findings.push(format!("{at}: not JSON: {e}"));
                continue;
            }
        };
        let (Some(index), Some(leaf)) = (
            v["index"].as_u64(),
            v["leaf_hash"].as_str().and_then(hash32),
        ) else {
            findings.push(format!("{at}: no index or leaf_hash"));
            continue;
        };
        let proof = proof_hashes(&v["proof"]);
        let included = proof
            .is_some_and(|p| merkle::verify_inclusion(&leaf, index, cp.size, &p, &cp.root).is_ok());
        if !included {
            findings.push(format!(
                "{at}: _audit entry {index} is not proven in the audit checkpoint (proof changed or entry forged)"
            ));
            continue;
        }
        let record = &v["record"];
        match jcs::to_canonical_vec(record) {
            Ok(bytes) if merkle::leaf_hash(&bytes) == leaf => {}
            _ => {
                findings.push(format!(
                    "{at}: record does not hash to its leaf hash (record changed)"
                ));
                continue;
            }
        }
        if record["ns"] != AUDIT_NS || record["session_id"] != EXPORTS_SESSION {
            findings.push(format!("{at}: not an export step of _audit"));
            continue;
        }
        // Counted once, and only as a valid line: a bogus line cannot make
        // the genuine one look duplicated.
        if !seen.insert(index) {
            findings.push(format!("{at}: _audit entry {index} listed twice"));
            continue;
        }
        let step = &v["step"];
        // What the record itself says (name and actor are verbatim in it),
        // whether or not the content is shipped.
        let kind = step["step"].as_str().unwrap_or_default();
        let who = step["by"]["sub"].as_str().unwrap_or_default().to_string();
        if record["name"] != format!("export_{kind}").as_str()
            || (kind != "expired" && record["actor"] != who.as_str())
        {
            findings.push(format!(
                "{at}: step {kind:?} by {who:?} is not what _audit entry {index} records (step changed)"
            ));
            continue;
        }
        if step["id"] != export_id {
            findings.push(format!("{at}: a step of another export ({})", step["id"]));
            continue;
        }
        report.steps += 1;
        // The content bound to the record's digest, when it is shipped.
        let mut bound = false;
        if let (Some(content), Some(salt)) =
            (v["content"].as_str(), v["salt"].as_str().and_then(hash32))
        {
            let digest = hex::encode(field_digest("content", &salt, content.as_bytes()));
            let same = serde_json::from_str::<Value>(content).ok().as_ref() == Some(step);
            if record["content_digest"].as_str() != Some(digest.as_str()) || !same {
                findings.push(format!(
                    "{at}: step differs from the content committed in _audit entry {index} (step changed)"
                ));
                continue;
            }
            report.bound += 1;
            bound = true;
        }
        match kind {
            // A request whose selection the profile masks is shipped
            // unbound: its name and actor are proven by the record, its
            // export id is not.
            "requested" => requester = Some(who),
            // An approval never carries masked data, so it is always
            // shipped bound; an unbound one proves nothing about its `by`.
            "approved" if bound => {
                approvers.insert(who);
            }
            "denied" | "expired" if bound => findings.push(format!(
                "{at}: the history shows this export {kind} (_audit entry {index})"
            )),
            _ => {}
        }
    }
    let want = manifest["requester"].as_str();
    if want.is_none() || requester.as_deref() != want {
        findings.push(format!(
            "approvals.jsonl: no proven request by {} (history incomplete or changed)",
            manifest["requester"]
        ));
    }
    for a in manifest["approvers"].as_array().into_iter().flatten() {
        if !a.as_str().is_some_and(|a| approvers.contains(a)) {
            findings.push(format!(
                "approvals.jsonl: no proven approval by {a} (history incomplete or changed)"
            ));
        }
    }
    report
}
