//! Restoring one task's state in bulk, from a copy of it kept elsewhere
//! (the processor's changelog topic), when its own was lost.
//!
//! A restore writes a lot and must still leave nothing half-done behind:
//! 1. `begin_restore`: the task's key range is emptied and a `restoring`
//!    marker written, in one synced batch.
//! 2. The entries go in large write batches with RocksDB's write-ahead log
//!    off (the WAL would write every byte twice; a crash here loses them,
//!    and the marker says to start again), each sorted by key first (a
//!    key's later change still comes later): RocksDB's
//!    memtable inserts a run of ascending keys from where the last one
//!    went, where keys in changelog order each cost a search of the whole
//!    skip list (measured: most of a restore's time).
//! 3. `finish_restore`: the family is flushed (the entries are in table
//!    files from here on), then the task's metadata record is written and
//!    the marker removed, in one synced batch. Only then does the task
//!    have state again.
//!
//! A task that finds the marker at its start redoes the restore (or, with
//! nothing left to restore from, empties its range and rebuilds).

use std::sync::Arc;

use rocksdb::{BoundColumnFamily, FlushOptions, WriteBatch, WriteOptions};

use super::keys;
use super::task::TaskState;
use super::{StateConfig, StateError};

impl TaskState {
    /// The state settings (the key and value bounds size a changelog's
    /// batches).
    pub(crate) fn config(&self) -> &StateConfig {
        self.processor().config()
    }

    /// Whether a restore of this task began and did not finish.
    pub(crate) fn restore_pending(&self) -> Result<bool, StateError> {
        self.processor().restore_pending(self.task())
    }

    /// Starts a restore: the task's range emptied and marked as being
    /// restored, synced. Staged writes are dropped.
    pub(crate) fn begin_restore(&mut self) -> Result<Restorer<'_>, StateError> {
        self.discard();
        self.reset_range(true)?;
        Restorer::new(self)
    }

    /// Empties the task's range, marker included (synced): a restore that
    /// cannot go on leaves no partial state behind.
    pub(crate) fn clear(&mut self) -> Result<(), StateError> {
        self.discard();
        self.reset_range(false)
    }

    fn reset_range(&self, marked: bool) -> Result<(), StateError> {
        let processor = self.processor();
        let family = processor.family()?;
        let mut batch = WriteBatch::default();
        let task = self.task();
        batch.delete_range_cf(&family, keys::task_start(task), keys::task_end(task));
        if marked {
            batch.put_cf(&family, keys::restoring(task), []);
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        processor.db.db().write_opt(batch, &options)?;
        Ok(())
    }

    /// Ends a restore: the restored entries flushed to table files, then
    /// `meta` written and the marker removed in one synced batch.
    pub(crate) fn finish_restore(&mut self, meta: &[u8]) -> Result<(), StateError> {
        let processor = self.processor();
        let family = processor.family()?;
        let db = processor.db.db();
        let mut flush = FlushOptions::default();
        flush.set_wait(true);
        db.flush_cf_opt(&family, &flush)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(&family, keys::meta(self.task()), meta);
        batch.delete_cf(&family, keys::restoring(self.task()));
        let mut options = WriteOptions::default();
        options.set_sync(true);
        db.write_opt(batch, &options)?;
        Ok(())
    }
}

/// Writes restored entries of one task in large unlogged batches.
pub(crate) struct Restorer<'a> {
    state: &'a TaskState,
    family: Arc<BoundColumnFamily<'a>>,
    /// The batch's full keys and values, back to back.
    arena: Vec<u8>,
    /// The batch's entries, in arrival order until sorted.
    entries: Vec<Entry>,
}

/// One entry of a [`Restorer`]'s batch: where its full key starts in the
/// arena, its length, and its value's length (`None`: a delete), which
/// follows the key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: usize,
    key_bytes: u32,
    value_bytes: Option<u32>,
}

/// Bytes counted per entry beyond its key and value.
const ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<Entry>();

impl std::fmt::Debug for Restorer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restorer")
            .field("task", &self.state.task())
            .finish()
    }
}

impl<'a> Restorer<'a> {
    fn new(state: &'a TaskState) -> Result<Self, StateError> {
        Ok(Self {
            state,
            family: state.processor().family()?,
            arena: Vec::new(),
            entries: Vec::new(),
        })
    }

    /// Adds a put (`Some`) or a delete of the key whose suffix (the key
    /// without its task) is `suffix`: a store entry or a timer, checked.
    pub(crate) fn put(&mut self, suffix: &[u8], value: Option<&[u8]>) -> Result<(), StateError> {
        if !keys::is_entry_suffix(suffix) {
            return Err(StateError::Storage(format!(
                "a restored key is not a store entry or timer key ({} bytes, tag {:?})",
                suffix.len(),
                suffix.first()
            )));
        }
        let start = self.arena.len();
        self.arena
            .extend_from_slice(&self.state.task().to_be_bytes());
        self.arena.extend_from_slice(suffix);
        if let Some(value) = value {
            self.arena.extend_from_slice(value);
        }
        self.entries.push(Entry {
            start,
            key_bytes: (4 + suffix.len()) as u32,
            value_bytes: value.map(|v| v.len() as u32),
        });
        Ok(())
    }

    /// Bytes in the batch not yet written.
    pub(crate) fn batch_bytes(&self) -> usize {
        self.arena.len() + self.entries.len() * ENTRY_OVERHEAD_BYTES
    }

    /// Writes the batch, sorted by key, with the write-ahead log off, and
    /// starts the next.
    pub(crate) fn write(&mut self) -> Result<(), StateError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let arena = &self.arena;
        let key = |e: &Entry| &arena[e.start..e.start + e.key_bytes as usize];
        // A key's changes keep their order: entries start later in the
        // arena the later they came.
        self.entries
            .sort_unstable_by(|a, b| key(a).cmp(key(b)).then(a.start.cmp(&b.start)));
        let mut batch = WriteBatch::with_capacity_bytes(self.batch_bytes() + 64);
        for entry in &self.entries {
            let value_start = entry.start + entry.key_bytes as usize;
            match entry.value_bytes {
                Some(bytes) => batch.put_cf(
                    &self.family,
                    key(entry),
                    &arena[value_start..value_start + bytes as usize],
                ),
                None => batch.delete_cf(&self.family, key(entry)),
            }
        }
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        self.state.processor().db.db().write_opt(batch, &options)?;
        self.arena.clear();
        self.entries.clear();
        Ok(())
    }
}
