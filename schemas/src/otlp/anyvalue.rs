//! OTLP `AnyValue` / `KeyValue` to JSON, and small helpers for reading the
//! resulting JSON attribute maps.

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::{Map, Number, Value};

/// Converts an `AnyValue` to JSON. An empty value (and the profiling-only
/// string-table reference, which OTLP says to treat as absent outside
/// profiles) becomes `null`.
pub(super) fn any_to_json(v: &AnyValue) -> Value {
    match &v.value {
        None | Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::Number((*i).into()),
        Some(any_value::Value::DoubleValue(d)) => double_to_json(*d),
        Some(any_value::Value::BytesValue(b)) => {
            let mut m = Map::new();
            m.insert(
                "bytes_base64".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            );
            Value::Object(m)
        }
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(any_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(kvs_to_map(&kv.values)),
    }
}

/// Converts an optional `AnyValue` (absent → `null`).
pub(super) fn opt_any_to_json(v: Option<&AnyValue>) -> Value {
    v.map_or(Value::Null, any_to_json)
}

/// A double as JSON; non-finite values, which JSON cannot hold, become the
/// strings `"NaN"`, `"Infinity"` and `"-Infinity"` (as in OTLP/JSON).
fn double_to_json(d: f64) -> Value {
    match Number::from_f64(d) {
        Some(n) => Value::Number(n),
        None if d.is_nan() => Value::String("NaN".into()),
        None if d > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// The first key that `kvs` (or a key-value list inside one of its values,
/// at any depth) names twice. OTLP forbids repeated keys; a span or record
/// with one is refused ([`super::Mapped::rejected`]) rather than mapped
/// keeping one of the values: a reader of the request that kept the other
/// would see another event than the one committed.
pub(super) fn repeated_key(kvs: &[KeyValue]) -> Option<&str> {
    let mut keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    keys.sort_unstable();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Some(w[0]);
    }
    kvs.iter()
        .find_map(|kv| kv.value.as_ref().and_then(repeated_key_in))
}

/// [`repeated_key`] inside a value (its key-value lists, at any depth).
pub(super) fn repeated_key_in(v: &AnyValue) -> Option<&str> {
    match &v.value {
        Some(any_value::Value::KvlistValue(kv)) => repeated_key(&kv.values),
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().find_map(repeated_key_in),
        _ => None,
    }
}

/// The refusal of a span or record naming `key` twice.
pub(super) fn repeated(key: &str) -> String {
    let shown: String = key.chars().take(64).collect();
    format!(
        "attribute key {shown:?} appears twice in one list (OTLP forbids it; one value would be lost)"
    )
}

/// Converts a list of attributes to a JSON object. Repeated keys are refused
/// before mapping ([`repeated_key`]); were one to reach here, the first
/// occurrence would win.
pub(super) fn kvs_to_map(kvs: &[KeyValue]) -> Map<String, Value> {
    let mut m = Map::new();
    for kv in kvs {
        if !m.contains_key(&kv.key) {
            m.insert(kv.key.clone(), opt_any_to_json(kv.value.as_ref()));
        }
    }
    m
}

/// A non-empty string attribute.
pub(super) fn get_str<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    non_empty_str(m.get(key))
}

/// The value as a non-empty string, if it is one.
pub(super) fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    }
}

/// A value, unless it is absent or `null`.
pub(super) fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// A value that may carry JSON as text: a string that parses as a JSON array
/// or object is returned parsed; anything else is returned as is (JSON
/// naming a key twice too: parsed, it would lose one of the two).
pub(super) fn structured(v: &Value) -> Value {
    if let Value::String(s) = v {
        let t = s.trim_start();
        if (t.starts_with('[') || t.starts_with('{'))
            && let Ok(parsed @ (Value::Array(_) | Value::Object(_))) =
                crate::strict_json::from_str(s)
        {
            return parsed;
        }
    }
    v.clone()
}
