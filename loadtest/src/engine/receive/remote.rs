//! How a receive thread is reached: the commands it obeys ([`Cmd`]) and
//! the sending end that queues one and wakes the thread's epoll
//! ([`Remote`]). The worker's handle, the thread itself (for connections
//! that come back) and reconnects all talk to a thread through here.

use super::conn::Conn;
use crate::client::Message;
use crate::epoll::EventFd;
use crate::stats::StepCounters;
use std::io;
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// What a receive thread is told.
pub(super) enum Cmd {
    /// Take this connection (and count the messages that came with it).
    Add(Box<Conn>, Vec<Message>),
    /// A step starts: count into it, gaps and errors too.
    Step(u32),
    /// Send a copy of a step's counters.
    Collect(u32, oneshot::Sender<StepCounters>),
    /// A storm: reconnect plan connection `index` now.
    Reconnect(usize),
    /// Give every connection back and exit.
    #[allow(clippy::vec_box)] // They live boxed (slots, commands): no need to move them out.
    Stop(oneshot::Sender<Vec<Box<Conn>>>),
}

/// The sending end of one receive thread.
#[derive(Clone)]
pub(super) struct Remote {
    tx: mpsc::Sender<Cmd>,
    /// Registered in the thread's epoll: a queued command wakes it.
    wake: Arc<EventFd>,
}

impl Remote {
    /// A new thread's sending end and the command queue it reads.
    pub(super) fn new() -> io::Result<(Remote, mpsc::Receiver<Cmd>)> {
        let (tx, rx) = mpsc::channel();
        let remote = Remote {
            tx,
            wake: Arc::new(EventFd::new()?),
        };
        Ok((remote, rx))
    }

    /// The eventfd that wakes the thread.
    pub(super) fn wake(&self) -> &Arc<EventFd> {
        &self.wake
    }

    /// Queues `cmd` and wakes the thread; a stopped thread drops it.
    pub(super) fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            self.wake.notify();
        }
    }
}
