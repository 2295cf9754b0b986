//! Signals that arrive while `serve` is still starting (reading the
//! configuration, loading or generating certificates), before the server's
//! own handlers exist. SIGHUP and SIGUSR2 end a process by default, so a
//! logrotate or deploy script that sends one early would kill wssd. From the
//! first line of `serve` on they are caught instead: noted, ignored, and
//! logged once logging is up ("send it again when ready"). The server's
//! handlers (tokio's, registered in `server::run`) take over from there; a
//! handler registered here stays but only sets a flag.

use std::sync::atomic::{AtomicBool, Ordering};

static HANGUP: AtomicBool = AtomicBool::new(false);
static USR2: AtomicBool = AtomicBool::new(false);

/// Catches SIGHUP and SIGUSR2 until the server's handlers take over. Call
/// first in `serve`. An error (cannot install) is returned for the caller to
/// report; the signals then keep their default action.
pub fn catch() -> std::io::Result<()> {
    // SAFETY: the actions only store to an atomic (async-signal-safe).
    unsafe {
        signal_hook_registry::register(libc::SIGHUP, || HANGUP.store(true, Ordering::Relaxed))?;
        signal_hook_registry::register(libc::SIGUSR2, || USR2.store(true, Ordering::Relaxed))?;
    }
    Ok(())
}

/// What arrived during startup, one line each, for the log (and clears it).
pub fn ignored() -> Vec<&'static str> {
    let mut lines = Vec::new();
    if HANGUP.swap(false, Ordering::Relaxed) {
        lines.push("SIGHUP arrived while starting and was ignored (nothing to reload yet); send it again now that wssd is serving");
    }
    if USR2.swap(false, Ordering::Relaxed) {
        lines.push("SIGUSR2 arrived while starting and was ignored (no upgrade during startup); send it again now that wssd is serving");
    }
    lines
}
