//! Connecting to an upstream: TCP, then TLS (rustls with the route's
//! roots) for `wss://`/`https://`, within the connect timeout, every write
//! afterwards under the send timeout. Used by WebSocket handshakes, health
//! probes and the pooled HTTP client.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::server::read_ahead::ReadAhead;
use crate::server::stall::{Peer, StallGuard};

/// Time allowed to connect (TCP and TLS) to an upstream.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Anything the proxy can talk to an upstream over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(super) type BoxIo = Box<dyn Io>;

/// Connects to `host:port` (then TLS with `tls` when given) within
/// [`CONNECT_TIMEOUT`]; every write then runs under `send_timeout`. Says
/// whether ALPN chose `h2`.
pub(super) async fn connect_io(
    host: &str,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    url: &str,
    send_timeout: Duration,
) -> Result<(BoxIo, bool), ConnectError> {
    let attempt = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|source| ConnectError::Tcp {
                host: host.to_string(),
                port,
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        // Every write to the upstream (TLS records included) runs under
        // the send timeout.
        // Small reads (the relay's, rustls' 4 KiB ones) come from one
        // socket read of up to a TLS record.
        let tcp = ReadAhead::new(StallGuard::new(tcp, send_timeout, Peer::Upstream));
        let Some(config) = tls else {
            return Ok((Box::new(tcp) as BoxIo, false));
        };
        let name = ServerName::try_from(host.to_string()).map_err(|source| ConnectError::Name {
            host: host.to_string(),
            source,
        })?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|source| ConnectError::Tls {
                url: url.to_string(),
                source,
            })?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((Box::new(tls) as BoxIo, h2))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::TimedOut {
            url: url.to_string(),
        }),
    }
}

/// Why an upstream could not be reached.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("connect {host}:{port}: {source}")]
    Tcp {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("bad upstream host name {host}: {source}")]
    Name {
        host: String,
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("TLS to {url}: {source}")]
    Tls { url: String, source: std::io::Error },
    #[error("connect to {url} timed out")]
    TimedOut { url: String },
}
