//! A task's range reads and deletes: scans merging its staged writes over
//! RocksDB, `delete_range` (key by key, counted) and `clear_range`
//! (staged as a whole, one range tombstone at the commit), and the count
//! of the task's committed keys.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rocksdb::ReadOptions;

use super::{TaskState, CLEARED_RANGES_MAX};
use crate::state::keys;
use crate::state::query::{Page, PageFill};
use crate::state::StateError;

/// Staged writes in key order: a put, or a delete (`None`).
type StagedWrites<'a> = Box<dyn Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a>;

/// Entries in key order (full keys), and the next live key when the scan
/// stopped at its limit.
type Merged = (Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>);

impl TaskState {
    /// Entries of `store` with `start <= key < end`, at most `limit`
    /// (and `state.scan_entries_max`, and about `state.scan_bytes_max`).
    pub(crate) fn scan(
        &mut self,
        store: &[u8],
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page, StateError> {
        let limit = limit.min(self.processor.config().scan_entries_max);
        let (from, to) = store_range(store, start, end);
        self.entries.order();
        let (entries, next) = self.merged(&from, to.as_deref(), limit)?;
        Ok(Page::strip(store.len(), entries, next))
    }

    /// Deletes the entries of `store` with `start <= key < end`; returns
    /// how many there were.
    pub(crate) fn delete_range(
        &mut self,
        store: &[u8],
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<u64, StateError> {
        let (from, to) = store_range(store, start, end);
        self.entries.order();
        let mut deleted = 0;
        let mut cursor = from;
        loop {
            let (entries, next) = self.merged(&cursor, to.as_deref(), 4096)?;
            deleted += entries.len() as u64;
            for (key, value) in entries {
                self.stage_over(&key, None, Some(value))?;
            }
            match next {
                Some(next) => cursor = next,
                None => return Ok(deleted),
            }
        }
    }

    /// Deletes the entries of `store` with `start <= key < end` without
    /// reading them from RocksDB, when the task's entries hold every key
    /// it has (so they know how many the range holds, for the key count):
    /// staged as a range, committed as one RocksDB range tombstone.
    /// Otherwise (the entries do not hold every key: after a restart, or
    /// with a cache smaller than the state; past [`CLEARED_RANGES_MAX`]
    /// ranges in a commit; with a changelog) key by key, as `delete_range`.
    pub(crate) fn clear_range(
        &mut self,
        store: &[u8],
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<(), StateError> {
        if self.clear_key_by_key
            || self.cleared.len() >= CLEARED_RANGES_MAX
            || !self.holds_every_key()
        {
            return self.delete_range(store, start, end).map(|_| ());
        }
        let (from, to) = store_range(store, start, end);
        let to = to.unwrap_or_else(|| keys::stores_range(self.task).1);
        if to <= from {
            return Ok(());
        }
        let live = self.entries.clear_range(&from, &to);
        // Exact: the entries held every key.
        let removed = i64::try_from(live).unwrap_or(i64::MAX);
        self.keys.add(keys::store_name(store), -removed);
        // Counted as the writes it replaces, so the host's pacing of timer
        // work (in writes) sees a clear as the work it stands for.
        self.writes = self.writes.wrapping_add(live.max(1));
        self.cleared.push((from, to));
        Ok(())
    }

    /// Forgets the ranges cleared after the first `keep`, and what the
    /// entries learned under them.
    pub(super) fn uncleared_after(&mut self, keep: usize) {
        for (from, to) in self.cleared.drain(keep..) {
            self.entries.forget_range(&from, &to);
        }
    }

    /// Merges staged writes over RocksDB for `[start, end)`: live entries
    /// in key order, at most `limit`, and no more once they hold
    /// `state.scan_bytes_max` of keys and values.
    pub(super) fn merged(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Merged, StateError> {
        if end.is_some_and(|end| end <= start) {
            return Ok((Vec::new(), None));
        }
        // Timers of a commit in flight are still staged; store entries
        // the entries dropped are not.
        if self.holds_stores(start, end) {
            self.settled()?;
        }
        let family = self.processor.family()?;
        let mut options = self.processor.db.task_read_options();
        if let Some(end) = end {
            options.set_iterate_upper_bound(end.to_vec());
        }
        let mut iterator = self.processor.db.db().raw_iterator_cf_opt(&family, options);
        iterator.seek(start);
        // Staged writes are read lazily, as a scan stopping at `limit`
        // need not copy every staged write after it: timers from `staged`,
        // store entries from the entries' ordered index (which `scan` and
        // `delete_range` build; without it, collected into a list).
        let staged: StagedWrites<'_> = match self.holds_stores(start, end) {
            true => match self.entries.staged_range_lazily(start, end) {
                // Both in key order, and no key in both (store entries
                // live in `entries` only).
                Some(entries) => Box::new(merge_sorted(self.staged.range(start, end), entries)),
                None => Box::new(self.staged_in(start, end).into_iter()),
            },
            false => Box::new(self.staged.range(start, end)),
        };
        let mut staged = staged.peekable();
        let mut fill = PageFill::new(limit, self.processor.config().scan_bytes_max);
        let mut entries = Vec::new();
        loop {
            #[cfg(test)]
            super::MERGED_STEPS.with(|steps| steps.set(steps.get() + 1));
            let stored = iterator.key().map(<[u8]>::to_vec);
            if let Some(end) = stored
                .as_deref()
                .and_then(|key| keys::in_cleared(&self.cleared, key))
            {
                // RocksDB's entries under a range cleared since the commit
                // are gone; the staged writes there are the range's.
                iterator.seek(end);
                continue;
            }
            let order = match (&stored, staged.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(stored), Some((key, _))) => stored.as_slice().cmp(key),
            };
            let (key, value) = match order {
                Ordering::Less => {
                    let value = iterator.value().map(<[u8]>::to_vec);
                    iterator.next();
                    (stored.expect("a stored key"), value)
                }
                Ordering::Equal | Ordering::Greater => {
                    if order == Ordering::Equal {
                        iterator.next();
                    }
                    let (key, value) = staged.next().expect("a staged key");
                    (key.to_vec(), value.map(<[u8]>::to_vec))
                }
            };
            let Some(value) = value else { continue };
            if fill.full() {
                return Ok((entries, Some(key)));
            }
            fill.add(&key, &value);
            entries.push((key, value));
        }
        iterator.status()?;
        Ok((entries, None))
    }

    /// Entries of the task's stores, committed (tests: what the task's
    /// count should be).
    #[cfg(test)]
    pub(crate) fn count_keys(&self) -> Result<u64, StateError> {
        Ok(self.count_store_keys()?.values().sum())
    }

    /// The entries of each of the task's stores, committed, by store name
    /// (stores with no entry left out): one pass over its store keys
    /// (recovery counts them once when its commit record has no counts).
    pub(crate) fn count_store_keys(&self) -> Result<BTreeMap<String, u64>, StateError> {
        self.settled()?;
        let family = self.processor.family()?;
        let (start, end) = keys::stores_range(self.task);
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(end);
        options.fill_cache(false);
        let mut iterator = self.processor.db.db().raw_iterator_cf_opt(&family, options);
        iterator.seek(&start);
        let mut counts = BTreeMap::new();
        let mut store: (Vec<u8>, u64) = (Vec::new(), 0);
        while let Some(key) = iterator.key() {
            let name = keys::store_name(key);
            if name != store.0 {
                let (name, count) = std::mem::replace(&mut store, (name.to_vec(), 0));
                if count > 0 {
                    counts.insert(String::from_utf8_lossy(&name).into_owned(), count);
                }
            }
            store.1 += 1;
            iterator.next();
        }
        iterator.status()?;
        if store.1 > 0 {
            counts.insert(String::from_utf8_lossy(&store.0).into_owned(), store.1);
        }
        Ok(counts)
    }
}

/// Two iterators of staged writes in key order, with no key in both,
/// merged in key order.
fn merge_sorted<'a>(
    a: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    b: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.0 <= y.0 => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// The full-key range of `store`'s user keys `[start, end)`.
fn store_range(store: &[u8], start: &[u8], end: Option<&[u8]>) -> (Vec<u8>, Option<Vec<u8>>) {
    let from = keys::entry(store, start);
    let to = match end {
        Some(end) => Some(keys::entry(store, end)),
        None => keys::prefix_end(store),
    };
    (from, to)
}
