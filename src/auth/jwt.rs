//! JWT verification (`auth.kind = "jwt"`) with `jsonwebtoken` (aws-lc-rs
//! backend, the crypto TLS already uses). The accepted algorithms come
//! from the configured key, never from the token: HS256/384/512 for a
//! secret, RS*/PS* for an RSA key, ES256 for P-256, ES384 for P-384, EdDSA
//! for Ed25519; with a JWKS the token's `kid` picks the key and that key's
//! family (or its own `alg`) decides. `exp` is required, `nbf` checked,
//! `aud`/`iss` required and checked when configured, all with a leeway.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use x509_parser::prelude::FromDer;

use super::error::JwtKeyError;
use super::reason::Reason;
use crate::secret::sha256;

/// Shortest HMAC secret accepted (RFC 7518 section 3.2: at least the
/// hash's size; 32 bytes for HS256).
pub const MIN_SECRET: usize = 32;

/// Longest token looked at.
pub const MAX_TOKEN: usize = 8192;

/// What the route checks besides the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRules {
    /// Accepted `aud` values (any one); `None` ignores `aud`.
    pub audience: Option<Vec<String>>,
    /// The required `iss`; `None` ignores `iss`.
    pub issuer: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// The claim whose string value is the identity (default `sub`).
    pub identity_claim: String,
}

/// A verified token: the identity claim's value and all claims.
#[derive(Debug, Clone)]
pub struct Verified {
    pub name: Arc<str>,
    pub claims: Arc<Map<String, Value>>,
}

/// One key and the validation that goes with it.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

/// The keys of one route and its rules.
pub struct JwtVerifier {
    keys: Vec<Key>,
    identity_claim: String,
    fingerprint: [u8; 32],
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("identity_claim", &self.identity_claim)
            .finish()
    }
}

/// The algorithms of each key family.
const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

impl JwtVerifier {
    /// HS256/384/512 with a shared secret.
    pub fn from_secret(secret: &[u8], rules: &JwtRules) -> Result<JwtVerifier, JwtKeyError> {
        if secret.len() < MIN_SECRET {
            return Err(JwtKeyError::ShortSecret {
                len: secret.len(),
                min: MIN_SECRET,
            });
        }
        let key = Key {
            kid: None,
            key: DecodingKey::from_secret(secret)
                .map_err(|e| JwtKeyError::BadKey(e.to_string()))?,
            validation: validation(HMAC, rules),
        };
        Ok(Self::new(vec![key], rules, secret))
    }

    /// The algorithms of a PEM public key's type (RSA, EC P-256/P-384,
    /// Ed25519).
    pub fn from_pem(pem: &[u8], rules: &JwtRules) -> Result<JwtVerifier, JwtKeyError> {
        let (key, algs) = pem_key(pem)?;
        let key = Key {
            kid: None,
            key,
            validation: validation(&algs, rules),
        };
        Ok(Self::new(vec![key], rules, pem))
    }

    /// The keys of a JWKS document (public keys only; `kid` picks one).
    pub fn from_jwks(json: &[u8], rules: &JwtRules) -> Result<JwtVerifier, JwtKeyError> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| JwtKeyError::BadJwks(e.to_string()))?;
        let mut keys: Vec<Key> = Vec::new();
        let total = set.keys.len();
        for (i, jwk) in set.keys.iter().enumerate() {
            let index = i + 1;
            let bad = |why: &str| JwtKeyError::BadJwk {
                index,
                why: why.to_string(),
            };
            let family: Vec<Algorithm> = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => RSA.to_vec(),
                AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    EllipticCurve::P256 => vec![Algorithm::ES256],
                    EllipticCurve::P384 => vec![Algorithm::ES384],
                    _ => return Err(bad("only the P-256 and P-384 curves are supported")),
                },
                AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
                    EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
                    _ => return Err(bad("only the Ed25519 curve is supported for OKP keys")),
                },
                AlgorithmParameters::OctetKey(_) => {
                    return Err(bad(
                        "a symmetric (oct) key; put shared secrets in secret_env, not in a key file",
                    ));
                }
                _ => {
                    return Err(bad(
                        "unsupported key type; use RSA, EC (P-256, P-384) or OKP (Ed25519)",
                    ));
                }
            };
            let algs = match jwk.common.key_algorithm {
                None => family,
                Some(named) => match Algorithm::try_from(named) {
                    Ok(alg) if family.contains(&alg) => vec![alg],
                    _ => return Err(bad("its `alg` does not fit its key type")),
                },
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(&e.to_string()))?;
            let kid = jwk.common.key_id.clone();
            if let Some(k) = &kid
                && let Some(first) = keys.iter().position(|o| o.kid.as_deref() == Some(k))
            {
                return Err(JwtKeyError::DuplicateKid {
                    first: first + 1,
                    index,
                    kid: k.clone(),
                });
            }
            if kid.is_none() && total > 1 {
                return Err(JwtKeyError::MissingKid(total, index));
            }
            keys.push(Key {
                kid,
                key,
                validation: validation(&algs, rules),
            });
        }
        if keys.is_empty() {
            return Err(JwtKeyError::EmptyJwks);
        }
        Ok(Self::new(keys, rules, json))
    }

    fn new(keys: Vec<Key>, rules: &JwtRules, material: &[u8]) -> JwtVerifier {
        let mut all = material.to_vec();
        all.extend_from_slice(format!("{rules:?}").as_bytes());
        JwtVerifier {
            keys,
            identity_claim: rules.identity_claim.clone(),
            fingerprint: sha256(&all),
        }
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Verifies `token`: the identity and claims, or why not.
    pub fn verify(&self, token: &str) -> Result<Verified, Reason> {
        if token.len() > MAX_TOKEN {
            return Err(Reason::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Reason::Malformed)?;
        let key = match (&header.kid, self.keys.as_slice()) {
            (_, [only]) if only.kid.is_none() => only,
            (Some(kid), keys) => keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(Reason::BadSignature)?,
            (None, [only]) => only,
            (None, _) => return Err(Reason::BadSignature),
        };
        if !key.validation.algorithms.contains(&header.alg) {
            return Err(Reason::WrongAlgorithm);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation)
            .map_err(|e| reason(e.kind()))?;
        let name = data
            .claims
            .get(&self.identity_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control))
            .ok_or(Reason::MissingClaim)?;
        Ok(Verified {
            name: name.into(),
            claims: Arc::new(data.claims),
        })
    }
}

/// The validation for a key of these algorithms under `rules`.
fn validation(algs: &[Algorithm], rules: &JwtRules) -> Validation {
    let mut v = Validation::new(algs.first().copied().unwrap_or(Algorithm::HS256));
    v.algorithms = algs.to_vec();
    v.leeway = rules.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    match &rules.audience {
        Some(aud) => {
            v.set_audience(aud);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    if let Some(iss) = &rules.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    v.set_required_spec_claims(&required);
    v
}

/// The refusal reason of a `jsonwebtoken` error.
fn reason(kind: &ErrorKind) -> Reason {
    match kind {
        ErrorKind::ExpiredSignature => Reason::Expired,
        ErrorKind::ImmatureSignature => Reason::NotYetValid,
        ErrorKind::InvalidAudience => Reason::WrongAudience,
        ErrorKind::InvalidIssuer => Reason::WrongIssuer,
        ErrorKind::InvalidSignature => Reason::BadSignature,
        ErrorKind::InvalidAlgorithm => Reason::WrongAlgorithm,
        ErrorKind::MissingRequiredClaim(_) => Reason::MissingClaim,
        _ => Reason::Malformed,
    }
}

/// A PEM public key and the algorithms of its type.
fn pem_key(pem: &[u8]) -> Result<(DecodingKey, Vec<Algorithm>), JwtKeyError> {
    use rustls_pki_types::pem::{PemObject, SectionKind};
    let mut spki = None;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| JwtKeyError::BadKey(e.to_string()))?;
        match kind {
            SectionKind::PublicKey => {
                spki = Some(der);
                break;
            }
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
                return Err(JwtKeyError::PrivateKey);
            }
            _ => {}
        }
    }
    let der = spki.ok_or(JwtKeyError::NoPublicKey)?;
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
        .map_err(|e| JwtKeyError::BadKey(e.to_string()))?;
    use x509_parser::oid_registry as oids;
    let alg = &info.algorithm.algorithm;
    let bad = |e: jsonwebtoken::errors::Error| JwtKeyError::BadKey(e.to_string());
    if *alg == oids::OID_PKCS1_RSAENCRYPTION {
        return Ok((DecodingKey::from_rsa_pem(pem).map_err(bad)?, RSA.to_vec()));
    }
    if *alg == oids::OID_SIG_ED25519 {
        return Ok((
            DecodingKey::from_ed_pem(pem).map_err(bad)?,
            vec![Algorithm::EdDSA],
        ));
    }
    if *alg == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = info
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let alg = match curve {
            Some(c) if c == oids::OID_EC_P256 => Algorithm::ES256,
            Some(c) if c == oids::OID_NIST_EC_P384 => Algorithm::ES384,
            _ => {
                return Err(JwtKeyError::UnsupportedKey(
                    "EC on a curve other than P-256 or P-384".into(),
                ));
            }
        };
        return Ok((DecodingKey::from_ec_pem(pem).map_err(bad)?, vec![alg]));
    }
    Err(JwtKeyError::UnsupportedKey(alg.to_id_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn rules() -> JwtRules {
        JwtRules {
            audience: None,
            issuer: None,
            leeway_secs: 60,
            identity_claim: "sub".into(),
        }
    }

    fn exp() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 300
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        encode(&header, &json!({"sub": "dora", "exp": exp()}), key).unwrap()
    }

    /// A P-256 key pair and its public JWK with `kid`.
    fn ec_jwk(kid: &str) -> (EncodingKey, serde_json::Value) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        (key, jwk)
    }

    #[test]
    fn jwks_picks_the_key_by_kid() {
        let (k1, j1) = ec_jwk("one");
        let (k2, j2) = ec_jwk("two");
        let jwks = json!({"keys": [j1, j2]}).to_string();
        let v = JwtVerifier::from_jwks(jwks.as_bytes(), &rules()).unwrap();
        assert_eq!(
            &*v.verify(&sign(Algorithm::ES256, Some("one"), &k1))
                .unwrap()
                .name,
            "dora"
        );
        assert_eq!(
            &*v.verify(&sign(Algorithm::ES256, Some("two"), &k2))
                .unwrap()
                .name,
            "dora"
        );
        // Signed by key two but naming key one; an unknown kid; no kid.
        let mixed = sign(Algorithm::ES256, Some("one"), &k2);
        assert_eq!(v.verify(&mixed).unwrap_err(), Reason::BadSignature);
        let unknown = sign(Algorithm::ES256, Some("three"), &k1);
        assert_eq!(v.verify(&unknown).unwrap_err(), Reason::BadSignature);
        let no_kid = sign(Algorithm::ES256, None, &k1);
        assert_eq!(v.verify(&no_kid).unwrap_err(), Reason::BadSignature);
    }

    #[test]
    fn jwks_refuses_secrets_duplicates_and_missing_kids() {
        let (_, j1) = ec_jwk("same");
        let (_, j2) = ec_jwk("same");
        let doc = json!({"keys": [j1.clone(), j2]}).to_string();
        assert!(matches!(
            JwtVerifier::from_jwks(doc.as_bytes(), &rules()).unwrap_err(),
            JwtKeyError::DuplicateKid {
                first: 1,
                index: 2,
                ..
            }
        ));
        let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}).to_string();
        assert!(matches!(
            JwtVerifier::from_jwks(oct.as_bytes(), &rules()).unwrap_err(),
            JwtKeyError::BadJwk { index: 1, .. }
        ));
        let mut mislabelled = j1.clone();
        mislabelled["alg"] = json!("ES384");
        let doc = json!({"keys": [mislabelled]}).to_string();
        assert!(matches!(
            JwtVerifier::from_jwks(doc.as_bytes(), &rules()).unwrap_err(),
            JwtKeyError::BadJwk { index: 1, .. }
        ));
        let mut labelled = j1.clone();
        labelled["alg"] = json!("ES256");
        let doc = json!({"keys": [labelled]}).to_string();
        assert!(JwtVerifier::from_jwks(doc.as_bytes(), &rules()).is_ok());
        let mut anonymous = j1.clone();
        anonymous.as_object_mut().unwrap().remove("kid");
        let doc = json!({"keys": [j1, anonymous]}).to_string();
        assert!(matches!(
            JwtVerifier::from_jwks(doc.as_bytes(), &rules()).unwrap_err(),
            JwtKeyError::MissingKid(2, 2)
        ));
        assert!(matches!(
            JwtVerifier::from_jwks(br#"{"keys": []}"#, &rules()).unwrap_err(),
            JwtKeyError::EmptyJwks
        ));
        assert!(matches!(
            JwtVerifier::from_jwks(b"not json", &rules()).unwrap_err(),
            JwtKeyError::BadJwks(_)
        ));
    }

    #[test]
    fn pem_key_type_decides_the_algorithm() {
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let v = JwtVerifier::from_pem(ed.public_key_pem().as_bytes(), &rules()).unwrap();
        let key = EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).unwrap();
        assert_eq!(
            &*v.verify(&sign(Algorithm::EdDSA, None, &key)).unwrap().name,
            "dora"
        );
        // HS256 keyed with the public key's PEM (algorithm confusion).
        let confused = EncodingKey::from_secret(ed.public_key_pem().as_bytes()).unwrap();
        assert_eq!(
            v.verify(&sign(Algorithm::HS256, None, &confused))
                .unwrap_err(),
            Reason::WrongAlgorithm
        );
        // A private key is refused with the command that extracts the public one.
        let e = JwtVerifier::from_pem(ed.serialize_pem().as_bytes(), &rules()).unwrap_err();
        assert_eq!(e, JwtKeyError::PrivateKey);
        assert!(e.to_string().contains("-pubout"));
        assert_eq!(
            JwtVerifier::from_pem(b"no pem here", &rules()).unwrap_err(),
            JwtKeyError::NoPublicKey
        );
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let v = JwtVerifier::from_pem(p384.public_key_pem().as_bytes(), &rules()).unwrap();
        let key = EncodingKey::from_ec_pem(p384.serialize_pem().as_bytes()).unwrap();
        assert_eq!(
            &*v.verify(&sign(Algorithm::ES384, None, &key)).unwrap().name,
            "dora"
        );
        // The same token relabelled ES256: a P-384 key accepts ES384 only.
        let es384 = sign(Algorithm::ES384, None, &key);
        let (_, rest) = es384.split_once('.').unwrap();
        let relabelled = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#));
        assert_eq!(v.verify(&relabelled).unwrap_err(), Reason::WrongAlgorithm);
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let v = JwtVerifier::from_pem(rsa.public_key_pem().as_bytes(), &rules()).unwrap();
        let key = EncodingKey::from_rsa_pem(rsa.serialize_pem().as_bytes()).unwrap();
        assert_eq!(
            &*v.verify(&sign(Algorithm::RS256, None, &key)).unwrap().name,
            "dora"
        );
        assert_eq!(
            &*v.verify(&sign(Algorithm::PS512, None, &key)).unwrap().name,
            "dora"
        );
    }
}
