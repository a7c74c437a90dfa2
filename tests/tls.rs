//! TLS with a self-signed certificate made in the test: pub/sub over
//! `wss://`, publishing over `https://`, and a renewed certificate picked up
//! by a reload.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A fresh self-signed certificate for `localhost`, written to temp files.
struct Cert {
    der: CertificateDer<'static>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

fn make_cert(name: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir();
    let cert_file = dir.join(format!("fanout-tls-{}-{name}.crt", std::process::id()));
    let key_file = dir.join(format!("fanout-tls-{}-{name}.key", std::process::id()));
    std::fs::write(&cert_file, ck.cert.pem()).unwrap();
    std::fs::write(&key_file, ck.signing_key.serialize_pem()).unwrap();
    Cert {
        der: ck.cert.der().clone(),
        cert_file,
        key_file,
    }
}

/// A TLS connection trusting only `cert`.
async fn tls_connect(addr: SocketAddr, cert: &CertificateDer<'static>) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// A broker serving `cert` over TLS, with `change` made to its settings.
async fn tls_broker(cert: &Cert, change: impl FnOnce(&mut fanout::config::Config)) -> TestBroker {
    let (c, k) = (cert.cert_file.clone(), cert.key_file.clone());
    spawn_broker_with(|cfg| {
        cfg.tls.cert_file = c.display().to_string();
        cfg.tls.key_file = k.display().to_string();
        change(cfg);
    })
    .await
}

/// A `wss://` WebSocket to `path` (with its query), trusting only `cert`.
async fn wss_to(addr: SocketAddr, cert: &CertificateDer<'static>, path: &str) -> WebSocketStream<TlsStream<TcpStream>> {
    let tls = tls_connect(addr, cert).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("wss://localhost:{}{path}", addr.port()), tls)
        .await
        .unwrap();
    ws
}

async fn wss(addr: SocketAddr, cert: &CertificateDer<'static>) -> WebSocketStream<TlsStream<TcpStream>> {
    wss_to(addr, cert, "/ws").await
}

async fn recv(ws: &mut WebSocketStream<TlsStream<TcpStream>>) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn pub_sub_works_over_wss_and_https() {
    let cert = make_cert("pubsub");
    let b = tls_broker(&cert, |_| {}).await;
    let mut sub = wss(b.addr, &cert.der).await;
    sub.send(Message::Text(
        json!({"op": "subscribe", "topic": "secure", "id": 1})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(recv(&mut sub).await["type"], "ack");
    let mut publisher = wss(b.addr, &cert.der).await;
    publisher
        .send(Message::Text(
            json!({"op": "publish", "topic": "secure", "data": "over tls", "id": 2})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    assert_eq!(recv(&mut sub).await["data"], "over tls");
    // https:// publishing on the same listener.
    let mut tls = tls_connect(b.addr, &cert.der).await.unwrap();
    let body = "\"via https\"";
    tls.write_all(
        format!(
            "POST /api/publish/secure HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(recv(&mut sub).await["data"], "via https");
    // A plain-text client gets no service.
    let (status, _) = tokio::time::timeout(WAIT, async {
        let mut s = TcpStream::connect(b.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        (out.starts_with(b"HTTP/1.1 200"), ())
    })
    .await
    .unwrap();
    assert!(!status);
    b.stop().await;
}

#[tokio::test]
async fn a_refusal_over_the_limit_is_readable_inside_tls() {
    let cert = make_cert("refusal");
    let b = tls_broker(&cert, |cfg| {
        cfg.server.max_connections = 1;
    })
    .await;
    let _held = wss(b.addr, &cert.der).await;
    let mut tls = tls_connect(b.addr, &cert.der)
        .await
        .expect("the refused client still gets TLS");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("server.max_connections"), "{answer}");
    b.stop().await;
}

#[tokio::test]
async fn a_reload_picks_up_a_renewed_certificate() {
    let old = make_cert("old");
    let b = tls_broker(&old, |_| {}).await;
    assert!(tls_connect(b.addr, &old.der).await.is_ok());
    let new = make_cert("new");
    // Renewal in place: the same paths, new contents.
    std::fs::copy(&new.cert_file, &old.cert_file).unwrap();
    std::fs::copy(&new.key_file, &old.key_file).unwrap();
    let settings = (*b.broker.settings()).clone();
    b.broker.apply(settings).expect("the renewed certificate loads");
    assert!(
        tls_connect(b.addr, &new.der).await.is_ok(),
        "the new certificate is served"
    );
    assert!(tls_connect(b.addr, &old.der).await.is_err(), "the old one is not");
    b.stop().await;
}

/// A `wss://` subscriber's frames are written by its flush shard, and by its task once
/// its socket is full: one that reads nothing while thousands of messages are
/// published still gets every one, whole and in order, then a clean close.
#[tokio::test]
async fn a_wss_subscriber_that_falls_behind_gets_every_message_in_order() {
    let cert = make_cert("behind");
    let b = tls_broker(&cert, |cfg| {
        cfg.queue.max_messages = 100_000;
        cfg.queue.max_bytes = 1 << 30;
    })
    .await;
    let mut sub = wss(b.addr, &cert.der).await;
    sub.send(Message::Text(
        json!({"op": "subscribe", "topic": "bulk", "id": 1}).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(recv(&mut sub).await["type"], "ack");
    // Far more than the socket buffers hold: the shard's writes block, the task takes over.
    let (n, pad) = (3_000u64, "x".repeat(4_000));
    let mut publisher = wss(b.addr, &cert.der).await;
    let frames = (1..=n).map(|i| {
        Ok(Message::Text(
            json!({"op": "publish", "topic": "bulk", "data": format!("{i}:{pad}"), "id": i})
                .to_string()
                .into(),
        ))
    });
    publisher
        .send_all(&mut futures_util::stream::iter(frames))
        .await
        .unwrap();
    for _ in 0..n {
        assert_eq!(recv(&mut publisher).await["type"], "ack", "every publish queued");
    }
    for i in 1..=n {
        let m = recv(&mut sub).await;
        assert_eq!(m["seq"], i, "in order");
        assert_eq!(m["data"], format!("{i}:{pad}"), "whole");
    }
    sub.send(Message::Close(None)).await.unwrap();
    let closed = tokio::time::timeout(WAIT, async {
        while let Some(m) = sub.next().await {
            if let Message::Close(_) = m.expect("a clean close, TLS close_notify included") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(closed, "the broker answered the close");
    b.stop().await;
}

/// A `wss://` subscriber is told the broker is going away when it shuts down.
#[tokio::test]
async fn a_wss_subscriber_hears_the_shutdown() {
    let cert = make_cert("drain");
    let b = tls_broker(&cert, |_| {}).await;
    let mut sub = wss(b.addr, &cert.der).await;
    sub.send(Message::Text(
        json!({"op": "subscribe", "topic": "t", "id": 1}).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(recv(&mut sub).await["type"], "ack");
    let stopping = tokio::spawn(b.stop());
    let code = tokio::time::timeout(WAIT, async {
        loop {
            match sub.next().await {
                Some(Ok(Message::Close(Some(f)))) => return Some(u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1001), "going away");
    stopping.await.unwrap();
}

/// The next Socket.IO text packet of a `wss://` Engine.IO connection, answering pings.
async fn sio_text(ws: &mut WebSocketStream<TlsStream<TcpStream>>) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::Text("3".into())).await.unwrap(),
            Message::Text(t) => return t.to_string(),
            _ => continue,
        }
    }
}

/// Socket.IO's WebSocket transport over TLS reads and writes through the same TLS
/// socket as `/ws`: open, join, subscribe, and a publish from the backend arrives.
#[tokio::test]
async fn socketio_works_over_wss() {
    let cert = make_cert("sio");
    let b = tls_broker(&cert, |_| {}).await;
    let mut sio = wss_to(b.addr, &cert.der, "/socket.io/?EIO=4&transport=websocket").await;
    assert!(sio_text(&mut sio).await.starts_with('0'), "the open packet");
    sio.send(Message::Text("40".into())).await.unwrap();
    assert!(sio_text(&mut sio).await.starts_with("40{"), "joined the main namespace");
    sio.send(Message::Text(r#"421["subscribe","secure"]"#.into()))
        .await
        .unwrap();
    let ack = sio_text(&mut sio).await;
    assert!(ack.starts_with(r#"431[{"type":"ack","id":1,"topic":"secure""#), "{ack}");
    let mut publisher = wss(b.addr, &cert.der).await;
    publisher
        .send(Message::Text(
            json!({"op": "publish", "topic": "secure", "data": "to socket.io"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let got = sio_text(&mut sio).await;
    let msg: Value = serde_json::from_str(got.strip_prefix("42").expect("an event")).unwrap();
    assert_eq!(
        (msg[0].as_str(), &msg[1]["data"]),
        (Some("message"), &json!("to socket.io"))
    );
    b.stop().await;
}
