//! Three nodes, one vault (issue 17, `docs/cluster.md`): three servers in
//! cluster mode on one S3-compatible store (moto on loopback), clients
//! writing to every node for several namespaces. Steps recorded on one node
//! are honoured on the others (a revocation, two approvals by one person
//! sent to two nodes at once, one download asked of three nodes at once);
//! the node holding `_audit` and a namespace is killed with SIGKILL and its
//! data directory deleted: its namespaces and `_audit` move to the others
//! within the documented bound, every receipt ever sent matches an entry,
//! no index is reused; a node stopped with SIGTERM hands its leases over at
//! once (drain); and the bucket verifies.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::moto::Moto;
use common::*;
use serde_json::{Value, json};

const URL: &str = "s3://vault/three";
const NAMESPACES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Lease TTL of the nodes: the failover bound is this plus the open time.
const TTL_MS: u64 = 2000;

/// Starts node `name` (data under `dir/name`) advertising its own address.
fn node(dir: &Path, name: &str, env: &[(&str, &str)]) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[log]\nflush_interval_ms = 50\nlease_ttl_ms = {TTL_MS}\n\
             [cluster]\nenabled = true\nfollow_audit_ms = 300\nheartbeat_ms = 500\n\
             advertise = \"http://127.0.0.1:{port}\"\n\
             [exports]\napprovals_required = 2\n"
        ),
    )
    .unwrap();
    let data = dir.join(name);
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        &listen,
        "--store",
        URL,
        "--config",
        cfg.to_str().unwrap(),
    ];
    Server::spawn(&args, env, &data).unwrap()
}

fn share_keys(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("keys")).unwrap();
    for k in ["log.key", "issuer.key", "masking.key"] {
        std::fs::copy(from.join("keys").join(k), to.join("keys").join(k)).unwrap();
    }
}

/// One batch of `n` events with ids `{tag}-{i}`.
fn batch(tag: &str, n: usize) -> Value {
    json!({"events": (0..n).map(|i| json!({"session_id": "s", "kind": "output",
        "event_id": format!("{tag}-{i}"), "content": format!("{tag} {i}")})).collect::<Vec<_>>()})
}

/// Writes `tag` to `ns` through node `url` until it is accepted (within
/// `bound`); returns the receipts.
async fn write_until_accepted(
    c: &reqwest::Client,
    url: &str,
    ns: &str,
    tok: &str,
    tag: &str,
    bound: Duration,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (s, r) = post_events(c, url, ns, tok, batch(tag, 3), "").await;
        if s == 200 {
            return r["receipts"].as_array().unwrap().clone();
        }
        assert!(
            s == 503 || s == 409,
            "a write is refused, not deferred: {s} {r}"
        );
        assert!(
            started.elapsed() < bound,
            "{ns} takes no writes through {url} after {:?}: {s} {r}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cluster_view(c: &reqwest::Client, url: &str, admin: &str) -> Value {
    let (s, r) = get(c, &format!("{url}/v1/cluster"), Some(admin)).await;
    assert_eq!(s, 200, "{r}");
    serde_json::from_str(&r).unwrap()
}

fn owner_of(view: &Value, ns: &str) -> Option<String> {
    view["leases"]
        .as_array()?
        .iter()
        .find(|l| l["ns"] == ns && l["live"] == true)
        .and_then(|l| l["owner"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_one_vault_and_lose_nothing_when_one_dies() {
    let moto = Moto::start("vault").await;
    let env_owned = moto.env();
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| -> PathBuf { dir.path().join(n) };
    let n1 = node(dir.path(), "n1", &env);
    share_keys(&d("n1"), &d("n2"));
    share_keys(&d("n1"), &d("n3"));
    let n2 = node(dir.path(), "n2", &env);
    let n3 = node(dir.path(), "n3", &env);
    let mut nodes: BTreeMap<&str, Server> = [("n1", n1), ("n2", n2), ("n3", n3)].into();
    let url = |nodes: &BTreeMap<&str, Server>, n: &str| nodes[n].url.clone();
    let c = client();
    let admin = std::fs::read_to_string(d("n1").join("admin.token")).unwrap();
    let admin = admin.trim().to_string();
    let w = token(&d("n1"), "writer", "alpha,beta,gamma", "agent");

    // Clients write to every node for every namespace (each namespace
    // first through a different node, so the leases spread).
    let mut receipts: Vec<(String, Value)> = Vec::new();
    for (i, ns) in NAMESPACES.iter().enumerate() {
        let n = ["n1", "n2", "n3"][i];
        let (s, r) = post_events(
            &c,
            &url(&nodes, n),
            ns,
            &w,
            batch(&format!("{ns}-first"), 3),
            "",
        )
        .await;
        assert_eq!(s, 200, "{r}");
        receipts.extend(
            r["receipts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| (ns.to_string(), x.clone())),
        );
    }
    for round in 0..2 {
        for n in ["n1", "n2", "n3"] {
            for ns in NAMESPACES {
                let tag = format!("{ns}-{n}-{round}");
                let (s, r) = post_events(&c, &url(&nodes, n), ns, &w, batch(&tag, 3), "").await;
                assert_eq!(s, 200, "{n} takes a write for {ns}: {r}");
                receipts.extend(
                    r["receipts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| (ns.to_string(), x.clone())),
                );
            }
        }
    }
    let view = cluster_view(&c, &url(&nodes, "n2"), &admin).await;
    let live: Vec<&Value> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["live"] == true)
        .collect();
    assert_eq!(live.len(), 3, "{view}");
    let holders: HashSet<String> = NAMESPACES
        .iter()
        .filter_map(|ns| owner_of(&view, ns))
        .collect();
    assert_eq!(
        holders.len(),
        3,
        "the namespaces are spread over the nodes: {view}"
    );

    // Each node's metrics say who it is and how many namespaces it writes.
    for n in ["n1", "n2", "n3"] {
        let (s, m) = get(&c, &format!("{}/metrics", url(&nodes, n)), Some(&admin)).await;
        assert_eq!(s, 200, "{m}");
        let me = cluster_view(&c, &url(&nodes, n), &admin).await["self"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            m.contains(&format!("tracevault_node_info{{instance=\"{me}\"}} 1")),
            "{m}"
        );
        let held: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix("tracevault_cluster_leases_held "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(held >= 1, "{n} holds a namespace: {m}");
    }

    // A token revoked on node 1 is refused by node 3 within the bound, for
    // a namespace node 3 holds: node 3 decides, from what it followed.
    let n3_id = cluster_view(&c, &url(&nodes, "n3"), &admin).await["self"]
        .as_str()
        .unwrap()
        .to_string();
    let on_n3 = NAMESPACES
        .iter()
        .copied()
        .find(|ns| owner_of(&view, ns).as_deref() == Some(&n3_id))
        .unwrap();
    let leaked = token(&d("n1"), "writer", on_n3, "leaky");
    let (s, r) = post_events(
        &c,
        &url(&nodes, "n3"),
        on_n3,
        &leaked,
        batch("leaky-0", 1),
        "",
    )
    .await;
    assert_eq!(s, 200, "{r}");
    receipts.push((on_n3.into(), r["receipts"][0].clone()));
    let (s, r) = post_json(
        &c,
        &format!("{}/v1/tokens/revoke", url(&nodes, "n1")),
        &admin,
        json!({"jti": jti(&leaked), "reason": "leaked"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let revoked_at = Instant::now();
    loop {
        let (s, r) = post_events(
            &c,
            &url(&nodes, "n3"),
            on_n3,
            &leaked,
            batch("leaky-1", 1),
            "",
        )
        .await;
        if s == 401 {
            assert_eq!(r["error"]["code"], "token_revoked", "{r}");
            break;
        }
        assert_eq!(s, 200, "{r}");
        receipts.push((on_n3.into(), r["receipts"][0].clone()));
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "node 3 still takes a token revoked on node 1"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "a revocation on n1 reached n3 after {:?}",
        revoked_at.elapsed()
    );

    node_calls_are_signed_addressed_and_used_once(&c, &nodes, &d("n1"), &admin).await;

    // A session stream opened on a node that does not hold its namespace
    // is streamed to the holder: each line's receipt comes back before the
    // next line is sent.
    let not_n3: Vec<&str> = ["n1", "n2"].to_vec();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|i| (i, rx))
    }));
    let resp = c
        .post(format!(
            "{}/v1/logs/{on_n3}/sessions/live/stream",
            url(&nodes, not_n3[0])
        ))
        .bearer_auth(&w)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut lines = Lines::of(resp);
    for i in 0..3 {
        let ev = json!({"kind": "output", "content": format!("live {i}"), "event_id": format!("live-{i}")});
        tx.send(Ok(bytes::Bytes::from(format!("{ev}\n"))))
            .await
            .unwrap();
        let r = lines.next().await.unwrap();
        assert_eq!(r["line"], i + 1, "{r}");
        receipts.push((
            on_n3.to_string(),
            json!({"index": r["index"], "leaf_hash": r["leaf_hash"]}),
        ));
    }
    drop(tx);
    while lines.next().await.is_some() {}

    // An export: requested on n1; one person approves on n2 and n3 at once
    // (it counts once); a second person completes it; then the requester
    // asks all three nodes for the bundle at once: exactly one gets it.
    let reader = token(&d("n1"), "reader", "beta", "auditor");
    let (bob, carol) = (
        token(&d("n1"), "approver", "beta", "bob"),
        token(&d("n1"), "approver", "beta", "carol"),
    );
    let req = json!({"namespace": "beta", "session_id": "s", "reason": "incident 9"});
    let (s, r) = post_json(
        &c,
        &format!("{}/v1/exports", url(&nodes, "n1")),
        &reader,
        req,
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let approve = |n: &str| format!("{}/v1/exports/{id}/approve", url(&nodes, n));
    let (u2, u3) = (approve("n2"), approve("n3"));
    let (a2, a3) = tokio::join!(
        post_json(&c, &u2, &bob, json!({})),
        post_json(&c, &u3, &bob, json!({})),
    );
    let ok = [&a2, &a3].iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "one person's approval counts once: {a2:?} {a3:?}");
    let (s, r) = get(
        &c,
        &format!("{}/v1/exports/{id}", url(&nodes, "n1")),
        Some(&bob),
    )
    .await;
    assert!(s == 200 && r.contains("\"state\":\"pending\""), "{s} {r}");
    let (s, r) = post_json(&c, &approve("n1"), &carol, json!({})).await;
    assert_eq!(s, 200, "{r}");
    let bundle = |n: &str| format!("{}/v1/exports/{id}/bundle", url(&nodes, n));
    let (u1, u2, u3) = (bundle("n1"), bundle("n2"), bundle("n3"));
    let (b1, b2, b3) = tokio::join!(
        get(&c, &u1, Some(&reader)),
        get(&c, &u2, Some(&reader)),
        get(&c, &u3, Some(&reader)),
    );
    let statuses = [b1.0, b2.0, b3.0];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "exactly one download: {statuses:?}"
    );
    let refusals: Vec<&str> = [&b1, &b2, &b3]
        .iter()
        .filter(|b| b.0 != 200)
        .map(|b| b.1.as_str())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?} {refusals:?}"
    );
    // Every node shows the same list.
    let mut lists = Vec::new();
    for n in ["n1", "n2", "n3"] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (s, r) = get(&c, &format!("{}/v1/exports", url(&nodes, n)), Some(&admin)).await;
            assert_eq!(s, 200, "{r}");
            if r.contains("\"downloaded\"") || Instant::now() > deadline {
                lists.push(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(lists.iter().all(|l| l == &lists[0]), "{lists:?}");

    // The node holding `_audit` dies with its disk; its namespaces and
    // `_audit` move to the others.
    let view = cluster_view(&c, &url(&nodes, "n1"), &admin).await;
    let audit_holder = owner_of(&view, "_audit").expect("a live _audit lease");
    let self_of = |n: &str, v: &Value| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["instance"] == n)
    };
    assert!(self_of(&audit_holder, &view));
    let mut victim = None;
    for n in ["n1", "n2", "n3"] {
        let v = cluster_view(&c, &url(&nodes, n), &admin).await;
        if v["self"] == audit_holder.as_str() {
            victim = Some(n);
        }
    }
    let victim = victim.unwrap();
    let victims_ns: Vec<&str> = NAMESPACES
        .iter()
        .copied()
        .filter(|ns| owner_of(&view, ns).as_deref() == Some(&audit_holder))
        .collect();
    let survivors: Vec<&str> = ["n1", "n2", "n3"]
        .into_iter()
        .filter(|n| *n != victim)
        .collect();
    nodes.remove(victim).unwrap().kill9();
    let killed_at = Instant::now();
    std::fs::remove_dir_all(d(victim)).unwrap();
    // Documented bound: the lease TTL plus the open (a few seconds here).
    let bound = Duration::from_millis(TTL_MS) + Duration::from_secs(8);
    for ns in NAMESPACES {
        let r = write_until_accepted(
            &c,
            &url(&nodes, survivors[0]),
            ns,
            &w,
            &format!("{ns}-after"),
            bound,
        )
        .await;
        receipts.extend(r.into_iter().map(|x| (ns.to_string(), x)));
    }
    eprintln!(
        "after the kill of {victim} (it held _audit and {victims_ns:?}), every namespace took writes again within {:?}",
        killed_at.elapsed()
    );
    // `_audit` moved too: a query (recorded in `_audit`) is answered by a
    // survivor, and a workflow step is recorded.
    let q = json!({"sql": "SELECT count(*) AS n FROM traces"});
    let deadline = Instant::now() + bound;
    loop {
        let (s, r) = post_json(
            &c,
            &format!("{}/v1/query", url(&nodes, survivors[1])),
            &reader,
            q.clone(),
        )
        .await;
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no query after the kill: {s} {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, r) = post_json(
        &c,
        &format!("{}/v1/exports", url(&nodes, survivors[1])),
        &reader,
        json!({"namespace": "beta", "session_id": "s", "reason": "after the kill"}),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let id2 = r["id"].as_str().unwrap().to_string();
    // Approved on one survivor by bob, then again by bob on the other: refused.
    let (s, r) = post_json(
        &c,
        &format!("{}/v1/exports/{id2}/approve", url(&nodes, survivors[0])),
        &bob,
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = post_json(
        &c,
        &format!("{}/v1/exports/{id2}/approve", url(&nodes, survivors[1])),
        &bob,
        json!({}),
    )
    .await;
    assert_eq!(s, 409, "{r}");

    // Every receipt ever sent matches an entry; no index is used twice.
    let all_reader = token(
        &d(survivors[0]),
        "reader",
        "alpha,beta,gamma",
        "auditor-all",
    );
    let mut seen = HashSet::new();
    for (ns, r) in &receipts {
        let i = r["index"].as_u64().unwrap();
        assert!(
            seen.insert((ns.clone(), i)) || r["duplicate"] == true,
            "{ns} index {i} used twice"
        );
        let (s, e) = get(
            &c,
            &format!("{}/v1/logs/{ns}/entries/{i}", url(&nodes, survivors[1])),
            Some(&all_reader),
        )
        .await;
        assert_eq!(s, 200, "{ns}/{i}: {e}");
        let e: Value = serde_json::from_str(&e).unwrap();
        assert_eq!(e["leaf_hash"], r["leaf_hash"], "{ns} entry {i}");
    }
    for ns in NAMESPACES {
        let n = seen.iter().filter(|(x, _)| x == ns).count() as u64;
        let max = seen
            .iter()
            .filter(|(x, _)| x == ns)
            .map(|(_, i)| *i)
            .max()
            .unwrap();
        assert_eq!(
            max + 1,
            n,
            "{ns}: indices are dense, none skipped or reused"
        );
    }

    // Drain: a node stopped with SIGTERM hands its leases over before it
    // exits, so the other takes its namespaces at once, not after the TTL.
    let view = cluster_view(&c, &url(&nodes, survivors[0]), &admin).await;
    let leaving = survivors[1];
    let leaving_id = cluster_view(&c, &url(&nodes, leaving), &admin).await["self"]
        .as_str()
        .unwrap()
        .to_string();
    let held: Vec<&str> = NAMESPACES
        .iter()
        .copied()
        .filter(|ns| owner_of(&view, ns).as_deref() == Some(&leaving_id))
        .collect();
    assert_eq!(nodes.remove(leaving).unwrap().terminate(), Some(0));
    let drained_at = Instant::now();
    for ns in &held {
        write_until_accepted(
            &c,
            &url(&nodes, survivors[0]),
            ns,
            &w,
            &format!("{ns}-drained"),
            bound,
        )
        .await;
    }
    eprintln!(
        "drain: {held:?} taken over {:?} after {leaving} stopped",
        drained_at.elapsed()
    );
    if !held.is_empty() {
        assert!(
            drained_at.elapsed() < Duration::from_millis(TTL_MS),
            "a drained node's leases are free at once"
        );
    }
    let last = nodes.remove(survivors[0]).unwrap();
    let pk = last.public_key();
    assert_eq!(last.terminate(), Some(0));
    let (code, out, err) = verify_env(&["--store", URL, "--key", &pk], &env);
    assert_eq!(code, 0, "{out}{err}");
}

/// The internal routes take no token, only calls signed with the log key:
/// one without a signature, one signed by another key, one replayed and
/// one addressed to another node are refused; the genuine one is taken.
async fn node_calls_are_signed_addressed_and_used_once(
    c: &reqwest::Client,
    nodes: &BTreeMap<&str, Server>,
    keys_of: &Path,
    admin: &str,
) {
    use base64::Engine;
    use ed25519_dalek::Signer;
    use sha2::Digest;
    let b64 = base64::engine::general_purpose::STANDARD;
    let seed: [u8; 32] = b64
        .decode(
            std::fs::read_to_string(keys_of.join("keys/log.key"))
                .unwrap()
                .trim(),
        )
        .unwrap()
        .try_into()
        .unwrap();
    let log_key = ed25519_dalek::SigningKey::from_bytes(&seed);
    // The node holding `_audit` takes appends there.
    let view = cluster_view(c, &nodes["n1"].url, admin).await;
    let holder = owner_of(&view, "_audit").expect("_audit is held");
    let mut at = None;
    for (n, s) in nodes {
        if cluster_view(c, &s.url, admin).await["self"] == holder.as_str() {
            at = Some(*n);
        }
    }
    let (at, other) = {
        let at = at.unwrap();
        (at, nodes.keys().copied().find(|n| *n != at).unwrap())
    };
    let path = "/v1/internal/audit/append";
    let body = json!({"events": [{"session_id": "probe", "kind": "annotation", "content": "a node call"}]}).to_string();
    let call_for = |key: &ed25519_dalek::SigningKey, to: &str, nonce: &str, body: &str| {
        let ts = chrono_ms();
        let digest = hex::encode(sha2::Sha256::digest(body.as_bytes()));
        let mut m = b"tracevault/node-call/v1\n".to_vec();
        m.extend_from_slice(format!("{to}\n{path}\n{ts}\n{nonce}\n").as_bytes());
        m.extend_from_slice(digest.as_bytes());
        vec![
            ("x-tracevault-node", "test".to_string()),
            ("x-tracevault-node-ts", ts.to_string()),
            ("x-tracevault-node-nonce", nonce.to_string()),
            ("x-tracevault-node-sig", b64.encode(key.sign(&m).to_bytes())),
            ("x-tracevault-node-body", digest),
        ]
    };
    let call =
        |key: &ed25519_dalek::SigningKey, to: &str, nonce: &str| call_for(key, to, nonce, &body);
    let send = |url: String, headers: Vec<(&'static str, String)>| {
        let (c, body) = (c.clone(), body.clone());
        async move {
            let mut r = c
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let url = |n: &str| format!("{}{path}", nodes[n].url);
    let (s, r) = send(url(at), vec![]).await;
    assert_eq!(s, 401, "no signature: {r}");
    assert!(r.contains("not_a_node"), "{r}");
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let (s, r) = send(url(at), call(&stranger, &holder, &"a".repeat(32))).await;
    assert_eq!(s, 401, "another key: {r}");
    let genuine = call(&log_key, &holder, &"b".repeat(32));
    let (s, r) = send(url(at), genuine.clone()).await;
    assert_eq!(s, 200, "the genuine call: {r}");
    assert!(r.contains("receipts"), "{r}");
    let (s, r) = send(url(at), genuine).await;
    assert_eq!(s, 401, "replayed: {r}");
    let (s, r) = send(url(other), call(&log_key, &holder, &"c".repeat(32))).await;
    assert_eq!(s, 401, "addressed to another node: {r}");
    // Signed for another body than the one sent.
    let other_body = call_for(&log_key, &holder, &"d".repeat(32), "{\"events\": []}");
    let (s, r) = send(url(at), other_body).await;
    assert_eq!(s, 401, "another body: {r}");
    // Without a signature, a body is never read: 16 MiB announced, none
    // sent, refused at once.
    let addr = nodes[at].url.trim_start_matches("http://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16777215\r\nx-tracevault-node: n\r\nx-tracevault-node-ts: {}\r\nx-tracevault-node-nonce: {}\r\nx-tracevault-node-sig: AAAA\r\nx-tracevault-node-body: {}\r\n\r\n",
            chrono_ms(),
            "e".repeat(32),
            "0".repeat(64)
        )
        .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The `jti` of a JWT (its payload, unverified: the test minted it).
fn jti(jwt: &str) -> String {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice::<Value>(&b).unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_string()
}
