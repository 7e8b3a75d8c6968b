//! Why a masking policy was refused. Every variant about a profile or a rule
//! names it (profile name, 1-based rule number), so an operator can fix the
//! file without guessing; a policy that fails to load is never half-applied.

use thiserror::Error;

/// A masking policy that cannot be used. Returned by
/// [`Policy::from_toml`](super::Policy::from_toml); the server must refuse
/// to start (or keep its previous policy) rather than serve unmasked rows.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The text is not TOML, or has a key the format does not know (typos
    /// such as `colums` are refused, not ignored, so a rule cannot silently
    /// widen or narrow).
    #[error("masking policy is not valid: {0}")]
    Toml(#[from] toml::de::Error),
    /// Only format version 1 exists; a newer file must not be read with
    /// older semantics.
    #[error("masking policy version {0} is not supported (expected 1)")]
    Version(u32),
    /// A profile without a name cannot be reported in the access log.
    #[error("profile #{index} has an empty name")]
    EmptyProfileName {
        /// 1-based position of the profile in the file.
        index: usize,
    },
    /// Two profiles with one name would make the access log ambiguous.
    #[error("profile \"{0}\" is defined twice")]
    DuplicateProfile(String),
    /// The built-in fallback profile's name is reserved so the access log
    /// always tells it apart from configured profiles.
    #[error("profile name \"{0}\" is reserved for the built-in fallback")]
    ReservedProfileName(String),
    /// A profile that no role, claim or `default_profile` selects is dead
    /// configuration, most likely a typo.
    #[error("profile \"{0}\" has no roles and no match, and is not the default_profile")]
    Unreachable(String),
    /// Empty role names or claim names/values would match by accident.
    #[error("profile \"{profile}\": {reason}")]
    BadSelector {
        /// The profile's name.
        profile: String,
        /// What is wrong with its `roles` or `match`.
        reason: String,
    },
    /// `unmasked = true` and rules contradict each other; no rules without
    /// `unmasked = true` is refused so an empty profile is never an accident.
    #[error("profile \"{profile}\": {reason}")]
    Unmasked {
        /// The profile's name.
        profile: String,
        /// Which of the two contradictions it is.
        reason: &'static str,
    },
    /// `default_profile` names a profile that does not exist.
    #[error("default_profile \"{0}\" names no profile")]
    UnknownDefault(String),
    /// The fallback for every unmatched role must mask: an unmasked default
    /// would fail open.
    #[error("default_profile \"{0}\" is unmasked; the fallback must mask (fail closed)")]
    UnmaskedDefault(String),
    /// A profile has more rules (after `detector = "all"` expands) than the
    /// engine tracks.
    #[error("profile \"{profile}\" has {count} rules; at most {max} are allowed")]
    TooManyRules {
        /// The profile's name.
        profile: String,
        /// How many rules it has after expansion.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A rule is malformed: unknown detector or action, missing or misplaced
    /// `pattern`, bad `label`, `columns` or `paths`.
    #[error("profile \"{profile}\", rule {rule}: {reason}")]
    BadRule {
        /// The profile's name.
        profile: String,
        /// 1-based position of the rule in the profile.
        rule: usize,
        /// What is wrong.
        reason: String,
    },
    /// A custom pattern does not compile (syntax), compiles too large, or
    /// matches the empty string.
    #[error("profile \"{profile}\", rule {rule}: pattern {pattern:?} refused: {reason}")]
    BadPattern {
        /// The profile's name.
        profile: String,
        /// 1-based position of the rule in the profile.
        rule: usize,
        /// The pattern as written.
        pattern: String,
        /// The compiler's or the validator's reason.
        reason: String,
    },
    /// All of a profile's detectors together compile too large for the
    /// combined pre-check.
    #[error("profile \"{profile}\": detectors do not compile together: {reason}")]
    ProfileTooLarge {
        /// The profile's name.
        profile: String,
        /// The compiler's reason.
        reason: String,
    },
}
