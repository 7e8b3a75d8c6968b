//! The export workflow (`docs/exports.md`): a reader asks for an export, an
//! approver (never the requester) approves or denies it, the requester
//! downloads the bundle. The JSON answers are returned as the server sent
//! them, for callers that print them unchanged.

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use crate::{Client, Error};

/// What to export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportRequest {
    /// The namespace.
    pub namespace: String,
    /// Why (mandatory; recorded in the audit log).
    pub reason: String,
    /// The session to export.
    #[serde(rename = "session_id", skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Or: the rows whose `idx` this SQL returns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

impl Client {
    /// `POST /v1/exports`: asks for an export; the new export as JSON.
    pub async fn request_export(&self, req: &ExportRequest) -> Result<Bytes, Error> {
        Client::send_bytes(self.post("/v1/exports").json(req)).await
    }

    /// `GET /v1/exports[?state=..]`: the exports this token may see.
    pub async fn list_exports(&self, state: Option<&str>) -> Result<Bytes, Error> {
        let mut req = self.get("/v1/exports");
        if let Some(s) = state {
            req = req.query(&[("state", s)]);
        }
        Client::send_bytes(req).await
    }

    /// `GET /v1/exports/{id}`: one export and its history.
    pub async fn export_status(&self, id: &str) -> Result<Bytes, Error> {
        Client::send_bytes(self.get(&format!("/v1/exports/{id}"))).await
    }

    /// `POST /v1/exports/{id}/approve` with a comment (approver).
    pub async fn approve_export(&self, id: &str, comment: &str) -> Result<Bytes, Error> {
        let req = self
            .post(&format!("/v1/exports/{id}/approve"))
            .json(&json!({ "comment": comment }));
        Client::send_bytes(req).await
    }

    /// `POST /v1/exports/{id}/deny` with a comment (approver).
    pub async fn deny_export(&self, id: &str, comment: &str) -> Result<Bytes, Error> {
        let req = self
            .post(&format!("/v1/exports/{id}/deny"))
            .json(&json!({ "comment": comment }));
        Client::send_bytes(req).await
    }

    /// `GET /v1/exports/{id}/bundle`: the bundle (a tar file), once by
    /// default, into memory (up to [`crate::MAX_ANSWER_BYTES`]).
    pub async fn download_export(&self, id: &str) -> Result<Bytes, Error> {
        Client::send_bytes(self.get(&format!("/v1/exports/{id}/bundle"))).await
    }

    /// [`Client::download_export`] written to `out` as it arrives (a bundle
    /// can be larger than memory). Returns the bytes written.
    pub async fn download_export_to(
        &self,
        id: &str,
        out: &mut impl std::io::Write,
    ) -> Result<u64, Error> {
        let mut r = Client::send(self.get(&format!("/v1/exports/{id}/bundle"))).await?;
        let mut n = 0u64;
        while let Some(chunk) = r.chunk().await? {
            out.write_all(&chunk)?;
            n += chunk.len() as u64;
        }
        out.flush()?;
        Ok(n)
    }
}
