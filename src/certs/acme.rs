//! `--tls acme`: certificates from an ACME CA (RFC 8555) with instant-acme.
//!
//! Serving never waits for the CA. [`initial`] hands the server the stored
//! certificate, or a temporary self-signed one (logged as such) when there is
//! none; [`run`] then orders, renews and installs certificates in the
//! background until shutdown:
//!
//! * HTTP-01 is answered by the plain listener and TLS-ALPN-01 by the TLS
//!   listener, both from [`Challenges`]; the configured type is tried first
//!   and the other one (when its listener runs) when validation fails.
//! * The account and the certificates live in the state folder and are reused
//!   at restart: `<state>/acme/<directory>/account.json` (0600) and
//!   `<state>/acme/<directory>/<first hostname>/{cert,key}.pem`, where
//!   `<directory>` is the directory's host plus a short hash of its URL.
//! * Renewal starts when a third of the lifetime is left, or earlier when the
//!   CA's renewal information (ARI, RFC 9773) says so.
//! * Failures keep the current certificate serving, are recorded in the
//!   manager, and are retried with exponential backoff
//!   ([`BACKOFF_START`] doubling up to [`BACKOFF_MAX`]).
//!
//! Every step logs one line starting with `ACME:`.
#![allow(
    clippy::disallowed_types,
    reason = "issuance durations are wall-clock measurements for logs, and tests poll with a real deadline"
)]

use super::generate::name_set;
use super::store::{make_private_dir, sweep_stale, write_private};
use crate::tls::CaPemError;
use std::fmt;
use std::fs::{self};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse,
    CertificateIdentifier, ChallengeType, HttpClient, Identifier, NewAccount, NewOrder, Order,
    OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{Der, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::generate::{self, GeneratedPem, normalize_name};
use super::info::{format_time, public_key_summary};
use super::manager::{CertManager, SlotId};
use super::{CertError, CertInfo, LoadedCert, files};
use crate::cli::{AcmeChallenge, KeyType};
use crate::config::AcmeConfig;
use crate::tls::challenge::Challenges;

/// Everything the ACME source needs, resolved from configuration.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub config: AcmeConfig,
    pub state_dir: PathBuf,
    pub hostnames: Vec<String>,
    pub key_type: KeyType,
    /// Whether a plain listener runs (HTTP-01 possible).
    pub has_http_listener: bool,
    /// Whether a TLS listener runs (TLS-ALPN-01 possible).
    pub has_tls_listener: bool,
}

/// First wait after a failed order; doubles after each further failure.
pub const BACKOFF_START: Duration = Duration::from_secs(2);
/// Longest wait between two failed orders.
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// Validity of the temporary self-signed certificate served until issuance.
pub const TEMPORARY_DAYS: u32 = 7;
/// An order (account, challenges, finalization, download) must finish within this.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(180);
/// The loop re-checks its schedule at least this often (clock jumps, suspend).
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// Bounds on how often the renewal information (ARI) is fetched again.
const ARI_MIN_POLL: Duration = Duration::from_secs(60);
const ARI_MAX_POLL: Duration = Duration::from_secs(6 * 3600);
/// Fetching the renewal information must finish within this.
const ARI_TIMEOUT: Duration = Duration::from_secs(20);
/// Order polling: quick first looks (validation is often done in
/// milliseconds), then doubling; Retry-After from the CA takes precedence.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(15))
    .backoff(2.0)
    .timeout(Duration::from_secs(90));
/// TCP and TLS connection to the CA.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Storage

/// Where one directory's account and one name set's certificate live.
#[derive(Debug, Clone)]
struct Store {
    /// `<state>/acme/<directory key>`
    dir: PathBuf,
    /// `<dir>/<first hostname>`
    cert_dir: PathBuf,
}

impl Store {
    fn new(settings: &AcmeSettings) -> Store {
        let dir = settings
            .state_dir
            .join("acme")
            .join(directory_key(&settings.config.directory));
        let first = settings
            .hostnames
            .first()
            .map(|h| file_safe(&normalize_name(h)))
            .unwrap_or_else(|| "default".into());
        Store {
            cert_dir: dir.join(first),
            dir,
        }
    }

    fn account(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    fn cert(&self) -> PathBuf {
        self.cert_dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.cert_dir.join("key.pem")
    }
}

/// A folder name for a directory URL: its host (and port) plus the first
/// 8 hex digits of the SHA-256 of the whole URL, e.g.
/// `acme-v02.api.letsencrypt.org-2a3f5c1e`.
pub fn directory_key(url: &str) -> String {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let host = rest.split('/').next().unwrap_or_default();
    let hash: String = sha256(url.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let host = file_safe(host);
    if host.is_empty() {
        hash
    } else {
        format!("{host}-{hash}")
    }
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            '*' => '_',
            _ => '_',
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .map(|suite| suite.common.hash_provider.hash(data).as_ref().to_vec())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// What is stored, and when it is due

/// The state of the stored certificate.
#[derive(Debug)]
enum Stored {
    /// Usable and not due; renew from `renew_at`.
    Good {
        cert: LoadedCert,
        renew_at: SystemTime,
    },
    /// Usable but to be replaced now.
    Due { cert: LoadedCert, reason: String },
    /// Nothing usable.
    Missing { reason: String },
}

/// When a certificate is due: when a third of its lifetime is left.
pub fn renewal_time(info: &CertInfo) -> SystemTime {
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or_default();
    info.not_before + lifetime * 2 / 3
}

/// Names of `wanted` the certificate does not cover.
fn uncovered(info: &CertInfo, wanted: &[String]) -> Vec<String> {
    let have = name_set(&info.sans);
    name_set(wanted)
        .into_iter()
        .filter(|n| !have.contains(n))
        .collect()
}

fn key_type_of(cert: &LoadedCert) -> Option<KeyType> {
    cert.key
        .end_entity_cert()
        .ok()
        .and_then(|der| public_key_summary(der).ok())
        .and_then(|(_, kind)| kind)
}

fn assess(settings: &AcmeSettings, store: &Store, now: SystemTime) -> Stored {
    let (cert_path, key_path) = (store.cert(), store.key());
    if !cert_path.exists() && !key_path.exists() {
        return Stored::Missing {
            reason: "no certificate stored yet".into(),
        };
    }
    let cert = match files::load_pair_at(&cert_path, &key_path, now) {
        Ok(cert) => cert,
        Err(CertError::Expired { date, .. }) => {
            return Stored::Missing {
                reason: format!("the stored certificate expired on {date}"),
            };
        }
        Err(e) => {
            return Stored::Missing {
                reason: format!("the stored certificate is unusable ({e})"),
            };
        }
    };
    let missing = uncovered(&cert.info, &settings.hostnames);
    if !missing.is_empty() {
        return Stored::Missing {
            reason: format!(
                "the stored certificate does not cover {}",
                missing.join(", ")
            ),
        };
    }
    if key_type_of(&cert) != Some(settings.key_type) {
        return Stored::Due {
            cert,
            reason: format!(
                "the key type changed to {}",
                generate::key_type_name(settings.key_type)
            ),
        };
    }
    let renew_at = renewal_time(&cert.info);
    if now >= renew_at {
        let reason = format!(
            "a third of its lifetime is left (expires {})",
            format_time(cert.info.not_after)
        );
        return Stored::Due { cert, reason };
    }
    Stored::Good { cert, renew_at }
}

/// The certificate to serve at start, and whether an order is needed.
pub fn initial(settings: &AcmeSettings) -> Result<(LoadedCert, bool), CertError> {
    let store = Store::new(settings);
    // Temp files (account, key) of a start that was killed while writing.
    sweep_stale(&store.dir);
    sweep_stale(&store.cert_dir);
    match assess(settings, &store, SystemTime::now()) {
        Stored::Good { cert, renew_at } => {
            tracing::info!(
                "ACME: reusing the stored certificate {} for {}: serial {}, expires {}, renewal from {}",
                store.cert().display(),
                cert.info.sans.join(", "),
                cert.info.serial,
                format_time(cert.info.not_after),
                format_time(renew_at)
            );
            Ok((cert, false))
        }
        Stored::Due { cert, reason } => {
            tracing::info!(
                "ACME: serving the stored certificate {} (serial {}, expires {}) while renewing it: {reason}",
                store.cert().display(),
                cert.info.serial,
                format_time(cert.info.not_after)
            );
            Ok((cert, true))
        }
        Stored::Missing { reason } => {
            let cert = temporary(settings, &store)?;
            tracing::warn!(
                "ACME: {reason}; serving a TEMPORARY self-signed certificate for {} (serial {}) until the CA issues one; clients will not trust it meanwhile",
                settings.hostnames.join(", "),
                cert.info.serial
            );
            Ok((cert, true))
        }
    }
}

/// A self-signed certificate kept in memory only (never written).
fn temporary(settings: &AcmeSettings, store: &Store) -> Result<LoadedCert, CertError> {
    let pem = generate::self_signed(&settings.hostnames, TEMPORARY_DAYS, settings.key_type)?;
    loaded_from_pem(
        &store.cert_dir.join("temporary-self-signed (in memory)"),
        &pem,
    )
}

/// Builds a [`LoadedCert`] from PEM text; `path` only names it in messages.
fn loaded_from_pem(path: &Path, pem: &GeneratedPem) -> Result<LoadedCert, CertError> {
    let chain = files::parse_chain(path, pem.cert_pem.as_bytes())?;
    let info = files::chain_infos(path, &chain)?
        .into_iter()
        .next()
        .ok_or_else(|| CertError::NoCertificate {
            path: path.to_path_buf(),
            found: "nothing".into(),
        })?;
    let key = files::parse_key(path, pem.key_pem.as_bytes())?;
    let certified = CertifiedKey::new(chain, files::signing_key(path, key)?);
    files::check_keys_match(path, path, &certified)?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        info,
        cert_path: path.to_path_buf(),
        key_path: path.to_path_buf(),
    })
}

// ---------------------------------------------------------------------------
// Failures

/// Why an order failed.
#[derive(Debug)]
enum Failure {
    /// The CA could not validate a challenge (another type may work).
    Challenge(String),
    /// Anything else: network, CA errors, storage.
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Challenge(s) | Failure::Other(s) => f.write_str(s),
        }
    }
}

impl From<CertError> for Failure {
    fn from(e: CertError) -> Self {
        Failure::Other(e.to_string())
    }
}

/// An error and its sources in one line, without repeats.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ").replace(['\n', '\r'], " ")
}

fn step(what: String) -> impl FnOnce(instant_acme::Error) -> Failure {
    move |e| Failure::Other(format!("{what}: {}", describe(&e)))
}

fn is_problem(e: &instant_acme::Error, kind: &str) -> bool {
    matches!(e, instant_acme::Error::Api(p)
        if p.r#type.as_deref().is_some_and(|t| t.ends_with(&format!(":{kind}"))))
}

/// Backoff after `failures` consecutive failures (1 = the first).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    BACKOFF_START
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} s", s.max(1))
    }
}

// ---------------------------------------------------------------------------
// Challenges

fn challenge_name(kind: AcmeChallenge) -> &'static str {
    match kind {
        AcmeChallenge::Http01 => "http-01",
        AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
    }
}

fn challenge_type(kind: AcmeChallenge) -> ChallengeType {
    match kind {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

/// The challenge types to try, preferred first, limited to running listeners.
fn challenge_order(settings: &AcmeSettings) -> Vec<AcmeChallenge> {
    let preferred = settings.config.challenge;
    let other = match preferred {
        AcmeChallenge::Http01 => AcmeChallenge::TlsAlpn01,
        AcmeChallenge::TlsAlpn01 => AcmeChallenge::Http01,
    };
    [preferred, other]
        .into_iter()
        .filter(|k| match k {
            AcmeChallenge::Http01 => settings.has_http_listener,
            AcmeChallenge::TlsAlpn01 => settings.has_tls_listener,
        })
        .collect()
}

/// Removes the challenge answers it placed when dropped.
struct ChallengeGuard {
    challenges: Arc<Challenges>,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl ChallengeGuard {
    fn new(challenges: Arc<Challenges>) -> Self {
        ChallengeGuard {
            challenges,
            tokens: Vec::new(),
            names: Vec::new(),
        }
    }

    fn http01(&mut self, token: &str, key_authorization: &str) {
        self.challenges.set_http01(token, key_authorization);
        self.tokens.push(token.to_string());
    }

    fn alpn(&mut self, name: &str, key: Arc<CertifiedKey>) {
        self.challenges.set_alpn(name, key);
        self.names.push(name.to_string());
    }
}

impl Drop for ChallengeGuard {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.challenges.remove_http01(t);
        }
        for n in &self.names {
            self.challenges.remove_alpn(n);
        }
    }
}

/// The TLS-ALPN-01 validation certificate for `name` (RFC 8737): self-signed,
/// the name as its only SAN, and the critical acmeIdentifier extension holding
/// SHA-256 of the key authorization.
fn alpn_certificate(name: &str, key_auth_digest: &[u8]) -> Result<Arc<CertifiedKey>, Failure> {
    let fail = |e: rcgen::Error| Failure::Other(format!("TLS-ALPN-01 certificate for {name}: {e}"));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
    params.distinguished_name = DistinguishedName::new();
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(key_auth_digest)];
    let cert = params.self_signed(&key).map_err(fail)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = files::signing_key(Path::new("acme-tls/1 validation key"), der)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// A fresh key of `key_type` and a CSR for `names`: (key PEM, CSR DER).
fn key_and_csr(names: &[String], key_type: KeyType) -> Result<(String, Vec<u8>), Failure> {
    let fail = |e: rcgen::Error| Failure::Other(format!("building the CSR: {e}"));
    let key = match key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
    .map_err(fail)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(fail)?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(fail)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

fn identifiers(names: &[String]) -> Vec<Identifier> {
    names
        .iter()
        .map(|n| normalize_name(n))
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(n),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// ARI (RFC 9773)

/// The ARI identifier of a certificate: base64url(AKI keyIdentifier) "."
/// base64url(serial DER content).
fn certificate_id(leaf_der: &[u8]) -> Option<CertificateIdentifier<'static>> {
    use x509_parser::extensions::ParsedExtension;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der).ok()?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })?;
    let serial = cert.tbs_certificate.raw_serial().to_vec();
    Some(CertificateIdentifier::new(Der::from_slice(&aki), Der::from_slice(&serial)).into_owned())
}

/// A uniformly random point of the suggested window not before `now`; `now`
/// when the window is already over (RFC 9773 section 4.2).
fn pick_in_window(start: SystemTime, end: SystemTime, now: SystemTime, random: u64) -> SystemTime {
    if end <= now {
        return now;
    }
    let start = start.max(now);
    let span = end.duration_since(start).unwrap_or_default();
    let nanos = span.as_nanos();
    if nanos == 0 {
        return start;
    }
    let offset = (u128::from(random) % nanos) as u64;
    start + Duration::from_nanos(offset)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = crate::tls::provider().secure_random.fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// What the CA's renewal information said about the current certificate.
#[derive(Debug, Clone)]
struct AriPlan {
    serial: String,
    /// When to renew according to the CA.
    renew_at: SystemTime,
    /// When to ask again.
    recheck: SystemTime,
}

// ---------------------------------------------------------------------------
// HTTPS to the CA

/// The HTTPS client instant-acme talks through: HTTP/1.1 over tokio-rustls
/// with the aws-lc-rs provider, TCP_NODELAY (ACME requests are small writes;
/// with Nagle each one waits ~40 ms for a delayed ACK), one kept-alive
/// connection per CA host, and as roots either `--acme-ca-root` or the
/// webpki roots.
#[derive(Clone)]
struct CaHttp {
    tls: TlsConnector,
    /// Idle connections by `host:port`.
    connections: Arc<tokio::sync::Mutex<Vec<(String, Sender)>>>,
}

type Sender = SendRequest<BodyWrapper<Bytes>>;

impl CaHttp {
    fn new(ca_root: Option<&Path>) -> Result<CaHttp, Failure> {
        let roots = match ca_root {
            Some(path) => {
                let bytes = files::read(path)
                    .map_err(|e| Failure::Other(format!("--acme-ca-root: {e}")))?;
                let p = path.display();
                crate::tls::ca_roots(&bytes).map_err(|e| {
                    Failure::Other(match e {
                        CaPemError::Malformed(e) => format!("--acme-ca-root {p}: malformed PEM ({e})"),
                        CaPemError::Unusable(e) => {
                            format!("--acme-ca-root {p}: unusable CA certificate ({e})")
                        }
                        CaPemError::Empty => format!(
                            "--acme-ca-root {p}: no CERTIFICATE in this file; give the PEM root the ACME server's HTTPS certificate chains to"
                        ),
                    })
                })?
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

// ---------------------------------------------------------------------------
// The client

struct Client {
    settings: AcmeSettings,
    store: Store,
    challenges: Arc<Challenges>,
    account: Option<Account>,
    http: Option<CaHttp>,
    /// `Some(false)` once the directory turned out not to offer ARI.
    ari_supported: Option<bool>,
}

impl Client {
    fn builder(&mut self) -> Result<AccountBuilder, Failure> {
        let http = match &self.http {
            Some(h) => h.clone(),
            None => {
                let h = CaHttp::new(self.settings.config.ca_root.as_deref())?;
                self.http = Some(h.clone());
                h
            }
        };
        Ok(Account::builder_with_http(Box::new(http)))
    }

    fn stored_credentials(&self) -> Option<AccountCredentials> {
        let path = self.store.account();
        let bytes = fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    "ACME: {} is unreadable ({e}); a new account will be created",
                    path.display()
                );
                None
            }
        }
    }

    /// The stored account, if there is one (no account is created).
    async fn existing_account(&mut self) -> Result<Option<Account>, Failure> {
        if let Some(a) = &self.account {
            return Ok(Some(a.clone()));
        }
        let Some(credentials) = self.stored_credentials() else {
            return Ok(None);
        };
        let account = self
            .builder()?
            .from_credentials(credentials)
            .await
            .map_err(step(format!(
                "reaching the ACME directory {}",
                self.settings.config.directory
            )))?;
        tracing::info!(
            "ACME: using the account stored in {} ({})",
            self.store.account().display(),
            account.id()
        );
        self.account = Some(account.clone());
        Ok(Some(account))
    }

    async fn account(&mut self) -> Result<Account, Failure> {
        match self.existing_account().await? {
            Some(a) => Ok(a),
            None => self.create_account().await,
        }
    }

    async fn create_account(&mut self) -> Result<Account, Failure> {
        let directory = self.settings.config.directory.clone();
        let contact = self
            .settings
            .config
            .email
            .as_ref()
            .map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = self
            .builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.clone(),
                None,
            )
            .await
            .map_err(step(format!("creating an account at {directory}")))?;
        let json = serde_json::to_vec_pretty(&credentials)
            .map_err(|e| Failure::Other(format!("serializing the account: {e}")))?;
        write_private(&self.store.account(), &json)?;
        tracing::info!(
            "ACME: account created at {directory}{} ({}); saved in {}",
            contact
                .as_deref()
                .map(|c| format!(" for {c}"))
                .unwrap_or_default(),
            account.id(),
            self.store.account().display()
        );
        self.account = Some(account.clone());
        Ok(account)
    }

    /// Asks the CA when to renew `cert` (ARI). `None` when the CA does not
    /// offer it or cannot be reached (the one-third rule applies then).
    async fn renewal_info(&mut self, cert: &LoadedCert) -> Option<AriPlan> {
        if self.ari_supported == Some(false) {
            return None;
        }
        let id = certificate_id(cert.key.end_entity_cert().ok()?)?;
        let account = match self.existing_account().await {
            Ok(Some(a)) => a,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!("ACME: renewal information not fetched: {e}");
                self.account = None;
                return None;
            }
        };
        match account.renewal_info(&id).await {
            Ok((info, retry)) => {
                self.ari_supported = Some(true);
                let now = SystemTime::now();
                let window = &info.suggested_window;
                let renew_at = pick_in_window(
                    SystemTime::from(window.start),
                    SystemTime::from(window.end),
                    now,
                    random_u64(),
                );
                tracing::info!(
                    "ACME: the CA suggests renewing serial {} between {} and {}; chose {}",
                    cert.info.serial,
                    format_time(SystemTime::from(window.start)),
                    format_time(SystemTime::from(window.end)),
                    format_time(renew_at)
                );
                Some(AriPlan {
                    serial: cert.info.serial.clone(),
                    renew_at,
                    recheck: now + retry.clamp(ARI_MIN_POLL, ARI_MAX_POLL),
                })
            }
            Err(instant_acme::Error::Unsupported(_)) => {
                self.ari_supported = Some(false);
                tracing::info!(
                    "ACME: the directory offers no renewal information (ARI); renewing when a third of the lifetime is left"
                );
                None
            }
            Err(e) => {
                tracing::debug!("ACME: renewal information not fetched: {}", describe(&e));
                None
            }
        }
    }

    /// Orders a certificate, trying each usable challenge type in turn.
    async fn obtain(
        &mut self,
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<LoadedCert, Failure> {
        let kinds = challenge_order(&self.settings);
        if kinds.is_empty() {
            return Err(Failure::Other(
                "no listener can answer a challenge (HTTP-01 needs --http, TLS-ALPN-01 a TLS listener)"
                    .into(),
            ));
        }
        let mut last = None;
        for (i, kind) in kinds.iter().enumerate() {
            match self.order_once(*kind, replaces.clone()).await {
                Ok(cert) => return Ok(cert),
                Err(Failure::Challenge(why)) if i + 1 < kinds.len() => {
                    tracing::warn!(
                        "ACME: {} validation failed: {why}; trying {} instead",
                        challenge_name(*kind),
                        challenge_name(kinds[i + 1])
                    );
                    last = Some(Failure::Challenge(why));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Failure::Other("no challenge type left to try".into())))
    }

    async fn new_order(
        &mut self,
        ids: &[Identifier],
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<Order, Failure> {
        let directory = self.settings.config.directory.clone();
        let what = || format!("placing the order at {directory}");
        let account = self.account().await?;
        let mut order = NewOrder::new(ids);
        if let Some(r) = replaces.clone() {
            order = order.replaces(r);
        }
        match account.new_order(&order).await {
            Ok(o) => Ok(o),
            Err(e) if is_problem(&e, "accountDoesNotExist") || is_problem(&e, "unauthorized") => {
                tracing::warn!(
                    "ACME: the CA rejected the stored account ({}); creating a new one",
                    describe(&e)
                );
                self.account = None;
                let account = self.create_account().await?;
                account
                    .new_order(&NewOrder::new(ids))
                    .await
                    .map_err(step(what()))
            }
            Err(e) if replaces.is_some() => {
                tracing::info!(
                    "ACME: order marked as a replacement was refused ({}); ordering without it",
                    describe(&e)
                );
                account
                    .new_order(&NewOrder::new(ids))
                    .await
                    .map_err(step(what()))
            }
            Err(e) => Err(step(what())(e)),
        }
    }

    /// One order with one challenge type.
    async fn order_once(
        &mut self,
        kind: AcmeChallenge,
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<LoadedCert, Failure> {
        let names: Vec<String> = self
            .settings
            .hostnames
            .iter()
            .map(|n| normalize_name(n))
            .collect();
        let ids = identifiers(&names);
        let mut order = self.new_order(&ids, replaces).await?;
        tracing::info!(
            "ACME: order placed for {} ({}), answering {}",
            names.join(", "),
            order.url(),
            challenge_name(kind)
        );

        let mut guard = ChallengeGuard::new(self.challenges.clone());
        let mut authorizations = order.authorizations();
        while let Some(result) = authorizations.next().await {
            let mut authz = result.map_err(step("fetching an authorization".into()))?;
            let ident = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => {
                    tracing::info!("ACME: {ident} is already validated for this account");
                    continue;
                }
                other => {
                    return Err(Failure::Other(format!(
                        "the authorization for {ident} is {other:?}"
                    )));
                }
            }
            let mut challenge = authz.challenge(challenge_type(kind)).ok_or_else(|| {
                Failure::Challenge(format!(
                    "the CA offers no {} challenge for {ident}",
                    challenge_name(kind)
                ))
            })?;
            let key_auth = challenge.key_authorization();
            match kind {
                AcmeChallenge::Http01 => {
                    guard.http01(&challenge.token, key_auth.as_str());
                    tracing::info!(
                        "ACME: answering http-01 for {ident} on the plain listener at /.well-known/acme-challenge/{}",
                        challenge.token
                    );
                }
                AcmeChallenge::TlsAlpn01 => {
                    guard.alpn(
                        &ident,
                        alpn_certificate(&ident, key_auth.digest().as_ref())?,
                    );
                    tracing::info!(
                        "ACME: answering tls-alpn-01 for {ident} on the TLS listener (ALPN acme-tls/1)"
                    );
                }
            }
            challenge.set_ready().await.map_err(|e| match e {
                instant_acme::Error::Api(p) => Failure::Challenge(format!("{ident}: {p}")),
                other => step(format!("telling the CA the {ident} challenge is ready"))(other),
            })?;
        }

        let status = order.poll_ready(&POLL).await.map_err(|e| match e {
            instant_acme::Error::Api(p) => Failure::Challenge(p.to_string()),
            other => step("waiting for validation".into())(other),
        })?;
        if status != OrderStatus::Ready {
            let detail = invalid_detail(&mut order).await;
            return Err(Failure::Challenge(detail));
        }
        drop(guard);
        tracing::info!(
            "ACME: {} validated ({})",
            names.join(", "),
            challenge_name(kind)
        );

        let (key_pem, csr) = key_and_csr(&names, self.settings.key_type)?;
        order
            .finalize_csr(&csr)
            .await
            .map_err(step("finalizing the order".into()))?;
        // Often issued at once; otherwise poll.
        let chain = match order
            .certificate()
            .await
            .map_err(step("downloading the certificate".into()))?
        {
            Some(chain) => chain,
            None => order
                .poll_certificate(&POLL)
                .await
                .map_err(step("downloading the certificate".into()))?,
        };
        tracing::info!(
            "ACME: order finalized with a new {} key; certificate downloaded",
            generate::key_type_name(self.settings.key_type)
        );

        make_private_dir(&self.store.cert_dir)?;
        let pem = GeneratedPem {
            cert_pem: chain,
            key_pem,
        };
        generate::write_pair(&self.store.cert(), &self.store.key(), &pem)?;
        let loaded = files::load_pair(&self.store.cert(), &self.store.key())?;
        let missing = uncovered(&loaded.info, &names);
        if !missing.is_empty() {
            return Err(Failure::Other(format!(
                "the CA issued a certificate without {}",
                missing.join(", ")
            )));
        }
        Ok(loaded)
    }
}

/// Why an order became invalid, from the order and its authorizations.
async fn invalid_detail(order: &mut Order) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &order.state().error {
        parts.push(p.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let ident = authz.identifier().to_string();
        if let Ok(state) = authz.refresh().await {
            for c in &state.challenges {
                if let Some(p) = &c.error {
                    parts.push(format!("{ident}: {p}"));
                }
            }
        }
    }
    if parts.is_empty() {
        "the order became invalid".into()
    } else {
        parts.join("; ")
    }
}

// ---------------------------------------------------------------------------
// The loop

/// What to do next.
enum Plan {
    Order {
        reason: String,
    },
    /// Sleep until `until`; `what` says what happens then (for the log).
    Wait {
        until: SystemTime,
        what: String,
    },
}

/// Obtains and renews the certificate until shutdown.
pub async fn run(
    settings: AcmeSettings,
    manager: Arc<CertManager>,
    slot: SlotId,
    challenges: Arc<Challenges>,
    shutdown: CancellationToken,
) {
    let store = Store::new(&settings);
    let kinds: Vec<&str> = challenge_order(&settings)
        .into_iter()
        .map(challenge_name)
        .collect();
    tracing::info!(
        "ACME: directory {}, challenges {}, names {}, storage {}",
        settings.config.directory,
        if kinds.is_empty() {
            "none possible".to_string()
        } else {
            kinds.join(" then ")
        },
        settings.hostnames.join(", "),
        store.dir.display()
    );
    let mut stored = match assess(&settings, &store, SystemTime::now()) {
        Stored::Good { cert, .. } | Stored::Due { cert, .. } => Some(cert),
        Stored::Missing { .. } => None,
    };
    let mut client = Client {
        settings: settings.clone(),
        store,
        challenges,
        account: None,
        http: None,
        ari_supported: None,
    };
    let mut failures: u32 = 0;
    let mut ari: Option<AriPlan> = None;
    // The last schedule logged (logged again only when it changes).
    let mut announced: Option<String> = None;

    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let now = SystemTime::now();
        let plan = match &stored {
            None => Plan::Order {
                reason: "no certificate from the CA yet".into(),
            },
            Some(cert) => {
                let missing = uncovered(&cert.info, &settings.hostnames);
                if !missing.is_empty() {
                    Plan::Order {
                        reason: format!("the certificate does not cover {}", missing.join(", ")),
                    }
                } else if key_type_of(cert) != Some(settings.key_type) {
                    Plan::Order {
                        reason: "the key type changed".into(),
                    }
                } else {
                    let stale = ari
                        .as_ref()
                        .is_none_or(|a| a.serial != cert.info.serial || now >= a.recheck);
                    if stale {
                        let cert = cert.clone();
                        ari = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            r = tokio::time::timeout(ARI_TIMEOUT, client.renewal_info(&cert)) => r.ok().flatten(),
                        };
                    }
                    schedule(cert, ari.as_ref(), SystemTime::now())
                }
            }
        };
        match plan {
            Plan::Wait { until, what } => {
                if announced.as_ref() != Some(&what) {
                    tracing::info!("ACME: {what}");
                    announced = Some(what);
                }
                let wait = until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .min(MAX_SLEEP);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Plan::Order { reason } => {
                tracing::info!(
                    "ACME: requesting a certificate for {}: {reason}",
                    settings.hostnames.join(", ")
                );
                let replaces = stored
                    .as_ref()
                    .filter(|_| client.ari_supported == Some(true))
                    .and_then(|c| c.key.end_entity_cert().ok())
                    .and_then(|der| certificate_id(der));
                let started = std::time::Instant::now();
                let result = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = tokio::time::timeout(ATTEMPT_TIMEOUT, client.obtain(replaces)) => r,
                };
                let result = result.unwrap_or_else(|_| {
                    Err(Failure::Other(format!(
                        "no certificate after {}",
                        human(ATTEMPT_TIMEOUT)
                    )))
                });
                match result {
                    Ok(cert) => {
                        tracing::info!(
                            "ACME: certificate installed for {}: serial {}, expires {}, issued by {}; saved in {} ({} ms)",
                            cert.info.sans.join(", "),
                            cert.info.serial,
                            format_time(cert.info.not_after),
                            cert.info.issuer,
                            cert.cert_path.display(),
                            started.elapsed().as_millis()
                        );
                        manager.install(slot, cert.clone());
                        stored = Some(cert);
                        failures = 0;
                        ari = None;
                    }
                    Err(e) => {
                        failures += 1;
                        let wait = backoff(failures);
                        // Reconnect from the stored credentials next time.
                        client.account = None;
                        client.http = None;
                        manager.fail(
                            slot,
                            &format!("ACME: {e}; attempt {failures}, next in {}", human(wait)),
                        );
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
    }
}

/// When `cert` is to be renewed: a third of its lifetime left, or the CA's
/// (ARI) choice when that is earlier; wakes up again for the next ARI check.
fn schedule(cert: &LoadedCert, ari: Option<&AriPlan>, now: SystemTime) -> Plan {
    let rule = renewal_time(&cert.info);
    let ari = ari.filter(|a| a.serial == cert.info.serial);
    let (at, why) = match ari {
        Some(a) if a.renew_at < rule => (a.renew_at, "the CA's renewal window (ARI)"),
        _ => (rule, "a third of the lifetime left"),
    };
    if now >= at {
        return Plan::Order {
            reason: format!(
                "renewal due: {why} (serial {}, expires {})",
                cert.info.serial,
                format_time(cert.info.not_after)
            ),
        };
    }
    let renewal = format!(
        "next renewal at {} ({why}; serial {} expires {})",
        format_time(at),
        cert.info.serial,
        format_time(cert.info.not_after)
    );
    match ari {
        Some(a) if a.recheck < at => Plan::Wait {
            until: a.recheck,
            what: format!(
                "{renewal}; renewal information checked again at {}",
                format_time(a.recheck)
            ),
        },
        _ => Plan::Wait {
            until: at,
            what: renewal,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::manager::Source;
    use crate::tls::resolver::{CertResolver, CertSet};

    fn settings(state: &Path) -> AcmeSettings {
        AcmeSettings {
            config: AcmeConfig {
                directory: "https://127.0.0.1:1/dir".into(),
                email: None,
                ca_root: None,
                challenge: AcmeChallenge::Http01,
            },
            state_dir: state.to_path_buf(),
            hostnames: vec!["wssd.test".into(), "www.wssd.test".into()],
            key_type: KeyType::EcdsaP256,
            has_http_listener: true,
            has_tls_listener: true,
        }
    }

    fn store_pair(s: &AcmeSettings, names: &[String], from: SystemTime, to: SystemTime) {
        let store = Store::new(s);
        let pem = generate::self_signed_between(names, from, to, KeyType::EcdsaP256).unwrap();
        generate::write_pair(&store.cert(), &store.key(), &pem).unwrap();
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn directory_keys() {
        let a = directory_key("https://acme-v02.api.letsencrypt.org/directory");
        assert!(a.starts_with("acme-v02.api.letsencrypt.org-"), "{a}");
        assert_eq!(a.len(), "acme-v02.api.letsencrypt.org-".len() + 8);
        assert_eq!(
            a,
            directory_key("https://acme-v02.api.letsencrypt.org/directory")
        );
        let b = directory_key("https://127.0.0.1:14000/dir");
        assert!(b.starts_with("127.0.0.1_14000-"), "{b}");
        assert_ne!(
            directory_key("https://127.0.0.1:14000/dir"),
            directory_key("https://127.0.0.1:14000/dir2")
        );
        assert!(!directory_key("https://../x").contains('/'));
    }

    #[test]
    fn storage_layout() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let store = Store::new(&s);
        let key = directory_key(&s.config.directory);
        assert_eq!(
            store.account(),
            dir.path().join("acme").join(&key).join("account.json")
        );
        assert_eq!(
            store.cert(),
            dir.path()
                .join("acme")
                .join(&key)
                .join("wssd.test")
                .join("cert.pem")
        );
    }

    #[test]
    fn renewal_at_two_thirds() {
        let now = SystemTime::now();
        let pem = generate::self_signed_between(
            &["a.test".into()],
            now,
            now + 90 * DAY,
            KeyType::EcdsaP256,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded_from_pem(&dir.path().join("x"), &pem).unwrap();
        let at = renewal_time(&loaded.info);
        let expected = loaded.info.not_before + 60 * DAY;
        assert_eq!(at, expected);
    }

    #[test]
    fn nothing_stored_gives_temporary_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let (cert, needs_order) = initial(&s).unwrap();
        assert!(needs_order);
        assert!(cert.info.is_self_issued());
        assert_eq!(cert.info.sans, s.hostnames);
        assert!(cert.info.days_left(SystemTime::now()) <= i64::from(TEMPORARY_DAYS));
        // Nothing was written for the temporary certificate.
        assert!(!Store::new(&s).cert().exists());
    }

    #[test]
    fn stored_fresh_certificate_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let now = SystemTime::now();
        store_pair(&s, &s.hostnames, now - DAY, now + 89 * DAY);
        let (cert, needs_order) = initial(&s).unwrap();
        assert!(!needs_order);
        assert_eq!(cert.cert_path, Store::new(&s).cert());
        // Extra names in the stored certificate are fine.
        let mut more = s.hostnames.clone();
        more.push("other.test".into());
        store_pair(&s, &more, now - DAY, now + 89 * DAY);
        assert!(!initial(&s).unwrap().1);
    }

    #[test]
    fn stored_certificate_due_is_served_and_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let now = SystemTime::now();
        // 90-day certificate with 20 days left: less than a third.
        store_pair(&s, &s.hostnames, now - 70 * DAY, now + 20 * DAY);
        let store = Store::new(&s);
        assert!(matches!(assess(&s, &store, now), Stored::Due { .. }));
        let (cert, needs_order) = initial(&s).unwrap();
        assert!(needs_order);
        assert_eq!(cert.cert_path, store.cert());
        // 40 days left of 90: not yet.
        store_pair(&s, &s.hostnames, now - 50 * DAY, now + 40 * DAY);
        assert!(matches!(assess(&s, &store, now), Stored::Good { .. }));
    }

    #[test]
    fn key_type_change_makes_it_due() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        let now = SystemTime::now();
        store_pair(&s, &s.hostnames, now - DAY, now + 89 * DAY);
        s.key_type = KeyType::Rsa2048;
        let store = Store::new(&s);
        assert!(
            matches!(assess(&s, &store, now), Stored::Due { reason, .. } if reason.contains("key type"))
        );
    }

    #[test]
    fn unusable_stored_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let store = Store::new(&s);
        let now = SystemTime::now();
        // Names not covered.
        store_pair(&s, &["wssd.test".into()], now - DAY, now + 89 * DAY);
        assert!(
            matches!(assess(&s, &store, now), Stored::Missing { reason } if reason.contains("www.wssd.test"))
        );
        // Expired.
        store_pair(&s, &s.hostnames, now - 90 * DAY, now - DAY);
        assert!(
            matches!(assess(&s, &store, now), Stored::Missing { reason } if reason.contains("expired"))
        );
        // Garbage.
        fs::write(store.cert(), "junk").unwrap();
        assert!(
            matches!(assess(&s, &store, now), Stored::Missing { reason } if reason.contains("unusable"))
        );
        let (cert, needs) = initial(&s).unwrap();
        assert!(needs && cert.info.is_self_issued());
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(11), Duration::from_secs(2048));
        assert_eq!(backoff(12), BACKOFF_MAX);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }

    #[test]
    fn challenge_types_follow_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        assert_eq!(
            challenge_order(&s),
            vec![AcmeChallenge::Http01, AcmeChallenge::TlsAlpn01]
        );
        s.config.challenge = AcmeChallenge::TlsAlpn01;
        assert_eq!(
            challenge_order(&s),
            vec![AcmeChallenge::TlsAlpn01, AcmeChallenge::Http01]
        );
        s.has_http_listener = false;
        assert_eq!(challenge_order(&s), vec![AcmeChallenge::TlsAlpn01]);
        s.has_tls_listener = false;
        assert!(challenge_order(&s).is_empty());
    }

    #[test]
    fn alpn_certificate_carries_acme_identifier() {
        let digest = sha256(b"token.thumbprint");
        let key = alpn_certificate("wssd.test", &digest).unwrap();
        let der = key.end_entity_cert().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // OCTET STRING (0x04, 32) wrapping the digest.
        assert_eq!(&ext.value[..2], &[0x04, 0x20]);
        assert_eq!(&ext.value[2..], &digest[..]);
        let info = CertInfo::from_der(der).unwrap();
        assert_eq!(info.sans, vec!["wssd.test".to_string()]);
    }

    #[test]
    fn csr_has_the_names_and_key_type() {
        let names = vec!["wssd.test".to_string(), "www.wssd.test".to_string()];
        for kind in [KeyType::EcdsaP256, KeyType::Rsa2048] {
            let (key_pem, csr) = key_and_csr(&names, kind).unwrap();
            assert!(key_pem.contains("BEGIN PRIVATE KEY"));
            let parsed = rcgen::CertificateSigningRequestParams::from_der(&csr.into()).unwrap();
            let sans: Vec<String> = parsed
                .params
                .subject_alt_names
                .iter()
                .map(|s| match s {
                    rcgen::SanType::DnsName(n) => n.to_string(),
                    other => format!("{other:?}"),
                })
                .collect();
            assert_eq!(sans, names);
        }
    }

    #[test]
    fn ari_window_choice() {
        let now = SystemTime::now();
        let h = Duration::from_secs(3600);
        // Window entirely past: at once.
        assert_eq!(pick_in_window(now - 2 * h, now - h, now, 7), now);
        // Window begun: between now and its end.
        let t = pick_in_window(now - h, now + h, now, u64::MAX);
        assert!(t >= now && t <= now + h);
        // Future window: inside it.
        for r in [0, 1, 12345, u64::MAX] {
            let t = pick_in_window(now + h, now + 2 * h, now, r);
            assert!(t >= now + h && t <= now + 2 * h);
        }
    }

    #[test]
    fn ari_schedule_only_brings_renewal_forward() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let pem = generate::self_signed_between(
            &["a.test".into()],
            now,
            now + 90 * DAY,
            KeyType::EcdsaP256,
        )
        .unwrap();
        let cert = loaded_from_pem(&dir.path().join("x"), &pem).unwrap();
        let rule = renewal_time(&cert.info);
        let plan = schedule(&cert, None, now);
        assert!(matches!(plan, Plan::Wait { until, .. } if until == rule));
        let early = AriPlan {
            serial: cert.info.serial.clone(),
            renew_at: now + DAY,
            recheck: now + Duration::from_secs(6 * 3600),
        };
        assert!(
            matches!(schedule(&cert, Some(&early), now), Plan::Wait { until, .. } if until == early.recheck)
        );
        assert!(matches!(
            schedule(&cert, Some(&early), now + 2 * DAY),
            Plan::Order { reason } if reason.contains("ARI")
        ));
        let late = AriPlan {
            renew_at: now + 80 * DAY,
            recheck: now + 70 * DAY,
            ..early.clone()
        };
        assert!(
            matches!(schedule(&cert, Some(&late), now), Plan::Wait { until, .. } if until == rule)
        );
        assert!(matches!(
            schedule(&cert, None, rule + Duration::from_secs(1)),
            Plan::Order { .. }
        ));
    }

    #[test]
    fn ari_certificate_id() {
        // rcgen sets the AKI when signing with an issuer.
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![1, 2, 3, 4]);
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x87, 0x65]));
        let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
        let id = certificate_id(leaf.der()).unwrap();
        assert_eq!(id.to_string(), "AQIDBA.AIdl");
    }

    #[tokio::test]
    async fn unreachable_ca_keeps_serving_and_records_the_failure() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let (cert, _) = initial(&s).unwrap();
        let serial = cert.info.serial.clone();
        let manager = CertManager::new(Arc::new(CertResolver::new(CertSet::default())));
        let slot = manager.add("acme", Source::Acme, Vec::new(), true, Some(cert));
        let challenges = Arc::new(Challenges::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(s, manager.clone(), slot, challenges, shutdown.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = manager.status();
            if let Some(last) = status[0].last.as_ref().filter(|l| !l.ok) {
                assert!(last.message.contains("ACME:"), "{}", last.message);
                assert!(last.message.contains("next in 2 s"), "{}", last.message);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no failure recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(manager.current(slot).unwrap().info.serial, serial);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("run stops at shutdown")
            .unwrap();
    }
}
