//! Real transactional clients, end to end: confluent-kafka (librdkafka)
//! and kafkajs producers commit, abort, commit and leave a fourth
//! transaction open across two topics; read_committed consumers must see
//! exactly the committed records of every partition, in order, and
//! read_uncommitted ones everything. The watermarks are checked as the
//! clients saw them and through the test's own ListOffsets, and the
//! committed records once more through the test's own read_committed
//! reader (`super::read_committed`).
//!
//! Every transaction writes COUNT records to every partition and then one
//! marker, so transaction k (0-based) sits at offsets k·(COUNT+1) ..
//! k·(COUNT+1)+COUNT-1 and its marker right after.

use std::process::Command;

use serde_json::{json, Map, Value};

use super::{read_committed, watermarks};
use crate::clients::{field, node_dir, python, python_script, run_json, Node};
use crate::kafka::KafkaClient;

const PARTITIONS: i32 = 3;

/// The transactions both scripts write, in order: (value prefix, whether
/// a read_committed consumer sees it).
const PLAN: [(&str, bool); 4] = [("c", true), ("a", false), ("d", true), ("o", false)];

/// What a consumer of `topic` should read: {partition: [[offset, value],
/// ...]} holding the transactions of [`PLAN`] that `wanted` keeps.
fn expected(topic: &str, count: i64, wanted: impl Fn(&str, bool) -> bool) -> Value {
    let mut partitions = Map::new();
    for partition in 0..PARTITIONS {
        let mut rows = Vec::new();
        for (slot, (prefix, committed)) in PLAN.iter().enumerate() {
            if !wanted(prefix, *committed) {
                continue;
            }
            let first = slot as i64 * (count + 1);
            for i in 0..count {
                rows.push(json!([
                    first + i,
                    format!("{prefix}-{topic}-{partition}-{i}")
                ]));
            }
        }
        partitions.insert(partition.to_string(), Value::Array(rows));
    }
    Value::Object(partitions)
}

/// The committed transactions' records ("c" then "d").
fn committed_rows(topic: &str, count: i64) -> Value {
    expected(topic, count, |_, committed| committed)
}

/// Every transaction's records, aborted and open ones too.
fn all_rows(topic: &str, count: i64) -> Value {
    expected(topic, count, |_, _| true)
}

/// `{topic: {partition: [low, high]}}` with the same value everywhere.
fn everywhere(topics: &[&str], low: i64, high: i64) -> Value {
    let partitions: Map<String, Value> = (0..PARTITIONS)
        .map(|partition| (partition.to_string(), json!([low, high])))
        .collect();
    topics
        .iter()
        .map(|topic| (topic.to_string(), Value::Object(partitions.clone())))
        .collect::<Map<_, _>>()
        .into()
}

/// The test's own checks of a topic: the watermarks (high watermark, last
/// stable offset) by ListOffsets, and the committed values by its own
/// read_committed reader.
fn check_topic(client: &mut KafkaClient, topic: &str, count: i64, expected_watermarks: (i64, i64)) {
    let committed = committed_rows(topic, count);
    for partition in 0..PARTITIONS {
        assert_eq!(
            watermarks(client, topic, partition),
            expected_watermarks,
            "(high watermark, last stable offset) of {topic}/{partition}"
        );
        let read: Vec<Value> = read_committed(client, topic, partition)
            .into_iter()
            .map(|(offset, value)| json!([offset, value]))
            .collect();
        assert_eq!(
            Value::Array(read),
            committed[partition.to_string()],
            "read_committed {topic}/{partition} by the test's own reader"
        );
    }
}

#[test]
fn confluent_kafka_read_committed_sees_exactly_the_committed_transactions() {
    python();
    let node = Node::start();
    let count = 10;
    let topics = ["ck-a", "ck-b"];
    let result = run_json(
        "ck_transactions.py",
        python_script(
            "ck_transactions.py",
            &[
                &node.bootstrap(),
                topics[0],
                topics[1],
                "--partitions",
                &PARTITIONS.to_string(),
                "--count",
                &count.to_string(),
            ],
        ),
    );

    for topic in topics {
        assert_eq!(
            field(field(&result, "committed"), topic),
            &committed_rows(topic, count),
            "read_committed: the committed records of {topic}, per partition in order"
        );
        assert_eq!(
            field(field(&result, "uncommitted"), topic),
            &all_rows(topic, count),
            "read_uncommitted: every record of {topic}"
        );
    }
    // While "o" was open: read_committed ends at its first offset (the
    // last stable offset), read_uncommitted after its records.
    let open = field(&result, "watermarks_open");
    let first_open = 3 * (count + 1);
    assert_eq!(
        field(open, "read_committed"),
        &everywhere(&topics, 0, first_open)
    );
    assert_eq!(
        field(open, "read_uncommitted"),
        &everywhere(&topics, 0, first_open + count)
    );
    // Once it was aborted: both after its marker.
    let ended = field(&result, "watermarks_ended");
    let end = 4 * (count + 1);
    assert_eq!(field(ended, "read_committed"), &everywhere(&topics, 0, end));
    assert_eq!(
        field(ended, "read_uncommitted"),
        &everywhere(&topics, 0, end)
    );

    let mut client = KafkaClient::connect(node.broker.kafka);
    for topic in topics {
        check_topic(&mut client, topic, count, (end, end));
    }
}

#[test]
fn kafkajs_read_committed_sees_exactly_the_committed_transactions() {
    let node_dir = node_dir();
    let node = Node::start();
    let count = 5;
    let topics = ["kjs-a", "kjs-b"];
    let mut command = Command::new("node");
    command
        .current_dir(node_dir)
        .arg("kafkajs_transactions.js")
        .args([&node.bootstrap(), topics[0], topics[1]])
        .arg(PARTITIONS.to_string())
        .arg(count.to_string());
    let result = run_json("kafkajs_transactions.js", command);

    for topic in topics {
        assert_eq!(
            field(field(&result, "committed"), topic),
            &committed_rows(topic, count),
            "readUncommitted: false: the committed records of {topic}, per partition in order"
        );
        assert_eq!(
            field(field(&result, "uncommitted"), topic),
            &all_rows(topic, count),
            "readUncommitted: true: every record of {topic}"
        );
    }
    // The script left "o" open: the last stable offset stays at its first
    // record, the high watermark is after its records.
    let first_open = 3 * (count + 1);
    let mut client = KafkaClient::connect(node.broker.kafka);
    for topic in topics {
        check_topic(&mut client, topic, count, (first_open + count, first_open));
    }
}
