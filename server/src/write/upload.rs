//! Telling a write request's upload from its processing, for the write
//! deadline ([`super::shed_writes`]): `write_timeout_s` is there so that a
//! slow sender cannot hold a write slot, so it must bound the upload, but it
//! must not cut off an answer once the events are being appended, or the
//! client is told `408` for events that were stored (and may send them
//! again). Every write route reads its whole body before it appends, so
//! "the body's last byte has arrived" is the line between the two.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Set once the request body has been read to its end.
#[derive(Clone, Default)]
pub(crate) struct Received(Arc<AtomicBool>);

impl Received {
    /// Whether the body has been read whole (checked by the deadline, in the
    /// same task that polls the route, so the route cannot be between
    /// "read whole" and "appending" unseen).
    pub(crate) fn whole(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// `body`, reporting to `self` when its end is read.
    pub(crate) fn watch(&self, body: Body) -> Body {
        Body::new(Watched {
            inner: body,
            received: self.clone(),
        })
    }
}

struct Watched {
    inner: Body,
    received: Received,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.received.0.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn whole_only_once_the_end_is_read() {
        let received = Received::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
        let sent = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut body = received.watch(Body::from_stream(sent)).into_data_stream();
        tx.send(Ok(Bytes::from_static(b"half"))).await.unwrap();
        assert_eq!(body.next().await.unwrap().unwrap(), &b"half"[..]);
        assert!(!received.whole(), "a part is not the whole");
        drop(tx);
        assert!(body.next().await.is_none());
        assert!(received.whole());
    }
}
