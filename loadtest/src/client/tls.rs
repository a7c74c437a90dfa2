//! `wss://`: the rustls client configuration (which certificates to trust),
//! and the TLS state a detached connection's two sides share.
//!
//! * [`client_config`] trusts the roots of a PEM file (`--ca-file`) or,
//!   with `--insecure`, any certificate ([`AcceptAnyCertificate`], which
//!   still checks that the server signed the handshake with the key of the
//!   certificate it sent). Without either there is nothing to trust, and
//!   the error says so, naming both options.
//! * Session resumption is off: every connection does a full handshake, as
//!   many distinct browsers would. ALPN offers `http/1.1` as browsers do for
//!   a WebSocket upgrade. The server name is the URL's host (an IP literal
//!   is checked against the certificate's IP addresses, and sends no SNI).
//! * Once the connection is detached ([`super::WsReader::detach`]), its
//!   `rustls::ClientConnection` sits in a [`TlsSession`]: a mutex the
//!   receive thread takes once per `recv()` to decrypt, and the tokio
//!   writer takes per write to encrypt ([`TlsFdWriter`]). The writer is
//!   busy only on a publisher and on the rare subscriber write (a pong, a
//!   close), so the lock is all but never contended.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::io::{self, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWrite;

/// What to trust for `wss://`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsTrust {
    /// Accept any server certificate (the handshake signature is still checked).
    pub insecure: bool,
    /// PEM file of the certificates to trust as roots (a CA, or a
    /// self-signed server certificate itself).
    pub ca_file: Option<PathBuf>,
}

/// Why there is no TLS client configuration.
#[derive(Debug, Error)]
pub enum TlsError {
    /// Neither `--ca-file` nor `--insecure`: no certificate could be trusted.
    #[error(
        "wss:// needs a certificate to trust and none was given: pass --ca-file PATH (the PEM \
         certificate of the CA that signed the server's, or the server's self-signed certificate) \
         or --insecure (accept any certificate, for test certificates)"
    )]
    NoTrust,
    /// The CA file could not be read or holds no certificate.
    #[error("--ca-file {path}: {why}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The client configuration for `trust`: ring's algorithms, TLS 1.3 and
/// 1.2, ALPN `http/1.1`, no session resumption.
pub fn client_config(trust: &TlsTrust) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let mut config = match (&trust.ca_file, trust.insecure) {
        (Some(path), _) => builder.with_root_certificates(roots(path)?).with_no_client_auth(),
        (None, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(&provider)))
            .with_no_client_auth(),
        (None, false) => return Err(TlsError::NoTrust),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The roots in the PEM file at `path`.
fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let fail = |why: String| TlsError::CaFile {
        path: path.to_owned(),
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificate in it (-----BEGIN CERTIFICATE-----)".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    Ok(roots)
}

/// The server name to check the certificate against: the URL's host
/// (a DNS name, or an IP address).
pub fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad TLS server name {host}: {e}")))
}

/// A failed TLS handshake as an error a user can act on.
pub fn handshake_error(host: &str, port: u16, e: io::Error) -> io::Error {
    let hint = match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(cert)) => certificate_hint(cert, host),
        _ => String::new(),
    };
    io::Error::new(e.kind(), format!("TLS handshake with {host}:{port} failed: {e}{hint}"))
}

/// What to do about a certificate rustls refused.
fn certificate_hint(e: &rustls::CertificateError, host: &str) -> String {
    use rustls::CertificateError::*;
    match e {
        NotValidForName | NotValidForNameContext { .. } => {
            format!(" (the certificate does not name {host}: connect by a name it has, or pass --insecure)")
        }
        // webpki's refusal of a CA certificate as the server's own, as
        // `openssl req -x509` makes them by default.
        Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            " (the server's certificate is a CA certificate, which cannot be a server's own: make it with \
             basicConstraints=critical,CA:FALSE, e.g. openssl req -x509 ... -addext \
             basicConstraints=critical,CA:FALSE, or pass --insecure)"
                .into()
        }
        _ => " (trust the server's certificate with --ca-file PATH, or pass --insecure for test certificates)".into(),
    }
}

/// What was negotiated, e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519`.
pub fn describe(conn: &ClientConnection) -> String {
    let version = conn
        .protocol_version()
        .map_or_else(|| "?".to_string(), |v| format!("{v:?}"));
    let suite = conn
        .negotiated_cipher_suite()
        .map_or_else(|| "?".to_string(), |s| format!("{:?}", s.suite()));
    match conn.negotiated_key_exchange_group() {
        Some(g) => format!("{version} {suite} {:?}", g.name()),
        None => format!("{version} {suite}"),
    }
}

/// `--insecure`: any certificate is accepted, whoever it names and whoever
/// signed it, but the handshake signatures are verified with the
/// provider's algorithms (the server holds the key of the certificate it
/// sent, so the session keys are not a third party's).
#[derive(Debug)]
pub struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyCertificate {
    /// Verifies handshake signatures with `provider`'s algorithms.
    pub fn new(provider: &CryptoProvider) -> AcceptAnyCertificate {
        AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A detached connection's TLS state, shared by its receive thread (which
/// decrypts) and its tokio writer (which encrypts).
#[derive(Debug)]
pub struct TlsSession(Mutex<ClientConnection>);

impl TlsSession {
    pub(crate) fn new(conn: ClientConnection) -> Arc<TlsSession> {
        Arc::new(TlsSession(Mutex::new(conn)))
    }

    /// The connection, locked. Hold it only to move bytes in or out of
    /// rustls, never across a wait.
    pub fn lock(&self) -> MutexGuard<'_, ClientConnection> {
        // A panic while holding it cannot leave rustls half-updated in a way
        // that matters here: the connection then fails on its next use.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The write side of a detached TLS connection: plaintext is encrypted
/// under the shared [`TlsSession`] and the records go out through a
/// duplicate of the socket that tokio watches for writability only.
pub(crate) struct TlsFdWriter {
    pub(crate) fd: AsyncFd<TcpStream>,
    pub(crate) session: Arc<TlsSession>,
}

impl TlsFdWriter {
    /// Writes the records rustls holds until none is left (`Ready`) or the
    /// socket is full (`Pending`, woken when it drains).
    fn poll_flush_records(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.session.lock().wants_write() {
                return Poll::Ready(Ok(()));
            }
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let mut conn = self.session.lock();
            if !conn.wants_write() {
                return Poll::Ready(Ok(()));
            }
            // One writev of up to 64 records (`Write for &TcpStream`).
            match guard.try_io(|s| conn.write_tls(&mut s.get_ref())) {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Readiness cleared: the next poll_write_ready registers us.
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for TlsFdWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // Records still waiting go first: that is the backpressure.
        ready!(self.poll_flush_records(cx))?;
        let n = self.session.lock().writer().write(buf)?;
        // Then try to send them at once; what the socket does not take stays
        // in rustls for the next write or flush.
        match self.poll_flush_records(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(n)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_records(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.session.lock().send_close_notify();
        ready!(self.poll_flush_records(cx))?;
        Poll::Ready(self.fd.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// Writes whatever records rustls holds without waiting (from a receive
/// thread: an answer rustls owes the server, such as a key update).
/// Returns true when some are still left for the tokio writer to flush.
pub fn write_pending(conn: &mut ClientConnection, socket: &TcpStream) -> bool {
    let mut out = socket;
    while conn.wants_write() {
        match conn.write_tls(&mut out) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    conn.wants_write()
}

/// Counts TLS records as they pass in a byte stream (a receive thread's
/// `recv()`s), five-byte headers and bodies split anywhere.
#[derive(Debug, Default, Clone)]
pub struct RecordCounter {
    /// Header bytes seen of the record starting now (0..5).
    head_len: u8,
    /// Its two length bytes so far.
    head: [u8; 2],
    /// Body bytes of the current record still to come.
    body_left: u32,
}

impl RecordCounter {
    /// Walks `data`; returns how many record headers completed in it.
    pub fn feed(&mut self, data: &[u8]) -> u64 {
        let (mut pos, mut records) = (0, 0);
        while pos < data.len() {
            if self.body_left > 0 {
                let skip = (self.body_left as usize).min(data.len() - pos);
                self.body_left -= skip as u32;
                pos += skip;
                continue;
            }
            // Header: type (1), version (2), length (2).
            if self.head_len >= 3 {
                self.head[self.head_len as usize - 3] = data[pos];
            }
            self.head_len += 1;
            pos += 1;
            if self.head_len == 5 {
                self.body_left = u16::from_be_bytes(self.head) as u32;
                self.head_len = 0;
                records += 1;
            }
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_trust_names_both_options() {
        let e = client_config(&TlsTrust::default()).unwrap_err().to_string();
        assert!(e.contains("--ca-file") && e.contains("--insecure"), "{e}");
        assert!(client_config(&TlsTrust {
            insecure: true,
            ca_file: None
        })
        .is_ok());
        let missing = TlsTrust {
            insecure: false,
            ca_file: Some("/nonexistent/ca.pem".into()),
        };
        let e = client_config(&missing).unwrap_err().to_string();
        assert!(e.starts_with("--ca-file /nonexistent/ca.pem:"), "{e}");
    }

    #[test]
    fn server_names_take_hosts_and_ips() {
        assert!(matches!(server_name("localhost").unwrap(), ServerName::DnsName(_)));
        assert!(matches!(server_name("127.0.0.1").unwrap(), ServerName::IpAddress(_)));
        assert!(matches!(server_name("::1").unwrap(), ServerName::IpAddress(_)));
    }

    #[test]
    fn records_are_counted_across_reads() {
        let mut stream = Vec::new();
        for len in [3u16, 0, 300] {
            stream.extend_from_slice(&[0x17, 3, 3]);
            stream.extend_from_slice(&len.to_be_bytes());
            stream.resize(stream.len() + len as usize, 0xaa);
        }
        for cut in 0..stream.len() {
            let mut c = RecordCounter::default();
            let (a, b) = stream.split_at(cut);
            assert_eq!(c.feed(a) + c.feed(b), 3, "cut at {cut}");
        }
        let mut c = RecordCounter::default();
        let bytewise: u64 = stream.chunks(1).map(|b| c.feed(b)).sum();
        assert_eq!(bytewise, 3);
    }
}
