//! A task's commit record, kept in its RocksDB state under the task's
//! metadata key and written in the same batch as the state it commits.
//! JSON: a few hundred bytes, written once per commit.

use serde::{Deserialize, Serialize};

/// The current layout.
const VERSION: u32 = 1;

/// What a task's last commit recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskMeta {
    pub(crate) version: u32,
    /// The next input offset to process.
    pub(crate) position: i64,
    /// The largest record timestamp processed (or reached idling).
    pub(crate) stream_time: Option<i64>,
    /// The task's producer id (-1: none yet) and its current epoch, taken
    /// at the task's last start.
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    /// The transaction this commit committed: where its batches begin in
    /// each output partition. Its markers may not all be written yet;
    /// recovery writes the missing ones.
    pub(crate) committed: Vec<CommittedOutput>,
    /// Records the plugin dropped as late, in all.
    pub(crate) late_dropped: u64,
    /// Commits so far.
    pub(crate) commits: u64,
    /// Timers scheduled and not yet fired or cancelled (for the SDK's
    /// windows, about one per open window).
    #[serde(default)]
    pub(crate) timers: i64,
    /// Rebuilding lost state: the input up to this offset was processed
    /// before (the consumer group's position says so), so its outputs are
    /// not written again; only the state is rebuilt from it.
    #[serde(default)]
    pub(crate) rebuild_until: Option<i64>,
}

/// One output partition of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommittedOutput {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) first_offset: i64,
}

impl TaskMeta {
    /// A task that never committed, starting at `position`.
    pub(crate) fn fresh(position: i64) -> Self {
        Self {
            version: VERSION,
            position,
            producer_id: -1,
            ..Self::default()
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("task metadata serializes")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let meta: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("the task's commit record is unreadable: {e}"))?;
        if meta.version != VERSION {
            return Err(format!(
                "the task's commit record has version {}; this broker reads version {VERSION}",
                meta.version
            ));
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let mut meta = TaskMeta::fresh(42);
        meta.committed.push(CommittedOutput {
            topic: "out".into(),
            partition: 3,
            first_offset: 17,
        });
        assert_eq!(TaskMeta::decode(&meta.encode()).unwrap(), meta);
        meta.version = 9;
        assert!(TaskMeta::decode(&meta.encode())
            .unwrap_err()
            .contains("version 9"));
        assert!(TaskMeta::decode(b"garbage").is_err());
    }
}
