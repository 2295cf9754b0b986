//! Where the local CA and its server certificate live in the state folder,
//! and the fixed validity periods.

use std::path::{Path, PathBuf};

/// Days of validity of a new CA.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Days of validity of a server certificate made for `--tls local-ca`.
pub const LEAF_VALIDITY_DAYS: u32 = 90;
/// A server certificate with this many days left or fewer is reissued.
pub const RENEW_DAYS: i64 = 30;
/// Start of every CA's common name and NSS nickname.
pub(super) const NAME_PREFIX: &str = "wssd local CA";

/// Where the local CA and its server certificate live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    /// `<state>/local-ca` (mode 0700).
    pub dir: PathBuf,
    /// The CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// The CA private key (PEM, mode 0600).
    pub ca_key: PathBuf,
    /// The server certificate for `--tls local-ca`, followed by the CA certificate.
    pub leaf_cert: PathBuf,
    /// Its private key (mode 0600).
    pub leaf_key: PathBuf,
}

/// The local CA's files under `state_dir`.
pub fn paths(state_dir: &Path) -> CaPaths {
    let dir = state_dir.join("local-ca");
    let leaf = dir.join("leaf");
    CaPaths {
        ca_cert: dir.join("ca.pem"),
        ca_key: dir.join("ca-key.pem"),
        leaf_cert: leaf.join("cert.pem"),
        leaf_key: leaf.join("key.pem"),
        dir,
    }
}
