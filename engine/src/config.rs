//! The broker's configuration: one serde struct, every default in one place.
//!
//! Precedence, highest first: command-line flags, `SLUICE_*` environment
//! variables (clap reads both), the TOML file given by `--config`, then the
//! defaults below.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::log::{FlushPolicy, StoreOptions, TopicConfig};

/// Everything `sluice serve` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Kafka protocol listener.
    pub listen: SocketAddr,
    /// HTTP admin listener (`/health`).
    pub http: SocketAddr,
    /// Where topics and metadata live.
    pub data_dir: PathBuf,
    /// The log store.
    pub log: LogConfig,
    /// The Kafka listener.
    pub kafka: KafkaConfig,
    /// Consumer groups.
    pub groups: crate::group::GroupConfig,
    /// WebAssembly processors (`[processors]`).
    pub processors: crate::processor::ProcessorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            http: SocketAddr::from(([127, 0, 0, 1], 9644)),
            data_dir: PathBuf::from("./sluice-data"),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            groups: crate::group::GroupConfig::default(),
            processors: crate::processor::ProcessorConfig::default(),
        }
    }
}

/// Log store settings (`[log]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `always` (fsync before acknowledging, group commit), `interval:<ms>`
    /// or `never`. Default `always`.
    pub flush: FlushPolicy,
    /// Bytes of log between sparse index entries. Default 4096.
    pub index_interval_bytes: u64,
    /// Closed segments kept open (handles plus indexes). Default 1024.
    pub open_segments_max: usize,
    /// Largest partition count of a topic. Default 1024.
    pub partitions_max: i32,
    /// Idempotent producers remembered per partition. Default 10 000.
    pub producers_per_partition_max: usize,
    /// How often retention and compaction run. Default 60 000 ms.
    pub retention_check_interval_ms: u64,
    /// Defaults of every topic (`[log.topic_defaults]`, Kafka's topic
    /// settings with `_` for `.`): segment_bytes 1 GiB, segment_ms and
    /// retention_ms 7 days, retention_bytes unlimited, delete_retention_ms
    /// 1 day, max_message_bytes 1 MiB, cleanup_policy delete,
    /// message_timestamp_type CreateTime.
    pub topic_defaults: TopicConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        let store = StoreOptions::default();
        Self {
            flush: store.flush,
            index_interval_bytes: store.index_interval_bytes,
            open_segments_max: store.open_segments_max,
            partitions_max: store.partitions_max,
            producers_per_partition_max: store.producers_per_partition_max,
            retention_check_interval_ms: 60_000,
            topic_defaults: store.topic_defaults,
        }
    }
}

impl LogConfig {
    /// The store options these settings describe.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            flush: self.flush,
            index_interval_bytes: self.index_interval_bytes,
            open_segments_max: self.open_segments_max,
            partitions_max: self.partitions_max,
            producers_per_partition_max: self.producers_per_partition_max,
            topic_defaults: self.topic_defaults.clone(),
        }
    }
}

/// Kafka listener settings (`[kafka]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Largest request frame accepted; a larger length prefix closes the
    /// connection before anything is allocated. Default 100 MiB.
    pub frame_bytes_max: u32,
    /// Concurrent client connections; further ones wait in the accept
    /// queue. Default 10 000.
    pub connections_max: usize,
    /// Requests of one connection being handled at once; the connection is
    /// not read further until one completes. Default 128.
    pub in_flight_requests_max: usize,
    /// Request bytes held in memory at once across all connections; a
    /// frame's body is read only once its size fits. At least
    /// `frame_bytes_max`. Default 512 MiB.
    pub queued_request_bytes_max: u32,
    /// Longest Fetch long poll, whatever the client asks. Default 30 000 ms.
    pub fetch_wait_max_ms: u64,
    /// Create unknown topics on Metadata (when the client allows it) and
    /// Produce (`auto.create.topics.enable`). Default true.
    pub auto_create_topics_enable: bool,
    /// Partitions of auto-created topics (`num.partitions`). Default 1.
    pub num_partitions: i32,
    /// Address given to clients in Metadata; default: the bound listener.
    pub advertised_listener: Option<std::net::SocketAddr>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            frame_bytes_max: 100 * 1024 * 1024,
            connections_max: 10_000,
            in_flight_requests_max: 128,
            queued_request_bytes_max: 512 * 1024 * 1024,
            fetch_wait_max_ms: 30_000,
            auto_create_topics_enable: true,
            num_partitions: 1,
            advertised_listener: None,
        }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_override_defaults_and_unknown_keys_fail() {
        let config: Config = toml::from_str(
            r#"
            listen = "127.0.0.1:19092"
            [log]
            flush = "interval:50"
            [log.topic_defaults]
            retention_ms = 1000
            cleanup_policy = "compact"
            "#,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 19092);
        assert_eq!(config.log.flush, FlushPolicy::Interval { interval_ms: 50 });
        assert_eq!(config.log.topic_defaults.retention_ms, 1000);
        assert_eq!(config.http, Config::default().http);
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        assert!(toml::from_str::<Config>("[log]\nflush = \"sometimes\"").is_err());
    }
}
