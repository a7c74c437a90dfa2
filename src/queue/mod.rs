//! `SendQueue`: the bounded queue between publishers and one connection's
//! writer, and who writes it out.
//!
//! Publishers push an `Arc<Message>` (a reference count, never a copy) and
//! return at once. Limits count queued messages and bytes. When a message
//! does not fit, the topic's [`Policy`] decides what is lost (`policy.rs`);
//! every loss is remembered per topic as a seq range so the writer can send a
//! `gap` notice before that topic's next message.
//!
//! Who writes depends on the queue's [`Sink`]. A `Task` queue wakes one task
//! (an SSE stream, a long poll), which drains and writes. A `Direct` queue is
//! a WebSocket, plain TCP or TLS: work queued on an idle queue puts
//! it on its ready list (`ready.rs`), whose writer — a flush shard,
//! `crate::flush` — writes it to the socket without blocking, many queues per
//! wake-up and no task woken per subscriber. When the socket is full, or the queue closes, the writing is
//! handed to the connection's own task until the queue is empty again
//! (`handoff.rs`: one owner at a time, switched under the queue's lock, so
//! frames never interleave and no lock is held while writing).
//!
//! Replies (acks, errors, pongs) and control frames (ping, close) are never
//! dropped: a subscriber whose data queue is full still gets its pings.
//!
//! An idle queue holds only what every connection needs: its counters, its
//! (usually empty) entry buffer and its task's wake-up. What only backpressure,
//! a close or a cut batch needs — the conflation map, the gaps, the close
//! frame, the flush shard's leftovers — lives in one box made on first need
//! and returned by the keepalive sweep once empty; the abort and reply-room
//! wake-ups are made by whoever first waits on one or must leave a permit.

mod handoff;
mod outgoing;
mod policy;
mod ready;
#[cfg(test)]
mod tests;

pub use handoff::{FlushTake, Sink, TaskTurn, Written};
pub use outgoing::{place_gaps, Outgoing, MAX_IOVECS};
pub use ready::{Direct, DirectSocket, ReadyBatch, ReadyList};

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::Policy;
use crate::metrics::{DropReason, Metrics};
use crate::protocol::{Framing, Message, SessionId, Wire};
use crate::topic::TopicName;
use handoff::{Owner, Wake};
use policy::Conflated;

/// The size limits of one connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most messages queued at once.
    pub max_messages: usize,
    /// Most bytes queued at once (a single larger message still passes an empty queue).
    pub max_bytes: usize,
}

/// Replies queued beyond this make the reader wait before handling more requests.
const MAX_PENDING_REPLIES: u32 = 1024;

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
    /// The bytes to write for this entry on a connection with `framing`.
    pub fn bytes(&self, framing: Framing) -> &[u8] {
        match self {
            Entry::Message(m) => m.frame_for(framing),
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

#[cfg(test)]
impl Drained {
    /// The seqs of the messages taken, in order (for tests).
    pub(crate) fn message_seqs(&self) -> Vec<u64> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect()
    }
}

/// The bounded send queue of one connection.
#[derive(Debug)]
pub struct SendQueue {
    /// The connection this queue feeds.
    session: SessionId,
    /// How the connection renders frames, so publishers encode the right one.
    framing: Framing,
    /// Whether the connection gets the messages it published itself.
    echo: bool,
    limits: QueueLimits,
    sink: Sink,
    state: Mutex<State>,
    /// Wakes the task: work arrived (`Task` sink), the writing was handed over, or a close.
    ready: Notify,
    /// The rare wake-ups (abort, reply room), made by whoever first waits or must wake:
    /// an idle connection never needs them.
    wakers: OnceLock<Box<Wakers>>,
    /// Where drops are counted, and where the writer adds its batches; `None`: metrics off.
    metrics: Option<Arc<Metrics>>,
}

/// The wake-ups of a queue that only a closing connection or a reader short of reply
/// room needs, boxed so an idle queue pays one pointer for them.
#[derive(Debug, Default)]
struct Wakers {
    /// Wakes the writer out of a blocked write: the connection must go now.
    abort: Notify,
    /// Wakes a reader waiting for the reply backlog to shrink.
    drained: Notify,
}

/// What the queue's lock guards: the hot parts inline, the cold ones boxed.
#[derive(Debug)]
struct State {
    entries: VecDeque<Entry>,
    /// Absolute position of `entries[0]`, so conflation can find an entry by position.
    head: u64,
    messages: usize,
    bytes: usize,
    /// Replies queued; bounded near [`MAX_PENDING_REPLIES`] by [`SendQueue::reply_room`].
    replies: u32,
    /// What only backpressure, a close or a cut batch needs; `None` on an idle queue.
    cold: Option<Box<Cold>>,
    /// Messages lost on this connection so far.
    dropped: u64,
    /// Set once closing: nothing more is queued.
    closed: bool,
    /// Closing without sending what is queued (a slow consumer cut, a silent client).
    aborted: bool,
    /// The client went silent: the close frame is tried once, without waiting.
    idle: bool,
    /// `head` moved since the last [`SendQueue::trim_idle`]: the queue was not idle.
    moved: bool,
    /// Who writes next (`Direct` queues; a `Task` queue's task always does).
    owner: Owner,
}

/// The parts of a queue's state used only under backpressure, at close, or when the
/// flush shard hands a cut batch over: made on first need and returned by
/// [`SendQueue::trim_idle`] once empty again, so an idle queue holds none of it.
#[derive(Debug, Default)]
struct Cold {
    /// Each conflating topic's newest queued message (absolute position) and how many of
    /// its messages are queued, so backpressure can cut it to exactly one.
    conflated: HashMap<TopicName, Conflated>,
    /// Losses not yet taken by the writer, oldest first per topic.
    gaps: Vec<Gap>,
    /// The close frame, until the writer takes it.
    close: Option<Bytes>,
    /// What the flush shard could not write before the socket filled; the task goes on with it.
    unsent: Option<Box<Outgoing>>,
    /// Why the flush shard's write failed; the task ends the connection with it.
    failed: Option<io::Error>,
}

impl Cold {
    /// Whether nothing is held but capacity, so the box can go.
    fn is_empty(&self) -> bool {
        self.conflated.is_empty()
            && self.gaps.is_empty()
            && self.close.is_none()
            && self.unsent.is_none()
            && self.failed.is_none()
    }
}

impl State {
    /// Queues `entry`. An empty buffer grows to one slot first, not four: most idle
    /// connections only ever queue their subscription's ack.
    fn push(&mut self, entry: Entry) {
        if self.entries.capacity() == 0 {
            self.entries.reserve_exact(1);
        }
        self.entries.push_back(entry);
    }

    /// The cold parts, made now if this is the first need since they were returned.
    fn cold(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Box::default)
    }

    /// Moves `head` past `n` entries gone from the front.
    fn advance(&mut self, n: u64) {
        self.head += n;
        self.moved |= n > 0;
    }

    /// Forgets the `n` entries just taken out of the front (with their gaps): the counts,
    /// the conflation positions, the reply backlog. True if replies were among them, so
    /// a reader waiting for room must be woken. The cold box stays: a conflating topic
    /// fills its map again with its next message, which must not cost an allocation.
    fn taken(&mut self, n: u64) -> bool {
        self.advance(n);
        self.messages = 0;
        self.bytes = 0;
        if let Some(cold) = &mut self.cold {
            cold.conflated.clear();
        }
        std::mem::take(&mut self.replies) > 0
    }
}

impl SendQueue {
    /// An empty queue for `session`, rendering frames as `framing` says (a [`Wire`]
    /// alone: uncompressed), drained by one task.
    pub fn new(session: SessionId, framing: impl Into<Framing>, echo: bool, limits: QueueLimits) -> Self {
        let framing = framing.into();
        SendQueue {
            session,
            framing,
            echo,
            limits,
            sink: Sink::Task,
            state: Mutex::new(State {
                entries: VecDeque::new(),
                head: 0,
                messages: 0,
                bytes: 0,
                replies: 0,
                cold: None,
                dropped: 0,
                closed: false,
                aborted: false,
                idle: false,
                moved: false,
                owner: Owner::Idle,
            }),
            ready: Notify::new(),
            wakers: OnceLock::new(),
            metrics: None,
        }
    }

    /// The same queue, written out by `sink`.
    pub fn with_sink(mut self, sink: Sink) -> Self {
        self.sink = sink;
        self
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

    /// The socket and ready list of a `Direct` queue.
    pub fn direct(&self) -> Option<&Direct> {
        match &self.sink {
            Sink::Direct(d) => Some(d),
            Sink::Task | Sink::Shared(_) => None,
        }
    }

    /// The connection this queue feeds.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The connection's wire format.
    pub fn wire(&self) -> Wire {
        self.framing.wire
    }

    /// How the connection's frames are written (wire format, permessage-deflate).
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether `msg` should skip this subscriber (its own publish, without echo).
    pub fn skips(&self, msg: &Message) -> bool {
        !self.echo && msg.origin == Some(self.session)
    }

    /// Returns the storage of a queue that stayed empty since the last call (the
    /// keepalive sweep's), so an idle connection holds no buffer and no cold box; a busy
    /// one keeps them, and gets them back with its next message if it was only resting.
    pub fn trim_idle(&self) {
        let mut st = self.state.lock();
        if !st.moved && st.entries.is_empty() {
            if st.entries.capacity() > 0 {
                st.entries = VecDeque::new();
            }
            if st.cold.as_ref().is_some_and(|c| c.is_empty()) {
                st.cold = None;
            }
        }
        st.moved = false;
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
    pub fn push_message(self: &Arc<Self>, msg: &Arc<Message>, policy: Policy) -> Pushed {
        let (pushed, wake) = self.push(msg, policy);
        self.apply(wake, None);
        pushed
    }

    /// As [`SendQueue::push_message`], leaving the ready list's wake-up to `batch`, so a
    /// publish hands each writer its queues once rather than once per subscriber.
    pub fn push_message_batched(
        self: &Arc<Self>,
        msg: &Arc<Message>,
        policy: Policy,
        batch: &mut ReadyBatch,
    ) -> Pushed {
        let (pushed, wake) = self.push(msg, policy);
        self.apply(wake, Some(batch));
        pushed
    }

    fn push(&self, msg: &Arc<Message>, policy: Policy) -> (Pushed, Wake) {
        let len = msg.frame_for(self.framing).len();
        let mut st = self.state.lock();
        if st.closed {
            return (Pushed::Closed, Wake::Nothing);
        }
        let was_empty = st.entries.is_empty();
        // Under backpressure (a full queue), conflation replaces this topic's queued message.
        if policy == Policy::Conflate && st.is_full(len, &self.limits) {
            if let Some(pushed) = st.conflate(msg, len, self.framing) {
                drop(st);
                self.count_dropped(DropReason::Conflated, policy, 1);
                return (pushed, Wake::Nothing);
            }
        }
        let mut outcome = Pushed::Queued;
        if st.is_full(len, &self.limits) {
            match policy {
                Policy::DropNewest => {
                    st.record_gap(&msg.topic, msg.seq);
                    drop(st);
                    self.count_dropped(DropReason::QueueFull, policy, 1);
                    return (Pushed::DroppedNewest, Wake::Nothing);
                }
                Policy::Disconnect => {
                    // The new message and everything queued are lost with the connection.
                    let lost = st.messages as u64 + 1;
                    let wake = self.start_close(&mut st, crate::protocol::frame::close(1008, "slow consumer"), false);
                    drop(st);
                    self.finish_close(wake, false);
                    if let Some(m) = &self.metrics {
                        m.slow_consumer_disconnects.inc();
                    }
                    self.count_dropped(DropReason::Disconnected, policy, lost);
                    return (Pushed::Disconnected, Wake::Nothing);
                }
                Policy::DropOldest | Policy::Conflate => {
                    let before = st.dropped;
                    while st.is_full(len, &self.limits) && st.drop_oldest(self.framing) {}
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
                .cold()
                .conflated
                .entry(msg.topic.clone())
                .or_insert(Conflated { pos, queued: 0 });
            c.pos = pos;
            c.queued += 1;
        }
        st.push(Entry::Message(Arc::clone(msg)));
        st.messages += 1;
        st.bytes += len;
        let wake = st.wake(self.direct().is_some(), was_empty);
        (outcome, wake)
    }

    /// Counts `n` lost messages, if metrics are on (the rare path).
    fn count_dropped(&self, reason: DropReason, policy: Policy, n: u64) {
        if let Some(m) = &self.metrics {
            m.count_dropped(reason, policy, n);
        }
    }

    /// Queues a reply (never dropped). Returns false if the connection is closing.
    pub fn push_reply(self: &Arc<Self>, frame: Bytes) -> bool {
        self.push_frame(Entry::Reply(frame))
    }

    /// Queues a control frame such as a ping (never dropped, outside every limit).
    pub fn push_control(self: &Arc<Self>, frame: Bytes) -> bool {
        self.push_frame(Entry::Control(frame))
    }

    fn push_frame(self: &Arc<Self>, entry: Entry) -> bool {
        let mut st = self.state.lock();
        if st.closed {
            return false;
        }
        if matches!(entry, Entry::Reply(_)) {
            st.replies += 1;
        }
        let was_empty = st.entries.is_empty();
        st.push(entry);
        let wake = st.wake(self.direct().is_some(), was_empty);
        drop(st);
        self.apply(wake, None);
        true
    }

    /// Waits until the reply backlog is small enough to take more requests, so a client
    /// that sends requests without reading the replies is slowed down rather than buffered.
    pub async fn reply_room(&self) {
        // The usual case, checked before the wakers are made: an idle reader needs none.
        if self.state.lock().replies < MAX_PENDING_REPLIES {
            return;
        }
        loop {
            // Made before the backlog is read, so a writer that takes replies after the
            // check finds the wakers and wakes this reader (see `wake_drained`).
            let notified = self.wakers().drained.notified();
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
        let wake = self.start_close(&mut st, close_frame, flush);
        drop(st);
        self.finish_close(wake, flush);
    }

    /// Closes a connection whose client went silent: nothing more is sent but
    /// `close_frame`, tried once without waiting (a peer that stopped reading would only
    /// make us wait for nothing).
    pub fn close_idle(&self, close_frame: Bytes) {
        let mut st = self.state.lock();
        let wake = self.start_close(&mut st, close_frame, false);
        st.idle = true;
        drop(st);
        self.finish_close(wake, false);
    }

    fn start_close(&self, st: &mut State, close_frame: Bytes, flush: bool) -> Option<Wake> {
        if st.closed {
            return None;
        }
        st.closed = true;
        let cold = st.cold();
        cold.close = Some(close_frame);
        if !flush {
            cold.gaps.clear();
            if cold.unsent.take().is_some_and(|u| u.mid_frame()) {
                cold.failed
                    .get_or_insert_with(|| io::Error::other("closed in the middle of a frame"));
            }
            st.aborted = true;
            st.entries.clear();
            st.messages = 0;
            st.bytes = 0;
        }
        Some(match (self.direct().is_some(), st.owner) {
            // A scheduled queue is handed over by its shard when the shard gets to it.
            (true, Owner::Scheduled) => Wake::Nothing,
            _ => {
                st.hand_over();
                Wake::Task
            }
        })
    }

    fn finish_close(&self, wake: Option<Wake>, flush: bool) {
        let Some(wake) = wake else { return };
        if let Wake::Task = wake {
            self.wake_task();
        }
        if !flush {
            // Makes the wakers if nobody waits yet: the permit must be there for the writer.
            self.wakers().abort.notify_one();
        }
    }

    /// Whether the queue is closing.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Whether the queue was closed without sending what it held (a slow consumer cut).
    pub fn is_aborted(&self) -> bool {
        self.state.lock().aborted
    }

    /// Takes everything queued, swapping `into` (emptied, capacity kept) in its place.
    /// For `Task` queues whose task renders frames itself (SSE, long-poll).
    pub fn drain(&self, into: &mut Drained) {
        into.entries.clear();
        into.gaps.clear();
        let mut st = self.state.lock();
        std::mem::swap(&mut st.entries, &mut into.entries);
        if let Some(cold) = &mut st.cold {
            std::mem::swap(&mut cold.gaps, &mut into.gaps);
        }
        let had_replies = st.taken(into.entries.len() as u64);
        if st.entries.is_empty() && st.closed {
            into.close = st.cold.as_mut().and_then(|c| c.close.take());
        }
        drop(st);
        if had_replies {
            self.wake_drained();
        }
    }

    /// Resolves when the task has work: queued frames (`Task` sink), writing handed over,
    /// or a close; call, then [`SendQueue::take_for_task`] (or [`SendQueue::drain`]).
    pub async fn ready(&self) {
        self.ready_notified().await
    }

    /// [`SendQueue::ready`] as the `Notified` itself, for a caller that waits on more
    /// than this (registered once polled; a wake-up before that is kept as a permit).
    pub fn ready_notified(&self) -> tokio::sync::futures::Notified<'_> {
        match &self.sink {
            Sink::Shared(notify) => notify.notified(),
            _ => self.ready.notified(),
        }
    }

    /// Wakes the task that drains this queue.
    fn wake_task(&self) {
        match &self.sink {
            Sink::Shared(notify) => notify.notify_one(),
            _ => self.ready.notify_one(),
        }
    }

    /// Resolves when the connection must stop writing at once.
    pub async fn aborted(&self) {
        self.wakers().abort.notified().await
    }

    /// The rare wake-ups, made by whoever first waits on one or must leave a permit.
    fn wakers(&self) -> &Wakers {
        self.wakers.get_or_init(Box::default)
    }

    /// Wakes a reader waiting for reply room, without making the wakers: a reader makes
    /// them before it reads the backlog, so one that has not made them yet will see the
    /// backlog this drain left and needs no permit.
    fn wake_drained(&self) {
        if let Some(w) = self.wakers.get() {
            w.drained.notify_one();
        }
    }
}
