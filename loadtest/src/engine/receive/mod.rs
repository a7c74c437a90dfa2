//! The receive side of a worker: `--receive-threads` blocking threads, each
//! an edge-triggered epoll loop that owns its share of the reading
//! connections (connection `i` goes to thread `i % threads`).
//!
//! Per message there is no allocation, lock or shared atomic: frames are
//! decoded in place from the thread's read buffer ([`Conn`]), one clock
//! read per `read()`, and the counters and latency histograms are the
//! thread's own [`Tally`](crate::stats::Tally), copied out when a step ends
//! ([`Receivers::collect`]). What needs tokio stays there: writes (pongs,
//! closes, publishes, through [`crate::client::Detached`]'s writer) and
//! reconnects ([`Rejoin`]), which hand the connection back when done.
//! Commands reach a thread over a channel plus an eventfd that wakes its epoll.
//!
//! The files, from the bottom up: `tls.rs`, decrypting a TLS connection's
//! reads; `conn.rs`, one connection read and decoded in place; `remote.rs`, how a thread is told things;
//! `reconnect.rs`, reopening a connection in tokio and sending it back
//! through its thread's `Remote`; `thread.rs`, one thread's loop; and this
//! one, the worker's handle on them all ([`Receivers`]).

mod conn;
mod reconnect;
mod remote;
mod thread;
mod tls;

pub use conn::Conn;
pub use reconnect::Rejoin;

use crate::client::Message;
use crate::stats::StepCounters;
use remote::{Cmd, Remote};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// A worker's receive threads.
#[derive(Clone)]
pub struct Receivers {
    threads: Vec<Remote>,
    /// Each thread's distinct-messages count, stored once per epoll wake-up.
    received: Vec<Arc<AtomicU64>>,
    /// Stops the threads when the last clone goes.
    _stop: Arc<StopOnDrop>,
}

/// Tells every thread to stop when dropped. Each thread holds a sender to
/// itself (for reconnected connections to come back by), so its channel
/// never closes: without this, a worker that ends without [`Receivers::stop`]
/// (an early return, an aborted task) would leave its threads in epoll for
/// the rest of the process, holding their sockets.
struct StopOnDrop(Vec<Remote>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            // Nobody waits for the connections: the thread drops them.
            t.send(Cmd::Stop(oneshot::channel().0));
        }
    }
}

impl Receivers {
    /// Starts `threads` receive threads (at least one). Call inside tokio:
    /// they spawn pongs and reconnects on the current runtime.
    pub fn start(threads: usize, rejoin: Arc<Rejoin>) -> io::Result<Receivers> {
        let rt = tokio::runtime::Handle::current();
        let (mut remotes, mut received) = (Vec::new(), Vec::new());
        for n in 0..threads.max(1) {
            let (remote, rx) = Remote::new()?;
            let progress = Arc::new(AtomicU64::new(0));
            let t = thread::Thread::new(rx, remote.clone(), progress.clone(), rt.clone(), rejoin.clone())?;
            std::thread::Builder::new()
                .name(format!("receive-{n}"))
                .spawn(move || t.run())?;
            remotes.push(remote);
            received.push(progress);
        }
        Ok(Receivers {
            _stop: Arc::new(StopOnDrop(remotes.clone())),
            threads: remotes,
            received,
        })
    }

    fn of(&self, index: usize) -> &Remote {
        &self.threads[index % self.threads.len()]
    }

    /// Hands a connection to its thread, with the messages read before.
    pub fn add(&self, conn: Box<Conn>, pending: Vec<Message>) {
        self.of(conn.sub.index).send(Cmd::Add(conn, pending));
    }

    /// Step `index` starts.
    pub fn begin_step(&self, index: u32) {
        for t in &self.threads {
            t.send(Cmd::Step(index));
        }
    }

    /// Every thread's counters of step `index`, merged.
    pub async fn collect(&self, index: u32) -> StepCounters {
        let mut merged = StepCounters::default();
        for t in &self.threads {
            let (tx, rx) = oneshot::channel();
            t.send(Cmd::Collect(index, tx));
            if let Ok(c) = rx.await {
                merged.merge(&c);
            }
        }
        merged
    }

    /// Asks plan connection `index` to reconnect (ignored while it is already away).
    pub fn reconnect(&self, index: usize) {
        self.of(index).send(Cmd::Reconnect(index));
    }

    /// Distinct messages received so far.
    pub fn received(&self) -> u64 {
        self.received.iter().map(|r| r.load(Ordering::Relaxed)).sum()
    }

    /// Stops every thread and returns the connections they held.
    #[allow(clippy::vec_box)] // As in `Cmd::Stop`.
    pub async fn stop(&self) -> Vec<Box<Conn>> {
        let mut all = Vec::new();
        for t in &self.threads {
            let (tx, rx) = oneshot::channel();
            t.send(Cmd::Stop(tx));
            all.extend(rx.await.unwrap_or_default());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::watch;

    fn rejoin() -> Arc<Rejoin> {
        let opts = crate::engine::messages::RunOpts {
            url: "ws://127.0.0.1:9".into(),
            protocol: crate::protocol::Protocol::Raw,
            raw_path: "/".into(),
            payload_bytes: 64,
            payload_shape: crate::shape::PayloadShape::Padding,
            deflate: false,
            deflate_publish_level: 0,
            local_addrs: 0,
            connect_concurrency: 1,
            connect_timeout_ms: 1_000,
            storm_interval_ms: 0,
            storm_fraction: 0.0,
            receive_threads: 1,
            tls: Default::default(),
            tls_config: None,
        };
        Arc::new(Rejoin {
            opts: Arc::new(opts),
            stop: watch::channel(false).1,
        })
    }

    /// Whether the thread behind `remote` still obeys commands.
    async fn answers(remote: &Remote) -> bool {
        let (tx, rx) = oneshot::channel();
        remote.send(Cmd::Collect(0, tx));
        rx.await.is_ok()
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_threads() {
        let receivers = Receivers::start(2, rejoin()).unwrap();
        let remotes = receivers.threads.clone();
        let clone = receivers.clone();
        drop(receivers);
        for r in &remotes {
            assert!(answers(r).await, "a clone is still alive: the threads must run");
        }
        drop(clone);
        // The stop was queued before this command, so a stopped thread never answers it.
        for r in &remotes {
            assert!(!answers(r).await, "the threads must stop with the last handle");
        }
    }

    #[tokio::test]
    async fn stop_then_drop_is_quiet() {
        let receivers = Receivers::start(1, rejoin()).unwrap();
        assert!(receivers.stop().await.is_empty());
        drop(receivers);
    }
}
