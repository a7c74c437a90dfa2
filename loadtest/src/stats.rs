//! Delivery accounting: duplicate/reorder detection per (subscriber,
//! publisher) pair, per-step counters with a latency histogram, and merging
//! them across connections and worker processes.

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Bits of history kept per pair for duplicate detection.
const WINDOW: u64 = 512;
const WORDS: usize = (WINDOW / 64) as usize;

/// How one received sequence number relates to the ones seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Newer than anything seen: in order.
    InOrder,
    /// Older than the newest seen but not seen before: arrived out of order.
    Reordered,
    /// Seen before.
    Duplicate,
}

/// Tracks the sequence numbers one subscriber got from one publisher with
/// O(1) memory: the newest seq plus a bitmap of the previous 512. A seq older
/// than the window counts as reordered (it cannot be checked for duplicates).
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    max: Option<u64>,
    /// Bit `d` set: seq `max - d` was seen.
    bits: [u64; WORDS],
}

impl SeqTracker {
    /// Records `seq` and classifies it.
    pub fn observe(&mut self, seq: u64) -> Observation {
        let Some(max) = self.max else {
            self.max = Some(seq);
            self.bits = [0; WORDS];
            self.bits[0] = 1;
            return Observation::InOrder;
        };
        if seq > max {
            self.shift(seq - max);
            self.bits[0] |= 1;
            self.max = Some(seq);
            return Observation::InOrder;
        }
        let d = max - seq;
        if d >= WINDOW {
            return Observation::Reordered;
        }
        let (w, b) = ((d / 64) as usize, d % 64);
        if self.bits[w] & (1 << b) != 0 {
            Observation::Duplicate
        } else {
            self.bits[w] |= 1 << b;
            Observation::Reordered
        }
    }

    /// Shifts the window by `n` positions toward "older".
    fn shift(&mut self, n: u64) {
        if n >= WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let (words, bits) = ((n / 64) as usize, n % 64);
        for i in (0..WORDS).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.bits[s] << bits);
            let lo = match src.and_then(|s| s.checked_sub(1)) {
                Some(s) if bits > 0 => self.bits[s] >> (64 - bits),
                _ => 0,
            };
            self.bits[i] = hi | lo;
        }
    }
}

/// A fresh latency histogram in nanoseconds (1 µs .. 1 h, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Counters of one rate step (from one connection, one worker, or merged).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepCounters {
    /// Messages the schedule intended to publish.
    pub intended: u64,
    /// Messages actually published.
    pub sent: u64,
    /// Deliveries expected to the measured (reading) subscribers.
    pub expected: u64,
    /// Distinct messages received by measured subscribers.
    pub received: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Messages that arrived after a newer one from the same publisher.
    pub reordered: u64,
    /// Deliveries expected to subscribers that stopped reading (`slow`).
    pub expected_slow: u64,
    /// Messages those subscribers still got (before they stopped).
    pub received_slow: u64,
    /// `gap` notices received.
    pub gaps: u64,
    /// Messages lost according to `gap` notices (sum of `to - from + 1`).
    pub gap_messages: u64,
    /// `error` messages received and send/receive failures.
    pub errors: u64,
    /// Frames that were not ours (foreign payloads).
    pub foreign: u64,
    /// Reconnects performed (reconnect scenario).
    pub reconnects: u64,
    /// End-to-end latency (receive time - intended send time), ns.
    #[serde(with = "hist_serde")]
    pub latency: Histogram<u64>,
}

impl Default for StepCounters {
    fn default() -> Self {
        StepCounters {
            intended: 0,
            sent: 0,
            expected: 0,
            received: 0,
            duplicates: 0,
            reordered: 0,
            expected_slow: 0,
            received_slow: 0,
            gaps: 0,
            gap_messages: 0,
            errors: 0,
            foreign: 0,
            reconnects: 0,
            latency: new_histogram(),
        }
    }
}

impl StepCounters {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &StepCounters) {
        self.intended += other.intended;
        self.sent += other.sent;
        self.expected += other.expected;
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.expected_slow += other.expected_slow;
        self.received_slow += other.received_slow;
        self.gaps += other.gaps;
        self.gap_messages += other.gap_messages;
        self.errors += other.errors;
        self.foreign += other.foreign;
        self.reconnects += other.reconnects;
        self.latency.add(&other.latency).expect("same histogram bounds");
    }

    /// Records one received message classified by a [`SeqTracker`].
    pub fn record(&mut self, obs: Observation, latency_ns: u64) {
        match obs {
            Observation::Duplicate => self.duplicates += 1,
            other => {
                self.received += 1;
                if other == Observation::Reordered {
                    self.reordered += 1;
                }
                self.latency.saturating_record(latency_ns.max(1_000));
            }
        }
    }

    /// Expected deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Fraction of expected deliveries that arrived (1.0 when none expected).
    pub fn delivered_fraction(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.received.min(self.expected) as f64 / self.expected as f64
        }
    }
}

/// Serde for histograms: hdrhistogram V2 serialization, base64-encoded.
pub(crate) mod hist_serde {
    use super::*;
    use base64::Engine;

    /// Serializes as base64 of the V2 encoding.
    pub fn serialize<S: serde::Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut buf)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(buf))
    }

    /// Deserializes from base64 of the V2 encoding.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(serde::de::Error::custom)?;
        let mut out = new_histogram();
        out.add(&h).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Observation::*;

    #[test]
    fn tracker_classifies_order_dups_and_reorders() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(0), InOrder);
        assert_eq!(t.observe(1), InOrder);
        assert_eq!(t.observe(1), Duplicate);
        assert_eq!(t.observe(5), InOrder); // 2..4 missing so far
        assert_eq!(t.observe(3), Reordered);
        assert_eq!(t.observe(3), Duplicate);
        assert_eq!(t.observe(0), Duplicate);
        assert_eq!(t.observe(200), InOrder);
        assert_eq!(t.observe(4), Reordered);
        assert_eq!(t.observe(5), Duplicate); // still inside the 512 window across words
        assert_eq!(t.observe(2000), InOrder);
        assert_eq!(t.observe(5), Reordered); // out of window: assumed fresh
        assert_eq!(t.observe(2000 - 511), Reordered);
        assert_eq!(t.observe(2000 - 511), Duplicate);
    }

    #[test]
    fn counters_loss_dup_reorder() {
        let mut t = SeqTracker::default();
        let mut c = StepCounters {
            expected: 10,
            ..StepCounters::default()
        };
        for seq in [0, 1, 2, 4, 3, 3, 7, 8, 9] {
            c.record(t.observe(seq), 5_000_000);
        }
        assert_eq!((c.received, c.duplicates, c.reordered), (8, 1, 1));
        assert_eq!(c.lost(), 2);
        assert!((c.delivered_fraction() - 0.8).abs() < 1e-9);
        assert_eq!(c.latency.len(), 8);
    }

    #[test]
    fn counters_merge_and_serialize() {
        let mut a = StepCounters {
            expected: 3,
            sent: 3,
            ..StepCounters::default()
        };
        a.record(InOrder, 1_000_000);
        let mut b = StepCounters {
            expected: 2,
            ..StepCounters::default()
        };
        b.record(InOrder, 9_000_000);
        let json = serde_json::to_string(&b).unwrap();
        let b2: StepCounters = serde_json::from_str(&json).unwrap();
        a.merge(&b2);
        assert_eq!((a.expected, a.received, a.sent), (5, 2, 3));
        assert_eq!(a.latency.len(), 2);
        assert!(a.latency.max() >= 8_990_000);
    }
}
