//! Test support: a real broker on port 0, and clients that speak to it the
//! way users do — tokio-tungstenite (an independent WebSocket
//! implementation) and plain HTTP/1.1 over TCP.

#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod deflate;
pub mod nats;
pub mod process;
pub mod socketio;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fanout::config::Config;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// Resident memory of this test process (broker and clients), in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// How often [`holds_by`] looks again.
const RECHECK: Duration = Duration::from_millis(10);

/// Waits until `check` says yes, for [`WAIT`] at most; panics naming `what` when it
/// never does. For a condition the broker shows but sends no event for (a sweep
/// ran, the server side of a closed connection ended): where a message, a line or
/// an answer can be awaited, await it instead.
pub async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    assert!(
        holds_by(tokio::time::Instant::now() + WAIT, check).await,
        "not within {WAIT:?}: {what}"
    );
}

/// Asks `check` every few milliseconds until it says yes (`true`) or `deadline`
/// passes (`false`), for a caller with its own deadline or its own failure message.
#[must_use = "assert on it: false means the condition never held"]
pub async fn holds_by(deadline: tokio::time::Instant, mut check: impl AsyncFnMut() -> bool) -> bool {
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(RECHECK).await;
    }
}

/// A broker running in this process on an ephemeral port.
pub struct TestBroker {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its shared state, to look inside.
    pub broker: Arc<fanout::broker::Broker>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a broker with the default settings.
pub async fn spawn_broker() -> TestBroker {
    spawn_broker_with(|_| {}).await
}

/// Starts a broker with settings changed by `change`.
pub async fn spawn_broker_with(change: impl FnOnce(&mut Config)) -> TestBroker {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    change(&mut config);
    config.validate().expect("test config is valid");
    let listener = fanout::server::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = fanout::broker::Broker::new(Arc::new(config)).expect("the test config starts a broker");
    let (stop, stopped) = oneshot::channel::<()>();
    let b = Arc::clone(&broker);
    let task = tokio::spawn(async move {
        fanout::server::serve(listener, b, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    TestBroker {
        addr,
        broker,
        stop: Some(stop),
        task,
    }
}

impl TestBroker {
    /// `ws://addr{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Drains and waits for the server to stop.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(WAIT, &mut self.task).await;
    }
}

/// A WebSocket client (tokio-tungstenite).
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    msgpack: bool,
}

/// Connects to `url`.
pub async fn connect(url: &str) -> Client {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    Client {
        ws,
        msgpack: url.contains("format=msgpack"),
    }
}

/// What a client received.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<(u16, String)>),
    /// The connection ended without a close frame.
    Ended,
}

impl Client {
    /// Wraps a stream connected by the test itself (JSON protocol).
    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Client { ws, msgpack: false }
    }

    /// Sends a request as JSON text or MessagePack, matching the connection's format.
    pub async fn send(&mut self, request: Value) {
        let m = if self.msgpack {
            Message::Binary(rmp_serde::to_vec_named(&request).unwrap().into())
        } else {
            Message::Text(request.to_string().into())
        };
        self.ws.send(m).await.unwrap();
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: &[u8]) {
        self.ws.send(Message::Binary(data.to_vec().into())).await.unwrap();
    }

    /// The next data frame or close, skipping pings and pongs.
    pub async fn next(&mut self) -> Got {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            return match m {
                Some(Ok(Message::Text(t))) => Got::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => Got::Binary(b.to_vec()),
                Some(Ok(Message::Close(c))) => Got::Close(c.map(|c| (u16::from(c.code), c.reason.to_string()))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Got::Ended,
            };
        }
    }

    /// The next protocol message as JSON (MessagePack converted), panicking on anything else.
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Got::Text(t) => serde_json::from_str(&t).unwrap(),
            Got::Binary(b) => msgpack_to_json(&b),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Subscribes and waits for the ack; returns it.
    pub async fn subscribe(&mut self, topic: &str) -> Value {
        self.send(json!({"op": "subscribe", "topic": topic, "id": 1})).await;
        let ack = self.recv().await;
        assert_eq!(ack["type"], "ack", "subscribe to {topic}: {ack}");
        ack
    }

    /// Publishes and waits for the ack; returns its seq.
    pub async fn publish(&mut self, topic: &str, data: Value) -> u64 {
        self.send(json!({"op": "publish", "topic": topic, "data": data, "id": 2}))
            .await;
        let ack = self.recv().await;
        assert_eq!(ack["type"], "ack", "publish to {topic}: {ack}");
        ack["seq"].as_u64().unwrap()
    }

    /// Expects the connection to close with `code`; returns the reason.
    pub async fn expect_close(&mut self, code: u16) -> String {
        loop {
            match self.next().await {
                Got::Close(Some((c, reason))) => {
                    assert_eq!(c, code, "close reason: {reason}");
                    return reason;
                }
                Got::Text(_) | Got::Binary(_) => continue,
                other => panic!("expected close {code}, got {other:?}"),
            }
        }
    }

    /// Closes politely.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

/// A `/ws` client connected with a tiny receive buffer, so a reader that stops
/// reading backs up fast.
pub async fn stalled_client(b: &TestBroker) -> Client {
    stalled_client_at(b, "/ws").await
}

/// As [`stalled_client`], on any WebSocket path.
pub async fn stalled_client_at(b: &TestBroker, path: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(b.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(b.ws_url(path), MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    Client::from_stream(ws)
}

/// A raw TCP client after a real WebSocket handshake on `path`, for tests that send
/// hand-made frames or must control reading exactly. `recv_buffer` shrinks the
/// socket's receive buffer, so a client that stops reading backs the server up fast.
pub async fn raw_ws(b: &TestBroker, path: &str, recv_buffer: Option<u32>) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut s = socket.connect(b.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Byte by byte, so not one byte of the first frame is taken with the head.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "accept key per RFC 6455 §1.3: {head}"
    );
    s
}

/// A masked client frame with a payload under 126 bytes.
pub fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "short frames only");
    let mut f = vec![(fin as u8) << 7 | opcode, 0x80 | payload.len() as u8];
    let mask = [9u8, 8, 7, 6];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The head of a `GET path` request with `extra` header lines and `headers`.
fn get_request(addr: SocketAddr, path: &str, extra: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n{extra}");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Converts MessagePack to JSON for assertions (binary becomes an array of numbers).
pub fn msgpack_to_json(b: &[u8]) -> Value {
    let v: rmpv::Value = rmpv::decode::read_value(&mut &b[..]).unwrap();
    serde_json::to_value(&v).unwrap()
}

/// One HTTP/1.1 request over a fresh connection; returns the status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let headers: Vec<(&str, &str)> = content_type.map(|ct| ("content-type", ct)).into_iter().collect();
    http_with(addr, method, path, &headers, body).await
}

/// One HTTP/1.1 request with `headers`; returns the status and body.
pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    read_response(s, WAIT).await
}

/// Reads a `connection: close` response to its end, within `limit`: the status and
/// the body (de-chunked when it came chunked).
async fn read_response(mut s: TcpStream, limit: Duration) -> (u16, Vec<u8>) {
    let mut out = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a full response");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut d = Dechunk::default();
        d.push(&out[split + 4..]);
        d.out
    } else {
        out[split + 4..].to_vec()
    };
    (status, body)
}

/// `http` with a JSON body and a JSON answer.
pub async fn http_json(addr: SocketAddr, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, b) = http(
        addr,
        method,
        path,
        Some("application/json"),
        body.to_string().as_bytes(),
    )
    .await;
    (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// One HTTP/1.1 GET with extra headers; returns the status and body.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = get_request(addr, path, "connection: close\r\n", headers);
    s.write_all(req.as_bytes()).await.unwrap();
    // Long enough for a long-poll that runs to its timeout.
    read_response(s, Duration::from_secs(40)).await
}

/// `http_get` with a JSON answer.
pub async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, b) = http_get(addr, path, &[]).await;
    (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// A chunked transfer-encoding decoder fed bytes as they arrive.
#[derive(Default)]
struct Dechunk {
    raw: Vec<u8>,
    out: Vec<u8>,
    /// The last (empty) chunk arrived: the body is complete.
    ended: bool,
}

impl Dechunk {
    fn push(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..line_end]).unwrap().trim(), 16).unwrap();
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            let start = line_end + 2;
            self.out.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
            self.ended |= size == 0;
        }
    }
}

/// One Server-Sent Event (or a comment, with `event` "comment").
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A client of a streamed HTTP response (SSE, iframe) over a plain TCP connection.
pub struct SseClient {
    stream: TcpStream,
    pub status: u16,
    pub head: String,
    body: Dechunk,
    eof: bool,
}

/// Opens `GET path` as an event stream with extra headers.
pub async fn sse_connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
    open_stream(addr, path, "accept: text/event-stream\r\n", headers).await
}

/// Opens `GET path` as a browser loads a page (an iframe stream), with extra headers.
pub async fn page_connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
    open_stream(addr, path, "accept: text/html\r\n", headers).await
}

/// Sends `GET path` and reads the response head; the body is read as it comes.
async fn open_stream(addr: SocketAddr, path: &str, extra: &str, headers: &[(&str, &str)]) -> SseClient {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = get_request(addr, path, extra, headers);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the response head");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = Dechunk::default();
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    if chunked {
        body.push(&raw[split + 4..]);
    } else {
        body.out.extend_from_slice(&raw[split + 4..]);
    }
    SseClient {
        stream,
        status,
        head,
        body,
        eof: false,
    }
}

impl SseClient {
    /// The body from where the last read stopped through the first `end` after it; `None`
    /// when the stream ended first.
    pub async fn read_until(&mut self, end: &[u8]) -> Option<String> {
        loop {
            if let Some(at) = self.body.out.windows(end.len()).position(|w| w == end) {
                let piece: Vec<u8> = self.body.out.drain(..at + end.len()).collect();
                return Some(String::from_utf8(piece).unwrap());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads more of the body; false when the stream ended.
    async fn fill(&mut self) -> bool {
        if self.eof || self.body.ended {
            return false;
        }
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
            .await
            .expect("more of the stream in time")
            .unwrap_or(0);
        if n == 0 {
            self.eof = true;
        } else {
            self.body.push(&buf[..n]);
        }
        true
    }

    /// The next event or comment; `None` when the stream ended.
    pub async fn next_any(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.body.out.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.body.out.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let mut ev = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut datas = Vec::new();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    if let Some(comment) = line.strip_prefix(':') {
                        ev.event = "comment".into();
                        datas.push(comment.trim().to_string());
                    } else if let Some((k, v)) = line.split_once(':') {
                        let v = v.strip_prefix(' ').unwrap_or(v).to_string();
                        match k {
                            "id" => ev.id = Some(v),
                            "event" => ev.event = v,
                            "data" => datas.push(v),
                            _ => {}
                        }
                    }
                }
                ev.data = datas.join("\n");
                return Some(ev);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next event, skipping heartbeat comments.
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            let ev = self.next_any().await.expect("the stream is still open");
            if ev.event != "comment" {
                return ev;
            }
        }
    }
}

/// `POST /api/publish/{topic}` with JSON `data` and an `Idempotency-Key`; the answer.
pub async fn http_publish_once(addr: SocketAddr, topic: &str, data: &Value, key: &str) -> (u16, Value) {
    let headers = [("content-type", "application/json"), ("idempotency-key", key)];
    let path = format!("/api/publish/{topic}");
    let (status, b) = http_with(addr, "POST", &path, &headers, data.to_string().as_bytes()).await;
    (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// Publishes `data` (JSON) over HTTP; returns the seq.
pub async fn http_publish(addr: SocketAddr, topic: &str, data: &Value) -> u64 {
    let (status, v) = http_json(addr, "POST", &format!("/api/publish/{topic}"), data).await;
    assert_eq!(status, 200, "{v}");
    v["seq"].as_u64().unwrap()
}

/// Publishes `body` over HTTP as `content_type` (`text/plain`, `application/json`,
/// `application/msgpack`, `application/octet-stream`); returns the seq.
pub async fn http_publish_as(addr: SocketAddr, topic: &str, content_type: &str, body: &[u8]) -> u64 {
    let (status, answer) = http(addr, "POST", &format!("/api/publish/{topic}"), Some(content_type), body).await;
    let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    assert_eq!(status, 200, "publish {content_type} to {topic}: {v}");
    v["seq"].as_u64().unwrap()
}
