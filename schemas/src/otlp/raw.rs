//! The raw attributes kept on the first event of every span or log record:
//! everything the sender said, as JSON, so that nothing is lost.

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Map, Value, json};

use super::anyvalue::{kvs_to_map, opt_any_to_json};
use super::ids::lower_hex;

/// Key under which sender attributes that collide with a key set by the
/// mapping (`otlp.*`, `gen_ai.message.role`, ...) are kept.
pub(super) const SHADOWED: &str = "otlp.shadowed";

/// Resource and scope, as JSON, shared by all spans or records of one scope.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    /// `otlp.resource`: the resource attributes.
    pub resource: Value,
    /// `otlp.resource_meta`: schema URL, dropped count and entity refs, when any is set.
    pub resource_meta: Option<Value>,
    /// `otlp.scope`.
    pub scope: Value,
    /// The resource attributes as a map (for `gen_ai.conversation.id`).
    pub resource_attrs: Map<String, Value>,
}

impl Origin {
    /// Describes one resource and scope.
    pub fn new(
        resource: Option<&Resource>,
        resource_schema_url: &str,
        scope: Option<&InstrumentationScope>,
        scope_schema_url: &str,
    ) -> Self {
        let resource_attrs = resource
            .map(|r| kvs_to_map(&r.attributes))
            .unwrap_or_default();
        let mut meta = Map::new();
        if !resource_schema_url.is_empty() {
            meta.insert("schema_url".into(), json!(resource_schema_url));
        }
        if let Some(r) = resource {
            if r.dropped_attributes_count > 0 {
                meta.insert(
                    "dropped_attributes_count".into(),
                    json!(r.dropped_attributes_count),
                );
            }
            if !r.entity_refs.is_empty() {
                let refs: Vec<Value> = r
                    .entity_refs
                    .iter()
                    .map(|e| {
                        json!({
                            "schema_url": e.schema_url,
                            "type": e.r#type,
                            "id_keys": e.id_keys,
                            "description_keys": e.description_keys,
                        })
                    })
                    .collect();
                meta.insert("entity_refs".into(), Value::Array(refs));
            }
        }
        let mut s = Map::new();
        s.insert("name".into(), json!(scope.map_or("", |s| s.name.as_str())));
        s.insert(
            "version".into(),
            json!(scope.map_or("", |s| s.version.as_str())),
        );
        s.insert(
            "attributes".into(),
            Value::Object(scope.map(|s| kvs_to_map(&s.attributes)).unwrap_or_default()),
        );
        if let Some(n) = scope.map(|s| s.dropped_attributes_count).filter(|n| *n > 0) {
            s.insert("dropped_attributes_count".into(), json!(n));
        }
        if !scope_schema_url.is_empty() {
            s.insert("schema_url".into(), json!(scope_schema_url));
        }
        Origin {
            resource: Value::Object(resource_attrs.clone()),
            resource_meta: (!meta.is_empty()).then_some(Value::Object(meta)),
            scope: Value::Object(s),
            resource_attrs,
        }
    }

    /// Adds `otlp.resource`, `otlp.resource_meta` and `otlp.scope`.
    fn add_to(&self, m: &mut Map<String, Value>) {
        m.insert("otlp.resource".into(), self.resource.clone());
        if let Some(meta) = &self.resource_meta {
            m.insert("otlp.resource_meta".into(), meta.clone());
        }
        m.insert("otlp.scope".into(), self.scope.clone());
    }
}

/// Adds `raw` to `into` key by key; a key already present (set by the
/// mapping) is not overwritten but kept under [`SHADOWED`].
pub(super) fn merge_raw(into: &mut Map<String, Value>, raw: Map<String, Value>) {
    let mut shadowed = Map::new();
    for (k, v) in raw {
        if into.contains_key(&k) || k == SHADOWED {
            shadowed.insert(k, v);
        } else {
            into.insert(k, v);
        }
    }
    if !shadowed.is_empty() {
        into.insert(SHADOWED.into(), Value::Object(shadowed));
    }
}

fn nanos(n: u64) -> Value {
    Value::String(n.to_string())
}

/// Adds the raw description of a span (`otlp.resource`, `otlp.scope`,
/// `otlp.span` and every span attribute) to `into`.
pub(super) fn add_span(
    into: &mut Map<String, Value>,
    origin: &Origin,
    span: &Span,
    attrs: Map<String, Value>,
) {
    let events: Vec<Value> = span
        .events
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "time_unix_nano": nanos(e.time_unix_nano),
                "attributes": kvs_to_map(&e.attributes),
                "dropped_attributes_count": e.dropped_attributes_count,
            })
        })
        .collect();
    let links: Vec<Value> = span
        .links
        .iter()
        .map(|l| {
            json!({
                "trace_id": lower_hex(&l.trace_id),
                "span_id": lower_hex(&l.span_id),
                "trace_state": l.trace_state,
                "attributes": kvs_to_map(&l.attributes),
                "dropped_attributes_count": l.dropped_attributes_count,
                "flags": l.flags,
            })
        })
        .collect();
    let (code, message) = span
        .status
        .as_ref()
        .map_or((0, ""), |s| (s.code, s.message.as_str()));
    let s = json!({
        "name": span.name,
        "kind": span.kind,
        "start_time_unix_nano": nanos(span.start_time_unix_nano),
        "end_time_unix_nano": nanos(span.end_time_unix_nano),
        "status": {"code": code, "message": message},
        "trace_state": span.trace_state,
        "flags": span.flags,
        "dropped_attributes_count": span.dropped_attributes_count,
        "dropped_events_count": span.dropped_events_count,
        "dropped_links_count": span.dropped_links_count,
        "events": events,
        "links": links,
    });
    let mut reserved = Map::new();
    origin.add_to(&mut reserved);
    reserved.insert("otlp.span".into(), s);
    merge_raw(&mut reserved, std::mem::take(into));
    merge_raw(&mut reserved, attrs);
    *into = reserved;
}

/// Adds the raw description of a log record (`otlp.resource`, `otlp.scope`,
/// `otlp.log` and every record attribute) to `into`. The body is included
/// under `otlp.log.body` unless `body_is_content`.
pub(super) fn add_log(
    into: &mut Map<String, Value>,
    origin: &Origin,
    rec: &LogRecord,
    attrs: Map<String, Value>,
    body_is_content: bool,
) {
    let mut l = Map::new();
    l.insert("time_unix_nano".into(), nanos(rec.time_unix_nano));
    l.insert(
        "observed_time_unix_nano".into(),
        nanos(rec.observed_time_unix_nano),
    );
    l.insert("severity_number".into(), json!(rec.severity_number));
    l.insert("severity_text".into(), json!(rec.severity_text));
    l.insert("event_name".into(), json!(rec.event_name));
    l.insert("flags".into(), json!(rec.flags));
    l.insert(
        "dropped_attributes_count".into(),
        json!(rec.dropped_attributes_count),
    );
    if !body_is_content && rec.body.as_ref().is_some_and(|b| b.value.is_some()) {
        l.insert("body".into(), opt_any_to_json(rec.body.as_ref()));
    }
    let mut reserved = Map::new();
    origin.add_to(&mut reserved);
    reserved.insert("otlp.log".into(), Value::Object(l));
    merge_raw(&mut reserved, std::mem::take(into));
    merge_raw(&mut reserved, attrs);
    *into = reserved;
}
