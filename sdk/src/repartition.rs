//! Aggregating by a key other than the input's: re-key through the
//! processor's repartition topic.
//!
//! A task only sees the records of its own input partition, and the input
//! is partitioned by *its* key (a user id, say). To count page views per
//! page, every view of a page must reach the same task: a processor writes
//! each record, re-keyed by page, to the topic [`TOPIC`]
//! (`sluice.repartition`); the broker appends it to the processor's own
//! repartition topic, partitioned by the new key, and hands it back to the
//! same processor, in the task of the partition the key hashes to, in a
//! batch whose topic is [`TOPIC`]. That task aggregates it with its other
//! records of the same key. Exactly-once holds end to end: the re-keyed
//! records commit with the input position they came from, and the
//! aggregate with the repartition position.
//!
//! So a processor has two steps, told apart by the batch's topic:
//!
//! ```
//! use sluice_sdk::aggregate;
//! use sluice_sdk::repartition::{self, Step};
//! use sluice_sdk::state::KeyValueStore;
//! use sluice_sdk::{Batch, Error, Outputs, ProcessError, Record};
//!
//! fn page(record: &Record) -> Result<Option<Vec<u8>>, Error> {
//!     #[derive(serde::Deserialize)]
//!     struct View { page: String }
//!     Ok(Some(record.json::<View>()?.page.into_bytes()))
//! }
//!
//! fn process(views: &KeyValueStore<Vec<u8>, u64>, batch: Batch, outputs: &mut Outputs)
//!     -> Result<(), ProcessError> {
//!     match repartition::step(&batch) {
//!         // From the input: re-key each view by its page.
//!         Step::Input => repartition::group_by(batch, outputs, page),
//!         // Back from the repartition topic, keyed by page: count.
//!         Step::Repartitioned => {
//!             let keys = batch.indexed().filter_map(|(source, record)| Some((source, record.key?)));
//!             aggregate::count(views, keys)?;
//!             Ok(())
//!         }
//!     }
//! }
//! ```
//!
//! The re-keyed records are processed by the repartition topic's own tasks
//! (one per partition), each with its own state, stream time and timers:
//! what the second step stores is in those tasks, and state queries look
//! there too. A repartition partition merges records from every input
//! partition, so they arrive less ordered by time than each input was:
//! windows aggregated after a re-key want a grace period covering that.
//!
//! On the host, [`testing::Harness::run`](crate::testing::Harness::run)
//! feeds what a batch writes to [`TOPIC`] back to the processor as a later
//! batch from [`TOPIC`], so a test sees the end result of both steps.

use std::fmt::Display;

use crate::{Batch, Output, Outputs, ProcessError, Record};

/// The output topic that re-keys a record through the processor's own
/// repartition topic, and the topic of the batches it comes back in.
pub const TOPIC: &str = "sluice.repartition";

/// Which step a batch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Records from one of the processor's input topics: to re-key.
    Input,
    /// Re-keyed records back from the repartition topic: to aggregate.
    Repartitioned,
}

/// The step `batch` is for, from its topic.
pub fn step(batch: &Batch) -> Step {
    if batch.topic() == TOPIC {
        Step::Repartitioned
    } else {
        Step::Input
    }
}

/// Writes each record of `batch` to [`TOPIC`] under the key `key` returns
/// for it (value, headers and timestamp unchanged); `None` skips the
/// record, an error fails the batch naming the record.
pub fn group_by<E: Display>(
    batch: Batch,
    outputs: &mut Outputs,
    mut key: impl FnMut(&Record) -> Result<Option<Vec<u8>>, E>,
) -> Result<(), ProcessError> {
    outputs.reserve(batch.len());
    for (source, record) in batch.indexed() {
        let new_key = key(&record).map_err(|error| ProcessError::at(source, error))?;
        if let Some(new_key) = new_key {
            outputs.push(source, rekeyed(record, new_key));
        }
    }
    Ok(())
}

/// `record` re-keyed by `key`, to [`TOPIC`].
pub fn rekeyed(record: Record, key: Vec<u8>) -> Output {
    Output::from_record(record).key(key).topic(TOPIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn page(record: &Record) -> Result<Option<Vec<u8>>, Error> {
        let value: serde_json::Value = record.json()?;
        Ok(value["page"].as_str().map(|page| page.as_bytes().to_vec()))
    }

    #[test]
    fn group_by_rekeys_to_the_repartition_topic_keeping_the_rest() {
        let records = vec![
            Record::new(r#"{"page":"/a"}"#)
                .with_key("ann")
                .with_timestamp(7)
                .with_header("h", "v"),
            Record::new(r#"{"other":1}"#).with_key("bob"),
        ];
        let batch = Batch::new("views", 0, records);
        assert_eq!(step(&batch), Step::Input);
        let mut outputs = Outputs::default();
        group_by(batch, &mut outputs, page).unwrap();
        let pairs = outputs.into_pairs().unwrap();
        assert_eq!(pairs.len(), 1, "no page: skipped");
        let (source, output) = &pairs[0];
        assert_eq!(*source, 0);
        assert_eq!(output.topic.as_deref(), Some(TOPIC));
        let record = output.record().unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"/a"[..]));
        assert_eq!(record.value.as_deref(), Some(&br#"{"page":"/a"}"#[..]));
        assert_eq!(record.timestamp, Some(7));
        assert_eq!(record.headers.len(), 1);
        assert_eq!(step(&Batch::new(TOPIC, 3, Vec::new())), Step::Repartitioned);
    }

    #[test]
    fn a_key_error_names_the_record() {
        let batch = Batch::new(
            "views",
            0,
            vec![Record::new(r#"{"page":"/"}"#), Record::new("nope")],
        );
        let error = group_by(batch, &mut Outputs::default(), page).unwrap_err();
        assert_eq!(error.source, Some(1), "{error:?}");
    }
}
