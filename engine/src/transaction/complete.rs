//! Ending transactions: markers to every partition, the pending offsets
//! committed, the Complete state written; and the work that ends them
//! without a client asking: a fencing InitProducerId, the timeout check,
//! and recovery after a crash.

use std::sync::Arc;

use super::coordinator::{lock, TransactionCoordinator};
use super::state::{TransactionMetadata, TransactionState};
use super::TransactionError;
use crate::group::offsets::PartitionOffset;
use crate::log::transactions::Marker;
use crate::log::{AppendInfo, LogError, Partition, PartitionSlot};

impl TransactionCoordinator {
    /// Finishes a transaction in a Prepare state: writes its markers to
    /// every partition where it is open and waits until they are durable
    /// (in parallel), commits its offsets (on commit), then records the
    /// Complete state. Run again after a failure or a crash, it writes
    /// markers only where the transaction is still open.
    pub(super) fn complete(&self, meta: &mut TransactionMetadata) -> Result<(), TransactionError> {
        let commit = match meta.state {
            TransactionState::PrepareCommit => true,
            TransactionState::PrepareAbort => false,
            other => unreachable!("complete in state {other:?}"),
        };
        let marker = Marker {
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            commit,
            coordinator_epoch: 0,
        };
        let mut written = Vec::with_capacity(meta.partitions.len());
        // A partition that cannot take its marker does not hold up the
        // others (their LSO moves on); the first failure is returned once
        // every other marker is durable, and the transaction stays
        // prepared until it is retried.
        let mut failed = None;
        for (topic, index) in &meta.partitions {
            let partition = match self.store.partition(topic, *index) {
                Ok(partition) => partition,
                Err(LogError::UnknownTopic(_) | LogError::UnknownPartition { .. }) => {
                    tracing::warn!(transactional_id = %meta.transactional_id, topic, partition = index,
                        "the partition is gone (topic deleted): no marker written there");
                    continue;
                }
                // Unavailable (refused to open): the transaction waits in
                // its Prepare state until the partition is back.
                Err(error) => {
                    failed.get_or_insert_with(|| self.marker_failed(meta, topic, *index, error));
                    continue;
                }
            };
            if let Some(reason) = partition.poisoned() {
                // A marker written before the failed fsync that poisoned it
                // may be in memory only: it is not "ended" until a restart
                // shows what is on disk.
                let error = LogError::Poisoned {
                    topic: topic.clone(),
                    partition: *index,
                    reason: reason.to_string(),
                };
                failed.get_or_insert_with(|| self.marker_failed(meta, topic, *index, error));
                continue;
            }
            if !partition.has_open_transaction(meta.producer_id) {
                // Nothing was written there, or an earlier attempt already
                // ended it durably (or the topic was recreated).
                continue;
            }
            match partition.write_marker(&marker) {
                Ok(info) => {
                    #[cfg(debug_assertions)]
                    if commit && written.is_empty() {
                        crash_point::after_first_marker(meta, &partition, &info);
                    }
                    written.push((partition, info));
                }
                Err(error) => {
                    failed.get_or_insert_with(|| self.marker_failed(meta, topic, *index, error));
                }
            }
        }
        // Written first, then made durable together: the partitions'
        // fsyncs run at once, so a commit waits about one fsync for them,
        // not one per partition.
        if let Err((partition, error)) = sync_markers(&written) {
            return Err(self.marker_failed(meta, partition.topic(), partition.id(), error));
        }
        if let Some(error) = failed {
            return Err(error);
        }
        if commit {
            self.commit_pending(meta)?;
        }
        let ended_offsets = meta.pending_offsets.clone();
        let complete = if commit {
            TransactionState::CompleteCommit
        } else {
            TransactionState::CompleteAbort
        };
        // Not waited for: if a crash loses it, the durable Prepare state
        // is finished again on recovery, which finds every marker written
        // (no partition has the transaction open). Unless offsets were
        // committed: storing them again could undo a newer commit made
        // since, so then the record is synced.
        let sync = commit && !ended_offsets.is_empty();
        self.update_with(meta, sync, |next| {
            next.state = complete;
            next.pending_offsets.clear();
            next.start_ms = -1;
        })?;
        self.release_pending(&ended_offsets);
        tracing::debug!(transactional_id = %meta.transactional_id, commit, partitions = written.len(),
            "transaction ended");
        Ok(())
    }

    fn marker_failed(
        &self,
        meta: &TransactionMetadata,
        topic: &str,
        partition: i32,
        error: LogError,
    ) -> TransactionError {
        tracing::error!(transactional_id = %meta.transactional_id, topic, partition, %error,
            "writing a transaction marker failed; the transaction stays prepared and is retried");
        TransactionError::Log(error)
    }

    /// Commits the transaction's pending offsets, group by group.
    fn commit_pending(&self, meta: &TransactionMetadata) -> Result<(), TransactionError> {
        let mut by_group: std::collections::BTreeMap<&str, Vec<PartitionOffset>> =
            Default::default();
        for pending in &meta.pending_offsets {
            by_group
                .entry(&pending.group)
                .or_default()
                .push(PartitionOffset {
                    topic: pending.topic.clone(),
                    partition: pending.partition,
                    committed: pending.committed.clone(),
                });
        }
        for (group, offsets) in by_group {
            self.groups
                .store_offsets(group, offsets)
                .map_err(TransactionError::Group)?;
        }
        Ok(())
    }

    /// Runs a transaction left in a Prepare state to its end (a failed
    /// marker write earlier, or a crash).
    pub(super) fn finish_prepared(
        &self,
        meta: &mut TransactionMetadata,
    ) -> Result<(), TransactionError> {
        match meta.state {
            TransactionState::PrepareCommit | TransactionState::PrepareAbort => self.complete(meta),
            _ => Ok(()),
        }
    }

    /// Aborts the open transaction of `meta` on behalf of the coordinator
    /// (a new producer, or the timeout), bumping the epoch first so the
    /// old producer is fenced: its later writes, AddPartitions and EndTxn
    /// are refused. The bump may reach `i16::MAX`, an epoch no producer is
    /// ever given (Kafka keeps it for this fence), so the fenced producer's
    /// epoch is always older; the next InitProducerId then hands out a new
    /// producer id. Once the PrepareAbort record is durable the abort is
    /// decided: a failure to write its markers is left to the periodic
    /// check, and the id refuses new work (CONCURRENT_TRANSACTIONS) until
    /// then.
    pub(super) fn abort_fencing(
        &self,
        meta: &mut TransactionMetadata,
        retry_allowed: bool,
    ) -> Result<(), TransactionError> {
        debug_assert!(
            meta.producer_epoch < i16::MAX,
            "an open transaction at the fencing epoch"
        );
        let ended = meta.pending_offsets.clone();
        self.update(meta, |next| {
            // Only the producer that asked for its own bump (KIP-360) may
            // retry into the new epoch with its old one: never a fenced one.
            next.last_producer_epoch = if retry_allowed {
                next.producer_epoch
            } else {
                -1
            };
            next.producer_epoch = next.producer_epoch.saturating_add(1);
            next.state = TransactionState::PrepareAbort;
            // An abort drops them: deciding to abort never grows the record.
            next.pending_offsets.clear();
        })?;
        self.release_pending(&ended);
        if let Err(error) = self.complete(meta) {
            tracing::warn!(transactional_id = %meta.transactional_id, %error,
                "the abort is durable but ending it failed; retrying periodically");
        }
        Ok(())
    }

    /// Records the decision to commit or abort (the Prepare state, fsynced)
    /// before any marker is written. An abort's pending offsets are dropped
    /// in the same record, so deciding to abort never makes the record
    /// larger (a record at its size limit can always be aborted).
    pub(super) fn prepare(
        &self,
        meta: &mut TransactionMetadata,
        commit: bool,
    ) -> Result<(), TransactionError> {
        let ended = meta.pending_offsets.clone();
        self.update(meta, |next| {
            if commit {
                next.state = TransactionState::PrepareCommit;
            } else {
                next.state = TransactionState::PrepareAbort;
                next.pending_offsets.clear();
            }
        })?;
        if !commit {
            self.release_pending(&ended);
        }
        Ok(())
    }

    /// The periodic check (every `abort_check_interval_ms`): aborts
    /// transactions open past their timeout, finishes prepared ones a
    /// failure left behind, and forgets ids idle past the expiration.
    /// Ids busy with a request are skipped until the next check.
    pub(crate) fn tick(&self) {
        let now_ms = self.clock.now_ms();
        for entry in self.entries() {
            let Ok(mut meta) = entry.try_lock() else {
                continue;
            };
            if let Err(error) = self.check_one(&mut meta, now_ms) {
                tracing::warn!(transactional_id = %meta.transactional_id, %error,
                    "transaction check failed; retrying at the next check");
            }
        }
        if let Err(error) = self.compact_log() {
            tracing::warn!(%error, "compacting the transaction log failed");
        }
    }

    fn check_one(
        &self,
        meta: &mut TransactionMetadata,
        now_ms: i64,
    ) -> Result<(), TransactionError> {
        match meta.state {
            TransactionState::Ongoing if now_ms - meta.start_ms > meta.timeout_ms as i64 => {
                tracing::warn!(transactional_id = %meta.transactional_id,
                    timeout_ms = meta.timeout_ms, "aborting a transaction open past its timeout");
                self.abort_fencing(meta, false)
            }
            TransactionState::PrepareCommit | TransactionState::PrepareAbort => {
                self.finish_prepared(meta)
            }
            state
                if !state.is_open()
                    && now_ms - meta.last_update_ms
                        > self.config.transactional_id_expiration_ms =>
            {
                self.forget(meta)
            }
            _ => Ok(()),
        }
    }

    /// After opening: transactions a crash left in a Prepare state are
    /// finished now (PrepareCommit committed, PrepareAbort aborted). An
    /// open transaction stays open: its producer may still end it, and the
    /// timeout check aborts it otherwise, as if the broker had not stopped.
    /// Then hanging transactions are aborted (see [`Self::abort_hanging`]),
    /// except those of `foreign` producers: processors' own transactions,
    /// which their tasks end at their start (`processor::stateful`).
    pub(super) fn recover(&self, foreign: &std::collections::HashSet<i64>) {
        self.finish_all_prepared();
        self.abort_hanging(foreign);
    }

    fn finish_all_prepared(&self) {
        for entry in self.entries() {
            let mut meta = lock(&entry);
            if !matches!(
                meta.state,
                TransactionState::PrepareCommit | TransactionState::PrepareAbort
            ) {
                continue;
            }
            tracing::info!(transactional_id = %meta.transactional_id, state = meta.state.kafka_name(),
                "finishing a transaction interrupted by a restart");
            if let Err(error) = self.finish_prepared(&mut meta) {
                tracing::error!(transactional_id = %meta.transactional_id, %error,
                    "finishing an interrupted transaction failed; retrying periodically");
            }
        }
    }

    /// Ends every transaction open in a partition that no open transaction
    /// of the coordinator covers (a "hanging" transaction, as KIP-664 calls
    /// them: its record in the transaction log was lost to damage, the
    /// partition was restored from elsewhere, or lost a marker). It would
    /// hold the partition's last stable offset, and so every read_committed
    /// consumer, forever. When the coordinator's last word on that producer
    /// and partition is a completed transaction, its outcome is written
    /// again (a commit stays a commit); otherwise nothing can ever commit
    /// it, since EndTxn goes through the coordinator, and an abort marker
    /// ends it, with the epoch the producer last wrote with. Logged at
    /// warn level.
    fn abort_hanging(&self, foreign: &std::collections::HashSet<i64>) {
        let mut covered = std::collections::HashSet::new();
        let mut decided = std::collections::HashMap::new();
        for entry in self.entries() {
            let meta = lock(&entry);
            let outcome = match meta.state {
                TransactionState::CompleteCommit => Some(true),
                TransactionState::CompleteAbort => Some(false),
                _ => None,
            };
            for (topic, partition) in &meta.partitions {
                let key = (meta.producer_id, topic.clone(), *partition);
                match outcome {
                    Some(commit) => {
                        decided.insert(key, commit);
                    }
                    None if meta.state.is_open() => {
                        covered.insert(key);
                    }
                    None => {}
                }
            }
        }
        for topic in self.store.topics() {
            for slot in topic.partitions() {
                let PartitionSlot::Open(partition) = slot else {
                    continue;
                };
                for (producer_id, producer_epoch) in partition.open_transactions() {
                    let key = (producer_id, topic.name().to_string(), partition.id());
                    if covered.contains(&key) || foreign.contains(&producer_id) {
                        continue;
                    }
                    let commit = decided.get(&key).copied().unwrap_or(false);
                    tracing::warn!(topic = topic.name(), partition = partition.id(), producer_id, commit,
                        "ending a hanging transaction: open in the partition, not open in the coordinator");
                    let marker = Marker {
                        producer_id,
                        producer_epoch,
                        commit,
                        coordinator_epoch: 0,
                    };
                    let written = partition
                        .write_marker(&marker)
                        .and_then(|info| partition.acknowledge_durable(&info));
                    if let Err(error) = written {
                        tracing::error!(topic = topic.name(), partition = partition.id(), producer_id,
                            %error, "aborting a hanging transaction failed");
                    }
                }
            }
        }
    }

    /// Compacts the transaction log when due (from `tick`).
    fn compact_log(&self) -> std::io::Result<bool> {
        // Every entry, waiting for busy ones: one left out would be lost
        // from the compacted log. (The log takes the snapshot before its
        // own lock, so this cannot deadlock with an entry's append.)
        self.log.compact_if_due(&|| {
            self.entries()
                .iter()
                .map(|entry| lock(entry).clone())
                .collect()
        })
    }
}

/// Threads that fsync one transaction's markers at once; a transaction over
/// more partitions shares them out (`transactions.partitions_max` bounds
/// the partitions).
const MARKER_SYNC_THREADS_MAX: usize = 16;

/// Makes every written marker durable, the partitions' fsyncs in parallel
/// (at most [`MARKER_SYNC_THREADS_MAX`] threads); the first failure, with
/// its partition.
fn sync_markers(
    written: &[(Arc<Partition>, AppendInfo)],
) -> Result<(), (Arc<Partition>, LogError)> {
    if let [(partition, info)] = written {
        return partition
            .acknowledge_durable(info)
            .map_err(|error| (partition.clone(), error));
    }
    let per_thread = written.len().div_ceil(MARKER_SYNC_THREADS_MAX).max(1);
    let sync_chunk = |chunk: &[(Arc<Partition>, AppendInfo)]| {
        for (partition, info) in chunk {
            partition
                .acknowledge_durable(info)
                .map_err(|error| (partition.clone(), error))?;
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let mut threads = Vec::new();
        let mut results = Vec::new();
        for chunk in written.chunks(per_thread) {
            let spawned = std::thread::Builder::new()
                .name("sluice-marker-sync".into())
                .spawn_scoped(scope, move || sync_chunk(chunk));
            match spawned {
                Ok(thread) => threads.push((chunk, thread)),
                // No thread to be had: sync this chunk here instead.
                Err(_) => results.push(sync_chunk(chunk)),
            }
        }
        for (chunk, thread) in threads {
            results.push(thread.join().unwrap_or_else(|_| {
                let partition = chunk[0].0.clone();
                let error = LogError::io(
                    partition.dir(),
                    std::io::Error::other("a marker fsync thread panicked"),
                );
                Err((partition, error))
            }));
        }
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    })
}

/// A deterministic crash for black-box tests of recovery: with
/// `SLUICE_TEST_CRASH=after-first-marker` in its environment, a broker
/// ending a transaction by commit aborts the process (as a kill -9 would
/// stop it) right after the first partition's commit marker is durable:
/// the PrepareCommit state is in the transaction log, one partition has
/// its marker, the others do not, and the offsets are not committed. A
/// signal from outside cannot land on that instant reliably; this can
/// (tests/blackbox/transactions_crash.rs). Compiled into debug builds
/// only (`#[cfg(debug_assertions)]`): a release binary has no such hook
/// and never reads the variable.
#[cfg(debug_assertions)]
mod crash_point {
    use crate::log::{AppendInfo, Partition};
    use crate::transaction::state::TransactionMetadata;

    /// The environment variable naming the crash point.
    const VARIABLE: &str = "SLUICE_TEST_CRASH";

    /// Aborts the process once `info` (the first commit marker, in
    /// `partition`) is durable, if the crash point is set.
    pub(super) fn after_first_marker(
        meta: &TransactionMetadata,
        partition: &Partition,
        info: &AppendInfo,
    ) {
        if std::env::var_os(VARIABLE).is_none_or(|value| value != "after-first-marker") {
            return;
        }
        let durable = partition.acknowledge_durable(info);
        tracing::error!(transactional_id = %meta.transactional_id, topic = partition.topic(),
            partition = partition.id(), durable = durable.is_ok(),
            "{VARIABLE}=after-first-marker: aborting the process after the first commit marker");
        std::process::abort();
    }
}
