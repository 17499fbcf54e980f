//! A task's commit record, kept in its RocksDB state under the task's
//! metadata key and written in the same batch as the state it commits.
//! JSON: a few hundred bytes, written once per commit.
//!
//! Version 2 keeps a position per input (a task reads the same partition
//! of each of its processor's co-partitioned inputs); version 1, written
//! before processors had several inputs, kept one `position` and is read
//! as the position of the task's first input.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The current layout.
const VERSION: u32 = 2;

/// What a task's last commit recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskMeta {
    pub(crate) version: u32,
    /// Where the task is in each input partition.
    pub(crate) inputs: Vec<InputMeta>,
    /// Stream time: never back; the smallest of the inputs' times (see
    /// `InputMeta::time`), or reached idling.
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
    /// windows: one per window start for tumbling and hopping windows,
    /// one per key's window for sessions and sliding windows).
    #[serde(default)]
    pub(crate) timers: i64,
    /// Entries in the task's stores (`None`: not counted yet, in a record
    /// written before brokers counted them; recovery counts them once).
    #[serde(default)]
    pub(crate) keys: Option<u64>,
    /// `keys` per store, by name, stores with no entry left out (`None`:
    /// a record written before brokers counted them per store; recovery
    /// counts them once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stores: Option<BTreeMap<String, u64>>,
    /// The stores the plugin opened as windowed (`open-windowed`: one
    /// entry per key's open window): their entries are the task's open
    /// windows. Every name any of the task's instances opened so, kept
    /// across restarts and upgrades (a plugin may open its stores only at
    /// its first call); pruned at recovery to the stores still declared,
    /// so at most the deployment's stores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) windowed: Vec<String>,
}

/// One input partition of a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InputMeta {
    /// The input topic ("" in a version 1 record: the task's first input).
    pub(crate) topic: String,
    /// The next offset to process.
    pub(crate) position: i64,
    /// The largest record timestamp processed from this input.
    #[serde(default)]
    pub(crate) time: Option<i64>,
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

/// Version 1: one input.
#[derive(Deserialize)]
struct TaskMetaV1 {
    position: i64,
    stream_time: Option<i64>,
    producer_id: i64,
    producer_epoch: i16,
    committed: Vec<CommittedOutput>,
    late_dropped: u64,
    commits: u64,
    #[serde(default)]
    timers: i64,
    #[serde(default)]
    rebuild_until: Option<i64>,
}

impl TaskMeta {
    /// A task that never committed.
    pub(crate) fn fresh() -> Self {
        Self {
            version: VERSION,
            producer_id: -1,
            ..Self::default()
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("task metadata serializes")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let unreadable =
            |e: serde_json::Error| format!("the task's commit record is unreadable: {e}");
        let version: Version = serde_json::from_slice(bytes).map_err(unreadable)?;
        match version.version {
            VERSION => serde_json::from_slice(bytes).map_err(unreadable),
            1 => {
                let v1: TaskMetaV1 = serde_json::from_slice(bytes).map_err(unreadable)?;
                Ok(Self {
                    version: VERSION,
                    inputs: vec![InputMeta {
                        topic: String::new(),
                        position: v1.position,
                        time: v1.stream_time,
                        rebuild_until: v1.rebuild_until,
                    }],
                    stream_time: v1.stream_time,
                    producer_id: v1.producer_id,
                    producer_epoch: v1.producer_epoch,
                    committed: v1.committed,
                    late_dropped: v1.late_dropped,
                    commits: v1.commits,
                    timers: v1.timers,
                    keys: None,
                    stores: None,
                    windowed: Vec::new(),
                })
            }
            other => Err(format!(
                "the task's commit record has version {other}; this broker reads versions 1 and {VERSION}"
            )),
        }
    }

    /// The task's open windows: the entries of its windowed stores
    /// (`None` without any, or before its stores were counted).
    pub(crate) fn open_windows(&self) -> Option<u64> {
        if self.windowed.is_empty() {
            return None;
        }
        let stores = self.stores.as_ref()?;
        Some(
            self.windowed
                .iter()
                .filter_map(|name| stores.get(name))
                .sum(),
        )
    }

    /// The record of input `topic`; `first` if it is the task's first input
    /// (which a version 1 record names "").
    pub(crate) fn input(&self, topic: &str, first: bool) -> Option<&InputMeta> {
        self.inputs
            .iter()
            .find(|input| input.topic == topic)
            .or_else(|| {
                first
                    .then(|| self.inputs.iter().find(|input| input.topic.is_empty()))
                    .flatten()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let mut meta = TaskMeta::fresh();
        meta.inputs.push(InputMeta {
            topic: "in".into(),
            position: 42,
            time: Some(7),
            rebuild_until: None,
        });
        meta.committed.push(CommittedOutput {
            topic: "out".into(),
            partition: 3,
            first_offset: 17,
        });
        assert_eq!(TaskMeta::decode(&meta.encode()).unwrap(), meta);
        assert_eq!(meta.open_windows(), None, "no windowed store");
        meta.stores = Some([("w".into(), 5), ("plain".into(), 2)].into());
        meta.windowed = vec!["w".into(), "gone".into()];
        assert_eq!(TaskMeta::decode(&meta.encode()).unwrap(), meta);
        assert_eq!(meta.open_windows(), Some(5));
        meta.version = 9;
        assert!(TaskMeta::decode(&meta.encode())
            .unwrap_err()
            .contains("version 9"));
        assert!(TaskMeta::decode(b"garbage").is_err());
    }

    #[test]
    fn reads_a_version_1_record_as_the_first_inputs_position() {
        let v1 = br#"{"version":1,"position":42,"stream_time":1000,"producer_id":5,
            "producer_epoch":2,"committed":[],"late_dropped":3,"commits":9,"timers":4,
            "rebuild_until":50}"#;
        let meta = TaskMeta::decode(v1).unwrap();
        let first = meta.input("clicks", true).expect("the first input");
        assert_eq!((first.position, first.rebuild_until), (42, Some(50)));
        assert_eq!(first.time, Some(1000));
        assert!(meta.input("views", false).is_none());
        assert_eq!(
            (meta.stream_time, meta.producer_id, meta.producer_epoch),
            (Some(1000), 5, 2)
        );
        assert_eq!((meta.late_dropped, meta.commits, meta.timers), (3, 9, 4));
        assert_eq!(meta.keys, None, "not counted yet");
        assert_eq!(meta.stores, None, "not counted yet");
    }
}
