//! The writing a connection's own task does: all of it for a `Task` queue,
//! and for a WebSocket (plain TCP or TLS) only what its flush shard handed over —
//! a socket that filled up, a failed write, the close. It waits for the
//! socket, writes with vectored writes (many frames per system call), and
//! sends the close frame last.
//!
//! Pings and the idle check are the keepalive sweep's (`session::keepalive`):
//! they go on while a write here is blocked, and cut a client that stopped
//! reading through [`SendQueue::close_idle`], which aborts the write.
//!
//! Nothing else writes to the socket meanwhile, and no lock is held while writing.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::clock::now_ms;
use crate::queue::{Outgoing, SendQueue, TaskTurn, MAX_IOVECS};

/// How long a close frame may take to go out after an abort.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// How the writer ended.
#[derive(Debug)]
pub enum WriterEnd {
    /// The close frame was sent.
    Closed,
    /// The client sent nothing for `idle_timeout`: it is presumed gone, so the close
    /// frame was tried once at most and nobody should wait for its answer.
    Idle,
    /// The connection was dropped (write error, or an abort in the middle of a frame).
    Dropped(io::Error),
}

/// The connection task's writing side: idle, holding the socket, until its queue has
/// work for it; then a turn, boxed so an idle connection carries none of its state.
pub struct Writer<W> {
    queue: Arc<SendQueue>,
    side: Side<W>,
    /// Spaces a `Task` queue's writes, in microseconds (zero: none); narrow, as every
    /// idle connection carries it.
    flush_interval_us: u32,
    /// The queue's wake-up was taken by whoever waited for it: write without waiting.
    woken: bool,
}

/// A boxed turn that hands the socket back.
type Turn<W> = Pin<Box<dyn Future<Output = (Result<(), WriterEnd>, W)> + Send>>;

enum Side<W> {
    Idle(W),
    Busy(Turn<W>),
    Done,
}

impl<W: AsyncWrite + Unpin + Send + 'static> Writer<W> {
    /// The writer of `queue` to `io`. `flush_interval` spaces the writes of a `Task`
    /// queue under load (a write after a quiet spell goes out at once).
    pub fn new(queue: Arc<SendQueue>, io: W, flush_interval: Duration) -> Self {
        Writer {
            queue,
            side: Side::Idle(io),
            flush_interval_us: u32::try_from(flush_interval.as_micros()).unwrap_or(u32::MAX),
            woken: false,
        }
    }

    /// Has the next [`Writer::run`] take a turn at once: the caller waited for the
    /// queue's wake-up itself (a connection idle on both sides waits for one thing).
    pub fn woken(&mut self) {
        self.woken = true;
    }

    /// Runs until the queue's close frame is written or the socket fails. Safe to drop
    /// and call again: the turn in progress is kept. `parked` is true while it waits
    /// with nothing to write, holding no state (where dropping it loses nothing).
    pub async fn run(&mut self, parked: &AtomicBool) -> WriterEnd {
        loop {
            match &mut self.side {
                Side::Idle(_) => {
                    if !std::mem::take(&mut self.woken) {
                        parked.store(true, Ordering::Relaxed);
                        self.queue.ready().await;
                        parked.store(false, Ordering::Relaxed);
                    }
                    if let Side::Idle(io) = std::mem::replace(&mut self.side, Side::Done) {
                        let turn = turn(
                            Arc::clone(&self.queue),
                            io,
                            Duration::from_micros(self.flush_interval_us.into()),
                        );
                        self.side = Side::Busy(Box::pin(turn));
                    }
                }
                Side::Busy(turn) => {
                    let (result, io) = turn.await;
                    match result {
                        Ok(()) => self.side = Side::Idle(io),
                        Err(end) => {
                            self.side = Side::Done;
                            return end;
                        }
                    }
                }
                Side::Done => std::future::pending().await,
            }
        }
    }
}

/// Writes what the queue has for the task until it has nothing more (`Ok`), or until
/// the connection is over: the close frame sent, or the socket lost.
async fn turn<W: AsyncWrite + Unpin>(
    queue: Arc<SendQueue>,
    mut io: W,
    flush_interval: Duration,
) -> (Result<(), WriterEnd>, W) {
    let mut out = Outgoing::default();
    let spaced = queue.direct().is_none() && !flush_interval.is_zero();
    let result = loop {
        match queue.take_for_task(&mut out) {
            TaskTurn::Wait => break Ok(()),
            TaskTurn::Write { resumed } => {
                if let (false, Some(m)) = (resumed, queue.metrics()) {
                    m.record_batch(out.messages, out.bytes, out.oldest_ts, now_ms());
                }
                if let Err(end) = write_out(&mut io, &queue, &mut out).await {
                    break Err(end);
                }
                // Under load, let the next frames gather before writing again.
                if spaced && !queue.is_closed() {
                    tokio::time::sleep(flush_interval).await;
                }
            }
            TaskTurn::Close { frame, idle: true } => break Err(close_idle(&mut io, &frame).await),
            TaskTurn::Close { frame, idle: false } => break Err(finish(&mut io, &frame).await),
            TaskTurn::Failed(e) => break Err(WriterEnd::Dropped(e)),
        }
    };
    (result, io)
}

/// Writes `out` through, waiting for the socket. Gives up at once if the queue is
/// aborted (a slow consumer cut, a silent client): between frames that is a clean stop
/// (the close frame follows), in the middle of one the connection is lost.
async fn write_out<W: AsyncWrite + Unpin>(io: &mut W, queue: &SendQueue, out: &mut Outgoing) -> Result<(), WriterEnd> {
    let framing = queue.framing();
    while !out.is_done() {
        let written = tokio::select! {
            biased;
            _ = queue.aborted() => {
                if out.mid_frame() {
                    return Err(WriterEnd::Dropped(io::Error::other("aborted in the middle of a frame")));
                }
                return Ok(());
            }
            r = poll_fn(|cx| {
                let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
                let n = out.slices(framing, &mut iov);
                Pin::new(&mut *io).poll_write_vectored(cx, &iov[..n])
            }) => r,
        };
        match written {
            Ok(0) => return Err(WriterEnd::Dropped(io::ErrorKind::WriteZero.into())),
            Ok(n) => out.advance(framing, n),
            Err(e) => return Err(WriterEnd::Dropped(e)),
        }
    }
    // What the socket layer still holds (TLS records) goes out before the turn ends:
    // nobody else may be about to write to this socket.
    tokio::select! {
        biased;
        _ = queue.aborted() => Ok(()),
        r = io.flush() => r.map_err(WriterEnd::Dropped),
    }
}

/// Tries the close frame once, without waiting: a peer that stopped reading would only
/// make us wait for nothing.
async fn close_idle<W: AsyncWrite + Unpin>(io: &mut W, close: &Bytes) -> WriterEnd {
    // `timeout` polls the write once before looking at the (already elapsed) deadline.
    let _ = tokio::time::timeout(Duration::ZERO, write_close(io, close)).await;
    WriterEnd::Idle
}

/// Writes the close frame and half-closes, so the client reads it before EOF.
async fn finish<W: AsyncWrite + Unpin>(io: &mut W, close: &Bytes) -> WriterEnd {
    match tokio::time::timeout(CLOSE_WRITE_TIMEOUT, write_close(io, close)).await {
        Ok(Ok(())) => WriterEnd::Closed,
        Ok(Err(e)) => WriterEnd::Dropped(e),
        Err(_) => WriterEnd::Dropped(io::Error::new(
            io::ErrorKind::TimedOut,
            "close frame not written in time",
        )),
    }
}

/// Writes the close frame, then half-closes the socket.
async fn write_close<W: AsyncWrite + Unpin>(io: &mut W, close: &Bytes) -> io::Result<()> {
    io.write_all(close).await?;
    io.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::flush::testing::{direct_queue, flush, limits, msg, read_payloads, take_listed};
    use crate::flush::{DirectWrite, Flushers};
    use crate::queue::FlushTake;

    /// Messages each test queues: far more than the socket buffers hold.
    const N: u64 = 400;

    /// Queues [`N`] large messages while `client` reads nothing, lets the shard write
    /// until the socket is full, then runs the connection's writer on `io` and checks
    /// that the client gets every frame whole and in order. Returns the running writer
    /// and the client.
    async fn fill_then_write_through<W, C>(
        flushers: &Flushers,
        q: &Arc<SendQueue>,
        io: W,
        mut client: C,
    ) -> (tokio::task::JoinHandle<WriterEnd>, C)
    where
        W: AsyncWrite + Unpin + Send + 'static,
        C: tokio::io::AsyncRead + Unpin + Send + 'static,
    {
        for s in 1..=N {
            q.push_message(&msg(s, 20_000), Policy::DropOldest);
        }
        let listed = take_listed(flushers, 0);
        assert_eq!(listed.len(), 1);
        assert!(!flush(&listed[0], &mut Outgoing::default()), "nothing more arrived");
        let mut writer = Writer::new(Arc::clone(q), io, Duration::ZERO);
        let reader = tokio::spawn(async move { (read_payloads(&mut client, N as usize).await, client) });
        let run = tokio::spawn(async move { writer.run(&AtomicBool::new(false)).await });
        let (got, client) = reader.await.unwrap();
        for (i, p) in got.iter().enumerate() {
            assert!(p.starts_with(&format!("{}:", i + 1)), "frame {i} intact and in order");
            assert_eq!(p.len(), format!("{}:", i + 1).len() + 20_000);
        }
        (run, client)
    }

    #[tokio::test]
    async fn a_full_socket_goes_to_the_task_which_finishes_the_cut_frame() {
        let flushers = Flushers::new(1, Duration::ZERO);
        let (q, write, client) = direct_queue(&flushers, limits()).await;
        let (run, mut client) = fill_then_write_through(&flushers, &q, DirectWrite(write), client).await;
        // Written through, the queue is idle again: the next push goes to the shard.
        q.push_message(&msg(N + 1, 1), Policy::DropOldest);
        let listed = take_listed(&flushers, 0);
        assert_eq!(listed.len(), 1, "back on the shard once the task was done");
        q.close(Bytes::from_static(b"\x88\x00"), true);
        assert_eq!(
            listed[0].take_scheduled(&mut Outgoing::default()),
            FlushTake::HandedOver
        );
        assert!(matches!(run.await.unwrap(), WriterEnd::Closed));
        assert_eq!(
            read_payloads(&mut client, 2).await,
            [format!("{}:x", N + 1), String::new()]
        );
    }

    #[tokio::test]
    async fn over_tls_a_full_socket_goes_to_the_task_and_every_record_gets_out() {
        let flushers = Flushers::new(1, Duration::ZERO);
        let (q, socket, client) = crate::flush::testing::tls_queue(&flushers, limits()).await;
        let io = crate::tls::TlsWrite(socket);
        let (run, mut client) = fill_then_write_through(&flushers, &q, io, client).await;
        // Written through, the queue is the shard's again; the close goes out after it.
        let mut out = Outgoing::default();
        q.push_message(&msg(N + 1, 1), Policy::DropOldest);
        let listed = take_listed(&flushers, 0);
        assert_eq!(listed.len(), 1, "back on the shard once the task was done");
        assert!(!flush(&listed[0], &mut out));
        q.close(Bytes::from_static(b"\x88\x00"), true);
        assert_eq!(listed[0].take_scheduled(&mut out), FlushTake::HandedOver);
        assert!(matches!(run.await.unwrap(), WriterEnd::Closed));
        assert_eq!(
            read_payloads(&mut client, 2).await,
            [format!("{}:x", N + 1), String::new()]
        );
        let mut rest = Vec::new();
        let eof = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut rest).await;
        assert!(eof.is_ok() && rest.is_empty(), "close_notify, then EOF: {eof:?}");
    }
}
