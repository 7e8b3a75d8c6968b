//! Mapping of OTLP log records (GenAI events sent as logs, and any other log).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{Map, Value};

use super::anyvalue::{
    get_str, kvs_to_map, opt_any_to_json, repeated, repeated_key, repeated_key_in,
};
use super::draft::{Draft, Envelope};
use super::ids::{content_digest, hex_id, session_for};
use super::raw::{Origin, add_log};
use super::{Collector, Rejected, genai, label, legacy};
use crate::{Event, Kind};

/// Maps every log record of a request; see the module documentation.
pub(super) fn map_logs(req: &ExportLogsServiceRequest, mut out: Collector<'_>) -> Rejected {
    for (ri, rl) in req.resource_logs.iter().enumerate() {
        for (si, sl) in rl.scope_logs.iter().enumerate() {
            let origin = Origin::new(
                rl.resource.as_ref(),
                &rl.schema_url,
                sl.scope.as_ref(),
                &sl.schema_url,
            );
            // Repeated keys in the resource or scope refuse every record under them.
            let shared = rl
                .resource
                .as_ref()
                .and_then(|r| repeated_key(&r.attributes))
                .or_else(|| sl.scope.as_ref().and_then(|s| repeated_key(&s.attributes)));
            for (li, rec) in sl.log_records.iter().enumerate() {
                let digest =
                    content_digest(&[&Some(rec), &rl.resource.as_ref(), &sl.scope.as_ref()]);
                let own = || {
                    repeated_key(&rec.attributes)
                        .or_else(|| rec.body.as_ref().and_then(repeated_key_in))
                };
                let outcome = match shared.or_else(own) {
                    Some(key) => Err(repeated(key)),
                    None => record_events(&origin, rec, &digest),
                };
                match outcome {
                    Ok(events) => out.accept(events),
                    Err(why) => out.reject(format!(
                        "resource_logs[{ri}].scope_logs[{si}].log_records[{li}] (event {}): {why}",
                        label(event_name(rec, &kvs_to_map(&rec.attributes)).unwrap_or(""))
                    )),
                }
            }
        }
    }
    out.finish()
}

/// The record's event name: the `event_name` field, else the `event.name`
/// attribute.
fn event_name<'a>(rec: &'a LogRecord, attrs: &'a Map<String, Value>) -> Option<&'a str> {
    Some(rec.event_name.as_str())
        .filter(|n| !n.is_empty())
        .or_else(|| get_str(attrs, "event.name"))
}

/// All events of one log record, all or nothing.
fn record_events(origin: &Origin, rec: &LogRecord, digest: &str) -> Result<Vec<Event>, String> {
    let attrs = kvs_to_map(&rec.attributes);
    let trace_id = hex_id(&rec.trace_id);
    let env = Envelope {
        session_id: session_for(&[&attrs, &origin.resource_attrs], trace_id.as_deref()),
        span_id: hex_id(&rec.span_id),
        parent_span_id: None,
        model: genai::model(&attrs),
        trace_id,
        id_prefix: format!("otlp-log:{digest}"),
    };
    let ts = if rec.time_unix_nano == 0 {
        rec.observed_time_unix_nano
    } else {
        rec.time_unix_nano
    };
    let body = opt_any_to_json(rec.body.as_ref());
    let name = event_name(rec, &attrs);
    let mapped = name
        .and_then(|n| legacy::event_drafts(n, &body, &attrs, &[], ts))
        .filter(|d| !d.is_empty());
    let body_is_content = mapped.is_none();
    let mut drafts = mapped.unwrap_or_else(|| {
        vec![
            Draft::bare(Kind::Message, ts)
                .name(name)
                .content(Some(&body)),
        ]
    });
    if let Some(first) = drafts.first_mut() {
        add_log(&mut first.attributes, origin, rec, attrs, body_is_content);
    }
    env.events(drafts)
}
