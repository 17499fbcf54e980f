//! A task's cache of committed values of its own stores: for a full key,
//! what RocksDB holds (a value, or nothing), kept in memory after a read
//! or a commit.
//!
//! Why: after every commit (100 ms) the staged map is empty, so every read
//! of the next batch went to RocksDB, whose memtables hold several versions
//! of each hot key behind a ~20-byte shared prefix: a third of the stateful
//! benchmark's time was memtable lookups. Only the task itself writes its
//! stores' keys (with its commit), so it can keep what it read and what it
//! committed and answer the next batch without RocksDB.
//!
//! What may be cached is decided by `TaskState`: entries of the task's own
//! stores, never tables (written by table catch-up, another writer) nor
//! timers nor the metadata record. The cache is emptied when the task
//! discards its work (after a failed commit the disk may or may not hold
//! it). Scans do not use it: RocksDB holds every commit.
//!
//! Bound: `state.value_cache_bytes_max` for every task together, taken out
//! of `state.memory_bytes_max` (the block cache gets the rest), split
//! evenly over the live tasks: a task holds at most its share and evicts
//! its own entries past it, in CLOCK order (an entry read since the hand
//! last passed it is kept one more round), which approximates LRU without
//! a list to update on every hit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use indexmap::IndexMap;

/// Bytes counted per entry beyond its key and value: the map's entry and
/// index slot, and two heap blocks' headers.
const ENTRY_OVERHEAD_BYTES: usize = 80;

/// The bound of every task's cache together; the tasks' count and bytes.
#[derive(Debug)]
pub(crate) struct CacheBudget {
    bytes_max: usize,
    tasks: AtomicUsize,
    bytes: AtomicUsize,
}

impl CacheBudget {
    pub(crate) fn new(bytes_max: usize) -> Self {
        Self {
            bytes_max,
            tasks: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Bytes one task may hold now: the bound over the live tasks.
    fn share(&self) -> usize {
        self.bytes_max / self.tasks.load(Ordering::Relaxed).max(1)
    }

    /// Bytes every task's cache holds together.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Slot {
    /// `None`: RocksDB holds nothing at the key.
    value: Option<Box<[u8]>>,
    /// Read (or written) since the clock hand last passed.
    referenced: bool,
}

fn entry_bytes(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD_BYTES
}

/// One task's cached committed values.
#[derive(Debug)]
pub(crate) struct ValueCache {
    budget: Arc<CacheBudget>,
    entries: IndexMap<Box<[u8]>, Slot, foldhash::fast::RandomState>,
    /// The clock hand: the index eviction looks at next.
    hand: usize,
    bytes: usize,
}

impl Drop for ValueCache {
    fn drop(&mut self) {
        self.budget.tasks.fetch_sub(1, Ordering::Relaxed);
        self.budget.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl ValueCache {
    /// A task's cache, counted as a live task of `budget` until dropped.
    pub(crate) fn new(budget: Arc<CacheBudget>) -> Self {
        budget.tasks.fetch_add(1, Ordering::Relaxed);
        Self {
            budget,
            entries: IndexMap::default(),
            hand: 0,
            bytes: 0,
        }
    }

    /// What RocksDB holds at `key` (`Some(None)`: nothing), if cached.
    pub(crate) fn get(&mut self, key: &[u8]) -> Option<Option<&[u8]>> {
        let slot = self.entries.get_mut(key)?;
        slot.referenced = true;
        Some(slot.value.as_deref())
    }

    /// Remembers that RocksDB holds `value` at `key` (`None`: nothing),
    /// within the task's share.
    pub(crate) fn insert(&mut self, key: &[u8], value: Option<&[u8]>) {
        let size = entry_bytes(key, value);
        let share = self.budget.share();
        if size > share {
            self.remove(key);
            return;
        }
        if let Some(slot) = self.entries.get_mut(key) {
            let old = entry_bytes(key, slot.value.as_deref());
            slot.value = value.map(Box::from);
            slot.referenced = true;
            self.resize(old, size);
            self.shrink_to(share);
            return;
        }
        self.shrink_to(share - size);
        self.entries.insert(
            Box::from(key),
            Slot {
                value: value.map(Box::from),
                referenced: true,
            },
        );
        self.resize(0, size);
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some((_, key, slot)) = self.entries.swap_remove_full(key) {
            self.resize(entry_bytes(&key, slot.value.as_deref()), 0);
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.hand = 0;
        self.resize(self.bytes, 0);
    }

    /// Bytes this task's cache holds (keys, values, a per-entry overhead).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn resize(&mut self, before: usize, after: usize) {
        self.bytes = self.bytes - before + after;
        if after >= before {
            self.budget
                .bytes
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.budget
                .bytes
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Evicts entries until the cache holds at most `bytes`.
    fn shrink_to(&mut self, bytes: usize) {
        while self.bytes > bytes && !self.entries.is_empty() {
            if self.hand >= self.entries.len() {
                self.hand = 0;
            }
            let (_, slot) = self
                .entries
                .get_index_mut(self.hand)
                .expect("the hand is within the entries");
            if std::mem::take(&mut slot.referenced) {
                self.hand += 1;
                continue;
            }
            // The last entry moves to the hand; it is looked at next.
            let (key, slot) = self
                .entries
                .swap_remove_index(self.hand)
                .expect("the hand is within the entries");
            self.resize(entry_bytes(&key, slot.value.as_deref()), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> Vec<u8> {
        n.to_be_bytes().to_vec()
    }

    #[test]
    fn remembers_values_and_absence_and_replaces_them() {
        let budget = Arc::new(CacheBudget::new(1 << 20));
        let mut cache = ValueCache::new(budget.clone());
        assert_eq!(cache.get(b"a"), None);
        cache.insert(b"a", Some(b"1"));
        cache.insert(b"b", None);
        assert_eq!(cache.get(b"a"), Some(Some(&b"1"[..])));
        assert_eq!(cache.get(b"b"), Some(None));
        cache.insert(b"a", None);
        cache.insert(b"b", Some(b"22"));
        assert_eq!(cache.get(b"a"), Some(None));
        assert_eq!(cache.get(b"b"), Some(Some(&b"22"[..])));
        // Keys "a" and "b", the value "22".
        assert_eq!(cache.bytes(), 1 + 1 + 2 + 2 * ENTRY_OVERHEAD_BYTES);
        assert_eq!(budget.bytes(), cache.bytes());
        cache.clear();
        assert_eq!(cache.get(b"a"), None);
        assert_eq!(budget.bytes(), 0);
    }

    #[test]
    fn stays_within_its_share_and_keeps_what_is_read() {
        let entry = entry_bytes(&key(0), Some(&[0; 16]));
        let budget = Arc::new(CacheBudget::new(100 * entry));
        let mut cache = ValueCache::new(budget.clone());
        for n in 0..100 {
            cache.insert(&key(n), Some(&[0; 16]));
        }
        assert_eq!(cache.len(), 100);
        // Key 7 is read again and again while a thousand others go by.
        for n in 100..1100 {
            assert!(cache.get(&key(7)).is_some(), "key 7 evicted at {n}");
            cache.insert(&key(n), Some(&[0; 16]));
            assert!(cache.bytes() <= 100 * entry);
        }
        assert_eq!(cache.len(), 100);
        assert_eq!(cache.get(&key(1099)), Some(Some(&[0; 16][..])));
        // A value larger than the whole share is not kept, and takes the
        // key's old entry with it.
        cache.insert(&key(7), Some(&vec![1; 100 * entry]));
        assert_eq!(cache.get(&key(7)), None);
        assert_eq!(cache.len(), 99);
        assert_eq!(budget.bytes(), cache.bytes());
    }

    #[test]
    fn tasks_split_the_bound() {
        let entry = entry_bytes(&key(0), None);
        let budget = Arc::new(CacheBudget::new(10 * entry));
        let mut first = ValueCache::new(budget.clone());
        for n in 0..10 {
            first.insert(&key(n), None);
        }
        assert_eq!(first.len(), 10);
        let mut second = ValueCache::new(budget.clone());
        for n in 0..10 {
            second.insert(&key(n), None);
        }
        assert_eq!(second.len(), 5, "half the bound each");
        first.insert(&key(10), None);
        assert_eq!(
            first.len(),
            5,
            "the first shrinks to its share on its next write"
        );
        assert_eq!(budget.bytes(), 10 * entry);
        drop(second);
        assert_eq!(budget.bytes(), 5 * entry);
        let zero = Arc::new(CacheBudget::new(0));
        let mut off = ValueCache::new(zero);
        off.insert(b"k", Some(b"v"));
        assert_eq!(off.get(b"k"), None, "a bound of 0 turns the cache off");
    }
}
