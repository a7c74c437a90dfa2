//! Logging: `tracing` lines as text (terminals) or JSON (collectors), written
//! through a filter that blanks secrets — `token=` values, `"token":"…"`
//! fields, `Bearer …` credentials — whatever a log call put in the line.
//!
//! Redacting the finished line, rather than trusting every call site, is
//! what makes "tokens never appear in logs" hold for code not yet written.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Names whose values are secrets when followed by `=` or `:` (case-insensitive;
/// `access_token`, `refresh_token` and `x-api-key` are covered too).
const SECRET_KEYS: [&str; 5] = ["token", "api_key", "api-key", "password", "secret"];

/// Schemes whose next word is a credential.
const SECRET_SCHEMES: [&str; 2] = ["bearer ", "basic "];

/// Installs the global subscriber: `RUST_LOG` level (default `info`), `format`, redacted stdout.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a terminal: journald and collectors get plain text.
        .with_ansi(io::stdout().is_terminal())
        .with_writer(RedactingStdout);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => builder.init(),
    }
}

/// Standard output, with every line passed through [`redact`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStdout;

impl<'a> MakeWriter<'a> for RedactingStdout {
    type Writer = RedactingWriter<io::Stdout>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(io::stdout())
    }
}

/// Writes each buffer redacted. The fmt layer writes one whole event per call,
/// so a secret is never split across two writes.
#[derive(Debug)]
pub struct RedactingWriter<W>(pub W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `text` with every secret value replaced by [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for key in SECRET_KEYS {
        for (at, _) in lower.match_indices(key) {
            if let Some(span) = value_after_key(&lower, at + key.len()) {
                spans.push(span);
            }
        }
    }
    for scheme in SECRET_SCHEMES {
        for (at, _) in lower.match_indices(scheme) {
            let start = at + scheme.len();
            let end = value_end(&lower, start);
            if end > start {
                spans.push((start, end));
            }
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end) in spans {
        if start < pos {
            continue;
        }
        out.push_str(&text[pos..start]);
        out.push_str(REDACTED);
        pos = end;
    }
    out.push_str(&text[pos..]);
    Cow::Owned(out)
}

/// The value after a key ending at `at`: past closing quotes, one `=` or `:` and
/// opening quotes (escaped or not). `None` if no separator follows the key.
fn value_after_key(lower: &str, at: usize) -> Option<(usize, usize)> {
    let b = lower.as_bytes();
    let mut i = at;
    while i < b.len() && matches!(b[i], b'"' | b'\'' | b'\\') {
        i += 1;
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    if i >= b.len() || !matches!(b[i], b'=' | b':') {
        return None;
    }
    i += 1;
    while i < b.len() && matches!(b[i], b' ' | b'"' | b'\'' | b'\\') {
        i += 1;
    }
    let end = value_end(lower, i);
    (end > i).then_some((i, end))
}

/// Where a secret starting at `start` ends: at a quote, separator or space.
fn value_end(lower: &str, start: usize) -> usize {
    let b = lower.as_bytes();
    let mut i = start;
    while i < b.len()
        && !matches!(
            b[i],
            b'&' | b'"' | b'\'' | b'\\' | b' ' | b'\t' | b'\n' | b',' | b';' | b'}' | b')'
        )
    {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_json_fields_and_bearer_credentials_are_blanked() {
        let cases = [
            (
                "GET /ws?format=json&token=abc.def-1&x=1",
                "GET /ws?format=json&token=[redacted]&x=1",
            ),
            ("uri=/sse/t?access_token=s3cr3t", "uri=/sse/t?access_token=[redacted]"),
            (
                r#"{"op":"auth","token":"eyJhbGciOi"}"#,
                r#"{"op":"auth","token":"[redacted]"}"#,
            ),
            (
                r#"{"fields":{"req":"{\"token\":\"zzz\"}"}}"#,
                r#"{"fields":{"req":"{\"token\":\"[redacted]\"}"}}"#,
            ),
            ("authorization: Bearer abc123 ok", "authorization: Bearer [redacted] ok"),
            ("TOKEN = QQQ", "TOKEN = [redacted]"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn prose_about_tokens_is_left_alone() {
        let line = "the token expired; send a new one (tokens never appear in logs)";
        assert!(matches!(redact(line), Cow::Borrowed(_)));
    }

    #[test]
    fn the_writer_redacts_what_it_writes() {
        let mut w = RedactingWriter(Vec::new());
        w.write_all(b"query token=hunter2\n").unwrap();
        assert_eq!(String::from_utf8(w.0).unwrap(), "query token=[redacted]\n");
    }
}
