//! The read side's HTTP endpoints, wired here because they join the two
//! sibling crates: `ingest` (server state, authentication, errors, the access
//! log) and `query` (masking). Every row that leaves the server through them
//! is masked per the caller's profile and recorded in `_audit` first.
//!
//! - `GET /v1/logs/{ns}/entries/{index}` (reader, admin): the committed record
//!   (what the leaf hash covers: digests only for content and attributes) and
//!   the stored event, masked.

use std::path::Path as FsPath;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use tracevault_ingest::{ApiError, AppState, audit, auth};
use tracevault_query::masking::{Masker, Policy};
use tracevault_vault::token::{Claims, Role};

/// What the read endpoints need besides the server state.
pub struct ReadContext {
    /// The masking policy (the built-in strict one unless configured).
    pub policy: Policy,
    /// Key of the `hash` action; never leaves the server.
    pub hash_key: [u8; 32],
}

impl ReadContext {
    /// Loads the policy file (if any) and the hash key
    /// (`<data>/keys/masking.key`, created 0600 on first use).
    pub fn load(data: &FsPath, policy_file: Option<&FsPath>) -> anyhow::Result<ReadContext> {
        let policy = match policy_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading masking policy {}", p.display()))?;
                Policy::from_toml(&text)
                    .with_context(|| format!("masking policy {}", p.display()))?
            }
            None => Policy::default_policy(),
        };
        let (key, _) = tracevault_vault::keys::load_or_create(&data.join("keys/masking.key"))?;
        Ok(ReadContext {
            policy,
            hash_key: key.to_bytes(),
        })
    }
}

/// The read routes, to be merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/logs/{ns}/entries/{index}", get(entry))
}

/// A reader's window as Unix microseconds (inclusive bounds).
fn window(c: &Claims) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let parse = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| {
                tracevault_schemas::parse_timestamp(name, s)
                    .map(|t| t.timestamp_micros())
                    .map_err(|e| {
                        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
                    })
            })
            .transpose()
    };
    Ok((parse("win_from", &c.win_from)?, parse("win_to", &c.win_to)?))
}

/// Masks the stored event in place: string fields per their column, JSON
/// content and attributes recursively; a `drop` removes the field.
fn mask_event(m: &Masker<'_>, event: &mut Map<String, Value>) {
    let keys: Vec<String> = event.keys().cloned().collect();
    for k in keys {
        let Some(v) = event.get_mut(&k) else { continue };
        let keep = match v {
            Value::String(s) => match m.mask_str(&k, s) {
                None => false,
                Some(std::borrow::Cow::Borrowed(_)) => true,
                Some(std::borrow::Cow::Owned(masked)) => {
                    *s = masked;
                    true
                }
            },
            other => {
                m.mask_json(&k, other);
                !other.is_null()
            }
        };
        if !keep {
            event.remove(&k);
        }
    }
}

async fn entry(
    State(st): State<AppState>,
    Extension(rc): Extension<Arc<ReadContext>>,
    path: Result<Path<(String, u64)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let claims = auth::authenticate(&st, &headers)?;
    let (ns, index) = path
        .map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    auth::authorize(&claims, &[Role::Reader, Role::Admin], Some(&ns))?;
    tracevault_vault::validate_namespace(&ns, claims.role == Role::Admin)?;
    let (from, to) = window(&claims)?;
    let not_found = || {
        ApiError::not_found(
            "no_such_entry",
            format!("namespace {ns} has no entry {index} in this token's window"),
        )
    };
    let e = st.vault.entry(&ns, index).await?.ok_or_else(not_found)?;
    // Outside the reader's window looks exactly like absent.
    if from.is_some_and(|f| e.received_at < f) || to.is_some_and(|t| e.received_at > t) {
        return Err(not_found());
    }
    let record = e
        .committed_record_bytes()
        .map_err(|err| ApiError::unavailable("internal", err.to_string()))?;
    let leaf: Value = serde_json::from_slice(&record)
        .map_err(|err| ApiError::unavailable("internal", err.to_string()))?;
    let role = match claims.role {
        Role::Reader => "reader",
        Role::Admin => "admin",
        Role::Writer => "writer",
        Role::Approver => "approver",
    };
    let claim_map = match serde_json::to_value(&claims) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let profile = rc.policy.profile_for(role, &claim_map);
    let masker = Masker::new(profile, &rc.hash_key);
    let mut event = match e.to_event_json() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    mask_event(&masker, &mut event);
    // Recorded before the row leaves: no audit entry, no read.
    st.vault
        .append_system(
            audit::AUDIT_NS,
            vec![audit::event(
                "entry-reads",
                "entry_read",
                &claims.sub,
                json!({"ns": ns, "index": index, "role": role, "jti": claims.jti,
                       "profile": profile.name, "masked": masker.counts()}),
            )],
            audit::SERVER,
        )
        .await?;
    Ok(Json(json!({
        "index": index,
        "leaf": leaf,
        "leaf_hash": hex::encode(e.leaf_hash),
        "event": Value::Object(event),
        "masking_profile": profile.name,
    })))
}
