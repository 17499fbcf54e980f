//! confluent-kafka (librdkafka, Python): the idempotent producer with every
//! codec, a group rebalancing as members leave, committed offsets across
//! SIGTERM and SIGKILL, and acknowledged records surviving a kill under load.

use std::collections::BTreeSet;

use super::*;

#[test]
fn confluent_kafka_idempotent_producer_with_every_codec() {
    python();
    let node = Node::start();
    let count = 200;
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let result = run_json(
        "ck_idempotent_codecs.py",
        python_script(
            "ck_idempotent_codecs.py",
            &[
                &node.bootstrap(),
                "codecs",
                "--partitions",
                "3",
                "--count",
                &count.to_string(),
                "--codecs",
                &codecs.join(","),
            ],
        ),
    );

    for codec in codecs {
        let report = field(field(&result, "codecs"), codec);
        assert_eq!(
            integer(field(report, "delivered")),
            count,
            "{codec}: {report}"
        );
        assert_eq!(field(report, "failed"), &serde_json::json!([]), "{codec}");
    }
    let produced = by_partition(field(&result, "produced"), strings);
    let consumed = by_partition(field(&result, "consumed"), strings);
    assert_eq!(produced.len(), 3);
    assert_eq!(
        consumed, produced,
        "read back exactly the produced values per partition, in order"
    );
    // Idempotence: one offset per record, no retried duplicates.
    let offsets = field(&result, "delivered_offsets").as_object().unwrap();
    for (partition, values) in &produced {
        let expected: Vec<Value> = (0..values.len()).map(Value::from).collect();
        assert_eq!(offsets[partition].as_array().unwrap(), &expected);
    }
}

#[test]
fn confluent_kafka_group_of_three_rebalances_without_loss() {
    python();
    let node = Node::start();
    let result = run_json(
        "ck_group_rebalance.py",
        python_script(
            "ck_group_rebalance.py",
            &[&node.bootstrap(), "events", "events-readers"],
        ),
    );

    let assigned = |key: &str| -> Vec<BTreeSet<i64>> {
        field(&result, key)
            .as_object()
            .expect("object")
            .values()
            .map(|parts| parts.as_array().unwrap().iter().map(integer).collect())
            .collect()
    };
    let every: BTreeSet<i64> = (0..6).collect();
    let first = assigned("first");
    assert_eq!(first.len(), 3, "{result}");
    assert!(
        first.iter().all(|parts| parts.len() == 2),
        "2/2/2: {result}"
    );
    assert_eq!(
        first.iter().flatten().copied().collect::<BTreeSet<_>>(),
        every
    );
    let second = assigned("second");
    assert_eq!(second.len(), 2, "{result}");
    assert_eq!(
        second.iter().map(BTreeSet::len).sum::<usize>(),
        6,
        "{result}"
    );
    assert_eq!(
        second.iter().flatten().copied().collect::<BTreeSet<_>>(),
        every
    );

    assert!(integer(field(&result, "acknowledged")) > 0, "{result}");
    assert_eq!(field(&result, "produce_failures"), &serde_json::json!([]));
    assert_eq!(
        integer(field(&result, "missing_count")),
        0,
        "acknowledged values never consumed: {result}"
    );
    eprintln!(
        "group rebalance: {} acknowledged, {} duplicates",
        field(&result, "acknowledged"),
        field(&result, "duplicates")
    );
}

/// One `ck_commit.py consume` round: takes `per_partition` records of every
/// partition (0: to the end) and commits; checks that it resumed at
/// `resume_at` (None: the group had no commit) and committed `commit_at`.
fn consume_round(node: &Node, per_partition: usize, resume_at: Option<i64>, commit_at: i64) {
    let round = run_json(
        "ck_commit.py consume",
        python_script(
            "ck_commit.py",
            &[
                "consume",
                &node.bootstrap(),
                "ledger",
                "ledger-readers",
                "--per-partition",
                &per_partition.to_string(),
            ],
        ),
    );
    let expected_before = each_partition(3, resume_at.map_or(Value::Null, Value::from));
    let before = by_partition(field(&round, "committed_before"), Value::clone);
    assert_eq!(before, expected_before, "committed before: {round}");
    let first = resume_at.unwrap_or(0);
    assert_eq!(
        by_partition(field(&round, "first"), integer),
        each_partition(3, first),
        "a new consumer resumes exactly at the committed offset: {round}"
    );
    assert_eq!(
        by_partition(field(&round, "last"), integer),
        each_partition(3, commit_at - 1)
    );
    for (partition, values) in by_partition(field(&round, "values"), strings) {
        let expected: Vec<String> = (first..commit_at)
            .map(|i| format!("{partition}-{i}"))
            .collect();
        assert_eq!(values, expected, "partition {partition}");
    }
    assert_eq!(
        by_partition(field(&round, "committed_after"), integer),
        each_partition(3, commit_at),
        "committed after: {round}"
    );
}

#[test]
fn confluent_kafka_committed_offsets_survive_sigterm_and_kill() {
    python();
    let mut node = Node::start();
    let produced = run_json(
        "ck_commit.py produce",
        python_script(
            "ck_commit.py",
            &["produce", &node.bootstrap(), "ledger", "--count", "20"],
        ),
    );
    let offsets = field(&produced, "offsets").as_object().unwrap();
    assert_eq!(offsets.len(), 3);
    assert!(offsets.values().all(|o| o.as_array().unwrap().len() == 20));

    consume_round(&node, 5, None, 5);
    node.restart("TERM");
    consume_round(&node, 5, Some(5), 10);
    node.restart("KILL");
    consume_round(&node, 0, Some(10), 20);
}

#[test]
fn confluent_kafka_acknowledged_records_survive_kill_under_load() {
    python();
    let mut node = Node::start();
    let acked_file = node.dir.path().join("acked.txt");
    let producer = Client::spawn(
        "ck_acked_producer.py",
        python_script(
            "ck_acked_producer.py",
            &[
                &node.bootstrap(),
                "stream",
                acked_file.to_str().unwrap(),
                "--max-seconds",
                "80",
            ],
        ),
        None,
    );
    let acknowledged = || -> Vec<String> {
        let text = std::fs::read_to_string(&acked_file).unwrap_or_default();
        // Only whole lines: the producer may be mid-write.
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        whole.lines().map(str::to_string).collect()
    };

    wait_for("2000 acknowledged records", Duration::from_secs(30), || {
        acknowledged().len() >= 2000
    });
    node.stop("KILL");
    let at_kill = acknowledged().len();
    node.start_again();
    wait_for(
        "2000 more acknowledged records after the restart",
        Duration::from_secs(60),
        || acknowledged().len() >= at_kill + 2000,
    );
    producer.signal("TERM");
    let summary = producer.json(CLIENT_TIMEOUT);

    let acknowledged = acknowledged();
    assert_eq!(
        integer(field(&summary, "acknowledged")),
        acknowledged.len() as i64,
        "{summary}"
    );
    let records = read_topic(&node.bootstrap(), "stream");
    let stored_count: usize = records.values().map(Vec::len).sum();
    let stored: BTreeSet<String> = records.into_values().flatten().collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|value| !stored.contains(*value))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged values lost (first: {:?}); producer: {summary}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(10)]
    );
    eprintln!(
        "kill -9 under load: {} acknowledged ({at_kill} before the kill), all present; \
         {stored_count} records stored ({} distinct); producer: {summary}",
        acknowledged.len(),
        stored.len()
    );
}
