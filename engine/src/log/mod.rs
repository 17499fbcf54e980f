//! The durable log store: topics, partitions, segments, indexes, recovery,
//! retention and compaction.
//!
//! Layers, top down: [`LogStore`] (data dir, topics, background work) →
//! [`Partition`] (segments, offsets, group commit) → `segment` (one log file
//! and its indexes) → [`io`] (the only place that touches files).
//!
//! On disk:
//! ```text
//! <data-dir>/.lock                                   flock + holder's pid
//! <data-dir>/topics/<dir>/topic.json                 name, partitions, id, config overrides
//! <data-dir>/topics/<dir>/<partition>/<base:020>.log        record batches
//! <data-dir>/topics/<dir>/<partition>/<base:020>.index      sparse offset index
//! <data-dir>/topics/<dir>/<partition>/<base:020>.timeindex  sparse time index
//! <data-dir>/deleting/<dir>/…                        a deletion in progress
//! ```
//! `<dir>` is `<topic>-<id as 32 hex digits>` (the name cut to 200 bytes):
//! one directory per incarnation of a topic (see `topic_dir`). Directories
//! named `<topic>` alone (before the id was in the name) are renamed on open.

pub mod batch;
mod compaction;
mod config;
#[cfg(test)]
mod fault_io;
mod handles;
pub(crate) mod index;
pub(crate) mod io;
mod offset_map;
mod partition;
mod producers;
mod read;
mod records;
mod recovery;
mod retention;
mod segment;
mod store;
mod topic_config;
mod topic_dir;
pub(crate) mod transactions;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
#[cfg(test)]
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub(crate) use batch::BatchError;
pub(crate) use config::LogConfig;
#[cfg(test)]
pub(crate) use fault_io::{FaultIo, Faults};
pub use io::StdIo;
pub(crate) use io::{Io, IoFile};
pub(crate) use partition::{AppendInfo, Isolation, Partition, ReadResult};
pub(crate) use read::CommittedReadError;
pub(crate) use records::StoredRecord;
pub(crate) use store::{validate_topic_name, PartitionSlot, Topic};
pub use store::{LogStore, StoreOptions};
pub(crate) use topic_config::is_topic_config;
pub use topic_config::TopicConfig;
pub use topic_config::CONFIG_NAMES;

/// Errors of the log store. Each maps to one Kafka error code at the
/// protocol edge.
#[derive(Debug, Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A produced batch is malformed (bad CRC, truncated, wrong magic).
    #[error("{0}")]
    Batch(BatchError),
    /// A produced batch exceeds `max.message.bytes`.
    #[error("record batch of {bytes} bytes exceeds max.message.bytes {max_bytes}")]
    TooLarge {
        /// Size of the batch.
        bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// Data on disk failed verification.
    #[error("corrupt log data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte position of the bad batch.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The partition refuses writes after a failed fsync or write.
    #[error("partition {topic}-{partition} refuses writes until restart: {reason}")]
    Poisoned {
        topic: String,
        partition: i32,
        /// The original failure.
        reason: String,
    },
    /// A read or truncation outside the log.
    #[error("offset {offset} is outside the log [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: i64,
        /// First offset in the log.
        log_start_offset: i64,
        /// Visible end of the log.
        high_watermark: i64,
    },
    /// An idempotent producer's batch skipped or repeated sequence numbers.
    #[error("producer {producer_id}: expected sequence {expected}, received {received}")]
    OutOfOrderSequence {
        producer_id: i64,
        /// Next sequence the broker expected.
        expected: i32,
        /// Sequence received.
        received: i32,
    },
    /// An idempotent producer's epoch is older than the one seen.
    #[error("producer {producer_id}: epoch {epoch} is older than the current {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        /// Epoch received.
        epoch: i16,
        /// Epoch in force.
        current: i16,
    },
    /// A non-transactional batch from a producer with a transaction open
    /// in the partition (Kafka: "Expected transactional write").
    #[error("producer {producer_id} has a transaction open in this partition: its writes here must be transactional")]
    TransactionOpen { producer_id: i64 },
    /// A retried batch inside a multi-batch request.
    #[error("producer {producer_id}: duplicate batch inside a multi-batch request")]
    DuplicateSequence { producer_id: i64 },
    /// No such topic.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// No such partition.
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: i32 },
    /// A partition that refused to open (damaged data).
    #[error("partition {topic}-{partition} is unavailable: {reason}")]
    Unavailable {
        topic: String,
        partition: i32,
        /// Why it did not open.
        reason: String,
    },
    /// Topic creation for a name that exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A topic name Kafka would refuse.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        name: String,
        /// Why.
        reason: String,
    },
    /// A partition count out of range.
    #[error("invalid partition count {count}: {reason}")]
    InvalidPartitions {
        count: i32,
        /// Why.
        reason: String,
    },
    /// A broker-wide bound on topics or partitions (`log.topics_max`,
    /// `log.partitions_total_max`) would be exceeded.
    #[error("{reason}")]
    LimitReached {
        /// Which bound, and by how much.
        reason: String,
    },
    /// A topic config that does not parse or is out of range.
    #[error("invalid config {name}: {reason}")]
    InvalidConfig {
        name: String,
        /// Why.
        reason: String,
    },
    /// Another process holds the data directory.
    #[error("data directory {path} is in use by another sluice process{}", holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default())]
    Locked {
        path: PathBuf,
        /// The holder's pid, if it could be read.
        holder: Option<u32>,
    },
    /// Topic metadata on disk does not parse.
    #[error("bad topic metadata in {path}: {reason}")]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl LogError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// When appends are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FlushPolicy {
    /// Acknowledge only after fsync (group commit shares fsyncs between
    /// concurrent appends). Nothing acknowledged is lost on power failure.
    Always,
    /// Fsync every `interval_ms` in the background; a crash loses at most
    /// that window of acknowledged records.
    Interval {
        /// Milliseconds between fsyncs.
        interval_ms: u64,
    },
    /// Leave it to the OS (and to segment rolls and shutdown); a process
    /// crash loses nothing, a power failure may lose acknowledged records.
    Never,
}

impl FromStr for FlushPolicy {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => value
                .strip_prefix("interval:")
                .and_then(|ms| ms.trim_end_matches("ms").parse().ok())
                .filter(|ms| *ms > 0)
                .map(|interval_ms| Self::Interval { interval_ms })
                .ok_or_else(|| format!("expected always, never or interval:<ms>, got {value:?}")),
        }
    }
}

impl TryFrom<String> for FlushPolicy {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl From<FlushPolicy> for String {
    fn from(policy: FlushPolicy) -> String {
        policy.to_string()
    }
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Interval { interval_ms } => write!(f, "interval:{interval_ms}"),
            Self::Never => f.write_str("never"),
        }
    }
}

/// A source of wall-clock time, injectable for retention and compaction
/// tests.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64)
    }
}

/// A clock that moves only when told to (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct ManualClock(AtomicI64);

#[cfg(test)]
impl ManualClock {
    /// A clock reading `now_ms`.
    pub(crate) fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }
    /// Moves the clock forward by `ms`.
    pub(crate) fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn flush_policy_parses_and_prints() {
        for text in ["always", "never", "interval:250"] {
            assert_eq!(text.parse::<FlushPolicy>().unwrap().to_string(), text);
        }
        assert!("interval:0".parse::<FlushPolicy>().is_err());
        assert!("sometimes".parse::<FlushPolicy>().is_err());
    }
}

#[cfg(test)]
mod tests;
