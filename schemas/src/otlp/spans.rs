//! Mapping of OTLP spans.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::Value;

use super::anyvalue::{get_str, kvs_to_map, repeated, repeated_key};
use super::draft::{Draft, Envelope};
use super::ids::{content_digest, hex_id, session_for};
use super::raw::{Origin, add_span};
use super::{Collector, Rejected, genai, label, legacy};
use crate::{Event, Kind};

/// Maps every span of a request; see the module documentation.
pub(super) fn map_traces(req: &ExportTraceServiceRequest, mut out: Collector<'_>) -> Rejected {
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            let origin = Origin::new(
                rs.resource.as_ref(),
                &rs.schema_url,
                ss.scope.as_ref(),
                &ss.schema_url,
            );
            // Repeated keys in the resource or scope refuse every span under them.
            let shared = rs
                .resource
                .as_ref()
                .and_then(|r| repeated_key(&r.attributes))
                .or_else(|| ss.scope.as_ref().and_then(|s| repeated_key(&s.attributes)));
            for (pi, span) in ss.spans.iter().enumerate() {
                let digest =
                    || content_digest(&[&Some(span), &rs.resource.as_ref(), &ss.scope.as_ref()]);
                let outcome = match shared.or_else(|| span_repeated_key(span)) {
                    Some(key) => Err(repeated(key)),
                    None => span_events(&origin, span, digest),
                };
                match outcome {
                    Ok(events) => out.accept(events),
                    Err(why) => out.reject(format!(
                        "resource_spans[{ri}].scope_spans[{si}].spans[{pi}] (span {}): {why}",
                        label(&span.name)
                    )),
                }
            }
        }
    }
    out.finish()
}

/// A key repeated in the span's attributes, its events' or its links'.
fn span_repeated_key(span: &Span) -> Option<&str> {
    repeated_key(&span.attributes)
        .or_else(|| span.events.iter().find_map(|e| repeated_key(&e.attributes)))
        .or_else(|| span.links.iter().find_map(|l| repeated_key(&l.attributes)))
}

/// All events of one span, all or nothing.
fn span_events(
    origin: &Origin,
    span: &Span,
    digest: impl FnOnce() -> String,
) -> Result<Vec<Event>, String> {
    let attrs = kvs_to_map(&span.attributes);
    let trace_id = hex_id(&span.trace_id);
    let span_id = hex_id(&span.span_id);
    let id_prefix = match (&trace_id, &span_id) {
        (Some(t), Some(s)) => ["otlp:", t, ":", s].concat(),
        _ => format!("otlp-span:{}", digest()),
    };
    let env = Envelope {
        session_id: session_for(&[&attrs, &origin.resource_attrs], trace_id.as_deref()),
        parent_span_id: hex_id(&span.parent_span_id),
        model: genai::model(&attrs),
        trace_id,
        span_id,
        id_prefix,
    };
    let start = span.start_time_unix_nano;
    let status = span.status.as_ref();
    let error = status.is_some_and(|s| s.code == StatusCode::Error as i32);
    let mut first =
        Draft::bare(if error { Kind::Error } else { Kind::Span }, start).name(Some(&span.name));
    first.actor = ["gen_ai.agent.name", "gen_ai.provider.name", "gen_ai.system"]
        .iter()
        .find_map(|k| get_str(&attrs, k))
        .map(str::to_string);
    if error {
        let msg = status.map(|s| s.message.as_str()).filter(|m| !m.is_empty());
        first.content = msg.map(|m| Value::String(m.to_string()));
    }
    let from_attributes = genai::from_attributes(&attrs, start, span.end_time_unix_nano);
    add_span(&mut first.attributes, origin, span, attrs);

    let mut drafts = vec![first];
    drafts.extend(from_attributes);
    for (k, ev) in span.events.iter().enumerate() {
        let ev_attrs = kvs_to_map(&ev.attributes);
        let body = legacy::span_event_body(&ev_attrs);
        let ts = if ev.time_unix_nano == 0 {
            start
        } else {
            ev.time_unix_nano
        };
        if let Some(d) = legacy::event_drafts(&ev.name, &body, &ev_attrs, &[("event", k)], ts) {
            drafts.extend(d);
        }
    }
    env.events(drafts)
}
