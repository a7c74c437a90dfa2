//! What one publish pays for the registry's shared state, with many topics:
//! admitting a publish under `limits.max_topics`, counting drops under a full
//! queue with metrics on, and making a new topic while a pattern subscribe
//! scans 100,000 others. Each measures a cost that used to grow with the
//! broker's size (every table shard locked, a label lookup per drop, the
//! pattern index's lock held across the scan).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use fanout::config::{Config, Policy};
use fanout::metrics::Metrics;
use fanout::protocol::{Message, Payload, SessionId, Wire};
use fanout::queue::{Drained, QueueLimits, SendQueue};
use fanout::registry::Registry;
use fanout::topic::{Filter, TopicName};

/// A registry holding `n` topics, `max_topics` set well above that.
fn registry_with(n: usize) -> Arc<Registry> {
    let mut config = Config::default();
    config.limits.max_topics = n * 2;
    config.history.size = 1;
    let r = Arc::new(Registry::new(Arc::new(config)));
    for i in 0..n {
        r.publish(&TopicName::parse(&format!("t.{i}")).unwrap(), Payload::text("x"), None);
    }
    r
}

fn admit(c: &mut Criterion) {
    let r = registry_with(10_000);
    let known = TopicName::parse("t.42").unwrap();
    c.bench_function("admit/10,000 topics, max_topics on", |b| {
        b.iter(|| black_box(r.admit(black_box(&known))))
    });
}

fn drops(c: &mut Criterion) {
    let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
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
    let limits = QueueLimits {
        max_messages: 16,
        max_bytes: usize::MAX,
    };
    c.bench_function("drops/1024 pushes into 16, drop_newest, metrics on", |b| {
        let mut drained = Drained::default();
        b.iter(|| {
            let q = Arc::new(
                SendQueue::new(SessionId(1), Wire::Raw, true, limits).with_metrics(Some(Arc::clone(&metrics))),
            );
            for m in &msgs {
                q.push_message(m, Policy::DropNewest);
            }
            q.drain(&mut drained);
            black_box(drained.entries.len())
        })
    });
}

/// Makes new topics, one at a time, while another thread subscribes and unsubscribes a
/// pattern over 100,000 topics 20 times, and prints how long each making took: the
/// cost of the scan to everyone else is in the tail, which a mean would hide.
fn new_topic_beside_a_pattern_scan(_: &mut Criterion) {
    let r = registry_with(100_000);
    let done = Arc::new(AtomicBool::new(false));
    let scanner = {
        let (r, done) = (Arc::clone(&r), Arc::clone(&done));
        std::thread::spawn(move || {
            let limits = QueueLimits {
                max_messages: 1 << 20,
                max_bytes: usize::MAX,
            };
            let q = Arc::new(SendQueue::new(SessionId(u64::MAX), Wire::Raw, true, limits));
            let pattern = Filter::parse("t.*").unwrap();
            let started = std::time::Instant::now();
            for _ in 0..20 {
                r.subscribe(&pattern, &q, None, |_| {}).unwrap();
                r.unsubscribe(&pattern, SessionId(u64::MAX));
                q.drain(&mut Drained::default());
            }
            done.store(true, Ordering::Relaxed);
            started.elapsed()
        })
    };
    let mut took = Vec::new();
    for n in 0u64.. {
        if done.load(Ordering::Relaxed) {
            break;
        }
        let name = TopicName::parse(&format!("n.{n}")).unwrap();
        let t = std::time::Instant::now();
        black_box(r.publish(&name, Payload::text("x"), None));
        took.push(t.elapsed());
    }
    let scans = scanner.join().unwrap();
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    println!(
        "new topic beside a pattern scan of 100,000 topics: {} made during 20 scans ({:.0} ms each): \
         p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        took.len(),
        scans.as_secs_f64() * 1000.0 / 20.0,
        at(0.5),
        at(0.99),
        at(0.999),
        took[took.len() - 1]
    );
}

criterion_group!(benches, admit, drops, new_topic_beside_a_pattern_scan);
criterion_main!(benches);
