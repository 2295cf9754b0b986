//! The state folder on disk: private folders (0700) and atomic file writes
//! (a temporary file in the same folder, fsync, rename), keys created 0600.
//! Every certificate source writes through here.
//!
//! Temporary files are named `.<target>.tmp-<pid>-<run>-<n>` (`run` is
//! random per process), created with `O_EXCL` and the target's mode (0600
//! for keys), and removed when the write fails. A process killed mid-write
//! leaves one behind; [`sweep_stale`] removes those of processes that are
//! gone (or of an earlier run with the same pid, as in containers where
//! wssd is always pid 1). It runs whenever a state folder is opened or
//! written, so no key copy lingers and nothing half-written is read.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::CertError;

/// Creates `dir` (and parents) readable by the owner only, tightening an
/// existing folder that others can read.
/// Creates `dir` (and missing parents) with mode 0700 and tightens it if it exists.
pub fn make_private_dir(dir: &Path) -> Result<(), CertError> {
    let not_writable = |source| CertError::StateDirNotWritable {
        path: dir.to_path_buf(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(not_writable)?;
    let meta = fs::metadata(dir).map_err(not_writable)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(not_writable)?;
    }
    sweep_stale(dir);
    Ok(())
}

/// A random number fixed for this process's life, naming its temp files.
fn run_id() -> u32 {
    static RUN: OnceLock<u32> = OnceLock::new();
    *RUN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let addr = &RUN as *const _ as usize as u32;
        nanos ^ addr.rotate_left(16) ^ std::process::id().rotate_left(8)
    })
}

/// Removes temporary files left in `dir` by killed writers: ours by name,
/// of a process that no longer runs or of an earlier run with our pid.
/// Best effort: a folder that cannot be read is left alone. Returns how
/// many were removed.
pub fn sweep_stale(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if is_stale(name) && fs::remove_file(entry.path()).is_ok() {
            tracing::warn!(
                "removed {}: a temporary file left by a wssd that was stopped while writing",
                entry.path().display()
            );
            removed += 1;
        }
    }
    removed
}

/// Whether `name` is one of our temp files whose writer is gone.
fn is_stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((_, tail)) = rest.rsplit_once(".tmp-") else {
        return false;
    };
    let parts: Vec<&str> = tail.split('-').collect();
    if !parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    let Ok(pid) = parts[0].parse::<u32>() else {
        return false;
    };
    let own = std::process::id();
    match parts.len() {
        // `<pid>-<run>-<n>`: ours if the run matches.
        3 if pid == own => parts[1].parse::<u32>() != Ok(run_id()),
        // `<pid>-<n>`: the older naming, never used by this process.
        2 if pid == own => true,
        2 | 3 => !process_alive(pid),
        _ => false,
    }
}

/// Whether a process with this pid exists (EPERM means it does).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Writes `contents` to `path` atomically with the given mode.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|source| CertError::Write {
        path: parent.clone(),
        source,
    })?;
    let file_name = path
        .file_name()
        .map_or_else(|| "wssd-cert".into(), |n| n.to_string_lossy().into_owned());
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    sweep_stale(&parent);
    let tmp = parent.join(format!(
        ".{file_name}.tmp-{}-{}-{n}",
        std::process::id(),
        run_id()
    ));
    // A leftover from a crashed run with the same pid and run would make
    // create_new fail.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    // Make the rename durable; failure here loses nothing already written.
    if let Ok(dir) = fs::File::open(&parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Writes a secret (key, account) atomically, 0600, in a private folder.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        make_private_dir(parent)?;
    }
    write_atomic(path, contents, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_dead_writers_are_swept_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let own = std::process::id();
        // pid 0x7fff_fff0 does not run (above pid_max).
        let dead = 0x7fff_fff0u32;
        let leftovers = [
            format!(".key.pem.tmp-{dead}-123-0"),
            format!(".key.pem.tmp-{dead}-0"),
            format!(".account.json.tmp-{own}-{}-0", run_id().wrapping_add(1)),
            format!(".cert.pem.tmp-{own}-4"),
        ];
        let kept = [
            // A write of this very run, in flight.
            format!(".key.pem.tmp-{own}-{}-7", run_id()),
            // Another live process's (pid 1 always runs).
            ".key.pem.tmp-1-99-0".to_string(),
            // Not ours.
            ".key.pem.tmp-abc".to_string(),
            "key.pem".to_string(),
        ];
        for f in leftovers.iter().chain(&kept) {
            fs::write(d.join(f), "secret").unwrap();
        }
        assert_eq!(sweep_stale(d), leftovers.len());
        for f in &leftovers {
            assert!(!d.join(f).exists(), "{f} left behind");
        }
        for f in &kept {
            assert!(d.join(f).exists(), "{f} removed");
        }
        // A write sweeps too, and leaves only the target.
        fs::write(d.join(format!(".key.pem.tmp-{dead}-1-1")), "old").unwrap();
        write_private(&d.join("key.pem"), b"new").unwrap();
        assert!(!d.join(format!(".key.pem.tmp-{dead}-1-1")).exists());
        assert_eq!(fs::read(d.join("key.pem")).unwrap(), b"new");
    }
}
