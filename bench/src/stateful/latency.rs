//! Timed measurements of a running task: records appended at a steady
//! rate while the exactly-once task runs (a thread stepping it as the
//! registry does when there is input), and either a read_committed reader
//! of the output (append → visible latency) or committed point lookups at
//! a steady rate (interactive query latency).
//!
//! The records carry the wall clock as their timestamps, shifted so that
//! a window boundary falls in the middle of each measurement: the
//! window of every key closes there at once (one timer, a page of keys a
//! call, in the task's idle time), as it does once a minute in a running
//! pipeline, and its cost counts in the figures. (Unshifted, a 10 s
//! measurement crossed a minute boundary one time in six, and its p99
//! with it.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use sluice::log::batch;
use sluice::processor::host::Plugin;
use sluice::processor::scratch::{Scratch, StatefulOptions};

use super::workload::{self, key_of, scramble, window_key_at, Workload};
use super::StatefulBenchArgs;
use crate::percentile;

/// Append → visible to read_committed, per record.
#[derive(Debug, Serialize)]
pub(super) struct Latency {
    rate_records_s: u64,
    records: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    commit_interval_ms: u64,
    /// Seconds into the measurement at which every key's window closed.
    window_close_at_s: f64,
}

impl Latency {
    pub(super) fn text(&self) -> String {
        format!(
            "\nread_committed latency (append → visible), {} records at {}/s: \
             p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms   (commit interval {} ms; \
             every key's window closed at {:.1} s)\n",
            self.records,
            self.rate_records_s,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.commit_interval_ms,
            self.window_close_at_s
        )
    }
}

/// Committed point lookups while the task runs.
#[derive(Debug, Serialize)]
pub(super) struct Queries {
    rate_s: u64,
    queries: u64,
    found: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    task_rate_records_s: u64,
}

impl Queries {
    pub(super) fn text(&self) -> String {
        format!(
            "point lookups (get_committed), {} at {}/s while the task takes {} records/s: \
             p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms   ({} found)\n",
            self.queries,
            self.rate_s,
            self.task_rate_records_s,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.found
        )
    }
}

/// When each appended batch was appended: (its end offset, the instant).
type Appends = Mutex<Vec<(i64, Instant)>>;

/// The latency of records appended at `--latency-rate` for `duration`.
pub(super) fn read_committed(
    plugin: &Plugin,
    args: &StatefulBenchArgs,
    rate: u64,
    options: StatefulOptions,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let dir = super::scratch_dir()?;
    let scratch = super::open_scratch(dir.path(), args)?;
    let records = (rate * duration.as_secs()) as usize;
    let workload = Workload::new(records, args.keys, 1);
    let mut task = scratch.stateful_task(
        "latency",
        super::wasm_factory(plugin, "latency"),
        workload::limits(args.batch),
        &[workload::STORE],
        options,
    )?;
    task.step().map_err(|f| anyhow::anyhow!("{}", f.message))?; // recover, instantiate
    let appends: Appends = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let mut latencies = Vec::with_capacity(records);
    let shift_ms = close_halfway(duration);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let stepper = scope.spawn(|| drive(&mut task, &stop));
        let producer = scope.spawn(|| produce(&scratch, &workload, rate, shift_ms, &appends));
        let mut visible = 0u64;
        let mut next = 0i64;
        let deadline = Instant::now() + duration + Duration::from_secs(30);
        while visible < records as u64 && Instant::now() < deadline {
            let (count, after) = scratch.read_committed_count("out", next)?;
            next = after;
            if count == 0 {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            let now = Instant::now();
            let appends = appends.lock().expect("appends lock");
            for offset in visible..visible + count {
                let at = appends.partition_point(|(end, _)| *end <= offset as i64);
                if let Some((_, appended)) = appends.get(at) {
                    latencies.push(now.duration_since(*appended).as_secs_f64() * 1e3);
                }
            }
            visible += count;
        }
        stop.store(true, Ordering::Relaxed);
        producer.join().expect("producer thread")?;
        stepper.join().expect("task thread")?;
        Ok(())
    })?;
    drop(task);
    scratch.store.close()?;
    Ok(Latency {
        rate_records_s: rate,
        records: latencies.len() as u64,
        p50_ms: percentile(&mut latencies, 0.5),
        p99_ms: percentile(&mut latencies, 0.99),
        max_ms: percentile(&mut latencies, 1.0),
        commit_interval_ms: options.commit_interval_ms,
        window_close_at_s: duration.as_secs_f64() / 2.0,
    })
}

/// Steps `task` whenever it has work (records it has not processed, a
/// commit or a timer due), as the registry's driver does, until `stop`.
fn drive(
    task: &mut sluice::processor::worker::PartitionTask,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    // At the priority the broker runs steps at (`processors.nice`).
    use sluice::processor::worker::threads::{lower_priority, NICE_DEFAULT};
    lower_priority(NICE_DEFAULT)?;
    while !stop.load(Ordering::Relaxed) {
        if task.has_work() {
            task.step().map_err(|f| anyhow::anyhow!("{}", f.message))?;
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    Ok(())
}

/// How far to shift the wall clock for event time to reach a window
/// boundary halfway through a measurement of `duration` starting now:
/// every key's window closes there.
fn close_halfway(duration: Duration) -> i64 {
    let middle = wall_clock_ms() + duration.as_millis() as i64 / 2;
    workload::WINDOW_MS - middle.rem_euclid(workload::WINDOW_MS)
}

/// Appends `workload`'s records at `rate` a second, stamped with the wall
/// clock `shift_ms` later, noting when each batch was appended.
fn produce(
    scratch: &Scratch,
    workload: &Workload,
    rate: u64,
    shift_ms: i64,
    appends: &Appends,
) -> anyhow::Result<()> {
    let input = scratch.store.partition("in", 0)?;
    let started = Instant::now();
    let mut produced = 0usize;
    while produced < workload.records.len() {
        // At most 1 000 records a batch (max.message.bytes).
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize)
            .min(workload.records.len())
            .min(produced + 1_000);
        if due <= produced {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let now_ms = wall_clock_ms() + shift_ms;
        let entries: Vec<batch::build::Entry> = workload.records[produced..due]
            .iter()
            .map(|(key, value, _)| (Some(key.clone()), Some(value.clone()), now_ms))
            .collect();
        let info = input.append(&batch::build::batch(
            &entries,
            kafka_protocol::records::Compression::None,
        ))?;
        let appended = Instant::now();
        std::hint::black_box(info);
        produced = due;
        appends
            .lock()
            .expect("appends lock")
            .push((produced as i64, appended));
    }
    Ok(())
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Committed point lookups at `--query-rate` for `duration`, of random
/// keys' current windows, while the task takes `--latency-rate` records a
/// second on the same keys (after one record per key, so they exist).
pub(super) fn queries(
    plugin: &Plugin,
    args: &StatefulBenchArgs,
    rate: u64,
    options: StatefulOptions,
    duration: Duration,
) -> anyhow::Result<Queries> {
    let dir = super::scratch_dir()?;
    let scratch = super::open_scratch(dir.path(), args)?;
    let mut task = scratch.stateful_task(
        "queries",
        super::wasm_factory(plugin, "queries"),
        workload::limits(args.batch),
        &[workload::STORE],
        options,
    )?;
    // One record per key first, processed and committed.
    let shift_ms = close_halfway(duration);
    let seed = Workload::each_key(args.keys);
    produce(&scratch, &seed, u64::MAX, shift_ms, &Mutex::new(Vec::new()))?;
    super::run_to(
        &mut task,
        scratch.store.partition("in", 0)?.high_watermark(),
    )?;
    let reader = scratch.committed_reader("queries")?;
    let records = (rate * duration.as_secs()) as usize;
    let workload = Workload::new(records, args.keys, 3);
    let stop = AtomicBool::new(false);
    let count = args.query_rate * duration.as_secs();
    let mut latencies = Vec::with_capacity(count as usize);
    let mut found = 0u64;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let stepper = scope.spawn(|| drive(&mut task, &stop));
        let producer =
            scope.spawn(|| produce(&scratch, &workload, rate, shift_ms, &Mutex::new(Vec::new())));
        let started = Instant::now();
        for i in 0..count {
            let scheduled = started + Duration::from_secs_f64(i as f64 / args.query_rate as f64);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let key = key_of(scramble(i ^ 0x5eed) % args.keys.max(1));
            let (_, store_key) = window_key_at(&key, wall_clock_ms() + shift_ms);
            found += u64::from(reader.get(workload::STORE, &store_key)?.is_some());
            latencies.push(scheduled.elapsed().as_secs_f64() * 1e3);
        }
        stop.store(true, Ordering::Relaxed);
        producer.join().expect("producer thread")?;
        stepper.join().expect("task thread")?;
        Ok(())
    })?;
    drop(task);
    scratch.store.close()?;
    Ok(Queries {
        rate_s: args.query_rate,
        queries: latencies.len() as u64,
        found,
        p50_ms: percentile(&mut latencies, 0.5),
        p99_ms: percentile(&mut latencies, 0.99),
        max_ms: percentile(&mut latencies, 1.0),
        task_rate_records_s: rate,
    })
}
