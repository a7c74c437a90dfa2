//! TLS for `wss://` and `https://`: the certificate chain and key from
//! `[tls]`, served with rustls (TLS 1.2 and 1.3, ALPN `http/1.1`). The
//! acceptor is rebuilt on every reload (SIGHUP), so renewed certificates
//! are picked up without a restart; open connections keep theirs.
//! Once a WebSocket upgrades, its records are read and written outside hyper
//! (`socket.rs`), so its flush shard writes it as it writes plain TCP.

mod socket;

pub use socket::{TlsRead, TlsSocket, TlsWrite};

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::error::ConfigError;

/// The acceptor for `[tls]`, or `None` when TLS is off (both files empty).
pub fn acceptor(config: &Config) -> Result<Option<TlsAcceptor>, ConfigError> {
    let t = &config.tls;
    t.validate()?;
    if t.cert_file.is_empty() {
        return Ok(None);
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| {
            ConfigError::invalid(
                "tls.cert_file",
                format!("cannot read certificates from {}: {e}", t.cert_file),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            "tls.cert_file",
            format!("{} holds no certificate (-----BEGIN CERTIFICATE-----)", t.cert_file),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key_file).map_err(|e| {
        ConfigError::invalid(
            "tls.key_file",
            format!("cannot read a private key from {}: {e}", t.key_file),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ConfigError::invalid("tls", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ConfigError::invalid(
                "tls.key_file",
                format!("does not match tls.cert_file or is unusable: {e}"),
            )
        })?;
    // HTTP/1.1 only: WebSocket upgrades need it, and hyper serves nothing else here.
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}
