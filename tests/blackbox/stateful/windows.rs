//! Windowed counts: exactly one final result per window, late records
//! dropped and counted, open windows queryable, idle time closing windows.

use std::collections::BTreeMap;

use super::{
    emitted_windows, get_json, input_log, produce_at, wait_settled, Input, Random, WindowOracle,
};
use crate::processors::Pipeline;

const START_MS: i64 = 1_767_225_600_000;

/// `count` records per partition of keys `p{partition}-k{0..keys}` with
/// timestamps mostly rising, some out of order within the grace period and
/// some far beyond it (late).
pub(crate) fn traffic(random: &mut Random, partition: i32, count: usize, keys: u64) -> Vec<Input> {
    (0..count)
        .map(|i| {
            let key = format!("p{partition}-k{}", random.below(keys));
            let mut timestamp = START_MS + i as i64 * 37;
            match random.below(20) {
                0 => timestamp -= 5_000,                    // late
                1 => timestamp -= random.below(150) as i64, // out of order, in grace
                _ => {}
            }
            (key, timestamp)
        })
        .collect()
}

fn deploy_counts(pipeline: &Pipeline, extra: &[&str]) {
    let mut args = vec!["--config", "grace_ms=200"];
    args.extend_from_slice(extra);
    super::deploy_window_count(
        pipeline,
        "views-per-second",
        ("views", "counts"),
        1000,
        &args,
    );
}

/// A key's windows are found whatever their starts (hopping windows: a
/// record in two; the store keeps a window's keys together, start by
/// start), within a range of starts, and no other key's come with them.
#[test]
fn a_keys_hopping_windows_are_queried_start_by_start() {
    let pipeline = one_partition();
    let args = ["--config", "advance_ms=500", "--config", "grace_ms=600000"];
    super::deploy_window_count(
        &pipeline,
        "views-per-second",
        ("views", "counts"),
        1000,
        &args,
    );
    let at = [0, 1_100, 2_300, 3_600];
    let records: Vec<Input> = ["a", "k", "kk", "z", "\u{0}"]
        .iter()
        .flat_map(|key| at.iter().map(|t| (key.to_string(), START_MS + t)))
        .collect();
    produce_at(&pipeline, "views", 0, &records);
    wait_settled(&pipeline, "views-per-second", records.len() as i64);
    let starts = |path: &str| -> Vec<(i64, i64, u64)> {
        let (code, answer) = get_json(&pipeline, path);
        assert_eq!(code, 200, "{answer:#}");
        answer["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let start = w["start"].as_i64().unwrap() - START_MS;
                let end = w["end"].as_i64().unwrap() - START_MS;
                (start, end, w["value"].as_u64().unwrap())
            })
            .collect()
    };
    let all: Vec<(i64, i64, u64)> = [-500, 0, 500, 1_000, 1_500, 2_000, 3_000, 3_500]
        .into_iter()
        .map(|start| (start, start + 1_000, 1))
        .collect();
    let base = "/v1/processors/views-per-second/stores/counts/windows";
    assert_eq!(starts(&format!("{base}/k")), all);
    assert_eq!(starts(&format!("{base}/kk")), all);
    let (from, to) = (START_MS + 1_000, START_MS + 2_000);
    assert_eq!(
        starts(&format!("{base}/k?from={from}&to={to}")),
        all[3..6].to_vec()
    );
    assert!(starts(&format!("{base}/nobody")).is_empty());
}

/// A windowed query looks into at most 10 000 window starts of a
/// partition (two seeks each): past that it asks for a narrower range, and
/// a narrower range answers.
#[test]
fn a_query_over_too_many_window_starts_asks_for_a_narrower_range() {
    let pipeline = one_partition();
    // 999 windows a record; another key's 11 records 1 s apart: 10 989
    // starts, among them the 999 of k's one record.
    let args = ["--config", "advance_ms=1", "--config", "grace_ms=600000"];
    super::deploy_window_count(
        &pipeline,
        "views-per-second",
        ("views", "counts"),
        999,
        &args,
    );
    let mut records: Vec<Input> = (0..11)
        .map(|i| ("other".to_string(), START_MS + i * 1_000))
        .collect();
    records.push(("k".to_string(), START_MS + 5_000));
    produce_at(&pipeline, "views", 0, &records);
    wait_settled(&pipeline, "views-per-second", records.len() as i64);
    let base = "/v1/processors/views-per-second/stores/counts/windows/k";
    let (code, answer) = get_json(&pipeline, base);
    assert_eq!(code, 400, "{answer:#}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("narrow the range"), "{answer:#}");
    // k's windows start at 4 002..=5 000.
    let (from, to) = (START_MS + 4_500, START_MS + 5_500);
    let (code, answer) = get_json(&pipeline, &format!("{base}?from={from}&to={to}"));
    assert_eq!(code, 200, "{answer:#}");
    let windows = answer["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 501, "{answer:#}");
    assert!(windows.iter().all(|w| w["value"] == 1), "{answer:#}");
    assert_eq!(windows[0]["start"].as_i64(), Some(from));
    assert_eq!(windows[500]["start"].as_i64(), Some(START_MS + 5_000));
}

/// A broker with topics `views` and `counts` of one partition each.
fn one_partition() -> Pipeline {
    let pipeline = Pipeline::start();
    pipeline.create_topic("views", 1);
    pipeline.create_topic("counts", 1);
    pipeline
}

/// One partition of `views` counted per second into `counts`.
fn one_partition_counts(extra: &[&str]) -> Pipeline {
    let pipeline = one_partition();
    deploy_counts(&pipeline, extra);
    pipeline
}

/// Key `k`'s first window in the committed state holds `count`.
fn assert_first_window_of_k(pipeline: &Pipeline, count: u64) {
    let (code, answer) = get_json(
        pipeline,
        "/v1/processors/views-per-second/stores/counts/windows/k",
    );
    assert_eq!(code, 200);
    assert_eq!(
        answer["windows"][0]["value"].as_u64(),
        Some(count),
        "{answer:#}"
    );
}

#[test]
fn windows_close_exactly_once_late_records_are_counted_and_open_ones_are_queryable() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("views", 3);
    pipeline.create_topic("counts", 3);
    deploy_counts(&pipeline, &[]);
    let mut random = Random::new(11);
    let mut total = 0;
    for partition in 0..3 {
        let records = traffic(&mut random, partition, 1_500, 7);
        total += records.len() as i64;
        produce_at(&pipeline, "views", partition, &records);
    }
    let status = wait_settled(&pipeline, "views-per-second", total);
    let oracle = WindowOracle::compute(&input_log(&pipeline, "views"), 1000, 200);
    assert!(oracle.late > 0 && !oracle.closed.is_empty() && !oracle.open.is_empty());

    let emitted = emitted_windows(&pipeline.consume("counts"));
    let duplicates: Vec<_> = emitted.iter().filter(|(_, c)| c.len() > 1).collect();
    assert!(
        duplicates.is_empty(),
        "windows emitted twice: {duplicates:?}"
    );
    let emitted: BTreeMap<_, _> = emitted.into_iter().map(|(k, c)| (k, c[0])).collect();
    assert_eq!(emitted, oracle.closed);
    assert_eq!(
        status["late_dropped"].as_u64(),
        Some(oracle.late),
        "{status:#}"
    );
    assert_eq!(status["guarantee"], "exactly-once");
    // One timer per open window start in a partition (emit final closes
    // every key's window of that start with it).
    let timers = super::stateful_total(&status, "timers_pending");
    assert_eq!(timers, oracle.open_starts, "{status:#}");
    assert!(oracle.open_starts < oracle.open.len() as u64);
    // One store entry per open window: the status's key count, and its
    // open windows (the store's entries, opened as windowed).
    assert_eq!(
        super::stateful_total(&status, "keys"),
        oracle.open.len() as u64,
        "{status:#}"
    );
    assert_eq!(
        super::stateful_total(&status, "open_windows"),
        oracle.open.len() as u64,
        "{status:#}"
    );
    for partition in status["partitions"].as_array().unwrap() {
        let stateful = &partition["stateful"];
        assert!(
            stateful["stream_time"].as_i64().unwrap() > START_MS,
            "{partition:#}"
        );
        assert!(stateful["commits"].as_u64().unwrap() > 0, "{partition:#}");
    }

    // The open windows are in the committed state, with the oracle's
    // counts: a key's every open window, each under a start of its own
    // in the store; keys with the most open windows first.
    let mut by_key: BTreeMap<&str, Vec<(i64, u64)>> = BTreeMap::new();
    for ((key, start), count) in &oracle.open {
        by_key.entry(key).or_default().push((*start, *count));
    }
    let mut keys: Vec<_> = by_key.into_iter().collect();
    keys.sort_by_key(|(_, windows)| std::cmp::Reverse(windows.len()));
    for (key, expected) in keys.iter().take(10) {
        let path = format!("/v1/processors/views-per-second/stores/counts/windows/{key}");
        let (code, answer) = get_json(&pipeline, &path);
        assert_eq!(code, 200, "{answer:#}");
        let windows: Vec<(i64, u64)> = answer["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let start = w["start"].as_i64().unwrap();
                assert_eq!(w["end"].as_i64(), Some(start + 1000), "{answer:#}");
                (start, w["value"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(&windows, expected, "{key}: {answer:#}");
        let position = &answer["positions"][0];
        assert!(position["offset"].as_i64().unwrap() > 0, "{answer:#}");
    }
    // A closed window's state is gone (emit final deletes it).
    let ((key, start), _) = oracle.closed.iter().next().unwrap();
    let path = format!(
        "/v1/processors/views-per-second/stores/counts/windows/{key}?from={start}&to={start}"
    );
    let (code, answer) = get_json(&pipeline, &path);
    assert_eq!(code, 200);
    assert_eq!(
        answer["windows"].as_array().map(Vec::len),
        Some(0),
        "{answer:#}"
    );
    // The CLI reads the same.
    let ((key, start), count) = oracle.open.iter().next().unwrap();
    let text = pipeline.sluice_ok(&[
        "processor",
        "state",
        "windows",
        "views-per-second",
        "counts",
        key,
    ]);
    assert!(
        text.lines()
            .any(|line| line == format!("{start}\t{}\t{count}", start + 1000)),
        "{text}"
    );
}

#[test]
fn idle_advance_closes_windows_when_input_goes_quiet() {
    let pipeline = one_partition_counts(&["--idle-advance-ms", "300"]);
    let records: Vec<Input> = (0..10)
        .map(|i| ("k".to_string(), START_MS + i * 10))
        .collect();
    produce_at(&pipeline, "views", 0, &records);
    // No more input: the window [START, START + 1000) closes once stream
    // time has idled past its end plus grace.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let emitted = emitted_windows(&pipeline.consume("counts"));
        if let Some(counts) = emitted.get(&("k".to_string(), START_MS)) {
            assert_eq!(counts, &vec![10]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the window never closed"
        );
        super::pause(100);
    }
    let status = pipeline.status("views-per-second");
    let stream_time = status["partitions"][0]["stateful"]["stream_time"]
        .as_i64()
        .unwrap();
    assert!(stream_time >= START_MS + 1200, "{status:#}");
}

/// A record stamped just above `i64::MIN` falls in no window (its window
/// would start before the bottom of time): it is a late record like any
/// other. The SDK's window arithmetic used to wrap there, and the plugin
/// built windows until its memory limit trapped, stopping the processor.
#[test]
fn a_record_at_the_bottom_of_time_is_late_not_a_failure() {
    let pipeline = one_partition_counts(&[]);
    let at = |timestamp| vec![("k".to_string(), timestamp)];
    produce_at(&pipeline, "views", 0, &at(START_MS));
    produce_at(&pipeline, "views", 0, &at(i64::MIN + 1));
    produce_at(&pipeline, "views", 0, &at(START_MS + 10));
    let status = wait_settled(&pipeline, "views-per-second", 3);
    assert_eq!(status["state"], "running", "{status:#}");
    assert_eq!(status["late_dropped"].as_u64(), Some(1), "{status:#}");
    assert_first_window_of_k(&pipeline, 2);
}

#[test]
fn without_idle_advance_a_quiet_window_stays_open() {
    let pipeline = one_partition_counts(&[]);
    let records: Vec<Input> = (0..10)
        .map(|i| ("k".to_string(), START_MS + i * 10))
        .collect();
    produce_at(&pipeline, "views", 0, &records);
    let status = wait_settled(&pipeline, "views-per-second", 10);
    assert!(pipeline.consume("counts").is_empty());
    assert_eq!(
        status["partitions"][0]["stateful"]["timers_pending"], 1,
        "{status:#}"
    );
    // Committed in state, queryable.
    assert_first_window_of_k(&pipeline, 10);
}

/// A close of more windows than one step fires (64 rounds of a batch's
/// worth of timers: 256 with batches of 4 records) finishes without
/// more input. The step used to leave the rest for the next record, so
/// without idle advance the last windows stayed open until one came.
#[test]
fn a_close_of_more_windows_than_a_step_fires_finishes_without_more_input() {
    const KEYS: i64 = 600;
    let pipeline = one_partition_counts(&["--batch-records", "4"]);
    // One record per key in the window [START, START + 1000), then one at
    // START + 2000: stream time past every window's end plus grace.
    let mut records: Vec<Input> = (0..KEYS).map(|i| (format!("k{i}"), START_MS + i)).collect();
    records.push(("closer".to_string(), START_MS + 2000));
    produce_at(&pipeline, "views", 0, &records);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let emitted = loop {
        let emitted = emitted_windows(&pipeline.consume("counts"));
        if emitted.len() as i64 >= KEYS {
            break emitted;
        }
        if std::time::Instant::now() > deadline {
            let status = pipeline.status("views-per-second");
            panic!(
                "{} of {KEYS} windows closed; status: {status:#}",
                emitted.len()
            );
        }
        super::pause(100);
    };
    assert_eq!(emitted.len() as i64, KEYS);
    assert!(
        emitted.values().all(|counts| counts == &vec![1]),
        "{emitted:?}"
    );
    let status = wait_settled(&pipeline, "views-per-second", KEYS + 1);
    // The closer's own window is the one left open.
    assert_eq!(
        status["partitions"][0]["stateful"]["timers_pending"], 1,
        "{status:#}"
    );
}

/// `emit=update` closes a window by clearing its keys' range in one call
/// (`clear-range`): one range tombstone when the task holds every key it
/// has, key by key after a restart until it does again. Either way, across
/// a kill -9: each window's last update is its count, a closed window's
/// state is gone, the open ones hold the oracle's counts, and the key
/// count is exact.
#[test]
fn update_mode_closes_clear_window_state_exactly_across_a_kill() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("views", 2);
    pipeline.create_topic("counts", 2);
    super::deploy_window_count_emitting(
        &pipeline,
        "views-per-second",
        ("views", "counts"),
        1000,
        "update",
        &["--config", "grace_ms=200"],
    );
    let mut random = Random::new(29);
    let traffic: Vec<Vec<Input>> = (0..2)
        .map(|partition| traffic(&mut random, partition, 3_000, 300))
        .collect();
    let mut produced = 0;
    for (half, range) in [0..1_500, 1_500..3_000].into_iter().enumerate() {
        for (partition, records) in (0..).zip(&traffic) {
            produce_at(&pipeline, "views", partition, &records[range.clone()]);
            produced += range.len() as i64;
        }
        wait_settled(&pipeline, "views-per-second", produced);
        if half == 0 {
            pipeline.restart("KILL");
        }
    }
    let status = wait_settled(&pipeline, "views-per-second", produced);
    let oracle = WindowOracle::compute(&input_log(&pipeline, "views"), 1000, 200);
    assert!(oracle.closed.len() > 100 && !oracle.open.is_empty());

    // Every update once (exactly once), so a window's last is its count.
    let mut last = BTreeMap::new();
    for (window, counts) in emitted_windows(&pipeline.consume("counts")) {
        let expected: Vec<u64> = (1..=*counts.last().unwrap()).collect();
        assert_eq!(counts, expected, "{window:?}: every update once, in order");
        last.insert(window, *counts.last().unwrap());
    }
    let mut expected = oracle.closed.clone();
    expected.extend(oracle.open.clone());
    assert_eq!(last, expected);
    assert_eq!(
        super::stateful_total(&status, "keys"),
        oracle.open.len() as u64,
        "one entry per open window: {status:#}"
    );
    assert_eq!(
        super::stateful_total(&status, "open_windows"),
        oracle.open.len() as u64,
        "{status:#}"
    );
    assert_eq!(
        super::stateful_total(&status, "timers_pending"),
        oracle.open_starts,
        "{status:#}"
    );
    let base = "/v1/processors/views-per-second/stores/counts/windows";
    for ((key, start), count) in oracle.closed.iter().step_by(97) {
        let path = format!("{base}/{key}?from={start}&to={start}");
        let (code, answer) = get_json(&pipeline, &path);
        assert_eq!(code, 200);
        assert_eq!(
            answer["windows"],
            serde_json::json!([]),
            "{key} {start} ({count})"
        );
    }
    for ((key, start), count) in &oracle.open {
        let path = format!("{base}/{key}?from={start}&to={start}");
        let (_, answer) = get_json(&pipeline, &path);
        assert_eq!(
            answer["windows"][0]["value"].as_u64(),
            Some(*count),
            "{answer:#}"
        );
    }
}
