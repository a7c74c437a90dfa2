//! Keepalive: the server pings every `ping_interval`, a client that answers
//! stays, and a client that stays silent is closed after `idle_timeout`.
//! Also checked with our own client (`fanout_loadtest::client`), the one
//! the load tester uses, beside tokio-tungstenite.

mod common;

use std::time::Duration;

use common::*;
use fanout_loadtest::client::{Message, WsClient};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn short_timers(c: &mut fanout::config::Config) {
    c.server.ping_interval = Duration::from_millis(100);
    c.server.idle_timeout = Duration::from_millis(350);
}

#[tokio::test]
async fn a_silent_client_gets_pings_then_close_1001_idle_timeout() {
    let b = spawn_broker_with(short_timers).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (pings, close) = tokio::time::timeout(WAIT, async {
        let mut pings = 0;
        loop {
            let mut chunk = [0u8; 512];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed without a close frame");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                if buf.starts_with(b"HTTP/1.1 101") {
                    buf.drain(..end + 4);
                }
            }
            while buf.len() >= 2 && !buf.starts_with(b"HTTP") {
                let len = (buf[1] & 0x7f) as usize;
                if buf.len() < 2 + len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..2 + len).collect();
                match frame[0] & 0x0f {
                    0x9 => pings += 1,
                    0x8 => {
                        return (
                            pings,
                            (
                                u16::from_be_bytes([frame[2], frame[3]]),
                                String::from_utf8_lossy(&frame[4..]).to_string(),
                            ),
                        )
                    }
                    _ => {}
                }
            }
        }
    })
    .await
    .expect("closed within the idle timeout and a ping interval");
    assert!(pings >= 2, "pings every ping_interval: got {pings}");
    assert_eq!(close, (1001, "idle timeout".to_string()));
    b.stop().await;
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let b = spawn_broker_with(short_timers).await;
    // tokio-tungstenite answers pings while it is being read.
    let mut c = connect(&b.ws_url("/ws")).await;
    c.subscribe("alive").await;
    let reader = tokio::spawn(async move {
        let m = c.recv().await;
        (m, c)
    });
    // Time passing is what this test is about: nearly three idle timeouts (350 ms each)
    // in which the client sends nothing but pongs. No event marks "long enough".
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, _) = http_json(b.addr, "POST", "/api/publish/alive", &json!("still here")).await;
    assert_eq!(status, 200);
    let (m, _c) = reader.await.unwrap();
    assert_eq!(
        m["data"], "still here",
        "the connection outlived nearly three idle timeouts"
    );
    b.stop().await;
}

#[tokio::test]
async fn our_own_client_speaks_to_raw_sockets_and_the_json_protocol() {
    let b = spawn_broker().await;
    let mut sub = WsClient::connect(&b.ws_url("/ws/t/own.client"), None).await.unwrap();
    let publisher = WsClient::connect(&b.ws_url("/ws/t/own.client"), None).await.unwrap();
    let mut json_client = WsClient::connect(&b.ws_url("/ws"), None).await.unwrap();
    json_client
        .send_text(r#"{"op":"subscribe","topic":"own.client","id":1}"#)
        .await
        .unwrap();
    let Message::Text(ack) = json_client.next_message().await.unwrap() else {
        panic!("ack")
    };
    assert!(ack.contains(r#""type":"ack""#), "{ack}");
    publisher.send_binary(&[1, 2, 3]).await.unwrap();
    assert_eq!(sub.next_message().await.unwrap(), Message::Binary(vec![1, 2, 3]));
    let Message::Text(m) = json_client.next_message().await.unwrap() else {
        panic!("message")
    };
    let v: serde_json::Value = serde_json::from_str(&m).unwrap();
    assert_eq!((v["seq"].as_u64(), v["encoding"].as_str()), (Some(1), Some("base64")));
    sub.close(1000, "bye").await.unwrap();
    assert!(matches!(
        sub.next_message().await.unwrap(),
        Message::Close(Some((1000, _)))
    ));
    b.stop().await;
}
