//! Stateful and exactly-once processing of one task: its committed
//! metadata, its output transaction, recovery after a crash, and stream
//! time.
//!
//! # Exactly-once
//! The broker owns the input log, the output log, the offsets and the
//! state, so one task's commit needs no coordinator round trips:
//! 1. Outputs are appended as transactional batches with the task's own
//!    producer id and epoch, invisible to read_committed readers.
//! 2. The commit point is one RocksDB write holding the staged state, the
//!    next input offset, stream time, timers, and the transaction: the
//!    first offset of its batches in every output partition it wrote.
//!    Before it, those outputs are fsynced; the write itself is synced.
//! 3. Commit markers are then appended to those partitions (fsynced before
//!    the next commit point replaces the record of this transaction), and
//!    the input offset is mirrored into the processor's consumer group, so
//!    `sluice group describe` and Kafka tools show position and lag.
//! 4. Recovery, at a task's start: a transaction of the task's producer
//!    left open in an output partition is committed if its first offset is
//!    the one the last commit recorded there, and aborted otherwise (it
//!    began after the commit point). Then the task takes a fresh epoch,
//!    recorded before anything is written with it.
//!
//! The commit point's write runs on a commit thread while a busy task goes
//! on (`Stateful::commit_start`, `commit_landed`): the outputs of the
//! records it processes meanwhile are held until the markers of the last
//! transaction are written, so they open the next one.
//!
//! Kafka Streams needs a transaction coordinator for the same guarantee,
//! because its state, offsets and outputs live in three places; here the
//! first offset stands in for the coordinator's transaction state.
//!
//! At-least-once stateful processing uses the same commit point (state and
//! input offset atomically, so state is never applied twice) but writes
//! plain, durable batches before it: a crash may repeat outputs, never
//! state changes.
//!
//! # When a task commits
//! A busy task commits when its oldest uncommitted work is a commit
//! interval old (`--commit-interval-ms`, 100 ms by default), or at a byte
//! cap. A task that has caught up with its input commits sooner, so that a
//! quiet pipeline's results show at once: right away if its last commit
//! started at least a quarter of the interval ago, else when it has (the
//! driver wakes it then). A trickle of records thus commits at most
//! [`CAUGHT_UP_COMMITS_PER_INTERVAL`] times an interval, not after every
//! record: each commit syncs the outputs, RocksDB's WAL and the markers,
//! and a task committing back to back kept the disk busy all the time (on
//! the reference VM that delayed every timer on the machine by up to
//! 10 ms; see bench/STATEFUL.md).
//!
//! With `--changelog`, the transaction also carries the commit's state
//! changes to the processor's changelog topic (`changelog`).

mod changelog;
mod meta;
#[cfg(test)]
mod tests;
mod transaction;

use std::time::{Duration, Instant};

pub(crate) use changelog::{producer_ids as changelog_producer_ids, Changelog, Restored};
pub(crate) use meta::{InputMeta, TaskMeta};

pub(crate) use transaction::{end_all_open, ProducerIds, Transaction};

use crate::log::LogStore;
use crate::processor::output::Routed;
use crate::state::TaskState;

/// A caught-up task commits at most this many times a commit interval.
pub(crate) const CAUGHT_UP_COMMITS_PER_INTERVAL: u32 = 4;

/// The producer ids processors' tasks own, from their commit records: the
/// transaction coordinator leaves their open transactions to them.
pub(crate) fn owned_producer_ids(
    state: &std::sync::Arc<crate::state::StateDb>,
) -> Result<std::collections::HashSet<i64>, String> {
    let mut owned = std::collections::HashSet::new();
    for name in state.processors() {
        let Some(processor) = state.existing(&name) else {
            continue;
        };
        for (_, bytes) in processor.metas().map_err(|e| e.to_string())? {
            if let Ok(meta) = TaskMeta::decode(&bytes) {
                if meta.producer_id >= 0 {
                    owned.insert(meta.producer_id);
                }
            }
        }
    }
    Ok(owned)
}

/// A task's exactly-once and stateful bookkeeping.
#[derive(Debug)]
pub(crate) struct Stateful {
    /// Outputs go through transactions (else plain durable batches).
    pub(crate) exactly_once: bool,
    /// The task's state was lost (the processor has stores and its state
    /// folder is gone): without a commit record, it is rebuilt.
    pub(crate) state_lost: bool,
    /// The last commit.
    pub(crate) meta: TaskMeta,
    /// Whether `recover` ran since the task (re)started.
    pub(crate) recovered: bool,
    pub(crate) transaction: Transaction,
    /// When the open transaction (or the first uncommitted batch) began.
    pub(crate) dirty_since: Option<Instant>,
    pub(crate) commit_interval: Duration,
    /// When the last commit started (`None`: none since the task started).
    last_commit: Option<Instant>,
    pub(crate) idle: IdleClock,
    /// The earliest timer of each domain, as of the last step (so the
    /// driver can tell when the task has work without input).
    pub(crate) next_event_timer: Option<i64>,
    pub(crate) next_processing_timer: Option<i64>,
    /// When the task last deleted the processed part of its input (tasks
    /// reading the processor's own repartition topic).
    pub(crate) purged_at: Instant,
    /// The last commit point's write failed, so it may or may not be on
    /// disk: the open transaction must not be aborted (recovery decides,
    /// from what RocksDB recorded).
    commit_uncertain: bool,
    /// Where commits also write their state changes (`--changelog`).
    pub(crate) changelog: Option<Changelog>,
    /// A commit whose state write is in flight (`commit_start`): its
    /// record, and whether it has outputs (markers to write once it
    /// lands).
    pending: Option<(TaskMeta, bool)>,
    /// Outputs of an exactly-once task processed while a commit is in
    /// flight: they belong to the next transaction, which opens after the
    /// last one's markers, so they wait here. At most
    /// `state.commit_bytes_max` of payload (the task then waits for the
    /// commit: see `hold`).
    held: Vec<Routed>,
    held_bytes: usize,
}

/// Where a commit stands after [`Stateful::commit_landed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Landing {
    /// No commit was in flight.
    None,
    /// Still in flight (not waited for).
    InFlight,
    /// Written, and its markers too.
    Landed,
}

impl Stateful {
    pub(crate) fn new(
        exactly_once: bool,
        state_lost: bool,
        producer_ids: ProducerIds,
        commit_interval: Duration,
        idle_advance_ms: Option<u64>,
    ) -> Self {
        Self {
            exactly_once,
            state_lost,
            meta: TaskMeta::default(),
            recovered: false,
            transaction: Transaction::new(producer_ids),
            dirty_since: None,
            commit_interval,
            last_commit: None,
            idle: IdleClock::new(idle_advance_ms),
            next_event_timer: None,
            next_processing_timer: None,
            purged_at: Instant::now(),
            commit_uncertain: false,
            changelog: None,
            pending: None,
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    /// Writes state changes to `changelog` in every commit; its marker
    /// goes first.
    pub(crate) fn with_changelog(mut self, changelog: Changelog) -> Self {
        self.transaction
            .mark_first(&changelog.topic, changelog.partition);
        self.changelog = Some(changelog);
        self
    }

    /// Restores the task's state from its changelog when it is missing
    /// (lost with the state folder, or a restore was interrupted). Returns
    /// what was restored; `None` when nothing was (the task then starts
    /// as it would without a changelog).
    pub(crate) fn restore(
        &mut self,
        state: &mut TaskState,
        stats: &crate::processor::status::PartitionStats,
        abort: &std::sync::atomic::AtomicBool,
    ) -> Result<Option<Restored>, String> {
        let storage = |e: crate::state::StateError| e.to_string();
        let pending = state.restore_pending().map_err(storage)?;
        let missing = self.state_lost && state.meta().map_err(storage)?.is_none();
        if !(pending || missing) {
            return Ok(None);
        }
        let restored = match &self.changelog {
            Some(changelog) => changelog.restore(state, stats, abort)?,
            None => None,
        };
        if restored.is_none() && pending {
            // Nothing to finish the restore from: no partial state stays.
            state.clear().map_err(storage)?;
            self.state_lost = true;
        }
        Ok(restored)
    }

    /// Brings the task to its last commit and fences what came after it:
    /// ends the transactions a crash left open in `outputs`, takes a fresh
    /// epoch and records it. Afterwards `meta.inputs` holds where to
    /// resume in each of `inputs`, in their order (an input the last
    /// commit does not know starts at its `InputStart::position`).
    pub(crate) fn recover(
        &mut self,
        state: &mut TaskState,
        store: &LogStore,
        outputs: &[String],
        inputs: &[InputStart<'_>],
    ) -> Result<(), String> {
        hold_point("before-recovery");
        state.discard();
        self.pending = None;
        self.take_held();
        if let Some(changelog) = &self.changelog {
            changelog.ensure(state)?;
        }
        let recorded = state.meta().map_err(|e| e.to_string())?;
        let found = recorded.is_some();
        let mut meta = match recorded {
            Some(bytes) => TaskMeta::decode(&bytes)?,
            None => TaskMeta::fresh(),
        };
        if meta.keys.is_none() || meta.stores.is_none() {
            // A record from before keys were counted, in all or per store
            // (or none at all: an empty range, counted at once).
            let stores = state.count_store_keys().map_err(|e| e.to_string())?;
            meta.keys = Some(stores.values().sum());
            meta.stores = Some(stores);
        }
        state.set_committed_keys(meta.keys);
        meta.inputs = inputs
            .iter()
            .map(|start| match meta.input(start.topic, start.first) {
                Some(input) => InputMeta {
                    topic: start.topic.to_string(),
                    ..input.clone()
                },
                // No commit record but a position in the consumer group:
                // the state was lost (its folder deleted). Rebuilt by
                // processing the input again from its start, writing no
                // outputs up to where they were written before.
                None if !found && self.state_lost && start.position > start.log_start => {
                    InputMeta {
                        topic: start.topic.to_string(),
                        position: start.log_start,
                        time: None,
                        rebuild_until: Some(start.position),
                    }
                }
                None => InputMeta {
                    topic: start.topic.to_string(),
                    position: start.position,
                    ..InputMeta::default()
                },
            })
            .collect();
        if let Some(changelog) = &self.changelog {
            changelog.abort_strays(outputs, meta.producer_id)?;
        }
        if self.exactly_once {
            self.transaction.recover(store, outputs, &mut meta)?;
        }
        meta.committed.clear();
        state
            .commit(&meta.encode(), true)
            .map_err(|e| format!("recording the task's new epoch failed: {e}"))?;
        if meta
            .inputs
            .iter()
            .any(|input| input.rebuild_until.is_some())
        {
            hold_point("rebuild-start");
        }
        self.idle.reset(meta.stream_time);
        self.meta = meta;
        self.dirty_since = None;
        self.recovered = true;
        Ok(())
    }

    /// The offset of input `topic` up to which the task is rebuilding lost
    /// state (its outputs are not written again), if it is.
    pub(crate) fn rebuilding_until(&self, topic: &str, position: i64) -> Option<i64> {
        self.meta
            .inputs
            .iter()
            .find(|input| input.topic == topic)
            .and_then(|input| input.rebuild_until)
            .filter(|until| position < *until)
    }

    /// Whether the open work should be committed now.
    pub(crate) fn commit_due(&self, state: &TaskState, commit_bytes_max: usize) -> bool {
        // With a changelog the staged state goes into the transaction too.
        let changelog_bytes = match self.changelog {
            Some(_) => state.staged_bytes(),
            None => 0,
        };
        self.dirty_since
            .is_some_and(|since| since.elapsed() >= self.commit_interval)
            || state.staged_bytes() >= commit_bytes_max
            || state.staged_over_budget()
            || self.transaction.bytes() + self.held_bytes + changelog_bytes >= commit_bytes_max
    }

    /// How long a caught-up task waits before committing its open work
    /// (zero: due now), if it has any: until its last commit is a
    /// [`CAUGHT_UP_COMMITS_PER_INTERVAL`]th of the commit interval old.
    pub(crate) fn caught_up_commit_in(&self) -> Option<Duration> {
        self.dirty_since?;
        let Some(last) = self.last_commit else {
            return Some(Duration::ZERO);
        };
        let pace = self.commit_interval / CAUGHT_UP_COMMITS_PER_INTERVAL;
        Some(pace.saturating_sub(last.elapsed()))
    }

    /// Notes that the task has uncommitted work.
    pub(crate) fn touch(&mut self) {
        self.dirty_since.get_or_insert_with(Instant::now);
    }

    /// Adds the stores an instance opened as windowed to those the task
    /// records (`TaskMeta::windowed`: kept across instances and restarts,
    /// as a plugin may open its stores only at its first call); whether
    /// any was new.
    pub(crate) fn note_windowed(&mut self, opened: &[String]) -> bool {
        let mut added = false;
        for name in opened {
            if !self.meta.windowed.contains(name) {
                self.meta.windowed.push(name.clone());
                added = true;
            }
        }
        added
    }

    /// Commits: outputs durable, then the commit point (state, input
    /// positions, stream time and transaction in one RocksDB write), whose
    /// write runs on a commit thread while the task goes on
    /// (`TaskState::commit_started`); [`Self::commit_landed`] writes the
    /// markers once it is written. `inputs`: where the task is in each
    /// input. A commit in flight must have landed first.
    pub(crate) fn commit_start(
        &mut self,
        state: &mut TaskState,
        mut inputs: Vec<InputMeta>,
        stream_time: Option<i64>,
        late_dropped: u64,
    ) -> Result<(), String> {
        debug_assert!(self.pending.is_none(), "a commit in flight landed first");
        for input in &mut inputs {
            input.rebuild_until = self.rebuilding_until(&input.topic, input.position);
        }
        let mut meta = self.meta.clone();
        meta.inputs = inputs;
        meta.stream_time = stream_time;
        meta.late_dropped = meta.late_dropped.saturating_add(late_dropped);
        meta.commits += 1;
        meta.timers = meta.timers.saturating_add(state.timers_delta()).max(0);
        meta.keys = meta
            .keys
            .map(|keys| keys.saturating_add_signed(state.keys_delta()));
        if let Some(stores) = meta.stores.as_mut() {
            for (name, delta) in state.store_keys_delta() {
                let name = String::from_utf8_lossy(name);
                let count = stores.get(&*name).copied().unwrap_or(0);
                match count.saturating_add_signed(delta) {
                    0 => stores.remove(&*name),
                    count => stores.insert(name.into_owned(), count),
                };
            }
        }
        if let Some(changelog) = &self.changelog {
            changelog.write(&mut self.transaction, state, &meta)?;
        }
        meta.committed = self
            .transaction
            .prepare()
            .map_err(|e| format!("making the outputs durable failed: {e}"))?;
        let outputs = !meta.committed.is_empty();
        if outputs {
            crash_point("after-outputs-durable");
        }
        if let Err(error) = state.commit_started(&meta.encode(), self.exactly_once) {
            self.commit_uncertain = true;
            return Err(format!("committing the state failed: {error}"));
        }
        self.pending = Some((meta, outputs));
        self.dirty_since = None;
        self.last_commit = Some(Instant::now());
        Ok(())
    }

    /// The commit in flight, once its state write is done (`wait`: waits
    /// for it): the markers written and its record the task's last commit.
    pub(crate) fn commit_landed(
        &mut self,
        state: &mut TaskState,
        wait: bool,
    ) -> Result<Landing, String> {
        if self.pending.is_none() {
            return Ok(Landing::None);
        }
        let Some(written) = state.commit_landed(wait) else {
            return Ok(Landing::InFlight);
        };
        let (meta, outputs) = self.pending.take().expect("checked above");
        if let Err(error) = written {
            self.commit_uncertain = true;
            return Err(format!("committing the state failed: {error}"));
        }
        if outputs {
            crash_point("after-state-commit");
        }
        // Stores noted as windowed while the commit was in flight (a new
        // instance's `init`) stay noted.
        let noted = std::mem::take(&mut self.meta.windowed);
        self.meta = meta;
        self.note_windowed(&noted);
        self.transaction
            .complete(true)
            .map_err(|e| format!("writing commit markers failed (recovery completes them): {e}"))?;
        Ok(Landing::Landed)
    }

    /// Whether a commit's state write is in flight.
    pub(crate) fn commit_in_flight(&self) -> bool {
        self.pending.is_some()
    }

    /// Keeps `routed`, outputs of the next transaction, until the commit in
    /// flight lands; whether they reached `commit_bytes_max` (the caller
    /// then waits for it).
    pub(crate) fn hold(&mut self, routed: Routed, commit_bytes_max: usize) -> bool {
        self.held_bytes += routed.payload_bytes();
        self.held.push(routed);
        self.held_bytes >= commit_bytes_max
    }

    /// The held outputs, in the order they were processed.
    pub(crate) fn take_held(&mut self) -> Vec<Routed> {
        self.held_bytes = 0;
        std::mem::take(&mut self.held)
    }

    /// Throws away the uncommitted work after a failure: aborts the open
    /// transaction, forgets staged state, and makes the next step recover.
    pub(crate) fn abandon(&mut self, mut state: Option<&mut TaskState>) {
        // A commit in flight ends first: its markers belong to it, not to
        // the work abandoned after it.
        if let Some(state) = state.as_deref_mut() {
            if let Err(error) = self.commit_landed(state, true) {
                tracing::warn!(%error, "a commit in flight failed; recovery decides its transaction");
            }
        }
        self.pending = None;
        self.take_held();
        if std::mem::take(&mut self.commit_uncertain) {
            // The commit point may have reached the disk: left open, the
            // transaction is committed or aborted by recovery, by what
            // RocksDB has.
            self.transaction.forget();
        } else if let Err(error) = self.transaction.complete(false) {
            tracing::warn!(%error, "aborting a processor transaction failed; recovery aborts it");
        }
        if let Some(state) = state {
            state.discard();
        }
        self.dirty_since = None;
        self.recovered = false;
    }
}

/// Where a task's input starts when its last commit has no record of it
/// (a first start, or an input added by a redeploy).
pub(crate) struct InputStart<'a> {
    pub(crate) topic: &'a str,
    /// The task's first input (a version 1 commit record's position is
    /// its position).
    pub(crate) first: bool,
    /// The consumer group's committed offset, else the log start.
    pub(crate) position: i64,
    pub(crate) log_start: i64,
}

/// A deterministic crash for black-box tests of recovery: with
/// `SLUICE_TEST_CRASH=<point>` in its environment, a broker aborts the
/// process (as kill -9 would stop it) the first time a processor task
/// reaches `<point>` in a commit with outputs: `after-outputs-durable` (before
/// the commit point), `after-state-commit` (before any marker),
/// `between-markers` (after the first commit marker is durable) or
/// `during-abort` (after the first abort marker). A signal from outside
/// cannot land on those instants. Debug builds only: a release binary
/// never reads the variable.
pub(crate) fn crash_point(point: &str) {
    crash_point_after(point, || {});
}

/// [`crash_point`], running `before` (making something durable) first when
/// the point is armed.
pub(crate) fn crash_point_after(point: &str, before: impl FnOnce()) {
    #[cfg(debug_assertions)]
    if std::env::var("SLUICE_TEST_CRASH").is_ok_and(|value| value == point) {
        before();
        tracing::error!(point, "SLUICE_TEST_CRASH: aborting the process");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = (point, before);
}

/// A deterministic pause for black-box tests of what a partition answers
/// while it restores or rebuilds its state: with
/// `SLUICE_TEST_HOLD=<point>:<file>[,<point>:<file>…]` in its environment,
/// a broker's processor task that reaches `<point>` waits there while
/// `<file>` exists (polled every 10 ms, for at most five minutes, so a test
/// that fails before removing it cannot hang a broker for good). Points:
/// `before-recovery` (a task starting, before it reads its state),
/// `before-restore-finish` (every entry of a restore from the changelog
/// written, its marker still there) and `rebuild-start` (the recovery's
/// commit that starts rebuilding lost state from the input). Debug builds
/// only: a release binary never reads the variable.
pub(crate) fn hold_point(point: &str) {
    #[cfg(debug_assertions)]
    if let Some(file) = std::env::var("SLUICE_TEST_HOLD").ok().and_then(|value| {
        value
            .split(',')
            .find_map(|hold| Some(hold.strip_prefix(point)?.strip_prefix(':')?.to_string()))
    }) {
        tracing::warn!(
            point,
            file,
            "SLUICE_TEST_HOLD: holding while the file exists"
        );
        let until = Instant::now() + Duration::from_secs(300);
        while std::path::Path::new(&file).exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// Stream time from the wall clock while the input is idle
/// (`--idle-advance-ms`): once no record has arrived for that long, stream
/// time moves on as the wall clock does, from the last record's timestamp,
/// so windows close and event-time timers fire without new input.
#[derive(Debug)]
pub(crate) struct IdleClock {
    idle_advance_ms: Option<u64>,
    /// Wall time and stream time when the last record arrived.
    last_record: (Instant, Option<i64>),
}

impl IdleClock {
    fn new(idle_advance_ms: Option<u64>) -> Self {
        Self {
            idle_advance_ms,
            last_record: (Instant::now(), None),
        }
    }

    /// How long input must be quiet before stream time follows the wall
    /// clock (`None`: idle advance is off).
    pub(crate) fn idle_advance(&self) -> Option<Duration> {
        self.idle_advance_ms.map(Duration::from_millis)
    }

    /// Restarts the idle wait from now, at `stream_time`.
    pub(crate) fn reset(&mut self, stream_time: Option<i64>) {
        self.last_record = (Instant::now(), stream_time);
    }

    /// The stream time idling gives now, if the input has been idle long
    /// enough and idle advance is on.
    pub(crate) fn advanced(&self) -> Option<i64> {
        let idle_ms = self.idle_advance_ms?;
        let (since, stream_time) = self.last_record;
        let elapsed = since.elapsed();
        (elapsed >= Duration::from_millis(idle_ms))
            .then(|| stream_time.map(|t| t.saturating_add(elapsed.as_millis() as i64)))
            .flatten()
    }

    /// How long until stream time reaches `at` by idling, if it will.
    pub(crate) fn until(&self, at: i64) -> Option<Duration> {
        let idle_ms = self.idle_advance_ms?;
        let (since, stream_time) = self.last_record;
        let behind = u64::try_from(at.saturating_sub(stream_time?)).unwrap_or(0);
        let due = since + Duration::from_millis(behind.max(idle_ms));
        Some(due.saturating_duration_since(Instant::now()))
    }
}
