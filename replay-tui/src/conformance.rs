//! The [`Source`] contract, as one check every source must pass: the
//! in-memory [`crate::VecSource`] (this crate's tests), the bundle and
//! server sources (`tests/replay_sources.rs` of the workspace), and the
//! data-directory source once it moves beside them (`check` is the hook).
//!
//! The contract is what the replayer relies on (`app.rs`, `cache.rs`): the
//! page cache files page `k` at positions `k * PAGE_SIZE..`, so a page must
//! hold exactly the positions asked for, no fewer; positions are never
//! asked for at or past `len()`, and a source that is asked anyway must say
//! so ([`SourceError::OutOfRange`]) rather than answer an empty page that
//! looks like "no more events"; the index drives seeking and filters, so it
//! has one entry per position.

use crate::{EventKind, ReplayEvent, Source, SourceError};

/// A way a source breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source contract broken: {0}")]
pub struct Violation(pub String);

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok { Ok(()) } else { Err(Violation(what())) }
}

/// A needle no event of a test session holds.
const ABSENT: &str = "zz-no-event-holds-this-zz";

/// Checks that `source` (opened, not refreshed) keeps the [`Source`]
/// contract:
///
/// - `info().event_count == len()`, `is_empty() == (len() == 0)`, and
///   `info()`'s first and last times are those of the first and last event;
/// - `page(start, count)` for `start < len()` and `count >= 1` holds exactly
///   positions `start..min(start + count, len())`, log indices strictly
///   ascending across the session;
/// - `page(len(), n)` and `page(len() + k, n)` fail with
///   [`SourceError::OutOfRange`] naming the start and the length, and the
///   source still serves pages afterwards;
/// - pages of any size concatenate to the same events as one page of the
///   whole session;
/// - `index()` has one entry per position, of the event's kind;
/// - `search` finds an event by its kind from its own position, both ways,
///   and finds nothing for text no event holds.
///
/// Reads the whole session: meant for test sessions of a few hundred events.
pub fn check(source: &mut dyn Source) -> Result<(), Violation> {
    let len = source.len();
    let info = source.info();
    ensure(info.event_count == len, || {
        format!("info().event_count {} but len() {len}", info.event_count)
    })?;
    ensure(source.is_empty() == (len == 0), || {
        format!("is_empty() {} but len() {len}", source.is_empty())
    })?;
    out_of_range(source, len)?;
    if len == 0 {
        return Ok(());
    }
    let all = page(source, 0, usize::try_from(len).unwrap_or(usize::MAX), len)?;
    ensure(all.windows(2).all(|w| w[0].idx < w[1].idx), || {
        "log indices are not strictly ascending".to_string()
    })?;
    ensure(
        info.first_us == all.first().map(ReplayEvent::time_us),
        || {
            format!(
                "info().first_us {:?} is not the first event's time",
                info.first_us
            )
        },
    )?;
    ensure(info.last_us == all.last().map(ReplayEvent::time_us), || {
        format!(
            "info().last_us {:?} is not the last event's time",
            info.last_us
        )
    })?;
    for size in [1, 3, 7, 256] {
        let mut joined = Vec::new();
        let mut at = 0;
        while at < len {
            joined.extend(page(source, at, size, len)?);
            at += size as u64;
        }
        ensure(joined == all, || {
            format!("pages of {size} events do not join into the whole session")
        })?;
    }
    // Still serving after being asked past the end.
    out_of_range(source, len)?;
    ensure(
        page(source, len - 1, 10, len)? == all[all.len() - 1..],
        || "the last page differs after an out-of-range request".to_string(),
    )?;
    index(source, &all)?;
    search(source, &all)
}

/// `page(start, count)`, which must hold exactly the positions asked for.
fn page(
    source: &mut dyn Source,
    start: u64,
    count: usize,
    len: u64,
) -> Result<Vec<ReplayEvent>, Violation> {
    let got = source
        .page(start, count)
        .map_err(|e| Violation(format!("page({start}, {count}): {e}")))?;
    let want = (len - start).min(count as u64);
    ensure(got.len() as u64 == want, || {
        format!(
            "page({start}, {count}) of {len} holds {} events, not {want}",
            got.len()
        )
    })?;
    Ok(got)
}

/// Pages at and past the end are refused as such.
fn out_of_range(source: &mut dyn Source, len: u64) -> Result<(), Violation> {
    for (start, count) in [(len, 1), (len, 100), (len + 1, 1), (len + 1000, 5)] {
        let got = source.page(start, count);
        ensure(got == Err(SourceError::OutOfRange { start, len }), || {
            format!(
                "page({start}, {count}) of {len} answered {:?}, not OutOfRange",
                got.as_ref().map(Vec::len)
            )
        })?;
    }
    Ok(())
}

/// One index entry per position, of that event's kind.
fn index(source: &mut dyn Source, all: &[ReplayEvent]) -> Result<(), Violation> {
    let index = source
        .index()
        .map_err(|e| Violation(format!("index(): {e}")))?;
    ensure(index.len() == all.len() as u64, || {
        format!(
            "index() has {} entries for {} events",
            index.len(),
            all.len()
        )
    })?;
    for (pos, e) in all.iter().enumerate() {
        let kind: EventKind = index.kind(pos as u64);
        ensure(kind == e.event_kind(), || {
            format!(
                "index() kind at {pos} is {kind:?}, the event's {:?}",
                e.event_kind()
            )
        })?;
    }
    Ok(())
}

/// Search by kind finds the event itself, both ways; absent text, nothing.
fn search(source: &mut dyn Source, all: &[ReplayEvent]) -> Result<(), Violation> {
    let len = all.len() as u64;
    for pos in [0, len / 2, len - 1] {
        let kind = all[pos as usize].kind.clone();
        for forward in [true, false] {
            let got = source
                .search(&kind, pos, forward)
                .map_err(|e| Violation(format!("search({kind:?}, {pos}): {e}")))?;
            ensure(got == Some(pos), || {
                format!("search({kind:?}, {pos}, forward {forward}) found {got:?}")
            })?;
        }
    }
    for (from, forward) in [(0, true), (len - 1, false)] {
        let got = source
            .search(ABSENT, from, forward)
            .map_err(|e| Violation(format!("search: {e}")))?;
        ensure(got.is_none(), || {
            format!("search for absent text found {got:?}")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Integrity, SessionInfo, VecSource};

    fn session(n: u64) -> VecSource {
        let kinds = [
            "prompt",
            "reasoning",
            "tool_call",
            "tool_result",
            "response",
        ];
        let events = (0..n)
            .map(|i| {
                let mut e = ReplayEvent::timeline_only(
                    3 * i + 1,
                    i,
                    kinds[i as usize % kinds.len()],
                    Some(1_000_000 * i as i64),
                    1_000_000 * i as i64,
                );
                e.content = Some(format!("event {i}"));
                e
            })
            .collect();
        VecSource::new(SessionInfo::default(), events, Integrity::Checking)
    }

    #[test]
    fn the_test_double_keeps_the_contract() {
        for n in [0, 1, 2, 300] {
            check(&mut session(n)).unwrap_or_else(|v| panic!("{n} events: {v}"));
        }
    }

    /// A source that answers an empty page at the end (as the test double
    /// once did) is caught.
    #[test]
    fn an_empty_page_at_the_end_is_a_violation() {
        struct EmptyAtEnd(VecSource);
        impl Source for EmptyAtEnd {
            fn info(&self) -> crate::SessionInfo {
                self.0.info()
            }
            fn len(&self) -> u64 {
                self.0.len()
            }
            fn page(&mut self, start: u64, count: usize) -> Result<Vec<ReplayEvent>, SourceError> {
                if start == self.len() {
                    return Ok(Vec::new());
                }
                self.0.page(start, count)
            }
            fn integrity(&mut self) -> Integrity {
                self.0.integrity()
            }
        }
        let v = check(&mut EmptyAtEnd(session(5))).unwrap_err();
        assert!(v.0.contains("not OutOfRange"), "{v}");
    }
}
