//! Who writes a queue out, and the hand-off between a `Direct` queue's writer
//! (the flush shard serving its ready list) and its connection's task: one
//! [`Owner`] at a time, switched under the queue's lock, so frames never
//! interleave and no lock is held while writing.

use std::io;
use std::sync::Arc;

use bytes::Bytes;

use super::{Direct, Outgoing, ReadyBatch, SendQueue, State};
use crate::protocol::Framing;

/// Who writes a queue's frames out.
#[derive(Debug)]
pub enum Sink {
    /// One task waits on [`SendQueue::ready`] and drains.
    Task,
    /// The flush shard serving its ready list writes to the socket; the connection's
    /// task only when it is full.
    Direct(Direct),
    /// One task drains several queues (a Socket.IO connection's namespaces), woken through
    /// the one `Notify` they share.
    Shared(Arc<tokio::sync::Notify>),
}

/// Who may write a `Direct` queue's frames now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// Nobody: the queue is empty.
    Idle,
    /// Its flush shard: the queue is on the shard's ready list or being written.
    Scheduled,
    /// The connection's task: the socket is full, a write failed, or the queue closes.
    Task,
}

/// What to do about newly queued work once the lock is released.
#[must_use]
pub(super) enum Wake {
    Nothing,
    /// Wake the queue's task.
    Task,
    /// Put the queue on its ready list.
    Shard,
}

/// What the flush shard takes from a scheduled queue.
#[derive(Debug, PartialEq, Eq)]
pub enum FlushTake {
    /// A batch to write (in the `Outgoing` passed in).
    Batch,
    /// Nothing queued: the queue is idle again.
    Nothing,
    /// The queue is closing: its task writes from now on (and has been woken).
    HandedOver,
}

/// How a flush shard's non-blocking write of a batch went.
#[derive(Debug)]
pub enum Written {
    /// All of it.
    All,
    /// Some or none: the socket is full.
    Blocked,
    /// The socket failed.
    Failed(io::Error),
}

/// What the connection's task is to do next.
#[derive(Debug)]
pub enum TaskTurn {
    /// Nothing for it now: wait for [`SendQueue::ready`] again.
    Wait,
    /// Write the batch (in the `Outgoing` passed in).
    Write {
        /// The rest of a batch the flush shard began (and counted in the metrics).
        resumed: bool,
    },
    /// Everything is written: send this close frame (empty: none) and stop.
    Close {
        /// The close frame.
        frame: Bytes,
        /// The client went silent: try once, do not wait, do not linger.
        idle: bool,
    },
    /// The connection is lost: a write failed, or a frame was cut and cannot be finished.
    Failed(io::Error),
}

impl State {
    /// The wake-up newly queued work needs; `was_empty`: nothing was queued before.
    pub(super) fn wake(&mut self, direct: bool, was_empty: bool) -> Wake {
        match (direct, self.owner) {
            (false, _) if was_empty => Wake::Task,
            (true, Owner::Idle) => {
                self.owner = Owner::Scheduled;
                Wake::Shard
            }
            _ => Wake::Nothing,
        }
    }

    /// Hands the writing to the task (the caller wakes it once the lock is released).
    pub(super) fn hand_over(&mut self) {
        self.owner = Owner::Task;
    }

    /// Moves everything queued into `out`, rendered as `framing`. True if replies were among it.
    pub(super) fn take_into(&mut self, out: &mut Outgoing, framing: Framing) -> bool {
        let gaps = self.cold.as_ref().map_or(&[][..], |c| &c.gaps[..]);
        let taken = out.load(&mut self.entries, gaps, framing);
        if let Some(cold) = &mut self.cold {
            cold.gaps.clear();
        }
        self.taken(taken)
    }
}

impl SendQueue {
    /// Carries out a wake-up; `batch` collects ready queues to hand over in one go.
    pub(super) fn apply(self: &Arc<Self>, wake: Wake, batch: Option<&mut ReadyBatch>) {
        match wake {
            Wake::Nothing => {}
            Wake::Task => self.wake_task(),
            Wake::Shard => match (batch, self.direct()) {
                (Some(b), _) => b.add(self),
                (None, Some(d)) => d.schedule(self),
                (None, None) => {}
            },
        }
    }

    /// The flush shard's turn on a scheduled queue: takes what is queued into `out`.
    pub fn take_scheduled(&self, out: &mut Outgoing) -> FlushTake {
        let mut st = self.state.lock();
        if st.closed {
            st.hand_over();
            drop(st);
            self.wake_task();
            return FlushTake::HandedOver;
        }
        if st.entries.is_empty() {
            st.owner = Owner::Idle;
            return FlushTake::Nothing;
        }
        let had_replies = st.take_into(out, self.framing);
        drop(st);
        if had_replies {
            self.wake_drained();
        }
        FlushTake::Batch
    }

    /// The flush shard is done with `out`. True: more was queued meanwhile, and the
    /// queue stays scheduled (the shard takes it again next round).
    pub fn flushed(&self, out: &mut Outgoing, written: Written) -> bool {
        let mut st = self.state.lock();
        let again = match written {
            Written::All if st.closed => {
                st.hand_over();
                false
            }
            Written::All if st.entries.is_empty() => {
                st.owner = Owner::Idle;
                false
            }
            Written::All => true,
            Written::Blocked => {
                st.hand_over();
                if st.aborted {
                    if out.mid_frame() {
                        st.cold().failed = Some(io::Error::other("closed in the middle of a frame"));
                    }
                } else {
                    out.compact();
                    st.cold().unsent = Some(Box::new(std::mem::take(out)));
                }
                false
            }
            Written::Failed(e) => {
                st.hand_over();
                st.cold().failed = Some(e);
                false
            }
        };
        let woken = st.owner == Owner::Task;
        drop(st);
        out.clear();
        if woken {
            self.wake_task();
        }
        again
    }

    /// The connection task's turn: what it must write or do next, its batch in `out`.
    pub fn take_for_task(&self, out: &mut Outgoing) -> TaskTurn {
        out.clear();
        let mut st = self.state.lock();
        let direct = self.direct().is_some();
        if direct && st.owner != Owner::Task {
            return TaskTurn::Wait;
        }
        if let Some(cold) = &mut st.cold {
            if let Some(e) = cold.failed.take() {
                return TaskTurn::Failed(e);
            }
            if let Some(unsent) = cold.unsent.take() {
                *out = *unsent;
                return TaskTurn::Write { resumed: true };
            }
        }
        if !st.entries.is_empty() {
            let had_replies = st.take_into(out, self.framing);
            drop(st);
            if had_replies {
                self.wake_drained();
            }
            return TaskTurn::Write { resumed: false };
        }
        if st.closed {
            return match st.cold.as_mut().and_then(|c| c.close.take()) {
                Some(frame) => TaskTurn::Close { frame, idle: st.idle },
                None => TaskTurn::Wait,
            };
        }
        if direct {
            st.owner = Owner::Idle;
        }
        TaskTurn::Wait
    }
}
