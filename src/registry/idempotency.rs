//! Idempotent publishing on a single node: the keys a topic's recent
//! publishes came with, so that a retry within `publish.idempotency_window`
//! is answered with the first publish's seq and nothing is published again.
//! The keys are kept under the topic's lock, so two retries racing each other
//! cannot both publish, and they keep the topic (and so its seqs) alive until
//! they expire. (In cluster mode JetStream remembers them: `cluster/publish.rs`.)

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::{publish_in, Published, Registry};
use crate::clock::now_ms;
use crate::protocol::{Payload, SessionId};
use crate::queue::ReadyBatch;
use crate::topic::TopicName;

/// One topic's recent idempotency keys and the seqs their publishes got.
#[derive(Debug, Default)]
pub(super) struct RecentKeys {
    seqs: HashMap<Arc<str>, u64>,
    /// The keys oldest first, with when each is forgotten (Unix ms).
    by_age: VecDeque<(u64, Arc<str>)>,
}

impl RecentKeys {
    /// Whether no key is remembered.
    pub(super) fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Forgets the keys whose window ended by `now`.
    pub(super) fn expire(&mut self, now: u64) {
        while let Some((until, _)) = self.by_age.front() {
            if *until > now {
                break;
            }
            if let Some((_, key)) = self.by_age.pop_front() {
                self.seqs.remove(&key);
            }
        }
    }

    /// The seq the publish with `key` got, if it is remembered.
    fn seq_of(&self, key: &str) -> Option<u64> {
        self.seqs.get(key).copied()
    }

    /// Remembers `key` for the publish that got `seq` until `until`, forgetting the
    /// oldest keys beyond `max`.
    fn remember(&mut self, key: &str, seq: u64, until: u64, max: usize) {
        let key: Arc<str> = Arc::from(key);
        self.seqs.insert(Arc::clone(&key), seq);
        self.by_age.push_back((until, key));
        while self.by_age.len() > max {
            if let Some((_, old)) = self.by_age.pop_front() {
                self.seqs.remove(&old);
            }
        }
    }
}

impl Registry {
    /// As [`Registry::publish`] for a publish with an idempotency key: if the topic
    /// remembers `key`, nothing is published and the answer is the first publish's seq
    /// (`duplicate: true`).
    pub fn publish_once(&self, topic: &TopicName, payload: Payload, origin: Option<SessionId>, key: &str) -> Published {
        let (window, max) = {
            let config = self.config.read();
            (config.publish.idempotency_window, config.publish.idempotency_max_keys)
        };
        ReadyBatch::collect(|batch| {
            self.with_topic(topic, |t, st| {
                let now = now_ms();
                let keys = st.keys.get_or_insert_with(Box::default);
                keys.expire(now);
                if let Some(seq) = keys.seq_of(key) {
                    return Published {
                        seq,
                        subscribers: st.subscribers.len(),
                        duplicate: true,
                    };
                }
                let published = publish_in(t, st, topic, payload, origin, now, batch);
                let until = now.saturating_add(window.as_millis() as u64);
                if let Some(keys) = &mut st.keys {
                    keys.remember(key, published.seq, until, max);
                }
                published
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_retry_gets_the_first_seq_and_publishes_nothing() {
        let mut config = Config::default();
        config.history.size = 0;
        let r = Registry::new(Arc::new(config));
        let t = TopicName::parse("orders").unwrap();
        let first = r.publish_once(&t, Payload::text("a"), None, "k1");
        assert_eq!((first.seq, first.duplicate), (1, false));
        // No subscriber and no history: the key alone keeps the topic and its seq.
        assert_eq!(r.topic_count(), 1);
        let again = r.publish_once(&t, Payload::text("a, sent again"), None, "k1");
        assert_eq!((again.seq, again.duplicate), (1, true));
        let other = r.publish_once(&t, Payload::text("b"), None, "k2");
        assert_eq!((other.seq, other.duplicate), (2, false));
        let elsewhere = r.publish_once(&TopicName::parse("other").unwrap(), Payload::text("a"), None, "k1");
        assert_eq!((elsewhere.seq, elsewhere.duplicate), (1, false), "keys are per topic");
        assert_eq!(r.publish(&t, Payload::text("c"), None).seq, 3);
    }

    #[test]
    fn keys_are_forgotten_after_their_window_and_past_the_most_kept() {
        let mut keys = RecentKeys::default();
        keys.remember("a", 1, 100, 2);
        keys.remember("b", 2, 200, 2);
        keys.remember("c", 3, 300, 2);
        assert_eq!(
            (keys.seq_of("a"), keys.seq_of("b")),
            (None, Some(2)),
            "over the most kept"
        );
        keys.expire(200);
        assert_eq!((keys.seq_of("b"), keys.seq_of("c")), (None, Some(3)));
        keys.expire(300);
        assert!(keys.is_empty());
    }

    #[test]
    fn an_expired_key_lets_the_topic_go() {
        let mut config = Config::default();
        config.history.size = 0;
        config.publish.idempotency_window = std::time::Duration::from_secs(60);
        let r = Registry::new(Arc::new(config));
        let t = TopicName::parse("gone").unwrap();
        r.publish_once(&t, Payload::text("a"), None, "k");
        r.sweep_at(now_ms());
        assert_eq!(r.topic_count(), 1, "the key keeps it within its window");
        r.sweep_at(now_ms() + 61_000);
        assert_eq!(r.topic_count(), 0, "nothing left to keep it");
    }
}
