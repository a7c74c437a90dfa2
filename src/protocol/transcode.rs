//! Re-encoding published data between JSON and MessagePack, done once per
//! message when a subscriber speaks the other format.
//!
//! Only data the checks in [`super::data`] accepted gets here, so every value
//! has a counterpart and nothing is lost on the way; what changes is what
//! docs/protocol.md lists ("Data across formats"), each time into what a
//! normal reader of the other format reads:
//!
//! - MessagePack `bin` and `ext` become base64 strings (`ext`: its data),
//!   NaN and infinities `null`, 32-bit floats the same number as 64-bit
//!   ones, and a non-string map key its JSON text;
//! - JSON numbers beyond 64-bit integers become the nearest 64-bit float
//!   (what JavaScript's `JSON.parse` reads);
//! - a key met twice in one object or map is kept once, where it first
//!   appeared, with its last value (what `JSON.parse` and decoders into maps
//!   read); key order is otherwise kept.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::io::Write;

use base64::Engine;
use indexmap::IndexMap;
use rmpv::{Value, ValueRef};
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};

/// Appends the JSON form of a MessagePack value.
pub fn msgpack_to_json(bytes: &[u8], out: &mut Vec<u8>) {
    match rmpv::decode::read_value_ref(&mut &bytes[..]) {
        Ok(value) => write_json(out, &value),
        // Unreachable: the bytes are an accepted value, the publisher's or our
        // own encoding of one, nested far less than the decoder's limit. Kept
        // so that anything else degrades to `null` rather than panicking, and says so.
        Err(e) => {
            tracing::warn!(error = %e, "MessagePack data could not be read for a JSON subscriber; sent as null");
            out.extend_from_slice(b"null");
        }
    }
}

/// Appends the MessagePack form of a JSON value.
pub fn json_to_msgpack(bytes: &[u8], out: &mut Vec<u8>) {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match (&mut de).deserialize_any(ToMsgpack) {
        Ok(value) => {
            // Writing into a Vec cannot fail.
            let _ = rmpv::encode::write_value(out, &value);
        }
        // Unreachable: `data::check_json` parsed these bytes with the same
        // parser and refused everything it cannot read (nesting past its
        // limit, numbers past f64, lone surrogates). Kept so that anything
        // else degrades to nil rather than panicking, and says so.
        Err(e) => {
            tracing::warn!(error = %e, "JSON data could not be read for a MessagePack subscriber; sent as nil");
            out.push(0xc0);
        }
    }
}

/// Writes `value` as JSON, by the rules in the module docs.
fn write_json(out: &mut Vec<u8>, value: &ValueRef<'_>) {
    // Writes into a Vec cannot fail.
    match value {
        ValueRef::Nil => out.extend_from_slice(b"null"),
        ValueRef::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        ValueRef::Integer(i) => {
            let _ = match (i.as_u64(), i.as_i64()) {
                (Some(u), _) => write!(out, "{u}"),
                (_, Some(s)) => write!(out, "{s}"),
                // Unreachable: an rmpv integer is always a u64 or an i64.
                _ => out.write_all(b"null"),
            };
        }
        // serde_json writes the shortest text that reads back as the same
        // float, and `null` for NaN and infinities.
        ValueRef::F32(f) => {
            let _ = serde_json::to_writer(&mut *out, &f64::from(*f));
        }
        ValueRef::F64(f) => {
            let _ = serde_json::to_writer(&mut *out, f);
        }
        ValueRef::String(s) => write_string(out, &text(*s)),
        ValueRef::Binary(b) | ValueRef::Ext(_, b) => {
            out.push(b'"');
            out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(b).as_bytes());
            out.push(b'"');
        }
        ValueRef::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item);
            }
            out.push(b']');
        }
        ValueRef::Map(entries) => {
            let entries = last_wins(entries.iter().map(|(k, v)| (key_text(k), v)).collect());
            out.push(b'{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_json(out, value);
            }
            out.push(b'}');
        }
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail, and a &str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A `str`'s text. `data::check_msgpack` refused every `str` that is not
/// UTF-8, so the lossy arm is only a defensive path.
fn text(s: rmpv::Utf8StringRef<'_>) -> Cow<'_, str> {
    match s.into_str() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(String::from_utf8_lossy(s.as_bytes()).into_owned()),
    }
}

/// A map key as a JSON object key: a `str` is itself, anything else its JSON text.
fn key_text<'a>(key: &ValueRef<'a>) -> Cow<'a, str> {
    match key {
        ValueRef::String(s) => text(*s),
        other => {
            let mut json = Vec::new();
            write_json(&mut json, other);
            // `write_json` writes UTF-8 only; the lossy arm is never taken.
            match String::from_utf8(json) {
                Ok(s) => Cow::Owned(s),
                Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
            }
        }
    }
}

/// The entries with each key once, where it first appeared, with its last value.
fn last_wins<K: Hash + Eq, V>(entries: Vec<(K, V)>) -> Vec<(K, V)> {
    if !repeats_a_key(&entries) {
        return entries;
    }
    let mut map = IndexMap::with_capacity(entries.len());
    for (k, v) in entries {
        // On a key already present, IndexMap keeps its place and replaces its value.
        map.insert(k, v);
    }
    map.into_iter().collect()
}

fn repeats_a_key<K: Hash + Eq, V>(entries: &[(K, V)]) -> bool {
    // Most objects have a handful of keys, where comparing beats hashing.
    if entries.len() <= 16 {
        return entries
            .iter()
            .enumerate()
            .any(|(i, (k, _))| entries[..i].iter().any(|(seen, _)| seen == k));
    }
    let mut seen = HashSet::with_capacity(entries.len());
    entries.iter().any(|(k, _)| !seen.insert(k))
}

/// Reads one JSON value into the MessagePack value a JSON reader would read.
struct ToMsgpack;

impl<'de> DeserializeSeed<'de> for ToMsgpack {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ToMsgpack {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Boolean(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    /// Every number with a fraction or an exponent, and integers past 64 bits.
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::F64(f))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::from(s))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::from(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ToMsgpack)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value_seed(ToMsgpack)?));
        }
        Ok(Value::Map(
            last_wins(entries)
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

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

    /// The MessagePack a subscriber gets for JSON data.
    fn msgpack_of(json: &str) -> Value {
        let mut mp = Vec::new();
        json_to_msgpack(json.as_bytes(), &mut mp);
        rmpv::decode::read_value(&mut &mp[..]).unwrap()
    }

    /// The JSON text a subscriber gets for MessagePack data.
    fn json_of(v: &Value) -> String {
        let mut mp = Vec::new();
        rmpv::encode::write_value(&mut mp, v).unwrap();
        let mut out = Vec::new();
        msgpack_to_json(&mp, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_integers_stay_exact_and_other_numbers_become_the_float_a_reader_reads() {
        assert_eq!(
            msgpack_of("[0,18446744073709551615,-9223372036854775808,-1]"),
            Value::Array(vec![0.into(), u64::MAX.into(), i64::MIN.into(), (-1).into()])
        );
        assert_eq!(msgpack_of("18446744073709551616"), Value::F64(18446744073709551616.0));
        assert_eq!(msgpack_of("1e-400"), Value::F64(0.0));
        assert_eq!(msgpack_of("1.0"), Value::F64(1.0));
        let Value::F64(zero) = msgpack_of("-0") else { panic!() };
        assert_eq!(zero.to_bits(), (-0.0f64).to_bits());
        // Shortest round-trip forms that a parser without correct rounding misreads.
        for text in [
            "0.1",
            "-6.3965148428664631e91",
            "1.914391596672368e-308",
            "-1.1161907704092974e39",
            "0.6046602879796196",
            "5e-324",
            "1.7976931348623157e308",
        ] {
            assert_eq!(msgpack_of(text), Value::F64(text.parse().unwrap()), "{text}");
        }
    }

    #[test]
    fn json_objects_keep_their_key_order_and_a_repeated_key_its_last_value_at_its_first_place() {
        assert_eq!(
            msgpack_of(r#"{"b":1,"a":2,"b":3,"c":{"z":1,"y":2}}"#),
            Value::Map(vec![
                ("b".into(), 3.into()),
                ("a".into(), 2.into()),
                (
                    "c".into(),
                    Value::Map(vec![("z".into(), 1.into()), ("y".into(), 2.into())])
                ),
            ])
        );
        // Past a handful of keys, repeats are found another way; the rule is the same.
        let keys: Vec<String> = (0..40).rev().map(|i| format!("k{i}")).collect();
        let mut text: Vec<String> = keys.iter().map(|k| format!(r#""{k}":0"#)).collect();
        text.push(r#""k20":"last""#.into());
        let Value::Map(pairs) = msgpack_of(&format!("{{{}}}", text.join(","))) else {
            panic!()
        };
        let got: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str().unwrap()).collect();
        assert_eq!(got, keys.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(pairs[19], ("k20".into(), "last".into()));
    }

    #[test]
    fn json_strings_and_nesting_to_the_limit_carry_over() {
        assert_eq!(
            msgpack_of(r#"{"\u00e9":"\ud83d\ude00\n\u0000"}"#),
            Value::Map(vec![("\u{e9}".into(), "\u{1f600}\n\0".into())])
        );
        let deep = format!("{}1{}", "[".repeat(64), "]".repeat(64));
        let mut back = Vec::new();
        let mut mp = Vec::new();
        json_to_msgpack(deep.as_bytes(), &mut mp);
        msgpack_to_json(&mp, &mut back);
        assert_eq!(String::from_utf8(back).unwrap(), deep);
    }

    #[test]
    fn msgpack_ext_becomes_base64_of_its_data() {
        assert_eq!(
            json_of(&Value::Array(vec![
                Value::Ext(-1, vec![0, 0, 0, 1]),
                Value::Ext(7, vec![])
            ])),
            r#"["AAAAAQ==",""]"#
        );
    }

    #[test]
    fn msgpack_nan_and_infinities_become_null_and_32_bit_floats_keep_their_value() {
        assert_eq!(
            json_of(&Value::Array(vec![
                Value::F64(f64::NAN),
                Value::F64(f64::INFINITY),
                Value::F64(f64::NEG_INFINITY),
                Value::F32(f32::NAN),
                Value::F32(0.1),
                Value::F64(0.1),
                Value::F64(-0.0),
            ])),
            "[null,null,null,null,0.10000000149011612,0.1,-0.0]"
        );
    }

    #[test]
    fn msgpack_integers_and_strings_carry_exactly() {
        assert_eq!(
            json_of(&Value::Array(vec![
                u64::MAX.into(),
                i64::MIN.into(),
                "\u{e9}\"\n".into()
            ])),
            r#"[18446744073709551615,-9223372036854775808,"é\"\n"]"#
        );
    }

    #[test]
    fn msgpack_non_string_keys_become_their_json_text_in_place() {
        assert_eq!(
            json_of(&Value::Map(vec![
                (1.into(), "int".into()),
                (true.into(), "bool".into()),
                (Value::Nil, "nil".into()),
                (Value::Array(vec![1.into(), 2.into()]), "array".into()),
                (Value::Binary(vec![1]), "bin".into()),
                (1.5.into(), "float".into()),
            ])),
            r#"{"1":"int","true":"bool","null":"nil","[1,2]":"array","\"AQ==\"":"bin","1.5":"float"}"#
        );
    }

    #[test]
    fn msgpack_repeated_keys_keep_the_last_value_at_the_first_place() {
        assert_eq!(
            json_of(&Value::Map(vec![
                ("b".into(), 1.into()),
                ("a".into(), 2.into()),
                ("b".into(), 3.into()),
                (7.into(), "x".into()),
                ("7".into(), "y".into()),
            ])),
            r#"{"b":3,"a":2,"7":"y"}"#
        );
    }
}
