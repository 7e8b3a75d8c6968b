//! One writer per namespace log: two server processes on one store. The second
//! is fenced and refuses to append; the store stays verifiable. A second
//! process on the same data directory refuses to start at all.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_server_on_the_same_store_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let store = format!("file://{}", dir.path().join("shared").display());
    std::fs::create_dir_all(dir.path().join("shared")).unwrap();
    let cfg = config(dir.path(), "[log]\nflush_interval_ms = 50\n");
    let cfg = cfg.to_str().unwrap();
    let a = Server::start(&a_dir, &["--store", &store, "--config", cfg]);
    // Same data directory twice: refused before serving anything.
    let err = Server::try_start(&a_dir, &["--store", &store])
        .err()
        .expect("second process on one data dir must fail");
    assert!(err.contains("in use"), "{err}");

    // Server B shares the store (and, as it must, the log key).
    std::fs::create_dir_all(b_dir.join("keys")).unwrap();
    std::fs::copy(a_dir.join("keys/log.key"), b_dir.join("keys/log.key")).unwrap();
    let b = Server::start(&b_dir, &["--store", &store, "--config", cfg]);
    let c = client();
    let wa = token(&a_dir, "writer", "alpha,beta", "a");
    let wb = token(&b_dir, "writer", "alpha,beta", "b");
    let ev = json!({"events": [{"session_id": "s", "kind": "output", "content": "hello"}]});

    let (s, r) = post_events(&c, &a.url, "alpha", &wa, ev.clone(), "?wait=checkpoint").await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = post_events(&c, &b.url, "alpha", &wb, ev.clone(), "").await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(r["error"]["code"], "namespace_fenced");
    // B may own another namespace of the same store.
    let (s, r) = post_events(&c, &b.url, "beta", &wb, ev.clone(), "?wait=checkpoint").await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = post_events(&c, &a.url, "beta", &wa, ev.clone(), "").await;
    assert_eq!(s, 409, "{r}");
    // Still fenced on a retry, and A keeps appending.
    let (s, _) = post_events(&c, &b.url, "alpha", &wb, ev.clone(), "").await;
    assert_eq!(s, 409);
    let (s, r) = post_events(&c, &a.url, "alpha", &wa, ev.clone(), "?wait=checkpoint").await;
    assert_eq!((s, r["receipts"][0]["index"].as_u64()), (200, Some(1)));

    // B can still serve reads of alpha (from the store, without the lease).
    let (s, cp_b) = get(
        &c,
        &format!("{}/v1/logs/alpha/checkpoint", b.url),
        Some(&wb),
    )
    .await;
    assert_eq!(s, 200, "{cp_b}");
    let (_, cp_a) = get(
        &c,
        &format!("{}/v1/logs/alpha/checkpoint", a.url),
        Some(&wa),
    )
    .await;
    assert_eq!(cp_a, cp_b);
    let (s, proof) = get(
        &c,
        &format!("{}/v1/logs/alpha/proof/inclusion?index=0&size=2", b.url),
        Some(&wb),
    )
    .await;
    assert_eq!(s, 200, "{proof}");

    // A stops cleanly and releases its lease; B's reads did not take it.
    assert_eq!(a.terminate(), Some(0));
    assert!(
        !dir.path().join("shared/ns/alpha/lease").exists(),
        "a read took the lease"
    );
    // B may now take over and continues the log.
    let (s, r) = post_events(&c, &b.url, "alpha", &wb, ev.clone(), "?wait=checkpoint").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["receipts"][0]["index"], 2);
    assert_eq!(b.terminate(), Some(0));
    let (code, out, err) = verify(&["--store", &store]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 namespaces, 4 entries"), "{out}");
}
