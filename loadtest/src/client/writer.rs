//! The writing half of a connection: masks and batches outgoing frames.

use super::frame::{self, invalid, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use super::stream::WriteSock;
use std::io;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
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

impl WsWriter {
    pub(crate) fn new(sock: WriteSock) -> WsWriter {
        WsWriter {
            inner: Arc::new(Mutex::new(WriteState {
                sock,
                buf: Vec::with_capacity(4096),
            })),
        }
    }

    /// Takes the stream's write half back, to reunite it with the read
    /// half. Fails when other clones are alive, frames are still queued or
    /// the writer is already detached.
    pub(crate) fn into_stream_half(self) -> io::Result<WriteSock> {
        let state = Arc::try_unwrap(self.inner)
            .map_err(|_| invalid("the writer is still shared"))?
            .into_inner();
        match state.sock {
            WriteSock::Detached(_) | WriteSock::DetachedTls(_) => Err(invalid("the writer is already detached")),
            _ if !state.buf.is_empty() => Err(invalid("the writer has unflushed frames")),
            half => Ok(half),
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
        if sock.keeps_records() {
            // Written is not sent on TLS: the records that did not fit the
            // socket wait in rustls (also those a receive thread owes).
            sock.flush().await?;
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
        st.sock.write_all(bytes).await?;
        if st.sock.keeps_records() {
            st.sock.flush().await?;
        }
        Ok(())
    }

    /// Shuts the TCP write side down (FIN) after flushing.
    pub async fn shutdown(&self) -> io::Result<()> {
        self.flush().await?;
        let mut st = self.inner.lock().await;
        st.sock.shutdown().await
    }
}
