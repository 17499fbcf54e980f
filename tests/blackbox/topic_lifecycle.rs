//! Deleting and recreating a topic while it is being compacted and
//! produced to: after a restart the topic holds exactly the records
//! produced after its last creation, its directory holds no file of an
//! earlier incarnation, and no deletion is left half done.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{DeleteTopicsRequest, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use sluice::log::batch::build;

use crate::harness::Broker;
use crate::kafka::KafkaClient;

const TOPIC: &str = "churn";
const PARTITIONS: i32 = 4;
const ROUNDS: usize = 30;
const PRODUCERS: usize = 3;
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const TIMESTAMP_MS: i64 = 1_700_000_000_000;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn create(client: &mut KafkaClient) {
    let (code, message) = client.create_topic(
        TOPIC,
        PARTITIONS,
        &[("cleanup.policy", "compact"), ("segment.bytes", "1024")],
    );
    assert_eq!(code, 0, "create topic: {message:?}");
}

fn delete(client: &mut KafkaClient) {
    let deleted = client.call(
        DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(text(TOPIC))])
            .with_timeout_ms(5_000),
        5,
    );
    let result = &deleted.responses[0];
    assert_eq!(
        result.error_code, 0,
        "delete topic: {:?}",
        result.error_message
    );
}

/// Produces `count` records with keys cycling over a few values (so that
/// compaction has work) to every partition; the error code of each.
fn produce(client: &mut KafkaClient, tag: &str, count: usize) -> Vec<i16> {
    let entries: Vec<build::Entry> = (0..count)
        .map(|index| {
            let key = format!("key-{}", index % 4).into_bytes();
            let value = format!("{tag}/{index}").into_bytes();
            (Some(key), Some(value), TIMESTAMP_MS)
        })
        .collect();
    let records = build::batch(&entries, Compression::None).freeze();
    let partitions = (0..PARTITIONS)
        .map(|index| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(Some(records.clone()))
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(text(TOPIC)))
            .with_partition_data(partitions)]);
    let response = client.call(request, 9);
    response.responses[0]
        .partition_responses
        .iter()
        .map(|partition| partition.error_code)
        .collect()
}

/// Every value in `partition`, in offset order.
fn values(client: &mut KafkaClient, partition: i32) -> Vec<Bytes> {
    let mut values = Vec::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(text(TOPIC)))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response = client.call(request, 12);
        let served = &response.responses[0].partitions[0];
        assert_eq!(served.error_code, 0, "fetch {partition} at {offset}");
        if offset >= served.high_watermark {
            return values;
        }
        let mut records = served.records.clone().expect("records");
        let sets = RecordBatchDecoder::decode_all(&mut records).expect("batches decode");
        for record in sets.into_iter().flat_map(|set| set.records) {
            offset = offset.max(record.offset + 1);
            values.push(record.value.expect("a value"));
        }
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_recreated_topic_holds_only_its_own_records_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[log]\nretention_check_interval_ms = 1\n[kafka]\nauto_create_topics_enable = false\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let args = ["--config", config.to_str().unwrap()];
    let mut broker = Broker::start(&data, &args);
    let mut admin = KafkaClient::connect(broker.kafka);
    create(&mut admin);

    // Producers that never stop while the topic is deleted and recreated:
    // their writes go through partition handles of every incarnation.
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|index| {
            let (stop, addr) = (stop.clone(), broker.kafka);
            std::thread::spawn(move || {
                let mut client = KafkaClient::connect(addr);
                let mut batches = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    produce(&mut client, &format!("old-{index}-{batches}"), 16);
                    batches += 1;
                }
                batches
            })
        })
        .collect();
    for _ in 0..ROUNDS {
        delete(&mut admin);
        create(&mut admin);
        // Something for the next round's compaction of this incarnation.
        assert!(produce(&mut admin, "round", 16)
            .iter()
            .all(|code| *code == 0));
    }
    stop.store(true, Ordering::Relaxed);
    for producer in producers {
        assert!(producer.join().expect("producer thread") > 0);
    }
    delete(&mut admin);
    create(&mut admin);
    let codes = produce(&mut admin, "final", 8);
    assert!(
        codes.iter().all(|code| *code == 0),
        "final produce: {codes:?}"
    );
    drop(admin);
    assert!(broker.stop_with("TERM", STOP_TIMEOUT).success());

    let broker = Broker::start(&data, &args);
    let mut client = KafkaClient::connect(broker.kafka);
    let expected: Vec<Bytes> = (0..8)
        .map(|index| Bytes::from(format!("final/{index}")))
        .collect();
    for partition in 0..PARTITIONS {
        assert_eq!(
            values(&mut client, partition),
            expected,
            "partition {partition}"
        );
    }
    // One topic directory, holding only the last incarnation's files; no
    // deletion left behind.
    let topic_dirs: Vec<PathBuf> = std::fs::read_dir(data.join("topics"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(topic_dirs.len(), 1, "{topic_dirs:?}");
    let leftovers = files_under(&data.join("deleting"));
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
