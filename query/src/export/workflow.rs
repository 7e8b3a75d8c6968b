//! The export approval workflow as a state machine over recorded
//! transitions (`docs/exports.md`). The server records every transition in
//! `_audit` first and then applies it here; at start-up it replays them, so
//! the state is always what the tamper-evident history says, and the
//! history never expires.
//!
//! Decisions fail closed: the requester never approves its own request, one
//! identity never counts twice, a single deny ends a request, approvals and
//! downloads are only possible inside their windows.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Workflow settings (config `[exports]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportPolicy {
    /// Distinct approvers needed (N of the approvers of the namespace).
    pub approvals_required: usize,
    /// A request not decided within this many seconds expires.
    pub request_ttl_s: i64,
    /// Downloads are possible this long after the approval that completed
    /// the quorum.
    pub download_window_s: i64,
    /// Downloads allowed (default 1: a bundle leaves once).
    pub downloads: u32,
    /// Every step needs a token naming its person (`person` claim of the
    /// vault's tokens, `identity_claim` of an external issuer), so that one
    /// person can never be two identities through two issuers. Off by
    /// default: then tokens that name no person are told apart by
    /// (`iss`, `sub`) only.
    pub require_person: bool,
}

impl ExportPolicy {
    /// Refuses settings that could never work or would fail open.
    pub fn check(&self) -> Result<(), String> {
        if self.approvals_required == 0 {
            return Err("[exports] approvals_required must be at least 1".into());
        }
        if self.downloads == 0 {
            return Err("[exports] downloads must be at least 1".into());
        }
        if self.request_ttl_s <= 0 || self.download_window_s <= 0 {
            return Err("[exports] request_ttl_s and download_window_s must be positive".into());
        }
        Ok(())
    }
}

impl Default for ExportPolicy {
    fn default() -> Self {
        ExportPolicy {
            approvals_required: 1,
            request_ttl_s: 7 * 24 * 3600,
            download_window_s: 24 * 3600,
            downloads: 1,
            require_person: false,
        }
    }
}

pub use tracevault_vault::approval::{Actor, Refusal, RefusalKind, refuse};
use tracevault_vault::approval::{approval_counts, check_decision};

/// What a request exports, frozen when it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// `sql` or `session`.
    pub by: String,
    /// The SQL text or the session id.
    pub value: String,
    /// Checkpoint size the selection was taken against.
    pub size: u64,
    /// Rows selected.
    pub rows: u64,
    /// SHA-256 (hex) of the sorted `(idx, leaf_hash)` list.
    pub digest: String,
    /// The requester's window (Unix microseconds of `received_at`).
    pub from_us: Option<i64>,
    /// Window end.
    pub to_us: Option<i64>,
}

/// One recorded step of a request's life (the `content` of its `_audit` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Transition {
    /// A reader asked.
    Requested {
        /// Export id.
        id: String,
        /// Namespace.
        ns: String,
        /// Who asked.
        by: Actor,
        /// Why (mandatory).
        reason: String,
        /// What, frozen.
        selection: Selection,
        /// The masking profile the requester's rows were selected under;
        /// the bundle is masked the same way or not made.
        profile: String,
        /// The policy in force when asked: later changes to the
        /// configuration never re-open or shorten a recorded request.
        policy: ExportPolicy,
        /// When (Unix seconds).
        at: i64,
    },
    /// An approver approved.
    Approved {
        /// Export id.
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
        /// Export id.
        id: String,
        /// Who.
        by: Actor,
        /// Why.
        comment: String,
        /// When.
        at: i64,
    },
    /// The requester downloaded the bundle.
    Downloaded {
        /// Export id.
        id: String,
        /// Who.
        by: Actor,
        /// When.
        at: i64,
    },
    /// The server found the request past its request TTL or download
    /// window and recorded it, so the end of a request is in the history
    /// too, not only derivable from the clock.
    Expired {
        /// Export id.
        id: String,
        /// What expired: `pending` (never decided) or `approved` (never
        /// downloaded in the window).
        from: State,
        /// When the server recorded it.
        at: i64,
    },
}

/// When a step happened.
fn t_at(t: &Transition) -> i64 {
    match t {
        Transition::Requested { at, .. }
        | Transition::Approved { at, .. }
        | Transition::Denied { at, .. }
        | Transition::Downloaded { at, .. }
        | Transition::Expired { at, .. } => *at,
    }
}

impl Transition {
    /// The export this step belongs to.
    pub fn id(&self) -> &str {
        match self {
            Transition::Requested { id, .. }
            | Transition::Approved { id, .. }
            | Transition::Denied { id, .. }
            | Transition::Downloaded { id, .. }
            | Transition::Expired { id, .. } => id,
        }
    }

    /// The `_audit` event name of this step.
    pub fn event_name(&self) -> &'static str {
        match self {
            Transition::Requested { .. } => "export_requested",
            Transition::Approved { .. } => "export_approved",
            Transition::Denied { .. } => "export_denied",
            Transition::Downloaded { .. } => "export_downloaded",
            Transition::Expired { .. } => "export_expired",
        }
    }
}

/// Where a request stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for approvals.
    Pending,
    /// Approved; downloadable within the window.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Not decided in time, or not downloaded in time.
    Expired,
    /// Downloaded as often as allowed.
    Downloaded,
}

/// A request and its history.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    /// Export id.
    pub id: String,
    /// Namespace.
    pub ns: String,
    /// Who asked.
    pub requester: Actor,
    /// Why.
    pub reason: String,
    /// What.
    pub selection: Selection,
    /// Masking profile at request time.
    pub profile: String,
    /// Policy at request time.
    pub policy: ExportPolicy,
    /// When asked.
    pub requested_at: i64,
    /// Approvals so far, in order.
    pub approvals: Vec<(Actor, i64, String)>,
    /// The deny, if any.
    pub denied: Option<(Actor, i64, String)>,
    /// When the quorum was reached.
    pub approved_at: Option<i64>,
    /// Downloads so far.
    pub downloads: u32,
    /// When the server recorded the expiry, if it has.
    pub expired_at: Option<i64>,
}

/// Every request, rebuilt from the recorded transitions.
#[derive(Debug, Default)]
pub struct Exports {
    policy: ExportPolicy,
    requests: BTreeMap<String, Request>,
    /// The first `_audit` index not applied yet (see [`Exports::apply_recorded`]).
    next_audit: u64,
}

impl Exports {
    /// An empty workflow under `policy`.
    pub fn new(policy: ExportPolicy) -> Exports {
        Exports {
            policy,
            requests: BTreeMap::new(),
            next_audit: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &ExportPolicy {
        &self.policy
    }

    /// A request by id.
    pub fn get(&self, id: &str) -> Option<&Request> {
        self.requests.get(id)
    }

    /// Requests of namespaces in `ns` (all with `None`), optionally in `state`.
    pub fn list<'a>(
        &'a self,
        ns: Option<&'a BTreeSet<String>>,
        state: Option<State>,
        now: i64,
    ) -> impl Iterator<Item = (&'a Request, State)> + 'a {
        self.requests
            .values()
            .filter(move |r| ns.is_none_or(|set| set.contains(&r.ns)))
            .map(move |r| (r, self.state(r, now)))
            .filter(move |(_, s)| state.is_none_or(|want| *s == want))
    }

    /// The state of `r` at `now`, under the policy recorded with the
    /// request (a later configuration never re-opens or shortens it).
    /// Expiry is a matter of time; the server also records it
    /// ([`Exports::due_expiries`]) so that the history says so.
    pub fn state(&self, r: &Request, now: i64) -> State {
        if r.denied.is_some() {
            return State::Denied;
        }
        if r.expired_at.is_some() {
            return State::Expired;
        }
        let p = &r.policy;
        match r.approved_at {
            None if now > r.requested_at.saturating_add(p.request_ttl_s) => State::Expired,
            None => State::Pending,
            Some(_) if r.downloads >= p.downloads => State::Downloaded,
            Some(at) if now > at.saturating_add(p.download_window_s) => State::Expired,
            Some(_) => State::Approved,
        }
    }

    /// The `Expired` steps due at `now`: requests past their TTL or window
    /// whose expiry is not yet in the history.
    pub fn due_expiries(&self, now: i64) -> Vec<Transition> {
        self.requests
            .values()
            .filter(|r| r.expired_at.is_none() && self.state(r, now) == State::Expired)
            .map(|r| Transition::Expired {
                id: r.id.clone(),
                from: if r.approved_at.is_some() {
                    State::Approved
                } else {
                    State::Pending
                },
                at: now,
            })
            .collect()
    }

    /// Applies the step recorded at `_audit` index `audit_idx`, once: a step
    /// at an index already applied is skipped. Steps come in `_audit` order
    /// from one writer, whether applied as they are recorded or read back
    /// from the store (by the servers that did not record them).
    pub fn apply_recorded(&mut self, t: &Transition, audit_idx: u64) {
        if audit_idx < self.next_audit {
            return;
        }
        self.next_audit = audit_idx + 1;
        self.apply(t);
    }

    /// Applies a recorded step (replay, or after recording a checked one).
    /// The rules that do not depend on the caller's token are enforced here
    /// too, so a history with a step that should not have been recorded (a
    /// retried approval, a step after a deny) never counts it: replay is
    /// as strict as [`Exports::check`].
    pub fn apply(&mut self, t: &Transition) {
        let state = self.get(t.id()).map(|r| self.state(r, t_at(t)));
        match t {
            Transition::Requested {
                id,
                ns,
                by,
                reason,
                selection,
                profile,
                policy,
                at,
            } => {
                self.requests.entry(id.clone()).or_insert_with(|| Request {
                    id: id.clone(),
                    ns: ns.clone(),
                    requester: by.clone(),
                    reason: reason.clone(),
                    selection: selection.clone(),
                    profile: profile.clone(),
                    policy: *policy,
                    requested_at: *at,
                    approvals: Vec::new(),
                    denied: None,
                    approved_at: None,
                    downloads: 0,
                    expired_at: None,
                });
            }
            Transition::Approved {
                id,
                by,
                comment,
                at,
            } => {
                if let Some(r) = self.requests.get_mut(id)
                    && state == Some(State::Pending)
                    && approval_counts(&r.requester, r.approvals.iter().map(|(a, _, _)| a), by)
                {
                    r.approvals.push((by.clone(), *at, comment.clone()));
                    if r.approvals.len() >= r.policy.approvals_required.max(1) {
                        r.approved_at = Some(*at);
                    }
                }
            }
            Transition::Denied {
                id,
                by,
                comment,
                at,
            } => {
                if let Some(r) = self.requests.get_mut(id)
                    && state == Some(State::Pending)
                    && !by.same_person(&r.requester)
                {
                    r.denied = Some((by.clone(), *at, comment.clone()));
                }
            }
            Transition::Downloaded { id, by, .. } => {
                if let Some(r) = self.requests.get_mut(id)
                    && state == Some(State::Approved)
                    && *by == r.requester
                {
                    r.downloads += 1;
                }
            }
            Transition::Expired { id, from, at } => {
                // Only a request that really was expired at that time, from
                // the state it says.
                if let Some(r) = self.requests.get_mut(id)
                    && state == Some(State::Expired)
                    && r.denied.is_none()
                    && *from
                        == if r.approved_at.is_some() {
                            State::Approved
                        } else {
                            State::Pending
                        }
                {
                    r.expired_at.get_or_insert(*at);
                }
            }
        }
    }

    /// Checks whether `t` may happen at `now`, for an actor whose token
    /// covers namespaces `ns_allowed` with the role the endpoint requires
    /// (readers request and download, approvers approve and deny; the caller
    /// has checked the role).
    pub fn check(
        &self,
        t: &Transition,
        ns_allowed: &dyn Fn(&str) -> bool,
        now: i64,
    ) -> Result<(), Refusal> {
        let find = |id: &str| {
            self.requests.get(id).ok_or_else(|| {
                refuse(
                    RefusalKind::NotFound,
                    "no_such_export",
                    format!("no export {id}"),
                )
            })
        };
        match t {
            Transition::Requested { id, ns, reason, .. } => {
                if self.requests.contains_key(id) {
                    return Err(refuse(
                        RefusalKind::Conflict,
                        "duplicate_export",
                        format!("export {id} exists"),
                    ));
                }
                if !ns_allowed(ns) {
                    return Err(refuse(
                        RefusalKind::Forbidden,
                        "wrong_namespace",
                        format!("this token does not cover namespace {ns}"),
                    ));
                }
                if reason.trim().is_empty() {
                    return Err(refuse(
                        RefusalKind::Invalid,
                        "reason_required",
                        "an export needs a reason",
                    ));
                }
                Ok(())
            }
            Transition::Approved { id, by, .. } | Transition::Denied { id, by, .. } => {
                let r = find(id)?;
                if !ns_allowed(&r.ns) {
                    return Err(refuse(
                        RefusalKind::Forbidden,
                        "wrong_namespace",
                        format!("this token does not approve exports of {}", r.ns),
                    ));
                }
                let state = self.state(r, now);
                let pending = match state {
                    State::Pending => Ok(()),
                    _ => Err(refuse(
                        RefusalKind::Conflict,
                        "not_pending",
                        format!("export {id} is {state:?}").to_lowercase(),
                    )),
                };
                check_decision(
                    &r.requester,
                    r.approvals.iter().map(|(a, _, _)| a),
                    by,
                    matches!(t, Transition::Approved { .. }),
                    "export",
                    pending,
                )?;
                Ok(())
            }
            Transition::Downloaded { id, by, .. } => {
                let r = find(id)?;
                if *by != r.requester {
                    return Err(refuse(
                        RefusalKind::Forbidden,
                        "not_requester",
                        "only the requester downloads its export",
                    ));
                }
                // The token downloading must still cover the namespace (the
                // requester's later token may no longer).
                if !ns_allowed(&r.ns) {
                    return Err(refuse(
                        RefusalKind::Forbidden,
                        "wrong_namespace",
                        format!("this token does not cover namespace {}", r.ns),
                    ));
                }
                match self.state(r, now) {
                    State::Approved => Ok(()),
                    State::Pending => Err(refuse(
                        RefusalKind::Conflict,
                        "not_approved",
                        format!("export {id} is not approved yet"),
                    )),
                    State::Downloaded => Err(refuse(
                        RefusalKind::Conflict,
                        "already_downloaded",
                        format!("export {id} was already downloaded"),
                    )),
                    State::Expired => Err(refuse(
                        RefusalKind::Conflict,
                        "expired",
                        format!("export {id} expired"),
                    )),
                    State::Denied => Err(refuse(
                        RefusalKind::Conflict,
                        "denied",
                        format!("export {id} was denied"),
                    )),
                }
            }
            Transition::Expired { id, at, .. } => {
                let r = find(id)?;
                match self.state(r, (*at).max(now)) {
                    State::Expired if r.expired_at.is_none() => Ok(()),
                    s => Err(refuse(
                        RefusalKind::Conflict,
                        "not_expired",
                        format!("export {id} is {s:?}").to_lowercase(),
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

    fn requested(id: &str, at: i64) -> Transition {
        Transition::Requested {
            id: id.into(),
            ns: "prod".into(),
            by: actor("alice"),
            reason: "incident 42".into(),
            selection: Selection {
                by: "session".into(),
                value: "s1".into(),
                size: 10,
                rows: 3,
                digest: "00".repeat(32),
                from_us: None,
                to_us: None,
            },
            profile: "strict".into(),
            policy: ExportPolicy::default(),
            at,
        }
    }

    fn approve(id: &str, who: &str, at: i64) -> Transition {
        Transition::Approved {
            id: id.into(),
            by: actor(who),
            comment: String::new(),
            at,
        }
    }

    fn download(id: &str, who: &str, at: i64) -> Transition {
        Transition::Downloaded {
            id: id.into(),
            by: actor(who),
            at,
        }
    }

    /// Checks then applies, as the server does.
    fn step(x: &mut Exports, t: Transition, now: i64) -> Result<(), &'static str> {
        x.check(&t, &|ns| ns == "prod", now).map_err(|r| r.code)?;
        x.apply(&t);
        Ok(())
    }

    #[test]
    fn one_person_is_one_identity_across_issuers() {
        let mut x = Exports::new(ExportPolicy {
            approvals_required: 2,
            ..ExportPolicy::default()
        });
        let as_person = |iss: &str, sub: &str, person: &str| Actor {
            iss: iss.into(),
            sub: sub.into(),
            person: Some(person.into()),
        };
        let mut t = requested("e", 100);
        if let Transition::Requested { by, policy, .. } = &mut t {
            *by = as_person("tv", "alice", "alice@example.com");
            *policy = *x.policy();
        }
        step(&mut x, t, 100).unwrap();
        // Alice, through an approver token of another issuer, is still Alice.
        let approve_as = |who: Actor, at| Transition::Approved {
            id: "e".into(),
            by: who,
            comment: String::new(),
            at,
        };
        let alice_idp = as_person("https://idp", "okta:a.smith", "alice@example.com");
        assert_eq!(
            step(&mut x, approve_as(alice_idp.clone(), 101), 101),
            Err("self_approval")
        );
        // Nor may she deny it; and an applied record of it (from a history
        // written before this rule) does not count either.
        x.apply(&approve_as(alice_idp, 102));
        assert!(x.get("e").unwrap().approvals.is_empty());
        // Bob counts once, whichever issuer he comes through.
        step(
            &mut x,
            approve_as(as_person("tv", "bob", "bob@example.com"), 103),
            103,
        )
        .unwrap();
        assert_eq!(
            step(
                &mut x,
                approve_as(as_person("https://idp", "okta:bob", "bob@example.com"), 104),
                104
            ),
            Err("already_approved")
        );
        assert_eq!(x.state(x.get("e").unwrap(), 104), State::Pending);
    }

    #[test]
    fn two_of_m_approval_then_one_download() {
        let mut x = Exports::new(ExportPolicy {
            approvals_required: 2,
            ..ExportPolicy::default()
        });
        let mut t = requested("e", 100);
        if let Transition::Requested { policy, .. } = &mut t {
            *policy = *x.policy();
        }
        step(&mut x, t, 100).unwrap();
        assert_eq!(
            step(&mut x, download("e", "alice", 101), 101),
            Err("not_approved")
        );
        assert_eq!(
            step(&mut x, approve("e", "alice", 102), 102),
            Err("self_approval")
        );
        step(&mut x, approve("e", "bob", 103), 103).unwrap();
        assert_eq!(
            step(&mut x, approve("e", "bob", 104), 104),
            Err("already_approved")
        );
        assert_eq!(x.state(x.get("e").unwrap(), 104), State::Pending);
        // The same subject from another issuer is another identity.
        let carol = Transition::Approved {
            id: "e".into(),
            by: Actor {
                iss: "idp".into(),
                sub: "bob".into(),
                person: None,
            },
            comment: "ok".into(),
            at: 105,
        };
        step(&mut x, carol, 105).unwrap();
        assert_eq!(x.state(x.get("e").unwrap(), 105), State::Approved);
        assert_eq!(
            step(&mut x, download("e", "bob", 106), 106),
            Err("not_requester")
        );
        // The requester, through a later token that no longer covers the
        // namespace, does not get the bundle.
        let elsewhere = x.check(&download("e", "alice", 107), &|ns| ns == "staging", 107);
        assert_eq!(elsewhere.map_err(|r| r.code), Err("wrong_namespace"));
        step(&mut x, download("e", "alice", 107), 107).unwrap();
        assert_eq!(
            step(&mut x, download("e", "alice", 108), 108),
            Err("already_downloaded")
        );
        assert_eq!(
            step(&mut x, approve("e", "dan", 109), 109),
            Err("not_pending")
        );
    }

    #[test]
    fn deny_ends_and_windows_expire() {
        let mut x = Exports::new(ExportPolicy::default());
        step(&mut x, requested("d", 0), 0).unwrap();
        let deny = Transition::Denied {
            id: "d".into(),
            by: actor("bob"),
            comment: "no".into(),
            at: 5,
        };
        step(&mut x, deny, 5).unwrap();
        assert_eq!(
            step(&mut x, approve("d", "carol", 6), 6),
            Err("not_pending")
        );
        assert_eq!(x.state(x.get("d").unwrap(), 6), State::Denied);

        let p = ExportPolicy::default();
        step(&mut x, requested("t", 0), 0).unwrap();
        let late = p.request_ttl_s + 1;
        assert_eq!(
            step(&mut x, approve("t", "bob", late), late),
            Err("not_pending")
        );
        assert_eq!(x.state(x.get("t").unwrap(), late), State::Expired);

        step(&mut x, requested("w", 0), 0).unwrap();
        step(&mut x, approve("w", "bob", 10), 10).unwrap();
        let after = 10 + p.download_window_s + 1;
        assert_eq!(
            step(&mut x, download("w", "alice", after), after),
            Err("expired")
        );
        // The history stays: an expired request is still there to list.
        let expired: Vec<_> = x
            .list(None, Some(State::Expired), late)
            .map(|(r, _)| r.id.clone())
            .collect();
        assert_eq!(expired, ["t", "w"]);
    }

    #[test]
    fn expiry_follows_the_recorded_policy_and_is_recorded_once() {
        let mut x = Exports::new(ExportPolicy::default());
        let mut t = requested("p", 0);
        if let Transition::Requested { policy, .. } = &mut t {
            policy.request_ttl_s = 10;
        }
        step(&mut x, t, 0).unwrap();
        step(&mut x, requested("q", 0), 0).unwrap();
        // Today's policy (a week) does not extend the recorded 10 s.
        assert_eq!(x.state(x.get("p").unwrap(), 11), State::Expired);
        assert_eq!(x.state(x.get("q").unwrap(), 11), State::Pending);
        let due = x.due_expiries(11);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id(), "p");
        assert_eq!(due[0].event_name(), "export_expired");
        let json = serde_json::to_string(&due[0]).unwrap();
        assert!(json.contains("\"from\":\"pending\""), "{json}");
        step(&mut x, due[0].clone(), 11).unwrap();
        assert!(x.due_expiries(12).is_empty());
        assert_eq!(step(&mut x, due[0].clone(), 12), Err("not_expired"));
        assert_eq!(
            step(&mut x, approve("p", "bob", 12), 12),
            Err("not_pending")
        );
        // A recorded expiry of a request that was not expired at that time
        // does not count on replay.
        x.apply(&Transition::Expired {
            id: "q".into(),
            from: State::Pending,
            at: 5,
        });
        assert_eq!(x.state(x.get("q").unwrap(), 5), State::Pending);
        assert_eq!(x.get("q").unwrap().expired_at, None);
        // Nor one that names the wrong state it expired from.
        let late = ExportPolicy::default().request_ttl_s + 1;
        x.apply(&Transition::Expired {
            id: "q".into(),
            from: State::Approved,
            at: late,
        });
        assert_eq!(x.get("q").unwrap().expired_at, None);
        x.apply(&Transition::Expired {
            id: "q".into(),
            from: State::Pending,
            at: late,
        });
        assert_eq!(x.get("q").unwrap().expired_at, Some(late));
    }

    #[test]
    fn requests_need_their_namespace_a_reason_and_a_fresh_id() {
        let mut x = Exports::new(ExportPolicy::default());
        let mut t = requested("r", 0);
        if let Transition::Requested { ns, .. } = &mut t {
            *ns = "other".into();
        }
        assert_eq!(step(&mut x, t, 0), Err("wrong_namespace"));
        let mut t = requested("r", 0);
        if let Transition::Requested { reason, .. } = &mut t {
            *reason = "  ".into();
        }
        assert_eq!(step(&mut x, t, 0), Err("reason_required"));
        step(&mut x, requested("r", 0), 0).unwrap();
        assert_eq!(step(&mut x, requested("r", 1), 1), Err("duplicate_export"));
        assert_eq!(
            step(&mut x, approve("nope", "bob", 1), 1),
            Err("no_such_export")
        );
        // An approver of another namespace cannot decide.
        let t = approve("r", "bob", 2);
        assert_eq!(
            x.check(&t, &|ns| ns == "dev", 2).unwrap_err().code,
            "wrong_namespace"
        );
    }

    #[test]
    fn replaying_recorded_steps_rebuilds_the_same_state() {
        let steps = [
            requested("a", 0),
            approve("a", "bob", 1),
            download("a", "alice", 2),
            requested("b", 3),
        ];
        let json: Vec<String> = steps
            .iter()
            .map(|t| serde_json::to_string(t).unwrap())
            .collect();
        assert!(json[1].contains("\"step\":\"approved\""), "{}", json[1]);
        let mut x = Exports::new(ExportPolicy::default());
        for j in &json {
            x.apply(&serde_json::from_str(j).unwrap());
        }
        assert_eq!(x.state(x.get("a").unwrap(), 3), State::Downloaded);
        // A history holding steps that should never have been recorded (a
        // retried approval by the same approver, the requester approving, a
        // second download) does not count them on replay.
        let mut y = Exports::new(ExportPolicy::default());
        let mut two = requested("c", 0);
        if let Transition::Requested { policy, .. } = &mut two {
            policy.approvals_required = 2;
        }
        for t in [
            two,
            approve("c", "bob", 1),
            approve("c", "bob", 2),
            approve("c", "alice", 3),
        ] {
            y.apply(&t);
        }
        assert_eq!(y.state(y.get("c").unwrap(), 4), State::Pending);
        assert_eq!(y.get("c").unwrap().approvals.len(), 1);
        // The policy recorded with the request holds, not today's.
        assert_eq!(y.get("c").unwrap().policy.approvals_required, 2);
        assert_eq!(x.state(x.get("b").unwrap(), 3), State::Pending);
        let pending: Vec<_> = x
            .list(None, Some(State::Pending), 3)
            .map(|(r, _)| r.id.clone())
            .collect();
        assert_eq!(pending, ["b"]);
    }
}
