//! Binding listening sockets, with errors that say what to do (address in
//! use, privileged port, address not on this machine). IPv6 sockets are
//! IPv6-only so `[::]` and `0.0.0.0` can be bound side by side. Sockets
//! passed by systemd (socket activation) are checked and adopted here too.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, SockRef, Socket, Type};
use tokio::net::TcpListener;

use crate::systemd::PassedListener;

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

/// A socket passed by the service manager that wssd cannot serve on.
#[derive(Debug, thiserror::Error)]
#[error("socket-activated fd {number} (FileDescriptorName={name}): {problem}")]
pub struct AdoptError {
    pub number: std::os::fd::RawFd,
    pub name: String,
    pub problem: String,
}

/// The address a passed listener is bound to (without taking it).
pub fn passed_addr(passed: &PassedListener) -> Result<SocketAddr, AdoptError> {
    let problem = |problem: String| AdoptError {
        number: passed.number,
        name: passed.name.clone(),
        problem,
    };
    let socket = SockRef::from(&passed.fd);
    match socket.r#type() {
        Ok(t) if t == Type::STREAM => {}
        Ok(_) => {
            return Err(problem(
                "not a stream socket; use ListenStream=ADDRESS:PORT in the .socket unit".into(),
            ));
        }
        Err(e) => return Err(problem(format!("not a socket ({e})"))),
    }
    if !socket.is_listener().unwrap_or(false) {
        return Err(problem(
            "not a listening socket; use ListenStream= (and Accept=no) in the .socket unit".into(),
        ));
    }
    socket
        .local_addr()
        .map_err(|e| problem(format!("cannot read its address ({e})")))?
        .as_socket()
        .ok_or_else(|| {
            problem(
                "not a TCP socket (wssd serves TCP only); use ListenStream=ADDRESS:PORT in the .socket unit"
                    .into(),
            )
        })
}

/// Takes over a passed listener (checked as in [`passed_addr`]); call inside
/// the runtime.
pub fn adopt(passed: PassedListener) -> Result<(TcpListener, SocketAddr), AdoptError> {
    let addr = passed_addr(&passed)?;
    let (number, name) = (passed.number, passed.name.clone());
    let problem = |e: io::Error| AdoptError {
        number,
        name: name.clone(),
        problem: e.to_string(),
    };
    let socket = Socket::from(passed.fd);
    socket.set_nonblocking(true).map_err(problem)?;
    let listener = TcpListener::from_std(socket.into()).map_err(problem)?;
    Ok((listener, addr))
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

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};

    use super::*;

    fn passed(fd: OwnedFd, name: &str) -> PassedListener {
        PassedListener {
            number: fd.as_raw_fd(),
            fd,
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn adopts_a_listening_tcp_socket() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let want = std.local_addr().unwrap();
        let (listener, addr) = adopt(passed(std.into(), "https")).unwrap();
        assert_eq!(addr, want);
        let client = tokio::net::TcpStream::connect(addr);
        let (accepted, _) = tokio::join!(listener.accept(), client);
        accepted.unwrap();
    }

    #[test]
    fn refuses_what_is_not_a_tcp_listener() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = passed_addr(&passed(udp.into(), "https")).unwrap_err();
        assert!(err.to_string().contains("not a stream socket"), "{err}");

        let unbound = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let err = passed_addr(&passed(unbound.into(), "http")).unwrap_err();
        assert!(err.to_string().contains("not a listening socket"), "{err}");
        assert!(err.to_string().contains("FileDescriptorName=http"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let err = passed_addr(&passed(unix.into(), "https")).unwrap_err();
        assert!(err.to_string().contains("not a TCP socket"), "{err}");

        let file = std::fs::File::open("/dev/null").unwrap();
        let err = passed_addr(&passed(file.into(), "https")).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
    }
}
