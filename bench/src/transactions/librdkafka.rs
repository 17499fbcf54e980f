//! The real-client half of the produce comparison: `bench/txn_bench.py`
//! (confluent-kafka, i.e. librdkafka) run as a child process, once per
//! mode, its one-line JSON report read back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use serde::Deserialize;

/// The client script, in this crate's folder.
pub(crate) fn default_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("txn_bench.py")
}

/// The test suite's Python, with confluent-kafka installed
/// (`./scripts/test` creates it).
pub(crate) fn default_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/python/.venv/bin/python")
}

/// What the script reports for one mode.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClientRun {
    pub(crate) seconds: f64,
    /// Payload bytes (1 KiB per record) per second, 10^6.
    pub(crate) mb_s: f64,
    pub(crate) records_per_s: f64,
    pub(crate) transactions: u64,
    pub(crate) commit_ms_p50: f64,
    /// CPU of the whole client process (librdkafka's threads included),
    /// in cores.
    pub(crate) client_cpu_cores: f64,
    /// The Python thread's CPU over elapsed time: near 1.0, the Python
    /// loop is the limit.
    pub(crate) main_thread_busy: f64,
}

/// How to run the client.
pub(crate) struct Client<'a> {
    pub(crate) python: &'a Path,
    pub(crate) script: &'a Path,
    pub(crate) brokers: &'a str,
    pub(crate) partitions: i32,
    pub(crate) seconds: f64,
    pub(crate) interval_ms: u64,
}

impl Client<'_> {
    /// Fails early, before any measurement, if the client cannot run.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.script.is_file(),
            "no client script at {} (--client-script)",
            self.script.display()
        );
        let status = Command::new(self.python)
            .args(["-c", "import confluent_kafka"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| {
                format!(
                    "running {} (--python; ./scripts/test creates the venv, or pass --no-librdkafka)",
                    self.python.display()
                )
            })?;
        anyhow::ensure!(
            status.success(),
            "{} cannot import confluent_kafka (--python, or --no-librdkafka)",
            self.python.display()
        );
        Ok(())
    }

    /// Produces to `topic` (already created) for the configured time.
    pub(crate) fn run(&self, topic: &str, transactional: bool) -> anyhow::Result<ClientRun> {
        let mode = if transactional {
            "transactional"
        } else {
            "idempotent"
        };
        let output = Command::new(self.python)
            .arg(self.script)
            .args([self.brokers, topic])
            .args(["--partitions", &self.partitions.to_string()])
            .args(["--seconds", &self.seconds.to_string()])
            .args(["--mode", mode])
            .args(["--interval-ms", &self.interval_ms.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", self.script.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "{} ({mode}) failed: {}",
            self.script.display(),
            output.status
        );
        serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "{} printed {:?}",
                self.script.display(),
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }
}
