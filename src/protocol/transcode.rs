//! Re-encoding published data between JSON and MessagePack, done once per
//! message when a subscriber speaks the other format.
//!
//! MessagePack has types JSON lacks: `bin` and `ext` become base64 strings,
//! non-string map keys become their JSON text, and NaN/infinity become `null`.

use base64::Engine;
use rmpv::Value;
use serde_json::Value as Json;

/// Appends the JSON form of a MessagePack value.
pub fn msgpack_to_json(bytes: &[u8], out: &mut Vec<u8>) {
    // The bytes were encoded by us from a decoded value, so they decode again.
    let json = match rmpv::decode::read_value(&mut &bytes[..]) {
        Ok(v) => to_json(v),
        Err(_) => Json::Null,
    };
    let _ = serde_json::to_writer(out, &json);
}

/// Appends the MessagePack form of a JSON value.
pub fn json_to_msgpack(bytes: &[u8], out: &mut Vec<u8>) {
    // The bytes passed serde_json's own validation when they were published.
    let value: Json = serde_json::from_slice(bytes).unwrap_or(Json::Null);
    let _ = rmpv::encode::write_value(out, &from_json(value));
}

fn to_json(v: Value) -> Json {
    let b64 = |b: &[u8]| Json::String(base64::engine::general_purpose::STANDARD.encode(b));
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::from(u),
            (_, Some(s)) => Json::from(s),
            _ => Json::Null,
        },
        Value::F32(f) => serde_json::Number::from_f64(f as f64).map_or(Json::Null, Json::Number),
        Value::F64(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        Value::String(s) => match s.into_str() {
            Some(s) => Json::String(s),
            None => Json::Null,
        },
        Value::Binary(b) => b64(&b),
        Value::Ext(_, b) => b64(&b),
        Value::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Value::Map(pairs) => Json::Object(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => s.into_str().unwrap_or_default(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

fn from_json(v: Json) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(b),
        Json::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (_, Some(i), _) => Value::from(i),
            (_, _, Some(f)) => Value::F64(f),
            _ => Value::Nil,
        },
        Json::String(s) => Value::from(s),
        Json::Array(items) => Value::Array(items.into_iter().map(from_json).collect()),
        Json::Object(map) => Value::Map(map.into_iter().map(|(k, v)| (Value::from(k), from_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_json_through_msgpack() {
        let src = br#"{"a":[1,-2,"x",true,null,2.5],"b":{"c":"d"}}"#;
        let mut mp = Vec::new();
        json_to_msgpack(src, &mut mp);
        let mut back = Vec::new();
        msgpack_to_json(&mp, &mut back);
        let a: Json = serde_json::from_slice(src).unwrap();
        let b: Json = serde_json::from_slice(&back).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn binary_inside_msgpack_becomes_base64_in_json() {
        let mut mp = Vec::new();
        rmpv::encode::write_value(&mut mp, &Value::Map(vec![("k".into(), Value::Binary(vec![1, 2, 3]))])).unwrap();
        let mut out = Vec::new();
        msgpack_to_json(&mp, &mut out);
        assert_eq!(out, br#"{"k":"AQID"}"#);
    }
}
