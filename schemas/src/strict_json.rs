//! JSON text to [`Value`], refusing an object that names a key twice.
//!
//! `serde_json` keeps the last of duplicate keys, silently: a writer's
//! `{"kind":"annotation","content":"APPROVED",...,"content":"DENIED"}` was
//! stored as `DENIED` while any reader of the request that takes the first
//! (many do) saw `APPROVED`. What the vault commits must be what every
//! reader of the request sees, so a duplicate key, at any depth, is an
//! error naming it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `text` as JSON; an object with a duplicate key is an error.
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|s| s.0)
}

/// [`from_str`] of bytes (which must be UTF-8).
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0)
}

/// Checks that no object in the JSON text `bytes` names a key twice, nor
/// more than one of the keys in `one_of` (the members of a protobuf oneof:
/// OTLP/JSON's `{"stringValue":"a","intValue":"5"}` decoded to whichever came
/// last), without building its values: for bodies decoded by other means
/// (OTLP/JSON into its own structs, whose decoder kept the last).
pub fn check_object_keys(bytes: &[u8], one_of: &[&str]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de::DeserializeSeed::deserialize(KeyCheck(one_of), &mut de)?;
    de.end()
}

/// Any JSON value, its objects' keys checked, dropped.
#[derive(Clone, Copy)]
struct KeyCheck<'k>(&'k [&'k str]);

impl<'de> de::DeserializeSeed<'de> for KeyCheck<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyCheck<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        de::DeserializeSeed::deserialize(self, d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = std::collections::HashSet::new();
        let mut members = 0;
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(self)?;
            members += usize::from(self.0.contains(&key.as_str()));
            if members > 1 {
                return Err(de::Error::custom(
                    "more than one member of one oneof in one object",
                ));
            }
            if !keys.insert(key) {
                return Err(de::Error::custom("duplicate key in one object"));
            }
        }
        Ok(())
    }
}

/// A [`Value`] deserialized as `serde_json` does, except for duplicate keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            // One lookup, as `serde_json`'s own insert.
            match out.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(v);
                }
                serde_json::map::Entry::Occupied(taken) => {
                    let shown: String = taken.key().chars().take(64).collect();
                    return Err(de::Error::custom(format_args!(
                        "duplicate key {shown:?} in one object"
                    )));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_serde_json_does() {
        for text in [
            r#"{"a":[1,-2,3.5,1e300,18446744073709551615,-9223372036854775808],"b":{"c":null,"d":true},"e":"\u00e9\ud83d\ude00"}"#,
            r#"[]"#,
            r#""x""#,
            r#"{"a":{"a":{"a":1}},"b":{"a":2}}"#,
        ] {
            let ours = from_str(text).unwrap();
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
            assert_eq!(from_slice(text.as_bytes()).unwrap(), theirs);
        }
        // What serde_json refuses stays refused (a number out of range, a
        // lone surrogate, nesting past its recursion limit).
        for bad in [r#"1e400"#, r#""\ud800""#, &"[".repeat(200)] {
            assert!(from_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_check_without_values_agrees() {
        let one_of = ["stringValue", "intValue"];
        let fine = br#"{"a":[{"b":1},{"b":2}],"c":{"stringValue":"x"},"d":[{"intValue":"5"}]}"#;
        assert!(check_object_keys(fine, &one_of).is_ok());
        for text in [
            r#"{"stringValue":"A","stringValue":"B"}"#,
            r#"{"a":[{"k":1,"k\u0031":2,"k1":3}]}"#,
            r#"{"value":{"stringValue":"visible","intValue":"5"}}"#,
            r#"{"a":1} {"b":2}"#,
        ] {
            assert!(
                check_object_keys(text.as_bytes(), &one_of).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth() {
        for text in [
            r#"{"content":"APPROVED","content":"DENIED"}"#,
            r#"{"attributes":{"x":1,"y":2,"x":3}}"#,
            r#"{"a":[{"k":1},{"k":1,"k":2}]}"#,
            r#"{"k\u0065y":1,"key":2}"#,
        ] {
            let e = from_str(text).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{text}: {e}");
        }
    }
}
