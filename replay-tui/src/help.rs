//! The key reference (the `?` overlay) and the kind filter picker (`f`).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::event::EventKind;

/// Every key, grouped: `(keys, what they do)`; a row with empty keys is a heading.
pub const KEYS: &[(&str, &str)] = &[
    ("", "Playback"),
    ("space", "play / pause (at the end: replay from the start)"),
    ("+ / -", "faster / slower: 0.5x 1x 2x 4x 8x 16x"),
    ("", "Moving"),
    ("\u{2192} l \u{2193} j", "next event"),
    ("\u{2190} h \u{2191} k", "previous event"),
    ("PgDn / PgUp", "one screen down / up"),
    ("g Home / G End", "first / last event"),
    (":", "go to a time offset (1m30s, 90, 1:30), Enter"),
    ("t / T", "next / previous tool call"),
    ("e / E", "next / previous error"),
    ("J / K, ^d / ^u", "scroll the detail pane"),
    ("", "Finding"),
    ("/", "search content, name, actor, kind, model, attributes"),
    ("n / N", "next / previous match (wraps around)"),
    ("f", "kind filter: space toggles, a all, Enter applies"),
    (
        "y / c",
        "write the event as JSON to ./tracevault-event-*.json",
    ),
    (
        "? / Esc",
        "this help / close a prompt or overlay, clear status",
    ),
    ("q / ^c", "quit"),
];

fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width.saturating_sub(2)).max(1);
    let h = height.min(area.height.saturating_sub(2)).max(1);
    Rect {
        x: area.x + (area.width.saturating_sub(w)) / 2,
        y: area.y + (area.height.saturating_sub(h)) / 2,
        width: w,
        height: h,
    }
}

/// Draws the help overlay.
pub(crate) fn render_help(frame: &mut Frame, area: Rect) {
    let key_style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
    let head_style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(keys, what)| {
            if keys.is_empty() {
                Line::styled(*what, head_style)
            } else {
                Line::from(vec![
                    Span::styled(format!(" {keys:<15}"), key_style),
                    Span::raw(*what),
                ])
            }
        })
        .collect();
    let rect = popup(area, 76, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys (any key closes) ")),
        rect,
    );
}

/// Draws the kind filter picker.
pub(crate) fn render_picker(frame: &mut Frame, area: Rect, cursor: usize, chosen: &[bool]) {
    let mut lines: Vec<Line> = EventKind::ALL
        .iter()
        .zip(chosen)
        .enumerate()
        .map(|(i, (kind, on))| {
            let mark = if *on { "[x]" } else { "[ ]" };
            let line = Line::from(format!(" {mark} {} {}", kind.icon(), kind.as_str()));
            if i == cursor {
                line.patch_style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                line
            }
        })
        .collect();
    lines.push(Line::styled(
        " space toggle  a all  Enter apply  Esc cancel",
        Style::new().fg(Color::DarkGray),
    ));
    lines.push(Line::styled(
        " nothing or everything ticked: no filter",
        Style::new().fg(Color::DarkGray),
    ));
    let rect = popup(area, 48, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" show kinds ")),
        rect,
    );
}
