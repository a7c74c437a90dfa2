//! permessage-deflate (`--deflate`) end to end.
//!
//! Against the Node `ws` peer (`loadtest/peers/node-ws`, started with
//! `--deflate` or `--deflate=takeover`): a short raw fan-out of scoreboard
//! (and quote) payloads loses nothing, the extension is agreed on every
//! connection, and the wire bytes per delivery fall well below the
//! uncompressed run's, with the server's context kept across messages or
//! not. Skipped, loudly, when node or the peer's node_modules are missing
//! (`npm ci --prefix loadtest/peers/node-ws`; with CI set a missing peer is
//! a failure).
//!
//! Against scripted servers: answers RFC 7692 does not allow fail the
//! connection with a message naming the problem, compressed messages are
//! inflated by the tokio-side reader too (with the window kept), and RSV1
//! where it must not be is a protocol error.

mod common;

use fanout_loadtest::client::frame::{self, OP_PING, OP_TEXT};
use fanout_loadtest::client::handshake::accept_key;
use fanout_loadtest::client::{ClientConfig, Message, WsClient};
use fanout_loadtest::outcome::RunReport;
use fanout_loadtest::run::{run, RunConfig};
use fanout_loadtest::shape::PayloadShape;
use flate2::{Compress, Compression, FlushCompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;

/// Starts the Node ws peer with `args`; `None` (skip) without node or its node_modules.
async fn node_ws(test: &str, args: &[&str]) -> Option<(Child, String)> {
    common::node_peer(test, "node-ws", "ws", args, &["server on"]).await
}

/// A 2-second raw fan-out to 5 subscribers of `shape` payloads of `bytes`.
fn fanout(url: &str, shape: PayloadShape, bytes: usize, deflate: bool) -> RunConfig {
    let mut cfg = common::raw_fanout(url.to_string(), 5, 200.0, bytes, 1);
    cfg.opts.payload_shape = shape;
    cfg.opts.deflate = deflate;
    cfg
}

/// Runs `cfg` and checks that every delivery arrived once; returns the
/// report and the step's wire bytes per delivery.
async fn lossless(cfg: RunConfig) -> (RunReport, f64) {
    let report = run(cfg).await.unwrap();
    assert_eq!(report.connect.connected, 6, "{:?}", report.connect.first_error);
    let step = &report.steps[0];
    let c = &step.counters;
    assert_eq!((c.sent, c.expected), (400, 2000), "{c:?}");
    assert_eq!(c.received, 2000, "lost {}", step.lost);
    assert_eq!((c.duplicates, c.reordered, c.foreign, c.errors), (0, 0, 0, 0), "{c:?}");
    let wire = step.wire_bytes_per_delivery.expect("deliveries");
    (report, wire)
}

#[tokio::test]
async fn deflate_shrinks_a_scoreboard_from_node_ws() {
    let test = "deflate_shrinks_a_scoreboard_from_node_ws";
    let Some((mut node, url)) = node_ws(test, &["--deflate"]).await else {
        return;
    };
    let (plain, plain_wire) = lossless(fanout(&url, PayloadShape::Scoreboard, 2048, false)).await;
    assert!(plain.deflate.is_none(), "not offered, so not reported");
    let message = plain.steps[0].message_bytes_per_delivery.unwrap();
    // Uncompressed: the wire carries the message and its frame header.
    assert!((1843.0..2253.0).contains(&message), "{message}");
    assert!(
        plain_wire >= message && plain_wire < message + 16.0,
        "{plain_wire} vs {message}"
    );

    let (packed, wire) = lossless(fanout(&url, PayloadShape::Scoreboard, 2048, true)).await;
    let d = packed.deflate.as_ref().unwrap();
    assert_eq!((d.agreed, d.connections), (6, 6));
    assert_eq!(
        d.answer.as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    // Inflated, the messages are what they were.
    assert_eq!(packed.steps[0].message_bytes_per_delivery, Some(message));
    let ratio = wire / plain_wire;
    eprintln!("scoreboard 2048 B from node ws, server_no_context_takeover: {wire:.1} vs {plain_wire:.1} wire B/delivery ({ratio:.3})");
    assert!(ratio < 0.6, "{wire} vs {plain_wire}");
    assert!(
        ratio > 0.1,
        "a scoreboard does not shrink 10x alone: {wire} vs {plain_wire}"
    );
    let _ = node.kill().await;
}

#[tokio::test]
async fn deflate_keeps_the_window_when_node_ws_takes_its_context_over() {
    let test = "deflate_keeps_the_window_when_node_ws_takes_its_context_over";
    let Some((mut node, url)) = node_ws(test, &["--deflate=takeover"]).await else {
        return;
    };
    for (shape, bytes) in [(PayloadShape::Scoreboard, 2048), (PayloadShape::Quote, 200)] {
        let (report, wire) = lossless(fanout(&url, shape, bytes, true)).await;
        let d = report.deflate.as_ref().unwrap();
        assert_eq!((d.agreed, d.connections), (6, 6));
        assert_eq!(d.answer.as_deref(), Some("permessage-deflate"));
        let message = report.steps[0].message_bytes_per_delivery.unwrap();
        let ratio = wire / message;
        eprintln!("{shape:?} {bytes} B from node ws, context takeover: {wire:.1} wire B/delivery for {message:.1} B messages ({ratio:.3})");
        // Each message refers back to the ones before: a wrong window would
        // not inflate (errors) or inflate to garbage (foreign payloads).
        assert!(ratio < 0.6, "{shape:?}: {wire} vs {message}");
    }
    let _ = node.kill().await;
}

/// A server that answers the upgrade with `extensions` (a header value,
/// or none) and then sends `frames`, and keeps the connection open.
async fn scripted(extensions: Option<&'static str>, frames: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let frames = frames.clone();
            tokio::spawn(async move {
                let request = read_head(&mut sock).await;
                let key = request
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .expect("key header")
                    .trim()
                    .to_string();
                let mut resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: {}\r\n",
                    accept_key(&key)
                );
                if let Some(e) = extensions {
                    resp.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
                }
                resp.push_str("\r\n");
                sock.write_all(resp.as_bytes()).await.unwrap();
                sock.write_all(&frames).await.unwrap();
                let mut sink = [0u8; 1024];
                while sock.read(&mut sink).await.unwrap_or(0) > 0 {}
            });
        }
    });
    url
}

async fn read_head(sock: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(sock.read_buf(&mut buf).await.unwrap() > 0);
    }
    String::from_utf8(buf).unwrap()
}

async fn connect(url: &str, deflate: bool) -> std::io::Result<WsClient> {
    let config = ClientConfig {
        deflate,
        ..ClientConfig::default()
    };
    WsClient::connect_with(url, config).await
}

#[tokio::test]
async fn answers_rfc_7692_does_not_allow_fail_the_connection() {
    for (answer, offered, expect) in [
        ("x-webkit-deflate-frame", true, "x-webkit-deflate-frame"),
        ("permessage-deflate", false, "not offer"),
        (
            "permessage-deflate; server_max_window_bits=16",
            true,
            "server_max_window_bits",
        ),
        (
            "permessage-deflate; client_max_window_bits",
            true,
            "client_max_window_bits",
        ),
        ("permessage-deflate; mystery", true, "mystery"),
        ("permessage-deflate, permessage-deflate", true, "more than once"),
    ] {
        let url = scripted(Some(answer), Vec::new()).await;
        let err = connect(&url, offered).await.err().expect("must fail");
        assert!(err.to_string().contains(expect), "{answer}: {err}");
    }
    // A server that declines (no answer) leaves the connection uncompressed.
    let url = scripted(None, Vec::new()).await;
    assert!(connect(&url, true).await.unwrap().deflate().is_none());
}

/// Compresses `msg` as a server keeping its context: sync flush, tail cut.
fn compress(c: &mut Compress, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    c.compress_vec(msg, &mut out, FlushCompress::Sync).unwrap();
    out.truncate(out.len() - 4);
    out
}

#[tokio::test]
async fn the_reader_inflates_with_the_servers_window() {
    let mut c = Compress::new(Compression::new(6), false);
    let msgs = [r#"{"home":"Harbor City Hawks","score":87}"#; 3];
    let mut frames = Vec::new();
    for m in msgs {
        frame::encode_compressed_frame(&mut frames, OP_TEXT, true, &compress(&mut c, m.as_bytes()), None);
    }
    // A fragmented compressed message: RSV1 on the first frame only.
    let whole = compress(&mut c, b"fragmented and compressed");
    frame::encode_compressed_frame(&mut frames, OP_TEXT, false, &whole[..4], None);
    frame::encode_frame(&mut frames, frame::OP_CONTINUATION, true, &whole[4..], None);
    frame::encode_frame(&mut frames, OP_TEXT, true, b"plain", None);
    let url = scripted(Some("permessage-deflate"), frames).await;
    let mut ws = connect(&url, true).await.unwrap();
    assert_eq!(ws.deflate().map(|d| d.server_no_context_takeover), Some(false));
    for m in msgs {
        assert_eq!(ws.next_message().await.unwrap(), Message::Text(m.into()));
    }
    let got = ws.next_message().await.unwrap();
    assert_eq!(got, Message::Text("fragmented and compressed".into()));
    assert_eq!(ws.next_message().await.unwrap(), Message::Text("plain".into()));
}

#[tokio::test]
async fn rsv1_where_it_must_not_be_is_a_protocol_error() {
    let mut ping = Vec::new();
    frame::encode_compressed_frame(&mut ping, OP_PING, true, b"", None);
    for (extensions, offered, frames) in [
        (Some("permessage-deflate"), true, ping.clone()),
        (None, true, {
            let mut f = Vec::new();
            frame::encode_compressed_frame(&mut f, OP_TEXT, true, b"\x03\x00", None);
            f
        }),
    ] {
        let url = scripted(extensions, frames).await;
        let mut ws = connect(&url, offered).await.unwrap();
        let err = ws.next_message().await.expect_err("a protocol error");
        assert!(err.to_string().contains("RSV"), "{err}");
    }
}
