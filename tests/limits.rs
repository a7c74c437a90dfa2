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
    // The slot is freed once the server side of the first connection is gone, which
    // nothing announces: a new connection is let in then.
    eventually(
        "the first connection's slot is freed",
        async || match tokio_tungstenite::connect_async(b.ws_url("/ws")).await {
            Ok((ws, _)) => {
                Client::from_stream(ws).close().await;
                true
            }
            Err(_) => false,
        },
    )
    .await;
    c2.close().await;
    b.stop().await;

    let b = spawn_broker_with(|c| c.server.max_connections = 1).await;
    let c1 = connect(&b.ws_url("/ws")).await;
    assert_eq!(refused_status(&b.ws_url("/ws")).await, 503);
    let refused = &b.broker.hub.metrics.as_ref().unwrap().connections_refused;
    assert_eq!(
        refused.with_label_values(&["max_connections"]).get(),
        1,
        "counted by limit"
    );
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
    // A patient client is never refused: after its burst empties the bucket, each wait
    // (the client's pace, the subject here) earns more than the one token it spends.
    let mut slow = connect(&b.ws_url("/ws?echo=false")).await;
    for i in 0..5 {
        slow.publish("slow", json!(i)).await;
    }
    for i in 5..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        slow.publish("slow", json!(i)).await;
    }
    slow.close().await;
    b.stop().await;
}

/// POSTs `body` to `path` on a kept-alive connection; the status and body of the answer.
async fn post_on(stream: &mut TcpStream, path: &str, body: &str) -> (u16, String) {
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if raw.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                return (
                    status,
                    String::from_utf8_lossy(&raw[end + 4..end + 4 + len]).into_owned(),
                );
            }
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the connection closed early");
        raw.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn http_publishing_over_the_rate_gets_429_per_connection() {
    let b = spawn_broker_with(|c| c.limits.publish_rate_per_connection = 3).await;
    let mut conn = TcpStream::connect(b.addr).await.unwrap();
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(post_on(&mut conn, "/api/publish/h", &i.to_string()).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let (status, body) = post_on(&mut conn, "/api/publish/h", "9").await;
    assert_eq!(status, 429);
    assert!(
        body.contains("rate_limited") && body.contains("publish_rate_per_connection"),
        "{body}"
    );
    // A batch answers each item: over the budget, an item carries the error.
    let mut fresh = TcpStream::connect(b.addr).await.unwrap();
    let items: Vec<_> = (0..4).map(|i| json!({"topic": "h", "data": i})).collect();
    let (status, body) = post_on(&mut fresh, "/api/publish", &json!(items).to_string()).await;
    assert_eq!(status, 200);
    let answers: serde_json::Value = serde_json::from_str(&body).unwrap();
    let limited: Vec<bool> = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error"]["code"] == "rate_limited")
        .collect();
    assert_eq!(limited, [false, false, false, true], "{answers}");
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
    let (mut from_server, mut to_server) = s.split();
    let request = b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nx-padding: aaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    // One byte every 300 ms: the slow-loris pace is what the test is about.
    let dribble = async {
        for byte in request.iter() {
            if to_server.write_all(&[*byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        true
    };
    let mut buf = [0u8; 256];
    let sent_every_byte = tokio::select! {
        // The server closes (maybe after a 408): the read ends, whatever it returns.
        _ = from_server.read(&mut buf) => false,
        all = dribble => all,
    };
    assert!(!sent_every_byte, "the server waited for every byte");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "cut off after {elapsed:?}");
    b.stop().await;
}
