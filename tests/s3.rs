//! The S3 path against a real S3-compatible server (moto, started here on
//! loopback): conditional writes with exactly one winner, lease takeover and
//! position claims, and a full server run on `--store s3://...` verified by
//! `tracevault verify --store`.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::moto::Moto;
use common::*;
use object_store::path::Path;
use serde_json::json;
use tracevault_vault::lease::{Lease, LeaseError};
use tracevault_vault::store::StoreError;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_writes_have_exactly_one_winner() {
    let moto = Moto::start("race").await;
    let store = moto.store("s3://race/p");
    let path = Path::from("ns/x/checkpoints/00000000000000000001");
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let (s, p) = (store.clone(), path.clone());
            tokio::spawn(async move { s.put_create(&p, Bytes::from(format!("writer {i}"))).await })
        })
        .collect();
    let mut wins = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one create-only writer wins");
    let winner = store.get(&path).await.unwrap().unwrap();
    assert!(winner.starts_with(b"writer "));

    let v = store.get_versioned(&path).await.unwrap().unwrap();
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let (s, p, ver) = (store.clone(), path.clone(), v.version.clone());
            tokio::spawn(async move {
                s.put_update(&p, Bytes::from(format!("update {i}")), ver)
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::Precondition(_)) | Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one conditional update wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_hand_over_once_and_claims_fence_the_loser() {
    let moto = Moto::start("lease").await;
    let store = moto.store("s3://lease/p");
    let a = Lease::acquire(&store, "alpha", "A", 300).await.unwrap();
    assert!(matches!(
        Lease::acquire(&store, "alpha", "B", 300).await,
        Err(LeaseError::Fenced { .. })
    ));
    a.claim(0, 9).await.unwrap();
    // A stops renewing (a paused process); after the TTL, B takes over with a
    // conditional update, and only one of several contenders can.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let contenders: Vec<_> = ["B", "C", "D", "E"]
        .into_iter()
        .map(|o| {
            let s = store.clone();
            tokio::spawn(
                async move { Lease::acquire(&s, "alpha", o, 60_000).await.map(|l| (o, l)) },
            )
        })
        .collect();
    let mut winners = Vec::new();
    for c in contenders {
        if let Ok(w) = c.await.unwrap() {
            winners.push(w);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one contender takes an expired lease"
    );
    let (_, b) = winners.pop().unwrap();
    // The old holder is fenced on renewal, and on the next position it tries to claim.
    assert!(matches!(a.renew().await, Err(LeaseError::Fenced { .. })));
    b.claim(10, 19).await.unwrap();
    assert!(matches!(
        a.claim(10, 12).await,
        Err(LeaseError::Fenced { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_on_s3_appends_fences_and_verifies() {
    let moto = Moto::start("vault").await;
    let env_owned = moto.env();
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let cfg = config(dir.path(), "[log]\nflush_interval_ms = 100\n");
    let url = "s3://vault/tenant-1";
    let args = ["--store", url, "--config", cfg.to_str().unwrap()];
    let a = Server::try_start_env(&a_dir, &args, &env).unwrap();
    let c = client();
    let wa = token(&a_dir, "writer", "alpha", "a");
    let batch = json!({"events": (0..50).map(|i| json!({"session_id": "s3", "kind": "output", "content": format!("line {i}")})).collect::<Vec<_>>()});
    for _ in 0..3 {
        let (s, r) = post_events(&c, &a.url, "alpha", &wa, batch.clone(), "?wait=checkpoint").await;
        assert_eq!(s, 200, "{r}");
    }
    // An erasure on S3: the subject's session is rewritten out of the bucket.
    let secret = json!({"events": (0..5).map(|i| json!({"session_id": "subject", "kind": "output", "content": format!("S3-SECRET-{i}")})).collect::<Vec<_>>()});
    let (s, r) = post_events(&c, &a.url, "alpha", &wa, secret, "?wait=checkpoint").await;
    assert_eq!(s, 200, "{r}");
    let admin = token(&a_dir, "admin", "alpha", "ann");
    let bob = token(&a_dir, "approver", "alpha", "bob");
    let order = json!({"namespace": "alpha", "session_id": "subject", "reason": "DSR 9"});
    let (s, b) = post_json(&c, &format!("{}/v1/erasures", a.url), &admin, order).await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let approve = format!("{}/v1/erasures/{id}/approve", a.url);
    let (s, b) = post_json(&c, &approve, &bob, json!({})).await;
    assert_eq!(s, 200, "{b}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, b) = get(&c, &format!("{}/v1/erasures/{id}", a.url), Some(&admin)).await;
        assert_eq!(s, 200, "{b}");
        if b.contains("\"state\":\"performed\"") {
            break;
        }
        assert!(Instant::now() < deadline, "not performed: {b}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let bucket = moto.store(url);
    let names = bucket
        .list_names(&Path::from("ns/alpha/segments"))
        .await
        .unwrap();
    assert!(names.iter().any(|n| n.contains("-e0001")), "{names:?}");
    for n in &names {
        let bytes = bucket
            .get(&Path::from(format!("ns/alpha/segments/{n}")))
            .await
            .unwrap()
            .unwrap();
        assert!(!bytes.windows(9).any(|w| w == b"S3-SECRET"), "{n}");
    }

    // A second server on the same bucket (same log key) is fenced for alpha.
    std::fs::create_dir_all(b_dir.join("keys")).unwrap();
    std::fs::copy(a_dir.join("keys/log.key"), b_dir.join("keys/log.key")).unwrap();
    let b = Server::try_start_env(&b_dir, &args, &env).unwrap();
    let wb = token(&b_dir, "writer", "alpha", "b");
    let (s, r) = post_events(&c, &b.url, "alpha", &wb, batch.clone(), "").await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(a.terminate(), Some(0));
    drop(b);

    let key = std::fs::read_to_string(a_dir.join("keys/log.key")).unwrap();
    let seed: [u8; 32] = base64_decode(key.trim()).try_into().unwrap();
    let pk = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    use base64::Engine;
    let pk_b64 = base64::engine::general_purpose::STANDARD.encode(pk.to_bytes());
    let (code, out, err) = verify_env(&["--store", url, "--key", &pk_b64], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 findings"), "{out}");

    // Drop a segment object in the bucket: verify names it and exits 1.
    let store = moto.store(url);
    let names = store
        .list_names(&Path::from("ns/alpha/segments"))
        .await
        .unwrap();
    assert!(names.len() >= 2);
    store
        .delete(&Path::from(format!("ns/alpha/segments/{}", names[0])))
        .await
        .unwrap();
    let (code, out, _) = verify_env(&["--store", url, "--key", &pk_b64], &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL ns=alpha") && out.contains("missing"),
        "{out}"
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// A TCP proxy in front of moto that can cut the network: while down, every
/// open connection is dropped and new ones are closed at once, as when the
/// object store becomes unreachable.
struct Proxy {
    endpoint: String,
    up: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let target = target.trim_start_matches("http://").to_string();
        let up = std::sync::Arc::new(tokio::sync::watch::channel(true).0);
        let up2 = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*up2.borrow() {
                    continue; // dropped: connection closed
                }
                let target = target.clone();
                let mut down = up2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { endpoint, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_sheds_with_503_and_loses_no_acknowledged_event() {
    let moto = Moto::start("outage").await;
    let proxy = Proxy::start(&moto.endpoint).await;
    let mut env_owned = moto.env();
    env_owned[0].1 = proxy.endpoint.clone();
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    // A small unpublished bound, so the outage hits it quickly, and a lease
    // TTL long enough that the bound (not the lease) is what sheds first.
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 100\nmax_unpublished_events = 500\nlease_ttl_ms = 60000\n[limits]\nready_timeout_ms = 1000\nmax_events_per_request = 100\nmax_otlp_events_per_request = 100\n",
    );
    let url = "s3://outage/v";
    let srv = Server::try_start_env(
        &data,
        &["--store", url, "--config", cfg.to_str().unwrap()],
        &env,
    )
    .unwrap();
    let c = client();
    let w = token(&data, "writer", "alpha", "w");
    let batch = |round: usize| json!({"events": (0..50).map(|i| json!({"session_id": "o", "kind": "output", "content": format!("r{round} e{i}")})).collect::<Vec<_>>()});
    let mut acked = 0u64;
    let (s, r) = post_events(&c, &srv.url, "alpha", &w, batch(0), "?wait=checkpoint").await;
    assert_eq!(s, 200, "{r}");
    acked += 50;
    assert_eq!(get(&c, &format!("{}/readyz", srv.url), None).await.0, 200);

    proxy.set_up(false);
    let mut shed = None;
    for round in 1..200 {
        let resp = c
            .post(format!("{}/v1/logs/alpha/events", srv.url))
            .bearer_auth(&w)
            .json(&batch(round))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => acked += 50,
            503 => {
                assert!(resp.headers().contains_key("retry-after"));
                let body: serde_json::Value = resp.json().await.unwrap();
                shed = Some(body["error"]["code"].as_str().unwrap().to_string());
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        shed.as_deref(),
        Some("overloaded"),
        "acked {acked} without shedding"
    );
    // The backlog stays within the configured bound (plus one batch).
    assert!(acked <= 50 + 500 + 50, "acked {acked}");
    let (_, m) = get(&c, &format!("{}/metrics", srv.url), None).await;
    let unpublished: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("tracevault_unpublished_entries{ns=\"alpha\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(unpublished <= 550, "{unpublished}");
    // (A probe of the store answers /readyz for a second.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, body) = get(&c, &format!("{}/readyz", srv.url), None).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("store_unreachable"), "{body}");

    // The store comes back: the backlog is published and writes resume.
    proxy.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, r) = post_events(&c, &srv.url, "alpha", &w, batch(1000), "?wait=checkpoint").await;
        if s == 200 {
            acked += 50;
            break;
        }
        assert_eq!(s, 503, "{r}");
        assert!(Instant::now() < deadline, "writes did not resume: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&c, &format!("{}/readyz", srv.url), None).await.0, 200);
    assert_eq!(srv.terminate(), Some(0));
    let (code, out, err) = verify_env(&["--store", url], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("{acked} entries")),
        "acked {acked}: {out}"
    );
}

/// The `jti` claim of a JWT (its payload, unverified).
fn jti_of(jwt: &str) -> String {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["jti"].as_str().unwrap().to_string()
}

/// Two servers on one bucket follow one `_audit`: a token revoked on one is
/// refused by the other, and an export approved on one shows approved on
/// the other, within the follow interval plus a checkpoint interval
/// (`[cluster] follow_audit_ms`), without a restart; the other cannot
/// record a step (the one download happens once, where `_audit` is written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_and_workflow_steps_reach_the_other_node_within_seconds() {
    let moto = Moto::start("vault").await;
    let env_owned = moto.env();
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let url = "s3://vault/shared";
    // Each node advertises its own address; b beats rarely, so that its
    // registration can be tampered with below without being rewritten.
    let start = |data: &std::path::Path, name: &str, heartbeat_ms: u64| {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[log]\nflush_interval_ms = 100\n[cluster]\nfollow_audit_ms = 500\n\
                 advertise = \"http://127.0.0.1:{port}\"\nheartbeat_ms = {heartbeat_ms}\n"
            ),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{port}");
        let args = [
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            &listen,
            "--store",
            url,
            "--config",
            cfg.to_str().unwrap(),
        ];
        Server::spawn(&args, &env, data).unwrap()
    };
    let a = start(&a_dir, "a", 2000);
    // Node b shares the keys (log and token issuer) and the store.
    std::fs::create_dir_all(b_dir.join("keys")).unwrap();
    for k in ["log.key", "issuer.key", "masking.key"] {
        std::fs::copy(a_dir.join("keys").join(k), b_dir.join("keys").join(k)).unwrap();
    }
    let b = start(&b_dir, "b", 600_000);
    let c = client();
    let admin = std::fs::read_to_string(a_dir.join("admin.token")).unwrap();
    let admin = admin.trim();
    // a writes `_audit` first (it holds it from now on).
    let (s, r) = post_json(
        &c,
        &format!("{}/v1/tokens/revoke", a.url),
        admin,
        json!({"jti": "nobody", "reason": "warm-up"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let w = token(&a_dir, "writer", "beta", "agent");
    let one = json!({"events": [{"session_id": "s", "kind": "output", "content": "x"}]});
    let (s, r) = post_events(&c, &b.url, "beta", &w, one.clone(), "").await;
    assert_eq!(s, 200, "b accepts the token: {r}");
    let (s, r) = post_json(
        &c,
        &format!("{}/v1/tokens/revoke", a.url),
        admin,
        json!({"jti": jti_of(&w), "reason": "leaked"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let revoked_at = Instant::now();
    loop {
        let (s, r) = post_events(&c, &b.url, "beta", &w, one.clone(), "").await;
        if s == 401 {
            assert_eq!(r["error"]["code"], "token_revoked", "{r}");
            break;
        }
        assert_eq!(s, 200, "{r}");
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "node b still accepts a token revoked on node a"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("revocation reached node b after {:?}", revoked_at.elapsed());

    // An export requested and approved on node a (which records `_audit`)
    // is shown as approved by node b too, within the same bound.
    let reader = token(&a_dir, "reader", "beta", "auditor");
    let approver = token(&a_dir, "approver", "beta", "bob");
    let req = json!({"namespace": "beta", "session_id": "s", "reason": "incident 7"});
    let (s, r) = post_json(&c, &format!("{}/v1/exports", a.url), &reader, req).await;
    assert_eq!(s, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let approve = format!("{}/v1/exports/{id}/approve", a.url);
    let (s, r) = post_json(&c, &approve, &approver, json!({})).await;
    assert_eq!(s, 200, "{r}");
    let approved_at = Instant::now();
    loop {
        let (s, r) = get(&c, &format!("{}/v1/exports/{id}", b.url), Some(&approver)).await;
        if s == 200 && r.contains("\"state\":\"approved\"") {
            break;
        }
        assert!(
            approved_at.elapsed() < Duration::from_secs(10),
            "node b does not show the approval: {s} {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The download is recorded where `_audit` is written (node a, which
    // node b calls): it happens once, whichever node serves it.
    let (s, r) = get(
        &c,
        &format!("{}/v1/exports/{id}/bundle", b.url),
        Some(&reader),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = get(
        &c,
        &format!("{}/v1/exports/{id}/bundle", a.url),
        Some(&reader),
    )
    .await;
    assert_eq!(s, 409, "a second download, on the other node: {r}");

    // Both nodes list the same nodes and lease map (read from the store).
    let view = |node: &Server| {
        let (c, url, admin) = (c.clone(), node.url.clone(), admin.to_string());
        async move {
            let (s, r) = get(&c, &format!("{url}/v1/cluster"), Some(&admin)).await;
            assert_eq!(s, 200, "{r}");
            serde_json::from_str::<serde_json::Value>(&r).unwrap()
        }
    };
    let (va, vb) = (view(&a).await, view(&b).await);
    assert_ne!(va["self"], vb["self"]);
    for v in [&va, &vb] {
        let live: Vec<&serde_json::Value> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["live"] == true)
            .map(|n| &n["instance"])
            .collect();
        assert_eq!(live.len(), 2, "{v}");
        assert!(
            live.contains(&&va["self"]) && live.contains(&&vb["self"]),
            "{v}"
        );
        let owner = |ns: &str| {
            v["leases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["ns"] == ns)
                .map(|l| l["owner"].clone())
        };
        assert_eq!(owner("beta"), Some(vb["self"].clone()), "{v}");
        assert_eq!(owner("_audit"), Some(va["self"].clone()), "{v}");
    }
    let (s, _) = get(&c, &format!("{}/v1/cluster", b.url), Some(&reader)).await;
    assert_eq!(s, 403, "admins only");

    // A write for beta sent to node a (b holds beta) is forwarded to b, as
    // it came, and answered by b: the client never needs the layout.
    let w2 = token(&a_dir, "writer", "beta", "agent-2");
    let (s, r) = post_events(&c, &a.url, "beta", &w2, one.clone(), "?wait=checkpoint").await;
    assert_eq!(s, 200, "forwarded to the holder: {r}");
    assert_eq!(r["receipts"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["proofs"][0].as_str().is_some(), "{r}");
    // So is an OTLP export (its namespace header included).
    let span = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "x", "kind": 1, "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000"}]}]}]});
    let otlp = c
        .post(format!("{}/otlp/v1/traces", a.url))
        .bearer_auth(&w2)
        .header("content-type", "application/json")
        .header("x-tracevault-namespace", "beta")
        .body(span.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(otlp.status(), 200, "{}", otlp.text().await.unwrap());
    let (_, cp) = get(
        &c,
        &format!("{}/v1/logs/beta/checkpoint", b.url),
        Some(&reader),
    )
    .await;
    let before_otlp = r["receipts"][0]["index"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, e) = get(
            &c,
            // (read on a: an entry read is recorded in `_audit`, which a holds)
            &format!("{}/v1/logs/beta/entries/{}", a.url, before_otlp + 1),
            Some(&reader),
        )
        .await;
        if e.contains("\"name\":\"x\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the span is not in beta: {e} {cp}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A registration changed in the bucket (to send tokens elsewhere) no
    // longer verifies with the log key: nothing is forwarded to it.
    let bucket = moto.store(url);
    let reg = Path::from(format!("cluster/nodes/{}", vb["self"].as_str().unwrap()));
    let mut forged: serde_json::Value =
        serde_json::from_slice(&bucket.get(&reg).await.unwrap().unwrap()).unwrap();
    forged["node"]["advertise"] = json!("http://127.0.0.1:9");
    bucket
        .put_overwrite(&reg, serde_json::to_vec(&forged).unwrap().into())
        .await
        .unwrap();
    let (s, r) = post_events(&c, &a.url, "beta", &w2, one.clone(), "").await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (409, Some("namespace_fenced")),
        "{r}"
    );
}

/// Cluster mode (`[cluster] enabled`): a receipt means the event is in the
/// store. A node is killed with SIGKILL and its data directory deleted;
/// another node on the same bucket takes its namespace over once the lease
/// lapses, and every receipt the dead node sent matches an entry, no index
/// is reused, and the bucket verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_a_lost_node_loses_no_acknowledged_event() {
    let moto = Moto::start("vault").await;
    let env_owned = moto.env();
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 50\nlease_ttl_ms = 2000\n[cluster]\nenabled = true\n",
    );
    let url = "s3://vault/cluster";
    let args = ["--store", url, "--config", cfg.to_str().unwrap()];
    let a = Server::try_start_env(&a_dir, &args, &env).unwrap();
    let c = client();
    let w = token(&a_dir, "writer", "gamma", "agent");
    let mut receipts = Vec::new();
    for round in 0..5 {
        let batch = json!({"events": (0..20).map(|i| json!({"session_id": "s", "kind": "output",
            "event_id": format!("e-{round}-{i}"), "content": format!("r{round} e{i}")})).collect::<Vec<_>>()});
        let (s, r) = post_events(&c, &a.url, "gamma", &w, batch, "").await;
        assert_eq!(s, 200, "{r}");
        receipts.extend(r["receipts"].as_array().unwrap().iter().cloned());
        // Acknowledged means in the store: a checkpoint there covers it.
        let cp = moto
            .store(url)
            .get(&Path::from("ns/gamma/checkpoint"))
            .await
            .unwrap()
            .unwrap();
        let size: u64 = String::from_utf8_lossy(&cp)
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let last = receipts.last().unwrap()["index"].as_u64().unwrap();
        assert!(
            size > last,
            "acknowledged entry {last} is not in the store (size {size})"
        );
    }
    a.kill9();
    let killed_at = Instant::now();
    std::fs::remove_dir_all(a_dir.join("wal")).unwrap();
    // Node b: a fresh data directory with the shared keys.
    std::fs::create_dir_all(b_dir.join("keys")).unwrap();
    for k in ["log.key", "issuer.key", "masking.key"] {
        std::fs::copy(a_dir.join("keys").join(k), b_dir.join("keys").join(k)).unwrap();
    }
    std::fs::remove_dir_all(&a_dir).unwrap();
    let b = Server::try_start_env(&b_dir, &args, &env).unwrap();
    let one = json!({"events": [{"session_id": "s", "kind": "output", "event_id": "after", "content": "after"}]});
    let next = loop {
        let (s, r) = post_events(&c, &b.url, "gamma", &w, one.clone(), "").await;
        if s == 200 {
            break r["receipts"][0]["index"].as_u64().unwrap();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "no takeover: {s} {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "takeover: writes succeed on node b {:?} after node a was killed",
        killed_at.elapsed()
    );
    assert_eq!(next, 100, "no index reused, none skipped");
    let reader = token(&b_dir, "reader", "gamma", "auditor");
    for r in &receipts {
        let i = r["index"].as_u64().unwrap();
        let (s, e) = get(
            &c,
            &format!("{}/v1/logs/gamma/entries/{i}", b.url),
            Some(&reader),
        )
        .await;
        assert_eq!(s, 200, "{e}");
        let e: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(e["leaf_hash"], r["leaf_hash"], "entry {i}");
    }
    // A retry of an acknowledged event gets its original receipt.
    let batch = json!({"events": [{"session_id": "s", "kind": "output", "event_id": "e-4-19", "content": "r4 e19"}]});
    let (s, r) = post_events(&c, &b.url, "gamma", &w, batch, "").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["receipts"][0]["index"], 99, "{r}");
    assert_eq!(r["receipts"][0]["duplicate"], true, "{r}");
    assert_eq!(b.terminate(), Some(0));
    let key = std::fs::read_to_string(b_dir.join("keys/log.key")).unwrap();
    let seed: [u8; 32] = base64_decode(key.trim()).try_into().unwrap();
    use base64::Engine;
    let pk = base64::engine::general_purpose::STANDARD.encode(
        ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes(),
    );
    let (code, out, err) = verify_env(&["--store", url, "--key", &pk], &env);
    assert_eq!(code, 0, "{out}{err}");
}
