//! Facts about one X.509 certificate (subject, SANs, serial, validity), read
//! with x509-parser, plus the date formatting every certificate message uses.
//! Whether a certificate is acceptable is decided elsewhere (`files`, `inspect`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::public_key::PublicKey;

use crate::certs::error::CertError;
use crate::config::types::KeyType;

/// What operators want to know about a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// Subject distinguished name, e.g. `CN=localhost`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS names and IP addresses from subjectAltName, as text, in certificate order.
    pub sans: Vec<String>,
    /// Serial number in lowercase hex, no colons, no leading zero bytes.
    pub serial: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
}

impl CertInfo {
    /// Reads the facts from one DER certificate. A `Parse` error carries no
    /// path; callers name the file with [`CertError::with_path`].
    pub fn from_der(der: &[u8]) -> Result<CertInfo, CertError> {
        let cert = parse(der)?;

        let sans = match cert.subject_alternative_name() {
            Ok(Some(ext)) => ext
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => Some(ip_text(bytes)),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => {
                return Err(parse_error(format!("subjectAltName: {e}")));
            }
        };

        let raw = cert.raw_serial();
        let first = raw
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(raw.len().saturating_sub(1));
        let serial: String = raw
            .get(first..)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();

        let validity = cert.validity();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            sans,
            serial,
            not_before: from_unix(validity.not_before.timestamp()),
            not_after: from_unix(validity.not_after.timestamp()),
            is_ca: cert.is_ca(),
        })
    }

    /// Whole days until notAfter, rounded down; negative once expired.
    pub fn days_left(&self, now: SystemTime) -> i64 {
        (self.not_after_unix() - to_unix(now)).div_euclid(86_400)
    }

    /// notAfter as Unix seconds (for `/metrics`).
    pub fn not_after_unix(&self) -> i64 {
        to_unix(self.not_after)
    }

    /// notBefore as Unix seconds.
    pub fn not_before_unix(&self) -> i64 {
        to_unix(self.not_before)
    }

    /// True when `now` is past notAfter.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        to_unix(now) > self.not_after_unix()
    }

    /// True when `now` is before notBefore.
    pub fn is_not_yet_valid(&self, now: SystemTime) -> bool {
        to_unix(now) < self.not_before_unix()
    }

    /// True when the certificate is signed by its own subject (issuer == subject).
    pub fn is_self_issued(&self) -> bool {
        self.subject == self.issuer
    }
}

/// The public key of a DER certificate, in words (`ECDSA P-256`, `RSA 2048-bit`, ...),
/// and as a [`KeyType`] when it is one wssd generates.
pub fn public_key_summary(der: &[u8]) -> Result<(String, Option<KeyType>), CertError> {
    let cert = parse(der)?;
    let spki = cert.public_key();
    let oid = spki.algorithm.algorithm.to_id_string();
    Ok(match spki.parsed() {
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => ("ECDSA P-256".to_owned(), Some(KeyType::EcdsaP256)),
            384 => ("ECDSA P-384".to_owned(), None),
            528 => ("ECDSA P-521".to_owned(), None),
            bits => (format!("ECDSA ({bits}-bit)"), None),
        },
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            let kind = (bits == 2048).then_some(KeyType::Rsa2048);
            (format!("RSA {bits}-bit"), kind)
        }
        _ if oid == "1.3.101.112" => ("Ed25519".to_owned(), None),
        _ => (format!("unknown ({oid})"), None),
    })
}

/// A point in time as RFC 3339 UTC, seconds precision: `2025-06-01T12:00:00Z`.
pub fn format_time(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Seconds since the Unix epoch (negative before it).
pub fn to_unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// The inverse of [`to_unix`] (saturating at the epoch for unrepresentable times).
pub fn from_unix(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    t.unwrap_or(UNIX_EPOCH)
}

fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, CertError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(parse_error(e.to_string())),
    }
}

fn parse_error(detail: String) -> CertError {
    CertError::Parse {
        path: Default::default(),
        detail,
    }
}

fn ip_text(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        IpAddr::V4(Ipv4Addr::from(v4)).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        IpAddr::V6(Ipv6Addr::from(v6)).to_string()
    } else {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("invalid-ip:{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::generate;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    fn der_of(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn reads_generated_certificate() {
        let names = vec![
            "example.test".to_owned(),
            "10.1.2.3".to_owned(),
            "::1".to_owned(),
        ];
        let pem = generate::self_signed(&names, 10, KeyType::EcdsaP256).unwrap();
        let info = CertInfo::from_der(&der_of(&pem.cert_pem)).unwrap();
        assert_eq!(info.subject, "CN=example.test");
        assert_eq!(info.issuer, info.subject);
        assert!(info.is_self_issued());
        assert_eq!(info.sans, vec!["example.test", "10.1.2.3", "::1"]);
        assert!(!info.is_ca);
        assert!(!info.serial.is_empty());
        assert!(!info.serial.contains(':'));
        assert_eq!(info.serial, info.serial.to_lowercase());
        let now = SystemTime::now();
        // 10 days from generation; 9 if a second boundary passed since.
        assert!((9..=10).contains(&info.days_left(now)));
        assert!(!info.is_expired(now));
        assert!(!info.is_not_yet_valid(now));
        // not_before is one hour back for clock skew.
        let skew = to_unix(now) - info.not_before_unix();
        assert!((3599..=3601).contains(&skew), "{skew}");
        assert_eq!(to_unix(info.not_after), info.not_after_unix());
        let (desc, kind) = public_key_summary(&der_of(&pem.cert_pem)).unwrap();
        assert_eq!(desc, "ECDSA P-256");
        assert_eq!(kind, Some(KeyType::EcdsaP256));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let err = CertInfo::from_der(b"not a certificate").unwrap_err();
        assert!(matches!(err, CertError::Parse { .. }), "{err}");
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(from_unix(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(to_unix(from_unix(-86_400)), -86_400);
    }

    #[test]
    fn days_left_rounds_down_and_goes_negative() {
        let info = CertInfo {
            subject: String::new(),
            issuer: String::new(),
            sans: vec![],
            serial: "01".into(),
            not_before: from_unix(0),
            not_after: from_unix(10 * 86_400),
            is_ca: false,
        };
        assert_eq!(info.days_left(from_unix(0)), 10);
        assert_eq!(info.days_left(from_unix(86_400 / 2)), 9);
        assert_eq!(info.days_left(from_unix(10 * 86_400 + 1)), -1);
    }
}
