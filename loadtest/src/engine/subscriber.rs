//! The reading side of every connection: decodes payloads, classifies
//! them per publisher (in order, reordered, duplicate), records latency
//! from the intended send time, counts gap notices and errors, and, in
//! the reconnect scenario, reconnects with `since` when told to.

use super::messages::RunOpts;
use super::open::{open, Opened};
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
use tokio::sync::{watch, Notify};

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
    let mut last_seq: HashMap<String, u64> = conn.ack_seq.clone();
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
                            Some(v) => *v = s,
                            None => {
                                last_seq.insert(t.into_owned(), s);
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
        let reconnect = loop {
            tokio::select! {
                _ = ctx.stop.changed() => {
                    batch.flush(&ctx.shared);
                    let _ = conn.writer.close(1000, "load test over").await;
                    return;
                }
                _ = ctx.reconnect.notified(), if ctx.spec.reconnects => break true,
                msg = conn.reader.next_message() => match msg {
                    Ok(Message::Close(_)) => {
                        batch.errors += 1;
                        break ctx.spec.reconnects;
                    }
                    Ok(m) => {
                        handle(&m, &mut batch);
                        if !conn.reader.has_buffered_frame() {
                            batch.flush(&ctx.shared);
                        }
                    }
                    Err(_) => {
                        batch.errors += 1;
                        break ctx.spec.reconnects;
                    }
                }
            }
        };
        batch.flush(&ctx.shared);
        if !reconnect {
            let _ = ctx.stop.changed().await;
            return;
        }
        let _ = conn.writer.close(1000, "reconnect").await;
        drop(conn);
        conn = loop {
            match open(&ctx.spec, &ctx.opts, ctx.index, ctx.local, &last_seq).await {
                Ok(c) => break c,
                Err(_) => {
                    batch.errors += 1;
                    if *ctx.stop.borrow() {
                        batch.flush(&ctx.shared);
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        };
        batch.reconnects += 1;
    }
}
