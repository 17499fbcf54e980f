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
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, GroupId, JoinGroupRequest, OffsetCommitRequest, TopicName,
};
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
pub(crate) struct Consumed {
    pub partition: i64,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: BTreeMap<String, String>,
}

/// A broker on a temporary directory, and the CLI pointed at it.
pub(crate) struct Pipeline {
    dir: TempDir,
    pub broker: Broker,
}

impl Pipeline {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Self::spawn(dir.path(), "127.0.0.1:0");
        Self { dir, broker }
    }

    /// Like [`Pipeline::start`], with `config` as the broker's TOML config
    /// file.
    /// (Restarts keep the config file.)
    pub(crate) fn start_with_config(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sluice.toml"), config).unwrap();
        let broker = Self::spawn(dir.path(), "127.0.0.1:0");
        Self { dir, broker }
    }

    fn spawn(dir: &Path, listen: &str) -> Broker {
        Self::spawn_with_env(dir, listen, &[])
    }

    fn spawn_with_env(dir: &Path, listen: &str, env: &[(&str, &str)]) -> Broker {
        let mut command = Command::new(sluice_binary());
        command.envs(env.iter().copied());
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
        let config = dir.join("sluice.toml");
        if config.exists() {
            command.arg("--config").arg(config);
        }
        Broker::spawn(command)
    }

    /// Stops the broker with `signal` and starts it again on the same
    /// directory and Kafka address.
    pub(crate) fn restart(&mut self, signal: &str) {
        let kafka = self.broker.kafka;
        let status = self.broker.stop_with(signal, Duration::from_secs(10));
        if signal == "TERM" {
            assert!(status.success(), "exit after SIGTERM: {status:?}");
        }
        self.broker = Self::spawn(self.dir.path(), &kafka.to_string());
    }

    /// The broker's data directory (its config file `sluice.toml`, when
    /// there is one, is beside it).
    pub(crate) fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Starts a broker with `env` added to its environment (a test crash
    /// point, say).
    pub(crate) fn start_with_env(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Self::spawn_with_env(dir.path(), "127.0.0.1:0", env);
        Self { dir, broker }
    }

    /// Waits for the broker to exit on its own (a crash point), then starts
    /// it again on the same directory and Kafka address, without `env`.
    pub(crate) fn restart_after_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.restart_after_exit_with(timeout, |_| {})
    }

    /// [`Pipeline::restart_after_exit`], calling `edit` with the data
    /// directory before the restart.
    pub(crate) fn restart_after_exit_with(
        &mut self,
        timeout: Duration,
        edit: impl FnOnce(&Path),
    ) -> std::process::ExitStatus {
        let kafka = self.broker.kafka;
        let status = self.broker.wait_exit(timeout);
        edit(&self.dir.path().join("data"));
        self.broker = Self::spawn(self.dir.path(), &kafka.to_string());
        status
    }

    /// Stops the broker with SIGTERM, calls `edit` with its data directory
    /// (to plant what an older broker or a damaged disk left), and starts
    /// it again on the same directory and Kafka address.
    pub(crate) fn restart_after(&mut self, edit: impl FnOnce(&Path)) {
        self.restart_after_with_env(&[], edit);
    }

    /// [`Pipeline::restart_after`], the new broker with `env` added to its
    /// environment (a test hold point, say).
    pub(crate) fn restart_after_with_env(
        &mut self,
        env: &[(&str, &str)],
        edit: impl FnOnce(&Path),
    ) {
        let kafka = self.broker.kafka;
        let status = self.broker.stop_with("TERM", Duration::from_secs(10));
        assert!(status.success(), "exit after SIGTERM: {status:?}");
        edit(&self.dir.path().join("data"));
        self.broker = Self::spawn_with_env(self.dir.path(), &kafka.to_string(), env);
    }

    /// Kills the broker with SIGKILL, calls `edit` with its data directory
    /// (to delete what a lost disk would), and starts it again.
    pub(crate) fn kill_and_restart_after(&mut self, edit: impl FnOnce(&Path)) {
        let kafka = self.broker.kafka;
        self.broker.stop_with("KILL", Duration::from_secs(10));
        if std::env::var_os("SLUICE_TEST_BROKER_LOGS").is_some() {
            for line in self.broker.stderr_lines() {
                eprintln!("killed broker: {line}");
            }
        }
        edit(&self.dir.path().join("data"));
        self.broker = Self::spawn(self.dir.path(), &kafka.to_string());
    }

    /// Runs `sluice ARGS` against this broker; returns the output.
    pub(crate) fn sluice(&self, args: &[&str]) -> Output {
        Command::new(sluice_binary())
            .args(args)
            .env("SLUICE_BROKERS", self.broker.kafka.to_string())
            .env("SLUICE_ADMIN", format!("http://{}", self.broker.http))
            .output()
            .expect("running sluice")
    }

    /// Like [`Pipeline::sluice`], but the command must succeed; returns stdout.
    pub(crate) fn sluice_ok(&self, args: &[&str]) -> String {
        let output = self.sluice(args);
        assert!(
            output.status.success(),
            "sluice {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub(crate) fn create_topic(&self, name: &str, partitions: i32) {
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
    pub(crate) fn produce(&self, topic: &str, records: &[(Option<&str>, &str)]) {
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
    pub(crate) fn consume(&self, topic: &str) -> Vec<Consumed> {
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
    pub(crate) fn status(&self, name: &str) -> Value {
        let (code, body) = self.broker.http_get(&format!("/v1/processors/{name}"));
        assert_eq!(code, 200, "status of {name}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until `condition` holds for the processor's status.
    pub(crate) fn wait_for(
        &self,
        name: &str,
        what: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for_within(name, what, WAIT, condition)
    }

    /// [`Pipeline::wait_for`] with a deadline of `within`.
    pub(crate) fn wait_for_within(
        &self,
        name: &str,
        what: &str,
        within: Duration,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
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
    pub(crate) fn wait_caught_up(&self, name: &str, records_in: u64) -> Value {
        self.wait_for(name, &format!("{records_in} records in, lag 0"), |s| {
            s["records_in"].as_u64() >= Some(records_in) && s["lag"] == 0
        })
    }

    /// `sluice processor deploy NAME --wasm PLUGIN ARGS…`.
    pub(crate) fn deploy(&self, name: &str, plugin: &str, args: &[&str]) -> String {
        self.deploy_wasm(name, &wasm(plugin), args)
    }

    /// [`Pipeline::deploy`] of the component at `wasm`.
    pub(crate) fn deploy_wasm(&self, name: &str, wasm: &Path, args: &[&str]) -> String {
        self.sluice_ok(&deploy_args(name, wasm, args))
    }
}

/// The arguments of `sluice processor deploy NAME --wasm WASM ARGS…`, for
/// a test that runs it otherwise (its answer may not come, say).
pub(crate) fn deploy_args<'a>(name: &'a str, wasm: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "processor",
        "deploy",
        name,
        "--wasm",
        wasm.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    all
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

mod admin;
mod compiled;
mod faults;
mod flow;
mod hostile_batches;
