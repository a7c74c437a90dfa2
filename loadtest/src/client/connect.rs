//! [`WsClient`]: connecting (TCP, TLS for `wss://`, the upgrade handshake)
//! and the unsplit API.

use super::deflate::{self, DeflateParams, Inflater};
use super::frame::invalid;
use super::handshake::{self, WsUrl};
use super::stream::{CountedTcp, ReadSock, WriteSock};
use super::tls::{self, RecordCounter, TlsError};
use super::{ClientConfig, Message, WsReader, WsWriter};
use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// A connected WebSocket client. Use it directly, or [`WsClient::into_split`]
/// it for one reading task and one (or more) writing tasks.
pub struct WsClient {
    reader: WsReader,
    writer: WsWriter,
    /// permessage-deflate as agreed (`None`: not offered, or declined).
    deflate: Option<DeflateParams>,
    /// `wss://`: what was negotiated ([`tls::describe`]).
    tls: Option<String>,
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

    /// Connects with explicit [`ClientConfig`] options. A `wss://` URL
    /// needs [`ClientConfig::tls`].
    pub async fn connect_with(url: &str, config: ClientConfig) -> io::Result<WsClient> {
        let parsed = WsUrl::parse(url)?;
        let tls_config = match (&config.tls, parsed.tls) {
            (Some(c), true) => Some(c.clone()),
            (None, true) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    TlsError::NoTrust.to_string(),
                ))
            }
            (_, false) => None,
        };
        let addr = tokio::net::lookup_host((parsed.host.as_str(), parsed.port))
            .await?
            .next()
            .ok_or_else(|| invalid(format!("cannot resolve {}", parsed.host)))?;
        let stream = tcp_connect(addr, config.local_addr).await?;
        stream.set_nodelay(true)?;
        let Some(tls_config) = tls_config else {
            let mut stream = stream;
            let (leftover, deflate) = upgrade(&mut stream, &parsed, &config).await?;
            let (rd, wr) = stream.into_split();
            return Ok(WsClient::new(
                ReadSock::Tcp(rd),
                WriteSock::Tcp(wr),
                leftover,
                deflate,
                None,
                &config,
            ));
        };
        let name = tls::server_name(&parsed.host)?;
        let counted = CountedTcp {
            tcp: stream,
            records: RecordCounter::default(),
        };
        let mut stream = TlsConnector::from(tls_config)
            .connect(name, counted)
            .await
            .map_err(|e| tls::handshake_error(&parsed.host, parsed.port, e))?;
        let (leftover, deflate) = upgrade(&mut stream, &parsed, &config).await?;
        let session = tls::describe(stream.get_ref().1);
        let (rd, wr) = tokio::io::split(stream);
        Ok(WsClient::new(
            ReadSock::Tls(rd),
            WriteSock::Tls(wr),
            leftover,
            deflate,
            Some(session),
            &config,
        ))
    }

    fn new(
        rd: ReadSock,
        wr: WriteSock,
        leftover: Vec<u8>,
        deflate: Option<DeflateParams>,
        tls: Option<String>,
        config: &ClientConfig,
    ) -> WsClient {
        let writer = WsWriter::new(wr);
        let pong_to = config.auto_pong.then(|| writer.clone());
        let reader = WsReader::new(
            rd,
            leftover,
            pong_to,
            config.max_message_bytes,
            config.read_buffer,
            deflate.as_ref().map(Inflater::new),
        );
        WsClient {
            reader,
            writer,
            deflate,
            tls,
        }
    }

    /// `wss://`: the protocol version, cipher suite and key exchange
    /// negotiated (e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519`); `None` on `ws://`.
    pub fn tls(&self) -> Option<&str> {
        self.tls.as_deref()
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

/// The HTTP upgrade on `stream` (TCP, or TLS over it): sends the request,
/// reads and checks the answer's head; returns the bytes read past it and
/// permessage-deflate as agreed.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    url: &WsUrl,
    config: &ClientConfig,
) -> io::Result<(Vec<u8>, Option<DeflateParams>)> {
    let key = handshake::new_key();
    let mut headers = config.headers.clone();
    if config.deflate {
        headers.push(("Sec-WebSocket-Extensions".into(), deflate::OFFER.into()));
    }
    stream
        .write_all(handshake::request(url, &key, &headers).as_bytes())
        .await?;
    stream.flush().await?;
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
    Ok((buf.split_off(head), deflate))
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
