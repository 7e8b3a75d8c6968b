//! What happens to a detected value: the four actions and the exact text
//! each one writes. The formats are part of the policy contract (documented
//! in docs/masking.md) because clients and analysts read and join on them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::detectors::DetectorKind;

/// Keyed hash used by the `hash` action.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// How many trailing alphanumeric characters `partial` keeps.
pub(crate) const PARTIAL_KEEP: usize = 4;
/// Below this many alphanumeric characters `partial` keeps nothing: four
/// characters of a short value reveal too much of it.
pub(crate) const PARTIAL_MIN: usize = 8;
/// Hex characters of the HMAC kept by `hash` (64 bits: joins stay exact in
/// practice while the tag stays short).
pub(crate) const HASH_HEX: usize = 16;

/// A masking action. Variants are ordered from least to most strict; when
/// detections overlap, the strictest action of the group applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Action {
    /// `[REDACTED:<label>]…<last 4>`.
    Partial,
    /// `[HASH:<label>:<16 hex>]`, keyed HMAC-SHA256.
    Hash,
    /// `[REDACTED:<label>]`.
    Redact,
    /// The whole field is removed (string column: null).
    Drop,
}

impl Action {
    /// Parses an `action = "..."` value.
    pub(crate) fn from_name(name: &str) -> Option<Action> {
        Some(match name {
            "partial" => Action::Partial,
            "hash" => Action::Hash,
            "redact" => Action::Redact,
            "drop" => Action::Drop,
            _ => return None,
        })
    }
}

/// Appends the mask for `value` to `out`. `Drop` never reaches here (the
/// caller removes the field); if it did, it is written as a redaction.
/// Without a MAC (impossible with a 32-byte key) `hash` also redacts: the
/// engine fails closed, never open.
pub(crate) fn render(
    out: &mut String,
    action: Action,
    label: &str,
    kind: DetectorKind,
    value: &str,
    mac: Option<&HmacSha256>,
) {
    match (action, mac) {
        (Action::Partial, _) => {
            push_redacted(out, label);
            let alnum = value.chars().filter(|c| c.is_alphanumeric()).count();
            if alnum >= PARTIAL_MIN {
                let mut tail: Vec<char> = value
                    .chars()
                    .rev()
                    .filter(|c| c.is_alphanumeric())
                    .take(PARTIAL_KEEP)
                    .collect();
                tail.reverse();
                out.push('…');
                out.extend(tail);
            }
        }
        (Action::Hash, Some(mac)) => {
            let mut mac = mac.clone();
            mac.update(label.as_bytes());
            mac.update(&[0]);
            // Folded first (fullwidth digits and letters, `%40`, invisible
            // characters), so the value hashes as its plain form does:
            // normalised as written, every all-fullwidth card number kept no
            // digit and all of them shared one tag.
            let folded = super::fold::fold(value);
            let plain = folded.as_ref().map_or(value, |f| f.text.as_str());
            mac.update(kind.normalize(plain).as_bytes());
            let tag = mac.finalize().into_bytes();
            out.push_str("[HASH:");
            out.push_str(label);
            out.push(':');
            let hex = hex::encode(tag);
            out.push_str(hex.get(..HASH_HEX).unwrap_or(&hex));
            out.push(']');
        }
        _ => push_redacted(out, label),
    }
}

fn push_redacted(out: &mut String, label: &str) {
    out.push_str("[REDACTED:");
    out.push_str(label);
    out.push(']');
}
