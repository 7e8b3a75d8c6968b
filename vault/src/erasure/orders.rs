//! Erasure orders as a state machine over steps recorded in `_audit`
//! (session [`ERASURES_SESSION`]). The server checks a step, records it,
//! then applies it; at start-up it replays the session; `verify` replays it
//! too, to tell an erasure from a removal. Replay applies the same rules as
//! the check (the requester never approves, one person counts once, nothing
//! after a deny or past the request's time to live), so a step recorded
//! against the rules never counts.
//!
//! A request freezes the exact list of indices it erases, and is recorded
//! before anything changes; retention runs record a [`Step::Retention`]
//! order that needs no approval (its rule is the configuration).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::IndexRanges;
use crate::approval::{Actor, Refusal, RefusalKind, approval_counts, check_decision, refuse};

/// The `_audit` session holding every erasure step.
pub const ERASURES_SESSION: &str = "erasures";

/// Most ranges one order may list (a time range is one; a selection of
/// scattered entries is one per entry): about 6 MB of `_audit` content.
pub const MAX_ORDER_RANGES: usize = 250_000;

/// Settings of the approval workflow (config `[erasure]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErasurePolicy {
    /// Distinct approvers needed, never counting the requester.
    pub approvals_required: usize,
    /// A request not decided within this many seconds expires.
    pub request_ttl_s: i64,
}

impl Default for ErasurePolicy {
    fn default() -> Self {
        ErasurePolicy {
            approvals_required: 1,
            request_ttl_s: 7 * 24 * 3600,
        }
    }
}

impl ErasurePolicy {
    /// Refuses settings that would fail open or never work.
    pub fn check(&self) -> Result<(), String> {
        if self.approvals_required == 0 {
            return Err("[erasure] approvals_required must be at least 1".into());
        }
        if self.request_ttl_s <= 0 {
            return Err("[erasure] request_ttl_s must be positive".into());
        }
        Ok(())
    }
}

/// What a request selects, as asked (the indices are frozen beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// `session_id`, `actor`, `event_id`, `sql` or `time`.
    pub by: String,
    /// The session, actor, event id or SQL text (empty for `time`).
    pub value: String,
    /// `time`: first `received_at` (Unix microseconds, inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_us: Option<i64>,
    /// `time`: end of the range (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_us: Option<i64>,
    /// Checkpoint size the selection was taken below.
    pub size: u64,
}

/// One recorded step (the `content` of its `_audit` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// An admin asked for an erasure.
    Requested {
        /// Order id.
        id: String,
        /// Namespace.
        ns: String,
        /// Who asked.
        by: Actor,
        /// Why (mandatory; e.g. a data subject's request).
        reason: String,
        /// What was asked for.
        selection: Selection,
        /// Exactly the entries the order erases, frozen when asked.
        indices: IndexRanges,
        /// Entries younger than `min_retention` are in the list: allowed
        /// only because the requester said so (docs/erasure.md).
        #[serde(default)]
        override_min_retention: bool,
        /// The policy when asked: later configuration never changes a
        /// recorded request.
        policy: ErasurePolicy,
        /// When (Unix seconds).
        at: i64,
    },
    /// An approver approved.
    Approved {
        /// Order id.
        id: String,
        /// Who.
        by: Actor,
        /// Optional comment.
        comment: String,
        /// When.
        at: i64,
    },
    /// An approver denied (ends the request).
    Denied {
        /// Order id.
        id: String,
        /// Who.
        by: Actor,
        /// Why.
        comment: String,
        /// When.
        at: i64,
    },
    /// The server's retention run: erases the payloads older than the
    /// namespace's `payload_retention`; needs no approval.
    Retention {
        /// Order id.
        id: String,
        /// Namespace.
        ns: String,
        /// Entries received before this (Unix microseconds) were due.
        cutoff_us: i64,
        /// The setting that made them due (seconds).
        payload_retention_s: u64,
        /// Exactly the entries erased.
        indices: IndexRanges,
        /// When.
        at: i64,
    },
    /// The server erased the order's entries from the store.
    Performed {
        /// Order id.
        id: String,
        /// Entries whose payload was removed by this run (the others were
        /// erased already).
        entries: u64,
        /// Segments rewritten.
        segments: u64,
        /// When.
        at: i64,
    },
}

impl Step {
    /// The order this step belongs to.
    pub fn id(&self) -> &str {
        match self {
            Step::Requested { id, .. }
            | Step::Approved { id, .. }
            | Step::Denied { id, .. }
            | Step::Retention { id, .. }
            | Step::Performed { id, .. } => id,
        }
    }

    /// When the step happened.
    pub fn at(&self) -> i64 {
        match self {
            Step::Requested { at, .. }
            | Step::Approved { at, .. }
            | Step::Denied { at, .. }
            | Step::Retention { at, .. }
            | Step::Performed { at, .. } => *at,
        }
    }

    /// The `_audit` event name of this step.
    pub fn event_name(&self) -> &'static str {
        match self {
            Step::Requested { .. } => "erasure_requested",
            Step::Approved { .. } => "erasure_approved",
            Step::Denied { .. } => "erasure_denied",
            Step::Retention { .. } => "erasure_retention",
            Step::Performed { .. } => "erasure_performed",
        }
    }
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for approvals.
    Pending,
    /// Approved (or a retention run): the erasure is due or running.
    Approved,
    /// Erased.
    Performed,
    /// Denied by an approver.
    Denied,
    /// Not decided in time.
    Expired,
}

/// An order and its history.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    /// Order id.
    pub id: String,
    /// Namespace.
    pub ns: String,
    /// Who asked (`None` for a retention run).
    pub requester: Option<Actor>,
    /// Why.
    pub reason: String,
    /// What was asked (`None` for a retention run).
    pub selection: Option<Selection>,
    /// The entries it erases.
    pub indices: IndexRanges,
    /// Whether the requester overrode `min_retention`.
    pub override_min_retention: bool,
    /// Policy at request time.
    pub policy: ErasurePolicy,
    /// When asked.
    pub requested_at: i64,
    /// Approvals so far.
    pub approvals: Vec<(Actor, i64, String)>,
    /// The deny, if any.
    pub denied: Option<(Actor, i64, String)>,
    /// When the order became executable (quorum, or the retention run).
    pub approved_at: Option<i64>,
    /// When it was performed, with the entries and segments it changed.
    pub performed: Option<(i64, u64, u64)>,
    /// The `_audit` indices of its steps, in order (the receipt proves them).
    pub audit_indices: Vec<u64>,
}

/// Every order, rebuilt from the recorded steps.
#[derive(Debug, Default)]
pub struct Orders {
    policy: ErasurePolicy,
    orders: BTreeMap<String, Order>,
    /// The first `_audit` index not applied yet.
    next_audit: u64,
}

impl Orders {
    /// No orders, under `policy`.
    pub fn new(policy: ErasurePolicy) -> Orders {
        Orders {
            policy,
            orders: BTreeMap::new(),
            next_audit: 0,
        }
    }

    /// The policy new requests are made under.
    pub fn policy(&self) -> &ErasurePolicy {
        &self.policy
    }

    /// An order by id.
    pub fn get(&self, id: &str) -> Option<&Order> {
        self.orders.get(id)
    }

    /// Every order, by id.
    pub fn all(&self) -> impl Iterator<Item = &Order> {
        self.orders.values()
    }

    /// The state of `o` at `now`.
    pub fn state(&self, o: &Order, now: i64) -> State {
        if o.denied.is_some() {
            return State::Denied;
        }
        match (o.approved_at, o.performed) {
            (_, Some(_)) if o.approved_at.is_some() => State::Performed,
            (Some(_), _) => State::Approved,
            (None, _) if now > o.requested_at.saturating_add(o.policy.request_ttl_s) => {
                State::Expired
            }
            (None, _) => State::Pending,
        }
    }

    /// Orders approved but not performed (to run, or to resume after a
    /// restart), oldest first.
    pub fn due(&self) -> Vec<&Order> {
        let mut v: Vec<&Order> = self
            .orders
            .values()
            .filter(|o| o.denied.is_none() && o.approved_at.is_some() && o.performed.is_none())
            .collect();
        v.sort_by_key(|o| (o.approved_at, o.id.clone()));
        v
    }

    /// Every index of `ns` an executable order covers: the entries whose
    /// payload may be absent.
    pub fn erasable(&self, ns: &str) -> IndexRanges {
        let mut out = IndexRanges::new();
        for o in self.orders.values() {
            if o.ns == ns && o.denied.is_none() && o.approved_at.is_some() {
                out.union(&o.indices);
            }
        }
        out
    }

    /// Every index of `ns` a performed order erased: entries that must not
    /// hold a payload any more (an erasure undone is a finding).
    pub fn performed(&self, ns: &str) -> IndexRanges {
        let mut out = IndexRanges::new();
        for o in self.orders.values() {
            if o.ns == ns && o.denied.is_none() && o.approved_at.is_some() && o.performed.is_some()
            {
                out.union(&o.indices);
            }
        }
        out
    }

    /// Applies a recorded step, `audit_idx` being its `_audit` index, once:
    /// a step at an index already applied is skipped (steps come in
    /// `_audit` order, as recorded or read back from the store). Steps that
    /// break the rules are ignored (replay is as strict as
    /// [`Orders::check`]).
    pub fn apply(&mut self, step: &Step, audit_idx: u64) {
        if audit_idx < self.next_audit {
            return;
        }
        self.next_audit = audit_idx + 1;
        let state = self.get(step.id()).map(|o| self.state(o, step.at()));
        match step {
            Step::Requested {
                id,
                ns,
                by,
                reason,
                selection,
                indices,
                override_min_retention,
                policy,
                at,
            } => {
                if self.orders.contains_key(id) || policy.check().is_err() {
                    return;
                }
                self.orders.insert(
                    id.clone(),
                    Order {
                        id: id.clone(),
                        ns: ns.clone(),
                        requester: Some(by.clone()),
                        reason: reason.clone(),
                        selection: Some(selection.clone()),
                        indices: indices.clone(),
                        override_min_retention: *override_min_retention,
                        policy: *policy,
                        requested_at: *at,
                        approvals: Vec::new(),
                        denied: None,
                        approved_at: None,
                        performed: None,
                        audit_indices: vec![audit_idx],
                    },
                );
            }
            Step::Retention {
                id,
                ns,
                cutoff_us,
                payload_retention_s,
                indices,
                at,
            } => {
                if self.orders.contains_key(id) {
                    return;
                }
                self.orders.insert(
                    id.clone(),
                    Order {
                        id: id.clone(),
                        ns: ns.clone(),
                        requester: None,
                        reason: format!(
                            "retention: payloads received before {cutoff_us} (payload_retention {payload_retention_s} s)"
                        ),
                        selection: None,
                        indices: indices.clone(),
                        override_min_retention: false,
                        policy: ErasurePolicy::default(),
                        requested_at: *at,
                        approvals: Vec::new(),
                        denied: None,
                        approved_at: Some(*at),
                        performed: None,
                        audit_indices: vec![audit_idx],
                    },
                );
            }
            Step::Approved {
                id,
                by,
                comment,
                at,
            } => {
                if let Some(o) = self.orders.get_mut(id)
                    && state == Some(State::Pending)
                    && o.requester.as_ref().is_some_and(|r| {
                        approval_counts(r, o.approvals.iter().map(|(a, _, _)| a), by)
                    })
                {
                    o.approvals.push((by.clone(), *at, comment.clone()));
                    o.audit_indices.push(audit_idx);
                    if o.approvals.len() >= o.policy.approvals_required.max(1) {
                        o.approved_at = Some(*at);
                    }
                }
            }
            Step::Denied {
                id,
                by,
                comment,
                at,
            } => {
                if let Some(o) = self.orders.get_mut(id)
                    && state == Some(State::Pending)
                    && o.requester.as_ref().is_some_and(|r| !by.same_person(r))
                {
                    o.denied = Some((by.clone(), *at, comment.clone()));
                    o.audit_indices.push(audit_idx);
                }
            }
            Step::Performed {
                id,
                entries,
                segments,
                at,
            } => {
                if let Some(o) = self.orders.get_mut(id)
                    && state == Some(State::Approved)
                {
                    o.performed = Some((*at, *entries, *segments));
                    o.audit_indices.push(audit_idx);
                }
            }
        }
    }

    /// Checks whether `step` may be taken at `now` by an actor whose token
    /// covers the namespaces `ns_allowed` admits (the caller checked the
    /// role: admins request, approvers decide; the server performs and
    /// runs retention).
    pub fn check(
        &self,
        step: &Step,
        ns_allowed: &dyn Fn(&str) -> bool,
        now: i64,
    ) -> Result<(), Refusal> {
        let find = |id: &str| {
            self.orders.get(id).ok_or_else(|| {
                refuse(
                    RefusalKind::NotFound,
                    "no_such_erasure",
                    format!("no erasure {id}"),
                )
            })
        };
        let new_order = |id: &str, ns: &str, indices: &IndexRanges| {
            if self.orders.contains_key(id) {
                return Err(refuse(
                    RefusalKind::Conflict,
                    "duplicate_erasure",
                    format!("erasure {id} exists"),
                ));
            }
            if !ns_allowed(ns) {
                return Err(refuse(
                    RefusalKind::Forbidden,
                    "wrong_namespace",
                    format!("this token does not cover namespace {ns}"),
                ));
            }
            if indices.ranges().len() > MAX_ORDER_RANGES {
                return Err(refuse(
                    RefusalKind::Invalid,
                    "selection_too_large",
                    format!(
                        "the selection is {} separate ranges; one order holds at most {MAX_ORDER_RANGES}",
                        indices.ranges().len()
                    ),
                ));
            }
            Ok(())
        };
        match step {
            Step::Requested {
                id,
                ns,
                reason,
                indices,
                ..
            } => {
                new_order(id, ns, indices)?;
                if reason.trim().is_empty() {
                    return Err(refuse(
                        RefusalKind::Invalid,
                        "reason_required",
                        "an erasure needs a reason",
                    ));
                }
                if indices.is_empty() {
                    return Err(refuse(
                        RefusalKind::Invalid,
                        "empty_selection",
                        "the selection holds no published entry",
                    ));
                }
                Ok(())
            }
            Step::Retention {
                id, ns, indices, ..
            } => new_order(id, ns, indices),
            Step::Approved { id, by, .. } | Step::Denied { id, by, .. } => {
                let o = find(id)?;
                if !ns_allowed(&o.ns) {
                    return Err(refuse(
                        RefusalKind::Forbidden,
                        "wrong_namespace",
                        format!("this token does not decide erasures of {}", o.ns),
                    ));
                }
                let Some(requester) = &o.requester else {
                    return Err(refuse(
                        RefusalKind::Conflict,
                        "not_pending",
                        format!("erasure {id} is a retention run: nothing to decide"),
                    ));
                };
                let state = self.state(o, now);
                let pending = match state {
                    State::Pending => Ok(()),
                    _ => Err(refuse(
                        RefusalKind::Conflict,
                        "not_pending",
                        format!("erasure {id} is {state:?}").to_lowercase(),
                    )),
                };
                check_decision(
                    requester,
                    o.approvals.iter().map(|(a, _, _)| a),
                    by,
                    matches!(step, Step::Approved { .. }),
                    "erasure",
                    pending,
                )?;
                Ok(())
            }
            Step::Performed { id, .. } => {
                let o = find(id)?;
                match self.state(o, now) {
                    State::Approved => Ok(()),
                    s => Err(refuse(
                        RefusalKind::Conflict,
                        "not_approved",
                        format!("erasure {id} is {s:?}").to_lowercase(),
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(s: &str) -> Actor {
        Actor {
            iss: "tv".into(),
            sub: s.into(),
            person: None,
        }
    }

    fn requested(id: &str, by: &str, at: i64, approvals: usize) -> Step {
        Step::Requested {
            id: id.into(),
            ns: "prod".into(),
            by: actor(by),
            reason: "data subject request 7".into(),
            selection: Selection {
                by: "session_id".into(),
                value: "s1".into(),
                from_us: None,
                to_us: None,
                size: 10,
            },
            indices: IndexRanges::from_sorted([2, 3, 5]),
            override_min_retention: false,
            policy: ErasurePolicy {
                approvals_required: approvals,
                request_ttl_s: 100,
            },
            at,
        }
    }

    fn approved(id: &str, by: &str, at: i64) -> Step {
        Step::Approved {
            id: id.into(),
            by: actor(by),
            comment: String::new(),
            at,
        }
    }

    #[test]
    fn two_people_and_the_rules_hold_in_check_and_replay() {
        let all = |_: &str| true;
        let mut o = Orders::new(ErasurePolicy::default());
        let r = requested("e1", "alice", 0, 2);
        o.check(&r, &all, 0).unwrap();
        o.apply(&r, 10);
        // The requester never decides; under another name with the same
        // person neither.
        assert_eq!(
            o.check(&approved("e1", "alice", 1), &all, 1)
                .unwrap_err()
                .code,
            "self_approval"
        );
        // Replay ignores a self-approval that was recorded anyway.
        o.apply(&approved("e1", "alice", 1), 11);
        assert_eq!(o.state(o.get("e1").unwrap(), 1), State::Pending);
        o.apply(&approved("e1", "bob", 2), 12);
        assert_eq!(
            o.check(&approved("e1", "bob", 3), &all, 3)
                .unwrap_err()
                .code,
            "already_approved"
        );
        o.apply(&approved("e1", "bob", 3), 13);
        assert_eq!(o.state(o.get("e1").unwrap(), 3), State::Pending);
        assert!(o.erasable("prod").is_empty(), "one of two approvals");
        // Performing before approval is refused and ignored.
        let perf = Step::Performed {
            id: "e1".into(),
            entries: 3,
            segments: 1,
            at: 4,
        };
        assert_eq!(o.check(&perf, &all, 4).unwrap_err().code, "not_approved");
        o.apply(&approved("e1", "carol", 5), 14);
        assert_eq!(o.state(o.get("e1").unwrap(), 5), State::Approved);
        assert_eq!(o.erasable("prod").ranges(), [(2, 3), (5, 5)]);
        assert!(o.erasable("other").is_empty());
        assert_eq!(o.due().len(), 1);
        o.apply(&perf, 15);
        assert_eq!(o.state(o.get("e1").unwrap(), 6), State::Performed);
        assert_eq!(o.get("e1").unwrap().audit_indices, [10, 12, 14, 15]);
        assert!(o.due().is_empty());
    }

    #[test]
    fn deny_expiry_and_namespaces_end_or_refuse_requests() {
        let all = |_: &str| true;
        let mut o = Orders::new(ErasurePolicy::default());
        o.apply(&requested("e1", "alice", 0, 1), 0);
        o.apply(
            &Step::Denied {
                id: "e1".into(),
                by: actor("bob"),
                comment: "no".into(),
                at: 1,
            },
            1,
        );
        o.apply(&approved("e1", "carol", 2), 2);
        assert_eq!(o.state(o.get("e1").unwrap(), 2), State::Denied);
        assert!(o.erasable("prod").is_empty());
        // Past the TTL an approval is refused, and ignored on replay.
        o.apply(&requested("e2", "alice", 0, 1), 3);
        assert_eq!(
            o.check(&approved("e2", "bob", 101), &all, 101)
                .unwrap_err()
                .code,
            "not_pending"
        );
        o.apply(&approved("e2", "bob", 101), 4);
        assert_eq!(o.state(o.get("e2").unwrap(), 101), State::Expired);
        // A token of another namespace.
        let only_dev = |ns: &str| ns == "dev";
        assert_eq!(
            o.check(&requested("e3", "alice", 0, 1), &only_dev, 0)
                .unwrap_err()
                .code,
            "wrong_namespace"
        );
        // Retention needs no approval and cannot be decided.
        let ret = Step::Retention {
            id: "r1".into(),
            ns: "prod".into(),
            cutoff_us: 5,
            payload_retention_s: 60,
            indices: IndexRanges::from_sorted(0..4),
            at: 9,
        };
        o.apply(&ret, 5);
        assert_eq!(o.erasable("prod").ranges(), [(0, 3)]);
        assert_eq!(
            o.check(&approved("r1", "bob", 10), &all, 10)
                .unwrap_err()
                .code,
            "not_pending"
        );
    }
}
