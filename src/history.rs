//! A topic's ring of recent messages: bounded by count and age, replayed
//! to subscribers that pass `since`, and the topic's last value.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::config::TopicSettings;
use crate::protocol::Message;

/// The retained messages of one topic.
#[derive(Debug)]
pub struct History {
    entries: VecDeque<Arc<Message>>,
    /// Most messages kept for replay.
    size: usize,
    /// Age limit in milliseconds for replayable messages.
    ttl_ms: u64,
    /// Keep the newest message whatever `size` and `ttl` say.
    last_value: bool,
}

/// What a subscriber with `since` gets before the live stream.
#[derive(Debug, Default)]
pub struct Replay {
    /// Messages that are gone: `(from, to)`, inclusive.
    pub gap: Option<(u64, u64)>,
    /// The retained messages after `since`, oldest first.
    pub messages: Vec<Arc<Message>>,
}

impl History {
    /// An empty history with the topic's limits.
    pub fn new(settings: &TopicSettings) -> Self {
        History {
            entries: VecDeque::new(),
            size: settings.history_size,
            ttl_ms: duration_ms(settings.ttl),
            last_value: settings.last_value,
        }
    }

    /// Whether this topic keeps anything at all.
    pub fn retains(&self) -> bool {
        self.size > 0 || self.last_value
    }

    /// Whether nothing is retained now.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many messages are retained now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Appends the newest message and drops what falls outside the limits.
    pub fn push(&mut self, msg: &Arc<Message>, now_ms: u64) {
        if !self.retains() {
            return;
        }
        self.entries.push_back(Arc::clone(msg));
        let keep = self.size.max(self.last_value as usize);
        while self.entries.len() > keep {
            self.entries.pop_front();
        }
        self.expire(now_ms);
    }

    /// Puts an older message where it belongs if it is missing (a cluster catch-up
    /// arriving behind the live stream), then applies the limits.
    pub fn fill(&mut self, msg: &Arc<Message>, now_ms: u64) {
        if !self.retains() {
            return;
        }
        let at = self.entries.partition_point(|m| m.seq < msg.seq);
        if self.entries.get(at).is_some_and(|m| m.seq == msg.seq) {
            return;
        }
        self.entries.insert(at, Arc::clone(msg));
        let keep = self.size.max(self.last_value as usize);
        while self.entries.len() > keep {
            self.entries.pop_front();
        }
        self.expire(now_ms);
    }

    /// Forgets everything retained (what follows does not join up with it).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Drops messages older than the ttl (the last value stays if the topic keeps one).
    pub fn expire(&mut self, now_ms: u64) {
        let floor = usize::from(self.last_value);
        while self.entries.len() > floor {
            match self.entries.front() {
                Some(m) if m.ts.saturating_add(self.ttl_ms) <= now_ms => {
                    self.entries.pop_front();
                }
                _ => break,
            }
        }
    }

    /// The newest retained message, for a subscriber of a last-value topic.
    pub fn last_value(&self) -> Option<&Arc<Message>> {
        if self.last_value {
            self.entries.back()
        } else {
            None
        }
    }

    /// Everything retained after `since` when the topic is at `current`, and what is missing.
    pub fn replay(&self, since: u64, current: u64) -> Replay {
        if since >= current {
            return Replay::default();
        }
        let messages: Vec<_> = self.entries.iter().filter(|m| m.seq > since).cloned().collect();
        let first_kept = messages.first().map_or(current + 1, |m| m.seq);
        let gap = (first_kept > since + 1).then(|| (since + 1, first_kept - 1));
        Replay { gap, messages }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::protocol::Payload;
    use crate::topic::TopicName;

    fn settings(size: usize, ttl_ms: u64, last_value: bool) -> TopicSettings {
        TopicSettings {
            history_size: size,
            ttl: Duration::from_millis(ttl_ms),
            last_value,
            policy: Policy::DropOldest,
            presence: false,
            deflate: None,
        }
    }

    fn msg(seq: u64, ts: u64) -> Arc<Message> {
        Arc::new(Message::new(
            TopicName::parse("t").unwrap(),
            seq,
            ts,
            Payload::text("x"),
            None,
        ))
    }

    fn seqs(r: &Replay) -> Vec<u64> {
        r.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn keeps_the_newest_size_messages() {
        let mut h = History::new(&settings(3, 60_000, false));
        for s in 1..=5 {
            h.push(&msg(s, 0), 0);
        }
        let r = h.replay(0, 5);
        assert_eq!(seqs(&r), vec![3, 4, 5]);
        assert_eq!(r.gap, Some((1, 2)));
        let r = h.replay(3, 5);
        assert_eq!((seqs(&r), r.gap), (vec![4, 5], None));
        assert!(h.replay(5, 5).messages.is_empty());
    }

    #[test]
    fn expires_by_age_without_a_publish() {
        let mut h = History::new(&settings(10, 1000, false));
        h.push(&msg(1, 0), 0);
        h.push(&msg(2, 500), 500);
        h.expire(1000);
        assert_eq!(h.len(), 1);
        h.expire(1500);
        assert!(h.is_empty());
    }

    #[test]
    fn last_value_survives_size_zero_and_ttl() {
        let mut h = History::new(&settings(0, 1000, true));
        h.push(&msg(1, 0), 0);
        h.push(&msg(2, 0), 0);
        h.expire(1_000_000);
        assert_eq!(h.last_value().map(|m| m.seq), Some(2));
        let r = h.replay(0, 2);
        assert_eq!((seqs(&r), r.gap), (vec![2], Some((1, 1))));
    }

    #[test]
    fn without_retention_everything_after_since_is_a_gap() {
        let h = History::new(&settings(0, 1000, false));
        assert!(!h.retains());
        let r = h.replay(4, 9);
        assert_eq!((seqs(&r), r.gap), (vec![], Some((5, 9))));
    }
}
