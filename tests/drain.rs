//! SIGTERM against a real broker process with live subscribers: `/readyz`
//! turns 503 at once while the process drains, queued messages are flushed,
//! every WebSocket gets close 1001 with a reason, new work is refused, and
//! the process exits 0. A second signal exits at once.

mod common;

use std::time::Duration;

use common::process::BrokerProcess;
use common::*;
use serde_json::{json, Value};

const CONFIG: &str = r#"
[server]
drain_delay = "1s"
shutdown_timeout = "5s"
[log]
format = "json"
"#;

#[tokio::test]
async fn sigterm_drains_step_by_step_and_exits_0() {
    let mut broker = BrokerProcess::start("drain", CONFIG, &[]);
    let addr = broker.addr;
    let url = format!("ws://{addr}/ws");
    let mut subs = Vec::new();
    for _ in 0..2 {
        let mut c = connect(&url).await;
        c.subscribe("feed").await;
        subs.push(c);
    }
    assert_eq!(http(addr, "GET", "/readyz", None, b"").await.0, 200);
    let batch: Vec<Value> = (0..200).map(|i| json!({"topic": "feed", "data": i})).collect();
    assert_eq!(
        http_json(addr, "POST", "/api/publish", &Value::Array(batch)).await.0,
        200
    );

    broker.signal("TERM");
    broker.wait_for_line(|l| l.contains("answers 503"));
    // During drain_delay: not ready, but everything else still works.
    assert_eq!(http(addr, "GET", "/readyz", None, b"").await.0, 503);
    assert_eq!(http(addr, "GET", "/healthz", None, b"").await.0, 200);
    assert_eq!(
        http(addr, "POST", "/api/publish/feed", Some("text/plain"), b"late")
            .await
            .0,
        200
    );

    // After the delay, while the subscribers have not yet read their close: still
    // answering, 503 for probes and new work alike.
    broker.wait_for_line(|l| l.contains("closing connections"));
    assert_eq!(http(addr, "GET", "/readyz", None, b"").await.0, 503);
    assert_eq!(
        http(addr, "POST", "/api/publish/feed", Some("text/plain"), b"x")
            .await
            .0,
        503
    );
    assert!(String::from_utf8(http(addr, "GET", "/metrics", None, b"").await.1)
        .unwrap()
        .contains("fanout_connections"));

    // Every queued message arrives, in order, then close 1001 with a reason.
    for c in &mut subs {
        for i in 0..200 {
            let m = c.recv().await;
            assert_eq!((m["type"].as_str(), m["data"].as_i64()), (Some("message"), Some(i)));
        }
        assert_eq!(c.recv().await["data"], "late");
        assert_eq!(c.expect_close(1001).await, "server shutting down");
    }
    let status = broker.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", broker.lines().join("\n"));
    assert!(broker.lines().iter().any(|l| l.contains("stopped")));
    // Once stopped, nothing listens.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let mut broker = BrokerProcess::start(
        "drain2",
        "[server]\ndrain_delay = \"60s\"\nshutdown_timeout = \"60s\"\n",
        &[],
    );
    let mut c = connect(&format!("ws://{}/ws", broker.addr)).await;
    c.subscribe("feed").await;
    broker.signal("TERM");
    broker.wait_for_line(|l| l.contains("answers 503"));
    let started = std::time::Instant::now();
    broker.signal("INT");
    let status = broker.wait_exit(Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(status.code(), Some(fanout::signals::FORCED_EXIT_CODE));
}
