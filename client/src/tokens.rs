//! Vault tokens over HTTP (admin): `POST /v1/tokens` issues one,
//! `POST /v1/tokens/revoke` revokes one by its `jti`. (`tracevault token
//! issue` works on the data directory instead, without a server.)

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use crate::{Client, Error};

/// A token to issue (the fields of `POST /v1/tokens`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenRequest {
    /// `writer`, `reader`, `approver` or `admin`.
    pub role: String,
    /// The namespaces it is good for (`*`: all).
    pub ns: Vec<String>,
    /// Who holds it.
    pub sub: String,
    /// Lifetime in seconds (default: the server's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<i64>,
    /// A reader's window: from (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub win_from: Option<String>,
    /// A reader's window: to (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub win_to: Option<String>,
    /// The person a reader's window is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

impl Client {
    /// Issues a token; the answer (`{"token", "claims"}`) as JSON.
    pub async fn issue_token(&self, req: &TokenRequest) -> Result<Bytes, Error> {
        Client::send_bytes(self.post("/v1/tokens").json(req)).await
    }

    /// Revokes the token `jti`; the answer (`{"revoked", "receipt"}`) as JSON.
    pub async fn revoke_token(&self, jti: &str, reason: Option<&str>) -> Result<Bytes, Error> {
        let mut body = json!({ "jti": jti });
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        Client::send_bytes(self.post("/v1/tokens/revoke").json(&body)).await
    }
}
