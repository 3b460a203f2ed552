//! Event data relayed from clients to rooms, binary attachments included.
//!
//! `serde_json::Value` cannot hold the bytes socketioxide's parser produces for binary
//! attachments, so relayed data is read into [`Payload`], which keeps bytes as bytes and writes
//! them back as attachments when emitted.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON value that may contain binary attachments.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Payload {
    #[default]
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<Payload>),
    /// Keys keep the order the client sent them in.
    Object(Vec<(String, Payload)>),
}

impl Payload {
    /// Returns whether an object with a `_placeholder` key is left, which means the packet
    /// announced an attachment that the parser did not resolve.
    pub fn has_unresolved_placeholder(&self) -> bool {
        match self {
            Payload::Array(items) => items.iter().any(Payload::has_unresolved_placeholder),
            Payload::Object(entries) => entries
                .iter()
                .any(|(key, value)| key == "_placeholder" || value.has_unresolved_placeholder()),
            _ => false,
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Null => serializer.serialize_unit(),
            Payload::Bool(value) => serializer.serialize_bool(*value),
            Payload::Number(number) => number.serialize(serializer),
            Payload::String(text) => serializer.serialize_str(text),
            Payload::Bytes(bytes) => serializer.serialize_bytes(bytes),
            Payload::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Payload::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Payload, D::Error> {
        deserializer.deserialize_any(PayloadVisitor)
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value or binary data")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Payload, E> {
        Ok(Payload::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Payload, E> {
        Ok(Payload::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Payload, D::Error> {
        deserializer.deserialize_any(PayloadVisitor)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Payload, E> {
        Ok(Payload::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Payload, E> {
        Ok(Payload::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Payload, E> {
        Ok(Payload::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Payload, E> {
        serde_json::Number::from_f64(value)
            .map(Payload::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Payload, E> {
        Ok(Payload::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Payload, E> {
        Ok(Payload::String(value))
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Payload, E> {
        Ok(Payload::Bytes(value.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, value: Vec<u8>) -> Result<Payload, E> {
        Ok(Payload::Bytes(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Payload::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some((key, value)) = map.next_entry::<String, Payload>()? {
            entries.push((key, value));
        }
        Ok(Payload::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        let text = r#"{"a":[1,-2,3.5,"x",true,null],"b":{"c":{}}}"#;
        let payload: Payload = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&payload).unwrap(), text);
    }

    #[test]
    fn finds_unresolved_placeholders() {
        let payload: Payload = serde_json::from_str(r#"{"a":[{"_placeholder":true,"num":0}]}"#).unwrap();
        assert!(payload.has_unresolved_placeholder());
        let payload: Payload = serde_json::from_str(r#"{"a":[{"placeholder":true}]}"#).unwrap();
        assert!(!payload.has_unresolved_placeholder());
    }
}
