//! What published `data` may be: a value every wire format carries as the
//! same value.
//!
//! Data is kept in its publisher's encoding and re-encoded for subscribers of
//! the other format lazily ([`super::transcode`]), when it is too late to
//! refuse it. So this module decides at publish: whatever one format holds and
//! the other cannot carry is refused here with a [`DataError`] naming why;
//! the rest is carried with the changes docs/protocol.md lists ("Data across
//! formats"). The JSON check walks the text once with serde's
//! `deserialize_any` (which makes serde_json parse every number and escape)
//! and allocates nothing; the MessagePack check walks the `rmpv::ValueRef`
//! the decoder built anyway.

use std::borrow::Cow;
use std::fmt;

use rmpv::ValueRef;
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};

use crate::error::RequestError;

/// How deeply `data` may nest arrays and maps (JSON objects), in every format:
/// a value inside 64 arrays is at the limit.
///
/// Transcoding recurses once per level and serde_json refuses more than 128,
/// so one limit well inside that, the same in both formats, keeps every
/// accepted value transcodable.
pub const MAX_DEPTH: usize = 64;

/// Why published `data` is refused; the message is what the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Not JSON (only a whole HTTP body reaches the check unparsed).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// Not one MessagePack value.
    #[error("malformed MessagePack: {0}")]
    MalformedMsgpack(String),
    /// Arrays and maps nested deeper than [`MAX_DEPTH`].
    #[error("`data` nests arrays and maps more than {max} levels deep, more than every wire format carries; flatten it", max = MAX_DEPTH)]
    TooDeep,
    /// A JSON number beyond ±1.8e308: no 64-bit float, so no MessagePack number, holds it.
    #[error("`data` holds a number beyond the 64-bit float range (like 1e400), which MessagePack cannot carry; send it as a string")]
    NumberOutOfRange,
    /// A JSON `\u` escape that is half of a UTF-16 surrogate pair: not a character.
    #[error("`data` holds a string with a lone surrogate escape (like \"\\ud800\"), which is not Unicode text and MessagePack cannot carry; escape both halves of the pair")]
    LoneSurrogate,
    /// A MessagePack `str` value that is not UTF-8.
    #[error("`data` holds a MessagePack str that is not valid UTF-8, which JSON cannot carry; send bytes as bin")]
    InvalidUtf8,
    /// A MessagePack `str` map key that is not UTF-8.
    #[error(
        "`data` holds a map key that is a MessagePack str but not valid UTF-8, which JSON cannot carry; use UTF-8 keys"
    )]
    InvalidUtf8Key,
}

impl From<DataError> for RequestError {
    fn from(e: DataError) -> Self {
        RequestError::bad_request(e.to_string())
    }
}

/// The message the JSON walk fails with past [`MAX_DEPTH`], to tell it from serde_json's own errors.
const TOO_DEEP: &str = "fanout: data too deep";

/// Checks one JSON value (whitespace around it allowed) in one pass; returns
/// its content if it is a string, `None` for anything else.
pub fn check_json(text: &str) -> Result<Option<Cow<'_, str>>, DataError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let string = (&mut de).deserialize_any(Top).map_err(json_error)?;
    de.end().map_err(json_error)?;
    Ok(string)
}

/// Names a serde_json error found while checking.
fn json_error(e: serde_json::Error) -> DataError {
    let message = e.to_string();
    if message.starts_with(TOO_DEEP) {
        return DataError::TooDeep;
    }
    // serde_json reports valid JSON syntax that no Rust value holds (1e400,
    // "\ud800") like a syntax error; only the wording tells them apart. Were
    // it to change, these would still be refused, as `MalformedJson`; the
    // tests pin the wording.
    if message.starts_with("number out of range") {
        DataError::NumberOutOfRange
    } else if message.starts_with("lone leading surrogate") || message.starts_with("unexpected end of hex escape") {
        DataError::LoneSurrogate
    } else {
        DataError::MalformedJson(message)
    }
}

/// The top of JSON `data`: a string is kept (it becomes a text payload), anything else is walked.
struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(s)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Walk { depth: 0 }.visit_seq(seq).map(|()| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Walk { depth: 0 }.visit_map(map).map(|()| None)
    }
}

/// A JSON value inside `data`, `depth` arrays and objects down. Every kind of
/// value is accepted: serde_json has already refused what it could not parse.
#[derive(Clone, Copy)]
struct Walk {
    depth: usize,
}

impl Walk {
    /// One level further in, refused past [`MAX_DEPTH`].
    fn inside<E: de::Error>(self) -> Result<Walk, E> {
        if self.depth >= MAX_DEPTH {
            Err(E::custom(TOO_DEEP))
        } else {
            Ok(Walk { depth: self.depth + 1 })
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // `deserialize_any`, never `deserialize_ignored_any`: only the former
        // makes serde_json parse numbers and string escapes (keys too).
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.inside()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.inside()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Checks MessagePack data: every `str`, value or map key, is UTF-8, and
/// nothing nests deeper than [`MAX_DEPTH`] (a key inside a map counts as
/// one level down, like its value).
pub fn check_msgpack(value: &ValueRef<'_>) -> Result<(), DataError> {
    walk(value, 0)
}

fn walk(value: &ValueRef<'_>, depth: usize) -> Result<(), DataError> {
    let inside = || {
        if depth >= MAX_DEPTH {
            Err(DataError::TooDeep)
        } else {
            Ok(depth + 1)
        }
    };
    match value {
        ValueRef::String(s) if !s.is_str() => Err(DataError::InvalidUtf8),
        ValueRef::Array(items) => {
            let inner = inside()?;
            items.iter().try_for_each(|v| walk(v, inner))
        }
        ValueRef::Map(entries) => {
            let inner = inside()?;
            entries.iter().try_for_each(|(k, v)| {
                match k {
                    ValueRef::String(s) if !s.is_str() => return Err(DataError::InvalidUtf8Key),
                    k => walk(k, inner)?,
                }
                walk(v, inner)
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use rmpv::Value;

    fn msgpack(v: &Value) -> Result<(), DataError> {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, v).unwrap();
        check_msgpack(&rmpv::decode::read_value_ref(&mut &bytes[..]).unwrap())
    }

    fn arrays(levels: usize, leaf: Value) -> Value {
        (0..levels).fold(leaf, |v, _| Value::Array(vec![v]))
    }

    #[test]
    fn json_nesting_stops_at_the_limit_for_arrays_objects_and_both() {
        let nest = |open: &str, close: &str, levels: usize| format!("{}0{}", open.repeat(levels), close.repeat(levels));
        for (open, close) in [("[", "]"), (r#"{"k":"#, "}"), (r#"[{"k":"#, "}]")] {
            let per = if open.len() > 5 { 2 } else { 1 };
            assert_eq!(check_json(&nest(open, close, MAX_DEPTH / per)), Ok(None), "{open}");
            assert_eq!(
                check_json(&nest(open, close, MAX_DEPTH / per + 1)),
                Err(DataError::TooDeep),
                "{open}"
            );
        }
    }

    #[test]
    fn serde_json_refusals_are_named_by_their_reason() {
        // These pin serde_json's wording, which `json_error` relies on.
        assert_eq!(check_json("1e400"), Err(DataError::NumberOutOfRange));
        assert_eq!(
            check_json(&format!("-1{}", "0".repeat(310))),
            Err(DataError::NumberOutOfRange)
        );
        assert_eq!(check_json(r#""\ud800""#), Err(DataError::LoneSurrogate));
        assert_eq!(check_json(r#""\ud800x""#), Err(DataError::LoneSurrogate));
        assert_eq!(check_json(r#""\ud800\u0041""#), Err(DataError::LoneSurrogate));
        assert_eq!(check_json(r#""\udfff""#), Err(DataError::LoneSurrogate));
        assert_eq!(check_json(r#"{"\ud800":1}"#), Err(DataError::LoneSurrogate));
        assert!(matches!(check_json("[1,"), Err(DataError::MalformedJson(_))));
        assert!(matches!(check_json("1 2"), Err(DataError::MalformedJson(_))));
        assert!(matches!(check_json(""), Err(DataError::MalformedJson(_))));
    }

    #[test]
    fn json_strings_come_back_borrowed_unless_they_had_escapes() {
        assert!(matches!(check_json(r#" "plain" "#), Ok(Some(Cow::Borrowed("plain")))));
        assert_eq!(check_json(r#""\u00e9""#), Ok(Some(Cow::Owned("\u{e9}".into()))));
        assert_eq!(check_json(r#"{"a":"b"}"#), Ok(None));
    }

    #[test]
    fn msgpack_nesting_counts_keys_inside_their_map() {
        assert_eq!(msgpack(&arrays(MAX_DEPTH, "x".into())), Ok(()));
        assert_eq!(msgpack(&arrays(MAX_DEPTH + 1, 1.into())), Err(DataError::TooDeep));
        let keyed = |levels| arrays(levels, Value::Map(vec![(arrays(1, 1.into()), 1.into())]));
        assert_eq!(msgpack(&keyed(MAX_DEPTH - 2)), Ok(()));
        assert_eq!(msgpack(&keyed(MAX_DEPTH - 1)), Err(DataError::TooDeep));
    }

    #[test]
    fn msgpack_strings_must_be_utf8_at_any_depth_as_values_or_keys() {
        // Written by hand: rmpv would encode a `str` that is not UTF-8 as `bin`.
        let check = |bytes: Vec<u8>| check_msgpack(&rmpv::decode::read_value_ref(&mut &bytes[..]).unwrap());
        let bad = [0xa2, 0xc3, 0x28];
        assert_eq!(check(bad.to_vec()), Err(DataError::InvalidUtf8));
        assert_eq!(check([&[0x91; 9][..], &bad].concat()), Err(DataError::InvalidUtf8));
        let keyed = [&[0x82, 0x01, 0x01][..], &bad, &[0x01]].concat();
        assert_eq!(check(keyed), Err(DataError::InvalidUtf8Key));
        let inside_a_key = [&[0x81, 0x91][..], &bad, &[0x01]].concat();
        assert_eq!(check(inside_a_key), Err(DataError::InvalidUtf8));
        let fine = Value::Map(vec![
            (Value::Binary(vec![0xff]), Value::Ext(3, vec![0xff])),
            (Value::F32(f32::NAN), "\u{e9}".into()),
        ]);
        assert_eq!(msgpack(&fine), Ok(()));
    }

    #[test]
    fn a_refusal_is_a_bad_request_with_the_reason() {
        let e = RequestError::from(DataError::TooDeep);
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("64 levels"), "{}", e.message);
    }
}
