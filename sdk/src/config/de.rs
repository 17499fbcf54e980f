//! The serde `Deserializer` behind [`from_pairs`](super::from_pairs): the
//! `--config key=value` pairs seen as a map of strings, each value parsed on
//! demand into what the target type asks for.

use std::fmt::Display;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Visitor};
use serde::forward_to_deserialize_any;

use crate::Error;

impl de::Error for Error {
    fn custom<T: Display>(message: T) -> Self {
        Error::new(message.to_string())
    }
}

/// The whole configuration: a map from key to value text.
pub(super) struct PairsDeserializer<'de, Key, Text> {
    pub(super) pairs: &'de [(Key, Text)],
}

impl<'de, Key: AsRef<str>, Text: AsRef<str>> de::Deserializer<'de>
    for PairsDeserializer<'de, Key, Text>
{
    type Error = Error;

    fn deserialize_any<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        visitor.visit_map(PairsAccess {
            pairs: self.pairs.iter(),
            current: None,
        })
    }

    fn deserialize_unit<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        match self.pairs.first() {
            None => visitor.visit_unit(),
            Some((key, _)) => Err(Error::new(format!(
                "this processor takes no config, got key `{}`",
                key.as_ref()
            ))),
        }
    }

    fn deserialize_unit_struct<W: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: W,
    ) -> Result<W::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_option<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<W: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: W,
    ) -> Result<W::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct PairsAccess<'de, K, V> {
    pairs: std::slice::Iter<'de, (K, V)>,
    /// The pair whose key was just handed out; its value comes next.
    current: Option<(&'de str, &'de str)>,
}

impl<'de, K: AsRef<str>, V: AsRef<str>> de::MapAccess<'de> for PairsAccess<'de, K, V> {
    type Error = Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some((key, value)) = self.pairs.next() else {
            return Ok(None);
        };
        let (key, value) = (key.as_ref(), value.as_ref());
        self.current = Some((key, value));
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let (key, text) = self
            .current
            .take()
            .ok_or_else(|| Error::new("config value requested before its key"))?;
        // The one place every error about a value passes: name the key here.
        seed.deserialize(ValueDeserializer { text })
            .map_err(|error| error.context(format_args!("key `{key}`")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}

/// One value's text, parsed into whatever the target type asks for.
struct ValueDeserializer<'de> {
    text: &'de str,
}

macro_rules! parse_scalar {
    ($($method:ident => $visit:ident: $type:ty,)*) => {$(
        fn $method<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
            let parsed = self.text.trim().parse::<$type>().map_err(|error| {
                Error::new(format!(concat!("expected ", stringify!($type), ", got `{}` ({})"), self.text, error))
            })?;
            visitor.$visit(parsed)
        }
    )*};
}

impl<'de> ValueDeserializer<'de> {
    /// Runs `deserialize` on the value text parsed as JSON.
    fn json<T>(
        self,
        deserialize: impl FnOnce(
            &mut serde_json::Deserializer<serde_json::de::StrRead<'de>>,
        ) -> serde_json::Result<T>,
    ) -> Result<T, Error> {
        let mut deserializer = serde_json::Deserializer::from_str(self.text);
        let value =
            deserialize(&mut deserializer).and_then(|value| deserializer.end().map(|()| value));
        value.map_err(|error| Error::new(format!("expected JSON: {error}")))
    }

    fn is_json_array(&self) -> bool {
        self.text.trim_start().starts_with('[')
    }
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'de> {
    type Error = Error;

    fn deserialize_any<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        visitor.visit_borrowed_str(self.text)
    }

    fn deserialize_bool<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        match self.text.trim() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => Err(Error::new(format!(
                "expected `true` or `false`, got `{}`",
                self.text
            ))),
        }
    }

    parse_scalar! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    fn deserialize_char<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        let mut chars = self.text.chars();
        match (chars.next(), chars.next()) {
            (Some(char), None) => visitor.visit_char(char),
            _ => Err(Error::new(format!(
                "expected one character, got `{}`",
                self.text
            ))),
        }
    }

    fn deserialize_str<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        visitor.visit_borrowed_str(self.text)
    }

    fn deserialize_string<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        visitor.visit_borrowed_str(self.text)
    }

    fn deserialize_identifier<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        visitor.visit_borrowed_str(self.text)
    }

    fn deserialize_bytes<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        visitor.visit_borrowed_bytes(self.text.as_bytes())
    }

    fn deserialize_byte_buf<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        visitor.visit_borrowed_bytes(self.text.as_bytes())
    }

    fn deserialize_option<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        match self.text.trim() {
            "" | "null" => visitor.visit_unit(),
            _ => Err(Error::new(format!(
                "expected no value, got `{}`",
                self.text
            ))),
        }
    }

    fn deserialize_unit_struct<W: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: W,
    ) -> Result<W::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<W: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: W,
    ) -> Result<W::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// `[...]` is JSON; anything else is a comma-separated list whose items
    /// are parsed like values (`in=a,b` as well as `in=["a","b"]`).
    fn deserialize_seq<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        if self.is_json_array() {
            return self.json(|json| de::Deserializer::deserialize_seq(json, visitor));
        }
        let text = self.text.trim();
        let items = if text.is_empty() {
            None
        } else {
            Some(text.split(','))
        };
        visitor.visit_seq(CommaSeparated { items })
    }

    fn deserialize_tuple<W: Visitor<'de>>(
        self,
        _len: usize,
        visitor: W,
    ) -> Result<W::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<W: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: W,
    ) -> Result<W::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        self.json(|json| de::Deserializer::deserialize_map(json, visitor))
    }

    fn deserialize_struct<W: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: W,
    ) -> Result<W::Value, Error> {
        self.json(|json| de::Deserializer::deserialize_struct(json, name, fields, visitor))
    }

    /// A bare word is a unit variant (`invalid=drop`); `{...}` is JSON.
    fn deserialize_enum<W: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: W,
    ) -> Result<W::Value, Error> {
        if self.text.trim_start().starts_with('{') {
            return self
                .json(|json| de::Deserializer::deserialize_enum(json, name, variants, visitor));
        }
        visitor.visit_enum(UnitVariant(self.text.trim()))
    }

    fn deserialize_ignored_any<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Error> {
        visitor.visit_unit()
    }
}

struct CommaSeparated<'de> {
    items: Option<std::str::Split<'de, char>>,
}

impl<'de> de::SeqAccess<'de> for CommaSeparated<'de> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some(item) = self.items.as_mut().and_then(Iterator::next) else {
            return Ok(None);
        };
        seed.deserialize(ValueDeserializer { text: item.trim() })
            .map(Some)
    }
}

struct UnitVariant<'de>(&'de str);

impl<'de> de::EnumAccess<'de> for UnitVariant<'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let variant = seed.deserialize(BorrowedStrDeserializer::<Error>::new(self.0))?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, _seed: S) -> Result<S::Value, Error> {
        Err(self.needs_json())
    }

    fn tuple_variant<W: Visitor<'de>>(self, _len: usize, _visitor: W) -> Result<W::Value, Error> {
        Err(self.needs_json())
    }

    fn struct_variant<W: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: W,
    ) -> Result<W::Value, Error> {
        Err(self.needs_json())
    }
}

impl UnitVariant<'_> {
    fn needs_json(&self) -> Error {
        Error::new(format!(
            "variant `{}` takes data: write it as JSON, {{\"{}\": ...}}",
            self.0, self.0
        ))
    }
}
