//! Committed offsets across restarts when the offsets log holds something
//! unexpected: an oversized group id, a damaged record mid-file; and a
//! commit against a store of 500k committed offsets.

use std::path::Path;
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice::log::batch;

use crate::harness::Broker;
use crate::kafka::KafkaClient;

const COMMIT_VERSION: i16 = 8;
const FETCH_VERSION: i16 = 7;
/// Kafka's INVALID_GROUP_ID.
const INVALID_GROUP_ID: i16 = 24;

fn name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Creates topic `t` (auto-created by a produce) with one partition.
fn create_topic(client: &mut KafkaClient) {
    let records = batch::build::values(1, 10, 1_700_000_000_000).freeze();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("t"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response = client.call(request, 9);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}

/// A simple (generation -1) commit of `t`/0 at `offset` for `group`.
fn commit(client: &mut KafkaClient, group: &str, offset: i64) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name("t"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let response: OffsetCommitResponse = client.call(request, COMMIT_VERSION);
    response.topics[0].partitions[0].error_code
}

/// `group`'s committed offset of `t`/0 (-1 when none).
fn committed(client: &mut KafkaClient, group: &str) -> i64 {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name("t"))
            .with_partition_indexes(vec![0])]));
    let response = client.call(request, FETCH_VERSION);
    assert_eq!(response.error_code, 0);
    response.topics[0].partitions[0].committed_offset
}

fn kill(broker: &mut Broker) {
    broker.stop_with("KILL", Duration::from_secs(10));
}

fn offsets_log(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("groups").join("offsets.log")
}

#[test]
fn a_long_group_id_is_refused_and_later_commits_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    create_topic(&mut client);
    let long = "x".repeat(1536 * 1024);
    let refused = commit(&mut client, &long, 7);
    assert_eq!(commit(&mut client, "g", 42), 0);
    kill(&mut broker);
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    assert_eq!(committed(&mut client, "g"), 42, "g's commit after the restart");
    assert_eq!(refused, INVALID_GROUP_ID, "the long group id's commit");
}

#[test]
fn a_damaged_record_mid_file_keeps_the_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    create_topic(&mut client);
    assert_eq!(commit(&mut client, "a", 1), 0);
    let after_first = std::fs::metadata(offsets_log(dir.path())).unwrap().len();
    assert_eq!(commit(&mut client, "b", 2), 0);
    kill(&mut broker);
    // One flipped bit in the middle of the first record.
    let path = offsets_log(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[after_first as usize / 2] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    assert_eq!(committed(&mut client, "b"), 2, "the later group's commit");
    let stderr = broker.stderr_lines().join("\n");
    assert!(
        stderr.contains("offsets.log") && stderr.contains("damaged"),
        "the skipped record is reported: {stderr}"
    );
}
