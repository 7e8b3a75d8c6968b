//! `--data DIR`: an operator on the box replays from the store directly
//! (unmasked; it does not need the server, nor its lock). The verdict is
//! `tracevault verify` of the namespace, run in the background: any finding
//! fails the badge, naming the index it concerns.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::{Integrity, ReplayEvent, SessionInfo, Source, SourceError, TimelineIndex};
use bytes::Bytes;
use tracevault_vault::verify::VerifyOptions;
use tracevault_vault::{LogReader, SegmentObject, Store, segment};

use super::{Checked, OpenError, from_entry, set};

/// Opens session `session` of namespace `ns` (default: the only namespace)
/// in the store of data directory `dir`. `key` is the log key (base64 or C2SP verifier key).
pub fn open(
    dir: &Path,
    ns: Option<&str>,
    session: &str,
    key: Option<&str>,
    witnesses: Option<tracevault_vault::cosignature::WitnessPolicy>,
) -> Result<Checked<DataSource>, OpenError> {
    let root = dir.join("store");
    if !root.is_dir() {
        return Err(OpenError::Refused(format!(
            "{} has no store directory",
            dir.display()
        )));
    }
    let pinned = key
        .map(|k| {
            let (_, b) = tracevault_vault::note::parse_log_key(k)
                .map_err(|e| OpenError::Refused(format!("--key: {e}")))?;
            ed25519_dalek::VerifyingKey::from_bytes(&b)
                .map_err(|e| OpenError::Refused(format!("--key: {e}")))
        })
        .transpose()?;
    let store = Store::local(&root).map_err(|e| OpenError::Refused(e.to_string()))?;
    let reader = LogReader::new(store);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ns = match ns {
        Some(n) => n.to_string(),
        None => {
            let all: Vec<String> = rt
                .block_on(reader.namespaces())?
                .into_iter()
                .filter(|n| !n.starts_with('_'))
                .collect();
            match all.as_slice() {
                [one] => one.clone(),
                _ => {
                    return Err(OpenError::Refused(format!(
                        "--ns is needed: the store holds namespaces {all:?}"
                    )));
                }
            }
        }
    };
    tracevault_vault::validate_namespace(&ns, true)?;
    // The session's keys (index, seq, kind, times) from each segment; rows
    // are decoded page by page later.
    let (segments, keys) = rt.block_on(reader.session_keys(&ns, session))?;
    if keys.is_empty() {
        return Err(OpenError::Refused(format!(
            "no event of session {session} in namespace {ns} (published segments only)"
        )));
    }
    let indices: std::collections::BTreeSet<u64> = keys.iter().map(|(k, _)| k.idx).collect();
    let time = |k: &segment::SessionKey| k.ts.unwrap_or(k.received_at);
    let info = SessionInfo {
        session_id: session.to_string(),
        namespace: ns.clone(),
        event_count: keys.len() as u64,
        first_us: keys.first().map(|(k, _)| time(k)),
        last_us: keys.last().map(|(k, _)| time(k)),
        origin: format!("data {}", dir.display()),
    };
    let source = DataSource {
        rt: Arc::new(rt),
        reader: reader.clone(),
        ns: ns.clone(),
        info: info.clone(),
        segments,
        keys,
        cached: None,
    };
    let rt = source.rt.clone();
    let verdict = Arc::new(Mutex::new(Integrity::Checking));
    let v = verdict.clone();
    let check = move || {
        let opts = VerifyOptions {
            pinned_key: pinned,
            namespace: Some(ns.clone()),
            witnesses: witnesses.clone(),
            concurrency: 4,
            ..VerifyOptions::default()
        };
        let report = match rt.block_on(reader.verify(&opts)) {
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
    Ok(Checked::new(source, verdict, Box::new(check)))
}

/// One session of a store, read a page at a time: the timeline comes from
/// the keys read at open, a page decodes only its rows of the segments
/// holding them (the last segment read is kept for the next page).
pub struct DataSource {
    rt: Arc<tokio::runtime::Runtime>,
    reader: LogReader,
    ns: String,
    info: SessionInfo,
    /// The segments covering the log.
    segments: Vec<SegmentObject>,
    /// The session's keys in log order, with the segment holding each.
    keys: Vec<(segment::SessionKey, u32)>,
    cached: Option<(u32, Bytes)>,
}

impl DataSource {
    fn segment(&mut self, s: u32) -> Result<Bytes, SourceError> {
        if let Some((c, b)) = &self.cached
            && *c == s
        {
            return Ok(b.clone());
        }
        let b = self
            .rt
            .block_on(
                self.reader
                    .segment_bytes(&self.ns, &self.segments[s as usize]),
            )
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        self.cached = Some((s, b.clone()));
        Ok(b)
    }
}

impl Source for DataSource {
    fn info(&self) -> SessionInfo {
        self.info.clone()
    }
    fn len(&self) -> u64 {
        self.keys.len() as u64
    }
    fn page(&mut self, start: u64, count: usize) -> Result<Vec<ReplayEvent>, SourceError> {
        let keys: Vec<(u64, u32)> = self.keys[crate::page_range(start, count, self.len())?]
            .iter()
            .map(|(k, s)| (k.idx, *s))
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        // Keys are in log order, so each segment's share is one run.
        for run in keys.chunk_by(|a, b| a.1 == b.1) {
            let s = run[0].1;
            let bytes = self.segment(s)?;
            let wanted: Vec<u64> = run.iter().map(|(i, _)| *i).collect();
            let rows = LogReader::entries_in(&self.segments[s as usize], bytes, &wanted)
                .map_err(|e| SourceError::Data(e.to_string()))?;
            out.extend(rows.iter().map(from_entry));
        }
        Ok(out)
    }
    fn index(&mut self) -> Result<TimelineIndex, SourceError> {
        let mut index = TimelineIndex::new();
        for (k, _) in &self.keys {
            index.push(&ReplayEvent::timeline_only(
                k.idx,
                k.session_seq,
                k.kind.as_str(),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tracevault_schemas::Event;
    use tracevault_vault::{LogConfig, Vault, VaultOptions};

    use super::*;

    /// A store whose session `s` is spread over three segments, between
    /// events of another session.
    fn seeded(dir: &Path) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let vault = Vault::open(VaultOptions {
                data_dir: dir.to_path_buf(),
                store: None,
                origin: None,
                log: LogConfig {
                    flush_interval_ms: 20,
                    ..LogConfig::default()
                },
            })
            .await
            .unwrap();
            for round in 0..3u64 {
                let events = (0..10u64)
                    .map(|i| {
                        let sid = if i % 2 == 0 { "s" } else { "other" };
                        Event::from_value(serde_json::json!({"session_id": sid,
                            "kind": "output", "content": format!("r{round} e{i}")}))
                        .unwrap()
                    })
                    .collect();
                vault.append("n", events, "w").await.unwrap();
                let log = vault.log("n").await.unwrap();
                let published = log.wait_published(10 * (round + 1), Duration::from_secs(10));
                assert!(published.await.is_some());
            }
            vault.shutdown(Duration::from_secs(10)).await;
        });
    }

    #[test]
    fn pages_read_only_the_session_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        seeded(dir.path());
        let segs = std::fs::read_dir(dir.path().join("store/ns/n/segments"))
            .unwrap()
            .count();
        assert!(segs >= 3, "{segs} segments");
        let mut src = open(dir.path(), Some("n"), "s", None, None).unwrap();
        assert_eq!(src.len(), 15);
        let want: Vec<u64> = (0..30).filter(|i| i % 2 == 0).collect();
        let all: Vec<u64> = src.page(0, 100).unwrap().iter().map(|e| e.idx).collect();
        assert_eq!(all, want);
        // A page across a segment boundary, content and seq as stored.
        let page = src.page(4, 3).unwrap();
        let got: Vec<(u64, u64, &str)> = page
            .iter()
            .map(|e| (e.idx, e.session_seq, e.content.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![(8, 4, "r0 e8"), (10, 5, "r1 e0"), (12, 6, "r1 e2")]
        );
        assert_eq!(src.index().unwrap().len(), 15);
        assert!(matches!(
            src.page(15, 1),
            Err(SourceError::OutOfRange { start: 15, len: 15 })
        ));
        assert!(open(dir.path(), Some("n"), "nobody", None, None).is_err());
    }
}
