//! `tracevault verify-bundle`: exit 0 for an intact bundle, 1 with one FAIL
//! line per finding for a tampered one, 2 when the file is not a bundle.

mod common;

use std::process::Command;
use std::time::Duration;

use common::BIN;
use serde_json::json;
use tracevault_query::export::workflow::{Actor, Transition};
use tracevault_query::export::{BundleInput, BundleRow, history_for, write_bundle};
use tracevault_query::masking::{Masker, Policy};
use tracevault_vault::{LogConfig, Vault, VaultOptions, keys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_offline_and_names_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let vault = Vault::open(VaultOptions {
        data_dir: data.clone(),
        store: None,
        origin: None,
        log: LogConfig {
            flush_interval_ms: 20,
            ..LogConfig::default()
        },
    })
    .await
    .unwrap();
    let events = (0..5)
        .map(|i| {
            tracevault_schemas::Event::from_value(
                json!({"session_id": "s", "kind": "prompt", "content": format!("p{i} to a@example.com")}),
            )
            .unwrap()
        })
        .collect();
    vault.append("n", events, "agent").await.unwrap();
    let log = vault.log("n").await.unwrap();
    assert!(
        log.wait_published(5, Duration::from_secs(10))
            .await
            .is_some()
    );
    let view = vault.view("n").await.unwrap().unwrap();
    let (size, checkpoint) = view.latest_checkpoint().unwrap();
    let mut rows = Vec::new();
    for e in vault.scan_entries("n", |_| true, usize::MAX).await.unwrap() {
        rows.push(BundleRow {
            proof: view.inclusion_proof(e.idx, size).await.unwrap().1,
            entry: e,
        });
    }
    let digest = tracevault_query::export::selection_digest(
        rows.iter().map(|r| (r.entry.idx, r.entry.leaf_hash)),
    );
    let (key, _) = keys::load_or_create(&data.join("keys/log.key")).unwrap();
    let policy = Policy::default_policy();
    let masker = Masker::new(
        policy.profile_for("reader", &serde_json::Map::new()),
        &[7; 32],
    );
    // The request's history in `_audit`, as the server records it.
    let by = |sub: &str| Actor {
        iss: "tv".into(),
        sub: sub.into(),
        person: None,
    };
    let approved = Transition::Approved {
        id: "export-e1".into(),
        by: by("boss"),
        comment: "ok".into(),
        at: 2,
    };
    let requested = json!({"step": "requested", "id": "export-e1", "by": by("auditor")});
    let steps = [
        ("export_requested", "auditor", requested),
        (
            "export_approved",
            "boss",
            serde_json::to_value(&approved).unwrap(),
        ),
    ]
    .map(|(name, actor, step)| {
        tracevault_schemas::Event::from_value(json!({"session_id": "exports",
            "kind": "annotation", "name": name, "actor": actor, "content": step}))
        .unwrap()
    });
    vault
        .append_system("_audit", steps.to_vec(), "tracevault")
        .await
        .unwrap();
    let (approvals, audit_checkpoint) =
        history_for(&vault, "export-e1", &|v| v, Duration::from_secs(10))
            .await
            .unwrap();
    let input = BundleInput {
        export_id: "export-e1".into(),
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
    let bundle = write_bundle(&input, &masker, &key).unwrap();
    let file = dir.path().join("e1.tar");
    std::fs::write(&file, &bundle).unwrap();
    let vk = vault.verifier_key("n");
    let run = |path: &std::path::Path| {
        Command::new(BIN)
            .args(["verify-bundle", path.to_str().unwrap(), "--key", &vk])
            .output()
            .unwrap()
    };
    let out = run(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("5 rows") && err.contains("content ×5"),
        "{err}"
    );

    // Go's sumdb/note and sumdb/tlog accept both checkpoints and every
    // inclusion proof in the bundle (the rows' and the history's)...
    let tlogcheck = common::go_tlogcheck(dir.path());
    let go = Command::new(&tlogcheck)
        .arg(&file)
        .arg(&vk)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&go.stdout);
    assert!(
        go.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&go.stderr)
    );
    let said: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(said["checked"], 5, "{said}");
    assert_eq!(said["history"], 2, "{said}");
    assert_eq!(said["size"], size, "{said}");
    assert_eq!(said["origin"], vk.split('+').next().unwrap(), "{said}");
    // ...and refuse one whose proof has one hash changed (same length, so
    // the tar stays readable), or whose checkpoint is checked with another
    // namespace's key.
    let mut bent = bundle.clone();
    let at = bent
        .windows(10)
        .position(|w| w == b"\"proof\":[\"")
        .expect("a proof in proofs.jsonl")
        + 10;
    bent[at] = if bent[at] == b'A' { b'B' } else { b'A' };
    let bent_file = dir.path().join("bent.tar");
    std::fs::write(&bent_file, &bent).unwrap();
    let go = Command::new(&tlogcheck)
        .arg(&bent_file)
        .arg(&vk)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&go.stderr);
    assert_eq!(go.status.code(), Some(1), "{err}");
    assert!(err.contains("inclusion proof"), "{err}");
    let go = Command::new(&tlogcheck)
        .arg(&file)
        .arg(vault.verifier_key("other"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&go.stderr);
    assert_eq!(go.status.code(), Some(1), "{err}");
    assert!(err.contains("checkpoint signature"), "{err}");
    // tracevault's own check names the same proof.
    let out = run(&bent_file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");

    // One byte of the Parquet member changed (the rows sit after the first
    // three members; flip a byte inside the file's second half).
    let mut bad = bundle.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x20;
    let tampered = dir.path().join("bad.tar");
    std::fs::write(&tampered, &bad).unwrap();
    let out = run(&tampered);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().all(|l| l.starts_with("FAIL ")) && !text.is_empty(),
        "{text}"
    );

    // The bundle's own strings are the adversary's: an export id carrying
    // escape sequences (cursor up, erase line) would wipe the FAIL lines
    // off the screen. They are printed as escapes, never as raw bytes.
    let text = String::from_utf8_lossy(&bundle).into_owned();
    let id_at = text.find("\"export_id\":\"").unwrap() + "\"export_id\":\"".len();
    let mut evil = bundle.clone();
    // Same length: `\u001b` is six bytes of JSON text standing for ESC.
    evil[id_at..id_at + 6].copy_from_slice(b"\\u001b");
    let escaped = dir.path().join("escape.tar");
    std::fs::write(&escaped, &evil).unwrap();
    let out = run(&escaped);
    assert_eq!(out.status.code(), Some(1));
    let all = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    assert!(!all.contains(&0x1b), "{}", String::from_utf8_lossy(&all));
    assert!(
        String::from_utf8_lossy(&all).contains("\\u{1b}"),
        "{}",
        String::from_utf8_lossy(&all)
    );

    // Not a bundle at all.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar file").unwrap();
    assert_eq!(run(&junk).status.code(), Some(2));
}
