//! permessage-deflate (RFC 7692) as a browser speaks it: the offer
//! ([`OFFER`]), checking the server's answer ([`parse_answer`], section 7),
//! inflating compressed messages ([`Inflater`], section 7.2.2) and, for
//! publishers that ask, compressing our own ([`Deflater`], section 7.2.1).
//!
//! A compressed message is raw DEFLATE data whose trailing `00 00 ff ff`
//! (the empty stored block of a sync flush) was cut off by the sender; the
//! receiver appends it again and inflates. Without `server_no_context_takeover`
//! the server compresses every message with the window of the ones before,
//! so the inflater keeps its state across messages; with it, every message
//! stands alone and one inflater can serve many connections in turn. Then
//! the same compressed bytes always inflate to the same message: a server
//! that compresses a message once for all its subscribers (the broker; or
//! Node's ws, whose per-client deflate is deterministic) sends the next
//! subscriber the bytes just inflated, and the inflater hands back what it
//! has instead of inflating them again.

use std::collections::HashMap;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::fmt;
use thiserror::Error;

/// What the client offers, exactly as Chrome and Firefox do.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The bytes a sender removes from the end of every compressed message.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The extension as the server accepted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server starts every message with an empty window: inflate each alone.
    pub server_no_context_takeover: bool,
    /// We must start every message we compress with an empty window.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window is at most 2^N bytes (inflating with 2^15 covers it).
    pub server_max_window_bits: Option<u8>,
    /// Our window must be at most 2^N bytes.
    pub client_max_window_bits: Option<u8>,
}

impl fmt::Display for DeflateParams {
    /// The answer in its canonical form, e.g. `permessage-deflate; server_no_context_takeover`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("permessage-deflate")?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if let Some(n) = self.server_max_window_bits {
            write!(f, "; server_max_window_bits={n}")?;
        }
        if let Some(n) = self.client_max_window_bits {
            write!(f, "; client_max_window_bits={n}")?;
        }
        Ok(())
    }
}

/// A `Sec-WebSocket-Extensions` answer the client must refuse (RFC 6455
/// 4.1, RFC 7692 5 and 7): the connection fails with this message.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ExtensionError {
    /// The server named an extension the client did not offer.
    #[error("the server answered extension `{0}`, which the client did not offer")]
    NotOffered(String),
    /// The server accepted permessage-deflate more than once (one offer, one answer).
    #[error("the server answered permessage-deflate more than once")]
    Repeated,
    /// A parameter RFC 7692 does not define for an answer.
    #[error("the server's permessage-deflate answer has an unknown parameter `{0}`")]
    UnknownParam(String),
    /// The same parameter twice.
    #[error("the server's permessage-deflate answer repeats the parameter `{0}`")]
    DuplicateParam(String),
    /// A parameter with a value it must not have, or without one it must have.
    #[error("the server's permessage-deflate answer has `{param}` {problem}")]
    BadValue {
        /// The parameter.
        param: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Not the `token *(; param)` grammar at all.
    #[error("malformed Sec-WebSocket-Extensions answer `{0}`")]
    Malformed(String),
}

/// Checks the server's `Sec-WebSocket-Extensions` answer (every such header
/// line's value, in order). `offered`: whether we offered [`OFFER`].
/// `Ok(None)`: no extension in use. Any extension but permessage-deflate, or
/// permessage-deflate when not offered, is an error, as is any parameter
/// outside RFC 7692 section 7 or with a bad value.
pub fn parse_answer(values: &[&str], offered: bool) -> Result<Option<DeflateParams>, ExtensionError> {
    let mut agreed: Option<DeflateParams> = None;
    for value in values {
        for extension in split_outside_quotes(value, ',') {
            let extension = extension.trim();
            if extension.is_empty() {
                continue;
            }
            let mut parts = split_outside_quotes(extension, ';').into_iter().map(str::trim);
            let name = parts.next().unwrap_or_default();
            if !is_token(name) {
                return Err(ExtensionError::Malformed(value.to_string()));
            }
            if !offered || !name.eq_ignore_ascii_case("permessage-deflate") {
                return Err(ExtensionError::NotOffered(name.to_string()));
            }
            if agreed.is_some() {
                return Err(ExtensionError::Repeated);
            }
            agreed = Some(parse_params(parts, value)?);
        }
    }
    Ok(agreed)
}

/// The parameters after `permessage-deflate`.
fn parse_params<'a>(params: impl Iterator<Item = &'a str>, whole: &str) -> Result<DeflateParams, ExtensionError> {
    let mut p = DeflateParams::default();
    let mut seen: Vec<String> = Vec::new();
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (
                n.trim(),
                Some(unquote(v.trim()).ok_or_else(|| ExtensionError::Malformed(whole.into()))?),
            ),
            None => (param, None),
        };
        if !is_token(name) {
            return Err(ExtensionError::Malformed(whole.to_string()));
        }
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return Err(ExtensionError::DuplicateParam(name));
        }
        let bad = |problem: String| ExtensionError::BadValue {
            param: name.clone(),
            problem,
        };
        match name.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => {
                if let Some(v) = value {
                    return Err(bad(format!("with a value (`{v}`); it takes none")));
                }
                if name.starts_with("server") {
                    p.server_no_context_takeover = true;
                } else {
                    p.client_no_context_takeover = true;
                }
            }
            "server_max_window_bits" | "client_max_window_bits" => {
                // An answer always carries the value (RFC 7692 7.1.2.1, 7.1.2.2).
                let v = value.ok_or_else(|| bad("without a value (8 to 15)".into()))?;
                let bits = window_bits(&v).ok_or_else(|| bad(format!("= `{v}`, not an integer from 8 to 15")))?;
                if name.starts_with("server") {
                    p.server_max_window_bits = Some(bits);
                } else {
                    p.client_max_window_bits = Some(bits);
                }
            }
            _ => return Err(ExtensionError::UnknownParam(name)),
        }
        seen.push(name);
    }
    Ok(p)
}

/// 8 to 15, decimal, without leading zeros.
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|n| (8..=15).contains(n))
}

/// A token or a quoted-string's content (RFC 7230 3.2.6; backslash escapes undone).
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return is_token(v).then(|| v.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// RFC 7230 `token`: one or more visible ASCII characters but the separators.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}".contains(&b))
}

/// Splits on `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A message that does not inflate.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum InflateError {
    /// Not valid DEFLATE data (or it refers back past the window it may use).
    #[error("compressed message does not inflate: {0}")]
    Corrupt(String),
    /// It inflates past the message size limit.
    #[error("compressed message inflates past the limit of {0} bytes")]
    TooLarge(usize),
}

/// Inflates server messages into its own reused buffers.
pub struct Inflater {
    inflate: Decompress,
    /// With context: the last message, inflated (its capacity stays for the next one).
    out: Vec<u8>,
    /// Keep the window across messages (the server takes its context over).
    keep_context: bool,
    /// Without context: the last messages inflated, replaced in turn
    /// (`next`), found by a key of their compressed bytes (`index`). Many,
    /// because a subscriber that fell behind gets hundreds of messages in one
    /// read before the next subscriber gets the same hundreds: a small memo
    /// would miss them all, inflating would cost more, and the tester would
    /// fall further behind than the server it measures.
    memo: Vec<Memo>,
    index: HashMap<u64, usize>,
    next: usize,
    /// The slot of the last message handed back.
    last: usize,
}

/// One message inflated without context, and the bytes it came from.
#[derive(Default)]
struct Memo {
    /// Empty: nothing (a failed inflate leaves it so).
    input: Vec<u8>,
    output: Vec<u8>,
}

/// How many messages an inflater without context remembers.
const MEMO: usize = 4096;

/// A cheap key of a compressed message: its length and its first and last bytes
/// (where the seq and the stamp differ from one message to the next); a match is
/// confirmed by comparing the whole.
fn memo_key(payload: &[u8]) -> u64 {
    let head = &payload[..payload.len().min(32)];
    let tail = &payload[payload.len().saturating_sub(8)..];
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ payload.len() as u64;
    for &b in head.iter().chain(tail) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Inflater {
    /// An inflater for a connection that agreed on `params`.
    pub fn new(params: &DeflateParams) -> Inflater {
        Inflater {
            // A 2^15 window inflates whatever window the server used.
            inflate: Decompress::new(false),
            out: Vec::new(),
            keep_context: !params.server_no_context_takeover,
            memo: Vec::new(),
            index: HashMap::new(),
            next: 0,
            last: 0,
        }
    }

    /// True when it must stay with its connection (its window matters to the
    /// next message); false when any inflater of the same kind would do.
    pub fn keeps_context(&self) -> bool {
        self.keep_context
    }

    /// Inflates one whole message's payload (all its frames' payloads
    /// joined); fails past `max` bytes. The result lives until the next call.
    pub fn inflate(&mut self, payload: &[u8], max: usize) -> Result<&[u8], InflateError> {
        if self.keep_context {
            run(&mut self.inflate, payload, max, &mut self.out)?;
            return Ok(&self.out);
        }
        // A message inflated lately (for another subscriber): a length
        // check and a memcmp instead of building Huffman tables again.
        // Subscribers get the same messages in the same order: after a hit on one
        // slot, the next message is most likely in the slot after it, or the same
        // one (the next subscriber's copy). Only then the key.
        for i in [(self.last + 1) % MEMO, self.last] {
            if self.memo.get(i).is_some_and(|m| m.input == payload) {
                self.last = i;
                return within(&self.memo[i].output, max);
            }
        }
        let key = memo_key(payload);
        if let Some(&i) = self.index.get(&key) {
            if self.memo[i].input == payload {
                self.last = i;
                return within(&self.memo[i].output, max);
            }
        }
        let slot = self.next;
        self.next = (slot + 1) % MEMO;
        if self.memo.len() <= slot {
            self.memo.push(Memo::default());
        }
        let m = &mut self.memo[slot];
        if !m.input.is_empty() {
            let old = memo_key(&m.input);
            if self.index.get(&old) == Some(&slot) {
                self.index.remove(&old);
            }
        }
        self.index.insert(key, slot);
        self.last = slot;
        m.input.clear();
        // Every message starts afresh: a server that refers back anyway is
        // caught ("invalid distance too far back").
        self.inflate.reset(false);
        run(&mut self.inflate, payload, max, &mut m.output)?;
        m.input.extend_from_slice(payload);
        Ok(&m.output)
    }
}

/// Runs `inflate` over `payload` and the tail into `out` (cleared first;
/// its capacity stays for the next message).
fn run(inflate: &mut Decompress, payload: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), InflateError> {
    out.clear();
    for mut input in [payload, &TAIL[..]] {
        loop {
            if out.capacity() - out.len() < 1024 {
                if out.len() > max {
                    return Err(InflateError::TooLarge(max));
                }
                // Doubling: a message costs a few reservations the first
                // time its size is seen, none after.
                out.reserve(out.capacity().max(4096));
            }
            let before = inflate.total_in();
            let status = inflate
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            input = &input[(inflate.total_in() - before) as usize..];
            match status {
                // A final block (BFINAL, RFC 7692 7.2.3.4): the message ends
                // here, and the next one starts a new stream.
                Status::StreamEnd => {
                    inflate.reset(false);
                    return within(out, max).map(|_| ());
                }
                // Everything in and room left over: all of it is out.
                Status::Ok | Status::BufError if input.is_empty() && out.len() < out.capacity() => break,
                Status::BufError if input.is_empty() => break,
                _ => {}
            }
        }
    }
    within(out, max).map(|_| ())
}

/// `out`, unless it is longer than `max`.
fn within(out: &[u8], max: usize) -> Result<&[u8], InflateError> {
    if out.len() > max {
        Err(InflateError::TooLarge(max))
    } else {
        Ok(out)
    }
}

/// Compresses our own messages, within what the server allowed.
pub struct Deflater {
    deflate: Compress,
    /// Start every message with an empty window (`client_no_context_takeover`).
    reset: bool,
}

impl Deflater {
    /// A compressor for a connection that agreed on `params`, at zlib
    /// `level` (0-9); `None` when the server's window limit is one zlib
    /// cannot keep to (8 bits: raw deflate needs at least 9), so messages go
    /// uncompressed, which RFC 7692 allows.
    pub fn new(params: &DeflateParams, level: u32) -> Option<Deflater> {
        let bits = params.client_max_window_bits.unwrap_or(15);
        if bits < 9 {
            return None;
        }
        Some(Deflater {
            deflate: Compress::new_with_window_bits(Compression::new(level), false, bits),
            reset: params.client_no_context_takeover,
        })
    }

    /// Appends `payload` compressed, without the trailing `00 00 ff ff`, to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if self.reset {
            self.deflate.reset();
        }
        let start = out.len();
        let mut input = payload;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before = self.deflate.total_in();
            // Compressing into a Vec's spare room cannot fail: the stream is ours and valid.
            let status = self
                .deflate
                .compress_vec(input, out, FlushCompress::Sync)
                .expect("deflate into a vector");
            input = &input[(self.deflate.total_in() - before) as usize..];
            // A sync flush is complete when it left room unused; BufError:
            // it had completed exactly at the end of the room.
            if status == Status::BufError || (input.is_empty() && out.len() < out.capacity()) {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(v: &str) -> Result<Option<DeflateParams>, ExtensionError> {
        parse_answer(&[v], true)
    }

    #[test]
    fn accepts_what_rfc_7692_allows() {
        assert_eq!(answer("permessage-deflate"), Ok(Some(DeflateParams::default())));
        assert_eq!(parse_answer(&[], true), Ok(None));
        assert_eq!(parse_answer(&[""], true), Ok(None));
        assert_eq!(parse_answer(&[], false), Ok(None));
        let all = answer(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=\"9\"",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            all,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: Some(10),
                client_max_window_bits: Some(9),
            }
        );
        assert_eq!(
            all.to_string(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
        // What Node's ws and the broker answer.
        let ws = answer("permessage-deflate; server_no_context_takeover")
            .unwrap()
            .unwrap();
        assert!(ws.server_no_context_takeover && !ws.client_no_context_takeover);
        let spaced = answer("  Permessage-Deflate ;client_max_window_bits=15 ")
            .unwrap()
            .unwrap();
        assert_eq!(spaced.client_max_window_bits, Some(15));
        // Split over two header lines, one of them empty.
        assert!(parse_answer(&["", "permessage-deflate"], true).unwrap().is_some());
    }

    #[test]
    fn refuses_what_it_must() {
        use ExtensionError::*;
        let not = |v: &str| answer(v).unwrap_err();
        assert_eq!(
            not("x-webkit-deflate-frame"),
            NotOffered("x-webkit-deflate-frame".into())
        );
        assert_eq!(
            parse_answer(&["permessage-deflate"], false),
            Err(NotOffered("permessage-deflate".into()))
        );
        assert_eq!(not("permessage-deflate, permessage-deflate"), Repeated);
        assert_eq!(
            parse_answer(&["permessage-deflate", "permessage-deflate"], true),
            Err(Repeated)
        );
        assert_eq!(not("permessage-deflate, foo"), NotOffered("foo".into()));
        assert_eq!(not("permessage-deflate; level=3"), UnknownParam("level".into()));
        assert_eq!(
            not("permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
            DuplicateParam("server_no_context_takeover".into())
        );
        for bad in [
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=abc",
        ] {
            assert!(matches!(not(bad), BadValue { .. }), "{bad}: {:?}", answer(bad));
        }
        for bad in [
            "permessage-deflate; client_max_window_bits=\"9",
            "permessage-deflate; =9",
            "; server_no_context_takeover",
            "permessage deflate",
        ] {
            assert!(
                matches!(not(bad), Malformed(_) | NotOffered(_)),
                "{bad}: {:?}",
                answer(bad)
            );
        }
        // The error names the problem.
        let e = not("permessage-deflate; server_max_window_bits=20").to_string();
        assert!(e.contains("server_max_window_bits") && e.contains("20"), "{e}");
    }

    /// Compresses like a server: raw deflate, sync flush, tail cut off.
    fn server_compress(c: &mut Compress, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(msg.len() + 64);
        c.compress_vec(msg, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    fn message(i: usize) -> Vec<u8> {
        format!(
            r#"{{"game":{i},"home":{{"team":"Harbor Hawks","score":{}}},"away":{{"team":"Rivets","score":{}}}}}"#,
            i * 7 % 130,
            i * 11 % 120
        )
        .repeat(8)
        .into_bytes()
    }

    #[test]
    fn inflates_with_and_without_context_takeover() {
        let takeover = DeflateParams::default();
        let mut c = Compress::new(Compression::new(3), false);
        let mut inf = Inflater::new(&takeover);
        assert!(inf.keeps_context());
        let mut sizes = Vec::new();
        for i in 0..20 {
            let msg = message(i);
            let wire = server_compress(&mut c, &msg);
            sizes.push(wire.len());
            assert_eq!(inf.inflate(&wire, 1 << 20).unwrap(), &msg[..]);
        }
        // The shared window pays: later messages are far smaller than the first.
        assert!(sizes[19] * 2 < sizes[0], "{sizes:?}");

        let alone = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut inf = Inflater::new(&alone);
        assert!(!inf.keeps_context());
        for i in 0..5 {
            let mut c = Compress::new(Compression::new(3), false);
            let msg = message(i);
            let wire = server_compress(&mut c, &msg);
            // The same bytes again (the next subscriber's copy) give the same message.
            for _ in 0..3 {
                assert_eq!(inf.inflate(&wire, 1 << 20).unwrap(), &msg[..]);
            }
            assert_eq!(inf.inflate(&wire, 10), Err(InflateError::TooLarge(10)));
        }
        // Interleaved: a few messages to one subscriber, then the same to the next.
        let wires: Vec<(Vec<u8>, Vec<u8>)> = (0..4)
            .map(|i| {
                let mut c = Compress::new(Compression::new(3), false);
                (server_compress(&mut c, &message(i + 10)), message(i + 10))
            })
            .collect();
        for _ in 0..3 {
            for (wire, msg) in &wires {
                assert_eq!(inf.inflate(wire, 1 << 20).unwrap(), &msg[..]);
            }
        }
        // A failure forgets the message whose slot it took.
        let mut c = Compress::new(Compression::new(3), false);
        let good = server_compress(&mut c, &message(7));
        assert_eq!(inf.inflate(&good, 1 << 20).unwrap(), &message(7)[..]);
        assert!(inf.inflate(b"\xff\xff\xff", 1 << 20).is_err());
        assert_eq!(inf.inflate(&good, 1 << 20).unwrap(), &message(7)[..]);
        // A server that refers back while promising not to is caught.
        let mut c = Compress::new(Compression::new(3), false);
        let _ = server_compress(&mut c, &message(1));
        let refers_back = server_compress(&mut c, &message(1));
        assert!(matches!(
            inf.inflate(&refers_back, 1 << 20),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn inflates_large_final_block_and_empty_messages() {
        let mut inf = Inflater::new(&DeflateParams::default());
        // Larger than the first reservations, so the output grows in the loop.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 ^ (i / 977) as u8).collect();
        let mut c = Compress::new(Compression::new(1), false);
        let wire = server_compress(&mut c, &big);
        assert_eq!(inf.inflate(&wire, 1 << 20).unwrap(), &big[..]);
        assert_eq!(inf.inflate(&wire, 1000), Err(InflateError::TooLarge(1000)));
        // A message ending in a final block (BFINAL): the stream ends, the next starts anew.
        let mut inf = Inflater::new(&DeflateParams::default());
        for _ in 0..2 {
            let mut c = Compress::new(Compression::new(6), false);
            let mut out = Vec::with_capacity(256);
            c.compress_vec(b"hello hello hello", &mut out, FlushCompress::Finish)
                .unwrap();
            assert_eq!(inf.inflate(&out, 100).unwrap(), b"hello hello hello");
        }
        let mut c = Compress::new(Compression::new(6), false);
        assert_eq!(inf.inflate(&server_compress(&mut c, b""), 100).unwrap(), b"");
        assert!(matches!(
            inf.inflate(b"\xff\xff\xff", 100),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn deflater_output_inflates_within_the_agreed_window() {
        let params = DeflateParams {
            client_no_context_takeover: true,
            client_max_window_bits: Some(10),
            ..DeflateParams::default()
        };
        let mut d = Deflater::new(&params, 3).unwrap();
        let mut inf = Inflater::new(&DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        });
        for i in 0..3 {
            let mut out = b"hdr".to_vec();
            d.compress(&message(i), &mut out);
            assert!(out.len() < message(i).len() / 2);
            assert_eq!(inf.inflate(&out[3..], 1 << 20).unwrap(), &message(i)[..]);
        }
        let narrow = DeflateParams {
            client_max_window_bits: Some(8),
            ..DeflateParams::default()
        };
        assert!(Deflater::new(&narrow, 3).is_none());
    }
}
