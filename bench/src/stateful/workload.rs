//! The stateful benchmarks' workload and native baseline: 100-byte JSON
//! records on a fixed set of keys, the same records as input batches and
//! as log entries, and the windowed count written natively over the same
//! RocksDB state the plugin uses.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use sluice::log::batch;
use sluice::processor::host::{
    Batch, Factory, InputRecord, Invoke, InvokeError, Label, Output, OutputRecord, Payload,
    TaskContext, Timer,
};
use sluice::processor::scratch::{NativeStore, Scratch};
use sluice::processor::spec::Limits;
use sluice_sdk::window::{key as window_key, Window};

/// The store windowed-count keeps its counts in.
pub(super) const STORE: &str = "counts";

/// Tumbling windows of a minute.
pub(super) const WINDOW_MS: i64 = 60_000;

/// The start of the window every record of a run falls in (a multiple of
/// [`WINDOW_MS`]).
pub(super) const WINDOW_START: i64 = 1_700_000_040_000;

/// The plugin's config, for the plugin and the native count alike.
pub(super) fn plugin_config() -> Vec<(String, String)> {
    vec![
        ("size_ms".into(), WINDOW_MS.to_string()),
        ("emit".into(), "update".into()),
    ]
}

/// Who a stateful instance of processor `name` is: partition 0 of `in`,
/// with the `counts` store.
pub(super) fn label(name: &str) -> Label {
    Label {
        processor: name.into(),
        topic: "in".into(),
        partition: 0,
        task: 0,
        stores: vec![STORE.to_string()].into(),
        tables: Vec::new().into(),
    }
}

/// Batch limits of the partition loop: `batch` records, read from the log
/// in the broker's default `batch_bytes_max` (or more when `batch` of the
/// workload's records would not fit in it).
pub(super) fn limits(batch: usize) -> Limits {
    let defaults = Limits::default();
    Limits {
        batch_records_max: batch as u64,
        batch_bytes_max: defaults.batch_bytes_max.max(batch as u64 * 512),
        ..defaults
    }
}

/// A run's records: key, 100-byte JSON value, timestamp.
pub(super) struct Workload {
    pub(super) records: Vec<(Vec<u8>, Vec<u8>, i64)>,
}

impl Workload {
    /// `count` records on `keys` keys, spread evenly (the `i`th record's key
    /// is a scramble of `i` modulo `keys`), timestamps rising through one
    /// window. `seed` varies the key order between workloads.
    pub(super) fn new(count: usize, keys: u64, seed: u64) -> Self {
        Self::part(0..count, count, keys, seed)
    }

    /// Records `range` of such a workload of `count` records.
    pub(super) fn part(range: std::ops::Range<usize>, count: usize, keys: u64, seed: u64) -> Self {
        let kinds = ["click", "view", "scroll"];
        let span = (WINDOW_MS - 1) as u128;
        let records = range
            .map(|i| {
                let key = key_of(scramble(i as u64 ^ seed) % keys.max(1));
                let mut value = format!(
                    r#"{{"id":{i},"kind":"{}","amount":{},"pad":""#,
                    kinds[i % 3],
                    (i * 7919) % 1000,
                );
                while value.len() < 98 {
                    value.push('x');
                }
                value.push_str("\"}");
                let offset = (i as u128 * span / count.max(1) as u128) as i64;
                (key, value.into_bytes(), WINDOW_START + offset)
            })
            .collect();
        Self { records }
    }

    /// One record on each of `keys` keys, in key order.
    pub(super) fn each_key(keys: u64) -> Self {
        let mut workload = Self::new(keys as usize, keys, 0);
        for (n, record) in workload.records.iter_mut().enumerate() {
            record.0 = key_of(n as u64);
        }
        workload
    }

    /// The records as `process` batches of `size`.
    pub(super) fn batches(&self, size: usize) -> Vec<Vec<InputRecord>> {
        let size = size.max(1);
        self.records
            .chunks(size)
            .enumerate()
            .map(|(chunk, records)| {
                records
                    .iter()
                    .enumerate()
                    .map(|(i, (key, value, timestamp))| InputRecord {
                        offset: (chunk * size + i) as i64,
                        timestamp: *timestamp,
                        key: Some(Bytes::copy_from_slice(key)),
                        value: Some(Bytes::copy_from_slice(value)),
                        headers: Vec::new(),
                    })
                    .collect()
            })
            .collect()
    }

    /// Appends the records to `in`/0 of `scratch`, 1 000 to a batch.
    pub(super) fn append(&self, scratch: &Scratch) -> anyhow::Result<i64> {
        self.append_shifted(scratch, 0)
    }

    /// Appends the records with their timestamps `shift_ms` later.
    pub(super) fn append_shifted(&self, scratch: &Scratch, shift_ms: i64) -> anyhow::Result<i64> {
        let input = scratch.store.partition("in", 0)?;
        for chunk in self.records.chunks(1_000) {
            let entries: Vec<batch::build::Entry> = chunk
                .iter()
                .map(|(key, value, timestamp)| {
                    (Some(key.clone()), Some(value.clone()), timestamp + shift_ms)
                })
                .collect();
            input.append(&batch::build::batch(
                &entries,
                kafka_protocol::records::Compression::None,
            ))?;
        }
        Ok(input.high_watermark())
    }
}

/// The key of key number `n`: `k` and ten digits.
pub(super) fn key_of(n: u64) -> Vec<u8> {
    format!("k{n:010}").into_bytes()
}

/// splitmix64's finaliser: spreads consecutive numbers over all keys.
pub(super) fn scramble(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The store key of `key`'s window at `timestamp`.
pub(super) fn window_key_at(key: &[u8], timestamp: i64) -> (Window, Vec<u8>) {
    let start = timestamp - timestamp.rem_euclid(WINDOW_MS);
    let window = Window {
        start,
        end: start + WINDOW_MS,
    };
    (window, window_key::encode_by_window(key, window))
}

/// The store keys (windows) of `records`, in batches of `size`: what
/// `Scratch::rocksdb_floor` reads and writes.
pub(super) fn store_key_batches(
    records: &[(Vec<u8>, Vec<u8>, i64)],
    size: usize,
) -> Vec<Vec<Vec<u8>>> {
    records
        .chunks(size.max(1))
        .map(|chunk| {
            chunk
                .iter()
                .map(|(key, _, timestamp)| window_key_at(key, *timestamp).1)
                .collect()
        })
        .collect()
}

/// Each batch's distinct store keys (windows), in batches of `size`
/// records, in order of first appearance: what a batch's `get-many`
/// reads and its writes write.
pub(super) fn distinct_store_key_batches(
    records: &[(Vec<u8>, Vec<u8>, i64)],
    size: usize,
) -> Vec<Vec<Vec<u8>>> {
    store_key_batches(records, size)
        .into_iter()
        .map(|keys| {
            let mut seen = std::collections::HashSet::new();
            keys.into_iter()
                .filter(|key| seen.insert(key.clone()))
                .collect()
        })
        .collect()
}

/// One window's count, as windowed-count writes it.
#[derive(Serialize)]
struct WindowCount<'a> {
    key: &'a str,
    window_start: i64,
    window_end: i64,
    count: u64,
}

/// windowed-count (tumbling, grace 0, `emit=update`) in Rust, with the
/// SDK's access pattern: per batch one `get-many` of the windows it
/// touches, the counts in record order with a JSON output each, a timer
/// for each new window start (the SDK's by-window layout), one write per
/// changed window; `on_timer` closes a window by clearing its keys' range
/// in one call.
pub(super) struct NativeCount {
    store: NativeStore,
    timer_prefix: Vec<u8>,
}

impl NativeCount {
    pub(super) fn factory() -> Factory {
        Arc::new(|| Ok(Box::new(NativeCount::new()) as Box<dyn Invoke>))
    }

    pub(super) fn new() -> Self {
        let mut timer_prefix = STORE.as_bytes().to_vec();
        timer_prefix.push(0);
        Self {
            store: NativeStore::open(STORE),
            timer_prefix,
        }
    }
}

/// A batch record's window: its source index, key and store key.
struct Step<'a> {
    source: u32,
    key: &'a [u8],
    window: Window,
    store_key: Vec<u8>,
}

impl Invoke for NativeCount {
    fn process(
        &mut self,
        batch: Batch<'_>,
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        let mut stream_time = NativeStore::stream_time(task);
        let mut steps = Vec::with_capacity(batch.records.len());
        for (source, record) in batch.records.iter().enumerate() {
            stream_time = Some(stream_time.map_or(record.timestamp, |t| t.max(record.timestamp)));
            let Some(key) = record.key.as_deref() else {
                continue;
            };
            let (window, store_key) = window_key_at(key, record.timestamp);
            if window.end <= stream_time.unwrap_or(record.timestamp) {
                continue; // late (the workload has none)
            }
            steps.push(Step {
                source: source as u32,
                key,
                window,
                store_key,
            });
        }
        // (stored, count, dirty) per window, read in one get-many.
        let mut slots: BTreeMap<Vec<u8>, (bool, u64, bool)> = steps
            .iter()
            .map(|step| (step.store_key.clone(), (false, 0, false)))
            .collect();
        let keys: Vec<Vec<u8>> = slots.keys().cloned().collect();
        let values = self.store.get_many(task, &keys)?;
        for (key, value) in keys.into_iter().zip(values) {
            if let Some(value) = value {
                let count = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| InvokeError::Trap {
                        message: "a count is not a number".into(),
                    })?;
                slots.insert(key, (true, count, false));
            }
        }
        let mut outputs = Vec::with_capacity(steps.len());
        let mut scheduled = Vec::new();
        for step in &steps {
            let slot = slots.get_mut(&step.store_key).expect("prefetched");
            if !slot.0 && !slot.2 && !scheduled.contains(&step.window.start) {
                scheduled.push(step.window.start);
                let mut timer = self.timer_prefix.clone();
                timer.extend_from_slice(&window_key::window_prefix(step.window.start));
                NativeStore::schedule(task, &timer, step.window.end)?;
            }
            slot.1 += 1;
            slot.2 = true;
            outputs.push(output(step, slot.1)?);
        }
        for (key, (_, count, dirty)) in slots {
            if dirty {
                self.store.put(task, &key, count.to_string().into_bytes())?;
            }
        }
        Ok(outputs)
    }

    fn on_timer(
        &mut self,
        timers: &[Timer],
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        for timer in timers {
            let Some(from) = timer.key.strip_prefix(self.timer_prefix.as_slice()) else {
                continue;
            };
            let Some(start) = window_key::window_start(from) else {
                continue;
            };
            // As the SDK closes an `emit=update` window: its keys cleared
            // in one range, not read.
            let (_, end) = window_key::window_range(start);
            self.store.clear_range(task, from, Some(&end))?;
        }
        Ok(Vec::new())
    }
}

fn output(step: &Step<'_>, count: u64) -> Result<Output, InvokeError> {
    let key = String::from_utf8_lossy(step.key);
    let value = serde_json::to_vec(&WindowCount {
        key: &key,
        window_start: step.window.start,
        window_end: step.window.end,
        count,
    })
    .map_err(|error| InvokeError::Trap {
        message: error.to_string(),
    })?;
    Ok(Output {
        source: step.source,
        topic: None,
        payload: Payload::Emit(OutputRecord {
            key: Some(step.key.to_vec().into()),
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: Some(step.window.end),
        }),
    })
}
