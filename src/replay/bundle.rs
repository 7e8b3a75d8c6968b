//! `--bundle FILE`: replay an export bundle fully offline. The verdict is
//! `verify-bundle` of the whole file with the pinned verifier key, run in
//! the background; a finding about an entry names its index.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tracevault_query::export::{read_bundle_rows, verify_bundle};
use tracevault_replay::{Integrity, SessionInfo, VecSource};

use super::{Checked, from_entry, set};

/// The index a `verify-bundle` finding names (`entry N: ...`).
fn finding_index(f: &str) -> Option<u64> {
    f.strip_prefix("entry ")?.split(':').next()?.parse().ok()
}

/// Opens session `session` (default: the bundle's only session) of the
/// bundle at `file`; `key` is the namespace's C2SP verifier key.
pub fn open(file: &Path, session: Option<&str>, key: Option<String>) -> anyhow::Result<Checked> {
    let bytes = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let b = read_bundle_rows(&bytes)?;
    let session = match session {
        Some(s) => s.to_string(),
        None => {
            let mut all: Vec<&str> = b.rows.iter().map(|(e, _)| e.session_id.as_str()).collect();
            all.sort_unstable();
            all.dedup();
            match all.as_slice() {
                [one] => one.to_string(),
                _ => anyhow::bail!(
                    "the bundle holds {} sessions; pick one with --session",
                    all.len()
                ),
            }
        }
    };
    let mut events: Vec<_> = b
        .rows
        .iter()
        .filter(|(e, _)| e.session_id == session)
        .map(|(e, leaf)| {
            let mut r = from_entry(e);
            r.leaf_hash = hex::encode(leaf);
            r.masked = b.withheld.get(&e.idx).cloned().unwrap_or_default();
            r
        })
        .collect();
    events.sort_by_key(|e| e.idx);
    anyhow::ensure!(
        !events.is_empty(),
        "no event of session {session} in the bundle"
    );
    let shown: std::collections::BTreeSet<u64> = events.iter().map(|e| e.idx).collect();
    let info = SessionInfo {
        session_id: session,
        namespace: b.ns.clone(),
        origin: format!("bundle {} (export {})", file.display(), b.export_id),
        ..SessionInfo::default()
    };
    let verdict = Arc::new(Mutex::new(Integrity::Checking));
    let v = verdict.clone();
    let check = move || {
        let Some(key) = key else {
            return set(
                &v,
                Integrity::Unverified {
                    reason: "no --key: pass the namespace's verifier key to check the bundle"
                        .into(),
                },
            );
        };
        let verdict = match verify_bundle(&bytes, &key, &mut |_, _| {}) {
            Err(e) => Integrity::Failed {
                index: None,
                reason: e.to_string(),
            },
            Ok(r) if r.findings.is_empty() => Integrity::Verified {
                checkpoint_size: r.size,
                events_checked: shown.len() as u64,
            },
            Ok(r) => {
                let first = r
                    .findings
                    .iter()
                    .find(|f| finding_index(f).is_some_and(|i| shown.contains(&i)))
                    .or(r.findings.first())
                    .cloned()
                    .unwrap_or_default();
                Integrity::Failed {
                    index: finding_index(&first),
                    reason: format!("{first} ({} findings)", r.findings.len()),
                }
            }
        };
        set(&v, verdict);
    };
    Ok(Checked::new(
        VecSource::new(info, events, Integrity::Checking),
        verdict,
        Box::new(check),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn findings_name_their_entry() {
        assert_eq!(
            super::finding_index("entry 42: row differs from its committed record in content"),
            Some(42)
        );
        assert_eq!(
            super::finding_index("manifest.sig: not a valid signature"),
            None
        );
    }
}
