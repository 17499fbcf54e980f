//! Exactly-once across processors and timers: a chain of two exactly-once
//! processors under kill -9 (the second reads the first's transactional
//! outputs read_committed), and timers of both domains firing exactly once
//! across kills, the event-time ones by idle advance with no new input.

use std::collections::BTreeMap;

use serde_json::Value;

use super::windows::traffic;
use super::WindowOracle;
use super::{emitted_windows, input_log, pause, produce_at, wait_settled, Input, Random};
use crate::processors::{Consumed, Pipeline};

const START_MS: i64 = 1_767_225_600_000;

#[test]
fn a_chain_of_two_exactly_once_processors_is_exact_under_kills() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("views", 3);
    pipeline.create_topic("counts", 2);
    pipeline.create_topic("windows-per-key", 1);
    super::deploy_window_count(
        &pipeline,
        "views-per-second",
        ("views", "counts"),
        1000,
        &["--commit-interval-ms", "20"],
    );
    pipeline.deploy(
        "windows-per-key",
        "rekey-count",
        &[
            "--input",
            "counts",
            "--output",
            "windows-per-key",
            "--store",
            "counts",
            "--config",
            "field=key",
            "--commit-interval-ms",
            "20",
        ],
    );
    let mut random = Random::new(77);
    let mut total = 0;
    let mut next = [0usize; 3];
    for _ in 0..8 {
        for partition in 0..3 {
            let records: Vec<_> =
                traffic(&mut random, partition, next[partition as usize] + 300, 30)
                    .split_off(next[partition as usize]);
            next[partition as usize] += 300;
            total += records.len() as i64;
            produce_at(&pipeline, "views", partition, &records);
        }
        pause(random.below(80));
        pipeline.restart("KILL");
    }
    wait_settled(&pipeline, "views-per-second", total);
    let oracle = WindowOracle::compute(&input_log(&pipeline, "views"), 1000, 0);
    let mut windows_per_key: BTreeMap<String, i64> = BTreeMap::new();
    for (key, _) in oracle.closed.keys() {
        *windows_per_key.entry(key.clone()).or_default() += 1;
    }
    let closed = oracle.closed.len();
    // The second processor: caught up once it has seen every window.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let records = pipeline.consume("windows-per-key");
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        for record in &records {
            let value: Value = serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
            last.insert(
                value["key"].as_str().unwrap().to_string(),
                value["count"].as_i64().unwrap(),
            );
        }
        if records.len() >= closed {
            assert_eq!(records.len(), closed, "an update repeated");
            assert_eq!(last, windows_per_key);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {closed} updates",
            records.len()
        );
        pause(100);
    }
    let emitted = emitted_windows(&pipeline.consume("counts"));
    assert!(
        emitted.values().all(|c| c.len() == 1),
        "a window emitted twice"
    );
}

/// Deploys `timer-echo` as `echo`, exactly-once from `in` to `fired`,
/// with `more` arguments.
fn deploy_timer_echo(pipeline: &Pipeline, more: &[&str]) {
    let mut args = vec![
        "--input",
        "in",
        "--output",
        "fired",
        "--guarantee",
        "exactly-once",
    ];
    args.extend_from_slice(more);
    pipeline.deploy("echo", "timer-echo", &args);
}

/// What `timer-echo` wrote to `fired`, once it holds at least `count`
/// records (within a minute).
fn fired_at_least(pipeline: &Pipeline, count: usize) -> Vec<Consumed> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let fired = pipeline.consume("fired");
        if fired.len() >= count {
            return fired;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} timers fired",
            fired.len(),
            count
        );
        pause(100);
    }
}

#[test]
fn timers_of_both_domains_fire_exactly_once_across_kills() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("in", 2);
    pipeline.create_topic("fired", 2);
    deploy_timer_echo(
        &pipeline,
        &[
            "--idle-advance-ms",
            "200",
            "--commit-interval-ms",
            "20",
            "--config",
            "event_delay_ms=1000",
            "--config",
            "processing_delay_ms=300",
        ],
    );
    let mut random = Random::new(8);
    let mut total = 0;
    for round in 0..6 {
        for partition in 0..2 {
            let records: Vec<Input> = (0..50)
                .map(|i| {
                    let n = round * 1000 + partition as i64 * 100 + i;
                    (format!("r{n}"), START_MS + round * 500 + i * 10)
                })
                .collect();
            total += records.len();
            produce_at(&pipeline, "in", partition, &records);
        }
        pause(random.below(400));
        pipeline.restart("KILL");
    }
    // Every timer fires once: the event-time ones when idle advance moves
    // stream time past them, the processing-time ones 300 ms after their
    // record was processed.
    let fired = fired_at_least(&pipeline, 2 * total);
    let status = pipeline.wait_for("echo", "no timers pending", |s| {
        s["partitions"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["stateful"]["timers_pending"] == 0))
    });
    let fired_now = pipeline.consume("fired");
    assert_eq!(
        fired_now.len(),
        fired.len(),
        "timers kept firing: {status:#}"
    );
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for record in &fired_now {
        let value: Value = serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
        *per.entry((
            value["domain"].as_str().unwrap().to_string(),
            value["key"].as_str().unwrap().to_string(),
        ))
        .or_default() += 1;
    }
    assert_eq!(per.len(), 2 * total, "a timer never fired");
    assert!(per.values().all(|n| *n == 1), "a timer fired twice");
}

#[test]
fn a_failing_timer_is_narrowed_down_and_the_others_in_its_call_still_fire() {
    // 300 event-time timers come due together after one batch, so they
    // fire in one `on-timer` call; the plugin refuses any call holding
    // k150's timer and does not say which timer it was. The broker must
    // narrow the call down: 299 timers fire, k150's alone is skipped.
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("fired", 1);
    deploy_timer_echo(
        &pipeline,
        &[
            "--on-error",
            "skip",
            "--config",
            "event_delay_ms=0",
            // Processing-time timers stay pending for the test's life.
            "--config",
            "processing_delay_ms=86400000",
            "--config",
            "fail_key=k150",
        ],
    );
    let records: Vec<Input> = (0..300).map(|i| (format!("k{i}"), START_MS + i)).collect();
    produce_at(&pipeline, "in", 0, &records);
    // One more record later in event time: the batch before it is due.
    produce_at(&pipeline, "in", 0, &[("after".into(), START_MS + 10_000)]);
    let status = pipeline.wait_for("echo", "the failed timer skipped", |s| s["skipped"] == 1);
    let fired = fired_at_least(&pipeline, 300);
    let keys: std::collections::BTreeSet<String> = fired
        .iter()
        .map(|record| {
            let value: Value = serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
            assert_eq!(value["domain"], "event", "{value}");
            value["key"].as_str().unwrap().to_string()
        })
        .collect();
    let expected: std::collections::BTreeSet<String> = (0..300)
        .filter(|i| *i != 150)
        .map(|i| format!("k{i}"))
        .chain(["after".to_string()])
        .collect();
    assert_eq!(fired.len(), 300, "a timer fired twice: {status:#}");
    assert_eq!(keys, expected, "{status:#}");
    assert_eq!(status["errors"], 1, "{status:#}");
    let message = status["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("on-timer failed") && message.contains("\"k150\""),
        "the error names the timer: {status:#}"
    );
}

/// A redeploy ends an `on-timer` call under way (here one sleeping, with
/// a ten-minute time limit): the timer is not failed for it, even under
/// `skip`, but stays due and fires once after the redeploy.
#[test]
fn a_timer_call_ended_by_a_redeploy_fires_after_it_not_skipped() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("fired", 1);
    let common = [
        "--on-error",
        "skip",
        "--timeout-ms",
        "600000",
        "--config",
        "event_delay_ms=0",
        // Processing-time timers stay pending for the test's life.
        "--config",
        "processing_delay_ms=86400000",
    ];
    let mut sleepy = common.to_vec();
    sleepy.extend_from_slice(&["--config", "sleep_key=k0", "--config", "sleep_seconds=300"]);
    deploy_timer_echo(&pipeline, &sleepy);
    // Its event-time timer is due at once (stream time is its timestamp):
    // a call with that one timer, sleeping.
    produce_at(&pipeline, "in", 0, &[("k0".into(), START_MS)]);
    pipeline.wait_for("echo", "the sleeping on-timer call", |s| {
        s["records_in"] == 1 && s["partitions"][0]["state"] == "running"
    });
    deploy_timer_echo(&pipeline, &common);
    let fired = fired_at_least(&pipeline, 1);
    let value: Value = serde_json::from_str(fired[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(
        (value["domain"].as_str(), value["key"].as_str()),
        (Some("event"), Some("k0"))
    );
    let status = pipeline.wait_for("echo", "committed", |s| {
        s["partitions"][0]["committed_offset"] == 1
    });
    assert_eq!(status["skipped"], 0, "{status:#}");
    assert_eq!(pipeline.consume("fired").len(), 1);
}
