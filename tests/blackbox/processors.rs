//! WebAssembly processors end to end: real plugins deployed with the CLI on
//! a real broker, records produced and consumed with kcat (librdkafka).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{GroupId, JoinGroupRequest, LeaveGroupRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use tempfile::TempDir;

use crate::harness::{sluice_binary, Broker};
use crate::kafka::KafkaClient;
use crate::plugins::wasm;

/// Longest wait for a processor to reach a state.
const WAIT: Duration = Duration::from_secs(60);

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i64,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: BTreeMap<String, String>,
}

/// A broker on a temporary directory, and the CLI pointed at it.
pub struct Pipeline {
    dir: TempDir,
    pub broker: Broker,
}

impl Pipeline {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Self::spawn(dir.path(), "127.0.0.1:0");
        Self { dir, broker }
    }

    fn spawn(dir: &Path, listen: &str) -> Broker {
        let mut command = Command::new(sluice_binary());
        command
            .args([
                "serve",
                "--listen",
                listen,
                "--http",
                "127.0.0.1:0",
                "--flush",
                "never",
            ])
            .arg("--data-dir")
            .arg(dir.join("data"));
        Broker::spawn(command)
    }

    /// Stops the broker with `signal` and starts it again on the same
    /// directory and Kafka address.
    pub fn restart(&mut self, signal: &str) {
        let kafka = self.broker.kafka;
        let status = self.broker.stop_with(signal, Duration::from_secs(10));
        if signal == "TERM" {
            assert!(status.success(), "exit after SIGTERM: {status:?}");
        }
        self.broker = Self::spawn(self.dir.path(), &kafka.to_string());
    }

    /// Runs `sluice ARGS` against this broker; returns the output.
    pub fn sluice(&self, args: &[&str]) -> Output {
        Command::new(sluice_binary())
            .args(args)
            .env("SLUICE_BROKERS", self.broker.kafka.to_string())
            .env("SLUICE_ADMIN", format!("http://{}", self.broker.http))
            .output()
            .expect("running sluice")
    }

    /// Like [`Pipeline::sluice`], but the command must succeed; returns stdout.
    pub fn sluice_ok(&self, args: &[&str]) -> String {
        let output = self.sluice(args);
        assert!(
            output.status.success(),
            "sluice {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.sluice_ok(&[
            "topic",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
        ]);
    }

    /// Produces `key\tvalue` records with kcat, partitioned like Kafka's
    /// Java client (murmur2 of the key).
    pub fn produce(&self, topic: &str, records: &[(Option<&str>, &str)]) {
        let mut child = Command::new("kcat")
            .args([
                "-P",
                "-q",
                "-b",
                &self.broker.kafka.to_string(),
                "-t",
                topic,
            ])
            .args([
                "-K",
                "\t",
                "-X",
                "partitioner=murmur2_random",
                "-X",
                "acks=all",
            ])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kcat (installed by scripts/test)");
        let mut input = String::new();
        for (key, value) in records {
            input.push_str(&format!("{}\t{value}\n", key.unwrap_or("")));
        }
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kcat produce: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Every record of `topic` now, read with kcat, by partition then offset.
    pub fn consume(&self, topic: &str) -> Vec<Consumed> {
        let output = Command::new("kcat")
            .args([
                "-C",
                "-q",
                "-e",
                "-J",
                "-b",
                &self.broker.kafka.to_string(),
                "-t",
                topic,
            ])
            .output()
            .expect("kcat");
        assert!(
            output.status.success(),
            "kcat consume: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Lossy: a binary key or value is not UTF-8 (kcat writes it raw).
        let mut records: Vec<Consumed> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                let message: Value = serde_json::from_str(line).unwrap();
                let text = |v: &Value| v.as_str().map(str::to_string);
                let headers = message["headers"]
                    .as_array()
                    .map(|pairs| {
                        pairs
                            .chunks(2)
                            .map(|kv| (text(&kv[0]).unwrap(), text(&kv[1]).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                Consumed {
                    partition: message["partition"].as_i64().unwrap(),
                    offset: message["offset"].as_i64().unwrap(),
                    key: text(&message["key"]),
                    value: text(&message["payload"]),
                    headers,
                }
            })
            .collect();
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }

    /// The processor's status from the admin API.
    pub fn status(&self, name: &str) -> Value {
        let (code, body) = self.broker.http_get(&format!("/v1/processors/{name}"));
        assert_eq!(code, 200, "status of {name}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until `condition` holds for the processor's status.
    pub fn wait_for(&self, name: &str, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.status(name);
            if condition(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {status:#}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every input record has been processed and committed.
    pub fn wait_caught_up(&self, name: &str, records_in: u64) -> Value {
        self.wait_for(name, &format!("{records_in} records in, lag 0"), |s| {
            s["records_in"].as_u64() >= Some(records_in) && s["lag"] == 0
        })
    }

    /// `sluice processor deploy NAME --wasm PLUGIN ARGS…`.
    pub fn deploy(&self, name: &str, plugin: &str, args: &[&str]) -> String {
        let wasm = wasm(plugin);
        let mut all = vec![
            "processor",
            "deploy",
            name,
            "--wasm",
            wasm.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        self.sluice_ok(&all)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if thread::panicking() {
            for line in self.broker.stderr_lines() {
                eprintln!("broker: {line}");
            }
        }
    }
}

/// Asserts that `status` (a processor's or a partition's) has a last error
/// whose message contains `needle`.
fn assert_last_error(status: &Value, needle: &str) {
    let message = status["last_error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "no {needle:?} in {status:#}");
}

fn values(records: &[Consumed]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.value.clone().unwrap_or_default())
        .collect()
}

/// Values per key, in offset order (within a partition).
fn per_key(records: &[Consumed]) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records {
        keys.entry(record.key.clone().unwrap_or_default())
            .or_default()
            .push(record.value.clone().unwrap_or_default());
    }
    keys
}

#[test]
fn uppercase_maps_every_record_keeping_keys_partitions_and_order() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("words", 3);
    pipeline.create_topic("shout", 3);
    let records: Vec<(String, String)> = (0..300)
        .map(|i| (format!("user-{}", i % 7), format!("hello {i}")))
        .collect();
    let borrowed: Vec<(Option<&str>, &str)> = records
        .iter()
        .map(|(k, v)| (Some(k.as_str()), v.as_str()))
        .collect();
    pipeline.produce("words", &borrowed[..150]);
    let deployed = pipeline.deploy(
        "shouter",
        "uppercase",
        &["--input", "words", "--output", "shout"],
    );
    assert!(deployed.contains("shouter"), "{deployed}");
    pipeline.produce("words", &borrowed[150..]);
    let status = pipeline.wait_caught_up("shouter", 300);
    assert_eq!(status["records_out"], 300);
    assert_eq!(status["errors"], 0);
    assert_eq!(status["group"], "sluice-processor-shouter");

    let inputs = pipeline.consume("words");
    let outputs = pipeline.consume("shout");
    assert_eq!(outputs.len(), 300);
    let expected: BTreeMap<String, Vec<String>> = per_key(&inputs)
        .into_iter()
        .map(|(k, v)| (k, v.iter().map(|s| s.to_uppercase()).collect()))
        .collect();
    assert_eq!(
        per_key(&outputs),
        expected,
        "same keys, upper-cased values, same order per key"
    );
    // murmur2 of the key, like the producer: each key stays in its partition.
    let partition_of = |records: &[Consumed]| -> BTreeMap<String, i64> {
        records
            .iter()
            .map(|r| (r.key.clone().unwrap(), r.partition))
            .collect()
    };
    assert_eq!(partition_of(&outputs), partition_of(&inputs));

    // The processor is a consumer group any Kafka tool can inspect.
    let described = pipeline.sluice_ok(&[
        "group",
        "describe",
        "sluice-processor-shouter",
        "--format",
        "json",
    ]);
    let described: Value = serde_json::from_str(&described).unwrap();
    let text = described.to_string();
    assert!(text.contains("words"), "{described:#}");
}

#[test]
fn json_plugins_filter_reshape_and_route() {
    let pipeline = Pipeline::start();
    for topic in ["events", "big", "slim", "clicks", "views", "other"] {
        pipeline.create_topic(topic, 2);
    }
    let events: Vec<String> = (0..40)
        .map(|i| {
            let kind = ["click", "view", "scroll"][i % 3];
            format!(
                r#"{{"id":{i},"kind":"{kind}","amount":{},"user":{{"name":"u{}"}}}}"#,
                i * 10,
                i % 4
            )
        })
        .collect();
    let produced: Vec<(Option<&str>, &str)> = events.iter().map(|e| (None, e.as_str())).collect();
    pipeline.produce("events", &produced);
    pipeline.deploy(
        "big-spenders",
        "filter-json",
        &[
            "--input",
            "events",
            "--output",
            "big",
            "--config",
            "field=amount",
            "--config",
            "gte=200",
        ],
    );
    pipeline.deploy(
        "slimmer",
        "map-json",
        &[
            "--input",
            "events",
            "--output",
            "slim",
            "--config",
            "select=id,user.name",
            "--config",
            "rename.user.name=who",
            "--config",
            "set.source=sluice",
        ],
    );
    pipeline.deploy(
        "router",
        "route-by-field",
        &[
            "--input",
            "events",
            "--output",
            "clicks",
            "--output",
            "views",
            "--output",
            "other",
            "--config",
            "field=kind",
            "--config",
            "route.click=clicks",
            "--config",
            "route.view=views",
            "--config",
            "default=other",
        ],
    );
    for name in ["big-spenders", "slimmer", "router"] {
        pipeline.wait_caught_up(name, 40);
    }
    let amounts = |records: &[Consumed]| -> Vec<i64> {
        let mut ids: Vec<i64> = records
            .iter()
            .map(|r| {
                serde_json::from_str::<Value>(r.value.as_deref().unwrap()).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        amounts(&pipeline.consume("big")),
        (20..40).collect::<Vec<_>>()
    );

    let slim = pipeline.consume("slim");
    assert_eq!(slim.len(), 40);
    for record in &slim {
        let value: Value = serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
        let id = value["id"].as_i64().unwrap();
        assert_eq!(
            value,
            serde_json::json!({"id": id, "who": format!("u{}", id % 4), "source": "sluice"})
        );
    }

    let by_kind = |topic: &str| amounts(&pipeline.consume(topic));
    assert_eq!(
        by_kind("clicks"),
        (0..40).filter(|i| i % 3 == 0).collect::<Vec<_>>()
    );
    assert_eq!(
        by_kind("views"),
        (0..40).filter(|i| i % 3 == 1).collect::<Vec<_>>()
    );
    assert_eq!(
        by_kind("other"),
        (0..40).filter(|i| i % 3 == 2).collect::<Vec<_>>()
    );
    // Forwarded records are the input bytes unchanged.
    let inputs: Vec<String> = values(&pipeline.consume("events"));
    for record in pipeline.consume("clicks") {
        assert!(inputs.contains(record.value.as_ref().unwrap()));
    }

    let listed = pipeline.sluice_ok(&["processor", "list", "--format", "json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big-spenders", "router", "slimmer"]);
}

#[test]
fn restart_mid_stream_loses_nothing_and_resumes_from_committed_offsets() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("in", 2);
    pipeline.create_topic("out", 2);
    let first: Vec<String> = (0..2_000).map(|i| format!("r{i}")).collect();
    let keys: Vec<String> = (0..2_000).map(|i| format!("k{}", i % 10)).collect();
    let records: Vec<(Option<&str>, &str)> = first
        .iter()
        .zip(&keys)
        .map(|(v, k)| (Some(k.as_str()), v.as_str()))
        .collect();
    pipeline.produce("in", &records);
    pipeline.deploy(
        "up",
        "uppercase",
        &["--input", "in", "--output", "out", "--batch-records", "50"],
    );
    pipeline.wait_for("up", "some progress", |s| {
        s["records_in"].as_u64() > Some(0)
    });
    pipeline.restart("KILL");
    // Deployments come back by themselves, from their committed offsets.
    let status = pipeline.wait_caught_up("up", 0);
    assert_eq!(status["lag"], 0);
    let outputs = pipeline.consume("out");
    let mut seen: Vec<String> = values(&outputs);
    seen.sort();
    seen.dedup();
    let mut expected: Vec<String> = first.iter().map(|v| v.to_uppercase()).collect();
    expected.sort();
    assert_eq!(seen, expected, "every input has its output (at least once)");
    // Per key, outputs are in input order (a replay repeats a suffix).
    for (key, values) in per_key(&outputs) {
        let mut deduped: Vec<String> = Vec::new();
        for value in values {
            if !deduped.contains(&value) {
                deduped.push(value);
            }
        }
        let wanted: Vec<String> = first
            .iter()
            .zip(&keys)
            .filter(|(_, k)| **k == key)
            .map(|(v, _)| v.to_uppercase())
            .collect();
        assert_eq!(deduped, wanted, "order of key {key}");
    }

    // A graceful restart commits what it wrote: no duplicates at all.
    let before = pipeline.consume("out").len();
    let more: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    let records: Vec<(Option<&str>, &str)> = more.iter().map(|v| (Some("m"), v.as_str())).collect();
    pipeline.produce("in", &records);
    pipeline.wait_for("up", "the new records", |s| {
        s["lag"] == 0
            && s["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["high_watermark"] == p["committed_offset"])
    });
    pipeline.restart("TERM");
    let status = pipeline.status("up");
    assert_eq!(status["lag"], 0);
    assert_eq!(pipeline.consume("out").len(), before + 100);
    // The compiled component came from the on-disk cache.
    let (_, listed) = pipeline.broker.http_get("/v1/processors");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["compile_cache"]["misses"], 0, "{listed:#}");
    assert!(
        listed["compile_cache"]["hits"].as_u64() >= Some(1),
        "{listed:#}"
    );

    // Paused stays paused across a restart and a redeploy.
    pipeline.sluice_ok(&["processor", "pause", "up"]);
    pipeline.deploy("up", "uppercase", &["--input", "in", "--output", "out"]);
    assert_eq!(pipeline.status("up")["state"], "paused");
    pipeline.produce("in", &[(Some("p"), "while paused")]);
    pipeline.restart("TERM");
    pipeline.deploy("up", "uppercase", &["--input", "in", "--output", "out"]);
    let status = pipeline.status("up");
    assert_eq!(status["state"], "paused", "{status:#}");
    assert_eq!(status["lag"], 1, "{status:#}");
    pipeline.sluice_ok(&["processor", "resume", "up"]);
    pipeline.wait_caught_up("up", 1);
    let out = values(&pipeline.consume("out"));
    assert_eq!(out.iter().filter(|v| *v == "WHILE PAUSED").count(), 1);
}

#[test]
fn redeploy_keeps_offsets_and_from_earliest_reprocesses() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("src", 1);
    pipeline.create_topic("dst", 1);
    let batch = |from: usize, to: usize| -> Vec<String> {
        (from..to).map(|i| format!(r#"{{"n":{i}}}"#)).collect()
    };
    let first = batch(0, 10);
    pipeline.produce(
        "src",
        &first.iter().map(|v| (None, v.as_str())).collect::<Vec<_>>(),
    );
    pipeline.deploy("proc", "uppercase", &["--input", "src", "--output", "dst"]);
    pipeline.wait_caught_up("proc", 10);
    // A new plugin under the same name starts where the old one stopped.
    pipeline.deploy(
        "proc",
        "filter-json",
        &[
            "--input", "src", "--output", "dst", "--config", "field=n", "--config", "gte=12",
        ],
    );
    let status = pipeline.status("proc");
    assert_eq!(
        status["partitions"][0]["committed_offset"], 10,
        "{status:#}"
    );
    let second = batch(10, 15);
    pipeline.produce(
        "src",
        &second
            .iter()
            .map(|v| (None, v.as_str()))
            .collect::<Vec<_>>(),
    );
    pipeline.wait_caught_up("proc", 5);
    let out = values(&pipeline.consume("dst"));
    assert_eq!(out.len(), 13, "{out:?}");
    assert_eq!(&out[10..], [r#"{"n":12}"#, r#"{"n":13}"#, r#"{"n":14}"#]);
    // --from earliest reprocesses everything with the current plugin.
    pipeline.deploy(
        "proc",
        "filter-json",
        &[
            "--input", "src", "--output", "dst", "--config", "field=n", "--config", "gte=12",
            "--from", "earliest",
        ],
    );
    pipeline.wait_caught_up("proc", 15);
    let out = values(&pipeline.consume("dst"));
    assert_eq!(out.len(), 16, "{out:?}");
    // --from latest skips what is there.
    pipeline.deploy(
        "proc",
        "uppercase",
        &["--input", "src", "--output", "dst", "--from", "latest"],
    );
    let status = pipeline.status("proc");
    assert_eq!(
        status["partitions"][0]["committed_offset"], 15,
        "{status:#}"
    );

    // An offset, a time, and a time past the end.
    for (from, committed) in [("3", 3), ("@0", 0), ("2999-01-01T00:00:00Z", 15)] {
        pipeline.deploy(
            "proc",
            "uppercase",
            &["--input", "src", "--output", "dst", "--from", from],
        );
        let status = pipeline.status("proc");
        let position = status["partitions"][0]["committed_offset"]
            .as_i64()
            .unwrap();
        // From 3 or 0 it may already be processing again: at or past it.
        assert!(position >= committed, "--from {from}: {status:#}");
        pipeline.wait_caught_up("proc", 0);
    }
    pipeline.deploy(
        "proc",
        "uppercase",
        &["--input", "src", "--output", "dst", "--from", "latest"],
    );

    // Pause stops processing; resume catches up.
    pipeline.sluice_ok(&["processor", "pause", "proc"]);
    assert_eq!(pipeline.status("proc")["state"], "paused");
    pipeline.produce("src", &[(None, "late")]);
    let (_, paused) = pipeline.broker.http_get("/v1/processors/proc");
    let paused: Value = serde_json::from_str(&paused).unwrap();
    assert_eq!(paused["partitions"][0]["committed_offset"], 15);
    pipeline.sluice_ok(&["processor", "resume", "proc"]);
    pipeline.wait_for("proc", "resumed processing", |s| {
        s["lag"] == 0 && s["records_in"] == 1
    });
    assert_eq!(values(&pipeline.consume("dst")).last().unwrap(), "LATE");

    // Remove forgets the processor and its group.
    pipeline.sluice_ok(&["processor", "remove", "proc"]);
    let (code, body) = pipeline.broker.http_get("/v1/processors/proc");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no processor named"), "{body}");
}

#[test]
fn faulty_plugins_are_contained_by_the_error_policy() {
    let pipeline = Pipeline::start();
    for topic in ["in", "ok", "healthy", "bad-records"] {
        pipeline.create_topic(topic, 1);
    }
    let inputs = ["a", "b", "boom", "c", "d"];
    pipeline.produce(
        "in",
        &inputs.iter().map(|v| (Some("k"), *v)).collect::<Vec<_>>(),
    );
    // A healthy processor over the same input keeps working throughout.
    pipeline.deploy(
        "healthy",
        "uppercase",
        &["--input", "in", "--output", "healthy"],
    );

    // A trap, dead-lettered: only the offending record goes to the DLQ.
    pipeline.deploy(
        "trapper",
        "fault-trap",
        &[
            "--input",
            "in",
            "--output",
            "ok",
            "--on-error",
            "dead-letter=bad-records",
        ],
    );
    let status = pipeline.wait_caught_up("trapper", 5);
    assert_eq!(status["dead_lettered"], 1, "{status:#}");
    assert_eq!(status["errors"], 1);
    let error = &status["last_error"];
    assert_eq!(error["offset"], 2, "{status:#}");
    assert_eq!(error["topic"], "in");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("fault-trap: triggered by offset 2"),
        "{status:#}"
    );
    assert_eq!(values(&pipeline.consume("ok")), ["a", "b", "c", "d"]);
    let letters = pipeline.consume("bad-records");
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.value.as_deref(), Some("boom"));
    assert_eq!(letter.key.as_deref(), Some("k"));
    assert_eq!(letter.headers["sluice.processor"], "trapper");
    assert_eq!(letter.headers["sluice.source.topic"], "in");
    assert_eq!(letter.headers["sluice.source.partition"], "0");
    assert_eq!(letter.headers["sluice.source.offset"], "2");
    assert!(
        letter.headers["sluice.error"].contains("fault-trap"),
        "{letter:?}"
    );

    // An endless loop, skipped: interrupted by the time limit.
    pipeline.create_topic("loop-out", 1);
    pipeline.deploy(
        "looper",
        "fault-loop",
        &[
            "--input",
            "in",
            "--output",
            "loop-out",
            "--on-error",
            "skip",
            "--timeout-ms",
            "200",
        ],
    );
    let status = pipeline.wait_caught_up("looper", 5);
    assert_eq!(status["skipped"], 1, "{status:#}");
    assert_last_error(&status, "time limit");
    assert_eq!(values(&pipeline.consume("loop-out")), ["a", "b", "c", "d"]);

    // Unbounded allocation with the default policy: the partition stops at
    // the record, committed up to it, and says why.
    pipeline.create_topic("alloc-out", 1);
    pipeline.deploy(
        "hog",
        "fault-alloc",
        &[
            "--input",
            "in",
            "--output",
            "alloc-out",
            "--memory-max",
            "16777216",
        ],
    );
    let status = pipeline.wait_for("hog", "the partition to fail", |s| s["state"] == "failed");
    let partition = &status["partitions"][0];
    assert_eq!(partition["state"], "failed");
    assert_eq!(partition["committed_offset"], 2, "{status:#}");
    assert_eq!(partition["last_error"]["offset"], 2);
    assert_last_error(partition, "memory limit");
    assert_eq!(values(&pipeline.consume("alloc-out")), ["a", "b"]);
    let text = pipeline.sluice_ok(&["processor", "status", "hog"]);
    assert!(text.contains("memory limit"), "{text}");

    // A huge output hits the output limit; an error return is an error.
    pipeline.create_topic("huge-out", 1);
    pipeline.deploy(
        "flood",
        "fault-huge-output",
        &[
            "--input",
            "in",
            "--output",
            "huge-out",
            "--on-error",
            "skip",
        ],
    );
    let status = pipeline.wait_caught_up("flood", 5);
    assert_last_error(&status, "output limit");
    assert_eq!(values(&pipeline.consume("huge-out")), ["a", "b", "c", "d"]);
    // One output larger than the per-batch output budget.
    pipeline.create_topic("wide-out", 1);
    pipeline.deploy(
        "wide",
        "fault-huge-output",
        &[
            "--input",
            "in",
            "--output",
            "wide-out",
            "--on-error",
            "skip",
            "--config",
            "bytes=2000000",
            "--output-bytes-max",
            "1MiB",
        ],
    );
    let status = pipeline.wait_caught_up("wide", 5);
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("output_bytes_per_batch_max"), "{status:#}");
    assert_eq!(values(&pipeline.consume("wide-out")), ["a", "b", "c", "d"]);
    pipeline.create_topic("error-out", 1);
    pipeline.deploy(
        "rejecter",
        "fault-error",
        &[
            "--input",
            "in",
            "--output",
            "error-out",
            "--on-error",
            "skip",
        ],
    );
    let status = pipeline.wait_caught_up("rejecter", 5);
    assert_eq!(status["skipped"], 1);
    assert_last_error(&status, "fault-error");

    // Everything else kept serving.
    let status = pipeline.wait_caught_up("healthy", 5);
    assert_eq!(status["errors"], 0);
    assert_eq!(
        values(&pipeline.consume("healthy")),
        ["A", "B", "BOOM", "C", "D"]
    );
    let (code, _) = pipeline.broker.http_get("/health");
    assert_eq!(code, 200);
    // Resume retries the failed partition, which fails again the same way.
    pipeline.sluice_ok(&["processor", "resume", "hog"]);
    let status = pipeline.wait_for("hog", "the retry to fail", |s| {
        s["state"] == "failed" && s["errors"] == 2
    });
    assert_eq!(status["partitions"][0]["committed_offset"], 2);
}

#[test]
fn bad_deploys_are_refused_with_a_reason() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    let refused = |args: &[&str], expected: &str| {
        let output = pipeline.sluice(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    let filter = wasm("filter-json");
    let filter = filter.to_str().unwrap();
    refused(
        &[
            "processor",
            "deploy",
            "p",
            "--wasm",
            filter,
            "--input",
            "nope",
            "--output",
            "out",
        ],
        "does not exist",
    );
    refused(
        &[
            "processor",
            "deploy",
            "p",
            "--wasm",
            filter,
            "--input",
            "in",
            "--output",
            "in",
        ],
        "both an input and an output",
    );
    // init rejects a config without a condition.
    refused(
        &[
            "processor",
            "deploy",
            "p",
            "--wasm",
            filter,
            "--input",
            "in",
            "--output",
            "out",
        ],
        "init failed",
    );
    let not_component = pipeline.dir.path().join("fake.wasm");
    std::fs::write(&not_component, b"\0asm\x01\0\0\0").unwrap();
    refused(
        &[
            "processor",
            "deploy",
            "p",
            "--wasm",
            not_component.to_str().unwrap(),
            "--input",
            "in",
            "--output",
            "out",
        ],
        "component",
    );
    let (_, listed) = pipeline.broker.http_get("/v1/processors");
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["processors"],
        serde_json::json!([])
    );
}

#[test]
fn plugin_run_processes_json_lines_locally() {
    let filter = wasm("filter-json");
    let mut child = Command::new(sluice_binary())
        .args(["plugin", "run"])
        .arg(&filter)
        .args(["--config", "field=level", "--config", "equals=error"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"level\":\"info\",\"m\":1}\n{\"level\":\"error\",\"m\":2}\nnot json\n{\"key\":\"k\",\"value\":{\"level\":\"error\",\"m\":3}}\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        lines[0]["value"],
        serde_json::json!({"level": "error", "m": 2})
    );
    assert_eq!(lines[0]["source_offset"], 1);
    assert_eq!(lines[1]["key"], "k");
    assert_eq!(lines[1]["value"]["m"], 3);
    // The line that is not JSON fails, is named, and fails the command.
    assert!(stderr.contains("offset 2"), "{stderr}");
    assert!(!output.status.success());
}

#[test]
fn one_processor_reads_several_input_topics() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("left", 2);
    pipeline.create_topic("right", 1);
    pipeline.create_topic("both", 2);
    pipeline.produce(
        "left",
        &[(Some("a"), "l1"), (Some("b"), "l2"), (Some("a"), "l3")],
    );
    pipeline.produce("right", &[(Some("a"), "r1"), (None, "r2")]);
    pipeline.deploy(
        "merge",
        "uppercase",
        &["--input", "left", "--input", "right", "--output", "both"],
    );
    let status = pipeline.wait_caught_up("merge", 5);
    // One instance per input partition: two of left, one of right.
    let partitions: Vec<(String, i64)> = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["topic"].as_str().unwrap().to_string(),
                p["partition"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        partitions,
        [("left".into(), 0), ("left".into(), 1), ("right".into(), 0)]
    );
    let mut out = values(&pipeline.consume("both"));
    out.sort();
    assert_eq!(out, ["L1", "L2", "L3", "R1", "R2"]);
    let by_key = per_key(&pipeline.consume("both"));
    assert_eq!(by_key["b"], ["L2"]);
    assert!(
        by_key["a"].iter().position(|v| v == "L1") < by_key["a"].iter().position(|v| v == "L3")
    );
}

#[test]
fn a_deployment_that_cannot_resume_is_listed_as_failed_until_removed() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    pipeline.deploy(
        "fragile",
        "uppercase",
        &["--input", "in", "--output", "out"],
    );
    let broker = pipeline.broker.kafka;
    pipeline.broker.stop_with("TERM", Duration::from_secs(10));
    let plugins = pipeline.dir.path().join("data/processors/plugins");
    for entry in std::fs::read_dir(&plugins).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    pipeline.broker = Pipeline::spawn(pipeline.dir.path(), &broker.to_string());
    let status = pipeline.status("fragile");
    assert_eq!(status["state"], "failed", "{status:#}");
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot resume") && message.contains("redeploy or remove"),
        "{message}"
    );
    let listed = pipeline.sluice_ok(&["processor", "list", "--format", "json"]);
    assert!(listed.contains("fragile"), "{listed}");
    pipeline.sluice_ok(&["processor", "remove", "fragile"]);
    let (code, _) = pipeline.broker.http_get("/v1/processors/fragile");
    assert_eq!(code, 404);
}

/// JoinGroup v3 for a consumer: no MEMBER_ID_REQUIRED round trip, so one
/// call makes a member of `group` (answered once the initial rebalance delay
/// is over). Returns the member id.
fn join_as_consumer(client: &mut KafkaClient, group: &str) -> String {
    let protocol = JoinGroupRequestProtocol::default()
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(Bytes::from_static(b"\0\0\0\0\0\x01\0\x02in\0\0\0\0"));
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_session_timeout_ms(120_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![protocol]);
    let response = client.call(request, 3);
    assert_eq!(response.error_code, 0, "JoinGroup: {response:?}");
    response.member_id.to_string()
}

/// Removing a processor deletes its group's committed offsets, or says why
/// it cannot: while a Kafka client is a member of `sluice-processor-NAME`
/// the offsets cannot be deleted, and a "removed" answer would let a later
/// deploy under the same name resume from them.
#[test]
fn remove_refuses_while_a_kafka_client_holds_the_processor_group() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    let lines: String = (0..10).map(|i| format!("r{i}\n")).collect();
    let mut produce = Command::new(sluice_binary())
        .args(["produce", "in"])
        .env("SLUICE_BROKERS", pipeline.broker.kafka.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .expect("sluice produce");
    let mut stdin = produce.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    drop(stdin);
    assert!(produce.wait().unwrap().success(), "sluice produce");
    pipeline.deploy("held", "uppercase", &["--input", "in", "--output", "out"]);
    pipeline.wait_caught_up("held", 10);

    let mut client = KafkaClient::connect(pipeline.broker.kafka);
    let member_id = join_as_consumer(&mut client, "sluice-processor-held");
    let (code, body) = pipeline
        .broker
        .http_request("DELETE", "/v1/processors/held");
    assert_eq!(code, 409, "DELETE while the group has a member: {body}");
    assert!(
        body.contains("sluice-processor-held") && body.contains("member"),
        "the refusal names the group and why: {body}"
    );
    let output = pipeline.sluice(&["processor", "remove", "held"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the CLI reports the refusal");
    assert!(stderr.contains("sluice-processor-held"), "{stderr}");
    // Nothing was removed: the processor is still there.
    let status = pipeline.status("held");
    assert_eq!(status["group"], "sluice-processor-held", "{status:#}");

    // Once the client leaves, remove deletes the offsets for real: a new
    // deployment under the same name starts from the beginning (resuming
    // from offset 10 would leave records_in at 0).
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("sluice-processor-held")))
        .with_member_id(StrBytes::from_string(member_id));
    assert_eq!(client.call(leave, 0).error_code, 0, "LeaveGroup");
    pipeline.sluice_ok(&["processor", "remove", "held"]);
    pipeline.deploy("held", "uppercase", &["--input", "in", "--output", "out"]);
    pipeline.wait_caught_up("held", 10);
}
