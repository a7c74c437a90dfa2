//! The reading half of a connection: buffered reads, frame decoding,
//! reassembly of fragments and automatic pongs.

use super::frame::{self, invalid, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use super::{Message, WsWriter};
use std::io;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

/// The reading half. One `read` syscall fills a buffer holding many frames;
/// [`WsReader::next_message`] then returns them one by one.
pub struct WsReader {
    sock: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
    /// Opcode and collected bytes of a fragmented message in progress.
    partial: Option<(u8, Vec<u8>)>,
    /// Where automatic pongs go; `None` disables them.
    pong_to: Option<WsWriter>,
    max_message: usize,
}

impl WsReader {
    pub(crate) fn new(
        sock: OwnedReadHalf,
        leftover: Vec<u8>,
        pong_to: Option<WsWriter>,
        max_message: usize,
        capacity: usize,
    ) -> WsReader {
        let mut buf = Vec::with_capacity(capacity.max(leftover.len()));
        buf.extend_from_slice(&leftover);
        WsReader {
            sock,
            buf,
            start: 0,
            partial: None,
            pong_to,
            max_message,
        }
    }

    /// The read half, the bytes buffered past the last message, and whether
    /// a fragmented message was in progress (for [`WsReader::detach`]).
    pub(crate) fn into_parts(self) -> (OwnedReadHalf, Vec<u8>, bool) {
        let buffered = self.buf[self.start..].to_vec();
        (self.sock, buffered, self.partial.is_some())
    }

    /// Waits for the next complete message. Pings are answered (when
    /// auto-pong is on) and returned too. A clean TCP close without a close
    /// frame is `UnexpectedEof`.
    pub async fn next_message(&mut self) -> io::Result<Message> {
        loop {
            while let Some((f, used)) = frame::decode_frame(&self.buf[self.start..], self.max_message)? {
                self.start += used;
                if let Some(msg) = self.handle(f).await? {
                    return Ok(msg);
                }
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(self.buf.capacity().max(16 * 1024));
        }
        let n = self.sock.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed without a close frame",
            ));
        }
        Ok(())
    }

    async fn handle(&mut self, f: frame::Frame) -> io::Result<Option<Message>> {
        frame::check_from_server(f.mask.is_some(), f.rsv)?;
        match f.opcode {
            OP_PING => {
                if let Some(w) = &self.pong_to {
                    w.send_pong(&f.payload).await?;
                }
                Ok(Some(Message::Ping(f.payload)))
            }
            OP_PONG => Ok(Some(Message::Pong(f.payload))),
            OP_CLOSE => Ok(Some(Message::Close(frame::parse_close(&f.payload)?))),
            OP_TEXT | OP_BINARY => {
                if self.partial.is_some() {
                    return Err(invalid("new data frame while a fragmented message is in progress"));
                }
                if f.fin {
                    finish(f.opcode, f.payload).map(Some)
                } else {
                    self.partial = Some((f.opcode, f.payload));
                    Ok(None)
                }
            }
            OP_CONTINUATION => {
                let (opcode, mut data) = self
                    .partial
                    .take()
                    .ok_or_else(|| invalid("unexpected continuation frame"))?;
                if data.len() + f.payload.len() > self.max_message {
                    return Err(invalid("fragmented message exceeds the size limit"));
                }
                data.extend_from_slice(&f.payload);
                if f.fin {
                    finish(opcode, data).map(Some)
                } else {
                    self.partial = Some((opcode, data));
                    Ok(None)
                }
            }
            op => Err(invalid(format!("unknown opcode {op:#x}"))),
        }
    }
}

fn finish(opcode: u8, data: Vec<u8>) -> io::Result<Message> {
    if opcode == OP_TEXT {
        String::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| invalid("invalid UTF-8 in a text message"))
    } else {
        Ok(Message::Binary(data))
    }
}
