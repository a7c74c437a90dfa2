//! `$sys.stats`: the broker publishes a snapshot once a second to a normal
//! topic; clients read it like any other and cannot publish to it, and the
//! broker's own topics stay out of topic counts, listings and wildcards.

mod common;

use common::*;
use serde_json::{json, Value};

/// The fields every snapshot carries (docs/protocol.md, "`$sys.stats`").
const FIELDS: [&str; 9] = [
    "connections",
    "subscriptions",
    "topics",
    "messages_in_per_s",
    "messages_out_per_s",
    "bytes_out_per_s",
    "drops_per_s",
    "p99_delivery_ms",
    "uptime_s",
];

/// The next `$sys.stats` message on `c`, skipping anything else.
async fn next_stats(c: &mut Client) -> Value {
    loop {
        let m = c.recv().await;
        if m["type"] == "message" && m["topic"] == "$sys.stats" {
            return m;
        }
    }
}

#[tokio::test]
async fn a_snapshot_with_every_field_arrives_each_second_over_websocket() {
    let b = spawn_broker().await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.subscribe("$sys.stats").await;
    let first = next_stats(&mut c).await;
    let second = next_stats(&mut c).await;
    assert_eq!(second["seq"].as_u64(), Some(first["seq"].as_u64().unwrap() + 1));
    // One a second: the timer never fires early (a lower bound, so it cannot flake on a slow
    // machine; the slack covers the wall clock that stamps `ts` against the monotonic timer).
    let apart = second["ts"].as_u64().unwrap() - first["ts"].as_u64().unwrap();
    assert!(apart >= 900, "snapshots {apart} ms apart");
    let data = &second["data"];
    for field in FIELDS {
        assert!(data.get(field).is_some(), "no `{field}` in {data}");
    }
    assert!(data["connections"].as_u64().unwrap() >= 1, "{data}");
    assert_eq!(data["subscriptions"], 1, "{data}");
    assert_eq!(data["topics"], 0, "$sys.stats itself is not counted: {data}");
    for rate in [
        "messages_in_per_s",
        "messages_out_per_s",
        "bytes_out_per_s",
        "drops_per_s",
    ] {
        assert!(data[rate].is_number(), "{rate} in {data}");
    }
    b.stop().await;
}

#[tokio::test]
async fn snapshots_count_what_clients_do() {
    let b = spawn_broker().await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.subscribe("$sys.stats").await;
    c.subscribe("feed.a").await;
    for i in 0..5 {
        http_publish(b.addr, "feed.a", &json!({"i": i})).await;
    }
    // Writers add their counts at most once a second, so the outgoing side may show up a
    // snapshot or two after the incoming one; a handful of snapshots is plenty.
    let (mut saw_in, mut saw_out, mut saw_p99) = (false, false, false);
    for _ in 0..10 {
        let data = next_stats(&mut c).await["data"].clone();
        assert_eq!(data["topics"], 1, "feed.a only: {data}");
        assert_eq!(data["subscriptions"], 2, "{data}");
        saw_in |= data["messages_in_per_s"].as_f64().unwrap() > 0.0;
        saw_out |= data["messages_out_per_s"].as_f64().unwrap() > 0.0;
        saw_p99 |= data["p99_delivery_ms"].is_number();
        if saw_in && saw_out && saw_p99 {
            break;
        }
    }
    assert!(
        saw_in && saw_out && saw_p99,
        "in {saw_in}, out {saw_out}, p99 {saw_p99}"
    );
    b.stop().await;
}

#[tokio::test]
async fn clients_cannot_publish_to_broker_topics() {
    let b = spawn_broker().await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.send(json!({"op": "publish", "topic": "$sys.stats", "data": {"fake": true}, "id": 7}))
        .await;
    let e = c.recv().await;
    assert_eq!((e["type"].as_str(), e["id"].as_u64()), (Some("error"), Some(7)), "{e}");
    assert_eq!(e["code"], "forbidden");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("$sys.stats") && message.contains("cannot publish"),
        "{message}"
    );

    let (status, body) = http_json(b.addr, "POST", "/api/publish/$sys.other", &json!(1)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    assert!(body["message"].as_str().unwrap().contains("$sys.other"), "{body}");
    b.stop().await;
}

#[tokio::test]
async fn broker_topics_stay_out_of_counts_listings_and_leading_wildcards() {
    let b = spawn_broker().await;
    let mut everything = connect(&b.ws_url("/ws")).await;
    everything.subscribe(">").await;
    let mut stats = connect(&b.ws_url("/ws")).await;
    stats.subscribe("$sys.*").await;
    next_stats(&mut stats).await;
    assert_eq!(b.broker.hub.registry.topic_count(), 0);
    let (_, list) = get_json(b.addr, "/api/topics").await;
    assert_eq!(list["topics"], json!([]), "{list}");
    let (_, list) = get_json(b.addr, "/api/topics?prefix=$").await;
    assert_eq!(list["topics"][0]["topic"], "$sys.stats", "{list}");
    // `>` saw no snapshot: the first message it gets is the one published next.
    http_publish(b.addr, "x.y", &json!("after")).await;
    let m = everything.recv().await;
    assert_eq!(
        (m["topic"].as_str(), m["data"].as_str()),
        (Some("x.y"), Some("after")),
        "{m}"
    );
    b.stop().await;
}
