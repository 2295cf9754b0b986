//! Linux process facts the bench needs: the open-file limit, the resident
//! memory (VmRSS) of a process, and the CPU time the bench itself used.

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    crate::nofile::raise_to_hard().map(|r| r.after)
}

/// CPU time (user + system) this process has used so far, in seconds.
pub fn own_cpu_secs() -> Option<f64> {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own and pass by valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Cores' worth of CPU this process used since `since` (from [`own_cpu_secs`]) over `wall` seconds.
pub fn cpu_cores_since(since: Option<f64>, wall: f64) -> Option<f64> {
    let used = own_cpu_secs()? - since?;
    (wall > 0.0).then(|| (used / wall * 100.0).round() / 100.0)
}

/// Why the resident memory of a process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RssError {
    #[error("no such process")]
    NoProcess,
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("no VmRSS line in {path} (a zombie or kernel thread?)")]
    NoVmRss { path: String },
}

/// Resident memory of `pid` in KiB (VmRSS from /proc/PID/status).
pub fn rss_kib(pid: u32) -> Result<u64, RssError> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => RssError::NoProcess,
        _ => RssError::Read {
            path: path.clone(),
            source,
        },
    })?;
    parse_vm_rss(&status).ok_or(RssError::NoVmRss { path })
}

/// Resident memory of this process in KiB.
pub fn own_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_rss(&s))
}

/// The KiB value of the `VmRSS:` line of a /proc/PID/status text.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix("VmRSS:")?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(value),
            Some(_) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tnginx\nVmPeak:\t  12000 kB\nVmRSS:\t    5120 kB\nRssAnon:\t 100 kB\n";
        assert_eq!(parse_vm_rss(status), Some(5120));
        assert_eq!(parse_vm_rss("Name:\tkworker\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn own_cpu_time_grows() {
        let before = own_cpu_secs();
        assert!(before.is_some());
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_cores_since(before, 1.0).is_some_and(|c| c >= 0.0));
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(own_rss_kib().is_some_and(|kib| kib > 0));
        assert!(rss_kib(std::process::id()).is_ok());
    }
}
