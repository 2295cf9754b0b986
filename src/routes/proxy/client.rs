//! The pooled client plain HTTP requests go upstream with: hyper-util's
//! legacy `Client` (keep-alive connections per upstream, at most
//! `keepalive` idle, closed after `idle_timeout` by the pool's timer, an
//! unstarted request on a reused connection that turned out closed retried
//! on a fresh one), over the route's own connector (TCP, then rustls with
//! the route's CA; the connect timeout and the send timeout on every write,
//! as for WebSockets). HTTP/2 when the route asks for it: h2c with prior
//! knowledge to plain upstreams, ALPN `h2` to TLS ones. WebSockets never
//! use this client (an HTTP/1.1 Upgrade is impossible over HTTP/2).

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::Uri;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::connect::{BoxIo, ConnectError, connect_io};

pub(super) type BoxError = Box<dyn StdError + Send + Sync>;

/// What a pooled request carries upstream.
pub(super) type ProxyBody = BoxBody<Bytes, BoxError>;

/// One upstream's pooled client.
pub(super) type Pooled = Client<Connector, Reclaimable>;

/// How a client is set up (from the route's spec).
#[derive(Debug, Clone, Copy)]
pub(super) struct PoolSettings {
    pub http2: bool,
    pub keepalive: usize,
    pub idle_timeout: Duration,
}

/// Builds the client for one upstream: `tls` is the route's client config
/// for TLS upstreams (ALPN `h2` is offered here when `http2` is on), `None`
/// for plain ones; `route` names the route on the status page, where every
/// real connection attempt is recorded.
pub(super) fn pooled(
    settings: PoolSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    send_timeout: Duration,
    route: Arc<str>,
) -> Pooled {
    let plain = tls.is_none();
    let tls = tls.map(|config| {
        if settings.http2 {
            let mut c = (*config).clone();
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(c)
        } else {
            config
        }
    });
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_max_idle_per_host(settings.keepalive)
        .pool_idle_timeout(settings.idle_timeout)
        // Without a timer, idle connections are only dropped lazily when
        // the next request checks one out.
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .retry_canceled_requests(true)
        // The client's own Host goes upstream, as for WebSockets.
        .set_host(false)
        .http2_only(settings.http2 && plain);
    builder.build(Connector {
        tls,
        send_timeout,
        route,
    })
}

/// Connects to the upstream a request URI names.
#[derive(Clone)]
pub(super) struct Connector {
    tls: Option<Arc<rustls::ClientConfig>>,
    send_timeout: Duration,
    /// The route's path, for the status page's upstream health.
    route: Arc<str>,
}

impl tower::Service<Uri> for Connector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let send_timeout = self.send_timeout;
        let route = self.route.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .unwrap_or(if tls.is_some() { 443 } else { 80 });
            let connected = connect_io(&host, port, tls, &uri.to_string(), send_timeout).await;
            crate::status::live::live().upstream_connect(&route, connected.is_ok());
            let (io, h2) = connected?;
            Ok(Conn {
                io: TokioIo::new(io),
                h2,
            })
        })
    }
}

/// A connection in the pool; says whether ALPN chose `h2`.
pub(super) struct Conn {
    io: TokioIo<BoxIo>,
    h2: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        if self.h2 {
            Connected::new().negotiated_h2()
        } else {
            Connected::new()
        }
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request body that can be taken back while no byte of it was read:
/// when the connection to one upstream fails, the same request (body
/// included) goes to the next one, as it does today for WebSockets.
pub(super) struct Reclaimable {
    slot: Arc<Mutex<Option<ProxyBody>>>,
    taken: Option<ProxyBody>,
    /// Set when the body ended (the request is fully sent).
    sent: Arc<std::sync::atomic::AtomicBool>,
}

/// The other end of a [`Reclaimable`].
#[derive(Clone)]
pub(super) struct Reclaim {
    slot: Arc<Mutex<Option<ProxyBody>>>,
    sent: Arc<std::sync::atomic::AtomicBool>,
}

impl Reclaim {
    pub(super) fn new(body: ProxyBody) -> Self {
        Reclaim {
            slot: Arc::new(Mutex::new(Some(body))),
            sent: Arc::default(),
        }
    }

    /// A body for one attempt; it takes the real body on its first read.
    pub(super) fn body(&self) -> Reclaimable {
        Reclaimable {
            slot: self.slot.clone(),
            taken: None,
            sent: self.sent.clone(),
        }
    }

    /// Whether the body is still untouched (another attempt may use it).
    pub(super) fn untouched(&self) -> bool {
        self.slot.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    /// Whether the whole body went upstream.
    pub(super) fn sent(&self) -> bool {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the body is being sent (taken, not finished).
    pub(super) fn uploading(&self) -> bool {
        !self.untouched() && !self.sent()
    }
}

impl Reclaimable {
    fn with<T>(&self, f: impl FnOnce(&ProxyBody) -> T, or: T) -> T {
        match &self.taken {
            Some(b) => f(b),
            None => match self.slot.lock() {
                Ok(g) => g.as_ref().map(f).unwrap_or(or),
                Err(_) => or,
            },
        }
    }
}

impl Body for Reclaimable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.taken.is_none() {
            let body = match self.slot.lock() {
                Ok(mut g) => g.take(),
                Err(_) => None,
            };
            match body {
                Some(b) => self.taken = Some(b),
                None => return Poll::Ready(Some(Err("the request body was already used".into()))),
            }
        }
        let Some(body) = self.taken.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.sent.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.with(|b| b.is_end_stream(), false)
    }

    fn size_hint(&self) -> SizeHint {
        self.with(|b| b.size_hint(), SizeHint::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn an_untouched_body_can_be_reclaimed_and_is_sent_once() {
        let full = Full::new(Bytes::from_static(b"payload"))
            .map_err(|never| match never {})
            .boxed();
        let reclaim = Reclaim::new(full);
        // A first attempt that never read its body (the connect failed).
        let first = reclaim.body();
        assert_eq!(first.size_hint().exact(), Some(7));
        drop(first);
        assert!(reclaim.untouched());
        let second = reclaim.body();
        let bytes = second.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"payload");
        assert!(!reclaim.untouched());
        assert!(reclaim.sent());
        // A third attempt cannot send a body that is gone.
        assert!(reclaim.body().collect().await.is_err());
    }
}
