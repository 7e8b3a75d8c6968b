//! Erasure in the vault: the payloads of the ordered entries are gone from
//! every file under the data directory (segments, leftovers, WAL), the
//! other entries keep theirs, every leaf, checkpoint and proof taken before
//! still holds, and `verify` tells an erasure under an order recorded in
//! `_audit` from the same removal without one.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use tracevault_schemas::{Event, Kind};
use tracevault_vault::approval::Actor;
use tracevault_vault::erasure::{ErasurePolicy, IndexRanges, Selection, Step};
use tracevault_vault::{AUDIT_NS, LogConfig, Vault, VaultOptions, merkle};

fn event(session: &str, content: &str) -> Event {
    Event::from_value(json!({
        "session_id": session, "kind": "message", "actor": "agent",
        "content": content, "attributes": {"note": format!("attr-{content}")},
    }))
    .unwrap()
}

/// Every file under `root` holding `needle`, byte for byte.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<String> {
    list_files(root)
        .into_iter()
        .filter(|f| {
            std::fs::read(root.join(f))
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

fn actor(sub: &str) -> Actor {
    Actor {
        iss: "test".into(),
        sub: sub.into(),
        person: None,
    }
}

/// Records an order for `indices` of `ns` in `_audit`, requested by alice
/// and approved by `approver` (alice herself: a self-approval, which must
/// not count).
async fn record_order(vault: &Vault, id: &str, ns: &str, indices: &IndexRanges, approver: &str) {
    let steps = [
        Step::Requested {
            id: id.into(),
            ns: ns.into(),
            by: actor("alice"),
            reason: "data subject request".into(),
            selection: Selection {
                by: "session_id".into(),
                value: "a".into(),
                from_us: None,
                to_us: None,
                size: 0,
            },
            indices: indices.clone(),
            override_min_retention: false,
            policy: ErasurePolicy::default(),
            at: 1,
        },
        Step::Approved {
            id: id.into(),
            by: actor(approver),
            comment: String::new(),
            at: 2,
        },
    ];
    for s in steps {
        record_step(vault, s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_payloads_are_gone_and_verify_tells_erasure_from_removal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let vault = Vault::open(VaultOptions {
        log: LogConfig {
            flush_interval_ms: 10,
            compact_interval_ms: 0,
            ..Default::default()
        },
        ..opts(&data, 10)
    })
    .await
    .unwrap();
    // Session a (to erase) and session b (to keep), interleaved over
    // several segments.
    let mut a_idx = Vec::new();
    let mut b_idx = Vec::new();
    for round in 0..4 {
        let evs = vec![
            event("a", &format!("SECRET-a-{round}-zq")),
            event("b", &format!("KEEP-b-{round}-zq")),
        ];
        let r = vault.append("n", evs, "w").await.unwrap();
        a_idx.push(r[0].index);
        b_idx.push(r[1].index);
        let log = vault.log("n").await.unwrap();
        log.wait_published(r[1].index + 1, WAIT).await.unwrap();
    }
    let log = vault.log("n").await.unwrap();
    let size = log.published_size();
    let (_, note_before) = log.latest_checkpoint().unwrap();
    let (leaf_before, proof_before) = log.inclusion_proof(a_idx[1], size).await.unwrap();
    let salt_a = vault
        .entry("n", a_idx[1])
        .await
        .unwrap()
        .unwrap()
        .salt
        .unwrap();
    assert!(!files_holding(&data, b"SECRET-a-1-zq").is_empty());

    let order = IndexRanges::from_sorted(a_idx.iter().copied());
    record_order(&vault, "e1", "n", &order, "bob").await;
    let seg_dir = store_dir(&data).join("ns/n/segments");
    let segments_before: Vec<(String, Vec<u8>)> = list_files(&seg_dir)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(seg_dir.join(&f)).unwrap();
            (f, b)
        })
        .collect();
    let done = log.erase(&order).await.unwrap();
    assert_eq!((done.entries, done.already), (4, 0));
    let performed = Step::Performed {
        id: "e1".into(),
        entries: 4,
        segments: done.segments,
        at: 3,
    };
    record_step(&vault, performed).await;
    assert!(done.segments >= 4, "{done:?}");
    // Idempotent.
    let again = log.erase(&order).await.unwrap();
    assert_eq!((again.entries, again.already, again.segments), (0, 4, 0));

    // Nothing of the erased values or their salt is left in any file
    // under the data directory (store, WAL, keys, leftovers).
    for round in 0..4 {
        let needle = format!("SECRET-a-{round}-zq");
        assert_eq!(
            files_holding(&data, needle.as_bytes()),
            Vec::<String>::new(),
            "{needle}"
        );
        assert_eq!(
            files_holding(&data, format!("attr-{needle}").as_bytes()),
            Vec::<String>::new()
        );
        let keep = format!("KEEP-b-{round}-zq");
        assert!(
            !files_holding(&data, keep.as_bytes()).is_empty(),
            "{keep} kept"
        );
    }
    assert_eq!(
        files_holding(&data, &salt_a),
        Vec::<String>::new(),
        "salt gone"
    );

    // Reads show the entry as erased; its record and proof are unchanged.
    let e = vault.entry("n", a_idx[1]).await.unwrap().unwrap();
    assert!(e.is_erased() && e.content.is_none() && e.attributes.is_none());
    assert!(e.content_digest.is_some(), "the digest stays in the record");
    assert_eq!(
        merkle::leaf_hash(&e.committed_record_bytes().unwrap()),
        leaf_before
    );
    assert_eq!(e.to_event_json()["erased"], json!(true));
    let (leaf_after, proof_after) = log.inclusion_proof(a_idx[1], size).await.unwrap();
    assert_eq!((leaf_after, proof_after), (leaf_before, proof_before));
    assert_eq!(
        log.latest_checkpoint().unwrap().1.lines().nth(2),
        note_before.lines().nth(2),
        "same root"
    );
    let b = vault.entry("n", b_idx[2]).await.unwrap().unwrap();
    assert_eq!(b.content.as_deref(), Some("KEEP-b-2-zq"));

    // verify: the erasure is under an order: clean, and counted.
    vault.shutdown(WAIT).await;
    drop((log, vault));
    let report = verify(&store_dir(&data), Default::default()).await;
    let n = report.namespaces.iter().find(|s| s.ns == "n").unwrap();
    assert_eq!(n.erased, 4);
    assert!(report.findings.is_empty(), "{}", describe(&report));

    // The same removal without an order (session b's first entry, and an
    // order approved only by its requester) is a finding.
    let vault = Vault::open(VaultOptions {
        log: LogConfig {
            flush_interval_ms: 10,
            compact_interval_ms: 0,
            ..Default::default()
        },
        ..opts(&data, 10)
    })
    .await
    .unwrap();
    let log = vault.log("n").await.unwrap();
    let b0 = IndexRanges::from_sorted([b_idx[0]]);
    log.erase(&b0).await.unwrap();
    let b3 = IndexRanges::from_sorted([b_idx[3]]);
    record_order(&vault, "e2", "n", &b3, "alice").await;
    log.erase(&b3).await.unwrap();
    vault.shutdown(WAIT).await;
    let report = verify(&store_dir(&data), Default::default()).await;
    let msgs: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    assert_eq!(msgs.len(), 2, "{}", describe(&report));
    assert!(
        msgs[0].contains(&format!("entry {} has no content", b_idx[0])),
        "{msgs:?}"
    );
    assert!(
        msgs[1].contains(&format!("entry {} has no content", b_idx[3])),
        "{msgs:?}"
    );

    // An operator puts a pre-erasure copy back as a newer generation:
    // readers would serve the erased values again, and verify says so.
    let (name, bytes) = segments_before
        .iter()
        .find(|(_, b)| b.windows(13).any(|w| w == b"SECRET-a-2-zq"))
        .unwrap();
    let planted = name.replace(".parquet", "-e0042.parquet");
    std::fs::write(seg_dir.join(&planted), bytes).unwrap();
    let report = verify(&store_dir(&data), Default::default()).await;
    assert!(
        report.findings.iter().any(|f| f.object.ends_with(&planted)
            && f.to_string()
                .contains("holds its payload though a performed erasure order erased it")),
        "{}",
        describe(&report)
    );
}

async fn record_step(vault: &Vault, s: Step) {
    let mut ev = event(tracevault_vault::erasure::ERASURES_SESSION, "x");
    ev.kind = Kind::Annotation;
    ev.attributes = None;
    ev.content = Some(serde_json::to_value(&s).unwrap());
    vault
        .append_system(AUDIT_NS, vec![ev], "tracevault")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_an_erased_event_gets_its_receipt_before_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let open = || async {
        Vault::open(VaultOptions {
            log: LogConfig {
                flush_interval_ms: 10,
                compact_interval_ms: 0,
                ..Default::default()
            },
            ..opts(&data, 10)
        })
        .await
        .unwrap()
    };
    let with_id = |content: &str| {
        let mut e = event("s", content);
        e.event_id = Some("ev-1".into());
        e
    };
    let vault = open().await;
    let r = vault
        .append("n", vec![with_id("SECRET-dedup")], "w")
        .await
        .unwrap();
    let log = vault.log("n").await.unwrap();
    log.wait_published(1, WAIT).await.unwrap();
    let order = IndexRanges::from_sorted([0]);
    record_order(&vault, "e1", "n", &order, "bob").await;
    log.erase(&order).await.unwrap();
    // The window no longer holds the payload's fingerprint: the same event,
    // or another under its id, is answered with the original receipt (a
    // conflict would tell the client what the erased payload was not).
    for content in ["SECRET-dedup", "something else"] {
        let again = vault
            .append("n", vec![with_id(content)], "w")
            .await
            .unwrap();
        assert!(
            again[0].duplicate && again[0].index == r[0].index,
            "{content}"
        );
    }
    vault.shutdown(WAIT).await;
    drop((log, vault));
    let vault = open().await;
    let again = vault
        .append("n", vec![with_id("SECRET-dedup")], "w")
        .await
        .unwrap();
    assert!(again[0].duplicate && again[0].index == r[0].index);
    assert_eq!(
        vault.log("n").await.unwrap().durable_size(),
        1,
        "no second entry"
    );
    vault.shutdown(WAIT).await;
}
