//! Making certificates with rcgen: the one key generator ([`new_key`]) and
//! the server certificate template ([`server_params`]) every source uses,
//! self-signed certificates, name handling, PEM pair writing (key 0600), and
//! `wssd cert generate`. When to reuse or regenerate a stored certificate is
//! `reuse`'s business, not this file's.

use std::collections::BTreeSet;

use super::store::write_atomic;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

use crate::certs::error::CertError;
use crate::certs::info::format_time;
use crate::cli::CertGenerateArgs;
use crate::config::types::KeyType;

/// A freshly generated certificate and its PKCS#8 private key, both PEM.
#[derive(Clone)]
pub struct GeneratedPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for GeneratedPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("GeneratedPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Names used when none are given: `localhost`, `127.0.0.1`, `::1`.
pub fn default_hostnames() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

/// `hostnames`, or [`default_hostnames`] when none are given.
pub fn or_default_hostnames(hostnames: &[String]) -> Vec<String> {
    if hostnames.is_empty() {
        default_hostnames()
    } else {
        hostnames.to_vec()
    }
}

/// One hour of clock skew tolerated on notBefore.
pub(crate) const SKEW: Duration = Duration::from_secs(3600);
/// Seconds in a day.
pub(crate) const DAY_SECS: u64 = 86_400;

/// The end of `days` days of validity from `now`; at least one day.
pub(crate) fn validity_end(now: SystemTime, days: u32) -> Result<SystemTime, CertError> {
    if days == 0 {
        return Err(CertError::Generate {
            detail: "validity must be at least 1 day".into(),
        });
    }
    now.checked_add(Duration::from_secs(u64::from(days) * DAY_SECS))
        .ok_or_else(|| CertError::Generate {
            detail: format!("{days} days of validity is too long"),
        })
}

/// A self-signed server certificate for `hostnames` (the first is the CN),
/// valid from an hour ago for `days` days.
pub fn self_signed(
    hostnames: &[String],
    days: u32,
    key_type: KeyType,
) -> Result<GeneratedPem, CertError> {
    let now = SystemTime::now();
    let not_after = validity_end(now, days)?;
    let not_before = now.checked_sub(SKEW).unwrap_or(now);
    self_signed_between(hostnames, not_before, not_after, key_type)
}

/// [`self_signed`] with explicit validity bounds (tests use past or future windows).
pub fn self_signed_between(
    hostnames: &[String],
    not_before: SystemTime,
    not_after: SystemTime,
    key_type: KeyType,
) -> Result<GeneratedPem, CertError> {
    let sans = hostnames
        .iter()
        .map(|h| san_for(h))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = sans.first() else {
        return Err(CertError::Generate {
            detail: "no hostnames given".into(),
        });
    };
    let cn = match first {
        SanType::DnsName(name) => name.as_str().to_owned(),
        SanType::IpAddress(ip) => ip.to_string(),
        _ => String::new(),
    };
    let key = new_key(key_type).map_err(gen_error)?;
    let params = server_params(sans, Some(cn), key_type, not_before, not_after)?;
    let cert = params.self_signed(&key).map_err(gen_error)?;
    Ok(GeneratedPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new private key of `key_type`: the one place wssd generates keys.
pub(crate) fn new_key(key_type: KeyType) -> Result<KeyPair, rcgen::Error> {
    match key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
}

/// What every server certificate wssd makes carries: the SANs, a CN (for
/// people; clients match SANs), the validity, a random serial, CA:FALSE, the
/// key usages of `key_type` and serverAuth.
pub(crate) fn server_params(
    sans: Vec<SanType>,
    common_name: Option<String>,
    key_type: KeyType,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    params.not_before = time::OffsetDateTime::from(not_before);
    params.not_after = time::OffsetDateTime::from(not_after);
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = match key_type {
        KeyType::EcdsaP256 => vec![KeyUsagePurpose::DigitalSignature],
        KeyType::Rsa2048 => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
    };
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

pub(crate) fn gen_error(e: rcgen::Error) -> CertError {
    CertError::Generate {
        detail: e.to_string(),
    }
}

/// 16 random bytes, positive and non-zero.
pub(crate) fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    crate::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CertError::Generate {
            detail: "the system random number generator failed".into(),
        })?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Normalizes a requested name: IP addresses in canonical text (brackets dropped),
/// DNS names lowercase without a trailing dot.
pub fn normalize_name(name: &str) -> String {
    let trimmed = name.trim();
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    match unbracketed.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => trimmed.trim_end_matches('.').to_ascii_lowercase(),
    }
}

pub(crate) fn san_for(name: &str) -> Result<SanType, CertError> {
    let norm = normalize_name(name);
    if let Ok(ip) = norm.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !norm.is_empty()
        && norm.len() <= 253
        && norm
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*'))
        && !norm.split('.').any(str::is_empty);
    if !valid {
        return Err(CertError::Generate {
            detail: format!("{name:?} is not a DNS name or IP address"),
        });
    }
    let ia5 = rcgen::string::Ia5String::try_from(norm).map_err(gen_error)?;
    Ok(SanType::DnsName(ia5))
}

/// Writes the pair atomically: each file goes to a temporary file in the same
/// folder, then is renamed over the target. The key is 0600 from creation,
/// the certificate 0644 (both less any umask). Parent folders are created.
pub fn write_pair(cert_path: &Path, key_path: &Path, pem: &GeneratedPem) -> Result<(), CertError> {
    write_atomic(key_path, pem.key_pem.as_bytes(), 0o600)?;
    write_atomic(cert_path, pem.cert_pem.as_bytes(), 0o644)
}

/// Writes a pair to files the user named (`cert generate`, `cert ca issue`);
/// returns the files that existed before and were replaced.
pub(crate) fn write_outputs(
    cert_path: &Path,
    key_path: &Path,
    pem: &GeneratedPem,
) -> Result<Vec<String>, CertError> {
    let replaced = [cert_path, key_path]
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    write_pair(cert_path, key_path, pem)?;
    Ok(replaced)
}

/// A key type in words.
pub fn key_type_name(key_type: KeyType) -> &'static str {
    match key_type {
        KeyType::EcdsaP256 => "ECDSA P-256",
        KeyType::Rsa2048 => "RSA 2048-bit",
    }
}

/// `wssd cert generate`: writes the pair and returns what to print.
pub fn run_generate(args: &CertGenerateArgs) -> Result<String, CertError> {
    let hostnames = or_default_hostnames(&args.hostname);
    let pem = self_signed(&hostnames, args.days, args.key_type)?;
    let replaced = write_outputs(&args.out_cert, &args.out_key, &pem)?;

    let not_after = SystemTime::now()
        .checked_add(Duration::from_secs(u64::from(args.days) * DAY_SECS))
        .map(format_time)
        .unwrap_or_default();
    let names: Vec<String> = hostnames.iter().map(|h| normalize_name(h)).collect();
    let cert = args.out_cert.display();
    let key = args.out_key.display();
    let mut msg = String::new();
    msg.push_str(&format!("wrote certificate {cert} (mode 0644)\n"));
    msg.push_str(&format!(
        "wrote private key {key} (mode 0600; keep it secret)\n"
    ));
    if !replaced.is_empty() {
        msg.push_str(&format!("replaced existing {}\n", replaced.join(" and ")));
    }
    msg.push_str(&format!("  names:    {}\n", names.join(", ")));
    msg.push_str(&format!("  key:      {}\n", key_type_name(args.key_type)));
    msg.push_str(&format!("  expires:  {not_after} ({} days)\n", args.days));
    msg.push_str(&format!(
        "inspect:    wssd cert inspect {cert} --key {key}\n"
    ));
    msg.push_str(&format!(
        "serve:      wssd --tls files --cert {cert} --key {key}\n"
    ));
    msg.push_str(&format!(
        "trust it (Debian/Ubuntu): sudo cp {cert} /usr/local/share/ca-certificates/wssd.crt && sudo update-ca-certificates\n"
    ));
    msg.push_str(
        "Firefox and Chrome keep their own store: import the certificate there, or accept the warning once",
    );
    Ok(msg)
}

/// Normalized names without repeats, in the order given.
pub(crate) fn unique_names(names: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    names
        .iter()
        .map(|h| normalize_name(h))
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

/// Normalized names as a set (order- and case-insensitive comparison).
pub(crate) fn name_set(names: &[String]) -> BTreeSet<String> {
    names.iter().map(|n| normalize_name(n)).collect()
}

/// A name set for messages.
pub(crate) fn join_names(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "(none)".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::files;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn ecdsa_and_rsa_roundtrip() {
        for kt in [KeyType::EcdsaP256, KeyType::Rsa2048] {
            let dir = tempfile::tempdir().unwrap();
            let pem = self_signed(&default_hostnames(), 365, kt).unwrap();
            assert!(pem.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(pem.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            assert!(!format!("{pem:?}").contains("BEGIN PRIVATE KEY"));
            let c = dir.path().join("c.pem");
            let k = dir.path().join("k.pem");
            write_pair(&c, &k, &pem).unwrap();
            let loaded = files::load_pair(&c, &k).unwrap();
            assert_eq!(loaded.info.sans, vec!["localhost", "127.0.0.1", "::1"]);
            assert_eq!(loaded.info.subject, "CN=localhost");
            let days = loaded.info.days_left(SystemTime::now());
            assert!((364..=365).contains(&days), "{days}");
            let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.cert_pem.as_bytes())
                .map(|d: rustls_pki_types::CertificateDer<'static>| d.to_vec())
                .unwrap();
            let (_, kind) = crate::certs::info::public_key_summary(&der).unwrap();
            assert_eq!(kind, Some(kt));
            // Extensions: serverAuth, digitalSignature (+keyEncipherment for RSA), CA:FALSE.
            let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
            let eku = x.extended_key_usage().unwrap().unwrap();
            assert!(eku.value.server_auth);
            let ku = x.key_usage().unwrap().unwrap();
            assert!(ku.value.digital_signature());
            assert_eq!(ku.value.key_encipherment(), kt == KeyType::Rsa2048);
            assert!(!x.is_ca());
        }
    }

    #[test]
    fn serials_are_random() {
        let a = self_signed(&default_hostnames(), 1, KeyType::EcdsaP256).unwrap();
        let b = self_signed(&default_hostnames(), 1, KeyType::EcdsaP256).unwrap();
        let serial = |p: &GeneratedPem| {
            let der: rustls_pki_types::CertificateDer<'static> =
                rustls_pki_types::pem::PemObject::from_pem_slice(p.cert_pem.as_bytes()).unwrap();
            crate::certs::CertInfo::from_der(&der).unwrap().serial
        };
        assert_ne!(serial(&a), serial(&b));
        assert!(serial(&a).len() >= 30);
    }

    #[test]
    fn names_become_dns_or_ip_sans() {
        let names = vec![
            "Example.TEST.".to_owned(),
            "[2001:db8::1]".to_owned(),
            "*.example.test".to_owned(),
            "192.168.0.10".to_owned(),
        ];
        let pem = self_signed(&names, 5, KeyType::EcdsaP256).unwrap();
        let der: rustls_pki_types::CertificateDer<'static> =
            rustls_pki_types::pem::PemObject::from_pem_slice(pem.cert_pem.as_bytes()).unwrap();
        let info = crate::certs::CertInfo::from_der(&der).unwrap();
        assert_eq!(
            info.sans,
            vec![
                "example.test",
                "2001:db8::1",
                "*.example.test",
                "192.168.0.10"
            ]
        );
        assert_eq!(info.subject, "CN=example.test");
    }

    #[test]
    fn bad_input_is_rejected() {
        for bad in [
            vec![],
            vec!["has space".to_owned()],
            vec!["a..b".to_owned()],
        ] {
            let e = self_signed(&bad, 5, KeyType::EcdsaP256).unwrap_err();
            assert!(matches!(e, CertError::Generate { .. }), "{e}");
        }
        let e = self_signed(&default_hostnames(), 0, KeyType::EcdsaP256).unwrap_err();
        assert!(matches!(e, CertError::Generate { .. }), "{e}");
    }

    #[test]
    fn write_pair_modes_and_parents() {
        let dir = tempfile::tempdir().unwrap();
        let pem = self_signed(&default_hostnames(), 3, KeyType::EcdsaP256).unwrap();
        let c = dir.path().join("a/b/cert.pem");
        let k = dir.path().join("a/c/key.pem");
        write_pair(&c, &k, &pem).unwrap();
        assert_eq!(mode(&k), 0o600);
        assert_eq!(mode(&c) & 0o600, 0o600);
        assert_eq!(mode(&c) & 0o022, 0); // 0644 or tighter under umask
        assert_eq!(fs::read_to_string(&k).unwrap(), pem.key_pem);
        // Overwrite keeps working and leaves no temp files behind.
        let pem2 = self_signed(&default_hostnames(), 3, KeyType::EcdsaP256).unwrap();
        write_pair(&c, &k, &pem2).unwrap();
        assert_eq!(fs::read_to_string(&c).unwrap(), pem2.cert_pem);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("a/c"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn write_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        fs::write(&file, "x").unwrap();
        let pem = self_signed(&default_hostnames(), 3, KeyType::EcdsaP256).unwrap();
        // A parent that is a regular file cannot become a folder (fails for root too).
        let e = write_pair(&file.join("cert.pem"), &file.join("key.pem"), &pem).unwrap_err();
        assert!(matches!(e, CertError::Write { .. }), "{e}");
    }

    #[test]
    fn run_generate_writes_and_explains() {
        let dir = tempfile::tempdir().unwrap();
        let args = CertGenerateArgs {
            hostname: vec!["dev.test".into()],
            days: 30,
            key_type: KeyType::Rsa2048,
            out_cert: dir.path().join("cert.pem"),
            out_key: dir.path().join("key.pem"),
        };
        let msg = run_generate(&args).unwrap();
        assert!(msg.contains("cert.pem"), "{msg}");
        assert!(msg.contains("dev.test"), "{msg}");
        assert!(msg.contains("RSA 2048-bit"), "{msg}");
        assert!(msg.contains("update-ca-certificates"), "{msg}");
        assert!(msg.contains("wssd cert inspect"), "{msg}");
        let loaded = files::load_pair(&args.out_cert, &args.out_key).unwrap();
        assert_eq!(loaded.info.sans, vec!["dev.test"]);
        assert_eq!(mode(&args.out_key), 0o600);
        let again = run_generate(&args).unwrap();
        assert!(again.contains("replaced existing"), "{again}");
    }
}
