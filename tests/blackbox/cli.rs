//! The client verbs (`sluice topic|produce|consume|group`) as a user runs
//! them: the real binary as a subprocess with `--brokers` pointing at a
//! real `sluice serve`, asserting on what it prints and its exit status.
//!
//! Partition placement is checked against an independent murmur2 written
//! here and pinned to Kafka's own test vectors, so a keyed record must land
//! where a Java producer would have put it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;

use crate::harness::{sluice_binary, Broker};

/// How long one CLI run may take before the test fails (they take well
/// under a second; this only catches a hang).
pub(crate) const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a waiting test looks at its condition again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Broker settings for group tests: no initial rebalance delay, so a
/// group's first generation forms as soon as its member has joined.
pub(crate) const GROUP_CONFIG: &str = "[groups]\ninitial_rebalance_delay_ms = 0\n";

// ---------------------------------------------------------------------------
// Running the CLI.

/// What one CLI run left behind.
pub(crate) struct Run {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// stdout, after checking the run succeeded.
    pub(crate) fn ok(self) -> String {
        assert!(
            self.status.success(),
            "sluice failed ({}): stderr: {}",
            self.status,
            self.stderr
        );
        self.stdout
    }

    /// stdout parsed as one JSON document.
    pub(crate) fn json(self) -> Value {
        let stdout = self.ok();
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: not JSON: {stdout}"))
    }

    /// stdout parsed as one JSON object per line.
    pub(crate) fn json_lines(self) -> Vec<Value> {
        self.ok()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

/// `sluice ARGS --brokers ADDR`, stdin fed from `input`.
pub(crate) fn sluice(broker: &str, args: &[&str], input: &str) -> Run {
    let child = spawn(broker, args, Stdio::piped());
    finish(child, input, CLI_TIMEOUT)
}

fn spawn(broker: &str, args: &[&str], stdin: Stdio) -> Child {
    Command::new(sluice_binary())
        .args(args)
        .args(["--brokers", broker])
        .env_remove("SLUICE_BROKERS")
        .env_remove("RUST_LOG")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning sluice")
}

/// Writes `input`, closes stdin and waits (killing the child after `timeout`).
fn finish(mut child: Child, input: &str, timeout: Duration) -> Run {
    if let Some(mut stdin) = child.stdin.take() {
        // A run that fails early (no broker) may close stdin first.
        let _ = stdin.write_all(input.as_bytes());
    }
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sluice did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        stdout: out.join().unwrap().expect("read stdout"),
        stderr: err.join().unwrap().expect("read stderr"),
    }
}

pub(crate) fn start_broker(dir: &TempDir, config: Option<&str>) -> Broker {
    let data = dir.path().join("data");
    match config {
        None => Broker::start(&data, &[]),
        Some(text) => {
            let path = dir.path().join("sluice.toml");
            std::fs::write(&path, text).unwrap();
            Broker::start(&data, &["--config", path.to_str().unwrap()])
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------------------
// Kafka's partitioner, written independently of the CLI's.

/// Kafka's `Utils.murmur2`.
fn murmur2(data: &[u8]) -> i32 {
    let m: i32 = 0x5bd1_e995;
    let mut h: i32 = 0x9747_b28c_u32 as i32 ^ data.len() as i32;
    let words = data.len() / 4;
    for i in 0..words {
        let b = &data[i * 4..i * 4 + 4];
        let mut k = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(m);
        k ^= ((k as u32) >> 24) as i32;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let tail = &data[words * 4..];
    match tail.len() {
        3 => {
            h ^= i32::from(tail[2]) << 16;
            h ^= i32::from(tail[1]) << 8;
            h ^= i32::from(tail[0]);
            h = h.wrapping_mul(m);
        }
        2 => {
            h ^= i32::from(tail[1]) << 8;
            h ^= i32::from(tail[0]);
            h = h.wrapping_mul(m);
        }
        1 => {
            h ^= i32::from(tail[0]);
            h = h.wrapping_mul(m);
        }
        _ => {}
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    h
}

/// Kafka's default partition for a keyed record.
fn kafka_partition(key: &str, partitions: i32) -> i64 {
    i64::from((murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions)
}

#[test]
fn murmur2_matches_kafka_utils_test() {
    // org.apache.kafka.common.utils.UtilsTest#testMurmur2.
    let vectors: [(&str, i32); 6] = [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        ("abc", 479_470_107),
    ];
    for (input, hash) in vectors {
        assert_eq!(murmur2(input.as_bytes()), hash, "murmur2({input:?})");
    }
    // The empty key: seed ^ 0 through the final mix only.
    assert_eq!(murmur2(b""), 275_646_681);
    // toPositive(-790332482) = 1357151166.
    assert_eq!(kafka_partition("foobar", 7), 1_357_151_166 % 7);
}

// ---------------------------------------------------------------------------
// Topics.

fn config<'a>(describe: &'a Value, name: &str) -> &'a Value {
    describe["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no config {name} in {describe}"))
}

fn listed(broker: &str) -> Vec<Value> {
    let list = sluice(broker, &["topic", "list", "--format", "json"], "").json();
    list.as_array().expect("a JSON array").clone()
}

#[test]
fn topic_create_list_describe_alter_delete() {
    let dir = TempDir::new().unwrap();
    let broker = start_broker(&dir, None);
    let addr = &broker.kafka.to_string();

    let created = sluice(
        addr,
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
        "",
    )
    .ok();
    assert!(created.contains("orders"), "{created}");
    let again = sluice(addr, &["topic", "create", "orders"], "");
    assert!(!again.status.success());
    assert!(
        again.stderr.contains("TOPIC_ALREADY_EXISTS"),
        "{}",
        again.stderr
    );

    let topics = listed(addr);
    let orders = topics
        .iter()
        .find(|t| t["name"] == "orders")
        .expect("listed");
    assert_eq!(orders["partitions"], 3);

    let described = sluice(
        addr,
        &["topic", "describe", "orders", "--format", "json"],
        "",
    )
    .json();
    assert_eq!(described["name"], "orders");
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    for (index, partition) in partitions.iter().enumerate() {
        assert_eq!(partition["partition"], index);
        assert_eq!(partition["log_start_offset"], 0);
        assert_eq!(partition["high_watermark"], 0);
    }
    assert_eq!(config(&described, "retention.ms")["value"], "3600000");
    assert_eq!(config(&described, "retention.ms")["source"], "topic");
    assert_eq!(config(&described, "cleanup.policy")["source"], "default");

    // Records move the high watermark that describe reports.
    sluice(addr, &["produce", "orders", "--partition", "1"], "a\nb\n").ok();
    let described = sluice(
        addr,
        &["topic", "describe", "orders", "--format", "json"],
        "",
    )
    .json();
    assert_eq!(described["partitions"][1]["high_watermark"], 2);
    assert_eq!(described["partitions"][0]["high_watermark"], 0);

    let alter = [
        "topic",
        "alter-config",
        "orders",
        "--set",
        "cleanup.policy=compact",
        "--delete",
        "retention.ms",
    ];
    sluice(addr, &alter, "").ok();
    let described = sluice(
        addr,
        &["topic", "describe", "orders", "--format", "json"],
        "",
    )
    .json();
    assert_eq!(config(&described, "cleanup.policy")["value"], "compact");
    assert_eq!(config(&described, "cleanup.policy")["source"], "topic");
    assert_eq!(config(&described, "retention.ms")["source"], "default");
    assert_ne!(config(&described, "retention.ms")["value"], "3600000");
    let bad = sluice(
        addr,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=soon",
        ],
        "",
    );
    assert!(!bad.status.success(), "a bad value is refused");
    assert!(bad.stderr.contains("INVALID_CONFIG"), "{}", bad.stderr);

    sluice(addr, &["topic", "create", "scratch", "-p", "1"], "").ok();
    sluice(addr, &["topic", "delete", "orders", "scratch"], "").ok();
    assert!(listed(addr).is_empty(), "{:?}", listed(addr));
    let gone = sluice(addr, &["topic", "delete", "orders"], "");
    assert!(!gone.status.success());
    assert!(
        gone.stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{}",
        gone.stderr
    );
    let gone = sluice(addr, &["topic", "describe", "orders"], "");
    assert!(!gone.status.success());
    assert!(
        gone.stderr.contains("'orders' does not exist"),
        "{}",
        gone.stderr
    );
}

// ---------------------------------------------------------------------------
// Produce and consume.

#[test]
fn keyed_lines_land_on_murmur2_partitions_and_come_back_as_json() {
    let dir = TempDir::new().unwrap();
    let broker = start_broker(&dir, None);
    let addr = &broker.kafka.to_string();
    sluice(addr, &["topic", "create", "events", "-p", "4"], "").ok();

    let lines: Vec<(String, String)> = (0..40)
        .map(|i| (format!("user-{i}"), format!("event {i}|with=separator")))
        .collect();
    let input: String = lines.iter().map(|(k, v)| format!("{k}|{v}\n")).collect();
    let args = [
        "produce",
        "events",
        "--key-separator",
        "|",
        "--header",
        "source=cli",
        "--header",
        "trace=a=b",
        "--compression",
        "lz4",
    ];
    let produced = sluice(addr, &args, &input);
    assert!(
        produced.stderr.contains("produced 40 records"),
        "{}",
        produced.stderr
    );
    produced.ok();

    let records = sluice(addr, &["consume", "events", "-e", "--format", "json"], "").json_lines();
    assert_eq!(records.len(), lines.len());
    let mut by_partition: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for record in &records {
        assert_eq!(record["topic"], "events");
        let key = record["key"].as_str().expect("a key");
        assert_eq!(
            record["partition"].as_i64().unwrap(),
            kafka_partition(key, 4),
            "partition of key {key}"
        );
        assert_eq!(
            record["headers"],
            serde_json::json!({"source": "cli", "trace": "a=b"})
        );
        assert!(record["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        by_partition
            .entry(record["partition"].as_i64().unwrap())
            .or_default()
            .push(record);
    }
    assert!(by_partition.len() > 1, "40 keys spread over partitions");
    // Within a partition: offsets 0.. in the order the lines were written.
    for (partition, records) in &by_partition {
        let expected: Vec<(&str, &str)> = lines
            .iter()
            .filter(|(k, _)| kafka_partition(k, 4) == *partition)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let got: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r["key"].as_str().unwrap(), r["value"].as_str().unwrap()))
            .collect();
        assert_eq!(got, expected, "partition {partition}");
        let offsets: Vec<i64> = records
            .iter()
            .map(|r| r["offset"].as_i64().unwrap())
            .collect();
        assert_eq!(offsets, (0..records.len() as i64).collect::<Vec<_>>());
    }

    // One partition only, text format, -n stops early.
    let (&partition, records) = by_partition.iter().next().unwrap();
    let partition = partition.to_string();
    let text = sluice(
        addr,
        &["consume", "events", "-e", "--partition", &partition],
        "",
    )
    .ok();
    let values: Vec<&str> = records
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), values);
    let two = sluice(addr, &["consume", "events", "-n", "2"], "").ok();
    assert_eq!(two.lines().count(), 2, "{two}");

    // Keyless lines go round robin: one per partition.
    sluice(addr, &["produce", "events"], "x\ny\nz\nw\n").ok();
    let all = sluice(addr, &["consume", "events", "-e", "--format", "json"], "").json_lines();
    let keyless: Vec<i64> = all
        .iter()
        .filter(|r| r["key"].is_null())
        .map(|r| r["partition"].as_i64().unwrap())
        .collect();
    let mut sorted = keyless.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3], "{keyless:?}");
}

#[test]
fn consume_from_a_timestamp() {
    let dir = TempDir::new().unwrap();
    let broker = start_broker(&dir, None);
    let addr = &broker.kafka.to_string();
    sluice(addr, &["topic", "create", "ticks", "-p", "2"], "").ok();
    sluice(addr, &["produce", "ticks"], "old-1\nold-2\nold-3\n").ok();
    thread::sleep(Duration::from_millis(20));
    let cut = now_ms();
    thread::sleep(Duration::from_millis(20));
    sluice(addr, &["produce", "ticks"], "new-1\nnew-2\n").ok();

    let from = format!("@{cut}");
    let args = [
        "consume", "ticks", "--from", &from, "-e", "--format", "json",
    ];
    let records = sluice(addr, &args, "").json_lines();
    let mut values: Vec<&str> = records
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    values.sort_unstable();
    assert_eq!(values, ["new-1", "new-2"]);
    for record in &records {
        assert!(record["timestamp"].as_i64().unwrap() >= cut, "{record}");
    }

    let everything = sluice(
        addr,
        &["consume", "ticks", "--from", "2000-01-01T00:00:00Z", "-e"],
        "",
    )
    .ok();
    assert_eq!(everything.lines().count(), 5, "{everything}");
    let future = sluice(
        addr,
        &[
            "consume",
            "ticks",
            "--from",
            "2100-01-01T00:00:00+02:00",
            "-e",
        ],
        "",
    )
    .ok();
    assert_eq!(future, "", "nothing that new");
    let bad = sluice(addr, &["consume", "ticks", "--from", "yesterday"], "");
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("RFC 3339"), "{}", bad.stderr);
}

// ---------------------------------------------------------------------------
// Consumer groups.

/// `group describe --format json`.
pub(crate) fn describe_group(broker: &str, group: &str) -> Value {
    sluice(
        broker,
        &["group", "describe", group, "--format", "json"],
        "",
    )
    .json()
}

/// Lag per partition of `group` on `topic`.
pub(crate) fn lags(described: &Value, topic: &str) -> BTreeMap<i64, i64> {
    described["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["topic"] == topic)
        .map(|o| {
            (
                o["partition"].as_i64().unwrap(),
                o["lag"].as_i64().expect("a lag"),
            )
        })
        .collect()
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + CLI_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(POLL_INTERVAL);
    }
}

#[test]
fn group_commits_lag_and_reset() {
    let dir = TempDir::new().unwrap();
    let broker = start_broker(&dir, Some(GROUP_CONFIG));
    let addr = &broker.kafka.to_string();
    sluice(addr, &["topic", "create", "jobs", "-p", "2"], "").ok();
    let first: String = (0..10).map(|i| format!("k{i}:v{i}\n")).collect();
    sluice(addr, &["produce", "jobs", "-K", ":"], &first).ok();

    let group = [
        "consume", "jobs", "--group", "billing", "-e", "--format", "json",
    ];
    assert_eq!(sluice(addr, &group, "").json_lines().len(), 10);
    assert_eq!(sluice(addr, &group, "").ok(), "", "offsets were committed");

    let described = describe_group(addr, "billing");
    assert_eq!(described["state"], "Empty", "the member left: {described}");
    assert_eq!(lags(&described, "jobs"), BTreeMap::from([(0, 0), (1, 0)]));
    assert_eq!(described["total_lag"], 0);

    let keys = ["late-a", "late-b", "late-c"];
    let more: String = keys.iter().map(|k| format!("{k}:x\n")).collect();
    sluice(addr, &["produce", "jobs", "-K", ":"], &more).ok();
    let mut expected = BTreeMap::from([(0, 0), (1, 0)]);
    for key in keys {
        *expected.get_mut(&kafka_partition(key, 2)).unwrap() += 1;
    }
    let described = describe_group(addr, "billing");
    assert_eq!(lags(&described, "jobs"), expected);
    assert_eq!(described["total_lag"], 3);

    // -n commits exactly what it printed.
    let one = [
        "consume", "jobs", "--group", "billing", "-n", "1", "--format", "json",
    ];
    assert_eq!(sluice(addr, &one, "").json_lines().len(), 1);
    assert_eq!(describe_group(addr, "billing")["total_lag"], 2);

    let reset = [
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "jobs",
        "--to",
        "earliest",
    ];
    let dry: Vec<&str> = reset.iter().copied().chain(["--dry-run"]).collect();
    sluice(addr, &dry, "").ok();
    assert_eq!(
        describe_group(addr, "billing")["total_lag"],
        2,
        "dry run commits nothing"
    );
    sluice(addr, &reset, "").ok();
    assert_eq!(describe_group(addr, "billing")["total_lag"], 13);
    let again = sluice(addr, &group, "").json_lines();
    assert_eq!(again.len(), 13, "everything again after the reset");

    // A live member: reset is refused; SIGTERM commits, leaves, exits 0.
    sluice(addr, &["produce", "jobs"], "tail\n").ok();
    let live = spawn(
        addr,
        &["consume", "jobs", "--group", "billing"],
        Stdio::null(),
    );
    wait_for("the live member's generation", || {
        let described = describe_group(addr, "billing");
        described["state"] == "Stable" && described["total_lag"] == 0
    });
    let refused = sluice(addr, &reset, "");
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("stop its consumers first"),
        "{}",
        refused.stderr
    );
    let kill = Command::new("kill")
        .args(["-TERM", &live.id().to_string()])
        .status();
    assert!(kill.unwrap().success());
    let stopped = finish(live, "", CLI_TIMEOUT);
    assert!(
        stopped.status.success(),
        "exit on SIGTERM: {}",
        stopped.stderr
    );
    assert_eq!(stopped.stdout, "tail\n");
    let described = describe_group(addr, "billing");
    assert_eq!(
        described["state"], "Empty",
        "LeaveGroup on exit: {described}"
    );
    assert_eq!(described["total_lag"], 0);

    let listed = sluice(addr, &["group", "list", "--format", "json"], "").json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "billing"),
        "{listed}"
    );
    sluice(addr, &["group", "delete", "billing"], "").ok();
    let listed = sluice(addr, &["group", "list", "--format", "json"], "").json();
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "billing"),
        "{listed}"
    );
}

// ---------------------------------------------------------------------------
// Errors.

#[test]
fn no_broker_listening_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    for args in [
        &["topic", "list"][..],
        &["produce", "t"],
        &["consume", "t", "-e"],
        &["group", "list"],
    ] {
        let run = sluice(&addr, args, "line\n");
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(run.stderr.contains(&addr), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("connection refused"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("SLUICE_BROKERS"),
            "{args:?}: {}",
            run.stderr
        );
    }
}
