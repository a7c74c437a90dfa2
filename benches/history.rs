//! Publish throughput with history on (64 messages retained) and off: the
//! ring append happens under the topic lock on the hot path, so it must stay
//! cheap (the budget is 15% of publish throughput).
//!
//! Timings of this worst case (one subscriber, so the ring is a large share of
//! each publish) vary by ±20% between runs here; for a repeatable figure, count
//! instructions instead (see BENCHMARKS.md):
//! `FANOUT_BENCH_PUBLISHES=200000 FANOUT_BENCH_HISTORY=64 valgrind --tool=callgrind <bench binary>`
//! runs that many publishes once, outside criterion.

use std::sync::Arc;

use criterion::{criterion_group, Criterion, Throughput};
use fanout::config::Config;
use fanout::protocol::{Payload, SessionId, Wire};
use fanout::queue::{Drained, QueueLimits, SendQueue};
use fanout::registry::Registry;
use fanout::topic::{Filter, TopicName};

/// Publishes between drains of the one subscriber's queue.
const BATCH: u64 = 1024;

/// A registry with one subscriber on `bench.topic`, retaining `history_size` messages.
fn setup(history_size: usize) -> (Registry, TopicName, Arc<SendQueue>) {
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
    (registry, topic, queue)
}

fn payload() -> Payload {
    Payload::Json(bytes::Bytes::from_static(br#"{"price":101.25,"size":300}"#))
}

fn publish(c: &mut Criterion, name: &str, history_size: usize) {
    let (registry, topic, queue) = setup(history_size);
    let payload = payload();
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

/// `publishes` publishes in batches as the criterion bench does, once: for valgrind.
fn fixed(publishes: u64, history_size: usize) {
    let (registry, topic, queue) = setup(history_size);
    let payload = payload();
    let mut drained = Drained::default();
    for _ in 0..publishes / BATCH {
        for _ in 0..BATCH {
            registry.publish(&topic, payload.clone(), None);
        }
        queue.drain(&mut drained);
    }
}

criterion_group!(benches, history_off, history_on);

fn main() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    if let Some(publishes) = env("FANOUT_BENCH_PUBLISHES") {
        fixed(publishes, env("FANOUT_BENCH_HISTORY").unwrap_or(64) as usize);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
