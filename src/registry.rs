//! `Registry`: the sharded topic table and the wildcard index. It knows
//! queues, never sockets or transports; what may be published is decided
//! before it is called (`crate::publish`).
//!
//! Publishing never matches patterns: each topic holds every subscriber
//! that covers it, exact or wildcard, kept current when a subscription or a
//! topic is created. A publish takes the topic's lock to assign the next
//! seq, append history and push the message into each subscriber's
//! [`SendQueue`] — pushes never wait, so the lock is short, and holding it
//! keeps every subscriber's stream in seq order even with concurrent
//! publishers. The writers of the queues it made ready are woken once the
//! lock is released (`queue::ReadyBatch`). A topic with no subscribers and
//! nothing retained is removed.
//!
//! A pattern subscription is added to the index under its lock, which
//! making a topic takes to copy the index's subscribers; the index's version
//! tells the scan that then brings the existing topics up to date (without
//! the lock) which topics already have the change.
//!
//! Lock order, to stay deadlock-free: the pattern index, then a topic-table
//! shard, then a topic. Nothing takes a shard while it holds a topic.
//!
//! Read-side queries (listing, history, long-poll) live in `registry/query.rs`,
//! presence in `registry/presence.rs`, the publish rate in `registry/rate.rs`,
//! and cluster mode's way in (messages whose seq the cluster assigned) in
//! `registry/remote.rs`.

mod idempotency;
mod presence;
mod query;
mod rate;
mod remote;

pub use presence::PresenceInfo;
pub use query::{HistoryPage, PollStart, TopicQuery};
pub use remote::Delivered;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use indexmap::IndexMap;
use parking_lot::{Mutex, RwLock};

use crate::clock::now_ms;
use crate::config::{Config, Policy, TopicSettings};
use crate::error::RequestError;
use crate::history::{History, Replay};
use crate::protocol::{Epoch, GapReason, Message, Payload, Reply, SessionId};
use crate::queue::{ReadyBatch, SendQueue};
use crate::topic::{Filter, Pattern, TopicName};

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message's seq in its topic.
    pub seq: u64,
    /// How many subscribers it was queued for.
    pub subscribers: usize,
    /// A publish with the same idempotency key was made already and got `seq`; nothing
    /// was published now.
    pub duplicate: bool,
}

/// A snapshot of one topic, for the API and the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    /// The topic.
    pub name: TopicName,
    /// Connections subscribed (exactly or by pattern).
    pub subscribers: usize,
    /// The last seq assigned.
    pub seq: u64,
    /// Messages retained for replay.
    pub retained: usize,
    /// Publishes per second, over the last full second.
    pub rate: f64,
    /// Members, for a topic with presence.
    pub members: Option<usize>,
}

/// All topics and subscriptions of one broker.
pub struct Registry {
    topics: DashMap<TopicName, Arc<Topic>>,
    patterns: RwLock<PatternIndex>,
    /// Where new topics take their settings from; replaced by a reload.
    config: RwLock<Arc<Config>>,
    /// `limits.max_topics` of `config`, read by every publish without taking its lock.
    max_topics: AtomicUsize,
    /// How many of `topics` clients made (the broker's own `$` topics are not counted):
    /// what `limits.max_topics` limits. Changed only when a topic is made or removed, so
    /// admitting a publish never counts the table (`DashMap::len` locks every shard).
    client_topics: AtomicUsize,
    /// In cluster mode, the epoch every topic shares: seqs live in the shared stream,
    /// so they mean the same on every node until that stream starts again.
    shared_epoch: OnceLock<Epoch>,
}

/// The pattern subscriptions, which every topic made takes its share of.
#[derive(Default)]
struct PatternIndex {
    /// Bumped by every pattern subscribe and unsubscribe. A topic remembers the version
    /// it was made at, so the scan that carries a pattern change to the existing topics
    /// can run after the index's lock is released: a topic made at this version or later
    /// already took the change when it was made.
    version: u64,
    subscribers: HashMap<Pattern, Subscribers>,
}

/// Subscribers of one topic or pattern by connection. A connection covered by
/// several of its own subscriptions (`a.b` and `a.*`) is held once, with a count.
type Subscribers = IndexMap<SessionId, Subscriber>;

#[derive(Debug, Clone)]
struct Subscriber {
    queue: Arc<SendQueue>,
    /// How many of the connection's subscriptions cover this topic.
    refs: u32,
}

struct Topic {
    settings: TopicSettings,
    /// A broker topic (`$...`), not counted in `Registry::client_topics`.
    system: bool,
    /// The pattern index's version when the topic was made (see `PatternIndex`).
    made_at: u64,
    state: Mutex<TopicState>,
}

struct TopicState {
    seq: u64,
    /// Which life of the topic `seq` counts in.
    epoch: Epoch,
    subscribers: Subscribers,
    history: History,
    /// Publishes per second, counted under this lock (no shared counter on the hot path).
    rate: rate::Rate,
    /// Members by connection, for a topic whose rule enables presence.
    members: Option<presence::Members>,
    /// Set when the topic leaves the table; whoever still holds it must look it up again.
    removed: bool,
    /// Cluster interests holding the topic (its seq must survive with no subscriber); 0 on one node.
    pinned: u32,
    /// The idempotency keys of recent publishes (single node); `None` until one comes.
    keys: Option<Box<idempotency::RecentKeys>>,
}

impl TopicState {
    fn is_idle(&self) -> bool {
        self.subscribers.is_empty()
            && self.history.is_empty()
            && self.pinned == 0
            && self.keys.as_ref().is_none_or(|k| k.is_empty())
    }

    fn add(&mut self, queue: &Arc<SendQueue>) {
        self.subscribers
            .entry(queue.session())
            .and_modify(|s| s.refs += 1)
            .or_insert_with(|| Subscriber {
                queue: Arc::clone(queue),
                refs: 1,
            });
    }

    fn remove(&mut self, session: SessionId) {
        if let Some(s) = self.subscribers.get_mut(&session) {
            s.refs -= 1;
            if s.refs == 0 {
                self.subscribers.swap_remove(&session);
            }
        }
    }
}

impl Registry {
    /// An empty registry whose topics take their settings from `config`.
    pub fn new(config: Arc<Config>) -> Self {
        Registry {
            topics: DashMap::new(),
            patterns: RwLock::new(PatternIndex::default()),
            max_topics: AtomicUsize::new(config.limits.max_topics),
            config: RwLock::new(config),
            client_topics: AtomicUsize::new(0),
            shared_epoch: OnceLock::new(),
        }
    }

    /// Gives every topic made from now on `epoch` (cluster mode: the shared stream's),
    /// instead of one of its own.
    pub fn share_epoch(&self, epoch: Epoch) {
        let _ = self.shared_epoch.set(epoch);
    }

    /// Takes topic settings from `config` from now on. Existing topics keep theirs
    /// until they are removed (no subscribers and nothing retained).
    pub fn set_config(&self, config: Arc<Config>) {
        self.max_topics.store(config.limits.max_topics, Ordering::Relaxed);
        *self.config.write() = config;
    }

    /// Assigns the next seq of `topic` and queues the message for every subscriber.
    pub fn publish(&self, topic: &TopicName, payload: Payload, origin: Option<SessionId>) -> Published {
        // The writers get their queues once the topic's lock is released.
        ReadyBatch::collect(|batch| {
            self.with_topic(topic, |t, st| {
                publish_in(t, st, topic, payload, origin, now_ms(), batch)
            })
        })
    }

    /// Runs `f` on the state of `name` (made if need be), locked while the topic is
    /// still in the table: one removed between the lookup and the lock is looked up
    /// again. A topic `f` leaves idle is reaped once the lock is released.
    fn with_topic<R>(&self, name: &TopicName, f: impl FnOnce(&Topic, &mut TopicState) -> R) -> R {
        loop {
            let t = self.topic(name);
            let mut st = t.state.lock();
            if st.removed {
                continue;
            }
            let out = f(&t, &mut st);
            let idle = st.is_idle();
            drop(st);
            if idle {
                self.reap(name);
            }
            return out;
        }
    }

    /// Subscribes `queue` to `filter`. For an exact topic, `on_subscribed` gets the
    /// topic's [`Position`] while the topic is locked (so an ack sent from it precedes
    /// every message after that seq); then the replay after `resume` (with a `gap`
    /// notice for what is gone) or the last value is queued, then the live stream
    /// follows. A `resume` from another epoch, or beyond the current seq (a topic that
    /// started again), cannot be recovered: the position says so and the live stream
    /// follows the last value.
    pub fn subscribe(
        &self,
        filter: &Filter,
        queue: &Arc<SendQueue>,
        resume: Option<Resume>,
        on_subscribed: impl FnOnce(Option<Position>),
    ) -> Result<(), RequestError> {
        match filter {
            Filter::Exact(name) => {
                self.with_topic(name, |t, st| {
                    let recovered = resume.is_none_or(|r| r.since <= st.seq && r.epoch.is_none_or(|e| e == st.epoch));
                    let replayed = resume.filter(|_| recovered).map(|r| st.history.replay(r.since, st.seq));
                    on_subscribed(Some(Position {
                        seq: st.seq,
                        epoch: st.epoch,
                        recovered,
                        complete: recovered && replayed.as_ref().is_none_or(|r| r.gap.is_none()),
                    }));
                    replay(name, st, queue, replayed, t.settings.policy);
                    st.add(queue);
                });
                Ok(())
            }
            Filter::Pattern(pattern) => {
                let version = {
                    let mut index = self.patterns.write();
                    index.version += 1;
                    let subscriber = Subscriber {
                        queue: Arc::clone(queue),
                        refs: 1,
                    };
                    let subs = index.subscribers.entry(pattern.clone()).or_default();
                    subs.insert(queue.session(), subscriber);
                    index.version
                };
                on_subscribed(None);
                // Off the index's lock, so making topics does not wait for the scan: a
                // topic made from now on took the subscriber itself.
                for entry in self.topics.iter() {
                    let t = entry.value();
                    if t.made_at < version && pattern.matches(entry.key()) {
                        let mut st = t.state.lock();
                        if !st.removed {
                            replay(entry.key(), &st, queue, None, t.settings.policy);
                            st.add(queue);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Drops one subscription of `session` made with `filter`.
    pub fn unsubscribe(&self, filter: &Filter, session: SessionId) {
        match filter {
            Filter::Exact(name) => {
                let Some(t) = self.topics.get(name).map(|t| Arc::clone(t.value())) else {
                    return;
                };
                let mut st = t.state.lock();
                st.remove(session);
                let idle = st.is_idle();
                drop(st);
                if idle {
                    self.reap(name);
                }
            }
            Filter::Pattern(pattern) => {
                let version = {
                    let mut index = self.patterns.write();
                    index.version += 1;
                    if let Some(subs) = index.subscribers.get_mut(pattern) {
                        subs.swap_remove(&session);
                        if subs.is_empty() {
                            index.subscribers.remove(pattern);
                        }
                    }
                    index.version
                };
                // Off the index's lock, as in `subscribe`: a topic made from now on never
                // had the subscriber.
                let mut idle = Vec::new();
                for entry in self.topics.iter() {
                    let t = entry.value();
                    if t.made_at < version && pattern.matches(entry.key()) {
                        let mut st = t.state.lock();
                        st.remove(session);
                        if st.is_idle() {
                            idle.push(entry.key().clone());
                        }
                    }
                }
                // Reaping takes shard write locks: only after the iteration let go of its read locks.
                for name in idle {
                    self.reap(&name);
                }
            }
        }
    }

    /// Drops expired history everywhere and removes topics left idle. Run periodically.
    pub fn sweep(&self) {
        self.sweep_at(now_ms());
    }

    /// [`Registry::sweep`] as of `now` (Unix ms).
    fn sweep_at(&self, now: u64) {
        self.topics.retain(|_, t| {
            let mut st = t.state.lock();
            st.history.expire(now);
            if let Some(keys) = &mut st.keys {
                keys.expire(now);
            }
            if st.is_idle() {
                st.removed = true;
                self.count_removed(t);
                return false;
            }
            true
        });
    }

    /// Refuses a topic that does not exist yet once `limits.max_topics` topics do.
    /// Checked before the topic is made, so concurrent creators may pass it by a few.
    /// O(1): two atomic loads, and a lookup only once the limit is reached.
    pub fn admit(&self, name: &TopicName) -> Result<(), RequestError> {
        let max = self.max_topics.load(Ordering::Relaxed);
        if max == 0 || self.topic_count() < max || self.topics.contains_key(name) {
            return Ok(());
        }
        Err(RequestError::new(
            crate::error::ErrorCode::TooManyTopics,
            format!("the broker holds {max} topics, the most allowed (limits.max_topics); use an existing topic or retry later"),
        ))
    }

    /// How many topics clients made exist: the broker's own `$` topics are not counted.
    pub fn topic_count(&self) -> usize {
        self.client_topics.load(Ordering::Relaxed)
    }

    /// The topic, created (with every matching pattern subscriber) if it does not exist.
    fn topic(&self, name: &TopicName) -> Arc<Topic> {
        if let Some(t) = self.topics.get(name) {
            return Arc::clone(t.value());
        }
        let index = self.patterns.read();
        let entry = self.topics.entry(name.clone()).or_insert_with(|| {
            let settings = self.config.read().topic_settings(name);
            let mut subscribers = Subscribers::new();
            for (pattern, subs) in index.subscribers.iter() {
                if pattern.matches(name) {
                    for s in subs.values() {
                        subscribers
                            .entry(s.queue.session())
                            .and_modify(|e| e.refs += 1)
                            .or_insert_with(|| s.clone());
                    }
                }
            }
            if !name.is_system() {
                self.client_topics.fetch_add(1, Ordering::Relaxed);
            }
            Arc::new(Topic {
                system: name.is_system(),
                made_at: index.version,
                state: Mutex::new(TopicState {
                    seq: 0,
                    epoch: self.shared_epoch.get().copied().unwrap_or_default(),
                    subscribers,
                    history: History::new(&settings),
                    rate: rate::Rate::default(),
                    members: settings.presence.then(presence::Members::default),
                    removed: false,
                    pinned: 0,
                    keys: None,
                }),
                settings,
            })
        });
        Arc::clone(entry.value())
    }

    /// Removes `name` if it is idle.
    fn reap(&self, name: &TopicName) {
        let removed = self.topics.remove_if(name, |_, t| {
            let mut st = t.state.lock();
            if st.is_idle() {
                st.removed = true;
                return true;
            }
            false
        });
        if let Some((_, t)) = removed {
            self.count_removed(&t);
        }
    }

    /// Keeps `client_topics` current when `t` leaves the table.
    fn count_removed(&self, t: &Topic) {
        if !t.system {
            self.client_topics.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Publishes under `st`'s lock: the next seq, history, the fan-out.
fn publish_in(
    t: &Topic,
    st: &mut TopicState,
    topic: &TopicName,
    payload: Payload,
    origin: Option<SessionId>,
    now: u64,
    batch: &mut ReadyBatch,
) -> Published {
    st.seq += 1;
    st.rate.record(now);
    let msg = Arc::new(Message::new(topic.clone(), st.seq, now, payload, origin).with_deflate(t.settings.deflate));
    st.history.push(&msg, now);
    let subscribers = fan_out(&st.subscribers, &msg, t.settings.policy, batch);
    Published {
        seq: msg.seq,
        subscribers,
        duplicate: false,
    }
}

/// Queues `msg` for every subscriber, leaving their writers' wake-ups to `batch`;
/// returns how many got it.
fn fan_out(subscribers: &Subscribers, msg: &Arc<Message>, policy: Policy, batch: &mut ReadyBatch) -> usize {
    let mut delivered = 0;
    for sub in subscribers.values() {
        if sub.queue.skips(msg) {
            continue;
        }
        sub.queue.push_message_batched(msg, policy, batch);
        delivered += 1;
    }
    delivered
}

/// Queues what a new subscriber gets before the live stream: the replay after
/// `since` (a `gap` first if some is gone) or, without `since`, the last value.
fn replay(name: &TopicName, st: &TopicState, queue: &Arc<SendQueue>, replayed: Option<Replay>, policy: Policy) {
    let messages = match replayed {
        Some(replay) => {
            // Raw sockets and iframe streams carry payloads only: they cannot be told about a gap.
            if let (Some((from, to)), true) = (replay.gap, queue.wire().carries_notices()) {
                queue.push_reply(gap_frame(queue, name, from, to));
            }
            replay.messages
        }
        None => st.history.last_value().cloned().into_iter().collect(),
    };
    for m in &messages {
        queue.push_message(m, policy);
    }
}

/// Where a resuming subscriber stands: the last seq it received, and the epoch
/// that seq belongs to when it knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The last seq received; messages after it are replayed.
    pub since: u64,
    /// The epoch `since` was received in; `None` trusts the seq alone.
    pub epoch: Option<Epoch>,
}

/// Where an exact topic's numbering stands when a subscriber joins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The topic's current seq.
    pub seq: u64,
    /// The life of the topic that seq counts in.
    pub epoch: Epoch,
    /// False when a resume could not be honoured (another epoch, or a seq not reached).
    pub recovered: bool,
    /// True when nothing is missing: no resume asked, or one whose replay holds every
    /// message missed (history still had them all, so no `gap` precedes it).
    pub complete: bool,
}

/// The error for a `since` the topic has not reached.
fn since_beyond(name: &TopicName, since: u64, seq: u64) -> RequestError {
    RequestError::bad_request(format!(
        "`since` {since} is beyond the current seq {seq} of `{name}`; pass a seq you received, or leave `since` out"
    ))
}

fn gap_frame(queue: &SendQueue, topic: &TopicName, from: u64, to: u64) -> bytes::Bytes {
    queue.framing().reply(&Reply::Gap {
        topic: topic.as_str(),
        from,
        to,
        reason: GapReason::History,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Wire;
    use crate::queue::{Drained, Entry, QueueLimits};

    fn queue(id: u64, wire: Wire) -> Arc<SendQueue> {
        let limits = QueueLimits {
            max_messages: 100,
            max_bytes: 1 << 20,
        };
        Arc::new(SendQueue::new(SessionId(id), wire, true, limits))
    }

    fn frames(q: &SendQueue) -> Vec<(u64, *const u8)> {
        let mut d = Drained::default();
        q.drain(&mut d);
        d.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Message(m) => Some((m.seq, e.bytes(q.framing()).as_ptr())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn subscribers_of_one_format_share_one_encoded_frame() {
        let r = Registry::new(Arc::new(Config::default()));
        let topic = TopicName::parse("t").unwrap();
        let (a, b, c) = (queue(1, Wire::Json), queue(2, Wire::Json), queue(3, Wire::Msgpack));
        for q in [&a, &b, &c] {
            r.subscribe(&Filter::Exact(topic.clone()), q, None, |_| {}).unwrap();
        }
        let p = r.publish(&topic, Payload::text("hello"), None);
        assert_eq!(
            p,
            Published {
                seq: 1,
                subscribers: 3,
                duplicate: false
            }
        );
        let (fa, fb, fc) = (frames(&a), frames(&b), frames(&c));
        assert_eq!(fa[0].0, 1);
        assert_eq!(
            fa[0].1, fb[0].1,
            "no per-subscriber copy: both point at the same buffer"
        );
        assert_ne!(fa[0].1, fc[0].1, "another format has its own frame");
    }

    #[test]
    fn publish_assigns_gap_free_seqs_and_counts_subscribers() {
        let r = Registry::new(Arc::new(Config::default()));
        let topic = TopicName::parse("a.b").unwrap();
        let q = queue(1, Wire::Raw);
        r.subscribe(&Filter::parse("a.*").unwrap(), &q, None, |_| {}).unwrap();
        for i in 1..=3 {
            assert_eq!(
                r.publish(&topic, Payload::text("x"), None),
                Published {
                    seq: i,
                    subscribers: 1,
                    duplicate: false
                }
            );
        }
        r.unsubscribe(&Filter::parse("a.*").unwrap(), SessionId(1));
        assert_eq!(r.publish(&topic, Payload::text("x"), None).subscribers, 0);
    }

    #[test]
    fn since_replays_history_with_a_gap_notice_for_what_is_gone() {
        let mut config = Config::default();
        config.history.size = 2;
        let r = Registry::new(Arc::new(config));
        let topic = TopicName::parse("h").unwrap();
        for _ in 0..5 {
            r.publish(&topic, Payload::text("x"), None);
        }
        let q = queue(1, Wire::Json);
        let mut acked = None;
        let resume = Resume { since: 1, epoch: None };
        r.subscribe(&Filter::Exact(topic.clone()), &q, Some(resume), |p| acked = p)
            .unwrap();
        assert_eq!(acked.map(|p| (p.seq, p.recovered)), Some((5, true)));
        let mut d = Drained::default();
        q.drain(&mut d);
        let kinds: Vec<String> = d
            .entries
            .iter()
            .map(|e| match e {
                Entry::Message(m) => format!("m{}", m.seq),
                Entry::Reply(b) => String::from_utf8_lossy(&b[2..]).to_string(),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(
            kinds[0],
            r#"{"type":"gap","topic":"h","from":2,"to":3,"reason":"history"}"#
        );
        assert_eq!(&kinds[1..], ["m4", "m5"]);
    }

    #[test]
    fn a_resume_from_another_epoch_or_beyond_the_seq_is_not_recovered() {
        let r = Registry::new(Arc::new(Config::default()));
        let topic = TopicName::parse("e").unwrap();
        for _ in 0..3 {
            r.publish(&topic, Payload::text("x"), None);
        }
        let position = |since, epoch| {
            let q = queue(9, Wire::Json);
            let mut at = None;
            r.subscribe(&Filter::Exact(topic.clone()), &q, Some(Resume { since, epoch }), |p| {
                at = p
            })
            .unwrap();
            let mut d = Drained::default();
            q.drain(&mut d);
            r.unsubscribe(&Filter::Exact(topic.clone()), SessionId(9));
            (at.unwrap(), d.message_seqs())
        };
        let (now, replayed) = position(1, None);
        assert!(now.recovered);
        assert_eq!(replayed, [2, 3]);
        let (same, replayed) = position(2, Some(now.epoch));
        assert!(same.recovered);
        assert_eq!(replayed, [3]);
        let (other, replayed) = position(1, Some(Epoch::new()));
        assert!(!other.recovered, "another epoch's seqs mean other messages");
        assert_eq!(
            replayed, [0u64; 0],
            "no replay: the last value only where a rule keeps one"
        );
        let (beyond, _) = position(7, None);
        assert!(!beyond.recovered, "a seq the topic never reached is an earlier life's");
        assert_eq!((beyond.seq, beyond.epoch), (3, now.epoch));
    }

    #[test]
    fn a_pattern_subscribe_racing_new_topics_reaches_each_exactly_once() {
        use crate::queue::QueueLimits;
        let r = Arc::new(Registry::new(Arc::new(Config::default())));
        let limits = QueueLimits {
            max_messages: 1 << 20,
            max_bytes: 1 << 30,
        };
        for round in 0..20u64 {
            let q = Arc::new(SendQueue::new(SessionId(round), Wire::Raw, true, limits));
            let names: Vec<TopicName> = (0..400)
                .map(|i| TopicName::parse(&format!("race{round}.t{i}")).unwrap())
                .collect();
            let maker = {
                let (r, names) = (Arc::clone(&r), names.clone());
                // Makes the topics while the pattern subscribe scans: each is made by its publish.
                std::thread::spawn(move || {
                    for n in &names {
                        r.publish(n, Payload::text("1"), None);
                    }
                })
            };
            let pattern = Filter::parse(&format!("race{round}.*")).unwrap();
            r.subscribe(&pattern, &q, None, |_| {}).unwrap();
            maker.join().unwrap();
            for n in &names {
                r.publish(n, Payload::text("2"), None);
            }
            let mut d = Drained::default();
            q.drain(&mut d);
            let live: Vec<&TopicName> = d
                .entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Message(m) if m.payload == Payload::text("2") => Some(&m.topic),
                    _ => None,
                })
                .collect();
            assert_eq!(live.len(), names.len(), "round {round}: each topic once, none twice");
            r.unsubscribe(&pattern, SessionId(round));
            for n in &names {
                assert_eq!(
                    r.publish(n, Payload::text("3"), None).subscribers,
                    0,
                    "round {round}: {n}"
                );
            }
        }
    }
}
