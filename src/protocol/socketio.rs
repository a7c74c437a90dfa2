//! Socket.IO (protocol v5) over Engine.IO (protocol v4): the packets the
//! server sends, rendered once per message and shared like every other wire,
//! and the packets a client sends, parsed.
//!
//! Every server packet is a complete WebSocket frame: a text frame holding the
//! Engine.IO packet (`4` = message, then the Socket.IO packet), followed, for
//! a message with a binary attachment, by a binary frame holding exactly the
//! attachment. Long-polling takes the same packets out of those frames
//! ([`polling_packets`]), so one encoding serves both transports.
//!
//! Two shapes of message exist, one per [`Wire`](super::Wire):
//! - a topic namespace (`io("/chat.room1")`, [`Wire::SioTopic`](super::Wire::SioTopic)):
//!   `42/chat.room1,["message",DATA,"SEQ"]` — the payload itself, then the
//!   connection-state-recovery offset (the seq, as a string: the client keeps
//!   the last string argument of each event as its offset);
//! - the main namespace (`io("/")`, [`Wire::SioMain`](super::Wire::SioMain)):
//!   `42["message",{"type":"message","topic":..,"seq":..,"ts":..,"data":..}]`,
//!   the `/ws` message object.

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::frame::{self, FrameBuilder, OpCode};
use super::{json, Message, Payload, Reply};

/// The Engine.IO packet types (protocol v4).
pub mod engine {
    /// Opens a session (server → client, with the handshake data).
    pub const OPEN: u8 = b'0';
    /// Closes the session.
    pub const CLOSE: u8 = b'1';
    /// Heartbeat (server → client; `2probe` from the client during an upgrade).
    pub const PING: u8 = b'2';
    /// Heartbeat answer (client → server; `3probe` from the server).
    pub const PONG: u8 = b'3';
    /// Carries a Socket.IO packet.
    pub const MESSAGE: u8 = b'4';
    /// Completes the upgrade to WebSocket (client → server).
    pub const UPGRADE: u8 = b'5';
    /// Does nothing; ends a pending poll during an upgrade.
    pub const NOOP: u8 = b'6';
    /// The separator of packets in a long-polling body.
    pub const SEPARATOR: u8 = 0x1e;
}

/// The Socket.IO packet types (protocol v5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Joins a namespace (client: with its auth payload; server: with the socket id).
    Connect = 0,
    /// Leaves a namespace.
    Disconnect = 1,
    /// An event: `[name, ...args]`.
    Event = 2,
    /// The answer to an event that asked for one.
    Ack = 3,
    /// The namespace refused the connection.
    ConnectError = 4,
    /// An event with binary attachments.
    BinaryEvent = 5,
    /// An ack with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    fn from_digit(d: u8) -> Option<Self> {
        Some(match d {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }
}

/// One Socket.IO packet from a client, its attachments not yet joined.
#[derive(Debug, Clone)]
pub struct Packet {
    /// The type.
    pub kind: PacketType,
    /// The namespace without its leading `/` (`""`: the main namespace).
    pub namespace: String,
    /// The ack id the client waits on, if it asked for an ack.
    pub ack: Option<u64>,
    /// How many binary attachments follow (binary events and acks).
    pub attachments: usize,
    /// The JSON data after the header, if any.
    pub data: Option<Box<RawValue>>,
}

/// Why a client's packet cannot be read; the text says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PacketError(pub String);

/// Most binary attachments one packet may announce.
pub const MAX_ATTACHMENTS: usize = 16;

/// Parses a Socket.IO packet: `TYPE[ATTACHMENTS-][/NAMESPACE,][ACKID][JSON]`.
pub fn parse_packet(text: &str) -> Result<Packet, PacketError> {
    let bytes = text.as_bytes();
    let kind = bytes
        .first()
        .and_then(|d| PacketType::from_digit(*d))
        .ok_or_else(|| PacketError(format!("`{}` is not a Socket.IO packet type (0-6)", preview(text))))?;
    let mut rest = &text[1..];
    let mut attachments = 0;
    if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
        let (count, after) = rest
            .split_once('-')
            .ok_or_else(|| PacketError("a binary packet must give its attachment count, as in `451-`".into()))?;
        attachments = count
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_ATTACHMENTS).contains(n))
            .ok_or_else(|| {
                PacketError(format!(
                    "the attachment count must be 1 to {MAX_ATTACHMENTS}, not `{}`",
                    preview(count)
                ))
            })?;
        rest = after;
    }
    let mut namespace = String::new();
    if let Some(after_slash) = rest.strip_prefix('/') {
        let (ns, after) = match after_slash.find(',') {
            Some(i) => (&after_slash[..i], &after_slash[i + 1..]),
            // `41/chat` may end without the comma.
            None => (after_slash, ""),
        };
        namespace = ns.to_owned();
        rest = after;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = match digits {
        0 => None,
        _ => Some(
            rest[..digits]
                .parse::<u64>()
                .map_err(|_| PacketError("the ack id is too large".into()))?,
        ),
    };
    rest = &rest[digits..];
    let data = match rest.trim() {
        "" => None,
        json => Some(
            serde_json::from_str::<Box<RawValue>>(json)
                .map_err(|e| PacketError(format!("the packet's data is not JSON: {e}")))?,
        ),
    };
    Ok(Packet {
        kind,
        namespace,
        ack,
        attachments,
        data,
    })
}

/// The first characters of `text`, for an error message.
fn preview(text: &str) -> String {
    text.chars().take(24).collect()
}

/// Starts a text frame holding an Engine.IO message with a Socket.IO packet of `kind`
/// in `namespace` (`""`: the main namespace).
fn packet_builder(kind: u8, attachments: usize, namespace: &str, capacity: usize) -> FrameBuilder {
    let mut f = FrameBuilder::with_capacity(capacity + namespace.len() + 8);
    let b = f.body();
    b.push(engine::MESSAGE);
    b.push(kind);
    if attachments > 0 {
        let _ = write!(Text(b), "{attachments}-");
    }
    if !namespace.is_empty() {
        b.push(b'/');
        b.extend_from_slice(namespace.as_bytes());
        b.push(b',');
    }
    f
}

/// `write!` into a `Vec<u8>`.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The placeholder of the first binary attachment.
const PLACEHOLDER: &[u8] = br#"{"_placeholder":true,"num":0}"#;

/// The frames of `msg` for the subscribers of its topic's namespace.
pub fn topic_message_frame(msg: &Message) -> Bytes {
    let ns = msg.topic.as_str();
    let offset = |b: &mut Vec<u8>| {
        let _ = write!(Text(b), ",\"{}\"]", msg.seq);
    };
    match &msg.payload {
        Payload::Binary(data) => {
            let mut f = packet_builder(b'5', 1, ns, 48);
            f.body().extend_from_slice(b"[\"message\",");
            f.body().extend_from_slice(PLACEHOLDER);
            offset(f.body());
            let head = f.finish(OpCode::Text);
            let attachment = frame::encode(OpCode::Binary, data);
            let mut both = Vec::with_capacity(head.len() + attachment.len());
            both.extend_from_slice(&head);
            both.extend_from_slice(&attachment);
            Bytes::from(both)
        }
        Payload::Event(event) => {
            let mut f = packet_builder(b'2', 0, ns, event.len() + 16);
            f.body().push(b'[');
            write_event_args(f.body(), event);
            offset(f.body());
            f.finish(OpCode::Text)
        }
        payload => {
            let mut f = packet_builder(b'2', 0, ns, payload.len() * 4 / 3 + 24);
            f.body().extend_from_slice(b"[\"message\",");
            json::write_data(f.body(), payload);
            offset(f.body());
            f.finish(OpCode::Text)
        }
    }
}

/// The frame of `msg` for a main-namespace subscriber: event `message` with the `/ws` object.
pub fn main_message_frame(msg: &Message) -> Bytes {
    let mut f = packet_builder(b'2', 0, "", 64 + msg.topic.as_str().len() + msg.payload.len() * 4 / 3);
    f.body().extend_from_slice(b"[\"message\",");
    json::write_message(f.body(), msg);
    f.body().push(b']');
    f.finish(OpCode::Text)
}

/// An event payload as it was emitted: the name, then the arguments.
#[derive(serde::Deserialize)]
struct EventPayload<'a> {
    #[serde(borrow)]
    event: &'a RawValue,
    #[serde(borrow, default)]
    args: Vec<&'a RawValue>,
}

/// Writes `NAME,ARG,ARG` of an [`Payload::Event`] (checked when it was built).
fn write_event_args(out: &mut Vec<u8>, event: &[u8]) {
    match serde_json::from_slice::<EventPayload<'_>>(event) {
        Ok(e) => {
            out.extend_from_slice(e.event.get().as_bytes());
            for a in e.args {
                out.push(b',');
                out.extend_from_slice(a.get().as_bytes());
            }
        }
        // Built by `event_payload`, so never malformed; say what happened rather than panic.
        Err(_) => out.extend_from_slice(b"\"message\",null"),
    }
}

/// The [`Payload::Event`] for an event `name` emitted with `args` (each a JSON value).
pub fn event_payload(name: &str, args: &[&RawValue]) -> Payload {
    let mut out = Vec::with_capacity(32 + args.iter().map(|a| a.get().len() + 1).sum::<usize>());
    out.extend_from_slice(b"{\"event\":");
    json::write_str(&mut out, name);
    out.extend_from_slice(b",\"args\":[");
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(a.get().as_bytes());
    }
    out.extend_from_slice(b"]}");
    Payload::Event(Bytes::from(out))
}

/// A reply or notice for a main-namespace socket: acks answer the event's ack id with the
/// `/ws` reply object; a notice, or an error with no ack to answer, is an event of its type.
pub fn main_reply_frame(reply: &Reply<'_>) -> Bytes {
    let ack = match reply {
        Reply::Ack { id, .. } => Some(*id),
        Reply::Error { id, .. } | Reply::Pong { id } | Reply::Presence { id, .. } => *id,
        _ => None,
    };
    match ack {
        Some(id) => {
            let mut f = packet_builder(b'3', 0, "", 96);
            let _ = write!(Text(f.body()), "{id}[");
            write_reply_value(f.body(), reply);
            f.body().push(b']');
            f.finish(OpCode::Text)
        }
        None => notice_frame("", reply),
    }
}

/// The ack value of a reply: the `/ws` object, or `{"error":{"code","message"}}`.
fn write_reply_value(out: &mut Vec<u8>, reply: &Reply<'_>) {
    match reply {
        Reply::Error { code, message, .. } => {
            let _ = write!(Text(out), "{{\"error\":{{\"code\":\"{code}\",\"message\":");
            json::write_str(out, message);
            out.extend_from_slice(b"}}");
        }
        other => json::write_reply(out, other),
    }
}

/// A notice (`gap`, `join`, `leave`; `error` and `pong` without an ack) as an event named
/// after its type in `namespace`; an ack without an id is nothing.
pub fn notice_frame(namespace: &str, reply: &Reply<'_>) -> Bytes {
    let name = match reply {
        Reply::Gap { .. } => "gap",
        Reply::Join { .. } => "join",
        Reply::Leave { .. } => "leave",
        Reply::Error { .. } => "error",
        Reply::Presence { .. } => "presence",
        Reply::Pong { .. } => "pong",
        Reply::Ack { .. } => return Bytes::new(),
    };
    let mut f = packet_builder(b'2', 0, namespace, 96);
    let _ = write!(Text(f.body()), "[\"{name}\",");
    json::write_reply(f.body(), reply);
    f.body().push(b']');
    f.finish(OpCode::Text)
}

/// A notice for a topic-namespace socket: in the namespace of the topic it is about.
pub fn topic_reply_frame(reply: &Reply<'_>) -> Bytes {
    match reply {
        Reply::Gap { topic, .. } | Reply::Join { topic, .. } | Reply::Leave { topic, .. } => notice_frame(topic, reply),
        // Acks and errors of a topic namespace name it themselves (`ack_frame`, `error_event`).
        _ => Bytes::new(),
    }
}

/// The ack `id` in `namespace` carrying `reply` (an ack object or an error).
pub fn ack_frame(namespace: &str, id: u64, reply: &Reply<'_>) -> Bytes {
    let mut f = packet_builder(b'3', 0, namespace, 96);
    let _ = write!(Text(f.body()), "{id}[");
    write_reply_value(f.body(), reply);
    f.body().push(b']');
    f.finish(OpCode::Text)
}

/// The CONNECT answer: the socket id, and the recovery id when the namespace is a topic.
pub fn connect_frame(namespace: &str, sid: &str, pid: Option<&str>) -> Bytes {
    let mut f = packet_builder(b'0', 0, namespace, 64);
    f.body().extend_from_slice(b"{\"sid\":");
    json::write_str(f.body(), sid);
    if let Some(pid) = pid {
        f.body().extend_from_slice(b",\"pid\":");
        json::write_str(f.body(), pid);
    }
    f.body().push(b'}');
    f.finish(OpCode::Text)
}

/// CONNECT_ERROR: why `namespace` refused the client, with the error code in `data`.
pub fn connect_error_frame(namespace: &str, code: &str, message: &str) -> Bytes {
    let mut f = packet_builder(b'4', 0, namespace, 64 + message.len());
    f.body().extend_from_slice(b"{\"message\":");
    json::write_str(f.body(), message);
    let _ = write!(Text(f.body()), ",\"data\":{{\"code\":\"{code}\"}}}}");
    f.finish(OpCode::Text)
}

/// DISCONNECT from `namespace`: the server ends that socket (the client does not reconnect it).
pub fn disconnect_frame(namespace: &str) -> Bytes {
    packet_builder(b'1', 0, namespace, 0).finish(OpCode::Text)
}

/// An Engine.IO packet that is not a message (`open`, `ping`, `noop`, `close`, `3probe`).
pub fn engine_frame(kind: u8, data: &[u8]) -> Bytes {
    let mut f = FrameBuilder::with_capacity(1 + data.len());
    f.body().push(kind);
    f.body().extend_from_slice(data);
    f.finish(OpCode::Text)
}

/// Appends the packets held in `frames` (complete server frames, as built here) to a
/// long-polling body: text packets as they are, binary ones as `b` + base64, each
/// separated from the one before by the record separator.
pub fn polling_packets(frames: &[u8], out: &mut Vec<u8>) {
    let mut rest = frames;
    while let Some((opcode, payload, after)) = split_frame(rest) {
        if !out.is_empty() {
            out.push(engine::SEPARATOR);
        }
        if opcode == OpCode::Binary as u8 {
            out.push(b'b');
            use base64::Engine as _;
            let start = out.len();
            out.resize(start + base64::encoded_len(payload.len(), true).unwrap_or(0), 0);
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(payload, &mut out[start..])
                .unwrap_or(0);
            out.truncate(start + n);
        } else {
            out.extend_from_slice(payload);
        }
        rest = after;
    }
}

/// The first frame of `bytes`: its opcode, its payload, and what follows it.
fn split_frame(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let opcode = bytes.first()? & 0x0f;
    let (start, len): (usize, usize) = match bytes.get(1)? & 0x7f {
        126 => (4, u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize),
        127 => (10, u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize),
        n => (2, n as usize),
    };
    let end = start.checked_add(len)?;
    Some((opcode, bytes.get(start..end)?, &bytes[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::topic::TopicName;

    fn text(frames: &Bytes) -> String {
        let mut out = Vec::new();
        polling_packets(frames, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn message(payload: Payload) -> Message {
        Message::new(TopicName::parse("chat.room1").unwrap(), 7, 99, payload, None)
    }

    #[test]
    fn topic_messages_carry_the_payload_and_the_offset() {
        let m = message(Payload::text("hi"));
        assert_eq!(text(&topic_message_frame(&m)), r#"42/chat.room1,["message","hi","7"]"#);
        let m = message(Payload::Json(Bytes::from_static(br#"{"a":1}"#)));
        assert_eq!(
            text(&topic_message_frame(&m)),
            r#"42/chat.room1,["message",{"a":1},"7"]"#
        );
    }

    #[test]
    fn binary_payloads_are_an_attachment_after_a_placeholder() {
        let m = message(Payload::Binary(Bytes::from_static(&[0, 1, 2])));
        let frames = topic_message_frame(&m);
        assert_eq!(
            text(&frames),
            "451-/chat.room1,[\"message\",{\"_placeholder\":true,\"num\":0},\"7\"]\x1ebAAEC"
        );
        let (op, _, rest) = split_frame(&frames).unwrap();
        assert_eq!(op, 1);
        assert_eq!(rest, &[0x82, 3, 0, 1, 2]);
    }

    #[test]
    fn events_keep_their_name_and_arguments() {
        let a: Box<RawValue> = serde_json::from_str("\"bob\"").unwrap();
        let b: Box<RawValue> = serde_json::from_str("[1,2]").unwrap();
        let p = event_payload("typing", &[&a, &b]);
        assert_eq!(p.bytes().as_ref(), br#"{"event":"typing","args":["bob",[1,2]]}"#);
        assert_eq!(
            text(&topic_message_frame(&message(p))),
            r#"42/chat.room1,["typing","bob",[1,2],"7"]"#
        );
    }

    #[test]
    fn main_namespace_messages_are_the_ws_object() {
        let m = message(Payload::text("hi"));
        assert_eq!(
            text(&main_message_frame(&m)),
            r#"42["message",{"type":"message","topic":"chat.room1","seq":7,"ts":99,"data":"hi"}]"#
        );
    }

    #[test]
    fn replies_answer_acks_or_become_events() {
        let ack = Reply::Ack {
            id: 3,
            topic: Some("q"),
            seq: Some(5),
            epoch: None,
            recovered: None,
            duplicate: false,
        };
        assert_eq!(
            text(&main_reply_frame(&ack)),
            r#"433[{"type":"ack","id":3,"topic":"q","seq":5}]"#
        );
        let err = Reply::Error {
            id: Some(4),
            code: ErrorCode::Forbidden,
            message: "no",
        };
        assert_eq!(
            text(&main_reply_frame(&err)),
            r#"434[{"error":{"code":"forbidden","message":"no"}}]"#
        );
        let err = Reply::Error {
            id: None,
            code: ErrorCode::BadRequest,
            message: "x",
        };
        assert_eq!(
            text(&main_reply_frame(&err)),
            r#"42["error",{"type":"error","code":"bad_request","message":"x"}]"#
        );
        let gap = Reply::Gap {
            topic: "chat.room1",
            from: 1,
            to: 2,
            reason: crate::protocol::GapReason::History,
        };
        assert_eq!(
            text(&topic_reply_frame(&gap)),
            r#"42/chat.room1,["gap",{"type":"gap","topic":"chat.room1","from":1,"to":2,"reason":"history"}]"#
        );
        assert_eq!(
            text(&ack_frame("chat", 9, &ack)),
            r#"43/chat,9[{"type":"ack","id":3,"topic":"q","seq":5}]"#
        );
    }

    #[test]
    fn connect_answers_and_refusals() {
        assert_eq!(text(&connect_frame("", "s1", None)), r#"40{"sid":"s1"}"#);
        assert_eq!(
            text(&connect_frame("chat", "s1", Some("00ff"))),
            r#"40/chat,{"sid":"s1","pid":"00ff"}"#
        );
        assert_eq!(
            text(&connect_error_frame("chat", "forbidden", "not allowed")),
            r#"44/chat,{"message":"not allowed","data":{"code":"forbidden"}}"#
        );
        assert_eq!(text(&disconnect_frame("chat")), "41/chat,");
        let two = [engine_frame(engine::PING, b""), engine_frame(engine::NOOP, b"")].concat();
        assert_eq!(text(&Bytes::from(two)), "2\x1e6");
    }

    #[test]
    fn parses_client_packets() {
        let p = parse_packet(r#"2/chat.room1,17["message",{"a":1}]"#).unwrap();
        assert_eq!(p.kind, PacketType::Event);
        assert_eq!(p.namespace, "chat.room1");
        assert_eq!(p.ack, Some(17));
        assert_eq!(p.data.unwrap().get(), r#"["message",{"a":1}]"#);
        let p = parse_packet("0").unwrap();
        assert_eq!(
            (p.kind, p.namespace.as_str(), p.data.is_none()),
            (PacketType::Connect, "", true)
        );
        let p = parse_packet(r#"0/chat,{"token":"t"}"#).unwrap();
        assert_eq!(p.data.unwrap().get(), r#"{"token":"t"}"#);
        let p = parse_packet(r#"51-/c,["message",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!((p.kind, p.attachments), (PacketType::BinaryEvent, 1));
        let p = parse_packet("1/chat,").unwrap();
        assert_eq!((p.kind, p.namespace.as_str()), (PacketType::Disconnect, "chat"));
        let p = parse_packet("1/chat").unwrap();
        assert_eq!(p.namespace, "chat");
    }

    #[test]
    fn bad_packets_say_what_is_wrong() {
        assert!(parse_packet("9").unwrap_err().0.contains("packet type"));
        assert!(parse_packet("5[]").unwrap_err().0.contains("attachment count"));
        assert!(parse_packet("599-[]").unwrap_err().0.contains("attachment count"));
        assert!(parse_packet("2[1,").unwrap_err().0.contains("not JSON"));
        assert!(parse_packet("").unwrap_err().0.contains("packet type"));
    }
}
