//! The accept loop of one listener and the first moments of each
//! connection: admission, the handshake timeout (TCP accept -> TLS -> request
//! headers), the TLS handshake, then hand-off to `crate::http`. Every
//! accepted socket is wrapped in a [`StallGuard`] (under TLS), so every
//! write to the client runs under the send timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::admission::{Admission, Refusal};
use super::stall::{Peer, StallGuard};
use crate::config::limits::TLS_BUFFER_LIMIT;
use crate::http::reply::ConnInfo;
use crate::http::{self, HttpContext};
use crate::metrics::{self, HandshakeFailure};
use crate::tls::challenge::ACME_TLS_ALPN;

/// One listener's settings.
pub struct Listener {
    pub socket: TcpListener,
    /// `Some` for TLS listeners.
    pub tls: Option<TlsAcceptor>,
    pub label: Arc<str>,
}

impl Listener {
    /// Binds `addr` (named by `flag` in errors), labelled with the address
    /// it got.
    pub fn bind(
        addr: std::net::SocketAddr,
        flag: &'static str,
        tls: Option<TlsAcceptor>,
    ) -> Result<Listener, super::bind::BindError> {
        let socket = super::bind::bind(addr, flag)?;
        let label: Arc<str> = socket
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
            .into();
        Ok(Listener { socket, tls, label })
    }
}

/// Accepts until shutdown; each connection runs in its own tracked task.
pub async fn accept_loop(
    listener: Listener,
    ctx: Arc<HttpContext>,
    admission: Arc<Admission>,
    handshake_timeout: Duration,
    send_timeout: Duration,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            accepted = listener.socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: wait instead of spinning.
                tracing::warn!(listener = %listener.label, error = %e, "accept failed; retrying in {backoff:?}");
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let ticket = match admission.admit(peer.ip()) {
            Ok(t) => t,
            Err(refusal) => {
                metrics::handshake_failed(HandshakeFailure::Limit);
                tracing::debug!(%peer, ?refusal, "connection refused by limit");
                if refusal == Refusal::PerIp {
                    tracing::info!(%peer, "--max-connections-per-ip reached; connection dropped");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            peer,
            listener: listener.label.clone(),
            tls: listener.tls.is_some(),
            ticket: Arc::new(ticket),
            client_subject: None,
        };
        let ctx2 = ctx.clone();
        let tls = listener.tls.clone();
        ctx.tracker.spawn(async move {
            let stream = StallGuard::new(stream, send_timeout, Peer::Client);
            serve(stream, tls, ctx2, info, handshake_timeout).await;
        });
    }
}

async fn serve(
    stream: StallGuard<TcpStream>,
    tls: Option<TlsAcceptor>,
    ctx: Arc<HttpContext>,
    mut info: ConnInfo,
    handshake_timeout: Duration,
) {
    let deadline = Instant::now() + handshake_timeout;
    let Some(acceptor) = tls else {
        http::serve_connection(stream, ctx, info, handshake_timeout).await;
        return;
    };
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream));
    let mut tls_stream = tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        result = handshake => match result {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                metrics::handshake_failed(HandshakeFailure::Tls);
                tracing::debug!(peer = %info.peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics::handshake_failed(HandshakeFailure::Timeout);
                tracing::debug!(peer = %info.peer, "TLS handshake timed out");
                return;
            }
        },
    };
    let session = tls_stream.get_mut().1;
    if session.alpn_protocol() == Some(ACME_TLS_ALPN) {
        // A TLS-ALPN-01 validation: the handshake was the whole answer.
        tracing::info!(peer = %info.peer, "answered ACME TLS-ALPN-01 validation");
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls_stream).await;
        return;
    }
    session.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
    if let Some(subject) = crate::tls::client_subject(session) {
        tracing::debug!(peer = %info.peer, %subject, "client certificate verified");
        info.client_subject = Some(subject.into());
    }
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    http::serve_connection(tls_stream, ctx, info, remaining).await;
}
