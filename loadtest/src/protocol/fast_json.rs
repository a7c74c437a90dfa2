//! The receive path's hot spot: the broker's JSON `message` envelope,
//! `{"type":"message","topic":"T","seq":N,...,"data":"D"}`, scanned byte by
//! byte without general string search. Other fields between `seq` and
//! `data` may be numbers (`ts`). `data` may also be an object (the shaped
//! payloads), then the envelope's last field: its text is the payload, not
//! parsed (the stamp sits at its start). Anything unexpected (field order,
//! escapes, other data, a trailing `encoding`) returns `None` and the
//! caller falls back to serde.

use super::Incoming;
use std::borrow::Cow;

const PREFIX: &[u8] = br#"{"type":"message","topic":""#;

/// Parses the envelope when it has the broker's usual shape.
pub(super) fn message(bytes: &[u8]) -> Option<Incoming<'_>> {
    let rest = bytes.strip_prefix(PREFIX)?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[end] != b'"' {
        return None;
    }
    let topic = std::str::from_utf8(&rest[..end]).ok()?;
    let mut s = Scan {
        bytes: rest,
        pos: end + 1,
    };
    if s.key()? != b"seq" {
        return None;
    }
    let seq = s.number()?;
    loop {
        let key = s.key()?;
        if key == b"data" {
            break;
        }
        s.number()?;
    }
    let data = if s.bytes.get(s.pos) == Some(&b'{') {
        // The object runs to the envelope's closing brace (the broker writes
        // no field after it; one with an object value would go unnoticed).
        let object = s.bytes.get(s.pos..s.bytes.len() - 1)?;
        if !object.ends_with(b"}") || s.bytes.last() != Some(&b'}') {
            return None;
        }
        s.pos = s.bytes.len() - 1;
        object
    } else {
        s.string()?
    };
    if s.pos + 1 != s.bytes.len() || s.bytes[s.pos] != b'}' {
        return None;
    }
    Some(Incoming::Data {
        payload: Cow::Borrowed(data),
        topic: Some(Cow::Borrowed(topic)),
        seq: Some(seq),
    })
}

/// A cursor over the envelope.
struct Scan<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scan<'a> {
    /// `,"key":` → `key`.
    fn key(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.pos..)?.strip_prefix(b",\"")?;
        let end = rest.iter().position(|&b| b == b'"')?;
        if rest.get(end + 1) != Some(&b':') {
            return None;
        }
        self.pos += 2 + end + 2;
        Some(&rest[..end])
    }

    /// An unsigned integer of at most 19 digits (cannot overflow a u64).
    fn number(&mut self) -> Option<u64> {
        crate::payload::parse_u64(self.bytes, &mut self.pos)
    }

    /// A string without escapes: `"..."` → its bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.pos..)?.strip_prefix(b"\"")?;
        // The payload: the one long scan, so a vectorized search.
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' {
            return None;
        }
        self.pos += 1 + end + 1;
        Some(&rest[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> Option<(Vec<u8>, String, u64)> {
        match message(s.as_bytes())? {
            Incoming::Data {
                payload,
                topic: Some(t),
                seq: Some(n),
            } => Some((payload.into_owned(), t.into_owned(), n)),
            _ => None,
        }
    }

    #[test]
    fn scans_the_broker_envelope() {
        let got = data(r#"{"type":"message","topic":"lt.a","seq":121,"ts":1700000000000,"data":"p1:0:2:3:xx"}"#);
        assert_eq!(got, Some((b"p1:0:2:3:xx".to_vec(), "lt.a".into(), 121)));
        let got = data(r#"{"type":"message","topic":"t","seq":5,"data":""}"#);
        assert_eq!(got, Some((Vec::new(), "t".into(), 5)));
        let got = data(r#"{"type":"message","topic":"t","seq":6,"ts":1,"data":{"id":"p1:0:2:3:","a":{"b":1}}}"#);
        assert_eq!(
            got,
            Some((br#"{"id":"p1:0:2:3:","a":{"b":1}}"#.to_vec(), "t".into(), 6))
        );
    }

    #[test]
    fn leaves_anything_else_to_serde() {
        for s in [
            r#"{"type":"message","topic":"t","seq":5,"data":"a\"b"}"#,
            r#"{"type":"message","topic":"t","seq":5,"data":[{"p":1}]}"#,
            r#"{"type":"message","topic":"t","seq":5,"data":{"p":1},"x":1}"#,
            r#"{"type":"message","topic":"t","seq":5,"data":{"#,
            r#"{"type":"message","topic":"t","seq":5,"data":"eA==","encoding":"base64"}"#,
            r#"{"type":"message","topic":"t","seq":5,"ts":"x","data":"a"}"#,
            r#"{"type":"message","topic":"t","ts":1,"seq":5,"data":"a"}"#,
            r#"{"type":"message","topic":"t","seq":,"data":"a"}"#,
            r#"{"type":"message","topic":"t","seq":5,"data":"a"} "#,
            r#"{"type":"message","topic":"t","seq":5,"data":"a"#,
            r#"{"type":"message","topic":"t\"","seq":5,"data":"a"}"#,
            r#"{"type":"ack","id":1}"#,
            r#"{"type":"message","topic":"t","seq":99999999999999999999,"data":"a"}"#,
        ] {
            assert!(message(s.as_bytes()).is_none(), "{s}");
        }
    }
}
