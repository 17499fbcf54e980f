//! Processor status objects as the admin API reports them, and their text
//! rendering for `sluice processor list|status|deploy|pause|resume`.
//! Unknown fields are ignored and missing ones defaulted, so the CLI reads
//! the answers of older and newer brokers alike.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::table;
use crate::start_position::format_rfc3339;

/// One processor.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ProcessorStatus {
    pub(super) name: String,
    /// running, paused, failed or degraded (some partitions failed).
    state: String,
    group: String,
    wasm_sha256: String,
    wasm_bytes: u64,
    inputs: Vec<String>,
    outputs: Vec<String>,
    config: Vec<(String, String)>,
    on_error: String,
    /// Limit name (`memory_bytes_max`, …) → value.
    limits: BTreeMap<String, Value>,
    deployed_at_ms: i64,
    records_in: u64,
    records_out: u64,
    errors: u64,
    skipped: u64,
    dead_lettered: u64,
    lag: i64,
    last_error: Option<LastError>,
    partitions: Vec<PartitionStatus>,
    stores: Vec<String>,
    guarantee: String,
    late_dropped: u64,
}

/// One input partition of a processor.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PartitionStatus {
    topic: String,
    partition: i32,
    /// running, paused, failed or idle.
    state: String,
    committed_offset: Option<i64>,
    high_watermark: Option<i64>,
    lag: Option<i64>,
    records_in: u64,
    records_out: u64,
    errors: u64,
    last_error: Option<LastError>,
    /// Stateful processors only.
    stateful: Option<StatefulStatus>,
}

/// A stateful partition's figures.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StatefulStatus {
    stream_time: Option<i64>,
    late_dropped: u64,
    commits: u64,
    state_bytes: u64,
    keys: u64,
    open_windows: Option<u64>,
    rebuilding_until: Option<i64>,
    restoring: Option<Restoring>,
}

/// A restore from the changelog under way.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Restoring {
    records: u64,
    bytes: u64,
}

/// Where and why processing last failed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
struct LastError {
    message: String,
    topic: String,
    partition: i32,
    offset: i64,
    at_ms: i64,
}

/// A status object.
pub(super) fn parse_status(value: &Value) -> Result<ProcessorStatus> {
    serde_json::from_value(value.clone())
        .context("the admin API answered with a malformed processor status")
}

/// The `processors` list of `GET /v1/processors`.
pub(super) fn parse_list(value: &Value) -> Result<Vec<ProcessorStatus>> {
    serde_json::from_value(value.clone())
        .context("the admin API answered with a malformed processor list")
}

// ---------------------------------------------------------------------------
// Rendering.

pub(super) fn list_text(statuses: &[ProcessorStatus]) -> String {
    let rows = statuses
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.state.clone(),
                s.inputs.join(","),
                s.outputs.join(","),
                s.lag.to_string(),
                s.records_in.to_string(),
                s.records_out.to_string(),
                s.errors.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "INPUTS",
            "OUTPUTS",
            "LAG",
            "RECORDS-IN",
            "RECORDS-OUT",
            "ERRORS",
        ],
        rows,
    )
}

/// `deployed NAME (sha256 0123456789ab…, N partitions)` and a blank line.
pub(super) fn deployed_line(status: &ProcessorStatus) -> String {
    let short: String = status.wasm_sha256.chars().take(12).collect();
    let count = status.partitions.len();
    let plural = if count == 1 { "" } else { "s" };
    format!(
        "deployed {} (sha256 {short}…, {count} partition{plural})\n\n",
        status.name
    )
}

/// The summary block, the partition table and the last errors.
pub(super) fn status_text(status: &ProcessorStatus) -> String {
    let mut out = summary_text(status);
    if !status.partitions.is_empty() {
        out.push('\n');
        out += &partitions_text(&status.partitions);
    }
    let errors = last_errors(status);
    if !errors.is_empty() {
        out.push('\n');
    }
    for error in errors {
        out += &format!(
            "last error: {}/{}@{}: {}\n",
            error.topic, error.partition, error.offset, error.message
        );
    }
    out
}

fn summary_text(status: &ProcessorStatus) -> String {
    let list = |items: &[String]| match items.is_empty() {
        true => "-".to_string(),
        false => items.join(", "),
    };
    let config: Vec<String> = status
        .config
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut out = String::new();
    let mut line = |key: &str, value: String| out += &format!("{key:<13}{value}\n");
    line("NAME", status.name.clone());
    line("STATE", status.state.clone());
    line("GROUP", status.group.clone());
    line(
        "WASM",
        format!(
            "sha256 {} ({} bytes)",
            status.wasm_sha256, status.wasm_bytes
        ),
    );
    line("INPUTS", list(&status.inputs));
    line("OUTPUTS", list(&status.outputs));
    line("CONFIG", list(&config));
    line("ON-ERROR", status.on_error.clone());
    for (index, (key, value)) in status.limits.iter().enumerate() {
        let label = if index == 0 { "LIMITS" } else { "" };
        line(label, format!("{key}={}", limit_text(key, value)));
    }
    line("DEPLOYED", format_rfc3339(status.deployed_at_ms));
    line("RECORDS-IN", status.records_in.to_string());
    line("RECORDS-OUT", status.records_out.to_string());
    line(
        "ERRORS",
        format!(
            "{} (skipped {} records, dead-lettered {})",
            status.errors, status.skipped, status.dead_lettered
        ),
    );
    line("LAG", status.lag.to_string());
    if !status.stores.is_empty() || status.guarantee == "exactly-once" {
        line("GUARANTEE", status.guarantee.clone());
        line("STORES", list(&status.stores));
        line("LATE-DROPPED", status.late_dropped.to_string());
    }
    out
}

/// A limit's value, with its size in binary units for byte limits that
/// are whole KiB, MiB or GiB.
fn limit_text(key: &str, value: &Value) -> String {
    let Some(bytes) = value.as_u64().filter(|_| key.contains("bytes")) else {
        return value.to_string();
    };
    let unit = [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        .into_iter()
        .find(|(size, _)| bytes >= *size && bytes % size == 0);
    match unit {
        Some((size, name)) => format!("{bytes} ({} {name})", bytes / size),
        None => bytes.to_string(),
    }
}

fn partitions_text(partitions: &[PartitionStatus]) -> String {
    let dash = |value: Option<i64>| value.map_or("-".to_string(), |v| v.to_string());
    let stateful = partitions.iter().any(|p| p.stateful.is_some());
    let rows = partitions
        .iter()
        .map(|p| {
            let mut row = vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.state.clone(),
                dash(p.committed_offset),
                dash(p.high_watermark),
                dash(p.lag),
                p.records_in.to_string(),
                p.records_out.to_string(),
                p.errors.to_string(),
            ];
            if stateful {
                let s = p.stateful.as_ref();
                row.extend([
                    s.and_then(|s| s.stream_time)
                        .map_or("-".to_string(), format_rfc3339),
                    s.map_or("-".into(), |s| s.late_dropped.to_string()),
                    s.map_or("-".into(), |s| s.commits.to_string()),
                    s.map_or("-".into(), |s| s.state_bytes.to_string()),
                    s.map_or("-".into(), |s| s.keys.to_string()),
                    s.and_then(|s| s.open_windows)
                        .map_or("-".into(), |n| n.to_string()),
                    match s.and_then(|s| s.restoring.as_ref()) {
                        Some(r) => format!("restoring: {} records, {} bytes", r.records, r.bytes),
                        None => s
                            .and_then(|s| s.rebuilding_until)
                            .map_or("-".to_string(), |until| format!("to {until}")),
                    },
                ]);
            }
            row
        })
        .collect();
    let mut headers = vec![
        "TOPIC",
        "PARTITION",
        "STATE",
        "COMMITTED",
        "HIGH-WATERMARK",
        "LAG",
        "IN",
        "OUT",
        "ERRORS",
    ];
    if stateful {
        headers.extend([
            "STREAM-TIME",
            "LATE",
            "COMMITS",
            "STATE-BYTES",
            "KEYS",
            "OPEN-WINDOWS",
            "REBUILDING",
        ]);
    }
    table(&headers, rows)
}

/// The processor's last error, then the distinct last errors of its
/// failed partitions (each failed partition stopped for its own reason).
fn last_errors(status: &ProcessorStatus) -> Vec<&LastError> {
    let mut errors: Vec<&LastError> = status.last_error.iter().collect();
    for partition in &status.partitions {
        if partition.state != "failed" {
            continue;
        }
        if let Some(error) = &partition.last_error {
            if !errors.contains(&error) {
                errors.push(error);
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::start_position::StartPosition;

    fn sample() -> Value {
        json!({
            "name": "big-orders",
            "state": "degraded",
            "group": "sluice-processor-big-orders",
            "wasm_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "wasm_bytes": 48213,
            "inputs": ["orders", "returns"],
            "outputs": ["big-orders"],
            "config": [["threshold", "100"]],
            "on_error": "fail",
            "limits": {
                "memory_bytes_max": 67108864,
                "process_time_ms_max": 1000,
                "output_bytes_per_batch_max": 1000000,
                "outputs_per_record_max": 16,
                "batch_records_max": 500,
                "batch_bytes_max": 1048576
            },
            "deployed_at_ms": 1700000000123i64,
            "records_in": 1200,
            "records_out": 310,
            "errors": 1,
            "skipped": 0,
            "dead_lettered": 0,
            "lag": 7,
            "last_error": {"message": "plugin trapped: unreachable", "topic": "orders",
                           "partition": 1, "offset": 5, "at_ms": 1700000001000i64},
            "a_field_from_the_future": {"x": 1},
            "partitions": [
                {"topic": "orders", "partition": 0, "state": "running", "committed_offset": 1000,
                 "high_watermark": 1002, "lag": 2, "records_in": 1000, "records_out": 300,
                 "errors": 0, "last_error": null},
                {"topic": "orders", "partition": 1, "state": "failed", "committed_offset": 5,
                 "high_watermark": 10, "lag": 5, "records_in": 200, "records_out": 10,
                 "errors": 1, "last_error": {"message": "plugin trapped: unreachable",
                 "topic": "orders", "partition": 1, "offset": 5, "at_ms": 1700000001000i64}},
                {"topic": "returns", "partition": 0, "state": "idle", "committed_offset": null,
                 "high_watermark": 0, "lag": 0, "records_in": 0, "records_out": 0, "errors": 0}
            ]
        })
    }

    #[test]
    fn status_renders_summary_partitions_and_last_error() {
        let status = parse_status(&sample()).unwrap();
        let expected = "\
NAME         big-orders
STATE        degraded
GROUP        sluice-processor-big-orders
WASM         sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 (48213 bytes)
INPUTS       orders, returns
OUTPUTS      big-orders
CONFIG       threshold=100
ON-ERROR     fail
LIMITS       batch_bytes_max=1048576 (1 MiB)
             batch_records_max=500
             memory_bytes_max=67108864 (64 MiB)
             output_bytes_per_batch_max=1000000
             outputs_per_record_max=16
             process_time_ms_max=1000
DEPLOYED     2023-11-14T22:13:20.123Z
RECORDS-IN   1200
RECORDS-OUT  310
ERRORS       1 (skipped 0 records, dead-lettered 0)
LAG          7

TOPIC    PARTITION  STATE    COMMITTED  HIGH-WATERMARK  LAG  IN    OUT  ERRORS
orders   0          running  1000       1002            2    1000  300  0
orders   1          failed   5          10              5    200   10   1
returns  0          idle     -          0               0    0     0    0

last error: orders/1@5: plugin trapped: unreachable
";
        assert_eq!(status_text(&status), expected);
    }

    #[test]
    fn deployed_line_abbreviates_the_hash() {
        let status = parse_status(&sample()).unwrap();
        assert_eq!(
            deployed_line(&status),
            "deployed big-orders (sha256 9f86d081884c…, 3 partitions)\n\n"
        );
    }

    #[test]
    fn a_minimal_status_renders_with_placeholders() {
        let status = parse_status(&json!({"name": "p", "state": "running"})).unwrap();
        let text = status_text(&status);
        assert!(text.contains("INPUTS       -\n"), "{text}");
        assert!(text.contains("CONFIG       -\n"), "{text}");
        assert!(!text.contains("TOPIC"), "{text}");
        assert!(!text.contains("last error"), "{text}");
        assert!(parse_status(&json!({"name": 5})).is_err());
    }

    #[test]
    fn failed_partitions_add_their_own_errors() {
        let mut value = sample();
        value["partitions"][1]["last_error"]["message"] = json!("out of fuel");
        value["partitions"][0]["last_error"] = json!({"message": "stale", "topic": "orders"});
        let text = status_text(&parse_status(&value).unwrap());
        assert!(text.ends_with(
            "last error: orders/1@5: plugin trapped: unreachable\n\
             last error: orders/1@5: out of fuel\n"
        ));
        assert!(
            !text.contains("stale"),
            "running partitions' errors are history: {text}"
        );
    }

    #[test]
    fn list_renders_one_row_per_processor() {
        let list = parse_list(&json!([sample(), {"name": "tiny", "state": "paused"}])).unwrap();
        let expected = "\
NAME        STATE     INPUTS          OUTPUTS     LAG  RECORDS-IN  RECORDS-OUT  ERRORS
big-orders  degraded  orders,returns  big-orders  7    1200        310          1
tiny        paused                                0    0           0            0
";
        assert_eq!(list_text(&list), expected);
    }

    #[test]
    fn rfc3339_round_trips_with_the_parser() {
        for raw in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2023-11-14T22:13:20.123Z",
            "2100-12-31T00:00:00.000Z",
            "1969-12-31T23:59:59.000Z",
        ] {
            let StartPosition::Timestamp(ms) = StartPosition::parse(raw).unwrap() else {
                panic!("{raw} is not a time");
            };
            assert_eq!(format_rfc3339(ms), raw);
        }
    }
}
