//! `tracevault witness serve` over real HTTP, fed the checkpoints and
//! consistency proofs of a real vault: it cosigns consistent growth
//! (cosignatures checked with the witness key and, independently, with
//! Python's `cryptography`), tells a stale client where to resume, refuses
//! forks, other keys and unknown logs with the statuses C2SP `tlog-witness`
//! prescribes, serialises racing submissions, and keeps its state across a
//! kill -9.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use serde_json::{Value, json};
use tracevault_replay::Integrity;
use tracevault_replay::sources;
use tracevault_vault::cosignature::{Cosigner, WitnessPolicy};
use tracevault_vault::note::{self, Checkpoint};
use tracevault_vault::witness::request_body;

async fn post(c: &reqwest::Client, url: &str, body: String) -> (u16, String, String) {
    let r = c
        .post(format!("{url}/witness/add-checkpoint"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

/// Appends `n` events and returns the checkpoint note that covers them.
async fn grow(c: &reqwest::Client, url: &str, w: &str, n: usize) -> String {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"session_id": "s", "kind": "output", "content": format!("line {i}")}))
        .collect();
    let (s, _) = post_events(
        c,
        url,
        "n",
        w,
        json!({ "events": events }),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200);
    let (s, text) = get(c, &format!("{url}/v1/logs/n/checkpoint"), Some(w)).await;
    assert_eq!(s, 200);
    text
}

async fn proof(c: &reqwest::Client, url: &str, w: &str, from: u64, to: u64) -> Vec<[u8; 32]> {
    let (s, body) = get(
        c,
        &format!("{url}/v1/logs/n/proof/consistency?from={from}&to={to}"),
        Some(w),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect()
}

/// Checks a `cosignature/v1` line with code that is not ours (Python's
/// `cryptography`), returning its timestamp.
fn python_cosignature_time(vkey: &str, line: &str, body: &str) -> u64 {
    let script = r#"
import base64, hashlib, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
vkey, line, body = sys.argv[1], sys.argv[2], sys.argv[3]
name, kid, k = vkey.split("+", 2)
raw = base64.b64decode(k)
assert raw[0] == 4, "type"
assert hashlib.sha256(name.encode() + b"\n\x04" + raw[1:]).digest()[:4].hex() == kid
dash, lname, sig = line.strip().split(" ")
assert dash == "\u2014" and lname == name
sig = base64.b64decode(sig)
assert sig[:4].hex() == kid
ts = int.from_bytes(sig[4:12], "big")
msg = ("cosignature/v1\ntime %d\n" % ts).encode() + body.encode()
Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[12:], msg)
print(ts)
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script, vkey, line, body])
        .output();
    String::from_utf8_lossy(&stdout_of("the cosignature check", out))
        .trim()
        .parse()
        .unwrap()
}

fn size_of(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

fn body_of(note: &str) -> String {
    note.split("\n\n").next().unwrap().to_string() + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_cosigns_consistent_growth_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vault");
    let srv = Server::start(&data, &[]);
    let c = client();
    let w = token(&data, "writer", "n", "w");
    let cp10 = grow(&c, &srv.url, &w, 10).await;
    let origin = cp10.lines().next().unwrap().to_string();
    let log_key: [u8; 32] = B64.decode(srv.public_key()).unwrap().try_into().unwrap();
    let vkey = note::verifier_key(&origin, &log_key);

    let wdir = dir.path().join("witness");
    let wit = Server::start_witness(&wdir, "witness.test/w1", &[&vkey]);
    let printed = wit
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("witness key: "))
        .unwrap()
        .to_string();
    let cosigner = Cosigner::parse(&printed).unwrap();
    // `witness key` prints the same key (the directory is locked while
    // serving, so this checks the name and key files through a copy).
    let copy = dir.path().join("witness-copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["witness.key", "name"] {
        std::fs::copy(wdir.join(f), copy.join(f)).unwrap();
    }
    let out = std::process::Command::new(BIN)
        .args(["witness", "key", "--data", copy.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), printed);

    // First contact, then growth with the vault's own consistency proof.
    let (s, ctype, line) = post(&c, &wit.url, request_body(0, &[], &cp10)).await;
    assert_eq!(
        (s, ctype.as_str()),
        (200, "text/plain; charset=utf-8"),
        "{line}"
    );
    let ts = cosigner.verify(&line, &body_of(&cp10)).unwrap().unwrap();
    let cp15 = grow(&c, &srv.url, &w, 5).await;
    let (s, ctype, text) = post(&c, &wit.url, request_body(0, &[], &cp15)).await;
    assert_eq!(
        (s, ctype.as_str(), text.as_str()),
        (409, "text/x.tlog.size", "10\n")
    );
    let p = proof(&c, &srv.url, &w, 10, size_of(&cp15)).await;
    let (s, _, line15) = post(&c, &wit.url, request_body(10, &p, &cp15)).await;
    assert_eq!(s, 200, "{line15}");
    assert!(cosigner.verify(&line15, &body_of(&cp15)).unwrap().is_some());
    let cosigned15 = dir.path().join("cp15.cosigned");
    std::fs::write(&cosigned15, format!("{cp15}{line15}")).unwrap();
    let plain15 = dir.path().join("cp15");
    std::fs::write(&plain15, &cp15).unwrap();

    // An independent check of the cosignature line (C2SP tlog-cosignature).
    assert_eq!(
        python_cosignature_time(&printed, &line, &body_of(&cp10)),
        ts
    );

    // Two submissions racing from the same old size: one wins, the other
    // is told the new size (never both cosigned, never a rollback).
    let cp20 = grow(&c, &srv.url, &w, 5).await;
    let cp25 = grow(&c, &srv.url, &w, 5).await;
    let (b20, b25) = (
        request_body(15, &proof(&c, &srv.url, &w, 15, 20).await, &cp20),
        request_body(15, &proof(&c, &srv.url, &w, 15, 25).await, &cp25),
    );
    let (r20, r25) = tokio::join!(post(&c, &wit.url, b20), post(&c, &wit.url, b25));
    let mut statuses = [r20.0, r25.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{r20:?} {r25:?}");

    // A history that forks the cosigned one, signed with the real log key
    // (what a key holder rewriting the log would send): refused, 422.
    let won = if r20.0 == 200 { 20 } else { 25 };
    let log_sk = {
        let seed = std::fs::read_to_string(data.join("keys/log.key")).unwrap();
        let seed: [u8; 32] = B64.decode(seed.trim()).unwrap().try_into().unwrap();
        ed25519_dalek::SigningKey::from_bytes(&seed)
    };
    let forged = |size: u64, root: [u8; 32], key: &ed25519_dalek::SigningKey| {
        note::sign_checkpoint(
            &Checkpoint {
                origin: origin.clone(),
                size,
                root,
            },
            &origin,
            key,
        )
    };
    let fork = forged(30, [7; 32], &log_sk);
    let (s, _, text) = post(&c, &wit.url, request_body(won, &[], &fork)).await;
    assert_eq!(s, 422, "{text}");
    assert!(text.contains("inconsistent_checkpoint"), "{text}");
    // The same size with another root: 409, a fork.
    let (s, ctype, _) = post(
        &c,
        &wit.url,
        request_body(won, &[], &forged(won, [8; 32], &log_sk)),
    )
    .await;
    assert_eq!((s, ctype.as_str()), (409, "text/x.tlog.size"));
    // Another key, an unknown log, garbage, an oversized body.
    let other = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let (s, _, text) = post(
        &c,
        &wit.url,
        request_body(won, &[], &forged(won, [0; 32], &other)),
    )
    .await;
    assert_eq!(s, 403, "{text}");
    let stranger = note::sign_checkpoint(
        &Checkpoint {
            origin: "elsewhere.example/log".into(),
            size: 1,
            root: [0; 32],
        },
        "elsewhere.example/log",
        &other,
    );
    assert_eq!(
        post(&c, &wit.url, request_body(0, &[], &stranger)).await.0,
        404
    );
    let (s, _, text) = post(&c, &wit.url, "old 1\nnot base64!\n\n".into()).await;
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("bad_witness_request"), "{text}");
    assert_eq!(post(&c, &wit.url, "x".repeat(100_000)).await.0, 413);

    // kill -9 and restart: the state survived; a client starting over is
    // told where to resume, and the fork is still refused.
    wit.kill9();
    let wit = Server::start_witness(&wdir, "witness.test/w1", &[&vkey]);
    let (s, _, text) = post(&c, &wit.url, request_body(0, &[], &cp10)).await;
    assert_eq!((s, text), (409, format!("{won}\n")));
    assert_eq!(
        post(&c, &wit.url, request_body(won, &[], &fork)).await.0,
        422
    );
    assert_eq!(wit.terminate(), Some(0));
    assert_eq!(srv.terminate(), Some(0));

    // verify follows a witness policy on the checkpoint it is given.
    let d = data.to_str().unwrap();
    let stranger_w = Cosigner::of("witness.test/w2", &other).verifier_key();
    let run = |cp: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["--data", d, "--checkpoint", cp.to_str().unwrap()];
        args.extend_from_slice(extra);
        verify(&args)
    };
    let (code, out, err) = run(&cosigned15, &["--witness", &printed]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&plain15, &["--witness", &printed]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("valid cosignatures of 0 of the 1 witnesses given, 1 required"),
        "{out}"
    );
    let both = ["--witness", &printed, "--witness", &stranger_w];
    let (code, out, _) = run(&cosigned15, &both);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("1 of the 2 witnesses given, 2 required"),
        "{out}"
    );
    let (code, out, err) = run(
        &cosigned15,
        &[&both[..], &["--witness-threshold", "1"]].concat(),
    );
    assert_eq!(code, 0, "{out}{err}");
    // A cosignature moved onto another checkpoint does not count.
    std::fs::write(&cosigned15, format!("{cp10}{line15}")).unwrap();
    let (code, out, _) = run(&cosigned15, &["--witness", &printed]);
    assert_eq!(code, 1, "{out}");
}

/// Polls the served checkpoint until it covers `size` (cosigned), or fails.
async fn served_at_least(c: &reqwest::Client, url: &str, w: &str, size: u64) -> String {
    for _ in 0..200 {
        let (s, text) = get(c, &format!("{url}/v1/logs/n/checkpoint"), Some(w)).await;
        if s == 200 && size_of(&text) >= size {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no cosigned checkpoint of size {size} was served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_serves_checkpoints_its_witness_cosigned() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vault");
    // A first start makes the vault's keys and origin.
    let srv = Server::start(&data, &[]);
    let origin = srv
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("vault origin: "))
        .unwrap()
        .to_string();
    let log_key: [u8; 32] = B64.decode(srv.public_key()).unwrap().try_into().unwrap();
    assert_eq!(srv.terminate(), Some(0));
    let vkey = note::verifier_key(&format!("{origin}/n"), &log_key);
    // The witness trusts namespace n and `_audit` (bundles prove their
    // approval history in `_audit`, against a cosigned checkpoint).
    let audit_vkey = note::verifier_key(&format!("{origin}/_audit"), &log_key);
    let wdir = dir.path().join("witness");
    let wit = Server::start_witness(&wdir, "witness.test/w1", &[&vkey, &audit_vkey]);
    let wkey = wit
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("witness key: "))
        .unwrap()
        .to_string();
    let cosigner = Cosigner::parse(&wkey).unwrap();
    let wurl = wit.url.clone();
    let cfg = config(
        dir.path(),
        &format!(
            "[log]\nflush_interval_ms = 50\n[limits]\ncheckpoint_wait_ms = 2000\n[witnesses]\nthreshold = 1\n[[witnesses.witness]]\nurl = \"{wurl}/witness\"\nkey = \"{wkey}\"\n"
        ),
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let srv = Server::start(&data, &["--config", &cfg]);
    let c = client();
    let w = token(&data, "writer", "n", "w");
    // Nothing cosigned yet: no checkpoint is served as current.
    let events = |n: usize| json!({"events": (0..n).map(|i| json!({"session_id": "s", "kind": "output", "content": format!("{i}")})).collect::<Vec<_>>()});
    let (s, r) = post_events(&c, &srv.url, "n", &w, events(10), "?wait=checkpoint").await;
    assert_eq!(s, 200, "{r}");
    // The receipt's proofs carry the cosigned checkpoint.
    let proof0 = r["proofs"][0].as_str().unwrap();
    assert!(proof0.contains("\u{2014} witness.test/w1 "), "{proof0}");
    let cp = served_at_least(&c, &srv.url, &w, 10).await;
    let wline = cp.lines().last().unwrap();
    assert!(
        cosigner.verify(wline, &body_of(&cp)).unwrap().is_some(),
        "{cp}"
    );
    python_cosignature_time(&wkey, wline, &body_of(&cp));
    // Growth: the next one is cosigned through a consistency proof.
    post_events(&c, &srv.url, "n", &w, events(5), "?wait=checkpoint").await;
    let cp15 = served_at_least(&c, &srv.url, &w, 15).await;
    // The witness down: appends are still acknowledged at once, and the
    // served checkpoint stays the last cosigned one.
    wit.kill9();
    let t = std::time::Instant::now();
    let (s, _) = post_events(&c, &srv.url, "n", &w, events(5), "").await;
    assert_eq!(s, 200);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // Waiting for a checkpoint then ends in a clear 503 (the events are durable).
    let (s, r) = post_events(&c, &srv.url, "n", &w, events(1), "?wait=checkpoint").await;
    assert_eq!(s, 503, "{r}");
    assert_eq!(r["error"]["code"], "checkpoint_timeout");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, now) = get(&c, &format!("{}/v1/logs/n/checkpoint", srv.url), Some(&w)).await;
    assert_eq!(now, cp15);
    // The lag is a metric.
    let (_, metrics) = get(&c, &format!("{}/metrics", srv.url), None).await;
    assert!(
        metrics.contains("tracevault_witness_lag_entries{ns=\"n\"} 6"),
        "{metrics}"
    );
    // Back up: it catches up.
    let addr = wurl.trim_start_matches("http://");
    let wit = Server::start_witness_at(&wdir, "witness.test/w1", &[&vkey, &audit_vkey], addr);
    served_at_least(&c, &srv.url, &w, 21).await;
    let (_, info) = get(&c, &format!("{}/v1/vault", srv.url), Some(&w)).await;
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["witness_policy"]["witnesses"][0], wkey.as_str());
    // A restarted vault does not know the witness's size: it learns it from
    // the 409 and proves consistency from there.
    assert_eq!(srv.terminate(), Some(0));
    let srv = Server::start(&data, &["--config", &cfg]);
    post_events(&c, &srv.url, "n", &w, events(5), "?wait=checkpoint").await;
    served_at_least(&c, &srv.url, &w, 26).await;
    // An export bundle carries the cosigned checkpoint; verify-bundle
    // follows a witness policy.
    let alice = token(&data, "reader", "n", "alice");
    let bob = token(&data, "approver", "n", "bob");
    let r = c
        .post(format!("{}/v1/exports", srv.url))
        .bearer_auth(&alice)
        .json(&json!({"namespace": "n", "session_id": "s", "reason": "incident 7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .post(format!("{}/v1/exports/{id}/approve", srv.url))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c
        .get(format!("{}/v1/exports/{id}/bundle", srv.url))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bundle = dir.path().join("export.tar");
    std::fs::write(&bundle, r.bytes().await.unwrap()).unwrap();
    let other = Cosigner::of(
        "witness.test/w2",
        &ed25519_dalek::SigningKey::from_bytes(&[4; 32]),
    );
    let verify_bundle = |extra: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["verify-bundle", bundle.to_str().unwrap(), "--key", &vkey])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = verify_bundle(&["--witness", &wkey]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = verify_bundle(&["--witness", &other.verifier_key()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cosignatures of 0 of the 1"), "{out}");
    // The approval history is held to the policy too: its `_audit`
    // checkpoint must be cosigned (a key holder could otherwise prove
    // invented approvals in a private `_audit` tree).
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL audit_checkpoint:") && l.contains("cosignatures of 0")),
        "{out}"
    );
    // replay follows the policy too: from the bundle, and from the server.
    let policy = |vk: &str| WitnessPolicy::from_vkeys(&[vk], None).unwrap();
    let verdict = |mut src: Box<dyn tracevault_replay::Source>| {
        src.page(0, 10).unwrap();
        for _ in 0..200 {
            let v = src.integrity();
            if !matches!(v, Integrity::Checking) {
                return v;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        src.integrity()
    };
    let (b_ok, b_bad) = {
        let (bundle, vkey) = (bundle.clone(), vkey.clone());
        let (good, bad) = (policy(&wkey), policy(&other.verifier_key()));
        tokio::task::spawn_blocking(move || {
            let open = |p| {
                Box::new(sources::bundle::open(&bundle, None, Some(vkey.clone()), Some(p)).unwrap())
            };
            (verdict(open(good)), verdict(open(bad)))
        })
        .await
        .unwrap()
    };
    assert!(matches!(b_ok, Integrity::Verified { .. }), "{b_ok:?}");
    assert!(
        matches!(&b_bad, Integrity::Failed { reason, .. } if reason.contains("cosignatures")),
        "{b_bad:?}"
    );
    let (s_ok, s_bad) = {
        let (url, tok, vkey) = (srv.url.clone(), alice.clone(), vkey.clone());
        let (good, bad) = (policy(&wkey), policy(&other.verifier_key()));
        tokio::task::spawn_blocking(move || {
            let open = |p| {
                Box::new(
                    sources::server::ServerSource::open(
                        &url,
                        &tok,
                        "s",
                        Some("n"),
                        Some(vkey.clone()),
                        Some(p),
                    )
                    .unwrap(),
                )
            };
            (verdict(open(good)), verdict(open(bad)))
        })
        .await
        .unwrap()
    };
    assert!(matches!(s_ok, Integrity::InLog { .. }), "{s_ok:?}");
    assert!(
        matches!(&s_bad, Integrity::Failed { reason, .. } if reason.contains("cosignatures")),
        "{s_bad:?}"
    );
    assert_eq!(srv.terminate(), Some(0));
    assert_eq!(wit.terminate(), Some(0));
    // verify follows the policy on the stored cosigned checkpoint.
    let d = data.to_str().unwrap();
    let (code, out, err) = verify(&["--data", d, "--namespace", "n", "--witness", &wkey]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = verify(&["--data", d, "--witness", &wkey]);
    assert_eq!(code, 0, "n and _audit are both witnessed: {out}{err}");
    let other = other.verifier_key();
    let (code, out, _) = verify(&["--data", d, "--namespace", "n", "--witness", &other]);
    assert_eq!(code, 1, "{out}");
    // The key holder puts back an older cosigned copy (size 15): the entries
    // past it are signed by the log key alone. verify says so, and with
    // --require-witnessed it fails.
    let cosigned = data.join("store/ns/n/checkpoint.cosigned");
    let genuine = std::fs::read(&cosigned).unwrap();
    std::fs::write(&cosigned, &cp15).unwrap();
    let (code, out, err) = verify(&["--data", d, "--namespace", "n", "--witness", &wkey]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("witnessed up to size 15 of"), "{err}");
    let (code, out, _) = verify(&[
        "--data",
        d,
        "--namespace",
        "n",
        "--witness",
        &wkey,
        "--require-witnessed",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("witnessed up to size 15 of"), "{out}");
    // Also with the auditor's own pin at 15: the warning is not lost.
    let pin = dir.path().join("pin15");
    std::fs::write(&pin, &cp15).unwrap();
    let (code, out, err) = verify(&[
        "--data",
        d,
        "--namespace",
        "n",
        "--witness",
        &wkey,
        "--checkpoint",
        pin.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("witnessed up to size 15 of"), "{err}");
    std::fs::write(&cosigned, genuine).unwrap();
    let (code, out, _) = verify(&[
        "--data",
        d,
        "--namespace",
        "n",
        "--witness",
        &wkey,
        "--require-witnessed",
    ]);
    assert_eq!(code, 0, "{out}");

    // The key holder rewrites history: same keys, same vault, other
    // entries, every checkpoint signed with the real log key. The witness
    // refuses to cosign it, so no checkpoint of it passes verify --witness.
    let forged = dir.path().join("rewritten");
    std::fs::create_dir_all(forged.join("keys")).unwrap();
    for k in std::fs::read_dir(data.join("keys")).unwrap() {
        let k = k.unwrap();
        std::fs::copy(k.path(), forged.join("keys").join(k.file_name())).unwrap();
    }
    std::fs::create_dir_all(forged.join("store")).unwrap();
    std::fs::copy(
        data.join("store/vault.json"),
        forged.join("store/vault.json"),
    )
    .unwrap();
    let wit = Server::start_witness_at(&wdir, "witness.test/w1", &[&vkey, &audit_vkey], addr);
    let srv = Server::start(&forged, &["--config", &cfg]);
    let fw = token(&forged, "writer", "n", "mallory");
    let (s, _) = post_events(&c, &srv.url, "n", &fw, events(30), "").await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (s, body) = get(&c, &format!("{}/v1/logs/n/checkpoint", srv.url), Some(&fw)).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("checkpoint_not_witnessed"), "{body}");
    assert_eq!(srv.terminate(), Some(0));
    assert_eq!(wit.terminate(), Some(0));
    let fd = forged.to_str().unwrap();
    let witnessed = [
        "--namespace",
        "n",
        "--witness",
        wkey.as_str(),
        "--witness-threshold",
        "1",
    ];
    let (code, out, _) = verify(&[&["--data", fd][..], &witnessed[..]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cosignatures of 0"), "{out}");
    // Nor with the genuine cosigned checkpoint copied in: it is not this data's.
    std::fs::copy(
        data.join("store/ns/n/checkpoint.cosigned"),
        forged.join("store/ns/n/checkpoint.cosigned"),
    )
    .unwrap();
    let (code, out, _) = verify(&[&["--data", fd][..], &witnessed[..]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("checkpoint.cosigned") && out.contains("does not match"),
        "{out}"
    );
}

/// k of n: a witness that accepts connections and never answers does not
/// hold up the cosignature of the others (nor the receipts waiting on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_witness_does_not_hold_up_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vault");
    let srv = Server::start(&data, &[]);
    let origin = srv
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("vault origin: "))
        .unwrap()
        .to_string();
    let log_key: [u8; 32] = B64.decode(srv.public_key()).unwrap().try_into().unwrap();
    assert_eq!(srv.terminate(), Some(0));
    let vkey = note::verifier_key(&format!("{origin}/n"), &log_key);
    let wit = Server::start_witness(&dir.path().join("w"), "witness.test/w1", &[&vkey]);
    let wkey = wit
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("witness key: "))
        .unwrap()
        .to_string();
    // The staller: takes connections, reads nothing, answers nothing.
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stall_url = format!("http://{}/witness", stall.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = stall.accept().await {
            held.push(sock);
        }
    });
    let stall_key = Cosigner::of(
        "witness.test/stall",
        &ed25519_dalek::SigningKey::from_bytes(&[6; 32]),
    )
    .verifier_key();
    let cfg = config(
        dir.path(),
        &format!(
            "[log]\nflush_interval_ms = 50\n[limits]\ncheckpoint_wait_ms = 2500\n[witnesses]\nthreshold = 1\n[[witnesses.witness]]\nurl = \"{stall_url}\"\nkey = \"{stall_key}\"\n[[witnesses.witness]]\nurl = \"{}/witness\"\nkey = \"{wkey}\"\n",
            wit.url
        ),
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "n", "w");
    for round in 0..3 {
        let events = json!({"events": [{"session_id": "s", "kind": "output", "content": format!("{round}")}]});
        let (s, r) = post_events(&c, &srv.url, "n", &w, events, "?wait=checkpoint").await;
        assert_eq!(s, 200, "round {round}: {r}");
        let proof = r["proofs"][0].as_str().unwrap();
        assert!(proof.contains("\u{2014} witness.test/w1 "), "{proof}");
    }
    assert_eq!(srv.terminate(), Some(0));
    assert_eq!(wit.terminate(), Some(0));
}
