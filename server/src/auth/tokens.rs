//! Token issue and revocation over HTTP (admin): `POST /v1/tokens` and
//! `POST /v1/tokens/revoke`, each recorded in `_audit` before it takes
//! effect. An admin issues and revokes only within its own namespaces, and
//! each issue records who minted the token (issuer, subject, person, token
//! id), so that the two-person rules can follow a token back to everyone
//! who minted it ([`minters`]).

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tracevault_vault::approval::Actor;
use tracevault_vault::token::{Claims, MAX_JTI_BYTES, Role};
use tracevault_vault::{Vault, VaultError, validate_namespace};

use crate::{ApiError, AppState, audit, auth, body_bytes};

/// Refuses a namespace the calling admin does not cover: an admin of
/// `alpha` issuing a token for `beta`, for `*` or for `_audit` would be
/// handing itself (or anyone) more than it holds.
fn within_scope(claims: &Claims, ns: &[String]) -> Result<(), ApiError> {
    match ns.iter().find(|n| !claims.allows_ns(n)) {
        None => Ok(()),
        Some(n) => Err(ApiError::forbidden(
            "outside_scope",
            format!(
                "this admin token does not cover namespace {n}, so it cannot issue or revoke tokens for it"
            ),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    role: String,
    #[serde(alias = "namespaces")]
    ns: Vec<String>,
    sub: String,
    #[serde(default)]
    ttl_s: Option<i64>,
    #[serde(default)]
    win_from: Option<String>,
    #[serde(default)]
    win_to: Option<String>,
    #[serde(default)]
    person: Option<String>,
}

pub(crate) async fn issue_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    let body = body_bytes(body, st.limits.max_body_bytes)?;
    auth::authorize(&claims, &[Role::Admin], None)?;
    let req: TokenRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_role",
            "role must be writer, reader, approver or admin",
        )
    })?;
    for ns in &req.ns {
        if !(ns == "*" && role == Role::Admin) {
            validate_namespace(ns, role == Role::Admin)?;
        }
    }
    within_scope(&claims, &req.ns)?;
    // Names that would pass for someone else's: the server's own (what it
    // writes about itself) and an external issuer's subjects.
    if req.sub == audit::SERVER {
        return Err(ApiError::bad_request(
            "reserved_sub",
            format!("sub {:?} is the server's own name", audit::SERVER),
        ));
    }
    if let Some(prefix) = st.external.prefix_of(&req.sub) {
        return Err(ApiError::bad_request(
            "reserved_sub",
            format!("subjects starting with {prefix:?} are those of an external issuer"),
        ));
    }
    for (name, w) in [("win_from", &req.win_from), ("win_to", &req.win_to)] {
        if let Some(w) = w {
            tracevault_schemas::parse_timestamp(name, w)
                .map_err(|e| ApiError::bad_request("invalid_window", e.to_string()))?;
        }
    }
    let ttl = req.ttl_s.unwrap_or(3600);
    let max_ttl = if role == Role::Reader {
        st.limits
            .max_token_ttl_s
            .min(st.limits.max_reader_token_ttl_s)
    } else {
        st.limits.max_token_ttl_s
    };
    if ttl <= 0 || ttl > max_ttl {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            format!("ttl_s must be between 1 and {max_ttl} for this role"),
        ));
    }
    if role == Role::Reader && req.win_from.is_none() {
        return Err(ApiError::bad_request(
            "window_required",
            "a reader token needs win_from (for all of history: 1970-01-01T00:00:00Z)",
        ));
    }
    let (token, new) = st
        .tokens
        .issue_for(
            role,
            req.ns,
            &req.sub,
            ttl,
            (req.win_from, req.win_to),
            req.person.as_deref(),
        )
        .map_err(|e| ApiError::bad_request("invalid_token_request", e.to_string()))?;
    // Recorded before it is handed out: a token that is not in the access
    // log never leaves the server.
    let record = json!({"jti": new.jti, "role": new.role, "ns": new.ns, "sub": new.sub,
        "iat": new.iat, "exp": new.exp, "win_from": new.win_from, "win_to": new.win_to,
        "person": new.person,
        "minted_by": {"iss": claims.iss, "sub": claims.sub, "person": claims.person,
            "jti": claims.jti}});
    audit::append(
        &st.vault,
        vec![audit::event(
            audit::TOKEN_ISSUES,
            "token_issued",
            &claims.sub,
            record,
        )],
    )
    .await?;
    Ok(Json(json!({"token": token, "claims": new})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    jti: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/tokens/revoke` (admin): records the revocation in `_audit`,
/// then refuses the token everywhere on this server at once.
pub(crate) async fn revoke_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    auth::authorize(&claims, &[Role::Admin], None)?;
    let body = body_bytes(body, st.limits.max_body_bytes)?;
    let req: RevokeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    if req.jti.is_empty() || req.jti.len() > MAX_JTI_BYTES {
        return Err(ApiError::bad_request(
            "invalid_jti",
            format!("jti must be 1-{MAX_JTI_BYTES} bytes"),
        ));
    }
    if req.reason.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(ApiError::bad_request(
            "invalid_reason",
            "reason is at most 1024 bytes",
        ));
    }
    // An admin of some namespaces revokes only tokens it can see were
    // issued for them alone (a token id is revoked for every issuer, so an
    // unknown id could be anyone's).
    if !claims.allows_ns("*") {
        match issued(&st.vault, &req.jti).await? {
            // (A record naming no namespace is out of every scope.)
            Some(t) if !t.ns.is_empty() => within_scope(&claims, &t.ns)?,
            _ => {
                return Err(ApiError::forbidden(
                    "outside_scope",
                    "this admin token covers some namespaces only: it revokes tokens issued over /v1/tokens for those namespaces, and this id is not one",
                ));
            }
        }
    }
    let receipt = st
        .revocations
        .revoke(&st.vault, &req.jti, &claims.sub, req.reason.as_deref())
        .await?;
    Ok(Json(json!({"revoked": req.jti, "receipt": receipt})))
}

/// A token issued over `POST /v1/tokens`, as `_audit` recorded it.
pub(crate) struct Issued {
    /// Its namespaces.
    pub ns: Vec<String>,
    /// Who minted it. Records written before the minter's issuer was
    /// recorded name only its subject (`iss` empty, `jti` unknown).
    pub minted_by: Actor,
    /// The token the minter used, when recorded.
    pub minted_with: Option<String>,
}

/// Every token issued over HTTP, by token id (later records win; ids are
/// random, so there is one per id).
async fn issued_all(vault: &Vault) -> Result<HashMap<String, Issued>, VaultError> {
    let entries = vault
        .session_entries(audit::AUDIT_NS, audit::TOKEN_ISSUES)
        .await?;
    let mut out = HashMap::with_capacity(entries.len());
    for e in entries {
        let Some(c) = e
            .content
            .as_deref()
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
        else {
            continue;
        };
        let Some(jti) = c.get("jti").and_then(Value::as_str) else {
            continue;
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let by = c.get("minted_by");
        let minted_by = Actor {
            iss: text(by.and_then(|b| b.get("iss"))).unwrap_or_default(),
            sub: text(by.and_then(|b| b.get("sub")))
                .or_else(|| e.actor.clone())
                .unwrap_or_default(),
            person: text(by.and_then(|b| b.get("person"))),
        };
        let ns = c
            .get("ns")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            jti.to_string(),
            Issued {
                ns,
                minted_by,
                minted_with: text(by.and_then(|b| b.get("jti"))),
            },
        );
    }
    Ok(out)
}

/// Token `jti` as recorded when it was issued over HTTP, if it was.
pub(crate) async fn issued(vault: &Vault, jti: &str) -> Result<Option<Issued>, ApiError> {
    Ok(issued_all(vault).await?.remove(jti))
}

/// Longest chain of minters followed back from one token.
const MAX_MINT_CHAIN: usize = 64;

/// Everyone who minted token `jti`, nearest first: its minter, the minter
/// of the token that minter used, and so on, as far as `_audit` recorded
/// (tokens minted on the box with `tracevault token issue`, and external
/// issuers' tokens, are where a chain ends). An admin who mints an admin
/// who mints an approver still stands behind that approver.
pub(crate) async fn minters(vault: &Vault, jti: &str) -> Result<Vec<Actor>, ApiError> {
    let all = issued_all(vault).await?;
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut at = jti.to_string();
    while chain.len() < MAX_MINT_CHAIN && seen.insert(at.clone()) {
        let Some(t) = all.get(&at) else { break };
        chain.push(t.minted_by.clone());
        match &t.minted_with {
            Some(next) => at = next.clone(),
            None => break,
        }
    }
    Ok(chain)
}

/// Whether `minter` (as [`minters`] returns it) may be `who`: the same
/// person by [`Actor::same_person`], or, for a record that named no issuer,
/// the same subject under any issuer, or, for one that named no minter,
/// anyone (fails closed).
pub(crate) fn may_be(minter: &Actor, who: &Actor) -> bool {
    // A record naming no minter at all (the server always writes one) could
    // be anyone's: fail closed.
    if minter.sub.is_empty() {
        return true;
    }
    if minter.iss.is_empty() {
        let assumed = Actor {
            iss: who.iss.clone(),
            ..minter.clone()
        };
        assumed.same_person(who)
    } else {
        minter.same_person(who)
    }
}
