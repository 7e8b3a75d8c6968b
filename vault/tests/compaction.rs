//! Background compaction: many small segments become few large ones, the
//! store verifies before, during (leftovers of an interrupted merge) and after,
//! proofs and restarts keep working, and a planted "merged" segment never
//! makes the compactor delete real data.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use parquet::file::reader::{FileReader, SerializedFileReader};
use tracevault_vault::segment::{self, SegmentCompression, SegmentSeal};
use tracevault_vault::{LogConfig, Vault, VaultOptions, compact, keys, merkle, note};

fn cfg(compact_interval_ms: u64) -> LogConfig {
    LogConfig {
        flush_interval_ms: 10,
        compact_interval_ms,
        compact_target_rows: 200,
        compact_min_segments: 4,
        ..Default::default()
    }
}

async fn open_with(data: &Path, compact_interval_ms: u64) -> Vault {
    open_compressed(data, compact_interval_ms, SegmentCompression::default()).await
}

async fn open_compressed(
    data: &Path,
    compact_interval_ms: u64,
    segment_compression: SegmentCompression,
) -> Vault {
    Vault::open(VaultOptions {
        log: LogConfig {
            segment_compression,
            ..cfg(compact_interval_ms)
        },
        ..opts(data, 10)
    })
    .await
    .unwrap()
}

/// The codecs Parquet recorded for the column chunks of a segment.
/// The codecs of a segment's compressed columns (all but the random
/// ones, which are stored as they are: checked here too).
fn codecs(data: &Path, name: &str) -> BTreeSet<String> {
    let bytes = std::fs::read(store_dir(data).join("ns/n/segments").join(name)).unwrap();
    let r = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
    let mut out = BTreeSet::new();
    for c in r.metadata().row_groups().iter().flat_map(|g| g.columns()) {
        let codec = format!("{:?}", c.compression());
        if segment::RANDOM_COLUMNS.contains(&c.column_path().string().as_str()) {
            assert_eq!(codec, "UNCOMPRESSED", "{name}: {}", c.column_path());
        } else {
            out.insert(codec);
        }
    }
    out
}

fn segment_names(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store_dir(data).join("ns/n/segments"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// 30 segments of 10 rows each.
async fn fill(vault: &Vault) -> Vec<tracevault_vault::Receipt> {
    let mut all = Vec::new();
    for round in 0..30u64 {
        let r = vault
            .append(
                "n",
                (0..10).map(|i| ev("s", round * 10 + i, None)).collect(),
                "w",
            )
            .await
            .unwrap();
        let log = vault.log("n").await.unwrap();
        assert!(
            log.wait_published(r[9].index + 1, Duration::from_secs(10))
                .await
                .is_some()
        );
        all.extend(r);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_segments_are_merged_and_everything_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    // Written and merged with LZ4, continued after the restart with zstd:
    // one store holds both codecs and verifies.
    let vault = open_compressed(&data, 30, SegmentCompression::Lz4).await;
    let receipts = fill(&vault).await;
    // Which runs get merged depends on how publishing and compaction rounds
    // interleave, so wait for the state the policy itself calls finished: no
    // overlapping leftovers and no run left worth merging.
    let policy = compact::CompactPolicy {
        target_rows: 200,
        min_segments: 4,
        compression: Default::default(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (names, ranges) = loop {
        let names = segment_names(&data);
        let ranges: Vec<(u64, u64)> = names
            .iter()
            .map(|n| segment::parse_segment_file_name(n).unwrap())
            .collect();
        let disjoint = ranges.windows(2).all(|w| w[1].0 == w[0].1 + 1);
        if disjoint && compact::pick_run(&ranges, policy).is_none() {
            break (names, ranges);
        }
        assert!(Instant::now() < deadline, "not compacted: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(ranges.len() < 30 / 2, "barely compacted: {names:?}");
    assert_eq!(ranges[0].0, 0);
    assert_eq!(ranges[ranges.len() - 1].1, 299);
    assert!(ranges.windows(2).all(|w| w[1].0 == w[0].1 + 1), "{names:?}");
    assert!(
        ranges.iter().any(|(a, b)| b - a + 1 >= 100),
        "no large segment: {names:?}"
    );
    for n in &names {
        assert_eq!(
            codecs(&data, n),
            BTreeSet::from(["LZ4_RAW".to_string()]),
            "{n}"
        );
    }
    // Proofs still verify against the latest checkpoint.
    let log = vault.log("n").await.unwrap();
    let (size, text) = log.latest_checkpoint().unwrap();
    let cp = note::open_checkpoint(&text, &vault.origin_of("n"), &vault.public_key()).unwrap();
    for r in &receipts {
        let (leaf, proof) = log.inclusion_proof(r.index, size).await.unwrap();
        merkle::verify_inclusion(&leaf, r.index, size, &proof, &cp.root).unwrap();
    }
    let key = vault.public_key();
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    assert_clean(&verify(&store_dir(&data), pinned(key)).await);
    // A restart reads the merged segments and continues the log.
    let vault = open_with(&data, 0).await;
    let r = vault
        .append("n", vec![ev("s", 1000, None)], "w")
        .await
        .unwrap();
    assert_eq!(r[0].index, 300);
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    let newest = segment_names(&data).pop().unwrap();
    assert!(newest.starts_with("00000000000000000300-"), "{newest}");
    assert!(codecs(&data, &newest).iter().all(|c| c.starts_with("ZSTD")));
    assert_clean(&verify(&store_dir(&data), pinned(key)).await);
}

/// Merges segments [i, j) of the store by hand with the real key, as an
/// interrupted compaction would have left them (merged written, small not deleted).
fn merge_by_hand(data: &Path, from: usize, to: usize) -> String {
    let names = segment_names(data);
    let segs: Vec<_> = names[from..to]
        .iter()
        .map(|n| {
            segment::decode(
                std::fs::read(store_dir(data).join("ns/n/segments").join(n))
                    .unwrap()
                    .into(),
            )
            .unwrap()
        })
        .collect();
    let (key, _) = keys::load_or_create(&data.join("keys/log.key")).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store_dir(data).join("vault.json")).unwrap())
            .unwrap();
    let origin = format!("{}/n", meta["origin"].as_str().unwrap());
    let first = &segs[0].header;
    let last = &segs[segs.len() - 1].header;
    let entries: Vec<_> = segs.iter().flat_map(|s| s.entries.clone()).collect();
    use base64::Engine;
    let root: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(&last.root)
        .unwrap()
        .try_into()
        .unwrap();
    let seal = SegmentSeal {
        chain_in: hex32(&first.chain_in),
        root,
        key_id: note::key_id(&origin, &key.verifying_key().to_bytes()),
        key: &key,
    };
    let (h, bytes) = segment::encode(&entries, &seal).unwrap();
    let name = h.object_name();
    std::fs::write(store_dir(data).join("ns/n/segments").join(&name), &bytes).unwrap();
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_an_interrupted_merge_verify_and_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let vault = open_with(&data, 0).await;
    fill(&vault).await;
    let key = vault.public_key();
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    let merged = merge_by_hand(&data, 0, 5);
    assert_eq!(merged, segment::segment_file_name(0, 49));
    assert_eq!(segment_names(&data).len(), 31);
    assert_clean(&verify(&store_dir(&data), pinned(key)).await);
    // The server opens on top of it, and the compactor removes the covered segments.
    let vault = open_with(&data, 20).await;
    vault
        .append("n", vec![ev("s", 1, None)], "w")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while segment_names(&data)
        .iter()
        .any(|n| n == &segment::segment_file_name(0, 9))
    {
        assert!(Instant::now() < deadline, "covered segments not cleaned up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    assert_clean(&verify(&store_dir(&data), pinned(key)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_cover_deletes_nothing_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let vault = open_with(&data, 0).await;
    fill(&vault).await;
    let key = vault.public_key();
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    // An operator (without the key) plants a file named as if it merged 0-49.
    let segdir = store_dir(&data).join("ns/n/segments");
    let names = segment_names(&data);
    std::fs::copy(
        segdir.join(&names[0]),
        segdir.join(segment::segment_file_name(0, 49)),
    )
    .unwrap();
    let report = verify(&store_dir(&data), pinned(key)).await;
    assert!(!report.findings.is_empty());
    assert!(
        describe(&report).contains(&segment::segment_file_name(0, 49)),
        "{}",
        describe(&report)
    );
    // The server refuses the namespace rather than trusting or deleting anything.
    let vault = open_with(&data, 20).await;
    assert!(
        vault
            .append("n", vec![ev("s", 1, None)], "w")
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    vault.shutdown(Duration::from_secs(10)).await;
    for n in &names {
        assert!(segdir.join(n).exists(), "{n} was deleted");
    }
}
