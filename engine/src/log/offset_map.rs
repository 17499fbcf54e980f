//! The key map of a compaction pass: a fixed-size table from a key's hash
//! to the latest offset seen for it, as Kafka's `SkimpyOffsetMap`.
//!
//! Why hashes, and why a fixed table: the map must not grow with the
//! partition. Holding the keys themselves (or, worse, slices that pin the
//! batch buffers they came from) makes compaction's memory proportional to
//! the data, so a large compacted partition could exhaust the broker. Each
//! entry here is 24 bytes whatever the key: the first 16 bytes of the key's
//! SHA-256 and the offset. The table is sized once from the budget
//! (`log.compaction_memory_bytes_max`), or smaller when the partition holds
//! fewer records than the budget would fit; when it is full, the pass ends
//! and compaction continues in another pass (see `compaction.rs`).
//!
//! Two different keys sharing 128 bits of SHA-256 would make compaction drop
//! the older one's record; Kafka takes the same risk with MD5.

use sha2::{Digest, Sha256};

/// Default of `log.compaction_memory_bytes_max`: 128 MiB, Kafka's
/// `log.cleaner.dedupe.buffer.size`. Maintenance compacts one partition at a
/// time, so this is the most one broker spends on it; at 24 bytes an entry
/// and a 90 % load it maps about 5.6 million distinct keys per pass.
pub(crate) const COMPACTION_MEMORY_BYTES_MAX_DEFAULT: usize = 128 << 20;

/// Bytes of the key hash kept per entry.
const HASH_BYTES: usize = 16;

/// One slot: a key hash and `offset + 1` (0 marks an empty slot).
#[derive(Clone, Copy, Default)]
struct Slot {
    hash: [u8; HASH_BYTES],
    offset_plus_one: i64,
}

/// Bytes one slot takes.
pub(crate) const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// Key hash → latest offset, in a table of fixed size.
pub(crate) struct OffsetMap {
    slots: Vec<Slot>,
    /// Keys in the map.
    entries: usize,
    /// Keys the map takes before it reports full (90 % of the slots, as
    /// Kafka's `log.cleaner.io.buffer.load.factor`), so probes stay short
    /// and always find an empty slot.
    entries_max: usize,
}

impl OffsetMap {
    /// A map within `memory_bytes_max` bytes, no larger than `records_max`
    /// keys need (the records a pass can meet bound its distinct keys).
    pub(crate) fn new(memory_bytes_max: usize, records_max: u64) -> Self {
        let needed =
            usize::try_from(records_max.saturating_add(records_max / 9 + 2)).unwrap_or(usize::MAX);
        // (Enough slots for every record at the load limit.)
        // At least two slots, so every pass maps at least one key.
        let slots = (memory_bytes_max / SLOT_BYTES).min(needed).max(2);
        Self {
            slots: vec![Slot::default(); slots],
            entries: 0,
            entries_max: (slots.saturating_mul(9) / 10).clamp(1, slots - 1),
        }
    }

    /// Bytes the table takes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.len() * SLOT_BYTES
    }

    /// Records `offset` as the latest of `key`. False, with nothing
    /// changed, when `key` is new and the map is full.
    pub(crate) fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = hash(key);
        let index = self.probe(&hash);
        let slot = &mut self.slots[index];
        if slot.offset_plus_one == 0 {
            if self.entries >= self.entries_max {
                return false;
            }
            self.entries += 1;
            slot.hash = hash;
        }
        slot.offset_plus_one = offset + 1;
        true
    }

    /// The latest offset recorded for `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<i64> {
        let slot = &self.slots[self.probe(&hash(key))];
        (slot.offset_plus_one != 0).then(|| slot.offset_plus_one - 1)
    }

    /// The slot holding `hash`, or the empty slot where it would go (linear
    /// probing; the load limit guarantees an empty slot).
    fn probe(&self, hash: &[u8; HASH_BYTES]) -> usize {
        let mut start = [0u8; 8];
        start.copy_from_slice(&hash[..8]);
        let mut index = (u64::from_le_bytes(start) % self.slots.len() as u64) as usize;
        loop {
            let slot = &self.slots[index];
            if slot.offset_plus_one == 0 || slot.hash == *hash {
                return index;
            }
            index = (index + 1) % self.slots.len();
        }
    }
}

fn hash(key: &[u8]) -> [u8; HASH_BYTES] {
    let digest = Sha256::digest(key);
    let mut hash = [0u8; HASH_BYTES];
    hash.copy_from_slice(&digest[..HASH_BYTES]);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_and_refuses_new_keys_when_full() {
        let mut map = OffsetMap::new(10 * SLOT_BYTES, u64::MAX);
        assert_eq!(map.memory_bytes(), 10 * SLOT_BYTES);
        for index in 0..9 {
            assert!(map.put(format!("k{index}").as_bytes(), index));
        }
        assert!(!map.put(b"new", 100), "full at 90 %");
        assert!(map.put(b"k3", 200), "a known key still updates");
        assert_eq!(map.get(b"k3"), Some(200));
        assert_eq!(map.get(b"k8"), Some(8));
        assert_eq!(map.get(b"new"), None);
    }

    #[test]
    fn is_no_larger_than_the_records_need() {
        assert_eq!(OffsetMap::new(1 << 20, 9).memory_bytes(), 12 * SLOT_BYTES);
        for records in [1, 9, 11, 100, 1001] {
            let mut map = OffsetMap::new(1 << 20, records);
            for offset in 0..records as i64 {
                assert!(map.put(&offset.to_be_bytes(), offset), "{records}");
            }
        }
        assert_eq!(OffsetMap::new(0, 1000).memory_bytes(), 2 * SLOT_BYTES);
        let mut tiny = OffsetMap::new(0, 1000);
        assert!(tiny.put(b"a", 0) && !tiny.put(b"b", 1));
    }
}
