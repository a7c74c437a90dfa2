//! A WebSocket client that offers permessage-deflate (RFC 7692) and reads and
//! writes frames byte by byte, so tests can check exactly what went on the
//! wire: the negotiated answer, which frames have RSV1 set, what they inflate to.

use std::net::SocketAddr;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// The offer every browser makes.
pub const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// What the broker answers an acceptable offer with.
pub const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The opcode.
    pub opcode: u8,
    /// RSV1: the message was compressed.
    pub compressed: bool,
    /// The payload, inflated if it was compressed.
    pub payload: Vec<u8>,
    /// The payload's size on the wire.
    pub wire_len: usize,
}

impl Frame {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.payload.clone()).expect("UTF-8")
    }

    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("JSON")
    }

    /// The close code of a close frame.
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, 8, "a close frame: {self:?}");
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }
}

/// A raw WebSocket connection with the broker's answer to its extension offer.
pub struct DeflateClient {
    stream: TcpStream,
    /// The `Sec-WebSocket-Extensions` answer, if any.
    pub extensions: Option<String>,
}

impl DeflateClient {
    /// Connects to `path`, offering `offer` (none when empty).
    pub async fn connect(addr: SocketAddr, path: &str, offer: &str) -> DeflateClient {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let ext = if offer.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Extensions: {offer}\r\n")
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{ext}\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| v.trim().to_owned())
        });
        DeflateClient { stream, extensions }
    }

    /// The next frame, inflated if compressed (each message on its own: the broker
    /// answers `server_no_context_takeover`).
    pub async fn next(&mut self) -> Frame {
        tokio::time::timeout(WAIT, self.read_frame())
            .await
            .expect("a frame in time")
    }

    /// The next data frame, skipping pings.
    pub async fn next_data(&mut self) -> Frame {
        loop {
            let f = self.next().await;
            if f.opcode != 9 {
                return f;
            }
        }
    }

    async fn read_frame(&mut self) -> Frame {
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h).await.unwrap();
        assert_eq!(h[0] & 0x80, 0x80, "the broker sends whole frames");
        assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).await.unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).await.unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).await.unwrap();
        let compressed = h[0] & 0x40 != 0;
        assert_eq!(h[0] & 0x30, 0, "RSV2 and RSV3 are never set");
        Frame {
            opcode: h[0] & 0x0f,
            compressed,
            payload: if compressed { inflate(&payload) } else { payload },
            wire_len: len,
        }
    }

    /// Sends one masked frame: `first` is FIN, RSV and opcode bits.
    pub async fn send_frame(&mut self, first: u8, payload: &[u8]) {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [3u8, 1, 4, 1];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f).await.unwrap();
    }

    /// Sends `text` compressed, in one frame.
    pub async fn send_compressed_text(&mut self, text: &str) {
        self.send_frame(0x80 | 0x40 | 0x1, &deflate(text.as_bytes())).await;
    }
}

/// The raw deflate of `data` with the sync flush's tail taken off (RFC 7692 §7.2.1).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert_eq!(c.total_in() as usize, data.len());
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Inflates one message compressed without context takeover.
pub fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(data.len() * 8 + 1024);
    loop {
        let before = d.total_in() as usize;
        d.decompress_vec(&input[before..], &mut out, FlushDecompress::Sync)
            .expect("valid deflate data");
        if d.total_in() as usize == input.len() {
            return out;
        }
        out.reserve(out.capacity());
    }
}
