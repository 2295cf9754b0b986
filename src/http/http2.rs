//! HTTP/2 on TLS listeners (ALPN `h2`): the connection's limits, chosen
//! deliberately rather than left to hyper's defaults, and what an HTTP/2
//! request needs before it goes the same way as an HTTP/1.1 one (a `Host`
//! from `:authority`). WebSockets over HTTP/2 (RFC 8441's extended
//! CONNECT, advertised with SETTINGS_ENABLE_CONNECT_PROTOCOL) are checked
//! in `edge` like HTTP/1.1 upgrades.
//!
//! Limits per connection, and why:
//! - [`MAX_CONCURRENT_STREAMS`] streams (requests and WebSockets) at once;
//!   WebSockets also take a `--max-connections` slot each, as on HTTP/1.1,
//!   and a `--max-connections-per-ip` slot each on top of the connection's
//!   (`edge`, `server::admission`).
//! - Request headers as large as an HTTP/1.1 head ([`MAX_HEADER_LIST`]).
//! - Flow-control windows: what a client may send before the server reads
//!   it is [`STREAM_WINDOW`] per stream and [`CONNECTION_WINDOW`] in all.
//! - What the server buffers per stream for a client that does not read
//!   ([`SEND_BUFFER`]); a WebSocket whose reader stalls is closed by the
//!   send timeout (`server::stall` over each upgraded stream). hyper cannot
//!   reset a stream that still holds unsent data, so its connection then
//!   gets GOAWAY and is closed [`STALLED_GRACE`] later, as a stalled
//!   HTTP/1.1 socket is; a reader that is slow but reads is never cut.
//! - Reset floods ("rapid reset", CVE-2023-44487, and resets the server is
//!   made to send, CVE-2025-8671): at most [`PENDING_RESETS`] streams reset
//!   by the client before they were served, and [`LOCAL_ERROR_RESETS`]
//!   streams the server reset for errors, before the connection is closed
//!   with GOAWAY `ENHANCE_YOUR_CALM` (counted by reason).
//! - The first request must arrive within the handshake timeout, and a
//!   connection with no request or WebSocket in progress for that long is
//!   closed (GOAWAY), as an idle HTTP/1.1 keep-alive connection is;
//!   keep-alive PINGs close connections whose peer vanished.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue};
use hyper::server::conn::http2;
use hyper::service::Service;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::reply::{Body, text_response};
use super::upgraded::{Busy, H2Conn};
use crate::config::limits::MAX_HTTP_BUFFER;
use crate::metrics::{self, HandshakeFailure};
use crate::server::stall::StallGuard;

/// ALPN name of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";
/// Streams open at once on one connection (RFC 9113 recommends no fewer
/// than 100; nginx 128, hyper 200).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Largest request header list (decoded), the same budget as an HTTP/1.1
/// request head (hyper's own default is 16 MiB).
pub const MAX_HEADER_LIST: u32 = MAX_HTTP_BUFFER as u32;
/// Bytes a client may send on one stream before the server reads them.
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// Bytes a client may send on all streams of a connection before the
/// server reads them.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Bytes buffered per stream towards a client that does not read.
pub const SEND_BUFFER: usize = 64 * 1024;
/// Streams the client may reset before the server accepted them (h2's
/// default, the CVE-2023-26964 bound; a rapid-reset flood trips it).
pub const PENDING_RESETS: usize = 20;
/// Streams the server may reset because the client erred (hyper's default
/// is 1024).
pub const LOCAL_ERROR_RESETS: usize = 256;
/// How often an HTTP/2 connection is pinged, and how long the answer may
/// take before the connection is closed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the other streams of a connection closed for a stalled
/// WebSocket stream get to finish after its GOAWAY.
pub const STALLED_GRACE: Duration = Duration::from_secs(2);

/// Whether a connection negotiated HTTP/2 in its TLS handshake.
pub trait Negotiated {
    fn http2(&self) -> bool;
}

impl<T> Negotiated for tokio_rustls::server::TlsStream<T> {
    fn http2(&self) -> bool {
        self.get_ref().1.alpn_protocol() == Some(ALPN_H2)
    }
}

/// Plain listeners speak HTTP/1.1 only (no h2c: browsers never use it).
impl<T> Negotiated for StallGuard<T> {
    fn http2(&self) -> bool {
        false
    }
}

impl<T> Negotiated for crate::server::read_ahead::ReadAhead<T> {
    fn http2(&self) -> bool {
        false
    }
}

/// An HTTP/2 request names its host in `:authority` (hyper puts it in the
/// URI): copied into `Host` when absent, so every check and route kind
/// reads the host the same way on both versions. A `Host` that names
/// another host than `:authority` makes the request malformed (RFC 9113
/// section 8.3.1): 400.
pub fn authority_as_host<B>(req: &mut Request<B>) -> Result<(), Box<Response<Body>>> {
    if req.version() != Version::HTTP_2 {
        return Ok(());
    }
    let Some(authority) = req.uri().authority().map(|a| a.as_str().to_string()) else {
        return Ok(());
    };
    match req.headers().get(HOST) {
        Some(host) if !host.as_bytes().eq_ignore_ascii_case(authority.as_bytes()) => {
            Err(Box::new(text_response(
                StatusCode::BAD_REQUEST,
                "the Host header and :authority name different hosts; send one host (RFC 9113 section 8.3.1)\n",
            )))
        }
        Some(_) => Ok(()),
        None => {
            if let Ok(v) = HeaderValue::from_str(&authority) {
                req.headers_mut().insert(HOST, v);
            }
            Ok(())
        }
    }
}

/// Serves HTTP/2 on `io` until the client or the server ends it.
pub async fn serve<IO, S>(io: IO, service: S, shutdown: CancellationToken, idle_timeout: Duration)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    metrics::http2_connection();
    let h2 = H2Conn::default();
    let mut active = h2.activity.watch();
    let service = Noted {
        inner: service,
        h2: h2.clone(),
    };
    let connection = builder().serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // Idle (no stream in progress) for the timeout: closed, as an idle
    // HTTP/1.1 keep-alive connection is. From the start, this is the wait
    // for the first request.
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut served = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            changed = active.changed() => {
                if changed.is_err() {
                    continue;
                }
                served = true;
                if *active.borrow_and_update() == 0 {
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                }
            }
            _ = idle.as_mut(), if *active.borrow() == 0 => {
                if !served {
                    metrics::handshake_failed(HandshakeFailure::Timeout);
                    tracing::debug!("HTTP/2 connection sent no request within the handshake timeout");
                    return;
                }
                connection.as_mut().graceful_shutdown();
                match tokio::time::timeout(STALLED_GRACE, connection.as_mut()).await {
                    Ok(result) => break result,
                    Err(_) => return,
                }
            }
            _ = shutdown.cancelled() => {
                // The WebSockets close themselves with 1001 on shutdown,
                // over this connection: keep it running until they have,
                // then GOAWAY (hyper would end their streams at once).
                h2.streams.close();
                let ended = h2.streams.wait();
                tokio::pin!(ended);
                tokio::select! {
                    result = connection.as_mut() => break result,
                    _ = &mut ended => {}
                }
                connection.as_mut().graceful_shutdown();
                break connection.await;
            }
            _ = h2.abort.cancelled() => {
                // A WebSocket stream's reader stalled past the send timeout
                // (counted by the guard): GOAWAY, then the connection goes
                // once its other streams end, or after one more timeout.
                tracing::debug!("closing an HTTP/2 connection: one of its WebSocket streams stalled");
                connection.as_mut().graceful_shutdown();
                match tokio::time::timeout(STALLED_GRACE, connection.as_mut()).await {
                    Ok(result) => break result,
                    Err(_) => return,
                }
            }
        }
    };
    if let Err(e) = result {
        let reason = error_reason(&e);
        if reason != "no_error" {
            metrics::http2_connection_error(reason);
        }
        tracing::debug!(error = %e, reason, "HTTP/2 connection ended with an error");
    }
}

/// hyper's HTTP/2 server with wssd's limits (see the module docs).
fn builder() -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .adaptive_window(false)
        .max_send_buf_size(SEND_BUFFER)
        .max_pending_accept_reset_streams(PENDING_RESETS)
        .max_local_error_reset_streams(LOCAL_ERROR_RESETS)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .enable_connect_protocol();
    b
}

/// The HTTP/2 error code a connection ended with, as a metrics label.
fn error_reason(e: &hyper::Error) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<::h2::Error>() {
            if h2.is_io() {
                return "io";
            }
            return match h2.reason() {
                Some(::h2::Reason::NO_ERROR) => "no_error",
                Some(::h2::Reason::PROTOCOL_ERROR) => "protocol_error",
                Some(::h2::Reason::FLOW_CONTROL_ERROR) => "flow_control_error",
                Some(::h2::Reason::FRAME_SIZE_ERROR) => "frame_size_error",
                Some(::h2::Reason::COMPRESSION_ERROR) => "compression_error",
                Some(::h2::Reason::ENHANCE_YOUR_CALM) => "enhance_your_calm",
                Some(::h2::Reason::SETTINGS_TIMEOUT) => "settings_timeout",
                _ => "other",
            };
        }
        if err.downcast_ref::<std::io::Error>().is_some() {
            return "io";
        }
        source = err.source();
    }
    if e.is_timeout() { "timeout" } else { "other" }
}

/// The service, giving each request the connection's [`H2Conn`] and
/// counting it in progress until its response body has ended.
struct Noted<S> {
    inner: S,
    h2: H2Conn,
}

type NotedFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S> Service<Request<Incoming>> for Noted<S>
where
    S: Service<Request<Incoming>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = NotedFuture<S::Error>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let busy = self.h2.activity.busy();
        req.extensions_mut().insert(self.h2.clone());
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                BusyBody {
                    inner: body,
                    _busy: busy,
                }
                .boxed()
            }))
        })
    }
}

/// A response body that keeps its request counted in progress until it
/// has been sent (or dropped).
struct BusyBody {
    inner: Body,
    _busy: Busy,
}

impl hyper::body::Body for BusyBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
