//! The publisher: its connection (read in the background so pings get
//! their pongs), the warm-up that waits until every subscriber is hearing,
//! and the load: paced at `--rate`, or unpaced within `--window` messages
//! of the slowest subscriber.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::{self, Message};

use super::output::{Output, POLL};
use super::plan::{Plan, Setup};
use super::stamp::{WARMUP_FLAG, encode};
use super::subscribers::{Counts, Crowd, Ended, Shared, Stop, WARMED};
use crate::bench::connector::{Ws, tls_description};
use crate::bench::error::BenchError;
use crate::bench::report::note;
use crate::bench::sys;

/// Time between warm-up messages while some subscriber has not had one.
const WARMUP_INTERVAL: Duration = Duration::from_millis(200);
/// Pause after the warm-up so its last messages are out of the way.
const SETTLE: Duration = Duration::from_millis(200);
/// With --rate 0: messages written between flushes at most.
const FLUSH_BATCH: u64 = 32;
/// How long closing the publisher may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the publisher stopped before sending every message (reported, not
/// fatal: the run still measures what was sent).
#[derive(Debug, thiserror::Error)]
pub(super) enum PublishFailure {
    #[error("send failed after {sent} messages: {source}")]
    Send {
        sent: u64,
        source: tungstenite::Error,
    },
    #[error("flush failed after {sent} messages: {source}")]
    Flush {
        sent: u64,
        source: tungstenite::Error,
    },
    #[error("stopped after {sent} messages: some subscriber received nothing for {secs} s")]
    Stalled { sent: u64, secs: f64 },
    #[error("the server ended the connection: {0}")]
    Ended(String),
}

/// The publisher connection.
pub(super) struct Publisher {
    sink: SplitSink<Ws, Message>,
    /// Reads the publisher's socket so pings get their pongs; ends when it closes.
    reader: JoinHandle<Ended>,
    pub(super) url: String,
    /// Negotiated TLS, for the report; None for ws://.
    pub(super) tls: Option<String>,
}

/// What the warm-up found.
pub(super) struct Warm {
    pub(super) secs: f64,
    /// Warm-up messages sent.
    pub(super) messages: u64,
    /// The subscribers that had a warm-up message when measuring began.
    pub(super) measured: Vec<usize>,
}

/// What the measured sending did.
pub(super) struct Load {
    pub(super) start: Instant,
    /// `start` on the subscribers' clock.
    pub(super) start_ns: u64,
    pub(super) cpu_before: Option<f64>,
    pub(super) sent: u64,
    pub(super) send_secs: f64,
    /// How far the publisher fell behind its schedule at worst.
    pub(super) max_lag: Duration,
    pub(super) failure: Option<PublishFailure>,
}

/// Sending so far.
#[derive(Default)]
struct Progress {
    sent: u64,
    max_lag: Duration,
}

/// One look at the subscribers during the warm-up.
enum WarmCheck {
    AllWarm,
    SendAgain,
    Gone,
    TimedOut(Counts),
}

impl Publisher {
    /// Connects the publisher and starts reading it.
    pub(super) async fn open(setup: &Setup, out: Output) -> Result<Publisher, BenchError> {
        let ws = setup.publisher.connect().await?;
        let tls = tls_description(&ws);
        if let Some(tls) = &tls {
            out.say(&format!("  tls           {tls}\n"));
        }
        let (sink, stream) = ws.split();
        Ok(Publisher {
            sink,
            reader: tokio::spawn(read_publisher(stream)),
            url: setup.publisher.target().url.clone(),
            tls,
        })
    }

    /// Sends warm-up messages until every open subscriber has received
    /// one, then settles; the subscribers that did are the ones measured.
    pub(super) async fn warm_up(
        &mut self,
        crowd: &Crowd,
        setup: &Setup,
        out: Output,
    ) -> Result<Warm, Stop> {
        let plan = &setup.plan;
        let shared = &crowd.shared;
        let started = Instant::now();
        let deadline = started + plan.warmup_timeout;
        let mut messages = 0u64;
        loop {
            let message = encode(WARMUP_FLAG | messages, shared.now_ns(), plan.size);
            if let Err(e) = self.sink.send(message).await {
                return Err(Stop::Failed(BenchError::Publish {
                    url: self.url.clone(),
                    detail: format!("warm-up send failed: {e}"),
                }));
            }
            messages += 1;
            match check_warm(shared, Instant::now() + WARMUP_INTERVAL, deadline).await {
                WarmCheck::AllWarm => break,
                WarmCheck::SendAgain => {}
                WarmCheck::Gone => return Err(Stop::Gone),
                WarmCheck::TimedOut(c) => {
                    return Err(Stop::Failed(BenchError::WarmUp {
                        missing: c.connected,
                        live: c.connected + c.warmed,
                        sent: messages,
                        url: setup.subscribers.target().url.clone(),
                        publish_url: self.url.clone(),
                        secs: plan.warmup_timeout.as_secs_f64(),
                    }));
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        sleep(SETTLE).await;
        let measured: Vec<usize> = (0..plan.subscribers)
            .filter(|&i| shared.state_of(i) == WARMED)
            .collect();
        out.say(&format!(
            "  warm-up       {} subscribers received a warm-up message after {secs:.2} s ({messages} sent)\n",
            measured.len()
        ));
        if measured.is_empty() {
            return Err(Stop::Gone);
        }
        Ok(Warm {
            secs,
            messages,
            measured,
        })
    }

    /// Sends the measured messages, paced or within the window.
    pub(super) async fn load(&mut self, shared: &Shared, measured: &[usize], plan: &Plan) -> Load {
        let cpu_before = sys::own_cpu_secs();
        let start = Instant::now();
        let start_ns = shared.now_ns();
        let mut progress = Progress::default();
        let result = if plan.rate > 0.0 {
            self.send_paced(shared, plan, start, &mut progress).await
        } else {
            self.send_windowed(shared, measured, plan, &mut progress)
                .await
        };
        let send_secs = start.elapsed().as_secs_f64();
        let failure = result.err();
        if let Some(failure) = &failure {
            note(&format!("publisher: {failure}"));
        }
        Load {
            start,
            start_ns,
            cpu_before,
            sent: progress.sent,
            send_secs,
            max_lag: progress.max_lag,
            failure,
        }
    }

    /// `--rate` messages per second, each at its due time (late ones at once).
    async fn send_paced(
        &mut self,
        shared: &Shared,
        plan: &Plan,
        start: Instant,
        p: &mut Progress,
    ) -> Result<(), PublishFailure> {
        while p.sent < plan.messages {
            let due = start + Duration::from_secs_f64(p.sent as f64 / plan.rate);
            let now = Instant::now();
            if now < due {
                sleep_until(due).await;
            } else {
                p.max_lag = p.max_lag.max(now - due);
            }
            let sent = p.sent;
            self.sink
                .send(encode(sent, shared.now_ns(), plan.size))
                .await
                .map_err(|source| PublishFailure::Send { sent, source })?;
            p.sent += 1;
        }
        Ok(())
    }

    /// As fast as the slowest measured subscriber allows: at most
    /// `--window` messages ahead of it, flushed in batches.
    async fn send_windowed(
        &mut self,
        shared: &Shared,
        measured: &[usize],
        plan: &Plan,
        p: &mut Progress,
    ) -> Result<(), PublishFailure> {
        let mut min_progress = 0u64;
        while p.sent < plan.messages {
            let sent = p.sent;
            let send_error = |source: tungstenite::Error| PublishFailure::Send { sent, source };
            if sent.saturating_sub(min_progress) >= plan.window {
                self.sink.flush().await.map_err(send_error)?;
                min_progress = wait_for_window(shared, measured, sent, plan).await?;
            }
            self.sink
                .feed(encode(sent, shared.now_ns(), plan.size))
                .await
                .map_err(send_error)?;
            p.sent += 1;
            let sent = p.sent;
            if sent.is_multiple_of(FLUSH_BATCH) {
                self.sink
                    .flush()
                    .await
                    .map_err(|source| PublishFailure::Send { sent, source })?;
            }
        }
        let sent = p.sent;
        self.sink
            .flush()
            .await
            .map_err(|source| PublishFailure::Flush { sent, source })
    }

    /// Closes the publisher (bounded); the failure to report, if any: the
    /// load's own, or the server having ended the connection.
    pub(super) async fn close(
        &mut self,
        failure: Option<PublishFailure>,
    ) -> Option<PublishFailure> {
        let ended = if self.reader.is_finished() {
            (&mut self.reader).await.ok()
        } else {
            None
        };
        let _ = timeout(CLOSE_TIMEOUT, self.sink.close()).await;
        self.reader.abort();
        failure.or_else(|| ended.map(|e| PublishFailure::Ended(e.detail)))
    }
}

/// Waits (polling) until every open subscriber is warm, the next warm-up
/// message is due, or the deadline passed.
async fn check_warm(shared: &Shared, next_send: Instant, deadline: Instant) -> WarmCheck {
    loop {
        let c = shared.counts();
        if c.connected == 0 && c.warmed > 0 {
            return WarmCheck::AllWarm;
        }
        if c.connected == 0 && c.warmed == 0 {
            return WarmCheck::Gone;
        }
        let now = Instant::now();
        if now >= deadline {
            return WarmCheck::TimedOut(c);
        }
        if now >= next_send {
            return WarmCheck::SendAgain;
        }
        sleep(POLL).await;
    }
}

/// Waits until the slowest measured subscriber is less than the window
/// behind `sent`; its progress then.
async fn wait_for_window(
    shared: &Shared,
    measured: &[usize],
    sent: u64,
    plan: &Plan,
) -> Result<u64, PublishFailure> {
    let blocked = Instant::now();
    loop {
        let min_progress = shared.min_progress(measured).unwrap_or(sent);
        if sent.saturating_sub(min_progress) < plan.window {
            return Ok(min_progress);
        }
        if blocked.elapsed() >= plan.drain_timeout {
            return Err(PublishFailure::Stalled {
                sent,
                secs: plan.drain_timeout.as_secs_f64(),
            });
        }
        sleep(Duration::from_millis(1)).await;
    }
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
