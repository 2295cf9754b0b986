//! Opening one bench connection: TCP, then TLS (rustls with aws-lc-rs) for
//! `wss://`, then the WebSocket upgrade; and the rustls client configuration.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::error::BenchError;
use super::limits::CONNECT_CONCURRENCY;
use super::report::print;
use super::target::{Target, parse_url, remote_allowed, resolve};
use crate::cli::BenchClientArgs;

/// A bench WebSocket.
pub type Ws = WebSocketStream<BenchStream>;

/// How long one connection may take (TCP + TLS + upgrade) before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP, or TLS over TCP.
pub enum BenchStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Everything needed to open connections to one target, shared by all tasks.
pub struct Connector {
    target: Target,
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    ws_config: WebSocketConfig,
}

impl Connector {
    /// Parses and resolves the URL (loopback only) and builds the TLS client.
    ///
    /// `resumption: false` makes every TLS handshake a full one.
    pub async fn new(
        client: &BenchClientArgs,
        ws_config: WebSocketConfig,
        resumption: bool,
    ) -> Result<Connector, BenchError> {
        let target = parse_url(&client.url)?;
        let addrs = resolve(&target, remote_allowed()).await?;
        let addr = pick_address(&addrs).await?;
        let tls = if target.tls {
            if client.insecure && client.ca.is_some() {
                super::report::note(
                    "--insecure given: --ca is ignored, no certificate is verified",
                );
            }
            let config = client_config(client.insecure, client.ca.as_deref(), resumption)?;
            let name =
                ServerName::try_from(target.host.clone()).map_err(|e| BenchError::BadUrl {
                    url: target.url.clone(),
                    reason: format!("host {:?} is not a valid TLS server name: {e}", target.host),
                })?;
            Some((TlsConnector::from(config), name))
        } else {
            if client.insecure || client.ca.is_some() {
                super::report::note("ws:// is not TLS: --insecure and --ca are ignored");
            }
            None
        };
        Ok(Connector {
            target,
            addr,
            tls,
            ws_config,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The address connections go to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens one WebSocket, bounded by [`CONNECT_TIMEOUT`].
    pub async fn connect(&self) -> Result<Ws, BenchError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect_unbounded()).await {
            Ok(result) => result,
            Err(_) => Err(BenchError::ConnectTimeout {
                url: self.target.url.clone(),
                secs: CONNECT_TIMEOUT.as_secs(),
            }),
        }
    }

    async fn connect_unbounded(&self) -> Result<Ws, BenchError> {
        let tcp = tcp_connect(self.addr).await?;
        let stream = match &self.tls {
            None => BenchStream::Plain(tcp),
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| classify_tls_error(&self.target, e))?;
                BenchStream::Tls(Box::new(tls))
            }
        };
        let (ws, _response) = tokio_tungstenite::client_async_with_config(
            &self.target.uri,
            stream,
            Some(self.ws_config),
        )
        .await
        .map_err(|e| classify_upgrade_error(&self.target, e))?;
        Ok(ws)
    }
}

/// `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519` for a wss:// socket, None for ws://.
pub fn tls_description(ws: &Ws) -> Option<String> {
    let BenchStream::Tls(tls) = ws.get_ref() else {
        return None;
    };
    let conn = tls.get_ref().1;
    let part = |p: Option<String>| p.unwrap_or_else(|| "?".to_owned());
    Some(format!(
        "{} {} {}",
        part(conn.protocol_version().map(|v| format!("{v:?}"))),
        part(
            conn.negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
        ),
        part(
            conn.negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
        ),
    ))
}

/// The first address that accepts a TCP connection (e.g. `localhost` may
/// resolve to ::1 first while the server listens on 127.0.0.1 only).
async fn pick_address(addrs: &[SocketAddr]) -> Result<SocketAddr, BenchError> {
    if let [only] = addrs {
        return Ok(*only);
    }
    let mut last = None;
    for &addr in addrs {
        match tcp_connect(addr).await {
            Ok(_probe) => return Ok(addr),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| BenchError::Internal("no address to connect to".to_owned())))
}

async fn tcp_connect(addr: SocketAddr) -> Result<TcpStream, BenchError> {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(BenchError::ConnectRefused { addr });
        }
        Ok(Err(source)) => return Err(BenchError::Connect { addr, source }),
        Err(_) => {
            return Err(BenchError::Connect {
                addr,
                source: io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out"),
            });
        }
    };
    // Latency benchmark: never let Nagle hold back a small frame.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

fn classify_tls_error(target: &Target, e: io::Error) -> BenchError {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert_error)) => BenchError::TlsVerify {
            host: target.host.clone(),
            detail: cert_error.to_string(),
        },
        Some(other) => BenchError::TlsHandshake {
            host: target.host.clone(),
            detail: other.to_string(),
        },
        None => BenchError::TlsHandshake {
            host: target.host.clone(),
            detail: e.to_string(),
        },
    }
}

fn classify_upgrade_error(target: &Target, e: WsError) -> BenchError {
    match e {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            let hint = match status {
                400 => " (the server did not accept the upgrade request)",
                401 | 403 => " (the route requires authentication or rejected the origin)",
                404 => " (no route at that path: check the path, e.g. /ws/echo)",
                426 => " (the server wants a different WebSocket version)",
                429 | 503 => {
                    " (the server is at a connection limit: raise --max-connections / --max-connections-per-ip)"
                }
                _ => "",
            };
            BenchError::UpgradeRefused {
                url: target.url.clone(),
                status,
                hint,
            }
        }
        other => {
            let hint = if target.tls {
                ""
            } else {
                " (if that port serves TLS, use wss://)"
            };
            BenchError::Upgrade {
                url: target.url.clone(),
                detail: format!("{other}{hint}"),
            }
        }
    }
}

/// The rustls client configuration: TLS 1.3 and 1.2, ALPN `http/1.1`,
/// webpki roots plus `--ca`, or no verification at all with `--insecure`.
pub fn client_config(
    insecure: bool,
    ca: Option<&Path>,
    resumption: bool,
) -> Result<Arc<ClientConfig>, BenchError> {
    let provider = Arc::new(browser_like(&crate::tls::provider()));
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| BenchError::TlsConfig(e.to_string()))?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DangerAcceptAnyServerCert { provider }))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca {
            add_pem_roots(&mut roots, path)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resumption {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The provider with the cipher-suite order current browsers (Chromium,
/// Firefox, Safari) offer: AES-128-GCM, then AES-256-GCM, then
/// ChaCha20-Poly1305, per TLS version. Servers that follow the client's order
/// (rustls, nginx, OpenSSL by default) then pick what they would pick for a
/// browser. The key-exchange groups stay the provider's: X25519MLKEM768
/// first, with an X25519 share too, as browsers send.
fn browser_like(provider: &CryptoProvider) -> CryptoProvider {
    use rustls::CipherSuite as C;
    let rank = |suite: &rustls::SupportedCipherSuite| match suite.suite() {
        C::TLS13_AES_128_GCM_SHA256 | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => 0,
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 1,
        C::TLS13_AES_256_GCM_SHA384 | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => 2,
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 3,
        _ => 4,
    };
    let mut provider = provider.clone();
    // Stable: TLS 1.3 suites stay ahead of TLS 1.2 ones of the same rank.
    provider.cipher_suites.sort_by_key(|suite| {
        (
            matches!(suite, rustls::SupportedCipherSuite::Tls12(_)),
            rank(suite),
        )
    });
    provider
}

fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), BenchError> {
    let ca_error = |detail: String| BenchError::CaFile {
        path: path.to_owned(),
        detail,
    };
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
    let mut added = 0;
    for cert in iter {
        let cert = cert.map_err(|e| ca_error(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| ca_error(format!("certificate {} is not usable: {e}", added + 1)))?;
        added += 1;
    }
    if added == 0 {
        return Err(ca_error("no CERTIFICATE block found".to_owned()));
    }
    Ok(())
}

/// Accepts any server certificate (`--insecure`). Handshake signatures are
/// still checked, so the peer must hold the key of the certificate it sent.
#[derive(Debug)]
pub struct DangerAcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for DangerAcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl AsyncRead for BenchStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BenchStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BenchStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BenchStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BenchStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BenchStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BenchStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            BenchStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BenchStream::Plain(s) => s.is_write_vectored(),
            BenchStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BenchStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BenchStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BenchStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BenchStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connections opened by [`open_many`], and why the others failed.
pub struct Opened {
    pub sockets: Vec<Ws>,
    pub errors: super::report::ErrorLog,
    /// The first failure, kept typed so "nothing connected" can say why.
    pub first_error: Option<BenchError>,
    pub elapsed: Duration,
}

/// Buffers for connections that only stay open or echo one small message:
/// the smallest tungstenite works well with.
pub fn small_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// Opens `conns` connections ([`CONNECT_CONCURRENCY`] handshakes at a time)
/// and prints how many opened, the TLS in use and the errors; an error when
/// none did. Returns them with the TLS description of the first.
pub async fn open_and_report(
    connector: &Arc<Connector>,
    conns: usize,
) -> Result<(Opened, Option<String>), BenchError> {
    let opened = open_many(connector, conns, CONNECT_CONCURRENCY).await;
    let open = opened.sockets.len();
    print(&format!(
        "  connected     {open}/{conns} in {:.2} s\n",
        opened.elapsed.as_secs_f64()
    ));
    if open == 0 {
        return Err(BenchError::no_connections(conns, opened.first_error));
    }
    let tls = opened.sockets.first().and_then(tls_description);
    if let Some(tls) = &tls {
        print(&format!("  tls           {tls}\n"));
    }
    print(&opened.errors.human());
    Ok((opened, tls))
}

/// Opens `n` connections, at most `concurrency` handshakes at a time so the
/// server's accept backlog is not overrun; one task per connection.
pub async fn open_many(connector: &Arc<Connector>, n: usize, concurrency: usize) -> Opened {
    let started = tokio::time::Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let connector = Arc::clone(connector);
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            connector.connect().await
        });
    }
    let mut opened = Opened {
        sockets: Vec::with_capacity(n),
        errors: super::report::ErrorLog::default(),
        first_error: None,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(ws)) => opened.sockets.push(ws),
            Ok(Err(e)) => {
                opened.errors.add(e.to_string());
                opened.first_error.get_or_insert(e);
            }
            Err(e) => opened.errors.add(format!("connect task failed: {e}")),
        }
    }
    opened.elapsed = started.elapsed();
    opened
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_client_offers_what_browsers_offer_first() {
        let provider = browser_like(&crate::tls::provider());
        let suites: Vec<_> = provider.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            suites[0],
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            "{suites:?}"
        );
        assert_eq!(
            suites[1],
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "{suites:?}"
        );
        assert_eq!(suites.len(), crate::tls::provider().cipher_suites.len());
        assert_eq!(
            provider.kx_groups[0].name(),
            rustls::NamedGroup::X25519MLKEM768,
            "the hybrid post-quantum group comes first"
        );
    }
}
