//! The transaction coordinator: one entry per transactional id, each behind
//! its own mutex, so requests for one id are serialised (as Kafka's
//! coordinator serialises them per id) while different ids proceed in
//! parallel. Every change is written to the transaction log and fsynced
//! (`store.rs`) before it is applied in memory and answered.
//!
//! Ending a transaction happens inside the request that asks for it
//! (EndTxn, an InitProducerId that fences, the timeout check), under the
//! id's lock: Prepare state durable, markers written and fsynced to every
//! partition, offsets committed, Complete state durable. A transactional
//! Produce takes the same lock around its write, so no write of the
//! transaction can land after its marker. A failure leaves the id in its
//! Prepare state; the periodic check (`tick`) and recovery on open finish
//! it.
//!
//! Lock order: an entry, then the transaction log, a partition, the
//! group coordinator. The id map is held only briefly: it is released
//! before an existing entry is locked, taken while holding an entry to
//! remove an expired id (entry → map), and holds a new entry only with
//! `try_lock` on an entry nobody else can have seen, so it never waits
//! for an entry while held.
//!
//! All of it is blocking (fsyncs): handlers call it from spawn_blocking.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::TransactionConfig;
use super::offsets::PendingIndex;
use super::producer_ids::ProducerIds;
use super::state::{TransactionMetadata, TransactionRecord, TransactionState};
use super::store::TransactionLog;
use super::TransactionError;
use crate::group::GroupCoordinator;
use crate::log::{AppendInfo, Clock, Io, LogError, LogStore, Partition};

/// One transactional id's state, locked while a request works on it.
pub(super) type Entry = Arc<Mutex<TransactionMetadata>>;

/// The coordinator (see the module header).
pub(crate) struct TransactionCoordinator {
    pub(super) config: TransactionConfig,
    pub(super) clock: Arc<dyn Clock>,
    io: Arc<dyn Io>,
    pub(super) log: TransactionLog,
    ids: Mutex<HashMap<String, Entry>>,
    producer_ids: ProducerIds,
    pub(super) store: Arc<LogStore>,
    pub(super) groups: Arc<GroupCoordinator>,
    /// Group → (topic, partition) → open transactions with an offset
    /// pending for it, for OffsetFetch's `require_stable`. Bounded by the
    /// pending offsets of all transactions (`partitions_max` each).
    pub(super) pending: Mutex<PendingIndex>,
}

/// Epochs stop one short of `i16::MAX`: a producer at the last one gets a
/// new producer id instead of a bump.
const EPOCH_MAX: i16 = i16::MAX - 1;

impl TransactionCoordinator {
    /// Opens the transaction log in `<data_dir>/transactions` and the
    /// producer id allocator, and finishes transactions a crash left in a
    /// Prepare state (see [`TransactionCoordinator::recover`]).
    pub(crate) fn open(
        config: TransactionConfig,
        clock: Arc<dyn Clock>,
        io: Arc<dyn Io>,
        data_dir: &Path,
        store: Arc<LogStore>,
        groups: Arc<GroupCoordinator>,
        foreign_producers: std::collections::HashSet<i64>,
    ) -> std::io::Result<Self> {
        let producer_ids = ProducerIds::open(io.as_ref(), data_dir)?;
        let (log, replayed) = TransactionLog::open(io.clone(), &data_dir.join("transactions"))?;
        let mut pending = PendingIndex::default();
        for meta in replayed.values() {
            pending.add(&meta.pending_offsets);
        }
        let ids = replayed
            .into_iter()
            .map(|(id, meta)| (id, Arc::new(Mutex::new(meta))))
            .collect();
        let coordinator = Self {
            config,
            clock,
            io,
            log,
            ids: Mutex::new(ids),
            producer_ids,
            store,
            groups,
            pending: Mutex::new(pending),
        };
        coordinator.recover(&foreign_producers);
        Ok(coordinator)
    }

    /// Now, by the coordinator's clock (ms since the epoch).
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A new producer id for an idempotent (non-transactional) producer.
    pub(crate) fn allocate_producer_id(&self) -> std::io::Result<i64> {
        self.producer_ids.allocate(self.io.as_ref())
    }

    pub(super) fn entry(&self, transactional_id: &str) -> Option<Entry> {
        self.ids
            .lock()
            .expect("transactional ids lock")
            .get(transactional_id)
            .cloned()
    }

    /// Every entry (a snapshot of the map).
    pub(super) fn entries(&self) -> Vec<Entry> {
        let ids = self.ids.lock().expect("transactional ids lock");
        ids.values().cloned().collect()
    }

    /// Writes `next` durably; the caller then applies it in memory.
    pub(super) fn persist(&self, next: &TransactionMetadata) -> Result<(), TransactionError> {
        self.persist_with(next, true)
    }

    /// [`Self::persist`], waiting for the fsync only with `sync`.
    fn persist_with(&self, next: &TransactionMetadata, sync: bool) -> Result<(), TransactionError> {
        let records = [TransactionRecord::Put(next.clone())];
        let written = if sync {
            self.log.append(&records)
        } else {
            self.log.append_unsynced(&records)
        };
        written.map_err(|error| {
            tracing::error!(transactional_id = %next.transactional_id, %error,
                    "writing the transaction log failed");
            TransactionError::storage(error)
        })
    }

    /// Changes the entry through `change` on a copy, persists the copy and
    /// only then applies it, so memory never runs ahead of the disk.
    pub(super) fn update(
        &self,
        meta: &mut TransactionMetadata,
        change: impl FnOnce(&mut TransactionMetadata),
    ) -> Result<(), TransactionError> {
        self.update_with(meta, true, change)
    }

    /// [`Self::update`], waiting for the fsync only with `sync` (for a
    /// change whose loss in a crash recovery redoes).
    pub(super) fn update_with(
        &self,
        meta: &mut TransactionMetadata,
        sync: bool,
        change: impl FnOnce(&mut TransactionMetadata),
    ) -> Result<(), TransactionError> {
        let mut next = meta.clone();
        change(&mut next);
        next.last_update_ms = self.clock.now_ms();
        if next.state == TransactionState::Ongoing {
            check_record_size(&next)?;
        }
        self.persist_with(&next, sync)?;
        *meta = next;
        Ok(())
    }

    /// Handles InitProducerId for a transactional id: a new id gets a
    /// fresh producer id; a known one has its epoch bumped, which fences
    /// the previous producer, after its open transaction is aborted (with
    /// the new epoch, so the fenced producer's markers and writes are
    /// refused). `current` is the producer id and epoch a producer sends
    /// to bump its own epoch (KIP-360).
    pub(crate) fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        current: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TransactionError> {
        if transactional_id.is_empty() {
            return Err(TransactionError::InvalidTransactionalId);
        }
        let timeout_max_ms = self.config.timeout_max_ms;
        if !(1..=timeout_max_ms).contains(&timeout_ms) {
            return Err(TransactionError::InvalidTimeout {
                timeout_ms,
                timeout_max_ms,
            });
        }
        let Some(entry) = self.entry(transactional_id) else {
            return self.create(transactional_id, timeout_ms);
        };
        let Ok(mut meta) = self.lock_current(transactional_id, &entry) else {
            // Expired meanwhile: the id starts afresh.
            return self.create(transactional_id, timeout_ms);
        };
        if let Some((producer_id, epoch)) = current {
            let same = producer_id == meta.producer_id;
            if same && epoch == meta.last_producer_epoch {
                // A retry of a bump that already happened (maybe answered
                // CONCURRENT_TRANSACTIONS while its abort was unfinished).
                self.finish_prepared(&mut meta)
                    .map_err(|_| TransactionError::Concurrent)?;
                if meta.state != TransactionState::Ongoing {
                    return Ok((meta.producer_id, meta.producer_epoch));
                }
            }
            if !same || epoch != meta.producer_epoch {
                return Err(TransactionError::ProducerFenced {
                    epoch,
                    current: meta.producer_epoch,
                });
            }
        }
        self.finish_prepared(&mut meta)
            .map_err(|_| TransactionError::Concurrent)?;
        let mut fenced = false;
        if meta.state == TransactionState::Ongoing {
            // The current producer bumping its own epoch may retry with the
            // epoch it had; anyone else's bump leaves nothing to retry.
            self.abort_fencing(&mut meta, current.is_some())?;
            if meta.state != TransactionState::CompleteAbort {
                // Decided but its markers are not all written yet: the
                // producer retries until the periodic check has ended it.
                return Err(TransactionError::Concurrent);
            }
            fenced = true;
        }
        // The epoch the producer gets: the fencing one, or the next; past
        // the last usable epoch, a new producer id at epoch 0.
        let next_epoch = meta.producer_epoch as i32 + if fenced { 0 } else { 1 };
        let fresh_id = if next_epoch > EPOCH_MAX as i32 {
            Some(
                self.allocate_producer_id()
                    .map_err(TransactionError::storage)?,
            )
        } else {
            None
        };
        self.update(&mut meta, |next| {
            match fresh_id {
                Some(id) => {
                    next.producer_id = id;
                    next.producer_epoch = 0;
                    next.last_producer_epoch = -1;
                }
                None if !fenced => {
                    // Only the producer bumping its own epoch may retry
                    // with the old one (KIP-360); a new producer's bump
                    // leaves nothing to retry, as in Kafka.
                    next.last_producer_epoch = match current {
                        Some(_) => next.producer_epoch,
                        None => -1,
                    };
                    next.producer_epoch += 1;
                }
                // The current producer aborting its own transaction to bump
                // its epoch (KIP-360) may retry with the epoch it had.
                None if current.is_some() => {
                    next.last_producer_epoch = next.producer_epoch - 1;
                }
                None => {}
            }
            next.timeout_ms = timeout_ms;
            if !fenced {
                next.state = TransactionState::Empty;
            }
        })?;
        tracing::debug!(
            transactional_id,
            producer_id = meta.producer_id,
            epoch = meta.producer_epoch,
            "producer initialised"
        );
        Ok((meta.producer_id, meta.producer_epoch))
    }

    /// A new transactional id. Its entry goes into the map, locked, before
    /// its record is written, so a concurrent request for the same id
    /// waits for it (or, racing to create it too, is told to retry) and
    /// the log never holds two producer ids for one new id.
    fn create(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
    ) -> Result<(i64, i16), TransactionError> {
        let producer_id = self
            .allocate_producer_id()
            .map_err(TransactionError::storage)?;
        let meta = TransactionMetadata::new(
            transactional_id.to_string(),
            producer_id,
            timeout_ms,
            self.clock.now_ms(),
        );
        let entry: Entry = Arc::new(Mutex::new(meta));
        let mut ids = self.ids.lock().expect("transactional ids lock");
        if ids.contains_key(transactional_id) {
            return Err(TransactionError::Concurrent);
        }
        let ids_max = self.config.transactional_ids_max;
        if ids.len() >= ids_max {
            return Err(TransactionError::TooManyIds { ids_max });
        }
        ids.insert(transactional_id.to_string(), entry.clone());
        // Nobody else has seen the entry yet: this cannot block.
        let meta = entry.try_lock().expect("a new entry is unlocked");
        drop(ids);
        if let Err(error) = self.persist(&meta) {
            self.ids
                .lock()
                .expect("transactional ids lock")
                .remove(transactional_id);
            return Err(error);
        }
        Ok((meta.producer_id, meta.producer_epoch))
    }

    /// Checks that `producer_id` and `epoch` are the id's current producer.
    pub(super) fn check_producer(
        meta: &TransactionMetadata,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), TransactionError> {
        if producer_id != meta.producer_id {
            return Err(TransactionError::InvalidProducerIdMapping { producer_id });
        }
        if epoch != meta.producer_epoch {
            return Err(TransactionError::ProducerFenced {
                epoch,
                current: meta.producer_epoch,
            });
        }
        Ok(())
    }

    /// Locks `entry`, checking that it is still the id's (an expired id's
    /// entry is removed from the map while a request may already hold it:
    /// that request must not write a record for an id that is gone).
    pub(super) fn lock_current<'a>(
        &self,
        transactional_id: &str,
        entry: &'a Entry,
    ) -> Result<MutexGuard<'a, TransactionMetadata>, TransactionError> {
        let meta = lock(entry);
        let current = self
            .entry(transactional_id)
            .is_some_and(|now| Arc::ptr_eq(&now, entry));
        if !current {
            return Err(TransactionError::InvalidProducerIdMapping {
                producer_id: meta.producer_id,
            });
        }
        Ok(meta)
    }

    /// The entry of `transactional_id` for `producer_id`, or the error for
    /// an id the coordinator does not know.
    pub(super) fn known(
        &self,
        transactional_id: &str,
        producer_id: i64,
    ) -> Result<Entry, TransactionError> {
        self.entry(transactional_id)
            .ok_or(TransactionError::InvalidProducerIdMapping { producer_id })
    }

    /// Handles AddPartitionsToTxn: starts the transaction if none is
    /// open, and adds the partitions (each must exist).
    pub(crate) fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), TransactionError> {
        let unknown: Vec<(String, i32)> = partitions
            .iter()
            .filter(|(topic, partition)| self.partition(topic, *partition).is_none())
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(TransactionError::UnknownPartitions(unknown));
        }
        let entry = self.known(transactional_id, producer_id)?;
        let mut meta = self.lock_current(transactional_id, &entry)?;
        Self::check_producer(&meta, producer_id, epoch)?;
        self.check_can_add(&meta)?;
        let open = meta.state == TransactionState::Ongoing;
        let new: Vec<_> = partitions
            .iter()
            .filter(|p| !open || !meta.partitions.contains(*p))
            .cloned()
            .collect();
        if open && new.is_empty() {
            return Ok(());
        }
        let partitions_max = self.config.partitions_max;
        let total = if open { meta.partitions.len() } else { 0 } + new.len();
        if total > partitions_max {
            return Err(TransactionError::TooManyPartitions { partitions_max });
        }
        let now_ms = self.clock.now_ms();
        self.update(&mut meta, |next| {
            begin(next, now_ms);
            next.partitions.extend(new);
        })
    }

    /// Handles AddOffsetsToTxn: the transaction will commit offsets of
    /// `group`.
    pub(crate) fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TransactionError> {
        self.groups
            .check_group_id(group)
            .map_err(TransactionError::Group)?;
        let entry = self.known(transactional_id, producer_id)?;
        let mut meta = self.lock_current(transactional_id, &entry)?;
        Self::check_producer(&meta, producer_id, epoch)?;
        self.check_can_add(&meta)?;
        let open = meta.state == TransactionState::Ongoing;
        if open && meta.groups.contains(group) {
            return Ok(());
        }
        // Groups are bounded like partitions: each is a consumer group
        // whose offsets the transaction commits.
        let groups_max = self.config.partitions_max;
        if open && meta.groups.len() >= groups_max {
            return Err(TransactionError::TooLarge(format!(
                "a transaction may commit offsets of at most {groups_max} groups \
                 (transactions.partitions_max)"
            )));
        }
        let now_ms = self.clock.now_ms();
        self.update(&mut meta, |next| {
            begin(next, now_ms);
            next.groups.insert(group.to_string());
        })
    }

    /// Whether the id can take more partitions or groups now.
    fn check_can_add(&self, meta: &TransactionMetadata) -> Result<(), TransactionError> {
        match meta.state {
            TransactionState::PrepareCommit | TransactionState::PrepareAbort => {
                Err(TransactionError::Concurrent)
            }
            _ => Ok(()),
        }
    }

    /// Handles EndTxn: commits or aborts the open transaction. A retry of
    /// an EndTxn that completed is answered with success again.
    ///
    /// Once the Prepare state is durable the outcome is decided: if writing
    /// the markers or offsets then fails, the answer is still success (as
    /// Kafka answers), and the periodic check finishes the transaction;
    /// until it has, the id's next requests get CONCURRENT_TRANSACTIONS,
    /// which clients retry. Answering the failure instead would make the
    /// application think the commit failed and redo its work.
    pub(crate) fn end(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TransactionError> {
        let entry = self.known(transactional_id, producer_id)?;
        let mut meta = self.lock_current(transactional_id, &entry)?;
        Self::check_producer(&meta, producer_id, epoch)?;
        use TransactionState::*;
        match (meta.state, commit) {
            (Ongoing, _) => {
                self.prepare(&mut meta, commit)?;
                if let Err(error) = self.complete(&mut meta) {
                    tracing::warn!(transactional_id, %error,
                        "the transaction's outcome is durable but ending it failed; retrying periodically");
                }
                Ok(())
            }
            (PrepareCommit, true) | (PrepareAbort, false) => self
                .complete(&mut meta)
                .map_err(|_| TransactionError::Concurrent),
            (CompleteCommit, true) | (CompleteAbort, false) => Ok(()),
            (state, _) => Err(TransactionError::InvalidState(format!(
                "EndTxn({}) but the transaction is {}",
                if commit { "commit" } else { "abort" },
                state.kafka_name()
            ))),
        }
    }

    /// Writes a transactional Produce's batches to `partition` with
    /// `write`, under the id's lock, after checking that they come from
    /// its current producer and that the partition was added.
    pub(crate) fn write_transactional(
        &self,
        transactional_id: &str,
        partition: &Partition,
        producer: (i64, i16),
        write: impl FnOnce() -> Result<AppendInfo, LogError>,
    ) -> Result<AppendInfo, TransactionError> {
        let (producer_id, epoch) = producer;
        let entry = self.known(transactional_id, producer_id)?;
        let meta = self.lock_current(transactional_id, &entry)?;
        Self::check_producer(&meta, producer_id, epoch)?;
        let key = (partition.topic().to_string(), partition.id());
        if meta.state != TransactionState::Ongoing || !meta.partitions.contains(&key) {
            return Err(TransactionError::InvalidState(format!(
                "partition {}-{} was not added to the transaction (AddPartitionsToTxn)",
                key.0, key.1
            )));
        }
        write().map_err(TransactionError::Log)
    }

    /// One id's state (DescribeTransactions), waiting if a request is
    /// working on it.
    pub(crate) fn describe(&self, transactional_id: &str) -> Option<TransactionMetadata> {
        self.entry(transactional_id)
            .map(|entry| lock(&entry).clone())
    }

    /// Every id's state (ListTransactions).
    pub(crate) fn list(&self) -> Vec<TransactionMetadata> {
        self.entries()
            .iter()
            .map(|entry| lock(entry).clone())
            .collect()
    }

    /// The partition, if its topic exists.
    pub(super) fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.store.topic(topic)?.partition(partition).ok()
    }

    /// Removes an expired id (the caller holds its entry, `meta`).
    pub(super) fn forget(&self, meta: &TransactionMetadata) -> Result<(), TransactionError> {
        let transactional_id = meta.transactional_id.clone();
        self.log
            .append(&[TransactionRecord::Remove {
                transactional_id: transactional_id.clone(),
            }])
            .map_err(TransactionError::storage)?;
        self.ids
            .lock()
            .expect("transactional ids lock")
            .remove(&transactional_id);
        Ok(())
    }
}

/// An open transaction's record may take at most half the transaction
/// log's record limit, so that the records that end it (its Prepare and
/// Complete states, a few bytes longer) always fit: a transaction that
/// could not be written as ended would hold its partitions' LSO forever.
fn check_record_size(next: &TransactionMetadata) -> Result<(), TransactionError> {
    let bytes = serde_json::to_vec(next).map_or(usize::MAX, |json| json.len());
    let bytes_max = super::store::RECORD_PAYLOAD_BYTES_MAX / 2;
    if bytes > bytes_max {
        return Err(TransactionError::TooLarge(format!(
            "the transaction's state would take {bytes} bytes, above {bytes_max}: \
             too many partitions, groups or offset metadata in one transaction"
        )));
    }
    Ok(())
}

/// Starts a transaction on `next` unless one is open.
fn begin(next: &mut TransactionMetadata, now_ms: i64) {
    if next.state != TransactionState::Ongoing {
        next.state = TransactionState::Ongoing;
        next.partitions.clear();
        next.groups.clear();
        next.pending_offsets.clear();
        next.start_ms = now_ms;
    }
}

pub(super) fn lock(entry: &Entry) -> MutexGuard<'_, TransactionMetadata> {
    entry.lock().expect("transaction entry lock")
}
