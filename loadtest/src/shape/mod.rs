//! Payload shapes (`--payload-shape`): what a published message looks like.
//! `padding` is the measurement stamp padded with `x` ([`crate::payload`]),
//! which deflate shrinks to almost nothing; `quote` (a stock quote, ~200 B)
//! and `scoreboard` (live games, ~2 KB) are JSON objects with repetitive
//! keys, names from fixed lists and numbers that change with every message,
//! so compression figures mean what they would for a real feed.
//!
//! The stamp is the object's first field, `{"id":"p<publisher>:...:"`, so a
//! subscriber finds it at a fixed place ([`crate::payload::decode`]). A shape
//! is built once per publisher as a tree of fields, sized to
//! `--payload-bytes` (more fields, book levels, games or player lines, then
//! a short `note` for the rest), and compiled to a flat program for its encoding: JSON for `json`,
//! `raw` and `socketio`, MessagePack for `msgpack`. Each message then copies
//! the literal runs and writes the numbers from a per-publisher xorshift
//! generator: no allocation, no formatting machinery.
//!
//! `fields.rs` holds the shapes' fields; `program.rs` compiles them and
//! writes payloads (JSON and MessagePack encoders, the generator).

mod fields;
mod program;

use crate::payload::Stamp;
use fields::tree;
use program::{compile, Program, XorShift};
pub(crate) use program::{mp_map_len, mp_str};
use serde::{Deserialize, Serialize};

/// What a published payload looks like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PayloadShape {
    /// The stamp padded with `x` (a string; compresses to nearly nothing).
    #[default]
    Padding,
    /// A stock quote: symbol, bid/ask/last, sizes, volume, change... then
    /// order-book levels for larger sizes (the benchmark uses 200 B).
    Quote,
    /// A live scoreboard: games with teams, scores, period, clock and team
    /// stats (the benchmark uses 2048 B).
    Scoreboard,
}

/// How a shaped payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON text.
    Json,
    /// MessagePack (named-field maps, like rmp-serde's).
    Msgpack,
}

/// Writes one publisher's shaped payloads.
pub struct ShapeWriter {
    program: Program,
    rng: XorShift,
}

impl ShapeWriter {
    /// The writer for publisher `publisher`'s payloads of `shape`, about
    /// `size` bytes in `encoding`; `None` for [`PayloadShape::Padding`]
    /// (a plain string, [`crate::payload::encode`]).
    pub fn new(shape: PayloadShape, size: usize, encoding: Encoding, publisher: u32) -> Option<ShapeWriter> {
        if shape == PayloadShape::Padding {
            return None;
        }
        Some(ShapeWriter {
            program: sized(shape, size, encoding, publisher),
            rng: XorShift::new(u64::from(publisher)),
        })
    }

    /// About how long its payloads are (early in a run), bytes: what the
    /// sizing aimed at `size` with, for a report to say when it could not.
    pub fn typical_len(&self) -> usize {
        self.program.typical_len()
    }

    /// The encoding it writes.
    pub fn encoding(&self) -> Encoding {
        self.program.encoding
    }

    /// Appends one payload for `stamp` to `out`.
    pub fn write(&mut self, out: &mut Vec<u8>, stamp: &Stamp) {
        self.program.write(out, stamp, &mut self.rng);
    }
}

/// Builds `shape` with as many large repeated parts as fit in `size`
/// (quote: optional fields, then order-book levels; scoreboard: games),
/// then as many small ones (scoreboard: leaders), then fills what is left
/// (less than a small part) with a `note`.
fn sized(shape: PayloadShape, size: usize, encoding: Encoding, publisher: u32) -> Program {
    let build = |parts: Parts, note: Option<String>| compile(&tree(shape, parts, publisher, note), encoding);
    let fits = |parts: Parts| build(parts, None).typical_len() <= size;
    // Every part adds bytes, so no more than `size` of them fit.
    let big = most(size, |n| fits(Parts { big: n, small: 0 }));
    let small = match shape {
        PayloadShape::Scoreboard => most(size, |n| fits(Parts { big, small: n })),
        _ => 0,
    };
    let parts = Parts { big, small };
    let mut best = build(parts, None);
    let have = best.typical_len();
    let overhead = build(parts, Some(String::new())).typical_len() - have;
    if size >= have + overhead + 8 {
        // The note's own length can move the string header by a byte or
        // two (MessagePack): measure, then correct once.
        let mut want = size - have - overhead;
        let first = build(parts, Some(filler(want)));
        want = (want + size).saturating_sub(first.typical_len());
        best = build(parts, Some(filler(want)));
    }
    best
}

/// How many repeated parts a shape has.
#[derive(Debug, Clone, Copy)]
struct Parts {
    /// Quote: optional fields, then order-book levels; scoreboard: games.
    big: usize,
    /// Scoreboard: leaders.
    small: usize,
}

/// The largest `n` up to `cap` for which `fits(n)` holds, given that it
/// holds for `0..=n` and not after (size grows with the parts): doubling
/// past it, then bisecting, a few dozen builds even for megabytes.
fn most(cap: usize, fits: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, 1);
    while hi <= cap && fits(hi) {
        (lo, hi) = (hi, hi * 2);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// `len` bytes of words, as a sponsor line or ticker would read.
fn filler(len: usize) -> String {
    const WORDS: [&str; 16] = [
        "live",
        "coverage",
        "continues",
        "after",
        "the",
        "break",
        "with",
        "highlights",
        "from",
        "every",
        "court",
        "tonight",
        "presented",
        "by",
        "acme",
        "markets",
    ];
    let mut s = String::with_capacity(len + 12);
    let mut i = 0;
    while s.len() < len {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[i % WORDS.len()]);
        i += 1;
    }
    s.truncate(len);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload;

    fn stamp(publisher: u32, seq: u64) -> Stamp {
        Stamp {
            publisher,
            step: 2,
            seq,
            intended_ns: 1_764_000_123_456_789_012,
        }
    }

    fn render(shape: PayloadShape, size: usize, enc: Encoding, seq: u64) -> Vec<u8> {
        let mut w = ShapeWriter::new(shape, size, enc, 3).unwrap();
        let mut out = Vec::new();
        w.write(&mut out, &stamp(3, seq));
        out
    }

    #[test]
    fn padding_is_not_a_shape() {
        assert!(ShapeWriter::new(PayloadShape::Padding, 100, Encoding::Json, 0).is_none());
    }

    #[test]
    fn sizes_stay_within_ten_percent() {
        for shape in [PayloadShape::Quote, PayloadShape::Scoreboard] {
            for enc in [Encoding::Json, Encoding::Msgpack] {
                for size in [200, 300, 500, 1000, 2048, 4096, 16_384, 65_536] {
                    for seq in [0, 5_000, 999_999] {
                        let len = render(shape, size, enc, seq).len();
                        let off = (len as f64 - size as f64).abs() / size as f64;
                        assert!(off <= 0.10, "{shape:?} {enc:?} {size} B at seq {seq}: {len} B");
                    }
                }
            }
        }
    }

    #[test]
    fn json_is_valid_and_carries_the_stamp_first() {
        for (shape, size) in [(PayloadShape::Quote, 200), (PayloadShape::Scoreboard, 2048)] {
            let mut w = ShapeWriter::new(shape, size, Encoding::Json, 4).unwrap();
            let mut seen = std::collections::HashSet::new();
            for seq in 0..50 {
                let mut out = Vec::new();
                w.write(&mut out, &stamp(4, seq));
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert!(out.starts_with(br#"{"id":"p4:2:"#));
                assert_eq!(payload::decode(&out), Ok(stamp(4, seq)));
                assert_eq!(
                    v["id"].as_str().map(|s| payload::decode(s.as_bytes())),
                    Some(Ok(stamp(4, seq)))
                );
                let volatile = match shape {
                    PayloadShape::Quote => v["last"].to_string(),
                    _ => v["games"][0]["home"]["score"].to_string(),
                };
                seen.insert(volatile);
            }
            // The numbers change from message to message.
            assert!(seen.len() > 10, "{shape:?}: {seen:?}");
        }
        let q: serde_json::Value =
            serde_json::from_slice(&render(PayloadShape::Quote, 200, Encoding::Json, 0)).unwrap();
        assert!(q["bid"].is_f64() && q["volume"].is_u64() && q["symbol"].is_string());
        let (bid, last, ask) = (q["bid"].as_f64(), q["last"].as_f64(), q["ask"].as_f64());
        assert!(bid < last && last < ask, "{q}");
        let big: serde_json::Value =
            serde_json::from_slice(&render(PayloadShape::Quote, 1000, Encoding::Json, 0)).unwrap();
        assert!(big["book"].as_array().is_some_and(|b| !b.is_empty()));
        let s: serde_json::Value =
            serde_json::from_slice(&render(PayloadShape::Scoreboard, 2048, Encoding::Json, 0)).unwrap();
        let games = s["games"].as_array().unwrap();
        assert!(games.len() >= 3, "{s}");
        assert!(games[0]["clock"]
            .as_str()
            .is_some_and(|c| c.len() == 5 && c.as_bytes()[2] == b':'));
        assert!(games[0]["away"]["stats"]["fg_pct"].is_f64());
        // The filler is what is left after the small parts: it must not
        // weigh on the compression ratio.
        for size in [2048, 3000, 10_000] {
            let s: serde_json::Value =
                serde_json::from_slice(&render(PayloadShape::Scoreboard, size, Encoding::Json, 0)).unwrap();
            let note = s["note"].as_str().map_or(0, str::len);
            assert!(note < 80, "{size} B: a {note} B note");
        }
    }

    #[test]
    fn msgpack_is_the_same_object() {
        for (shape, size) in [(PayloadShape::Quote, 200), (PayloadShape::Scoreboard, 2048)] {
            let bytes = render(shape, size, Encoding::Msgpack, 17);
            let v: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
            let id = v["id"].as_str().unwrap();
            assert_eq!(payload::decode(id.as_bytes()), Ok(stamp(3, 17)));
            // The same tree in both encodings, with the same generator, is the same value.
            let both = [Encoding::Json, Encoding::Msgpack].map(|enc| {
                let mut out = Vec::new();
                compile(&tree(shape, Parts { big: 12, small: 2 }, 3, Some("a note".into())), enc).write(
                    &mut out,
                    &stamp(3, 17),
                    &mut XorShift::new(3),
                );
                out
            });
            let json: serde_json::Value = serde_json::from_slice(&both[0]).unwrap();
            assert_eq!(
                rmp_serde::from_slice::<serde_json::Value>(&both[1]).unwrap(),
                json,
                "{shape:?}"
            );
            assert!(both[1].len() < both[0].len());
        }
    }
}
