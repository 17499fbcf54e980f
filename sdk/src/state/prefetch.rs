//! A batch's read-modify-write in two crossings: every key the batch
//! touches read with one `get-many`, every change written back with one
//! `put-many` (plus a `delete` per removed key).
//!
//! Each crossing costs the guest an allocation per list element, so a
//! batch of 500 records on 20 keys costs two crossings instead of a
//! thousand. Values live decoded in memory between the two, so a key that
//! repeats within the batch sees its earlier records' updates. Nothing is
//! kept across calls: a failed call is rolled back by the broker, and a
//! cache surviving it would disagree with the store.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{KeyBytes, PackedEntries, Store};
use crate::Result;

/// One key's value in the batch.
#[derive(Debug)]
struct Slot<V> {
    /// The current value (`None`: absent or deleted).
    value: Option<V>,
    /// Whether the store held a value before this batch.
    stored: bool,
    /// Whether `value` must be written back.
    dirty: bool,
}

impl<V> Slot<V> {
    const UNREAD: Self = Self {
        value: None,
        stored: false,
        dirty: false,
    };
}

/// Values of one store, read for a batch, changed in memory, written back
/// by [`flush`](Self::flush). Built by
/// [`KeyValueStore::prefetch`](super::KeyValueStore::prefetch) or
/// [`Prefetched::load`].
///
/// Keys are found through a hash table (one hash and one key comparison a
/// lookup: an ordered map compared a key a dozen times, and a comparison
/// in WebAssembly is a byte-by-byte loop). Values are written back in the
/// order their keys were first seen.
///
/// ```
/// use sluice_sdk::state::KeyValueStore;
/// let totals = KeyValueStore::<String, u64>::open("totals")?;
/// let keys = ["a", "b", "a"];
/// let mut batch = totals.prefetch(keys)?;
/// for key in keys {
///     let total = batch.get(key)?.copied().unwrap_or(0);
///     batch.put(key, total + 1);
/// }
/// batch.flush()?;
/// assert_eq!(totals.get("a")?, Some(2));
/// # Ok::<(), sluice_sdk::Error>(())
/// ```
#[derive(Debug)]
pub struct Prefetched<'a, V> {
    store: &'a Store,
    /// Indexes into `keys` and `slots`, by key.
    index: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    /// The keys in the order they were first seen (the `get-many` list).
    keys: Vec<Vec<u8>>,
    slots: Vec<Slot<V>>,
}

impl<'a, V: Serialize + DeserializeOwned> Prefetched<'a, V> {
    /// Reads the distinct `keys` of `store` in one `get-many`.
    pub fn load<K: AsRef<[u8]>>(
        store: &'a Store,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Self> {
        let keys = keys.into_iter();
        let mut prefetched = Self::with_capacity(store, keys.size_hint().0);
        for key in keys {
            prefetched.find_or_insert(key.as_ref());
        }
        prefetched.read()
    }

    /// Like [`load`](Self::load), answering each key's slot (its index in the
    /// batch's distinct keys, for [`value_at`](Self::value_at) and
    /// [`put_at`](Self::put_at): a batch's own aggregation finds each key
    /// once instead of at every read and write).
    ///
    /// A key given as a `Vec` is kept, not copied; a borrowed one is copied
    /// the first time it is seen.
    pub(crate) fn load_slots<K: AsRef<[u8]> + Into<Vec<u8>>>(
        store: &'a Store,
        keys: impl ExactSizeIterator<Item = K>,
    ) -> Result<(Self, Vec<u32>)> {
        let mut prefetched = Self::with_capacity(store, keys.len());
        let mut slots = Vec::with_capacity(keys.len());
        for key in keys {
            let hash = prefetched.hasher.hash_one(key.as_ref());
            let index = match prefetched.find(hash, key.as_ref()) {
                Some(index) => index,
                None => prefetched.insert(hash, key.into()),
            };
            slots.push(index as u32);
        }
        Ok((prefetched.read()?, slots))
    }

    fn with_capacity(store: &'a Store, capacity: usize) -> Self {
        Self {
            store,
            index: HashTable::with_capacity(capacity),
            hasher: foldhash::fast::FixedState::default(),
            keys: Vec::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
        }
    }

    /// Reads every key found so far in one `get-many`.
    fn read(mut self) -> Result<Self> {
        let Self {
            keys, slots, store, ..
        } = &mut self;
        let mut failed = None;
        if !keys.is_empty() {
            // Each value decoded from the answer buffer, not copied out.
            store.get_many_with(keys, |index, value| {
                if failed.is_none() {
                    failed = fill(store, &keys[index], &mut slots[index], value).err();
                }
            });
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(self),
        }
    }

    /// The index of `key`, and whether it was added now.
    fn find_or_insert(&mut self, key: &[u8]) -> (usize, bool) {
        let hash = self.hasher.hash_one(key);
        match self.find(hash, key) {
            Some(index) => (index, false),
            None => (self.insert(hash, key.to_vec()), true),
        }
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let keys = &self.keys;
        let index = self.index.find(hash, |&i| keys[i as usize] == key)?;
        Some(*index as usize)
    }

    /// Adds `key` (not yet in the batch), unread; returns its index.
    fn insert(&mut self, hash: u64, key: Vec<u8>) -> usize {
        let index = self.keys.len();
        let keys = &self.keys;
        let hasher = &self.hasher;
        self.index.insert_unique(
            hash,
            u32::try_from(index).expect("fewer than 2^32 keys in a batch"),
            |&i| hasher.hash_one(keys[i as usize].as_slice()),
        );
        self.keys.push(key);
        self.slots.push(Slot::UNREAD);
        index
    }

    fn slot(&mut self, key: &[u8]) -> Result<&mut Slot<V>> {
        let (index, new) = self.find_or_insert(key);
        if new {
            // Not prefetched: one `get` of its own.
            let value = self.store.get(key);
            fill(self.store, key, &mut self.slots[index], value.as_deref())?;
        }
        Ok(&mut self.slots[index])
    }

    /// The value at `key` as the batch has left it so far.
    pub fn get<Q: KeyBytes + ?Sized>(&mut self, key: &Q) -> Result<Option<&V>> {
        Ok(self.slot(&key.key_bytes())?.value.as_ref())
    }

    /// Whether the store held `key` before this batch (it may since have
    /// been changed in memory).
    pub fn was_stored<Q: KeyBytes + ?Sized>(&mut self, key: &Q) -> Result<bool> {
        Ok(self.slot(&key.key_bytes())?.stored)
    }

    /// Sets `key` to `value` (written back by [`flush`](Self::flush)).
    pub fn put<Q: KeyBytes + ?Sized>(&mut self, key: &Q, value: V) {
        let (index, _) = self.find_or_insert(&key.key_bytes());
        self.put_at(index as u32, value);
    }

    /// The value of slot `index` as the batch has left it so far.
    pub(crate) fn value_at(&self, index: u32) -> Option<&V> {
        self.slots[index as usize].value.as_ref()
    }

    /// Sets slot `index` to `value` (written back by [`flush`](Self::flush)).
    pub(crate) fn put_at(&mut self, index: u32, value: V) {
        let slot = &mut self.slots[index as usize];
        slot.value = Some(value);
        slot.dirty = true;
    }

    /// Deletes `key` (written back by [`flush`](Self::flush)). A key never
    /// read is deleted from the store all the same.
    pub fn delete<Q: KeyBytes + ?Sized>(&mut self, key: &Q) {
        let (index, new) = self.find_or_insert(&key.key_bytes());
        let slot = &mut self.slots[index];
        if new {
            slot.stored = true;
        }
        slot.value = None;
        slot.dirty = true;
    }

    /// Writes the changed values back: one `put-many`, and a `delete` per
    /// removed key that the store held.
    pub fn flush(self) -> Result<()> {
        let mut puts = PackedEntries::default();
        let mut failed = None;
        for (key, slot) in self.keys.iter().zip(&self.slots) {
            if !slot.dirty {
                continue;
            }
            match &slot.value {
                // Serialised straight into the one buffer that crosses.
                Some(value) => puts.push(key, |data| {
                    if let Err(error) = serde_json::to_writer(&mut *data, value) {
                        failed.get_or_insert(error);
                    }
                }),
                None if slot.stored => self.store.delete(key),
                None => {}
            }
        }
        if let Some(error) = failed {
            return Err(error.into());
        }
        self.store.put_packed(&puts);
        Ok(())
    }
}

/// Sets `slot` to `value` as read from the store (decoded).
fn fill<V: DeserializeOwned>(
    store: &Store,
    key: &[u8],
    slot: &mut Slot<V>,
    value: Option<&[u8]>,
) -> Result<()> {
    let decoded = value
        .map(|bytes| super::typed::decode_value(store, key, bytes))
        .transpose()?;
    slot.stored = decoded.is_some();
    slot.value = decoded;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::state::{host, KeyValueStore};

    #[test]
    fn repeated_keys_see_earlier_updates_and_flush_writes_once() {
        host::replace(host::TaskState::default());
        let store = KeyValueStore::<String, u64>::open("s").unwrap();
        store.put("gone", &1).unwrap();
        store.put("kept", &7).unwrap();
        let mut batch = store.prefetch(["a", "a", "gone"]).unwrap();
        assert!(batch.was_stored("gone").unwrap());
        assert!(!batch.was_stored("a").unwrap());
        batch.put("a", 1);
        let a = *batch.get("a").unwrap().unwrap();
        batch.put("a", a + 1);
        batch.delete("gone");
        batch.delete("never");
        assert_eq!(batch.get("kept").unwrap(), Some(&7), "loaded on demand");
        assert_eq!(
            store.get("a").unwrap(),
            None,
            "nothing written before flush"
        );
        batch.flush().unwrap();
        assert_eq!(store.get("a").unwrap(), Some(2));
        assert_eq!(store.get("gone").unwrap(), None);
        assert_eq!(store.get("kept").unwrap(), Some(7));
    }
}
