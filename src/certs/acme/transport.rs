//! HTTPS to the CA: the [`HttpClient`] instant-acme talks through. Nothing
//! here knows ACME; the order client and the account logic are in `client`
//! and `order`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::error::Failure;
use crate::certs::files;

/// TCP and TLS connection to the CA.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The HTTPS client instant-acme talks through: HTTP/1.1 over tokio-rustls
/// with the aws-lc-rs provider, TCP_NODELAY (ACME requests are small writes;
/// with Nagle each one waits ~40 ms for a delayed ACK), one kept-alive
/// connection per CA host, and as roots either `--acme-ca-root` or the
/// webpki roots.
#[derive(Clone)]
pub(super) struct CaHttp {
    tls: TlsConnector,
    /// Idle connections by `host:port`.
    connections: Arc<tokio::sync::Mutex<Vec<(String, Sender)>>>,
}

type Sender = SendRequest<BodyWrapper<Bytes>>;

impl CaHttp {
    pub(super) fn new(ca_root: Option<&Path>) -> Result<CaHttp, Failure> {
        let roots = match ca_root {
            Some(path) => {
                let bytes = files::read(path)
                    .map_err(|e| Failure::Other(format!("--acme-ca-root: {e}")))?;
                crate::tls::ca_roots(&bytes).map_err(|e| Failure::ca_root(path, e))?
            }
            None => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                roots
            }
        };
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Failure::Other(format!("TLS client: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(CaHttp {
            tls: TlsConnector::from(Arc::new(config)),
            connections: Arc::default(),
        })
    }

    async fn connect(&self, host: &str, port: u16) -> Result<Sender, instant_acme::Error> {
        let other = |e: String| instant_acme::Error::Other(e.into());
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| other(format!("bad host {host}: {e}")))?;
        let connect = async {
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(|e| other(format!("cannot connect to {host}:{port}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            self.tls
                .connect(name, tcp)
                .await
                .map_err(|e| other(format!("TLS with {host}:{port}: {e}")))
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                other(format!(
                    "no connection to {host}:{port} within {CONNECT_TIMEOUT:?}"
                ))
            })??;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| other(format!("HTTP with {host}:{port}: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    async fn send(
        &self,
        mut req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Result<BytesResponse, instant_acme::Error> {
        let other = |e: String| instant_acme::Error::Other(e.into());
        let uri = req.uri().clone();
        if uri.scheme_str() != Some("https") {
            return Err(other(format!(
                "{uri}: the ACME server must be reached over https://"
            )));
        }
        let host = uri
            .host()
            .ok_or_else(|| other(format!("{uri}: no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.clone());
        let key = format!("{host}:{port}");
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = path.parse().map_err(|e| other(format!("{uri}: {e}")))?;
        req.headers_mut().insert(
            hyper::header::HOST,
            authority
                .parse()
                .map_err(|e| other(format!("{uri}: {e}")))?,
        );

        let cached = {
            let mut conns = self.connections.lock().await;
            conns
                .iter()
                .position(|(k, _)| *k == key)
                .map(|i| conns.swap_remove(i).1)
        };
        let reusable = match cached {
            Some(mut s) if !s.is_closed() => s.ready().await.is_ok().then_some(s),
            _ => None,
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => self.connect(&host, port).await?,
        };
        let response: hyper::Response<Incoming> = sender
            .send_request(req)
            .await
            .map_err(|e| other(format!("request to {key}: {e}")))?;
        if !sender.is_closed() {
            self.connections.lock().await.push((key, sender));
        }
        Ok(BytesResponse::from(response))
    }
}

impl HttpClient for CaHttp {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>,
    > {
        let this = self.clone();
        Box::pin(async move { this.send(req).await })
    }
}
