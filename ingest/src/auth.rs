//! Bearer-token authentication and role/namespace authorization.
//! Nothing is served without a valid token (except `/healthz`): one of the
//! vault's own issuer, or of a configured external issuer (`external`).

use axum::http::{HeaderMap, StatusCode, header};
use tracevault_vault::token::{Claims, Role};

use crate::AppState;
use crate::error::ApiError;

/// Verifies the bearer token of a request. 401 when missing or invalid.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "an Authorization: Bearer <token> header is required",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the Authorization header must be `Bearer <token>`",
            )
        })?;
    // A token naming a configured external issuer is that issuer's alone
    // (JWKS, claim-to-role mapping); every other goes to the vault's own.
    let claims = match state.external.verify(token) {
        Some(verified) => verified?,
        None => state
            .tokens
            .verify(token)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string()))?,
    };
    if state.revocations.is_revoked(&claims.jti) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_revoked",
            "this token has been revoked",
        ));
    }
    // Reader tokens live at most `max_reader_token_ttl_s` from their issue,
    // whatever their `exp` says (with the same 30 s clock leeway as `exp`).
    let cap = state.limits.max_reader_token_ttl_s;
    if claims.role == Role::Reader
        && chrono::Utc::now().timestamp() > claims.iat.saturating_add(cap).saturating_add(30)
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            format!("reader tokens are valid for at most {cap} s after they were issued"),
        ));
    }
    Ok(claims)
}

/// Requires one of `roles` and, when given, access to namespace `ns`. 403 otherwise.
pub fn authorize(claims: &Claims, roles: &[Role], ns: Option<&str>) -> Result<(), ApiError> {
    if !roles.contains(&claims.role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("role {:?} may not use this endpoint", claims.role).to_lowercase(),
        ));
    }
    if let Some(ns) = ns
        && !claims.allows_ns(ns)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token does not cover namespace {ns}"),
        ));
    }
    Ok(())
}
