//! Publish/subscribe over real sockets: fan-out, patterns, formats, raw
//! topic sockets, HTTP publish, and sequence numbers.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn fan_out_reaches_200_subscribers_with_every_message_in_order() {
    let b = spawn_broker().await;
    let mut subs = Vec::new();
    for _ in 0..200 {
        let mut c = connect(&b.ws_url("/ws")).await;
        c.subscribe("feed.1").await;
        subs.push(c);
    }
    let mut publisher = connect(&b.ws_url("/ws")).await;
    for i in 1..=50u64 {
        assert_eq!(publisher.publish("feed.1", json!({"n": i})).await, i);
    }
    for c in subs.iter_mut() {
        for i in 1..=50u64 {
            let m = c.recv().await;
            assert_eq!(m["type"], "message");
            assert_eq!(m["topic"], "feed.1");
            assert_eq!(m["seq"], i);
            assert_eq!(m["data"], json!({"n": i}));
            assert!(m["ts"].as_u64().unwrap() > 1_600_000_000_000);
        }
    }
    b.stop().await;
}

#[tokio::test]
async fn star_matches_one_token_and_tail_matches_the_rest() {
    let b = spawn_broker().await;
    let mut star = connect(&b.ws_url("/ws")).await;
    star.subscribe("q.*").await;
    let mut tail = connect(&b.ws_url("/ws")).await;
    tail.subscribe("s.>").await;
    let mut p = connect(&b.ws_url("/ws")).await;
    p.publish("q.x.y", json!("no")).await;
    p.publish("q.x", json!("yes")).await;
    p.publish("s", json!("no")).await;
    p.publish("s.a.b", json!("yes")).await;
    let m = star.recv().await;
    assert_eq!((m["topic"].as_str(), m["data"].as_str()), (Some("q.x"), Some("yes")));
    let m = tail.recv().await;
    assert_eq!((m["topic"].as_str(), m["data"].as_str()), (Some("s.a.b"), Some("yes")));
    // Nothing else arrives: a ping answered proves the queue holds nothing before it.
    star.send(json!({"op": "ping", "id": 9})).await;
    assert_eq!(star.recv().await, json!({"type": "pong", "id": 9}));
    tail.send(json!({"op": "ping", "id": 9})).await;
    assert_eq!(tail.recv().await, json!({"type": "pong", "id": 9}));
    b.stop().await;
}

#[tokio::test]
async fn a_pattern_subscriber_gets_topics_created_before_and_after_it() {
    let b = spawn_broker().await;
    let mut early = connect(&b.ws_url("/ws")).await;
    early.subscribe("x.old").await;
    let mut pat = connect(&b.ws_url("/ws")).await;
    pat.subscribe("x.*").await;
    let mut p = connect(&b.ws_url("/ws")).await;
    p.publish("x.old", json!(1)).await;
    p.publish("x.new", json!(2)).await;
    assert_eq!(pat.recv().await["topic"], "x.old");
    assert_eq!(pat.recv().await["topic"], "x.new");
    b.stop().await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once() {
    let b = spawn_broker().await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.subscribe("o.a").await;
    c.subscribe("o.*").await;
    let mut p = connect(&b.ws_url("/ws")).await;
    p.publish("o.a", json!(1)).await;
    p.publish("o.a", json!(2)).await;
    assert_eq!(c.recv().await["seq"], 1);
    assert_eq!(c.recv().await["seq"], 2);
    b.stop().await;
}

#[tokio::test]
async fn json_and_msgpack_clients_exchange_the_same_data() {
    let b = spawn_broker().await;
    let mut j = connect(&b.ws_url("/ws?format=json")).await;
    j.subscribe("mix").await;
    let mut publisher = connect(&b.ws_url("/ws?echo=false")).await;
    let mut m = connect(&b.ws_url("/ws?format=msgpack")).await;
    m.subscribe("mix").await;
    let data = json!({"user": "a", "n": [1, 2.5, null, true], "s": "é"});
    publisher.publish("mix", data.clone()).await;
    assert_eq!(j.recv().await["data"], data);
    assert_eq!(m.recv().await["data"], data);

    // Binary from MessagePack stays binary for MessagePack and becomes base64 in JSON.
    let req = rmpv::Value::Map(vec![
        ("op".into(), "publish".into()),
        ("topic".into(), "mix".into()),
        ("data".into(), rmpv::Value::Binary(vec![0, 1, 255])),
    ]);
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &req).unwrap();
    m.send_binary(&buf).await;
    let Got::Binary(raw) = m.next().await else {
        panic!("binary frame")
    };
    let v = rmpv::decode::read_value(&mut &raw[..]).unwrap();
    assert_eq!(v["data"], rmpv::Value::Binary(vec![0, 1, 255]));
    let got = j.recv().await;
    assert_eq!(
        (got["data"].as_str(), got["encoding"].as_str()),
        (Some("AAH/"), Some("base64"))
    );
    b.stop().await;
}

#[tokio::test]
async fn the_subprotocol_selects_msgpack() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let b = spawn_broker().await;
    let mut req = b.ws_url("/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "fanout.msgpack".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "fanout.msgpack");
    use futures_util::{SinkExt, StreamExt};
    let ping = rmp_serde::to_vec_named(&json!({"op": "ping", "id": 1})).unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(ping.into()))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(msgpack_to_json(&reply.into_data()), json!({"type": "pong", "id": 1}));
    b.stop().await;
}

#[tokio::test]
async fn raw_sockets_send_exact_payloads_and_skip_their_own_without_echo() {
    let b = spawn_broker().await;
    let mut alice = connect(&b.ws_url("/ws/t/chat.room1")).await;
    let mut bob = connect(&b.ws_url("/ws/t/chat.room1")).await;
    let mut echo = connect(&b.ws_url("/ws/t/chat.room1?echo=true")).await;
    let mut watcher = connect(&b.ws_url("/ws?echo=false")).await;
    watcher.subscribe("chat.room1").await;
    alice.send_text("hi bob").await;
    assert_eq!(bob.next().await, Got::Text("hi bob".into()));
    assert_eq!(echo.next().await, Got::Text("hi bob".into()));
    let w = watcher.recv().await;
    assert_eq!(w["data"], "hi bob");
    echo.send_binary(&[1, 2, 3]).await;
    assert_eq!(
        echo.next().await,
        Got::Binary(vec![1, 2, 3]),
        "echo=true gets its own message"
    );
    assert_eq!(bob.next().await, Got::Binary(vec![1, 2, 3]));
    // Alice did not get her own text: the next thing she sees is the binary.
    assert_eq!(alice.next().await, Got::Binary(vec![1, 2, 3]));
    assert_eq!(watcher.recv().await["encoding"], "base64");
    // A JSON publish reaches raw sockets as its JSON text.
    watcher.publish("chat.room1", json!({"a": 1})).await;
    assert_eq!(bob.next().await, Got::Text(r#"{"a":1}"#.into()));
    b.stop().await;
}

#[tokio::test]
async fn http_publish_reaches_websocket_subscribers_in_every_content_type() {
    let b = spawn_broker().await;
    let mut j = connect(&b.ws_url("/ws")).await;
    j.subscribe("h.t").await;
    let mut raw = connect(&b.ws_url("/ws/t/h.t")).await;
    let (status, body) = http_json(b.addr, "POST", "/api/publish/h.t", &json!({"x": 1})).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"topic": "h.t", "seq": 1, "subscribers": 2}));
    assert_eq!(j.recv().await["data"], json!({"x": 1}));
    assert_eq!(raw.next().await, Got::Text(r#"{"x":1}"#.into()));
    let (status, _) = http(b.addr, "POST", "/api/publish/h.t", Some("text/plain"), b"plain words").await;
    assert_eq!(status, 200);
    assert_eq!(j.recv().await["data"], "plain words");
    assert_eq!(raw.next().await, Got::Text("plain words".into()));
    let (status, _) = http(
        b.addr,
        "POST",
        "/api/publish/h.t",
        Some("application/octet-stream"),
        &[9, 8],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(j.recv().await["encoding"], "base64");
    assert_eq!(raw.next().await, Got::Binary(vec![9, 8]));
    let mp = rmp_serde::to_vec_named(&json!({"k": "v"})).unwrap();
    let (status, _) = http(b.addr, "POST", "/api/publish/h.t", Some("application/msgpack"), &mp).await;
    assert_eq!(status, 200);
    assert_eq!(j.recv().await["data"], json!({"k": "v"}));
    assert_eq!(raw.next().await, Got::Binary(mp));
    b.stop().await;
}

#[tokio::test]
async fn http_batch_answers_each_item_in_order() {
    let b = spawn_broker().await;
    let mut c = connect(&b.ws_url("/ws")).await;
    c.subscribe("b.>").await;
    let batch = json!([
        {"topic": "b.one", "data": 1},
        {"topic": "bad topic", "data": 2},
        {"topic": "b.two", "data": "x"},
        {"topic": "$sys.x", "data": 3},
    ]);
    let (status, body) = http_json(b.addr, "POST", "/api/publish", &batch).await;
    assert_eq!(status, 200);
    let items = body.as_array().unwrap();
    assert_eq!(items[0], json!({"topic": "b.one", "seq": 1, "subscribers": 1}));
    assert_eq!(items[1]["error"]["code"], "bad_topic");
    assert_eq!(items[2], json!({"topic": "b.two", "seq": 1, "subscribers": 1}));
    assert_eq!(items[3]["error"]["code"], "forbidden");
    assert_eq!(c.recv().await["data"], 1);
    assert_eq!(c.recv().await["data"], "x");
    b.stop().await;
}

#[tokio::test]
async fn seqs_have_no_gaps_under_four_concurrent_publishers() {
    let b = spawn_broker().await;
    let mut sub = connect(&b.ws_url("/ws")).await;
    sub.subscribe("race").await;
    let per = 250u64;
    let mut tasks = Vec::new();
    for p in 0..4 {
        let url = b.ws_url("/ws");
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&url).await;
            for i in 0..per {
                c.send(json!({"op": "publish", "topic": "race", "data": {"p": p, "i": i}}))
                    .await;
            }
            c.publish("race", json!("done")).await
        }));
    }
    let mut last_by_publisher = [None::<u64>; 4];
    for expected in 1..=(4 * (per + 1)) {
        let m = sub.recv().await;
        assert_eq!(m["seq"], expected, "seqs arrive gap-free and in order");
        if let Some(p) = m["data"]["p"].as_u64() {
            let i = m["data"]["i"].as_u64().unwrap();
            let prev = last_by_publisher[p as usize].replace(i);
            assert_eq!(
                prev.map_or(0, |x| x + 1),
                i,
                "each publisher's messages keep their order"
            );
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    b.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let b = spawn_broker().await;
    assert_eq!(http(b.addr, "GET", "/healthz", None, b"").await.0, 200);
    assert_eq!(http(b.addr, "GET", "/readyz", None, b"").await.0, 200);
    b.stop().await;
}

#[tokio::test]
async fn topics_are_removed_when_the_last_subscriber_leaves_and_nothing_is_retained() {
    let b = spawn_broker_with(|c| c.history.size = 0).await;
    let mut c = connect(&b.ws_url("/ws")).await;
    for i in 0..100 {
        c.subscribe(&format!("churn.{i}")).await;
    }
    assert_eq!(b.broker.hub.registry.topic_count(), 100);
    for i in 0..100 {
        c.send(json!({"op": "unsubscribe", "topic": format!("churn.{i}"), "id": 3}))
            .await;
        assert_eq!(c.recv().await["type"], "ack");
    }
    assert_eq!(b.broker.hub.registry.topic_count(), 0);
    c.subscribe("gone.when.closed").await;
    let (status, _) = http_json(b.addr, "POST", "/api/publish/unwatched", &json!(1)).await;
    assert_eq!(status, 200);
    c.close().await;
    // The server side of the connection lets go of its topics a moment after the close.
    let gone = async || b.broker.hub.registry.topic_count() == 0;
    assert!(
        holds_by(tokio::time::Instant::now() + WAIT, gone).await,
        "topics left: {}",
        b.broker.hub.registry.topic_count()
    );
    b.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let b = spawn_broker().await;
    let (status, body) = http(b.addr, "GET", "/nope", None, b"").await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "not_found");
    b.stop().await;
}
