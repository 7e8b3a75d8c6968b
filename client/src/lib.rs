//! A typed client of a tracevault server's HTTP API (`docs/spec.md` section 3), and
//! the checks a reader runs on what the server answers.
//!
//! Every command of the `tracevault` binary that talks to a server (`stream`,
//! `query`, `export`, `bench`, `replay --server`) goes through [`Client`], so
//! the request building, the bearer token and the reading of the server's
//! stable JSON errors exist once. The modules follow the server's doors:
//!
//! - [`events`]: appending events (JSON batches, OTLP);
//! - [`stream`]: a live NDJSON session stream and its receipts;
//! - [`query`]: SQL, answered as JSON or Arrow IPC;
//! - [`exports`]: the export workflow (request, approve, download);
//! - [`tokens`]: vault tokens issued and revoked over HTTP (admin);
//! - [`proofs`]: checkpoints, inclusion proofs (one or a batch) and
//!   consistency proofs, as served;
//! - [`checkpoints`]: a [`checkpoints::CheckpointTracker`] that opens each
//!   new checkpoint under a pinned key and never lets the log go back or fork;
//! - [`proof_check`]: a [`proof_check::ProofChecker`] that checks the
//!   inclusion proof of every event a reader was shown.
//!
//! The client is async; the binary runs it on its own runtime.

#![warn(missing_docs)]

pub mod checkpoints;
pub mod erasures;
pub mod events;
pub mod exports;
pub mod load;
pub mod proof_check;
pub mod proofs;
pub mod query;
pub mod stream;
pub mod tokens;

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

pub use reqwest::StatusCode;

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request was not sent, or its answer not read to the end
    /// (network, TLS, timeout). Worth trying again later.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// The server answered, with a status other than 2xx.
    #[error(transparent)]
    Status(#[from] ServerError),
    /// The answer is not what the API documents. `source` tells a cut or
    /// garbled body (syntax, EOF: try again) from well-formed JSON of the
    /// wrong shape (the server's answer is wrong).
    #[error("{what}: {source}")]
    Json {
        /// Which answer.
        what: &'static str,
        /// The parse error.
        source: serde_json::Error,
    },
    /// An Arrow IPC answer that does not decode.
    #[error("Arrow answer: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The base URL cannot take API paths.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The answer is larger than this client takes ([`MAX_ANSWER_BYTES`];
    /// error answers: [`MAX_ERROR_BYTES`]), counted after decompression.
    #[error("the server's answer exceeds {max} bytes; not read further")]
    TooLarge {
        /// The bound that was passed.
        max: usize,
    },
    /// Writing a downloaded answer to a file failed.
    #[error("writing the answer: {0}")]
    Write(#[from] std::io::Error),
}

/// Largest answer read into memory (after decompression): above the
/// server's largest query result (`max_result_bytes`, 128 MiB by default),
/// far below what a gzip body from a hostile server could inflate to.
/// Export bundles are streamed to a file instead ([`Client::download_export_to`]).
pub const MAX_ANSWER_BYTES: usize = 512 << 20;
/// Largest error answer read (the server's are a small JSON object).
pub const MAX_ERROR_BYTES: usize = 64 << 10;

impl Error {
    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Status(e) => Some(e.status),
            _ => None,
        }
    }
}

/// Why a base URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error(transparent)]
    Parse(#[from] url::ParseError),
    /// A URL that has no path to extend (`mailto:`, `data:`).
    #[error("not an http(s) URL")]
    CannotBeABase,
}

/// A non-2xx answer. The server's errors are `{"error": {"code",
/// "message"}}` with a stable `code` (`docs/spec.md` section 3); anything else (a proxy's
/// page) keeps its body for the user to read.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {code} {message}")]
pub struct ServerError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable error code (empty when the body is not the server's JSON).
    pub code: String,
    /// The human-readable message (empty when the body is not the server's JSON).
    pub message: String,
    /// The body as received.
    pub body: Bytes,
    /// The `Retry-After` the server asked for (seconds), with a 429 or 503.
    pub retry_after: Option<Duration>,
}

impl ServerError {
    fn new(status: StatusCode, body: Bytes) -> ServerError {
        #[derive(Deserialize, Default)]
        struct Body {
            #[serde(default)]
            error: Detail,
        }
        #[derive(Deserialize, Default)]
        struct Detail {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let parsed: Option<Body> = serde_json::from_slice(&body).ok();
        let Detail { code, message } = parsed.unwrap_or_default().error;
        ServerError {
            status,
            code,
            message,
            body,
            retry_after: None,
        }
    }

    /// Whether trying the same request again later may succeed: the server
    /// shed load (503) or rate-limited the caller (429).
    pub fn is_retryable(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
    }

    /// Whether the body was the server's JSON error (as opposed to, say, a
    /// proxy's HTML page).
    pub fn is_json(&self) -> bool {
        serde_json::from_slice::<serde::de::IgnoredAny>(&self.body).is_ok()
    }
}

/// Where and as whom: one server, one bearer token.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// The base URL as given, without trailing slashes.
    base: String,
    token: String,
}

/// Connection settings of a [`Client`] beyond the server and the token.
#[derive(Debug, Default)]
pub struct ClientBuilder {
    timeout: Option<Duration>,
    pool_max_idle_per_host: Option<usize>,
}

impl ClientBuilder {
    /// Gives up on a request after `t` (default: never; a stream may stay
    /// open for hours).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Keeps at most `n` idle connections (a load generator keeps one per
    /// worker).
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = Some(n);
        self
    }

    /// The client of `base` (e.g. `http://127.0.0.1:8470`) with `token`.
    pub fn build(self, base: &str, token: &str) -> Result<Client, Error> {
        let mut b = reqwest::Client::builder();
        if let Some(t) = self.timeout {
            b = b.timeout(t);
        }
        if let Some(n) = self.pool_max_idle_per_host {
            b = b.pool_max_idle_per_host(n);
        }
        Ok(Client {
            http: b.build()?,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }
}

impl Client {
    /// A client of `base` with `token` and default settings.
    pub fn new(base: &str, token: &str) -> Result<Client, Error> {
        Client::builder().build(base, token)
    }

    /// Settings beyond the server and the token.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The base URL, without trailing slashes.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (which starts with `/`). Plain concatenation, as
    /// the server's paths take validated names only; see [`Client::url_of`]
    /// for free-form segments.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The URL of the path made of `segments`, each escaped on its own, so
    /// that a session id like `..` stays one literal segment.
    pub fn url_of(&self, segments: &[&str]) -> Result<url::Url, UrlError> {
        let mut url = url::Url::parse(&self.base)?;
        url.path_segments_mut()
            .map_err(|_| UrlError::CannotBeABase)?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.token)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(&self.token)
    }

    /// Sends `req`; the response when 2xx, else the server's error.
    async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let r = req.send().await?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status();
        // Delay-seconds only (RFC 9110 also allows a date; the server sends
        // seconds).
        let retry_after = r
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = Client::read_capped(r, MAX_ERROR_BYTES)
            .await
            .unwrap_or_default();
        let mut e = ServerError::new(status, body);
        e.retry_after = retry_after;
        Err(e.into())
    }

    /// Sends `req`; the whole body when 2xx, up to [`MAX_ANSWER_BYTES`].
    async fn send_bytes(req: reqwest::RequestBuilder) -> Result<Bytes, Error> {
        Client::read_capped(Client::send(req).await?, MAX_ANSWER_BYTES).await
    }

    /// The body of `r`, refused past `max` bytes (a body cannot make the
    /// client hold more than the bound, however it is compressed).
    async fn read_capped(mut r: reqwest::Response, max: usize) -> Result<Bytes, Error> {
        if r.content_length().is_some_and(|n| n > max as u64) {
            return Err(Error::TooLarge { max });
        }
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = r.chunk().await? {
            if out.len() + chunk.len() > max {
                return Err(Error::TooLarge { max });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Sends `req`; the body parsed as `T` when 2xx.
    async fn send_json<T: serde::de::DeserializeOwned>(
        req: reqwest::RequestBuilder,
        what: &'static str,
    ) -> Result<T, Error> {
        let body = Client::send_bytes(req).await?;
        serde_json::from_slice(&body).map_err(|source| Error::Json { what, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_read_the_stable_code() {
        let e = ServerError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Bytes::from_static(
                br#"{"error":{"code":"result_too_large","message":"too many rows"}}"#,
            ),
        );
        assert_eq!(e.code, "result_too_large");
        assert_eq!(
            e.to_string(),
            "413 Payload Too Large: result_too_large too many rows"
        );
        let proxy = ServerError::new(StatusCode::BAD_GATEWAY, Bytes::from_static(b"<html>"));
        assert_eq!(proxy.code, "");
        assert!(!proxy.is_json());
    }

    #[test]
    fn segments_stay_literal() {
        let c = Client::new("http://h:1/base/", "t").unwrap();
        let url = c.url_of(&["sessions", "..", "stream"]).unwrap();
        assert!(!url.path().contains("/../"), "{url}");
        assert!(url.path().starts_with("/base/sessions/"), "{url}");
        assert_eq!(c.base(), "http://h:1/base");
    }
}
