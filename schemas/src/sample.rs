//! Deterministic sample text for load generators and benches: word salad
//! that compresses, masks and escapes as chat text does, unlike a repeated
//! byte (which every codec shrinks to nothing).

/// The words the text is drawn from.
const WORDS: [&str; 16] = [
    "the",
    "model",
    "called",
    "tool",
    "search",
    "with",
    "query",
    "result",
    "reasoning",
    "step",
    "token",
    "agent",
    "plan",
    "observe",
    "answer",
    "because",
];

/// Exactly `n` bytes of space-separated words, the same for the same `seed`
/// and different for different seeds (a xorshift picks the words).
pub fn chat_text(n: usize, seed: u64) -> String {
    let mut s = String::with_capacity(n + 16);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while s.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[(x % 16) as usize]);
        s.push(' ');
    }
    s.truncate(n);
    s
}

/// An OTLP trace export of `n` GenAI chat spans as the load generator sends
/// them (batch `k` of run `run`: ids unique to both): each span carries a
/// conversation id, a model and one user message of `size` bytes of
/// [`chat_text`], and maps to two events. Shared by `bench ingest --format
/// otlp-*` and the criterion bench of the OTLP door, so both measure the same
/// spans.
pub fn genai_traces_request(
    run: u64,
    k: u64,
    n: u64,
    size: usize,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    };
    let start = 1_795_000_000_000_000_000u64 + k * 1_000_000;
    let spans = (0..n)
        .map(|i| {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&run.to_be_bytes());
            trace_id[8..].copy_from_slice(&((k << 32) | i).to_be_bytes());
            let messages = serde_json::json!([{"role": "user", "parts": [{"type": "text", "content": chat_text(size, k * 1_000_003 + i)}]}]);
            Span {
                trace_id: trace_id.to_vec(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                name: "chat bench-model".into(),
                kind: 3,
                start_time_unix_nano: start + i,
                end_time_unix_nano: start + i + 1000,
                attributes: vec![
                    kv("gen_ai.operation.name", "chat".into()),
                    kv("gen_ai.request.model", "bench-model".into()),
                    kv("gen_ai.conversation.id", format!("bench-{}", (k * n + i) % 64)),
                    kv("gen_ai.input.messages", messages.to_string()),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_the_exact_size_and_depends_on_the_seed() {
        for n in [0, 1, 63, 1024] {
            assert_eq!(chat_text(n, 1).len(), n);
        }
        assert_eq!(chat_text(64, 1), chat_text(64, 1));
        assert_ne!(chat_text(64, 1), chat_text(64, 2));
        assert!(
            chat_text(200, 3)
                .split(' ')
                .all(|w| w.is_empty() || WORDS.iter().any(|x| x.starts_with(w)))
        );
    }
}
