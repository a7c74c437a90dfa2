//! The reference Socket.IO client (npm `socket.io-client` 4.8, run by node) against
//! fanout's `/socket.io/`. Each scenario runs three times: long-polling only
//! (`transports: ["polling"]`), WebSocket only, and the client's default (polling,
//! then the upgrade to WebSocket, which each scenario checks happened).
//!
//! `tests/socketio_client/driver.mjs` runs the clients: this file sends it what to do
//! and checks what the clients saw, as a user of the client would.
//!
//! Needs node and `npm ci --prefix tests/socketio_client`. Skipped loudly when either is
//! missing, except under CI (`CI` set), where that fails the test.

mod common;
#[path = "socketio_client/driver.rs"]
mod driver;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use driver::{Driver, Transports};
use fanout::config::{AuthMode, TopicRule};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs each scenario `name(Transports)` as three tests: `name::polling`,
/// `name::websocket` and `name::polling_then_upgrade`, with the attributes given before
/// its name (`#[ignore = "..."]`).
macro_rules! over_every_transport {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {$(
        mod $name {
            use super::Transports;
            $(#[$attr])*
            #[tokio::test]
            async fn polling() {
                super::$name(Transports::Polling).await
            }
            $(#[$attr])*
            #[tokio::test]
            async fn websocket() {
                super::$name(Transports::WebSocket).await
            }
            $(#[$attr])*
            #[tokio::test]
            async fn polling_then_upgrade() {
                super::$name(Transports::Upgrade).await
            }
        }
    )*};
}

over_every_transport!(
    a_topic_namespace_receives_http_publishes,
    a_burst_arrives_once_and_in_order,
    namespaces_share_one_connection,
    emits_reach_the_others_and_echo_is_opt_in,
    acks_carry_the_seq_or_the_error,
    binary_round_trips_as_buffers,
    custom_events_keep_their_name_and_arguments,
    the_main_namespace_subscribes_publishes_and_unsubscribes,
    a_reconnecting_client_recovers_what_it_missed,
    recovery_beyond_history_sends_a_gap,
    recovery_beyond_history_is_not_reported_as_recovered,
    refused_tokens_and_namespaces_get_connect_error,
    the_configured_heartbeat_reaches_the_client_and_keeps_it_up,
    cross_origin_clients_need_an_allowed_origin,
);

/// `POST /api/publish/{topic}` of a `text/plain` body; the seq.
async fn publish_text(b: &TestBroker, topic: &str, text: &str) -> u64 {
    publish_as(b, topic, "text/plain", text.as_bytes()).await
}

async fn publish_as(b: &TestBroker, topic: &str, content_type: &str, body: &[u8]) -> u64 {
    let path = format!("/api/publish/{topic}");
    let (status, answer) = http(b.addr, "POST", &path, Some(content_type), body).await;
    let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    assert_eq!(status, 200, "publish to {topic}: {answer}");
    answer["seq"].as_u64().unwrap()
}

/// The recovery offset a topic namespace appends to each event: the seq, as a string.
fn offset(seq: u64) -> Value {
    Value::String(seq.to_string())
}

/// Bytes as the driver writes them.
fn bytes(data: &[u8]) -> Value {
    json!({"$bytes": base64::engine::general_purpose::STANDARD.encode(data)})
}

async fn a_topic_namespace_receives_http_publishes(t: Transports) {
    let b = spawn_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    let c = d.connect("a", "/chat.room1", json!({})).await;
    assert!(c["id"].as_str().is_some_and(|id| !id.is_empty()), "socket.id: {c}");
    let seq = publish_text(&b, "chat.room1", "hello, room").await;
    assert_eq!(d.message("a").await, json!(["hello, room", offset(seq)]));
    let data = json!({"user": "ops", "text": "deploy at 5"});
    let seq = http_publish(b.addr, "chat.room1", &data).await;
    assert_eq!(d.message("a").await, json!([data, offset(seq)]));
    d.settles("a").await;
    let (_, topic) = get_json(b.addr, "/api/topics/chat.room1").await;
    assert_eq!(topic["subscribers"], 1, "{topic}");
    d.leave("a").await;
    eventually("the socket that left is no longer a subscriber", async || {
        get_json(b.addr, "/api/topics/chat.room1").await.1["subscribers"] == 0
    })
    .await;
    d.exit().await;
    b.stop().await;
}

async fn a_burst_arrives_once_and_in_order(t: Transports) {
    let b = spawn_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    d.connect("a", "/chat.burst", json!({})).await;
    // At once after connecting: with the default transports, while the upgrade runs.
    let n = 300;
    let batch: Vec<Value> = (1..=n).map(|i| json!({"topic": "chat.burst", "data": i})).collect();
    let (status, answers) = http_json(b.addr, "POST", "/api/publish", &Value::Array(batch)).await;
    assert_eq!(status, 200, "{answers}");
    let got = d.events_until_message("a", &json!(n)).await;
    let want: Vec<Value> = (1..=n).map(|i| json!(["message", i, offset(i)])).collect();
    assert_eq!(got, want);
    d.settles("a").await;
    d.exit().await;
    b.stop().await;
}

async fn namespaces_share_one_connection(t: Transports) {
    let b = spawn_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    let shared = json!({"forceNew": false});
    d.connect("x", "/chat.x", shared.clone()).await;
    d.connect("y", "/chat.y", shared.clone()).await;
    d.connect("main", "/", shared).await;
    let (x, y) = (d.state("x").await, d.state("y").await);
    assert_eq!(x["sid"], y["sid"], "one Engine.IO connection: {x} {y}");
    d.emit_ack("main", "subscribe", json!(["chat.*"])).await;

    let sx = publish_text(&b, "chat.x", "for x").await;
    let sy = publish_text(&b, "chat.y", "for y").await;
    assert_eq!(d.message("x").await, json!(["for x", offset(sx)]));
    assert_eq!(d.message("y").await, json!(["for y", offset(sy)]));
    for topic in ["chat.x", "chat.y"] {
        assert_eq!(d.message("main").await[0]["topic"], topic);
    }
    // Each namespace gets only its own topic.
    let sx = publish_text(&b, "chat.x", "x again").await;
    let sy = publish_text(&b, "chat.y", "y again").await;
    assert_eq!(
        d.events_until_message("y", &json!("y again")).await,
        vec![json!(["message", "y again", offset(sy)])]
    );
    assert_eq!(
        d.events_until_message("x", &json!("x again")).await,
        vec![json!(["message", "x again", offset(sx)])]
    );

    // One lost connection: every namespace on it comes back and recovers.
    d.drop_connection("x", true).await;
    let sx = publish_text(&b, "chat.x", "x missed").await;
    let sy = publish_text(&b, "chat.y", "y missed").await;
    let c = d.reconnect("x").await;
    assert_eq!(c["recovered"], true, "{c}");
    let c = d.next_connect("y").await;
    assert_eq!(c["recovered"], true, "{c}");
    assert_eq!(d.message("x").await, json!(["x missed", offset(sx)]));
    assert_eq!(d.message("y").await, json!(["y missed", offset(sy)]));
    d.settles("y").await;
    d.exit().await;
    b.stop().await;
}

async fn emits_reach_the_others_and_echo_is_opt_in(t: Transports) {
    let b = spawn_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    d.connect("a", "/chat.room1", json!({})).await;
    d.connect("b", "/chat.room1", json!({"query": {"echo": "true"}})).await;
    let ack = d.emit_ack("a", "message", json!(["hi from a"])).await;
    let seq_a = ack["seq"].as_u64().expect("the ack has the seq");
    assert_eq!(d.message("b").await, json!(["hi from a", offset(seq_a)]));
    let ack = d.emit_ack("b", "message", json!(["hi from b"])).await;
    let seq_b = ack["seq"].as_u64().unwrap();
    assert_eq!(seq_b, seq_a + 1);
    assert_eq!(d.message("a").await, json!(["hi from b", offset(seq_b)]));
    // b asked for echo: its own line comes back, once.
    assert_eq!(d.message("b").await, json!(["hi from b", offset(seq_b)]));
    // a did not: up to a later message, a got nothing of its own.
    let marker = publish_text(&b, "chat.room1", "marker").await;
    assert_eq!(
        d.events_until_message("a", &json!("marker")).await,
        vec![json!(["message", "marker", offset(marker)])]
    );
    assert_eq!(
        d.events_until_message("b", &json!("marker")).await,
        vec![json!(["message", "marker", offset(marker)])]
    );
    d.settles("a").await;
    d.settles("b").await;
    d.exit().await;
    b.stop().await;
}

async fn acks_carry_the_seq_or_the_error(t: Transports) {
    let b = spawn_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    d.connect("a", "/chat.acks", json!({})).await;
    for seq in 1..=2 {
        let ack = d.emit_ack("a", "message", json!([format!("line {seq}")])).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["topic"], "chat.acks", "{ack}");
        assert_eq!(ack["seq"], seq, "{ack}");
    }
    d.connect("m", "/", json!({})).await;
    let ack = d.emit_ack("m", "publish", json!(["$sys.x", {"n": 1}])).await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    assert!(
        ack["error"]["message"].as_str().is_some_and(|m| m.contains("$sys.x")),
        "the reason names the topic: {ack}"
    );
    let ack = d.emit_ack("m", "subscribe", json!(["bad topic!"])).await;
    assert_eq!(ack["error"]["code"], "bad_topic", "{ack}");
    let ack = d.emit_ack("m", "publish", json!(["chat.acks", "from main"])).await;
    assert_eq!((&ack["type"], &ack["seq"]), (&json!("ack"), &json!(3)), "{ack}");
    // Without an ack callback, a refusal arrives as an `error` event.
    d.emit("m", "publish", json!(["$sys.x", {"n": 2}])).await;
    let error = d.event("m", "error").await;
    assert_eq!(error[0]["code"], "forbidden", "{error}");
    d.settles("a").await;
    d.settles("m").await;
    d.exit().await;
    b.stop().await;
}

async fn binary_round_trips_as_buffers(t: Transports) {
    let b = spawn_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    d.connect("a", "/chat.bin", json!({})).await;
    d.connect("b", "/chat.bin", json!({})).await;
    let mut w = connect(&b.ws_url("/ws")).await;
    w.subscribe("chat.bin").await;
    let sent: Vec<u8> = (0..=255u8).chain([0, 0xff, 0x1e]).collect();
    let ack = d.emit_ack("a", "message", json!([bytes(&sent)])).await;
    let seq = ack["seq"]
        .as_u64()
        .expect("a binary message is acknowledged with its seq");
    assert_eq!(d.message("b").await, json!([bytes(&sent), offset(seq)]));
    // The same bytes for every other way out.
    let m = w.recv().await;
    assert_eq!(m["encoding"], "base64", "{m}");
    assert_eq!(m["data"], bytes(&sent)["$bytes"], "{m}");
    // Bytes published over HTTP, or on the main namespace, arrive as a Buffer too.
    let seq = publish_as(&b, "chat.bin", "application/octet-stream", b"\x00\x01raw").await;
    for who in ["a", "b"] {
        assert_eq!(
            d.message(who).await,
            json!([bytes(b"\x00\x01raw"), offset(seq)]),
            "{who}"
        );
    }
    d.connect("m", "/", json!({})).await;
    let ack = d
        .emit_ack("m", "publish", json!(["chat.bin", bytes(b"\xffmain")]))
        .await;
    let seq = ack["seq"].as_u64().expect("acknowledged with its seq");
    for who in ["a", "b"] {
        assert_eq!(d.message(who).await, json!([bytes(b"\xffmain"), offset(seq)]), "{who}");
    }
    d.settles("a").await;
    d.exit().await;
    b.stop().await;
}

async fn custom_events_keep_their_name_and_arguments(t: Transports) {
    let b = spawn_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    d.connect("a", "/chat.room1", json!({})).await;
    d.connect("b", "/chat.room1", json!({})).await;
    let mut w = connect(&b.ws_url("/ws")).await;
    w.subscribe("chat.room1").await;
    d.emit("a", "typing", json!(["bob", 7])).await;
    let args = d.event("b", "typing").await;
    assert_eq!(args, json!(["bob", 7, "1"]));
    let m = w.recv().await;
    assert_eq!(m["data"], json!({"event": "typing", "args": ["bob", 7]}), "{m}");
    d.emit("a", "reaction", json!([{"emoji": "+1"}, [1, 2], null, "last"]))
        .await;
    assert_eq!(
        d.event("b", "reaction").await,
        json!([{"emoji": "+1"}, [1, 2], null, "last", "2"])
    );
    d.settles("b").await;
    d.exit().await;
    b.stop().await;
}

async fn the_main_namespace_subscribes_publishes_and_unsubscribes(t: Transports) {
    let b = spawn_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    d.connect("m", "/", json!({})).await;
    let ack = d.emit_ack("m", "subscribe", json!(["quotes.>"])).await;
    assert_eq!(
        (&ack["type"], &ack["topic"]),
        (&json!("ack"), &json!("quotes.>")),
        "{ack}"
    );
    d.emit_ack("m", "subscribe", json!(["markers.end"])).await;

    let seq = http_publish(b.addr, "quotes.NASDAQ.AAPL", &json!({"px": 190.5})).await;
    let m = &d.message("m").await[0];
    assert_eq!(
        (&m["type"], &m["topic"], &m["seq"], &m["data"]),
        (
            &json!("message"),
            &json!("quotes.NASDAQ.AAPL"),
            &json!(seq),
            &json!({"px": 190.5})
        ),
        "{m}"
    );
    assert!(m["ts"].as_u64().is_some_and(|ts| ts > 0), "{m}");

    // A publish from the client: acknowledged, and (like /ws) seen by the publisher too.
    let ack = d
        .emit_ack("m", "publish", json!(["quotes.NYSE.IBM", {"px": 250}]))
        .await;
    assert_eq!(
        (&ack["topic"], &ack["seq"]),
        (&json!("quotes.NYSE.IBM"), &json!(1)),
        "{ack}"
    );
    let m = &d.message("m").await[0];
    assert_eq!(
        (&m["topic"], &m["data"]),
        (&json!("quotes.NYSE.IBM"), &json!({"px": 250})),
        "{m}"
    );

    let ack = d.emit_ack("m", "unsubscribe", json!(["quotes.>"])).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let missed = http_publish(b.addr, "quotes.NASDAQ.AAPL", &json!({"px": 191})).await;
    http_publish(b.addr, "markers.end", &json!("end")).await;
    let seen = d
        .until("m", |l| l["on"] == "event" && l["args"][0]["topic"] == "markers.end")
        .await;
    let events: Vec<&Value> = seen.iter().filter(|l| l["on"] == "event").collect();
    assert_eq!(events.len(), 1, "only the marker after the unsubscribe: {seen:?}");

    // `since` replays from history what the client was not subscribed for.
    let ack = d
        .emit_ack("m", "subscribe", json!(["quotes.NASDAQ.AAPL", {"since": seq}]))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let m = &d.message("m").await[0];
    assert_eq!((&m["seq"], &m["data"]), (&json!(missed), &json!({"px": 191})), "{m}");
    d.settles("m").await;
    d.exit().await;
    b.stop().await;
}

async fn a_reconnecting_client_recovers_what_it_missed(t: Transports) {
    let b = spawn_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    let c = d.connect("a", "/chat.rec", json!({})).await;
    assert_eq!(c["recovered"], false, "a first connection recovers nothing: {c}");
    let s1 = publish_text(&b, "chat.rec", "m1").await;
    assert_eq!(d.message("a").await, json!(["m1", offset(s1)]));

    // Lost while two messages are published; then back.
    d.drop_connection("a", true).await;
    let s2 = publish_text(&b, "chat.rec", "m2").await;
    let s3 = publish_text(&b, "chat.rec", "m3").await;
    let c = d.reconnect("a").await;
    assert_eq!(c["recovered"], true, "{c}");
    let s4 = publish_text(&b, "chat.rec", "m4").await;
    assert_eq!(
        d.events_until_message("a", &json!("m4")).await,
        vec![
            json!(["message", "m2", offset(s2)]),
            json!(["message", "m3", offset(s3)]),
            json!(["message", "m4", offset(s4)]),
        ],
        "the missed messages once each, in order, then the live one"
    );

    // The client's own reconnection (after socket.io.engine.close()) recovers too.
    d.drop_connection("a", false).await;
    let c = d.next_connect("a").await;
    assert_eq!(c["recovered"], true, "{c}");
    let s5 = publish_text(&b, "chat.rec", "m5").await;
    assert_eq!(
        d.events_until_message("a", &json!("m5")).await,
        vec![json!(["message", "m5", offset(s5)])],
        "nothing again after a reconnection that missed nothing"
    );
    d.settles("a").await;
    d.exit().await;
    b.stop().await;
}

/// A broker keeping one message of `chat.tiny`, and client `a` on it that saw m1, then
/// lost its connection while m2, m3 and m4 were published (history keeps only m4), then
/// came back; the connect line.
async fn reconnect_beyond_history(b: &TestBroker, d: &mut Driver) -> Value {
    d.connect("a", "/chat.tiny", json!({})).await;
    let s1 = publish_text(b, "chat.tiny", "m1").await;
    assert_eq!(d.message("a").await, json!(["m1", offset(s1)]));
    d.drop_connection("a", true).await;
    for text in ["m2", "m3", "m4"] {
        publish_text(b, "chat.tiny", text).await;
    }
    d.reconnect("a").await
}

async fn tiny_history_broker() -> TestBroker {
    spawn_broker_with(|c| {
        c.topics.push(TopicRule {
            pattern: "chat.tiny".into(),
            history_size: Some(1),
            ttl: None,
            last_value: false,
            policy: None,
            presence: false,
            compression: None,
        })
    })
    .await
}

async fn recovery_beyond_history_sends_a_gap(t: Transports) {
    let b = tiny_history_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    reconnect_beyond_history(&b, &mut d).await;
    let seen = d.events_until_message("a", &json!("m4")).await;
    assert_eq!(
        seen,
        vec![
            json!(["gap", {"type": "gap", "topic": "chat.tiny", "from": 2, "to": 3, "reason": "history"}]),
            json!(["message", "m4", "4"]),
        ],
        "what is lost is named, then what history kept arrives"
    );
    d.settles("a").await;
    d.exit().await;
    b.stop().await;
}

async fn recovery_beyond_history_is_not_reported_as_recovered(t: Transports) {
    let b = tiny_history_broker().await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    let c = reconnect_beyond_history(&b, &mut d).await;
    assert_eq!(
        c["recovered"], false,
        "m2 and m3 are lost, so the state was not recovered: {c}"
    );
    d.exit().await;
    b.stop().await;
}

const SECRET: &str = "socketio-test-secret";

/// An HS256 token for `sub` with these grants, valid for an hour.
fn token(sub: &str, subscribe: &[&str], publish: &[&str]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({"sub": sub, "exp": exp, "subscribe": subscribe, "publish": publish});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn refused_tokens_and_namespaces_get_connect_error(t: Transports) {
    let b = spawn_broker_with(|c| {
        c.auth.mode = AuthMode::Jwt;
        c.auth.jwt_secret = SECRET.into();
    })
    .await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    let chat = token("u1", &["chat.*"], &["chat.*"]);

    let e = d
        .open("bad", "/chat.room1", json!({"auth": {"token": "not-a-jwt"}}))
        .await;
    assert_eq!(e["on"], "connect_error", "{e}");
    assert_eq!(e["data"]["code"], "unauthorized", "{e}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "a reason: {e}");

    let e = d.open("nosy", "/secret.plans", json!({"auth": {"token": chat}})).await;
    assert_eq!(e["on"], "connect_error", "{e}");
    assert_eq!(e["data"]["code"], "forbidden", "{e}");
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("secret.plans")),
        "the reason names the topic: {e}"
    );

    // The granted namespace works, with the token in `auth` or in the query.
    d.connect("a", "/chat.room1", json!({"auth": {"token": chat}})).await;
    d.connect("q", "/chat.room1", json!({"query": {"token": chat}})).await;
    let ack = d.emit_ack("q", "message", json!(["hi"])).await;
    assert_eq!(
        d.message("a").await,
        json!(["hi", offset(ack["seq"].as_u64().unwrap())])
    );
    d.settles("a").await;
    d.exit().await;
    b.stop().await;
}

async fn the_configured_heartbeat_reaches_the_client_and_keeps_it_up(t: Transports) {
    let interval = Duration::from_millis(200);
    let b = spawn_broker_with(|c| {
        c.socketio.ping_interval = interval;
        c.socketio.ping_timeout = Duration::from_millis(400);
    })
    .await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    let started = tokio::time::Instant::now();
    d.connect("a", "/chat.beat", json!({})).await;
    let s = d.state("a").await;
    assert_eq!(
        (&s["pingInterval"], &s["pingTimeout"]),
        (&json!(200), &json!(400)),
        "{s}"
    );

    let mut pings = 0;
    let seen = d
        .until("a", |l| {
            pings += (l["on"] == "ping") as u32;
            pings == 5
        })
        .await;
    assert!(
        !seen.iter().any(|l| l["on"] == "disconnect"),
        "the connection stayed up across the pings: {seen:?}"
    );
    assert!(
        started.elapsed() >= interval * 4,
        "pings come every {interval:?}, not faster"
    );
    let ack = d.emit_ack("a", "message", json!(["still here"])).await;
    assert_eq!(ack["seq"], 1, "{ack}");
    d.settles("a").await;
    d.exit().await;
    b.stop().await;
}

async fn cross_origin_clients_need_an_allowed_origin(t: Transports) {
    let b = spawn_broker_with(|c| c.server.allowed_origins = vec!["http://allowed.example".into()]).await;
    let Some(mut d) = Driver::start(&b, t).await else {
        return;
    };
    let allowed = json!({"extraHeaders": {"origin": "http://allowed.example"}});
    d.connect("a", "/chat.room1", allowed).await;
    let seq = publish_text(&b, "chat.room1", "across origins").await;
    assert_eq!(d.message("a").await, json!(["across origins", offset(seq)]));
    d.settles("a").await;

    let refused = json!({"extraHeaders": {"origin": "http://evil.example"}, "reconnection": false});
    let e = d.open("evil", "/chat.room1", refused).await;
    assert_eq!(e["on"], "connect_error", "{e}");
    d.exit().await;
    b.stop().await;
}

/// The head of the answer to `GET path` with `headers`, lowercased.
async fn response_head(b: &TestBroker, path: &str, headers: &[(&str, &str)]) -> String {
    let mut s = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n", b.addr);
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    text.split("\r\n\r\n").next().unwrap().to_owned()
}

#[tokio::test]
async fn long_polling_answers_an_allowed_origin_with_cors_headers() {
    let b = spawn_broker_with(|c| c.server.allowed_origins = vec!["http://allowed.example".into()]).await;
    let handshake = "/socket.io/?EIO=4&transport=polling";
    let head = response_head(&b, handshake, &[("origin", "http://allowed.example")]).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("access-control-allow-origin: http://allowed.example"),
        "{head}"
    );
    let head = response_head(&b, handshake, &[("origin", "http://evil.example")]).await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    b.stop().await;
}
