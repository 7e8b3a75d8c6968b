//! Calls one node makes to another (SPEC section 11): `_audit` records and
//! workflow steps (exports, erasures) are made by the node holding
//! `_audit`'s lease, so that every step is checked against the whole
//! history, in one place, and two nodes can never both accept one download
//! or two approvals by one person. The other nodes call it.
//!
//! A call is authenticated by the log key the nodes share, not by a token:
//! it is signed over its path, a timestamp, a random nonce and its body's
//! SHA-256, which travels in a header too, so the callee checks the
//! signature before it reads a byte of the body (a caller without the key
//! costs it no memory) and the body against the digest once read. The
//! callee refuses a call older than [`MAX_SKEW_MS`], made before the callee
//! started, or seen before (the nonce cache), so a captured call cannot be
//! played again, not even across a restart that emptied the cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Verifier};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tracevault_vault::Vault;

use super::{live_node_url, now_ms};
use crate::ApiError;

/// Where the routes called by other nodes live (`/v1/internal/...`): they
/// take no token, only calls signed by the log key ([`authenticate`]).
pub const INTERNAL_PREFIX: &str = "/v1/internal/";

/// Domain separator of call signatures.
const CALL_DOMAIN: &[u8] = b"tracevault/node-call/v1\n";
/// Header naming the calling node.
const NODE: &str = "x-tracevault-node";
/// Header carrying the call's time (Unix ms).
const TS: &str = "x-tracevault-node-ts";
/// Header carrying the call's nonce (hex, 16 bytes).
const NONCE: &str = "x-tracevault-node-nonce";
/// Header carrying the call's signature (base64).
const SIG: &str = "x-tracevault-node-sig";
/// Header carrying the SHA-256 of the call's body (hex), which the
/// signature covers.
const BODY: &str = "x-tracevault-node-body";
/// How far a call's time may be from the callee's clock.
pub const MAX_SKEW_MS: i64 = 30_000;
/// Most nonces remembered (calls within the skew window beyond this are
/// refused with 503 until older ones age out: fail closed).
const MAX_NONCES: usize = 200_000;
/// Longest a call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from a callee.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// What a call's signature covers: the node it is addressed to (a call
/// captured on its way to one node is refused by every other), its path,
/// time, nonce and body.
fn signed_message(to: &str, path: &str, ts: i64, nonce: &str, body_sha256: &str) -> Vec<u8> {
    let mut m = CALL_DOMAIN.to_vec();
    m.extend_from_slice(format!("{to}\n{path}\n{ts}\n{nonce}\n").as_bytes());
    m.extend_from_slice(body_sha256.as_bytes());
    m
}

/// When this process started taking calls (Unix ms): a call made before it
/// is refused, since the nonces of the previous process are forgotten.
fn started_ms() -> i64 {
    static S: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *S.get_or_init(now_ms)
}

/// Marks the moment this node starts taking calls (called once at start;
/// otherwise the first call marks it, and is refused as made before it).
pub fn mark_started() {
    started_ms();
}

/// Calls `path` on node `owner` (which holds `_audit`) with `body`, signed
/// with the log key. Returns the callee's JSON answer; an error answer is
/// returned as the callee gave it (status, code and message), so that the
/// client sees the same refusal whichever node it asked.
pub async fn call<T: DeserializeOwned>(
    vault: &Vault,
    owner: &str,
    path: &str,
    body: &impl Serialize,
) -> Result<T, ApiError> {
    let unreachable = || {
        ApiError::unavailable(
            "holder_unreachable",
            format!(
                "node {owner} holds the vault's _audit log and has no live, signed registration to call; retry"
            ),
        )
    };
    let base = live_node_url(vault, owner).await.ok_or_else(unreachable)?;
    let body =
        serde_json::to_vec(body).map_err(|e| ApiError::unavailable("internal", e.to_string()))?;
    let ts = now_ms();
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).map_err(|e| {
        ApiError::unavailable("internal", format!("no randomness for a call nonce: {e}"))
    })?;
    let nonce = hex::encode(n);
    let digest = hex::encode(Sha256::digest(&body));
    let sig = vault.sign_node_message(&signed_message(owner, path, ts, &nonce, &digest));
    let r = super::forward::http()
        .post(format!("{}{path}", base.trim_end_matches('/')))
        .timeout(CALL_TIMEOUT)
        .header(NODE, vault.instance_id())
        .header(TS, ts.to_string())
        .header(NONCE, nonce)
        .header(SIG, B64.encode(sig.to_bytes()))
        .header(BODY, digest)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            ApiError::unavailable("holder_unreachable", format!("calling node {owner}: {e}"))
        })?;
    let status = r.status().as_u16();
    if r.content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(ApiError::unavailable(
            "holder_unreachable",
            format!("node {owner} answered too much"),
        ));
    }
    let bytes = r.bytes().await.map_err(|e| {
        ApiError::unavailable(
            "holder_unreachable",
            format!("reading node {owner}'s answer: {e}"),
        )
    })?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::unavailable("holder_unreachable", format!("node {owner}'s answer: {e}"))
        });
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let code = v["error"]["code"].as_str().unwrap_or("holder_refused");
    if status == 401 {
        // The call itself was refused (skew, key): the node's fault, not
        // the client's token.
        return Err(ApiError::unavailable(
            "holder_refused",
            format!(
                "node {owner} refused this node's call: {}",
                v["error"]["message"]
            ),
        ));
    }
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or("the node holding _audit refused");
    Err(ApiError::new(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        crate::error::intern_code(code),
        message,
    ))
}

/// Nonces seen within the skew window (and when they may be forgotten).
fn seen() -> &'static Mutex<HashMap<String, i64>> {
    static S: std::sync::OnceLock<Mutex<HashMap<String, i64>>> = std::sync::OnceLock::new();
    S.get_or_init(Mutex::default)
}

/// A call a node made, authenticated from its headers ([`authenticate`]);
/// its body is still to be checked against the signed digest
/// ([`Caller::check_body`]). Put on the request by the body guard, and
/// required by every internal route.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The calling node.
    pub node: String,
    body_sha256: String,
}

impl Caller {
    /// Whether `body` is the body the caller signed.
    pub fn check_body(&self, body: &[u8]) -> Result<(), ApiError> {
        if hex::encode(Sha256::digest(body)) == self.body_sha256 {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "not_a_node",
                "the call's body is not the one its signature covers",
            ))
        }
    }
}

/// Checks, from its headers alone, that a request to an internal route is a
/// call from a node of this cluster: signed with the log key over this
/// `path`, a time within [`MAX_SKEW_MS`] and not before this node started,
/// a nonce not seen before, and the body's digest. Fails closed (401).
pub fn authenticate(vault: &Vault, path: &str, headers: &HeaderMap) -> Result<Caller, ApiError> {
    check_call(
        &vault.public_key(),
        vault.instance_id(),
        path,
        headers,
        started_ms(),
    )
}

/// [`authenticate`] for node `me` with log key `key`, started at `started`.
fn check_call(
    key: &ed25519_dalek::VerifyingKey,
    me: &str,
    path: &str,
    headers: &HeaderMap,
    started: i64,
) -> Result<Caller, ApiError> {
    let refuse = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "not_a_node", m.to_string());
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(node), Some(ts), Some(nonce), Some(sig), Some(digest)) =
        (h(NODE), h(TS), h(NONCE), h(SIG), h(BODY))
    else {
        return Err(refuse(
            "internal routes take calls from the cluster's nodes only",
        ));
    };
    let ts: i64 = ts.parse().map_err(|_| refuse("malformed call time"))?;
    let now = now_ms();
    if (now - ts).abs() > MAX_SKEW_MS {
        return Err(refuse("the call's time is too far from this node's clock"));
    }
    if ts < started {
        return Err(refuse(
            "the call was made before this node started (a replay?); call again",
        ));
    }
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refuse("malformed call nonce"));
    }
    if digest.len() != 64
        || !digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(refuse("malformed call body digest"));
    }
    let sig = B64
        .decode(sig)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| refuse("malformed call signature"))?;
    key.verify(&signed_message(me, path, ts, nonce, digest), &sig)
        .map_err(|_| refuse("the call is not signed by the log key"))?;
    let mut s = seen()
        .lock()
        .map_err(|_| refuse("nonce cache unavailable"))?;
    if s.len() >= MAX_NONCES {
        s.retain(|_, until| *until > now);
        if s.len() >= MAX_NONCES {
            return Err(ApiError::unavailable(
                "overloaded",
                "too many node calls at once",
            ));
        }
    }
    if s.insert(nonce.to_string(), ts + MAX_SKEW_MS).is_some() {
        return Err(refuse("this call was made before (replayed)"));
    }
    Ok(Caller {
        node: node.to_string(),
        body_sha256: digest.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use ed25519_dalek::{Signer, SigningKey};

    /// A call to node `to` at `ts`, signed by `key`, with body `body`.
    fn call(key: &SigningKey, to: &str, ts: i64, nonce: &str, body: &[u8]) -> HeaderMap {
        let digest = hex::encode(Sha256::digest(body));
        let sig = key.sign(&signed_message(to, "/v1/internal/x", ts, nonce, &digest));
        let mut h = HeaderMap::new();
        for (k, v) in [
            (NODE, "n2".to_string()),
            (TS, ts.to_string()),
            (NONCE, nonce.to_string()),
            (SIG, B64.encode(sig.to_bytes())),
            (BODY, digest),
        ] {
            h.insert(k, HeaderValue::from_str(&v).unwrap());
        }
        h
    }

    #[test]
    fn a_call_is_checked_before_its_body_and_never_taken_twice() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let vk = key.verifying_key();
        let started = now_ms() - 5_000;
        let check = |h: &HeaderMap| check_call(&vk, "n1", "/v1/internal/x", h, started);
        let body = b"{\"events\": []}";
        let nonce = |c: char| c.to_string().repeat(32);
        // Genuine: taken once, with the body it signed only.
        let genuine = call(&key, "n1", now_ms(), &nonce('a'), body);
        let caller = check(&genuine).unwrap();
        assert_eq!(caller.node, "n2");
        caller.check_body(body).unwrap();
        assert!(caller.check_body(b"{\"events\": [1]}").is_err());
        assert!(check(&genuine).is_err(), "replayed");
        // Made before this node started: its nonce may have been seen by the
        // process before, whose cache is gone.
        let before = call(&key, "n1", started - 1, &nonce('b'), body);
        let e = check(&before).unwrap_err();
        assert!(e.message.contains("before this node started"), "{e:?}");
        // Another key, another node, no digest: refused.
        let stranger = SigningKey::from_bytes(&[4; 32]);
        assert!(check(&call(&stranger, "n1", now_ms(), &nonce('c'), body)).is_err());
        assert!(check(&call(&key, "n3", now_ms(), &nonce('d'), body)).is_err());
        let mut no_digest = call(&key, "n1", now_ms(), &nonce('e'), body);
        no_digest.remove(BODY);
        assert!(check(&no_digest).is_err());
    }
}
