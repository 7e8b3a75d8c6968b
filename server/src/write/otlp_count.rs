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

/// One field of a message as the wire holds it.
enum Wire<'a> {
    /// A varint or a fixed 32- or 64-bit value.
    Scalar,
    /// Length-delimited bytes (a message, a string, packed values).
    Bytes(&'a [u8]),
    /// The start or the end tag of a group (the deprecated wire types 3, 4).
    GroupStart,
    GroupEnd,
}

/// The field at `pos`, moving `pos` past it: its number and what it holds;
/// `None` on malformed input.
fn next_field<'a>(buf: &'a [u8], pos: &mut usize) -> Option<(u64, Wire<'a>)> {
    let key = varint(buf, pos)?;
    let (field, wire) = (key >> 3, key & 7);
    let held = match wire {
        0 => {
            varint(buf, pos)?;
            Wire::Scalar
        }
        1 | 5 => {
            *pos = pos.checked_add(if wire == 1 { 8 } else { 4 })?;
            if *pos > buf.len() {
                return None;
            }
            Wire::Scalar
        }
        2 => {
            let len = usize::try_from(varint(buf, pos)?).ok()?;
            let end = pos.checked_add(len)?;
            let bytes = buf.get(*pos..end)?;
            *pos = end;
            Wire::Bytes(bytes)
        }
        3 => Wire::GroupStart,
        4 => Wire::GroupEnd,
        _ => return None,
    };
    Some((field, held))
}

/// Calls `f(field_number, bytes)` for each length-delimited field of a
/// message and for each group (whose contents are a message's fields:
/// `bytes` is what lies between its start and end tags), skipping the other
/// wire types; `None` on malformed input. Groups must be walked: the decoder
/// skips unknown ones, contents and all, and their contents, uncounted,
/// decoded into millions of structs.
fn for_each_field(buf: &[u8], mut f: impl FnMut(u64, &[u8]) -> Option<()>) -> Option<()> {
    let mut pos = 0;
    while pos < buf.len() {
        match next_field(buf, &mut pos)? {
            (_, Wire::Scalar) => {}
            (field, Wire::Bytes(bytes)) => f(field, bytes)?,
            (field, Wire::GroupStart) => {
                let (inner, end) = group(buf, pos, field)?;
                f(field, inner)?;
                pos = end;
            }
            (_, Wire::GroupEnd) => return None,
        }
    }
    Some(())
}

/// Groups nested deeper than this are malformed (as for the decoder, whose
/// recursion limit is 100).
const MAX_GROUP_DEPTH: usize = 100;

/// The contents of the group of `field` whose start tag ends at `start`,
/// and the position after its end tag; `None` when it does not end well.
fn group(buf: &[u8], start: usize, field: u64) -> Option<(&[u8], usize)> {
    let mut open = vec![field];
    let mut pos = start;
    while pos < buf.len() {
        let tag_at = pos;
        match next_field(buf, &mut pos)? {
            (f, Wire::GroupStart) if open.len() < MAX_GROUP_DEPTH => open.push(f),
            (f, Wire::GroupEnd) if open.pop() == Some(f) => {
                if open.is_empty() {
                    return Some((buf.get(start..tag_at)?, pos));
                }
            }
            (_, Wire::GroupStart | Wire::GroupEnd) => return None,
            (_, Wire::Scalar | Wire::Bytes(_)) => {}
        }
    }
    None
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
    fn groups_are_walked_not_skipped() {
        // An unknown group (field 99, wire types 3 and 4) holding 50k empty
        // length-delimited fields, at the top and inside a message: each
        // counts, and the request still parses as a whole.
        let tag = |field: u64, wire: u64| {
            let mut v = Vec::new();
            let mut k = (field << 3) | wire;
            while k >= 0x80 {
                v.push((k as u8) | 0x80);
                k >>= 7;
            }
            v.push(k as u8);
            v
        };
        let mut grouped = tag(99, 3);
        for _ in 0..50_000 {
            grouped.extend([0x0a, 0x00]);
        }
        grouped.extend(tag(99, 4));
        let n = protobuf_messages(&grouped).unwrap();
        assert!(n >= 50_000, "{n}");
        let mut nested = vec![0x0a];
        let mut len = grouped.len();
        while len >= 0x80 {
            nested.push((len as u8) | 0x80);
            len >>= 7;
        }
        nested.push(len as u8);
        nested.extend(&grouped);
        assert!(protobuf_messages(&nested).unwrap() >= 50_000);
        // A group that does not end, or ends with another field's tag, is
        // malformed.
        assert_eq!(protobuf_messages(&grouped[..grouped.len() - 1]), None);
        let mut wrong = grouped.clone();
        let end = wrong.len() - tag(99, 4).len();
        wrong.truncate(end);
        wrong.extend(tag(98, 4));
        assert_eq!(protobuf_messages(&wrong), None);
    }

    #[test]
    fn json_bound_never_undercounts() {
        assert_eq!(json_objects(br#"{"a":[{},{"b":"{"}]}"#), 4);
    }
}
