//! The group coordinator: its settings and the one lock over every group.
//! The verbs live beside it, one concern per file (`join`, `sync`,
//! `membership`, `commit`, `describe`).
//!
//! All group state sits behind one std mutex that is never held across an
//! await: a JoinGroup or SyncGroup that must wait registers a oneshot and
//! awaits it after releasing the lock. Timeouts (sessions, rebalance
//! deadlines, the initial join delay, offsets retention) are enforced by
//! `tick`, which the broker calls every 100 ms.
//!
//! Every time read goes through the one injected `Clock`, in milliseconds
//! since the epoch, as Kafka's coordinator reads its `Time`: tests advance a
//! manual clock instead of sleeping.
//!
//! Lock order: groups, then offsets; and no offsets append (an fsync)
//! while holding the groups lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::offsets::OffsetStore;
use super::state::Group;
use super::GroupError;
use crate::log::Clock;

/// Group settings (`[groups]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct GroupConfig {
    /// How long a new group waits for more members before its first
    /// rebalance completes (`group.initial.rebalance.delay.ms`). Default 3000.
    pub(crate) initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a member may ask for. Default 6000.
    pub(crate) session_timeout_min_ms: i32,
    /// Largest session timeout a member may ask for. Default 1 800 000.
    pub(crate) session_timeout_max_ms: i32,
    /// Committed offsets of a group that has been empty this long are
    /// deleted (`offsets.retention.minutes`). Default 7 days.
    pub(crate) offsets_retention_ms: i64,
    /// Largest commit metadata string (`offset.metadata.max.bytes`).
    /// Default 4096 bytes.
    pub(crate) offset_metadata_bytes_max: usize,
    /// Members of one group. Default 1000.
    pub(crate) members_max: usize,
    /// Groups with live members or offsets. Default 100 000.
    pub(crate) groups_max: usize,
    /// Longest group id, in bytes (Kafka bounds it only by its i16 string
    /// length); longer ones are refused INVALID_GROUP_ID. Default 255.
    pub(crate) group_id_bytes_max: usize,
    /// Largest subscription metadata of one member (all its protocols
    /// together) and largest assignment of one member; larger ones are
    /// refused MESSAGE_TOO_LARGE. Default 1 MiB.
    pub(crate) member_metadata_bytes_max: usize,
    /// Subscription metadata and assignments held for all members of all
    /// groups together; a join or assignment beyond it is refused
    /// COORDINATOR_NOT_AVAILABLE (retriable) until members leave or
    /// expire. Default 64 MiB.
    pub(crate) group_metadata_bytes_max: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3000,
            session_timeout_min_ms: 6000,
            session_timeout_max_ms: 1_800_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offset_metadata_bytes_max: 4096,
            members_max: 1000,
            groups_max: 100_000,
            group_id_bytes_max: 255,
            member_metadata_bytes_max: 1024 * 1024,
            group_metadata_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// Group id → group.
pub(super) type Groups = HashMap<String, Group>;

/// The coordinator of every group on this broker.
pub(crate) struct GroupCoordinator {
    pub(super) config: GroupConfig,
    pub(super) clock: Arc<dyn Clock>,
    /// Budget of member metadata and assignment bytes held by all groups
    /// (`group_metadata_bytes_max`); a member's charge is a permit it
    /// holds, so whatever removes a member returns its bytes.
    pub(super) metadata_budget: Arc<Semaphore>,
    groups: Mutex<Groups>,
    offsets: OffsetStore,
}

impl GroupCoordinator {
    /// A coordinator over `offsets`, reading time from `clock`.
    pub(crate) fn new(config: GroupConfig, clock: Arc<dyn Clock>, offsets: OffsetStore) -> Self {
        Self {
            metadata_budget: Arc::new(Semaphore::new(config.group_metadata_bytes_max)),
            config,
            clock,
            groups: Mutex::default(),
            offsets,
        }
    }

    /// Charges `bytes` of member metadata to the broker-wide budget.
    pub(super) fn charge_metadata(&self, bytes: usize) -> Result<OwnedSemaphorePermit, GroupError> {
        let refused = GroupError::MetadataBudgetExhausted {
            bytes,
            bytes_max: self.config.group_metadata_bytes_max,
        };
        let permits = u32::try_from(bytes).map_err(|_| refused.clone())?;
        self.metadata_budget
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| refused)
    }

    /// Refuses a group id longer than `group_id_bytes_max` (or empty).
    pub(crate) fn check_group_id(&self, group_id: &str) -> Result<(), GroupError> {
        let bytes_max = self.config.group_id_bytes_max;
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if group_id.len() > bytes_max {
            return Err(GroupError::GroupIdTooLong {
                bytes: group_id.len(),
                bytes_max,
            });
        }
        Ok(())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Groups> {
        self.groups.lock().expect("group lock")
    }

    /// The committed-offsets store. Its appends fsync: never call them
    /// holding [`Self::lock`].
    pub(super) fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// Compacts the committed-offsets log if it has grown enough; the
    /// broker calls this periodically, on a blocking thread.
    pub(crate) fn compact_offsets(&self) {
        if let Err(error) = self.offsets.compact_if_due() {
            tracing::warn!(%error, "compacting the committed-offsets log failed; the log is intact");
        }
    }
}
