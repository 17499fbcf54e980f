//! TxnOffsetCommit: consumer offsets sent inside a transaction. They are
//! kept with the transaction (so in its durable record) and committed to
//! the group only when the transaction commits; until then OffsetFetch
//! with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them.

use std::collections::{HashMap, HashSet};

use super::coordinator::TransactionCoordinator;
use super::state::{PendingOffset, TransactionState};
use super::TransactionError;
use crate::group::offsets::Committed;
use crate::group::{GroupError, OffsetCommit};

/// Who sends a TxnOffsetCommit: the transaction's producer and the
/// consumer group member whose offsets they are (KIP-447).
pub(crate) struct TransactionalCommitter<'a> {
    pub(crate) transactional_id: &'a str,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) group: &'a str,
    pub(crate) generation: i32,
    pub(crate) member_id: &'a str,
}

impl TransactionCoordinator {
    /// Handles TxnOffsetCommit. A refusal of the whole request is `Err`;
    /// otherwise one result per offset, in order (an offset's metadata may
    /// be too large on its own).
    pub(crate) fn commit_offsets(
        &self,
        committer: &TransactionalCommitter<'_>,
        offsets: Vec<OffsetCommit>,
    ) -> Result<Vec<Result<(), TransactionError>>, TransactionError> {
        let entry = self.known(committer.transactional_id, committer.producer_id)?;
        let mut meta = self.lock_current(committer.transactional_id, &entry)?;
        Self::check_producer(&meta, committer.producer_id, committer.epoch)?;
        if meta.state != TransactionState::Ongoing || !meta.groups.contains(committer.group) {
            return Err(TransactionError::InvalidState(format!(
                "group {} was not added to the transaction (AddOffsetsToTxn)",
                committer.group
            )));
        }
        self.groups
            .check_transactional_commit(committer.group, committer.generation, committer.member_id)
            .map_err(TransactionError::Group)?;
        let now_ms = self.clock.now_ms();
        let bytes_max = self.groups.offset_metadata_bytes_max();
        let mut results = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::new();
        for offset in offsets {
            if offset.metadata.len() > bytes_max {
                results.push(Err(TransactionError::Group(
                    GroupError::OffsetMetadataTooLarge {
                        bytes: offset.metadata.len(),
                        bytes_max,
                    },
                )));
                continue;
            }
            results.push(Ok(()));
            accepted.push(PendingOffset {
                group: committer.group.to_string(),
                topic: offset.topic,
                partition: offset.partition,
                committed: Committed {
                    offset: offset.offset,
                    leader_epoch: offset.leader_epoch,
                    metadata: offset.metadata,
                    commit_timestamp_ms: now_ms,
                },
            });
        }
        let partitions_max = self.config.partitions_max;
        let mut added = Vec::new();
        let mut next_pending = meta.pending_offsets.clone();
        for offset in accepted {
            match next_pending.iter_mut().find(|p| same_partition(p, &offset)) {
                Some(existing) => *existing = offset,
                None => {
                    added.push(offset.clone());
                    next_pending.push(offset);
                }
            }
        }
        if next_pending.len() > partitions_max {
            return Err(TransactionError::TooManyPartitions { partitions_max });
        }
        // Counted as pending before the record is durable, so OffsetFetch
        // with require_stable never sees an accepted offset as stable.
        self.pending
            .lock()
            .expect("pending offsets lock")
            .add(&added);
        if let Err(error) = self.update(&mut meta, |next| next.pending_offsets = next_pending) {
            self.release_pending(&added);
            return Err(error);
        }
        Ok(results)
    }

    /// The partitions of `group` for which a transaction holds an offset
    /// that is not committed yet.
    pub(crate) fn pending_partitions(&self, group: &str) -> HashSet<(String, i32)> {
        let pending = self.pending.lock().expect("pending offsets lock");
        pending
            .groups
            .get(group)
            .map(|partitions| partitions.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets the pending offsets of a transaction that ends.
    pub(super) fn release_pending(&self, ended: &[PendingOffset]) {
        self.pending
            .lock()
            .expect("pending offsets lock")
            .remove(ended);
    }
}

/// Which partitions of which groups have offsets in open transactions.
#[derive(Debug, Default)]
pub(crate) struct PendingIndex {
    /// Group → (topic, partition) → transactions holding an offset for it.
    groups: HashMap<String, HashMap<(String, i32), u32>>,
}

impl PendingIndex {
    pub(super) fn add(&mut self, offsets: &[PendingOffset]) {
        for offset in offsets {
            *self
                .groups
                .entry(offset.group.clone())
                .or_default()
                .entry((offset.topic.clone(), offset.partition))
                .or_insert(0) += 1;
        }
    }

    fn remove(&mut self, offsets: &[PendingOffset]) {
        for offset in offsets {
            let Some(partitions) = self.groups.get_mut(&offset.group) else {
                continue;
            };
            let key = (offset.topic.clone(), offset.partition);
            if let Some(count) = partitions.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    partitions.remove(&key);
                }
            }
            if partitions.is_empty() {
                self.groups.remove(&offset.group);
            }
        }
    }
}

fn same_partition(a: &PendingOffset, b: &PendingOffset) -> bool {
    a.group == b.group && a.topic == b.topic && a.partition == b.partition
}
