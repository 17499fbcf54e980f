//! One input partition of one processor: read a batch from the local log,
//! run it through the plugin instance, write the outputs through the append
//! path, wait until they are durable, then commit the input offset in the
//! processor's consumer group (at-least-once).
//!
//! A failed call is narrowed down to the record that caused it (the
//! plugin's `source` hint, else record by record); the error policy then
//! fails the partition at that record, skips it, or dead-letters it. A
//! trapped instance is thrown away and a fresh one instantiated.
//!
//! A stateful or exactly-once task (`stateful.rs` here, `processor::stateful`
//! for the commit protocol) stages its state per call, fires its timers
//! after each batch, writes its outputs in a transaction and commits every
//! `commit_interval_ms`, at a byte cap, or soon after it caught up (see
//! `processor::stateful` for when).

mod input;
mod stateful;
pub mod threads;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::host::{
    Batch, Factory, InputRecord, Invoke, InvokeError, Label, Output, OutputRecord, Payload,
    TaskContext,
};
use super::output::{OutRecord, Routed};
use super::spec::{Deployment, OnError, REPARTITION};
use super::status::{PartitionState, PartitionStats};
use crate::group::{GroupCoordinator, OffsetCommit};
use crate::log::{LogError, LogStore};
pub(crate) use input::Input;
#[cfg(test)]
pub(crate) use stateful::{BEHIND_BATCHES, TIMERS_WHILE_RECORDS_WAIT_MIN};

/// Everything a partition task needs, owned so it can move into a
/// blocking thread for each step.
pub struct PartitionTask {
    pub(crate) store: Arc<LogStore>,
    pub(crate) groups: Arc<GroupCoordinator>,
    factory: Factory,
    pub(crate) deployment: Arc<Deployment>,
    pub(crate) policy: OnError,
    pub(crate) label: Label,
    instance: Option<Box<dyn Invoke>>,
    /// The input partition being worked on.
    input: Input,
    /// A stateful task's other inputs: the same partition of its
    /// processor's other (co-partitioned) input topics, in deploy order
    /// after `input` (which trades places with one of them when the merge
    /// by timestamp picks it).
    others: Vec<Input>,
    /// Set at shutdown or removal: a step narrowing down a failure record
    /// by record gives up early (nothing of the batch is committed).
    pub(crate) abort: Arc<AtomicBool>,
    /// The task's state and clock, lent to the instance for each call.
    context: TaskContext,
    /// Stateful or exactly-once bookkeeping; `None` for a stateless
    /// at-least-once processor.
    stateful: Option<crate::processor::stateful::Stateful>,
    /// The processor's tables, brought up to date before each step.
    tables: Option<Arc<crate::processor::tables::Tables>>,
}

/// What a task's driver does next.
pub(crate) enum Readiness {
    /// Step.
    Work,
    /// Wait for one of these high watermarks to move (or a timer, or the
    /// reconcile interval).
    Wait(Vec<tokio::sync::watch::Receiver<i64>>),
}

/// Why a step stopped the partition.
#[derive(Debug)]
pub struct StepFailure {
    pub message: String,
    pub(crate) offset: Option<i64>,
    /// Already counted in the partition's errors (a record's error under
    /// the `fail` policy), as opposed to an infrastructure failure.
    pub(crate) recorded: bool,
}

impl StepFailure {
    fn new(message: impl Into<String>, offset: Option<i64>) -> Self {
        Self {
            message: message.into(),
            offset,
            recorded: false,
        }
    }
}

/// The failing record of a batch when the policy is `fail`.
struct StopAt {
    index: usize,
    message: String,
    /// Not a failure: the task's uncommitted state is full; commit, then
    /// go on from `index` (only stateful tasks).
    retry: bool,
}

/// One attempt's failure: which record (if known), why, and whether the
/// instance is spent.
struct Attempt {
    index: Option<usize>,
    message: String,
    trapped: bool,
    /// The broker failed under the call (state storage): stop the task.
    host: bool,
    /// The task must commit before the call is made again.
    commit_first: bool,
}

impl PartitionTask {
    pub(crate) fn new(
        store: Arc<LogStore>,
        groups: Arc<GroupCoordinator>,
        factory: Factory,
        deployment: Arc<Deployment>,
        stats: Arc<PartitionStats>,
        position: i64,
    ) -> Self {
        let label = label(&deployment, &stats);
        stats.committed_offset.store(position, Ordering::Relaxed);
        Self {
            store,
            groups,
            factory,
            policy: deployment.policy(),
            deployment,
            label,
            instance: None,
            input: Input::new(stats, position),
            others: Vec::new(),
            abort: Arc::new(AtomicBool::new(false)),
            context: TaskContext::default(),
            stateful: None,
            tables: None,
        }
    }

    /// Gives the task its processor's tables.
    pub(crate) fn with_tables(mut self, tables: Arc<crate::processor::tables::Tables>) -> Self {
        self.tables = Some(tables);
        self
    }

    /// Makes the task stateful (or exactly-once): `context` holds its
    /// state, `stateful` its commit bookkeeping.
    pub(crate) fn with_state(
        mut self,
        context: TaskContext,
        stateful: crate::processor::stateful::Stateful,
    ) -> Self {
        self.context = context;
        self.stateful = Some(stateful);
        self.show_last_commit();
        self
    }

    /// Adds the task's other inputs (a stateful task over several
    /// co-partitioned input topics): each input partition's status and
    /// committed position.
    pub(crate) fn with_other_inputs(mut self, others: Vec<(Arc<PartitionStats>, i64)>) -> Self {
        self.others = others
            .into_iter()
            .map(|(stats, position)| {
                stats.committed_offset.store(position, Ordering::Relaxed);
                Input::new(stats, position)
            })
            .collect();
        self
    }

    /// The task's inputs: the one being worked on first.
    pub(crate) fn inputs(&self) -> impl Iterator<Item = &Input> {
        std::iter::once(&self.input).chain(&self.others)
    }

    /// The status of each input partition.
    pub(crate) fn all_stats(&self) -> Vec<Arc<PartitionStats>> {
        self.inputs().map(|input| input.stats.clone()).collect()
    }

    /// The status of the input partition worked on last (where a failure
    /// is recorded).
    pub(crate) fn stats(&self) -> &Arc<PartitionStats> {
        &self.input.stats
    }

    /// The next offset to process in the input worked on last.
    pub fn position(&self) -> i64 {
        self.input.position
    }

    /// Whether the task has work now, and else what to wait on: the
    /// high watermarks of its inputs. Subscribed before looking, so a
    /// record appended in between still wakes the driver.
    pub(crate) fn readiness(&self) -> Readiness {
        let mut watermarks = Vec::new();
        for input in self.inputs() {
            let Ok(partition) = self
                .store
                .partition(&input.stats.topic, input.stats.partition)
            else {
                continue;
            };
            let watermark = partition.subscribe();
            if input.has_work(partition.watermarks()) {
                return Readiness::Work;
            }
            watermarks.push(watermark);
        }
        if self.timers_due() || self.commit_in_flight() {
            return Readiness::Work;
        }
        Readiness::Wait(watermarks)
    }

    /// Whether the task has work now (see [`Self::readiness`]).
    pub fn has_work(&self) -> bool {
        matches!(self.readiness(), Readiness::Work)
    }

    /// Forgets read-ahead and the instance, e.g. after a failure, so the
    /// next step starts again from the committed position.
    pub(crate) fn reset(&mut self) {
        self.input.rewind();
        self.others.iter_mut().for_each(Input::rewind);
        self.instance = None;
    }

    /// Processes one batch. Blocking: runs on a blocking thread.
    pub fn step(&mut self) -> Result<(), StepFailure> {
        let result = self.step_inner();
        if result.is_err() {
            self.abandon();
        }
        result
    }

    fn step_inner(&mut self) -> Result<(), StepFailure> {
        if self.stateful.as_ref().is_some_and(|s| !s.recovered) {
            self.recover()?;
        }
        if let Some(tables) = &self.tables {
            tables
                .catch_up()
                .map_err(|message| StepFailure::new(message, None))?;
        }
        if self.instance.is_none() {
            self.set_state(PartitionState::Starting);
            self.instance = Some(self.instantiate()?);
            self.set_state(PartitionState::Running);
        }
        if self.stateful.is_some() {
            return self.step_stateful();
        }
        self.fill()?;
        let records = self.take_batch();
        if records.is_empty() {
            // Nothing to process up to the high watermark (control records,
            // or offsets compaction removed): move the position past them,
            // or the task would keep finding "work" there.
            if self.input.fetch_position > self.input.position {
                self.commit(self.input.fetch_position)?;
            }
            return Ok(());
        }
        let stats = self.input.stats.clone();
        let deployment = self.deployment.clone();
        let batch = Batch {
            topic: deployment.batch_topic(&stats.topic),
            partition: self.input.stats.partition,
            records: &records,
        };
        let mut routed = Routed::default();
        let started = Instant::now();
        let stop = self.process_range(batch, 0, batch.records.len(), &mut routed)?;
        let elapsed = started.elapsed();
        PartitionStats::add(&self.input.stats.process_ns, elapsed.as_nanos() as u64);
        self.input.stats.batch_latency.observe(elapsed);
        let (processed, next) = match &stop {
            Some(stop) => (stop.index, batch.records[stop.index].offset),
            None => {
                let last = batch.records.last().expect("non-empty batch");
                (batch.records.len(), last.offset + 1)
            }
        };
        let out = routed.records;
        routed
            .write(&self.store)
            .map_err(|error| StepFailure::new(format!("writing outputs failed: {error}"), None))?;
        self.commit(next)?;
        PartitionStats::add(&self.input.stats.records_in, processed as u64);
        PartitionStats::add(&self.input.stats.records_out, out);
        PartitionStats::add(&self.input.stats.batches, 1);
        if let Some(instance) = &self.instance {
            self.input
                .stats
                .memory_bytes
                .store(instance.memory_bytes() as u64, Ordering::Relaxed);
        }
        match stop {
            Some(stop) if !stop.retry => {
                let offset = batch.records[stop.index].offset;
                Err(StepFailure {
                    message: stop.message,
                    offset: Some(offset),
                    recorded: true,
                })
            }
            _ => Ok(()),
        }
    }

    /// Takes the next batch of a stateless task's input (a stateful
    /// task's step takes its own, see `stateful.rs`).
    fn take_batch(&mut self) -> Vec<InputRecord> {
        self.input.take(&self.deployment.limits, None, None)
    }

    fn instantiate(&mut self) -> Result<Box<dyn Invoke>, StepFailure> {
        let mut instance = (self.factory)()
            .map_err(|error| StepFailure::new(error.message().to_string(), None))?;
        // Stopping the task (remove, redeploy, shutdown) ends its call.
        instance.interrupt_on(self.abort.clone());
        if let Some(stateful) = self.stateful.as_mut() {
            // Opened in `init`: shown now, recorded with the next commit.
            if stateful.note_windowed(instance.windowed_stores()) {
                self.publish();
            }
        }
        Ok(instance)
    }

    /// Reads the input being worked on until a batch's worth of records
    /// is waiting (or the log has no more).
    fn fill(&mut self) -> Result<(), StepFailure> {
        let stats = &self.input.stats;
        let partition = self
            .store
            .partition(&stats.topic, stats.partition)
            .map_err(|error| {
                StepFailure::new(format!("input partition unavailable: {error}"), None)
            })?;
        self.input
            .fill(&partition, &self.deployment.limits, &self.label.processor)
    }

    /// Processes `batch.records[start..end]`, routing outputs (and dead
    /// letters) into `routed` in input order. Returns the record to stop
    /// at when the policy is `fail`.
    fn process_range(
        &mut self,
        batch: Batch<'_>,
        start: usize,
        end: usize,
        routed: &mut Routed,
    ) -> Result<Option<StopAt>, StepFailure> {
        if start >= end {
            return Ok(None);
        }
        let part = Batch {
            records: &batch.records[start..end],
            ..batch
        };
        let failure = match self.attempt(part) {
            Ok(outputs) => {
                self.route(batch, start, outputs, routed)?;
                return Ok(None);
            }
            Err(failure) => failure,
        };
        if self.abort.load(Ordering::Relaxed) {
            return Err(StepFailure::new("interrupted: the task is stopping (remove, redeploy or shutdown); its uncommitted work is redone", None));
        }
        if failure.host {
            return Err(StepFailure::new(failure.message, None));
        }
        if failure.trapped {
            // Dropped first: its share of the broker-wide memory goes back
            // before the new one reserves its own.
            self.instance = None;
            self.instance = Some(self.instantiate()?);
        }
        if failure.commit_first {
            return Ok(Some(StopAt {
                index: start,
                message: failure.message,
                retry: true,
            }));
        }
        if end - start == 1 {
            return self.on_record_error(batch, start, &failure.message, routed);
        }
        match failure.index {
            Some(index) if index < end - start => {
                let index = start + index;
                if let Some(stop) = self.process_range(batch, start, index, routed)? {
                    return Ok(Some(stop));
                }
                if let Some(stop) = self.on_record_error(batch, index, &failure.message, routed)? {
                    return Ok(Some(stop));
                }
                self.process_range(batch, index + 1, end, routed)
            }
            _ => {
                for index in start..end {
                    if let Some(stop) = self.process_range(batch, index, index + 1, routed)? {
                        return Ok(Some(stop));
                    }
                }
                Ok(None)
            }
        }
    }

    /// One `process` call plus the contract and limit checks of its
    /// outputs; its state changes are kept only when it succeeds.
    fn attempt(&mut self, batch: Batch<'_>) -> Result<Vec<Output>, Attempt> {
        let late_dropped = self.context.late_dropped;
        if let Some(state) = self.context.state.as_mut() {
            state.savepoint();
        }
        let result = self.attempt_call(batch);
        if let Some(state) = self.context.state.as_mut() {
            match result {
                Ok(_) => state.release(),
                Err(_) => state.rollback(),
            }
        }
        if result.is_err() {
            self.context.late_dropped = late_dropped;
        }
        result
    }

    fn attempt_call(&mut self, batch: Batch<'_>) -> Result<Vec<Output>, Attempt> {
        let instance = self.instance.as_mut().expect("instance exists");
        let outputs = instance
            .process(batch, &mut self.context)
            .map_err(attempt_failure)?;
        self.check(batch, &outputs)?;
        Ok(outputs)
    }

    fn check(&self, batch: Batch<'_>, outputs: &[Output]) -> Result<(), Attempt> {
        let limits = &self.deployment.limits;
        let fail = |index: Option<usize>, message: String| Attempt {
            index,
            message,
            trapped: false,
            host: false,
            commit_first: false,
        };
        let mut previous = 0u32;
        let mut run = 0u64;
        let mut bytes = 0u64;
        for output in outputs {
            let source = output.source as usize;
            if source >= batch.records.len() || output.source < previous {
                return Err(fail(None, format!(
                    "the plugin broke the contract: output source {} is out of order or not in the batch of {} records",
                    output.source,
                    batch.records.len()
                )));
            }
            run = if output.source == previous {
                run + 1
            } else {
                1
            };
            previous = output.source;
            if run > limits.outputs_per_record_max {
                return Err(fail(Some(source), format!(
                    "output limit exceeded: the record produced more than {} outputs (outputs_per_record_max)",
                    limits.outputs_per_record_max
                )));
            }
            if let Some(topic) = &output.topic {
                let keyed = match &output.payload {
                    Payload::Forward => batch.records[source].key.is_some(),
                    Payload::Emit(record) => record.key.is_some(),
                };
                self.check_topic(topic, keyed)
                    .map_err(|message| fail(Some(source), message))?;
            }
            bytes += match &output.payload {
                Payload::Forward => {
                    let input = &batch.records[source];
                    input_bytes(input)
                }
                Payload::Emit(record) => output_bytes(record),
            };
            if bytes > limits.output_bytes_per_batch_max {
                let index = (batch.records.len() == 1).then_some(0);
                return Err(fail(index, format!(
                    "output limit exceeded: outputs of one batch passed {} bytes (output_bytes_per_batch_max)",
                    limits.output_bytes_per_batch_max
                )));
            }
        }
        Ok(())
    }

    /// Routes checked outputs of `batch.records[base..]` into `routed`.
    fn route(
        &self,
        batch: Batch<'_>,
        base: usize,
        outputs: Vec<Output>,
        routed: &mut Routed,
    ) -> Result<(), StepFailure> {
        for output in outputs {
            let input = &batch.records[base + output.source as usize];
            let topic = self.output_topic(output.topic.as_deref())?;
            let topic = topic.as_ref();
            let record = match output.payload {
                Payload::Forward => forwarded(input),
                Payload::Emit(record) => emitted(record, input.timestamp),
            };
            routed
                .push(&self.store, topic, batch.partition, record)
                .map_err(|error| {
                    StepFailure::new(format!("output topic {topic}: {error}"), None)
                })?;
        }
        Ok(())
    }

    /// Whether the plugin may write to `topic` (a record with a key when
    /// `keyed`): an output, or the repartition topic of a stateful
    /// processor.
    pub(super) fn check_topic(&self, topic: &str, keyed: bool) -> Result<(), String> {
        if topic == REPARTITION {
            if !self.deployment.is_stateful() {
                return Err(format!(
                    "the plugin wrote to {REPARTITION}: repartitioning needs a stateful processor \
                     (deploy with --store or --guarantee exactly-once)"
                ));
            }
            if !keyed {
                return Err(format!(
                    "the plugin wrote a record without a key to {REPARTITION} (the key picks the partition)"
                ));
            }
            return Ok(());
        }
        if self.deployment.outputs.iter().any(|t| t == topic) {
            return Ok(());
        }
        Err(format!(
            "the plugin wrote to topic {topic:?}, which is not an output of processor {} (outputs: {})",
            self.deployment.name,
            self.deployment.outputs.join(", ")
        ))
    }

    /// The topic an output goes to: the default output, a named one, or
    /// the processor's repartition topic (created on first use, with the
    /// input's partition count).
    pub(super) fn output_topic<'a>(
        &'a self,
        topic: Option<&'a str>,
    ) -> Result<Cow<'a, str>, StepFailure> {
        let Some(topic) = topic else {
            return Ok(Cow::Borrowed(&self.deployment.outputs[0]));
        };
        if topic != REPARTITION {
            return Ok(Cow::Borrowed(topic));
        }
        let name = self.deployment.repartition_topic();
        if self.store.topic(&name).is_none() {
            let partitions = self
                .store
                .topic(&self.deployment.inputs[0])
                .map_or(1, |t| t.partition_count());
            match self
                .store
                .create_topic(&name, partitions, Default::default())
            {
                Ok(_) => tracing::info!(processor = %self.deployment.name, topic = %name,
                    partitions, "created the processor's repartition topic"),
                // Another task of the processor created it first.
                Err(LogError::TopicExists(_)) => {}
                Err(error) => {
                    return Err(StepFailure::new(
                        format!("creating the repartition topic {name} failed: {error}"),
                        None,
                    ))
                }
            }
        }
        Ok(Cow::Owned(name))
    }

    /// Applies the error policy to `batch.records[index]`.
    fn on_record_error(
        &mut self,
        batch: Batch<'_>,
        index: usize,
        message: &str,
        routed: &mut Routed,
    ) -> Result<Option<StopAt>, StepFailure> {
        let record = &batch.records[index];
        self.input.stats.record_error(message, Some(record.offset));
        let (processor, topic, partition) = (&self.label.processor, &batch.topic, batch.partition);
        match &self.policy {
            OnError::Fail => {
                tracing::error!(%processor, %topic, partition, offset = record.offset, error = message,
                    "processor failed on a record; partition stopped (on_error=fail)");
                Ok(Some(StopAt {
                    retry: false,
                    index,
                    message: message.to_string(),
                }))
            }
            OnError::Skip => {
                tracing::warn!(%processor, %topic, partition, offset = record.offset, error = message,
                    "record skipped (on_error=skip)");
                PartitionStats::add(&self.input.stats.skipped, 1);
                Ok(None)
            }
            OnError::DeadLetter(dead_letter) => {
                tracing::warn!(%processor, %topic, partition, offset = record.offset, error = message,
                    dead_letter = %dead_letter, "record dead-lettered");
                let mut letter = forwarded(record);
                letter.headers.extend([
                    (
                        "sluice.error".to_string(),
                        Some(Bytes::from(message.to_string())),
                    ),
                    (
                        "sluice.processor".to_string(),
                        Some(Bytes::from(processor.to_string())),
                    ),
                    (
                        "sluice.source.topic".to_string(),
                        Some(Bytes::from(topic.to_string())),
                    ),
                    (
                        "sluice.source.partition".to_string(),
                        Some(Bytes::from(partition.to_string())),
                    ),
                    (
                        "sluice.source.offset".to_string(),
                        Some(Bytes::from(record.offset.to_string())),
                    ),
                ]);
                routed
                    .push(&self.store, dead_letter, partition, letter)
                    .map_err(|error| {
                        StepFailure::new(
                            format!("dead-letter topic {dead_letter}: {error}"),
                            Some(record.offset),
                        )
                    })?;
                routed.records -= 1;
                PartitionStats::add(&self.input.stats.dead_lettered, 1);
                Ok(None)
            }
        }
    }

    /// Commits `next` as the position of the input worked on, in the
    /// processor's consumer group.
    fn commit(&mut self, next: i64) -> Result<(), StepFailure> {
        let stats = &self.input.stats;
        self.commit_offsets(&[(stats.topic.as_str(), stats.partition, next)])?;
        self.input
            .stats
            .committed_offset
            .store(next, Ordering::Relaxed);
        self.input.position = next;
        Ok(())
    }

    /// Commits `(topic, partition, offset)`s in the processor's consumer
    /// group.
    fn commit_offsets(&self, offsets: &[(&str, i32, i64)]) -> Result<(), StepFailure> {
        let group = self.deployment.group();
        let commits = offsets
            .iter()
            .map(|&(topic, partition, offset)| OffsetCommit {
                topic: topic.to_string(),
                partition,
                offset,
                leader_epoch: -1,
                metadata: String::new(),
            })
            .collect();
        let results = self.groups.commit(&group, -1, "", commits);
        if let Some(Err(error)) = results.into_iter().find(Result::is_err) {
            return Err(StepFailure::new(
                format!("committing offsets in group {group} failed: {error}"),
                None,
            ));
        }
        Ok(())
    }

    /// Shows `state` in the status of each input partition.
    pub(crate) fn set_state(&self, state: PartitionState) {
        self.inputs().for_each(|input| input.stats.set_state(state));
    }
}

/// An `Invoke` error as an attempt's failure.
fn attempt_failure(error: InvokeError) -> Attempt {
    match error {
        InvokeError::Rejected { message, source } => Attempt {
            index: source.map(|s| s as usize),
            message,
            trapped: false,
            host: false,
            commit_first: false,
        },
        InvokeError::Trap { message } => Attempt {
            index: None,
            message,
            trapped: true,
            host: false,
            commit_first: false,
        },
        InvokeError::Host { message } => Attempt {
            index: None,
            message,
            trapped: true,
            host: true,
            commit_first: false,
        },
        InvokeError::CommitFirst { message } => Attempt {
            index: None,
            message,
            trapped: true,
            host: false,
            commit_first: true,
        },
    }
}

/// Who a partition's instance logs as.
pub(crate) fn label(deployment: &Deployment, stats: &PartitionStats) -> Label {
    Label {
        processor: deployment.name.as_str().into(),
        topic: stats.topic.as_str().into(),
        partition: stats.partition,
        task: deployment.task_id(&stats.topic, stats.partition),
        stores: deployment.stores.clone().into(),
        tables: deployment
            .tables
            .iter()
            .map(|table| table.store.clone())
            .collect(),
    }
}

/// Bytes of a record's key, value and headers (what the output limit
/// counts), for a forwarded input record.
fn input_bytes(input: &InputRecord) -> u64 {
    record_bytes(
        input.key.as_deref(),
        input.value.as_deref(),
        input
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref())),
    )
}

/// The same count for a record the plugin emitted.
fn output_bytes(record: &OutputRecord) -> u64 {
    record_bytes(
        record.key.as_deref(),
        record.value.as_deref(),
        record
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref())),
    )
}

fn record_bytes<'a>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> u64 {
    let len = |bytes: Option<&[u8]>| bytes.map_or(0, <[u8]>::len);
    let headers: usize = headers.map(|(key, value)| key.len() + len(value)).sum();
    (len(key) + len(value) + headers) as u64
}

/// A record the plugin emitted, as it goes out; `timestamp` when it gives
/// none (its input record's, or a timer's).
fn emitted(record: OutputRecord, timestamp: i64) -> OutRecord {
    OutRecord {
        key: record.key,
        value: record.value,
        headers: record
            .headers
            .into_iter()
            .map(|h| (h.key, h.value))
            .collect(),
        timestamp: record.timestamp.unwrap_or(timestamp),
    }
}

/// The input record as an output, unchanged (its buffers shared, not
/// copied).
fn forwarded(input: &InputRecord) -> OutRecord {
    OutRecord {
        key: input.key.clone(),
        value: input.value.clone(),
        headers: input
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect(),
        timestamp: input.timestamp,
    }
}
