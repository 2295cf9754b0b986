//! The subscribers: one task per connection that connects (bounded
//! concurrency) and reads at once, so pings are answered while the others
//! are still connecting; the state they share with the publisher; and the
//! [`Crowd`] that starts them, waits for them and stops them.
#![allow(
    clippy::disallowed_types,
    reason = "delivery latency is measured from one wall-clock epoch shared by every task"
)]

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

use super::output::{Output, POLL};
use super::plan::Setup;
use super::stamp::{WARMUP_FLAG, decode};
use crate::bench::connector::{Connector, Ws};
use crate::bench::error::BenchError;
use crate::bench::limits::HISTOGRAM_SHARDS;
use crate::bench::report::{ErrorLog, Percentiles, Recorder, SharedHistogram};

/// Time allowed for all close handshakes at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

// Life of one subscriber connection.
pub(super) const CONNECTING: u8 = 0;
pub(super) const CONNECTED: u8 = 1;
pub(super) const WARMED: u8 = 2;
pub(super) const ENDED: u8 = 3;
pub(super) const FAILED: u8 = 4;

/// State shared by the subscriber tasks and the publisher.
pub(super) struct Shared {
    epoch: std::time::Instant,
    /// Per subscriber: CONNECTING, CONNECTED, WARMED, ENDED or FAILED.
    state: Vec<AtomicU8>,
    /// Per subscriber: one past the highest measured sequence number received.
    pub(super) progress: Vec<AtomicU64>,
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
pub(super) struct Counts {
    pub(super) connecting: usize,
    pub(super) connected: usize,
    pub(super) warmed: usize,
    pub(super) ended: usize,
    pub(super) failed: usize,
}

impl Shared {
    pub(super) fn new(subscribers: usize) -> Shared {
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

    pub(super) fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(super) fn set_state(&self, index: usize, state: u8) {
        if let Some(s) = self.state.get(index) {
            s.store(state, Ordering::Release);
        }
    }

    pub(super) fn state_of(&self, index: usize) -> u8 {
        self.state
            .get(index)
            .map_or(ENDED, |s| s.load(Ordering::Acquire))
    }

    pub(super) fn counts(&self) -> Counts {
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
    pub(super) fn min_progress(&self, measured: &[usize]) -> Option<u64> {
        measured
            .iter()
            .filter(|&&i| self.state_of(i) != ENDED)
            .filter_map(|&i| self.progress.get(i))
            .map(|p| p.load(Ordering::Acquire))
            .min()
    }

    /// Measured deliveries so far.
    pub(super) fn deliveries(&self) -> Deliveries {
        Deliveries {
            received: self.delivered.load(Ordering::Acquire),
            last_ns: self.last_delivery_ns.load(Ordering::Acquire),
        }
    }

    /// Counts one measured delivery of `seq` to subscriber `index`;
    /// whether it came in order.
    fn count_delivery(&self, index: usize, seq: u64, next: &mut u64, now: u64) -> bool {
        let in_order = seq >= *next;
        if in_order {
            *next = seq + 1;
            if let Some(p) = self.progress.get(index) {
                p.store(*next, Ordering::Release);
            }
        }
        self.delivered.fetch_add(1, Ordering::AcqRel);
        self.last_delivery_ns.fetch_max(now, Ordering::AcqRel);
        in_order
    }
}

/// How the server ended a connection before the bench did.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ended {
    /// The close code, None when the connection ended without a close frame.
    code: Option<u16>,
    pub(super) detail: String,
}

impl Ended {
    pub(super) fn key(&self) -> String {
        self.code
            .map_or_else(|| "none".to_owned(), |code| code.to_string())
    }

    pub(super) fn from_message(
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

/// Measured deliveries, all subscribers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deliveries {
    pub(super) received: u64,
    /// Receive time of the last (ns since the bench epoch).
    pub(super) last_ns: u64,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub(super) struct SubOutcome {
    /// Measured messages that arrived with a sequence number not above an earlier one.
    pub(super) out_of_order: u64,
    /// Text messages, or binary ones of the wrong size.
    pub(super) unexpected: u64,
    pub(super) ended: Option<Ended>,
}

/// How the subscribers' connecting went.
pub(super) struct Connected {
    /// Subscribers that connected.
    pub(super) count: usize,
    pub(super) secs: f64,
    pub(super) log: ErrorLog,
}

/// The running subscriber tasks and what they share.
pub(super) struct Crowd {
    pub(super) shared: Arc<Shared>,
    histogram: Arc<SharedHistogram>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<SubOutcome>,
}

impl Crowd {
    /// Starts one task per subscriber and waits until each connected or
    /// failed; an error when none connected.
    pub(super) async fn connect(
        setup: &Setup,
        out: Output,
    ) -> Result<(Crowd, Connected), BenchError> {
        let plan = &setup.plan;
        let shared = Arc::new(Shared::new(plan.subscribers));
        let histogram = SharedHistogram::new(HISTOGRAM_SHARDS)?;
        let (stop, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(plan.concurrency));
        let mut tasks = JoinSet::new();
        let started = Instant::now();
        for index in 0..plan.subscribers {
            tasks.spawn(subscriber(
                index,
                Arc::clone(&setup.subscribers),
                Arc::clone(&permits),
                Arc::clone(&shared),
                stop_rx.clone(),
                histogram.recorder(index),
                plan.size,
            ));
        }
        let crowd = Crowd {
            shared,
            histogram,
            stop,
            tasks,
        };
        while crowd.shared.counts().connecting > 0 {
            sleep(POLL).await;
        }
        let secs = started.elapsed().as_secs_f64();
        let count = plan.subscribers - crowd.shared.counts().failed;
        let (log, first_error) = {
            let mut errors = crowd
                .shared
                .connect_errors
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            (errors.log.clone(), errors.first.take())
        };
        out.say(&format!(
            "  connected     {count}/{} subscribers in {secs:.2} s ({} handshakes at a time)\n",
            plan.subscribers, plan.concurrency
        ));
        out.say(&log.human());
        if count == 0 {
            crowd.finish().await;
            return Err(BenchError::no_connections(plan.subscribers, first_error));
        }
        Ok((crowd, Connected { count, secs, log }))
    }

    /// Waits until every open `measured` subscriber has the message before
    /// `sent`, for at most `limit`; (seconds waited, whether it timed out).
    pub(super) async fn drain(
        &self,
        measured: &[usize],
        sent: u64,
        limit: Duration,
    ) -> (f64, bool) {
        let started = Instant::now();
        let deadline = started + limit;
        let timed_out = loop {
            if self.shared.min_progress(measured).is_none_or(|p| p >= sent) {
                break false;
            }
            if Instant::now() >= deadline {
                break true;
            }
            sleep(POLL).await;
        };
        (started.elapsed().as_secs_f64(), timed_out)
    }

    /// Stops the run early: finishes the subscribers and returns the error
    /// to report ([`Stop::Gone`] names how they were closed).
    pub(super) async fn stop(self, stop: Stop) -> BenchError {
        let outcomes = self.finish().await;
        match stop {
            Stop::Failed(e) => e,
            Stop::Gone => BenchError::SubscribersGone {
                closes: closes_text(&outcomes),
            },
        }
    }

    /// Finishes the subscribers; what they saw and the latency percentiles.
    pub(super) async fn close(self) -> Result<(Vec<SubOutcome>, Percentiles), BenchError> {
        let histogram = Arc::clone(&self.histogram);
        let outcomes = self.finish().await;
        Ok((outcomes, Percentiles::from_histogram(&histogram.merged()?)))
    }

    /// Tells every subscriber to stop, waits for their close handshakes
    /// (bounded) and returns what they saw.
    async fn finish(self) -> Vec<SubOutcome> {
        let Crowd {
            stop, mut tasks, ..
        } = self;
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
}

/// Why a run stops before measuring.
pub(super) enum Stop {
    Failed(BenchError),
    /// Every subscriber was closed.
    Gone,
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
    let connect = async {
        let _permit = permits.acquire().await;
        connector.connect().await
    };
    let connected = tokio::select! {
        result = connect => result,
        _ = stop.changed() => {
            shared.set_state(index, FAILED);
            return SubOutcome::default();
        }
    };
    let mut ws: Ws = match connected {
        Ok(ws) => ws,
        Err(e) => {
            shared.connect_failed(index, e);
            return SubOutcome::default();
        }
    };
    shared.set_state(index, CONNECTED);
    let outcome = read(index, &mut ws, &shared, &mut stop, &mut recorder, size).await;
    shared.set_state(index, ENDED);
    recorder.flush();
    close(&mut ws, outcome.ended.is_some()).await;
    outcome
}

/// Reads one subscriber's messages until told to stop or closed by the server.
async fn read(
    index: usize,
    ws: &mut Ws,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
    recorder: &mut Recorder,
    size: usize,
) -> SubOutcome {
    let mut outcome = SubOutcome::default();
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
                        if !shared.count_delivery(index, seq, &mut next, now) {
                            outcome.out_of_order += 1;
                        }
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
    outcome
}

/// Ends a subscriber connection: answers the server's close frame, or
/// closes it ourselves (both bounded).
async fn close(ws: &mut Ws, closed_by_server: bool) {
    if closed_by_server {
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
