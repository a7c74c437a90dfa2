//! Reads complete WebSocket messages from a client, enforcing what
//! fastwebsockets leaves to the server: masked client frames, fragment
//! sequencing, UTF-8 across fragments (failing fast), the total message
//! size, control frame sizes, and close frame validity. Each violation
//! becomes the close code RFC 6455 asks for. On a connection that agreed
//! to permessage-deflate, a message whose first frame has RSV1 set is
//! inflated as its frames arrive, the size limit applying to what it
//! inflates to (RFC 7692 §6, §8.1).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::protocol::deflate::{InflateError, Inflater};
use crate::protocol::frame::RSV1;

/// What the reader got.
#[derive(Debug)]
pub enum Incoming {
    /// A complete text message (valid UTF-8).
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping; answer with a pong carrying the payload.
    Ping(Bytes),
    /// A pong (only proves the client is alive).
    Pong,
    /// The client closes; answer with this code.
    Close(u16),
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadEnd {
    /// The client broke the protocol: close with this code and reason.
    Violation(u16, String),
    /// The connection ended without a close handshake.
    Gone,
}

impl ReadEnd {
    fn protocol(reason: impl Into<String>) -> Self {
        ReadEnd::Violation(1002, reason.into())
    }
}

/// A message being collected from fragments.
struct Partial {
    text: bool,
    data: BytesMut,
    /// Bytes of `data` known to be valid UTF-8.
    valid: usize,
    /// Inflates a compressed message; `None`: `data` is the payload as sent.
    inflater: Option<Box<Inflater>>,
    /// Bytes of a compressed message read off the wire so far.
    compressed: usize,
}

/// One frame off the wire, unmasked.
struct Frame {
    fin: bool,
    /// RSV1: the first frame of a compressed message.
    compressed: bool,
    opcode: OpCode,
    payload: BytesMut,
}

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

/// Reads frames and assembles messages. Frames are parsed here rather than by
/// fastwebsockets' reader because it hides whether a frame was masked and
/// reserves a frame's declared length before checking it against our limit;
/// its SIMD unmasking is still used.
pub struct MessageReader<R> {
    read: R,
    buf: BytesMut,
    /// `limits.max_message_bytes`, narrow as every connection keeps it (saturated at 4 GiB).
    max_message_bytes: u32,
    /// Boxed: most connections are between messages most of the time.
    partial: Option<Box<Partial>>,
    /// permessage-deflate was agreed: RSV1 marks a compressed message.
    inflate: bool,
}

/// Read buffer size; grown only for a frame that needs more.
const READ_BUF: usize = 4096;

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// A reader that refuses messages over `max_message_bytes` with 1009.
    pub fn new(read: R, max_message_bytes: usize) -> Self {
        Self::with_early(read, Bytes::new(), max_message_bytes)
    }

    /// As [`MessageReader::new`], reading `early` (bytes that came with the handshake) first.
    pub fn with_early(read: R, early: Bytes, max_message_bytes: usize) -> Self {
        MessageReader {
            read,
            buf: BytesMut::from(&early[..]),
            max_message_bytes: u32::try_from(max_message_bytes).unwrap_or(u32::MAX),
            partial: None,
            inflate: false,
        }
    }

    /// The largest message it accepts.
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes as usize
    }

    /// The same reader, reading compressed messages when `agreed` (permessage-deflate).
    pub fn inflating(mut self, agreed: bool) -> Self {
        self.inflate = agreed;
        self
    }

    /// The reader it reads from, for what comes after the last message.
    pub fn into_inner(self) -> R {
        self.read
    }

    /// Whether nothing is buffered, not even part of a message: the connection is
    /// between messages, and [`MessageReader::wait_bytes`] is the way to wait.
    pub fn is_drained(&self) -> bool {
        self.buf.is_empty() && self.partial.is_none()
    }

    /// Waits for the client's next bytes holding no buffer (the buffer is made for what
    /// arrives). Cancel-safe: nothing is read until it is kept.
    pub async fn wait_bytes(&mut self) -> Result<(), ReadEnd> {
        poll_fn(|cx| self.poll_wait_bytes(cx)).await
    }

    /// [`MessageReader::wait_bytes`] as a poll, for a caller that waits on more than this.
    pub fn poll_wait_bytes(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ReadEnd>> {
        if !self.buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        self.buf = BytesMut::new();
        match ready!(self.poll_read_stack(cx)) {
            Ok(0) | Err(_) => Poll::Ready(Err(ReadEnd::Gone)),
            Ok(_) => Poll::Ready(Ok(())),
        }
    }

    /// One read into a chunk on the stack, appended to the buffer: a reader that waits
    /// holds no buffer, and the buffer is made for what arrives.
    fn poll_read_stack(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let mut chunk = [0u8; READ_BUF];
        let mut chunk = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.read).poll_read(cx, &mut chunk))?;
        self.buf.extend_from_slice(chunk.filled());
        Poll::Ready(Ok(chunk.filled().len()))
    }

    /// The next complete message or control frame. Cancel-safe between frames only:
    /// drop the reader rather than reuse it after cancelling.
    pub async fn next(&mut self) -> Result<Incoming, ReadEnd> {
        loop {
            let frame = self.frame().await?;
            if let Some(incoming) = self.accept(frame)? {
                return Ok(incoming);
            }
        }
    }

    /// Makes sure at least `n` bytes are buffered.
    async fn fill(&mut self, n: usize) -> Result<(), ReadEnd> {
        while self.buf.len() < n {
            self.read_more(n).await?;
        }
        Ok(())
    }

    /// One read towards having `n` bytes buffered.
    async fn read_more(&mut self, n: usize) -> Result<(), ReadEnd> {
        if self.buf.capacity() == 0 {
            return self.read_idle().await;
        }
        if self.buf.capacity() - self.buf.len() < READ_BUF.min(n - self.buf.len()).max(1) {
            self.buf.reserve(READ_BUF.max(n - self.buf.len()));
        }
        match self.read.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => Err(ReadEnd::Gone),
            Ok(_) => Ok(()),
        }
    }

    /// The first read of a connection with nothing buffered: into the stack, so that one
    /// waiting for its client holds no buffer; the buffer is made for what arrives.
    async fn read_idle(&mut self) -> Result<(), ReadEnd> {
        match poll_fn(|cx| self.poll_read_stack(cx)).await {
            Ok(0) | Err(_) => Err(ReadEnd::Gone),
            Ok(_) => Ok(()),
        }
    }

    /// Buffers a text frame's payload (`len` bytes after a `head`-byte header), checking
    /// its UTF-8 as it arrives: invalid text fails on the read that brings it, not when
    /// the whole frame is in (Autobahn 6.4.3–6.4.4), so a peer cannot make us buffer
    /// megabytes of a message already known to be bad. `accept` still checks the whole.
    async fn fill_text(&mut self, head: usize, len: usize, mask: [u8; 4], continuation: bool) -> Result<(), ReadEnd> {
        // A code point split across fragments: its first bytes, from the message so far.
        let mut carry: Vec<u8> = match &self.partial {
            Some(p) if p.text && continuation => p.data[p.valid..].to_vec(),
            _ => Vec::new(),
        };
        let mut checked = 0;
        loop {
            let have = (self.buf.len() - head).min(len);
            if have > checked {
                let from = carry.len();
                carry.extend_from_slice(&self.buf[head + checked..head + have]);
                // The mask key repeats every 4 bytes from the payload's start.
                let mut key = mask;
                key.rotate_left(checked % 4);
                fastwebsockets::unmask(&mut carry[from..], key);
                carry = match std::str::from_utf8(&carry) {
                    Ok(_) => Vec::new(),
                    Err(e) if e.error_len().is_none() => carry[e.valid_up_to()..].to_vec(),
                    Err(_) => return Err(ReadEnd::Violation(1007, "text message is not valid UTF-8".into())),
                };
                checked = have;
            }
            if have == len {
                return Ok(());
            }
            self.read_more(head + len).await?;
        }
    }

    async fn frame(&mut self) -> Result<Frame, ReadEnd> {
        if self.buf.is_empty() {
            // Most connections sit idle between messages: hold no buffer while waiting
            // (an empty view of a split buffer would still hold all of it).
            self.buf = BytesMut::new();
        }
        self.fill(2).await?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let compressed = self.inflate && b0 & RSV1 != 0;
        if b0 & 0x70 & !if compressed { RSV1 } else { 0 } != 0 {
            return Err(ReadEnd::protocol("reserved bits set without an extension"));
        }
        let opcode = match b0 & 0x0f {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ReadEnd::protocol(format!("unknown opcode {other:#x}"))),
        };
        let fin = b0 & 0x80 != 0;
        let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
        if control && !fin {
            return Err(ReadEnd::protocol("fragmented control frame"));
        }
        // RFC 7692 §6: only a message's first frame says it is compressed.
        if compressed && !matches!(opcode, OpCode::Text | OpCode::Binary) {
            return Err(ReadEnd::protocol("RSV1 set on a control or continuation frame"));
        }
        if b1 & 0x80 == 0 {
            return Err(ReadEnd::protocol("client frames must be masked"));
        }
        let extra = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        self.fill(2 + extra + 4).await?;
        let len = match extra {
            0 => u64::from(b1 & 0x7f),
            2 => u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
            _ => u64::from_be_bytes(self.buf[2..10].try_into().unwrap_or([0xff; 8])),
        };
        if control && len > 125 {
            return Err(ReadEnd::protocol("control frame payload over 125 bytes"));
        }
        // Checked before anything is buffered, so a huge declared length costs nothing.
        let inflating = compressed || self.partial.as_ref().is_some_and(|p| p.inflater.is_some());
        let limit = if inflating {
            compressed_limit(self.max_message_bytes())
        } else {
            self.max_message_bytes()
        };
        if len > limit as u64 {
            return Err(ReadEnd::Violation(
                1009,
                format!("message over {} bytes", self.max_message_bytes),
            ));
        }
        let len = len as usize;
        let head = 2 + extra + 4;
        let mask: [u8; 4] = self.buf[head - 4..head].try_into().unwrap_or_default();
        // Text is checked as it arrives, unless it arrives compressed (checked once inflated).
        let text = match opcode {
            OpCode::Text => !compressed,
            OpCode::Continuation => self.partial.as_ref().is_some_and(|p| p.text && p.inflater.is_none()),
            _ => false,
        };
        if text && self.buf.len() < head + len {
            self.fill_text(head, len, mask, opcode == OpCode::Continuation).await?;
        } else {
            self.fill(head + len).await?;
        }
        let _ = self.buf.split_to(head);
        let mut payload = self.buf.split_to(len);
        fastwebsockets::unmask(&mut payload, mask);
        Ok(Frame {
            fin,
            compressed,
            opcode,
            payload,
        })
    }

    fn accept(&mut self, frame: Frame) -> Result<Option<Incoming>, ReadEnd> {
        match frame.opcode {
            OpCode::Ping | OpCode::Pong | OpCode::Close if frame.payload.len() > 125 => {
                Err(ReadEnd::protocol("control frame payload over 125 bytes"))
            }
            OpCode::Ping => Ok(Some(Incoming::Ping(Bytes::copy_from_slice(&frame.payload)))),
            OpCode::Pong => Ok(Some(Incoming::Pong)),
            OpCode::Close => close_code(&frame.payload).map(|c| Some(Incoming::Close(c))),
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(ReadEnd::protocol(
                        "a new message started before the previous one finished",
                    ));
                }
                let text = frame.opcode == OpCode::Text;
                if frame.fin && !frame.compressed {
                    if text && std::str::from_utf8(&frame.payload).is_err() {
                        return Err(ReadEnd::Violation(1007, "text message is not valid UTF-8".into()));
                    }
                    // A copy, so a retained message does not pin the whole read buffer.
                    let data = Bytes::copy_from_slice(&frame.payload);
                    return Ok(Some(if text {
                        Incoming::Text(data)
                    } else {
                        Incoming::Binary(data)
                    }));
                }
                self.partial = Some(Box::new(Partial {
                    text,
                    data: BytesMut::new(),
                    valid: 0,
                    inflater: frame.compressed.then(Box::default),
                    compressed: 0,
                }));
                self.extend(&frame.payload, frame.fin)
            }
            OpCode::Continuation => {
                if self.partial.is_none() {
                    return Err(ReadEnd::protocol("continuation frame with no message to continue"));
                }
                self.extend(&frame.payload, frame.fin)
            }
        }
    }

    fn extend(&mut self, payload: &[u8], fin: bool) -> Result<Option<Incoming>, ReadEnd> {
        let max = self.max_message_bytes();
        let Some(p) = self.partial.as_mut() else {
            return Ok(None);
        };
        let too_large = || ReadEnd::Violation(1009, format!("message over {max} bytes"));
        match p.inflater.as_mut() {
            Some(inflater) => {
                // The wire bytes are bounded too, so a stream that inflates to nothing
                // cannot go on for ever.
                p.compressed += payload.len();
                if p.compressed > compressed_limit(max) {
                    return Err(too_large());
                }
                inflater
                    .push(payload, &mut p.data, max)
                    .map_err(|e| inflate_end(e, max))?;
                if fin {
                    if let Some(inflater) = p.inflater.take() {
                        inflater.finish(&mut p.data, max).map_err(|e| inflate_end(e, max))?;
                    }
                }
            }
            None => {
                if p.data.len() + payload.len() > max {
                    return Err(too_large());
                }
                p.data.extend_from_slice(payload);
            }
        }
        if p.text {
            // Check as we go, so invalid text fails on the fragment that carries it.
            match std::str::from_utf8(&p.data[p.valid..]) {
                Ok(_) => p.valid = p.data.len(),
                Err(e) if e.error_len().is_none() && !fin => p.valid += e.valid_up_to(),
                Err(_) => return Err(ReadEnd::Violation(1007, "text message is not valid UTF-8".into())),
            }
        }
        if !fin {
            return Ok(None);
        }
        let Some(p) = self.partial.take() else {
            return Ok(None);
        };
        let data = p.data.freeze();
        Ok(Some(if p.text {
            Incoming::Text(data)
        } else {
            Incoming::Binary(data)
        }))
    }
}

/// The most wire bytes a compressed message within `max` may take: deflate can make
/// data that does not compress a little larger (5 bytes per 64 KiB stored block).
fn compressed_limit(max: usize) -> usize {
    max.saturating_add(max / 1024 + 64)
}

/// The close for a compressed message that cannot be read.
fn inflate_end(e: InflateError, max: usize) -> ReadEnd {
    match e {
        InflateError::TooLarge => ReadEnd::Violation(1009, format!("message inflates to over {max} bytes")),
        InflateError::Corrupt => ReadEnd::Violation(1007, "compressed message is not valid deflate data".into()),
    }
}

/// The code to answer a client's close frame with, or the violation it commits.
fn close_code(payload: &[u8]) -> Result<u16, ReadEnd> {
    match payload.len() {
        0 => Ok(1000),
        1 => Err(ReadEnd::protocol("close frame with a 1-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(ReadEnd::Violation(1007, "close reason is not valid UTF-8".into()));
            }
            // RFC 6455 §7.4: codes a peer may send.
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !allowed {
                return Err(ReadEnd::protocol(format!("close code {code} is not allowed")));
            }
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut out = vec![(fin as u8) << 7 | opcode];
        let mask = [1u8, 2, 3, 4];
        let m = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n < 65536 => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    async fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<String, (u16, String)>> {
        let mut r = MessageReader::new(std::io::Cursor::new(bytes), max);
        let mut out = Vec::new();
        loop {
            match r.next().await {
                Ok(Incoming::Text(t)) => out.push(Ok(format!("text:{}", String::from_utf8_lossy(&t)))),
                Ok(Incoming::Binary(b)) => out.push(Ok(format!("binary:{}", b.len()))),
                Ok(Incoming::Ping(_)) => out.push(Ok("ping".into())),
                Ok(Incoming::Pong) => out.push(Ok("pong".into())),
                Ok(Incoming::Close(c)) => out.push(Ok(format!("close:{c}"))),
                Err(ReadEnd::Violation(c, r)) => {
                    out.push(Err((c, r)));
                    break;
                }
                Err(ReadEnd::Gone) => break,
            }
        }
        out
    }

    async fn read_inflating(bytes: Vec<u8>, max: usize) -> Vec<Result<String, (u16, String)>> {
        let mut r = MessageReader::new(std::io::Cursor::new(bytes), max).inflating(true);
        let mut out = Vec::new();
        loop {
            match r.next().await {
                Ok(Incoming::Text(t)) => out.push(Ok(format!("text:{}", String::from_utf8_lossy(&t)))),
                Ok(Incoming::Binary(b)) => out.push(Ok(format!("binary:{}", b.len()))),
                Ok(other) => out.push(Ok(format!("{other:?}"))),
                Err(ReadEnd::Violation(c, r)) => {
                    out.push(Err((c, r)));
                    break;
                }
                Err(ReadEnd::Gone) => break,
            }
        }
        out
    }

    /// RFC 7692 §7.2.3.1: "Hello", compressed without context takeover.
    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    fn deflated(data: &[u8]) -> Vec<u8> {
        let rule = crate::config::Deflate { level: 6, min_bytes: 0 };
        let plain = crate::protocol::frame::encode(crate::protocol::frame::OpCode::Binary, data);
        let z = crate::protocol::deflate::compress_frame(&plain, rule).expect("compressible");
        crate::protocol::frame::payload_of(&z).to_vec()
    }

    #[tokio::test]
    async fn compressed_messages_inflate_whole_or_in_fragments() {
        let mut b = frame(true, 0x40 | 1, &HELLO, true);
        b.extend(frame(false, 0x40 | 1, &HELLO[..2], true));
        b.extend(frame(true, 9, b"", true));
        b.extend(frame(true, 0, &HELLO[2..], true));
        b.extend(frame(true, 1, b"plain", true));
        let got = read_inflating(b, 100).await;
        assert_eq!(
            got,
            vec![
                Ok("text:Hello".into()),
                Ok("Ping(b\"\")".into()),
                Ok("text:Hello".into()),
                Ok("text:plain".into())
            ]
        );
    }

    #[tokio::test]
    async fn rsv1_is_refused_without_the_extension_and_on_control_or_continuation_frames() {
        let got = read_all(frame(true, 0x40 | 1, &HELLO, true), 100).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1002);
        let got = read_inflating(frame(true, 0x40 | 9, b"", true), 100).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1002);
        let mut b = frame(false, 0x40 | 1, &HELLO[..2], true);
        b.extend(frame(true, 0x40, &HELLO[2..], true));
        let got = read_inflating(b, 100).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1002);
        let got = read_inflating(frame(true, 0x20 | 1, b"x", true), 100).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1002, "RSV2 stays reserved");
    }

    #[tokio::test]
    async fn a_small_frame_that_inflates_past_the_limit_gets_1009() {
        let bomb = deflated(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 2000);
        let got = read_inflating(frame(true, 0x40 | 2, &bomb, true), 65536).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1009);
        let fits = deflated(&vec![7u8; 65536]);
        let got = read_inflating(frame(true, 0x40 | 2, &fits, true), 65536).await;
        assert_eq!(got, vec![Ok("binary:65536".into())]);
    }

    #[tokio::test]
    async fn bad_deflate_data_gets_1007_and_bad_inflated_text_too() {
        let got = read_inflating(frame(true, 0x40 | 2, &[0xff; 16], true), 100).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1007);
        let got = read_inflating(frame(true, 0x40 | 1, &deflated(&[0xff; 300]), true), 1000).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1007);
    }

    #[tokio::test]
    async fn fragments_are_collected_with_interleaved_control_frames() {
        let mut b = frame(false, 1, b"hel", true);
        b.extend(frame(true, 9, b"", true));
        b.extend(frame(true, 0, b"lo", true));
        let got = read_all(b, 100).await;
        assert_eq!(got, vec![Ok("ping".into()), Ok("text:hello".into())]);
    }

    #[tokio::test]
    async fn unmasked_frames_are_a_protocol_error() {
        let got = read_all(frame(true, 1, b"x", false), 100).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1002);
    }

    #[tokio::test]
    async fn messages_over_the_limit_get_1009_even_in_fragments() {
        let got = read_all(frame(true, 2, &[0; 101], true), 100).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1009);
        let mut b = frame(false, 2, &[0; 60], true);
        b.extend(frame(true, 0, &[0; 60], true));
        let got = read_all(b, 100).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1009);
        let got = read_all(frame(true, 2, &[0; 100], true), 100).await;
        assert_eq!(got, vec![Ok("binary:100".into())]);
    }

    #[tokio::test]
    async fn invalid_utf8_gets_1007_split_code_points_are_fine() {
        let got = read_all(frame(true, 1, &[0xff], true), 100).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1007);
        let e = "é".as_bytes();
        let mut b = frame(false, 1, &e[..1], true);
        b.extend(frame(true, 0, &e[1..], true));
        assert_eq!(read_all(b, 100).await, vec![Ok("text:é".into())]);
        let mut b = frame(false, 1, b"ok", true);
        b.extend(frame(false, 0, &[0xc0, 0x80], true));
        let got = read_all(b, 100).await;
        assert_eq!(got[0].as_ref().unwrap_err().0, 1007);
    }

    #[tokio::test]
    async fn invalid_utf8_fails_before_the_rest_of_its_frame_arrives() {
        use tokio::io::AsyncWriteExt;
        // F4 90 is past U+10FFFF: invalid at its second byte, whatever follows.
        let bad = b"hello\xce\xba\xf4\x90\x80\x80-the rest never comes-";
        // A whole message in one frame, and the end of a code point a first fragment began.
        let continued = [b"\xba".as_slice(), bad].concat();
        for (opener, opcode, payload) in [
            (vec![], 1, bad.to_vec()),
            (frame(false, 1, b"ok\xce", true), 0, continued),
        ] {
            let whole = frame(true, opcode, &payload, true);
            let cut = 2 + 4 + payload.windows(2).position(|w| w == b"\xf4\x90").unwrap() + 2;
            let (mut client, server) = tokio::io::duplex(1024);
            // The opener, then the frame up to just past the bad byte; never the rest.
            client.write_all(&opener).await.unwrap();
            client.write_all(&whole[..cut]).await.unwrap();
            let mut r = MessageReader::new(server, 1000);
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), r.next())
                .await
                .expect("failed without waiting for the rest of the frame");
            assert!(matches!(got, Err(ReadEnd::Violation(1007, _))), "{got:?}");
        }
    }

    #[tokio::test]
    async fn text_arriving_in_pieces_is_checked_across_pieces() {
        use tokio::io::AsyncWriteExt;
        let text = "κόσμε, a text with code points cut at every read".repeat(3);
        let bytes = [
            frame(false, 1, &text.as_bytes()[..7], true),
            frame(true, 0, &text.as_bytes()[7..], true),
        ]
        .concat();
        let (mut client, server) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(3) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let mut r = MessageReader::new(server, 1000);
        let got = r.next().await.unwrap();
        assert!(matches!(&got, Incoming::Text(t) if t == text.as_bytes()), "{got:?}");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn bad_sequences_and_control_frames_are_protocol_errors() {
        for bytes in [
            frame(true, 0, b"x", true),
            [frame(false, 1, b"a", true), frame(true, 1, b"b", true)].concat(),
            frame(false, 9, b"", true),
            frame(true, 10, &[0; 126], true),
            frame(true, 8, &[0x03], true),
            frame(true, 8, &999u16.to_be_bytes(), true),
            frame(true, 3, b"", true),
        ] {
            let got = read_all(bytes, 1000).await;
            assert_eq!(got.last().unwrap().as_ref().unwrap_err().0, 1002, "{got:?}");
        }
    }

    #[tokio::test]
    async fn close_codes_are_echoed() {
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        assert_eq!(
            read_all(frame(true, 8, &payload, true), 100).await,
            vec![Ok("close:4000".into())]
        );
        assert_eq!(
            read_all(frame(true, 8, b"", true), 100).await,
            vec![Ok("close:1000".into())]
        );
    }
}
