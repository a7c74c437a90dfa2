//! The JSON protocol: requests in text frames, replies and messages out.

use std::io::Write;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::data::{self, DataError};
use super::frame::{FrameBuilder, OpCode};
use super::{transcode, ClientMsg, Fields, Message, Payload, Reply};
use crate::error::{DecodeError, RequestError};

/// The request as raw JSON pieces; each is checked on its own so the error can name the field.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    op: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    topic: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    since: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    epoch: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    token: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    idempotency_key: Option<&'a RawValue>,
}

/// Keeps a present `null` as `Some` (for `data`), where `Option` alone would turn it into `None`.
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Decodes one JSON request.
pub fn decode(frame: &[u8]) -> Result<ClientMsg, DecodeError> {
    let bad = |id, message: String| DecodeError {
        id,
        error: RequestError::bad_request(message),
    };
    let text = std::str::from_utf8(frame).map_err(|_| bad(None, "request is not valid UTF-8".into()))?;
    if !text.trim_start().starts_with('{') {
        return Err(bad(None, "request must be a JSON object with an `op` field".into()));
    }
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            bad(None, "request must be a JSON object with an `op` field".into())
        } else {
            bad(None, format!("malformed JSON: {e}"))
        }
    })?;
    let id = match env.id {
        Some(raw) => Some(
            serde_json::from_str::<u64>(raw.get())
                .map_err(|_| bad(None, "`id` must be a non-negative integer".into()))?,
        ),
        None => None,
    };
    let string = |raw: Option<&RawValue>, name: &str| -> Result<Option<String>, DecodeError> {
        raw.map(|r| serde_json::from_str::<String>(r.get()).map_err(|_| bad(id, format!("`{name}` must be a string"))))
            .transpose()
    };
    let since = env
        .since
        .map(|r| {
            serde_json::from_str::<u64>(r.get()).map_err(|_| bad(id, "`since` must be a non-negative integer".into()))
        })
        .transpose()?;
    let data = env
        .data
        .map(|raw| payload(raw.get()))
        .transpose()
        .map_err(|e| bad(id, e.to_string()))?;
    Fields {
        op: string(env.op, "op")?,
        id,
        topic: string(env.topic, "topic")?,
        since,
        epoch: string(env.epoch, "epoch")?,
        data,
        token: string(env.token, "token")?,
        idempotency_key: string(env.idempotency_key, "idempotency_key")?,
    }
    .into_msg()
}

/// Classifies and checks JSON data (a request's or batch item's `data`, or a
/// whole HTTP body, whitespace around it allowed): a string becomes text,
/// anything else stays JSON as written; what MessagePack subscribers could
/// not receive as the same value is refused ([`data::check_json`]).
pub fn payload(raw: &str) -> Result<Payload, DataError> {
    Ok(match data::check_json(raw)? {
        Some(text) => Payload::text(text),
        None => Payload::Json(Bytes::copy_from_slice(
            raw.trim_matches([' ', '\t', '\n', '\r']).as_bytes(),
        )),
    })
}

/// Writes `data` as a JSON value; binary becomes a base64 string.
pub(crate) fn write_data(out: &mut Vec<u8>, payload: &Payload) {
    match payload {
        Payload::Json(b) => out.extend_from_slice(b),
        Payload::Text(b) => write_str(out, std::str::from_utf8(b).unwrap_or_default()),
        Payload::Binary(b) => {
            out.push(b'"');
            out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(b).as_bytes());
            out.push(b'"');
        }
        Payload::Msgpack(b) => transcode::msgpack_to_json(b, out),
    }
}

/// Writes `s` as an escaped JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail, and a &str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The `message` frame for `msg` in JSON.
pub fn message_frame(msg: &Message) -> Bytes {
    let mut f = FrameBuilder::with_capacity(64 + msg.topic.as_str().len() + msg.payload.len() * 4 / 3);
    write_message(f.body(), msg);
    f.finish(OpCode::Text)
}

/// Appends the `message` object for `msg` (the frame body, also used by SSE and the HTTP API).
pub fn write_message(out: &mut Vec<u8>, msg: &Message) {
    // Topic names hold only characters that need no JSON escaping.
    out.extend_from_slice(b"{\"type\":\"message\",\"topic\":\"");
    out.extend_from_slice(msg.topic.as_str().as_bytes());
    let _ = write!(out, "\",\"seq\":{},\"ts\":{},\"data\":", msg.seq, msg.ts);
    write_data(out, &msg.payload);
    if matches!(msg.payload, Payload::Binary(_)) {
        out.extend_from_slice(b",\"encoding\":\"base64\"");
    }
    out.push(b'}');
}

/// A reply frame in JSON.
pub fn reply_frame(reply: &Reply<'_>) -> Bytes {
    let mut f = FrameBuilder::with_capacity(96);
    write_reply(f.body(), reply);
    f.finish(OpCode::Text)
}

/// Appends the JSON object of a reply (the frame body, also used by SSE).
pub fn write_reply(out: &mut Vec<u8>, reply: &Reply<'_>) {
    match reply {
        Reply::Ack {
            id,
            topic,
            seq,
            epoch,
            recovered,
            duplicate,
        } => {
            let _ = write!(out, "{{\"type\":\"ack\",\"id\":{id}");
            if let Some(t) = topic {
                out.extend_from_slice(b",\"topic\":");
                write_str(out, t);
            }
            if let Some(s) = seq {
                let _ = write!(out, ",\"seq\":{s}");
            }
            if let Some(e) = epoch {
                let _ = write!(out, ",\"epoch\":\"{e}\"");
            }
            if let Some(r) = recovered {
                let _ = write!(out, ",\"recovered\":{r}");
            }
            if *duplicate {
                out.extend_from_slice(b",\"duplicate\":true");
            }
        }
        Reply::Error { id, code, message } => {
            out.extend_from_slice(b"{\"type\":\"error\"");
            if let Some(id) = id {
                let _ = write!(out, ",\"id\":{id}");
            }
            let _ = write!(out, ",\"code\":\"{code}\",\"message\":");
            write_str(out, message);
        }
        Reply::Pong { id } => {
            out.extend_from_slice(b"{\"type\":\"pong\"");
            if let Some(id) = id {
                let _ = write!(out, ",\"id\":{id}");
            }
        }
        Reply::Gap {
            topic,
            from,
            to,
            reason,
        } => {
            out.extend_from_slice(b"{\"type\":\"gap\",\"topic\":");
            write_str(out, topic);
            let _ = write!(out, ",\"from\":{from},\"to\":{to},\"reason\":\"{}\"", reason.as_str());
        }
        Reply::Join { topic, client, count } | Reply::Leave { topic, client, count } => {
            let kind = if matches!(reply, Reply::Join { .. }) {
                "join"
            } else {
                "leave"
            };
            let _ = write!(out, "{{\"type\":\"{kind}\",\"topic\":");
            write_str(out, topic);
            out.extend_from_slice(b",\"client\":");
            write_str(out, client);
            let _ = write!(out, ",\"count\":{count}");
        }
        Reply::Presence {
            id,
            topic,
            count,
            members,
        } => {
            out.extend_from_slice(b"{\"type\":\"presence\"");
            if let Some(id) = id {
                let _ = write!(out, ",\"id\":{id}");
            }
            out.extend_from_slice(b",\"topic\":");
            write_str(out, topic);
            let _ = write!(out, ",\"count\":{count},\"members\":[");
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, m);
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::protocol::GapReason;
    use crate::topic::TopicName;

    fn body(frame: &Bytes) -> serde_json::Value {
        let start = if frame[1] & 0x7f == 126 { 4 } else { 2 };
        serde_json::from_slice(&frame[start..]).unwrap()
    }

    #[test]
    fn a_publish_may_carry_an_idempotency_key() {
        let m = decode(br#"{"op":"publish","topic":"t","data":1,"idempotency_key":"order-17"}"#).unwrap();
        assert!(
            matches!(&m, ClientMsg::Publish { idempotency_key: Some(k), .. } if k == "order-17"),
            "{m:?}"
        );
        let e = decode(br#"{"op":"publish","topic":"t","data":1,"idempotency_key":5,"id":2}"#).unwrap_err();
        assert_eq!(e.id, Some(2));
        assert!(
            e.error.message.contains("`idempotency_key` must be a string"),
            "{}",
            e.error.message
        );
    }

    #[test]
    fn decodes_each_op() {
        assert_eq!(
            decode(br#"{"op":"subscribe","topic":"q.*","since":120,"id":1}"#).unwrap(),
            ClientMsg::Subscribe {
                id: Some(1),
                topic: "q.*".into(),
                since: Some(120),
                epoch: None,
            }
        );
        assert_eq!(
            decode(br#"{"op":"subscribe","topic":"q","since":1,"epoch":"00000000000000ff"}"#).unwrap(),
            ClientMsg::Subscribe {
                id: None,
                topic: "q".into(),
                since: Some(1),
                epoch: crate::protocol::Epoch::parse("ff"),
            }
        );
        let e = decode(br#"{"op":"subscribe","topic":"q","since":1,"epoch":"zz","id":4}"#).unwrap_err();
        assert_eq!(e.id, Some(4));
        assert!(e.error.message.contains("`epoch` must be"), "{}", e.error.message);
        assert_eq!(
            decode(br#"{"op":"unsubscribe","topic":"q.*"}"#).unwrap(),
            ClientMsg::Unsubscribe {
                id: None,
                topic: "q.*".into()
            }
        );
        assert_eq!(
            decode(br#"{"op":"publish","topic":"c","data":{"user":"a"},"id":3}"#).unwrap(),
            ClientMsg::Publish {
                id: Some(3),
                topic: "c".into(),
                data: Payload::Json(Bytes::from_static(br#"{"user":"a"}"#)),
                idempotency_key: None
            }
        );
        assert_eq!(
            decode(br#"{"op":"ping","id":4}"#).unwrap(),
            ClientMsg::Ping { id: Some(4) }
        );
        assert_eq!(
            decode(br#"{"op":"auth","token":"x"}"#).unwrap(),
            ClientMsg::Auth {
                id: None,
                token: "x".into()
            }
        );
    }

    #[test]
    fn string_data_becomes_text_and_null_stays_json() {
        let m = decode(br#"{"op":"publish","topic":"c","data":"h\u00e9"}"#).unwrap();
        assert_eq!(
            m,
            ClientMsg::Publish {
                id: None,
                topic: "c".into(),
                data: Payload::text("hé"),
                idempotency_key: None
            }
        );
        let m = decode(br#"{"op":"publish","topic":"c","data":null}"#).unwrap();
        assert_eq!(
            m,
            ClientMsg::Publish {
                id: None,
                topic: "c".into(),
                data: Payload::Json(Bytes::from_static(b"null")),
                idempotency_key: None
            }
        );
    }

    #[test]
    fn errors_name_the_problem_and_keep_the_id() {
        let e = decode(b"{not json").unwrap_err();
        assert_eq!(e.id, None);
        assert!(e.error.message.starts_with("malformed JSON"), "{}", e.error.message);
        let e = decode(b"[1,2]").unwrap_err();
        assert!(e.error.message.contains("JSON object"));
        let e = decode(br#"{"op":"fly","id":7}"#).unwrap_err();
        assert_eq!(e.id, Some(7));
        assert!(e.error.message.contains("unknown op `fly`"));
        let e = decode(br#"{"op":"publish","topic":"a","id":8}"#).unwrap_err();
        assert_eq!((e.id, e.error.code), (Some(8), ErrorCode::BadRequest));
        assert!(e.error.message.contains("`data`"));
        let e = decode(br#"{"op":"subscribe","id":9}"#).unwrap_err();
        assert!(e.error.message.contains("`topic`"));
        let e = decode(br#"{"op":"subscribe","topic":"a","since":"x","id":9}"#).unwrap_err();
        assert_eq!(e.id, Some(9));
        assert!(e.error.message.contains("`since`"));
        let e = decode(br#"{"topic":"a"}"#).unwrap_err();
        assert!(e.error.message.contains("missing field `op`"));
        let e = decode(br#"{"op":"ping","id":-1}"#).unwrap_err();
        assert!(e.error.message.contains("`id`"));
    }

    /// `levels` arrays around `leaf`.
    fn arrays(levels: usize, leaf: &str) -> String {
        format!("{}{leaf}{}", "[".repeat(levels), "]".repeat(levels))
    }

    /// `levels` objects around `leaf`.
    fn objects(levels: usize, leaf: &str) -> String {
        format!("{}{leaf}{}", r#"{"k":"#.repeat(levels), "}".repeat(levels))
    }

    #[test]
    fn data_every_format_carries_is_accepted_as_written() {
        for data in [
            arrays(64, "1"),
            objects(64, r#""x""#),
            // Past 64 bits, and below the smallest float, a number is the float a reader reads.
            "[18446744073709551616,1e-400,-0,1e308,-1.7976931348623157e308]".into(),
            r#"{"a":1,"a":2}"#.into(),
            r#"{"\u00e9\ud83d\ude00":"\u0000\/"}"#.into(),
        ] {
            assert_eq!(
                payload(&data).unwrap(),
                Payload::Json(Bytes::from(data.clone())),
                "{data}"
            );
        }
        assert_eq!(payload(r#""\ud83d\ude00""#).unwrap(), Payload::text("\u{1f600}"));
    }

    #[test]
    fn data_msgpack_cannot_carry_is_refused_naming_why() {
        for (data, why) in [
            (arrays(65, "1"), "64 levels"),
            (objects(65, "1"), "64 levels"),
            (arrays(128, "1"), "64 levels"),
            (arrays(100_000, "1"), "64 levels"),
            ("1e400".into(), "64-bit float"),
            ("[-1e400]".into(), "64-bit float"),
            (r#"{"a":{"b":1E400}}"#.into(), "64-bit float"),
            (format!("1{}", "0".repeat(400)), "64-bit float"),
            (r#""\ud800""#.into(), "surrogate"),
            (r#"["x\udc00"]"#.into(), "surrogate"),
            (r#"{"\ud800":1}"#.into(), "surrogate"),
        ] {
            let e = payload(&data).unwrap_err().to_string();
            let shown = &data[..data.len().min(40)];
            assert!(e.contains(why), "{shown}: `{e}` should say `{why}`");
            assert!(e.contains("`data`"), "{shown}: `{e}` should name `data`");
        }
    }

    #[test]
    fn a_refused_publish_keeps_its_id() {
        let e = decode(br#"{"op":"publish","topic":"t","id":5,"data":[1e400]}"#).unwrap_err();
        assert_eq!((e.id, e.error.code), (Some(5), ErrorCode::BadRequest));
        let deep = format!(r#"{{"op":"publish","topic":"t","id":6,"data":{}}}"#, arrays(200, "0"));
        let e = decode(deep.as_bytes()).unwrap_err();
        assert_eq!((e.id, e.error.code), (Some(6), ErrorCode::BadRequest));
        assert!(e.error.message.contains("64 levels"), "{}", e.error.message);
    }

    #[test]
    fn a_whole_body_is_data_without_its_surrounding_whitespace() {
        assert_eq!(
            payload(" \n[1, 2]\t").unwrap(),
            Payload::Json(Bytes::from_static(b"[1, 2]"))
        );
        assert_eq!(payload(" \"a\" ").unwrap(), Payload::text("a"));
        assert!(payload("[1] 2").unwrap_err().to_string().contains("malformed JSON"));
        assert!(payload("{").unwrap_err().to_string().contains("malformed JSON"));
    }

    #[test]
    fn message_frames_carry_topic_seq_ts_and_data() {
        let topic = TopicName::parse("quotes.X").unwrap();
        let m = Message::new(
            topic.clone(),
            121,
            99,
            Payload::Json(Bytes::from_static(b"{\"p\":1.5}")),
            None,
        );
        assert_eq!(
            body(&message_frame(&m)),
            serde_json::json!({"type":"message","topic":"quotes.X","seq":121,"ts":99,"data":{"p":1.5}})
        );
        let m = Message::new(topic.clone(), 1, 2, Payload::text("a\"b"), None);
        assert_eq!(body(&message_frame(&m))["data"], "a\"b");
        let m = Message::new(topic, 1, 2, Payload::Binary(Bytes::from_static(&[0xff, 0])), None);
        let v = body(&message_frame(&m));
        assert_eq!(
            (v["data"].as_str(), v["encoding"].as_str()),
            (Some("/wA="), Some("base64"))
        );
    }

    #[test]
    fn replies_encode_every_field() {
        let v = body(&reply_frame(&Reply::Ack {
            id: 1,
            topic: Some("a.*"),
            seq: Some(5),
            epoch: crate::protocol::Epoch::parse("1f"),
            recovered: Some(false),
            duplicate: false,
        }));
        assert_eq!(
            v,
            serde_json::json!({"type":"ack","id":1,"topic":"a.*","seq":5,"epoch":"000000000000001f","recovered":false})
        );
        let v = body(&reply_frame(&Reply::Error {
            id: Some(3),
            code: ErrorCode::Forbidden,
            message: "no \"way\"",
        }));
        assert_eq!(
            v,
            serde_json::json!({"type":"error","id":3,"code":"forbidden","message":"no \"way\""})
        );
        let v = body(&reply_frame(&Reply::Pong { id: None }));
        assert_eq!(v, serde_json::json!({"type":"pong"}));
        let v = body(&reply_frame(&Reply::Gap {
            topic: "t",
            from: 3,
            to: 9,
            reason: GapReason::SlowConsumer,
        }));
        assert_eq!(
            v,
            serde_json::json!({"type":"gap","topic":"t","from":3,"to":9,"reason":"slow_consumer"})
        );
    }
}
