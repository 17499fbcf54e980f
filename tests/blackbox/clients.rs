//! Real Kafka clients against a real broker: kafkajs (Node), confluent-kafka
//! (librdkafka, Python), kafka-python and kcat. The client side of each
//! scenario is a script under tests/clients/ that takes the bootstrap address
//! on its command line and prints one JSON object; these tests start
//! `sluice serve` on a temporary directory, run the script and check what the
//! client saw, so each test asserts on what a real application would observe.
//!
//! `scripts/test` installs the clients (kcat, the Python venv, node_modules).
//! A missing client fails the test with a message saying so: these tests are
//! the compatibility guarantee and must never pass by skipping.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use tempfile::TempDir;

use crate::harness::{sluice_binary, Broker};
use crate::kafka::KafkaClient;

/// How long one client script may run; each script bounds its own steps
/// (30 s each), this only catches a client that hangs outright.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// How long the broker may take to stop after SIGTERM or SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a waiting test looks at its condition again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Broker settings for group tests: no initial rebalance delay, so a group's
/// first generation forms as soon as its members have joined.
const BROKER_CONFIG: &str = "[groups]\ninitial_rebalance_delay_ms = 0\n";

// ---------------------------------------------------------------------------
// Locating the clients.

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn not_installed(what: &str, detail: &str) -> ! {
    panic!(
        "{what} is not installed ({detail}): run scripts/test, which installs the \
         test clients (kcat, tests/clients/python/.venv, tests/clients/node/node_modules)"
    )
}

/// Runs `command` to see whether a tool works; `Err` says why not.
fn probe(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{command:?}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} exited {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The venv's Python, once it has been seen to import both Python clients.
fn python() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let python = repo_root().join("tests/clients/python/.venv/bin/python");
        probe(Command::new(&python).args(["-c", "import confluent_kafka, kafka"]))?;
        Ok(python)
    });
    match checked {
        Ok(python) => python.clone(),
        Err(detail) => not_installed("the Python test clients", detail),
    }
}

/// The folder holding the kafkajs script, once `node` and kafkajs are there.
fn node_dir() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let dir = repo_root().join("tests/clients/node");
        probe(
            Command::new("node")
                .args(["-e", "require('kafkajs')"])
                .current_dir(&dir),
        )?;
        Ok(dir)
    });
    match checked {
        Ok(dir) => dir.clone(),
        Err(detail) => not_installed("node or kafkajs", detail),
    }
}

fn kcat() -> Command {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| probe(Command::new("kcat").arg("-V")));
    if let Err(detail) = checked {
        not_installed("kcat", detail);
    }
    Command::new("kcat")
}

/// `python tests/clients/python/<script> <args>`.
fn python_script(script: &str, args: &[&str]) -> Command {
    let mut command = Command::new(python());
    command
        .arg(repo_root().join("tests/clients/python").join(script))
        .args(args)
        // No __pycache__ folders in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

// ---------------------------------------------------------------------------
// Running clients.

/// A client process with its output collected on background threads; killed
/// if dropped while still running.
struct Client {
    what: String,
    child: Option<Child>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished client left behind.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn collect(mut stream: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Client {
    /// Starts `command`, writing `input` (if any) to its stdin and closing it.
    fn spawn(what: &str, mut command: Command, input: Option<&str>) -> Self {
        let mut child = command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("{what}: starting {command:?}: {error}"));
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(input.as_bytes())
                .unwrap_or_else(|error| panic!("{what}: writing stdin: {error}"));
        }
        let stdout = collect(child.stdout.take().expect("piped stdout"));
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        Self {
            what: what.to_string(),
            child: Some(child),
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Sends `signal` (e.g. "TERM") to the client.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "{}: kill -{signal} {pid}", self.what);
    }

    /// Waits for the client to exit (killing it after `timeout`).
    fn finish(mut self, timeout: Duration) -> Finished {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = self.stderr.take().expect("stderr").join().unwrap();
                panic!(
                    "{}: still running after {timeout:?}, killed; stderr:\n{stderr}",
                    self.what
                );
            }
            thread::sleep(POLL_INTERVAL);
        };
        Finished {
            status,
            stdout: self.stdout.take().expect("stdout").join().unwrap(),
            stderr: self.stderr.take().expect("stderr").join().unwrap(),
        }
    }

    /// Waits for a successful exit and returns stdout.
    fn output(self, timeout: Duration) -> String {
        let what = self.what.clone();
        let finished = self.finish(timeout);
        assert!(
            finished.status.success(),
            "{what} failed ({}):\nstderr:\n{}\nstdout:\n{}",
            finished.status,
            finished.stderr,
            finished.stdout
        );
        finished.stdout
    }

    /// Waits for a successful exit and parses the last stdout line as JSON.
    fn json(self, timeout: Duration) -> Value {
        let what = self.what.clone();
        let stdout = self.output(timeout);
        let line = stdout.lines().rev().find(|line| !line.trim().is_empty());
        let line = line.unwrap_or_else(|| panic!("{what}: no output"));
        serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("{what}: output is not JSON ({error}): {line}"))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a client to completion and returns its JSON result.
fn run_json(what: &str, command: Command) -> Value {
    Client::spawn(what, command, None).json(CLIENT_TIMEOUT)
}

/// Polls `condition` until it holds; fails after `timeout` naming `what`.
fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        thread::sleep(POLL_INTERVAL);
    }
}

// ---------------------------------------------------------------------------
// The broker.

/// A broker on a temporary directory (data in `data/`, config beside it).
/// If the test panics, the broker's log is printed, to show its side.
struct Node {
    dir: TempDir,
    broker: Broker,
}

impl Node {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sluice.toml"), BROKER_CONFIG).unwrap();
        let broker = Self::spawn(dir.path(), "127.0.0.1:0");
        Self { dir, broker }
    }

    fn spawn(dir: &Path, listen: &str) -> Broker {
        let mut command = Command::new(sluice_binary());
        command
            .args(["serve", "--listen", listen, "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(dir.join("sluice.toml"));
        Broker::spawn(command)
    }

    /// The bootstrap address clients are given.
    fn bootstrap(&self) -> String {
        self.broker.kafka.to_string()
    }

    /// Stops the broker with `signal` ("TERM": must exit 0; "KILL").
    fn stop(&mut self, signal: &str) {
        let status = self.broker.stop_with(signal, STOP_TIMEOUT);
        if signal == "TERM" {
            assert!(status.success(), "exit after SIGTERM: {status:?}");
        }
    }

    /// Starts a new broker on the same data directory and the same Kafka
    /// address, so clients that stay connected across a restart find it.
    fn start_again(&mut self) {
        let kafka: SocketAddr = self.broker.kafka;
        self.broker = Self::spawn(self.dir.path(), &kafka.to_string());
        assert_eq!(self.broker.kafka, kafka);
    }

    fn restart(&mut self, signal: &str) {
        self.stop(signal);
        self.start_again();
    }

    fn print_log_if_panicking(&self) {
        if thread::panicking() {
            for line in self.broker.stderr_lines() {
                eprintln!("broker: {line}");
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.print_log_if_panicking();
    }
}

/// Creates `name` with `partitions` partitions over the test's own codec.
fn create_topic(broker: SocketAddr, name: &str, partitions: i32) {
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(partitions)
        .with_replication_factor(1);
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(5_000);
    let results = KafkaClient::connect(broker).call(request, 7).topics;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].error_code, 0, "{:?}", results[0].error_message);
}

// ---------------------------------------------------------------------------
// Reading the JSON the scripts print.

fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("no {key:?} in {value}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|item| item.as_str().expect("string").to_string())
        .collect()
}

fn integer(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("not an integer: {value}"))
}

/// A JSON object {partition: x} as a map, each x through `convert`.
fn by_partition<T>(value: &Value, convert: impl Fn(&Value) -> T) -> BTreeMap<String, T> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .iter()
        .map(|(partition, x)| (partition.clone(), convert(x)))
        .collect()
}

/// The same `value` for partitions "0".."partitions".
fn each_partition<T: Clone>(partitions: usize, value: T) -> BTreeMap<String, T> {
    (0..partitions)
        .map(|partition| (partition.to_string(), value.clone()))
        .collect()
}

/// Partition → the values `read_all.py` found there, in offset order, after
/// checking the offsets run 0, 1, 2, … without gaps.
fn read_topic(bootstrap: &str, topic: &str) -> BTreeMap<String, Vec<String>> {
    let read = run_json(
        "read_all.py",
        python_script("read_all.py", &[bootstrap, topic]),
    );
    let partitions = field(&read, "partitions").as_object().expect("object");
    partitions
        .iter()
        .map(|(partition, rows)| {
            let rows = rows.as_array().expect("rows");
            let values = rows
                .iter()
                .enumerate()
                .map(|(index, row)| {
                    assert_eq!(integer(&row[0]), index as i64, "offsets of [{partition}]");
                    row[2].as_str().expect("value").to_string()
                })
                .collect();
            (partition.clone(), values)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// kafkajs.

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

// ---------------------------------------------------------------------------
// confluent-kafka.

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

// ---------------------------------------------------------------------------
// kafka-python.

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

// ---------------------------------------------------------------------------
// kcat.

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
