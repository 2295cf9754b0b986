//! nginx's `client_body_timeout` for proxied requests: a request body that
//! pauses longer than the send timeout between two chunks fails, so the
//! upstream request is abandoned and the client gets 408 instead of holding
//! an upstream connection open for as long as it likes.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Whether a [`Paced`] body gave up on its client.
#[derive(Debug, Clone, Default)]
pub struct Paused(Arc<AtomicBool>);

impl Paused {
    pub fn fired(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The error a paused body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body paused longer than the send timeout ({0:?})")]
pub struct BodyPaused(Duration);

/// A body whose next chunk must arrive within `limit` of being asked for.
pub struct Paced<B> {
    inner: B,
    limit: Duration,
    /// Allocated the first time the body has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    paused: Paused,
}

impl<B> Paced<B> {
    pub fn new(inner: B, limit: Duration) -> (Self, Paused) {
        let paused = Paused::default();
        (
            Paced {
                inner,
                limit,
                timer: None,
                armed: false,
                paused: paused.clone(),
            },
            paused,
        )
    }
}

impl<B> Body for Paced<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.paused.fired() {
            return Poll::Ready(Some(Err(Box::new(BodyPaused(this.limit)))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    let deadline = Instant::now() + this.limit;
                    match &mut this.timer {
                        Some(t) => t.as_mut().reset(deadline),
                        None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let fired = this
                    .timer
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready());
                if !fired {
                    return Poll::Pending;
                }
                this.paused.0.store(true, Ordering::Relaxed);
                this.timer = None;
                Poll::Ready(Some(Err(Box::new(BodyPaused(this.limit)))))
            }
        }
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
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn a_body_that_pauses_too_long_fails_and_says_so() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let stream = tokio_stream_from(rx);
        let (mut body, paused) = Paced::new(StreamBody::new(stream), Duration::from_millis(100));
        tx.send(Ok(Frame::data(Bytes::from_static(b"ab"))))
            .await
            .unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"ab"));
        assert!(!paused.fired());
        // Nothing more comes (the sender is kept alive).
        let second = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the pause was never noticed");
        assert!(matches!(second, Some(Err(_))));
        assert!(paused.fired());
        drop(tx);
    }

    /// An mpsc receiver as a `Stream` (no tokio-stream dependency).
    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
