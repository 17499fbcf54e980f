//! The stateful side of a partition task: recovery at start, stream time,
//! timers after each batch, outputs into the task's transaction, and the
//! commit (see `processor::stateful` for the protocol).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{attempt_failure, PartitionTask, StepFailure, StopAt};
use crate::processor::host::{Batch, Domain, InputRecord, Output, Payload, Timer};
use crate::processor::output::Routed;
use crate::processor::spec::OnError;
use crate::processor::status::{now_ms, PartitionStats};

/// Rounds of due timers one step fires at most (a timer may schedule
/// another that is due at once); the rest wait for the next step.
const TIMER_ROUNDS_MAX: usize = 64;

/// How often a task reading its processor's repartition topic deletes the
/// records it has committed.
const PURGE_INTERVAL: Duration = Duration::from_secs(10);

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

    /// Runs recovery: the position, stream time and epoch of the last
    /// commit, and the transactions a crash left open ended.
    pub(super) fn recover(&mut self) -> Result<(), StepFailure> {
        let outputs = self.deployment.write_topics();
        let log_start = self
            .store
            .partition(&self.stats.topic, self.stats.partition)
            .map_or(0, |p| p.log_start_offset());
        let stateful = self.stateful.as_mut().expect("a stateful task");
        let state = self
            .context
            .state
            .as_mut()
            .expect("a stateful task has state");
        let restored = stateful
            .restore(state, &self.stats, &self.abort)
            .map_err(|message| StepFailure::new(message, None))?;
        let position = stateful
            .recover(state, &self.store, &outputs, (self.position, log_start))
            .map_err(|message| StepFailure::new(message, None))?;
        if let Some(until) = stateful.rebuilding_until(position) {
            let mut message = format!(
                "the task's state is missing (its folder was deleted or lost): rebuilding it \
                 from the input, offsets {position} to {until}, without writing their outputs again"
            );
            if log_start > 0 {
                message.push_str(&format!(
                    "; the input below offset {log_start} is deleted, so the rebuilt state lacks it"
                ));
            }
            tracing::warn!(processor = %self.label.processor, topic = %self.stats.topic,
                partition = self.stats.partition, "{message}");
            self.stats.record_notice(&message, Some(position));
        }
        self.position = position;
        self.fetch_position = position;
        self.pending.clear();
        self.context.stream_time = stateful.meta.stream_time;
        if let Some(restored) = restored {
            self.restored_notice(&restored, position);
        }
        self.context.late_dropped = 0;
        self.publish();
        self.refresh_timers();
        Ok(())
    }

    /// Says in the log and the status that the state came back from the
    /// changelog.
    fn restored_notice(&self, restored: &crate::processor::stateful::Restored, position: i64) {
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
        tracing::warn!(processor = %self.label.processor, topic = %self.stats.topic,
            partition = self.stats.partition, "{message}");
        self.stats.record_notice(&message, Some(position));
    }

    /// One step of a stateful task over `records` (possibly none: timers
    /// and idle time still move).
    pub(super) fn step_stateful(&mut self, records: Vec<InputRecord>) -> Result<(), StepFailure> {
        let mut routed = Routed::default();
        let mut stop = None;
        let mut next = self.position;
        if !records.is_empty() {
            let stats = self.stats.clone();
            let deployment = self.deployment.clone();
            let batch = Batch {
                topic: deployment.batch_topic(&stats.topic),
                partition: stats.partition,
                records: &records,
            };
            let started = std::time::Instant::now();
            stop = self.process_range(batch, 0, records.len(), &mut routed)?;
            PartitionStats::add(&self.stats.process_ns, started.elapsed().as_nanos() as u64);
            let processed = stop.as_ref().map_or(records.len(), |s: &StopAt| s.index);
            next = match &stop {
                Some(stop) => records[stop.index].offset,
                None => records.last().expect("non-empty").offset + 1,
            };
            self.advance_stream_time(records[..processed].iter().map(|r| r.timestamp).max());
            PartitionStats::add(&self.stats.records_in, processed as u64);
            PartitionStats::add(&self.stats.batches, 1);
        } else if self.fetch_position > self.position {
            // Only control records or a gap up to the LSO.
            next = self.fetch_position;
        } else {
            self.advance_idle();
        }
        if stop.is_none() {
            self.fire_timers(&mut routed)?;
        }
        // Judged by the batch's first record (control records may lie
        // between the position and it).
        let first = records.first().map_or(self.position, |r| r.offset);
        let rebuilding = self
            .stateful
            .as_ref()
            .and_then(|s| s.rebuilding_until(first))
            .is_some();
        // Rebuilding lost state: these outputs were written the first time.
        let out = if rebuilding { 0 } else { routed.records };
        if !rebuilding {
            self.write_outputs(routed)?;
        }
        PartitionStats::add(&self.stats.records_out, out);
        let stateful = self.stateful.as_mut().expect("a stateful task");
        let state = self
            .context
            .state
            .as_ref()
            .expect("a stateful task has state");
        if next != self.position || out > 0 || state.has_staged() || self.context.late_dropped > 0 {
            stateful.touch();
        }
        self.position = next;
        let caught_up = self.pending.is_empty() && self.fetch_position >= self.last_stable_offset;
        let state = self.state();
        let stateful = self.stateful.as_ref().expect("a stateful task");
        if stateful.dirty_since.is_some()
            && (caught_up || stop.is_some() || stateful.commit_due(state, state.commit_bytes_max()))
        {
            self.commit_stateful()?;
        }
        self.refresh_timers();
        if let Some(instance) = &self.instance {
            self.stats
                .memory_bytes
                .store(instance.memory_bytes() as u64, Ordering::Relaxed);
        }
        match stop {
            Some(stop) => Err(StepFailure {
                message: stop.message,
                offset: Some(records[stop.index].offset),
                recorded: true,
            }),
            None => Ok(()),
        }
    }

    /// Stream time after records with largest timestamp `max`: never back.
    fn advance_stream_time(&mut self, max: Option<i64>) {
        let Some(max) = max else { return };
        let stream_time = self.context.stream_time.map_or(max, |t| t.max(max));
        self.context.stream_time = Some(stream_time);
        if let Some(stateful) = self.stateful.as_mut() {
            stateful.idle.reset(Some(stream_time));
        }
    }

    /// Idle advance: stream time from the wall clock while input is idle.
    fn advance_idle(&mut self) {
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
        let stateful = self.stateful.as_mut().expect("a stateful task");
        let written = if stateful.exactly_once {
            stateful.transaction.write(&self.store, routed)
        } else {
            routed.write(&self.store)
        };
        written.map_err(|error| StepFailure::new(format!("writing outputs failed: {error}"), None))
    }

    /// Fires due timers: event-time ones up to stream time, then
    /// processing-time ones up to now, round after round while any are due.
    fn fire_timers(&mut self, routed: &mut Routed) -> Result<(), StepFailure> {
        let limit = self.deployment.limits.batch_records_max as usize;
        for _ in 0..TIMER_ROUNDS_MAX {
            let state = self.state();
            let mut due = match self.context.stream_time {
                Some(now) => state.due_timers(Domain::EventTime, now, limit),
                None => Ok(Vec::new()),
            }
            .map_err(storage_failure)?;
            if due.is_empty() {
                due = state
                    .due_timers(Domain::ProcessingTime, now_ms(), limit)
                    .map_err(storage_failure)?;
            }
            if due.is_empty() {
                return Ok(());
            }
            self.fire(&due, routed)?;
        }
        Ok(())
    }

    /// One `on-timer` call: the timers are removed and the call's state
    /// changes kept only if it succeeds. A failure stops the task under
    /// `fail`; otherwise the timers are dropped and the error counted.
    fn fire(&mut self, timers: &[Timer], routed: &mut Routed) -> Result<(), StepFailure> {
        if self.instance.is_none() {
            self.instance = Some(self.instantiate()?);
        }
        let state = self.state_mut();
        state.savepoint();
        for timer in timers {
            state.remove_timer(timer).map_err(storage_failure)?;
        }
        let late_dropped = self.context.late_dropped;
        let instance = self.instance.as_mut().expect("instance exists");
        let called = instance
            .on_timer(timers, &mut self.context)
            .map_err(attempt_failure)
            .and_then(|outputs| self.check_timer_outputs(timers, &outputs).map(|()| outputs));
        let failure = match called {
            Ok(outputs) => {
                self.state_mut().release();
                return self.route_timer_outputs(timers, outputs, routed);
            }
            Err(failure) => failure,
        };
        self.state_mut().rollback();
        self.context.late_dropped = late_dropped;
        if failure.host {
            return Err(StepFailure::new(failure.message, None));
        }
        if failure.trapped {
            self.instance = None;
        }
        let message = format!("on-timer failed: {}", failure.message);
        self.stats.record_error(&message, None);
        if self.policy == OnError::Fail {
            return Err(StepFailure {
                message,
                offset: None,
                recorded: true,
            });
        }
        tracing::warn!(processor = %self.label.processor, topic = %self.stats.topic,
            partition = self.stats.partition, timers = timers.len(), error = %message,
            "timers dropped after a failed on-timer call (on_error is not fail)");
        PartitionStats::add(&self.stats.skipped, timers.len() as u64);
        let state = self.state_mut();
        for timer in timers {
            state.remove_timer(timer).map_err(storage_failure)?;
        }
        Ok(())
    }

    fn check_timer_outputs(
        &self,
        timers: &[Timer],
        outputs: &[Output],
    ) -> Result<(), super::Attempt> {
        let fail = |message: String| super::Attempt {
            index: None,
            message,
            trapped: false,
            host: false,
        };
        let limits = &self.deployment.limits;
        let mut bytes = 0u64;
        let mut previous = 0;
        for output in outputs {
            if output.source as usize >= timers.len() || output.source < previous {
                return Err(fail(format!(
                    "the plugin broke the contract: on-timer output source {} is out of order \
                     or not among the {} timers",
                    output.source,
                    timers.len()
                )));
            }
            previous = output.source;
            if let Some(topic) = &output.topic {
                let keyed = matches!(&output.payload, Payload::Emit(r) if r.key.is_some());
                self.check_topic(topic, keyed).map_err(fail)?;
            }
            match &output.payload {
                Payload::Forward => {
                    return Err(fail(
                        "the plugin broke the contract: on-timer cannot forward (there is no input record)"
                            .into(),
                    ))
                }
                Payload::Emit(record) => bytes += super::output_bytes(record),
            }
            if bytes > limits.output_bytes_per_batch_max {
                return Err(fail(format!(
                    "output limit exceeded: outputs of one on-timer call passed {} bytes (output_bytes_per_batch_max)",
                    limits.output_bytes_per_batch_max
                )));
            }
        }
        if outputs.len() as u64
            > limits
                .outputs_per_record_max
                .saturating_mul(timers.len() as u64)
        {
            return Err(fail(format!(
                "output limit exceeded: more than {} outputs per timer (outputs_per_record_max)",
                limits.outputs_per_record_max
            )));
        }
        Ok(())
    }

    fn route_timer_outputs(
        &mut self,
        timers: &[Timer],
        outputs: Vec<Output>,
        routed: &mut Routed,
    ) -> Result<(), StepFailure> {
        for output in outputs {
            let timer = &timers[output.source as usize];
            let topic = self.output_topic(output.topic.as_deref())?;
            let topic = topic.as_str();
            let Payload::Emit(record) = output.payload else {
                continue;
            };
            let record = super::emitted(record, timer.at);
            routed
                .push(&self.store, topic, self.stats.partition, record)
                .map_err(|error| {
                    StepFailure::new(format!("output topic {topic}: {error}"), None)
                })?;
        }
        Ok(())
    }

    /// The commit: outputs durable, state and position in one RocksDB
    /// write, markers, then the group offset mirrored.
    pub(super) fn commit_stateful(&mut self) -> Result<(), StepFailure> {
        // The input the state was computed from is durable before the
        // state is: a power cut must not leave state counting records the
        // input log no longer has.
        self.store
            .partition(&self.stats.topic, self.stats.partition)
            .and_then(|input| input.make_durable(self.position))
            .map_err(|error| {
                StepFailure::new(format!("making the input durable failed: {error}"), None)
            })?;
        let stateful = self.stateful.as_mut().expect("a stateful task");
        let state = self
            .context
            .state
            .as_mut()
            .expect("a stateful task has state");
        let late_dropped = std::mem::take(&mut self.context.late_dropped);
        stateful
            .commit(state, self.position, self.context.stream_time, late_dropped)
            .map_err(|message| StepFailure::new(message, None))?;
        self.publish();
        self.purge_repartitioned();
        // The consumer group's copy, for Kafka tools; the position that
        // counts is the one just committed with the state.
        if let Err(failure) = self.commit(self.position) {
            tracing::warn!(processor = %self.label.processor, topic = %self.stats.topic,
                partition = self.stats.partition, error = %failure.message,
                "mirroring a processor's position into its consumer group failed");
        }
        Ok(())
    }

    /// Whether a stateful task holds processed work not yet committed.
    pub(crate) fn has_uncommitted(&self) -> bool {
        self.stateful
            .as_ref()
            .is_some_and(|s| s.recovered && s.dirty_since.is_some())
    }

    /// At a stop: commits what a stateful task has processed, or gives it
    /// up (recovery then resumes from the last commit).
    pub(crate) fn finish(&mut self) {
        if self.has_uncommitted() {
            if let Err(failure) = self.commit_stateful() {
                tracing::warn!(processor = %self.label.processor, topic = %self.stats.topic,
                    partition = self.stats.partition, error = %failure.message,
                    "committing at stop failed; the work since the last commit is redone");
                self.abandon();
            }
        }
    }

    /// Before recovery runs: the status shows the last commit's figures
    /// (its position, not the consumer group's mirror of it).
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
        self.position = meta.position;
        self.fetch_position = meta.position;
        if let Some(stateful) = self.stateful.as_mut() {
            stateful.meta = meta;
        }
        self.publish();
    }

    /// A task reading the processor's repartition topic deletes what it
    /// has committed (as Kafka Streams purges its repartition topics), at
    /// most every [`PURGE_INTERVAL`]: nothing else reads that topic.
    fn purge_repartitioned(&mut self) {
        if self.stats.topic != self.deployment.repartition_topic() {
            return;
        }
        let Some(stateful) = self.stateful.as_mut() else {
            return;
        };
        if stateful.purged_at.elapsed() < PURGE_INTERVAL {
            return;
        }
        stateful.purged_at = std::time::Instant::now();
        let purged = self
            .store
            .partition(&self.stats.topic, self.stats.partition)
            .and_then(|partition| partition.delete_records_before(self.position));
        if let Err(error) = purged {
            tracing::warn!(topic = %self.stats.topic, partition = self.stats.partition, %error,
                "purging the processed part of a repartition topic failed");
        }
    }

    /// Puts the committed figures in the status.
    fn publish(&self) {
        let Some(stateful) = &self.stateful else {
            return;
        };
        let meta = &stateful.meta;
        self.stats
            .committed_offset
            .store(meta.position, Ordering::Relaxed);
        self.stats
            .stream_time
            .store(meta.stream_time.unwrap_or(i64::MIN), Ordering::Relaxed);
        self.stats
            .late_dropped
            .store(meta.late_dropped, Ordering::Relaxed);
        self.stats.commits.store(meta.commits, Ordering::Relaxed);
        self.stats
            .timers_pending
            .store(u64::try_from(meta.timers).unwrap_or(0), Ordering::Relaxed);
        self.stats
            .rebuild_until
            .store(meta.rebuild_until.unwrap_or(-1), Ordering::Relaxed);
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
        let (Some(stateful), Some(state)) = (self.stateful.as_mut(), self.context.state.as_ref())
        else {
            return;
        };
        stateful.next_event_timer = state.next_timer(Domain::EventTime).ok().flatten();
        stateful.next_processing_timer = state.next_timer(Domain::ProcessingTime).ok().flatten();
    }

    /// Whether a timer or recovery is due without new input.
    pub(super) fn timers_due(&self) -> bool {
        let Some(stateful) = &self.stateful else {
            return false;
        };
        if !stateful.recovered {
            return true;
        }
        if stateful
            .next_processing_timer
            .is_some_and(|at| at <= now_ms())
        {
            return true;
        }
        match (stateful.next_event_timer, stateful.idle.advanced()) {
            (Some(at), Some(advanced)) => at <= advanced,
            _ => false,
        }
    }

    /// How long until a timer may come due without input, if ever.
    pub(crate) fn wakeup_in(&self) -> Option<Duration> {
        let stateful = self.stateful.as_ref()?;
        let processing = stateful.next_processing_timer.map(|at| {
            Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0))
        });
        let event = stateful
            .next_event_timer
            .and_then(|at| stateful.idle.until(at));
        match (processing, event) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn storage_failure(error: crate::state::StateError) -> StepFailure {
    StepFailure::new(format!("state storage failed: {error}"), None)
}
