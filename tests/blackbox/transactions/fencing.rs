//! Zombie fencing with a real client: two confluent-kafka producers share a
//! transactional.id. The first (the zombie) has records of an open
//! transaction delivered; the second's init_transactions fences it and
//! aborts that transaction; the second commits one of its own. Whatever the
//! zombie tries next (produce again, or commit) fails with a fatal fencing
//! error, and a read_committed reader sees none of the zombie's records,
//! only the second producer's.

use serde_json::{json, Value};

use super::{read_committed, watermarks};
use crate::clients::{field, integer, python, python_script, run_json, strings, Node};
use crate::kafka::KafkaClient;

const PARTITIONS: i32 = 2;
const COUNT: i64 = 5;

/// The names librdkafka gives the errors a fenced producer gets: its own
/// fatal `_FENCED`, or the broker's codes passed on.
const FENCING: [&str; 3] = ["_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"];

fn assert_fencing(errors: &[String], what: &str, result: &Value) {
    assert!(
        errors.iter().all(|name| FENCING.contains(&name.as_str())),
        "{what}: {errors:?} are not all fencing errors: {result}"
    );
}

/// Runs ck_zombie.py with `then` ("produce" or "commit") and checks what
/// both producers and a read_committed reader saw; returns the zombie's
/// errors after it was fenced (`zombie_after`).
fn zombie_is_fenced(then: &str) -> Value {
    python();
    let node = Node::start();
    let topic = format!("zombie-{then}");
    let result = run_json(
        "ck_zombie.py",
        python_script(
            "ck_zombie.py",
            &[
                &node.bootstrap(),
                &topic,
                "--then",
                then,
                "--partitions",
                &PARTITIONS.to_string(),
                "--count",
                &COUNT.to_string(),
            ],
        ),
    );
    assert_eq!(
        integer(field(&result, "zombie_before_delivered")),
        i64::from(PARTITIONS) * COUNT,
        "the zombie's records before the fencing were written: {result}"
    );
    let after = field(&result, "zombie_after").clone();
    let commit_error = field(&after, "commit_error");
    assert!(
        commit_error.is_object(),
        "the zombie's commit must fail: {result}"
    );
    assert_eq!(
        field(commit_error, "fatal"),
        &Value::Bool(true),
        "fencing is fatal: {result}"
    );
    let name = field(commit_error, "name")
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_fencing(&[name], "the zombie's commit", &result);

    // The zombie's open transaction at 0..COUNT, its abort marker, the
    // second producer's COUNT records and its commit marker; nothing more
    // (the zombie's later records were never written).
    let fencer_first = COUNT + 1;
    let end = 2 * (COUNT + 1);
    let mut client = KafkaClient::connect(node.broker.kafka);
    for partition in 0..PARTITIONS {
        let fencer: Vec<Value> = (0..COUNT)
            .map(|i| json!([fencer_first + i, format!("fencer-{partition}-{i}")]))
            .collect();
        assert_eq!(
            field(field(&result, "committed"), &partition.to_string()),
            &Value::Array(fencer.clone()),
            "the client's read_committed consumer of partition {partition}"
        );
        let read: Vec<Value> = read_committed(&mut client, &topic, partition)
            .into_iter()
            .map(|(offset, value)| json!([offset, value]))
            .collect();
        assert_eq!(
            read, fencer,
            "the test's read_committed of partition {partition}"
        );
        assert_eq!(
            watermarks(&mut client, &topic, partition),
            (end, end),
            "(high watermark, last stable offset) of partition {partition}"
        );
    }
    after
}

/// What librdkafka reports for records it drops unsent once the producer
/// is fenced (fatal): purged from its queue or in flight.
const PURGED: [&str; 3] = ["_PURGE_QUEUE", "_PURGE_INFLIGHT", "_FATAL"];

#[test]
fn a_fenced_zombie_cannot_produce_or_commit_and_none_of_its_records_are_visible() {
    let after = zombie_is_fenced("produce");
    // Every value failed: refused by produce() itself once the producer
    // knew it was fenced, or reported failed.
    let produce_errors = strings(field(&after, "produce_errors"));
    let delivery_errors = strings(field(&after, "delivery_errors"));
    assert_eq!(
        (produce_errors.len() + delivery_errors.len()) as i64,
        i64::from(PARTITIONS) * COUNT,
        "every value the zombie sent after the fencing failed: {after}"
    );
    assert_fencing(&produce_errors, "produce()", &after);
    // The broker refused the zombie's Produce with INVALID_PRODUCER_EPOCH,
    // as Kafka answers a Produce with a fenced epoch; values librdkafka
    // had not sent when it learned it is fenced fail as purged.
    assert!(
        delivery_errors
            .iter()
            .any(|name| name == "INVALID_PRODUCER_EPOCH"),
        "the broker refused the zombie's records: {after}"
    );
    let refused: Vec<String> = delivery_errors
        .into_iter()
        .filter(|name| !PURGED.contains(&name.as_str()))
        .collect();
    assert_fencing(&refused, "the zombie's deliveries", &after);
    if let Some(name) = field(&after, "flush_error").as_str() {
        assert_fencing(&[name.to_string()], "flush()", &after);
    }
}

#[test]
fn a_fenced_zombie_cannot_commit_its_aborted_transaction() {
    let after = zombie_is_fenced("commit");
    // It sent nothing after the fencing: only its EndTxn was refused.
    assert_eq!(field(&after, "delivery_errors"), &json!([]), "{after}");
    assert_eq!(field(&after, "flush_error"), &Value::Null, "{after}");
}
