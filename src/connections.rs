//! `ConnectionTable`: every open session with what an operator asks about
//! it — remote address, transport, subscriptions, queue depth, losses — so
//! `GET /api/connections?sort=queue` can show *who* is slow.
//!
//! A session lists itself when it starts and unlists when it drops; a
//! listing holds the session's queue, so depth and losses are read live
//! (one short queue lock per connection, only when the table is asked),
//! and its keepalive clock, which the keepalive sweep reads and moves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::clock::monotonic_ms;
use crate::metrics::Transport;
use crate::protocol::SessionId;
use crate::queue::SendQueue;

/// Where a session came from: what the table shows besides its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's address, when the transport knows it.
    pub remote: Option<SocketAddr>,
    /// Which way in: the `transport` label of the metrics.
    pub transport: Transport,
}

/// One open session, as the table holds it.
#[derive(Debug)]
pub struct Listed {
    /// Where it came from.
    pub peer: Peer,
    /// Its send queue: depth and losses are read from it.
    pub queue: Arc<SendQueue>,
    /// How many subscriptions it holds; the session keeps it current.
    pub subscriptions: AtomicUsize,
    /// Pings and the idle check (WebSockets only).
    pub keepalive: Keepalive,
    /// When its token expires, if it does: here rather than in an allocation of its own,
    /// as every connection has one.
    pub expiry: Expiry,
}

/// When a connection's token expires (seconds since the epoch plus leeway; 0: never),
/// shared between the session that refreshes it and the reader that waits for it.
#[derive(Debug, Default)]
pub struct Expiry {
    at: AtomicU64,
    changed: Notify,
}

impl Expiry {
    /// Sets (or clears, with `None`) the expiry and wakes the waiter to re-arm.
    pub fn set(&self, at: Option<u64>) {
        self.at.store(at.unwrap_or(0), Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// When the token expires (Unix seconds), if it does.
    pub fn at(&self) -> Option<u64> {
        Some(self.at.load(Ordering::Relaxed)).filter(|at| *at > 0)
    }

    /// Resolves once the expiry passes without a refresh.
    pub async fn expired(&self) {
        loop {
            // Registered before reading, so a refresh between the two is not missed.
            let changed = self.changed.notified();
            let at = self.at.load(Ordering::Relaxed);
            if at == 0 {
                changed.await;
                continue;
            }
            let left = at as f64 - crate::clock::now_secs_f64();
            if left <= 0.0 {
                return;
            }
            // Boxed: only connections with an expiring token need a timer, and inline it
            // would sit in every connection's future.
            tokio::select! {
                _ = Box::pin(tokio::time::sleep(Duration::from_secs_f64(left))) => {}
                _ = changed => {}
            }
        }
    }
}

/// One connection's keepalive clock, in [`monotonic_ms`]. The reader counts what the
/// client sends; the keepalive sweep (the only other user) pings and watches the count.
#[derive(Debug, Default)]
pub struct Keepalive {
    /// Frames received from the client so far.
    pub activity: AtomicU64,
    /// Ping period; 0: no pings and no idle check.
    pub ping_ms: AtomicU64,
    /// Close after this long without a frame from the client; 0: never.
    pub idle_ms: AtomicU64,
    /// `activity` as the sweep last saw it.
    pub seen: AtomicU64,
    /// When `activity` last moved.
    pub quiet_since: AtomicU64,
    /// When the next ping is due.
    pub next_ping: AtomicU64,
}

impl Keepalive {
    /// Starts the clock: pings every `ping`, idle after `idle` of silence.
    pub fn start(&self, ping: Duration, idle: Duration) {
        let now = monotonic_ms();
        let ping = ping.as_millis() as u64;
        self.idle_ms.store(idle.as_millis() as u64, Ordering::Relaxed);
        self.quiet_since.store(now, Ordering::Relaxed);
        self.next_ping.store(now + ping, Ordering::Relaxed);
        self.ping_ms.store(ping, Ordering::Relaxed);
    }

    /// Counts one frame from the client.
    pub fn record_activity(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }
}

/// One row of `GET /api/connections`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionInfo {
    /// The session id.
    pub id: u64,
    /// The client's address, if known.
    pub remote: Option<String>,
    /// The transport.
    pub transport: &'static str,
    /// Subscriptions held.
    pub subscriptions: usize,
    /// Messages queued now.
    pub queue_depth: usize,
    /// Messages lost so far.
    pub dropped: u64,
}

/// How to order the listing, deepest or lossiest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Deepest queue first (`sort=queue`).
    Queue,
    /// Most messages lost first (`sort=dropped`).
    Dropped,
    /// Oldest session first (`sort=id`).
    Id,
}

/// Every open session.
#[derive(Debug, Default)]
pub struct ConnectionTable {
    sessions: DashMap<SessionId, Arc<Listed>>,
}

impl ConnectionTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists a session; returns the listing it keeps current.
    pub fn insert(&self, id: SessionId, peer: Peer, queue: Arc<SendQueue>) -> Arc<Listed> {
        let listed = Arc::new(Listed {
            peer,
            queue,
            subscriptions: AtomicUsize::new(0),
            keepalive: Keepalive::default(),
            expiry: Expiry::default(),
        });
        self.sessions.insert(id, Arc::clone(&listed));
        listed
    }

    /// Unlists a session.
    pub fn remove(&self, id: SessionId) {
        self.sessions.remove(&id);
    }

    /// How many sessions are listed.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is listed.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Runs `f` on every listed session. Shards are read one at a time and `f` runs
    /// under a shard's read lock: it must not list or unlist anything.
    pub fn for_each(&self, mut f: impl FnMut(&Listed)) {
        for entry in self.sessions.iter() {
            f(entry.value());
        }
    }

    /// The first `limit` sessions in `sort` order.
    pub fn top(&self, sort: SortBy, limit: usize) -> Vec<ConnectionInfo> {
        // Copy the handles out first: no shard lock is held while queues are locked.
        let listed: Vec<(SessionId, Arc<Listed>)> = self
            .sessions
            .iter()
            .map(|e| (*e.key(), Arc::clone(e.value())))
            .collect();
        let mut rows: Vec<ConnectionInfo> = listed
            .into_iter()
            .map(|(id, l)| ConnectionInfo {
                id: id.0,
                remote: l.peer.remote.map(|r| r.to_string()),
                transport: l.peer.transport.as_str(),
                subscriptions: l.subscriptions.load(Ordering::Relaxed),
                queue_depth: l.queue.depth(),
                dropped: l.queue.dropped(),
            })
            .collect();
        match sort {
            SortBy::Queue => rows.sort_by(|a, b| b.queue_depth.cmp(&a.queue_depth).then(a.id.cmp(&b.id))),
            SortBy::Dropped => rows.sort_by(|a, b| b.dropped.cmp(&a.dropped).then(a.id.cmp(&b.id))),
            SortBy::Id => rows.sort_by_key(|r| r.id),
        }
        rows.truncate(limit);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::protocol::{Message, Payload, Wire};
    use crate::queue::QueueLimits;
    use crate::topic::TopicName;

    #[test]
    fn the_deepest_queues_come_first() {
        let table = ConnectionTable::new();
        let limits = QueueLimits {
            max_messages: 10,
            max_bytes: 1 << 20,
        };
        let peer = Peer {
            remote: None,
            transport: Transport::Ws,
        };
        let msg = Arc::new(Message::new(
            TopicName::parse("t").unwrap(),
            1,
            0,
            Payload::text("x"),
            None,
        ));
        for (id, depth) in [(1, 2), (2, 7), (3, 0)] {
            let q = Arc::new(SendQueue::new(SessionId(id), Wire::Raw, true, limits));
            for _ in 0..depth {
                q.push_message(&msg, Policy::DropOldest);
            }
            table.insert(SessionId(id), peer, q);
        }
        let top = table.top(SortBy::Queue, 2);
        assert_eq!(
            top.iter().map(|r| (r.id, r.queue_depth)).collect::<Vec<_>>(),
            [(2, 7), (1, 2)]
        );
        table.remove(SessionId(2));
        assert_eq!(table.top(SortBy::Id, 10).len(), 2);
    }

    #[tokio::test]
    async fn expiry_waits_and_a_refresh_moves_it() {
        let e = Arc::new(Expiry::default());
        let now = crate::clock::now_secs();
        e.set(Some(now + 3600));
        let waiting = tokio::time::timeout(Duration::from_millis(50), e.expired()).await;
        assert!(waiting.is_err());
        e.set(Some(now - 1));
        tokio::time::timeout(Duration::from_secs(1), e.expired()).await.unwrap();
    }
}
