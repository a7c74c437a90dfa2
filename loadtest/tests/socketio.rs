//! The Socket.IO client against the official Node `socket.io` server
//! (`loadtest/peers/node-socketio`): a 2-second fan-out run over the
//! WebSocket transport must join the namespace, get every broadcast event
//! once and never its own. Skipped, loudly, when node or the peer's
//! node_modules are missing (`npm ci --prefix loadtest/peers/node-socketio`
//! installs them; CI does, and with CI set a missing peer is a failure).
//!
//! And against a scripted Engine.IO server (tokio-tungstenite): the receive
//! threads answer its heartbeat, and a CONNECT_ERROR fails the connection.

mod common;

use fanout_loadtest::engine::messages::RunOpts;
use fanout_loadtest::protocol::Protocol;
use fanout_loadtest::run::{run, RunConfig, RunError};
use fanout_loadtest::scenario;
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::process::Child;
use tokio_tungstenite::tungstenite::Message;

/// `base` speaking Socket.IO.
fn socketio(base: RunOpts) -> RunOpts {
    RunOpts {
        protocol: Protocol::Socketio,
        ..base
    }
}

/// Starts the Node socket.io peer; `None` (skip) without node or its node_modules.
async fn node_peer(test: &str) -> Option<(Child, String)> {
    common::node_peer(test, "node-socketio", "socket.io", &[], &["listening", "server on"]).await
}

#[tokio::test]
async fn socketio_fanout_against_node_loses_nothing() {
    let Some((mut node, url)) = node_peer("socketio_fanout_against_node_loses_nothing").await else {
        return;
    };
    let base = common::raw_fanout(url, 5, 100.0, 64, 1);
    let cfg = RunConfig {
        plan: scenario::fanout("fanout", 1, 5, 0, false, true).unwrap(),
        opts: socketio(base.opts.clone()),
        broker_pid: node.id(),
        ..base
    };
    let report = run(cfg).await.unwrap();
    assert_eq!(report.connect.connected, 6, "{:?}", report.connect.first_error);
    let step = &report.steps[0];
    let c = &step.counters;
    assert_eq!(c.sent, 200, "{c:?}");
    // Five subscribers, never the publisher itself.
    assert_eq!(c.expected, 1000);
    assert_eq!(c.received, 1000, "lost {}", step.lost);
    assert_eq!((c.duplicates, c.reordered, c.foreign, c.errors), (0, 0, 0, 0));
    assert!(step.passed, "{step:?}");
    assert!(step.broker.is_some());
    let _ = node.kill().await;
}

/// What the scripted server saw: the CONNECT packets, and how many pongs.
#[derive(Default)]
struct Seen {
    connects: Vec<String>,
    pongs: usize,
}

/// An Engine.IO server that sends the open packet, answers every CONNECT
/// with `answer` (`NS` replaced by the namespace asked for), then pings
/// (`2`) after 300 ms and counts the pongs (`3`).
async fn scripted_server(answer: &'static str) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(sock).await.unwrap();
                let open = r#"0{"sid":"s1","upgrades":[],"pingInterval":300,"pingTimeout":2000,"maxPayload":1000000}"#;
                ws.send(Message::text(open)).await.unwrap();
                let mut pinged = false;
                loop {
                    let next = if pinged {
                        ws.next().await
                    } else {
                        match tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
                            Ok(next) => next,
                            Err(_) => {
                                pinged = true;
                                ws.send(Message::text("2")).await.unwrap();
                                continue;
                            }
                        }
                    };
                    let Some(Ok(Message::Text(t))) = next else { return };
                    if let Some(ns) = t.strip_prefix("40").and_then(|r| r.strip_suffix(',')) {
                        log.lock().unwrap().connects.push(t.to_string());
                        ws.send(Message::text(answer.replace("NS", ns))).await.unwrap();
                    } else if t.as_str() == "3" {
                        log.lock().unwrap().pongs += 1;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// `connections` idle connections on namespace `/lt.x`, held `hold`.
fn connect_run(url: String, connections: usize, hold: Duration) -> RunConfig {
    let base = common::raw_fanout(url, 1, 1.0, 64, 1);
    RunConfig {
        plan: scenario::connect(connections, Some("lt.x".into()), false).unwrap(),
        opts: socketio(base.opts.clone()),
        hold: Some(hold),
        ..base
    }
}

#[tokio::test]
async fn receive_threads_answer_the_heartbeat() {
    let (url, seen) = scripted_server(r#"40NS,{"sid":"n1"}"#).await;
    let report = run(connect_run(url, 3, Duration::from_millis(1200))).await.unwrap();
    assert_eq!(report.connect.connected, 3, "{:?}", report.connect.first_error);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.connects, vec!["40/lt.x,"; 3]);
    assert_eq!(
        seen.pongs, 3,
        "every connection answers the ping from its receive thread"
    );
}

#[tokio::test]
async fn a_connect_error_fails_the_connection_with_its_message() {
    let (url, _) = scripted_server(r#"44NS,{"message":"Not allowed"}"#).await;
    let err = run(connect_run(url, 2, Duration::from_millis(100)))
        .await
        .expect_err("must fail");
    let RunError::NoConnections(why) = &err else {
        panic!("{err}")
    };
    assert!(why.contains("/lt.x") && why.contains("Not allowed"), "{why}");
}
