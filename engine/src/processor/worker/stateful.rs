//! The stateful side of a partition task: recovery at start, stream time,
//! timers after each batch, outputs into the task's transaction, and the
//! commit (see `processor::stateful` for the protocol).

use std::sync::atomic::Ordering;
use std::time::Duration;

mod timers;

#[cfg(test)]
pub(crate) use timers::{BEHIND_BATCHES, TIMERS_WHILE_RECORDS_WAIT_MIN};

use super::{Input, PartitionTask, StepFailure, StopAt};
use crate::processor::host::{Batch, Domain, InputRecord};
use crate::processor::output::Routed;
use crate::processor::stateful::{InputMeta, InputStart, Landing};
use crate::processor::status::{now_ms, PartitionStats};

/// How often a task reading its processor's repartition topic deletes the
/// records it has committed.
const PURGE_INTERVAL: Duration = Duration::from_secs(10);

/// Where a batch stopped: at a record the error policy failed on
/// (`retry: false`), or where the task must commit before it goes on.
pub(super) struct Stop {
    offset: i64,
    message: String,
    retry: bool,
}

impl PartitionTask {
    /// The task's state (a stateful task always has one).
    fn state(&self) -> &crate::state::TaskState {
        self.context
            .state
            .as_ref()
            .expect("a stateful task has state")
    }

    fn state_mut(&mut self) -> &mut crate::state::TaskState {
        self.context
            .state
            .as_mut()
            .expect("a stateful task has state")
    }

    /// Runs recovery: the positions, stream time and epoch of the last
    /// commit, and the transactions a crash left open ended.
    pub(super) fn recover(&mut self) -> Result<(), StepFailure> {
        let outputs = self.deployment.write_topics();
        // (topic, first input, position, log start) of each input.
        let known: Vec<(String, bool, i64, i64)> = self
            .inputs()
            .map(|input| {
                let stats = &input.stats;
                let log_start = self
                    .store
                    .partition(&stats.topic, stats.partition)
                    .map_or(0, |p| p.log_start_offset());
                let first = self.is_first_input(&stats.topic);
                (stats.topic.clone(), first, input.position, log_start)
            })
            .collect();
        let starts: Vec<InputStart<'_>> = known
            .iter()
            .map(|(topic, first, position, log_start)| InputStart {
                topic,
                first: *first,
                position: *position,
                log_start: *log_start,
            })
            .collect();
        let stateful = self.stateful.as_mut().expect("a stateful task");
        let state = self
            .context
            .state
            .as_mut()
            .expect("a stateful task has state");
        let restored = stateful
            .restore(state, &self.input.stats, &self.abort)
            .map_err(|message| StepFailure::new(message, None))?;
        stateful
            .recover(state, &self.store, &outputs, &starts)
            .map_err(|message| StepFailure::new(message, None))?;
        // The windowed stores: those still declared, and those an instance
        // kept across a failed step opened since the last commit.
        let declared = &self.deployment.stores;
        stateful
            .meta
            .windowed
            .retain(|name| declared.contains(name));
        if let Some(instance) = &self.instance {
            stateful.note_windowed(instance.windowed_stores());
        }
        let recovered = stateful.meta.inputs.clone();
        for ((input, meta), (_, _, _, log_start)) in inputs_mut(&mut self.input, &mut self.others)
            .zip(recovered)
            .zip(known)
        {
            input.position = meta.position;
            input.rewind();
            input.time = meta.time;
            if let Some(until) = meta.rebuild_until {
                let mut message = format!(
                    "the task's state is missing (its folder was deleted or lost): rebuilding it \
                     from the input, offsets {} to {until}, without writing their outputs again",
                    meta.position
                );
                if log_start > 0 {
                    message.push_str(&format!(
                        "; the input below offset {log_start} is deleted, so the rebuilt state lacks it"
                    ));
                }
                tracing::warn!(processor = %self.label.processor, topic = %input.stats.topic,
                    partition = input.stats.partition, "{message}");
                input.stats.record_notice(&message, Some(meta.position));
            }
        }
        self.context.stream_time = stateful.meta.stream_time;
        if let Some(restored) = restored {
            self.restored_notice(&restored);
        }
        self.context.late_dropped = 0;
        self.publish();
        self.refresh_timers();
        Ok(())
    }

    /// Says in the log and the status that the state came back from the
    /// changelog.
    fn restored_notice(&self, restored: &crate::processor::stateful::Restored) {
        let position = self.input.position;
        let changelog = self.stateful.as_ref().and_then(|s| s.changelog.as_ref());
        let Some(changelog) = changelog else { return };
        let message = format!(
            "the task's state was missing: restored it from the changelog {}/{} \
             ({} records, {} bytes, offsets {} to {}, in {} ms); resuming at input offset {position}",
            changelog.topic,
            changelog.partition,
            restored.records,
            restored.bytes,
            restored.offsets.0,
            restored.offsets.1,
            restored.elapsed_ms
        );
        tracing::warn!(processor = %self.label.processor, topic = %self.input.stats.topic,
            partition = self.input.stats.partition, "{message}");
        self.input.stats.record_notice(&message, Some(position));
    }

    /// One step of a stateful task: batches of its inputs merged by
    /// timestamp, up to a batch's worth of records (possibly none: timers
    /// and idle time still move).
    pub(super) fn step_stateful(&mut self) -> Result<(), StepFailure> {
        self.land_commit(false)?;
        self.fill_all()?;
        let mut routed = Routed::default();
        let mut stop = None;
        // One batch's worth of records and bytes per step, over all inputs.
        let mut budget = self.deployment.limits.batch_records_max;
        let mut bytes_budget = self.deployment.limits.batch_bytes_max;
        let mut moved = self.skip_gaps();
        // Rebuilding lost state: outputs were written the first time, the
        // timers' too: those of a step that processed a rebuilding batch,
        // or none while an input is rebuilding.
        let idle_rebuilding = self
            .inputs()
            .any(|input| self.rebuilding_until(input).is_some());
        let (mut ran, mut rebuilt) = (false, false);
        let mut processed = 0;
        while budget > 0 && bytes_budget > 0 {
            let Some(after) = self.next_input() else {
                break;
            };
            let until = self.rebuilding();
            let mut limits = self.deployment.limits;
            limits.batch_records_max = budget;
            limits.batch_bytes_max = bytes_budget;
            let records = self.input.take(&limits, until, after);
            if records.is_empty() {
                break;
            }
            budget = budget.saturating_sub(records.len() as u64);
            processed += records.len();
            let bytes: u64 = records.iter().map(super::input_bytes).sum();
            bytes_budget = bytes_budget.saturating_sub(bytes);
            moved = true;
            ran = true;
            rebuilt = until.is_some();
            // A batch rebuilding lost state is a step of its own.
            if until.is_some() {
                stop = self.process_records(&records, &mut Routed::default())?;
            } else {
                let before = routed.records;
                stop = self.process_records(&records, &mut routed)?;
                PartitionStats::add(&self.input.stats.records_out, routed.records - before);
            }
            if stop.is_some() || rebuilt || self.others.is_empty() {
                break;
            }
        }
        let rebuilding = rebuilt || (!ran && idle_rebuilding);
        if !moved {
            self.advance_idle();
        }
        if stop.is_none() && rebuilding {
            self.fire_timers(&mut Routed::default(), processed)?;
        } else if stop.is_none() {
            let before = routed.records;
            self.fire_timers(&mut routed, processed)?;
            PartitionStats::add(&self.input.stats.records_out, routed.records - before);
        }
        let out = routed.records;
        self.write_outputs(routed)?;
        let state = self.state();
        if moved || out > 0 || state.has_staged() || self.context.late_dropped > 0 {
            self.stateful.as_mut().expect("a stateful task").touch();
        }
        self.commit_if_due(stop.is_some())?;
        self.refresh_timers();
        if let Some(instance) = &self.instance {
            self.input
                .stats
                .memory_bytes
                .store(instance.memory_bytes() as u64, Ordering::Relaxed);
        }
        match stop {
            Some(Stop {
                offset,
                message,
                retry: false,
            }) => Err(StepFailure {
                message,
                offset: Some(offset),
                recorded: true,
            }),
            _ => Ok(()),
        }
    }

    /// Processes one batch of the input being worked on; moves its
    /// position and time. Returns where and why the policy stopped it, or
    /// where the task must commit before it goes on.
    fn process_records(
        &mut self,
        records: &[InputRecord],
        routed: &mut Routed,
    ) -> Result<Option<Stop>, StepFailure> {
        let stats = self.input.stats.clone();
        let deployment = self.deployment.clone();
        let batch = Batch {
            topic: deployment.batch_topic(&stats.topic),
            partition: stats.partition,
            records,
        };
        let started = std::time::Instant::now();
        let stop = self.process_range(batch, 0, records.len(), routed)?;
        let elapsed = started.elapsed();
        PartitionStats::add(&stats.process_ns, elapsed.as_nanos() as u64);
        stats.batch_latency.observe(elapsed);
        let processed = stop.as_ref().map_or(records.len(), |s: &StopAt| s.index);
        self.input.position = match &stop {
            Some(stop) => records[stop.index].offset,
            None => records.last().expect("non-empty").offset + 1,
        };
        if stop.as_ref().is_some_and(|stop| stop.retry) {
            // The rest of the batch is read again after the commit.
            self.input.rewind();
        }
        let max = records[..processed].iter().map(|r| r.timestamp).max();
        if let Some(max) = max {
            self.input.time = Some(self.input.time.map_or(max, |t| t.max(max)));
        }
        self.advance_stream_time(true);
        PartitionStats::add(&stats.records_in, processed as u64);
        PartitionStats::add(&stats.batches, 1);
        Ok(stop.map(|stop| Stop {
            offset: records[stop.index].offset,
            message: stop.message,
            retry: stop.retry,
        }))
    }

    /// Reads every input until a batch's worth of records waits in each
    /// (or its log has no more).
    fn fill_all(&mut self) -> Result<(), StepFailure> {
        let limits = self.deployment.limits;
        for input in inputs_mut(&mut self.input, &mut self.others) {
            let partition = self
                .store
                .partition(&input.stats.topic, input.stats.partition)
                .map_err(|error| {
                    StepFailure::new(format!("input partition unavailable: {error}"), None)
                })?;
            input.fill(&partition, &limits, &self.label.processor)?;
        }
        Ok(())
    }

    /// Moves past what a read skipped (control records, or a gap up to the
    /// LSO) in inputs with nothing else to process. Whether any moved.
    fn skip_gaps(&mut self) -> bool {
        let mut moved = false;
        for input in inputs_mut(&mut self.input, &mut self.others) {
            if input.pending.is_empty() && input.fetch_position > input.position {
                input.position = input.fetch_position;
                moved = true;
            }
        }
        moved
    }

    /// Picks the input whose next record is the earliest (ties: deploy
    /// order) as the one to work on, and returns up to which timestamp it
    /// may go before another input's next record is earlier (`None`: no
    /// bound), or `None` when no input has a record waiting.
    fn next_input(&mut self) -> Option<Option<i64>> {
        let heads: Vec<Option<i64>> = self.inputs().map(Input::head_timestamp).collect();
        let (index, _) = heads
            .iter()
            .enumerate()
            .filter_map(|(index, head)| head.map(|head| (index, head)))
            .min_by_key(|&(index, head)| (head, index))?;
        if index > 0 {
            std::mem::swap(&mut self.input, &mut self.others[index - 1]);
        }
        let after = self.others.iter().filter_map(Input::head_timestamp).min();
        Some(after)
    }

    /// Whether `topic` is the task's first input: what a commit record
    /// written before tasks had several inputs (version 1) is about.
    fn is_first_input(&self, topic: &str) -> bool {
        self.others.is_empty() || self.deployment.inputs.first().is_some_and(|t| t == topic)
    }

    /// The offset up to which the input being worked on is rebuilding
    /// lost state, if it is.
    fn rebuilding(&self) -> Option<i64> {
        self.rebuilding_until(&self.input)
    }

    /// The offset up to which `input` is rebuilding lost state, if it is.
    fn rebuilding_until(&self, input: &Input) -> Option<i64> {
        self.stateful
            .as_ref()
            .and_then(|s| s.rebuilding_until(&input.stats.topic, input.position))
    }

    /// Commits when the work is due: stopped, past the commit interval or
    /// a byte cap, or caught up with its last commit old enough
    /// (`Stateful::caught_up_commit_in`). A task with more input waiting
    /// goes on while the commit's state write runs on a commit thread; one
    /// caught up or stopped waits for it (and for one in flight), so that
    /// nothing is left in flight while it waits for input.
    fn commit_if_due(&mut self, stopped: bool) -> Result<(), StepFailure> {
        let caught_up = self.inputs().all(Input::caught_up);
        let state = self.state();
        let stateful = self.stateful.as_ref().expect("a stateful task");
        let paced = caught_up && stateful.caught_up_commit_in() == Some(Duration::ZERO);
        let due = stateful.dirty_since.is_some()
            && (paced || stopped || stateful.commit_due(state, state.commit_bytes_max()));
        if due {
            self.start_commit()?;
        }
        if caught_up || stopped {
            self.land_commit(true)?;
        }
        Ok(())
    }

    /// Stream time after the inputs' times moved: the smallest of them,
    /// never back. An input that has not had a record yet does not hold
    /// it back, nor (with idle advance on) one that is caught up and has
    /// been quiet for the idle advance time. `arrived`: records were just
    /// processed (the idle wait starts again).
    fn advance_stream_time(&mut self, arrived: bool) {
        let idle_after = self.stateful.as_ref().and_then(|s| s.idle.idle_advance());
        let quiet = |input: &Input| {
            idle_after
                .is_some_and(|after| input.caught_up() && input.last_record_at.elapsed() >= after)
        };
        let Some(min) = self
            .inputs()
            .filter(|input| !quiet(input))
            .filter_map(|input| input.time)
            .min()
        else {
            return;
        };
        let stream_time = self.context.stream_time.map_or(min, |t| t.max(min));
        let moved = self.context.stream_time != Some(stream_time);
        self.context.stream_time = Some(stream_time);
        if let Some(stateful) = self.stateful.as_mut().filter(|_| arrived || moved) {
            stateful.idle.reset(Some(stream_time));
        }
    }

    /// Idle advance: stream time from the wall clock while input is idle.
    fn advance_idle(&mut self) {
        self.advance_stream_time(false);
        let Some(advanced) = self.stateful.as_ref().and_then(|s| s.idle.advanced()) else {
            return;
        };
        if self.context.stream_time.is_none_or(|t| advanced > t) {
            self.context.stream_time = Some(advanced);
        }
    }

    fn write_outputs(&mut self, routed: Routed) -> Result<(), StepFailure> {
        if routed.is_empty() {
            return Ok(());
        }
        let commit_bytes_max = self.state().commit_bytes_max();
        let stateful = self.stateful.as_mut().expect("a stateful task");
        if stateful.exactly_once && stateful.commit_in_flight() {
            if stateful.hold(routed, commit_bytes_max) {
                self.land_commit(true)?;
            }
            return Ok(());
        }
        let written = if stateful.exactly_once {
            stateful.transaction.write(&self.store, routed)
        } else {
            stateful.transaction.write_plain(&self.store, routed)
        };
        written.map_err(|error| StepFailure::new(format!("writing outputs failed: {error}"), None))
    }

    /// The commit: outputs durable, state and positions in one RocksDB
    /// write, markers, then the group offsets mirrored.
    pub(super) fn commit_stateful(&mut self) -> Result<(), StepFailure> {
        self.start_commit()?;
        self.land_commit(true)
    }

    /// The commit up to its state write, handed to a commit thread (after
    /// the one in flight, if any, landed).
    fn start_commit(&mut self) -> Result<(), StepFailure> {
        self.land_commit(true)?;
        // The input the state was computed from is durable before the
        // state is: a power cut must not leave state counting records the
        // input log no longer has.
        for input in self.inputs() {
            self.store
                .partition(&input.stats.topic, input.stats.partition)
                .and_then(|partition| partition.make_durable(input.position))
                .map_err(|error| {
                    StepFailure::new(format!("making the input durable failed: {error}"), None)
                })?;
        }
        let mut positions: Vec<InputMeta> = self
            .inputs()
            .map(|input| InputMeta {
                topic: input.stats.topic.clone(),
                position: input.position,
                time: input.time,
                rebuild_until: None,
            })
            .collect();
        // In deploy order, as recovery lists them.
        positions.sort_by_key(|input| {
            self.deployment
                .inputs
                .iter()
                .position(|t| *t == input.topic)
        });
        let stateful = self.stateful.as_mut().expect("a stateful task");
        let state = self
            .context
            .state
            .as_mut()
            .expect("a stateful task has state");
        let late_dropped = std::mem::take(&mut self.context.late_dropped);
        // A store opened as windowed after `init`.
        if let Some(instance) = &self.instance {
            stateful.note_windowed(instance.windowed_stores());
        }
        stateful
            .commit_start(state, positions, self.context.stream_time, late_dropped)
            .map_err(|message| StepFailure::new(message, None))
    }

    /// The commit in flight, if it is written (`wait`: once it is): its
    /// markers, then what follows a commit (status, purge, the consumer
    /// group's mirror of the positions) and the outputs held meanwhile.
    fn land_commit(&mut self, wait: bool) -> Result<(), StepFailure> {
        let (Some(stateful), Some(state)) = (self.stateful.as_mut(), self.context.state.as_mut())
        else {
            return Ok(());
        };
        let landing = stateful
            .commit_landed(state, wait)
            .map_err(|message| StepFailure::new(message, None))?;
        if landing != Landing::Landed {
            return Ok(());
        }
        for routed in stateful.take_held() {
            self.write_outputs(routed)?;
        }
        self.publish();
        self.purge_repartitioned();
        // The consumer group's copy, for Kafka tools; the positions that
        // count are the ones just committed with the state.
        let stateful = self.stateful.as_ref().expect("a stateful task");
        let offsets: Vec<(&str, i32, i64)> = self
            .inputs()
            .filter_map(|input| {
                let committed = stateful
                    .meta
                    .inputs
                    .iter()
                    .find(|meta| meta.topic == input.stats.topic)?;
                Some((
                    input.stats.topic.as_str(),
                    input.stats.partition,
                    committed.position,
                ))
            })
            .collect();
        if let Err(failure) = self.commit_offsets(&offsets) {
            tracing::warn!(processor = %self.label.processor, partition = self.input.stats.partition,
                error = %failure.message,
                "mirroring a processor's positions into its consumer group failed");
        }
        Ok(())
    }

    /// Whether a stateful task holds processed work not yet committed.
    pub(crate) fn has_uncommitted(&self) -> bool {
        self.stateful
            .as_ref()
            .is_some_and(|s| s.recovered && (s.dirty_since.is_some() || s.commit_in_flight()))
    }

    /// Whether a commit's state write is in flight (the task steps again
    /// soon to write its markers).
    pub(super) fn commit_in_flight(&self) -> bool {
        self.stateful
            .as_ref()
            .is_some_and(crate::processor::stateful::Stateful::commit_in_flight)
    }

    /// Commits what a stateful task has processed now and waits for it
    /// (no-op for a stateless task, or one with nothing to commit): for
    /// callers driving a task themselves, whose last steps a caught-up
    /// task would otherwise commit only when the driver woke it again.
    pub fn commit_now(&mut self) -> Result<(), StepFailure> {
        match self
            .stateful
            .as_ref()
            .is_some_and(|s| s.dirty_since.is_some())
        {
            true => self.commit_stateful(),
            false => self.land_commit(true),
        }
    }

    /// At a stop: commits what a stateful task has processed, or gives it
    /// up (recovery then resumes from the last commit).
    pub(crate) fn finish(&mut self) {
        if self.has_uncommitted() {
            if let Err(failure) = self.commit_now() {
                tracing::warn!(processor = %self.label.processor, topic = %self.input.stats.topic,
                    partition = self.input.stats.partition, error = %failure.message,
                    "committing at stop failed; the work since the last commit is redone");
                self.abandon();
            }
        }
    }

    /// Before recovery runs: the status shows the last commit's figures
    /// (its positions, not the consumer group's mirror of them).
    pub(super) fn show_last_commit(&mut self) {
        let Some(state) = self.context.state.as_ref() else {
            return;
        };
        let Ok(Some(bytes)) = state.meta() else {
            return;
        };
        let Ok(meta) = crate::processor::stateful::TaskMeta::decode(&bytes) else {
            return;
        };
        let firsts: Vec<bool> = self
            .inputs()
            .map(|input| self.is_first_input(&input.stats.topic))
            .collect();
        for (input, first) in inputs_mut(&mut self.input, &mut self.others).zip(firsts) {
            if let Some(recorded) = meta.input(&input.stats.topic, first) {
                input.position = recorded.position;
                input.rewind();
            }
        }
        if let Some(stateful) = self.stateful.as_mut() {
            stateful.meta = meta;
        }
        self.publish();
    }

    /// A task reading the processor's repartition topic deletes what it
    /// has committed (as Kafka Streams purges its repartition topics), at
    /// most every [`PURGE_INTERVAL`]: nothing else reads that topic.
    fn purge_repartitioned(&mut self) {
        if self.input.stats.topic != self.deployment.repartition_topic() {
            return;
        }
        let Some(stateful) = self.stateful.as_mut() else {
            return;
        };
        if stateful.purged_at.elapsed() < PURGE_INTERVAL {
            return;
        }
        stateful.purged_at = std::time::Instant::now();
        let stats = &self.input.stats;
        // The committed position, not the task's: a commit lands while the
        // task has gone on past it, and what it read since may be read
        // again after a crash.
        let Some(committed) = stateful.meta.inputs.iter().find(|i| i.topic == stats.topic) else {
            return;
        };
        let purged = self
            .store
            .partition(&stats.topic, stats.partition)
            .and_then(|partition| partition.delete_records_before(committed.position));
        if let Err(error) = purged {
            tracing::warn!(topic = %stats.topic, partition = stats.partition, %error,
                "purging the processed part of a repartition topic failed");
        }
    }

    /// Puts the committed figures in the status of each input partition
    /// (the task's figures in each).
    pub(super) fn publish(&self) {
        let Some(stateful) = &self.stateful else {
            return;
        };
        let meta = &stateful.meta;
        for input in self.inputs() {
            let stats = &input.stats;
            let recorded = meta.inputs.iter().find(|i| i.topic == stats.topic);
            stats.committed_offset.store(
                recorded.map_or(input.position, |i| i.position),
                Ordering::Relaxed,
            );
            stats.rebuild_until.store(
                recorded.and_then(|i| i.rebuild_until).unwrap_or(-1),
                Ordering::Relaxed,
            );
            stats
                .stream_time
                .store(meta.stream_time.unwrap_or(i64::MIN), Ordering::Relaxed);
            stats
                .late_dropped
                .store(meta.late_dropped, Ordering::Relaxed);
            stats.commits.store(meta.commits, Ordering::Relaxed);
            stats
                .timers_pending
                .store(u64::try_from(meta.timers).unwrap_or(0), Ordering::Relaxed);
            stats.keys.store(meta.keys.unwrap_or(0), Ordering::Relaxed);
            stats.set_open_windows(meta.open_windows());
        }
    }

    /// After a failed step: the open transaction aborted, staged state
    /// dropped; the next step recovers from the last commit.
    pub(super) fn abandon(&mut self) {
        if let Some(stateful) = self.stateful.as_mut() {
            stateful.abandon(self.context.state.as_mut());
            self.context.late_dropped = 0;
        }
    }

    /// Caches when the next timers are due, for `has_work` and the driver.
    fn refresh_timers(&mut self) {
        let (Some(stateful), Some(state)) = (self.stateful.as_mut(), self.context.state.as_mut())
        else {
            return;
        };
        stateful.next_event_timer = state.next_timer(Domain::EventTime).ok().flatten();
        stateful.next_processing_timer = state.next_timer(Domain::ProcessingTime).ok().flatten();
    }

    /// Whether a timer, a caught-up task's commit or recovery is due
    /// without new input.
    pub(super) fn timers_due(&self) -> bool {
        let Some(stateful) = &self.stateful else {
            return false;
        };
        if !stateful.recovered || stateful.caught_up_commit_in() == Some(Duration::ZERO) {
            return true;
        }
        if stateful
            .next_processing_timer
            .is_some_and(|at| at <= now_ms())
        {
            return true;
        }
        // Due by stream time but not fired yet (more were due than the
        // last step fired), or by idling.
        let now = self.context.stream_time.max(stateful.idle.advanced());
        stateful
            .next_event_timer
            .zip(now)
            .is_some_and(|(at, now)| at <= now)
    }

    /// How long until a timer or a commit may come due without input, if
    /// ever.
    pub(crate) fn wakeup_in(&self) -> Option<Duration> {
        let stateful = self.stateful.as_ref()?;
        let processing = stateful.next_processing_timer.map(|at| {
            Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0))
        });
        let event = stateful
            .next_event_timer
            .and_then(|at| stateful.idle.until(at));
        [processing, event, stateful.caught_up_commit_in()]
            .into_iter()
            .flatten()
            .min()
    }
}

fn storage_failure(error: crate::state::StateError) -> StepFailure {
    StepFailure::new(format!("state storage failed: {error}"), None)
}

/// The task's inputs, mutably: `input` first, then `others`.
fn inputs_mut<'a>(
    input: &'a mut Input,
    others: &'a mut [Input],
) -> impl Iterator<Item = &'a mut Input> {
    std::iter::once(input).chain(others.iter_mut())
}
