//! [`WsClient`]: connecting (TCP + upgrade handshake) and the unsplit API.

use super::deflate::{self, DeflateParams, Inflater};
use super::frame::invalid;
use super::handshake::{self, WsUrl};
use super::{ClientConfig, Message, WsReader, WsWriter};
use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connected WebSocket client. Use it directly, or [`WsClient::into_split`]
/// it for one reading task and one (or more) writing tasks.
pub struct WsClient {
    reader: WsReader,
    writer: WsWriter,
    /// permessage-deflate as agreed (`None`: not offered, or declined).
    deflate: Option<DeflateParams>,
}

impl WsClient {
    /// Connects to `url` (`ws://host:port/path?query`), optionally binding
    /// the socket to `local_addr` first, and completes the handshake.
    pub async fn connect(url: &str, local_addr: Option<IpAddr>) -> io::Result<WsClient> {
        WsClient::connect_with(
            url,
            ClientConfig {
                local_addr,
                ..ClientConfig::default()
            },
        )
        .await
    }

    /// Connects with explicit [`ClientConfig`] options.
    pub async fn connect_with(url: &str, config: ClientConfig) -> io::Result<WsClient> {
        let parsed = WsUrl::parse(url)?;
        let addr = tokio::net::lookup_host((parsed.host.as_str(), parsed.port))
            .await?
            .next()
            .ok_or_else(|| invalid(format!("cannot resolve {}", parsed.host)))?;
        let mut stream = tcp_connect(addr, config.local_addr).await?;
        stream.set_nodelay(true)?;
        let key = handshake::new_key();
        let mut headers = config.headers.clone();
        if config.deflate {
            headers.push(("Sec-WebSocket-Extensions".into(), deflate::OFFER.into()));
        }
        stream
            .write_all(handshake::request(&parsed, &key, &headers).as_bytes())
            .await?;
        let mut buf = Vec::with_capacity(1024);
        let head = loop {
            if let Some(n) = handshake::head_len(&buf) {
                break n;
            }
            if buf.len() > 16 * 1024 {
                return Err(invalid("handshake response head too large"));
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during handshake",
                ));
            }
        };
        handshake::check_response(&buf[..head], &key)?;
        let deflate = deflate::parse_answer(&handshake::extension_answers(&buf[..head]), config.deflate)
            .map_err(|e| invalid(e.to_string()))?;
        let (rd, wr) = stream.into_split();
        let writer = WsWriter::new(wr);
        let pong_to = config.auto_pong.then(|| writer.clone());
        let reader = WsReader::new(
            rd,
            buf.split_off(head),
            pong_to,
            config.max_message_bytes,
            config.read_buffer,
            deflate.as_ref().map(Inflater::new),
        );
        Ok(WsClient {
            reader,
            writer,
            deflate,
        })
    }

    /// permessage-deflate as the server agreed to it; `None` when not
    /// offered ([`ClientConfig::deflate`]) or declined.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }

    /// Waits for the next complete message (see [`WsReader::next_message`]).
    pub async fn next_message(&mut self) -> io::Result<Message> {
        self.reader.next_message().await
    }

    /// Sends one text message.
    pub async fn send_text(&self, text: &str) -> io::Result<()> {
        self.writer.send_text(text).await
    }

    /// Sends one binary message.
    pub async fn send_binary(&self, data: &[u8]) -> io::Result<()> {
        self.writer.send_binary(data).await
    }

    /// Sends a ping.
    pub async fn send_ping(&self, payload: &[u8]) -> io::Result<()> {
        self.writer.send_ping(payload).await
    }

    /// Sends a close frame with `code` and `reason`.
    pub async fn close(&self, code: u16, reason: &str) -> io::Result<()> {
        self.writer.close(code, reason).await
    }

    /// Sends an arbitrary frame (see [`WsWriter::send_raw_frame`]).
    pub async fn send_raw_frame(&self, opcode: u8, fin: bool, payload: &[u8], masked: bool) -> io::Result<()> {
        self.writer.send_raw_frame(opcode, fin, payload, masked).await
    }

    /// The writer half (a cheap clone sharing the socket).
    pub fn writer(&self) -> WsWriter {
        self.writer.clone()
    }

    /// Splits into a reader and a writer half.
    pub fn into_split(self) -> (WsReader, WsWriter) {
        (self.reader, self.writer)
    }
}

/// Opens the TCP connection, binding to `local` first when given. Binding
/// uses `IP_BIND_ADDRESS_NO_PORT` so the port is chosen at connect time
/// (per destination), which keeps more ephemeral ports available.
async fn tcp_connect(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(local) = local else {
        return TcpStream::connect(addr).await;
    };
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(target_os = "linux")]
    if local.is_ipv4() {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: valid fd, option value points at a live c_int of the given size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    sock.bind(SocketAddr::new(local, 0))?;
    sock.connect(addr).await
}
