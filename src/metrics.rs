//! `Metrics`: every Prometheus metric the broker exports, registered into a
//! `prometheus::Registry` passed in (so tests, and several brokers in one
//! process, stay isolated), and [`WriterStats`], the per-connection buffer
//! that keeps the hot path off shared atomics.
//!
//! The rule on the hot path: no shared atomic is bumped per delivered
//! message. A writer counts deliveries, bytes, queue depth and latency in
//! plain per-connection counters ([`WriterStats`]) and adds them to the
//! shared metrics at most once per [`FLUSH_INTERVAL`] and when it ends.
//! Drops are counted where they happen: that is the rare path, and each
//! (reason, policy) counter is looked up once, when the metrics are made.
//!
//! Every labelled family shows each label set it can take at 0 from the
//! start, so a dashboard panel or an alert on it reads 0, not "no data",
//! until the first event.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::time::Instant;

use crate::config::Policy;
use crate::error::ErrorCode;
pub use crate::error::MetricsError;

/// How often a writer adds its buffered counts to the shared metrics.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The `transport` label: which way in a connection or a publish came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// WebSocket: `/ws` and raw topic sockets.
    Ws = 0,
    /// Server-Sent Events.
    Sse = 1,
    /// The HTTP API and long-polling.
    Http = 2,
    /// Iframe streaming (`/iframe/{topic}`).
    Iframe = 3,
    /// Socket.IO sockets (one per namespace a client joined), over either Engine.IO transport.
    SocketIo = 4,
}

impl Transport {
    /// Every transport, in label order.
    pub const ALL: [Transport; 5] = [
        Transport::Ws,
        Transport::Sse,
        Transport::Http,
        Transport::Iframe,
        Transport::SocketIo,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Http => "http",
            Transport::Iframe => "iframe",
            Transport::SocketIo => "socketio",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `kind` label values of `fanout_protocol_errors_total` besides the error codes.
pub const PROTOCOL_ERROR_KINDS: [&str; 7] = [
    "ws_protocol",
    "ws_invalid_utf8",
    "ws_too_large",
    "ws_policy",
    "origin",
    "tls_handshake",
    "socketio",
];

/// Why a message was lost, the `reason` label of `fanout_messages_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full: `drop_oldest` or `drop_newest` let one go.
    QueueFull,
    /// `conflate` replaced a queued message with a newer one of its topic.
    Conflated,
    /// `disconnect` closed the connection; its queued messages went with it.
    Disconnected,
}

impl DropReason {
    /// Every reason, in table order.
    const ALL: [DropReason; 3] = [DropReason::QueueFull, DropReason::Conflated, DropReason::Disconnected];

    /// The policies under which this reason can happen: the label sets of
    /// `fanout_messages_dropped_total` that exist.
    fn policies(self) -> &'static [Policy] {
        match self {
            // `conflate` falls back to dropping the oldest when its topic has nothing queued.
            DropReason::QueueFull => &[Policy::DropOldest, Policy::DropNewest, Policy::Conflate],
            DropReason::Conflated => &[Policy::Conflate],
            DropReason::Disconnected => &[Policy::Disconnect],
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Conflated => "conflated",
            DropReason::Disconnected => "disconnected",
        }
    }
}

fn policy_label(policy: Policy) -> &'static str {
    match policy {
        Policy::DropOldest => "drop_oldest",
        Policy::DropNewest => "drop_newest",
        Policy::Conflate => "conflate",
        Policy::Disconnect => "disconnect",
    }
}

/// A policy's column in the drop counter table.
fn policy_index(policy: Policy) -> usize {
    match policy {
        Policy::DropOldest => 0,
        Policy::DropNewest => 1,
        Policy::Conflate => 2,
        Policy::Disconnect => 3,
    }
}

/// One handle per transport, looked up once, so counting never hashes labels.
#[derive(Clone)]
struct ByTransport<T>([T; Transport::ALL.len()]);

impl<T> ByTransport<T> {
    fn get(&self, t: Transport) -> &T {
        &self.0[t as usize]
    }
}

/// The broker's metrics. Cheap to clone handles; share it in an `Arc`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `fanout_connections{transport}`: connections open now.
    pub connections: IntGaugeVec,
    /// `fanout_connections_total{transport}`: connections opened since start.
    pub connections_total: IntCounterVec,
    /// `fanout_subscriptions`: subscriptions held now, over every connection.
    pub subscriptions: IntGauge,
    /// `fanout_topics`: topics in the registry (set when scraped).
    pub topics: IntGauge,
    /// `fanout_messages_published_total{transport}`: messages accepted for publishing.
    pub published: IntCounterVec,
    /// `fanout_messages_delivered_total`: messages written to subscriber sockets.
    pub delivered: IntCounter,
    /// `fanout_bytes_sent_total`: bytes written to sockets (messages, replies, control frames).
    pub bytes_sent: IntCounter,
    /// `fanout_bytes_received_total`: message bytes received from clients.
    pub bytes_received: IntCounter,
    /// `fanout_messages_dropped_total{reason,policy}`: messages a subscriber lost.
    pub dropped: IntCounterVec,
    /// `fanout_slow_consumer_disconnects_total`: connections closed by the `disconnect` policy.
    pub slow_consumer_disconnects: IntCounter,
    /// `fanout_send_queue_depth`: messages a writer found queued when it woke.
    pub send_queue_depth: Histogram,
    /// `fanout_delivery_latency_seconds`: publish to socket write, per batch (oldest message).
    pub delivery_latency: Histogram,
    /// `fanout_protocol_errors_total{kind}`: bad requests and WebSocket violations.
    pub protocol_errors: IntCounterVec,
    /// `fanout_auth_failures_total`: refused tokens and keys.
    pub auth_failures: IntCounter,
    /// `fanout_connections_refused_total{limit}`: connections turned away by a limit.
    pub connections_refused: IntCounterVec,
    /// `connections` per transport.
    open_by: ByTransport<IntGauge>,
    /// `connections_total` per transport.
    opened_by: ByTransport<IntCounter>,
    /// `published` per transport.
    published_by: ByTransport<IntCounter>,
    /// `dropped` per reason (rows) and policy (columns), where that pair can happen.
    dropped_by: [[Option<IntCounter>; 4]; 3],
}

impl Metrics {
    /// Creates every metric and registers it, with the process collector, into `registry`.
    pub fn new(registry: Registry) -> Result<Self, MetricsError> {
        let connections = IntGaugeVec::new(
            Opts::new("fanout_connections", "Connections open now, by transport."),
            &["transport"],
        )?;
        let connections_total = IntCounterVec::new(
            Opts::new(
                "fanout_connections_total",
                "Connections opened since start, by transport.",
            ),
            &["transport"],
        )?;
        let subscriptions = IntGauge::new("fanout_subscriptions", "Subscriptions held now, over every connection.")?;
        let topics = IntGauge::new("fanout_topics", "Topics in the registry.")?;
        let published = IntCounterVec::new(
            Opts::new(
                "fanout_messages_published_total",
                "Messages accepted for publishing, by transport.",
            ),
            &["transport"],
        )?;
        let delivered = IntCounter::new(
            "fanout_messages_delivered_total",
            "Messages written to subscriber sockets.",
        )?;
        let bytes_sent = IntCounter::new(
            "fanout_bytes_sent_total",
            "Bytes written to client sockets: messages, replies and control frames.",
        )?;
        let bytes_received = IntCounter::new(
            "fanout_bytes_received_total",
            "Message bytes received from clients (WebSocket messages and HTTP publish bodies).",
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "fanout_messages_dropped_total",
                "Messages a subscriber lost, by reason and overflow policy.",
            ),
            &["reason", "policy"],
        )?;
        let slow_consumer_disconnects = IntCounter::new(
            "fanout_slow_consumer_disconnects_total",
            "Connections closed with 1008 by the disconnect policy.",
        )?;
        let send_queue_depth = Histogram::with_opts(
            HistogramOpts::new(
                "fanout_send_queue_depth",
                "Messages a connection's writer found queued when it woke.",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
            ]),
        )?;
        let delivery_latency = Histogram::with_opts(
            HistogramOpts::new(
                "fanout_delivery_latency_seconds",
                "Publish to socket write, measured per write batch on its oldest message (1 ms resolution).",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let protocol_errors = IntCounterVec::new(
            Opts::new(
                "fanout_protocol_errors_total",
                "Bad requests (by error code) and WebSocket protocol violations (ws_*), by kind.",
            ),
            &["kind"],
        )?;
        let auth_failures = IntCounter::new("fanout_auth_failures_total", "Refused tokens and API keys.")?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "fanout_connections_refused_total",
                "Connections turned away before being served, by the limit that refused them.",
            ),
            &["limit"],
        )?;
        let dropped_by = DropReason::ALL.map(|reason| {
            let mut row: [Option<IntCounter>; 4] = Default::default();
            for &policy in reason.policies() {
                row[policy_index(policy)] = Some(dropped.with_label_values(&[reason.as_str(), policy_label(policy)]));
            }
            row
        });
        let m = Metrics {
            open_by: ByTransport(Transport::ALL.map(|t| connections.with_label_values(&[t.as_str()]))),
            opened_by: ByTransport(Transport::ALL.map(|t| connections_total.with_label_values(&[t.as_str()]))),
            published_by: ByTransport(Transport::ALL.map(|t| published.with_label_values(&[t.as_str()]))),
            dropped_by,
            connections,
            connections_total,
            subscriptions,
            topics,
            published,
            delivered,
            bytes_sent,
            bytes_received,
            dropped,
            slow_consumer_disconnects,
            send_queue_depth,
            delivery_latency,
            protocol_errors,
            auth_failures,
            connections_refused,
            registry,
        };
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.connections.clone()),
            Box::new(m.connections_total.clone()),
            Box::new(m.subscriptions.clone()),
            Box::new(m.topics.clone()),
            Box::new(m.published.clone()),
            Box::new(m.delivered.clone()),
            Box::new(m.bytes_sent.clone()),
            Box::new(m.bytes_received.clone()),
            Box::new(m.dropped.clone()),
            Box::new(m.slow_consumer_disconnects.clone()),
            Box::new(m.send_queue_depth.clone()),
            Box::new(m.delivery_latency.clone()),
            Box::new(m.protocol_errors.clone()),
            Box::new(m.auth_failures.clone()),
            Box::new(m.connections_refused.clone()),
        ];
        for c in collectors {
            m.registry.register(c)?;
        }
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        // The label sets not made above, so they too read 0 before anything happens.
        for limit in ["max_connections", "max_connections_per_ip"] {
            m.connections_refused.with_label_values(&[limit]);
        }
        for kind in ErrorCode::ALL
            .map(ErrorCode::as_str)
            .iter()
            .chain(&PROTOCOL_ERROR_KINDS)
        {
            m.protocol_errors.with_label_values(&[kind]);
        }
        Ok(m)
    }

    /// The registry the metrics live in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts `n` messages lost for `reason` under `policy` (the rare path, but it runs
    /// under a topic's lock: one atomic add, no label lookup).
    pub fn count_dropped(&self, reason: DropReason, policy: Policy, n: u64) {
        if n == 0 {
            return;
        }
        match &self.dropped_by[reason as usize][policy_index(policy)] {
            Some(counter) => counter.inc_by(n),
            // A pair `DropReason::policies` does not list: a bug, but count it all the same.
            None => self
                .dropped
                .with_label_values(&[reason.as_str(), policy_label(policy)])
                .inc_by(n),
        }
    }

    /// `fanout_messages_published_total` of `transport`, looked up once.
    pub fn published(&self, transport: Transport) -> &IntCounter {
        self.published_by.get(transport)
    }

    /// Counts one bad request or protocol violation of `kind`.
    pub fn count_protocol_error(&self, kind: &str) {
        self.protocol_errors.with_label_values(&[kind]).inc();
    }

    /// Counts a connection of `transport` as open until the returned guard drops.
    pub fn connection_opened(&self, transport: Transport) -> OpenConnection {
        self.opened_by.get(transport).inc();
        let gauge = self.open_by.get(transport).clone();
        gauge.inc();
        OpenConnection(gauge)
    }

    /// The Prometheus text exposition of every metric in the registry.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on malformed metric families, which `new` cannot build.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// One open connection in `fanout_connections`; leaving the gauge when dropped.
#[derive(Debug)]
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One writer's counts, kept in plain (unshared) counters and added to the shared
/// metrics at most once per [`FLUSH_INTERVAL`] and when dropped.
pub struct WriterStats {
    delivered: LocalIntCounter,
    bytes_sent: LocalIntCounter,
    depth: LocalHistogram,
    latency: LocalHistogram,
    /// When the buffered counts are due; `None`: nothing buffered.
    due: Option<Instant>,
}

impl WriterStats {
    /// Buffers for one writer.
    pub fn new(m: &Metrics) -> Self {
        WriterStats {
            delivered: m.delivered.local(),
            bytes_sent: m.bytes_sent.local(),
            depth: m.send_queue_depth.local(),
            latency: m.delivery_latency.local(),
            due: None,
        }
    }

    /// Records one written batch: `messages` published messages among `bytes` written,
    /// the oldest published at `oldest_ts_ms` (Unix ms), written at `now_ms`.
    pub fn record_batch(&mut self, messages: u64, bytes: u64, oldest_ts_ms: Option<u64>, now_ms: u64) {
        if messages > 0 {
            self.delivered.inc_by(messages);
            self.depth.observe(messages as f64);
        }
        self.bytes_sent.inc_by(bytes);
        if let Some(ts) = oldest_ts_ms {
            self.latency.observe(batch_latency(now_ms, ts));
        }
        if self.due.is_none() {
            self.due = Some(Instant::now() + FLUSH_INTERVAL);
        }
    }

    /// When the buffered counts must be flushed, if any are buffered.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Adds the buffered counts to the shared metrics.
    pub fn flush(&mut self) {
        self.delivered.flush();
        self.bytes_sent.flush();
        self.depth.flush();
        self.latency.flush();
        self.due = None;
    }
}

/// Seconds from a batch's oldest publish to its write.
fn batch_latency(now_ms: u64, oldest_ts_ms: u64) -> f64 {
    now_ms.saturating_sub(oldest_ts_ms) as f64 / 1000.0
}

impl Metrics {
    /// Records one batch a connection's own task wrote, straight into the shared
    /// metrics: that path is taken per blocked socket or TLS connection, not per message.
    pub fn record_batch(&self, messages: u64, bytes: u64, oldest_ts_ms: Option<u64>, now_ms: u64) {
        if messages > 0 {
            self.delivered.inc_by(messages);
            self.send_queue_depth.observe(messages as f64);
        }
        self.bytes_sent.inc_by(bytes);
        if let Some(ts) = oldest_ts_ms {
            self.delivery_latency.observe(batch_latency(now_ms, ts));
        }
    }
}

impl Drop for WriterStats {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(m: &Metrics, line_start: &str) -> Option<f64> {
        let text = String::from_utf8(m.render()).unwrap();
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn writer_counts_reach_the_registry_only_when_flushed() {
        let m = Metrics::new(Registry::new()).unwrap();
        let mut s = WriterStats::new(&m);
        s.record_batch(3, 300, Some(1_000), 1_250);
        s.record_batch(2, 100, Some(1_900), 2_000);
        assert_eq!(value(&m, "fanout_messages_delivered_total"), Some(0.0));
        assert!(s.due().is_some());
        s.flush();
        assert_eq!(value(&m, "fanout_messages_delivered_total"), Some(5.0));
        assert_eq!(value(&m, "fanout_bytes_sent_total"), Some(400.0));
        assert_eq!(value(&m, "fanout_send_queue_depth_count"), Some(2.0));
        assert_eq!(value(&m, "fanout_delivery_latency_seconds_sum"), Some(0.35));
        s.record_batch(1, 10, None, 0);
        drop(s);
        assert_eq!(value(&m, "fanout_messages_delivered_total"), Some(6.0));
    }

    #[test]
    fn two_brokers_keep_separate_registries_and_a_clash_is_an_error() {
        let a = Metrics::new(Registry::new()).unwrap();
        let b = Metrics::new(Registry::new()).unwrap();
        a.count_dropped(DropReason::QueueFull, Policy::DropOldest, 2);
        assert_eq!(
            value(
                &a,
                r#"fanout_messages_dropped_total{policy="drop_oldest",reason="queue_full"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &b,
                r#"fanout_messages_dropped_total{policy="drop_oldest",reason="queue_full"}"#
            ),
            Some(0.0),
            "the other broker's drops are its own"
        );
        let e = Metrics::new(a.registry().clone()).unwrap_err().to_string();
        assert!(e.contains("fanout_"), "{e}");
    }

    #[test]
    fn every_label_set_reads_0_before_its_first_event() {
        let m = Metrics::new(Registry::new()).unwrap();
        let text = String::from_utf8(m.render()).unwrap();
        let mut expected: Vec<String> = Vec::new();
        for t in Transport::ALL {
            for family in [
                "fanout_connections",
                "fanout_connections_total",
                "fanout_messages_published_total",
            ] {
                expected.push(format!("{family}{{transport=\"{t}\"}} 0"));
            }
        }
        for reason in DropReason::ALL {
            for &policy in reason.policies() {
                expected.push(format!(
                    "fanout_messages_dropped_total{{policy=\"{}\",reason=\"{}\"}} 0",
                    policy_label(policy),
                    reason.as_str()
                ));
            }
        }
        for kind in ErrorCode::ALL
            .map(ErrorCode::as_str)
            .iter()
            .chain(&PROTOCOL_ERROR_KINDS)
        {
            expected.push(format!("fanout_protocol_errors_total{{kind=\"{kind}\"}} 0"));
        }
        for line in &expected {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        assert_eq!(expected.len(), 15 + 5 + 17);
    }

    #[test]
    fn drops_count_in_their_own_label_set() {
        let m = Metrics::new(Registry::new()).unwrap();
        m.count_dropped(DropReason::Conflated, Policy::Conflate, 3);
        m.count_dropped(DropReason::QueueFull, Policy::Conflate, 1);
        m.count_dropped(DropReason::Disconnected, Policy::Disconnect, 0);
        let v = |labels: &str| value(&m, &format!("fanout_messages_dropped_total{{{labels}}}"));
        assert_eq!(v(r#"policy="conflate",reason="conflated""#), Some(3.0));
        assert_eq!(v(r#"policy="conflate",reason="queue_full""#), Some(1.0));
        assert_eq!(v(r#"policy="disconnect",reason="disconnected""#), Some(0.0));
    }
}
