//! Churn without leaks: many connect–subscribe–publish–disconnect cycles, in
//! bounded concurrent batches, leave no connection, no topic and no file
//! descriptor behind, and resident memory where it was after a warm-up.
//!
//! `FANOUT_CHURN_CYCLES=200000 cargo test --test churn -- --nocapture`
//! runs the long version recorded in BENCHMARKS.md.

mod common;

use common::*;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use tokio::time::Instant;

/// Cycles in all unless `FANOUT_CHURN_CYCLES` says otherwise; each is one connection's whole life.
const CYCLES: usize = 20_000;
/// Cycles run before the baseline is taken, so allocator pools and tables have grown once.
const WARM_UP: usize = 2_000;
/// Connections alive at once.
const CONCURRENCY: usize = 200;
/// Topics the cycles share, so topics are created and reaped while others use them.
const TOPICS: usize = 50;

/// File descriptors this process holds now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Resident memory of this process (broker and clients), in KiB, after handing
/// freed heap back to the OS: what is left is what is still held (plus the
/// allocator's fragmentation), so a leak shows and the allocator's caching does not.
fn held_kib() -> u64 {
    fanout::memory::give_back();
    rss_kib()
}

/// Runs cycles `range` with [`CONCURRENCY`] alive at once.
async fn churn(b: &TestBroker, range: std::ops::Range<usize>) {
    stream::iter(range)
        .for_each_concurrent(CONCURRENCY, |i| async move { cycle(b, i).await })
        .await;
}

/// Waits until the broker holds no connection and no topic.
async fn settled(b: &TestBroker) {
    // The server side of a connection ends a moment after the client's, and says so to no one.
    let gone = async || b.broker.connections() == 0 && b.broker.hub.registry.topic_count() == 0;
    assert!(
        holds_by(Instant::now() + WAIT, gone).await,
        "left behind: {} connections, {} topics",
        b.broker.connections(),
        b.broker.hub.registry.topic_count()
    );
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
    let cycles = std::env::var("FANOUT_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES);
    let b = spawn_broker_with(|c| c.history.size = 0).await;
    churn(&b, 0..WARM_UP).await;
    settled(&b).await;
    let (fds_before, rss_before) = (open_fds(), held_kib());
    let start = Instant::now();
    churn(&b, WARM_UP..cycles.max(WARM_UP)).await;
    let took = start.elapsed();
    settled(&b).await;
    assert!(b.broker.hub.connections.is_empty(), "the connection table is empty");
    let (fds_after, rss_after) = (open_fds(), held_kib());
    assert!(
        fds_after <= fds_before + 4,
        "file descriptors: {fds_before} before, {fds_after} after"
    );
    assert!(
        rss_after <= rss_before + rss_before / 10,
        "resident memory grew more than 10%: {rss_before} KiB after the warm-up, {rss_after} KiB after"
    );
    eprintln!(
        "{cycles} cycles, {CONCURRENCY} at a time: {took:?} after a {WARM_UP}-cycle warm-up; \
         fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} KiB, topics 0"
    );
    b.stop().await;
}
