//! The MessagePack protocol: the same maps as JSON (named fields), in binary frames.

use bytes::Bytes;
use rmpv::ValueRef;

use super::data::{self, DataError, MAX_DEPTH};
use super::frame::{FrameBuilder, OpCode};
use super::{transcode, ClientMsg, Fields, Message, Payload, Reply};
use crate::error::{DecodeError, RequestError};

/// Decodes `bytes` as exactly one MessagePack value whose `data` lies
/// `levels` arrays or maps below the top (0: the value is the data; 1: in a
/// request map; 2: in a batch's array of maps).
///
/// The decoder recurses, so its depth is bounded: it reads data nested up to
/// twice [`MAX_DEPTH`], so that the data check refuses what is too deep with
/// the request's id; data nested deeper still is refused here, for the same
/// reason, before the id is known.
pub fn read_value(bytes: &[u8], levels: usize) -> Result<ValueRef<'_>, DataError> {
    // rmpv spends two units of depth per array or map and up to three on a
    // leaf (`str`, `bin` and `ext` count their body).
    let budget = 2 * (levels + 2 * MAX_DEPTH) + 3;
    let mut rest = bytes;
    let value = rmpv::decode::read_value_ref_with_max_depth(&mut rest, budget).map_err(|e| match e {
        rmpv::decode::Error::DepthLimitExceeded => DataError::TooDeep,
        e => DataError::MalformedMsgpack(e.to_string()),
    })?;
    if !rest.is_empty() {
        return Err(DataError::MalformedMsgpack("bytes left after the value".into()));
    }
    Ok(value)
}

/// Decodes one MessagePack request (a map with string keys).
pub fn decode(frame: &[u8]) -> Result<ClientMsg, DecodeError> {
    let bad = |id, message: String| DecodeError {
        id,
        error: RequestError::bad_request(message),
    };
    let value = read_value(frame, 1).map_err(|e| bad(None, e.to_string()))?;
    let ValueRef::Map(entries) = value else {
        return Err(bad(None, "request must be a MessagePack map with an `op` field".into()));
    };
    let field = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(k, ValueRef::String(s) if s.as_str() == Some(name)))
            .map(|(_, v)| v)
    };
    let id = match field("id") {
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad(None, "`id` must be a non-negative integer".into()))?,
        ),
        None => None,
    };
    let string = |name: &str| -> Result<Option<String>, DecodeError> {
        field(name)
            .map(|v| match v {
                ValueRef::String(s) => s.as_str().map(str::to_owned).ok_or(()),
                _ => Err(()),
            })
            .transpose()
            .map_err(|()| bad(id, format!("`{name}` must be a string")))
    };
    let since = field("since")
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| bad(id, "`since` must be a non-negative integer".into()))
        })
        .transpose()?;
    let data = field("data")
        .map(payload)
        .transpose()
        .map_err(|e| bad(id, e.to_string()))?;
    Fields {
        op: string("op")?,
        id,
        topic: string("topic")?,
        since,
        epoch: string("epoch")?,
        data,
        token: string("token")?,
        idempotency_key: string("idempotency_key")?,
    }
    .into_msg()
}

/// Classifies and checks MessagePack data (a request's or batch item's
/// `data`): `str` becomes text, `bin` binary, anything else stays
/// MessagePack; what JSON subscribers could not receive as the same value is
/// refused ([`data::check_msgpack`]).
pub fn payload(value: &ValueRef<'_>) -> Result<Payload, DataError> {
    classify(value, None)
}

/// [`payload`] for a whole body that is one MessagePack value (an HTTP
/// publish): the body itself is kept, not re-encoded.
pub fn body_payload(body: &Bytes) -> Result<Payload, DataError> {
    classify(&read_value(body, 0)?, Some(body))
}

/// The one classification: checks `value`, then keeps `encoded` (its own
/// bytes, when the caller has them) or re-encodes it.
fn classify(value: &ValueRef<'_>, encoded: Option<&Bytes>) -> Result<Payload, DataError> {
    data::check_msgpack(value)?;
    Ok(match value {
        // The check refused any `str` that is not UTF-8, so these bytes are text.
        ValueRef::String(s) => Payload::Text(Bytes::copy_from_slice(s.as_bytes())),
        ValueRef::Binary(b) => Payload::Binary(Bytes::copy_from_slice(b)),
        other => Payload::Msgpack(match encoded {
            Some(bytes) => bytes.clone(),
            None => {
                let mut out = Vec::new();
                // Writing into a Vec cannot fail.
                let _ = rmpv::encode::write_value_ref(&mut out, other);
                Bytes::from(out)
            }
        }),
    })
}

/// Writes `data` as a MessagePack value; JSON is transcoded.
fn write_data(out: &mut Vec<u8>, payload: &Payload) {
    // Writes into a Vec cannot fail.
    match payload {
        Payload::Msgpack(b) => out.extend_from_slice(b),
        Payload::Text(b) => {
            let _ = rmp::encode::write_str(out, std::str::from_utf8(b).unwrap_or_default());
        }
        Payload::Binary(b) => {
            let _ = rmp::encode::write_bin(out, b);
        }
        Payload::Json(b) | Payload::Event(b) => transcode::json_to_msgpack(b, out),
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(out, s);
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    let _ = rmp::encode::write_uint(out, n);
}

/// The `message` frame for `msg` in MessagePack.
pub fn message_frame(msg: &Message) -> Bytes {
    let mut f = FrameBuilder::with_capacity(48 + msg.topic.as_str().len() + msg.payload.len());
    let out = f.body();
    let _ = rmp::encode::write_map_len(out, 5);
    write_str(out, "type");
    write_str(out, "message");
    write_str(out, "topic");
    write_str(out, msg.topic.as_str());
    write_str(out, "seq");
    write_uint(out, msg.seq);
    write_str(out, "ts");
    write_uint(out, msg.ts);
    write_str(out, "data");
    write_data(out, &msg.payload);
    f.finish(OpCode::Binary)
}

/// A reply frame in MessagePack.
pub fn reply_frame(reply: &Reply<'_>) -> Bytes {
    let mut f = FrameBuilder::with_capacity(96);
    let out = f.body();
    match reply {
        Reply::Ack {
            id,
            topic,
            seq,
            epoch,
            recovered,
            duplicate,
        } => {
            let optional = [
                topic.is_some(),
                seq.is_some(),
                epoch.is_some(),
                recovered.is_some(),
                *duplicate,
            ];
            let _ = rmp::encode::write_map_len(out, 2 + optional.iter().filter(|&&b| b).count() as u32);
            write_str(out, "type");
            write_str(out, "ack");
            write_str(out, "id");
            write_uint(out, *id);
            if let Some(t) = topic {
                write_str(out, "topic");
                write_str(out, t);
            }
            if let Some(s) = seq {
                write_str(out, "seq");
                write_uint(out, *s);
            }
            if let Some(e) = epoch {
                write_str(out, "epoch");
                write_str(out, &e.to_string());
            }
            if let Some(r) = recovered {
                write_str(out, "recovered");
                let _ = rmp::encode::write_bool(out, *r);
            }
            if *duplicate {
                write_str(out, "duplicate");
                let _ = rmp::encode::write_bool(out, true);
            }
        }
        Reply::Error { id, code, message } => {
            let _ = rmp::encode::write_map_len(out, 3 + id.is_some() as u32);
            write_str(out, "type");
            write_str(out, "error");
            if let Some(id) = id {
                write_str(out, "id");
                write_uint(out, *id);
            }
            write_str(out, "code");
            write_str(out, code.as_str());
            write_str(out, "message");
            write_str(out, message);
        }
        Reply::Pong { id } => {
            let _ = rmp::encode::write_map_len(out, 1 + id.is_some() as u32);
            write_str(out, "type");
            write_str(out, "pong");
            if let Some(id) = id {
                write_str(out, "id");
                write_uint(out, *id);
            }
        }
        Reply::Gap {
            topic,
            from,
            to,
            reason,
        } => {
            let _ = rmp::encode::write_map_len(out, 5);
            write_str(out, "type");
            write_str(out, "gap");
            write_str(out, "topic");
            write_str(out, topic);
            write_str(out, "from");
            write_uint(out, *from);
            write_str(out, "to");
            write_uint(out, *to);
            write_str(out, "reason");
            write_str(out, reason.as_str());
        }
        Reply::Join { topic, client, count } | Reply::Leave { topic, client, count } => {
            let _ = rmp::encode::write_map_len(out, 4);
            write_str(out, "type");
            write_str(
                out,
                if matches!(reply, Reply::Join { .. }) {
                    "join"
                } else {
                    "leave"
                },
            );
            write_str(out, "topic");
            write_str(out, topic);
            write_str(out, "client");
            write_str(out, client);
            write_str(out, "count");
            write_uint(out, *count as u64);
        }
        Reply::Presence {
            id,
            topic,
            count,
            members,
        } => {
            let _ = rmp::encode::write_map_len(out, 4 + id.is_some() as u32);
            write_str(out, "type");
            write_str(out, "presence");
            if let Some(id) = id {
                write_str(out, "id");
                write_uint(out, *id);
            }
            write_str(out, "topic");
            write_str(out, topic);
            write_str(out, "count");
            write_uint(out, *count as u64);
            write_str(out, "members");
            let _ = rmp::encode::write_array_len(out, members.len() as u32);
            for m in members.iter() {
                write_str(out, m);
            }
        }
    }
    f.finish(OpCode::Binary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::topic::TopicName;
    use rmpv::Value;

    fn encode(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    fn map(pairs: Vec<(&str, Value)>) -> Vec<u8> {
        encode(&Value::Map(
            pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect(),
        ))
    }

    fn body(frame: &Bytes) -> Value {
        let start = if frame[1] & 0x7f == 126 { 4 } else { 2 };
        rmpv::decode::read_value(&mut &frame[start..]).unwrap()
    }

    #[test]
    fn decodes_publish_with_binary_text_and_structured_data() {
        let m = decode(&map(vec![
            ("op", "publish".into()),
            ("topic", "t".into()),
            ("data", Value::Binary(vec![0, 255])),
            ("id", 3.into()),
        ]))
        .unwrap();
        assert_eq!(
            m,
            ClientMsg::Publish {
                id: Some(3),
                topic: "t".into(),
                data: Payload::Binary(Bytes::from_static(&[0, 255])),
                idempotency_key: None
            }
        );
        let m = decode(&map(vec![
            ("op", "publish".into()),
            ("topic", "t".into()),
            ("data", "hi".into()),
        ]))
        .unwrap();
        assert_eq!(
            m,
            ClientMsg::Publish {
                id: None,
                topic: "t".into(),
                data: Payload::text("hi"),
                idempotency_key: None
            }
        );
        let data = Value::Map(vec![("a".into(), 1.into())]);
        let m = decode(&map(vec![
            ("op", "publish".into()),
            ("topic", "t".into()),
            ("data", data.clone()),
        ]))
        .unwrap();
        assert_eq!(
            m,
            ClientMsg::Publish {
                id: None,
                topic: "t".into(),
                data: Payload::Msgpack(Bytes::from(encode(&data))),
                idempotency_key: None
            }
        );
    }

    /// A publish request with id 4 whose `data` is `data`, already encoded.
    fn publish_raw(data: &[u8]) -> Vec<u8> {
        let mut out = map(vec![("op", "publish".into()), ("topic", "t".into()), ("id", 4.into())]);
        out[0] += 1; // one more entry in the fixmap: `data`
        out.extend(encode(&"data".into()));
        out.extend_from_slice(data);
        out
    }

    /// `levels` arrays around `leaf`.
    fn arrays(levels: usize, leaf: Value) -> Value {
        (0..levels).fold(leaf, |v, _| Value::Array(vec![v]))
    }

    /// A `str` holding `bytes`, which need not be UTF-8.
    fn raw_str(bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![0xa0 | bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn data_with_what_json_lacks_or_nested_to_the_limit_is_accepted_as_sent() {
        for data in [
            arrays(64, 1.into()),
            arrays(64, "deep".into()),
            // 62 arrays, a map, and an array as its key: 64 levels.
            arrays(
                62,
                Value::Map(vec![(Value::Array(vec![1.into()]), Value::Binary(vec![1]))]),
            ),
            Value::Map(vec![
                ("b".into(), Value::Binary(vec![1, 2])),
                ("e".into(), Value::Ext(-1, vec![0, 0, 0, 1])),
                ("f".into(), Value::F32(0.1)),
                ("n".into(), Value::F64(f64::NAN)),
                (1.into(), "non-string key".into()),
                ("b".into(), "repeated key".into()),
            ]),
        ] {
            let encoded = encode(&data);
            let m = decode(&publish_raw(&encoded)).unwrap_or_else(|e| panic!("{data}: {}", e.error.message));
            assert_eq!(
                m,
                ClientMsg::Publish {
                    id: Some(4),
                    topic: "t".into(),
                    data: Payload::Msgpack(Bytes::from(encoded)),
                    idempotency_key: None
                }
            );
        }
    }

    #[test]
    fn data_json_cannot_carry_is_refused_naming_why_and_the_id() {
        let mut nested_str = vec![0x92];
        nested_str.extend(encode(&"ok".into()));
        nested_str.extend(raw_str(&[0xff, 0xfe]));
        let mut bad_key = vec![0x81];
        bad_key.extend(raw_str(&[0xc3, 0x28]));
        bad_key.push(0x01);
        let mut bad_str_in_a_key = vec![0x81, 0x91];
        bad_str_in_a_key.extend(raw_str(&[0xe2, 0x82]));
        bad_str_in_a_key.push(0x01);
        for (data, why) in [
            (encode(&arrays(65, 1.into())), "64 levels"),
            (encode(&arrays(65, "deep".into())), "64 levels"),
            (
                encode(&arrays(64, Value::Map(vec![(Value::Array(vec![]), 1.into())]))),
                "64 levels",
            ),
            (encode(&arrays(128, 1.into())), "64 levels"),
            (raw_str(&[0xff]), "UTF-8"),
            (nested_str, "UTF-8"),
            (bad_key, "UTF-8"),
            (bad_str_in_a_key, "UTF-8"),
        ] {
            let e = decode(&publish_raw(&data)).unwrap_err();
            assert_eq!(
                (e.id, e.error.code),
                (Some(4), ErrorCode::BadRequest),
                "{}",
                e.error.message
            );
            assert!(
                e.error.message.contains(why),
                "`{}` should say `{why}`",
                e.error.message
            );
            assert!(e.error.message.contains("`data`"), "{}", e.error.message);
        }
        // Nested past what is read at all: refused as too deep, before the id is known.
        let e = decode(&publish_raw(&encode(&arrays(1000, 1.into())))).unwrap_err();
        assert!(e.error.message.contains("64 levels"), "{}", e.error.message);
    }

    #[test]
    fn errors_name_the_problem_and_keep_the_id() {
        let e = decode(&[0x82, 0xa2]).unwrap_err();
        assert!(
            e.error.message.starts_with("malformed MessagePack"),
            "{}",
            e.error.message
        );
        let e = decode(&encode(&Value::from(5))).unwrap_err();
        assert!(e.error.message.contains("map"));
        let e = decode(&map(vec![("op", "nope".into()), ("id", 4.into())])).unwrap_err();
        assert_eq!((e.id, e.error.code), (Some(4), ErrorCode::BadRequest));
        let e = decode(&map(vec![
            ("op", "subscribe".into()),
            ("topic", 5.into()),
            ("id", 4.into()),
        ]))
        .unwrap_err();
        assert!(e.error.message.contains("`topic` must be a string"));
        let mut trailing = map(vec![("op", "ping".into())]);
        trailing.push(0);
        assert!(decode(&trailing).is_err());
    }

    #[test]
    fn message_frames_keep_binary_binary() {
        let m = Message::new(
            TopicName::parse("t").unwrap(),
            7,
            8,
            Payload::Binary(Bytes::from_static(&[1, 2])),
            None,
        );
        let v = body(&message_frame(&m));
        assert_eq!(v["type"], Value::from("message"));
        assert_eq!(v["seq"], Value::from(7));
        assert_eq!(v["data"], Value::Binary(vec![1, 2]));
    }

    #[test]
    fn json_data_is_transcoded_for_msgpack_subscribers() {
        let m = Message::new(
            TopicName::parse("t").unwrap(),
            1,
            2,
            Payload::Json(Bytes::from_static(br#"{"a":[1,"x",true,null,1.5]}"#)),
            None,
        );
        let v = body(&message_frame(&m));
        assert_eq!(
            v["data"],
            Value::Map(vec![(
                "a".into(),
                Value::Array(vec![1.into(), "x".into(), true.into(), Value::Nil, 1.5.into()])
            )])
        );
    }

    #[test]
    fn replies_are_maps() {
        let v = body(&reply_frame(&Reply::Error {
            id: Some(2),
            code: ErrorCode::BadTopic,
            message: "m",
        }));
        assert_eq!(v["code"], Value::from("bad_topic"));
        assert_eq!(v["id"], Value::from(2));
    }
}
