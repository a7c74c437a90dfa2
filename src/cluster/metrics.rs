//! The bridge's own Prometheus metrics, registered beside the broker's.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Metrics of one node's NATS bridge.
#[derive(Clone)]
pub struct ClusterMetrics {
    /// `fanout_cluster_connected`: 1 while connected to NATS with the stream ready.
    pub connected: IntGauge,
    /// `fanout_cluster_messages_in_total`: messages received from NATS and fanned out here.
    pub messages_in: IntCounter,
    /// `fanout_cluster_messages_out_total`: messages this node published into NATS.
    pub messages_out: IntCounter,
    /// `fanout_cluster_publish_retries_total`: publishes retried after another node took the seq.
    pub publish_retries: IntCounter,
    /// `fanout_cluster_gaps_total`: holes in a topic's seq that subscribers were told about.
    pub gaps: IntCounter,
    /// `fanout_cluster_interests`: topics and patterns this node follows on NATS.
    pub interests: IntGauge,
    /// `fanout_cluster_lag_seconds`: publish time to arrival from NATS on this node.
    pub lag: Histogram,
}

impl ClusterMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = ClusterMetrics {
            connected: IntGauge::new(
                "fanout_cluster_connected",
                "1 while the node is connected to NATS with its JetStream stream ready, else 0.",
            )?,
            messages_in: IntCounter::new(
                "fanout_cluster_messages_in_total",
                "Messages received from NATS (live and catch-up), before duplicates are dropped.",
            )?,
            messages_out: IntCounter::new(
                "fanout_cluster_messages_out_total",
                "Messages this node published into NATS.",
            )?,
            publish_retries: IntCounter::new(
                "fanout_cluster_publish_retries_total",
                "Publishes retried because another node took the topic's next seq first.",
            )?,
            gaps: IntCounter::new(
                "fanout_cluster_gaps_total",
                "Holes in a topic's seq seen on arrival from NATS, told to subscribers as gap notices.",
            )?,
            interests: IntGauge::new(
                "fanout_cluster_interests",
                "Topics and patterns this node follows on NATS for its own subscribers.",
            )?,
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "fanout_cluster_lag_seconds",
                    "Time from publish (on any node) to arrival from NATS on this node.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                ]),
            )?,
        };
        registry.register(Box::new(m.connected.clone()))?;
        registry.register(Box::new(m.messages_in.clone()))?;
        registry.register(Box::new(m.messages_out.clone()))?;
        registry.register(Box::new(m.publish_retries.clone()))?;
        registry.register(Box::new(m.gaps.clone()))?;
        registry.register(Box::new(m.interests.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        Ok(m)
    }
}
