//! Token life cycle against a real server: issue and revoke over HTTP, both
//! recorded in the vault's own `_audit` log (read back with pyarrow), the
//! revocation effective at once and after a restart, the reader lifetime cap
//! applied whatever `exp` says, denied requests recorded too, and an admin
//! of some namespaces held to them.

mod common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use common::*;
use ed25519_dalek::Signer;
use serde_json::{Value, json};
use sha2::Digest;

/// Signs `claims` as an EdDSA JWT with the data dir's issuer key, exactly as
/// the server would (to craft tokens the CLI refuses to make).
fn sign_with_issuer_key(data: &std::path::Path, mut claims: Value) -> String {
    let seed = B64
        .decode(
            std::fs::read_to_string(data.join("keys/issuer.key"))
                .unwrap()
                .trim(),
        )
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed.try_into().unwrap());
    let kid = hex::encode(&sha2::Sha256::digest(key.verifying_key().to_bytes())[..8]);
    claims["iss"] = json!(format!("tracevault/{kid}"));
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = key.sign(format!("{header}.{payload}").as_bytes());
    format!(
        "{header}.{payload}.{}",
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_immediate_recorded_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[log]\nflush_interval_ms = 50\n");
    let args = ["--config", cfg.to_str().unwrap()];
    let srv = Server::start(&data, &args);
    let c = client();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let admin = admin.trim();

    let (s, issued) = post_json(
        &c,
        &format!("{}/v1/tokens", srv.url),
        admin,
        json!({"role": "writer", "ns": ["alpha"], "sub": "pipeline-7", "ttl_s": 600}),
    )
    .await;
    assert_eq!(s, 200, "{issued}");
    let w = issued["token"].as_str().unwrap().to_string();
    let jti = issued["claims"]["jti"].as_str().unwrap().to_string();
    let ev = json!({"events": [{"session_id": "s", "kind": "output", "content": "x"}]});
    assert_eq!(
        post_events(&c, &srv.url, "alpha", &w, ev.clone(), "")
            .await
            .0,
        200
    );

    // Only admins revoke.
    let (s, _) = post_json(
        &c,
        &format!("{}/v1/tokens/revoke", srv.url),
        &w,
        json!({"jti": jti}),
    )
    .await;
    assert_eq!(s, 403);
    let (s, r) = post_json(
        &c,
        &format!("{}/v1/tokens/revoke", srv.url),
        admin,
        json!({"jti": jti, "reason": "laptop stolen"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    // Effective at once, everywhere on the server.
    let (s, body) = post_events(&c, &srv.url, "alpha", &w, ev.clone(), "").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("token_revoked")),
        "{body}"
    );
    assert_eq!(
        get(&c, &format!("{}/v1/vault", srv.url), Some(&w)).await.0,
        401
    );
    // Other tokens are unaffected.
    let w2 = token(&data, "writer", "alpha", "other");
    assert_eq!(
        post_events(&c, &srv.url, "alpha", &w2, ev.clone(), "")
            .await
            .0,
        200
    );
    // A garbage token: denied, and the denial is recorded.
    assert_eq!(
        get(&c, &format!("{}/v1/vault", srv.url), Some("not.a.token"))
            .await
            .0,
        401
    );
    // A denial anyone can cause: what it leaves in `_audit` (never erased)
    // is bounded and plain, whatever path and request id the caller chose.
    let r = c
        .post(format!("{}/v1/logs/jane.doe@example.com/events", srv.url))
        .bearer_auth("not.a.token")
        .header("x-request-id", "x".repeat(2000))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(srv.terminate(), Some(0));

    // After a restart the revocation still holds: it is read back from _audit.
    let srv = Server::start(&data, &args);
    let (s, body) = post_events(&c, &srv.url, "alpha", &w, ev.clone(), "").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("token_revoked")),
        "{body}"
    );
    assert_eq!(post_events(&c, &srv.url, "alpha", &w2, ev, "").await.0, 200);
    assert_eq!(srv.terminate(), Some(0));

    // The access log, read with pyarrow: the issue, the revocation (with who
    // and why) and the denied requests, all in the verified vault.
    let rows = stored_rows(&data, "_audit");
    let named = |n: &str| -> Vec<Value> {
        rows.iter()
            .filter(|r| r["name"] == n)
            .map(|r| serde_json::from_str(r["content"].as_str().unwrap()).unwrap())
            .collect()
    };
    let issues = named("token_issued");
    assert_eq!(issues.len(), 1, "{rows:?}");
    assert_eq!(issues[0]["jti"], jti.as_str());
    assert_eq!(issues[0]["sub"], "pipeline-7");
    let revs = named("token_revoked");
    assert_eq!(revs.len(), 1);
    assert_eq!(
        (revs[0]["jti"].as_str(), revs[0]["reason"].as_str()),
        (Some(jti.as_str()), Some("laptop stolen"))
    );
    // Denied requests are counted per kind, one record per interval.
    let denied: Vec<Value> = named("requests_denied")
        .iter()
        .flat_map(|r| r["groups"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        denied
            .iter()
            .any(|d| d["code"] == "token_revoked" && d["path"] == "/v1/logs/alpha/events"),
        "{denied:?}"
    );
    assert!(
        denied
            .iter()
            .any(|d| d["code"] == "forbidden" && d["path"] == "/v1/tokens/revoke"),
        "{denied:?}"
    );
    assert!(
        denied.iter().any(|d| d["code"] == "invalid_token"),
        "{denied:?}"
    );
    let planted: Vec<&Value> = denied
        .iter()
        .filter(|d| d["path"] == "/v1/logs/jane.doe_example.com/events")
        .collect();
    assert_eq!(planted.len(), 1, "{denied:?}");
    assert!(planted[0]["first_request_id"].is_null(), "{denied:?}");
    assert!(
        rows.iter()
            .all(|r| !r["content"].as_str().unwrap_or("").contains('@')
                && !r["content"]
                    .as_str()
                    .unwrap_or("")
                    .contains("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["ingested_by"] == "tracevault"));
    let (code, out, err) = verify(&["--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 namespaces"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_tokens_are_capped_whatever_exp_says() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &[]);
    let c = client();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    // Over HTTP a reader token longer than 12 h is refused.
    let (s, body) = post_json(
        &c,
        &format!("{}/v1/tokens", srv.url),
        admin.trim(),
        json!({"role": "reader", "ns": ["alpha"], "sub": "auditor", "ttl_s": 13 * 3600}),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("invalid_ttl")),
        "{body}"
    );

    let now = chrono::Utc::now().timestamp();
    let claims = |iat: i64, exp: i64, role: &str| {
        json!({"sub": "auditor", "aud": "tracevault", "win_from": "1970-01-01T00:00:00Z",
        "iat": iat, "exp": exp, "jti": format!("j{iat}{role}"), "role": role, "ns": ["alpha"]})
    };
    // A fresh reader token signed like the server's works (the crafting is right)...
    let fresh = sign_with_issuer_key(&data, claims(now, now + 3600, "reader"));
    assert_eq!(
        get(&c, &format!("{}/v1/vault", srv.url), Some(&fresh))
            .await
            .0,
        200
    );
    // ...one issued 13 h ago is refused although its exp is still ahead...
    let old = sign_with_issuer_key(&data, claims(now - 13 * 3600, now + 3600, "reader"));
    let r = c
        .get(format!("{}/v1/vault", srv.url))
        .bearer_auth(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_expired");
    // A reader token without a window (signed by hand: the issuer refuses to
    // mint one) reads nothing.
    let mut bare = claims(now, now + 3600, "reader");
    bare.as_object_mut().unwrap().remove("win_from");
    let bare = sign_with_issuer_key(&data, bare);
    let (s, body) = get(&c, &format!("{}/v1/vault", srv.url), Some(&bare)).await;
    assert_eq!(s, 403, "{body}");
    // Nor can one be issued, on the command line or over HTTP.
    let out = std::process::Command::new(common::BIN)
        .args(["token", "issue", "--data", data.to_str().unwrap()])
        .args(["--role", "reader", "--namespace", "alpha", "--sub", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("window"));
    let (s, body) = post_json(
        &c,
        &format!("{}/v1/tokens", srv.url),
        admin.trim(),
        json!({"role": "reader", "ns": ["alpha"], "sub": "auditor", "ttl_s": 60}),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("window_required")),
        "{body}"
    );
    // The vault's own tokens get no clock leeway: one that expired a second
    // ago is refused (it was accepted for 30 s before).
    let just_expired = sign_with_issuer_key(&data, claims(now - 60, now - 1, "writer"));
    let (s, body) = get(&c, &format!("{}/v1/vault", srv.url), Some(&just_expired)).await;
    assert_eq!(s, 401, "{body}");
    // ...while the cap is for readers only.
    let writer = sign_with_issuer_key(&data, claims(now - 13 * 3600, now + 3600, "writer"));
    assert_eq!(
        get(&c, &format!("{}/v1/vault", srv.url), Some(&writer))
            .await
            .0,
        200
    );
}

/// An admin of some namespaces issues and revokes tokens for those alone:
/// not for another namespace, not `*`, not `_audit` (which would hand it, or
/// anyone, more than it holds), and it revokes only ids it can see were
/// issued for its namespaces (an id is revoked for every issuer, so an
/// unknown one could be anyone's). Subjects that differ from another only
/// by spaces or invisible characters are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_issues_and_revokes_only_within_its_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &[]);
    let c = client();
    let root = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let root = root.trim();
    let scoped = token(&data, "admin", "alpha", "alpha-admin");
    let issue = |tok: &str, body: Value| {
        let (c, url, tok) = (c.clone(), format!("{}/v1/tokens", srv.url), tok.to_string());
        async move { post_json(&c, &url, &tok, body).await }
    };
    let revoke = |tok: &str, jti: &str| {
        let (c, url, tok) = (
            c.clone(),
            format!("{}/v1/tokens/revoke", srv.url),
            tok.to_string(),
        );
        let body = json!({"jti": jti});
        async move { post_json(&c, &url, &tok, body).await }
    };
    for (role, ns) in [
        ("writer", json!(["beta"])),
        ("writer", json!(["alpha", "beta"])),
        ("admin", json!(["*"])),
        ("admin", json!(["_audit"])),
    ] {
        let (s, b) = issue(
            &scoped,
            json!({"role": role, "ns": ns, "sub": "x", "ttl_s": 60}),
        )
        .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (403, Some("outside_scope")),
            "{role} {ns}: {b}"
        );
    }
    let (s, own) = issue(
        &scoped,
        json!({"role": "writer", "ns": ["alpha"], "sub": "pipe", "ttl_s": 60}),
    )
    .await;
    assert_eq!(s, 200, "{own}");
    let (s, other) = issue(
        root,
        json!({"role": "writer", "ns": ["beta"], "sub": "pipe", "ttl_s": 60}),
    )
    .await;
    assert_eq!(s, 200, "{other}");
    // Another namespace's token, and a token not issued over HTTP: refused.
    let other_jti = other["claims"]["jti"].as_str().unwrap();
    let (s, b) = revoke(&scoped, other_jti).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("outside_scope")),
        "{b}"
    );
    let (s, b) = revoke(&scoped, "an-id-nobody-issued-here").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("outside_scope")),
        "{b}"
    );
    let ev = json!({"events": [{"session_id": "s", "kind": "output", "content": "x"}]});
    let other_tok = other["token"].as_str().unwrap();
    assert_eq!(
        post_events(&c, &srv.url, "beta", other_tok, ev.clone(), "")
            .await
            .0,
        200
    );
    // Its own namespace's: revoked. The root admin revokes anything.
    let (s, b) = revoke(&scoped, own["claims"]["jti"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{b}");
    let own_tok = own["token"].as_str().unwrap();
    assert_eq!(
        post_events(&c, &srv.url, "alpha", own_tok, ev.clone(), "")
            .await
            .0,
        401
    );
    let (s, b) = revoke(root, other_jti).await;
    assert_eq!(s, 200, "{b}");
    // The server's own name is nobody's subject.
    let (s, b) = issue(
        root,
        json!({"role": "writer", "ns": ["alpha"], "sub": "tracevault", "ttl_s": 60}),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("reserved_sub")),
        "{b}"
    );
    // A subject that would look like another one.
    for sub in ["alice ", " alice", "ali\u{200b}ce", "alice\u{202e}"] {
        let (s, b) = issue(
            root,
            json!({"role": "approver", "ns": ["alpha"], "sub": sub, "ttl_s": 60}),
        )
        .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("invalid_token_request")),
            "{sub:?}: {b}"
        );
    }
    assert_eq!(srv.terminate(), Some(0));
}
