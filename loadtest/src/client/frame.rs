//! RFC 6455 frame codec: encoding (with optional masking) and incremental
//! decoding of frames from a byte buffer.
//!
//! The codec is transport free: it only turns bytes into [`Frame`]s and back,
//! so the same code serves the client, the tests' tiny servers and the
//! protocol-violation tests.

use std::io;

/// Continuation frame opcode.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

/// One decoded frame header plus where its (unmasked) payload lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit: last fragment of a message.
    pub fin: bool,
    /// RSV1..RSV3 bits (must be zero without extensions).
    pub rsv: u8,
    /// Opcode (low 4 bits of the first byte).
    pub opcode: u8,
    /// The masking key, when the frame was masked.
    pub mask: Option<[u8; 4]>,
    /// Payload bytes, already unmasked.
    pub payload: Vec<u8>,
}

/// Appends one encoded frame to `out`. With `mask = Some(key)` the payload is
/// masked with `key` (what a client must do); with `None` it is sent as is
/// (what a server does).
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) {
    let len = payload.len();
    out.reserve(len + 14);
    out.push(((fin as u8) << 7) | (opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], key);
        }
        None => out.extend_from_slice(payload),
    }
}

/// XORs `data` in place with the 4-byte masking `key` (masking and unmasking
/// are the same operation). Works 8 bytes at a time.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// A parsed frame header: where the payload starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN bit.
    pub fin: bool,
    /// RSV bits.
    pub rsv: u8,
    /// Opcode.
    pub opcode: u8,
    /// Masking key, if masked.
    pub mask: Option<[u8; 4]>,
    /// Header length in bytes (payload offset).
    pub header_len: usize,
    /// Payload length in bytes.
    pub payload_len: usize,
}

/// Parses a frame header at the start of `buf` without touching the payload.
/// `Ok(None)` means more bytes are needed for the header itself.
pub fn decode_header(buf: &[u8], max_payload: usize) -> io::Result<Option<Header>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let mut pos = 2;
    let len = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            pos = 4;
            u16::from_be_bytes([buf[2], buf[3]]) as u64
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            pos = 10;
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"))
        }
        n => n as u64,
    };
    if len > max_payload as u64 {
        return Err(invalid(format!(
            "frame of {len} bytes exceeds the limit of {max_payload}"
        )));
    }
    let opcode = b0 & 0x0F;
    let fin = b0 & 0x80 != 0;
    if opcode >= 0x8 && (len > 125 || !fin) {
        return Err(invalid("control frame fragmented or longer than 125 bytes"));
    }
    let mask = if b1 & 0x80 != 0 {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let key = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        rsv: (b0 >> 4) & 0x07,
        opcode,
        mask,
        header_len: pos,
        payload_len: len as usize,
    }))
}

/// Tries to decode one frame from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((frame, used)))`
/// when a whole frame was decoded from the first `used` bytes, and an error
/// when the frame is larger than `max_payload` or malformed.
pub fn decode_frame(buf: &[u8], max_payload: usize) -> io::Result<Option<(Frame, usize)>> {
    let Some(h) = decode_header(buf, max_payload)? else {
        return Ok(None);
    };
    let end = h.header_len + h.payload_len;
    if buf.len() < end {
        return Ok(None);
    }
    let mut payload = buf[h.header_len..end].to_vec();
    if let Some(key) = h.mask {
        apply_mask(&mut payload, key);
    }
    Ok(Some((
        Frame {
            fin: h.fin,
            rsv: h.rsv,
            opcode: h.opcode,
            mask: h.mask,
            payload,
        },
        end,
    )))
}

/// The RSV1 bit as [`Header::rsv`] holds it: permessage-deflate's
/// "this message is compressed" (RFC 7692 6), on a message's first frame.
pub const RSV1: u8 = 0b100;

/// Refuses what a client must not accept in a server's frame (RFC 6455 5.1,
/// 5.2, RFC 7692 6): a mask, or RSV bits beyond what the negotiated
/// extension gives meaning: with permessage-deflate (`deflate`), RSV1 on
/// the first frame of a text or binary message, nowhere else.
pub(crate) fn check_from_server(masked: bool, rsv: u8, opcode: u8, deflate: bool) -> io::Result<()> {
    if masked {
        return Err(invalid("server sent a masked frame"));
    }
    if rsv == 0 {
        return Ok(());
    }
    if !deflate {
        return Err(invalid("server set RSV bits without an extension"));
    }
    if rsv != RSV1 {
        return Err(invalid("server set RSV2 or RSV3 (permessage-deflate uses RSV1 only)"));
    }
    match opcode {
        OP_TEXT | OP_BINARY => Ok(()),
        OP_CONTINUATION => Err(invalid("server set RSV1 on a continuation frame")),
        op if op >= 0x8 => Err(invalid("server set RSV1 on a control frame")),
        op => Err(invalid(format!("server set RSV1 on a frame of unknown opcode {op:#x}"))),
    }
}

/// Appends one frame like [`encode_frame`] with RSV1 set: the first frame
/// of a message compressed with permessage-deflate.
pub fn encode_compressed_frame(out: &mut Vec<u8>, opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) {
    let start = out.len();
    encode_frame(out, opcode, fin, payload, mask);
    out[start] |= RSV1 << 4;
}

/// A close frame's code and reason (`None`: no payload), checked as RFC 6455 5.5.1 asks.
pub(crate) fn parse_close(payload: &[u8]) -> io::Result<Option<(u16, String)>> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(invalid("close frame with a 1-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| invalid("invalid UTF-8 in close reason"))?;
            Ok(Some((code, reason.to_string())))
        }
    }
}

/// Builds an `InvalidData` I/O error (the client's protocol-error kind).
pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(len: usize, mask: Option<[u8; 4]>) {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        encode_frame(&mut out, OP_BINARY, true, &payload, mask);
        let (frame, used) = decode_frame(&out, usize::MAX).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(frame.payload, payload);
        assert_eq!(frame.mask, mask);
        assert!(frame.fin);
        // Every strict prefix is incomplete, never an error.
        for cut in [0, 1, 2, out.len() / 2, out.len() - 1]
            .into_iter()
            .filter(|c| *c < out.len())
        {
            assert!(decode_frame(&out[..cut], usize::MAX).unwrap().is_none());
        }
    }

    #[test]
    fn lengths_use_the_right_encoding() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            encode_frame(&mut out, OP_TEXT, true, &vec![b'a'; len], None);
            assert_eq!(out.len(), header + len, "len {len}");
            roundtrip(len, None);
            roundtrip(len, Some([1, 2, 3, 4]));
        }
        let mut out = Vec::new();
        encode_frame(&mut out, OP_TEXT, true, &[0; 126], None);
        assert_eq!(out[1], 126);
        out.clear();
        encode_frame(&mut out, OP_TEXT, true, &vec![0; 65536], Some([9, 9, 9, 9]));
        assert_eq!(out[1], 0x80 | 127);
    }

    #[test]
    fn masking_follows_rfc_example() {
        // RFC 6455 5.7: masked "Hello" with key 37 fa 21 3d.
        let mut out = Vec::new();
        encode_frame(&mut out, OP_TEXT, true, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        let mut data = *b"0123456789abcdefXYZ";
        apply_mask(&mut data, [5, 6, 7, 8]);
        apply_mask(&mut data, [5, 6, 7, 8]);
        assert_eq!(&data, b"0123456789abcdefXYZ");
    }

    #[test]
    fn fragments_keep_fin_and_opcode() {
        let mut out = Vec::new();
        encode_frame(&mut out, OP_TEXT, false, b"Hel", None);
        encode_frame(&mut out, OP_CONTINUATION, true, b"lo", None);
        let (a, used) = decode_frame(&out, 100).unwrap().unwrap();
        let (b, _) = decode_frame(&out[used..], 100).unwrap().unwrap();
        assert_eq!((a.fin, a.opcode, a.payload.as_slice()), (false, OP_TEXT, &b"Hel"[..]));
        assert_eq!(
            (b.fin, b.opcode, b.payload.as_slice()),
            (true, OP_CONTINUATION, &b"lo"[..])
        );
    }

    #[test]
    fn rsv1_only_on_a_compressed_message_start() {
        assert!(check_from_server(false, 0, OP_TEXT, false).is_ok());
        assert!(check_from_server(true, 0, OP_TEXT, true).is_err());
        assert!(check_from_server(false, RSV1, OP_TEXT, false).is_err());
        assert!(check_from_server(false, RSV1, OP_TEXT, true).is_ok());
        assert!(check_from_server(false, RSV1, OP_BINARY, true).is_ok());
        for (rsv, op) in [
            (RSV1, OP_CONTINUATION),
            (RSV1, OP_PING),
            (RSV1, OP_CLOSE),
            (0b010, OP_TEXT),
            (0b001, OP_TEXT),
        ] {
            assert!(check_from_server(false, rsv, op, true).is_err(), "{rsv} {op}");
        }
        let mut out = Vec::new();
        encode_compressed_frame(&mut out, OP_TEXT, true, b"xy", None);
        let (f, _) = decode_frame(&out, 100).unwrap().unwrap();
        assert_eq!((f.rsv, f.opcode, f.payload.as_slice()), (RSV1, OP_TEXT, &b"xy"[..]));
    }

    #[test]
    fn rejects_oversized_and_bad_control_frames() {
        let mut out = Vec::new();
        encode_frame(&mut out, OP_BINARY, true, &[0; 200], None);
        assert!(decode_frame(&out, 100).is_err());
        out.clear();
        encode_frame(&mut out, OP_PING, false, b"x", None);
        assert!(decode_frame(&out, 100).is_err());
    }
}
