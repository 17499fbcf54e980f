//! Transaction coordinator requests out of order or out of bounds, over
//! the raw protocol, each answered with Kafka's error code: EndTxn with no
//! transaction open, an unknown producer id, a transaction timeout above
//! the broker's maximum, TxnOffsetCommit for a group not added; and
//! transactional offsets, which OffsetFetch with `require_stable` reports
//! UNSTABLE_OFFSET_COMMIT until the transaction ends, and which only a
//! commit makes the group's.

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, ProducerId, TxnOffsetCommitRequest};
use kafka_protocol::protocol::StrBytes;

use super::{
    assert_still_serving, code, describe, init_producer_id, topic_name, watermarks, RawProducer,
    TXN_VERSION,
};
use crate::harness::Broker;
use crate::kafka::KafkaClient;

const TIMEOUT_MS: i32 = 60_000;
/// The broker's default `transactions.timeout_max_ms`.
const TIMEOUT_MAX_MS: i32 = 900_000;
/// Kafka's TRANSACTIONAL_ID_NOT_FOUND (DescribeTransactions).
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
/// TxnOffsetCommit v3 (KIP-447) and OffsetFetch v7, the first with
/// `require_stable`.
const TXN_OFFSET_COMMIT_VERSION: i16 = 3;
const OFFSET_FETCH_VERSION: i16 = 7;

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

/// TxnOffsetCommit of `offset` for `group`'s `t`/0, outside any group
/// generation (generation -1, no member id), as a producer that is not a
/// group member sends it.
fn txn_offset_commit(
    client: &mut KafkaClient,
    producer: &RawProducer,
    group: &str,
    offset: i64,
) -> i16 {
    txn_offset_commit_to(client, producer, group, "t", offset)
}

/// [`txn_offset_commit`] for `topic`/0.
fn txn_offset_commit_to(
    client: &mut KafkaClient,
    producer: &RawProducer,
    group: &str,
    topic: &str,
    offset: i64,
) -> i16 {
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(super::transactional_id(&producer.transactional_id))
        .with_group_id(group_id(group))
        .with_producer_id(ProducerId(producer.producer_id))
        .with_producer_epoch(producer.epoch)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)])]);
    let response = client.call(request, TXN_OFFSET_COMMIT_VERSION);
    response.topics[0].partitions[0].error_code
}

/// OffsetFetch (v7) of `group`'s `t`/0: (error code, committed offset).
fn offset_fetch(client: &mut KafkaClient, group: &str, require_stable: bool) -> (i16, i64) {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_require_stable(require_stable)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partition_indexes(vec![0])]));
    let response = client.call(request, OFFSET_FETCH_VERSION);
    assert_eq!(response.error_code, code::NONE, "OffsetFetch of {group}");
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.committed_offset)
}

fn broker_with_topic(dir: &std::path::Path) -> (Broker, KafkaClient) {
    let broker = Broker::start(dir, &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    assert_eq!(client.create_topic("t", 1, &[]).0, code::NONE);
    (broker, client)
}

#[test]
fn end_txn_needs_an_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, mut client) = broker_with_topic(dir.path());
    let producer = RawProducer::init(&mut client, "txn", TIMEOUT_MS);
    assert_eq!(
        producer.end(&mut client, true, TXN_VERSION),
        code::INVALID_TXN_STATE,
        "commit, none open"
    );
    assert_eq!(
        producer.end(&mut client, false, TXN_VERSION),
        code::INVALID_TXN_STATE,
        "abort, none open"
    );
    assert_eq!(watermarks(&mut client, "t", 0), (0, 0), "no marker written");
    assert_eq!(
        describe(&mut client, "txn").transaction_state.as_str(),
        "Empty"
    );

    assert_eq!(
        producer.add_partitions(&mut client, &[("t", 0)], TXN_VERSION),
        [code::NONE]
    );
    assert_eq!(producer.produce(&mut client, "t", 0, 0, &["v"]), code::NONE);
    assert_eq!(producer.end(&mut client, true, TXN_VERSION), code::NONE);
    // A retried commit is answered as the commit was; an abort of the
    // committed transaction is refused, and neither writes a marker.
    assert_eq!(
        producer.end(&mut client, true, TXN_VERSION),
        code::NONE,
        "retried commit"
    );
    assert_eq!(
        producer.end(&mut client, false, TXN_VERSION),
        code::INVALID_TXN_STATE,
        "abort after commit"
    );
    assert_eq!(
        watermarks(&mut client, "t", 0),
        (2, 2),
        "one record and one marker"
    );
    assert_still_serving(&mut client);
}

#[test]
fn an_unknown_producer_id_and_a_timeout_above_the_maximum_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, mut client) = broker_with_topic(dir.path());
    let producer = RawProducer::init(&mut client, "txn", TIMEOUT_MS);
    let stranger = RawProducer {
        producer_id: producer.producer_id + 1000,
        ..producer.clone()
    };
    let nobody = RawProducer {
        transactional_id: "nobody".to_string(),
        ..producer.clone()
    };
    for unknown in [&stranger, &nobody] {
        assert_eq!(
            unknown.add_partitions(&mut client, &[("t", 0)], TXN_VERSION),
            [code::INVALID_PRODUCER_ID_MAPPING],
            "AddPartitionsToTxn for {unknown:?}"
        );
        assert_eq!(
            unknown.end(&mut client, true, TXN_VERSION),
            code::INVALID_PRODUCER_ID_MAPPING
        );
    }
    for timeout_ms in [TIMEOUT_MAX_MS + 1, 0, -1] {
        assert_eq!(
            init_producer_id(&mut client, "too-long", timeout_ms),
            (code::INVALID_TRANSACTION_TIMEOUT, -1, -1),
            "transaction.timeout.ms {timeout_ms}"
        );
    }
    // Refused, so never created.
    assert_eq!(
        describe(&mut client, "too-long").error_code,
        TRANSACTIONAL_ID_NOT_FOUND
    );
    assert_eq!(
        init_producer_id(&mut client, "longest", TIMEOUT_MAX_MS).0,
        code::NONE
    );
    // The real producer is untouched by all of it.
    assert_eq!(
        producer.add_partitions(&mut client, &[("t", 0)], TXN_VERSION),
        [code::NONE]
    );
    assert_eq!(producer.produce(&mut client, "t", 0, 0, &["v"]), code::NONE);
    assert_eq!(producer.end(&mut client, true, TXN_VERSION), code::NONE);
    assert_eq!(watermarks(&mut client, "t", 0), (2, 2));
    assert_still_serving(&mut client);
}

#[test]
fn transactional_offsets_need_add_offsets_and_are_unstable_until_the_transaction_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, mut client) = broker_with_topic(dir.path());
    let producer = RawProducer::init(&mut client, "txn", TIMEOUT_MS);
    // The group was not added (no transaction is even open).
    assert_eq!(
        txn_offset_commit(&mut client, &producer, "g", 5),
        code::INVALID_TXN_STATE
    );
    assert_eq!(
        offset_fetch(&mut client, "g", true),
        (code::NONE, -1),
        "nothing pending, nothing committed"
    );

    // Committed with the transaction.
    assert_eq!(
        producer.add_offsets(&mut client, "g", TXN_VERSION),
        code::NONE
    );
    // Another group than the one added is still refused.
    assert_eq!(
        txn_offset_commit(&mut client, &producer, "other", 5),
        code::INVALID_TXN_STATE
    );
    assert_eq!(
        txn_offset_commit_to(&mut client, &producer, "g", "no-such-topic", 5),
        code::UNKNOWN_TOPIC_OR_PARTITION,
        "as OffsetCommit, an offset for a partition that does not exist"
    );
    assert_eq!(
        txn_offset_commit(&mut client, &producer, "g", 5),
        code::NONE
    );
    assert_eq!(
        offset_fetch(&mut client, "g", true),
        (code::UNSTABLE_OFFSET_COMMIT, -1)
    );
    assert_eq!(
        offset_fetch(&mut client, "g", false),
        (code::NONE, -1),
        "not committed before EndTxn"
    );
    assert_eq!(producer.end(&mut client, true, TXN_VERSION), code::NONE);
    assert_eq!(offset_fetch(&mut client, "g", true), (code::NONE, 5));

    // Dropped with an aborted transaction.
    assert_eq!(
        producer.add_offsets(&mut client, "g", TXN_VERSION),
        code::NONE
    );
    assert_eq!(
        txn_offset_commit(&mut client, &producer, "g", 9),
        code::NONE
    );
    assert_eq!(
        offset_fetch(&mut client, "g", true),
        (code::UNSTABLE_OFFSET_COMMIT, -1)
    );
    assert_eq!(producer.end(&mut client, false, TXN_VERSION), code::NONE);
    assert_eq!(
        offset_fetch(&mut client, "g", true),
        (code::NONE, 5),
        "the aborted offset is not committed"
    );
    assert_eq!(offset_fetch(&mut client, "other", true), (code::NONE, -1));
    assert_still_serving(&mut client);
}
