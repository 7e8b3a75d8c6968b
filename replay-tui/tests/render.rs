//! Rendering tests on ratatui's TestBackend.

mod common;

use common::*;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use tracevault_replay::{App, Integrity, KEYS, ReplayOptions, render};

fn app_with(events: Vec<tracevault_replay::ReplayEvent>, integrity: Integrity) -> App {
    App::new(
        Box::new(source(events, integrity)),
        ReplayOptions::default(),
    )
    .unwrap()
}

fn draw(app: &mut App, w: u16, h: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| render(app, f)).unwrap();
    terminal.backend().buffer().clone()
}

fn key(app: &mut App, code: KeyCode) {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn select(app: &mut App, pos: u64) {
    key(app, KeyCode::Home);
    for _ in 0..pos {
        key(app, KeyCode::Char('j'));
    }
    assert_eq!(app.cursor(), pos);
}

#[test]
fn timeline_rows_show_offset_kind_and_name() {
    let mut app = app_with(story(), verified());
    let buf = draw(&mut app, 160, 30);
    let t = text(&buf);
    assert!(t.contains("+00:00.000 > prompt"), "{t}");
    assert!(t.contains("+00:01.500 ~ reasoning"), "{t}");
    assert!(t.contains("+00:02.000 $ tool_call   web_search"), "{t}");
    assert!(t.contains("+00:03.000 = tool_result web_search"), "{t}");
    assert!(
        t.contains("+01:05.000 ! error       deploy permission denied"),
        "{t}"
    );
    // The kind is coloured: the error row's kind cell is red.
    let (x, y) = find(&buf, "! error").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Red);
    // The selected row (the first) is highlighted.
    let (x, y) = find(&buf, "+00:00.000").unwrap();
    assert!(buf[(x, y)].modifier.contains(Modifier::REVERSED));
    let (x, y) = find(&buf, "+00:01.500").unwrap();
    assert!(!buf[(x, y)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn detail_renders_a_prompt_as_wrapped_text() {
    let mut app = app_with(story(), verified());
    let buf = draw(&mut app, 100, 30);
    let t = text(&buf);
    assert!(t.contains("PROMPT"), "{t}");
    assert!(t.contains("Find me a Rust library"), "{t}");
    // Wrapped: the end of the long prompt is on a later line than its start.
    let (_, y0) = find(&buf, "Find me a Rust").unwrap();
    let (_, y1) = find(&buf, "replay tool.").unwrap();
    assert!(y1 > y0, "prompt should wrap onto several lines");
    assert!(t.contains("actor agent-7"), "{t}");
}

#[test]
fn detail_renders_reasoning_dim_italic_and_labelled() {
    let mut app = app_with(story(), verified());
    select(&mut app, 1);
    let buf = draw(&mut app, 120, 30);
    let t = text(&buf);
    assert!(t.contains("REASONING"), "{t}");
    let (x, y) = find(&buf, "ratatui is the maintained fork").unwrap();
    let cell = &buf[(x, y)];
    assert!(
        cell.modifier.contains(Modifier::ITALIC),
        "{:?}",
        cell.modifier
    );
    assert!(cell.modifier.contains(Modifier::DIM), "{:?}", cell.modifier);
}

#[test]
fn detail_renders_tool_call_with_pretty_args_and_paired_result() {
    let mut app = app_with(story(), verified());
    select(&mut app, 2);
    let buf = draw(&mut app, 120, 30);
    let t = text(&buf);
    assert!(t.contains("TOOL CALL web_search"), "{t}");
    // Pretty-printed: one key per line, indented.
    let l = lines(&buf);
    assert!(l.iter().any(|s| s.contains("│  \"limit\": 5,")), "{t}");
    assert!(
        l.iter().any(|s| s.contains("│  \"query\": \"rust tui\"")),
        "{t}"
    );
    // Its result (matched on parent_span_id), below the arguments.
    let (_, args_y) = find(&buf, "\"query\"").unwrap();
    let (_, res_y) = find(&buf, "result (seq 3 idx 1003 web_search):").expect(&t);
    assert!(res_y > args_y);
    assert!(t.contains("\"ratatui.rs\""), "{t}");

    // A result shows its call.
    select(&mut app, 3);
    let t = text(&draw(&mut app, 120, 30));
    assert!(t.contains("TOOL RESULT web_search"), "{t}");
    assert!(t.contains("call (seq 2 idx 1002 web_search):"), "{t}");
}

#[test]
fn tool_result_pairs_by_name_when_there_are_no_spans() {
    let mut events = story();
    events[2].span_id = None;
    events[3].parent_span_id = None;
    // A different tool's result comes first; the pairing must skip it.
    events.insert(
        3,
        event(3, "tool_result", 2_500_000, Some("other_tool"), "nope"),
    );
    for (i, e) in events.iter_mut().enumerate() {
        e.session_seq = i as u64;
        e.idx = 1000 + i as u64;
    }
    let mut app = app_with(events, verified());
    select(&mut app, 2);
    let t = text(&draw(&mut app, 120, 30));
    assert!(t.contains("result (seq 4 idx 1004 web_search):"), "{t}");
}

#[test]
fn errors_are_highlighted_red() {
    let mut app = app_with(story(), verified());
    key(&mut app, KeyCode::Char('e'));
    assert_eq!(app.cursor(), 5);
    let buf = draw(&mut app, 120, 30);
    let t = text(&buf);
    assert!(t.contains(" ERROR "), "{t}");
    // Find the message in the detail pane (right of the timeline).
    let l = lines(&buf);
    let (y, line) = l
        .iter()
        .enumerate()
        .find(|(_, s)| s.contains("│permission denied: /etc/shadow"))
        .expect(&t);
    let b = line.find("│permission").unwrap();
    let x = line[..b].chars().count() as u16 + 1;
    let cell = &buf[(x, y as u16)];
    assert_eq!(cell.symbol(), "p");
    assert_eq!(cell.fg, Color::Red);
    assert!(cell.modifier.contains(Modifier::BOLD));
    let (x, y) = find(&buf, " ERROR ").unwrap();
    assert_eq!(buf[(x, y)].bg, Color::Red);
}

#[test]
fn masked_values_and_fields_are_marked() {
    let mut e = event(
        0,
        "message",
        0,
        Some("mail"),
        "write to [REDACTED:email] about hmac:9f86d081 today",
    );
    e.masked = vec!["actor".into(), "attributes".into()];
    e.actor = Some("[MASKED]".into());
    e.attributes = Some(r#"{"user":{"email":"[HASH:email:0123456789abcdef]"}}"#.into());
    let mut withheld = event(1, "prompt", SEC, None, "");
    withheld.content = None;
    withheld.masked = vec!["content".into()];
    let mut app = app_with(vec![e, withheld], verified());
    let buf = draw(&mut app, 140, 30);
    let t = text(&buf);
    assert!(
        t.contains("MASKED  by your profile: actor, attributes"),
        "{t}"
    );
    for token in [
        "[REDACTED:email]",
        "hmac:9f86d081",
        "[HASH:email:0123456789abcdef]",
        "[MASKED]",
    ] {
        let hits = find_all(&buf, token);
        assert!(!hits.is_empty(), "{token} in {t}");
        assert!(
            hits.iter().any(|&at| buf[at].bg == Color::Magenta),
            "{token} should be drawn as masked somewhere: {t}"
        );
    }
    // A withheld content shows a marker instead of nothing.
    select(&mut app, 1);
    let t = text(&draw(&mut app, 140, 30));
    assert!(t.contains("content withheld by your profile"), "{t}");
    assert!(t.contains("[masked]"), "timeline preview marks it: {t}");
}

#[test]
fn integrity_badge_states() {
    let mut app = app_with(story(), verified());
    let buf = draw(&mut app, 120, 30);
    let t = text(&buf);
    assert!(
        t.contains("verified: 6 events checked against signed checkpoint of size 42"),
        "{t}"
    );
    let (x, y) = find(&buf, "verified").unwrap();
    assert_eq!(buf[(x, y)].bg, Color::Green);

    let failed = Integrity::Failed {
        index: Some(1003),
        reason: "leaf hash mismatch".into(),
    };
    let mut app = app_with(story(), failed);
    let buf = draw(&mut app, 120, 30);
    let (x, y) = find(&buf, "FAILED at index 1003: leaf hash mismatch")
        .unwrap_or_else(|| panic!("{}", text(&buf)));
    assert_eq!(buf[(x, y)].bg, Color::Red);
    assert!(buf[(x, y)].modifier.contains(Modifier::BOLD));
    let failed = Integrity::Failed {
        index: None,
        reason: "checkpoint signature invalid".into(),
    };
    let mut app = app_with(story(), failed);
    let buf = draw(&mut app, 120, 30);
    let (x, y) = find(&buf, "FAILED: checkpoint signature invalid")
        .unwrap_or_else(|| panic!("{}", text(&buf)));
    assert_eq!(buf[(x, y)].bg, Color::Red);

    let unverified = Integrity::Unverified {
        reason: "no signed checkpoint in the bundle".into(),
    };
    let mut app = app_with(story(), unverified);
    let buf = draw(&mut app, 120, 30);
    let (x, y) = find(&buf, "unverified: no signed checkpoint in the bundle")
        .unwrap_or_else(|| panic!("{}", text(&buf)));
    assert_eq!(buf[(x, y)].bg, Color::Yellow);
    assert!(!text(&buf).contains("GAP"));
}

#[test]
fn checking_becomes_verified_when_the_source_is_done() {
    struct Slow(tracevault_replay::VecSource, u32);
    impl tracevault_replay::Source for Slow {
        fn info(&self) -> tracevault_replay::SessionInfo {
            self.0.info()
        }
        fn len(&self) -> u64 {
            self.0.len()
        }
        fn page(
            &mut self,
            start: u64,
            count: usize,
        ) -> Result<Vec<tracevault_replay::ReplayEvent>, tracevault_replay::SourceError> {
            self.0.page(start, count)
        }
        fn integrity(&mut self) -> Integrity {
            self.1 += 1;
            if self.1 < 3 {
                Integrity::Checking
            } else {
                verified()
            }
        }
    }
    let mut app = App::new(
        Box::new(Slow(source(story(), verified()), 0)),
        ReplayOptions::default(),
    )
    .unwrap();
    assert!(text(&draw(&mut app, 120, 30)).contains("checking integrity"));
    for _ in 0..30 {
        app.tick(std::time::Duration::from_millis(50));
    }
    assert!(text(&draw(&mut app, 120, 30)).contains("verified: 6 events"));
}

#[test]
fn session_seq_gaps_are_flagged() {
    let mut events = story();
    events[3].session_seq = 41;
    events[4].session_seq = 44;
    events[5].session_seq = 45;
    events[2].session_seq = 40;
    let mut app = app_with(events, verified());
    let buf = draw(&mut app, 120, 30);
    let t = text(&buf);
    assert!(
        t.contains("GAP: session_seq 1\u{2192}40 (+1 more gaps)"),
        "{t}"
    );
    let (x, y) = find(&buf, "GAP:").unwrap();
    assert_eq!(buf[(x, y)].bg, Color::Red);

    let mut events = story();
    events.remove(3);
    let mut app = app_with(events, verified());
    let t = text(&draw(&mut app, 80, 24));
    assert!(t.contains("GAP: session_seq 2\u{2192}4 "), "{t}");
}

#[test]
fn help_overlay_lists_every_key() {
    let mut app = app_with(story(), verified());
    key(&mut app, KeyCode::Char('?'));
    let t = text(&draw(&mut app, 200, 60));
    for (keys, what) in KEYS {
        assert!(t.contains(what), "{what} missing from help:\n{t}");
        assert!(t.contains(keys), "{keys} missing from help");
    }
    // Fits in 80x24 too: the last entry is visible.
    let t = text(&draw(&mut app, 80, 24));
    assert!(t.contains("q / ^c"), "{t}");
    assert!(t.contains("next / previous error"), "{t}");
    // Any key closes it.
    key(&mut app, KeyCode::Esc);
    assert!(!text(&draw(&mut app, 200, 60)).contains("next / previous error"));
}

#[test]
fn fits_80x24_and_200x60_and_resizes() {
    let mut app = app_with(story(), verified());
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| render(&mut app, f)).unwrap();
    let small = terminal.backend().buffer().clone();
    let l = lines(&small);
    assert_eq!(l.len(), 24);
    assert!(l[0].contains("session sess-42"), "{}", l[0]);
    assert!(l[1].contains("verified"), "{}", l[1]);
    assert!(l[23].contains("q quit"), "footer: {}", l[23]);
    assert!(l[23].contains("? help"), "footer: {}", l[23]);
    assert!(
        text(&small).contains("+00:02.000 $ call"),
        "narrow timeline: {}",
        text(&small)
    );

    terminal.backend_mut().resize(200, 60);
    terminal.autoresize().unwrap();
    terminal.draw(|f| render(&mut app, f)).unwrap();
    let big = terminal.backend().buffer().clone();
    assert_eq!(big.area.width, 200);
    let l = lines(&big);
    assert_eq!(l.len(), 60);
    assert!(l[59].contains("space play/pause"), "wide footer: {}", l[59]);
    assert!(text(&big).contains("+00:02.000 $ tool_call   web_search"));
    // The detail pane's right border reaches the last column.
    assert_eq!(big[(199, 5)].symbol(), "│");

    terminal.backend_mut().resize(80, 24);
    terminal.autoresize().unwrap();
    terminal.draw(|f| render(&mut app, f)).unwrap();
    let again = terminal.backend().buffer().clone();
    assert_eq!(lines(&again), lines(&small), "same size, same screen");
}

#[test]
fn prompts_show_in_the_footer() {
    let mut app = app_with(story(), verified());
    key(&mut app, KeyCode::Char('/'));
    for c in "shad".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let t = text(&draw(&mut app, 100, 30));
    assert!(t.contains("/shad"), "{t}");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.cursor(), 5);
    key(&mut app, KeyCode::Char(':'));
    key(&mut app, KeyCode::Char('9'));
    let t = text(&draw(&mut app, 100, 30));
    assert!(t.contains(":9"), "{t}");
    assert!(t.contains("time offset"), "{t}");
}

#[test]
fn kind_picker_overlay_and_filtered_timeline() {
    let mut app = app_with(story(), verified());
    key(&mut app, KeyCode::Char('f'));
    let t = text(&draw(&mut app, 100, 30));
    assert!(t.contains("show kinds"), "{t}");
    assert!(t.contains("[ ] $ tool_call"), "{t}");
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Char(' '));
    let t = text(&draw(&mut app, 100, 30));
    assert!(t.contains("[x] $ tool_call"), "{t}");
    key(&mut app, KeyCode::Enter);
    let t = text(&draw(&mut app, 120, 30));
    assert!(t.contains("timeline (1 of 6, filtered)"), "{t}");
    assert!(t.contains("filter: tool_call"), "{t}");
    assert!(!t.contains("+00:01.500 ~ reasoning"), "{t}");
    assert_eq!(app.cursor(), 2);
}

#[test]
fn the_end_of_a_long_wrapped_event_can_be_scrolled_to() {
    // One logical line that wraps onto far more rows than the pane has.
    let long = format!("{} THE-END", "lorem ipsum dolor sit amet ".repeat(120));
    let mut app = app_with(vec![event(0, "response", 0, None, &long)], verified());
    let t = text(&draw(&mut app, 80, 24));
    assert!(!t.contains("THE-END"), "{t}");
    for _ in 0..400 {
        key(&mut app, KeyCode::Char('J'));
    }
    let t = text(&draw(&mut app, 80, 24));
    assert!(t.contains("THE-END"), "{t}");
}
