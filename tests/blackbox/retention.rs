//! Retention by time is not pinned by a record from the future: a segment
//! whose largest timestamp lies far ahead of the broker's clock ages from
//! when the broker last wrote to it, so one producer with a broken clock
//! cannot keep a topic's whole log forever.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, ListOffsetsRequest, ProduceRequest, TopicName,
};
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
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(text(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response = client.call(request, 9);
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "produce");
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
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[log]\nretention_check_interval_ms = 200\n").unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let mut client = KafkaClient::connect(broker.kafka);
    // Every batch (about 170 bytes) fills a segment: each append rolls.
    let topic = CreatableTopic::default()
        .with_name(TopicName(text(TOPIC)))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(
            [("retention.ms", "2000"), ("segment.bytes", "200")]
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
