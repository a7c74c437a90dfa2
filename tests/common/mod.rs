//! Test support: a real broker on port 0, and clients that speak to it the
//! way users do — tokio-tungstenite (an independent WebSocket
//! implementation) and plain HTTP/1.1 over TCP.

#![allow(dead_code)]

pub mod process;

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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = fanout::broker::Broker::new(Arc::new(config));
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
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        req.push_str(&format!("content-type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a full response");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, out[split + 4..].to_vec())
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
