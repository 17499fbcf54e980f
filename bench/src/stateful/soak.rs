//! The soak: one stateful task of `windowed-count` driven through the
//! broker's partition loop (log → plugin → log, exactly-once, 100 ms
//! commits) for `--soak-secs`, with time moving on, so that state churns
//! as it does in production: every round of records falls in the next
//! one-minute window, opening a window per key (a state entry and a
//! timer), and the round after closes them (the timers fire, the entries
//! are deleted). Input and output are trimmed behind the task as
//! retention would, so the run's disk use stays flat too. Sampled twenty
//! times: records, the instance's linear memory, the task's timers (open
//! windows), RocksDB's cache use, the state folder's size on disk, and the
//! process's RSS.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use sluice::processor::host::Plugin;
use sluice::processor::scratch::{Scratch, StatefulOptions};

use super::workload::{limits, Workload, STORE, WINDOW_MS};
use super::{open_scratch, rss_bytes, wasm_factory, StatefulBenchArgs};

/// Records per round (one window's worth).
const ROUND_RECORDS: usize = 200_000;

#[derive(Debug, Serialize)]
pub(super) struct SoakSample {
    elapsed_s: u64,
    records: u64,
    instance_memory_bytes: u64,
    /// Keys' windows open (the task's store entries).
    open_windows: u64,
    state_memory_bytes: usize,
    state_disk_bytes: u64,
    process_rss_bytes: u64,
}

/// Runs the soak for `args.soak_secs` (nothing when 0).
pub(super) fn run(plugin: &Plugin, args: &StatefulBenchArgs) -> anyhow::Result<Vec<SoakSample>> {
    let seconds = args.soak_secs;
    if seconds == 0 {
        return Ok(Vec::new());
    }
    let dir = super::scratch_dir()?;
    let scratch = open_scratch(dir.path(), args)?;
    let options = StatefulOptions {
        exactly_once: true,
        commit_interval_ms: args.commit_interval_ms,
    };
    let mut task = scratch.stateful_task(
        "soak",
        wasm_factory(plugin, "soak"),
        limits(args.batch),
        &[STORE],
        options,
    )?;
    let round = Workload::new(ROUND_RECORDS, args.keys, 7);
    let started = Instant::now();
    let interval = Duration::from_secs(seconds) / 20;
    let mut next_sample = started;
    let mut samples = Vec::new();
    let mut records = 0u64;
    for shift in 0.. {
        let now = Instant::now();
        if now >= next_sample {
            let figures = Scratch::task_figures(&task);
            let sample = SoakSample {
                elapsed_s: now.duration_since(started).as_secs(),
                records,
                instance_memory_bytes: figures.instance_memory_bytes,
                open_windows: figures.keys,
                state_memory_bytes: scratch.state_memory_bytes(),
                state_disk_bytes: disk_bytes(&dir.path().join("state")),
                process_rss_bytes: rss_bytes(),
            };
            eprintln!("soak: {sample:?}");
            samples.push(sample);
            if now.duration_since(started) >= Duration::from_secs(seconds) {
                break;
            }
            next_sample += interval;
        }
        let end = round.append_shifted(&scratch, shift * WINDOW_MS)?;
        super::run_to(&mut task, end)?;
        records += ROUND_RECORDS as u64;
        scratch.trim("in", task.position())?;
        scratch.trim("out", i64::MAX)?;
    }
    drop(task);
    scratch.store.close()?;
    Ok(samples)
}

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The samples as text.
pub(super) fn text(samples: &[SoakSample]) -> String {
    let mut text = String::from(
        "\nsoak: elapsed_s records instance_memory_bytes open_windows state_memory_bytes state_disk_bytes process_rss_bytes\n",
    );
    for s in samples {
        text.push_str(&format!(
            "{:>6} {:>14} {:>12} {:>10} {:>12} {:>14} {:>12}\n",
            s.elapsed_s,
            s.records,
            s.instance_memory_bytes,
            s.open_windows,
            s.state_memory_bytes,
            s.state_disk_bytes,
            s.process_rss_bytes
        ));
    }
    text
}
