//! The broker's own instruments, cheap enough for the produce and fetch
//! paths: relaxed atomic counters and fixed-bucket histograms, no lock
//! and no allocation when recording. `http::metrics` reads them (and the
//! log, the groups and the processors) at each scrape of `GET /metrics`
//! and encodes them in Prometheus' text format with `prometheus-client`.
//!
//! A leaf: everything may record here, this module imports nothing of the
//! broker. Process-wide figures (fsync latency, open connections,
//! requests) are statics, as a process has one of each.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Whether the hot-path instruments record (`[metrics] enabled`, set once
/// at start): off, a request, a write, a fetch and an fsync cost no clock
/// read and no atomic add, for measuring what they cost.
static ENABLED: AtomicBool = AtomicBool::new(true);

pub(crate) fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Upper bounds (seconds) of the latency buckets: 50 µs to 10 s, about
/// ×2.5 apart, so a median and a p99 can be read within a bucket's width.
pub(crate) const LATENCY_BOUNDS_SECONDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// A latency histogram over [`LATENCY_BOUNDS_SECONDS`] (+Inf last).
#[derive(Debug)]
pub(crate) struct Histogram {
    /// Per bucket (not cumulative), the last one +Inf.
    buckets: [AtomicU64; LATENCY_BOUNDS_SECONDS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        if !enabled() {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BOUNDS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BOUNDS_SECONDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// What the text format wants of it, as `prometheus-client` takes it.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_SECONDS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(&self.buckets)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, count)| count).sum();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// (sum in seconds, count, per bucket (upper bound, count), the last bound
/// `f64::MAX` for +Inf; not cumulative: the encoder adds them up).
pub(crate) type Snapshot = (f64, u64, Vec<(f64, u64)>);

/// Records and bytes written to and read from one partition.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) records_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) records_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

impl Traffic {
    pub(crate) fn produced(&self, records: u64, bytes: u64) {
        if !enabled() {
            return;
        }
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn fetched(&self, records: u64, bytes: u64) {
        if !enabled() {
            return;
        }
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Largest API key and version counted one by one; larger ones (no such
/// request reaches a handler) share the last slot.
const API_KEYS: usize = 128;
const VERSIONS: usize = 32;

/// Kafka requests handled: per API key and version, their latency per API
/// key, and the error codes answered per API key.
#[derive(Debug)]
pub(crate) struct Requests {
    counts: Vec<AtomicU64>,
    latency: Vec<Histogram>,
    /// (api key, error code) → count; touched only when a request fails,
    /// bounded by the keys and codes Kafka has (a few thousand at most).
    errors: Mutex<std::collections::BTreeMap<(i16, i16), u64>>,
}

impl Requests {
    fn new() -> Self {
        Self {
            counts: (0..API_KEYS * VERSIONS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: (0..API_KEYS).map(|_| Histogram::default()).collect(),
            errors: Mutex::new(Default::default()),
        }
    }

    fn slot(api_key: i16) -> usize {
        (api_key.max(0) as usize).min(API_KEYS - 1)
    }

    /// One request of `api_key` v`version`, answered after `elapsed`.
    pub(crate) fn handled(&self, api_key: i16, version: i16, elapsed: Duration) {
        let at = Self::slot(api_key) * VERSIONS + (version.max(0) as usize).min(VERSIONS - 1);
        self.counts[at].fetch_add(1, Ordering::Relaxed);
        self.latency[Self::slot(api_key)].observe(elapsed);
    }

    /// A request of `api_key` answered with (or a part of it with) `code`.
    pub(crate) fn failed(&self, api_key: i16, code: i16) {
        if !enabled() {
            return;
        }
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors.entry((api_key, code)).or_default() += 1;
    }

    /// (api key, version, count) of every pair seen.
    pub(crate) fn counts(&self) -> Vec<(i16, i16, u64)> {
        (self.counts.iter().enumerate())
            .filter_map(|(at, count)| {
                let count = count.load(Ordering::Relaxed);
                let (key, version) = (at / VERSIONS, at % VERSIONS);
                (count > 0).then_some((key as i16, version as i16, count))
            })
            .collect()
    }

    /// (api key, histogram) of every key seen.
    pub(crate) fn latencies(&self) -> impl Iterator<Item = (i16, &Histogram)> {
        (self.latency.iter().enumerate())
            .filter(|(_, histogram)| histogram.count() > 0)
            .map(|(key, histogram)| (key as i16, histogram))
    }

    pub(crate) fn errors(&self) -> Vec<((i16, i16), u64)> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.iter().map(|(key, count)| (*key, *count)).collect()
    }
}

/// Kafka requests handled by this process.
pub(crate) static REQUESTS: LazyLock<Requests> = LazyLock::new(Requests::new);

/// Log fsyncs (`fdatasync` of segment files) and their latency.
pub(crate) static FSYNC: LazyLock<Histogram> = LazyLock::new(Histogram::default);

/// Kafka connections open now, and accepted since start.
pub(crate) static CONNECTIONS_OPEN: AtomicI64 = AtomicI64::new(0);
pub(crate) static CONNECTIONS_ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// Keeps [`CONNECTIONS_OPEN`] right however a connection ends.
pub(crate) struct OpenConnection(());

impl OpenConnection {
    pub(crate) fn new() -> Self {
        CONNECTIONS_OPEN.fetch_add(1, Ordering::Relaxed);
        CONNECTIONS_ACCEPTED.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        CONNECTIONS_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_into_cumulative_buckets() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(10));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let (sum, count, buckets) = histogram.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 60.003_01).abs() < 1e-6, "{sum}");
        assert_eq!(buckets[0], (0.000_05, 1));
        let five_ms = buckets.iter().find(|(bound, _)| *bound == 0.005).unwrap();
        assert_eq!(five_ms.1, 1);
        assert_eq!(*buckets.last().unwrap(), (f64::MAX, 1));
    }

    #[test]
    fn requests_are_counted_per_key_and_version() {
        let requests = Requests::new();
        requests.handled(0, 9, Duration::from_millis(1));
        requests.handled(0, 9, Duration::from_millis(1));
        requests.handled(1, 12, Duration::from_millis(1));
        requests.failed(0, 29);
        assert_eq!(requests.counts(), vec![(0, 9, 2), (1, 12, 1)]);
        assert_eq!(requests.latencies().count(), 2);
        assert_eq!(requests.errors(), vec![((0, 29), 1)]);
    }
}
