//! The wire protocol: client requests, server replies, and how each is
//! encoded in JSON (text frames) or MessagePack (binary frames).
//!
//! Requests are decoded into [`ClientMsg`]; a request that cannot be decoded
//! gives a [`DecodeError`] carrying the request `id` when it was readable, so
//! the `error` reply can name it. Published data stays opaque ([`Payload`]):
//! it is re-encoded only when a subscriber speaks another format, once per
//! format per message ([`Message::frame`], [`transcode`]), so it is checked
//! on the way in to be data every format carries as the same value ([`data`]).

pub mod data;
pub mod deflate;
pub mod epoch;
pub mod frame;
pub mod iframe;
pub mod json;
pub mod message;
pub mod msgpack;
pub mod socketio;
pub mod sse;
pub mod transcode;

pub use deflate::Agreement;
pub use epoch::Epoch;
pub use message::{Message, Payload, SessionId};

use crate::error::{DecodeError, ErrorCode, RequestError};

/// How a connection's frames are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    /// The JSON protocol on `/ws`, in text frames.
    Json = 0,
    /// The MessagePack protocol on `/ws`, in binary frames.
    Msgpack = 1,
    /// Raw topic sockets (`/ws/t/{topic}`): each frame is exactly a payload.
    Raw = 2,
    /// Server-Sent Events: each message is an `event: message` block (see [`sse`]).
    Sse = 3,
    /// Payload-only Server-Sent Events (`/sse/t/{topic}`): each message's `data:` is
    /// the payload itself (see [`sse::payload_event`]).
    SseRaw = 4,
    /// Iframe streaming (`/iframe/{topic}`): each message is its payload as an escaped
    /// JavaScript value, which the stream wraps in its own `<script>` call (see [`iframe`]).
    Iframe = 5,
    /// A Socket.IO namespace that is a topic: event `message` with the payload (see [`socketio`]).
    SioTopic = 6,
    /// The Socket.IO main namespace: event `message` with the `/ws` message object.
    SioMain = 7,
}

impl Wire {
    /// How many wire formats exist (the size of a message's frame cache).
    pub const COUNT: usize = 8;

    /// Every wire format, in frame-cache order.
    pub const ALL: [Wire; Wire::COUNT] = [
        Wire::Json,
        Wire::Msgpack,
        Wire::Raw,
        Wire::Sse,
        Wire::SseRaw,
        Wire::Iframe,
        Wire::SioTopic,
        Wire::SioMain,
    ];

    /// Whether a client of this format can be told about gaps and presence. Raw
    /// sockets and iframe streams carry payloads only: a notice would look like data.
    pub fn carries_notices(self) -> bool {
        !matches!(self, Wire::Raw | Wire::Iframe)
    }

    /// Whether a client of this format sends requests and reads their replies (acks,
    /// errors, pongs): `/ws`, and the Socket.IO main namespace, which reads its events
    /// into requests (a topic namespace answers its events itself).
    pub fn answers_requests(self) -> bool {
        matches!(self, Wire::Json | Wire::Msgpack | Wire::SioMain)
    }
}

/// How one connection's frames are written: its wire format and, when the client
/// negotiated permessage-deflate, what it agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// The wire format.
    pub wire: Wire,
    /// permessage-deflate, if agreed (WebSockets on `/ws`, `/ws/t/{topic}` and `/` only).
    pub deflate: Option<deflate::Agreement>,
}

impl From<Wire> for Framing {
    fn from(wire: Wire) -> Self {
        Framing { wire, deflate: None }
    }
}

impl Framing {
    /// A reply or notice for this connection alone, compressed when that was agreed
    /// and is worth it.
    pub fn reply(self, reply: &Reply<'_>) -> bytes::Bytes {
        self.compress(encode_reply(self.wire, reply))
    }

    /// `frame` (a complete plain server frame), compressed when that was agreed and is
    /// worth it.
    pub fn compress(self, frame: bytes::Bytes) -> bytes::Bytes {
        match self.deflate {
            Some(a) if a.fits(frame::payload_of(&frame).len()) => {
                deflate::compress_frame(&frame, a.rule).unwrap_or(frame)
            }
            _ => frame,
        }
    }
}

/// A request from a `/ws` client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    /// Subscribe to a topic or pattern, optionally replaying history after `since`.
    Subscribe {
        /// Request id for the ack.
        id: Option<u64>,
        /// Topic or pattern, not yet validated.
        topic: String,
        /// Replay retained messages with a seq above this.
        since: Option<u64>,
        /// The epoch `since` was received in (from an earlier ack).
        epoch: Option<Epoch>,
    },
    /// Drop a subscription made with the same topic or pattern text.
    Unsubscribe {
        /// Request id for the ack.
        id: Option<u64>,
        /// Topic or pattern, as subscribed.
        topic: String,
    },
    /// Publish `data` to an exact topic.
    Publish {
        /// Request id for the ack.
        id: Option<u64>,
        /// The topic, not yet validated.
        topic: String,
        /// The data, opaque.
        data: Payload,
        /// Publish once per key (`publish.idempotency_window`); not yet validated.
        idempotency_key: Option<String>,
    },
    /// Ask for a `pong`.
    Ping {
        /// Request id echoed in the pong.
        id: Option<u64>,
    },
    /// Present or refresh a token.
    Auth {
        /// Request id for the ack.
        id: Option<u64>,
        /// The token; never logged.
        token: String,
    },
    /// Ask for a topic's member count.
    Presence {
        /// Request id for the answer.
        id: Option<u64>,
        /// The topic.
        topic: String,
    },
}

/// A reply to one request, or a notice, in either format.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<'a> {
    /// The request with this id succeeded.
    Ack {
        /// The request id.
        id: u64,
        /// The topic the request was about.
        topic: Option<&'a str>,
        /// For subscribe: the topic's current seq; for publish: the message's seq.
        seq: Option<u64>,
        /// For subscribe to an exact topic: the life of the topic `seq` counts in.
        epoch: Option<Epoch>,
        /// For subscribe with `since`: whether the replay covers what was missed.
        recovered: Option<bool>,
        /// For publish with an idempotency key: a publish with this key was made already
        /// and got `seq`; nothing was published now. Shown only when true.
        duplicate: bool,
    },
    /// The request failed.
    Error {
        /// The request id, if it had one.
        id: Option<u64>,
        /// The error code.
        code: ErrorCode,
        /// What was wrong.
        message: &'a str,
    },
    /// Answer to `ping`.
    Pong {
        /// The request id, if it had one.
        id: Option<u64>,
    },
    /// Messages `from..=to` of `topic` will not arrive.
    Gap {
        /// The topic that lost messages.
        topic: &'a str,
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
        /// `history` or `slow_consumer`.
        reason: GapReason,
    },
    /// A client joined a presence topic.
    Join {
        /// The topic.
        topic: &'a str,
        /// The client's id (auth `sub`, or generated).
        client: &'a str,
        /// Members after the join.
        count: usize,
    },
    /// A client left a presence topic.
    Leave {
        /// The topic.
        topic: &'a str,
        /// The client's id.
        client: &'a str,
        /// Members after the leave.
        count: usize,
    },
    /// Answer to `presence`: the member count and up to a configured number of ids.
    Presence {
        /// The request id, if it had one.
        id: Option<u64>,
        /// The topic.
        topic: &'a str,
        /// Members now.
        count: usize,
        /// Member ids, capped by `presence.max_members_listed`.
        members: &'a [std::sync::Arc<str>],
    },
}

/// Why a subscriber misses messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The messages were dropped from history before the subscriber asked for them.
    History,
    /// The subscriber's send queue overflowed.
    SlowConsumer,
}

impl GapReason {
    /// The reason as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::History => "history",
            GapReason::SlowConsumer => "slow_consumer",
        }
    }
}

/// The request fields common to both formats, before they are checked against the op.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub op: Option<String>,
    pub id: Option<u64>,
    pub topic: Option<String>,
    pub since: Option<u64>,
    pub epoch: Option<String>,
    pub data: Option<Payload>,
    pub token: Option<String>,
    pub idempotency_key: Option<String>,
}

impl Fields {
    /// Checks that the op exists and has the fields it needs.
    pub(crate) fn into_msg(self) -> Result<ClientMsg, DecodeError> {
        let id = self.id;
        let fail = |message: String| DecodeError {
            id,
            error: RequestError::bad_request(message),
        };
        let Some(op) = self.op else {
            return Err(fail("missing field `op`".into()));
        };
        let topic = |t: Option<String>| t.ok_or_else(|| fail(format!("`{op}` needs a `topic` field")));
        Ok(match op.as_str() {
            "subscribe" => ClientMsg::Subscribe {
                id,
                topic: topic(self.topic)?,
                since: self.since,
                epoch: self
                    .epoch
                    .map(|e| {
                        Epoch::parse(&e).ok_or_else(|| {
                            fail(format!(
                                "`epoch` must be the 16 hex digits a subscribe ack gave, not `{}`",
                                e.chars().take(32).collect::<String>()
                            ))
                        })
                    })
                    .transpose()?,
            },
            "unsubscribe" => ClientMsg::Unsubscribe {
                id,
                topic: topic(self.topic)?,
            },
            "publish" => ClientMsg::Publish {
                id,
                topic: topic(self.topic)?,
                data: self.data.ok_or_else(|| fail("`publish` needs a `data` field".into()))?,
                idempotency_key: self.idempotency_key,
            },
            "ping" => ClientMsg::Ping { id },
            "auth" => ClientMsg::Auth {
                id,
                token: self.token.ok_or_else(|| fail("`auth` needs a `token` field".into()))?,
            },
            "presence" => ClientMsg::Presence {
                id,
                topic: topic(self.topic)?,
            },
            other => {
                return Err(fail(format!(
                    "unknown op `{other}`; expected one of subscribe, unsubscribe, publish, ping, auth, presence"
                )))
            }
        })
    }
}

/// Decodes one request in the connection's format.
pub fn decode(wire: Wire, frame: &[u8]) -> Result<ClientMsg, DecodeError> {
    match wire {
        Wire::Json => json::decode(frame),
        Wire::Msgpack => msgpack::decode(frame),
        Wire::Raw | Wire::Sse | Wire::SseRaw | Wire::Iframe | Wire::SioTopic | Wire::SioMain => Err(DecodeError {
            id: None,
            error: RequestError::bad_request("raw sockets, SSE and iframe streams carry payloads, not requests"),
        }),
    }
}

/// Encodes a reply as a complete frame in the connection's format.
pub fn encode_reply(wire: Wire, reply: &Reply<'_>) -> bytes::Bytes {
    match wire {
        Wire::Json | Wire::Raw => json::reply_frame(reply),
        Wire::Msgpack => msgpack::reply_frame(reply),
        Wire::Sse | Wire::SseRaw => sse::reply_event(reply),
        // Payloads only: the stream has no way to tell a notice from data.
        Wire::Iframe => bytes::Bytes::new(),
        Wire::SioTopic => socketio::topic_reply_frame(reply),
        Wire::SioMain => socketio::main_reply_frame(reply),
    }
}
