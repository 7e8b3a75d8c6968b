//! Drawing the replayer: header, timeline, detail pane, footer and overlays.
//! Everything here reads the [`App`]; the only state it changes is the
//! timeline scroll position and the page cache behind event reads.

mod detail;
mod header;
mod style;
mod timeline;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{App, Mode};
use crate::help;

/// Draws the whole screen.
pub fn render(app: &mut App, frame: &mut Frame) {
    let area = frame.area();
    let [header_area, body, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(2),
    ])
    .areas(area);
    header::render(app, frame, header_area);
    let timeline_width = if area.width >= 120 {
        (area.width * 2 / 5).min(90)
    } else {
        area.width / 2
    };
    let [timeline_area, detail_area] =
        Layout::horizontal([Constraint::Length(timeline_width), Constraint::Min(10)]).areas(body);
    timeline::render(app, frame, timeline_area);
    detail::render(app, frame, detail_area);
    render_footer(app, frame, footer);
    match &app.mode {
        Mode::Help => help::render_help(frame, area),
        Mode::KindPicker { cursor, chosen } => help::render_picker(frame, area, *cursor, chosen),
        _ => {}
    }
}

/// Key hints for the footer, shorter on narrow terminals.
fn key_hints(width: u16) -> &'static str {
    if width >= 110 {
        " space play/pause  \u{2190}/\u{2192} step  +/- speed  / search  n/N next/prev  t/e tool/error  : time  f filter  y copy  ? help  q quit"
    } else {
        " spc play \u{2190}\u{2192} step +- speed / find n/N t/e : time f filter y copy ? help q quit"
    }
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect) {
    let [status_area, keys_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let status = match &app.mode {
        Mode::Search(text) => Line::from(vec![
            Span::styled(
                "/",
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::raw(text.clone()),
            Span::styled("\u{2588}", Style::new().fg(Color::Gray)),
            Span::styled(
                "   Enter search, Esc cancel",
                Style::new().fg(Color::DarkGray),
            ),
        ]),
        Mode::Goto(text) => Line::from(vec![
            Span::styled(
                ":",
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::raw(text.clone()),
            Span::styled("\u{2588}", Style::new().fg(Color::Gray)),
            Span::styled(
                "   time offset: 1m30s, 90, 1:30; Enter go, Esc cancel",
                Style::new().fg(Color::DarkGray),
            ),
        ]),
        _ => match &app.status {
            Some(s) if s.error => Line::from(Span::styled(
                format!(" {}", s.text),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            )),
            Some(s) => Line::from(Span::raw(format!(" {}", s.text))),
            None => Line::from(""),
        },
    };
    frame.render_widget(Paragraph::new(status), status_area);
    frame.render_widget(
        Paragraph::new(Line::from(key_hints(area.width)))
            .style(Style::new().fg(Color::Black).bg(Color::Gray)),
        keys_area,
    );
}
