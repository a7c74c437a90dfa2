//! How a message travels over NATS: the payload as the body, and the topic seq,
//! publish time, payload kind and publishing connection as headers, so every
//! node rebuilds exactly the [`Message`] the publishing node would have.

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::protocol::{Message, Payload, SessionId};
use crate::topic::TopicName;

/// The topic seq the cluster assigned.
pub const SEQ: &str = "Fanout-Seq";
/// Publish time, Unix milliseconds.
pub const TS: &str = "Fanout-Ts";
/// The payload's kind: `text`, `binary`, `json` or `msgpack`.
pub const KIND: &str = "Fanout-Kind";
/// `<node>:<session>` of the publishing connection, so raw sockets skip their own echo.
pub const ORIGIN: &str = "Fanout-Origin";

/// A NATS message that is not a fanout message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A header is missing or malformed.
    #[error("NATS message on `{subject}` lacks a valid `{header}` header; only fanout nodes may publish under the subject prefix")]
    Header {
        /// The NATS subject.
        subject: String,
        /// The header.
        header: &'static str,
    },
    /// The subject does not name a topic.
    #[error(
        "NATS subject `{0}` is not `<subject_prefix>.<topic>`; only fanout nodes may publish under the subject prefix"
    )]
    Subject(String),
}

/// The headers of a message with topic `seq`.
pub fn headers(seq: u64, ts: u64, payload: &Payload, origin: Option<(u64, SessionId)>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(SEQ, seq.to_string().as_str());
    h.insert(TS, ts.to_string().as_str());
    h.insert(KIND, kind(payload));
    if let Some((node, session)) = origin {
        h.insert(ORIGIN, format!("{node}:{session}").as_str());
    }
    h
}

fn kind(payload: &Payload) -> &'static str {
    match payload {
        Payload::Text(_) => "text",
        Payload::Binary(_) => "binary",
        Payload::Json(_) => "json",
        Payload::Msgpack(_) => "msgpack",
    }
}

/// The topic seq in `headers`, if there is a valid one.
pub fn seq(headers: Option<&HeaderMap>) -> Option<u64> {
    number(headers, SEQ)
}

fn number(headers: Option<&HeaderMap>, name: &str) -> Option<u64> {
    headers?.get(name)?.as_str().parse().ok()
}

/// Rebuilds the message received on `subject` (`<prefix>.<topic>`); `node` is this node's id.
pub fn decode(
    prefix: &str,
    subject: &str,
    headers: Option<&HeaderMap>,
    body: Bytes,
    node: u64,
) -> Result<Message, WireError> {
    let bad = |header| WireError::Header {
        subject: subject.to_owned(),
        header,
    };
    let topic = subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|t| TopicName::parse(t).ok())
        .ok_or_else(|| WireError::Subject(subject.to_owned()))?;
    let seq = number(headers, SEQ).ok_or_else(|| bad(SEQ))?;
    let ts = number(headers, TS).ok_or_else(|| bad(TS))?;
    let payload = match headers.and_then(|h| h.get(KIND)).map(|v| v.as_str()) {
        Some("text") if std::str::from_utf8(&body).is_ok() => Payload::Text(body),
        Some("binary") => Payload::Binary(body),
        Some("json") => Payload::Json(body),
        Some("msgpack") => Payload::Msgpack(body),
        _ => return Err(bad(KIND)),
    };
    let origin = headers
        .and_then(|h| h.get(ORIGIN))
        .and_then(|v| v.as_str().split_once(':').map(|(n, s)| (n.to_owned(), s.to_owned())))
        .filter(|(n, _)| n.parse() == Ok(node))
        .and_then(|(_, s)| s.parse().ok())
        .map(SessionId);
    Ok(Message::new(topic, seq, ts, payload, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_trip_and_only_its_own_node_sees_its_origin() {
        let payload = Payload::Json(Bytes::from_static(b"{\"a\":1}"));
        let h = headers(7, 1234, &payload, Some((42, SessionId(9))));
        let m = decode("fanout", "fanout.a.b", Some(&h), payload.bytes().clone(), 42).unwrap();
        assert_eq!(
            (m.topic.as_str(), m.seq, m.ts, m.origin),
            ("a.b", 7, 1234, Some(SessionId(9)))
        );
        assert_eq!(m.payload, payload);
        let other = decode("fanout", "fanout.a.b", Some(&h), payload.bytes().clone(), 43).unwrap();
        assert_eq!(other.origin, None);
        assert!(decode("fanout", "other.a", Some(&h), Bytes::new(), 42).is_err());
        assert!(decode("fanout", "fanout.a", None, Bytes::new(), 42).is_err());
    }
}
