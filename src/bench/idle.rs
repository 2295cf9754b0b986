//! `wssd bench idle`: open CONNS connections, measure the resident memory
//! the server processes (--pid) gained per connection, hold, close.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

use super::checks::{check_count, check_secs};
use super::connector::{Connector, Ws, open_and_report, small_ws_config};
use super::error::BenchError;
use super::limits::{CONNECT_CONCURRENCY, MAX_CONNS};
use super::report::{IdleReport, PidRss, note, print, print_with_json, round_to};
use super::sys;
use crate::cli::BenchIdleArgs;

/// File descriptors kept free for everything that is not a bench connection.
const SPARE_FDS: u64 = 64;
/// How often RSS is sampled while it settles.
const SETTLE_STEP: Duration = Duration::from_millis(250);
/// RSS counts as settled when it moved less than the tolerance over this window.
const SETTLE_WINDOW: Duration = Duration::from_secs(1);
/// Give up waiting for RSS to settle after this long (reported as not settled).
const SETTLE_MAX: Duration = Duration::from_secs(15);
/// Time allowed for all close handshakes at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: BenchIdleArgs) -> Result<(), BenchError> {
    check_count("--conns", args.conns, MAX_CONNS)?;
    let hold = if args.hold == 0.0 {
        Duration::ZERO
    } else {
        check_secs("--hold", args.hold)?
    };
    match sys::raise_nofile_limit() {
        Ok(limit) if (args.conns as u64).saturating_add(SPARE_FDS) > limit => note(&format!(
            "--conns {} is above what the open-file limit allows ({limit}, hard limit); \
             connections past it will fail with \"too many open files\": raise it (ulimit -Hn, \
             or LimitNOFILE= in systemd) or use fewer connections",
            args.conns
        )),
        Ok(_) => {}
        Err(e) => note(&format!("could not raise the open-file limit: {e}")),
    }

    // Idle sockets: the smallest buffers tungstenite allows to work well.
    let connector = Arc::new(Connector::new(&args.client, small_ws_config(), true).await?);
    let before = read_rss(&args.pid)?;
    print(&format!(
        "wssd bench idle: {} connections to {} ({}), {} at a time, hold {} s\n",
        args.conns,
        connector.target().url,
        connector.addr(),
        CONNECT_CONCURRENCY,
        args.hold
    ));

    let (opened, tls) = open_and_report(&connector, args.conns).await?;
    let open = opened.sockets.len();

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let closed_by_server = Arc::new(AtomicU64::new(0));
    let mut holders = tokio::task::JoinSet::new();
    for ws in opened.sockets {
        holders.spawn(hold_open(
            ws,
            shutdown_rx.clone(),
            Arc::clone(&closed_by_server),
        ));
    }

    let (after, settled) = if args.pid.is_empty() {
        (Vec::new(), false)
    } else {
        settle(&args.pid).await?
    };
    let pids: Vec<PidRss> = before
        .iter()
        .zip(&after)
        .map(|(&(pid, before_kib), &(_, after_kib))| PidRss {
            pid,
            before_kib,
            after_kib,
        })
        .collect();
    let rss_before_kib: u64 = pids.iter().map(|p| p.before_kib).sum();
    let rss_after_kib: u64 = pids.iter().map(|p| p.after_kib).sum();
    let rss_per_conn_kib = (!pids.is_empty()).then(|| {
        round_to(
            (rss_after_kib as f64 - rss_before_kib as f64) / open as f64,
            2,
        )
    });

    let mut text = String::new();
    for p in &pids {
        text.push_str(&format!(
            "  RSS pid {:<7} {} KiB -> {} KiB ({:+} KiB, {:.2} KiB per connection)\n",
            p.pid,
            p.before_kib,
            p.after_kib,
            p.after_kib as i64 - p.before_kib as i64,
            (p.after_kib as f64 - p.before_kib as f64) / open as f64
        ));
    }
    match rss_per_conn_kib {
        Some(per_conn) => text.push_str(&format!(
            "  RSS total     {rss_before_kib} KiB -> {rss_after_kib} KiB: {per_conn:.2} KiB per open connection{}\n",
            if settled {
                ""
            } else {
                " (still moving after 15 s: not settled)"
            }
        )),
        None => text.push_str("  RSS           not measured (pass --pid with the server's PIDs)\n"),
    }
    text.push_str(&format!(
        "  holding       {open} connections for {} s\n",
        args.hold
    ));
    print(&text);

    sleep(hold).await;
    let closed_early = closed_by_server.load(Ordering::Relaxed);
    let _ = shutdown_tx.send(true);
    let all_closed = timeout(CLOSE_TIMEOUT, async {
        while holders.join_next().await.is_some() {}
    })
    .await;
    if all_closed.is_err() {
        holders.abort_all();
    }

    let report = IdleReport {
        mode: "idle",
        url: connector.target().url.clone(),
        tls,
        conns: args.conns,
        open,
        errors: opened.errors.total() + closed_early,
        open_secs: round_to(opened.elapsed.as_secs_f64(), 3),
        hold: args.hold,
        closed_by_server: closed_early,
        rss_before_kib,
        rss_after_kib,
        rss_per_conn_kib,
        rss_settled: settled,
        pids,
        client_rss_kib: sys::own_rss_kib(),
    };
    let text = format!(
        "  errors        {} (connect {}, closed by the server while held {})\n",
        report.errors,
        opened.errors.total(),
        closed_early
    );
    print_with_json(text, None, &report)
}

/// Keeps one connection open, reading so pings get their pongs, until shutdown.
async fn hold_open(
    mut ws: Ws,
    mut shutdown: watch::Receiver<bool>,
    closed_by_server: Arc<AtomicU64>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            message = ws.next() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    closed_by_server.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
}

/// (pid, VmRSS KiB) for each pid.
fn read_rss(pids: &[u32]) -> Result<Vec<(u32, u64)>, BenchError> {
    pids.iter()
        .map(|&pid| {
            sys::rss_kib(pid)
                .map(|kib| (pid, kib))
                .map_err(|reason| BenchError::Pid { pid, reason })
        })
        .collect()
}

/// Samples RSS until the total moved less than max(256 KiB, 0.5 %) over
/// [`SETTLE_WINDOW`], or [`SETTLE_MAX`] passed; returns the last sample and
/// whether it settled.
async fn settle(pids: &[u32]) -> Result<(Vec<(u32, u64)>, bool), BenchError> {
    let started = Instant::now();
    let window = (SETTLE_WINDOW.as_millis() / SETTLE_STEP.as_millis()) as usize + 1;
    let mut totals: Vec<u64> = Vec::new();
    loop {
        let sample = read_rss(pids)?;
        let total: u64 = sample.iter().map(|&(_, kib)| kib).sum();
        totals.push(total);
        if totals.len() >= window {
            let recent = &totals[totals.len() - window..];
            let (lo, hi) = recent
                .iter()
                .fold((u64::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            if hi - lo <= (total / 200).max(256) {
                return Ok((sample, true));
            }
        }
        if started.elapsed() >= SETTLE_MAX {
            return Ok((sample, false));
        }
        sleep(SETTLE_STEP).await;
    }
}
