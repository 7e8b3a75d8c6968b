//! The detail pane: the selected event in full, with its paired tool call
//! or result.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::style::{kind_color, masked_style, pretty_json, spans_with_masks};
use crate::app::{App, PAIR_WINDOW};
use crate::event::{EventKind, ReplayEvent};
use crate::timefmt::{format_offset, format_ts};

/// Lines of one content block shown at most.
const MAX_BLOCK_LINES: usize = 2000;

pub(super) fn render(app: &mut App, frame: &mut Frame, area: Rect) {
    let pos = app.cursor;
    let event = if app.row_count() > 0 {
        app.event_at(pos)
    } else {
        None
    };
    let Some(event) = event else {
        frame.render_widget(
            Paragraph::new("(nothing selected)").block(Block::bordered().title(" event ")),
            area,
        );
        return;
    };
    let kind = event.event_kind();
    let pair = match kind {
        EventKind::ToolCall | EventKind::ToolResult => Some(app.paired(pos)),
        _ => None,
    };
    let long = app.index.span_us() >= 3_600_000_000;
    let offset = format_offset(app.index.offset_us(pos), long);

    let mut lines: Vec<Line<'static>> = Vec::new();
    let dim = Style::new().fg(Color::DarkGray);
    lines.push(Line::from(vec![
        Span::styled(offset, Style::new().add_modifier(Modifier::BOLD)),
        Span::styled(
            format!(
                "  {}  idx {}  seq {}",
                format_ts(event.time_us()),
                event.idx,
                event.session_seq
            ),
            dim,
        ),
    ]));
    let mut who = Vec::new();
    for (label, field, value) in [
        ("name", "name", &event.name),
        ("actor", "actor", &event.actor),
        ("model", "model", &event.model),
        ("written by", "ingested_by", &event.ingested_by),
    ] {
        if let Some(v) = value {
            who.push(Span::styled(format!("{label} "), dim));
            let base = Style::new().add_modifier(Modifier::BOLD);
            who.extend(spans_with_masks(v, base));
            if event.is_field_masked(field) {
                who.push(Span::raw(" "));
                who.push(Span::styled(" MASKED ", masked_style()));
            }
            who.push(Span::raw("  "));
        }
    }
    if !who.is_empty() {
        lines.push(Line::from(who));
    }
    let mut ids = Vec::new();
    if !event.event_id.is_empty() {
        ids.push(format!("event_id {}", event.event_id));
    }
    if let Some(s) = &event.span_id {
        ids.push(format!("span {s}"));
    }
    if let Some(s) = &event.parent_span_id {
        ids.push(format!("parent {s}"));
    }
    if !ids.is_empty() {
        lines.push(Line::styled(ids.join("  "), dim));
    }
    if !event.masked.is_empty() {
        lines.push(Line::from(vec![
            Span::styled(" MASKED ", masked_style()),
            Span::raw(format!(" by your profile: {}", event.masked.join(", "))),
        ]));
    }
    lines.push(Line::from(""));

    let label_style = Style::new()
        .fg(kind_color(kind))
        .add_modifier(Modifier::BOLD);
    match kind {
        EventKind::Reasoning => {
            lines.push(Line::styled(
                "REASONING (model's thinking)",
                label_style.add_modifier(Modifier::ITALIC),
            ));
            content_lines(
                &event,
                Style::new()
                    .fg(Color::Gray)
                    .add_modifier(Modifier::DIM | Modifier::ITALIC),
                &mut lines,
            );
        }
        EventKind::Error => {
            lines.push(Line::styled(
                " ERROR ",
                Style::new()
                    .fg(Color::White)
                    .bg(Color::Red)
                    .add_modifier(Modifier::BOLD),
            ));
            content_lines(
                &event,
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                &mut lines,
            );
        }
        EventKind::ToolCall => {
            lines.push(Line::styled(
                format!("TOOL CALL {}", event.name.as_deref().unwrap_or("")),
                label_style,
            ));
            lines.push(Line::styled("arguments:", dim));
            content_lines(&event, Style::new(), &mut lines);
            lines.push(Line::from(""));
            paired_lines(pair.flatten(), "result", EventKind::ToolResult, &mut lines);
        }
        EventKind::ToolResult => {
            lines.push(Line::styled(
                format!("TOOL RESULT {}", event.name.as_deref().unwrap_or("")),
                label_style,
            ));
            content_lines(&event, Style::new(), &mut lines);
            lines.push(Line::from(""));
            paired_lines(pair.flatten(), "call", EventKind::ToolCall, &mut lines);
        }
        _ => {
            lines.push(Line::styled(kind_title(kind, &event.kind), label_style));
            content_lines(&event, Style::new(), &mut lines);
        }
    }
    if let Some(attrs) = &event.attributes {
        lines.push(Line::from(""));
        let mut label = vec![Span::styled("attributes:", dim)];
        if event.is_field_masked("attributes") {
            label.push(Span::raw(" "));
            label.push(Span::styled(" MASKED ", masked_style()));
        }
        lines.push(Line::from(label));
        text_block(attrs, true, Style::new().fg(Color::Gray), &mut lines);
    }
    // Scrolling counts wrapped rows (a long line takes several), as the
    // paragraph below wraps them.
    let inner = area.width.saturating_sub(2).max(1);
    let rows = Paragraph::new(lines.clone())
        .wrap(Wrap { trim: false })
        .line_count(inner);
    let max_scroll = rows.saturating_sub(1).min(u16::MAX as usize) as u16;
    app.detail_scroll = app.detail_scroll.min(max_scroll);
    let title = Line::from(vec![
        Span::raw(" "),
        Span::styled(format!("{} {}", kind.icon(), event.kind), label_style),
        Span::raw(format!(" #{} ", pos + 1)),
    ]);
    let border = if kind == EventKind::Error {
        Style::new().fg(Color::Red)
    } else {
        Style::new()
    };
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(title).border_style(border))
            .wrap(Wrap { trim: false })
            .scroll((app.detail_scroll, 0)),
        area,
    );
}

fn kind_title(kind: EventKind, raw: &str) -> String {
    match kind {
        EventKind::Prompt => "PROMPT".into(),
        EventKind::Response => "RESPONSE".into(),
        EventKind::Message => "MESSAGE".into(),
        EventKind::Input => "INPUT".into(),
        EventKind::Output => "OUTPUT".into(),
        EventKind::Annotation => "ANNOTATION".into(),
        EventKind::Span => "SPAN".into(),
        _ => raw.to_uppercase(),
    }
}

/// The event's content, or a masked/empty marker.
fn content_lines(e: &ReplayEvent, style: Style, out: &mut Vec<Line<'static>>) {
    match e.content.as_deref() {
        Some(c) => {
            if e.is_field_masked("content") {
                out.push(Line::from(vec![
                    Span::styled(" MASKED ", masked_style()),
                    Span::styled(
                        " content masked by your profile",
                        Style::new().fg(Color::Magenta),
                    ),
                ]));
            }
            text_block(c, e.content_type == "json", style, out)
        }
        None if e.is_field_masked("content") => out.push(Line::from(vec![
            Span::styled(" MASKED ", masked_style()),
            Span::styled(
                " content withheld by your profile",
                Style::new().fg(Color::Magenta),
            ),
        ])),
        None => out.push(Line::styled(
            "(no content)",
            Style::new().fg(Color::DarkGray),
        )),
    }
}

/// Text (pretty-printed when it is JSON), line by line, masked values marked.
fn text_block(text: &str, json: bool, style: Style, out: &mut Vec<Line<'static>>) {
    let pretty = if json || text.trim_start().starts_with('{') {
        pretty_json(text)
    } else {
        None
    };
    let body = pretty.as_deref().unwrap_or(text);
    let total = body.lines().count();
    for line in body.lines().take(MAX_BLOCK_LINES) {
        out.push(Line::from(spans_with_masks(line, style)));
    }
    if total > MAX_BLOCK_LINES {
        out.push(Line::styled(
            format!(
                "\u{2026} {} more lines (y writes the whole event to a file)",
                total - MAX_BLOCK_LINES
            ),
            Style::new().fg(Color::DarkGray),
        ));
    }
}

fn paired_lines(
    pair: Option<std::sync::Arc<ReplayEvent>>,
    label: &str,
    want: EventKind,
    out: &mut Vec<Line<'static>>,
) {
    let style = Style::new()
        .fg(kind_color(want))
        .add_modifier(Modifier::BOLD);
    match pair {
        Some(p) => {
            out.push(Line::styled(
                format!(
                    "{label} (seq {} idx {}{}):",
                    p.session_seq,
                    p.idx,
                    p.name
                        .as_deref()
                        .map(|n| format!(" {n}"))
                        .unwrap_or_default()
                ),
                style,
            ));
            let body_style = if want == EventKind::ToolResult {
                Style::new().fg(Color::Green)
            } else {
                Style::new()
            };
            content_lines(&p, body_style, out);
        }
        None => out.push(Line::styled(
            format!("{label}: none found within {PAIR_WINDOW} events"),
            Style::new().fg(Color::DarkGray),
        )),
    }
}
