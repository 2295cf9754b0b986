//! What every step of a fanout run shares: where progress lines go
//! ([`Output`]) and how often progress is polled ([`POLL`]).

use std::io::Write;
use std::time::Duration;

use crate::bench::report::print;

/// How often progress is checked while waiting.
pub(super) const POLL: Duration = Duration::from_millis(5);

/// Where progress lines go: stdout, or stderr when stdout is for JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Output {
    Stdout,
    Stderr,
    #[cfg(test)]
    Quiet,
}

impl Output {
    pub(super) fn say(self, text: &str) {
        match self {
            Output::Stdout => print(text),
            Output::Stderr => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(text.as_bytes());
                let _ = err.flush();
            }
            #[cfg(test)]
            Output::Quiet => {}
        }
    }
}
