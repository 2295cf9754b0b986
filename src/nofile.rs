//! The open-file limit. Every socket is a file descriptor (a proxied
//! WebSocket holds two: client and upstream), and shells and many service
//! managers start processes with a soft limit of 1024 under a far higher
//! hard limit. With that soft limit a default `wssd` (10,000 connections)
//! failed its accepts with "Too many open files" at about 500 proxied
//! WebSockets. `serve` raises the soft limit to the hard one at start, as
//! Go's runtime does for every Go server (Caddy included), and says when
//! even the hard limit is below `--max-connections`.

use std::io;

/// The soft limit before and after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub before: u64,
    pub after: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (no privilege needed).
pub fn raise_to_hard() -> io::Result<Raised> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and pass by valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    let before = limit.rlim_cur as u64;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass by valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    #[allow(clippy::unnecessary_cast)]
    let after = limit.rlim_cur as u64;
    Ok(Raised { before, after })
}

/// What `serve` logs about the limit: an info line when it was raised, a
/// warning when fewer than `max_connections` sockets fit.
pub fn notes(r: Raised, max_connections: usize) -> (Option<String>, Option<String>) {
    let info = (r.after > r.before).then(|| {
        format!(
            "open-file limit raised from {} to {} (the hard limit)",
            r.before, r.after
        )
    });
    let warn = (r.after < max_connections as u64).then(|| {
        format!(
            "the open-file limit is {}, below --max-connections {max_connections} (each WebSocket \
             takes a file descriptor, a proxied one two): connections past it fail with \"Too many \
             open files\"; raise the hard limit (LimitNOFILE= in systemd, ulimit -Hn as root) or \
             lower --max-connections",
            r.after
        )
    });
    (info, warn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let r = raise_to_hard().expect("getrlimit");
        assert!(r.after >= r.before);
        assert_eq!(raise_to_hard().expect("again").before, r.after);
    }

    #[test]
    fn notes_say_what_changed_and_warn_below_max_connections() {
        let (info, warn) = notes(
            Raised {
                before: 1024,
                after: 524_288,
            },
            10_000,
        );
        assert_eq!(
            info.as_deref(),
            Some("open-file limit raised from 1024 to 524288 (the hard limit)")
        );
        assert_eq!(warn, None);
        let (info, warn) = notes(
            Raised {
                before: 4096,
                after: 4096,
            },
            10_000,
        );
        assert_eq!(info, None);
        let warn = warn.expect("a warning");
        assert!(
            warn.starts_with("the open-file limit is 4096, below --max-connections 10000"),
            "{warn}"
        );
        assert!(warn.contains("LimitNOFILE="), "{warn}");
    }
}
