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
    /// When the earliest live timer (staged or committed) is due, if
    /// known. A busy task asks every step whether a timer is due and when
    /// the next one is, for both domains: four RocksDB seeks a step, 2% of
    /// its thread, while a minute's windows all close at one time. Known
    /// from a scan, kept by what the task itself schedules and removes,
    /// forgotten whenever writes are undone.
    pub(super) earliest: Option<Earliest>,
}

/// What a task knows of its earliest live timer of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Earliest {
    /// There is none.
    Nothing,
    /// It is due at this time.
    At(i64),
    /// None is due before this time.
    NotBefore(i64),
}

impl Earliest {
    /// Whether no timer is due at or before `now`.
    fn none_due(self, now: i64) -> bool {
        match self {
            Earliest::Nothing => true,
            Earliest::At(at) | Earliest::NotBefore(at) => at > now,
        }
    }

    /// After a timer due at `at` is scheduled.
    fn scheduled(self, at: i64) -> Self {
        match self {
            Earliest::Nothing => Earliest::At(at),
            Earliest::At(earliest) => Earliest::At(earliest.min(at)),
            // None before `bound`, and now one at `at`.
            Earliest::NotBefore(bound) if at <= bound => Earliest::At(at),
            not_before => not_before,
        }
    }

    /// After a live timer due at `at` is removed: still a bound.
    fn removed(self, at: i64) -> Self {
        match self {
            Earliest::At(earliest) if earliest == at => Earliest::NotBefore(at),
            other => other,
        }
    }
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
        bounds.earliest = bounds.earliest.map(|earliest| earliest.scheduled(at));
        if bounds.floor.as_ref().is_some_and(|floor| full < *floor) {
            bounds.floor = Some(full.clone());
        }
        self.stage(&full, Some(&[]))?;
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
            self.stage(&full, None)?;
            self.timers_delta -= 1;
            self.timer_removed(domain, at);
        }
        Ok(())
    }

    fn timer_removed(&mut self, domain: Domain, at: i64) {
        let bounds = &mut self.timer_bounds[domain as usize];
        bounds.earliest = bounds.earliest.map(|earliest| earliest.removed(at));
    }

    /// Up to `limit` timers of `domain` due at or before `now`, in
    /// `(at, key)` order.
    pub(crate) fn due_timers(
        &mut self,
        domain: Domain,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StateError> {
        let bounds = &self.timer_bounds[domain as usize];
        if bounds
            .earliest
            .is_some_and(|earliest| earliest.none_due(now))
        {
            return Ok(Vec::new());
        }
        let start = match &bounds.floor {
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
        let due: Vec<Timer> = entries
            .iter()
            .filter_map(|(key, _)| keys::parse_timer(key))
            .map(|(domain, at, key)| Timer {
                domain,
                at,
                key: key.to_vec(),
            })
            .collect();
        let bounds = &mut self.timer_bounds[domain as usize];
        if let Some(first_live) = first_live {
            bounds.floor = Some(first_live);
        }
        // The scan started past every dead timer (the floor): its first
        // is the earliest; with none and no more to read, none is due by
        // `now`.
        match (due.first(), next) {
            (Some(first), _) => bounds.earliest = Some(Earliest::At(first.at)),
            (None, None) if now == i64::MAX => bounds.earliest = Some(Earliest::Nothing),
            (None, None) => bounds.earliest = Some(Earliest::NotBefore(now + 1)),
            (None, Some(_)) => {}
        }
        Ok(due)
    }

    /// When the earliest timer of `domain` is due, if there is one.
    pub(crate) fn next_timer(&mut self, domain: Domain) -> Result<Option<i64>, StateError> {
        match self.timer_bounds[domain as usize].earliest {
            Some(Earliest::Nothing) => Ok(None),
            Some(Earliest::At(at)) => Ok(Some(at)),
            _ => Ok(self.due_timers(domain, i64::MAX, 1)?.first().map(|t| t.at)),
        }
    }

    /// Removes a timer that fired (one `due_timers` returned).
    pub(crate) fn remove_timer(&mut self, timer: &Timer) -> Result<(), StateError> {
        self.stage(
            &keys::timer(self.task, timer.domain, timer.at, &timer.key),
            None,
        )?;
        self.timers_delta -= 1;
        self.timer_removed(timer.domain, timer.at);
        Ok(())
    }
}
