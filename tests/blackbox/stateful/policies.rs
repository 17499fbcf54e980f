//! Error policies on a stateful processor: a record the plugin fails on,
//! or whose outputs break a limit after the plugin wrote its state, is
//! skipped or dead-lettered, and none of its state changes is applied,
//! nor applied twice for the good records of its batch (the batch's call
//! failed and its staged writes were rolled back before the records were
//! run one by one).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{get_json, wait_settled};
use crate::processors::Pipeline;

const RECORDS: usize = 60;

/// The largest outputs of one call: a group name of [`HUGE_GROUP`] bytes
/// makes its record's output (the group is its key and is in its value)
/// too large alone, once the plugin has written the group's new totals.
const OUTPUT_BYTES_MAX: &str = "4096";
const HUGE_GROUP: usize = 3_000;

/// How record `i` fails, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    /// A text amount: `aggregate-json` fails before writing anything.
    Amount,
    /// A huge group: the call succeeds with the state written, and the
    /// host refuses its outputs.
    Output,
}

fn failing(i: usize) -> Option<Bad> {
    match i {
        _ if i % 7 == 3 => Some(Bad::Amount),
        _ if i % 11 == 5 => Some(Bad::Output),
        _ => None,
    }
}

fn bad_kind(i: usize) -> Bad {
    failing(i).expect("a bad record")
}

fn group(i: usize) -> String {
    match failing(i) {
        Some(Bad::Output) => format!("big-{i}-{}", "x".repeat(HUGE_GROUP)),
        _ => format!("g{}", i % 3),
    }
}

/// Record `i`'s value: an order of its group, amount `i`.
fn order(i: usize) -> String {
    match failing(i) {
        Some(Bad::Amount) => format!(r#"{{"group":"{}","amount":"lots"}}"#, group(i)),
        _ => format!(r#"{{"group":"{}","amount":{i}}}"#, group(i)),
    }
}

fn deploy(pipeline: &Pipeline, name: &str, policy: &str) {
    pipeline.deploy(
        name,
        "aggregate-json",
        &[
            "--input",
            "orders",
            "--output",
            &format!("{name}-totals"),
            "--store",
            "aggregates",
            "--config",
            "field=amount",
            "--config",
            "group_by=group",
            "--output-bytes-max",
            OUTPUT_BYTES_MAX,
            "--on-error",
            policy,
        ],
    );
}

#[test]
fn a_failing_record_of_a_stateful_processor_is_skipped_or_dead_lettered_without_its_state() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("orders", 1);
    for name in ["skipper", "letterer"] {
        pipeline.create_topic(&format!("{name}-totals"), 1);
    }
    let values: Vec<String> = (0..RECORDS).map(order).collect();
    // One produce request: the bad records sit inside the plugin's batches.
    let pairs: Vec<(Option<&str>, &str)> = values.iter().map(|v| (None, v.as_str())).collect();
    pipeline.produce("orders", &pairs);
    deploy(&pipeline, "skipper", "skip");
    deploy(&pipeline, "letterer", "dead-letter");

    // The reference: the good records' counts and sums per group.
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let bad: Vec<usize> = (0..RECORDS).filter(|&i| failing(i).is_some()).collect();
    assert!(bad.iter().any(|&i| bad_kind(i) == Bad::Output) && bad.len() < RECORDS / 3);
    for i in (0..RECORDS).filter(|&i| failing(i).is_none()) {
        let totals = expected.entry(group(i)).or_default();
        totals.0 += 1;
        totals.1 += i as u64;
    }
    for name in ["skipper", "letterer"] {
        let status = wait_settled(&pipeline, name, RECORDS as i64);
        assert_eq!(status["errors"], bad.len(), "{name}: {status:#}");
        for (group, (count, sum)) in &expected {
            let path = format!("/v1/processors/{name}/stores/aggregates/keys/{group}");
            let (code, answer) = get_json(&pipeline, &path);
            assert_eq!(code, 200, "{path}: {answer:#}");
            let value: &Value = &answer["value"];
            assert_eq!(value["count"].as_u64(), Some(*count), "{path}: {answer:#}");
            assert_eq!(
                value["sum"].as_f64(),
                Some(*sum as f64),
                "{path}: {answer:#}"
            );
        }
        // The refused record's group was never written.
        let huge = bad.iter().find(|&&i| bad_kind(i) == Bad::Output).unwrap();
        let path = format!(
            "/v1/processors/{name}/stores/aggregates/keys/{}",
            group(*huge)
        );
        let (code, answer) = get_json(&pipeline, &path);
        assert_eq!(code, 404, "{name}: {answer:#}");
        // One output (the group's new totals) per good record.
        let totals = pipeline.consume(&format!("{name}-totals"));
        assert_eq!(totals.len(), RECORDS - bad.len(), "{name}");
    }
    let status = pipeline.status("letterer");
    assert_eq!(status["dead_lettered"], bad.len(), "{status:#}");
    let letters = pipeline.consume("letterer.dlq");
    let offsets: Vec<String> = letters
        .iter()
        .map(|l| l.headers["sluice.source.offset"].clone())
        .collect();
    let bad_offsets: Vec<String> = bad.iter().map(usize::to_string).collect();
    assert_eq!(offsets, bad_offsets);
    for letter in &letters {
        let offset: usize = letter.headers["sluice.source.offset"].parse().unwrap();
        assert_eq!(letter.value.as_deref(), Some(values[offset].as_str()));
        let why = match bad_kind(offset) {
            Bad::Amount => "amount",
            Bad::Output => "bytes",
        };
        assert!(letter.headers["sluice.error"].contains(why), "{letter:?}");
    }
}
