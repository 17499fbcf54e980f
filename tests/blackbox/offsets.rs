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
    assert_eq!(
        committed(&mut client, "g"),
        42,
        "g's commit after the restart"
    );
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

/// A commit of partitions `partitions` of topic `wide` at `offset`.
fn wide_commit(group: &str, partitions: std::ops::Range<i32>, offset: i64) -> OffsetCommitRequest {
    let partitions = partitions
        .map(|p| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(offset)
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name("wide"))
            .with_partitions(partitions)])
}

fn all_ok(response: &OffsetCommitResponse) -> bool {
    response
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .all(|p| p.error_code == 0)
}

/// Whether a response is waiting to be read on `client`, without reading.
fn answered(client: &KafkaClient) -> bool {
    client.has_data()
}

/// 500 groups × 1000 partitions of committed offsets; then, while one more
/// commit is in flight, OffsetFetch calls (as many as the broker has async
/// workers, and more) and an ApiVersions arrive on other connections. The
/// ApiVersions must be answered while the commit is still in flight: a
/// commit never stalls the async workers. And that commit appends only its
/// own records to the log.
#[test]
fn a_commit_over_500k_offsets_appends_what_changed_and_stalls_nothing() {
    const GROUPS: usize = 500;
    const PARTITIONS: i32 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    let created = client.call(
        kafka_protocol::messages::CreateTopicsRequest::default()
            .with_topics(vec![
                kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                    .with_name(name("wide"))
                    .with_num_partitions(PARTITIONS)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(30_000),
        7,
    );
    assert_eq!(created.topics[0].error_code, 0);
    let started = std::time::Instant::now();
    // Pipelined, 16 requests in flight.
    let mut pending = std::collections::VecDeque::new();
    for group in 0..GROUPS {
        let request = wide_commit(&format!("load-{group}"), 0..PARTITIONS, 1);
        pending.push_back(client.send(&request, COMMIT_VERSION));
        if pending.len() == 16 || group + 1 == GROUPS {
            while let Some(correlation_id) = pending.pop_front() {
                let response: OffsetCommitResponse = client.receive(
                    kafka_protocol::messages::ApiKey::OffsetCommit,
                    COMMIT_VERSION,
                    correlation_id,
                );
                assert!(all_ok(&response));
            }
        }
    }
    eprintln!("loaded 500k offsets in {:?}", started.elapsed());

    // One small commit appends O(its records), whatever is committed.
    let before = std::fs::metadata(offsets_log(dir.path())).unwrap().len();
    assert!(all_ok(
        &client.call(wide_commit("small", 0..1, 5), COMMIT_VERSION)
    ));
    let grown = std::fs::metadata(offsets_log(dir.path())).unwrap().len() as i64 - before as i64;
    assert!(
        (0..1024).contains(&grown),
        "one small commit changed the file by {grown} bytes"
    );

    // A large commit in flight, OffsetFetch calls on the async workers,
    // then ApiVersions, which must not wait for the commit. The commit is
    // quick (it appends what changed), so a probe can race its answer
    // under load: rounds go on until three caught the commit still in
    // flight after ApiVersions answered (a broker whose commits stall the
    // workers would never show one).
    let mut committer = KafkaClient::connect(broker.kafka);
    let (mut clean, mut raced) = (0, 0);
    for round in 0..20 {
        let started = std::time::Instant::now();
        let big = committer.send(
            &wide_commit("big", 0..PARTITIONS, 9 + round),
            COMMIT_VERSION,
        );
        let mut fetchers: Vec<(KafkaClient, i32)> = (0..8)
            .map(|i| {
                let mut fetcher = KafkaClient::connect(broker.kafka);
                let request = OffsetFetchRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(format!("load-{i}"))))
                    .with_topics(None);
                let correlation_id = fetcher.send(&request, FETCH_VERSION);
                (fetcher, correlation_id)
            })
            .collect();
        let mut probe = KafkaClient::connect(broker.kafka);
        let in_flight_before = !answered(&committer);
        let _ = probe.call(kafka_protocol::messages::ApiVersionsRequest::default(), 3);
        let in_flight_after = !answered(&committer);
        let probed = started.elapsed();
        let response: OffsetCommitResponse = committer.receive(
            kafka_protocol::messages::ApiKey::OffsetCommit,
            COMMIT_VERSION,
            big,
        );
        eprintln!(
            "round {round}: ApiVersions answered after {probed:?}, the commit after {:?}; \
             commit in flight before {in_flight_before}, after {in_flight_after}",
            started.elapsed()
        );
        assert!(all_ok(&response));
        for (fetcher, correlation_id) in &mut fetchers {
            let response: kafka_protocol::messages::OffsetFetchResponse = fetcher.receive(
                kafka_protocol::messages::ApiKey::OffsetFetch,
                FETCH_VERSION,
                *correlation_id,
            );
            assert_eq!(response.topics[0].partitions.len(), PARTITIONS as usize);
        }
        match (in_flight_before, in_flight_after) {
            (true, true) => clean += 1,
            (true, false) => raced += 1,
            _ => {}
        }
        if clean == 3 {
            break;
        }
    }
    assert!(
        clean > 0,
        "no round saw the commit still in flight after ApiVersions answered: \
         in {raced} it was answered during the probe (ApiVersions waited for it?), \
         in the others before the probe started"
    );
}
