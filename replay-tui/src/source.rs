//! Where the replayed events come from. A [`Source`] serves one session in
//! pages, a flat index for seeking, and the integrity verdict; the replayer
//! never holds more than a bounded number of pages.

use crate::event::ReplayEvent;
use crate::index::TimelineIndex;

/// Page size the default [`Source`] methods scan with.
const SCAN_PAGE: usize = 256;

/// What the header shows about the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// Session id.
    pub session_id: String,
    /// Namespace.
    pub namespace: String,
    /// Number of events when the source was opened.
    pub event_count: u64,
    /// Time of the first event, microseconds since the epoch, UTC.
    pub first_us: Option<i64>,
    /// Time of the last event, microseconds since the epoch, UTC.
    pub last_us: Option<i64>,
    /// Where the events come from (`server http://...`, `bundle x.tar`, `data dir`).
    pub origin: String,
}

/// The integrity verdict for the events shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// Every shown event's inclusion proof checked against a signed checkpoint.
    Verified {
        /// Size of the checkpoint the proofs were checked against.
        checkpoint_size: u64,
        /// Number of events checked.
        events_checked: u64,
    },
    /// Every shown event's leaf hash proven in a signed checkpoint, but not
    /// its values: a reader of the server gets neither salts nor records,
    /// so a server could show other values under a proven leaf hash
    /// (`--server`; `--bundle` and `--data` bind the values, and say
    /// [`Integrity::Verified`]).
    InLog {
        /// Size of the checkpoint the proofs were checked against.
        checkpoint_size: u64,
        /// Number of events whose leaf hash was proven.
        events_checked: u64,
    },
    /// A check failed.
    Failed {
        /// Log index of the first event that failed, when the failure is
        /// tied to one (a bad checkpoint signature is not).
        index: Option<u64>,
        /// What failed.
        reason: String,
    },
    /// Nothing was (or could be) checked.
    Unverified {
        /// Why not.
        reason: String,
    },
    /// Checking is still under way.
    Checking,
}

/// Errors a source reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// A page was asked for past the end.
    #[error("position {start} is past the end of the session ({len} events)")]
    OutOfRange {
        /// Requested start.
        start: u64,
        /// Session length.
        len: u64,
    },
    /// The source could not be read (network, file).
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// The source returned data that could not be understood.
    #[error("bad event data: {0}")]
    Data(String),
}

/// The positions a page of `count` events from `start` covers in a session
/// of `len`: the [`Source::page`] rule every source follows. A start at or
/// past the end is [`SourceError::OutOfRange`] (an empty page would read as
/// "no more events" where the caller asked past the end); a page holds at
/// least one event and stops at the end.
pub fn page_range(
    start: u64,
    count: usize,
    len: u64,
) -> Result<std::ops::Range<usize>, SourceError> {
    if start >= len {
        return Err(SourceError::OutOfRange { start, len });
    }
    let start = start as usize;
    Ok(start..start.saturating_add(count.max(1)).min(len as usize))
}

/// One session's events, in session order, positions `0..len()`.
///
/// Sync on purpose: a server source blocks on its HTTP calls internally.
pub trait Source {
    /// Header information.
    fn info(&self) -> SessionInfo;

    /// Number of events available now.
    fn len(&self) -> u64;

    /// Whether the session has no event.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `count` events starting at position `start`.
    fn page(&mut self, start: u64, count: usize) -> Result<Vec<ReplayEvent>, SourceError>;

    /// The flat index (time offsets, kinds, seq gaps) of every event. The
    /// default reads every page once; sources that can ask for the few columns
    /// involved should override it.
    fn index(&mut self) -> Result<TimelineIndex, SourceError> {
        let mut index = TimelineIndex::new();
        let len = self.len();
        let mut at = 0;
        while at < len {
            let page = self.page(at, SCAN_PAGE * 4)?;
            if page.is_empty() {
                break;
            }
            at += page.len() as u64;
            for e in &page {
                index.push(e);
            }
        }
        Ok(index)
    }

    /// The integrity verdict; may be [`Integrity::Checking`] for a while, the
    /// replayer asks again.
    fn integrity(&mut self) -> Integrity;

    /// Looks for new events (`--follow`); returns whether `len()` grew.
    fn refresh(&mut self) -> Result<bool, SourceError> {
        Ok(false)
    }

    /// The first position at or after `from` (forward) or at or before `from`
    /// (backward) whose content, name, actor, kind, model or attributes contain
    /// `query`, case-insensitively. Does not wrap. The default scans pages.
    fn search(
        &mut self,
        query: &str,
        from: u64,
        forward: bool,
    ) -> Result<Option<u64>, SourceError> {
        let needle = query.to_lowercase();
        let len = self.len();
        if needle.is_empty() || len == 0 {
            return Ok(None);
        }
        if forward {
            let mut at = from;
            while at < len {
                let page = self.page(at, SCAN_PAGE)?;
                if page.is_empty() {
                    break;
                }
                if let Some(i) = page.iter().position(|e| e.matches(&needle)) {
                    return Ok(Some(at + i as u64));
                }
                at += page.len() as u64;
            }
        } else {
            let mut end = from.min(len - 1) + 1; // exclusive
            while end > 0 {
                let start = end.saturating_sub(SCAN_PAGE as u64);
                let page = self.page(start, (end - start) as usize)?;
                if let Some(i) = page.iter().rposition(|e| e.matches(&needle)) {
                    return Ok(Some(start + i as u64));
                }
                end = start;
            }
        }
        Ok(None)
    }
}

/// An in-memory source: tests, and bundle or data-directory readers that
/// have decoded a session.
#[derive(Debug, Clone)]
pub struct VecSource {
    info: SessionInfo,
    events: Vec<ReplayEvent>,
    integrity: Integrity,
    pending: Vec<ReplayEvent>,
}

impl VecSource {
    /// A source over `events` (in session order). `info.event_count`,
    /// `first_us` and `last_us` are filled in from the events.
    pub fn new(mut info: SessionInfo, events: Vec<ReplayEvent>, integrity: Integrity) -> Self {
        info.event_count = events.len() as u64;
        info.first_us = events.first().map(ReplayEvent::time_us);
        info.last_us = events.last().map(ReplayEvent::time_us);
        VecSource {
            info,
            events,
            integrity,
            pending: Vec::new(),
        }
    }

    /// Queues events that the next [`Source::refresh`] appends (to simulate
    /// a followed session).
    pub fn queue(&mut self, events: impl IntoIterator<Item = ReplayEvent>) {
        self.pending.extend(events);
    }

    /// Replaces the integrity verdict.
    pub fn set_integrity(&mut self, integrity: Integrity) {
        self.integrity = integrity;
    }
}

impl Source for VecSource {
    fn info(&self) -> SessionInfo {
        self.info.clone()
    }

    fn len(&self) -> u64 {
        self.events.len() as u64
    }

    fn page(&mut self, start: u64, count: usize) -> Result<Vec<ReplayEvent>, SourceError> {
        Ok(self.events[page_range(start, count, self.len())?].to_vec())
    }

    fn index(&mut self) -> Result<TimelineIndex, SourceError> {
        Ok(TimelineIndex::from_events(&self.events))
    }

    fn integrity(&mut self) -> Integrity {
        self.integrity.clone()
    }

    fn refresh(&mut self) -> Result<bool, SourceError> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        self.events.append(&mut self.pending);
        self.info.last_us = self.events.last().map(ReplayEvent::time_us);
        Ok(true)
    }
}
