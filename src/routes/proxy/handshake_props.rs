//! Property tests of the client half of the upstream handshake
//! (`handshake::handshake_upstream`), run against a scripted upstream over
//! an in-memory pipe: whatever it answers, in whatever pieces, the proxy
//! never panics; it accepts exactly the answers RFC 6455 section 4.1 lets a
//! client accept (101, `Upgrade: websocket`, `Connection: Upgrade`, the
//! right `Sec-WebSocket-Accept`, no extension and no subprotocol it did
//! not ask for), and no byte sent after the 101 is lost.

use hyper::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::handshake::{Upgraded, UpstreamRefusal, handshake_upstream};

/// What the scripted upstream puts in `Sec-WebSocket-Accept`.
#[derive(Debug, Clone)]
enum Accept {
    Right,
    /// The accept value of a key with one character changed.
    OtherKey(usize),
    /// The key itself, echoed (a classic broken server).
    EchoKey,
    Missing,
}

/// One scripted answer to the upgrade request.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    accept: Accept,
    upgrade: Option<&'static str>,
    connection: Option<&'static str>,
    protocol: Option<&'static str>,
    extensions: Option<&'static str>,
    /// Other headers, written between the ones above.
    extra: Vec<(String, String)>,
    /// Header names in upper case instead of as usual.
    shout: bool,
    /// Bytes after the head (frames sent at once).
    trailing: Vec<u8>,
}

/// Subprotocols the (proxied) client asks for.
const REQUESTED: &str = "chat, superchat";

impl Answer {
    fn bytes(&self, key: &str) -> Vec<u8> {
        let name = |n: &str| {
            if self.shout {
                n.to_ascii_uppercase()
            } else {
                n.to_string()
            }
        };
        let mut head = format!("HTTP/1.1 {} Whatever\r\n", self.status);
        let accept = match &self.accept {
            Accept::Right => Some(derive_accept_key(key.as_bytes())),
            Accept::OtherKey(at) => {
                let mut other = key.as_bytes().to_vec();
                let i = at % other.len().max(1);
                if let Some(b) = other.get_mut(i) {
                    *b = if *b == b'A' { b'B' } else { b'A' };
                }
                Some(derive_accept_key(&other))
            }
            Accept::EchoKey => Some(key.to_string()),
            Accept::Missing => None,
        };
        let mut lines: Vec<(String, String)> = Vec::new();
        if let Some(u) = self.upgrade {
            lines.push((name("Upgrade"), u.into()));
        }
        if let Some(c) = self.connection {
            lines.push((name("Connection"), c.into()));
        }
        if let Some(a) = accept {
            lines.push((name("Sec-WebSocket-Accept"), a));
        }
        if let Some(p) = self.protocol {
            lines.push((name("Sec-WebSocket-Protocol"), p.into()));
        }
        if let Some(e) = self.extensions {
            lines.push((name("Sec-WebSocket-Extensions"), e.into()));
        }
        for (i, extra) in self.extra.iter().enumerate() {
            lines.insert(i.min(lines.len()), extra.clone());
        }
        for (n, v) in lines {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.trailing);
        bytes
    }

    /// RFC 6455 section 4.1: what a client may accept.
    fn acceptable(&self) -> bool {
        self.status == 101
            && matches!(self.accept, Accept::Right)
            && self
                .upgrade
                .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
            && self.connection.is_some_and(|c| {
                c.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
            && self.extensions.is_none()
            && self
                .protocol
                .is_none_or(|p| REQUESTED.split(", ").any(|r| r == p))
    }
}

fn answer() -> impl Strategy<Value = Answer> {
    let status = prop_oneof![6 => Just(101u16), 1 => 100u16..=999];
    let accept = prop_oneof![
        6 => Just(Accept::Right),
        1 => any::<usize>().prop_map(Accept::OtherKey),
        1 => Just(Accept::EchoKey),
        1 => Just(Accept::Missing),
    ];
    let upgrade = prop_oneof![
        8 => Just(Some("websocket")),
        1 => Just(Some("WebSocket")),
        1 => Just(Some("h2c")),
        1 => Just(None),
    ];
    let connection = prop_oneof![
        8 => Just(Some("Upgrade")),
        1 => Just(Some("keep-alive, upgrade")),
        1 => Just(Some("keep-alive")),
        1 => Just(None),
    ];
    let protocol = prop_oneof![
        6 => Just(None),
        1 => Just(Some("chat")),
        1 => Just(Some("superchat")),
        1 => Just(Some("mqtt")),
    ];
    let extensions = prop_oneof![
        8 => Just(None),
        1 => Just(Some("permessage-deflate")),
    ];
    let extra = prop::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,20}"), 0..4).prop_map(|v| {
        v.into_iter()
            .map(|(n, value)| (n, value.trim().to_string()))
            .collect()
    });
    (
        status,
        accept,
        upgrade,
        connection,
        protocol,
        extensions,
        extra,
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(
                status,
                accept,
                upgrade,
                connection,
                protocol,
                extensions,
                extra,
                shout,
                trailing,
            )| {
                Answer {
                    status,
                    accept,
                    upgrade,
                    connection,
                    protocol,
                    extensions,
                    extra,
                    shout,
                    trailing,
                }
            },
        )
}

/// The scripted upstream: reads the request head, takes its key, writes
/// `answer(key)` in pieces cut at `cuts`, then closes.
async fn upstream(
    mut io: DuplexStream,
    answer: impl FnOnce(&str) -> Vec<u8>,
    cuts: Vec<prop::sample::Index>,
) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request).into_owned();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap_or("")
        .trim()
        .to_string();
    let bytes = answer(&key);
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    points.push(bytes.len());
    let mut from = 0;
    for to in points {
        if io.write_all(&bytes[from..to]).await.is_err() {
            return;
        }
        let _ = io.flush().await;
        tokio::task::yield_now().await;
        from = to;
    }
    let _ = io.shutdown().await;
}

/// The handshake's outcome, and for an accepted one every byte the proxy
/// got after the head (its buffer, then the rest of the stream).
enum Outcome {
    Accepted {
        protocol: Option<HeaderValue>,
        after_head: Vec<u8>,
    },
    Status(u16),
    Broken(String),
}

fn run(
    answer: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
    cuts: Vec<prop::sample::Index>,
    ask_protocols: bool,
) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(upstream(theirs, answer, cuts));
        let mut headers = HeaderMap::new();
        if ask_protocols {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(REQUESTED));
        }
        let outcome =
            match handshake_upstream(Box::new(ours), "upstream.test", "/ws", &headers).await {
                Ok(Upgraded {
                    mut io,
                    buffered,
                    protocol,
                }) => {
                    let mut after_head = buffered;
                    io.read_to_end(&mut after_head).await.unwrap();
                    Outcome::Accepted {
                        protocol,
                        after_head,
                    }
                }
                Err(UpstreamRefusal::Status(s)) => Outcome::Status(s.as_u16()),
                Err(UpstreamRefusal::Broken(why)) => Outcome::Broken(why),
            };
        server.abort();
        outcome
    })
}

proptest! {
    #![proptest_config(crate::props::config(256))]

    /// Catches: an answer accepted that RFC 6455 says to refuse (wrong or
    /// missing accept key, no `Upgrade: websocket`, an extension or a
    /// subprotocol not asked for), a good one refused, the subprotocol
    /// lost, a status misreported, or bytes after the 101 lost or
    /// duplicated whatever pieces the answer arrives in.
    #[test]
    fn answers_are_judged_as_rfc_6455_says(
        answer in answer(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let expected = answer.clone();
        let outcome = run(move |key| answer.bytes(key), cuts, true);
        match outcome {
            Outcome::Accepted { protocol, after_head } => {
                prop_assert!(expected.acceptable(), "accepted {expected:?}");
                prop_assert_eq!(protocol.as_ref().map(|p| p.as_bytes()), expected.protocol.map(str::as_bytes));
                prop_assert_eq!(after_head, expected.trailing);
            }
            Outcome::Status(s) => {
                prop_assert!(expected.status != 101, "101 reported as {s}");
                prop_assert_eq!(s, expected.status);
            }
            Outcome::Broken(why) => {
                prop_assert!(!expected.acceptable(), "refused ({why}): {expected:?}");
                prop_assert_eq!(expected.status, 101, "{}", why);
            }
        }
    }

    /// Catches: a panic, a hang or an acceptance on arbitrary bytes, also
    /// after a plausible status line.
    #[test]
    fn arbitrary_answers_are_refused(
        prefix in prop::sample::select(&["", "HTTP/1.1 101 Switching Protocols\r\n", "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"][..]),
        junk in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let outcome = run(
            move |_| {
                let mut bytes = prefix.as_bytes().to_vec();
                bytes.extend_from_slice(&junk);
                bytes
            },
            cuts,
            false,
        );
        prop_assert!(!matches!(outcome, Outcome::Accepted { .. }), "arbitrary bytes accepted");
    }
}

/// A head that never ends is refused once it passes 16 KiB.
#[test]
fn endless_head_is_refused() {
    let outcome = run(
        |_| {
            let mut bytes = b"HTTP/1.1 101 Switching Protocols\r\nX-Filler: ".to_vec();
            bytes.extend(std::iter::repeat_n(b'a', 40 * 1024));
            bytes
        },
        Vec::new(),
        false,
    );
    match outcome {
        Outcome::Broken(why) => assert!(why.contains("too large"), "{why}"),
        _ => panic!("an endless head was not refused as too large"),
    }
}

/// Found by `answers_are_judged_as_rfc_6455_says`: a 101 with the right
/// key but `Upgrade: h2c` (or no Upgrade, no `Connection: Upgrade`, an
/// extension or a subprotocol nobody asked for) was taken as a WebSocket.
#[test]
fn a_101_that_is_not_a_websocket_is_refused() {
    let good = Answer {
        status: 101,
        accept: Accept::Right,
        upgrade: Some("websocket"),
        connection: Some("Upgrade"),
        protocol: None,
        extensions: None,
        extra: Vec::new(),
        shout: false,
        trailing: b"\x81\x00".to_vec(),
    };
    let bad = [
        Answer {
            upgrade: Some("h2c"),
            ..good.clone()
        },
        Answer {
            upgrade: None,
            ..good.clone()
        },
        Answer {
            connection: Some("keep-alive"),
            ..good.clone()
        },
        Answer {
            extensions: Some("permessage-deflate"),
            ..good.clone()
        },
        Answer {
            protocol: Some("mqtt"),
            ..good.clone()
        },
    ];
    for answer in bad {
        let shown = format!("{answer:?}");
        match run(move |key| answer.bytes(key), Vec::new(), true) {
            Outcome::Broken(why) => assert!(why.contains("101"), "{why}"),
            _ => panic!("accepted {shown}"),
        }
    }
    match run(move |key| good.bytes(key), Vec::new(), true) {
        Outcome::Accepted { after_head, .. } => assert_eq!(after_head, b"\x81\x00"),
        _ => panic!("a good 101 was refused"),
    }
}
