//! The masking policy file: its TOML shape, its validation (every error
//! names the profile and rule), and profile selection by role or token
//! claim, which fails closed to the built-in strict profile.

use std::sync::Arc;

use regex::RegexBuilder;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::actions::Action;
use super::detectors::DetectorKind;
use super::engine::{Columns, CompileError, MAX_RULES, RuleSet, RuleSpec};
use super::error::PolicyError;
use super::jsonpath::PathPattern;

/// Name of the built-in strict profile used when nothing else applies.
pub const STRICT_PROFILE: &str = "builtin-strict";
/// Longest custom pattern accepted, in bytes of source text.
pub(crate) const MAX_PATTERN_LEN: usize = 4096;
/// Compiled-size budget of one custom pattern: larger ones are refused so a
/// policy cannot make every query slow or memory-hungry.
pub(crate) const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Paths per rule.
const MAX_PATHS: usize = 16;
/// Longest custom label.
const MAX_LABEL: usize = 32;
/// Columns a rule applies to when it names none.
const DEFAULT_COLUMNS: [&str; 2] = ["content", "attributes"];

/// Columns of the committed record that hold a value verbatim (content and
/// attributes are there as salted digests only). When a profile masks one
/// of them, the record and its leaf hash are withheld from the reader
/// (entry reads, SQL, export bundles): they would show the raw value, or let
/// a reader confirm guesses of it.
pub const VERBATIM: [&str; 9] = [
    "session_id",
    "ingested_by",
    "event_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "actor",
    "model",
];

/// Whether a rule may name `column`: every string column of `traces` but
/// the structural ones (`ns`, `kind`, never masked, since enforcement and
/// pruning use them) and `leaf_hash` (withheld instead, see
/// `docs/masking.md`), i.e. the [`VERBATIM`] ones, `content` and
/// `attributes`. A rule naming anything else is refused at load, so a
/// policy can never look as if it masked a column it does not.
pub fn maskable(column: &str) -> bool {
    VERBATIM.contains(&column) || column == "content" || column == "attributes"
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: Option<u32>,
    hash_key_file: Option<String>,
    default_profile: Option<String>,
    #[serde(default)]
    profile: Vec<ProfileFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(rename = "match")]
    claim: Option<ClaimFile>,
    #[serde(default)]
    unmasked: bool,
    #[serde(default)]
    rule: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimFile {
    claim: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    detector: String,
    action: String,
    pattern: Option<String>,
    label: Option<String>,
    columns: Option<Vec<String>>,
    paths: Option<Vec<String>>,
}

/// A parsed, validated masking policy: the profiles in file order, the
/// configured fallback, and the built-in strict profile that backs every
/// failed lookup.
#[derive(Debug)]
pub struct Policy {
    profiles: Vec<Arc<Profile>>,
    default: Option<usize>,
    strict: Arc<Profile>,
    hash_key_file: Option<String>,
}

/// One masking profile: who it is for and what it masks. Obtain it from
/// [`Policy::profile_for`] and mask with a [`Masker`](super::Masker).
#[derive(Debug)]
pub struct Profile {
    /// The profile's name, for the access log (`builtin-strict` for the
    /// built-in fallback).
    pub name: String,
    roles: Vec<String>,
    claim: Option<(String, String)>,
    pub(crate) engine: Engine,
}

/// How a profile masks.
#[derive(Debug)]
pub(crate) enum Engine {
    /// The compiled rules (none for an `unmasked` profile).
    Rules(RuleSet),
    /// Every non-empty value of `content` and `attributes` is replaced by
    /// `[REDACTED:all]`. Only used if the built-in detectors failed to
    /// compile, which tests rule out; it keeps [`Policy::default_policy`]
    /// infallible without ever failing open.
    RedactAll,
}

impl Policy {
    /// Parses and validates a policy. Nothing is half-loaded: any error
    /// refuses the whole file, naming the profile and rule at fault.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text)?;
        if let Some(v) = file.version.filter(|v| *v != 1) {
            return Err(PolicyError::Version(v));
        }
        let mut profiles: Vec<Arc<Profile>> = Vec::with_capacity(file.profile.len());
        for (i, p) in file.profile.into_iter().enumerate() {
            if p.name.trim().is_empty() {
                return Err(PolicyError::EmptyProfileName { index: i + 1 });
            }
            if p.name == STRICT_PROFILE {
                return Err(PolicyError::ReservedProfileName(p.name));
            }
            if profiles.iter().any(|q| q.name == p.name) {
                return Err(PolicyError::DuplicateProfile(p.name));
            }
            let selectable = !p.roles.is_empty() || p.claim.is_some();
            if !selectable && file.default_profile.as_deref() != Some(p.name.as_str()) {
                return Err(PolicyError::Unreachable(p.name));
            }
            profiles.push(Arc::new(build_profile(p)?));
        }
        let default = match file.default_profile {
            None => None,
            Some(name) => {
                let i = profiles
                    .iter()
                    .position(|p| p.name == name)
                    .ok_or_else(|| PolicyError::UnknownDefault(name.clone()))?;
                if profiles.get(i).is_some_and(|p| p.is_unmasked()) {
                    return Err(PolicyError::UnmaskedDefault(name));
                }
                Some(i)
            }
        };
        Ok(Policy {
            profiles,
            default,
            strict: Arc::new(strict_profile()),
            hash_key_file: file.hash_key_file,
        })
    }

    /// The built-in policy: no configured profiles, so every role gets the
    /// strict profile (every built-in detector, action `redact`, on
    /// `content` and `attributes`, everywhere inside JSON).
    pub fn default_policy() -> Policy {
        Policy {
            profiles: Vec::new(),
            default: None,
            strict: Arc::new(strict_profile()),
            hash_key_file: None,
        }
    }

    /// The profile for a caller: the first profile in file order whose
    /// `roles` contain `role` and whose `match` claim (if any) is in
    /// `claims`; else `default_profile`; else the built-in strict profile.
    /// Never "no masking" by accident: only a profile that matched and says
    /// `unmasked = true` masks nothing.
    pub fn profile_for(&self, role: &str, claims: &Map<String, Value>) -> &Arc<Profile> {
        self.profiles
            .iter()
            .find(|p| p.selects(role, claims))
            .or_else(|| self.default.and_then(|i| self.profiles.get(i)))
            .unwrap_or(&self.strict)
    }

    /// The profile named `name` (the built-in strict one as
    /// `builtin-strict`): how another node of a distributed query finds the
    /// profile a plan was made for.
    pub fn profile_named(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            .or_else(|| (self.strict.name == name).then_some(&self.strict))
    }

    /// The `hash_key_file` the policy names, for the server to load the
    /// 32-byte hash key from. Informational: the engine never reads files.
    pub fn hash_key_file(&self) -> Option<&str> {
        self.hash_key_file.as_deref()
    }
}

impl Profile {
    /// True when this profile masks nothing (`unmasked = true`).
    pub fn is_unmasked(&self) -> bool {
        matches!(&self.engine, Engine::Rules(rs) if rs.rules.is_empty())
    }

    fn selects(&self, role: &str, claims: &Map<String, Value>) -> bool {
        if self.roles.is_empty() && self.claim.is_none() {
            return false;
        }
        let role_ok = self.roles.is_empty() || self.roles.iter().any(|r| r == role);
        let claim_ok = match &self.claim {
            None => true,
            Some((name, want)) => match claims.get(name) {
                Some(Value::String(s)) => s == want,
                Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(want)),
                _ => false,
            },
        };
        role_ok && claim_ok
    }
}

/// The built-in strict profile. Its regexes are constants covered by
/// tests; should they ever fail to compile, it redacts whole values.
fn strict_profile() -> Profile {
    let specs = DetectorKind::BUILTIN
        .iter()
        .map(|kind| RuleSpec {
            kind: *kind,
            custom: None,
            action: Action::Redact,
            label: kind.label().to_string(),
            columns: default_columns(),
            paths: Vec::new(),
        })
        .collect();
    let engine = RuleSet::compile(specs).map_or(Engine::RedactAll, Engine::Rules);
    Profile {
        name: STRICT_PROFILE.to_string(),
        roles: Vec::new(),
        claim: None,
        engine,
    }
}

fn default_columns() -> Columns {
    Columns::Named(DEFAULT_COLUMNS.iter().map(|c| c.to_string()).collect())
}

fn build_profile(p: ProfileFile) -> Result<Profile, PolicyError> {
    let name = p.name;
    let bad_selector = |reason: &str| PolicyError::BadSelector {
        profile: name.clone(),
        reason: reason.to_string(),
    };
    if p.roles.iter().any(|r| r.trim().is_empty()) {
        return Err(bad_selector("roles has an empty entry"));
    }
    let claim = match p.claim {
        None => None,
        Some(c) if c.claim.trim().is_empty() => return Err(bad_selector("match.claim is empty")),
        Some(c) if c.value.is_empty() => return Err(bad_selector("match.value is empty")),
        Some(c) => Some((c.claim, c.value)),
    };
    match (p.unmasked, p.rule.is_empty()) {
        (true, false) => {
            return Err(PolicyError::Unmasked {
                profile: name,
                reason: "unmasked = true cannot have rules",
            });
        }
        (false, true) => {
            return Err(PolicyError::Unmasked {
                profile: name,
                reason: "no rules; set unmasked = true if this profile must see raw values",
            });
        }
        _ => {}
    }
    // Counted before anything compiles, so a huge file fails fast.
    let count: usize = p
        .rule
        .iter()
        .map(|r| match r.detector.as_str() {
            "all" => DetectorKind::BUILTIN.len(),
            _ => 1,
        })
        .sum();
    if count > MAX_RULES {
        return Err(PolicyError::TooManyRules {
            profile: name,
            count,
            max: MAX_RULES,
        });
    }
    let mut specs = Vec::with_capacity(count);
    for (i, rule) in p.rule.into_iter().enumerate() {
        build_rule(&name, i + 1, rule, &mut specs)?;
    }
    let engine = match RuleSet::compile(specs) {
        Ok(rs) => Engine::Rules(rs),
        Err(CompileError::TooManyRules(count)) => {
            return Err(PolicyError::TooManyRules {
                profile: name,
                count,
                max: MAX_RULES,
            });
        }
        Err(CompileError::Builtin(reason) | CompileError::Set(reason)) => {
            return Err(PolicyError::ProfileTooLarge {
                profile: name,
                reason,
            });
        }
    };
    Ok(Profile {
        name,
        roles: p.roles,
        claim,
        engine,
    })
}

/// Validates one rule and appends its spec(s): `detector = "all"` expands
/// to one rule per built-in detector.
fn build_rule(
    profile: &str,
    n: usize,
    rule: RuleFile,
    specs: &mut Vec<RuleSpec>,
) -> Result<(), PolicyError> {
    let bad = |reason: String| PolicyError::BadRule {
        profile: profile.to_string(),
        rule: n,
        reason,
    };
    let action = Action::from_name(&rule.action).ok_or_else(|| {
        bad(format!(
            "unknown action {:?} (expected redact, partial, hash or drop)",
            rule.action
        ))
    })?;
    let kinds: Vec<DetectorKind> = if rule.detector == "all" {
        DetectorKind::BUILTIN.to_vec()
    } else {
        let kind = DetectorKind::from_name(&rule.detector).ok_or_else(|| {
            bad(format!(
                "unknown detector {:?} (expected email, phone, card, iban, ipv4, ipv6, ssn, \
                 api_key, jwt, private_key, custom or all)",
                rule.detector
            ))
        })?;
        vec![kind]
    };
    let is_custom = kinds == [DetectorKind::Custom];
    let custom = match (&rule.pattern, is_custom) {
        (Some(pattern), true) => Some(compile_custom(profile, n, pattern)?),
        (None, true) => return Err(bad("detector \"custom\" needs a pattern".into())),
        (Some(_), false) => return Err(bad("pattern is only for detector \"custom\"".into())),
        (None, false) => None,
    };
    let label = match (rule.label, is_custom) {
        (None, true) => Some("custom".to_string()),
        (Some(l), true) => {
            let ok = !l.is_empty()
                && l.len() <= MAX_LABEL
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(bad(format!(
                    "label {l:?} must be 1-{MAX_LABEL} of a-z, 0-9, _"
                )));
            }
            Some(l)
        }
        (Some(_), false) => return Err(bad("label is only for detector \"custom\"".into())),
        (None, false) => None,
    };
    let columns = match rule.columns {
        None => default_columns(),
        Some(cols) if cols.is_empty() => return Err(bad("columns is empty".into())),
        Some(cols) if cols.iter().any(|c| c == "*") => Columns::All,
        Some(cols) => {
            if let Some(c) = cols.iter().find(|c| !maskable(c)) {
                return Err(bad(format!(
                    "column {c:?} cannot be masked (maskable: {}, content, attributes)",
                    VERBATIM.join(", ")
                )));
            }
            Columns::Named(cols)
        }
    };
    let paths = match rule.paths {
        None => Vec::new(),
        Some(ps) if ps.is_empty() => {
            return Err(bad(
                "paths is empty (omit it to mask everywhere inside JSON)".into(),
            ));
        }
        Some(ps) if ps.len() > MAX_PATHS => {
            return Err(bad(format!("more than {MAX_PATHS} paths")));
        }
        Some(ps) => ps
            .iter()
            .map(|p| PathPattern::parse(p).map_err(|e| bad(format!("path {p:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?,
    };
    for kind in kinds {
        specs.push(RuleSpec {
            kind,
            custom: custom.clone(),
            action,
            label: label.clone().unwrap_or_else(|| kind.label().to_string()),
            columns: columns.clone(),
            paths: paths.clone(),
        });
    }
    Ok(())
}

/// Compiles a custom pattern under size limits; refuses patterns that do
/// not compile, compile too large, or match the empty string (which would
/// mask nothing while costing a scan of every value).
fn compile_custom(profile: &str, n: usize, pattern: &str) -> Result<regex::Regex, PolicyError> {
    let refuse = |reason: String| PolicyError::BadPattern {
        profile: profile.to_string(),
        rule: n,
        pattern: pattern.to_string(),
        reason,
    };
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(refuse(format!("longer than {MAX_PATTERN_LEN} bytes")));
    }
    let re = RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => {
                refuse(format!("compiles larger than {limit} bytes"))
            }
            other => refuse(other.to_string()),
        })?;
    if re.is_match("") {
        return Err(refuse("matches the empty string".into()));
    }
    Ok(re)
}
