//! Windowed aggregation in event time: tumbling and hopping windows
//! ([`Windowed`]), session windows ([`Sessions`]) and sliding windows
//! ([`Sliding`], Kafka Streams' record-aligned ones), with a grace period
//! for out-of-order records, two emit modes, late-record handling and
//! expiry.
//!
//! - A window is `[start, end)` in record timestamps (milliseconds). A
//!   record at `t` falls in the tumbling window starting at `t - t mod
//!   size`, and in every hopping window (starts at multiples of `advance`)
//!   with `start <= t < start + size`.
//! - A window *closes* when stream time reaches `end + grace`. A record is
//!   late for a window that has closed as of the record's own stream time
//!   (see [`clock`]: the same whatever the batch boundaries).
//!   A record late for all its windows is dropped and counted
//!   (`late_dropped` in the processor status), or forwarded to a
//!   late-records topic ([`Windowed::late_records_to`]); a hopping record
//!   late for only some of its windows updates the others.
//! - [`Emit::Update`]: every update of a window emits its new aggregate
//!   (source: the record). [`Emit::Final`]: nothing until the window
//!   closes, then its final aggregate once, from `on_timer` (an event-time
//!   timer at `end + grace`). Either way the window's state is deleted when
//!   it closes, so state does not grow without bound.
//! - State is in a store in the broker's windowed layouts ([`key`]), values
//!   as JSON, so the broker's state queries can read it. A batch costs one
//!   `get-many` and one `put-many` (repeated windows within the batch see
//!   each other's updates). Tumbling and hopping windows keep a window's
//!   keys together (the by-window layout), so one timer closes every key's
//!   window of a start. In [`Emit::Update`] the close clears the window's
//!   range in one call ([`Store::clear_range`]: one range tombstone, no
//!   key read). In [`Emit::Final`] it reads, emits and deletes them
//!   [`CLOSE_PAGE`] keys at a time, each page a call of its own, so a
//!   window of a million keys does not close in one call. Sessions and
//!   sliding windows keep a key's windows together and a timer per window.
//!
//! ```
//! use sluice_sdk::aggregate::Count;
//! use sluice_sdk::window::{Emit, Windowed, Windows};
//!
//! let counts = Windowed::new("counts", Windows::tumbling(60_000)?, Count)?
//!     .grace_ms(5_000)
//!     .emit(Emit::Final);
//! # let _ = counts;
//! # Ok::<(), sluice_sdk::Error>(())
//! ```
//!
//! A processor calls [`Windowed::process`] from `process` and
//! [`Windowed::on_timer`] from `on_timer`; the `windowed-count` plugin is a
//! complete example.

pub mod key;
mod session;
mod sliding;

use std::fmt::Display;

use serde::{Deserialize, Serialize};

pub use session::Sessions;
pub use sliding::Sliding;

use crate::aggregate::Aggregator;
use crate::clock::{self, Domain, Timer};
use crate::state::{Prefetched, Store};
use crate::{Batch, Error, Output, Outputs, ProcessError, Record, Result};

/// The most windows one record may fall in (hopping `size / advance`).
pub const WINDOWS_PER_RECORD_MAX: i64 = 1_000;

/// The most keys of a tumbling or hopping window one `on-timer` call
/// emits and deletes at its close ([`Emit::Final`]); a larger window's
/// timer is scheduled again, due at once, for the rest.
pub const CLOSE_PAGE: u32 = 256;

/// The longest resume position a closing window's next timer carries
/// (a prefix of the next key to close: any prefix resumes correctly).
const RESUME_BYTES_MAX: usize = 1_024;

/// A time window, `[start, end)` in milliseconds (for a session: its first
/// and last record's timestamps, both included; for a sliding window, both
/// ends included too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// The first millisecond in the window.
    pub start: i64,
    /// The end: excluded for tumbling and hopping windows, included for
    /// sessions and sliding windows.
    pub end: i64,
}

/// When window results are emitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emit {
    /// On every update (`emit=update` in a config).
    #[default]
    Update,
    /// Once, when the window closes (`emit=final`).
    Final,
}

/// Time windows of a fixed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Back-to-back windows of `size_ms`.
    Tumbling {
        /// The window length.
        size_ms: i64,
    },
    /// Windows of `size_ms` starting every `advance_ms` (they overlap when
    /// `advance_ms < size_ms`).
    Hopping {
        /// The window length.
        size_ms: i64,
        /// The distance between window starts.
        advance_ms: i64,
    },
}

impl Windows {
    /// Tumbling windows; `size_ms` must be positive.
    pub fn tumbling(size_ms: i64) -> Result<Self> {
        Self::hopping(size_ms, size_ms).map(|_| Self::Tumbling { size_ms })
    }

    /// Hopping windows: `0 < advance_ms <= size_ms`, and a record in at most
    /// [`WINDOWS_PER_RECORD_MAX`] windows.
    pub fn hopping(size_ms: i64, advance_ms: i64) -> Result<Self> {
        if size_ms <= 0 || advance_ms <= 0 || advance_ms > size_ms {
            return Err(Error::new(format!(
                "windows need 0 < advance_ms <= size_ms (got size_ms {size_ms}, advance_ms {advance_ms})"
            )));
        }
        if size_ms / advance_ms + 1 > WINDOWS_PER_RECORD_MAX {
            return Err(Error::new(format!(
                "size_ms / advance_ms is over {WINDOWS_PER_RECORD_MAX} windows per record"
            )));
        }
        Ok(Self::Hopping {
            size_ms,
            advance_ms,
        })
    }

    /// `(size, advance)`: a tumbling window advances by its size.
    fn size_and_advance(&self) -> (i64, i64) {
        match *self {
            Self::Tumbling { size_ms } => (size_ms, size_ms),
            Self::Hopping {
                size_ms,
                advance_ms,
            } => (size_ms, advance_ms),
        }
    }

    /// The start of the latest window holding `timestamp`. `None` when it
    /// would start before the bottom of time: such a window holds nothing,
    /// and every earlier one would start lower still.
    fn last_start(&self, timestamp: i64) -> Option<i64> {
        let (size, advance) = self.size_and_advance();
        timestamp
            .checked_sub(timestamp.rem_euclid(advance))
            .filter(|&start| start > timestamp.saturating_sub(size))
    }

    /// Calls `each` with the windows a record at `timestamp` falls in, by
    /// start: [`containing`](Self::containing) without a list for a
    /// tumbling window's one.
    fn each_containing(&self, timestamp: i64, mut each: impl FnMut(Window)) {
        match *self {
            Self::Tumbling { size_ms } => {
                if let Some(start) = self.last_start(timestamp) {
                    each(Window {
                        start,
                        end: start.saturating_add(size_ms),
                    });
                }
            }
            Self::Hopping { .. } => self.containing(timestamp).into_iter().for_each(each),
        }
    }

    /// The windows a record at `timestamp` falls in, by start.
    pub fn containing(&self, timestamp: i64) -> Vec<Window> {
        let (size, advance) = self.size_and_advance();
        let Some(mut start) = self.last_start(timestamp) else {
            return Vec::new();
        };
        let mut windows = Vec::with_capacity((size / advance) as usize + 1);
        loop {
            windows.push(Window {
                start,
                end: start.saturating_add(size),
            });
            match start.checked_sub(advance) {
                Some(earlier) if earlier > timestamp.saturating_sub(size) => start = earlier,
                _ => break,
            }
        }
        windows.reverse();
        windows
    }
}

/// A window's aggregate, as handed to the function that turns it into an
/// output.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult<A> {
    /// The user key (the record's key, or what the extractor returned).
    pub key: Vec<u8>,
    /// The window.
    pub window: Window,
    /// The aggregate.
    pub aggregate: A,
    /// Whether the window has closed (`Emit::Final`'s one result).
    pub is_final: bool,
}

/// Where late records go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Late {
    /// Dropped and counted with `count_late`.
    Count,
    /// Forwarded unchanged to this topic.
    ForwardTo(String),
}

/// Settings shared by time and session windows.
#[derive(Debug)]
struct Common<G> {
    store: Store,
    grace_ms: i64,
    emit: Emit,
    late: Late,
    aggregator: G,
    /// What this aggregation's timer keys start with: the store name and a
    /// NUL, so several aggregations of a processor tell their timers apart.
    timer_prefix: Vec<u8>,
}

impl<G> Common<G> {
    fn new(store: &str, aggregator: G) -> Result<Self> {
        let mut timer_prefix = store.as_bytes().to_vec();
        timer_prefix.push(0);
        Ok(Self {
            store: Store::open_windowed(store)?,
            grace_ms: 0,
            emit: Emit::Update,
            late: Late::Count,
            aggregator,
            timer_prefix,
        })
    }

    fn timer_key(&self, store_key: &[u8]) -> Vec<u8> {
        let mut key = self.timer_prefix.clone();
        key.extend_from_slice(store_key);
        key
    }

    /// The store key a timer of this aggregation is for.
    fn owned<'t>(&self, timer: &'t Timer) -> Option<&'t [u8]> {
        (timer.domain == Domain::EventTime)
            .then(|| timer.key.strip_prefix(self.timer_prefix.as_slice()))
            .flatten()
    }

    /// A late record: dropped (returns 1 to count) or forwarded.
    fn late(&self, source: u32, outputs: &mut Outputs) -> u64 {
        match &self.late {
            Late::Count => 1,
            Late::ForwardTo(topic) => {
                outputs.forward_to(source, topic.clone());
                0
            }
        }
    }
}

/// Closes the windows of this aggregation's due timers, a key's window
/// each: reads them in one `get-many`, emits each final aggregate (in
/// [`Emit::Final`], `source` the timer's index in the call) and deletes
/// them. Other timers are left alone.
fn close<'t, G: Aggregator>(
    common: &Common<G>,
    timers: impl IntoIterator<Item = (u32, &'t Timer)>,
    outputs: &mut Outputs,
    format: &impl Fn(&WindowResult<G::Aggregate>) -> Result<Output>,
) -> Result<(), ProcessError> {
    let (sources, keys): (Vec<u32>, Vec<Vec<u8>>) = timers
        .into_iter()
        .filter_map(|(source, timer)| Some((source, common.owned(timer)?.to_vec())))
        .unzip();
    if keys.is_empty() {
        return Ok(());
    }
    let values = common.store.get_many(&keys);
    for ((source, store_key), value) in sources.into_iter().zip(&keys).zip(values) {
        // Absent: merged into another session, or already closed.
        let Some(value) = value else { continue };
        if common.emit == Emit::Final {
            emit_final(source, store_key, &value, outputs, format)?;
        }
        common.store.delete(store_key);
    }
    Ok(())
}

/// Emits a closed window's final result from its store entry (`source`:
/// the timer's index).
fn emit_final<A: serde::de::DeserializeOwned>(
    source: u32,
    store_key: &[u8],
    value: &[u8],
    outputs: &mut Outputs,
    format: &impl Fn(&WindowResult<A>) -> Result<Output>,
) -> Result<(), ProcessError> {
    let (key, window) = key::decode(store_key).map_err(ProcessError::new)?;
    let aggregate = serde_json::from_slice(value).map_err(|error| {
        ProcessError::at(source, Error::from(error).context("window aggregate"))
    })?;
    let result = WindowResult {
        key,
        window,
        aggregate,
        is_final: true,
    };
    let output = format(&result).map_err(|error| ProcessError::at(source, error))?;
    outputs.push(source, output);
    Ok(())
}

/// What one record does to one window, decided in the first pass.
enum Step<I> {
    Late {
        source: u32,
    },
    /// The window's store key is in the pass's list of store keys, at
    /// this step's place among the `Add`s.
    Add {
        source: u32,
        key: Vec<u8>,
        window: Window,
        input: I,
    },
}

/// Tumbling or hopping windows, aggregated per key with an
/// [`Aggregator`], kept in a store (see the [module docs](self)).
#[derive(Debug)]
pub struct Windowed<G> {
    common: Common<G>,
    windows: Windows,
}

impl<G: Aggregator> Windowed<G>
where
    G::Input: Clone,
{
    /// Aggregates with `aggregator` over `windows`, in store `store`
    /// (declared with `--store`). Grace 0, [`Emit::Update`], late records
    /// counted.
    pub fn new(store: &str, windows: Windows, aggregator: G) -> Result<Self> {
        Ok(Self {
            common: Common::new(store, aggregator)?,
            windows,
        })
    }

    /// How long after its end a window still takes records (default 0).
    pub fn grace_ms(mut self, grace_ms: i64) -> Self {
        self.common.grace_ms = grace_ms.max(0);
        self
    }

    /// When results are emitted (default [`Emit::Update`]).
    pub fn emit(mut self, emit: Emit) -> Self {
        self.common.emit = emit;
        self
    }

    /// Forwards late records unchanged to `topic` (one of the processor's
    /// outputs) instead of dropping and counting them.
    pub fn late_records_to(mut self, topic: impl Into<String>) -> Self {
        self.common.late = Late::ForwardTo(topic.into());
        self
    }

    /// The windows.
    pub fn windows(&self) -> Windows {
        self.windows
    }

    /// The current aggregate of `key`'s `window`, if it is open.
    pub fn get(&self, key: &[u8], window: Window) -> Result<Option<G::Aggregate>> {
        let value = self.common.store.get(&key::encode_by_window(key, window));
        Ok(value.map(|v| serde_json::from_slice(&v)).transpose()?)
    }

    /// Aggregates a batch: `extract` gives each record's key and input
    /// (`None` skips the record; an error fails the batch naming the
    /// record), `format` turns a window's result into an output (for
    /// [`Emit::Update`]; it may fail, naming the record).
    pub fn process<E: Display>(
        &self,
        batch: Batch,
        outputs: &mut Outputs,
        mut extract: impl FnMut(&Record) -> Result<Option<(Vec<u8>, G::Input)>, E>,
        format: impl Fn(&WindowResult<G::Aggregate>) -> Result<Output>,
    ) -> Result<(), ProcessError> {
        let mut steps = Vec::with_capacity(batch.len());
        let mut store_keys = Vec::with_capacity(batch.len());
        for (source, record) in batch.indexed() {
            let stream_time = clock::stream_time().unwrap_or(record.timestamp);
            let Some((key, input)) =
                extract(&record).map_err(|error| ProcessError::at(source, error))?
            else {
                continue;
            };
            let grace = self.common.grace_ms;
            let before = steps.len();
            self.windows.each_containing(record.timestamp, |window| {
                if window.end.saturating_add(grace) > stream_time {
                    store_keys.push(key::encode_by_window(&key, window));
                    steps.push(Step::Add {
                        source,
                        key: Vec::new(),
                        window,
                        input: input.clone(),
                    });
                }
            });
            // The key itself goes to the record's last window, copies to
            // the others (a tumbling window's record copies nothing).
            let mut added = steps[before..].iter_mut().rev();
            match added.next() {
                None => steps.push(Step::Late { source }),
                Some(last) => {
                    for step in added {
                        if let Step::Add { key: to, .. } = step {
                            to.clone_from(&key);
                        }
                    }
                    if let Step::Add { key: to, .. } = last {
                        *to = key;
                    }
                }
            }
        }
        self.apply(steps, store_keys, outputs, &format)
    }

    /// The second pass: one `get-many`, the updates in record order, one
    /// `put-many`.
    fn apply(
        &self,
        steps: Vec<Step<G::Input>>,
        store_keys: Vec<Vec<u8>>,
        outputs: &mut Outputs,
        format: &impl Fn(&WindowResult<G::Aggregate>) -> Result<Output>,
    ) -> Result<(), ProcessError> {
        let common = &self.common;
        let (mut state, slots) =
            Prefetched::<G::Aggregate>::load_slots(&common.store, store_keys.into_iter())
                .map_err(ProcessError::new)?;
        let mut slots = slots.into_iter();
        let mut late = 0;
        // The starts whose close this batch scheduled (a few).
        let mut scheduled: Vec<i64> = Vec::new();
        for step in steps {
            let (source, key, window, input) = match step {
                Step::Late { source } => {
                    late += common.late(source, outputs);
                    continue;
                }
                Step::Add {
                    source,
                    key,
                    window,
                    input,
                } => (source, key, window, input),
            };
            let slot = slots.next().expect("a store key per added window");
            let current = state.value_at(slot).cloned();
            if current.is_none() && !scheduled.contains(&window.start) {
                // One timer for every key's window of this start
                // (scheduling it again changes nothing).
                scheduled.push(window.start);
                let at = window.end.saturating_add(common.grace_ms);
                let timer = common.timer_key(&key::window_prefix(window.start));
                clock::schedule(Domain::EventTime, &timer, at);
            }
            let aggregate = common.aggregator.add(current, input);
            if common.emit == Emit::Update {
                let result = WindowResult {
                    key,
                    window,
                    aggregate,
                    is_final: false,
                };
                let output = format(&result).map_err(|error| ProcessError::at(source, error))?;
                outputs.push(source, output);
                state.put_at(slot, result.aggregate);
            } else {
                state.put_at(slot, aggregate);
            }
        }
        clock::count_late(late);
        state.flush().map_err(ProcessError::new)
    }

    /// Whether `timer` is one of this aggregation's window timers.
    pub fn owns(&self, timer: &Timer) -> bool {
        self.common.owned(timer).is_some()
    }

    /// Handles due timers: each of this aggregation's closes its window
    /// (emitting the final results in [`Emit::Final`], with `source` the
    /// timer's index); other timers are left alone.
    pub fn on_timer(
        &self,
        timers: &[Timer],
        outputs: &mut Outputs,
        format: impl Fn(&WindowResult<G::Aggregate>) -> Result<Output>,
    ) -> Result<(), ProcessError> {
        // A key's own window timers (state from an SDK before the
        // by-window layout) close together, in order with the others.
        let mut keyed = Vec::new();
        for (source, timer) in (0_u32..).zip(timers) {
            match self.common.owned(timer).and_then(key::window_start) {
                Some(_) => {
                    close(&self.common, keyed.drain(..), outputs, &format)?;
                    self.close_page(source, timer, outputs, &format)?;
                }
                None => keyed.push((source, timer)),
            }
        }
        close(&self.common, keyed, outputs, &format)
    }

    /// Closes the window a timer is for. [`Emit::Update`]: clears its
    /// keys' range in one call, reading none of them. [`Emit::Final`]:
    /// emits and deletes up to [`CLOSE_PAGE`] keys from where the timer's
    /// key says (the window's prefix, or the resume position of an earlier
    /// page) and schedules the timer again, due at once, for the rest.
    fn close_page(
        &self,
        source: u32,
        timer: &Timer,
        outputs: &mut Outputs,
        format: &impl Fn(&WindowResult<G::Aggregate>) -> Result<Output>,
    ) -> Result<(), ProcessError> {
        let common = &self.common;
        let from = common
            .owned(timer)
            .expect("one of this aggregation's timers");
        let start = key::window_start(from).expect("a by-window timer");
        let (_, end) = key::window_range(start);
        if common.emit == Emit::Update {
            common.store.clear_range(from, Some(&end));
            return Ok(());
        }
        let page = common.store.scan(from, Some(&end), CLOSE_PAGE);
        for (store_key, value) in &page.entries {
            emit_final(source, store_key, value, outputs, format)?;
        }
        common
            .store
            .delete_range(from, Some(page.next.as_deref().unwrap_or(&end)));
        if let Some(next) = page.next {
            let resume = &next[..next.len().min(RESUME_BYTES_MAX)];
            clock::schedule(Domain::EventTime, &common.timer_key(resume), timer.at);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
