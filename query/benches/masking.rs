//! Masking throughput: how many bytes of content per second the default
//! (strict) profile gets through, on clean text (the common case: the
//! combined pre-check finds nothing), on text with PII, and on a JSON
//! attributes object. Run: `cargo bench --workspace --bench masking`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracevault_query::masking::{Masker, Policy};

fn clean_text(n: usize) -> String {
    tracevault_schemas::sample::chat_text(n, 7)
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default_policy();
    let profile = policy.profile_for("reader", &serde_json::Map::new());
    let key = [7u8; 32];
    let masker = Masker::new(profile, &key);
    let clean = clean_text(1024);
    let mut pii = clean_text(900);
    pii.push_str(" mail jane.doe@example.com card 4111 1111 1111 1111 ip 10.1.2.3 ");
    let attrs: serde_json::Value = serde_json::json!({
        "user": {"email": "jane.doe@example.com", "id": 42},
        "http": {"headers": {"authorization": "Bearer abcdefghijklmnopqrstuvwxyz0123456789ABCD"}},
        "note": clean_text(700),
    });
    let attrs_len = attrs.to_string().len() as u64;

    let mut g = c.benchmark_group("mask");
    g.throughput(Throughput::Bytes(clean.len() as u64));
    g.bench_function("clean_1KiB_text", |b| {
        b.iter(|| black_box(masker.mask_str("content", black_box(&clean))))
    });
    g.throughput(Throughput::Bytes(pii.len() as u64));
    g.bench_function("1KiB_text_with_3_pii", |b| {
        b.iter(|| black_box(masker.mask_str("content", black_box(&pii))))
    });
    g.throughput(Throughput::Bytes(attrs_len));
    g.bench_function("json_attributes_with_pii", |b| {
        b.iter(|| {
            let mut v = attrs.clone();
            black_box(masker.mask_json("attributes", &mut v))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
