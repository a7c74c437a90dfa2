//! A shape compiled for one encoding ([`Program`]): literal runs and the
//! values to write between them, then written once per message with the
//! encoders below (JSON text, MessagePack) and a xorshift generator.

use super::fields::{Node, Num, PLAYS};
use super::Encoding;
use crate::payload::Stamp;

/// A step of a compiled shape.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Bytes `start..end` of [`Program::lits`].
    Lit(u32, u32),
    Num(Num),
    Stamp,
}

/// A shape compiled for one encoding.
pub(super) struct Program {
    pub(super) encoding: Encoding,
    lits: Vec<u8>,
    ops: Vec<Op>,
    /// The strings [`Num::Pick`] chooses from, by list.
    picks: Vec<Vec<String>>,
}

/// Compiles `node` for `encoding`: its fixed parts become literal runs.
pub(super) fn compile(node: &Node, encoding: Encoding) -> Program {
    let mut p = Program {
        encoding,
        lits: Vec::new(),
        ops: Vec::new(),
        picks: vec![PLAYS.iter().map(|s| s.to_string()).collect()],
    };
    let mut open = 0;
    p.node(node, &mut open);
    p.close_lit(open);
    p
}

impl Program {
    /// Ends the literal run that started at `lits[open..]`, if any.
    fn close_lit(&mut self, open: usize) {
        if self.lits.len() > open {
            self.ops.push(Op::Lit(open as u32, self.lits.len() as u32));
        }
    }

    fn op(&mut self, op: Op, open: &mut usize) {
        self.close_lit(*open);
        self.ops.push(op);
        *open = self.lits.len();
    }

    fn node(&mut self, node: &Node, open: &mut usize) {
        match (node, self.encoding) {
            (Node::Obj(fields), Encoding::Json) => {
                self.lits.push(b'{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        self.lits.push(b',');
                    }
                    json_str(&mut self.lits, k);
                    self.lits.push(b':');
                    self.node(v, open);
                }
                self.lits.push(b'}');
            }
            (Node::Obj(fields), Encoding::Msgpack) => {
                mp_map_len(&mut self.lits, fields.len());
                for (k, v) in fields {
                    mp_str(&mut self.lits, k);
                    self.node(v, open);
                }
            }
            (Node::Arr(items), Encoding::Json) => {
                self.lits.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        self.lits.push(b',');
                    }
                    self.node(v, open);
                }
                self.lits.push(b']');
            }
            (Node::Arr(items), Encoding::Msgpack) => {
                mp_array_len(&mut self.lits, items.len());
                for v in items {
                    self.node(v, open);
                }
            }
            (Node::Str(s), Encoding::Json) => json_str(&mut self.lits, s),
            (Node::Str(s), Encoding::Msgpack) => mp_str(&mut self.lits, s),
            (Node::Fixed(n), Encoding::Json) => push_i64(&mut self.lits, *n),
            (Node::Fixed(n), Encoding::Msgpack) => mp_int(&mut self.lits, *n),
            (Node::Num(n), _) => self.op(Op::Num(*n), open),
            (Node::Stamp, _) => self.op(Op::Stamp, open),
        }
    }

    /// Appends one payload.
    pub(super) fn write(&self, out: &mut Vec<u8>, stamp: &Stamp, rng: &mut XorShift) {
        // The price every Num::Price of this message is near, in cents.
        let base = rng.between(10_000, 19_999);
        for op in &self.ops {
            match *op {
                Op::Lit(a, b) => out.extend_from_slice(&self.lits[a as usize..b as usize]),
                Op::Stamp => {
                    let mut buf = [0u8; 80];
                    let n = stamp_text(&mut buf, stamp);
                    match self.encoding {
                        Encoding::Json => {
                            out.push(b'"');
                            out.extend_from_slice(&buf[..n]);
                            out.push(b'"');
                        }
                        Encoding::Msgpack => {
                            mp_str_len(out, n);
                            out.extend_from_slice(&buf[..n]);
                        }
                    }
                }
                Op::Num(num) => self.num(out, num, stamp, base, rng),
            }
        }
    }

    fn num(&self, out: &mut Vec<u8>, num: Num, stamp: &Stamp, base: i64, rng: &mut XorShift) {
        let json = self.encoding == Encoding::Json;
        match num {
            Num::Price { lo, hi } => {
                let v = base + rng.between(lo, hi);
                self.num(
                    out,
                    Num::Dec {
                        lo: v,
                        hi: v,
                        places: 2,
                    },
                    stamp,
                    base,
                    rng,
                );
            }
            Num::Int { lo, hi } => {
                let v = rng.between(lo, hi);
                if json {
                    push_i64(out, v);
                } else {
                    mp_int(out, v);
                }
            }
            Num::Dec { lo, hi, places } => {
                let v = rng.between(lo, hi);
                let scale = 10i64.pow(u32::from(places));
                if json {
                    if v < 0 {
                        out.push(b'-');
                    }
                    push_i64(out, v.abs() / scale);
                    out.push(b'.');
                    let frac = v.abs() % scale;
                    // Leading zeros of the fraction: 101.05, not 101.5.
                    let mut digits = 1;
                    while digits < places && frac < 10i64.pow(u32::from(places - digits)) {
                        out.push(b'0');
                        digits += 1;
                    }
                    push_i64(out, frac);
                } else {
                    out.push(0xcb);
                    out.extend_from_slice(&(v as f64 / scale as f64).to_be_bytes());
                }
            }
            Num::Clock => {
                let s = rng.between(0, 719);
                if json {
                    out.push(b'"');
                } else {
                    out.push(0xa5);
                }
                let (m, s) = (s / 60, s % 60);
                out.extend_from_slice(&[b'0' + (m / 10) as u8, b'0' + (m % 10) as u8, b':']);
                out.extend_from_slice(&[b'0' + (s / 10) as u8, b'0' + (s % 10) as u8]);
                if json {
                    out.push(b'"');
                }
            }
            Num::TimeMs => {
                let ms = (stamp.intended_ns / 1_000_000) as i64;
                if json {
                    push_i64(out, ms);
                } else {
                    mp_int(out, ms);
                }
            }
            Num::Pick(list) => {
                let list = &self.picks[list as usize];
                let s = &list[rng.between(0, list.len() as i64 - 1) as usize];
                if json {
                    json_str(out, s);
                } else {
                    mp_str(out, s);
                }
            }
        }
    }

    /// The length of a payload early in a run (a 4-digit seq), averaged
    /// over a few messages: what sizing aims at.
    pub(super) fn typical_len(&self) -> usize {
        let mut rng = XorShift::new(7);
        let mut out = Vec::new();
        const SAMPLES: usize = 8;
        for seq in 0..SAMPLES as u64 {
            let stamp = Stamp {
                publisher: 0,
                step: 1,
                seq: 1000 + seq,
                intended_ns: 1_764_000_000_000_000_000,
            };
            self.write(&mut out, &stamp, &mut rng);
        }
        out.len().div_ceil(SAMPLES)
    }
}

/// Writes `p<publisher>:<step>:<seq>:<intended_ns>:` into `buf`; returns its length.
fn stamp_text(buf: &mut [u8; 80], s: &Stamp) -> usize {
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        buf[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
    };
    let mut digits = [0u8; 20];
    put(b"p");
    for value in [u64::from(s.publisher), u64::from(s.step), s.seq, s.intended_ns] {
        put(u64_digits(&mut digits, value));
        put(b":");
    }
    n
}

/// The decimal digits of `v`, written at the end of `buf`.
fn u64_digits(buf: &mut [u8; 20], mut v: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    out.extend_from_slice(u64_digits(&mut digits, v.unsigned_abs()));
}

/// A JSON string of text that needs no escaping (ours: names, words).
fn json_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(!s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Appends a MessagePack str header for `len` bytes.
pub(crate) fn mp_str_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        32..=255 => out.extend_from_slice(&[0xd9, len as u8]),
        256..=65_535 => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// Appends a MessagePack str.
pub(crate) fn mp_str(out: &mut Vec<u8>, s: &str) {
    mp_str_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Appends a MessagePack map header for `len` entries.
pub(crate) fn mp_map_len(out: &mut Vec<u8>, len: usize) {
    if len <= 15 {
        out.push(0x80 | len as u8);
    } else {
        out.push(0xde);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
}

fn mp_array_len(out: &mut Vec<u8>, len: usize) {
    if len <= 15 {
        out.push(0x90 | len as u8);
    } else {
        out.push(0xdc);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
}

/// Appends a MessagePack integer in its smallest form.
fn mp_int(out: &mut Vec<u8>, v: i64) {
    match v {
        0..=127 => out.push(v as u8),
        -32..=-1 => out.push(v as u8),
        128..=255 => out.extend_from_slice(&[0xcc, v as u8]),
        256..=65_535 => {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        65_536..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        v if v > 0 => {
            out.push(0xcf);
            out.extend_from_slice(&(v as u64).to_be_bytes());
        }
        -128..=-33 => out.extend_from_slice(&[0xd0, v as u8]),
        -32_768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&(v as i16).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// xorshift64*: a few cycles a number, plenty random for payload contents.
pub(super) struct XorShift(u64);

impl XorShift {
    pub(super) fn new(seed: u64) -> XorShift {
        // Never zero (a fixed point), and different for every publisher.
        XorShift((seed + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(publisher: u32, seq: u64) -> Stamp {
        Stamp {
            publisher,
            step: 2,
            seq,
            intended_ns: 1_764_000_123_456_789_012,
        }
    }

    fn dec(lo: i64, hi: i64, places: u8) -> Node {
        Node::Num(Num::Dec { lo, hi, places })
    }

    #[test]
    fn decimals_keep_their_leading_zeros() {
        let mut out = Vec::new();
        let p = compile(&dec(-1005, -1005, 2), Encoding::Json);
        p.write(&mut out, &stamp(0, 0), &mut XorShift::new(0));
        assert_eq!(out, b"-10.05");
        out.clear();
        let p = compile(&dec(100_007, 100_007, 3), Encoding::Json);
        p.write(&mut out, &stamp(0, 0), &mut XorShift::new(0));
        assert_eq!(out, b"100.007");
        for v in [
            0,
            1,
            -1,
            -32,
            -33,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            1 << 40,
            -200,
            -40_000,
            -(1 << 40),
        ] {
            let mut out = Vec::new();
            mp_int(&mut out, v);
            assert_eq!(rmp_serde::from_slice::<i64>(&out).unwrap(), v);
        }
    }
}
