//! permessage-deflate (RFC 7692) frames: a server frame compressed once and
//! shared by every subscriber that negotiated the extension, and the
//! inflater that reads one compressed client message.
//!
//! The broker always answers with `server_no_context_takeover` and
//! `client_no_context_takeover` (`transport::ws_extensions`), so every
//! message is compressed and inflated on its own: no sliding window lives
//! between messages, one compressed frame is valid for every connection,
//! and an idle connection holds no deflate state at all.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::frame::{self, FrameBuilder, OpCode};
use crate::config::Deflate;

/// What one connection agreed to: the window its inflater has for the server's
/// messages (`server_max_window_bits`, 15 unless it asked for less), and how the
/// broker compresses what it writes to that connection alone (replies, notices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The client's inflate window for server messages, in bits (8 to 15).
    pub window_bits: u8,
    /// Level and size threshold for this connection's own frames.
    pub rule: Deflate,
}

impl Agreement {
    /// Whether a compressed frame of a `payload_len`-byte payload is valid for this
    /// client: every message is compressed on its own, so no match reaches further
    /// back than the payload is long, and a payload within the window always fits.
    pub fn fits(self, payload_len: usize) -> bool {
        payload_len <= 1 << self.window_bits
    }
}

/// The empty stored block that ends a sync flush; RFC 7692 §7.2.1 takes it off the
/// wire and §7.2.2 puts it back before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

thread_local! {
    /// One compressor per thread, reset per message: making one costs far more than
    /// compressing a small message with it.
    static COMPRESSOR: RefCell<Option<(u8, Compress)>> = const { RefCell::new(None) };
}

/// The compressed form of a complete plain server frame (as `frame` builds them), with
/// RSV1 set; `None` when it is not worth it: a payload under `rule.min_bytes`, a
/// control frame, or one deflate does not make smaller.
pub fn compress_frame(plain: &[u8], rule: Deflate) -> Option<Bytes> {
    let opcode = match plain.first()? & 0x0f {
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        _ => return None,
    };
    let payload = frame::payload_of(plain);
    if payload.len() < rule.min_bytes as usize {
        return None;
    }
    let mut b = FrameBuilder::with_capacity(payload.len() / 2 + 64);
    deflate_into(payload, rule.level, b.body())?;
    if b.body_len() >= payload.len() {
        return None;
    }
    Some(b.finish_compressed(opcode))
}

/// Appends the raw deflate of `data` to `out`, without the sync flush's 4-byte tail.
fn deflate_into(data: &[u8], level: u8, out: &mut Vec<u8>) -> Option<()> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let c = match &mut *cell {
            Some((l, c)) if *l == level => c,
            slot => {
                &mut slot
                    .insert((level, Compress::new(Compression::new(level.into()), false)))
                    .1
            }
        };
        c.reset();
        let start = out.len();
        loop {
            let consumed = c.total_in() as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(data.len() / 2 + 64);
            }
            c.compress_vec(&data[consumed..], out, FlushCompress::Sync).ok()?;
            // Done when every byte went in and the flush had room to finish.
            if c.total_in() as usize == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.len() < start + TAIL.len() || out[out.len() - TAIL.len()..] != TAIL {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        Some(())
    })
}

/// Why a compressed message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the message size limit.
    TooLarge,
    /// It is not valid deflate data.
    Corrupt,
}

/// Inflates one compressed message, frame by frame, never holding more than the
/// limit: made when its first frame arrives, dropped with its last.
pub struct Inflater {
    inner: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// An inflater for one message.
    pub fn new() -> Self {
        Inflater {
            inner: Decompress::new(false),
        }
    }

    /// Inflates `input` (one frame's payload) onto `out`; fails as soon as `out` would
    /// pass `max` bytes, before the memory is spent.
    pub fn push(&mut self, input: &[u8], out: &mut BytesMut, max: usize) -> Result<(), InflateError> {
        let mut consumed = 0;
        loop {
            // One byte past the limit is room enough to see it passed.
            let room = (max + 1).saturating_sub(out.len());
            let chunk = room.min((input.len() - consumed).saturating_mul(4).max(4096));
            if chunk == 0 {
                return Err(InflateError::TooLarge);
            }
            let start = out.len();
            out.resize(start + chunk, 0);
            let (in0, out0) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress(&input[consumed..], &mut out[start..], FlushDecompress::Sync);
            let produced = (self.inner.total_out() - out0) as usize;
            let took = (self.inner.total_in() - in0) as usize;
            out.truncate(start + produced);
            consumed += took;
            if out.len() > max {
                return Err(InflateError::TooLarge);
            }
            match status {
                Err(_) => return Err(InflateError::Corrupt),
                // A final block ends the data; what follows it (the tail) is ignored.
                Ok(Status::StreamEnd) => return Ok(()),
                Ok(Status::Ok | Status::BufError) => {}
            }
            if consumed == input.len() && produced < chunk {
                return Ok(());
            }
            if took == 0 && produced == 0 {
                return Err(InflateError::Corrupt);
            }
        }
    }

    /// Ends the message: inflates the tail the sender took off (RFC 7692 §7.2.2).
    pub fn finish(mut self, out: &mut BytesMut, max: usize) -> Result<(), InflateError> {
        self.push(&TAIL, out, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Deflate = Deflate {
        level: 3,
        min_bytes: 16,
    };

    fn inflate_all(frames: &[&[u8]], max: usize) -> Result<Vec<u8>, InflateError> {
        let mut inf = Inflater::new();
        let mut out = BytesMut::new();
        for f in frames {
            inf.push(f, &mut out, max)?;
        }
        inf.finish(&mut out, max)?;
        Ok(out.to_vec())
    }

    #[test]
    fn the_rfc_example_hello_inflates() {
        // RFC 7692 §7.2.3.1: "Hello" compressed, with no context takeover.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&[&hello], 100).unwrap(), b"Hello");
        // §7.2.3.3: the same in two fragments.
        assert_eq!(inflate_all(&[&hello[..3], &hello[3..]], 100).unwrap(), b"Hello");
    }

    #[test]
    fn a_compressed_frame_sets_rsv1_and_inflates_to_the_payload() {
        let body = br#"{"symbol":"ACME","bid":101.25,"ask":101.27,"symbol2":"ACME","bid2":101.25}"#.repeat(4);
        let plain = frame::encode(OpCode::Text, &body);
        let z = compress_frame(&plain, RULE).expect("compressible");
        assert_eq!(z[0], 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
        assert!(z.len() < plain.len() / 2);
        assert_eq!(inflate_all(&[frame::payload_of(&z)], 1 << 20).unwrap(), body);
    }

    #[test]
    fn small_control_and_incompressible_frames_stay_plain() {
        assert!(compress_frame(&frame::encode(OpCode::Text, b"short"), RULE).is_none());
        assert!(compress_frame(&frame::close(1000, &"x".repeat(100)), RULE).is_none());
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect();
        assert!(compress_frame(&frame::encode(OpCode::Binary, &noise), RULE).is_none());
    }

    #[test]
    fn the_compressor_is_reset_between_messages() {
        let body = b"abcdefghijklmnopqrstuvwxyz".repeat(10);
        let a = compress_frame(&frame::encode(OpCode::Text, &body), RULE).unwrap();
        let b = compress_frame(&frame::encode(OpCode::Text, &body), RULE).unwrap();
        assert_eq!(a, b, "no context taken over from the first message");
        let level9 = compress_frame(&frame::encode(OpCode::Text, &body), Deflate { level: 9, ..RULE }).unwrap();
        assert_eq!(inflate_all(&[frame::payload_of(&level9)], 1 << 20).unwrap(), body);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let z = compress_frame(&frame::encode(OpCode::Binary, &zeros), RULE).unwrap();
        assert!(z.len() < 20_000, "10 MiB of zeros deflate to {} bytes", z.len());
        assert_eq!(
            inflate_all(&[frame::payload_of(&z)], 65536),
            Err(InflateError::TooLarge)
        );
        assert_eq!(inflate_all(&[frame::payload_of(&z)], 10 << 20).unwrap().len(), 10 << 20);
    }

    #[test]
    fn garbage_is_corrupt() {
        assert_eq!(inflate_all(&[&[0xff; 32]], 1 << 20), Err(InflateError::Corrupt));
    }
}
