//! Exactly-once across kill -9: a confluent-kafka consume-transform-produce
//! loop whose broker and client are killed (SIGKILL) again and again, and
//! single transactions cut short by a broker kill while open and while
//! committing. What these tests hold the broker to is what a Kafka
//! application relies on: after any crash a read_committed consumer sees
//! each committed transaction whole and nothing of an aborted one; an open
//! transaction a crash leaves behind is aborted at its timeout; a commit
//! interrupted after its decision is finished by recovery, its consumer
//! offsets included.
//!
//! The loop's kill points are pseudo-random with a fixed seed, and chosen
//! by progress, not by time: each kill waits until the output's high
//! watermark has grown by a random number of records (data or markers)
//! since the last one, so it lands right after some write of the loop,
//! wherever in a transaction that is. The crash in the middle of a commit
//! is deterministic: the debug-build crash point
//! `SLUICE_TEST_CRASH=after-first-marker` (engine/src/transaction/complete.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::thread;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, FetchRequest, GroupId, ListOffsetsRequest, OffsetFetchRequest,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;

use crate::clients::{
    create_topic, field, integer, python, python_script, run_json, wait_for, Client, Node,
    CLIENT_TIMEOUT, POLL_INTERVAL, STOP_TIMEOUT,
};
use crate::kafka::KafkaClient;

/// Broker settings: a group forms as soon as its member joins, and a
/// transaction past its timeout is aborted within 100 ms.
const CONFIG: &str = "[groups]\ninitial_rebalance_delay_ms = 0\n\n\
                      [transactions]\nabort_check_interval_ms = 100\n";

/// ListOffsets / Fetch isolation levels.
const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;

// ---------------------------------------------------------------------------
// Asking the broker, over the test's own codec.

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// The end offsets of `topic`'s partitions 0..`partitions` (in that
/// order) under `isolation`: the high watermarks (read_uncommitted) or the
/// last stable offsets (read_committed).
fn end_offsets(broker: SocketAddr, topic: &str, partitions: i32, isolation: i8) -> Vec<i64> {
    let wanted = (0..partitions)
        .map(|p| {
            ListOffsetsPartition::default()
                .with_partition_index(p)
                .with_timestamp(-1)
        })
        .collect();
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(text(topic)))
            .with_partitions(wanted)]);
    let response = KafkaClient::connect(broker).call(request, 5);
    let by_partition: BTreeMap<i32, i64> = response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(
                p.error_code, 0,
                "ListOffsets {topic}[{}]",
                p.partition_index
            );
            (p.partition_index, p.offset)
        })
        .collect();
    assert_eq!(by_partition.len(), partitions as usize, "{by_partition:?}");
    by_partition.into_values().collect()
}

/// DescribeTransactions of `transactional_id`: its state and producer id.
fn describe(broker: SocketAddr, transactional_id: &str) -> (String, i64) {
    let request = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(text(transactional_id))]);
    let response = KafkaClient::connect(broker).call(request, 0);
    let described = &response.transaction_states[0];
    assert_eq!(
        described.error_code, 0,
        "DescribeTransactions {transactional_id}"
    );
    (
        described.transaction_state.to_string(),
        described.producer_id.0,
    )
}

/// What a read_committed Fetch of `topic`[`partition`] from offset 0
/// answers.
#[derive(Debug)]
struct CommittedFetch {
    high_watermark: i64,
    last_stable_offset: i64,
    /// (producer id, first offset) of each aborted transaction listed.
    aborted: Vec<(i64, i64)>,
}

fn fetch_committed(broker: SocketAddr, topic: &str, partition: i32) -> CommittedFetch {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(text(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response = KafkaClient::connect(broker).call(request, 12);
    let served = &response.responses[0].partitions[0];
    assert_eq!(served.error_code, 0, "Fetch {topic}[{partition}]");
    CommittedFetch {
        high_watermark: served.high_watermark,
        last_stable_offset: served.last_stable_offset,
        aborted: served
            .aborted_transactions
            .iter()
            .flatten()
            .map(|aborted| (aborted.producer_id.0, aborted.first_offset))
            .collect(),
    }
}

/// `group`'s committed offsets of `topic`'s partitions 0..`partitions`
/// (-1: none), asked with `require_stable`, so an offset still pending in
/// a transaction fails the test instead of passing for committed.
fn committed_offsets(broker: SocketAddr, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_require_stable(true)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(text(topic)))
            .with_partition_indexes((0..partitions).collect())]));
    let response = KafkaClient::connect(broker).call(request, 7);
    assert_eq!(response.error_code, 0, "OffsetFetch {group}");
    response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(
                p.error_code, 0,
                "OffsetFetch {group} {topic}[{}]",
                p.partition_index
            );
            p.committed_offset
        })
        .collect()
}

/// One record as read_all.py reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    offset: i64,
    key: Option<String>,
    value: String,
}

/// Partition → the records a confluent-kafka consumer with `isolation`
/// ("read_committed", "read_uncommitted") reads from `topic`, in offset
/// order, up to the end offsets it finds at its start.
fn read(bootstrap: &str, topic: &str, isolation: &str) -> BTreeMap<i32, Vec<Row>> {
    let read = run_json(
        "read_all.py",
        python_script("read_all.py", &[bootstrap, topic, "--isolation", isolation]),
    );
    let partitions = field(&read, "partitions").as_object().expect("object");
    let row = |row: &Value| Row {
        offset: integer(&row[0]),
        key: row[1].as_str().map(str::to_string),
        value: row[2].as_str().expect("a value").to_string(),
    };
    partitions
        .iter()
        .map(|(partition, rows)| {
            let rows = rows.as_array().expect("rows").iter().map(row).collect();
            (partition.parse().expect("a partition number"), rows)
        })
        .collect()
}

fn values(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|row| row.value.clone()).collect()
}

// ---------------------------------------------------------------------------
// The consume-transform-produce loop, killed 20 times.

/// Input records the loop transforms, with keys "k0".."k9".
const LOOP_INPUT_RECORDS: usize = 400;
const LOOP_KEYS: usize = 10;
const LOOP_PARTITIONS: i32 = 3;
/// Kills in all, alternating: broker first, then the client.
const LOOP_KILLS: usize = 20;
/// Each kill waits for the output's high watermark to grow by 1 to this
/// many offsets since the last restart. Small: a transaction holds up to
/// 4 records (plus its markers), so kills land inside transactions as
/// much as between them, and 20 of them use a fraction of the input.
const KILL_AFTER_OFFSETS_MAX: u64 = 12;
/// The kill points' seed: fixed, so every run waits for the same output
/// growth before each kill (where in a transaction a kill lands still
/// depends on timing, which is the point of killing 20 times).
const KILL_SEED: u64 = 0x5eed_1e55_cafe_f00d;
/// How long the loop may take to move the output to a kill point (a
/// restart of the broker or the client included).
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);

/// xorshift64: the kill points, reproducible without a dependency.
struct KillPoints(u64);

impl KillPoints {
    /// A number in 1..=`max`.
    fn next(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + self.0 % max
    }
}

fn start_loop(node: &Node) -> Client {
    Client::spawn(
        "ck_eos_loop.py run",
        python_script(
            "ck_eos_loop.py",
            &[
                "run",
                &node.bootstrap(),
                "input",
                "output",
                "eos-loop",
                "eos-loop-transactions",
                "--batch",
                "4",
                "--transaction-timeout-ms",
                "8000",
            ],
        ),
        None,
    )
}

/// The output's high watermark, summed over its partitions.
fn output_offsets(node: &Node) -> u64 {
    let ends = end_offsets(
        node.broker.kafka,
        "output",
        LOOP_PARTITIONS,
        READ_UNCOMMITTED,
    );
    ends.into_iter().sum::<i64>() as u64
}

/// How waiting for the loop to move the output ended.
enum Progress {
    Reached,
    /// The loop exited (finished) first.
    Exited,
    /// No progress within [`PROGRESS_TIMEOUT`].
    Stalled,
}

/// Waits until the output's high watermark reaches `target`.
fn wait_for_output(node: &Node, client: &mut Client, target: u64) -> Progress {
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    while output_offsets(node) < target {
        if client.exited() {
            return Progress::Exited;
        }
        if Instant::now() >= deadline {
            return Progress::Stalled;
        }
        thread::sleep(POLL_INTERVAL);
    }
    Progress::Reached
}

/// Runs the loop to completion through [`LOOP_KILLS`] kills; returns the
/// summary of the run that finished.
fn run_loop_with_kills(node: &mut Node) -> Value {
    let mut kill_points = KillPoints(KILL_SEED);
    let mut client = start_loop(node);
    for kill in 0..LOOP_KILLS {
        let target = output_offsets(node) + kill_points.next(KILL_AFTER_OFFSETS_MAX);
        match wait_for_output(node, &mut client, target) {
            Progress::Reached => {}
            Progress::Exited => {
                let stdout = client.output(CLIENT_TIMEOUT);
                panic!("the loop finished after only {kill} kills (more input needed): {stdout}");
            }
            Progress::Stalled => {
                client.signal("KILL");
                let stderr = client.finish(STOP_TIMEOUT).stderr;
                panic!(
                    "after {kill} kills, the loop did not move the output to {target} offsets \
                     in {PROGRESS_TIMEOUT:?}; its stderr:\n{stderr}"
                );
            }
        }
        if kill % 2 == 0 {
            node.restart("KILL");
        } else {
            client.signal("KILL");
            client.finish(STOP_TIMEOUT);
            client = start_loop(node);
        }
    }
    client.json(CLIENT_TIMEOUT)
}

/// The input "k<j>-<seq>" records the seed step writes, per key.
fn expected_per_key() -> BTreeMap<String, Vec<String>> {
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..LOOP_INPUT_RECORDS {
        let key = format!("k{}", i % LOOP_KEYS);
        let sequence = per_key.get(&key).map_or(0, Vec::len);
        let value = format!("{key}-{sequence}").to_uppercase();
        per_key.entry(key).or_default().push(value);
    }
    per_key
}

/// Checks that `output` (read_committed) holds every input record exactly
/// once, uppercased, under its key, in per-key order.
fn check_exactly_once(output: &BTreeMap<i32, Vec<Row>>) {
    let rows: Vec<&Row> = output.values().flatten().collect();
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &rows {
        let key = row.key.clone().expect("every output record has a key");
        per_key.entry(key).or_default().push(row.value.clone());
    }
    let expected = expected_per_key();
    let seen: BTreeSet<&String> = rows.iter().map(|row| &row.value).collect();
    let wanted: BTreeSet<&String> = expected.values().flatten().collect();
    assert_eq!(
        wanted.difference(&seen).count(),
        0,
        "input records missing from the output"
    );
    assert_eq!(seen.len(), LOOP_INPUT_RECORDS, "distinct output records");
    for (key, values) in &per_key {
        let want = expected.get(key).cloned().unwrap_or_default();
        let duplicates = values.len() - values.iter().collect::<BTreeSet<_>>().len();
        let missing: Vec<&String> = want.iter().filter(|v| !values.contains(v)).collect();
        assert_eq!(
            values, &want,
            "key {key}: {duplicates} duplicates, missing {missing:?}"
        );
    }
    assert_eq!(
        per_key.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "keys"
    );
    assert_eq!(rows.len(), LOOP_INPUT_RECORDS, "records in the output");
}

#[test]
fn exactly_once_loop_survives_twenty_kills_of_broker_and_client() {
    python();
    let started = Instant::now();
    let mut node = Node::start_with(CONFIG, &[]);
    for topic in ["input", "output"] {
        create_topic(node.broker.kafka, topic, LOOP_PARTITIONS);
    }
    let count = LOOP_INPUT_RECORDS.to_string();
    let keys = LOOP_KEYS.to_string();
    let seeded = run_json(
        "ck_eos_loop.py seed",
        python_script(
            "ck_eos_loop.py",
            &[
                "seed",
                &node.bootstrap(),
                "input",
                "--count",
                &count,
                "--keys",
                &keys,
            ],
        ),
    );
    assert_eq!(
        integer(field(&seeded, "produced")),
        LOOP_INPUT_RECORDS as i64
    );
    let input_ends = end_offsets(
        node.broker.kafka,
        "input",
        LOOP_PARTITIONS,
        READ_UNCOMMITTED,
    );
    assert_eq!(input_ends.iter().sum::<i64>(), LOOP_INPUT_RECORDS as i64);

    let last_run = run_loop_with_kills(&mut node);

    let committed = read(&node.bootstrap(), "output", "read_committed");
    check_exactly_once(&committed);
    assert_eq!(
        committed_offsets(node.broker.kafka, "eos-loop", "input", LOOP_PARTITIONS),
        input_ends,
        "the group's committed offsets are the input's end"
    );
    let written = read(&node.bootstrap(), "output", "read_uncommitted");
    let written_count: usize = written.values().map(Vec::len).sum();
    eprintln!(
        "exactly-once loop: {LOOP_INPUT_RECORDS} records once each through {LOOP_KILLS} kills \
         in {:.1} s; {} aborted records in the output; the last run: {last_run}",
        started.elapsed().as_secs_f64(),
        written_count - LOOP_INPUT_RECORDS,
    );
}

// ---------------------------------------------------------------------------
// One transaction interrupted by a broker kill.

/// How long a broker may take to reach its crash point.
const CRASH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an open transaction may take to be aborted after a restart
/// (its timeout is 3 s; the check runs every 100 ms).
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn an_open_transaction_is_aborted_at_its_timeout_after_a_broker_kill() {
    python();
    let mut node = Node::start_with(CONFIG, &[]);
    let broker = node.broker.kafka;
    create_topic(broker, "pending", 3);
    let opened = run_json(
        "ck_txn_interrupted.py open",
        python_script(
            "ck_txn_interrupted.py",
            &[
                "open",
                &node.bootstrap(),
                "pending",
                "open-txn",
                "--partitions",
                "3",
                "--count",
                "5",
                "--transaction-timeout-ms",
                "3000",
            ],
        ),
    );
    assert_eq!(integer(field(&opened, "sent")), 15);
    let (state, producer_id) = describe(broker, "open-txn");
    assert_eq!(
        state, "Ongoing",
        "the transaction is open when the broker is killed"
    );
    assert_eq!(
        end_offsets(broker, "pending", 3, READ_UNCOMMITTED),
        [5, 5, 5]
    );
    assert_eq!(
        end_offsets(broker, "pending", 3, READ_COMMITTED),
        [0, 0, 0],
        "the open transaction holds the last stable offsets"
    );

    node.restart("KILL");
    wait_for("the LSO to reach the high watermark", ABORT_TIMEOUT, || {
        end_offsets(broker, "pending", 3, READ_COMMITTED) == [6, 6, 6]
    });
    assert_eq!(
        end_offsets(broker, "pending", 3, READ_UNCOMMITTED),
        [6, 6, 6],
        "5 records and an abort marker in each partition"
    );
    assert_eq!(
        describe(broker, "open-txn"),
        ("CompleteAbort".to_string(), producer_id)
    );
    for partition in 0..3 {
        let fetched = fetch_committed(broker, "pending", partition);
        assert_eq!(
            fetched.last_stable_offset, fetched.high_watermark,
            "{fetched:?}"
        );
        assert_eq!(
            fetched.aborted,
            [(producer_id, 0)],
            "[{partition}] lists the transaction as aborted"
        );
    }
    let committed = read(&node.bootstrap(), "pending", "read_committed");
    assert!(
        committed.values().all(Vec::is_empty),
        "read_committed sees nothing of the aborted transaction: {committed:?}"
    );
    let written = read(&node.bootstrap(), "pending", "read_uncommitted");
    for partition in 0..3 {
        let expected: Vec<String> = (0..5).map(|i| format!("open-{partition}-{i}")).collect();
        assert_eq!(
            values(&written[&partition]),
            expected,
            "[{partition}]: the records were durable before the kill"
        );
    }
}

/// The crash point's environment variable (engine/src/transaction/complete.rs).
const CRASH_VARIABLE: &str = "SLUICE_TEST_CRASH";

/// Waits until the broker has crashed at its crash point; fails if the
/// client finishes first (then the commit went through or failed).
fn wait_for_crash(node: &mut Node, client: &mut Client) {
    let deadline = Instant::now() + CRASH_TIMEOUT;
    let status = loop {
        if let Some(status) = node.broker.exited() {
            break status;
        }
        assert!(
            !client.exited(),
            "the client finished before the broker crashed"
        );
        assert!(
            Instant::now() < deadline,
            "no crash within {CRASH_TIMEOUT:?}"
        );
        thread::sleep(POLL_INTERVAL);
    };
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    let lines = node.broker.stderr_lines();
    assert!(
        lines.iter().any(|line| line.contains("after-first-marker")),
        "the broker stopped at its crash point: {lines:#?}"
    );
}

#[test]
fn a_commit_cut_short_after_its_first_marker_is_finished_by_recovery() {
    python();
    let mut node = Node::start_with(CONFIG, &[(CRASH_VARIABLE, "after-first-marker")]);
    let broker = node.broker.kafka;
    let partitions = 4;
    create_topic(broker, "ledger", partitions);
    let mut client = Client::spawn(
        "ck_txn_interrupted.py commit",
        python_script(
            "ck_txn_interrupted.py",
            &[
                "commit",
                &node.bootstrap(),
                "ledger",
                "commit-txn",
                "ledger-group",
                "--partitions",
                &partitions.to_string(),
                "--count",
                "5",
            ],
        ),
        None,
    );
    wait_for_crash(&mut node, &mut client);
    // The commit never got its answer; the client is of no more use.
    client.signal("KILL");
    client.finish(STOP_TIMEOUT);

    node.start_again();
    let mut lines = Vec::new();
    wait_for(
        "recovery to report the interrupted commit",
        STOP_TIMEOUT,
        || {
            lines.extend(node.broker.stderr_lines());
            lines.iter().any(|line| {
                line.contains("finishing a transaction interrupted by a restart")
                    && line.contains("PrepareCommit")
            })
        },
    );
    // Recovery runs before the ready line: nothing to wait for.
    let high_watermarks = end_offsets(broker, "ledger", partitions, READ_UNCOMMITTED);
    assert_eq!(
        end_offsets(broker, "ledger", partitions, READ_COMMITTED),
        high_watermarks,
        "no partition holds an open transaction"
    );
    for partition in 0..partitions {
        let fetched = fetch_committed(broker, "ledger", partition);
        assert_eq!(
            fetched.last_stable_offset, fetched.high_watermark,
            "{fetched:?}"
        );
        assert!(fetched.aborted.is_empty(), "[{partition}]: {fetched:?}");
    }
    assert_eq!(describe(broker, "commit-txn").0, "CompleteCommit");
    let committed = read(&node.bootstrap(), "ledger", "read_committed");
    for partition in 0..partitions {
        let expected: Vec<String> = (0..5).map(|i| format!("commit-{partition}-{i}")).collect();
        assert_eq!(values(&committed[&partition]), expected, "[{partition}]");
    }
    assert_eq!(
        committed_offsets(broker, "ledger-group", "ledger", partitions),
        [100, 101, 102, 103],
        "the transaction's consumer offsets are committed with it"
    );
}
