//! OTLP request bodies for the load generator, built once and patched.
//!
//! Every OTLP request must carry new trace ids (event ids derive from them,
//! so a repeated id would be a deduplicated retry, not new work). Building
//! and encoding 250 spans of 1 KiB messages per request cost the load
//! generator about 2.2 us of CPU per event, on the same two cores as the
//! server (docs/benchmarks.md, fifteenth session), against 0.6 us for the
//! native API, whose bodies are built once. So OTLP bodies are built once
//! too, a few templates per run, and each request copies one and writes its
//! batch number into the low half of every trace id, in place: the 16 id
//! bytes (protobuf) or 32 hex digits (OTLP/JSON) have a fixed width, so the
//! encoding around them does not move. Contents, conversation ids and times
//! repeat from template to template, as the native bodies' do.

use super::{LoadError, LoadFormat};

/// How many distinct bodies a run cycles through (as for the native API).
const TEMPLATES: u64 = 8;

/// A body and where in it each span's batch-and-span half of the trace id
/// sits.
struct Template {
    body: Vec<u8>,
    /// Offset of span `i`'s `(batch << 32) | i` (8 bytes, or 16 hex digits).
    slots: Vec<usize>,
}

/// The bodies of one run's full requests (of `spans` spans each).
pub(super) struct OtlpBodies {
    format: LoadFormat,
    run: u64,
    spans: u64,
    size: usize,
    templates: Vec<Template>,
}

impl OtlpBodies {
    /// Builds the templates of a run (`run` is its random nonce).
    pub(super) fn new(
        format: LoadFormat,
        run: u64,
        spans: u64,
        size: usize,
    ) -> Result<Self, LoadError> {
        let templates = (0..TEMPLATES)
            .map(|b| template(format, run, b, spans, size))
            .collect::<Result<_, _>>()?;
        Ok(OtlpBodies {
            format,
            run,
            spans,
            size,
            templates,
        })
    }

    /// The body of request `k` with `n` spans: a patched template when `n`
    /// is the full count, else built afresh (the last, shorter request).
    pub(super) fn body(&self, k: u64, n: u64) -> Result<Vec<u8>, LoadError> {
        if n != self.spans {
            return otlp_body(self.format, self.run, k, n, self.size);
        }
        let t = &self.templates[(k % TEMPLATES) as usize];
        let mut body = t.body.clone();
        for (i, &at) in t.slots.iter().enumerate() {
            let low = low_half(k, i as u64);
            match self.format {
                LoadFormat::OtlpJson => {
                    body[at..at + 16].copy_from_slice(hex::encode(low).as_bytes())
                }
                _ => body[at..at + 8].copy_from_slice(&low),
            }
        }
        Ok(body)
    }
}

/// The low half of the trace id of span `i` of batch `k` (the high half is
/// the run's nonce), as `genai_traces_request` makes it.
fn low_half(k: u64, i: u64) -> [u8; 8] {
    ((k << 32) | i).to_be_bytes()
}

/// Template `b`: the body of batch `b`, with the offset of each span's trace
/// id found by its (unique) bytes or hex digits.
fn template(
    format: LoadFormat,
    run: u64,
    b: u64,
    spans: u64,
    size: usize,
) -> Result<Template, LoadError> {
    let body = otlp_body(format, run, b, spans, size)?;
    let mut slots = Vec::with_capacity(spans as usize);
    let mut from = 0;
    for i in 0..spans {
        let mut id = run.to_be_bytes().to_vec();
        id.extend_from_slice(&low_half(b, i));
        let (needle, high) = match format {
            LoadFormat::OtlpJson => (hex::encode(&id).into_bytes(), 16),
            _ => (id, 8),
        };
        // Spans are encoded in order, so each id lies after the previous one.
        let at = find(&body[from..], &needle)
            .map(|p| from + p)
            .ok_or_else(|| {
                LoadError::Plan(format!("span {i}'s trace id is not in its OTLP body"))
            })?;
        slots.push(at + high);
        from = at + needle.len();
    }
    Ok(Template { body, slots })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An OTLP export of `n` GenAI spans with ids unique to this run (`run`, a
/// random nonce) and batch `k`, encoded for `format`.
pub(super) fn otlp_body(
    format: LoadFormat,
    run: u64,
    k: u64,
    n: u64,
    size: usize,
) -> Result<Vec<u8>, LoadError> {
    let req = tracevault_schemas::sample::genai_traces_request(run, k, n, size);
    Ok(match format {
        LoadFormat::OtlpJson => serde_json::to_vec(&req)?,
        _ => prost::Message::encode_to_vec(&req),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    fn decode(format: LoadFormat, body: &[u8]) -> ExportTraceServiceRequest {
        match format {
            LoadFormat::OtlpJson => serde_json::from_slice(body).unwrap(),
            _ => prost::Message::decode(body).unwrap(),
        }
    }

    fn trace_ids(r: &ExportTraceServiceRequest) -> Vec<Vec<u8>> {
        r.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.trace_id.clone())
            .collect()
    }

    #[test]
    fn patched_bodies_carry_the_trace_ids_of_their_batch() {
        for format in [LoadFormat::OtlpProto, LoadFormat::OtlpJson] {
            let bodies = OtlpBodies::new(format, 0x5eed, 7, 64).unwrap();
            for k in [0, 3, 8, 11, 1 << 20] {
                let patched = decode(format, &bodies.body(k, 7).unwrap());
                let fresh = decode(format, &otlp_body(format, 0x5eed, k, 7, 64).unwrap());
                assert_eq!(
                    trace_ids(&patched),
                    trace_ids(&fresh),
                    "{format:?} batch {k}"
                );
                // The rest is template k % 8's, and maps like any request.
                let mapped = tracevault_schemas::otlp::map_traces(&patched);
                assert_eq!(mapped.rejected, 0, "{:?}", mapped.messages);
                assert_eq!(mapped.events.len(), 14);
            }
            // A shorter (last) request is built afresh.
            let short = decode(format, &bodies.body(5, 3).unwrap());
            assert_eq!(trace_ids(&short).len(), 3);
        }
    }
}
