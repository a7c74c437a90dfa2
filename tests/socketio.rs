//! Socket.IO at `/socket.io/`, spoken packet by packet by an independent
//! client (tokio-tungstenite for the WebSocket transport, plain HTTP/1.1 for
//! long-polling): the Engine.IO handshake and its refusals, heartbeats, the
//! upgrade, namespaces as topics, the main namespace's requests, binary
//! attachments, recovery, auth, limits, CORS and the drain. The reference
//! client (npm socket.io-client) is driven in `tests/socketio_client.rs`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::socketio::{event, join, open_ws, text, ws_path};
use common::*;
use serde_json::{json, Value};

/// A long-polling handshake; returns the session id and the open data.
async fn open_polling(addr: SocketAddr, headers: &[(&str, &str)]) -> (String, Value) {
    let (status, body) = http_get(addr, "/socket.io/?EIO=4&transport=polling", headers).await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with('0'), "{body}");
    let data: Value = serde_json::from_str(&body[1..]).unwrap();
    (data["sid"].as_str().unwrap().to_owned(), data)
}

/// A poll: the status and the packets it carried.
async fn poll(addr: SocketAddr, sid: &str) -> (u16, Vec<String>) {
    let (status, body) = http_get(addr, &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"), &[]).await;
    let body = String::from_utf8(body).unwrap();
    (status, body.split('\x1e').map(str::to_owned).collect())
}

/// Sends `packets` in one POST; returns the status and body.
async fn post(addr: SocketAddr, sid: &str, packets: &[&str]) -> (u16, String) {
    let (status, body) = http(
        addr,
        "POST",
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        Some("text/plain;charset=UTF-8"),
        packets.join("\x1e").as_bytes(),
    )
    .await;
    (status, String::from_utf8(body).unwrap())
}

/// Polls until a packet other than a ping arrives (answering pings), returning them all.
async fn poll_packets(addr: SocketAddr, sid: &str) -> Vec<String> {
    loop {
        let (status, packets) = poll(addr, sid).await;
        assert_eq!(status, 200, "{packets:?}");
        let rest: Vec<String> = packets.iter().filter(|p| *p != "2").cloned().collect();
        if packets.len() != rest.len() {
            assert_eq!(post(addr, sid, &["3"]).await.0, 200);
        }
        if !rest.is_empty() {
            return rest;
        }
    }
}

fn engine_error(body: &[u8]) -> (u64, String) {
    let v: Value = serde_json::from_slice(body).unwrap();
    (v["code"].as_u64().unwrap(), v["message"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_handshake_gives_the_configured_heartbeat_and_refuses_bad_requests_by_code() {
    let b = spawn_broker_with(|c| {
        c.socketio.ping_interval = Duration::from_millis(1500);
        c.socketio.ping_timeout = Duration::from_millis(700);
        c.limits.max_message_bytes = 123_456;
    })
    .await;
    let (sid, open) = open_polling(b.addr, &[]).await;
    assert_eq!(sid.len(), 22, "an unguessable id");
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], 1500);
    assert_eq!(open["pingTimeout"], 700);
    assert_eq!(open["maxPayload"], 123_456);
    let (_ws, open) = open_ws(&b, "").await;
    assert_eq!(open["upgrades"], json!([]), "a WebSocket has nothing to upgrade to");
    assert_ne!(open["sid"], sid);

    for (path, method, code) in [
        ("/socket.io/?transport=polling", "GET", 5),
        ("/socket.io/?EIO=3&transport=polling", "GET", 5),
        ("/socket.io/?EIO=4", "GET", 0),
        ("/socket.io/?EIO=4&transport=flash", "GET", 0),
        ("/socket.io/?EIO=4&transport=polling", "POST", 2),
        ("/socket.io/?EIO=4&transport=polling&sid=nope", "GET", 1),
        ("/socket.io/?EIO=4&transport=polling&sid=nope", "POST", 1),
    ] {
        let (status, body) = http(b.addr, method, path, None, b"").await;
        assert_eq!(status, 400, "{method} {path}");
        let (got, message) = engine_error(&body);
        assert_eq!(got, code, "{method} {path}: {message}");
        assert!(!message.is_empty());
    }
    b.stop().await;
}

#[tokio::test]
async fn a_topic_namespace_carries_emits_to_the_others_and_every_publish_as_message() {
    let b = spawn_broker().await;
    let (mut alice, _) = open_ws(&b, "").await;
    let (mut bob, _) = open_ws(&b, "").await;
    let a = join(&mut alice, "chat.room1", None).await;
    let pid = a["pid"].as_str().unwrap();
    assert_eq!(
        pid.split('-').next().unwrap().len(),
        16,
        "the pid names the topic's epoch: {pid}"
    );
    assert!(a["sid"].is_string());
    join(&mut bob, "chat.room1", None).await;
    let mut ws = connect(&b.ws_url("/ws")).await;
    ws.subscribe("chat.room1").await;

    alice
        .send_text(r#"42/chat.room1,7["message",{"user":"alice","text":"hi"}]"#)
        .await;
    assert_eq!(
        text(&mut alice).await,
        r#"43/chat.room1,7[{"type":"ack","id":7,"topic":"chat.room1","seq":1}]"#
    );
    assert_eq!(
        event(&text(&mut bob).await, "chat.room1"),
        json!(["message", {"user": "alice", "text": "hi"}, "1"]),
        "the payload, then the recovery offset"
    );
    let m = ws.recv().await;
    assert_eq!(
        m["data"],
        json!({"user": "alice", "text": "hi"}),
        "/ws sees the value itself"
    );

    alice.send_text(r#"42/chat.room1,["typing","alice",true]"#).await;
    assert_eq!(
        event(&text(&mut bob).await, "chat.room1"),
        json!(["typing", "alice", true, "2"])
    );
    assert_eq!(
        ws.recv().await["data"],
        json!({"event": "typing", "args": ["alice", true]})
    );

    http_publish(b.addr, "chat.room1", &json!("from the backend")).await;
    // Alice's next packet is the HTTP publish: her own two emits never came back.
    for c in [&mut alice, &mut bob] {
        assert_eq!(
            event(&text(c).await, "chat.room1"),
            json!(["message", "from the backend", "3"])
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn echo_true_sends_a_socket_its_own_emits_like_io_emit() {
    let b = spawn_broker().await;
    let (mut c, _) = open_ws(&b, "&echo=true").await;
    join(&mut c, "room.e", None).await;
    c.send_text(r#"42/room.e,["message","me"]"#).await;
    assert_eq!(event(&text(&mut c).await, "room.e"), json!(["message", "me", "1"]));
    b.stop().await;
}

#[tokio::test]
async fn the_main_namespace_speaks_subscribe_publish_and_unsubscribe_with_ws_acks() {
    let b = spawn_broker().await;
    let (mut c, _) = open_ws(&b, "").await;
    let answer = join(&mut c, "", None).await;
    assert!(answer["sid"].is_string());
    assert!(answer.get("pid").is_none(), "the main namespace is not one topic");
    c.send_text(r#"421["subscribe","quotes.>"]"#).await;
    assert_eq!(text(&mut c).await, r#"431[{"type":"ack","id":1,"topic":"quotes.>"}]"#);
    http_publish(b.addr, "quotes.aapl", &json!({"px": 1.5})).await;
    let got = text(&mut c).await;
    let msg: Value = serde_json::from_str(got.strip_prefix("42").unwrap()).unwrap();
    assert_eq!(msg[0], "message");
    assert_eq!(msg[1]["topic"], "quotes.aapl");
    assert_eq!(msg[1]["seq"], 1);
    assert_eq!(msg[1]["data"], json!({"px": 1.5}));
    assert!(msg[1]["ts"].is_u64());

    c.send_text(r#"422["publish","quotes.msft",{"px":2}]"#).await;
    let (mut ack, mut message) = (None, None);
    for _ in 0..2 {
        let p = text(&mut c).await;
        if p.starts_with("432") {
            ack = Some(p);
        } else {
            message = Some(p);
        }
    }
    assert_eq!(
        ack.unwrap(),
        r#"432[{"type":"ack","id":2,"topic":"quotes.msft","seq":1}]"#
    );
    assert!(
        message.unwrap().contains(r#""topic":"quotes.msft""#),
        "the main namespace echoes like /ws"
    );

    c.send_text(r#"423["subscribe","chat.a",{"since":0}]"#).await;
    let ack: Value = serde_json::from_str(text(&mut c).await.strip_prefix("433").unwrap()).unwrap();
    assert_eq!(ack[0]["recovered"], true);
    assert_eq!(ack[0]["epoch"].as_str().unwrap().len(), 16);

    c.send_text(r#"424["unsubscribe","quotes.>"]"#).await;
    assert_eq!(text(&mut c).await, r#"434[{"type":"ack","id":4,"topic":"quotes.>"}]"#);
    http_publish(b.addr, "quotes.aapl", &json!(2)).await;
    http_publish(b.addr, "chat.a", &json!("still here")).await;
    let next = text(&mut c).await;
    assert!(
        next.contains("still here"),
        "nothing of quotes.> after the unsubscribe: {next}"
    );

    // Refusals answer the ack with {error}, or come as an `error` event without one.
    c.send_text(r#"425["publish","$sys.x",1]"#).await;
    let e: Value = serde_json::from_str(text(&mut c).await.strip_prefix("435").unwrap()).unwrap();
    assert_eq!(e[0]["error"]["code"], "forbidden");
    c.send_text(r#"42["subscribe"]"#).await;
    let e = event_main(&text(&mut c).await);
    assert_eq!(e[0], "error");
    assert_eq!(e[1]["code"], "bad_request");
    assert!(e[1]["message"].as_str().unwrap().contains("`subscribe` needs"), "{e}");
    c.send_text(r#"426["dance"]"#).await;
    let e: Value = serde_json::from_str(text(&mut c).await.strip_prefix("436").unwrap()).unwrap();
    assert!(e[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown event `dance`"));
    b.stop().await;
}

fn event_main(packet: &str) -> Value {
    serde_json::from_str(
        packet
            .strip_prefix("42")
            .unwrap_or_else(|| panic!("not an event: {packet}")),
    )
    .unwrap()
}

#[tokio::test]
async fn binary_attachments_go_through_as_binary_payloads() {
    let b = spawn_broker().await;
    let (mut a, _) = open_ws(&b, "").await;
    let (mut r, _) = open_ws(&b, "").await;
    join(&mut a, "bin.x", None).await;
    join(&mut r, "bin.x", None).await;
    let mut ws = connect(&b.ws_url("/ws")).await;
    ws.subscribe("bin.x").await;
    a.send_text(r#"451-/bin.x,["message",{"_placeholder":true,"num":0}]"#)
        .await;
    a.send_binary(&[0, 1, 2, 255]).await;
    assert_eq!(
        text(&mut r).await,
        r#"451-/bin.x,["message",{"_placeholder":true,"num":0},"1"]"#
    );
    assert_eq!(r.next().await, Got::Binary(vec![0, 1, 2, 255]));
    let m = ws.recv().await;
    assert_eq!(
        (m["data"].as_str(), m["encoding"].as_str()),
        (Some("AAEC/w=="), Some("base64"))
    );

    // An HTTP octet-stream publish is a binary event too.
    http(
        b.addr,
        "POST",
        "/api/publish/bin.x",
        Some("application/octet-stream"),
        &[9, 9],
    )
    .await;
    for c in [&mut r, &mut a] {
        assert!(text(c).await.starts_with("451-/bin.x,"));
        assert_eq!(c.next().await, Got::Binary(vec![9, 9]));
    }

    // Attachments inside other events are refused with a reason.
    a.send_text(r#"451-/bin.x,3["file",{"_placeholder":true,"num":0}]"#)
        .await;
    a.send_binary(&[1]).await;
    let e = text(&mut a).await;
    assert!(e.starts_with("43/bin.x,3["), "{e}");
    assert!(e.contains("one argument of a `message` event"), "{e}");
    b.stop().await;
}

#[tokio::test]
async fn long_polling_carries_packets_both_ways_and_heartbeats() {
    let b = spawn_broker_with(|c| {
        c.socketio.ping_interval = Duration::from_millis(200);
        c.socketio.ping_timeout = Duration::from_millis(5000);
    })
    .await;
    let (sid, _) = open_polling(b.addr, &[]).await;
    assert_eq!(post(b.addr, &sid, &["40/feed.p,"]).await, (200, "ok".to_owned()));
    let connect = poll_packets(b.addr, &sid).await;
    assert!(connect[0].starts_with("40/feed.p,{\"sid\":"), "{connect:?}");
    for i in 1..=3 {
        http_publish(b.addr, "feed.p", &json!(i)).await;
    }
    http(
        b.addr,
        "POST",
        "/api/publish/feed.p",
        Some("application/octet-stream"),
        &[1, 2, 3, 4],
    )
    .await;
    let mut got = Vec::new();
    while got.len() < 5 {
        got.extend(poll_packets(b.addr, &sid).await);
    }
    assert_eq!(
        got,
        [
            r#"42/feed.p,["message",1,"1"]"#,
            r#"42/feed.p,["message",2,"2"]"#,
            r#"42/feed.p,["message",3,"3"]"#,
            r#"451-/feed.p,["message",{"_placeholder":true,"num":0},"4"]"#,
            "bAQIDBA==",
        ],
        "one poll carries everything queued, binary as base64"
    );
    // Several heartbeats pass with pongs sent: the connection stays.
    for _ in 0..3 {
        let (status, packets) = poll(b.addr, &sid).await;
        assert_eq!((status, packets), (200, vec!["2".to_owned()]));
        assert_eq!(post(b.addr, &sid, &["3"]).await.0, 200);
    }
    // A client packet with an emit and a binary attachment in one POST.
    post(
        b.addr,
        &sid,
        &[r#"451-/feed.p,1["message",{"_placeholder":true,"num":0}]"#, "bAQI="],
    )
    .await;
    let ack = poll_packets(b.addr, &sid).await;
    assert_eq!(ack, [r#"43/feed.p,1[{"type":"ack","id":1,"topic":"feed.p","seq":5}]"#]);
    b.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_ping_interval_and_timeout() {
    let b = spawn_broker_with(|c| {
        c.socketio.ping_interval = Duration::from_millis(100);
        c.socketio.ping_timeout = Duration::from_millis(100);
    })
    .await;
    let (mut c, _) = open_ws(&b, "").await;
    assert_eq!(c.next().await, Got::Text("2".into()), "a ping");
    // No pong: the connection goes.
    let reason = c.expect_close(1001).await;
    assert_eq!(reason, "ping timeout");
    let (sid, _) = open_polling(b.addr, &[]).await;
    eventually("the silent polling session goes", async || {
        poll(b.addr, &sid).await.0 == 400
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn a_connection_that_joins_no_namespace_is_dropped_after_connect_timeout() {
    let b = spawn_broker_with(|c| c.socketio.connect_timeout = Duration::from_millis(200)).await;
    let (mut c, _) = open_ws(&b, "").await;
    let reason = c.expect_close(1008).await;
    assert!(reason.contains("connect_timeout"), "{reason}");
    b.stop().await;
}

#[tokio::test]
async fn the_upgrade_moves_a_polling_connection_to_websocket_without_losing_a_message() {
    let b = spawn_broker().await;
    let (sid, _) = open_polling(b.addr, &[]).await;
    post(b.addr, &sid, &["40/up.t,"]).await;
    assert!(poll_packets(b.addr, &sid).await[0].starts_with("40/up.t,"));
    // A poll waits while the WebSocket probes; the probe's success ends it with noop.
    let addr = b.addr;
    let waiting = {
        let sid = sid.clone();
        tokio::spawn(async move { poll(addr, &sid).await })
    };
    let mut ws = connect(&b.ws_url(&ws_path(&format!("&sid={sid}")))).await;
    ws.send_text("2probe").await;
    assert_eq!(text(&mut ws).await, "3probe");
    assert_eq!(waiting.await.unwrap(), (200, vec!["6".to_owned()]));
    // Published between the probe and the upgrade: queued, then sent on the WebSocket.
    http_publish(b.addr, "up.t", &json!("in between")).await;
    ws.send_text("5").await;
    assert_eq!(
        event(&text(&mut ws).await, "up.t"),
        json!(["message", "in between", "1"])
    );
    ws.send_text(r#"42/up.t,1["message","over ws"]"#).await;
    assert!(text(&mut ws).await.starts_with("43/up.t,1["));
    // The polling side is over, and a second WebSocket is closed saying why.
    let (status, _) = poll(b.addr, &sid).await;
    assert_eq!(status, 400);
    let mut second = connect(&b.ws_url(&ws_path(&format!("&sid={sid}")))).await;
    assert!(second.expect_close(1008).await.contains("upgraded already"));
    b.stop().await;
}

#[tokio::test]
async fn a_client_close_ends_a_waiting_poll_with_noop_and_the_session() {
    let b = spawn_broker().await;
    let (sid, _) = open_polling(b.addr, &[]).await;
    let addr = b.addr;
    let waiting = {
        let sid = sid.clone();
        tokio::spawn(async move { poll(addr, &sid).await })
    };
    // The poll must be waiting before the close, or it would find the session gone.
    eventually("the poll is waiting", async || {
        b.broker.socketio.get(&sid).is_some_and(|e| {
            !e.begin_poll() || {
                e.end_poll();
                false
            }
        })
    })
    .await;
    assert_eq!(post(b.addr, &sid, &["1"]).await.0, 200);
    assert_eq!(waiting.await.unwrap(), (200, vec!["6".to_owned()]));
    assert_eq!(poll(b.addr, &sid).await.0, 400);
    b.stop().await;
}

#[tokio::test]
async fn protocol_violations_close_the_connection_with_a_reason() {
    let b = spawn_broker().await;
    for bad in ["4abc", "42{}", r#"42abc["message"]"#, "9", "46"] {
        let (mut c, _) = open_ws(&b, "").await;
        join(&mut c, "", None).await;
        c.send_text(bad).await;
        let reason = c.expect_close(1002).await;
        assert!(!reason.is_empty(), "{bad}");
    }
    let (mut c, _) = open_ws(&b, "").await;
    c.send_binary(&[1, 2]).await;
    assert!(c.expect_close(1002).await.contains("attachment"));
    b.stop().await;
}

#[tokio::test]
async fn recovery_replays_what_was_missed_and_says_when_it_cannot() {
    let b = spawn_broker_with(|c| {
        c.topics.push(fanout::config::TopicRule {
            pattern: "tiny.>".into(),
            history_size: Some(2),
            ttl: None,
            last_value: false,
            policy: None,
            presence: false,
            compression: None,
        });
    })
    .await;
    let (mut c, _) = open_ws(&b, "").await;
    let pid = join(&mut c, "rec.a", None).await["pid"].as_str().unwrap().to_owned();
    http_publish(b.addr, "rec.a", &json!("one")).await;
    assert_eq!(event(&text(&mut c).await, "rec.a"), json!(["message", "one", "1"]));
    drop(c);
    http_publish(b.addr, "rec.a", &json!("two")).await;
    http_publish(b.addr, "rec.a", &json!("three")).await;
    let (mut c, _) = open_ws(&b, "").await;
    let answer = join(&mut c, "rec.a", Some(json!({"pid": pid, "offset": "1"}))).await;
    assert_eq!(answer["pid"], pid.as_str(), "the same pid: socket.recovered is true");
    assert_eq!(event(&text(&mut c).await, "rec.a"), json!(["message", "two", "2"]));
    assert_eq!(event(&text(&mut c).await, "rec.a"), json!(["message", "three", "3"]));

    // History keeps 2: from offset 1 after 4 more, messages 2..3 are gone.
    let (mut c, _) = open_ws(&b, "").await;
    let pid = join(&mut c, "tiny.t", None).await["pid"].as_str().unwrap().to_owned();
    for i in 1..=5 {
        http_publish(b.addr, "tiny.t", &json!(i)).await;
    }
    drop(c);
    let (mut c, _) = open_ws(&b, "").await;
    let answer = join(&mut c, "tiny.t", Some(json!({"pid": pid, "offset": "1"}))).await;
    assert_ne!(answer["pid"], pid.as_str(), "a new pid: socket.recovered is false");
    let gap = event(&text(&mut c).await, "tiny.t");
    assert_eq!(gap[0], "gap");
    assert_eq!((gap[1]["from"].as_u64(), gap[1]["to"].as_u64()), (Some(2), Some(3)));
    assert_eq!(event(&text(&mut c).await, "tiny.t"), json!(["message", 4, "4"]));

    // A pid from another life of the topic recovers nothing.
    let (mut c, _) = open_ws(&b, "").await;
    let answer = join(
        &mut c,
        "rec.a",
        Some(json!({"pid": "00000000000000aa-s1", "offset": "1"})),
    )
    .await;
    assert_ne!(answer["pid"], "00000000000000aa-s1");
    http_publish(b.addr, "rec.a", &json!("live")).await;
    assert_eq!(event(&text(&mut c).await, "rec.a"), json!(["message", "live", "4"]));
    b.stop().await;
}

#[tokio::test]
async fn namespaces_follow_the_token_grants_and_refusals_name_the_reason() {
    const SECRET: &str = "socketio-test-secret";
    let b = spawn_broker_with(|c| {
        c.auth.mode = fanout::config::AuthMode::Jwt;
        c.auth.jwt_secret = SECRET.into();
        c.auth.anonymous_subscribe = vec!["public.>".into()];
    })
    .await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "u1", "exp": exp, "subscribe": ["chat.>"], "publish": ["chat.>"]}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let (mut c, _) = open_ws(&b, "").await;
    join(&mut c, "public.news", None).await;
    c.send_text("40/chat.a,").await;
    let refused = text(&mut c).await;
    let e: Value = serde_json::from_str(refused.strip_prefix("44/chat.a,").unwrap()).unwrap();
    assert_eq!(e["data"]["code"], "unauthorized", "{refused}");
    assert!(e["message"].as_str().unwrap().contains("needs a token"), "{refused}");
    c.send_text(r#"40/chat.a,{"token":"not-a-jwt"}"#).await;
    let e: Value = serde_json::from_str(text(&mut c).await.strip_prefix("44/chat.a,").unwrap()).unwrap();
    assert_eq!(e["data"]["code"], "unauthorized");
    // The token in the auth payload, or in the handshake's query.
    join(&mut c, "chat.a", Some(json!({"token": token}))).await;
    let (mut q, _) = open_ws(&b, &format!("&token={token}")).await;
    join(&mut q, "chat.a", None).await;
    q.send_text(r#"42/chat.a,1["message","hello"]"#).await;
    assert!(text(&mut q).await.starts_with("43/chat.a,1[{\"type\":\"ack\""));
    assert_eq!(event(&text(&mut c).await, "chat.a"), json!(["message", "hello", "1"]));
    // A token that does not cover the namespace.
    c.send_text(&format!(r#"40/news.x,{{"token":"{token}"}}"#)).await;
    let e = text(&mut c).await;
    assert!(e.starts_with("44/news.x,"), "{e}");
    assert!(e.contains(r#""code":"forbidden""#), "{e}");
    // Anonymous publishing is not granted: the ack says so.
    c.send_text(r#"42/public.news,2["message","x"]"#).await;
    let e = text(&mut c).await;
    assert!(
        e.starts_with("43/public.news,2[{\"error\":{\"code\":\"unauthorized\""),
        "{e}"
    );
    b.stop().await;
}

#[tokio::test]
async fn limits_apply_namespaces_rate_and_size() {
    let b = spawn_broker_with(|c| {
        c.limits.max_subscriptions_per_connection = 2;
        c.limits.publish_rate_per_connection = 1;
        c.limits.max_message_bytes = 1000;
    })
    .await;
    let (mut c, _) = open_ws(&b, "").await;
    join(&mut c, "l.a", None).await;
    join(&mut c, "l.b", None).await;
    c.send_text("40/l.c,").await;
    let e = text(&mut c).await;
    assert!(e.starts_with("44/l.c,"), "{e}");
    assert!(e.contains("too_many_subscriptions"), "{e}");

    let big = format!(r#"42/l.a,["message","{}"]"#, "x".repeat(2000));
    c.send_text(&big).await;
    c.expect_close(1009).await;
    let (sid, _) = open_polling(b.addr, &[]).await;
    let (status, _) = post(b.addr, &sid, &[&big]).await;
    assert_eq!(status, 413, "a POST over maxPayload");

    let (mut c, _) = open_ws(&b, "").await;
    join(&mut c, "l.a", None).await;
    let mut rate_limited = false;
    for i in 0..200 {
        c.send_text(&format!(r#"42/l.a,{i}["message",{i}]"#)).await;
        match c.next().await {
            Got::Text(t) if t.contains("rate_limited") => rate_limited = true,
            Got::Close(Some((code, reason))) => {
                assert!(rate_limited, "refused before being cut");
                assert_eq!((code, reason.as_str()), (1008, "rate limited"));
                b.stop().await;
                return;
            }
            _ => {}
        }
    }
    panic!("a client publishing far over its rate is closed");
}

#[tokio::test]
async fn long_polling_from_another_origin_gets_cors_answers_within_allowed_origins() {
    let b = spawn_broker_with(|c| c.server.allowed_origins = vec!["http://good.example".into()]).await;
    let raw = |origin: &'static str, method: &'static str| {
        let addr = b.addr;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "{method} /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nhost: x\r\norigin: {origin}\r\n\
                 access-control-request-method: POST\r\nconnection: close\r\n\r\n"
            );
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out.to_ascii_lowercase()
        }
    };
    let ok = raw("http://good.example", "GET").await;
    assert!(ok.starts_with("http/1.1 200"), "{ok}");
    assert!(ok.contains("access-control-allow-origin: http://good.example"), "{ok}");
    assert!(ok.contains("access-control-allow-credentials: true"), "{ok}");
    let pre = raw("http://good.example", "OPTIONS").await;
    assert!(pre.starts_with("http/1.1 204"), "{pre}");
    assert!(
        pre.contains("access-control-allow-methods: get, post, options"),
        "{pre}"
    );
    let evil = raw("http://evil.example", "GET").await;
    assert!(evil.starts_with("http/1.1 403"), "{evil}");
    assert!(evil.contains("allowed_origins"), "{evil}");
    b.stop().await;
}

#[tokio::test]
async fn a_slow_socket_gets_a_gap_under_drop_oldest_and_the_others_everything() {
    const MESSAGES: u64 = 5000;
    let b = spawn_broker_with(|c| {
        c.queue.max_messages = 256;
        c.queue.policy = fanout::config::Policy::DropOldest;
    })
    .await;
    let mut slow = stalled_client_at(&b, &ws_path("")).await;
    assert!(text(&mut slow).await.starts_with('0'));
    join(&mut slow, "slow.s", None).await;
    let (mut fast, _) = open_ws(&b, "").await;
    join(&mut fast, "slow.s", None).await;
    let fast_reader = tokio::spawn(async move {
        for i in 1..=MESSAGES {
            let e = event(&text(&mut fast).await, "slow.s");
            assert_eq!(e[2], i.to_string(), "the fast reader misses nothing");
        }
    });
    let padding = "x".repeat(1000);
    for chunk in (1..=MESSAGES).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"topic": "slow.s", "data": {"i": i, "p": padding}}))
            .collect();
        assert_eq!(
            http_json(b.addr, "POST", "/api/publish", &Value::Array(batch)).await.0,
            200
        );
    }
    fast_reader.await.unwrap();
    // Every seq is delivered or announced in a gap, in order.
    let mut next = 1;
    let mut gaps = 0;
    while next <= MESSAGES {
        let e = event(&text(&mut slow).await, "slow.s");
        if e[0] == "gap" {
            assert_eq!(e[1]["reason"], "slow_consumer");
            assert_eq!(e[1]["from"], next, "{e}");
            next = e[1]["to"].as_u64().unwrap() + 1;
            gaps += 1;
        } else {
            assert_eq!(e[2], next.to_string());
            next += 1;
        }
    }
    assert!(gaps > 0, "the stalled socket overflowed and was told so");
    b.stop().await;
}

#[tokio::test]
async fn the_drain_closes_websockets_with_1001_and_ends_polls_with_close() {
    let b = spawn_broker().await;
    let (mut c, _) = open_ws(&b, "").await;
    join(&mut c, "d.t", None).await;
    let (sid, _) = open_polling(b.addr, &[]).await;
    post(b.addr, &sid, &["40/d.t,"]).await;
    poll_packets(b.addr, &sid).await;
    let addr = b.addr;
    let waiting = tokio::spawn(async move { poll(addr, &sid).await });
    let metrics = String::from_utf8(http_get(b.addr, "/metrics", &[]).await.1).unwrap();
    assert!(
        metrics.contains("fanout_connections{transport=\"socketio\"} 2"),
        "one socket per namespace joined"
    );
    tokio::task::yield_now().await;
    let stopping = tokio::spawn(b.stop());
    assert_eq!(c.expect_close(1001).await, "server shutting down");
    let (status, packets) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(packets.last().map(String::as_str), Some("1"), "the close packet");
    stopping.await.unwrap();
}

#[tokio::test]
async fn socketio_connections_are_bounded_per_address_like_tcp_ones() {
    let b = spawn_broker_with(|c| c.server.max_connections_per_ip = 3).await;
    let mut sids = Vec::new();
    for _ in 0..3 {
        sids.push(open_polling(b.addr, &[]).await.0);
    }
    // Long-polling holds no TCP connection between requests; the connections still count.
    let (status, body) = http_get(b.addr, "/socket.io/?EIO=4&transport=polling", &[]).await;
    assert_eq!(status, 503);
    assert!(engine_error(&body).1.contains("max_connections_per_ip"));
    let refused = tokio_tungstenite::connect_async(b.ws_url(&ws_path(""))).await;
    assert!(refused.is_err(), "a new WebSocket connection is refused too");
    assert_eq!(post(b.addr, &sids[0], &["1"]).await.0, 200);
    eventually("a closed connection frees its place", async || {
        http_get(b.addr, "/socket.io/?EIO=4&transport=polling", &[]).await.0 == 200
    })
    .await;
    b.stop().await;
}
