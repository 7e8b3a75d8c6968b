//! Replayer state and key handling, independent of the terminal and of
//! drawing: the terminal loop feeds it keys and ticks, `render` draws it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::cache::{CacheStats, MAX_PAGES, PageCache};
use crate::event::{EventKind, ReplayEvent};
use crate::index::TimelineIndex;
use crate::playback::{Playback, speed_label};
use crate::source::{Integrity, SessionInfo, Source, SourceError};
use crate::timefmt::{format_offset, parse_offset};

/// How far (in events) the detail pane looks for a tool call's result.
pub(crate) const PAIR_WINDOW: u64 = 1024;

/// Replayer settings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Idle gaps longer than this play as this long (`None`: play real gaps).
    pub max_gap: Option<Duration>,
    /// Poll the source for new events.
    pub follow: bool,
    /// How often to poll when following.
    pub refresh_every: Duration,
    /// Start playing immediately.
    pub autoplay: bool,
    /// Directory `y`/`c` write events to.
    pub export_dir: PathBuf,
    /// Pages of 256 events kept in memory at most.
    pub max_pages: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            max_gap: Some(Duration::from_secs(2)),
            follow: false,
            refresh_every: Duration::from_secs(1),
            autoplay: false,
            export_dir: PathBuf::from("."),
            max_pages: MAX_PAGES,
        }
    }
}

/// What keys currently go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    Normal,
    Help,
    Search(String),
    Goto(String),
    KindPicker { cursor: usize, chosen: Vec<bool> },
}

/// A message in the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) text: String,
    pub(crate) error: bool,
}

/// The replayer's state.
pub struct App {
    pub(crate) source: Box<dyn Source>,
    pub(crate) info: SessionInfo,
    pub(crate) index: TimelineIndex,
    pub(crate) integrity: Integrity,
    cache: PageCache,
    pub(crate) opts: ReplayOptions,
    pub(crate) playback: Playback,
    /// Session position of the selected event.
    pub(crate) cursor: u64,
    /// Positions shown when a kind filter is on (sorted).
    pub(crate) view: Option<Vec<u64>>,
    /// Time offsets of the positions in `view`: with a filter on, playback
    /// runs over the shown events only, so idle-gap compression applies to
    /// the gaps between them and hidden events cost no time.
    view_offsets: Vec<i64>,
    pub(crate) filter: Vec<EventKind>,
    /// First visible timeline row.
    pub(crate) top: u64,
    pub(crate) timeline_height: u16,
    pub(crate) detail_scroll: u16,
    pub(crate) mode: Mode,
    last_query: Option<String>,
    pub(crate) status: Option<Status>,
    quit: bool,
    since_integrity_poll: Duration,
    pair_memo: Option<(u64, Option<Arc<ReplayEvent>>)>,
}

impl App {
    /// Opens a session: reads the header, the flat index and the integrity
    /// verdict; no event page is read until something is drawn.
    pub fn new(mut source: Box<dyn Source>, opts: ReplayOptions) -> Result<App, SourceError> {
        let info = source.info();
        let index = source.index()?;
        let integrity = source.integrity();
        let mut playback = Playback::new(opts.max_gap);
        playback.playing = opts.autoplay && !index.is_empty();
        Ok(App {
            cache: PageCache::new(opts.max_pages),
            source,
            info,
            index,
            integrity,
            opts,
            playback,
            cursor: 0,
            view: None,
            view_offsets: Vec::new(),
            filter: Vec::new(),
            top: 0,
            timeline_height: 10,
            detail_scroll: 0,
            mode: Mode::Normal,
            last_query: None,
            status: None,
            quit: false,
            since_integrity_poll: Duration::ZERO,
            pair_memo: None,
        })
    }

    /// Whether `q` was pressed.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Session position of the selected event.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Whether playback is running.
    pub fn is_playing(&self) -> bool {
        self.playback.playing
    }

    /// Current playback speed multiplier.
    pub fn speed(&self) -> f64 {
        self.playback.speed()
    }

    /// The status line text, if any.
    pub fn status(&self) -> Option<&str> {
        self.status.as_ref().map(|s| s.text.as_str())
    }

    /// Page cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Number of events in the session.
    pub fn len(&self) -> u64 {
        self.index.len()
    }

    /// Whether the session is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    // ---- rows (the filtered or full timeline) ----

    pub(crate) fn row_count(&self) -> u64 {
        match &self.view {
            Some(v) => v.len() as u64,
            None => self.index.len(),
        }
    }

    pub(crate) fn row_pos(&self, row: u64) -> Option<u64> {
        match &self.view {
            Some(v) => v.get(row as usize).copied(),
            None => (row < self.index.len()).then_some(row),
        }
    }

    /// Row of the last shown event at or before `pos` (the first row if none).
    pub(crate) fn row_of(&self, pos: u64) -> u64 {
        match &self.view {
            Some(v) => v.partition_point(|&p| p <= pos).saturating_sub(1) as u64,
            None => pos.min(self.index.len().saturating_sub(1)),
        }
    }

    fn visible(&self, pos: u64) -> bool {
        match &self.view {
            Some(v) => v.binary_search(&pos).is_ok(),
            None => pos < self.index.len(),
        }
    }

    /// The event at `pos`, through the page cache. A read error goes to the
    /// status line.
    pub(crate) fn event_at(&mut self, pos: u64) -> Option<Arc<ReplayEvent>> {
        match self.cache.get(self.source.as_mut(), pos) {
            Ok(e) => e,
            Err(err) => {
                self.set_error(format!("reading event {pos}: {err}"));
                None
            }
        }
    }

    fn set_status(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    fn set_error(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    /// Selects session position `pos` (a manual move: playback continues from there).
    fn select(&mut self, pos: u64) {
        if pos != self.cursor {
            self.detail_scroll = 0;
        }
        self.cursor = pos;
        self.seek_playback(pos);
    }

    /// Puts the playhead on session position `pos`. Playback counts in
    /// rows of the shown timeline (positions when no filter is on).
    fn seek_playback(&mut self, pos: u64) {
        let at = if self.view.is_some() {
            self.row_of(pos)
        } else {
            pos
        };
        self.playback.seek(at);
    }

    fn select_row(&mut self, row: u64) {
        if let Some(pos) = self.row_pos(row) {
            self.select(pos);
        }
    }

    fn step(&mut self, delta: i64) {
        let rows = self.row_count();
        if rows == 0 {
            return;
        }
        let row = self.row_of(self.cursor) as i64;
        let target = (row + delta).clamp(0, rows as i64 - 1) as u64;
        self.select_row(target);
    }

    // ---- keys ----

    /// Handles one key press.
    pub fn handle_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        match self.mode.clone() {
            Mode::Normal => self.normal_key(key),
            Mode::Help => match key.code {
                KeyCode::Char('q') => self.quit = true,
                _ => self.mode = Mode::Normal,
            },
            Mode::Search(text) => {
                if let Some(done) = self.edit_prompt(key, text, Mode::Search) {
                    self.mode = Mode::Normal;
                    if !done.is_empty() {
                        self.last_query = Some(done);
                        self.search_next(true);
                    }
                }
            }
            Mode::Goto(text) => {
                if let Some(done) = self.edit_prompt(key, text, Mode::Goto) {
                    self.mode = Mode::Normal;
                    self.goto(&done);
                }
            }
            Mode::KindPicker { cursor, chosen } => self.picker_key(key, cursor, chosen),
        }
    }

    /// Line editing for `/` and `:`; returns the text on Enter.
    fn edit_prompt(
        &mut self,
        key: KeyEvent,
        mut text: String,
        wrap: fn(String) -> Mode,
    ) -> Option<String> {
        match key.code {
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                None
            }
            KeyCode::Enter => Some(text),
            KeyCode::Backspace => {
                text.pop();
                self.mode = wrap(text);
                None
            }
            KeyCode::Char(c) => {
                text.push(c);
                self.mode = wrap(text);
                None
            }
            _ => None,
        }
    }

    fn normal_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Esc => self.status = None,
            KeyCode::Char(' ') => self.toggle_play(),
            KeyCode::Char('+') | KeyCode::Char('=') => {
                self.playback.faster();
                self.set_status(format!("speed {}", speed_label(self.playback.speed())));
            }
            KeyCode::Char('-') | KeyCode::Char('_') => {
                self.playback.slower();
                self.set_status(format!("speed {}", speed_label(self.playback.speed())));
            }
            KeyCode::Char('d') if ctrl => self.scroll_detail(10),
            KeyCode::Char('u') if ctrl => self.scroll_detail(-10),
            KeyCode::Right | KeyCode::Down | KeyCode::Char('l') | KeyCode::Char('j') => {
                self.step(1)
            }
            KeyCode::Left | KeyCode::Up | KeyCode::Char('h') | KeyCode::Char('k') => self.step(-1),
            KeyCode::PageDown => self.step(self.timeline_height.max(1) as i64),
            KeyCode::PageUp => self.step(-(self.timeline_height.max(1) as i64)),
            KeyCode::Char('g') | KeyCode::Home => self.select_row(0),
            KeyCode::Char('G') | KeyCode::End => {
                self.select_row(self.row_count().saturating_sub(1))
            }
            KeyCode::Char('J') => self.scroll_detail(3),
            KeyCode::Char('K') => self.scroll_detail(-3),
            KeyCode::Char(':') => self.mode = Mode::Goto(String::new()),
            KeyCode::Char('/') => self.mode = Mode::Search(String::new()),
            KeyCode::Char('n') => self.search_next(true),
            KeyCode::Char('N') => self.search_next(false),
            KeyCode::Char('t') => self.jump_kind(EventKind::ToolCall, true),
            KeyCode::Char('T') => self.jump_kind(EventKind::ToolCall, false),
            KeyCode::Char('e') => self.jump_kind(EventKind::Error, true),
            KeyCode::Char('E') => self.jump_kind(EventKind::Error, false),
            KeyCode::Char('f') => {
                let chosen = EventKind::ALL
                    .iter()
                    .map(|k| self.filter.contains(k))
                    .collect();
                self.mode = Mode::KindPicker { cursor: 0, chosen };
            }
            KeyCode::Char('y') | KeyCode::Char('c') => self.copy_selected(),
            _ => {}
        }
    }

    fn scroll_detail(&mut self, delta: i32) {
        self.detail_scroll = (self.detail_scroll as i32 + delta).clamp(0, u16::MAX as i32) as u16;
    }

    fn toggle_play(&mut self) {
        if self.index.is_empty() {
            return;
        }
        if self.playback.playing {
            self.playback.playing = false;
            self.set_status("paused");
            return;
        }
        if self.row_of(self.cursor) + 1 >= self.row_count() && !self.opts.follow {
            self.select_row(0);
        }
        self.seek_playback(self.cursor);
        self.playback.playing = true;
        self.set_status(format!("playing {}", speed_label(self.playback.speed())));
    }

    // ---- playback and polling ----

    /// Advances playback by `elapsed` wall time and polls the integrity
    /// verdict. Returns whether anything visible changed.
    pub fn tick(&mut self, elapsed: Duration) -> bool {
        let mut changed = false;
        // Polled always, not only while checking: a followed session's new
        // events are checked after the first verdict, and a source may
        // revise it (a later failure).
        self.since_integrity_poll += elapsed;
        if self.since_integrity_poll >= Duration::from_millis(500) {
            self.since_integrity_poll = Duration::ZERO;
            let now = self.source.integrity();
            changed |= now != self.integrity;
            self.integrity = now;
        }
        let offsets = match &self.view {
            Some(_) => &self.view_offsets[..],
            None => self.index.offsets(),
        };
        if self.playback.tick(offsets, elapsed) {
            if let Some(shown) = self.row_pos(self.playback.pos)
                && shown != self.cursor
            {
                self.cursor = shown;
                self.detail_scroll = 0;
            }
            changed = true;
        }
        if self.playback.playing && !self.opts.follow && self.playback.pos + 1 >= self.row_count() {
            self.playback.playing = false;
            self.set_status("end of session");
            changed = true;
        }
        changed
    }

    /// Asks the source for new events (`--follow`) and indexes them. Returns
    /// whether the session grew.
    pub fn refresh(&mut self) -> bool {
        let grew = match self.source.refresh() {
            Ok(g) => g,
            Err(e) => {
                self.set_error(format!("refresh: {e}"));
                return false;
            }
        };
        if !grew {
            return false;
        }
        let old_len = self.index.len();
        let new_len = self.source.len();
        let was_at_end = old_len == 0 || self.cursor + 1 >= old_len;
        let mut at = old_len;
        while at < new_len {
            match self.source.page(at, 1024) {
                Ok(page) if !page.is_empty() => {
                    at += page.len() as u64;
                    for e in &page {
                        self.index.push(e);
                        if let Some(view) = &mut self.view
                            && self.filter.contains(&e.event_kind())
                        {
                            let pos = self.index.len() - 1;
                            view.push(pos);
                            self.view_offsets.push(self.index.offset_us(pos));
                        }
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    self.set_error(format!("refresh: {e}"));
                    break;
                }
            }
        }
        self.info = self.source.info();
        self.integrity = self.source.integrity();
        if was_at_end && !self.playback.playing {
            let last = self.row_count().saturating_sub(1);
            self.select_row(last);
        }
        true
    }

    // ---- search, jumps, time ----

    /// Next (`forward`) or previous match after/before the selected event,
    /// wrapping around the session once; the selected event itself is the
    /// last candidate. Matches hidden by the kind filter are skipped.
    fn search_next(&mut self, forward: bool) {
        let Some(query) = self.last_query.clone() else {
            self.set_error("no search yet: press / to search");
            return;
        };
        let len = self.index.len();
        if len == 0 {
            return;
        }
        let start = self.cursor;
        let mut from = if forward {
            Some(start + 1)
        } else {
            start.checked_sub(1)
        };
        let mut wrapped = false;
        loop {
            let hit = match from {
                Some(f) if f < len => match self.source.search(&query, f, forward) {
                    Ok(h) => h,
                    Err(e) => {
                        self.set_error(format!("search: {e}"));
                        return;
                    }
                },
                _ => None,
            };
            match hit {
                Some(p) => {
                    let passed = if forward { p > start } else { p < start };
                    if wrapped && passed {
                        break;
                    }
                    if self.visible(p) {
                        self.select(p);
                        let note = if wrapped { " (wrapped)" } else { "" };
                        self.set_status(format!("/{query}: match at #{}{note}", p + 1));
                        return;
                    }
                    from = if forward {
                        Some(p + 1)
                    } else {
                        p.checked_sub(1)
                    };
                }
                None if wrapped => break,
                None => {
                    wrapped = true;
                    from = Some(if forward { 0 } else { len - 1 });
                }
            }
        }
        self.set_error(format!("/{query}: no match"));
    }

    fn jump_kind(&mut self, kind: EventKind, forward: bool) {
        let label = kind.as_str();
        if !self.filter.is_empty() && !self.filter.contains(&kind) {
            self.set_error(format!("{label} events are hidden by the kind filter (f)"));
            return;
        }
        match self.index.find_kind(&[kind], self.cursor, forward) {
            Some(pos) => {
                self.select(pos);
                self.set_status(format!("{label} at #{}", pos + 1));
            }
            None => {
                let dir = if forward { "next" } else { "previous" };
                self.set_error(format!("no {dir} {label}"));
            }
        }
    }

    fn goto(&mut self, text: &str) {
        let Some(t) = parse_offset(text) else {
            self.set_error(format!(
                "cannot read time offset {text:?} (try 1m30s, 90 or 1:30)"
            ));
            return;
        };
        if self.index.is_empty() {
            return;
        }
        let pos = self.index.position_at(t);
        let row = self.row_of(pos);
        self.select_row(row);
        let long = self.index.span_us() >= 3_600_000_000;
        self.set_status(format!(
            "at {} (#{})",
            format_offset(self.index.offset_us(self.cursor), long),
            self.cursor + 1
        ));
    }

    // ---- kind filter ----

    fn picker_key(&mut self, key: KeyEvent, mut cursor: usize, mut chosen: Vec<bool>) {
        let n = chosen.len();
        match key.code {
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                return;
            }
            KeyCode::Char('q') => {
                self.quit = true;
                return;
            }
            KeyCode::Up | KeyCode::Char('k') => cursor = cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => cursor = (cursor + 1).min(n - 1),
            KeyCode::Char(' ') | KeyCode::Char('x') => chosen[cursor] = !chosen[cursor],
            KeyCode::Char('a') => {
                let all = chosen.iter().all(|c| *c);
                chosen.iter_mut().for_each(|c| *c = !all);
            }
            KeyCode::Enter => {
                let kinds: Vec<EventKind> = EventKind::ALL
                    .iter()
                    .zip(&chosen)
                    .filter(|(_, c)| **c)
                    .map(|(k, _)| *k)
                    .collect();
                self.mode = Mode::Normal;
                self.set_filter(kinds);
                return;
            }
            _ => {}
        }
        self.mode = Mode::KindPicker { cursor, chosen };
    }

    /// Shows only events of `kinds` (empty or every kind: no filter).
    pub fn set_filter(&mut self, kinds: Vec<EventKind>) {
        self.top = 0;
        if kinds.is_empty() || kinds.len() == EventKind::ALL.len() {
            self.filter.clear();
            self.view = None;
            self.view_offsets = Vec::new();
            self.seek_playback(self.cursor);
            self.set_status("filter off: all kinds");
            return;
        }
        let view = self.index.positions_of(&kinds);
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        self.set_status(format!(
            "filter: {} ({} events)",
            names.join(","),
            view.len()
        ));
        self.filter = kinds;
        self.view_offsets = view.iter().map(|&p| self.index.offset_us(p)).collect();
        self.view = Some(view);
        let row = self.row_of(self.cursor);
        if let Some(pos) = self.row_pos(row) {
            self.cursor = pos;
            self.detail_scroll = 0;
        }
        self.seek_playback(self.cursor);
    }

    // ---- copy ----

    fn copy_selected(&mut self) {
        if self.row_count() == 0 {
            return;
        }
        let Some(event) = self.event_at(self.cursor) else {
            return;
        };
        let session: String = self
            .info
            .session_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self
            .opts
            .export_dir
            .join(format!("tracevault-event-{session}-{}.json", event.idx));
        match std::fs::write(&path, event.to_pretty_json()) {
            Ok(()) => self.set_status(format!("copied to {}", path.display())),
            Err(e) => self.set_error(format!("cannot write {}: {e}", path.display())),
        }
    }

    // ---- tool call pairing ----

    /// For a tool call, its result; for a tool result, its call. Matched on
    /// span ids first (`parent_span_id` or `span_id` equal to the other's
    /// `span_id`), else the nearest one with the same name, within
    /// [`PAIR_WINDOW`] events.
    pub(crate) fn paired(&mut self, pos: u64) -> Option<Arc<ReplayEvent>> {
        if let Some((p, found)) = &self.pair_memo
            && *p == pos
        {
            return found.clone();
        }
        let found = self.find_pair(pos);
        self.pair_memo = Some((pos, found.clone()));
        found
    }

    fn find_pair(&mut self, pos: u64) -> Option<Arc<ReplayEvent>> {
        let event = self.event_at(pos)?;
        let (want, forward) = match event.event_kind() {
            EventKind::ToolCall => (EventKind::ToolResult, true),
            EventKind::ToolResult => (EventKind::ToolCall, false),
            _ => return None,
        };
        let len = self.index.len();
        let candidates: Vec<u64> = if forward {
            (pos + 1..len.min(pos + 1 + PAIR_WINDOW)).collect()
        } else {
            (pos.saturating_sub(PAIR_WINDOW)..pos).rev().collect()
        };
        let related = |a: &ReplayEvent, b: &ReplayEvent| {
            let same = |x: &Option<String>, y: &Option<String>| matches!((x, y), (Some(x), Some(y)) if x == y);
            same(&a.parent_span_id, &b.span_id)
                || same(&b.parent_span_id, &a.span_id)
                || same(&a.span_id, &b.span_id)
        };
        let has_span = |e: &ReplayEvent| e.span_id.is_some() || e.parent_span_id.is_some();
        let mut by_name = None;
        for p in candidates {
            if self.index.kind(p) != want {
                continue;
            }
            let Some(other) = self.event_at(p) else {
                continue;
            };
            if related(&event, &other) {
                return Some(other);
            }
            if by_name.is_none()
                && other.name.is_some()
                && other.name == event.name
                && !(has_span(&event) && has_span(&other))
            {
                if !has_span(&event) {
                    // Nothing can match on spans: the nearest same-named one it is.
                    return Some(other);
                }
                by_name = Some(other);
            }
        }
        by_name
    }
}
