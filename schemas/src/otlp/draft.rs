//! A mapped step before it becomes an [`Event`]: [`Draft`] holds what the
//! conventions say about one step, [`Envelope`] what all steps of one span or
//! log record share. Events are validated by [`Event::validated`], by the
//! rules that apply to events sent to the native API.

use serde_json::{Map, Value};

use super::ids::{event_id, nanos_to_time};
use crate::{Event, EventError, Kind};

/// One step found in a span or log record.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Draft {
    pub kind: Kind,
    pub name: Option<String>,
    pub actor: Option<String>,
    pub content: Option<Value>,
    /// Unix nanoseconds; 0 is absent.
    pub ts: u64,
    pub attributes: Map<String, Value>,
}

impl Draft {
    /// A draft with only a kind and a time.
    pub fn bare(kind: Kind, ts: u64) -> Self {
        Draft {
            kind,
            name: None,
            actor: None,
            content: None,
            ts,
            attributes: Map::new(),
        }
    }

    /// A draft with a kind, a time and its origin (`otlp.part`).
    pub fn new(kind: Kind, ts: u64, part: Map<String, Value>) -> Self {
        let mut d = Draft::bare(kind, ts);
        d.attributes.insert("otlp.part".into(), Value::Object(part));
        d
    }

    /// Sets the content unless it is absent or `null` (content may not be null).
    pub fn content(self, v: Option<&Value>) -> Self {
        self.content_owned(v.cloned())
    }

    /// [`Draft::content`] for a value the caller owns: moved, not cloned.
    pub fn content_owned(mut self, v: Option<Value>) -> Self {
        self.content = v.filter(|v| !v.is_null());
        self
    }

    /// Sets the actor (the message role) and `gen_ai.message.role`.
    pub fn role(mut self, role: Option<&str>) -> Self {
        if let Some(r) = role.filter(|r| !r.is_empty()) {
            self.actor = Some(r.to_string());
            self.attributes
                .insert("gen_ai.message.role".into(), Value::String(r.to_string()));
        }
        self
    }

    /// Sets the name unless empty.
    pub fn name(mut self, name: Option<&str>) -> Self {
        self.name = name.filter(|n| !n.is_empty()).map(str::to_string);
        self
    }

    /// Adds an attribute unless the value is absent or `null`.
    pub fn attr(mut self, key: &str, v: Option<&Value>) -> Self {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            self.attributes.insert(key.to_string(), v.clone());
        }
        self
    }
}

/// Builds the `otlp.part` object: where a draft came from.
pub(super) fn part_info(
    source: &str,
    indices: &[(&str, usize)],
    ty: Option<&str>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("source".into(), Value::String(source.to_string()));
    for (k, i) in indices {
        m.insert((*k).to_string(), Value::from(*i));
    }
    if let Some(t) = ty {
        m.insert("type".into(), Value::String(t.to_string()));
    }
    m
}

/// What every event of one span or log record shares.
#[derive(Debug, Clone)]
pub(super) struct Envelope {
    pub session_id: String,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub model: Option<String>,
    /// `event_id` is `<id_prefix>:<n>`.
    pub id_prefix: String,
}

impl Envelope {
    /// Builds and validates the `n`-th event. Built directly rather than as
    /// JSON for [`Event::from_value`]: [`Event::validated`] applies the same
    /// rules without a tree of the whole event.
    pub fn event(&self, n: usize, d: Draft) -> Result<Event, EventError> {
        let text = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
        Event {
            session_id: self.session_id.clone(),
            kind: d.kind,
            ts: nanos_to_time(d.ts),
            event_id: Some(event_id(&self.id_prefix, n)),
            trace_id: text(self.trace_id.as_deref()),
            span_id: text(self.span_id.as_deref()),
            parent_span_id: text(self.parent_span_id.as_deref()),
            name: d.name.filter(|v| !v.is_empty()),
            actor: d.actor.filter(|v| !v.is_empty()),
            model: text(self.model.as_deref()),
            content: d.content,
            attributes: (!d.attributes.is_empty()).then_some(d.attributes),
        }
        .validated()
    }

    /// Builds all events of one span or record, all or nothing. On failure,
    /// says which event (`n` and kind) and why.
    pub fn events(&self, drafts: Vec<Draft>) -> Result<Vec<Event>, String> {
        let mut out = Vec::with_capacity(drafts.len());
        for (n, d) in drafts.into_iter().enumerate() {
            let kind = d.kind;
            match self.event(n, d) {
                Ok(e) => out.push(e),
                Err(e) => return Err(format!("event {n} ({}): {e}", kind.as_str())),
            }
        }
        Ok(out)
    }
}
