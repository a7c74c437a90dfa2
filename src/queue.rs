//! `SendQueue`: the bounded queue between publishers and one connection's
//! writer, and its overflow policies.
//!
//! Publishers push an `Arc<Message>` (a reference count, never a copy) and
//! return at once; the connection's writer takes everything queued in one
//! swap and writes it with vectored writes. Limits count queued messages and
//! bytes. When a message does not fit, the topic's [`Policy`] decides what
//! is lost; every loss is remembered per topic as a seq range so the writer
//! can send a `gap` notice before that topic's next message.
//!
//! Replies (acks, errors, pongs) and control frames (ping, close) are never
//! dropped: a subscriber whose data queue is full still gets its pings.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::Policy;
use crate::metrics::{DropReason, Metrics};
use crate::protocol::{Message, SessionId, Wire};
use crate::topic::TopicName;

/// The size limits of one connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most messages queued at once.
    pub max_messages: usize,
    /// Most bytes queued at once (a single larger message still passes an empty queue).
    pub max_bytes: usize,
}

/// Replies queued beyond this make the reader wait before handling more requests.
const MAX_PENDING_REPLIES: usize = 1024;

/// One thing for the writer to send.
#[derive(Debug)]
pub enum Entry {
    /// A published message, rendered in the queue's wire format.
    Message(Arc<Message>),
    /// A reply frame (ack, error, pong); counts toward the reply backlog.
    Reply(Bytes),
    /// A control frame (ping, pong to a client ping); bypasses every limit.
    Control(Bytes),
    /// A message dropped after it was queued behind a reply; skipped.
    Dropped,
}

impl Entry {
    /// The bytes to write for this entry on `wire`.
    pub fn bytes(&self, wire: Wire) -> &[u8] {
        match self {
            Entry::Message(m) => m.frame(wire),
            Entry::Reply(b) | Entry::Control(b) => b,
            Entry::Dropped => &[],
        }
    }
}

/// Messages `from..=to` of `topic` that this subscriber will not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The topic.
    pub topic: TopicName,
    /// First missing seq.
    pub from: u64,
    /// Last missing seq.
    pub to: u64,
}

/// What happened to a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued, under backpressure, in place of an older message of the same topic (`conflate`).
    Conflated,
    /// Queued after dropping older messages (`drop_oldest`).
    DroppedOldest,
    /// Not queued (`drop_newest`).
    DroppedNewest,
    /// Not queued: the queue overflowed under `disconnect` and the connection is closing.
    Disconnected,
    /// Not queued: the connection is closing.
    Closed,
}

/// What the writer takes in one wake-up.
#[derive(Debug, Default)]
pub struct Drained {
    /// The entries, oldest first.
    pub entries: VecDeque<Entry>,
    /// Losses to report, oldest first per topic.
    pub gaps: Vec<Gap>,
    /// The close frame to send after the entries; the writer stops after it.
    pub close: Option<Bytes>,
}

/// The bounded send queue of one connection.
#[derive(Debug)]
pub struct SendQueue {
    /// The connection this queue feeds.
    session: SessionId,
    /// How the connection renders frames, so publishers encode the right one.
    wire: Wire,
    /// Whether the connection gets the messages it published itself.
    echo: bool,
    limits: QueueLimits,
    state: Mutex<State>,
    /// Wakes the writer: work arrived while the queue was empty, or a close.
    ready: Notify,
    /// Wakes the writer out of a blocked write: the connection must go now.
    abort: Notify,
    /// Wakes a reader waiting for the reply backlog to shrink.
    drained: Notify,
    /// Where drops are counted, and where the writer adds its batches; `None`: metrics off.
    metrics: Option<Arc<Metrics>>,
}

#[derive(Debug)]
struct State {
    /// The queue's wire, whose frame length each message counts for.
    wire: Wire,
    entries: VecDeque<Entry>,
    /// Absolute position of `entries[0]`, so conflation can find an entry by position.
    head: u64,
    messages: usize,
    bytes: usize,
    replies: usize,
    /// Each conflating topic's newest queued message (absolute position) and how many of
    /// its messages are queued, so backpressure can cut it to exactly one.
    conflated: HashMap<TopicName, Conflated>,
    gaps: Vec<Gap>,
    close: Option<Bytes>,
    /// Set once closing: nothing more is queued.
    closed: bool,
    /// Messages lost on this connection so far.
    dropped: u64,
}

impl SendQueue {
    /// An empty queue for `session`, rendering frames as `wire`.
    pub fn new(session: SessionId, wire: Wire, echo: bool, limits: QueueLimits) -> Self {
        SendQueue {
            session,
            wire,
            echo,
            limits,
            state: Mutex::new(State {
                wire,
                entries: VecDeque::new(),
                head: 0,
                messages: 0,
                bytes: 0,
                replies: 0,
                conflated: HashMap::new(),
                gaps: Vec::new(),
                close: None,
                closed: false,
                dropped: 0,
            }),
            ready: Notify::new(),
            abort: Notify::new(),
            drained: Notify::new(),
            metrics: None,
        }
    }

    /// The same queue, counting its drops (and its writer's batches) in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The metrics this queue reports to, if metrics are on.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The connection this queue feeds.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The connection's wire format.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// Whether `msg` should skip this subscriber (its own publish, without echo).
    pub fn skips(&self, msg: &Message) -> bool {
        !self.echo && msg.origin == Some(self.session)
    }

    /// Messages queued now.
    pub fn depth(&self) -> usize {
        self.state.lock().messages
    }

    /// Messages lost on this connection so far.
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped
    }

    /// Queues `msg` under `policy`. The frame for this queue's wire must be cheap to get
    /// (the publisher encodes it before fanning out).
    pub fn push_message(&self, msg: &Arc<Message>, policy: Policy) -> Pushed {
        let len = msg.frame(self.wire).len();
        let mut st = self.state.lock();
        if st.closed {
            return Pushed::Closed;
        }
        let was_empty = st.entries.is_empty();
        // Under backpressure (a full queue), conflation replaces this topic's queued message.
        if policy == Policy::Conflate && st.is_full(len, &self.limits) {
            if let Some(pushed) = st.conflate(msg, len) {
                drop(st);
                self.count_dropped(DropReason::Conflated, policy, 1);
                return pushed;
            }
        }
        let mut outcome = Pushed::Queued;
        if st.is_full(len, &self.limits) {
            match policy {
                Policy::DropNewest => {
                    st.record_gap(&msg.topic, msg.seq);
                    drop(st);
                    self.count_dropped(DropReason::QueueFull, policy, 1);
                    return Pushed::DroppedNewest;
                }
                Policy::Disconnect => {
                    // The new message and everything queued are lost with the connection.
                    let lost = st.messages as u64 + 1;
                    drop(st);
                    self.close(crate::protocol::frame::close(1008, "slow consumer"), false);
                    if let Some(m) = &self.metrics {
                        m.slow_consumer_disconnects.inc();
                    }
                    self.count_dropped(DropReason::Disconnected, policy, lost);
                    return Pushed::Disconnected;
                }
                Policy::DropOldest | Policy::Conflate => {
                    let before = st.dropped;
                    while st.is_full(len, &self.limits) && st.drop_oldest() {}
                    let lost = st.dropped - before;
                    if let Some(m) = &self.metrics {
                        // Rare path (the queue is full); the lock is short either way.
                        m.count_dropped(DropReason::QueueFull, policy, lost);
                    }
                    outcome = Pushed::DroppedOldest;
                }
            }
        }
        if policy == Policy::Conflate {
            let pos = st.head + st.entries.len() as u64;
            let c = st
                .conflated
                .entry(msg.topic.clone())
                .or_insert(Conflated { pos, queued: 0 });
            c.pos = pos;
            c.queued += 1;
        }
        st.entries.push_back(Entry::Message(Arc::clone(msg)));
        st.messages += 1;
        st.bytes += len;
        drop(st);
        if was_empty {
            self.ready.notify_one();
        }
        outcome
    }

    /// Counts `n` lost messages, if metrics are on (the rare path).
    fn count_dropped(&self, reason: DropReason, policy: Policy, n: u64) {
        if let Some(m) = &self.metrics {
            m.count_dropped(reason, policy, n);
        }
    }

    /// Queues a reply (never dropped). Returns false if the connection is closing.
    pub fn push_reply(&self, frame: Bytes) -> bool {
        self.push_frame(Entry::Reply(frame))
    }

    /// Queues a control frame such as a ping (never dropped, outside every limit).
    pub fn push_control(&self, frame: Bytes) -> bool {
        self.push_frame(Entry::Control(frame))
    }

    fn push_frame(&self, entry: Entry) -> bool {
        let mut st = self.state.lock();
        if st.closed {
            return false;
        }
        if matches!(entry, Entry::Reply(_)) {
            st.replies += 1;
        }
        let was_empty = st.entries.is_empty();
        st.entries.push_back(entry);
        drop(st);
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    /// Waits until the reply backlog is small enough to take more requests, so a client
    /// that sends requests without reading the replies is slowed down rather than buffered.
    pub async fn reply_room(&self) {
        loop {
            let notified = self.drained.notified();
            if self.state.lock().replies < MAX_PENDING_REPLIES {
                return;
            }
            notified.await;
        }
    }

    /// Starts closing: nothing more is queued, and the writer sends `close_frame` last.
    /// With `flush`, what is queued is sent first; without it, it is discarded and a
    /// writer blocked on a full socket gives up.
    pub fn close(&self, close_frame: Bytes, flush: bool) {
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        st.close = Some(close_frame);
        if !flush {
            st.entries.clear();
            st.messages = 0;
            st.bytes = 0;
            st.gaps.clear();
        }
        drop(st);
        self.ready.notify_one();
        if !flush {
            self.abort.notify_one();
        }
    }

    /// Whether the queue is closing.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Takes everything queued, swapping `into` (emptied, capacity kept) in its place.
    pub fn drain(&self, into: &mut Drained) {
        into.entries.clear();
        into.gaps.clear();
        let mut st = self.state.lock();
        std::mem::swap(&mut st.entries, &mut into.entries);
        std::mem::swap(&mut st.gaps, &mut into.gaps);
        st.head += into.entries.len() as u64;
        st.messages = 0;
        st.bytes = 0;
        st.conflated.clear();
        let had_replies = st.replies > 0;
        st.replies = 0;
        if st.entries.is_empty() && st.closed {
            into.close = st.close.take();
        }
        drop(st);
        if had_replies {
            self.drained.notify_one();
        }
    }

    /// Resolves when work is queued (or a close); call, then [`SendQueue::drain`].
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Resolves when the connection must stop writing at once.
    pub async fn aborted(&self) {
        self.abort.notified().await
    }
}

/// Where a conflating topic stands in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conflated {
    /// Absolute position of the topic's newest queued message.
    pos: u64,
    /// How many of the topic's messages are queued.
    queued: usize,
}

impl State {
    fn is_full(&self, len: usize, limits: &QueueLimits) -> bool {
        self.messages > 0 && (self.messages >= limits.max_messages || self.bytes + len > limits.max_bytes)
    }

    /// Replaces this topic's queued message with `msg`, if it has one.
    fn conflate(&mut self, msg: &Arc<Message>, len: usize) -> Option<Pushed> {
        let c = *self.conflated.get(&msg.topic)?;
        if c.queued > 1 {
            // Messages queued while there was room: under backpressure only the newest stays.
            self.drop_older_of(&msg.topic, c.pos);
        }
        let pos = c.pos;
        let idx = pos.checked_sub(self.head)? as usize;
        let Some(Entry::Message(old)) = self.entries.get_mut(idx) else {
            return None;
        };
        if old.topic != msg.topic {
            return None;
        }
        let (old_seq, old_len) = (old.seq, old.frame(self.wire).len());
        *old = Arc::clone(msg);
        self.bytes = self.bytes + len - old_len;
        self.record_gap(&msg.topic, old_seq);
        Some(Pushed::Conflated)
    }

    /// Drops the oldest queued message; false if there is none.
    fn drop_oldest(&mut self) -> bool {
        let Some(idx) = self.entries.iter().position(|e| matches!(e, Entry::Message(_))) else {
            return false;
        };
        let pos = self.head + idx as u64;
        let entry = if idx == 0 {
            self.head += 1;
            self.entries.pop_front()
        } else {
            // Keep positions stable for conflation: leave a tombstone behind the replies.
            self.entries.get_mut(idx).map(|e| std::mem::replace(e, Entry::Dropped))
        };
        let Some(Entry::Message(msg)) = entry else {
            return false;
        };
        if let Some(c) = self.conflated.get_mut(&msg.topic) {
            c.queued = c.queued.saturating_sub(1);
            if c.pos == pos || c.queued == 0 {
                self.conflated.remove(&msg.topic);
            }
        }
        self.messages -= 1;
        self.bytes -= msg.frame(self.wire).len();
        self.record_gap(&msg.topic, msg.seq);
        while matches!(self.entries.front(), Some(Entry::Dropped)) {
            self.entries.pop_front();
            self.head += 1;
        }
        true
    }

    /// Drops every queued message of `topic` before position `keep` (oldest first, so the
    /// gaps recorded stay in seq order).
    fn drop_older_of(&mut self, topic: &TopicName, keep: u64) {
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
            self.bytes -= m.frame(self.wire).len();
            self.record_gap(topic, m.seq);
        }
        if let Some(c) = self.conflated.get_mut(topic) {
            c.queued = 1;
        }
        // Positions stay stable: tombstones are popped only from the front.
        while matches!(self.entries.front(), Some(Entry::Dropped)) {
            self.entries.pop_front();
            self.head += 1;
        }
    }

    /// Remembers that `seq` of `topic` was lost, merging with an adjacent range.
    fn record_gap(&mut self, topic: &TopicName, seq: u64) {
        self.dropped += 1;
        if let Some(gap) = self.gaps.iter_mut().rev().find(|g| &g.topic == topic) {
            if gap.to + 1 == seq {
                gap.to = seq;
                return;
            }
        }
        self.gaps.push(Gap {
            topic: topic.clone(),
            from: seq,
            to: seq,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Payload;

    fn queue(max_messages: usize) -> SendQueue {
        SendQueue::new(
            SessionId(1),
            Wire::Raw,
            true,
            QueueLimits {
                max_messages,
                max_bytes: 1 << 20,
            },
        )
    }

    fn msg(topic: &str, seq: u64) -> Arc<Message> {
        Arc::new(Message::new(
            TopicName::parse(topic).unwrap(),
            seq,
            0,
            Payload::text(format!("{seq}")),
            None,
        ))
    }

    fn seqs(q: &SendQueue) -> (Vec<u64>, Vec<(String, u64, u64)>) {
        let mut d = Drained::default();
        q.drain(&mut d);
        let seqs = d
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect();
        let gaps = d.gaps.iter().map(|g| (g.topic.to_string(), g.from, g.to)).collect();
        (seqs, gaps)
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_reports_the_lost_range() {
        let q = queue(3);
        for s in 1..=6 {
            q.push_message(&msg("t", s), Policy::DropOldest);
        }
        assert_eq!(seqs(&q), (vec![4, 5, 6], vec![("t".into(), 1, 3)]));
        assert_eq!(q.dropped(), 3);
    }

    #[test]
    fn drop_newest_keeps_the_oldest() {
        let q = queue(3);
        for s in 1..=6 {
            q.push_message(&msg("t", s), Policy::DropNewest);
        }
        assert_eq!(seqs(&q), (vec![1, 2, 3], vec![("t".into(), 4, 6)]));
    }

    #[test]
    fn conflate_keeps_one_newest_message_per_topic_under_backpressure() {
        let q = queue(2);
        for s in 1..=5 {
            q.push_message(&msg("a", s), Policy::Conflate);
            q.push_message(&msg("b", s), Policy::Conflate);
        }
        let (seqs, gaps) = seqs(&q);
        assert_eq!(seqs, vec![5, 5]);
        assert_eq!(gaps, vec![("a".into(), 1, 4), ("b".into(), 1, 4)]);
    }

    #[test]
    fn conflate_under_backpressure_leaves_exactly_one_message_per_topic() {
        let q = queue(4);
        for s in 1..=3 {
            q.push_message(&msg("a", s), Policy::Conflate);
        }
        q.push_message(&msg("b", 1), Policy::Conflate);
        // Full now: the next `a` replaces all three queued `a`s.
        assert_eq!(q.push_message(&msg("a", 4), Policy::Conflate), Pushed::Conflated);
        assert_eq!(q.depth(), 2);
        q.push_message(&msg("c", 1), Policy::Conflate);
        let (seqs, gaps) = seqs(&q);
        assert_eq!(seqs, vec![4, 1, 1]);
        assert_eq!(gaps, vec![("a".into(), 1, 3)]);
    }

    #[test]
    fn conflate_loses_nothing_while_the_queue_has_room() {
        let q = queue(10);
        for s in 1..=5 {
            q.push_message(&msg("a", s), Policy::Conflate);
        }
        assert_eq!(seqs(&q), (vec![1, 2, 3, 4, 5], vec![]));
    }

    #[test]
    fn conflate_falls_back_to_dropping_the_oldest_topic_when_full() {
        let q = queue(2);
        q.push_message(&msg("a", 1), Policy::Conflate);
        q.push_message(&msg("b", 1), Policy::Conflate);
        q.push_message(&msg("c", 1), Policy::Conflate);
        q.push_message(&msg("b", 2), Policy::Conflate);
        assert_eq!(seqs(&q), (vec![2, 1], vec![("a".into(), 1, 1), ("b".into(), 1, 1)]));
    }

    #[test]
    fn disconnect_closes_with_1008_and_discards_the_queue() {
        let q = queue(2);
        assert_eq!(q.push_message(&msg("t", 1), Policy::Disconnect), Pushed::Queued);
        assert_eq!(q.push_message(&msg("t", 2), Policy::Disconnect), Pushed::Queued);
        assert_eq!(q.push_message(&msg("t", 3), Policy::Disconnect), Pushed::Disconnected);
        assert_eq!(q.push_message(&msg("t", 4), Policy::Disconnect), Pushed::Closed);
        let mut d = Drained::default();
        q.drain(&mut d);
        assert!(d.entries.is_empty());
        assert_eq!(&d.close.unwrap()[2..4], &1008u16.to_be_bytes());
    }

    #[test]
    fn replies_and_control_frames_bypass_a_full_queue() {
        let q = queue(1);
        q.push_message(&msg("t", 1), Policy::DropNewest);
        assert!(q.push_control(Bytes::from_static(b"ping")));
        assert!(q.push_reply(Bytes::from_static(b"ack")));
        assert_eq!(q.push_message(&msg("t", 2), Policy::DropNewest), Pushed::DroppedNewest);
        let mut d = Drained::default();
        q.drain(&mut d);
        assert_eq!(d.entries.len(), 3);
    }

    #[test]
    fn drop_oldest_behind_a_reply_leaves_order_intact() {
        let q = queue(2);
        q.push_reply(Bytes::from_static(b"r"));
        for s in 1..=4 {
            q.push_message(&msg("t", s), Policy::DropOldest);
        }
        assert_eq!(seqs(&q), (vec![3, 4], vec![("t".into(), 1, 2)]));
    }

    #[test]
    fn byte_limit_counts_frames() {
        let q = SendQueue::new(
            SessionId(1),
            Wire::Raw,
            true,
            QueueLimits {
                max_messages: 100,
                max_bytes: 8,
            },
        );
        // Each frame is 2 header bytes + 1 payload byte.
        for s in 1..=5 {
            q.push_message(&msg("t", s), Policy::DropOldest);
        }
        assert_eq!(seqs(&q).0, vec![4, 5]);
    }

    #[test]
    fn a_closed_queue_flushes_then_hands_over_the_close_frame() {
        let q = queue(10);
        q.push_message(&msg("t", 1), Policy::DropOldest);
        q.close(Bytes::from_static(b"bye"), true);
        assert_eq!(q.push_message(&msg("t", 2), Policy::DropOldest), Pushed::Closed);
        let mut d = Drained::default();
        q.drain(&mut d);
        assert_eq!(d.entries.len(), 1);
        assert_eq!(d.close.as_deref(), Some(&b"bye"[..]));
    }

    #[test]
    fn own_messages_are_skipped_without_echo() {
        let q = SendQueue::new(
            SessionId(7),
            Wire::Raw,
            false,
            QueueLimits {
                max_messages: 1,
                max_bytes: 1,
            },
        );
        let own = Message::new(
            TopicName::parse("t").unwrap(),
            1,
            0,
            Payload::text("x"),
            Some(SessionId(7)),
        );
        let other = Message::new(
            TopicName::parse("t").unwrap(),
            1,
            0,
            Payload::text("x"),
            Some(SessionId(8)),
        );
        assert!(q.skips(&own));
        assert!(!q.skips(&other));
    }
}
