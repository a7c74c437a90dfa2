//! Idempotent publishing on one node: a publish retried with the same key on
//! the same topic, by any way in, gets the first publish's seq and reaches no
//! subscriber again; a key is per topic; a bad key is refused by name.

mod common;

use common::*;
use serde_json::{json, Value};

/// The messages `c` gets until `marker` arrives (data of each).
async fn data_until(c: &mut Client, marker: &str) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let m = c.recv().await;
        assert_eq!(m["type"], "message", "{m}");
        if m["data"] == marker {
            return got;
        }
        got.push(m["data"].clone());
    }
}

#[tokio::test]
async fn a_retry_by_any_way_in_gets_the_first_seq_and_is_delivered_once() {
    let b = spawn_broker().await;
    let mut sub = connect(&b.ws_url("/ws")).await;
    sub.subscribe("orders").await;
    // HTTP, with the header.
    let (status, first) = http_publish_once(b.addr, "orders", &json!({"n": 1}), "a-1").await;
    assert_eq!(
        (status, first["seq"].as_u64(), first.get("duplicate")),
        (200, Some(1), None),
        "{first}"
    );
    let (status, again) = http_publish_once(b.addr, "orders", &json!({"n": 1}), "a-1").await;
    assert_eq!(status, 200);
    assert_eq!(
        (again["seq"].as_u64(), again["duplicate"].as_bool()),
        (Some(1), Some(true)),
        "{again}"
    );
    // The same key over /ws, in JSON and in MessagePack: still the first publish.
    for url in ["/ws", "/ws?format=msgpack"] {
        let mut p = connect(&b.ws_url(url)).await;
        p.send(json!({"op": "publish", "topic": "orders", "data": {"n": 1}, "idempotency_key": "a-1", "id": 7}))
            .await;
        let ack = p.recv().await;
        assert_eq!(
            (ack["type"].as_str(), ack["seq"].as_u64(), ack["duplicate"].as_bool()),
            (Some("ack"), Some(1), Some(true)),
            "{url}: {ack}"
        );
    }
    // A new key over /ws is a new publish, and its retry in a batch is not.
    let mut p = connect(&b.ws_url("/ws")).await;
    p.send(json!({"op": "publish", "topic": "orders", "data": {"n": 2}, "idempotency_key": "a-2", "id": 8}))
        .await;
    let ack = p.recv().await;
    assert_eq!((ack["seq"].as_u64(), ack.get("duplicate")), (Some(2), None), "{ack}");
    let batch = json!([
        {"topic": "orders", "data": {"n": 2}, "idempotency_key": "a-2"},
        {"topic": "orders", "data": {"n": 3}, "idempotency_key": "a-3"},
        {"topic": "orders", "data": {"n": 3}, "idempotency_key": "a-3"},
        {"topic": "refunds", "data": {"n": 1}, "idempotency_key": "a-1"},
    ]);
    let (status, answers) = http_json(b.addr, "POST", "/api/publish", &batch).await;
    assert_eq!(status, 200, "{answers}");
    let seen: Vec<(Option<u64>, Option<bool>)> = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["seq"].as_u64(), a["duplicate"].as_bool()))
        .collect();
    assert_eq!(
        seen,
        [
            (Some(2), Some(true)),
            (Some(3), None),
            (Some(3), Some(true)),
            (Some(1), None)
        ],
        "a key is per topic: `a-1` on refunds is its first use"
    );
    http_publish(b.addr, "orders", &json!("end")).await;
    assert_eq!(
        data_until(&mut sub, "end").await,
        [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})],
        "every retry left the subscriber alone"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_key_that_is_not_visible_ascii_is_refused_by_name() {
    let b = spawn_broker().await;
    let long = "k".repeat(256);
    for key in ["has space", long.as_str()] {
        let (status, e) = http_publish_once(b.addr, "orders", &json!(1), key).await;
        assert_eq!(status, 400, "{e}");
        assert!(e["message"].as_str().unwrap().contains("idempotency key"), "{e}");
    }
    let mut p = connect(&b.ws_url("/ws")).await;
    p.send(json!({"op": "publish", "topic": "orders", "data": 1, "idempotency_key": 17, "id": 3}))
        .await;
    let e = p.recv().await;
    assert_eq!((e["type"].as_str(), e["id"].as_u64()), (Some("error"), Some(3)), "{e}");
    assert!(e["message"].as_str().unwrap().contains("idempotency_key"), "{e}");
    let (status, answers) = http_json(
        b.addr,
        "POST",
        "/api/publish",
        &json!([{"topic": "orders", "data": 1, "idempotency_key": ["x"]}]),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        answers[0]["error"]["message"].as_str().unwrap().contains("item 0"),
        "{answers}"
    );
    let (_, topic) = get_json(b.addr, "/api/topics/orders").await;
    assert_eq!(topic["code"], "not_found", "nothing was published: {topic}");
    b.stop().await;
}
