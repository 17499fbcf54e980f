//! Durable committed offsets: an append-only log of commit and delete
//! records (`format.rs` has the bytes), replayed into memory on open.
//! The file handling (replay and repair, append and fsync poisoning,
//! compaction) is the shared `crate::journal`'s.
//!
//! A commit costs what it changes: its records are appended and fsynced,
//! then applied to the in-memory map. Nothing on that path walks the other
//! offsets. When the file has grown past twice what a snapshot would take
//! (and past `journal::COMPACTION_BYTES_MIN`), the broker's periodic task
//! compacts it off the commit path: the snapshot is written to a side file
//! without holding the append lock, then the records appended meanwhile
//! are copied after it and the side file is renamed over the log.
//!
//! Two locks, taken in this order: the journal's file lock (held across
//! the fsync, so appends are serialised in file order) and `live` (the map
//! readers see; held only to apply or read, never across I/O). OffsetFetch,
//! ListGroups and DescribeGroups read `live` and so never wait for an
//! fsync. Callers run commits off the async workers (the OffsetCommit
//! handler uses spawn_blocking, processors commit from their blocking
//! step).
//!
//! A failed write or fsync poisons the store: the page cache may have
//! dropped what the disk refused, so every later append fails until a
//! restart replays what is really on disk.

mod format;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use self::format::{Live, OffsetRecord};
use crate::journal::Journal;
use crate::log::io::Io;

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

/// The store; internally synchronised (see the module header).
pub(crate) struct OffsetStore {
    journal: Journal,
    live: RwLock<Live>,
}

impl OffsetStore {
    /// Opens (creating) the store in `dir`: replays the log, cuts a torn
    /// tail, skips damaged records with valid ones after them (logged), and
    /// migrates a format 1 file. Refuses (an error naming the file and the
    /// position) what it cannot read safely.
    pub(crate) fn open(io: Arc<dyn Io>, dir: &Path) -> std::io::Result<Self> {
        let path = dir.join("offsets.log");
        let (journal, live) = Journal::open(io, &path, &format::FRAMING, Some(format::FORMAT_1))?;
        Ok(Self {
            journal,
            live: RwLock::new(live),
        })
    }

    fn live(&self) -> std::sync::RwLockReadGuard<'_, Live> {
        self.live.read().expect("offsets live lock")
    }

    /// One group's committed offsets (a copy).
    pub(crate) fn group(&self, group: &str) -> Option<BTreeMap<(String, i32), Committed>> {
        self.live().offsets.get(group).cloned()
    }

    /// Whether `group` has committed offsets.
    pub(crate) fn contains_group(&self, group: &str) -> bool {
        self.live().offsets.contains_key(group)
    }

    /// Every group with committed offsets, with its newest commit time.
    pub(crate) fn groups(&self) -> Vec<(String, i64)> {
        let live = self.live();
        live.offsets
            .keys()
            .map(|group| {
                let last_ms = live.last_commit_ms.get(group).copied().unwrap_or(0);
                (group.clone(), last_ms)
            })
            .collect()
    }

    /// Appends `records` and fsyncs them, then applies them. Refuses an
    /// oversized record before writing anything.
    fn append(&self, records: Vec<OffsetRecord>) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for record in &records {
            format::encode(record, &mut bytes)?;
        }
        self.journal.append(&bytes, || {
            let mut live = self.live.write().expect("offsets live lock");
            for record in records {
                live.apply(record);
            }
        })
    }

    /// Durably records commits for `group`; returns once fsynced.
    pub(crate) fn commit(&self, group: &str, commits: Vec<PartitionOffset>) -> std::io::Result<()> {
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
    pub(crate) fn delete_group(&self, group: &str) -> std::io::Result<()> {
        if !self.contains_group(group) {
            return Ok(());
        }
        self.append(vec![OffsetRecord::DeleteGroup {
            group: group.to_string(),
        }])
    }

    /// Compacts the log if due (see the module header); returns whether it
    /// did. Run by the broker's periodic task, never on the commit path.
    pub(crate) fn compact_if_due(&self) -> std::io::Result<bool> {
        // The map may already hold records appended after the journal
        // decided; copying them again is harmless: every record sets or
        // removes offsets, so replaying a suffix twice ends in the same
        // state.
        self.journal.compact_if_due(
            || self.live().snapshot_bytes,
            || {
                let offsets = self.live().offsets.clone();
                format::snapshot(&offsets)
            },
        )
    }
}

#[cfg(test)]
mod tests;
