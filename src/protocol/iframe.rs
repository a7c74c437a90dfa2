//! Iframe streaming (the "forever frame" of browsers without WebSocket or
//! EventSource): how a published payload becomes the JavaScript value inside
//! `<script>parent.NAME(VALUE)</script>`, and which callback names a stream
//! may ask for.
//!
//! VALUE is the payload as JSON text (JSON as written, text as a JSON
//! string, MessagePack transcoded, binary as a base64 string), which is also
//! a JavaScript expression, escaped so that no payload can end the script
//! element or start markup: `<`, `>` and `&` become `\u003c`, `\u003e`,
//! `\u0026` (so `</script` and `<!--` cannot appear), and U+2028/U+2029
//! become `\u2028`/`\u2029` (line terminators inside strings for engines
//! older than ES2019). Outside strings JSON has none of these characters, so
//! every escape lands inside a string, where it means the same character:
//! the text stays JSON that parses back to the published value.
//!
//! The value is encoded once per message ([`super::Wire::Iframe`]) and
//! shared by every iframe stream; the `<script>parent.NAME(` before it and
//! the `)</script>` after it are each stream's own, made once per connection
//! ([`CallbackName::prefix`], [`CallbackName::suffix`]).

use std::sync::LazyLock;

use bytes::Bytes;

use super::{json, Payload};
use crate::error::RequestError;

/// The longest callback name a stream may ask for.
pub const MAX_CALLBACK_LEN: usize = 128;

/// Callback segments that are refused: they reach code from a string (`eval`,
/// `Function`, the timers), the document (`write`) or navigation (`location`,
/// `open`), so a published value would be run, written as markup or followed in the
/// broker's origin instead of being handed to a page's function.
const REFUSED_SEGMENTS: &[&str] = &[
    "eval",
    "Function",
    "constructor",
    "prototype",
    "__proto__",
    "setTimeout",
    "setInterval",
    "setImmediate",
    "execScript",
    "importScripts",
    "document",
    "write",
    "writeln",
    "location",
    "navigation",
    "navigate",
    "open",
    "opener",
];

/// How many bytes of padding follow the opening tags: some browsers and proxies hold the
/// first KiB of a response before rendering (or running) any of it.
const PADDING_BYTES: usize = 1024;

/// What a stream starts with: the document's opening tags, then a comment padding the
/// response past the first KiB.
static PREAMBLE: LazyLock<Bytes> = LazyLock::new(|| {
    let mut out = b"<!doctype html><html><body>\n<!-- fanout iframe stream; padding so that buffering browsers and proxies start at once: ".to_vec();
    out.resize(out.len() + PADDING_BYTES, b' ');
    out.extend_from_slice(b" -->\n");
    Bytes::from(out)
});

/// The start of an iframe stream (a shared buffer: cloning it copies nothing).
pub fn preamble() -> Bytes {
    PREAMBLE.clone()
}

/// The heartbeat that keeps proxies from closing a quiet stream: a comment, which calls nothing.
pub const HEARTBEAT: &[u8] = b"<!-- ping -->\n";

/// The last piece of a stream whose token expired, before it ends.
pub const TOKEN_EXPIRED: &[u8] = b"<!-- token expired: open the stream again with a fresh token -->\n";

/// A checked callback name: [`MAX_CALLBACK_LEN`] bytes at most of identifiers
/// (`[A-Za-z_$][A-Za-z0-9_$]*`) joined by `.`, none of them a refused one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackName(String);

impl CallbackName {
    /// Checks `name`; the error says what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, RequestError> {
        let bad = |why: String| RequestError::bad_request(format!("callback: {why}"));
        if name.is_empty() {
            return Err(bad(
                "the name is empty; pass ?callback=NAME, a function of the parent page".into(),
            ));
        }
        if name.len() > MAX_CALLBACK_LEN {
            return Err(bad(format!(
                "the name is {} bytes long; at most {MAX_CALLBACK_LEN} are allowed",
                name.len()
            )));
        }
        for segment in name.split('.') {
            let mut chars = segment.chars();
            let Some(first) = chars.next() else {
                return Err(bad(format!(
                    "`{name}` has an empty part; use identifiers joined by dots, such as onQuote or feeds.onQuote"
                )));
            };
            let starts = first.is_ascii_alphabetic() || first == '_' || first == '$';
            if !starts || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                return Err(bad(format!(
                    "`{segment}` is not an identifier; each dot-separated part must match [A-Za-z_$][A-Za-z0-9_$]*"
                )));
            }
            if REFUSED_SEGMENTS.contains(&segment) {
                return Err(bad(format!(
                    "`{segment}` is not allowed in a callback: it reaches code, the document or navigation"
                )));
            }
        }
        Ok(CallbackName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What goes before each value: `<script>parent.NAME(`.
    pub fn prefix(&self) -> Bytes {
        Bytes::from(format!("<script>parent.{}(", self.0))
    }

    /// What goes after each value: `)</script>` and a line break.
    pub fn suffix(&self) -> Bytes {
        Bytes::from_static(b")</script>\n")
    }
}

/// The escaped JavaScript value of `payload` (see the module docs).
pub fn value(payload: &Payload) -> Bytes {
    let mut text = Vec::with_capacity(payload.len() * 4 / 3 + 8);
    json::write_data(&mut text, payload);
    escape(text)
}

/// Escapes JSON text for a script element; returns it as it is when nothing needs escaping.
pub fn escape(text: Vec<u8>) -> Bytes {
    // 0xE2 leads the UTF-8 of U+2028 and U+2029.
    if !text.iter().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2)) {
        return Bytes::from(text);
    }
    let mut out = Vec::with_capacity(text.len() + 32);
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xE2 if text.get(i + 1) == Some(&0x80) && matches!(text.get(i + 2), Some(0xA8 | 0xA9)) => {
                out.extend_from_slice(if text[i + 2] == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_value(s: &str) -> String {
        String::from_utf8(value(&Payload::text(s)).to_vec()).unwrap()
    }

    #[test]
    fn markup_and_line_separators_are_escaped_and_the_value_reads_back() {
        let evil = "</script><script>alert(1)</script> <!-- a & b > c \u{2028}\u{2029}";
        let v = text_value(evil);
        for bad in ["<", ">", "&", "\u{2028}", "\u{2029}"] {
            assert!(!v.contains(bad), "{bad:?} left in {v}");
        }
        assert!(
            v.contains("\\u003c/script\\u003e") && v.contains("\\u2028\\u2029"),
            "{v}"
        );
        assert_eq!(serde_json::from_str::<String>(&v).unwrap(), evil);
    }

    #[test]
    fn json_stays_json_text_and_inner_strings_are_escaped() {
        let raw = "{\"html\":\"<b>&amp;</b>\",\"n\":[1,2.5,null],\"s\":\"\\\\<\"}";
        let v = value(&Payload::Json(Bytes::from(raw)));
        let text = std::str::from_utf8(&v).unwrap();
        assert!(!text.contains('<') && !text.contains('&'), "{text}");
        let back: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, serde_json::from_str::<serde_json::Value>(raw).unwrap());
    }

    #[test]
    fn plain_values_are_not_copied_again() {
        let v = value(&Payload::Json(Bytes::from_static(b"{\"price\":101.5}")));
        assert_eq!(&v[..], b"{\"price\":101.5}");
        assert_eq!(&value(&Payload::text("hi"))[..], b"\"hi\"");
        // Other characters led by 0xE2 (here U+2026 and U+20AC) stay as they are.
        assert_eq!(text_value("\u{2026}\u{20ac}"), "\"\u{2026}\u{20ac}\"");
    }

    #[test]
    fn binary_is_a_base64_string_and_msgpack_becomes_json() {
        assert_eq!(
            &value(&Payload::Binary(Bytes::from_static(&[0, 1, 254, 255])))[..],
            b"\"AAH+/w==\""
        );
        let mp = rmp_serde::to_vec_named(&serde_json::json!({"a": "<x>"})).unwrap();
        assert_eq!(
            &value(&Payload::Msgpack(Bytes::from(mp)))[..],
            b"{\"a\":\"\\u003cx\\u003e\"}"
        );
    }

    #[test]
    fn callbacks_are_dotted_identifiers() {
        for ok in [
            "onQuote",
            "feeds.onQuote",
            "_private",
            "$",
            "a1.$b_2",
            "x".repeat(128).as_str(),
        ] {
            let c = CallbackName::parse(ok).unwrap_or_else(|e| panic!("{ok}: {}", e.message));
            assert_eq!(c.as_str(), ok);
        }
        for (bad, why) in [
            ("", "empty"),
            ("1up", "not an identifier"),
            ("a..b", "empty part"),
            ("a.", "empty part"),
            (".a", "empty part"),
            ("a-b", "not an identifier"),
            ("a(b)", "not an identifier"),
            ("a b", "not an identifier"),
            ("alert;x", "not an identifier"),
            ("caf\u{e9}", "not an identifier"),
            ("eval", "not allowed"),
            ("location.replace", "not allowed"),
            ("x.constructor.constructor", "not allowed"),
            ("document.write", "not allowed"),
        ] {
            let e = CallbackName::parse(bad).unwrap_err().message;
            assert!(e.starts_with("callback: ") && e.contains(why), "{bad}: {e}");
        }
        let long = "x".repeat(129);
        assert!(CallbackName::parse(&long).unwrap_err().message.contains("129 bytes"));
    }

    #[test]
    fn the_call_is_prefix_value_suffix() {
        let c = CallbackName::parse("feeds.onQuote").unwrap();
        let call = [c.prefix(), value(&Payload::text("hi")), c.suffix()].concat();
        assert_eq!(call, b"<script>parent.feeds.onQuote(\"hi\")</script>\n");
    }

    #[test]
    fn the_preamble_opens_the_document_and_pads_past_a_kib() {
        let p = preamble();
        assert!(p.starts_with(b"<!doctype html><html><body>"));
        assert!(p.len() > 1024 && p.ends_with(b"-->\n"));
    }
}
