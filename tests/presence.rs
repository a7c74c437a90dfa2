//! Presence over real sockets: join and leave notices with counts to a
//! room's subscribers, the `presence` op and its HTTP twin (member list
//! capped), and topics without presence refusing the query.

mod common;

use common::*;
use fanout::config::TopicRule;
use serde_json::json;

async fn broker() -> TestBroker {
    spawn_broker_with(|c| {
        c.presence.max_members_listed = 2;
        c.topics.push(TopicRule {
            pattern: "chat.>".into(),
            history_size: None,
            ttl: None,
            last_value: false,
            policy: None,
            presence: true,
            compression: None,
        });
    })
    .await
}

#[tokio::test]
async fn joins_and_leaves_are_announced_with_the_count() {
    let b = broker().await;
    let mut alice = connect(&b.ws_url("/ws")).await;
    alice.subscribe("chat.room1").await;
    let me = alice.recv().await;
    assert_eq!((me["type"].as_str(), me["count"].as_u64()), (Some("join"), Some(1)));
    let mut bob = connect(&b.ws_url("/ws")).await;
    bob.subscribe("chat.room1").await;
    let j = alice.recv().await;
    assert_eq!(j["type"], "join");
    assert_eq!(
        (j["topic"].as_str(), j["count"].as_u64()),
        (Some("chat.room1"), Some(2))
    );
    let bob_id = j["client"].as_str().unwrap().to_string();
    assert_ne!(bob_id, me["client"].as_str().unwrap());
    assert_eq!(bob.recv().await["type"], "join", "bob sees his own join");
    // An SSE client is a member too.
    let mut carol = sse_connect(b.addr, "/sse/chat.room1", &[]).await;
    assert_eq!(carol.next_event().await.json()["count"], 3);
    assert_eq!(alice.recv().await["count"], 3);
    bob.close().await;
    let l = alice.recv().await;
    assert_eq!(
        l,
        json!({"type": "leave", "topic": "chat.room1", "client": bob_id, "count": 2})
    );
    let l = carol.next_event().await;
    assert_eq!((l.event.as_str(), l.json()["count"].clone()), ("leave", json!(2)));
    b.stop().await;
}

#[tokio::test]
async fn presence_answers_the_count_and_a_capped_member_list() {
    let b = broker().await;
    let mut members = Vec::new();
    for _ in 0..3 {
        let mut c = connect(&b.ws_url("/ws")).await;
        c.subscribe("chat.big").await;
        members.push(c);
    }
    let mut asker = connect(&b.ws_url("/ws")).await;
    asker
        .send(json!({"op": "presence", "topic": "chat.big", "id": 6}))
        .await;
    let p = asker.recv().await;
    assert_eq!(
        (p["type"].as_str(), p["id"].as_u64(), p["count"].as_u64()),
        (Some("presence"), Some(6), Some(3))
    );
    assert_eq!(
        p["members"].as_array().unwrap().len(),
        2,
        "capped by presence.max_members_listed"
    );
    let (status, v) = get_json(b.addr, "/api/topics/chat.big/presence").await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["count"].clone(), v["members"].as_array().unwrap().len()),
        (json!(3), 2)
    );
    let (_, v) = get_json(b.addr, "/api/topics/chat.big").await;
    assert_eq!(v["members"], 3);
    b.stop().await;
}

#[tokio::test]
async fn topics_without_presence_refuse_the_query() {
    let b = broker().await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.send(json!({"op": "presence", "topic": "news", "id": 1})).await;
    let e = c.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("bad_request"))
    );
    assert!(e["message"].as_str().unwrap().contains("presence = true"), "{e}");
    let (status, _) = get_json(b.addr, "/api/topics/news/presence").await;
    assert_eq!(status, 400);
    b.stop().await;
}
