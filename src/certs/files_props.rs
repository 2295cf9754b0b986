//! Property tests of PEM loading (`files`): arbitrary bytes, arbitrary DER
//! inside PEM armour, and real certificate and key files cut, flipped or
//! spliced all end in a typed `CertError` that names the file (or a usable
//! pair), never a panic.

use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use proptest::prelude::*;
use rustls::sign::CertifiedKey;

use super::error::CertError;
use super::files::{
    chain_infos, check_keys_match, check_validity, parse_chain, parse_key, pem_labels, signing_key,
};
use super::generate::{GeneratedPem, self_signed};
use crate::config::types::KeyType;
use crate::props::base64;

const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";

/// One real pair, generated once for all cases.
fn real() -> &'static GeneratedPem {
    static PEM: OnceLock<GeneratedPem> = OnceLock::new();
    PEM.get_or_init(|| self_signed(&["localhost".to_string()], 30, KeyType::EcdsaP256).unwrap())
}

/// Everything `load_pair_at` does after reading the files.
fn load(cert: &[u8], key: &[u8]) -> Result<(), CertError> {
    let (cert_path, key_path) = (Path::new(CERT), Path::new(KEY));
    let chain = parse_chain(cert_path, cert)?;
    let infos = chain_infos(cert_path, &chain)?;
    let private_key = parse_key(key_path, key)?;
    let signing = signing_key(key_path, private_key)?;
    let certified = CertifiedKey::new(chain, signing);
    check_keys_match(cert_path, key_path, &certified)?;
    match infos.first() {
        Some(info) => check_validity(cert_path, info, SystemTime::now()),
        None => Err(CertError::NoCertificate {
            path: cert_path.to_path_buf(),
            found: "nothing".into(),
        }),
    }
}

/// The error names the file it is about.
fn names_a_file(e: &CertError) -> bool {
    let text = e.to_string();
    text.contains(CERT) || text.contains(KEY)
}

/// How to damage a file: cut, a byte replaced, bytes inserted, or
/// lines dropped.
#[derive(Debug, Clone)]
enum Damage {
    Cut(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    DropLine(prop::sample::Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Damage::Cut),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Flip(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, v)| Damage::Insert(i, v)),
        any::<prop::sample::Index>().prop_map(Damage::DropLine),
    ]
}

fn apply(text: &str, damages: &[Damage]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for d in damages {
        match d {
            Damage::Cut(i) => bytes.truncate(i.index(bytes.len() + 1)),
            Damage::Flip(i, b) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Damage::Flip(..) => {}
            Damage::Insert(i, v) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, v.iter().copied());
            }
            Damage::DropLine(i) => {
                let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
                let at = i.index(lines.len());
                lines.remove(at);
                bytes = lines.join(&b'\n');
            }
        }
    }
    bytes
}

/// A PEM section with `label` around arbitrary DER.
fn armoured(label: &str, der: &[u8]) -> Vec<u8> {
    let body = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

proptest! {
    #![proptest_config(crate::props::config(256))]

    /// Catches: a panic on bytes that are not PEM at all; an error that
    /// does not name the file.
    #[test]
    fn arbitrary_bytes_get_a_typed_error(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = pem_labels(&bytes);
        if let Err(e) = load(&bytes, &bytes) {
            prop_assert!(names_a_file(&e), "{e}");
        }
    }

    /// Catches: a panic in the X.509 or key parsers on hostile DER behind
    /// valid armour (lengths that lie, truncated sequences).
    #[test]
    fn arbitrary_der_in_pem_armour_gets_a_typed_error(
        cert_der in prop::collection::vec(any::<u8>(), 0..300),
        key_der in prop::collection::vec(any::<u8>(), 0..200),
        key_label in prop::sample::select(&["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY"][..]),
    ) {
        let cert = armoured("CERTIFICATE", &cert_der);
        let key = armoured(key_label, &key_der);
        let result = load(&cert, &key);
        prop_assert!(result.is_err(), "random DER loaded as a certificate and key");
        let e = result.unwrap_err();
        prop_assert!(names_a_file(&e), "{e}");
    }

    /// Catches: a panic on a real certificate or key damaged in transit
    /// (cut short, a byte changed, junk inserted, a line lost), or a
    /// damaged pair loaded as if it were whole.
    #[test]
    fn damaged_real_files_get_a_typed_error(
        cert_damage in prop::collection::vec(damage(), 0..3),
        key_damage in prop::collection::vec(damage(), 0..3),
    ) {
        let pem = real();
        let cert = apply(&pem.cert_pem, &cert_damage);
        let key = apply(&pem.key_pem, &key_damage);
        match load(&cert, &key) {
            // Damage that misses the base64 (a header line, trailing junk)
            // or only the signature leaves a pair whose keys still match.
            Ok(()) => {}
            Err(e) => prop_assert!(names_a_file(&e), "{e}"),
        }
    }
}

/// The undamaged pair loads (so the properties above test real files).
#[test]
fn the_real_pair_loads() {
    let pem = real();
    load(pem.cert_pem.as_bytes(), pem.key_pem.as_bytes()).unwrap();
}
