//! A commit's store writes as the task hands them to a commit thread: one
//! buffer of keys and values in the order they were staged, sorted and
//! put into the RocksDB write batch on that thread.
//!
//! Why: a commit of a busy task holds tens of thousands of store keys.
//! Sorting them and copying each into a write batch (a cache miss for
//! each key's slot, and the batch's buffer grown by doubling) was 60% of
//! what the task's thread still spent on a commit once the RocksDB write
//! itself ran on a commit thread. Packed here in the same pass that moves
//! each staged value in place (`Entries::committed_all`, which reads each
//! slot anyway), the copy is sequential; the rest runs beside the task.
//!
//! Bounds: one `CommitWrites` per commit in flight (a task has at most
//! one), holding the commit's staged keys and values once, as the write
//! batch it replaces did (under `state.commit_bytes_max` plus a call's
//! `state.staged_bytes_max`); its thread holds both while it builds the
//! batch.

use rocksdb::WriteBatch;

use super::db::Db;
use super::keys;

/// Keys and staged writes (a value, or a delete) packed in one buffer.
#[derive(Debug, Default)]
pub(super) struct PackedWrites {
    data: Vec<u8>,
    /// Per write: where its key starts in `data`, the key's length, the
    /// value's length (it follows the key) or `None` for a delete.
    writes: Vec<(usize, u32, Option<u32>)>,
}

impl PackedWrites {
    /// Room for `writes` writes of `bytes` bytes of keys and values.
    pub(super) fn with_capacity(writes: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            writes: Vec::with_capacity(writes),
        }
    }

    pub(super) fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let start = self.data.len();
        self.data.extend_from_slice(key);
        let value_len = value.map(|value| {
            self.data.extend_from_slice(value);
            len_u32(value)
        });
        self.writes.push((start, len_u32(key), value_len));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The writes, in key order.
    pub(super) fn sorted(&self) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut writes: Vec<_> = self
            .writes
            .iter()
            .map(|&(start, key_len, value_len)| {
                let key_end = start + key_len as usize;
                let value = value_len.map(|len| &self.data[key_end..key_end + len as usize]);
                (&self.data[start..key_end], value)
            })
            .collect();
        keys::sort_by_key(&mut writes, |(key, _)| key);
        writes
    }
}

fn len_u32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).expect("state keys and values are shorter than 4 GiB")
}

/// A commit on its way to RocksDB: the batch the task built (range
/// tombstones first, its ordered staged writes and its metadata record),
/// and the store entries' writes, added on the commit thread.
pub(super) struct CommitWrites {
    pub(super) batch: WriteBatch,
    /// The processor's column family.
    pub(super) family: String,
    pub(super) entries: PackedWrites,
    /// The ranges `batch` clears: a delete of a key in one is left out.
    pub(super) cleared: Vec<(Vec<u8>, Vec<u8>)>,
}

impl CommitWrites {
    /// The whole write batch, the entries' writes in key order (RocksDB
    /// inserts sorted keys into its memtable faster).
    pub(super) fn into_batch(self, db: &Db) -> Result<WriteBatch, String> {
        let Self {
            mut batch,
            family,
            entries,
            cleared,
        } = self;
        if entries.is_empty() {
            return Ok(batch);
        }
        let handle = db
            .cf_handle(&family)
            .ok_or_else(|| format!("column family {family} is gone"))?;
        for (key, value) in entries.sorted() {
            add_write(&mut batch, &handle, &cleared, key, value);
        }
        Ok(batch)
    }
}

/// Adds a staged put (`Some`) or delete (`None`) of `key` to `batch`: a
/// delete under one of the ranges the batch clears is left out (the
/// range tombstone covers it).
pub(super) fn add_write(
    batch: &mut WriteBatch,
    family: &impl rocksdb::AsColumnFamilyRef,
    cleared: &[(Vec<u8>, Vec<u8>)],
    key: &[u8],
    value: Option<&[u8]>,
) {
    match value {
        Some(value) => batch.put_cf(family, key, value),
        None if keys::in_cleared(cleared, key).is_some() => {}
        None => batch.delete_cf(family, key),
    }
}
