//! Long-polling over real sockets: an answer at once when messages exist,
//! a wait that ends with the next message, a timeout with an empty list, a
//! gap when history cannot cover `since`, and bad input.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test]
async fn answers_at_once_with_what_is_after_since() {
    let b = spawn_broker().await;
    for i in 1..=3 {
        http_publish(b.addr, "p", &json!(i)).await;
    }
    let (status, v) = get_json(b.addr, "/api/poll/p?since=1&timeout=5").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["seq"], 3);
    let seqs: Vec<_> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].clone())
        .collect();
    assert_eq!(seqs, vec![json!(2), json!(3)]);
    assert_eq!(v["messages"][0]["data"], 2);
    assert!(v.get("gap").is_none());
    b.stop().await;
}

#[tokio::test]
async fn waits_for_the_next_message() {
    let b = spawn_broker().await;
    http_publish(b.addr, "w", &json!(1)).await;
    let addr = b.addr;
    let poll = tokio::spawn(async move { get_json(addr, "/api/poll/w?since=1&timeout=10").await });
    // A waiting poll is one of the topic's subscribers until it answers.
    eventually("the poll waits on `w`", async || {
        get_json(addr, "/api/topics/w").await.1["subscribers"] == 1
    })
    .await;
    assert!(!poll.is_finished(), "nothing after 1 yet: the poll waits");
    http_publish(b.addr, "w", &json!("next")).await;
    let (status, v) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["seq"], 2);
    assert_eq!(v["messages"][0]["data"], "next");
    b.stop().await;
}

#[tokio::test]
async fn times_out_with_an_empty_list_capped_by_config() {
    let b = spawn_broker_with(|c| c.http.poll_max_timeout = Duration::from_millis(500)).await;
    let started = Instant::now();
    let (status, v) = get_json(b.addr, "/api/poll/quiet?timeout=30").await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(v, json!({"topic": "quiet", "seq": 0, "messages": []}));
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "{took:?}"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_gap_field_says_what_history_cannot_cover() {
    let b = spawn_broker_with(|c| c.history.size = 2).await;
    for i in 1..=5 {
        http_publish(b.addr, "gp", &json!(i)).await;
    }
    let (_, v) = get_json(b.addr, "/api/poll/gp?since=0").await;
    assert_eq!(v["gap"], json!({"from": 1, "to": 3}));
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    assert_eq!(v["seq"], 5);
    b.stop().await;
}

#[tokio::test]
async fn a_since_from_before_a_restart_waits_from_the_current_seq() {
    let b = spawn_broker().await;
    http_publish(b.addr, "r", &json!(1)).await;
    let (status, v) = get_json(b.addr, "/api/poll/r?since=7&timeout=0.2").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"topic": "r", "seq": 1, "messages": []}), "stands at 1 now");
    b.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_problem() {
    let b = spawn_broker().await;
    http_publish(b.addr, "b", &json!(1)).await;
    for (path, needle) in [
        ("/api/poll/a..b", "empty token"),
        ("/api/poll/b?since=x", "since"),
        ("/api/poll/b?timeout=soon", "timeout"),
        ("/api/poll/b?limit=100000", "limit"),
    ] {
        let (status, v) = get_json(b.addr, path).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    b.stop().await;
}
