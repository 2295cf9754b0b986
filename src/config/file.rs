//! The TOML configuration file: its shape (unknown keys are errors) and the
//! mapping from byte offsets to line numbers for error messages.
//!
//! Each key is the long flag's name with `_` (the `[tls]` table drops the
//! `tls-`/`cert-` prefix); `config::sources` merges it under the flags.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::error::ConfigError;
use super::route_table::RouteTable;
use super::types::{AcmeChallenge, ClientAuth, KeyType, LogFormat, TlsMode};

/// Top-level keys of `wssd.toml`. Names match the long flags with `_`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<Vec<Spanned<String>>>,
    pub http: Option<Vec<Spanned<String>>>,
    pub admin: Option<Spanned<String>>,
    pub state_dir: Option<PathBuf>,
    pub max_message_size: Option<usize>,
    pub memory_budget: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    // The listener edge (issue 12).
    pub connection_rate_per_ip: Option<u32>,
    // Per-listener connection caps (issue 13).
    pub listen_max_connections: Option<usize>,
    pub http_max_connections: Option<usize>,
    pub proxy_protocol: Option<bool>,
    pub redirect_http: Option<bool>,
    // HTTP/2 (issue 15).
    pub http2: Option<bool>,
    pub handshake_timeout: Option<Spanned<f64>>,
    pub ping_interval: Option<Spanned<f64>>,
    pub idle_timeout: Option<Spanned<f64>>,
    pub drain_timeout: Option<Spanned<f64>>,
    pub send_timeout: Option<Spanned<f64>>,
    pub message_rate: Option<u32>,
    pub message_burst: Option<u32>,
    pub byte_rate: Option<u32>,
    pub byte_burst: Option<u32>,
    pub allow_origin: Option<Vec<String>>,
    pub allow_host: Option<Vec<String>>,
    pub trusted_proxy: Option<Vec<String>>,
    pub broker: Option<Spanned<String>>,
    pub broker_ca: Option<PathBuf>,
    pub publish_token: Option<String>,
    pub reload_token: Option<String>,
    pub watch_config: Option<bool>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub access_log: Option<String>,
    pub access_log_format: Option<LogFormat>,
    pub tls: Option<TlsTable>,
    pub route: Option<Vec<Spanned<RouteTable>>>,
}

/// The `[tls]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsTable {
    pub mode: Option<TlsMode>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub hostname: Option<Vec<String>>,
    pub key_type: Option<KeyType>,
    pub client_ca: Option<PathBuf>,
    pub client_auth: Option<ClientAuth>,
    pub acme_directory: Option<String>,
    pub acme_email: Option<String>,
    pub acme_ca_root: Option<PathBuf>,
    pub acme_challenge: Option<AcmeChallenge>,
    pub check_interval: Option<Spanned<f64>>,
    /// Further certificates chosen by SNI.
    pub certificate: Option<Vec<Spanned<CertificateTable>>>,
}

/// A `[[tls.certificate]]` table: a PEM pair served for some names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateTable {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SNI names (`*.example.com` allowed); default: the certificate's SANs.
    pub names: Option<Vec<String>>,
}

/// A parsed file with its text, for turning spans into line numbers.
pub struct LoadedFile {
    pub path: PathBuf,
    pub text: String,
    pub config: FileConfig,
}

impl LoadedFile {
    /// Reads and parses `path`; errors name the file and, for syntax,
    /// unknown keys and wrong types, the line.
    pub fn read(path: PathBuf) -> Result<LoadedFile, ConfigError> {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => return Err(ConfigError::FileUnreadable { path, source }),
        };
        match toml::from_str::<FileConfig>(&text) {
            Ok(config) => Ok(LoadedFile { path, text, config }),
            Err(e) => Err(ConfigError::FileSyntax {
                line: e.span().map(|s| line_of(&text, s.start)),
                message: e.message().trim_end().replace('\n', " "),
                path,
            }),
        }
    }

    /// `file:line` for a byte offset into the file.
    pub fn place(&self, offset: usize) -> String {
        format!("{}:{}", self.path.display(), line_of(&self.text, offset))
    }
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The keys a table of the file accepts, from serde's "expected one of"
/// list for an unknown key placed in it (`header` is the table's header
/// line, or "" for the top level). Tests keep flags, the example file and
/// the file format in step with it.
#[cfg(test)]
pub(crate) fn accepted_keys(header: &str) -> Vec<String> {
    let text = format!("{header}\nno_such_key_anywhere = 1\n");
    let e = toml::from_str::<FileConfig>(&text)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let list = e.split("expected one of").nth(1).unwrap_or_default();
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LoadedFile, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wssd.toml");
        std::fs::write(&path, text).unwrap();
        LoadedFile::read(path)
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("listen = [\"127.0.0.1:1\"]\nlisten_on = 3\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("wssd.toml:2"), "{err}");
        assert!(err.contains("listen_on"), "{err}");
    }

    #[test]
    fn unknown_route_key_is_an_error() {
        let err = parse("[[route]]\npath = \"/a\"\nkind = \"echo\"\nfolder = \"x\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("folder"), "{err}");
        assert!(err.contains(":4"), "{err}");
    }

    #[test]
    fn bad_enum_value_is_an_error() {
        let err = parse("[tls]\nmode = \"maybe\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("wssd.toml:2"), "{err}");
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn good_file_parses() {
        let f = parse(
            "listen = [\"127.0.0.1:1\"]\nmax_message_size = 10\n[tls]\nmode = \"self-signed\"\nkey_type = \"rsa2048\"\n[[route]]\npath = \"/e\"\nkind = \"echo\"\n",
        )
        .unwrap();
        assert_eq!(f.config.max_message_size, Some(10));
        assert_eq!(f.config.tls.unwrap().key_type, Some(KeyType::Rsa2048));
        assert_eq!(f.config.route.unwrap().len(), 1);
    }
}
