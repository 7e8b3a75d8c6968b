//! The built-in detectors: what each one's regex finds, how its candidates
//! are validated ([`super::checks`]), and how a detected value is normalised
//! before keyed hashing so equal values written differently stay joinable.
//!
//! Regexes are ASCII-only (`(?-u:\b)` boundaries, explicit classes) so the
//! fast DFA engines handle them on any input, including non-ASCII text.

use std::borrow::Cow;
use std::net::Ipv6Addr;
use std::ops::Range;

use super::checks;

/// A kind of sensitive value the engine can find. Built-in kinds carry a
/// fixed regex and validator; [`DetectorKind::Custom`] uses the rule's own
/// pattern and has no validator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DetectorKind {
    PrivateKey,
    Jwt,
    ApiKey,
    Email,
    Iban,
    Card,
    Ssn,
    Phone,
    Ipv6,
    Ipv4,
    Custom,
}

const PRIVATE_KEY: &str = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)";
const JWT: &str = r"(?-u:\b)eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*";
const API_KEY: &str = concat!(
    r"(?-u:\b)(?:",
    r"sk-[A-Za-z0-9_\-]{20,}",
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}",
    r"|gh[pousr]_[A-Za-z0-9]{36,}",
    r"|github_pat_[A-Za-z0-9_]{22,}",
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}",
    r"|AIza[0-9A-Za-z_\-]{35}",
    r"|glpat-[A-Za-z0-9_\-]{20,}",
    r"|(?i:bearer)[ \t]+[A-Za-z0-9._~+/\-]{16,}=*",
    r")"
);
const EMAIL: &str = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}";
const IBAN: &str =
    r"(?-u:\b)(?i:[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)(?-u:\b)";
const CARD: &str = r"(?-u:\b)[0-9](?:[ \-\u{00A0}\u{202F}]?[0-9]){12,18}(?-u:\b)";
const SSN: &str = r"(?-u:\b)[0-9]{3}(?:-[0-9]{2}-| [0-9]{2} )[0-9]{4}(?-u:\b)";
const PHONE: &str = concat!(
    r"\+[1-9][0-9]{0,3}(?:[ .\-\u{00A0}\u{202F}]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,6}",
    r"|(?:1[ .\-\u{00A0}\u{202F}]?)?(?:\([2-9][0-9]{2}\)[ .\-\u{00A0}\u{202F}]?|[2-9][0-9]{2}[ .\-\u{00A0}\u{202F}])[0-9]{3}[ .\-\u{00A0}\u{202F}][0-9]{4}",
);
/// The address must start the text or follow a character that cannot be
/// part of it; that character is part of the match (no look-behind in the
/// regex crate) and trimmed by the validator. Without it, every `a::b` in
/// code would be a candidate and slow the common case down.
const IPV6: &str = concat!(
    r"(?:^|[^0-9A-Za-z_:.])(?:",
    r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){1,6}:(?:[0-9]{1,3}\.){3}[0-9]{1,3}",
    r"|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7}",
    r"|::[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){0,6}",
    r")",
);
const IPV4: &str = r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)";

impl DetectorKind {
    /// Every built-in detector, in the order `detector = "all"` expands to
    /// and the built-in strict profile uses. Secrets come first: when two
    /// detections tie, the earlier rule names the mask.
    pub(crate) const BUILTIN: [DetectorKind; 10] = [
        DetectorKind::PrivateKey,
        DetectorKind::Jwt,
        DetectorKind::ApiKey,
        DetectorKind::Email,
        DetectorKind::Iban,
        DetectorKind::Card,
        DetectorKind::Ssn,
        DetectorKind::Phone,
        DetectorKind::Ipv6,
        DetectorKind::Ipv4,
    ];

    /// Parses a `detector = "..."` value (not `all`, which the policy
    /// expands itself).
    pub(crate) fn from_name(name: &str) -> Option<DetectorKind> {
        Some(match name {
            "private_key" => DetectorKind::PrivateKey,
            "jwt" => DetectorKind::Jwt,
            "api_key" => DetectorKind::ApiKey,
            "email" => DetectorKind::Email,
            "iban" => DetectorKind::Iban,
            "card" | "credit_card" => DetectorKind::Card,
            "ssn" => DetectorKind::Ssn,
            "phone" => DetectorKind::Phone,
            "ipv6" => DetectorKind::Ipv6,
            "ipv4" => DetectorKind::Ipv4,
            "custom" => DetectorKind::Custom,
            _ => return None,
        })
    }

    /// The label written into masks (`[REDACTED:<label>]`) and counted in
    /// the access log. Custom rules bring their own.
    pub(crate) fn label(self) -> &'static str {
        match self {
            DetectorKind::PrivateKey => "private_key",
            DetectorKind::Jwt => "jwt",
            DetectorKind::ApiKey => "api_key",
            DetectorKind::Email => "email",
            DetectorKind::Iban => "iban",
            DetectorKind::Card => "card",
            DetectorKind::Ssn => "ssn",
            DetectorKind::Phone => "phone",
            DetectorKind::Ipv6 => "ipv6",
            DetectorKind::Ipv4 => "ipv4",
            DetectorKind::Custom => "custom",
        }
    }

    /// The built-in regex; `None` for custom detectors.
    pub(crate) fn pattern(self) -> Option<&'static str> {
        Some(match self {
            DetectorKind::PrivateKey => PRIVATE_KEY,
            DetectorKind::Jwt => JWT,
            DetectorKind::ApiKey => API_KEY,
            DetectorKind::Email => EMAIL,
            DetectorKind::Iban => IBAN,
            DetectorKind::Card => CARD,
            DetectorKind::Ssn => SSN,
            DetectorKind::Phone => PHONE,
            DetectorKind::Ipv6 => IPV6,
            DetectorKind::Ipv4 => IPV4,
            DetectorKind::Custom => return None,
        })
    }

    /// Turns a regex hit into a detection (possibly narrowed), or `None`
    /// when the candidate fails the detector's checks.
    pub(crate) fn validate(self, text: &str, r: Range<usize>) -> Option<Range<usize>> {
        if r.is_empty() {
            return None;
        }
        let found = match self {
            DetectorKind::PrivateKey | DetectorKind::Custom => Some(r),
            DetectorKind::Jwt => checks::jwt_in(text, r),
            DetectorKind::ApiKey => checks::api_key_in(text, r),
            DetectorKind::Email => checks::email_in(text, r),
            DetectorKind::Iban => checks::iban_in(text, r),
            DetectorKind::Card => checks::card_in(text, r),
            DetectorKind::Ssn => checks::ssn_in(text, r),
            DetectorKind::Phone => checks::phone_in(text, r),
            DetectorKind::Ipv6 => checks::ipv6_in(text, r),
            DetectorKind::Ipv4 => checks::ipv4_in(text, r),
        };
        found.filter(|r| !r.is_empty())
    }

    /// The form of a detected value that is hashed: case and separators are
    /// dropped where they carry no identity (`Alice@X.com` = `alice@x.com`,
    /// `4111-1111-...` = `4111 1111 ...`, IPv6 in canonical form).
    pub(crate) fn normalize(self, value: &str) -> Cow<'_, str> {
        match self {
            DetectorKind::Email => Cow::Owned(value.to_ascii_lowercase()),
            DetectorKind::Card | DetectorKind::Ssn | DetectorKind::Phone => {
                Cow::Owned(value.chars().filter(char::is_ascii_digit).collect())
            }
            DetectorKind::Iban => Cow::Owned(
                value
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_uppercase())
                    .collect(),
            ),
            DetectorKind::Ipv6 => match value.parse::<Ipv6Addr>() {
                Ok(ip) => Cow::Owned(ip.to_string()),
                Err(_) => Cow::Borrowed(value),
            },
            _ => Cow::Borrowed(value),
        }
    }
}
