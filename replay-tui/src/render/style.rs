//! Colours and text helpers shared by the panes.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;

use crate::event::{EventKind, masked_ranges};

/// The colour of a kind in the timeline and the detail label.
pub(super) fn kind_color(kind: EventKind) -> Color {
    match kind {
        EventKind::Prompt => Color::Cyan,
        EventKind::Reasoning => Color::Magenta,
        EventKind::ToolCall => Color::Yellow,
        EventKind::ToolResult => Color::Green,
        EventKind::Response => Color::LightBlue,
        EventKind::Message => Color::White,
        EventKind::Input => Color::LightCyan,
        EventKind::Output => Color::Gray,
        EventKind::Error => Color::Red,
        EventKind::Annotation => Color::LightYellow,
        EventKind::Span | EventKind::Other => Color::DarkGray,
    }
}

/// How masked values are drawn: black on magenta.
pub(super) fn masked_style() -> Style {
    Style::new()
        .fg(Color::Black)
        .bg(Color::Magenta)
        .add_modifier(Modifier::BOLD)
}

/// Splits one line of text into spans, with masked values in
/// [`masked_style`] and the rest in `base`.
pub(super) fn spans_with_masks(text: &str, base: Style) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let mut at = 0;
    for (a, b) in masked_ranges(text) {
        if a > at {
            spans.push(Span::styled(text[at..a].to_string(), base));
        }
        spans.push(Span::styled(text[a..b].to_string(), masked_style()));
        at = b;
    }
    if at < text.len() || spans.is_empty() {
        spans.push(Span::styled(text[at..].to_string(), base));
    }
    spans
}

/// The first `max` characters of `text` with whitespace runs collapsed to one space.
pub(super) fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut space = false;
    for c in text.chars() {
        if out.chars().count() >= max {
            out.push('\u{2026}');
            break;
        }
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    out
}

/// JSON text pretty-printed, or `None` if it is not JSON.
pub(super) fn pretty_json(text: &str) -> Option<String> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
}
