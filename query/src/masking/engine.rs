//! A profile's compiled rules and the detection pass: one `RegexSet` over
//! every detector of the profile answers "does anything match?" in a single
//! scan; only the detectors it names are then run to find, validate and
//! merge the spans to mask.

use std::ops::Range;

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::actions::Action;
use super::detectors::DetectorKind;
use super::jsonpath::PathPattern;

/// Rules per profile: the engine tracks applicable rules in a `u128`.
pub(crate) const MAX_RULES: usize = 128;
/// Compiled-size budget of the combined pre-check of one profile.
const SET_SIZE_LIMIT: usize = 32 << 20;
/// Compiled-size budget of one built-in detector.
const BUILTIN_SIZE_LIMIT: usize = 8 << 20;

/// Which string columns a rule applies to.
#[derive(Clone, Debug)]
pub(crate) enum Columns {
    /// `"*"`: every column.
    All,
    /// The named columns.
    Named(Vec<String>),
}

impl Columns {
    fn contains(&self, column: &str) -> bool {
        match self {
            Columns::All => true,
            Columns::Named(names) => names.iter().any(|n| n == column),
        }
    }
}

/// A validated rule, ready to compile. Custom rules bring their compiled
/// regex; built-in ones are compiled (once per kind) by [`RuleSet::compile`].
pub(crate) struct RuleSpec {
    pub(crate) kind: DetectorKind,
    pub(crate) custom: Option<Regex>,
    pub(crate) action: Action,
    pub(crate) label: String,
    pub(crate) columns: Columns,
    pub(crate) paths: Vec<PathPattern>,
}

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) kind: DetectorKind,
    pub(crate) action: Action,
    pub(crate) label: String,
    columns: Columns,
}

#[derive(Debug)]
struct Detector {
    kind: DetectorKind,
    regex: Regex,
    /// Bit `i` set when rule `i` uses this detector.
    rules: u128,
}

/// A path pattern and the rule it belongs to.
#[derive(Debug)]
pub(crate) struct PathRef {
    pub(crate) pattern: PathPattern,
    pub(crate) rule: usize,
}

/// A detected span after overlap merging, with the rule that decides how
/// it is masked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) range: Range<usize>,
    pub(crate) rule: usize,
    pub(crate) action: Action,
}

/// All rules of one profile, compiled.
#[derive(Debug)]
pub(crate) struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    detectors: Vec<Detector>,
    set: Option<RegexSet>,
    pub(crate) paths: Vec<PathRef>,
    /// Rules that have `paths`.
    pub(crate) path_rules: u128,
    /// Rules that apply to a plain string (a value at `$`): rules without
    /// paths, and rules with a path that is just `$`.
    pub(crate) root_rules: u128,
}

/// Why a rule set did not compile.
#[derive(Debug)]
pub(crate) enum CompileError {
    TooManyRules(usize),
    /// A built-in regex failed (a bug; the caller fails closed).
    Builtin(String),
    /// The combined pre-check is too large.
    Set(String),
}

impl RuleSet {
    /// Compiles rules in order; rule `i` gets bit `i` in every mask.
    pub(crate) fn compile(specs: Vec<RuleSpec>) -> Result<RuleSet, CompileError> {
        if specs.len() > MAX_RULES {
            return Err(CompileError::TooManyRules(specs.len()));
        }
        let mut rules = Vec::with_capacity(specs.len());
        let mut detectors: Vec<Detector> = Vec::new();
        let mut paths = Vec::new();
        let mut path_rules = 0u128;
        let mut root_rules = 0u128;
        for (i, spec) in specs.into_iter().enumerate() {
            let bit = 1u128 << i;
            let existing = detectors.iter_mut().find(|d| {
                d.kind == spec.kind
                    && match &spec.custom {
                        Some(re) => d.regex.as_str() == re.as_str(),
                        None => true,
                    }
            });
            match existing {
                Some(d) => d.rules |= bit,
                None => {
                    let regex = match (spec.custom, spec.kind.pattern()) {
                        (Some(re), _) => re,
                        (None, Some(p)) => RegexBuilder::new(p)
                            .size_limit(BUILTIN_SIZE_LIMIT)
                            .build()
                            .map_err(|e| CompileError::Builtin(e.to_string()))?,
                        (None, None) => {
                            return Err(CompileError::Builtin("custom rule without regex".into()));
                        }
                    };
                    detectors.push(Detector {
                        kind: spec.kind,
                        regex,
                        rules: bit,
                    });
                }
            }
            if spec.paths.is_empty() {
                root_rules |= bit;
            } else {
                path_rules |= bit;
                for pattern in spec.paths {
                    if pattern.is_match(PathPattern::START) {
                        root_rules |= bit;
                    }
                    paths.push(PathRef { pattern, rule: i });
                }
            }
            rules.push(Rule {
                kind: spec.kind,
                action: spec.action,
                label: spec.label,
                columns: spec.columns,
            });
        }
        let set = if detectors.is_empty() {
            None
        } else {
            let set = RegexSetBuilder::new(detectors.iter().map(|d| d.regex.as_str()))
                .size_limit(SET_SIZE_LIMIT)
                .build()
                .map_err(|e| CompileError::Set(e.to_string()))?;
            Some(set)
        };
        Ok(RuleSet {
            rules,
            detectors,
            set,
            paths,
            path_rules,
            root_rules,
        })
    }

    /// Rules that apply to `column`.
    pub(crate) fn column_mask(&self, column: &str) -> u128 {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.columns.contains(column))
            .fold(0, |m, (i, _)| m | (1u128 << i))
    }

    /// Finds what to mask in `text` under the `applicable` rules, into
    /// `spans` (cleared first): sorted, non-overlapping, each with its
    /// deciding rule. Overlapping detections are merged into their union
    /// (so no part of either leaks) and take the strictest action among
    /// them; on a tie, the earlier rule.
    pub(crate) fn find(&self, text: &str, applicable: u128, spans: &mut Vec<Span>) {
        spans.clear();
        let Some(set) = &self.set else { return };
        if applicable == 0 || text.is_empty() {
            return;
        }
        self.detect(set, text, applicable, spans);
        // Then the text folded (fullwidth forms, `%40`, invisible characters:
        // see `fold`), its detections mapped back onto the text as written.
        if let Some(folded) = super::fold::fold(text) {
            let mut more = Vec::new();
            self.detect(set, &folded.text, applicable, &mut more);
            spans.extend(more.into_iter().map(|s| Span {
                range: folded.original(s.range),
                ..s
            }));
        }
        merge(spans);
    }

    /// One detection pass over `text`, pushing unmerged spans.
    fn detect(&self, set: &RegexSet, text: &str, applicable: u128, spans: &mut Vec<Span>) {
        let hits = set.matches(text);
        if !hits.matched_any() {
            return;
        }
        for d in hits.iter() {
            let Some(det) = self.detectors.get(d) else {
                continue;
            };
            let mask = det.rules & applicable;
            if mask == 0 {
                continue;
            }
            let rule = mask.trailing_zeros() as usize;
            let Some(action) = self.rules.get(rule).map(|r| r.action) else {
                continue;
            };
            for m in det.regex.find_iter(text) {
                if let Some(range) = det.kind.validate(text, m.range()) {
                    spans.push(Span {
                        range,
                        rule,
                        action,
                    });
                }
            }
        }
    }
}

/// Sorts and merges overlapping spans in place.
fn merge(spans: &mut Vec<Span>) {
    if spans.len() < 2 {
        return;
    }
    spans.sort_by_key(|s| (s.range.start, s.rule));
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for next in spans.drain(..) {
        match merged.last_mut() {
            Some(cur) if next.range.start < cur.range.end => {
                cur.range.end = cur.range.end.max(next.range.end);
                let stricter =
                    next.action > cur.action || (next.action == cur.action && next.rule < cur.rule);
                if stricter {
                    cur.action = next.action;
                    cur.rule = next.rule;
                }
            }
            _ => merged.push(next),
        }
    }
    *spans = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: usize, end: usize, rule: usize, action: Action) -> Span {
        Span {
            range: start..end,
            rule,
            action,
        }
    }

    #[test]
    fn merge_unions_overlaps_and_keeps_strictest() {
        let mut v = vec![
            span(10, 20, 3, Action::Redact),
            span(0, 5, 1, Action::Hash),
            span(15, 30, 0, Action::Partial),
            span(30, 35, 2, Action::Drop),
        ];
        merge(&mut v);
        assert_eq!(
            v,
            vec![
                span(0, 5, 1, Action::Hash),
                span(10, 30, 3, Action::Redact),
                span(30, 35, 2, Action::Drop),
            ]
        );
    }

    #[test]
    fn merge_tie_goes_to_earlier_rule() {
        let mut v = vec![span(5, 9, 4, Action::Redact), span(5, 9, 1, Action::Redact)];
        merge(&mut v);
        assert_eq!(v, vec![span(5, 9, 1, Action::Redact)]);
    }
}
