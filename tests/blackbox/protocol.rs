//! Produce and Fetch edge cases over the wire: long polls woken by appends,
//! ordering of pipelined requests, acks=0, corrupt and oversized batches,
//! offsets out of range, idempotent retries.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, InitProducerIdRequest,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice::log::batch;

use crate::harness::Broker;
use crate::kafka::KafkaClient;

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn produce(name: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

fn fetch(name: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

fn values(count: usize) -> Bytes {
    batch::build::values(count, 50, 1_700_000_000_000).freeze()
}

fn first_partition(response: &ProduceResponse) -> (i16, i64) {
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

#[test]
fn a_long_poll_is_woken_by_an_append_from_another_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut producer = KafkaClient::connect(broker.kafka);
    assert_eq!(
        first_partition(&producer.call(produce("t", 0, values(2), -1), PRODUCE_VERSION)).0,
        0
    );
    let mut consumer = KafkaClient::connect(broker.kafka);
    // Nothing at offset 2 yet: the fetch waits. Its 60 s max wait is longer
    // than the client's read timeout, so only a wake-up makes this pass.
    let correlation_id = consumer.send(&fetch("t", 2, 60_000), FETCH_VERSION);
    assert_eq!(
        first_partition(&producer.call(produce("t", 0, values(3), -1), PRODUCE_VERSION)),
        (0, 2)
    );
    let response: kafka_protocol::messages::FetchResponse =
        consumer.receive(ApiKey::Fetch, FETCH_VERSION, correlation_id);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 5);
    let records = partition.records.clone().unwrap();
    assert_eq!(batch::verify(&records).unwrap().base_offset, 2);
}

#[test]
fn fetch_edges_out_of_range_and_empty() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    client.call(produce("t", 0, values(2), -1), PRODUCE_VERSION);
    let response = client.call(fetch("t", 7, 0), FETCH_VERSION);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 1, "OFFSET_OUT_OF_RANGE");
    let response = client.call(fetch("t", 2, 0), FETCH_VERSION);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(
        partition.records.as_ref().map(Bytes::len),
        Some(0),
        "empty, not null"
    );
    assert_eq!(
        (
            partition.high_watermark,
            partition.log_start_offset,
            partition.last_stable_offset
        ),
        (2, 0, 2)
    );
    let response = client.call(fetch("missing", 0, 0), FETCH_VERSION);
    assert_eq!(
        response.responses[0].partitions[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order_and_acks_zero_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    client.call(produce("t", 0, values(1), -1), PRODUCE_VERSION);
    // A slow request (a long poll) followed by fast ones: answers keep order.
    let slow = client.send(&fetch("t", 0, 500), FETCH_VERSION);
    let silent = client.send(&produce("t", 0, values(1), 0), PRODUCE_VERSION);
    let produced = client.send(&produce("t", 0, values(1), -1), PRODUCE_VERSION);
    let versions = client.send(&ApiVersionsRequest::default(), 3);
    let _: kafka_protocol::messages::FetchResponse =
        client.receive(ApiKey::Fetch, FETCH_VERSION, slow);
    let response: ProduceResponse = client.receive(ApiKey::Produce, PRODUCE_VERSION, produced);
    // The acks=0 batch was written (offset 1), in order, without an answer.
    assert_eq!(first_partition(&response), (0, 2));
    let _: ApiVersionsResponse = client.receive(ApiKey::ApiVersions, 3, versions);
    assert!(silent < produced);
}

#[test]
fn corrupt_and_oversized_batches_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    let mut corrupt = BytesMut::from(&values(3)[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        first_partition(&client.call(produce("t", 0, corrupt.freeze(), -1), PRODUCE_VERSION)).0,
        2,
        "CORRUPT_MESSAGE"
    );
    let huge = batch::build::values(1, 2 << 20, 0).freeze();
    assert_eq!(
        first_partition(&client.call(produce("t", 0, huge, -1), PRODUCE_VERSION)).0,
        10,
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(
        first_partition(&client.call(produce("t", 9, values(1), -1), PRODUCE_VERSION)).0,
        3,
        "no partition 9"
    );
    let bad_acks = client.call(produce("t", 0, values(1), 2), PRODUCE_VERSION);
    assert_eq!(first_partition(&bad_acks).0, 21, "INVALID_REQUIRED_ACKS");
    // Nothing of the above reached the log.
    assert_eq!(
        first_partition(&client.call(produce("t", 0, values(1), -1), PRODUCE_VERSION)),
        (0, 0)
    );
}

fn idempotent_batch(producer_id: i64, epoch: i16, first_sequence: i32, count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|index| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: first_sequence + index as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("v{}", first_sequence + index as i32))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
    buf.freeze()
}

#[test]
fn idempotent_retries_are_deduplicated_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    let init = client.call(
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
        4,
    );
    assert_eq!(init.error_code, 0);
    let (id, epoch) = (init.producer_id.0, init.producer_epoch);
    let first = idempotent_batch(id, epoch, 0, 3);
    assert_eq!(
        first_partition(&client.call(produce("t", 0, first.clone(), -1), PRODUCE_VERSION)),
        (0, 0)
    );
    // The same batch again (a retry after a lost response): same offset.
    assert_eq!(
        first_partition(&client.call(produce("t", 0, first.clone(), -1), PRODUCE_VERSION)),
        (0, 0)
    );
    // A gap in sequence numbers is refused.
    let gap = idempotent_batch(id, epoch, 5, 1);
    assert_eq!(
        first_partition(&client.call(produce("t", 0, gap, -1), PRODUCE_VERSION)).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    // After a restart the retry is still recognised.
    assert!(broker
        .stop_with("KILL", std::time::Duration::from_secs(5))
        .code()
        .is_none());
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    assert_eq!(
        first_partition(&client.call(produce("t", 0, first, -1), PRODUCE_VERSION)),
        (0, 0)
    );
    let next = idempotent_batch(id, epoch, 3, 2);
    assert_eq!(
        first_partition(&client.call(produce("t", 0, next, -1), PRODUCE_VERSION)),
        (0, 3)
    );
    // A fresh id never repeats one handed out before the restart.
    let again = client.call(
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
        4,
    );
    assert!(again.producer_id.0 > id);
}

#[test]
fn every_flush_policy_serves_produce_and_fetch() {
    for flush in ["never", "interval:20", "always"] {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(dir.path(), &["--flush", flush]);
        let mut client = KafkaClient::connect(broker.kafka);
        for expected in [0, 3] {
            let response = client.call(produce("t", 0, values(3), -1), PRODUCE_VERSION);
            assert_eq!(first_partition(&response), (0, expected), "flush={flush}");
        }
        let response = client.call(fetch("t", 3, 1000), FETCH_VERSION);
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.high_watermark, 6, "flush={flush}");
        let records = partition.records.clone().unwrap();
        assert_eq!(
            batch::verify(&records).unwrap().base_offset,
            3,
            "flush={flush}"
        );
    }
}
