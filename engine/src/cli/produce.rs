//! `sluice produce`: lines from stdin become records, like `kcat -P`.
//!
//! A plain producer (producer id -1: no idempotence, no transactions).
//! Lines are batched per partition and sent when ~16 KiB are waiting, when
//! no new line has arrived for [`LINGER`], and at end of input. The
//! partition of a keyed record is Kafka's default: `toPositive(murmur2(key))
//! % partitions`, so keys land where a Java producer would put them.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::mpsc;

use super::topic::parse_key_value;
use super::ConnectArgs;
use crate::client::{error_text, text, topic_name, Client, TopicInfo, REQUEST_TIMEOUT};
use crate::protocol::partitioner::partition_for_key;

/// Pending record bytes (keys, values, headers) that trigger a send.
const BATCH_BYTES: usize = 16 * 1024;

/// How long a partly filled batch waits for more lines before it is sent,
/// so interactive input shows up promptly.
const LINGER: Duration = Duration::from_millis(100);

/// Longest accepted input line; a longer one is an error, not an
/// unbounded allocation.
const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Lines read ahead of the sender.
const LINES_QUEUED_MAX: usize = 1024;

/// Record batch format (magic) written.
const RECORD_BATCH_VERSION: i8 = 2;

/// `sluice produce` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    printf 'hello\\nworld\\n' | sluice produce greetings\n  \
    printf 'user-1:login\\nuser-2:logout\\n' | sluice produce events --key-separator : --header source=cli --compression zstd")]
pub(crate) struct ProduceArgs {
    /// Topic to write to.
    pub(crate) topic: String,
    /// Split each line at the first SEP into key and value; a line without
    /// SEP has no key.
    #[arg(short = 'K', long, value_name = "SEP")]
    pub(crate) key_separator: Option<String>,
    /// Write every record to this partition [default: murmur2 of the key
    /// like Kafka's default partitioner, round robin for records without
    /// a key].
    #[arg(short, long, value_name = "N")]
    pub(crate) partition: Option<i32>,
    /// A header on every record, `name=value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) headers: Vec<(String, String)>,
    /// Compression codec of the record batches.
    #[arg(short = 'z', long, value_enum, default_value_t = CompressionArg::None)]
    pub(crate) compression: CompressionArg,
    /// Acknowledgement: -1 waits for the write to be durable, 1 for the
    /// leader, 0 for nothing (errors then go unseen).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i16).range(-1..=1))]
    pub(crate) acks: i16,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// No progress line on a terminal, only the summary.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

/// Compression codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressionArg {
    /// No compression.
    None,
    Gzip,
    Snappy,
    Lz4,
    /// Zstandard.
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(value: CompressionArg) -> Self {
        match value {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// Chooses a partition per record.
struct Partitioner {
    fixed: Option<i32>,
    partitions: i32,
    /// Next partition for a record without a key.
    round_robin: i32,
}

impl Partitioner {
    fn choose(&mut self, key: Option<&[u8]>) -> i32 {
        if let Some(partition) = self.fixed {
            return partition;
        }
        match key {
            Some(key) => partition_for_key(key, self.partitions),
            None => {
                let partition = self.round_robin;
                self.round_robin = (self.round_robin + 1) % self.partitions;
                partition
            }
        }
    }
}

/// Records waiting to be sent, per partition, and what became of earlier ones.
#[derive(Default)]
struct Pending {
    records: BTreeMap<i32, Vec<Record>>,
    bytes: usize,
    /// Records acknowledged (or sent, with acks=0) per partition.
    written: BTreeMap<i32, u64>,
    /// Records lost to errors.
    failed: u64,
}

/// Runs `sluice produce`.
pub(crate) async fn run(args: ProduceArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let topic = client.topic(&args.topic).await?;
    if topic.partitions.is_empty() {
        bail!("topic '{}' has no partitions", topic.name);
    }
    if let Some(partition) = args.partition {
        topic.partition(partition)?;
    }
    let mut partitioner = Partitioner {
        fixed: args.partition,
        partitions: topic.partitions.len() as i32,
        round_robin: 0,
    };
    let headers: Vec<(StrBytes, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|(k, v)| (text(k), Some(Bytes::from(v.clone()))))
        .collect();
    let mut lines = spawn_stdin_reader();
    let mut pending = Pending::default();
    let mut line_number = 0u64;
    let progress = super::progress::Progress::records(args.quiet, None, "producing");
    let label = format!("to '{}'", topic.name);
    let mut read_bytes = 0u64;
    let show = |pending: &Pending, read_bytes: u64| {
        progress.done(pending.written.values().sum(), &label, read_bytes);
    };
    loop {
        let next = if pending.bytes > 0 {
            match tokio::time::timeout(LINGER, lines.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    flush(&mut client, &topic, &args, &mut pending).await?;
                    show(&pending, read_bytes);
                    continue;
                }
            }
        } else {
            lines.recv().await
        };
        let Some(line) = next else { break };
        line_number += 1;
        let line = line.with_context(|| format!("reading line {line_number} of stdin"))?;
        read_bytes += line.len() as u64 + 1;
        let (key, value) = split_line(line, args.key_separator.as_deref());
        let partition = partitioner.choose(key.as_deref());
        pending.bytes += key.as_ref().map_or(0, Bytes::len) + value.len() + 16;
        pending
            .records
            .entry(partition)
            .or_default()
            .push(record(key, value, &headers));
        if pending.bytes >= BATCH_BYTES {
            flush(&mut client, &topic, &args, &mut pending).await?;
            show(&pending, read_bytes);
        }
    }
    flush(&mut client, &topic, &args, &mut pending).await?;
    progress.finish();
    summarize(&topic.name, &pending, args.acks)
}

fn summarize(topic: &str, pending: &Pending, acks: i16) -> Result<()> {
    let written: u64 = pending.written.values().sum();
    let partitions: Vec<String> = pending.written.keys().map(i32::to_string).collect();
    let verb = if acks == 0 {
        "sent (acks=0, unconfirmed)"
    } else {
        "produced"
    };
    eprintln!(
        "{verb} {written} records to '{topic}' (partitions: {})",
        if partitions.is_empty() {
            "none".to_string()
        } else {
            partitions.join(", ")
        }
    );
    if pending.failed > 0 {
        bail!("{} records were not written to '{topic}'", pending.failed);
    }
    Ok(())
}

/// Reads stdin on its own thread (blocking reads stay off the runtime)
/// and hands over lines without their `\n` or `\r\n`. The thread is not
/// joined: it ends at end of input or when the receiver is gone, and a
/// blocking read cannot be interrupted anyway; the process exit ends it.
fn spawn_stdin_reader() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel(LINES_QUEUED_MAX);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let line = read_line(&mut input);
            let last = !matches!(line, Ok(Some(_)));
            let item = match line {
                Ok(Some(line)) => Ok(line),
                Ok(None) => break,
                Err(error) => Err(error),
            };
            if sender.blocking_send(item).is_err() || last {
                break;
            }
        }
    });
    receiver
}

/// One line of at most [`LINE_BYTES_MAX`] bytes, `None` at end of input.
fn read_line(input: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let limit = LINE_BYTES_MAX as u64 + 2;
    let read = std::io::Read::take(&mut *input, limit).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > LINE_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line longer than {LINE_BYTES_MAX} bytes"),
        ));
    }
    Ok(Some(line))
}

/// Key and value of `line`: split at the first `separator`, if any.
fn split_line(line: Vec<u8>, separator: Option<&str>) -> (Option<Bytes>, Bytes) {
    let line = Bytes::from(line);
    let Some(separator) = separator.map(str::as_bytes).filter(|s| !s.is_empty()) else {
        return (None, line);
    };
    match line.windows(separator.len()).position(|w| w == separator) {
        Some(at) => (Some(line.slice(..at)), line.slice(at + separator.len()..)),
        None => (None, line),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn record(key: Option<Bytes>, value: Bytes, headers: &[(StrBytes, Option<Bytes>)]) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        // Set when the batch is encoded.
        offset: 0,
        sequence: -1,
        timestamp: now_ms(),
        key,
        value: Some(value),
        headers: headers.iter().cloned().collect(),
    }
}

/// One record batch of `records`, offsets counted from 0.
fn encode_batch(records: &mut [Record], compression: Compression) -> Result<Bytes> {
    for (index, record) in records.iter_mut().enumerate() {
        record.offset = index as i64;
        // The encoder starts a new batch whenever `offset - sequence`
        // changes; keeping it constant puts every record in one batch.
        // Only the first record's sequence is written (as the base
        // sequence), and it stays -1: no idempotence.
        record.sequence = index as i32 - 1;
    }
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: RECORD_BATCH_VERSION,
        compression,
    };
    RecordBatchEncoder::encode(&mut buffer, records.iter(), &options)
        .context("encoding a record batch")?;
    Ok(buffer.freeze())
}

/// Sends every pending record, one Produce request per partition leader.
async fn flush(
    client: &mut Client,
    topic: &TopicInfo,
    args: &ProduceArgs,
    pending: &mut Pending,
) -> Result<()> {
    let mut records = std::mem::take(&mut pending.records);
    pending.bytes = 0;
    if records.is_empty() {
        return Ok(());
    }
    for (leader, partitions) in topic.by_leader(records.keys().copied().collect::<Vec<_>>())? {
        let mut counts = BTreeMap::new();
        let mut data = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let batch = records
                .get_mut(&partition)
                .expect("grouped from these keys");
            counts.insert(partition, batch.len() as u64);
            data.push(
                PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(encode_batch(batch, args.compression.into())?)),
            );
        }
        let request = ProduceRequest::default()
            .with_acks(args.acks)
            .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&topic.name))
                .with_partition_data(data)]);
        let connection = client.node(leader).await?;
        if args.acks == 0 {
            connection.send_only(request).await?;
            for (partition, count) in counts {
                *pending.written.entry(partition).or_default() += count;
            }
            continue;
        }
        let response = connection.call(request).await?;
        record_outcome(&topic.name, &response, counts, pending);
    }
    Ok(())
}

/// Counts what a Produce response says was written and reports each
/// failed partition on stderr.
fn record_outcome(
    topic: &str,
    response: &kafka_protocol::messages::ProduceResponse,
    mut counts: BTreeMap<i32, u64>,
    pending: &mut Pending,
) {
    let answers = response
        .responses
        .iter()
        .filter(|t| t.name.as_str() == topic)
        .flat_map(|t| &t.partition_responses);
    for answer in answers {
        let Some(count) = counts.remove(&answer.index) else {
            continue;
        };
        match error_text(answer.error_code, answer.error_message.as_ref()) {
            None => *pending.written.entry(answer.index).or_default() += count,
            Some(error) => {
                pending.failed += count;
                eprintln!(
                    "partition {} of '{topic}': {count} records not written: {error}",
                    answer.index
                );
            }
        }
    }
    for (partition, count) in counts {
        pending.failed += count;
        eprintln!("partition {partition} of '{topic}': {count} records not acknowledged: no answer for the partition");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyless_records_go_round_robin() {
        let mut partitioner = Partitioner {
            fixed: None,
            partitions: 3,
            round_robin: 0,
        };
        let chosen: Vec<i32> = (0..5).map(|_| partitioner.choose(None)).collect();
        assert_eq!(chosen, [0, 1, 2, 0, 1]);
        partitioner.fixed = Some(2);
        assert_eq!(partitioner.choose(Some(b"foobar")), 2);
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        let (key, value) = split_line(b"k::v::w".to_vec(), Some("::"));
        assert_eq!(key.as_deref(), Some(&b"k"[..]));
        assert_eq!(&value[..], b"v::w");
        let (key, value) = split_line(b"no-separator".to_vec(), Some(":"));
        assert_eq!(key, None);
        assert_eq!(&value[..], b"no-separator");
        let (key, value) = split_line(b":v".to_vec(), Some(":"));
        assert_eq!(key.as_deref(), Some(&b""[..]));
        assert_eq!(&value[..], b"v");
    }

    #[test]
    fn line_endings_are_stripped() {
        let mut input = &b"a\r\nb\n\nlast"[..];
        let mut lines = Vec::new();
        while let Some(line) = read_line(&mut input).unwrap() {
            lines.push(line);
        }
        assert_eq!(lines, [&b"a"[..], b"b", b"", b"last"]);
    }

    #[test]
    fn one_batch_per_partition_flush() {
        let mut records: Vec<Record> = (0..3)
            .map(|i| record(None, Bytes::from(format!("v{i}")), &[]))
            .collect();
        let encoded = encode_batch(&mut records, Compression::None).unwrap();
        let mut buffer = encoded.clone();
        let batches = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buffer).unwrap();
        assert_eq!(batches.len(), 1, "all records in one batch");
        assert_eq!(batches[0].records.len(), 3);
        let info =
            kafka_protocol::records::RecordBatchDecoder::decode_batch_info(&mut encoded.clone())
                .unwrap();
        assert_eq!(info[0].base_sequence, -1);
        assert_eq!(info[0].producer_id, -1);
    }
}
