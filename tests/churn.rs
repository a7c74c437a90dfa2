//! Churn without leaks: many connect–subscribe–publish–disconnect cycles, in
//! bounded concurrent batches, leave no connection, no topic and no file
//! descriptor behind.

mod common;

use std::time::Duration;

use common::*;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use tokio::time::Instant;

/// Cycles in all; each is one connection's whole life.
const CYCLES: usize = 20_000;
/// Connections alive at once.
const CONCURRENCY: usize = 200;
/// Topics the cycles share, so topics are created and reaped while others use them.
const TOPICS: usize = 50;

/// File descriptors this process holds now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// One client's life: connect, subscribe, publish, receive its own message, close.
async fn cycle(b: &TestBroker, i: usize) {
    let topic = format!("churn.t{}", i % TOPICS);
    let mut c = connect(&b.ws_url("/ws")).await;
    c.subscribe(&topic).await;
    c.send(json!({"op": "publish", "topic": topic, "data": i, "id": 2}))
        .await;
    // Its own message (echo is on for `/ws`) before the ack; others' messages may
    // come in between, since other cycles share the topic.
    let mut own = false;
    loop {
        let m = c.recv().await;
        match m["type"].as_str() {
            Some("message") => own |= m["data"].as_u64() == Some(i as u64),
            Some("ack") => break,
            _ => panic!("unexpected: {m}"),
        }
    }
    assert!(own, "cycle {i} got its own message before the ack");
    c.ws.close(None).await.unwrap();
    // Read to the end, so the close handshake completes before the socket is dropped.
    while c.ws.next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_connections_come_and_go_without_leaks() {
    let b = spawn_broker_with(|c| c.history.size = 0).await;
    let fds_before = open_fds();
    let start = Instant::now();
    stream::iter(0..CYCLES)
        .for_each_concurrent(CONCURRENCY, |i| {
            let b = &b;
            async move { cycle(b, i).await }
        })
        .await;
    let took = start.elapsed();
    // The server side of a connection ends a moment after the client's.
    let deadline = Instant::now() + WAIT;
    while b.broker.connections() > 0 || b.broker.registry.topic_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "left behind: {} connections, {} topics",
            b.broker.connections(),
            b.broker.registry.topic_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(b.broker.connections.is_empty(), "the connection table is empty");
    let fds_after = open_fds();
    assert!(
        fds_after <= fds_before + 4,
        "file descriptors: {fds_before} before, {fds_after} after"
    );
    eprintln!("{CYCLES} cycles, {CONCURRENCY} at a time, in {took:?}");
    b.stop().await;
}
