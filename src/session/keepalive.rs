//! The keepalive sweep: one task pings every WebSocket each `ping_interval`
//! and closes one whose client sent nothing for `idle_timeout` (1001,
//! `idle timeout`), for all connections at once rather than a timer in each.
//!
//! Pings are control frames, outside every queue limit, so a subscriber with
//! a full queue still gets them; a client that stopped reading altogether
//! goes silent too (it stops answering), and its close aborts a write
//! blocked on its full socket.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::monotonic_ms;
use crate::config::ServerConfig;
use crate::connections::Listed;
use crate::hub::Hub;
use crate::protocol::frame::{self, OpCode};

/// Shortest and longest time between two sweeps.
const MIN_TICK: Duration = Duration::from_millis(10);
const MAX_TICK: Duration = Duration::from_secs(1);

/// Sweeps `hub`'s connections until aborted.
pub async fn run(hub: Arc<Hub>) {
    loop {
        tokio::time::sleep(tick(&hub.settings().server)).await;
        let now = monotonic_ms();
        hub.connections.for_each(|listed| check(listed, now));
    }
}

/// A quarter of the shorter period, so pings and closes are late by that much at most.
fn tick(server: &ServerConfig) -> Duration {
    let shortest = [server.ping_interval, server.idle_timeout]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min();
    shortest.map_or(MAX_TICK, |d| (d / 4).clamp(MIN_TICK, MAX_TICK))
}

/// Pings `listed` if a ping is due, or closes it if its client has been silent too long;
/// returns the storage of a queue that was idle since the last sweep.
fn check(listed: &Listed, now: u64) {
    listed.queue.trim_idle();
    let k = &listed.keepalive;
    let ping = k.ping_ms.load(Ordering::Relaxed);
    // Without pings a quiet subscriber is indistinguishable from a dead one: no idle check.
    if ping == 0 {
        return;
    }
    let activity = k.activity.load(Ordering::Relaxed);
    if activity != k.seen.load(Ordering::Relaxed) {
        k.seen.store(activity, Ordering::Relaxed);
        k.quiet_since.store(now, Ordering::Relaxed);
    } else {
        let idle = k.idle_ms.load(Ordering::Relaxed);
        if idle > 0 && now.saturating_sub(k.quiet_since.load(Ordering::Relaxed)) >= idle {
            listed.queue.close_idle(frame::close(1001, "idle timeout"));
            return;
        }
    }
    if now >= k.next_ping.load(Ordering::Relaxed) {
        k.next_ping.store(now + ping, Ordering::Relaxed);
        listed.queue.push_control(frame::encode(OpCode::Ping, b""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::{ConnectionTable, Peer};
    use crate::protocol::{SessionId, Wire};
    use crate::queue::{Outgoing, QueueLimits, SendQueue, TaskTurn};

    fn listed() -> Arc<Listed> {
        let limits = QueueLimits {
            max_messages: 10,
            max_bytes: 1 << 20,
        };
        let q = Arc::new(SendQueue::new(SessionId(1), Wire::Json, true, limits));
        let peer = Peer {
            remote: None,
            transport: crate::metrics::Transport::Ws,
        };
        ConnectionTable::new().insert(SessionId(1), peer, q)
    }

    fn turn(l: &Listed) -> TaskTurn {
        l.queue.take_for_task(&mut Outgoing::default())
    }

    #[test]
    fn pings_when_due_and_closes_after_the_idle_timeout() {
        let l = listed();
        l.keepalive
            .start(Duration::from_millis(100), Duration::from_millis(350));
        let t0 = l.keepalive.quiet_since.load(Ordering::Relaxed);
        check(&l, t0 + 50);
        assert!(matches!(turn(&l), TaskTurn::Wait), "no ping before it is due");
        check(&l, t0 + 100);
        assert!(matches!(turn(&l), TaskTurn::Write { .. }), "a ping when due");
        l.keepalive.record_activity();
        check(&l, t0 + 300);
        check(&l, t0 + 600);
        assert!(!l.queue.is_closed(), "activity at 300 moved the idle clock");
        check(&l, t0 + 650);
        assert!(l.queue.is_closed(), "350 ms of silence closes");
        assert!(matches!(turn(&l), TaskTurn::Close { idle: true, .. }));
    }

    #[test]
    fn without_pings_nothing_is_checked() {
        let l = listed();
        l.keepalive.start(Duration::ZERO, Duration::from_millis(10));
        check(&l, u64::MAX / 2);
        assert!(!l.queue.is_closed());
    }

    #[test]
    fn the_sweep_runs_a_quarter_of_the_shortest_period() {
        let mut s = crate::config::Config::default().server;
        s.ping_interval = Duration::from_millis(100);
        s.idle_timeout = Duration::from_millis(350);
        assert_eq!(tick(&s), Duration::from_millis(25));
        s.ping_interval = Duration::from_secs(20);
        s.idle_timeout = Duration::from_secs(60);
        assert_eq!(tick(&s), MAX_TICK);
        s.ping_interval = Duration::ZERO;
        s.idle_timeout = Duration::ZERO;
        assert_eq!(tick(&s), MAX_TICK);
    }
}
