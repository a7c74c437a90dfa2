//! `[cluster]`: the NATS bridge that lets several fanout nodes serve one feed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use crate::error::ConfigError;
use crate::topic::TopicName;

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS server (`nats://host:4222`, or several comma-separated); empty: single node.
    pub nats_url: String,
    /// The first token of every NATS subject fanout uses: topic `a.b` is `<prefix>.a.b`.
    pub subject_prefix: String,
    /// The JetStream stream that keeps every topic's seq and shared history.
    pub stream: String,
    /// How long a JetStream request (publish ack, consumer creation, catch-up) may take.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: String::new(),
            subject_prefix: "fanout".into(),
            stream: "FANOUT".into(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl ClusterConfig {
    /// Whether cluster mode is on.
    pub fn enabled(&self) -> bool {
        !self.nats_url.trim().is_empty()
    }

    /// The NATS server addresses of `nats_url` (comma-separated), trimmed.
    pub fn urls(&self) -> Vec<String> {
        self.nats_url
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Checks the URLs, prefix and stream name (only when cluster mode is on).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        for url in self.urls() {
            if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                return Err(ConfigError::invalid(
                    "cluster.nats_url",
                    format!("`{url}` is not a NATS server address ({e}); use forms like \"nats://nats:4222\", comma-separated for several"),
                ));
            }
        }
        let prefix_ok = TopicName::parse(&self.subject_prefix).is_ok_and(|t| !t.is_system());
        if !prefix_ok {
            return Err(ConfigError::invalid(
                "cluster.subject_prefix",
                format!(
                    "`{}` is not a subject prefix; use dot-separated tokens of letters, digits, `_`, `-`, such as \"fanout\"",
                    self.subject_prefix
                ),
            ));
        }
        let stream_ok = !self.stream.is_empty()
            && self
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !stream_ok {
            return Err(ConfigError::invalid(
                "cluster.stream",
                format!(
                    "`{}` is not a JetStream stream name; use letters, digits, `_` and `-`, such as \"FANOUT\"",
                    self.stream
                ),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "cluster.request_timeout",
                "must be longer than zero, such as \"5s\"",
            ));
        }
        Ok(())
    }
}
