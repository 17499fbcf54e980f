//! The log's settings (`[log]` of the broker's configuration): store-wide
//! options, how often maintenance runs, and every topic's defaults.

use serde::{Deserialize, Serialize};

use super::{FlushPolicy, StoreOptions, TopicConfig};

/// Log store settings (`[log]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LogConfig {
    /// `always` (fsync before acknowledging, group commit), `interval:<ms>`
    /// or `never`. Default `always`.
    pub(crate) flush: FlushPolicy,
    /// Bytes of log between sparse index entries. Default 4096.
    pub(crate) index_interval_bytes: u64,
    /// Closed segments kept open (handles plus indexes). Default 1024.
    pub(crate) open_segments_max: usize,
    /// Largest partition count of a topic. Default 1024.
    pub(crate) partitions_max: i32,
    /// Topics the broker holds at most; CreateTopics and auto-creation
    /// beyond it are refused (POLICY_VIOLATION). Default 10 000.
    pub(crate) topics_max: usize,
    /// Partitions of all topics together at most (each holds open files);
    /// CreateTopics, CreatePartitions and auto-creation beyond it are
    /// refused (POLICY_VIOLATION). Default 10 000.
    pub(crate) partitions_total_max: usize,
    /// Idempotent producers remembered per partition. Default 10 000.
    pub(crate) producers_per_partition_max: usize,
    /// Bytes one record batch may decompress to, wherever the broker looks
    /// inside a batch (produce validation, processor input, ListOffsets by
    /// time, compaction). Default 64 MiB (64 times the default
    /// `max.message.bytes`).
    pub(crate) decompressed_batch_bytes_max: usize,
    /// Bytes the key map of one compaction pass may take: 24 bytes per
    /// distinct key (a 16-byte key hash and the offset, as Kafka's
    /// `log.cleaner.dedupe.buffer.size`), at most 90 % full; a partition
    /// with more distinct keys is compacted in several passes. Maintenance
    /// compacts one partition at a time, so this is the broker's total.
    /// Default 128 MiB (Kafka's default; about 5.6 million keys a pass).
    pub(crate) compaction_memory_bytes_max: usize,
    /// How often retention and compaction run. Default 60 000 ms.
    pub(crate) retention_check_interval_ms: u64,
    /// Defaults of every topic (`[log.topic_defaults]`, Kafka's topic
    /// settings with `_` for `.`): segment_bytes 1 GiB, segment_ms and
    /// retention_ms 7 days, retention_bytes unlimited, delete_retention_ms
    /// 1 day, max_message_bytes 1 MiB, cleanup_policy delete,
    /// message_timestamp_type CreateTime.
    pub(crate) topic_defaults: TopicConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        let store = StoreOptions::default();
        Self {
            flush: store.flush,
            index_interval_bytes: store.index_interval_bytes,
            open_segments_max: store.open_segments_max,
            partitions_max: store.partitions_max,
            topics_max: store.topics_max,
            partitions_total_max: store.partitions_total_max,
            producers_per_partition_max: store.producers_per_partition_max,
            decompressed_batch_bytes_max: store.decompressed_batch_bytes_max,
            compaction_memory_bytes_max: store.compaction_memory_bytes_max,
            retention_check_interval_ms: 60_000,
            topic_defaults: store.topic_defaults,
        }
    }
}

impl LogConfig {
    /// The store options these settings describe.
    pub(crate) fn store_options(&self) -> StoreOptions {
        StoreOptions {
            flush: self.flush,
            index_interval_bytes: self.index_interval_bytes,
            open_segments_max: self.open_segments_max,
            partitions_max: self.partitions_max,
            topics_max: self.topics_max,
            partitions_total_max: self.partitions_total_max,
            producers_per_partition_max: self.producers_per_partition_max,
            decompressed_batch_bytes_max: self.decompressed_batch_bytes_max,
            compaction_memory_bytes_max: self.compaction_memory_bytes_max,
            topic_defaults: self.topic_defaults.clone(),
        }
    }
}
