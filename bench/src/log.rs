//! `sluice-bench log`: append and read throughput of the log store next to
//! raw sequential writes of the same bytes to the same disk, and the time
//! from process start to listening.
//!
//! Workload: 1 KiB records in uncompressed batches of 16 KiB to 1 MiB.
//! Baselines, in the same run and directory: `write(2)` of the same buffers
//! in a loop (for `flush=never`) and `write(2)` + `fdatasync` per batch (for
//! `flush=always`). Each figure is the median of `--runs` runs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use sluice::log::{batch, FlushPolicy, LogStore, StdIo, StoreOptions, SystemClock};

use crate::serve::{sluice_binary, Serve};
use crate::{median, OutputFormat};

/// Options of `sluice-bench log`.
#[derive(Debug, Args)]
pub(crate) struct LogBenchArgs {
    /// Directory to write in (on the disk to measure) [default: a temporary directory under the current one].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Bytes written per run without fsync.
    #[arg(long, default_value_t = 256 << 20)]
    pub bytes: u64,
    /// Bytes written per run with an fsync per batch (flush=always).
    #[arg(long, default_value_t = 16 << 20)]
    pub fsync_bytes: u64,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Batch sizes in KiB.
    #[arg(long, value_delimiter = ',', default_values_t = [16u64, 64, 256, 1024])]
    pub batch_kib: Vec<u64>,
    /// The `sluice` binary whose startup is timed [default: `sluice` next to this executable].
    #[arg(long, value_name = "FILE")]
    pub sluice: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Results for one batch size; throughputs in MB/s (10^6 bytes).
#[derive(Debug, Serialize)]
struct BatchResult {
    batch_bytes: usize,
    raw_write_mb_s: f64,
    append_never_mb_s: f64,
    never_ratio: f64,
    raw_write_fsync_mb_s: f64,
    append_always_mb_s: f64,
    always_ratio: f64,
    read_mb_s: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    runs: usize,
    bytes_per_run: u64,
    fsync_bytes_per_run: u64,
    batches: Vec<BatchResult>,
    startup_ms_median: f64,
}

pub(crate) fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

pub(crate) fn raw_write(
    dir: &Path,
    template: &[u8],
    total: u64,
    fsync: bool,
) -> anyhow::Result<f64> {
    let path = dir.join("raw.bin");
    let mut file = File::create(&path)?;
    let started = Instant::now();
    let mut written = 0;
    while written < total {
        file.write_all(template)?;
        if fsync {
            file.sync_data()?;
        }
        written += template.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(mb_per_s(written, seconds))
}

/// Appends `total` bytes of copies of `template`; returns (append MB/s,
/// read MB/s of everything back from the page cache).
fn append_and_read(
    dir: &Path,
    template: &[u8],
    total: u64,
    flush: FlushPolicy,
) -> anyhow::Result<(f64, f64)> {
    let data_dir = dir.join(format!("store-{flush}").replace(':', "-"));
    let options = StoreOptions {
        flush,
        ..StoreOptions::default()
    };
    let store = LogStore::open(&data_dir, options, Arc::new(StdIo), Arc::new(SystemClock))?;
    store.create_topic("bench", 1, BTreeMap::new())?;
    let partition = store.partition("bench", 0)?;
    let buffer = template.to_vec();
    let started = Instant::now();
    let mut written = 0;
    while written < total {
        // An append rewrites only the base offset in place (outside the
        // CRC), so the same buffer is a valid batch again for the next one,
        // just as the raw baseline writes the same buffer again.
        partition.append(&buffer)?;
        written += template.len() as u64;
    }
    let append_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut offset = 0;
    let mut read = 0u64;
    let end = partition.high_watermark();
    while offset < end {
        let result = partition.read(offset, 1 << 20)?;
        read += result.records.len() as u64;
        let mut position = 0;
        while position < result.records.len() {
            let header = batch::BatchHeader::parse(&result.records[position..])?;
            offset = header.next_offset();
            position += header.total_bytes();
        }
    }
    let read_seconds = started.elapsed().as_secs_f64();
    drop(partition);
    drop(store);
    std::fs::remove_dir_all(&data_dir)?;
    Ok((
        mb_per_s(written, append_seconds),
        mb_per_s(read, read_seconds),
    ))
}

fn bench_batch(dir: &Path, args: &LogBenchArgs, batch_kib: u64) -> anyhow::Result<BatchResult> {
    let records = ((batch_kib * 1024) / 1040).max(1) as usize;
    let template = batch::build::values(records, 1024, 1_700_000_000_000).to_vec();
    let mut samples: [Vec<f64>; 6] = Default::default();
    for _ in 0..args.runs {
        samples[0].push(raw_write(dir, &template, args.bytes, false)?);
        let (append, read) = append_and_read(dir, &template, args.bytes, FlushPolicy::Never)?;
        samples[1].push(append);
        samples[2].push(read);
        samples[3].push(raw_write(dir, &template, args.fsync_bytes, true)?);
        samples[4].push(append_and_read(dir, &template, args.fsync_bytes, FlushPolicy::Always)?.0);
    }
    let [raw, never, read, raw_fsync, always, _] = samples.each_mut().map(|s| median(s));
    Ok(BatchResult {
        batch_bytes: template.len(),
        raw_write_mb_s: raw,
        append_never_mb_s: never,
        never_ratio: never / raw,
        raw_write_fsync_mb_s: raw_fsync,
        append_always_mb_s: always,
        always_ratio: always / raw_fsync,
        read_mb_s: read,
    })
}

/// Milliseconds from spawning `sluice serve` on an empty data directory to
/// its ready line (both listeners bound).
fn startup_ms(sluice: &Path, dir: &Path) -> anyhow::Result<f64> {
    let data_dir = dir.join("startup");
    let started = Instant::now();
    let serve = Serve::start(sluice, &data_dir, &[])?;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    // SIGTERM for a clean stop, as a user's supervisor would.
    drop(serve);
    std::fs::remove_dir_all(&data_dir)?;
    Ok(elapsed)
}

/// Runs the benchmark and prints the report.
pub(crate) fn run(args: &LogBenchArgs) -> anyhow::Result<()> {
    let sluice = sluice_binary(args.sluice.as_deref())?;
    let temporary = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir_in("."),
    }
    .context("creating the benchmark directory")?;
    let dir = temporary.path();
    let mut batches = Vec::new();
    for batch_kib in &args.batch_kib {
        eprintln!(
            "sluice-bench log: {batch_kib} KiB batches ({} runs)…",
            args.runs
        );
        batches.push(bench_batch(dir, args, *batch_kib)?);
    }
    eprintln!("sluice-bench log: startup…");
    let mut startups = (0..args.runs.max(5))
        .map(|_| startup_ms(&sluice, dir))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = Report {
        runs: args.runs,
        bytes_per_run: args.bytes,
        fsync_bytes_per_run: args.fsync_bytes,
        batches,
        startup_ms_median: median(&mut startups),
    };
    match args.format {
        OutputFormat::Json => crate::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?)),
        OutputFormat::Text => crate::emit(&text(&report)),
    }
}

fn text(report: &Report) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:>9} | {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6} | {:>9}",
        "batch", "raw MB/s", "never", "ratio", "raw+fsync", "always", "ratio", "read MB/s"
    );
    for b in &report.batches {
        let _ = writeln!(
            text,
            "{:>7}Ki | {:>9.0} {:>9.0} {:>5.0}% | {:>9.1} {:>9.1} {:>5.0}% | {:>9.0}",
            b.batch_bytes / 1024,
            b.raw_write_mb_s,
            b.append_never_mb_s,
            b.never_ratio * 100.0,
            b.raw_write_fsync_mb_s,
            b.append_always_mb_s,
            b.always_ratio * 100.0,
            b.read_mb_s
        );
    }
    let _ = writeln!(
        text,
        "startup to listening (median): {:.1} ms",
        report.startup_ms_median
    );
    text
}
