//! `map-json`: reshapes JSON object values. In this order: `select` keeps
//! only the listed paths, `drop` removes paths, `rename.OLD=NEW` moves
//! fields, `set.FIELD=VALUE` sets fields. The key, headers and timestamp are
//! kept; the value is written back as compact JSON.

use std::collections::BTreeMap;

use serde::Deserialize;
use sluice_sdk::json::{self, Map, Path, Value};
use sluice_sdk::{config, Error, Output, Record, Result};

/// The `--config` pairs, as written: two fixed keys and the `rename.*` and
/// `set.*` families.
#[derive(Debug, Deserialize)]
struct Config {
    select: Option<String>,
    drop: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, String>,
}

/// The parsed transformation, built once from the config (it deserializes
/// from the `--config` pairs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Config")]
pub struct Transform {
    select: Option<Vec<Path>>,
    drop: Vec<Path>,
    rename: Vec<(Path, Path)>,
    set: Vec<(Path, Value)>,
}

impl TryFrom<Config> for Transform {
    type Error = Error;

    fn try_from(config: Config) -> Result<Self> {
        if let Some(unknown) = config
            .rest
            .keys()
            .find(|key| !key.starts_with("rename.") && !key.starts_with("set."))
        {
            return Err(Error::new(format!(
                "unknown config key `{unknown}` (expected select, drop, rename.OLD or set.FIELD)"
            )));
        }
        let select = config
            .select
            .as_deref()
            .map(|list| paths("select", list))
            .transpose()?;
        if select.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::new("select needs at least one path"));
        }
        let drop = config
            .drop
            .as_deref()
            .map(|list| paths("drop", list))
            .transpose()?
            .unwrap_or_default();
        let rename = config::prefixed(&config.rest, "rename.")
            .map(|(old, new)| Ok((path("rename", old)?, path("rename", new)?)))
            .collect::<Result<Vec<_>>>()?;
        let set = config::prefixed(&config.rest, "set.")
            .map(|(field, value)| Ok((path("set", field)?, json::parse_text(value))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            select,
            drop,
            rename,
            set,
        })
    }
}

fn path(key: &str, text: &str) -> Result<Path> {
    Path::parse(text).map_err(|error| error.context(format_args!("invalid config: key `{key}`")))
}

/// A comma-separated list of paths.
fn paths(key: &str, list: &str) -> Result<Vec<Path>> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| path(key, item))
        .collect()
}

impl Transform {
    /// The transformation from `key=value` pairs, as `init` builds it.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<Self> {
        config::from_pairs(pairs)
    }

    /// Applies select, drop, rename and set, in that order, to `value`.
    pub fn apply(&self, value: &mut Value) -> Result<()> {
        if let Some(select) = &self.select {
            let mut selected = Value::Object(Map::new());
            for path in select {
                if let Some(field) = path.get(value) {
                    path.set(&mut selected, field.clone())?;
                }
            }
            *value = selected;
        }
        for path in &self.drop {
            path.remove(value);
        }
        for (old, new) in &self.rename {
            if let Some(field) = old.remove(value) {
                prune_empty_parents(value, old);
                new.set(value, field)?;
            }
        }
        for (path, field) in &self.set {
            path.set(value, field.clone())?;
        }
        Ok(())
    }
}

/// Removes the objects along `path` that a rename out of them left empty
/// (`rename.user.name=who` on `{"user":{"name":…}}` leaves no `user: {}`).
fn prune_empty_parents(value: &mut Value, path: &Path) {
    let text = path.as_str();
    let mut end = text.len();
    while let Some(dot) = text[..end].rfind('.') {
        let parent = &text[..dot];
        let empty =
            json::get(value, parent).is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
        if !empty {
            return;
        }
        json::remove(value, parent);
        end = dot;
    }
}

/// The map: `record` with its JSON object value transformed. A tombstone is
/// forwarded unchanged; a value that is not a JSON object is an error.
pub fn transform(record: Record, transform: &Transform) -> Result<Output> {
    let Some(bytes) = record.value.as_deref() else {
        return Ok(Output::forward());
    };
    let mut value: Value = serde_json::from_slice(bytes)?;
    if !value.is_object() {
        return Err(Error::new("the value is not a JSON object"));
    }
    transform.apply(&mut value)?;
    let bytes = serde_json::to_vec(&value)?;
    Ok(Output::from_record(record).with_value(bytes))
}

sluice_sdk::map!(transform);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_sdk::testing;

    use super::*;

    fn apply(pairs: &[(&str, &str)], input: Value) -> Value {
        let mut value = input;
        Transform::from_pairs(pairs)
            .unwrap()
            .apply(&mut value)
            .unwrap();
        value
    }

    #[test]
    fn select_keeps_only_the_paths() {
        let input = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4});
        assert_eq!(
            apply(&[("select", "a, b.c, missing")], input.clone()),
            json!({"a": 1, "b": {"c": 2}})
        );
        assert_eq!(
            apply(&[("select", "b.c,b")], input),
            json!({"b": {"c": 2, "d": 3}})
        );
    }

    #[test]
    fn drop_rename_and_set_in_order() {
        let input = json!({"id": 1, "secret": "x", "user": {"name": "ann"}});
        let pairs = [
            ("drop", "secret,nothing"),
            ("rename.user.name", "customer"),
            ("rename.id", "order.id"),
            ("set.source", "web"),
            ("set.order.priority", "2"),
            ("set.flags", r#"["a"]"#),
        ];
        let expected = json!({"customer": "ann", "order": {"id": 1, "priority": 2}, "source": "web", "flags": ["a"]});
        assert_eq!(apply(&pairs, input), expected);
    }

    #[test]
    fn the_readme_example() {
        let pairs = [
            ("select", "id,user.id,amount"),
            ("rename.user.id", "customer_id"),
            ("set.source", "shop"),
            ("set.version", "2"),
        ];
        let input = json!({"id": 7, "user": {"id": 3, "name": "ann"}, "amount": 12, "note": "x"});
        let output = serde_json::to_string(&apply(&pairs, input)).unwrap();
        assert_eq!(
            output,
            r#"{"amount":12,"customer_id":3,"id":7,"source":"shop","version":2}"#
        );
    }

    #[test]
    fn renaming_out_of_an_object_keeps_its_other_fields() {
        let input = json!({"user": {"id": 3, "name": "ann"}, "deep": {"a": {"b": 1}}});
        assert_eq!(
            apply(
                &[("rename.user.id", "uid"), ("rename.deep.a.b", "b")],
                input
            ),
            json!({"user": {"name": "ann"}, "uid": 3, "b": 1})
        );
    }

    #[test]
    fn select_runs_before_set() {
        let input = json!({"a": 1, "b": 2});
        assert_eq!(
            apply(&[("select", "a"), ("set.b", "\"new\"")], input),
            json!({"a": 1, "b": "new"})
        );
    }

    #[test]
    fn config_errors() {
        let error = Transform::from_pairs(&[("selct", "a")]).unwrap_err();
        assert!(
            error.message().contains("unknown config key `selct`"),
            "{error}"
        );
        let error = Transform::from_pairs(&[("rename.a", "b..c")]).unwrap_err();
        assert!(error.message().contains("key `rename`"), "{error}");
        assert!(Transform::from_pairs(&[("select", " , ")]).is_err());
        assert!(Transform::from_pairs::<&str, &str>(&[]).is_ok());
    }

    #[test]
    fn the_exported_map_keeps_key_headers_and_timestamp() {
        let record = Record::new(r#"{"a": 1, "b": 2}"#)
            .with_key("k")
            .with_header("h", "v")
            .with_timestamp(9);
        let outputs = testing::run_map(
            transform,
            &[("drop", "b")],
            vec![record, Record::tombstone()],
        )
        .unwrap();
        assert_eq!(outputs[0].value_str(), Ok(r#"{"a":1}"#));
        assert_eq!(
            (
                outputs[0].key_str(),
                outputs[0].header_str("h"),
                outputs[0].timestamp
            ),
            (Ok("k"), Some("v"), 9)
        );
        assert!(outputs[1].forwarded);
    }

    #[test]
    fn non_objects_and_bad_paths_are_errors() {
        for (pairs, value) in [
            (&[("drop", "a")][..], "[1]"),
            (&[("drop", "a")][..], "nope"),
            (&[("set.a.b", "1")][..], r#"{"a": 5}"#),
        ] {
            let error =
                testing::run_map(transform, pairs, testing::records(&["{}", value])).unwrap_err();
            assert_eq!(error.record_index(), Some(1), "{value}: {error}");
        }
    }
}
