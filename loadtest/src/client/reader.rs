//! The reading half of a connection: buffered reads, frame decoding,
//! reassembly of fragments, inflating (permessage-deflate) and automatic pongs.

use super::deflate::Inflater;
use super::frame::{self, invalid, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, RSV1};
use super::stream::ReadSock;
use super::{Message, WsWriter};
use std::io;
use tokio::io::AsyncReadExt;

/// The reading half. One `read` syscall fills a buffer holding many frames;
/// [`WsReader::next_message`] then returns them one by one.
pub struct WsReader {
    sock: ReadSock,
    buf: Vec<u8>,
    start: usize,
    /// Opcode, compressed flag and collected bytes of a fragmented message in progress.
    partial: Option<(u8, bool, Vec<u8>)>,
    /// Where automatic pongs go; `None` disables them.
    pong_to: Option<WsWriter>,
    max_message: usize,
    /// permessage-deflate's inflater, when agreed.
    inflater: Option<Inflater>,
    /// Bytes read from the socket after the upgrade response (wire bytes;
    /// on TLS, the plaintext).
    read_bytes: u64,
}

/// What [`WsReader::into_parts`] gives back for [`WsReader::detach`].
pub(crate) struct ReaderParts {
    pub(crate) sock: ReadSock,
    /// Bytes read past the last message returned.
    pub(crate) buffered: Vec<u8>,
    /// A fragmented message was in progress.
    pub(crate) partial: bool,
    pub(crate) inflater: Option<Inflater>,
    pub(crate) read_bytes: u64,
}

impl WsReader {
    pub(crate) fn new(
        sock: ReadSock,
        leftover: Vec<u8>,
        pong_to: Option<WsWriter>,
        max_message: usize,
        capacity: usize,
        inflater: Option<Inflater>,
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
            inflater,
            read_bytes: leftover.len() as u64,
        }
    }

    /// Everything [`WsReader::detach`] hands on.
    pub(crate) fn into_parts(self) -> ReaderParts {
        ReaderParts {
            buffered: self.buf[self.start..].to_vec(),
            partial: self.partial.is_some(),
            sock: self.sock,
            inflater: self.inflater,
            read_bytes: self.read_bytes,
        }
    }

    /// Bytes read from the socket so far, after the upgrade response:
    /// frame headers and (compressed) payloads, as on the wire.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
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
        self.read_bytes += n as u64;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed without a close frame",
            ));
        }
        Ok(())
    }

    async fn handle(&mut self, f: frame::Frame) -> io::Result<Option<Message>> {
        frame::check_from_server(f.mask.is_some(), f.rsv, f.opcode, self.inflater.is_some())?;
        let compressed = f.rsv & RSV1 != 0;
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
                    self.finish(f.opcode, compressed, f.payload).map(Some)
                } else {
                    self.partial = Some((f.opcode, compressed, f.payload));
                    Ok(None)
                }
            }
            OP_CONTINUATION => {
                let (opcode, compressed, mut data) = self
                    .partial
                    .take()
                    .ok_or_else(|| invalid("unexpected continuation frame"))?;
                if data.len() + f.payload.len() > self.max_message {
                    return Err(invalid("fragmented message exceeds the size limit"));
                }
                data.extend_from_slice(&f.payload);
                if f.fin {
                    self.finish(opcode, compressed, data).map(Some)
                } else {
                    self.partial = Some((opcode, compressed, data));
                    Ok(None)
                }
            }
            op => Err(invalid(format!("unknown opcode {op:#x}"))),
        }
    }

    /// A whole message: inflated when compressed, then checked as text.
    fn finish(&mut self, opcode: u8, compressed: bool, data: Vec<u8>) -> io::Result<Message> {
        let data = match &mut self.inflater {
            // `check_from_server` let RSV1 through only with an inflater.
            Some(inflater) if compressed => inflater
                .inflate(&data, self.max_message)
                .map_err(|e| invalid(e.to_string()))?
                .to_vec(),
            _ => data,
        };
        to_message(opcode, data)
    }
}

fn to_message(opcode: u8, data: Vec<u8>) -> io::Result<Message> {
    if opcode == OP_TEXT {
        String::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| invalid("invalid UTF-8 in a text message"))
    } else {
        Ok(Message::Binary(data))
    }
}
