//! Bearer-token authentication and role/namespace authorization.
//! Nothing is served without a valid token (except `/healthz`): one of the
//! vault's own issuer, or of a configured external issuer (`external`).

use axum::http::{HeaderMap, StatusCode, header};
use tracevault_vault::token::{Claims, Role};

pub mod external;
pub(crate) mod tokens;

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
    // Only external tokens get clock leeway: their issuer's clock is not ours.
    let claims = match state.external.verify(token) {
        Some(verified) => verified?,
        None => state
            .tokens
            .verify(token)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string()))?,
    };
    check_live(state, &claims)?;
    // A reader reads within a window or not at all (a token minted before
    // windows were required, or by hand, has none).
    if claims.role == Role::Reader && claims.win_from.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no_window",
            "this reader token has no window (win_from); issue one with --from",
        ));
    }
    Ok(claims)
}

/// Whether a token that was valid when it was presented still is: not
/// revoked, and (for readers) within `max_reader_token_ttl_s` of its issue,
/// whatever its `exp` says, and not past its `exp`. Only external tokens get
/// clock leeway ([`crate::external::LEEWAY_S`]): their issuer's clock is not
/// ours, while the vault's own tokens are issued and checked by one clock.
/// Long-lived requests (session streams, slow queries, downloads) call it
/// again before they act.
pub fn check_live(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    let leeway = if claims.iss == state.tokens.issuer() {
        0
    } else {
        crate::external::LEEWAY_S
    };
    if state.revocations.is_revoked(&claims.jti) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_revoked",
            "this token has been revoked",
        ));
    }
    let now = chrono::Utc::now().timestamp();
    if now >= claims.exp.saturating_add(leeway) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            "this token has expired",
        ));
    }
    let cap = state.limits.max_reader_token_ttl_s;
    if claims.role == Role::Reader && now >= claims.iat.saturating_add(cap).saturating_add(leeway) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            format!("reader tokens are valid for at most {cap} s after they were issued"),
        ));
    }
    Ok(())
}

/// The key of a token's own budgets (write rate, write slots, session
/// streams, query slots): its issuer and its `jti`, length-prefixed so no two
/// pairs meet. An external issuer chooses its tokens' `jti`s: keyed by the
/// `jti` alone, a token of one issuer could spend the budget of another
/// issuer's (or the vault's own) token that carries the same id. Revocation
/// stays keyed by `jti` alone: revoking an id revokes it for every issuer,
/// which fails closed.
pub fn budget_key(claims: &Claims) -> String {
    format!("{}:{}{}", claims.iss.len(), claims.iss, claims.jti)
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
