//! The system trust store (Debian's `update-ca-certificates`): the CA as
//! `<system_dir>/wssd-local-ca-<id>.crt`, then a rebuild of the store.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::store::{Log, Trust, TrustError, TrustStore};
use super::tool::Tool;
use crate::certs::local_ca::ca::Ca;

/// The system store as configured in [`Trust`].
pub(super) struct SystemStore<'a>(pub(super) &'a Trust);

impl SystemStore<'_> {
    fn update_tool(&self) -> Tool<'_> {
        Tool {
            program: &self.0.update_program,
            name: self.0.update_program.display().to_string(),
            advice: "; run it by hand",
        }
    }
}

impl TrustStore for SystemStore<'_> {
    fn install(&self, ca: &Ca, ca_file: &Path, log: &mut Log) -> Result<(), TrustError> {
        let t = self.0;
        let target = t.system_dir.join(ca.system_file_name());
        let shown = target.display();
        let by_hand = format!(
            "sudo install -m 0644 {} {shown} && sudo update-ca-certificates",
            ca_file.display()
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
                ca_file.display()
            ));
            return Ok(());
        }
        let written = write_public(&target, ca.pem.as_bytes());
        if !changed_file(written, "write", &target, &by_hand, log)? {
            return Ok(());
        }
        let tool = self.update_tool();
        match tool.run(&[], || tool.name.clone()) {
            Ok(Some(out)) => {
                log.changed(format!("system trust store: added {shown}"));
                let stdout = String::from_utf8_lossy(&out.stdout);
                let summary = stdout
                    .lines()
                    .map(str::trim)
                    .find(|l| l.contains("added"))
                    .unwrap_or("done");
                log.changed(format!("system trust store: ran {} ({summary})", tool.name));
                Ok(())
            }
            Ok(None) => {
                let _ = fs::remove_file(&target);
                log.note(format!(
                    "system trust store: skipped: {} not found (Debian/Ubuntu: apt-get install ca-certificates, then run this again)",
                    tool.name
                ));
                Ok(())
            }
            Err(e) => {
                log.changed(format!("system trust store: added {shown}"));
                Err(e)
            }
        }
    }

    fn uninstall(&self, ca: &Ca, log: &mut Log) -> Result<(), TrustError> {
        let target = self.0.system_dir.join(ca.system_file_name());
        let shown = target.display();
        if fs::symlink_metadata(&target).is_err() {
            log.note(format!(
                "system trust store: {shown} not present (nothing to remove)"
            ));
            return Ok(());
        }
        let by_hand = format!("sudo rm {shown} && sudo update-ca-certificates --fresh");
        if !changed_file(fs::remove_file(&target), "remove", &target, &by_hand, log)? {
            return Ok(());
        }
        log.changed(format!("system trust store: removed {shown}"));
        let tool = self.update_tool();
        let args: [&OsStr; 1] = ["--fresh".as_ref()];
        match tool.run(&args, || format!("{} --fresh", tool.name))? {
            Some(_) => log.changed(format!("system trust store: ran {} --fresh", tool.name)),
            None => log.note(format!(
                "system trust store: {} not found; rebuild the system store by hand",
                tool.name
            )),
        }
        Ok(())
    }
}

/// The outcome of writing or removing the CA file: `Ok(false)` when only
/// root may (skipped, with the commands to run `by_hand`).
fn changed_file(
    result: io::Result<()>,
    action: &'static str,
    target: &Path,
    by_hand: &str,
    log: &mut Log,
) -> Result<bool, TrustError> {
    match result {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            log.note(format!(
                "system trust store: skipped: cannot {action} {} ({e}; needs root); by hand: {by_hand}",
                target.display()
            ));
            Ok(false)
        }
        Err(source) => Err(TrustError::File {
            action,
            path: target.to_path_buf(),
            source,
        }),
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
