//! A task for stateful processors on the host, under the broker's rules:
//!
//! 1. Only declared stores ([`Task::store`]) and tables ([`Task::table`])
//!    open; a table refuses writes (a trap).
//! 2. A call (`process` or `on_timer`) that fails, with an error or a panic
//!    (the host's trap), is rolled back: its store writes, timers and late
//!    counts are undone. An error comes back as a [`TestError`]; a panic is
//!    rolled back and then goes on unwinding (as before state existed, so
//!    `#[should_panic]` tests keep working).
//! 3. During a batch, stream time is the host's (the largest timestamp of
//!    the records before the batch) advanced record by record by the SDK;
//!    after a successful batch it becomes `max(old, batch's largest
//!    timestamp)`.
//! 4. After each successful batch the due event-time timers (`at <= stream
//!    time`) fire in `(at, key)` order through `on_timer`, removed as they
//!    fire, and again while that call scheduled more that are due; then the
//!    due processing-time timers (`at <=` the wall clock), which also fire
//!    when the test moves the wall clock ([`Harness::advance_wall_clock`]).
//!    A timer's output without a timestamp gets the timer's `at`; a forward
//!    is refused.
//! 5. [`count_late`](crate::clock::count_late) adds to
//!    [`Harness::late_dropped`].

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{resolve, Harness, Pairs, TestError, TestOutput};
use crate::clock::{Domain, Timer};
use crate::state::host::{self, TaskState};
use crate::state::KeyBytes;
use crate::{repartition, Batch, Instance, Outputs, Payload, ProcessError, Processor, Record};

/// How many batches back from `sluice.repartition` one `run` may feed: a
/// processor that re-keys what comes back would otherwise never return.
const REPARTITION_ROUNDS_MAX: usize = 16;

/// How many rounds of `on_timer` one batch may trigger: a processor that
/// keeps scheduling due timers would otherwise never return.
const TIMER_ROUNDS_MAX: usize = 10_000;

/// The deployment of a stateful processor under test: its stores, tables
/// and wall clock, then [`processor`](Task::processor) for the
/// [`Harness`].
///
/// ```
/// use sluice_sdk::testing::Task;
/// # use sluice_sdk::{Batch, NoConfig, Outputs, ProcessError, Processor, Result};
/// # struct Counter;
/// # impl Processor for Counter {
/// #     type Config = NoConfig;
/// #     fn init(_: NoConfig) -> Result<Self> { Ok(Counter) }
/// #     fn process(&mut self, batch: Batch, _: &mut Outputs) -> Result<(), ProcessError> {
/// #         let store = sluice_sdk::state::Store::open("counts")?;
/// #         for record in batch { store.add(record.key.as_deref().unwrap_or_default(), 1); }
/// #         Ok(())
/// #     }
/// # }
/// let mut harness = Task::new().store("counts").processor::<Counter>(&[]).unwrap();
/// harness.run(vec![sluice_sdk::Record::new("x").with_key("a")]).unwrap();
/// assert_eq!(harness.get("counts", b"a").as_deref(), Some(&b"1"[..]));
/// ```
#[derive(Debug, Default)]
pub struct Task {
    state: TaskState,
}

impl Task {
    /// A task with no store.
    pub fn new() -> Self {
        Self {
            state: TaskState {
                declared: Some(Default::default()),
                ..TaskState::default()
            },
        }
    }

    /// Declares store `name` (the deployment's `--store NAME`).
    pub fn store(mut self, name: &str) -> Self {
        if let Some(declared) = self.state.declared.as_mut() {
            declared.insert(name.to_owned());
        }
        self
    }

    /// Declares read-only table `name` holding `entries` (values as JSON),
    /// as the broker materialises a table topic.
    pub fn table<K: KeyBytes, V: Serialize>(
        self,
        name: &str,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let entries = entries.into_iter().map(|(key, value)| {
            let value = serde_json::to_vec(&value).expect("a table value serializes");
            (key.key_bytes().into_owned(), value)
        });
        self.table_raw(name, entries)
    }

    /// Declares read-only table `name` holding raw `entries`.
    pub fn table_raw(
        mut self,
        name: &str,
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Self {
        self.state.tables.insert(name.to_owned());
        self.state
            .stores
            .entry(name.to_owned())
            .or_default()
            .extend(entries);
        self
    }

    /// Starts the wall clock at `ms` (default 0).
    pub fn wall_clock_ms(mut self, ms: i64) -> Self {
        self.state.wall_clock_ms = ms;
        self
    }

    /// The [`Processor`] `P` deployed in this task with `config`: `init`
    /// runs with the task's stores.
    pub fn processor<P: Processor>(self, config: Pairs<'_>) -> Result<Harness, TestError> {
        let previous = host::replace(self.state);
        let instance =
            panic::catch_unwind(AssertUnwindSafe(|| Instance::processor::<P, _, _>(config)));
        let state = host::replace(previous);
        let instance = instance.unwrap_or_else(|panic| panic::resume_unwind(panic));
        let mut harness = Harness::new(instance)?;
        harness.task = state;
        Ok(harness)
    }
}

impl Harness {
    /// Runs one `process` or `on_timer` call with the task installed: a
    /// failure or panic restores the state from before the call (a panic
    /// then unwinds on).
    fn call(
        &mut self,
        run: impl FnOnce(&mut Instance, &mut Outputs) -> Result<(), ProcessError>,
    ) -> Result<Outputs, TestError> {
        let snapshot = self.task.clone();
        let previous = host::replace(std::mem::take(&mut self.task));
        let mut outputs = Outputs::default();
        let result =
            panic::catch_unwind(AssertUnwindSafe(|| run(&mut self.instance, &mut outputs)));
        self.task = host::replace(previous);
        match result {
            Ok(Ok(())) => Ok(outputs),
            Ok(Err(error)) => {
                self.roll_back(snapshot);
                Err(TestError::Process(error))
            }
            Err(panic) => {
                self.roll_back(snapshot);
                panic::resume_unwind(panic)
            }
        }
    }

    /// Puts the task back as it was before a failed call, except that a
    /// store opened as windowed stays so (the broker's instance keeps the
    /// name).
    fn roll_back(&mut self, snapshot: TaskState) {
        let windowed = std::mem::take(&mut self.task.windowed);
        self.task = snapshot;
        self.task.windowed.extend(windowed);
    }

    /// Runs one batch of `records` (their topic and partition are set to
    /// the harness's; offsets and timestamps are kept as given), then, as
    /// the broker does, advances stream time and fires the due timers (see
    /// [`Task`]). Returns the batch's outputs followed by the timers'
    /// ([`TestOutput::timer`] tells them apart). On a failing `process`
    /// nothing of the batch is kept; on a failing `on_timer` the batch is
    /// kept and the timers stay due.
    ///
    /// Outputs to [`repartition::TOPIC`] are not returned: as the broker
    /// does, they come back to the processor as a later batch from that
    /// topic, run in the repartition topic's task (the harness has one:
    /// every key hashes to it), which has its own stores, stream time and
    /// timers (see [`in_repartition_task`](Self::in_repartition_task)).
    /// That batch's outputs are returned after the first batch's, and so on
    /// while outputs go there. Their offsets count up from 0 across the
    /// harness's life; a failure in a later batch leaves the earlier ones
    /// done (they are separate transactions in the broker too).
    pub fn run(&mut self, records: Vec<Record>) -> Result<Vec<TestOutput>, TestError> {
        let topic = self.topic.clone();
        let outputs = self.run_batch(&topic, records)?;
        self.feed_back(outputs)
    }

    /// Runs `f` with the repartition topic's task as this harness's task:
    /// `get`, `entries`, `stream_time`, `timers`, `late_dropped` and the
    /// rest then read that task's. It is created on first use, deployed
    /// like this one (the same stores, empty, and the same tables).
    pub fn in_repartition_task<R>(&mut self, f: impl FnOnce(&mut Harness) -> R) -> R {
        let mut other = match self.repartition_task.take() {
            Some(task) => task,
            None => TaskState {
                declared: self.task.declared.clone(),
                tables: self.task.tables.clone(),
                // Its instance's `init` opens the same stores so.
                windowed: self.task.windowed.clone(),
                stores: (self.task.stores.iter())
                    .filter(|(name, _)| self.task.tables.contains(*name))
                    .map(|(name, entries)| (name.clone(), entries.clone()))
                    .collect(),
                ..TaskState::default()
            },
        };
        other.wall_clock_ms = self.task.wall_clock_ms;
        let own = std::mem::replace(&mut self.task, other);
        let result = f(self);
        self.repartition_task = Some(std::mem::replace(&mut self.task, own));
        result
    }

    /// `outputs` without those to [`repartition::TOPIC`], which are run as
    /// batches of the repartition task, whose outputs are handled alike.
    fn feed_back(&mut self, mut outputs: Vec<TestOutput>) -> Result<Vec<TestOutput>, TestError> {
        let mut written = Vec::with_capacity(outputs.len());
        for _ in 0..REPARTITION_ROUNDS_MAX {
            let (back, kept): (Vec<_>, Vec<_>) = outputs
                .into_iter()
                .partition(|output| output.topic.as_deref() == Some(repartition::TOPIC));
            written.extend(kept);
            if back.is_empty() {
                return Ok(written);
            }
            let records = back
                .into_iter()
                .map(|output| self.repartitioned(output))
                .collect::<Result<Vec<_>, _>>()?;
            outputs =
                self.in_repartition_task(|task| task.run_batch(repartition::TOPIC, records))?;
        }
        Err(TestError::Process(ProcessError::new(format!(
            "records still written to {} after {REPARTITION_ROUNDS_MAX} rounds",
            repartition::TOPIC
        ))))
    }

    /// The record the repartition topic hands back for `output`.
    fn repartitioned(&mut self, output: TestOutput) -> Result<Record, TestError> {
        let Some(key) = output.key else {
            return Err(TestError::Process(ProcessError::at(
                output.source,
                format!("an output to {} needs a key", repartition::TOPIC),
            )));
        };
        let offset = self.repartition_offset;
        self.repartition_offset += 1;
        Ok(Record {
            key: Some(key),
            value: output.value,
            headers: output.headers,
            timestamp: output.timestamp,
            offset,
            ..Record::default()
        })
    }

    /// One batch from `topic`, and the timers it makes due.
    fn run_batch(
        &mut self,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Vec<TestOutput>, TestError> {
        let inputs = records.clone();
        let batch = Batch::new(topic, self.partition, records);
        let outputs = self.call(|instance, outputs| {
            instance.process(batch, outputs)?;
            outputs.refusal(false).map_or(Ok(()), Err)
        })?;
        let pairs = outputs.into_pairs().map_err(TestError::Process)?;
        let mut resolved = pairs
            .into_iter()
            .map(|(source, output)| resolve(&inputs, source, output))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(batch_max) = inputs.iter().map(|record| record.timestamp).max() {
            let stream_time = self
                .task
                .stream_time
                .map_or(batch_max, |old| old.max(batch_max));
            self.task.stream_time = Some(stream_time);
        }
        resolved.extend(self.fire_due()?);
        Ok(resolved)
    }

    /// Fires due event-time timers, then due processing-time timers, round
    /// after round while any is due.
    fn fire_due(&mut self) -> Result<Vec<TestOutput>, TestError> {
        let mut fired = Vec::new();
        for _ in 0..TIMER_ROUNDS_MAX {
            let due = self.due(Domain::EventTime);
            let due = if due.is_empty() {
                self.due(Domain::ProcessingTime)
            } else {
                due
            };
            if due.is_empty() {
                return Ok(fired);
            }
            fired.extend(self.fire(due)?);
        }
        Err(TestError::Process(ProcessError::new(format!(
            "timers still due after {TIMER_ROUNDS_MAX} rounds of on_timer"
        ))))
    }

    /// The due timers of `domain`, in `(at, key)` order.
    fn due(&self, domain: Domain) -> Vec<Timer> {
        let now = match domain {
            Domain::EventTime => self.task.stream_time,
            Domain::ProcessingTime => Some(self.task.wall_clock_ms),
        };
        let Some(now) = now else {
            return Vec::new();
        };
        self.task
            .timers
            .iter()
            .filter(|(of, at, _)| *of == domain && *at <= now)
            .map(|(domain, at, key)| Timer {
                domain: *domain,
                key: key.clone(),
                at: *at,
            })
            .collect()
    }

    /// One `on_timer` call with `due`, which are removed in the same call
    /// (and restored if it fails).
    fn fire(&mut self, due: Vec<Timer>) -> Result<Vec<TestOutput>, TestError> {
        let timers = due.clone();
        let outputs = self.call(|instance, outputs| {
            host::with(|task| {
                for timer in &due {
                    task.timers
                        .remove(&(timer.domain, timer.at, timer.key.clone()));
                }
            });
            instance.on_timer(due, outputs)?;
            outputs.refusal(true).map_or(Ok(()), Err)
        })?;
        let entries = outputs.into_timer_entries().map_err(TestError::Process)?;
        entries
            .into_iter()
            .map(|entry| {
                let timer = usize::try_from(entry.source)
                    .ok()
                    .and_then(|index| timers.get(index))
                    .ok_or_else(|| {
                        TestError::Process(ProcessError::new(format!(
                            "timer output source {} is past the end of {} timers",
                            entry.source,
                            timers.len()
                        )))
                    })?;
                let Payload::Emit(record) = entry.payload else {
                    unreachable!("into_timer_entries refuses forwards");
                };
                Ok(TestOutput {
                    source: entry.source,
                    topic: entry.topic,
                    forwarded: false,
                    key: record.key,
                    value: record.value,
                    headers: record.headers,
                    timestamp: record.timestamp.unwrap_or(timer.at),
                    timer: Some(timer.clone()),
                })
            })
            .collect()
    }

    /// Moves the wall clock forward by `ms` and fires the processing-time
    /// timers it reached (as the broker does while the input is idle).
    pub fn advance_wall_clock(&mut self, ms: i64) -> Result<Vec<TestOutput>, TestError> {
        self.task.wall_clock_ms = self.task.wall_clock_ms.saturating_add(ms);
        let mut fired = self.fire_due()?;
        if self.repartition_task.is_some() {
            fired.extend(self.in_repartition_task(Harness::fire_due)?);
        }
        self.feed_back(fired)
    }

    /// The wall clock (milliseconds since the Unix epoch).
    pub fn wall_clock_ms(&self) -> i64 {
        self.task.wall_clock_ms
    }

    /// The task's stream time: the largest timestamp of the batches run.
    pub fn stream_time(&self) -> Option<i64> {
        self.task.stream_time
    }

    /// How many records the processor counted as late.
    pub fn late_dropped(&self) -> u64 {
        self.task.late_dropped
    }

    /// The windows open: the entries of the stores opened as windowed
    /// ([`Store::open_windowed`](crate::state::Store::open_windowed), as
    /// the SDK's windows do), as the broker's status counts them
    /// (`open_windows`); `None` when none was opened.
    pub fn open_windows(&self) -> Option<u64> {
        if self.task.windowed.is_empty() {
            return None;
        }
        let entries = self
            .task
            .windowed
            .iter()
            .filter_map(|name| self.task.stores.get(name));
        Some(entries.map(|store| store.len() as u64).sum())
    }

    /// The scheduled timers, by domain, then `(at, key)`.
    pub fn timers(&self) -> Vec<Timer> {
        self.task
            .timers
            .iter()
            .map(|(domain, at, key)| Timer {
                domain: *domain,
                key: key.clone(),
                at: *at,
            })
            .collect()
    }

    /// Sets `key` of table `name` to `value` (JSON), as a record of the
    /// table's topic does between two batches.
    pub fn table_put<K: KeyBytes, V: Serialize>(&mut self, name: &str, key: K, value: V) {
        assert!(self.task.tables.contains(name), "{name} is not a table");
        let value = serde_json::to_vec(&value).expect("a table value serializes");
        let key = key.key_bytes().into_owned();
        // Every task reads the whole table.
        for task in std::iter::once(&mut self.task).chain(self.repartition_task.as_mut()) {
            let entries = task.stores.entry(name.to_owned()).or_default();
            entries.insert(key.clone(), value.clone());
        }
    }

    /// Removes `key` from table `name`, as a tombstone on the table's topic
    /// does between two batches.
    pub fn table_delete<K: KeyBytes>(&mut self, name: &str, key: K) {
        assert!(self.task.tables.contains(name), "{name} is not a table");
        for task in std::iter::once(&mut self.task).chain(self.repartition_task.as_mut()) {
            if let Some(entries) = task.stores.get_mut(name) {
                entries.remove(key.key_bytes().as_ref());
            }
        }
    }

    /// Store `name`'s entries.
    pub fn entries(&self, name: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.task.stores.get(name).cloned().unwrap_or_default()
    }

    /// The raw value at `key` of store `name`.
    pub fn get(&self, name: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.task.stores.get(name)?.get(key).cloned()
    }

    /// The value at `key` of store `name`, parsed as JSON.
    pub fn get_json<V: DeserializeOwned>(&self, name: &str, key: &[u8]) -> Option<V> {
        let value = self.get(name, key)?;
        Some(serde_json::from_slice(&value).expect("the stored value is JSON"))
    }
}

#[cfg(test)]
mod tests;
