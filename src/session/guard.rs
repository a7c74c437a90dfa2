//! Per-connection guards: the publish token bucket and the token expiry
//! the WebSocket reader waits on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::error::{ErrorCode, RequestError};

/// Rate-limit refusals in a row after which the connection is closed (1008).
pub const MAX_RATE_LIMITED_IN_A_ROW: u32 = 5;

/// The error for a publish over the connection's rate.
pub fn rate_limited(rate: u32) -> RequestError {
    RequestError::new(
        ErrorCode::RateLimited,
        format!("over {rate} publishes per second (limits.publish_rate_per_connection); slow down"),
    )
}

/// A token bucket of `rate` publishes per second, holding one second's worth.
#[derive(Debug)]
pub struct PublishBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
    /// Refusals since the last accepted publish.
    pub refused_in_a_row: u32,
}

impl PublishBucket {
    /// A full bucket; `rate` 0 means no limit.
    pub fn new(rate: u32) -> Self {
        PublishBucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
            refused_in_a_row: 0,
        }
    }

    /// Publishes per second allowed (0: no limit).
    pub fn rate(&self) -> u32 {
        self.rate as u32
    }

    /// Takes one token, or says the publish is over the rate.
    pub fn take(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row += 1;
            false
        }
    }
}

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
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let left = at as f64 - now;
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

    #[test]
    fn the_bucket_allows_its_rate_then_refuses() {
        let mut b = PublishBucket::new(3);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
        assert_eq!(b.refused_in_a_row, 1);
        let mut free = PublishBucket::new(0);
        assert!((0..1000).all(|_| free.take()));
    }

    #[tokio::test]
    async fn expiry_waits_and_a_refresh_moves_it() {
        let e = std::sync::Arc::new(Expiry::default());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        e.set(Some(now + 3600));
        let waiting = tokio::time::timeout(Duration::from_millis(50), e.expired()).await;
        assert!(waiting.is_err());
        e.set(Some(now - 1));
        tokio::time::timeout(Duration::from_secs(1), e.expired()).await.unwrap();
    }
}
