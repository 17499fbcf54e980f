//! `route-by-field`: forwards each record, unchanged, to the topic named
//! for the value of one of its JSON fields (`route.VALUE=TOPIC`). Records
//! with no matching route go to `default`, or are dropped when there is no
//! `default`.

use std::collections::HashMap;

use serde::Deserialize;
use sluice_sdk::json::{self, Field, Path};
use sluice_sdk::{config, Error, Record, Result};

/// What to do with a value that is not a JSON object (invalid JSON, a
/// scalar, a tombstone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Invalid {
    /// Fail the batch, naming the record.
    #[default]
    Error,
    /// Treat it as a record with no matching route.
    Unmatched,
}

/// The `--config` pairs, as written.
#[derive(Debug, Deserialize)]
struct Config {
    field: String,
    default: Option<String>,
    invalid: Option<String>,
    #[serde(flatten)]
    rest: std::collections::BTreeMap<String, String>,
}

/// The parsed routing table, built once from the config (it deserializes
/// from the `--config` pairs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Config")]
pub struct Routes {
    path: Path,
    /// Field value, as text (a string as itself, other values as JSON), to
    /// topic.
    topics: HashMap<String, String>,
    default: Option<String>,
    invalid: Invalid,
}

impl TryFrom<Config> for Routes {
    type Error = Error;

    fn try_from(config: Config) -> Result<Self> {
        if let Some(unknown) = config.rest.keys().find(|key| !key.starts_with("route.")) {
            return Err(Error::new(format!(
                "unknown config key `{unknown}` (expected field, route.VALUE, default, invalid)"
            )));
        }
        let topics: HashMap<String, String> = config::prefixed(&config.rest, "route.")
            .map(|(value, topic)| (value.to_owned(), topic.to_owned()))
            .collect();
        if topics.is_empty() && config.default.is_none() {
            return Err(Error::new(
                "set at least one route.VALUE=TOPIC (or a default)",
            ));
        }
        let invalid = match config.invalid.as_deref() {
            None | Some("error") => Invalid::Error,
            Some("unmatched") => Invalid::Unmatched,
            Some(other) => {
                return Err(Error::new(format!(
                    "invalid config: key `invalid`: expected error or unmatched, got `{other}`"
                )))
            }
        };
        Ok(Self {
            path: Path::parse(&config.field)
                .map_err(|error| error.context("invalid config: key `field`"))?,
            topics,
            default: config.default,
            invalid,
        })
    }
}

impl Routes {
    /// The routes from `key=value` pairs, as `init` builds them.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<Self> {
        config::from_pairs(pairs)
    }

    /// The topic for a field value; the default for no value or no route.
    fn topic_for(&self, field: Option<&Field<'_>>) -> Option<&String> {
        let routed = match field {
            Some(Field::Compound(_)) | None => None,
            Some(field) => self.topics.get(field.to_text().as_ref()),
        };
        routed.or(self.default.as_ref())
    }

    /// The topic for the JSON document `value` (see [`route`]).
    pub fn topic(&self, value: &[u8]) -> Result<Option<&String>> {
        match json::find(value, &self.path) {
            Ok(field) => Ok(self.topic_for(field.as_ref())),
            Err(error) => self.on_invalid(error),
        }
    }

    fn on_invalid(&self, error: Error) -> Result<Option<&String>> {
        match self.invalid {
            Invalid::Error => Err(error),
            Invalid::Unmatched => Ok(self.default.as_ref()),
        }
    }
}

/// The router: the topic `record` goes to, `None` to drop it. The field's
/// value is matched as text: a string as itself, a number, boolean or null
/// as written in JSON (`route.1=…`, `route.true=…`, `route.null=…`).
pub fn route(record: &Record, routes: &Routes) -> Result<Option<String>> {
    let topic = match record.value.as_deref() {
        Some(value) => routes.topic(value)?,
        None => routes.on_invalid(Error::new("the record has a null value (tombstone)"))?,
    };
    Ok(topic.cloned())
}

sluice_sdk::route!(route);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    const ROUTES: &[(&str, &str)] = &[
        ("field", "region.code"),
        ("route.eu", "orders-eu"),
        ("route.us", "orders-us"),
        ("route.1", "orders-one"),
        ("route.true", "orders-true"),
    ];

    fn topic(pairs: &[(&str, &str)], value: &str) -> Option<String> {
        route(&Record::new(value), &Routes::from_pairs(pairs).unwrap()).unwrap()
    }

    #[test]
    fn routes_by_string_number_and_bool() {
        assert_eq!(
            topic(ROUTES, r#"{"region": {"code": "eu"}}"#).as_deref(),
            Some("orders-eu")
        );
        assert_eq!(
            topic(ROUTES, r#"{"region": {"code": "u\u0073"}}"#).as_deref(),
            Some("orders-us")
        );
        assert_eq!(
            topic(ROUTES, r#"{"region": {"code": 1}}"#).as_deref(),
            Some("orders-one")
        );
        assert_eq!(
            topic(ROUTES, r#"{"region": {"code": true}}"#).as_deref(),
            Some("orders-true")
        );
    }

    #[test]
    fn unmatched_records_are_dropped_or_defaulted() {
        for value in [
            r#"{"region": {"code": "apac"}}"#,
            r#"{"region": {}}"#,
            r#"{"region": {"code": ["eu"]}}"#,
        ] {
            assert_eq!(topic(ROUTES, value), None, "{value}");
            let mut pairs = ROUTES.to_vec();
            pairs.push(("default", "orders-other"));
            assert_eq!(
                topic(&pairs, value).as_deref(),
                Some("orders-other"),
                "{value}"
            );
        }
    }

    #[test]
    fn invalid_values_fail_or_go_unmatched() {
        let routes = Routes::from_pairs(ROUTES).unwrap();
        assert!(route(&Record::new("nope"), &routes).is_err());
        assert!(route(&Record::tombstone(), &routes).is_err());
        let mut pairs = ROUTES.to_vec();
        pairs.extend([("invalid", "unmatched"), ("default", "dlq")]);
        let routes = Routes::from_pairs(&pairs).unwrap();
        assert_eq!(
            route(&Record::new("[1"), &routes).unwrap().as_deref(),
            Some("dlq")
        );
    }

    #[test]
    fn config_errors() {
        let error = Routes::from_pairs(&[("field", "a"), ("rout.x", "t")]).unwrap_err();
        assert!(
            error.message().contains("unknown config key `rout.x`"),
            "{error}"
        );
        assert!(Routes::from_pairs(&[("field", "a")])
            .unwrap_err()
            .message()
            .contains("at least one route"));
        assert!(Routes::from_pairs(&[("route.a", "t")])
            .unwrap_err()
            .message()
            .contains("missing field `field`"));
        let error = Routes::from_pairs(&[("field", "a"), ("route.x", "t"), ("invalid", "drop")])
            .unwrap_err();
        assert!(error.message().contains("key `invalid`"), "{error}");
    }

    #[test]
    fn the_exported_router_forwards_unchanged() {
        let records = testing::records(&[
            r#"{"region":{"code":"us"}}"#,
            r#"{"region":{"code":"xx"}}"#,
            r#"{"region":{"code":"eu"}}"#,
        ]);
        let outputs = testing::run_route(route, ROUTES, records).unwrap();
        let routed: Vec<_> = outputs
            .iter()
            .map(|output| (output.source, output.topic.as_deref(), output.forwarded))
            .collect();
        assert_eq!(
            routed,
            [(0, Some("orders-us"), true), (2, Some("orders-eu"), true)]
        );
    }
}
