//! App behaviour: navigation, search, jumps, playback, filters, copy,
//! follow, and memory staying flat on a 100k-event session.

mod common;

use std::time::{Duration, Instant};

use common::*;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tracevault_replay::cache::{MAX_PAGES, PAGE_SIZE};
use tracevault_replay::{
    App, EventKind, Integrity, ReplayEvent, ReplayOptions, SessionInfo, Source, SourceError,
    VecSource, render,
};

fn app(events: Vec<ReplayEvent>) -> App {
    App::new(
        Box::new(source(events, verified())),
        ReplayOptions::default(),
    )
    .unwrap()
}

fn key(app: &mut App, code: KeyCode) {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn keys(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

#[test]
fn stepping_and_jumping_to_ends() {
    let mut a = app(story());
    key(&mut a, KeyCode::Right);
    key(&mut a, KeyCode::Char('l'));
    key(&mut a, KeyCode::Char('j'));
    assert_eq!(a.cursor(), 3);
    key(&mut a, KeyCode::Left);
    key(&mut a, KeyCode::Char('h'));
    key(&mut a, KeyCode::Char('k'));
    key(&mut a, KeyCode::Up);
    assert_eq!(a.cursor(), 0, "stops at the start");
    key(&mut a, KeyCode::Char('G'));
    assert_eq!(a.cursor(), 5);
    key(&mut a, KeyCode::Down);
    assert_eq!(a.cursor(), 5, "stops at the end");
    key(&mut a, KeyCode::Char('g'));
    assert_eq!(a.cursor(), 0);
    key(&mut a, KeyCode::End);
    key(&mut a, KeyCode::Home);
    assert_eq!(a.cursor(), 0);
}

#[test]
fn search_next_previous_wraps_and_reports_no_match() {
    let mut events = big(50);
    events[10].content = Some("needle one".into());
    events[30].name = Some("NEEDLE-tool".into());
    events[40].actor = Some("needle-actor".into());
    let mut a = app(events);
    key(&mut a, KeyCode::Char('/'));
    keys(&mut a, "needle");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.cursor(), 10, "content match");
    keys(&mut a, "n");
    assert_eq!(a.cursor(), 30, "name match, case-insensitive");
    keys(&mut a, "n");
    assert_eq!(a.cursor(), 40, "actor match");
    keys(&mut a, "n");
    assert_eq!(a.cursor(), 10, "wraps to the start");
    assert!(a.status().unwrap().contains("wrapped"), "{:?}", a.status());
    keys(&mut a, "N");
    assert_eq!(a.cursor(), 40, "N wraps backwards");
    keys(&mut a, "N");
    assert_eq!(a.cursor(), 30);

    // The kind is searched too.
    key(&mut a, KeyCode::Char('/'));
    keys(&mut a, "error");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.cursor(), 30, "no error in 50 events: cursor stays");
    assert!(a.status().unwrap().contains("no match"));

    // The only match is the selected event: n keeps it, reporting a wrap.
    let mut a = app(story());
    key(&mut a, KeyCode::Char('/'));
    keys(&mut a, "shadow");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.cursor(), 5);
    keys(&mut a, "n");
    assert_eq!(a.cursor(), 5);
    // Esc cancels a prompt without searching.
    key(&mut a, KeyCode::Char('/'));
    keys(&mut a, "prompt");
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.cursor(), 5);
    keys(&mut a, "k");
    assert_eq!(a.cursor(), 4, "back in normal mode");
}

#[test]
fn default_source_search_scans_pages_both_ways() {
    let mut events = big(2000);
    events[700].content = Some("Marker".into());
    events[1500].content = Some("marker".into());
    let mut s = source(events, verified());
    assert_eq!(s.search("MARKER", 0, true).unwrap(), Some(700));
    assert_eq!(s.search("marker", 701, true).unwrap(), Some(1500));
    assert_eq!(s.search("marker", 1501, true).unwrap(), None, "no wrap");
    assert_eq!(s.search("marker", 1999, false).unwrap(), Some(1500));
    assert_eq!(s.search("marker", 1499, false).unwrap(), Some(700));
    assert_eq!(s.search("marker", 699, false).unwrap(), None);
    assert_eq!(s.search("", 0, true).unwrap(), None);
}

#[test]
fn kind_jumps() {
    let mut a = app(story());
    keys(&mut a, "t");
    assert_eq!(a.cursor(), 2);
    keys(&mut a, "t");
    assert_eq!(a.cursor(), 2, "no further tool call");
    assert!(a.status().unwrap().contains("no next tool_call"));
    keys(&mut a, "e");
    assert_eq!(a.cursor(), 5);
    keys(&mut a, "T");
    assert_eq!(a.cursor(), 2);
    keys(&mut a, "E");
    assert_eq!(a.cursor(), 2, "no error before");
    let mut b = app(big(5000));
    keys(&mut b, "e");
    assert_eq!(b.cursor(), 999);
    keys(&mut b, "e");
    assert_eq!(b.cursor(), 1999);
    keys(&mut b, "E");
    assert_eq!(b.cursor(), 999);
}

#[test]
fn time_offset_jump() {
    let mut a = app(story());
    key(&mut a, KeyCode::Char(':'));
    keys(&mut a, "1m5s");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.cursor(), 5);
    key(&mut a, KeyCode::Char(':'));
    keys(&mut a, "2.5");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.cursor(), 2, "the event current at 2.5 s");
    key(&mut a, KeyCode::Char(':'));
    keys(&mut a, "0:03");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.cursor(), 3);
    key(&mut a, KeyCode::Char(':'));
    keys(&mut a, "soon");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.cursor(), 3);
    assert!(a.status().unwrap().contains("cannot read time offset"));
}

#[test]
fn playback_follows_real_time_with_compressed_gaps() {
    let mut a = app(story());
    keys(&mut a, " ");
    assert!(a.is_playing());
    let step = Duration::from_millis(50);
    let mut elapsed = Duration::ZERO;
    let mut reached = vec![0];
    while a.is_playing() && elapsed < Duration::from_secs(30) {
        a.tick(step);
        elapsed += step;
        if reached.last() != Some(&a.cursor()) {
            reached.push(a.cursor());
            if a.cursor() == 4 {
                assert!(elapsed >= Duration::from_secs(4) && elapsed < Duration::from_millis(4100));
            }
        }
    }
    assert_eq!(reached, vec![0, 1, 2, 3, 4, 5]);
    // The 61 s idle gap played as 2 s.
    assert!(
        elapsed >= Duration::from_secs(6) && elapsed < Duration::from_millis(6100),
        "{elapsed:?}"
    );
    assert!(!a.is_playing(), "stops at the end");

    // Faster: 4x plays the same in a quarter of the time; pause holds still.
    let mut a = app(story());
    keys(&mut a, "++ ");
    assert_eq!(a.speed(), 4.0);
    a.tick(Duration::from_millis(1000));
    assert_eq!(a.cursor(), 4);
    keys(&mut a, " ");
    a.tick(Duration::from_secs(100));
    assert_eq!(a.cursor(), 4);
    keys(&mut a, "---");
    assert_eq!(a.speed(), 0.5);
}

#[test]
fn filter_limits_rows_steps_and_playback() {
    let mut a = app(story());
    a.set_filter(vec![EventKind::ToolCall, EventKind::Error]);
    assert_eq!(a.cursor(), 2, "snapped to the first shown event");
    keys(&mut a, "j");
    assert_eq!(a.cursor(), 5);
    keys(&mut a, "k");
    assert_eq!(a.cursor(), 2);
    keys(&mut a, "t");
    assert!(a.status().unwrap().contains("no next tool_call"));
    a.set_filter(vec![EventKind::Prompt]);
    keys(&mut a, "t");
    assert!(a.status().unwrap().contains("hidden by the kind filter"));
    a.set_filter(vec![]);
    keys(&mut a, "G");
    assert_eq!(a.cursor(), 5);
}

#[test]
fn filtered_playback_waits_only_between_shown_events() {
    // Prompt at 0 s, error at 65 s: shown alone, the 65 s between them is
    // one idle gap played as 2 s; the four hidden events cost nothing.
    let mut a = app(story());
    a.set_filter(vec![EventKind::Prompt, EventKind::Error]);
    keys(&mut a, "g ");
    assert!(a.is_playing());
    a.tick(Duration::from_millis(1900));
    assert_eq!(a.cursor(), 0);
    a.tick(Duration::from_millis(200));
    assert_eq!(a.cursor(), 5);
    assert!(!a.is_playing(), "stops at the last shown event");

    // Tool call (2 s) to error (65 s): also 2 s, from wherever play starts.
    let mut a = app(story());
    a.set_filter(vec![EventKind::ToolCall, EventKind::Error]);
    assert_eq!(a.cursor(), 2);
    keys(&mut a, " ");
    a.tick(Duration::from_millis(1900));
    assert_eq!(a.cursor(), 2);
    a.tick(Duration::from_millis(200));
    assert_eq!(a.cursor(), 5);

    // Play on the last shown event (later events hidden) starts over.
    a.set_filter(vec![EventKind::Prompt, EventKind::Response]);
    keys(&mut a, "G");
    assert_eq!(a.cursor(), 4);
    keys(&mut a, " ");
    assert!(a.is_playing());
    assert_eq!(a.cursor(), 0, "rewound to the first shown event");
    keys(&mut a, " ");
    assert!(!a.is_playing());

    // Filter off again: playback runs over every event (4 s from 0 to 4).
    a.set_filter(vec![]);
    keys(&mut a, "g ");
    a.tick(Duration::from_millis(3900));
    assert_eq!(a.cursor(), 3);
    a.tick(Duration::from_millis(200));
    assert_eq!(a.cursor(), 4);
}

#[test]
fn copy_writes_pretty_json() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ReplayOptions {
        export_dir: dir.path().to_path_buf(),
        ..ReplayOptions::default()
    };
    let mut a = App::new(Box::new(source(story(), verified())), opts).unwrap();
    keys(&mut a, "t");
    keys(&mut a, "y");
    let path = dir.path().join("tracevault-event-sess-42-1002.json");
    assert!(
        a.status().unwrap().contains(&path.display().to_string()),
        "{:?}",
        a.status()
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\n  \"idx\": 1002,"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["content"]["query"], "rust tui",
        "JSON content embedded as JSON"
    );
    assert_eq!(v["kind"], "tool_call");
}

#[test]
fn follow_appends_new_events() {
    let mut src = source(story(), verified());
    src.queue([
        event(6, "prompt", 70 * SEC, None, "again"),
        event(7, "response", 71 * SEC, None, "ok"),
    ]);
    let opts = ReplayOptions {
        follow: true,
        ..ReplayOptions::default()
    };
    let mut a = App::new(Box::new(src), opts).unwrap();
    keys(&mut a, "G");
    assert!(a.refresh());
    assert_eq!(a.len(), 8);
    assert_eq!(a.cursor(), 7, "was at the end: follows the tail");
    assert!(!a.refresh(), "nothing more");
}

/// Wraps a source and counts page reads.
struct Counting {
    inner: VecSource,
    pages: std::rc::Rc<std::cell::Cell<u64>>,
}

impl Source for Counting {
    fn info(&self) -> SessionInfo {
        self.inner.info()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn page(&mut self, start: u64, count: usize) -> Result<Vec<ReplayEvent>, SourceError> {
        self.pages.set(self.pages.get() + 1);
        self.inner.page(start, count)
    }
    fn index(&mut self) -> Result<tracevault_replay::TimelineIndex, SourceError> {
        self.inner.index()
    }
    fn integrity(&mut self) -> Integrity {
        self.inner.integrity()
    }
}

#[test]
fn large_session_opens_lazily_and_cache_stays_bounded() {
    let n = 100_000;
    let pages = std::rc::Rc::new(std::cell::Cell::new(0));
    let src = Counting {
        inner: source(big(n), verified()),
        pages: pages.clone(),
    };
    let started = Instant::now();
    let mut a = App::new(Box::new(src), ReplayOptions::default()).unwrap();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal.draw(|f| render(&mut a, f)).unwrap();
    let first_frame = started.elapsed();
    eprintln!("100k events: open + first frame in {first_frame:?}");
    assert!(pages.get() <= 3, "first frame read {} pages", pages.get());
    assert!(first_frame < Duration::from_secs(1), "{first_frame:?}");
    assert_eq!(a.len(), n);
    assert!(text(terminal.backend().buffer()).contains("event number 0"));

    // Scroll through everything a screen at a time, and jump around.
    let bound = MAX_PAGES;
    let mut steps = 0;
    while a.cursor() + 1 < n {
        key(&mut a, KeyCode::PageDown);
        terminal.draw(|f| render(&mut a, f)).unwrap();
        let s = a.cache_stats();
        assert!(s.pages <= bound, "{s:?}");
        assert!(s.events <= bound * PAGE_SIZE, "{s:?}");
        steps += 1;
    }
    assert!(steps > 2000);
    for target in ["1m", "5s", "16m", "0"] {
        key(&mut a, KeyCode::Char(':'));
        keys(&mut a, target);
        key(&mut a, KeyCode::Enter);
        terminal.draw(|f| render(&mut a, f)).unwrap();
    }
    key(&mut a, KeyCode::Char('/'));
    keys(&mut a, "event number 99999");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.cursor(), 99_999);
    terminal.draw(|f| render(&mut a, f)).unwrap();
    assert!(text(terminal.backend().buffer()).contains("event number 99999"));
    let s = a.cache_stats();
    assert!(s.peak_pages <= bound, "{s:?}");
    assert!(
        s.loads >= (n as usize / PAGE_SIZE) as u64,
        "every page was read once at least"
    );
}

#[test]
fn quit_keys() {
    let mut a = app(story());
    assert!(!a.should_quit());
    keys(&mut a, "q");
    assert!(a.should_quit());
    let mut a = app(story());
    a.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(a.should_quit());
    // In a text prompt, q is text.
    let mut a = app(story());
    keys(&mut a, "/q");
    assert!(!a.should_quit());
}
