//! The PROXY protocol (HAProxy's, v1 text and v2 binary) at the start of a
//! connection from a `--trusted-proxy` load balancer: the header carries
//! the client's address, which then stands for the peer everywhere (limits,
//! logs, X-Forwarded-For, REMOTE_ADDR).
//!
//! The header is read exactly, never a byte more, so the TLS ClientHello or
//! HTTP request behind it is left for the next reader: [`need`] says how
//! many more bytes the header needs given those read so far (15 first: the
//! shortest v1 header, `PROXY UNKNOWN\r\n`, is 15 bytes; then the v2
//! length field, or v1 byte by byte up to CRLF within 107 bytes), and
//! [`parse`] hands the complete header to the `ppp` crate. The buffer is
//! bounded by [`MAX_V2_LENGTH`]; the caller bounds the time (the handshake
//! timeout).
//!
//! v2 `LOCAL` (the balancer's own health checks), v1 `UNKNOWN` and address
//! families other than TCP over IPv4/IPv6 keep the socket's address.

use std::net::SocketAddr;

use ppp::HeaderResult;
use ppp::v1;
use ppp::v2;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature (12 bytes), then version/command, family/protocol and a
/// big-endian length.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;
/// Longest v1 header, CRLF included (the specification's 107 bytes).
pub const V1_MAX_LENGTH: usize = 107;
/// Shortest header of either version (`PROXY UNKNOWN\r\n`).
const MIN_LENGTH: usize = 15;
/// Longest v2 header accepted: the fixed part, addresses and TLVs (HAProxy
/// and cloud balancers send well under 1 KiB).
pub const MAX_V2_LENGTH: usize = V2_FIXED + 4096;

/// Why a PROXY header was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Why the bytes read so far cannot become an accepted header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the connection does not start with a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 header longer than {V1_MAX_LENGTH} bytes")]
    V1TooLong,
    #[error("PROXY v2 header of {0} bytes is longer than the {MAX_V2_LENGTH} accepted")]
    V2TooLong(usize),
}

/// What to do next, given the bytes of the header read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read exactly this many more bytes (all belong to the header).
    Read(usize),
    /// The header is complete: parse it.
    Complete,
    /// Not a header we accept: close.
    Refuse(Refused),
}

/// How many more bytes the header needs after `buf`; never more than the
/// header holds.
pub fn need(buf: &[u8]) -> Step {
    if buf.len() < MIN_LENGTH {
        let probe = &buf[..buf.len().min(V2_SIGNATURE.len())];
        if !V2_SIGNATURE.starts_with(probe) && !b"PROXY ".starts_with(&buf[..buf.len().min(6)]) {
            return Step::Refuse(Refused::NotProxy);
        }
        return Step::Read(MIN_LENGTH - buf.len());
    }
    if buf.starts_with(V2_SIGNATURE) {
        if buf.len() < V2_FIXED {
            return Step::Read(V2_FIXED - buf.len());
        }
        let total = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if total > MAX_V2_LENGTH {
            return Step::Refuse(Refused::V2TooLong(total));
        }
        return if buf.len() < total {
            Step::Read(total - buf.len())
        } else {
            Step::Complete
        };
    }
    if buf.starts_with(b"PROXY ") {
        if buf.ends_with(b"\r\n") {
            return Step::Complete;
        }
        if buf.len() >= V1_MAX_LENGTH {
            return Step::Refuse(Refused::V1TooLong);
        }
        return Step::Read(1);
    }
    Step::Refuse(Refused::NotProxy)
}

/// The client address a complete header carries: `None` when the socket's
/// own address stands (v2 LOCAL, v1 UNKNOWN, other address families).
pub fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    match HeaderResult::parse(header) {
        HeaderResult::V2(Ok(h)) => {
            if h.len() != header.len() {
                return Err(ProxyHeaderError::Invalid("length mismatch".into()));
            }
            if h.command == v2::Command::Local {
                return Ok(None);
            }
            Ok(match h.addresses {
                v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
            })
        }
        HeaderResult::V1(Ok(h)) => {
            if h.header.len() != header.len() {
                return Err(ProxyHeaderError::Invalid("length mismatch".into()));
            }
            Ok(match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            })
        }
        HeaderResult::V2(Err(e)) => Err(ProxyHeaderError::Invalid(e.to_string())),
        HeaderResult::V1(Err(e)) => Err(ProxyHeaderError::Invalid(e.to_string())),
    }
}

/// Reads exactly one PROXY header from `io` and returns the client address
/// it carries (see [`parse`]). The caller puts a deadline around it.
pub async fn read_header<R: AsyncRead + Unpin>(
    io: &mut R,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut buf = Vec::with_capacity(V1_MAX_LENGTH);
    loop {
        match need(&buf) {
            Step::Read(n) => {
                let start = buf.len();
                buf.resize(start + n, 0);
                io.read_exact(&mut buf[start..]).await?;
            }
            Step::Complete => return parse(&buf),
            Step::Refuse(why) => return Err(why.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the [`need`] loop over `input` like [`read_header`] does:
    /// the bytes consumed and the outcome (`None` = input ran out).
    pub(super) fn drive(input: &[u8]) -> (usize, Option<Result<Option<SocketAddr>, String>>) {
        let mut read = 0;
        loop {
            match need(&input[..read]) {
                Step::Read(n) => {
                    if read + n > input.len() {
                        return (read, None);
                    }
                    read += n;
                }
                Step::Complete => {
                    return (read, Some(parse(&input[..read]).map_err(|e| e.to_string())));
                }
                Step::Refuse(why) => return (read, Some(Err(why.to_string()))),
            }
        }
    }

    fn v2(command: v2::Command, addresses: v2::Addresses, tlv: &[u8]) -> Vec<u8> {
        let mut b = v2::Builder::with_addresses(
            v2::Version::Two | command,
            v2::Protocol::Stream,
            addresses,
        );
        if !tlv.is_empty() {
            b = b.write_tlv(v2::Type::NoOp, tlv).unwrap();
        }
        b.build().unwrap()
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let mut input = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 443\r\n".to_vec();
        let len = input.len();
        input.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            drive(&input),
            (len, Some(Ok(Some("192.0.2.7:40000".parse().unwrap()))))
        );
        let input = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\nGET";
        assert_eq!(
            drive(input),
            (
                input.len() - 3,
                Some(Ok(Some("[2001:db8::1]:1".parse().unwrap())))
            )
        );
        assert_eq!(drive(b"PROXY UNKNOWN\r\n\x16"), (15, Some(Ok(None))));
    }

    #[test]
    fn v2_proxy_and_local() {
        let addrs: v2::Addresses = (
            "198.51.100.9:5555".parse::<SocketAddr>().unwrap(),
            "10.0.0.1:443".parse::<SocketAddr>().unwrap(),
        )
            .into();
        let mut input = v2(v2::Command::Proxy, addrs, b"tlv");
        let len = input.len();
        input.push(0x16);
        assert_eq!(
            drive(&input),
            (len, Some(Ok(Some("198.51.100.9:5555".parse().unwrap()))))
        );
        let local = v2(v2::Command::Local, v2::Addresses::Unspecified, b"");
        assert_eq!(drive(&local), (16, Some(Ok(None))));
    }

    #[test]
    fn garbage_and_oversize_are_refused() {
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00].repeat(4);
        assert!(matches!(drive(&hello), (15, Some(Err(_)))));
        assert!(matches!(
            drive(b"GET / HTTP/1.1\r\n\r\n"),
            (_, Some(Err(_)))
        ));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(drive(&long).0, V1_MAX_LENGTH);
        assert!(matches!(drive(&long).1, Some(Err(_))));
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(drive(&big), (16, Some(Err(_)))));
        assert!(matches!(
            drive(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"),
            (_, None)
        ));
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn socket_addr() -> impl Strategy<Value = SocketAddr> {
            prop_oneof![
                (any::<[u8; 4]>(), any::<u16>())
                    .prop_map(|(ip, port)| SocketAddr::from((ip, port))),
                (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, port)| {
                    SocketAddr::from((std::net::Ipv6Addr::from(ip), port))
                }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Arbitrary bytes: no panic, and a complete header is exactly
            /// as long as the parser says (nothing behind it consumed).
            #[test]
            fn never_panics_nor_reads_past_the_header(
                input in prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..300),
                    (proptest::collection::vec(any::<u8>(), 0..120))
                        .prop_map(|tail| [b"PROXY ".as_slice(), &tail].concat()),
                    (any::<[u8; 4]>(), proptest::collection::vec(any::<u8>(), 0..200))
                        .prop_map(|(head, tail)| [V2_SIGNATURE.as_slice(), &head, &tail].concat()),
                ]
            ) {
                let (read, outcome) = drive(&input);
                prop_assert!(read <= input.len());
                prop_assert!(read <= MAX_V2_LENGTH);
                if let Some(Ok(_)) = outcome {
                    let own = match HeaderResult::parse(&input) {
                        HeaderResult::V1(Ok(h)) => h.header.len(),
                        HeaderResult::V2(Ok(h)) => h.len(),
                        other => return Err(TestCaseError::fail(format!("{other:?}"))),
                    };
                    prop_assert_eq!(read, own);
                }
            }

            /// Valid v1 and v2 headers give back the source address, and
            /// whatever follows them is left unread.
            #[test]
            fn valid_headers_round_trip(
                src in socket_addr(),
                dst_port in any::<u16>(),
                tail in proptest::collection::vec(any::<u8>(), 0..64),
                tlv in proptest::collection::vec(any::<u8>(), 0..64),
                use_v2 in any::<bool>(),
            ) {
                let dst = match src {
                    SocketAddr::V4(_) => SocketAddr::from(([10, 0, 0, 1], dst_port)),
                    SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, dst_port)),
                };
                let header = if use_v2 {
                    v2(v2::Command::Proxy, (src, dst).into(), &tlv)
                } else {
                    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
                    format!("PROXY {family} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port())
                        .into_bytes()
                };
                let input = [header.as_slice(), &tail].concat();
                let (read, outcome) = drive(&input);
                prop_assert_eq!(read, header.len());
                prop_assert_eq!(outcome, Some(Ok(Some(src))));
            }
        }
    }
}
