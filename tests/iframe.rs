//! Iframe streaming (`GET /iframe/{topic}?callback=NAME`) over real sockets:
//! the HTML document and its headers, one `<script>parent.NAME(VALUE)</script>`
//! per message for every kind of payload, escaping that no payload gets
//! past, replay with `since`, heartbeats, bad callbacks, grants, token expiry,
//! the origin check, the metrics label and shutdown.

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

/// What every stream starts with.
const DOCUMENT_START: &str = "<!doctype html><html><body>";
/// A stream's heartbeat.
const HEARTBEAT: &str = "<!-- ping -->\n";

/// Opens an iframe stream on `path` and reads past its preamble; checks the preamble.
async fn open(b: &TestBroker, path: &str, headers: &[(&str, &str)]) -> SseClient {
    let mut s = page_connect(b.addr, path, headers).await;
    assert_eq!(s.status, 200, "{path}: {}", s.head);
    let preamble = s.read_until(b"-->\n").await.expect("the preamble");
    assert!(preamble.starts_with(DOCUMENT_START), "{preamble}");
    assert!(
        preamble.len() > 1024,
        "padded past the first KiB: {} bytes",
        preamble.len()
    );
    s
}

/// The next call the page gets, as its text (`<script>...</script>\n`), heartbeats skipped.
async fn next_call_text(s: &mut SseClient) -> String {
    let piece = s.read_until(b"</script>\n").await.expect("the stream is still open");
    // Heartbeats go between batches, never inside a call.
    let at = piece.find("<script>").unwrap_or_else(|| panic!("no call in {piece:?}"));
    assert!(piece[..at].split_inclusive('\n').all(|h| h == HEARTBEAT), "{piece:?}");
    piece[at..].to_owned()
}

/// The value the next call hands `callback`, read back as JSON.
async fn next_value(s: &mut SseClient, callback: &str) -> Value {
    let call = next_call_text(s).await;
    let value = call
        .strip_prefix(&format!("<script>parent.{callback}("))
        .and_then(|rest| rest.strip_suffix(")</script>\n"))
        .unwrap_or_else(|| panic!("not a call of parent.{callback}: {call:?}"));
    serde_json::from_str(value).unwrap_or_else(|e| panic!("{value:?} is not JSON: {e}"))
}

#[tokio::test]
async fn a_stream_is_an_html_document_calling_the_parent_once_per_message() {
    let b = spawn_broker().await;
    let mut s = open(&b, "/iframe/quotes.AAPL?callback=onQuote", &[]).await;
    let head = s.head.to_ascii_lowercase();
    for header in [
        "content-type: text/html; charset=utf-8",
        "cache-control: no-cache",
        "x-accel-buffering: no",
        "x-content-type-options: nosniff",
        "transfer-encoding: chunked",
    ] {
        assert!(head.contains(header), "{header} missing from {head}");
    }
    http_publish_as(
        b.addr,
        "quotes.AAPL",
        "application/json",
        br#"{"sym":"AAPL","price":101.5}"#,
    )
    .await;
    assert_eq!(
        next_call_text(&mut s).await,
        "<script>parent.onQuote({\"sym\":\"AAPL\",\"price\":101.5})</script>\n"
    );
    http_publish_as(b.addr, "quotes.AAPL", "text/plain", b"market closed").await;
    assert_eq!(next_value(&mut s, "onQuote").await, json!("market closed"));
    // JSON as its publisher wrote it, line breaks and all.
    http_publish_as(b.addr, "quotes.AAPL", "application/json", b"[1,\n 2.5,\n null]").await;
    assert_eq!(next_value(&mut s, "onQuote").await, json!([1, 2.5, null]));
    let mp = rmp_serde::to_vec_named(&json!({"bid": 101, "ask": 102})).unwrap();
    http_publish_as(b.addr, "quotes.AAPL", "application/msgpack", &mp).await;
    assert_eq!(next_value(&mut s, "onQuote").await, json!({"bid": 101, "ask": 102}));
    // A dotted callback names a function further down the parent.
    let mut dotted = open(&b, "/iframe/quotes.AAPL?callback=feeds.quotes.on_tick", &[]).await;
    http_publish(b.addr, "quotes.AAPL", &json!(7)).await;
    assert_eq!(next_value(&mut s, "onQuote").await, json!(7));
    assert_eq!(next_value(&mut dotted, "feeds.quotes.on_tick").await, json!(7));
    b.stop().await;
}

#[tokio::test]
async fn no_payload_can_end_the_script_or_break_out_of_it() {
    let b = spawn_broker().await;
    let mut s = open(&b, "/iframe/evil?callback=show", &[]).await;
    let text = "</script><script>alert(1)</script> <!-- & --> \u{2028}\u{2029} </SCRIPT>";
    let json_payload = "{\"html\":\"</script><img src=x onerror=alert(1)>\",\"ls\":\"a\u{2028}b\"}";
    http_publish_as(b.addr, "evil", "text/plain", text.as_bytes()).await;
    http_publish_as(b.addr, "evil", "application/json", json_payload.as_bytes()).await;
    for expected in [json!(text), serde_json::from_str::<Value>(json_payload).unwrap()] {
        let call = next_call_text(&mut s).await;
        assert_eq!(
            call.to_ascii_lowercase().matches("</script").count(),
            1,
            "only the server's own </script> may end the element: {call}"
        );
        for bad in ["<!--", "-->", "&", "\u{2028}", "\u{2029}"] {
            assert!(!call.contains(bad), "{bad:?} got through: {call}");
        }
        assert_eq!(call.matches('<').count(), 2, "only the server's tags: {call}");
        let value = &call["<script>parent.show(".len()..call.len() - ")</script>\n".len()];
        assert_eq!(serde_json::from_str::<Value>(value).unwrap(), expected, "{value}");
    }
    b.stop().await;
}

#[tokio::test]
async fn binary_payloads_arrive_as_base64_strings() {
    let b = spawn_broker().await;
    let mut s = open(&b, "/iframe/bin?callback=onBytes", &[]).await;
    http_publish_as(b.addr, "bin", "application/octet-stream", &[0, 1, 2, 253, 254, 255]).await;
    assert_eq!(next_value(&mut s, "onBytes").await, json!("AAEC/f7/"));
    b.stop().await;
}

#[tokio::test]
async fn since_replays_history_before_the_live_stream() {
    let b = spawn_broker().await;
    for i in 1..=3 {
        http_publish(b.addr, "feed", &json!(i)).await;
    }
    let mut s = open(&b, "/iframe/feed?callback=f&since=1", &[]).await;
    assert_eq!(next_value(&mut s, "f").await, json!(2));
    assert_eq!(next_value(&mut s, "f").await, json!(3));
    http_publish(b.addr, "feed", &json!(4)).await;
    assert_eq!(next_value(&mut s, "f").await, json!(4));
    // Without since, a new stream starts live.
    let mut live = open(&b, "/iframe/feed?callback=f", &[]).await;
    http_publish(b.addr, "feed", &json!(5)).await;
    assert_eq!(next_value(&mut live, "f").await, json!(5));
    b.stop().await;
}

#[tokio::test]
async fn history_loss_is_not_told_as_a_call() {
    // A gap notice would look like data to the callback: the page gets the messages only.
    let b = spawn_broker_with(|c| c.history.size = 2).await;
    for i in 1..=6 {
        http_publish(b.addr, "lossy", &json!(i)).await;
    }
    let mut s = open(&b, "/iframe/lossy?callback=f&since=1", &[]).await;
    assert_eq!(next_value(&mut s, "f").await, json!(5));
    assert_eq!(next_value(&mut s, "f").await, json!(6));
    b.stop().await;
}

#[tokio::test]
async fn heartbeats_keep_a_quiet_stream_open() {
    let b = spawn_broker_with(|c| c.http.sse_heartbeat = Duration::from_millis(100)).await;
    let mut s = open(&b, "/iframe/quiet?callback=f", &[]).await;
    assert_eq!(s.read_until(HEARTBEAT.as_bytes()).await.as_deref(), Some(HEARTBEAT));
    assert_eq!(s.read_until(HEARTBEAT.as_bytes()).await.as_deref(), Some(HEARTBEAT));
    http_publish(b.addr, "quiet", &json!("still here")).await;
    assert_eq!(next_value(&mut s, "f").await, json!("still here"));
    b.stop().await;
}

#[tokio::test]
async fn bad_or_missing_callbacks_and_bad_requests_are_400_naming_the_problem() {
    let b = spawn_broker().await;
    let long = format!("/iframe/t?callback={}", "x".repeat(129));
    for (path, needle) in [
        ("/iframe/t", "callback: missing"),
        ("/iframe/t?since=1", "callback: missing"),
        ("/iframe/t?callback=", "empty"),
        ("/iframe/t?callback=1up", "not an identifier"),
        ("/iframe/t?callback=a..b", "empty part"),
        ("/iframe/t?callback=alert%281%29", "not an identifier"),
        ("/iframe/t?callback=x%3Balert", "not an identifier"),
        ("/iframe/t?callback=a%3C%2Fscript%3E", "not an identifier"),
        ("/iframe/t?callback=eval", "not allowed"),
        ("/iframe/t?callback=location.replace", "not allowed"),
        (long.as_str(), "129 bytes"),
        ("/iframe/t?callback=f&since=x", "since"),
        ("/iframe/a.*?callback=f", "pattern"),
        ("/iframe/bad..topic?callback=f", "empty token"),
    ] {
        let (status, body) = http_get(b.addr, path, &[]).await;
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{path}: {body:?}"));
        assert_eq!(status, 400, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    b.stop().await;
}

const SECRET: &str = "iframe-test-secret";

fn token(subscribe: &[&str], exp_in_secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": "page", "exp": now + exp_in_secs, "subscribe": subscribe, "publish": []});
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn jwt_broker() -> TestBroker {
    spawn_broker_with(|c| {
        c.auth.mode = fanout::config::AuthMode::Jwt;
        c.auth.jwt_secret = SECRET.into();
        c.auth.jwt_leeway = Duration::ZERO;
        c.auth.publish_keys = vec!["pub-key".into()];
        c.auth.anonymous_subscribe = vec!["public.>".into()];
    })
    .await
}

#[tokio::test]
async fn grants_decide_who_may_open_a_stream_as_for_sse() {
    let b = jwt_broker().await;
    let news = token(&["news.*"], 3600);
    let bearer = format!("Bearer {news}");
    for (path, headers, expected) in [
        ("/iframe/secret?callback=f".to_owned(), vec![], 401),
        (format!("/iframe/secret?callback=f&token={news}"), vec![], 403),
        (
            "/iframe/secret?callback=f".to_owned(),
            vec![("authorization", bearer.as_str())],
            403,
        ),
        ("/iframe/news.a?callback=f&token=forged".to_owned(), vec![], 401),
    ] {
        let (status, body) = http_get(b.addr, &path, &headers).await;
        assert_eq!(status, expected, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(
            !String::from_utf8_lossy(&body).contains(&news),
            "no answer echoes the token"
        );
    }
    // A page passes its token in the URL, as an iframe cannot set headers.
    let mut s = open(&b, &format!("/iframe/news.a?callback=f&token={news}"), &[]).await;
    let mut anonymous = open(&b, "/iframe/public.scores?callback=f", &[]).await;
    for (topic, value) in [("news.a", "extra"), ("public.scores", "3-1")] {
        let (code, _) = http_with(
            b.addr,
            "POST",
            &format!("/api/publish/{topic}"),
            &[("x-api-key", "pub-key"), ("content-type", "text/plain")],
            value.as_bytes(),
        )
        .await;
        assert_eq!(code, 200);
    }
    assert_eq!(next_value(&mut s, "f").await, json!("extra"));
    assert_eq!(next_value(&mut anonymous, "f").await, json!("3-1"));
    b.stop().await;
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let b = jwt_broker().await;
    let mut s = open(
        &b,
        &format!("/iframe/news.a?callback=f&token={}", token(&["news.*"], 2)),
        &[],
    )
    .await;
    let last = s.read_until(b"-->\n").await.expect("told why before the end");
    assert!(last.contains("token expired"), "{last}");
    assert_eq!(s.read_until(b"\n").await, None, "the stream ends after saying why");
    b.stop().await;
}

#[tokio::test]
async fn an_origin_outside_the_allowed_ones_is_refused() {
    let b = spawn_broker_with(|c| c.server.allowed_origins = vec!["https://app.example.com".into()]).await;
    let (status, body) = http_get(b.addr, "/iframe/t?callback=f", &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("server.allowed_origins"));
    let mut s = open(&b, "/iframe/t?callback=f", &[("origin", "https://app.example.com")]).await;
    http_publish(b.addr, "t", &json!(1)).await;
    assert_eq!(next_value(&mut s, "f").await, json!(1));
    b.stop().await;
}

#[tokio::test]
async fn streams_count_under_their_own_transport_and_end_on_shutdown() {
    let b = spawn_broker().await;
    let mut s = open(&b, "/iframe/end?callback=f", &[]).await;
    let metric = r#"fanout_connections{transport="iframe"} 1"#;
    eventually("the stream counts as an iframe connection", async || {
        let (_, body) = http_get(b.addr, "/metrics", &[]).await;
        String::from_utf8_lossy(&body).lines().any(|l| l == metric)
    })
    .await;
    http_publish(b.addr, "end", &json!("last")).await;
    assert_eq!(next_value(&mut s, "f").await, json!("last"));
    let stop = tokio::spawn(b.stop());
    assert_eq!(s.read_until(b"\n").await, None, "the stream ends on shutdown");
    stop.await.unwrap();
}
