//! The reading side of every connection: decodes payloads, classifies
//! them per publisher (in order, reordered, duplicate), records latency
//! from the intended send time, counts gap notices and errors, and, for
//! reconnecting connections, reconnects with `since` and the topic's epoch:
//! at once when a storm says so, with exponential backoff and full jitter
//! when the broker dropped it (so a restarted broker is not hit by every
//! client in the same millisecond, as browsers behave).

use super::messages::RunOpts;
use super::open::{open, Opened, TopicPos};
use super::Shared;
use crate::client::Message;
use crate::clock::now_ns;
use crate::payload;
use crate::plan::ConnSpec;
use crate::protocol::Incoming;
use crate::stats::{Observation, SeqTracker};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The first reconnect delay's upper bound after the broker dropped a connection.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Exponential backoff with full jitter: attempt `n` waits a random time in
/// `[0, min(BACKOFF_MAX, BACKOFF_FIRST * 2^n))`.
fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_FIRST.saturating_mul(1 << attempt.min(16)).min(BACKOFF_MAX);
    cap.mul_f64(rand::random::<f64>())
}

/// Everything a subscriber task needs besides its connection.
pub struct SubCtx {
    /// The connection's spec.
    pub spec: ConnSpec,
    /// Options.
    pub opts: Arc<RunOpts>,
    /// Worker-wide counters.
    pub shared: Arc<Shared>,
    /// Local address to reconnect from.
    pub local: Option<IpAddr>,
    /// The connection's index in the plan (picks its server among several `--url`s).
    pub index: usize,
    /// Reconnect request (reconnect scenario).
    pub reconnect: Arc<Notify>,
    /// Becomes true when the run ends.
    pub stop: watch::Receiver<bool>,
}

/// Per-flush batch, so the shared lock is taken once per read burst.
#[derive(Default)]
struct Batch {
    items: Vec<(u32, Observation, u64)>,
    gaps: u64,
    gap_messages: u64,
    errors: u64,
    foreign: u64,
    reconnects: u64,
}

impl Batch {
    fn flush(&mut self, shared: &Shared) {
        if self.items.is_empty() && self.gaps + self.errors + self.foreign + self.reconnects == 0 {
            return;
        }
        let received = self.items.iter().filter(|i| i.1 != Observation::Duplicate).count() as u64;
        shared.received.fetch_add(received, Ordering::Relaxed);
        let current = shared.current_step.load(Ordering::Relaxed);
        shared.with_steps(|steps| {
            for &(step, obs, lat) in &self.items {
                if let Some(c) = steps.get_mut(step as usize) {
                    c.record(obs, lat);
                }
            }
            if let Some(c) = steps.get_mut(current as usize) {
                c.gaps += self.gaps;
                c.gap_messages += self.gap_messages;
                c.errors += self.errors;
                c.foreign += self.foreign;
                c.reconnects += self.reconnects;
            }
        });
        *self = Batch {
            items: std::mem::take(&mut self.items),
            ..Batch::default()
        };
        self.items.clear();
    }
}

/// Reads one connection until the run stops. Slow subscribers never read;
/// connections without subscriptions read and discard (they must drain).
pub async fn run_subscriber(mut ctx: SubCtx, mut conn: Opened) {
    let measured = !ctx.spec.subscribe.is_empty() && !ctx.spec.slow;
    if ctx.spec.slow {
        let _ = ctx.stop.changed().await;
        return;
    }
    let own = ctx.spec.publish.as_ref().map(|p| p.id);
    let mut trackers: HashMap<u32, SeqTracker> = HashMap::new();
    let mut last_seq: HashMap<String, TopicPos> = conn.positions.clone();
    let mut batch = Batch::default();
    let protocol = ctx.opts.protocol;
    let reconnects = ctx.spec.reconnects;
    loop {
        let mut handle = |msg: &Message, batch: &mut Batch| {
            if !measured {
                return;
            }
            let now = now_ns();
            match protocol.parse(msg) {
                Incoming::Data { payload, topic, seq } => {
                    if let (true, Some(t), Some(s)) = (reconnects, topic, seq) {
                        match last_seq.get_mut(t.as_ref()) {
                            Some(v) => v.seq = s,
                            None => {
                                last_seq.insert(t.into_owned(), TopicPos { seq: s, epoch: None });
                            }
                        }
                    }
                    match payload::decode(&payload) {
                        Ok(st) if Some(st.publisher) == own => {}
                        Ok(st) => {
                            let obs = trackers.entry(st.publisher).or_default().observe(st.seq);
                            batch.items.push((st.step, obs, now.saturating_sub(st.intended_ns)));
                        }
                        Err(_) => batch.foreign += 1,
                    }
                }
                Incoming::Gap { from, to } => {
                    batch.gaps += 1;
                    batch.gap_messages += to.saturating_sub(from) + 1;
                }
                Incoming::Error(_) => batch.errors += 1,
                _ => {}
            }
        };
        for msg in std::mem::take(&mut conn.pending) {
            handle(&msg, &mut batch);
        }
        batch.flush(&ctx.shared);
        // `Some(dropped)`: reconnect; `dropped` when the broker (not a storm) ended it.
        let reconnect = loop {
            tokio::select! {
                _ = ctx.stop.changed() => {
                    batch.flush(&ctx.shared);
                    let _ = conn.writer.close(1000, "load test over").await;
                    return;
                }
                _ = ctx.reconnect.notified(), if ctx.spec.reconnects => break Some(false),
                msg = conn.reader.next_message() => match msg {
                    Ok(Message::Close(_)) => {
                        batch.errors += 1;
                        break ctx.spec.reconnects.then_some(true);
                    }
                    Ok(m) => {
                        handle(&m, &mut batch);
                        if !conn.reader.has_buffered_frame() {
                            batch.flush(&ctx.shared);
                        }
                    }
                    Err(_) => {
                        batch.errors += 1;
                        break ctx.spec.reconnects.then_some(true);
                    }
                }
            }
        };
        batch.flush(&ctx.shared);
        let Some(dropped) = reconnect else {
            let _ = ctx.stop.changed().await;
            return;
        };
        if !dropped {
            let _ = conn.writer.close(1000, "reconnect").await;
        }
        drop(conn);
        // A storm reconnects at once; a dropped connection waits a jittered
        // moment even before its first try, and longer after each failure.
        let (mut attempt, mut wait) = (0u32, dropped);
        conn = loop {
            if wait {
                tokio::select! {
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                    _ = ctx.stop.changed() => {
                        batch.flush(&ctx.shared);
                        return;
                    }
                }
            }
            match open(&ctx.spec, &ctx.opts, ctx.index, ctx.local, &last_seq).await {
                Ok(c) => break c,
                Err(_) => {
                    (attempt, wait) = (attempt + 1, true);
                    batch.errors += 1;
                    if *ctx.stop.borrow() {
                        batch.flush(&ctx.shared);
                        return;
                    }
                }
            }
        };
        // The ack says where each topic stands now; where the broker could not
        // resume (it restarted), the seqs start again from there.
        for (topic, pos) in &conn.positions {
            match last_seq.get_mut(topic) {
                Some(last) if !conn.unrecovered.contains(topic) => last.epoch = pos.epoch.clone(),
                _ => {
                    last_seq.insert(topic.clone(), pos.clone());
                }
            }
        }
        batch.reconnects += 1;
    }
}
