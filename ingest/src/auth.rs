//! Bearer-token authentication and role/namespace authorization.
//! Nothing is served without a valid token (except `/healthz`).

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
    state
        .tokens
        .verify(token)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string()))
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
