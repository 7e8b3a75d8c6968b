//! Counting the spans or log records of an encoded OTLP export request
//! *before* decoding it. Decoding builds a struct of a few hundred bytes for
//! each span, even an empty one (2 bytes on the wire), so a 20 MiB body could
//! otherwise become gigabytes of memory before any limit applies.

/// Spans (or log records) in a protobuf `ExportTraceServiceRequest` (or
/// `ExportLogsServiceRequest`): both nest their items at field path 1 → 2 → 2.
/// `None` when the bytes are not well-formed protobuf (decoding then reports
/// the error properly).
pub fn protobuf_items(buf: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for_each_field(buf, |f, v| {
        if f == 1 {
            for_each_field(v, |f, v| {
                if f == 2 {
                    for_each_field(v, |f, _| {
                        n += u64::from(f == 2);
                        Some(())
                    })?;
                }
                Some(())
            })?;
        }
        Some(())
    })?;
    Some(n)
}

/// Deepest nesting [`protobuf_messages`] walks. OTLP's own messages nest
/// about eight deep; attribute values (arrays, key-value lists) may go
/// deeper. Below this depth a field is not walked but bounded: a message
/// takes at least two bytes on the wire, so `len / 2` messages at most.
/// (Left uncounted, as before, an AnyValue 14 levels deep carried millions
/// of empty values past the count: four 20 KB gzip bodies took 3 GB.)
const MAX_DEPTH: u32 = 16;

/// An upper bound on the messages at every depth of a protobuf body (each
/// one a struct when decoded, however few bytes it takes on the wire): every
/// length-delimited field whose bytes parse as a message, with its own, and
/// every empty one; below [`MAX_DEPTH`], half of a field's bytes. Strings
/// whose bytes happen to parse count too, so it over-counts, never
/// under-counts. `None` when the body is not well-formed protobuf.
pub fn protobuf_messages(buf: &[u8]) -> Option<u64> {
    messages_within(buf, 0)
}

fn messages_within(buf: &[u8], depth: u32) -> Option<u64> {
    let mut n = 0u64;
    for_each_field(buf, |_, v| {
        if v.is_empty() {
            n += 1;
        } else if depth >= MAX_DEPTH {
            n += 1 + v.len() as u64 / 2;
        } else if let Some(inner) = messages_within(v, depth + 1) {
            n += 1 + inner;
        }
        Some(())
    })?;
    Some(n)
}

/// An upper bound on the objects in a JSON body: its `{` bytes (inside
/// strings too, so it over-counts, never under-counts).
pub fn json_objects(buf: &[u8]) -> u64 {
    buf.iter().filter(|&&b| b == b'{').count() as u64
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Calls `f(field_number, bytes)` for each length-delimited field of a
/// message, skipping the other wire types; `None` on malformed input.
fn for_each_field(buf: &[u8], mut f: impl FnMut(u64, &[u8]) -> Option<()>) -> Option<()> {
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(buf, &mut pos)?;
            }
            1 => pos = pos.checked_add(8)?,
            5 => pos = pos.checked_add(4)?,
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                f(field, buf.get(pos..end)?)?;
                pos = end;
            }
            _ => return None,
        }
    }
    (pos == buf.len()).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    #[test]
    fn counts_spans_across_resources_and_scopes() {
        let scope = |n: usize| ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    name: format!("s{i}"),
                    start_time_unix_nano: 17,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![scope(3), scope(0), scope(2)],
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![scope(5)],
                    ..Default::default()
                },
            ],
        };
        let bytes = req.encode_to_vec();
        assert_eq!(protobuf_items(&bytes), Some(10));
        assert_eq!(protobuf_items(&[]), Some(0));
        // Empty spans, 2 bytes each on the wire, are counted too.
        let empty = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); 1000],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(protobuf_items(&empty.encode_to_vec()), Some(1000));
        // Truncated or garbage input is not counted (decoding reports it).
        assert_eq!(protobuf_items(&bytes[..bytes.len() - 1]), None);
        assert_eq!(protobuf_items(&[0xff; 16]), None);
        assert_eq!(protobuf_messages(&[0xff; 16]), None);
    }

    #[test]
    fn messages_are_counted_at_every_depth_even_empty_ones() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        // Ten thousand empty resources: no span at all, 2 bytes each.
        let empty = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans::default(); 10_000],
        };
        let bytes = empty.encode_to_vec();
        assert_eq!(bytes.len(), 20_000);
        assert_eq!(protobuf_items(&bytes), Some(0));
        assert_eq!(protobuf_messages(&bytes), Some(10_000));
        // A span with many empty attributes: each a message.
        let span = Span {
            attributes: vec![KeyValue::default(); 5_000],
            ..Default::default()
        };
        let one = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let n = protobuf_messages(&one.encode_to_vec()).unwrap();
        assert!(n >= 5_003, "{n}");
        // An attribute with a value: key, value and the value's string are
        // all length-delimited; the value message is counted, never missed.
        let kv = KeyValue {
            key: "gen_ai.system".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("openai".into())),
            }),
            ..Default::default()
        };
        assert!(protobuf_messages(&kv.encode_to_vec()).unwrap() >= 1);
    }

    #[test]
    fn values_nested_past_the_walked_depth_are_still_bounded() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value};
        // 100k empty values in an array nested 20 arrays deep: decoded, each
        // is a struct, so the count must reach them whatever the depth.
        let mut v = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue::default(); 100_000],
            })),
        };
        for _ in 0..20 {
            v = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let n = protobuf_messages(&v.encode_to_vec()).unwrap();
        assert!(n >= 100_000, "{n}");
    }

    #[test]
    fn json_bound_never_undercounts() {
        assert_eq!(json_objects(br#"{"a":[{},{"b":"{"}]}"#), 4);
    }
}
