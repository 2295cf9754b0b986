//! Where ACME state lives in the state folder: one folder per directory URL
//! holding the account (`account.json`, 0600) and one folder per name set
//! holding `cert.pem` and `key.pem`. Every ACME file name is built here.

use std::fs;
use std::path::PathBuf;

use instant_acme::AccountCredentials;

use super::error::Failure;
use super::settings::AcmeSettings;
use crate::certs::generate::normalize_name;
use crate::certs::store::write_private;

/// Where one directory's account and one name set's certificate live.
#[derive(Debug, Clone)]
pub(super) struct Store {
    /// `<state>/acme/<directory key>`
    pub(super) dir: PathBuf,
    /// `<dir>/<first hostname>`
    pub(super) cert_dir: PathBuf,
}

impl Store {
    pub(super) fn new(settings: &AcmeSettings) -> Store {
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

    pub(super) fn account(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    pub(super) fn cert(&self) -> PathBuf {
        self.cert_dir.join("cert.pem")
    }

    pub(super) fn key(&self) -> PathBuf {
        self.cert_dir.join("key.pem")
    }

    /// The stored account credentials; `None` when there are none or they
    /// cannot be read (a new account is created then).
    pub(super) fn credentials(&self) -> Option<AccountCredentials> {
        let path = self.account();
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

    /// Saves new account credentials (0600).
    pub(super) fn save_credentials(&self, credentials: &AccountCredentials) -> Result<(), Failure> {
        let json = serde_json::to_vec_pretty(credentials).map_err(Failure::Serialize)?;
        write_private(&self.account(), &json)?;
        Ok(())
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

pub(super) fn sha256(data: &[u8]) -> Vec<u8> {
    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .map(|suite| suite.common.hash_provider.hash(data).as_ref().to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::acme::testing::settings;

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
}
