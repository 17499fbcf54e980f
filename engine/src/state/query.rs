//! Reads of committed state, for interactive queries and status: straight
//! from RocksDB, which holds nothing but commits (staged writes live in
//! each task), so an answer is always the state of a commit. A scan reads
//! one RocksDB snapshot (its iterator's), never half of a commit; a
//! [`Committed`] view reads a task's commit record, its restore marker and
//! its entries from one snapshot, so an answer and the position it
//! reports are of the same commit.

use rocksdb::{ReadOptions, SnapshotWithThreadMode};

use super::db::{Db, ProcessorState};
use super::keys;
use super::StateError;

/// One page of a scan: entries with the store prefix removed, and where
/// the next page starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) next: Option<Vec<u8>>,
}

/// How full a scan page is: it takes at most `limit` entries, and none
/// once it holds `state.scan_bytes_max` of keys and values (so at most the
/// bound plus one entry, and always at least one).
pub(super) struct PageFill {
    limit: usize,
    bytes_max: usize,
    entries: usize,
    bytes: usize,
}

impl PageFill {
    pub(super) fn new(limit: usize, bytes_max: usize) -> Self {
        Self {
            limit,
            bytes_max,
            entries: 0,
            bytes: 0,
        }
    }

    /// Whether the page takes no more entries.
    pub(super) fn full(&self) -> bool {
        self.entries >= self.limit || (self.entries > 0 && self.bytes >= self.bytes_max)
    }

    /// The page took an entry.
    pub(super) fn add(&mut self, key: &[u8], value: &[u8]) {
        self.entries += 1;
        self.bytes += key.len() + value.len();
    }
}

impl Page {
    /// A page from full keys that all start with a prefix of `prefix_bytes`.
    pub(crate) fn strip(
        prefix_bytes: usize,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        next: Option<Vec<u8>>,
    ) -> Self {
        Self {
            entries: entries
                .into_iter()
                .map(|(mut key, value)| {
                    key.drain(..prefix_bytes);
                    (key, value)
                })
                .collect(),
            next: next.map(|mut key| {
                key.drain(..prefix_bytes);
                key
            }),
        }
    }
}

impl ProcessorState {
    /// The committed value at `key` of store `store` in `task`.
    pub(crate) fn get_committed(
        &self,
        task: u32,
        store: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.get_at(None, task, store, key)
    }

    /// `task`'s committed state as of now, read from one snapshot.
    pub(crate) fn committed(&self, task: u32) -> Committed<'_> {
        Committed {
            state: self,
            snapshot: self.db.db().snapshot(),
            task,
        }
    }

    /// Read options at `snapshot` (the latest state without one).
    fn read_options(snapshot: Option<&Snapshot<'_>>) -> ReadOptions {
        let mut options = ReadOptions::default();
        if let Some(snapshot) = snapshot {
            options.set_snapshot(snapshot);
        }
        options
    }

    fn get_raw(
        &self,
        snapshot: Option<&Snapshot<'_>>,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        let family = self.family()?;
        Ok(self
            .db
            .db()
            .get_pinned_cf_opt(&family, key, &Self::read_options(snapshot))?
            .map(|value| value.to_vec()))
    }

    fn get_at(
        &self,
        snapshot: Option<&Snapshot<'_>>,
        task: u32,
        store: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        keys::validate_store_name(store)?;
        self.get_raw(
            snapshot,
            &keys::entry(&keys::store_prefix(task, store), key),
        )
    }

    fn scan_at(
        &self,
        snapshot: &Snapshot<'_>,
        task: u32,
        store: &str,
        (start, end): (&[u8], Option<&[u8]>),
        limit: usize,
    ) -> Result<Page, StateError> {
        keys::validate_store_name(store)?;
        let limit = limit.min(self.config().scan_entries_max);
        let prefix = keys::store_prefix(task, store);
        let from = keys::entry(&prefix, start);
        let to = match end {
            Some(end) => Some(keys::entry(&prefix, end)),
            None => keys::prefix_end(&prefix),
        };
        let family = self.family()?;
        let mut options = Self::read_options(Some(snapshot));
        if let Some(to) = to {
            options.set_iterate_upper_bound(to);
        }
        let mut iterator = self.db.db().raw_iterator_cf_opt(&family, options);
        iterator.seek(&from);
        let mut fill = PageFill::new(limit, self.config().scan_bytes_max);
        let mut entries = Vec::new();
        let mut next = None;
        while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
            if fill.full() {
                next = Some(key.to_vec());
                break;
            }
            fill.add(key, value);
            entries.push((key.to_vec(), value.to_vec()));
            iterator.next();
        }
        iterator.status()?;
        Ok(Page::strip(prefix.len(), entries, next))
    }

    /// The committed metadata record of `task`.
    pub(crate) fn meta(&self, task: u32) -> Result<Option<Vec<u8>>, StateError> {
        self.get_raw(None, &keys::meta(task))
    }

    /// Whether a restore of `task` from its changelog began and did not
    /// finish (its marker is there).
    pub(crate) fn restore_pending(&self, task: u32) -> Result<bool, StateError> {
        self.restoring_at(None, task)
    }

    fn restoring_at(&self, snapshot: Option<&Snapshot<'_>>, task: u32) -> Result<bool, StateError> {
        Ok(self.get_raw(snapshot, &keys::restoring(task))?.is_some())
    }

    /// Every task's metadata record, by task: one seek per task, whatever
    /// the size of its state.
    pub(crate) fn metas(&self) -> Result<Vec<(u32, Vec<u8>)>, StateError> {
        let family = self.family()?;
        let mut iterator = self.db.db().raw_iterator_cf(&family);
        let mut metas = Vec::new();
        iterator.seek_to_first();
        while let Some(key) = iterator.key() {
            let Some(task) = key
                .get(..4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
            else {
                break;
            };
            if key.len() == 5 && key[4] == 0 {
                metas.push((task, iterator.value().unwrap_or_default().to_vec()));
            }
            match task.checked_add(1) {
                Some(next) => iterator.seek(next.to_be_bytes()),
                None => break,
            }
        }
        iterator.status()?;
        Ok(metas)
    }

    /// Writes `entries` (a put, or a delete for `None`) and `task`'s
    /// metadata record in one batch, unsynced: for state that can be
    /// rebuilt from a log (tables).
    pub(crate) fn write(
        &self,
        task: u32,
        entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        meta: &[u8],
    ) -> Result<(), StateError> {
        let family = self.family()?;
        let mut batch = rocksdb::WriteBatch::default();
        for (key, value) in entries {
            match value {
                Some(value) => batch.put_cf(&family, key, value),
                None => batch.delete_cf(&family, key),
            }
        }
        batch.put_cf(&family, keys::meta(task), meta);
        self.db.db().write(batch)?;
        Ok(())
    }

    /// On-disk bytes of `task`'s state, estimated by RocksDB (memtables
    /// included).
    pub(crate) fn approximate_bytes(&self, task: u32) -> Result<u64, StateError> {
        let family = self.family()?;
        let start = keys::task_start(task);
        let end = keys::task_end(task);
        let sizes = self
            .db
            .db()
            .get_approximate_sizes_cf(&family, &[rocksdb::Range::new(&start, &end)]);
        Ok(sizes.first().copied().unwrap_or(0))
    }
}

type Snapshot<'a> = SnapshotWithThreadMode<'a, Db>;

/// One task's committed state at one instant (a RocksDB snapshot, held
/// while the view lives: a query's few reads, never longer).
pub(crate) struct Committed<'a> {
    state: &'a ProcessorState,
    snapshot: Snapshot<'a>,
    task: u32,
}

impl Committed<'_> {
    /// The task's commit record.
    pub(crate) fn meta(&self) -> Result<Option<Vec<u8>>, StateError> {
        self.state
            .get_raw(Some(&self.snapshot), &keys::meta(self.task))
    }

    /// Whether a restore from the changelog is under way (or was
    /// interrupted): the task's entries are then incomplete and of no
    /// commit.
    pub(crate) fn restoring(&self) -> Result<bool, StateError> {
        self.state.restoring_at(Some(&self.snapshot), self.task)
    }

    /// The value at `key` of `store`.
    pub(crate) fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.state
            .get_at(Some(&self.snapshot), self.task, store, key)
    }

    /// Entries of `store` with `start <= key < end`, at most `limit` (and
    /// `state.scan_entries_max`, and about `state.scan_bytes_max`).
    pub(crate) fn scan(
        &self,
        store: &str,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page, StateError> {
        self.state
            .scan_at(&self.snapshot, self.task, store, (start, end), limit)
    }
}
