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

use bytes::Bytes;

use super::{json, Message, Reply};
use crate::error::RequestError;
use crate::topic::TopicName;

/// The `event: message` block for `msg`.
pub fn message_event(msg: &Message) -> Bytes {
    let mut body = Vec::with_capacity(64 + msg.topic.as_str().len() + msg.payload.len() * 4 / 3);
    json::write_message(&mut body, msg);
    event("message", &body)
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
    event(kind, &body)
}

/// The heartbeat comment that keeps proxies from closing a quiet stream.
pub const HEARTBEAT: &[u8] = b": ping\n\n";

/// `event: {kind}` then `data:` lines; JSON from a publisher may hold line breaks
/// between tokens, and each must start a new `data:` line (EventSource joins them with `\n`).
fn event(kind: &str, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + kind.len() + 20);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
    for line in body.split(|&b| b == b'\n' || b == b'\r') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
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
