//! The current GenAI semantic conventions (semconv 1.37 and later): the
//! `gen_ai.system_instructions`, `gen_ai.input.messages` and
//! `gen_ai.output.messages` attributes, and tool execution spans.

use serde_json::{Map, Value, json};

use super::anyvalue::{get_str, non_empty_str, non_null, structured};
use super::draft::{Draft, part_info};
use super::legacy::{self, ChatSpec};
use crate::Kind;

/// Attribute with the system instructions (an array of parts).
pub(super) const SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
/// Attribute with the input messages.
pub(super) const INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// Attribute with the output messages.
pub(super) const OUTPUT_MESSAGES: &str = "gen_ai.output.messages";

/// Which attribute a part comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    System,
    Input,
    Output,
}

/// The kind of a text given to a model, by the role that wrote it: an
/// assistant's earlier turn is a `message`, a tool's answer a `tool_result`,
/// everything else (user, system, developer, no role) a `prompt`.
pub(super) fn input_text_kind(role: Option<&str>) -> Kind {
    match role {
        Some("assistant") => Kind::Message,
        Some("tool") => Kind::ToolResult,
        _ => Kind::Prompt,
    }
}

/// All steps described by a span's (or an inference-details log record's)
/// attributes: system instructions, input messages, output messages, tool
/// execution, then the flattened legacy attributes. Input steps are dated
/// `start`, output steps `end` (else `start`).
pub(super) fn from_attributes(attrs: &Map<String, Value>, start: u64, end: u64) -> Vec<Draft> {
    let end = if end == 0 { start } else { end };
    let mut out = Vec::new();
    if let Some(v) = non_null(attrs.get(SYSTEM_INSTRUCTIONS)) {
        for (j, p) in as_list(structured(v)).into_iter().enumerate() {
            let origin = part_info(SYSTEM_INSTRUCTIONS, &[("part", j)], part_type(&p));
            out.push(part(p, Side::System, Some("system"), origin, start));
        }
    }
    if let Some(v) = non_null(attrs.get(INPUT_MESSAGES)) {
        out.extend(messages(v, Side::Input, INPUT_MESSAGES, start));
    }
    if let Some(v) = non_null(attrs.get(OUTPUT_MESSAGES)) {
        out.extend(messages(v, Side::Output, OUTPUT_MESSAGES, end));
    }
    out.extend(tool_execution(attrs, start, end));
    out.extend(legacy::flattened(attrs, start, end));
    out
}

/// An array's elements; any other value is a list of one.
fn as_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => vec![other],
    }
}

/// The `type` of a part (a bare string counts as text).
fn part_type(p: &Value) -> Option<&str> {
    match p {
        Value::String(_) => Some("text"),
        other => non_empty_str(other.get("type")),
    }
}

/// One event per part of each message, in order.
fn messages(v: &Value, side: Side, source: &str, ts: u64) -> Vec<Draft> {
    let mut out = Vec::new();
    for (i, mut msg) in as_list(structured(v)).into_iter().enumerate() {
        // The parts are moved out of the parsed message, not cloned: each
        // part's content then moves on into its event (a 1 KiB message was
        // copied twice more per span).
        let parts = match msg.get_mut("parts") {
            Some(Value::Array(a)) => Some(std::mem::take(a)),
            Some(v @ Value::String(_)) => match structured(v) {
                Value::Array(a) => Some(a),
                _ => None,
            },
            _ => None,
        };
        let Some(parts) = parts else {
            // Not a parts message: a bare text or an older `{role, content}`
            // chat message.
            let spec = ChatSpec {
                text_kind: None,
                output: side == Side::Output,
                default_role: None,
            };
            out.extend(legacy::chat_message(
                &msg,
                &spec,
                source,
                &[("message", i)],
                ts,
            ));
            continue;
        };
        let role = non_empty_str(msg.get("role"));
        for (j, p) in parts.into_iter().enumerate() {
            let origin = part_info(source, &[("message", i), ("part", j)], part_type(&p));
            let d = part(p, side, role, origin, ts)
                .attr("gen_ai.message.name", msg.get("name"))
                .attr("gen_ai.output.finish_reason", msg.get("finish_reason"));
            out.push(d);
        }
    }
    out
}

/// One part as a draft.
fn part(
    mut p: Value,
    side: Side,
    role: Option<&str>,
    origin: Map<String, Value>,
    ts: u64,
) -> Draft {
    let text_kind = match side {
        Side::System => Kind::Prompt,
        Side::Output => Kind::Response,
        Side::Input => input_text_kind(role),
    };
    let d = Draft::new(Kind::Message, ts, origin).role(role);
    if let Value::String(_) = p {
        return Draft {
            kind: text_kind,
            ..d
        }
        .content_owned(Some(p));
    }
    // The part is owned: its content is taken out of it, not cloned.
    fn take(p: &mut Value, key: &str) -> Option<Value> {
        p.get_mut(key).map(Value::take)
    }
    match part_type(&p).map(str::to_string).as_deref() {
        Some("text") => Draft {
            kind: text_kind,
            ..d
        }
        .content_owned(take(&mut p, "content")),
        Some("reasoning") => Draft {
            kind: Kind::Reasoning,
            ..d
        }
        .content_owned(take(&mut p, "content")),
        Some("tool_call") => {
            let args = take(&mut p, "arguments");
            Draft {
                kind: Kind::ToolCall,
                ..d
            }
            .name(non_empty_str(p.get("name")))
            .content_owned(args)
            .attr("gen_ai.tool.call.id", p.get("id"))
        }
        Some("tool_call_response") => {
            let response = take(&mut p, "response");
            Draft {
                kind: Kind::ToolResult,
                ..d
            }
            .content_owned(response)
            .attr("gen_ai.tool.call.id", p.get("id"))
        }
        _ => d.content_owned(Some(p)),
    }
}

/// `execute_tool` spans: the call's arguments and its result.
fn tool_execution(attrs: &Map<String, Value>, start: u64, end: u64) -> Vec<Draft> {
    if get_str(attrs, "gen_ai.operation.name") != Some("execute_tool") {
        return Vec::new();
    }
    let name = get_str(attrs, "gen_ai.tool.name");
    let id = attrs.get("gen_ai.tool.call.id");
    let mut out = Vec::new();
    for (key, kind, ts) in [
        ("gen_ai.tool.call.arguments", Kind::ToolCall, start),
        ("gen_ai.tool.call.result", Kind::ToolResult, end),
    ] {
        if let Some(v) = non_null(attrs.get(key)) {
            let d = Draft::new(kind, ts, part_info(key, &[], None))
                .name(name)
                .content(Some(v))
                .attr("gen_ai.tool.call.id", id)
                .attr("gen_ai.tool.name", name.map(|n| json!(n)).as_ref());
            out.push(d);
        }
    }
    out
}

/// The model: `gen_ai.response.model`, else `gen_ai.request.model`.
pub(super) fn model(attrs: &Map<String, Value>) -> Option<String> {
    get_str(attrs, "gen_ai.response.model")
        .or_else(|| get_str(attrs, "gen_ai.request.model"))
        .map(str::to_string)
}
