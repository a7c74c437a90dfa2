//! Bad input gets a clear answer: an `error` reply naming the problem on
//! the request protocol, a close frame with the RFC 6455 code for a
//! protocol violation, a 400 for a bad upgrade. The connection survives
//! everything that is not a protocol violation.

mod common;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn expect_error(c: &mut Client, id: Option<u64>, code: &str) -> Value {
    let e = c.recv().await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["code"], code, "{e}");
    match id {
        Some(id) => assert_eq!(e["id"], id, "{e}"),
        None => assert!(e.get("id").is_none(), "{e}"),
    }
    assert!(!e["message"].as_str().unwrap().is_empty());
    e
}

async fn still_open(c: &mut Client) {
    c.send(json!({"op": "ping", "id": 77})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "id": 77}));
}

#[tokio::test]
async fn malformed_requests_get_errors_and_the_connection_stays_open() {
    let b = spawn_broker().await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.send_text("{not json").await;
    let e = expect_error(&mut c, None, "bad_request").await;
    assert!(e["message"].as_str().unwrap().contains("malformed JSON"));
    c.send(json!({"op": "dance", "id": 1})).await;
    let e = expect_error(&mut c, Some(1), "bad_request").await;
    assert!(e["message"].as_str().unwrap().contains("unknown op `dance`"));
    c.send(json!({"op": "publish", "topic": "a", "id": 2})).await;
    let e = expect_error(&mut c, Some(2), "bad_request").await;
    assert!(e["message"].as_str().unwrap().contains("`data`"));
    c.send(json!({"op": "subscribe", "id": 3})).await;
    expect_error(&mut c, Some(3), "bad_request").await;
    c.send(json!({"op": "subscribe", "topic": "a..b", "id": 4})).await;
    expect_error(&mut c, Some(4), "bad_topic").await;
    c.send(json!({"op": "publish", "topic": "a.*", "data": 1, "id": 5}))
        .await;
    expect_error(&mut c, Some(5), "bad_topic").await;
    c.send(json!({"op": "publish", "topic": "$sys.stats", "data": 1, "id": 6}))
        .await;
    expect_error(&mut c, Some(6), "forbidden").await;
    c.send(json!({"op": "unsubscribe", "topic": "never", "id": 7})).await;
    expect_error(&mut c, Some(7), "not_found").await;
    c.send_binary(&[1, 2, 3]).await;
    expect_error(&mut c, None, "bad_request").await;
    still_open(&mut c).await;
    b.stop().await;
}

#[tokio::test]
async fn malformed_msgpack_gets_errors_too() {
    let b = spawn_broker().await;
    let mut c = connect(&b.ws_url("/ws?format=msgpack")).await;
    c.send_binary(&[0x82, 0xa2]).await;
    let e = expect_error(&mut c, None, "bad_request").await;
    assert!(e["message"].as_str().unwrap().contains("MessagePack"));
    c.send(json!({"op": "subscribe", "topic": "x y", "id": 8})).await;
    expect_error(&mut c, Some(8), "bad_topic").await;
    c.send_text("{}").await;
    expect_error(&mut c, None, "bad_request").await;
    still_open(&mut c).await;
    b.stop().await;
}

#[tokio::test]
async fn too_many_subscriptions_is_refused() {
    let b = spawn_broker_with(|c| c.limits.max_subscriptions_per_connection = 2).await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.subscribe("a").await;
    c.subscribe("b").await;
    c.send(json!({"op": "subscribe", "topic": "c", "id": 9})).await;
    expect_error(&mut c, Some(9), "too_many_subscriptions").await;
    b.stop().await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let b = spawn_broker_with(|c| c.limits.max_message_bytes = 1000).await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.send_text(&format!(
        r#"{{"op":"publish","topic":"a","data":"{}"}}"#,
        "x".repeat(2000)
    ))
    .await;
    let reason = c.expect_close(1009).await;
    assert!(reason.contains("1000 bytes"), "{reason}");
    b.stop().await;
}

/// A raw TCP client that sends hand-made frames after a real handshake.
async fn raw_client(b: &TestBroker, path: &str) -> TcpStream {
    raw_ws(b, path, None).await
}

/// Reads frames until a close; returns its code and reason.
async fn read_close(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection ended without a close frame");
            buf.extend_from_slice(&chunk[..n]);
            let mut at = 0;
            while buf.len() >= at + 2 {
                let len = (buf[at + 1] & 0x7f) as usize;
                if buf.len() < at + 2 + len {
                    break;
                }
                if buf[at] & 0x0f == 0x8 {
                    let p = &buf[at + 2..at + 2 + len];
                    return (
                        u16::from_be_bytes([p[0], p[1]]),
                        String::from_utf8_lossy(&p[2..]).to_string(),
                    );
                }
                at += 2 + len;
            }
        }
    })
    .await
    .expect("a close frame in time")
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let b = spawn_broker().await;
    let mut s = raw_client(&b, "/ws").await;
    s.write_all(&masked(0x1, true, &[0xc3, 0x28])).await.unwrap();
    let (code, reason) = read_close(&mut s).await;
    assert_eq!(code, 1007, "{reason}");
    b.stop().await;
}

#[tokio::test]
async fn protocol_violations_close_with_1002_and_a_reason() {
    let b = spawn_broker().await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0x81, 0x02, b'h', b'i'], "masked"),
        (masked(0x0, true, b"x"), "continuation"),
        (masked(0x3, true, b""), "opcode"),
        (masked(0x9, false, b""), "fragmented control"),
        ([0xC1u8, 0x80, 0, 0, 0, 0].to_vec(), "reserved"),
    ];
    for (frame, words) in cases {
        let mut s = raw_client(&b, "/ws").await;
        s.write_all(&frame).await.unwrap();
        let (code, reason) = read_close(&mut s).await;
        assert_eq!(code, 1002, "{words}: {reason}");
        assert!(reason.contains(words), "reason `{reason}` should mention {words}");
    }
    b.stop().await;
}

/// Reads one short unmasked server frame: opcode and payload.
async fn read_short_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(head[1] < 126, "a short unmasked frame: {head:?}");
    let mut payload = vec![0u8; head[1] as usize];
    s.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

#[tokio::test]
async fn what_came_before_a_close_or_a_violation_is_echoed_first() {
    let b = spawn_broker().await;
    for (last, code) in [
        (masked(0x8, true, &1000u16.to_be_bytes()), 1000),
        (masked(0x3, true, b""), 1002),
    ] {
        let mut s = raw_client(&b, "/ws/t/echo.order?echo=true").await;
        let frames = [masked(0x1, true, b"text"), masked(0x2, true, &[1, 2]), last].concat();
        s.write_all(&frames).await.unwrap();
        // New unmasked frames, each of its own kind, in order, then the close.
        assert_eq!(read_short_frame(&mut s).await, (0x81, b"text".to_vec()));
        assert_eq!(read_short_frame(&mut s).await, (0x82, vec![1, 2]));
        let (op, payload) = read_short_frame(&mut s).await;
        assert_eq!((op, u16::from_be_bytes([payload[0], payload[1]])), (0x88, code));
    }
    b.stop().await;
}

#[tokio::test]
async fn a_client_close_is_echoed() {
    let b = spawn_broker().await;
    let mut s = raw_client(&b, "/ws").await;
    let mut payload = 4001u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    s.write_all(&masked(0x8, true, &payload)).await.unwrap();
    assert_eq!(read_close(&mut s).await.0, 4001);
    b.stop().await;
}

#[tokio::test]
async fn client_pings_are_answered() {
    let b = spawn_broker().await;
    let mut s = raw_client(&b, "/ws").await;
    s.write_all(&masked(0x9, true, b"abc")).await.unwrap();
    let mut buf = [0u8; 5];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, [0x8A, 3, b'a', b'b', b'c']);
    b.stop().await;
}

#[tokio::test]
async fn bad_upgrades_get_400_with_a_reason() {
    let b = spawn_broker().await;
    for (req, words) in [
        ("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "Upgrade"),
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "Version",
        ),
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "Key",
        ),
        (
            "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "GET",
        ),
        (
            "GET /ws?format=xml HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "format",
        ),
        (
            "GET /ws/t/bad..topic HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "empty token",
        ),
    ] {
        let mut s = TcpStream::connect(b.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400"), "{words}: {text}");
        assert!(text.contains(words), "{words}: {text}");
    }
    b.stop().await;
}

#[tokio::test]
async fn bad_http_publishes_get_json_errors() {
    let b = spawn_broker_with(|c| c.limits.max_message_bytes = 100).await;
    let (s, body) = http(b.addr, "POST", "/api/publish/a", Some("application/json"), b"{oops").await;
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("malformed JSON"));
    let (s, _) = http(
        b.addr,
        "POST",
        "/api/publish/a",
        Some("application/x-www-form-urlencoded"),
        b"a=1",
    )
    .await;
    assert_eq!(s, 400);
    let (s, body) = http(b.addr, "POST", "/api/publish/a..b", Some("text/plain"), b"x").await;
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("bad_topic"));
    let (s, _) = http(b.addr, "POST", "/api/publish/$sys.x", Some("text/plain"), b"x").await;
    assert_eq!(s, 403);
    let (s, body) = http(b.addr, "POST", "/api/publish/a", Some("text/plain"), &[b'x'; 101]).await;
    assert_eq!(s, 413);
    assert!(String::from_utf8_lossy(&body).contains("too_large"));
    let (s, _) = http(b.addr, "POST", "/api/publish/a", Some("text/plain"), &[0xff]).await;
    assert_eq!(s, 400);
    b.stop().await;
}

#[tokio::test]
async fn a_raw_socket_cannot_publish_to_a_broker_topic() {
    let b = spawn_broker().await;
    let mut c = connect(&b.ws_url("/ws/t/$sys.x")).await;
    c.send_text("hi").await;
    let reason = c.expect_close(1008).await;
    assert!(reason.contains("$sys.x"), "{reason}");
    b.stop().await;
}

#[tokio::test]
async fn a_bad_config_key_stops_the_start_naming_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .arg("check-config")
        .env("FANOUT__QUEUE__POLICY", "drop_everything")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("queue.policy") && err.contains("drop_oldest"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["--listen", "127.0.0.1:0"])
        .env("FANOUT__SERVER__NOPE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["--listen", "127.0.0.1:0", "check-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = \"127.0.0.1:0\""));
}
