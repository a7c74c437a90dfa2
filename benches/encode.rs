//! Encoding one published message into a complete frame, once per wire
//! format (the only per-message encoding work on the publish path), and
//! decoding a client's publish request.

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

criterion_group!(benches, encode, decode);
criterion_main!(benches);
