//! Erasure orders (`docs/erasure.md`): an admin asks for the payloads of
//! some entries to be erased, an approver (never the requester) approves or
//! denies, the server erases and keeps a receipt. The JSON answers are
//! returned as the server sent them, for callers that print them unchanged.

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use crate::{Client, Error};

/// What to erase: exactly one of the selections (or `from` and `to`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErasureRequest {
    /// The namespace.
    pub namespace: String,
    /// Why (mandatory; recorded in `_audit`).
    pub reason: String,
    /// Every entry of this session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Every entry of this actor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The entries with this `event_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The entries whose `idx` this SQL returns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Entries received from (RFC 3339, inclusive) ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// ... to (exclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Erase entries younger than `min_retention` too (recorded with the order).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub override_min_retention: bool,
}

impl Client {
    /// `POST /v1/erasures`: asks for an erasure (admin); the new order as JSON.
    pub async fn request_erasure(&self, req: &ErasureRequest) -> Result<Bytes, Error> {
        Client::send_bytes(self.post("/v1/erasures").json(req)).await
    }

    /// `GET /v1/erasures[?state=..]`: the orders this token may see.
    pub async fn list_erasures(&self, state: Option<&str>) -> Result<Bytes, Error> {
        let mut req = self.get("/v1/erasures");
        if let Some(s) = state {
            req = req.query(&[("state", s)]);
        }
        Client::send_bytes(req).await
    }

    /// `GET /v1/erasures/{id}`: one order, with its receipt once performed.
    pub async fn erasure_status(&self, id: &str) -> Result<Bytes, Error> {
        Client::send_bytes(self.get(&format!("/v1/erasures/{id}"))).await
    }

    /// `POST /v1/erasures/{id}/approve|deny` with a comment (approver).
    pub async fn decide_erasure(
        &self,
        id: &str,
        approve: bool,
        comment: &str,
    ) -> Result<Bytes, Error> {
        let verb = if approve { "approve" } else { "deny" };
        let req = self
            .post(&format!("/v1/erasures/{id}/{verb}"))
            .json(&json!({ "comment": comment }));
        Client::send_bytes(req).await
    }
}
