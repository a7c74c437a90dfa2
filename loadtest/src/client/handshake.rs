//! The HTTP/1.1 upgrade handshake (RFC 6455 section 4): URL parsing, the
//! request, and checking the `101` answer and its `Sec-WebSocket-Accept`.

use super::frame::invalid;
use base64::Engine;
use sha1::{Digest, Sha1};
use std::io;

/// The GUID every WebSocket accept key is derived with.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A parsed `ws://host:port/path?query` or `wss://...` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 when absent, 443 for `wss://`).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub resource: String,
    /// `wss://`: WebSocket over TLS.
    pub tls: bool,
}

impl WsUrl {
    /// Parses a `ws://` or `wss://` URL.
    pub fn parse(url: &str) -> io::Result<WsUrl> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else {
            return Err(invalid(format!("unsupported URL (ws:// or wss://): {url}")));
        };
        let (authority, resource) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| invalid("bad IPv6 literal in URL"))?;
            let port = v6[end + 1..].strip_prefix(':');
            (v6[..end].to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| invalid(format!("bad port in URL: {url}")))?,
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(invalid(format!("no host in URL: {url}")));
        }
        Ok(WsUrl {
            host,
            port,
            resource,
            tls,
        })
    }

    /// Whether `url` (one of `--url`'s, say) is `wss://`.
    pub fn is_tls(url: &str) -> bool {
        url.trim_start().starts_with("wss://")
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Makes a fresh random `Sec-WebSocket-Key` (16 random bytes, base64).
pub fn new_key() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Builds the upgrade request for `url` with `key` and extra header lines.
pub fn request(url: &WsUrl, key: &str, extra_headers: &[(String, String)]) -> String {
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        url.resource,
        url.host_header()
    );
    for (name, value) in extra_headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Finds the end of the response head (`\r\n\r\n`) in `buf`; returns the
/// head length including the blank line.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Checks a complete response head: status 101, `Upgrade: websocket` and the
/// accept key matching `key`.
pub fn check_response(head: &[u8], key: &str) -> io::Result<()> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("non UTF-8 handshake response"))?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "101" {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("handshake refused: {status}"),
        ));
    }
    let mut accept = None;
    let mut upgrade = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("sec-websocket-accept") {
                accept = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade = value.eq_ignore_ascii_case("websocket");
            }
        }
    }
    if !upgrade {
        return Err(invalid("handshake response lacks `Upgrade: websocket`"));
    }
    if accept.as_deref() != Some(accept_key(key).as_str()) {
        return Err(invalid("handshake response has a wrong Sec-WebSocket-Accept"));
    }
    Ok(())
}

/// The values of every `Sec-WebSocket-Extensions` line of a response head
/// (checked by [`super::deflate::parse_answer`]).
pub fn extension_answers(head: &[u8]) -> Vec<&str> {
    let text = std::str::from_utf8(head).unwrap_or_default();
    text.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, value)| value.trim())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(new_key().len(), 24);
    }

    #[test]
    fn parses_urls() {
        let u = WsUrl::parse("ws://127.0.0.1:8080/ws/t/a?echo=true").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.resource.as_str()),
            ("127.0.0.1", 8080, "/ws/t/a?echo=true")
        );
        let u = WsUrl::parse("ws://localhost").unwrap();
        assert_eq!((u.port, u.resource.as_str()), (80, "/"));
        let u = WsUrl::parse("ws://[::1]:9/x").unwrap();
        assert_eq!((u.host.as_str(), u.host_header()), ("::1", "[::1]:9".to_string()));
        let u = WsUrl::parse("ws://h:1?format=json").unwrap();
        assert_eq!(u.resource, "/?format=json");
        assert!(WsUrl::parse("http://h").is_err());
        assert!(!u.tls && !WsUrl::is_tls("ws://h"));
    }

    #[test]
    fn parses_wss_urls() {
        let u = WsUrl::parse("wss://127.0.0.1:8443/ws?format=json").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.resource.as_str(), u.tls),
            ("127.0.0.1", 8443, "/ws?format=json", true)
        );
        let u = WsUrl::parse("wss://localhost").unwrap();
        assert_eq!((u.port, u.resource.as_str(), u.tls), (443, "/", true));
        assert_eq!(u.host_header(), "localhost:443");
        let u = WsUrl::parse("wss://[::1]/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.host_header()),
            ("::1", 443, "[::1]:443".to_string())
        );
        assert!(WsUrl::is_tls("wss://h:1") && WsUrl::is_tls(" wss://h"));
        let e = WsUrl::parse("https://h").unwrap_err().to_string();
        assert!(e.contains("ws:// or wss://"), "{e}");
        assert!(WsUrl::parse("wss://:443/").is_err(), "no host");
    }

    #[test]
    fn checks_the_response() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_response(ok.as_bytes(), key).is_ok());
        assert_eq!(head_len(ok.as_bytes()), Some(ok.len()));
        assert!(check_response(ok.replace("xOo=", "xOp=").as_bytes(), key).is_err());
        assert!(check_response(b"HTTP/1.1 404 Not Found\r\n\r\n", key).is_err());
        assert!(extension_answers(ok.as_bytes()).is_empty());
        let two = ok.replace(
            "Connection:",
            "sec-websocket-extensions: permessage-deflate\r\nSec-WebSocket-Extensions:  foo \r\nConnection:",
        );
        assert_eq!(extension_answers(two.as_bytes()), ["permessage-deflate", "foo"]);
    }
}
