//! The broker's one RocksDB: opening it with memory bounded by
//! `state.memory_bytes_max`, and a column family per processor.
//!
//! Memory: one LRU block cache of `memory_bytes_max` bytes shared by every
//! column family, index and filter blocks included (cached, not held
//! beside the cache), and a write buffer manager that charges every
//! memtable to that same cache, with a cap of a quarter of it. The tasks'
//! caches of committed values (`cache`, `state.value_cache_bytes_max`) are
//! taken out of the same bound, and so is the tasks' staged (uncommitted)
//! writes' share, a quarter (tasks commit early when they reach it): the
//! block cache gets the rest. So adding
//! processors or partitions adds keys, not memory. Kafka Streams gives
//! each store its own cache and memtables, which is what makes its RocksDB
//! memory hard to predict.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType,
    DataBlockIndexType, MultiThreaded, Options, WriteBufferManager,
};

use super::cache::CacheBudget;
use super::fill::BlockFill;
use super::{Compression, StateConfig, StateError};

pub(crate) type Db = rocksdb::DBWithThreadMode<MultiThreaded>;

/// Column families are named after their processor with this prefix
/// (RocksDB's own `default` family stays empty).
const FAMILY_PREFIX: &str = "processor/";

/// The state of every processor of the broker.
pub(crate) struct StateDb {
    db: Db,
    /// Options every processor's column family is created with.
    family_options: Options,
    config: StateConfig,
    path: PathBuf,
    /// Serialises creating and dropping families.
    families: Mutex<BTreeSet<String>>,
    cache: Cache,
    /// Bytes staged (uncommitted) by every task together: tasks commit
    /// early once it passes a quarter of `memory_bytes_max`, so staged
    /// writes stay under the same one setting as RocksDB's memory.
    staged_bytes: std::sync::atomic::AtomicUsize,
    /// The bound of the tasks' caches of committed values together.
    pub(super) value_cache: Arc<CacheBudget>,
    /// Whether the tasks' reads keep what they read in `cache`.
    block_fill: BlockFill,
    /// The threads writing the tasks' commits.
    pub(super) committer: super::committer::Committer,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").field("path", &self.path).finish()
    }
}

/// The staged writes' share of `memory_bytes_max`: one part in this many.
const STAGED_SHARE_DIVISOR: usize = 4;

impl StateDb {
    /// Opens (or creates) the state in `dir`.
    pub(crate) fn open(dir: &Path, config: &StateConfig) -> Result<Arc<Self>, StateError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StateError::Storage(format!("creating {}: {e}", dir.display())))?;
        let memory = usize::try_from(config.memory_bytes_max).unwrap_or(usize::MAX);
        let values = usize::try_from(config.value_cache_bytes_max)
            .unwrap_or(usize::MAX)
            .min(memory / 4);
        let staged = memory / STAGED_SHARE_DIVISOR;
        let blocks = memory - values - staged;
        let cache = Cache::new_lru_cache(blocks);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            blocks / 4,
            false,
            cache.clone(),
        );
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_write_buffer_manager(&write_buffers);
        options.set_max_open_files(config.open_files_max);
        options.set_max_background_jobs(2);
        // Bounds the WAL: past it the oldest families' memtables are
        // flushed, so restart replays at most this much.
        options.set_max_total_wal_size(64 << 20);
        // Table files read through mappings instead of pread: see
        // `StateConfig::mmap_reads`.
        options.set_allow_mmap_reads(config.mmap_reads);
        let family_options = family_options(&cache, write_buffer_bytes(config), config.compression);
        // A new database has no families yet (and nothing to list).
        let existing = if dir.join("CURRENT").exists() {
            Db::list_cf(&options, dir)?
        } else {
            Vec::new()
        };
        let descriptors = existing
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, family_options.clone()));
        let db = Db::open_cf_descriptors(&options, dir, descriptors)?;
        let families = existing
            .iter()
            .filter_map(|name| name.strip_prefix(FAMILY_PREFIX))
            .map(str::to_string)
            .collect();
        Ok(Arc::new(Self {
            db,
            family_options,
            config: config.clone(),
            path: dir.to_path_buf(),
            families: Mutex::new(families),
            cache,
            staged_bytes: std::sync::atomic::AtomicUsize::new(0),
            value_cache: Arc::new(CacheBudget::new(values)),
            block_fill: BlockFill::new(config.block_cache_fill, blocks),
            committer: Default::default(),
        }))
    }

    pub(crate) fn config(&self) -> &StateConfig {
        &self.config
    }

    /// The nice value of the threads writing commits (`processors.nice`),
    /// before the first commit.
    pub(crate) fn set_commit_nice(&self, nice: i32) {
        self.committer.set_nice(nice);
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Processors that have state.
    pub(crate) fn processors(&self) -> Vec<String> {
        let families = self.families.lock().expect("families lock");
        families.iter().cloned().collect()
    }

    /// The state of processor `name`, creating its column family if needed.
    pub(crate) fn processor(self: &Arc<Self>, name: &str) -> Result<ProcessorState, StateError> {
        let mut families = self.families.lock().expect("families lock");
        let family = family_name(name);
        if !families.contains(name) {
            self.db.create_cf(&family, &self.family_options)?;
            families.insert(name.to_string());
        }
        Ok(ProcessorState {
            db: self.clone(),
            family,
        })
    }

    /// The state of processor `name` if it has any.
    pub(crate) fn existing(self: &Arc<Self>, name: &str) -> Option<ProcessorState> {
        let families = self.families.lock().expect("families lock");
        families.contains(name).then(|| ProcessorState {
            db: self.clone(),
            family: family_name(name),
        })
    }

    /// Deletes processor `name`'s state (its column family). Its files go
    /// when no reader holds them any more.
    pub(crate) fn drop_processor(&self, name: &str) -> Result<(), StateError> {
        let mut families = self.families.lock().expect("families lock");
        if families.remove(name) {
            self.db.drop_cf(&family_name(name))?;
        }
        Ok(())
    }

    /// Options of a task's reads: whether they keep the blocks they read
    /// in the block cache is `state.block_cache_fill`'s (`fill`).
    pub(crate) fn task_read_options(&self) -> rocksdb::ReadOptions {
        let mut options = rocksdb::ReadOptions::default();
        options.fill_cache(self.fills_block_cache());
        options
    }

    /// Whether a task's read would fill the block cache now.
    pub(super) fn fills_block_cache(&self) -> bool {
        self.block_fill.fills(|| self.state_file_bytes())
    }

    /// Bytes of the live state files of every processor.
    fn state_file_bytes(&self) -> u64 {
        let families = self.families.lock().expect("families lock");
        families
            .iter()
            .filter_map(|name| self.db.cf_handle(&family_name(name)))
            .filter_map(|family| {
                self.db
                    .property_int_value_cf(&family, "rocksdb.live-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }

    /// Bytes staged by every task together.
    pub(crate) fn staged_bytes(&self) -> usize {
        self.staged_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the tasks' staged bytes together passed their share of
    /// `memory_bytes_max` (a quarter): tasks should commit now.
    pub(crate) fn staged_over_budget(&self) -> bool {
        self.staged_bytes() as u64 >= self.config.memory_bytes_max / STAGED_SHARE_DIVISOR as u64
    }

    /// Moves the staged total by a task's change from `before` to `after`.
    pub(crate) fn account_staged(&self, before: usize, after: usize) {
        use std::sync::atomic::Ordering;
        if after >= before {
            self.staged_bytes
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.staged_bytes
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Bytes in the block cache now, memtables included, and in the
    /// tasks' caches of committed values.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.cache.get_usage() + self.value_cache.bytes()
    }
}

fn family_name(processor: &str) -> String {
    format!("{FAMILY_PREFIX}{processor}")
}

/// One family's memtable: `state.write_buffer_bytes`, or an eighth of the
/// state memory between 1 and 64 MiB.
fn write_buffer_bytes(config: &StateConfig) -> usize {
    match config.write_buffer_bytes {
        0 => usize::try_from(config.memory_bytes_max / 8)
            .unwrap_or(usize::MAX)
            .clamp(1 << 20, 64 << 20),
        bytes => usize::try_from(bytes).unwrap_or(usize::MAX),
    }
}

/// Options of a processor's column family, for point reads of state much
/// larger than the cache. Every choice here is per SST file or per
/// memtable, so files written with earlier options stay readable.
fn family_options(cache: &Cache, write_buffer_bytes: usize, compression: Compression) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_bloom_filter(10.0, false);
    // Index and filter in partitions of a few KiB under a small top level
    // kept in the cache: with whole-file filters (a MiB or two each for
    // millions of keys) a state larger than the cache evicted them and
    // read, checksummed and parsed one again for a single lookup.
    table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    // A hash index inside each data block: a point lookup finds its key
    // without a binary search over the block's restart points.
    table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
    table.set_data_block_hash_ratio(0.75);
    // Each commit inserts its writes in key order, a few thousand spread
    // over a memtable of up to a million entries: with a hint per prefix
    // (task, kind, store-name length or timer domain: six bytes) RocksDB
    // starts each insert from where the last one with that prefix went
    // instead of from the top of the skip list (end to end +8-10%, three
    // alternated pairs). A hint is about 250 bytes per prefix and
    // memtable: per task, a few. Only the options string reaches this
    // option through RocksDB's C API.
    let mut options = Options::default()
        .get_options_from_string("memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.6")
        .expect("a valid RocksDB option");
    options.set_block_based_table_factory(&table);
    // A bloom filter over whole keys in each memtable: a read of a key
    // the memtables do not hold (a new window, a timer) skips their skip
    // lists.
    options.set_memtable_prefix_bloom_ratio(0.1);
    options.set_memtable_whole_key_filtering(true);
    // One compression at every level (`state.compression`, none by
    // default): a state much larger than memory reads a table block for
    // nearly every record, and decoding it was most of the difference
    // between 43k records/s (LZ4) and 65k (none) at 10M keys. Zstd at the
    // bottom was slower still (55-57k against LZ4's 66-71k, an earlier
    // machine).
    let compression = match compression {
        Compression::None => DBCompressionType::None,
        Compression::Lz4 => DBCompressionType::Lz4,
        Compression::Zstd => DBCompressionType::Zstd,
    };
    options.set_compression_type(compression);
    options.set_bottommost_compression_type(compression);
    // Memtables of one family; all families together are capped by the
    // write buffer manager.
    options.set_write_buffer_size(write_buffer_bytes);
    options.set_max_write_buffer_number(2);
    // No filters for the last level, where most of the data lives: a
    // read of a key that exists stops at its level, so for a state of
    // mostly present keys the bottom level's filter is consulted only to
    // say yes. At 10M keys with 64 MiB of state memory that check (a
    // filter partition from the cache per lookup) was a fifth of the
    // lookups' time, and those filters are most of the filter memory,
    // which the block cache gets back: 79k records/s against 65k (medians
    // of five alternated runs), RocksDB alone 126k against 100k. A key
    // that is not there (a new window, a new account) now reads the last
    // level's index and a data block instead of stopping at its filter;
    // the 100k-key end to end and the window close did not move. Kafka
    // Streams' stores set the same.
    options.set_optimize_filters_for_hits(true);
    options
}

/// One processor's state: its column family.
#[derive(Clone)]
pub(crate) struct ProcessorState {
    pub(super) db: Arc<StateDb>,
    pub(super) family: String,
}

impl std::fmt::Debug for ProcessorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorState")
            .field("family", &self.family)
            .finish()
    }
}

impl ProcessorState {
    /// The processor's column family's name.
    pub(super) fn family_name(&self) -> &str {
        &self.family
    }

    pub(super) fn family(&self) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>, StateError> {
        self.db
            .db
            .cf_handle(&self.family)
            .ok_or_else(|| StateError::Storage(format!("column family {} is gone", self.family)))
    }

    pub(crate) fn config(&self) -> &StateConfig {
        &self.db.config
    }

    /// RocksDB alone doing what a count does per record over store `store`
    /// of task `task`: for each batch one `batched_multi_get` of its keys
    /// (sorted, as a task reads them), then a put of each key; a synced
    /// write of the puts every `commit_interval`, and one at the end.
    /// Nothing cached beside RocksDB, nothing deduplicated, no log: the
    /// floor under a stateful loop whose state does not fit its memory.
    /// Returns the time taken. For `sluice-bench`, through `Scratch`.
    pub(crate) fn read_modify_write_floor(
        &self,
        task: u32,
        store: &str,
        batches: &[Vec<Vec<u8>>],
        commit_interval: std::time::Duration,
    ) -> Result<std::time::Duration, StateError> {
        let family = self.family()?;
        let db = self.db.db();
        let prefix = super::keys::store_prefix(task, store);
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        let started = std::time::Instant::now();
        let mut committed = started;
        let mut writes = rocksdb::WriteBatch::default();
        let mut keys = Vec::new();
        let read = self.db.task_read_options();
        for batch in batches {
            keys.clear();
            keys.extend(batch.iter().map(|key| super::keys::entry(&prefix, key)));
            keys.sort_unstable();
            for (key, value) in keys
                .iter()
                .zip(db.batched_multi_get_cf_opt(&family, &keys, true, &read))
            {
                // A count as the plugins keep one: a JSON number.
                let count = value?
                    .and_then(|value| std::str::from_utf8(&value).ok()?.parse::<u64>().ok())
                    .unwrap_or(0);
                writes.put_cf(&family, key, (count + 1).to_string());
            }
            if committed.elapsed() >= commit_interval {
                db.write_opt(std::mem::take(&mut writes), &sync)?;
                committed = std::time::Instant::now();
            }
        }
        db.write_opt(writes, &sync)?;
        Ok(started.elapsed())
    }

    /// RocksDB alone doing only what a task's commits do: for each run of
    /// `records_per_commit` records of `keys` (a commit interval's records
    /// at some rate), one synced write of every distinct key they touched,
    /// in key order, with a count's value. Nothing read, nothing else: the
    /// floor under the commits of a loop at that rate. Returns the time
    /// taken. For `sluice-bench`, through `Scratch`.
    pub(crate) fn commit_floor(
        &self,
        task: u32,
        store: &str,
        keys: &[Vec<u8>],
        records_per_commit: usize,
    ) -> Result<std::time::Duration, StateError> {
        let family = self.family()?;
        let db = self.db.db();
        let prefix = super::keys::store_prefix(task, store);
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        sync.set_memtable_insert_hint_per_batch(true);
        let mut took = std::time::Duration::ZERO;
        let mut distinct = Vec::new();
        for commit in keys.chunks(records_per_commit.max(1)) {
            distinct.clear();
            distinct.extend(commit.iter().map(|key| super::keys::entry(&prefix, key)));
            distinct.sort_unstable();
            distinct.dedup();
            let started = std::time::Instant::now();
            let mut writes = rocksdb::WriteBatch::default();
            for key in &distinct {
                writes.put_cf(&family, key, b"1234");
            }
            db.write_opt(writes, &sync)?;
            took += started.elapsed();
        }
        Ok(took)
    }
}
