//! A published message and its frames, encoded at most once per wire format.

use std::sync::OnceLock;

use bytes::Bytes;

use super::{deflate, iframe, json, msgpack, socketio, sse, Framing, Wire};
use crate::config::Deflate;
use crate::protocol::frame::{self, OpCode};
use crate::topic::TopicName;

/// Identifies one connection for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The data a publisher sent, kept in its original encoding as opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A string: a raw socket's text frame, `text/plain`, or a JSON/MessagePack string. Valid UTF-8.
    Text(Bytes),
    /// Bytes: a raw socket's binary frame, `application/octet-stream`, or MessagePack `bin`.
    Binary(Bytes),
    /// Any JSON value other than a string, as the publisher wrote it.
    Json(Bytes),
    /// Any MessagePack value other than `str` and `bin`, as the publisher wrote it.
    Msgpack(Bytes),
    /// A Socket.IO event with another name than `message`, or other than one argument:
    /// the JSON object `{"event":NAME,"args":[...]}`, which is what every other
    /// subscriber gets as data; Socket.IO subscribers get the event back.
    Event(Bytes),
}

impl Payload {
    /// A text payload; `text` must be valid UTF-8 (the type guarantees it).
    pub fn text(text: impl Into<String>) -> Self {
        Payload::Text(Bytes::from(text.into()))
    }

    /// The payload's size in bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// The payload bytes in their original encoding.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Payload::Text(b) | Payload::Binary(b) | Payload::Json(b) | Payload::Msgpack(b) | Payload::Event(b) => b,
        }
    }
}

/// One published message: what every subscriber of its topic receives.
#[derive(Debug)]
pub struct Message {
    /// The topic it was published to.
    pub topic: TopicName,
    /// Its place in the topic's sequence, from 1 with no gaps.
    pub seq: u64,
    /// Publish time, Unix milliseconds.
    pub ts: u64,
    /// The data.
    pub payload: Payload,
    /// The connection that published it, so raw sockets without echo can skip their own messages.
    pub origin: Option<SessionId>,
    /// How the topic's rule compresses it for permessage-deflate subscribers; `None`: never.
    deflate: Option<Deflate>,
    /// The complete WebSocket frame per wire format, built by the first subscriber that needs it.
    frames: [OnceLock<Bytes>; Wire::COUNT],
    /// The compressed frames of the formats a WebSocket can negotiate deflate on (see
    /// [`deflated_slot`]), built by the first such subscriber; empty: sent plain.
    deflated: [OnceLock<Bytes>; DEFLATED_SLOTS],
}

/// How many wire formats have a compressed frame: the `/ws` formats and raw sockets.
const DEFLATED_SLOTS: usize = 3;

/// Where `wire`'s compressed frame is kept; `None` for formats that never negotiate
/// permessage-deflate (HTTP streams, and Socket.IO, whose servers leave it off too).
fn deflated_slot(wire: Wire) -> Option<usize> {
    match wire {
        Wire::Json => Some(0),
        Wire::Msgpack => Some(1),
        Wire::Raw => Some(2),
        Wire::Sse | Wire::SseRaw | Wire::Iframe | Wire::SioTopic | Wire::SioMain => None,
    }
}

impl Message {
    /// A message not yet encoded for any wire format.
    pub fn new(topic: TopicName, seq: u64, ts: u64, payload: Payload, origin: Option<SessionId>) -> Self {
        Message {
            topic,
            seq,
            ts,
            payload,
            origin,
            deflate: None,
            frames: Default::default(),
            deflated: Default::default(),
        }
    }

    /// The same message, compressed by `deflate` for subscribers that negotiated it.
    pub fn with_deflate(mut self, deflate: Option<Deflate>) -> Self {
        self.deflate = deflate;
        self
    }

    /// The frame a connection with `framing` gets: compressed when it agreed to
    /// permessage-deflate and the topic's rule and the message's size allow it,
    /// compressed once and shared; otherwise [`Message::frame`].
    pub fn frame_for(&self, framing: Framing) -> &Bytes {
        let plain = self.frame(framing.wire);
        if let (Some(agreed), Some(rule), Some(slot)) = (framing.deflate, self.deflate, deflated_slot(framing.wire)) {
            let z = self.deflated[slot].get_or_init(|| deflate::compress_frame(plain, rule).unwrap_or_default());
            if !z.is_empty() && agreed.fits(frame::payload_of(plain).len()) {
                return z;
            }
        }
        plain
    }

    /// The complete frame for `wire`, encoded on first use and shared afterwards.
    pub fn frame(&self, wire: Wire) -> &Bytes {
        self.frames[wire as usize].get_or_init(|| self.encode(wire))
    }

    fn encode(&self, wire: Wire) -> Bytes {
        match wire {
            Wire::Json => json::message_frame(self),
            Wire::Msgpack => msgpack::message_frame(self),
            Wire::Raw => match &self.payload {
                Payload::Text(b) | Payload::Json(b) | Payload::Event(b) => frame::encode(OpCode::Text, b),
                Payload::Binary(b) | Payload::Msgpack(b) => frame::encode(OpCode::Binary, b),
            },
            Wire::Sse => sse::message_event(self),
            Wire::SseRaw => sse::payload_event(&self.payload),
            Wire::Iframe => iframe::value(&self.payload),
            Wire::SioTopic => socketio::topic_message_frame(self),
            Wire::SioMain => socketio::main_message_frame(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: Payload) -> Message {
        Message::new(TopicName::parse("t").unwrap(), 1, 2, payload, None)
    }

    #[test]
    fn frames_are_encoded_once_and_shared() {
        let m = message(Payload::Json(Bytes::from_static(b"{\"a\":1}")));
        let a = m.frame(Wire::Json).clone();
        let b = m.frame(Wire::Json).clone();
        assert_eq!(a.as_ptr(), b.as_ptr(), "two subscribers must share one buffer");
    }

    #[test]
    fn every_format_has_its_own_cached_frame() {
        for (i, wire) in Wire::ALL.into_iter().enumerate() {
            assert_eq!(wire as usize, i, "{wire:?} indexes the frame cache");
        }
        let m = message(Payload::text("<b>"));
        assert_eq!(&m.frame(Wire::Iframe)[..], b"\"\\u003cb\\u003e\"");
        assert_eq!(&m.frame(Wire::SseRaw)[..], b"data: <b>\n\n");
        assert_eq!(m.frame(Wire::Iframe).as_ptr(), m.frame(Wire::Iframe).clone().as_ptr());
    }

    #[test]
    fn raw_frames_are_exactly_the_payload_text_stays_text_binary_stays_binary() {
        let t = message(Payload::text("hello"));
        assert_eq!(&t.frame(Wire::Raw)[..], b"\x81\x05hello");
        let b = message(Payload::Binary(Bytes::from_static(&[0, 1, 2])));
        assert_eq!(&b.frame(Wire::Raw)[..], &[0x82, 3, 0, 1, 2]);
        let j = message(Payload::Json(Bytes::from_static(b"[1]")));
        assert_eq!(&j.frame(Wire::Raw)[..], b"\x81\x03[1]");
    }
}
