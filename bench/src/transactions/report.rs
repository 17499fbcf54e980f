//! The report of `sluice-bench transactions`: medians over runs for
//! throughputs, with two ratios (of the medians, and the median of each
//! run's own ratio: the two modes of one run share a broker and a minute
//! of the machine's mood, so the paired ratio is the steadier one on a
//! noisy machine), and percentiles over every sample for latencies.

use serde::Serialize;

use super::{commit, ClientRun, ProduceRun, Samples, Throughput, TransactionsBenchArgs};
use crate::{median, percentile};

#[derive(Debug, Serialize)]
pub(super) struct Report {
    runs: usize,
    seconds_per_producer: f64,
    partitions: i32,
    record_bytes: usize,
    batch_records: usize,
    transaction_interval_ms: u64,
    produce: Vec<ProduceReport>,
    fetch: Option<FetchReport>,
    commit: CommitReport,
}

/// One broker's produce comparison.
#[derive(Debug, Serialize)]
struct ProduceReport {
    /// `flush=always`, `flush=never`, or the `--brokers` address.
    broker: String,
    native: Comparison,
    /// The native transactional producer's transactions per run and what
    /// each cost besides producing (medians): AddPartitionsToTxn, the
    /// drain (end of producing to the last answer), EndTxn.
    native_transactions_per_run: f64,
    native_add_partitions_ms_p50: f64,
    native_drain_ms_p50: f64,
    native_commit_ms_p50: f64,
    /// The ratio those costs alone explain: interval / (interval +
    /// AddPartitionsToTxn + drain + EndTxn), producing at the idempotent
    /// rate in between.
    native_ratio_from_costs: f64,
    librdkafka: Option<ClientComparison>,
}

/// Idempotent against transactional, medians over runs.
#[derive(Debug, Serialize)]
struct Comparison {
    idempotent_mb_s: f64,
    idempotent_records_per_s: f64,
    transactional_mb_s: f64,
    transactional_records_per_s: f64,
    /// Transactional over idempotent, of the medians.
    ratio: f64,
    /// The median of each run's own ratio.
    ratio_paired: f64,
    /// Each run's own ratio, in run order (the spread).
    ratios: Vec<f64>,
    idempotent_broker_cpu_s_per_gb: Option<f64>,
    transactional_broker_cpu_s_per_gb: Option<f64>,
}

/// librdkafka's comparison and how busy the client was.
#[derive(Debug, Serialize)]
struct ClientComparison {
    #[serde(flatten)]
    throughput: Comparison,
    transactional_transactions_per_run: f64,
    transactional_commit_ms_p50: f64,
    idempotent_client_cpu_cores: f64,
    transactional_client_cpu_cores: f64,
    idempotent_main_thread_busy: f64,
    transactional_main_thread_busy: f64,
}

#[derive(Debug, Serialize)]
struct FetchReport {
    /// Record batch bytes read per pass, markers included.
    bytes: u64,
    transactions: u64,
    aborted_transactions: u64,
    read_uncommitted_mb_s: f64,
    read_committed_mb_s: f64,
    ratio: f64,
    ratio_paired: f64,
    /// Each run's own ratio, in run order.
    ratios: Vec<f64>,
    /// Records handed to the application by each reader in the last run.
    read_uncommitted_records: u64,
    read_committed_records: u64,
    /// Aborted transactions the broker listed to the read_committed reader.
    aborted_listed: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct Percentiles {
    pub(super) samples: usize,
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) max: f64,
}

impl Percentiles {
    fn of(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        Self {
            samples: sorted.len(),
            p50: percentile(&mut sorted, 0.5),
            p99: percentile(&mut sorted, 0.99),
            max: percentile(&mut sorted, 1.0),
        }
    }
}

#[derive(Debug, Serialize)]
struct CommitReport {
    /// One small append + fdatasync on the benchmark's disk, sampled
    /// after every commit of every partition count.
    fsync_ms: Percentiles,
    by_partitions: Vec<CommitRow>,
}

#[derive(Debug, Serialize)]
struct CommitRow {
    partitions: i32,
    end_txn_ms: Percentiles,
    add_partitions_ms: Percentiles,
    produce_ms: Percentiles,
    /// 2 + `partitions` appends + fdatasyncs in sequence: the floor of
    /// the commit as Sluice does it.
    sequential_fsyncs_ms: Percentiles,
    /// 2 in sequence around `partitions` at once: the floor if the
    /// markers' fsyncs overlapped.
    parallel_fsyncs_ms: Percentiles,
    /// EndTxn p50 over one fdatasync's p50 (same samples' moments): how
    /// many fsyncs' time a commit takes.
    fsyncs_at_p50: f64,
}

pub(super) fn build(args: &TransactionsBenchArgs, samples: Samples) -> Report {
    let floors = samples.commit.values().flat_map(|measured| &measured.floor);
    let fsync_ms = Percentiles::of(&floors.map(|floor| floor.fsync_ms).collect::<Vec<_>>());
    let by_partitions = samples
        .commit
        .iter()
        .map(|(partitions, measured)| {
            let end_txn_ms = Percentiles::of(&measured.end_txn_ms);
            let floor = |f: fn(&commit::FloorSample) -> f64| {
                Percentiles::of(&measured.floor.iter().map(f).collect::<Vec<_>>())
            };
            CommitRow {
                partitions: *partitions,
                fsyncs_at_p50: end_txn_ms.p50 / floor(|f| f.fsync_ms).p50,
                end_txn_ms,
                add_partitions_ms: Percentiles::of(&measured.add_partitions_ms),
                produce_ms: Percentiles::of(&measured.produce_ms),
                sequential_fsyncs_ms: floor(|f| f.sequential_ms),
                parallel_fsyncs_ms: floor(|f| f.parallel_ms),
            }
        })
        .collect();
    Report {
        runs: args.runs,
        seconds_per_producer: args.seconds,
        partitions: args.partitions,
        record_bytes: 1024,
        batch_records: args.batch_records,
        transaction_interval_ms: args.interval_ms,
        produce: samples
            .produce
            .into_iter()
            .map(|(broker, runs)| produce_report(broker, &runs, args.interval_ms as f64))
            .collect(),
        fetch: fetch_report(&samples.fetch),
        commit: CommitReport {
            fsync_ms,
            by_partitions,
        },
    }
}

fn produce_report(broker: String, runs: &[ProduceRun], interval_ms: f64) -> ProduceReport {
    let median_of =
        |f: &dyn Fn(&ProduceRun) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let librdkafka = runs
        .iter()
        .map(|run| run.client.clone())
        .collect::<Option<Vec<_>>>()
        .map(|client| {
            let pairs: Vec<[Throughput; 2]> = client.iter().map(|[i, t]| [i.0, t.0]).collect();
            // Of the idempotent (0) or transactional (1) client's reports.
            let of = |mode: usize, f: fn(&ClientRun) -> f64| {
                median(
                    &mut client
                        .iter()
                        .map(|pair| f(&pair[mode].1))
                        .collect::<Vec<_>>(),
                )
            };
            ClientComparison {
                throughput: comparison(&pairs),
                transactional_transactions_per_run: of(1, |r| r.transactions as f64),
                transactional_commit_ms_p50: of(1, |r| r.commit_ms_p50),
                idempotent_client_cpu_cores: of(0, |r| r.client_cpu_cores),
                transactional_client_cpu_cores: of(1, |r| r.client_cpu_cores),
                idempotent_main_thread_busy: of(0, |r| r.main_thread_busy),
                transactional_main_thread_busy: of(1, |r| r.main_thread_busy),
            }
        });
    let native: Vec<[Throughput; 2]> = runs.iter().map(|run| run.native).collect();
    let add_partitions_ms = median_of(&|run| run.native_transactions.add_partitions_ms);
    let drain_ms = median_of(&|run| run.native_transactions.drain_ms);
    let commit_ms = median_of(&|run| run.native_transactions.end_txn_ms);
    ProduceReport {
        broker,
        native: comparison(&native),
        native_transactions_per_run: median_of(&|run| run.native_transactions.transactions as f64),
        native_add_partitions_ms_p50: add_partitions_ms,
        native_drain_ms_p50: drain_ms,
        native_commit_ms_p50: commit_ms,
        native_ratio_from_costs: interval_ms
            / (interval_ms + add_partitions_ms + drain_ms + commit_ms),
        librdkafka,
    }
}

/// Medians of (idempotent, transactional) pairs, one per run.
fn comparison(pairs: &[[Throughput; 2]]) -> Comparison {
    let of =
        |f: &dyn Fn(&[Throughput; 2]) -> f64| median(&mut pairs.iter().map(f).collect::<Vec<_>>());
    let cpu = |index: usize| {
        let mut samples = pairs
            .iter()
            .map(|pair| pair[index].cpu_s_per_gb)
            .collect::<Option<Vec<_>>>()?;
        Some(median(&mut samples))
    };
    let (idempotent_mb_s, transactional_mb_s) = (of(&|p| p[0].mb_s), of(&|p| p[1].mb_s));
    Comparison {
        idempotent_mb_s,
        idempotent_records_per_s: of(&|p| p[0].records_per_s),
        transactional_mb_s,
        transactional_records_per_s: of(&|p| p[1].records_per_s),
        ratio: transactional_mb_s / idempotent_mb_s,
        ratio_paired: of(&|p| p[1].mb_s / p[0].mb_s),
        ratios: pairs.iter().map(|p| p[1].mb_s / p[0].mb_s).collect(),
        idempotent_broker_cpu_s_per_gb: cpu(0),
        transactional_broker_cpu_s_per_gb: cpu(1),
    }
}

fn fetch_report(runs: &[super::FetchRun]) -> Option<FetchReport> {
    let last = runs.last()?;
    let of =
        |f: &dyn Fn(&super::FetchRun) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let (uncommitted, committed) = (of(&|r| r.uncommitted_mb_s), of(&|r| r.committed_mb_s));
    Some(FetchReport {
        bytes: last.uncommitted.bytes,
        transactions: last.filled.transactions,
        aborted_transactions: last.filled.aborted,
        read_uncommitted_mb_s: uncommitted,
        read_committed_mb_s: committed,
        ratio: committed / uncommitted,
        ratio_paired: of(&|r| r.committed_mb_s / r.uncommitted_mb_s),
        ratios: runs
            .iter()
            .map(|r| r.committed_mb_s / r.uncommitted_mb_s)
            .collect(),
        read_uncommitted_records: last.uncommitted.delivered,
        read_committed_records: last.committed.delivered,
        aborted_listed: last.committed.aborted_listed,
    })
}

pub(super) fn text(report: &Report) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "produce, {} partitions, 1 KiB records, commit every {} ms, {} s per producer, medians of {} runs:",
        report.partitions, report.transaction_interval_ms, report.seconds_per_producer, report.runs
    );
    let _ = writeln!(
        text,
        "  {:<14} {:<10} | {:>16} | {:>16} | {:>5} {:>6} | {:>9}",
        "broker", "client", "idempotent", "transactional", "ratio", "paired", "EndTxn p50"
    );
    for produce in &report.produce {
        produce_text(produce, &mut text);
    }
    if let Some(fetch) = &report.fetch {
        let _ = writeln!(
            text,
            "fetch, {} MB in {} transactions ({} aborted): read_uncommitted {:.0} MB/s, read_committed {:.0} MB/s, ratio {:.2} (paired {:.2}); records delivered {} / {}",
            fetch.bytes / 1_000_000,
            fetch.transactions,
            fetch.aborted_transactions,
            fetch.read_uncommitted_mb_s,
            fetch.read_committed_mb_s,
            fetch.ratio,
            fetch.ratio_paired,
            fetch.read_uncommitted_records,
            fetch.read_committed_records
        );
    }
    commit_text(&report.commit, &mut text);
    text
}

/// The lines of one broker's produce comparison.
fn produce_text(produce: &ProduceReport, text: &mut String) {
    use std::fmt::Write;
    let row = |client: &str, c: &Comparison, commit_ms: f64| {
        format!(
            "  {:<14} {:<10} | {:>7.0} MB/s {:>4.0}k | {:>7.0} MB/s {:>4.0}k | {:>5.2} {:>6.2} | {:>7.2} ms\n",
            produce.broker,
            client,
            c.idempotent_mb_s,
            c.idempotent_records_per_s / 1e3,
            c.transactional_mb_s,
            c.transactional_records_per_s / 1e3,
            c.ratio,
            c.ratio_paired,
            commit_ms
        )
    };
    text.push_str(&row(
        "native",
        &produce.native,
        produce.native_commit_ms_p50,
    ));
    let _ = writeln!(
        text,
        "  {:<25} per transaction (p50): AddPartitionsToTxn {:.2} ms, drain {:.2} ms, EndTxn {:.2} ms \
         (ratio these explain: {:.2}); {:.0} transactions",
        "",
        produce.native_add_partitions_ms_p50,
        produce.native_drain_ms_p50,
        produce.native_commit_ms_p50,
        produce.native_ratio_from_costs,
        produce.native_transactions_per_run
    );
    if let Some(client) = &produce.librdkafka {
        text.push_str(&row(
            "librdkafka",
            &client.throughput,
            client.transactional_commit_ms_p50,
        ));
        let _ = writeln!(
            text,
            "  {:<25} client CPU {:.2} / {:.2} cores, Python thread busy {:.0}% / {:.0}% (idempotent / transactional)",
            "",
            client.idempotent_client_cpu_cores,
            client.transactional_client_cpu_cores,
            client.idempotent_main_thread_busy * 100.0,
            client.transactional_main_thread_busy * 100.0
        );
    }
}

fn commit_text(commit: &CommitReport, text: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        text,
        "commit latency (flush=always), EndTxn round trip; fdatasync of a 100-byte append, \
         sampled after each commit: p50 {:.3} ms, p99 {:.3} ms ({} samples)",
        commit.fsync_ms.p50, commit.fsync_ms.p99, commit.fsync_ms.samples
    );
    let _ = writeln!(
        text,
        "  {:>10} | {:>24} | {:>6} | {:>21} | {:>21} | {:>13} | {:>11}",
        "partitions",
        "EndTxn p50 / p99 / max",
        "fsyncs",
        "2+N in sequence",
        "2 + N at once",
        "AddPartitions",
        "Produce"
    );
    for row in &commit.by_partitions {
        let _ = writeln!(
            text,
            "  {:>10} | {:>6.2} / {:>5.2} / {:>5.2} ms | {:>6.1} | {:>6.2} / {:>6.2} ms | {:>6.2} / {:>6.2} ms | {:>10.2} ms | {:>8.2} ms",
            row.partitions,
            row.end_txn_ms.p50,
            row.end_txn_ms.p99,
            row.end_txn_ms.max,
            row.fsyncs_at_p50,
            row.sequential_fsyncs_ms.p50,
            row.sequential_fsyncs_ms.p99,
            row.parallel_fsyncs_ms.p50,
            row.parallel_fsyncs_ms.p99,
            row.add_partitions_ms.p50,
            row.produce_ms.p50
        );
    }
    let _ = writeln!(
        text,
        "  (fsyncs: EndTxn p50 over one fdatasync's p50; p50 / p99 of the floors; AddPartitions and Produce p50)"
    );
}
