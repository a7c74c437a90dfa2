//! The floor server's side of the HTTP/1.1 upgrade: any path is accepted;
//! the request must be a `GET` with `Upgrade: websocket` and a
//! `Sec-WebSocket-Key` (version 13 when given).

use crate::client::handshake::{accept_key, head_len};

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// What to do with the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// The head is not complete yet: read more.
    Incomplete,
    /// Upgraded: send `response`; frames start at `consumed`.
    Accept {
        /// The `101 Switching Protocols` response.
        response: String,
        /// Length of the request head.
        consumed: usize,
    },
    /// Not a WebSocket upgrade: send `response` and close.
    Refuse(String),
}

/// Looks at the start of a connection.
pub fn parse(buf: &[u8]) -> Upgrade {
    let Some(head) = head_len(buf) else {
        return if buf.len() > MAX_HEAD {
            refuse("431 Request Header Fields Too Large")
        } else {
            Upgrade::Incomplete
        };
    };
    let Ok(text) = std::str::from_utf8(&buf[..head]) else {
        return refuse("400 Bad Request");
    };
    let mut lines = text.split("\r\n");
    if !lines.next().unwrap_or_default().starts_with("GET ") {
        return refuse("405 Method Not Allowed");
    }
    let (mut key, mut upgrade, mut version_ok) = (None, false, true);
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        let value = value.trim();
        if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(value);
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version_ok = value == "13";
        }
    }
    match key {
        Some(key) if upgrade && version_ok => Upgrade::Accept {
            response: format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key)
            ),
            consumed: head,
        },
        _ if !version_ok => refuse("426 Upgrade Required\r\nSec-WebSocket-Version: 13"),
        _ => refuse("400 Bad Request"),
    }
}

fn refuse(status: &str) -> Upgrade {
    Upgrade::Refuse(format!(
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "GET /any/path?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn accepts_any_path_and_keeps_what_follows() {
        let mut buf = REQ.as_bytes().to_vec();
        buf.extend_from_slice(b"\x81\x80");
        let Upgrade::Accept { response, consumed } = parse(&buf) else {
            panic!("refused")
        };
        assert_eq!(consumed, REQ.len());
        assert!(response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(parse(&buf[..20]), Upgrade::Incomplete);
    }

    #[test]
    fn refuses_what_is_not_an_upgrade() {
        let plain = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        assert!(matches!(parse(plain.as_bytes()), Upgrade::Refuse(r) if r.contains("400")));
        let post = REQ.replace("GET", "POST");
        assert!(matches!(parse(post.as_bytes()), Upgrade::Refuse(r) if r.contains("405")));
        let v8 = REQ.replace("Version: 13", "Version: 8");
        assert!(matches!(parse(v8.as_bytes()), Upgrade::Refuse(r) if r.contains("426")));
        assert!(matches!(parse(&[b'a'; MAX_HEAD + 1]), Upgrade::Refuse(r) if r.contains("431")));
    }
}
