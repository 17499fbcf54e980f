//! Transactional Produce requests the broker must refuse, over the raw
//! protocol: each gets the error code Kafka gives, nothing is written (the
//! high watermark stays), the last stable offset is not held by anything
//! half-written, and the same connection goes on serving.

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;

use super::{
    assert_still_serving, batch, code, produce, read_committed, topic_name, watermarks,
    BatchAttributes, RawProducer, PRODUCE_VERSION, TXN_VERSION,
};
use crate::harness::Broker;
use crate::kafka::KafkaClient;

const TIMEOUT_MS: i32 = 60_000;

/// A broker with topic `t` of `partitions` partitions, and a connection.
fn broker_with_topic(dir: &std::path::Path, partitions: i32) -> (Broker, KafkaClient) {
    let broker = Broker::start(dir, &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    assert_eq!(client.create_topic("t", partitions, &[]).0, code::NONE);
    (broker, client)
}

#[test]
fn a_transactional_batch_for_a_partition_not_added_is_invalid_txn_state() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, mut client) = broker_with_topic(dir.path(), 2);
    let producer = RawProducer::init(&mut client, "txn", TIMEOUT_MS);
    // No transaction yet at all.
    assert_eq!(
        producer.produce(&mut client, "t", 0, 0, &["early"]),
        code::INVALID_TXN_STATE
    );
    assert_eq!(
        producer.add_partitions(&mut client, &[("t", 0)], TXN_VERSION),
        [code::NONE]
    );
    // A transaction on t/0, but not on t/1.
    assert_eq!(
        producer.produce(&mut client, "t", 1, 0, &["stray"]),
        code::INVALID_TXN_STATE
    );
    assert_eq!(watermarks(&mut client, "t", 0), (0, 0));
    assert_eq!(watermarks(&mut client, "t", 1), (0, 0));
    assert_still_serving(&mut client);

    // The refusals left no producer state behind: once added, t/1 takes
    // the same first sequence number.
    assert_eq!(
        producer.add_partitions(&mut client, &[("t", 1)], TXN_VERSION),
        [code::NONE]
    );
    assert_eq!(
        producer.produce(&mut client, "t", 0, 0, &["kept-0"]),
        code::NONE
    );
    assert_eq!(
        producer.produce(&mut client, "t", 1, 0, &["kept-1"]),
        code::NONE
    );
    assert_eq!(producer.end(&mut client, true, TXN_VERSION), code::NONE);
    assert_eq!(
        read_committed(&mut client, "t", 0),
        [(0, "kept-0".to_string())]
    );
    assert_eq!(
        read_committed(&mut client, "t", 1),
        [(0, "kept-1".to_string())]
    );
}

#[test]
fn an_old_epoch_is_fenced_on_produce_add_partitions_add_offsets_and_end_txn() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, mut client) = broker_with_topic(dir.path(), 1);
    let old = RawProducer::init(&mut client, "txn", TIMEOUT_MS);
    assert_eq!(
        old.add_partitions(&mut client, &[("t", 0)], TXN_VERSION),
        [code::NONE]
    );
    assert_eq!(old.produce(&mut client, "t", 0, 0, &["old-0"]), code::NONE);
    // A second InitProducerId: the old producer's transaction is aborted
    // (its marker at offset 1) and its epoch is fenced.
    let new = RawProducer::init(&mut client, "txn", TIMEOUT_MS);
    assert_eq!(new.producer_id, old.producer_id);
    assert!(new.epoch > old.epoch, "{new:?} after {old:?}");
    assert_eq!(watermarks(&mut client, "t", 0), (2, 2));

    assert_eq!(
        old.produce(&mut client, "t", 0, 1, &["old-1"]),
        code::INVALID_PRODUCER_EPOCH,
        "Produce has no PRODUCER_FENCED"
    );
    // PRODUCER_FENCED from v2 (KIP-588); the older versions' clients know
    // only INVALID_PRODUCER_EPOCH.
    for (version, expected) in [
        (0, code::INVALID_PRODUCER_EPOCH),
        (1, code::INVALID_PRODUCER_EPOCH),
        (2, code::PRODUCER_FENCED),
        (3, code::PRODUCER_FENCED),
    ] {
        let added = old.add_partitions(&mut client, &[("t", 0)], version);
        assert_eq!(added, [expected], "AddPartitionsToTxn v{version}");
        assert_eq!(
            old.add_offsets(&mut client, "g", version),
            expected,
            "AddOffsetsToTxn v{version}"
        );
        assert_eq!(
            old.end(&mut client, true, version),
            expected,
            "EndTxn(commit) v{version}"
        );
        assert_eq!(
            old.end(&mut client, false, version),
            expected,
            "EndTxn(abort) v{version}"
        );
    }
    assert_eq!(
        watermarks(&mut client, "t", 0),
        (2, 2),
        "nothing written by the fenced producer"
    );
    assert_still_serving(&mut client);

    // The new epoch works.
    assert_eq!(
        new.add_partitions(&mut client, &[("t", 0)], TXN_VERSION),
        [code::NONE]
    );
    assert_eq!(new.produce(&mut client, "t", 0, 0, &["new-0"]), code::NONE);
    assert_eq!(new.end(&mut client, true, TXN_VERSION), code::NONE);
    assert_eq!(
        read_committed(&mut client, "t", 0),
        [(2, "new-0".to_string())]
    );
}

#[test]
fn a_control_batch_from_a_client_is_invalid_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, mut client) = broker_with_topic(dir.path(), 1);
    let producer = RawProducer::init(&mut client, "txn", TIMEOUT_MS);
    assert_eq!(
        producer.add_partitions(&mut client, &[("t", 0)], TXN_VERSION),
        [code::NONE]
    );
    // A forged commit marker inside the producer's own transaction.
    let marker = BatchAttributes {
        transactional: true,
        control: true,
    };
    let forged = batch(
        (producer.producer_id, producer.epoch),
        marker,
        0,
        &["forged"],
    );
    assert_eq!(
        produce(&mut client, Some("txn"), "t", 0, forged),
        code::INVALID_RECORD
    );
    // A control batch outside any transaction.
    let control = BatchAttributes {
        transactional: false,
        control: true,
    };
    let forged = batch((-1, -1), control, -1, &["forged"]);
    assert_eq!(
        produce(&mut client, None, "t", 0, forged),
        code::INVALID_RECORD
    );
    assert_eq!(watermarks(&mut client, "t", 0), (0, 0));
    assert_still_serving(&mut client);
    // The transaction itself is unharmed.
    assert_eq!(
        producer.produce(&mut client, "t", 0, 0, &["real"]),
        code::NONE
    );
    assert_eq!(producer.end(&mut client, true, TXN_VERSION), code::NONE);
    assert_eq!(
        read_committed(&mut client, "t", 0),
        [(0, "real".to_string())]
    );
}

#[test]
fn a_transactional_batch_without_a_transactional_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, mut client) = broker_with_topic(dir.path(), 2);
    let producer = RawProducer::init(&mut client, "txn", TIMEOUT_MS);
    assert_eq!(
        producer.add_partitions(&mut client, &[("t", 0)], TXN_VERSION),
        [code::NONE]
    );
    assert_eq!(
        produce(&mut client, None, "t", 0, producer.batch(0, &["smuggled"])),
        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        "the producer's own batch, sent without its transactional id"
    );
    // A batch of a producer no coordinator knows of, behind a plain batch
    // in the same partition's records: written, it would hold the last
    // stable offset, and every read_committed reader, forever.
    let plain = BatchAttributes {
        transactional: false,
        control: false,
    };
    let forged = BatchAttributes {
        transactional: true,
        control: false,
    };
    let mut hidden = batch((-1, -1), plain, -1, &["plain"]).to_vec();
    hidden.extend_from_slice(&batch((4242, 0), forged, 0, &["forged"]));
    assert_eq!(
        produce(&mut client, None, "t", 0, hidden.into()),
        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        "a transactional batch behind a plain one"
    );
    // One partition plain, the other transactional: the whole request is
    // refused, as Kafka refuses it.
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("t"))
            .with_partition_data(vec![
                PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch((-1, -1), plain, -1, &["plain"]))),
                PartitionProduceData::default()
                    .with_index(1)
                    .with_records(Some(batch((4242, 0), forged, 0, &["forged"]))),
            ])]);
    let response = client.call(request, PRODUCE_VERSION);
    let codes: Vec<i16> = response.responses[0]
        .partition_responses
        .iter()
        .map(|partition| partition.error_code)
        .collect();
    assert_eq!(codes, [code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED; 2]);
    // Nothing written anywhere; nothing holds a last stable offset.
    assert_eq!(watermarks(&mut client, "t", 0), (0, 0));
    assert_eq!(watermarks(&mut client, "t", 1), (0, 0));
    assert_still_serving(&mut client);
    // Plain records without a transactional id are still welcome.
    let plain_records = batch((-1, -1), plain, -1, &["plain"]);
    assert_eq!(
        produce(&mut client, None, "t", 1, plain_records),
        code::NONE
    );
    assert_eq!(watermarks(&mut client, "t", 1), (1, 1));
}
