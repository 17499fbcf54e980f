//! Sliding windows ([`Sliding`]): their own file because each record
//! creates windows whose aggregates are copied from its neighbours (a scan
//! per record), unlike the batch-prefetched time windows. The semantics are
//! documented on [`Sliding`].

use std::fmt::Display;

use serde::{Deserialize, Serialize};

use super::{key, Common, Emit, Window, WindowResult};
use crate::aggregate::Aggregator;
use crate::clock::{self, Domain, Timer};
use crate::{Batch, Error, Output, Outputs, ProcessError, Record, Result};

/// A stored sliding window's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slot<A> {
    /// The aggregate of the window's records.
    aggregate: A,
    /// The largest timestamp of those records.
    latest: i64,
}

/// Sliding windows, as Kafka Streams defines them: windows of a fixed
/// length `difference` (both ends included) aligned to records, not to the
/// epoch. For each record at `r` a key has its *left* window `[r -
/// difference, r]`, and, when another record falls within `(r, r + 1 +
/// difference]`, its *right* window `[r + 1, r + 1 + difference]`. Together
/// they are every distinct set of records that fits in `difference`, so
/// each window's aggregate is emitted once per change, without the
/// duplicates hopping windows with a 1 ms advance would give.
///
/// Aggregates cannot be taken apart, so a new window's aggregate is copied
/// from an existing window holding exactly the records it needs (as Kafka
/// Streams does): the left window of a new record from the latest-starting
/// window that ends before it, the right window from the latest-starting
/// window that contains it. To know whether a window holds the records
/// needed, each stored value carries the window's latest record timestamp:
/// values are `{"aggregate":…,"latest":…}` (JSON), keys the windowed
/// layout ([`key`](super::key)) with the end included.
///
/// A window closes when stream time reaches `end + 1 + grace` (its end is
/// included): [`Emit::Final`] emits it then. Its state stays until stream
/// time reaches `end + difference + 2 + grace`, as long as a record that is
/// not late may still need it as the source of a new window, and is then
/// deleted. A record is late when its own left window has closed (`t + 1 +
/// grace <= stream time`); no window that is still open can hold it.
///
/// Each record scans its key's windows near it (one scan) and writes the
/// windows it changes; there is no batch-level prefetch.
///
///
/// ```
/// use sluice_sdk::aggregate::Count;
/// use sluice_sdk::window::{Emit, Sliding};
///
/// // Every distinct set of a key's records within 10 seconds.
/// let recent = Sliding::new("recent", 10_000, Count)?.grace_ms(1_000).emit(Emit::Final);
/// # let _ = recent;
/// # Ok::<(), sluice_sdk::Error>(())
/// ```
#[derive(Debug)]
pub struct Sliding<G> {
    common: Common<G>,
    difference_ms: i64,
}

/// A window read by a record's scan.
type Scanned<A> = (Window, Slot<A>);

impl<G: Aggregator> Sliding<G>
where
    G::Input: Clone,
{
    /// Sliding windows of `difference_ms` (positive) in store `store`.
    /// Grace 0, [`Emit::Update`], late records counted.
    pub fn new(store: &str, difference_ms: i64, aggregator: G) -> Result<Self> {
        if difference_ms <= 0 {
            return Err(Error::new(format!(
                "the sliding window difference must be positive (got {difference_ms})"
            )));
        }
        Ok(Self {
            common: Common::new(store, aggregator)?,
            difference_ms,
        })
    }

    /// How long after it closes a window still takes records (default 0).
    pub fn grace_ms(mut self, grace_ms: i64) -> Self {
        self.common.grace_ms = grace_ms.max(0);
        self
    }

    /// When results are emitted (default [`Emit::Update`]).
    pub fn emit(mut self, emit: Emit) -> Self {
        self.common.emit = emit;
        self
    }

    /// Forwards late records unchanged to `topic` instead of dropping and
    /// counting them.
    pub fn late_records_to(mut self, topic: impl Into<String>) -> Self {
        self.common.late = super::Late::ForwardTo(topic.into());
        self
    }

    fn closes_at(&self, end: i64) -> i64 {
        end.saturating_add(1).saturating_add(self.common.grace_ms)
    }

    fn expires_at(&self, end: i64) -> i64 {
        end.saturating_add(self.difference_ms)
            .saturating_add(2)
            .saturating_add(self.common.grace_ms)
    }

    /// `key`'s windows starting in `[t - 2 difference - 1, t + 1]`, by start.
    fn scan(&self, key: &[u8], t: i64) -> Result<Vec<Scanned<G::Aggregate>>> {
        let reach = self.difference_ms.saturating_mul(2).saturating_add(1);
        let prefix = key::key_prefix(key);
        let mut start = prefix.clone();
        start.extend_from_slice(&key::encode_time(t.saturating_sub(reach)));
        let mut end = prefix;
        end.extend_from_slice(&key::encode_time(t.saturating_add(2)));
        let mut windows = Vec::new();
        for (store_key, value) in self.common.store.scan_all(&start, Some(&end)) {
            let (_, window) = key::decode(&store_key)?;
            windows.push((window, serde_json::from_slice(&value)?));
        }
        Ok(windows)
    }

    /// Adds one record at `t` to `key`'s windows; returns the windows it
    /// changed or created, with their new aggregates.
    fn add(&self, key: &[u8], t: i64, input: G::Input) -> Result<Vec<Scanned<G::Aggregate>>> {
        let d = self.difference_ms;
        let scanned = self.scan(key, t)?;
        let has_start = |start: i64| scanned.iter().any(|(window, _)| window.start == start);
        let left_exists = scanned.iter().any(|(window, _)| window.end == t);
        // The latest-starting window ending before `t`, and the one
        // containing it (`scanned` is by start).
        let before = scanned.iter().rev().find(|(window, _)| window.end < t);
        let around = scanned
            .iter()
            .rev()
            .find(|(window, _)| window.start <= t && t <= window.end);
        // The key's latest record before `t`: a window whose latest record
        // is its end is that record's left window.
        let previous = scanned
            .iter()
            .filter(|(window, slot)| slot.latest == window.end && window.end < t)
            .map(|(window, _)| window.end)
            .max();
        let aggregator = &self.common.aggregator;
        let mut changed = Vec::new();
        for (window, slot) in &scanned {
            if window.start <= t && t <= window.end {
                let aggregate = aggregator.add(Some(slot.aggregate.clone()), input.clone());
                let latest = slot.latest.max(t);
                changed.push((*window, Slot { aggregate, latest }));
            }
        }
        if !left_exists {
            let source = before.filter(|(_, slot)| slot.latest >= t.saturating_sub(d));
            let aggregate = aggregator.add(source.map(|(_, s)| s.aggregate.clone()), input.clone());
            let window = window_from(t.saturating_sub(d), d);
            changed.push((
                window,
                Slot {
                    aggregate,
                    latest: t,
                },
            ));
        }
        // The previous record's right window, which `t` is the first in.
        if let Some(previous) = previous.filter(|&p| p >= t.saturating_sub(d + 1)) {
            let start = previous.saturating_add(1);
            if !has_start(start) && start != t.saturating_sub(d) {
                let aggregate = aggregator.add(None, input.clone());
                changed.push((
                    window_from(start, d),
                    Slot {
                        aggregate,
                        latest: t,
                    },
                ));
            }
        }
        // `t`'s own right window, when a later record already falls in it.
        if let Some((_, source)) = around.filter(|(_, slot)| slot.latest > t) {
            if !has_start(t.saturating_add(1)) {
                changed.push((window_from(t.saturating_add(1), d), source.clone()));
            }
        }
        self.write(key, &scanned, &changed)?;
        Ok(changed)
    }

    /// Writes `changed` back, scheduling the timers of the new windows.
    fn write(
        &self,
        key: &[u8],
        scanned: &[Scanned<G::Aggregate>],
        changed: &[Scanned<G::Aggregate>],
    ) -> Result<()> {
        let mut entries = Vec::with_capacity(changed.len());
        for (window, slot) in changed {
            let store_key = key::encode(key, *window);
            if !scanned.iter().any(|(old, _)| old == window) {
                let timer_key = self.common.timer_key(&store_key);
                if self.common.emit == Emit::Final {
                    clock::schedule(Domain::EventTime, &timer_key, self.closes_at(window.end));
                }
                clock::schedule(Domain::EventTime, &timer_key, self.expires_at(window.end));
            }
            entries.push((store_key, serde_json::to_vec(slot)?));
        }
        self.common.store.put_many(&entries);
        Ok(())
    }

    /// Aggregates a batch: `extract` gives each record's key and input
    /// (`None` skips it), `format` turns a window into an output (for
    /// [`Emit::Update`]: every window a record changed or created).
    pub fn process<E: Display>(
        &self,
        batch: Batch,
        outputs: &mut Outputs,
        mut extract: impl FnMut(&Record) -> Result<Option<(Vec<u8>, G::Input)>, E>,
        format: impl Fn(&WindowResult<G::Aggregate>) -> Result<Output>,
    ) -> Result<(), ProcessError> {
        let mut late = 0;
        for (source, record) in batch.indexed() {
            let stream_time = clock::stream_time().unwrap_or(record.timestamp);
            let Some((key, input)) =
                extract(&record).map_err(|error| ProcessError::at(source, error))?
            else {
                continue;
            };
            if self.closes_at(record.timestamp) <= stream_time {
                late += self.common.late(source, outputs);
                continue;
            }
            let changed = self
                .add(&key, record.timestamp, input)
                .map_err(|error| ProcessError::at(source, error))?;
            if self.common.emit == Emit::Update {
                for (window, slot) in changed {
                    let result = WindowResult {
                        key: key.clone(),
                        window,
                        aggregate: slot.aggregate,
                        is_final: false,
                    };
                    let output =
                        format(&result).map_err(|error| ProcessError::at(source, error))?;
                    outputs.push(source, output);
                }
            }
        }
        clock::count_late(late);
        Ok(())
    }

    /// Whether `timer` is one of these windows' timers.
    pub fn owns(&self, timer: &Timer) -> bool {
        self.common.owned(timer).is_some()
    }

    /// Handles due timers: a window's close emits it (in [`Emit::Final`],
    /// `source` the timer's index), its expiry deletes it.
    pub fn on_timer(
        &self,
        timers: &[Timer],
        outputs: &mut Outputs,
        format: impl Fn(&WindowResult<G::Aggregate>) -> Result<Output>,
    ) -> Result<(), ProcessError> {
        for (source, timer) in (0_u32..).zip(timers) {
            let Some(store_key) = self.common.owned(timer) else {
                continue;
            };
            let (key, window) = key::decode(store_key).map_err(ProcessError::new)?;
            if timer.at == self.expires_at(window.end) {
                self.common.store.delete(store_key);
                continue;
            }
            let Some(value) = self.common.store.get(store_key) else {
                continue;
            };
            let slot: Slot<G::Aggregate> = serde_json::from_slice(&value)
                .map_err(|error| ProcessError::at(source, Error::from(error)))?;
            let result = WindowResult {
                key,
                window,
                aggregate: slot.aggregate,
                is_final: true,
            };
            let output = format(&result).map_err(|error| ProcessError::at(source, error))?;
            outputs.push(source, output);
        }
        Ok(())
    }
}

/// The window `[start, start + d]`.
fn window_from(start: i64, d: i64) -> Window {
    Window {
        start,
        end: start.saturating_add(d),
    }
}
