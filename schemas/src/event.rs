//! The Event a writer sends (SPEC section 4) and its validation.
//!
//! Parsing is done by hand from a `serde_json::Value` rather than by a derived
//! `Deserialize`, so that every rejection names the offending field precisely
//! (`events[3].session_id: ...`) and unknown fields are refused instead of being
//! silently dropped: an audit log must never lose part of what a writer said.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::kind::Kind;

/// Longest accepted `session_id` (SPEC: 1-128 chars of `[A-Za-z0-9._:-]`).
pub const MAX_SESSION_ID_LEN: usize = 128;
/// Longest accepted value of the short optional string fields (`event_id`,
/// `trace_id`, `name`, ...). They are identifiers and labels, not payloads.
pub const MAX_SHORT_FIELD_LEN: usize = 1024;

/// One event as sent by a writer. `content` and `attributes` are the payload;
/// everything else is metadata that is committed verbatim into the log.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(
    title = "tracevault Event (v1)",
    description = "One AI trace or session event, as sent by a writer (SPEC section 4). Unknown fields are rejected."
)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Session the event belongs to.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9._:-]{1,128}$")
    )]
    pub session_id: String,
    /// What kind of step this is.
    pub kind: Kind,
    /// When the event happened, per the writer (RFC 3339; stored with microsecond precision).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub ts: Option<DateTime<Utc>>,
    /// Client-chosen id that makes retries idempotent within a namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub event_id: Option<String>,
    /// Distributed trace id (e.g. OpenTelemetry, hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub trace_id: Option<String>,
    /// Span id within the trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub span_id: Option<String>,
    /// Parent span id within the trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub parent_span_id: Option<String>,
    /// Short label (tool name, step name, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub name: Option<String>,
    /// Who acted (user, agent, tool).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub actor: Option<String>,
    /// Model that produced the step, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub model: Option<String>,
    /// The payload: a string (stored as text) or any JSON value except null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// Free-form attributes; always a JSON object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
}

/// Why an event was refused. `field` is a JSON-path-like location (`session_id`,
/// `attributes`), so a client can point at the exact problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EventError {
    /// The offending field (empty for the event as a whole).
    pub field: String,
    /// Human-readable reason.
    pub message: String,
}

impl EventError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The same error, located inside a batch (`events[3].kind`).
    pub fn at(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// True for characters allowed in a `session_id`.
fn session_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// Checks a `session_id` (also used for path parameters).
pub fn validate_session_id(s: &str) -> Result<(), EventError> {
    if s.is_empty() || s.len() > MAX_SESSION_ID_LEN {
        return Err(EventError::new(
            "session_id",
            "must be 1-128 characters long",
        ));
    }
    if let Some(c) = s.chars().find(|c| !session_char_ok(*c)) {
        return Err(EventError::new(
            "session_id",
            format!("character {c:?} not allowed (use [A-Za-z0-9._:-])"),
        ));
    }
    Ok(())
}

fn take_short(field: &str, v: Value) -> Result<String, EventError> {
    let Value::String(s) = v else {
        return Err(EventError::new(
            field,
            format!("must be a string, got {}", type_name(&v)),
        ));
    };
    check_short(field, &s)?;
    Ok(s)
}

/// The rule of every short optional string field: an identifier or a label.
fn check_short(field: &str, s: &str) -> Result<(), EventError> {
    if s.is_empty() {
        return Err(EventError::new(
            field,
            "must not be empty (omit the field instead)",
        ));
    }
    if s.len() > MAX_SHORT_FIELD_LEN {
        return Err(EventError::new(
            field,
            format!("{} bytes, at most {MAX_SHORT_FIELD_LEN} allowed", s.len()),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(EventError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses an RFC 3339 timestamp to UTC, truncated to microseconds (the
/// precision of the stored column and of the committed record).
pub fn parse_timestamp(field: &str, s: &str) -> Result<DateTime<Utc>, EventError> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| EventError::new(field, format!("not an RFC 3339 timestamp: {e}")))?;
    check_timestamp(field, t.with_timezone(&Utc))
}

/// The rule of every stored time: microsecond precision, not before 1970.
fn check_timestamp(field: &str, t: DateTime<Utc>) -> Result<DateTime<Utc>, EventError> {
    let t = t.trunc_subsecs(6);
    if t.timestamp_micros() < 0 {
        return Err(EventError::new(
            field,
            "timestamps before 1970 are not accepted",
        ));
    }
    Ok(t)
}

/// Formats a timestamp the way the committed record does:
/// RFC 3339 UTC, exactly six fractional digits, `Z`.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Event {
    /// Parses and validates one event. Every field is checked; the first
    /// problem is reported with its field name.
    pub fn from_value(v: Value) -> Result<Event, EventError> {
        let Value::Object(map) = v else {
            return Err(EventError::new(
                "",
                format!("an event must be a JSON object, got {}", type_name(&v)),
            ));
        };
        let mut session_id = None;
        let mut kind = None;
        let mut ev = Event {
            session_id: String::new(),
            kind: Kind::Message,
            ts: None,
            event_id: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            name: None,
            actor: None,
            model: None,
            content: None,
            attributes: None,
        };
        for (k, v) in map {
            // An explicit null is the same as an absent optional field.
            if v.is_null() && !matches!(k.as_str(), "session_id" | "kind") {
                continue;
            }
            match k.as_str() {
                "session_id" => {
                    let Value::String(s) = v else {
                        return Err(EventError::new(
                            "session_id",
                            format!("must be a string, got {}", type_name(&v)),
                        ));
                    };
                    validate_session_id(&s)?;
                    session_id = Some(s);
                }
                "kind" => {
                    let Value::String(s) = v else {
                        return Err(EventError::new(
                            "kind",
                            format!("must be a string, got {}", type_name(&v)),
                        ));
                    };
                    kind = Some(Kind::parse(&s).ok_or_else(|| {
                        EventError::new(
                            "kind",
                            format!("unknown kind {s:?}; expected one of {}", Kind::ALL_NAMES),
                        )
                    })?);
                }
                "ts" => {
                    let Value::String(s) = v else {
                        return Err(EventError::new(
                            "ts",
                            format!("must be an RFC 3339 string, got {}", type_name(&v)),
                        ));
                    };
                    ev.ts = Some(parse_timestamp("ts", &s)?);
                }
                "event_id" => ev.event_id = Some(take_short("event_id", v)?),
                "trace_id" => ev.trace_id = Some(take_short("trace_id", v)?),
                "span_id" => ev.span_id = Some(take_short("span_id", v)?),
                "parent_span_id" => ev.parent_span_id = Some(take_short("parent_span_id", v)?),
                "name" => ev.name = Some(take_short("name", v)?),
                "actor" => ev.actor = Some(take_short("actor", v)?),
                "model" => ev.model = Some(take_short("model", v)?),
                "content" => ev.content = Some(v),
                "attributes" => match v {
                    Value::Object(m) => ev.attributes = Some(m),
                    other => {
                        return Err(EventError::new(
                            "attributes",
                            format!("must be a JSON object, got {}", type_name(&other)),
                        ));
                    }
                },
                other => {
                    return Err(EventError::new(
                        other,
                        "unknown field (see the Event JSON Schema)",
                    ));
                }
            }
        }
        ev.session_id = session_id.ok_or_else(|| EventError::new("session_id", "is required"))?;
        ev.kind = kind.ok_or_else(|| EventError::new("kind", "is required"))?;
        Ok(ev)
    }

    /// Checks an event built in code (the OTLP mapping) by the rules
    /// [`Event::from_value`] applies to JSON, without a round trip through
    /// a JSON tree: a valid `session_id`, short fields that are non-empty,
    /// short and free of control characters, `ts` cut to microseconds and not
    /// before 1970. A `null` content is absent.
    pub fn validated(mut self) -> Result<Event, EventError> {
        validate_session_id(&self.session_id)?;
        if let Some(t) = self.ts {
            self.ts = Some(check_timestamp("ts", t)?);
        }
        for (field, v) in [
            ("event_id", &self.event_id),
            ("trace_id", &self.trace_id),
            ("span_id", &self.span_id),
            ("parent_span_id", &self.parent_span_id),
            ("name", &self.name),
            ("actor", &self.actor),
            ("model", &self.model),
        ] {
            if let Some(v) = v {
                check_short(field, v)?;
            }
        }
        if self.content.as_ref().is_some_and(Value::is_null) {
            self.content = None;
        }
        Ok(self)
    }

    /// Parses an event from JSON text.
    pub fn from_json(text: &str) -> Result<Event, EventError> {
        // A key named twice is refused, never resolved (see strict_json).
        let v: Value = crate::strict_json::from_str(text)
            .map_err(|e| EventError::new("", format!("invalid JSON: {e}")))?;
        Event::from_value(v)
    }

    /// True when `content` is a JSON string, stored as plain text.
    pub fn content_is_text(&self) -> bool {
        matches!(self.content, Some(Value::String(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_naming_a_field_twice_is_refused() {
        let e = Event::from_json(
            r#"{"session_id":"s","kind":"annotation","content":"APPROVED","content":"DENIED"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("duplicate key \"content\""), "{e}");
    }

    #[test]
    fn minimal_event_parses() {
        let e = Event::from_value(json!({"session_id": "s-1", "kind": "prompt"})).unwrap();
        assert_eq!(e.session_id, "s-1");
        assert_eq!(e.kind, Kind::Prompt);
        assert!(e.content.is_none());
    }

    #[test]
    fn full_event_parses_and_truncates_ts_to_micros() {
        let e = Event::from_value(json!({
            "session_id": "a.b:c_d-1", "kind": "tool_call", "ts": "2026-11-22T02:02:03.123456789+01:00",
            "event_id": "e1", "trace_id": "t", "span_id": "s", "parent_span_id": "p",
            "name": "calc", "actor": "agent", "model": "m", "content": {"x": 1}, "attributes": {"a": [1]}
        }))
        .unwrap();
        assert_eq!(
            format_timestamp(&e.ts.unwrap()),
            "2026-11-22T01:02:03.123456Z"
        );
        assert!(!e.content_is_text());
    }

    fn err(v: Value) -> EventError {
        Event::from_value(v).unwrap_err()
    }

    #[test]
    fn each_field_has_a_precise_error() {
        assert_eq!(err(json!({"kind": "prompt"})).field, "session_id");
        assert_eq!(err(json!({"session_id": "s"})).field, "kind");
        assert_eq!(
            err(json!({"session_id": "", "kind": "prompt"})).field,
            "session_id"
        );
        assert_eq!(
            err(json!({"session_id": "a b", "kind": "prompt"})).field,
            "session_id"
        );
        assert_eq!(
            err(json!({"session_id": "x".repeat(129), "kind": "prompt"})).field,
            "session_id"
        );
        assert_eq!(
            err(json!({"session_id": "s", "kind": "thought"})).field,
            "kind"
        );
        assert_eq!(
            err(json!({"session_id": "s", "kind": "prompt", "ts": "yesterday"})).field,
            "ts"
        );
        assert_eq!(
            err(json!({"session_id": "s", "kind": "prompt", "ts": 5})).field,
            "ts"
        );
        assert_eq!(
            err(json!({"session_id": "s", "kind": "prompt", "name": 5})).field,
            "name"
        );
        assert_eq!(
            err(json!({"session_id": "s", "kind": "prompt", "model": ""})).field,
            "model"
        );
        assert_eq!(
            err(json!({"session_id": "s", "kind": "prompt", "actor": "a\nb"})).field,
            "actor"
        );
        assert_eq!(
            err(json!({"session_id": "s", "kind": "prompt", "event_id": "x".repeat(1025)})).field,
            "event_id"
        );
        assert_eq!(
            err(json!({"session_id": "s", "kind": "prompt", "attributes": [1]})).field,
            "attributes"
        );
        let e = err(json!({"session_id": "s", "kind": "prompt", "colour": "red"}));
        assert_eq!(e.field, "colour");
        assert!(e.message.contains("unknown field"));
        assert_eq!(err(json!([1])).field, "");
        assert_eq!(
            err(json!({"session_id": "s"})).at("events[3]").to_string(),
            "events[3].kind: is required"
        );
    }

    #[test]
    fn events_built_in_code_follow_the_json_rules() {
        let good = Event {
            session_id: "s-1".into(),
            kind: Kind::ToolCall,
            ts: DateTime::from_timestamp(1_800_000_000, 123_456_789),
            event_id: Some("e".into()),
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            name: Some("calc".into()),
            actor: None,
            model: Some("m".into()),
            content: Some(json!({"x": 1})),
            attributes: Some(Map::new()),
        };
        let checked = good.clone().validated().unwrap();
        let parsed = Event::from_value(serde_json::to_value(&good).unwrap()).unwrap();
        assert_eq!(checked, parsed);
        assert_eq!(checked.ts.unwrap().timestamp_subsec_nanos(), 123_456_000);
        let bad = |f: fn(&mut Event)| {
            let mut e = good.clone();
            f(&mut e);
            e.validated().unwrap_err().field
        };
        assert_eq!(bad(|e| e.session_id = "a b".into()), "session_id");
        assert_eq!(bad(|e| e.name = Some(String::new())), "name");
        assert_eq!(bad(|e| e.actor = Some("a\nb".into())), "actor");
        assert_eq!(bad(|e| e.trace_id = Some("x".repeat(1025))), "trace_id");
        assert_eq!(bad(|e| e.ts = DateTime::from_timestamp(-1, 0)), "ts");
        let mut null = good.clone();
        null.content = Some(Value::Null);
        assert_eq!(null.validated().unwrap().content, None);
    }

    #[test]
    fn null_optional_is_absent() {
        let e = Event::from_value(json!({"session_id": "s", "kind": "input", "content": null}))
            .unwrap();
        assert!(e.content.is_none());
        assert_eq!(
            err(json!({"session_id": null, "kind": "input"})).field,
            "session_id"
        );
    }

    #[test]
    fn pre_epoch_timestamps_are_refused() {
        assert_eq!(
            err(json!({"session_id": "s", "kind": "prompt", "ts": "1969-12-31T23:59:59Z"})).field,
            "ts"
        );
    }
}
