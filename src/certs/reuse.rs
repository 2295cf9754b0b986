//! The one answer to "can the stored certificate be used again?" for every
//! source that keeps a pair in the state folder (self-signed, local CA, ACME):
//! load it, compare names, key type and time left, and say why not. Making a
//! replacement is the caller's; writing it goes through [`reuse_or_generate`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use super::error::CertError;
use super::files;
use super::generate::{self, GeneratedPem, join_names, name_set};
use super::info::CertInfo;
use super::info::public_key_summary;
use super::loaded::LoadedCert;
use super::store::make_private_dir;
use crate::config::types::KeyType;

/// Whether a source reused the stored pair or made a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    Reused,
    Generated { reason: String },
}

/// Why the stored pair cannot be used again as it is.
#[derive(Debug)]
pub enum Unfit {
    /// Neither file exists.
    Missing,
    /// The certificate's notAfter has passed.
    Expired { date: String },
    /// The files cannot be loaded.
    Unreadable(CertError),
    /// The certificate was made for other names.
    NamesChanged {
        have: BTreeSet<String>,
        wanted: BTreeSet<String>,
    },
    /// The certificate lacks some of the wanted names.
    NotCovered(Vec<String>),
    /// Its key is not of the wanted type.
    KeyTypeChanged,
    /// Few days are left.
    ExpiresSoon { days: i64 },
    /// It was signed by another CA than the current one.
    CaChanged,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Missing => f.write_str("none yet"),
            Unfit::Expired { date } => write!(f, "expired on {date}"),
            Unfit::Unreadable(e) => write!(f, "unreadable: {e}"),
            Unfit::NamesChanged { have, wanted } => write!(
                f,
                "names changed: was {}; now {}",
                join_names(have),
                join_names(wanted)
            ),
            Unfit::NotCovered(missing) => write!(f, "does not cover {}", missing.join(", ")),
            Unfit::KeyTypeChanged => f.write_str("key type changed"),
            Unfit::ExpiresSoon { days } => write!(f, "expires in {days} days"),
            Unfit::CaChanged => f.write_str("the local CA changed"),
        }
    }
}

/// What a reusable certificate must be.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// Exactly these names (compared normalized, in any order).
    pub hostnames: &'a [String],
    pub key_type: KeyType,
    /// Replace it when this many days or fewer are left ...
    pub renew_days: i64,
    /// ... unless it already lasts until this (a leaf ending with its CA
    /// would not get any longer).
    pub longest: Option<SystemTime>,
}

/// Loads the stored pair as of `now`.
pub fn load_stored(cert: &Path, key: &Path, now: SystemTime) -> Result<LoadedCert, Unfit> {
    if !cert.exists() && !key.exists() {
        return Err(Unfit::Missing);
    }
    match files::load_pair_at(cert, key, now) {
        Ok(loaded) => Ok(loaded),
        Err(CertError::Expired { date, .. }) => Err(Unfit::Expired { date }),
        Err(e) => Err(Unfit::Unreadable(e)),
    }
}

/// Checks names, key type and days left, in that order.
pub fn fits(loaded: &LoadedCert, wanted: &Wanted<'_>, now: SystemTime) -> Result<(), Unfit> {
    let want = name_set(wanted.hostnames);
    let have = name_set(&loaded.info.sans);
    if want != have {
        return Err(Unfit::NamesChanged { have, wanted: want });
    }
    if key_type_of(loaded) != Some(wanted.key_type) {
        return Err(Unfit::KeyTypeChanged);
    }
    let days = loaded.info.days_left(now);
    let longest = wanted
        .longest
        .is_some_and(|end| loaded.info.not_after >= end);
    if days <= wanted.renew_days && !longest {
        return Err(Unfit::ExpiresSoon { days });
    }
    Ok(())
}

/// Names of `wanted` the certificate does not cover.
pub fn uncovered(info: &CertInfo, wanted: &[String]) -> Vec<String> {
    let have = name_set(&info.sans);
    name_set(wanted)
        .into_iter()
        .filter(|n| !have.contains(n))
        .collect()
}

/// The type of the leaf's key, when it is one wssd generates.
pub fn key_type_of(cert: &LoadedCert) -> Option<KeyType> {
    cert.key
        .end_entity_cert()
        .ok()
        .and_then(|der| public_key_summary(der).ok())
        .and_then(|(_, kind)| kind)
}

/// Reuses the pair `reusable` returns; otherwise makes one with `generate`,
/// writes it to `cert`/`key` in the private folder `dir` and loads it back.
pub fn reuse_or_generate(
    cert: &Path,
    key: &Path,
    dir: &Path,
    now: SystemTime,
    reusable: impl FnOnce() -> Result<LoadedCert, Unfit>,
    generate: impl FnOnce() -> Result<GeneratedPem, CertError>,
) -> Result<(LoadedCert, Provenance), CertError> {
    let reason = match reusable() {
        Ok(loaded) => return Ok((loaded, Provenance::Reused)),
        Err(unfit) => unfit.to_string(),
    };
    make_private_dir(dir)?;
    let pem = generate()?;
    generate::write_pair(cert, key, &pem).map_err(|e| e.in_state_dir(dir))?;
    let loaded = files::load_pair_at(cert, key, now)?;
    Ok((loaded, Provenance::Generated { reason }))
}
