//! The state folder on disk: private folders (0700) and atomic file writes
//! (a temporary file in the same folder, fsync, rename), keys created 0600.
//! Every certificate source writes through here.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::CertError;

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
    Ok(())
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
    let tmp = parent.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
    // A leftover from a crashed run with the same pid would make create_new fail.
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
