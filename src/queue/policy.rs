//! The overflow policies: what a full queue gives up for a new message, and
//! the exact seq ranges it remembers so the writer can send `gap` notices.

use std::sync::Arc;

use super::{Entry, Gap, Pushed, QueueLimits, State};
use crate::protocol::{Framing, Message};
use crate::topic::TopicName;

/// Where a conflating topic stands in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Conflated {
    /// Absolute position of the topic's newest queued message.
    pub(super) pos: u64,
    /// How many of the topic's messages are queued.
    pub(super) queued: usize,
}

impl State {
    pub(super) fn is_full(&self, len: usize, limits: &QueueLimits) -> bool {
        self.messages > 0 && (self.messages >= limits.max_messages || self.bytes + len > limits.max_bytes)
    }

    /// Replaces this topic's queued message with `msg`, if it has one; `len` is its frame's
    /// length as `framing` renders it.
    pub(super) fn conflate(&mut self, msg: &Arc<Message>, len: usize, framing: Framing) -> Option<Pushed> {
        let c = *self.cold.as_ref()?.conflated.get(&msg.topic)?;
        if c.queued > 1 {
            // Messages queued while there was room: under backpressure only the newest stays.
            self.drop_older_of(&msg.topic, c.pos, framing);
        }
        let pos = c.pos;
        let idx = pos.checked_sub(self.head)? as usize;
        let Some(Entry::Message(old)) = self.entries.get_mut(idx) else {
            return None;
        };
        if old.topic != msg.topic {
            return None;
        }
        let (old_seq, old_len) = (old.seq, old.frame_for(framing).len());
        *old = Arc::clone(msg);
        self.bytes = self.bytes + len - old_len;
        self.record_gap(&msg.topic, old_seq);
        Some(Pushed::Conflated)
    }

    /// Drops the oldest queued message (its bytes counted as `framing` renders it); false
    /// if there is none.
    pub(super) fn drop_oldest(&mut self, framing: Framing) -> bool {
        let Some(idx) = self.entries.iter().position(|e| matches!(e, Entry::Message(_))) else {
            return false;
        };
        let pos = self.head + idx as u64;
        let entry = if idx == 0 {
            self.advance(1);
            self.entries.pop_front()
        } else {
            // Keep positions stable for conflation: leave a tombstone behind the replies.
            self.entries.get_mut(idx).map(|e| std::mem::replace(e, Entry::Dropped))
        };
        let Some(Entry::Message(msg)) = entry else {
            return false;
        };
        if let Some(conflated) = self.cold.as_mut().map(|c| &mut c.conflated) {
            if let Some(c) = conflated.get_mut(&msg.topic) {
                c.queued = c.queued.saturating_sub(1);
                if c.pos == pos || c.queued == 0 {
                    conflated.remove(&msg.topic);
                }
            }
        }
        self.messages -= 1;
        self.bytes -= msg.frame_for(framing).len();
        self.record_gap(&msg.topic, msg.seq);
        while matches!(self.entries.front(), Some(Entry::Dropped)) {
            self.entries.pop_front();
            self.advance(1);
        }
        true
    }

    /// Drops every queued message of `topic` before position `keep` (oldest first, so the
    /// gaps recorded stay in seq order), their bytes counted as `framing` renders them.
    fn drop_older_of(&mut self, topic: &TopicName, keep: u64, framing: Framing) {
        let end = keep.saturating_sub(self.head) as usize;
        let mut lost = Vec::new();
        for e in self.entries.iter_mut().take(end) {
            if matches!(e, Entry::Message(m) if &m.topic == topic) {
                if let Entry::Message(m) = std::mem::replace(e, Entry::Dropped) {
                    lost.push(m);
                }
            }
        }
        for m in lost {
            self.messages -= 1;
            self.bytes -= m.frame_for(framing).len();
            self.record_gap(topic, m.seq);
        }
        if let Some(c) = self.cold.as_mut().and_then(|c| c.conflated.get_mut(topic)) {
            c.queued = 1;
        }
        // Positions stay stable: tombstones are popped only from the front.
        while matches!(self.entries.front(), Some(Entry::Dropped)) {
            self.entries.pop_front();
            self.advance(1);
        }
    }

    /// Remembers that `seq` of `topic` was lost, merging with an adjacent range.
    pub(super) fn record_gap(&mut self, topic: &TopicName, seq: u64) {
        self.dropped += 1;
        let gaps = &mut self.cold().gaps;
        if let Some(gap) = gaps.iter_mut().rev().find(|g| &g.topic == topic) {
            if gap.to + 1 == seq {
                gap.to = seq;
                return;
            }
        }
        gaps.push(Gap {
            topic: topic.clone(),
            from: seq,
            to: seq,
        });
    }
}
