//! A query's answer on its way to the client, holding the query's slot.
//!
//! An answer is built whole (up to `max_result_bytes`) before it is sent.
//! Released as soon as it was built, the slot bounded nothing: a client
//! that sent queries and never read the answers made the server hold one
//! answer per connection (50 unread 60 MB answers: 3 GB). Held until the
//! answer is read, the slot bounds the answers in memory by
//! `max_concurrent` (and a token's share by `max_concurrent_per_token`),
//! and `answer_timeout_s` bounds how long a client that stops reading keeps
//! one: then the bytes and the slot are dropped and the connection closed.

use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;

use super::QuerySlot;

/// Bytes handed to the connection at a time.
const CHUNK: usize = 64 << 10;

enum Sending {
    /// What is left to send, and the slot it holds.
    Left {
        bytes: Bytes,
        _slot: Option<QuerySlot>,
    },
    /// All sent.
    Done,
    /// The client did not read it in time.
    Expired,
}

/// A response body sending `bytes` that holds `slot` until it is sent or
/// dropped, and gives both up `deadline` after now.
pub(super) fn held(bytes: Vec<u8>, slot: Option<QuerySlot>, deadline: Duration) -> Body {
    let state = Arc::new(Mutex::new(Sending::Left {
        bytes: Bytes::from(bytes),
        _slot: slot,
    }));
    // The connection polls the body only when it can write: a client that
    // stops reading stops the polls, so the deadline is kept by a task of
    // its own (which holds the state weakly: a body sent or dropped before
    // the deadline frees everything at once).
    let watched: Weak<Mutex<Sending>> = Arc::downgrade(&state);
    tokio::spawn(async move {
        tokio::time::sleep(deadline).await;
        if let Some(state) = watched.upgrade() {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(*s, Sending::Left { .. }) {
                tracing::info!("a query's answer was not read within {deadline:?}: dropped");
                *s = Sending::Expired;
            }
        }
    });
    let stream = futures::stream::poll_fn(move |_| {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *s {
            Sending::Left { bytes: left, .. } if !left.is_empty() => {
                let n = left.len().min(CHUNK);
                Poll::Ready(Some(Ok(left.split_to(n))))
            }
            Sending::Left { .. } | Sending::Done => {
                *s = Sending::Done;
                Poll::Ready(None)
            }
            Sending::Expired => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the answer was not read in time",
            )))),
        }
    });
    Body::from_stream(stream)
}
