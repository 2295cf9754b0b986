//! The TLS handshake as clients see it (issue 16, connects): the server's
//! cipher-suite choice, the hybrid post-quantum group, one session ticket
//! per full handshake and resumption with it, and the first bytes read
//! before the handshake (a ClientHello in pieces, a refused one's alert).

use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Tls13ClientSessionValue};
use rustls::crypto::aws_lc_rs::{self as provider, cipher_suite, kx_group};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CipherSuite, HandshakeKind, NamedGroup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Wssd, http_get, try_tls_connect};

/// A client config trusting the server's certificate, with the given
/// provider and session store.
fn client(
    server: &Wssd,
    provider: rustls::crypto::CryptoProvider,
    store: Option<Arc<dyn ClientSessionStore>>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.cert_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Some(store) = store {
        config.resumption = rustls::client::Resumption::store(store);
    }
    Arc::new(config)
}

#[tokio::test]
async fn the_server_picks_aes_128_gcm_and_the_hybrid_post_quantum_group() {
    let server = Wssd::builder().spawn().await;
    // rustls's own client order: AES-256-GCM first (as OpenSSL's).
    let default = provider::default_provider();
    assert_eq!(
        default.cipher_suites[0].suite(),
        CipherSuite::TLS13_AES_256_GCM_SHA384
    );
    let tls = try_tls_connect(
        server.tls_addr(),
        &client(&server, default, None),
        "localhost",
    )
    .await
    .expect("handshake");
    let conn = tls.get_ref().1;
    assert_eq!(
        conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    // A client that offers only AES-256-GCM still gets it.
    let mut only_256 = provider::default_provider();
    only_256.cipher_suites = vec![cipher_suite::TLS13_AES_256_GCM_SHA384];
    let tls = try_tls_connect(
        server.tls_addr(),
        &client(&server, only_256, None),
        "localhost",
    )
    .await
    .expect("handshake");
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite()),
        Some(CipherSuite::TLS13_AES_256_GCM_SHA384)
    );
    // Browsers offer X25519MLKEM768 first: the server takes it; a client
    // offering nothing else gets it too.
    for groups in [
        vec![kx_group::X25519MLKEM768, kx_group::X25519],
        vec![kx_group::X25519MLKEM768],
    ] {
        let mut pq = provider::default_provider();
        pq.kx_groups = groups;
        let tls = try_tls_connect(server.tls_addr(), &client(&server, pq, None), "localhost")
            .await
            .expect("handshake");
        assert_eq!(
            tls.get_ref()
                .1
                .negotiated_key_exchange_group()
                .map(|g| g.name()),
            Some(NamedGroup::X25519MLKEM768)
        );
    }
    // wssd's own client side (bench, proxy upstreams) offers it first.
    assert_eq!(
        wssd::tls::provider().kx_groups[0].name(),
        NamedGroup::X25519MLKEM768
    );
}

/// Counts the TLS 1.3 tickets a client receives.
struct Counting {
    inner: ClientSessionMemoryCache,
    tickets: AtomicUsize,
}

impl fmt::Debug for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Counting")
    }
}

impl ClientSessionStore for Counting {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.tickets.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_tls13_ticket(name, value)
    }
    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

#[tokio::test]
async fn one_ticket_per_handshake_and_resumption_keeps_working() {
    let server = Wssd::builder().spawn().await;
    let store = Arc::new(Counting {
        inner: ClientSessionMemoryCache::new(16),
        tickets: AtomicUsize::new(0),
    });
    let config = client(&server, provider::default_provider(), Some(store.clone()));
    let mut kinds = Vec::new();
    let mut tickets = Vec::new();
    for _ in 0..3 {
        let tls = try_tls_connect(server.tls_addr(), &config, "localhost")
            .await
            .expect("handshake");
        kinds.push(tls.get_ref().1.handshake_kind());
        // The tickets come after the handshake: read a whole response.
        let r = http_get(tls, "localhost", "/", &[]).await;
        assert_eq!(r.status, 200);
        tickets.push(store.tickets.swap(0, Ordering::SeqCst));
    }
    assert_eq!(
        kinds,
        [
            Some(HandshakeKind::Full),
            Some(HandshakeKind::Resumed),
            Some(HandshakeKind::Resumed)
        ]
    );
    // One per handshake, the resumed ones included (rustls's default: 2).
    assert_eq!(tickets, [1, 1, 1]);
}

/// The ClientHello a rustls client sends first.
fn client_hello(config: &Arc<rustls::ClientConfig>) -> (rustls::ClientConnection, Vec<u8>) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    (conn, hello)
}

#[tokio::test]
async fn a_client_hello_in_pieces_still_handshakes() {
    let server = Wssd::builder().spawn().await;
    let config = client(&server, provider::default_provider(), None);
    let addr = server.tls_addr();
    // Blocking client: three bytes of the ClientHello, a pause, the rest,
    // then the handshake and one request, all bounded by read timeouts.
    let outcome = tokio::task::spawn_blocking(move || {
        let (mut conn, hello) = client_hello(&config);
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.write_all(&hello[..3]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        tcp.write_all(&hello[3..]).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .unwrap();
    assert!(outcome.starts_with("HTTP/1.1 200"), "{outcome}");
}

#[tokio::test]
async fn a_refused_client_hello_gets_an_alert() {
    let server = Wssd::builder().spawn().await;
    // A client that offers only TLS 1.2 with a suite the server lacks
    // (CHACHA20 over RSA key exchange with an ECDSA certificate).
    let mut odd = provider::default_provider();
    odd.cipher_suites = vec![cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256];
    let config = client(&server, odd, None);
    let (_, hello) = client_hello(&config);
    let mut tcp = TcpStream::connect(server.tls_addr()).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await;
    // An alert record (content type 21): handshake_failure (40).
    assert_eq!(raw.first(), Some(&21), "{raw:?}");
    assert_eq!(raw.get(6), Some(&40), "{raw:?}");
    assert_eq!(
        server
            .metric("wssd_handshake_failures_total{reason=\"tls\"}")
            .await,
        1.0
    );
}
