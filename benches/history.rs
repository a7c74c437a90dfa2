//! Publish throughput with history on (64 messages retained) and off: the
//! ring append happens under the topic lock on the hot path, so it must stay
//! cheap (the budget is 15% of publish throughput).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fanout::config::Config;
use fanout::protocol::{Payload, SessionId, Wire};
use fanout::queue::{Drained, QueueLimits, SendQueue};
use fanout::registry::Registry;
use fanout::topic::{Filter, TopicName};

/// Publishes between drains of the one subscriber's queue.
const BATCH: u64 = 1024;

fn publish(c: &mut Criterion, name: &str, history_size: usize) {
    let mut config = Config::default();
    config.history.size = history_size;
    let registry = Registry::new(Arc::new(config));
    let topic = TopicName::parse("bench.topic").unwrap_or_else(|e| panic!("{e}"));
    // One subscriber keeps the topic alive (an idle topic is reaped) and makes
    // each publish encode and queue a frame, as in production.
    let queue = Arc::new(SendQueue::new(
        SessionId(1),
        Wire::Json,
        true,
        QueueLimits {
            max_messages: 1 << 20,
            max_bytes: 1 << 30,
        },
    ));
    let _ = registry.subscribe(&Filter::Exact(topic.clone()), &queue, None, |_| {});
    let payload = Payload::Json(bytes::Bytes::from_static(br#"{"price":101.25,"size":300}"#));
    let mut drained = Drained::default();
    let mut group = c.benchmark_group("publish");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(name, |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                registry.publish(&topic, payload.clone(), None);
            }
            queue.drain(&mut drained);
        })
    });
    group.finish();
}

fn history_off(c: &mut Criterion) {
    publish(c, "history_off", 0);
}

fn history_on(c: &mut Criterion) {
    publish(c, "history_on_64", 64);
}

criterion_group!(benches, history_off, history_on);
criterion_main!(benches);
