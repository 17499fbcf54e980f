//! The threads that write tasks' commits to RocksDB, so that a task goes on
//! processing while its last commit's memtable inserts and WAL sync run on
//! another core (`TaskState::commit_started`). On the 2-core machine the
//! insert of a commit's keys was half of a busy task's commit and a quarter
//! of its thread.
//!
//! Bounds: [`COMMIT_THREADS`] threads for the whole broker, started with
//! the first commit, at the processors' priority (`processors.nice`: below
//! the broker's requests and queries, which they would otherwise take the
//! other core from); each task has at most one commit in flight, so the
//! queue holds at most one commit per task (`CommitWrites`: its writes
//! under `state.commit_bytes_max` plus a call's `state.staged_bytes_max`,
//! twice while its thread builds the write batch).

use std::cell::OnceCell;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};

use rocksdb::WriteOptions;

use super::commit_writes::CommitWrites;
use super::db::StateDb;

/// Threads writing commits, shared by every task: two, so that two tasks'
/// commits can join one RocksDB write group (one WAL sync) and insert into
/// their memtables side by side.
const COMMIT_THREADS: usize = 2;

/// What a commit's write came to: `Err` holds RocksDB's message.
type Outcome = Result<(), String>;

/// The outcome of a write whose thread went away before telling it.
const THREAD_STOPPED: &str = "the state commit thread stopped";

struct Job {
    db: Arc<StateDb>,
    writes: CommitWrites,
    sync: bool,
    done: SyncSender<Outcome>,
}

/// The broker's commit threads (one per `StateDb`).
pub(super) struct Committer {
    jobs: OnceLock<Option<Mutex<Sender<Job>>>>,
    /// The threads' nice value, as the processors' steps
    /// (`processors.nice`): set before the first commit starts them.
    nice: AtomicI32,
    /// Held by a test, keeps this database's commits in flight.
    #[cfg(test)]
    pub(super) gate: Mutex<()>,
}

impl Default for Committer {
    fn default() -> Self {
        Self {
            jobs: OnceLock::new(),
            nice: AtomicI32::new(crate::priority::NICE_DEFAULT),
            #[cfg(test)]
            gate: Mutex::new(()),
        }
    }
}

impl Committer {
    /// The nice value the threads start with (they start with the first
    /// commit).
    pub(super) fn set_nice(&self, nice: i32) {
        self.nice.store(nice, Ordering::Relaxed);
    }

    /// Hands `writes` to a commit thread (its batch completed and
    /// written there, synced when `sync`); written here when no thread
    /// could be started.
    pub(super) fn submit(&self, db: &Arc<StateDb>, writes: CommitWrites, sync: bool) -> InFlight {
        let (done, outcome) = mpsc::sync_channel(1);
        let job = Job {
            db: db.clone(),
            writes,
            sync,
            done,
        };
        let nice = self.nice.load(Ordering::Relaxed);
        let sender = self.jobs.get_or_init(|| start_threads(nice)).as_ref();
        let job = match sender {
            Some(sender) => match sender.lock().expect("commit queue lock").send(job) {
                Ok(()) => return InFlight::new(outcome),
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let in_flight = InFlight::new(outcome);
        write(job);
        in_flight
    }
}

/// Starts the commit threads at `nice`; `None` when none could start.
fn start_threads(nice: i32) -> Option<Mutex<Sender<Job>>> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    let mut started = 0;
    for index in 0..COMMIT_THREADS {
        let receiver = receiver.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sluice-commit-{index}"))
            .spawn(move || {
                if let Err(error) = crate::priority::lower_priority(nice) {
                    tracing::warn!(nice, %error, "could not lower a commit thread's priority");
                }
                loop {
                    let job = receiver.lock().expect("commit queue lock").recv();
                    match job {
                        Ok(job) => write(job),
                        Err(_) => return,
                    }
                }
            });
        match spawned {
            Ok(_) => started += 1,
            Err(error) => tracing::warn!(%error, "starting a state commit thread failed"),
        }
    }
    (started > 0).then(|| Mutex::new(sender))
}

fn write(job: Job) {
    let Job {
        db,
        writes,
        sync,
        done,
    } = job;
    let outcome = (|| {
        #[cfg(test)]
        let _gate = db.committer.gate.lock().unwrap_or_else(|e| e.into_inner());
        let batch = writes.into_batch(db.db())?;
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        // The same hints when RocksDB inserts several tasks' commits in
        // parallel (see `family_options`).
        options.set_memtable_insert_hint_per_batch(true);
        db.db()
            .write_opt(batch, &options)
            .map_err(|error| error.to_string())
    })();
    // Let go of the database before the task hears of the write: a task
    // (or test) dropping the last other reference then closes it.
    drop(db);
    // The task may be gone (it waits for its commit when dropped, but a
    // broken channel is no error here either).
    let _ = done.send(outcome);
}

/// A commit handed to the commit threads: its outcome once written.
pub(super) struct InFlight {
    done: Receiver<Outcome>,
    outcome: OnceCell<Outcome>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("outcome", &self.outcome.get())
            .finish()
    }
}

impl InFlight {
    fn new(done: Receiver<Outcome>) -> Self {
        Self {
            done,
            outcome: OnceCell::new(),
        }
    }

    /// Waits until the write is done; its outcome.
    pub(super) fn wait(&self) -> &Outcome {
        self.outcome.get_or_init(|| {
            self.done
                .recv()
                .unwrap_or_else(|_| Err(THREAD_STOPPED.to_string()))
        })
    }

    /// The outcome, if the write is done.
    pub(super) fn poll(&self) -> Option<&Outcome> {
        if self.outcome.get().is_none() {
            let outcome = match self.done.try_recv() {
                Ok(outcome) => outcome,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => Err(THREAD_STOPPED.to_string()),
            };
            let _ = self.outcome.set(outcome);
        }
        self.outcome.get()
    }
}
