//! Adding the local CA to this machine's trust stores and removing it again:
//! the system store (`system`, `update-ca-certificates`) and Chromium's NSS
//! database (`nss`, `certutil`). Every store follows one pattern, driven by
//! [`apply`]: say what is there, change it, run the store's tool; a missing
//! tool or a store that needs root is skipped with advice, never an error;
//! a failure names what was already changed.

mod nss;
mod system;

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::ca::Ca;
use crate::certs::CertError;

/// Folder of local CA files `update-ca-certificates` reads (Debian).
const SYSTEM_CA_DIR: &str = "/usr/local/share/ca-certificates";

/// Where `install` and `uninstall` make their changes (tests point these at
/// temporary folders and harmless programs).
#[derive(Debug, Clone)]
pub(super) struct Trust {
    /// Folder of local CA files `update-ca-certificates` reads.
    pub(super) system_dir: PathBuf,
    /// `update-ca-certificates`.
    pub(super) update_program: PathBuf,
    /// NSS's `certutil`.
    pub(super) certutil: PathBuf,
    /// The user's home; its `.pki/nssdb` is the NSS database Chromium uses.
    pub(super) home: Option<PathBuf>,
}

impl Trust {
    /// This machine's stores, and the NSS database under `home`.
    pub(super) fn system(home: Option<PathBuf>) -> Trust {
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

/// Add the CA to the stores, or take it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Install,
    Uninstall,
}

/// One trust store the CA can be added to and removed from.
trait TrustStore {
    /// Adds `ca` (whose certificate file is `ca_file`), unless it is there.
    fn install(&self, ca: &Ca, ca_file: &Path, log: &mut Log) -> Result<(), TrustError>;
    /// Removes exactly what `install` added, if it is there.
    fn uninstall(&self, ca: &Ca, log: &mut Log) -> Result<(), TrustError>;
}

/// Why a trust store could not be changed.
#[derive(Debug, thiserror::Error)]
pub(super) enum TrustError {
    /// The store's tool ran and failed.
    #[error("{command} failed ({detail}){advice}")]
    ToolFailed {
        command: String,
        detail: String,
        advice: &'static str,
    },
    /// The store's tool is there but could not be started.
    #[error("cannot run {program}: {source}{advice}")]
    CannotRun {
        program: String,
        source: io::Error,
        advice: &'static str,
    },
    /// A file or folder of the store could not be changed.
    #[error("cannot {action} {}: {source}", .path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Applies `change` to every store in turn (system, then NSS), stopping at
/// the first failure; ends the log with what to do next.
pub(super) fn apply(
    change: Change,
    ca: &Ca,
    ca_file: &Path,
    t: &Trust,
    log: &mut Log,
) -> Result<(), CertError> {
    let stores: [&dyn TrustStore; 2] = [&system::SystemStore(t), &nss::NssStore(t)];
    for store in stores {
        let done = match change {
            Change::Install => store.install(ca, ca_file, log),
            Change::Uninstall => store.uninstall(ca, log),
        };
        done.map_err(|e| log.failed(&e))?;
    }
    if log.changes.is_empty() {
        log.note("nothing changed".into());
    } else {
        log.note("restart running browsers to pick up the change".into());
    }
    Ok(())
}

/// What a command printed so far, and which of those lines were changes.
#[derive(Default)]
pub(super) struct Log {
    pub(super) lines: Vec<String>,
    changes: Vec<String>,
}

impl Log {
    pub(super) fn note(&mut self, line: String) {
        self.lines.push(line);
    }

    pub(super) fn changed(&mut self, line: String) {
        self.changes.push(line.clone());
        self.lines.push(line);
    }

    /// The error for a step that failed after `changes` were made.
    fn failed(&self, what: &TrustError) -> CertError {
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

/// A store's program, as run and as named in messages.
struct Tool<'a> {
    program: &'a Path,
    /// The program in "cannot run ..." messages.
    name: String,
    /// Appended to failure messages (e.g. "; run it by hand").
    advice: &'static str,
}

impl Tool<'_> {
    /// Runs the program with `args` and no input. `Ok(None)` when it is not
    /// installed; a failed run is an error naming `command`.
    fn run(
        &self,
        args: &[&OsStr],
        command: impl FnOnce() -> String,
    ) -> Result<Option<Output>, TrustError> {
        match run_tool(self.program, args) {
            Ok(None) => Ok(None),
            Ok(Some(out)) if out.status.success() => Ok(Some(out)),
            Ok(Some(out)) => Err(TrustError::ToolFailed {
                command: command(),
                detail: failure(&out),
                advice: self.advice,
            }),
            Err(source) => Err(TrustError::CannotRun {
                program: self.name.clone(),
                source,
                advice: self.advice,
            }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::local_ca::ca::load_ca;
    use crate::certs::local_ca::commands::{install, uninstall};
    use crate::certs::local_ca::paths;
    use crate::certs::local_ca::testing::mode;
    use std::fs;
    use std::time::SystemTime;

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
        let nss = certutil_available();
        let has = |t: &Trust| nss::NssStore(t).has(&db, &ca.nickname()).unwrap();
        if nss {
            assert!(msg.contains("NSS database"), "{msg}");
            assert!(msg.contains("created (no password)"), "{msg}");
            assert!(
                msg.contains(&format!("added \"{}\"", ca.nickname())),
                "{msg}"
            );
            assert_eq!(has(&t), Some(true));
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
            assert_eq!(has(&t), Some(false));
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
