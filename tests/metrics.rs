//! `/metrics` after real traffic: each counter moved by exactly what the
//! clients did; drops and the slow-subscriber listing agree with what the
//! slow client is told; the separate metrics listener; metrics off.

mod common;

use common::*;
use fanout::config::Policy;
use serde_json::{json, Value};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, body) = http(addr, "GET", "/metrics", None, b"").await;
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

/// The value of the sample whose line starts with `series` (name plus exact labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Scrapes until `series` reads `want` (writers flush their counts once a second,
/// and say so to no one); returns that scrape.
async fn wait_for(addr: std::net::SocketAddr, series: &str, want: f64) -> String {
    let mut text = String::new();
    let reads = async || {
        text = scrape(addr).await;
        sample(&text, series) == Some(want)
    };
    assert!(
        holds_by(tokio::time::Instant::now() + WAIT, reads).await,
        "{series} never reached {want}; last scrape:\n{text}"
    );
    text
}

#[tokio::test]
async fn counters_move_by_what_the_clients_did() {
    let b = spawn_broker().await;
    let mut subs = Vec::new();
    let mut received_bytes = 0usize;
    for _ in 0..2 {
        let mut c = connect(&b.ws_url("/ws")).await;
        c.subscribe("feed").await;
        received_bytes += json!({"op": "subscribe", "topic": "feed", "id": 1}).to_string().len();
        subs.push(c);
    }
    let mut publisher = connect(&b.ws_url("/ws")).await;
    for i in 0..3 {
        publisher.publish("feed", json!(i)).await;
        received_bytes += json!({"op": "publish", "topic": "feed", "data": i, "id": 2})
            .to_string()
            .len();
    }
    for _ in 0..5 {
        let (status, _) = http(b.addr, "POST", "/api/publish/feed", Some("text/plain"), b"hello").await;
        assert_eq!(status, 200);
        received_bytes += 5;
    }
    publisher.send_text("not json").await;
    assert_eq!(publisher.recv().await["code"], "bad_request");
    received_bytes += "not json".len();
    for c in &mut subs {
        for _ in 0..8 {
            assert_eq!(c.recv().await["type"], "message");
        }
    }

    let text = wait_for(b.addr, "fanout_messages_delivered_total", 16.0).await;
    let get = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(get(r#"fanout_messages_published_total{transport="ws"}"#), 3.0);
    assert_eq!(get(r#"fanout_messages_published_total{transport="http"}"#), 5.0);
    assert_eq!(get(r#"fanout_connections{transport="ws"}"#), 3.0);
    assert_eq!(get(r#"fanout_connections_total{transport="ws"}"#), 3.0);
    assert_eq!(get("fanout_subscriptions"), 2.0);
    assert_eq!(get("fanout_topics"), 1.0);
    assert_eq!(get("fanout_bytes_received_total"), received_bytes as f64);
    assert_eq!(get(r#"fanout_protocol_errors_total{kind="bad_request"}"#), 1.0);
    assert_eq!(get("fanout_auth_failures_total"), 0.0);
    // Every message frame is at least its JSON envelope; replies and acks add more.
    assert!(get("fanout_bytes_sent_total") >= 16.0 * 50.0, "{text}");
    assert!(get("fanout_send_queue_depth_count") >= 2.0);
    assert!(get("fanout_delivery_latency_seconds_count") >= 2.0);
    assert!(
        get("fanout_delivery_latency_seconds_sum") < 16.0 * 1.0,
        "each delivery well under a second"
    );
    assert!(get("process_resident_memory_bytes") > 0.0);
    assert!(get("process_open_fds") > 0.0);
    assert!(text.contains("process_cpu_seconds_total"));

    for c in subs {
        c.close().await;
    }
    wait_for(b.addr, r#"fanout_connections{transport="ws"}"#, 1.0).await;
    wait_for(b.addr, "fanout_subscriptions", 0.0).await;
    b.stop().await;
}

const MESSAGES: u64 = 3000;

async fn publish_padded(b: &TestBroker) {
    let padding = "x".repeat(1000);
    for chunk in (1..=MESSAGES).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"topic": "feed", "data": {"i": i, "p": padding}}))
            .collect();
        let (status, _) = http_json(b.addr, "POST", "/api/publish", &Value::Array(batch)).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn drops_match_the_gaps_and_the_slow_subscriber_is_listed_first() {
    let b = spawn_broker_with(|c| {
        c.queue.policy = Policy::DropNewest;
        c.queue.max_messages = 256;
    })
    .await;
    let mut fast = connect(&b.ws_url("/ws")).await;
    fast.subscribe("feed").await;
    let mut slow = stalled_client(&b).await;
    slow.subscribe("feed").await;
    let fast_reader = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            assert_eq!(fast.recv().await["type"], "message");
        }
        fast
    });
    publish_padded(&b).await;
    let fast = fast_reader.await.unwrap();

    let (status, listing) = http_json(b.addr, "GET", "/api/connections?sort=queue&limit=1", &Value::Null).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["total"], 2);
    let top = &listing["connections"][0];
    assert_eq!(listing["connections"].as_array().unwrap().len(), 1);
    assert_eq!(
        top["id"], 2,
        "the stalled client (second to connect) is the slowest: {listing}"
    );
    assert_eq!(top["transport"], "ws");
    assert_eq!(top["subscriptions"], 1);
    assert!(top["queue_depth"].as_u64().unwrap() > 0, "{listing}");
    assert!(top["dropped"].as_u64().unwrap() > 0, "{listing}");
    assert!(top["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    let (status, _) = http(b.addr, "GET", "/api/connections?sort=speed", None, b"").await;
    assert_eq!(status, 400);

    // The slow client reads everything now: messages plus announced gaps cover every seq.
    let (mut got, mut gapped) = (0u64, 0u64);
    while got + gapped < MESSAGES {
        let v = slow.recv().await;
        match v["type"].as_str() {
            Some("message") => got += 1,
            Some("gap") => gapped += v["to"].as_u64().unwrap() - v["from"].as_u64().unwrap() + 1,
            _ => panic!("unexpected {v}"),
        }
    }
    assert!(gapped > 0);
    let series = r#"fanout_messages_dropped_total{policy="drop_newest",reason="queue_full"}"#;
    wait_for(b.addr, series, gapped as f64).await;
    wait_for(b.addr, "fanout_messages_delivered_total", (MESSAGES + got) as f64).await;
    fast.close().await;
    slow.close().await;
    b.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_disconnect_is_counted() {
    let b = spawn_broker_with(|c| {
        c.queue.policy = Policy::Disconnect;
        c.queue.max_messages = 32;
    })
    .await;
    let mut slow = stalled_client(&b).await;
    slow.subscribe("feed").await;
    publish_padded(&b).await;
    slow.expect_close(1008).await;
    let text = wait_for(b.addr, "fanout_slow_consumer_disconnects_total", 1.0).await;
    let lost = sample(
        &text,
        r#"fanout_messages_dropped_total{policy="disconnect",reason="disconnected"}"#,
    );
    assert!(lost.unwrap_or(0.0) >= 1.0, "{text}");
    b.stop().await;
}

#[tokio::test]
async fn a_separate_metrics_listener_serves_metrics_and_probes_only() {
    let b = spawn_broker_with(|c| c.metrics.listen = "127.0.0.1:0".into()).await;
    // The listener binds in the background; its address is set once it has.
    eventually("the metrics listener binds", async || {
        b.broker.metrics_addr.get().is_some()
    })
    .await;
    let addr = *b.broker.metrics_addr.get().unwrap();
    assert!(scrape(addr).await.contains("fanout_connections"));
    assert_eq!(http(addr, "GET", "/readyz", None, b"").await.0, 200);
    assert_eq!(
        http(addr, "POST", "/api/publish/t", Some("text/plain"), b"x").await.0,
        404
    );
    b.stop().await;
}

#[tokio::test]
async fn with_metrics_off_there_is_no_metrics_endpoint() {
    let b = spawn_broker_with(|c| c.metrics.enabled = false).await;
    let (status, _) = http(b.addr, "GET", "/metrics", None, b"").await;
    assert_eq!(status, 404);
    let mut c = connect(&b.ws_url("/ws")).await;
    c.subscribe("t").await;
    let mut publisher = connect(&b.ws_url("/ws")).await;
    publisher.publish("t", json!(1)).await;
    assert_eq!(c.recv().await["type"], "message");
    b.stop().await;
}

#[tokio::test]
async fn an_sse_stream_is_listed_and_counted_as_sse_not_as_a_websocket() {
    let b = spawn_broker().await;
    let mut s = sse_connect(b.addr, "/sse/listed", &[]).await;
    assert_eq!(s.status, 200);
    // The stream is subscribed once it delivers.
    http_publish(b.addr, "listed", &json!(1)).await;
    assert_eq!(s.next_event().await.json()["data"], 1);
    let text = wait_for(b.addr, r#"fanout_connections{transport="sse"}"#, 1.0).await;
    assert_ne!(
        sample(&text, r#"fanout_connections{transport="ws"}"#),
        Some(1.0),
        "{text}"
    );
    let (status, listing) = http_json(b.addr, "GET", "/api/connections", &Value::Null).await;
    assert_eq!(status, 200, "{listing}");
    let rows = listing["connections"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listing}");
    assert_eq!(rows[0]["transport"], "sse");
    assert!(
        rows[0]["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{listing}"
    );
    drop(s);
    wait_for(b.addr, r#"fanout_connections{transport="sse"}"#, 0.0).await;
    b.stop().await;
}
