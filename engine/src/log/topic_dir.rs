//! Where a topic incarnation lives on disk, and how it goes away.
//!
//! A topic's directory is named after its name *and* its id
//! (`topics/<name>-<id hex>/`), so deleting a topic and creating one with
//! the same name gives the new one a directory no handle of the old one
//! knows: a produce in flight, a processor step or a compaction run that
//! still holds an old partition rolls, renames or removes files only under
//! the old path, never in the new topic's directory.
//!
//! Deletion renames the directory into `deleting/` (one atomic step, then
//! both parents fsynced) before removing its files, so a crash or an I/O
//! error halfway through leaves a tombstone that the next open finishes
//! removing, never a partial directory under `topics/`. The partitions of
//! a deleted topic are marked retired first, so writes through old handles
//! fail with `UnknownTopic` instead of touching files.
//!
//! Data directories from before ids were in directory names
//! (`topics/<name>/`, with the id already in `topic.json`) are migrated on
//! open by renaming the directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::io::Io;
use super::partition::Partition;
use super::LogError;

/// Directory under the data directory holding deletions in progress.
pub(super) const DELETING_DIR: &str = "deleting";

/// Bytes of the topic name kept in its directory name: with `-` and 32 hex
/// digits of id the name stays within the 255 bytes file systems allow
/// (topic names, ASCII only, may be 249 bytes long).
const NAME_PREFIX_BYTES_MAX: usize = 200;

/// The directory name of the topic `name` with id `id`. The name in it is
/// for people; the store reads the name from `topic.json`.
pub(super) fn dir_name(name: &str, id: [u8; 16]) -> String {
    let prefix = &name[..name.len().min(NAME_PREFIX_BYTES_MAX)];
    format!("{prefix}-{}", uuid::Uuid::from_bytes(id).simple())
}

/// Finishes the deletions a crash or an error interrupted: removes
/// everything under `deleting/` (creating it if missing).
pub(super) fn finish_deletions(io: &dyn Io, data_dir: &Path) -> Result<(), LogError> {
    let deleting = data_dir.join(DELETING_DIR);
    io.create_dir_all(&deleting)
        .map_err(|source| LogError::io(&deleting, source))?;
    let leftovers = io
        .read_dir(&deleting)
        .map_err(|source| LogError::io(&deleting, source))?;
    if leftovers.is_empty() {
        return Ok(());
    }
    for leftover in &leftovers {
        tracing::info!(dir = %leftover.display(), "finishing an interrupted topic deletion");
        // A deleted topic must not keep the broker from starting: what
        // cannot be removed now is tried again at the next start.
        if let Err(error) = io.remove_dir_all(leftover) {
            tracing::warn!(dir = %leftover.display(), %error,
                "could not remove a deleted topic's files; trying again at the next start");
        }
    }
    io.sync_dir(&deleting)
        .map_err(|source| LogError::io(&deleting, source))
}

/// Moves a topic directory from the old layout (`topics/<name>/`) to its
/// name with id; returns where the topic now lives.
pub(super) fn migrate(
    io: &dyn Io,
    dir: &Path,
    name: &str,
    id: [u8; 16],
) -> Result<PathBuf, LogError> {
    let wanted = dir_name(name, id);
    if dir.file_name().and_then(|name| name.to_str()) == Some(wanted.as_str()) {
        return Ok(dir.to_path_buf());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    let target = parent.join(&wanted);
    if io.exists(&target) {
        return Err(LogError::BadMetadata {
            path: dir.to_path_buf(),
            reason: format!("topic {name:?} is also in {}", target.display()),
        });
    }
    tracing::info!(from = %dir.display(), to = %target.display(), "moving topic directory to its name with id");
    io.rename(dir, &target)
        .map_err(|source| LogError::io(&target, source))?;
    io.sync_dir(parent)
        .map_err(|source| LogError::io(parent, source))?;
    Ok(target)
}

/// Retires `partitions` (later writes, rolls, compaction swaps and
/// retention through them fail) and waits out the writes and swaps already
/// under way, so none of them runs after the caller renames the directory.
pub(super) fn retire(retired: &AtomicBool, partitions: &[std::sync::Arc<Partition>]) {
    retired.store(true, Ordering::SeqCst);
    // A write or compaction swap checks under the partition lock.
    for partition in partitions {
        drop(partition.lock());
    }
}

/// Takes a topic directory out of the namespace: renames it into
/// `deleting/`; returns the new path. On error nothing moved.
pub(super) fn move_out(io: &dyn Io, data_dir: &Path, dir: &Path) -> Result<PathBuf, LogError> {
    let tombstone = data_dir
        .join(DELETING_DIR)
        .join(dir.file_name().unwrap_or_default());
    io.rename(dir, &tombstone)
        .map_err(|source| LogError::io(dir, source))?;
    Ok(tombstone)
}

/// Makes the move of `from` to `tombstone` durable (fsyncs both parents),
/// then removes the files; a failure to remove them is only logged: the
/// next open finishes.
pub(super) fn purge(io: &dyn Io, from: &Path, tombstone: &Path) -> Result<(), LogError> {
    let deleting = tombstone.parent().unwrap_or(Path::new("."));
    for parent in [from.parent().unwrap_or(Path::new(".")), deleting] {
        io.sync_dir(parent)
            .map_err(|source| LogError::io(parent, source))?;
    }
    let removed = io
        .remove_dir_all(tombstone)
        .and_then(|()| io.sync_dir(deleting));
    if let Err(error) = removed {
        tracing::warn!(dir = %tombstone.display(), %error, "topic files not removed yet; the next start removes them");
    }
    Ok(())
}

impl Partition {
    /// Fails once the partition's topic is deleted: a handle of a deleted
    /// topic must not write, roll, compact or remove anything.
    pub(super) fn check_live(&self) -> Result<(), LogError> {
        if self.context().retired.load(Ordering::SeqCst) {
            return Err(LogError::UnknownTopic(self.topic().to_string()));
        }
        Ok(())
    }
}
