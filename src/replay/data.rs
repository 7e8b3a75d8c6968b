//! `--data DIR`: an operator on the box replays from the store directly
//! (unmasked; it does not need the server, nor its lock). The verdict is
//! `tracevault verify` of the namespace, run in the background: any finding
//! fails the badge, naming the index it concerns.

use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tracevault_replay::{Integrity, SessionInfo, VecSource};
use tracevault_vault::store::layout;
use tracevault_vault::verify::{VerifyOptions, verify_store};
use tracevault_vault::{Store, compact, segment};

use super::{Checked, from_entry, set};

/// Opens session `session` of namespace `ns` (default: the only namespace)
/// in the store of data directory `dir`. `key` is the base64 log public key.
pub fn open(
    dir: &Path,
    ns: Option<&str>,
    session: &str,
    key: Option<&str>,
) -> anyhow::Result<Checked> {
    let root = dir.join("store");
    anyhow::ensure!(root.is_dir(), "{} has no store directory", dir.display());
    let pinned = key
        .map(|k| {
            let b: [u8; 32] = B64
                .decode(k.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    anyhow::anyhow!("--key must be the base64 Ed25519 log public key")
                })?;
            Ok::<_, anyhow::Error>(ed25519_dalek::VerifyingKey::from_bytes(&b)?)
        })
        .transpose()?;
    let store = Store::local(&root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ns = match ns {
        Some(n) => n.to_string(),
        None => {
            let all: Vec<String> = rt
                .block_on(store.list_dirs(&layout::namespaces()))?
                .into_iter()
                .filter(|n| !n.starts_with('_'))
                .collect();
            match all.as_slice() {
                [one] => one.clone(),
                _ => anyhow::bail!("--ns is needed: the store holds namespaces {all:?}"),
            }
        }
    };
    tracevault_vault::validate_namespace(&ns, true)?;
    let events = rt.block_on(async {
        let listed = store.list_sized(&layout::segments(&ns)).await?;
        let mut ranges: Vec<(u64, u64)> = listed
            .iter()
            .filter_map(|(n, _)| segment::parse_segment_file_name(n))
            .collect();
        compact::cover_order(&mut ranges);
        let (ranges, _) = compact::split_covered(&ranges);
        let mut out = Vec::new();
        for (first, last) in ranges {
            let Some(bytes) = store.get(&layout::segment(&ns, first, last)).await? else {
                // Merged away since the listing: never show a partial session.
                anyhow::bail!(
                    "segment {first}-{last} of {ns} vanished while reading (compaction); run the replay again"
                );
            };
            segment::decode_session(bytes, session, |e| out.push(from_entry(&e)))
            .map_err(|e| anyhow::anyhow!("segment {first}-{last}: {e}"))?;
        }
        out.sort_by_key(|e| e.idx);
        out.dedup_by_key(|e| e.idx);
        anyhow::Ok(out)
    })?;
    anyhow::ensure!(
        !events.is_empty(),
        "no event of session {session} in namespace {ns} (published segments only)"
    );
    let indices: std::collections::BTreeSet<u64> = events.iter().map(|e| e.idx).collect();
    let info = SessionInfo {
        session_id: session.to_string(),
        namespace: ns.clone(),
        origin: format!("data {}", dir.display()),
        ..SessionInfo::default()
    };
    let verdict = Arc::new(Mutex::new(Integrity::Checking));
    let v = verdict.clone();
    let check = move || {
        let opts = VerifyOptions {
            pinned_key: pinned,
            namespace: Some(ns.clone()),
            concurrency: 4,
            ..VerifyOptions::default()
        };
        let report = match rt.block_on(verify_store(&store, &opts)) {
            Ok(r) => r,
            Err(e) => {
                return set(
                    &v,
                    Integrity::Unverified {
                        reason: format!("verify could not run: {e}"),
                    },
                );
            }
        };
        // A finding about a shown event first, else any: a changed log is
        // a changed log, whichever entry it touched.
        let first = report
            .findings
            .iter()
            .find(|f| f.index.is_some_and(|i| indices.contains(&i)))
            .or_else(|| report.findings.iter().find(|f| f.index.is_some()))
            .or(report.findings.first());
        let size = report
            .namespaces
            .iter()
            .find(|s| s.ns == ns)
            .map_or(0, |s| s.entries);
        let verdict = match first {
            Some(f) => Integrity::Failed {
                index: f.index,
                reason: format!(
                    "{} ({} findings; run tracevault verify)",
                    f.message,
                    report.findings.len()
                ),
            },
            None if pinned.is_none() => Integrity::Unverified {
                reason: "intact against the key in vault.json; pin the log key with --key".into(),
            },
            None => Integrity::Verified {
                checkpoint_size: size,
                events_checked: indices.len() as u64,
            },
        };
        set(&v, verdict);
    };
    Ok(Checked::new(
        VecSource::new(info, events, Integrity::Checking),
        verdict,
        Box::new(check),
    ))
}
