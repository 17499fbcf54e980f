//! Per-topic configuration: Kafka's topic config names, their defaults
//! (taken from the broker's [`LogConfig`](super::LogConfig)) and the
//! overrides a topic was created or altered with.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::LogError;

/// `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CleanupPolicy {
    /// Delete old segments by time and size.
    #[serde(rename = "delete")]
    Delete,
    /// Keep the latest record per key.
    #[serde(rename = "compact")]
    Compact,
    /// Both.
    #[serde(rename = "compact,delete")]
    CompactDelete,
}

impl CleanupPolicy {
    /// Whether retention deletes segments.
    pub(crate) fn deletes(self) -> bool {
        matches!(self, Self::Delete | Self::CompactDelete)
    }
    /// Whether the cleaner compacts.
    pub(crate) fn compacts(self) -> bool {
        matches!(self, Self::Compact | Self::CompactDelete)
    }
}

impl FromStr for CleanupPolicy {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
        parts.sort_unstable();
        parts.dedup();
        match parts.as_slice() {
            ["delete"] => Ok(Self::Delete),
            ["compact"] => Ok(Self::Compact),
            ["compact", "delete"] => Ok(Self::CompactDelete),
            _ => Err(format!(
                "expected delete, compact or compact,delete, got {value:?}"
            )),
        }
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
            Self::CompactDelete => "compact,delete",
        })
    }
}

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TimestampType {
    /// Keep the producer's timestamps.
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

impl FromStr for TimestampType {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "CreateTime" => Ok(Self::CreateTime),
            "LogAppendTime" => Ok(Self::LogAppendTime),
            _ => Err(format!(
                "expected CreateTime or LogAppendTime, got {value:?}"
            )),
        }
    }
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CreateTime => "CreateTime",
            Self::LogAppendTime => "LogAppendTime",
        })
    }
}

/// The effective configuration of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicConfig {
    /// `cleanup.policy`.
    pub(crate) cleanup_policy: CleanupPolicy,
    /// `retention.ms`: closed segments whose newest record is older are
    /// deleted; -1 keeps them forever.
    pub(crate) retention_ms: i64,
    /// `retention.bytes`: oldest segments are deleted while the partition is
    /// larger; -1 is unlimited.
    pub(crate) retention_bytes: i64,
    /// `segment.bytes`: roll the active segment before it passes this size.
    pub(crate) segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is older.
    pub(crate) segment_ms: i64,
    /// `delete.retention.ms`: how long compaction keeps tombstones.
    pub(crate) delete_retention_ms: i64,
    /// `max.message.bytes`: the largest record batch accepted.
    pub(crate) max_message_bytes: u64,
    /// `message.timestamp.type`.
    pub(crate) message_timestamp_type: TimestampType,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            delete_retention_ms: DAY_MS,
            max_message_bytes: 1 << 20,
            message_timestamp_type: TimestampType::CreateTime,
        }
    }
}

/// Kafka's names for the settings above, in the order they are listed.
pub const CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "delete.retention.ms",
    "max.message.bytes",
    "message.timestamp.type",
];

/// Kafka topic configs accepted but fixed on a single node (only the value
/// that changes nothing is valid); not listed by DescribeConfigs.
pub(crate) const FIXED_CONFIG_NAMES: &[&str] = &["min.insync.replicas"];

/// Whether `name` is a topic config this broker accepts.
pub(crate) fn is_topic_config(name: &str) -> bool {
    CONFIG_NAMES.contains(&name) || FIXED_CONFIG_NAMES.contains(&name)
}

fn parse<T: FromStr>(name: &str, value: &str) -> Result<T, LogError>
where
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|error: T::Err| LogError::InvalidConfig {
            name: name.to_string(),
            reason: format!("{value:?}: {error}"),
        })
}

fn at_least(name: &str, value: i64, minimum: i64) -> Result<(), LogError> {
    if value < minimum {
        return Err(LogError::InvalidConfig {
            name: name.to_string(),
            reason: format!("{value} is below the minimum {minimum}"),
        });
    }
    Ok(())
}

impl TopicConfig {
    /// Applies `overrides` (Kafka names) on top of `self`, validating each.
    pub(crate) fn with_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, LogError> {
        let mut config = self.clone();
        for (name, value) in overrides {
            config.set(name, value)?;
        }
        Ok(config)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), LogError> {
        match name {
            "cleanup.policy" => self.cleanup_policy = parse(name, value)?,
            "retention.ms" => {
                self.retention_ms = parse(name, value)?;
                at_least(name, self.retention_ms, -1)?;
            }
            "retention.bytes" => {
                self.retention_bytes = parse(name, value)?;
                at_least(name, self.retention_bytes, -1)?;
            }
            "segment.bytes" => {
                self.segment_bytes = parse(name, value)?;
                // Index positions are 32-bit, as in Kafka.
                at_least(name, self.segment_bytes as i64, 14)?;
                if self.segment_bytes > i32::MAX as u64 {
                    return Err(LogError::InvalidConfig {
                        name: name.into(),
                        reason: format!("{value} is above the maximum {}", i32::MAX),
                    });
                }
            }
            "segment.ms" => {
                self.segment_ms = parse(name, value)?;
                at_least(name, self.segment_ms, 1)?;
            }
            "delete.retention.ms" => {
                self.delete_retention_ms = parse(name, value)?;
                at_least(name, self.delete_retention_ms, 0)?;
            }
            "max.message.bytes" => {
                self.max_message_bytes = parse(name, value)?;
                at_least(name, self.max_message_bytes as i64, 0)?;
            }
            "message.timestamp.type" => self.message_timestamp_type = parse(name, value)?,
            // Replication settings tools set routinely; on one node only the
            // value that changes nothing is valid.
            "min.insync.replicas" => {
                if parse::<i32>(name, value)? != 1 {
                    return Err(LogError::InvalidConfig {
                        name: name.into(),
                        reason: format!("{value} is impossible on a single node; use 1"),
                    });
                }
            }
            _ => {
                return Err(LogError::InvalidConfig {
                    name: name.to_string(),
                    reason: "unknown topic config".into(),
                })
            }
        }
        Ok(())
    }

    /// Checks every setting by the rules an override must pass (the broker's
    /// topic defaults come from the config file, not from an override).
    pub(crate) fn validate(&self) -> Result<(), LogError> {
        let mut checked = Self::default();
        for name in CONFIG_NAMES {
            let value = self.get(name).expect("every listed config has a value");
            checked.set(name, &value)?;
        }
        Ok(())
    }

    /// The value of a config by its Kafka name.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "cleanup.policy" => self.cleanup_policy.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => self.message_timestamp_type.to_string(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_validate() {
        let overrides: BTreeMap<String, String> = [
            ("cleanup.policy".to_string(), "delete,compact".to_string()),
            ("retention.ms".to_string(), "-1".to_string()),
        ]
        .into();
        let config = TopicConfig::default().with_overrides(&overrides).unwrap();
        assert_eq!(config.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(config.get("retention.ms").as_deref(), Some("-1"));
        let replicas: BTreeMap<String, String> =
            [("min.insync.replicas".to_string(), "1".to_string())].into();
        assert_eq!(
            TopicConfig::default().with_overrides(&replicas).unwrap(),
            TopicConfig::default()
        );
        for (name, value) in [
            ("retention.ms", "-2"),
            ("segment.bytes", "x"),
            ("bogus", "1"),
            ("min.insync.replicas", "2"),
        ] {
            let bad: BTreeMap<String, String> = [(name.to_string(), value.to_string())].into();
            assert!(
                TopicConfig::default().with_overrides(&bad).is_err(),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn every_name_round_trips() {
        let config = TopicConfig::default();
        for name in CONFIG_NAMES {
            let value = config.get(name).unwrap();
            let overrides: BTreeMap<String, String> = [(name.to_string(), value)].into();
            assert_eq!(config.with_overrides(&overrides).unwrap(), config);
        }
    }

    #[test]
    fn fixed_names_are_accepted_with_their_only_value() {
        for name in FIXED_CONFIG_NAMES {
            assert!(is_topic_config(name));
            let overrides: BTreeMap<String, String> = [(name.to_string(), "1".to_string())].into();
            assert_eq!(
                TopicConfig::default().with_overrides(&overrides).unwrap(),
                TopicConfig::default()
            );
        }
        assert!(is_topic_config("retention.ms"));
        assert!(!is_topic_config("bogus"));
    }
}
