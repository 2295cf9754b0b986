//! `--tls local-ca` and `wssd cert ca init|issue|install|uninstall`.
//!
//! A certificate authority is created once in `<state>/local-ca/` (ECDSA
//! P-256, 10 years, `ca-key.pem` mode 0600 in a 0700 folder). It signs server
//! certificates for the `--hostname` names (90 days, kept in
//! `<state>/local-ca/leaf/`, reissued when the names, the key type or the CA
//! change, or when 30 days are left). `install` adds the CA to the system trust
//! store (`update-ca-certificates`) and to the NSS database Chromium reads
//! (`certutil`, `~/.pki/nssdb`); `uninstall` removes exactly those two entries.
//!
//! Each CA has an id (the first 6 bytes of its subject key identifier, in hex)
//! that names it everywhere: the subject `CN=wssd local CA <id>`, the NSS
//! nickname (the same text) and the system file `wssd-local-ca-<id>.crt`.

use super::generate::{gen_error, join_names, name_set, random_serial, san_for};
use super::store::{make_private_dir, sweep_stale};
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::ParsedExtension;

use super::generate::{self, GeneratedPem, default_hostnames, key_type_name, normalize_name};
use super::info::{format_time, public_key_summary};
use super::self_signed::Provenance;
use super::{CertError, CertInfo, LoadedCert, files};
use crate::cli::{CaArgs, CaCommand, CaIssueArgs, KeyType};

/// Days of validity of a new CA.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Days of validity of a server certificate made for `--tls local-ca`.
pub const LEAF_VALIDITY_DAYS: u32 = 90;
/// A server certificate with this many days left or fewer is reissued.
pub const RENEW_DAYS: i64 = 30;
/// Browsers refuse server certificates valid for longer than this.
const BROWSER_MAX_DAYS: u32 = 398;
/// Where Debian's `update-ca-certificates` picks up local CAs.
const SYSTEM_CA_DIR: &str = "/usr/local/share/ca-certificates";
/// Start of every CA's common name and NSS nickname.
const NAME_PREFIX: &str = "wssd local CA";
/// One hour of clock skew tolerated on notBefore.
const SKEW: Duration = Duration::from_secs(3600);
const DAY_SECS: u64 = 86_400;

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

/// The CA as loaded from the state folder.
struct Ca {
    /// Text of `ca.pem` (exactly one certificate).
    pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
    info: CertInfo,
    /// 12 hex digits naming this CA (see the module docs).
    id: String,
}

impl Ca {
    /// The NSS nickname, also the subject CN.
    fn nickname(&self) -> String {
        format!("{NAME_PREFIX} {}", self.id)
    }

    /// The file name in the system's local CA folder.
    fn system_file_name(&self) -> String {
        format!("wssd-local-ca-{}.crt", self.id)
    }

    fn describe(&self) -> String {
        let key = public_key_summary(&self.der)
            .map(|(words, _)| words)
            .unwrap_or_else(|_| "unknown key".into());
        format!(
            "{}; {key}; expires {}",
            self.info.subject,
            format_time(self.info.not_after)
        )
    }

    /// Fails when the CA has expired.
    fn check_current(&self, path: &Path, now: SystemTime) -> Result<(), CertError> {
        if self.info.is_expired(now) {
            return Err(unusable(
                path,
                format!("it expired on {}", format_time(self.info.not_after)),
            ));
        }
        Ok(())
    }
}

fn unusable(path: &Path, detail: impl Into<String>) -> CertError {
    CertError::CaUnusable {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the CA; `None` when neither of its files exists.
fn load_ca(p: &CaPaths) -> Result<Option<Ca>, CertError> {
    match (p.ca_cert.exists(), p.ca_key.exists()) {
        (false, false) => return Ok(None),
        (true, false) => {
            return Err(unusable(
                &p.ca_key,
                "the CA certificate is there but its private key is missing",
            ));
        }
        (false, true) => {
            return Err(unusable(
                &p.ca_cert,
                "the CA private key is there but its certificate is missing",
            ));
        }
        (true, true) => {}
    }
    let cert_bytes = files::read(&p.ca_cert)?;
    let mut chain = files::parse_chain(&p.ca_cert, &cert_bytes)?;
    if chain.len() != 1 {
        return Err(unusable(
            &p.ca_cert,
            format!("it holds {} certificates; expected one", chain.len()),
        ));
    }
    let der = chain.remove(0);
    let info = CertInfo::from_der(&der).map_err(|e| e.with_path(&p.ca_cert))?;
    if !info.is_ca {
        return Err(unusable(
            &p.ca_cert,
            "not a CA certificate (basicConstraints CA:FALSE)",
        ));
    }
    let pem = String::from_utf8(cert_bytes).map_err(|_| unusable(&p.ca_cert, "not PEM text"))?;

    let key_pem = String::from_utf8(files::read(&p.ca_key)?)
        .map_err(|_| unusable(&p.ca_key, "not PEM text"))?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| unusable(&p.ca_key, format!("cannot load the private key: {e}")))?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der).map_err(|e| CertError::Parse {
        path: p.ca_cert.clone(),
        detail: e.to_string(),
    })?;
    if x509.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(unusable(
            &p.ca_key,
            format!(
                "this private key does not belong to {}",
                p.ca_cert.display()
            ),
        ));
    }
    let ski = x509
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    let id = match ski {
        Some(ski) if ski.len() >= 6 => hex(&ski[..6]),
        _ => info.serial.chars().take(12).collect(),
    };
    drop(x509);

    // The key is the CA: readable by the owner only, whoever copied it here.
    if let Ok(meta) = fs::metadata(&p.ca_key)
        && meta.permissions().mode() & 0o077 != 0
    {
        match fs::set_permissions(&p.ca_key, fs::Permissions::from_mode(0o600)) {
            Ok(()) => tracing::warn!(
                "{}: was readable by others; changed its mode to 0600",
                p.ca_key.display()
            ),
            Err(e) => tracing::warn!(
                "{}: readable by others and cannot be changed to mode 0600 ({e})",
                p.ca_key.display()
            ),
        }
    }

    Ok(Some(Ca {
        pem,
        der,
        key,
        info,
        id,
    }))
}

/// Makes a new CA and writes it (key 0600, folder 0700).
fn create_ca(p: &CaPaths, now: SystemTime) -> Result<Ca, CertError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_error)?;
    let mut params = CertificateParams::default();
    // The same SHA-256-based key id rcgen writes as subjectKeyIdentifier.
    let id = hex(params.key_identifier(&key).get(..6).unwrap_or_default());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, NAME_PREFIX);
    if let Some(host) = machine_hostname() {
        dn.push(DnType::OrganizationalUnitName, format!("wssd on {host}"));
    }
    dn.push(DnType::CommonName, format!("{NAME_PREFIX} {id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time::OffsetDateTime::from(now.checked_sub(SKEW).unwrap_or(now));
    params.not_after = time::OffsetDateTime::from(
        now + Duration::from_secs(u64::from(CA_VALIDITY_DAYS) * DAY_SECS),
    );
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key).map_err(gen_error)?;

    make_private_dir(&p.dir)?;
    let pem = GeneratedPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    generate::write_pair(&p.ca_cert, &p.ca_key, &pem).map_err(|e| in_state_dir(e, &p.dir))?;
    load_ca(p)?.ok_or_else(|| unusable(&p.ca_cert, "missing right after it was written"))
}

/// Loads the CA, creating it when absent; the flag says whether it was created.
fn ensure_ca(p: &CaPaths, now: SystemTime) -> Result<(Ca, bool), CertError> {
    match load_ca(p)? {
        Some(ca) => Ok((ca, false)),
        None => Ok((create_ca(p, now)?, true)),
    }
}

/// The machine's host name, shortened to fit a 64-character name attribute.
fn machine_hostname() -> Option<String> {
    let text = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let host: String = text.trim().chars().take(48).collect();
    (!host.is_empty()).then_some(host)
}

/// A server certificate for `hostnames` signed by `ca`, followed by the CA
/// certificate, valid from an hour ago for `days` days (never past the CA).
/// Returns the PEM pair and the notAfter used.
fn issue_leaf(
    ca: &Ca,
    hostnames: &[String],
    days: u32,
    key_type: KeyType,
    now: SystemTime,
) -> Result<(GeneratedPem, SystemTime), CertError> {
    if days == 0 {
        return Err(CertError::Generate {
            detail: "validity must be at least 1 day".into(),
        });
    }
    let mut seen = BTreeSet::new();
    let names: Vec<String> = hostnames
        .iter()
        .map(|h| normalize_name(h))
        .filter(|n| seen.insert(n.clone()))
        .collect();
    let sans = names
        .iter()
        .map(|n| san_for(n))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = names.first() else {
        return Err(CertError::Generate {
            detail: "no hostnames given".into(),
        });
    };

    let key = match key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
    .map_err(gen_error)?;

    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    // For people reading it; clients match the subjectAltName only.
    if first.len() <= 64 {
        dn.push(DnType::CommonName, first.as_str());
    }
    params.distinguished_name = dn;
    let wanted_end = now
        .checked_add(Duration::from_secs(u64::from(days) * DAY_SECS))
        .ok_or_else(|| CertError::Generate {
            detail: format!("{days} days of validity is too long"),
        })?;
    let not_after = wanted_end.min(ca.info.not_after);
    params.not_before = time::OffsetDateTime::from(now.checked_sub(SKEW).unwrap_or(now));
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

/// A leaf for `hostnames` issued by the local CA (created if absent).
pub fn ensure_leaf(
    state_dir: &Path,
    hostnames: &[String],
    key_type: KeyType,
) -> Result<(LoadedCert, Provenance), CertError> {
    ensure_leaf_at(state_dir, hostnames, key_type, SystemTime::now())
}

/// [`ensure_leaf`] with the clock given.
pub fn ensure_leaf_at(
    state_dir: &Path,
    hostnames: &[String],
    key_type: KeyType,
    now: SystemTime,
) -> Result<(LoadedCert, Provenance), CertError> {
    let hostnames = if hostnames.is_empty() {
        default_hostnames()
    } else {
        hostnames.to_vec()
    };
    let p = paths(state_dir);
    // Temp files of a start that was killed while writing go first.
    sweep_stale(&p.dir);
    if let Some(leaf_dir) = p.leaf_cert.parent() {
        sweep_stale(leaf_dir);
    }
    let (ca, created) = ensure_ca(&p, now)?;
    if created {
        tracing::info!(
            "created the local CA {} ({}); `wssd cert ca install --state-dir {}` makes browsers and curl on this machine trust it",
            p.ca_cert.display(),
            ca.describe(),
            state_dir.display()
        );
    }
    ca.check_current(&p.ca_cert, now)?;

    let reason = match why_not_reuse(&p, &ca, &hostnames, key_type, now) {
        Ok(loaded) => return Ok((loaded, Provenance::Reused)),
        Err(reason) => reason,
    };
    let leaf_dir = p.leaf_cert.parent().unwrap_or(&p.dir);
    make_private_dir(leaf_dir)?;
    let (pem, _) = issue_leaf(&ca, &hostnames, LEAF_VALIDITY_DAYS, key_type, now)?;
    generate::write_pair(&p.leaf_cert, &p.leaf_key, &pem).map_err(|e| in_state_dir(e, leaf_dir))?;
    let loaded = files::load_pair_at(&p.leaf_cert, &p.leaf_key, now)?;
    Ok((loaded, Provenance::Generated { reason }))
}

/// Loads the stored leaf if it can be reused, else says why not.
fn why_not_reuse(
    p: &CaPaths,
    ca: &Ca,
    hostnames: &[String],
    key_type: KeyType,
    now: SystemTime,
) -> Result<LoadedCert, String> {
    if !p.leaf_cert.exists() && !p.leaf_key.exists() {
        return Err("none yet".into());
    }
    let loaded = match files::load_pair_at(&p.leaf_cert, &p.leaf_key, now) {
        Ok(l) => l,
        Err(CertError::Expired { date, .. }) => return Err(format!("expired on {date}")),
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    if loaded.key.cert.get(1) != Some(&ca.der) {
        return Err("the local CA changed".into());
    }

    let wanted = name_set(hostnames);
    let have = name_set(&loaded.info.sans);
    if wanted != have {
        return Err(format!(
            "names changed: was {}; now {}",
            join_names(&have),
            join_names(&wanted)
        ));
    }

    let stored_type = loaded
        .key
        .end_entity_cert()
        .ok()
        .and_then(|der| public_key_summary(der).ok())
        .and_then(|(_, kind)| kind);
    if stored_type != Some(key_type) {
        return Err("key type changed".into());
    }

    let days = loaded.info.days_left(now);
    // A leaf already ending with the CA would not get any longer.
    if days <= RENEW_DAYS && loaded.info.not_after < ca.info.not_after {
        return Err(format!("expires in {days} days"));
    }
    Ok(loaded)
}

/// A write failure inside the state folder is the state folder's problem.
fn in_state_dir(e: CertError, dir: &Path) -> CertError {
    match e {
        CertError::Write { source, .. } => CertError::StateDirNotWritable {
            path: dir.to_path_buf(),
            source,
        },
        other => other,
    }
}

// --- wssd cert ca ... -------------------------------------------------------

/// `wssd cert ca init|issue|install|uninstall`; returns what to print.
pub fn run_command(
    cmd: &CaCommand,
    default_state_dir: Option<PathBuf>,
) -> Result<String, CertError> {
    // The command edge: the NSS database is the invoking user's.
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let state_dir = |args: &CaArgs| {
        args.state_dir
            .clone()
            .or_else(|| default_state_dir.clone())
            .ok_or_else(|| CertError::LocalCa {
                detail:
                    "no state folder: give --state-dir DIR (neither XDG_STATE_HOME nor HOME is set)"
                        .into(),
            })
    };
    let now = SystemTime::now();
    match cmd {
        CaCommand::Init(args) => init(&state_dir(args)?, now),
        CaCommand::Issue(args) => issue(&state_dir(&args.ca)?, args, now),
        CaCommand::Install(args) => install(&state_dir(args)?, &Trust::system(home), now),
        CaCommand::Uninstall(args) => uninstall(&state_dir(args)?, &Trust::system(home)),
    }
}

fn ca_lines(p: &CaPaths, ca: &Ca, created: bool, out: &mut Vec<String>) {
    if created {
        out.push(format!("created local CA {}", p.ca_cert.display()));
    } else {
        out.push(format!(
            "local CA already exists: {} (reused, not replaced)",
            p.ca_cert.display()
        ));
    }
    out.push(format!("  subject:  {}", ca.info.subject));
    out.push(format!(
        "  expires:  {} ({} days left)",
        format_time(ca.info.not_after),
        ca.info.days_left(SystemTime::now())
    ));
    out.push(format!(
        "  key:      {} (mode 0600; keep it secret: it can make certificates this machine's browsers trust)",
        p.ca_key.display()
    ));
}

fn init(state_dir: &Path, now: SystemTime) -> Result<String, CertError> {
    let p = paths(state_dir);
    let (ca, created) = ensure_ca(&p, now)?;
    let mut out = Vec::new();
    ca_lines(&p, &ca, created, &mut out);
    let dir = state_dir.display();
    out.push(format!(
        "trust it:   wssd cert ca install --state-dir {dir}   (system store and Chromium's NSS database)"
    ));
    out.push(format!(
        "serve:      wssd --tls local-ca --state-dir {dir} --hostname localhost --hostname <LAN IP>"
    ));
    Ok(out.join("\n"))
}

fn issue(state_dir: &Path, args: &CaIssueArgs, now: SystemTime) -> Result<String, CertError> {
    let p = paths(state_dir);
    let (ca, created) = ensure_ca(&p, now)?;
    ca.check_current(&p.ca_cert, now)?;
    let hostnames = if args.hostname.is_empty() {
        default_hostnames()
    } else {
        args.hostname.clone()
    };
    let (pem, not_after) = issue_leaf(&ca, &hostnames, args.days, args.key_type, now)?;
    let replaced = [&args.out_cert, &args.out_key]
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    generate::write_pair(&args.out_cert, &args.out_key, &pem)?;

    let mut out = Vec::new();
    if created {
        ca_lines(&p, &ca, true, &mut out);
    }
    let cert = args.out_cert.display();
    let key = args.out_key.display();
    out.push(format!(
        "wrote certificate {cert} (mode 0644; the certificate, then the local CA certificate)"
    ));
    out.push(format!(
        "wrote private key {key} (mode 0600; keep it secret)"
    ));
    if !replaced.is_empty() {
        out.push(format!("replaced existing {}", replaced.join(" and ")));
    }
    let mut seen = BTreeSet::new();
    let names: Vec<String> = hostnames
        .iter()
        .map(|h| normalize_name(h))
        .filter(|n| seen.insert(n.clone()))
        .collect();
    let days_left = crate::certs::info::to_unix(not_after)
        .saturating_sub(crate::certs::info::to_unix(now))
        .div_euclid(86_400);
    out.push(format!("  names:    {}", names.join(", ")));
    out.push(format!("  key:      {}", key_type_name(args.key_type)));
    out.push(format!("  issuer:   {}", ca.info.subject));
    out.push(format!(
        "  expires:  {} ({days_left} days)",
        format_time(not_after)
    ));
    if not_after < now + Duration::from_secs(u64::from(args.days) * DAY_SECS) {
        out.push(format!(
            "note: shortened from {} days to end with the local CA",
            args.days
        ));
    }
    if args.days > BROWSER_MAX_DAYS {
        out.push(format!(
            "note: browsers may refuse server certificates valid for more than {BROWSER_MAX_DAYS} days"
        ));
    }
    out.push(format!(
        "serve:      wssd --tls files --cert {cert} --key {key}"
    ));
    out.push(format!(
        "trust it:   wssd cert ca install --state-dir {}   (once per machine and user)",
        state_dir.display()
    ));
    Ok(out.join("\n"))
}

/// Where `install` and `uninstall` make their changes (tests point these at
/// temporary folders and harmless programs).
#[derive(Debug, Clone)]
struct Trust {
    /// Folder of local CA files `update-ca-certificates` reads.
    system_dir: PathBuf,
    /// `update-ca-certificates`.
    update_program: PathBuf,
    /// NSS's `certutil`.
    certutil: PathBuf,
    /// The user's home; its `.pki/nssdb` is the NSS database Chromium uses.
    home: Option<PathBuf>,
}

impl Trust {
    fn system(home: Option<PathBuf>) -> Trust {
        Trust {
            system_dir: PathBuf::from(SYSTEM_CA_DIR),
            update_program: PathBuf::from("update-ca-certificates"),
            certutil: PathBuf::from("certutil"),
            home,
        }
    }

    fn nss_db(&self) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join(".pki").join("nssdb"))
    }
}

/// What a command printed so far, and which of those lines were changes.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    changes: Vec<String>,
}

impl Log {
    fn note(&mut self, line: String) {
        self.lines.push(line);
    }

    fn changed(&mut self, line: String) {
        self.changes.push(line.clone());
        self.lines.push(line);
    }

    /// The error for a step that failed after `changes` were made.
    fn failed(&self, what: String) -> CertError {
        let done = if self.changes.is_empty() {
            "nothing was changed".to_owned()
        } else {
            format!("already changed: {}", self.changes.join("; "))
        };
        CertError::LocalCa {
            detail: format!("{what} ({done})"),
        }
    }
}

/// Runs a tool with no input; `None` when it is not installed. A bare name
/// is also looked for in the sbin folders, which a non-root PATH may lack.
fn run_tool(program: &Path, args: &[&OsStr]) -> io::Result<Option<Output>> {
    let mut candidates = vec![program.to_path_buf()];
    if program.components().count() == 1 {
        for dir in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
            candidates.push(Path::new(dir).join(program));
        }
    }
    for candidate in candidates {
        match Command::new(&candidate)
            .args(args)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) => return Ok(Some(out)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// A failed run in one line: the exit status and the last line it printed.
fn failure(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let text = if text.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout)
    } else {
        text
    };
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no output");
    format!("{}: {last}", out.status)
}

/// `sql:<dir>`, the NSS database argument.
fn nss_spec(db: &Path) -> OsString {
    let mut spec = OsString::from("sql:");
    spec.push(db.as_os_str());
    spec
}

/// Whether the NSS database lists `nickname`; `None` when certutil is missing.
fn nss_has(t: &Trust, spec: &OsStr, nickname: &str) -> Result<Option<bool>, String> {
    let args: [&OsStr; 3] = ["-L".as_ref(), "-d".as_ref(), spec];
    match run_tool(&t.certutil, &args) {
        Ok(None) => Ok(None),
        Ok(Some(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            // Lines are "<nickname><spaces><trust flags>".
            Ok(Some(text.lines().any(|line| {
                line.strip_prefix(nickname)
                    .is_some_and(|rest| rest.starts_with(char::is_whitespace) || rest.is_empty())
            })))
        }
        Ok(Some(out)) => Err(format!(
            "certutil -L -d {} failed ({})",
            spec.to_string_lossy(),
            failure(&out)
        )),
        Err(e) => Err(format!("cannot run certutil: {e}")),
    }
}

fn certutil_missing(db: &Path) -> String {
    format!(
        "NSS database {}: skipped: certutil not found; install it (Debian/Ubuntu: apt-get install libnss3-tools) and run this again",
        db.display()
    )
}

fn install(state_dir: &Path, t: &Trust, now: SystemTime) -> Result<String, CertError> {
    let p = paths(state_dir);
    let (ca, created) = ensure_ca(&p, now)?;
    let mut log = Log::default();
    if created {
        log.changed(format!(
            "created local CA {} ({})",
            p.ca_cert.display(),
            ca.describe()
        ));
    } else {
        log.note(format!(
            "local CA {} ({})",
            p.ca_cert.display(),
            ca.describe()
        ));
    }
    install_system(&ca, &p, t, &mut log).map_err(|e| log.failed(e))?;
    install_nss(&ca, &p, t, &mut log).map_err(|e| log.failed(e))?;
    if log.changes.is_empty() {
        log.note("nothing changed".into());
    } else {
        log.note("restart running browsers to pick up the change".into());
    }
    log.note(
        "Firefox keeps its own store per profile: import the CA file under Settings > Privacy & Security > Certificates > View Certificates > Authorities"
            .into(),
    );
    log.note(format!(
        "undo with: wssd cert ca uninstall --state-dir {}",
        state_dir.display()
    ));
    Ok(log.lines.join("\n"))
}

fn install_system(ca: &Ca, p: &CaPaths, t: &Trust, log: &mut Log) -> Result<(), String> {
    let target = t.system_dir.join(ca.system_file_name());
    let shown = target.display();
    let by_hand = format!(
        "sudo install -m 0644 {} {shown} && sudo update-ca-certificates",
        p.ca_cert.display()
    );
    if fs::read(&target).is_ok_and(|have| have == ca.pem.as_bytes()) {
        log.note(format!(
            "system trust store: {shown} already present (unchanged)"
        ));
        return Ok(());
    }
    if !t.system_dir.is_dir() {
        log.note(format!(
            "system trust store: skipped: {} does not exist (Debian/Ubuntu: apt-get install ca-certificates; elsewhere add {} to the system CA store by hand)",
            t.system_dir.display(),
            p.ca_cert.display()
        ));
        return Ok(());
    }
    match write_public(&target, ca.pem.as_bytes()) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            log.note(format!(
                "system trust store: skipped: cannot write {shown} ({e}; needs root); by hand: {by_hand}"
            ));
            return Ok(());
        }
        Err(e) => return Err(format!("cannot write {shown}: {e}")),
    }
    match run_tool(&t.update_program, &[]) {
        Ok(Some(out)) if out.status.success() => {
            log.changed(format!("system trust store: added {shown}"));
            let stdout = String::from_utf8_lossy(&out.stdout);
            let summary = stdout
                .lines()
                .map(str::trim)
                .find(|l| l.contains("added"))
                .unwrap_or("done");
            log.changed(format!(
                "system trust store: ran {} ({summary})",
                t.update_program.display()
            ));
            Ok(())
        }
        Ok(Some(out)) => {
            log.changed(format!("system trust store: added {shown}"));
            Err(format!(
                "{} failed ({}); run it by hand",
                t.update_program.display(),
                failure(&out)
            ))
        }
        Ok(None) => {
            let _ = fs::remove_file(&target);
            log.note(format!(
                "system trust store: skipped: {} not found (Debian/Ubuntu: apt-get install ca-certificates, then run this again)",
                t.update_program.display()
            ));
            Ok(())
        }
        Err(e) => {
            log.changed(format!("system trust store: added {shown}"));
            Err(format!(
                "cannot run {}: {e}; run it by hand",
                t.update_program.display()
            ))
        }
    }
}

/// Writes a world-readable file (mode 0644) in place.
fn write_public(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}

fn install_nss(ca: &Ca, p: &CaPaths, t: &Trust, log: &mut Log) -> Result<(), String> {
    let Some(db) = t.nss_db() else {
        log.note("NSS database (Chromium): skipped: HOME is not set".into());
        return Ok(());
    };
    let spec = nss_spec(&db);
    let shown = db.display();
    if !db.join("cert9.db").exists() {
        let existed = db.exists();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&db)
            .map_err(|e| format!("cannot create {shown}: {e}"))?;
        let args: [&OsStr; 4] = [
            "-N".as_ref(),
            "-d".as_ref(),
            &spec,
            "--empty-password".as_ref(),
        ];
        match run_tool(&t.certutil, &args) {
            Ok(None) => {
                if !existed {
                    let _ = fs::remove_dir(&db);
                }
                log.note(certutil_missing(&db));
                return Ok(());
            }
            Ok(Some(out)) if out.status.success() => {
                log.changed(format!("NSS database {shown}: created (no password)"));
            }
            Ok(Some(out)) => {
                return Err(format!(
                    "certutil -N -d {} failed ({})",
                    spec.to_string_lossy(),
                    failure(&out)
                ));
            }
            Err(e) => return Err(format!("cannot run certutil: {e}")),
        }
    }
    let nickname = ca.nickname();
    match nss_has(t, &spec, &nickname)? {
        None => {
            log.note(certutil_missing(&db));
            return Ok(());
        }
        Some(true) => {
            log.note(format!(
                "NSS database {shown}: \"{nickname}\" already present (unchanged)"
            ));
            return Ok(());
        }
        Some(false) => {}
    }
    let args: [&OsStr; 9] = [
        "-A".as_ref(),
        "-d".as_ref(),
        &spec,
        "-t".as_ref(),
        "C,,".as_ref(),
        "-n".as_ref(),
        nickname.as_ref(),
        "-i".as_ref(),
        p.ca_cert.as_os_str(),
    ];
    match run_tool(&t.certutil, &args) {
        Ok(Some(out)) if out.status.success() => {
            log.changed(format!(
                "NSS database {shown}: added \"{nickname}\", trusted to identify TLS servers (Chromium and other programs using this database)"
            ));
            Ok(())
        }
        Ok(Some(out)) => Err(format!(
            "certutil -A -d {} failed ({})",
            spec.to_string_lossy(),
            failure(&out)
        )),
        Ok(None) => {
            log.note(certutil_missing(&db));
            Ok(())
        }
        Err(e) => Err(format!("cannot run certutil: {e}")),
    }
}

fn uninstall(state_dir: &Path, t: &Trust) -> Result<String, CertError> {
    let p = paths(state_dir);
    let Some(ca) = load_ca(&p)? else {
        return Ok(format!(
            "no local CA in {}: nothing to uninstall",
            p.dir.display()
        ));
    };
    let mut log = Log::default();
    log.note(format!(
        "local CA {} ({})",
        p.ca_cert.display(),
        ca.describe()
    ));
    uninstall_system(&ca, t, &mut log).map_err(|e| log.failed(e))?;
    uninstall_nss(&ca, t, &mut log).map_err(|e| log.failed(e))?;
    if log.changes.is_empty() {
        log.note("nothing changed".into());
    } else {
        log.note("restart running browsers to pick up the change".into());
    }
    log.note(format!(
        "the CA itself stays in {} (delete that folder to destroy it)",
        p.dir.display()
    ));
    Ok(log.lines.join("\n"))
}

fn uninstall_system(ca: &Ca, t: &Trust, log: &mut Log) -> Result<(), String> {
    let target = t.system_dir.join(ca.system_file_name());
    let shown = target.display();
    if fs::symlink_metadata(&target).is_err() {
        log.note(format!(
            "system trust store: {shown} not present (nothing to remove)"
        ));
        return Ok(());
    }
    match fs::remove_file(&target) {
        Ok(()) => log.changed(format!("system trust store: removed {shown}")),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            log.note(format!(
                "system trust store: skipped: cannot remove {shown} ({e}; needs root); by hand: sudo rm {shown} && sudo update-ca-certificates --fresh"
            ));
            return Ok(());
        }
        Err(e) => return Err(format!("cannot remove {shown}: {e}")),
    }
    let args: [&OsStr; 1] = ["--fresh".as_ref()];
    match run_tool(&t.update_program, &args) {
        Ok(Some(out)) if out.status.success() => {
            log.changed(format!(
                "system trust store: ran {} --fresh",
                t.update_program.display()
            ));
            Ok(())
        }
        Ok(Some(out)) => Err(format!(
            "{} --fresh failed ({}); run it by hand",
            t.update_program.display(),
            failure(&out)
        )),
        Ok(None) => {
            log.note(format!(
                "system trust store: {} not found; rebuild the system store by hand",
                t.update_program.display()
            ));
            Ok(())
        }
        Err(e) => Err(format!(
            "cannot run {}: {e}; run it by hand",
            t.update_program.display()
        )),
    }
}

fn uninstall_nss(ca: &Ca, t: &Trust, log: &mut Log) -> Result<(), String> {
    let Some(db) = t.nss_db() else {
        log.note("NSS database (Chromium): skipped: HOME is not set".into());
        return Ok(());
    };
    let shown = db.display();
    let nickname = ca.nickname();
    if !db.join("cert9.db").exists() {
        log.note(format!(
            "NSS database {shown}: none here (nothing to remove)"
        ));
        return Ok(());
    }
    let spec = nss_spec(&db);
    let mut removed = false;
    // NSS may hold several certificates under one nickname; -D removes one.
    for _ in 0..8 {
        match nss_has(t, &spec, &nickname)? {
            None => {
                log.note(certutil_missing(&db));
                return Ok(());
            }
            Some(false) => break,
            Some(true) => {}
        }
        let args: [&OsStr; 5] = [
            "-D".as_ref(),
            "-d".as_ref(),
            &spec,
            "-n".as_ref(),
            nickname.as_ref(),
        ];
        match run_tool(&t.certutil, &args) {
            Ok(Some(out)) if out.status.success() => removed = true,
            Ok(Some(out)) => {
                return Err(format!(
                    "certutil -D -d {} -n \"{nickname}\" failed ({})",
                    spec.to_string_lossy(),
                    failure(&out)
                ));
            }
            Ok(None) => {
                log.note(certutil_missing(&db));
                return Ok(());
            }
            Err(e) => return Err(format!("cannot run certutil: {e}")),
        }
    }
    if removed {
        log.changed(format!("NSS database {shown}: removed \"{nickname}\""));
    } else {
        log.note(format!(
            "NSS database {shown}: \"{nickname}\" not present (nothing to remove)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{ServerName, UnixTime};
    use std::sync::Arc;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn reason(p: Provenance) -> String {
        match p {
            Provenance::Generated { reason } => reason,
            Provenance::Reused => panic!("expected a new certificate"),
        }
    }

    fn ca_der(state: &Path) -> CertificateDer<'static> {
        load_ca(&paths(state)).unwrap().unwrap().der
    }

    /// Verifies `chain` (leaf first) for `name` with the CA of `state` as the only root.
    fn verify(state: &Path, chain: &[CertificateDer<'static>], name: &str) -> Result<(), String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der(state)).unwrap();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
                .build()
                .unwrap();
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn ca_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = init(&state, SystemTime::now()).unwrap();
        assert!(first.starts_with("created local CA "), "{first}");
        let p = paths(&state);
        assert_eq!(mode(&p.dir), 0o700);
        assert_eq!(mode(&p.ca_key), 0o600);
        let ca = load_ca(&p).unwrap().unwrap();
        assert!(ca.info.is_ca);
        assert_eq!(ca.id.len(), 12);
        assert!(
            ca.info
                .subject
                .contains(&format!("CN=wssd local CA {}", ca.id)),
            "{}",
            ca.info.subject
        );
        assert_eq!(ca.nickname(), format!("wssd local CA {}", ca.id));
        let days = ca.info.days_left(SystemTime::now());
        assert!((3649..=3650).contains(&days), "{days}");
        let (_, kind) = public_key_summary(&ca.der).unwrap();
        assert_eq!(kind, Some(KeyType::EcdsaP256));

        let second = init(&state, SystemTime::now()).unwrap();
        assert!(second.contains("already exists"), "{second}");
        let again = load_ca(&p).unwrap().unwrap();
        assert_eq!(again.info.serial, ca.info.serial);
        assert_eq!(again.id, ca.id);

        // Another CA gets another id (so uninstall finds exactly one).
        let other = tempfile::tempdir().unwrap();
        init(other.path(), SystemTime::now()).unwrap();
        assert_ne!(load_ca(&paths(other.path())).unwrap().unwrap().id, ca.id);
    }

    #[test]
    fn loose_key_mode_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), SystemTime::now()).unwrap();
        let p = paths(dir.path());
        fs::set_permissions(&p.ca_key, fs::Permissions::from_mode(0o644)).unwrap();
        load_ca(&p).unwrap().unwrap();
        assert_eq!(mode(&p.ca_key), 0o600);
    }

    #[test]
    fn broken_ca_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), SystemTime::now()).unwrap();
        let p = paths(dir.path());
        let key = fs::read(&p.ca_key).unwrap();
        fs::remove_file(&p.ca_key).unwrap();
        let e = ensure_leaf(dir.path(), &[], KeyType::EcdsaP256).unwrap_err();
        assert!(matches!(e, CertError::CaUnusable { .. }), "{e}");
        assert!(e.to_string().contains("private key is missing"), "{e}");
        assert!(!p.ca_key.exists());

        // Someone else's key.
        let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        fs::write(&p.ca_key, other.serialize_pem()).unwrap();
        let e = ensure_leaf(dir.path(), &[], KeyType::EcdsaP256).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        fs::write(&p.ca_key, key).unwrap();
        ensure_leaf(dir.path(), &[], KeyType::EcdsaP256).unwrap();
    }

    #[test]
    fn leaf_verifies_against_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let (leaf, p) = ensure_leaf(state, &[], KeyType::EcdsaP256).unwrap();
        assert_eq!(reason(p), "none yet");
        let cp = paths(state);
        assert_eq!(leaf.cert_path, cp.leaf_cert);
        assert_eq!(leaf.key_path, cp.leaf_key);
        assert_eq!(mode(&cp.leaf_key), 0o600);
        assert_eq!(mode(cp.leaf_cert.parent().unwrap()), 0o700);
        assert_eq!(leaf.info.sans, vec!["localhost", "127.0.0.1", "::1"]);
        let days = leaf.info.days_left(SystemTime::now());
        assert!((89..=90).contains(&days), "{days}");

        // Full chain: the leaf, then the CA.
        let chain = leaf.key.cert.clone();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], ca_der(state));
        for name in ["localhost", "127.0.0.1", "::1"] {
            verify(state, &chain, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(verify(state, &chain, "example.com").is_err());
        // Also without the CA sent along (the root is enough).
        verify(state, &chain[..1], "localhost").unwrap();

        // What Chromium wants: serverAuth, SAN, not a CA, AKI = the CA's SKI.
        let (_, x) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert!(x.extended_key_usage().unwrap().unwrap().value.server_auth);
        assert!(!x.is_ca());
        let aki = x
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .expect("authorityKeyIdentifier");
        let (_, ca) = x509_parser::parse_x509_certificate(&chain[1]).unwrap();
        let ski = ca
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .expect("subjectKeyIdentifier");
        assert_eq!(aki, ski);
        assert_eq!(x.issuer(), ca.subject());

        // RSA leaves verify too.
        let (rsa, _) = ensure_leaf(state, &[], KeyType::Rsa2048).unwrap();
        verify(state, &rsa.key.cert, "127.0.0.1").unwrap();
    }

    #[test]
    fn reuse_and_reissue() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let (first, _) = ensure_leaf(state, &names(&["a.test"]), KeyType::EcdsaP256).unwrap();
        let (again, p) = ensure_leaf(state, &names(&["A.TEST."]), KeyType::EcdsaP256).unwrap();
        assert_eq!(p, Provenance::Reused);
        assert_eq!(again.info.serial, first.info.serial);

        let (second, p) = ensure_leaf(
            state,
            &names(&["a.test", "192.168.1.20"]),
            KeyType::EcdsaP256,
        )
        .unwrap();
        let why = reason(p);
        assert!(why.starts_with("names changed"), "{why}");
        assert!(why.contains("192.168.1.20"), "{why}");
        assert_ne!(second.info.serial, first.info.serial);
        verify(state, &second.key.cert, "192.168.1.20").unwrap();

        let both = names(&["192.168.1.20", "a.test"]);
        let (_, p) = ensure_leaf(state, &both, KeyType::Rsa2048).unwrap();
        assert_eq!(reason(p), "key type changed");
        let (_, p) = ensure_leaf(state, &both, KeyType::Rsa2048).unwrap();
        assert_eq!(p, Provenance::Reused);

        // Close to expiry.
        let cp = paths(state);
        let ca = load_ca(&cp).unwrap().unwrap();
        let (pem, _) = issue_leaf(&ca, &both, 10, KeyType::Rsa2048, SystemTime::now()).unwrap();
        generate::write_pair(&cp.leaf_cert, &cp.leaf_key, &pem).unwrap();
        let (renewed, p) = ensure_leaf(state, &both, KeyType::Rsa2048).unwrap();
        let why = reason(p);
        assert!(
            why == "expires in 10 days" || why == "expires in 9 days",
            "{why}"
        );
        assert!(renewed.info.days_left(SystemTime::now()) >= 89);

        // A new CA: the old leaf no longer chains to it.
        fs::remove_file(&cp.ca_cert).unwrap();
        fs::remove_file(&cp.ca_key).unwrap();
        let (fresh, p) = ensure_leaf(state, &both, KeyType::Rsa2048).unwrap();
        assert_eq!(reason(p), "the local CA changed");
        verify(state, &fresh.key.cert, "a.test").unwrap();

        // Expired (checked as of a later time).
        let later = SystemTime::now() + Duration::from_secs(100 * DAY_SECS);
        let (_, p) = ensure_leaf_at(state, &both, KeyType::Rsa2048, later).unwrap();
        assert!(reason(p).starts_with("expired on "));
    }

    #[test]
    fn leaf_ends_with_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        init(state, SystemTime::now()).unwrap();
        let cp = paths(state);
        let ca = load_ca(&cp).unwrap().unwrap();
        // 20 days before the CA expires: the leaf is cut to the CA's end and
        // is not reissued on every check.
        let near_end = ca.info.not_after - Duration::from_secs(20 * DAY_SECS);
        let (leaf, _) = ensure_leaf_at(state, &[], KeyType::EcdsaP256, near_end).unwrap();
        assert_eq!(leaf.info.not_after, ca.info.not_after);
        let (_, p) = ensure_leaf_at(state, &[], KeyType::EcdsaP256, near_end).unwrap();
        assert_eq!(p, Provenance::Reused);
        let after = ca.info.not_after + Duration::from_secs(DAY_SECS);
        let e = ensure_leaf_at(state, &[], KeyType::EcdsaP256, after).unwrap_err();
        assert!(e.to_string().contains("expired on"), "{e}");
    }

    #[test]
    fn issue_writes_files() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let out_cert = dir.path().join("out/cert.pem");
        let out_key = dir.path().join("out/key.pem");
        let cmd = CaCommand::Issue(CaIssueArgs {
            ca: CaArgs {
                state_dir: Some(state.clone()),
            },
            hostname: names(&["web.lan", "10.0.0.7"]),
            days: 30,
            key_type: KeyType::EcdsaP256,
            out_cert: out_cert.clone(),
            out_key: out_key.clone(),
        });
        let msg = run_command(&cmd, None).unwrap();
        assert!(msg.contains("created local CA"), "{msg}");
        assert!(msg.contains(&out_cert.display().to_string()), "{msg}");
        assert!(msg.contains("web.lan, 10.0.0.7"), "{msg}");
        assert_eq!(mode(&out_key), 0o600);
        let loaded = files::load_pair(&out_cert, &out_key).unwrap();
        assert_eq!(loaded.info.sans, vec!["web.lan", "10.0.0.7"]);
        let days = loaded.info.days_left(SystemTime::now());
        assert!((29..=30).contains(&days), "{days}");
        verify(&state, &loaded.key.cert, "web.lan").unwrap();
        verify(&state, &loaded.key.cert, "10.0.0.7").unwrap();

        // Again: same CA, files replaced.
        let msg = run_command(&cmd, None).unwrap();
        assert!(!msg.contains("created local CA"), "{msg}");
        assert!(msg.contains("replaced existing"), "{msg}");

        // No state folder at all.
        let e = run_command(&CaCommand::Init(CaArgs { state_dir: None }), None).unwrap_err();
        assert!(e.to_string().contains("--state-dir"), "{e}");
    }

    fn certutil_available() -> bool {
        matches!(
            run_tool(Path::new("certutil"), &["-H".as_ref()]),
            Ok(Some(_))
        )
    }

    #[test]
    fn install_and_uninstall() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let system_dir = dir.path().join("ca-certificates");
        fs::create_dir(&system_dir).unwrap();
        let home = dir.path().join("home");
        let t = Trust {
            system_dir: system_dir.clone(),
            update_program: PathBuf::from("true"),
            certutil: PathBuf::from("certutil"),
            home: Some(home.clone()),
        };
        let msg = install(&state, &t, SystemTime::now()).unwrap();
        let ca = load_ca(&paths(&state)).unwrap().unwrap();
        let target = system_dir.join(format!("wssd-local-ca-{}.crt", ca.id));
        assert!(msg.contains("created local CA"), "{msg}");
        assert!(
            msg.contains(&format!("system trust store: added {}", target.display())),
            "{msg}"
        );
        assert!(msg.contains("ran true"), "{msg}");
        assert_eq!(fs::read_to_string(&target).unwrap(), ca.pem);
        assert_eq!(mode(&target), 0o644);
        let db = home.join(".pki/nssdb");
        let spec = nss_spec(&db);
        let nss = certutil_available();
        if nss {
            assert!(msg.contains("NSS database"), "{msg}");
            assert!(msg.contains("created (no password)"), "{msg}");
            assert!(
                msg.contains(&format!("added \"{}\"", ca.nickname())),
                "{msg}"
            );
            assert_eq!(nss_has(&t, &spec, &ca.nickname()).unwrap(), Some(true));
        } else {
            assert!(msg.contains("apt-get install libnss3-tools"), "{msg}");
        }

        // Idempotent.
        let msg = install(&state, &t, SystemTime::now()).unwrap();
        assert!(msg.contains("already present (unchanged)"), "{msg}");
        assert!(msg.contains("nothing changed") || !nss, "{msg}");

        let msg = uninstall(&state, &t).unwrap();
        assert!(
            msg.contains(&format!("removed {}", target.display())),
            "{msg}"
        );
        assert!(!target.exists());
        if nss {
            assert!(
                msg.contains(&format!("removed \"{}\"", ca.nickname())),
                "{msg}"
            );
            assert_eq!(nss_has(&t, &spec, &ca.nickname()).unwrap(), Some(false));
        }
        let msg = uninstall(&state, &t).unwrap();
        assert!(msg.contains("nothing changed"), "{msg}");
        assert!(msg.contains("not present"), "{msg}");
        // The CA stays.
        assert!(paths(&state).ca_key.exists());
    }

    #[test]
    fn missing_tools_are_skipped_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let system_dir = dir.path().join("ca-certificates");
        fs::create_dir(&system_dir).unwrap();
        let t = Trust {
            system_dir: system_dir.clone(),
            update_program: PathBuf::from("wssd-test-no-such-update-tool"),
            certutil: PathBuf::from("wssd-test-no-such-certutil"),
            home: Some(dir.path().join("home")),
        };
        let msg = install(&state, &t, SystemTime::now()).unwrap();
        assert!(
            msg.contains("wssd-test-no-such-update-tool not found"),
            "{msg}"
        );
        assert!(msg.contains("apt-get install libnss3-tools"), "{msg}");
        // Nothing left behind.
        assert_eq!(fs::read_dir(&system_dir).unwrap().count(), 0);
        assert!(!dir.path().join("home/.pki/nssdb").exists());

        let t = Trust { home: None, ..t };
        let msg = uninstall(&state, &t).unwrap();
        assert!(msg.contains("HOME is not set"), "{msg}");

        // No CA: nothing to uninstall.
        let msg = uninstall(&dir.path().join("empty"), &t).unwrap();
        assert!(msg.contains("nothing to uninstall"), "{msg}");
    }
}
