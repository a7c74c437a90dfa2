//! permessage-deflate (RFC 7692) over real sockets: what the broker answers
//! to offers, that a message is compressed once and every subscriber that
//! negotiated the extension gets the same compressed frame, that small,
//! excluded and too-wide messages go plain, that compressed client messages
//! are read with the size limit on what they inflate to, and that clients
//! without the extension (tokio-tungstenite) are unaffected.

mod common;

use common::deflate::{deflate, DeflateClient, ANSWER, BROWSER_OFFER};
use common::{connect, http_publish, spawn_broker, spawn_broker_with};
use fanout::config::TopicRule;
use serde_json::{json, Value};

/// A live scoreboard of about 2 KB: repetitive keys, varying numbers.
fn scoreboard() -> Value {
    let teams = [
        "Lions", "Tigers", "Bears", "Wolves", "Hawks", "Eagles", "Sharks", "Bulls",
    ];
    let games: Vec<Value> = (0..12)
        .map(|i| {
            json!({
                "home": {"team": teams[i % 8], "score": (i * 7) % 31, "shots": i * 3 + 1},
                "away": {"team": teams[(i + 3) % 8], "score": (i * 5) % 29, "shots": i * 2 + 4},
                "clock": format!("{:02}:{:02}", (i * 13) % 60, (i * 29) % 60),
                "period": i % 4 + 1,
                "status": "live"
            })
        })
        .collect();
    json!({"league": "demo", "updated": 1733000000123u64, "games": games})
}

async fn subscriber(b: &common::TestBroker, topic: &str, offer: &str) -> DeflateClient {
    let mut c = DeflateClient::connect(b.addr, "/ws", offer).await;
    c.send_frame(
        0x81,
        json!({"op": "subscribe", "topic": topic, "id": 1})
            .to_string()
            .as_bytes(),
    )
    .await;
    let ack = c.next_data().await;
    assert_eq!(ack.json()["type"], "ack", "{ack:?}");
    c
}

#[tokio::test]
async fn a_browser_offer_is_answered_without_context_takeover_and_big_messages_arrive_compressed() {
    let b = spawn_broker().await;
    let mut z1 = subscriber(&b, "scores", BROWSER_OFFER).await;
    let mut z2 = subscriber(&b, "scores", BROWSER_OFFER).await;
    assert_eq!(z1.extensions.as_deref(), Some(ANSWER));
    let mut plain = connect(&b.ws_url("/ws")).await;
    plain.subscribe("scores").await;

    let board = scoreboard();
    let seq = http_publish(b.addr, "scores", &board).await;
    let (f1, f2) = (z1.next_data().await, z2.next_data().await);
    assert!(f1.compressed, "a 2 KB message is compressed");
    let m = f1.json();
    assert_eq!((m["seq"].as_u64(), &m["data"]), (Some(seq), &board));
    assert_eq!(f1, f2, "both subscribers get the one compressed frame");
    let uncompressed = serde_json::to_vec(&m).unwrap().len();
    assert!(
        f1.wire_len * 3 < uncompressed,
        "{} bytes on the wire for {uncompressed}",
        f1.wire_len
    );
    // The client without the extension gets the same message, plain.
    assert_eq!(plain.recv().await["data"], board);

    // Below `min_bytes` (256 by default) a message goes plain even to z1.
    http_publish(b.addr, "scores", &json!({"q": 1})).await;
    let small = z1.next_data().await;
    assert!(!small.compressed);
    assert_eq!(small.json()["data"], json!({"q": 1}));
    b.stop().await;
}

#[tokio::test]
async fn raw_sockets_and_msgpack_get_compressed_frames_too() {
    let b = spawn_broker().await;
    let mut raw = DeflateClient::connect(b.addr, "/ws/t/scores", BROWSER_OFFER).await;
    let mut mp = DeflateClient::connect(b.addr, "/ws?format=msgpack", BROWSER_OFFER).await;
    let sub = rmp_serde::to_vec_named(&json!({"op": "subscribe", "topic": "scores", "id": 1})).unwrap();
    mp.send_frame(0x82, &sub).await;
    assert_eq!(mp.next_data().await.opcode, 2);
    // The raw socket subscribed on upgrade; a publish that reaches it proves it.
    let board = scoreboard();
    http_publish(b.addr, "scores", &board).await;
    let f = raw.next_data().await;
    assert!(f.compressed && f.opcode == 1);
    assert_eq!(f.json(), board, "a raw socket's frame is exactly the payload");
    let f = mp.next_data().await;
    assert!(f.compressed && f.opcode == 2);
    assert_eq!(common::msgpack_to_json(&f.payload)["data"], board);
    b.stop().await;
}

#[tokio::test]
async fn compressed_client_messages_are_published_and_replies_over_min_bytes_compressed() {
    let b = spawn_broker_with(|c| c.compression.min_bytes = 80).await;
    let mut reader = subscriber(&b, "chat", BROWSER_OFFER).await;
    let mut writer = DeflateClient::connect(b.addr, "/ws", BROWSER_OFFER).await;
    let text = "hello ".repeat(100);
    let publish = json!({"op": "publish", "topic": "chat", "data": text, "id": 7}).to_string();
    writer.send_compressed_text(&publish).await;
    let ack = writer.next_data().await;
    assert_eq!(ack.json()["type"], "ack", "{ack:?}");
    assert!(!ack.compressed, "a short ack goes plain");
    assert_eq!(reader.next_data().await.json()["data"], text);

    // A reply over min_bytes is compressed: the error for a topic too long (96 bytes).
    let bad = format!("bad topic {}", "x".repeat(300));
    writer
        .send_compressed_text(&json!({"op": "subscribe", "topic": bad, "id": 8}).to_string())
        .await;
    let err = writer.next_data().await;
    assert!(err.compressed, "{err:?}");
    assert_eq!(err.json()["type"], "error");
    assert_eq!(err.json()["id"], 8);
    b.stop().await;
}

#[tokio::test]
async fn a_small_frame_that_inflates_past_the_limit_is_closed_with_1009() {
    let b = spawn_broker_with(|c| c.limits.max_message_bytes = 65536).await;
    let mut c = DeflateClient::connect(b.addr, "/ws/t/bombs", BROWSER_OFFER).await;
    let bomb = deflate(&vec![b'a'; 8 << 20]);
    assert!(bomb.len() < 65536 / 4, "{} bytes", bomb.len());
    c.send_frame(0x80 | 0x40 | 0x1, &bomb).await;
    let close = c.next_data().await;
    assert_eq!(close.close_code(), 1009);
    b.stop().await;
}

#[tokio::test]
async fn bad_deflate_data_is_closed_with_1007_and_rsv1_on_a_control_frame_with_1002() {
    let b = spawn_broker().await;
    let mut c = DeflateClient::connect(b.addr, "/ws/t/t", BROWSER_OFFER).await;
    c.send_frame(0x80 | 0x40 | 0x2, &[0xff; 20]).await;
    assert_eq!(c.next_data().await.close_code(), 1007);
    let mut c = DeflateClient::connect(b.addr, "/ws/t/t", BROWSER_OFFER).await;
    c.send_frame(0x80 | 0x40 | 0x9, b"").await;
    assert_eq!(c.next_data().await.close_code(), 1002);
    b.stop().await;
}

#[tokio::test]
async fn offers_that_cannot_be_honoured_are_declined_and_rsv1_then_is_a_protocol_error() {
    let b = spawn_broker().await;
    let mut c = DeflateClient::connect(b.addr, "/ws/t/t", "permessage-deflate; server_max_window_bits=7").await;
    assert_eq!(c.extensions, None);
    c.send_compressed_text("hello").await;
    assert_eq!(c.next_data().await.close_code(), 1002);
    let c = DeflateClient::connect(b.addr, "/ws", "permessage-deflate; unknown_param").await;
    assert_eq!(c.extensions, None);
    // The second offer of the list is acceptable.
    let c = DeflateClient::connect(b.addr, "/ws", "permessage-deflate; x=1, permessage-deflate").await;
    assert_eq!(c.extensions.as_deref(), Some(ANSWER));
    b.stop().await;
}

#[tokio::test]
async fn a_smaller_server_window_gets_only_messages_that_fit_it_compressed() {
    let b = spawn_broker().await;
    let offer = "permessage-deflate; server_max_window_bits=9";
    let mut c = DeflateClient::connect(b.addr, "/ws/t/w", offer).await;
    assert_eq!(c.extensions, Some(format!("{ANSWER}; server_max_window_bits=9")));
    let mut wide = DeflateClient::connect(b.addr, "/ws/t/w", BROWSER_OFFER).await;
    let small = json!({"text": "abc ".repeat(100)}); // about 410 bytes: within 512
    let big = scoreboard();
    http_publish(b.addr, "w", &small).await;
    http_publish(b.addr, "w", &big).await;
    let (f1, f2) = (c.next_data().await, c.next_data().await);
    assert!(f1.compressed, "{} bytes fit a 512-byte window", f1.payload.len());
    assert!(!f2.compressed, "a 2 KB message does not fit a 512-byte window");
    assert_eq!((f1.json(), f2.json()), (small, big.clone()));
    assert!(wide.next_data().await.compressed && wide.next_data().await.compressed);
    b.stop().await;
}

#[tokio::test]
async fn a_topic_rule_or_the_setting_turns_compression_off() {
    let b = spawn_broker_with(|c| {
        c.topics.push(TopicRule {
            pattern: "images.>".into(),
            history_size: None,
            ttl: None,
            last_value: false,
            policy: None,
            presence: false,
            compression: Some(false),
        })
    })
    .await;
    let mut c = DeflateClient::connect(b.addr, "/ws/t/images.cam1", BROWSER_OFFER).await;
    assert_eq!(c.extensions.as_deref(), Some(ANSWER));
    http_publish(b.addr, "images.cam1", &scoreboard()).await;
    let f = c.next_data().await;
    assert!(!f.compressed, "the rule keeps images.> plain");
    assert_eq!(f.json(), scoreboard());
    b.stop().await;

    let b = spawn_broker_with(|c| c.compression.enabled = false).await;
    let c = DeflateClient::connect(b.addr, "/ws", BROWSER_OFFER).await;
    assert_eq!(c.extensions, None, "[compression] enabled = false declines every offer");
    b.stop().await;
}

#[tokio::test]
async fn history_replays_compressed_to_a_resuming_subscriber() {
    let b = spawn_broker().await;
    let board = scoreboard();
    http_publish(b.addr, "h", &board).await;
    let mut c = DeflateClient::connect(b.addr, "/ws/t/h?since=0", BROWSER_OFFER).await;
    let f = c.next_data().await;
    assert!(f.compressed);
    assert_eq!(f.json(), board);
    b.stop().await;
}
