//! One event of a session as the replayer sees it, and the small amount of
//! interpretation the views need (kind, masked values, search matching).

use serde::{Deserialize, Serialize};

/// One event of the replayed session, as read (and masked) for this reader.
///
/// Times are microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayEvent {
    /// Log index (position in the namespace's log).
    pub idx: u64,
    /// Position within the session, assigned by the vault (starts at 0).
    pub session_seq: u64,
    /// Wire kind (`prompt`, `tool_call`, ...).
    pub kind: String,
    /// Writer's timestamp, when it sent one.
    pub ts: Option<i64>,
    /// Server receive time.
    pub received_at: i64,
    /// Event name (tool name for tool calls and results).
    pub name: Option<String>,
    /// Who acted (agent, user, tool).
    pub actor: Option<String>,
    /// Model that produced the event.
    pub model: Option<String>,
    /// Who wrote it: the writing token's subject, set by the vault (unlike
    /// `actor`, which the writer says), so events another writer put into
    /// the session show as such.
    #[serde(default)]
    pub ingested_by: Option<String>,
    /// Writer-chosen event id.
    pub event_id: String,
    /// Span id, when the event belongs to a trace.
    pub span_id: Option<String>,
    /// Parent span id.
    pub parent_span_id: Option<String>,
    /// Payload (text or JSON text), possibly masked.
    pub content: Option<String>,
    /// `"text"` or `"json"`.
    pub content_type: String,
    /// Attributes as JSON text, possibly masked.
    pub attributes: Option<String>,
    /// Fields the reader's masking profile masked (`content`, `attributes`, ...).
    #[serde(default)]
    pub masked: Vec<String>,
    /// Leaf hash, hex.
    pub leaf_hash: String,
}

impl ReplayEvent {
    /// An event with only what a [`crate::TimelineIndex`] reads (position,
    /// kind, times), for sources that build the index from a few columns.
    pub fn timeline_only(
        idx: u64,
        session_seq: u64,
        kind: &str,
        ts: Option<i64>,
        received_at: i64,
    ) -> ReplayEvent {
        ReplayEvent {
            idx,
            session_seq,
            kind: kind.to_string(),
            ts,
            received_at,
            name: None,
            actor: None,
            model: None,
            ingested_by: None,
            event_id: String::new(),
            span_id: None,
            parent_span_id: None,
            content: None,
            content_type: "text".into(),
            attributes: None,
            masked: Vec::new(),
            leaf_hash: String::new(),
        }
    }

    /// The event's time for replay: the writer's timestamp, else the receive time.
    pub fn time_us(&self) -> i64 {
        self.ts.unwrap_or(self.received_at)
    }

    /// The parsed kind.
    pub fn event_kind(&self) -> EventKind {
        EventKind::parse(&self.kind)
    }

    /// Whether `field` is listed as masked for this reader.
    pub fn is_field_masked(&self, field: &str) -> bool {
        self.masked.iter().any(|m| {
            m == field
                || m.strip_prefix(field)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('$'))
        })
    }

    /// Case-insensitive match of an already lower-cased needle against content,
    /// name, actor, kind, model and attributes.
    pub fn matches(&self, needle_lower: &str) -> bool {
        if needle_lower.is_empty() {
            return false;
        }
        let hit = |s: &str| s.to_lowercase().contains(needle_lower);
        hit(&self.kind)
            || self.name.as_deref().is_some_and(hit)
            || self.actor.as_deref().is_some_and(hit)
            || self.model.as_deref().is_some_and(hit)
            || self.content.as_deref().is_some_and(hit)
            || self.attributes.as_deref().is_some_and(hit)
    }

    /// The event as pretty JSON, with JSON content and attributes embedded as
    /// values rather than strings.
    pub fn to_pretty_json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = value.as_object_mut() {
            if let Some(attrs) = self.attributes.as_deref()
                && let Ok(parsed) = serde_json::from_str::<serde_json::Value>(attrs)
            {
                obj.insert("attributes".into(), parsed);
            }
            if self.content_type == "json"
                && let Some(content) = self.content.as_deref()
                && let Ok(parsed) = serde_json::from_str::<serde_json::Value>(content)
            {
                obj.insert("content".into(), parsed);
            }
        }
        let mut out = serde_json::to_string_pretty(&value).unwrap_or_default();
        out.push('\n');
        out
    }
}

/// The event kinds of SPEC v1, plus `Other` for anything unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// Input given to a model.
    Prompt,
    /// A reasoning step.
    Reasoning,
    /// A tool invocation.
    ToolCall,
    /// What a tool returned.
    ToolResult,
    /// A model's answer.
    Response,
    /// A chat message.
    Message,
    /// Terminal-style input.
    Input,
    /// Terminal-style output.
    Output,
    /// A failure.
    Error,
    /// A note.
    Annotation,
    /// A generic span.
    Span,
    /// Not a known kind.
    Other,
}

impl EventKind {
    /// Every kind, in SPEC order, then `Other`.
    pub const ALL: [EventKind; 12] = [
        EventKind::Prompt,
        EventKind::Reasoning,
        EventKind::ToolCall,
        EventKind::ToolResult,
        EventKind::Response,
        EventKind::Message,
        EventKind::Input,
        EventKind::Output,
        EventKind::Error,
        EventKind::Annotation,
        EventKind::Span,
        EventKind::Other,
    ];

    /// Parses a wire name; unknown names are `Other`.
    pub fn parse(s: &str) -> EventKind {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(EventKind::Other)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Prompt => "prompt",
            EventKind::Reasoning => "reasoning",
            EventKind::ToolCall => "tool_call",
            EventKind::ToolResult => "tool_result",
            EventKind::Response => "response",
            EventKind::Message => "message",
            EventKind::Input => "input",
            EventKind::Output => "output",
            EventKind::Error => "error",
            EventKind::Annotation => "annotation",
            EventKind::Span => "span",
            EventKind::Other => "other",
        }
    }

    /// A one-column ASCII icon.
    pub fn icon(self) -> char {
        match self {
            EventKind::Prompt => '>',
            EventKind::Reasoning => '~',
            EventKind::ToolCall => '$',
            EventKind::ToolResult => '=',
            EventKind::Response => '<',
            EventKind::Message => '.',
            EventKind::Input => 'i',
            EventKind::Output => 'o',
            EventKind::Error => '!',
            EventKind::Annotation => '#',
            EventKind::Span => '-',
            EventKind::Other => '?',
        }
    }

    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(code: u8) -> EventKind {
        EventKind::ALL
            .get(code as usize)
            .copied()
            .unwrap_or(EventKind::Other)
    }
}

/// Finds masked values in a piece of text: `[REDACTED:label]` (with an optional
/// `…last4` tail), `[HASH:label:hex]`, `[MASKED]` and `hmac:<hex>`. Returns
/// byte ranges, in order, not overlapping.
pub fn masked_ranges(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let found = if rest.starts_with("[REDACTED:") || rest.starts_with("[HASH:") {
            rest.find(']').map(|end| {
                let mut stop = end + 1;
                if let Some(tail) = rest[stop..].strip_prefix('\u{2026}') {
                    stop += '\u{2026}'.len_utf8();
                    stop += tail
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .map(char::len_utf8)
                        .sum::<usize>();
                }
                stop
            })
        } else if rest.starts_with("[MASKED]") {
            Some("[MASKED]".len())
        } else if rest.starts_with("hmac:")
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            && rest[5..].starts_with(|c: char| c.is_ascii_hexdigit())
        {
            Some(
                5 + rest[5..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .count(),
            )
        } else {
            None
        };
        match found {
            Some(len) => {
                out.push((i, i + len));
                i += len;
            }
            None => {
                i += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_masked_values() {
        let t = "mail [REDACTED:email] card [REDACTED:card]\u{2026}1111, h [HASH:email:0123456789abcdef] x hmac:ab12 [MASKED]";
        let found: Vec<&str> = masked_ranges(t)
            .into_iter()
            .map(|(a, b)| &t[a..b])
            .collect();
        assert_eq!(
            found,
            vec![
                "[REDACTED:email]",
                "[REDACTED:card]\u{2026}1111",
                "[HASH:email:0123456789abcdef]",
                "hmac:ab12",
                "[MASKED]"
            ]
        );
        assert!(masked_ranges("plain text, no hmac:here").is_empty());
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_code(k.code()), k);
            assert_eq!(EventKind::parse(k.as_str()), k);
        }
        assert_eq!(EventKind::parse("bogus"), EventKind::Other);
    }
}
