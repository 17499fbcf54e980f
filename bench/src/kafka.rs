//! `sluice-bench kafka`: a broker's produce and consume throughput and CPU
//! cost over the Kafka protocol, with a load generator cheap enough not to
//! be the bottleneck: one prebuilt 1 MiB batch of 1 KiB records, sent again
//! and again (the broker assigns offsets; the CRC stays valid), one
//! connection per partition, to the partition's leader. In the same run:
//! raw `write(2)` of the same bytes to the same disk, and a bare process
//! receiving them over loopback TCP into a file (the floor of any broker).
//!
//! The broker measured is either
//! - Sluice, started by the benchmark: a release `sluice serve` per flush
//!   policy per run, on a temporary data directory, its CPU read from
//!   `/proc/<pid>/stat`; or
//! - with `--brokers`, one already running (Sluice or any Kafka-compatible
//!   broker, e.g. Kafka or Redpanda), its CPU reported when `--pid` names
//!   its local process. Each run creates two fresh topics (replication
//!   factor 1) and deletes them afterwards. `--with-sluice` measures both
//!   in every run, alternating, so that the comparison shares the
//!   machine's conditions.
//!
//! Each figure is the median of `--runs`. For latency and a real client's
//! view, see `bench/run-kafka-bench`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use sluice::client::Connection;
use sluice::log::batch;

use crate::log::{mb_per_s, raw_write};
use crate::serve::{sluice_binary, Serve};
use crate::{median, OutputFormat};

/// Options of `sluice-bench kafka`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice-bench kafka --runs 5 --bytes 536870912
      start a release sluice serve per flush policy (never, always) per run
  sluice-bench kafka --brokers 127.0.0.1:9092 --pid \"$(pgrep -n -f kafka.Kafka)\"
      measure a broker that is already running (any Kafka-compatible one)
  sluice-bench kafka --brokers 127.0.0.1:9092 --with-sluice
      both, alternating in every run")]
pub(crate) struct KafkaBenchArgs {
    /// Measure the broker already running here (any Kafka-compatible broker) instead of starting Sluice.
    ///
    /// The first address that answers is the bootstrap; partition leaders
    /// are reached at the addresses its metadata gives. Each run creates two
    /// topics (replication factor 1) and deletes them afterwards.
    #[arg(long, value_name = "HOST:PORT[,...]")]
    pub brokers: Option<String>,
    /// Process id of the --brokers broker, to report its CPU-seconds per GB (from /proc/PID/stat: a local broker only) [default: not reported].
    #[arg(long, value_name = "PID", requires = "brokers")]
    pub pid: Option<u32>,
    /// With --brokers: also start Sluice in every run, alternating with that broker.
    ///
    /// Sluice runs with flush=never and flush=always, as without --brokers,
    /// so both brokers are measured by the same generator under the same
    /// conditions, against the same baselines.
    #[arg(long, requires = "brokers")]
    pub with_sluice: bool,
    /// The `sluice` binary to start [default: `sluice` next to sluice-bench].
    #[arg(long, value_name = "FILE")]
    pub sluice: Option<PathBuf>,
    /// Directory for the raw-disk baselines and the started brokers' data (on the disk to measure) [default: a temporary directory under the current one].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Bytes produced per run into each of its two topics (one with acks=1, one with acks=all).
    #[arg(long, default_value_t = 1 << 30)]
    pub bytes: u64,
    /// Partitions per topic (one producing and one consuming connection each).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// One broker's figures; CPU is `None` when its process is not known.
#[derive(Debug, Default, Serialize)]
struct Figures {
    produce_acks_1_mb_s: f64,
    produce_acks_all_mb_s: f64,
    consume_mb_s: f64,
    cpu_s_per_gb_produced: Option<f64>,
    cpu_s_per_gb_consumed: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    bytes_per_run: u64,
    runs: usize,
    raw_write_mb_s: f64,
    raw_write_fsync_mb_s: f64,
    /// The floor of any broker here: one process receiving the same bytes
    /// over loopback TCP and writing them to a file, no protocol at all.
    tcp_to_file_mb_s: f64,
    tcp_to_file_cpu_s_per_gb: f64,
    /// Sluice started by the benchmark (without `--brokers`, or with
    /// `--with-sluice`).
    #[serde(flatten)]
    started: Option<Started>,
    /// The broker at `--brokers`.
    #[serde(flatten)]
    running: Option<Running>,
}

/// Sluice started by the benchmark, once per flush policy per run.
#[derive(Debug, Serialize)]
struct Started {
    never: Figures,
    always: Figures,
    never_produce_vs_raw: f64,
    /// flush=never with `[metrics] enabled = false`, and what the metrics
    /// cost: produce (acks=1) with them over without.
    never_metrics_off: Figures,
    metrics_on_vs_off_produce: f64,
}

/// The already running broker at `--brokers`.
#[derive(Debug, Serialize)]
struct Running {
    brokers: String,
    broker_pid: Option<u32>,
    broker: Figures,
    produce_acks_1_vs_raw: f64,
}

/// The broker under measurement.
struct Target<'a> {
    /// Bootstrap addresses, comma-separated.
    brokers: &'a str,
    /// Its local process, for CPU time.
    pid: Option<u32>,
    /// Delete the topics after the run (a started broker's whole data
    /// directory goes instead).
    delete_topics: bool,
}

/// CPU seconds (user + system) of process `pid` so far.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is the broker's --pid local?)"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("odd /proc stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// [`cpu_seconds`] of the target's process, if known.
fn target_cpu(target: &Target) -> anyhow::Result<Option<f64>> {
    target.pid.map(cpu_seconds).transpose()
}

pub(crate) fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// `host:port`, with brackets around an IPv6 host.
pub(crate) fn address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A connection to the first of `brokers` (comma-separated) that answers.
pub(crate) async fn bootstrap(brokers: &str) -> anyhow::Result<Connection> {
    let mut last_error = None;
    for broker in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        match Connection::open(broker).await {
            Ok(connection) => return Ok(connection),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("--brokers is empty")))
}

pub(crate) async fn create_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let mut connection = bootstrap(brokers).await?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let response = connection.call(request).await?;
    if response.topics[0].error_code != 0 {
        bail!("creating {topic}: error {}", response.topics[0].error_code);
    }
    Ok(())
}

pub(crate) async fn delete_topics(brokers: &str, topics: &[&str]) -> anyhow::Result<()> {
    let mut connection = bootstrap(brokers).await?;
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(topics.iter().map(|topic| name(topic)).collect());
    let response = connection.call(request).await?;
    for result in &response.responses {
        if result.error_code != 0 {
            bail!("deleting {:?}: error {}", result.name, result.error_code);
        }
    }
    Ok(())
}

/// The leader's address of each partition of `topic`, once the broker's
/// metadata has one for every partition (a new topic's leaders may take a
/// moment on a cluster).
pub(crate) async fn leaders(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<String>> {
    let mut connection = bootstrap(brokers).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic))),
        ]));
        let response = connection.call(request).await?;
        let addresses = response.topics.first().and_then(|answered| {
            (0..partitions)
                .map(|partition| {
                    let leader = answered
                        .partitions
                        .iter()
                        .find(|p| p.partition_index == partition && p.error_code == 0)?
                        .leader_id;
                    let broker = response.brokers.iter().find(|b| b.node_id == leader)?;
                    Some(address(&broker.host, broker.port))
                })
                .collect::<Option<Vec<String>>>()
        });
        match addresses {
            Some(addresses) => return Ok(addresses),
            None if Instant::now() > deadline => {
                bail!("{topic}: no leader for every partition after 30 s")
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Produce error codes worth a retry while a new topic's leaders settle:
/// UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER.
pub(crate) const SETTLING: [i16; 3] = [3, 5, 6];

/// Sends `per_partition` bytes of `template` to each partition, one
/// connection to its leader each; returns MB/s.
async fn produce(
    leaders: &[String],
    topic: &str,
    per_partition: u64,
    acks: i16,
    template: Bytes,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (partition, leader) in (0..).zip(leaders) {
        let (leader, topic, template) = (leader.clone(), topic.to_string(), template.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(&leader).await?;
            let (mut sent, mut retries) = (0, 0);
            while sent < per_partition {
                let request = ProduceRequest::default()
                    .with_acks(acks)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(name(&topic))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(template.clone()))])]);
                let response = connection.call(request).await?;
                let code = response.responses[0].partition_responses[0].error_code;
                if SETTLING.contains(&code) && sent == 0 && retries < 100 {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                if code != 0 {
                    bail!("produce to {topic}/{partition}: error {code}");
                }
                sent += template.len() as u64;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(mb_per_s(total, started.elapsed().as_secs_f64()))
}

/// One Fetch of `topic`/`partition` from `offset` at `isolation_level`
/// (0 read_uncommitted, 1 read_committed), no waiting, up to 8 MiB: the
/// partition's answer, or its error code as an error.
pub(crate) async fn fetch(
    connection: &mut Connection,
    topic: &str,
    partition: i32,
    offset: i64,
    isolation_level: i8,
) -> anyhow::Result<PartitionData> {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(64 << 20)
        .with_isolation_level(isolation_level)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(8 << 20)])]);
    let mut response = connection.call(request).await?;
    let data = response.responses.swap_remove(0).partitions.swap_remove(0);
    if data.error_code != 0 {
        bail!(
            "fetch {topic}/{partition} at {offset}: error {}",
            data.error_code
        );
    }
    Ok(data)
}

/// Reads every partition from offset 0 to its high watermark, one
/// connection to its leader each; returns MB/s.
async fn consume(leaders: &[String], topic: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (partition, leader) in (0..).zip(leaders) {
        let (leader, topic) = (leader.clone(), topic.to_string());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(&leader).await?;
            let (mut offset, mut read) = (0i64, 0u64);
            loop {
                let data = fetch(&mut connection, &topic, partition, offset, 0).await?;
                let records = data.records.clone().unwrap_or_default();
                if records.is_empty() {
                    if offset >= data.high_watermark {
                        return anyhow::Ok(read);
                    }
                    bail!("empty fetch below the high watermark at offset {offset}");
                }
                let mut position = 0;
                while position < records.len() {
                    let header = batch::BatchHeader::parse(&records[position..])?;
                    offset = header.next_offset();
                    position += header.total_bytes();
                }
                read += records.len() as u64;
            }
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(mb_per_s(total, started.elapsed().as_secs_f64()))
}

/// One run against `target`: acks=1 and acks=all into two fresh topics,
/// then everything of the second read back.
async fn measure(
    target: &Target<'_>,
    args: &KafkaBenchArgs,
    run: usize,
    template: Bytes,
) -> anyhow::Result<Figures> {
    // Fresh names: an already running broker may keep earlier runs' topics.
    let prefix = format!("sluice-bench-{}-{run}", std::process::id());
    let (acks_1_topic, acks_all_topic) = (format!("{prefix}-acks1"), format!("{prefix}-acksall"));
    let per_partition = args.bytes / args.partitions as u64;
    let gigabytes = (per_partition * args.partitions as u64) as f64 / 1e9;
    create_topic(target.brokers, &acks_1_topic, args.partitions).await?;
    create_topic(target.brokers, &acks_all_topic, args.partitions).await?;
    let acks_1_leaders = leaders(target.brokers, &acks_1_topic, args.partitions).await?;
    let acks_all_leaders = leaders(target.brokers, &acks_all_topic, args.partitions).await?;
    let cpu = target_cpu(target)?;
    let acks_1 = produce(
        &acks_1_leaders,
        &acks_1_topic,
        per_partition,
        1,
        template.clone(),
    )
    .await?;
    let acks_all = produce(
        &acks_all_leaders,
        &acks_all_topic,
        per_partition,
        -1,
        template,
    )
    .await?;
    // Over both phases: the kernel's write-back of dirty pages is charged to
    // whichever writer it throttles, so one phase alone is lopsided.
    let cpu_produced = cpu
        .zip(target_cpu(target)?)
        .map(|(before, after)| (after - before) / (2.0 * gigabytes));
    let cpu = target_cpu(target)?;
    let consumed = consume(&acks_all_leaders, &acks_all_topic).await?;
    let cpu_consumed = cpu
        .zip(target_cpu(target)?)
        .map(|(before, after)| (after - before) / gigabytes);
    if target.delete_topics {
        delete_topics(target.brokers, &[&acks_1_topic, &acks_all_topic]).await?;
    }
    Ok(Figures {
        produce_acks_1_mb_s: acks_1,
        produce_acks_all_mb_s: acks_all,
        consume_mb_s: consumed,
        cpu_s_per_gb_produced: cpu_produced,
        cpu_s_per_gb_consumed: cpu_consumed,
    })
}

/// One run against a `sluice serve --flush <flush>` started for it, with
/// its metrics on or off.
async fn one_run(
    sluice: &Path,
    dir: &Path,
    args: &KafkaBenchArgs,
    (run, flush, metrics): (usize, &str, bool),
    template: Bytes,
) -> anyhow::Result<Figures> {
    let data_dir = dir.join(format!("data-{flush}"));
    let config = dir.join(format!("metrics-{metrics}.toml"));
    std::fs::write(&config, format!("[metrics]\nenabled = {metrics}\n"))?;
    let config = config.to_string_lossy().into_owned();
    let broker = Serve::start(sluice, &data_dir, &["--flush", flush, "--config", &config])?;
    let target = Target {
        brokers: &broker.kafka,
        pid: Some(broker.pid()),
        delete_topics: false,
    };
    let figures = broker.explained(measure(&target, args, run, template).await)?;
    drop(broker);
    std::fs::remove_dir_all(&data_dir)?;
    Ok(figures)
}

fn medians(runs: &[Figures]) -> Figures {
    let pick = |f: fn(&Figures) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let pick_cpu = |f: fn(&Figures) -> Option<f64>| {
        let mut samples = runs.iter().map(f).collect::<Option<Vec<f64>>>()?;
        Some(median(&mut samples))
    };
    Figures {
        produce_acks_1_mb_s: pick(|f| f.produce_acks_1_mb_s),
        produce_acks_all_mb_s: pick(|f| f.produce_acks_all_mb_s),
        consume_mb_s: pick(|f| f.consume_mb_s),
        cpu_s_per_gb_produced: pick_cpu(|f| f.cpu_s_per_gb_produced),
        cpu_s_per_gb_consumed: pick_cpu(|f| f.cpu_s_per_gb_consumed),
    }
}

/// Every run's figures, before the medians.
#[derive(Default)]
struct Samples {
    raw: Vec<f64>,
    raw_fsync: Vec<f64>,
    sink_mb_s: Vec<f64>,
    sink_cpu: Vec<f64>,
    never: Vec<Figures>,
    never_metrics_off: Vec<Figures>,
    always: Vec<Figures>,
    running: Vec<Figures>,
}

/// Runs the benchmark and prints the report.
pub(crate) fn run(args: &KafkaBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.partitions > 0, "--partitions must be at least 1");
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let runtime = tokio::runtime::Runtime::new()?;
    // Fail before minutes of baselines, not after.
    let sluice = if args.brokers.is_none() || args.with_sluice {
        Some(sluice_binary(args.sluice.as_deref())?)
    } else {
        None
    };
    if let Some(brokers) = &args.brokers {
        runtime
            .block_on(bootstrap(brokers))
            .with_context(|| format!("--brokers {brokers}"))?;
    }
    if let Some(pid) = args.pid {
        cpu_seconds(pid)?;
    }
    let temporary = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir_in("."),
    }
    .context("creating the benchmark directory")?;
    let mut samples = Samples::default();
    for run in 1..=args.runs {
        eprintln!("sluice-bench kafka: run {run} of {}…", args.runs);
        one_of_each(
            &runtime,
            temporary.path(),
            args,
            sluice.as_deref(),
            run,
            &mut samples,
        )?;
    }
    let report = report(args, sluice.is_some(), samples);
    match args.format {
        OutputFormat::Json => crate::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?)),
        OutputFormat::Text => crate::emit(&text(&report)),
    }
}

/// Run number `run`: the baselines, then Sluice (if `sluice` is given),
/// then the running broker (if `--brokers`).
fn one_of_each(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    args: &KafkaBenchArgs,
    sluice: Option<&Path>,
    run: usize,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let template = batch::build::values(1000, 1024, now_ms()).freeze();
    samples
        .raw
        .push(raw_write(dir, &template, args.bytes, false)?);
    // The disk's own pace: write + fdatasync per 1 MiB batch.
    samples
        .raw_fsync
        .push(raw_write(dir, &template, args.bytes, true)?);
    let (mb_s, cpu) = tcp_to_file(dir, &template, args.bytes)?;
    samples.sink_mb_s.push(mb_s);
    samples.sink_cpu.push(cpu);
    if let Some(sluice) = sluice {
        let one =
            |flush, metrics| one_run(sluice, dir, args, (run, flush, metrics), template.clone());
        // Metrics off and on back to back, alternating which goes first.
        if run.is_multiple_of(2) {
            samples
                .never_metrics_off
                .push(runtime.block_on(one("never", false))?);
            samples.never.push(runtime.block_on(one("never", true))?);
        } else {
            samples.never.push(runtime.block_on(one("never", true))?);
            samples
                .never_metrics_off
                .push(runtime.block_on(one("never", false))?);
        }
        samples.always.push(runtime.block_on(one("always", true))?);
    }
    if let Some(brokers) = &args.brokers {
        let target = Target {
            brokers,
            pid: args.pid,
            delete_topics: true,
        };
        let figures = runtime.block_on(measure(&target, args, run, template))?;
        samples.running.push(figures);
    }
    Ok(())
}

/// The medians of `samples`, and the ratios to raw `write(2)`.
fn report(args: &KafkaBenchArgs, sluice_started: bool, mut samples: Samples) -> Report {
    let raw_write_mb_s = median(&mut samples.raw);
    let started = sluice_started.then(|| {
        let never = medians(&samples.never);
        let off = medians(&samples.never_metrics_off);
        // Per run, then the median: each pair shared the machine's mood.
        let mut ratios: Vec<f64> = (samples.never.iter().zip(&samples.never_metrics_off))
            .map(|(on, off)| on.produce_acks_1_mb_s / off.produce_acks_1_mb_s)
            .collect();
        Started {
            never_produce_vs_raw: never.produce_acks_1_mb_s / raw_write_mb_s,
            always: medians(&samples.always),
            never,
            metrics_on_vs_off_produce: median(&mut ratios),
            never_metrics_off: off,
        }
    });
    let running = args.brokers.as_ref().map(|brokers| {
        let broker = medians(&samples.running);
        Running {
            brokers: brokers.clone(),
            broker_pid: args.pid,
            produce_acks_1_vs_raw: broker.produce_acks_1_mb_s / raw_write_mb_s,
            broker,
        }
    });
    Report {
        bytes_per_run: args.bytes,
        runs: args.runs,
        raw_write_mb_s,
        raw_write_fsync_mb_s: median(&mut samples.raw_fsync),
        tcp_to_file_mb_s: median(&mut samples.sink_mb_s),
        tcp_to_file_cpu_s_per_gb: median(&mut samples.sink_cpu),
        started,
        running,
    }
}

/// Milliseconds since the epoch: the records' timestamps, so that a
/// broker's time-based retention does not delete them mid-run.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

fn text(report: &Report) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "raw write(2): {:.0} MB/s, write+fdatasync per batch: {:.0} MB/s",
        report.raw_write_mb_s, report.raw_write_fsync_mb_s
    );
    let _ = writeln!(
        text,
        "TCP receive + write(2), no protocol: {:.0} MB/s, {:.2} CPU-s/GB",
        report.tcp_to_file_mb_s, report.tcp_to_file_cpu_s_per_gb
    );
    let line = |label: &str, f: &Figures| {
        let cpu = |value: Option<f64>| value.map_or("n/a".to_string(), |v| format!("{v:.2}"));
        format!(
            "{label} produce acks=1 {:>6.0} MB/s, acks=all {:>6.0} MB/s, consume {:>6.0} MB/s, \
             broker {} CPU-s/GB produced, {} CPU-s/GB consumed\n",
            f.produce_acks_1_mb_s,
            f.produce_acks_all_mb_s,
            f.consume_mb_s,
            cpu(f.cpu_s_per_gb_produced),
            cpu(f.cpu_s_per_gb_consumed)
        )
    };
    if let Some(started) = &report.started {
        text.push_str(&line("flush=never ", &started.never));
        text.push_str(&line("flush=always", &started.always));
        text.push_str(&line(
            "flush=never, metrics off",
            &started.never_metrics_off,
        ));
        let _ = writeln!(
            text,
            "metrics on / off, produce (acks=1), median of per-run ratios: {:.1}%",
            started.metrics_on_vs_off_produce * 100.0
        );
        let _ = writeln!(
            text,
            "flush=never produce (acks=1) / raw write: {:.0}%",
            started.never_produce_vs_raw * 100.0
        );
    }
    if let Some(running) = &report.running {
        text.push_str(&line(
            &format!("broker {}:", running.brokers),
            &running.broker,
        ));
        let _ = writeln!(
            text,
            "broker {} produce (acks=1) / raw write: {:.0}%",
            running.brokers,
            running.produce_acks_1_vs_raw * 100.0
        );
    }
    text
}

/// Options of the hidden `sluice-bench sink`.
#[derive(Debug, Args)]
pub(crate) struct SinkArgs {
    /// Where to listen (loopback).
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// File to write what arrives to.
    #[arg(long)]
    pub file: std::path::PathBuf,
}

/// `sluice-bench sink`: accepts one connection and copies it to a file in
/// 1 MiB reads, the least any broker must do per produced byte.
pub(crate) fn sink(args: &SinkArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(args.listen)?;
    println!("ready");
    let (mut stream, _) = listener.accept()?;
    let mut file = std::fs::File::create(&args.file)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            // Our own CPU time, for the parent to report.
            println!("{}", cpu_seconds(std::process::id())?);
            return Ok(());
        }
        file.write_all(&buffer[..read])?;
    }
}

/// Runs a sink child and sends it `total` bytes of `template`; returns its
/// MB/s and CPU-seconds per GB.
fn tcp_to_file(dir: &Path, template: &[u8], total: u64) -> anyhow::Result<(f64, f64)> {
    use std::io::Write;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let file = dir.join("sink.bin");
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["sink", "--listen", &listen, "--file"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut output = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut output, &mut line)?;
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(&listen)?;
    let mut sent = 0;
    while sent < total {
        stream.write_all(template)?;
        sent += template.len() as u64;
    }
    drop(stream);
    line.clear();
    std::io::BufRead::read_line(&mut output, &mut line)?;
    let cpu: f64 = line
        .trim()
        .parse()
        .with_context(|| format!("sink reported {line:?}"))?;
    child.wait()?;
    let seconds = started.elapsed().as_secs_f64();
    std::fs::remove_file(&file)?;
    Ok((mb_per_s(sent, seconds), cpu / (sent as f64 / 1e9)))
}
