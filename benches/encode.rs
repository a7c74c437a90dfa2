//! Encoding one published message into a complete frame, once per wire
//! format (the only per-message encoding work on the publish path),
//! decoding a client's publish request, and (`formats/`) what accepting
//! `data` costs: the check that every wire format can carry it
//! (`json::payload`, `msgpack::payload`, and within decoding a publish), and
//! the transcoding between JSON and MessagePack, on a ~100-byte and a ~4 KiB value;
//! and (`deflate/`) permessage-deflate: compressing a message's frame (once per
//! message and format, whatever its fan-out) and inflating a client's message.

use std::sync::Arc;

use bytes::Bytes;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fanout::protocol::{self, Message, Payload, Wire};
use fanout::topic::TopicName;

fn encode(c: &mut Criterion) {
    let topic = TopicName::parse("quotes.NASDAQ.AAPL").unwrap();
    let json = Payload::Json(Bytes::from_static(
        br#"{"bid":189.21,"ask":189.23,"size":300,"venue":"XNAS","t":1763768000123}"#,
    ));
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    for (name, wire, payload) in [
        ("json->json", Wire::Json, json.clone()),
        ("json->msgpack", Wire::Msgpack, json.clone()),
        ("json->raw", Wire::Raw, json.clone()),
        ("json->sse_raw", Wire::SseRaw, json.clone()),
        ("json->iframe", Wire::Iframe, json.clone()),
        ("text->json", Wire::Json, Payload::text("a danmaku comment flying by")),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let m = Arc::new(Message::new(topic.clone(), 1, 1, payload.clone(), None));
                black_box(m.frame(wire).len())
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let json = br#"{"op":"publish","topic":"chat.room1","data":{"user":"a","text":"hi there"},"id":3}"#;
    c.bench_function("decode/json publish", |b| {
        b.iter(|| protocol::decode(Wire::Json, black_box(json)))
    });
    let mp = rmp_serde::to_vec_named(
        &serde_json::json!({"op":"publish","topic":"chat.room1","data":{"user":"a","text":"hi there"},"id":3}),
    )
    .unwrap();
    c.bench_function("decode/msgpack publish", |b| {
        b.iter(|| protocol::decode(Wire::Msgpack, black_box(&mp)))
    });
}

/// A typical chat/feed object, about 100 bytes of JSON.
const SMALL: &str =
    r#"{"user":"alice","room":"chat.room1","text":"hello there, how are you?","ts":1763768000123,"n":42}"#;

/// About 4 KiB of JSON: an order book of prices (floats), sizes (integers) and names.
fn large() -> String {
    let mut levels = Vec::new();
    let mut i = 0u32;
    while serde_json::to_string(&levels).map_or(0, |s| s.len()) < 4000 {
        levels.push(serde_json::json!({
            "sym": format!("SYM{i}"),
            "bid": 189.21 + f64::from(i) * 0.37,
            "ask": 189.23 + f64::from(i) * 0.41,
            "size": 300 * i,
            "venue": "XNAS",
            "live": i % 2 == 0,
        }));
        i += 1;
    }
    serde_json::json!({"book": levels, "seq": 1763768000123u64}).to_string()
}

/// A publish request carrying `data` (a JSON text), in JSON and in MessagePack.
fn requests(data: &str) -> (String, Vec<u8>) {
    let value: serde_json::Value = serde_json::from_str(data).unwrap();
    let request = serde_json::json!({"op":"publish","topic":"chat.room1","data":value,"id":3});
    (request.to_string(), rmp_serde::to_vec_named(&request).unwrap())
}

fn formats(c: &mut Criterion) {
    let topic = TopicName::parse("quotes.NASDAQ.AAPL").unwrap();
    let large = large();
    let mut group = c.benchmark_group("formats");
    group.throughput(Throughput::Elements(1));
    for (size, data) in [("100B", SMALL), ("4KiB", large.as_str())] {
        let (json_request, msgpack_request) = requests(data);
        let msgpack_data = rmp_serde::to_vec_named(&serde_json::from_str::<serde_json::Value>(data).unwrap()).unwrap();
        group.bench_function(format!("json::payload {size}"), |b| {
            b.iter(|| protocol::json::payload(black_box(data)).is_ok())
        });
        let msgpack_value = rmpv::decode::read_value_ref(&mut &msgpack_data[..]).unwrap();
        group.bench_function(format!("msgpack::payload {size}"), |b| {
            b.iter(|| protocol::msgpack::payload(black_box(&msgpack_value)).is_ok())
        });
        group.bench_function(format!("decode json publish {size}"), |b| {
            b.iter(|| protocol::decode(Wire::Json, black_box(json_request.as_bytes())).is_ok())
        });
        group.bench_function(format!("decode msgpack publish {size}"), |b| {
            b.iter(|| protocol::decode(Wire::Msgpack, black_box(&msgpack_request)).is_ok())
        });
        for (direction, wire, payload) in [
            (
                "json->msgpack",
                Wire::Msgpack,
                Payload::Json(Bytes::copy_from_slice(data.as_bytes())),
            ),
            (
                "msgpack->json",
                Wire::Json,
                Payload::Msgpack(Bytes::from(msgpack_data.clone())),
            ),
        ] {
            group.bench_function(format!("{direction} {size}"), |b| {
                b.iter(|| {
                    let m = Message::new(topic.clone(), 1, 1, payload.clone(), None);
                    black_box(m.frame(wire).len())
                })
            });
        }
    }
    group.finish();
}

/// A quote of about 200 bytes and a scoreboard of about 2 KB, as the benchmarks publish.
fn deflate_payloads() -> [(&'static str, Vec<u8>); 2] {
    let quote = br#"{"symbol":"ACME","bid":101.23,"ask":101.27,"last":101.25,"volume":1234567,"change":-0.42,"high":102.10,"low":100.85,"open":101.60,"venue":"XNAS","ts":1733000000123,"seq":917}"#.to_vec();
    let teams = [
        "Lions", "Tigers", "Bears", "Wolves", "Hawks", "Eagles", "Sharks", "Bulls",
    ];
    let games: Vec<serde_json::Value> = (0..16)
        .map(|i| {
            serde_json::json!({"home": {"team": teams[i % 8], "score": (i * 7) % 31, "shots": i * 3 + 1},
             "away": {"team": teams[(i + 3) % 8], "score": (i * 5) % 29, "shots": i * 2 + 4},
             "clock": format!("{:02}:{:02}", (i * 13) % 60, (i * 29) % 60), "period": i % 4 + 1})
        })
        .collect();
    let board = serde_json::to_vec(&serde_json::json!({"league": "demo", "games": games})).unwrap();
    [("quote 200B", quote), ("scoreboard 2KB", board)]
}

fn deflate(c: &mut Criterion) {
    use fanout::config::Deflate;
    use fanout::protocol::deflate::{compress_frame, Inflater};
    use fanout::protocol::frame::{self, OpCode};
    let mut group = c.benchmark_group("deflate");
    group.throughput(Throughput::Elements(1));
    for (name, body) in deflate_payloads() {
        let plain = frame::encode(OpCode::Text, &body);
        for level in [1u8, 3, 6] {
            let rule = Deflate { level, min_bytes: 0 };
            group.bench_function(format!("compress {name} level {level}"), |b| {
                b.iter(|| black_box(compress_frame(black_box(&plain), rule)))
            });
        }
        let z = compress_frame(&plain, Deflate { level: 3, min_bytes: 0 }).unwrap();
        let compressed = frame::payload_of(&z).to_vec();
        group.bench_function(format!("inflate {name}"), |b| {
            b.iter(|| {
                let mut out = bytes::BytesMut::new();
                let mut inf = Inflater::new();
                inf.push(black_box(&compressed), &mut out, 1 << 20).unwrap();
                inf.finish(&mut out, 1 << 20).unwrap();
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, decode, formats, deflate);
criterion_main!(benches);
