//! Abuse limits with a real broker: connections in total and per address,
//! the publish rate per connection, the number of topics, and clients that
//! send their request headers too slowly (slow-loris).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

/// The status a refused WebSocket handshake got.
async fn refused_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url.into_client_request().unwrap()).await {
        Err(WsError::Http(res)) => res.status().as_u16(),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn connections_over_the_per_ip_limit_get_429_and_over_the_total_503() {
    let b = spawn_broker_with(|c| c.server.max_connections_per_ip = 2).await;
    let c1 = connect(&b.ws_url("/ws")).await;
    let c2 = connect(&b.ws_url("/ws")).await;
    assert_eq!(refused_status(&b.ws_url("/ws")).await, 429);
    c1.close().await;
    // The slot is freed once the first connection is gone.
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(b.ws_url("/ws")).await {
            Client::from_stream(ws).close().await;
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c2.close().await;
    b.stop().await;

    let b = spawn_broker_with(|c| c.server.max_connections = 1).await;
    let c1 = connect(&b.ws_url("/ws")).await;
    assert_eq!(refused_status(&b.ws_url("/ws")).await, 503);
    c1.close().await;
    b.stop().await;
}

#[tokio::test]
async fn publishing_over_the_rate_is_refused_then_closed() {
    let b = spawn_broker_with(|c| c.limits.publish_rate_per_connection = 5).await;
    let mut c = connect(&b.ws_url("/ws?echo=false")).await;
    // A burst: the bucket holds one second's worth, then every publish is refused.
    let mut codes = Vec::new();
    for i in 0..8 {
        c.send(json!({"op": "publish", "topic": "fast", "data": i, "id": i}))
            .await;
        let r = c.recv().await;
        codes.push(r["code"].as_str().unwrap_or(r["type"].as_str().unwrap()).to_owned());
    }
    assert_eq!(&codes[..5], ["ack"; 5], "{codes:?}");
    assert_eq!(&codes[5..], ["rate_limited"; 3], "{codes:?}");
    // Two more refusals make five in a row: the connection is closed.
    for i in 8..10 {
        c.send(json!({"op": "publish", "topic": "fast", "data": i, "id": i}))
            .await;
    }
    assert_eq!(c.expect_close(1008).await, "rate limited");
    let (_, metrics) = http(b.addr, "GET", "/metrics", None, b"").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("kind=\"rate_limited\""), "{metrics}");
    // A patient client is never refused.
    let mut slow = connect(&b.ws_url("/ws?echo=false")).await;
    for i in 0..3 {
        slow.publish("slow", json!(i)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    slow.close().await;
    b.stop().await;
}

#[tokio::test]
async fn no_topic_is_made_beyond_max_topics() {
    let b = spawn_broker_with(|c| c.limits.max_topics = 2).await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.subscribe("t1").await;
    c.subscribe("t2").await;
    c.send(json!({"op": "subscribe", "topic": "t3", "id": 3})).await;
    let r = c.recv().await;
    assert_eq!(r["code"], "too_many_topics", "{r}");
    c.send(json!({"op": "publish", "topic": "t4", "data": 1, "id": 4}))
        .await;
    assert_eq!(c.recv().await["code"], "too_many_topics");
    // Existing topics still work, over every way in.
    let (status, _) = http(b.addr, "POST", "/api/publish/t1", Some("application/json"), b"1").await;
    assert_eq!(status, 200);
    let (status, body) = http(b.addr, "POST", "/api/publish/t5", Some("application/json"), b"1").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    c.close().await;
    b.stop().await;
}

#[tokio::test]
async fn a_client_dribbling_its_headers_is_cut_off() {
    let b = spawn_broker_with(|c| c.server.handshake_timeout = Duration::from_secs(1)).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let request = b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nx-padding: aaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut = false;
    for byte in request.iter() {
        if s.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The server closes (maybe after a 408): a read returns at once.
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            let _ = n;
            cut = true;
            break;
        }
    }
    assert!(cut, "the server waited for every byte");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "cut off after {elapsed:?}");
    b.stop().await;
}
