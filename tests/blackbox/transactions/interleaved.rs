//! Aborted transactions that interleave: A begins, B begins, B aborts,
//! A aborts. Fetch lists the aborted transactions by first offset, as
//! clients that walk the list alongside the records (kafkajs) need: listed
//! in marker order, B before A, kafkajs would let A's first record through
//! to a read_committed consumer (it did, with a processor's recovery
//! aborting several tasks' transactions in one partition).

use std::process::Command;

use super::{batch, produce, BatchAttributes, RawProducer};
use crate::clients::{node_dir, run_json};
use crate::harness::Broker;
use crate::kafka::KafkaClient;

#[test]
fn interleaved_aborted_transactions_stay_hidden_from_kafkajs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    assert_eq!(client.create_topic("t", 1, &[]).0, 0);
    let a = RawProducer::init(&mut client, "a", 60_000);
    let b = RawProducer::init(&mut client, "b", 60_000);
    assert_eq!(a.add_partitions(&mut client, &[("t", 0)], 3), vec![0]);
    assert_eq!(a.produce(&mut client, "t", 0, 0, &["a-aborted"]), 0); // offset 0
    assert_eq!(b.add_partitions(&mut client, &[("t", 0)], 3), vec![0]);
    assert_eq!(b.produce(&mut client, "t", 0, 0, &["b-aborted"]), 0); // offset 1
    assert_eq!(b.end(&mut client, false, 3), 0); // marker at 2
    assert_eq!(a.produce(&mut client, "t", 0, 1, &["a-aborted-too"]), 0); // offset 3
    assert_eq!(a.end(&mut client, false, 3), 0); // marker at 4
    let plain = BatchAttributes {
        transactional: false,
        control: false,
    };
    let kept = batch((-1, -1), plain, -1, &["kept"]);
    assert_eq!(produce(&mut client, None, "t", 0, kept), 0); // offset 5

    let mut node = Command::new("node");
    node.arg("kafkajs_read_all.js")
        .args([&broker.kafka.to_string(), "t", "1"])
        .current_dir(node_dir());
    let read = run_json("kafkajs read_all", node);
    let values: Vec<&str> = read["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record[3].as_str().unwrap())
        .collect();
    assert_eq!(values, ["kept"], "{read:#}");
}
