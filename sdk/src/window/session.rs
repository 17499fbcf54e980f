//! Session windows ([`Sessions`]): their own file because sessions merge
//! record by record (a scan per record), unlike the batch-prefetched time
//! windows. The semantics are documented on [`Sessions`].

use std::fmt::Display;

use super::{close, key, Common, Emit, Window, WindowResult};
use crate::aggregate::Aggregator;
use crate::clock::{self, Domain, Timer};
use crate::{Batch, Output, Outputs, ProcessError, Record, Result};

/// A stored session: its store key, window and aggregate.
type Stored<A> = (Vec<u8>, Window, A);

/// Session windows, as Kafka Streams defines them: a key's records closer
/// than the inactivity gap to each other form one session; a record that
/// falls within the gap of two sessions merges them.
///
/// A session is stored as the window `[first, last]` (both record
/// timestamps, both included) in the windowed layout. It *closes* when
/// stream time reaches `last + gap + grace`: from then on no record that
/// is not late can join it. A record at `t` is late when a session of its
/// own, `[t, t]`, would already be closed (`t + gap + grace <= stream
/// time`); a record only joins sessions still open at its own stream time,
/// so a session that closed within the batch is not reopened (the result
/// does not depend on batch boundaries). Closing emits the final session
/// (in [`Emit::Final`]) and deletes it.
///
/// Each record reads its key's sessions with one scan and writes the merged
/// session back: sessions merge record by record, so there is no
/// batch-level prefetch here.
///
/// The aggregation's [`merge`](Aggregator::merge) joins two sessions.
///
/// ```
/// use sluice_sdk::aggregate::Count;
/// use sluice_sdk::window::{Emit, Sessions};
///
/// let sessions = Sessions::new("sessions", 30 * 60_000, Count)?.grace_ms(60_000).emit(Emit::Final);
/// # let _ = sessions;
/// # Ok::<(), sluice_sdk::Error>(())
/// ```
#[derive(Debug)]
pub struct Sessions<G> {
    common: Common<G>,
    gap_ms: i64,
}

impl<G: Aggregator> Sessions<G> {
    /// Sessions with inactivity gap `gap_ms` (positive) in store `store`.
    /// Grace 0, [`Emit::Update`], late records counted.
    pub fn new(store: &str, gap_ms: i64, aggregator: G) -> Result<Self> {
        if gap_ms <= 0 {
            return Err(crate::Error::new(format!(
                "the session gap must be positive (got gap_ms {gap_ms})"
            )));
        }
        Ok(Self {
            common: Common::new(store, aggregator)?,
            gap_ms,
        })
    }

    /// How long after it closes a session still takes records (default 0).
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

    /// When a session ending at `last` closes.
    fn closes_at(&self, last: i64) -> i64 {
        last.saturating_add(self.gap_ms)
            .saturating_add(self.common.grace_ms)
    }

    /// `key`'s sessions, open at `stream_time`, that a record at
    /// `timestamp` joins.
    fn joined(
        &self,
        key: &[u8],
        timestamp: i64,
        stream_time: i64,
    ) -> Result<Vec<Stored<G::Aggregate>>> {
        let prefix = key::key_prefix(key);
        let mut start = prefix.clone();
        start.extend_from_slice(&key::encode_time(i64::MIN));
        let mut end = prefix;
        end.extend_from_slice(&key::encode_time(
            timestamp.saturating_add(self.gap_ms).saturating_add(1),
        ));
        let mut joined = Vec::new();
        for (store_key, value) in self.common.store.scan_all(&start, Some(&end)) {
            let (_, window) = key::decode(&store_key)?;
            let reaches = window.end >= timestamp.saturating_sub(self.gap_ms);
            if reaches && self.closes_at(window.end) > stream_time {
                joined.push((store_key, window, serde_json::from_slice(&value)?));
            }
        }
        Ok(joined)
    }

    /// Adds one record at `timestamp` to `key`'s sessions; returns the
    /// session it is now in.
    fn add(
        &self,
        key: &[u8],
        timestamp: i64,
        stream_time: i64,
        input: G::Input,
    ) -> Result<(Window, G::Aggregate)> {
        let common = &self.common;
        let mut window = Window {
            start: timestamp,
            end: timestamp,
        };
        let mut merged: Option<G::Aggregate> = None;
        for (store_key, joined, aggregate) in self.joined(key, timestamp, stream_time)? {
            window.start = window.start.min(joined.start);
            window.end = window.end.max(joined.end);
            merged = Some(match merged {
                Some(earlier) => common.aggregator.merge(earlier, aggregate)?,
                None => aggregate,
            });
            common.store.delete(&store_key);
            let timer_key = common.timer_key(&store_key);
            clock::cancel(Domain::EventTime, &timer_key, self.closes_at(joined.end));
        }
        let aggregate = common.aggregator.add(merged, input);
        let store_key = key::encode(key, window);
        common
            .store
            .put(&store_key, &serde_json::to_vec(&aggregate)?);
        let timer_key = common.timer_key(&store_key);
        clock::schedule(Domain::EventTime, &timer_key, self.closes_at(window.end));
        Ok((window, aggregate))
    }

    /// Sessionizes a batch: `extract` gives each record's key and input
    /// (`None` skips it), `format` turns a session into an output (for
    /// [`Emit::Update`]).
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
            let (window, aggregate) = self
                .add(&key, record.timestamp, stream_time, input)
                .map_err(|error| ProcessError::at(source, error))?;
            if self.common.emit == Emit::Update {
                let result = WindowResult {
                    key,
                    window,
                    aggregate,
                    is_final: false,
                };
                let output = format(&result).map_err(|error| ProcessError::at(source, error))?;
                outputs.push(source, output);
            }
        }
        clock::count_late(late);
        Ok(())
    }

    /// Whether `timer` is one of these sessions' timers.
    pub fn owns(&self, timer: &Timer) -> bool {
        self.common.owned(timer).is_some()
    }

    /// Handles due timers: each of these sessions' closes its session
    /// (emitting it in [`Emit::Final`], `source` the timer's index).
    pub fn on_timer(
        &self,
        timers: &[Timer],
        outputs: &mut Outputs,
        format: impl Fn(&WindowResult<G::Aggregate>) -> Result<Output>,
    ) -> Result<(), ProcessError> {
        close(&self.common, (0_u32..).zip(timers), outputs, &format)
    }
}
