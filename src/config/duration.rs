//! Durations in the settings as humantime strings (`"500ms"`, `"10s"`, `"5m"`),
//! for `#[serde(with = "duration")]` and `#[serde(with = "duration::optional")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Writes `d` as a humantime string.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Reads a humantime string; the error shows the forms allowed.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); use forms like \"500ms\", \"10s\", \"5m\""
        ))
    })
}

/// Optional durations, absent when `None`.
pub mod optional {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// Writes `d`, or nothing.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads a humantime string (the key's absence is the `None`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(d).map(Some)
    }
}
