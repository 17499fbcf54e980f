//! The committed-offsets verbs: OffsetCommit (fenced by generation for
//! members, "simple" generation -1 commits for groups without members),
//! OffsetFetch's read, and DeleteGroups. Durability is the offsets store's
//! (`offsets.rs`): a commit is acknowledged only once fsynced.

use std::collections::BTreeMap;

use super::coordinator::GroupCoordinator;
use super::offsets::{Committed, PartitionOffset};
use super::state::{Group, GroupState};
use super::GroupError;

/// One partition's offset in an OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetCommit {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The next offset to consume.
    pub(crate) offset: i64,
    /// The leader epoch the client saw, or -1.
    pub(crate) leader_epoch: i32,
    /// Client-supplied, at most `offset_metadata_bytes_max`.
    pub(crate) metadata: String,
}

impl GroupCoordinator {
    /// Checks that a commit may happen: simple (no generation) commits only
    /// for groups without members; member commits must match the
    /// generation.
    fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), GroupError> {
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration {
                    generation,
                    current: 0,
                })
            };
        };
        if generation < 0 && member_id.is_empty() {
            return if group.members.is_empty() {
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
        }
        if !group.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration {
                generation,
                current: group.generation,
            });
        }
        if group.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Commits offsets durably (one fsync); answers each entry in order.
    pub(crate) fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        commits: Vec<OffsetCommit>,
    ) -> Vec<Result<(), GroupError>> {
        let refused = self
            .check_group_id(group_id)
            .and_then(|()| self.check_commit(group_id, generation, member_id));
        if let Err(error) = refused {
            return vec![Err(error); commits.len()];
        }
        let now_ms = self.clock.now_ms();
        let bytes_max = self.config.offset_metadata_bytes_max;
        let mut results = Vec::with_capacity(commits.len());
        let mut accepted = Vec::new();
        for commit in commits {
            if commit.metadata.len() > bytes_max {
                results.push(Err(GroupError::OffsetMetadataTooLarge {
                    bytes: commit.metadata.len(),
                    bytes_max,
                }));
                continue;
            }
            results.push(Ok(()));
            let committed = Committed {
                offset: commit.offset,
                leader_epoch: commit.leader_epoch,
                metadata: commit.metadata,
                commit_timestamp_ms: now_ms,
            };
            accepted.push(PartitionOffset {
                topic: commit.topic,
                partition: commit.partition,
                committed,
            });
        }
        if accepted.is_empty() {
            return results;
        }
        if let Err(error) = self.store_offsets(group_id, accepted) {
            tracing::error!(group = group_id, %error, "committing offsets failed");
            return vec![Err(error); results.len()];
        }
        results
    }

    /// Checks a TxnOffsetCommit's group metadata (KIP-447), as Kafka's
    /// `doTxnCommitOffsets`: a member id must be a member of the group and a
    /// generation (when given) must be the group's, so a zombie of an old
    /// generation cannot commit. No member id and generation −1 is the
    /// pre-KIP-447 form, unchecked.
    pub(crate) fn check_transactional_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), GroupError> {
        self.check_group_id(group_id)?;
        let groups = self.lock();
        let (members_known, current) = match groups.get(group_id) {
            Some(group) => (group.members.contains_key(member_id), group.generation),
            None => (false, 0),
        };
        if !member_id.is_empty() && !members_known {
            return Err(GroupError::UnknownMemberId);
        }
        if generation >= 0 && generation != current {
            return Err(GroupError::IllegalGeneration {
                generation,
                current,
            });
        }
        Ok(())
    }

    /// Stores checked offsets for `group_id` durably (one fsync): an
    /// OffsetCommit's, or a committed transaction's (checked when sent).
    pub(crate) fn store_offsets(
        &self,
        group_id: &str,
        offsets: Vec<PartitionOffset>,
    ) -> Result<(), GroupError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.offsets()
            .commit(group_id, offsets)
            .map_err(|failure| GroupError::Storage {
                reason: failure.to_string(),
            })?;
        // A commit from outside any generation keeps an empty group alive.
        let now_ms = self.clock.now_ms();
        self.lock()
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(now_ms))
            .empty_since_ms = now_ms;
        Ok(())
    }

    /// Largest commit metadata string (`groups.offset_metadata_bytes_max`).
    pub(crate) fn offset_metadata_bytes_max(&self) -> usize {
        self.config.offset_metadata_bytes_max
    }

    /// Committed offsets of a group, by (topic, partition).
    pub(crate) fn committed(&self, group_id: &str) -> BTreeMap<(String, i32), Committed> {
        self.offsets().group(group_id).unwrap_or_default()
    }

    /// Deletes a group without members, and its offsets. The group lock
    /// is not held across the offsets log's fsync: a member joining
    /// meanwhile keeps the group (its offsets are gone, as it asked).
    pub(crate) fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        {
            let mut groups = self.lock();
            let has_offsets = self.offsets().contains_group(group_id);
            match groups.get(group_id) {
                None if !has_offsets => return Err(GroupError::GroupIdNotFound),
                Some(group) if !group.members.is_empty() => {
                    return Err(GroupError::NonEmptyGroup {
                        members: group.members.len(),
                    })
                }
                _ => {}
            }
            groups.remove(group_id);
        }
        self.offsets().delete_group(group_id).map_err(|failure| {
            tracing::error!(group = group_id, error = %failure, "deleting group offsets failed");
            GroupError::Storage {
                reason: failure.to_string(),
            }
        })
    }
}
