//! How a session ended ([`Ending`]): the close code, the reason and who
//! closed, for logs, metrics and the access log.

use crate::access_log::ClosedBy;

/// Why a session ended, for logs and the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client closed (with this code, 1005 when none, and its reason).
    ClosedByPeer(u16, String),
    /// We closed with this code and reason.
    ClosedByUs(u16, String),
    /// Proxy routes: the upstream closed with this code.
    ClosedByUpstream(u16),
    /// Exec routes: the program ended; the close sent for it.
    ClosedByProgram(u16, String),
    /// The TCP connection dropped without a closing handshake.
    Dropped,
}

impl Ending {
    /// Close code (1006 when the connection dropped), reason, who closed.
    pub fn summary(&self) -> (u16, &str, ClosedBy) {
        match self {
            Ending::ClosedByPeer(code, reason) => (*code, reason, ClosedBy::Client),
            Ending::ClosedByUs(code, reason) => (*code, reason, ClosedBy::Server),
            Ending::ClosedByUpstream(code) => (*code, "", ClosedBy::Upstream),
            Ending::ClosedByProgram(code, reason) => (*code, reason, ClosedBy::Program),
            Ending::Dropped => (1006, "", ClosedBy::Client),
        }
    }

    /// This ending, told as the program's doing (exec: it exited).
    pub fn by_program(self) -> Ending {
        match self {
            Ending::ClosedByUs(code, reason) => Ending::ClosedByProgram(code, reason),
            other => other,
        }
    }
}
