//! Running a trust store's program (`update-ca-certificates`, `certutil`).

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::store::TrustError;

/// A store's program, as run and as named in messages.
pub(super) struct Tool<'a> {
    pub(super) program: &'a Path,
    /// The program in "cannot run ..." messages.
    pub(super) name: String,
    /// Appended to failure messages (e.g. "; run it by hand").
    pub(super) advice: &'static str,
}

impl Tool<'_> {
    /// Runs the program with `args` and no input. `Ok(None)` when it is not
    /// installed; a failed run is an error naming `command`.
    pub(super) fn run(
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
pub(super) fn run_tool(program: &Path, args: &[&OsStr]) -> io::Result<Option<Output>> {
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
