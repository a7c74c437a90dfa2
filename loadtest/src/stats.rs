//! Delivery accounting: duplicate/reorder detection per (subscriber,
//! publisher) pair, per-step counters with a latency histogram, one
//! thread's counters by step ([`Tally`]), and merging them across threads,
//! connections and worker processes.

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
/// 72 bytes, so it shares the receive path's cache lines with its connection.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// The newest seq + 1 (0: nothing seen yet).
    top: u64,
    /// Bit `d` set: seq `top - 1 - d` was seen.
    bits: [u64; WORDS],
}

impl SeqTracker {
    /// Records `seq` and classifies it.
    pub fn observe(&mut self, seq: u64) -> Observation {
        if self.top == 0 {
            self.top = seq.saturating_add(1);
            self.bits = [0; WORDS];
            self.bits[0] = 1;
            return Observation::InOrder;
        }
        let max = self.top - 1;
        if seq > max {
            self.shift(seq - max);
            self.bits[0] |= 1;
            self.top = seq.saturating_add(1);
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

/// One subscriber's [`SeqTracker`]s, one per publisher. The first
/// publisher heard is kept inline (fan-out has one publisher: no pointer to
/// chase); further ones are found by publisher id through a slot table (ids
/// are dense from 0; a subscriber may hear only a few), never by hashing.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct SeqTrackers {
    /// Ids at or above this are not in the run (a foreign payload).
    publishers: u32,
    /// The inline tracker's publisher (`u32::MAX`: none yet).
    first_id: u32,
    first: SeqTracker,
    /// Publisher id → index in `more` + 1 (0: none yet).
    slots: Vec<u32>,
    more: Vec<SeqTracker>,
}

impl SeqTrackers {
    /// Bytes from the start that one message from the first publisher touches.
    pub const HOT_BYTES: usize = std::mem::offset_of!(SeqTrackers, slots);

    /// Trackers for a run with `publishers` publishers (ids `0..publishers`).
    pub fn new(publishers: usize) -> SeqTrackers {
        SeqTrackers {
            publishers: u32::try_from(publishers).unwrap_or(u32::MAX - 1),
            first_id: u32::MAX,
            first: SeqTracker::default(),
            slots: Vec::new(),
            more: Vec::new(),
        }
    }

    /// Records `seq` from `publisher`; `None` when no such publisher is in the run.
    pub fn observe(&mut self, publisher: u32, seq: u64) -> Option<Observation> {
        if publisher == self.first_id {
            return Some(self.first.observe(seq));
        }
        if publisher >= self.publishers {
            return None;
        }
        if self.first_id == u32::MAX {
            self.first_id = publisher;
            return Some(self.first.observe(seq));
        }
        let id = publisher as usize;
        if id >= self.slots.len() {
            self.slots.resize(id + 1, 0);
        }
        if self.slots[id] == 0 {
            self.more.push(SeqTracker::default());
            self.slots[id] = self.more.len() as u32;
        }
        Some(self.more[self.slots[id] as usize - 1].observe(seq))
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
    /// Bytes measured subscribers read from their sockets after the upgrade
    /// response: frame headers and payloads as sent (compressed or not).
    #[serde(default)]
    pub wire_bytes: u64,
    /// Bytes of the whole messages they received, inflated: what the
    /// application sees (frame headers excluded).
    #[serde(default)]
    pub message_bytes: u64,
    /// TLS records measured subscribers read (`wss://`): how many frames
    /// the server puts in one record.
    #[serde(default)]
    pub tls_records: u64,
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
            wire_bytes: 0,
            message_bytes: 0,
            tls_records: 0,
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
        self.wire_bytes += other.wire_bytes;
        self.message_bytes += other.message_bytes;
        self.tls_records += other.tls_records;
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

    /// Wire bytes per distinct delivery (`None` before any delivery).
    pub fn wire_bytes_per_delivery(&self) -> Option<f64> {
        (self.received > 0).then(|| self.wire_bytes as f64 / self.received as f64)
    }

    /// Inflated message bytes per distinct delivery (`None` before any delivery).
    pub fn message_bytes_per_delivery(&self) -> Option<f64> {
        (self.received > 0).then(|| self.message_bytes as f64 / self.received as f64)
    }

    /// TLS records per distinct delivery (`None` without records or deliveries).
    pub fn tls_records_per_delivery(&self) -> Option<f64> {
        (self.received > 0 && self.tls_records > 0).then(|| self.tls_records as f64 / self.received as f64)
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

/// One thread's (or one worker's) counters by step, plus the step now
/// running, where gap notices, errors and bytes are counted.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    steps: Vec<StepCounters>,
    current: usize,
    /// Distinct messages received in all steps (for the progress line).
    pub received: u64,
    /// Wire bytes of the current step not yet in its counters: a plain add
    /// per read, folded in when the step is read or the next one begins.
    pub wire_bytes: u64,
    /// Message bytes of the current step, likewise (an add per message).
    pub message_bytes: u64,
    /// TLS records of the current step, likewise (an add per read).
    pub tls_records: u64,
}

impl Tally {
    /// Step `index` starts: it gets counters, and becomes the current step.
    /// The bytes counted so far go to the step that was current (before
    /// the first step: nowhere).
    pub fn begin(&mut self, index: u32) {
        let (wire, message, records) = (
            std::mem::take(&mut self.wire_bytes),
            std::mem::take(&mut self.message_bytes),
            std::mem::take(&mut self.tls_records),
        );
        if let Some(c) = self.steps.get_mut(self.current) {
            c.wire_bytes += wire;
            c.message_bytes += message;
            c.tls_records += records;
        }
        let index = index as usize;
        while self.steps.len() <= index {
            self.steps.push(StepCounters::default());
        }
        self.current = index;
    }

    /// The counters of step `index`, if it has started.
    pub fn step(&mut self, index: u32) -> Option<&mut StepCounters> {
        self.steps.get_mut(index as usize)
    }

    /// The counters of the current step, if one has started.
    pub fn current(&mut self) -> Option<&mut StepCounters> {
        self.steps.get_mut(self.current)
    }

    /// Records a message of step `step` (ignored before that step started).
    pub fn record(&mut self, step: u32, obs: Observation, latency_ns: u64) {
        if obs != Observation::Duplicate {
            self.received += 1;
        }
        if let Some(c) = self.steps.get_mut(step as usize) {
            c.record(obs, latency_ns);
        }
    }

    /// A copy of step `index`'s counters (empty if it never started).
    pub fn snapshot(&self, index: u32) -> StepCounters {
        let mut c = self.steps.get(index as usize).cloned().unwrap_or_default();
        if index as usize == self.current && !self.steps.is_empty() {
            c.wire_bytes += self.wire_bytes;
            c.message_bytes += self.message_bytes;
            c.tls_records += self.tls_records;
        }
        c
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
    fn trackers_are_per_publisher_and_bounded() {
        let mut t = SeqTrackers::new(10);
        assert_eq!(t.observe(7, 0), Some(InOrder));
        assert_eq!(t.observe(3, 0), Some(InOrder));
        assert_eq!(t.observe(7, 0), Some(Duplicate));
        assert_eq!(t.observe(3, 2), Some(InOrder));
        assert_eq!(t.observe(3, 1), Some(Reordered));
        assert_eq!(t.observe(10, 0), None);
        assert_eq!(t.observe(u32::MAX, 0), None);
        assert_eq!((t.first_id, t.more.len()), (7, 1));
    }

    #[test]
    fn tally_counts_by_step_and_current() {
        let mut t = Tally::default();
        t.record(0, InOrder, 5_000);
        assert_eq!((t.received, t.snapshot(0).received), (1, 0));
        t.begin(1);
        t.record(1, InOrder, 5_000);
        t.record(1, Duplicate, 5_000);
        t.current().unwrap().gaps += 1;
        let s = t.snapshot(1);
        assert_eq!((s.received, s.duplicates, s.gaps, t.received), (1, 1, 1, 2));
        assert_eq!(t.snapshot(0).received, 0);
        // Bytes go to the step current when they were counted.
        t.wire_bytes += 100;
        t.message_bytes += 80;
        assert_eq!((t.snapshot(1).wire_bytes, t.snapshot(1).message_bytes), (100, 80));
        t.begin(2);
        t.wire_bytes += 7;
        assert_eq!((t.snapshot(1).wire_bytes, t.snapshot(2).wire_bytes), (100, 7));
        assert_eq!(t.snapshot(0).wire_bytes, 0);
        let mut before = Tally::default();
        before.wire_bytes += 5;
        before.begin(0);
        assert_eq!(
            before.snapshot(0).wire_bytes,
            0,
            "bytes before the first step count nowhere"
        );
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
            wire_bytes: 300,
            message_bytes: 1000,
            ..StepCounters::default()
        };
        b.record(InOrder, 9_000_000);
        let json = serde_json::to_string(&b).unwrap();
        let b2: StepCounters = serde_json::from_str(&json).unwrap();
        a.merge(&b2);
        assert_eq!((a.expected, a.received, a.sent), (5, 2, 3));
        assert_eq!((a.wire_bytes, a.message_bytes), (300, 1000));
        assert_eq!(a.wire_bytes_per_delivery(), Some(150.0));
        assert_eq!(a.message_bytes_per_delivery(), Some(500.0));
        assert_eq!(StepCounters::default().wire_bytes_per_delivery(), None);
        assert_eq!(a.latency.len(), 2);
        assert!(a.latency.max() >= 8_990_000);
    }
}
