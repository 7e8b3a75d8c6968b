//! Pure mapping of OpenTelemetry OTLP export requests (traces and logs,
//! following the GenAI semantic conventions) to tracevault [`Event`]s.
//!
//! Every event is validated by [`Event::validated`], by the same rules as an
//! event sent to the native API ([`Event::from_value`]). The
//! mapping is all or nothing per span and per log record: if any of its events
//! is invalid, none is kept, the span (or record) is counted in
//! [`Mapped::rejected`] and a message names it. Nothing is silently dropped or
//! altered beyond the normalisations documented here.
//!
//! # Common rules
//!
//! - **Ids**: `trace_id` (32 hex), `span_id` (16 hex) and `parent_span_id` are
//!   the lowercase hex of the OTLP ids; empty and all-zero ids are absent.
//! - **session_id**: the `gen_ai.conversation.id` attribute (of the span or log
//!   record, else of the resource; a non-string value is taken as its JSON
//!   text), else the trace id, else `otlp-untraced`. A value that is not a
//!   valid session id (1-128 characters of `[A-Za-z0-9._:-]`) is normalised:
//!   each other character becomes `_`, the result is cut to 100 characters,
//!   and `:` and the first 16 hex digits of the SHA-256 of the original are
//!   appended (`my_chat_:1f2e...`). The original stays in the raw attributes.
//! - **event_id** (deterministic, so a resent batch deduplicates):
//!   `otlp:<trace_id>:<span_id>:<n>` for spans, where `n` is the event's
//!   position among the span's events (0 = the span event); a span without a
//!   trace or span id uses `otlp-span:<h>:<n>`. Log records use
//!   `otlp-log:<h>:<n>`. `<h>` is the first 32 hex digits of the SHA-256 of
//!   the protobuf encodings of the span (or record), its resource and its
//!   scope, each prefixed by its length; OTLP/JSON and OTLP/protobuf decode to
//!   the same structs and so give the same ids. (Two byte-identical log
//!   records under the same resource and scope get the same ids.)
//! - **model**: `gen_ai.response.model`, else `gen_ai.request.model` (set on
//!   every event of the span or record).
//! - **ts**: unix nanoseconds as RFC 3339 UTC (microsecond precision); 0 and
//!   times the event model cannot hold are absent.
//! - Empty strings for `name`, `actor` and `model` are treated as absent;
//!   `null` content is absent.
//! - **AnyValue → JSON**: string, bool, int (number), double (number; NaN and
//!   ±infinity as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`), bytes →
//!   `{"bytes_base64": "..."}`, array → array, kvlist → object, empty value
//!   → `null`. A key repeated in any attribute or key-value list of a span
//!   or record (or of its resource or scope) refuses it. The message attributes
//!   (`gen_ai.system_instructions`, `gen_ai.input.messages`,
//!   `gen_ai.output.messages`, and the legacy `tool_calls`, `message`,
//!   `gen_ai.event.content`, `gen_ai.prompt`, `gen_ai.completion`) are parsed
//!   as JSON when they are strings holding a JSON array or object; otherwise
//!   they are used as text.
//!
//! # Spans (`map_traces`)
//!
//! Each span gives, in order:
//!
//! 1. **The span event** (position 0, always): kind `span` (`error` if the
//!    status code is ERROR, with the status message as content), `name` = span
//!    name, `ts` = start time, `actor` = `gen_ai.agent.name`, else
//!    `gen_ai.provider.name`, else `gen_ai.system`. Its attributes are
//!    everything the sender said: `otlp.resource` (resource attributes),
//!    `otlp.resource_meta` (schema URL, dropped count, entity refs; only when
//!    set), `otlp.scope` (`name`, `version`, `attributes`, and
//!    `dropped_attributes_count` / `schema_url` when set), `otlp.span` (`name`,
//!    `kind` (int), `start_time_unix_nano` and `end_time_unix_nano` (strings),
//!    `status` {`code`, `message`}, `trace_state`, `flags`, the three
//!    `dropped_*_count`, `events` [{`name`, `time_unix_nano`, `attributes`,
//!    `dropped_attributes_count`}], `links` [{`trace_id`, `span_id`,
//!    `trace_state`, `attributes`, `dropped_attributes_count`, `flags`}]), and
//!    every span attribute at top level under its own key, including those
//!    mapped to the events below. A sender attribute whose key the mapping
//!    already uses is kept under `otlp.shadowed`.
//! 2. **System instructions** (`gen_ai.system_instructions`, an array of
//!    parts): one event per part, actor `system`; text → `prompt`.
//! 3. **Input messages** (`gen_ai.input.messages`): one event per part of each
//!    message, in order, actor = the message role, ts = span start. Text by
//!    role: `assistant` → `message`, `tool` → `tool_result`, any other role
//!    (user, system, ...) → `prompt`.
//! 4. **Output messages** (`gen_ai.output.messages`): as input, ts = span end
//!    (else start); text → `response`.
//!
//!    Part types, wherever they appear: `text` → as above, content = `content`;
//!    `reasoning` → `reasoning`, content = `content`; `tool_call` →
//!    `tool_call`, name = tool `name`, content = `arguments` (as given);
//!    `tool_call_response` → `tool_result`, content = `response`; any other
//!    type (`blob`, `uri`, `file`, unknown) → `message` with the whole part as
//!    content. A message without `parts` is read as a chat message (below);
//!    a bare string is a text part. Part event attributes:
//!    `gen_ai.message.role`, `otlp.part` {`source` (the attribute), `message`
//!    and `part` (indices), `type`}, and when present `gen_ai.tool.call.id`,
//!    `gen_ai.message.name`, `gen_ai.output.finish_reason`.
//! 5. **Tool execution** (`gen_ai.operation.name` = `execute_tool`):
//!    `gen_ai.tool.call.arguments` → `tool_call` (ts = start) and
//!    `gen_ai.tool.call.result` → `tool_result` (ts = end), name =
//!    `gen_ai.tool.name`, with `gen_ai.tool.call.id` and `gen_ai.tool.name`
//!    attributes.
//! 6. **Flattened attributes** (OpenLLMetry): `gen_ai.prompt.<i>.role`,
//!    `.content`, `.tool_call_id` and `gen_ai.completion.<i>.role`,
//!    `.content`, `.finish_reason`, with `.tool_calls.<k>.id/name/arguments`,
//!    are rebuilt into chat messages ordered by `i` (prompts at start,
//!    completions at end).
//! 7. **Span events** in order, for GenAI event names only (the others stay
//!    in `otlp.span.events`); ts = the event's time (else span start). The
//!    body is the `gen_ai.event.content` attribute (JSON text) if present,
//!    else the event's attributes (`content`, `role`, `tool_calls`, `id`,
//!    `message`, `finish_reason`):
//!    - `gen_ai.system.message`, `gen_ai.user.message` → `prompt`;
//!      `gen_ai.assistant.message` → `message`; `gen_ai.tool.message` →
//!      `tool_result` (`id` → `gen_ai.tool.call.id`); `gen_ai.choice` →
//!      `response` (content from `message.content`); actor = `role`, else
//!      implied by the name.
//!    - `gen_ai.content.prompt` (attribute `gen_ai.prompt`) and
//!      `gen_ai.content.completion` (attribute `gen_ai.completion`): a JSON
//!      list of chat messages or a text; prompt messages by role as input
//!      text, completion entries → `response`.
//!    - `gen_ai.client.inference.operation.details`: its attributes are mapped
//!      like a span's (2-6).
//!
//! A **chat message** (`{role, content, tool_calls, tool_call_id}`, or a
//! choice `{index, finish_reason, message}`) gives one event for its content
//! (omitted when it has only tool calls) and one `tool_call` event per
//! `tool_calls` entry (`{id, function: {name, arguments}}` or
//! `{id, name, arguments}`: name = tool name, content = arguments). A message
//! with several conventions at once (e.g. current attributes and flattened
//! ones) gives events for each.
//!
//! # Log records (`map_logs`)
//!
//! The event name is the record's `event_name`, else its `event.name`
//! attribute. The GenAI names above map like span events, with the record
//! body (a kvlist with `content`, `role`, `tool_calls`, `id`, or `message` for
//! `gen_ai.choice`; or a string) as the body;
//! `gen_ai.client.inference.operation.details` maps the record's attributes
//! like a span's. Any other record (or a GenAI record that yields nothing)
//! gives one `message` event named by the event name, whose content is the
//! body (text if a string, JSON otherwise, absent if empty). Every record
//! gives at least one event. ts = `time_unix_nano`, else
//! `observed_time_unix_nano`; `trace_id` and `span_id` come from the record.
//! The first event (n = 0) carries the raw attributes: `otlp.resource`,
//! `otlp.resource_meta`, `otlp.scope`, `otlp.log` {`time_unix_nano`,
//! `observed_time_unix_nano` (strings), `severity_number`, `severity_text`,
//! `event_name`, `flags`, `dropped_attributes_count`, and `body` when the body
//! is not itself the content}, and every record attribute at top level.

mod anyvalue;
mod draft;
mod genai;
mod ids;
mod legacy;
mod logs;
mod raw;
mod spans;
#[cfg(test)]
mod tests;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::Event;

/// How many rejection messages [`Mapped::messages`] keeps; the rest are
/// summarised as "and N more".
const MAX_MESSAGES: usize = 20;

/// Result of mapping one OTLP export request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    /// Accepted events, in a deterministic order (resource, scope, span or log
    /// record order, then position within the span or record).
    pub events: Vec<Event>,
    /// Spans (for traces) or log records (for logs) rejected, each counted
    /// once; none of their events is in `events`.
    pub rejected: u64,
    /// Human-readable reasons, naming the span or record; at most 20, then
    /// one "and N more".
    pub messages: Vec<String>,
}

/// What the mapping refused, when the accepted events went to a sink
/// ([`map_traces_each`], [`map_logs_each`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rejected {
    /// Spans or log records rejected, as [`Mapped::rejected`].
    pub count: u64,
    /// Reasons, as [`Mapped::messages`].
    pub messages: Vec<String>,
}

/// Maps an OTLP trace export request (see the module documentation).
pub fn map_traces(req: &ExportTraceServiceRequest) -> Mapped {
    collect(|sink| map_traces_each(req, sink))
}

/// Maps an OTLP logs export request (see the module documentation).
pub fn map_logs(req: &ExportLogsServiceRequest) -> Mapped {
    collect(|sink| map_logs_each(req, sink))
}

/// Maps a trace export request, handing the events of each accepted span to
/// `sink` as soon as they are mapped, in [`Mapped::events`] order. A receiver
/// seals them right away, while they are still in the processor's cache,
/// instead of after the whole request.
pub fn map_traces_each(
    req: &ExportTraceServiceRequest,
    sink: &mut dyn FnMut(Vec<Event>),
) -> Rejected {
    spans::map_traces(req, Collector::new(sink))
}

/// Maps a logs export request, handing the events of each accepted log
/// record to `sink` (see [`map_traces_each`]).
pub fn map_logs_each(req: &ExportLogsServiceRequest, sink: &mut dyn FnMut(Vec<Event>)) -> Rejected {
    logs::map_logs(req, Collector::new(sink))
}

fn collect(map: impl FnOnce(&mut dyn FnMut(Vec<Event>)) -> Rejected) -> Mapped {
    let mut events = Vec::new();
    let rejected = map(&mut |e| events.extend(e));
    Mapped {
        events,
        rejected: rejected.count,
        messages: rejected.messages,
    }
}

/// Hands accepted events to a sink and keeps count of the rejected.
struct Collector<'a> {
    sink: &'a mut dyn FnMut(Vec<Event>),
    rejected: Rejected,
    more: u64,
}

impl<'a> Collector<'a> {
    fn new(sink: &'a mut dyn FnMut(Vec<Event>)) -> Self {
        Collector {
            sink,
            rejected: Rejected::default(),
            more: 0,
        }
    }

    fn accept(&mut self, events: Vec<Event>) {
        (self.sink)(events);
    }

    fn reject(&mut self, why: String) {
        self.rejected.count += 1;
        if self.rejected.messages.len() < MAX_MESSAGES {
            self.rejected.messages.push(why);
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Rejected {
        if self.more > 0 {
            self.rejected
                .messages
                .push(format!("and {} more", self.more));
        }
        self.rejected
    }
}

/// A name quoted for a message, cut to 64 characters.
fn label(name: &str) -> String {
    const MAX: usize = 64;
    if name.chars().count() <= MAX {
        format!("{name:?}")
    } else {
        let cut: String = name.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}
