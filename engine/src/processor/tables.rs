//! Table lookups: a topic materialised into a read-only store that every
//! task of the processor reads, whatever its partition (Kafka Streams'
//! GlobalKTable). The usual use is enriching a stream from a table of
//! reference data: clicks keyed by user, looked up in user profiles.
//!
//! The table lives in the processor's state under its own task
//! ([`TABLE_TASK`]): the latest value per key, a tombstone deleting it.
//! Before each step a task brings the tables up to their topics' last
//! stable offsets (read_committed), so a lookup sees at least every table
//! record committed before the step began. The positions reached are
//! written with the entries (one write batch), so a restart carries on
//! from there; re-applying a record is harmless (the latest value wins).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::log::{CommittedReadError, Isolation, LogError, LogStore};
use crate::state::{store_prefix, ProcessorState};

/// The task id under which tables are kept (partitions are far below it).
pub(crate) const TABLE_TASK: u32 = u32::MAX - 1;

/// Table bytes read per catch-up at most; the rest waits for the next step.
const CATCH_UP_BYTES_MAX: usize = 16 << 20;

/// A table a processor reads: store `store`, materialised from `topic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableSpec {
    pub(crate) store: String,
    pub(crate) topic: String,
}

/// The positions reached, by `topic/partition`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Positions {
    next: BTreeMap<String, i64>,
}

/// A processor's tables and how far each topic partition is applied.
pub(crate) struct Tables {
    log: Arc<LogStore>,
    state: ProcessorState,
    tables: Vec<TableSpec>,
    positions: Mutex<Positions>,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("tables", &self.tables)
            .finish()
    }
}

impl Tables {
    pub(crate) fn open(
        log: Arc<LogStore>,
        state: ProcessorState,
        tables: Vec<TableSpec>,
    ) -> Result<Arc<Self>, String> {
        let positions = match state.meta(TABLE_TASK).map_err(|e| e.to_string())? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the tables' positions are unreadable: {e}"))?,
            None => Positions::default(),
        };
        Ok(Arc::new(Self {
            log,
            state,
            tables,
            positions: Mutex::new(positions),
        }))
    }

    /// Applies what the table topics gained up to their last stable
    /// offsets, [`CATCH_UP_BYTES_MAX`] at a time (each its own write), so a
    /// step never sees a table behind what was committed before it began:
    /// the first step waits for the whole table, as Kafka Streams bootstraps
    /// a global table before processing.
    pub(crate) fn catch_up(&self) -> Result<(), String> {
        while !self.catch_up_some()? {}
        Ok(())
    }

    /// One round of [`Tables::catch_up`]; whether the tables are caught up.
    fn catch_up_some(&self) -> Result<bool, String> {
        let mut positions = self.positions.lock().expect("table positions lock");
        let mut writes = Vec::new();
        let mut bytes = 0;
        let mut caught_up = true;
        for table in &self.tables {
            let Some(topic) = self.log.topic(&table.topic) else {
                continue;
            };
            let prefix = store_prefix(TABLE_TASK, &table.store);
            for id in 0..topic.partition_count() {
                let name = format!("{}/{id}", table.topic);
                let next = positions.next.get(&name).copied().unwrap_or(0);
                let (reached, behind) = self
                    .apply(&table.topic, id, next, &prefix, &mut writes, &mut bytes)
                    .map_err(|e| format!("reading table topic {}/{id}: {e}", table.topic))?;
                caught_up &= !behind;
                positions.next.insert(name, reached);
            }
        }
        let meta = serde_json::to_vec(&*positions).expect("positions serialize");
        self.state
            .write(TABLE_TASK, writes, &meta)
            .map_err(|e| format!("writing tables failed: {e}"))?;
        Ok(caught_up)
    }

    /// Reads partition `id` of `topic` from `next` up to its LSO, adding the
    /// latest value per key to `writes`; returns the offset reached and
    /// whether it stopped short of the LSO (the round's byte budget).
    fn apply(
        &self,
        topic: &str,
        id: i32,
        mut next: i64,
        prefix: &[u8],
        writes: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>,
        bytes: &mut usize,
    ) -> Result<(i64, bool), LogError> {
        let partition = self.log.partition(topic, id)?;
        next = next.max(partition.log_start_offset());
        let target = partition.last_stable_offset();
        while next < target {
            if *bytes >= CATCH_UP_BYTES_MAX {
                return Ok((next, true));
            }
            let read = partition.read_isolated(next, 1 << 20, Isolation::ReadCommitted)?;
            if read.records.is_empty() {
                return Ok((next.max(read.last_stable_offset), false));
            }
            *bytes += read.records.len();
            let from = next;
            next = partition
                .committed_records(read, from, |record| {
                    if let Some(key) = record.key {
                        let mut full = prefix.to_vec();
                        full.extend_from_slice(&key);
                        writes.push((full, record.value.map(|v| v.to_vec())));
                    }
                })
                .map_err(|error| match error {
                    CommittedReadError::Header(error)
                    | CommittedReadError::Decode { error, .. } => LogError::Batch(error),
                })?;
        }
        Ok((next, false))
    }
}
