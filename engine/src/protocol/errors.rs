//! Store and coordinator errors as Kafka error codes.

use kafka_protocol::error::ResponseError;

use crate::group::GroupError;
use crate::log::{BatchError, LogError};
use crate::transaction::TransactionError;

/// The Kafka error code for a log store error.
pub(crate) fn log_error_code(error: &LogError) -> i16 {
    let error = match error {
        LogError::Batch(BatchError::Crc { .. } | BatchError::Truncated { .. }) => {
            ResponseError::CorruptMessage
        }
        LogError::Batch(BatchError::Magic(_)) => ResponseError::UnsupportedForMessageFormat,
        LogError::Batch(
            BatchError::Invalid(_) | BatchError::Record { .. } | BatchError::Inflated { .. },
        ) => ResponseError::InvalidRecord,
        LogError::TooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        LogError::DuplicateSequence { .. } => ResponseError::DuplicateSequenceNumber,
        LogError::Corrupt { .. }
        | LogError::Poisoned { .. }
        | LogError::Io { .. }
        | LogError::Unavailable { .. } => ResponseError::KafkaStorageError,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        LogError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        LogError::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
        LogError::LimitReached { .. } => ResponseError::PolicyViolation,
        LogError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        LogError::Locked { .. } | LogError::BadMetadata { .. } => ResponseError::UnknownServerError,
    };
    error.code()
}

/// The Kafka error code for a refused group operation.
pub(crate) fn group_error_code(error: &GroupError) -> i16 {
    let error = match error {
        GroupError::InvalidGroupId | GroupError::GroupIdTooLong { .. } => {
            ResponseError::InvalidGroupId
        }
        GroupError::MemberMetadataTooLarge { .. } => ResponseError::MessageTooLarge,
        GroupError::MetadataBudgetExhausted { .. } => ResponseError::CoordinatorNotAvailable,
        GroupError::InvalidSessionTimeout { .. } => ResponseError::InvalidSessionTimeout,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::CoordinatorNotAvailable { .. } => ResponseError::CoordinatorNotAvailable,
        GroupError::GroupMaxSizeReached { .. } => ResponseError::GroupMaxSizeReached,
        GroupError::MemberIdRequired { .. } => ResponseError::MemberIdRequired,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::OffsetMetadataTooLarge { .. } => ResponseError::OffsetMetadataTooLarge,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup { .. } => ResponseError::NonEmptyGroup,
        GroupError::Storage { .. } => ResponseError::KafkaStorageError,
    };
    error.code()
}

/// The Kafka error code of a group operation's result: 0 (NONE) for
/// success.
pub(crate) fn group_result_code<T>(result: &Result<T, GroupError>) -> i16 {
    result.as_ref().err().map_or(0, group_error_code)
}

/// The Kafka error code for a refused transactional request.
/// `fenced_code_known` says whether the request's version knows
/// PRODUCER_FENCED (KIP-588); older versions get INVALID_PRODUCER_EPOCH
/// instead, as Kafka answers them.
pub(crate) fn transaction_error_code(error: &TransactionError, fenced_code_known: bool) -> i16 {
    let error = match error {
        TransactionError::InvalidTransactionalId => ResponseError::InvalidRequest,
        TransactionError::InvalidTimeout { .. } => ResponseError::InvalidTransactionTimeout,
        TransactionError::TooManyIds { .. } => ResponseError::CoordinatorNotAvailable,
        TransactionError::InvalidProducerIdMapping { .. } => {
            ResponseError::InvalidProducerIdMapping
        }
        TransactionError::ProducerFenced { .. } if fenced_code_known => {
            ResponseError::ProducerFenced
        }
        TransactionError::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        TransactionError::InvalidState(_) => ResponseError::InvalidTxnState,
        TransactionError::Concurrent => ResponseError::ConcurrentTransactions,
        TransactionError::TooManyPartitions { .. } => ResponseError::PolicyViolation,
        TransactionError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        TransactionError::Group(error) => return group_error_code(error),
        TransactionError::Storage(_) => ResponseError::KafkaStorageError,
        TransactionError::Log(error) => return log_error_code(error),
    };
    error.code()
}
