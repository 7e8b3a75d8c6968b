//! A bounded LRU cache of event pages read through a [`Source`]: scrolling
//! through any number of events keeps at most `max_pages` pages in memory.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::ReplayEvent;
use crate::source::{Source, SourceError};

/// Events per page.
pub const PAGE_SIZE: usize = 256;
/// Pages kept at most.
pub const MAX_PAGES: usize = 32;

struct Page {
    events: Vec<Arc<ReplayEvent>>,
    last_used: u64,
}

/// Counters for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Pages held now.
    pub pages: usize,
    /// Events held now.
    pub events: usize,
    /// Pages read from the source since the start.
    pub loads: u64,
    /// Most pages ever held at once.
    pub peak_pages: usize,
}

/// LRU cache of pages of [`PAGE_SIZE`] events.
pub(crate) struct PageCache {
    pages: HashMap<u64, Page>,
    max_pages: usize,
    clock: u64,
    stats: CacheStats,
}

impl PageCache {
    pub(crate) fn new(max_pages: usize) -> Self {
        PageCache {
            pages: HashMap::new(),
            max_pages: max_pages.max(2),
            clock: 0,
            stats: CacheStats::default(),
        }
    }

    /// The event at `pos`, loading its page if needed.
    pub(crate) fn get(
        &mut self,
        source: &mut dyn Source,
        pos: u64,
    ) -> Result<Option<Arc<ReplayEvent>>, SourceError> {
        if pos >= source.len() {
            return Ok(None);
        }
        let page_no = pos / PAGE_SIZE as u64;
        let within = (pos % PAGE_SIZE as u64) as usize;
        self.clock += 1;
        let clock = self.clock;
        if let Some(page) = self.pages.get_mut(&page_no) {
            if within < page.events.len() {
                page.last_used = clock;
                return Ok(Some(page.events[within].clone()));
            }
            // A partial last page from before the session grew: reload it.
            self.pages.remove(&page_no);
        }
        let events = source.page(page_no * PAGE_SIZE as u64, PAGE_SIZE)?;
        self.stats.loads += 1;
        while self.pages.len() >= self.max_pages {
            let oldest = self
                .pages
                .iter()
                .min_by_key(|(_, p)| p.last_used)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.pages.remove(&k);
                }
                None => break,
            }
        }
        let events: Vec<Arc<ReplayEvent>> = events.into_iter().map(Arc::new).collect();
        let found = events.get(within).cloned();
        self.pages.insert(
            page_no,
            Page {
                events,
                last_used: clock,
            },
        );
        self.stats.peak_pages = self.stats.peak_pages.max(self.pages.len());
        Ok(found)
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            pages: self.pages.len(),
            events: self.pages.values().map(|p| p.events.len()).sum(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Integrity, SessionInfo, VecSource};

    fn source(n: u64) -> VecSource {
        let events = (0..n)
            .map(|i| ReplayEvent {
                idx: i,
                session_seq: i,
                kind: "message".into(),
                ts: Some(i as i64 * 1000),
                received_at: i as i64 * 1000,
                name: None,
                actor: None,
                model: None,
                ingested_by: None,
                event_id: format!("e{i}"),
                span_id: None,
                parent_span_id: None,
                content: Some(format!("event {i}")),
                content_type: "text".into(),
                attributes: None,
                masked: vec![],
                leaf_hash: String::new(),
            })
            .collect();
        VecSource::new(
            SessionInfo::default(),
            events,
            Integrity::Unverified { reason: "t".into() },
        )
    }

    #[test]
    fn stays_bounded_and_evicts_least_recently_used() {
        let mut src = source(100_000);
        let mut cache = PageCache::new(4);
        for pos in (0..100_000).step_by(97) {
            let e = cache.get(&mut src, pos).unwrap().unwrap();
            assert_eq!(e.idx, pos);
            assert!(cache.stats().pages <= 4);
            assert!(cache.stats().events <= 4 * PAGE_SIZE);
        }
        assert_eq!(cache.stats().peak_pages, 4);
        // Page 0 used recently stays; page 1 is evicted first.
        let mut cache = PageCache::new(2);
        cache.get(&mut src, 0).unwrap();
        cache.get(&mut src, 300).unwrap();
        cache.get(&mut src, 1).unwrap();
        cache.get(&mut src, 600).unwrap();
        let loads = cache.stats().loads;
        cache.get(&mut src, 2).unwrap();
        assert_eq!(cache.stats().loads, loads, "page 0 should still be cached");
        cache.get(&mut src, 301).unwrap();
        assert_eq!(cache.stats().loads, loads + 1, "page 1 was evicted");
        assert!(cache.get(&mut src, 100_000).unwrap().is_none());
    }
}
