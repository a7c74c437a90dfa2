//! Server-side WebSocket frame encoding (RFC 6455 §5.2).
//!
//! Server frames are unmasked, so one encoded frame — header and payload in
//! a single `Bytes` — serves every subscriber as is. The writer sends these
//! bytes straight to the socket; fastwebsockets is used only to read.

use bytes::Bytes;

/// Room reserved in front of a body for the longest frame header (2 + 8 bytes).
const HEADER_ROOM: usize = 10;

/// The opcodes the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// A UTF-8 text message.
    Text = 0x1,
    /// A binary message.
    Binary = 0x2,
    /// Close, with a code and a reason.
    Close = 0x8,
    /// Ping.
    Ping = 0x9,
    /// Pong.
    Pong = 0xA,
}

/// Builds one frame: write the body into [`FrameBuilder::body`], then
/// [`FrameBuilder::finish`] puts the header in front without copying.
pub struct FrameBuilder {
    buf: Vec<u8>,
}

impl FrameBuilder {
    /// A builder with room for a body of about `body_capacity` bytes.
    pub fn with_capacity(body_capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_ROOM + body_capacity);
        buf.resize(HEADER_ROOM, 0);
        FrameBuilder { buf }
    }

    /// The body written so far; append to it.
    pub fn body(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// The length of the body written so far.
    pub fn body_len(&self) -> usize {
        self.buf.len() - HEADER_ROOM
    }

    /// Writes the header for a final (FIN) frame and returns header + body as one buffer.
    pub fn finish(self, opcode: OpCode) -> Bytes {
        self.finish_with(opcode, 0)
    }

    /// As [`FrameBuilder::finish`] for a body compressed by permessage-deflate: RSV1 set
    /// (RFC 7692 §6).
    pub fn finish_compressed(self, opcode: OpCode) -> Bytes {
        self.finish_with(opcode, RSV1)
    }

    fn finish_with(mut self, opcode: OpCode, rsv: u8) -> Bytes {
        let len = self.body_len();
        let start = HEADER_ROOM - header_len(len);
        write_header(&mut self.buf[start..HEADER_ROOM], opcode, len);
        self.buf[start] |= rsv;
        Bytes::from(self.buf).slice(start..)
    }
}

/// The first header bit a negotiated permessage-deflate uses: "this message is compressed".
pub const RSV1: u8 = 0x40;

/// The header length for a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

fn write_header(head: &mut [u8], opcode: OpCode, len: usize) {
    head[0] = 0x80 | opcode as u8;
    match head.len() {
        2 => head[1] = len as u8,
        4 => {
            head[1] = 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// The payload of a complete unmasked server frame (as built here), without its header;
/// the HTTP API and long-polling reuse a message's cached frame this way.
pub fn payload_of(frame: &[u8]) -> &[u8] {
    let start = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return &[],
    };
    frame.get(start..).unwrap_or(&[])
}

/// A complete frame carrying `payload`.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut b = FrameBuilder::with_capacity(payload.len());
    b.body().extend_from_slice(payload);
    b.finish(opcode)
}

/// A close frame with `code` and `reason`, the reason cut to fit a control frame.
pub fn close(code: u16, reason: &str) -> Bytes {
    // A control frame payload is at most 125 bytes: 2 for the code, 123 for the text.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut b = FrameBuilder::with_capacity(2 + end);
    b.body().extend_from_slice(&code.to_be_bytes());
    b.body().extend_from_slice(&reason.as_bytes()[..end]);
    b.finish(OpCode::Close)
}

/// The close frame every WebSocket gets when the broker drains (1001).
pub fn going_away() -> Bytes {
    close(1001, "server shutting down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_have_a_two_byte_header() {
        let f = encode(OpCode::Text, b"hi");
        assert_eq!(&f[..], &[0x81, 2, b'h', b'i']);
    }

    #[test]
    fn lengths_switch_to_16_and_64_bit_forms_at_the_rfc_boundaries() {
        let f = encode(OpCode::Binary, &[7; 125]);
        assert_eq!(&f[..2], &[0x82, 125]);
        let f = encode(OpCode::Binary, &[7; 126]);
        assert_eq!(&f[..4], &[0x82, 126, 0, 126]);
        assert_eq!(f.len(), 130);
        let f = encode(OpCode::Binary, &vec![7; 65536]);
        assert_eq!(&f[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(f.len(), 65546);
    }

    #[test]
    fn payload_of_strips_every_header_form() {
        for n in [0, 125, 126, 65536] {
            let body = vec![7u8; n];
            assert_eq!(payload_of(&encode(OpCode::Text, &body)), &body[..]);
        }
    }

    #[test]
    fn close_frames_carry_code_and_a_truncated_reason() {
        let f = close(1008, "slow consumer");
        assert_eq!(&f[..4], &[0x88, 15, 0x03, 0xF0]);
        assert_eq!(&f[4..], b"slow consumer");
        let long = "é".repeat(100);
        let f = close(1000, &long);
        assert!(f.len() - 2 <= 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }
}
