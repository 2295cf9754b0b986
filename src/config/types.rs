//! The domain values options take (`--tls`, `--key-type`, `--client-auth`,
//! `--acme-challenge`, `--log-format`). Flags (clap) and the TOML file
//! (serde) both parse into these; `cli` re-exports them for old paths.

use std::fmt;
use std::path::PathBuf;

use clap::ValueEnum;
use serde::Deserialize;

/// How TLS certificates are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Generate a self-signed certificate in the state folder and reuse it.
    SelfSigned,
    /// Certificates issued by the local CA (`wssd cert ca init`).
    LocalCa,
    /// PEM files given with --cert and --key.
    Files,
    /// Certificates from an ACME CA (Let's Encrypt).
    Acme,
    /// No TLS: only plain listeners (--http).
    Off,
}

impl TlsMode {
    /// The mode as written on the command line and in the file.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::SelfSigned => "self-signed",
            TlsMode::LocalCa => "local-ca",
            TlsMode::Files => "files",
            TlsMode::Acme => "acme",
            TlsMode::Off => "off",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Key algorithm for generated certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// ECDSA with curve P-256 (default).
    #[default]
    #[value(name = "ecdsa-p256", alias = "p256", alias = "ecdsa")]
    #[serde(alias = "p256", alias = "ecdsa")]
    EcdsaP256,
    /// RSA with a 2048-bit modulus.
    #[value(name = "rsa2048", alias = "rsa")]
    #[serde(rename = "rsa2048", alias = "rsa")]
    Rsa2048,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Client certificate policy on TLS listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Handshakes without a valid client certificate fail.
    Required,
    /// A client certificate is verified when presented, but not needed.
    Optional,
}

/// ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcmeChallenge {
    /// Answered by the plain listener (port 80 for public CAs).
    #[value(name = "http-01")]
    #[serde(rename = "http-01")]
    Http01,
    /// Answered by the TLS listener (port 443 for public CAs).
    #[value(name = "tls-alpn-01")]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// Where access log lines go (`--access-log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stderr,
    File(PathBuf),
}

impl AccessLogTarget {
    /// `off`, `stderr`, or a file path; `None` for an empty value.
    pub fn parse(value: &str) -> Option<AccessLogTarget> {
        match value {
            "" => None,
            "off" => Some(AccessLogTarget::Off),
            "stderr" => Some(AccessLogTarget::Stderr),
            path => Some(AccessLogTarget::File(PathBuf::from(path))),
        }
    }
}

/// The access log's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: AccessLogTarget,
    pub format: LogFormat,
}
