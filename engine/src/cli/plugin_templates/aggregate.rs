//! `{{name}}`: a Sluice per-key aggregate. For each record it adds the
//! JSON number field `field` to its key's running totals (count and sum),
//! kept in the store `totals`, and writes the key's new totals; the output
//! is a table: on a compacted topic, the latest record per key is its
//! total. Change `Totals` and `add` to keep the aggregate you need.
//!
//! Deploy with `--store totals` (the store the totals live in).

use serde::{Deserialize, Serialize};
use sluice_sdk::aggregate::{self, Aggregator};
use sluice_sdk::json::Path;
use sluice_sdk::state::KeyValueStore;
use sluice_sdk::{Batch, Error, Output, Outputs, ProcessError, Processor, Record, Result};

/// The store the totals live in (`--store totals`).
pub const STORE: &str = "totals";

/// The processor's `--config key=value` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The number to add up (a dotted path into the JSON value).
    #[serde(default = "default_field")]
    pub field: Path,
}

fn default_field() -> Path {
    Path::parse("amount").expect("a valid path")
}

/// A key's aggregate, as stored (JSON, so state queries show it) and written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub count: u64,
    pub sum: f64,
}

/// How one number changes a key's totals.
#[derive(Debug)]
pub struct AddUp;

impl Aggregator for AddUp {
    type Input = f64;
    type Aggregate = Totals;

    fn add(&self, totals: Option<Totals>, amount: f64) -> Totals {
        let Totals { count, sum } = totals.unwrap_or(Totals { count: 0, sum: 0.0 });
        Totals {
            count: count + 1,
            sum: sum + amount,
        }
    }
}

/// The processor: its config and its store.
#[derive(Debug)]
pub struct PerKeyTotals {
    field: Path,
    totals: KeyValueStore<String, Totals>,
}

impl PerKeyTotals {
    /// A record's key and number; `None` skips it (a tombstone or no key).
    fn extract(&self, record: &Record) -> Result<Option<(String, f64)>> {
        if record.value.is_none() || record.key.is_none() {
            return Ok(None);
        }
        let value: serde_json::Value = record.json()?;
        let amount = self
            .field
            .get(&value)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| {
                Error::new(format!("field `{}` is missing or not a number", self.field))
            })?;
        Ok(Some((record.key_str()?.to_owned(), amount)))
    }
}

impl Processor for PerKeyTotals {
    type Config = Config;

    fn init(config: Config) -> Result<Self> {
        Ok(Self {
            field: config.field,
            totals: KeyValueStore::open(STORE)?,
        })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        let mut inputs = Vec::with_capacity(batch.len());
        for (source, record) in batch.indexed() {
            // An error names the record; the batch is rolled back.
            if let Some((key, amount)) = self
                .extract(&record)
                .map_err(|error| ProcessError::at(source, error))?
            {
                inputs.push((source, key, amount));
            }
        }
        // One read and one write of the store for the whole batch.
        for update in aggregate::aggregate(&self.totals, &AddUp, inputs)? {
            outputs.push(
                update.source,
                Output::upsert(update.key, &update.aggregate)?,
            );
        }
        Ok(())
    }
}

sluice_sdk::export!(PerKeyTotals);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{Harness, Task};

    use super::*;

    fn harness() -> Harness {
        Task::new()
            .store(STORE)
            .processor::<PerKeyTotals>(&[("field", "amount")])
            .unwrap()
    }

    fn order(key: &str, amount: f64) -> Record {
        Record::new(serde_json::json!({ "amount": amount }).to_string()).with_key(key)
    }

    #[test]
    fn totals_per_key_are_kept_across_batches() {
        let mut harness = harness();
        let outputs = harness
            .run(vec![order("ann", 10.0), order("bob", 1.0)])
            .unwrap();
        assert_eq!(outputs.len(), 2);
        let outputs = harness.run(vec![order("ann", 5.5)]).unwrap();
        assert_eq!(outputs[0].key_str(), Ok("ann"));
        let written: Totals = outputs[0].json().unwrap();
        assert_eq!(
            written,
            Totals {
                count: 2,
                sum: 15.5
            }
        );
        let stored: Totals = harness.get_json(STORE, b"bob").unwrap();
        assert_eq!(stored, Totals { count: 1, sum: 1.0 });
    }

    #[test]
    fn a_bad_record_fails_its_batch_and_changes_nothing() {
        let mut harness = harness();
        let error = harness
            .run(vec![
                order("ann", 1.0),
                Record::new(r#"{"amount":"x"}"#).with_key("ann"),
            ])
            .unwrap_err();
        assert_eq!(error.record_index(), Some(1));
        assert!(error.message().contains("not a number"), "{error}");
        assert_eq!(harness.get(STORE, b"ann"), None, "rolled back");
    }
}
