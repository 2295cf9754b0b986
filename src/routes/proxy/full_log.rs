//! A route's refusals because every upstream was at `upstream_max_conns`
//! (`cap`), summarised in one warning at most every 10 s per route: the
//! metric counts each, the log says it is happening without a line per
//! request.

use std::sync::atomic::{AtomicU64, Ordering};

/// How often, at most, a route's refusals at `upstream_max_conns` are
/// summarised in the log (a warning; the metric counts every one).
const FULL_LOG_EVERY_MS: u64 = 10_000;

/// A route's refusals because every upstream was full, since the last
/// warning, and when that was (milliseconds since the route's epoch).
#[derive(Debug, Default)]
pub(super) struct FullLog {
    since: AtomicU64,
    /// When the next warning may be written (0: at the first refusal).
    next_ms: AtomicU64,
}

impl FullLog {
    /// Counts a refusal at `now_ms`; the count to report when a warning is
    /// due now (one caller wins it), None otherwise.
    pub(super) fn refused(&self, now_ms: u64) -> Option<u64> {
        self.since.fetch_add(1, Ordering::Relaxed);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms < next {
            return None;
        }
        self.next_ms
            .compare_exchange(
                next,
                now_ms + FULL_LOG_EVERY_MS,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .ok()?;
        Some(self.since.swap(0, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_reported_at_most_every_ten_seconds_with_their_count() {
        let log = FullLog::default();
        assert_eq!(log.refused(5), Some(1), "the first refusal is reported");
        assert_eq!(log.refused(6), None);
        assert_eq!(log.refused(9_000), None);
        assert_eq!(log.refused(10_004), None);
        assert_eq!(
            log.refused(10_005),
            Some(4),
            "then the ones since, 10 s later"
        );
        assert_eq!(log.refused(10_006), None);
        assert_eq!(log.refused(40_000), Some(2));
    }
}
