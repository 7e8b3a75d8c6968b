//! Export bundles against a real vault: a bundle verifies offline with only
//! the verifier key, masked fields are withheld (never verified, never
//! shown), and flipping any byte of any member, dropping a row, or swapping
//! in a row from another export fails with a precise message.

use std::io::Read;
use std::time::Duration;

use serde_json::json;
use tracevault_query::export::{
    BundleInput, BundleReader, BundleReport, BundleRow, MEMBERS, history_for, selection_digest,
    verify_bundle, write_bundle,
};
use tracevault_query::masking::{Masker, Policy};
use tracevault_schemas::Event;
use tracevault_vault::{LogConfig, Vault, VaultOptions, keys};

const KEY: [u8; 32] = [9; 32];

struct Fixture {
    _dir: tempfile::TempDir,
    vault: Vault,
    key: ed25519_dalek::SigningKey,
}

async fn fixture(n: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(VaultOptions {
        data_dir: dir.path().to_path_buf(),
        store: None,
        origin: None,
        log: LogConfig {
            flush_interval_ms: 20,
            ..LogConfig::default()
        },
    })
    .await
    .unwrap();
    let events: Vec<Event> = (0..n)
        .map(|i| {
            let mut v = json!({"session_id": format!("s{}", i % 3), "kind": "tool_result",
                "name": "lookup", "content": format!("row {i} mail alice@example.com"),
                "attributes": {"n": i}});
            if i == 4 {
                // A verbatim column that a policy masking `name` hides.
                v["name"] = json!("notify bob@example.org");
            }
            Event::from_value(v).unwrap()
        })
        .collect();
    vault.append("n", events, "agent").await.unwrap();
    let log = vault.log("n").await.unwrap();
    assert!(
        log.wait_published(n, Duration::from_secs(10))
            .await
            .is_some()
    );
    let (key, _) = keys::load_or_create(&dir.path().join("keys/log.key")).unwrap();
    Fixture {
        _dir: dir,
        vault,
        key,
    }
}

/// Records export `id`'s request (by `auditor`) and approval (by `boss`) in
/// `_audit`, as the server does, and returns the history lines and the
/// `_audit` checkpoint they are proven against.
pub async fn history(vault: &Vault, id: &str) -> (Vec<serde_json::Value>, String) {
    let steps = [
        (
            "export_requested",
            "auditor",
            json!({"step": "requested", "id": id, "by": {"iss": "tv", "sub": "auditor"}, "reason": "incident"}),
        ),
        (
            "export_approved",
            "boss",
            json!({"step": "approved", "id": id, "by": {"iss": "tv", "sub": "boss"}, "comment": "ok", "at": 1}),
        ),
    ];
    let events = steps
        .into_iter()
        .map(|(name, actor, step)| {
            Event::from_value(json!({"session_id": "exports", "kind": "annotation",
                "name": name, "actor": actor, "content": step}))
            .unwrap()
        })
        .collect();
    vault
        .append_system("_audit", events, "tracevault")
        .await
        .unwrap();
    history_for(vault, id, &|v| v, Duration::from_secs(10))
        .await
        .unwrap()
}

async fn bundle(f: &Fixture, id: &str, policy: &Policy, pick: impl Fn(u64) -> bool) -> Vec<u8> {
    let view = f.vault.view("n").await.unwrap().unwrap();
    let (size, checkpoint) = view.latest_checkpoint().unwrap();
    let entries = f
        .vault
        .scan_entries("n", |_| true, usize::MAX)
        .await
        .unwrap();
    let mut rows: Vec<BundleRow> = Vec::new();
    for e in entries.into_iter().filter(|e| pick(e.idx)) {
        rows.push(BundleRow {
            proof: view.inclusion_proof(e.idx, size).await.unwrap().1,
            entry: e,
        });
    }
    let digest = selection_digest(rows.iter().map(|r| (r.entry.idx, r.entry.leaf_hash)));
    let (approvals, audit_checkpoint) = history(&f.vault, id).await;
    let input = BundleInput {
        export_id: id.into(),
        ns: "n".into(),
        checkpoint,
        size,
        selection_digest: digest,
        requester: "auditor".into(),
        approvers: vec!["boss".into()],
        created_at: "2026-11-22T00:00:00Z".into(),
        approvals,
        audit_checkpoint,
        rows,
    };
    let masker = Masker::new(policy.profile_for("reader", &serde_json::Map::new()), &KEY);
    write_bundle(&input, &masker, &f.key).unwrap()
}

fn check(f: &Fixture, file: &[u8]) -> BundleReport {
    let mut calls = 0;
    let r = verify_bundle(file, &f.vault.verifier_key("n"), &mut |_, _| calls += 1).unwrap();
    assert_eq!(calls, r.rows, "progress is reported per row");
    r
}

/// The members of a tar file, in order.
fn members(file: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(file);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn pack(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        t.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    t.into_inner().unwrap()
}

fn unmasked() -> Policy {
    Policy::from_toml("[[profile]]\nname = \"raw\"\nroles = [\"reader\"]\nunmasked = true\n")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_verifies_offline_and_masked_fields_are_withheld() {
    let f = fixture(9).await;
    let file = bundle(&f, "x1", &Policy::default_policy(), |i| i % 2 == 0).await;
    let r = check(&f, &file);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(
        (r.rows, r.export_id.as_str(), r.ns.as_str()),
        (5, "x1", "n")
    );
    // The request and its approval, each proven in `_audit`.
    assert_eq!((r.history_steps, r.history_bound), (2, 2));
    // The strict profile masks content (every row has an email) but no
    // verbatim column: every row is bound, content is withheld.
    assert_eq!((r.bound, r.unbound), (5, 0));
    assert_eq!(r.withheld.get("content"), Some(&5));
    // With content masked the salt is withheld, so the shown attributes are
    // reported as unverified, not counted verified.
    assert_eq!(
        r.withheld.get("attributes (unverified: salt withheld)"),
        Some(&5)
    );
    assert!(!String::from_utf8_lossy(&file).contains("alice@example.com"));

    // A profile that masks `name`: that row's record is withheld (it holds
    // names verbatim); only its leaf's inclusion is proven.
    let policy = Policy::from_toml(
        "[[profile]]\nname = \"p\"\nroles = [\"reader\"]\n[[profile.rule]]\ndetector = \"email\"\naction = \"redact\"\ncolumns = [\"name\", \"content\"]\n",
    )
    .unwrap();
    let file = bundle(&f, "x2", &policy, |_| true).await;
    let r = check(&f, &file);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!((r.rows, r.bound, r.unbound), (9, 8, 1));
    assert!(!String::from_utf8_lossy(&file).contains("bob@example.org"));
    // An unmasked bundle binds content too (salt shipped, digests recomputed).
    let file = bundle(&f, "x3", &unmasked(), |i| i < 3).await;
    let r = check(&f, &file);
    assert!(r.findings.is_empty() && r.withheld.is_empty(), "{r:?}");
    assert_eq!(r.bound, 3);
    // Another key: nothing verifies.
    let other = tracevault_vault::note::verifier_key(
        "tracevault.local/x/n",
        &ed25519_dalek::SigningKey::from_bytes(&[1; 32])
            .verifying_key()
            .to_bytes(),
    );
    let r = verify_bundle(&file, &other, &mut |_, _| {}).unwrap();
    assert!(!r.findings.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_flipped_byte_dropped_or_swapped_row_is_caught() {
    let f = fixture(6).await;
    let file = bundle(&f, "a", &unmasked(), |i| i < 4).await;
    let parts = members(&file);
    assert_eq!(
        parts.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        MEMBERS
    );
    // Flip one byte in the middle of every member.
    for (m, (name, data)) in parts.iter().enumerate() {
        let mut p = parts.clone();
        let mut d = data.clone();
        let at = d.len() / 2;
        d[at] ^= 0x01;
        p[m] = (name.clone(), d);
        let findings = match verify_bundle(&pack(&p), &f.vault.verifier_key("n"), &mut |_, _| {}) {
            Ok(r) => r.findings,
            Err(e) => vec![e.to_string()],
        };
        assert!(
            findings.iter().any(|f| f.contains(name.as_str())),
            "flipping a byte of {name}: {findings:?}"
        );
    }
    // A member dropped or added.
    let r = check(&f, &pack(&parts[..5]));
    assert!(
        r.findings.iter().any(|f| f.contains("approvals.jsonl")),
        "{:?}",
        r.findings
    );
    let mut extra = parts.clone();
    extra.push(("notes.txt".into(), b"hi".to_vec()));
    let r = check(&f, &pack(&extra));
    assert!(
        r.findings.iter().any(|f| f.contains("notes.txt")),
        "{:?}",
        r.findings
    );

    // Another export's rows swapped in: the manifest no longer matches, and
    // the rows are not those the proofs are for.
    let other = members(&bundle(&f, "b", &unmasked(), |i| i >= 2).await);
    let mut swapped = parts.clone();
    swapped[3] = other[3].clone();
    let r = check(&f, &pack(&swapped));
    assert!(
        r.findings
            .iter()
            .any(|f| f.contains("events.parquet: SHA-256")),
        "{:?}",
        r.findings
    );
    // A file that is not the signed one is not decoded at all (a Parquet
    // file of a few KB can describe gigabytes of values).
    assert!(
        r.findings.iter().any(|f| f.contains("not decoded")),
        "{:?}",
        r.findings
    );
    swapped[4] = other[4].clone();
    let r = check(&f, &pack(&swapped));
    assert!(
        r.findings
            .iter()
            .any(|f| f.contains("proofs.jsonl: SHA-256")),
        "{:?}",
        r.findings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_plain_ustar_files_in_order_and_nothing_follows() {
    // Other tar readers honour PAX extensions (a size override, a sparse
    // map) this one would ignore: a member could extract as other bytes
    // than the verifier hashed. Such bundles are not read; members out of
    // order and bytes after the archive are findings.
    let f = fixture(3).await;
    let parts = members(&bundle(&f, "p", &unmasked(), |_| true).await);
    let mut t = tar::Builder::new(Vec::new());
    for (name, data) in &parts {
        if name == "events.parquet" {
            let bigger = (data.len() + 512).to_string();
            t.append_pax_extensions([("size", bigger.as_bytes())])
                .unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        t.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    let file = t.into_inner().unwrap();
    let r = verify_bundle(&file, &f.vault.verifier_key("n"), &mut |_, _| {});
    let e = r
        .map(|r| r.findings.join("; "))
        .unwrap_or_else(|e| e.to_string());
    assert!(e.contains("not a plain ustar file"), "{e}");
    let pack_plain = |parts: &[(String, Vec<u8>)]| {
        let mut t = tar::Builder::new(Vec::new());
        for (name, data) in parts {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            t.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        t.into_inner().unwrap()
    };
    let key = f.vault.verifier_key("n");
    let genuine = pack_plain(&parts);
    let r = verify_bundle(&genuine, &key, &mut |_, _| {}).unwrap();
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let mut appended = genuine.clone();
    appended.extend_from_slice(b"PAR1 a second events.parquet");
    let r = verify_bundle(&appended, &key, &mut |_, _| {}).unwrap();
    assert!(
        r.findings
            .iter()
            .any(|f| f.contains("after the end of the archive")),
        "{:?}",
        r.findings
    );
    let mut reordered = parts.clone();
    reordered.swap(4, 5);
    let r = verify_bundle(&pack_plain(&reordered), &key, &mut |_, _| {}).unwrap();
    assert!(
        r.findings
            .iter()
            .any(|f| f.contains("not in the bundle's order")),
        "{:?}",
        r.findings
    );
}

/// Re-seals `parts` with the log key: a new manifest with the members'
/// digests, signed. What is left to catch a change is the history's own
/// proofs.
fn reseal(parts: &[(String, Vec<u8>)], key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    use ed25519_dalek::Signer;
    use sha2::Digest;
    let mut manifest: serde_json::Value = serde_json::from_slice(&parts[0].1).unwrap();
    for (name, data) in &parts[2..] {
        manifest["members"][name] = json!(hex::encode(sha2::Sha256::digest(data)));
    }
    let bytes = tracevault_vault::jcs::to_canonical_vec(&manifest).unwrap();
    let mut signed = tracevault_query::export::MANIFEST_DOMAIN.to_vec();
    signed.extend_from_slice(&bytes);
    let sig = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        key.sign(&signed).to_bytes(),
    );
    let mut p = parts.to_vec();
    p[0].1 = bytes;
    p[1].1 = sig.into_bytes();
    pack(&p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_history_is_proven_in_audit() {
    let f = fixture(3).await;
    let parts = members(&bundle(&f, "h", &unmasked(), |_| true).await);
    let at = |name: &str| parts.iter().position(|(n, _)| n == name).unwrap();
    let (hist, audit_cp) = (at("approvals.jsonl"), at("audit_checkpoint"));
    // Resealed untouched: intact (the reseal itself is sound).
    let r = check(&f, &reseal(&parts, &f.key));
    assert!(r.findings.is_empty(), "{:?}", r.findings);

    // The approver renamed in the shown step.
    let mut p = parts.clone();
    p[hist].1 = String::from_utf8(p[hist].1.clone())
        .unwrap()
        .replace("\"sub\":\"boss\"", "\"sub\":\"mallory\"")
        .into_bytes();
    let r = check(&f, &reseal(&p, &f.key));
    assert!(
        r.findings.iter().any(|x| x.contains("step changed")),
        "{:?}",
        r.findings
    );
    assert!(
        r.findings
            .iter()
            .any(|x| x.contains("no proven approval by \"boss\"")),
        "{:?}",
        r.findings
    );

    // The approval left out of the history.
    let mut p = parts.clone();
    let text = String::from_utf8(p[hist].1.clone()).unwrap();
    p[hist].1 = text
        .lines()
        .filter(|l| !l.contains("\"approved\""))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes();
    let r = check(&f, &reseal(&p, &f.key));
    assert_eq!(r.history_steps, 1, "{:?}", r.findings);
    assert!(
        r.findings.iter().any(|x| x.contains("no proven approval")),
        "{:?}",
        r.findings
    );

    // A checkpoint of another log in place of `_audit`'s.
    let mut p = parts.clone();
    p[audit_cp].1 = p[at("checkpoint")].1.clone();
    let r = check(&f, &reseal(&p, &f.key));
    assert!(
        r.findings
            .iter()
            .any(|x| x.starts_with("audit_checkpoint:")),
        "{:?}",
        r.findings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_step_must_be_what_its_record_says() {
    let f = fixture(2).await;
    let parts = members(&bundle(&f, "k", &unmasked(), |_| true).await);
    let hist = parts
        .iter()
        .position(|(n, _)| n == "approvals.jsonl")
        .unwrap();
    // The approval shipped unbound (content and salt dropped) and
    // relabelled: the record's name and actor still tell.
    let text = String::from_utf8(parts[hist].1.clone()).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["step"]["step"] == "approved" {
                v["content"] = serde_json::Value::Null;
                v["salt"] = serde_json::Value::Null;
                v["step"]["by"]["sub"] = json!("mallory");
            }
            format!("{v}\n")
        })
        .collect();
    let mut p = parts.clone();
    p[hist].1 = lines.concat().into_bytes();
    let r = check(&f, &reseal(&p, &f.key));
    assert!(
        r.findings
            .iter()
            .any(|x| x.contains("is not what _audit entry") && x.contains("mallory")),
        "{:?}",
        r.findings
    );
    // A line repeated: reported once as listed twice, counted once.
    let mut p = parts.clone();
    let first = text.lines().next().unwrap();
    p[hist].1 = format!("{text}{first}\n").into_bytes();
    let r = check(&f, &reseal(&p, &f.key));
    assert_eq!(r.history_steps, 2, "{:?}", r.findings);
    assert_eq!(
        r.findings
            .iter()
            .filter(|x| x.contains("listed twice"))
            .count(),
        1,
        "{:?}",
        r.findings
    );
}

/// `tracevault replay --bundle` reads rows on demand: the keys are the
/// rows' in file order, and any set of rows (across row groups) decodes to
/// exactly the shipped rows, masked as shipped, with what was withheld.
#[tokio::test]
async fn the_reader_serves_any_rows_across_row_groups() {
    let n = 20_000;
    let f = fixture(n).await;
    let file = bundle(&f, "r1", &Policy::default_policy(), |_| true).await;
    let entries = f
        .vault
        .scan_entries("n", |_| true, usize::MAX)
        .await
        .unwrap();
    let reader = BundleReader::open(bytes::Bytes::from(file.clone())).unwrap();
    assert_eq!((reader.ns(), reader.export_id()), ("n", "r1"));
    assert_eq!(reader.num_rows(), n);
    let keys = reader.keys().unwrap();
    assert_eq!(keys.len() as u64, n);
    for (i, k) in keys.iter().enumerate() {
        let e = &entries[i];
        assert_eq!(
            (k.row, k.idx, k.session_seq),
            (i as u64, e.idx, e.session_seq)
        );
        assert_eq!(k.session_id, e.session_id);
        assert_eq!(k.kind, "tool_result");
        assert_eq!((k.ts, k.received_at), (e.ts, e.received_at));
    }
    // Rows in the first, second and last row group (8192 rows each).
    let want = [0u64, 4, 8191, 8192, 8193, 16_500, n - 1];
    let rows = reader.rows(&want).unwrap();
    assert_eq!(rows.len(), want.len());
    for ((e, leaf), &r) in rows.iter().zip(&want) {
        let stored = &entries[r as usize];
        assert_eq!(e.idx, stored.idx);
        assert_eq!(*leaf, stored.leaf_hash);
        let content = e.content.as_deref().unwrap();
        assert!(content.starts_with(&format!("row {r} mail ")), "{content}");
        assert!(!content.contains("alice@example.com"), "{content}");
        assert!(reader.withheld(r, e.idx).contains(&"content".to_string()));
    }
    // A row whose proof line is elsewhere still finds it (by index).
    assert!(reader.withheld(0, 4).contains(&"content".to_string()));
    assert!(reader.rows(&[5, 3]).is_err(), "unsorted rows are refused");
    assert!(reader.rows(&[n]).is_err(), "a row past the end is refused");
    assert!(reader.rows(&[]).unwrap().is_empty());
    // What was withheld is read as verify-bundle reads it: a `withheld`
    // list with a non-string element still withholds its string fields.
    let mut parts = members(&file);
    for (name, data) in parts.iter_mut() {
        if name == "proofs.jsonl" {
            let text = String::from_utf8(data.clone()).unwrap();
            *data = text
                .replace("\"withheld\":[\"", "\"withheld\":[1,\"")
                .into_bytes();
        }
    }
    let odd = BundleReader::open(bytes::Bytes::from(pack(&parts))).unwrap();
    assert!(odd.withheld(0, 0).contains(&"content".to_string()));
    // A cut bundle does not open.
    let cut = bytes::Bytes::from(file[..file.len() / 2].to_vec());
    assert!(BundleReader::open(cut).is_err());
}

/// `parquet` (a bundle's rows) with its first string column stored as bare
/// bytes (the first value made not UTF-8), while the embedded Arrow schema
/// still calls it a string.
fn bytes_declared_strings(parquet: &[u8]) -> Vec<u8> {
    use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::arrow_writer::ArrowWriterOptions;
    use std::sync::Arc;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(parquet))
        .unwrap()
        .build()
        .unwrap();
    let declared = arrow::array::RecordBatchReader::schema(&reader);
    let at = declared
        .fields()
        .iter()
        .position(|f| f.data_type() == &DataType::Utf8)
        .unwrap();
    let mut fields: Vec<Field> = declared
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[at] = fields[at].clone().with_data_type(DataType::Binary);
    let stored = Arc::new(Schema::new(fields));
    let options = ArrowWriterOptions::new().with_skip_arrow_metadata(true);
    let mut w = ArrowWriter::try_new_with_options(Vec::new(), stored.clone(), options).unwrap();
    for (b, batch) in reader.enumerate() {
        let batch = batch.unwrap();
        let strings = batch
            .column(at)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let bytes = BinaryArray::from_iter((0..strings.len()).map(|i| {
            strings.is_valid(i).then(|| {
                let mut v = strings.value(i).as_bytes().to_vec();
                if b == 0 && i == 0 {
                    v.push(0xff);
                }
                v
            })
        }));
        let mut columns = batch.columns().to_vec();
        columns[at] = Arc::new(bytes) as ArrayRef;
        w.write(&RecordBatch::try_new(stored.clone(), columns).unwrap())
            .unwrap();
    }
    w.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
        "ARROW:schema".into(),
        parquet::arrow::encode_arrow_schema(&declared),
    ));
    w.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stored_as_bytes_but_declared_strings_are_refused_even_resealed() {
    // Decoded as it declares itself, such a file would hand its readers
    // strings nobody checked as UTF-8. The key holder re-seals the bundle so
    // that every digest matches: the verifier and the reader still refuse it.
    let f = fixture(3).await;
    let mut parts = members(&bundle(&f, "u", &unmasked(), |_| true).await);
    let at = parts
        .iter()
        .position(|(n, _)| n == "events.parquet")
        .unwrap();
    parts[at].1 = bytes_declared_strings(&parts[at].1);
    let file = reseal(&parts, &f.key);
    let r = check(&f, &file);
    assert!(
        r.findings
            .iter()
            .any(|x| x.contains("events.parquet") && x.contains("is declared a string")),
        "{:?}",
        r.findings
    );
    let err = BundleReader::open(bytes::Bytes::from(file)).err().unwrap();
    assert!(err.to_string().contains("is declared a string"), "{err}");
}
