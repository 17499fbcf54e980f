//! Values a plugin call read from RocksDB that the task's cache of
//! committed values did not keep (its share too small, or
//! `state.value_cache_bytes_max = 0`), kept until the call ends. A write
//! needs to know whether its key is new (the task's key count): without
//! these, a read-modify-write of a key the cache could not hold read
//! RocksDB twice, and at 10M keys with no cache ran at 0.6 of the default.
//!
//! They stay valid for the call: RocksDB changes only at a commit, and the
//! task clears them at every call's start and end, commit and discard.

use std::collections::HashMap;

/// Bytes the kept values may take (keys, values and 64 bytes each): a
/// batch's worth of small keys. Past it a write reads RocksDB again.
pub(crate) const READ_BESIDE_BYTES_MAX: usize = 256 << 10;

#[derive(Debug, Default)]
pub(crate) struct ReadBeside {
    values: HashMap<Box<[u8]>, Option<Box<[u8]>>>,
    bytes: usize,
}

impl ReadBeside {
    /// Keeps what RocksDB holds at `key`, if it fits.
    pub(crate) fn keep(&mut self, key: &[u8], value: Option<&[u8]>) {
        let size = key.len() + value.map_or(0, <[u8]>::len) + 64;
        if self.bytes + size > READ_BESIDE_BYTES_MAX || self.values.contains_key(key) {
            return;
        }
        self.bytes += size;
        self.values.insert(key.into(), value.map(Box::from));
    }

    /// What RocksDB held at `key` when the call read it, if kept.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.values
            .get(key)
            .map(|value| value.as_ref().map(|value| value.to_vec()))
    }

    pub(crate) fn clear(&mut self) {
        if self.bytes > 0 {
            self.values.clear();
            self.bytes = 0;
        }
    }
}
