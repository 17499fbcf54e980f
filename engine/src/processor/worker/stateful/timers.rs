//! Timers after each batch: due ones fire through `on-timer`, paced so
//! that a close of many windows does not hold up the records behind it.

use std::sync::atomic::Ordering;

use super::super::{attempt_failure, PartitionTask, StepFailure};
use super::storage_failure;
use crate::processor::host::{Domain, Output, Payload, Timer};
use crate::processor::output::Routed;
use crate::processor::spec::OnError;
use crate::processor::status::{now_ms, PartitionStats};

/// Rounds of due timers one step fires at most (a timer may schedule
/// another that is due at once); the rest fire in the next steps.
const TIMER_ROUNDS_MAX: usize = 64;

/// Timer work a step does, at least, when records are waiting behind it
/// (see `fire_timers`).
pub(crate) const TIMERS_WHILE_RECORDS_WAIT_MIN: usize = 64;

/// Full batches of backlog from which a task is behind its input: its
/// timer work then keeps pace with its records (see `fire_timers`). 64
/// batches of 1 024 are about 0.4 s of a task's records at full speed:
/// a backlog a task that keeps up does not reach (a window close it
/// spreads over its idle time, commits), and one that cannot keep up
/// soon does.
pub(crate) const BEHIND_BATCHES: i64 = 64;

impl PartitionTask {
    /// Fires due timers: event-time ones up to stream time, then
    /// processing-time ones up to now, round after round while any are due,
    /// in due order.
    ///
    /// A window close of many keys is that much timer work due at once
    /// (100k keys: a few hundred ms of `on-timer` calls and commits), and
    /// records arriving meanwhile waited behind all of it: that close was
    /// the read_committed latency's p99. So while records wait, a step
    /// does `TIMERS_WHILE_RECORDS_WAIT_MIN` of timer work and leaves the
    /// rest to the next steps; with none waiting, it fires rounds until one
    /// arrives: a task that keeps up closes windows in its idle time. A
    /// task behind its input (`BEHIND_BATCHES` full batches) has none, so
    /// there a step does as much timer work as it processed records: the
    /// close keeps pace with the records that open the next windows, and
    /// the state of closed ones does not pile up. A call's work is its
    /// timers, or the state writes it made beyond removing them if more
    /// (one timer may close a page of a window's keys: the SDK's tumbling
    /// and hopping windows). Timers still fire in due order and after the
    /// batch that reached them, only no longer all before the next batch:
    /// a plugin tells closed from open by stream time, as the SDK's
    /// windows do.
    pub(super) fn fire_timers(
        &mut self,
        routed: &mut Routed,
        processed: usize,
    ) -> Result<(), StepFailure> {
        let round_max = self.deployment.limits.batch_records_max as usize;
        let behind = self.backlog() >= BEHIND_BATCHES * round_max as i64;
        let share = match behind {
            true => processed.max(TIMERS_WHILE_RECORDS_WAIT_MIN),
            false => TIMERS_WHILE_RECORDS_WAIT_MIN,
        };
        let mut fired = 0;
        for _ in 0..TIMER_ROUNDS_MAX {
            let limit = if fired < share {
                (share - fired).min(round_max)
            } else if self.records_waiting() {
                return Ok(());
            } else {
                round_max
            };
            let stream_time = self.context.stream_time;
            let state = self.state_mut();
            let mut due = match stream_time {
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
            let writes = self.state().writes();
            let fired_now = self.fire(&due, routed)?;
            let written = self.state().writes().wrapping_sub(writes) as usize;
            fired += due.len().max(written.saturating_sub(due.len()));
            if !fired_now {
                return Ok(());
            }
        }
        Ok(())
    }

    /// About how many records the inputs hold beyond the position (by
    /// offsets: transaction markers count too).
    fn backlog(&self) -> i64 {
        self.inputs()
            .filter_map(|input| {
                let partition = self
                    .store
                    .partition(&input.stats.topic, input.stats.partition)
                    .ok()?;
                let (_, last_stable_offset) = partition.watermarks();
                Some((last_stable_offset - input.position).max(0))
            })
            .sum()
    }

    /// Whether an input has records to process now.
    fn records_waiting(&self) -> bool {
        self.inputs().any(|input| {
            self.store
                .partition(&input.stats.topic, input.stats.partition)
                .is_ok_and(|partition| input.has_work(partition.watermarks()))
        })
    }

    /// One `on-timer` call: the timers are removed and the call's state
    /// changes kept only if it succeeds. A failed call of several timers is
    /// narrowed down to the timer that fails, as a batch is to its record:
    /// the timers are fired again in halves, so the others still fire
    /// (at most about twice the timers in calls). The failing timer stops
    /// the task under `fail`; otherwise it is dropped and the error
    /// counted. `false`: the task's uncommitted state is full (or the task
    /// is stopping); the timers not fired yet stay due and fire after the
    /// commit.
    fn fire(&mut self, timers: &[Timer], routed: &mut Routed) -> Result<bool, StepFailure> {
        if self.instance.is_none() {
            self.instance = Some(self.instantiate()?);
        }
        let state = self.state_mut();
        state.savepoint();
        for timer in timers {
            if let Err(error) = state.remove_timer(timer) {
                state.rollback();
                return match error.is_commit_first() {
                    true => Ok(false),
                    false => Err(storage_failure(error)),
                };
            }
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
                self.route_timer_outputs(timers, outputs, routed)?;
                return Ok(true);
            }
            Err(failure) => failure,
        };
        self.state_mut().rollback();
        self.context.late_dropped = late_dropped;
        if failure.trapped {
            self.instance = None;
        }
        if self.abort.load(Ordering::Relaxed) {
            // The task is stopping and its call was ended for that (or
            // failed meanwhile): the timers stay due, not failed.
            return Ok(false);
        }
        if failure.host {
            return Err(StepFailure::new(failure.message, None));
        }
        if failure.commit_first {
            return Ok(false);
        }
        if timers.len() > 1 {
            let (first, rest) = timers.split_at(timers.len() / 2);
            if !self.fire(first, routed)? {
                return Ok(false);
            }
            return self.fire(rest, routed);
        }
        let message = match timers {
            [timer] => format!(
                "on-timer failed ({} timer at {} of key {:?}): {}",
                match timer.domain {
                    Domain::EventTime => "event-time",
                    Domain::ProcessingTime => "processing-time",
                },
                timer.at,
                String::from_utf8_lossy(&timer.key[..timer.key.len().min(64)]),
                failure.message
            ),
            _ => format!("on-timer failed: {}", failure.message),
        };
        self.input.stats.record_error(&message, None);
        if self.policy == OnError::Fail {
            return Err(StepFailure {
                message,
                offset: None,
                recorded: true,
            });
        }
        tracing::warn!(processor = %self.label.processor, topic = %self.input.stats.topic,
            partition = self.input.stats.partition, timers = timers.len(), error = %message,
            "timers dropped after a failed on-timer call (on_error is not fail)");
        PartitionStats::add(&self.input.stats.skipped, timers.len() as u64);
        let state = self.state_mut();
        for timer in timers {
            state.remove_timer(timer).map_err(storage_failure)?;
        }
        Ok(true)
    }

    fn check_timer_outputs(
        &self,
        timers: &[Timer],
        outputs: &[Output],
    ) -> Result<(), super::super::Attempt> {
        let fail = |message: String| super::super::Attempt {
            index: None,
            message,
            trapped: false,
            host: false,
            commit_first: false,
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
                Payload::Emit(record) => bytes += super::super::output_bytes(record),
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
            let topic = topic.as_ref();
            let Payload::Emit(record) = output.payload else {
                continue;
            };
            let record = super::super::emitted(record, timer.at);
            routed
                .push(&self.store, topic, self.input.stats.partition, record)
                .map_err(|error| {
                    StepFailure::new(format!("output topic {topic}: {error}"), None)
                })?;
        }
        Ok(())
    }
}
