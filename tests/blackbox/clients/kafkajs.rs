//! kafkajs (Node): creates a topic, produces across its partitions and
//! reads it back from the beginning in a consumer group.

use super::*;

#[test]
fn kafkajs_create_produce_and_group_from_beginning() {
    let node_dir = node_dir();
    let node = Node::start();
    let per_partition = 10;
    let mut command = Command::new("node");
    command
        .current_dir(node_dir)
        .arg("kafkajs_roundtrip.js")
        .args([&node.bootstrap(), "orders", "orders-readers", "3"])
        .arg(per_partition.to_string());
    let result = run_json("kafkajs_roundtrip.js", command);

    assert_eq!(field(&result, "created"), &Value::Bool(true), "{result}");
    let leaders = by_partition(field(&result, "metadata"), integer);
    assert_eq!(leaders, each_partition(3, 0), "one leader, broker 0");
    let produced = by_partition(field(&result, "produced"), strings);
    let consumed = field(&result, "consumed").as_object().expect("object");
    assert_eq!(consumed.len(), 3, "every partition consumed: {result}");
    for (partition, values) in &produced {
        assert_eq!(values.len(), per_partition);
        // Exactly what was sent there, in order, at offsets 0, 1, 2, …
        let expected: Vec<Value> = values
            .iter()
            .enumerate()
            .map(|(i, value)| serde_json::json!([i, format!("k{i}"), value]))
            .collect();
        assert_eq!(
            consumed[partition].as_array().expect("records"),
            &expected,
            "partition {partition}"
        );
    }
}
