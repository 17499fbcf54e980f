//! `sluice-bench`: the measurements whose figures go in the README, in their
//! own binary so that the broker does not link what only they need (a
//! plugin crate as the native baseline, the SDK, temporary directories).
//!
//! Each one runs the physical limit (raw disk, bare TCP) beside Sluice in
//! the same run and reports medians and ratios, because these machines are
//! noisy. `log`, `kafka` and `transactions` start the `sluice` binary found
//! next to this one (or `--sluice FILE`); with `--brokers` they measure a
//! broker that is already running instead, Sluice or any other
//! Kafka-compatible one.

mod kafka;
mod log;
mod offsets;
mod probe;
mod processor;
mod serve;
mod stateful;
mod transactions;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Sluice benchmarks: log store, Kafka protocol (against Sluice or any Kafka-compatible broker), WebAssembly processors.
#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log store: append (flush never/always) and read throughput against raw disk writes, and startup time.
    Log(log::LogBenchArgs),
    /// Kafka protocol: produce (acks=1, acks=all) and consume throughput and broker CPU per GB against raw disk writes.
    Kafka(kafka::KafkaBenchArgs),
    /// Committed offsets: one commit's latency, and an unrelated request's during commits, at 1k and 500k committed offsets.
    Offsets(offsets::OffsetsBenchArgs),
    /// Kafka transactions: transactional against idempotent produce (native and librdkafka), read_committed against read_uncommitted fetch, EndTxn latency against raw fsync.
    Transactions(transactions::TransactionsBenchArgs),
    /// WebAssembly processors: records/s/core through filter-json (the call, and log to log) against the same filter compiled natively.
    Processor(processor::ProcessorBenchArgs),
    /// Stateful processors: windowed-count with RocksDB state, exactly-once (call, log to log, latency, queries, large state, restart) against the same count in Rust.
    Stateful(stateful::StatefulBenchArgs),
    /// Child process of `stateful`: loads a large state, processes, waits to be killed.
    #[command(hide = true)]
    StatefulFill(stateful::FillArgs),
    /// Baseline process for `kafka`: receive one TCP stream and write it to a file.
    #[command(hide = true)]
    Sink(kafka::SinkArgs),
}

/// How a benchmark prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// A table for people.
    Text,
    /// JSON for scripts.
    Json,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The log and processor benchmarks run the broker's own code in this
    // process; its log lines go to stderr, warnings only unless RUST_LOG
    // says otherwise (a store's lifecycle lines would bury the progress).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // The broker's malloc settings, for the benchmarks that run its code here.
    sluice::memory::tune_allocator();
    let result = match cli.command {
        Command::Log(args) => log::run(&args),
        Command::Kafka(args) => kafka::run(&args),
        Command::Offsets(args) => offsets::run(&args),
        Command::Processor(args) => processor::run(&args),
        Command::Stateful(args) => stateful::run(&args),
        Command::StatefulFill(args) => stateful::fill(&args),
        Command::Transactions(args) => transactions::run(&args),
        Command::Sink(args) => kafka::sink(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout. A closed stdout (`sluice-bench … | head -1`) is
/// not an error: the reader has all it wanted. (A copy of the CLI's own
/// helper: the bench does not reach into CLI internals.)
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}

/// The median of `samples` (sorted in place); 0 when empty.
fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let middle = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[middle]
    } else {
        (samples[middle - 1] + samples[middle]) / 2.0
    }
}

/// The `q` quantile (0 < q ≤ 1) of `samples` by nearest rank (sorted in
/// place): the smallest sample with at least `q` of them at or below it;
/// 0 when empty.
fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = (q * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::{median, percentile};

    #[test]
    fn percentile_by_nearest_rank() {
        let mut samples: Vec<f64> = (1..=200).map(f64::from).collect();
        samples.reverse();
        assert_eq!(percentile(&mut samples, 0.5), 100.0);
        assert_eq!(percentile(&mut samples, 0.99), 198.0);
        assert_eq!(percentile(&mut samples, 1.0), 200.0);
        assert_eq!(percentile(&mut [7.0], 0.99), 7.0);
        assert_eq!(percentile(&mut [], 0.5), 0.0);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
