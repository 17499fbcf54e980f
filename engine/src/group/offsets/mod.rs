//! Durable committed offsets: an append-only log of commit and delete
//! records (`format.rs` has the bytes), replayed into memory on open.
//!
//! A commit costs what it changes: its records are appended and fsynced,
//! then applied to the in-memory map. Nothing on that path walks the other
//! offsets. When the file has grown past twice what a snapshot would take
//! (and past [`COMPACTION_BYTES_MIN`]), the broker's periodic task
//! compacts it off the commit path: the snapshot is written to a side file
//! without holding the append lock, then the records appended meanwhile
//! are copied after it and the side file is renamed over the log.
//!
//! Two locks, taken in this order: `log` (the file; held across the
//! fsync, so appends are serialised in file order) and `live` (the map
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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use self::format::{Live, OffsetRecord, Replayed, FILE_HEADER};
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

/// The log is not compacted below this size.
const COMPACTION_BYTES_MIN: u64 = 1 << 20;

/// The open log file.
struct LogFile {
    file: Arc<dyn IoFile>,
    /// Bytes of whole records (and the file header).
    size: u64,
    /// Size right after the last compaction: the next waits until the file
    /// has doubled from here too, so an estimate that runs low cannot make
    /// compactions back to back.
    compacted_bytes: u64,
    /// Why appends are refused after a failed write or fsync.
    poisoned: Option<String>,
}

/// The store; internally synchronised (see the module header).
pub(crate) struct OffsetStore {
    io: Arc<dyn Io>,
    path: PathBuf,
    log: Mutex<LogFile>,
    live: RwLock<Live>,
}

fn invalid_data(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// The compaction side file.
fn compacting_path(path: &Path) -> PathBuf {
    path.with_extension("log.compacting")
}

impl OffsetStore {
    /// Opens (creating) the store in `dir`: replays the log, cuts a torn
    /// tail, skips damaged records with valid ones after them (logged), and
    /// migrates a format 1 file. Refuses (an error naming the file and the
    /// position) what it cannot read safely.
    pub(crate) fn open(io: Arc<dyn Io>, dir: &Path) -> std::io::Result<Self> {
        io.create_dir_all(dir)?;
        let path = dir.join("offsets.log");
        let side = compacting_path(&path);
        if io.exists(&side) {
            io.remove_file(&side)?;
        }
        let file = io.open(&path, OpenMode::ReadWrite)?;
        let mut bytes = vec![0; file.len()? as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let fresh = bytes.len() < FILE_HEADER.len() && FILE_HEADER.starts_with(&bytes);
        // Format 2 records carry a magic that never occurs in format 1's
        // JSON: with it present, a wrong header is damage to the header,
        // not an old file, and the records are read as format 2.
        let header_damaged = !fresh
            && !bytes.starts_with(&FILE_HEADER)
            && format::has_record_magic(&bytes[FILE_HEADER.len().min(bytes.len())..]);
        let version_1 = !fresh && !header_damaged && !bytes.starts_with(&FILE_HEADER);
        if header_damaged {
            tracing::error!(file = %path.display(),
                "the committed-offsets log's file header is damaged; reading its records as format 2");
        }
        let replayed = if fresh {
            Ok(Replayed::default())
        } else if version_1 {
            format::replay_v1(&bytes)
        } else {
            format::replay(&bytes)
        };
        let replayed = replayed.map_err(|problem| {
            invalid_data(format!(
                "refusing to start on {}: {problem}",
                path.display()
            ))
        })?;
        report(&path, &bytes, &replayed);
        let damaged = header_damaged || !replayed.skipped.is_empty();
        if damaged || (version_1 && replayed.torn.is_some()) {
            // The rewrite below drops bytes: keep the original for a human.
            let kept = path.with_extension("log.damaged");
            io::write_atomic(io.as_ref(), &kept, &bytes)?;
            tracing::error!(file = %kept.display(), "kept a copy of the damaged committed-offsets log");
        }
        let size = if fresh || version_1 || damaged {
            // A clean format 2 file: migrated, or without the damage.
            let snapshot = format::snapshot(&replayed.live.offsets)?;
            io::write_atomic(io.as_ref(), &path, &snapshot)?;
            snapshot.len() as u64
        } else {
            if replayed.torn.is_some() {
                file.set_len(replayed.valid_bytes as u64)?;
                file.sync()?;
            }
            replayed.valid_bytes as u64
        };
        let file = io.open(&path, OpenMode::ReadWrite)?;
        Ok(Self {
            io,
            path,
            log: Mutex::new(LogFile {
                file,
                size,
                compacted_bytes: size,
                poisoned: None,
            }),
            live: RwLock::new(replayed.live),
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
        let mut log = self.log.lock().expect("offsets log lock");
        if let Some(reason) = &log.poisoned {
            return Err(std::io::Error::other(format!(
                "the committed-offsets log is poisoned by an earlier failure ({reason}); \
                 restart the broker"
            )));
        }
        let written = log
            .file
            .write_all_at(&bytes, log.size)
            .and_then(|()| log.file.sync());
        if let Err(error) = written {
            tracing::error!(file = %self.path.display(), %error,
                "writing the committed-offsets log failed; refusing further commits until a restart");
            log.poisoned = Some(error.to_string());
            return Err(error);
        }
        log.size += bytes.len() as u64;
        let mut live = self.live.write().expect("offsets live lock");
        for record in records {
            live.apply(record);
        }
        Ok(())
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

    /// Whether the log has grown past twice a snapshot's size; and the
    /// file size now.
    fn compaction_due(&self) -> Option<u64> {
        let log = self.log.lock().expect("offsets log lock");
        let snapshot_bytes = self.live().snapshot_bytes.max(log.compacted_bytes);
        let due = log.poisoned.is_none()
            && log.size >= COMPACTION_BYTES_MIN
            && log.size > 2 * snapshot_bytes;
        due.then_some(log.size)
    }

    /// Compacts the log if due (see the module header); returns whether it
    /// did. Run by the broker's periodic task, never on the commit path.
    pub(crate) fn compact_if_due(&self) -> std::io::Result<bool> {
        let Some(base) = self.compaction_due() else {
            return Ok(false);
        };
        // The map may already hold records appended after `base`; copying
        // them again below is harmless: every record sets or removes
        // offsets, so replaying a suffix twice ends in the same state.
        let offsets = self.live().offsets.clone();
        let snapshot = format::snapshot(&offsets)?;
        drop(offsets);
        let side = compacting_path(&self.path);
        let result = self.write_compacted(&side, &snapshot, base);
        if result.is_err() {
            let _ = self.io.remove_file(&side);
        }
        result.map(|()| true)
    }

    /// Writes `snapshot` to `side`, then (under the append lock) the
    /// records appended after `base`, and renames it over the log.
    fn write_compacted(&self, side: &Path, snapshot: &[u8], base: u64) -> std::io::Result<()> {
        let file = self.io.open(side, OpenMode::Truncate)?;
        file.write_all_at(snapshot, 0)?;
        file.sync()?;
        let mut log = self.log.lock().expect("offsets log lock");
        let mut tail = vec![0; (log.size - base) as usize];
        log.file.read_exact_at(&mut tail, base)?;
        file.write_all_at(&tail, snapshot.len() as u64)?;
        file.sync()?;
        self.io.rename(side, &self.path)?;
        // From the rename on, the log is the new file: later appends must
        // go to it, never to the unlinked old one.
        let before = log.size;
        log.file = file;
        log.size = (snapshot.len() + tail.len()) as u64;
        log.compacted_bytes = log.size;
        let parent = self.path.parent().unwrap_or(Path::new("."));
        if let Err(error) = self.io.sync_dir(parent) {
            // The rename may not survive a power cut, and commits appended
            // to the new file would then be lost with it: refuse them.
            tracing::error!(file = %self.path.display(), %error,
                "syncing the directory after compacting the committed-offsets log failed; \
                 refusing further commits until a restart");
            log.poisoned = Some(format!("directory fsync after compaction failed: {error}"));
            return Err(error);
        }
        tracing::info!(
            before,
            after = log.size,
            "compacted the committed-offsets log"
        );
        Ok(())
    }
}

/// Logs what replay cut or skipped.
fn report(path: &Path, bytes: &[u8], replayed: &Replayed) {
    for (position, length) in &replayed.skipped {
        tracing::error!(file = %path.display(), position, bytes = length,
            "skipped a damaged record of the committed-offsets log; valid records follow it \
             and are kept (the damaged commit is lost: that group resumes from its previous \
             commit)");
    }
    if let Some(problem) = &replayed.torn {
        tracing::warn!(file = %path.display(), position = replayed.valid_bytes,
            dropped_bytes = bytes.len() - replayed.valid_bytes, %problem,
            "cutting the torn tail of the committed-offsets log (an unacknowledged append)");
    }
}

#[cfg(test)]
mod tests;
