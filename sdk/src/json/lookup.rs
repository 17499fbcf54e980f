//! Reading one field out of raw JSON bytes without building the document.
//!
//! A serde `DeserializeSeed` walks down the path: at each object it compares
//! keys in place (no allocation, even for escaped keys), descends into the
//! matching value and skips every other value with `IgnoredAny`; arrays are
//! walked the same way by index. Only the target field is materialised, and
//! a string borrows from the input when it has no escapes. The rest of the
//! document is still scanned, so invalid JSON anywhere is an error.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use super::{Path, Segment};
use crate::{Error, Result};

/// A field read by [`find`]: scalars as they are, strings borrowed when
/// possible, arrays and objects as a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string, borrowed from the input unless it had escapes.
    String(Cow<'a, str>),
    /// An array or an object.
    Compound(Value),
}

impl Field<'_> {
    /// The field as a [`Value`].
    pub fn to_value(&self) -> Value {
        match self {
            Field::Null => Value::Null,
            Field::Bool(value) => Value::Bool(*value),
            Field::Number(number) => Value::Number(number.clone()),
            Field::String(text) => Value::String(text.clone().into_owned()),
            Field::Compound(value) => value.clone(),
        }
    }

    /// The field as text: a string as itself, anything else as compact JSON.
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Field::Null => Cow::Borrowed("null"),
            Field::Bool(true) => Cow::Borrowed("true"),
            Field::Bool(false) => Cow::Borrowed("false"),
            Field::Number(number) => Cow::Owned(number.to_string()),
            Field::String(text) => Cow::Borrowed(text),
            Field::Compound(value) => Cow::Owned(value.to_string()),
        }
    }
}

/// The field at `path` in the JSON document `json`: `Ok(None)` when the
/// path leads nowhere (a missing key, an index past the end, a scalar on the
/// way). Errors when `json` is not valid JSON or not an object or array.
pub fn find<'a>(json: &'a [u8], path: &Path) -> Result<Option<Field<'a>>> {
    let first = json.iter().find(|byte| !byte.is_ascii_whitespace());
    if !matches!(first, Some(b'{' | b'[')) {
        // Say "not an object" for valid scalars, the parse error otherwise.
        serde_json::from_slice::<IgnoredAny>(json)?;
        return Err(Error::new("the value is not a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let found = Walk {
        segments: path.segments(),
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(found)
}

/// Descends along `segments`; at the end, reads the field.
struct Walk<'p> {
    segments: &'p [Segment],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<Field<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        match self.segments.split_first() {
            None => deserializer.deserialize_any(FieldVisitor).map(Some),
            Some((segment, rest)) => deserializer.deserialize_any(StepVisitor { segment, rest }),
        }
    }
}

struct StepVisitor<'p> {
    segment: &'p Segment,
    rest: &'p [Segment],
}

/// Every scalar on the way means the path leads nowhere.
macro_rules! nothing_here {
    ($($method:ident($type:ty),)*) => {$(
        fn $method<E: de::Error>(self, _value: $type) -> Result<Self::Value, E> {
            Ok(None)
        }
    )*};
}

impl<'de> Visitor<'de> for StepVisitor<'_> {
    type Value = Option<Field<'de>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    nothing_here! {
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str),
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_target) = map.next_key_seed(KeyIs(&self.segment.key))? {
            if is_target {
                // A later duplicate key wins, as in `serde_json::Value`.
                found = map.next_value_seed(Walk {
                    segments: self.rest,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut index = 0_usize;
        loop {
            if Some(index) == self.segment.index {
                match seq.next_element_seed(Walk {
                    segments: self.rest,
                })? {
                    Some(field) => found = field,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(found)
    }
}

/// Deserializes a map key into "is it the one we look for?".
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        // As bytes: serde_json then skips the UTF-8 check of every key it
        // compares (escapes are still decoded).
        deserializer.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<bool, E> {
        Ok(key == self.0.as_bytes())
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Field<'de>, E> {
        Ok(Field::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Field<'de>, E> {
        Ok(Field::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Field<'de>, E> {
        Ok(Field::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Field<'de>, E> {
        // JSON has no NaN or infinity, so this is always a number.
        Ok(Number::from_f64(value).map_or(Field::Null, Field::Number))
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::String(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Field<'de>, E> {
        Ok(Field::String(Cow::Owned(value.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
        let value = de::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Field::Compound(value))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
        let value = de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Field::Compound(value))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lookup<'a>(json: &'a str, path: &str) -> Result<Option<Field<'a>>> {
        find(json.as_bytes(), &Path::parse(path).unwrap())
    }

    #[test]
    fn finds_nested_fields_and_array_elements() {
        let doc = r#"{"skip": {"deep": [1, {"x": 2}]}, "user": {"country": "fr", "age": 42, "tags": ["a", "b"]}}"#;
        assert_eq!(
            lookup(doc, "user.country").unwrap(),
            Some(Field::String(Cow::Borrowed("fr")))
        );
        assert_eq!(
            lookup(doc, "user.age").unwrap(),
            Some(Field::Number(42.into()))
        );
        assert_eq!(
            lookup(doc, "user.tags.1").unwrap(),
            Some(Field::String("b".into()))
        );
        assert_eq!(
            lookup(doc, "user.tags").unwrap(),
            Some(Field::Compound(json!(["a", "b"])))
        );
        assert_eq!(
            lookup(doc, "skip.deep.1.x").unwrap(),
            Some(Field::Number(2.into()))
        );
    }

    #[test]
    fn missing_paths_are_none() {
        let doc = r#"{"a": {"b": 1}, "list": [1], "n": null}"#;
        for path in ["x", "a.c", "a.b.c", "list.1", "list.x", "n.y"] {
            assert_eq!(lookup(doc, path).unwrap(), None, "{path}");
        }
        assert_eq!(lookup(doc, "n").unwrap(), Some(Field::Null));
    }

    #[test]
    fn escaped_strings_and_keys() {
        let doc = r#"{"k\u0065y": "a\"b", "plain": "c"}"#;
        let found = lookup(doc, "key").unwrap().unwrap();
        assert_eq!(found, Field::String(Cow::Owned("a\"b".to_owned())));
        assert!(matches!(
            lookup(doc, "plain").unwrap(),
            Some(Field::String(Cow::Borrowed("c")))
        ));
    }

    #[test]
    fn invalid_documents_are_errors() {
        assert_eq!(
            lookup("42", "a").unwrap_err().message(),
            "the value is not a JSON object"
        );
        assert_eq!(
            lookup(r#""s""#, "a").unwrap_err().message(),
            "the value is not a JSON object"
        );
        for bad in [
            "",
            "{",
            r#"{"a": 1,}"#,
            r#"{"a": 1} x"#,
            r#"{"a": 1, "b": tru}"#,
            "nope",
        ] {
            let error = lookup(bad, "a").unwrap_err();
            assert!(
                error.message().starts_with("invalid JSON"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn duplicate_keys_take_the_last() {
        assert_eq!(
            lookup(r#"{"a": 1, "a": 2}"#, "a").unwrap(),
            Some(Field::Number(2.into()))
        );
    }

    #[test]
    fn field_text() {
        assert_eq!(
            Field::Number(Number::from_f64(1.5).unwrap()).to_text(),
            "1.5"
        );
        assert_eq!(Field::String("x".into()).to_text(), "x");
        assert_eq!(Field::Bool(true).to_value(), json!(true));
    }
}
