//! What to load before any socket is bound, per TLS mode: the default
//! certificate (files, self-signed, local CA, or ACME's stored/temporary one)
//! and the SNI certificates. Every failure here is fatal and explained; once
//! serving, `manager` and `watch` keep certificates fresh without exits.

use super::acme::AcmeSettings;
use super::error::CertError;
use super::loaded::LoadedCert;
use super::manager::Source;
use super::self_signed::Provenance;
use super::{files, local_ca, self_signed};
use crate::config::Config;
use crate::config::types::TlsMode;

/// One certificate ready to be put in a manager slot.
#[derive(Debug)]
pub struct Initial {
    pub label: String,
    pub source: Source,
    /// Explicit SNI names; empty = the certificate's SANs.
    pub names: Vec<String>,
    pub cert: LoadedCert,
}

/// Everything loaded at start.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The default certificate (absent with `--tls off`).
    pub default: Option<Initial>,
    pub sni: Vec<Initial>,
    /// With `--tls acme`: settings for the background ACME task, and whether
    /// an order is needed right away.
    pub acme: Option<(AcmeSettings, bool)>,
}

/// Loads (or creates) every certificate the configuration asks for: the
/// default one for the TLS mode, then the SNI ones.
pub fn prepare(config: &Config) -> Result<Prepared, CertError> {
    let tls = &config.tls;
    let mut prepared = Prepared::default();
    match tls.mode {
        TlsMode::Off => {
            tracing::warn!("TLS is off: only plain ws:// and http:// listeners run");
            return Ok(prepared);
        }
        TlsMode::Files => prepared.default = files_default(config)?,
        TlsMode::SelfSigned => prepared.default = Some(self_signed_default(config)?),
        TlsMode::LocalCa => prepared.default = Some(local_ca_default(config)?),
        TlsMode::Acme => {
            let (default, settings, needs_order) = acme_default(config)?;
            prepared.default = Some(default);
            prepared.acme = Some((settings, needs_order));
        }
    }
    prepared.sni = sni_certificates(config)?;
    Ok(prepared)
}

/// `--tls files`: the `--cert`/`--key` pair, when given.
fn files_default(config: &Config) -> Result<Option<Initial>, CertError> {
    let tls = &config.tls;
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        return Ok(None);
    };
    let loaded = files::load_pair(cert, key)?;
    tracing::info!(
        "certificate: {} (names: {}; expires {}, serial {})",
        cert.display(),
        loaded.info.sans.join(", "),
        super::info::format_time(loaded.info.not_after),
        loaded.info.serial
    );
    Ok(Some(Initial {
        label: cert.display().to_string(),
        source: Source::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        names: Vec::new(),
        cert: loaded,
    }))
}

/// `--tls self-signed`: the stored pair, or a new one.
fn self_signed_default(config: &Config) -> Result<Initial, CertError> {
    let tls = &config.tls;
    let (loaded, provenance) =
        self_signed::ensure(&config.state_dir, &tls.hostnames, tls.key_type)?;
    log_generated("self-signed", &loaded, &provenance);
    tracing::info!(
        "Browsers will warn until you trust it: curl --cacert {} ..., or add it to your \
         trust store (Debian: cp it to /usr/local/share/ca-certificates/wssd.crt && \
         update-ca-certificates); `--tls local-ca` plus `wssd cert ca install` avoids warnings",
        loaded.cert_path.display()
    );
    Ok(Initial {
        label: loaded.cert_path.display().to_string(),
        source: Source::SelfSigned,
        names: Vec::new(),
        cert: loaded,
    })
}

/// `--tls local-ca`: the stored leaf, or a new one (and the CA, if absent).
fn local_ca_default(config: &Config) -> Result<Initial, CertError> {
    let tls = &config.tls;
    let (loaded, provenance) =
        local_ca::ensure_leaf(&config.state_dir, &tls.hostnames, tls.key_type)?;
    log_generated("local CA", &loaded, &provenance);
    // The hint checks the stores, so it is true (the NSS database is the
    // user's: HOME, as `wssd cert ca install` uses).
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from);
    let hint = local_ca::trust_hint(&config.state_dir, home);
    if !hint.is_empty() {
        tracing::info!("{hint}");
    }
    local_ca::announce_pages(config);
    Ok(Initial {
        label: loaded.cert_path.display().to_string(),
        source: Source::LocalCa,
        names: Vec::new(),
        cert: loaded,
    })
}

/// `--tls acme`: the stored (or temporary) certificate, the settings for the
/// background task, and whether an order is needed right away.
fn acme_default(config: &Config) -> Result<(Initial, AcmeSettings, bool), CertError> {
    let tls = &config.tls;
    let settings = AcmeSettings {
        config: tls.acme.clone(),
        state_dir: config.state_dir.clone(),
        hostnames: tls.hostnames.clone(),
        key_type: tls.key_type,
        has_http_listener: !config.http.is_empty(),
        has_tls_listener: !config.listen.is_empty(),
    };
    let (loaded, needs_order) = super::acme::initial(&settings)?;
    let default = Initial {
        label: format!("acme:{}", tls.hostnames.join(",")),
        source: Source::Acme,
        names: Vec::new(),
        cert: loaded,
    };
    Ok((default, settings, needs_order))
}

/// The `--sni` pairs.
fn sni_certificates(config: &Config) -> Result<Vec<Initial>, CertError> {
    let mut sni = Vec::new();
    for entry in &config.tls.sni {
        let loaded = files::load_pair(&entry.cert, &entry.key)?;
        tracing::info!(
            "SNI certificate {} for {}",
            entry.cert.display(),
            if entry.names.is_empty() {
                loaded.info.sans.join(", ")
            } else {
                entry.names.join(", ")
            }
        );
        sni.push(Initial {
            label: entry.cert.display().to_string(),
            source: Source::Files {
                cert: entry.cert.clone(),
                key: entry.key.clone(),
            },
            names: entry.names.clone(),
            cert: loaded,
        });
    }
    Ok(sni)
}

/// Checks generated certificates again (renewal before expiry, names).
/// Returns a new certificate when one was generated.
pub fn refresh(config: &Config) -> Option<Result<LoadedCert, CertError>> {
    let tls = &config.tls;
    let result = match tls.mode {
        TlsMode::SelfSigned => self_signed::ensure(&config.state_dir, &tls.hostnames, tls.key_type),
        TlsMode::LocalCa => local_ca::ensure_leaf(&config.state_dir, &tls.hostnames, tls.key_type),
        _ => return None,
    };
    match result {
        Ok((cert, Provenance::Generated { reason })) => {
            tracing::info!(
                "certificate renewed ({reason}): {}",
                cert.cert_path.display()
            );
            Some(Ok(cert))
        }
        Ok((_, Provenance::Reused)) => None,
        Err(e) => Some(Err(e)),
    }
}

fn log_generated(kind: &str, loaded: &LoadedCert, provenance: &Provenance) {
    match provenance {
        Provenance::Reused => {
            tracing::info!("{kind} certificate reused: {}", loaded.cert_path.display())
        }
        Provenance::Generated { reason } => tracing::info!(
            "{kind} certificate generated ({reason}): {}",
            loaded.cert_path.display()
        ),
    }
    tracing::info!(
        "certificate names: {}; expires {}",
        loaded.info.sans.join(", "),
        super::info::format_time(loaded.info.not_after)
    );
}
