//! The wire formats the harness speaks: `raw` topic sockets (or any
//! generic broadcast server), the broker's JSON and MessagePack envelopes,
//! and Socket.IO ([`socketio`], a topic per namespace). Builds outgoing
//! frames and classifies incoming ones.

mod fast_json;
pub mod socketio;

use crate::client::Message;
use crate::payload::Stamp;
use crate::shape::{self, Encoding, ShapeWriter};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Which wire format to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Raw frames on `/ws/t/{topic}` (or any broadcast server).
    Raw,
    /// JSON envelopes on `/ws?format=json`.
    Json,
    /// MessagePack envelopes on `/ws?format=msgpack`.
    Msgpack,
    /// Socket.IO v4 on `/socket.io/` (WebSocket transport only): a topic is
    /// the namespace `/TOPIC`, a message the event `message`.
    Socketio,
}

/// An outgoing frame: text or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

/// An incoming frame, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A published payload, with the broker's topic sequence when known.
    Data {
        /// The payload bytes (ours start with `p`).
        payload: Cow<'a, [u8]>,
        /// Topic the message was published to (JSON/MessagePack only).
        topic: Option<Cow<'a, str>>,
        /// The broker's per-topic sequence number (JSON/MessagePack only).
        seq: Option<u64>,
    },
    /// A subscribe (or publish) acknowledgement.
    Ack {
        /// The request id.
        id: u64,
        /// The topic's current sequence number.
        seq: Option<u64>,
        /// The life of the topic `seq` counts in (subscribe to an exact topic).
        epoch: Option<Cow<'a, str>>,
        /// False when a resume with `since` could not be honoured.
        recovered: Option<bool>,
    },
    /// A `gap` notice: messages `from..=to` were dropped.
    Gap {
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
    },
    /// An `error` reply (Socket.IO: the server closed the session or left
    /// us out of a namespace).
    Error(String),
    /// The server's heartbeat (Socket.IO `2`): answer [`socketio::PONG`] at once.
    Heartbeat,
    /// Anything else (pong, join, leave, control frames...).
    Other,
}

#[derive(Serialize)]
struct OutMsg<'a> {
    op: &'a str,
    topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
}

#[derive(Deserialize)]
struct InMsg<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default, borrow)]
    topic: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    epoch: Option<Cow<'a, str>>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    to: Option<u64>,
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A message's `data` as the receive path needs it: a string as it is,
/// or, for an object (the shaped payloads), the string in its `id` field,
/// the stamp; every other field is skipped without being kept.
struct Data<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Data<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, or an object with an `id` string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Data<'a>, E> {
                Ok(Data(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Data<'a>, E> {
                Ok(Data(Cow::Owned(v.to_string())))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Data<'a>, M::Error> {
                let mut id = Cow::Borrowed("");
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "id" {
                        id = map.next_value::<Cow<'de, str>>()?;
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Data(id))
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

impl Protocol {
    /// The URL a connection uses: `raw` fills `{topic}` in `raw_path`,
    /// Socket.IO uses `/socket.io/?EIO=4&transport=websocket`, the others
    /// `/ws?format=...`.
    pub fn url(&self, base: &str, raw_path: &str, topic: &str, query: &str) -> String {
        let base = base.trim_end_matches('/');
        let mut url = match self {
            Protocol::Raw => format!("{base}{}", raw_path.replace("{topic}", topic)),
            Protocol::Json => format!("{base}/ws?format=json"),
            Protocol::Msgpack => format!("{base}/ws?format=msgpack"),
            Protocol::Socketio => format!("{base}/socket.io/?EIO=4&transport=websocket"),
        };
        if !query.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(query);
        }
        url
    }

    /// True for the broker's envelopes (subscribe requests and acks,
    /// patterns, `since`): JSON and MessagePack.
    pub fn has_envelopes(&self) -> bool {
        matches!(self, Protocol::Json | Protocol::Msgpack)
    }

    /// True when every topic is its own broadcast domain whatever the path:
    /// the envelopes, and Socket.IO's namespaces.
    pub fn has_topics(&self) -> bool {
        self.has_envelopes() || matches!(self, Protocol::Socketio)
    }

    /// A subscribe request (`None` for raw, where the URL is the
    /// subscription, and Socket.IO, which joins namespaces instead),
    /// resuming after `since` received in `epoch` when given.
    pub fn subscribe(&self, topic: &str, id: u64, since: Option<u64>, epoch: Option<&str>) -> Option<Frame> {
        let msg = OutMsg {
            op: "subscribe",
            topic,
            data: None,
            since,
            epoch: since.and(epoch),
            id: Some(id),
        };
        self.envelope(&msg)
    }

    /// A publish of `payload` to `topic` (raw: the payload itself).
    pub fn publish(&self, topic: &str, payload: &str) -> Frame {
        let mut out = Vec::with_capacity(payload.len() + topic.len() + 48);
        if self.encode_publish(&mut out, topic, payload) {
            // Built only from the `&str`s and ASCII punctuation.
            Frame::Text(String::from_utf8(out).expect("UTF-8 from UTF-8 parts"))
        } else {
            Frame::Binary(out)
        }
    }

    /// Appends the body of a publish of `payload` to `topic` to `out`;
    /// true when it goes in a text frame. The publisher's allocation-free
    /// form of [`Protocol::publish`].
    pub fn encode_publish(&self, out: &mut Vec<u8>, topic: &str, payload: &str) -> bool {
        match self {
            Protocol::Raw => {
                out.extend_from_slice(payload.as_bytes());
                true
            }
            Protocol::Json => {
                // Our topics and payloads are plain ASCII without quotes or backslashes.
                out.extend_from_slice(br#"{"op":"publish","topic":""#);
                out.extend_from_slice(topic.as_bytes());
                out.extend_from_slice(br#"","data":""#);
                out.extend_from_slice(payload.as_bytes());
                out.extend_from_slice(br#""}"#);
                true
            }
            Protocol::Socketio => {
                socketio::encode_event(out, topic, None, socketio::EVENT, payload);
                true
            }
            Protocol::Msgpack => {
                let msg = OutMsg {
                    op: "publish",
                    topic,
                    data: Some(payload),
                    since: None,
                    epoch: None,
                    id: None,
                };
                rmp_serde::encode::write_named(out, &msg).expect("serializable into a Vec");
                false
            }
        }
    }

    /// How a shaped payload is encoded for this protocol: MessagePack for
    /// `msgpack` (the `data` value is a map), JSON otherwise.
    pub fn shape_encoding(&self) -> Encoding {
        match self {
            Protocol::Msgpack => Encoding::Msgpack,
            _ => Encoding::Json,
        }
    }

    /// Appends the body of a publish to `topic` of `writer`'s next payload
    /// for `stamp`; true when it goes in a text frame. The object is the
    /// `data` value itself (json, msgpack), the whole frame (raw) or the
    /// event's argument (Socket.IO), so nothing re-encodes it on the way.
    /// `writer` must write [`Protocol::shape_encoding`].
    pub fn encode_publish_shaped(
        &self,
        out: &mut Vec<u8>,
        topic: &str,
        writer: &mut ShapeWriter,
        stamp: &Stamp,
    ) -> bool {
        debug_assert_eq!(writer.encoding(), self.shape_encoding());
        match self {
            Protocol::Raw => writer.write(out, stamp),
            Protocol::Json => {
                out.extend_from_slice(br#"{"op":"publish","topic":""#);
                out.extend_from_slice(topic.as_bytes());
                out.extend_from_slice(br#"","data":"#);
                writer.write(out, stamp);
                out.push(b'}');
            }
            Protocol::Socketio => {
                socketio::encode_event_start(out, topic, None, socketio::EVENT);
                writer.write(out, stamp);
                out.push(b']');
            }
            Protocol::Msgpack => {
                shape::mp_map_len(out, 3);
                for s in ["op", "publish", "topic", topic, "data"] {
                    shape::mp_str(out, s);
                }
                writer.write(out, stamp);
                return false;
            }
        }
        true
    }

    fn envelope(&self, msg: &OutMsg) -> Option<Frame> {
        match self {
            Protocol::Raw | Protocol::Socketio => None,
            Protocol::Json => Some(Frame::Text(serde_json::to_string(msg).expect("serializable"))),
            Protocol::Msgpack => Some(Frame::Binary(rmp_serde::to_vec_named(msg).expect("serializable"))),
        }
    }

    /// Classifies a received message.
    pub fn parse<'a>(&self, msg: &'a Message) -> Incoming<'a> {
        match msg {
            Message::Text(t) => self.parse_data(true, t.as_bytes()),
            Message::Binary(b) => self.parse_data(false, b),
            _ => Incoming::Other,
        }
    }

    /// Classifies the bytes of one received text (`text`) or binary data
    /// message, borrowing from them: the receive path's parser.
    pub fn parse_data<'a>(&self, text: bool, bytes: &'a [u8]) -> Incoming<'a> {
        let parsed: Option<InMsg<'a>> = match (self, text) {
            (Protocol::Raw, _) => {
                return Incoming::Data {
                    payload: Cow::Borrowed(bytes),
                    topic: None,
                    seq: None,
                }
            }
            (Protocol::Json, true) => {
                if let Some(fast) = fast_json::message(bytes) {
                    return fast;
                }
                serde_json::from_slice(bytes).ok()
            }
            (Protocol::Msgpack, false) => rmp_serde::from_slice(bytes).ok(),
            (Protocol::Socketio, true) => return socketio_incoming(socketio::parse(bytes)),
            _ => return Incoming::Other,
        };
        let Some(m) = parsed else {
            return Incoming::Error("unparseable server message".into());
        };
        match m.kind.as_ref() {
            "message" => {
                let payload = match m.data {
                    Some(Data(Cow::Borrowed(s))) => Cow::Borrowed(s.as_bytes()),
                    Some(Data(Cow::Owned(s))) => Cow::Owned(s.into_bytes()),
                    None => Cow::Borrowed(&[][..]),
                };
                Incoming::Data {
                    payload,
                    topic: m.topic,
                    seq: m.seq,
                }
            }
            "ack" => Incoming::Ack {
                id: m.id.unwrap_or(0),
                seq: m.seq,
                epoch: m.epoch,
                recovered: m.recovered,
            },
            "gap" => Incoming::Gap {
                from: m.from.unwrap_or(0),
                to: m.to.unwrap_or(0),
            },
            "error" => Incoming::Error(format!(
                "{}: {}",
                m.code.unwrap_or_default(),
                m.message.unwrap_or_default()
            )),
            _ => Incoming::Other,
        }
    }
}

/// What a Socket.IO packet means to a subscriber: a `message` event's
/// first argument is the payload, and its namespace the topic.
fn socketio_incoming(packet: socketio::Packet<'_>) -> Incoming<'_> {
    use socketio::Packet;
    match packet {
        Packet::Event {
            ns,
            name,
            arg: Some(payload),
            ..
        } if name == socketio::EVENT => Incoming::Data {
            payload,
            topic: Some(Cow::Borrowed(ns.strip_prefix('/').unwrap_or(ns))),
            seq: None,
        },
        Packet::Ping => Incoming::Heartbeat,
        Packet::Ack { id, .. } => Incoming::Ack {
            id,
            seq: None,
            epoch: None,
            recovered: None,
        },
        Packet::Close => Incoming::Error("the server closed the Engine.IO session".into()),
        Packet::Disconnect { ns } => Incoming::Error(format!("the server disconnected us from {ns}")),
        Packet::ConnectError { ns, message } => Incoming::Error(format!("{ns}: {message}")),
        _ => Incoming::Other,
    }
}

/// NATS-style matching: `*` is exactly one token, `>` one or more trailing.
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_nats() {
        assert!(topic_matches("a.b", "a.b"));
        assert!(!topic_matches("a.b", "a.b.c"));
        assert!(topic_matches("a.*", "a.b"));
        assert!(!topic_matches("a.*", "a.b.c"));
        assert!(topic_matches("a.>", "a.b.c"));
        assert!(!topic_matches("a.>", "a"));
        assert!(topic_matches("*.b.>", "x.b.c"));
    }

    #[test]
    fn json_roundtrip_of_envelopes() {
        let p = Protocol::Json;
        assert_eq!(
            p.subscribe("t.a", 1, Some(5), None),
            Some(Frame::Text(
                r#"{"op":"subscribe","topic":"t.a","since":5,"id":1}"#.into()
            ))
        );
        assert_eq!(
            p.subscribe("t.a", 1, Some(5), Some("00ff")),
            Some(Frame::Text(
                r#"{"op":"subscribe","topic":"t.a","since":5,"epoch":"00ff","id":1}"#.into()
            ))
        );
        let Frame::Text(publ) = p.publish("t.a", "p1:0:2:3:xx") else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_str(&publ).unwrap();
        assert_eq!(v["data"], "p1:0:2:3:xx");
        let m = Message::Text(r#"{"type":"message","topic":"t.a","seq":121,"ts":1,"data":"p1:0:2:3:"}"#.into());
        assert_eq!(
            p.parse(&m),
            Incoming::Data {
                payload: Cow::Borrowed(&b"p1:0:2:3:"[..]),
                topic: Some("t.a".into()),
                seq: Some(121)
            }
        );
        let m = Message::Text(r#"{"type":"gap","topic":"t","from":101,"to":110,"reason":"slow_consumer"}"#.into());
        assert_eq!(p.parse(&m), Incoming::Gap { from: 101, to: 110 });
        // Other field orders and escapes fall back to serde.
        let m = Message::Text(r#"{"seq":5,"type":"message","topic":"t.a","data":"a\"b"}"#.into());
        assert!(matches!(p.parse(&m), Incoming::Data { seq: Some(5), .. }));
        let m = Message::Text(r#"{"type":"ack","id":1,"topic":"T","seq":7}"#.into());
        assert_eq!(
            p.parse(&m),
            Incoming::Ack {
                id: 1,
                seq: Some(7),
                epoch: None,
                recovered: None
            }
        );
        let m = Message::Text(r#"{"type":"ack","id":2,"topic":"T","seq":3,"epoch":"00ab","recovered":false}"#.into());
        assert_eq!(
            p.parse(&m),
            Incoming::Ack {
                id: 2,
                seq: Some(3),
                epoch: Some("00ab".into()),
                recovered: Some(false)
            }
        );
    }

    #[test]
    fn msgpack_roundtrip_of_envelopes() {
        let p = Protocol::Msgpack;
        let Frame::Binary(b) = p.publish("t.a", "p1:0:2:3:") else {
            panic!()
        };
        let v: serde_json::Value = rmp_serde::from_slice(&b).unwrap();
        assert_eq!(v["op"], "publish");
        #[derive(Serialize)]
        struct M<'a> {
            r#type: &'a str,
            topic: &'a str,
            seq: u64,
            data: &'a str,
        }
        let bytes = rmp_serde::to_vec_named(&M {
            r#type: "message",
            topic: "t",
            seq: 3,
            data: "p1:0:2:3:",
        })
        .unwrap();
        let msg = Message::Binary(bytes);
        assert!(matches!(p.parse(&msg), Incoming::Data { seq: Some(3), .. }));
    }

    /// Every protocol's publish of a shaped payload, and what a subscriber
    /// makes of the server's delivery of it: the stamp comes back.
    #[test]
    fn shaped_payloads_travel_as_objects() {
        use crate::payload::{decode, Stamp};
        use crate::shape::{PayloadShape, ShapeWriter};
        let stamp = Stamp {
            publisher: 2,
            step: 1,
            seq: 9,
            intended_ns: 1_764_000_000_000_000_000,
        };
        let publish = |p: Protocol| {
            let mut w = ShapeWriter::new(PayloadShape::Quote, 200, p.shape_encoding(), 2).unwrap();
            let mut out = Vec::new();
            let text = p.encode_publish_shaped(&mut out, "lt.q", &mut w, &stamp);
            (out, text)
        };
        let (body, text) = publish(Protocol::Json);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(text && v["op"] == "publish" && v["topic"] == "lt.q");
        assert!(v["data"].is_object() && v["data"]["bid"].is_f64());
        // The broker's message: data is the object as published, last.
        let body = String::from_utf8(body).unwrap();
        let data = &body[body.find(r#""data":"#).unwrap() + 7..body.len() - 1];
        let delivered = format!(r#"{{"type":"message","topic":"lt.q","seq":4,"ts":1,"data":{data}}}"#);
        let Incoming::Data { payload, seq, .. } = Protocol::Json.parse_data(true, delivered.as_bytes()) else {
            panic!("{delivered}")
        };
        assert_eq!((decode(&payload), seq), (Ok(stamp), Some(4)));
        // Other field orders take serde's way, which reads the object's `id`.
        let reordered = format!(r#"{{"seq":4,"type":"message","topic":"lt.q","data":{data}}}"#);
        let Incoming::Data { payload, .. } = Protocol::Json.parse_data(true, reordered.as_bytes()) else {
            panic!("{reordered}")
        };
        assert_eq!(decode(&payload), Ok(stamp));

        let (body, text) = publish(Protocol::Msgpack);
        let v: serde_json::Value = rmp_serde::from_slice(&body).unwrap();
        assert!(!text && v["op"] == "publish" && v["data"]["bid"].is_f64(), "{v}");
        #[derive(Serialize)]
        struct M<'a> {
            r#type: &'a str,
            topic: &'a str,
            seq: u64,
            data: &'a serde_json::Value,
        }
        let m = rmp_serde::to_vec_named(&M {
            r#type: "message",
            topic: "lt.q",
            seq: 5,
            data: &v["data"],
        })
        .unwrap();
        let Incoming::Data { payload, seq, .. } = Protocol::Msgpack.parse_data(false, &m) else {
            panic!()
        };
        assert_eq!((decode(&payload), seq), (Ok(stamp), Some(5)));

        let (body, _) = publish(Protocol::Raw);
        assert!(serde_json::from_slice::<serde_json::Value>(&body).unwrap().is_object());
        let Incoming::Data { payload, .. } = Protocol::Raw.parse_data(true, &body) else {
            panic!()
        };
        assert_eq!(decode(&payload), Ok(stamp));

        let (body, _) = publish(Protocol::Socketio);
        assert!(body.starts_with(br#"42/lt.q,["message",{"id":"p2:1:9:"#) && body.ends_with(b"}]"));
        let Incoming::Data { payload, topic, .. } = Protocol::Socketio.parse_data(true, &body) else {
            panic!()
        };
        assert_eq!((decode(&payload), topic.as_deref()), (Ok(stamp), Some("lt.q")));
    }

    #[test]
    fn urls() {
        assert_eq!(
            Protocol::Raw.url("ws://h:1/", "/ws/t/{topic}", "a.b", ""),
            "ws://h:1/ws/t/a.b"
        );
        assert_eq!(
            Protocol::Raw.url("ws://h:1", "/", "a.b", "since=3"),
            "ws://h:1/?since=3"
        );
        assert_eq!(Protocol::Json.url("ws://h:1", "/", "a", ""), "ws://h:1/ws?format=json");
        assert_eq!(
            Protocol::Socketio.url("ws://h:1/", "/", "a", ""),
            "ws://h:1/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn socketio_frames_as_the_subscriber_sees_them() {
        let p = Protocol::Socketio;
        let Frame::Text(publ) = p.publish("lt.fanout", "p0:1:2:123:xxxx") else {
            panic!()
        };
        assert_eq!(publ, r#"42/lt.fanout,["message","p0:1:2:123:xxxx"]"#);
        assert_eq!(p.subscribe("lt.fanout", 1, None, None), None);
        let data = |s: &'static str| p.parse_data(true, s.as_bytes());
        let want = Incoming::Data {
            payload: Cow::Borrowed(&b"p0:1:2:123:xxxx"[..]),
            topic: Some("lt.fanout".into()),
            seq: None,
        };
        assert_eq!(data(r#"42/lt.fanout,["message","p0:1:2:123:xxxx"]"#), want);
        assert_eq!(data(r#"42/lt.fanout,["message","p0:1:2:123:xxxx","0-7"]"#), want);
        assert!(matches!(
            data(r#"42["message","p0:1"]"#),
            Incoming::Data {
                topic: Some(Cow::Borrowed("")),
                ..
            }
        ));
        assert_eq!(data("2"), Incoming::Heartbeat);
        assert_eq!(data(r#"42/lt.fanout,["other","p0:1:2:3:"]"#), Incoming::Other);
        assert!(matches!(data("43/lt.fanout,17[]"), Incoming::Ack { id: 17, .. }));
        assert!(matches!(data("41/lt.fanout,"), Incoming::Error(_)));
        assert!(matches!(data("1"), Incoming::Error(_)));
        assert!(matches!(data(r#"44/x,{"message":"no"}"#), Incoming::Error(e) if e == "/x: no"));
        assert_eq!(p.parse_data(false, b"42[]"), Incoming::Other);
    }
}
