//! A topic's publish rate, counted under the topic lock the publish already
//! holds, so the hot path gains no shared atomic.

/// Publishes per second, measured over whole windows of at least one second.
#[derive(Debug, Default, Clone)]
pub struct Rate {
    /// When the current window opened (Unix ms).
    window_start_ms: u64,
    /// Publishes in the current window.
    in_window: u64,
    /// The rate of the last closed window.
    last: f64,
}

/// A window closes once it is this old.
const WINDOW_MS: u64 = 1000;

impl Rate {
    /// Counts one publish at `now_ms`.
    pub fn record(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.window_start_ms) >= WINDOW_MS {
            self.close(now_ms);
        }
        self.in_window += 1;
    }

    /// Publishes per second at `now_ms`: the current window if it is old enough, else the last.
    pub fn per_second(&self, now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(self.window_start_ms);
        if elapsed >= WINDOW_MS {
            self.in_window as f64 * 1000.0 / elapsed as f64
        } else {
            self.last
        }
    }

    fn close(&mut self, now_ms: u64) {
        self.last = self.per_second(now_ms);
        self.window_start_ms = now_ms;
        self.in_window = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_second_and_decays_when_quiet() {
        let mut r = Rate::default();
        r.record(10_000);
        for i in 0..10 {
            r.record(10_000 + i * 100);
        }
        assert_eq!(r.per_second(10_500), 0.0, "the first window is still open");
        assert!((r.per_second(11_000) - 11.0).abs() < 1e-9);
        r.record(11_000);
        assert!((r.per_second(11_500) - 11.0).abs() < 1e-9);
        assert!(r.per_second(20_000) < 0.2, "a quiet topic's rate falls");
    }
}
