//! gzip for HTTP answers with complete bodies: reading what the request's
//! `Accept-Encoding` allows (RFC 9110 §12.5.3), deciding whether an answer
//! is worth compressing, and compressing it with flate2's [`GzEncoder`].
//!
//! The server's router hands every answer through [`encode`]; this module
//! decides, so no handler needs to know about content codings. An answer is
//! gzipped only when all of these hold:
//!
//! - `[compression] enabled` and the client accepts `gzip` (q > 0, or `*`);
//! - the body is complete: its size is exact. A streamed body (SSE, iframe
//!   streams) has no exact size and passes untouched, never buffered;
//! - the status carries a body (not 1xx such as the WebSocket 101, 204, 205,
//!   206, 304) and the request is not a HEAD;
//! - it has no `Content-Encoding` yet, and its type compresses (see
//!   [`compressible`]);
//! - it is at least `[compression] min_bytes` long.
//!
//! An answer that meets every condition but the client's consent is sent as
//! it is with `Vary: Accept-Encoding`, so a shared cache keeps the two forms
//! apart.
//!
//! A long-poll or history answer is built for one client and compressed for
//! that client alone (nothing is shared across subscribers as on the WebSocket
//! path), so its CPU is paid per request, which is why small answers
//! (`min_bytes`) are left alone. Compression runs in the request's own task,
//! except for large bodies: level 3 takes about 1–2 ms for a 150 KB history
//! answer (1,000 messages), too long to hold a worker thread that also runs
//! flush shards and other sessions, so bodies from [`BLOCKING_FROM_BYTES`] on
//! are compressed on tokio's blocking pool.
//!
//! SSE and iframe streams are not compressed: a compressor per stream would
//! cost each stream a deflate state (about 300 KB with zlib-rs at level 3) and
//! each delivery a compression of its own (about 12 µs for a 127-byte message
//! with a sync flush), where a delivery is now a shared buffer's reference
//! count.

use std::io::Write as _;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::debug;

use super::{full, Body};
use crate::config::CompressionConfig;

/// Bodies this long or longer are compressed on the blocking pool: at level 3
/// (around 100 MB/s) 16 KB takes some 150 µs, past what a task should run
/// between two awaits; below it, the hand-off would cost more than it saves.
pub const BLOCKING_FROM_BYTES: usize = 16 * 1024;

/// What a request allows its answer, read before the handler takes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiation {
    /// The client accepts `gzip` (per its `Accept-Encoding`).
    accepts_gzip: bool,
    /// A HEAD request: its answer carries no body to compress.
    head: bool,
}

impl Negotiation {
    /// What `req` allows: its method and its `Accept-Encoding` fields.
    pub fn of<B>(req: &Request<B>) -> Self {
        Negotiation {
            accepts_gzip: accepts_gzip(req.headers()),
            head: req.method() == Method::HEAD,
        }
    }
}

/// Whether the `Accept-Encoding` fields in `headers` accept `gzip`.
///
/// Per RFC 9110 §12.5.3: the fields form one comma-separated list (several
/// lines join into one); `gzip` (or its alias `x-gzip`, §8.4.1.3) with a weight
/// above 0 accepts it, `gzip;q=0` refuses it, and without a `gzip` entry `*`
/// decides. Codings and parameters are case-insensitive. No field at all,
/// or an empty one, means identity. A weight that is not a valid qvalue
/// counts as 0 (identity is always a safe answer), as does a line that is
/// not visible ASCII. When `gzip` is listed twice, the first entry counts.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    let lines = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok());
    for element in lines.flat_map(|l| l.split(',')) {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding == "*" {
            &mut any
        } else {
            // `identity`, `br`, `deflate`, empty list elements: not ours to weigh.
            continue;
        };
        if slot.is_none() {
            *slot = Some(weight(parts));
        }
    }
    gzip.or(any).is_some_and(|thousandths| thousandths > 0)
}

/// The weight (in thousandths, 0..=1000) given by an element's parameters:
/// 1000 without `q`, 0 when `q` is not a valid qvalue.
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> u16 {
    for p in params {
        let Some((name, value)) = p.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            return qvalue(value.trim()).unwrap_or(0);
        }
    }
    1000
}

/// Parses a qvalue (`0`, `0.5`, `1.000`: at most three decimals, at most 1) into
/// thousandths; `None` when it is not one.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether an answer of media type `content_type` is worth compressing: text,
/// JSON, JavaScript, XML and MessagePack (structured data with repeated keys;
/// not already compressed). Anything else — images, fonts, archives, and
/// `application/octet-stream`, which is opaque bytes that may well be
/// compressed already — is sent as it is rather than spend CPU for nothing.
/// No content type: not compressed.
pub fn compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    match kind {
        "text" => true,
        "application" => {
            matches!(
                subtype,
                "json"
                    | "javascript"
                    | "ecmascript"
                    | "xml"
                    | "x-ndjson"
                    | "msgpack"
                    | "x-msgpack"
                    | "vnd.msgpack"
                    | "x-www-form-urlencoded"
            ) || subtype.ends_with("+json")
                || subtype.ends_with("+xml")
        }
        "image" => subtype == "svg+xml",
        _ => false,
    }
}

/// Whether a response with `status` carries a body at all.
fn has_body(status: StatusCode) -> bool {
    // 206: a range of the identity bytes; gzipping it would change what the range means.
    !status.is_informational()
        && !matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
}

/// The answer to send for `res`: gzipped when the request allows it and the answer
/// qualifies (see the module docs), else `res` itself, with `Vary: Accept-Encoding`
/// whenever gzip was a possibility.
pub async fn encode(negotiation: Negotiation, res: Response<Body>, config: &CompressionConfig) -> Response<Body> {
    if !config.enabled || negotiation.head || !has_body(res.status()) {
        return res;
    }
    // No exact size: a stream (SSE, iframe). It passes untouched.
    let Some(len) = res.body().size_hint().exact() else {
        return res;
    };
    let headers = res.headers();
    let typed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(compressible);
    if !typed || headers.contains_key(header::CONTENT_ENCODING) || len < config.min_bytes as u64 {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    add_vary(&mut parts.headers);
    if !negotiation.accepts_gzip {
        return Response::from_parts(parts, body);
    }
    // A body with an exact size is a whole one held in memory (`full`): collecting
    // it takes one poll and copies nothing.
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let level = config.level;
    let compressed = if bytes.len() >= BLOCKING_FROM_BYTES {
        let input = bytes.clone();
        tokio::task::spawn_blocking(move || gzip(&input, level))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    } else {
        gzip(&bytes, level)
    };
    match compressed {
        Ok(compressed) => {
            let h = &mut parts.headers;
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(compressed.len()));
            Response::from_parts(parts, full(compressed))
        }
        Err(e) => {
            // Writing to memory does not fail, and the blocking pool runs while the server
            // does; should either fail, identity is still a right answer.
            debug!(error = %e, "gzip failed; sending identity");
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, full(bytes))
        }
    }
}

/// `bytes` as a gzip member at deflate `level` (1..=9; validated in the config).
pub fn gzip(bytes: &[u8], level: u32) -> std::io::Result<Bytes> {
    // Text and JSON usually shrink to a fifth or less.
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4 + 64), Compression::new(level));
    encoder.write_all(bytes)?;
    Ok(Bytes::from(encoder.finish()?))
}

/// Adds `Accept-Encoding` to the response's `Vary`, keeping what is there
/// (`Vary: Origin` from CORS) and adding nothing to `Vary: *`.
fn add_vary(headers: &mut HeaderMap) {
    let listed = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| {
            let name = name.trim();
            name == "*" || name.eq_ignore_ascii_case("accept-encoding")
        });
    if !listed {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use flate2::read::GzDecoder;

    use super::*;
    use crate::transport::{json_response, text_response};

    fn accepts(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        accepts_gzip(&h)
    }

    #[test]
    fn gzip_listed_with_a_positive_weight_is_accepted() {
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["gzip, deflate, br"]));
        assert!(accepts(&["br;q=1.0, gzip;q=0.8, *;q=0.1"]));
        assert!(accepts(&["gzip;q=1"]));
        assert!(accepts(&["gzip;q=1.000"]));
        assert!(accepts(&["gzip;q=0.001"]));
        assert!(accepts(&["gzip;q=1."]));
        assert!(accepts(&["x-gzip"]));
    }

    #[test]
    fn case_and_whitespace_do_not_matter() {
        assert!(accepts(&["GZIP"]));
        assert!(accepts(&["  deflate ,\tGzip ; Q = 0.5 "]));
        assert!(!accepts(&["gzip ; Q=0"]));
        assert!(accepts(&["identity , gzip"]));
    }

    #[test]
    fn a_zero_weight_refuses_gzip() {
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip;q=0.0"]));
        assert!(!accepts(&["gzip;q=0.000"]));
        assert!(!accepts(&["deflate, gzip;q=0"]));
        // An explicit refusal beats the wildcard, whatever the order.
        assert!(!accepts(&["*, gzip;q=0"]));
        assert!(!accepts(&["gzip;q=0, *;q=1"]));
    }

    #[test]
    fn the_wildcard_counts_when_gzip_is_not_listed() {
        assert!(accepts(&["*"]));
        assert!(accepts(&["br, *;q=0.5"]));
        assert!(!accepts(&["*;q=0"]));
        assert!(!accepts(&["br, *;q=0"]));
        // An explicit gzip beats a refusing wildcard.
        assert!(accepts(&["*;q=0, gzip"]));
    }

    #[test]
    fn no_field_an_empty_one_or_other_codings_mean_identity() {
        assert!(!accepts(&[]));
        assert!(!accepts(&[""]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["deflate, br, zstd"]));
        assert!(!accepts(&["gzipped"]));
        assert!(!accepts(&[", ,"]));
    }

    #[test]
    fn several_lines_form_one_list() {
        assert!(accepts(&["br", "gzip"]));
        assert!(!accepts(&["gzip;q=0", "*"]));
        assert!(!accepts(&["br", "deflate"]));
    }

    #[test]
    fn a_malformed_weight_counts_as_zero() {
        for bad in [
            "gzip;q=",
            "gzip;q=high",
            "gzip;q=1.5",
            "gzip;q=2",
            "gzip;q=0.0001",
            "gzip;q=-1",
            "gzip;q=.5",
        ] {
            assert!(!accepts(&[bad]), "{bad}");
        }
        // Parameters other than q do not change the weight.
        assert!(accepts(&["gzip;level=9"]));
    }

    #[test]
    fn the_first_of_two_gzip_entries_counts() {
        assert!(!accepts(&["gzip;q=0, gzip"]));
        assert!(accepts(&["gzip, gzip;q=0"]));
    }

    #[test]
    fn qvalues_parse_to_thousandths() {
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.25"), Some(250));
        assert_eq!(qvalue("0.125"), Some(125));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.0"), Some(1000));
        assert_eq!(qvalue("1.001"), None);
        assert_eq!(qvalue(""), None);
    }

    #[test]
    fn text_json_and_msgpack_compress_binary_does_not() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "text/plain; charset=utf-8",
            "text/html",
            "text/css; charset=utf-8",
            "text/javascript; charset=utf-8",
            "text/plain; version=0.0.4; charset=utf-8",
            "application/msgpack",
            "application/problem+json",
            "image/svg+xml",
        ] {
            assert!(compressible(yes), "{yes}");
        }
        for no in [
            "application/octet-stream",
            "image/png",
            "font/woff2",
            "application/zip",
            "",
            "json",
        ] {
            assert!(!compressible(no), "{no}");
        }
    }

    fn config(min_bytes: usize) -> CompressionConfig {
        CompressionConfig {
            enabled: true,
            min_bytes,
            level: 3,
        }
    }

    const GZIP: Negotiation = Negotiation {
        accepts_gzip: true,
        head: false,
    };

    async fn body_of(res: Response<Body>) -> Bytes {
        res.into_body().collect().await.unwrap().to_bytes()
    }

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(b).read_to_end(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn a_large_json_answer_is_gzipped_with_its_length_fixed() {
        let body = format!("[{}]", vec!["{\"k\":\"value\"}"; 100].join(","));
        let res = encode(
            GZIP,
            json_response(StatusCode::OK, body.clone().into_bytes()),
            &config(256),
        )
        .await;
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(res.headers()[header::VARY], "Accept-Encoding");
        let length: usize = res.headers()[header::CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
        let compressed = body_of(res).await;
        assert_eq!(length, compressed.len());
        assert!(
            compressed.len() < body.len() / 4,
            "{} of {}",
            compressed.len(),
            body.len()
        );
        assert_eq!(gunzip(&compressed), body.as_bytes());
    }

    #[tokio::test]
    async fn a_body_past_the_blocking_threshold_is_gzipped_on_the_blocking_pool() {
        let body: String = (0..BLOCKING_FROM_BYTES / 8).map(|i| format!("{i:07},")).collect();
        assert!(body.len() >= BLOCKING_FROM_BYTES);
        let res = encode(GZIP, text_response(StatusCode::OK, &body), &config(256)).await;
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(gunzip(&body_of(res).await), body.as_bytes());
    }

    #[tokio::test]
    async fn without_consent_the_answer_is_identity_and_varies() {
        let body = "x".repeat(1000);
        let no = Negotiation {
            accepts_gzip: false,
            head: false,
        };
        let res = encode(no, text_response(StatusCode::OK, &body), &config(256)).await;
        assert!(res.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(res.headers()[header::VARY], "Accept-Encoding");
        assert_eq!(body_of(res).await, body.as_bytes());
    }

    #[tokio::test]
    async fn small_off_head_encoded_or_bodiless_answers_pass_untouched() {
        let body = "y".repeat(1000);
        let untouched = |res: &Response<Body>| {
            res.headers().get(header::CONTENT_ENCODING).is_none() && res.headers().get(header::VARY).is_none()
        };
        let small = encode(GZIP, text_response(StatusCode::OK, "short"), &config(256)).await;
        assert!(untouched(&small));
        let off = CompressionConfig {
            enabled: false,
            ..config(0)
        };
        assert!(untouched(
            &encode(GZIP, text_response(StatusCode::OK, &body), &off).await
        ));
        let head = Negotiation {
            accepts_gzip: true,
            head: true,
        };
        assert!(untouched(
            &encode(head, text_response(StatusCode::OK, &body), &config(0)).await
        ));
        let mut binary = text_response(StatusCode::OK, &body);
        binary.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        assert!(untouched(&encode(GZIP, binary, &config(0)).await));
        let mut encoded = text_response(StatusCode::OK, &body);
        encoded
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        let encoded = encode(GZIP, encoded, &config(0)).await;
        assert_eq!(encoded.headers()[header::CONTENT_ENCODING], "br");
        assert_eq!(body_of(encoded).await, body.as_bytes());
        for status in [
            StatusCode::SWITCHING_PROTOCOLS,
            StatusCode::NO_CONTENT,
            StatusCode::NOT_MODIFIED,
        ] {
            let mut r = text_response(status, &body);
            *r.status_mut() = status;
            assert!(untouched(&encode(GZIP, r, &config(0)).await), "{status}");
        }
    }

    /// A stream that never yields (an SSE stream with nothing published yet).
    struct Quiet;

    impl hyper::body::Body for Quiet {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_streamed_body_is_never_buffered() {
        let mut res = Response::new(Quiet.boxed());
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        // Were the body collected, this would never return.
        let res = encode(GZIP, res, &config(0)).await;
        assert!(res.headers().get(header::CONTENT_ENCODING).is_none());
        assert!(res.headers().get(header::VARY).is_none());
    }

    #[tokio::test]
    async fn an_existing_vary_is_kept_and_extended_once() {
        let body = "z".repeat(1000);
        let mut res = text_response(StatusCode::OK, &body);
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
        let res = encode(GZIP, res, &config(0)).await;
        let vary: Vec<_> = res.headers().get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Origin", "Accept-Encoding"]);
        let mut res = text_response(StatusCode::OK, &body);
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("origin, accept-encoding"));
        let res = encode(GZIP, res, &config(0)).await;
        assert_eq!(res.headers().get_all(header::VARY).iter().count(), 1);
    }

    #[tokio::test]
    async fn error_bodies_are_gzipped_too() {
        let message = "no route ".repeat(50);
        let res = encode(
            GZIP,
            crate::transport::error_response(StatusCode::NOT_FOUND, "not_found", &message),
            &config(256),
        )
        .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
        let v: serde_json::Value = serde_json::from_slice(&gunzip(&body_of(res).await)).unwrap();
        assert_eq!(v["message"], message);
    }
}
