//! A stalled reader under each overflow policy: it loses messages (and is
//! told exactly which, with `gap` notices) or is disconnected, while a fast
//! reader on the same topic gets every message in order, and the publisher
//! never waits.

mod common;

use std::collections::BTreeSet;

use common::*;
use fanout::config::Policy;
use serde_json::{json, Value};

const MESSAGES: u64 = 3000;

async fn run(policy: Policy) -> (Vec<Value>, Option<u16>) {
    let b = spawn_broker_with(|c| {
        c.queue.policy = policy;
        c.queue.max_messages = 256;
        c.queue.max_bytes = 1 << 20;
    })
    .await;
    let mut fast = connect(&b.ws_url("/ws")).await;
    fast.subscribe("feed").await;
    let mut slow = stalled_client(&b).await;
    slow.subscribe("feed").await;
    let padding = "x".repeat(1000);
    // Publish over HTTP in batches: the publisher never waits on the stalled reader.
    let fast_reader = tokio::spawn(async move {
        for seq in 1..=MESSAGES {
            let m = fast.recv().await;
            assert_eq!(m["type"], "message");
            assert_eq!(m["seq"], seq, "the fast reader gets every message in order");
        }
    });
    for chunk in (1..=MESSAGES).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"topic": "feed", "data": {"i": i, "p": padding}}))
            .collect();
        let (status, _) = http_json(b.addr, "POST", "/api/publish", &Value::Array(batch)).await;
        assert_eq!(status, 200);
    }
    fast_reader.await.unwrap();
    // Now the stalled reader reads everything it was left.
    let mut got = Vec::new();
    let mut close = None;
    loop {
        match slow.next().await {
            Got::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let last = v["type"] == "message" && v["seq"] == MESSAGES;
                let gap_to_end = v["type"] == "gap" && v["to"] == MESSAGES;
                got.push(v);
                if last || gap_to_end {
                    break;
                }
            }
            Got::Close(c) => {
                close = c.map(|c| c.0);
                break;
            }
            Got::Ended => break,
            Got::Binary(_) => panic!("binary frame on a JSON connection"),
        }
    }
    b.stop().await;
    (got, close)
}

/// Every seq is either delivered or announced in a gap, in order, with no duplicate.
fn assert_accounted(got: &[Value]) -> (usize, usize) {
    let mut seen = BTreeSet::new();
    let mut last = 0;
    let (mut delivered, mut gaps) = (0, 0);
    for v in got {
        let (from, to) = match v["type"].as_str().unwrap() {
            "message" => {
                delivered += 1;
                let s = v["seq"].as_u64().unwrap();
                (s, s)
            }
            "gap" => {
                gaps += 1;
                assert_eq!(v["reason"], "slow_consumer");
                (v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap())
            }
            other => panic!("unexpected {other}"),
        };
        assert_eq!(from, last + 1, "no hole and no duplicate before {v}");
        for s in from..=to {
            assert!(seen.insert(s));
        }
        last = to;
    }
    assert_eq!(last, MESSAGES, "every message is delivered or announced");
    (delivered, gaps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_loses_old_messages_and_says_which() {
    let (got, close) = run(Policy::DropOldest).await;
    assert_eq!(close, None);
    let (delivered, gaps) = assert_accounted(&got);
    assert!(gaps >= 1 && delivered < MESSAGES as usize);
    assert_eq!(got.last().unwrap()["seq"], MESSAGES, "the newest message survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_keeps_old_messages_and_says_which() {
    let (got, close) = run(Policy::DropNewest).await;
    assert_eq!(close, None);
    let (delivered, gaps) = assert_accounted(&got);
    assert!(gaps >= 1 && delivered < MESSAGES as usize);
    assert_eq!(got.last().unwrap()["type"], "gap", "the newest messages were dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflate_keeps_the_newest_and_says_which() {
    let (got, close) = run(Policy::Conflate).await;
    assert_eq!(close, None);
    let (delivered, gaps) = assert_accounted(&got);
    assert!(gaps >= 1 && delivered < MESSAGES as usize);
    assert_eq!(got.last().unwrap()["seq"], MESSAGES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_closes_the_stalled_reader_with_1008() {
    let (got, close) = run(Policy::Disconnect).await;
    // The close frame reaches the client unless its socket was full mid-frame,
    // in which case the connection is dropped; either way it stops short.
    if let Some(code) = close {
        assert_eq!(code, 1008);
    }
    assert!(got.len() < MESSAGES as usize, "the stalled reader was cut off");
}
