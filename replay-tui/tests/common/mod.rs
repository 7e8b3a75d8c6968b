//! Shared builders for the replayer tests.
#![allow(dead_code)]

use ratatui::buffer::Buffer;
use tracevault_replay::{Integrity, ReplayEvent, SessionInfo, VecSource};

pub const SEC: i64 = 1_000_000;
/// 2026-01-02 03:04:05 UTC.
pub const T0: i64 = 1_767_323_045 * SEC;

pub fn event(seq: u64, kind: &str, at_us: i64, name: Option<&str>, content: &str) -> ReplayEvent {
    ReplayEvent {
        idx: 1000 + seq,
        session_seq: seq,
        kind: kind.into(),
        ts: Some(T0 + at_us),
        received_at: T0 + at_us + 500,
        name: name.map(Into::into),
        actor: Some("agent-7".into()),
        model: None,
        ingested_by: None,
        event_id: format!("ev-{seq}"),
        span_id: None,
        parent_span_id: None,
        content: Some(content.into()),
        content_type: if content.starts_with('{') {
            "json".into()
        } else {
            "text".into()
        },
        attributes: None,
        masked: vec![],
        leaf_hash: format!("{seq:064x}"),
    }
}

pub fn info() -> SessionInfo {
    SessionInfo {
        session_id: "sess-42".into(),
        namespace: "prod".into(),
        origin: "bundle test.tar".into(),
        ..SessionInfo::default()
    }
}

/// prompt, reasoning, tool_call, tool_result, response, error, with a 60 s idle gap before the error.
pub fn story() -> Vec<ReplayEvent> {
    let mut call = event(
        2,
        "tool_call",
        2 * SEC,
        Some("web_search"),
        r#"{"query":"rust tui","limit":5}"#,
    );
    call.span_id = Some("span-call".into());
    let mut result = event(
        3,
        "tool_result",
        3 * SEC,
        Some("web_search"),
        r#"{"hits":["ratatui.rs"]}"#,
    );
    result.parent_span_id = Some("span-call".into());
    vec![
        event(
            0,
            "prompt",
            0,
            None,
            "Find me a Rust library for terminal user interfaces and explain why it is a good choice for a replay tool.",
        ),
        event(
            1,
            "reasoning",
            1_500_000,
            None,
            "The user wants a TUI crate; ratatui is the maintained fork.",
        ),
        call,
        result,
        event(4, "response", 4 * SEC, None, "Use ratatui."),
        event(
            5,
            "error",
            65 * SEC,
            Some("deploy"),
            "permission denied: /etc/shadow",
        ),
    ]
}

pub fn verified() -> Integrity {
    Integrity::Verified {
        checkpoint_size: 42,
        events_checked: 6,
    }
}

pub fn source(events: Vec<ReplayEvent>, integrity: Integrity) -> VecSource {
    VecSource::new(info(), events, integrity)
}

/// `n` generated events, kinds cycling, 10 ms apart; every 1000th is an error.
pub fn big(n: u64) -> Vec<ReplayEvent> {
    let kinds = [
        "prompt",
        "reasoning",
        "tool_call",
        "tool_result",
        "response",
    ];
    (0..n)
        .map(|i| {
            let kind = if i % 1000 == 999 {
                "error"
            } else {
                kinds[(i % 5) as usize]
            };
            let mut e = event(i, kind, i as i64 * 10_000, Some("tool"), "x");
            e.content = Some(format!("event number {i}"));
            e
        })
        .collect()
}

/// The buffer as lines of text.
pub fn lines(buf: &Buffer) -> Vec<String> {
    let area = buf.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

pub fn text(buf: &Buffer) -> String {
    lines(buf).join("\n")
}

/// Position (x, y) of the first occurrence of `needle` (single-width text only).
pub fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    for (y, line) in lines(buf).iter().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let n: Vec<char> = needle.chars().collect();
        if n.len() > chars.len() {
            continue;
        }
        for x in 0..=chars.len() - n.len() {
            if chars[x..x + n.len()] == n[..] {
                return Some((x as u16, y as u16));
            }
        }
    }
    None
}

/// Every position of `needle`.
pub fn find_all(buf: &Buffer, needle: &str) -> Vec<(u16, u16)> {
    let n: Vec<char> = needle.chars().collect();
    let mut out = Vec::new();
    for (y, line) in lines(buf).iter().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        if n.len() > chars.len() {
            continue;
        }
        for x in 0..=chars.len() - n.len() {
            if chars[x..x + n.len()] == n[..] {
                out.push((x as u16, y as u16));
            }
        }
    }
    out
}
