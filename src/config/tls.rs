//! The TLS section: how certificates are obtained (`--tls`, `--cert`,
//! `--key`, `--hostname`, `--key-type`), further certificates by SNI
//! (`[[tls.certificate]]`), client certificates (mTLS) and ACME.
//!
//! Built in two steps because the mode decides the default listeners and
//! the listeners decide the default ACME challenge: [`basics`] first, then
//! [`section`] once the listeners are known.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::defaults;
use super::error::ConfigError;
use super::sources::{Sources, pick};
use super::types::{AcmeChallenge, ClientAuth, KeyType, TlsMode};

/// Certificate settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub mode: TlsMode,
    /// The default certificate's files (`--tls files`).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Names for generated, local-CA and ACME certificates.
    pub hostnames: Vec<String>,
    pub key_type: KeyType,
    /// Further certificates chosen by SNI (`[[tls.certificate]]`).
    pub sni: Vec<CertEntry>,
    /// Client certificates (mTLS), when configured.
    pub client_auth: Option<ClientAuthConfig>,
    pub acme: AcmeConfig,
    /// How often certificate files are re-checked besides file events.
    pub check_interval: Duration,
}

/// A PEM pair served for some SNI names.
#[derive(Debug, Clone, PartialEq)]
pub struct CertEntry {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Explicit names; empty means "the certificate's SANs".
    pub names: Vec<String>,
}

/// mTLS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientAuthConfig {
    pub ca: PathBuf,
    pub required: bool,
}

/// ACME settings (used with `--tls acme`).
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    pub directory: String,
    pub email: Option<String>,
    pub ca_root: Option<PathBuf>,
    pub challenge: AcmeChallenge,
}

/// What the rest of the configuration depends on: the mode and the
/// default certificate.
pub struct TlsBasics {
    pub mode: TlsMode,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub hostnames: Vec<String>,
    pub key_type: KeyType,
}

/// `--tls` (default `files` when `--cert` is given, else `self-signed`),
/// `--cert`/`--key` (only with `files`, and needed there), `--hostname`,
/// `--key-type`.
pub fn basics(src: &Sources<'_>, problems: &mut Vec<ConfigError>) -> TlsBasics {
    let (args, table) = (src.args, src.tls());
    let cert = pick(&args.cert, table.and_then(|t| t.cert.as_ref()));
    let key = pick(&args.key, table.and_then(|t| t.key.as_ref()));
    let mode = pick(&args.tls, table.and_then(|t| t.mode.as_ref())).unwrap_or(if cert.is_some() {
        TlsMode::Files
    } else {
        TlsMode::SelfSigned
    });
    let hostnames = if args.hostname.is_empty() {
        table
            .and_then(|t| t.hostname.clone())
            .unwrap_or_else(defaults::hostnames)
    } else {
        args.hostname.clone()
    };
    let key_type =
        pick(&args.key_type, table.and_then(|t| t.key_type.as_ref())).unwrap_or(defaults::KEY_TYPE);
    match mode {
        TlsMode::Files => {
            if cert.is_none() {
                problems.push(ConfigError::FilesModeNeeds {
                    flag: "--cert",
                    what: "the PEM certificate chain",
                });
            }
            if key.is_none() {
                problems.push(ConfigError::FilesModeNeeds {
                    flag: "--key",
                    what: "the PEM private key",
                });
            }
        }
        TlsMode::SelfSigned | TlsMode::LocalCa | TlsMode::Acme | TlsMode::Off => {
            if cert.is_some() || key.is_some() {
                problems.push(ConfigError::CertWithoutFilesMode(mode));
            }
        }
    }
    for h in &hostnames {
        if !is_hostname(h) {
            problems.push(ConfigError::BadHostname(h.clone()));
        }
    }
    TlsBasics {
        mode,
        cert,
        key,
        hostnames,
        key_type,
    }
}

/// The whole TLS section: [`basics`] plus SNI certificates, mTLS, ACME and
/// the file check interval. `http` are the plain listeners (the default
/// ACME challenge and HTTP-01 need one).
pub fn section(
    src: &Sources<'_>,
    basics: TlsBasics,
    http: &[SocketAddr],
    problems: &mut Vec<ConfigError>,
) -> TlsConfig {
    let sni = sni_certificates(src, basics.mode, problems);
    let client_auth = client_auth(src, basics.mode, problems);
    let acme = acme(src, &basics, http, problems);
    let table = src.tls();
    let check_interval = src
        .nonzero_seconds(
            src.args.cert_check_interval,
            table.and_then(|t| t.check_interval.as_ref()),
            "cert_check_interval",
            "",
            problems,
        )
        .unwrap_or(defaults::CERT_CHECK_INTERVAL);
    TlsConfig {
        mode: basics.mode,
        cert: basics.cert,
        key: basics.key,
        hostnames: basics.hostnames,
        key_type: basics.key_type,
        sni,
        client_auth,
        acme,
        check_interval,
    }
}

/// `[[tls.certificate]]` tables (file only).
fn sni_certificates(
    src: &Sources<'_>,
    mode: TlsMode,
    problems: &mut Vec<ConfigError>,
) -> Vec<CertEntry> {
    let mut sni = Vec::new();
    for t in src
        .tls()
        .and_then(|t| t.certificate.as_ref())
        .into_iter()
        .flatten()
    {
        let place = format!("{}: [[tls.certificate]]", src.place(t.span().start));
        let table = t.get_ref();
        let names = table.names.clone().unwrap_or_default();
        for n in &names {
            if !is_hostname(n) {
                problems.push(ConfigError::BadHostname(n.clone()).at(place.clone()));
            }
        }
        sni.push(CertEntry {
            cert: table.cert.clone(),
            key: table.key.clone(),
            names,
        });
    }
    if mode == TlsMode::Off && !sni.is_empty() {
        problems.push(ConfigError::SniWithoutTls);
    }
    sni
}

/// `--client-ca` and `--client-auth` (required unless `optional`).
fn client_auth(
    src: &Sources<'_>,
    mode: TlsMode,
    problems: &mut Vec<ConfigError>,
) -> Option<ClientAuthConfig> {
    let table = src.tls();
    let ca = pick(
        &src.args.client_ca,
        table.and_then(|t| t.client_ca.as_ref()),
    );
    let policy = pick(
        &src.args.client_auth,
        table.and_then(|t| t.client_auth.as_ref()),
    );
    let client_auth = match (ca, policy) {
        (Some(ca), policy) => Some(ClientAuthConfig {
            ca,
            required: policy != Some(ClientAuth::Optional),
        }),
        (None, Some(_)) => {
            problems.push(ConfigError::ClientAuthWithoutCa);
            None
        }
        (None, None) => None,
    };
    if client_auth.is_some() && mode == TlsMode::Off {
        problems.push(ConfigError::ClientCaWithoutTls);
    }
    client_auth
}

/// `--acme-*`; checked only with `--tls acme`.
fn acme(
    src: &Sources<'_>,
    basics: &TlsBasics,
    http: &[SocketAddr],
    problems: &mut Vec<ConfigError>,
) -> AcmeConfig {
    let (args, table) = (src.args, src.tls());
    let default_challenge = if http.is_empty() {
        AcmeChallenge::TlsAlpn01
    } else {
        AcmeChallenge::Http01
    };
    let acme = AcmeConfig {
        directory: pick(
            &args.acme_directory,
            table.and_then(|t| t.acme_directory.as_ref()),
        )
        .unwrap_or_else(|| defaults::ACME_DIRECTORY.to_string()),
        email: pick(&args.acme_email, table.and_then(|t| t.acme_email.as_ref())),
        ca_root: pick(
            &args.acme_ca_root,
            table.and_then(|t| t.acme_ca_root.as_ref()),
        ),
        challenge: pick(
            &args.acme_challenge,
            table.and_then(|t| t.acme_challenge.as_ref()),
        )
        .unwrap_or(default_challenge),
    };
    if basics.mode == TlsMode::Acme {
        if !acme.directory.starts_with("https://") {
            problems.push(ConfigError::AcmeDirectoryNotHttps(acme.directory.clone()));
        }
        if acme.challenge == AcmeChallenge::Http01 && http.is_empty() {
            problems.push(ConfigError::AcmeHttp01WithoutPlainListener);
        }
        let names = &basics.hostnames;
        if names.iter().any(|h| h.starts_with("*.")) {
            problems.push(ConfigError::AcmeWildcard);
        }
        if names
            .iter()
            .any(|h| h.parse::<IpAddr>().is_ok() || h == "localhost")
        {
            problems.push(ConfigError::AcmeNotPublic);
        }
    }
    acme
}

/// Whether `name` is a DNS name (a leading `*.` allowed) or an IP address.
pub fn is_hostname(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            (!label.is_empty() && label.len() <= 63)
                && (label == "*" && i == 0
                    || label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        })
}
