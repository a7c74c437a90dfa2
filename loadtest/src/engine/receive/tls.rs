//! Decrypting a TLS connection on its receive thread: the ciphertext one
//! `recv()` brought goes through the connection's rustls state, and the
//! plaintext lands in the thread's buffer, after the frame the last read
//! left unfinished, for [`super::Conn`] to decode in place as on a plain
//! socket. Nothing here allocates per message: the buffer is the thread's
//! and grows only to the largest read. rustls itself keeps each decrypted
//! record in a `Vec` of its own until it is read out (rustls 0.23,
//! `CommonState::take_received_plaintext`): one allocation per record, the
//! same with its unbuffered API.

use crate::client::tls::{write_pending, RecordCounter, TlsSession};
use crate::client::DetachedTls;
use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;

/// A TLS connection's reading state.
pub(super) struct TlsRead {
    session: Arc<TlsSession>,
    /// Counts the records the server sent (for `TLS records/delivery`).
    records: RecordCounter,
}

/// What one [`TlsRead::decrypt`] produced.
pub(super) struct Decrypted {
    /// `buf` holds plaintext up to here.
    pub filled: usize,
    /// Records whose header arrived in this ciphertext.
    pub records: u64,
    /// The server sent close_notify: no more data will come.
    pub peer_closed: bool,
    /// rustls has records to send the tokio writer must flush (this thread
    /// wrote what the socket took without waiting).
    pub owes_write: bool,
}

impl TlsRead {
    pub(super) fn new(tls: DetachedTls) -> TlsRead {
        TlsRead {
            session: tls.session,
            records: tls.records,
        }
    }

    /// Feeds `cipher` to rustls (and decrypts what it buffered before,
    /// when `cipher` is empty), then appends every decrypted byte to
    /// `buf` from `filled` on. `socket` takes what rustls must answer.
    pub(super) fn decrypt(
        &mut self,
        mut cipher: &[u8],
        buf: &mut Vec<u8>,
        mut filled: usize,
        socket: &TcpStream,
    ) -> Result<Decrypted, String> {
        let records = self.records.feed(cipher);
        let mut conn = self.session.lock();
        let mut peer_closed = false;
        loop {
            // At most ~16 KiB go into rustls per call: decrypt and drain
            // between calls, so its plaintext buffer never fills.
            // (It takes nothing once the server's close_notify is in.)
            if !cipher.is_empty() && conn.read_tls(&mut cipher).map_err(|e| format!("TLS: {e}"))? == 0 {
                cipher = &[];
            }
            let state = conn.process_new_packets().map_err(|e| format!("TLS: {e}"))?;
            let want = state.plaintext_bytes_to_read();
            peer_closed |= state.peer_has_closed();
            if want > 0 {
                if buf.len() < filled + want {
                    buf.resize(filled + want, 0);
                }
                let mut reader = conn.reader();
                let mut got = 0;
                while got < want {
                    match reader.read(&mut buf[filled + got..filled + want]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) => return Err(format!("TLS: {e}")),
                    }
                }
                filled += got;
            }
            if cipher.is_empty() {
                break;
            }
        }
        let owes_write = conn.wants_write() && write_pending(&mut conn, socket);
        Ok(Decrypted {
            filled,
            records,
            peer_closed,
            owes_write,
        })
    }
}
