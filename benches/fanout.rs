//! The publish path without sockets: `Registry::publish` to 1, 100, 1,000
//! and 10,000 subscribers (seq, history, encode once, one queue push per
//! subscriber), and the send queue's push/drain under each policy.

use std::sync::Arc;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fanout::config::{Config, Policy};
use fanout::protocol::{Message, Payload, SessionId, Wire};
use fanout::queue::{Drained, QueueLimits, SendQueue};
use fanout::registry::Registry;
use fanout::topic::{Filter, TopicName};

fn queue(id: u64, wire: Wire, max_messages: usize) -> Arc<SendQueue> {
    let limits = QueueLimits {
        max_messages,
        max_bytes: usize::MAX,
    };
    Arc::new(SendQueue::new(SessionId(id), wire, true, limits))
}

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    for subscribers in [1usize, 100, 1000, 10_000] {
        let registry = Registry::new(Arc::new(Config::default()));
        let topic = TopicName::parse("feed").unwrap();
        let queues: Vec<_> = (0..subscribers).map(|i| queue(i as u64, Wire::Json, 1 << 20)).collect();
        for q in &queues {
            registry
                .subscribe(&Filter::Exact(topic.clone()), q, None, |_| {})
                .expect("subscribe");
        }
        let payload = Payload::text("x".repeat(100));
        let mut drained = Drained::default();
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(format!("{subscribers} subscribers"), |b| {
            b.iter_batched(
                || {
                    // Empty the queues outside the timing, as writers would.
                    for q in &queues {
                        q.drain(&mut drained);
                    }
                },
                |_| black_box(registry.publish(&topic, payload.clone(), None)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn policies(c: &mut Criterion) {
    let topic = TopicName::parse("feed").unwrap();
    let msgs: Vec<_> = (1..=1024u64)
        .map(|seq| {
            let m = Arc::new(Message::new(
                topic.clone(),
                seq,
                0,
                Payload::text("x".repeat(100)),
                None,
            ));
            m.frame(Wire::Raw);
            m
        })
        .collect();
    let mut group = c.benchmark_group("queue push 1024 into 256 + drain");
    group.throughput(Throughput::Elements(msgs.len() as u64));
    for policy in [
        Policy::DropOldest,
        Policy::DropNewest,
        Policy::Conflate,
        Policy::Disconnect,
    ] {
        group.bench_function(format!("{policy:?}"), |b| {
            let mut drained = Drained::default();
            b.iter(|| {
                let q = queue(1, Wire::Raw, 256);
                for m in &msgs {
                    q.push_message(m, policy);
                }
                q.drain(&mut drained);
                black_box(drained.entries.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, publish, policies);
criterion_main!(benches);
