//! The timeline: one row per event, only the visible rows are read.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::style::{kind_color, one_line};
use crate::app::App;
use crate::event::{EventKind, ReplayEvent};
use crate::timefmt::format_offset;

pub(super) fn render(app: &mut App, frame: &mut Frame, area: Rect) {
    let rows = app.row_count();
    let title = if app.filter.is_empty() {
        format!(" timeline ({rows}) ")
    } else {
        format!(" timeline ({rows} of {}, filtered) ", app.len())
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = inner.height as u64;
    app.timeline_height = inner.height;
    if rows == 0 {
        let msg = if app.filter.is_empty() {
            "(no events)"
        } else {
            "(no events match the filter; f to change it)"
        };
        frame.render_widget(Paragraph::new(msg), inner);
        return;
    }
    // Keep the selected row visible.
    let selected = app.row_of(app.cursor);
    if selected < app.top {
        app.top = selected;
    } else if height > 0 && selected >= app.top + height {
        app.top = selected + 1 - height;
    }
    app.top = app.top.min(rows.saturating_sub(height));

    let long = app.index.span_us() >= 3_600_000_000;
    let narrow = inner.width < 48;
    let mut lines = Vec::with_capacity(height as usize);
    for row in app.top..(app.top + height).min(rows) {
        let Some(pos) = app.row_pos(row) else { break };
        let offset = format_offset(app.index.offset_us(pos), long);
        let event = app.event_at(pos);
        let line = match event {
            Some(e) => row_line(&e, &offset, narrow, inner.width as usize),
            None => Line::from(format!("{offset} (not loaded)")),
        };
        let line = if pos == app.cursor {
            line.patch_style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            line
        };
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn row_line(e: &ReplayEvent, offset: &str, narrow: bool, width: usize) -> Line<'static> {
    let kind = e.event_kind();
    let color = kind_color(kind);
    let mut kind_style = Style::new().fg(color);
    if kind == EventKind::Error {
        kind_style = kind_style.add_modifier(Modifier::BOLD);
    }
    let kind_label = if narrow {
        format!("{:<6}", short_kind(kind, &e.kind))
    } else {
        format!("{:<11}", e.kind)
    };
    let who = e
        .name
        .as_deref()
        .or(e.actor.as_deref())
        .unwrap_or_default()
        .to_string();
    let preview = preview(e);
    let mut spans = vec![
        Span::styled(offset.to_string(), Style::new().fg(Color::DarkGray)),
        Span::raw(" "),
        Span::styled(kind.icon().to_string(), kind_style),
        Span::raw(" "),
        Span::styled(kind_label, kind_style),
        Span::raw(" "),
    ];
    if !who.is_empty() {
        spans.push(Span::styled(
            one_line(&who, 24),
            Style::new().add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(" "));
    }
    let preview_style = if kind == EventKind::Error {
        Style::new().fg(Color::Red)
    } else {
        Style::new().fg(Color::Gray)
    };
    spans.push(Span::styled(
        one_line(&preview, width.max(8)),
        preview_style,
    ));
    Line::from(spans)
}

fn short_kind(kind: EventKind, raw: &str) -> &str {
    match kind {
        EventKind::Prompt => "prompt",
        EventKind::Reasoning => "think",
        EventKind::ToolCall => "call",
        EventKind::ToolResult => "result",
        EventKind::Response => "answer",
        EventKind::Message => "msg",
        EventKind::Input => "input",
        EventKind::Output => "output",
        EventKind::Error => "ERROR",
        EventKind::Annotation => "note",
        EventKind::Span => "span",
        EventKind::Other => raw,
    }
}

fn preview(e: &ReplayEvent) -> String {
    match e.content.as_deref() {
        Some(c) => c.to_string(),
        None if e.is_field_masked("content") => "[masked]".to_string(),
        None => e.attributes.clone().unwrap_or_default(),
    }
}
