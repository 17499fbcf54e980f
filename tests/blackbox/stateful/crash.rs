//! Exactly-once under kill -9: the broker is killed at random points
//! while it processes, dozens of times, half of them in the middle of a
//! produce; afterwards no acknowledged input is missing and the outputs
//! (read_committed) and the queried state equal a reference computed from
//! the input log, with no window lost or emitted twice and the same late
//! records dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;

use super::windows::traffic;
use super::WindowOracle;
use super::{
    emitted_windows, get_json, input_log, pause, produce_at, produce_to, wait_settled, Random,
};
use crate::processors::Pipeline;

/// Kills in the loop below.
const KILLS: usize = 50;

/// Input records in all: 2 000 000 (about 2 minutes on 2 cores);
/// `SLUICE_TEST_ORACLE_RECORDS` overrides, e.g. smaller for a quick run.
fn oracle_records() -> usize {
    std::env::var("SLUICE_TEST_ORACLE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
}

/// The input's records in all: the sum of its partitions' high
/// watermarks (none is transactional).
fn log_end(pipeline: &Pipeline) -> i64 {
    let mut client = crate::kafka::KafkaClient::connect(pipeline.broker.kafka);
    (0..6)
        .map(|partition| crate::transactions::watermarks(&mut client, "views", partition).0)
        .sum()
}

#[test]
fn windowed_counts_are_exact_after_fifty_kill_9s_during_processing() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("views", 6);
    pipeline.create_topic("counts", 6);
    let mut client = crate::kafka::KafkaClient::connect(pipeline.broker.kafka);
    let (code, message) = client.create_topic("per-user", 3, &[("cleanup.policy", "compact")]);
    assert_eq!(code, 0, "{message:?}");
    // A second processor on the same input: a running count per key into
    // a compacted topic.
    pipeline.deploy(
        "views-per-user",
        "aggregate-json",
        &[
            "--input",
            "views",
            "--output",
            "per-user",
            "--store",
            "aggregates",
            "--config",
            "field=n",
            "--config",
            "group_by=user",
            "--commit-interval-ms",
            "20",
        ],
    );
    super::deploy_window_count(
        &pipeline,
        "views-per-second",
        ("views", "counts"),
        1000,
        &["--config", "grace_ms=200", "--commit-interval-ms", "20"],
    );
    let mut random = Random::new(2026);
    let mut next = [0usize; 6];
    // Records acknowledged per partition: all must be in the log.
    let acked: Arc<[AtomicUsize; 6]> = Arc::new(Default::default());
    let sum = |acked: &[AtomicUsize; 6]| -> usize {
        acked.iter().map(|a| a.load(Ordering::SeqCst)).sum()
    };
    let mut cut_short = 0;
    for round in 0..KILLS {
        // A few thousand records over the partitions, then a kill at a
        // random moment while the tasks work through them: in even rounds
        // while they are being produced too (the producer stops at the
        // kill; what it wrote unacknowledged may be in the log or not).
        let per_round = oracle_records() / KILLS / 6;
        let mut batches = Vec::new();
        for partition in 0..6 {
            let count = per_round / 2 + random.below(per_round as u64) as usize;
            let records: Vec<_> =
                traffic(&mut random, partition, next[partition as usize] + count, 50)
                    .split_off(next[partition as usize]);
            next[partition as usize] += count;
            batches.push((partition, records));
        }
        let kafka = pipeline.broker.kafka;
        let acked_before = sum(&acked);
        let acked_now = acked.clone();
        let producer = std::thread::spawn(move || {
            for (partition, records) in batches {
                let acked = &acked_now[partition as usize];
                produce_to(kafka, "views", partition, &records, |n| {
                    acked.fetch_add(n, Ordering::SeqCst);
                });
            }
        });
        let producing = if round % 2 == 1 {
            assert!(producer.join().is_ok(), "round {round}: produce failed");
            pause(random.below(60));
            None
        } else {
            // Killed once the round's first request is acknowledged.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while sum(&acked) == acked_before && !producer.is_finished() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: no ack"
                );
                pause(1);
            }
            pause(random.below(20));
            Some(producer)
        };
        pipeline.restart("KILL");
        // The producer fails at the kill, unless it was done before.
        if producing.is_some_and(|producer| producer.join().is_err()) {
            cut_short += 1;
        }
        if round % 10 == 9 {
            // Now and then let it catch up, so kills also land at commits
            // of caught-up tasks and during recovery.
            wait_settled(&pipeline, "views-per-second", log_end(&pipeline));
        }
    }
    let total = log_end(&pipeline);
    let status = wait_settled(&pipeline, "views-per-second", total);
    let per_user = wait_settled(&pipeline, "views-per-user", total);
    let log = input_log(&pipeline, "views");
    assert_eq!(log.values().map(Vec::len).sum::<usize>() as i64, total);
    for (partition, acked) in acked.iter().enumerate() {
        let logged = log.get(&(partition as i64)).map_or(0, Vec::len);
        let acked = acked.load(Ordering::SeqCst);
        assert!(
            logged >= acked,
            "partition {partition}: {acked} records acknowledged, {logged} in the log"
        );
    }
    assert!(cut_short > 0, "no kill landed during a produce");
    let oracle = WindowOracle::compute(&log, 1000, 200);

    let emitted = emitted_windows(&pipeline.consume("counts"));
    let duplicates: Vec<_> = emitted.iter().filter(|(_, c)| c.len() > 1).collect();
    assert!(
        duplicates.is_empty(),
        "windows emitted twice: {duplicates:?}"
    );
    let emitted: BTreeMap<_, _> = emitted.into_iter().map(|(k, c)| (k, c[0])).collect();
    let missing: Vec<_> = oracle
        .closed
        .keys()
        .filter(|k| !emitted.contains_key(*k))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "windows never emitted: {missing:?}");
    assert_eq!(
        emitted, oracle.closed,
        "emitted counts differ from the reference"
    );
    assert_eq!(
        status["late_dropped"].as_u64(),
        Some(oracle.late),
        "{status:#}"
    );
    // Every open window's committed count equals the reference.
    let mut by_key: BTreeMap<&str, Vec<(i64, u64)>> = BTreeMap::new();
    for ((key, start), count) in &oracle.open {
        by_key.entry(key).or_default().push((*start, *count));
    }
    for (key, expected) in by_key {
        let path = format!("/v1/processors/views-per-second/stores/counts/windows/{key}");
        let (code, answer) = get_json(&pipeline, &path);
        assert_eq!(code, 200, "{answer:#}");
        let got: Vec<(i64, u64)> = answer["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["start"].as_i64().unwrap(), w["value"].as_u64().unwrap()))
            .collect();
        assert_eq!(got, expected, "open windows of {key}");
    }
    // The running count per key: the latest record of each key in the
    // compacted topic is the key's number of input records.
    let mut per_key: BTreeMap<String, u64> = BTreeMap::new();
    for records in log.values() {
        for (key, _) in records {
            *per_key.entry(key.clone()).or_default() += 1;
        }
    }
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    for record in pipeline.consume("per-user") {
        let value: serde_json::Value =
            serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
        latest.insert(record.key.unwrap(), value["count"].as_u64().unwrap());
    }
    assert_eq!(latest, per_key, "running counts per key");
    // The key counts, kept through every kill: one entry per open window,
    // one aggregate per user.
    assert_eq!(
        super::stateful_total(&status, "keys"),
        oracle.open.len() as u64,
        "{status:#}"
    );
    assert_eq!(
        super::stateful_total(&status, "open_windows"),
        oracle.open.len() as u64,
        "the SDK's windows open their store as windowed: {status:#}"
    );
    assert_eq!(
        super::stateful_total(&per_user, "keys"),
        per_key.len() as u64,
        "{per_user:#}"
    );
    let partitions = per_user["partitions"].as_array().unwrap();
    assert!(
        partitions
            .iter()
            .all(|p| p["stateful"].get("open_windows").is_none()),
        "a plain store holds no windows: {per_user:#}"
    );
}

/// The broker aborts itself at each of the commit protocol's critical
/// instants (a debug-build hook, `SLUICE_TEST_CRASH`); after a restart the
/// results are exactly the reference's.
#[test]
fn crashes_at_each_step_of_the_commit_leave_exact_results() {
    for point in [
        "after-outputs-durable",
        "after-state-commit",
        "between-markers",
    ] {
        let mut pipeline = Pipeline::start_with_env(&[("SLUICE_TEST_CRASH", point)]);
        pipeline.create_topic("views", 2);
        pipeline.create_topic("counts", 3);
        super::deploy_window_count(
            &pipeline,
            "views-per-second",
            ("views", "counts"),
            1000,
            &[],
        );
        // Paused while the input is written, so the crash cannot land
        // during the writing.
        pipeline.sluice_ok(&["processor", "pause", "views-per-second"]);
        let mut random = Random::new(5);
        let mut total = 0;
        for partition in 0..2 {
            let records = traffic(&mut random, partition, 3_000, 40);
            total += records.len() as i64;
            produce_at(&pipeline, "views", partition, &records);
        }
        // The answer may not come: the broker may abort first.
        let _ = pipeline.sluice(&["processor", "resume", "views-per-second"]);
        let status = pipeline.restart_after_exit(std::time::Duration::from_secs(60));
        assert!(!status.success(), "{point}: the broker should have aborted");
        let status = wait_settled(&pipeline, "views-per-second", total);
        let oracle = WindowOracle::compute(&input_log(&pipeline, "views"), 1000, 0);
        let emitted = emitted_windows(&pipeline.consume("counts"));
        assert!(
            emitted.values().all(|c| c.len() == 1),
            "{point}: a window was emitted twice"
        );
        let emitted: BTreeMap<_, _> = emitted.into_iter().map(|(k, c)| (k, c[0])).collect();
        assert_eq!(emitted, oracle.closed, "{point}");
        assert_eq!(
            status["late_dropped"].as_u64(),
            Some(oracle.late),
            "{point}"
        );
    }
}

/// The fourth crash point, in the middle of an abort: a redeploy
/// interrupts a call while the task's transaction is open in several
/// output partitions, the task aborts it, and the broker dies after the
/// first partition's abort marker. After a restart, recovery aborts the
/// rest, and every record's output is read (read_committed) exactly once.
#[test]
fn a_crash_in_the_middle_of_an_abort_leaves_exact_results() {
    let mut pipeline = Pipeline::start_with_env(&[("SLUICE_TEST_CRASH", "during-abort")]);
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 3);
    // Stateless but exactly-once: transactions and commits without
    // stores. A record holding "doze-here" sleeps in the call; the
    // longest commit interval puts a caught-up task's second commit 15 s
    // after its first.
    let wasm = crate::plugins::wasm("fault-sleep");
    let deploy = |trigger: &str| {
        let trigger = format!("trigger={trigger}");
        pipeline.sluice(&crate::processors::deploy_args(
            "dozer",
            &wasm,
            &[
                "--input",
                "in",
                "--output",
                "out",
                "--guarantee",
                "exactly-once",
                "--commit-interval-ms",
                "60000",
                "--timeout-ms",
                "600000",
                "--config",
                &trigger,
                "--config",
                "seconds=300",
            ],
        ))
    };
    let deployed = deploy("doze-here");
    assert!(deployed.status.success(), "{deployed:?}");
    let keyed = |prefix: &str| -> Vec<(String, String)> {
        (0..12)
            .map(|i| (format!("{prefix}-{i}"), format!("{prefix}-{i}")))
            .collect()
    };
    let produce = |records: &[(String, String)]| {
        let pairs: Vec<(Option<&str>, &str)> = records
            .iter()
            .map(|(k, v)| (Some(k.as_str()), v.as_str()))
            .collect();
        pipeline.produce("in", &pairs);
    };
    let committed = |s: &Value| s["partitions"][0]["committed_offset"].as_i64();
    // Committed at once: the task's first commit after it caught up.
    produce(&keyed("a"));
    pipeline.wait_for("dozer", "a committed", |s| committed(s) == Some(12));
    // Processed, its commit 15 s away: a transaction open in several of
    // the output's partitions.
    produce(&keyed("b"));
    pipeline.wait_for("dozer", "b processed", |s| {
        s["records_in"] == 24 && s["partitions"][0]["state"] == "idle"
    });
    assert_eq!(committed(&pipeline.status("dozer")), Some(12));
    // A call that sleeps.
    produce(&[("c".to_string(), "c doze-here".to_string())]);
    pipeline.wait_for("dozer", "the sleeping call", |s| {
        s["partitions"][0]["state"] == "running"
    });
    // A redeploy (a trigger no record holds) stops the task: its call is
    // interrupted and its transaction aborted. The answer may not come.
    let _ = deploy("never-seen");
    // Restarted without the crash point (and, should the redeploy not
    // have been recorded, with the new trigger all the same), so the
    // records are processed again to the end.
    let status = pipeline.restart_after_exit_with(std::time::Duration::from_secs(60), |data| {
        let spec = data.join("processors/dozer.json");
        let text = std::fs::read_to_string(&spec).unwrap();
        std::fs::write(&spec, text.replace("doze-here", "never-seen")).unwrap();
    });
    assert!(!status.success(), "the broker should have aborted");
    pipeline.wait_for("dozer", "all committed", |s| committed(s) == Some(25));
    let mut read: Vec<String> = pipeline
        .consume("out")
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    read.sort();
    let mut expected: Vec<String> = keyed("a")
        .into_iter()
        .chain(keyed("b"))
        .map(|(_, v)| v)
        .chain(["c doze-here".to_string()])
        .collect();
    expected.sort();
    assert_eq!(read, expected);
    // b's first outputs are in the log, aborted, in more than one
    // partition; nothing is left open.
    let mut client = crate::kafka::KafkaClient::connect(pipeline.broker.kafka);
    let mut written = 0;
    for partition in 0..3 {
        let (high_watermark, last_stable) =
            crate::transactions::watermarks(&mut client, "out", partition);
        assert_eq!(last_stable, high_watermark, "out/{partition} left open");
        written += high_watermark;
    }
    assert!(written > 25 + 12, "b's aborted outputs: {written} offsets");
}

/// A transaction a crash left open is ended at startup even when its
/// processor does not run then (here: paused): otherwise it would hold
/// its output partition's last stable offset, and every read_committed
/// reader, until the processor ran again.
#[test]
fn a_paused_processors_open_transaction_is_ended_at_startup() {
    let mut pipeline = Pipeline::start_with_env(&[("SLUICE_TEST_CRASH", "after-outputs-durable")]);
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    let wasm = crate::plugins::repo_root().join("tests/fixtures/contract-0.1/uppercase.wasm");
    pipeline.sluice_ok(&[
        "processor",
        "deploy",
        "shout",
        "--wasm",
        wasm.to_str().unwrap(),
        "--input",
        "in",
        "--output",
        "out",
        "--guarantee",
        "exactly-once",
    ]);
    // Paused while the record is written, so the abort cannot cut the
    // produce short; once resumed, the record's output is written and
    // durable and the broker aborts before the commit point (the answer
    // to resume may not come).
    pipeline.sluice_ok(&["processor", "pause", "shout"]);
    pipeline.produce("in", &[(Some("k"), "hello")]);
    let _ = pipeline.sluice(&["processor", "resume", "shout"]);
    let status = pipeline.restart_after_exit_with(std::time::Duration::from_secs(60), |data| {
        let spec = data.join("processors/shout.json");
        let text = std::fs::read_to_string(&spec).unwrap();
        std::fs::write(&spec, text.replace("\"paused\": false", "\"paused\": true")).unwrap();
    });
    assert!(!status.success(), "the broker should have aborted");
    assert_eq!(pipeline.status("shout")["state"], "paused");
    let mut client = crate::kafka::KafkaClient::connect(pipeline.broker.kafka);
    let (high_watermark, last_stable) = crate::transactions::watermarks(&mut client, "out", 0);
    assert!(high_watermark > 0, "the output was written");
    assert_eq!(
        last_stable, high_watermark,
        "the open transaction was ended"
    );
    // Resumed, it processes the record again, once.
    pipeline.sluice_ok(&["processor", "resume", "shout"]);
    pipeline.wait_caught_up("shout", 1);
    let out = pipeline.consume("out");
    assert_eq!(
        out.iter()
            .map(|r| r.value.clone().unwrap())
            .collect::<Vec<_>>(),
        ["HELLO"]
    );
}
