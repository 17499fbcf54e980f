//! A deployment's partition tasks: which input partitions each reads,
//! starting them, driving one (waiting for records, pause/resume and
//! shutdown, each step on a blocking thread) and stopping them all. Apart
//! from the registry's admin operations, which only start and stop these.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::watch;

use std::time::Duration;

use super::{Control, Processors, Running, RECONCILE_INTERVAL};
use crate::processor::host::TaskContext;
use crate::processor::spec::{Deployment, Guarantee};
use crate::processor::stateful::Stateful;
use crate::processor::status::{PartitionState, PartitionStats};
use crate::processor::worker::{PartitionTask, Readiness};
use crate::shutdown::Shutdown;
use crate::state::TaskState;

impl Processors {
    /// Starts a task for every input partition that has none.
    pub(super) fn spawn_missing(&self, running: &Arc<Running>) {
        if running.control.borrow().stopped {
            return;
        }
        let group = running.deployment.group();
        self.groups.keep_alive(&group);
        let committed = self.groups.committed(&group);
        for inputs in self.task_inputs(&running.deployment) {
            let mut partitions = running.partitions.lock().expect("status lock");
            if partitions.contains_key(&inputs[0]) {
                continue;
            }
            let mut members: Vec<(Arc<PartitionStats>, i64)> = inputs
                .iter()
                .map(|key @ (topic, partition)| {
                    let position = match committed.get(key) {
                        Some(c) => c.offset,
                        None => self
                            .store
                            .partition(topic, *partition)
                            .map_or(0, |p| p.log_start_offset()),
                    };
                    (Arc::new(PartitionStats::new(topic, *partition)), position)
                })
                .collect();
            for (key, (stats, _)) in inputs.iter().zip(&members) {
                partitions.insert(key.clone(), stats.clone());
            }
            drop(partitions);
            let (stats, position) = members.remove(0);
            self.spawn_task(running, stats, position, members);
        }
    }

    /// The input partitions of each task `deployment` runs (those whose
    /// partitions exist): a stateless processor's task reads one input
    /// partition; a stateful one's reads partition `p` of every input
    /// (co-partitioned), and its repartition topic's partitions have
    /// tasks of their own.
    fn task_inputs(&self, deployment: &Deployment) -> Vec<Vec<(String, i32)>> {
        let partitions = |topic: &str| self.store.topic(topic).map_or(0, |t| t.partition_count());
        let mut tasks = Vec::new();
        if deployment.is_stateful() {
            let count = deployment
                .inputs
                .iter()
                .map(|topic| partitions(topic))
                .min()
                .unwrap_or(0);
            for partition in 0..count {
                tasks.push(
                    deployment
                        .inputs
                        .iter()
                        .map(|topic| (topic.clone(), partition))
                        .collect(),
                );
            }
            // Tasks for the repartition topic's partitions, once a task has
            // written to it (and so created it).
            let repartition = deployment.repartition_topic();
            for partition in 0..partitions(&repartition) {
                tasks.push(vec![(repartition.clone(), partition)]);
            }
        } else {
            for topic in &deployment.inputs {
                for partition in 0..partitions(topic) {
                    tasks.push(vec![(topic.clone(), partition)]);
                }
            }
        }
        tasks
    }

    /// Starts one task: its first input partition `stats` at `position`,
    /// the others (a stateful task's co-partitioned inputs) in `others`.
    fn spawn_task(
        &self,
        running: &Arc<Running>,
        stats: Arc<PartitionStats>,
        position: i64,
        others: Vec<(Arc<PartitionStats>, i64)>,
    ) {
        let deployment = &running.deployment;
        let (topic, partition) = (stats.topic.clone(), stats.partition);
        let factory = running.plugin.factory(
            deployment.limits,
            deployment.config.clone(),
            crate::processor::worker::label(deployment, &stats),
        );
        let all_stats: Vec<_> = std::iter::once(stats.clone())
            .chain(others.iter().map(|(stats, _)| stats.clone()))
            .collect();
        let task = PartitionTask::new(
            self.store.clone(),
            self.groups.clone(),
            factory,
            deployment.clone(),
            stats,
            position,
        )
        .with_other_inputs(others);
        let task = match &running.tables {
            Some(tables) => task.with_tables(tables.clone()),
            None => task,
        };
        let task = match self.stateful_parts(deployment, &topic, partition, running.state_lost) {
            Ok(None) => task,
            Ok(Some((context, stateful))) => task.with_state(context, stateful),
            Err(error) => {
                let message = format!("opening the task's state failed: {error}");
                for stats in all_stats {
                    stats.record_error(&message, None);
                    stats.set_state(PartitionState::Failed);
                }
                return;
            }
        };
        running
            .aborts
            .lock()
            .expect("aborts lock")
            .push(task.abort.clone());
        let control = running.control.subscribe();
        let shutdown = self.shutdown.clone();
        running.tasks.lock().expect("tasks lock").spawn(drive(
            task,
            self.steps.handle().clone(),
            control,
            shutdown,
        ));
    }

    /// A stateful or exactly-once task's state and bookkeeping.
    fn stateful_parts(
        &self,
        deployment: &Deployment,
        topic: &str,
        partition: i32,
        state_lost: bool,
    ) -> Result<Option<(TaskContext, Stateful)>, crate::state::StateError> {
        if !deployment.is_stateful() {
            return Ok(None);
        }
        let processor = self.state.processor(&deployment.name)?;
        let task = deployment.task_id(topic, partition);
        let state = match deployment.changelog {
            true => TaskState::new(processor, task).clear_key_by_key(),
            false => TaskState::new(processor, task),
        };
        let stateful = Stateful::new(
            deployment.guarantee == Guarantee::ExactlyOnce,
            state_lost && !deployment.stores.is_empty(),
            self.producer_ids.clone(),
            Duration::from_millis(deployment.commit_interval_ms),
            deployment.idle_advance_ms,
        );
        let stateful = match deployment.changelog {
            true => stateful.with_changelog(crate::processor::stateful::Changelog::new(
                self.store.clone(),
                deployment.changelog_topic(topic),
                partition,
                self.store.topic(topic).map_or(1, |t| t.partition_count()),
            )),
            false => stateful,
        };
        Ok(Some((TaskContext::with_state(state), stateful)))
    }
}

/// Stops a deployment's tasks and waits for them (a step in progress
/// finishes its current call, or gives up narrowing down a failure).
pub(super) async fn stop(running: &Running) {
    running
        .control
        .send_modify(|control| control.stopped = true);
    for abort in running.aborts.lock().expect("aborts lock").iter() {
        abort.store(true, Ordering::Relaxed);
    }
    let mut tasks = std::mem::take(&mut *running.tasks.lock().expect("tasks lock"));
    while let Some(result) = tasks.join_next().await {
        if let Err(error) = result {
            tracing::error!(%error, processor = %running.deployment.name, "processor task failed");
        }
    }
}

/// The async side of a partition task: waits for records, pause/resume
/// and shutdown, and runs each step on a blocking thread.
pub(super) async fn drive(
    mut task: PartitionTask,
    steps: Handle,
    mut control: watch::Receiver<Control>,
    mut shutdown: Shutdown,
) {
    let stats = task.all_stats();
    let mut failed_at: Option<u64> = None;
    loop {
        let current = control.borrow_and_update().clone();
        if current.stopped || *shutdown.borrow() {
            // A stateful task commits what it has processed (an open
            // transaction would hold back its outputs' readers until the
            // task ran again).
            let _ = finish_blocking(&steps, task).await;
            return;
        }
        let mut watermarks = Vec::new();
        if current.paused {
            if task.has_uncommitted() {
                let Some(returned) = finish_blocking(&steps, task).await else {
                    return;
                };
                task = returned;
            }
            task.set_state(PartitionState::Paused);
        } else if failed_at.is_some_and(|at| at == current.restart) {
            task.set_state(PartitionState::Failed);
        } else {
            failed_at = None;
            match task.readiness() {
                Readiness::Work => {
                    task.set_state(PartitionState::Running);
                    let Some((returned, failed)) = step_blocking(&steps, task, &stats).await else {
                        return;
                    };
                    task = returned;
                    if failed {
                        failed_at = Some(current.restart);
                    }
                    continue;
                }
                Readiness::Wait(subscribed) => {
                    task.set_state(PartitionState::Idle);
                    watermarks = subscribed;
                }
            }
        }
        // Timers matter only to a task that runs: a paused or failed one
        // would wake for a due timer again and again without stepping.
        let wakeup = if current.paused || failed_at.is_some() {
            RECONCILE_INTERVAL
        } else {
            task.wakeup_in().unwrap_or(RECONCILE_INTERVAL)
        };
        wait_for_news(&mut control, &mut shutdown, &mut watermarks, wakeup).await;
    }
}

/// Commits a stateful task's processed work on a blocking thread (see
/// `PartitionTask::finish`); `None` if that panicked.
async fn finish_blocking(steps: &Handle, mut task: PartitionTask) -> Option<PartitionTask> {
    steps
        .spawn_blocking(move || {
            task.finish();
            task
        })
        .await
        .ok()
}

/// Runs one step on a blocking thread and records a failure in the status
/// (of the input partition it happened in). Returns the task and whether
/// the step failed (the task then reset), or `None` when the step
/// panicked: the task's partitions are stopped.
async fn step_blocking(
    steps: &Handle,
    mut task: PartitionTask,
    stats: &[Arc<PartitionStats>],
) -> Option<(PartitionTask, bool)> {
    let stepped = steps
        .spawn_blocking(move || {
            let result = task.step();
            (task, result)
        })
        .await;
    let Ok((mut task, result)) = stepped else {
        // A bug, not the plugin (its traps are errors):
        // say so in the status and stop this partition.
        for stats in stats {
            stats.record_error("internal error: the processor step panicked", None);
            stats.set_state(PartitionState::Failed);
            tracing::error!(topic = %stats.topic, partition = stats.partition,
                "processor step panicked; partition stopped until redeploy");
        }
        return None;
    };
    let Err(failure) = result else {
        return Some((task, false));
    };
    task.reset();
    if !failure.recorded {
        let stats = task.stats();
        stats.record_error(&failure.message, failure.offset);
        tracing::error!(processor = %task.label.processor, topic = %stats.topic,
            partition = stats.partition, error = %failure.message, "processor partition failed");
    }
    task.set_state(PartitionState::Failed);
    Some((task, true))
}

/// Waits for news: a control change, shutdown, or (when watched) new
/// records in one of the inputs. The timeout (`wakeup`: a timer coming
/// due, at most the reconcile interval) re-checks things no channel
/// announces (a deleted or re-created input topic, the wall clock).
async fn wait_for_news(
    control: &mut watch::Receiver<Control>,
    shutdown: &mut Shutdown,
    watermarks: &mut [watch::Receiver<i64>],
    wakeup: std::time::Duration,
) {
    let wait = async {
        let moved = async {
            if watermarks.is_empty() {
                std::future::pending::<()>().await;
            }
            let changes = watermarks.iter_mut().map(|w| Box::pin(w.changed()));
            let _ = futures_util::future::select_all(changes).await;
        };
        tokio::select! {
            _ = control.changed() => {}
            _ = shutdown.changed() => {}
            _ = moved => {}
        }
    };
    let wakeup = wakeup.clamp(std::time::Duration::from_millis(1), RECONCILE_INTERVAL);
    let _ = tokio::time::timeout(wakeup, wait).await;
}
