//! Server certificates signed by the local CA: issuing one (the chain is the
//! leaf then the CA), and deciding whether the stored `--tls local-ca` leaf
//! can be served again.

use std::time::SystemTime;

use rcgen::Issuer;

use super::ca::Ca;
use super::layout::CaPaths;
use crate::certs::error::CertError;
use crate::certs::generate::{
    GeneratedPem, SKEW, gen_error, new_key, san_for, server_params, unique_names, validity_end,
};
use crate::certs::loaded::LoadedCert;
use crate::certs::reuse::{self, Unfit, Wanted};
use crate::config::types::KeyType;

/// A server certificate for `hostnames` signed by `ca`, followed by the CA
/// certificate, valid from an hour ago for `days` days (never past the CA).
/// Returns the PEM pair and the notAfter used.
pub(super) fn issue_leaf(
    ca: &Ca,
    hostnames: &[String],
    days: u32,
    key_type: KeyType,
    now: SystemTime,
) -> Result<(GeneratedPem, SystemTime), CertError> {
    let wanted_end = validity_end(now, days)?;
    let names = unique_names(hostnames);
    let sans = names
        .iter()
        .map(|n| san_for(n))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = names.first() else {
        return Err(CertError::Generate {
            detail: "no hostnames given".into(),
        });
    };
    let key = new_key(key_type).map_err(gen_error)?;
    // For people reading it; clients match the subjectAltName only.
    let common_name = (first.len() <= 64).then(|| first.clone());
    let not_after = wanted_end.min(ca.info.not_after);
    let not_before = now.checked_sub(SKEW).unwrap_or(now);
    let mut params = server_params(sans, common_name, key_type, not_before, not_after)?;
    params.use_authority_key_identifier_extension = true;

    let issuer = Issuer::from_ca_cert_der(&ca.der, &ca.key).map_err(gen_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(gen_error)?;
    let mut chain = cert.pem();
    if !chain.ends_with('\n') {
        chain.push('\n');
    }
    chain.push_str(&ca.pem);
    Ok((
        GeneratedPem {
            cert_pem: chain,
            key_pem: key.serialize_pem(),
        },
        not_after,
    ))
}

/// Loads the stored leaf if it can be served again, else says why not.
pub(super) fn reusable_leaf(
    p: &CaPaths,
    ca: &Ca,
    wanted: &Wanted<'_>,
    now: SystemTime,
) -> Result<LoadedCert, Unfit> {
    let loaded = reuse::load_stored(&p.leaf_cert, &p.leaf_key, now)?;
    if loaded.key.cert.get(1) != Some(&ca.der) {
        return Err(Unfit::CaChanged);
    }
    reuse::fits(&loaded, wanted, now)?;
    Ok(loaded)
}
