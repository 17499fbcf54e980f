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
//!
//! This module holds what the scenarios share (finding and running the
//! clients, the broker, reading their JSON); each client family's scenarios
//! are in a file of their own. The transaction scenarios
//! (`crate::transactions`) run their clients through it too.

use std::collections::BTreeMap;
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

mod confluent_kafka;
mod kafka_python;
mod kafkajs;
mod kcat;

/// How long one client script may run; each script bounds its own steps
/// (30 s each), this only catches a client that hangs outright.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// How long the broker may take to stop after SIGTERM or SIGKILL.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a waiting test looks at its condition again.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Broker settings for group tests: no initial rebalance delay, so a group's
/// first generation forms as soon as its members have joined.
const BROKER_CONFIG: &str = "[groups]\ninitial_rebalance_delay_ms = 0\n";

// ---------------------------------------------------------------------------
// Locating the clients.

pub(crate) fn repo_root() -> PathBuf {
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
pub(crate) fn python() -> PathBuf {
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
pub(crate) fn node_dir() -> PathBuf {
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
pub(crate) fn python_script(script: &str, args: &[&str]) -> Command {
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
pub(crate) struct Client {
    what: String,
    child: Option<Child>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished client left behind.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
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
    pub(crate) fn spawn(what: &str, mut command: Command, input: Option<&str>) -> Self {
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
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "{}: kill -{signal} {pid}", self.what);
    }

    /// Whether the client has exited (without waiting).
    pub(crate) fn exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("running");
        child.try_wait().expect("try_wait").is_some()
    }

    /// Waits for the client to exit (killing it after `timeout`).
    pub(crate) fn finish(mut self, timeout: Duration) -> Finished {
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
    pub(crate) fn output(self, timeout: Duration) -> String {
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
    pub(crate) fn json(self, timeout: Duration) -> Value {
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
pub(crate) fn run_json(what: &str, command: Command) -> Value {
    Client::spawn(what, command, None).json(CLIENT_TIMEOUT)
}

/// Polls `condition` until it holds; fails after `timeout` naming `what`.
pub(crate) fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
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
pub(crate) struct Node {
    pub(crate) dir: TempDir,
    pub(crate) broker: Broker,
}

impl Node {
    pub(crate) fn start() -> Self {
        Self::start_with(BROKER_CONFIG, &[])
    }

    /// A broker with `config` as its config file and the environment
    /// variables `env` set.
    pub(crate) fn start_with(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sluice.toml"), config).unwrap();
        let broker = Self::spawn(dir.path(), "127.0.0.1:0", env);
        Self { dir, broker }
    }

    fn spawn(dir: &Path, listen: &str, env: &[(&str, &str)]) -> Broker {
        let mut command = Command::new(sluice_binary());
        command
            .args(["serve", "--listen", listen, "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(dir.join("sluice.toml"))
            .envs(env.iter().copied())
            // Anything a crashing broker leaves in its working directory
            // (a core file, where enabled) goes with the test's directory.
            .current_dir(dir);
        Broker::spawn(command)
    }

    /// The bootstrap address clients are given.
    pub(crate) fn bootstrap(&self) -> String {
        self.broker.kafka.to_string()
    }

    /// Stops the broker with `signal` ("TERM": must exit 0; "KILL").
    pub(crate) fn stop(&mut self, signal: &str) {
        let status = self.broker.stop_with(signal, STOP_TIMEOUT);
        if signal == "TERM" {
            assert!(status.success(), "exit after SIGTERM: {status:?}");
        }
    }

    /// Starts a new broker on the same data directory and the same Kafka
    /// address, so clients that stay connected across a restart find it.
    pub(crate) fn start_again(&mut self) {
        self.start_again_with(&[]);
    }

    /// [`Node::start_again`] with the environment variables `env` set.
    pub(crate) fn start_again_with(&mut self, env: &[(&str, &str)]) {
        let kafka: SocketAddr = self.broker.kafka;
        self.broker = Self::spawn(self.dir.path(), &kafka.to_string(), env);
        assert_eq!(self.broker.kafka, kafka);
    }

    pub(crate) fn restart(&mut self, signal: &str) {
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
pub(crate) fn create_topic(broker: SocketAddr, name: &str, partitions: i32) {
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

pub(crate) fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("no {key:?} in {value}"))
}

pub(crate) fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|item| item.as_str().expect("string").to_string())
        .collect()
}

pub(crate) fn integer(value: &Value) -> i64 {
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
