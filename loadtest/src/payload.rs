//! The measurement payload every published message carries:
//! `p<publisher>:<step>:<seq>:<intended_ns>:` padded with `x` to the
//! requested size. It is plain ASCII, so it travels unchanged as a text
//! frame, a JSON string or a MessagePack string. The JSON shapes
//! ([`crate::shape`]) carry the same stamp as their first field,
//! `{"id":"p...:"`, which [`decode`] reads as well.

use thiserror::Error;

/// What a payload says about its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Publisher id (unique in the run).
    pub publisher: u32,
    /// Rate step the message belongs to.
    pub step: u32,
    /// Publisher's sequence number (from 0, never reused in a run).
    pub seq: u64,
    /// Intended send time in CLOCK_REALTIME nanoseconds (from the schedule).
    pub intended_ns: u64,
}

/// A payload that is not one of ours.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a load-test payload: {0}")]
pub struct PayloadError(pub String);

/// Appends the payload for `stamp`, padded with `x` to at least `size` bytes.
pub fn encode(out: &mut String, stamp: &Stamp, size: usize) {
    use std::fmt::Write;
    let start = out.len();
    let _ = write!(
        out,
        "p{}:{}:{}:{}:",
        stamp.publisher, stamp.step, stamp.seq, stamp.intended_ns
    );
    let written = out.len() - start;
    if written < size {
        out.extend(std::iter::repeat_n('x', size - written));
    }
}

/// Encodes into a fresh `String`.
pub fn encode_string(stamp: &Stamp, size: usize) -> String {
    let mut s = String::with_capacity(size.max(48));
    encode(&mut s, stamp, size);
    s
}

/// What a shaped JSON payload starts with, up to its stamp.
const SHAPE_PREFIX: &[u8] = br#"{"id":""#;

/// Decodes a payload produced by [`encode`], or a shaped JSON one (the stamp
/// is its `id`, first). A plain byte scanner: this runs once per received
/// message.
pub fn decode(bytes: &[u8]) -> Result<Stamp, PayloadError> {
    // One byte tells a padded payload (`p`) from a shaped one (`{`).
    let bytes = match bytes.first() {
        Some(b'{') => bytes.strip_prefix(SHAPE_PREFIX).unwrap_or(bytes),
        _ => bytes,
    };
    let bad = || PayloadError(String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned());
    if bytes.first() != Some(&b'p') {
        return Err(bad());
    }
    let mut pos = 1;
    let mut fields = [0u64; 4];
    for field in &mut fields {
        *field = number_then_colon(bytes, &mut pos).ok_or_else(bad)?;
    }
    let publisher = u32::try_from(fields[0]).map_err(|_| bad())?;
    let step = u32::try_from(fields[1]).map_err(|_| bad())?;
    Ok(Stamp {
        publisher,
        step,
        seq: fields[2],
        intended_ns: fields[3],
    })
}

/// Parses `<digits>:` at `*pos` and moves past the colon.
fn number_then_colon(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let value = parse_u64(bytes, pos)?;
    if bytes.get(*pos) != Some(&b':') {
        return None;
    }
    *pos += 1;
    Some(value)
}

/// Parses 1 to 19 ASCII digits at `*pos` (so it cannot overflow a u64) and
/// moves past them. Runs on every received message (here and in the JSON scan).
pub(crate) fn parse_u64(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let digits = bytes.get(*pos..)?;
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 19 {
        return None;
    }
    let value = digits[..n].iter().fold(0u64, |v, &b| v * 10 + (b - b'0') as u64);
    *pos += n;
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_padding() {
        let st = Stamp {
            publisher: 7,
            step: 2,
            seq: 123456,
            intended_ns: 1_763_768_000_123_456_789,
        };
        let s = encode_string(&st, 100);
        assert_eq!(s.len(), 100);
        assert!(s.starts_with("p7:2:123456:1763768000123456789:xx"));
        assert_eq!(decode(s.as_bytes()), Ok(st));
        // Smaller than the header: no padding, still decodable.
        let s = encode_string(&st, 4);
        assert_eq!(s, "p7:2:123456:1763768000123456789:");
        assert_eq!(decode(s.as_bytes()), Ok(st));
        let shaped = r#"{"id":"p7:2:123456:1763768000123456789:","symbol":"ACME"}"#;
        assert_eq!(decode(shaped.as_bytes()), Ok(st));
    }

    #[test]
    fn rejects_foreign_payloads() {
        for bad in [
            "",
            "hello",
            "p1:2:3",
            "p1:2:3:x:",
            "q1:2:3:4:",
            "p99999999999:1:1:1:",
            "p1::3:4:",
            "p1:2:3:99999999999999999999:",
            r#"{"id":"q1:2:3:4:"}"#,
            r#"{"id":1}"#,
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
