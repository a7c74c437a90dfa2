//! One Socket.IO socket — a namespace a connection joined — and how what the
//! client sends it is read: a CONNECT's auth payload and recovery point, an
//! event in a topic namespace as a publish, an event in the main namespace as
//! the `/ws` request it stands for.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::error::{ErrorCode, RequestError};
use crate::hub::Hub;
use crate::protocol::socketio::{self as sio, Packet};
use crate::protocol::{json, ClientMsg, Epoch, Payload, Reply};
use crate::registry::{Position, Resume};
use crate::session::Session;
use crate::topic::TopicName;

/// One Socket.IO socket: a namespace joined.
pub(super) struct Socket {
    pub(super) session: Session,
    /// The topic, for a namespace that is one; `None` for the main namespace.
    pub(super) topic: Option<TopicName>,
}

/// The Socket.IO id of a socket (`socket.id`): the fanout session id, which names it in
/// `/api/connections` and the logs too.
pub(super) fn socket_id(session: &Session) -> String {
    format!("s{}", session.id())
}

/// The recovery id (`pid`) a CONNECT answer gives: the one the client sent when its
/// resume was honoured (socket.io-client sets `recovered` when they match), else a new one
/// naming the topic's epoch, `EPOCH-SOCKET`, which the next reconnect resumes in.
pub(super) fn recovery_id(position: Position, asked: Option<&str>, sid: &str) -> String {
    match asked {
        Some(pid) if position.complete => pid.to_owned(),
        _ => format!("{}-{sid}", position.epoch),
    }
}

/// The topic a namespace is; a pattern or bad name is refused, saying what to use instead.
pub(super) fn namespace_topic(ns: &str) -> Result<TopicName, RequestError> {
    if ns.contains(['*', '>']) {
        return Err(RequestError::new(
            ErrorCode::BadTopic,
            format!("namespace `/{ns}` is a pattern; a namespace is one topic — subscribe to patterns on the main namespace with the `subscribe` event"),
        ));
    }
    TopicName::parse(ns).map_err(|e| RequestError::new(ErrorCode::BadTopic, format!("namespace `/{ns}`: {e}")))
}

/// A CONNECT packet's data: the token, and the recovery point of a reconnecting client.
#[derive(Default)]
pub(super) struct ConnectAuth {
    pub(super) token: Option<String>,
    pub(super) pid: Option<String>,
    offset: Option<String>,
}

impl ConnectAuth {
    pub(super) fn parse(data: Option<&RawValue>) -> Result<Self, RequestError> {
        let Some(data) = data else { return Ok(Self::default()) };
        let value: serde_json::Value = serde_json::from_str(data.get())
            .map_err(|e| RequestError::bad_request(format!("the CONNECT data is not JSON: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(RequestError::bad_request(
                "the CONNECT data (the `auth` option) must be an object",
            ));
        };
        let text = |key: &str| -> Result<Option<String>, RequestError> {
            match map.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(RequestError::bad_request(format!("`auth.{key}` must be a string"))),
            }
        };
        Ok(ConnectAuth {
            token: text("token")?,
            pid: text("pid")?,
            offset: text("offset")?,
        })
    }

    /// Where a recovering client resumes: after the seq it last got (its offset), in the
    /// topic's life its pid names. Anything unreadable is a fresh start.
    pub(super) fn resume(&self) -> Option<Resume> {
        let pid = self.pid.as_deref()?;
        let epoch = Epoch::parse(pid.split_once('-').map_or(pid, |(e, _)| e))?;
        let since = self.offset.as_deref()?.parse::<u64>().ok()?;
        Some(Resume {
            since,
            epoch: Some(epoch),
        })
    }
}

impl Socket {
    /// Handles an event the client emitted in this namespace. True if the client keeps
    /// publishing over its rate limit (the connection is to close).
    pub(super) async fn event(&mut self, hub: &Arc<Hub>, packet: &Packet, attachments: Vec<Bytes>) -> bool {
        let ns = packet.namespace.as_str();
        let Some((name, args)) = event_args(packet) else {
            // The reference server closes the connection on a malformed event; so do we
            // (`Engine::dispatch` checks the same before calling here).
            return false;
        };
        let rest = &args[1..];
        match self.topic.clone() {
            Some(topic) => self.emit(hub, &topic, &name, rest, &attachments, packet.ack).await,
            None => match main_request(&name, rest, &attachments, packet.ack) {
                Ok(msg) => self.session.handle_msg(msg).await,
                Err(e) => self.answer_error(hub, ns, packet.ack, &e),
            },
        }
        self.session.rate_abused()
    }

    /// Publishes an event emitted in a topic namespace: `message` with one argument as that
    /// argument (so every other way in sees the value itself), any other as an event payload.
    async fn emit(
        &mut self,
        hub: &Arc<Hub>,
        topic: &TopicName,
        name: &str,
        args: &[&RawValue],
        attachments: &[Bytes],
        ack: Option<u64>,
    ) {
        let payload = match (name, args) {
            ("message", [one]) => data_payload(one, attachments),
            _ if args.iter().any(|a| a.get().contains("\"_placeholder\"")) && !attachments.is_empty() => Err(
                RequestError::bad_request("binary attachments are published as the one argument of a `message` event"),
            ),
            _ => Ok(sio::event_payload(name, args)),
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => return self.answer_error(hub, topic.as_str(), ack, &e),
        };
        let queue = Arc::clone(self.session.queue());
        let hub = Arc::clone(hub);
        let ns = topic.as_str().to_owned();
        self.session
            .publish_then(topic, payload, move |outcome| {
                let reply = match &outcome {
                    Ok(p) => Reply::Ack {
                        id: ack.unwrap_or(0),
                        topic: Some(&ns),
                        seq: Some(p.seq),
                        epoch: None,
                        recovered: None,
                        duplicate: p.duplicate,
                    },
                    Err(e) => {
                        hub.count_protocol_error(e.code.as_str());
                        Reply::Error {
                            id: ack,
                            code: e.code,
                            message: &e.message,
                        }
                    }
                };
                match ack {
                    Some(id) => {
                        queue.push_reply(sio::ack_frame(&ns, id, &reply));
                    }
                    None if outcome.is_err() => {
                        queue.push_reply(sio::notice_frame(&ns, &reply));
                    }
                    None => {}
                }
            })
            .await;
    }

    /// Answers a refused event: its ack with `{error}`, or an `error` event without one.
    fn answer_error(&self, hub: &Hub, ns: &str, ack: Option<u64>, e: &RequestError) {
        hub.count_protocol_error(e.code.as_str());
        let reply = Reply::Error {
            id: ack,
            code: e.code,
            message: &e.message,
        };
        let frame = match ack {
            Some(id) => sio::ack_frame(ns, id, &reply),
            None => sio::notice_frame(ns, &reply),
        };
        self.session.queue().push_reply(frame);
    }
}

/// An event's name and its whole data array (`[name, ...args]`); `None` if malformed.
pub(super) fn event_args(packet: &Packet) -> Option<(String, Vec<&RawValue>)> {
    let args = serde_json::from_str::<Vec<&RawValue>>(packet.data.as_deref()?.get()).ok()?;
    let name = serde_json::from_str::<String>(args.first()?.get()).ok()?;
    Some((name, args))
}

/// The payload of a `message` argument or `publish` data: a placeholder is its binary
/// attachment, anything else JSON as `/ws` takes it.
fn data_payload(value: &RawValue, attachments: &[Bytes]) -> Result<Payload, RequestError> {
    #[derive(serde::Deserialize)]
    struct Placeholder {
        _placeholder: bool,
        num: usize,
    }
    if let Ok(p) = serde_json::from_str::<Placeholder>(value.get()) {
        if p._placeholder {
            return attachments
                .get(p.num)
                .map(|b| Payload::Binary(b.clone()))
                .ok_or_else(|| RequestError::bad_request(format!("attachment {} was not sent", p.num)));
        }
    }
    json::payload(value.get()).map_err(|e| RequestError::bad_request(e.to_string()))
}

/// Reads a main-namespace event as the `/ws` request it stands for.
fn main_request(
    name: &str,
    args: &[&RawValue],
    attachments: &[Bytes],
    id: Option<u64>,
) -> Result<ClientMsg, RequestError> {
    let string = |i: usize, what: &str| -> Result<String, RequestError> {
        args.get(i)
            .and_then(|a| serde_json::from_str::<String>(a.get()).ok())
            .ok_or_else(|| RequestError::bad_request(format!("`{name}` needs {what} (a string) as argument {}", i + 1)))
    };
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct SubscribeOptions {
        since: Option<u64>,
        epoch: Option<String>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct PublishOptions {
        idempotency_key: Option<String>,
    }
    fn options<T: serde::de::DeserializeOwned + Default>(
        name: &str,
        arg: Option<&&RawValue>,
    ) -> Result<T, RequestError> {
        match arg {
            None => Ok(T::default()),
            Some(a) if a.get() == "null" => Ok(T::default()),
            Some(a) => {
                serde_json::from_str(a.get()).map_err(|e| RequestError::bad_request(format!("`{name}` options: {e}")))
            }
        }
    }
    Ok(match name {
        "subscribe" => {
            let o: SubscribeOptions = options(name, args.get(1))?;
            let epoch = o
                .epoch
                .map(|e| {
                    Epoch::parse(&e).ok_or_else(|| {
                        RequestError::bad_request("`epoch` must be the 16 hex digits a subscribe ack gave")
                    })
                })
                .transpose()?;
            ClientMsg::Subscribe {
                id,
                topic: string(0, "a topic or pattern")?,
                since: o.since,
                epoch,
            }
        }
        "unsubscribe" => ClientMsg::Unsubscribe {
            id,
            topic: string(0, "the topic or pattern subscribed")?,
        },
        "publish" => {
            let topic = string(0, "a topic")?;
            let data = args
                .get(1)
                .ok_or_else(|| RequestError::bad_request("`publish` needs the data as argument 2"))?;
            let o: PublishOptions = options(name, args.get(2))?;
            ClientMsg::Publish {
                id,
                topic,
                data: data_payload(data, attachments)?,
                idempotency_key: o.idempotency_key,
            }
        }
        "presence" => ClientMsg::Presence {
            id,
            topic: string(0, "a topic")?,
        },
        "auth" => ClientMsg::Auth {
            id,
            token: string(0, "the token")?,
        },
        "ping" => ClientMsg::Ping { id },
        other => {
            return Err(RequestError::bad_request(format!(
                "unknown event `{other}` on the main namespace; expected subscribe, unsubscribe, publish, presence, auth or ping (or join a topic's namespace to emit events there)"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn main_events_read_as_ws_requests() {
        let t = raw("\"quotes.>\"");
        let o = raw(r#"{"since":5}"#);
        let m = main_request("subscribe", &[&t, &o], &[], Some(3)).unwrap();
        assert_eq!(
            m,
            ClientMsg::Subscribe {
                id: Some(3),
                topic: "quotes.>".into(),
                since: Some(5),
                epoch: None
            }
        );
        let d = raw(r#"{"a":1}"#);
        let m = main_request("publish", &[&t, &d], &[], None).unwrap();
        assert!(matches!(
            m,
            ClientMsg::Publish {
                data: Payload::Json(_),
                ..
            }
        ));
        let e = main_request("publish", &[&t], &[], None).unwrap_err();
        assert!(e.message.contains("needs the data"), "{}", e.message);
        let e = main_request("nope", &[], &[], None).unwrap_err();
        assert!(e.message.contains("unknown event `nope`"), "{}", e.message);
        let bad = raw(r#"{"sinse":1}"#);
        let e = main_request("subscribe", &[&t, &bad], &[], None).unwrap_err();
        assert!(e.message.contains("sinse"), "{}", e.message);
    }

    #[test]
    fn placeholders_become_their_attachment() {
        let p = raw(r#"{"_placeholder":true,"num":0}"#);
        let b = Bytes::from_static(&[1, 2]);
        assert_eq!(data_payload(&p, std::slice::from_ref(&b)).unwrap(), Payload::Binary(b));
        assert!(data_payload(&p, &[]).unwrap_err().message.contains("attachment 0"));
        assert_eq!(data_payload(&raw("\"x\""), &[]).unwrap(), Payload::text("x"));
    }

    #[test]
    fn namespaces_are_topics_not_patterns() {
        assert!(namespace_topic("chat.room1").is_ok());
        let e = namespace_topic("quotes.>").unwrap_err();
        assert!(e.message.contains("main namespace"), "{}", e.message);
        assert_eq!(namespace_topic("bad topic").unwrap_err().code, ErrorCode::BadTopic);
    }

    #[test]
    fn recovery_needs_a_pid_and_an_offset() {
        let a = ConnectAuth::parse(Some(&raw(r#"{"token":"t","pid":"00000000000000ff-s3","offset":"12"}"#))).unwrap();
        assert_eq!(a.token.as_deref(), Some("t"));
        let r = a.resume().unwrap();
        assert_eq!((r.since, r.epoch), (12, Epoch::parse("ff")));
        let a = ConnectAuth::parse(Some(&raw(r#"{"pid":"zz","offset":"12"}"#))).unwrap();
        assert!(a.resume().is_none());
        assert!(ConnectAuth::parse(Some(&raw("[1]"))).is_err());
        assert!(ConnectAuth::parse(Some(&raw(r#"{"token":1}"#))).is_err());
    }
}
