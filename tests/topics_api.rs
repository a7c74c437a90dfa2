//! The topics API over real sockets: listing (paged, by prefix and by
//! pattern), one topic's snapshot with its publish rate, history pages, the
//! MessagePack answers, and bad input.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn lists_topics_in_name_order_paged_and_filtered() {
    let b = spawn_broker().await;
    for t in ["x.c", "x.a", "y.a", "x.b.deep"] {
        http_publish(b.addr, t, &json!(1)).await;
    }
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, v) = get_json(b.addr, "/api/topics?limit=2").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(names(&v), ["x.a", "x.b.deep"]);
    assert_eq!(v["next"], "x.b.deep");
    let (_, v) = get_json(b.addr, "/api/topics?limit=2&after=x.b.deep").await;
    assert_eq!(names(&v), ["x.c", "y.a"]);
    assert_eq!(v["next"], json!(null));
    let (_, v) = get_json(b.addr, "/api/topics?prefix=x.").await;
    assert_eq!(names(&v), ["x.a", "x.b.deep", "x.c"]);
    let (_, v) = get_json(b.addr, "/api/topics?pattern=x.*").await;
    assert_eq!(names(&v), ["x.a", "x.c"]);
    b.stop().await;
}

#[tokio::test]
async fn a_topic_snapshot_has_subscribers_seq_retained_and_rate() {
    let b = spawn_broker().await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.subscribe("snap").await;
    for i in 1..=5 {
        http_publish(b.addr, "snap", &json!(i)).await;
    }
    let (status, v) = get_json(b.addr, "/api/topics/snap").await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["subscribers"].clone(), v["seq"].clone(), v["retained"].clone()),
        (json!(1), json!(5), json!(5))
    );
    assert!(v["rate"].as_f64().is_some(), "{v}");
    let (status, _) = get_json(b.addr, "/api/topics/none.here").await;
    assert_eq!(status, 404);
    b.stop().await;
}

#[tokio::test]
async fn history_pages_after_since_with_a_limit_and_a_gap() {
    let b = spawn_broker_with(|c| c.history.size = 4).await;
    for i in 1..=6 {
        http_publish(b.addr, "h", &json!({"n": i})).await;
    }
    let (status, v) = get_json(b.addr, "/api/topics/h/history?since=0&limit=2").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["gap"], json!({"from": 1, "to": 2}));
    assert_eq!(v["messages"][0]["data"], json!({"n": 3}));
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    assert_eq!(v["seq"], 4, "the next page starts after the last message returned");
    let (_, v) = get_json(b.addr, "/api/topics/h/history?since=4").await;
    let seqs: Vec<_> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].clone())
        .collect();
    assert_eq!(seqs, vec![json!(5), json!(6)]);
    b.stop().await;
}

#[tokio::test]
async fn answers_in_msgpack_when_asked() {
    let b = spawn_broker().await;
    http_publish(b.addr, "mp", &json!({"k": "v"})).await;
    let accept = [("accept", "application/msgpack")];
    let (status, body) = http_get(b.addr, "/api/topics/mp/history", &accept).await;
    assert_eq!(status, 200);
    let v = msgpack_to_json(&body);
    assert_eq!(v["messages"][0]["data"], json!({"k": "v"}));
    let (_, body) = http_get(b.addr, "/api/topics/mp", &accept).await;
    assert_eq!(msgpack_to_json(&body)["seq"], 1);
    let (_, body) = http_get(b.addr, "/api/topics", &accept).await;
    assert_eq!(msgpack_to_json(&body)["topics"][0]["topic"], "mp");
    b.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_problem() {
    let b = spawn_broker_with(|c| c.http.max_limit = 10).await;
    http_publish(b.addr, "t", &json!(1)).await;
    for (path, needle) in [
        ("/api/topics?limit=11", "limit"),
        ("/api/topics?limit=0", "limit"),
        ("/api/topics?pattern=a..b", "empty token"),
        ("/api/topics/a%20b", "character"),
        ("/api/topics/t/history?since=x", "since"),
        ("/api/topics/t/history?since=2", "beyond"),
        ("/api/topics/t/history?limit=50", "over the maximum"),
    ] {
        let (status, v) = get_json(b.addr, path).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    b.stop().await;
}
