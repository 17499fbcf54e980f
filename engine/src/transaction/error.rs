//! Why the transaction coordinator refuses a request; the handlers turn
//! these into Kafka error codes (`protocol::errors`).

use thiserror::Error;

use crate::group::GroupError;
use crate::log::LogError;

/// A refused transactional request.
#[derive(Debug, Error)]
pub(crate) enum TransactionError {
    /// The transactional id is empty.
    #[error("the transactional id is empty")]
    InvalidTransactionalId,
    /// `transaction.timeout.ms` outside 1..=`timeout_max_ms`.
    #[error("transaction timeout {timeout_ms} ms is outside 1..={timeout_max_ms} ms (transactions.timeout_max_ms)")]
    InvalidTimeout {
        timeout_ms: i32,
        timeout_max_ms: i32,
    },
    /// The coordinator remembers `transactional_ids_max` ids already.
    #[error("the coordinator holds its limit of {ids_max} transactional ids (transactions.transactional_ids_max)")]
    TooManyIds { ids_max: usize },
    /// The producer id is not the one this transactional id has.
    #[error("producer id {producer_id} does not belong to this transactional id")]
    InvalidProducerIdMapping { producer_id: i64 },
    /// A newer producer with this transactional id has taken over.
    #[error("producer epoch {epoch} is fenced: the transactional id is at epoch {current}")]
    ProducerFenced { epoch: i16, current: i16 },
    /// The request does not fit the transaction's state.
    #[error("{0}")]
    InvalidState(String),
    /// The transaction is being ended; retry.
    #[error("the transaction is being committed or aborted; retry")]
    Concurrent,
    /// More partitions than `partitions_max` in one transaction.
    #[error("a transaction may write to at most {partitions_max} partitions (transactions.partitions_max)")]
    TooManyPartitions { partitions_max: usize },
    /// An added partition does not exist.
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: i32 },
    /// The consumer group refused the offsets (KIP-447 fencing, sizes).
    #[error(transparent)]
    Group(GroupError),
    /// Writing the transaction log, a marker or the offsets failed; the
    /// transaction is finished later (by the periodic check or a restart).
    #[error("storage: {0}")]
    Storage(String),
    /// A partition refused a marker or a transactional write.
    #[error(transparent)]
    Log(LogError),
}

impl TransactionError {
    pub(crate) fn storage(error: impl std::fmt::Display) -> Self {
        Self::Storage(error.to_string())
    }
}
