//! Who decides what: the identity of a person acting through a token, and
//! the refusals of a two-person workflow. Exports (`tracevault_query`) and
//! erasure orders ([`crate::erasure`]) share these, so "never decides their
//! own request" and "one person counts once" are one rule.

use serde::{Deserialize, Serialize};

/// Who acts: the verified identity of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Token issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// The person behind the token when its issuer names one (normalized,
    /// e.g. an email), compared across issuers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

impl Actor {
    /// Whether `self` and `other` are one person: the same token identity
    /// (`iss`, `sub`), or the same named person whatever the issuers. This
    /// is the rule for "never decides their own request" and "counts once".
    pub fn same_person(&self, other: &Actor) -> bool {
        (self.iss == other.iss && self.sub == other.sub)
            || self.person.is_some() && self.person == other.person
    }
}

/// Why a step is refused: a stable code (for the API) and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// Stable code, e.g. `self_approval`.
    pub code: &'static str,
    /// Human text.
    pub message: String,
    /// What kind of refusal (the HTTP layer maps it to a status).
    pub kind: RefusalKind,
}

/// Why a workflow step is refused, as a domain fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The step is malformed (no reason given).
    Invalid,
    /// This actor may not take this step.
    Forbidden,
    /// No such request.
    NotFound,
    /// The request is not in a state that allows the step.
    Conflict,
}

/// A refusal of `kind`, with a stable `code` and a message.
pub fn refuse(kind: RefusalKind, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
        kind,
    }
}

impl From<&crate::token::Claims> for Actor {
    fn from(c: &crate::token::Claims) -> Actor {
        Actor {
            iss: c.iss.clone(),
            sub: c.sub.clone(),
            person: c.person.clone(),
        }
    }
}

/// The two-person rule for `by` deciding a request of `requester` that
/// `approvals` already approved, in the order a caller is told: never the
/// requester (`self_approval`), only while the request is pending
/// (`pending`: the caller's verdict on its state), and one approver counts
/// once (`already_approved`, when `approving`). `what` names the request
/// ("export", "erasure"). Exports and erasure orders decide by this rule.
pub fn check_decision<'a>(
    requester: &Actor,
    mut approvals: impl Iterator<Item = &'a Actor>,
    by: &Actor,
    approving: bool,
    what: &str,
    pending: Result<(), Refusal>,
) -> Result<(), Refusal> {
    if by.same_person(requester) {
        return Err(refuse(
            RefusalKind::Forbidden,
            "self_approval",
            format!("the requester cannot decide its own {what}"),
        ));
    }
    pending?;
    if approving && approvals.any(|a| a.same_person(by)) {
        return Err(refuse(
            RefusalKind::Conflict,
            "already_approved",
            "one approver counts once",
        ));
    }
    Ok(())
}

/// Whether a recorded approval by `by` counts on replay: the same rule as
/// [`check_decision`] (the state is the caller's to check).
pub fn approval_counts<'a>(
    requester: &Actor,
    mut approvals: impl Iterator<Item = &'a Actor>,
    by: &Actor,
) -> bool {
    !by.same_person(requester) && !approvals.any(|a| a.same_person(by))
}
