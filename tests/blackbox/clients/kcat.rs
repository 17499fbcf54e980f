//! kcat (librdkafka's command-line client): produce with keys and to a
//! pinned partition, consume to the end, list metadata, consume as a group.

use super::*;

/// `kcat` with `args`, fed `input` on stdin; returns its stdout.
fn run_kcat(args: &[&str], input: Option<&str>) -> String {
    let mut command = kcat();
    command.args(args);
    Client::spawn(&format!("kcat {}", args.join(" ")), command, input).output(CLIENT_TIMEOUT)
}

/// A record as kcat -J prints it: partition, offset, key, value (a missing
/// key or value as "<null>").
type KcatRecord = (i64, i64, String, String);

fn kcat_json_records(stdout: &str) -> Vec<KcatRecord> {
    let parse = |line: &str| -> KcatRecord {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("kcat -J line ({error}): {line}"));
        let text = |key: &str| field(&record, key).as_str().unwrap_or("<null>").to_string();
        (
            integer(field(&record, "partition")),
            integer(field(&record, "offset")),
            text("key"),
            text("payload"),
        )
    };
    let lines = stdout.lines().filter(|line| !line.trim().is_empty());
    lines.map(parse).collect()
}

/// Partition → [(key, value)] in offset order, checking the offsets run
/// 0, 1, 2, … in every partition.
fn by_kcat_partition(records: &[KcatRecord]) -> BTreeMap<i64, Vec<(String, String)>> {
    let mut partitions: BTreeMap<i64, Vec<(String, String)>> = BTreeMap::new();
    for (partition, offset, key, value) in records {
        let rows = partitions.entry(*partition).or_default();
        assert_eq!(*offset, rows.len() as i64, "offsets of [{partition}]");
        rows.push((key.clone(), value.clone()));
    }
    partitions
}

/// Produces keyed records with `kcat -P -K:` (librdkafka's partitioner) and
/// unkeyed ones with `-p 2`, then checks `kcat -C -e` reads back exactly
/// those. Returns every record read.
fn kcat_produce_and_read_back(bootstrap: &str) -> Vec<KcatRecord> {
    let keyed: Vec<(String, String)> = (0..30)
        .map(|i| (format!("user-{i}"), format!("click-{i}")))
        .collect();
    let input: String = keyed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    run_kcat(
        &["-P", "-b", bootstrap, "-t", "clicks", "-K:"],
        Some(&input),
    );
    let pinned: Vec<String> = (0..5).map(|i| format!("pinned-{i}")).collect();
    let input: String = pinned.iter().map(|v| format!("{v}\n")).collect();
    run_kcat(
        &["-P", "-b", bootstrap, "-t", "clicks", "-p", "2"],
        Some(&input),
    );

    let stdout = run_kcat(&["-C", "-b", bootstrap, "-t", "clicks", "-e", "-J"], None);
    let records = kcat_json_records(&stdout);
    let partitions = by_kcat_partition(&records);
    // Every keyed record exactly once; within a partition, in the order sent.
    let mut seen: Vec<(String, String)> = Vec::new();
    for (partition, rows) in &partitions {
        let keyed_here: Vec<&(String, String)> =
            rows.iter().filter(|(key, _)| key != "<null>").collect();
        let order: Vec<usize> = keyed_here
            .iter()
            .map(|row| keyed.iter().position(|sent| sent == *row).expect("sent"))
            .collect();
        assert!(order.is_sorted(), "[{partition}] out of order: {rows:?}");
        seen.extend(keyed_here.into_iter().cloned());
    }
    seen.sort();
    let mut expected = keyed.clone();
    expected.sort();
    assert_eq!(seen, expected, "every keyed record exactly once");
    assert!(partitions.len() >= 2, "keys spread out: {partitions:?}");
    let unkeyed: Vec<String> = partitions[&2]
        .iter()
        .filter(|(key, _)| key == "<null>")
        .map(|(_, value)| value.clone())
        .collect();
    assert_eq!(unkeyed, pinned, "the -p 2 batch, in order, in partition 2");
    assert_eq!(records.len(), keyed.len() + pinned.len());
    records
}

#[test]
fn kcat_produce_consume_list_and_group() {
    kcat();
    let node = Node::start();
    let bootstrap = node.bootstrap();
    create_topic(node.broker.kafka, "clicks", 3);
    let records = kcat_produce_and_read_back(&bootstrap);

    let listing = run_kcat(&["-L", "-b", &bootstrap, "-t", "clicks", "-J"], None);
    let listing: Value = serde_json::from_str(listing.trim()).expect("kcat -L -J");
    let topics = field(&listing, "topics").as_array().unwrap();
    assert_eq!(topics.len(), 1, "{listing}");
    assert_eq!(field(&topics[0], "topic"), "clicks");
    let partitions: Vec<i64> = field(&topics[0], "partitions")
        .as_array()
        .unwrap()
        .iter()
        .map(|partition| integer(field(partition, "partition")))
        .collect();
    assert_eq!(partitions, vec![0, 1, 2], "{listing}");

    // A balanced consumer reads everything and commits on close, so the
    // group's second run finds nothing new.
    let group = [
        "-b",
        &bootstrap,
        "-G",
        "clicks-readers",
        "-X",
        "auto.offset.reset=earliest",
        "-e",
        "-J",
        "clicks",
    ];
    let mut grouped = kcat_json_records(&run_kcat(&group, None));
    grouped.sort();
    let mut expected = records;
    expected.sort();
    assert_eq!(grouped, expected, "kcat -G reads every record once");
    let again = kcat_json_records(&run_kcat(&group, None));
    assert!(again.is_empty(), "second run of the group: {again:?}");
}
