//! Reloading the configuration (SIGHUP): read the file again, keep the old
//! settings if the new ones are invalid, otherwise apply them and say which
//! keys changed and which of those wait for a restart.
//!
//! What a reload reaches: new connections take the new limits, queue sizes,
//! timeouts, default policy and `server.root_topic` (an upgrade on `/` reads
//! it when it arrives); every request checks the new
//! `max_subscriptions_per_connection`, `max_message_bytes` (HTTP) and
//! connection limits; new topics take the new topic rules. An open
//! connection keeps the queue size and message limit it started with, and
//! an existing topic keeps its history and policy until it is removed (no
//! subscribers, nothing retained). `server.listen`, `log.format` and the
//! `[metrics]` keys need a restart.

use std::path::PathBuf;

use serde_json::Value;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::Config;
use crate::error::ConfigError;

/// Keys (or sections, ending in `.`) that only a restart applies.
const RESTART_KEYS: [&str; 3] = ["server.listen", "log.format", "metrics."];

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Changed keys now in force (for new connections and topics, see the module doc).
    pub live: Vec<String>,
    /// Changed keys that wait for a restart.
    pub restart: Vec<String>,
}

/// Where the configuration comes from, as the command line said at start.
#[derive(Debug, Clone, Default)]
pub struct Reloader {
    /// `--config`.
    pub path: Option<PathBuf>,
    /// `--listen`, which still overrides the file.
    pub listen: Option<String>,
}

impl Reloader {
    /// Loads the configuration again and applies it to `broker`, or keeps the old one
    /// (and logs why) if the new one is invalid.
    pub fn reload(&self, broker: &Broker) -> Result<Changes, ConfigError> {
        let new = match Config::load(self.path.as_deref(), self.listen.as_deref()) {
            Ok(c) => c,
            Err(e) => return Err(kept(e)),
        };
        let changes = diff(&broker.settings(), &broker.config, &new);
        // Reads the key files and certificates: one that cannot be used keeps the old settings.
        broker.apply(new).map_err(kept)?;
        if changes.live.is_empty() && changes.restart.is_empty() {
            info!("configuration reloaded: nothing changed");
        } else {
            info!(
                changed = %changes.live.join(", "),
                needs_restart = %changes.restart.join(", "),
                "configuration reloaded"
            );
        }
        Ok(changes)
    }
}

/// Logs a reload that failed with `e`: the current configuration stays.
fn kept(e: ConfigError) -> ConfigError {
    warn!(error = %e, "configuration reload failed; keeping the current configuration");
    e
}

/// The keys that differ between `current` and `new` (live ones), and between the
/// settings the process started with and `new` (ones that need a restart).
pub fn diff(current: &Config, started: &Config, new: &Config) -> Changes {
    let new_keys = flatten(new);
    let changed_from = |old: &Config| -> Vec<String> {
        let old_keys = flatten(old);
        new_keys
            .iter()
            .filter(|(k, v)| !old_keys.iter().any(|(ok, ov)| ok == k && ov == v))
            .map(|(k, _)| k.clone())
            .collect()
    };
    let needs_restart = |k: &String| {
        RESTART_KEYS
            .iter()
            .any(|r| k == r || (r.ends_with('.') && k.starts_with(r)))
    };
    Changes {
        live: changed_from(current)
            .into_iter()
            .filter(|k| !needs_restart(k))
            .collect(),
        restart: changed_from(started).into_iter().filter(needs_restart).collect(),
    }
}

/// Every key of `config` as `(dotted.key, value)`; lists (the topic rules) are one value.
fn flatten(config: &Config) -> Vec<(String, Value)> {
    fn walk(prefix: &str, v: Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            other => out.push((prefix.to_owned(), other)),
        }
    }
    let mut out = Vec::new();
    let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
    // Absent topic rules serialize as nothing; make "none" comparable with "some".
    if let Value::Object(map) = &mut value {
        map.entry("topics").or_insert(Value::Array(Vec::new()));
    }
    walk("", value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_sorted_into_live_and_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.limits.max_subscriptions_per_connection = 5;
        new.queue.policy = crate::config::Policy::Conflate;
        new.server.listen = "127.0.0.1:9999".into();
        new.metrics.listen = "127.0.0.1:9998".into();
        new.topics.push(crate::config::TopicRule {
            pattern: "quotes.>".into(),
            history_size: Some(0),
            ttl: None,
            last_value: true,
            policy: None,
            presence: false,
            compression: None,
        });
        let c = diff(&old, &old, &new);
        assert_eq!(
            c.live,
            ["limits.max_subscriptions_per_connection", "queue.policy", "topics"]
        );
        assert_eq!(c.restart, ["metrics.listen", "server.listen"]);
        assert_eq!(diff(&new, &old, &new).live, Vec::<String>::new());
        assert_eq!(diff(&new, &old, &new).restart.len(), 2, "still waiting for a restart");
    }
}
