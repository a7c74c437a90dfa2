//! Per-connection guards the WebSocket reader waits on or checks: the token
//! expiry, and how many rate-limited publishes in a row close a connection.
//! (The publish budget itself is the publish path's: `crate::publish`.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Rate-limit refusals in a row after which the connection is closed (1008).
pub const MAX_RATE_LIMITED_IN_A_ROW: u32 = 5;

/// When a connection's token expires (seconds since the epoch plus leeway; 0: never),
/// shared between the session that refreshes it and the reader that waits for it.
#[derive(Debug, Default)]
pub struct Expiry {
    at: AtomicU64,
    changed: Notify,
}

impl Expiry {
    /// Sets (or clears, with `None`) the expiry and wakes the waiter to re-arm.
    pub fn set(&self, at: Option<u64>) {
        self.at.store(at.unwrap_or(0), Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// When the token expires (Unix seconds), if it does.
    pub fn at(&self) -> Option<u64> {
        Some(self.at.load(Ordering::Relaxed)).filter(|at| *at > 0)
    }

    /// Resolves once the expiry passes without a refresh.
    pub async fn expired(&self) {
        loop {
            // Registered before reading, so a refresh between the two is not missed.
            let changed = self.changed.notified();
            let at = self.at.load(Ordering::Relaxed);
            if at == 0 {
                changed.await;
                continue;
            }
            let left = at as f64 - crate::clock::now_secs_f64();
            if left <= 0.0 {
                return;
            }
            // Boxed: only connections with an expiring token need a timer, and inline it
            // would sit in every connection's future.
            tokio::select! {
                _ = Box::pin(tokio::time::sleep(Duration::from_secs_f64(left))) => {}
                _ = changed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expiry_waits_and_a_refresh_moves_it() {
        let e = std::sync::Arc::new(Expiry::default());
        let now = crate::clock::now_secs();
        e.set(Some(now + 3600));
        let waiting = tokio::time::timeout(Duration::from_millis(50), e.expired()).await;
        assert!(waiting.is_err());
        e.set(Some(now - 1));
        tokio::time::timeout(Duration::from_secs(1), e.expired()).await.unwrap();
    }
}
