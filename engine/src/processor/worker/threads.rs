//! The threads processor steps run on: a blocking pool of their own, at a
//! lower scheduling priority (`processors.nice`) than the broker's Kafka
//! requests, queries and fsyncs (tokio's shared blocking pool and workers),
//! so a busy processor takes the CPU those leave instead of delaying them.
//!
//! A processor is throughput work and the rest of the broker answers
//! someone waiting. On the 2-core machine, with committed point lookups at
//! 10k/s beside a task processing 120-130k records/s (alternated runs, a
//! noisy machine): at the broker's priority the lookups' p99 was 0.85-1.93
//! ms (median of nine 1.13 ms) and the task's read_committed p99 39-148 ms
//! (median 88 ms); at nice 5, 0.41-8.4 ms (median of six 0.91 ms) and
//! 40-102 ms (median 54 ms); at nice 10 the lookups did as well but the
//! task's latency worse (48-161 ms, median 103 ms): it lost the CPU to
//! RocksDB's flushes and compactions too. Under full load from clients a
//! processor falls behind rather than its clients; `nice = 0` puts it back
//! level with them.

use tokio::runtime::{Handle, Runtime};

pub use crate::priority::{lower_priority, NICE_DEFAULT};

/// Threads running steps at once, at most (a step waits for one past
/// that). A step rarely blocks for long (an fsync at a commit), so a few
/// per core keep the cores busy; tokio's own default is 512.
pub(crate) const STEP_THREADS_MAX: usize = 64;

/// A blocking pool for processor steps, its threads at a lower priority.
pub(crate) struct StepThreads {
    /// Only its blocking pool is used (nothing drives the runtime itself);
    /// `None` once dropped.
    runtime: Option<Runtime>,
    handle: Handle,
}

impl std::fmt::Debug for StepThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepThreads").finish_non_exhaustive()
    }
}

impl StepThreads {
    /// A pool whose threads (named `sluice-step`) run at `nice` (0: the
    /// broker's own priority).
    pub(crate) fn new(nice: i32) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .thread_name("sluice-step")
            .max_blocking_threads(STEP_THREADS_MAX)
            .on_thread_start(move || {
                if let Err(error) = lower_priority(nice) {
                    tracing::warn!(nice, %error, "could not lower a processor thread's priority");
                }
            })
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Self {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Where steps are spawned (`Handle::spawn_blocking`).
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for StepThreads {
    fn drop(&mut self) {
        // Dropping a runtime may block, which panics inside another
        // runtime's task: let its threads finish on their own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
