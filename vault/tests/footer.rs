//! The whole Parquet file is covered by the signed header, footer included:
//! an edited statistic or page index (which could make a query engine skip
//! rows) is reported like any other change.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_footer_byte_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let vault = open(&data, 20).await;
    let r = vault
        .append("n", (0..50).map(|i| ev("s", i, None)).collect(), "w")
        .await
        .unwrap();
    let log = vault.log("n").await.unwrap();
    assert!(
        log.wait_published(r[49].index + 1, Duration::from_secs(10))
            .await
            .is_some()
    );
    let key = vault.public_key();
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    assert_clean(&verify(&store_dir(&data), pinned(key)).await);
    let seg = std::fs::read_dir(store_dir(&data).join("ns/n/segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let clean = std::fs::read(&seg).unwrap();
    let n = clean.len();
    let footer_len = u32::from_le_bytes(clean[n - 8..n - 4].try_into().unwrap()) as usize;
    let footer_start = n - 8 - footer_len;
    // Every byte of the footer: each change must be reported (as a changed or unreadable file).
    let mut checked = 0;
    for at in (footer_start..n - 8).step_by(97) {
        let mut bad = clean.clone();
        bad[at] ^= 0x01;
        std::fs::write(&seg, &bad).unwrap();
        let report = verify(&store_dir(&data), pinned(key)).await;
        let text = describe(&report);
        assert!(
            report.findings.iter().any(|f| f
                .object
                .ends_with(seg.file_name().unwrap().to_str().unwrap())
                && (f.message.contains("signed file digest")
                    || f.message.contains("unreadable")
                    || f.message.contains("malformed file")
                    || f.message.contains("signature"))),
            "flip at footer byte {} went unnoticed:\n{text}",
            at - footer_start
        );
        checked += 1;
    }
    std::fs::write(&seg, &clean).unwrap();
    assert!(
        checked >= 5,
        "footer too small to sample ({footer_len} bytes)"
    );
    assert_clean(&verify(&store_dir(&data), pinned(key)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_footer_is_a_finding_not_a_crash() {
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use tracevault_vault::segment::{self, HEADER_KEY, SIGNATURE_KEY};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let vault = open(&data, 20).await;
    let r = vault
        .append("n", (0..5).map(|i| ev("s", i, None)).collect(), "w")
        .await
        .unwrap();
    let log = vault.log("n").await.unwrap();
    assert!(
        log.wait_published(r[4].index + 1, Duration::from_secs(10))
            .await
            .is_some()
    );
    let key = vault.public_key();
    vault.shutdown(Duration::from_secs(10)).await;
    drop(vault);
    let path = std::fs::read_dir(store_dir(&data).join("ns/n/segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let seg = segment::decode(std::fs::read(&path).unwrap().into()).unwrap();
    let header_json = serde_json::to_string(&seg.header).unwrap();
    // An empty signature, and a header whose text contains the signature value.
    for sig in ["", "AAAA"] {
        let batch = segment::entries_to_batch(&seg.entries).unwrap();
        let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.append_key_value_metadata(KeyValue::new(
            HEADER_KEY.to_string(),
            header_json.replace("\"ns\":\"n\"", &format!("\"ns\":\"n{sig}\"")),
        ));
        w.append_key_value_metadata(KeyValue::new(SIGNATURE_KEY.to_string(), sig.to_string()));
        std::fs::write(&path, w.into_inner().unwrap()).unwrap();
        let report = verify(&store_dir(&data), pinned(key)).await;
        assert!(
            report.findings.iter().any(|f| f
                .object
                .ends_with(path.file_name().unwrap().to_str().unwrap())),
            "{}",
            describe(&report)
        );
    }
}
