//! `sluice-bench transactions`: what Kafka transactions cost, each figure
//! against its non-transactional baseline measured in the same run on the
//! same broker:
//! - produce: a transactional producer committing every 100 ms against an
//!   idempotent one (acks=all, 1 KiB records), with the native load
//!   generator (`load.rs`, over `protocol.rs`) and with librdkafka
//!   (`bench/txn_bench.py`, `librdkafka.rs`), per flush policy;
//! - fetch: read_committed against read_uncommitted over one log of
//!   committed transactions with one in `--abort-every` aborted (`fetch.rs`);
//! - commit latency: the EndTxn round trip over 1, 3, 10 partitions with
//!   `flush=always`, against the disk's own fdatasync latency sampled
//!   between the commits: one, the 2 + N a commit does in sequence, and
//!   the N partitions' at once (`commit.rs`).
//!
//! The broker is a release `sluice serve` started per run (per flush
//! policy for produce, `flush=always` for the rest) on a temporary
//! directory, or with `--brokers` one already running. Throughputs are
//! medians over `--runs`; latencies are percentiles over every sample of
//! every run. The order of the two modes alternates from run to run.

mod commit;
mod fetch;
mod librdkafka;
mod load;
mod protocol;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use self::fetch::{Fetched, Isolation};
use self::librdkafka::{Client, ClientRun};
use self::load::{Load, Mode, Produced};
use crate::kafka::{bootstrap, cpu_seconds, create_topic, delete_topics, leaders};
use crate::serve::{sluice_binary, Serve};
use crate::OutputFormat;

/// Options of `sluice-bench transactions`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice-bench transactions --runs 5
      start a release sluice serve per run and flush policy; everything
  sluice-bench transactions --brokers 127.0.0.1:9092 --no-librdkafka
      measure a broker that is already running, native generator only")]
pub(crate) struct TransactionsBenchArgs {
    /// Measure the broker already running here instead of starting Sluice (its own flush setting applies).
    #[arg(long, value_name = "HOST:PORT[,...]")]
    pub brokers: Option<String>,
    /// Process id of the --brokers broker, to report its CPU-seconds per GB produced [default: not reported].
    #[arg(long, value_name = "PID", requires = "brokers")]
    pub pid: Option<u32>,
    /// The `sluice` binary to start [default: `sluice` next to sluice-bench].
    #[arg(long, value_name = "FILE")]
    pub sluice: Option<PathBuf>,
    /// Directory for the started brokers' data and the fsync floor's files (on the disk to measure) [default: a temporary directory under the current one].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Runs (throughput figures are their medians).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Seconds each producer (idempotent, transactional; native, librdkafka) runs per run.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Partitions of the produce benchmark's topics.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Milliseconds of producing per transaction.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// 1 KiB records per batch of the native generator (1000: about 1 MiB).
    #[arg(long, default_value_t = 1000)]
    pub batch_records: usize,
    /// Flush policies of the started Sluice for the produce benchmark (commit latency and fetch always use `always`).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Flush::Always, Flush::Never], conflicts_with = "brokers")]
    pub flush: Vec<Flush>,
    /// Bytes of transactional data the fetch benchmark reads back.
    #[arg(long, default_value_t = 256 << 20)]
    pub fetch_bytes: u64,
    /// 1 KiB records per batch of the fetch benchmark's data (one batch per partition per transaction).
    #[arg(long, default_value_t = 64)]
    pub fetch_batch_records: usize,
    /// One transaction in this many of the fetch benchmark's data is aborted.
    #[arg(long, default_value_t = 10)]
    pub abort_every: u64,
    /// Reads of the whole log per isolation level per run.
    #[arg(long, default_value_t = 3)]
    pub fetch_passes: usize,
    /// Transactions timed per partition count per run (and fsyncs timed for the floor).
    #[arg(long, default_value_t = 200)]
    pub commits: usize,
    /// Partition counts of the commit latency benchmark.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 3, 10])]
    pub commit_partitions: Vec<i32>,
    /// 1 KiB records per partition per timed transaction.
    #[arg(long, default_value_t = 5)]
    pub commit_records: usize,
    /// Python with confluent-kafka [default: the test suite's venv, tests/clients/python/.venv].
    #[arg(long, value_name = "FILE")]
    pub python: Option<PathBuf>,
    /// The librdkafka client script [default: bench/txn_bench.py].
    #[arg(long, value_name = "FILE")]
    pub client_script: Option<PathBuf>,
    /// Skip the librdkafka (confluent-kafka) measurement.
    #[arg(long)]
    pub no_librdkafka: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// A started Sluice's flush policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum Flush {
    Always,
    Never,
}

impl Flush {
    fn name(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Never => "never",
        }
    }
}

/// The broker under measurement.
struct Target<'a> {
    brokers: &'a str,
    /// Its local process, for CPU time.
    pid: Option<u32>,
    /// Delete the topics after use (a started broker's directory goes
    /// whole instead).
    delete_topics: bool,
}

/// One producer's figures in one run.
#[derive(Debug, Clone, Copy, Default)]
struct Throughput {
    mb_s: f64,
    records_per_s: f64,
    /// Broker CPU-seconds per GB produced, when its process is known.
    cpu_s_per_gb: Option<f64>,
}

/// A transactional load's transactions and, medians, what each cost
/// besides producing, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct TransactionCosts {
    transactions: u64,
    add_partitions_ms: f64,
    drain_ms: f64,
    end_txn_ms: f64,
}

impl TransactionCosts {
    fn of(produced: &Produced) -> Self {
        let median = |samples: &[f64]| crate::median(&mut samples.to_vec());
        Self {
            transactions: produced.transactions,
            add_partitions_ms: median(&produced.add_partitions_ms),
            drain_ms: median(&produced.drain_ms),
            end_txn_ms: median(&produced.commit_ms),
        }
    }
}

/// One run's produce figures on one broker.
#[derive(Debug, Default)]
struct ProduceRun {
    native: [Throughput; 2],
    /// The native transactional producer's transactions, and the median
    /// of what each cost besides producing.
    native_transactions: TransactionCosts,
    /// librdkafka, idempotent then transactional.
    client: Option<[(Throughput, ClientRun); 2]>,
}

/// One run's fetch figures: read_uncommitted, read_committed (median
/// pass each), and what was read.
#[derive(Debug, Default)]
struct FetchRun {
    uncommitted_mb_s: f64,
    committed_mb_s: f64,
    filled: Produced,
    uncommitted: Fetched,
    committed: Fetched,
}

/// Every run's figures, before the medians.
#[derive(Debug, Default)]
struct Samples {
    /// By broker label (`flush=always`, `flush=never`, or the address).
    produce: BTreeMap<String, Vec<ProduceRun>>,
    fetch: Vec<FetchRun>,
    /// By partition count, pooled over runs.
    commit: BTreeMap<i32, commit::CommitSamples>,
}

/// Runs the benchmark and prints the report.
pub(crate) fn run(args: &TransactionsBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(args.partitions > 0, "--partitions must be at least 1");
    anyhow::ensure!(args.abort_every > 0, "--abort-every must be at least 1");
    anyhow::ensure!(
        args.commit_partitions.iter().all(|p| *p > 0),
        "--commit-partitions must be at least 1 each"
    );
    let runtime = tokio::runtime::Runtime::new()?;
    // Fail before minutes of measuring, not after.
    let sluice = match &args.brokers {
        None => Some(sluice_binary(args.sluice.as_deref())?),
        Some(brokers) => {
            runtime
                .block_on(bootstrap(brokers))
                .with_context(|| format!("--brokers {brokers}"))?;
            None
        }
    };
    if let Some(pid) = args.pid {
        cpu_seconds(pid)?;
    }
    let (python, script) = (
        args.python
            .clone()
            .unwrap_or_else(librdkafka::default_python),
        args.client_script
            .clone()
            .unwrap_or_else(librdkafka::default_script),
    );
    let context = |run| RunContext {
        runtime: &runtime,
        args,
        dir: Path::new(""),
        run,
        python: &python,
        script: &script,
    };
    if !args.no_librdkafka {
        context(0).client("").check()?;
    }
    let temporary = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir_in("."),
    }
    .context("creating the benchmark directory")?;
    let mut samples = Samples::default();
    for run in 1..=args.runs {
        eprintln!("sluice-bench transactions: run {run} of {}…", args.runs);
        let context = RunContext {
            dir: temporary.path(),
            ..context(run)
        };
        match &sluice {
            Some(binary) => context.against_sluice(binary, &mut samples)?,
            None => context.against_running(&mut samples)?,
        }
    }
    let report = report::build(args, samples);
    match args.format {
        OutputFormat::Json => crate::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?)),
        OutputFormat::Text => crate::emit(&report::text(&report)),
    }
}

/// What every measurement of one run needs.
struct RunContext<'a> {
    runtime: &'a tokio::runtime::Runtime,
    args: &'a TransactionsBenchArgs,
    dir: &'a Path,
    run: usize,
    python: &'a Path,
    script: &'a Path,
}

impl RunContext<'_> {
    /// The librdkafka client against `brokers`.
    fn client<'b>(&'b self, brokers: &'b str) -> Client<'b> {
        Client {
            python: self.python,
            script: self.script,
            brokers,
            partitions: self.args.partitions,
            seconds: self.args.seconds,
            interval_ms: self.args.interval_ms,
        }
    }

    /// One run against Sluice: a broker per flush policy for produce, one
    /// with `flush=always` for commit latency and fetch.
    fn against_sluice(&self, binary: &Path, samples: &mut Samples) -> anyhow::Result<()> {
        for flush in &self.args.flush {
            let data_dir = self.dir.join(format!("data-{}", flush.name()));
            let broker = Serve::start(binary, &data_dir, &["--flush", flush.name()])?;
            let target = Target {
                brokers: &broker.kafka,
                pid: Some(broker.pid()),
                delete_topics: false,
            };
            let produced = broker.explained(self.produce(&target))?;
            let label = format!("flush={}", flush.name());
            samples.produce.entry(label).or_default().push(produced);
            drop(broker);
            std::fs::remove_dir_all(&data_dir)?;
        }
        let data_dir = self.dir.join("data-commit");
        let broker = Serve::start(binary, &data_dir, &["--flush", "always"])?;
        let target = Target {
            brokers: &broker.kafka,
            pid: Some(broker.pid()),
            delete_topics: false,
        };
        broker.explained(self.commit_and_fetch(&target, samples))?;
        drop(broker);
        std::fs::remove_dir_all(&data_dir)?;
        Ok(())
    }

    /// One run against the `--brokers` broker.
    fn against_running(&self, samples: &mut Samples) -> anyhow::Result<()> {
        let brokers = self.args.brokers.as_deref().expect("--brokers given");
        let target = Target {
            brokers,
            pid: self.args.pid,
            delete_topics: true,
        };
        let produced = self.produce(&target)?;
        let runs = samples.produce.entry(brokers.to_string()).or_default();
        runs.push(produced);
        self.commit_and_fetch(&target, samples)
    }

    /// A fresh topic of `partitions` on `target`; returns its leaders.
    fn topic(
        &self,
        target: &Target,
        suffix: &str,
        partitions: i32,
    ) -> anyhow::Result<(String, Vec<String>)> {
        let topic = format!(
            "sluice-bench-txn-{}-{}-{suffix}",
            std::process::id(),
            self.run
        );
        self.runtime.block_on(async {
            create_topic(target.brokers, &topic, partitions).await?;
            let leaders = leaders(target.brokers, &topic, partitions).await?;
            anyhow::Ok((topic, leaders))
        })
    }

    fn done_with(&self, target: &Target, topics: &[&str]) -> anyhow::Result<()> {
        if target.delete_topics {
            self.runtime
                .block_on(delete_topics(target.brokers, topics))?;
        }
        Ok(())
    }

    /// Idempotent and transactional produce, native then librdkafka, in
    /// an order that alternates between runs.
    fn produce(&self, target: &Target) -> anyhow::Result<ProduceRun> {
        let args = self.args;
        let order = if self.run % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        let mut run = ProduceRun::default();
        let mut topics = Vec::new();
        for transactional in order {
            let suffix = if transactional {
                "native-txn"
            } else {
                "native-idem"
            };
            let (topic, leaders) = self.topic(target, suffix, args.partitions)?;
            let mode = match transactional {
                false => Mode::Idempotent,
                true => Mode::Transactional {
                    interval: Duration::from_millis(args.interval_ms),
                    abort_every: None,
                },
            };
            let load = Load {
                brokers: target.brokers,
                topic: &topic,
                leaders: &leaders,
                batch_records: args.batch_records,
                record_bytes: 1024,
                duration: Duration::from_secs_f64(args.seconds),
                bytes_max: u64::MAX,
                mode,
                label: &topic,
            };
            settle()?;
            let cpu = broker_cpu(target)?;
            let produced = self.runtime.block_on(load::produce(&load))?;
            let cpu_s_per_gb = per_gb(cpu, broker_cpu(target)?, produced.bytes);
            run.native[usize::from(transactional)] = Throughput {
                mb_s: produced.bytes as f64 / produced.seconds / 1e6,
                records_per_s: produced.records as f64 / produced.seconds,
                cpu_s_per_gb,
            };
            if transactional {
                run.native_transactions = TransactionCosts::of(&produced);
            }
            topics.push(topic);
        }
        if !args.no_librdkafka {
            run.client = Some(self.produce_librdkafka(target, order, &mut topics)?);
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.done_with(target, &names)?;
        Ok(run)
    }

    /// librdkafka's idempotent and transactional runs, in `order`.
    fn produce_librdkafka(
        &self,
        target: &Target,
        order: [bool; 2],
        topics: &mut Vec<String>,
    ) -> anyhow::Result<[(Throughput, ClientRun); 2]> {
        let client = self.client(target.brokers);
        let mut runs: [Option<(Throughput, ClientRun)>; 2] = [None, None];
        for transactional in order {
            let suffix = if transactional { "ck-txn" } else { "ck-idem" };
            let (topic, _) = self.topic(target, suffix, self.args.partitions)?;
            settle()?;
            let cpu = broker_cpu(target)?;
            let measured = client.run(&topic, transactional)?;
            let bytes = (measured.mb_s * measured.seconds * 1e6) as u64;
            let throughput = Throughput {
                mb_s: measured.mb_s,
                records_per_s: measured.records_per_s,
                cpu_s_per_gb: per_gb(cpu, broker_cpu(target)?, bytes),
            };
            runs[usize::from(transactional)] = Some((throughput, measured));
            topics.push(topic);
        }
        let [idempotent, transactional] = runs;
        Ok([
            idempotent.expect("both modes ran"),
            transactional.expect("both modes ran"),
        ])
    }

    /// Commit latency (and the fsync floors), then fetch.
    fn commit_and_fetch(&self, target: &Target, samples: &mut Samples) -> anyhow::Result<()> {
        let args = self.args;
        settle()?;
        for &partitions in &args.commit_partitions {
            let (topic, leaders) =
                self.topic(target, &format!("commit-{partitions}"), partitions)?;
            let mut floor = commit::Floor::new(self.dir, partitions as usize)?;
            let measured = self.runtime.block_on(commit::measure(
                target.brokers,
                &topic,
                &leaders,
                args.commits,
                args.commit_records,
                &mut floor,
            ))?;
            let pooled = samples.commit.entry(partitions).or_default();
            pooled.end_txn_ms.extend(measured.end_txn_ms);
            pooled.add_partitions_ms.extend(measured.add_partitions_ms);
            pooled.produce_ms.extend(measured.produce_ms);
            pooled.floor.extend(measured.floor);
            self.done_with(target, &[&topic])?;
        }
        samples.fetch.push(self.fetch(target)?);
        Ok(())
    }

    /// Fills a topic with transactions (one in `--abort-every` aborted),
    /// then reads it whole at both isolation levels, alternating.
    fn fetch(&self, target: &Target) -> anyhow::Result<FetchRun> {
        let args = self.args;
        let (topic, leaders) = self.topic(target, "fetch", args.partitions)?;
        let load = Load {
            brokers: target.brokers,
            topic: &topic,
            leaders: &leaders,
            batch_records: args.fetch_batch_records,
            record_bytes: 1024,
            duration: Duration::from_secs(600),
            bytes_max: args.fetch_bytes,
            mode: Mode::Transactional {
                interval: Duration::ZERO,
                abort_every: Some(args.abort_every),
            },
            label: &topic,
        };
        let filled = self.runtime.block_on(load::produce(&load))?;
        let order = if self.run % 2 == 1 {
            [Isolation::ReadUncommitted, Isolation::ReadCommitted]
        } else {
            [Isolation::ReadCommitted, Isolation::ReadUncommitted]
        };
        let (mut uncommitted, mut committed) = (Vec::new(), Vec::new());
        let mut seen = [Fetched::default(); 2];
        for _ in 0..args.fetch_passes.max(1) {
            for isolation in order {
                let fetched = self
                    .runtime
                    .block_on(fetch::read_all(&leaders, &topic, isolation))?;
                let mb_s = fetched.bytes as f64 / fetched.seconds / 1e6;
                match isolation {
                    Isolation::ReadUncommitted => uncommitted.push(mb_s),
                    Isolation::ReadCommitted => committed.push(mb_s),
                }
                seen[isolation as usize] = fetched;
            }
        }
        self.done_with(target, &[&topic])?;
        Ok(FetchRun {
            uncommitted_mb_s: crate::median(&mut uncommitted),
            committed_mb_s: crate::median(&mut committed),
            filled,
            uncommitted: seen[0],
            committed: seen[1],
        })
    }
}

/// Writes back every dirty page (sync(1)) before a measurement, so that
/// none is left over from the one before (a `flush=never` producer leaves
/// gigabytes) to slow down this one's fsyncs.
fn settle() -> anyhow::Result<()> {
    let status = std::process::Command::new("sync")
        .status()
        .context("running sync(1)")?;
    anyhow::ensure!(status.success(), "sync(1) failed: {status}");
    Ok(())
}

/// [`cpu_seconds`] of the target's process, if known.
fn broker_cpu(target: &Target) -> anyhow::Result<Option<f64>> {
    target.pid.map(cpu_seconds).transpose()
}

/// CPU-seconds per GB from two readings around `bytes`.
fn per_gb(before: Option<f64>, after: Option<f64>, bytes: u64) -> Option<f64> {
    let (before, after) = (before?, after?);
    (bytes > 0).then(|| (after - before) / (bytes as f64 / 1e9))
}
