//! What a reading connection measures: decodes payloads, classifies them
//! per publisher (in order, reordered, duplicate), records latency from the
//! intended send time, counts gap notices, errors and foreign frames, and
//! remembers each topic's last seq for a reconnect's `since`. Everything is
//! counted into the [`Tally`] of the receive thread that owns the
//! connection, so nothing here is shared.

use super::open::TopicPos;
use crate::payload;
use crate::plan::ConnSpec;
use crate::protocol::{Incoming, Protocol};
use crate::stats::{SeqTrackers, Tally};
use std::collections::HashMap;
use std::net::IpAddr;

/// One reading connection's measurement state; it outlives the socket
/// across reconnects, so duplicates across a reconnect are caught. What
/// every message touches comes first (`repr(C)`), next to the connection's
/// own hot fields (see [`super::receive::Conn`]).
#[repr(C)]
pub struct Subscriber {
    /// Subscribed and reading: counts what arrives (others only drain).
    measured: bool,
    /// `spec.reconnects`: remember topic positions.
    reconnects: bool,
    protocol: Protocol,
    /// Its own publisher id (`u32::MAX`: none): its messages are not counted.
    own: u32,
    trackers: SeqTrackers,
    /// The connection's index in the plan (picks its server, names it for storms).
    pub index: usize,
    /// The connection's spec.
    pub spec: ConnSpec,
    /// Local address to reconnect from.
    pub local: Option<IpAddr>,
    /// Where each topic stands, for resuming after a reconnect.
    pub last_seq: HashMap<String, TopicPos>,
    /// Errors counted while away from the receive thread (failed
    /// reconnects), added to its tally when the connection comes back.
    pub owed_errors: u64,
    /// Reconnects done while away, likewise.
    pub owed_reconnects: u64,
}

impl Subscriber {
    /// Bytes from the start that the receive path touches per message.
    pub const HOT_BYTES: usize = std::mem::offset_of!(Subscriber, trackers) + SeqTrackers::HOT_BYTES;

    /// State for plan connection `index`, which starts at `positions` (from its acks).
    pub fn new(
        index: usize,
        spec: ConnSpec,
        protocol: Protocol,
        publishers: usize,
        local: Option<IpAddr>,
        positions: HashMap<String, TopicPos>,
    ) -> Subscriber {
        Subscriber {
            index,
            measured: !spec.subscribe.is_empty() && !spec.slow,
            reconnects: spec.reconnects,
            own: spec.publish.as_ref().map_or(u32::MAX, |p| p.id),
            spec,
            local,
            protocol,
            trackers: SeqTrackers::new(publishers),
            last_seq: positions,
            owed_errors: 0,
            owed_reconnects: 0,
        }
    }

    /// The wire format it speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Counts `n` bytes read from its socket (wire bytes: frame headers and
    /// payloads as sent, compressed or not), when it is measured.
    #[inline]
    pub fn count_wire(&self, tally: &mut Tally, n: u64) {
        if self.measured {
            tally.wire_bytes += n;
        }
    }

    /// Counts `n` TLS records read from its socket, when it is measured.
    #[inline]
    pub fn count_tls_records(&self, tally: &mut Tally, n: u64) {
        if self.measured {
            tally.tls_records += n;
        }
    }

    /// Counts one whole message of `len` bytes as the application sees it
    /// (inflated), when it is measured.
    #[inline]
    pub fn count_message(&self, tally: &mut Tally, len: usize) {
        if self.measured {
            tally.message_bytes += len as u64;
        }
    }

    /// Counts one classified message received at `now_ns`.
    pub fn observe(&mut self, msg: Incoming<'_>, now_ns: u64, tally: &mut Tally) {
        if !self.measured {
            return;
        }
        match msg {
            Incoming::Data { payload, topic, seq } => {
                if let (true, Some(t), Some(s)) = (self.reconnects, topic, seq) {
                    self.remember(&t, s);
                }
                match payload::decode(&payload) {
                    Ok(st) if st.publisher == self.own => {}
                    Ok(st) => match self.trackers.observe(st.publisher, st.seq) {
                        Some(obs) => tally.record(st.step, obs, now_ns.saturating_sub(st.intended_ns)),
                        None => count(tally, |c| c.foreign += 1),
                    },
                    Err(_) => count(tally, |c| c.foreign += 1),
                }
            }
            Incoming::Gap { from, to } => count(tally, |c| {
                c.gaps += 1;
                c.gap_messages += to.saturating_sub(from) + 1;
            }),
            Incoming::Error(_) => count(tally, |c| c.errors += 1),
            _ => {}
        }
    }

    fn remember(&mut self, topic: &str, seq: u64) {
        match self.last_seq.get_mut(topic) {
            Some(v) => v.seq = seq,
            None => {
                self.last_seq.insert(topic.to_string(), TopicPos { seq, epoch: None });
            }
        }
    }

    /// Adds what was counted while away from the receive thread.
    pub fn settle(&mut self, tally: &mut Tally) {
        let (errors, reconnects) = (self.owed_errors, self.owed_reconnects);
        (self.owed_errors, self.owed_reconnects) = (0, 0);
        count(tally, |c| {
            c.errors += errors;
            c.reconnects += reconnects;
        });
    }
}

/// Counts into the current step (nothing before the first step).
pub fn count(tally: &mut Tally, f: impl FnOnce(&mut crate::stats::StepCounters)) {
    if let Some(c) = tally.current() {
        f(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{encode_string, Stamp};
    use crate::plan::PubSpec;
    use std::borrow::Cow;

    fn data(publisher: u32, seq: u64) -> String {
        let st = Stamp {
            publisher,
            step: 0,
            seq,
            intended_ns: 1_000_000,
        };
        encode_string(&st, 64)
    }

    #[test]
    fn counts_by_publisher_and_skips_its_own() {
        let spec = ConnSpec {
            subscribe: vec!["t".into()],
            publish: Some(PubSpec {
                id: 1,
                topics: vec!["t".into()],
            }),
            ..ConnSpec::default()
        };
        let mut sub = Subscriber::new(0, spec, Protocol::Raw, 2, None, HashMap::new());
        let mut tally = Tally::default();
        tally.begin(0);
        for (p, s) in [(0, 0), (0, 1), (1, 0), (0, 1), (5, 0)] {
            let text = data(p, s);
            sub.observe(Protocol::Raw.parse_data(true, text.as_bytes()), 3_000_000, &mut tally);
        }
        sub.observe(Protocol::Raw.parse_data(true, b"hello"), 3_000_000, &mut tally);
        sub.observe(Incoming::Gap { from: 3, to: 5 }, 0, &mut tally);
        let c = tally.snapshot(0);
        assert_eq!((c.received, c.duplicates, c.foreign), (2, 1, 2));
        assert_eq!((c.gaps, c.gap_messages), (1, 3));
        assert_eq!(c.latency.max(), c.latency.highest_equivalent(2_000_000));
    }

    #[test]
    fn reconnecting_subscribers_remember_topic_positions() {
        let spec = ConnSpec {
            subscribe: vec!["t".into()],
            reconnects: true,
            ..ConnSpec::default()
        };
        let mut sub = Subscriber::new(0, spec, Protocol::Json, 1, None, HashMap::new());
        let mut tally = Tally::default();
        let msg = Incoming::Data {
            payload: Cow::Owned(data(0, 0).into_bytes()),
            topic: Some("t".into()),
            seq: Some(42),
        };
        sub.observe(msg, 0, &mut tally);
        assert_eq!(sub.last_seq["t"].seq, 42);
        sub.owed_errors = 2;
        tally.begin(0);
        sub.settle(&mut tally);
        assert_eq!((tally.snapshot(0).errors, sub.owed_errors), (2, 0));
    }
}
