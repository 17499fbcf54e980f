//! Real consumers (librdkafka through confluent-kafka, kafka-python,
//! kafkajs) reading a stateful processor's outputs read_committed after
//! kills see every result exactly once.
//!
//! kafkajs reads the output of a one-partition input (one task, one
//! producer): it filters aborted transactions by walking the fetch's list
//! one entry per record, which goes wrong when aborted transactions of
//! several producers overlap in a partition, as several tasks' recoveries
//! leave them (a kafkajs limitation, with Kafka too; README).

use std::collections::BTreeMap;

use serde_json::Value;

use super::windows::traffic;
use super::{input_log, produce_at, wait_settled, Random, WindowOracle};
use crate::clients::{node_dir, python_script, Client, CLIENT_TIMEOUT};
use crate::processors::Pipeline;

/// (key, window start) → count, from the values a client read.
fn windows(values: impl Iterator<Item = String>) -> BTreeMap<(String, i64), Vec<u64>> {
    let mut windows: BTreeMap<(String, i64), Vec<u64>> = BTreeMap::new();
    for value in values {
        let value: Value = serde_json::from_str(&value).unwrap();
        windows
            .entry((
                value["key"].as_str().unwrap().to_string(),
                value["window_start"].as_i64().unwrap(),
            ))
            .or_default()
            .push(value["count"].as_u64().unwrap());
    }
    windows
}

fn exact(what: &str, read: BTreeMap<(String, i64), Vec<u64>>, oracle: &WindowOracle) {
    let repeated: Vec<_> = read.iter().filter(|(_, c)| c.len() > 1).take(3).collect();
    assert!(
        repeated.is_empty(),
        "{what} read windows twice: {repeated:?}"
    );
    let read: BTreeMap<_, _> = read.into_iter().map(|(k, c)| (k, c[0])).collect();
    assert_eq!(read, oracle.closed, "{what}");
}

/// The values of a `{"partitions": {p: [[offset, key, value]…]}}` answer.
fn partition_values(answer: &Value) -> Vec<String> {
    answer["partitions"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|records| records.as_array().unwrap().iter())
        .map(|record| record[2].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn confluent_kafka_kafka_python_and_kafkajs_read_exactly_once_results() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("views", 3);
    pipeline.create_topic("counts", 3);
    pipeline.create_topic("views-one", 1);
    pipeline.create_topic("counts-one", 3);
    super::deploy_window_count(
        &pipeline,
        "one-task",
        ("views-one", "counts-one"),
        1000,
        &["--commit-interval-ms", "20"],
    );
    super::deploy_window_count(
        &pipeline,
        "views-per-second",
        ("views", "counts"),
        1000,
        &["--commit-interval-ms", "20"],
    );
    let mut random = Random::new(31);
    let mut total = 0;
    let mut next = [0usize; 3];
    for _ in 0..4 {
        for partition in 0..3 {
            let records: Vec<_> =
                traffic(&mut random, partition, next[partition as usize] + 500, 20)
                    .split_off(next[partition as usize]);
            next[partition as usize] += 500;
            total += records.len() as i64;
            produce_at(&pipeline, "views", partition, &records);
            if partition == 0 {
                produce_at(&pipeline, "views-one", 0, &records);
            }
        }
        pipeline.restart("KILL");
    }
    wait_settled(&pipeline, "views-per-second", total);
    wait_settled(&pipeline, "one-task", next[0] as i64);
    let oracle_one = WindowOracle::compute(&input_log(&pipeline, "views-one"), 1000, 0);
    let oracle = WindowOracle::compute(&input_log(&pipeline, "views"), 1000, 0);
    let bootstrap = pipeline.broker.kafka.to_string();

    let confluent = Client::spawn(
        "confluent-kafka",
        python_script("read_all.py", &[&bootstrap, "counts"]),
        None,
    )
    .json(CLIENT_TIMEOUT);
    exact(
        "confluent-kafka",
        windows(partition_values(&confluent).into_iter()),
        &oracle,
    );

    let kafka_python = Client::spawn(
        "kafka-python",
        python_script("kp_read_all.py", &[&bootstrap, "counts"]),
        None,
    )
    .json(CLIENT_TIMEOUT);
    exact(
        "kafka-python",
        windows(partition_values(&kafka_python).into_iter()),
        &oracle,
    );

    let count = oracle_one.closed.len().to_string();
    let mut node = std::process::Command::new("node");
    node.arg("kafkajs_read_all.js")
        .args([bootstrap.as_str(), "counts-one", count.as_str()])
        .current_dir(node_dir());
    let kafkajs = Client::spawn("kafkajs", node, None).json(CLIENT_TIMEOUT);
    let values = kafkajs["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record[3].as_str().unwrap().to_string());
    exact("kafkajs", windows(values), &oracle_one);
}
