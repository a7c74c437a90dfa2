//! Server-Sent Events over real sockets: events with seq ids, heartbeats,
//! resume with `Last-Event-ID` after a dropped connection (one topic and
//! several), gap events, and bad input answered with a JSON 400; and the
//! payload-only streams of `/sse/t/{topic}` (text, JSON, MessagePack,
//! binary, ids and resume, gaps, patterns refused).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_stream_sends_messages_with_seq_ids_and_heartbeats() {
    let b = spawn_broker_with(|c| c.http.sse_heartbeat = Duration::from_millis(200)).await;
    let mut s = sse_connect(b.addr, "/sse/news", &[]).await;
    assert_eq!(s.status, 200);
    let head = s.head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("cache-control: no-cache") && head.contains("x-accel-buffering: no"));
    http_publish(b.addr, "news", &json!({"h": "hello\nworld"})).await;
    let ev = s.next_event().await;
    assert_eq!((ev.event.as_str(), ev.id.as_deref()), ("message", Some("1")));
    assert_eq!(ev.json()["data"], json!({"h": "hello\nworld"}));
    assert_eq!(ev.json()["seq"], 1);
    let beat = s.next_any().await.unwrap();
    assert_eq!((beat.event.as_str(), beat.data.as_str()), ("comment", "ping"));
    b.stop().await;
}

#[tokio::test]
async fn last_event_id_resumes_exactly_after_a_dropped_connection() {
    let b = spawn_broker().await;
    let mut s = sse_connect(b.addr, "/sse/feed", &[]).await;
    for i in 1..=3 {
        http_publish(b.addr, "feed", &json!(i)).await;
    }
    let mut last = None;
    for i in 1..=3 {
        let ev = s.next_event().await;
        assert_eq!(ev.json()["data"], i);
        last = ev.id;
    }
    drop(s);
    for i in 4..=6 {
        http_publish(b.addr, "feed", &json!(i)).await;
    }
    let last = last.unwrap();
    let mut s = sse_connect(b.addr, "/sse/feed", &[("last-event-id", &last)]).await;
    http_publish(b.addr, "feed", &json!(7)).await;
    for i in 4..=7 {
        let ev = s.next_event().await;
        assert_eq!((ev.json()["seq"].clone(), ev.id), (json!(i), Some(i.to_string())));
    }
    // `?since=` resumes the same way.
    let mut s = sse_connect(b.addr, "/sse/feed?since=5", &[]).await;
    assert_eq!(s.next_event().await.json()["seq"], 6);
    b.stop().await;
}

#[tokio::test]
async fn an_id_from_before_a_restart_follows_the_topic_live() {
    // A browser's EventSource sends its Last-Event-ID again after the broker
    // restarted: an error would stop it for good, so the stream goes on.
    let b = spawn_broker().await;
    http_publish(b.addr, "again", &json!("first")).await;
    let mut s = sse_connect(b.addr, "/sse/again", &[("last-event-id", "99")]).await;
    http_publish(b.addr, "again", &json!("second")).await;
    let ev = s.next_event().await;
    assert_eq!((ev.json()["data"].clone(), ev.id), (json!("second"), Some("2".into())));
    b.stop().await;
}

#[tokio::test]
async fn a_multi_topic_id_carries_every_topic_and_resumes_them_all() {
    let b = spawn_broker().await;
    http_publish(b.addr, "m.a", &json!("a1")).await;
    let mut s = sse_connect(b.addr, "/sse?topic=m.a&topic=m.b", &[]).await;
    http_publish(b.addr, "m.b", &json!("b1")).await;
    let ev = s.next_event().await;
    assert_eq!(ev.id.as_deref(), Some("m.a:1,m.b:1"));
    http_publish(b.addr, "m.a", &json!("a2")).await;
    let ev = s.next_event().await;
    let id = ev.id.unwrap();
    assert_eq!(id, "m.a:2,m.b:1");
    drop(s);
    http_publish(b.addr, "m.b", &json!("b2")).await;
    http_publish(b.addr, "m.a", &json!("a3")).await;
    let mut s = sse_connect(b.addr, "/sse?topic=m.a&topic=m.b", &[("last-event-id", &id)]).await;
    let mut got = vec![s.next_event().await.json()["data"].clone()];
    got.push(s.next_event().await.json()["data"].clone());
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, vec![json!("a3"), json!("b2")]);
    b.stop().await;
}

#[tokio::test]
async fn history_loss_arrives_as_a_gap_event() {
    let b = spawn_broker_with(|c| c.history.size = 2).await;
    for i in 1..=6 {
        http_publish(b.addr, "lossy", &json!(i)).await;
    }
    let mut s = sse_connect(b.addr, "/sse/lossy?since=1", &[]).await;
    let gap = s.next_event().await;
    assert_eq!(gap.event, "gap");
    assert_eq!(
        gap.json(),
        json!({"type": "gap", "topic": "lossy", "from": 2, "to": 4, "reason": "history"})
    );
    assert_eq!(s.next_event().await.json()["seq"], 5);
    b.stop().await;
}

#[tokio::test]
async fn shutdown_ends_the_stream() {
    let b = spawn_broker().await;
    let mut s = sse_connect(b.addr, "/sse/end", &[]).await;
    http_publish(b.addr, "end", &json!(1)).await;
    assert_eq!(s.next_event().await.json()["seq"], 1);
    let stop = tokio::spawn(b.stop());
    assert!(s.next_any().await.is_none(), "the stream ends on shutdown");
    stop.await.unwrap();
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_problem() {
    let b = spawn_broker().await;
    http_publish(b.addr, "ok", &json!(1)).await;
    for (path, headers, needle) in [
        ("/sse/bad..topic", vec![], "empty token"),
        ("/sse", vec![], "name a topic"),
        ("/sse/ok?since=x", vec![], "since"),
        ("/sse/ok", vec![("last-event-id", "ok;3")], "Last-Event-ID"),
        ("/sse?topic=ok&topic=ok2", vec![("last-event-id", "3")], "bare seq"),
        ("/sse/ok", vec![("last-event-id", "other:3")], "does not follow"),
    ] {
        let (status, body) = http_get(b.addr, path, &headers).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 400, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    b.stop().await;
}

/// The next block of a stream as it came on the wire, heartbeat comments skipped.
async fn next_block(s: &mut SseClient) -> String {
    loop {
        let block = s.read_until(b"\n\n").await.expect("the stream is still open");
        if block != ": ping\n\n" {
            return block;
        }
    }
}

#[tokio::test]
async fn a_payload_stream_carries_each_payload_alone() {
    let b = spawn_broker().await;
    let mut s = sse_connect(b.addr, "/sse/t/room.1", &[]).await;
    assert_eq!(s.status, 200);
    assert!(
        s.head.to_ascii_lowercase().contains("content-type: text/event-stream"),
        "{}",
        s.head
    );
    // Text as sent, in the default event (no `event:` line), each line its own `data:` line.
    http_publish_as(b.addr, "room.1", "text/plain", b"hello,\r\nroom").await;
    assert_eq!(next_block(&mut s).await, "id: 1\ndata: hello,\ndata: room\n\n");
    http_publish_as(b.addr, "room.1", "text/plain", b"").await;
    assert_eq!(next_block(&mut s).await, "id: 2\ndata: \n\n");
    // A JSON string is text; other JSON is its text as the publisher wrote it.
    http_publish(b.addr, "room.1", &json!("just words")).await;
    let ev = s.next_event().await;
    assert_eq!((ev.event.as_str(), ev.data.as_str()), ("message", "just words"));
    let pretty = "{\n  \"user\": \"a\",\n  \"text\": \"hi\"\n}";
    http_publish_as(b.addr, "room.1", "application/json", pretty.as_bytes()).await;
    assert_eq!(
        next_block(&mut s).await,
        "id: 4\ndata: {\ndata:   \"user\": \"a\",\ndata:   \"text\": \"hi\"\ndata: }\n\n"
    );
    http_publish_as(b.addr, "room.1", "application/json", b"[1,2.5,null]").await;
    let ev = s.next_event().await;
    assert_eq!((ev.id.as_deref(), ev.data.as_str()), (Some("5"), "[1,2.5,null]"));
    // MessagePack becomes its JSON; binary is base64 in an `event: binary` block.
    let mp = rmp_serde::to_vec_named(&json!({"n": 1})).unwrap();
    http_publish_as(b.addr, "room.1", "application/msgpack", &mp).await;
    assert_eq!(s.next_event().await.json(), json!({"n": 1}));
    http_publish_as(b.addr, "room.1", "application/octet-stream", &[0, 1, 254, 255]).await;
    assert_eq!(next_block(&mut s).await, "id: 7\nevent: binary\ndata: AAH+/w==\n\n");
    b.stop().await;
}

#[tokio::test]
async fn a_payload_stream_resumes_with_last_event_id_or_since() {
    let b = spawn_broker().await;
    let mut s = sse_connect(b.addr, "/sse/t/ticks", &[]).await;
    for i in 1..=3 {
        http_publish_as(b.addr, "ticks", "text/plain", format!("tick {i}").as_bytes()).await;
    }
    let mut last = None;
    for i in 1..=3 {
        let ev = s.next_event().await;
        assert_eq!(
            (ev.data, ev.id.as_deref()),
            (format!("tick {i}"), Some(i.to_string().as_str()))
        );
        last = ev.id;
    }
    drop(s);
    for i in 4..=5 {
        http_publish_as(b.addr, "ticks", "text/plain", format!("tick {i}").as_bytes()).await;
    }
    let last = last.unwrap();
    let mut s = sse_connect(b.addr, "/sse/t/ticks", &[("last-event-id", &last)]).await;
    for i in 4..=5 {
        let ev = s.next_event().await;
        assert_eq!((ev.data, ev.id), (format!("tick {i}"), Some(i.to_string())));
    }
    let mut s = sse_connect(b.addr, "/sse/t/ticks?since=4", &[]).await;
    assert_eq!(s.next_event().await.data, "tick 5");
    b.stop().await;
}

#[tokio::test]
async fn a_payload_stream_tells_gaps_as_named_events() {
    let b = spawn_broker_with(|c| c.history.size = 2).await;
    for i in 1..=6 {
        http_publish(b.addr, "lossy.t", &json!(i)).await;
    }
    let mut s = sse_connect(b.addr, "/sse/t/lossy.t?since=1", &[]).await;
    let gap = s.next_event().await;
    assert_eq!(gap.event, "gap");
    assert_eq!(
        gap.json(),
        json!({"type": "gap", "topic": "lossy.t", "from": 2, "to": 4, "reason": "history"})
    );
    let ev = s.next_event().await;
    assert_eq!(
        (ev.event.as_str(), ev.data.as_str(), ev.id.as_deref()),
        ("message", "5", Some("5"))
    );
    b.stop().await;
}

#[tokio::test]
async fn a_payload_stream_follows_one_exact_topic() {
    let b = spawn_broker().await;
    for (path, needle) in [
        ("/sse/t/quotes.*", "pattern"),
        ("/sse/t/quotes.AAPL?topic=quotes.MSFT", "?topic= is for GET /sse"),
        ("/sse/t/", "topic is empty"),
        ("/sse/t/bad..topic", "empty token"),
        ("/sse/t/ok?since=x", "since"),
    ] {
        let (status, body) = http_get(b.addr, path, &[]).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 400, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    // `/sse/t` without the slash is still the topic `t` on /sse.
    let mut s = sse_connect(b.addr, "/sse/t", &[]).await;
    http_publish(b.addr, "t", &json!(1)).await;
    assert_eq!(s.next_event().await.json()["topic"], "t");
    b.stop().await;
}
