//! Typed configuration: the processor's `--config key=value` pairs
//! deserialized with serde into the plugin's own config type.
//!
//! The pairs are seen as a map from key to value *text*, and each value is
//! parsed on demand into what the field asks for:
//!
//! | field type | value text |
//! |---|---|
//! | `String`, `&str` | as written |
//! | `bool` | `true` or `false` |
//! | integers, floats, `char` | parsed from the text |
//! | `Option<T>` | `Some` of `T` (a missing key is `None` with `#[serde(default)]`) |
//! | `Vec<T>`, tuples | a JSON array (`["a","b"]`), or comma-separated items (`a,b`) each parsed as `T` |
//! | maps, structs | a JSON object |
//! | unit enums | the variant name (`invalid=drop`) |
//!
//! Unknown keys are an error with `#[serde(deny_unknown_fields)]`. Keys that
//! are not known in advance (`route.eu=…`) are caught by a
//! `#[serde(flatten)] BTreeMap<String, String>` field; note that serde
//! buffers a struct with a flattened field as strings, so its other fields
//! must be strings too, or use `#[serde(deserialize_with =
//! "sluice_sdk::config::parse")]`. Every error names the key.
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     field: String,
//!     #[serde(default)]
//!     limit: Option<u32>,
//!     tags: Vec<String>,
//! }
//!
//! let config: Config = sluice_sdk::config::from_pairs(&[
//!     ("field", "user.country"),
//!     ("limit", "10"),
//!     ("tags", r#"["a","b"]"#),
//! ])
//! .unwrap();
//! assert_eq!((config.limit, config.tags.len()), (Some(10), 2));
//! let error = sluice_sdk::config::from_pairs::<Config, _, _>(&[("field", "x"), ("limit", "ten"), ("tags", "")]);
//! assert!(error.unwrap_err().message().contains("key `limit`"));
//! ```

mod de;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::Result;

/// The config type of a processor that takes no configuration: any key is an
/// error. `()` works the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct NoConfig;

/// Deserializes `C` from `key=value` pairs (`&[(String, String)]`,
/// `&[(&str, &str)]`, …). This is what the kind macros call in `init`.
pub fn from_pairs<C, K, V>(pairs: &[(K, V)]) -> Result<C>
where
    C: DeserializeOwned,
    K: AsRef<str>,
    V: AsRef<str>,
{
    C::deserialize(de::PairsDeserializer { pairs }).map_err(|error| error.context("invalid config"))
}

/// A `deserialize_with` helper: reads the value as a string and parses it
/// with `FromStr`. Use it for non-string fields of a config struct that also
/// has a `#[serde(flatten)]` catch-all.
pub fn parse<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let text = String::deserialize(deserializer)?;
    text.trim()
        .parse()
        .map_err(|error| serde::de::Error::custom(format!("`{text}`: {error}")))
}

/// The entries of a catch-all map whose key starts with `prefix`, with the
/// prefix stripped: `prefixed(&rest, "route.")` turns `route.eu=orders-eu`
/// into `("eu", "orders-eu")`.
pub fn prefixed<'a>(
    map: &'a BTreeMap<String, String>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    map.iter()
        .filter_map(move |(key, value)| Some((key.strip_prefix(prefix)?, value.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Error,
        Drop,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Typed {
        name: String,
        enabled: bool,
        count: u32,
        ratio: f64,
        sign: char,
        mode: Mode,
        #[serde(default)]
        missing: Option<String>,
        present: Option<i64>,
        list: Vec<String>,
        numbers: Vec<u8>,
        nested: BTreeMap<String, u32>,
    }

    fn typed(pairs: &[(&str, &str)]) -> Result<Typed> {
        from_pairs(pairs)
    }

    const GOOD: &[(&str, &str)] = &[
        ("name", "a b"),
        ("enabled", "true"),
        ("count", " 42 "),
        ("ratio", "0.5"),
        ("sign", "+"),
        ("mode", "drop"),
        ("present", "-3"),
        ("list", r#"["x","y,z"]"#),
        ("numbers", "1, 2,3"),
        ("nested", r#"{"a":1}"#),
    ];

    #[test]
    fn parses_scalars_lists_and_json() {
        let config = typed(GOOD).unwrap();
        assert_eq!(config.name, "a b");
        assert!(config.enabled);
        assert_eq!((config.count, config.ratio, config.sign), (42, 0.5, '+'));
        assert_eq!(config.mode, Mode::Drop);
        assert_eq!((config.missing, config.present), (None, Some(-3)));
        assert_eq!(config.list, ["x", "y,z"]);
        assert_eq!(config.numbers, [1, 2, 3]);
        assert_eq!(config.nested["a"], 1);
    }

    fn error_with(key: &str, value: &str) -> String {
        let pairs: Vec<(&str, &str)> = GOOD
            .iter()
            .map(|&(k, v)| if k == key { (k, value) } else { (k, v) })
            .collect();
        typed(&pairs).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        for (key, value) in [
            ("count", "many"),
            ("count", "-1"),
            ("enabled", "yes"),
            ("sign", "ab"),
            ("mode", "maybe"),
            ("list", "[1"),
            ("nested", "a=1"),
            ("numbers", "1,x"),
        ] {
            let message = error_with(key, value);
            assert!(
                message.starts_with(&format!("invalid config: key `{key}`: ")),
                "{key}={value}: {message}"
            );
        }
    }

    #[test]
    fn unknown_and_missing_keys_are_errors() {
        let mut pairs = GOOD.to_vec();
        pairs.push(("nmae", "typo"));
        assert!(typed(&pairs)
            .unwrap_err()
            .message()
            .contains("unknown field `nmae`"));
        assert!(typed(&GOOD[1..])
            .unwrap_err()
            .message()
            .contains("missing field `name`"));
    }

    #[test]
    fn no_config_refuses_any_key() {
        assert_eq!(from_pairs::<NoConfig, &str, &str>(&[]).unwrap(), NoConfig);
        from_pairs::<(), &str, &str>(&[]).unwrap();
        let error = from_pairs::<NoConfig, _, _>(&[("x", "1")]).unwrap_err();
        assert!(
            error.message().contains("takes no config, got key `x`"),
            "{error}"
        );
    }

    #[derive(Debug, Deserialize)]
    struct CatchAll {
        field: String,
        #[serde(default, deserialize_with = "parse")]
        limit: u32,
        #[serde(flatten)]
        rest: BTreeMap<String, String>,
    }

    #[test]
    fn flatten_catches_dynamic_keys() {
        let config: CatchAll = from_pairs(&[
            ("field", "a.b"),
            ("route.eu", "t-eu"),
            ("limit", "7"),
            ("route.us", "t-us"),
        ])
        .unwrap();
        assert_eq!((config.field.as_str(), config.limit), ("a.b", 7));
        let routes: Vec<_> = prefixed(&config.rest, "route.").collect();
        assert_eq!(routes, [("eu", "t-eu"), ("us", "t-us")]);
        let map: BTreeMap<String, String> = from_pairs(&[("k", "v")]).unwrap();
        assert_eq!(map["k"], "v");
    }

    #[test]
    fn empty_list_and_json_enum() {
        #[derive(Deserialize)]
        struct Lists {
            empty: Vec<String>,
            tuple: (u8, String),
        }
        let config: Lists = from_pairs(&[("empty", ""), ("tuple", "1,a")]).unwrap();
        assert!(config.empty.is_empty());
        assert_eq!(config.tuple, (1, "a".to_owned()));
    }
}
