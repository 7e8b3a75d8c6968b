//! Forwarding writes: a write for a namespace another live node holds is
//! sent, as it came, to that node ([`append_or_forward`], the one rule every
//! write door follows), and the holder's answer returned as it is.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{FORWARDED, live_node_url};
use crate::{ApiError, AppState};

/// Longest a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn http() -> &'static reqwest::Client {
    static C: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// Forwards a write (`path_and_query`, its headers and raw body) to node
/// `owner`, which holds the namespace's lease: to the URL of its signed,
/// live registration. Returns the holder's answer as it gave it (status,
/// body, content type, `Retry-After`; its error code counted in this
/// node's metrics). `None`
/// when the owner cannot be reached that way (no live signed registration,
/// no advertised URL, or this request was forwarded already): the caller
/// answers as before (`409 namespace_fenced`).
pub async fn forward(
    st: &AppState,
    owner: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Result<Response, ApiError>> {
    if headers.contains_key(FORWARDED) || owner == st.vault.instance_id() {
        return None;
    }
    let base = live_node_url(&st.vault, owner).await?;
    let req = with_request_headers(
        http().post(format!("{}{path_and_query}", base.trim_end_matches('/'))),
        headers,
    )
    .body(body);
    Some(
        async {
            let r = req.send().await.map_err(|e| {
                ApiError::unavailable(
                    "forward_failed",
                    format!("the namespace is held by node {owner}, which did not answer: {e}"),
                )
            })?;
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let kept: Vec<(header::HeaderName, HeaderValue)> =
                [header::CONTENT_TYPE, header::RETRY_AFTER]
                    .into_iter()
                    .filter_map(|h| {
                        let v = r.headers().get(h.as_str())?;
                        Some((h, HeaderValue::from_bytes(v.as_bytes()).ok()?))
                    })
                    .collect();
            let body = r.bytes().await.map_err(|e| {
                ApiError::unavailable(
                    "forward_failed",
                    format!("reading node {owner}'s answer: {e}"),
                )
            })?;
            let code = (!status.is_success()).then(|| {
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(crate::error::intern_code))
                    .unwrap_or("forwarded_error")
            });
            let mut resp = (status, body).into_response();
            for (h, v) in kept {
                resp.headers_mut().insert(h, v);
            }
            if let Some(code) = code {
                resp.extensions_mut()
                    .insert(crate::metrics::ErrorCode(code));
            }
            Ok(resp)
        }
        .await,
    )
}

/// The request's own headers (token, content type and encoding, the OTLP
/// namespace header, ...), not the connection's, and the mark that it was
/// forwarded (never forwarded again).
fn with_request_headers(
    mut req: reqwest::RequestBuilder,
    headers: &HeaderMap,
) -> reqwest::RequestBuilder {
    const HOP: [&str; 9] = [
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
    ];
    for (name, value) in headers {
        if !HOP.contains(&name.as_str()) && name.as_str() != FORWARDED {
            req = req.header(name.as_str(), value.as_bytes());
        }
    }
    req.header(FORWARDED, "1")
}

/// A client for streams: no overall timeout (a session stream lasts as long
/// as the session), only on connecting.
fn stream_http() -> &'static reqwest::Client {
    static C: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// Forwards a session stream to node `owner`, which holds its namespace:
/// the request body is passed on as it arrives, and the holder's answer
/// (its NDJSON acknowledgements) streamed back as they come. `Err(body)`
/// gives the body back when the owner cannot be reached that way (see
/// [`forward`]): the caller answers `409 namespace_fenced`.
pub async fn forward_stream(
    st: &AppState,
    owner: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Result<Response, ApiError>, axum::body::Body> {
    if headers.contains_key(FORWARDED) || owner == st.vault.instance_id() {
        return Err(body);
    }
    let Some(base) = live_node_url(&st.vault, owner).await else {
        return Err(body);
    };
    let req = with_request_headers(
        stream_http().post(format!("{}{path_and_query}", base.trim_end_matches('/'))),
        headers,
    )
    .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    let r = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Ok(Err(ApiError::unavailable(
                "forward_failed",
                format!("the namespace is held by node {owner}, which did not answer: {e}"),
            )));
        }
    };
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let mut resp = (status, axum::body::Body::from_stream(r.bytes_stream())).into_response();
    if let Some(ct) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    if !status.is_success() {
        resp.extensions_mut()
            .insert(crate::metrics::ErrorCode("forwarded_error"));
    }
    Ok(Ok(resp))
}

/// What an append became: receipts from this node's log, or the answer of
/// the node holding the namespace, which the request was forwarded to.
pub enum Appended {
    /// Appended here.
    Here(Vec<tracevault_vault::Receipt>),
    /// Forwarded: the holder's answer, to return as it is.
    Forwarded(Response),
}

/// Appends `events` to `ns`, or, when another live node holds the
/// namespace, forwards the request as it came (`path_and_query`, `headers`,
/// `raw` body) to that node: the one rule every write door follows.
pub async fn append_or_forward(
    st: &AppState,
    ns: &str,
    events: Vec<tracevault_vault::record::Prepared>,
    ingested_by: &str,
    request: (&str, &HeaderMap, Bytes),
) -> Result<Appended, ApiError> {
    use tracevault_vault::VaultError;
    use tracevault_vault::lease::LeaseError;
    use tracevault_vault::log::OpenError;
    match st.vault.append_prepared(ns, events, ingested_by).await {
        Ok(r) => Ok(Appended::Here(r)),
        Err(VaultError::Open(OpenError::Lease(LeaseError::Fenced { owner }))) => {
            let (path_and_query, headers, raw) = request;
            match forward(st, &owner, path_and_query, headers, raw).await {
                Some(answer) => answer.map(Appended::Forwarded),
                None => {
                    Err(VaultError::Open(OpenError::Lease(LeaseError::Fenced { owner })).into())
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}
