//! The send side of one floor-server client, shared by every thread that
//! broadcasts to it: one `write()` per frame, no queue. A frame the socket
//! cannot take at all is dropped (and counted); only the rest of a frame
//! the kernel took in part is kept (the backlog), since a cut frame would
//! corrupt the stream, and until it is flushed further frames are dropped.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Mutex;

/// What became of one frame sent to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written (or its rest is in the backlog).
    Written,
    /// The socket was full: dropped.
    Dropped,
    /// The socket failed (its reader will notice and close it).
    Failed,
}

/// One upgraded client.
pub struct Peer {
    /// Unique in the server, so a sender can skip itself.
    pub id: u64,
    socket: TcpStream,
    /// The unwritten rest of a partly written frame. The lock also keeps
    /// two threads' frames from interleaving on the socket.
    backlog: Mutex<Vec<u8>>,
}

impl Peer {
    /// A peer writing to `socket` (non-blocking).
    pub fn new(id: u64, socket: TcpStream) -> Peer {
        Peer {
            id,
            socket,
            backlog: Mutex::new(Vec::new()),
        }
    }

    /// The socket (its owner thread reads it).
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Writes one whole frame, or drops it if the socket is full.
    pub fn send(&self, frame: &[u8]) -> Sent {
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        if !backlog.is_empty() {
            match self.flush_into(&mut backlog) {
                Sent::Written if backlog.is_empty() => {}
                other => return if other == Sent::Failed { other } else { Sent::Dropped },
            }
        }
        match (&self.socket).write(frame) {
            Ok(n) if n == frame.len() => Sent::Written,
            Ok(n) => {
                backlog.extend_from_slice(&frame[n..]);
                Sent::Written
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Dropped,
            Err(_) => Sent::Failed,
        }
    }

    /// Writes what it can of the backlog (on `EPOLLOUT`).
    pub fn flush(&self) {
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        self.flush_into(&mut backlog);
    }

    fn flush_into(&self, backlog: &mut Vec<u8>) -> Sent {
        while !backlog.is_empty() {
            match (&self.socket).write(backlog) {
                Ok(n) => {
                    backlog.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Sent::Written,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Sent::Failed,
            }
        }
        Sent::Written
    }
}
