//! Every door of the server driven in-process through its router
//! (`tower::ServiceExt::oneshot`), beside the end-to-end suites that drive
//! the binary over real sockets: a handler change can be tested here
//! without building or spawning the binary. One server is shared by the
//! steps (a started `Server`: real vault, real tokens, real store).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use tracevault_server::Server;
use tracevault_server::config::ServerConfig;
use tracevault_server::read::Isolation;
use tracevault_vault::LogConfig;

/// One request through the router: status and JSON body (`null` if none).
async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, text) = call_text(app, method, uri, token, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One request through the router: status and body text.
async fn call_text(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String) {
    let (status, bytes) = call_bytes(app, method, uri, token, body).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// One request through the router: status and body bytes.
async fn call_bytes(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

async fn token(app: &axum::Router, admin: &str, body: Value) -> String {
    let (s, v) = call(app, "POST", "/v1/tokens", Some(admin), Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_door_answers_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig {
        data: Some(dir.path().to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        log: LogConfig {
            flush_interval_ms: 20,
            ..LogConfig::default()
        },
        ..ServerConfig::default()
    };
    // A worker process would be this test binary: run queries in-process.
    cfg.query.isolation = Isolation::Thread;
    let server = Server::start(cfg).await.unwrap();
    let app = server.router();
    let admin = std::fs::read_to_string(server.admin_token_path()).unwrap();
    let admin = admin.trim();

    // ops
    let (s, _) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);

    // auth: only an admin issues tokens; errors carry a stable code.
    let writer = token(
        &app,
        admin,
        json!({"role": "writer", "ns": ["prod"], "sub": "agent"}),
    )
    .await;
    let (s, v) = call(
        &app,
        "POST",
        "/v1/tokens",
        Some(&writer),
        Some(json!({"role": "admin", "ns": ["*"], "sub": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"]["code"].is_string(), "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/logs/prod/events",
        None,
        Some(json!({"events": []})),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["error"]["code"].is_string(), "{v}");

    // write: receipts in order; another namespace is refused; bad input is a 400.
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"session_id": "s1", "kind": "output", "content": format!("line {i} mail bob@example.com")}))
        .collect();
    let (s, v) = call(
        &app,
        "POST",
        "/v1/logs/prod/events?wait=checkpoint",
        Some(&writer),
        Some(json!({"events": events})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let receipts = v["receipts"].as_array().unwrap();
    let idx: Vec<u64> = receipts
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![0, 1, 2]);
    let (s, _) = call(
        &app,
        "POST",
        "/v1/logs/other/events",
        Some(&writer),
        Some(json!({"events": events})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/logs/prod/events",
        Some(&writer),
        Some(json!({"events": [{"kind": "output"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["code"].is_string(), "{v}");

    // evidence: a signed checkpoint and an inclusion proof that checks out.
    let reader = token(&app, admin, json!({"role": "reader", "ns": ["prod"], "sub": "auditor", "win_from": "2000-01-01T00:00:00Z"})).await;
    let (s, note) = call_text(&app, "GET", "/v1/logs/prod/checkpoint", Some(&reader), None).await;
    assert_eq!(s, StatusCode::OK, "{note}");
    let (s, p) = call(
        &app,
        "GET",
        "/v1/logs/prod/proof/inclusion?index=1&size=3",
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let hashes: Vec<[u8; 32]> = p["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap();
            b.try_into().unwrap()
        })
        .collect();
    let leaf = hex::decode(receipts[1]["leaf_hash"].as_str().unwrap()).unwrap();
    let cp = tracevault_vault::note::open_checkpoint(
        &note,
        &server.vault().origin_of("prod"),
        &server.vault().public_key(),
    )
    .unwrap();
    assert_eq!(cp.size, 3);
    let leaf: [u8; 32] = leaf.try_into().unwrap();
    tracevault_vault::merkle::verify_inclusion(&leaf, 1, 3, &hashes, &cp.root).unwrap();
    // A proof for another leaf does not check against that root.
    let other = hex::decode(receipts[0]["leaf_hash"].as_str().unwrap()).unwrap();
    let other: [u8; 32] = other.try_into().unwrap();
    assert!(tracevault_vault::merkle::verify_inclusion(&other, 1, 3, &hashes, &cp.root).is_err());

    // read: a reader sees the entry masked; a writer cannot read.
    let (s, v) = call(&app, "GET", "/v1/logs/prod/entries/2", Some(&reader), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["index"], 2, "{v}");
    assert!(v.to_string().contains("line 2"), "{v}");
    assert!(!v.to_string().contains("bob@example.com"), "{v}");
    let (s, v) = call(&app, "GET", "/v1/logs/prod/entries/2", Some(&writer), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/query",
        Some(&reader),
        Some(json!({"sql": "SELECT count(*) AS n FROM traces"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["rows"], json!([[3]]), "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/query",
        Some(&reader),
        Some(json!({"sql": "DROP TABLE traces"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // exports: a reader asks, and cannot approve its own request.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/exports",
        Some(&reader),
        Some(json!({"namespace": "prod", "session_id": "s1", "reason": "incident 7"})),
    )
    .await;
    assert!(s.is_success(), "{s} {v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (s, v) = call(
        &app,
        "POST",
        &format!("/v1/exports/{id}/approve"),
        Some(&reader),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    drop(app);
    server.serve(async {}).await;
}

/// `public_log = true`: checkpoints and hash tiles are readable without a
/// token (for witnesses and monitors); proofs and entries still are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_log_opens_checkpoints_and_tiles_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig {
        data: Some(dir.path().to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        public_log: Some(true),
        log: LogConfig {
            flush_interval_ms: 20,
            ..LogConfig::default()
        },
        ..ServerConfig::default()
    };
    cfg.query.isolation = Isolation::Thread;
    let server = Server::start(cfg).await.unwrap();
    let app = server.router();
    let admin = std::fs::read_to_string(server.admin_token_path()).unwrap();
    let writer = token(
        &app,
        admin.trim(),
        json!({"role": "writer", "ns": ["prod"], "sub": "a"}),
    )
    .await;
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"session_id": "s", "kind": "output", "content": format!("e{i}")}))
        .collect();
    let (s, v) = call(
        &app,
        "POST",
        "/v1/logs/prod/events?wait=checkpoint",
        Some(&writer),
        Some(json!({"events": events})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, note) = call_text(&app, "GET", "/v1/logs/prod/checkpoint", None, None).await;
    assert_eq!(s, StatusCode::OK, "{note}");
    assert_eq!(note.lines().nth(1), Some("3"));
    let (s, tile) = call_bytes(&app, "GET", "/v1/logs/prod/tile/0/000.p/3", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(tile.len(), 3 * 32);
    let (s, _) = call(
        &app,
        "GET",
        "/v1/logs/prod/proof/inclusion?index=0&size=3",
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, "GET", "/v1/logs/prod/entries/0", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    drop(app);
    server.serve(async {}).await;
}
