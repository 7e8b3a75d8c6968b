//! The small JSONPath subset rules use to target parts of a JSON value.
//!
//! A path selects nodes; a rule applies to every string (and number) at or
//! below a selected node. Matching is streamed: each pattern is a tiny NFA
//! whose state (a bitmask of matched prefix lengths) is advanced one key or
//! index at a time while the masker walks the value, so no path is ever
//! materialised or allocated.
//!
//! Grammar: `$` followed by any of `.name`, `.*` (any member), `['name']`
//! (a name with dots or brackets), `[N]` (array index), `[*]` (any element),
//! `..name` / `..['name']` (member `name` at any depth below).

/// At most this many steps per path: states are `u64` bitmasks.
pub(crate) const MAX_STEPS: usize = 32;

/// One step of a compiled path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    AnyKey,
    Index(usize),
    AnyIndex,
    Descend(String),
}

/// One segment of the concrete location being visited.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Seg<'a> {
    /// A member of an object.
    Key(&'a str),
    /// An element of an array.
    Index(usize),
}

/// A compiled path pattern.
#[derive(Clone, Debug)]
pub(crate) struct PathPattern {
    steps: Vec<Step>,
}

impl PathPattern {
    /// The state at the root, before any segment.
    pub(crate) const START: u64 = 1;

    /// Parses a path, or says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<PathPattern, String> {
        let rest = text
            .strip_prefix('$')
            .ok_or_else(|| "must start with `$`".to_string())?;
        let mut steps = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            let (step, after) = if let Some(r) = rest.strip_prefix("..") {
                let (name, after) = if r.starts_with('[') {
                    bracket(r)?
                } else {
                    dotted(r)?
                };
                match name {
                    Some(Name::Key(k)) => (Step::Descend(k), after),
                    _ => return Err("`..` must be followed by a member name".into()),
                }
            } else if let Some(r) = rest.strip_prefix('.') {
                match dotted(r)? {
                    (Some(Name::Key(k)), after) => (Step::Key(k), after),
                    (_, after) => (Step::AnyKey, after),
                }
            } else if rest.starts_with('[') {
                match bracket(rest)? {
                    (Some(Name::Key(k)), after) => (Step::Key(k), after),
                    (Some(Name::Index(i)), after) => (Step::Index(i), after),
                    (None, after) => (Step::AnyIndex, after),
                }
            } else {
                return Err(format!("unexpected `{rest}`"));
            };
            steps.push(step);
            if steps.len() > MAX_STEPS {
                return Err(format!("more than {MAX_STEPS} steps"));
            }
            rest = after;
        }
        Ok(PathPattern { steps })
    }

    /// Advances `state` over one segment. Once the whole pattern has matched
    /// the state stays matched: everything below a selected node is
    /// selected.
    pub(crate) fn step(&self, state: u64, seg: Seg<'_>) -> u64 {
        let n = self.steps.len();
        let mut next = 0u64;
        for (i, step) in self.steps.iter().enumerate() {
            if state & (1 << i) == 0 {
                continue;
            }
            let advance = match (step, seg) {
                (Step::Key(k), Seg::Key(s)) => k == s,
                (Step::AnyKey, Seg::Key(_)) | (Step::AnyIndex, Seg::Index(_)) => true,
                (Step::Index(j), Seg::Index(i)) => *j == i,
                (Step::Descend(k), s) => {
                    next |= 1 << i;
                    matches!(s, Seg::Key(s) if s == k)
                }
                _ => false,
            };
            if advance {
                next |= 1 << (i + 1);
            }
        }
        next | (state & (1 << n))
    }

    /// True when `state` has matched the whole pattern.
    pub(crate) fn is_match(&self, state: u64) -> bool {
        state & (1 << self.steps.len()) != 0
    }
}

enum Name {
    Key(String),
    Index(usize),
}

/// `name` or `*` after a dot; returns `None` for `*`.
fn dotted(r: &str) -> Result<(Option<Name>, &str), String> {
    let end = r.find(['.', '[']).unwrap_or(r.len());
    let (name, after) = r.split_at(end);
    match name {
        "" => Err("empty member name".into()),
        "*" => Ok((None, after)),
        _ => Ok((Some(Name::Key(name.to_string())), after)),
    }
}

/// `[N]`, `[*]`, `['name']` or `["name"]`; returns `None` for `*`.
fn bracket(r: &str) -> Result<(Option<Name>, &str), String> {
    let inner = r.strip_prefix('[').unwrap_or(r);
    for quote in ['\'', '"'] {
        if let Some(q) = inner.strip_prefix(quote) {
            let end = q
                .find(quote)
                .ok_or_else(|| "unterminated quoted name".to_string())?;
            let (name, after) = q.split_at(end);
            let after = after
                .get(1..)
                .and_then(|a| a.strip_prefix(']'))
                .ok_or_else(|| "expected `]` after quoted name".to_string())?;
            if name.is_empty() {
                return Err("empty member name".into());
            }
            return Ok((Some(Name::Key(name.to_string())), after));
        }
    }
    let end = inner
        .find(']')
        .ok_or_else(|| "unterminated `[`".to_string())?;
    let (body, after) = inner.split_at(end);
    let after = after.get(1..).unwrap_or("");
    if body == "*" {
        return Ok((None, after));
    }
    let index = body
        .parse::<usize>()
        .map_err(|_| format!("`[{body}]` is not an index, `*` or a quoted name"))?;
    Ok((Some(Name::Index(index)), after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(p: &PathPattern, segs: &[Seg<'_>]) -> bool {
        let state = segs
            .iter()
            .fold(PathPattern::START, |s, seg| p.step(s, *seg));
        p.is_match(state)
    }

    #[test]
    fn exact_paths_select_subtrees() {
        let p = PathPattern::parse("$.user.email").unwrap();
        assert!(walk(&p, &[Seg::Key("user"), Seg::Key("email")]));
        assert!(walk(
            &p,
            &[Seg::Key("user"), Seg::Key("email"), Seg::Index(0)]
        ));
        assert!(!walk(&p, &[Seg::Key("user")]));
        assert!(!walk(&p, &[Seg::Key("email")]));
        assert!(!walk(
            &p,
            &[Seg::Key("x"), Seg::Key("user"), Seg::Key("email")]
        ));
    }

    #[test]
    fn descent_matches_at_any_depth() {
        let p = PathPattern::parse("$..token").unwrap();
        assert!(walk(&p, &[Seg::Key("token")]));
        assert!(walk(&p, &[Seg::Key("a"), Seg::Index(3), Seg::Key("token")]));
        assert!(!walk(&p, &[Seg::Key("a"), Seg::Key("tokens")]));
        let p = PathPattern::parse("$..auth.token").unwrap();
        assert!(walk(
            &p,
            &[Seg::Key("x"), Seg::Key("auth"), Seg::Key("token")]
        ));
        assert!(!walk(
            &p,
            &[Seg::Key("auth"), Seg::Key("x"), Seg::Key("token")]
        ));
    }

    #[test]
    fn wildcards_indices_and_quotes() {
        let p = PathPattern::parse("$.items[*].email").unwrap();
        assert!(walk(
            &p,
            &[Seg::Key("items"), Seg::Index(7), Seg::Key("email")]
        ));
        assert!(!walk(
            &p,
            &[Seg::Key("items"), Seg::Key("7"), Seg::Key("email")]
        ));
        let p = PathPattern::parse("$.items[1]").unwrap();
        assert!(walk(&p, &[Seg::Key("items"), Seg::Index(1)]));
        assert!(!walk(&p, &[Seg::Key("items"), Seg::Index(0)]));
        let p = PathPattern::parse("$['http.request'].*").unwrap();
        assert!(walk(&p, &[Seg::Key("http.request"), Seg::Key("h")]));
        assert!(!walk(&p, &[Seg::Key("http"), Seg::Key("request")]));
        let root = PathPattern::parse("$").unwrap();
        assert!(root.is_match(PathPattern::START));
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in [
            "user.email",
            "$.",
            "$..",
            "$..*",
            "$[x]",
            "$['a'",
            "$[1",
            "$a",
            "$.a..",
            "",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad} accepted");
        }
        let long = format!("${}", ".a".repeat(MAX_STEPS + 1));
        assert!(PathPattern::parse(&long).is_err());
    }
}
