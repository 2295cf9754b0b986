//! Every way loading, checking, generating or writing a certificate can fail,
//! each as a one-line message that names the file and says what to do.
//! Detecting these cases is the job of `files`, `generate` and `self_signed`.

use std::io;
use std::path::{Path, PathBuf};

/// A certificate problem, worded for the operator: one line, the file, the remedy.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file does not exist.
    #[error(
        "{}: no such file; check --cert/--key (or cert/key in the config file) and the working directory",
        .path.display()
    )]
    NotFound { path: PathBuf },

    /// The file exists but may not be read.
    #[error(
        "{}: permission denied; make it readable by the user wssd runs as (e.g. chown or chmod 0640 with a shared group)",
        .path.display()
    )]
    PermissionDenied { path: PathBuf },

    /// Any other read error (a folder instead of a file, an I/O error, ...).
    #[error("{}: cannot read ({source}); check that it is a regular, readable file", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The file has no PEM section at all (binary DER, empty, or some other format).
    #[error(
        "{}: not a PEM file (no -----BEGIN ...----- line); if it is DER convert it with `openssl x509 -inform der -in {} -out cert.pem`",
        .path.display(), .path.display()
    )]
    NotPem { path: PathBuf },

    /// The file is PEM but its syntax is broken.
    #[error("{}: malformed PEM ({detail}); re-export the file or check it was not truncated", .path.display())]
    BadPem { path: PathBuf, detail: String },

    /// The certificate file has PEM sections but no certificate.
    #[error(
        "{}: no certificate in this file (found: {found}); --cert needs a -----BEGIN CERTIFICATE----- chain, leaf first",
        .path.display()
    )]
    NoCertificate { path: PathBuf, found: String },

    /// The key file holds a certificate and no key.
    #[error(
        "{}: --key points at a certificate; did you swap --cert and --key?",
        .path.display()
    )]
    KeyIsCertificate { path: PathBuf },

    /// The certificate file holds a private key and no certificate.
    #[error(
        "{}: --cert points at a private key; did you swap --cert and --key?",
        .path.display()
    )]
    CertIsKey { path: PathBuf },

    /// The key file has no private key section.
    #[error(
        "{}: no private key found (found: {found}); --key needs a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY",
        .path.display()
    )]
    NoPrivateKey { path: PathBuf, found: String },

    /// The private key is password-protected.
    #[error(
        "{}: the private key is encrypted (ENCRYPTED PRIVATE KEY); decrypt it with `openssl pkey -in {} -out key-plain.pem` and point --key at key-plain.pem",
        .path.display(), .path.display()
    )]
    EncryptedKey { path: PathBuf },

    /// The key is of a kind rustls cannot sign with.
    #[error(
        "{}: unsupported private key ({detail}); use an ECDSA P-256/P-384, Ed25519 or RSA (2048+ bits) key in PEM",
        .path.display()
    )]
    UnsupportedKey { path: PathBuf, detail: String },

    /// The key is not the certificate's key.
    #[error(
        "{}: this private key does not match the certificate in {}; point --key at the key the certificate was issued for",
        .key.display(), .cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    /// The leaf certificate's notAfter has passed.
    #[error(
        "{}: certificate expired on {date}; renew it (or run `wssd cert generate` for a test certificate)",
        .path.display()
    )]
    Expired { path: PathBuf, date: String },

    /// The leaf certificate's notBefore is in the future.
    #[error(
        "{}: certificate is not valid until {date}; check the system clock (or wait until then)",
        .path.display()
    )]
    NotYetValid { path: PathBuf, date: String },

    /// A PEM certificate section that is not valid X.509.
    #[error(
        "{}: certificate cannot be parsed as X.509 ({detail}); re-export it from its issuer",
        show_path(.path)
    )]
    Parse { path: PathBuf, detail: String },

    /// rcgen could not build the certificate.
    #[error(
        "cannot generate a certificate: {detail}; check the --hostname values (DNS names or IP addresses)"
    )]
    Generate { detail: String },

    /// The state folder cannot be created or written.
    #[error(
        "{}: state folder not writable ({source}); make it writable by the user wssd runs as, or choose another with --state-dir",
        .path.display()
    )]
    StateDirNotWritable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The local CA in the state folder is incomplete, damaged or expired.
    #[error(
        "{}: the local CA cannot be used ({detail}); restore the folder from a backup, or move it away and run `wssd cert ca init` (then `wssd cert ca install` again)",
        .path.display()
    )]
    CaUnusable { path: PathBuf, detail: String },

    /// A `wssd cert ca` command could not finish (no state folder, a trust store tool failed).
    #[error("local CA: {detail}")]
    LocalCa { detail: String },

    /// Writing an output file failed.
    #[error(
        "{}: cannot write ({source}); check that its folder exists and is writable",
        .path.display()
    )]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The file's name, or "certificate" when parsing bytes that came from no file.
fn show_path(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        "certificate".to_owned()
    } else {
        path.display().to_string()
    }
}

impl CertError {
    /// Maps a read error of `path` to `NotFound`, `PermissionDenied` or `Io`.
    pub fn from_read(path: &Path, err: io::Error) -> CertError {
        let path = path.to_path_buf();
        match err.kind() {
            io::ErrorKind::NotFound => CertError::NotFound { path },
            io::ErrorKind::PermissionDenied => CertError::PermissionDenied { path },
            _ => CertError::Io { path, source: err },
        }
    }

    /// Names the file in an error made without one (a `Parse` from [`crate::certs::CertInfo::from_der`]).
    pub fn with_path(self, file: &Path) -> CertError {
        match self {
            CertError::Parse { path, detail } if path.as_os_str().is_empty() => CertError::Parse {
                path: file.to_path_buf(),
                detail,
            },
            other => other,
        }
    }

    /// A write failure inside the state folder `dir` is the state folder's problem.
    pub fn in_state_dir(self, dir: &Path) -> CertError {
        match self {
            CertError::Write { source, .. } => CertError::StateDirNotWritable {
                path: dir.to_path_buf(),
                source,
            },
            other => other,
        }
    }

    /// The file the error is about, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            CertError::NotFound { path }
            | CertError::PermissionDenied { path }
            | CertError::Io { path, .. }
            | CertError::NotPem { path }
            | CertError::BadPem { path, .. }
            | CertError::NoCertificate { path, .. }
            | CertError::KeyIsCertificate { path }
            | CertError::CertIsKey { path }
            | CertError::NoPrivateKey { path, .. }
            | CertError::EncryptedKey { path }
            | CertError::UnsupportedKey { path, .. }
            | CertError::Expired { path, .. }
            | CertError::NotYetValid { path, .. }
            | CertError::Parse { path, .. }
            | CertError::StateDirNotWritable { path, .. }
            | CertError::CaUnusable { path, .. }
            | CertError::Write { path, .. } => Some(path),
            CertError::KeyMismatch { key, .. } => Some(key),
            CertError::Generate { .. } | CertError::LocalCa { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_name_the_file() {
        let p = PathBuf::from("/etc/wssd/key.pem");
        let errs = [
            CertError::NotFound { path: p.clone() },
            CertError::PermissionDenied { path: p.clone() },
            CertError::Io {
                path: p.clone(),
                source: io::Error::other("boom"),
            },
            CertError::NotPem { path: p.clone() },
            CertError::KeyIsCertificate { path: p.clone() },
            CertError::CertIsKey { path: p.clone() },
            CertError::EncryptedKey { path: p.clone() },
            CertError::Expired {
                path: p.clone(),
                date: "2020-01-01T00:00:00Z".into(),
            },
            CertError::KeyMismatch {
                cert: "/etc/wssd/cert.pem".into(),
                key: p.clone(),
            },
        ];
        for e in errs {
            let s = e.to_string();
            assert!(!s.contains('\n'), "{s}");
            assert!(s.contains("/etc/wssd/key.pem"), "{s}");
        }
    }

    #[test]
    fn read_errors_are_classified() {
        let p = Path::new("x.pem");
        assert!(matches!(
            CertError::from_read(p, io::Error::from(io::ErrorKind::NotFound)),
            CertError::NotFound { .. }
        ));
        assert!(matches!(
            CertError::from_read(p, io::Error::from(io::ErrorKind::PermissionDenied)),
            CertError::PermissionDenied { .. }
        ));
        assert!(matches!(
            CertError::from_read(p, io::Error::other("x")),
            CertError::Io { .. }
        ));
    }

    #[test]
    fn parse_error_gets_its_path() {
        let e = CertError::Parse {
            path: PathBuf::new(),
            detail: "bad".into(),
        };
        assert!(e.to_string().starts_with("certificate: "));
        let e = e.with_path(Path::new("c.pem"));
        assert!(e.to_string().starts_with("c.pem: "));
    }
}
