//! Durable committed offsets: an append-only log of commit and delete
//! records, replayed into memory on open and rewritten (snapshot, fsync,
//! rename) when it grows past twice its live size.
//!
//! File `<data-dir>/groups/offsets.log`, a sequence of records:
//! ```text
//! length u32 BE | crc32c u32 BE (of the payload) | payload: one JSON OffsetRecord
//! ```
//! A torn or corrupt tail (crash mid-append) is truncated on open with a
//! warning; every acknowledged commit was fsynced before the reply.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::log::io::{self, Io, IoFile, OpenMode};

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Committed {
    /// Next offset to consume.
    pub(crate) offset: i64,
    /// Leader epoch the client saw, or -1.
    pub(crate) leader_epoch: i32,
    /// Client-supplied metadata string.
    pub(crate) metadata: String,
    /// When it was committed (ms since epoch).
    pub(crate) commit_timestamp_ms: i64,
}

/// A partition's new committed offset, as [`OffsetStore::commit`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionOffset {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) committed: Committed,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OffsetRecord {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        #[serde(flatten)]
        committed: Committed,
    },
    DeletePartition {
        group: String,
        topic: String,
        partition: i32,
    },
    DeleteGroup {
        group: String,
    },
}

/// group → (topic, partition) → committed offset.
pub(crate) type Offsets = BTreeMap<String, BTreeMap<(String, i32), Committed>>;

/// The store. Not internally synchronised: the coordinator owns it behind
/// its lock.
pub(crate) struct OffsetStore {
    io: Arc<dyn Io>,
    path: PathBuf,
    file: Arc<dyn IoFile>,
    size: u64,
    offsets: Offsets,
}

const RECORD_HEADER_BYTES: usize = 8;
/// Largest record accepted on replay; commits are small.
const RECORD_BYTES_MAX: u32 = 1 << 20;

fn encode(record: &OffsetRecord) -> Vec<u8> {
    let payload = serde_json::to_vec(record).expect("offset records serialize");
    let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn apply(offsets: &mut Offsets, record: OffsetRecord) {
    match record {
        OffsetRecord::Commit {
            group,
            topic,
            partition,
            committed,
        } => {
            offsets
                .entry(group)
                .or_default()
                .insert((topic, partition), committed);
        }
        OffsetRecord::DeletePartition {
            group,
            topic,
            partition,
        } => {
            if let Some(group_offsets) = offsets.get_mut(&group) {
                group_offsets.remove(&(topic, partition));
            }
        }
        OffsetRecord::DeleteGroup { group } => {
            offsets.remove(&group);
        }
    }
}

/// Replays `bytes`; returns the offsets and the length of the valid prefix.
fn replay(bytes: &[u8]) -> (Offsets, usize, Option<String>) {
    let mut offsets = Offsets::new();
    let mut position = 0;
    while position < bytes.len() {
        let rest = &bytes[position..];
        if rest.len() < RECORD_HEADER_BYTES {
            return (offsets, position, Some("incomplete record header".into()));
        }
        let length = u32::from_be_bytes(rest[0..4].try_into().expect("4"));
        let crc = u32::from_be_bytes(rest[4..8].try_into().expect("4"));
        if length > RECORD_BYTES_MAX || rest.len() < RECORD_HEADER_BYTES + length as usize {
            return (
                offsets,
                position,
                Some(format!("record of {length} bytes runs past the end")),
            );
        }
        let payload = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + length as usize];
        if crc32c::crc32c(payload) != crc {
            return (offsets, position, Some("CRC mismatch".into()));
        }
        match serde_json::from_slice(payload) {
            Ok(record) => apply(&mut offsets, record),
            Err(error) => {
                return (
                    offsets,
                    position,
                    Some(format!("undecodable record: {error}")),
                )
            }
        }
        position += RECORD_HEADER_BYTES + length as usize;
    }
    (offsets, position, None)
}

impl OffsetStore {
    /// Opens (creating) the store in `dir`, truncating a torn tail.
    pub(crate) fn open(io: Arc<dyn Io>, dir: &Path) -> std::io::Result<Self> {
        io.create_dir_all(dir)?;
        let path = dir.join("offsets.log");
        let file = io.open(&path, OpenMode::ReadWrite)?;
        let mut bytes = vec![0; file.len()? as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let (offsets, valid, problem) = replay(&bytes);
        if let Some(problem) = problem {
            tracing::warn!(file = %path.display(), position = valid, dropped_bytes = bytes.len() - valid, %problem,
                "truncating torn or corrupt tail of the committed-offsets log");
            file.set_len(valid as u64)?;
            file.sync()?;
        }
        Ok(Self {
            io,
            path,
            file,
            size: valid as u64,
            offsets,
        })
    }

    /// Every group's committed offsets.
    pub(crate) fn all(&self) -> &Offsets {
        &self.offsets
    }

    /// One group's committed offsets.
    pub(crate) fn group(&self, group: &str) -> Option<&BTreeMap<(String, i32), Committed>> {
        self.offsets.get(group)
    }

    fn append(&mut self, records: Vec<OffsetRecord>) -> std::io::Result<()> {
        let bytes: Vec<u8> = records.iter().flat_map(encode).collect();
        if let Err(error) = self
            .file
            .write_all_at(&bytes, self.size)
            .and_then(|()| self.file.sync())
        {
            // Leave the file as it was; a failure to do even that is
            // repaired by the next open, which truncates the torn tail.
            let _ = self.file.set_len(self.size);
            return Err(error);
        }
        self.size += bytes.len() as u64;
        for record in records {
            apply(&mut self.offsets, record);
        }
        self.maybe_rewrite();
        Ok(())
    }

    /// Durably records commits for `group`; returns once fsynced.
    pub(crate) fn commit(
        &mut self,
        group: &str,
        commits: Vec<PartitionOffset>,
    ) -> std::io::Result<()> {
        let records = commits
            .into_iter()
            .map(|commit| OffsetRecord::Commit {
                group: group.to_string(),
                topic: commit.topic,
                partition: commit.partition,
                committed: commit.committed,
            })
            .collect();
        self.append(records)
    }

    /// Forgets a whole group.
    pub(crate) fn delete_group(&mut self, group: &str) -> std::io::Result<()> {
        if !self.offsets.contains_key(group) {
            return Ok(());
        }
        self.append(vec![OffsetRecord::DeleteGroup {
            group: group.to_string(),
        }])
    }

    /// Rewrites the log as a snapshot of the live offsets once it is more
    /// than twice as large (and at least 1 MiB).
    fn maybe_rewrite(&mut self) {
        let snapshot: Vec<u8> = self
            .offsets
            .iter()
            .flat_map(|(group, partitions)| {
                partitions.iter().map(
                    move |((topic, partition), committed)| OffsetRecord::Commit {
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        committed: committed.clone(),
                    },
                )
            })
            .flat_map(|record| encode(&record))
            .collect();
        if self.size < (1 << 20) || self.size < 2 * snapshot.len() as u64 {
            return;
        }
        let result = io::write_atomic(self.io.as_ref(), &self.path, &snapshot)
            .and_then(|()| self.io.open(&self.path, OpenMode::ReadWrite));
        match result {
            Ok(file) => {
                tracing::info!(
                    before = self.size,
                    after = snapshot.len(),
                    "rewrote the committed-offsets log"
                );
                self.file = file;
                self.size = snapshot.len() as u64;
            }
            // The old file is intact; try again on a later commit.
            Err(error) => tracing::warn!(%error, "rewriting the committed-offsets log failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::StdIo;

    /// Offset `offset` committed for partition `t`/`partition`.
    fn at(partition: i32, offset: i64) -> PartitionOffset {
        PartitionOffset {
            topic: "t".into(),
            partition,
            committed: Committed {
                offset,
                leader_epoch: -1,
                metadata: "m".into(),
                commit_timestamp_ms: 1,
            },
        }
    }

    #[test]
    fn commits_survive_reopen_and_torn_tails_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = OffsetStore::open(Arc::new(StdIo), dir.path()).unwrap();
            store.commit("g", vec![at(0, 5), at(1, 7)]).unwrap();
            store.commit("g", vec![at(0, 9)]).unwrap();
            store.commit("h", vec![at(0, 1)]).unwrap();
            store.delete_group("h").unwrap();
        }
        // A crash mid-append leaves half a record.
        let path = dir.path().join("offsets.log");
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = bytes.len();
        bytes.extend_from_slice(&encode(&OffsetRecord::DeleteGroup { group: "g".into() })[..10]);
        std::fs::write(&path, &bytes).unwrap();
        let store = OffsetStore::open(Arc::new(StdIo), dir.path()).unwrap();
        let group = store.group("g").unwrap();
        assert_eq!(group[&("t".to_string(), 0)].offset, 9);
        assert_eq!(group[&("t".to_string(), 1)].offset, 7);
        assert!(store.group("h").is_none());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole as u64);
    }

    #[test]
    fn flipped_byte_stops_replay_at_that_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = OffsetStore::open(Arc::new(StdIo), dir.path()).unwrap();
            store.commit("g", vec![at(0, 1)]).unwrap();
            store.commit("g", vec![at(0, 2)]).unwrap();
        }
        let path = dir.path().join("offsets.log");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let store = OffsetStore::open(Arc::new(StdIo), dir.path()).unwrap();
        assert_eq!(store.group("g").unwrap()[&("t".to_string(), 0)].offset, 1);
    }
}
