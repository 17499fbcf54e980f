//! `sluice consume`: print a topic's records, like `kcat -C`.
//!
//! Alone it reads the chosen partitions from `--from`. With `--group` it
//! is a real member of a classic consumer group ([`Member`]): it reads
//! from the committed offsets, commits every [`COMMIT_INTERVAL`] and on
//! exit, and leaves the group on exit.
//!
//! By default it reads committed (`--isolation read_committed`), as a
//! consumer of a transactional pipeline expects: fetches stop at the last
//! stable offset, records of aborted transactions are dropped
//! ([`decode_batches`]), and `-e` stops at the last stable offset it found
//! when reading began. `--isolation read_uncommitted` shows everything up
//! to the high watermark. Control records (transaction markers) are never
//! shown.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::records::Record;
use tokio::task::JoinHandle;

use super::{ConnectArgs, OutputFormat};
use crate::client::fetched::decode_batches;
use crate::client::member::Member;
use crate::client::offsets::{resolve_positions, Offsets};
use crate::client::{
    check, topic_name, Client, IsolationLevel, TopicInfo, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
    REQUEST_TIMEOUT,
};
use crate::start_position::StartPosition;

/// How long the broker may hold a fetch waiting for records; also how
/// quickly a signal or a rebalance is noticed.
const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// Bytes per fetch response, and per partition in it.
const FETCH_BYTES_MAX: i32 = 8 * 1024 * 1024;
const FETCH_PARTITION_BYTES_MAX: i32 = 1024 * 1024;
/// Pause before retrying after a retriable error or while nothing is assigned.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// How often positions are committed while consuming (auto.commit.interval.ms).
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// `sluice consume` options.
#[derive(Debug, Args)]
#[command(after_help = "Output:\n  \
    text: each record's value on its own line (raw bytes, like kcat).\n  \
    json: one object per line: {\"topic\",\"partition\",\"offset\",\"timestamp\",\"key\",\"value\",\"headers\"};\n        \
    key, value and header values are UTF-8 text (invalid bytes become U+FFFD), null when absent.\n\n\
    Transactions: read_committed (the default) shows only records of committed transactions\n\
    (and non-transactional ones), and reads no further than the last stable offset: the first\n\
    offset of the oldest open transaction. read_uncommitted shows everything up to the high\n\
    watermark, open and aborted transactions included. Transaction markers are never shown.\n\n\
    Examples:\n  \
    sluice consume orders -e                         # everything there is now, then exit\n  \
    sluice consume orders --from latest              # only new records, until Ctrl-C\n  \
    sluice consume orders --from @1700000000000 -n 10 --format json\n  \
    sluice consume orders --from 2026-11-23T10:00:00Z --partition 2\n  \
    sluice consume orders --group billing            # resumes where the group left off\n  \
    sluice consume orders -e --isolation read_uncommitted   # aborted and open transactions too")]
pub(crate) struct ConsumeArgs {
    pub(crate) topic: String,
    /// Consume as a member of this consumer group: partitions are assigned
    /// by the group (range assignor), reading resumes from the group's
    /// committed offsets, and positions are committed every 5 s and on exit.
    #[arg(short, long, value_name = "GROUP")]
    pub(crate) group: Option<String>,
    /// Where to start (with --group: only for partitions without a
    /// committed offset): earliest, latest, an OFFSET, or a time as
    /// `@MILLIS` since the epoch or RFC 3339 (2026-11-23T10:00:00Z),
    /// meaning the first record at or after it.
    #[arg(short, long, value_name = "POSITION", default_value = "earliest",
          value_parser = StartPosition::parse)]
    pub(crate) from: StartPosition,
    /// Exit after printing N records [default: run until Ctrl-C].
    #[arg(short = 'n', long = "num", value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Read only this partition [default: all].
    #[arg(short, long, value_name = "N", conflicts_with = "group")]
    pub(crate) partition: Option<i32>,
    /// Exit once every partition reached the end it had when reading
    /// began (like kcat -e): the last stable offset read_committed, the
    /// high watermark read_uncommitted.
    #[arg(short, long)]
    pub(crate) exit_at_end: bool,
    /// Which records of transactions to show: read_committed (only
    /// committed ones, up to the last stable offset) or read_uncommitted
    /// (everything up to the high watermark). Also what `--from latest`
    /// means.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = IsolationLevel::ReadCommitted)]
    pub(crate) isolation: IsolationLevel,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// No progress bar on a terminal.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

/// Writes records to stdout in the chosen format.
struct Printer {
    format: OutputFormat,
    out: BufWriter<std::io::Stdout>,
}

impl Printer {
    fn record(&mut self, topic: &str, partition: i32, record: &Record) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Text => {
                self.out
                    .write_all(record.value.as_deref().unwrap_or_default())?;
                self.out.write_all(b"\n")
            }
            OutputFormat::Json => {
                let line = json_line(topic, partition, record);
                self.out.write_all(line.as_bytes())?;
                self.out.write_all(b"\n")
            }
        }
    }
}

/// One JSON object, fields in a fixed order.
fn json_line(topic: &str, partition: i32, record: &Record) -> String {
    let lossy = |bytes: Option<&Bytes>| match bytes {
        Some(bytes) => serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()),
        None => serde_json::Value::Null,
    };
    let headers: serde_json::Map<String, serde_json::Value> = record
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), lossy(value.as_ref())))
        .collect();
    format!(
        "{{\"topic\":{},\"partition\":{partition},\"offset\":{},\"timestamp\":{},\"key\":{},\"value\":{},\"headers\":{}}}",
        serde_json::Value::String(topic.to_string()),
        record.offset,
        record.timestamp,
        lossy(record.key.as_ref()),
        lossy(record.value.as_ref()),
        serde_json::Value::Object(headers),
    )
}

/// Reading state: positions of the assigned partitions and when to stop.
struct Reader {
    topic: TopicInfo,
    /// Next offset to print, per assigned partition.
    positions: BTreeMap<i32, i64>,
    /// With --exit-at-end: each partition's end (at `isolation`) when
    /// reading began.
    ends: Option<BTreeMap<i32, i64>>,
    isolation: IsolationLevel,
    /// Records still to print with -n.
    remaining: Option<u64>,
    /// With -n, on a terminal, while the records go elsewhere.
    progress: super::progress::Progress,
    printer: Printer,
    /// stdout was closed (`| head`): stop quietly.
    output_closed: bool,
}

impl Reader {
    fn finished(&self) -> bool {
        self.output_closed
            || self.remaining == Some(0)
            || self.ends.as_ref().is_some_and(|ends| {
                self.positions
                    .iter()
                    .all(|(p, position)| ends.get(p).is_none_or(|end| position >= end))
            })
    }

    /// Partitions still to read.
    fn active(&self) -> Vec<i32> {
        self.positions
            .iter()
            .filter(|(p, position)| match &self.ends {
                Some(ends) => ends.get(p).is_some_and(|end| *position < end),
                None => true,
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// Takes `positions` as the assignment; records the end offsets too
    /// when exiting at the end.
    async fn assign(
        &mut self,
        client: &mut Client,
        positions: BTreeMap<i32, i64>,
        exit_at_end: bool,
    ) -> Result<()> {
        if exit_at_end {
            let query: Vec<(i32, i64)> = positions.keys().map(|p| (*p, LATEST_TIMESTAMP)).collect();
            let ends = client
                .list_offsets(&self.topic, &query, self.isolation)
                .await?;
            self.ends = Some(ends);
        }
        self.positions = positions;
        Ok(())
    }

    /// Committable positions.
    fn offsets(&self) -> Offsets {
        self.positions
            .iter()
            .map(|(p, offset)| ((self.topic.name.clone(), *p), *offset))
            .collect()
    }

    /// One fetch from every leader of an active partition; prints what came.
    async fn fetch_round(&mut self, client: &mut Client) -> Result<()> {
        let mut refresh = false;
        for (leader, partitions) in self.topic.by_leader(self.active())? {
            let fetch_partitions = partitions
                .iter()
                .map(|p| {
                    FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(self.positions[p])
                        .with_partition_max_bytes(FETCH_PARTITION_BYTES_MAX)
                })
                .collect();
            let request = FetchRequest::default()
                .with_max_wait_ms(FETCH_MAX_WAIT.as_millis() as i32)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_BYTES_MAX)
                .with_isolation_level(self.isolation.code())
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(&self.topic.name))
                    .with_partitions(fetch_partitions)]);
            let connection = client.node(leader).await?;
            let response = connection
                .call_within(request, REQUEST_TIMEOUT + FETCH_MAX_WAIT)
                .await?;
            check(response.error_code, None, || {
                format!("Fetch from '{}'", self.topic.name)
            })?;
            let answers = response.responses.into_iter().flat_map(|t| t.partitions);
            for answer in answers {
                let partition = answer.partition_index;
                match ResponseError::try_from_code(answer.error_code) {
                    None => {
                        let aborted = (self.isolation == IsolationLevel::ReadCommitted)
                            .then(|| answer.aborted_transactions.unwrap_or_default());
                        let records = answer.records.unwrap_or_default();
                        self.print(partition, records, aborted.as_deref())?
                    }
                    Some(ResponseError::OffsetOutOfRange) => self.reset(client, partition).await?,
                    Some(error) if error.is_retriable() => refresh = true,
                    Some(_) => check(answer.error_code, None, || {
                        format!("Fetch from partition {partition} of '{}'", self.topic.name)
                    })?,
                }
                if self.finished() {
                    return Ok(());
                }
            }
        }
        self.printer
            .out
            .flush()
            .or_else(closed_output(&mut self.output_closed))?;
        if refresh {
            tokio::time::sleep(RETRY_BACKOFF).await;
            self.topic = client.topic(&self.topic.name).await?;
        }
        Ok(())
    }

    /// Prints the records of one partition's fetch answer from its
    /// position; `aborted` is the answer's aborted transactions when
    /// reading committed.
    fn print(
        &mut self,
        partition: i32,
        raw: Bytes,
        aborted: Option<&[AbortedTransaction]>,
    ) -> Result<()> {
        let Some(position) = self.positions.get(&partition).copied() else {
            return Ok(());
        };
        let fetched = decode_batches(raw, position, aborted)
            .with_context(|| format!("partition {partition} of '{}'", self.topic.name))?;
        for record in &fetched.records {
            if self.remaining == Some(0) {
                return Ok(());
            }
            if let Err(error) = self.printer.record(&self.topic.name, partition, record) {
                return closed_output(&mut self.output_closed)(error);
            }
            self.positions.insert(partition, record.offset + 1);
            self.remaining = self.remaining.map(|n| n - 1);
            self.progress.advance(1);
        }
        self.positions.insert(partition, fetched.next_offset);
        Ok(())
    }

    /// After OFFSET_OUT_OF_RANGE: the log start if the position fell
    /// behind it (retention), else the end of the log.
    async fn reset(&mut self, client: &mut Client, partition: i32) -> Result<()> {
        let position = self.positions[&partition];
        let start = client
            .list_offsets(
                &self.topic,
                &[(partition, EARLIEST_TIMESTAMP)],
                self.isolation,
            )
            .await?[&partition];
        let end = client
            .list_offsets(
                &self.topic,
                &[(partition, LATEST_TIMESTAMP)],
                self.isolation,
            )
            .await?[&partition];
        let new = if position < start { start } else { end };
        eprintln!(
            "partition {partition} of '{}': offset {position} is out of range [{start}, {end}]; continuing from {new}",
            self.topic.name
        );
        self.positions.insert(partition, new);
        Ok(())
    }
}

/// Treats a closed stdout (EPIPE) as a request to stop, anything else as an error.
fn closed_output(flag: &mut bool) -> impl FnOnce(std::io::Error) -> Result<()> + '_ {
    move |error| {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            *flag = true;
            Ok(())
        } else {
            Err(error).context("writing to stdout")
        }
    }
}

/// Sets `stop` on the first SIGINT or SIGTERM; a second one exits at once.
fn spawn_signal_listener(stop: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            return;
        };
        for _ in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("interrupted again: exiting without committing");
                std::process::exit(130);
            }
        }
    })
}

/// Runs `sluice consume`.
pub(crate) async fn run(args: ConsumeArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let signals = spawn_signal_listener(stop.clone());
    let result = consume(&args, &stop).await;
    signals.abort();
    let _ = signals.await;
    result
}

/// A bar towards `-n`'s count, when the records do not go to the
/// terminal themselves (they are the progress there) and are text.
fn count_progress(args: &ConsumeArgs) -> super::progress::Progress {
    use std::io::IsTerminal;
    match args.count {
        Some(count) if args.format == OutputFormat::Text && !std::io::stdout().is_terminal() => {
            let message = format!("reading '{}'", args.topic);
            super::progress::Progress::records(args.quiet, Some(count), &message)
        }
        _ => super::progress::Progress::hidden(),
    }
}

async fn consume(args: &ConsumeArgs, stop: &AtomicBool) -> Result<()> {
    let mut client = args.connect.client().await?;
    let topic = client.topic(&args.topic).await?;
    let mut reader = Reader {
        topic,
        positions: BTreeMap::new(),
        ends: None,
        isolation: args.isolation,
        remaining: args.count,
        progress: count_progress(args),
        printer: Printer {
            format: args.format,
            out: BufWriter::new(std::io::stdout()),
        },
        output_closed: false,
    };
    let result = match &args.group {
        None => consume_alone(&mut client, args, stop, &mut reader).await,
        Some(group) => consume_in_group(&mut client, args, group, stop, &mut reader).await,
    };
    let flushed = reader.printer.out.flush();
    result?;
    flushed.or_else(closed_output(&mut reader.output_closed))
}

async fn consume_alone(
    client: &mut Client,
    args: &ConsumeArgs,
    stop: &AtomicBool,
    reader: &mut Reader,
) -> Result<()> {
    let partitions: Vec<i32> = match args.partition {
        Some(partition) => vec![reader.topic.partition(partition)?.partition],
        None => reader
            .topic
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect(),
    };
    let positions = resolve_positions(
        client,
        &reader.topic,
        &partitions,
        args.from,
        args.isolation,
    )
    .await?;
    reader.assign(client, positions, args.exit_at_end).await?;
    while !stop.load(Ordering::SeqCst) && !reader.finished() {
        reader.fetch_round(client).await?;
    }
    Ok(())
}

async fn consume_in_group(
    client: &mut Client,
    args: &ConsumeArgs,
    group: &str,
    stop: &AtomicBool,
    reader: &mut Reader,
) -> Result<()> {
    let mut member = Member::join(client, group, &args.topic).await?;
    let result = read_as_member(client, args, stop, reader, &mut member).await;
    // Whatever happened, hand back what was printed and leave the group.
    let committed = member.commit_changed(&reader.offsets()).await;
    let left = member.leave().await;
    result.and(committed).and(left)
}

async fn read_as_member(
    client: &mut Client,
    args: &ConsumeArgs,
    stop: &AtomicBool,
    reader: &mut Reader,
    member: &mut Member,
) -> Result<()> {
    let positions = member
        .start_positions(client, &reader.topic, args.from, args.isolation)
        .await?;
    reader.assign(client, positions, args.exit_at_end).await?;
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::SeqCst) && !reader.finished() {
        if member.must_rejoin() {
            if let Err(error) = member.commit_changed(&reader.offsets()).await {
                eprintln!("committing before the rebalance: {error:#}");
            }
            member.rejoin(client).await?;
            let positions = member
                .start_positions(client, &reader.topic, args.from, args.isolation)
                .await?;
            reader.assign(client, positions, args.exit_at_end).await?;
        }
        if last_commit.elapsed() >= COMMIT_INTERVAL {
            // A commit refused mid-rebalance (REBALANCE_IN_PROGRESS,
            // ILLEGAL_GENERATION) is retried after the rejoin; a broken
            // coordinator makes the rejoin fail with the real error.
            if let Err(error) = member.commit_changed(&reader.offsets()).await {
                eprintln!("commit failed, rejoining the group: {error:#}");
                member.request_rejoin();
            }
            last_commit = Instant::now();
        }
        if reader.positions.is_empty() {
            // Nothing assigned (more members than partitions): wait for a rebalance.
            tokio::time::sleep(RETRY_BACKOFF).await;
            continue;
        }
        reader.fetch_round(client).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::TimestampType;

    #[test]
    fn json_lines_have_a_fixed_field_order_and_lossy_text() {
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 11,
            sequence: 10,
            timestamp: 1_700_000_000_011,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v11")),
            headers: [(crate::client::text("h"), Some(Bytes::from_static(b"\xffv")))]
                .into_iter()
                .collect(),
        };
        assert_eq!(
            json_line("t", 3, &record),
            "{\"topic\":\"t\",\"partition\":3,\"offset\":11,\"timestamp\":1700000000011,\
             \"key\":\"k\",\"value\":\"v11\",\"headers\":{\"h\":\"\u{fffd}v\"}}"
        );
    }
}
