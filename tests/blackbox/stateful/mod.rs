//! Stateful processors end to end: real 0.2 plugins with keyed state in
//! RocksDB on a real broker, inputs with chosen timestamps, outputs read
//! with kcat (read_committed), state read through the query API, and the
//! results checked against a reference computed from the input log
//! itself.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::records::Compression;
use serde_json::Value;
use sluice::log::batch::build;

use crate::kafka::KafkaClient;
use crate::processors::{Consumed, Pipeline};

mod bounds;
mod chain;
mod changelog;
mod clients;
mod crash;
mod enrich;
mod inputs;
pub(crate) mod lifecycle;
mod pacing;
mod policies;
mod projection;
mod repartition;
mod windows;

/// One input record: (key, timestamp).
pub(crate) type Input = (String, i64);

/// Produces `records` to `partition` of `topic` as one batch per 500, with
/// their own timestamps (acks=all).
pub(crate) fn produce_at(pipeline: &Pipeline, topic: &str, partition: i32, records: &[Input]) {
    produce_to(pipeline.broker.kafka, topic, partition, records, |_| {});
}

/// [`produce_at`] to the broker at `kafka`, calling `acked` with the
/// number of records of each acknowledged request.
pub(crate) fn produce_to(
    kafka: std::net::SocketAddr,
    topic: &str,
    partition: i32,
    records: &[Input],
    mut acked: impl FnMut(usize),
) {
    let mut client = KafkaClient::connect(kafka);
    for chunk in records.chunks(500) {
        let entries: Vec<build::Entry> = chunk
            .iter()
            .map(|(key, timestamp)| {
                (
                    Some(key.as_bytes().to_vec()),
                    Some(format!(r#"{{"user":"{key}","n":1}}"#).into_bytes()),
                    *timestamp,
                )
            })
            .collect();
        let batch = build::batch(&entries, Compression::None).freeze();
        let code = client.produce(topic, partition, batch);
        assert_eq!(code, 0, "produce to {topic}/{partition}");
        acked(chunk.len());
    }
}

/// The input log of `topic` as it is (read_committed, every partition):
/// (key, timestamp) per partition in offset order.
pub(crate) fn input_log(pipeline: &Pipeline, topic: &str) -> BTreeMap<i64, Vec<Input>> {
    let output = std::process::Command::new("kcat")
        .args([
            "-C",
            "-q",
            "-e",
            "-b",
            &pipeline.broker.kafka.to_string(),
            "-t",
            topic,
        ])
        .args(["-f", "%p\\t%k\\t%T\\n"])
        .output()
        .expect("kcat");
    assert!(output.status.success());
    let mut log: BTreeMap<i64, Vec<(i64, Input)>> = BTreeMap::new();
    // kcat prints partitions interleaved but each in offset order.
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let partition: i64 = fields[0].parse().unwrap();
        let entry = log.entry(partition).or_default();
        let order = entry.len() as i64;
        entry.push((order, (fields[1].to_string(), fields[2].parse().unwrap())));
    }
    log.into_iter()
        .map(|(p, records)| (p, records.into_iter().map(|(_, r)| r).collect()))
        .collect()
}

/// What a windowed count (tumbling `size_ms`, `grace_ms`, emit final)
/// must produce from each partition's input, Kafka Streams' rules: stream
/// time is the largest timestamp so far (this record included); a record
/// whose window ends at or before stream time minus grace is late.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct WindowOracle {
    /// Emitted (closed) windows: (key, start) → count.
    pub(crate) closed: BTreeMap<(String, i64), u64>,
    /// Windows still open: (key, start) → count.
    pub(crate) open: BTreeMap<(String, i64), u64>,
    /// Open window starts, counted per partition: the SDK's timers (one
    /// closes every key's window of a start).
    pub(crate) open_starts: u64,
    pub(crate) late: u64,
}

impl WindowOracle {
    pub(crate) fn compute(log: &BTreeMap<i64, Vec<Input>>, size_ms: i64, grace_ms: i64) -> Self {
        let mut oracle = Self::default();
        for records in log.values() {
            let mut stream_time = i64::MIN;
            let mut counts: BTreeMap<(String, i64), u64> = BTreeMap::new();
            for (key, timestamp) in records {
                stream_time = stream_time.max(*timestamp);
                let start = timestamp.div_euclid(size_ms) * size_ms;
                if start + size_ms + grace_ms <= stream_time {
                    oracle.late += 1;
                    continue;
                }
                *counts.entry((key.clone(), start)).or_default() += 1;
            }
            let mut open_starts = std::collections::BTreeSet::new();
            for ((key, start), count) in counts {
                let target = if start + size_ms + grace_ms <= stream_time {
                    &mut oracle.closed
                } else {
                    open_starts.insert(start);
                    &mut oracle.open
                };
                assert!(
                    target.insert((key, start), count).is_none(),
                    "a key in two partitions"
                );
            }
            oracle.open_starts += open_starts.len() as u64;
        }
        oracle
    }
}

/// The windowed-count plugin's outputs: (key, start) → counts emitted
/// (more than one is a duplicate).
pub(crate) fn emitted_windows(records: &[Consumed]) -> BTreeMap<(String, i64), Vec<u64>> {
    let mut emitted: BTreeMap<(String, i64), Vec<u64>> = BTreeMap::new();
    for record in records {
        let value: Value = serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
        emitted
            .entry((
                value["key"].as_str().unwrap().to_string(),
                value["window_start"].as_i64().unwrap(),
            ))
            .or_default()
            .push(value["count"].as_u64().unwrap());
    }
    emitted
}

/// Deploys the `windowed-count` plugin as `name` from `input` to `output`:
/// store `counts`, tumbling windows of `size_ms`, emitted once final, with
/// `extra` deploy arguments.
pub(crate) fn deploy_window_count(
    pipeline: &Pipeline,
    name: &str,
    io: (&str, &str),
    size_ms: i64,
    extra: &[&str],
) {
    deploy_window_count_emitting(pipeline, name, io, size_ms, "final", extra);
}

/// [`deploy_window_count`] with `emit` (`final` or `update`).
pub(crate) fn deploy_window_count_emitting(
    pipeline: &Pipeline,
    name: &str,
    (input, output): (&str, &str),
    size_ms: i64,
    emit: &str,
    extra: &[&str],
) {
    let size = format!("size_ms={size_ms}");
    let emit = format!("emit={emit}");
    let mut args = vec![
        "--input", input, "--output", output, "--store", "counts", "--config", &size, "--config",
        &emit,
    ];
    args.extend_from_slice(extra);
    pipeline.deploy(name, "windowed-count", &args);
}

/// GET on the admin API, as JSON, with the status code.
pub(crate) fn get_json(pipeline: &Pipeline, path: &str) -> (u16, Value) {
    let (code, body) = pipeline.broker.http_get(path);
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Polls a query until it answers `code` with `text` in its body (a
/// partition that begins to restore, say); returns that answer.
pub(crate) fn wait_answer(pipeline: &Pipeline, path: &str, code: u16, text: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (got, answer) = get_json(pipeline, path);
        if got == code && answer.to_string().contains(text) {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {code} with {text:?} from {path}; last answer {got}: {answer:#}"
        );
        pause(20);
    }
}

/// Waits until the processor has committed every one of the `records`
/// input records (offsets are record counts: the inputs are not
/// transactional), so its outputs are committed too.
pub(crate) fn wait_settled(pipeline: &Pipeline, name: &str, records: i64) -> Value {
    // Long enough for a backlog of a few hundred thousand records on a
    // loaded 2-core machine (debug build).
    let within = std::time::Duration::from_secs(300);
    pipeline.wait_for_within(
        name,
        &format!("{records} input records committed"),
        within,
        |s| {
            let committed: i64 = s["partitions"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| p["committed_offset"].as_i64().unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0);
            committed >= records && s["lag"] == 0
        },
    )
}

/// A stateful figure of a processor's status (`keys`, `timers_pending`),
/// all partitions together.
pub(crate) fn stateful_total(status: &Value, figure: &str) -> u64 {
    status["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            p["stateful"][figure]
                .as_u64()
                .unwrap_or_else(|| panic!("{figure} in {p:#}"))
        })
        .sum()
}

/// A deterministic pseudo-random sequence (xorshift), so failures replay.
pub(crate) struct Random(u64);

impl Random {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// Sleeps a little: between polls of something with no event to wait on.
pub(crate) fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}
