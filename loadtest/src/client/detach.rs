//! Moving a connection's reading out of tokio: [`WsReader::detach`] gives
//! the socket to a blocking loop of your own (the load tester's epoll
//! receive threads) and keeps writing in tokio through a duplicate of the
//! socket registered for writability only, so data arriving never wakes
//! tokio's reactor. A TLS connection's rustls state goes along, shared by
//! both sides ([`super::tls::TlsSession`]).

use super::deflate::Inflater;
use super::frame::invalid;
use super::stream::{FdWriter, ReadSock, WriteSock};
use super::tls::{RecordCounter, TlsFdWriter, TlsSession};
use super::{WsReader, WsWriter};
use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A connection whose reading left tokio.
pub struct Detached {
    /// The socket, non-blocking and unknown to tokio: read it from your own
    /// loop, and write to it only through [`Detached::writer`] (on TLS, or
    /// under the [`Detached::tls`] lock).
    pub socket: TcpStream,
    /// Bytes already read past the last message returned (frames to decode
    /// first; on TLS, plaintext: rustls may hold more, see [`Detached::tls`]).
    pub buffered: Vec<u8>,
    /// The writer: masks frames as before, now on the write-only duplicate
    /// (on TLS, encrypting under [`Detached::tls`]).
    pub writer: WsWriter,
    /// permessage-deflate's inflater, when agreed: its window goes on to
    /// the next message when the server keeps its context.
    pub inflater: Option<Inflater>,
    /// Bytes read from the socket after the upgrade response, up to now
    /// ([`WsReader::read_bytes`]; `buffered` included).
    pub read_bytes: u64,
    /// `wss://`: the rustls state, shared with the writer, and the count of
    /// records so far.
    pub tls: Option<DetachedTls>,
}

/// A detached connection's TLS.
pub struct DetachedTls {
    /// The rustls state, shared with the writer. What it already read
    /// (records not yet decrypted, plaintext not yet taken) comes after
    /// [`Detached::buffered`]: decrypt it before waiting for the socket.
    pub session: Arc<TlsSession>,
    /// Where the server's byte stream stands in its records (counted from
    /// its first byte), to go on counting them.
    pub records: RecordCounter,
}

impl WsReader {
    /// Detaches the connection from tokio (see the module doc). `writer`
    /// must be this connection's writer with no other clone alive and
    /// nothing queued; a fragmented message must not be in progress.
    /// Must be called inside a tokio runtime.
    pub fn detach(self, writer: WsWriter) -> io::Result<Detached> {
        let parts = self.into_parts();
        if parts.partial {
            return Err(invalid("cannot detach in the middle of a fragmented message"));
        }
        let mismatch = || invalid("reader and writer belong to different sockets");
        let (stream, tls) = match (parts.sock, writer.into_stream_half()?) {
            (ReadSock::Tcp(rd), WriteSock::Tcp(wr)) => (rd.reunite(wr).map_err(|_| mismatch())?, None),
            (ReadSock::Tls(rd), WriteSock::Tls(wr)) if rd.is_pair_of(&wr) => {
                let (counted, conn) = rd.unsplit(wr).into_inner();
                let tls = DetachedTls {
                    session: TlsSession::new(conn),
                    records: counted.records,
                };
                (counted.tcp, Some(tls))
            }
            _ => return Err(mismatch()),
        };
        let socket = stream.into_std()?;
        let dup = socket.try_clone()?;
        // SAFETY: `dup` is a TcpStream we own and move in; it keeps its
        // descriptor open and unchanged for as long as the AsyncFd lives.
        let fd = unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }?;
        let sock = match &tls {
            None => WriteSock::Detached(FdWriter(fd)),
            Some(tls) => WriteSock::DetachedTls(TlsFdWriter {
                fd,
                session: tls.session.clone(),
            }),
        };
        Ok(Detached {
            socket,
            buffered: parts.buffered,
            writer: WsWriter::new(sock),
            inflater: parts.inflater,
            read_bytes: parts.read_bytes,
            tls,
        })
    }
}
