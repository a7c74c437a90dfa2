//! The topology of a run: every connection, what it publishes and what it
//! subscribes to, and how many measured deliveries each published message
//! should produce. Built by the coordinator, sent whole to every worker.

use crate::protocol::topic_matches;
use serde::{Deserialize, Serialize};

/// What one connection publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PubSpec {
    /// Publisher id carried in payloads (unique in the run).
    pub id: u32,
    /// Topics it cycles through, one message each in turn.
    pub topics: Vec<String>,
}

/// One connection of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnSpec {
    /// Topics or patterns it subscribes to (measured unless `slow`).
    pub subscribe: Vec<String>,
    /// What it publishes, if anything.
    pub publish: Option<PubSpec>,
    /// Stops reading once subscribed (slow-consumer scenario).
    pub slow: bool,
    /// Takes part in reconnect storms.
    pub reconnects: bool,
}

impl ConnSpec {
    /// The topic used in a raw URL: the first subscription or publish topic.
    pub fn raw_topic(&self) -> &str {
        self.subscribe
            .first()
            .or_else(|| self.publish.as_ref().and_then(|p| p.topics.first()))
            .map_or("loadtest", String::as_str)
    }
}

/// The whole run's topology.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Scenario name (for reports).
    pub scenario: String,
    /// Every connection; connection `i` runs in worker `i % workers`.
    pub conns: Vec<ConnSpec>,
    /// False for a generic broadcast server: every client gets everything.
    pub topics_exist: bool,
}

impl Plan {
    /// Number of publishing connections.
    pub fn publishers(&self) -> usize {
        self.conns.iter().filter(|c| c.publish.is_some()).count()
    }

    /// Number of connections that subscribe to something.
    pub fn subscribers(&self) -> usize {
        self.conns.iter().filter(|c| !c.subscribe.is_empty()).count()
    }

    /// `(measured, slow)` deliveries one message from connection `from` to
    /// `topic` should produce (the sender never counts itself).
    pub fn deliveries(&self, from: usize, topic: &str) -> (u64, u64) {
        let mut measured = 0;
        let mut slow = 0;
        for (i, c) in self.conns.iter().enumerate() {
            if i == from || c.subscribe.is_empty() {
                continue;
            }
            let hit = !self.topics_exist || c.subscribe.iter().any(|p| topic_matches(p, topic));
            if hit {
                if c.slow {
                    slow += 1;
                } else {
                    measured += 1;
                }
            }
        }
        (measured, slow)
    }

    /// Indices of the connections worker `w` of `k` runs.
    pub fn worker_conns(&self, w: usize, k: usize) -> Vec<usize> {
        (w..self.conns.len()).step_by(k.max(1)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_follow_patterns_and_skip_sender() {
        let sub = |t: &str| ConnSpec {
            subscribe: vec![t.into()],
            ..ConnSpec::default()
        };
        let mut plan = Plan {
            scenario: "t".into(),
            conns: vec![
                ConnSpec {
                    subscribe: vec!["q.a".into()],
                    publish: Some(PubSpec {
                        id: 0,
                        topics: vec!["q.a".into()],
                    }),
                    ..ConnSpec::default()
                },
                sub("q.a"),
                sub("q.*"),
                sub("q.>"),
                sub("q.b"),
                ConnSpec {
                    slow: true,
                    ..sub("q.a")
                },
            ],
            topics_exist: true,
        };
        assert_eq!(plan.deliveries(0, "q.a"), (3, 1));
        assert_eq!(plan.deliveries(0, "q.b"), (3, 0));
        assert_eq!(plan.publishers(), 1);
        plan.topics_exist = false;
        assert_eq!(plan.deliveries(0, "q.a"), (4, 1));
        assert_eq!(plan.worker_conns(1, 4), vec![1, 5]);
    }
}
