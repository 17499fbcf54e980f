//! State much larger than its cache, and a restart after kill -9.
//!
//! A child process (`sluice-bench stateful-fill`, hidden) loads
//! `--large-keys` windows into the state of an exactly-once windowed-count
//! task (with `state.memory_bytes_max` of `--large-memory-bytes`), appends
//! the input (records on random keys of those windows), processes until
//! it says `ready`, and is killed with SIGKILL in the middle of its work.
//! This process then times the restart as the broker does it: open the
//! log store and the state (RocksDB replays its WAL), recover the task
//! (its open transaction ended, a new epoch recorded) and process the
//! first batch. Then it processes the rest in `--runs` runs: records/s
//! over the large state, each run the plugin's task and then the same
//! processor with the count in Rust (`NativeCount`, the same state), and
//! RocksDB alone doing a read and a write per record of the same key
//! distribution (`Scratch::rocksdb_floor`): the storage engine's floor
//! for a state five times its memory, measured in the same run.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use sluice::processor::host::{Factory, Runtime};
use sluice::processor::scratch::{NativeStore, Scratch, StatefulOptions};
use sluice::processor::worker::PartitionTask;

use super::workload::{self, key_of, window_key_at, NativeCount, Workload, WINDOW_START};
use super::StatefulBenchArgs;
use crate::median;

/// Options of the hidden `sluice-bench stateful-fill`.
#[derive(Debug, Args)]
pub(crate) struct FillArgs {
    /// The pipeline's folder.
    #[arg(long)]
    pub dir: PathBuf,
    /// The windowed-count component.
    #[arg(long)]
    pub wasm: PathBuf,
    /// Windows to load.
    #[arg(long)]
    pub keys: u64,
    /// Input records to append.
    #[arg(long)]
    pub records: usize,
    /// Records to process before saying `ready` (and at most twice as many
    /// before the kill, so input is left for the restart).
    #[arg(long)]
    pub ready_records: i64,
    /// `state.memory_bytes_max`.
    #[arg(long)]
    pub memory_bytes: u64,
    /// `state.value_cache_bytes_max` (default the broker's).
    #[arg(long)]
    pub value_cache_bytes: Option<u64>,
    #[arg(long)]
    pub batch: usize,
    #[arg(long)]
    pub commit_interval_ms: u64,
}

/// The large-state figures.
#[derive(Debug, Serialize)]
pub(super) struct Large {
    keys: u64,
    memory_bytes_max: u64,
    state_disk_bytes: u64,
    setup_s: f64,
    /// Opening the log store and the state after the kill.
    restart_open_ms: f64,
    /// Recovery of the task and its first batch, after the open.
    restart_recover_first_batch_ms: f64,
    restart_total_ms: f64,
    records_per_run: usize,
    records_s: f64,
    /// The same loop with the count in Rust (`NativeCount`) over the same
    /// state, runs alternated with the plugin's.
    native_records_s: f64,
    /// RocksDB alone: a multi-get per batch and a put per record over the
    /// same state, synced every commit interval (`Scratch::rocksdb_floor`).
    rocksdb_floor_records_s: f64,
}

impl Large {
    pub(super) fn text(&self) -> String {
        format!(
            "\nlarge state: {} keys, state.memory_bytes_max {} MiB, {} MiB on disk (loaded in {:.0} s)\n\
             restart after SIGKILL   open {:.0} ms + recover and first batch {:.0} ms = {:.0} ms\n\
             end to end, exactly-once, random keys   wasm {:.3}M   native {:.3}M   RocksDB alone {:.3}M records/s ({} records per run)\n\
             wasm / native {:.2}   wasm / RocksDB alone {:.2}\n",
            self.keys,
            self.memory_bytes_max >> 20,
            self.state_disk_bytes >> 20,
            self.setup_s,
            self.restart_open_ms,
            self.restart_recover_first_batch_ms,
            self.restart_total_ms,
            self.records_s / 1e6,
            self.native_records_s / 1e6,
            self.rocksdb_floor_records_s / 1e6,
            self.records_per_run,
            self.records_s / self.native_records_s,
            self.records_s / self.rocksdb_floor_records_s,
        )
    }
}

const NAME: &str = "large";

/// Runs the child, kills it, restarts, then measures throughput.
pub(super) fn run(args: &StatefulBenchArgs) -> anyhow::Result<Large> {
    let dir = super::scratch_dir()?;
    // Input for the restart and for each run of the plugin and of the
    // native count.
    let records = (2 * args.runs + 1) * args.large_records;
    let ready_records = (args.large_records / 2).max(1) as i64;
    eprintln!(
        "large state: loading {} keys in a child process",
        args.large_keys
    );
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("stateful-fill")
        .arg("--dir")
        .arg(dir.path())
        .arg("--wasm")
        .arg(&args.wasm)
        .args(["--keys", &args.large_keys.to_string()])
        .args(["--records", &records.to_string()])
        .args(["--ready-records", &ready_records.to_string()])
        .args(["--memory-bytes", &args.large_memory_bytes.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .args(["--commit-interval-ms", &args.commit_interval_ms.to_string()])
        .args(
            args.value_cache_bytes
                .map(|bytes| ["--value-cache-bytes".to_string(), bytes.to_string()])
                .into_iter()
                .flatten(),
        )
        .stdout(Stdio::piped())
        .spawn()
        .context("starting sluice-bench stateful-fill")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let status = child.wait()?;
        anyhow::bail!("stateful-fill failed ({status})");
    }
    let setup_s = started.elapsed().as_secs_f64();
    // In the middle of a commit interval: an open transaction, staged state.
    std::thread::sleep(Duration::from_millis(args.commit_interval_ms / 2));
    child.kill()?; // SIGKILL
    child.wait()?;
    let state_disk_bytes = disk_bytes(&dir.path().join("state"));
    eprintln!("large state: killed; restarting");
    let wasm = std::fs::read(&args.wasm)?;
    let plugin = Runtime::new(None)?.compile(&wasm)?;
    let started = Instant::now();
    let scratch = Scratch::open_with_state_memory(
        dir.path(),
        Some(args.large_memory_bytes),
        args.value_cache_bytes,
    )?;
    let opened = started.elapsed();
    let mut task = stateful_task(
        &scratch,
        super::wasm_factory(&plugin, NAME),
        args.batch,
        args.commit_interval_ms,
    )?;
    let recovered_at = task.position();
    let end = scratch.store.partition("in", 0)?.high_watermark();
    anyhow::ensure!(recovered_at < end, "the child processed all its input");
    while task.position() <= recovered_at {
        task.step().map_err(|f| anyhow::anyhow!("{}", f.message))?;
    }
    let restarted = started.elapsed();
    drop(task);
    let (mut wasm, mut native, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        eprintln!("large state: run {}/{}", run + 1, args.runs);
        let factories = [
            (super::wasm_factory(&plugin, NAME), &mut wasm),
            (NativeCount::factory(), &mut native),
        ];
        for (factory, samples) in factories {
            let mut task = stateful_task(&scratch, factory, args.batch, args.commit_interval_ms)?;
            let from = task.position();
            let target = (from + args.large_records as i64).min(end);
            anyhow::ensure!(target > from, "the large state's input ran out");
            let started = Instant::now();
            super::run_to(&mut task, target)?;
            samples.push((task.position() - from) as f64 / started.elapsed().as_secs_f64());
        }
        // The same distribution of keys (another seed), as store keys.
        let keys = Workload::part(
            0..args.large_records,
            args.large_records,
            args.large_keys,
            100 + run as u64,
        );
        let batches = workload::store_key_batches(&keys.records, args.batch);
        let seconds =
            scratch.rocksdb_floor(NAME, workload::STORE, &batches, args.commit_interval_ms)?;
        floor.push(args.large_records as f64 / seconds);
    }
    scratch.store.close()?;
    Ok(Large {
        keys: args.large_keys,
        memory_bytes_max: args.large_memory_bytes,
        state_disk_bytes,
        setup_s,
        restart_open_ms: opened.as_secs_f64() * 1e3,
        restart_recover_first_batch_ms: (restarted - opened).as_secs_f64() * 1e3,
        restart_total_ms: restarted.as_secs_f64() * 1e3,
        records_per_run: args.large_records,
        records_s: median(&mut wasm),
        native_records_s: median(&mut native),
        rocksdb_floor_records_s: median(&mut floor),
    })
}

/// An exactly-once task of the large state's processor running
/// `factory`'s instances.
fn stateful_task(
    scratch: &Scratch,
    factory: Factory,
    batch: usize,
    commit_interval_ms: u64,
) -> anyhow::Result<PartitionTask> {
    scratch.stateful_task(
        NAME,
        factory,
        workload::limits(batch),
        &[workload::STORE],
        StatefulOptions {
            exactly_once: true,
            commit_interval_ms,
        },
    )
}

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.metadata().ok())
                .filter(|meta| meta.is_file())
                .map(|meta| meta.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Records generated and appended at a time while filling.
const FILL_CHUNK: usize = 100_000;

/// The child: load, append, process, say `ready`, keep processing until
/// killed.
pub(crate) fn fill(args: &FillArgs) -> anyhow::Result<()> {
    let scratch = Scratch::open_with_state_memory(
        &args.dir,
        Some(args.memory_bytes),
        args.value_cache_bytes,
    )?;
    let mut context = scratch.context(NAME)?;
    let store = NativeStore::open(workload::STORE);
    for chunk in (0..args.keys).step_by(FILL_CHUNK) {
        for n in chunk..(chunk + FILL_CHUNK as u64).min(args.keys) {
            let (_, store_key) = window_key_at(&key_of(n), WINDOW_START);
            store
                .put(&mut context, &store_key, b"1")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Scratch::commit_context(&mut context, false)?;
    }
    Scratch::commit_context(&mut context, true)?;
    drop(context);
    eprintln!("stateful-fill: {} keys loaded; appending input", args.keys);
    for start in (0..args.records).step_by(FILL_CHUNK) {
        let range = start..(start + FILL_CHUNK).min(args.records);
        Workload::part(range, args.records, args.keys, 4).append(&scratch)?;
    }
    let wasm = std::fs::read(&args.wasm)?;
    let plugin = Runtime::new(None)?.compile(&wasm)?;
    let mut task = stateful_task(
        &scratch,
        super::wasm_factory(&plugin, NAME),
        args.batch,
        args.commit_interval_ms,
    )?;
    let mut ready = false;
    loop {
        if ready && task.position() >= 2 * args.ready_records {
            // Input is left for the restart's first batch: wait for the kill.
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        task.step().map_err(|f| anyhow::anyhow!("{}", f.message))?;
        if !ready && task.position() >= args.ready_records {
            println!("ready");
            ready = true;
        }
    }
}
