//! `wssd cert ca init|issue|install|uninstall|export`: one function per command,
//! each returning what to print. The CA is `ca`'s, signing is `issue`'s and
//! the trust stores are `trust`'s.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::ca::{Ca, ensure_ca, load_ca};
use super::issue::issue_leaf;
use super::layout::{CaPaths, paths};
use super::public::load_public;
use super::trust::{self, Change, Log, Trust};
use crate::certs::error::CertError;
use crate::certs::generate::{
    DAY_SECS, key_type_name, or_default_hostnames, unique_names, write_outputs,
};
use crate::certs::info::format_time;
use crate::cli::{CaArgs, CaCommand, CaExportArgs, CaIssueArgs};

/// Browsers refuse server certificates valid for longer than this.
const BROWSER_MAX_DAYS: u32 = 398;

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
        CaCommand::Export(args) => export(&state_dir(&args.ca)?, args),
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

pub(super) fn init(state_dir: &Path, now: SystemTime) -> Result<String, CertError> {
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
    let hostnames = or_default_hostnames(&args.hostname);
    let (pem, not_after) = issue_leaf(&ca, &hostnames, args.days, args.key_type, now)?;
    let replaced = write_outputs(&args.out_cert, &args.out_key, &pem)?;

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
    let names = unique_names(&hostnames);
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

/// `install`: the CA (created if absent) into every trust store.
pub(super) fn install(state_dir: &Path, t: &Trust, now: SystemTime) -> Result<String, CertError> {
    let p = paths(state_dir);
    let (ca, created) = ensure_ca(&p, now)?;
    let mut log = Log::default();
    let line = format!("local CA {} ({})", p.ca_cert.display(), ca.describe());
    if created {
        log.changed(format!("created {line}"));
    } else {
        log.note(line);
    }
    trust::apply(Change::Install, &ca, &p.ca_cert, t, &mut log)?;
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

/// `uninstall`: the CA out of every trust store (the CA itself stays).
pub(super) fn uninstall(state_dir: &Path, t: &Trust) -> Result<String, CertError> {
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
    trust::apply(Change::Uninstall, &ca, &p.ca_cert, t, &mut log)?;
    log.note(format!(
        "the CA itself stays in {} (delete that folder to destroy it)",
        p.dir.display()
    ));
    Ok(log.lines.join("\n"))
}

/// `export`: the CA certificate alone (PEM, or DER with `--der`), to
/// `--out` or (PEM only) standard output. Never creates a CA: exporting one
/// that no server uses would hand out the wrong certificate.
fn export(state_dir: &Path, args: &CaExportArgs) -> Result<String, CertError> {
    let p = paths(state_dir);
    let Some(ca) = load_public(&p)? else {
        return Err(CertError::LocalCa {
            detail: format!(
                "no local CA in {}: create it with `wssd cert ca init --state-dir {}` (or start `wssd --tls local-ca` once)",
                p.dir.display(),
                state_dir.display()
            ),
        });
    };
    let Some(out) = &args.out else {
        if args.der {
            return Err(CertError::LocalCa {
                detail: "DER is binary: give a file, e.g. `wssd cert ca export --der --out ca.crt`"
                    .into(),
            });
        }
        // Printed as is (the caller adds the final newline).
        return Ok(ca.pem.trim_end().to_string());
    };
    let bytes = if args.der {
        ca.der.clone()
    } else {
        ca.pem.clone().into_bytes()
    };
    crate::certs::store::write_atomic(out, &bytes, 0o644)?;
    Ok(format!(
        "wrote the local CA certificate {} ({}; public certificate only, no key)\n  subject:     {}\n  SHA-256:     {}\n  expires:     {}",
        out.display(),
        if args.der { "DER" } else { "PEM" },
        ca.subject,
        ca.fingerprint,
        format_time(ca.not_after)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::files;
    use crate::certs::local_ca::testing::{mode, names, verify};
    use crate::config::types::KeyType;

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
}
