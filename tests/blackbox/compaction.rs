//! Compaction's memory is bounded by `log.compaction_memory_bytes_max`, not
//! by the partition's size: a broker with a 1 MiB budget compacts a topic of
//! 200 000 unique keys (about 50 MiB of records, many times what the budget
//! holds) without its peak RSS growing with the data, and keeps the latest
//! value of every key.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{CreateTopicsRequest, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use sluice::log::batch::build;

use crate::harness::Broker;
use crate::kafka::KafkaClient;

const TOPIC: &str = "compacted";
const KEYS: usize = 200_000;
const KEYS_PER_BATCH: usize = 2_000;
/// Keys written a second time at the end, so that compaction has something
/// to remove and says so.
const KEYS_REWRITTEN: usize = 1_000;
const VALUE_BYTES: usize = 224;
const TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// How much the broker's peak RSS may grow from its ready line to the end
/// of compaction. The data is about 50 MiB; the budget 1 MiB; the rest is
/// produce requests, one batch at a time and the allocator's slack.
const PEAK_GROWTH_BYTES_MAX: u64 = 32 << 20;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn key(index: usize) -> Vec<u8> {
    format!("key-{index:028}").into_bytes()
}

fn value(index: usize, generation: u32) -> Vec<u8> {
    let mut value = format!("value-{index}-{generation}-").into_bytes();
    value.resize(VALUE_BYTES, b'.');
    value
}

fn produce(client: &mut KafkaClient, keys: std::ops::Range<usize>, generation: u32) {
    let entries: Vec<build::Entry> = keys
        .map(|index| {
            (
                Some(key(index)),
                Some(value(index, generation)),
                TIMESTAMP_MS,
            )
        })
        .collect();
    let records = build::batch(&entries, Compression::None).freeze();
    assert_eq!(client.produce(TOPIC, 0, records), 0, "produce");
}

/// Every record of the partition: key → (value, count of records with it).
fn consume_all(client: &mut KafkaClient) -> HashMap<Bytes, (Bytes, usize)> {
    let mut latest = HashMap::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(4 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(text(TOPIC)))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(4 << 20)])]);
        let response = client.call(request, 12);
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "fetch at {offset}");
        if offset >= partition.high_watermark {
            return latest;
        }
        let mut records = partition.records.clone().expect("records");
        let sets = RecordBatchDecoder::decode_all(&mut records).expect("batches decode");
        for record in sets.into_iter().flat_map(|set| set.records) {
            offset = offset.max(record.offset + 1);
            let entry = latest
                .entry(record.key.expect("keyed"))
                .or_insert((Bytes::new(), 0));
            *entry = (record.value.expect("no tombstones"), entry.1 + 1);
        }
    }
}

#[test]
fn compaction_memory_is_bounded_by_the_budget_not_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_config(
        dir.path(),
        "[log]\nretention_check_interval_ms = 200\ncompaction_memory_bytes_max = 1048576\n",
    );
    let mut client = KafkaClient::connect(broker.kafka);
    let (code, message) = client.create_topic(
        TOPIC,
        1,
        &[("cleanup.policy", "compact"), ("segment.bytes", "4194304")],
    );
    assert_eq!(code, 0, "create topic: {message:?}");
    let baseline = broker.peak_rss_bytes();

    for start in (0..KEYS).step_by(KEYS_PER_BATCH) {
        produce(&mut client, start..start + KEYS_PER_BATCH, 1);
    }
    produce(&mut client, 0..KEYS_REWRITTEN, 2);
    // Compaction removed the first generation of the rewritten keys.
    let removed = format!("records_removed={KEYS_REWRITTEN}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|line: &String| line.contains("compacted") && line.contains(&removed))
    {
        assert!(Instant::now() < deadline, "no compaction: {lines:#?}");
        std::thread::sleep(Duration::from_millis(100));
        lines.extend(broker.stderr_lines());
    }
    let growth = broker.peak_rss_bytes().saturating_sub(baseline);
    // The keys did not fit the budget: the run took several passes.
    let compacted = lines
        .iter()
        .find(|line| line.contains("compacted") && line.contains(&removed))
        .expect("the compaction line");
    let passes: usize = compacted
        .split_whitespace()
        .find_map(|field| field.strip_prefix("passes="))
        .and_then(|passes| passes.parse().ok())
        .unwrap_or_else(|| panic!("no passes in {compacted:?}"));
    assert!(passes > 1, "{compacted}");
    eprintln!("peak RSS growth {} KiB; {compacted}", growth >> 10);
    assert!(
        growth < PEAK_GROWTH_BYTES_MAX,
        "peak RSS grew by {} MiB from the ready line (baseline {} MiB)",
        growth >> 20,
        baseline >> 20
    );

    let latest = consume_all(&mut client);
    assert_eq!(latest.len(), KEYS);
    for index in 0..KEYS {
        let generation = if index < KEYS_REWRITTEN { 2 } else { 1 };
        let (stored, count) = &latest[&Bytes::from(key(index))];
        assert_eq!(stored[..], value(index, generation)[..], "key {index}");
        assert_eq!(*count, 1, "key {index}: one record left");
    }
}

/// A record kept from a batch that compaction rewrites keeps every header,
/// names repeating, in order: the first batch holds a superseded record and
/// a kept one with headers `trace=a`, `trace=b`, `x=1`; after compaction
/// removes the superseded record, kcat still reads all three.
#[test]
fn compaction_keeps_headers_of_the_same_name_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[log]\nretention_check_interval_ms = 100\n").unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let mut client = KafkaClient::connect(broker.kafka);
    create_compacted(&mut client, "headers", "100");
    let headers: &[(&str, Option<&[u8]>)] = &[
        ("trace", Some(b"a")),
        ("trace", Some(b"b")),
        ("x", Some(b"1")),
    ];
    // One round per codec, with its own keys: `aN` is superseded within
    // the first batch's segment, `bN` kept from it.
    for (round, compression) in [Compression::None, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let first = build::headed(
            &[
                (Some(a.as_bytes()), Some(b"old"), &[]),
                (Some(b.as_bytes()), Some(b"kept"), headers),
            ],
            TIMESTAMP_MS,
            compression,
        );
        produce_batch(&mut client, "headers", first.freeze());
        let second = build::headed(
            &[(Some(a.as_bytes()), Some(b"new"), &[])],
            TIMESTAMP_MS,
            compression,
        );
        produce_batch(&mut client, "headers", second.freeze());
    }
    // The `old` records go (offsets 0 and 3) once their batches, in closed
    // segments (each batch rolls one), are rewritten.
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let lines = kcat_lines(broker.kafka, "headers");
        if lines.len() == 4 && lines.iter().all(|line| !line.contains("old")) {
            break lines;
        }
        assert!(Instant::now() < deadline, "not compacted: {lines:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        lines,
        [
            "1 b0 kept trace=a,trace=b,x=1",
            "2 a0 new",
            "4 b1 kept trace=a,trace=b,x=1",
            "5 a1 new",
        ]
        .map(str::to_string)
    );
}

fn create_compacted(client: &mut KafkaClient, name: &str, segment_bytes: &str) {
    let topic = CreatableTopic::default()
        .with_name(TopicName(text(name)))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(
            [
                ("cleanup.policy", "compact"),
                ("segment.bytes", segment_bytes),
            ]
            .iter()
            .map(|(name, value)| {
                CreatableTopicConfig::default()
                    .with_name(text(name))
                    .with_value(Some(text(value)))
            })
            .collect(),
        );
    let created = client.call(
        CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(5_000),
        7,
    );
    assert_eq!(created.topics[0].error_code, 0, "create topic");
}

fn produce_batch(client: &mut KafkaClient, topic: &str, records: Bytes) {
    assert_eq!(client.produce(topic, 0, records), 0, "produce");
}

/// `offset key value headers` of every record of partition 0, read by kcat.
fn kcat_lines(kafka: std::net::SocketAddr, topic: &str) -> Vec<String> {
    let output = std::process::Command::new("kcat")
        .args(["-C", "-q", "-e", "-b", &kafka.to_string(), "-t", topic])
        .args(["-p", "0", "-o", "beginning", "-f", "%o %k %s %h\\n"])
        .output()
        .expect("kcat");
    assert!(
        output.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim_end().to_string())
        .collect()
}

/// A compacted topic refuses records without a key (INVALID_RECORD), in
/// every codec: the log checks keys in the same walk that validates the
/// records, so a compressed batch is decompressed once.
#[test]
fn a_compacted_topic_refuses_records_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    let (code, message) = client.create_topic("keyed", 1, &[("cleanup.policy", "compact")]);
    assert_eq!(code, 0, "create topic: {message:?}");
    for compression in [Compression::None, Compression::Zstd] {
        let unkeyed = build::batch(&[(None, Some(b"v".to_vec()), TIMESTAMP_MS)], compression);
        assert_eq!(
            client.produce("keyed", 0, unkeyed.freeze()),
            87,
            "{compression:?}"
        );
        let keyed = build::batch(
            &[(Some(b"k".to_vec()), Some(b"v".to_vec()), TIMESTAMP_MS)],
            compression,
        );
        assert_eq!(
            client.produce("keyed", 0, keyed.freeze()),
            0,
            "{compression:?}"
        );
    }
}
