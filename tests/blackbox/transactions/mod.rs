//! Kafka transactions from outside: real transactional clients
//! (confluent-kafka, kafkajs) with read_committed and read_uncommitted
//! consumers, a zombie producer fenced by a newer one, a transaction
//! aborted by its timeout, and hostile or out-of-order requests over the
//! raw protocol, each answered with the error code Kafka gives, with
//! nothing written and the connection still serving.
//!
//! This module holds the raw-protocol side the tests share: a
//! transactional producer driven request by request ([`RawProducer`]),
//! transactional and control batches, watermarks through ListOffsets, and
//! a read_committed reader that filters aborted transactions the way a
//! Kafka client does (from the Fetch response's aborted list and the
//! markers), so the broker's answer is checked by an independent reader.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiVersionsRequest,
    DescribeTransactionsRequest, EndTxnRequest, FetchRequest, GroupId, InitProducerIdRequest,
    ListOffsetsRequest, ProduceRequest, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::kafka::KafkaClient;

mod clients;
mod coordinator_errors;
mod fencing;
mod produce_errors;
mod timeout;

/// InitProducerId v4: the first that answers PRODUCER_FENCED.
const INIT_PRODUCER_ID_VERSION: i16 = 4;
/// The newest AddPartitionsToTxn, AddOffsetsToTxn and EndTxn the broker
/// offers (all answer PRODUCER_FENCED from v2).
pub(crate) const TXN_VERSION: i16 = 3;
pub(crate) const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const LIST_OFFSETS_VERSION: i16 = 4;

/// ListOffsets and Fetch `isolation_level`s.
pub(crate) const READ_UNCOMMITTED: i8 = 0;
pub(crate) const READ_COMMITTED: i8 = 1;

/// Kafka error codes these tests expect.
pub(crate) mod code {
    pub(crate) const NONE: i16 = 0;
    pub(crate) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub(crate) const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub(crate) const INVALID_TXN_STATE: i16 = 48;
    pub(crate) const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub(crate) const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    pub(crate) const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub(crate) const INVALID_RECORD: i16 = 87;
    pub(crate) const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    pub(crate) const PRODUCER_FENCED: i16 = 90;
}

/// A timestamp for every record these tests build.
const TIMESTAMP_MS: i64 = 1_700_000_000_000;

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn transactional_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// InitProducerId for `id` (v4) asking for `timeout_ms`; returns the error
/// code and the producer id and epoch handed out.
pub(crate) fn init_producer_id(
    client: &mut KafkaClient,
    id: &str,
    timeout_ms: i32,
) -> (i16, i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(transactional_id(id)))
        .with_transaction_timeout_ms(timeout_ms);
    let response = client.call(request, INIT_PRODUCER_ID_VERSION);
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

/// A transactional producer driven request by request: its transactional
/// id, producer id and epoch. Each call sends one request and returns its
/// error code(s); nothing is asserted here.
#[derive(Clone, Debug)]
pub(crate) struct RawProducer {
    pub(crate) transactional_id: String,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
}

impl RawProducer {
    /// InitProducerId for `id`, which must succeed.
    pub(crate) fn init(client: &mut KafkaClient, id: &str, timeout_ms: i32) -> Self {
        let (error, producer_id, epoch) = init_producer_id(client, id, timeout_ms);
        assert_eq!(error, code::NONE, "InitProducerId for {id}");
        Self {
            transactional_id: id.to_string(),
            producer_id,
            epoch,
        }
    }

    /// AddPartitionsToTxn of `partitions`; one code per partition.
    pub(crate) fn add_partitions(
        &self,
        client: &mut KafkaClient,
        partitions: &[(&str, i32)],
        version: i16,
    ) -> Vec<i16> {
        let topics = partitions
            .iter()
            .map(|(topic, partition)| {
                AddPartitionsToTxnTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![*partition])
            })
            .collect();
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(transactional_id(&self.transactional_id))
            .with_v3_and_below_producer_id(ProducerId(self.producer_id))
            .with_v3_and_below_producer_epoch(self.epoch)
            .with_v3_and_below_topics(topics);
        let response = client.call(request, version);
        response
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|topic| topic.results_by_partition.iter())
            .map(|result| result.partition_error_code)
            .collect()
    }

    /// AddOffsetsToTxn of `group`.
    pub(crate) fn add_offsets(&self, client: &mut KafkaClient, group: &str, version: i16) -> i16 {
        let request = AddOffsetsToTxnRequest::default()
            .with_transactional_id(transactional_id(&self.transactional_id))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())));
        client.call(request, version).error_code
    }

    /// EndTxn: commit (`true`) or abort.
    pub(crate) fn end(&self, client: &mut KafkaClient, commit: bool, version: i16) -> i16 {
        let request = EndTxnRequest::default()
            .with_transactional_id(transactional_id(&self.transactional_id))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_committed(commit);
        client.call(request, version).error_code
    }

    /// One transactional batch of `values` from this producer, sequence
    /// numbers from `first_sequence`.
    pub(crate) fn batch(&self, first_sequence: i32, values: &[&str]) -> Bytes {
        let attributes = BatchAttributes {
            transactional: true,
            control: false,
        };
        batch(
            (self.producer_id, self.epoch),
            attributes,
            first_sequence,
            values,
        )
    }

    /// Produce of `values` (one transactional batch) to `topic`/`partition`
    /// in a request carrying this producer's transactional id.
    pub(crate) fn produce(
        &self,
        client: &mut KafkaClient,
        topic: &str,
        partition: i32,
        first_sequence: i32,
        values: &[&str],
    ) -> i16 {
        let records = self.batch(first_sequence, values);
        produce(
            client,
            Some(&self.transactional_id),
            topic,
            partition,
            records,
        )
    }
}

/// The attribute bits a test batch carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchAttributes {
    pub(crate) transactional: bool,
    pub(crate) control: bool,
}

/// One record batch of `values` from `producer` (id, epoch), sequence
/// numbers from `first_sequence`, with the `attributes` given.
pub(crate) fn batch(
    producer: (i64, i16),
    attributes: BatchAttributes,
    first_sequence: i32,
    values: &[&str],
) -> Bytes {
    let records: Vec<(Option<&str>, &str)> = values.iter().map(|value| (None, *value)).collect();
    keyed_batch(producer, attributes, first_sequence, &records)
}

/// [`batch`] of records with keys (`(key, value)`).
pub(crate) fn keyed_batch(
    producer: (i64, i16),
    attributes: BatchAttributes,
    first_sequence: i32,
    records: &[(Option<&str>, &str)],
) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, (key, value))| Record {
            transactional: attributes.transactional,
            control: attributes.control,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: first_sequence + index as i32,
            timestamp: TIMESTAMP_MS,
            key: key.map(|key| Bytes::from(key.to_string())),
            value: Some(Bytes::from(value.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, records.iter(), &options).expect("encode a batch");
    buffer.freeze()
}

/// Produce (v9, acks=all) of `records` to `topic`/`partition`, with
/// `transactional_id` or without; returns the partition's error code.
pub(crate) fn produce(
    client: &mut KafkaClient,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> i16 {
    let request = ProduceRequest::default()
        .with_transactional_id(transactional_id.map(self::transactional_id))
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let response = client.call(request, PRODUCE_VERSION);
    response.responses[0].partition_responses[0].error_code
}

/// ListOffsets latest (v4) at `isolation`: the high watermark
/// (read_uncommitted) or the last stable offset (read_committed).
pub(crate) fn latest_offset(
    client: &mut KafkaClient,
    topic: &str,
    partition: i32,
    isolation: i8,
) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    let response = client.call(request, LIST_OFFSETS_VERSION);
    let answer = &response.topics[0].partitions[0];
    assert_eq!(
        answer.error_code,
        code::NONE,
        "ListOffsets {topic}/{partition}"
    );
    answer.offset
}

/// (high watermark, last stable offset) of `topic`/`partition`.
pub(crate) fn watermarks(client: &mut KafkaClient, topic: &str, partition: i32) -> (i64, i64) {
    (
        latest_offset(client, topic, partition, READ_UNCOMMITTED),
        latest_offset(client, topic, partition, READ_COMMITTED),
    )
}

/// The values a read_committed consumer of `topic`/`partition` gets, with
/// their offsets: one Fetch (read_committed) from offset 0, filtered as a
/// Kafka client filters it. The broker stops at the last stable offset and
/// lists the aborted transactions before it; a transactional batch of a
/// producer in that list is skipped from the listed first offset until the
/// producer's abort marker; control batches are never returned.
pub(crate) fn read_committed(
    client: &mut KafkaClient,
    topic: &str,
    partition: i32,
) -> Vec<(i64, String)> {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(16 << 20)
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(16 << 20)])]);
    let response = client.call(request, FETCH_VERSION);
    let answer = &response.responses[0].partitions[0];
    assert_eq!(answer.error_code, code::NONE, "Fetch {topic}/{partition}");
    let mut aborted: Vec<(i64, i64)> = answer
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.first_offset, a.producer_id.0))
        .collect();
    aborted.sort();
    let mut records = answer.records.clone().unwrap_or_default();
    let batches = RecordBatchDecoder::decode_all(&mut records).expect("decode the fetched batches");
    let mut aborted = aborted.into_iter().peekable();
    let mut aborting = HashSet::new();
    let mut values = Vec::new();
    for batch in batches {
        let Some(first) = batch.records.first() else {
            continue;
        };
        let last_offset = batch.records.last().map_or(first.offset, |r| r.offset);
        while let Some((_, producer_id)) = aborted.next_if(|(offset, _)| *offset <= last_offset) {
            aborting.insert(producer_id);
        }
        if first.control {
            if is_abort_marker(first) {
                aborting.remove(&first.producer_id);
            }
            continue;
        }
        if first.transactional && aborting.contains(&first.producer_id) {
            continue;
        }
        for record in &batch.records {
            let value = record.value.as_ref().expect("a value");
            values.push((record.offset, String::from_utf8_lossy(value).into_owned()));
        }
    }
    values
}

/// Whether a control record is an abort marker: its key is version (i16)
/// and type (i16), 0 for abort, 1 for commit.
fn is_abort_marker(record: &Record) -> bool {
    let key = record.key.as_ref().expect("a control record has a key");
    key.len() >= 4 && i16::from_be_bytes([key[2], key[3]]) == 0
}

/// DescribeTransactions (v0) of one transactional id.
pub(crate) fn describe(client: &mut KafkaClient, id: &str) -> TransactionState {
    let request =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![transactional_id(id)]);
    let mut response = client.call(request, 0);
    assert_eq!(response.transaction_states.len(), 1);
    response.transaction_states.remove(0)
}

/// Asserts that the connection still serves requests (an ApiVersions
/// round trip) after whatever was refused on it.
pub(crate) fn assert_still_serving(client: &mut KafkaClient) {
    let response = client.call(ApiVersionsRequest::default(), 3);
    assert_eq!(
        response.error_code,
        code::NONE,
        "ApiVersions on the same connection"
    );
    assert!(!response.api_keys.is_empty());
}
