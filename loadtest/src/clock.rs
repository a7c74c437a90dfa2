//! Time base shared by every worker process: CLOCK_REALTIME nanoseconds
//! (all workers run on one machine, so they read the same clock), and the
//! fixed-rate publish schedule.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in CLOCK_REALTIME nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A `tokio` instant for a wall-clock time in nanoseconds.
pub fn instant_at(ns: u64) -> tokio::time::Instant {
    let now = now_ns();
    let base = tokio::time::Instant::now();
    if ns >= now {
        base + Duration::from_nanos(ns - now)
    } else {
        base.checked_sub(Duration::from_nanos(now - ns)).unwrap_or(base)
    }
}

/// A fixed-rate schedule: message `i` is *intended* to leave at
/// `start_ns + i * 1e9 / rate`, whatever actually happens. Latency is
/// measured from that intended time, so a stalled sender cannot hide its
/// own stall (no coordinated omission).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Time of message 0.
    pub start_ns: u64,
    /// Messages per second (may be fractional, must be positive).
    pub rate: f64,
    /// Schedule end (exclusive): messages intended at or after it are not sent.
    pub end_ns: u64,
}

impl Schedule {
    /// Intended send time of message `i`.
    pub fn intended(&self, i: u64) -> u64 {
        self.start_ns + (i as f64 * 1e9 / self.rate) as u64
    }

    /// Total number of messages in the schedule.
    pub fn total(&self) -> u64 {
        if self.end_ns <= self.start_ns || self.rate <= 0.0 {
            return 0;
        }
        let span = (self.end_ns - self.start_ns) as f64 / 1e9;
        let n = (span * self.rate).ceil() as u64;
        // Exclude a message landing exactly on the end.
        if n > 0 && self.intended(n - 1) >= self.end_ns {
            n - 1
        } else {
            n
        }
    }

    /// Index one past the last message due at `now_ns` (capped at `total`).
    pub fn due_until(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let n = ((now_ns - self.start_ns) as f64 * self.rate / 1e9).floor() as u64 + 1;
        n.min(self.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_counts_and_due() {
        let s = Schedule {
            start_ns: 1_000,
            rate: 1000.0,
            end_ns: 1_000 + 1_000_000_000,
        };
        assert_eq!(s.total(), 1000);
        assert_eq!(s.intended(0), 1_000);
        assert_eq!(s.intended(10), 1_000 + 10_000_000);
        assert_eq!(s.due_until(0), 0);
        assert_eq!(s.due_until(1_000), 1);
        assert_eq!(s.due_until(1_000 + 10_000_000), 11);
        assert_eq!(s.due_until(u64::MAX / 2), 1000);
        let odd = Schedule {
            start_ns: 0,
            rate: 3.0,
            end_ns: 1_000_000_000,
        };
        assert_eq!(odd.total(), 3);
    }
}
