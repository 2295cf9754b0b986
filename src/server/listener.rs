//! The accept loop of one listener and the first moments of each
//! connection: admission, the handshake timeout (TCP accept -> PROXY header
//! -> TLS -> request headers), the PROXY header (`proxy_protocol`), plain
//! HTTP on a TLS port (`sniff`), the TLS handshake, then hand-off to
//! `crate::http`. Every accepted socket is wrapped in a [`StallGuard`]
//! (under TLS), so every write to the client runs under the send timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::admission::{Admission, ListenerCap, Refusal, Ticket};
use super::proxy_protocol;
use super::sniff::{self, FirstBytes};
use super::stall::{Peer, StallGuard};
use super::ticket_hold::TicketHold;
use crate::config::limits::TLS_BUFFER_LIMIT;
use crate::http::reply::ConnInfo;
use crate::http::{self, HttpContext};
use crate::metrics::{self, HandshakeFailure};
use crate::server::read_ahead::ReadAhead;
use crate::tls::challenge::ACME_TLS_ALPN;

/// One listener's settings.
pub struct Listener {
    pub socket: TcpListener,
    /// `Some` for TLS listeners.
    pub tls: Option<TlsAcceptor>,
    pub label: Arc<str>,
    /// Its own connection cap (`--listen-max-connections`,
    /// `--http-max-connections`), if any.
    pub cap: Option<Arc<ListenerCap>>,
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
        Ok(Listener {
            socket,
            tls,
            label,
            cap: None,
        })
    }

    /// With the cap of its kind (TLS or plain) from `options`.
    pub fn capped(mut self, options: &crate::config::listeners::ListenerOptions) -> Listener {
        self.cap = options
            .max_connections(self.tls.is_some())
            .map(ListenerCap::new);
        self
    }
}

/// Accepts until `stop` (shutdown, or a binary upgrade's handover: then the
/// connections already accepted go on); each connection runs in its own
/// tracked task.
/// Admission runs here, before the task is spawned: in full without the
/// PROXY protocol; with it, untrusted peers are refused and only the total
/// is counted, the client's address being charged once its header is read.
pub async fn accept_loop(
    listener: Listener,
    ctx: Arc<HttpContext>,
    admission: Arc<Admission>,
    timeouts: Timeouts,
    proxy_protocol: bool,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
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
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Its own cap first: a refusal there costs the other limits nothing.
        let Ok(slot) = admission.admit_listener(listener.cap.as_ref(), peer.ip()) else {
            continue;
        };
        let admitted = if !proxy_protocol {
            admission.admit(peer.ip())
        } else if ctx.trusted_proxies.iter().any(|c| c.contains(peer.ip())) {
            admission.admit_total(peer.ip())
        } else {
            Err(admission.refuse(Refusal::ProxyProtocol, peer.ip()))
        };
        // Refused: counted and summarised by `admission`; dropping the
        // stream closes it before any TLS work.
        let Ok(ticket) = admitted else { continue };
        let _ = stream.set_nodelay(true);
        let ctx2 = ctx.clone();
        let tls = listener.tls.clone();
        let label = listener.label.clone();
        let admission = admission.clone();
        // Boxed: the task then holds a pointer, not the whole connection
        // future (TLS handshake, hyper), which tokio would otherwise copy
        // whole on every move into and out of its task cell (a few KiB,
        // several times per connection).
        ctx.tracker.spawn(Box::pin(async move {
            let deadline = Instant::now() + timeouts.handshake;
            let mut stream = StallGuard::new(stream, timeouts.send, Peer::Client);
            let mut ticket = ticket;
            ticket.hold(slot);
            let client = if proxy_protocol {
                let read = client_address(&mut stream, peer, deadline, &admission, &mut ticket);
                let client = tokio::select! {
                    _ = ctx2.shutdown.cancelled() => return,
                    client = read => client,
                };
                let Some(client) = client else { return };
                client
            } else {
                peer
            };
            let info = ConnInfo {
                peer: client,
                listener: label,
                tls: tls.is_some(),
                ticket: Arc::new(ticket),
                client_subject: None,
            };
            serve(stream, tls, ctx2, info, deadline).await;
        }));
    }
}

/// The handshake and send timeouts of every connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP accept (PROXY header, TLS) to complete request headers.
    pub handshake: Duration,
    /// The stall guard's send timeout.
    pub send: Duration,
}

/// Reads the PROXY header of a connection from the trusted peer `peer`
/// and charges the client's address to `ticket`: the address, or `None`
/// when the connection is refused (counted, summarised) and must close.
async fn client_address(
    stream: &mut StallGuard<TcpStream>,
    peer: SocketAddr,
    deadline: Instant,
    admission: &Admission,
    ticket: &mut Ticket,
) -> Option<SocketAddr> {
    let client = match tokio::time::timeout_at(deadline, proxy_protocol::read_header(stream)).await
    {
        Ok(Ok(carried)) => carried.unwrap_or(peer),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "PROXY header refused");
            admission.refuse(Refusal::ProxyProtocol, peer.ip());
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "no PROXY header within the handshake timeout");
            admission.refuse(Refusal::ProxyProtocol, peer.ip());
            return None;
        }
    };
    admission.admit_client(ticket, client.ip()).ok()?;
    Some(client)
}

async fn serve(
    mut stream: StallGuard<TcpStream>,
    tls: Option<TlsAcceptor>,
    ctx: Arc<HttpContext>,
    mut info: ConnInfo,
    deadline: Instant,
) {
    let Some(acceptor) = tls else {
        let stream = ReadAhead::new(stream);
        http::serve_connection(stream, ctx, info, remaining(deadline)).await;
        return;
    };
    let first = tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        first = sniff::read_first(&mut stream, deadline) => first.unwrap_or_default(),
    };
    if sniff::kind(&first) == FirstBytes::Http {
        tracing::debug!(peer = %info.peer, "plain HTTP on a TLS port; answering 400");
        sniff::answer_plain_http(stream, first, deadline).await;
        return;
    }
    // Nothing read (no bytes in time, or closed): the handshake finds out.
    let mut refused = None;
    let stream = TicketHold::new(ReadAhead::new(stream));
    let mut accept = acceptor.accept_with(stream, |conn| refused = sniff::feed(conn, &first).err());
    drop(first);
    if let Some(refused) = refused {
        metrics::handshake_failed(HandshakeFailure::Tls);
        tracing::debug!(peer = %info.peer, error = %refused.error, "TLS handshake failed");
        if let Some(io) = accept.get_mut() {
            let write = tokio::io::AsyncWriteExt::write_all(io, &refused.alert);
            let _ = tokio::time::timeout_at(deadline, write).await;
        }
        return;
    }
    let handshake = tokio::time::timeout_at(deadline, accept.into_fallible());
    let mut tls_stream = tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        result = handshake => match result {
            Ok(Ok(s)) => s,
            Ok(Err((e, mut io))) => {
                metrics::handshake_failed(HandshakeFailure::Tls);
                tracing::debug!(peer = %info.peer, error = %e, "TLS handshake failed");
                // The alert rustls wrote after the client's answer is held.
                let _ = tokio::time::timeout_at(deadline, io.release()).await;
                return;
            }
            Err(_) => {
                metrics::handshake_failed(HandshakeFailure::Timeout);
                tracing::debug!(peer = %info.peer, "TLS handshake timed out");
                return;
            }
        },
    };
    let (io, session) = tls_stream.get_mut();
    if session.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        // Its session ticket (held) leaves with the first reply.
        io.replying();
    } else if tokio::time::timeout_at(deadline, io.release())
        .await
        .map_or(true, |written| written.is_err())
    {
        // The server's last TLS 1.2 flight could not be written.
        return;
    }
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
    http::serve_connection(tls_stream, ctx, info, remaining(deadline)).await;
}

/// Time left until `deadline`, at least 100 ms (for the request headers).
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100))
}
