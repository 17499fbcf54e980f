//! JSON helpers: dotted paths (`user.address.city`, `items.0.sku`) to read,
//! write and remove fields of a [`serde_json::Value`], a streaming
//! [`find`] that reads one field out of raw bytes without building the whole
//! document, and the text conversions config values need.
//!
//! A path segment addresses an object key, or an array index when it is a
//! number and the value at that point is an array. Keys containing `.`
//! cannot be addressed.
//!
//! ```
//! use serde_json::json;
//! use sluice_sdk::json;
//!
//! let mut order = json!({"user": {"country": "fr"}, "items": [{"sku": "a"}]});
//! assert_eq!(json::get(&order, "items.0.sku"), Some(&json!("a")));
//! json::set(&mut order, "user.vip", json!(true)).unwrap();
//! assert_eq!(json::remove(&mut order, "user.country"), Some(json!("fr")));
//! assert_eq!(order["user"], json!({"vip": true}));
//! ```

#[cfg(test)]
mod differential;
mod lookup;
mod scan;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
pub use serde_json::{Map, Number, Value};

pub use lookup::{find, Field};

use crate::{Error, Result};

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// The object key this step reads.
    pub(crate) key: String,
    /// The array index this step reads, when the key is a number.
    pub(crate) index: Option<usize>,
    /// The key's first eight bytes as a word, for [`find`] to compare keys
    /// of up to eight bytes in one step.
    pub(crate) key_prefix: u64,
}

/// A parsed dotted path. Parse it once (at `init`) and use it per record.
///
/// It deserializes from a string, so it can be a config field:
/// `field: sluice_sdk::json::Path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    text: String,
    segments: Vec<Segment>,
}

impl Path {
    /// Parses `a.b.0`. Errors on an empty path or an empty segment.
    pub fn parse(text: &str) -> Result<Self> {
        let segments = text
            .split('.')
            .map(|key| {
                if key.is_empty() {
                    return Err(Error::new(format!(
                        "invalid JSON path `{text}`: empty segment"
                    )));
                }
                Ok(Segment {
                    key: key.to_owned(),
                    index: key.parse().ok(),
                    key_prefix: scan::key_prefix(key.as_bytes()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The value at this path, if there is one.
    pub fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.segments
            .iter()
            .try_fold(value, |current, segment| step(current, segment))
    }

    /// The value at this path, mutably, if there is one.
    pub fn get_mut<'v>(&self, value: &'v mut Value) -> Option<&'v mut Value> {
        self.segments
            .iter()
            .try_fold(value, |current, segment| step_mut(current, segment))
    }

    /// Sets the value at this path, creating missing objects on the way. An
    /// array index may replace an element or append (index = length). Errors
    /// when the path runs through a scalar or past the end of an array.
    pub fn set(&self, value: &mut Value, new: Value) -> Result<()> {
        let (last, parents) = self
            .segments
            .split_last()
            .expect("a parsed path has a segment");
        let mut current = value;
        for segment in parents {
            if let Value::Object(object) = current {
                current = object
                    .entry(segment.key.as_str())
                    .or_insert_with(|| Value::Object(Map::new()));
                continue;
            }
            current = step_mut(current, segment).ok_or_else(|| self.unreachable())?;
        }
        match (current, last.index) {
            (Value::Object(object), _) => {
                object.insert(last.key.clone(), new);
            }
            (Value::Array(array), Some(index)) if index < array.len() => array[index] = new,
            (Value::Array(array), Some(index)) if index == array.len() => array.push(new),
            _ => return Err(self.unreachable()),
        }
        Ok(())
    }

    /// Removes the value at this path and returns it.
    pub fn remove(&self, value: &mut Value) -> Option<Value> {
        let (last, parents) = self.segments.split_last()?;
        let parent = parents
            .iter()
            .try_fold(value, |current, segment| step_mut(current, segment))?;
        match (parent, last.index) {
            (Value::Object(object), _) => object.remove(&last.key),
            (Value::Array(array), Some(index)) if index < array.len() => Some(array.remove(index)),
            _ => None,
        }
    }

    fn unreachable(&self) -> Error {
        Error::new(format!(
            "cannot set `{}`: the path runs through a value that is not an object",
            self.text
        ))
    }
}

fn step<'v>(value: &'v Value, segment: &Segment) -> Option<&'v Value> {
    match value {
        Value::Object(object) => object.get(&segment.key),
        Value::Array(array) => array.get(segment.index?),
        _ => None,
    }
}

fn step_mut<'v>(value: &'v mut Value, segment: &Segment) -> Option<&'v mut Value> {
    match value {
        Value::Object(object) => object.get_mut(&segment.key),
        Value::Array(array) => array.get_mut(segment.index?),
        _ => None,
    }
}

impl FromStr for Path {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The value at dotted `path` in `value`. An invalid path finds nothing.
pub fn get<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    Path::parse(path).ok()?.get(value)
}

/// The value at dotted `path` in `value`, mutably.
pub fn get_mut<'v>(value: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    Path::parse(path).ok()?.get_mut(value)
}

/// Sets the value at dotted `path` (see [`Path::set`]).
pub fn set(value: &mut Value, path: &str, new: Value) -> Result<()> {
    Path::parse(path)?.set(value, new)
}

/// Removes the value at dotted `path` and returns it.
pub fn remove(value: &mut Value, path: &str) -> Option<Value> {
    Path::parse(path).ok()?.remove(value)
}

/// Config text as a JSON value: the text parsed as JSON if it parses
/// (`1`, `true`, `"a"`, `[1,2]`), else the text itself as a string (`fr`).
pub fn parse_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// A value as text: a string as itself (no quotes), anything else as
/// compact JSON (`1`, `true`, `null`, `[1,2]`).
pub fn to_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(text) => Cow::Borrowed(text),
        other => Cow::Owned(other.to_string()),
    }
}

/// `value` serialized as compact JSON bytes.
pub fn to_vec<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

/// `bytes` parsed as JSON into `T`.
pub fn from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn get_walks_objects_and_arrays() {
        let value = json!({"a": {"b": [10, {"c": "x"}], "0": "key"}, "n": null});
        assert_eq!(get(&value, "a.b.0"), Some(&json!(10)));
        assert_eq!(get(&value, "a.b.1.c"), Some(&json!("x")));
        assert_eq!(
            get(&value, "a.0"),
            Some(&json!("key")),
            "a numeric key on an object"
        );
        assert_eq!(get(&value, "n"), Some(&Value::Null));
        assert_eq!(get(&value, "a.b.9"), None);
        assert_eq!(get(&value, "a.b.c"), None);
        assert_eq!(get(&value, "n.x"), None);
        assert_eq!(get(&value, "a..b"), None);
    }

    #[test]
    fn set_creates_objects_and_appends() {
        let mut value = json!({"list": [1]});
        set(&mut value, "a.b.c", json!(1)).unwrap();
        set(&mut value, "list.1", json!(2)).unwrap();
        set(&mut value, "list.0", json!(0)).unwrap();
        assert_eq!(value, json!({"a": {"b": {"c": 1}}, "list": [0, 2]}));
        assert!(set(&mut value, "list.5", json!(1)).is_err());
        assert!(set(&mut value, "a.b.c.d", json!(1)).is_err());
        assert!(set(&mut value, "", json!(1)).is_err());
    }

    #[test]
    fn remove_returns_the_value() {
        let mut value = json!({"a": {"b": 1, "c": [1, 2]}});
        assert_eq!(remove(&mut value, "a.c.0"), Some(json!(1)));
        assert_eq!(remove(&mut value, "a.b"), Some(json!(1)));
        assert_eq!(remove(&mut value, "a.missing"), None);
        assert_eq!(value, json!({"a": {"c": [2]}}));
    }

    #[test]
    fn text_conversions() {
        assert_eq!(parse_text("1.5"), json!(1.5));
        assert_eq!(parse_text("\"fr\""), json!("fr"));
        assert_eq!(parse_text("fr"), json!("fr"));
        assert_eq!(parse_text("[1,\"a\"]"), json!([1, "a"]));
        assert_eq!(to_text(&json!("fr")), "fr");
        assert_eq!(to_text(&json!(1)), "1");
        assert_eq!(to_text(&json!({"a": true})), r#"{"a":true}"#);
    }

    #[test]
    fn path_is_a_config_field() {
        #[derive(Debug, Deserialize)]
        struct Config {
            field: Path,
        }
        let config: Config = crate::config::from_pairs(&[("field", "a.b")]).unwrap();
        assert_eq!(config.field.as_str(), "a.b");
        let error = crate::config::from_pairs::<Config, _, _>(&[("field", "a.")]).unwrap_err();
        assert!(error.message().contains("key `field`"), "{error}");
    }
}
