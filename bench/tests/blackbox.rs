//! Black-box tests of the `sluice-bench` binary: tiny sizes, real processes
//! (a `sluice serve` on 127.0.0.1:0, the benchmark's own children), and the
//! JSON report checked for sane fields. No assertion on timing: these
//! machines are shared, and the figures are the README's business.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
fn sluice_bench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice-bench"))
}

/// The `sluice` binary, built (once per test run) into the same folder as
/// `sluice-bench`, where `sluice-bench` looks for it. Cargo builds only
/// this package's binaries for its tests, so the broker's is built here
/// with the same profile and target folder; the outer cargo holds no lock
/// while tests run, and an up-to-date binary costs a no-op build.
fn sluice() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = sluice_bench()
            .parent()
            .expect("sluice-bench lives in <target>/<profile>")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("<target>").to_path_buf();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("bench/ has a parent");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(workspace)
            .env("CARGO_TARGET_DIR", &target_dir)
            // The same package selection as the test build, so that the
            // shared dependencies resolve to the same features and are
            // not rebuilt.
            .args([
                "build",
                "--quiet",
                "-p",
                "sluice",
                "-p",
                "sluice-bench",
                "--bin",
                "sluice",
            ]);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            command.arg("--release");
        }
        let status = command.status().expect("running cargo to build sluice");
        assert!(status.success(), "building sluice failed: {status}");
        let binary = profile_dir.join(format!("sluice{}", std::env::consts::EXE_SUFFIX));
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
}

/// A `sluice serve` on ephemeral loopback ports, stopped when dropped.
struct Broker {
    child: Child,
    /// The Kafka listener.
    kafka: String,
}

impl Broker {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(sluice())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning sluice serve");
        let stdout = child.stdout.take().expect("stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = ready_tx.send(line);
        });
        let line = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("sluice serve reports ready");
        let kafka = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("kafka="))
            .unwrap_or_else(|| panic!("no kafka= in ready line {line:?}"))
            .to_string();
        Self { child, kafka }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Runs `sluice-bench args…` in `dir` and returns its output.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(sluice_bench())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running sluice-bench")
}

/// Runs `sluice-bench args…`, requires success, and parses its JSON report.
fn report(dir: &Path, args: &[&str]) -> Value {
    let output = run(dir, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sluice-bench {args:?} failed: {stderr}"
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "not JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A positive, finite number at `pointer`.
fn positive(report: &Value, pointer: &str) -> f64 {
    let value = report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {report:#}"));
    assert!(
        value.is_finite() && value > 0.0,
        "{pointer} = {value} in {report:#}"
    );
    value
}

/// Kafka figures of one broker under `prefix` (`/broker`, `/never`, …).
fn assert_figures(report: &Value, prefix: &str, cpu: bool) {
    for figure in [
        "produce_acks_1_mb_s",
        "produce_acks_all_mb_s",
        "consume_mb_s",
    ] {
        positive(report, &format!("{prefix}/{figure}"));
    }
    for figure in ["cpu_s_per_gb_produced", "cpu_s_per_gb_consumed"] {
        let pointer = format!("{prefix}/{figure}");
        let value = report
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("no {pointer} in {report:#}"));
        if cpu {
            let seconds = value
                .as_f64()
                .unwrap_or_else(|| panic!("{pointer}: {value}"));
            assert!(seconds >= 0.0, "{pointer} = {seconds}");
        } else {
            assert!(value.is_null(), "{pointer} without --pid: {value}");
        }
    }
}

const TINY: [&str; 8] = [
    "--bytes",
    "2097152",
    "--partitions",
    "2",
    "--runs",
    "1",
    "--format",
    "json",
];

#[test]
fn kafka_measures_an_already_running_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    let pid = broker.child.id().to_string();
    let mut args = vec!["kafka", "--brokers", &broker.kafka, "--pid", &pid];
    args.extend(TINY);
    let report = report(dir.path(), &args);

    assert_eq!(report["brokers"], broker.kafka.as_str());
    assert_eq!(report["broker_pid"], broker.child.id());
    assert_eq!(report["bytes_per_run"], 2_097_152);
    assert_eq!(report["runs"], 1);
    assert_figures(&report, "/broker", true);
    positive(&report, "/produce_acks_1_vs_raw");
    positive(&report, "/raw_write_mb_s");
    positive(&report, "/raw_write_fsync_mb_s");
    positive(&report, "/tcp_to_file_mb_s");
    assert!(
        report.get("never").is_none() && report.get("always").is_none(),
        "no Sluice of its own without --with-sluice: {report:#}"
    );

    // Its topics are gone again: a running broker keeps nothing of the run.
    let topics = Command::new(sluice())
        .args(["topic", "list", "--brokers", &broker.kafka])
        .output()
        .expect("sluice topic list");
    assert!(topics.status.success());
    let listed = String::from_utf8_lossy(&topics.stdout);
    assert!(
        !listed.contains("sluice-bench-"),
        "topics left behind: {listed}"
    );
}

#[test]
fn kafka_without_pid_reports_no_broker_cpu_and_with_sluice_reports_both() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    // No --sluice: sluice-bench finds the `sluice` beside itself.
    let mut args = vec!["kafka", "--brokers", &broker.kafka, "--with-sluice"];
    args.extend(TINY);
    let report = report(dir.path(), &args);

    assert_figures(&report, "/broker", false);
    assert!(report["broker_pid"].is_null());
    assert_figures(&report, "/never", true);
    assert_figures(&report, "/always", true);
    positive(&report, "/never_produce_vs_raw");
}

#[test]
fn kafka_starts_sluice_itself_without_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = sluice().to_str().expect("UTF-8 path").to_string();
    let mut args = vec!["kafka", "--sluice", &sluice];
    args.extend(TINY);
    let report = report(dir.path(), &args);

    assert_figures(&report, "/never", true);
    assert_figures(&report, "/always", true);
    assert!(
        report.get("brokers").is_none() && report.get("broker").is_none(),
        "{report:#}"
    );
}

#[test]
fn kafka_refuses_an_unreachable_broker_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let output = run(dir.path(), &["kafka", "--brokers", &address, "--runs", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("--brokers {address}")),
        "stderr: {stderr}"
    );
    assert!(
        !stderr.contains("run 1 of 1"),
        "measured before checking the broker: {stderr}"
    );
}

#[test]
fn kafka_pid_needs_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["kafka", "--pid", "1"]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--brokers"), "stderr: {stderr}");
}

#[test]
fn log_reports_append_read_and_startup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().expect("UTF-8 path").to_string();
    let sluice = sluice().to_str().expect("UTF-8 path").to_string();
    let report = report(
        dir.path(),
        &[
            "log",
            "--dir",
            &data,
            "--sluice",
            &sluice,
            "--bytes",
            "1048576",
            "--fsync-bytes",
            "65536",
            "--runs",
            "1",
            "--batch-kib",
            "16",
            "--format",
            "json",
        ],
    );
    for figure in [
        "raw_write_mb_s",
        "append_never_mb_s",
        "raw_write_fsync_mb_s",
        "append_always_mb_s",
        "read_mb_s",
    ] {
        positive(&report, &format!("/batches/0/{figure}"));
    }
    positive(&report, "/startup_ms_median");
}

/// Tiny sizes for `transactions`: every part runs, briefly.
const TINY_TRANSACTIONS: [&str; 20] = [
    "--runs",
    "1",
    "--seconds",
    "0.3",
    "--partitions",
    "2",
    "--fetch-bytes",
    "1048576",
    "--fetch-passes",
    "1",
    "--abort-every",
    "2",
    "--commits",
    "5",
    "--commit-partitions",
    "1,3",
    "--flush",
    "never",
    "--format",
    "json",
];

fn assert_comparison(report: &Value, prefix: &str) {
    for figure in [
        "idempotent_mb_s",
        "idempotent_records_per_s",
        "transactional_mb_s",
        "transactional_records_per_s",
        "ratio",
        "ratio_paired",
    ] {
        positive(report, &format!("{prefix}/{figure}"));
    }
}

#[test]
fn transactions_reports_produce_fetch_and_commit_figures() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = sluice().to_str().expect("UTF-8 path").to_string();
    let mut args = vec!["transactions", "--sluice", &sluice];
    args.extend(TINY_TRANSACTIONS);
    let report = report(dir.path(), &args);

    assert_eq!(report["produce"][0]["broker"], "flush=never");
    assert_comparison(&report, "/produce/0/native");
    positive(
        &report,
        "/produce/0/native/transactional_broker_cpu_s_per_gb",
    );
    positive(&report, "/produce/0/native_transactions_per_run");
    positive(&report, "/produce/0/native_commit_ms_p50");
    // The librdkafka producer, from the test suite's venv.
    assert_comparison(&report, "/produce/0/librdkafka");
    positive(&report, "/produce/0/librdkafka/transactional_commit_ms_p50");
    positive(&report, "/produce/0/librdkafka/idempotent_client_cpu_cores");

    // Half the transactions aborted: read_committed delivers fewer records
    // from the same bytes, and the broker listed the aborted ones.
    positive(&report, "/fetch/read_uncommitted_mb_s");
    positive(&report, "/fetch/read_committed_mb_s");
    let aborted = positive(&report, "/fetch/aborted_transactions");
    let transactions = positive(&report, "/fetch/transactions");
    assert!(aborted < transactions, "{report:#}");
    let all = positive(&report, "/fetch/read_uncommitted_records");
    let committed = positive(&report, "/fetch/read_committed_records");
    assert!(committed < all, "{report:#}");
    positive(&report, "/fetch/aborted_listed");

    positive(&report, "/commit/fsync_ms/p50");
    let rows = report["commit"]["by_partitions"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{report:#}");
    for (index, partitions) in [1, 3].into_iter().enumerate() {
        let row = format!("/commit/by_partitions/{index}");
        assert_eq!(
            report.pointer(&format!("{row}/partitions")),
            Some(&partitions.into())
        );
        assert_eq!(
            report.pointer(&format!("{row}/end_txn_ms/samples")),
            Some(&5.into())
        );
        positive(&report, &format!("{row}/end_txn_ms/p99"));
        positive(&report, &format!("{row}/parallel_fsyncs_ms/p50"));
        positive(&report, &format!("{row}/sequential_fsyncs_ms/p99"));
    }
}

#[test]
fn transactions_measures_an_already_running_broker_without_librdkafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    let mut args = vec![
        "transactions",
        "--brokers",
        &broker.kafka,
        "--no-librdkafka",
    ];
    // `--flush` is for a started Sluice only.
    args.extend(&TINY_TRANSACTIONS[..16]);
    args.extend(["--format", "json"]);
    let report = report(dir.path(), &args);

    assert_eq!(report["produce"][0]["broker"], broker.kafka.as_str());
    assert_comparison(&report, "/produce/0/native");
    assert!(report["produce"][0]["librdkafka"].is_null(), "{report:#}");
    assert!(report["produce"][0]["native"]["idempotent_broker_cpu_s_per_gb"].is_null());
    positive(&report, "/fetch/read_committed_mb_s");

    // Its topics are gone again.
    let topics = Command::new(sluice())
        .args(["topic", "list", "--brokers", &broker.kafka])
        .output()
        .expect("sluice topic list");
    let listed = String::from_utf8_lossy(&topics.stdout);
    assert!(
        !listed.contains("sluice-bench-"),
        "topics left behind: {listed}"
    );
}
