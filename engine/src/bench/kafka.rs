//! `sluice bench kafka`: the broker's produce and consume throughput and CPU
//! cost over the Kafka protocol, with a load generator cheap enough not to
//! be the bottleneck: one prebuilt 1 MiB batch of 1 KiB records, sent again
//! and again (the broker assigns offsets; the CRC stays valid), one
//! connection per partition. In the same run: raw `write(2)` of the same
//! bytes to the same disk. A release `sluice serve` is started per flush
//! policy on a temporary data directory; broker CPU comes from
//! `/proc/<pid>/stat`. Each figure is the median of `--runs`.
//!
//! For latency and a real client's view, see `bench/run-kafka-bench`.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::log::{mb_per_s, raw_write};
use super::{median, Serve};
use crate::cli::OutputFormat;
use crate::client::Connection;
use crate::log::batch;

/// Options of `sluice bench kafka`.
#[derive(Debug, Args)]
pub struct KafkaBenchArgs {
    /// Directory for the brokers' data (on the disk to measure) [default: a temporary directory under the current one].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// Bytes produced per run.
    #[arg(long, default_value_t = 1 << 30)]
    pub bytes: u64,
    /// Partitions (one producing connection each).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Default, Serialize)]
struct Figures {
    produce_acks_1_mb_s: f64,
    produce_acks_all_mb_s: f64,
    consume_mb_s: f64,
    cpu_s_per_gb_produced: f64,
    cpu_s_per_gb_consumed: f64,
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
    never: Figures,
    always: Figures,
    never_produce_vs_raw: f64,
}

fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
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

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

async fn create_topic(address: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let mut connection = Connection::open(address).await?;
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

/// Sends `per_partition` bytes of `template` to each partition, one
/// connection each; returns MB/s.
async fn produce(
    address: &str,
    topic: &str,
    partitions: i32,
    per_partition: u64,
    acks: i16,
    template: Bytes,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for partition in 0..partitions {
        let (address, topic, template) = (address.to_string(), topic.to_string(), template.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(&address).await?;
            let mut sent = 0;
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
                if code != 0 {
                    bail!("produce to partition {partition}: error {code}");
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

/// Reads every partition from offset 0 to `end`, one connection each.
async fn consume(address: &str, topic: &str, partitions: i32) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for partition in 0..partitions {
        let (address, topic) = (address.to_string(), topic.to_string());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(&address).await?;
            let (mut offset, mut read) = (0i64, 0u64);
            loop {
                let request = FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_max_bytes(64 << 20)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(name(&topic))
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(8 << 20)])]);
                let response = connection.call(request).await?;
                let data = &response.responses[0].partitions[0];
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

async fn one_run(
    dir: &Path,
    args: &KafkaBenchArgs,
    flush: &str,
    template: Bytes,
) -> anyhow::Result<Figures> {
    let data_dir = dir.join(format!("data-{flush}"));
    let broker = Serve::start(&data_dir, &["--flush", flush])?;
    let pid = broker.pid();
    let per_partition = args.bytes / args.partitions as u64;
    let gigabytes = (per_partition * args.partitions as u64) as f64 / 1e9;
    create_topic(&broker.kafka, "acks1", args.partitions).await?;
    create_topic(&broker.kafka, "acksall", args.partitions).await?;
    let cpu = cpu_seconds(pid)?;
    let acks_1 = produce(
        &broker.kafka,
        "acks1",
        args.partitions,
        per_partition,
        1,
        template.clone(),
    )
    .await?;
    let acks_all = produce(
        &broker.kafka,
        "acksall",
        args.partitions,
        per_partition,
        -1,
        template,
    )
    .await?;
    // Over both phases: the kernel's write-back of dirty pages is charged to
    // whichever writer it throttles, so one phase alone is lopsided.
    let cpu_produced = (cpu_seconds(pid)? - cpu) / (2.0 * gigabytes);
    let cpu = cpu_seconds(pid)?;
    let consumed = consume(&broker.kafka, "acksall", args.partitions).await?;
    let cpu_consumed = (cpu_seconds(pid)? - cpu) / gigabytes;
    drop(broker);
    std::fs::remove_dir_all(&data_dir)?;
    Ok(Figures {
        produce_acks_1_mb_s: acks_1,
        produce_acks_all_mb_s: acks_all,
        consume_mb_s: consumed,
        cpu_s_per_gb_produced: cpu_produced,
        cpu_s_per_gb_consumed: cpu_consumed,
    })
}

fn medians(runs: &[Figures]) -> Figures {
    let pick = |f: fn(&Figures) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Figures {
        produce_acks_1_mb_s: pick(|f| f.produce_acks_1_mb_s),
        produce_acks_all_mb_s: pick(|f| f.produce_acks_all_mb_s),
        consume_mb_s: pick(|f| f.consume_mb_s),
        cpu_s_per_gb_produced: pick(|f| f.cpu_s_per_gb_produced),
        cpu_s_per_gb_consumed: pick(|f| f.cpu_s_per_gb_consumed),
    }
}

/// Runs the benchmark and prints the report.
pub fn run(args: &KafkaBenchArgs) -> anyhow::Result<()> {
    let temporary = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir_in("."),
    }
    .context("creating the benchmark directory")?;
    let dir = temporary.path();
    let template = batch::build::values(1000, 1024, 1_700_000_000_000).freeze();
    let runtime = tokio::runtime::Runtime::new()?;
    let (mut raw, mut raw_fsync) = (Vec::new(), Vec::new());
    let (mut sink_mb_s, mut sink_cpu) = (Vec::new(), Vec::new());
    let (mut never, mut always) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        eprintln!("bench kafka: run {run} of {}…", args.runs);
        raw.push(raw_write(dir, &template, args.bytes, false)?);
        // The disk's own pace: write + fdatasync per 1 MiB batch.
        raw_fsync.push(raw_write(dir, &template, args.bytes, true)?);
        let (mb_s, cpu) = tcp_to_file(dir, &template, args.bytes)?;
        sink_mb_s.push(mb_s);
        sink_cpu.push(cpu);
        never.push(runtime.block_on(one_run(dir, args, "never", template.clone()))?);
        always.push(runtime.block_on(one_run(dir, args, "always", template.clone()))?);
    }
    let never = medians(&never);
    let report = Report {
        bytes_per_run: args.bytes,
        runs: args.runs,
        raw_write_mb_s: median(&mut raw),
        raw_write_fsync_mb_s: median(&mut raw_fsync),
        tcp_to_file_mb_s: median(&mut sink_mb_s),
        tcp_to_file_cpu_s_per_gb: median(&mut sink_cpu),
        never_produce_vs_raw: 0.0,
        always: medians(&always),
        never,
    };
    let report = Report {
        never_produce_vs_raw: report.never.produce_acks_1_mb_s / report.raw_write_mb_s,
        ..report
    };
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => {
            println!(
                "raw write(2): {:.0} MB/s, write+fdatasync per batch: {:.0} MB/s",
                report.raw_write_mb_s, report.raw_write_fsync_mb_s
            );
            println!(
                "TCP receive + write(2), no protocol: {:.0} MB/s, {:.2} CPU-s/GB",
                report.tcp_to_file_mb_s, report.tcp_to_file_cpu_s_per_gb
            );
            for (flush, f) in [("never", &report.never), ("always", &report.always)] {
                println!(
                    "flush={flush:<6} produce acks=1 {:>6.0} MB/s, acks=all {:>6.0} MB/s, consume {:>6.0} MB/s, \
                     broker {:.2} CPU-s/GB produced, {:.2} CPU-s/GB consumed",
                    f.produce_acks_1_mb_s, f.produce_acks_all_mb_s, f.consume_mb_s, f.cpu_s_per_gb_produced, f.cpu_s_per_gb_consumed
                );
            }
            println!(
                "flush=never produce (acks=1) / raw write: {:.0}%",
                report.never_produce_vs_raw * 100.0
            );
        }
    }
    Ok(())
}

/// Options of the hidden `sluice bench sink`.
#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Where to listen (loopback).
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// File to write what arrives to.
    #[arg(long)]
    pub file: std::path::PathBuf,
}

/// `sluice bench sink`: accepts one connection and copies it to a file in
/// 1 MiB reads, the least any broker must do per produced byte.
pub fn sink(args: &SinkArgs) -> anyhow::Result<()> {
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
        .args(["bench", "sink", "--listen", &listen, "--file"])
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
