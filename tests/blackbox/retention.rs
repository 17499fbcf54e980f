//! Retention by time is not pinned by a record from the future: a segment
//! whose largest timestamp lies far ahead of the broker's clock ages from
//! when the broker last wrote to it, so one producer with a broken clock
//! cannot keep a topic's whole log forever.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sluice::log::batch::build;

use crate::harness::Broker;
use crate::kafka::KafkaClient;

const TOPIC: &str = "future";
/// 2500-01-01T00:00:00Z.
const YEAR_2500_MS: i64 = 16_725_225_600_000;
/// How long the test waits for retention, many times `retention.ms` plus
/// the check interval.
const RETENTION_WAIT: Duration = Duration::from_secs(30);

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn produce(client: &mut KafkaClient, timestamp_ms: i64) {
    let entries: Vec<build::Entry> = vec![(None, Some(vec![b'v'; 100]), timestamp_ms)];
    let records = build::batch(&entries, Compression::None).freeze();
    assert_eq!(client.produce(TOPIC, 0, records), 0, "produce");
}

/// The partition's log start offset (ListOffsets, earliest).
fn log_start_offset(client: &mut KafkaClient) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(text(TOPIC)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-2)])]);
    let response = client.call(request, 5);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0, "list offsets");
    partition.offset
}

#[test]
fn a_far_future_timestamp_does_not_pin_retention() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        Broker::start_with_config(dir.path(), "[log]\nretention_check_interval_ms = 200\n");
    let mut client = KafkaClient::connect(broker.kafka);
    // Every batch (about 170 bytes) fills a segment: each append rolls.
    let (code, message) = client.create_topic(
        TOPIC,
        1,
        &[("retention.ms", "2000"), ("segment.bytes", "200")],
    );
    assert_eq!(code, 0, "create topic: {message:?}");

    produce(&mut client, YEAR_2500_MS);
    for _ in 0..4 {
        produce(&mut client, now_ms());
    }
    let deadline = Instant::now() + RETENTION_WAIT;
    let mut start = log_start_offset(&mut client);
    while start == 0 {
        assert!(
            Instant::now() < deadline,
            "the log start offset never moved: a record from the year 2500 pins retention"
        );
        std::thread::sleep(Duration::from_millis(200));
        start = log_start_offset(&mut client);
    }
    // Retention removes whole segments oldest first: the future record's
    // segment went, and everything older than retention.ms with it.
    assert!(start >= 1, "log start offset {start}");
}
