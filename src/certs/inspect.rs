//! `wssd cert inspect` and the certificate half of `wssd check`: describe a
//! chain (even an expired one), optionally match a key, and list every problem.
//! Loading for serving (which stops at the first problem) is `files`'s job.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::{CertifiedKey, SigningKey};

use crate::certs::error::CertError;
use crate::certs::files;
use crate::certs::info::CertInfo;
use crate::certs::info::{format_time, public_key_summary};

/// Fewer days left than this is a warning.
pub const WARN_DAYS: i64 = 14;

/// What `wssd cert inspect` shows.
#[derive(Debug, Clone)]
pub struct InspectReport {
    /// The certificate file.
    pub file: PathBuf,
    /// The key file, when one was given.
    pub key_file: Option<PathBuf>,
    /// The leaf certificate.
    pub info: CertInfo,
    /// The leaf's public key in words (`ECDSA P-256`, `RSA 2048-bit`, ...).
    pub key_algorithm: String,
    /// Certificates in the file.
    pub chain_len: usize,
    /// Whether the key matches the leaf; `None` when not checked.
    pub key_match: Option<bool>,
    /// Days until notAfter at the time of inspection (negative once expired).
    pub days_left: i64,
    /// Things that make the pair unusable, one line each.
    pub problems: Vec<String>,
    /// Things to act on soon, one line each.
    pub warnings: Vec<String>,
}

/// Describes the chain in `cert` and, with `key`, whether the key matches.
/// Fails only when the certificate file cannot be read or parsed; an expired
/// certificate or a bad key end up in `problems`.
pub fn inspect(
    cert: &Path,
    key: Option<&Path>,
    now: SystemTime,
) -> Result<InspectReport, CertError> {
    let bytes = files::read(cert)?;
    let chain = files::parse_chain(cert, &bytes)?;
    let infos = files::chain_infos(cert, &chain)?;
    let Some(info) = infos.first().cloned() else {
        return Err(CertError::NoCertificate {
            path: cert.to_path_buf(),
            found: "nothing".into(),
        });
    };
    let key_algorithm = chain
        .first()
        .and_then(|der| public_key_summary(der).ok())
        .map_or_else(|| "unknown".to_owned(), |(desc, _)| desc);

    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    validity_findings(cert, &info, now, &mut problems, &mut warnings);
    chain_findings(cert, &infos, now, &mut warnings);

    let key_match = match key {
        None => None,
        Some(key) => match key_matches(cert, key, chain.clone()) {
            Ok(matches) => {
                if !matches {
                    problems.push(
                        CertError::KeyMismatch {
                            cert: cert.to_path_buf(),
                            key: key.to_path_buf(),
                        }
                        .to_string(),
                    );
                }
                Some(matches)
            }
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        },
    };

    Ok(InspectReport {
        file: cert.to_path_buf(),
        key_file: key.map(Path::to_path_buf),
        days_left: info.days_left(now),
        info,
        key_algorithm,
        chain_len: chain.len(),
        key_match,
        problems,
        warnings,
    })
}

/// How much a [`Finding`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The pair cannot be served.
    Problem,
    /// The pair can be served; act soon.
    Warning,
}

/// One thing `wssd check` reports about a cert/key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// One line, naming the file.
    pub message: String,
}

impl Finding {
    fn problem(message: String) -> Finding {
        Finding {
            severity: Severity::Problem,
            message,
        }
    }

    fn warning(message: String) -> Finding {
        Finding {
            severity: Severity::Warning,
            message,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every problem with a cert/key pair, then every warning, one line each.
/// Empty means the pair is good to serve.
pub fn check_pair(cert: &Path, key: &Path, now: SystemTime) -> Vec<Finding> {
    match inspect(cert, Some(key), now) {
        Ok(report) => {
            let mut findings: Vec<Finding> =
                report.problems.into_iter().map(Finding::problem).collect();
            findings.extend(report.warnings.into_iter().map(Finding::warning));
            findings
        }
        Err(e) => {
            // The certificate is unusable; the key file may be wrong as well.
            let mut findings = vec![Finding::problem(e.to_string())];
            if let Err(e) = load_key(key) {
                findings.push(Finding::problem(e.to_string()));
            }
            findings
        }
    }
}

fn load_key(key: &Path) -> Result<Arc<dyn SigningKey>, CertError> {
    let bytes = files::read(key)?;
    let der = files::parse_key(key, &bytes)?;
    files::signing_key(key, der)
}

/// Loads the key and compares it with the leaf. `Err` when the key itself is unusable.
fn key_matches(
    cert: &Path,
    key: &Path,
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
) -> Result<bool, CertError> {
    let certified = CertifiedKey::new(chain, load_key(key)?);
    match files::check_keys_match(cert, key, &certified) {
        Ok(()) => Ok(true),
        Err(CertError::KeyMismatch { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn validity_findings(
    cert: &Path,
    info: &CertInfo,
    now: SystemTime,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    if let Err(e) = files::check_validity(cert, info, now) {
        problems.push(e.to_string());
        return;
    }
    let days = info.days_left(now);
    if days < WARN_DAYS {
        warnings.push(format!(
            "{}: certificate expires in {days} day{} (on {}); renew it soon",
            cert.display(),
            if days == 1 { "" } else { "s" },
            format_time(info.not_after)
        ));
    }
}

/// Intermediates that have expired, and chains that look out of order.
fn chain_findings(cert: &Path, infos: &[CertInfo], now: SystemTime, warnings: &mut Vec<String>) {
    for (i, info) in infos.iter().enumerate().skip(1) {
        if info.is_expired(now) {
            warnings.push(format!(
                "{}: certificate #{} of the chain ({}) expired on {}; replace the chain file with a current one from the issuer",
                cert.display(),
                i + 1,
                info.subject,
                format_time(info.not_after)
            ));
        }
    }
    if let Some(leaf) = infos.first()
        && infos.len() > 1
        && leaf.is_ca
        && infos.iter().skip(1).any(|i| !i.is_ca)
    {
        warnings.push(format!(
            "{}: the first certificate is a CA but a later one is not; put the server (leaf) certificate first",
            cert.display()
        ));
    }
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = &self.info;
        let or_none = |s: &str| {
            if s.is_empty() {
                "(empty)".to_owned()
            } else {
                s.to_owned()
            }
        };
        let sans = if info.sans.is_empty() {
            "(none)".to_owned()
        } else {
            info.sans.join(", ")
        };
        let key_match = match (self.key_match, &self.key_file) {
            (Some(true), Some(k)) => format!("yes ({})", k.display()),
            (Some(false), Some(k)) => format!("no ({})", k.display()),
            (Some(true), None) => "yes".to_owned(),
            (Some(false), None) => "no".to_owned(),
            (None, Some(_)) => "not checked (key unusable, see problems)".to_owned(),
            (None, None) => "not checked (give --key)".to_owned(),
        };
        let rows: [(&str, String); 12] = [
            ("file", self.file.display().to_string()),
            ("subject", or_none(&info.subject)),
            ("SANs", sans),
            ("issuer", or_none(&info.issuer)),
            ("serial", info.serial.clone()),
            ("public key", self.key_algorithm.clone()),
            ("CA", if info.is_ca { "yes" } else { "no" }.to_owned()),
            ("not before", format_time(info.not_before)),
            ("not after", format_time(info.not_after)),
            ("days left", self.days_left.to_string()),
            ("chain length", self.chain_len.to_string()),
            ("key match", key_match),
        ];
        for (label, value) in rows {
            writeln!(f, "{:<13} {value}", format!("{label}:"))?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::files::testing::{pair, write};
    use crate::certs::generate;
    use crate::config::types::KeyType;
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(86_400);

    fn names() -> Vec<String> {
        vec!["inspect.test".into(), "192.0.2.7".into()]
    }

    #[test]
    fn shows_sans_and_key_match() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 90, KeyType::EcdsaP256).unwrap();
        let (c, k) = pair(dir.path(), &pem);
        let report = inspect(&c, Some(&k), SystemTime::now()).unwrap();
        assert_eq!(report.key_match, Some(true));
        assert_eq!(report.chain_len, 1);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let text = report.to_string();
        assert!(
            text.contains("SANs:         inspect.test, 192.0.2.7"),
            "{text}"
        );
        assert!(text.contains("subject:      CN=inspect.test"), "{text}");
        assert!(text.contains("key match:    yes"), "{text}");
        assert!(text.contains("chain length: 1"), "{text}");
        assert!(text.contains("public key:   ECDSA P-256"), "{text}");
        assert!(
            text.contains("days left:    90") || text.contains("days left:    89"),
            "{text}"
        );
        assert!(!text.contains("problem:"), "{text}");

        let without_key = inspect(&c, None, SystemTime::now()).unwrap();
        assert_eq!(without_key.key_match, None);
        assert!(without_key.to_string().contains("not checked"));
        assert!(check_pair(&c, &k, SystemTime::now()).is_empty());
    }

    #[test]
    fn shows_expired_and_mismatch_as_problems() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let pem = generate::self_signed_between(
            &names(),
            now - 40 * DAY,
            now - 2 * DAY,
            KeyType::Rsa2048,
        )
        .unwrap();
        let other = generate::self_signed(&names(), 90, KeyType::Rsa2048).unwrap();
        let c = write(dir.path(), "old.pem", &pem.cert_pem);
        let k = write(dir.path(), "other-key.pem", &other.key_pem);
        let report = inspect(&c, Some(&k), now).unwrap();
        assert_eq!(report.key_match, Some(false));
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("expired on"),
            "{:?}",
            report.problems
        );
        assert!(
            report.problems[1].contains("does not match"),
            "{:?}",
            report.problems
        );
        let text = report.to_string();
        assert!(text.contains("problem: "), "{text}");
        assert!(text.contains("key match:    no"), "{text}");
        assert!(text.contains("days left:    -2"), "{text}");
        assert!(text.contains("RSA 2048-bit"), "{text}");

        // check_pair reports both, not just the first.
        let lines = check_pair(&c, &k, now);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|l| l.severity == Severity::Problem));
        assert!(lines.iter().any(|l| l.message.contains("expired on")));
        assert!(lines.iter().any(|l| l.message.contains("does not match")));
    }

    #[test]
    fn warns_before_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 10, KeyType::EcdsaP256).unwrap();
        let (c, k) = pair(dir.path(), &pem);
        let report = inspect(&c, Some(&k), SystemTime::now()).unwrap();
        assert!(report.problems.is_empty());
        assert_eq!(report.warnings.len(), 1);
        let w = &report.warnings[0];
        assert!(
            w.contains("expires in 10 days") || w.contains("expires in 9 days"),
            "{w}"
        );
        assert!(report.to_string().contains("\nwarning: "));
        let lines = check_pair(&c, &k, SystemTime::now());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].severity, Severity::Warning, "{lines:?}");
        assert!(lines[0].message.contains("expires in"), "{lines:?}");
    }

    #[test]
    fn not_yet_valid_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let pem =
            generate::self_signed_between(&names(), now + DAY, now + 60 * DAY, KeyType::EcdsaP256)
                .unwrap();
        let (c, k) = pair(dir.path(), &pem);
        let lines = check_pair(&c, &k, now);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].message.contains("not valid until"), "{lines:?}");
    }

    #[test]
    fn check_pair_reports_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let junk = write(dir.path(), "junk.pem", "junk");
        let missing = dir.path().join("missing.pem");
        let lines = check_pair(&junk, &missing, SystemTime::now());
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].message.contains("not a PEM file"), "{lines:?}");
        assert!(lines[1].message.contains("no such file"), "{lines:?}");
        assert!(lines.iter().all(|l| !l.message.contains('\n')));
    }

    #[test]
    fn unusable_key_is_a_problem_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 90, KeyType::EcdsaP256).unwrap();
        let (c, _) = pair(dir.path(), &pem);
        let report = inspect(&c, Some(&c), SystemTime::now()).unwrap();
        assert_eq!(report.key_match, None);
        assert_eq!(report.problems.len(), 1);
        assert!(
            report.problems[0].contains("did you swap"),
            "{:?}",
            report.problems
        );
        assert!(report.to_string().contains("key unusable"));
        // A certificate file that is missing is an error.
        let e = inspect(&dir.path().join("nope.pem"), None, SystemTime::now()).unwrap_err();
        assert!(matches!(e, CertError::NotFound { .. }));
    }

    #[test]
    fn chain_order_and_expired_intermediate() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let leaf = generate::self_signed(&names(), 90, KeyType::EcdsaP256).unwrap();
        let old =
            generate::self_signed_between(&names(), now - 40 * DAY, now - DAY, KeyType::EcdsaP256)
                .unwrap();
        let c = write(
            dir.path(),
            "chain.pem",
            &format!("{}{}", leaf.cert_pem, old.cert_pem),
        );
        let k = write(dir.path(), "key.pem", &leaf.key_pem);
        let report = inspect(&c, Some(&k), now).unwrap();
        assert_eq!(report.chain_len, 2);
        assert_eq!(report.key_match, Some(true));
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(report.warnings[0].contains("#2"), "{:?}", report.warnings);
    }
}
