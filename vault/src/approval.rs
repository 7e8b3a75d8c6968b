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
    ///
    /// Subjects are compared as [`folded`]: `Alice`, `alice ` and `alice`
    /// with a zero-width space are one subject, so an admin cannot mint a
    /// "second person" by varying case or adding invisible characters.
    pub fn same_person(&self, other: &Actor) -> bool {
        (self.iss == other.iss && folded(&self.sub) == folded(&other.sub))
            || self.person.is_some() && self.person == other.person
    }
}

/// An identity as the two-person rules compare it: trimmed, without the
/// characters a terminal or a browser does not show ([`is_invisible`]), and
/// lowercased. (Look-alike letters of other scripts are not folded: where
/// that matters, name people with `person` from an identity provider.)
pub fn folded(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| !is_invisible(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Control characters and Unicode's default-ignorable code points (zero-width
/// spaces and joiners, bidirectional controls, variation selectors, the soft
/// hyphen, tags): they change an identity's bytes without changing how it
/// looks.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(iss: &str, sub: &str, person: Option<&str>) -> Actor {
        Actor {
            iss: iss.into(),
            sub: sub.into(),
            person: person.map(str::to_string),
        }
    }

    #[test]
    fn a_subject_varied_by_case_spaces_or_invisible_characters_is_one_person() {
        let alice = actor("vault", "alice", None);
        for other in [
            "Alice",
            "alice ",
            " ALICE",
            "ali\u{200b}ce",
            "alice\u{202e}",
            "a\u{00ad}lice",
        ] {
            assert!(alice.same_person(&actor("vault", other, None)), "{other:?}");
        }
        // Other subjects, or the same subject of another issuer, are not.
        assert!(!alice.same_person(&actor("vault", "alicia", None)));
        assert!(!alice.same_person(&actor("idp", "alice", None)));
        // A named person is one across issuers.
        let a = actor("vault", "a1", Some("alice@example.com"));
        assert!(a.same_person(&actor("idp", "xyz", Some("alice@example.com"))));
        assert!(!a.same_person(&actor("idp", "xyz", None)));
    }
}
