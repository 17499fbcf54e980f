//! `filter-json`: keeps the records whose JSON value has a field matching a
//! condition, e.g. `field=user.country equals=fr`.
//!
//! Fast path: the value is never parsed into a whole `serde_json::Value`.
//! [`sluice_sdk::json::find`] walks the bytes to the one field (skipping the
//! others without allocating, borrowing strings) and only that field is
//! compared. The condition is parsed once, at `init`.

use std::cmp::Ordering;

use serde::Deserialize;
use sluice_sdk::json::{self, Field, Number, Path, Value};
use sluice_sdk::{Error, Record, Result};

/// What to do with a value that is not a JSON object (invalid JSON, a
/// scalar, a tombstone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Invalid {
    /// Fail the batch, naming the record (the processor's error policy
    /// decides what happens next).
    #[default]
    Error,
    /// Drop the record.
    Drop,
}

/// The `--config` pairs, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    field: Path,
    equals: Option<String>,
    not_equals: Option<String>,
    gt: Option<String>,
    gte: Option<String>,
    lt: Option<String>,
    lte: Option<String>,
    contains: Option<String>,
    exists: Option<bool>,
    #[serde(rename = "in")]
    one_of: Option<String>,
    #[serde(default)]
    invalid: Invalid,
}

/// The test applied to the field.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Equals(Value),
    NotEquals(Value),
    /// The field compared with the bound is one of these orderings
    /// (`gte` is `[Greater, Equal]`).
    Compare(Value, &'static [Ordering]),
    Contains(String),
    Exists(bool),
    OneOf(Vec<Value>),
}

/// A parsed condition: the field's path, the test, and the policy for
/// invalid values. Built once from the config (it deserializes from the
/// `--config` pairs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Config")]
pub struct Condition {
    path: Path,
    test: Test,
    invalid: Invalid,
}

impl TryFrom<Config> for Condition {
    type Error = Error;

    fn try_from(config: Config) -> Result<Self> {
        let text = |value: &Option<String>| value.as_deref().map(json::parse_text);
        let mut tests = Vec::new();
        let mut named = Vec::new();
        let mut add = |name: &'static str, test: Option<Test>| {
            if let Some(test) = test {
                tests.push(test);
                named.push(name);
            }
        };
        add("equals", text(&config.equals).map(Test::Equals));
        add("not_equals", text(&config.not_equals).map(Test::NotEquals));
        add(
            "gt",
            text(&config.gt).map(|bound| Test::Compare(bound, &[Ordering::Greater])),
        );
        add(
            "gte",
            text(&config.gte)
                .map(|bound| Test::Compare(bound, &[Ordering::Greater, Ordering::Equal])),
        );
        add(
            "lt",
            text(&config.lt).map(|bound| Test::Compare(bound, &[Ordering::Less])),
        );
        add(
            "lte",
            text(&config.lte).map(|bound| Test::Compare(bound, &[Ordering::Less, Ordering::Equal])),
        );
        add(
            "contains",
            config
                .contains
                .as_deref()
                .map(|needle| Test::Contains(needle_text(needle))),
        );
        add("exists", config.exists.map(Test::Exists));
        add(
            "in",
            config
                .one_of
                .as_deref()
                .map(|list| Test::OneOf(list_values(list))),
        );
        let test = match (tests.pop(), tests.is_empty()) {
            (Some(test), true) => test,
            (None, _) => return Err(Error::new(CHOOSE_ONE)),
            (Some(_), false) => {
                return Err(Error::new(format!(
                    "{CHOOSE_ONE}; got {}",
                    named.join(", ")
                )))
            }
        };
        if let Test::Compare(Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_), _) =
            test
        {
            return Err(Error::new(
                "gt, gte, lt and lte compare with a number or a string",
            ));
        }
        Ok(Self {
            path: config.field,
            test,
            invalid: config.invalid,
        })
    }
}

const CHOOSE_ONE: &str =
    "set exactly one of equals, not_equals, gt, gte, lt, lte, contains, exists, in";

/// `contains=x`: the text itself, or the string a JSON string literal holds.
fn needle_text(text: &str) -> String {
    match json::parse_text(text) {
        Value::String(needle) => needle,
        _ => text.to_owned(),
    }
}

/// `in=[...]` as a JSON array, or `a,b,c` with each item read like a
/// config value (JSON if it parses, else a string).
fn list_values(text: &str) -> Vec<Value> {
    match serde_json::from_str(text) {
        Ok(Value::Array(values)) => values,
        _ => text
            .split(',')
            .map(|item| json::parse_text(item.trim()))
            .collect(),
    }
}

impl Condition {
    /// The condition from `key=value` pairs, as `init` builds it.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<Self> {
        sluice_sdk::config::from_pairs(pairs)
    }

    /// Whether `field` (or its absence) passes the test.
    fn test(&self, field: Option<&Field<'_>>) -> bool {
        match (&self.test, field) {
            (Test::Exists(wanted), found) => found.is_some() == *wanted,
            (Test::NotEquals(expected), found) => {
                !found.is_some_and(|field| equals(field, expected))
            }
            (_, None) => false,
            (Test::Equals(expected), Some(field)) => equals(field, expected),
            (Test::OneOf(values), Some(field)) => {
                values.iter().any(|expected| equals(field, expected))
            }
            (Test::Contains(needle), Some(Field::String(text))) => text.contains(needle.as_str()),
            (Test::Contains(_), Some(_)) => false,
            (Test::Compare(bound, wanted), Some(field)) => {
                compare(field, bound).is_some_and(|order| wanted.contains(&order))
            }
        }
    }

    fn on_invalid(&self, error: Error) -> Result<bool> {
        match self.invalid {
            Invalid::Error => Err(error),
            Invalid::Drop => Ok(false),
        }
    }
}

/// Numbers compare numerically (`1` equals `1.0`), everything else exactly.
fn equals(field: &Field<'_>, expected: &Value) -> bool {
    match (field, expected) {
        (Field::Null, Value::Null) => true,
        (Field::Bool(found), Value::Bool(expected)) => found == expected,
        (Field::Number(found), Value::Number(expected)) => {
            compare_numbers(found, expected) == Some(Ordering::Equal)
        }
        (Field::String(found), Value::String(expected)) => found == expected,
        (Field::Compound(found), expected) => found == expected,
        _ => false,
    }
}

/// The field's order relative to `bound`: numbers numerically, strings
/// lexicographically (by bytes); `None` for anything else.
fn compare(field: &Field<'_>, bound: &Value) -> Option<Ordering> {
    match (field, bound) {
        (Field::Number(found), Value::Number(bound)) => compare_numbers(found, bound),
        (Field::String(found), Value::String(bound)) => Some(found.as_ref().cmp(bound.as_str())),
        _ => None,
    }
}

/// Integers exactly (as i128, so any i64 or u64), otherwise as f64.
fn compare_numbers(left: &Number, right: &Number) -> Option<Ordering> {
    let integer = |number: &Number| {
        number
            .as_i64()
            .map(i128::from)
            .or_else(|| number.as_u64().map(i128::from))
    };
    match (integer(left), integer(right)) {
        (Some(left), Some(right)) => Some(left.cmp(&right)),
        _ => left.as_f64()?.partial_cmp(&right.as_f64()?),
    }
}

/// Whether the JSON document `value` passes `condition`. A value that is
/// not a JSON object is an error, or `false` with `invalid=drop`.
pub fn matches(value: &[u8], condition: &Condition) -> Result<bool> {
    match json::find(value, &condition.path) {
        Ok(field) => Ok(condition.test(field.as_ref())),
        Err(error) => condition.on_invalid(error),
    }
}

/// The filter: keeps `record` when its value passes `condition`. A
/// tombstone counts as an invalid value.
pub fn keep(record: &Record, condition: &Condition) -> Result<bool> {
    match record.value.as_deref() {
        Some(value) => matches(value, condition),
        None => condition.on_invalid(Error::new("the record has a null value (tombstone)")),
    }
}

sluice_sdk::filter!(keep);

#[cfg(test)]
mod tests;
