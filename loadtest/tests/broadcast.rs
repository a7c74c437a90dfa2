//! End-to-end tests against a tiny in-process broadcast WebSocket server
//! written here with the harness's own frame codec: the client API
//! (fragments, auto-pong, close) and a 2-second raw `fanout` run that must
//! lose nothing.

mod common;

use fanout_loadtest::client::frame::{self, OP_CONTINUATION, OP_TEXT};
use fanout_loadtest::client::handshake::accept_key;
use fanout_loadtest::client::{Message, WsClient};
use fanout_loadtest::run::{run, RunConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Mutex};

/// Reads the upgrade request and answers 101.
async fn accept(sock: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let head = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(sock.read_buf(&mut buf).await.unwrap() > 0);
    };
    let text = String::from_utf8_lossy(&buf[..head]).to_string();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("key header")
        .trim()
        .to_string();
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    sock.write_all(resp.as_bytes()).await.unwrap();
    buf.split_off(head)
}

/// A broadcast server: every data frame from a client goes to every other
/// client. Returns its address.
async fn broadcast_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _) = broadcast::channel::<(u64, Arc<Vec<u8>>)>(65536);
    tokio::spawn(async move {
        let mut next_id = 0u64;
        while let Ok((mut sock, _)) = listener.accept().await {
            next_id += 1;
            let (id, tx) = (next_id, tx.clone());
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                let mut buf = accept(&mut sock).await;
                let (mut rd, mut wr) = sock.into_split();
                tokio::spawn(async move {
                    while let Ok((from, bytes)) = rx.recv().await {
                        if from != id && wr.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                });
                loop {
                    while let Ok(Some((f, used))) = frame::decode_frame(&buf, 1 << 20) {
                        buf.drain(..used);
                        assert!(f.mask.is_some(), "client frames must be masked");
                        let mut out = Vec::new();
                        frame::encode_frame(&mut out, f.opcode, f.fin, &f.payload, None);
                        let _ = tx.send((id, Arc::new(out)));
                    }
                    if rd.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
            });
        }
    });
    format!("ws://{addr}")
}

#[tokio::test]
async fn raw_fanout_run_loses_nothing() {
    let url = broadcast_server().await;
    let cfg = RunConfig {
        broker_pid: Some(std::process::id()),
        ..common::raw_fanout(url, 5, 200.0, 64, 1)
    };
    let report = run(cfg).await.unwrap();
    assert_eq!(report.connect.connected, 6);
    let step = &report.steps[0];
    let c = &step.counters;
    assert_eq!(c.intended, 400, "{c:?}");
    assert_eq!(c.sent, 400);
    assert_eq!(c.expected, 2000);
    assert_eq!(c.received, 2000, "lost {}", step.lost);
    assert_eq!((c.duplicates, c.reordered, c.foreign, c.errors), (0, 0, 0, 0));
    assert!(step.passed);
    assert_eq!(report.max_sustained_rate, Some(200.0));
    assert!(step.broker.is_some());
}

#[tokio::test]
async fn client_sends_receives_and_reassembles() {
    let url = broadcast_server().await;
    let mut a = WsClient::connect(&format!("{url}/x"), None).await.unwrap();
    let mut b = WsClient::connect(&format!("{url}/x"), Some("127.0.0.1".parse().unwrap()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.send_text("hello").await.unwrap();
    assert_eq!(b.next_message().await.unwrap(), Message::Text("hello".into()));
    let big = vec![7u8; 70_000];
    a.send_binary(&big).await.unwrap();
    assert_eq!(b.next_message().await.unwrap(), Message::Binary(big));
    // A fragmented text message, relayed frame by frame, arrives whole.
    a.send_raw_frame(OP_TEXT, false, b"frag", true).await.unwrap();
    a.send_raw_frame(OP_CONTINUATION, false, b"men", true).await.unwrap();
    a.send_raw_frame(OP_CONTINUATION, true, b"ted", true).await.unwrap();
    assert_eq!(b.next_message().await.unwrap(), Message::Text("fragmented".into()));
    // A relayed ping reaches b, which answers it automatically (the pong
    // comes back to a) and still reports it.
    a.send_ping(b"hi").await.unwrap();
    assert_eq!(b.next_message().await.unwrap(), Message::Ping(b"hi".to_vec()));
    assert_eq!(a.next_message().await.unwrap(), Message::Pong(b"hi".to_vec()));
    a.close(1000, "bye").await.unwrap();
    assert_eq!(
        b.next_message().await.unwrap(),
        Message::Close(Some((1000, "bye".into())))
    );
}

#[tokio::test]
async fn split_halves_work_concurrently() {
    let url = broadcast_server().await;
    let a = WsClient::connect(&url, None).await.unwrap();
    let b = WsClient::connect(&url, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut b_rd, _b_wr) = b.into_split();
    let (_a_rd, a_wr) = a.into_split();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let reader = tokio::spawn(async move {
        for _ in 0..100 {
            if let Message::Text(t) = b_rd.next_message().await.unwrap() {
                sink.lock().await.push(t);
            }
        }
    });
    for i in 0..100 {
        a_wr.queue_text(&format!("m{i}")).await;
    }
    a_wr.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    let got = got.lock().await;
    assert_eq!(got.len(), 100);
    assert_eq!(got[99], "m99");
}

#[tokio::test]
async fn handshake_failure_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let err = WsClient::connect(&format!("ws://{addr}/nope"), None)
        .await
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("404"), "{err}");
}
