//! `$sys.stats`: the broker's own snapshot, published once a second to a
//! normal topic that any client may subscribe to (the dashboard does).
//!
//! Rates are the difference between two readings of the Prometheus counters
//! the broker already keeps, divided by the time between them: nothing new is
//! counted on the hot path. Writers add their batched counts to those
//! counters at most once a second (`metrics::FLUSH_INTERVAL`), so a rate may
//! lag by up to a second and comes out lumpy under light load. With metrics
//! off, only what the connection accounting and the registry know is
//! published; every other field is `null`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus::core::Collector;
use serde::Serialize;
use tokio::time::{Instant, MissedTickBehavior};

use crate::broker::Broker;
use crate::metrics::Metrics;
use crate::protocol::Payload;
use crate::topic::TopicName;

/// The topic the snapshots go to.
pub const STATS_TOPIC: &str = "$sys.stats";

/// How often a snapshot is published.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// One snapshot, as published (JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Connections open now, over every transport (`server.max_connections` counts these).
    pub connections: usize,
    /// Subscriptions held now, over every connection.
    pub subscriptions: Option<i64>,
    /// Topics clients made (the broker's own `$` topics are not counted).
    pub topics: usize,
    /// Messages accepted from publishers per second (`$sys.stats` itself not counted).
    pub messages_in_per_s: Option<f64>,
    /// Messages written to subscriber sockets per second.
    pub messages_out_per_s: Option<f64>,
    /// Bytes written to client sockets per second.
    pub bytes_out_per_s: Option<f64>,
    /// Messages subscribers lost per second (overflow policies).
    pub drops_per_s: Option<f64>,
    /// 99th percentile of publish-to-socket-write time since the last snapshot, in ms
    /// (the upper bound of the latency histogram bucket holding it, 10 000 past the last);
    /// `null` when nothing was written.
    pub p99_delivery_ms: Option<f64>,
    /// Seconds since the broker started.
    pub uptime_s: u64,
}

/// One reading of the cumulative counters the rates come from.
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals {
    published: f64,
    delivered: f64,
    bytes_sent: f64,
    dropped: f64,
    /// The latency histogram's cumulative buckets: (upper bound in seconds, count).
    /// The `+Inf` bucket is not among them: `latency_count` is its count.
    latency: Vec<(f64, u64)>,
    /// Observations in the latency histogram.
    latency_count: u64,
}

impl Totals {
    fn read(m: &Metrics) -> Totals {
        let families = m.delivery_latency.collect();
        let histogram = families
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|metric| metric.get_histogram());
        let (mut latency, mut latency_count) = (Vec::new(), 0);
        for h in histogram {
            latency.extend(h.get_bucket().iter().map(|b| (b.upper_bound(), b.cumulative_count())));
            latency_count += h.get_sample_count();
        }
        Totals {
            latency_count,
            published: counter_sum(&m.published),
            delivered: m.delivered.get() as f64,
            bytes_sent: m.bytes_sent.get() as f64,
            dropped: counter_sum(&m.dropped),
            latency,
        }
    }
}

/// The sum of a counter vector over all its label values.
fn counter_sum(c: &impl Collector) -> f64 {
    c.collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value())
        .sum()
}

/// The 99th percentile of what was observed between two readings, in ms: the upper bound
/// of the first bucket holding it (the last finite bound when it lies beyond them all).
fn p99_ms(before: &Totals, after: &Totals) -> Option<f64> {
    let total = after
        .latency_count
        .checked_sub(before.latency_count)
        .filter(|&t| t > 0)?;
    let delta = |i: usize| {
        after.latency[i]
            .1
            .saturating_sub(before.latency.get(i).map_or(0, |b| b.1))
    };
    let rank = (total * 99).div_ceil(100);
    let bucket = (0..after.latency.len()).find(|&i| delta(i) >= rank);
    let bound = bucket
        .or(after.latency.len().checked_sub(1))
        .map(|i| after.latency[i].0)?;
    Some(bound * 1000.0)
}

/// What changed between two readings `elapsed` apart, as per-second rates.
fn rates(before: &Totals, after: &Totals, elapsed: Duration) -> [f64; 4] {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = |a: f64, b: f64| ((b - a).max(0.0) / secs * 100.0).round() / 100.0;
    [
        rate(before.published, after.published),
        rate(before.delivered, after.delivered),
        rate(before.bytes_sent, after.bytes_sent),
        rate(before.dropped, after.dropped),
    ]
}

/// The snapshot of `broker` now, with rates since `before` (read `elapsed` ago).
fn snapshot(broker: &Broker, before: &Totals, now: &Totals, elapsed: Duration, uptime: Duration) -> Snapshot {
    let metrics = broker.hub.metrics.as_deref();
    let [m_in, m_out, b_out, drops] = rates(before, now, elapsed);
    let on = |v: f64| metrics.map(|_| v);
    Snapshot {
        connections: broker.connections(),
        subscriptions: metrics.map(|m| m.subscriptions.get()),
        topics: broker.hub.registry.topic_count(),
        messages_in_per_s: on(m_in),
        messages_out_per_s: on(m_out),
        bytes_out_per_s: on(b_out),
        drops_per_s: on(drops),
        p99_delivery_ms: metrics.and_then(|_| p99_ms(before, now)),
        uptime_s: uptime.as_secs(),
    }
}

/// Publishes a [`Snapshot`] to [`STATS_TOPIC`] every [`STATS_INTERVAL`] until shutdown.
pub async fn publish_every_interval(broker: Arc<Broker>) {
    // A constant that `topic::tests` parses, so this cannot fail.
    let topic = TopicName::parse(STATS_TOPIC).expect("`$sys.stats` is a valid topic name");
    let started = Instant::now();
    let read = |b: &Broker| b.hub.metrics.as_deref().map(Totals::read).unwrap_or_default();
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate: take it as the baseline, so every rate spans an interval.
    tick.tick().await;
    let (mut last_at, mut last) = (Instant::now(), read(&broker));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = broker.hub.shutdown.triggered() => return,
        }
        let (at, now) = (Instant::now(), read(&broker));
        let snap = snapshot(&broker, &last, &now, at - last_at, at - started);
        match serde_json::to_vec(&snap) {
            Ok(json) => {
                broker
                    .hub
                    .registry
                    .publish(&topic, Payload::Json(Bytes::from(json)), None);
            }
            // Numbers and counts only: serialising cannot fail, but never panic the broker over it.
            Err(e) => tracing::warn!(error = %e, "cannot encode $sys.stats"),
        }
        (last_at, last) = (at, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(buckets: &[(f64, u64)], count: u64) -> Totals {
        Totals {
            latency: buckets.to_vec(),
            latency_count: count,
            ..Totals::default()
        }
    }

    #[test]
    fn p99_is_the_bucket_holding_the_99th_percentile_of_what_changed() {
        let before = latency(&[(0.001, 10), (0.005, 10), (0.01, 10)], 10);
        // 100 new observations: 98 under 1 ms, 1 under 5 ms, 1 under 10 ms.
        let after = latency(&[(0.001, 108), (0.005, 109), (0.01, 110)], 110);
        assert_eq!(p99_ms(&before, &after), Some(5.0));
        assert_eq!(p99_ms(&after, &after), None, "nothing written: no percentile");
        // Beyond every bucket: the last bound, a floor.
        let slow = latency(&[(0.001, 108), (0.005, 109), (0.01, 110)], 310);
        assert_eq!(p99_ms(&after, &slow), Some(10.0));
        assert_eq!(p99_ms(&Totals::default(), &latency(&[(0.001, 1)], 1)), Some(1.0));
    }

    #[test]
    fn the_latency_histogram_is_read_without_its_infinite_bucket() {
        let m = Metrics::new(prometheus::Registry::new()).unwrap();
        m.delivery_latency.observe(0.0015);
        m.delivery_latency.observe(60.0);
        let t = Totals::read(&m);
        assert_eq!(t.latency_count, 2);
        assert!(t.latency.iter().all(|(bound, _)| bound.is_finite()));
        assert_eq!(p99_ms(&Totals::default(), &t), Some(10_000.0));
    }

    #[test]
    fn rates_are_per_second_and_never_negative() {
        let a = Totals {
            published: 10.0,
            delivered: 100.0,
            bytes_sent: 1000.0,
            dropped: 5.0,
            ..Totals::default()
        };
        let b = Totals {
            published: 30.0,
            delivered: 300.0,
            bytes_sent: 500.0,
            dropped: 5.0,
            ..Totals::default()
        };
        assert_eq!(rates(&a, &b, Duration::from_secs(2)), [10.0, 100.0, 0.0, 0.0]);
    }

    #[test]
    fn without_metrics_only_what_is_known_is_published() {
        let mut config = crate::config::Config::default();
        config.metrics.enabled = false;
        let broker = Broker::new(Arc::new(config)).unwrap();
        let t = Totals::default();
        let s = snapshot(&broker, &t, &t, STATS_INTERVAL, Duration::from_secs(3));
        assert_eq!((s.connections, s.topics, s.uptime_s), (0, 0, 3));
        assert_eq!(
            (s.subscriptions, s.messages_in_per_s, s.p99_delivery_ms),
            (None, None, None)
        );
    }
}
