//! The registry side of cluster mode: messages whose seq the cluster assigned
//! (received from NATS) are fanned out here instead of through `publish`, and
//! cluster interests pin the topics they follow.
//!
//! Several interests of one node may carry the same message (an exact
//! subscription and a pattern covering it), and a catch-up replays what the
//! node may already hold: a message at or below the topic's seq is never
//! fanned out again, only filled into history where it is missing. A message
//! past the next seq means the ones between are gone for good: subscribers get
//! a `gap` notice, so they never lose anything silently.

use std::sync::Arc;

use super::{fan_out, gap_frame, Registry};
use crate::clock::now_ms;
use crate::protocol::Message;
use crate::queue::ReadyBatch;
use crate::topic::{Filter, TopicName};

/// What a cluster delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The next message: queued for this many subscribers.
    Fanned(usize),
    /// The topic already had it (seq at or below its own): not fanned out again.
    Duplicate,
    /// Fanned out after a hole `(from, to)` that subscribers were told about.
    AfterGap(u64, u64, usize),
}

impl Registry {
    /// Fans out `msg`, whose seq the cluster assigned, unless the topic already had it.
    pub fn deliver(&self, msg: Message) -> Delivered {
        let name = msg.topic.clone();
        ReadyBatch::collect(|batch| self.deliver_in(msg, &name, batch))
    }

    /// Fans out each of `msgs` in order (what one NATS message carried), waking the
    /// writers once for all of them; `on` hears how each went.
    pub fn deliver_all(&self, msgs: Vec<Message>, mut on: impl FnMut(&TopicName, u64, Delivered)) {
        ReadyBatch::collect(|batch| {
            for msg in msgs {
                let (name, seq) = (msg.topic.clone(), msg.seq);
                let delivered = self.deliver_in(msg, &name, batch);
                on(&name, seq, delivered);
            }
        })
    }

    fn deliver_in(&self, msg: Message, name: &TopicName, batch: &mut ReadyBatch) -> Delivered {
        self.with_topic(name, |t, st| {
            let now = now_ms();
            let msg = msg.with_deflate(t.settings.deflate);
            if msg.seq <= st.seq {
                st.history.fill(&Arc::new(msg), now);
                return Delivered::Duplicate;
            }
            let hole = (st.seq > 0 && msg.seq > st.seq + 1).then(|| (st.seq + 1, msg.seq - 1));
            if let Some((from, to)) = hole {
                // What is retained no longer joins up with what follows: replay must not skip the hole.
                st.history.clear();
                for sub in st.subscribers.values() {
                    if sub.queue.wire().carries_notices() {
                        sub.queue.push_reply(gap_frame(&sub.queue, name, from, to));
                    }
                }
            }
            st.seq = msg.seq;
            st.rate.record(now);
            let msg = Arc::new(msg);
            st.history.push(&msg, now);
            let n = fan_out(&st.subscribers, &msg, t.settings.policy, batch);
            match hole {
                Some((from, to)) => Delivered::AfterGap(from, to, n),
                None => Delivered::Fanned(n),
            }
        })
    }

    /// Keeps `name` (and its seq) while a cluster interest follows it, subscribers or not.
    pub fn pin(&self, name: &TopicName) {
        self.with_topic(name, |_, st| st.pinned += 1);
    }

    /// Lets go of a [`Registry::pin`]; the topic goes once idle.
    pub fn unpin(&self, name: &TopicName) {
        let Some(t) = self.topics.get(name).map(|t| Arc::clone(t.value())) else {
            return;
        };
        let mut st = t.state.lock();
        st.pinned = st.pinned.saturating_sub(1);
        let idle = st.is_idle();
        drop(st);
        if idle {
            self.reap(name);
        }
    }

    /// Forgets the topics `filter` covers that nothing on this node follows any more (no
    /// subscriber, no pin), retained messages included: once the node stops following a
    /// topic what it holds goes stale, and a later interest must start afresh rather than
    /// report the messages it was not following as lost.
    pub fn forget(&self, filter: &Filter) {
        let unfollowed = |t: &Arc<super::Topic>| {
            let mut st = t.state.lock();
            let stale = st.subscribers.is_empty() && st.pinned == 0;
            st.removed |= stale;
            stale
        };
        match filter {
            Filter::Exact(name) => {
                if let Some((_, t)) = self.topics.remove_if(name, |_, t| unfollowed(t)) {
                    self.count_removed(&t);
                }
            }
            Filter::Pattern(p) => self.topics.retain(|name, t| {
                let forgotten = p.matches(name) && unfollowed(t);
                if forgotten {
                    self.count_removed(t);
                }
                !forgotten
            }),
        }
    }

    /// The topic's current seq, if the node holds it.
    pub fn seq(&self, name: &TopicName) -> Option<u64> {
        let t = self.topics.get(name).map(|t| Arc::clone(t.value()))?;
        let seq = t.state.lock().seq;
        Some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::protocol::{Payload, SessionId, Wire};
    use crate::queue::{Drained, Entry, QueueLimits, SendQueue};

    fn msg(seq: u64) -> Message {
        Message::new(
            TopicName::parse("c.t").unwrap(),
            seq,
            now_ms(),
            Payload::text("x"),
            None,
        )
    }

    fn drained(q: &SendQueue) -> Vec<String> {
        let mut d = Drained::default();
        q.drain(&mut d);
        d.entries
            .iter()
            .map(|e| match e {
                Entry::Message(m) => format!("m{}", m.seq),
                Entry::Reply(b) => String::from_utf8_lossy(&b[2..]).to_string(),
                _ => "other".into(),
            })
            .collect()
    }

    #[test]
    fn duplicates_are_dropped_and_holes_become_gap_notices() {
        let r = Registry::new(Arc::new(Config::default()));
        let limits = QueueLimits {
            max_messages: 100,
            max_bytes: 1 << 20,
        };
        let q = Arc::new(SendQueue::new(SessionId(1), Wire::Json, true, limits));
        r.subscribe(&Filter::parse("c.*").unwrap(), &q, None, |_| {}).unwrap();
        assert_eq!(r.deliver(msg(1)), Delivered::Fanned(1));
        assert_eq!(r.deliver(msg(2)), Delivered::Fanned(1));
        assert_eq!(r.deliver(msg(2)), Delivered::Duplicate);
        assert_eq!(r.deliver(msg(1)), Delivered::Duplicate);
        assert_eq!(r.deliver(msg(5)), Delivered::AfterGap(3, 4, 1));
        let got = drained(&q);
        assert_eq!(got[..2], ["m1", "m2"]);
        assert_eq!(
            got[2],
            r#"{"type":"gap","topic":"c.t","from":3,"to":4,"reason":"history"}"#
        );
        assert_eq!(got[3], "m5");
    }

    #[test]
    fn a_catch_up_fills_history_behind_the_live_stream() {
        let r = Registry::new(Arc::new(Config::default()));
        let name = TopicName::parse("c.t").unwrap();
        r.pin(&name);
        r.deliver(msg(4));
        for s in 1..=4 {
            r.deliver(msg(s));
        }
        let page = r.history(&name, 0, 10).unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!((seqs, page.gap), (vec![1, 2, 3, 4], None));
        r.unpin(&name);
        assert_eq!(r.seq(&name), Some(4), "history keeps it");
        r.forget(&Filter::parse("c.*").unwrap());
        assert_eq!(r.seq(&name), None, "unfollowed: what it held is stale");
        assert_eq!(
            r.deliver(msg(9)),
            Delivered::Fanned(0),
            "a new interest starts afresh, no false gap"
        );
    }
}
