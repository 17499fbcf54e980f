//! The async side of a deployment's partition tasks: driving one task
//! (waiting for records, pause/resume and shutdown, each step on a blocking
//! thread) and stopping them all. Apart from the registry's admin
//! operations, which only start and stop these.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Control, Running, RECONCILE_INTERVAL};
use crate::log::LogStore;
use crate::processor::status::{PartitionState, PartitionStats};
use crate::processor::worker::PartitionTask;
use crate::shutdown::Shutdown;

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
    store: Arc<LogStore>,
    mut control: watch::Receiver<Control>,
    mut shutdown: Shutdown,
) {
    let stats = task.stats.clone();
    let mut failed_at: Option<u64> = None;
    loop {
        let current = control.borrow_and_update().clone();
        if current.stopped || *shutdown.borrow() {
            // A stateful task commits what it has processed (an open
            // transaction would hold back its outputs' readers until the
            // task ran again).
            let _ = finish_blocking(task).await;
            return;
        }
        let mut high_watermark = None;
        if current.paused {
            if task.has_uncommitted() {
                let Some(returned) = finish_blocking(task).await else {
                    return;
                };
                task = returned;
            }
            stats.set_state(PartitionState::Paused);
        } else if failed_at.is_some_and(|at| at == current.restart) {
            stats.set_state(PartitionState::Failed);
        } else {
            failed_at = None;
            match store.partition(&stats.topic, stats.partition) {
                Ok(partition) if task.has_work(partition.watermarks()) => {
                    stats.set_state(PartitionState::Running);
                    let Some((returned, failed)) = step_blocking(task, &stats).await else {
                        return;
                    };
                    task = returned;
                    if failed {
                        failed_at = Some(current.restart);
                    }
                    continue;
                }
                Ok(partition) => {
                    stats.set_state(PartitionState::Idle);
                    high_watermark = Some(partition.subscribe());
                }
                Err(_) => stats.set_state(PartitionState::Idle),
            }
        }
        // Timers matter only to a task that runs: a paused or failed one
        // would wake for a due timer again and again without stepping.
        let wakeup = if current.paused || failed_at.is_some() {
            RECONCILE_INTERVAL
        } else {
            task.wakeup_in().unwrap_or(RECONCILE_INTERVAL)
        };
        wait_for_news(&mut control, &mut shutdown, high_watermark.as_mut(), wakeup).await;
    }
}

/// Commits a stateful task's processed work on a blocking thread (see
/// `PartitionTask::finish`); `None` if that panicked.
async fn finish_blocking(mut task: PartitionTask) -> Option<PartitionTask> {
    tokio::task::spawn_blocking(move || {
        task.finish();
        task
    })
    .await
    .ok()
}

/// Runs one step on a blocking thread and records a failure in the status.
/// Returns the task and whether the step failed (the task then reset), or
/// `None` when the step panicked: the partition is stopped.
async fn step_blocking(
    mut task: PartitionTask,
    stats: &PartitionStats,
) -> Option<(PartitionTask, bool)> {
    let stepped = tokio::task::spawn_blocking(move || {
        let result = task.step();
        (task, result)
    })
    .await;
    let Ok((mut task, result)) = stepped else {
        // A bug, not the plugin (its traps are errors):
        // say so in the status and stop this partition.
        stats.record_error("internal error: the processor step panicked", None);
        stats.set_state(PartitionState::Failed);
        tracing::error!(topic = %stats.topic, partition = stats.partition,
            "processor step panicked; partition stopped until redeploy");
        return None;
    };
    let Err(failure) = result else {
        return Some((task, false));
    };
    task.reset();
    if !failure.recorded {
        stats.record_error(&failure.message, failure.offset);
        tracing::error!(processor = %task.label.processor, topic = %stats.topic,
            partition = stats.partition, error = %failure.message, "processor partition failed");
    }
    stats.set_state(PartitionState::Failed);
    Some((task, true))
}

/// Waits for news: a control change, shutdown, or (when watched) new
/// records. The timeout (`wakeup`: a timer coming due, at most the
/// reconcile interval) re-checks things no channel announces (a deleted or
/// re-created input topic, the wall clock).
async fn wait_for_news(
    control: &mut watch::Receiver<Control>,
    shutdown: &mut Shutdown,
    high_watermark: Option<&mut watch::Receiver<i64>>,
    wakeup: std::time::Duration,
) {
    let wait = async {
        match high_watermark {
            Some(watermark) => tokio::select! {
                _ = control.changed() => {}
                _ = shutdown.changed() => {}
                _ = watermark.changed() => {}
            },
            None => tokio::select! {
                _ = control.changed() => {}
                _ = shutdown.changed() => {}
            },
        }
    };
    let wakeup = wakeup.clamp(std::time::Duration::from_millis(1), RECONCILE_INTERVAL);
    let _ = tokio::time::timeout(wakeup, wait).await;
}
