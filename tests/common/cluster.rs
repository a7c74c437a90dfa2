//! Cluster nodes for the tests: fanout brokers in this process, each pointed
//! at a real nats-server (`nats.rs`), and the client steps those tests share.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::{holds_by, http_get, spawn_broker_with, Client, TestBroker};

/// How long a node may take to (re)connect to NATS and be ready.
pub const NATS_WAIT: Duration = Duration::from_secs(20);

/// Starts a node of the cluster on `nats` and waits until it is ready.
pub async fn node(nats_url: &str) -> TestBroker {
    let b = spawn_node(nats_url).await;
    wait_ready(&b, true).await;
    b
}

/// Three ready nodes of the cluster on `nats_url`.
pub async fn three_nodes(nats_url: &str) -> [TestBroker; 3] {
    [node(nats_url).await, node(nats_url).await, node(nats_url).await]
}

/// Starts a node of the cluster on `nats_url`, without waiting for it to be ready.
pub async fn spawn_node(nats_url: &str) -> TestBroker {
    let url = nats_url.to_owned();
    spawn_broker_with(move |c| {
        c.cluster.nats_url = url;
        c.cluster.request_timeout = Duration::from_secs(3);
    })
    .await
}

/// Polls `/readyz` until it says `ready` (bounded: reconnecting to NATS takes its time).
pub async fn wait_ready(b: &TestBroker, ready: bool) {
    let says = async || (http_get(b.addr, "/readyz", &[]).await.0 == 200) == ready;
    assert!(
        holds_by(Instant::now() + NATS_WAIT, says).await,
        "node {} never became ready={ready}",
        b.addr
    );
}

/// The next `message` a client gets, skipping acks (a publisher's own ack may come first).
pub async fn next_message(c: &mut Client) -> Value {
    loop {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("message") => return v,
            Some("ack") => continue,
            _ => panic!("expected a message, got {v}"),
        }
    }
}

/// Subscribes with an ack; `since` optional. Returns the ack.
pub async fn subscribe(c: &mut Client, topic: &str, since: Option<u64>) -> Value {
    let mut req = json!({"op": "subscribe", "topic": topic, "id": 1});
    if let Some(s) = since {
        req["since"] = json!(s);
    }
    c.send(req).await;
    let ack = c.recv().await;
    assert_eq!(ack["type"], "ack", "subscribe to {topic}: {ack}");
    ack
}
