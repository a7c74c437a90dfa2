//! Socket.IO over its WebSocket transport, spoken directly: Engine.IO v4
//! packets (`0` open, `1` close, `2` ping, `3` pong, `4` message) carrying
//! Socket.IO protocol v5 packets (`40` CONNECT, `41` DISCONNECT, `42` EVENT,
//! `43` ACK, `44` CONNECT_ERROR), one Engine.IO packet per text frame.
//!
//! A topic is the namespace `/TOPIC`: a client joins with `40/TOPIC,`, the
//! server answers `40/TOPIC,{"sid":"..."}` (or `44/TOPIC,{"message":"..."}`),
//! and a publish is the event `42/TOPIC,["message","<payload>"]`, which
//! arrives at the others the same way (maybe with a trailing
//! connection-state-recovery offset in the array, ignored here). The server
//! pings (`2`) and the client must answer `3`. Binary events (`45`, `46`)
//! are not used and are classified as [`Packet::Other`].
//!
//! [`parse`] scans the frames the receive path sees most (events whose
//! first argument is a string without escapes) byte by byte and leaves the
//! rest to serde.

use serde::Deserialize;
use std::borrow::Cow;

/// The Engine.IO pong, the answer to the server's ping (`2`).
pub const PONG: &str = "3";
/// The Engine.IO close packet.
pub const CLOSE: &str = "1";
/// The event name every load-test message is emitted and received as.
pub const EVENT: &str = "message";

/// What the server's Engine.IO open packet (`0{...}`) says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    /// The Engine.IO session id.
    pub sid: String,
    /// Transports the session may upgrade to (none on the WebSocket transport).
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// How often the server pings, ms.
    #[serde(default)]
    pub ping_interval: u64,
    /// How long the server waits for a pong after pingInterval, ms.
    #[serde(default)]
    pub ping_timeout: u64,
    /// Largest packet the server accepts, bytes.
    #[serde(default)]
    pub max_payload: u64,
}

/// One classified Engine.IO packet (a Socket.IO one when it is a message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{...}`: the session is open.
    Open(OpenInfo),
    /// `1`: the server closes the session.
    Close,
    /// `2`: the server's heartbeat; answer [`PONG`].
    Ping,
    /// `3`: a pong.
    Pong,
    /// `40/NS,{"sid":...}`: joined namespace `ns` (`/` is the main one).
    Connect {
        /// The namespace, with its leading `/`.
        ns: &'a str,
    },
    /// `41/NS,`: the server left us out of `ns`.
    Disconnect {
        /// The namespace.
        ns: &'a str,
    },
    /// `44/NS,{"message":...}`: joining `ns` was refused.
    ConnectError {
        /// The namespace.
        ns: &'a str,
        /// The server's reason.
        message: String,
    },
    /// `42/NS,[ID]["name",arg,...]`: an event.
    Event {
        /// The namespace.
        ns: &'a str,
        /// The ack id the emitter asked for, if any.
        ack: Option<u64>,
        /// The event name.
        name: Cow<'a, str>,
        /// The first argument: a string's contents (unescaped), or any other
        /// JSON value's text; `None` when the event has no argument.
        arg: Option<Cow<'a, [u8]>>,
    },
    /// `43/NS,ID[...]`: the acknowledgement of our event `id`.
    Ack {
        /// The namespace.
        ns: &'a str,
        /// The ack id.
        id: u64,
    },
    /// Anything else (noop, upgrade probes, binary events, garbage).
    Other,
}

/// The namespace of `topic`: `/TOPIC`, or `/` (the main one) for an empty topic.
pub fn namespace(topic: &str) -> String {
    format!("/{topic}")
}

/// The CONNECT packet that joins `topic`'s namespace (`40/TOPIC,`; `40` for the main one).
pub fn connect(topic: &str) -> String {
    format!("40{}", ns_prefix(topic))
}

/// The DISCONNECT packet that leaves `topic`'s namespace.
pub fn disconnect(topic: &str) -> String {
    format!("41{}", ns_prefix(topic))
}

/// `/TOPIC,`, or nothing for the main namespace.
fn ns_prefix(topic: &str) -> String {
    if topic.is_empty() {
        String::new()
    } else {
        format!("/{topic},")
    }
}

/// Appends the event `42/TOPIC,[ACK]["name","payload"]` to `out`. `payload`
/// goes in a JSON string as it is: it must need no escaping (ours are
/// plain ASCII without quotes or backslashes).
pub fn encode_event(out: &mut Vec<u8>, topic: &str, ack: Option<u64>, name: &str, payload: &str) {
    encode_event_start(out, topic, ack, name);
    out.push(b'"');
    out.extend_from_slice(payload.as_bytes());
    out.extend_from_slice(b"\"]");
}

/// Appends `42/TOPIC,[ACK]["name",` to `out`: an event whose argument (any
/// JSON value) and closing `]` the caller writes.
pub fn encode_event_start(out: &mut Vec<u8>, topic: &str, ack: Option<u64>, name: &str) {
    out.extend_from_slice(b"42");
    if !topic.is_empty() {
        out.push(b'/');
        out.extend_from_slice(topic.as_bytes());
        out.push(b',');
    }
    if let Some(id) = ack {
        out.extend_from_slice(id.to_string().as_bytes());
    }
    out.extend_from_slice(b"[\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\",");
}

/// Classifies one text frame from the server.
pub fn parse(bytes: &[u8]) -> Packet<'_> {
    match bytes.split_first() {
        Some((b'0', rest)) => serde_json::from_slice(rest).map_or(Packet::Other, Packet::Open),
        Some((b'1', _)) => Packet::Close,
        Some((b'2', [])) => Packet::Ping,
        Some((b'3', [])) => Packet::Pong,
        Some((b'4', rest)) => socketio(rest).unwrap_or(Packet::Other),
        _ => Packet::Other,
    }
}

/// A Socket.IO packet: type, namespace, ack id, data.
fn socketio(bytes: &[u8]) -> Option<Packet<'_>> {
    let (&kind, rest) = bytes.split_first()?;
    // `/NS,` (up to the first comma, or the end), else the main namespace.
    let (ns, rest) = if rest.first() == Some(&b'/') {
        match memchr::memchr(b',', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        }
    } else {
        (&b"/"[..], rest)
    };
    let ns = std::str::from_utf8(ns).ok()?;
    let mut pos = 0;
    let id = crate::payload::parse_u64(rest, &mut pos);
    let data = &rest[pos..];
    Some(match kind {
        b'0' => Packet::Connect { ns },
        b'1' => Packet::Disconnect { ns },
        b'2' => event(ns, id, data)?,
        b'3' => Packet::Ack { ns, id: id? },
        b'4' => Packet::ConnectError {
            ns,
            message: connect_error(data),
        },
        _ => Packet::Other,
    })
}

/// `["name",arg,...]`: the fast scan when the name and a string argument
/// need no unescaping, serde otherwise.
fn event<'a>(ns: &'a str, ack: Option<u64>, data: &'a [u8]) -> Option<Packet<'a>> {
    let fast = || {
        let rest = data.strip_prefix(b"[\"")?;
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' || data.last() != Some(&b']') {
            return None;
        }
        let name = std::str::from_utf8(&rest[..end]).ok()?;
        let rest = &rest[end + 1..];
        if rest == b"]" {
            return Some((name, None));
        }
        let rest = rest.strip_prefix(b",\"")?;
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        // After the string: the end of the array, or more elements (ignored).
        if rest[end] != b'"' || !matches!(rest.get(end + 1), Some(b']' | b',')) {
            return None;
        }
        Some((name, Some(&rest[..end])))
    };
    if let Some((name, arg)) = fast() {
        return Some(Packet::Event {
            ns,
            ack,
            name: Cow::Borrowed(name),
            arg: arg.map(Cow::Borrowed),
        });
    }
    // The elements as they are written: an object argument (a shaped
    // payload) keeps its text and field order, and nothing is built for it.
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(data).ok()?;
    let name: Cow<'a, str> = serde_json::from_str(items.first()?.get()).ok()?;
    let arg = match items.get(1).map(|v| v.get()) {
        Some(s) if s.starts_with('"') => Some(Cow::Owned(serde_json::from_str::<String>(s).ok()?.into_bytes())),
        Some(other) => Some(Cow::Borrowed(other.as_bytes())),
        None => None,
    };
    Some(Packet::Event { ns, ack, name, arg })
}

/// A CONNECT_ERROR's reason: `{"message":...}` (v5), a bare JSON string
/// (older servers), or the text as it is.
fn connect_error(data: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Reason {
        message: String,
    }
    if let Ok(r) = serde_json::from_slice::<Reason>(data) {
        return r.message;
    }
    if let Ok(s) = serde_json::from_slice::<String>(data) {
        return s;
    }
    String::from_utf8_lossy(data).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_of(s: &str) -> (String, Option<u64>, String, Option<Vec<u8>>) {
        match parse(s.as_bytes()) {
            Packet::Event { ns, ack, name, arg } => (ns.into(), ack, name.into_owned(), arg.map(Cow::into_owned)),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn open_packet() {
        let open = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(
            parse(open.as_bytes()),
            Packet::Open(OpenInfo {
                sid: "lv_VI97HAXpY6yYWAAAC".into(),
                upgrades: vec![],
                ping_interval: 25000,
                ping_timeout: 20000,
                max_payload: 1_000_000,
            })
        );
        assert_eq!(parse(b"0{not json"), Packet::Other);
    }

    #[test]
    fn connect_and_its_answers() {
        assert_eq!(connect("lt.fanout"), "40/lt.fanout,");
        assert_eq!(connect(""), "40");
        assert_eq!(disconnect("lt.fanout"), "41/lt.fanout,");
        assert_eq!(disconnect(""), "41");
        assert_eq!(
            (namespace("lt.fanout"), namespace("")),
            ("/lt.fanout".into(), "/".into())
        );
        assert_eq!(
            parse(br#"40/lt.fanout,{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
            Packet::Connect { ns: "/lt.fanout" }
        );
        assert_eq!(
            parse(br#"40/lt.fanout,{"sid":"a","pid":"b"}"#),
            Packet::Connect { ns: "/lt.fanout" }
        );
        assert_eq!(parse(br#"40{"sid":"a"}"#), Packet::Connect { ns: "/" });
        assert_eq!(
            parse(br#"44/lt.fanout,{"message":"Not authorized"}"#),
            Packet::ConnectError {
                ns: "/lt.fanout",
                message: "Not authorized".into()
            }
        );
        assert_eq!(
            parse(br#"44/x,"Invalid namespace""#),
            Packet::ConnectError {
                ns: "/x",
                message: "Invalid namespace".into()
            }
        );
        assert_eq!(parse(b"41/lt.fanout,"), Packet::Disconnect { ns: "/lt.fanout" });
        assert_eq!(parse(b"41"), Packet::Disconnect { ns: "/" });
    }

    #[test]
    fn events_with_and_without_a_recovery_offset() {
        let want = |ns: &str, arg: &str| (ns.to_string(), None, EVENT.to_string(), Some(arg.as_bytes().to_vec()));
        assert_eq!(
            event_of(r#"42/lt.fanout,["message","p0:1:2:123:xxxx"]"#),
            want("/lt.fanout", "p0:1:2:123:xxxx")
        );
        assert_eq!(
            event_of(r#"42/lt.fanout,["message","p0:1:2:123:xxxx","MzUPkW0"]"#),
            want("/lt.fanout", "p0:1:2:123:xxxx")
        );
        assert_eq!(event_of(r#"42["message","p0:1:2:3:"]"#), want("/", "p0:1:2:3:"));
        // Escapes and non-string arguments go through serde.
        assert_eq!(event_of(r#"42/t,["message","a\"b"]"#), want("/t", "a\"b"));
        assert_eq!(event_of(r#"42/t,["message",{"n":1},"off"]"#), want("/t", r#"{"n":1}"#));
        assert_eq!(event_of(r#"42/t,["ping"]"#), ("/t".into(), None, "ping".into(), None));
        // The server may ask for an ack of its own event.
        assert_eq!(event_of(r#"42/t,9["message","x"]"#).1, Some(9));
        for bad in [
            r#"42/t,["message","x""#,
            r#"42/t,[]"#,
            r#"42/t,[1,"x"]"#,
            "42/t,",
            "4",
            "9",
            "",
        ] {
            assert_eq!(parse(bad.as_bytes()), Packet::Other, "{bad}");
        }
        // Binary events (attachments) are not used.
        assert_eq!(
            parse(br#"451-/t,["message",{"_placeholder":true,"num":0}]"#),
            Packet::Other
        );
    }

    #[test]
    fn heartbeat_and_close() {
        assert_eq!(parse(b"2"), Packet::Ping);
        assert_eq!(parse(b"3"), Packet::Pong);
        assert_eq!(parse(PONG.as_bytes()), Packet::Pong);
        assert_eq!(parse(CLOSE.as_bytes()), Packet::Close);
        assert_eq!(parse(b"2probe"), Packet::Other);
        assert_eq!(parse(b"6"), Packet::Other);
    }

    #[test]
    fn publishes_and_acks() {
        let mut out = Vec::new();
        encode_event(&mut out, "lt.fanout", None, EVENT, "p0:1:2:3:xx");
        assert_eq!(out, br#"42/lt.fanout,["message","p0:1:2:3:xx"]"#);
        out.clear();
        encode_event(&mut out, "lt.fanout", Some(17), EVENT, "p0:1:2:3:xx");
        assert_eq!(out, br#"42/lt.fanout,17["message","p0:1:2:3:xx"]"#);
        assert_eq!(event_of(std::str::from_utf8(&out).unwrap()).1, Some(17));
        out.clear();
        encode_event(&mut out, "", None, EVENT, "x");
        assert_eq!(out, br#"42["message","x"]"#);
        assert_eq!(
            parse(b"43/lt.fanout,17[]"),
            Packet::Ack {
                ns: "/lt.fanout",
                id: 17
            }
        );
        assert_eq!(parse(br#"4317["ok"]"#), Packet::Ack { ns: "/", id: 17 });
        assert_eq!(parse(b"43/lt.fanout,[]"), Packet::Other);
    }
}
