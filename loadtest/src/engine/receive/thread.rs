//! One receive thread's loop: waits on epoll, reads every ready connection,
//! obeys commands when its eventfd fires, and sends connections that ended
//! back to tokio (to reconnect, or to answer the close and let go).

use super::conn::{Conn, Ended, Lent};
use super::reconnect::{rejoin, Rejoin};
use super::remote::{Cmd, Remote};
use crate::engine::subscriber::count;
use crate::epoll::{self, Epoll, EventFd, Events};
use crate::stats::Tally;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use tokio::runtime::Handle;

/// The eventfd's token; connections use their slot number.
const WAKE: u64 = u64::MAX;
/// Set in a TLS connection's token (with its slot number), so a plain
/// read costs no look at the connection to know how to read it.
const TLS: u64 = 1 << 32;
/// Events taken per wait.
const EVENTS: usize = 1024;

/// A receive thread's state, all its own.
pub(super) struct Thread {
    epoll: Epoll,
    events: Events,
    wake: Arc<EventFd>,
    rx: mpsc::Receiver<Cmd>,
    /// Its own sending end, for reconnected connections to come back by.
    me: Remote,
    /// Connections by slot (the epoll token).
    slots: Vec<Option<Box<Conn>>>,
    free: Vec<usize>,
    /// Plan index → slot, for storm commands.
    by_index: HashMap<usize, usize>,
    tally: Tally,
    /// The read buffer every connection reads into, and the inflater they share.
    lent: Lent,
    /// `tally.received`, published for the progress line.
    progress: Arc<AtomicU64>,
    rt: Handle,
    rejoin: Arc<Rejoin>,
}

impl Thread {
    /// A thread reading commands from `rx`; `me` is how to reach it.
    pub(super) fn new(
        rx: mpsc::Receiver<Cmd>,
        me: Remote,
        progress: Arc<AtomicU64>,
        rt: Handle,
        rejoin: Arc<Rejoin>,
    ) -> std::io::Result<Thread> {
        let epoll = Epoll::new()?;
        epoll.add(me.wake().as_raw_fd(), epoll::IN, WAKE)?;
        Ok(Thread {
            epoll,
            events: Events::with_capacity(EVENTS),
            wake: me.wake().clone(),
            rx,
            me,
            slots: Vec::new(),
            free: Vec::new(),
            by_index: HashMap::new(),
            tally: Tally::default(),
            lent: Lent::default(),
            progress,
            rt,
            rejoin,
        })
    }

    /// Runs until told to stop (or every sender is gone).
    pub(super) fn run(mut self) {
        loop {
            if let Err(e) = self.epoll.wait(&mut self.events, -1) {
                eprintln!("receive thread: epoll_wait: {e}");
                return;
            }
            let n = self.events.len();
            for i in 0..n {
                if i + 1 < n {
                    // Its state is cold: fetch it while this one's read runs.
                    let next = (self.events.get(i + 1).0 & !TLS) as usize;
                    if let Some(Some(c)) = self.slots.get(next) {
                        c.prefetch();
                    }
                }
                let (token, _) = self.events.get(i);
                if token == WAKE {
                    if !self.commands() {
                        return;
                    }
                } else {
                    self.readable(token);
                }
            }
            self.progress.store(self.tally.received, Ordering::Relaxed);
        }
    }

    fn readable(&mut self, token: u64) {
        let slot = (token & !TLS) as usize;
        let Some(Some(conn)) = self.slots.get_mut(slot) else {
            return;
        };
        let read = if token & TLS == 0 {
            conn.read_ready(&mut self.lent, &mut self.tally, &self.rt)
        } else {
            conn.read_ready_tls(&mut self.lent, &mut self.tally, &self.rt)
        };
        if let Err(ended) = read {
            self.ended(slot, ended);
        }
    }

    /// Obeys queued commands; false when told to stop.
    fn commands(&mut self) -> bool {
        self.wake.drain();
        loop {
            match self.rx.try_recv() {
                Ok(Cmd::Add(conn, pending)) => self.add(conn, &pending),
                Ok(Cmd::Step(index)) => self.tally.begin(index),
                Ok(Cmd::Collect(index, reply)) => {
                    let _ = reply.send(self.tally.snapshot(index));
                }
                Ok(Cmd::Reconnect(index)) => {
                    if let Some(conn) = self.by_index.get(&index).copied().and_then(|s| self.remove(s)) {
                        self.rt.spawn(rejoin(conn, false, self.rejoin.clone(), self.me.clone()));
                    }
                }
                Ok(Cmd::Stop(reply)) => {
                    let all = (0..self.slots.len()).filter_map(|s| self.remove(s)).collect();
                    let _ = reply.send(all);
                    return false;
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn add(&mut self, mut conn: Box<Conn>, pending: &[crate::client::Message]) {
        conn.sub.settle(&mut self.tally);
        conn.observe_pending(pending, &mut self.tally);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let token = if conn.is_tls() { slot as u64 | TLS } else { slot as u64 };
        if let Err(e) = self.epoll.add(conn.fd(), epoll::IN | epoll::RDHUP | epoll::ET, token) {
            self.free.push(slot);
            self.ended_conn(conn, Ended::Io(e));
            return;
        }
        self.by_index.insert(conn.sub.index, slot);
        let mut first = conn.decode_buffered(&mut self.lent, &mut self.tally, &self.rt);
        if first.is_ok() && conn.is_tls() {
            // What rustls read in tokio is past the tail: decrypt it now.
            first = conn.read_ready_tls(&mut self.lent, &mut self.tally, &self.rt);
        }
        self.slots[slot] = Some(conn);
        match first {
            // Registration reports data that arrived before it, so the
            // next wait reads it.
            Ok(()) => {}
            Err(ended) => self.ended(slot, ended),
        }
    }

    fn remove(&mut self, slot: usize) -> Option<Box<Conn>> {
        let conn = self.slots.get_mut(slot)?.take()?;
        // The writer holds a duplicate of the socket: without this the
        // registration would outlive the close.
        let _ = self.epoll.delete(conn.fd());
        self.by_index.remove(&conn.sub.index);
        self.free.push(slot);
        Some(conn)
    }

    fn ended(&mut self, slot: usize, why: Ended) {
        if let Some(conn) = self.remove(slot) {
            self.ended_conn(conn, why);
        }
    }

    /// Counts the error, then reconnects (reconnecting subscribers) or
    /// answers a close and lets the connection go.
    fn ended_conn(&mut self, conn: Box<Conn>, why: Ended) {
        count(&mut self.tally, |c| c.errors += 1);
        if conn.sub.spec.reconnects {
            self.rt.spawn(rejoin(conn, true, self.rejoin.clone(), self.me.clone()));
            return;
        }
        let code = match why {
            Ended::Closed => 1000,
            Ended::Protocol(_) => 1002,
            Ended::Io(_) => return,
        };
        self.rt.spawn(async move {
            let _ = conn.writer.close(code, "").await;
        });
    }
}
