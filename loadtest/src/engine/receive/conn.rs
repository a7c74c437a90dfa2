//! One connection as its receive thread sees it: reads into the thread's
//! buffer, decodes frames in place (payloads are borrowed slices; only a
//! frame cut by the end of a read is copied, into the connection's tail),
//! checks what a client must check (unmasked server frames, RSV bits only
//! as permessage-deflate allows, fragment order, UTF-8 of text, control
//! frame rules), inflates compressed messages and hands each message to its
//! [`Subscriber`]. It counts the bytes it reads (wire bytes) and the
//! messages' inflated bytes for measured subscribers. A TLS connection's
//! reads are decrypted first ([`TlsRead`]) into a second buffer of the
//! thread's, then decoded the same way; the thread tells the two kinds
//! apart by their epoll token, so a plain read touches nothing more.

use super::tls::TlsRead;
use crate::client::deflate::{DeflateParams, Inflater};
use crate::client::frame::{self, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, RSV1};
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

/// What a receive thread lends every connection it reads: the read
/// buffer, and one inflater for all the connections whose server starts
/// every message afresh (`server_no_context_takeover`), so they keep no
/// inflate state of their own (a window is 32 KiB), and a message sent to
/// many of them is inflated once (the inflater remembers the last few).
#[derive(Default)]
pub struct Lent {
    /// The buffer every read goes into.
    pub read: Vec<u8>,
    /// The buffer a TLS connection's plaintext is decrypted into, after
    /// its tail.
    pub plain: Vec<u8>,
    /// Created at the first compressed message of such a connection.
    pub inflater: Option<Inflater>,
}

/// A fragmented message in progress.
struct Partial {
    opcode: u8,
    /// Its first frame had RSV1: inflate it when whole.
    compressed: bool,
    data: Vec<u8>,
}

/// How a connection inflates, if the server compresses.
enum Deflate {
    /// permessage-deflate not agreed: RSV1 is a protocol error.
    Off,
    /// Every message stands alone: the thread's [`Lent::inflater`] serves.
    Shared,
    /// The server keeps its context: the window is this connection's own.
    Own(Box<Inflater>),
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
    /// A fragmented message in progress (boxed: rare).
    partial: Option<Box<Partial>>,
    /// The start of a frame whose rest has not arrived yet.
    tail: Vec<u8>,
    /// What it measures (hot fields first).
    pub sub: Subscriber,
    socket: TcpStream,
    /// Where pongs and closes go (tokio side; the publisher writes there too).
    pub writer: WsWriter,
    /// Only looked at when a frame has RSV1 (cold, after the hot lines).
    deflate: Deflate,
    /// Bytes read before the connection came here, not yet counted.
    read_before: u64,
    /// `wss://`: the rustls state it decrypts with (cold: the thread knows
    /// a TLS connection by its token, and plain reads never look here).
    tls: Option<TlsRead>,
}

impl Conn {
    /// Wraps a detached connection; its already-buffered bytes are decoded
    /// first (see [`Conn::decode_buffered`]).
    pub fn new(d: Detached, sub: Subscriber) -> Conn {
        let deflate = match d.inflater {
            None => Deflate::Off,
            Some(i) if i.keeps_context() => Deflate::Own(Box::new(i)),
            Some(_) => Deflate::Shared,
        };
        Conn {
            need: 0,
            fd: d.socket.as_raw_fd(),
            partial: None,
            tail: d.buffered,
            sub,
            socket: d.socket,
            writer: d.writer,
            deflate,
            read_before: d.read_bytes,
            tls: d.tls.map(TlsRead::new),
        }
    }

    /// Whether it is a TLS connection (read with [`Conn::read_ready_tls`]).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
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

    /// Counts messages (and the bytes read) that arrived before the
    /// connection came here.
    pub fn observe_pending(&mut self, pending: &[Message], tally: &mut Tally) {
        let now = now_ns();
        self.sub.count_wire(tally, std::mem::take(&mut self.read_before));
        for m in pending {
            if let Message::Text(t) = m {
                self.sub.count_message(tally, t.len());
            } else if let Message::Binary(b) = m {
                self.sub.count_message(tally, b.len());
            }
            let parsed = self.sub.protocol().parse(m);
            self.sub.observe(parsed, now, tally);
        }
    }

    /// Decodes the frames already in the tail (bytes read before detaching).
    pub fn decode_buffered(&mut self, lent: &mut Lent, tally: &mut Tally, rt: &Handle) -> Result<(), Ended> {
        let data = std::mem::take(&mut self.tail);
        self.decode(&data, now_ns(), &mut lent.inflater, tally, rt)
    }

    /// Reads everything the socket has (edge-triggered: until a short
    /// read) and decodes it.
    pub fn read_ready(&mut self, lent: &mut Lent, tally: &mut Tally, rt: &Handle) -> Result<(), Ended> {
        let Lent {
            read: scratch,
            inflater,
            ..
        } = lent;
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
            self.sub.count_wire(tally, n as u64);
            // One clock read per read: every message in it arrived by now.
            self.decode(&scratch[..kept + n], now_ns(), inflater, tally, rt)?;
            if n < space {
                return Ok(());
            }
        }
    }

    /// [`Conn::read_ready`] for a TLS connection: every `recv()` is
    /// decrypted into the thread's plaintext buffer, after the tail, and
    /// decoded there. What rustls held from before (records read while the
    /// connection was in tokio) is decrypted even when the socket has
    /// nothing new.
    pub fn read_ready_tls(&mut self, lent: &mut Lent, tally: &mut Tally, rt: &Handle) -> Result<(), Ended> {
        let Lent {
            read: scratch,
            plain,
            inflater,
        } = lent;
        if scratch.len() < READ_CHUNK {
            scratch.resize(READ_CHUNK, 0);
        }
        loop {
            let n = match read(self.fd, &mut scratch[..READ_CHUNK]) {
                Ok(0) => return Err(Ended::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Ended::Io(e)),
            };
            self.sub.count_wire(tally, n as u64);
            let kept = self.tail.len();
            if plain.len() < kept {
                plain.resize(kept, 0);
            }
            plain[..kept].copy_from_slice(&self.tail);
            let Some(tls) = &mut self.tls else {
                return Err(protocol("a plain connection read as TLS"));
            };
            let out = tls
                .decrypt(&scratch[..n], plain, kept, &self.socket)
                .map_err(Ended::Protocol)?;
            self.sub.count_tls_records(tally, out.records);
            if out.owes_write {
                let w = self.writer.clone();
                rt.spawn(async move { w.flush().await });
            }
            if out.filled > kept {
                // One clock read per read, as on plain sockets.
                self.decode(&plain[..out.filled], now_ns(), inflater, tally, rt)?;
            }
            if out.peer_closed {
                let why = "TLS close_notify without a close frame";
                return Err(Ended::Io(io::Error::new(io::ErrorKind::UnexpectedEof, why)));
            }
            if n < READ_CHUNK {
                return Ok(());
            }
        }
    }

    /// Decodes every whole frame of `data` and keeps the rest as the tail.
    fn decode(
        &mut self,
        data: &[u8],
        now: u64,
        shared: &mut Option<Inflater>,
        tally: &mut Tally,
        rt: &Handle,
    ) -> Result<(), Ended> {
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
            let compressed = if h.mask.is_none() && h.rsv == 0 {
                false
            } else {
                let deflate = !matches!(self.deflate, Deflate::Off);
                frame::check_from_server(h.mask.is_some(), h.rsv, h.opcode, deflate).map_err(violation)?;
                h.rsv & RSV1 != 0
            };
            let frame = Frame {
                opcode: h.opcode,
                fin: h.fin,
                compressed,
            };
            self.frame(frame, &data[pos + h.header_len..end], now, shared, tally, rt)?;
            pos = end;
        }
        self.tail.clear();
        self.tail.extend_from_slice(&data[pos..]);
        Ok(())
    }

    fn frame(
        &mut self,
        f: Frame,
        payload: &[u8],
        now: u64,
        shared: &mut Option<Inflater>,
        tally: &mut Tally,
        rt: &Handle,
    ) -> Result<(), Ended> {
        match f.opcode {
            OP_TEXT | OP_BINARY if self.partial.is_some() => {
                Err(protocol("new data frame while a fragmented message is in progress"))
            }
            OP_TEXT | OP_BINARY if f.fin && f.compressed => {
                self.inflated(f.opcode == OP_TEXT, payload, now, shared, tally, rt)
            }
            OP_TEXT | OP_BINARY if f.fin => self.message(f.opcode == OP_TEXT, payload, now, tally, rt),
            OP_TEXT | OP_BINARY => {
                self.partial = Some(Box::new(Partial {
                    opcode: f.opcode,
                    compressed: f.compressed,
                    data: payload.to_vec(),
                }));
                Ok(())
            }
            OP_CONTINUATION => {
                let mut p = self
                    .partial
                    .take()
                    .ok_or_else(|| protocol("unexpected continuation frame"))?;
                if p.data.len() + payload.len() > MAX_MESSAGE {
                    return Err(protocol("fragmented message exceeds the size limit"));
                }
                p.data.extend_from_slice(payload);
                match (f.fin, p.compressed) {
                    (true, true) => self.inflated(p.opcode == OP_TEXT, &p.data, now, shared, tally, rt),
                    (true, false) => self.message(p.opcode == OP_TEXT, &p.data, now, tally, rt),
                    (false, _) => {
                        self.partial = Some(p);
                        Ok(())
                    }
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

    /// A whole compressed message: inflated into the connection's own
    /// inflater's buffer, or the thread's, then handled as any other.
    fn inflated(
        &mut self,
        text: bool,
        payload: &[u8],
        now: u64,
        shared: &mut Option<Inflater>,
        tally: &mut Tally,
        rt: &Handle,
    ) -> Result<(), Ended> {
        let inflater = match &mut self.deflate {
            Deflate::Own(own) => own.as_mut(),
            Deflate::Shared => shared.get_or_insert_with(|| {
                Inflater::new(&DeflateParams {
                    server_no_context_takeover: true,
                    ..DeflateParams::default()
                })
            }),
            // `check_from_server` refused RSV1 already.
            Deflate::Off => return Err(protocol("server set RSV bits without an extension")),
        };
        let bytes = inflater
            .inflate(payload, MAX_MESSAGE)
            .map_err(|e| Ended::Protocol(e.to_string()))?;
        deliver(&mut self.sub, &self.writer, text, bytes, now, tally, rt)
    }

    fn message(&mut self, text: bool, bytes: &[u8], now: u64, tally: &mut Tally, rt: &Handle) -> Result<(), Ended> {
        deliver(&mut self.sub, &self.writer, text, bytes, now, tally, rt)
    }
}

/// A frame's header, as [`Conn::frame`] needs it.
#[derive(Clone, Copy)]
struct Frame {
    opcode: u8,
    fin: bool,
    /// RSV1 (permessage-deflate): the message's payload is compressed.
    compressed: bool,
}

/// Hands one whole (inflated) message to `sub`; Socket.IO heartbeats are
/// answered through `writer`.
fn deliver(
    sub: &mut Subscriber,
    writer: &WsWriter,
    text: bool,
    bytes: &[u8],
    now: u64,
    tally: &mut Tally,
    rt: &Handle,
) -> Result<(), Ended> {
    // Cheap for ASCII (word at a time), and a client must check it.
    if text && std::str::from_utf8(bytes).is_err() {
        return Err(protocol("invalid UTF-8 in a text message"));
    }
    sub.count_message(tally, bytes.len());
    match sub.protocol().parse_data(text, bytes) {
        // Socket.IO's heartbeat, on every connection (publishers too):
        // rare (every 25 s on Node), so a task per pong is fine.
        Incoming::Heartbeat => {
            let w = writer.clone();
            rt.spawn(async move { w.send_text(socketio::PONG).await });
        }
        parsed => sub.observe(parsed, now, tally),
    }
    Ok(())
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
