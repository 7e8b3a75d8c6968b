//! `--bundle FILE`: replay an export bundle fully offline. The verdict is
//! `verify-bundle` of the whole file with the pinned verifier key, run in
//! the background; a finding about an entry names its index.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tracevault_query::export::{BundleReader, RowKey, rows_signed, verify_bundle_with};

use super::{Checked, OpenError, from_entry, set};
use crate::{Integrity, ReplayEvent, SessionInfo, Source, SourceError, TimelineIndex};

/// The index a `verify-bundle` finding names (`entry N: ...`).
fn finding_index(f: &str) -> Option<u64> {
    f.strip_prefix("entry ")?.split(':').next()?.parse().ok()
}

/// One session of a bundle, read a page at a time: the timeline comes from
/// the row keys, each page decodes only its own rows.
pub struct BundleSource {
    reader: BundleReader,
    info: SessionInfo,
    /// The session's rows, in log order.
    keys: Vec<RowKey>,
}

impl Source for BundleSource {
    fn info(&self) -> SessionInfo {
        self.info.clone()
    }
    fn len(&self) -> u64 {
        self.keys.len() as u64
    }
    fn page(&mut self, start: u64, count: usize) -> Result<Vec<ReplayEvent>, SourceError> {
        let keys = &self.keys[crate::page_range(start, count, self.len())?];
        let mut rows: Vec<u64> = keys.iter().map(|k| k.row).collect();
        rows.sort_unstable();
        let decoded = self
            .reader
            .rows(&rows)
            .map_err(|e| SourceError::Data(e.to_string()))?;
        let mut by_row: std::collections::HashMap<u64, _> = rows.into_iter().zip(decoded).collect();
        keys.iter()
            .map(|k| {
                let (e, leaf) = by_row
                    .remove(&k.row)
                    .ok_or_else(|| SourceError::Data(format!("row {} not read", k.row)))?;
                let mut r = from_entry(&e);
                r.leaf_hash = hex::encode(leaf);
                r.masked = self.reader.withheld(k.row, k.idx);
                if self.reader.erased(k.row, k.idx) {
                    r.content = Some(crate::sources::ERASED.to_string());
                    r.content_type = "text".into();
                    r.attributes = Some(crate::sources::ERASED.to_string());
                }
                Ok(r)
            })
            .collect()
    }
    fn index(&mut self) -> Result<TimelineIndex, SourceError> {
        let mut index = TimelineIndex::new();
        for k in &self.keys {
            index.push(&ReplayEvent::timeline_only(
                k.idx,
                k.session_seq,
                &k.kind,
                k.ts,
                k.received_at,
            ));
        }
        Ok(index)
    }
    fn integrity(&mut self) -> Integrity {
        Integrity::Checking
    }
}

/// Opens session `session` (default: the bundle's only session) of the
/// bundle at `file`; `key` is the namespace's C2SP verifier key. Only the
/// row keys are read now; rows are decoded as they are shown.
pub fn open(
    file: &Path,
    session: Option<&str>,
    key: Option<String>,
    witnesses: Option<tracevault_vault::cosignature::WitnessPolicy>,
) -> Result<Checked<BundleSource>, OpenError> {
    let bytes = Bytes::from(
        std::fs::read(file).map_err(|e| OpenError::Refused(format!("{}: {e}", file.display())))?,
    );
    // With a key, no row is decoded from a file the key did not sign for
    // (a crafted Parquet file of a few KB can ask for gigabytes). Without
    // one nothing can be authenticated: check such a bundle with
    // `verify-bundle` first.
    if let Some(k) = &key
        && !rows_signed(&bytes, k)?
    {
        return Err(OpenError::Refused(
            "the bundle's rows are not the ones the log key signed for (manifest signature or events.parquet hash); run verify-bundle for the findings".into(),
        ));
    }
    let reader = BundleReader::open(bytes.clone())?;
    let all = reader.keys()?;
    let session = match session {
        Some(s) => s.to_string(),
        None => {
            let mut ids: Vec<&str> = all.iter().map(|k| k.session_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            match ids.as_slice() {
                [one] => one.to_string(),
                _ => {
                    return Err(OpenError::Refused(format!(
                        "the bundle holds {} sessions; pick one with --session",
                        ids.len()
                    )));
                }
            }
        }
    };
    let mut keys: Vec<RowKey> = all
        .into_iter()
        .filter(|k| k.session_id == session)
        .collect();
    keys.sort_by_key(|k| k.idx);
    keys.dedup_by_key(|k| k.idx);
    if keys.is_empty() {
        return Err(OpenError::Refused(format!(
            "no event of session {session} in the bundle"
        )));
    }
    let shown: std::collections::BTreeSet<u64> = keys.iter().map(|k| k.idx).collect();
    let time = |k: &RowKey| k.ts.unwrap_or(k.received_at);
    let info = SessionInfo {
        session_id: session,
        namespace: reader.ns().to_string(),
        event_count: keys.len() as u64,
        first_us: keys.first().map(time),
        last_us: keys.last().map(time),
        origin: format!("bundle {} (export {})", file.display(), reader.export_id()),
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
        let verdict = match verify_bundle_with(&bytes, &key, witnesses.as_ref(), &mut |_, _| {}) {
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
        BundleSource { reader, info, keys },
        verdict,
        Box::new(check),
    ))
}
