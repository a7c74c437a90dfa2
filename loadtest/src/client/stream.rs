//! The byte streams under a connection: TCP, or TLS over TCP
//! (tokio-rustls), split into a read half ([`ReadSock`]) and a write half
//! ([`WriteSock`]), and the write halves a detached connection keeps.

use super::tls::{RecordCounter, TlsFdWriter};
use std::io::{self, Write};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A TLS client stream over TCP.
pub(crate) type TlsStream = tokio_rustls::client::TlsStream<CountedTcp>;

/// The TCP stream under TLS, counting the records the server sends from
/// its first byte (a record boundary), so the count stays in step however
/// rustls reads: the receive thread carries it on after the detach.
pub(crate) struct CountedTcp {
    pub(crate) tcp: TcpStream,
    pub(crate) records: RecordCounter,
}

impl AsyncRead for CountedTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        this.records.feed(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for CountedTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Where a connection's reader reads, while in tokio.
pub(crate) enum ReadSock {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<TlsStream>),
}

/// Where the bytes go: a write half of the stream, or the write-only
/// registration of a connection whose reading moved elsewhere (see
/// [`super::WsReader::detach`]).
pub(crate) enum WriteSock {
    Tcp(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream>),
    Detached(FdWriter),
    DetachedTls(TlsFdWriter),
}

impl WriteSock {
    /// True when a write can leave encrypted records behind in rustls, so
    /// a flush must follow it (on plain TCP a write is all there is).
    pub(crate) fn keeps_records(&self) -> bool {
        matches!(self, WriteSock::Tls(_) | WriteSock::DetachedTls(_))
    }
}

impl AsyncRead for ReadSock {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSock::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ReadSock::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteSock {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSock::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            WriteSock::Tls(s) => Pin::new(s).poll_write(cx, buf),
            WriteSock::Detached(s) => Pin::new(s).poll_write(cx, buf),
            WriteSock::DetachedTls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSock::Tcp(s) => Pin::new(s).poll_flush(cx),
            WriteSock::Tls(s) => Pin::new(s).poll_flush(cx),
            WriteSock::Detached(s) => Pin::new(s).poll_flush(cx),
            WriteSock::DetachedTls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSock::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            WriteSock::Tls(s) => Pin::new(s).poll_shutdown(cx),
            WriteSock::Detached(s) => Pin::new(s).poll_shutdown(cx),
            WriteSock::DetachedTls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The write side of a detached connection: a duplicate descriptor that
/// tokio watches for writability only.
pub(crate) struct FdWriter(pub(crate) AsyncFd<std::net::TcpStream>);

impl AsyncWrite for FdWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            // `Write for &TcpStream`: a plain send(2) (with MSG_NOSIGNAL).
            match guard.try_io(|s| s.get_ref().write(buf)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.get_ref().shutdown(Shutdown::Write))
    }
}
