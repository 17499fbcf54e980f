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

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{KeyBytes, Store};
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

/// Values of one store, read for a batch, changed in memory, written back
/// by [`flush`](Self::flush). Built by
/// [`KeyValueStore::prefetch`](super::KeyValueStore::prefetch) or
/// [`Prefetched::load`].
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
    slots: BTreeMap<Vec<u8>, Slot<V>>,
}

impl<'a, V: Serialize + DeserializeOwned> Prefetched<'a, V> {
    /// Reads the distinct `keys` of `store` in one `get-many`.
    pub fn load(store: &'a Store, keys: impl IntoIterator<Item = Vec<u8>>) -> Result<Self> {
        let mut slots = BTreeMap::new();
        for key in keys {
            slots.entry(key).or_insert(Slot {
                value: None,
                stored: false,
                dirty: false,
            });
        }
        let mut prefetched = Self { store, slots };
        let keys: Vec<Vec<u8>> = prefetched.slots.keys().cloned().collect();
        if !keys.is_empty() {
            let values = store.get_many(&keys);
            for (key, value) in keys.into_iter().zip(values) {
                prefetched.fill(key, value)?;
            }
        }
        Ok(prefetched)
    }

    fn fill(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<&mut Slot<V>> {
        let decoded = value
            .as_deref()
            .map(|bytes| super::typed::decode_value(self.store, &key, bytes))
            .transpose()?;
        let slot = self.slots.entry(key).or_insert(Slot {
            value: None,
            stored: false,
            dirty: false,
        });
        slot.stored = decoded.is_some();
        slot.value = decoded;
        Ok(slot)
    }

    fn slot(&mut self, key: &[u8]) -> Result<&mut Slot<V>> {
        if self.slots.contains_key(key) {
            return Ok(self.slots.get_mut(key).expect("just checked"));
        }
        // Not prefetched: one `get` of its own.
        let value = self.store.get(key);
        self.fill(key.to_vec(), value)
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
        let key = key.key_bytes();
        let slot = self.slots.entry(key.into_owned()).or_insert(Slot {
            value: None,
            stored: false,
            dirty: false,
        });
        slot.value = Some(value);
        slot.dirty = true;
    }

    /// Deletes `key` (written back by [`flush`](Self::flush)). A key never
    /// read is deleted from the store all the same.
    pub fn delete<Q: KeyBytes + ?Sized>(&mut self, key: &Q) {
        let key = key.key_bytes();
        let slot = self.slots.entry(key.into_owned()).or_insert(Slot {
            value: None,
            stored: true,
            dirty: false,
        });
        slot.value = None;
        slot.dirty = true;
    }

    /// Writes the changed values back: one `put-many`, and a `delete` per
    /// removed key that the store held.
    pub fn flush(self) -> Result<()> {
        let mut puts = Vec::new();
        for (key, slot) in self.slots {
            if !slot.dirty {
                continue;
            }
            match slot.value {
                Some(value) => puts.push((key, serde_json::to_vec(&value)?)),
                None if slot.stored => self.store.delete(&key),
                None => {}
            }
        }
        self.store.put_many(&puts);
        Ok(())
    }
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
