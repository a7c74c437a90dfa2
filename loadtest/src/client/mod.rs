//! A small, fast WebSocket client (RFC 6455, `ws://` and `wss://`) written
//! for load testing and for the broker's integration tests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fanout_loadtest::client::{Message, WsClient};
//! let mut ws = WsClient::connect("ws://127.0.0.1:8080/ws?format=json", None).await?;
//! ws.send_text(r#"{"op":"subscribe","topic":"chat.room1","id":1}"#).await?;
//! while let Message::Text(t) = ws.next_message().await? {
//!     println!("{t}");
//! }
//! # Ok(()) }
//! ```
//!
//! * Frames the client sends are masked with a fresh random key; frames from
//!   the server must be unmasked (a masked one is a protocol error).
//! * Fragmented messages are reassembled; pings are answered with pongs
//!   automatically (see [`ClientConfig::auto_pong`]) and still returned.
//! * Reads are buffered (one `read` fetches many frames) and
//!   [`WsWriter::queue_text`] + [`WsWriter::flush`] batch many frames into
//!   one `write`.
//! * [`WsClient::into_split`] gives a reader and a writer half for separate
//!   tasks; [`WsWriter::send_raw_frame`] sends arbitrary (even invalid)
//!   frames for protocol-violation tests.
//! * [`WsReader::detach`] hands the reading to a blocking loop of your own
//!   (the load tester's epoll threads) while writes stay in tokio.
//! * [`ClientConfig::deflate`] offers permessage-deflate (RFC 7692) as
//!   browsers do ([`deflate`]); compressed messages are inflated, and what
//!   the server agreed to is [`WsClient::deflate`]. Our own frames go
//!   uncompressed (RSV1 clear), which the RFC allows.
//! * `wss://` runs over rustls with the [`ClientConfig::tls`] configuration
//!   ([`tls::client_config`]: a CA file, or any certificate); a detached
//!   TLS connection's receive thread decrypts and its tokio writer
//!   encrypts under one shared rustls state ([`tls`]).

mod connect;
pub mod deflate;
mod detach;
pub mod frame;
pub mod handshake;
mod reader;
mod stream;
pub mod tls;
mod writer;

pub use connect::WsClient;
pub use detach::{Detached, DetachedTls};
pub use reader::WsReader;
pub use writer::WsWriter;

use std::net::IpAddr;
use std::sync::Arc;

/// A complete message received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (validated UTF-8).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A close frame with its optional status code and reason.
    Close(Option<(u16, String)>),
    /// A ping with its payload (already answered when `auto_pong` is on).
    Ping(Vec<u8>),
    /// A pong with its payload.
    Pong(Vec<u8>),
}

/// Connection options for [`WsClient::connect_with`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Local address to bind the socket to before connecting (spreads
    /// connections over 127.0.0.x to get more ephemeral ports).
    pub local_addr: Option<IpAddr>,
    /// Answer pings with pongs automatically (default true).
    pub auto_pong: bool,
    /// Largest accepted message, in bytes (default 64 MiB).
    pub max_message_bytes: usize,
    /// Extra request headers, e.g. `Sec-WebSocket-Protocol`.
    pub headers: Vec<(String, String)>,
    /// Initial read buffer capacity in bytes (default 16 KiB).
    pub read_buffer: usize,
    /// Offer permessage-deflate (`Sec-WebSocket-Extensions:
    /// permessage-deflate; client_max_window_bits`, default false). The
    /// server's answer is checked; an extension or parameter it must not
    /// answer fails the connection.
    pub deflate: bool,
    /// The TLS configuration `wss://` URLs need (see [`tls::client_config`]);
    /// without it they fail, saying what to trust.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            local_addr: None,
            auto_pong: true,
            max_message_bytes: 64 << 20,
            headers: Vec::new(),
            read_buffer: 16 * 1024,
            deflate: false,
            tls: None,
        }
    }
}
