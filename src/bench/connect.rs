//! `wssd bench connect`: WORKERS loops of TCP connect, full TLS handshake (no
//! resumption), WebSocket upgrade, one echo and close, for SECS seconds.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;

use super::checks::{check_count, check_secs};
use super::connector::{Connector, small_ws_config, tls_description};
use super::error::BenchError;
use super::limits::{HISTOGRAM_SHARDS, MAX_CONNS};
use super::report::{
    ConnectReport, ErrorLog, Percentiles, Recorder, SharedHistogram, per_sec, print,
    print_with_json, round_to,
};
use super::sys;
use crate::cli::BenchConnectArgs;

/// The message each connection echoes once.
const PROBE: &str = "wssd-bench-connect";
/// Time allowed for the echo and for the close handshake.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed attempt, so a dead server is not hammered in a hot loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(20);

pub async fn run(args: BenchConnectArgs) -> Result<(), BenchError> {
    let secs = check_secs("--secs", args.secs)?;
    check_count("--workers", args.workers, MAX_CONNS)?;
    // No resumption: every handshake is a full one, which is what this measures.
    let connector = Arc::new(Connector::new(&args.client, small_ws_config(), false).await?);
    print(&format!(
        "wssd bench connect: {} workers against {} ({}), {} s; each cycle: TCP connect, {}WebSocket upgrade, one echo, close\n",
        args.workers,
        connector.target().url,
        connector.addr(),
        args.secs,
        if connector.target().tls {
            "full TLS handshake (no resumption), "
        } else {
            ""
        },
    ));
    // One connection first, so a wrong URL or certificate fails with its own message.
    let mut probe = connector.connect().await?;
    let tls = tls_description(&probe);
    if let Some(tls) = &tls {
        print(&format!("  tls           {tls}\n"));
    }
    let _ = timeout(STEP_TIMEOUT, probe.close(None)).await;
    drop(probe);
    cycle(&connector).await?;

    let cpu_before = sys::own_cpu_secs();
    let deadline = Instant::now() + secs;
    let mut tasks = tokio::task::JoinSet::new();
    let latencies = SharedHistogram::new(HISTOGRAM_SHARDS)?;
    for i in 0..args.workers {
        tasks.spawn(worker(
            Arc::clone(&connector),
            deadline,
            latencies.recorder(i),
        ));
    }
    let mut connects = 0u64;
    let mut errors = ErrorLog::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcome) => {
                connects += outcome.connects;
                errors.merge(outcome.errors);
            }
            Err(e) => errors.add(format!("worker task failed: {e}")),
        }
    }

    let secs_f = secs.as_secs_f64();
    let client_cpu_cores = sys::cpu_cores_since(cpu_before, secs_f);
    let latency = Percentiles::from_histogram(&latencies.merged()?);
    let report = ConnectReport {
        mode: "connect",
        url: connector.target().url.clone(),
        tls,
        workers: args.workers,
        secs: secs_f,
        connects,
        connects_per_sec: round_to(per_sec(connects as f64, secs_f), 1),
        latency,
        errors: errors.total(),
        client_cpu_cores,
    };
    let mut text = String::new();
    text.push_str(&format!(
        "  connects      {} ({:.1} /s)\n",
        report.connects, report.connects_per_sec
    ));
    text.push_str(&format!("  connect+echo  {}\n", latency.human()));
    text.push_str("                (TCP connect to first echo received; the close is not in the latency but is in the rate)\n");
    text.push_str(&format!("  errors        {}\n", report.errors));
    text.push_str(&errors.human());
    print_with_json(text, client_cpu_cores, &report)
}

struct Outcome {
    connects: u64,
    errors: ErrorLog,
}

async fn worker(connector: Arc<Connector>, deadline: Instant, mut latencies: Recorder) -> Outcome {
    let mut outcome = Outcome {
        connects: 0,
        errors: ErrorLog::default(),
    };
    while Instant::now() < deadline {
        match timeout_at(deadline, cycle(&connector)).await {
            // Cut off by the deadline: neither a connect nor an error.
            Err(_) => break,
            Ok(Ok(latency)) => {
                outcome.connects += 1;
                latencies.record(latency);
            }
            Ok(Err(e)) => {
                outcome.errors.add(e.to_string());
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    outcome
}

/// One connect cycle; returns the time from TCP connect to the echo.
async fn cycle(connector: &Connector) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let mut ws = connector.connect().await?;
    let echo_error = |detail: String| BenchError::Echo {
        url: connector.target().url.clone(),
        detail,
    };
    let echoed = timeout(STEP_TIMEOUT, async {
        ws.send(Message::text(PROBE))
            .await
            .map_err(|e| echo_error(format!("send failed: {e}")))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == PROBE => return Ok(()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => {
                    return Err(echo_error(format!("unexpected reply {other:?}")));
                }
                Some(Err(e)) => return Err(echo_error(format!("receive failed: {e}"))),
                None => return Err(echo_error("server closed the connection".into())),
            }
        }
    })
    .await;
    match echoed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(echo_error(format!(
                "no echo within {} s",
                STEP_TIMEOUT.as_secs()
            )));
        }
    }
    let latency = started.elapsed();
    // Close handshake: the server answers and closes TCP first, so TIME_WAIT
    // stays on its side and the client's ports are not used up.
    let _ = timeout(STEP_TIMEOUT, async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    Ok(latency)
}
