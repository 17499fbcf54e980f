//! `sluice-bench stateful`: stateful processing through the `windowed-count`
//! plugin (tumbling one-minute windows, a count per key, `emit=update`),
//! its state in the broker's RocksDB, beside the same count written in
//! Rust over the same state, in the same run.
//!
//! - **call**: the `process` call with state (staged writes, reads through
//!   to RocksDB), no log; committed every 100 000 records outside the clock.
//! - **end to end**: log → plugin → log through the partition loop the
//!   registry drives (`PartitionTask::step`), exactly-once with 100 ms
//!   commits (transactional outputs, a synced RocksDB commit point,
//!   markers); the same with the native count; the plugin at-least-once.
//! - **latency**: records appended at a steady rate while the task runs
//!   and a read_committed reader polls the output: append to visible.
//! - **queries**: committed point lookups (`get_committed`) at a steady
//!   rate while the task runs.
//! - **large state** (`--large-keys`): a child process loads that many keys
//!   with `state.memory_bytes_max` small, processes, and is killed (SIGKILL);
//!   the restart (reopen, recover, first batch) is timed, then records on
//!   random keys of the large state are processed.
//! - **soak** (`--soak-secs`; `--soak-only` skips the rest): one stateful
//!   task through the partition loop with windows opening and closing,
//!   memory and disk sampled (`soak.rs`).
//! - **restore** (`--restore`, on its own): lost state restored from a
//!   changelog topic beside a raw read of its files and a RocksDB bulk
//!   write of its pairs (`restore.rs`).
//!
//! Throughput figures are medians of `--runs` runs on one thread (the
//! processing thread; RocksDB's background threads run beside it).

mod large;
mod latency;
mod restore;
mod soak;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use sluice::processor::host::{
    Factory, InputRecord, Invoke, InvokeError, Plugin, Runtime, TaskContext,
};
use sluice::processor::scratch::{ForwardAll, NativeStore, Scratch, StatefulOptions};

use crate::{median, OutputFormat};
use soak::SoakSample;
use workload::{label, limits, plugin_config, NativeCount, Workload};

pub(crate) use large::{fill, FillArgs};

/// Options of `sluice-bench stateful`.
#[derive(Debug, Args)]
pub(crate) struct StatefulBenchArgs {
    /// The windowed-count component (bench/run-stateful-bench builds it).
    #[arg(long, value_name = "FILE")]
    pub wasm: PathBuf,
    /// Records per run.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Records per `process` call.
    #[arg(long, default_value_t = 1_024)]
    pub batch: usize,
    /// Runs per throughput figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// The tasks' commit interval.
    #[arg(long, default_value_t = 100)]
    pub commit_interval_ms: u64,
    /// Records per second appended during the latency and query
    /// measurements (0: half the measured exactly-once end-to-end rate, so
    /// the task keeps up).
    #[arg(long, default_value_t = 0)]
    pub latency_rate: u64,
    /// Queries per second during the query measurement.
    #[arg(long, default_value_t = 10_000)]
    pub query_rate: u64,
    /// How long the latency and query measurements last each.
    #[arg(long, default_value_t = 10)]
    pub timed_secs: u64,
    /// Keys of the large state (0: skip it).
    #[arg(long, default_value_t = 10_000_000)]
    pub large_keys: u64,
    /// Records per run over the large state.
    #[arg(long, default_value_t = 500_000)]
    pub large_records: usize,
    /// `state.memory_bytes_max` of the large state.
    #[arg(long, default_value_t = 64 << 20)]
    pub large_memory_bytes: u64,
    /// Also keep one stateful task busy this long, sampling memory.
    #[arg(long, default_value_t = 0)]
    pub soak_secs: u64,
    /// Run the soak only (skip everything else).
    #[arg(long)]
    pub soak_only: bool,
    /// `state.value_cache_bytes_max` (the tasks' caches of committed
    /// values; 0 turns them off), default the broker's.
    #[arg(long)]
    pub value_cache_bytes: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Measure restoring state from a changelog topic only (skip
    /// everything else).
    #[arg(long)]
    pub restore: bool,
    /// Keys in the changelog of the restore measurement.
    #[arg(long, default_value_t = 10_000_000)]
    pub restore_keys: u64,
    /// Bytes of each value in the changelog of the restore measurement.
    #[arg(long, default_value_t = 100)]
    pub restore_value_bytes: usize,
    /// Measure the `process` call only (skip everything else), e.g. to
    /// profile it.
    #[arg(long, hide = true)]
    pub call_only: bool,
    /// Measure end to end only (skip the call and everything after), e.g.
    /// to profile it.
    #[arg(long, hide = true, conflicts_with = "call_only")]
    pub end_to_end_only: bool,
    /// Measure the read_committed latency and the committed lookups only
    /// (at `--latency-rate`), e.g. to profile a window close.
    #[arg(long, hide = true, conflicts_with_all = ["call_only", "end_to_end_only"], requires = "latency_rate")]
    pub latency_only: bool,
    /// Measure the large state only (`--large-keys`, with the restart),
    /// e.g. to compare RocksDB settings.
    #[arg(long, hide = true, conflicts_with_all = ["call_only", "end_to_end_only", "latency_only"])]
    pub large_only: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    records: usize,
    keys: u64,
    record_bytes: usize,
    batch: usize,
    runs: usize,
    commit_interval_ms: u64,
    call_wasm_records_s: f64,
    call_native_records_s: f64,
    /// The call's commits (unsynced, every 100k records, outside the
    /// call's clock): nanoseconds per record, the WASM caller's.
    call_commit_ns_per_record: f64,
    /// The call's state operations alone, through the same task state: per
    /// batch one `get-many` of its distinct windows and a write of each,
    /// the keys prepared outside the clock, no plugin, no outputs. No call
    /// of this workload over this state goes faster.
    call_state_floor_records_s: f64,
    end_to_end_wasm_records_s: f64,
    end_to_end_native_records_s: f64,
    end_to_end_ratio: f64,
    end_to_end_wasm_at_least_once_records_s: f64,
    exactly_once_ratio: f64,
    /// RocksDB alone doing the count's reads and writes of the same
    /// records (a multi-get per batch, a put per record, a synced write
    /// every commit interval; no log, no plugin, no task cache).
    rocksdb_floor_records_s: f64,
    /// RocksDB alone doing only the commits of a loop at the target rate
    /// (each commit interval's distinct keys of `TARGET_RECORDS_S` records,
    /// one synced write): no loop with these commits goes faster.
    rocksdb_commit_floor_records_s: f64,
    /// The same loop, exactly-once, forwarding every record natively with
    /// no state: the log and the transactions alone.
    end_to_end_forward_records_s: f64,
    /// What the loop and the commits at the target rate leave, with
    /// nothing processed: `1 / (1 / forward + 1 / commit floor)`.
    loop_and_commits_floor_records_s: f64,
    latency: Option<latency::Latency>,
    queries: Option<latency::Queries>,
    large: Option<large::Large>,
    soak: Vec<SoakSample>,
}

/// Every run's records/s, before the medians are taken.
#[derive(Default)]
struct Samples {
    call_wasm: Vec<f64>,
    call_native: Vec<f64>,
    call_commit_ns: Vec<f64>,
    call_state_floor: Vec<f64>,
    end_to_end_wasm: Vec<f64>,
    end_to_end_native: Vec<f64>,
    end_to_end_wasm_alos: Vec<f64>,
    rocksdb_floor: Vec<f64>,
    rocksdb_commit_floor: Vec<f64>,
    end_to_end_forward: Vec<f64>,
}

/// Runs the benchmark and prints the report.
pub(crate) fn run(args: &StatefulBenchArgs) -> anyhow::Result<()> {
    if args.restore {
        return restore::run(args);
    }
    if args.soak_only {
        return soak_only(args);
    }
    if args.large_only {
        let large = large::run(args)?;
        return match args.format {
            OutputFormat::Json => crate::emit(&serde_json::to_string_pretty(&large)?),
            OutputFormat::Text => crate::emit(&large.text()),
        };
    }
    let wasm =
        std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    let runtime = Runtime::new(None)?;
    let plugin = runtime.compile(&wasm)?;
    let workload = Workload::new(args.records, args.keys, 0);
    let batches = workload.batches(args.batch);
    let mut samples = Samples::default();
    let dir = tempfile::tempdir_in(".").context("temporary directory")?;
    let scratch = open_scratch(dir.path(), args)?;
    let mut wasm_call = Caller::new(&scratch, "call-wasm", wasm_factory(&plugin, "call-wasm"))?;
    let mut native_call = Caller::new(&scratch, "call-native", NativeCount::factory())?;
    let state_batches = workload::distinct_store_key_batches(&workload.records, args.batch);
    // Its own state store: tasks of one store split its value cache, and
    // two of these windows' entries fill one share.
    let floor_dir = scratch_dir()?;
    let floor_scratch = open_scratch(floor_dir.path(), args)?;
    let mut state_floor = floor_scratch.context("call-state")?;
    // Warm-up: the window's keys exist in all three from here on.
    wasm_call.run(&batches)?;
    native_call.run(&batches)?;
    state_floor_run(&mut state_floor, &state_batches)?;
    let exactly_once = StatefulOptions {
        exactly_once: true,
        commit_interval_ms: args.commit_interval_ms,
    };
    let at_least_once = StatefulOptions {
        exactly_once: false,
        ..exactly_once
    };
    let runs = match args.latency_only {
        true => 0,
        false => args.runs,
    };
    for run in 0..runs {
        eprintln!("run {}/{}", run + 1, args.runs);
        if !args.end_to_end_only {
            let (busy, committing) = wasm_call.run(&batches)?;
            samples.call_wasm.push(args.records as f64 / busy);
            samples
                .call_commit_ns
                .push(committing * 1e9 / args.records as f64);
            let (busy, _) = native_call.run(&batches)?;
            samples.call_native.push(args.records as f64 / busy);
            let busy = state_floor_run(&mut state_floor, &state_batches)?;
            samples.call_state_floor.push(args.records as f64 / busy);
        }
        if args.call_only {
            continue;
        }
        let end_to_end_with =
            |factory: Factory, options| end_to_end(&workload, args, factory, options);
        samples
            .end_to_end_wasm
            .push(end_to_end_with(wasm_factory(&plugin, "e2e"), exactly_once)?);
        samples
            .end_to_end_native
            .push(end_to_end_with(NativeCount::factory(), exactly_once)?);
        samples
            .end_to_end_forward
            .push(end_to_end_with(ForwardAll::factory(), exactly_once)?);
        samples.end_to_end_wasm_alos.push(end_to_end_with(
            wasm_factory(&plugin, "e2e"),
            at_least_once,
        )?);
        samples.rocksdb_floor.push(rocksdb_floor(&workload, args)?);
        samples
            .rocksdb_commit_floor
            .push(rocksdb_commit_floor(&workload, args)?);
    }
    drop((wasm_call, native_call, state_floor));
    scratch.store.close()?;
    floor_scratch.store.close()?;
    drop(scratch);
    let timed = match args.call_only || args.end_to_end_only {
        true => Duration::ZERO,
        false => Duration::from_secs(args.timed_secs),
    };
    let (latency, queries) = if timed.is_zero() {
        (None, None)
    } else {
        let rate = match args.latency_rate {
            0 => (median(&mut samples.end_to_end_wasm.clone()) / 2.0).max(1.0) as u64,
            rate => rate,
        };
        eprintln!("read_committed latency at {rate} records/s");
        let latency = latency::read_committed(&plugin, args, rate, exactly_once, timed)?;
        eprintln!("queries at {}/s", args.query_rate);
        let queries = latency::queries(&plugin, args, rate, exactly_once, timed)?;
        (Some(latency), Some(queries))
    };
    let large = match args.large_keys {
        _ if args.call_only || args.end_to_end_only || args.latency_only => None,
        0 => None,
        _ => Some(large::run(args)?),
    };
    let soak = soak::run(&plugin, args)?;
    let report = samples.into_report(
        args,
        workload.records[0].1.len(),
        (latency, queries, large, soak),
    );
    print(&report, args.format)
}

/// `--soak-only`: the soak and its samples, nothing else.
fn soak_only(args: &StatefulBenchArgs) -> anyhow::Result<()> {
    let wasm =
        std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    let plugin = Runtime::new(None)?.compile(&wasm)?;
    let samples = soak::run(&plugin, args)?;
    match args.format {
        OutputFormat::Json => crate::emit(&serde_json::to_string_pretty(&samples)?),
        OutputFormat::Text => crate::emit(&soak::text(&samples)),
    }
}

fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::tempdir_in(".").context("temporary directory")
}

/// A scratch pipeline in `dir` with the state settings of `args`.
fn open_scratch(dir: &std::path::Path, args: &StatefulBenchArgs) -> anyhow::Result<Scratch> {
    Scratch::open_with_state_memory(dir, None, args.value_cache_bytes)
}

/// A factory of windowed-count instances of processor `name`.
/// Steps `task` until it has processed its input up to `end`, then
/// commits: a caught-up task commits on its own pace, when the broker's
/// driver would wake it again, and a measurement counts the last commit.
fn run_to(task: &mut sluice::processor::worker::PartitionTask, end: i64) -> anyhow::Result<()> {
    let failed = |f: sluice::processor::worker::StepFailure| anyhow::anyhow!("{}", f.message);
    while task.position() < end {
        task.step().map_err(failed)?;
    }
    task.commit_now().map_err(failed)
}

fn wasm_factory(plugin: &Plugin, name: &str) -> Factory {
    plugin.factory(
        sluice::processor::spec::Limits::default(),
        plugin_config(),
        label(name),
    )
}

/// An instance with its task context, called without the partition loop.
struct Caller {
    instance: Box<dyn Invoke>,
    context: TaskContext,
}

/// Records between two commits of a [`Caller`]: a 100 ms commit interval
/// at a million records a second.
const CALL_COMMIT_RECORDS: usize = 100_000;

impl Caller {
    fn new(scratch: &Scratch, name: &str, factory: Factory) -> anyhow::Result<Self> {
        Ok(Self {
            instance: factory().map_err(|e| anyhow::anyhow!("{e}"))?,
            context: scratch.context(name)?,
        })
    }

    /// Calls `process` on every batch; returns the seconds the calls took
    /// and the seconds their commits took (unsynced, every
    /// [`CALL_COMMIT_RECORDS`] records, outside the calls' clock).
    fn run(&mut self, batches: &[Vec<InputRecord>]) -> anyhow::Result<(f64, f64)> {
        let mut busy = Duration::ZERO;
        let mut committing = Duration::ZERO;
        let mut staged = 0;
        for records in batches {
            let batch = sluice::processor::host::Batch {
                topic: "in",
                partition: 0,
                records,
            };
            let started = Instant::now();
            let outputs = self
                .instance
                .process(batch, &mut self.context)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            busy += started.elapsed();
            std::hint::black_box(outputs);
            let last = records.iter().map(|r| r.timestamp).max();
            Scratch::set_stream_time(&mut self.context, last);
            staged += records.len();
            if staged >= CALL_COMMIT_RECORDS {
                let started = Instant::now();
                Scratch::commit_context(&mut self.context, false)?;
                committing += started.elapsed();
                staged = 0;
            }
        }
        let started = Instant::now();
        Scratch::commit_context(&mut self.context, false)?;
        committing += started.elapsed();
        Ok((busy.as_secs_f64(), committing.as_secs_f64()))
    }
}

/// The call's state operations alone ([`Report::call_state_floor_records_s`])
/// over `batches` (each batch's distinct store keys), committed as
/// [`Caller::run`] commits; returns the seconds outside the commits.
fn state_floor_run(context: &mut TaskContext, batches: &[Vec<Vec<u8>>]) -> anyhow::Result<f64> {
    let store = NativeStore::open(workload::STORE);
    let fail = |e: InvokeError| anyhow::anyhow!("{e}");
    let mut busy = Duration::ZERO;
    let mut staged = 0;
    let mut counts = Vec::new();
    for keys in batches {
        let started = Instant::now();
        // As the host answers `get-many` and the SDK writes back: each
        // value read where it lies, each count written from the stack.
        counts.clear();
        store
            .get_many_with(context, keys.iter().map(Vec::as_slice), |index, value| {
                let count = value
                    .and_then(|value| value.try_into().ok())
                    .map_or(0, u64::from_le_bytes);
                counts.push((index, count + 1));
            })
            .map_err(fail)?;
        for &(index, count) in &counts {
            store
                .put(context, &keys[index], count.to_le_bytes())
                .map_err(fail)?;
        }
        busy += started.elapsed();
        staged += keys.len();
        if staged >= CALL_COMMIT_RECORDS {
            Scratch::commit_context(context, false)?;
            staged = 0;
        }
    }
    Scratch::commit_context(context, false)?;
    Ok(busy.as_secs_f64())
}

/// Records/s through the partition loop: a fresh pipeline with the input
/// already written; the clock runs from the first step to the commit of
/// the last record.
fn end_to_end(
    workload: &Workload,
    args: &StatefulBenchArgs,
    factory: Factory,
    options: StatefulOptions,
) -> anyhow::Result<f64> {
    let dir = scratch_dir()?;
    let scratch = open_scratch(dir.path(), args)?;
    let end = workload.append(&scratch)?;
    let limits = limits(args.batch);
    let mut task = scratch.stateful_task("e2e", factory, limits, &[workload::STORE], options)?;
    let started = Instant::now();
    run_to(&mut task, end)?;
    let elapsed = started.elapsed();
    drop(task);
    scratch.store.close()?;
    Ok(workload.records.len() as f64 / elapsed.as_secs_f64())
}

/// Records/s of RocksDB alone doing the count's reads and writes of the
/// workload's records (`Scratch::rocksdb_floor`), the windows already
/// there from a first pass, as in the end-to-end runs' steady state.
fn rocksdb_floor(workload: &Workload, args: &StatefulBenchArgs) -> anyhow::Result<f64> {
    let dir = scratch_dir()?;
    let scratch = open_scratch(dir.path(), args)?;
    let batches = workload::store_key_batches(&workload.records, args.batch);
    let interval = args.commit_interval_ms;
    scratch.rocksdb_floor("floor", workload::STORE, &batches, interval)?;
    let seconds = scratch.rocksdb_floor("floor", workload::STORE, &batches, interval)?;
    scratch.store.close()?;
    Ok(workload.records.len() as f64 / seconds)
}

/// The end-to-end target: records/s on one core.
const TARGET_RECORDS_S: u64 = 1_000_000;

/// Records/s of RocksDB alone doing only the commits of a loop running the
/// workload at [`TARGET_RECORDS_S`] (`Scratch::commit_floor`), the keys
/// already there from a first pass.
fn rocksdb_commit_floor(workload: &Workload, args: &StatefulBenchArgs) -> anyhow::Result<f64> {
    let dir = scratch_dir()?;
    let scratch = open_scratch(dir.path(), args)?;
    let keys = workload::store_key_batches(&workload.records, workload.records.len())
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let per_commit = (TARGET_RECORDS_S * args.commit_interval_ms / 1000) as usize;
    scratch.commit_floor("floor", workload::STORE, &keys, per_commit)?;
    let seconds = scratch.commit_floor("floor", workload::STORE, &keys, per_commit)?;
    scratch.store.close()?;
    Ok(workload.records.len() as f64 / seconds)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

impl Samples {
    fn into_report(
        mut self,
        args: &StatefulBenchArgs,
        record_bytes: usize,
        (latency, queries, large, soak): (
            Option<latency::Latency>,
            Option<latency::Queries>,
            Option<large::Large>,
            Vec<SoakSample>,
        ),
    ) -> Report {
        let e2e_wasm = median(&mut self.end_to_end_wasm);
        let e2e_native = median(&mut self.end_to_end_native);
        let e2e_alos = median(&mut self.end_to_end_wasm_alos);
        let commit_floor = median(&mut self.rocksdb_commit_floor);
        let forward = median(&mut self.end_to_end_forward);
        Report {
            records: args.records,
            keys: args.keys,
            record_bytes,
            batch: args.batch,
            runs: args.runs,
            commit_interval_ms: args.commit_interval_ms,
            call_wasm_records_s: median(&mut self.call_wasm),
            call_native_records_s: median(&mut self.call_native),
            call_commit_ns_per_record: median(&mut self.call_commit_ns),
            call_state_floor_records_s: median(&mut self.call_state_floor),
            end_to_end_wasm_records_s: e2e_wasm,
            end_to_end_native_records_s: e2e_native,
            end_to_end_ratio: e2e_wasm / e2e_native,
            end_to_end_wasm_at_least_once_records_s: e2e_alos,
            exactly_once_ratio: e2e_wasm / e2e_alos,
            rocksdb_floor_records_s: median(&mut self.rocksdb_floor),
            rocksdb_commit_floor_records_s: commit_floor,
            end_to_end_forward_records_s: forward,
            loop_and_commits_floor_records_s: 1.0 / (1.0 / forward + 1.0 / commit_floor),
            latency,
            queries,
            large,
            soak,
        }
    }
}

fn print(report: &Report, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return crate::emit(&format!("{}\n", serde_json::to_string_pretty(report)?));
    }
    let m = |r: f64| format!("{:.2}M records/s", r / 1e6);
    let mut text = format!(
        "windowed-count (tumbling 60 s, emit=update), {} records of {} bytes on {} keys, \
         batches of {}, commits every {} ms, median of {} runs, one thread\n\n",
        report.records,
        report.record_bytes,
        report.keys,
        report.batch,
        report.commit_interval_ms,
        report.runs
    );
    text.push_str(&format!(
        "process call with state   wasm {:>18}   native {:>18}\n",
        m(report.call_wasm_records_s),
        m(report.call_native_records_s)
    ));
    text.push_str(&format!(
        "the call's state operations alone {:>18}   (a get-many of each batch's distinct windows, a write of each; no plugin, no outputs)\n",
        m(report.call_state_floor_records_s)
    ));
    text.push_str(&format!(
        "the call's commits (unsynced, every 100k records) {:>8.0} ns a record\n",
        report.call_commit_ns_per_record
    ));
    text.push_str(&format!(
        "end to end, exactly-once  wasm {:>18}   native {:>18}   wasm/native {:.2}\n",
        m(report.end_to_end_wasm_records_s),
        m(report.end_to_end_native_records_s),
        report.end_to_end_ratio
    ));
    text.push_str(&format!(
        "end to end, at-least-once wasm {:>18}   exactly-once/at-least-once {:.2}\n",
        m(report.end_to_end_wasm_at_least_once_records_s),
        report.exactly_once_ratio
    ));
    text.push_str(&format!(
        "RocksDB alone, a read and a write per record {:>12}   wasm end to end / RocksDB alone {:.2}\n",
        m(report.rocksdb_floor_records_s),
        report.end_to_end_wasm_records_s / report.rocksdb_floor_records_s
    ));
    text.push_str(&format!(
        "RocksDB alone, only the commits at {}M records/s {:>12}   (each commit interval's distinct keys, one synced write)\n",
        TARGET_RECORDS_S / 1_000_000,
        m(report.rocksdb_commit_floor_records_s),
    ));
    text.push_str(&format!(
        "the loop alone, forwarding every record natively {:>12}   with those commits {} (nothing processed)\n",
        m(report.end_to_end_forward_records_s),
        m(report.loop_and_commits_floor_records_s),
    ));
    if let Some(latency) = &report.latency {
        text.push_str(&latency.text());
    }
    if let Some(queries) = &report.queries {
        text.push_str(&queries.text());
    }
    if let Some(large) = &report.large {
        text.push_str(&large.text());
    }
    if !report.soak.is_empty() {
        text.push_str(&soak::text(&report.soak));
    }
    crate::emit(&text)
}
