//! The header: session, integrity badge, seq gaps and playback state.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::App;
use crate::playback::speed_label;
use crate::source::Integrity;
use crate::timefmt::{format_duration, format_ts};

pub(super) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let info = &app.info;
    let dim = Style::new().fg(Color::DarkGray);
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut first = vec![
        Span::styled(" tracevault replay ", bold.fg(Color::Cyan)),
        Span::styled("session ", dim),
        Span::styled(info.session_id.clone(), bold),
        Span::styled("  ns ", dim),
        Span::raw(info.namespace.clone()),
        Span::styled("  events ", dim),
        Span::raw(app.len().to_string()),
    ];
    if let (Some(a), Some(b)) = (info.first_us, info.last_us) {
        first.push(Span::styled("  ", dim));
        first.push(Span::raw(format!(
            "{} \u{2192} {} ({})",
            format_ts(a),
            format_ts(b),
            format_duration(b - a)
        )));
    }
    if !info.origin.is_empty() {
        first.push(Span::styled(format!("  from {}", info.origin), dim));
    }

    let badge = match &app.integrity {
        Integrity::Verified {
            checkpoint_size,
            events_checked,
        } => Span::styled(
            format!(
                " \u{2714} verified: {events_checked} events checked against signed checkpoint of size {checkpoint_size} "
            ),
            Style::new()
                .fg(Color::Black)
                .bg(Color::Green)
                .add_modifier(Modifier::BOLD),
        ),
        Integrity::InLog {
            checkpoint_size,
            events_checked,
        } => Span::styled(
            format!(
                " \u{2714} in the log: {events_checked} events proven in signed checkpoint of size {checkpoint_size} (values as served, not bound) "
            ),
            Style::new()
                .fg(Color::Black)
                .bg(Color::LightBlue)
                .add_modifier(Modifier::BOLD),
        ),
        Integrity::Failed { index, reason } => Span::styled(
            match index {
                Some(index) => format!(" \u{2718} FAILED at index {index}: {reason} "),
                None => format!(" \u{2718} FAILED: {reason} "),
            },
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        ),
        Integrity::Unverified { reason } => Span::styled(
            format!(" ? unverified: {reason} "),
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ),
        Integrity::Checking => Span::styled(
            " \u{2026} checking integrity ",
            Style::new().fg(Color::Black).bg(Color::Cyan),
        ),
    };
    let second = vec![Span::raw(" "), badge];

    let mut third = vec![Span::raw(" ")];
    let gaps = app.index.gaps();
    if let Some(gap) = gaps.first() {
        let more = if gaps.len() > 1 {
            format!(" (+{} more gaps)", gaps.len() - 1)
        } else {
            String::new()
        };
        third.push(Span::styled(
            format!(" {gap}{more} "),
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        ));
        third.push(Span::raw("  "));
    }
    let speed = speed_label(app.playback.speed());
    if app.playback.playing {
        third.push(Span::styled(
            format!("\u{25b6} playing {speed}"),
            Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        ));
    } else {
        third.push(Span::styled(
            format!("\u{2016} paused {speed}"),
            Style::new().fg(Color::Yellow),
        ));
    }
    if !app.is_empty() {
        third.push(Span::styled(
            format!("  #{}/{}", app.cursor + 1, app.len()),
            dim,
        ));
    }
    if let Some(cap) = app.playback.max_gap_us {
        third.push(Span::styled(
            format!("  gaps>{} compressed", format_duration(cap)),
            dim,
        ));
    }
    if !app.filter.is_empty() {
        let names: Vec<&str> = app.filter.iter().map(|k| k.as_str()).collect();
        third.push(Span::styled(
            format!("  filter: {}", names.join(",")),
            Style::new().fg(Color::Magenta),
        ));
    }
    if app.opts.follow {
        third.push(Span::styled("  following", Style::new().fg(Color::Cyan)));
    }
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(first),
            Line::from(second),
            Line::from(third),
        ]),
        area,
    );
}
