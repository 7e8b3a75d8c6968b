//! Applying a profile to values: strings of any column, and JSON values
//! (attributes, JSON content) walked recursively with rules targeted by
//! path. Clean values cost one combined regex scan and no allocation.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::KeyInit;
use serde_json::Value;

use super::actions::{self, Action, HmacSha256};
use super::engine::{RuleSet, Span};
use super::jsonpath::Seg;
use super::policy::{Engine, Profile};

/// JSON nesting deeper than this is replaced whole by `[REDACTED:depth]`
/// rather than recursed into (no stack exhaustion on hostile values; parsed
/// JSON is limited to 128 levels anyway).
pub(crate) const MAX_DEPTH: usize = 256;
/// Columns the fallback `RedactAll` engine covers (the strict profile's).
const STRICT_COLUMNS: [&str; 2] = ["content", "attributes"];

/// Applies one profile with one hash key. Cheap to create (one per query);
/// `Sync`, so one masker can serve parallel batches. Keeps per-label counts
/// of what it masked, for the access log.
#[derive(Debug)]
pub struct Masker {
    profile: Arc<Profile>,
    mac: Option<HmacSha256>,
    /// One counter per rule of the profile.
    counts: Vec<AtomicU64>,
    /// Values replaced whole: by the `RedactAll` fallback, or too deep.
    whole: AtomicU64,
    deep: AtomicU64,
    /// Counts made elsewhere for this masker's query: by a distributed
    /// query's executors ([`Masker::add_counts`]).
    elsewhere: std::sync::Mutex<BTreeMap<String, u64>>,
}

/// The result of masking one text.
enum Outcome {
    Clean,
    Masked(String),
    Drop,
}

impl Masker {
    /// A masker for `profile`. `hash_key` keys the `hash` action's
    /// HMAC-SHA256; it stays inside the server (only 64-bit tags of it leave).
    pub fn new(profile: &Arc<Profile>, hash_key: &[u8; 32]) -> Self {
        let rules = match &profile.engine {
            Engine::Rules(rs) => rs.rules.len(),
            Engine::RedactAll => 0,
        };
        Masker {
            profile: profile.clone(),
            mac: HmacSha256::new_from_slice(hash_key).ok(),
            counts: (0..rules).map(|_| AtomicU64::new(0)).collect(),
            whole: AtomicU64::new(0),
            deep: AtomicU64::new(0),
            elsewhere: Default::default(),
        }
    }

    /// A masker with the same profile and key, counting from zero: one per
    /// partition where counts must be reported per partition (an
    /// executor's task).
    pub fn fresh(&self) -> Masker {
        Masker {
            profile: self.profile.clone(),
            mac: self.mac.clone(),
            counts: self.counts.iter().map(|_| AtomicU64::new(0)).collect(),
            whole: AtomicU64::new(0),
            deep: AtomicU64::new(0),
            elsewhere: Default::default(),
        }
    }

    /// Adds counts of what was masked elsewhere for this query (a
    /// distributed query's executors), so that [`Masker::counts`], and the
    /// access log, tell the whole query.
    pub fn add_counts(&self, counts: &BTreeMap<String, u64>) {
        if let Ok(mut e) = self.elsewhere.lock() {
            for (label, n) in counts {
                *e.entry(label.clone()).or_insert(0) += n;
            }
        }
    }

    /// The profile this masker applies.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// True when no value of `column` can be changed by this profile: the
    /// query engine may then prune and filter on its stored values directly
    /// (filters on a masked column must see the masked values only).
    pub fn leaves_column(&self, column: &str) -> bool {
        match &self.profile.engine {
            Engine::RedactAll => !STRICT_COLUMNS.contains(&column),
            Engine::Rules(rs) => rs.column_mask(column) == 0,
        }
    }

    /// Masks one string value of `column` (`content`, `name`, `actor`, ...),
    /// treated as the value at JSON path `$`. Returns `None` when a detection
    /// has action `drop` (the field becomes null), `Cow::Borrowed` when
    /// nothing was detected (no allocation), else the masked text.
    pub fn mask_str<'s>(&self, column: &str, value: &'s str) -> Option<Cow<'s, str>> {
        match &self.profile.engine {
            Engine::RedactAll => {
                if STRICT_COLUMNS.contains(&column) && !value.is_empty() {
                    self.whole.fetch_add(1, Ordering::Relaxed);
                    Some(Cow::Owned("[REDACTED:all]".to_string()))
                } else {
                    Some(Cow::Borrowed(value))
                }
            }
            Engine::Rules(rs) => {
                let applicable = rs.column_mask(column) & rs.root_rules;
                let mut spans = Vec::new();
                match self.apply(rs, value, applicable, &mut spans) {
                    Outcome::Clean => Some(Cow::Borrowed(value)),
                    Outcome::Masked(s) => Some(Cow::Owned(s)),
                    Outcome::Drop => None,
                }
            }
        }
    }

    /// Masks a JSON value of `column` in place, recursing into objects and
    /// arrays. Strings are masked like [`mask_str`](Self::mask_str); numbers
    /// are checked as their decimal text (a card stored as a number) and
    /// become strings when masked; object keys are checked by rules without
    /// `paths` (a renamed key that collides gets a `#2`, `#3`, ... suffix).
    /// `drop` removes an object member, sets an array element to `null`
    /// (indices stay meaningful), or sets the whole value to `null` when it
    /// is a top-level string. Returns true if anything changed.
    pub fn mask_json(&self, column: &str, value: &mut Value) -> bool {
        match &self.profile.engine {
            Engine::RedactAll => {
                let empty = matches!(value, Value::Null)
                    || matches!(value, Value::String(s) if s.is_empty());
                if STRICT_COLUMNS.contains(&column) && !empty {
                    self.whole.fetch_add(1, Ordering::Relaxed);
                    *value = Value::String("[REDACTED:all]".to_string());
                    true
                } else {
                    false
                }
            }
            Engine::Rules(rs) => {
                let col = rs.column_mask(column);
                if col == 0 {
                    return false;
                }
                let path_rules = col & rs.path_rules;
                let states = rs
                    .paths
                    .iter()
                    .map(|p| {
                        if path_rules & (1u128 << p.rule) != 0 {
                            super::jsonpath::PathPattern::START
                        } else {
                            0
                        }
                    })
                    .collect();
                let mut walk = Walk {
                    masker: self,
                    rs,
                    base: col & !rs.path_rules,
                    states,
                    spans: Vec::new(),
                    changed: false,
                };
                if walk.node(value, 0, 0) {
                    *value = Value::Null;
                    walk.changed = true;
                }
                walk.changed
            }
        }
    }

    /// How many values were masked per label (`email`, `card`, a custom
    /// label, `all` or `depth` for whole-value replacements) since this
    /// masker was created; labels with no match are absent.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        if let Engine::Rules(rs) = &self.profile.engine {
            for (rule, n) in rs.rules.iter().zip(&self.counts) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    *out.entry(rule.label.clone()).or_insert(0) += n;
                }
            }
        }
        for (label, n) in [("all", &self.whole), ("depth", &self.deep)] {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                *out.entry(label.to_string()).or_insert(0) += n;
            }
        }
        if let Ok(e) = self.elsewhere.lock() {
            for (label, n) in e.iter().filter(|(_, n)| **n > 0) {
                *out.entry(label.clone()).or_insert(0) += n;
            }
        }
        out
    }

    /// Detects and masks `text` under the `applicable` rules.
    fn apply(&self, rs: &RuleSet, text: &str, applicable: u128, spans: &mut Vec<Span>) -> Outcome {
        rs.find(text, applicable, spans);
        if spans.is_empty() {
            return Outcome::Clean;
        }
        for s in spans.iter() {
            if let Some(c) = self.counts.get(s.rule) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        if spans.iter().any(|s| s.action == Action::Drop) {
            return Outcome::Drop;
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut at = 0;
        for s in spans.iter() {
            out.push_str(text.get(at..s.range.start).unwrap_or(""));
            let (label, kind) = match rs.rules.get(s.rule) {
                Some(r) => (r.label.as_str(), r.kind),
                None => ("unknown", super::detectors::DetectorKind::Custom),
            };
            let value = text.get(s.range.clone()).unwrap_or("");
            actions::render(&mut out, s.action, label, kind, value, self.mac.as_ref());
            at = s.range.end;
        }
        out.push_str(text.get(at..).unwrap_or(""));
        Outcome::Masked(out)
    }
}

/// One `mask_json` traversal. Path-pattern states are kept as a stack of
/// `paths.len()` words per level (`states[level * k..][..k]`).
struct Walk<'m> {
    masker: &'m Masker,
    rs: &'m RuleSet,
    /// Column-applicable rules without paths: apply everywhere.
    base: u128,
    states: Vec<u64>,
    spans: Vec<Span>,
    changed: bool,
}

impl Walk<'_> {
    /// Rules applying at `level`, and whether anything can apply at or
    /// below it (if not, the subtree is skipped).
    fn applicable(&self, level: usize) -> (u128, bool) {
        let k = self.rs.paths.len();
        let mut here = self.base;
        let mut live = self.base != 0;
        for (j, p) in self.rs.paths.iter().enumerate() {
            let state = self.states.get(level * k + j).copied().unwrap_or(0);
            live |= state != 0;
            if p.pattern.is_match(state) {
                here |= 1u128 << p.rule;
            }
        }
        (here, live)
    }

    /// Pushes the states of the child `seg` of the node at `level`.
    fn enter(&mut self, level: usize, seg: Seg<'_>) {
        let k = self.rs.paths.len();
        self.states.truncate((level + 1) * k);
        for (j, p) in self.rs.paths.iter().enumerate() {
            let state = self.states.get(level * k + j).copied().unwrap_or(0);
            let next = if state == 0 {
                0
            } else {
                p.pattern.step(state, seg)
            };
            self.states.push(next);
        }
    }

    fn mask_text(&mut self, text: &str, applicable: u128) -> Outcome {
        self.masker
            .apply(self.rs, text, applicable, &mut self.spans)
    }

    /// Masks the node at `level`; returns true when it must be dropped.
    fn node(&mut self, v: &mut Value, depth: usize, level: usize) -> bool {
        let (here, live) = self.applicable(level);
        if !live {
            return false;
        }
        if depth > MAX_DEPTH {
            self.masker.deep.fetch_add(1, Ordering::Relaxed);
            *v = Value::String("[REDACTED:depth]".to_string());
            self.changed = true;
            return false;
        }
        match v {
            Value::String(s) => match self.mask_text(s, here) {
                Outcome::Clean => false,
                Outcome::Drop => true,
                Outcome::Masked(m) => {
                    *s = m;
                    self.changed = true;
                    false
                }
            },
            Value::Number(n) if here != 0 => match self.mask_text(&n.to_string(), here) {
                Outcome::Clean => false,
                Outcome::Drop => true,
                Outcome::Masked(m) => {
                    *v = Value::String(m);
                    self.changed = true;
                    false
                }
            },
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.enter(level, Seg::Index(i));
                    if self.node(item, depth + 1, level + 1) {
                        *item = Value::Null;
                        self.changed = true;
                    }
                }
                false
            }
            Value::Object(map) => {
                let mut drops: Vec<String> = Vec::new();
                let mut renames: Vec<(String, String)> = Vec::new();
                for (key, child) in map.iter_mut() {
                    self.enter(level, Seg::Key(key));
                    if self.node(child, depth + 1, level + 1) {
                        drops.push(key.clone());
                        continue;
                    }
                    if self.base != 0 {
                        match self.mask_text(key, self.base) {
                            Outcome::Clean => {}
                            Outcome::Drop => drops.push(key.clone()),
                            Outcome::Masked(m) => renames.push((key.clone(), m)),
                        }
                    }
                }
                for key in drops {
                    map.remove(&key);
                    self.changed = true;
                }
                for (old, new) in renames {
                    if let Some(val) = map.remove(&old) {
                        let mut name = new.clone();
                        let mut n = 2usize;
                        while map.contains_key(&name) {
                            name = format!("{new}#{n}");
                            n += 1;
                        }
                        map.insert(name, val);
                        self.changed = true;
                    }
                }
                false
            }
            _ => false,
        }
    }
}
