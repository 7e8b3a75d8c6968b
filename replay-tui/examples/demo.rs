//! Replays a synthetic session: `cargo run -p tracevault-replay --example demo -- [EVENTS]`.

use tracevault_replay::{Integrity, ReplayEvent, ReplayOptions, SessionInfo, VecSource, run};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let kinds = [
        "prompt",
        "reasoning",
        "tool_call",
        "tool_result",
        "response",
    ];
    let t0 = 1_767_323_045_000_000i64;
    let mut t = t0;
    let events: Vec<ReplayEvent> = (0..n)
        .map(|i| {
            let kind = if i % 97 == 96 { "error" } else { kinds[(i % 5) as usize] };
            t += if i % 50 == 49 { 30_000_000 } else { 400_000 };
            let content = match kind {
                "tool_call" => format!(r#"{{"query":"step {i}","user":"[REDACTED:email]"}}"#),
                "tool_result" => format!(r#"{{"hits":{i},"ok":true}}"#),
                "error" => format!("tool failed at step {i}: timeout"),
                _ => format!("{kind} text for step {i}, long enough to wrap in a narrow detail pane when the terminal is small"),
            };
            ReplayEvent {
                idx: 10_000 + i,
                session_seq: i,
                kind: kind.into(),
                ts: Some(t),
                received_at: t + 1_000,
                name: matches!(kind, "tool_call" | "tool_result").then(|| "web_search".into()),
                actor: Some("agent".into()),
                model: Some("model-x".into()),
                ingested_by: None,
                event_id: format!("ev-{i}"),
                span_id: (kind == "tool_call").then(|| format!("span-{i}")),
                parent_span_id: (kind == "tool_result").then(|| format!("span-{}", i - 1)),
                content_type: if content.starts_with('{') { "json" } else { "text" }.into(),
                content: Some(content),
                attributes: None,
                masked: vec![],
                leaf_hash: format!("{i:064x}"),
            }
        })
        .collect();
    let info = SessionInfo {
        session_id: "demo-session".into(),
        namespace: "demo".into(),
        origin: "in-memory demo".into(),
        ..SessionInfo::default()
    };
    let integrity = Integrity::Unverified {
        reason: "synthetic demo data".into(),
    };
    if let Err(e) = run(
        Box::new(VecSource::new(info, events, integrity)),
        ReplayOptions::default(),
    ) {
        eprintln!("replay: {e}");
        std::process::exit(1);
    }
}
