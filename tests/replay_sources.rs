//! Every replay source keeps the `Source` contract
//! (`tracevault_replay::conformance::check`): the server source against a
//! real server, the bundle source on a real export of the same session, the
//! data-directory source on the server's own store. One server serves all.

mod common;

use common::*;
use serde_json::{Value, json};
use tracevault_replay::conformance;
use tracevault_replay::sources::{bundle, data, server::ServerSource};

/// A session `s1` of 50 events of every kind, interleaved with another
/// session's, so the log indices of `s1` have holes.
fn events() -> Value {
    let kinds = [
        "prompt",
        "reasoning",
        "tool_call",
        "tool_result",
        "response",
        "error",
        "message",
    ];
    let events: Vec<Value> = (0..100)
        .map(|i| {
            let session = if i % 2 == 0 { "s1" } else { "other" };
            json!({"session_id": session, "kind": kinds[i % kinds.len()],
                   "content": format!("event {i} of {session}")})
        })
        .collect();
    json!({ "events": events })
}

#[test]
fn every_source_keeps_the_source_contract() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[log]\nflush_interval_ms = 50\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let writer = token(&data, "writer", "prod", "agent");
    let reader = token(&data, "reader", "prod", "responder");
    let approver = token(&data, "approver", "prod", "boss");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bundle_bytes = rt.block_on(async {
        let c = client();
        let (s, r) = post_events(&c, &srv.url, "prod", &writer, events(), "?wait=checkpoint").await;
        assert_eq!(s, 200, "{r}");
        let tv = tracevault_client::Client::new(&srv.url, &reader).unwrap();
        let asked = tv
            .request_export(&tracevault_client::exports::ExportRequest {
                namespace: "prod".into(),
                reason: "conformance".into(),
                session: Some("s1".into()),
                sql: None,
            })
            .await
            .unwrap();
        let id = serde_json::from_slice::<Value>(&asked).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        tracevault_client::Client::new(&srv.url, &approver)
            .unwrap()
            .approve_export(&id, "")
            .await
            .unwrap();
        tv.download_export(&id).await.unwrap()
    });

    let mut server = ServerSource::open(&srv.url, &reader, "s1", None, None, None).unwrap();
    assert_eq!(tracevault_replay::Source::len(&server), 50);
    conformance::check(&mut server).unwrap();

    let file = dir.path().join("export.tar");
    std::fs::write(&file, &bundle_bytes).unwrap();
    let mut bundle = bundle::open(&file, None, None, None).unwrap();
    assert_eq!(tracevault_replay::Source::len(&bundle), 50);
    conformance::check(&mut bundle).unwrap();

    // The data directory the server writes (read through the store, no
    // lock needed).
    let mut data_source = data::open(&data, Some("prod"), "s1", None, None).unwrap();
    assert_eq!(tracevault_replay::Source::len(&data_source), 50);
    conformance::check(&mut data_source).unwrap();

    let (_, vault) = rt.block_on(get(
        &client(),
        &format!("{}/v1/vault", srv.url),
        Some(&reader),
    ));
    let vault: Value = serde_json::from_str(&vault).unwrap();
    let vk = vault["namespaces"][0]["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    lying_servers_are_never_shown_as_verified(&srv, &reader, &vk);
    a_checkpoint_kept_from_before_must_be_extended(&srv, &data, &reader, &vk);

    // A bundle whose rows are not the signed ones is not decoded at all when
    // a key is given (a crafted Parquet file can ask for gigabytes).
    let mut bad = bundle_bytes.to_vec();
    // A byte of events.parquet (a Parquet file starts with `PAR1`).
    let at = bad.windows(4).position(|w| w == b"PAR1").unwrap() + 64;
    bad[at] ^= 0x20;
    let bad_file = dir.path().join("tampered.tar");
    std::fs::write(&bad_file, &bad).unwrap();
    match bundle::open(&bad_file, None, Some(vk.clone()), None) {
        Err(e) => assert!(
            e.to_string().contains("not the ones the log key signed"),
            "{e}"
        ),
        Ok(_) => panic!("a tampered bundle was opened"),
    }
    assert!(bundle::open(&file, None, Some(vk), None).is_ok());
}

/// A server between the replayer and the vault that changes the rows it
/// shows: with the leaf hashes kept, the badge says the leaves are in the
/// log and the values are as served (never "verified": a reader gets no
/// salts or records to bind them); with rows of other events put in their
/// place, the page is refused and the badge fails.
fn lying_servers_are_never_shown_as_verified(srv: &Server, reader: &str, vk: &str) {
    use tracevault_replay::{Integrity, Source};
    for mode in ["lying-values", "lying-rows"] {
        let (mut child, url) = stand_in_server(&[mode, &srv.url]);
        let mut src =
            ServerSource::open(&url, reader, "s1", Some("prod"), Some(vk.to_string()), None)
                .unwrap();
        let page = src.page(0, 10);
        let verdict = settled(&mut src);
        match mode {
            "lying-values" => {
                assert!(
                    page.unwrap()[0]
                        .content
                        .as_deref()
                        .unwrap()
                        .contains("rm -rf")
                );
                assert!(matches!(verdict, Integrity::InLog { .. }), "{verdict:?}");
            }
            _ => {
                assert!(page.is_err());
                assert!(
                    matches!(&verdict, Integrity::Failed { reason, .. } if reason.contains("not the one whose leaf hash is proven")),
                    "{verdict:?}"
                );
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// `replay --server --checkpoint`: a checkpoint kept from an earlier run
/// must be extended by what the server shows. The genuine one is; one of
/// another history (a tree of the same size with another root, signed with
/// the real log key, as a key holder showing a fork would) fails the badge.
fn a_checkpoint_kept_from_before_must_be_extended(
    srv: &Server,
    data: &std::path::Path,
    reader: &str,
    vk: &str,
) {
    use base64::Engine;
    use tracevault_replay::{Integrity, Source};
    use tracevault_vault::note;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, genuine) = rt.block_on(get(
        &client(),
        &format!("{}/v1/logs/prod/checkpoint", srv.url),
        Some(reader),
    ));
    assert_eq!(s, 200, "{genuine}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let seed: [u8; 32] = b64
        .decode(
            std::fs::read_to_string(data.join("keys/log.key"))
                .unwrap()
                .trim(),
        )
        .unwrap()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let origin = genuine.lines().next().unwrap().to_string();
    let size: u64 = genuine.lines().nth(1).unwrap().parse().unwrap();
    let fork = note::sign_checkpoint(
        &note::Checkpoint {
            origin: origin.clone(),
            size,
            root: [7; 32],
        },
        &origin,
        &key,
    );
    for (pinned, forked) in [(genuine, false), (fork, true)] {
        let mut src = ServerSource::open(
            &srv.url,
            reader,
            "s1",
            Some("prod"),
            Some(vk.to_string()),
            None,
        )
        .unwrap()
        .since(Some(pinned));
        src.page(0, 5).unwrap();
        let verdict = settled(&mut src);
        if forked {
            assert!(
                matches!(&verdict, Integrity::Failed { reason, .. } if reason.contains("fork")),
                "{verdict:?}"
            );
        } else {
            assert!(matches!(verdict, Integrity::InLog { .. }), "{verdict:?}");
        }
    }
}

/// The source's verdict once the proof checker has reached one (10 s at most).
fn settled(src: &mut ServerSource) -> tracevault_replay::Integrity {
    use tracevault_replay::{Integrity, Source};
    let mut verdict = src.integrity();
    for _ in 0..200 {
        if !matches!(verdict, Integrity::Checking) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        verdict = src.integrity();
    }
    verdict
}
