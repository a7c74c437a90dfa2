//! One floor-server epoll loop: accepts (every loop watches the shared
//! listener, `EPOLLEXCLUSIVE`), upgrades, reads its own clients' frames
//! and broadcasts each data message to every other client.

use super::peer::{Peer, Sent};
use super::upgrade::{self, Upgrade};
use super::Shared;
use crate::client::frame::{self, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use crate::epoll::{self, Epoll, EventFd, Events};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const LISTENER: u64 = 0;
const WAKE: u64 = 1;
/// Connection tokens are `FIRST_SLOT + slot`.
const FIRST_SLOT: u64 = 2;
/// Bytes asked for per read.
const READ: usize = 16 * 1024;
/// Largest message accepted from a client (larger: close 1009).
const MAX_MESSAGE: usize = 16 << 20;

/// Close codes the server sends.
const PROTOCOL_ERROR: u16 = 1002;
const TOO_BIG: u16 = 1009;

/// A connection's read side, owned by its loop.
struct Client {
    peer: Arc<Peer>,
    /// Bytes read and not yet decoded.
    inbuf: Vec<u8>,
    upgraded: bool,
    /// Opcode and bytes of a fragmented message in progress.
    partial: Option<(u8, Vec<u8>)>,
}

/// One loop's state.
pub(super) struct Loop {
    epoll: Epoll,
    events: Events,
    listener: Arc<TcpListener>,
    shared: Arc<Shared>,
    wake: Arc<EventFd>,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    /// The frames to broadcast from one read, encoded once.
    out: Vec<u8>,
    /// How many frames `out` holds, and whose they are.
    out_frames: u64,
    out_from: u64,
    /// A control reply (pong, close) to one client.
    ctrl: Vec<u8>,
}

impl Loop {
    /// A loop on the shared `listener`; `wake` stops it.
    pub(super) fn new(listener: Arc<TcpListener>, shared: Arc<Shared>, wake: Arc<EventFd>) -> io::Result<Loop> {
        let epoll = Epoll::new()?;
        epoll.add(listener.as_raw_fd(), epoll::IN | epoll::EXCLUSIVE, LISTENER)?;
        epoll.add(wake.as_raw_fd(), epoll::IN, WAKE)?;
        Ok(Loop {
            epoll,
            events: Events::with_capacity(256),
            listener,
            shared,
            wake,
            clients: Vec::new(),
            free: Vec::new(),
            out: Vec::with_capacity(4096),
            out_frames: 0,
            out_from: 0,
            ctrl: Vec::with_capacity(256),
        })
    }

    /// Serves until the server stops.
    pub(super) fn run(mut self) {
        loop {
            if let Err(e) = self.epoll.wait(&mut self.events, -1) {
                eprintln!("floor server: epoll_wait: {e}");
                return;
            }
            for i in 0..self.events.len() {
                match self.events.get(i) {
                    (LISTENER, _) => self.accept_all(),
                    (WAKE, _) => {
                        self.wake.drain();
                        if self.shared.stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                    (token, bits) => self.ready((token - FIRST_SLOT) as usize, bits),
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((socket, _)) => {
                    if let Err(e) = self.add(socket) {
                        eprintln!("floor server: cannot take a connection: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, say: try again on the next event.
                    eprintln!("floor server: accept: {e}");
                    return;
                }
            }
        }
    }

    fn add(&mut self, socket: TcpStream) -> io::Result<()> {
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.clients.len() - 1
        });
        let bits = epoll::IN | epoll::OUT | epoll::RDHUP | epoll::ET;
        if let Err(e) = self.epoll.add(socket.as_raw_fd(), bits, FIRST_SLOT + slot as u64) {
            self.free.push(slot);
            return Err(e);
        }
        self.clients[slot] = Some(Client {
            peer: Arc::new(Peer::new(id, socket)),
            inbuf: Vec::new(),
            upgraded: false,
            partial: None,
        });
        Ok(())
    }

    fn ready(&mut self, slot: usize, bits: u32) {
        let Some(mut c) = self.clients.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if bits & epoll::OUT != 0 {
            c.peer.flush();
        }
        if self.read_all(&mut c) {
            self.clients[slot] = Some(c);
        } else {
            self.close(slot, c);
        }
    }

    /// Reads until a short read; false when the connection must close.
    fn read_all(&mut self, c: &mut Client) -> bool {
        loop {
            let len = c.inbuf.len();
            c.inbuf.resize(len + READ, 0);
            let n = match c.peer.socket().read(&mut c.inbuf[len..]) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(e) => {
                    c.inbuf.truncate(len);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return true,
                        io::ErrorKind::Interrupted => continue,
                        _ => return false,
                    }
                }
            };
            c.inbuf.truncate(len + n);
            if !self.decode(c) {
                return false;
            }
            if n < READ {
                return true;
            }
        }
    }

    /// Upgrades, then handles every whole frame in `c.inbuf`.
    fn decode(&mut self, c: &mut Client) -> bool {
        if !c.upgraded {
            match upgrade::parse(&c.inbuf) {
                Upgrade::Incomplete => return true,
                Upgrade::Refuse(response) => {
                    let _ = c.peer.socket().write_all(response.as_bytes());
                    return false;
                }
                Upgrade::Accept { response, consumed } => {
                    // A fresh socket's buffer takes the short response whole.
                    // Only then join the broadcast list, so no frame can
                    // precede the 101.
                    if c.peer.socket().write_all(response.as_bytes()).is_err() {
                        return false;
                    }
                    c.upgraded = true;
                    self.shared
                        .peers
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(c.peer.clone());
                    self.shared.counters.clients.fetch_add(1, Ordering::Relaxed);
                    c.inbuf.drain(..consumed);
                }
            }
        }
        let mut pos = 0;
        let keep = loop {
            let h = match frame::decode_header(&c.inbuf[pos..], MAX_MESSAGE) {
                Ok(Some(h)) => h,
                Ok(None) => break true,
                Err(_) => break self.refuse(c, TOO_BIG),
            };
            let end = pos + h.header_len + h.payload_len;
            if end > c.inbuf.len() {
                break true;
            }
            let (Some(key), 0) = (h.mask, h.rsv) else {
                break self.refuse(c, PROTOCOL_ERROR);
            };
            let payload = &mut c.inbuf[pos + h.header_len..end];
            frame::apply_mask(payload, key);
            let payload = &c.inbuf[pos + h.header_len..end];
            if !self.frame(&c.peer, &mut c.partial, h.opcode, h.fin, payload) {
                break false;
            }
            pos = end;
        };
        c.inbuf.drain(..pos);
        // What one read brought goes out in one write per recipient.
        self.broadcast();
        keep
    }

    /// Handles one unmasked frame; false when the connection must close.
    fn frame(&mut self, peer: &Peer, partial: &mut Option<(u8, Vec<u8>)>, op: u8, fin: bool, payload: &[u8]) -> bool {
        match op {
            OP_TEXT | OP_BINARY if partial.is_some() => self.refuse_peer(peer, PROTOCOL_ERROR),
            OP_TEXT | OP_BINARY if fin => {
                self.queue(peer.id, op, payload);
                true
            }
            OP_TEXT | OP_BINARY => {
                *partial = Some((op, payload.to_vec()));
                true
            }
            OP_CONTINUATION => match partial.take() {
                None => self.refuse_peer(peer, PROTOCOL_ERROR),
                Some((_, data)) if data.len() + payload.len() > MAX_MESSAGE => self.refuse_peer(peer, TOO_BIG),
                Some((first, mut data)) => {
                    data.extend_from_slice(payload);
                    if fin {
                        self.queue(peer.id, first, &data);
                    } else {
                        *partial = Some((first, data));
                    }
                    true
                }
            },
            OP_PING => {
                self.reply(peer, OP_PONG, payload);
                true
            }
            OP_PONG => true,
            OP_CLOSE => {
                // Echo the status code (RFC 6455 5.5.1), then close.
                let code = payload.get(..2).unwrap_or_default().to_vec();
                self.reply(peer, OP_CLOSE, &code);
                false
            }
            _ => self.refuse_peer(peer, PROTOCOL_ERROR),
        }
    }

    /// Adds one data message from `from` to the next broadcast.
    fn queue(&mut self, from: u64, op: u8, payload: &[u8]) {
        frame::encode_frame(&mut self.out, op, true, payload, None);
        self.out_frames += 1;
        self.out_from = from;
    }

    /// Writes the queued messages to every client but their sender: one
    /// `write()` per recipient; a recipient whose socket is full loses them.
    fn broadcast(&mut self) {
        if self.out_frames == 0 {
            return;
        }
        let (mut written, mut dropped) = (0u64, 0u64);
        {
            let peers = self.shared.peers.read().unwrap_or_else(|e| e.into_inner());
            for p in peers.iter().filter(|p| p.id != self.out_from) {
                match p.send(&self.out) {
                    Sent::Written => written += 1,
                    Sent::Dropped => dropped += 1,
                    Sent::Failed => {}
                }
            }
        }
        let (c, k) = (&self.shared.counters, self.out_frames);
        c.messages.fetch_add(k, Ordering::Relaxed);
        c.written.fetch_add(written * k, Ordering::Relaxed);
        if dropped > 0 {
            c.dropped.fetch_add(dropped * k, Ordering::Relaxed);
        }
        self.out.clear();
        self.out_frames = 0;
    }

    fn reply(&mut self, peer: &Peer, op: u8, payload: &[u8]) {
        self.ctrl.clear();
        frame::encode_frame(&mut self.ctrl, op, true, payload, None);
        peer.send(&self.ctrl);
    }

    /// Sends close `code` and says the connection must close.
    fn refuse_peer(&mut self, peer: &Peer, code: u16) -> bool {
        self.reply(peer, OP_CLOSE, &code.to_be_bytes());
        false
    }

    fn refuse(&mut self, c: &Client, code: u16) -> bool {
        self.refuse_peer(&c.peer, code)
    }

    fn close(&mut self, slot: usize, c: Client) {
        let _ = self.epoll.delete(c.peer.socket().as_raw_fd());
        if c.upgraded {
            let id = c.peer.id;
            self.shared
                .peers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|p| p.id != id);
        }
        self.free.push(slot);
        // The last Arc closes the socket: the list held the only other one.
        drop(c);
    }
}
