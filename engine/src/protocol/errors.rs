//! Store and coordinator errors as Kafka error codes.

use kafka_protocol::error::ResponseError;

use crate::log::{BatchError, LogError};

/// The Kafka error code for a log store error.
pub fn log_error_code(error: &LogError) -> i16 {
    let error = match error {
        LogError::Batch(BatchError::Crc { .. } | BatchError::Truncated { .. }) => {
            ResponseError::CorruptMessage
        }
        LogError::Batch(BatchError::Magic(_)) => ResponseError::UnsupportedForMessageFormat,
        LogError::Batch(BatchError::Invalid(_)) => ResponseError::InvalidRecord,
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
        LogError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        LogError::Locked { .. } | LogError::BadMetadata { .. } => ResponseError::UnknownServerError,
    };
    error.code()
}
