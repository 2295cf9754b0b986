//! Binding listening sockets, with errors that say what to do (address in
//! use, privileged port, address not on this machine). IPv6 sockets are
//! IPv6-only so `[::]` and `0.0.0.0` can be bound side by side.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;

/// Listen backlog for every socket.
const BACKLOG: i32 = 1024;

/// A bind failure, explained.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {hint}")]
pub struct BindError {
    pub addr: SocketAddr,
    /// Which listener (`--listen`, `--http`, `--admin`).
    pub what: &'static str,
    pub hint: String,
    #[source]
    pub source: io::Error,
}

/// Binds a TCP listener; call inside the runtime.
pub fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, BindError> {
    let explain = |source: io::Error| BindError {
        addr,
        what,
        hint: hint(addr, &source),
        source,
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(explain)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(explain)?;
    }
    socket.set_reuse_address(true).map_err(explain)?;
    socket.set_nonblocking(true).map_err(explain)?;
    socket.bind(&addr.into()).map_err(explain)?;
    socket.listen(BACKLOG).map_err(explain)?;
    TcpListener::from_std(socket.into()).map_err(explain)
}

fn hint(addr: SocketAddr, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            "address already in use: another program (perhaps another wssd) listens on port {}; stop it or choose another port",
            addr.port()
        ),
        io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "permission denied: ports below 1024 need privileges; run `sudo setcap cap_net_bind_service=+ep $(command -v wssd)` or use a port of 1024 or more (e.g. {})",
            if addr.port() == 443 {
                8443
            } else {
                8000 + addr.port()
            }
        ),
        io::ErrorKind::PermissionDenied => format!("permission denied: {e}"),
        io::ErrorKind::AddrNotAvailable => format!(
            "{} is not an address of this machine; use 127.0.0.1, [::1], 0.0.0.0 or one of this machine's addresses",
            addr.ip()
        ),
        _ => e.to_string(),
    }
}
