//! How messages travel over NATS: one JetStream message carries one fanout
//! message or a batch of consecutive ones of the same topic, so every node
//! rebuilds exactly the [`Message`]s the publishing node would have.
//!
//! One message: the payload is the body; the topic seq, publish time,
//! payload kind and publishing connection are headers. A batch (`Fanout-Kind:
//! batch`, seqs `Fanout-Seq` .. `Fanout-Seq + Fanout-Count - 1`): the body is
//! the messages one after another, each as its kind (1 byte), publish time
//! (8 bytes), publishing session (8 bytes, 0: none) and payload length (4
//! bytes, all big-endian), then the payload; the publishing node is the
//! `Fanout-Node` header.

use async_nats::HeaderMap;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::{Message, Payload, SessionId};
use crate::topic::TopicName;

/// The topic seq the cluster assigned (of a batch: its first message's).
pub const SEQ: &str = "Fanout-Seq";
/// How many messages a batch carries; absent: one.
pub const COUNT: &str = "Fanout-Count";
/// Publish time, Unix milliseconds (one message).
pub const TS: &str = "Fanout-Ts";
/// The payload's kind: `text`, `binary`, `json` or `msgpack`; `batch` for a batch.
pub const KIND: &str = "Fanout-Kind";
/// `<node>:<session>` of the publishing connection (one message), so raw sockets skip their own echo.
pub const ORIGIN: &str = "Fanout-Origin";
/// The publishing node's id (a batch; each message names its session in the body).
pub const NODE: &str = "Fanout-Node";

/// The size of a batch record's head: kind, publish time, session, payload length.
const RECORD_HEAD: usize = 1 + 8 + 8 + 4;

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
    /// A batch's body does not hold the messages its headers announce.
    #[error("NATS batch on `{0}` is cut short or malformed; only fanout nodes may publish under the subject prefix")]
    Batch(String),
}

/// One message to send, as the publishing node has it.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The data.
    pub payload: &'a Payload,
    /// Publish time, Unix ms.
    pub ts: u64,
    /// The publishing session on this node.
    pub origin: Option<SessionId>,
}

/// The headers and body of `messages` (consecutive, of one topic) with seqs from `first`,
/// published by node `node`.
pub fn encode(first: u64, messages: &[Outgoing<'_>], node: u64) -> (HeaderMap, Bytes) {
    let mut h = HeaderMap::new();
    h.insert(SEQ, first.to_string().as_str());
    if let [one] = messages {
        h.insert(TS, one.ts.to_string().as_str());
        h.insert(KIND, kind(one.payload));
        if let Some(session) = one.origin {
            h.insert(ORIGIN, format!("{node}:{session}").as_str());
        }
        return (h, one.payload.bytes().clone());
    }
    h.insert(COUNT, messages.len().to_string().as_str());
    h.insert(KIND, "batch");
    h.insert(NODE, node.to_string().as_str());
    let size = messages.iter().map(|m| RECORD_HEAD + m.payload.len()).sum();
    let mut body = BytesMut::with_capacity(size);
    for m in messages {
        body.put_u8(kind_code(m.payload));
        body.put_u64(m.ts);
        body.put_u64(m.origin.map_or(0, |s| s.0));
        // A payload is at most `limits.max_message_bytes` (64 MiB at most): it fits.
        body.put_u32(m.payload.len() as u32);
        body.put_slice(m.payload.bytes());
    }
    (h, body.freeze())
}

fn kind(payload: &Payload) -> &'static str {
    match payload {
        Payload::Text(_) => "text",
        Payload::Binary(_) => "binary",
        Payload::Json(_) => "json",
        Payload::Msgpack(_) => "msgpack",
        Payload::Event(_) => "event",
    }
}

fn kind_code(payload: &Payload) -> u8 {
    match payload {
        Payload::Text(_) => 0,
        Payload::Binary(_) => 1,
        Payload::Json(_) => 2,
        Payload::Msgpack(_) => 3,
        Payload::Event(_) => 4,
    }
}

/// The payload of kind `kind` holding `body`; `None` if the kind is unknown or a text
/// payload is not UTF-8.
fn payload(kind: &str, body: Bytes) -> Option<Payload> {
    Some(match kind {
        "text" if std::str::from_utf8(&body).is_ok() => Payload::Text(body),
        "binary" => Payload::Binary(body),
        "json" => Payload::Json(body),
        "msgpack" => Payload::Msgpack(body),
        "event" => Payload::Event(body),
        _ => return None,
    })
}

const KINDS: [&str; 5] = ["text", "binary", "json", "msgpack", "event"];

/// The last topic seq a message with `headers` carries (of a batch: its last message's).
pub fn last_seq(headers: Option<&HeaderMap>) -> Option<u64> {
    let first = number(headers, SEQ)?;
    let count = number(headers, COUNT).unwrap_or(1);
    first.checked_add(count.checked_sub(1)?)
}

/// The first topic seq a message with `headers` carries.
pub fn first_seq(headers: Option<&HeaderMap>) -> Option<u64> {
    number(headers, SEQ)
}

fn number(headers: Option<&HeaderMap>, name: &str) -> Option<u64> {
    headers?.get(name)?.as_str().parse().ok()
}

/// Rebuilds the messages received on `subject` (`<prefix>.<topic>`); `node` is this
/// node's id (a message's origin session is only kept on the node that published it).
pub fn decode(
    prefix: &str,
    subject: &str,
    headers: Option<&HeaderMap>,
    body: Bytes,
    node: u64,
) -> Result<Vec<Message>, WireError> {
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
    let kind = headers.and_then(|h| h.get(KIND)).map(|v| v.as_str());
    if kind == Some("batch") {
        let count = number(headers, COUNT).ok_or_else(|| bad(COUNT))?;
        let from = number(headers, NODE).ok_or_else(|| bad(NODE))?;
        return decode_batch(topic, seq, count, body, from == node).ok_or_else(|| WireError::Batch(subject.to_owned()));
    }
    let ts = number(headers, TS).ok_or_else(|| bad(TS))?;
    let payload = kind.and_then(|k| payload(k, body)).ok_or_else(|| bad(KIND))?;
    let origin = headers
        .and_then(|h| h.get(ORIGIN))
        .and_then(|v| v.as_str().split_once(':').map(|(n, s)| (n.to_owned(), s.to_owned())))
        .filter(|(n, _)| n.parse() == Ok(node))
        .and_then(|(_, s)| s.parse().ok())
        .map(SessionId);
    Ok(vec![Message::new(topic, seq, ts, payload, origin)])
}

/// The `count` messages of a batch body, seqs from `first`; `ours`: published by this node.
fn decode_batch(topic: TopicName, first: u64, count: u64, mut body: Bytes, ours: bool) -> Option<Vec<Message>> {
    // Every record takes at least its head, so a forged count cannot reserve much.
    let mut out = Vec::with_capacity((count as usize).min(body.len() / RECORD_HEAD));
    for i in 0..count {
        if body.remaining() < RECORD_HEAD {
            return None;
        }
        let kind = *KINDS.get(body.get_u8() as usize)?;
        let ts = body.get_u64();
        let session = body.get_u64();
        let len = body.get_u32() as usize;
        if body.remaining() < len {
            return None;
        }
        let payload = payload(kind, body.split_to(len))?;
        let origin = (ours && session != 0).then_some(SessionId(session));
        out.push(Message::new(topic.clone(), first.checked_add(i)?, ts, payload, origin));
    }
    body.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_trip_and_only_its_own_node_sees_its_origin() {
        let payload = Payload::Json(Bytes::from_static(b"{\"a\":1}"));
        let one = Outgoing {
            payload: &payload,
            ts: 1234,
            origin: Some(SessionId(9)),
        };
        let (h, body) = encode(7, &[one], 42);
        assert_eq!(last_seq(Some(&h)), Some(7));
        let m = decode("fanout", "fanout.a.b", Some(&h), body.clone(), 42)
            .unwrap()
            .remove(0);
        assert_eq!(
            (m.topic.as_str(), m.seq, m.ts, m.origin),
            ("a.b", 7, 1234, Some(SessionId(9)))
        );
        assert_eq!(m.payload, payload);
        let other = decode("fanout", "fanout.a.b", Some(&h), body, 43).unwrap().remove(0);
        assert_eq!(other.origin, None);
        assert!(decode("fanout", "other.a", Some(&h), Bytes::new(), 42).is_err());
        assert!(decode("fanout", "fanout.a", None, Bytes::new(), 42).is_err());
    }

    #[test]
    fn a_batch_carries_consecutive_seqs_each_with_its_own_kind_time_and_origin() {
        let payloads = [
            Payload::text("héllo"),
            Payload::Binary(Bytes::from_static(&[0, 255])),
            Payload::Json(Bytes::from_static(b"[1]")),
            Payload::Msgpack(Bytes::from_static(&[0x91, 0x01])),
            Payload::Event(Bytes::from_static(br#"{"event":"typing","args":["bob"]}"#)),
        ];
        let out: Vec<Outgoing<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Outgoing {
                payload: p,
                ts: 100 + i as u64,
                origin: (i % 2 == 0).then_some(SessionId(5)),
            })
            .collect();
        let (h, body) = encode(11, &out, 42);
        assert_eq!((first_seq(Some(&h)), last_seq(Some(&h))), (Some(11), Some(15)));
        let got = decode("fanout", "fanout.t", Some(&h), body.clone(), 42).unwrap();
        let seen: Vec<(u64, u64, Option<SessionId>)> = got.iter().map(|m| (m.seq, m.ts, m.origin)).collect();
        assert_eq!(
            seen,
            [
                (11, 100, Some(SessionId(5))),
                (12, 101, None),
                (13, 102, Some(SessionId(5))),
                (14, 103, None),
                (15, 104, Some(SessionId(5)))
            ]
        );
        assert_eq!(got.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(), payloads);
        let elsewhere = decode("fanout", "fanout.t", Some(&h), body.clone(), 43).unwrap();
        assert!(
            elsewhere.iter().all(|m| m.origin.is_none()),
            "origins are this node's only"
        );
        for cut in [body.len() - 1, 3, 0] {
            assert!(
                decode("fanout", "fanout.t", Some(&h), body.slice(..cut), 42).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = BytesMut::from(&body[..]);
        longer.put_u8(0);
        assert!(decode("fanout", "fanout.t", Some(&h), longer.freeze(), 42).is_err());
    }
}
