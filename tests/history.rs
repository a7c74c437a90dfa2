//! History and recovery over real sockets: `since` replay with no duplicate
//! and no hole while publishers run, exact `gap` notices, ttl expiry without
//! a publish, last value on a history-0 topic, and the ack's seq.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use fanout::config::TopicRule;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

fn rule(pattern: &str) -> TopicRule {
    TopicRule {
        pattern: pattern.into(),
        history_size: None,
        ttl: None,
        last_value: false,
        policy: None,
        presence: false,
        compression: None,
    }
}

/// Reads messages of `topic` until seq `last`, asserting each seq follows the previous.
async fn expect_consecutive(c: &mut Client, first: u64, last: u64) {
    let mut expected = first;
    while expected <= last {
        let m = c.recv().await;
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(m["seq"], expected, "no duplicate, no hole");
        expected += 1;
    }
}

#[tokio::test]
async fn since_joins_replay_and_live_exactly_while_publishers_run() {
    const TOTAL: u64 = 4000;
    /// `(since, joins once the topic has reached this seq)`: each subscriber joins at its
    /// own point of the stream, replays what follows `since` up to there, then goes live.
    const JOINS: [(u64, u64); 4] = [(0, 10), (5, 200), (50, 1000), (500, 2000)];
    /// The publisher holds this message back until every subscriber has joined, so each
    /// joins with live messages still to come.
    const HOLD: u64 = 3000;
    let b = spawn_broker_with(|c| {
        c.history.size = TOTAL as usize;
        c.queue.max_messages = 100_000;
        c.queue.max_bytes = 1 << 28;
    })
    .await;
    // A watcher subscribed before the first publish tells the others how far the topic
    // has got, until the last of them may join.
    let last_join = JOINS.iter().map(|&(_, join_at)| join_at).max().unwrap();
    let (reached, seen) = tokio::sync::watch::channel(0u64);
    let mut watcher = connect(&b.ws_url("/ws")).await;
    watcher.subscribe("race").await;
    let watching = tokio::spawn(async move {
        let mut seq = 0;
        while seq < last_join {
            seq = watcher.recv().await["seq"].as_u64().unwrap();
            reached.send_replace(seq);
        }
        watcher.close().await;
    });
    // Subscribers join at different points of the stream with different `since`, while
    // publishing runs. Connected beforehand, so that joining is one request.
    let joined = Arc::new(Semaphore::new(0));
    let mut checks = Vec::new();
    for (since, join_at) in JOINS {
        let mut c = connect(&b.ws_url("/ws")).await;
        let mut seen = seen.clone();
        let joined = Arc::clone(&joined);
        checks.push(tokio::spawn(async move {
            let reached = tokio::time::timeout(WAIT, seen.wait_for(|&seq| seq >= join_at));
            reached
                .await
                .expect("the topic reaches the join point in time")
                .unwrap();
            c.send(json!({"op": "subscribe", "topic": "race", "since": since, "id": 1}))
                .await;
            let ack = c.recv().await;
            assert_eq!(
                (&ack["type"], &ack["recovered"]),
                (&json!("ack"), &json!(true)),
                "{ack}"
            );
            let at = ack["seq"].as_u64().unwrap();
            assert!(
                (join_at..HOLD).contains(&at),
                "joined at seq {at}: after {join_at}, before the publisher's hold at {HOLD}"
            );
            joined.add_permits(1);
            expect_consecutive(&mut c, since + 1, TOTAL).await;
        }));
    }
    let mut p = connect(&b.ws_url("/ws")).await;
    for i in 1..=TOTAL {
        if i == HOLD {
            let every = joined.acquire_many(JOINS.len() as u32);
            let _all = tokio::time::timeout(WAIT, every)
                .await
                .expect("every subscriber joins in time");
        }
        p.send(json!({"op": "publish", "topic": "race", "data": i})).await;
    }
    // A ping answered means every publish before it was handled.
    p.send(json!({"op": "ping", "id": 1})).await;
    loop {
        if p.recv().await["type"] == "pong" {
            break;
        }
    }
    p.close().await;
    for c in checks {
        c.await.unwrap();
    }
    watching.await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn a_gap_notice_names_exactly_what_history_lost() {
    let b = spawn_broker_with(|c| c.history.size = 5).await;
    for i in 1..=20 {
        http_publish(b.addr, "g", &json!(i)).await;
    }
    let mut c = connect(&b.ws_url("/ws")).await;
    c.send(json!({"op": "subscribe", "topic": "g", "since": 3, "id": 1}))
        .await;
    let ack = c.recv().await;
    assert_eq!(
        (ack["seq"].as_u64(), ack["recovered"].as_bool()),
        (Some(20), Some(true)),
        "{ack}"
    );
    assert_eq!(
        c.recv().await,
        json!({"type": "gap", "topic": "g", "from": 4, "to": 15, "reason": "history"})
    );
    expect_consecutive(&mut c, 16, 20).await;
    b.stop().await;
}

#[tokio::test]
async fn msgpack_and_raw_sockets_replay_after_since() {
    let b = spawn_broker().await;
    for i in 1..=4 {
        http_publish(b.addr, "mp", &json!(i)).await;
    }
    let mut c = connect(&b.ws_url("/ws?format=msgpack")).await;
    c.send(json!({"op": "subscribe", "topic": "mp", "since": 2, "id": 1}))
        .await;
    assert_eq!(c.recv().await["seq"], 4, "the ack carries the current seq");
    expect_consecutive(&mut c, 3, 4).await;
    let mut raw = connect(&b.ws_url("/ws/t/mp?since=3")).await;
    assert_eq!(raw.next().await, Got::Text("4".into()));
    b.stop().await;
}

/// The retained count of `topic`, `None` once the topic is gone (404).
async fn retained(b: &TestBroker, topic: &str) -> Option<u64> {
    match get_json(b.addr, &format!("/api/topics/{topic}")).await {
        (200, v) => Some(v["retained"].as_u64().unwrap()),
        (404, _) => None,
        (status, v) => panic!("GET /api/topics/{topic}: {status} {v}"),
    }
}

#[tokio::test]
async fn history_expires_by_ttl_without_a_publish() {
    let b = spawn_broker_with(|c| c.history.ttl = Duration::from_millis(500)).await;
    for i in 1..=3 {
        http_publish(b.addr, "ttl", &json!(i)).await;
    }
    assert_eq!(retained(&b, "ttl").await, Some(3));
    // Nothing signals the sweeper's pass (once a second): watch the topic until its history is gone.
    eventually("the sweeper drops the expired history of `ttl`", async || {
        retained(&b, "ttl").await.is_none_or(|n| n == 0)
    })
    .await;
    assert_eq!(
        retained(&b, "ttl").await,
        None,
        "an expired, unsubscribed topic is removed"
    );
    b.stop().await;
}

#[tokio::test]
async fn expired_messages_become_a_gap_for_a_live_topic() {
    let b = spawn_broker_with(|c| c.history.ttl = Duration::from_millis(300)).await;
    let mut keeper = connect(&b.ws_url("/ws")).await;
    keeper.subscribe("ttl2").await;
    for i in 1..=3 {
        http_publish(b.addr, "ttl2", &json!(i)).await;
    }
    // The topic stays (it has a subscriber); the sweeper empties its history.
    eventually("the sweeper drops the expired history of `ttl2`", async || {
        retained(&b, "ttl2").await == Some(0)
    })
    .await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.send(json!({"op": "subscribe", "topic": "ttl2", "since": 0, "id": 1}))
        .await;
    assert_eq!(c.recv().await["seq"], 3);
    assert_eq!(
        c.recv().await,
        json!({"type": "gap", "topic": "ttl2", "from": 1, "to": 3, "reason": "history"})
    );
    b.stop().await;
}

#[tokio::test]
async fn last_value_reaches_new_subscribers_at_once_even_with_history_0() {
    let b = spawn_broker_with(|c| {
        c.topics.push(TopicRule {
            history_size: Some(0),
            last_value: true,
            ..rule("quotes.>")
        })
    })
    .await;
    for p in [100, 101, 102] {
        http_publish(b.addr, "quotes.X", &json!({"price": p})).await;
    }
    let mut c = connect(&b.ws_url("/ws")).await;
    let ack = c.subscribe("quotes.X").await;
    assert_eq!(ack["seq"], 3, "a snapshot loaded elsewhere can line up with the stream");
    let m = c.recv().await;
    assert_eq!((m["seq"].clone(), m["data"].clone()), (json!(3), json!({"price": 102})));
    // Pattern subscribers get the last value of every matching topic.
    http_publish(b.addr, "quotes.Y", &json!({"price": 7})).await;
    let mut p = connect(&b.ws_url("/ws")).await;
    p.subscribe("quotes.*").await;
    let mut topics: Vec<Value> = vec![p.recv().await["topic"].clone(), p.recv().await["topic"].clone()];
    topics.sort_by_key(|t| t.to_string());
    assert_eq!(topics, vec![json!("quotes.X"), json!("quotes.Y")]);
    b.stop().await;
}

#[tokio::test]
async fn a_resume_from_an_earlier_life_of_the_topic_is_acked_as_not_recovered() {
    let b = spawn_broker().await;
    for i in 1..=2 {
        http_publish(b.addr, "s", &json!(i)).await;
    }
    let mut c = connect(&b.ws_url("/ws")).await;
    // A seq the topic never reached: the client's seqs are from before a restart.
    c.send(json!({"op": "subscribe", "topic": "s", "since": 9, "id": 4}))
        .await;
    let ack = c.recv().await;
    assert_eq!((ack["type"].as_str(), ack["id"].as_u64()), (Some("ack"), Some(4)));
    assert_eq!(
        (ack["seq"].as_u64(), ack["recovered"].as_bool()),
        (Some(2), Some(false))
    );
    let epoch = ack["epoch"]
        .as_str()
        .expect("an exact topic's ack carries its epoch")
        .to_owned();
    assert_eq!(epoch.len(), 16);
    http_publish(b.addr, "s", &json!(3)).await;
    assert_eq!(c.recv().await["seq"], 3, "live from the current seq");
    // The same epoch resumes exactly; another epoch's seqs are other messages.
    for (epoch, recovered, first) in [(epoch.as_str(), true, 2), ("0123456789abcdef", false, 4)] {
        let mut c = connect(&b.ws_url("/ws")).await;
        c.send(json!({"op": "subscribe", "topic": "s", "since": 1, "epoch": epoch, "id": 1}))
            .await;
        let ack = c.recv().await;
        assert_eq!(ack["recovered"].as_bool(), Some(recovered), "{ack}");
        if !recovered {
            http_publish(b.addr, "s", &json!(4)).await;
        }
        assert_eq!(c.recv().await["seq"], first);
    }
    b.stop().await;
}

#[tokio::test]
async fn a_since_that_is_not_a_number_is_an_error() {
    let b = spawn_broker().await;
    http_publish(b.addr, "s", &json!(1)).await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.send(json!({"op": "subscribe", "topic": "s", "since": "x", "id": 5}))
        .await;
    let e = c.recv().await;
    assert!(e["message"].as_str().unwrap().contains("`since`"), "{e}");
    let (status, body) = http_get(b.addr, "/ws/t/s?since=abc", &[("upgrade", "websocket")]).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    b.stop().await;
}
