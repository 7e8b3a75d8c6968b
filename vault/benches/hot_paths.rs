//! Criterion benches of the per-event hot paths: canonical encoding, field
//! digests and leaf hashing, sealing a whole entry, Merkle tree append,
//! Parquet segment encoding (both codecs), SHA-256 alone, and the OTLP door's
//! per-request work. Run by hand: `cargo bench --workspace --bench hot_paths`.

/// The server's allocator (`src/main.rs`), so per-event allocation costs what
/// it costs in the server.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use serde_json::json;
use tracevault_schemas::Event;
use tracevault_schemas::sample::chat_text;
use tracevault_vault::merkle::{MerkleTree, leaf_hash};
use tracevault_vault::record::{Entry, Sequence, field_digest};
use tracevault_vault::segment::{SegmentCompression, SegmentSeal, encode, encode_with};
use tracevault_vault::{jcs, note};

fn event(i: u64) -> Event {
    Event::from_value(json!({
        "session_id": format!("sess-{}", i % 64),
        "kind": "tool_call",
        "name": "search",
        "actor": "agent:planner",
        "model": "m-1",
        "content": "x".repeat(1024),
        "attributes": {"gen_ai.request.model": "m-1", "i": i, "tags": ["a", "b"]},
    }))
    .unwrap()
}

fn seal(i: u64, prev: [u8; 32]) -> Entry {
    seal_event(event(i), i, prev)
}

fn seal_event(ev: Event, i: u64, prev: [u8; 32]) -> Entry {
    Entry::seal(
        ev,
        Sequence {
            ns: "bench",
            idx: i,
            session_seq: i / 64,
            received_at: 1_700_000_000_000_000 + i as i64,
            ingested_by: "w",
            salt: [7; 32],
            prev_chain: prev,
        },
    )
    .unwrap()
}

/// The two segment codecs on 10k entries of chat-like text.
fn codecs(c: &mut Criterion) {
    let mut prev = [0u8; 32];
    let entries: Vec<Entry> = (0..10_000u64)
        .map(|i| {
            let mut ev = event(i);
            ev.content = Some(serde_json::Value::String(chat_text(1024, i)));
            let e = seal_event(ev, i, prev);
            prev = e.chain_hash;
            e
        })
        .collect();
    let key = SigningKey::from_bytes(&[9; 32]);
    let seal = SegmentSeal {
        chain_in: [0; 32],
        root: [1; 32],
        key_id: note::key_id("bench", &key.verifying_key().to_bytes()),
        key: &key,
    };
    let mut g = c.benchmark_group("segment_codec");
    g.sample_size(10);
    g.throughput(Throughput::Elements(entries.len() as u64));
    for (name, codec) in [
        ("zstd", SegmentCompression::Zstd),
        ("lz4", SegmentCompression::Lz4),
        ("none", SegmentCompression::None),
    ] {
        g.bench_function(format!("encode_10k_text_{name}"), |b| {
            b.iter(|| encode_with(&entries, &seal, codec).unwrap())
        });
        let (_, file) = encode_with(&entries, &seal, codec).unwrap();
        println!("segment_codec/{name}: {} bytes for 10k entries", file.len());
        g.bench_function(format!("decode_10k_text_{name}"), |b| {
            b.iter(|| tracevault_vault::segment::decode(file.clone()).unwrap())
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let e = seal(1, [0; 32]);
    let record = e.committed_record().unwrap();
    let mut g = c.benchmark_group("per_event");
    g.throughput(Throughput::Elements(1));
    g.bench_function("jcs_committed_record", |b| {
        b.iter(|| jcs::to_canonical_vec(&record).unwrap())
    });
    g.bench_function("committed_record_direct", |b| {
        b.iter(|| e.committed_record_bytes().unwrap())
    });
    let bytes = jcs::to_canonical_vec(&record).unwrap();
    g.bench_function("leaf_hash", |b| b.iter(|| leaf_hash(&bytes)));
    let content = "x".repeat(1024);
    g.bench_function("jcs_string_1KiB", |b| {
        let text = chat_text(1024, 7);
        b.iter(|| {
            let mut out = String::new();
            jcs::write_string(&mut out, &text);
            out
        })
    });
    g.bench_function("field_digest_1KiB", |b| {
        b.iter(|| field_digest("content", &[7; 32], content.as_bytes()))
    });
    g.bench_function("seal_entry_1KiB", |b| {
        b.iter_batched(
            || event(1),
            |ev| {
                Entry::seal(
                    ev,
                    Sequence {
                        ns: "bench",
                        idx: 1,
                        session_seq: 0,
                        received_at: 1,
                        ingested_by: "w",
                        salt: [7; 32],
                        prev_chain: [0; 32],
                    },
                )
                .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("event_parse_validate_1KiB", |b| {
        let text = json!({"session_id": "s", "kind": "output", "content": "x".repeat(1024), "attributes": {"a": 1}}).to_string();
        b.iter(|| Event::from_json(&text).unwrap())
    });
    // The JSON tree of an event with a dozen keys at two levels: as
    // serde_json builds it, and refusing repeated keys (what events go
    // through since the thirteenth session).
    let text = json!({"session_id": "s", "kind": "tool_call", "ts": "2026-12-05T10:00:00Z",
        "event_id": "e-1", "name": "search", "actor": "agent", "model": "m",
        "content": {"query": "x".repeat(900), "top_k": 5, "filters": {"lang": "en", "site": "docs"}},
        "attributes": {"gen_ai.system": "openai", "tokens": 1234, "cost": 0.5}})
    .to_string();
    g.bench_function("json_tree_serde_1KiB", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(&text).unwrap())
    });
    g.bench_function("json_tree_strict_1KiB", |b| {
        b.iter(|| tracevault_schemas::strict_json::from_str(&text).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("merkle");
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("append_100k", |b| {
        b.iter(|| {
            let mut t = MerkleTree::new();
            for i in 0..100_000u64 {
                t.push(leaf_hash(&i.to_le_bytes()));
            }
            t.root()
        })
    });
    g.finish();

    let mut prev = [0u8; 32];
    let entries: Vec<Entry> = (0..10_000)
        .map(|i| {
            let e = seal(i, prev);
            prev = e.chain_hash;
            e
        })
        .collect();
    let key = SigningKey::from_bytes(&[9; 32]);
    let key_id = note::key_id("bench", &key.verifying_key().to_bytes());
    let mut g = c.benchmark_group("segment");
    g.sample_size(10);
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.bench_function("encode_10k_1KiB", |b| {
        b.iter(|| {
            encode(
                &entries,
                &SegmentSeal {
                    chain_in: [0; 32],
                    root: [1; 32],
                    key_id,
                    key: &key,
                },
            )
            .unwrap()
        })
    });
    let (_, file) = encode(
        &entries,
        &SegmentSeal {
            chain_in: [0; 32],
            root: [1; 32],
            key_id,
            key: &key,
        },
    )
    .unwrap();
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.bench_function("decode_10k_1KiB", |b| {
        b.iter(|| tracevault_vault::segment::decode(file.clone()).unwrap())
    });
    g.finish();
}

/// SHA-256 alone at `openssl speed`'s block sizes: the crate's own ceiling,
/// set beside the machine's bound that `verify` is measured against.
fn sha256(c: &mut Criterion) {
    use sha2::{Digest, Sha256};
    let mut g = c.benchmark_group("sha256");
    for size in [64usize, 1024, 16384] {
        let data = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{size}B"), |b| b.iter(|| Sha256::digest(&data)));
    }
    g.finish();
}

/// The OTLP door's CPU work per request, as the server does it between the
/// body and the sequencer: protobuf decode, GenAI mapping, canonical text,
/// salts and field digests (`server::write::otlp`'s `seal_each`), on the
/// load generator's own request of 250 spans (500 events).
fn otlp_door(c: &mut Criterion) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use tracevault_vault::record::Salts;
    let body = tracevault_schemas::sample::genai_traces_request(1, 2, 250, 1024).encode_to_vec();
    let mut g = c.benchmark_group("otlp_door");
    g.throughput(Throughput::Elements(500));
    g.bench_function("decode_map_prepare_250_spans", |b| {
        b.iter(|| {
            let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            let mut salts = Salts::new();
            let mut prepared = Vec::with_capacity(500);
            tracevault_schemas::otlp::map_traces_each(&req, &mut |events| {
                prepared.extend(events.into_iter().map(|e| salts.prepare(e).unwrap()))
            });
            assert_eq!(prepared.len(), 500);
            prepared
        })
    });
    g.finish();
}

criterion_group!(hot, benches, codecs, sha256, otlp_door);
criterion_main!(hot);
