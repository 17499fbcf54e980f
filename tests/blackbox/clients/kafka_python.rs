//! kafka-python: a consumer group that commits, then asks for its
//! positions and committed offsets (also from a fresh consumer).

use super::*;

#[test]
fn kafka_python_group_commit_and_committed() {
    python();
    let node = Node::start();
    let result = run_json(
        "kp_group_commit.py",
        python_script(
            "kp_group_commit.py",
            &[
                &node.bootstrap(),
                "payments",
                "payments-readers",
                "--count",
                "30",
            ],
        ),
    );

    let produced = field(&result, "produced");
    assert_eq!(
        field(&result, "consumed"),
        produced,
        "consumed exactly what was produced, per partition in order"
    );
    let ends: BTreeMap<String, i64> = produced
        .as_object()
        .unwrap()
        .iter()
        .map(|(partition, rows)| (partition.clone(), rows.as_array().unwrap().len() as i64))
        .collect();
    assert_eq!(ends, each_partition(3, 10));
    assert_eq!(by_partition(field(&result, "positions"), integer), ends);
    assert_eq!(by_partition(field(&result, "committed"), integer), ends);
    assert_eq!(
        by_partition(field(&result, "committed_fresh"), integer),
        ends
    );
}
