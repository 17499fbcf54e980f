//! `sluice consume`: print a topic's records, like `kcat -C`.
//!
//! Alone it reads the chosen partitions from `--from`. With `--group` it
//! is a real member of a classic consumer group: JoinGroup with protocol
//! type "consumer" and the "range" assignor (as leader it computes the
//! assignment itself), SyncGroup, heartbeats on a background task, reads
//! from the committed offsets, commits every [`COMMIT_INTERVAL`] and on
//! exit, and leaves the group on exit. Records are read uncommitted
//! (isolation level 0) and control records are skipped.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, FetchRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::client::{
    check, text, topic_name, Client, Connection, TopicInfo, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
    REQUEST_TIMEOUT,
};
use super::group::{self, assignment, decode_assignment, decode_versioned, range_assign, Offsets};
use super::{ConnectArgs, OutputFormat};

/// How long the broker may hold a fetch waiting for records; also how
/// quickly a signal or a rebalance is noticed.
const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// Bytes per fetch response, and per partition in it.
const FETCH_BYTES_MAX: i32 = 8 * 1024 * 1024;
const FETCH_PARTITION_BYTES_MAX: i32 = 1024 * 1024;
/// Pause before retrying after a retriable error or while nothing is assigned.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Session timeout asked for: how long the coordinator keeps a member
/// that stopped heartbeating (one killed with SIGKILL, say).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the coordinator waits for every member to rejoin in a rebalance.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(30);
/// A third of the session timeout, as Kafka's consumer does.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// How often positions are committed while consuming (auto.commit.interval.ms).
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// JoinGroup/SyncGroup round trips before giving up on joining.
const JOIN_ATTEMPTS_MAX: usize = 20;

/// The only assignor offered.
const ASSIGNOR: &str = "range";

/// Batch header bytes up to and including `lastOffsetDelta`.
const BATCH_HEADER_PREFIX_BYTES: usize = 27;

/// `sluice consume` options.
#[derive(Debug, Args)]
#[command(after_help = "Output:\n  \
    text: each record's value on its own line (raw bytes, like kcat).\n  \
    json: one object per line: {\"topic\",\"partition\",\"offset\",\"timestamp\",\"key\",\"value\",\"headers\"};\n        \
    key, value and header values are UTF-8 text (invalid bytes become U+FFFD), null when absent.\n\n\
    Examples:\n  \
    sluice consume orders -e                         # everything there is now, then exit\n  \
    sluice consume orders --from latest              # only new records, until Ctrl-C\n  \
    sluice consume orders --from @1700000000000 -n 10 --format json\n  \
    sluice consume orders --from 2026-11-23T10:00:00Z --partition 2\n  \
    sluice consume orders --group billing            # resumes where the group left off")]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Consume as a member of this consumer group: partitions are assigned
    /// by the group (range assignor), reading resumes from the group's
    /// committed offsets, and positions are committed every 5 s and on exit.
    #[arg(short, long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Where to start (with --group: only for partitions without a
    /// committed offset): earliest, latest, an OFFSET, or a time as
    /// `@MILLIS` since the epoch or RFC 3339 (2026-11-23T10:00:00Z),
    /// meaning the first record at or after it.
    #[arg(short, long, value_name = "POSITION", default_value = "earliest",
          value_parser = StartPosition::parse)]
    pub from: StartPosition,
    /// Exit after printing N records [default: run until Ctrl-C].
    #[arg(short = 'n', long = "num", value_name = "N")]
    pub count: Option<u64>,
    /// Read only this partition [default: all].
    #[arg(short, long, value_name = "N", conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Exit once every partition reached the high watermark it had when
    /// reading began (like kcat -e).
    #[arg(short, long)]
    pub exit_at_end: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// This offset, clamped to [log start offset, high watermark].
    Offset(i64),
    /// The first record with a timestamp at or after this (ms since epoch).
    Timestamp(i64),
}

impl StartPosition {
    /// `earliest`, `latest`, `OFFSET`, `@MILLIS` or an RFC 3339 time.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        match raw {
            "earliest" | "beginning" => return Ok(Self::Earliest),
            "latest" | "end" => return Ok(Self::Latest),
            _ => {}
        }
        if let Ok(offset) = raw.parse::<i64>() {
            return match offset >= 0 {
                true => Ok(Self::Offset(offset)),
                false => Err(format!("offset {offset} is negative")),
            };
        }
        if let Some(millis) = raw.strip_prefix('@') {
            return millis
                .parse::<i64>()
                .ok()
                .filter(|ms| *ms >= 0)
                .map(Self::Timestamp)
                .ok_or_else(|| format!("{raw:?}: expected @MILLISECONDS since the epoch"));
        }
        parse_rfc3339(raw).map(Self::Timestamp).ok_or_else(|| {
            format!(
                "{raw:?}: expected earliest, latest, an offset, @MILLISECONDS or an RFC 3339 \
                 time such as 2026-11-23T10:00:00Z"
            )
        })
    }
}

/// Milliseconds since the epoch of an RFC 3339 time
/// (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`).
fn parse_rfc3339(raw: &str) -> Option<i64> {
    let bytes = raw.as_bytes();
    let number = |from: usize, to: usize| -> Option<i64> {
        let digits = raw.get(from..to)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if bytes.len() < 20 || separators.iter().any(|(at, c)| bytes[*at] != *c) {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &raw[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (hours, minutes) = (number_in(rest, 1, 3)?, number_in(rest, 4, 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 60 + minutes)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

fn number_in(raw: &str, from: usize, to: usize) -> Option<i64> {
    let digits = raw.get(from..to)?;
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())?
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Start offsets of `partitions` of `topic` for `from`.
pub(crate) async fn resolve_positions(
    client: &mut Client,
    topic: &TopicInfo,
    partitions: &[i32],
    from: StartPosition,
) -> Result<BTreeMap<i32, i64>> {
    let query = |timestamp: i64| {
        partitions
            .iter()
            .map(|p| (*p, timestamp))
            .collect::<Vec<_>>()
    };
    match from {
        StartPosition::Earliest => client.list_offsets(topic, &query(EARLIEST_TIMESTAMP)).await,
        StartPosition::Latest => client.list_offsets(topic, &query(LATEST_TIMESTAMP)).await,
        StartPosition::Offset(offset) => {
            let starts = client
                .list_offsets(topic, &query(EARLIEST_TIMESTAMP))
                .await?;
            let ends = client.list_offsets(topic, &query(LATEST_TIMESTAMP)).await?;
            Ok(starts
                .into_iter()
                .map(|(p, start)| (p, offset.clamp(start, ends[&p].max(start))))
                .collect())
        }
        StartPosition::Timestamp(ms) => {
            let found = client.list_offsets(topic, &query(ms)).await?;
            let ends = client.list_offsets(topic, &query(LATEST_TIMESTAMP)).await?;
            // -1: no record that new yet; start at the end.
            Ok(found
                .into_iter()
                .map(|(p, offset)| (p, if offset < 0 { ends[&p] } else { offset }))
                .collect())
        }
    }
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

/// Decodes the complete v2 record batches of a fetch response: the
/// records at or after `from` (control records dropped) and the offset
/// after the last batch, which moves past batches with nothing to show.
fn decode_batches(mut raw: Bytes, from: i64) -> Result<(Vec<Record>, i64)> {
    let mut records = Vec::new();
    let mut next = from;
    let mut complete = 0;
    let had_bytes = !raw.is_empty();
    while raw.len() >= 12 {
        let base_offset = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(raw[8..12].try_into().expect("4 bytes"));
        let size = usize::try_from(length).context("negative record batch length")? + 12;
        if raw.len() < size {
            break; // The broker cut the last batch short at the size limit.
        }
        let mut batch = raw.split_to(size);
        if batch.len() < BATCH_HEADER_PREFIX_BYTES {
            bail!("record batch at offset {base_offset} is only {size} bytes");
        }
        let magic = batch[16];
        if magic != 2 {
            bail!("record batch at offset {base_offset} has format v{magic}; only v2 (Kafka 0.11+) is read");
        }
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().expect("4 bytes"));
        let set = RecordBatchDecoder::decode(&mut batch)
            .with_context(|| format!("decoding the record batch at offset {base_offset}"))?;
        records.extend(
            set.records
                .into_iter()
                .filter(|r| !r.control && r.offset >= from),
        );
        next = next.max(base_offset + i64::from(last_offset_delta) + 1);
        complete += 1;
    }
    if had_bytes && complete == 0 {
        bail!("the record batch at offset {from} is larger than the fetch size ({FETCH_PARTITION_BYTES_MAX} bytes)");
    }
    Ok((records, next))
}

/// Reading state: positions of the assigned partitions and when to stop.
struct Reader {
    topic: TopicInfo,
    /// Next offset to print, per assigned partition.
    positions: BTreeMap<i32, i64>,
    /// With --exit-at-end: each partition's high watermark when reading began.
    ends: Option<BTreeMap<i32, i64>>,
    /// Records still to print with -n.
    remaining: Option<u64>,
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
            self.ends = Some(client.list_offsets(&self.topic, &query).await?);
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
                .with_isolation_level(0)
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
                    None => self.print(partition, answer.records.unwrap_or_default())?,
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

    /// Prints the records of one partition's fetch answer from its position.
    fn print(&mut self, partition: i32, raw: Bytes) -> Result<()> {
        let Some(position) = self.positions.get(&partition).copied() else {
            return Ok(());
        };
        let (records, next) = decode_batches(raw, position)
            .with_context(|| format!("partition {partition} of '{}'", self.topic.name))?;
        for record in &records {
            if self.remaining == Some(0) {
                return Ok(());
            }
            if let Err(error) = self.printer.record(&self.topic.name, partition, record) {
                return closed_output(&mut self.output_closed)(error);
            }
            self.positions.insert(partition, record.offset + 1);
            self.remaining = self.remaining.map(|n| n - 1);
        }
        self.positions.insert(partition, next);
        Ok(())
    }

    /// After OFFSET_OUT_OF_RANGE: the log start if the position fell
    /// behind it (retention), else the high watermark.
    async fn reset(&mut self, client: &mut Client, partition: i32) -> Result<()> {
        let position = self.positions[&partition];
        let start = client
            .list_offsets(&self.topic, &[(partition, EARLIEST_TIMESTAMP)])
            .await?[&partition];
        let end = client
            .list_offsets(&self.topic, &[(partition, LATEST_TIMESTAMP)])
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
pub async fn run(args: ConsumeArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let signals = spawn_signal_listener(stop.clone());
    let result = consume(&args, &stop).await;
    signals.abort();
    let _ = signals.await;
    result
}

async fn consume(args: &ConsumeArgs, stop: &AtomicBool) -> Result<()> {
    let mut client = Client::connect(&args.connect.brokers).await?;
    let topic = client.topic(&args.topic).await?;
    let mut reader = Reader {
        topic,
        positions: BTreeMap::new(),
        ends: None,
        remaining: args.count,
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
    let positions = resolve_positions(client, &reader.topic, &partitions, args.from).await?;
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
        .start_positions(client, &reader.topic, args.from)
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
                .start_positions(client, &reader.topic, args.from)
                .await?;
            reader.assign(client, positions, args.exit_at_end).await?;
        }
        if last_commit.elapsed() >= COMMIT_INTERVAL {
            // A commit refused mid-rebalance (REBALANCE_IN_PROGRESS,
            // ILLEGAL_GENERATION) is retried after the rejoin; a broken
            // coordinator makes the rejoin fail with the real error.
            if let Err(error) = member.commit_changed(&reader.offsets()).await {
                eprintln!("commit failed, rejoining the group: {error:#}");
                member.rejoin.store(true, Ordering::SeqCst);
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

/// Stops the heartbeat task.
struct Heartbeat {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// This process as a member of a classic consumer group.
struct Member {
    group: String,
    topic: String,
    /// Its own connection: the leader connections may be mid-fetch.
    coordinator: Connection,
    member_id: String,
    generation: i32,
    /// Partitions of `topic` assigned in this generation, ascending.
    partitions: Vec<i32>,
    /// Set by the heartbeat task when the coordinator wants a rejoin.
    rejoin: Arc<AtomicBool>,
    heartbeat: Option<Heartbeat>,
    /// What was last committed, so unchanged positions are not re-sent.
    committed: Offsets,
}

impl Member {
    /// Finds the coordinator and joins `group` subscribed to `topic`.
    async fn join(client: &mut Client, group: &str, topic: &str) -> Result<Self> {
        let coordinator = client.coordinator(group).await?;
        let mut member = Self {
            group: group.to_string(),
            topic: topic.to_string(),
            coordinator: Connection::open(&coordinator.address).await?,
            member_id: String::new(),
            generation: -1,
            partitions: Vec::new(),
            rejoin: Arc::new(AtomicBool::new(false)),
            heartbeat: None,
            committed: Offsets::new(),
        };
        member.rejoin(client).await?;
        Ok(member)
    }

    fn must_rejoin(&self) -> bool {
        self.rejoin.load(Ordering::SeqCst)
    }

    /// JoinGroup + SyncGroup until this member has an assignment.
    async fn rejoin(&mut self, client: &mut Client) -> Result<()> {
        self.stop_heartbeat().await;
        self.committed.clear();
        for _ in 0..JOIN_ATTEMPTS_MAX {
            let joined = self.send_join().await?;
            match ResponseError::try_from_code(joined.error_code) {
                None => {}
                Some(ResponseError::MemberIdRequired) => {
                    self.member_id = joined.member_id.to_string();
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Some(error) if error.is_retriable() => {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
                Some(_) => check(joined.error_code, None, || {
                    format!("JoinGroup '{}'", self.group)
                })?,
            }
            self.member_id = joined.member_id.to_string();
            self.generation = joined.generation_id;
            if let Some(partitions) = self.sync(client, &joined).await? {
                self.partitions = partitions;
                self.rejoin.store(false, Ordering::SeqCst);
                self.start_heartbeat();
                return Ok(());
            }
        }
        bail!(
            "could not join group '{}' in {JOIN_ATTEMPTS_MAX} attempts",
            self.group
        )
    }

    async fn send_join(&mut self) -> Result<JoinGroupResponse> {
        let metadata = group::subscription(std::slice::from_ref(&self.topic))?;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(text(&self.group)))
            .with_session_timeout_ms(SESSION_TIMEOUT.as_millis() as i32)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT.as_millis() as i32)
            .with_member_id(text(&self.member_id))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text(ASSIGNOR))
                .with_metadata(metadata)]);
        // The coordinator holds JoinGroup until the whole group has joined.
        let deadline = REBALANCE_TIMEOUT + REQUEST_TIMEOUT;
        self.coordinator.call_within(request, deadline).await
    }

    /// SyncGroup (with the assignment, as leader); `None` means join again.
    async fn sync(
        &mut self,
        client: &mut Client,
        joined: &JoinGroupResponse,
    ) -> Result<Option<Vec<i32>>> {
        let assignments = if joined.leader == joined.member_id {
            self.assign(client, joined).await?
        } else {
            Vec::new()
        };
        let version = self.coordinator.version::<SyncGroupRequest>()?;
        let mut request = SyncGroupRequest::default()
            .with_group_id(GroupId(text(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.member_id))
            .with_assignments(assignments);
        if version >= 5 {
            request = request
                .with_protocol_type(Some(text("consumer")))
                .with_protocol_name(Some(text(ASSIGNOR)));
        }
        let synced = self
            .coordinator
            .call_within(request, REBALANCE_TIMEOUT + REQUEST_TIMEOUT)
            .await?;
        match ResponseError::try_from_code(synced.error_code) {
            None => {}
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                return Ok(None)
            }
            Some(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                return Ok(None);
            }
            Some(error) if error.is_retriable() => {
                tokio::time::sleep(RETRY_BACKOFF).await;
                return Ok(None);
            }
            Some(_) => check(synced.error_code, None, || {
                format!("SyncGroup '{}'", self.group)
            })?,
        }
        let mut assigned =
            decode_assignment(synced.assignment).context("reading the assignment")?;
        let mut partitions = assigned.remove(&self.topic).unwrap_or_default();
        partitions.sort_unstable();
        partitions.dedup();
        Ok(Some(partitions))
    }

    /// The leader's range assignment of every member's subscription.
    async fn assign(
        &self,
        client: &mut Client,
        joined: &JoinGroupResponse,
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subscriptions = BTreeMap::new();
        for member in &joined.members {
            let subscription: ConsumerProtocolSubscription =
                decode_versioned(member.metadata.clone()).with_context(|| {
                    format!("subscription of member {}", member.member_id.as_str())
                })?;
            let topics: Vec<String> = subscription.topics.iter().map(|t| t.to_string()).collect();
            subscriptions.insert(member.member_id.to_string(), topics);
        }
        let mut topics: Vec<String> = subscriptions.values().flatten().cloned().collect();
        topics.sort();
        topics.dedup();
        let metadata = client.metadata(Some(&topics)).await?;
        let counts: BTreeMap<String, i32> = metadata
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some((t.name.as_ref()?.to_string(), t.partitions.len() as i32)))
            .collect();
        range_assign(&subscriptions, &counts)
            .into_iter()
            .map(|(member_id, partitions)| {
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(text(member_id))
                    .with_assignment(assignment(&partitions)?))
            })
            .collect()
    }

    /// Committed offsets of the assigned partitions; `from` for the rest.
    async fn start_positions(
        &mut self,
        client: &mut Client,
        topic: &TopicInfo,
        from: StartPosition,
    ) -> Result<BTreeMap<i32, i64>> {
        if self.partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let asked = BTreeMap::from([(self.topic.clone(), self.partitions.clone())]);
        let committed =
            group::fetch_committed(&mut self.coordinator, &self.group, Some(&asked)).await?;
        let mut positions: BTreeMap<i32, i64> = committed
            .iter()
            .map(|((_, partition), offset)| (*partition, *offset))
            .collect();
        let missing: Vec<i32> = self
            .partitions
            .iter()
            .filter(|p| !positions.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            positions.extend(resolve_positions(client, topic, &missing, from).await?);
        }
        self.committed = committed;
        Ok(positions)
    }

    /// Commits `offsets` that differ from what was last committed.
    async fn commit_changed(&mut self, offsets: &Offsets) -> Result<()> {
        let changed: Offsets = offsets
            .iter()
            .filter(|(key, offset)| self.committed.get(*key) != Some(*offset))
            .map(|(key, offset)| (key.clone(), *offset))
            .collect();
        if changed.is_empty() || self.generation < 0 {
            return Ok(());
        }
        group::commit(
            &mut self.coordinator,
            &self.group,
            self.generation,
            &self.member_id,
            &changed,
        )
        .await?;
        self.committed.extend(changed);
        Ok(())
    }

    fn start_heartbeat(&mut self) {
        let (stop, mut stopped) = oneshot::channel();
        let address = self.coordinator.address().to_string();
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(text(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.member_id));
        let rejoin = self.rejoin.clone();
        let task = tokio::spawn(async move {
            let mut connection = match Connection::open(&address).await {
                Ok(connection) => connection,
                Err(error) => {
                    eprintln!("heartbeat: {error:#}");
                    rejoin.store(true, Ordering::SeqCst);
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
                }
                match connection.call(request.clone()).await {
                    Ok(response) if response.error_code == 0 => {}
                    Ok(response) => {
                        // REBALANCE_IN_PROGRESS, or fenced out: join again.
                        tracing::debug!(
                            error_code = response.error_code,
                            "heartbeat asks for a rejoin"
                        );
                        rejoin.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(error) => {
                        eprintln!("heartbeat: {error:#}");
                        rejoin.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
        self.heartbeat = Some(Heartbeat { stop, task });
    }

    async fn stop_heartbeat(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.stop.send(());
            let _ = heartbeat.task.await;
        }
    }

    /// LeaveGroup, so the partitions move to other members at once.
    async fn leave(mut self) -> Result<()> {
        self.stop_heartbeat().await;
        if self.member_id.is_empty() {
            return Ok(());
        }
        let version = self.coordinator.version::<LeaveGroupRequest>()?;
        let request = LeaveGroupRequest::default().with_group_id(GroupId(text(&self.group)));
        let request = if version >= 3 {
            let mut identity = MemberIdentity::default().with_member_id(text(&self.member_id));
            if version >= 5 {
                identity = identity.with_reason(Some(text("the consumer is closing")));
            }
            request.with_members(vec![identity])
        } else {
            request.with_member_id(text(&self.member_id))
        };
        let response = self.coordinator.call(request).await?;
        check(response.error_code, None, || {
            format!("LeaveGroup '{}'", self.group)
        })?;
        for member in &response.members {
            check(member.error_code, None, || {
                format!("LeaveGroup '{}'", self.group)
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    #[test]
    fn start_positions_parse() {
        assert_eq!(
            StartPosition::parse("earliest"),
            Ok(StartPosition::Earliest)
        );
        assert_eq!(StartPosition::parse("latest"), Ok(StartPosition::Latest));
        assert_eq!(StartPosition::parse("42"), Ok(StartPosition::Offset(42)));
        assert_eq!(
            StartPosition::parse("@1700000000000"),
            Ok(StartPosition::Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            StartPosition::parse("2023-11-14T22:13:20Z"),
            Ok(StartPosition::Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            StartPosition::parse("2023-11-14T23:13:20.5+01:00"),
            Ok(StartPosition::Timestamp(1_700_000_000_500))
        );
        assert_eq!(
            StartPosition::parse("1970-01-01T00:00:00Z"),
            Ok(StartPosition::Timestamp(0))
        );
        for bad in [
            "-1",
            "@x",
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:13:20",
            "soon",
        ] {
            assert!(StartPosition::parse(bad).is_err(), "{bad}");
        }
    }

    fn record(offset: i64, value: &str, control: bool) -> Record {
        Record {
            transactional: false,
            control,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32 - 1,
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from(value.to_string())),
            headers: [(text("h"), Some(Bytes::from_static(b"\xffv")))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn batches_decode_from_the_position_and_skip_control_records() {
        let mut raw = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::Lz4,
        };
        let first: Vec<Record> = (10..13)
            .map(|o| record(o, &format!("v{o}"), false))
            .collect();
        RecordBatchEncoder::encode(&mut raw, first.iter(), &options).unwrap();
        let marker = [record(13, "", true)];
        RecordBatchEncoder::encode(&mut raw, marker.iter(), &options).unwrap();
        let complete = raw.len();
        RecordBatchEncoder::encode(&mut raw, [record(14, "cut", false)].iter(), &options).unwrap();
        raw.truncate(complete + 20);
        let (records, next) = decode_batches(raw.freeze(), 11).unwrap();
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [11, 12]);
        assert_eq!(next, 14, "past the control batch, not into the cut one");
        let line = json_line("t", 3, &records[0]);
        assert_eq!(
            line,
            "{\"topic\":\"t\",\"partition\":3,\"offset\":11,\"timestamp\":1700000000011,\
             \"key\":\"k\",\"value\":\"v11\",\"headers\":{\"h\":\"\u{fffd}v\"}}"
        );
    }

    #[test]
    fn a_lone_partial_batch_is_an_error() {
        let mut raw = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut raw, [record(0, "v", false)].iter(), &options).unwrap();
        raw.truncate(raw.len() - 1);
        assert!(decode_batches(raw.freeze(), 0).is_err());
        assert_eq!(decode_batches(Bytes::new(), 5).unwrap().1, 5);
    }
}
