//! A task's changelog (`--changelog`): every commit also appends the keys
//! of the task's state it changed to one partition of the processor's
//! compacted changelog topic, in the commit's own transaction, so the
//! changelog holds whole commits or nothing; a task whose state is lost
//! restores it from there instead of reprocessing its input.
//!
//! # Records
//! One record per key of the task's range changed by the commit, the key
//! being the RocksDB key without its 4-byte task prefix (see
//! `state::keys`): store entries (`0x01 name_len name user_key`), timers
//! (`0x02 domain at user_key`) and the task's commit record (`0x00`, its
//! JSON `TaskMeta`, first in each commit). The value is the value, or
//! null (a tombstone) for a delete; a range delete is staged as one delete
//! per key it removes, so it is one tombstone per key here. Compaction
//! keeps the latest record per key, which is the state.
//!
//! # Why a restore is exact
//! The commit record comes back with the entries, so position, stream
//! time, timers and counters are those of the last commit in the
//! changelog, and its list of where the transaction's batches begin in
//! the outputs lets
//! recovery end the transactions a crash left open, as it does from
//! RocksDB. The changelog partition gets its commit marker before every
//! other partition of the transaction: a transaction committed anywhere
//! is committed in the changelog, and one still open in the changelog is
//! committed nowhere, so aborting it everywhere loses nothing. The
//! transaction coordinator leaves the transactions of the producers that
//! wrote a changelog to their tasks ([`producer_ids`]), even with the
//! state that names them gone.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::meta::TaskMeta;
use super::transaction::Transaction;
use crate::log::{Isolation, LogError, LogStore, Partition};
use crate::processor::output::{OutRecord, Routed};
use crate::processor::status::{now_ms, PartitionStats};
use crate::state::{is_meta_suffix, TaskState};

/// Bytes read from the changelog at a time while restoring.
const RESTORE_READ_BYTES_MAX: usize = 8 << 20;

/// Bytes of a RocksDB write batch while restoring.
const RESTORE_BATCH_BYTES_MAX: usize = 16 << 20;

/// Bytes a changelog batch may hold beyond the largest key and value.
const BATCH_OVERHEAD_BYTES: u64 = 64 << 10;

/// One task's changelog partition.
#[derive(Clone)]
pub(crate) struct Changelog {
    store: Arc<LogStore>,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// Partitions the topic is created with: the task's input's.
    partitions: i32,
}

impl std::fmt::Debug for Changelog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changelog")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish()
    }
}

/// What a restore brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Restored {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    /// The changelog offsets read, `[from, to)`.
    pub(crate) offsets: (i64, i64),
    pub(crate) elapsed_ms: u64,
}

impl Changelog {
    pub(crate) fn new(
        store: Arc<LogStore>,
        topic: String,
        partition: i32,
        partitions: i32,
    ) -> Self {
        Self {
            store,
            topic,
            partition,
            partitions: partitions.max(partition + 1),
        }
    }

    /// The task's changelog partition, creating the topic (compacted, its
    /// batches large enough for the largest key and value) or adding
    /// partitions as needed.
    pub(crate) fn ensure(&self, state: &TaskState) -> Result<Arc<Partition>, String> {
        let failed = |e: LogError| format!("creating the changelog topic {}: {e}", self.topic);
        match self.store.topic(&self.topic) {
            None => {
                let config = state.config();
                let batch_bytes =
                    (config.key_bytes_max + config.value_bytes_max) as u64 + BATCH_OVERHEAD_BYTES;
                let overrides = BTreeMap::from([
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    ("max.message.bytes".to_string(), batch_bytes.to_string()),
                ]);
                match self
                    .store
                    .create_topic(&self.topic, self.partitions, overrides)
                {
                    Ok(_) | Err(LogError::TopicExists(_)) => {}
                    Err(error) => return Err(failed(error)),
                }
                tracing::info!(topic = %self.topic, partitions = self.partitions,
                    "created a processor's changelog topic");
            }
            Some(topic) if topic.partition_count() <= self.partition => self
                .store
                .create_partitions(&self.topic, self.partition + 1)
                .map_err(failed)?,
            Some(_) => {}
        }
        self.store
            .partition(&self.topic, self.partition)
            .map_err(|e| {
                format!(
                    "the changelog partition {}/{}: {e}",
                    self.topic, self.partition
                )
            })
    }

    /// Aborts, in every partition of `outputs`, the transactions left open
    /// by the producers that wrote this changelog partition other than
    /// `producer_id` (the one the task's commit record names, whose
    /// transactions recovery ends). Only this task writes the partition,
    /// so they are its own earlier producers, from before a restore whose
    /// commit record could not name them; the transaction coordinator
    /// leaves them alone (see [`producer_ids`]), so nothing else would end
    /// them. None of their open transactions committed: a commit's
    /// changelog marker comes first, and a committed changelog commit
    /// names the producer of every later commit.
    pub(crate) fn abort_strays(&self, outputs: &[String], producer_id: i64) -> Result<(), String> {
        let Ok(partition) = self.store.partition(&self.topic, self.partition) else {
            return Ok(());
        };
        let mut strays = partition.producer_ids();
        strays.extend(partition.open_transactions().into_iter().map(|(id, _)| id));
        strays.sort_unstable();
        strays.dedup();
        for stray in strays.into_iter().filter(|id| *id != producer_id) {
            let meta = TaskMeta {
                producer_id: stray,
                ..TaskMeta::fresh()
            };
            super::transaction::end_open(&self.store, outputs, &meta)?;
        }
        Ok(())
    }

    /// Appends the commit's changes and `meta` to the changelog in the
    /// open transaction. The changelog's copy of `meta` names where the
    /// transaction's batches begin in the outputs (what recovery after a
    /// restore needs: the changelog's own batches are committed when they
    /// are restored, and aborted otherwise); the commit point's copy, from
    /// the transaction afterwards, names the changelog's too.
    pub(super) fn write(
        &self,
        transaction: &mut Transaction,
        state: &TaskState,
        meta: &TaskMeta,
    ) -> Result<(), String> {
        self.ensure(state)?;
        let logged = TaskMeta {
            committed: transaction.first_offsets(),
            ..meta.clone()
        };
        let records = records(state.staged_changes(), &logged.encode(), now_ms());
        let mut routed = Routed::default();
        routed.push_to(&self.topic, self.partition, records);
        transaction
            .write(&self.store, routed)
            .map_err(|e| format!("writing the changelog failed: {e}"))
    }

    /// Restores the task's state from the changelog, read_committed from
    /// its log start to its last stable offset, in bulk (see
    /// `state::restore`). `None` when the changelog has nothing.
    pub(crate) fn restore(
        &self,
        state: &mut TaskState,
        stats: &PartitionStats,
        abort: &AtomicBool,
    ) -> Result<Option<Restored>, String> {
        let Ok(partition) = self.store.partition(&self.topic, self.partition) else {
            return Ok(None);
        };
        let (from, to) = (partition.log_start_offset(), partition.last_stable_offset());
        if from >= to {
            return Ok(None);
        }
        let started = Instant::now();
        stats.restored_records.store(0, Ordering::Relaxed);
        stats.restored_bytes.store(0, Ordering::Relaxed);
        stats.restoring.store(true, Ordering::Relaxed);
        let read = read_into(state, &partition, (from, to), stats, abort);
        stats.restoring.store(false, Ordering::Relaxed);
        let meta = read.map_err(|e| format!("restoring from {}: {e}", self.topic))?;
        let records = PartitionStats::get(&stats.restored_records);
        let meta = match meta {
            Some(meta) => meta,
            // Only aborted commits so far: nothing to restore.
            None if records == 0 => {
                state.clear().map_err(|e| e.to_string())?;
                return Ok(None);
            }
            None => {
                return Err(format!(
                    "restoring from {}: {records} records and no commit record",
                    self.topic
                ))
            }
        };
        // Checked before it counts: the restored commit record decodes.
        let mut meta = TaskMeta::decode(&meta)?;
        // The epochs the producer took after this commit were recorded
        // only in the lost state: an exhausted epoch makes recovery take a
        // fresh producer id, also after a crash before it runs (it ends
        // this producer's open transactions first, with their own epochs).
        meta.producer_epoch = i16::MAX;
        super::hold_point("before-restore-finish");
        state
            .finish_restore(&meta.encode())
            .map_err(|e| format!("restoring from {}: {e}", self.topic))?;
        Ok(Some(Restored {
            records: PartitionStats::get(&stats.restored_records),
            bytes: PartitionStats::get(&stats.restored_bytes),
            offsets: (from, to),
            elapsed_ms: started.elapsed().as_millis() as u64,
        }))
    }
}

/// The changelog records of a commit: `meta` first, then every change.
pub(crate) fn records<'a>(
    changes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    meta: &[u8],
    timestamp: i64,
) -> Vec<OutRecord> {
    let record = |suffix: &[u8], value: Option<&[u8]>| OutRecord {
        key: Some(Bytes::copy_from_slice(suffix)),
        value: value.map(Bytes::copy_from_slice),
        headers: Vec::new(),
        timestamp,
    };
    let mut records = vec![record(&[0x00], Some(meta))];
    records.extend(changes.map(|(key, value)| record(&key[4..], value)));
    records
}

/// Reads `[from, to)` of the changelog into the task's state; returns the
/// last commit record, if any. Progress goes to `stats` batch by batch.
fn read_into(
    state: &mut TaskState,
    partition: &Partition,
    (from, to): (i64, i64),
    stats: &PartitionStats,
    abort: &AtomicBool,
) -> Result<Option<Bytes>, String> {
    let mut restorer = state.begin_restore().map_err(|e| e.to_string())?;
    let mut meta = None;
    let mut failure = None;
    let mut position = from;
    while position < to {
        if abort.load(Ordering::Relaxed) {
            return Err("interrupted by shutdown (the restore starts again)".into());
        }
        let read = partition
            .read_isolated(position, RESTORE_READ_BYTES_MAX, Isolation::ReadCommitted)
            .map_err(|e| format!("reading offset {position}: {e}"))?;
        if read.records.is_empty() {
            break;
        }
        let (mut records, mut bytes) = (0u64, 0u64);
        let next = partition
            .committed_records(read, position, |record| {
                if failure.is_some() || record.offset >= to {
                    return;
                }
                let key = record.key.unwrap_or_default();
                bytes += (key.len() + record.value.as_ref().map_or(0, Bytes::len)) as u64;
                records += 1;
                if is_meta_suffix(&key) {
                    meta = record.value;
                } else if let Err(error) = restorer.put(&key, record.value.as_deref()) {
                    failure = Some(format!("the record at offset {}: {error}", record.offset));
                }
            })
            .map_err(|e| format!("reading offset {position}: {e}"))?;
        if let Some(failure) = failure.take() {
            return Err(failure);
        }
        if restorer.batch_bytes() >= RESTORE_BATCH_BYTES_MAX {
            restorer.write().map_err(|e| e.to_string())?;
        }
        PartitionStats::add(&stats.restored_records, records);
        PartitionStats::add(&stats.restored_bytes, bytes);
        if next <= position {
            break;
        }
        position = next;
    }
    restorer.write().map_err(|e| e.to_string())?;
    Ok(meta)
}

/// The producers that wrote a processor's changelog: their transactions
/// are their tasks' to end, even when the state that names them is gone
/// (the transaction coordinator would abort them as hanging otherwise).
pub(crate) fn producer_ids(store: &LogStore) -> HashSet<i64> {
    let mut ids = HashSet::new();
    for topic in store.topics() {
        let name = topic.name();
        if !(name.starts_with("sluice-processor-") && name.ends_with("-changelog")) {
            continue;
        }
        for id in 0..topic.partition_count() {
            if let Ok(partition) = store.partition(name, id) {
                ids.extend(partition.producer_ids());
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::transactions::Marker;
    use crate::log::{FlushPolicy, StdIo, StoreOptions, SystemClock};
    use crate::processor::output;
    use crate::state::{store_prefix, Domain, StateConfig, StateDb};

    const TASK: u32 = 3;

    fn log_store(dir: &std::path::Path) -> Arc<LogStore> {
        let options = StoreOptions {
            flush: FlushPolicy::Never,
            ..StoreOptions::default()
        };
        Arc::new(LogStore::open(dir, options, Arc::new(StdIo), Arc::new(SystemClock)).unwrap())
    }

    fn task_state(dir: &std::path::Path) -> TaskState {
        let db = StateDb::open(dir, &StateConfig::default()).unwrap();
        TaskState::new(db.processor("p").unwrap(), TASK)
    }

    /// `(key, value)` of changelog records.
    fn pairs(records: &[OutRecord]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        records
            .iter()
            .map(|r| {
                (
                    r.key.as_ref().unwrap().to_vec(),
                    r.value.as_ref().map(|v| v.to_vec()),
                )
            })
            .collect()
    }

    fn entry(user_key: &[u8]) -> Vec<u8> {
        [&store_prefix(TASK, "counts")[4..], user_key].concat()
    }

    #[test]
    fn commit_records_drop_the_task_and_a_range_delete_is_a_tombstone_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = task_state(dir.path());
        let counts = store_prefix(TASK, "counts");
        for key in ["a", "b", "c"] {
            state.put(&counts, key.as_bytes(), b"1").unwrap();
        }
        state.commit(b"{}", true).unwrap();
        // Committed a and b, and a staged put in the range, all deleted.
        state.put(&counts, b"ab", b"2").unwrap();
        assert_eq!(state.delete_range(&counts, b"a", Some(b"c")).unwrap(), 3);
        state.put(&counts, b"d", b"4").unwrap();
        state.schedule(Domain::EventTime, b"d", 60_000).unwrap();
        let records = records(state.staged_changes(), b"meta", 7);
        let mut timer = vec![0x02, 0x00];
        timer.extend_from_slice(&crate::state::ordered_i64(60_000));
        timer.extend_from_slice(b"d");
        assert_eq!(
            pairs(&records),
            vec![
                (vec![0x00], Some(b"meta".to_vec())),
                (entry(b"a"), None),
                (entry(b"ab"), None),
                (entry(b"b"), None),
                (entry(b"d"), Some(b"4".to_vec())),
                (timer, Some(Vec::new())),
            ]
        );
        assert!(records.iter().all(|r| r.timestamp == 7));
    }

    fn meta(position: i64) -> Vec<u8> {
        let mut meta = TaskMeta::fresh();
        meta.inputs.push(super::super::InputMeta {
            topic: "in".into(),
            position,
            ..Default::default()
        });
        meta.encode()
    }

    fn record(key: Vec<u8>, value: Option<&[u8]>) -> OutRecord {
        OutRecord {
            key: Some(key.into()),
            value: value.map(Bytes::copy_from_slice),
            headers: Vec::new(),
            timestamp: 0,
        }
    }

    #[test]
    fn a_restore_applies_committed_records_in_order_skips_aborted_ones_and_survives_interruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = log_store(&dir.path().join("data"));
        let changelog = Changelog::new(store.clone(), "p-changelog".into(), 1, 2);
        let mut state = task_state(&dir.path().join("state"));
        let partition = changelog.ensure(&state).unwrap();
        assert!(partition.config().cleanup_policy.compacts());
        let write = |records: &mut [OutRecord]| {
            partition.append(&output::encode(records)).unwrap();
        };
        write(&mut [
            record(vec![0x00], Some(&meta(10))),
            record(entry(b"a"), Some(b"1")),
            record(entry(b"b"), Some(b"2")),
        ]);
        // An aborted commit changes nothing.
        let mut aborted = [
            record(vec![0x00], Some(&meta(99))),
            record(entry(b"a"), Some(b"9")),
        ];
        partition
            .append(&output::encode_transactional(&mut aborted, 5, 0, 0))
            .unwrap();
        let marker = Marker {
            producer_id: 5,
            producer_epoch: 0,
            commit: false,
            coordinator_epoch: 0,
        };
        let info = partition.write_marker(&marker).unwrap();
        partition.acknowledge(&info).unwrap();
        write(&mut [
            record(vec![0x00], Some(&meta(20))),
            record(entry(b"b"), None),
            record(entry(b"c"), Some(b"3")),
        ]);
        // A restore interrupted after writing something: redone from scratch.
        let mut restorer = state.begin_restore().unwrap();
        restorer.put(&entry(b"zombie"), Some(b"x")).unwrap();
        restorer.write().unwrap();
        drop(restorer);
        assert!(state.restore_pending().unwrap());

        let stats = PartitionStats::new("in", 1);
        let restored = changelog
            .restore(&mut state, &stats, &AtomicBool::new(false))
            .unwrap()
            .unwrap();
        assert_eq!(restored.records, 6);
        assert!(!state.restore_pending().unwrap());
        assert!(!stats.restoring.load(Ordering::Relaxed));
        let counts = store_prefix(TASK, "counts");
        let page = state.scan(&counts, b"", None, 100).unwrap();
        let entries: Vec<_> = page
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            entries,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        let restored_meta = TaskMeta::decode(&state.meta().unwrap().unwrap()).unwrap();
        assert_eq!(restored_meta.inputs[0].position, 20);
    }

    #[test]
    fn a_record_that_is_not_a_state_key_fails_the_restore_and_leaves_it_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = log_store(&dir.path().join("data"));
        let changelog = Changelog::new(store, "p-changelog".into(), 0, 1);
        let mut state = task_state(&dir.path().join("state"));
        let partition = changelog.ensure(&state).unwrap();
        partition
            .append(&output::encode(&mut [
                record(vec![0x00], Some(&meta(1))),
                record(b"garbage".to_vec(), Some(b"1")),
            ]))
            .unwrap();
        let stats = PartitionStats::new("in", 0);
        let error = changelog
            .restore(&mut state, &stats, &AtomicBool::new(false))
            .unwrap_err();
        assert!(error.contains("offset 1"), "{error}");
        assert!(state.restore_pending().unwrap());
        assert_eq!(state.meta().unwrap(), None);
    }
}
