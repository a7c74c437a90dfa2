//! The writer loop of one connection: waits for its queue, takes everything
//! queued, and writes it with vectored writes (many frames per system call);
//! sends pings, closes idle connections, and sends the close frame last.
//!
//! Nothing else writes to the socket, and no lock is held while writing.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::metrics::WriterStats;
use crate::protocol::frame::{self, OpCode};
use crate::protocol::{encode_reply, GapReason, Reply, Wire};
use crate::queue::{Drained, Entry, Gap, SendQueue};
use crate::registry::now_ms;
use crate::shutdown::Shutdown;

/// Most buffers handed to one `writev` (Linux allows 1024).
const MAX_IOVECS: usize = 512;

/// How long a close frame may take to go out after an abort.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The writer's timing settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Ping period; zero: none.
    pub ping_interval: Duration,
    /// Close after this long without a frame from the client; zero: never.
    pub idle_timeout: Duration,
    /// Least time between two writes: a writer woken sooner waits out the rest, so
    /// frames that arrive meanwhile share one system call. Zero: write at once.
    pub flush_interval: Duration,
}

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

/// Pings and the idle check. Kept apart from the queue loop because they must go on
/// while a write is blocked: a peer that stopped reading is exactly the one to detect.
struct Keepalive {
    /// `None`: no pings (and so no idle check either).
    pings: Option<Interval>,
    idle_timeout: Duration,
    /// Frames the reader got, as last seen; a change means the client is alive.
    seen: u64,
    last_active: Instant,
    activity: Arc<AtomicU64>,
}

impl Keepalive {
    fn new(config: &WriterConfig, activity: Arc<AtomicU64>) -> Self {
        let pings = (!config.ping_interval.is_zero()).then(|| {
            let mut i = tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        Keepalive {
            pings,
            idle_timeout: config.idle_timeout,
            seen: activity.load(Ordering::Relaxed),
            last_active: Instant::now(),
            activity,
        }
    }

    /// Resolves at the next ping time; never without pings.
    async fn tick(&mut self) {
        match &mut self.pings {
            Some(i) => {
                i.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// At a ping time: true if the client has been silent for `idle_timeout` (the caller
    /// closes), else queues a ping. Control frames bypass the queue limits, so a
    /// subscriber with a full queue still gets its pings.
    fn on_tick(&mut self, queue: &SendQueue) -> bool {
        let now_seen = self.activity.load(Ordering::Relaxed);
        if now_seen != self.seen {
            self.seen = now_seen;
            self.last_active = Instant::now();
        } else if !self.idle_timeout.is_zero() && self.last_active.elapsed() >= self.idle_timeout {
            return true;
        }
        queue.push_control(frame::encode(OpCode::Ping, b""));
        false
    }
}

/// Runs until the queue's close frame is written or the socket fails.
/// `activity` counts frames the reader got; it going still is what idle means.
pub async fn run<W: AsyncWrite + Unpin>(
    queue: Arc<SendQueue>,
    mut io: W,
    config: WriterConfig,
    activity: Arc<AtomicU64>,
    shutdown: Shutdown,
) -> WriterEnd {
    let mut drained = Drained::default();
    let mut keepalive = Keepalive::new(&config, activity);
    let mut draining = false;
    let mut last_write: Option<Instant> = None;
    // Counted per batch in plain counters, added to the shared metrics once a second.
    let mut stats = queue.metrics().map(|m| WriterStats::new(m));
    // One timer, re-armed at most once a second, rather than a new one per wake-up.
    let flush_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(flush_timer);
    let mut flush_armed = false;
    // Registered once: a cancellation future made per wake-up would lock the token
    // that every connection shares, on every wake-up of every writer.
    let shutdown_signal = shutdown.triggered();
    tokio::pin!(shutdown_signal);
    loop {
        tokio::select! {
            biased;
            _ = queue.ready() => {}
            _ = &mut shutdown_signal, if !draining => {
                draining = true;
                queue.close(frame::close(1001, "server shutting down"), true);
            }
            _ = keepalive.tick() => {
                if keepalive.on_tick(&queue) {
                    return close_idle(&mut io, &queue).await;
                }
            }
            _ = &mut flush_timer, if flush_armed => {
                flush_armed = false;
                if let Some(s) = &mut stats {
                    s.flush();
                }
            }
        }
        // Batch only under load: after a quiet spell the first frame goes out at once.
        if let Some(at) = last_write.map(|t| t + config.flush_interval) {
            if at > Instant::now() && !queue.is_closed() {
                tokio::time::sleep_until(at).await;
            }
        }
        queue.drain(&mut drained);
        match write_drained(&mut io, &queue, &drained, &mut keepalive).await {
            Ok(()) => {}
            Err(WriterEnd::Idle) => return close_idle(&mut io, &queue).await,
            Err(end) => return end,
        }
        if !config.flush_interval.is_zero() {
            last_write = Some(Instant::now());
        }
        if let Some(s) = &mut stats {
            record_batch(s, &drained, queue.wire());
            if let (false, Some(at)) = (flush_armed, s.due()) {
                flush_timer.as_mut().reset(at);
                flush_armed = true;
            }
        }
        drained.entries.clear();
        if let Some(close) = drained.close.take() {
            return finish(&mut io, &close).await;
        }
    }
}

/// Adds one written batch to the writer's counts: messages, bytes, and the oldest
/// message's publish time for the delivery latency.
fn record_batch(stats: &mut WriterStats, drained: &Drained, wire: Wire) {
    let (mut messages, mut bytes, mut oldest) = (0u64, 0u64, None::<u64>);
    for entry in &drained.entries {
        bytes += entry.bytes(wire).len() as u64;
        if let Entry::Message(m) = entry {
            messages += 1;
            oldest = Some(oldest.map_or(m.ts, |o| o.min(m.ts)));
        }
    }
    if bytes > 0 {
        stats.record_batch(messages, bytes, oldest, now_ms());
    }
}

/// Closes a connection whose client went silent. The close frame is tried once, without
/// waiting: a peer that stopped reading would only make us wait for nothing.
async fn close_idle<W: AsyncWrite + Unpin>(io: &mut W, queue: &SendQueue) -> WriterEnd {
    let close = frame::close(1001, "idle timeout");
    queue.close(close.clone(), false);
    // `timeout` polls the write once before looking at the (already elapsed) deadline.
    let _ = tokio::time::timeout(Duration::ZERO, async {
        io.write_all(&close).await?;
        io.shutdown().await
    })
    .await;
    WriterEnd::Idle
}

/// Writes the close frame and half-closes, so the client reads it before EOF.
async fn finish<W: AsyncWrite + Unpin>(io: &mut W, close: &Bytes) -> WriterEnd {
    let sent = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
        io.write_all(close).await?;
        io.shutdown().await
    })
    .await;
    match sent {
        Ok(Ok(())) => WriterEnd::Closed,
        Ok(Err(e)) => WriterEnd::Dropped(e),
        Err(_) => WriterEnd::Dropped(io::Error::new(
            io::ErrorKind::TimedOut,
            "close frame not written in time",
        )),
    }
}

/// Writes one drained batch, with `gap` notices placed before the first later message
/// of their topic. Gives up at once if the queue is aborted (a slow consumer is cut).
async fn write_drained<W: AsyncWrite + Unpin>(
    io: &mut W,
    queue: &SendQueue,
    drained: &Drained,
    keepalive: &mut Keepalive,
) -> Result<(), WriterEnd> {
    let wire = queue.wire();
    let gap_frames: Vec<(usize, Bytes)> = place_gaps(&drained.entries, &drained.gaps, wire);
    let mut bufs: Vec<&[u8]> = Vec::with_capacity(drained.entries.len() + gap_frames.len());
    let mut gaps = gap_frames.iter().peekable();
    for (i, entry) in drained.entries.iter().enumerate() {
        while let Some((_, g)) = gaps.next_if(|(at, _)| *at == i) {
            bufs.push(g);
        }
        let b = entry.bytes(wire);
        if !b.is_empty() {
            bufs.push(b);
        }
    }
    bufs.extend(gaps.map(|(_, g)| &g[..]));
    let (mut idx, mut off) = (0usize, 0usize);
    while idx < bufs.len() {
        let iov: Vec<IoSlice<'_>> = bufs[idx..]
            .iter()
            .take(MAX_IOVECS)
            .enumerate()
            .map(|(k, b)| IoSlice::new(if k == 0 { &b[off..] } else { b }))
            .collect();
        let written = tokio::select! {
            biased;
            _ = queue.aborted() => {
                if off == 0 {
                    return Ok(());
                }
                return Err(WriterEnd::Dropped(io::Error::other("aborted in the middle of a frame")));
            }
            // A write blocked on a full socket still keeps time: the ping is queued for
            // after this batch, and a client silent for too long is cut here.
            _ = keepalive.tick() => {
                if keepalive.on_tick(queue) {
                    if off == 0 {
                        return Err(WriterEnd::Idle);
                    }
                    // A close frame now would land inside the unfinished one.
                    queue.close(Bytes::new(), false);
                    return Err(WriterEnd::Dropped(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle timeout in the middle of a frame",
                    )));
                }
                continue;
            }
            r = io.write_vectored(&iov) => r,
        };
        let mut n = match written {
            Ok(0) => return Err(WriterEnd::Dropped(io::ErrorKind::WriteZero.into())),
            Ok(n) => n,
            Err(e) => return Err(WriterEnd::Dropped(e)),
        };
        while n > 0 {
            let left = bufs[idx].len() - off;
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// For each gap, the entry index it goes before (`entries.len()`: at the end) and its frame.
pub fn place_gaps(entries: &std::collections::VecDeque<Entry>, gaps: &[Gap], wire: Wire) -> Vec<(usize, Bytes)> {
    // Raw sockets carry payloads only: they cannot be told about a gap.
    if gaps.is_empty() || wire == Wire::Raw {
        return Vec::new();
    }
    let mut placed: Vec<(usize, Bytes)> = gaps
        .iter()
        .map(|g| {
            let at = entries
                .iter()
                .position(|e| matches!(e, Entry::Message(m) if m.topic == g.topic && m.seq > g.to))
                .unwrap_or(entries.len());
            let frame = encode_reply(
                wire,
                &Reply::Gap {
                    topic: g.topic.as_str(),
                    from: g.from,
                    to: g.to,
                    reason: GapReason::SlowConsumer,
                },
            );
            (at, frame)
        })
        .collect();
    placed.sort_by_key(|(at, _)| *at);
    placed
}
