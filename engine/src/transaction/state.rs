//! A transactional id's state, as the coordinator keeps it and as its
//! durable log (`store.rs`) records it: one [`TransactionMetadata`] per
//! transactional id, rewritten whole on every change (as Kafka writes a
//! transactional id's whole metadata to `__transaction_state`).
//!
//! States and transitions, as Kafka's `TransactionState`:
//! ```text
//! Empty ──AddPartitions/AddOffsets──► Ongoing ──EndTxn(commit)──► PrepareCommit ──markers written──► CompleteCommit
//!   ▲                                    │      ──EndTxn(abort) ──► PrepareAbort  ──markers written──► CompleteAbort
//!   │                                    └── timeout / InitProducerId ─► PrepareAbort
//!   └──────────── a Complete* state accepts a new transaction like Empty ◄────────────┘
//! ```
//! Prepare states are written (fsynced) before the first marker, so a
//! crash between them is finished on recovery: PrepareCommit is committed,
//! PrepareAbort aborted. An Ongoing transaction found on recovery is
//! aborted once its timeout has passed, as if the broker had not stopped.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::group::offsets::Committed;

/// Where a transactional id's current transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TransactionState {
    /// No transaction since InitProducerId.
    Empty,
    /// Partitions or offsets added; not yet ended.
    Ongoing,
    /// EndTxn(commit) accepted; commit markers being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a new producer: abort markers being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TransactionState {
    /// Every state, in Kafka's order.
    pub(crate) const ALL: [Self; 6] = [
        Self::Empty,
        Self::Ongoing,
        Self::PrepareCommit,
        Self::PrepareAbort,
        Self::CompleteCommit,
        Self::CompleteAbort,
    ];

    /// Kafka's name for the state (DescribeTransactions, ListTransactions).
    pub(crate) fn kafka_name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
        }
    }

    /// Whether a transaction is open or being ended (holds partitions' LSO).
    pub(crate) fn is_open(self) -> bool {
        matches!(
            self,
            Self::Ongoing | Self::PrepareCommit | Self::PrepareAbort
        )
    }
}

/// A consumer offset sent with TxnOffsetCommit: committed to `group` when
/// the transaction commits, dropped when it aborts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingOffset {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) committed: Committed,
}

/// One transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TransactionMetadata {
    pub(crate) transactional_id: String,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    /// The epoch before the last bump, or -1: a producer retrying its
    /// InitProducerId with it gets the current epoch again (KIP-360).
    pub(crate) last_producer_epoch: i16,
    /// `transaction.timeout.ms` the producer asked for (bounded by the
    /// broker's `transactions.timeout_max_ms`).
    pub(crate) timeout_ms: i32,
    pub(crate) state: TransactionState,
    /// Partitions of the current (or last) transaction, as (topic, partition).
    pub(crate) partitions: BTreeSet<(String, i32)>,
    /// Groups added with AddOffsetsToTxn.
    pub(crate) groups: BTreeSet<String>,
    /// Offsets sent with TxnOffsetCommit, not yet committed.
    pub(crate) pending_offsets: Vec<PendingOffset>,
    /// When the current transaction started (first partition or group
    /// added), ms since the epoch; -1 when none is open.
    pub(crate) start_ms: i64,
    /// When this record last changed, ms since the epoch.
    pub(crate) last_update_ms: i64,
}

impl TransactionMetadata {
    /// A new id's state: a fresh producer id at epoch 0, no transaction.
    pub(crate) fn new(
        transactional_id: String,
        producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
    ) -> Self {
        Self {
            transactional_id,
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms,
            state: TransactionState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            pending_offsets: Vec::new(),
            start_ms: -1,
            last_update_ms: now_ms,
        }
    }
}

/// One entry of the transaction log (`store.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum TransactionRecord {
    /// The id's whole state, replacing what was there.
    Put(TransactionMetadata),
    /// The id expired (`transactions.transactional_id_expiration_ms`).
    Remove { transactional_id: String },
}
