//! The clocks: wall time for what travels or is compared across processes
//! (a message's `ts`, history ttl, token expiry), and a monotonic clock for
//! what only this process measures (keepalive deadlines). One leaf module,
//! so no layer reaches into another for the time.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> u64 {
    since_unix_epoch().map_or(0, |d| d.as_millis() as u64)
}

/// Unix time in seconds (0 if the system clock is before 1970).
pub fn now_secs() -> u64 {
    since_unix_epoch().map_or(0, |d| d.as_secs())
}

/// Unix time in seconds, with the fraction (0.0 if the system clock is before 1970).
pub fn now_secs_f64() -> f64 {
    since_unix_epoch().map_or(0.0, |d| d.as_secs_f64())
}

/// Unix time in nanoseconds, truncated to 64 bits (0 if the system clock is before 1970).
pub fn now_nanos() -> u64 {
    since_unix_epoch().map_or(0, |d| d.as_nanos() as u64)
}

/// Milliseconds on a monotonic clock that starts with the process: unaffected by
/// changes to the system clock, meaningless outside this process.
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn since_unix_epoch() -> Option<std::time::Duration> {
    SystemTime::now().duration_since(UNIX_EPOCH).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clocks_agree_and_the_monotonic_one_never_goes_back() {
        let (ms, secs) = (now_ms(), now_secs());
        assert!(ms / 1000 >= secs && ms / 1000 - secs <= 1);
        assert!(ms > 1_600_000_000_000, "after 2020");
        let a = monotonic_ms();
        assert!(monotonic_ms() >= a);
    }
}
