//! `wssd bench fanout`: SUBSCRIBERS connections on a broadcast route, one
//! publisher (on the same URL, or on another instance sharing the broker)
//! sending MESSAGES stamped binary messages at RATE per second; delivery
//! latency percentiles, deliveries per second, losses and server closes.
//!
//! Each message carries its sequence number and its send time in nanoseconds
//! since an `Instant` taken by this process, and the subscribers read the
//! same clock, so latency = receive time - send time needs no clock sync.
//! The broadcast protocol has no subscribe acknowledgement: before measuring,
//! the publisher sends warm-up messages (flagged in the sequence number)
//! until every subscriber has received one.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::connector::{Connector, Ws, tls_description};
use super::report::{
    ErrorLog, Percentiles, Recorder, SharedHistogram, client_cpu_line, json_line, per_sec, print,
    round_to,
};
use super::{BenchError, HISTOGRAM_SHARDS, MAX_CONNS, check_count, check_secs, note, sys};
use crate::cli::{BenchClientArgs, BenchFanoutArgs};

/// Bytes at the front of every message: sequence number, send time (both u64 LE).
const HEADER: usize = 16;
/// Set in the sequence number of warm-up messages.
const WARMUP_FLAG: u64 = 1 << 63;
/// Largest message the bench sends.
const MAX_SIZE: usize = 16 << 20;
/// Most messages one run may send.
const MAX_MESSAGES: u64 = 1 << 40;
/// Highest --rate accepted.
const MAX_RATE: f64 = 10_000_000.0;
/// Most handshakes in progress at once (--connect-concurrency).
const MAX_CONCURRENCY: usize = 4096;
/// Largest --window.
const MAX_WINDOW: u64 = 1 << 20;
/// File descriptors kept free for everything that is not a bench connection.
const SPARE_FDS: u64 = 64;
/// Time between warm-up messages while some subscriber has not had one.
const WARMUP_INTERVAL: Duration = Duration::from_millis(200);
/// Pause after the warm-up so its last messages are out of the way.
const SETTLE: Duration = Duration::from_millis(200);
/// How often progress is checked while waiting.
const POLL: Duration = Duration::from_millis(5);
/// Time allowed for all close handshakes at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// With --rate 0: messages written between flushes at most.
const FLUSH_BATCH: u64 = 32;

// Life of one subscriber connection.
const CONNECTING: u8 = 0;
const CONNECTED: u8 = 1;
const WARMED: u8 = 2;
const ENDED: u8 = 3;
const FAILED: u8 = 4;

/// Command-line values, checked.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    subscribers: usize,
    messages: u64,
    /// Messages per second; 0 = unpaced, bounded by `window`.
    rate: f64,
    size: usize,
    concurrency: usize,
    window: u64,
    warmup_timeout: Duration,
    drain_timeout: Duration,
}

fn plan(args: &BenchFanoutArgs) -> Result<Plan, BenchError> {
    let subscribers = check_count("--subscribers", args.subscribers, MAX_CONNS)?;
    if args.messages == 0 || args.messages > MAX_MESSAGES {
        return Err(BenchError::InvalidArgs(format!(
            "--messages {} must be between 1 and {MAX_MESSAGES}",
            args.messages
        )));
    }
    if !(args.rate.is_finite() && args.rate >= 0.0 && args.rate <= MAX_RATE) {
        return Err(BenchError::InvalidArgs(format!(
            "--rate {} must be a number of messages per second from 0 (unpaced) to {MAX_RATE}",
            args.rate
        )));
    }
    if args.size < HEADER || args.size > MAX_SIZE {
        return Err(BenchError::InvalidArgs(format!(
            "--size {} must be between {HEADER} (sequence number and send time) and {MAX_SIZE} bytes",
            args.size
        )));
    }
    let concurrency = check_count(
        "--connect-concurrency",
        args.connect_concurrency,
        MAX_CONCURRENCY,
    )?;
    if args.window == 0 || args.window > MAX_WINDOW {
        return Err(BenchError::InvalidArgs(format!(
            "--window {} must be between 1 and {MAX_WINDOW}",
            args.window
        )));
    }
    Ok(Plan {
        subscribers,
        messages: args.messages,
        rate: args.rate,
        size: args.size,
        concurrency,
        window: args.window,
        warmup_timeout: check_secs("--warmup-timeout", args.warmup_timeout)?,
        drain_timeout: check_secs("--drain-timeout", args.drain_timeout)?,
    })
}

/// Raises the open-file limit and checks that `subscribers` (plus the
/// publisher) fit under it.
fn check_fd_limit(subscribers: usize) -> Result<(), BenchError> {
    match sys::raise_nofile_limit() {
        Ok(limit) => fits_fd_limit(subscribers, limit),
        Err(e) => {
            note(&format!("could not raise the open-file limit: {e}"));
            Ok(())
        }
    }
}

fn fits_fd_limit(subscribers: usize, limit: u64) -> Result<(), BenchError> {
    let wanted = subscribers.saturating_add(1);
    let needed = (wanted as u64).saturating_add(SPARE_FDS);
    if needed > limit {
        return Err(BenchError::FdLimit {
            wanted,
            needed,
            limit,
        });
    }
    Ok(())
}

/// One message: sequence number, send time (ns since the bench epoch), padding.
fn encode(seq: u64, sent_ns: u64, size: usize) -> Message {
    let mut body = BytesMut::with_capacity(size.max(HEADER));
    body.put_u64_le(seq);
    body.put_u64_le(sent_ns);
    let pad = size.saturating_sub(HEADER);
    body.extend((0..pad).map(|i| b'a' + (i % 26) as u8));
    Message::Binary(body.freeze())
}

/// (sequence number, send time) of a message, or None when it is too short.
fn decode(data: &[u8]) -> Option<(u64, u64)> {
    let seq = data.get(0..8)?.try_into().ok().map(u64::from_le_bytes)?;
    let sent = data.get(8..16)?.try_into().ok().map(u64::from_le_bytes)?;
    Some((seq, sent))
}

/// State shared by the subscriber tasks and the publisher.
struct Shared {
    epoch: std::time::Instant,
    /// Per subscriber: CONNECTING, CONNECTED, WARMED, ENDED or FAILED.
    state: Vec<AtomicU8>,
    /// Per subscriber: one past the highest measured sequence number received.
    progress: Vec<AtomicU64>,
    /// Measured deliveries, all subscribers.
    delivered: AtomicU64,
    /// Receive time of the latest measured delivery (ns since the epoch).
    last_delivery_ns: AtomicU64,
    connect_errors: Mutex<ConnectErrors>,
}

#[derive(Default)]
struct ConnectErrors {
    log: ErrorLog,
    first: Option<BenchError>,
}

/// How many subscribers are in each state.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    connecting: usize,
    connected: usize,
    warmed: usize,
    ended: usize,
    failed: usize,
}

impl Shared {
    fn new(subscribers: usize) -> Shared {
        Shared {
            epoch: std::time::Instant::now(),
            state: (0..subscribers)
                .map(|_| AtomicU8::new(CONNECTING))
                .collect(),
            progress: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            delivered: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            connect_errors: Mutex::new(ConnectErrors::default()),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn set_state(&self, index: usize, state: u8) {
        if let Some(s) = self.state.get(index) {
            s.store(state, Ordering::Release);
        }
    }

    fn state_of(&self, index: usize) -> u8 {
        self.state
            .get(index)
            .map_or(ENDED, |s| s.load(Ordering::Acquire))
    }

    fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.state {
            match s.load(Ordering::Acquire) {
                CONNECTING => c.connecting += 1,
                CONNECTED => c.connected += 1,
                WARMED => c.warmed += 1,
                ENDED => c.ended += 1,
                _ => c.failed += 1,
            }
        }
        c
    }

    fn connect_failed(&self, index: usize, error: BenchError) {
        let mut errors = self
            .connect_errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        errors.log.add(error.to_string());
        errors.first.get_or_insert(error);
        drop(errors);
        self.set_state(index, FAILED);
    }

    /// The lowest progress among the `measured` subscribers still open;
    /// None when none is open.
    fn min_progress(&self, measured: &[usize]) -> Option<u64> {
        measured
            .iter()
            .filter(|&&i| self.state_of(i) != ENDED)
            .filter_map(|&i| self.progress.get(i))
            .map(|p| p.load(Ordering::Acquire))
            .min()
    }
}

/// How the server ended a connection before the bench did.
#[derive(Debug, Clone, PartialEq)]
struct Ended {
    /// The close code, None when the connection ended without a close frame.
    code: Option<u16>,
    detail: String,
}

impl Ended {
    fn key(&self) -> String {
        self.code
            .map_or_else(|| "none".to_owned(), |code| code.to_string())
    }

    fn from_message(
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Ended {
        match message {
            Some(Ok(Message::Close(Some(frame)))) => {
                let code = u16::from(frame.code);
                Ended {
                    code: Some(code),
                    detail: if frame.reason.is_empty() {
                        format!("closed with {code}")
                    } else {
                        format!("closed with {code} ({})", frame.reason)
                    },
                }
            }
            Some(Ok(Message::Close(None))) => Ended {
                code: None,
                detail: "closed without a code".to_owned(),
            },
            Some(Err(e)) => Ended {
                code: None,
                detail: format!("connection failed: {e}"),
            },
            _ => Ended {
                code: None,
                detail: "connection ended without a close frame".to_owned(),
            },
        }
    }
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct SubOutcome {
    /// Measured messages that arrived with a sequence number not above an earlier one.
    out_of_order: u64,
    /// Text messages, or binary ones of the wrong size.
    unexpected: u64,
    ended: Option<Ended>,
}

/// Where progress lines go: stdout, or stderr when stdout is for JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Output {
    Stdout,
    Stderr,
    #[cfg(test)]
    Quiet,
}

impl Output {
    fn say(self, text: &str) {
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

pub async fn run(args: BenchFanoutArgs) -> Result<(), BenchError> {
    let output = if args.json {
        Output::Stderr
    } else {
        Output::Stdout
    };
    let report = measure(&args, output).await?;
    if args.json {
        let mut line = json_line(&report)?;
        line.push('\n');
        print(&line);
    } else {
        print(&report.human());
    }
    Ok(())
}

/// Subscribers only read: small buffers, limits just large enough for the messages.
fn subscriber_ws_config(size: usize) -> WebSocketConfig {
    let limit = size.max(64 * 1024);
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

fn publisher_ws_config(size: usize) -> WebSocketConfig {
    let buffer = size
        .saturating_add(14)
        .saturating_mul(8)
        .clamp(4 * 1024, 128 * 1024);
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(buffer)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

async fn measure(args: &BenchFanoutArgs, out: Output) -> Result<FanoutReport, BenchError> {
    let plan = plan(args)?;
    check_fd_limit(plan.subscribers)?;
    let connector =
        Arc::new(Connector::new(&args.client, subscriber_ws_config(plan.size), true).await?);
    let publish_client = BenchClientArgs {
        url: args
            .publish_url
            .clone()
            .unwrap_or_else(|| args.client.url.clone()),
        ..args.client.clone()
    };
    let publish_connector =
        Connector::new(&publish_client, publisher_ws_config(plan.size), true).await?;
    let rate_text = if plan.rate > 0.0 {
        format!("{} msg/s", plan.rate)
    } else {
        format!("unpaced (at most {} in flight)", plan.window)
    };
    out.say(&format!(
        "wssd bench fanout: {} subscribers on {} ({}), publisher on {} ({}); {} messages of {} B (binary), {rate_text}\n",
        plan.subscribers,
        connector.target().url,
        connector.addr(),
        publish_connector.target().url,
        publish_connector.addr(),
        plan.messages,
        plan.size,
    ));

    // Subscribers: each task connects (bounded concurrency) and reads at once,
    // so pings are answered while the others are still connecting.
    let shared = Arc::new(Shared::new(plan.subscribers));
    let histogram = SharedHistogram::new(HISTOGRAM_SHARDS)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(plan.concurrency));
    let mut tasks = JoinSet::new();
    let connect_started = Instant::now();
    for index in 0..plan.subscribers {
        tasks.spawn(subscriber(
            index,
            Arc::clone(&connector),
            Arc::clone(&permits),
            Arc::clone(&shared),
            stop_rx.clone(),
            histogram.recorder(index),
            plan.size,
        ));
    }
    while shared.counts().connecting > 0 {
        sleep(POLL).await;
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let counts = shared.counts();
    let connected = plan.subscribers - counts.failed;
    let (connect_log, first_error) = {
        let mut errors = shared
            .connect_errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (errors.log.clone(), errors.first.take())
    };
    out.say(&format!(
        "  connected     {connected}/{} subscribers in {connect_secs:.2} s ({} handshakes at a time)\n",
        plan.subscribers, plan.concurrency
    ));
    out.say(&connect_log.human());
    if connected == 0 {
        finish(stop_tx, tasks).await;
        return Err(BenchError::no_connections(plan.subscribers, first_error));
    }

    let publisher = match publish_connector.connect().await {
        Ok(ws) => ws,
        Err(e) => {
            finish(stop_tx, tasks).await;
            return Err(e);
        }
    };
    let tls = tls_description(&publisher);
    if let Some(tls) = &tls {
        out.say(&format!("  tls           {tls}\n"));
    }
    let publish_url = publish_connector.target().url.clone();
    let publish_error = |detail: String| BenchError::Publish {
        url: publish_url.clone(),
        detail,
    };
    let (mut sink, stream) = publisher.split();
    // Reads the publisher's socket so pings get their pongs; ends when it closes.
    let mut publisher_reader = tokio::spawn(read_publisher(stream));

    // Warm-up: until every open subscriber has received one message.
    let warm_started = Instant::now();
    let warm_deadline = warm_started + plan.warmup_timeout;
    let mut warmups = 0u64;
    'warm: loop {
        let message = encode(WARMUP_FLAG | warmups, shared.now_ns(), plan.size);
        if let Err(e) = sink.send(message).await {
            finish(stop_tx, tasks).await;
            return Err(publish_error(format!("warm-up send failed: {e}")));
        }
        warmups += 1;
        let next_send = Instant::now() + WARMUP_INTERVAL;
        loop {
            let c = shared.counts();
            if c.connected == 0 && c.warmed > 0 {
                break 'warm;
            }
            if c.connected == 0 && c.warmed == 0 {
                let outcomes = finish(stop_tx, tasks).await;
                return Err(BenchError::SubscribersGone {
                    closes: closes_text(&outcomes),
                });
            }
            let now = Instant::now();
            if now >= warm_deadline {
                finish(stop_tx, tasks).await;
                return Err(BenchError::WarmUp {
                    missing: c.connected,
                    live: c.connected + c.warmed,
                    sent: warmups,
                    url: connector.target().url.clone(),
                    publish_url: publish_url.clone(),
                    secs: plan.warmup_timeout.as_secs_f64(),
                });
            }
            if now >= next_send {
                continue 'warm;
            }
            sleep(POLL).await;
        }
    }
    let warmup_secs = warm_started.elapsed().as_secs_f64();
    sleep(SETTLE).await;
    let measured: Vec<usize> = (0..plan.subscribers)
        .filter(|&i| shared.state_of(i) == WARMED)
        .collect();
    out.say(&format!(
        "  warm-up       {} subscribers received a warm-up message after {warmup_secs:.2} s ({warmups} sent)\n",
        measured.len()
    ));
    if measured.is_empty() {
        let outcomes = finish(stop_tx, tasks).await;
        return Err(BenchError::SubscribersGone {
            closes: closes_text(&outcomes),
        });
    }

    // Measurement.
    let cpu_before = sys::own_cpu_secs();
    let start = Instant::now();
    let start_ns = shared.now_ns();
    let mut sent = 0u64;
    let mut max_lag = Duration::ZERO;
    let mut publisher_failure: Option<String> = None;
    if plan.rate > 0.0 {
        while sent < plan.messages {
            let due = start + Duration::from_secs_f64(sent as f64 / plan.rate);
            let now = Instant::now();
            if now < due {
                sleep_until(due).await;
            } else {
                max_lag = max_lag.max(now - due);
            }
            if let Err(e) = sink.send(encode(sent, shared.now_ns(), plan.size)).await {
                publisher_failure = Some(format!("send failed after {sent} messages: {e}"));
                break;
            }
            sent += 1;
        }
    } else {
        let mut min_progress = 0u64;
        'send: while sent < plan.messages {
            if sent.saturating_sub(min_progress) >= plan.window {
                if let Err(e) = sink.flush().await {
                    publisher_failure = Some(format!("send failed after {sent} messages: {e}"));
                    break;
                }
                let blocked = Instant::now();
                loop {
                    min_progress = shared.min_progress(&measured).unwrap_or(sent);
                    if sent.saturating_sub(min_progress) < plan.window {
                        break;
                    }
                    if blocked.elapsed() >= plan.drain_timeout {
                        publisher_failure = Some(format!(
                            "stopped after {sent} messages: some subscriber received nothing for {} s",
                            plan.drain_timeout.as_secs_f64()
                        ));
                        break 'send;
                    }
                    sleep(Duration::from_millis(1)).await;
                }
            }
            if let Err(e) = sink.feed(encode(sent, shared.now_ns(), plan.size)).await {
                publisher_failure = Some(format!("send failed after {sent} messages: {e}"));
                break;
            }
            sent += 1;
            if sent.is_multiple_of(FLUSH_BATCH)
                && let Err(e) = sink.flush().await
            {
                publisher_failure = Some(format!("send failed after {sent} messages: {e}"));
                break;
            }
        }
        if publisher_failure.is_none()
            && let Err(e) = sink.flush().await
        {
            publisher_failure = Some(format!("flush failed after {sent} messages: {e}"));
        }
    }
    let send_secs = start.elapsed().as_secs_f64();
    if let Some(failure) = &publisher_failure {
        note(&format!("publisher: {failure}"));
    }

    // Stragglers: until every open measured subscriber has the last message.
    let drain_started = Instant::now();
    let drain_deadline = drain_started + plan.drain_timeout;
    let drain_timed_out = loop {
        if shared.min_progress(&measured).is_none_or(|p| p >= sent) {
            break false;
        }
        if Instant::now() >= drain_deadline {
            break true;
        }
        sleep(POLL).await;
    };
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let received = shared.delivered.load(Ordering::Acquire);
    let last_delivery_ns = shared.last_delivery_ns.load(Ordering::Acquire);
    let client_cpu_cores = sys::cpu_cores_since(cpu_before, start.elapsed().as_secs_f64());
    let client_rss_kib = sys::own_rss_kib();

    // The publisher: was it closed by the server? Then close it ourselves.
    let publisher_ended = if publisher_reader.is_finished() {
        (&mut publisher_reader).await.ok()
    } else {
        None
    };
    let _ = timeout(Duration::from_secs(2), sink.close()).await;
    publisher_reader.abort();
    if let (None, Some(ended)) = (&publisher_failure, &publisher_ended) {
        publisher_failure = Some(format!("the server ended the connection: {}", ended.detail));
    }

    let outcomes = finish(stop_tx, tasks).await;
    let latency = Percentiles::from_histogram(&histogram.merged()?);
    let mut closes = BTreeMap::new();
    let mut close_details = ErrorLog::default();
    let mut out_of_order = 0;
    let mut unexpected = 0;
    for outcome in &outcomes {
        out_of_order += outcome.out_of_order;
        unexpected += outcome.unexpected;
        if let Some(ended) = &outcome.ended {
            *closes.entry(ended.key()).or_insert(0u64) += 1;
            close_details.add(ended.detail.clone());
        }
    }
    let expected = sent.saturating_mul(measured.len() as u64);
    let window_secs = last_delivery_ns.saturating_sub(start_ns) as f64 / 1e9;
    Ok(FanoutReport {
        mode: "fanout",
        url: connector.target().url.clone(),
        publish_url,
        tls,
        subscribers: plan.subscribers,
        connected,
        connect_errors: connect_log.total(),
        connect_secs: round_to(connect_secs, 3),
        warmup_secs: round_to(warmup_secs, 3),
        warmup_messages: warmups,
        measured_subscribers: measured.len(),
        messages: plan.messages,
        sent,
        size: plan.size,
        rate: plan.rate,
        window: (plan.rate == 0.0).then_some(plan.window),
        send_secs: round_to(send_secs, 3),
        send_rate: round_to(per_sec(sent as f64, send_secs), 1),
        max_send_lag_ms: round_to(max_lag.as_secs_f64() * 1e3, 3),
        expected,
        received,
        lost: expected.saturating_sub(received),
        out_of_order,
        unexpected,
        drain_secs: round_to(drain_secs, 3),
        drain_timed_out,
        window_secs: round_to(window_secs, 3),
        deliveries_per_sec: round_to(per_sec(received as f64, window_secs), 1),
        latency: LatencyMs::from(latency),
        closed: closes.values().sum(),
        closes,
        close_details: close_details.human(),
        publisher_error: publisher_failure,
        client_cpu_cores,
        client_rss_kib,
    })
}

/// One subscriber: connect, then read until told to stop or closed by the server.
async fn subscriber(
    index: usize,
    connector: Arc<Connector>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut recorder: Recorder,
    size: usize,
) -> SubOutcome {
    let mut outcome = SubOutcome::default();
    let connect = async {
        let _permit = permits.acquire().await;
        connector.connect().await
    };
    let connected = tokio::select! {
        result = connect => result,
        _ = stop.changed() => {
            shared.set_state(index, FAILED);
            return outcome;
        }
    };
    let mut ws: Ws = match connected {
        Ok(ws) => ws,
        Err(e) => {
            shared.connect_failed(index, e);
            return outcome;
        }
    };
    shared.set_state(index, CONNECTED);
    let mut next = 0u64;
    let mut warmed = false;
    loop {
        let message = tokio::select! {
            biased;
            _ = stop.changed() => break,
            message = ws.next() => message,
        };
        match message {
            Some(Ok(Message::Binary(data))) => {
                let now = shared.now_ns();
                match decode(&data) {
                    Some((seq, _)) if seq & WARMUP_FLAG != 0 => {
                        if !warmed {
                            warmed = true;
                            shared.set_state(index, WARMED);
                        }
                    }
                    Some((seq, sent_ns)) if data.len() == size => {
                        recorder.record(Duration::from_nanos(now.saturating_sub(sent_ns)));
                        if seq < next {
                            outcome.out_of_order += 1;
                        } else {
                            next = seq + 1;
                            if let Some(p) = shared.progress.get(index) {
                                p.store(next, Ordering::Release);
                            }
                        }
                        shared.delivered.fetch_add(1, Ordering::AcqRel);
                        shared.last_delivery_ns.fetch_max(now, Ordering::AcqRel);
                    }
                    _ => outcome.unexpected += 1,
                }
            }
            Some(Ok(Message::Text(_))) => outcome.unexpected += 1,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            other => {
                outcome.ended = Some(Ended::from_message(other));
                break;
            }
        }
    }
    shared.set_state(index, ENDED);
    recorder.flush();
    if outcome.ended.is_some() {
        // Let tungstenite answer the server's close frame.
        let _ = timeout(Duration::from_secs(1), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    } else {
        let _ = timeout(CLOSE_TIMEOUT, async {
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
    outcome
}

/// Reads the publisher's socket (answering pings) until it ends.
async fn read_publisher(mut stream: SplitStream<Ws>) -> Ended {
    loop {
        let item = stream.next().await;
        match &item {
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Ended::from_message(item),
            Some(Ok(_)) => {}
        }
    }
}

/// Tells every subscriber to stop, waits for their close handshakes (bounded)
/// and returns what they saw.
async fn finish(stop: watch::Sender<bool>, mut tasks: JoinSet<SubOutcome>) -> Vec<SubOutcome> {
    let _ = stop.send(true);
    let mut outcomes = Vec::with_capacity(tasks.len());
    let joined = timeout(CLOSE_TIMEOUT + Duration::from_secs(2), async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(outcome) = joined {
                outcomes.push(outcome);
            }
        }
    })
    .await;
    if joined.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    outcomes
}

/// `3 x closed with 1008 (too slow: fell behind)` for an error message.
fn closes_text(outcomes: &[SubOutcome]) -> String {
    let mut log = ErrorLog::default();
    for ended in outcomes.iter().filter_map(|o| o.ended.as_ref()) {
        log.add(ended.detail.clone());
    }
    let text = log.human();
    let text: Vec<&str> = text.lines().map(str::trim).collect();
    if text.is_empty() {
        "no close frame or error was seen".to_owned()
    } else {
        text.join("; ")
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct LatencyMs {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl From<Percentiles> for LatencyMs {
    fn from(p: Percentiles) -> LatencyMs {
        let ms = |us: f64| round_to(us / 1e3, 3);
        LatencyMs {
            p50_ms: ms(p.p50_us as f64),
            p90_ms: ms(p.p90_us as f64),
            p99_ms: ms(p.p99_us as f64),
            p999_ms: ms(p.p999_us as f64),
            max_ms: ms(p.max_us as f64),
            mean_ms: ms(p.mean_us),
        }
    }
}

/// The JSON object of `wssd bench fanout --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FanoutReport {
    pub mode: &'static str,
    pub url: String,
    pub publish_url: String,
    /// Negotiated TLS version, cipher suite and key exchange (publisher); null for ws://.
    pub tls: Option<String>,
    pub subscribers: usize,
    pub connected: usize,
    pub connect_errors: u64,
    pub connect_secs: f64,
    pub warmup_secs: f64,
    pub warmup_messages: u64,
    /// Subscribers that had received a warm-up message when measuring began.
    pub measured_subscribers: usize,
    pub messages: u64,
    pub sent: u64,
    pub size: usize,
    /// Requested messages per second; 0 = unpaced (bounded by `window`).
    pub rate: f64,
    pub window: Option<u64>,
    pub send_secs: f64,
    /// Achieved messages per second.
    pub send_rate: f64,
    /// How far the publisher fell behind its schedule at worst.
    pub max_send_lag_ms: f64,
    /// sent x measured_subscribers.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub out_of_order: u64,
    pub unexpected: u64,
    /// Time waited after the last send for late deliveries.
    pub drain_secs: f64,
    pub drain_timed_out: bool,
    /// First send to last delivery.
    pub window_secs: f64,
    pub deliveries_per_sec: f64,
    #[serde(flatten)]
    pub latency: LatencyMs,
    /// Subscriber connections the server ended, by close code ("none": no close frame).
    pub closes: BTreeMap<String, u64>,
    pub closed: u64,
    #[serde(skip)]
    pub close_details: String,
    pub publisher_error: Option<String>,
    /// CPU the bench client used while measuring, in cores.
    pub client_cpu_cores: Option<f64>,
    pub client_rss_kib: Option<u64>,
}

impl FanoutReport {
    fn human(&self) -> String {
        let mut text = String::new();
        let rate = if self.rate > 0.0 {
            format!("{} msg/s asked", self.rate)
        } else {
            "unpaced".to_owned()
        };
        text.push_str(&format!(
            "  sent          {} of {} messages in {:.2} s ({:.1} msg/s, {rate}; at most {:.1} ms behind schedule)\n",
            self.sent, self.messages, self.send_secs, self.send_rate, self.max_send_lag_ms
        ));
        let lost_pct = if self.expected > 0 {
            100.0 * self.lost as f64 / self.expected as f64
        } else {
            0.0
        };
        text.push_str(&format!(
            "  deliveries    {} received of {} expected ({} messages x {} subscribers); lost {} ({lost_pct:.3} %)\n",
            self.received, self.expected, self.sent, self.measured_subscribers, self.lost
        ));
        if self.out_of_order > 0 || self.unexpected > 0 {
            text.push_str(&format!(
                "                out of order {}, unexpected messages {}\n",
                self.out_of_order, self.unexpected
            ));
        }
        text.push_str(&format!(
            "  rate          {:.1} deliveries/s over {:.3} s (first send to last delivery)\n",
            self.deliveries_per_sec, self.window_secs
        ));
        let l = &self.latency;
        text.push_str(&format!(
            "  latency       p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  mean {:.3} ms\n",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
        ));
        text.push_str(&format!(
            "  stragglers    waited {:.2} s after the last send{}\n",
            self.drain_secs,
            if self.drain_timed_out {
                " (timed out: some deliveries never came)"
            } else {
                ""
            }
        ));
        if self.closes.is_empty() {
            text.push_str("  closes        none\n");
        } else {
            let by_code: Vec<String> = self
                .closes
                .iter()
                .map(|(code, n)| format!("{n} x {code}"))
                .collect();
            text.push_str(&format!(
                "  closes        {} subscribers ended by the server: {} (1008 = slow consumer)\n",
                self.closed,
                by_code.join(", ")
            ));
            text.push_str(&self.close_details);
        }
        if let Some(e) = &self.publisher_error {
            text.push_str(&format!("  publisher     {e}\n"));
        }
        if let Some(cores) = self.client_cpu_cores {
            text.push_str(&client_cpu_line(cores));
        }
        if let Some(kib) = self.client_rss_kib {
            text.push_str(&format!("  client RSS    {} MiB\n", kib / 1024));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    fn args(url: &str) -> BenchFanoutArgs {
        BenchFanoutArgs {
            client: BenchClientArgs {
                url: url.to_owned(),
                insecure: false,
                ca: None,
            },
            publish_url: None,
            subscribers: 20,
            messages: 30,
            rate: 500.0,
            size: 64,
            connect_concurrency: 8,
            window: 256,
            warmup_timeout: 10.0,
            drain_timeout: 5.0,
            json: true,
        }
    }

    #[test]
    fn messages_carry_sequence_and_time() {
        for size in [HEADER, 64, 4096] {
            let Message::Binary(data) = encode(42, 123_456_789, size) else {
                panic!("not binary");
            };
            assert_eq!(data.len(), size);
            assert_eq!(decode(&data), Some((42, 123_456_789)));
        }
        let Message::Binary(data) = encode(WARMUP_FLAG | 3, 7, 20) else {
            panic!("not binary");
        };
        assert_eq!(decode(&data), Some((WARMUP_FLAG | 3, 7)));
        assert_eq!(&data[16..], b"abcd");
        assert_eq!(decode(&data[..15]), None);
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn arguments_are_checked() {
        let good = args("ws://127.0.0.1:1/ws/news");
        let p = plan(&good).unwrap();
        assert_eq!(p.subscribers, 20);
        assert_eq!(p.drain_timeout, Duration::from_secs(5));
        let bad = [
            BenchFanoutArgs {
                size: 15,
                ..good.clone()
            },
            BenchFanoutArgs {
                rate: -1.0,
                ..good.clone()
            },
            BenchFanoutArgs {
                rate: f64::NAN,
                ..good.clone()
            },
            BenchFanoutArgs {
                messages: 0,
                ..good.clone()
            },
            BenchFanoutArgs {
                subscribers: 0,
                ..good.clone()
            },
            BenchFanoutArgs {
                window: 0,
                ..good.clone()
            },
            BenchFanoutArgs {
                connect_concurrency: 0,
                ..good.clone()
            },
            BenchFanoutArgs {
                warmup_timeout: 0.0,
                ..good.clone()
            },
        ];
        for b in bad {
            let e = plan(&b).unwrap_err();
            assert!(matches!(e, BenchError::InvalidArgs(_)), "{e}");
        }
        let zero_rate = BenchFanoutArgs { rate: 0.0, ..good };
        assert_eq!(plan(&zero_rate).unwrap().rate, 0.0);
    }

    #[test]
    fn fd_limit_is_explained() {
        assert!(fits_fd_limit(1000, 20_000).is_ok());
        let e = fits_fd_limit(20_000, 20_000).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("20001 connections") && text.contains("ulimit"),
            "{text}"
        );
    }

    #[test]
    fn min_progress_skips_ended_subscribers() {
        let shared = Shared::new(3);
        for (i, p) in [5u64, 2, 9].into_iter().enumerate() {
            shared.progress[i].store(p, Ordering::Relaxed);
            shared.set_state(i, WARMED);
        }
        assert_eq!(shared.min_progress(&[0, 1, 2]), Some(2));
        shared.set_state(1, ENDED);
        assert_eq!(shared.min_progress(&[0, 1, 2]), Some(5));
        assert_eq!(shared.min_progress(&[1]), None);
        let c = shared.counts();
        assert_eq!((c.warmed, c.ended), (2, 1));
    }

    #[derive(Clone, Copy)]
    enum Mode {
        Broadcast,
        /// Only back to the sender: subscribers never hear the publisher.
        Echo,
        /// Broadcast, but the first connection is closed with 1008 instead
        /// of receiving the measured message with this sequence number.
        CloseFirstAt(u64),
    }

    /// A throwaway broadcast server on 127.0.0.1 (ws://).
    async fn server(mode: Mode) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        type Peers = Arc<Mutex<Vec<(usize, mpsc::UnboundedSender<Message>)>>>;
        let peers: Peers = Arc::default();
        let ids = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let peers = Arc::clone(&peers);
                let id = ids.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let (mut tx, mut rx) = ws.split();
                    let (qtx, mut qrx) = mpsc::unbounded_channel::<Message>();
                    peers.lock().unwrap().push((id, qtx.clone()));
                    tokio::spawn(async move {
                        while let Some(m) = qrx.recv().await {
                            let close = matches!(m, Message::Close(_));
                            if tx.send(m).await.is_err() || close {
                                break;
                            }
                        }
                    });
                    while let Some(Ok(m)) = rx.next().await {
                        if !matches!(m, Message::Binary(_) | Message::Text(_)) {
                            continue;
                        }
                        if let Mode::Echo = mode {
                            let _ = qtx.send(m);
                            continue;
                        }
                        let seq = match &m {
                            Message::Binary(b) => decode(b).map(|(s, _)| s),
                            _ => None,
                        };
                        for (peer, q) in peers.lock().unwrap().iter() {
                            if *peer == id {
                                continue;
                            }
                            let message = match mode {
                                Mode::CloseFirstAt(at) if *peer == 0 && seq == Some(at) => {
                                    Message::Close(Some(CloseFrame {
                                        code: CloseCode::Policy,
                                        reason: "too slow: fell behind".into(),
                                    }))
                                }
                                _ => m.clone(),
                            };
                            let _ = q.send(message);
                        }
                    }
                    peers.lock().unwrap().retain(|(peer, _)| *peer != id);
                });
            }
        });
        format!("ws://{addr}/ws/news")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_subscriber_gets_every_message() {
        let url = server(Mode::Broadcast).await;
        let report = measure(&args(&url), Output::Quiet).await.unwrap();
        assert_eq!(report.connected, 20);
        assert_eq!(report.measured_subscribers, 20);
        assert_eq!(report.sent, 30);
        assert_eq!(report.expected, 600);
        assert_eq!(report.received, 600);
        assert_eq!(report.lost, 0);
        assert_eq!(report.out_of_order, 0);
        assert_eq!(report.unexpected, 0);
        assert!(report.closes.is_empty());
        assert!(!report.drain_timed_out);
        assert!(report.latency.p50_ms > 0.0 && report.latency.max_ms >= report.latency.p99_ms);
        assert!(report.deliveries_per_sec > 0.0);
        let v: serde_json::Value = serde_json::from_str(&json_line(&report).unwrap()).unwrap();
        assert_eq!(v["mode"], "fanout");
        assert_eq!(v["lost"], 0);
        assert!(v["p99_ms"].is_number());
        assert!(v.get("close_details").is_none());
        assert!(report.human().contains("lost 0"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unpaced_publisher_stays_within_the_window() {
        let url = server(Mode::Broadcast).await;
        let a = BenchFanoutArgs {
            rate: 0.0,
            window: 4,
            messages: 300,
            subscribers: 5,
            ..args(&url)
        };
        let report = measure(&a, Output::Quiet).await.unwrap();
        assert_eq!(report.received, 1500);
        assert_eq!(report.lost, 0);
        assert_eq!(report.window, Some(4));
        assert!(report.publisher_error.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_subscriber_is_counted_with_its_losses() {
        let url = server(Mode::CloseFirstAt(10)).await;
        let report = measure(&args(&url), Output::Quiet).await.unwrap();
        assert_eq!(report.closes.get("1008"), Some(&1));
        assert_eq!(report.closed, 1);
        assert_eq!(report.expected, 600);
        // The closed one got messages 0..=9 only.
        assert_eq!(report.lost, 20);
        assert!(report.human().contains("1 x 1008"), "{}", report.human());
        assert!(report.close_details.contains("too slow"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_echo_route_fails_the_warm_up_clearly() {
        let url = server(Mode::Echo).await;
        let a = BenchFanoutArgs {
            subscribers: 3,
            warmup_timeout: 0.5,
            ..args(&url)
        };
        let e = measure(&a, Output::Quiet).await.unwrap_err();
        assert!(matches!(e, BenchError::WarmUp { missing: 3, .. }), "{e}");
        assert!(e.to_string().contains("broadcast route"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_port_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws/news", listener.local_addr().unwrap());
        drop(listener);
        let a = BenchFanoutArgs {
            subscribers: 2,
            ..args(&url)
        };
        let e = measure(&a, Output::Quiet).await.unwrap_err();
        assert!(e.to_string().contains("is the server running"), "{e}");
    }
}
