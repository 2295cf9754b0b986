//! Property tests of the relay's client-to-upstream pump (`relay::relay`,
//! the real function on in-memory duplex pipes): a client byte stream cut
//! anywhere reaches the upstream frame for frame and byte for byte, pings
//! mid-message are answered to the client and never forwarded, and
//! messages are counted at their FIN frame (one per message, its payload
//! bytes); arbitrary bytes, cut anywhere, never panic it and it always
//! ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::Counter;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

use super::frame::{
    OP_BINARY, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, control_frame, parse_header, unmask,
};
use super::relay::relay;
use crate::config::SessionLimits;
use crate::metrics::SessionMetrics;

/// Pipe capacity: larger than any stream generated, so neither side waits
/// for the other to read.
const PIPE: usize = 1 << 20;

fn limits() -> SessionLimits {
    SessionLimits {
        max_message_size: 1 << 20,
        ping_interval: None,
        idle_timeout: None,
        send_timeout: Duration::from_secs(10),
        message_rate: None,
        byte_rate: None,
    }
}

/// A masked client data frame (shortest length form).
fn data_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let mut body = payload.to_vec();
    unmask(&mut body, Some(mask));
    out.extend_from_slice(&body);
    out
}

/// Every frame in `bytes` as (fin, opcode, unmasked payload); stops at an
/// incomplete tail.
fn frames(mut bytes: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(h) = parse_header(bytes) {
        let end = h.size + h.len as usize;
        if bytes.len() < end {
            break;
        }
        let mut payload = bytes[h.size..end].to_vec();
        unmask(&mut payload, h.mask);
        out.push((h.fin, h.opcode, payload));
        bytes = &bytes[end..];
    }
    out
}

/// What one relay run saw: bytes at the upstream, bytes back at the
/// client, and the messages and bytes counted in.
struct Run {
    upstream: Vec<u8>,
    client: Vec<u8>,
    messages: u64,
    bytes: u64,
}

/// Runs the relay with the client sending `input` in `cuts`-sized writes
/// then closing its write side; the upstream only reads (and hangs up at
/// the end). Bounded: paused time, a 60 s (virtual) limit.
fn run_relay(input: Vec<u8>, cuts: Vec<usize>) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let (client, client_far) = tokio::io::duplex(PIPE);
        let (upstream, upstream_far) = tokio::io::duplex(PIPE);
        let messages = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let counters = SessionMetrics::detached(
            Counter::from_arc(messages.clone()),
            Counter::from_arc(bytes.clone()),
        );
        let relayed = relay(
            client_far,
            upstream_far,
            Vec::new(),
            limits(),
            crate::stop::StopSignal::child_of(&CancellationToken::new()),
            &counters,
        );
        let client_side = async move {
            let (mut r, mut w) = tokio::io::split(client);
            let mut rest = &input[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = (*cut).clamp(1, rest.len());
                if w.write_all(&rest[..n]).await.is_err() {
                    break;
                }
                rest = &rest[n..];
                tokio::task::yield_now().await;
            }
            let _ = w.shutdown().await;
            let mut back = Vec::new();
            let _ = r.read_to_end(&mut back).await;
            back
        };
        let upstream_side = async move {
            let mut upstream: DuplexStream = upstream;
            let mut seen = Vec::new();
            let _ = upstream.read_to_end(&mut seen).await;
            drop(upstream);
            seen
        };
        let all = async { tokio::join!(relayed, client_side, upstream_side) };
        let (_, client, upstream) = tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("the relay ends");
        Run {
            upstream,
            client,
            messages: messages.load(Ordering::Relaxed),
            bytes: bytes.load(Ordering::Relaxed),
        }
    })
}

/// One client message: text or binary, its fragments, and a ping payload
/// sent before each fragment after the first (`None`: no ping there).
#[derive(Debug, Clone)]
struct Msg {
    text: bool,
    fragments: Vec<Vec<u8>>,
    pings: Vec<Option<Vec<u8>>>,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        any::<bool>(),
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 0..300),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
            ),
            1..4,
        ),
    )
        .prop_map(|(text, parts)| {
            let (fragments, pings) = parts.into_iter().unzip();
            Msg {
                text,
                fragments,
                pings,
            }
        })
}

/// The client's wire bytes for `msgs` (masks from `mask`).
fn encode(msgs: &[Msg], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        let last = m.fragments.len() - 1;
        for (i, fragment) in m.fragments.iter().enumerate() {
            if i > 0
                && let Some(ping) = &m.pings[i]
            {
                out.extend(control_frame(OP_PING, ping, Some(mask)));
            }
            let opcode = match (i, m.text) {
                (0, true) => OP_TEXT,
                (0, false) => OP_BINARY,
                _ => OP_CONTINUATION,
            };
            out.extend(data_frame(i == last, opcode, fragment, mask));
        }
    }
    out
}

proptest! {
    #![proptest_config(crate::props::config(64))]

    #[test]
    fn messages_cut_anywhere_reach_the_upstream_and_count_at_fin(
        msgs in prop::collection::vec(msg(), 0..6),
        mask in any::<[u8; 4]>(),
        cuts in prop::collection::vec(1usize..200, 1..8),
    ) {
        let input = encode(&msgs, mask);
        let run = run_relay(input, cuts);
        // Data frames reach the upstream as sent, in order; pings do not.
        let want: Vec<(bool, u8, Vec<u8>)> = msgs.iter().flat_map(|m| {
            let last = m.fragments.len() - 1;
            m.fragments.iter().enumerate().map(move |(i, f)| {
                let op = match (i, m.text) { (0, true) => OP_TEXT, (0, false) => OP_BINARY, _ => OP_CONTINUATION };
                (i == last, op, f.clone())
            })
        }).collect();
        let got: Vec<_> = frames(&run.upstream).into_iter().filter(|(_, op, _)| op & 0x08 == 0).collect();
        prop_assert_eq!(got, want);
        // Each ping is answered to the client, in order.
        let pings: Vec<Vec<u8>> = msgs.iter().flat_map(|m| m.pings.iter().skip(1).flatten().cloned()).collect();
        let pongs: Vec<Vec<u8>> = frames(&run.client).into_iter().filter(|(_, op, _)| *op == OP_PONG).map(|(_, _, p)| p).collect();
        prop_assert_eq!(pongs, pings);
        // Counted at FIN: one per message, its payload bytes.
        prop_assert_eq!(run.messages, msgs.len() as u64);
        let total: usize = msgs.iter().flat_map(|m| m.fragments.iter()).map(Vec::len).sum();
        prop_assert_eq!(run.bytes, total as u64);
    }

    #[test]
    fn arbitrary_bytes_cut_anywhere_never_panic_and_end(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(1usize..64, 1..8),
    ) {
        // A panic in the relay fails the run; `run_relay` also bounds it.
        let run = run_relay(input, cuts);
        prop_assert!(run.messages <= run.upstream.len() as u64);
    }
}
