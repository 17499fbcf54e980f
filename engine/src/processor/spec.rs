//! What a deployment is: the spec the user gives (`sluice processor deploy`
//! or `PUT /v1/processors/{name}`), its limits and error policy, and how it
//! is persisted in the data directory.
//!
//! On disk, `<data-dir>/processors/` holds `<name>.json` (the
//! [`Deployment`], written atomically) and `plugins/<sha256>.wasm`, the
//! uploaded components, content-addressed so a redeploy of the same file
//! stores nothing new.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest processor name (it becomes a group id and a file name).
pub(crate) const NAME_BYTES_MAX: usize = 200;

/// Per-instance limits. Every field has a broker-wide default
/// (`[processors]` in the config file) that a deployment may override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Linear memory (and tables) of one instance.
    pub memory_bytes_max: u64,
    /// Wall time of one `process` (or `init`) call before it is interrupted.
    pub process_time_ms_max: u64,
    /// Bytes of keys, values and headers one `process` call may return.
    pub output_bytes_per_batch_max: u64,
    /// Outputs one input record may produce.
    pub outputs_per_record_max: u64,
    /// Records handed to one `process` call.
    pub batch_records_max: u64,
    /// Bytes of log read for one `process` call (at least one record).
    pub batch_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes_max: 64 << 20,
            process_time_ms_max: 1_000,
            output_bytes_per_batch_max: 16 << 20,
            outputs_per_record_max: 1_000,
            batch_records_max: 1_024,
            batch_bytes_max: 1 << 20,
        }
    }
}

/// Limits a deploy request may set; missing ones take the broker default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitOverrides {
    pub(crate) memory_bytes_max: Option<u64>,
    pub(crate) process_time_ms_max: Option<u64>,
    pub(crate) output_bytes_per_batch_max: Option<u64>,
    pub(crate) outputs_per_record_max: Option<u64>,
    pub(crate) batch_records_max: Option<u64>,
    pub(crate) batch_bytes_max: Option<u64>,
}

impl LimitOverrides {
    /// The defaults with these overrides applied, checked for sense.
    pub(crate) fn apply(&self, defaults: &Limits) -> Result<Limits, String> {
        let limits = Limits {
            memory_bytes_max: self.memory_bytes_max.unwrap_or(defaults.memory_bytes_max),
            process_time_ms_max: self
                .process_time_ms_max
                .unwrap_or(defaults.process_time_ms_max),
            output_bytes_per_batch_max: self
                .output_bytes_per_batch_max
                .unwrap_or(defaults.output_bytes_per_batch_max),
            outputs_per_record_max: self
                .outputs_per_record_max
                .unwrap_or(defaults.outputs_per_record_max),
            batch_records_max: self.batch_records_max.unwrap_or(defaults.batch_records_max),
            batch_bytes_max: self.batch_bytes_max.unwrap_or(defaults.batch_bytes_max),
        };
        let checks = [
            (
                "memory_bytes_max",
                limits.memory_bytes_max,
                1 << 20,
                4 << 30,
            ),
            (
                "process_time_ms_max",
                limits.process_time_ms_max,
                1,
                600_000,
            ),
            (
                "output_bytes_per_batch_max",
                limits.output_bytes_per_batch_max,
                1,
                1 << 30,
            ),
            (
                "outputs_per_record_max",
                limits.outputs_per_record_max,
                1,
                1 << 24,
            ),
            ("batch_records_max", limits.batch_records_max, 1, 1 << 20),
            ("batch_bytes_max", limits.batch_bytes_max, 1, 256 << 20),
        ];
        for (name, value, low, high) in checks {
            if !(low..=high).contains(&value) {
                return Err(format!("{name} = {value} is outside {low}..={high}"));
            }
        }
        Ok(limits)
    }
}

/// What happens to a record whose processing fails (error or trap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OnError {
    /// Stop the partition; its status names the record and the error.
    Fail,
    /// Log, count, and go on with the next record.
    Skip,
    /// Write the original record, with headers saying why, to this topic.
    DeadLetter(String),
}

impl OnError {
    /// The dead-letter topic of a processor when none is named.
    pub(crate) fn default_dead_letter_topic(processor: &str) -> String {
        format!("{processor}.dlq")
    }

    /// Parses `fail`, `skip`, `dead-letter` or `dead-letter=TOPIC`.
    pub(crate) fn parse(text: &str, processor: &str) -> Result<Self, String> {
        match text.split_once('=') {
            None => match text {
                "fail" => Ok(Self::Fail),
                "skip" => Ok(Self::Skip),
                "dead-letter" => Ok(Self::DeadLetter(Self::default_dead_letter_topic(processor))),
                other => Err(format!(
                    "unknown error policy {other:?}: expected fail, skip, dead-letter or dead-letter=TOPIC"
                )),
            },
            Some(("dead-letter", topic)) if !topic.is_empty() => {
                Ok(Self::DeadLetter(topic.to_string()))
            }
            Some(_) => Err(format!(
                "unknown error policy {text:?}: expected fail, skip, dead-letter or dead-letter=TOPIC"
            )),
        }
    }
}

impl fmt::Display for OnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fail => f.write_str("fail"),
            Self::Skip => f.write_str("skip"),
            Self::DeadLetter(topic) => write!(f, "dead-letter={topic}"),
        }
    }
}

/// What a processor guarantees about its outputs and state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Guarantee {
    /// Outputs durable before the input offset commits: a crash may repeat
    /// outputs (never state changes, which commit with the offset).
    #[default]
    AtLeastOnce,
    /// Outputs, state and input offset commit atomically (transactions):
    /// read_committed consumers see every result exactly once.
    ExactlyOnce,
}

impl Guarantee {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text {
            "at-least-once" => Ok(Self::AtLeastOnce),
            "exactly-once" => Ok(Self::ExactlyOnce),
            other => Err(format!(
                "unknown guarantee {other:?}: expected exactly-once or at-least-once"
            )),
        }
    }
}

/// The output topic name that re-keys a record through the processor's own
/// repartition topic (see `wit/processor.wit`, `output.topic`); also the
/// `topic` of the batches that come back from it.
pub(crate) const REPARTITION: &str = "sluice.repartition";

/// Default commit interval of stateful and exactly-once processors.
pub(crate) const COMMIT_INTERVAL_MS_DEFAULT: u64 = 100;

/// A deploy request as it arrives over HTTP (the `spec` part).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployRequest {
    pub(crate) inputs: Vec<String>,
    pub(crate) outputs: Vec<String>,
    #[serde(default)]
    pub(crate) config: Vec<(String, String)>,
    #[serde(default)]
    pub(crate) on_error: Option<String>,
    #[serde(default)]
    pub(crate) from: Option<String>,
    #[serde(default)]
    pub(crate) limits: LimitOverrides,
    /// Keyed state stores the plugin may open.
    #[serde(default)]
    pub(crate) stores: Vec<String>,
    /// `exactly-once` or `at-least-once`; default exactly-once for a
    /// processor with stores, else at-least-once.
    #[serde(default)]
    pub(crate) guarantee: Option<String>,
    #[serde(default)]
    pub(crate) commit_interval_ms: Option<u64>,
    #[serde(default)]
    pub(crate) idle_advance_ms: Option<u64>,
    /// With `from`: throw the state away and reprocess from there.
    #[serde(default)]
    pub(crate) reset_state: bool,
    /// Topics materialised as read-only stores (lookups).
    #[serde(default)]
    pub(crate) tables: Vec<super::tables::TableSpec>,
    /// Every commit also writes the state it changes to the processor's
    /// changelog topic, from which lost state is restored.
    #[serde(default)]
    pub(crate) changelog: bool,
}

/// A deployment as persisted in `<data-dir>/processors/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Deployment {
    pub(crate) name: String,
    pub(crate) inputs: Vec<String>,
    pub(crate) outputs: Vec<String>,
    pub(crate) config: Vec<(String, String)>,
    /// `fail`, `skip` or `dead-letter=TOPIC`.
    pub(crate) on_error: String,
    pub(crate) limits: Limits,
    /// Content hash of the component, the name of its file in `plugins/`.
    pub(crate) wasm_sha256: String,
    pub(crate) wasm_bytes: u64,
    /// SHA-256 of the plugin's compiled artifact in the compile cache:
    /// the cache loads the artifact only if its bytes hash to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) artifact_sha256: Option<String>,
    pub(crate) deployed_at_ms: i64,
    pub(crate) paused: bool,
    /// Keyed state stores (none: stateless).
    #[serde(default)]
    pub(crate) stores: Vec<String>,
    #[serde(default)]
    pub(crate) guarantee: Guarantee,
    /// How often a stateful or exactly-once task commits while busy.
    #[serde(default = "commit_interval_ms_default")]
    pub(crate) commit_interval_ms: u64,
    /// Stream time follows the wall clock after this long without input.
    #[serde(default)]
    pub(crate) idle_advance_ms: Option<u64>,
    /// Topics materialised as read-only stores every task reads.
    #[serde(default)]
    pub(crate) tables: Vec<super::tables::TableSpec>,
    /// State changes go to the changelog topics in each commit's
    /// transaction (exactly-once with stores only).
    #[serde(default)]
    pub(crate) changelog: bool,
}

fn commit_interval_ms_default() -> u64 {
    COMMIT_INTERVAL_MS_DEFAULT
}

impl Deployment {
    /// Whether tasks keep state in RocksDB (stores, or exactly-once
    /// bookkeeping).
    pub(crate) fn is_stateful(&self) -> bool {
        !self.stores.is_empty()
            || !self.tables.is_empty()
            || self.guarantee == Guarantee::ExactlyOnce
    }

    /// The processor's internal repartition topic (created when first
    /// written, removed with the processor).
    pub(crate) fn repartition_topic(&self) -> String {
        repartition_topic(&self.name)
    }

    /// The changelog topic of the tasks reading `task_topic`: the input's
    /// tasks write `sluice-processor-NAME-changelog`, the repartition
    /// topic's tasks (ids `1 << 30 | p`) their own
    /// `sluice-processor-NAME-repartition-changelog`; partition p in both
    /// is the task of input partition p.
    pub(crate) fn changelog_topic(&self, task_topic: &str) -> String {
        if task_topic == self.repartition_topic() {
            format!("{task_topic}-changelog")
        } else {
            changelog_topic(&self.name)
        }
    }

    /// Both changelog topics (whether or not they exist).
    pub(crate) fn changelog_topics(&self) -> [String; 2] {
        [
            changelog_topic(&self.name),
            self.changelog_topic(&self.repartition_topic()),
        ]
    }

    /// Every topic the processor writes: its outputs, its dead-letter
    /// topic, its repartition topic and its changelogs.
    pub(crate) fn write_topics(&self) -> Vec<String> {
        let mut topics = self.outputs.clone();
        if self.is_stateful() {
            topics.push(self.repartition_topic());
        }
        if self.changelog {
            topics.extend(self.changelog_topics());
        }
        if let OnError::DeadLetter(topic) = self.policy() {
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        topics
    }

    /// The consumer group whose committed offsets track this processor.
    pub(crate) fn group(&self) -> String {
        group_name(&self.name)
    }

    /// The parsed error policy (validated when deployed).
    pub(crate) fn policy(&self) -> OnError {
        OnError::parse(&self.on_error, &self.name).unwrap_or(OnError::Fail)
    }
}

/// Task ids of the repartition topic's partitions start here: their state
/// must not meet the input partitions' (tasks `0..`), nor the tables'.
pub(crate) const REPARTITION_TASK_BASE: u32 = 1 << 30;

impl Deployment {
    /// The state task of `partition` of input `topic`.
    pub(crate) fn task_id(&self, topic: &str, partition: i32) -> u32 {
        let partition = u32::try_from(partition).unwrap_or_default();
        if topic == self.repartition_topic() {
            REPARTITION_TASK_BASE | partition
        } else {
            partition
        }
    }

    /// The topic name the plugin sees for batches of input `topic`.
    pub(crate) fn batch_topic<'a>(&self, topic: &'a str) -> &'a str {
        if topic == self.repartition_topic() {
            REPARTITION
        } else {
            topic
        }
    }
}

/// `sluice-processor-<name>-repartition`.
pub(crate) fn repartition_topic(processor: &str) -> String {
    format!("sluice-processor-{processor}-repartition")
}

/// `sluice-processor-<name>-changelog`.
pub(crate) fn changelog_topic(processor: &str) -> String {
    format!("sluice-processor-{processor}-changelog")
}

/// `sluice-processor-<name>`.
pub(crate) fn group_name(processor: &str) -> String {
    format!("sluice-processor-{processor}")
}

/// Names become file names and group ids: `[A-Za-z0-9._-]`, not `.`/`..`.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(format!(
            "processor name must be 1 to {NAME_BYTES_MAX} characters"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("processor name {name:?} is not allowed"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "processor name {name:?} contains {bad:?}; use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_policies_parse_and_print() {
        assert_eq!(OnError::parse("fail", "p"), Ok(OnError::Fail));
        assert_eq!(OnError::parse("skip", "p"), Ok(OnError::Skip));
        assert_eq!(
            OnError::parse("dead-letter", "p"),
            Ok(OnError::DeadLetter("p.dlq".into()))
        );
        let named = OnError::parse("dead-letter=bad", "p").unwrap();
        assert_eq!(named.to_string(), "dead-letter=bad");
        assert!(OnError::parse("dead-letter=", "p").is_err());
        assert!(OnError::parse("retry", "p").unwrap_err().contains("retry"));
    }

    #[test]
    fn limits_overrides_apply_and_are_checked() {
        let defaults = Limits::default();
        let limits = LimitOverrides {
            batch_records_max: Some(10),
            ..Default::default()
        }
        .apply(&defaults)
        .unwrap();
        assert_eq!(limits.batch_records_max, 10);
        assert_eq!(limits.memory_bytes_max, 64 << 20);
        let error = LimitOverrides {
            process_time_ms_max: Some(0),
            ..Default::default()
        }
        .apply(&defaults)
        .unwrap_err();
        assert!(error.contains("process_time_ms_max"));
    }

    #[test]
    fn names_are_checked() {
        validate_name("orders-enrich.v2_x").unwrap();
        assert!(validate_name("").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("a/b").unwrap_err().contains("'/'"));
        assert!(validate_name(&"x".repeat(201)).is_err());
    }
}
