//! `enrich`: a stream-table join. Each JSON record is looked up by its key
//! in a table (a topic the broker materialises, `--table STORE=TOPIC`, so
//! every task sees all of it whatever the partitioning) and written with
//! the table's value for that key put under the field `into`.
//!
//! Why a table and not a store: the profiles (say) arrive on their own
//! compacted topic, keyed differently from the stream's partitions; the
//! broker keeps the table caught up to the topic before each batch, so a
//! profile update is seen by every record processed after it lands, and a
//! tombstone removes the entry.
//!
//! # Configuration
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `table` | (required) | the table's store name, as in `--table NAME=TOPIC` |
//! | `into` | `table`'s value | the field (a dotted path) the table value is put under |
//! | `by` | the record key | a field (dotted path) of the record whose value is the lookup key (its string, or JSON text for another type) |
//! | `missing` | `keep` | no entry for the key: `keep` writes the record unchanged, `drop` writes nothing, `error` fails the record |
//!
//! A record value must be a JSON object (an error naming the record
//! otherwise); a tombstone is passed on unchanged. A record without a key
//! (or without the `by` field) counts as missing. Outputs keep the input's
//! key, headers and timestamp. A table value that is not JSON is an error
//! naming the key.
//!
//! ```sh
//! sluice topic create user-profiles --config cleanup.policy=compact
//! sluice processor deploy enrich-clicks --wasm target/wasm32-wasip2/plugin/enrich.wasm \
//!     --input clicks --output enriched-clicks --table users=user-profiles \
//!     --config table=users --config into=user --config missing=keep
//! ```

use serde::Deserialize;
use sluice_sdk::json::{Path, Value};
use sluice_sdk::state::Table;
use sluice_sdk::{Batch, Error, Output, Outputs, ProcessError, Processor, Record, Result};

/// What to do with a record whose key has no table entry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// Write the record unchanged.
    #[default]
    Keep,
    /// Write nothing.
    Drop,
    /// Fail the record (the processor's error policy applies).
    Error,
}

/// The `--config` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The table's name (`--table NAME=TOPIC`).
    table: String,
    /// Where the table value goes; the table's name by default.
    #[serde(default)]
    into: Option<Path>,
    /// The field holding the lookup key; the record key by default.
    #[serde(default)]
    by: Option<Path>,
    /// No entry for the key.
    #[serde(default)]
    missing: Missing,
}

/// The processor.
#[derive(Debug)]
pub struct Enrich {
    table: Table<Vec<u8>, Value>,
    table_name: String,
    into: Path,
    by: Option<Path>,
    missing: Missing,
}

/// A record being enriched: the record, its parsed value and its lookup
/// key (`None`: nothing to look up).
struct Pending {
    record: Record,
    value: Value,
    key: Option<Vec<u8>>,
}

impl Enrich {
    /// The record's parsed value and lookup key; `Ok(None)` for a tombstone.
    fn parse(&self, record: &Record) -> Result<Option<(Value, Option<Vec<u8>>)>> {
        if record.value.is_none() {
            return Ok(None);
        }
        let value: Value = record.json()?;
        if !value.is_object() {
            return Err(Error::new("the record value is not a JSON object"));
        }
        let key = match &self.by {
            None => record.key.clone(),
            Some(by) => match by.get(&value) {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => Some(text.clone().into_bytes()),
                Some(other) => Some(other.to_string().into_bytes()),
            },
        };
        Ok(Some((value, key)))
    }

    /// A table entry's JSON; an error names the table and key.
    fn decode(&self, entry: Option<&[u8]>, key: Option<&[u8]>) -> Result<Option<Value>> {
        let Some(entry) = entry else {
            return Ok(None);
        };
        serde_json::from_slice(entry).map(Some).map_err(|error| {
            Error::new(format!(
                "table `{}`, key `{}`: {error}",
                self.table_name,
                String::from_utf8_lossy(key.unwrap_or_default())
            ))
        })
    }

    /// The output for one looked-up record (`None`: dropped).
    fn enriched(&self, pending: Pending, entry: Option<Value>) -> Result<Option<Output>> {
        let Pending {
            record,
            mut value,
            key,
        } = pending;
        let Some(entry) = entry else {
            return match self.missing {
                Missing::Keep => Ok(Some(Output::forward())),
                Missing::Drop => Ok(None),
                Missing::Error => Err(Error::new(match key {
                    Some(key) => format!(
                        "no entry for key `{}` in table `{}`",
                        String::from_utf8_lossy(&key),
                        self.table_name
                    ),
                    None => format!("no lookup key for table `{}`", self.table_name),
                })),
            };
        };
        self.into.set(&mut value, entry)?;
        let bytes = sluice_sdk::json::to_vec(&value)?;
        Ok(Some(Output::from_record(record).with_value(bytes)))
    }
}

impl Processor for Enrich {
    type Config = Config;

    fn init(config: Config) -> Result<Self> {
        let into = match config.into {
            Some(into) => into,
            None => Path::parse(&config.table)?,
        };
        Ok(Self {
            table: Table::open(&config.table)?,
            table_name: config.table,
            into,
            by: config.by,
            missing: config.missing,
        })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        // Tombstones (`None`) are passed on in place.
        let mut items: Vec<(u32, Option<Pending>)> = Vec::with_capacity(batch.len());
        for (source, record) in batch.indexed() {
            let parsed = self
                .parse(&record)
                .map_err(|error| ProcessError::at(source, error))?;
            let item = parsed.map(|(value, key)| Pending { record, value, key });
            items.push((source, item));
        }
        // One crossing for the batch's lookups.
        let keys: Vec<&[u8]> = items
            .iter()
            .filter_map(|(_, item)| item.as_ref()?.key.as_deref())
            .collect();
        let mut entries = self.table.get_many_raw(&keys).into_iter();
        for (source, item) in items {
            let Some(item) = item else {
                outputs.forward(source);
                continue;
            };
            let entry = match item.key {
                Some(_) => entries.next().flatten(),
                None => None,
            };
            let output = self
                .decode(entry.as_deref(), item.key.as_deref())
                .and_then(|entry| self.enriched(item, entry))
                .map_err(|error| ProcessError::at(source, error))?;
            if let Some(output) = output {
                outputs.push(source, output);
            }
        }
        Ok(())
    }
}

sluice_sdk::export!(Enrich);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_sdk::testing::{Harness, Task, TestError, TestOutput};

    use super::*;

    fn harness(config: &[(&str, &str)]) -> Harness {
        Task::new()
            .table(
                "users",
                [
                    ("ann", json!({"name": "Ann", "plan": "pro"})),
                    ("bob", json!({"name": "Bob", "plan": "free"})),
                ],
            )
            .processor::<Enrich>(config)
            .unwrap()
    }

    fn click(user: &str, page: &str) -> Record {
        Record::new(json!({"page": page}).to_string())
            .with_key(user)
            .with_timestamp(1_000)
    }

    fn values(outputs: &[TestOutput]) -> Vec<Value> {
        outputs
            .iter()
            .map(|output| output.json().unwrap())
            .collect()
    }

    #[test]
    fn records_carry_their_keys_table_entry() {
        let mut enrich = harness(&[("table", "users"), ("into", "user")]);
        let outputs = enrich
            .run(vec![
                click("ann", "/a"),
                click("bob", "/b"),
                click("ann", "/c"),
            ])
            .unwrap();
        assert_eq!(
            values(&outputs),
            [
                json!({"page": "/a", "user": {"name": "Ann", "plan": "pro"}}),
                json!({"page": "/b", "user": {"name": "Bob", "plan": "free"}}),
                json!({"page": "/c", "user": {"name": "Ann", "plan": "pro"}}),
            ]
        );
        assert_eq!(outputs[1].key_str(), Ok("bob"), "the key is kept");
        assert_eq!(outputs[1].timestamp, 1_000, "the timestamp is kept");
        assert!(!outputs[1].forwarded);
    }

    #[test]
    fn updates_and_deletes_in_the_table_are_seen_by_later_batches() {
        let mut enrich = harness(&[("table", "users"), ("into", "profile.current")]);
        enrich.table_put("users", "ann", json!({"name": "Ann", "plan": "team"}));
        let outputs = enrich.run(vec![click("ann", "/a")]).unwrap();
        assert_eq!(
            values(&outputs)[0]["profile"]["current"]["plan"],
            "team",
            "a nested `into`"
        );
        enrich.table_delete("users", "ann");
        let outputs = enrich.run(vec![click("ann", "/b")]).unwrap();
        assert!(outputs[0].forwarded, "missing=keep writes it unchanged");
    }

    #[test]
    fn missing_entries_follow_the_policy() {
        let batch = || vec![click("ann", "/a"), click("zed", "/z"), click("bob", "/b")];
        let mut keep = harness(&[("table", "users"), ("missing", "keep")]);
        let outputs = keep.run(batch()).unwrap();
        let sources: Vec<u32> = outputs.iter().map(|output| output.source).collect();
        assert_eq!(sources, [0, 1, 2]);
        assert!(outputs[1].forwarded);
        assert_eq!(
            values(&outputs)[0]["users"]["name"],
            "Ann",
            "into = the table's name"
        );

        let mut drop = harness(&[("table", "users"), ("missing", "drop")]);
        let sources: Vec<u32> = drop
            .run(batch())
            .unwrap()
            .iter()
            .map(|output| output.source)
            .collect();
        assert_eq!(sources, [0, 2]);

        let mut error = harness(&[("table", "users"), ("missing", "error")]);
        let failed = error.run(batch()).unwrap_err();
        assert_eq!(failed.record_index(), Some(1), "{failed}");
        assert!(
            failed.message().contains("no entry for key `zed`"),
            "{failed}"
        );
    }

    #[test]
    fn the_lookup_key_may_come_from_a_field() {
        let mut enrich = harness(&[("table", "users"), ("by", "who.id"), ("into", "user")]);
        let record = Record::new(r#"{"who":{"id":"bob"},"n":1}"#).with_key("ignored");
        let outputs = enrich.run(vec![record]).unwrap();
        assert_eq!(values(&outputs)[0]["user"]["name"], "Bob");
    }

    #[test]
    fn tombstones_pass_and_bad_values_fail_naming_the_record() {
        let mut enrich = harness(&[("table", "users")]);
        let outputs = enrich
            .run(vec![Record::tombstone().with_key("ann"), click("ann", "/")])
            .unwrap();
        assert!(outputs[0].forwarded && outputs[0].value.is_none());
        assert!(!outputs[1].forwarded);
        for (bad, message) in [
            (Record::new("[1]").with_key("ann"), "not a JSON object"),
            (Record::new("nope").with_key("ann"), "invalid JSON"),
        ] {
            let error = enrich.run(vec![click("bob", "/"), bad]).unwrap_err();
            assert_eq!(error.record_index(), Some(1), "{error}");
            assert!(error.message().contains(message), "{error}");
        }
    }

    #[test]
    fn a_table_value_that_is_not_json_fails_the_record_naming_the_key() {
        let mut enrich = Task::new()
            .table_raw("users", [(b"ann".to_vec(), b"{nope".to_vec())])
            .processor::<Enrich>(&[("table", "users")])
            .unwrap();
        let error = enrich
            .run(vec![click("bob", "/"), click("ann", "/")])
            .unwrap_err();
        assert_eq!(error.record_index(), Some(1), "{error}");
        assert!(
            error.message().contains("table `users`, key `ann`"),
            "{error}"
        );
    }

    #[test]
    fn config_is_checked() {
        let unknown = Task::new()
            .table("users", [("a", 1)])
            .processor::<Enrich>(&[("table", "users"), ("colour", "red")]);
        assert!(matches!(unknown, Err(TestError::Init(_))), "{unknown:?}");
        let undeclared = Task::new().processor::<Enrich>(&[("table", "users")]);
        assert!(undeclared.is_err(), "the table must be deployed");
    }
}
