//! Live counters and state of each processor partition, read by the HTTP
//! status endpoint while the partition task updates them.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// Where a partition task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PartitionState {
    /// Instantiating the plugin.
    Starting,
    /// Processing a batch.
    Running,
    /// Caught up, waiting for records.
    Idle,
    /// Paused by the operator.
    Paused,
    /// Stopped on an error; `resume` retries.
    Failed,
}

impl PartitionState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Starting,
            1 => Self::Running,
            2 => Self::Idle,
            3 => Self::Paused,
            _ => Self::Failed,
        }
    }
}

/// An error as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorInfo {
    pub(crate) message: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The offending input record, when one is known.
    pub(crate) offset: Option<i64>,
    pub(crate) at_ms: i64,
}

/// Counters of one (processor, input partition).
#[derive(Debug)]
pub(crate) struct PartitionStats {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    state: AtomicU8,
    pub(crate) records_in: AtomicU64,
    pub(crate) records_out: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) batches: AtomicU64,
    /// Time spent inside `process` calls.
    pub(crate) process_ns: AtomicU64,
    /// How long each batch's `process` calls took (`/metrics`).
    pub(crate) batch_latency: crate::metrics::Histogram,
    /// Peak linear memory of the current instance.
    pub(crate) memory_bytes: AtomicU64,
    /// Next input offset to process (what is committed).
    pub(crate) committed_offset: AtomicI64,
    /// Stateful tasks: stream time as of the last commit (`i64::MIN`:
    /// none yet), records the plugin dropped as late, commits, the
    /// approximate bytes of the task's state, and its timers (committed).
    pub(crate) stream_time: AtomicI64,
    pub(crate) late_dropped: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) state_bytes: AtomicU64,
    pub(crate) timers_pending: AtomicU64,
    /// Entries in the task's stores (committed).
    pub(crate) keys: AtomicU64,
    /// Entries in the stores its plugin opened as windowed: its open
    /// windows (committed; `u64::MAX`: no windowed store). Through
    /// `open_windows` and `set_open_windows`.
    open_windows: AtomicU64,
    /// Rebuilding lost state up to this input offset (-1: not).
    pub(crate) rebuild_until: AtomicI64,
    /// Restoring lost state from the changelog: whether, and the records
    /// and bytes of it read so far.
    pub(crate) restoring: std::sync::atomic::AtomicBool,
    pub(crate) restored_records: AtomicU64,
    pub(crate) restored_bytes: AtomicU64,
    last_error: Mutex<Option<ErrorInfo>>,
}

impl PartitionStats {
    pub(crate) fn new(topic: &str, partition: i32) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
            state: AtomicU8::new(PartitionState::Starting as u8),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            process_ns: AtomicU64::new(0),
            batch_latency: Default::default(),
            memory_bytes: AtomicU64::new(0),
            committed_offset: AtomicI64::new(-1),
            stream_time: AtomicI64::new(i64::MIN),
            late_dropped: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            timers_pending: AtomicU64::new(0),
            keys: AtomicU64::new(0),
            open_windows: AtomicU64::new(u64::MAX),
            rebuild_until: AtomicI64::new(-1),
            restoring: std::sync::atomic::AtomicBool::new(false),
            restored_records: AtomicU64::new(0),
            restored_bytes: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn state(&self) -> PartitionState {
        PartitionState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(crate) fn set_state(&self, state: PartitionState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub(crate) fn last_error(&self) -> Option<ErrorInfo> {
        self.last_error.lock().expect("status lock").clone()
    }

    /// Counts an error and remembers it as the last one.
    pub(crate) fn record_error(&self, message: &str, offset: Option<i64>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("status lock") = Some(ErrorInfo {
            message: message.to_string(),
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            at_ms: now_ms(),
        });
    }

    /// Remembers a notice as the last error without counting an error (a
    /// position the partition had to reset, say): the status line an
    /// operator looks at names it.
    pub(crate) fn record_notice(&self, message: &str, offset: Option<i64>) {
        *self.last_error.lock().expect("status lock") = Some(ErrorInfo {
            message: message.to_string(),
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            at_ms: now_ms(),
        });
    }

    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The task's open windows as of its last commit (`None`: its plugin
    /// opened no store as windowed).
    pub(crate) fn open_windows(&self) -> Option<u64> {
        Some(Self::get(&self.open_windows)).filter(|open| *open != u64::MAX)
    }

    pub(crate) fn set_open_windows(&self, open: Option<u64>) {
        let open = open.map_or(u64::MAX, |open| open.min(u64::MAX - 1));
        self.open_windows.store(open, Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A partition's status as served by the HTTP API.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PartitionStatus {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) state: PartitionState,
    pub(crate) committed_offset: i64,
    pub(crate) high_watermark: i64,
    pub(crate) lag: i64,
    pub(crate) records_in: u64,
    pub(crate) records_out: u64,
    pub(crate) errors: u64,
    pub(crate) skipped: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) memory_bytes: u64,
    /// Stateful processors only (omitted otherwise): stream time, late
    /// records dropped, commits, approximate state bytes, timers
    /// scheduled, keys and open windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stateful: Option<StatefulStatus>,
    pub(crate) last_error: Option<ErrorInfo>,
}

/// A stateful task's figures in the status.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatefulStatus {
    pub(crate) stream_time: Option<i64>,
    pub(crate) late_dropped: u64,
    pub(crate) commits: u64,
    pub(crate) state_bytes: u64,
    pub(crate) timers_pending: u64,
    /// Entries in the task's stores as of its last commit: counted as
    /// writes add and delete them, exact.
    pub(crate) keys: u64,
    /// Windows open as of the last commit: the entries of the stores the
    /// plugin opened as windowed (the SDK's windows: one per key's
    /// window). Omitted when it opened none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) open_windows: Option<u64>,
    /// Rebuilding lost state: up to which input offset (the partition's
    /// `committed_offset` is how far it has got).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rebuilding_until: Option<i64>,
    /// Restoring lost state from the changelog: how much is done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) restoring: Option<Restoring>,
}

/// A restore from the changelog under way.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Restoring {
    /// Changelog records (state entries, timers, tombstones) read so far.
    pub(crate) records: u64,
    /// Their key and value bytes.
    pub(crate) bytes: u64,
}

impl PartitionStats {
    /// The stateful figures.
    pub(crate) fn stateful(&self) -> StatefulStatus {
        let stream_time = self.stream_time.load(Ordering::Relaxed);
        StatefulStatus {
            stream_time: (stream_time != i64::MIN).then_some(stream_time),
            late_dropped: Self::get(&self.late_dropped),
            commits: Self::get(&self.commits),
            state_bytes: Self::get(&self.state_bytes),
            timers_pending: Self::get(&self.timers_pending),
            keys: Self::get(&self.keys),
            open_windows: self.open_windows(),
            rebuilding_until: Some(self.rebuild_until.load(Ordering::Relaxed))
                .filter(|until| *until >= 0),
            restoring: self.restoring.load(Ordering::Relaxed).then(|| Restoring {
                records: Self::get(&self.restored_records),
                bytes: Self::get(&self.restored_bytes),
            }),
        }
    }
}
