//! The broker section: where chat and broadcast messages travel (`--broker`)
//! and, for `rediss://`, the CA the Redis server's certificate must chain
//! to (`--broker-ca`, read and checked here, once).

use std::fmt;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::sources::{Sources, pick};
use super::trust::{CaPemError, ca_roots};

/// The `--broker` setting.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum BrokerConfig {
    /// In-process (one instance).
    #[default]
    Memory,
    /// A Redis server shared by instances:
    /// `redis[s]://[:PASSWORD@]HOST:PORT[/DB]`; for `rediss://` (TLS), the
    /// CA its certificate must chain to, when not a public one.
    Redis { url: String, ca: Option<BrokerCa> },
}

/// `--broker-ca`: the file and its PEM, read and checked once at load.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerCa {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerConfig::Memory => write!(f, "Memory"),
            BrokerConfig::Redis { url, ca: None } => write!(f, "Redis({})", redact_url(url)),
            BrokerConfig::Redis { url, ca: Some(ca) } => {
                write!(f, "Redis({}, ca {})", redact_url(url), ca.path.display())
            }
        }
    }
}

/// `--broker` and `--broker-ca` (which needs a `rediss://` broker).
pub fn section(src: &Sources<'_>, problems: &mut Vec<ConfigError>) -> BrokerConfig {
    let text = pick(
        &src.args.broker,
        src.file.broker.as_ref().map(|b| b.get_ref()),
    );
    let mut broker_ok = true;
    let mut broker = match text.as_deref().map(parse_broker).transpose() {
        Ok(b) => b.unwrap_or_default(),
        Err(e) => {
            problems.push(e);
            broker_ok = false;
            BrokerConfig::Memory
        }
    };
    if let Some(path) = pick(&src.args.broker_ca, src.file.broker_ca.as_ref()) {
        match &mut broker {
            BrokerConfig::Redis { url, ca } if url.starts_with("rediss://") => {
                match read_broker_ca(&path) {
                    Ok(read) => *ca = Some(read),
                    Err(e) => problems.push(e),
                }
            }
            // The --broker problem is reported already.
            _ if !broker_ok => {}
            _ => problems.push(ConfigError::BrokerCaWithoutTls { path }),
        }
    }
    broker
}

/// Reads `--broker-ca`: at least one PEM certificate, usable as a root.
fn read_broker_ca(path: &Path) -> Result<BrokerCa, ConfigError> {
    let path = path.to_path_buf();
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(source) => return Err(ConfigError::BrokerCaUnreadable { path, source }),
    };
    match ca_roots(&pem) {
        Ok(_) => Ok(BrokerCa { path, pem }),
        Err(CaPemError::Empty) => Err(ConfigError::BrokerCaEmpty { path }),
        Err(source) => Err(ConfigError::BrokerCaUnusable { path, source }),
    }
}

/// A URL with any `user:password@` replaced by `***@`.
fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_string(),
    }
}

/// Parses `--broker`; errors show the URL without its password.
pub fn parse_broker(text: &str) -> Result<BrokerConfig, ConfigError> {
    let url = text.trim();
    if url.is_empty() || url == "memory" {
        return Ok(BrokerConfig::Memory);
    }
    if let Some(rest) = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
    {
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = host.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(ConfigError::BrokerWithoutHost(redact_url(url)));
        }
        return Ok(BrokerConfig::Redis {
            url: url.to_string(),
            ca: None,
        });
    }
    Err(ConfigError::UnknownBroker(redact_url(url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(parse_broker("memory").unwrap(), BrokerConfig::Memory);
        assert_eq!(
            parse_broker("redis://127.0.0.1:6379").unwrap(),
            BrokerConfig::Redis {
                url: "redis://127.0.0.1:6379".into(),
                ca: None
            }
        );
        let e = parse_broker("redis://").unwrap_err().to_string();
        assert!(e.contains("no host"), "{e}");
        let e = parse_broker("rediss://:s3cret@/0").unwrap_err().to_string();
        assert!(e.contains("no host") && !e.contains("s3cret"), "{e}");
        let c = parse_broker("redis://:s3cret@h:1").unwrap();
        assert_eq!(format!("{c:?}"), "Redis(redis://***@h:1)");
        let c = parse_broker("rediss://:s3cret@h:1").unwrap();
        assert_eq!(format!("{c:?}"), "Redis(rediss://***@h:1)");
        let e = parse_broker("nats://x").unwrap_err().to_string();
        assert!(e.contains("unknown broker"), "{e}");
    }
}
