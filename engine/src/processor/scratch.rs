//! A scratch pipeline for benchmarks and tests: the broker's own log
//! store, group coordinator, state database and partition loop in a
//! temporary folder, with no broker around them.
//!
//! Besides the stateless task, it builds stateful and exactly-once tasks
//! as the registry does (`Processors::stateful_parts`), and gives native
//! baselines and query benchmarks the few state operations a plugin's
//! imports and the HTTP state queries reach ([`NativeStore`],
//! [`CommittedReader`]), so that the `sluice-bench` crate measures the
//! broker's own code without the engine's state types becoming `pub`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::host::{Batch, Factory, Invoke, InvokeError, Output, Payload, TaskContext};
use super::spec::{Deployment, Guarantee};
use super::stateful::{Stateful, TaskMeta};
use super::status::PartitionStats;
use super::worker::PartitionTask;
use crate::group::GroupCoordinator;
use crate::log::LogStore;
use crate::state::{Domain, ProcessorState, StateConfig, StateDb, StateError, TaskState};

/// The input partition every scratch task reads, and so its state's task.
const TASK: u32 = 0;

/// A scratch pipeline for benchmarks and tests: an unsynced log store, a
/// group coordinator and a state database in a folder, with topics `in`
/// and `out` of one partition each. `pub` for the `sluice-bench` crate's
/// processor benchmarks, which run the broker's own loop through it.
pub struct Scratch {
    /// The log store, in `<dir>/data`, with `flush=never`.
    pub store: Arc<LogStore>,
    /// The group coordinator the tasks commit to, in `<dir>/groups`.
    pub(crate) groups: Arc<GroupCoordinator>,
    /// Keyed state and commit records of stateful tasks, in `<dir>/state`.
    state: Arc<StateDb>,
    /// Producer ids of exactly-once tasks (a broker allocates them from
    /// its transaction log; here a counter, seeded per opening so a
    /// reopened pipeline does not reuse one).
    producer_ids: Arc<AtomicI64>,
}

/// How a scratch stateful task commits.
#[derive(Debug, Clone, Copy)]
pub struct StatefulOptions {
    /// Outputs in transactions (else plain durable batches).
    pub exactly_once: bool,
    /// `commit_interval_ms` of the deployment.
    pub commit_interval_ms: u64,
}

impl Scratch {
    /// Opens (or creates) the pipeline in `dir`, which the caller owns and
    /// removes; the state has the default `state.memory_bytes_max`.
    pub fn open(dir: &std::path::Path) -> anyhow::Result<Self> {
        Self::open_with_state_memory(dir, None, None)
    }

    /// Like [`Scratch::open`], with the state's memory bounded by
    /// `state_memory_bytes_max` (`state.memory_bytes_max`) and the tasks'
    /// caches of committed values by `value_cache_bytes_max`
    /// (`state.value_cache_bytes_max`); `None`: the default.
    pub fn open_with_state_memory(
        dir: &std::path::Path,
        state_memory_bytes_max: Option<u64>,
        value_cache_bytes_max: Option<u64>,
    ) -> anyhow::Result<Self> {
        use crate::group::offsets::OffsetStore;
        use crate::group::GroupConfig;
        use crate::log::{FlushPolicy, StdIo, StoreOptions, SystemClock};
        let options = StoreOptions {
            flush: FlushPolicy::Never,
            ..StoreOptions::default()
        };
        let store = Arc::new(LogStore::open(
            &dir.join("data"),
            options,
            Arc::new(StdIo),
            Arc::new(SystemClock),
        )?);
        let offsets = OffsetStore::open(Arc::new(StdIo), &dir.join("groups"))?;
        let groups = Arc::new(GroupCoordinator::new(
            GroupConfig::default(),
            Arc::new(SystemClock),
            offsets,
        ));
        for topic in ["in", "out"] {
            if store.topic(topic).is_none() {
                store.create_topic(topic, 1, Default::default())?;
            }
        }
        let defaults = StateConfig::default();
        let config = StateConfig {
            memory_bytes_max: state_memory_bytes_max.unwrap_or(defaults.memory_bytes_max),
            value_cache_bytes_max: value_cache_bytes_max.unwrap_or(defaults.value_cache_bytes_max),
            ..defaults
        };
        let state = StateDb::open(&dir.join("state"), &config)?;
        let seed = super::status::now_ms().rem_euclid(1 << 40);
        Ok(Self {
            store,
            groups,
            state,
            producer_ids: Arc::new(AtomicI64::new(seed)),
        })
    }

    /// The task of processor `name` (from `in` to `out`, policy `fail`) on
    /// partition `in`/0, from offset 0.
    pub fn task(&self, name: &str, factory: Factory, limits: super::spec::Limits) -> PartitionTask {
        self.task_at(name, factory, limits, 0)
    }

    /// Like [`Scratch::task`], starting at committed offset `position`.
    pub(crate) fn task_at(
        &self,
        name: &str,
        factory: Factory,
        limits: super::spec::Limits,
        position: i64,
    ) -> PartitionTask {
        let deployment = deployment(name, limits, Vec::new(), Guarantee::default(), None);
        let stats = Arc::new(PartitionStats::new("in", 0));
        PartitionTask::new(
            self.store.clone(),
            self.groups.clone(),
            factory,
            deployment,
            stats,
            position,
        )
    }

    /// The stateful task of processor `name` with store `stores`, as the
    /// registry builds it: its state in this pipeline's state database,
    /// recovered from its last commit (if any) at its first step.
    pub fn stateful_task(
        &self,
        name: &str,
        factory: Factory,
        limits: super::spec::Limits,
        stores: &[&str],
        options: StatefulOptions,
    ) -> anyhow::Result<PartitionTask> {
        let guarantee = if options.exactly_once {
            Guarantee::ExactlyOnce
        } else {
            Guarantee::AtLeastOnce
        };
        let stores = stores.iter().map(|s| s.to_string()).collect();
        let deployment = deployment(
            name,
            limits,
            stores,
            guarantee,
            Some(options.commit_interval_ms),
        );
        let stats = Arc::new(PartitionStats::new("in", 0));
        let context = self.context(name)?;
        let producer_ids = self.producer_ids.clone();
        let stateful = Stateful::new(
            options.exactly_once,
            false,
            Arc::new(move || Ok(producer_ids.fetch_add(1, Ordering::Relaxed))),
            Duration::from_millis(options.commit_interval_ms),
            None,
        );
        let task = PartitionTask::new(
            self.store.clone(),
            self.groups.clone(),
            factory,
            deployment,
            stats,
            0,
        );
        Ok(task.with_state(context, stateful))
    }

    /// A task context with processor `name`'s state of partition 0, for
    /// calling an instance without the partition loop.
    pub fn context(&self, name: &str) -> anyhow::Result<TaskContext> {
        let processor = self.state.processor(name)?;
        Ok(TaskContext::with_state(TaskState::new(processor, TASK)))
    }

    /// Commits what `context` has staged in one RocksDB write (synced when
    /// `sync`), with the metadata of a task that has processed nothing, so
    /// a stateful task of the same processor starts on this state from
    /// offset 0 (how benchmarks load state without the loop).
    pub fn commit_context(context: &mut TaskContext, sync: bool) -> anyhow::Result<()> {
        let state = context
            .state
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the context has no state"))?;
        state.commit(&TaskMeta::fresh().encode(), sync)?;
        Ok(())
    }

    /// Sets the stream time a call through `context` sees (the partition
    /// loop moves it after each batch).
    pub fn set_stream_time(context: &mut TaskContext, stream_time: Option<i64>) {
        context.stream_time = stream_time;
    }

    /// Committed reads of processor `name`'s state, as the HTTP state
    /// queries make them.
    pub fn committed_reader(&self, name: &str) -> anyhow::Result<CommittedReader> {
        let processor = self
            .state
            .existing(name)
            .ok_or_else(|| anyhow::anyhow!("processor {name} has no state"))?;
        Ok(CommittedReader(processor))
    }

    /// Drops `topic`/0's records before `offset` (and before its last
    /// stable offset), as retention would, so a long run's log does not
    /// fill the disk.
    pub fn trim(&self, topic: &str, offset: i64) -> anyhow::Result<()> {
        let partition = self.store.partition(topic, 0)?;
        partition.delete_records_before(offset.min(partition.last_stable_offset()))?;
        Ok(())
    }

    /// What `task`'s status reports of it: the instance's peak linear
    /// memory, the committed timers, store entries and open windows,
    /// commits, and the approximate bytes of its state.
    pub fn task_figures(task: &PartitionTask) -> TaskFigures {
        let stats = task.stats();
        let get = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
        TaskFigures {
            instance_memory_bytes: get(&stats.memory_bytes),
            timers_pending: get(&stats.timers_pending),
            keys: get(&stats.keys),
            open_windows: stats.open_windows(),
            commits: get(&stats.commits),
            state_bytes: get(&stats.state_bytes),
        }
    }

    /// Bytes of the state's block cache in use now, memtables included.
    pub fn state_memory_bytes(&self) -> usize {
        self.state.memory_bytes()
    }

    /// Data records of `topic`/0 from `offset` that a read_committed
    /// consumer can read now (control records and aborted transactions
    /// left out), and the offset to read from next.
    pub fn read_committed_count(&self, topic: &str, offset: i64) -> anyhow::Result<(u64, i64)> {
        use crate::log::batch::BatchHeader;
        use crate::log::transactions::AbortedIndex;
        let partition = self.store.partition(topic, 0)?;
        let read =
            partition.read_isolated(offset, 1 << 20, crate::log::Isolation::ReadCommitted)?;
        let aborted = AbortedIndex::new(&read.aborted);
        let mut batches = read.records;
        let (mut records, mut next) = (0u64, offset);
        while !batches.is_empty() {
            let header = BatchHeader::parse(&batches)?;
            let size = header.total_bytes().min(batches.len());
            bytes::Buf::advance(&mut batches, size);
            if !header.is_control() && !aborted.contains(&header) {
                let first = header.base_offset.max(next);
                records += u64::try_from(header.next_offset() - first).unwrap_or(0);
            }
            next = next.max(header.next_offset());
        }
        Ok((records, next))
    }
}

/// A task's figures as its status shows them ([`Scratch::task_figures`]).
#[derive(Debug, Clone, Copy)]
pub struct TaskFigures {
    pub instance_memory_bytes: u64,
    pub timers_pending: u64,
    pub keys: u64,
    /// Entries of the stores the plugin opened as windowed (`None`: none).
    pub open_windows: Option<u64>,
    pub commits: u64,
    pub state_bytes: u64,
}

/// One timed run of the changelog restore benchmark.
#[derive(Debug, Clone, Copy)]
pub struct RestoreRun {
    /// Records restored (or written).
    pub records: u64,
    /// Their key and value bytes.
    pub bytes: u64,
    /// Wall time of the run.
    pub seconds: f64,
}

/// The `i`th pair of the restore benchmark: a key of store `counts` (8
/// bytes, spread over the key space) and `value_bytes` of noise.
fn restore_pair(i: u64, value_bytes: usize, value: &mut Vec<u8>) -> Vec<u8> {
    let mut key = crate::state::store_prefix(TASK, "counts")[4..].to_vec();
    key.extend_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    value.clear();
    let mut x = i | 1;
    while value.len() < value_bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        value.extend_from_slice(&x.to_le_bytes());
    }
    value.truncate(value_bytes);
    key
}

impl Scratch {
    /// Fills processor `name`'s changelog (partition 0 of
    /// `sluice-processor-NAME-changelog`, compacted) with `keys` puts of
    /// store `counts`, then a commit record; returns the partition's bytes.
    pub fn fill_changelog(&self, name: &str, keys: u64, value_bytes: usize) -> anyhow::Result<u64> {
        let changelog = self.changelog(name);
        let state = TaskState::new(self.state.processor(name)?, TASK);
        let partition = changelog.ensure(&state).map_err(anyhow::Error::msg)?;
        let (mut records, mut value) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        let record = |key: Vec<u8>, value: &[u8]| super::output::OutRecord {
            key: Some(key.into()),
            value: Some(bytes::Bytes::copy_from_slice(value)),
            headers: Vec::new(),
            timestamp: 0,
        };
        for i in 0..keys {
            let key = restore_pair(i, value_bytes, &mut value);
            bytes += key.len() + value.len();
            records.push(record(key, &value));
            if bytes >= 512 << 10 || i + 1 == keys {
                records.push(record(vec![0x00], &TaskMeta::fresh().encode()));
                partition.append(&super::output::encode(&mut records))?;
                (records, bytes) = (Vec::new(), 0);
            }
        }
        partition.flush()?;
        Ok(partition.size_bytes())
    }

    /// The segment files of processor `name`'s changelog, for a raw read.
    pub fn changelog_files(&self, name: &str) -> anyhow::Result<Vec<std::path::PathBuf>> {
        let partition = self.store.partition(&self.changelog(name).topic, 0)?;
        let mut files: Vec<_> = std::fs::read_dir(partition.dir())?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Restores processor `name`'s task from its changelog into empty
    /// state (the processor's state dropped first), as a task whose state
    /// was lost does; timed.
    pub fn restore_changelog(&self, name: &str) -> anyhow::Result<RestoreRun> {
        self.state.drop_processor(name)?;
        let mut state = TaskState::new(self.state.processor(name)?, TASK);
        let stats = PartitionStats::new("in", 0);
        let started = std::time::Instant::now();
        let restored = self
            .changelog(name)
            .restore(
                &mut state,
                &stats,
                &std::sync::atomic::AtomicBool::new(false),
            )
            .map_err(anyhow::Error::msg)?
            .ok_or_else(|| anyhow::anyhow!("the changelog of {name} is empty"))?;
        Ok(RestoreRun {
            records: restored.records,
            bytes: restored.bytes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Writes the pairs [`Scratch::fill_changelog`] wrote into empty state
    /// through the restore's own bulk writer, without the log: RocksDB's
    /// share of a restore.
    pub fn bulk_write(
        &self,
        name: &str,
        keys: u64,
        value_bytes: usize,
    ) -> anyhow::Result<RestoreRun> {
        self.state.drop_processor(name)?;
        let mut state = TaskState::new(self.state.processor(name)?, TASK);
        let started = std::time::Instant::now();
        let (mut value, mut bytes) = (Vec::new(), 0u64);
        let mut restorer = state.begin_restore()?;
        for i in 0..keys {
            let key = restore_pair(i, value_bytes, &mut value);
            bytes += (key.len() + value.len()) as u64;
            restorer.put(&key, Some(&value))?;
            if restorer.batch_bytes() >= 16 << 20 {
                restorer.write()?;
            }
        }
        restorer.write()?;
        drop(restorer);
        state.finish_restore(&TaskMeta::fresh().encode())?;
        Ok(RestoreRun {
            records: keys,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// RocksDB alone doing a count's reads and writes over processor
    /// `name`'s store `store` (each batch's store keys `batches`, user
    /// keys): one multi-get per batch, a put per record, a synced write
    /// every `commit_interval_ms`; no log, no plugin, no task cache. The
    /// floor the large-state figure is measured against. Returns seconds.
    pub fn rocksdb_floor(
        &self,
        name: &str,
        store: &str,
        batches: &[Vec<Vec<u8>>],
        commit_interval_ms: u64,
    ) -> anyhow::Result<f64> {
        let interval = std::time::Duration::from_millis(commit_interval_ms);
        let took = self
            .state
            .processor(name)?
            .read_modify_write_floor(TASK, store, batches, interval)?;
        Ok(took.as_secs_f64())
    }

    /// Seconds RocksDB alone takes to write, synced, each run of
    /// `records_per_commit` of `keys`' distinct keys (see
    /// `ProcessorState::commit_floor`).
    pub fn commit_floor(
        &self,
        name: &str,
        store: &str,
        keys: &[Vec<u8>],
        records_per_commit: usize,
    ) -> anyhow::Result<f64> {
        let took =
            self.state
                .processor(name)?
                .commit_floor(TASK, store, keys, records_per_commit)?;
        Ok(took.as_secs_f64())
    }

    fn changelog(&self, name: &str) -> super::stateful::Changelog {
        let topic = super::spec::changelog_topic(name);
        super::stateful::Changelog::new(self.store.clone(), topic, 0, 1)
    }
}

fn deployment(
    name: &str,
    limits: super::spec::Limits,
    stores: Vec<String>,
    guarantee: Guarantee,
    commit_interval_ms: Option<u64>,
) -> Arc<Deployment> {
    Arc::new(Deployment {
        name: name.into(),
        inputs: vec!["in".into()],
        outputs: vec!["out".into()],
        config: Vec::new(),
        on_error: "fail".into(),
        limits,
        wasm_sha256: String::new(),
        wasm_bytes: 0,
        artifact_sha256: None,
        deployed_at_ms: 0,
        paused: false,
        stores,
        guarantee,
        commit_interval_ms: commit_interval_ms.unwrap_or(super::spec::COMMIT_INTERVAL_MS_DEFAULT),
        idle_advance_ms: None,
        changelog: false,
        tables: Vec::new(),
    })
}

/// Forwards every record unchanged to the default output, natively, with
/// no state: a stand-in for a plugin where only the loop is measured or
/// tested.
pub struct ForwardAll;

impl ForwardAll {
    /// A factory of them.
    pub fn factory() -> Factory {
        Arc::new(|| Ok(Box::new(ForwardAll) as Box<dyn Invoke>))
    }
}

impl Invoke for ForwardAll {
    fn process(
        &mut self,
        batch: Batch<'_>,
        _task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        Ok((0..batch.records.len() as u32)
            .map(|source| Output {
                source,
                topic: None,
                payload: Payload::Forward,
            })
            .collect())
    }
}

/// A store of a scratch task's state, reached natively: the operations of
/// contract 0.2's `state` and `clock` imports on the [`TaskContext`] lent
/// to a call, for a native baseline (an `Invoke` written in Rust) that does
/// what a plugin does over the same RocksDB state.
#[derive(Debug, Clone)]
pub struct NativeStore {
    /// The store's key prefix in the task (what `store.open` hands a plugin).
    prefix: Vec<u8>,
}

impl NativeStore {
    /// Store `name` of the scratch task.
    pub fn open(name: &str) -> Self {
        Self {
            prefix: crate::state::store_prefix(TASK, name),
        }
    }

    /// `get-many`.
    pub fn get_many(
        &self,
        context: &mut TaskContext,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, InvokeError> {
        with_state(context, |state| state.get_many(&self.prefix, keys))
    }

    /// `get-many` as the host answers it: each key's value handed to
    /// `answer(index, value)` without a copy, not in order.
    pub fn get_many_with<'k>(
        &self,
        context: &mut TaskContext,
        keys: impl Iterator<Item = &'k [u8]>,
        answer: impl FnMut(usize, Option<&[u8]>),
    ) -> Result<(), InvokeError> {
        with_state(context, |state| {
            state.get_many_with(&self.prefix, keys, answer)
        })
    }

    /// `put`.
    pub fn put(
        &self,
        context: &mut TaskContext,
        key: &[u8],
        value: impl AsRef<[u8]>,
    ) -> Result<(), InvokeError> {
        with_state(context, |state| state.put(&self.prefix, key, value))
    }

    /// `delete`.
    pub fn delete(&self, context: &mut TaskContext, key: &[u8]) -> Result<(), InvokeError> {
        with_state(context, |state| state.delete(&self.prefix, key))
    }

    /// `scan`: the entries with `start <= key < end`, at most `limit`, and
    /// the key to go on from if there are more.
    pub fn scan(
        &self,
        context: &mut TaskContext,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, InvokeError> {
        with_state(context, |state| state.scan(&self.prefix, start, end, limit))
            .map(|page| (page.entries, page.next))
    }

    /// `delete-range`: how many entries there were.
    pub fn delete_range(
        &self,
        context: &mut TaskContext,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<u64, InvokeError> {
        with_state(context, |state| {
            state.delete_range(&self.prefix, start, end)
        })
    }

    /// `clear-range`.
    pub fn clear_range(
        &self,
        context: &mut TaskContext,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<(), InvokeError> {
        with_state(context, |state| state.clear_range(&self.prefix, start, end))
    }

    /// `clock.schedule` of an event-time timer.
    pub fn schedule(context: &mut TaskContext, key: &[u8], at: i64) -> Result<(), InvokeError> {
        with_state(context, |state| state.schedule(Domain::EventTime, key, at))
    }

    /// `clock.stream-time`.
    pub fn stream_time(context: &TaskContext) -> Option<i64> {
        context.stream_time
    }
}

/// A page of a scan: entries, and the key to go on from.
pub type ScanPage = (Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>);

/// Runs a state operation as the host imports do: a storage failure is
/// the broker's (the task stops), anything else traps the call.
fn with_state<T>(
    context: &mut TaskContext,
    operation: impl FnOnce(&mut TaskState) -> Result<T, StateError>,
) -> Result<T, InvokeError> {
    let result = match context.state.as_mut() {
        Some(state) => operation(state),
        None => Err(StateError::NoState),
    };
    result.map_err(|error| match error {
        StateError::Storage(_) => InvokeError::Host {
            message: error.to_string(),
        },
        StateError::CommitFirst { .. } => InvokeError::CommitFirst {
            message: error.to_string(),
        },
        _ => InvokeError::Trap {
            message: error.to_string(),
        },
    })
}

/// Committed reads of one processor's state (`ProcessorState::get_committed`,
/// what `GET /v1/processors/{name}/state/...` answers from).
#[derive(Debug, Clone)]
pub struct CommittedReader(ProcessorState);

impl CommittedReader {
    /// The committed value at `key` of store `store` in the scratch task.
    pub fn get(&self, store: &str, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.0.get_committed(TASK, store, key)?)
    }
}
