//! A task's entries of its own stores, in one hash table: for a full key,
//! what RocksDB holds (a value, or nothing) once the task has read or
//! written it, and the task's staged (uncommitted) write of it.
//!
//! Why one table: every record of a stateful plugin reads and writes a few
//! keys, touched in random order. With the staged writes in an ordered map
//! and the committed values in a cache beside it, a read looked in both and
//! a write searched the ordered map, then the cache, and the commit copied
//! every written key into the cache again: each a few cache misses to DRAM
//! per key. Here a key is hashed once per access, its slot holds the key
//! and its committed value (in the slot itself when they are short, else
//! in one heap block), and the staged write sits beside them; a commit
//! moves the staged values in place.
//!
//! Why a cache at all: after every commit (100 ms) nothing is staged, so
//! every read of the next batch would go to RocksDB, whose memtables hold
//! several versions of each hot key. Only the task itself writes its
//! stores' keys (with its commit), so it can keep what it read and what it
//! committed. What may be held here is decided by `TaskState`: entries of
//! the task's own stores, never tables (written by their catch-up, another
//! writer) nor timers nor the metadata record (those are staged in the
//! ordered `Staged`). Everything is forgotten when the task discards its
//! work (after a failed commit the disk may or may not hold it).
//!
//! Staging works as in `Staged`: an undo log since the savepoint before
//! each plugin call, so a failed call is rolled back exactly. Scans need
//! the staged keys in order: an ordered index of them is built when a scan
//! first asks in a commit period and kept up to date until the commit.
//!
//! Bounds: committed values count against `state.value_cache_bytes_max`
//! for every task together (taken out of `state.memory_bytes_max`), split
//! evenly over the live tasks; past its share a task evicts entries in
//! CLOCK order (an entry read since the hand last passed it is kept one
//! more round). Staged writes (and the undo log) count against the staged
//! bounds instead (`TaskState::stage`): an entry with a staged write is
//! never evicted, it only forgets its committed value.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;

use super::commit_writes::PackedWrites;
use super::keys;
use super::staged::CallUndo;
use data::{Data, INLINE_BYTES};
use value::Value;

mod data;
mod value;

#[cfg(test)]
thread_local! {
    /// Staged writes read out of the entries on this thread (tests: a
    /// scan page takes the staged writes it needs, not all of its
    /// range's).
    pub(crate) static STAGED_STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Bytes counted against the cache per entry: its slot, the table's
/// [`Indexed`] and a control byte, at most 7/8 full.
const ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<Option<Slot>>() + 10;

/// Slots [`Entries::warm`] brings into the CPU's cache at a time: 8 KiB,
/// well within its first-level cache.
const WARM_CHUNK: usize = 64;

/// Bytes counted per heap block of data beyond its length (malloc's header).
const HEAP_OVERHEAD_BYTES: usize = 16;

/// Bytes an entry holding `data_len` bytes of key and value counts.
pub(super) fn entry_bytes(data_len: usize) -> usize {
    ENTRY_OVERHEAD_BYTES
        + if data_len > INLINE_BYTES {
            data_len + HEAP_OVERHEAD_BYTES
        } else {
            0
        }
}

/// Bytes counted against the staged bounds per staged write beyond its key
/// and value (as `Staged` counts them).
const STAGED_OVERHEAD_BYTES: usize = 64;

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

/// What RocksDB holds at a slot's key, as far as the task knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Committed {
    /// Not known (a staged key whose committed value did not fit the share).
    Unknown,
    Absent,
    /// The value, after the key in `data`.
    Value,
}

/// A staged put (`Some`) or delete (`None`).
type Write = Option<Value>;

/// The table's entry of a slot: its index, and the upper half of its key's
/// hash, so that a batch lookup finds each key's candidate slot without
/// reading the slot (see [`Entries::get_batch`]).
#[derive(Debug, Clone, Copy)]
struct Indexed {
    index: u32,
    tag: u32,
}

/// [`Indexed::tag`] of a hash.
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// Laid out for lookups: what a key comparison reads first, the staged
/// write (read only once found) last.
#[derive(Debug)]
#[repr(C, align(64))]
struct Slot {
    hash: u64,
    key_len: u32,
    committed: Committed,
    /// Read (or written) since the clock hand last passed.
    referenced: bool,
    /// The key, then the committed value when `committed` is `Value`, so
    /// a lookup's key comparison brings the value along.
    data: Data,
    staged: Option<Write>,
}

const _: () = assert!(std::mem::size_of::<Option<Slot>>() == 128);

impl Slot {
    fn key(&self) -> &[u8] {
        &self.data.bytes()[..self.key_len as usize]
    }

    /// What RocksDB holds, if known.
    fn committed(&self) -> Option<Option<&[u8]>> {
        match self.committed {
            Committed::Unknown => None,
            Committed::Absent => Some(None),
            Committed::Value => Some(Some(&self.data.bytes()[self.key_len as usize..])),
        }
    }

    /// The staged write, else what RocksDB holds, if known.
    fn current(&self) -> Option<Option<&[u8]>> {
        match &self.staged {
            Some(write) => Some(write.as_deref()),
            None => self.committed(),
        }
    }

    /// Whether the key is known to hold a value: staged, else committed.
    fn live(&self) -> bool {
        matches!(self.current(), Some(Some(_)))
    }

    /// Bytes counted against the cache (0 while nothing committed is known).
    fn cached_bytes(&self) -> usize {
        match self.committed {
            Committed::Unknown => 0,
            _ => entry_bytes(self.data.bytes().len()),
        }
    }

    /// Remembers what RocksDB holds.
    fn set_committed(&mut self, value: Option<&[u8]>) {
        let key_len = self.key_len as usize;
        // A value as long as the one held (a counter's next count, most
        // often) is written over it: no allocation.
        if let (Committed::Value, Some(value)) = (self.committed, value) {
            let data = self.data.bytes_mut();
            if data.len() == key_len + value.len() {
                data[key_len..].copy_from_slice(value);
                return;
            }
        }
        self.data = Data::new(self.key(), value.unwrap_or_default());
        self.committed = match value {
            Some(_) => Committed::Value,
            None => Committed::Absent,
        };
    }

    /// Forgets what RocksDB holds.
    fn forget_committed(&mut self) {
        self.data = Data::new(self.key(), &[]);
        self.committed = Committed::Unknown;
    }
}

fn write_bytes(key_len: usize, write: &Write) -> usize {
    key_len + write.as_ref().map_or(0, |value| value.len()) + STAGED_OVERHEAD_BYTES
}

/// One task's entries of its own stores.
#[derive(Debug)]
pub(crate) struct Entries {
    budget: Arc<CacheBudget>,
    hasher: foldhash::fast::RandomState,
    /// Slot indices, by the hash of their key.
    table: HashTable<Indexed>,
    slots: Vec<Option<Slot>>,
    /// Indices of empty slots.
    free: Vec<u32>,
    /// The clock hand: the slot eviction looks at next.
    hand: usize,
    /// Bytes counted against the cache: the entries', and `beside_bytes`.
    cached_bytes: usize,
    /// Bytes the task holds beside its entries in the same share (its
    /// timers' bookkeeping, see `TaskState`): entries make room for them.
    beside_bytes: usize,
    /// Slots with a staged write, in the order they got it.
    dirty: Vec<u32>,
    /// `(slot, its staged write before)` per write since the savepoint.
    undo: CallUndo<(u32, Option<Write>)>,
    staged_bytes: usize,
    /// The staged keys in order, once a scan asked (until the commit).
    ordered: Option<BTreeMap<Box<[u8]>, u32>>,
    /// Slots known to hold a value (`Slot::live`): when as many as the
    /// task's keys, the entries hold every key it has.
    live: u64,
    /// The slots the last `get_batch` found, `(hash, index)` in its keys'
    /// order (at most its count), and where `stage` looks next: a plugin
    /// writes back what it read in the order it read it (the SDK's
    /// prefetch), so a write finds its slot here without searching the
    /// table (two dependent cache misses a write at 100k keys).
    recent: Vec<(u64, u32)>,
    recent_next: usize,
}

impl Drop for Entries {
    fn drop(&mut self) {
        self.budget.tasks.fetch_sub(1, Ordering::Relaxed);
        self.budget
            .bytes
            .fetch_sub(self.cached_bytes, Ordering::Relaxed);
    }
}

impl Entries {
    /// A task's entries, counted as a live task of `budget` until dropped.
    pub(crate) fn new(budget: Arc<CacheBudget>) -> Self {
        budget.tasks.fetch_add(1, Ordering::Relaxed);
        Self {
            budget,
            hasher: foldhash::fast::RandomState::default(),
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            cached_bytes: 0,
            beside_bytes: 0,
            dirty: Vec::new(),
            undo: CallUndo::default(),
            staged_bytes: 0,
            ordered: None,
            live: 0,
            recent: Vec::new(),
            recent_next: 0,
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn slot(&self, index: u32) -> &Slot {
        self.slots[index as usize].as_ref().expect("a live slot")
    }

    fn slot_mut(&mut self, index: u32) -> &mut Slot {
        self.slots[index as usize].as_mut().expect("a live slot")
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let (slots, tag) = (&self.slots, tag(hash));
        self.table
            .find(hash, |entry| {
                entry.tag == tag
                    && slots[entry.index as usize]
                        .as_ref()
                        .is_some_and(|slot| slot.key() == key)
            })
            .map(|entry| entry.index)
    }

    /// A new slot for `key` (not in the table yet).
    fn insert(&mut self, hash: u64, key: &[u8]) -> u32 {
        let slot = Slot {
            hash,
            key_len: u32::try_from(key.len())
                .expect("state keys are shorter than 4 GiB (state.key_bytes_max)"),
            committed: Committed::Unknown,
            referenced: true,
            data: Data::new(key, &[]),
            staged: None,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = Some(slot);
                index
            }
            None => {
                self.slots.push(Some(slot));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 entries")
            }
        };
        let slots = &self.slots;
        let entry = Indexed {
            index,
            tag: tag(hash),
        };
        self.table.insert_unique(hash, entry, |entry| {
            slots[entry.index as usize]
                .as_ref()
                .expect("a live slot")
                .hash
        });
        index
    }

    /// Removes slot `index` (no staged write).
    fn remove(&mut self, index: u32) {
        let slot = self.slots[index as usize].take().expect("a live slot");
        debug_assert!(slot.staged.is_none());
        self.live -= u64::from(slot.live());
        self.resize(slot.cached_bytes(), 0);
        if let Ok(entry) = self
            .table
            .find_entry(slot.hash, |entry| entry.index == index)
        {
            entry.remove();
        }
        self.free.push(index);
    }

    /// The staged write of `key`, else what RocksDB holds there, if known:
    /// `Some(None)` nothing, `None` unknown (read RocksDB).
    pub(crate) fn get(&mut self, key: &[u8]) -> Option<Option<&[u8]>> {
        let index = self.find(self.hash(key), key)?;
        self.touch(index)
    }

    /// Slot `index` was read: kept one more round of the clock; its staged
    /// write, else what RocksDB holds, if known.
    fn touch(&mut self, index: u32) -> Option<Option<&[u8]>> {
        let slot = self.slot_mut(index);
        slot.referenced = true;
        slot.current()
    }

    /// [`Entries::get`] of `count` keys (`key(i)` for `i` in
    /// `0..count`), each answer handed to `answer(i, known)`, in order.
    ///
    /// In passes, so that the cache misses of different keys overlap
    /// (one key's whole lookup otherwise waits for its misses before the
    /// next begins): the first finds each key's candidate slot in the table
    /// alone, by the upper half of its hash; then, [`WARM_CHUNK`] keys at a
    /// time, their slots are brought into the CPU's cache together and
    /// each key is compared with its slot's. A candidate with another key
    /// (equal tags) falls back to the full lookup.
    pub(crate) fn get_batch<'k>(
        &mut self,
        count: usize,
        key: impl Fn(usize) -> &'k [u8],
        mut answer: impl FnMut(usize, Option<Option<&[u8]>>),
    ) {
        let candidates: Vec<(u64, Option<u32>)> = (0..count)
            .map(|i| {
                let hash = self.hash(key(i));
                let tag = tag(hash);
                let found = self.table.find(hash, |entry| entry.tag == tag);
                (hash, found.map(|entry| entry.index))
            })
            .collect();
        self.recent.clear();
        self.recent_next = 0;
        for (chunk, candidates) in candidates.chunks(WARM_CHUNK).enumerate() {
            self.warm(candidates.iter().filter_map(|&(_, index)| index));
            for (at, &(hash, candidate)) in candidates.iter().enumerate() {
                let i = chunk * WARM_CHUNK + at;
                let key = key(i);
                let index = match candidate {
                    Some(index) if self.slot(index).key() == key => Some(index),
                    Some(_) => self.find(hash, key),
                    None => None,
                };
                match index {
                    Some(index) => {
                        self.recent.push((hash, index));
                        answer(i, self.touch(index));
                    }
                    None => answer(i, None),
                }
            }
        }
    }

    /// Slot of `key` if it is among the next few the last `get_batch`
    /// found (checked: the slot may have been evicted or reused since).
    fn find_recent(&mut self, hash: u64, key: &[u8]) -> Option<u32> {
        /// Recent slots skipped at most (reads not written back).
        const LOOK_AHEAD: usize = 8;
        let next = self.recent_next;
        let mut ahead = self.recent.get(next..)?.iter().take(LOOK_AHEAD);
        let at = ahead.position(|&(recent, _)| recent == hash)?;
        let index = self.recent[next + at].1;
        let slot = self.slots[index as usize].as_ref()?;
        if slot.hash != hash || slot.key() != key {
            return None;
        }
        self.recent_next = next + at + 1;
        Some(index)
    }

    /// What RocksDB holds at `key` as far as the entries know (tests).
    #[cfg(test)]
    pub(crate) fn committed(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let index = self.find(self.hash(key), key)?;
        self.slot(index).committed()
    }

    /// Remembers that RocksDB holds `value` at `key` (`None`: nothing),
    /// within the task's share; returns whether the share kept it.
    pub(crate) fn fill(&mut self, key: &[u8], value: Option<&[u8]>) -> bool {
        let hash = self.hash(key);
        let index = match self.find(hash, key) {
            Some(index) => index,
            None => self.insert(hash, key),
        };
        self.set_committed(index, value);
        // Making room may have evicted it again.
        self.find(hash, key)
            .is_some_and(|index| self.slot(index).committed().is_some())
    }

    /// Sets slot `index`'s committed value, or forgets it (removing the
    /// slot if nothing is staged) when it would not fit the share.
    fn set_committed(&mut self, index: u32, value: Option<&[u8]>) {
        let share = self.budget.share();
        let slot = self.slot_mut(index);
        let before = slot.cached_bytes();
        let size = entry_bytes(slot.key_len as usize + value.map_or(0, <[u8]>::len));
        if size > share {
            let was_live = slot.live();
            slot.forget_committed();
            let staged = slot.staged.is_some();
            self.relive(was_live, index);
            self.resize(before, 0);
            if !staged {
                self.remove(index);
            }
            return;
        }
        let was_live = slot.live();
        slot.set_committed(value);
        slot.referenced = true;
        self.relive(was_live, index);
        self.resize(before, size);
        self.shrink_to(share);
    }

    /// Stages a put (`Some`) or delete (`None`) of `key`, and returns
    /// whether the key held a value before it: staged, else committed,
    /// else what `committed` reads from RocksDB (asked before anything
    /// changes; its error leaves everything as it was).
    pub(crate) fn stage<E>(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        committed: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<bool, E> {
        let hash = self.hash(key);
        let found = self.find_recent(hash, key).or_else(|| self.find(hash, key));
        let known = found.and_then(|index| self.slot(index).current().map(|v| v.is_some()));
        // What RocksDB holds, read only when nothing here knows.
        let read = match known {
            Some(_) => None,
            None => Some(committed(key)?),
        };
        let existed = known.unwrap_or_else(|| read.as_ref().is_some_and(Option::is_some));
        let index = found.unwrap_or_else(|| self.insert(hash, key));
        self.restage(index, value.map(Value::new));
        // Cached once the slot is staged, so the share cannot evict it.
        if let Some(value) = read {
            self.set_committed(index, value.as_deref());
        }
        Ok(existed)
    }

    /// Replaces slot `index`'s staged write with `value`, recording how to
    /// undo it while a call is under way.
    fn restage(&mut self, index: u32, value: Write) {
        let recording = self.undo.recording();
        let slot = self.slots[index as usize].as_mut().expect("a live slot");
        slot.referenced = true;
        let key_len = slot.key_len as usize;
        let added = write_bytes(key_len, &value);
        let was_live = slot.live();
        let before = slot.staged.replace(value);
        match &before {
            Some(old) => self.staged_bytes -= write_bytes(key_len, old),
            None => {
                self.dirty.push(index);
                if let Some(ordered) = &mut self.ordered {
                    ordered.insert(Box::from(slot.key()), index);
                }
            }
        }
        self.relive(was_live, index);
        self.staged_bytes += added;
        if recording {
            let bytes = match &before {
                Some(old) => write_bytes(key_len, old),
                None => STAGED_OVERHEAD_BYTES,
            };
            self.undo.push((index, before), bytes);
        }
    }

    /// Makes every entry with a key in `[start, end)` read as absent, for
    /// a range tombstone the task stages (`TaskState::clear_range`): a
    /// staged put becomes a staged delete (undone by `rollback`; the commit
    /// writes no point delete under the tombstone), and an entry with
    /// nothing staged is forgotten (RocksDB holds its value until the
    /// commit, so the task answers for the range itself until then).
    /// Returns how many of them held a value: the range's live keys as far
    /// as the task knows. One pass over the slots.
    pub(crate) fn clear_range(&mut self, start: &[u8], end: &[u8]) -> u64 {
        let mut live = 0;
        for index in 0..self.slots.len() {
            let Some(slot) = &self.slots[index] else {
                continue;
            };
            if !keys::in_range(slot.key(), start, end) {
                continue;
            }
            let index = index as u32;
            match &slot.staged {
                Some(Some(_)) => {
                    live += 1;
                    self.restage(index, None);
                }
                Some(None) => {}
                None => {
                    live += u64::from(slot.committed == Committed::Value);
                    self.remove(index);
                }
            }
        }
        live
    }

    /// Forgets what the entries in `[start, end)` know RocksDB holds, and
    /// those with nothing staged: a range tombstone's call was rolled back,
    /// so what the task learned under it (nothing there) is not RocksDB's.
    pub(crate) fn forget_range(&mut self, start: &[u8], end: &[u8]) {
        for index in 0..self.slots.len() {
            let Some(slot) = &mut self.slots[index] else {
                continue;
            };
            if !keys::in_range(slot.key(), start, end) {
                continue;
            }
            if slot.staged.is_none() {
                self.remove(index as u32);
            } else if slot.committed != Committed::Unknown {
                // Staged: as live as before.
                let before = slot.cached_bytes();
                slot.forget_committed();
                self.resize(before, 0);
            }
        }
    }

    /// Starts a call: its writes can be undone by `rollback`.
    pub(crate) fn savepoint(&mut self) {
        self.undo.start(self.staged_bytes);
    }

    /// Bytes the current call staged: the growth since its savepoint, its
    /// undo log included (0 outside a call).
    pub(crate) fn call_bytes(&self) -> usize {
        self.undo.call_bytes(self.staged_bytes)
    }

    /// Keeps the call's writes.
    pub(crate) fn release(&mut self) {
        self.undo.end();
    }

    /// Undoes every write since `savepoint`.
    pub(crate) fn rollback(&mut self) {
        while let Some((index, before)) = self.undo.pop() {
            let slot = self.slot_mut(index);
            let key_len = slot.key_len as usize;
            let was_live = slot.live();
            let current = std::mem::replace(&mut slot.staged, before);
            self.relive(was_live, index);
            let slot = self.slot_mut(index);
            let restored = slot
                .staged
                .as_ref()
                .map(|write| write_bytes(key_len, write));
            let forget = restored.is_none() && slot.committed == Committed::Unknown;
            if let Some(current) = &current {
                self.staged_bytes -= write_bytes(key_len, current);
            }
            match restored {
                Some(bytes) => self.staged_bytes += bytes,
                None => {
                    // It became dirty in this call: the newest dirty slot.
                    let popped = self.dirty.pop();
                    debug_assert_eq!(popped, Some(index));
                    if let Some(ordered) = &mut self.ordered {
                        let slot = self.slots[index as usize].as_ref().expect("a live slot");
                        ordered.remove(slot.key());
                    }
                }
            }
            if forget {
                self.remove(index);
            }
        }
        self.undo.end();
    }

    /// Bytes staged (keys, values and a per-write overhead), the undo
    /// log's included.
    pub(crate) fn staged_bytes(&self) -> usize {
        self.staged_bytes + self.undo.bytes()
    }

    /// Whether any write is staged.
    pub(crate) fn has_staged(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The key and staged write of dirty slot `index`.
    fn staged_write(&self, index: u32) -> (&[u8], Option<&[u8]>) {
        #[cfg(test)]
        STAGED_STEPS.with(|steps| steps.set(steps.get() + 1));
        let slot = self.slot(index);
        let write = slot.staged.as_ref().expect("a dirty slot is staged");
        (slot.key(), write.as_deref())
    }

    /// Builds the ordered index of the staged keys, if there is none.
    pub(crate) fn order(&mut self) {
        if self.ordered.is_some() {
            return;
        }
        let ordered = self
            .dirty
            .iter()
            .map(|&index| (Box::from(self.slot(index).key()), index))
            .collect();
        self.ordered = Some(ordered);
    }

    /// Staged writes with keys in `[start, end)`, in key order, one at a
    /// time as asked for: a scan page takes what it needs, not every
    /// staged write to the range's end. `None` without the ordered index
    /// (`order`).
    pub(crate) fn staged_range_lazily<'a>(
        &'a self,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Option<impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a> {
        let ordered = self.ordered.as_ref()?;
        let upper = match end {
            // `[start, start)`: empty (and a valid range for `BTreeMap`).
            Some(end) if end <= start => Bound::Excluded(start),
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let range = ordered.range::<[u8], _>((Bound::Included(start), upper));
        Some(range.map(|(_, &index)| self.staged_write(index)))
    }

    /// Staged writes with keys in `[start, end)`, in key order. Uses the
    /// ordered index when `order` built it; else sorts what it finds.
    pub(crate) fn staged_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Vec<(&[u8], Option<&[u8]>)> {
        if end.is_some_and(|end| end <= start) || self.dirty.is_empty() {
            return Vec::new();
        }
        if let Some(ordered) = self.staged_range_lazily(start, end) {
            return ordered.collect();
        }
        let mut found: Vec<_> = self
            .dirty
            .iter()
            .map(|&index| self.staged_write(index))
            .filter(|(key, _)| *key >= start && end.is_none_or(|end| *key < end))
            .collect();
        keys::sort_by_key(&mut found, |(key, _)| key);
        found
    }

    /// At a commit: the staged writes become what RocksDB holds (the
    /// commit writes them), and nothing is staged. Returns them, packed
    /// in the order they were staged, for the commit's write batch.
    pub(crate) fn committed_all(&mut self) -> PackedWrites {
        self.undo.end();
        self.ordered = None;
        let dirty = std::mem::take(&mut self.dirty);
        // `staged_bytes` counts each write's key and value, and more.
        let mut packed = PackedWrites::with_capacity(dirty.len(), self.staged_bytes);
        self.staged_bytes = 0;
        for chunk in dirty.chunks(WARM_CHUNK) {
            self.warm(chunk.iter().copied());
            for &index in chunk {
                let slot = self.slot_mut(index);
                let was_live = slot.live();
                let write = slot.staged.take().expect("a dirty slot is staged");
                packed.push(slot.key(), write.as_deref());
                self.relive(was_live, index);
                self.set_committed(index, write.as_deref());
            }
        }
        packed
    }

    /// Brings slots `indices` into the CPU's cache: a loop of independent
    /// loads, whose misses the CPU overlaps; a loop doing a slot's work
    /// between them waits for each in turn.
    ///
    /// Both of a slot's lines: its first word and its staged write (what
    /// a lookup reads first, and what a read or a write of the key reads
    /// next); the CPU's adjacent-line prefetch was not seen to bring the
    /// second in time.
    fn warm(&self, indices: impl Iterator<Item = u32>) {
        let words = indices.fold(0u64, |sum, index| {
            let word = self.slots[index as usize]
                .as_ref()
                .map_or(0, |slot| slot.hash ^ u64::from(slot.staged.is_some()));
            sum.wrapping_add(word)
        });
        std::hint::black_box(words);
    }

    /// Forgets everything: staged writes and what RocksDB holds.
    pub(crate) fn clear(&mut self) {
        self.table.clear();
        self.slots.clear();
        self.free.clear();
        self.dirty.clear();
        self.undo.end();
        self.ordered = None;
        self.hand = 0;
        self.staged_bytes = 0;
        self.live = 0;
        self.recent.clear();
        self.recent_next = 0;
        self.resize(self.cached_bytes, self.beside_bytes);
    }

    /// The bytes the task may hold beside its entries: half its share.
    pub(crate) fn beside_bytes_max(&self) -> usize {
        self.budget.share() / 2
    }

    /// Counts `bytes` held beside the entries (replacing what was counted
    /// before), evicting entries to make room.
    pub(crate) fn charge_beside(&mut self, bytes: usize) {
        let before = self.beside_bytes;
        self.beside_bytes = bytes;
        self.resize(before, bytes);
        self.shrink_to(self.budget.share());
    }

    /// Bytes this task's cache holds (keys, values, a per-entry overhead).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.cached_bytes
    }

    /// Entries whose committed value is known (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|slot| slot.committed != Committed::Unknown)
            .count()
    }

    fn resize(&mut self, before: usize, after: usize) {
        self.cached_bytes = self.cached_bytes - before + after;
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

    /// Evicts entries until the cache holds at most `bytes`, in CLOCK
    /// order. An entry with a staged write stays, but forgets its
    /// committed value (needed again only if its call rolls back, then
    /// read from RocksDB), so every step of the hand frees something or
    /// clears a reference bit: amortised, one step per entry added.
    fn shrink_to(&mut self, bytes: usize) {
        // Two full turns of the hand at most: the first clears every
        // reference bit, the second frees everything.
        let mut steps = self.slots.len().saturating_mul(2);
        while self.cached_bytes > bytes && steps > 0 {
            steps -= 1;
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let index = self.hand as u32;
            self.hand += 1;
            let Some(slot) = self.slots[index as usize].as_mut() else {
                continue;
            };
            if std::mem::take(&mut slot.referenced) {
                continue;
            }
            if slot.staged.is_none() {
                self.remove(index);
            } else if slot.committed != Committed::Unknown {
                // Staged: as live as before.
                let before = slot.cached_bytes();
                slot.forget_committed();
                self.resize(before, 0);
            }
        }
    }

    /// Counts slot `index` live or not again, after a change from
    /// `was_live`.
    fn relive(&mut self, was_live: bool, index: u32) {
        let live = self.slot(index).live();
        self.live = self.live + u64::from(live) - u64::from(was_live);
    }

    /// Keys the entries know to hold a value (staged, else committed).
    pub(crate) fn live(&self) -> u64 {
        self.live
    }
}

#[cfg(test)]
mod tests;
