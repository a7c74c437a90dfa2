//! The floor server: the simplest possible WebSocket broadcast server,
//! written for speed like a C program, as the reference for "what the
//! kernel allows on this machine". It is a benchmark peer, not a product.
//!
//! Blocking edge-triggered epoll loops (`--threads`, default 1) accept
//! upgrades on any path; every data message a client sends is written to
//! every *other* client with one `write()` per recipient, no queue, and no
//! batching beyond what is already buffered (the messages decoded from one
//! `read()` of the sender go out in one `write()`). Masked client frames are unmasked, server frames are
//! unmasked, fragmented messages are relayed whole, pings are answered,
//! and a close is answered and the connection closed. A recipient whose
//! socket is full loses that frame (counted in [`FloorStats::dropped`]),
//! so a slow reader never blocks it. The thread that reads a message
//! writes it to everyone: one publisher keeps one thread busy; more
//! threads help when many clients publish.
//!
//! `fanout-loadtest floor-server --listen 127.0.0.1:PORT` serves it; the
//! harness talks to it with `--protocol raw --raw-path-template /`.

mod peer;
mod thread;
pub mod upgrade;

use crate::epoll::EventFd;
use peer::Peer;
use serde::Serialize;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

/// What the server did, for its exit line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FloorStats {
    /// Connections upgraded.
    pub clients: u64,
    /// Data messages received from clients.
    pub messages: u64,
    /// Frames written to recipients (one message to one recipient).
    pub written: u64,
    /// Frames dropped because a recipient's socket was full.
    pub dropped: u64,
}

/// Counters every thread adds to (once per read, never per recipient).
#[derive(Default)]
struct Counters {
    clients: AtomicU64,
    messages: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
}

/// What the threads share.
struct Shared {
    /// Every upgraded client: the broadcast list.
    peers: RwLock<Vec<Arc<Peer>>>,
    /// Next peer id.
    next_id: AtomicU64,
    counters: Counters,
    /// Set by [`FloorServer::shutdown`].
    stop: AtomicBool,
}

/// A running floor server.
pub struct FloorServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    wakes: Vec<Arc<EventFd>>,
    threads: Vec<JoinHandle<()>>,
}

impl FloorServer {
    /// Serves `listener` with `threads` epoll loops (at least one).
    pub fn start(listener: TcpListener, threads: usize) -> io::Result<FloorServer> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            peers: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
        });
        let mut server = FloorServer {
            addr,
            shared: shared.clone(),
            wakes: Vec::new(),
            threads: Vec::new(),
        };
        for n in 0..threads.max(1) {
            let wake = Arc::new(EventFd::new()?);
            let t = thread::Loop::new(listener.clone(), shared.clone(), wake.clone())?;
            let handle = std::thread::Builder::new()
                .name(format!("floor-{n}"))
                .spawn(move || t.run())?;
            server.wakes.push(wake);
            server.threads.push(handle);
        }
        Ok(server)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters so far.
    pub fn stats(&self) -> FloorStats {
        let c = &self.shared.counters;
        FloorStats {
            clients: c.clients.load(Ordering::Relaxed),
            messages: c.messages.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops the threads, closes every connection and returns the counters.
    pub fn shutdown(mut self) -> FloorStats {
        self.stop_threads();
        self.stats()
    }

    fn stop_threads(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in &self.wakes {
            w.notify();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.peers.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Drop for FloorServer {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop_threads();
        }
    }
}
