//! Older GenAI conventions, still emitted by many SDKs: per-message events
//! (`gen_ai.user.message`, `gen_ai.choice`, ...), the `gen_ai.content.prompt`
//! and `gen_ai.content.completion` events, and OpenLLMetry-style flattened
//! attributes (`gen_ai.prompt.0.content`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::anyvalue::{get_str, non_null, structured};
use super::draft::{Draft, part_info};
use super::genai::{self, input_text_kind};
use crate::Kind;

/// Name of the event (span event or log record) that carries a whole
/// inference's attributes.
pub(super) const INFERENCE_DETAILS: &str = "gen_ai.client.inference.operation.details";

/// How to read one chat message.
#[derive(Debug, Clone)]
pub(super) struct ChatSpec<'a> {
    /// Kind of the message's content; `None`: a response if `output`, else by role.
    pub text_kind: Option<Kind>,
    /// Whether the message is model output.
    pub output: bool,
    /// Role when the message names none.
    pub default_role: Option<&'a str>,
}

/// How a per-message event name is read.
fn legacy_spec(name: &str) -> Option<ChatSpec<'static>> {
    let (kind, output, role) = match name {
        "gen_ai.system.message" => (Kind::Prompt, false, "system"),
        "gen_ai.user.message" => (Kind::Prompt, false, "user"),
        "gen_ai.assistant.message" => (Kind::Message, false, "assistant"),
        "gen_ai.tool.message" => (Kind::ToolResult, false, "tool"),
        "gen_ai.choice" => (Kind::Response, true, "assistant"),
        _ => return None,
    };
    Some(ChatSpec {
        text_kind: Some(kind),
        output,
        default_role: Some(role),
    })
}

/// The body of a legacy span event: `gen_ai.event.content` (JSON text of the
/// body) if present, else the event's attributes themselves.
pub(super) fn span_event_body(attrs: &Map<String, Value>) -> Value {
    match non_null(attrs.get("gen_ai.event.content")).map(structured) {
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            let mut m = Map::new();
            m.insert("content".into(), other);
            Value::Object(m)
        }
        None => Value::Object(attrs.clone()),
    }
}

/// The steps of one named event (span event or log record) with the given
/// body and attributes; `None` when the name is not a GenAI event name.
pub(super) fn event_drafts(
    name: &str,
    body: &Value,
    attrs: &Map<String, Value>,
    idx: &[(&str, usize)],
    ts: u64,
) -> Option<Vec<Draft>> {
    if let Some(spec) = legacy_spec(name) {
        return Some(chat_message(body, &spec, name, idx, ts));
    }
    let (key, output) = match name {
        "gen_ai.content.prompt" => ("gen_ai.prompt", false),
        "gen_ai.content.completion" => ("gen_ai.completion", true),
        INFERENCE_DETAILS => return Some(genai::from_attributes(attrs, ts, ts)),
        _ => return None,
    };
    let value = non_null(attrs.get(key))
        .or_else(|| non_null(body.get(key)))
        .or_else(|| non_null(Some(body)).filter(|b| !b.is_object()));
    let Some(value) = value else {
        return Some(Vec::new());
    };
    let spec = ChatSpec {
        text_kind: None,
        output,
        default_role: None,
    };
    let mut out = Vec::new();
    match structured(value) {
        Value::Array(msgs) => {
            for (i, m) in msgs.iter().enumerate() {
                let mut at = idx.to_vec();
                at.push(("message", i));
                out.extend(chat_message(m, &spec, name, &at, ts));
            }
        }
        other => out.extend(chat_message(&other, &spec, name, idx, ts)),
    }
    Some(out)
}

/// One chat message (`{role, content, tool_calls, tool_call_id}`, or an
/// OpenAI-style choice `{index, finish_reason, message}`, or a bare text):
/// one event for its content (unless it has only tool calls), then one
/// `tool_call` event per tool call.
pub(super) fn chat_message(
    msg: &Value,
    spec: &ChatSpec<'_>,
    source: &str,
    idx: &[(&str, usize)],
    ts: u64,
) -> Vec<Draft> {
    let default_kind = |role: Option<&str>| {
        spec.text_kind.unwrap_or(if spec.output {
            Kind::Response
        } else {
            input_text_kind(role)
        })
    };
    let msg = structured(msg);
    let Value::Object(outer) = &msg else {
        let kind = default_kind(spec.default_role);
        return vec![
            Draft::new(kind, ts, part_info(source, idx, Some("content")))
                .role(spec.default_role)
                .content(Some(&msg)),
        ];
    };
    let finish = outer.get("finish_reason");
    let inner = outer.get("message").map(structured);
    let body = match &inner {
        Some(Value::Object(m)) => m,
        _ => outer,
    };
    let role = get_str(body, "role").or(spec.default_role);
    let kind = default_kind(role);
    let content = non_null(body.get("content"));
    let tool_calls = match body.get("tool_calls").map(structured) {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    };
    let call_id = non_null(body.get("tool_call_id")).or_else(|| {
        if kind == Kind::ToolResult {
            non_null(body.get("id"))
        } else {
            None
        }
    });
    let mut out = Vec::new();
    if content.is_some() || tool_calls.is_empty() {
        let d = Draft::new(kind, ts, part_info(source, idx, Some("content")))
            .role(role)
            .content(content)
            .attr("gen_ai.tool.call.id", call_id)
            .attr("gen_ai.output.finish_reason", finish);
        out.push(d);
    }
    for (t, tc) in tool_calls.iter().enumerate() {
        let mut at = idx.to_vec();
        at.push(("tool_call", t));
        out.push(
            tool_call(tc, source, &at, ts)
                .role(role)
                .attr("gen_ai.output.finish_reason", finish),
        );
    }
    out
}

/// One entry of `tool_calls`: `{id, type, function: {name, arguments}}` or
/// `{id, name, arguments}`.
fn tool_call(tc: &Value, source: &str, idx: &[(&str, usize)], ts: u64) -> Draft {
    let d = Draft::new(
        Kind::ToolCall,
        ts,
        part_info(source, idx, Some("tool_call")),
    );
    let tc = structured(tc);
    let Value::Object(m) = &tc else {
        return d.content(Some(&tc));
    };
    let function = m.get("function").map(structured);
    let f = match &function {
        Some(Value::Object(f)) => f,
        _ => m,
    };
    let name = get_str(f, "name").or_else(|| get_str(m, "name"));
    let args = non_null(f.get("arguments")).or_else(|| non_null(m.get("arguments")));
    d.name(name)
        .content(args)
        .attr("gen_ai.tool.call.id", m.get("id"))
}

/// A message rebuilt from flattened attributes.
#[derive(Default)]
struct Flat {
    msg: Map<String, Value>,
    tool_calls: BTreeMap<usize, Map<String, Value>>,
}

/// OpenLLMetry-style flattened attributes: `gen_ai.prompt.<i>.role`,
/// `.content`, `.tool_call_id` and `gen_ai.completion.<i>.role`, `.content`,
/// `.finish_reason`, each with `.tool_calls.<k>.id/.name/.arguments`; read as
/// chat messages ordered by `i` (prompts dated `start`, completions `end`).
pub(super) fn flattened(attrs: &Map<String, Value>, start: u64, end: u64) -> Vec<Draft> {
    let mut out = Vec::new();
    for (source, prefix, output, ts) in [
        ("gen_ai.prompt", "gen_ai.prompt.", false, start),
        ("gen_ai.completion", "gen_ai.completion.", true, end),
    ] {
        let mut msgs: BTreeMap<usize, Flat> = BTreeMap::new();
        for (k, v) in attrs {
            let Some((i, field)) = k.strip_prefix(prefix).and_then(|r| r.split_once('.')) else {
                continue;
            };
            let Ok(i) = i.parse::<usize>() else {
                continue;
            };
            match field {
                "role" | "content" | "finish_reason" | "tool_call_id" => {
                    msgs.entry(i)
                        .or_default()
                        .msg
                        .insert(field.into(), v.clone());
                }
                _ => {
                    let Some((t, f)) = field
                        .strip_prefix("tool_calls.")
                        .and_then(|r| r.split_once('.'))
                    else {
                        continue;
                    };
                    let (Ok(t), "id" | "name" | "arguments") = (t.parse::<usize>(), f) else {
                        continue;
                    };
                    msgs.entry(i)
                        .or_default()
                        .tool_calls
                        .entry(t)
                        .or_default()
                        .insert(f.into(), v.clone());
                }
            }
        }
        let spec = ChatSpec {
            text_kind: None,
            output,
            default_role: None,
        };
        for (i, mut flat) in msgs {
            if !flat.tool_calls.is_empty() {
                let calls = flat.tool_calls.into_values().map(Value::Object).collect();
                flat.msg.insert("tool_calls".into(), Value::Array(calls));
            }
            let msg = Value::Object(flat.msg);
            out.extend(chat_message(&msg, &spec, source, &[("message", i)], ts));
        }
    }
    out
}
