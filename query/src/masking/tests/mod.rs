//! Behaviour tests of the masking engine through its public API.

mod actions;
mod detectors;
mod json;
mod policy;

use std::borrow::Cow;
use std::sync::OnceLock;

use super::{Masker, Policy};

/// A fixed test key.
pub(super) const KEY: [u8; 32] = [7; 32];

/// The built-in policy, compiled once for all tests.
pub(super) fn default_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(Policy::default_policy)
}

/// Masks `text` as `content` under the built-in strict policy.
pub(super) fn strict(text: &str) -> String {
    let profile = default_policy().profile_for("anyone", &serde_json::Map::new());
    let masker = Masker::new(profile, &KEY);
    match masker.mask_str("content", text) {
        Some(Cow::Borrowed(s)) => s.to_string(),
        Some(Cow::Owned(s)) => s,
        None => "<dropped>".to_string(),
    }
}
