//! `wssd bench echo`: CONNS connections each keep INFLIGHT messages in flight
//! for SECS seconds; round trips per second, MB/s, latency, checked payloads.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::checks::{check_count, check_secs};
use super::connector::{Connector, Ws, open_and_report};
use super::error::BenchError;
use super::limits::{HISTOGRAM_SHARDS, MAX_CONNS, MAX_INFLIGHT};
use super::report::{
    EchoReport, ErrorLog, Percentiles, Recorder, SharedHistogram, per_sec, print, print_with_json,
    round_to,
};
use super::sys;
use crate::cli::BenchEchoArgs;

/// Largest message the bench sends.
const MAX_SIZE: usize = 64 << 20;
/// Time allowed for the close handshake after the run.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(args: BenchEchoArgs) -> Result<(), BenchError> {
    let secs = check_secs("--secs", args.secs)?;
    check_count("--conns", args.conns, MAX_CONNS)?;
    check_count("--inflight", args.inflight, MAX_INFLIGHT)?;
    if args.size > MAX_SIZE {
        return Err(BenchError::InvalidArgs(format!(
            "--size {} is above the {} byte maximum",
            args.size, MAX_SIZE
        )));
    }
    let connector =
        Arc::new(Connector::new(&args.client, ws_config(args.size, args.inflight), true).await?);
    let kind = if args.binary { "binary" } else { "text" };
    print(&format!(
        "wssd bench echo: {} connections to {} ({}), {} B {kind} messages, {} in flight each{}, {} s\n",
        args.conns,
        connector.target().url,
        connector.addr(),
        args.size,
        args.inflight,
        if args.flush_each {
            ", a flush after each"
        } else {
            ""
        },
        args.secs,
    ));

    let (opened, tls) = open_and_report(&connector, args.conns).await?;
    let connected = opened.sockets.len();

    let payload = Arc::new(Payload::new(args.size, args.binary));
    let cpu_before = sys::own_cpu_secs();
    let deadline = Instant::now() + secs;
    let latencies = SharedHistogram::new(HISTOGRAM_SHARDS)?;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, ws) in opened.sockets.into_iter().enumerate() {
        let recorder = latencies.recorder(i);
        tasks.spawn(run_connection(
            ws,
            Arc::clone(&payload),
            Pace {
                inflight: args.inflight,
                flush_each: args.flush_each,
            },
            deadline,
            recorder,
        ));
    }

    let mut round_trips = 0u64;
    let mut mismatches = 0u64;
    let mut dropped = 0u64;
    let mut run_errors = ErrorLog::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcome) => {
                round_trips += outcome.round_trips;
                mismatches += outcome.mismatches;
                if outcome.mismatches > 0 {
                    run_errors.add_n(
                        "echoed payload differs from what was sent",
                        outcome.mismatches,
                    );
                }
                if let Some(failure) = outcome.failure {
                    dropped += 1;
                    run_errors.add(failure.to_string());
                }
            }
            Err(e) => {
                dropped += 1;
                run_errors.add(format!("connection task failed: {e}"));
            }
        }
    }

    let secs_f = secs.as_secs_f64();
    let client_cpu_cores = sys::cpu_cores_since(cpu_before, secs_f);
    let latency = Percentiles::from_histogram(&latencies.merged()?);
    let bytes = 2.0 * args.size as f64 * round_trips as f64;
    let report = EchoReport {
        mode: "echo",
        url: connector.target().url.clone(),
        tls,
        conns: args.conns,
        connected,
        size: args.size,
        binary: args.binary,
        inflight: args.inflight,
        flush_each: args.flush_each,
        secs: secs_f,
        round_trips,
        msgs_per_sec: round_to(per_sec(round_trips as f64, secs_f), 1),
        mb_per_sec: round_to(per_sec(bytes / 1e6, secs_f), 3),
        latency,
        errors: opened.errors.total() + mismatches + dropped,
        connect_errors: opened.errors.total(),
        mismatches,
        dropped_conns: dropped,
        client_cpu_cores,
    };
    let mut text = String::new();
    text.push_str(&format!(
        "  round trips   {} ({:.1} msg/s)\n",
        report.round_trips, report.msgs_per_sec
    ));
    text.push_str(&format!(
        "  throughput    {:.3} MB/s (payload bytes, both directions)\n",
        report.mb_per_sec
    ));
    text.push_str(&format!("  round trip    {}\n", latency.human()));
    text.push_str(
        "                (closed loop: a connection sends its next message when an echo returns,\n\
         \x20                so these are round-trip times at full load, not latency at a fixed rate)\n",
    );
    text.push_str(&format!(
        "  errors        {} (connect {}, mismatched echoes {}, connections lost {})\n",
        report.errors, report.connect_errors, report.mismatches, report.dropped_conns
    ));
    text.push_str(&run_errors.human());
    print_with_json(text, client_cpu_cores, &report)
}

/// Buffers sized to the message, limits just large enough for the echo.
fn ws_config(size: usize, inflight: usize) -> WebSocketConfig {
    let frame = size.saturating_add(14);
    let buffer = frame
        .saturating_mul(inflight.min(8))
        .clamp(4 * 1024, 128 * 1024);
    let limit = size.max(64 * 1024);
    WebSocketConfig::default()
        .read_buffer_size(buffer)
        .write_buffer_size(buffer)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

/// How a connection sends: messages outstanding, and a flush after each
/// one (one TLS record each) or once per burst.
#[derive(Debug, Clone, Copy)]
struct Pace {
    inflight: usize,
    flush_each: bool,
}

/// Why one connection stopped before the deadline.
#[derive(Debug, thiserror::Error)]
enum ConnectionFailure {
    #[error("send failed: {0}")]
    Send(tungstenite::Error),
    /// The error's text (the stream still holds the error itself).
    #[error("receive failed: {0}")]
    Receive(String),
    #[error("server closed the connection")]
    Closed,
    #[error("server closed the connection: {code} {reason}")]
    ClosedWith { code: CloseCode, reason: Utf8Bytes },
}

struct Outcome {
    round_trips: u64,
    mismatches: u64,
    /// Why the connection stopped before the deadline.
    failure: Option<ConnectionFailure>,
}

/// Runs one connection until `deadline`: a writer keeps `inflight` messages
/// outstanding, a reader checks each echo and returns its credit. Both run in
/// this one task, so no echo waits on a cross-thread wake-up.
async fn run_connection(
    ws: Ws,
    payload: Arc<Payload>,
    Pace {
        inflight,
        flush_each,
    }: Pace,
    deadline: Instant,
    mut latencies: Recorder,
) -> Outcome {
    let mut outcome = Outcome {
        round_trips: 0,
        mismatches: 0,
        failure: None,
    };
    let (mut sink, mut stream) = ws.split();
    let credits = Semaphore::new(inflight);
    // Send times, in order; the echo of message n is the n-th message back.
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(u64, Instant)>();

    let result = {
        let writer = async {
            let mut seq = 0u64;
            loop {
                let permit = match credits.acquire().await {
                    Ok(permit) => permit,
                    // The reader stopped.
                    Err(_) => return Ok(()),
                };
                permit.forget();
                // Feed every message we have credit for, then flush once.
                loop {
                    if sent_tx.send((seq, Instant::now())).is_err() {
                        return Ok(());
                    }
                    let message = payload.message(seq);
                    let sent = if flush_each {
                        sink.send(message).await
                    } else {
                        sink.feed(message).await
                    };
                    if let Err(e) = sent {
                        return Err(ConnectionFailure::Send(e));
                    }
                    seq += 1;
                    match credits.try_acquire() {
                        Ok(permit) => permit.forget(),
                        Err(_) => break,
                    }
                }
                if let Err(e) = sink.flush().await {
                    return Err(ConnectionFailure::Send(e));
                }
            }
        };
        let reader = async {
            let result = loop {
                let next = stream.next().await;
                let now = Instant::now();
                if now > deadline {
                    break Ok(());
                }
                let (data, binary): (&[u8], bool) = match &next {
                    None => break Err(ConnectionFailure::Closed),
                    Some(Err(e)) => break Err(ConnectionFailure::Receive(e.to_string())),
                    Some(Ok(Message::Text(text))) => (text.as_bytes(), false),
                    Some(Ok(Message::Binary(bytes))) => (bytes, true),
                    Some(Ok(Message::Close(frame))) => {
                        break Err(match frame {
                            Some(f) => ConnectionFailure::ClosedWith {
                                code: f.code,
                                reason: f.reason.clone(),
                            },
                            None => ConnectionFailure::Closed,
                        });
                    }
                    Some(Ok(_)) => continue,
                };
                match sent_rx.try_recv() {
                    Ok((seq, sent_at)) => {
                        if payload.matches(seq, data, binary) {
                            outcome.round_trips += 1;
                            latencies.record(now - sent_at);
                        } else {
                            outcome.mismatches += 1;
                        }
                        credits.add_permits(1);
                    }
                    // An echo of nothing we sent.
                    Err(_) => outcome.mismatches += 1,
                }
            };
            credits.close();
            result
        };
        let mut writer = pin!(writer);
        let mut reader = pin!(reader);
        let work = async {
            tokio::select! {
                w = &mut writer => match w {
                    Ok(()) => reader.await,
                    Err(e) => Err(e),
                },
                r = &mut reader => match r {
                    Ok(()) => writer.await,
                    Err(e) => Err(e),
                },
            }
        };
        // One timer for the whole run rather than one per send and receive.
        tokio::select! {
            result = work => result,
            () = sleep_until(deadline) => Ok(()),
        }
    };
    outcome.failure = result.err();

    // Close politely; echoes still in flight are read and dropped.
    let _ = timeout(CLOSE_TIMEOUT, async {
        let _ = sink.close().await;
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    outcome
}

/// Message bodies: a fixed ASCII pattern with the sequence number in hex at
/// the front, so lost, reordered or corrupted echoes are all detected.
struct Payload {
    base: String,
    binary: bool,
}

/// Bytes at the front of each message that carry the sequence number.
const SEQ_DIGITS: usize = 16;

impl Payload {
    fn new(size: usize, binary: bool) -> Payload {
        let base = (0..size)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        Payload { base, binary }
    }

    fn stamp(&self, seq: u64) -> [u8; SEQ_DIGITS] {
        let mut out = [0u8; SEQ_DIGITS];
        for (i, byte) in out.iter_mut().enumerate() {
            let nibble = (seq >> (4 * (SEQ_DIGITS - 1 - i))) & 0xf;
            *byte = b"0123456789abcdef"[nibble as usize];
        }
        out
    }

    fn message(&self, seq: u64) -> Message {
        let stamp = self.stamp(seq);
        let n = SEQ_DIGITS.min(self.base.len());
        let mut body = String::with_capacity(self.base.len());
        for &b in &stamp[..n] {
            body.push(char::from(b));
        }
        body.push_str(self.base.get(n..).unwrap_or_default());
        if self.binary {
            Message::Binary(Bytes::from(body.into_bytes()))
        } else {
            Message::text(body)
        }
    }

    fn matches(&self, seq: u64, data: &[u8], binary: bool) -> bool {
        let base = self.base.as_bytes();
        if binary != self.binary || data.len() != base.len() {
            return false;
        }
        let n = SEQ_DIGITS.min(base.len());
        data[..n] == self.stamp(seq)[..n] && data[n..] == base[n..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(m: &Message) -> (Vec<u8>, bool) {
        match m {
            Message::Text(t) => (t.as_bytes().to_vec(), false),
            Message::Binary(b) => (b.to_vec(), true),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn payload_round_trip_and_mismatch() {
        for (size, binary) in [(0, false), (5, true), (64, false), (16 * 1024, true)] {
            let p = Payload::new(size, binary);
            let (data, is_binary) = bytes_of(&p.message(0x1234));
            assert_eq!(data.len(), size);
            assert!(p.matches(0x1234, &data, is_binary));
            assert!(!p.matches(0x1234, &data, !is_binary));
            if size > 0 {
                let mut corrupt = data.clone();
                corrupt[size - 1] ^= 1;
                assert!(!p.matches(0x1234, &corrupt, is_binary));
                assert!(!p.matches(0x1234, &data[1..], is_binary));
            }
            if size >= SEQ_DIGITS {
                assert!(!p.matches(0x1235, &data, is_binary));
            }
        }
        let p = Payload::new(20, false);
        let (data, _) = bytes_of(&p.message(255));
        assert_eq!(&data, b"00000000000000ffqrst");
    }

    #[test]
    fn ws_config_fits_the_message() {
        let small = ws_config(64, 1);
        assert_eq!(small.read_buffer_size, 4 * 1024);
        assert_eq!(small.max_message_size, Some(64 * 1024));
        let big = ws_config(1 << 20, 4);
        assert_eq!(big.read_buffer_size, 128 * 1024);
        assert_eq!(big.max_message_size, Some(1 << 20));
        assert_eq!(big.max_frame_size, Some(1 << 20));
    }
}
