//! A task's output transaction: transactional batches appended with the
//! task's producer id and epoch, made durable before the commit point, and
//! ended with markers after it; and, at the task's start, the ending of
//! whatever a crash left open.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::meta::{CommittedOutput, TaskMeta};
use crate::log::transactions::Marker;
use crate::log::{AppendInfo, LogError, LogStore, Partition};
use crate::processor::output::{self, OutRecord, Routed};

/// Allocates producer ids (the broker's allocator, shared with Kafka
/// producers so ids never collide).
pub(crate) type ProducerIds = Arc<dyn Fn() -> std::io::Result<i64> + Send + Sync>;

/// An output partition the open transaction wrote to.
struct Open {
    partition: Arc<Partition>,
    first_offset: i64,
    last: AppendInfo,
}

/// The task's transactional producer and its open transaction.
pub(crate) struct Transaction {
    producer_ids: ProducerIds,
    /// (producer id, epoch); -1 until recovery assigns them.
    producer: (i64, i16),
    /// Next sequence per output partition, for the current epoch.
    sequences: HashMap<(String, i32), i32>,
    open: BTreeMap<(String, i32), Open>,
    /// Payload bytes written in the open transaction.
    bytes: usize,
    /// Commit markers written after the last commit point: fsynced before
    /// the next one replaces its record of them.
    unsynced_markers: Vec<(Arc<Partition>, AppendInfo)>,
    /// At-least-once: each output partition's last append since the last
    /// commit point, made durable before the next one (not at every step:
    /// an fsync a batch was a third of the task's time).
    unacknowledged: output::LastAppends,
    /// The partition whose marker is written before the others (the
    /// task's changelog partition): a transaction committed anywhere is
    /// then committed in the changelog, which a restore relies on.
    marked_first: Option<(String, i32)>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("producer", &self.producer)
            .field("open", &self.open.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Transaction {
    pub(super) fn new(producer_ids: ProducerIds) -> Self {
        Self {
            producer_ids,
            producer: (-1, -1),
            sequences: HashMap::new(),
            open: BTreeMap::new(),
            bytes: 0,
            unsynced_markers: Vec::new(),
            unacknowledged: BTreeMap::new(),
            marked_first: None,
        }
    }

    /// Writes `topic`/`partition`'s marker before the others'.
    pub(super) fn mark_first(&mut self, topic: &str, partition: i32) {
        self.marked_first = Some((topic.to_string(), partition));
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Ends the transactions of `meta`'s producer left open in `outputs`
    /// (committed when the last commit recorded them, else aborted), then
    /// moves `meta` to a fresh epoch (or producer id, past the last epoch).
    pub(super) fn recover(
        &mut self,
        store: &LogStore,
        outputs: &[String],
        meta: &mut TaskMeta,
    ) -> Result<(), String> {
        self.open.clear();
        self.unsynced_markers.clear();
        self.unacknowledged.clear();
        self.bytes = 0;
        if meta.producer_id >= 0 {
            end_open(store, outputs, meta)?;
        }
        // The record of the last commit is about to be replaced: its
        // markers (written by an earlier incarnation of the task, maybe not
        // fsynced) must be durable first, or a power cut could bring its
        // transaction back open with nothing left to say it committed.
        for committed in &meta.committed {
            if let Ok(partition) = store.partition(&committed.topic, committed.partition) {
                partition.make_durable(i64::MAX).map_err(|e| {
                    format!(
                        "making the last commit's markers in {}/{} durable failed: {e}",
                        committed.topic, committed.partition
                    )
                })?;
            }
        }
        if meta.producer_id < 0 || meta.producer_epoch >= i16::MAX - 1 {
            meta.producer_id = (self.producer_ids)()
                .map_err(|e| format!("allocating a producer id failed: {e}"))?;
            meta.producer_epoch = 0;
        } else {
            meta.producer_epoch += 1;
        }
        self.producer = (meta.producer_id, meta.producer_epoch);
        self.sequences.clear();
        Ok(())
    }

    /// Appends `routed` as transactional batches (not yet durable).
    pub(crate) fn write(&mut self, store: &LogStore, routed: Routed) -> Result<(), LogError> {
        let (producer_id, producer_epoch) = self.producer;
        debug_assert!(producer_id >= 0, "recovered before writing");
        for ((topic, id), mut records) in routed.into_partitions() {
            let partition = store.partition(&topic, id)?;
            let budget = output::check_and_budget(&partition, &topic, &records)?;
            for range in output::chunks(&records, budget) {
                let chunk = &mut records[range];
                self.bytes += chunk.iter().map(OutRecord::payload_bytes).sum::<usize>();
                let sequence = self.sequences.entry((topic.clone(), id)).or_insert(0);
                let encoded =
                    output::encode_transactional(chunk, producer_id, producer_epoch, *sequence);
                let info = partition.write_encoded(&encoded)?;
                *sequence = sequence.wrapping_add(chunk.len() as i32) & i32::MAX;
                let open = self.open.entry((topic.clone(), id)).or_insert(Open {
                    partition: partition.clone(),
                    first_offset: info.base_offset,
                    last: info,
                });
                open.last = info;
            }
        }
        Ok(())
    }

    /// At-least-once: appends `routed` as plain batches, visible now if
    /// the flush policy lets them be, and durable before the next commit
    /// point.
    pub(crate) fn write_plain(&mut self, store: &LogStore, routed: Routed) -> Result<(), LogError> {
        self.bytes += routed.payload_bytes();
        for (key, (partition, last)) in routed.append(store)? {
            if !partition.acknowledge_blocks() {
                partition.acknowledge(&last)?;
            }
            self.unacknowledged.insert(key, (partition, last));
        }
        Ok(())
    }

    /// Makes the open transaction's batches (or the plain outputs since the
    /// last commit point), and the markers of the last transaction,
    /// durable; returns what the commit point records.
    pub(super) fn prepare(&mut self) -> Result<Vec<CommittedOutput>, LogError> {
        for open in self.open.values() {
            open.partition.acknowledge_durable(&open.last)?;
        }
        for (_, (partition, last)) in std::mem::take(&mut self.unacknowledged) {
            partition.acknowledge_durable(&last)?;
        }
        for (partition, marker) in self.unsynced_markers.drain(..) {
            partition.acknowledge_durable(&marker)?;
        }
        Ok(self.first_offsets())
    }

    /// Where the open transaction's batches begin in each partition it
    /// wrote, in (topic, partition) order.
    pub(super) fn first_offsets(&self) -> Vec<CommittedOutput> {
        self.open
            .iter()
            .map(|((topic, partition), open)| CommittedOutput {
                topic: topic.clone(),
                partition: *partition,
                first_offset: open.first_offset,
            })
            .collect()
    }

    /// Forgets the open transaction without ending it (recovery will).
    pub(super) fn forget(&mut self) {
        self.open.clear();
        self.bytes = 0;
    }

    /// Writes commit (or abort) markers to every partition of the open
    /// transaction and forgets it.
    pub(super) fn complete(&mut self, commit: bool) -> Result<(), LogError> {
        let (producer_id, producer_epoch) = self.producer;
        let mut open = std::mem::take(&mut self.open);
        self.bytes = 0;
        let several = open.len() > 1;
        let first = self
            .marked_first
            .as_ref()
            .and_then(|key| open.remove_entry(key));
        let marker = Marker {
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch: 0,
        };
        let mut failed = None;
        for (_, open) in first.into_iter().chain(open) {
            let written = open
                .partition
                .write_marker(&marker)
                .and_then(|info| open.partition.acknowledge(&info).map(|()| info));
            if let (true, Ok(info)) = (several, &written) {
                let point = if commit {
                    "between-markers"
                } else {
                    "during-abort"
                };
                super::crash_point_after(point, || {
                    let _ = open.partition.acknowledge_durable(info);
                });
            }
            match written {
                Ok(info) if commit => self.unsynced_markers.push((open.partition, info)),
                Ok(_) => {}
                Err(error) => failed = Some(error),
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// At startup, before any task runs: ends the open transactions of every
/// task with a commit record, in every topic, whether or not its processor
/// will run (a paused task does not step, a processor that no longer loads
/// has no tasks, a redeploy may have dropped an output): an open one would
/// hold its partition's last stable offset, and so its read_committed
/// readers, until then.
pub(crate) fn end_all_open(
    store: &LogStore,
    state: &Arc<crate::state::StateDb>,
) -> Result<(), String> {
    let topics: Vec<String> = store
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    for name in state.processors() {
        let Some(processor) = state.existing(&name) else {
            continue;
        };
        for (_, bytes) in processor.metas().map_err(|e| e.to_string())? {
            let Ok(meta) = TaskMeta::decode(&bytes) else {
                continue;
            };
            if meta.producer_id >= 0 {
                end_open(store, &topics, &meta)?;
            }
        }
    }
    Ok(())
}

/// Ends `meta`'s producer's open transactions in the partitions of
/// `outputs`: committed where the last commit point recorded them,
/// aborted elsewhere. Durable before returning.
pub(super) fn end_open(
    store: &LogStore,
    outputs: &[String],
    meta: &TaskMeta,
) -> Result<(), String> {
    for topic in outputs {
        let Some(handle) = store.topic(topic) else {
            continue;
        };
        for id in 0..handle.partition_count() {
            let Ok(partition) = store.partition(topic, id) else {
                continue;
            };
            let Some((first_offset, producer_epoch)) = partition.open_transaction(meta.producer_id)
            else {
                continue;
            };
            let commit = meta
                .committed
                .iter()
                .any(|c| &c.topic == topic && c.partition == id && c.first_offset == first_offset);
            let marker = Marker {
                producer_id: meta.producer_id,
                producer_epoch,
                commit,
                coordinator_epoch: 0,
            };
            partition
                .write_marker(&marker)
                .and_then(|info| partition.acknowledge_durable(&info))
                .map_err(|e| format!("ending the open transaction in {topic}/{id} failed: {e}"))?;
            tracing::info!(
                topic,
                partition = id,
                producer_id = meta.producer_id,
                commit,
                first_offset,
                "processor recovery ended a transaction left open"
            );
        }
    }
    Ok(())
}
