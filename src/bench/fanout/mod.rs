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
//!
//! `measure` is the run, step by step: [`plan`] (checked arguments and
//! connectors), [`subscribers`] (connect them all), [`publisher`] (warm-up,
//! then the load), the drain of stragglers, and [`summary`] (the report).
//! [`stamp`] is the message format both sides share; [`output`] where
//! progress lines go.

mod output;
mod plan;
mod publisher;
mod stamp;
mod subscribers;
mod summary;

use super::error::BenchError;
use super::report::{json_line, print};
use crate::cli::BenchFanoutArgs;
use output::Output;
use plan::Setup;
use publisher::Publisher;
use subscribers::{Crowd, Stop};
use summary::{ClientUse, FanoutReport, Measured};

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

/// One run: set up, connect the subscribers, open the publisher, warm up,
/// send the load, wait for stragglers, close everything, report.
async fn measure(args: &BenchFanoutArgs, out: Output) -> Result<FanoutReport, BenchError> {
    let setup = Setup::prepare(args, out).await?;
    let (crowd, connected) = Crowd::connect(&setup, out).await?;
    let mut publisher = match Publisher::open(&setup, out).await {
        Ok(publisher) => publisher,
        Err(e) => return Err(crowd.stop(Stop::Failed(e)).await),
    };
    let warm = match publisher.warm_up(&crowd, &setup, out).await {
        Ok(warm) => warm,
        Err(stop) => return Err(crowd.stop(stop).await),
    };
    let mut load = publisher
        .load(&crowd.shared, &warm.measured, &setup.plan)
        .await;
    let drain = crowd
        .drain(&warm.measured, load.sent, setup.plan.drain_timeout)
        .await;
    let deliveries = crowd.shared.deliveries();
    let client = ClientUse::since(&load);
    let publisher_failure = publisher.close(load.failure.take()).await;
    let (outcomes, latency) = crowd.close().await?;
    Ok(FanoutReport::new(Measured {
        setup: &setup,
        connected: &connected,
        warm: &warm,
        load: &load,
        drain,
        deliveries,
        client,
        publisher: &publisher,
        publisher_failure,
        outcomes,
        latency,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::plan::{fits_fd_limit, plan};
    use super::stamp::{HEADER, WARMUP_FLAG, decode, encode};
    use super::subscribers::{ENDED, Shared, WARMED};
    use super::*;
    use crate::cli::BenchClientArgs;

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
