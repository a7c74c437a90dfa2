//! gzip on HTTP answers with bodies, over real sockets: history, the topics
//! list, long-polls (answered at once and after a wait), `/metrics` (both
//! listeners), the dashboard's files, Socket.IO polling and error bodies are
//! gzipped for a client that sends `Accept-Encoding: gzip` and gunzip to the
//! identity answer; without the header or with `gzip;q=0` they are identity
//! (with `Vary`), small answers stay identity, `[compression] enabled = false`
//! turns it all off, and SSE streams and WebSocket upgrades pass untouched.
//! curl (`--compressed`) checks one answer as an independent client.

mod common;

use std::io::Read as _;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use flate2::read::GzDecoder;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const GZIP: (&str, &str) = ("accept-encoding", "gzip");

/// An answer as it came over the wire: nothing decoded but the chunking.
struct Answer {
    status: u16,
    /// `name: value` lines, names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    /// Every value of header `name`.
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of header `name`, if any.
    fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} repeated: {all:?}");
        all.first().copied()
    }

    fn is_gzip(&self) -> bool {
        self.header("content-encoding") == Some("gzip")
    }

    fn varies_on_accept_encoding(&self) -> bool {
        self.all("vary")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|n| n.trim().eq_ignore_ascii_case("accept-encoding"))
    }

    /// The body with its content coding undone.
    fn decoded(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            None => self.body.clone(),
            Some("gzip") => gunzip(&self.body),
            Some(other) => panic!("unexpected content-encoding {other}"),
        }
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("the body is one valid gzip member");
    out
}

/// `GET path` with `headers` on a fresh connection, read to its end.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    request(addr, "GET", path, headers, b"").await
}

/// One request on a fresh connection, its answer read to the end.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(40), s.read_to_end(&mut raw))
        .await
        .expect("the answer in time")
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut a = Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if a.header("transfer-encoding") == Some("chunked") {
        a.body = dechunk(&a.body);
    } else if let Some(len) = a.header("content-length") {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            a.body.len(),
            "content-length is the sent length"
        );
    }
    a
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[line + 2..line + 2 + size]);
        raw = &raw[line + 2 + size + 2..];
    }
}

/// The same request with `Accept-Encoding: gzip` and without: the first gzipped and
/// varying, the second identity and varying; returns both.
async fn gzipped_and_identity(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (Answer, Answer) {
    let mut with = headers.to_vec();
    with.push(GZIP);
    let zipped = get(addr, path, &with).await;
    let plain = get(addr, path, headers).await;
    assert_eq!(zipped.status, plain.status, "{path}");
    assert!(zipped.is_gzip(), "{path}: {:?}", zipped.headers);
    assert!(zipped.varies_on_accept_encoding(), "{path}: {:?}", zipped.headers);
    assert_eq!(plain.header("content-encoding"), None, "{path}");
    assert!(plain.varies_on_accept_encoding(), "{path}: identity still varies");
    assert!(
        zipped.body.len() < plain.body.len(),
        "{path}: {} gzipped vs {} identity",
        zipped.body.len(),
        plain.body.len()
    );
    (zipped, plain)
}

/// Publishes `n` messages of a few hundred bytes each to `topic`.
async fn fill(addr: SocketAddr, topic: &str, n: usize) {
    let mut c = connect(&format!("ws://{addr}/ws")).await;
    for i in 0..n {
        c.publish(
            topic,
            json!({"symbol": "AAPL", "price": 180 + i, "note": "a quote with some words in it"}),
        )
        .await;
    }
    c.close().await;
}

#[tokio::test]
async fn history_is_gzipped_and_gunzips_to_the_identity_answer() {
    let b = spawn_broker().await;
    fill(b.addr, "quotes.h", 40).await;
    let path = "/api/topics/quotes.h/history?since=0";
    let (zipped, plain) = gzipped_and_identity(b.addr, path, &[]).await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.decoded(), plain.body);
    assert_eq!(zipped.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 40);
    // MessagePack answers compress as well: repeated keys.
    let msgpack = [("accept", "application/msgpack")];
    let (zipped, plain) = gzipped_and_identity(b.addr, path, &msgpack).await;
    assert_eq!(zipped.header("content-type"), Some("application/msgpack"));
    assert_eq!(zipped.decoded(), plain.body);
    b.stop().await;
}

#[tokio::test]
async fn the_topics_list_is_gzipped() {
    let b = spawn_broker().await;
    for i in 0..20 {
        http_publish(b.addr, &format!("scores.nba.game-{i}"), &json!(i)).await;
    }
    let (zipped, plain) = gzipped_and_identity(b.addr, "/api/topics", &[]).await;
    // The publish rate moves between the two requests; the rest is the same answer.
    let without_rate = |body: &[u8]| {
        let mut v: Value = serde_json::from_slice(body).unwrap();
        for t in v["topics"].as_array_mut().unwrap() {
            t.as_object_mut().unwrap().remove("rate");
        }
        v
    };
    assert_eq!(without_rate(&zipped.decoded()), without_rate(&plain.body));
    assert_eq!(without_rate(&plain.body)["topics"].as_array().unwrap().len(), 20);
    b.stop().await;
}

#[tokio::test]
async fn a_long_poll_is_gzipped_when_answered_at_once_and_after_a_wait() {
    let b = spawn_broker().await;
    fill(b.addr, "chat.p", 20).await;
    let path = "/api/poll/chat.p?since=0&timeout=5";
    let (zipped, plain) = gzipped_and_identity(b.addr, path, &[]).await;
    assert_eq!(zipped.decoded(), plain.body);
    // A poll that waits is answered (and compressed) when the message comes.
    let addr = b.addr;
    let waiting = tokio::spawn(async move { get(addr, "/api/poll/chat.p?since=20&timeout=10", &[GZIP]).await });
    eventually("the poll waits on chat.p", async || {
        get_json(addr, "/api/topics/chat.p").await.1["subscribers"] == 1
    })
    .await;
    let long = "x".repeat(600);
    http_publish(b.addr, "chat.p", &json!({ "text": long })).await;
    let answer = waiting.await.unwrap();
    assert!(answer.is_gzip(), "{:?}", answer.headers);
    let v: Value = serde_json::from_slice(&answer.decoded()).unwrap();
    assert_eq!(v["seq"], 21);
    assert_eq!(v["messages"][0]["data"]["text"], long);
    b.stop().await;
}

/// The metric names in a Prometheus text answer (values move between scrapes).
fn metric_names(text: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = std::str::from_utf8(text)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn metrics_are_gzipped_for_scrapers_on_both_listeners() {
    let b = spawn_broker_with(|c| c.metrics.listen = "127.0.0.1:0".into()).await;
    eventually("the metrics listener binds", async || {
        b.broker.metrics_addr.get().is_some()
    })
    .await;
    let metrics_addr = *b.broker.metrics_addr.get().unwrap();
    // What Prometheus sends.
    let scraper = [("accept-encoding", "gzip"), ("accept", "text/plain;version=0.0.4")];
    for addr in [b.addr, metrics_addr] {
        let zipped = get(addr, "/metrics", &scraper).await;
        let plain = get(addr, "/metrics", &[]).await;
        assert!(
            zipped.is_gzip() && zipped.varies_on_accept_encoding(),
            "{:?}",
            zipped.headers
        );
        assert!(plain.header("content-encoding").is_none() && plain.varies_on_accept_encoding());
        let names = metric_names(&zipped.decoded());
        assert!(names.contains(&"fanout_connections".to_owned()), "{names:?}");
        assert_eq!(names, metric_names(&plain.body));
        assert!(zipped.body.len() * 3 < plain.body.len());
    }
    b.stop().await;
}

#[tokio::test]
async fn a_batch_publish_answer_is_gzipped() {
    let b = spawn_broker().await;
    let batch: Vec<Value> = (0..30).map(|i| json!({"topic": "chat.batch", "data": i})).collect();
    let body = serde_json::to_vec(&batch).unwrap();
    let json = ("content-type", "application/json");
    let zipped = request(b.addr, "POST", "/api/publish", &[json, GZIP], &body).await;
    assert_eq!(zipped.status, 200);
    assert!(
        zipped.is_gzip() && zipped.varies_on_accept_encoding(),
        "{:?}",
        zipped.headers
    );
    let answers: Vec<Value> = serde_json::from_slice(&zipped.decoded()).unwrap();
    let seqs: Vec<u64> = answers.iter().map(|a| a["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
    // One publish's answer is short: identity.
    let one = request(b.addr, "POST", "/api/publish/chat.batch", &[json, GZIP], b"1").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.header("content-encoding"), None);
    b.stop().await;
}

#[tokio::test]
async fn the_dashboard_files_are_gzipped() {
    let b = spawn_broker().await;
    for path in ["/", "/dashboard.js", "/dashboard.css"] {
        let (zipped, plain) = gzipped_and_identity(b.addr, path, &[]).await;
        assert_eq!(zipped.decoded(), plain.body, "{path}");
        assert_eq!(
            zipped.header("content-security-policy"),
            plain.header("content-security-policy")
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn without_consent_or_with_gzip_refused_the_answer_is_identity() {
    let b = spawn_broker().await;
    fill(b.addr, "quotes.r", 20).await;
    let path = "/api/topics/quotes.r/history";
    let plain = get(b.addr, path, &[]).await;
    for refusal in ["gzip;q=0", "identity", "br, deflate", "*;q=0", "GZIP; q=0.000, *"] {
        let a = get(b.addr, path, &[("accept-encoding", refusal)]).await;
        assert_eq!(a.header("content-encoding"), None, "{refusal}");
        assert!(a.varies_on_accept_encoding(), "{refusal}");
        assert_eq!(a.body, plain.body, "{refusal}");
    }
    for consent in ["gzip, deflate, br", "br;q=1, gzip;q=0.5", "*", "X-GZIP", " Gzip ;Q=1.0"] {
        let a = get(b.addr, path, &[("accept-encoding", consent)]).await;
        assert!(a.is_gzip(), "{consent}");
        assert_eq!(a.decoded(), plain.body, "{consent}");
    }
    // Two header lines are one list.
    let a = get(b.addr, path, &[("accept-encoding", "br"), ("accept-encoding", "gzip")]).await;
    assert!(a.is_gzip());
    b.stop().await;
}

#[tokio::test]
async fn answers_under_min_bytes_stay_identity() {
    let b = spawn_broker().await;
    http_publish(b.addr, "tiny", &json!(1)).await;
    for path in ["/healthz", "/api/topics/tiny", "/api/topics/tiny/history"] {
        let a = get(b.addr, path, &[GZIP]).await;
        assert_eq!(a.status, 200, "{path}");
        assert!(a.body.len() < 256, "{path}: {} bytes", a.body.len());
        assert_eq!(a.header("content-encoding"), None, "{path}");
        // Nobody gets another form of it, so caches need not vary.
        assert!(!a.varies_on_accept_encoding(), "{path}");
    }
    b.stop().await;
}

#[tokio::test]
async fn min_bytes_and_level_follow_the_config() {
    let b = spawn_broker_with(|c| {
        c.compression.min_bytes = 0;
        c.compression.level = 9;
    })
    .await;
    // Even an error body, once over min_bytes.
    let a = get(b.addr, "/no/such/page", &[GZIP]).await;
    assert_eq!(a.status, 404);
    assert!(a.is_gzip());
    let v: Value = serde_json::from_slice(&a.decoded()).unwrap();
    assert_eq!(v["code"], "not_found");
    let ok = get(b.addr, "/healthz", &[GZIP]).await;
    assert!(ok.is_gzip());
    assert_eq!(ok.decoded(), b"ok");
    b.stop().await;
}

#[tokio::test]
async fn compression_disabled_turns_gzip_off() {
    let b = spawn_broker_with(|c| c.compression.enabled = false).await;
    fill(b.addr, "quotes.off", 40).await;
    for path in [
        "/api/topics/quotes.off/history",
        "/api/poll/quotes.off?since=0",
        "/metrics",
        "/",
    ] {
        let a = get(b.addr, path, &[GZIP]).await;
        assert_eq!(a.status, 200, "{path}");
        assert!(a.body.len() > 1000, "{path}");
        assert_eq!(a.header("content-encoding"), None, "{path}");
        assert!(!a.varies_on_accept_encoding(), "{path}");
    }
    b.stop().await;
}

#[tokio::test]
async fn socketio_polling_answers_are_gzipped() {
    let b = spawn_broker_with(|c| c.compression.min_bytes = 0).await;
    let zipped = get(b.addr, "/socket.io/?EIO=4&transport=polling", &[GZIP]).await;
    assert_eq!(zipped.status, 200);
    assert!(zipped.is_gzip(), "{:?}", zipped.headers);
    let open = String::from_utf8(zipped.decoded()).unwrap();
    assert!(open.starts_with("0{"), "{open}");
    let sid = serde_json::from_str::<Value>(&open[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    // The namespace's connect packet, on a poll.
    let (status, _) = http(
        b.addr,
        "POST",
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        Some("text/plain;charset=UTF-8"),
        b"40",
    )
    .await;
    assert_eq!(status, 200);
    let poll = get(
        b.addr,
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        &[GZIP],
    )
    .await;
    assert!(poll.is_gzip());
    assert!(String::from_utf8(poll.decoded()).unwrap().starts_with("40{"));
    b.stop().await;
}

#[tokio::test]
async fn an_sse_stream_stays_uncompressed_and_streams() {
    let b = spawn_broker_with(|c| c.compression.min_bytes = 0).await;
    let mut s = sse_connect(b.addr, "/sse/news", &[GZIP]).await;
    assert_eq!(s.status, 200);
    let head = s.head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(!head.contains("accept-encoding"), "{head}");
    for i in 1..=2 {
        http_publish(b.addr, "news", &json!({ "n": i })).await;
        let ev = s.next_event().await;
        assert_eq!(ev.json()["data"]["n"], i);
    }
    b.stop().await;
}

#[tokio::test]
async fn an_iframe_stream_stays_uncompressed() {
    let b = spawn_broker_with(|c| c.compression.min_bytes = 0).await;
    let mut s = page_connect(b.addr, "/iframe/news?callback=onMessage", &[GZIP]).await;
    assert_eq!(s.status, 200);
    assert!(!s.head.to_ascii_lowercase().contains("content-encoding"), "{}", s.head);
    http_publish(b.addr, "news", &json!("hi")).await;
    let script = s.read_until(b"</script>").await.expect("the stream is open");
    assert!(script.contains("\"hi\""), "{script}");
    b.stop().await;
}

#[tokio::test]
async fn a_websocket_upgrade_with_accept_encoding_still_upgrades() {
    let b = spawn_broker_with(|c| c.compression.min_bytes = 0).await;
    let mut req = b.ws_url("/ws").into_client_request().unwrap();
    req.headers_mut().insert("accept-encoding", "gzip".parse().unwrap());
    let (ws, res) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
        .expect("the upgrade succeeds");
    assert_eq!(res.status(), 101);
    assert!(res.headers().get("content-encoding").is_none());
    let mut c = Client::from_stream(ws);
    c.subscribe("chat.ws").await;
    http_publish(b.addr, "chat.ws", &json!("hello")).await;
    assert_eq!(c.recv().await["data"], "hello");
    c.ws.send(Message::Close(None)).await.unwrap();
    b.stop().await;
}

/// The README's example: `curl --compressed` asks for gzip and decodes it.
#[tokio::test]
async fn curl_compressed_reads_a_gzipped_history() {
    if std::process::Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl is not installed: skipped");
        return;
    }
    let b = spawn_broker().await;
    fill(b.addr, "chat.room1", 30).await;
    let url = format!("http://{}/api/topics/chat.room1/history", b.addr);
    let curl = |args: &[&str]| {
        let mut c = tokio::process::Command::new("curl");
        c.args(args).arg(&url);
        c
    };
    // The README's command as it stands.
    let out = curl(&["--compressed"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plain = get(b.addr, "/api/topics/chat.room1/history", &[]).await;
    assert_eq!(out.stdout, plain.body, "curl's decoding is the identity answer");
    // And what came over the wire was gzip.
    let out = curl(&[
        "--compressed",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%header{content-encoding}",
    ])
    .output()
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "gzip");
    b.stop().await;
}

/// A 1,000-message history answer, gzipped at the default level: the sizes
/// (`cargo test --test http_gzip -- --nocapture thousand` prints them).
#[tokio::test]
async fn a_thousand_message_history_shrinks_several_times() {
    let b = spawn_broker_with(|c| {
        c.history.size = 1000;
        c.http.max_limit = 1000;
    })
    .await;
    fill(b.addr, "quotes.k", 1000).await;
    let (zipped, plain) = gzipped_and_identity(b.addr, "/api/topics/quotes.k/history", &[]).await;
    assert_eq!(zipped.decoded(), plain.body);
    let v: Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 1000);
    eprintln!(
        "1000-message history: {} bytes identity, {} bytes gzip (level 3)",
        plain.body.len(),
        zipped.body.len()
    );
    assert!(zipped.body.len() * 4 < plain.body.len());
    b.stop().await;
}
