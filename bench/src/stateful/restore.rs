//! `sluice-bench stateful --restore`: restoring lost state from a
//! changelog topic (`--changelog`), beside the two limits it is made of,
//! on the same data in the same run:
//!
//! - **restore**: a task's state rebuilt from its changelog partition
//!   (`--restore-keys` puts of `--restore-value-bytes`, in random key
//!   order), read_committed, into empty RocksDB state in 16 MiB write
//!   batches with the write-ahead log off, flushed and committed at the
//!   end: the broker's own code (`Changelog::restore`).
//! - **raw read**: the changelog's segment files read sequentially, 8 MiB
//!   at a time, nothing decoded: what the disk (or page cache) gives.
//! - **bulk write**: the same pairs generated in memory and written through
//!   the restore's own bulk writer, without the log: RocksDB's share.
//!
//! Every figure is MB/s of changelog bytes (the segment files' size; the
//! bulk write's records/s scaled by the log's bytes per record), the
//! median of `--runs` runs. The segment files were just written, so all
//! three read from the page cache when the machine has the memory for it.

use std::io::Read;
use std::time::Instant;

use serde::Serialize;
use sluice::processor::scratch::{RestoreRun, Scratch};

use super::StatefulBenchArgs;
use crate::{median, OutputFormat};

/// The processor whose changelog is filled.
const NAME: &str = "restore";

#[derive(Debug, Serialize)]
pub(crate) struct Restore {
    keys: u64,
    value_bytes: usize,
    runs: usize,
    changelog_bytes: u64,
    restore_mb_s: f64,
    restore_records_s: f64,
    raw_read_mb_s: f64,
    bulk_write_mb_s: f64,
    bulk_write_records_s: f64,
    /// Restore throughput as a share of the slower of the two limits.
    restore_of_limit: f64,
}

/// Runs the restore benchmark and prints its report.
pub(crate) fn run(args: &StatefulBenchArgs) -> anyhow::Result<()> {
    let dir = super::scratch_dir()?;
    let scratch = Scratch::open(dir.path())?;
    eprintln!(
        "filling a changelog: {} keys, {}-byte values",
        args.restore_keys, args.restore_value_bytes
    );
    let bytes = scratch.fill_changelog(NAME, args.restore_keys, args.restore_value_bytes)?;
    let files = scratch.changelog_files(NAME)?;
    let mb = |run: &RestoreRun| bytes as f64 / 1e6 / run.seconds;
    let (mut restore, mut raw, mut bulk) = (Vec::new(), Vec::new(), Vec::new());
    let mut records = 0;
    for run in 0..args.runs {
        eprintln!("run {}/{}", run + 1, args.runs);
        raw.push(bytes as f64 / 1e6 / raw_read(&files)?);
        let restored = scratch.restore_changelog(NAME)?;
        records = restored.records;
        restore.push(mb(&restored));
        bulk.push(mb(&scratch.bulk_write(
            NAME,
            args.restore_keys,
            args.restore_value_bytes,
        )?));
    }
    let (restore_mb_s, raw_read_mb_s, bulk_write_mb_s) =
        (median(&mut restore), median(&mut raw), median(&mut bulk));
    let per_mb = |mb_s: f64| mb_s * 1e6 / bytes as f64;
    let report = Restore {
        keys: args.restore_keys,
        value_bytes: args.restore_value_bytes,
        runs: args.runs,
        changelog_bytes: bytes,
        restore_mb_s,
        restore_records_s: per_mb(restore_mb_s) * records as f64,
        raw_read_mb_s,
        bulk_write_mb_s,
        bulk_write_records_s: per_mb(bulk_write_mb_s) * args.restore_keys as f64,
        restore_of_limit: restore_mb_s / raw_read_mb_s.min(bulk_write_mb_s),
    };
    scratch.store.close()?;
    print(&report, args.format)
}

/// Reads `files` through once; returns the seconds it took.
fn raw_read(files: &[std::path::PathBuf]) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut buffer = vec![0u8; 8 << 20];
    for path in files {
        let mut file = std::fs::File::open(path)?;
        while file.read(&mut buffer)? > 0 {}
    }
    Ok(started.elapsed().as_secs_f64())
}

fn print(report: &Restore, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return crate::emit(&format!("{}\n", serde_json::to_string_pretty(report)?));
    }
    crate::emit(&format!(
        "changelog restore: {} keys, {}-byte values, {:.0} MB of changelog, median of {} runs\n\
         restore      {:>8.0} MB/s  {:>6.2}M records/s\n\
         raw read     {:>8.0} MB/s  (segment files, sequential)\n\
         bulk write   {:>8.0} MB/s  {:>6.2}M records/s  (RocksDB, no log)\n\
         restore / slower limit {:.2}\n",
        report.keys,
        report.value_bytes,
        report.changelog_bytes as f64 / 1e6,
        report.runs,
        report.restore_mb_s,
        report.restore_records_s / 1e6,
        report.raw_read_mb_s,
        report.bulk_write_mb_s,
        report.bulk_write_records_s / 1e6,
        report.restore_of_limit
    ))
}
