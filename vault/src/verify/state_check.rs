//! Session-state snapshots against the state rebuilt from the entries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;

use super::segment_check::MAX_PER_SEGMENT;
use super::segment_check::SessionFacts;
use super::{Finding, Report, VerifyError};
use crate::record::Hash;
use crate::store::{Store, layout};
use crate::tiles::TileBuilder;

/// The session-state snapshots of a namespace against the state rebuilt
/// from its entries: each must say exactly the root, chain, newest
/// `received_at` and session counters of the entries under its size. One
/// with a lowered counter would make the writer reuse a `session_seq`.
/// (Incremental runs do not know the sessions under the pin: they only
/// check the snapshots' signatures.)
pub(super) struct StateCheck {
    /// Snapshots not yet checked, by size.
    pending: BTreeMap<u64, (String, crate::session_state::SessionState)>,
    sessions: HashMap<Arc<str>, u64>,
    last_received: i64,
    chain: Hash,
    active: bool,
    /// session_seq findings so far (reported up to a cap).
    seq_findings: usize,
}

impl StateCheck {
    pub(super) async fn list(
        store: &Store,
        ns: &str,
        origin: &str,
        key: &VerifyingKey,
        active: bool,
        report: &mut Report,
    ) -> Result<StateCheck, VerifyError> {
        let prefix = layout::states(ns);
        let mut pending = BTreeMap::new();
        for name in store.list_names(&prefix).await? {
            let object = format!("{prefix}/{name}");
            let find = |message: String| Finding {
                ns: ns.into(),
                object: object.clone(),
                index: None,
                message,
            };
            let Some(size) = crate::session_state::parse_state_name(&name) else {
                report.findings.push(find(
                    "unexpected object among session-state snapshots".into(),
                ));
                continue;
            };
            let Some(bytes) = store.get(&layout::state_at(ns, size)).await? else {
                continue; // superseded and removed meanwhile
            };
            match crate::session_state::SessionState::open(&bytes, origin, size, key) {
                Ok(st) => {
                    pending.insert(size, (object, st));
                }
                Err(e) => report.findings.push(find(format!(
                    "session-state snapshot does not verify (forged or altered): {e}"
                ))),
            }
        }
        Ok(StateCheck {
            pending,
            sessions: Default::default(),
            last_received: 0,
            chain: [0; 32],
            active,
            seq_findings: 0,
        })
    }

    pub(super) fn push(
        &mut self,
        ns: &str,
        idx: u64,
        chain: &Hash,
        row: &SessionFacts,
        report: &mut Report,
    ) {
        if !self.active {
            return;
        }
        // (A shared id: cloning it allocates nothing.)
        let next = self.sessions.entry(row.session_id.clone()).or_insert(0);
        // The writer numbers each session 0, 1, 2, ...: a gap or a repeat
        // is an entry dropped, or a number handed out twice (as a lowered
        // counter in a snapshot would make it).
        if row.session_seq != *next {
            if self.seq_findings < MAX_PER_SEGMENT {
                report.findings.push(Finding {
                    ns: ns.into(),
                    object: format!("session {:?}", row.session_id),
                    index: Some(idx),
                    message: format!(
                        "session_seq {} where {} was next (entry dropped, or a number handed out twice)",
                        row.session_seq, *next
                    ),
                });
            }
            self.seq_findings += 1;
        }
        *next = (*next).max(row.session_seq.saturating_add(1));
        self.last_received = self.last_received.max(row.received_at);
        self.chain = *chain;
    }

    pub(super) fn check_at(
        &mut self,
        ns: &str,
        size: u64,
        tree: &TileBuilder,
        report: &mut Report,
    ) {
        if !self.active {
            return;
        }
        let Some((object, st)) = self.pending.remove(&size) else {
            return;
        };
        let mut wrong = Vec::new();
        if st.root != tree.root() {
            wrong.push("root");
        }
        if st.chain != self.chain {
            wrong.push("chain");
        }
        if st.last_received != self.last_received {
            wrong.push("last received_at");
        }
        let mut sessions: Vec<(&str, u64)> =
            self.sessions.iter().map(|(s, n)| (&**s, *n)).collect();
        sessions.sort();
        if st.sessions.len() != sessions.len()
            || st
                .sessions
                .iter()
                .zip(&sessions)
                .any(|(a, b)| (a.0.as_str(), a.1) != *b)
        {
            wrong.push("session counters");
        }
        if !wrong.is_empty() {
            report.findings.push(Finding {
                ns: ns.into(),
                object,
                index: None,
                message: format!(
                    "session-state snapshot differs from the entries under size {size} ({})",
                    wrong.join(", ")
                ),
            });
        }
    }

    pub(super) fn finish(self, ns: &str, size: u64, report: &mut Report) {
        if !self.active {
            return;
        }
        if self.seq_findings > MAX_PER_SEGMENT {
            report.findings.push(Finding {
                ns: ns.into(),
                object: "sessions".into(),
                index: None,
                message: format!(
                    "... and {} more session_seq problems",
                    self.seq_findings - MAX_PER_SEGMENT
                ),
            });
        }
        for (s, (object, _)) in self.pending {
            report.findings.push(Finding {
                ns: ns.into(),
                object,
                index: Some(size),
                message: format!(
                    "session-state snapshot covers {s} entries but the store holds only {size}"
                ),
            });
        }
    }
}
