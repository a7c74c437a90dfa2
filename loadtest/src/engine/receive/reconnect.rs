//! Reconnecting a subscriber, in tokio, then handing it back to its receive
//! thread: at once when a storm says so, with exponential backoff and full
//! jitter when the broker dropped it (so a restarted broker is not hit by
//! every client in the same millisecond, as browsers behave). It resumes
//! every topic with `since` and the topic's epoch.

use super::conn::Conn;
use super::remote::{Cmd, Remote};
use crate::client::Message;
use crate::engine::messages::RunOpts;
use crate::engine::open::open;
use crate::engine::subscriber::Subscriber;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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

/// What every reconnect needs.
pub struct Rejoin {
    /// Options (URL, protocol, timeouts).
    pub opts: Arc<RunOpts>,
    /// Becomes true when the run ends: stop trying.
    pub stop: watch::Receiver<bool>,
}

/// Reconnects `conn` and sends it back through `back`. `dropped`: the
/// broker (not a storm) ended it, so wait a jittered moment first.
pub(super) async fn rejoin(conn: Box<Conn>, dropped: bool, ctx: Arc<Rejoin>, back: Remote) {
    let (socket, writer, mut sub) = conn.into_parts();
    if !dropped {
        let _ = writer.close(1000, "reconnect").await;
    }
    drop((socket, writer));
    let mut stop = ctx.stop.clone();
    let (mut attempt, mut wait) = (0u32, dropped);
    loop {
        if wait {
            tokio::select! {
                _ = tokio::time::sleep(backoff(attempt)) => {}
                _ = stop.changed() => return,
            }
        }
        match reopen(sub, &ctx.opts).await {
            Ok((conn, pending)) => {
                back.send(Cmd::Add(conn, pending));
                return;
            }
            Err(back_again) => sub = back_again,
        }
        (attempt, wait) = (attempt + 1, true);
        sub.owed_errors += 1;
        if *stop.borrow() {
            return;
        }
    }
}

/// One attempt: opens, resuming after `sub.last_seq`, and detaches; gives
/// `sub` back when it fails.
async fn reopen(mut sub: Subscriber, opts: &RunOpts) -> Result<(Box<Conn>, Vec<Message>), Subscriber> {
    let Ok(opened) = open(&sub.spec, opts, sub.index, sub.local, &sub.last_seq).await else {
        return Err(sub);
    };
    let Ok(detached) = opened.reader.detach(opened.writer) else {
        return Err(sub);
    };
    // The ack says where each topic stands now; where the broker could not
    // resume (it restarted), the seqs start again from there.
    for (topic, pos) in &opened.positions {
        match sub.last_seq.get_mut(topic) {
            Some(last) if !opened.unrecovered.contains(topic) => last.epoch = pos.epoch.clone(),
            _ => {
                sub.last_seq.insert(topic.clone(), pos.clone());
            }
        }
    }
    sub.owed_reconnects += 1;
    Ok((Box::new(Conn::new(detached, sub)), opened.pending))
}
