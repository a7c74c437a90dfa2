//! Cluster mode's publish pipeline against a real nats-server: publishes are
//! in flight many at a time (per connection, per batch, per topic) and still
//! get one gap-free seq per topic, in each publisher's order; an idempotent
//! retry on another node is not published twice; a node killed in the middle
//! of a burst loses only what it had not acknowledged.
//!
//! Skipped (loudly) when nats-server is not installed, unless `CI` is set.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::cluster::{next_message, node, subscribe, three_nodes, NATS_WAIT};
use common::nats::NatsServer;
use common::process::BrokerProcess;
use common::{connect, holds_by, http_get, http_json, http_publish, http_publish_once, Client};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Sends `n` publishes to `topic` with ids 1..=n without waiting, then reads their acks:
/// the seq each id got, in id order.
async fn burst(c: &mut Client, topic: &str, n: u64, tag: &str) -> Vec<u64> {
    for id in 1..=n {
        c.send(json!({"op": "publish", "topic": topic, "data": {"from": tag, "id": id}, "id": id}))
            .await;
    }
    let mut seqs = BTreeMap::new();
    while (seqs.len() as u64) < n {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("ack") => {
                seqs.insert(v["id"].as_u64().unwrap(), v["seq"].as_u64().unwrap());
            }
            Some("message") => {}
            _ => panic!("expected acks, got {v}"),
        }
    }
    seqs.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_publishes_on_two_nodes_get_one_gap_free_seq_in_each_publishers_order() {
    let Some(nats) = NatsServer::start("pipeline") else {
        return;
    };
    let [a, b, c] = three_nodes(&nats.url()).await;
    let mut sub = connect(&c.ws_url("/ws")).await;
    subscribe(&mut sub, "race", None).await;
    let n = 300;
    let mut tasks = Vec::new();
    for (tag, node) in [("a", &a), ("b", &b)] {
        let url = node.ws_url("/ws");
        tasks.push(tokio::spawn(async move {
            let mut p = connect(&url).await;
            (tag, burst(&mut p, "race", n, tag).await)
        }));
    }
    let mut all: Vec<u64> = Vec::new();
    let mut acked: HashMap<&str, Vec<u64>> = HashMap::new();
    for t in tasks {
        let (tag, seqs) = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{tag}: its publishes keep their order"
        );
        all.extend(seqs.iter().copied());
        acked.insert(tag, seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=2 * n).collect::<Vec<_>>(), "every seq once, no gap");
    // The subscriber on the third node gets them all, once, in seq order, each with the
    // data its ack promised.
    for seq in 1..=2 * n {
        let m = next_message(&mut sub).await;
        assert_eq!(m["seq"], seq);
        let (tag, id) = (m["data"]["from"].as_str().unwrap(), m["data"]["id"].as_u64().unwrap());
        assert_eq!(acked[tag][id as usize - 1], seq, "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_publishes_its_topics_in_parallel_and_each_topic_in_item_order() {
    let Some(nats) = NatsServer::start("batch") else { return };
    let (a, b) = (node(&nats.url()).await, node(&nats.url()).await);
    let mut sub = connect(&b.ws_url("/ws")).await;
    subscribe(&mut sub, "batch.*", None).await;
    let items: Vec<Value> = (0..200)
        .map(|i| json!({"topic": format!("batch.t{}", i % 20), "data": i}))
        .collect();
    let (status, answers) = http_json(a.addr, "POST", "/api/publish", &Value::Array(items)).await;
    assert_eq!(status, 200, "{answers}");
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 200);
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["topic"], format!("batch.t{}", i % 20));
        assert_eq!(answer["seq"], (i / 20 + 1) as u64, "item {i}: {answer}");
    }
    let mut got: HashMap<String, Vec<u64>> = HashMap::new();
    for _ in 0..200 {
        let m = next_message(&mut sub).await;
        let data = m["data"].as_u64().unwrap();
        assert_eq!(m["seq"], data / 20 + 1, "{m}");
        got.entry(m["topic"].as_str().unwrap().to_owned())
            .or_default()
            .push(data);
    }
    assert_eq!(got.len(), 20);
    for (topic, data) in got {
        assert!(
            data.windows(2).all(|w| w[0] + 20 == w[1]),
            "{topic}: in item order, none twice: {data:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotent_retry_on_another_node_gets_the_first_seq_and_is_delivered_once() {
    let Some(nats) = NatsServer::start("idempotent") else {
        return;
    };
    let [a, b, c] = three_nodes(&nats.url()).await;
    let mut sub = connect(&c.ws_url("/ws")).await;
    subscribe(&mut sub, "pay", None).await;
    http_publish(a.addr, "pay", &json!("before")).await;
    let (status, first) = http_publish_once(a.addr, "pay", &json!({"amount": 5}), "order-17").await;
    assert_eq!(
        (status, first["seq"].as_u64(), first.get("duplicate")),
        (200, Some(2), None),
        "{first}"
    );
    // The client never heard the answer and retries, through another node.
    let (status, retry) = http_publish_once(b.addr, "pay", &json!({"amount": 5}), "order-17").await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(
        (retry["seq"].as_u64(), retry["duplicate"].as_bool()),
        (Some(2), Some(true))
    );
    // A WebSocket retry on the third node is recognised too.
    let mut p = connect(&c.ws_url("/ws")).await;
    p.send(json!({"op": "publish", "topic": "pay", "data": {"amount": 5}, "idempotency_key": "order-17", "id": 9}))
        .await;
    let ack = p.recv().await;
    assert_eq!(
        (ack["seq"].as_u64(), ack["duplicate"].as_bool()),
        (Some(2), Some(true)),
        "{ack}"
    );
    // Another key, or the same key on another topic, is another publish.
    let (_, other) = http_publish_once(b.addr, "pay", &json!({"amount": 6}), "order-18").await;
    assert_eq!(
        (other["seq"].as_u64(), other.get("duplicate")),
        (Some(3), None),
        "{other}"
    );
    let (_, elsewhere) = http_publish_once(b.addr, "refund", &json!(1), "order-17").await;
    assert_eq!(elsewhere["seq"].as_u64(), Some(1), "{elsewhere}");
    let seqs: Vec<(u64, Value)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let m = next_message(&mut sub).await;
            v.push((m["seq"].as_u64().unwrap(), m["data"].clone()));
        }
        v
    };
    assert_eq!(
        seqs,
        [
            (1, json!("before")),
            (2, json!({"amount": 5})),
            (3, json!({"amount": 6}))
        ],
        "the retried publish reached the subscriber once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_in_a_burst_loses_only_what_it_had_not_acknowledged() {
    let Some(nats) = NatsServer::start("killed") else {
        return;
    };
    let survivor = node(&nats.url()).await;
    let mut sub = connect(&survivor.ws_url("/ws")).await;
    subscribe(&mut sub, "burst", None).await;
    let config = format!("[cluster]\nnats_url = \"{}\"\nrequest_timeout = \"3s\"\n", nats.url());
    let mut doomed = BrokerProcess::start("cluster-killed", &config, &[]);
    let ready = async || http_get(doomed.addr, "/readyz", &[]).await.0 == 200;
    assert!(
        holds_by(Instant::now() + NATS_WAIT, ready).await,
        "the node to kill is ready"
    );
    let p = connect(&format!("ws://{}/ws", doomed.addr)).await;
    let (mut tx, mut rx) = p.ws.split();
    // Publishes go out as fast as they can, acks are read as they come; the node dies
    // once 300 are acknowledged, with more in flight.
    let sender = tokio::spawn(async move {
        for id in 1..=20_000u64 {
            let req = json!({"op": "publish", "topic": "burst", "data": id, "id": id});
            if tx.send(Message::Text(req.to_string().into())).await.is_err() {
                break;
            }
        }
    });
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut killed = false;
    while let Some(Ok(frame)) = rx.next().await {
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["type"] == "ack" {
            acked.insert(v["seq"].as_u64().unwrap(), v["id"].as_u64().unwrap());
        }
        if acked.len() >= 300 && !killed {
            doomed.kill();
            killed = true;
        }
    }
    sender.abort();
    assert!(killed && acked.len() >= 300, "{} acks", acked.len());
    // Everything stored before the death comes first, then this marker.
    let marker = http_publish(survivor.addr, "burst", &json!("marker")).await;
    let last_acked = *acked.keys().next_back().unwrap();
    assert!(marker > last_acked, "the marker comes after every acknowledged publish");
    for seq in 1..marker {
        let m = next_message(&mut sub).await;
        assert_eq!(m["seq"], seq, "gap-free: {m}");
        if let Some(id) = acked.get(&seq) {
            assert_eq!(m["data"], *id, "an acknowledged publish arrived as acknowledged");
        }
    }
    assert_eq!(next_message(&mut sub).await["data"], "marker");
}
