//! A flat per-event index of the session (time offset and kind, 9 bytes per
//! event) plus the `session_seq` gaps. It is what time seeking, playback,
//! kind jumps and kind filters use, so none of them need to load events.

use crate::event::{EventKind, ReplayEvent};

/// A hole (or a step back) in `session_seq` between two consecutive events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqGap {
    /// Position of the event after the gap.
    pub pos: u64,
    /// `session_seq` of the event before the gap (`None` at the session start).
    pub before: Option<u64>,
    /// `session_seq` of the event after the gap.
    pub after: u64,
}

impl std::fmt::Display for SeqGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.before {
            Some(b) => write!(f, "GAP: session_seq {b}\u{2192}{}", self.after),
            None => write!(f, "GAP: session starts at session_seq {}", self.after),
        }
    }
}

/// Time offsets (microseconds from the first event), kinds and seq gaps of
/// every event, in session order.
#[derive(Debug, Clone, Default)]
pub struct TimelineIndex {
    base_us: Option<i64>,
    offsets_us: Vec<i64>,
    kinds: Vec<u8>,
    last_seq: Option<u64>,
    gaps: Vec<SeqGap>,
    unsorted: bool,
}

impl TimelineIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the index from events in session order.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ReplayEvent>) -> Self {
        let mut index = Self::new();
        for e in events {
            index.push(e);
        }
        index
    }

    /// Appends the next event of the session.
    pub fn push(&mut self, e: &ReplayEvent) {
        let t = e.time_us();
        let base = *self.base_us.get_or_insert(t);
        let pos = self.offsets_us.len() as u64;
        let offset = t.saturating_sub(base);
        if self.offsets_us.last().is_some_and(|&prev| prev > offset) {
            self.unsorted = true;
        }
        self.offsets_us.push(offset);
        self.kinds.push(e.event_kind().code());
        let expected = self.last_seq.map_or(0, |s| s + 1);
        if e.session_seq != expected {
            self.gaps.push(SeqGap {
                pos,
                before: self.last_seq,
                after: e.session_seq,
            });
        }
        self.last_seq = Some(e.session_seq);
    }

    /// Number of events indexed.
    pub fn len(&self) -> u64 {
        self.offsets_us.len() as u64
    }

    /// Whether no event is indexed.
    pub fn is_empty(&self) -> bool {
        self.offsets_us.is_empty()
    }

    /// Every event's offset from the first event, microseconds.
    pub fn offsets(&self) -> &[i64] {
        &self.offsets_us
    }

    /// Offset of the event at `pos`, microseconds (0 when out of range).
    pub fn offset_us(&self, pos: u64) -> i64 {
        self.offsets_us.get(pos as usize).copied().unwrap_or(0)
    }

    /// Kind of the event at `pos`.
    pub fn kind(&self, pos: u64) -> EventKind {
        self.kinds
            .get(pos as usize)
            .map_or(EventKind::Other, |c| EventKind::from_code(*c))
    }

    /// Gaps in `session_seq`, in order.
    pub fn gaps(&self) -> &[SeqGap] {
        &self.gaps
    }

    /// Largest offset (the session's span), microseconds.
    pub fn span_us(&self) -> i64 {
        self.offsets_us.iter().copied().max().unwrap_or(0)
    }

    /// The last position whose offset is at or before `t_us` (0 if none).
    /// Offsets are usually sorted; a non-monotonic writer clock still gives a
    /// sensible answer (the last event at or before `t_us`, by a scan).
    pub fn position_at(&self, t_us: i64) -> u64 {
        if !self.unsorted {
            let n = self.offsets_us.partition_point(|&o| o <= t_us);
            return n.saturating_sub(1) as u64;
        }
        let mut best = 0;
        for (i, &o) in self.offsets_us.iter().enumerate() {
            if o <= t_us {
                best = i;
            }
        }
        best as u64
    }

    /// Next (`forward`) or previous position strictly after/before `from`
    /// whose kind is in `kinds`.
    pub fn find_kind(&self, kinds: &[EventKind], from: u64, forward: bool) -> Option<u64> {
        let codes: Vec<u8> = kinds.iter().map(|k| k.code()).collect();
        let from = from as usize;
        if forward {
            self.kinds
                .iter()
                .enumerate()
                .skip(from + 1)
                .find(|(_, c)| codes.contains(c))
                .map(|(i, _)| i as u64)
        } else {
            self.kinds[..from.min(self.kinds.len())]
                .iter()
                .rposition(|c| codes.contains(c))
                .map(|i| i as u64)
        }
    }

    /// All positions whose kind is in `kinds`.
    pub fn positions_of(&self, kinds: &[EventKind]) -> Vec<u64> {
        let codes: Vec<u8> = kinds.iter().map(|k| k.code()).collect();
        self.kinds
            .iter()
            .enumerate()
            .filter(|(_, c)| codes.contains(c))
            .map(|(i, _)| i as u64)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, kind: &str, t: i64) -> ReplayEvent {
        ReplayEvent::timeline_only(seq, seq, kind, Some(t), t)
    }

    #[test]
    fn offsets_kinds_gaps_and_lookups() {
        let mut events = vec![
            ev(0, "prompt", 1_000),
            ev(1, "tool_call", 3_000),
            ev(2, "tool_result", 3_000),
            ev(5, "error", 10_000),
            ev(6, "tool_call", 12_000),
        ];
        events[4].ts = None; // falls back to received_at
        let index = TimelineIndex::from_events(&events);
        assert_eq!(index.offsets(), &[0, 2_000, 2_000, 9_000, 11_000]);
        assert_eq!(index.kind(3), EventKind::Error);
        assert_eq!(
            index.gaps(),
            &[SeqGap {
                pos: 3,
                before: Some(2),
                after: 5
            }]
        );
        assert_eq!(index.gaps()[0].to_string(), "GAP: session_seq 2\u{2192}5");
        assert_eq!(index.position_at(2_500), 2, "last event at or before");
        assert_eq!(index.position_at(0), 0);
        assert_eq!(index.position_at(1_000_000), 4);
        assert_eq!(index.find_kind(&[EventKind::ToolCall], 0, true), Some(1));
        assert_eq!(index.find_kind(&[EventKind::ToolCall], 1, true), Some(4));
        assert_eq!(index.find_kind(&[EventKind::ToolCall], 4, true), None);
        assert_eq!(index.find_kind(&[EventKind::ToolCall], 4, false), Some(1));
        assert_eq!(index.find_kind(&[EventKind::ToolCall], 1, false), None);
        assert_eq!(
            index.positions_of(&[EventKind::ToolCall, EventKind::Error]),
            vec![1, 3, 4]
        );
        let late = TimelineIndex::from_events(&[ev(3, "prompt", 0)]);
        assert_eq!(
            late.gaps()[0].to_string(),
            "GAP: session starts at session_seq 3"
        );
    }
}
