//! One task's view of its state: reads through its staged writes and its
//! cache of committed values to RocksDB, writes staged until `commit`,
//! timers, and the task's metadata record, which commits in the same write
//! batch.
//!
//! The entries of the task's own stores (nearly every read and write) live
//! in one hash table, staged write and committed value together
//! (`cache::Entries`); timers and everything else the task stages are in
//! an ordered map (`Staged`), which the step reads in order for due timers.

use std::collections::BTreeMap;

use rocksdb::WriteBatch;

use super::cache::Entries;
use super::commit_writes::{add_write, CommitWrites};
use super::committer::InFlight;
use super::db::ProcessorState;
use super::keys::{self, Domain};
use super::read_beside::ReadBeside;
use super::staged::Staged;
use super::StateError;

mod counts;
mod ranges;
mod timers;

use counts::KeyCounts;
use timers::TimerBounds;

/// A timer of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// The clock it follows.
    pub domain: Domain,
    /// When it is due, in milliseconds of that clock.
    pub at: i64,
    /// The key it was scheduled for.
    pub key: Vec<u8>,
}

#[cfg(test)]
thread_local! {
    /// Entries `merged` looked at on this thread, live or dead (tests:
    /// what a scan costs).
    pub(super) static MERGED_STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The state of one task (an input partition) of one processor.
#[derive(Debug)]
pub(crate) struct TaskState {
    processor: ProcessorState,
    task: u32,
    /// The last commit, handed to the commit threads and not yet known
    /// written (`commit_started`). Its store entries are the entries'
    /// committed values and its other writes (timers) stay staged until it
    /// lands, so the task reads as if it had; a read that would reach
    /// RocksDB for a store key waits for it.
    in_flight: Option<Pending>,
    /// Staged writes other than store entries (timers).
    staged: Staged,
    /// The entries of the task's own stores: staged writes and committed
    /// values (filled by reads and commits, emptied by `discard`).
    entries: Entries,
    /// `staged.bytes()` as last added to the database's staged total.
    reported_bytes: usize,
    /// Timers added (+1) and removed (-1) since the last commit, so the
    /// task can keep a count of its timers without scanning them.
    timers_delta: i64,
    /// `timers_delta` at the savepoint.
    timers_delta_saved: i64,
    /// Entries of the task's stores added and removed since the last
    /// commit, in all and per store, so the task keeps a count of its
    /// keys.
    keys: KeyCounts,
    /// What the task knows of where its timers lie, per timer domain.
    timer_bounds: [TimerBounds; 2],
    /// Hashes the keys of `TimerBounds::at_ceiling`.
    timer_hasher: foldhash::fast::RandomState,
    /// What this call read from RocksDB and `entries` did not keep.
    read_beside: ReadBeside,
    /// Writes staged so far (wrapping), so a caller can tell how much a
    /// plugin call wrote.
    writes: u64,
    /// Ranges of the task's stores cleared since the last commit (full
    /// keys, `[start, end)`), in the order they were cleared: each commits
    /// as one range tombstone, and until then the task answers for them
    /// (RocksDB still holds their old values). At most
    /// [`CLEARED_RANGES_MAX`].
    cleared: Vec<(Vec<u8>, Vec<u8>)>,
    /// `cleared.len()` at the savepoint.
    cleared_saved: usize,
    /// Whether a range is cleared key by key (a task with a changelog:
    /// every deleted key is a record of it).
    clear_key_by_key: bool,
    /// The task's committed key count, when its owner told it
    /// (`set_committed_keys`; kept up to date by `commit`).
    committed_keys: Option<u64>,
    /// The full key of the store write being staged (`stage_entry`): at
    /// most a store prefix and `state.key_bytes_max`.
    full_key: Vec<u8>,
}

/// Ranges a task clears with range tombstones between two commits; past
/// this a `clear_range` deletes key by key (`delete_range`). Every read of
/// a key the task does not hold looks through them, and RocksDB's reads
/// slow with many tombstones in a memtable: they are for whole ranges (a
/// window's keys), not single keys.
pub(crate) const CLEARED_RANGES_MAX: usize = 16;

/// A commit handed to the commit threads and not yet known written.
#[derive(Debug)]
struct Pending {
    write: InFlight,
    /// Its other writes (timers), kept staged until it lands: then those
    /// not written again since are unstaged.
    carried: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Drop for TaskState {
    fn drop(&mut self) {
        // A task started again on this partition must find this one's
        // last commit written (or failed).
        if let Some(pending) = &self.in_flight {
            pending.write.wait();
        }
        self.processor.db.account_staged(self.reported_bytes, 0);
    }
}

impl TaskState {
    pub(crate) fn new(processor: ProcessorState, task: u32) -> Self {
        Self {
            entries: Entries::new(processor.db.value_cache.clone()),
            processor,
            task,
            in_flight: None,
            staged: Staged::default(),
            reported_bytes: 0,
            timers_delta: 0,
            timers_delta_saved: 0,
            keys: KeyCounts::default(),
            timer_bounds: Default::default(),
            timer_hasher: foldhash::fast::RandomState::default(),
            read_beside: ReadBeside::default(),
            writes: 0,
            cleared: Vec::new(),
            cleared_saved: 0,
            clear_key_by_key: false,
            committed_keys: None,
            full_key: Vec::new(),
        }
    }

    /// The task's committed key count (its commit record's), so that it
    /// can tell when its entries hold every key it has.
    pub(crate) fn set_committed_keys(&mut self, keys: Option<u64>) {
        self.committed_keys = keys;
    }

    /// Whether the entries hold every key the task has: as many live
    /// entries as keys. Then a key of its stores they do not hold is
    /// absent, and is answered so without reading RocksDB (a new window's
    /// first count: a RocksDB read finding nothing searches every
    /// memtable and a filter per file), and a store range's count is
    /// theirs (`clear_range`).
    fn holds_every_key(&self) -> bool {
        self.committed_keys
            .and_then(|keys| keys.checked_add_signed(self.keys.delta()))
            .is_some_and(|keys| keys == self.entries.live())
    }

    /// Checks (debug builds: every test) that RocksDB holds nothing at
    /// `key`, which the task answered as absent without reading it.
    fn debug_check_absent(&self, key: &[u8]) {
        let counts = (self.committed_keys, self.keys.delta(), self.entries.live());
        check_absent(
            &self.processor,
            self.write_in_flight(),
            self.task,
            key,
            counts,
        );
    }

    /// Makes `clear_range` delete key by key, as `delete_range` does: a
    /// task with a changelog records every deleted key in it.
    pub(crate) fn clear_key_by_key(mut self) -> Self {
        self.clear_key_by_key = true;
        self
    }

    /// The task (input partition) this state belongs to.
    pub(crate) fn task(&self) -> u32 {
        self.task
    }

    pub(super) fn processor(&self) -> &ProcessorState {
        &self.processor
    }

    /// Every staged write of the task (a put, or a delete for `None`), in
    /// key order: what its next commit changes.
    pub(crate) fn staged_changes(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        self.staged_in(&keys::task_start(self.task), None)
            .into_iter()
    }

    /// Staged writes with keys in `[start, end)`, in key order: the store
    /// entries' and the others'.
    fn staged_in<'a>(
        &'a self,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
        let mut found: Vec<_> = self.staged.range(start, end).collect();
        if self.holds_stores(start, end) {
            let entries = self.entries.staged_range(start, end);
            if !entries.is_empty() {
                let sorted = found.is_empty();
                found.extend(entries);
                if !sorted {
                    found.sort_unstable_by(|a, b| a.0.cmp(b.0));
                }
            }
        }
        found
    }

    /// Whether `[start, end)` overlaps the task's store entries.
    fn holds_stores(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        let (stores_start, stores_end) = keys::stores_range(self.task);
        start < stores_end.as_slice() && end.is_none_or(|end| end > stores_start.as_slice())
    }

    /// The key prefix of store `name` in this task (tests; plugins get it
    /// from the store handle they open).
    #[cfg(test)]
    pub(crate) fn store(&self, name: &str) -> Result<Vec<u8>, StateError> {
        keys::validate_store_name(name)?;
        Ok(keys::store_prefix(self.task, name))
    }

    /// What the cache of committed values holds for `key` of `store`
    /// (tests: whether a read would reach RocksDB).
    #[cfg(test)]
    pub(crate) fn cached(&mut self, store: &[u8], key: &[u8]) -> Option<Option<Vec<u8>>> {
        let full = keys::entry(store, key);
        self.entries
            .committed(&full)
            .map(|value| value.map(<[u8]>::to_vec))
    }

    fn check_key(&self, key: &[u8]) -> Result<(), StateError> {
        let max = self.processor.config().key_bytes_max;
        if key.len() > max {
            return Err(StateError::KeyTooLarge {
                bytes: key.len(),
                max,
            });
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), StateError> {
        let max = self.processor.config().value_bytes_max;
        if value.len() > max {
            return Err(StateError::ValueTooLarge {
                bytes: value.len(),
                max,
            });
        }
        Ok(())
    }

    /// Stages a write of a full key, within the staged bytes bounds: a
    /// call's own (`state.staged_bytes_max`), and the task's
    /// (`commit_bytes_max + staged_bytes_max`: commit first). The host's
    /// own writes between calls (removing fired timers) are bounded by
    /// the timers fired per step instead.
    fn stage(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StateError> {
        self.stage_over(key, value, None)
    }

    /// [`Self::stage`] of a key whose value the caller read, merged with
    /// the staged writes (`found`): where nothing here knows the key, that
    /// is RocksDB's, so it need not be read again (a range delete).
    fn stage_over(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        mut found: Option<Vec<u8>>,
    ) -> Result<(), StateError> {
        self.writes = self.writes.wrapping_add(1);
        if self.staged.in_call() {
            let config = self.processor.config();
            let max = config.staged_bytes_max;
            if self.staged.call_bytes() + self.entries.call_bytes() > max {
                return Err(StateError::StagedFull { max });
            }
            let bytes = self.staged_bytes();
            if bytes > max.saturating_add(config.commit_bytes_max) {
                return Err(StateError::CommitFirst { bytes });
            }
        }
        let adds = value.is_some();
        if !self.cacheable(key) {
            self.staged
                .write_with(key.to_vec(), value.map(<[u8]>::to_vec), |_| {
                    Ok::<_, StateError>(false)
                })?;
            return Ok(());
        }
        // Whether the key held a value, for the key count: staged, else
        // cached, else nothing when the entries hold every key, else (a
        // write with no read before it) RocksDB, cached.
        let holds_every_key = self.holds_every_key();
        let counts = (self.committed_keys, self.keys.delta(), self.entries.live());
        let (processor, beside, cleared) = (&self.processor, &self.read_beside, &self.cleared);
        let in_flight = self.in_flight.as_ref().map(|pending| &pending.write);
        let existed = self.entries.stage(key, value, |key| {
            if let Some(found) = found.take() {
                return Ok(Some(found));
            }
            if keys::in_cleared(cleared, key).is_some() {
                return Ok(None);
            }
            if holds_every_key {
                check_absent(processor, in_flight, self.task, key, counts);
                return Ok(None);
            }
            if let Some(value) = beside.get(key) {
                return Ok(value);
            }
            settled(in_flight)?;
            let family = processor.family()?;
            let read = processor.db.task_read_options();
            let value = processor.db.db().get_pinned_cf_opt(&family, key, &read)?;
            Ok::<_, StateError>(value.map(|value| value.to_vec()))
        })?;
        let delta = i64::from(adds) - i64::from(existed);
        if delta != 0 {
            // A key added or removed (not a value replaced): counted for
            // its store.
            self.keys.add(keys::store_name(key), delta);
        }
        Ok(())
    }

    /// Whether `key` may be cached: an entry of one of the task's own
    /// stores (tables are written by their catch-up, not by the task).
    fn cacheable(&self, key: &[u8]) -> bool {
        keys::is_store_entry_of(self.task, key)
    }

    /// What is staged for `key`, else what the cache knows RocksDB holds.
    fn known(&mut self, key: &[u8]) -> Option<Option<&[u8]>> {
        match self.cacheable(key) {
            true => self.entries.get(key),
            false => self.staged.get(key),
        }
    }

    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(known) = self.known(key) {
            return Ok(known.map(<[u8]>::to_vec));
        }
        if keys::in_cleared(&self.cleared, key).is_some() {
            return Ok(None);
        }
        let cacheable = self.cacheable(key);
        if cacheable && self.holds_every_key() {
            self.debug_check_absent(key);
            return Ok(None);
        }
        if cacheable {
            self.settled()?;
        }
        let family = self.processor.family()?;
        let read = self.processor.db.task_read_options();
        let value = self
            .processor
            .db
            .db()
            .get_pinned_cf_opt(&family, key, &read)?;
        if cacheable {
            fill(
                &mut self.entries,
                &mut self.read_beside,
                key,
                value.as_deref(),
            );
        }
        Ok(value.map(|value| value.to_vec()))
    }

    pub(crate) fn get(&mut self, store: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.check_key(key)?;
        self.read(&keys::entry(store, key))
    }

    /// `get` of several keys, answers in the same order.
    pub(crate) fn get_many(
        &mut self,
        store: &[u8],
        user_keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        let mut answers = vec![None; user_keys.len()];
        self.get_many_with(
            store,
            user_keys.iter().map(Vec::as_slice),
            |index, value| answers[index] = value.map(<[u8]>::to_vec),
        )?;
        Ok(answers)
    }

    /// `get` of several keys, each answer handed to `answer(index, value)`
    /// without a copy, once per key but not in order: staged and cached
    /// keys are answered at once, the rest after one RocksDB multi-get (in
    /// key order), and cached.
    pub(crate) fn get_many_with<'k>(
        &mut self,
        store: &[u8],
        user_keys: impl Iterator<Item = &'k [u8]>,
        mut answer: impl FnMut(usize, Option<&[u8]>),
    ) -> Result<(), StateError> {
        // The full keys, one after another, and where each ends.
        let mut fulls = Vec::new();
        let mut ends = Vec::new();
        for key in user_keys {
            self.check_key(key)?;
            fulls.extend_from_slice(store);
            fulls.extend_from_slice(key);
            ends.push(fulls.len());
        }
        let full = |i: usize| &fulls[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
        let mut missing = Vec::new();
        let cleared = &self.cleared;
        let mut known = |index: usize, value: Option<Option<&[u8]>>| match value {
            Some(value) => answer(index, value),
            // Under a range cleared since the commit: nothing, whatever
            // RocksDB still holds (and not cached: the clear may roll back).
            None if keys::in_cleared(cleared, full(index)).is_some() => answer(index, None),
            None => missing.push((index, full(index).to_vec())),
        };
        let cacheable = self.cacheable(store);
        if cacheable {
            self.entries.get_batch(ends.len(), full, &mut known);
        } else {
            for index in 0..ends.len() {
                known(index, self.staged.get(full(index)));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if cacheable && self.holds_every_key() {
            // Not kept either: while the entries hold every key, an absent
            // one costs nothing to answer again.
            for (index, key) in &missing {
                self.debug_check_absent(key);
                answer(*index, None);
            }
            return Ok(());
        }
        let sorted = missing.windows(2).all(|pair| pair[0].1 <= pair[1].1);
        if !sorted {
            missing.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        }
        if cacheable {
            self.settled()?;
        }
        let family = self.processor.family()?;
        let found = self.processor.db.db().batched_multi_get_cf_opt(
            &family,
            missing.iter().map(|(_, key)| key),
            true,
            &self.processor.db.task_read_options(),
        );
        for ((index, key), value) in missing.iter().zip(found) {
            let value = value?;
            if cacheable {
                fill(
                    &mut self.entries,
                    &mut self.read_beside,
                    key,
                    value.as_deref(),
                );
            }
            answer(*index, value.as_deref());
        }
        Ok(())
    }

    /// Stages `value` at `key` (copied: a short value into the task's
    /// entry, with no allocation).
    pub(crate) fn put(
        &mut self,
        store: &[u8],
        key: &[u8],
        value: impl AsRef<[u8]>,
    ) -> Result<(), StateError> {
        let value = value.as_ref();
        self.check_key(key)?;
        self.check_value(value)?;
        self.stage_entry(store, key, Some(value))
    }

    pub(crate) fn delete(&mut self, store: &[u8], key: &[u8]) -> Result<(), StateError> {
        self.check_key(key)?;
        self.stage_entry(store, key, None)
    }

    /// [`Self::stage`] of store `store`'s `key`, its full key built in
    /// the task's buffer (no allocation per write).
    fn stage_entry(
        &mut self,
        store: &[u8],
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StateError> {
        let mut full = std::mem::take(&mut self.full_key);
        full.clear();
        full.extend_from_slice(store);
        full.extend_from_slice(key);
        let staged = self.stage(&full, value);
        self.full_key = full;
        staged
    }

    /// Adds `delta` to the decimal counter at `key`; returns the new value.
    pub(crate) fn add(&mut self, store: &[u8], key: &[u8], delta: i64) -> Result<i64, StateError> {
        self.check_key(key)?;
        let full = keys::entry(store, key);
        let value = match self.read(&full)? {
            None => 0,
            Some(bytes) => parse_counter(&bytes)?,
        };
        let sum = value
            .checked_add(delta)
            .ok_or(StateError::CounterOverflow { value, delta })?;
        self.stage(&full, Some(sum.to_string().as_bytes()))?;
        Ok(sum)
    }

    /// Timers added less timers removed since the last commit.
    pub(crate) fn timers_delta(&self) -> i64 {
        self.timers_delta
    }

    /// Writes staged so far, wrapping: the difference of two readings is
    /// the writes in between (those refused included).
    pub(crate) fn writes(&self) -> u64 {
        self.writes
    }

    /// Store entries added less entries removed since the last commit.
    pub(crate) fn keys_delta(&self) -> i64 {
        self.keys.delta()
    }

    /// [`Self::keys_delta`] per store that changed: its name and delta.
    pub(crate) fn store_keys_delta(&self) -> impl Iterator<Item = (&[u8], i64)> {
        self.keys.per_store()
    }

    /// Starts a plugin call: its writes can be rolled back.
    pub(crate) fn savepoint(&mut self) {
        self.read_beside.clear();
        self.staged.savepoint();
        self.entries.savepoint();
        self.timers_delta_saved = self.timers_delta;
        self.keys.savepoint();
        self.cleared_saved = self.cleared.len();
    }

    /// Keeps the call's writes.
    pub(crate) fn release(&mut self) {
        self.read_beside.clear();
        self.staged.release();
        self.entries.release();
        self.report();
    }

    /// Undoes the call's writes.
    pub(crate) fn rollback(&mut self) {
        self.read_beside.clear();
        self.staged.rollback();
        self.entries.rollback();
        self.uncleared_after(self.cleared_saved);
        self.timers_delta = self.timers_delta_saved;
        self.keys.rollback();
        // A timer removed in the call may be back below a floor, and
        // earlier than the earliest known.
        for bounds in &mut self.timer_bounds {
            bounds.floor = None;
            bounds.earliest = None;
        }
        self.report();
    }

    /// Brings the database's staged total up to date with this task's.
    fn report(&mut self) {
        let now = self.staged_bytes();
        self.processor.db.account_staged(self.reported_bytes, now);
        self.reported_bytes = now;
    }

    /// Whether every task's staged bytes together call for a commit.
    pub(crate) fn staged_over_budget(&self) -> bool {
        self.processor.db.staged_over_budget()
    }

    /// Staged bytes at which the task should commit (`state.commit_bytes_max`).
    pub(crate) fn commit_bytes_max(&self) -> usize {
        self.processor.config().commit_bytes_max
    }

    /// Bytes staged since the last commit.
    pub(crate) fn staged_bytes(&self) -> usize {
        self.staged.bytes() + self.entries.staged_bytes()
    }

    pub(crate) fn has_staged(&self) -> bool {
        !self.staged.is_empty() || self.entries.has_staged() || !self.cleared.is_empty()
    }

    /// Forgets everything staged (an aborted transaction).
    pub(crate) fn discard(&mut self) {
        if let Some(pending) = self.in_flight.take() {
            pending.write.wait();
        }
        self.read_beside.clear();
        self.staged.take();
        self.entries.clear();
        self.cleared.clear();
        self.cleared_saved = 0;
        self.timers_delta = 0;
        self.timers_delta_saved = 0;
        self.keys.take();
        self.forget_timer_bounds();
        self.report();
    }

    /// Forgets what the task knew of where its timers lie.
    fn forget_timer_bounds(&mut self) {
        self.timer_bounds = Default::default();
        self.entries.charge_beside(0);
    }

    /// The committed metadata record of this task.
    pub(crate) fn meta(&self) -> Result<Option<Vec<u8>>, StateError> {
        self.settled()?;
        self.processor.meta(self.task)
    }

    /// Commits the staged writes and `meta` in one write batch, synced to
    /// disk when `sync`, caches what it wrote, and waits until it is
    /// written. On failure the staged writes are gone too, and the cache
    /// (the disk may or may not hold the batch): the task must start again
    /// from its last commit.
    pub(crate) fn commit(&mut self, meta: &[u8], sync: bool) -> Result<(), StateError> {
        self.start_commit(meta, sync, false)?;
        self.commit_landed(true).unwrap_or(Ok(()))
    }

    /// Starts a commit as [`Self::commit`] does without waiting for the
    /// write: it goes to a commit thread, and the task reads as if it were
    /// written (its store entries' values are the entries' committed ones,
    /// its other writes stay staged until it lands), so it can go on
    /// processing. A commit still in flight is waited for first. Its
    /// outcome: [`Self::commit_landed`]; until then a read of RocksDB for a
    /// store key waits for it.
    pub(crate) fn commit_started(&mut self, meta: &[u8], sync: bool) -> Result<(), StateError> {
        self.start_commit(meta, sync, true)
    }

    fn start_commit(
        &mut self,
        meta: &[u8],
        sync: bool,
        keep_staged: bool,
    ) -> Result<(), StateError> {
        if let Some(landed) = self.commit_landed(true) {
            landed?;
        }
        self.read_beside.clear();
        let staged = self.staged.take();
        self.timers_delta = 0;
        self.timers_delta_saved = 0;
        let keys_delta = self.keys.take();
        let batch = self.commit_batch(&staged, meta);
        let cleared = std::mem::take(&mut self.cleared);
        self.cleared_saved = 0;
        match batch {
            Ok(batch) => {
                self.committed_keys = self
                    .committed_keys
                    .and_then(|keys| keys.checked_add_signed(keys_delta));
                let writes = CommitWrites {
                    batch,
                    family: self.processor.family_name().to_string(),
                    entries: self.entries.committed_all(),
                    cleared,
                };
                let db = &self.processor.db;
                let in_flight = db.committer.submit(db, writes, sync);
                let domains = [Domain::EventTime, Domain::ProcessingTime];
                for (bounds, domain) in self.timer_bounds.iter_mut().zip(domains) {
                    bounds.committed(self.task, domain, &staged, &self.timer_hasher);
                }
                let mut bytes: usize = self
                    .timer_bounds
                    .iter()
                    .map(TimerBounds::at_ceiling_bytes)
                    .sum();
                if bytes > self.entries.beside_bytes_max() {
                    for bounds in &mut self.timer_bounds {
                        bounds.at_ceiling = None;
                    }
                    bytes = 0;
                }
                self.entries.charge_beside(bytes);
                let carried = match keep_staged && !staged.is_empty() {
                    true => {
                        self.staged.keep_in_flight(staged.clone());
                        staged
                    }
                    false => BTreeMap::new(),
                };
                self.in_flight = Some(Pending {
                    write: in_flight,
                    carried,
                });
                self.report();
                Ok(())
            }
            Err(error) => {
                self.lost_commit();
                Err(error)
            }
        }
    }

    /// The outcome of the commit in flight, once written (`wait`: waits
    /// for it); `None` with none in flight, or (not `wait`) while it is.
    /// Landed, the other writes it carried and nothing staged again since
    /// are unstaged. Failed, the cache is dropped (the disk may or may not
    /// hold the batch): the task must start again from its last commit.
    pub(crate) fn commit_landed(&mut self, wait: bool) -> Option<Result<(), StateError>> {
        let write = &self.in_flight.as_ref()?.write;
        let outcome = match wait {
            true => Some(write.wait()),
            false => write.poll(),
        }?
        .clone();
        let pending = self.in_flight.take().expect("checked above");
        match outcome {
            Ok(()) => {
                self.staged.landed(&pending.carried);
                self.report();
                Some(Ok(()))
            }
            Err(error) => {
                self.lost_commit();
                Some(Err(write_failed(&error)))
            }
        }
    }

    /// Waits for the commit in flight before a read of RocksDB that it may
    /// change (a store key the entries do not hold: they may have dropped
    /// its value).
    fn settled(&self) -> Result<(), StateError> {
        settled(self.write_in_flight())
    }

    /// The write of the commit in flight, if there is one.
    fn write_in_flight(&self) -> Option<&InFlight> {
        self.in_flight.as_ref().map(|pending| &pending.write)
    }

    /// After a commit that failed: what the task cached of its state is
    /// dropped.
    fn lost_commit(&mut self) {
        self.entries.clear();
        self.forget_timer_bounds();
        self.committed_keys = None;
        self.report();
    }

    /// The write batch of a commit before its store entries' writes (the
    /// commit thread adds them, `CommitWrites`): the range tombstones,
    /// `staged` and the metadata record `meta`.
    fn commit_batch(
        &self,
        staged: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        meta: &[u8],
    ) -> Result<WriteBatch, StateError> {
        let family = self.processor.family()?;
        let mut batch = WriteBatch::default();
        // The range tombstones first: the puts staged after a clear come
        // later in the batch, so they win; a point delete under one is
        // redundant.
        for (from, to) in &self.cleared {
            batch.delete_range_cf(&family, from, to);
        }
        for (key, value) in staged {
            add_write(&mut batch, &family, &self.cleared, key, value.as_deref());
        }
        batch.put_cf(&family, keys::meta(self.task), meta);
        Ok(batch)
    }
}

#[cfg(test)]
thread_local! {
    /// Whether `check_absent` reads RocksDB on this thread (tests counting
    /// the reads of the task turn it off).
    pub(crate) static CHECK_ABSENT: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Checks (debug builds: every test) that RocksDB holds nothing at `key`
/// of `task`, which the task answered as absent without reading it (its
/// entries held every key it has: `counts` are its committed key count,
/// the change since and its live entries).
fn check_absent(
    processor: &ProcessorState,
    in_flight: Option<&InFlight>,
    task: u32,
    key: &[u8],
    counts: (Option<u64>, i64, u64),
) {
    #[cfg(test)]
    if !CHECK_ABSENT.with(std::cell::Cell::get) {
        return;
    }
    if cfg!(debug_assertions) {
        // The commit in flight may delete the key.
        if let Some(in_flight) = in_flight {
            in_flight.wait();
        }
        let family = processor.family().expect("the task's column family");
        let read = processor.db.task_read_options();
        let value = processor
            .db
            .db()
            .get_pinned_cf_opt(&family, key, &read)
            .expect("a read of RocksDB");
        assert!(
            value.is_none(),
            "task {task} answered key {key:?} absent without reading it, but RocksDB holds it \
             (committed keys, change since, live entries: {counts:?})"
        );
    }
}

/// Waits for the commit `in_flight`, if there is one; an error if its
/// write failed.
fn settled(in_flight: Option<&InFlight>) -> Result<(), StateError> {
    match in_flight.map(InFlight::wait) {
        Some(Err(error)) => Err(write_failed(error)),
        _ => Ok(()),
    }
}

/// The error of a commit whose write failed (RocksDB's `error`).
fn write_failed(error: &str) -> StateError {
    StateError::Storage(format!("writing the last commit failed: {error}"))
}

/// A counter's decimal text.
pub(crate) fn parse_counter(bytes: &[u8]) -> Result<i64, StateError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(32)]).into_owned();
            StateError::NotACounter(shown)
        })
}

/// Caches what RocksDB holds at `key` in `entries`, or keeps it `beside`
/// them until the call ends when their share did not keep it.
fn fill(entries: &mut Entries, beside: &mut ReadBeside, key: &[u8], value: Option<&[u8]>) {
    if !entries.fill(key, value) {
        beside.keep(key, value);
    }
}
