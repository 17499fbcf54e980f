//! Time as a task sees it: stream time, timers and late counts (the
//! contract's `clock` import).
//!
//! Stream time is the largest record timestamp the task has seen. The host
//! only knows it up to the *previous* batch; the SDK advances it record by
//! record as the batch's records are taken from its iterator
//! ([`Batch::indexed`](crate::Batch::indexed) and friends), so
//! [`stream_time`] for record `i` is `max(host stream time, timestamps of
//! records 0..=i)`. A lateness decision taken with it is the same however
//! the host happens to cut batches (and it retries a failing batch record by
//! record). Take records from the iterator one at a time and decide as you
//! go: a processor that first collects the whole batch sees the batch's
//! largest timestamp for every record.
//!
//! The host's stream time is read lazily, once per call, so a stateless
//! processor never crosses the boundary for it.
//!
//! On the host (tests), the clock is the test harness's
//! ([`testing::Task`](crate::testing::Task)): same rules, with a wall clock
//! the test moves.

use std::cell::Cell;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// Stream time: the largest record timestamp the task has seen.
    EventTime,
    /// The broker's wall clock (milliseconds since the Unix epoch).
    ProcessingTime,
}

/// A timer that is due, as `on_timer` receives it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    /// The clock it followed.
    pub domain: Domain,
    /// The key it was scheduled with.
    pub key: Vec<u8>,
    /// When it was due, in milliseconds.
    pub at: i64,
}

/// What the SDK knows of stream time during the current call.
#[derive(Clone, Copy, Default)]
struct CallClock {
    /// The host's stream time, once read in this call (`Some(None)`: read,
    /// and the task has seen no record yet).
    host: Option<Option<i64>>,
    /// The largest timestamp taken from the current batch so far.
    observed: Option<i64>,
}

thread_local! {
    static CALL: Cell<CallClock> = const { Cell::new(CallClock { host: None, observed: None }) };
}

/// The task's stream time in milliseconds since the Unix epoch, as of the
/// record being processed (see the [module docs](self)); `None` before the
/// task's first record.
pub fn stream_time() -> Option<i64> {
    let mut call = CALL.get();
    let host = match call.host {
        Some(host) => host,
        None => {
            let host = backend::stream_time();
            call.host = Some(host);
            CALL.set(call);
            host
        }
    };
    max_time(host, call.observed)
}

/// Schedules a timer for `key` at `at` milliseconds in `domain`. It fires
/// once, through `on_timer`, when that clock reaches `at` (a timer already
/// due fires after the current call). Scheduling the same `(domain, key,
/// at)` again changes nothing; a failing call's timers are rolled back with
/// its state.
pub fn schedule(domain: Domain, key: &[u8], at: i64) {
    backend::schedule(domain, key, at);
}

/// Cancels the timer `(domain, key, at)`, if scheduled.
pub fn cancel(domain: Domain, key: &[u8], at: i64) {
    backend::cancel(domain, key, at);
}

/// Counts `records` dropped as late: they show in the processor's status as
/// `late_dropped`. The count commits with the call's state.
pub fn count_late(records: u64) {
    if records > 0 {
        backend::count_late(records);
    }
}

/// The wall clock in milliseconds since the Unix epoch: the clock
/// processing-time timers follow. On the host it is the test harness's
/// clock (see [`testing::Harness::advance_wall_clock`](crate::testing::Harness::advance_wall_clock)).
pub fn wall_clock_ms() -> i64 {
    backend::wall_clock_ms()
}

/// Starts a `process` or `on-timer` call: forgets the previous call's
/// stream time.
pub(crate) fn begin_call() {
    CALL.set(CallClock::default());
}

/// A record of the current batch was taken: stream time covers it.
#[inline]
pub(crate) fn observe(timestamp: i64) {
    let mut call = CALL.get();
    call.observed = Some(call.observed.map_or(timestamp, |seen| seen.max(timestamp)));
    CALL.set(call);
}

fn max_time(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(target_arch = "wasm32")]
mod backend {
    //! The contract's `clock` import.

    use super::Domain;
    use crate::bindings::sluice::processor::clock as wit;

    fn domain(domain: Domain) -> wit::Domain {
        match domain {
            Domain::EventTime => wit::Domain::EventTime,
            Domain::ProcessingTime => wit::Domain::ProcessingTime,
        }
    }

    pub(super) fn stream_time() -> Option<i64> {
        wit::stream_time()
    }

    pub(super) fn schedule(to: Domain, key: &[u8], at: i64) {
        wit::schedule(domain(to), key, at);
    }

    pub(super) fn cancel(to: Domain, key: &[u8], at: i64) {
        wit::cancel(domain(to), key, at);
    }

    pub(super) fn count_late(records: u64) {
        wit::count_late(records);
    }

    pub(super) fn wall_clock_ms() -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod backend {
    //! The host's in-memory task ([`crate::state::host`]).

    use super::Domain;
    use crate::state::host;

    pub(super) fn stream_time() -> Option<i64> {
        host::with(|task| task.stream_time)
    }

    pub(super) fn schedule(domain: Domain, key: &[u8], at: i64) {
        host::with(|task| task.timers.insert((domain, at, key.to_vec())));
    }

    pub(super) fn cancel(domain: Domain, key: &[u8], at: i64) {
        host::with(|task| task.timers.remove(&(domain, at, key.to_vec())));
    }

    pub(super) fn count_late(records: u64) {
        host::with(|task| task.late_dropped += records);
    }

    pub(super) fn wall_clock_ms() -> i64 {
        host::with(|task| task.wall_clock_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::host;

    #[test]
    fn stream_time_is_the_hosts_then_advances_per_record() {
        host::replace(host::TaskState::default());
        begin_call();
        assert_eq!(stream_time(), None);
        observe(50);
        observe(20);
        assert_eq!(stream_time(), Some(50));
        host::with(|task| task.stream_time = Some(100));
        begin_call();
        observe(60);
        assert_eq!(stream_time(), Some(100), "never behind the host's");
        observe(120);
        assert_eq!(stream_time(), Some(120));
        begin_call();
        assert_eq!(stream_time(), Some(100), "a new call forgets the batch");
    }

    #[test]
    fn late_counts_and_timers_reach_the_task() {
        host::replace(host::TaskState::default());
        count_late(0);
        count_late(3);
        schedule(Domain::EventTime, b"k", 5);
        schedule(Domain::EventTime, b"k", 5);
        schedule(Domain::ProcessingTime, b"k", 5);
        cancel(Domain::ProcessingTime, b"k", 5);
        let task = host::take();
        assert_eq!(task.late_dropped, 3);
        let timers: Vec<_> = task.timers.into_iter().collect();
        assert_eq!(timers, [(Domain::EventTime, 5, b"k".to_vec())]);
    }
}
