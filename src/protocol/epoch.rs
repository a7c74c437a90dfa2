//! `Epoch`: which life of a topic its seqs belong to.
//!
//! Seqs start again from 1 when a topic is created anew: after a restart,
//! or after an idle topic was reaped. A client that resumes with `since`
//! passes the epoch its seqs came from, so the broker can tell "seq 40 of
//! this topic" from "seq 40 of a topic that no longer exists" and answer
//! `recovered: false` instead of replaying unrelated messages.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Identifies one life of a topic; shown on the wire as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

impl Epoch {
    /// A new epoch, different from every other one this process made and,
    /// with overwhelming probability, from any an earlier process made.
    pub fn new() -> Epoch {
        static BASE: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = *BASE.get_or_init(|| crate::clock::now_nanos() ^ (u64::from(std::process::id()) << 32));
        Epoch(mix(base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))))
    }

    /// The epoch named by `seed`: the same on every node that derives it from the same seed.
    pub fn derived(seed: u64) -> Epoch {
        Epoch(mix(seed))
    }

    /// Parses the wire form; `None` when it is not 1 to 16 hex digits.
    pub fn parse(text: &str) -> Option<Epoch> {
        if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Epoch)
    }
}

impl Default for Epoch {
    fn default() -> Self {
        Epoch::new()
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// splitmix64's finaliser: consecutive inputs give unrelated-looking outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_differ_and_round_trip_through_their_wire_form() {
        let (a, b) = (Epoch::new(), Epoch::new());
        assert_ne!(a, b);
        assert_eq!(Epoch::parse(&a.to_string()), Some(a));
        assert_eq!(a.to_string().len(), 16);
        for bad in ["", "xyz", "12345678901234567", "-1", "+1"] {
            assert_eq!(Epoch::parse(bad), None, "{bad:?}");
        }
    }
}
