//! A `wss://` connection taken out of hyper once upgraded: its TCP socket and
//! its rustls state, shared by the three that use them — the connection's
//! reader ([`TlsRead`]), its flush shard ([`TlsSocket::write_now`]) and its
//! task when the socket is full or the connection closes ([`TlsWrite`]).
//!
//! rustls keeps one state machine for both directions, so the state sits
//! behind a per-connection lock. Every socket operation under it is
//! non-blocking (a full or empty socket returns at once and the caller waits
//! for readiness with the lock released), so the lock is only ever held for
//! an encryption or decryption and one system call, and it is the order of
//! taking it that keeps records in order on the wire. Encrypted bytes the
//! socket did not take stay in rustls and go out before anything written
//! after them.

use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use parking_lot::Mutex;
use rustls::ServerConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// One TLS connection's socket and record layer.
#[derive(Debug)]
pub struct TlsSocket {
    tcp: TcpStream,
    conn: Mutex<Records>,
}

/// The rustls state and what this side has already ended.
#[derive(Debug)]
struct Records {
    conn: ServerConnection,
    /// `close_notify` is queued: nothing more may be written.
    closing: bool,
}

/// How writing what rustls holds went.
enum Sent {
    /// Everything is on the socket.
    All,
    /// The socket is full; the rest stays in rustls.
    Blocked,
}

impl TlsSocket {
    /// The connection over `tcp` whose handshake `conn` completed.
    pub fn new(tcp: TcpStream, conn: ServerConnection) -> Arc<Self> {
        Arc::new(TlsSocket {
            tcp,
            conn: Mutex::new(Records { conn, closing: false }),
        })
    }

    /// The TCP socket under the records.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Encrypts as much of `bufs` as rustls takes and sends it, never waiting. Returns
    /// how many plaintext bytes were taken (they are sent, or held by rustls to go out
    /// first next time), or `WouldBlock` when the socket is full with records still
    /// held: the caller waits for the socket to become writable.
    ///
    /// All of `bufs` goes into as few records as rustls cuts it into (up to 16 KiB each),
    /// not a record per frame.
    pub fn write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut records = self.conn.lock();
        let r = &mut *records;
        if let Sent::Blocked = send_held(&mut r.conn, &self.tcp)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if r.closing {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS connection already closed",
            ));
        }
        let taken = r.conn.writer().write_vectored(bufs)?;
        send_held(&mut r.conn, &self.tcp)?;
        Ok(taken)
    }

    /// Sends what rustls holds, never waiting. `Ok(false)`: the socket is full.
    pub fn flush_now(&self) -> io::Result<bool> {
        Ok(matches!(send_held(&mut self.conn.lock().conn, &self.tcp)?, Sent::All))
    }

    /// Queues `close_notify` (once) and sends what rustls holds, never waiting.
    /// `Ok(false)`: the socket is full.
    fn close_now(&self) -> io::Result<bool> {
        let mut records = self.conn.lock();
        if !records.closing {
            records.closing = true;
            records.conn.send_close_notify();
        }
        Ok(matches!(send_held(&mut records.conn, &self.tcp)?, Sent::All))
    }

    /// Reads plaintext into `buf` without waiting: `Ok(0)` at the client's
    /// `close_notify`, `WouldBlock` when the socket has nothing more.
    fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut records = self.conn.lock();
        let conn = &mut records.conn;
        loop {
            match conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            match conn.read_tls(&mut TcpIo(&self.tcp)) {
                // EOF: rustls now says whether it came after a close_notify.
                Ok(0) => {}
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let processed = conn.process_new_packets();
            // An alert for a bad record, or an answer rustls owes (a key update): sent as
            // far as the socket takes it now; anything left goes out before the next frame.
            let _ = send_held(conn, &self.tcp);
            if let Err(e) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

/// Writes the records rustls holds until none is left or the socket is full.
fn send_held(conn: &mut ServerConnection, tcp: &TcpStream) -> io::Result<Sent> {
    while conn.wants_write() {
        match conn.write_tls(&mut TcpIo(tcp)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sent::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Sent::All)
}

/// The TCP socket as blocking-style `Read` and `Write` that never block: tokio's `try_`
/// calls, which also clear the readiness they found stale.
struct TcpIo<'a>(&'a TcpStream);

impl Read for TcpIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TcpIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading half: plaintext as the client sent it.
#[derive(Debug)]
pub struct TlsRead(pub Arc<TlsSocket>);

impl AsyncRead for TlsRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let socket = &self.0;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match socket.read_now(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(socket.tcp.poll_read_ready(cx))?,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// The writing half the connection's task uses: waits for the socket where the flush
/// shard's [`TlsSocket::write_now`] gives up. Shutting it down sends `close_notify` and
/// half-closes.
#[derive(Debug)]
pub struct TlsWrite(pub Arc<TlsSocket>);

impl TlsWrite {
    /// Retries `attempt` until it stops saying `WouldBlock`, waiting for the socket.
    fn poll_with<T>(
        &self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(&TlsSocket) -> io::Result<Option<T>>,
    ) -> Poll<io::Result<T>> {
        loop {
            match attempt(&self.0) {
                Ok(Some(v)) => return Poll::Ready(Ok(v)),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            ready!(self.0.tcp.poll_write_ready(cx))?;
        }
    }
}

impl AsyncWrite for TlsWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_with(cx, |s| s.write_now(bufs).map(Some))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_with(cx, |s| Ok(s.flush_now()?.then_some(())))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_with(cx, |s| Ok(s.close_now()?.then_some(()))))?;
        Poll::Ready(socket2::SockRef::from(&self.0.tcp).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::testing::{limits, tls_queue};
    use crate::flush::Flushers;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Records encrypted while the client reads nothing stay in rustls once the socket is
    /// full; a flush sends them all once it reads again, in order.
    #[tokio::test]
    async fn records_the_socket_did_not_take_go_out_on_flush() {
        let flushers = Flushers::new(1, std::time::Duration::ZERO);
        let (_q, socket, mut client) = tls_queue(&flushers, limits()).await;
        // Byte `i` of the stream is `i % 251`, so any loss or reordering shows.
        let data: Vec<u8> = (0..64 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut taken = 0usize;
        loop {
            match socket.write_now(&[IoSlice::new(&data[taken..taken + 16_000])]) {
                Ok(n) => taken += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(!socket.flush_now().unwrap(), "records are held back by a full socket");
        let reading = tokio::spawn(async move {
            let mut got = vec![0u8; taken];
            client.read_exact(&mut got).await.map(|_| got)
        });
        TlsWrite(Arc::clone(&socket)).flush().await.unwrap();
        let got = reading.await.unwrap().expect("every byte arrives");
        assert!(got == data[..taken], "in order, intact");
        assert!(socket.flush_now().unwrap(), "nothing left");
    }
}
