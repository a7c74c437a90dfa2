//! The publishing side: follows a fixed-rate schedule per step, stamping
//! every payload with the *intended* send time, and sends whatever is due
//! in one batched write per wake-up (frames encoded into reused buffers).
//! Payloads are padded stamps or shaped JSON ([`crate::shape`]); with
//! `--deflate-publish`, where the server agreed, they are compressed.

use super::messages::{RunOpts, StepCmd};
use super::Shared;
use crate::client::deflate::{DeflateParams, Deflater};
use crate::client::frame::{self, OP_BINARY, OP_TEXT};
use crate::client::WsWriter;
use crate::clock::{instant_at, now_ns, Schedule};
use crate::payload::{self, Stamp};
use crate::plan::PubSpec;
use crate::shape::ShapeWriter;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

/// Most frames queued before a write, so one catch-up burst cannot hog the
/// socket for long.
const MAX_BATCH: u64 = 1024;

/// Everything a publisher task needs.
pub struct PubCtx {
    /// What it publishes.
    pub spec: PubSpec,
    /// `(measured, slow)` deliveries per message, parallel to `spec.topics`.
    pub fanout: Vec<(u64, u64)>,
    /// Total publishers in the run (the step rate is split evenly).
    pub publishers: usize,
    /// Options.
    pub opts: Arc<RunOpts>,
    /// Worker-wide counters.
    pub shared: Arc<Shared>,
    /// Step commands; `None` before the first.
    pub steps: watch::Receiver<Option<StepCmd>>,
    /// permessage-deflate as this connection agreed to it.
    pub deflate: Option<DeflateParams>,
}

/// Publishes on every step until the step channel closes.
pub async fn run_publisher(mut ctx: PubCtx, writer: WsWriter) {
    let mut seq: u64 = 0;
    // Reused buffers: the payload, one publish body (and compressed), and the batch of frames.
    let (mut text, mut body, mut packed, mut batch) = (String::new(), Vec::new(), Vec::new(), Vec::new());
    let opts = ctx.opts.clone();
    let mut shaper = ShapeWriter::new(
        opts.payload_shape,
        opts.payload_bytes,
        opts.protocol.shape_encoding(),
        ctx.spec.id,
    );
    let level = opts.deflate_publish_level;
    let mut deflater = ctx.deflate.filter(|_| level > 0).and_then(|d| Deflater::new(&d, level));
    while ctx.steps.changed().await.is_ok() {
        let Some(cmd) = *ctx.steps.borrow_and_update() else {
            continue;
        };
        let rate = cmd.rate / ctx.publishers.max(1) as f64;
        if rate <= 0.0 || ctx.spec.topics.is_empty() {
            continue;
        }
        // Stagger publishers over one interval so they do not fire in lockstep.
        let offset = (ctx.spec.id as usize % ctx.publishers.max(1)) as f64 / ctx.publishers.max(1) as f64;
        let start_ns = cmd.start_ns + (offset * 1e9 / rate) as u64;
        let sched = Schedule {
            start_ns,
            rate,
            end_ns: cmd.end_ns,
        };
        let total = sched.total();
        let deadline = cmd.end_ns + (cmd.report_ns.saturating_sub(cmd.end_ns)) / 2;
        let (mut expected, mut expected_slow, mut errors) = (0u64, 0u64, 0u64);
        let mut i = 0u64;
        tokio::time::sleep_until(instant_at(sched.start_ns)).await;
        while i < total {
            let now = now_ns();
            if now > deadline {
                break;
            }
            let due = sched.due_until(now).min(i + MAX_BATCH);
            let first = i;
            batch.clear();
            while i < due {
                let k = (seq % ctx.spec.topics.len() as u64) as usize;
                let stamp = Stamp {
                    publisher: ctx.spec.id,
                    step: cmd.index,
                    seq,
                    intended_ns: sched.intended(i),
                };
                let topic = &ctx.spec.topics[k];
                body.clear();
                let is_text = match &mut shaper {
                    Some(w) => opts.protocol.encode_publish_shaped(&mut body, topic, w, &stamp),
                    None => {
                        text.clear();
                        payload::encode(&mut text, &stamp, opts.payload_bytes);
                        opts.protocol.encode_publish(&mut body, topic, &text)
                    }
                };
                let opcode = if is_text { OP_TEXT } else { OP_BINARY };
                let mask = Some(rand::random());
                match &mut deflater {
                    Some(d) => {
                        packed.clear();
                        d.compress(&body, &mut packed);
                        frame::encode_compressed_frame(&mut batch, opcode, true, &packed, mask);
                    }
                    None => frame::encode_frame(&mut batch, opcode, true, &body, mask),
                }
                expected += ctx.fanout[k].0;
                expected_slow += ctx.fanout[k].1;
                seq += 1;
                i += 1;
            }
            if writer.send_raw_bytes(&batch).await.is_err() {
                errors += 1;
                break;
            }
            ctx.shared.sent.fetch_add(i - first, Ordering::Relaxed);
            if i < total {
                if sched.due_until(now_ns()) > i {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep_until(instant_at(sched.intended(i))).await;
                }
            }
        }
        ctx.shared.with_step(cmd.index, |c| {
            c.intended += total;
            c.sent += i;
            c.expected += expected;
            c.expected_slow += expected_slow;
            c.errors += errors;
        });
    }
}
