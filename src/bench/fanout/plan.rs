//! Setup of a fanout run: the command-line values checked into a [`Plan`],
//! the open-file limit, and the two connectors (subscribers, publisher)
//! with WebSocket buffers sized for the message size.

use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::output::Output;
use super::stamp::HEADER;
use crate::bench::checks::{check_count, check_secs};
use crate::bench::connector::Connector;
use crate::bench::error::BenchError;
use crate::bench::limits::MAX_CONNS;
use crate::bench::report::note;
use crate::bench::sys;
use crate::cli::{BenchClientArgs, BenchFanoutArgs};

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

/// Command-line values, checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    pub(super) subscribers: usize,
    pub(super) messages: u64,
    /// Messages per second; 0 = unpaced, bounded by `window`.
    pub(super) rate: f64,
    pub(super) size: usize,
    pub(super) concurrency: usize,
    pub(super) window: u64,
    pub(super) warmup_timeout: Duration,
    pub(super) drain_timeout: Duration,
}

/// Everything a run needs before it opens a connection.
pub(super) struct Setup {
    pub(super) plan: Plan,
    /// Opens subscriber connections.
    pub(super) subscribers: Arc<Connector>,
    /// Opens the publisher connection (`--publish-url`, or the same URL).
    pub(super) publisher: Connector,
}

impl Setup {
    /// Checks the arguments and the open-file limit, builds both
    /// connectors and says what the run will do.
    pub(super) async fn prepare(args: &BenchFanoutArgs, out: Output) -> Result<Setup, BenchError> {
        let plan = plan(args)?;
        check_fd_limit(plan.subscribers)?;
        let subscribers =
            Arc::new(Connector::new(&args.client, subscriber_ws_config(plan.size), true).await?);
        let publish_client = BenchClientArgs {
            url: args
                .publish_url
                .clone()
                .unwrap_or_else(|| args.client.url.clone()),
            ..args.client.clone()
        };
        let publisher =
            Connector::new(&publish_client, publisher_ws_config(plan.size), true).await?;
        let setup = Setup {
            plan,
            subscribers,
            publisher,
        };
        out.say(&setup.banner());
        Ok(setup)
    }

    /// The first line of a run.
    fn banner(&self) -> String {
        let plan = &self.plan;
        let rate_text = if plan.rate > 0.0 {
            format!("{} msg/s", plan.rate)
        } else {
            format!("unpaced (at most {} in flight)", plan.window)
        };
        format!(
            "wssd bench fanout: {} subscribers on {} ({}), publisher on {} ({}); {} messages of {} B (binary), {rate_text}\n",
            plan.subscribers,
            self.subscribers.target().url,
            self.subscribers.addr(),
            self.publisher.target().url,
            self.publisher.addr(),
            plan.messages,
            plan.size,
        )
    }
}

pub(super) fn plan(args: &BenchFanoutArgs) -> Result<Plan, BenchError> {
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

pub(super) fn fits_fd_limit(subscribers: usize, limit: u64) -> Result<(), BenchError> {
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
