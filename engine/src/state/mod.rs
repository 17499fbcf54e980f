//! Keyed processor state in RocksDB.
//!
//! One RocksDB for the broker, in `<data-dir>/state`, with a column family
//! per processor; inside it every key starts with the task (the input
//! partition), so a partition's state is one key range and a processor's is
//! one family to drop (`keys`). Memory is bounded by one setting,
//! `state.memory_bytes_max`: a block cache shared by every family, with the
//! write buffers (memtables) charged to it, so the total does not grow with
//! the number of processors or partitions (`db`).
//!
//! Nothing uncommitted reaches RocksDB. A task stages its writes in memory
//! with a savepoint before every plugin call so a failed call is undone:
//! its store entries in one hash table that also keeps, bounded, what it
//! read or committed (`cache`: its next batch does not search RocksDB's
//! memtables again), its timers in an ordered map (`staged`). It reads
//! through them to the committed state (`task`), and commits with one
//! synced write batch that also carries the task's metadata (input
//! positions, stream time, the transaction it commits). That write is the
//! commit point of exactly-once processing; reads of committed state
//! (`query`) never see staged data. A busy task does not wait for it: it
//! runs on a commit thread (`committer`) while the task goes on, reading
//! as if it were written.

mod cache;
mod commit_writes;
mod committer;
mod db;
mod fill;
mod keys;
mod query;
mod read_beside;
mod restore;
mod staged;
mod task;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_clear;
#[cfg(test)]
mod tests_in_flight;
#[cfg(test)]
mod tests_timers;

use serde::{Deserialize, Serialize};

pub(crate) use db::{ProcessorState, StateDb};
pub use keys::Domain;
pub(crate) use keys::{
    from_ordered_i64, is_meta_suffix, ordered_i64, prefix_end, store_prefix, validate_store_name,
};
pub(crate) use query::{Committed, Page};
pub(crate) use task::TaskState;
pub use task::Timer;

/// State settings (`[state]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StateConfig {
    /// Memory of all keyed state together, in bytes: RocksDB's shared block
    /// cache, which the write buffers are charged to. Default 256 MiB.
    pub(crate) memory_bytes_max: u64,
    /// Longest key a plugin may write. Default 16 KiB.
    pub(crate) key_bytes_max: usize,
    /// Longest value a plugin may write. Default 1 MiB.
    pub(crate) value_bytes_max: usize,
    /// Staged (uncommitted) bytes of one task at which it commits early,
    /// before its commit interval. Default 32 MiB.
    pub(crate) commit_bytes_max: usize,
    /// Staged bytes one plugin call may add: a call staging more fails
    /// (and with it its record, by the error policy). A task holds at most
    /// `commit_bytes_max + staged_bytes_max`: a call that would take it
    /// past that is undone, the task commits, and the call is made again.
    /// Default 256 MiB.
    pub(crate) staged_bytes_max: usize,
    /// Entries one scan page returns at most. Default 10 000.
    pub(crate) scan_entries_max: usize,
    /// Key and value bytes at which a scan page stops (a plugin's, a
    /// query's, and each pass of a range delete): it holds at most this
    /// plus one entry, and at least one. Values may be 1 MiB each, so a
    /// page of 10 000 was 10 GiB in the broker's memory. Default 4 MiB.
    pub(crate) scan_bytes_max: usize,
    /// RocksDB files kept open at most. Default 512.
    pub(crate) open_files_max: i32,
    /// Committed values the tasks keep in memory (`cache`), all tasks
    /// together, split evenly between them: taken out of
    /// `memory_bytes_max` (at most a quarter of it; the block cache gets
    /// the rest). 0 turns the cache off. Default 32 MiB.
    pub(crate) value_cache_bytes_max: u64,
    /// How state files are compressed. Files written with another
    /// setting stay readable, and are rewritten with this one as
    /// compaction reaches them. Default none.
    pub(crate) compression: Compression,
    /// Read table files through memory mappings (RocksDB's
    /// `allow_mmap_reads`): faster cold reads of state larger than
    /// memory, but the mapped pages count in the broker's RSS (they are
    /// the kernel's page cache either way) and a disk read error stops the
    /// broker (SIGBUS) instead of failing one task. Default off.
    pub(crate) mmap_reads: bool,
    /// Whether the table blocks a task reads are kept in the block cache:
    /// `auto` while the state's files fit in twice the block cache,
    /// `always`, or `never`. Default auto.
    pub(crate) block_cache_fill: CacheFill,
    /// The memtable of one processor's state, in bytes: 0 (the default)
    /// is an eighth of `memory_bytes_max`, between 1 and 64 MiB. A
    /// commit inserts its keys into the memtable, a skip list searched
    /// through memory: a smaller one costs a commit less (0.5 µs a key
    /// at 4 MiB against 1.3–1.8 µs at 32 MiB; README, state settings)
    /// but flushes more often, with fewer overwritten versions dropped
    /// on the way: more background work beside the tasks and lookups.
    pub(crate) write_buffer_bytes: u64,
}

/// When a task's reads keep the blocks they read in the block cache
/// (`state.block_cache_fill`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CacheFill {
    /// While the live state files are at most twice the block cache
    /// (decided again every second). A state many times its cache,
    /// read at random, would insert (and evict) a block for nearly every
    /// read and find few of them again: the kernel's page cache holds
    /// the files either way.
    #[default]
    Auto,
    Always,
    Never,
}

/// A compression of state files (`state.compression`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Compression {
    #[default]
    None,
    Lz4,
    Zstd,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            memory_bytes_max: 256 << 20,
            key_bytes_max: 16 << 10,
            value_bytes_max: 1 << 20,
            commit_bytes_max: 32 << 20,
            staged_bytes_max: 256 << 20,
            scan_entries_max: 10_000,
            scan_bytes_max: 4 << 20,
            open_files_max: 512,
            value_cache_bytes_max: 32 << 20,
            compression: Compression::None,
            mmap_reads: false,
            block_cache_fill: CacheFill::Auto,
            write_buffer_bytes: 0,
        }
    }
}

/// Why a state operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    /// RocksDB failed (I/O, corruption): the task stops.
    #[error("state storage failed: {0}")]
    Storage(String),
    #[error("state key of {bytes} bytes is over the limit of {max} bytes (state.key_bytes_max)")]
    KeyTooLarge { bytes: usize, max: usize },
    #[error(
        "state value of {bytes} bytes is over the limit of {max} bytes (state.value_bytes_max)"
    )]
    ValueTooLarge { bytes: usize, max: usize },
    #[error("the value at this key is not a counter (decimal text): {0}")]
    NotACounter(String),
    #[error("counter overflow: {value} + {delta}")]
    CounterOverflow { value: i64, delta: i64 },
    #[error(
        "one call staged more than {max} bytes of state changes (state.staged_bytes_max); \
         write less per record"
    )]
    StagedFull { max: usize },
    /// The task's staged changes reached `commit_bytes_max +
    /// staged_bytes_max`: not the record's fault; the call is undone and
    /// made again after a commit.
    #[error(
        "the task holds {bytes} bytes of uncommitted state changes \
         (state.commit_bytes_max + state.staged_bytes_max): committing before going on"
    )]
    CommitFirst { bytes: usize },
    #[error("store {0:?} is not declared by this processor (deploy with --store {0})")]
    UnknownStore(String),
    #[error("store {0:?} is a table (read-only): it follows its topic")]
    ReadOnly(String),
    #[error("state is only reachable from process and on-timer calls, not init")]
    NoState,
    #[error("store name {0:?} is invalid: 1 to 64 bytes of letters, digits, '.', '_' and '-'")]
    BadStoreName(String),
}

impl StateConfig {
    /// Checks settings that parse but cannot work.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let one_write = self.key_bytes_max + self.value_bytes_max + STORE_KEY_PREFIX_BYTES_MAX;
        anyhow::ensure!(
            self.staged_bytes_max >= one_write,
            "[state] staged_bytes_max ({}) must hold one write of the longest key and value \
             (key_bytes_max + value_bytes_max + {STORE_KEY_PREFIX_BYTES_MAX} = {one_write})",
            self.staged_bytes_max
        );
        anyhow::ensure!(
            self.commit_bytes_max > 0,
            "[state] commit_bytes_max must be positive"
        );
        anyhow::ensure!(
            self.scan_bytes_max > 0,
            "[state] scan_bytes_max must be positive"
        );
        anyhow::ensure!(
            self.write_buffer_bytes == 0
                || (1 << 20..=self.memory_bytes_max).contains(&self.write_buffer_bytes),
            "[state] write_buffer_bytes ({}) must be 0 (an eighth of memory_bytes_max) or \
             between 1 MiB and memory_bytes_max ({})",
            self.write_buffer_bytes,
            self.memory_bytes_max
        );
        Ok(())
    }
}

/// The most a store key's prefix and a staged entry's bookkeeping add to
/// a write's key and value (see `keys` and `staged`).
const STORE_KEY_PREFIX_BYTES_MAX: usize = 6 + keys::STORE_NAME_BYTES_MAX + 2 * 64;

impl StateError {
    /// Whether the failure is the storage's, not the plugin's: the task
    /// stops rather than applying the error policy to a record.
    pub(crate) fn is_storage(&self) -> bool {
        matches!(self, Self::Storage(_))
    }

    /// Whether the call must be made again after a commit.
    pub(crate) fn is_commit_first(&self) -> bool {
        matches!(self, Self::CommitFirst { .. })
    }
}

impl From<rocksdb::Error> for StateError {
    fn from(error: rocksdb::Error) -> Self {
        Self::Storage(error.into_string())
    }
}
