//! Ready lists: where a WebSocket's queue (plain TCP or TLS) waits for its writer.
//!
//! A `Direct` queue belongs to one [`ReadyList`]. Work queued on an idle
//! queue puts the queue on its list once (the queue's owner says whether it
//! is already there), and whoever serves the list — a flush shard, see
//! `crate::flush` — takes everything listed and writes it. A publish that
//! makes many queues ready collects them per list in a [`ReadyBatch`] and
//! hands each list its queues in one go when it is done, after the topic's
//! lock is released, so fanning a message out to a thousand subscribers
//! wakes one writer per list rather than one per subscriber.
//!
//! This module says *which* queues are ready and on *whose* list; it knows
//! nothing of how they are written.

use std::cell::RefCell;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::SendQueue;
use crate::tls::TlsSocket;

/// The queues one writer has to write, and its wake-up.
#[derive(Debug)]
pub struct ReadyList {
    /// Its place among the broker's lists, so a batch can group queues by list.
    index: usize,
    queues: Mutex<Vec<Arc<SendQueue>>>,
    wake: Notify,
}

impl ReadyList {
    /// An empty list, number `index` of its broker.
    pub fn new(index: usize) -> Self {
        ReadyList {
            index,
            queues: Mutex::new(Vec::new()),
            wake: Notify::new(),
        }
    }

    /// Lists `queue` and wakes the writer.
    pub fn push(&self, queue: Arc<SendQueue>) {
        self.queues.lock().push(queue);
        self.wake.notify_one();
    }

    /// Lists every queue of `queues` (leaving it empty) and wakes the writer once.
    fn append(&self, queues: &mut Vec<Arc<SendQueue>>) {
        self.queues.lock().append(queues);
        self.wake.notify_one();
    }

    /// Moves everything listed into `into` (which must be empty), keeping both capacities.
    pub fn take(&self, into: &mut Vec<Arc<SendQueue>>) {
        std::mem::swap(into, &mut *self.queues.lock());
    }

    /// Resolves once something was listed since the last wake-up.
    pub async fn listed(&self) {
        self.wake.notified().await
    }

    /// How many queues are listed now.
    pub fn len(&self) -> usize {
        self.queues.lock().len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a WebSocket's queue is written: its socket, and the ready list of the writer
/// that writes it.
#[derive(Debug)]
pub struct Direct {
    list: Arc<ReadyList>,
    socket: DirectSocket,
}

/// The socket of a `Direct` queue.
#[derive(Debug)]
pub enum DirectSocket {
    /// Plain TCP, its frames written as they are.
    Tcp(Arc<TcpStream>),
    /// TLS, its frames encrypted into records on the way.
    Tls(Arc<TlsSocket>),
}

impl DirectSocket {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            DirectSocket::Tcp(tcp) => tcp,
            DirectSocket::Tls(t) => t.tcp(),
        }
    }
}

impl Direct {
    /// A queue written to `socket` by whoever serves `list`.
    pub fn new(list: Arc<ReadyList>, socket: DirectSocket) -> Self {
        Direct { list, socket }
    }

    /// The socket the queue is written to.
    pub fn socket(&self) -> &DirectSocket {
        &self.socket
    }

    /// Puts `queue` (whose sink this is) on its list.
    pub(super) fn schedule(&self, queue: &Arc<SendQueue>) {
        self.list.push(Arc::clone(queue));
    }
}

/// Queues one publish made ready, grouped by ready list, handed over when it is done.
#[derive(Debug, Default)]
pub struct ReadyBatch {
    by_list: Vec<Vec<Arc<SendQueue>>>,
}

thread_local! {
    /// Reused by every publish on this thread: no allocation per publish.
    static BATCH: RefCell<ReadyBatch> = RefCell::new(ReadyBatch::default());
}

impl ReadyBatch {
    /// Runs `f` with this thread's batch, then hands every list its queues (one lock and
    /// one wake-up per list). Call it around the part that holds a topic's lock, so the
    /// writers are woken only once the lock is released.
    pub fn collect<R>(f: impl FnOnce(&mut ReadyBatch) -> R) -> R {
        BATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut batch) => batch.run(f),
            // Only if a publish ran inside another on this thread: use a batch of its own.
            Err(_) => ReadyBatch::default().run(f),
        })
    }

    /// Adds a `Direct` queue that must go on its list.
    pub(super) fn add(&mut self, queue: &Arc<SendQueue>) {
        let Some(d) = queue.direct() else { return };
        let i = d.list.index;
        if self.by_list.len() <= i {
            self.by_list.resize_with(i + 1, Vec::new);
        }
        self.by_list[i].push(Arc::clone(queue));
    }

    fn run<R>(&mut self, f: impl FnOnce(&mut ReadyBatch) -> R) -> R {
        let out = f(self);
        self.submit();
        out
    }

    fn submit(&mut self) {
        for queues in &mut self.by_list {
            let Some(list) = queues.first().and_then(|q| q.direct()).map(|d| Arc::clone(&d.list)) else {
                continue;
            };
            list.append(queues);
        }
    }
}
