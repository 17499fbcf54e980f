//! A task's timers: scheduled, cancelled and found due through its staged
//! writes, with what the task knows of where they lie so it reads less.

use std::collections::BTreeMap;
use std::ops::Bound;

use hashbrown::HashTable;
use rocksdb::ReadOptions;

use super::super::keys::{self, Domain};
use super::super::StateError;
use super::{TaskState, Timer};

/// What a task knows of where the timers of one domain lie, so that it
/// reads less of them.
#[derive(Debug, Default)]
pub(super) struct TimerBounds {
    /// A key below which the task has no live timer (`None`: the domain's
    /// start), so a scan for due timers starts past the ones fired and
    /// deleted: their staged deletes, and after the commit RocksDB's
    /// tombstones, until compaction drops them. Without it a window close
    /// of N keys (N timers, fired a batch per round) walked the deleted
    /// ones again in each round and each step: N²/2 entries, seconds of
    /// stall for 100k windows. Raised by what a scan finds dead, lowered
    /// by a timer scheduled below it, and forgotten whenever writes are
    /// undone.
    pub(super) floor: Option<Vec<u8>>,
    /// A time no committed timer is due after (`None`: not known yet;
    /// `i64::MIN` with none), so that a timer scheduled later (a new
    /// session window's, a new tumbling window's until the first commit
    /// due at its time) is known to be new from the staged writes alone,
    /// without reading RocksDB for a key that is not there. Read from
    /// RocksDB once, raised at each commit by `scheduled_max`, forgotten
    /// when the staged writes are dropped or a commit fails.
    pub(super) ceiling: Option<i64>,
    /// The latest time a timer was scheduled for since the last commit
    /// (rolled-back calls included: a bound is enough).
    pub(super) scheduled_max: Option<i64>,
    /// Hashes of the keys of the committed timers due at `ceiling`, when
    /// known (`None`: not known, or over the task's bound). A minute's
    /// tumbling windows share one due time, so after the minute's first
    /// commit every later window's timer is due exactly at the ceiling,
    /// not after it: one whose hash is not here is new too, without a
    /// RocksDB read for a key that is not there. Known from the commit
    /// that raised the ceiling (no committed timer was due that late
    /// before it), each commit adding the timers it wrote at the ceiling;
    /// removed ones stay (a read then answers). Counted in the task's
    /// value-cache share (`Entries::charge_beside`), at most half of it.
    pub(super) at_ceiling: Option<HashTable<u64>>,
}

impl TimerBounds {
    /// Bytes `at_ceiling` holds (a hash and a control byte per bucket).
    pub(super) fn at_ceiling_bytes(&self) -> usize {
        self.at_ceiling
            .as_ref()
            .map_or(0, |set| set.capacity() * (std::mem::size_of::<u64>() + 1))
    }

    /// After a commit of `staged` (`domain`'s timers among them, of task
    /// `task`): the ceiling raised to the latest time scheduled since the
    /// last one, and the timers written at the ceiling noted.
    pub(super) fn committed(
        &mut self,
        task: u32,
        domain: Domain,
        staged: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        hasher: &foldhash::fast::RandomState,
    ) {
        use std::hash::BuildHasher;
        let (Some(ceiling), Some(scheduled)) = (self.ceiling.as_mut(), self.scheduled_max.take())
        else {
            return;
        };
        if scheduled > *ceiling {
            *ceiling = scheduled;
            self.at_ceiling = Some(HashTable::new());
        }
        let Some(set) = self.at_ceiling.as_mut() else {
            return;
        };
        let start = keys::timer(task, domain, *ceiling, &[]);
        let end = keys::timers_due_end(task, domain, *ceiling);
        let range = (
            Bound::Included(start.as_slice()),
            Bound::Excluded(end.as_slice()),
        );
        for (key, value) in staged.range::<[u8], _>(range) {
            let hash = hasher.hash_one(key);
            if value.is_some() && set.find(hash, |h| *h == hash).is_none() {
                set.insert_unique(hash, hash, |h| *h);
            }
        }
    }

    /// Whether a committed timer with key `full` due at the ceiling is
    /// known not to exist.
    fn known_absent_at_ceiling(&self, full: &[u8], hasher: &foldhash::fast::RandomState) -> bool {
        use std::hash::BuildHasher;
        self.at_ceiling.as_ref().is_some_and(|set| {
            let hash = hasher.hash_one(full);
            set.find(hash, |h| *h == hash).is_none()
        })
    }
}

impl TaskState {
    pub(crate) fn schedule(
        &mut self,
        domain: Domain,
        key: &[u8],
        at: i64,
    ) -> Result<(), StateError> {
        self.check_key(key)?;
        let full = keys::timer(self.task, domain, at, key);
        let ceiling = self.timer_ceiling(domain)?;
        let known_absent = at > ceiling
            || (at == ceiling
                && self.timer_bounds[domain as usize]
                    .known_absent_at_ceiling(&full, &self.timer_hasher));
        let new = match known_absent {
            true => !matches!(self.staged.get(&full), Some(Some(_))),
            false => self.read(&full)?.is_none(),
        };
        let bounds = &mut self.timer_bounds[domain as usize];
        bounds.scheduled_max = Some(bounds.scheduled_max.map_or(at, |max| max.max(at)));
        if bounds.floor.as_ref().is_some_and(|floor| full < *floor) {
            bounds.floor = Some(full.clone());
        }
        self.stage(full, Some(Vec::new()))?;
        if new {
            self.timers_delta += 1;
        }
        Ok(())
    }

    /// A time no committed timer of `domain` is due after.
    fn timer_ceiling(&mut self, domain: Domain) -> Result<i64, StateError> {
        if let Some(ceiling) = self.timer_bounds[domain as usize].ceiling {
            return Ok(ceiling);
        }
        let ceiling = self.latest_committed_timer(domain)?.unwrap_or(i64::MIN);
        self.timer_bounds[domain as usize].ceiling = Some(ceiling);
        Ok(ceiling)
    }

    /// When the latest committed timer of `domain` is due.
    fn latest_committed_timer(&self, domain: Domain) -> Result<Option<i64>, StateError> {
        // What a commit in flight writes counts as committed.
        self.settled()?;
        let start = keys::timer_prefix(self.task, domain);
        let end = keys::prefix_end(&start).expect("the prefix has a successor");
        let family = self.processor.family()?;
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(start);
        options.set_iterate_upper_bound(end);
        let mut iterator = self.processor.db.db().raw_iterator_cf_opt(&family, options);
        iterator.seek_to_last();
        let latest = iterator
            .key()
            .and_then(keys::parse_timer)
            .map(|(_, at, _)| at);
        iterator.status()?;
        Ok(latest)
    }

    pub(crate) fn cancel(&mut self, domain: Domain, key: &[u8], at: i64) -> Result<(), StateError> {
        self.check_key(key)?;
        let full = keys::timer(self.task, domain, at, key);
        if self.read(&full)?.is_some() {
            self.stage(full, None)?;
            self.timers_delta -= 1;
        }
        Ok(())
    }

    /// Up to `limit` timers of `domain` due at or before `now`, in
    /// `(at, key)` order.
    pub(crate) fn due_timers(
        &mut self,
        domain: Domain,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StateError> {
        let start = match &self.timer_bounds[domain as usize].floor {
            Some(floor) => floor.clone(),
            None => keys::timer_prefix(self.task, domain),
        };
        let end = keys::timers_due_end(self.task, domain, now);
        let (entries, next) = self.merged(&start, Some(&end), limit)?;
        // Everything before the first live timer found is dead; with none
        // found, all of `[start, end)` is.
        let first_live = match entries.first() {
            Some((key, _)) => Some(key.clone()),
            None if next.is_none() && end > start => Some(end),
            None => None,
        };
        if let Some(first_live) = first_live {
            self.timer_bounds[domain as usize].floor = Some(first_live);
        }
        Ok(entries
            .iter()
            .filter_map(|(key, _)| keys::parse_timer(key))
            .map(|(domain, at, key)| Timer {
                domain,
                at,
                key: key.to_vec(),
            })
            .collect())
    }

    /// When the earliest timer of `domain` is due, if there is one.
    pub(crate) fn next_timer(&mut self, domain: Domain) -> Result<Option<i64>, StateError> {
        Ok(self.due_timers(domain, i64::MAX, 1)?.first().map(|t| t.at))
    }

    /// Removes a timer that fired (one `due_timers` returned).
    pub(crate) fn remove_timer(&mut self, timer: &Timer) -> Result<(), StateError> {
        self.stage(
            keys::timer(self.task, timer.domain, timer.at, &timer.key),
            None,
        )?;
        self.timers_delta -= 1;
        Ok(())
    }
}
