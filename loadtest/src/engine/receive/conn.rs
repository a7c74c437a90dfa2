//! One connection as its receive thread sees it: reads into the thread's
//! buffer, decodes frames in place (payloads are borrowed slices; only a
//! frame cut by the end of a read is copied, into the connection's tail),
//! checks what a client must check (unmasked server frames, no RSV bits,
//! fragment order, UTF-8 of text, control frame rules) and hands each
//! message to its [`Subscriber`].

use crate::client::frame::{self, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use crate::client::{Detached, Message, WsWriter};
use crate::clock::now_ns;
use crate::engine::subscriber::Subscriber;
use crate::protocol::{socketio, Incoming};
use crate::stats::Tally;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use tokio::runtime::Handle;

/// Bytes asked for per read (a read that fills it is followed by another).
pub const READ_CHUNK: usize = 64 * 1024;
/// Largest message accepted, as [`crate::client::ClientConfig`]'s default.
const MAX_MESSAGE: usize = 64 << 20;

/// Why a connection stopped being readable.
#[derive(Debug)]
pub enum Ended {
    /// The server sent a close frame.
    Closed,
    /// The server broke the protocol (answered with close 1002).
    Protocol(String),
    /// The TCP connection ended or failed without a close frame.
    Io(io::Error),
}

/// A connection owned by a receive thread. With a thousand connections
/// each read one at a time, their state is cold in the cache: everything a
/// message touches (the fd, the tail, the subscriber's flags and its first
/// publisher's tracker) sits in the first two cache lines (`repr(C)`,
/// aligned: 40 bytes here, then the subscriber's 88), so a message costs
/// two misses rather than six.
#[repr(C, align(64))]
pub struct Conn {
    /// Bytes the frame in `tail` still lacks, when its header is complete.
    need: u32,
    fd: RawFd,
    /// Opcode and bytes of a fragmented message in progress (boxed: rare).
    partial: Option<Box<(u8, Vec<u8>)>>,
    /// The start of a frame whose rest has not arrived yet.
    tail: Vec<u8>,
    /// What it measures (hot fields first).
    pub sub: Subscriber,
    socket: TcpStream,
    /// Where pongs and closes go (tokio side; the publisher writes there too).
    pub writer: WsWriter,
}

impl Conn {
    /// Wraps a detached connection; its already-buffered bytes are decoded
    /// first (see [`Conn::decode_buffered`]).
    pub fn new(d: Detached, sub: Subscriber) -> Conn {
        Conn {
            need: 0,
            fd: d.socket.as_raw_fd(),
            partial: None,
            tail: d.buffered,
            sub,
            socket: d.socket,
            writer: d.writer,
        }
    }

    /// The socket's descriptor (for epoll).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Starts loading the two cache lines a message touches.
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = self as *const Conn as *const i8;
            // SAFETY: a prefetch is only a hint: it never faults or writes,
            // and both addresses lie inside `self` (128 bytes, 64-aligned).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p);
                _mm_prefetch::<_MM_HINT_T0>(p.add(64));
            }
        }
    }

    /// Gives the socket, the writer and the measurement state back.
    pub fn into_parts(self) -> (TcpStream, WsWriter, Subscriber) {
        (self.socket, self.writer, self.sub)
    }

    /// Counts messages that arrived before the connection came here.
    pub fn observe_pending(&mut self, pending: &[Message], tally: &mut Tally) {
        let now = now_ns();
        for m in pending {
            let parsed = self.sub.protocol().parse(m);
            self.sub.observe(parsed, now, tally);
        }
    }

    /// Decodes the frames already in the tail (bytes read before detaching).
    pub fn decode_buffered(&mut self, tally: &mut Tally, rt: &Handle) -> Result<(), Ended> {
        let data = std::mem::take(&mut self.tail);
        self.decode(&data, now_ns(), tally, rt)
    }

    /// Reads everything the socket has (edge-triggered: until a short
    /// read) and decodes it.
    pub fn read_ready(&mut self, scratch: &mut Vec<u8>, tally: &mut Tally, rt: &Handle) -> Result<(), Ended> {
        loop {
            let kept = self.tail.len();
            let want = kept + READ_CHUNK.max(self.need as usize);
            if scratch.len() < want {
                scratch.resize(want, 0);
            }
            scratch[..kept].copy_from_slice(&self.tail);
            let space = scratch.len() - kept;
            let n = match read(self.fd, &mut scratch[kept..]) {
                Ok(0) => return Err(Ended::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Ended::Io(e)),
            };
            // One clock read per read: every message in it arrived by now.
            self.decode(&scratch[..kept + n], now_ns(), tally, rt)?;
            if n < space {
                return Ok(());
            }
        }
    }

    /// Decodes every whole frame of `data` and keeps the rest as the tail.
    fn decode(&mut self, data: &[u8], now: u64, tally: &mut Tally, rt: &Handle) -> Result<(), Ended> {
        let mut pos = 0;
        self.need = 0;
        loop {
            let h = match frame::decode_header(&data[pos..], MAX_MESSAGE) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(violation(e)),
            };
            let end = pos + h.header_len + h.payload_len;
            if end > data.len() {
                // At most MAX_MESSAGE plus a header: fits in a u32.
                self.need = (end - data.len()) as u32;
                break;
            }
            frame::check_from_server(h.mask.is_some(), h.rsv).map_err(violation)?;
            self.frame(h.opcode, h.fin, &data[pos + h.header_len..end], now, tally, rt)?;
            pos = end;
        }
        self.tail.clear();
        self.tail.extend_from_slice(&data[pos..]);
        Ok(())
    }

    fn frame(
        &mut self,
        opcode: u8,
        fin: bool,
        payload: &[u8],
        now: u64,
        tally: &mut Tally,
        rt: &Handle,
    ) -> Result<(), Ended> {
        match opcode {
            OP_TEXT | OP_BINARY if self.partial.is_some() => {
                Err(protocol("new data frame while a fragmented message is in progress"))
            }
            OP_TEXT | OP_BINARY if fin => self.message(opcode == OP_TEXT, payload, now, tally, rt),
            OP_TEXT | OP_BINARY => {
                self.partial = Some(Box::new((opcode, payload.to_vec())));
                Ok(())
            }
            OP_CONTINUATION => {
                let (op, mut data) = *self
                    .partial
                    .take()
                    .ok_or_else(|| protocol("unexpected continuation frame"))?;
                if data.len() + payload.len() > MAX_MESSAGE {
                    return Err(protocol("fragmented message exceeds the size limit"));
                }
                data.extend_from_slice(payload);
                if fin {
                    self.message(op == OP_TEXT, &data, now, tally, rt)
                } else {
                    self.partial = Some(Box::new((op, data)));
                    Ok(())
                }
            }
            OP_PING => {
                // Rare (the broker pings every 20 s): a task per pong is fine.
                let (w, p) = (self.writer.clone(), payload.to_vec());
                rt.spawn(async move { w.send_pong(&p).await });
                Ok(())
            }
            OP_PONG => Ok(()),
            OP_CLOSE => Err(frame::parse_close(payload).map_or_else(violation, |_| Ended::Closed)),
            op => Err(Ended::Protocol(format!("unknown opcode {op:#x}"))),
        }
    }

    fn message(&mut self, text: bool, bytes: &[u8], now: u64, tally: &mut Tally, rt: &Handle) -> Result<(), Ended> {
        // Cheap for ASCII (word at a time), and a client must check it.
        if text && std::str::from_utf8(bytes).is_err() {
            return Err(protocol("invalid UTF-8 in a text message"));
        }
        match self.sub.protocol().parse_data(text, bytes) {
            // Socket.IO's heartbeat, on every connection (publishers too):
            // rare (every 25 s on Node), so a task per pong is fine.
            Incoming::Heartbeat => {
                let w = self.writer.clone();
                rt.spawn(async move { w.send_text(socketio::PONG).await });
            }
            parsed => self.sub.observe(parsed, now, tally),
        }
        Ok(())
    }
}

/// `recv(2)` on the hot copy of the descriptor (the socket itself sits on
/// a colder cache line), as a bare system call: libc's wrappers add
/// thread-cancellation bookkeeping on every call, and `read(2)` goes
/// through the VFS layers on top.
fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes, and `fd` belongs to
    // the connection's socket, which outlives the call; recvfrom with null
    // address arguments is recv(2).
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn protocol(msg: &str) -> Ended {
    Ended::Protocol(msg.to_string())
}

/// A frame check's refusal, as the protocol violation it is.
fn violation(e: io::Error) -> Ended {
    Ended::Protocol(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn the_hot_fields_fit_two_cache_lines() {
        // 40 bytes here, then the subscriber's 8 (flags, own id) and its
        // trackers' 80 (ids, first tracker): 128.
        assert_eq!(offset_of!(Conn, sub), 40);
        assert_eq!(Subscriber::HOT_BYTES, 8 + crate::stats::SeqTrackers::HOT_BYTES);
        assert_eq!(crate::stats::SeqTrackers::HOT_BYTES, 80);
        assert_eq!(size_of::<crate::stats::SeqTracker>(), 72);
    }
}
