//! Retention (config `[retention]`, docs/erasure.md): per namespace,
//! `payload_retention` erases the payloads of entries older than it,
//! automatically, one order per run recorded in `_audit` before anything
//! changes; `min_retention` refuses erasure requests over younger entries
//! unless they say `override_min_retention`. The log's skeleton (records
//! with digests, tiles, checkpoints) is never removed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use tracevault_vault::erasure::{IndexRanges, Step};

use super::{ErasureContext, commit, now};
use crate::AppState;

/// One namespace's settings (`[retention]` or `[retention.namespaces.NAME]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionRule {
    /// Erase payloads older than this (`"30d"`, `"12h"`, `"90m"`, `"3600s"`).
    pub payload_retention: Option<String>,
    /// Never erase entries younger than this, except by an order that
    /// overrides it.
    pub min_retention: Option<String>,
}

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Defaults for every namespace.
    pub payload_retention: Option<String>,
    /// Default `min_retention`.
    pub min_retention: Option<String>,
    /// Seconds between retention runs.
    pub check_interval_s: u64,
    /// Most entries one run erases per namespace (the next run goes on).
    pub max_entries_per_run: u64,
    /// Per-namespace overrides.
    pub namespaces: BTreeMap<String, RetentionRule>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            payload_retention: None,
            min_retention: None,
            check_interval_s: 3600,
            max_entries_per_run: 1_000_000,
            namespaces: BTreeMap::new(),
        }
    }
}

/// Parses `"<n><unit>"` with unit `s`, `m`, `h` or `d` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| {
        format!("{s:?} is not a duration like \"30d\", \"12h\", \"90m\" or \"3600s\"")
    })?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{s:?}: the unit is s, m, h or d (\"30d\", \"12h\", \"90m\", \"3600s\")"
            ));
        }
    };
    n.checked_mul(mul)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?} must be positive and not absurdly large"))
}

impl RetentionConfig {
    /// `payload_retention` of `ns` in seconds.
    pub fn payload_retention_s(&self, ns: &str) -> Option<u64> {
        self.namespaces
            .get(ns)
            .and_then(|r| r.payload_retention.as_ref())
            .or(self.payload_retention.as_ref())
            .and_then(|s| parse_duration(s).ok())
    }

    /// `min_retention` of `ns` in seconds.
    pub fn min_retention_s(&self, ns: &str) -> Option<u64> {
        self.namespaces
            .get(ns)
            .and_then(|r| r.min_retention.as_ref())
            .or(self.min_retention.as_ref())
            .and_then(|s| parse_duration(s).ok())
    }

    /// Whether any namespace has a `payload_retention`.
    pub fn enabled(&self) -> bool {
        self.payload_retention.is_some()
            || self
                .namespaces
                .values()
                .any(|r| r.payload_retention.is_some())
    }

    /// Refuses settings that do not parse, and a payload retention shorter
    /// than the minimum retention (they would contradict each other).
    pub fn check(&self) -> Result<(), String> {
        let mut rules: Vec<(String, RetentionRule)> = vec![(
            "[retention]".into(),
            RetentionRule {
                payload_retention: self.payload_retention.clone(),
                min_retention: self.min_retention.clone(),
            },
        )];
        for (ns, r) in &self.namespaces {
            tracevault_vault::validate_namespace(ns, false)
                .map_err(|e| format!("[retention.namespaces.{ns}]: {e}"))?;
            rules.push((format!("[retention.namespaces.{ns}]"), r.clone()));
        }
        for (at, r) in &rules {
            for v in [&r.payload_retention, &r.min_retention]
                .into_iter()
                .flatten()
            {
                parse_duration(v).map_err(|e| format!("{at}: {e}"))?;
            }
        }
        let mut names: Vec<&str> = self.namespaces.keys().map(String::as_str).collect();
        names.push("");
        for ns in names {
            if let (Some(p), Some(m)) = (self.payload_retention_s(ns), self.min_retention_s(ns))
                && p < m
            {
                return Err(format!(
                    "[retention]: payload_retention ({p} s) is shorter than min_retention ({m} s){}",
                    if ns.is_empty() {
                        String::new()
                    } else {
                        format!(" for namespace {ns}")
                    }
                ));
            }
        }
        if self.max_entries_per_run == 0 {
            return Err("[retention] max_entries_per_run must be at least 1".into());
        }
        Ok(())
    }
}

/// The first index in `lo..hi` whose entry was received at or after
/// `cutoff_us` (`hi` if none): `received_at` never decreases along a log.
async fn first_at_or_after(
    st: &AppState,
    ns: &str,
    mut lo: u64,
    mut hi: u64,
    cutoff_us: i64,
) -> Result<u64, String> {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let e = st
            .vault
            .entry(ns, mid)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("entry {mid} of {ns} is missing"))?;
        if e.received_at < cutoff_us {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// One retention round: for every namespace with a `payload_retention`,
/// records (and leaves to the runner to perform) an order for the entries
/// received before the cutoff that no earlier retention run took.
pub(super) async fn run(st: &AppState, ec: &Arc<ErasureContext>) {
    // Decided in one place: where `_audit` is written, caught up with it.
    match crate::audit::holder(&st.vault).await {
        Ok(None) => {}
        Ok(Some(_)) => return,
        Err(e) => {
            tracing::warn!("retention: {}", e.message);
            return;
        }
    }
    if let Err(e) = ec.follow(&st.vault).await {
        tracing::warn!("retention: catching up with _audit: {e}");
        return;
    }
    let namespaces = match st.vault.namespaces().await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("retention: listing namespaces: {e}");
            return;
        }
    };
    for info in namespaces {
        let ns = info.ns;
        if ns.starts_with('_') {
            continue;
        }
        let Some(keep_s) = ec.retention.payload_retention_s(&ns) else {
            continue;
        };
        let size = match st.vault.view(&ns).await {
            Ok(Some(v)) => v.latest_checkpoint().map_or(0, |c| c.0),
            _ => continue,
        };
        // Where the last retention run of `ns` stopped; none while one is
        // still to perform (orders never pile up behind a failing one).
        let from = {
            let o = ec.orders.lock().await;
            if o.all()
                .any(|o| o.ns == ns && o.requester.is_none() && o.performed.is_none())
            {
                continue;
            }
            o.all()
                .filter(|o| o.ns == ns && o.requester.is_none())
                .filter_map(|o| o.indices.max())
                .max()
                .map_or(0, |m| m + 1)
        };
        if from >= size {
            continue;
        }
        let cutoff_us =
            chrono::Utc::now().timestamp_micros() - (keep_s as i64).saturating_mul(1_000_000);
        let hi = size.min(from.saturating_add(ec.retention.max_entries_per_run));
        let end = match first_at_or_after(st, &ns, from, hi, cutoff_us).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(ns, "retention: {e}");
                continue;
            }
        };
        if end == from {
            continue;
        }
        let mut id = [0u8; 12];
        if tracevault_vault::keys::random_bytes(&mut id).is_err() {
            continue;
        }
        let step = Step::Retention {
            id: format!("retention-{}", hex::encode(id)),
            ns: ns.clone(),
            cutoff_us,
            payload_retention_s: keep_s,
            indices: IndexRanges::span(from, end - 1),
            at: now(),
        };
        match commit(st, ec, None, step).await {
            Ok(()) => tracing::info!(ns, first = from, last = end - 1, "retention order recorded"),
            Err(e) => tracing::warn!(ns, "retention: recording the order: {}", e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rules() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("3600s"), Ok(3600));
        for bad in ["", "30", "d", "-1d", "1w", "0s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let mut c = RetentionConfig {
            payload_retention: Some("30d".into()),
            min_retention: Some("7d".into()),
            ..Default::default()
        };
        c.namespaces.insert(
            "prod".into(),
            RetentionRule {
                payload_retention: Some("365d".into()),
                min_retention: Some("180d".into()),
            },
        );
        c.check().unwrap();
        assert_eq!(c.payload_retention_s("dev"), Some(30 * 86_400));
        assert_eq!(c.min_retention_s("prod"), Some(180 * 86_400));
        c.namespaces.get_mut("prod").unwrap().payload_retention = Some("90d".into());
        assert!(
            c.check()
                .unwrap_err()
                .contains("shorter than min_retention")
        );
    }
}
