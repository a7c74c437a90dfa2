//! The floor server, as a client sees it: a message reaches every other
//! client (ours and tokio-tungstenite alike) and not its sender, fragments
//! arrive whole, pings and closes are answered, protocol errors close with
//! 1002, a reader that never reads costs frames (counted) but not the
//! others' deliveries, a raw `fanout` run against it loses nothing, and the
//! binary prints its counters on SIGINT.

mod common;

use fanout_loadtest::client::frame::{OP_CONTINUATION, OP_TEXT};
use fanout_loadtest::client::{Message, WsClient};
use fanout_loadtest::floor::{FloorServer, FloorStats};
use fanout_loadtest::run::run;
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as TMessage;

const WAIT: Duration = Duration::from_secs(5);

fn start(threads: usize) -> (FloorServer, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = FloorServer::start(listener, threads).unwrap();
    let url = format!("ws://{}", server.local_addr());
    (server, url)
}

/// Waits until the server's counters satisfy `done` (they are read, not signalled).
async fn until(server: &FloorServer, what: &str, done: impl Fn(&FloorStats) -> bool) -> FloorStats {
    tokio::time::timeout(WAIT, async {
        loop {
            let stats = server.stats();
            if done(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: {:?}", server.stats()))
}

/// Waits until the server has upgraded `n` clients (they then get every broadcast).
async fn until_clients(server: &FloorServer, n: u64) {
    until(server, "clients joined", |s| s.clients >= n).await;
}

async fn expect(ws: &mut WsClient) -> Message {
    tokio::time::timeout(WAIT, ws.next_message())
        .await
        .expect("a message")
        .unwrap()
}

#[tokio::test]
async fn a_message_reaches_every_other_client() {
    let (server, url) = start(2);
    let mut a = WsClient::connect(&format!("{url}/a"), None).await.unwrap();
    let mut b = WsClient::connect(&format!("{url}/any/path?x=1"), None).await.unwrap();
    let (mut t, _) = tokio_tungstenite::connect_async(format!("{url}/")).await.unwrap();
    until_clients(&server, 3).await;

    a.send_text("hello").await.unwrap();
    assert_eq!(expect(&mut b).await, Message::Text("hello".into()));
    assert_eq!(t.next().await.unwrap().unwrap(), TMessage::text("hello"));

    t.send(TMessage::binary(vec![1, 2, 3])).await.unwrap();
    // a never got its own "hello": the next thing it sees is t's message.
    assert_eq!(expect(&mut a).await, Message::Binary(vec![1, 2, 3]));
    assert_eq!(expect(&mut b).await, Message::Binary(vec![1, 2, 3]));

    b.send_raw_frame(OP_TEXT, false, b"frag", true).await.unwrap();
    b.send_raw_frame(OP_CONTINUATION, true, b"mented", true).await.unwrap();
    assert_eq!(expect(&mut a).await, Message::Text("fragmented".into()));
    assert_eq!(t.next().await.unwrap().unwrap(), TMessage::text("fragmented"));

    let stats = server.shutdown();
    assert_eq!(
        (stats.clients, stats.messages, stats.written, stats.dropped),
        (3, 3, 6, 0)
    );
}

#[tokio::test]
async fn pings_closes_and_protocol_errors_are_answered() {
    let (_server, url) = start(1);
    let mut a = WsClient::connect(&url, None).await.unwrap();
    a.send_ping(b"hi").await.unwrap();
    assert_eq!(expect(&mut a).await, Message::Pong(b"hi".to_vec()));
    a.close(1000, "bye").await.unwrap();
    assert_eq!(expect(&mut a).await, Message::Close(Some((1000, String::new()))));
    assert!(a.next_message().await.is_err(), "then the server closes the connection");

    let mut b = WsClient::connect(&url, None).await.unwrap();
    b.send_raw_frame(OP_TEXT, true, b"unmasked", false).await.unwrap();
    assert_eq!(expect(&mut b).await, Message::Close(Some((1002, String::new()))));

    let (mut t, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    t.send(TMessage::Ping(b"tt".to_vec().into())).await.unwrap();
    assert_eq!(t.next().await.unwrap().unwrap(), TMessage::Pong(b"tt".to_vec().into()));
    t.close(None).await.unwrap();
}

#[tokio::test]
async fn a_reader_that_never_reads_only_loses_frames() {
    let (server, url) = start(1);
    let a = WsClient::connect(&url, None).await.unwrap();
    let mut b = WsClient::connect(&url, None).await.unwrap();
    // Upgraded, then never read again.
    let (_stuck, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    until_clients(&server, 3).await;
    // Far more than the stuck socket's buffers hold; b reads each one before
    // the next is sent, so b's own socket never fills.
    for i in 0..600u32 {
        let msg = vec![(i % 251) as u8; 64 * 1024];
        a.send_binary(&msg).await.unwrap();
        assert_eq!(expect(&mut b).await, Message::Binary(msg), "message {i}");
    }
    // The server counts a message once it has gone to every recipient, which may be
    // just after `b` read the last one.
    let stats = until(&server, "every message counted", |s| s.written + s.dropped == 1200).await;
    assert_eq!(stats.messages, 600);
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.written + stats.dropped, 1200, "{stats:?}");
}

#[tokio::test]
async fn raw_fanout_run_against_it_loses_nothing() {
    let (_server, url) = start(1);
    let cfg = common::raw_fanout(url, 20, 500.0, 100, 2);
    let report = run(cfg).await.unwrap();
    let c = &report.steps[0].counters;
    assert_eq!((c.sent, c.expected, c.received), (1000, 20_000, 20_000), "{c:?}");
    assert_eq!((c.duplicates, c.reordered, c.foreign, c.errors), (0, 0, 0, 0));
}

#[test]
fn the_binary_prints_its_counters_on_sigint() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanout-loadtest"))
        .args(["floor-server", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("floor server on ws://127.0.0.1:"), "{line}");
    // SAFETY: signals our own child by its pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("0 frames dropped"), "{line}");
    assert!(child.wait().unwrap().success());
}
