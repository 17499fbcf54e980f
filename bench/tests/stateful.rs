//! A smoke test of `sluice-bench stateful`: tiny sizes, the windowed-count
//! plugin built for wasm32-wasip2, the kill -9 child included, and the
//! JSON report checked for sane fields. No assertion on timing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `<target>`, from the binary under test (`<target>/<profile>/sluice-bench`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .ancestors()
        .nth(2)
        .expect("sluice-bench lives in <target>/<profile>")
        .to_path_buf()
}

/// windowed-count, built into its own target folder (so the nested cargo
/// never waits on the outer one's lock).
fn windowed_count() -> PathBuf {
    let target = target_dir().join("wasm-plugins");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--quiet", "--profile", "plugin"])
        .args(["--target", "wasm32-wasip2", "-p", "windowed-count"])
        .status()
        .expect("running cargo to build windowed-count");
    assert!(status.success(), "building windowed-count failed: {status}");
    target.join("wasm32-wasip2/plugin/windowed_count.wasm")
}

fn number(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {report:#}"))
}

fn positive(report: &Value, pointer: &str) {
    let value = number(report, pointer);
    assert!(
        value.is_finite() && value > 0.0,
        "{pointer} = {value} in {report:#}"
    );
}

#[test]
fn stateful_reports_every_figure() {
    let wasm = windowed_count();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .current_dir(dir.path())
        .arg("stateful")
        .arg("--wasm")
        .arg(&wasm)
        .args(["--records", "3000", "--keys", "200", "--batch", "128"])
        .args(["--runs", "1", "--timed-secs", "1"])
        .args(["--latency-rate", "2000", "--query-rate", "200"])
        .args(["--large-keys", "5000", "--large-records", "2000"])
        .args(["--large-memory-bytes", "8388608", "--soak-secs", "1"])
        .args(["--format", "json"])
        .output()
        .expect("running sluice-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sluice-bench failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    for pointer in [
        "/call_wasm_records_s",
        "/call_native_records_s",
        "/call_state_floor_records_s",
        "/end_to_end_wasm_records_s",
        "/end_to_end_native_records_s",
        "/end_to_end_wasm_at_least_once_records_s",
        "/latency/p99_ms",
        "/latency/window_close_at_s",
        "/queries/p99_ms",
        "/large/records_s",
        "/large/restart_total_ms",
        "/large/state_disk_bytes",
    ] {
        positive(&report, pointer);
    }
    // Every record appended during the latency run became visible.
    assert_eq!(number(&report, "/latency/records"), 2000.0, "{report:#}");
    // One record per key was processed before the queries: they find
    // them until every key's window closes halfway, then the new windows
    // as records open them.
    positive(&report, "/queries/found");
    assert!(!report["soak"].as_array().unwrap().is_empty());
}
