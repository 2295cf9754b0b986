//! The limits section of `load`: `--max-message-size`, `--memory-budget`,
//! the connection counts, the timeouts and the per-WebSocket rates, merged
//! and checked into one [`Limits`] (whose model and defaults live in
//! `limits` and `rate`).

use std::num::NonZeroU32;

use super::error::ConfigError;
use super::limits::Limits;
use super::sources::Sources;

/// The global limits section: sizes, counts and timeouts.
pub fn section(src: &Sources<'_>, problems: &mut Vec<ConfigError>) -> Limits {
    let (args, file) = (src.args, src.file);
    let mut limits = Limits::default();
    if let Some(n) = args.max_message_size.or(file.max_message_size) {
        if n < 16 {
            problems.push(ConfigError::MessageSizeTooSmall(n));
        }
        limits.max_message_size = n;
    }
    if let Some(n) = args.memory_budget.or(file.memory_budget) {
        limits.memory_budget = n;
    }
    if limits.memory_budget < limits.max_message_size {
        problems.push(ConfigError::BudgetBelowMessageSize {
            budget: limits.memory_budget,
            message: limits.max_message_size,
        });
    }
    let counts = [
        (
            args.max_connections.or(file.max_connections),
            "--max-connections",
            &mut limits.max_connections,
        ),
        (
            args.max_connections_per_ip.or(file.max_connections_per_ip),
            "--max-connections-per-ip",
            &mut limits.max_connections_per_ip,
        ),
    ];
    for (given, flag, slot) in counts {
        if let Some(n) = given {
            if n == 0 {
                problems.push(ConfigError::ZeroCount(flag));
            }
            *slot = n;
        }
    }
    timeouts(src, &mut limits, problems);
    rates(src, &mut limits, problems);
    limits
}

/// The per-WebSocket rates: a rate of 0 is off; a burst must be at least 1
/// and comes with its rate. (Whether a byte burst holds a route's largest
/// message is checked per route, in `route_list`.)
fn rates(src: &Sources<'_>, limits: &mut Limits, problems: &mut Vec<ConfigError>) {
    let (args, file) = (src.args, src.file);
    let pairs = [
        (
            args.message_rate.or(file.message_rate),
            args.message_burst.or(file.message_burst),
            "--message-rate",
            "--message-burst",
            &mut limits.message_rate,
        ),
        (
            args.byte_rate.or(file.byte_rate),
            args.byte_burst.or(file.byte_burst),
            "--byte-rate",
            "--byte-burst",
            &mut limits.byte_rate,
        ),
    ];
    for (rate, burst, rate_flag, burst_flag, slot) in pairs {
        if let Some(n) = rate {
            slot.per_second = NonZeroU32::new(n);
        }
        match burst {
            None => {}
            Some(0) => problems.push(ConfigError::ZeroBurst {
                burst: burst_flag,
                rate: rate_flag,
            }),
            Some(_) if slot.per_second.is_none() => problems.push(ConfigError::BurstWithoutRate {
                burst: burst_flag,
                rate: rate_flag,
            }),
            Some(b) => slot.burst = NonZeroU32::new(b),
        }
    }
}

/// The connection timeouts; 0 turns off pings, the idle timeout and the
/// drain wait, but never the handshake or send timeout.
fn timeouts(src: &Sources<'_>, limits: &mut Limits, problems: &mut Vec<ConfigError>) {
    let (args, file) = (src.args, src.file);
    if let Some(d) = src.nonzero_seconds(
        args.handshake_timeout,
        file.handshake_timeout.as_ref(),
        "handshake_timeout",
        " (it protects against slow clients); give seconds, e.g. 10",
        problems,
    ) {
        limits.handshake_timeout = d;
    }
    let may_be_off = [
        (
            args.ping_interval,
            file.ping_interval.as_ref(),
            "ping_interval",
            &mut limits.ping_interval,
        ),
        (
            args.idle_timeout,
            file.idle_timeout.as_ref(),
            "idle_timeout",
            &mut limits.idle_timeout,
        ),
    ];
    for (flag, in_file, key, slot) in may_be_off {
        if let Some(d) = src.seconds(flag, in_file, key, problems) {
            *slot = d;
        }
    }
    let drain = src.seconds(
        args.drain_timeout,
        file.drain_timeout.as_ref(),
        "drain_timeout",
        problems,
    );
    if let Some(d) = drain {
        limits.drain_timeout = d.unwrap_or_default();
    }
    if let Some(d) = src.nonzero_seconds(
        args.send_timeout,
        file.send_timeout.as_ref(),
        "send_timeout",
        " (it closes clients that stop reading); give seconds, e.g. 10",
        problems,
    ) {
        limits.send_timeout = d;
    }
}
