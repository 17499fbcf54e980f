//! `rekey-count` (test-only): counts records per value of a JSON field
//! (`field`, e.g. the page of a page view keyed by user) with the raw
//! contract, to test repartitioning in the broker without the SDK's
//! aggregation helpers.
//!
//! Batches from the input: each record is re-keyed by its field and sent
//! to `sluice.repartition`. Batches from `sluice.repartition`: the record's
//! key is counted in store `counts` (`add`), and the new count is emitted
//! as `{"key": …, "count": …}` keyed by the key.

use serde::Deserialize;
use sluice_sdk::state::Store;
use sluice_sdk::{Batch, Output, Outputs, ProcessError, Processor, Result};

/// The repartition topic name of the contract.
const REPARTITION: &str = "sluice.repartition";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    field: String,
}

pub struct RekeyCount {
    field: String,
    counts: Store,
}

impl Processor for RekeyCount {
    type Config = Config;

    fn init(config: Config) -> Result<Self> {
        Ok(Self {
            field: config.field,
            counts: Store::open("counts")?,
        })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        let repartitioned = batch.topic() == REPARTITION;
        for (source, record) in batch.indexed() {
            if repartitioned {
                let key = record.key.clone().unwrap_or_default();
                let count = self.counts.add(&key, 1);
                let text = String::from_utf8_lossy(&key).into_owned();
                let output = Output::json(&serde_json::json!({"key": text, "count": count}))
                    .map_err(|e| ProcessError::at(source, e))?
                    .key(key);
                outputs.push(source, output);
            } else {
                let value: serde_json::Value =
                    record.json().map_err(|e| ProcessError::at(source, e))?;
                let Some(key) = value.get(&self.field).and_then(|v| v.as_str()) else {
                    return Err(ProcessError::at(
                        source,
                        format!("no string field {:?}", self.field),
                    ));
                };
                let output = Output::from_record(record)
                    .key(key.as_bytes().to_vec())
                    .topic(REPARTITION);
                outputs.push(source, output);
            }
        }
        Ok(())
    }
}

sluice_sdk::export!(RekeyCount);
