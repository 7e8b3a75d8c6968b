//! External token issuers against a real server: tokens minted by a
//! third-party library (PyJWT with `cryptography`, tests/independent/mint_jwt.py)
//! with RSA-2048, P-256 and Ed25519 keys, verified through a JWKS file or URL
//! and mapped to roles by the config; forged, confused, out-of-date and
//! unmapped tokens refused with 401/403 and a JSON body; the JWKS URL fetched
//! at start, reloaded on an unknown kid (key rotation), and kept through an
//! outage.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sha2::Digest;

const ISS: &str = "https://idp.example.com/";

/// Runs the stand-in identity provider (mint_jwt.py) on `job`; returns its tokens.
fn mint(dir: &Path, job: Value) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independent/mint_jwt.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mint_jwt.py failed (PyJWT missing? `.venv/bin/pip install -r tests/requirements.txt`): {err}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a good token of the test issuer, with `groups` and `extra`.
fn claims(groups: Value, extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": "tracevault", "sub": "alice",
                       "iat": now(), "exp": now() + 600, "groups": groups});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// A token spec for mint_jwt.py.
fn tok(key: &str, alg: &str, claims: Value) -> Value {
    json!({"key": key, "alg": alg, "claims": claims})
}

async fn send(req: reqwest::RequestBuilder, tok: &str) -> (u16, Value) {
    let r = req.bearer_auth(tok).send().await.unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn query(c: &reqwest::Client, url: &str, tok: &str, sql: &str) -> (u16, Value) {
    send(
        c.post(format!("{url}/v1/query"))
            .header("content-type", "application/json")
            .body(json!({"sql": sql}).to_string()),
        tok,
    )
    .await
}

async fn vault(c: &reqwest::Client, url: &str, tok: &str) -> (u16, Value) {
    send(c.get(format!("{url}/v1/vault")), tok).await
}

fn events(n: usize) -> Value {
    let evs: Vec<Value> = (0..n)
        .map(|i| json!({"session_id": "s1", "kind": "output", "content": format!("e{i}")}))
        .collect();
    json!({ "events": evs })
}

/// Asserts an error answer: status and JSON error code.
fn refused(got: (u16, Value), status: u16, code: &str, what: &str) {
    assert_eq!(
        (got.0, got.1["error"]["code"].as_str()),
        (status, Some(code)),
        "{what}: {}",
        got.1
    );
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}"
    );
}

const MAP: &str = r#"
[[issuers.map]]
value = "auditors"
role = "reader"
ns = ["prod"]
window_s = 3600

[[issuers.map]]
value = "pipelines"
role = "writer"
ns = ["prod"]

[[issuers.map]]
value = "analysts"
role = "reader"
ns = ["prod"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_tokens_map_to_roles_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let idp = dir.path().join("idp");
    let keys = json!({"rsa-1": "RSA", "ec-1": "P-256", "ed-1": "Ed25519", "rogue": "RSA"});
    let w = |extra: Value| claims(json!(["staff", "pipelines"]), extra);
    let r = |extra: Value| claims(json!("auditors"), extra);
    let no_jti_writer = tok("ed-1", "EdDSA", w(json!({})));
    let specs = vec![
        // 0..3: writers, 3..6: readers, one per algorithm.
        tok("rsa-1", "RS256", w(json!({"jti": "w-rs"}))),
        tok("ec-1", "ES256", w(json!({"jti": "w-es"}))),
        tok("ed-1", "EdDSA", w(json!({"jti": "w-ed"}))),
        tok("rsa-1", "RS256", r(json!({}))),
        tok("ec-1", "ES256", r(json!({}))),
        tok("ed-1", "EdDSA", r(json!({}))),
        // 6: a reader whose window comes from the token; 7: one without any.
        tok(
            "rsa-1",
            "RS256",
            claims(
                json!(["analysts"]),
                json!({"win_from": "2020-01-01T00:00:00Z"}),
            ),
        ),
        tok("rsa-1", "RS256", claims(json!(["analysts"]), json!({}))),
        // 8: alg none; 9: HS256 keyed with the RSA public key PEM.
        json!({"key": "rsa-1", "special": "none", "claims": w(json!({}))}),
        json!({"key": "rsa-1", "special": "hs256-with-public-key", "claims": w(json!({}))}),
        // 10: unknown kid; 11: a key not in the JWKS under a known kid.
        json!({"key": "rogue", "alg": "RS256", "kid": "rsa-9", "claims": w(json!({}))}),
        json!({"key": "rogue", "alg": "RS256", "kid": "rsa-1", "claims": w(json!({}))}),
        // 12: wrong aud; 13: wrong iss; 14: expired; 15: nbf ahead.
        tok("ec-1", "ES256", w(json!({"aud": ["someone-else"]}))),
        tok(
            "ec-1",
            "ES256",
            w(json!({"iss": "https://evil.example.com/"})),
        ),
        tok(
            "ed-1",
            "EdDSA",
            w(json!({"exp": now() - 300, "iat": now() - 900})),
        ),
        tok("ed-1", "EdDSA", w(json!({"nbf": now() + 300}))),
        // 16: no mapped value; 17: no exp; 18: no sub.
        tok(
            "rsa-1",
            "RS256",
            claims(json!(["staff", "Pipelines"]), json!({})),
        ),
        tok(
            "rsa-1",
            "RS256",
            json!({"iss": ISS, "aud": "tracevault", "sub": "a", "iat": now(), "groups": "pipelines"}),
        ),
        tok(
            "rsa-1",
            "RS256",
            json!({"iss": ISS, "aud": "tracevault", "iat": now(), "exp": now() + 600, "groups": "pipelines"}),
        ),
        // 19: the header says ES256 for the RSA key's kid (signed with P-256).
        json!({"key": "ec-1", "alg": "ES256", "kid": "rsa-1", "claims": w(json!({}))}),
        // 20: a reader issued 13 h ago (beyond the reader cap, exp still ahead).
        tok("ed-1", "EdDSA", r(json!({"iat": now() - 13 * 3600}))),
        // 21: a writer without jti (revoked below by its derived jti).
        no_jti_writer,
    ];
    let t = mint(
        &idp,
        json!({"keys": keys, "jwks": {"jwks.json": ["rsa-1", "ec-1", "ed-1"]}, "tokens": specs}),
    );
    let cfg = config(
        dir.path(),
        &format!(
            "[log]\nflush_interval_ms = 50\n\n[[issuers]]\nissuer = \"{ISS}\"\naudience = \"tracevault\"\n\
             jwks_file = \"{}\"\nrole_claim = \"groups\"\nsubject_prefix = \"idp:\"\n{MAP}",
            idp.join("jwks.json").display()
        ),
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let url = &srv.url;

    // Writers of every algorithm append to their namespace...
    for (i, w) in t[0..3].iter().enumerate() {
        let (s, body) = post_events(&c, url, "prod", w, events(1), "").await;
        assert_eq!(s, 200, "writer token {i}: {body}");
        // ...and nowhere else, and may not query.
        refused(
            post_events(&c, url, "staging", w, events(1), "").await,
            403,
            "forbidden",
            "writer on another namespace",
        );
        refused(
            query(&c, url, w, "SELECT 1").await,
            403,
            "forbidden",
            "writer querying",
        );
    }
    // Readers of every algorithm query what was written in their window.
    for (i, r) in t[3..6].iter().enumerate() {
        let (s, body) = query(&c, url, r, "SELECT count(*) AS n FROM traces").await;
        assert_eq!(s, 200, "reader token {i}: {body}");
        assert_eq!(body["rows"][0][0], 3, "{body}");
        // A reader mapping used on a write endpoint: 403.
        refused(
            post_events(&c, url, "prod", r, events(1), "").await,
            403,
            "forbidden",
            "reader writing",
        );
    }
    // The subject (prefixed) is what the log records as ingested_by.
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let (s, body) = query(
        &c,
        url,
        admin.trim(),
        "SELECT DISTINCT ingested_by FROM traces WHERE ns = 'prod'",
    )
    .await;
    assert_eq!((s, &body["rows"]), (200, &json!([["idp:alice"]])), "{body}");
    // A window from the token's win_from claim; no window at all: 403.
    let (s, body) = query(&c, url, &t[6], "SELECT count(*) AS n FROM traces").await;
    assert_eq!((s, &body["rows"][0][0]), (200, &json!(3)), "{body}");
    refused(
        query(&c, url, &t[7], "SELECT count(*) AS n FROM traces").await,
        403,
        "no_window",
        "reader without a window",
    );

    for (i, what, status, code) in [
        (8, "alg none", 401, "invalid_token"),
        (9, "HS256 keyed with the public key", 401, "invalid_token"),
        (10, "unknown kid", 401, "invalid_token"),
        (11, "a key not in the JWKS", 401, "invalid_token"),
        (12, "wrong aud", 401, "invalid_token"),
        (13, "wrong iss", 401, "invalid_token"),
        (14, "expired", 401, "invalid_token"),
        (15, "nbf in the future", 401, "invalid_token"),
        (16, "no mapped role", 403, "no_role_mapping"),
        (17, "no exp", 401, "invalid_token"),
        (18, "no sub", 401, "invalid_token"),
        (19, "header alg not the key's", 401, "invalid_token"),
        (20, "reader past the lifetime cap", 401, "token_expired"),
    ] {
        refused(
            post_events(&c, url, "prod", &t[i], events(1), "").await,
            status,
            code,
            what,
        );
        refused(vault(&c, url, &t[i]).await, status, code, what);
    }

    // Revocation works for external tokens too, by the derived jti when the
    // token has none.
    let w = &t[21];
    assert_eq!(post_events(&c, url, "prod", w, events(1), "").await.0, 200);
    let signed = w.rsplit_once('.').unwrap().0;
    let jti = format!(
        "ext:{}",
        hex::encode(sha2::Sha256::digest(signed.as_bytes()))
    );
    let (s, body) = send(
        c.post(format!("{url}/v1/tokens/revoke"))
            .header("content-type", "application/json")
            .body(json!({"jti": jti}).to_string()),
        admin.trim(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    refused(
        post_events(&c, url, "prod", w, events(1), "").await,
        401,
        "token_revoked",
        "revoked external token",
    );
    // The vault's own tokens still work beside the external issuer.
    assert_eq!(vault(&c, url, admin.trim()).await.0, 200);
    let own = token(&data, "writer", "prod", "own-writer");
    assert_eq!(
        post_events(&c, url, "prod", &own, events(1), "").await.0,
        200
    );
    assert_eq!(srv.terminate(), Some(0));
}

/// A tiny JWKS server: answers every request with the current status and body.
struct JwksServer {
    url: String,
    reply: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start() -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let reply = Arc::new(Mutex::new((503, String::from("{}"))));
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (reply.clone(), hits.clone());
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (r, h) = (r.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = r.lock().unwrap().clone();
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        JwksServer { url, reply, hits }
    }

    fn set(&self, status: u16, body: &str) {
        *self.reply.lock().unwrap() = (status, body.to_string());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_is_fetched_rotated_and_kept_through_outages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let idp = dir.path().join("idp");
    let w = || claims(json!("pipelines"), json!({}));
    let t = mint(
        &idp,
        json!({
            "keys": {"ed-1": "Ed25519", "rsa-2": "RSA", "ec-3": "P-256"},
            "jwks": {"first.json": ["ed-1"], "rotated.json": ["ed-1", "rsa-2"]},
            "tokens": [tok("ed-1", "EdDSA", w()), tok("rsa-2", "RS256", w()), tok("ec-3", "ES256", w())],
        }),
    );
    let first = std::fs::read_to_string(idp.join("first.json")).unwrap();
    let rotated = std::fs::read_to_string(idp.join("rotated.json")).unwrap();
    let jwks = JwksServer::start().await;
    let cfg = config(
        dir.path(),
        &format!(
            "[[issuers]]\nissuer = \"{ISS}\"\naudience = \"tracevault\"\njwks_url = \"{}\"\n\
             role_claim = \"groups\"\nsubject_prefix = \"idp:\"\nmin_refresh_interval_s = 1\nrefresh_s = 3600\n{MAP}",
            jwks.url
        ),
    );
    // The IdP is down at start: the server starts, refuses that issuer's
    // tokens, and still accepts its own.
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    assert!(jwks.hits() >= 1, "fetched at start-up");
    let c = client();
    let url = &srv.url;
    refused(
        vault(&c, url, &t[0]).await,
        401,
        "issuer_keys_unavailable",
        "no key set yet",
    );
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert_eq!(vault(&c, url, admin.trim()).await.0, 200);

    // The IdP comes back: the next token past the minimum interval loads the set.
    jwks.set(200, &first);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(vault(&c, url, &t[0]).await.0, 200);
    refused(
        vault(&c, url, &t[1]).await,
        401,
        "invalid_token",
        "kid not yet published",
    );

    // Rotation: a new kid appears; its first token reloads the set.
    jwks.set(200, &rotated);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = jwks.hits();
    let (s, body) = vault(&c, url, &t[1]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(jwks.hits(), before + 1);
    let (s, body) = post_events(&c, url, "prod", &t[1], events(2), "").await;
    assert_eq!(s, 200, "{body}");

    // An outage keeps the last good set; unknown kids reload at most once per
    // interval, however many arrive.
    jwks.set(500, "oops");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (before, started) = (jwks.hits(), std::time::Instant::now());
    for _ in 0..20 {
        refused(
            vault(&c, url, &t[2]).await,
            401,
            "invalid_token",
            "unknown kid",
        );
    }
    let fetches = jwks.hits() - before;
    let allowed = 1 + started.elapsed().as_secs() as usize;
    assert!(
        (1..=allowed).contains(&fetches),
        "{fetches} fetches for 20 unknown kids in {:?}",
        started.elapsed()
    );
    assert_eq!(vault(&c, url, &t[0]).await.0, 200);
    assert_eq!(vault(&c, url, &t[1]).await.0, 200);
    // A key set that is not JWKS is no better than an outage.
    jwks.set(200, "<html>login</html>");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refused(
        vault(&c, url, &t[2]).await,
        401,
        "invalid_token",
        "unknown kid",
    );
    assert_eq!(vault(&c, url, &t[1]).await.0, 200);
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn invalid_issuer_configs_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, r#"{"keys": []}"#).unwrap();
    let head = format!(
        "[[issuers]]\nissuer = \"{ISS}\"\naudience = \"tracevault\"\nrole_claim = \"groups\"\nsubject_prefix = \"idp:\"\n"
    );
    let file = format!("jwks_file = \"{}\"\n", jwks.display());
    let writer = "[[issuers.map]]\nvalue = \"a\"\nrole = \"writer\"\nns = [\"prod\"]\n";
    for (i, (text, needle)) in [
        (format!("{head}{file}[[issuers.map]]\nvalue = \"a\"\nrole = \"writer\"\nns = [\"*\"]\n"), "admin role only"),
        (format!("{head}{file}jwks_url = \"https://idp/jwks\"\n{writer}"), "exactly one of jwks_file and jwks_url"),
        (format!("{head}jwks_url = \"http://idp.example.com/jwks\"\n{writer}"), "https://"),
        (format!("{head}{file}algorithms = [\"HS256\"]\n{writer}"), "not supported"),
        (format!("{head}{file}colour = \"blue\"\n{writer}"), "unknown field"),
        (format!("{head}{file}[[issuers.map]]\nvalue = \"a\"\nrole = \"reader\"\nns = [\"prod\"]\nwindow_s = 0\n"), "window_s"),
        (format!("{head}jwks_file = \"/nonexistent/jwks.json\"\n{writer}"), "/nonexistent/jwks.json"),
        (format!("{head}{file}{writer}"), "no usable key"),
    ]
    .into_iter()
    .enumerate()
    {
        let sub = dir.path().join(format!("c{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let cfg = config(&sub, &text);
        let err = match Server::try_start(&sub.join("data"), &["--config", cfg.to_str().unwrap()]) {
            Ok(_) => panic!("started with {text}"),
            Err(e) => e,
        };
        assert!(err.contains(needle), "{needle} not in {err}");
    }
}

/// One person, one identity (issue 12): Alice requests an export with a
/// vault token naming her, then tries to approve it with an approver token
/// of an external issuer whose `identity_claim` names her too; refused as
/// self-approval. Bob, through the same issuer, approves; with
/// `require_person` a token naming nobody may take no step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_cannot_approve_their_own_export_through_a_second_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let idp = dir.path().join("idp");
    let approver = |sub: &str, email: &str| {
        tok(
            "ed-1",
            "EdDSA",
            json!({"iss": ISS, "aud": "tracevault", "sub": sub, "email": email,
                   "iat": now(), "exp": now() + 600, "groups": "approvers"}),
        )
    };
    let t = mint(
        &idp,
        json!({"keys": {"ed-1": "Ed25519"}, "jwks": {"jwks.json": ["ed-1"]},
               "tokens": [approver("a.smith", " Alice@Example.COM"), approver("bob", "bob@example.com")]}),
    );
    let cfg = config(
        dir.path(),
        &format!(
            "[log]\nflush_interval_ms = 50\n[exports]\nrequire_person = true\n\n\
             [[issuers]]\nissuer = \"{ISS}\"\naudience = \"tracevault\"\njwks_file = \"{}\"\n\
             role_claim = \"groups\"\nsubject_prefix = \"idp:\"\nidentity_claim = \"email\"\n\
             [[issuers.map]]\nvalue = \"approvers\"\nrole = \"approver\"\nns = [\"prod\"]\n",
            idp.join("jwks.json").display()
        ),
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let (c, url) = (client(), srv.url.clone());
    let issue =
        |role: &str, sub: &str, extra: &[&str]| common::issue(&data, role, "prod", sub, extra);
    let writer = issue("writer", "w", &[]);
    let alice = issue(
        "reader",
        "alice",
        &[
            "--from",
            "1970-01-01T00:00:00Z",
            "--person",
            "alice@example.com",
        ],
    );
    let nobody = issue("approver", "carol", &[]);
    let (s, b) = post_events(&c, &url, "prod", &writer, events(3), "?wait=checkpoint").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = send(
        c.post(format!("{url}/v1/exports"))
            .json(&json!({"namespace": "prod", "session_id": "s1", "reason": "incident 7"})),
        &alice,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let approve = |id: &str| {
        c.post(format!("{url}/v1/exports/{id}/approve"))
            .json(&json!({}))
    };
    let id = b["id"].as_str().unwrap().to_string();
    refused(
        send(approve(&id), &t[0]).await,
        403,
        "self_approval",
        "alice through the second issuer",
    );
    refused(
        send(approve(&id), &nobody).await,
        403,
        "person_required",
        "an approver token naming nobody",
    );
    let (s, b) = send(approve(&id), &t[1]).await;
    assert_eq!((s, b["state"].as_str()), (200, Some("approved")), "{b}");
    assert_eq!(srv.terminate(), Some(0));
}

/// An external issuer picks its tokens' `jti`s. A token of that issuer
/// carrying the `jti` of the vault's own writer token must not spend that
/// token's write budget: budgets are keyed by issuer and `jti`
/// (`auth::budget_key`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_token_cannot_spend_another_issuers_budget_by_copying_its_jti() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let idp = dir.path().join("idp");
    mint(
        &idp,
        json!({"keys": {"ed-1": "Ed25519"}, "jwks": {"jwks.json": ["ed-1"]}, "tokens": []}),
    );
    let cfg = config(
        dir.path(),
        &format!(
            "[log]\nflush_interval_ms = 50\n\
             [limits]\nwriter_events_per_s = 10\nwriter_burst_events = 100\n\n\
             [[issuers]]\nissuer = \"{ISS}\"\naudience = \"tracevault\"\njwks_file = \"{}\"\n\
             role_claim = \"groups\"\nsubject_prefix = \"idp:\"\n{MAP}",
            idp.join("jwks.json").display()
        ),
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let (c, url) = (client(), srv.url.clone());
    let own = token(&data, "writer", "prod", "pipeline");
    let payload = own.split('.').nth(1).unwrap();
    let own_claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let jti = own_claims["jti"].as_str().unwrap().to_string();
    let twin = mint(
        &idp,
        json!({"keys": {"ed-1": "Ed25519"},
               "tokens": [tok("ed-1", "EdDSA", claims(json!("pipelines"), json!({"jti": jti})))]}),
    )
    .remove(0);
    // The twin spends its whole budget and more (a batch over the allowance
    // passes and leaves the token in debt for about 20 s)...
    let (s, b) = post_events(&c, &url, "prod", &twin, events(300), "").await;
    assert_eq!(s, 200, "{b}");
    refused(
        post_events(&c, &url, "prod", &twin, events(1), "").await,
        429,
        "rate_limited",
        "the twin, in debt",
    );
    // ...and the vault's own token with that jti still writes.
    let (s, b) = post_events(&c, &url, "prod", &own, events(1), "").await;
    assert_eq!(s, 200, "the vault's own token: {b}");
    assert_eq!(srv.terminate(), Some(0));
}

/// An admin of an external issuer cannot approve its own erasure through an
/// approver token it minted over `POST /v1/tokens`, nor through one minted
/// by an admin it minted: the vault follows every token back through
/// whoever minted it, whatever issuer the requester came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_admin_cannot_approve_its_own_erasure_through_tokens_it_minted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let idp = dir.path().join("idp");
    let t = mint(
        &idp,
        json!({"keys": {"ed-1": "Ed25519"}, "jwks": {"jwks.json": ["ed-1"]},
               "tokens": [tok("ed-1", "EdDSA", claims(json!("admins"), json!({"jti": "alice-1"})))]}),
    );
    let cfg = config(
        dir.path(),
        &format!(
            "[log]\nflush_interval_ms = 50\n\n\
             [[issuers]]\nissuer = \"{ISS}\"\naudience = \"tracevault\"\njwks_file = \"{}\"\n\
             role_claim = \"groups\"\nsubject_prefix = \"idp:\"\n\
             [[issuers.map]]\nvalue = \"admins\"\nrole = \"admin\"\nns = [\"prod\"]\n",
            idp.join("jwks.json").display()
        ),
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let (c, url) = (client(), srv.url.clone());
    let alice = &t[0];
    let writer = common::issue(&data, "writer", "prod", "w", &[]);
    let (s, b) = post_events(&c, &url, "prod", &writer, events(2), "?wait=checkpoint").await;
    assert_eq!(s, 200, "{b}");
    async fn post_at(c: &reqwest::Client, at: String, tok: &str, body: Value) -> (u16, Value) {
        send(c.post(at).json(&body), tok).await
    }
    let (s, b) = post_at(
        &c,
        format!("{url}/v1/erasures"),
        alice,
        json!({"namespace": "prod", "session_id": "s1", "reason": "data subject request"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let tokens_at = format!("{url}/v1/tokens");
    let mint_token = |tok: String, role: &'static str, sub: &'static str| {
        let body = json!({"role": role, "ns": ["prod"], "sub": sub, "ttl_s": 600});
        let (c, at) = (c.clone(), tokens_at.clone());
        async move { post_at(&c, at, &tok, body).await }
    };
    // Not under a name of the external issuer's own subjects.
    let (s, b) = mint_token(alice.clone(), "approver", "idp:bob").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("reserved_sub")),
        "{b}"
    );
    let (s, b) = mint_token(alice.clone(), "approver", "dpo").await;
    assert_eq!(s, 200, "{b}");
    let puppet = b["token"].as_str().unwrap().to_string();
    let (s, b) = mint_token(alice.clone(), "admin", "deputy").await;
    assert_eq!(s, 200, "{b}");
    let deputy = b["token"].as_str().unwrap().to_string();
    let (s, b) = mint_token(deputy, "approver", "dpo-2").await;
    assert_eq!(s, 200, "{b}");
    let puppet2 = b["token"].as_str().unwrap().to_string();
    for (who, tok) in [
        ("minted by alice", &puppet),
        ("minted by alice's deputy", &puppet2),
    ] {
        refused(
            post_at(
                &c,
                format!("{url}/v1/erasures/{id}/approve"),
                tok,
                json!({}),
            )
            .await,
            403,
            "self_approval",
            who,
        );
    }
    // An approver alice had nothing to do with decides.
    let bob = common::issue(&data, "approver", "prod", "bob", &[]);
    let (s, b) = post_at(
        &c,
        format!("{url}/v1/erasures/{id}/approve"),
        &bob,
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(srv.terminate(), Some(0));
}
