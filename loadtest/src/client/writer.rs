//! The writing half of a connection: masks and batches outgoing frames.

use super::detach::FdWriter;
use super::frame::{self, invalid, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Mutex;

/// The writing half. Cheap to clone (clones share the socket); frames are
/// masked with a random key each. `queue_*` appends to a buffer and
/// [`WsWriter::flush`] writes it all with one syscall.
#[derive(Clone)]
pub struct WsWriter {
    inner: Arc<Mutex<WriteState>>,
}

struct WriteState {
    sock: WriteSock,
    buf: Vec<u8>,
}

/// Where the bytes go: tokio's write half of the stream, or the write-only
/// registration of a connection whose reading moved elsewhere (see
/// [`super::WsReader::detach`]).
enum WriteSock {
    Tokio(OwnedWriteHalf),
    Detached(FdWriter),
}

impl WsWriter {
    pub(crate) fn new(sock: OwnedWriteHalf) -> WsWriter {
        WsWriter::with_sock(WriteSock::Tokio(sock))
    }

    pub(crate) fn detached(sock: FdWriter) -> WsWriter {
        WsWriter::with_sock(WriteSock::Detached(sock))
    }

    fn with_sock(sock: WriteSock) -> WsWriter {
        WsWriter {
            inner: Arc::new(Mutex::new(WriteState {
                sock,
                buf: Vec::with_capacity(4096),
            })),
        }
    }

    /// Takes tokio's write half back, to reunite it with the read half.
    /// Fails when other clones are alive or frames are still queued.
    pub(crate) fn into_tokio_half(self) -> io::Result<OwnedWriteHalf> {
        let state = Arc::try_unwrap(self.inner)
            .map_err(|_| invalid("the writer is still shared"))?
            .into_inner();
        match state.sock {
            WriteSock::Tokio(half) if state.buf.is_empty() => Ok(half),
            WriteSock::Tokio(_) => Err(invalid("the writer has unflushed frames")),
            WriteSock::Detached(_) => Err(invalid("the writer is already detached")),
        }
    }

    /// Queues one text frame (written on the next flush or send).
    pub async fn queue_text(&self, text: &str) {
        self.queue_frame(OP_TEXT, true, text.as_bytes(), true).await;
    }

    /// Queues one binary frame (written on the next flush or send).
    pub async fn queue_binary(&self, data: &[u8]) {
        self.queue_frame(OP_BINARY, true, data, true).await;
    }

    /// Queues an arbitrary frame; `masked = false` produces a frame a server
    /// must reject (for protocol-violation tests).
    pub async fn queue_frame(&self, opcode: u8, fin: bool, payload: &[u8], masked: bool) {
        let mask = masked.then(rand::random::<[u8; 4]>);
        let mut st = self.inner.lock().await;
        frame::encode_frame(&mut st.buf, opcode, fin, payload, mask);
    }

    /// Writes everything queued so far in one go.
    pub async fn flush(&self) -> io::Result<()> {
        let mut st = self.inner.lock().await;
        let WriteState { sock, buf } = &mut *st;
        if !buf.is_empty() {
            let res = sock.write_all(buf).await;
            buf.clear();
            res?;
        }
        Ok(())
    }

    /// Sends one text message.
    pub async fn send_text(&self, text: &str) -> io::Result<()> {
        self.queue_text(text).await;
        self.flush().await
    }

    /// Sends one binary message.
    pub async fn send_binary(&self, data: &[u8]) -> io::Result<()> {
        self.queue_binary(data).await;
        self.flush().await
    }

    /// Sends a ping with `payload` (at most 125 bytes).
    pub async fn send_ping(&self, payload: &[u8]) -> io::Result<()> {
        self.send_raw_frame(OP_PING, true, payload, true).await
    }

    /// Sends a pong with `payload` (at most 125 bytes).
    pub async fn send_pong(&self, payload: &[u8]) -> io::Result<()> {
        self.send_raw_frame(OP_PONG, true, payload, true).await
    }

    /// Sends a close frame with `code` and `reason` (the connection stays
    /// open until the server answers; keep reading for its close).
    pub async fn close(&self, code: u16, reason: &str) -> io::Result<()> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_raw_frame(OP_CLOSE, true, &payload, true).await
    }

    /// Sends any frame as given: opcode, FIN bit, payload, masked or not.
    pub async fn send_raw_frame(&self, opcode: u8, fin: bool, payload: &[u8], masked: bool) -> io::Result<()> {
        self.queue_frame(opcode, fin, payload, masked).await;
        self.flush().await
    }

    /// Sends raw bytes as they are (no framing at all).
    pub async fn send_raw_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        self.flush().await?;
        let mut st = self.inner.lock().await;
        st.sock.write_all(bytes).await
    }

    /// Shuts the TCP write side down (FIN) after flushing.
    pub async fn shutdown(&self) -> io::Result<()> {
        self.flush().await?;
        let mut st = self.inner.lock().await;
        st.sock.shutdown().await
    }
}

impl AsyncWrite for WriteSock {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSock::Tokio(s) => Pin::new(s).poll_write(cx, buf),
            WriteSock::Detached(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSock::Tokio(s) => Pin::new(s).poll_flush(cx),
            WriteSock::Detached(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSock::Tokio(s) => Pin::new(s).poll_shutdown(cx),
            WriteSock::Detached(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
