//! A query's answer on its way to the client, holding the query's slot.
//!
//! An answer is built whole (up to `max_result_bytes`) before it is sent.
//! Released as soon as it was built, the slot bounded nothing: a client
//! that sent queries and never read the answers made the server hold one
//! answer per connection (50 unread 60 MB answers: 3 GB). Held until the
//! answer is read, the slot bounds the answers in memory by
//! `max_concurrent` (and a token's share by `max_concurrent_per_token`),
//! and `answer_stall_timeout_s` bounds how long a client that stops reading
//! keeps one: when it has taken nothing for that long, the answer and the
//! slot are dropped and its connection is closed (a client reading slowly
//! but steadily reads answers of any size). Chunks are copies, not views of
//! the answer: a view held by the connection kept the whole answer alive.

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::time::Instant;

use super::QuerySlot;
use crate::listener::ConnectionAbort;

/// Bytes handed to the connection at a time.
const CHUNK: usize = 64 << 10;

enum Sending {
    /// The answer, how much of it was taken, when last, and the slot it holds.
    Left {
        bytes: Vec<u8>,
        sent: usize,
        progress: Instant,
        _slot: Option<QuerySlot>,
    },
    /// All sent.
    Done,
    /// The client stopped reading.
    Expired,
}

/// A response body sending `bytes` that holds `slot` until it is sent or
/// dropped, and gives both up (closing the connection through `abort`)
/// once the client has taken nothing for `stall`.
pub(super) fn held(
    bytes: Vec<u8>,
    slot: Option<QuerySlot>,
    stall: Duration,
    abort: Option<ConnectionAbort>,
) -> Body {
    let state = Arc::new(Mutex::new(Sending::Left {
        bytes,
        sent: 0,
        progress: Instant::now(),
        _slot: slot,
    }));
    // The connection polls the body only when it can write: a client that
    // stops reading stops the polls, so the deadline is kept by a task of
    // its own (which holds the state weakly: a body sent or dropped frees
    // everything at once).
    let watched = Arc::downgrade(&state);
    tokio::spawn(async move {
        let mut deadline = Instant::now() + stall;
        loop {
            tokio::time::sleep_until(deadline).await;
            let Some(state) = watched.upgrade() else {
                return;
            };
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            match &*s {
                Sending::Left { progress, .. } if progress.elapsed() < stall => {
                    deadline = *progress + stall;
                }
                Sending::Left { .. } => {
                    tracing::info!("a query's answer was not read for {stall:?}: dropped");
                    *s = Sending::Expired;
                    if let Some(abort) = &abort {
                        abort.close();
                    }
                    return;
                }
                Sending::Done | Sending::Expired => return,
            }
        }
    });
    let stream = futures::stream::poll_fn(move |_| {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *s {
            Sending::Left {
                bytes,
                sent,
                progress,
                ..
            } if *sent < bytes.len() => {
                let n = (bytes.len() - *sent).min(CHUNK);
                let chunk = Bytes::copy_from_slice(&bytes[*sent..*sent + n]);
                *sent += n;
                *progress = Instant::now();
                Poll::Ready(Some(Ok(chunk)))
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
