//! Appending events: `POST /v1/logs/{ns}/events` (JSON batches) and
//! `POST /otlp/v1/traces` (OTLP/HTTP spans). Bodies are given ready-made, so
//! a load generator can build them once and send them many times.

use bytes::Bytes;

use crate::{Client, Error};

/// How a body of events is encoded, and so where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `{"events": [...]}` to `POST /v1/logs/{ns}/events`.
    Json,
    /// An OTLP `ExportTraceServiceRequest`, protobuf, to `POST /otlp/v1/traces`.
    OtlpProto,
    /// The same in OTLP's JSON encoding.
    OtlpJson,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Json | Encoding::OtlpJson => "application/json",
            Encoding::OtlpProto => "application/x-protobuf",
        }
    }
}

impl Client {
    /// Sends `body` (encoded as `encoding`) to namespace `ns`, named in the
    /// path for the native API and in `x-tracevault-namespace` for OTLP
    /// (where the path has none). The receipts as the server sent them.
    /// A `503` (the server shedding load) is an [`Error::Status`] the caller
    /// may retry.
    pub async fn append(&self, ns: &str, encoding: Encoding, body: Bytes) -> Result<String, Error> {
        let path = match encoding {
            Encoding::Json => format!("/v1/logs/{ns}/events"),
            Encoding::OtlpProto | Encoding::OtlpJson => "/otlp/v1/traces".to_string(),
        };
        let req = self
            .post(&path)
            .header("content-type", encoding.content_type())
            .header("x-tracevault-namespace", ns)
            .body(body);
        let body = Client::send_bytes(req).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}
