//! Server-Sent Events: how messages and notices are rendered as SSE
//! blocks, and the event-id scheme a client echoes in `Last-Event-ID`.
//!
//! A message is `event: message` with `data:` holding the same JSON object a
//! WebSocket client gets; it is encoded once per message and shared by every
//! SSE connection. The `id:` line is the connection's own: it carries the
//! position of *every* exact topic the stream follows, so a reconnecting
//! client resumes all of them from the one id it echoes:
//!
//! - one exact topic: `id: 42` (the seq);
//! - several: `id: chat.a:42,chat.b:7` (`topic:seq` pairs, `,`-separated;
//!   a topic may hold `:`, so each pair splits at its last `:`).
//!
//! A payload-only stream (`/sse/t/{topic}`, [`payload_event`]) carries the
//! payload itself as `data:`, in the default event (no `event:` line), so a
//! page's `EventSource.onmessage` reads the value as it was published;
//! binary payloads are base64 in an `event: binary` block. Its notices are
//! the same named events as above.

use base64::Engine;
use bytes::Bytes;

use super::{json, transcode, Message, Payload, Reply};
use crate::error::RequestError;
use crate::topic::TopicName;

/// The `event: message` block for `msg`.
pub fn message_event(msg: &Message) -> Bytes {
    let mut body = Vec::with_capacity(64 + msg.topic.as_str().len() + msg.payload.len() * 4 / 3);
    json::write_message(&mut body, msg);
    event(Some("message"), &body)
}

/// The payload-only block for `payload` (`/sse/t/{topic}`): text as sent and JSON as
/// written, MessagePack transcoded to JSON, each in the default event; binary as
/// base64 in an `event: binary` block.
pub fn payload_event(payload: &Payload) -> Bytes {
    match payload {
        Payload::Text(b) | Payload::Json(b) | Payload::Event(b) => event(None, b),
        Payload::Msgpack(b) => {
            let mut body = Vec::with_capacity(b.len() * 2);
            transcode::msgpack_to_json(b, &mut body);
            event(None, &body)
        }
        Payload::Binary(b) => event(
            Some("binary"),
            base64::engine::general_purpose::STANDARD.encode(b).as_bytes(),
        ),
    }
}

/// The block for a notice (`gap`, `join`, `leave`, `presence`); requests are not
/// answered on SSE, so acks, errors and pongs render as nothing.
pub fn reply_event(reply: &Reply<'_>) -> Bytes {
    let kind = match reply {
        Reply::Gap { .. } => "gap",
        Reply::Join { .. } => "join",
        Reply::Leave { .. } => "leave",
        Reply::Presence { .. } => "presence",
        Reply::Ack { .. } | Reply::Error { .. } | Reply::Pong { .. } => return Bytes::new(),
    };
    let mut body = Vec::with_capacity(96);
    json::write_reply(&mut body, reply);
    event(Some(kind), &body)
}

/// The heartbeat comment that keeps proxies from closing a quiet stream.
pub const HEARTBEAT: &[u8] = b": ping\n\n";

/// `event: {kind}` (none: the default event, `message`) then one `data:` line per line
/// of `body`: JSON from a publisher may hold line breaks between tokens and text holds
/// them anywhere, and each must start a new `data:` line (EventSource joins them with
/// `\n`). `\r\n`, `\r` and `\n` each end a line, as they do for EventSource.
fn event(kind: Option<&str>, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 32);
    if let Some(kind) = kind {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.push(b'\n');
    }
    let mut rest = body;
    loop {
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..end.unwrap_or(rest.len())]);
        out.push(b'\n');
        match end {
            None => break,
            Some(at) => {
                let crlf = rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n');
                rest = &rest[at + if crlf { 2 } else { 1 }..];
            }
        }
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// Where a stream resumes from, as a client gave it (`Last-Event-ID` or `?since=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// One seq for every topic (`42`).
    All(u64),
    /// A seq per topic (`a:42,b:7`).
    PerTopic(Vec<(TopicName, u64)>),
}

/// Parses an event id or `since` value; the error says what form is expected.
pub fn parse_resume(text: &str) -> Result<Resume, RequestError> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Ok(Resume::All(n));
    }
    let bad = || {
        RequestError::bad_request(format!(
            "`{text}` is not an event id; expected a seq such as `42` or topic:seq pairs such as `chat.a:42,chat.b:7`"
        ))
    };
    let mut pairs = Vec::new();
    for pair in text.split(',') {
        let (topic, seq) = pair.trim().rsplit_once(':').ok_or_else(bad)?;
        let seq = seq.parse::<u64>().map_err(|_| bad())?;
        pairs.push((TopicName::parse(topic).map_err(|_| bad())?, seq));
    }
    Ok(Resume::PerTopic(pairs))
}

/// Renders the `id:` line for a stream's positions; empty when there are none.
/// `single` says the stream follows exactly one topic, so the id is the bare seq.
pub fn id_line(positions: &[(TopicName, u64)], single: bool, out: &mut Vec<u8>) {
    use std::io::Write;
    match positions {
        [] => {}
        [(_, seq)] if single => {
            let _ = writeln!(out, "id: {seq}");
        }
        _ => {
            out.extend_from_slice(b"id: ");
            for (i, (topic, seq)) in positions.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = write!(out, "{topic}:{seq}");
            }
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{GapReason, Payload};

    fn topic(s: &str) -> TopicName {
        TopicName::parse(s).unwrap()
    }

    #[test]
    fn a_message_is_one_event_with_the_websocket_json_as_data() {
        let m = Message::new(
            topic("t"),
            3,
            9,
            Payload::Json(Bytes::from_static(b"{\n\"a\":1}")),
            None,
        );
        assert_eq!(
            &message_event(&m)[..],
            b"event: message\ndata: {\"type\":\"message\",\"topic\":\"t\",\"seq\":3,\"ts\":9,\"data\":{\ndata: \"a\":1}}\n\n"
        );
    }

    #[test]
    fn a_payload_event_is_the_payload_alone_in_the_default_event() {
        let text = payload_event(&Payload::text("one\r\ntwo\rthree\n\nfive"));
        assert_eq!(&text[..], b"data: one\ndata: two\ndata: three\ndata: \ndata: five\n\n");
        assert_eq!(&payload_event(&Payload::text(""))[..], b"data: \n\n");
        let json = payload_event(&Payload::Json(Bytes::from_static(b"{\n  \"a\": 1\n}")));
        assert_eq!(&json[..], b"data: {\ndata:   \"a\": 1\ndata: }\n\n");
        let binary = payload_event(&Payload::Binary(Bytes::from_static(&[0, 1, 254, 255])));
        assert_eq!(&binary[..], b"event: binary\ndata: AAH+/w==\n\n");
        let mp = rmp_serde::to_vec_named(&serde_json::json!({"a": [1, "x"]})).unwrap();
        let mp = payload_event(&Payload::Msgpack(Bytes::from(mp)));
        assert_eq!(&mp[..], b"data: {\"a\":[1,\"x\"]}\n\n");
    }

    #[test]
    fn gaps_are_gap_events_and_acks_are_not_sent() {
        let g = reply_event(&Reply::Gap {
            topic: "t",
            from: 1,
            to: 2,
            reason: GapReason::History,
        });
        assert!(g.starts_with(b"event: gap\ndata: {\"type\":\"gap\""));
        assert!(reply_event(&Reply::Pong { id: None }).is_empty());
    }

    #[test]
    fn ids_round_trip_for_one_and_many_topics() {
        let mut out = Vec::new();
        id_line(&[(topic("a"), 5)], true, &mut out);
        assert_eq!(out, b"id: 5\n");
        out.clear();
        id_line(&[(topic("a.b"), 5), (topic("c:d"), 7)], false, &mut out);
        assert_eq!(out, b"id: a.b:5,c:d:7\n");
        assert_eq!(parse_resume("5").unwrap(), Resume::All(5));
        assert_eq!(
            parse_resume("a.b:5,c:d:7").unwrap(),
            Resume::PerTopic(vec![(topic("a.b"), 5), (topic("c:d"), 7)])
        );
        for bad in ["", "x", "a:", "a:-1", "a b:1", "a:1,,b:2"] {
            assert!(parse_resume(bad).is_err(), "{bad}");
        }
    }
}
