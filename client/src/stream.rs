//! A live session stream: `POST /v1/logs/{ns}/sessions/{id}/stream` takes
//! NDJSON events for as long as the request body stays open and answers one
//! NDJSON line per event (a receipt or an error) while it is still sending,
//! then a `{"summary": ...}` line.

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::{Client, Error};

/// The answer of a stream: its lines, read as they arrive.
pub struct Receipts {
    body: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    pending: Vec<u8>,
}

impl Receipts {
    /// The next whole line, its `\n` included; `None` when the answer has
    /// ended (a last line without `\n` was cut short and is dropped).
    pub async fn next_line(&mut self) -> Option<Result<Vec<u8>, Error>> {
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                return Some(Ok(self.pending.drain(..=pos).collect()));
            }
            match self.body.next().await? {
                Ok(chunk) => self.pending.extend_from_slice(&chunk),
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

impl Client {
    /// Opens the stream of session `session` in `ns` and sends `lines`
    /// (NDJSON, each line ending in `\n`) as they come. Returns once the
    /// server has answered with a status: the receipts then arrive while
    /// `lines` is still being sent. The path is built segment by segment, so
    /// ids like `..` stay literal.
    pub async fn stream_session<S>(
        &self,
        ns: &str,
        session: &str,
        lines: S,
    ) -> Result<Receipts, Error>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
    {
        let url = self.url_of(&["v1", "logs", ns, "sessions", session, "stream"])?;
        let req = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .header("content-type", "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(lines));
        let resp = Client::send(req).await?;
        Ok(Receipts {
            body: Box::pin(resp.bytes_stream()),
            pending: Vec::new(),
        })
    }
}
