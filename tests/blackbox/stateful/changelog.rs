//! `--changelog`: the state folder deleted (after a clean stop, after a
//! kill -9 mid-stream, after a crash between a commit's markers) comes
//! back from the compacted changelog topic, with the same queried state,
//! position, stream time and timers, no input reprocessed and no output
//! repeated; the changelog is compacted, refused where it cannot be exact,
//! and removed with the processor.

use std::collections::BTreeMap;

use serde_json::Value;

use super::windows::traffic;
use super::{
    emitted_windows, get_json, input_log, pause, produce_at, wait_answer, wait_settled, Random,
    WindowOracle,
};
use crate::processors::Pipeline;

const CHANGELOG: &str = "sluice-processor-counter-changelog";
const SCAN: &str = "/v1/processors/counter/stores/counts/keys?limit=1000";

fn deploy(pipeline: &Pipeline) {
    super::deploy_window_count(
        pipeline,
        "counter",
        ("views", "counts"),
        1000,
        &["--changelog", "--commit-interval-ms", "20"],
    );
}

/// A broker with `views` and `counts` of 2 partitions each and the
/// counter deployed on them.
fn deployed() -> Pipeline {
    let pipeline = Pipeline::start();
    pipeline.create_topic("views", 2);
    pipeline.create_topic("counts", 2);
    deploy(&pipeline);
    pipeline
}

/// Produces `count` more records of `traffic` to each of 2 partitions
/// (`next` counts what each has had); returns how many.
fn produce_more(
    pipeline: &Pipeline,
    random: &mut Random,
    next: &mut [usize; 2],
    count: usize,
) -> i64 {
    let mut total = 0;
    for partition in 0..2 {
        let index = partition as usize;
        let records = traffic(random, partition, next[index] + count, 10).split_off(next[index]);
        next[index] += count;
        total += records.len() as i64;
        produce_at(pipeline, "views", partition, &records);
    }
    total
}

/// The committed figures of each partition that a restore must bring back.
fn committed_figures(status: &Value) -> Vec<Value> {
    status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = &p["stateful"];
            serde_json::json!([
                p["committed_offset"],
                s["stream_time"],
                s["late_dropped"],
                s["commits"],
                s["timers_pending"],
                s["keys"]
            ])
        })
        .collect()
}

/// Waits until `partitions` partitions restored their state (the notice
/// says so) and none is restoring.
fn wait_restored(pipeline: &Pipeline, partitions: usize) -> Value {
    pipeline.wait_for("counter", "the state restored from the changelog", |s| {
        s["partitions"].as_array().is_some_and(|ps| {
            let restored = ps.iter().filter(|p| {
                p["last_error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("restored it from the changelog"))
            });
            restored.count() >= partitions
                && ps.iter().all(|p| p["stateful"].get("restoring").is_none())
        })
    })
}

/// Outputs and state equal the reference from the input log: every closed
/// window emitted once, every open window's count in the state.
fn assert_exact(pipeline: &Pipeline) {
    let oracle = WindowOracle::compute(&input_log(pipeline, "views"), 1000, 0);
    let emitted = emitted_windows(&pipeline.consume("counts"));
    let twice: Vec<_> = emitted.iter().filter(|(_, c)| c.len() > 1).collect();
    assert!(twice.is_empty(), "windows emitted twice: {twice:?}");
    let emitted: BTreeMap<_, _> = emitted.into_iter().map(|(k, c)| (k, c[0])).collect();
    assert_eq!(
        emitted, oracle.closed,
        "emitted windows differ from the reference"
    );
    let mut open = 0;
    for (key, windows) in oracle
        .open
        .keys()
        .fold(BTreeMap::new(), |mut by_key, (k, s)| {
            by_key.entry(k.clone()).or_insert_with(Vec::new).push(*s);
            by_key
        })
    {
        let path = format!("/v1/processors/counter/stores/counts/windows/{key}");
        let answer = get_json(pipeline, &path).1;
        let got: Vec<i64> = answer["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["start"].as_i64().unwrap())
            .collect();
        assert_eq!(got, windows, "open windows of {key}");
        for window in answer["windows"].as_array().unwrap() {
            let start = window["start"].as_i64().unwrap();
            assert_eq!(
                window["value"].as_u64(),
                Some(oracle.open[&(key.clone(), start)])
            );
            open += 1;
        }
    }
    assert_eq!(open, oracle.open.len());
}

#[test]
fn a_deleted_state_folder_is_restored_from_the_changelog_without_reprocessing() {
    let mut pipeline = deployed();
    let (mut random, mut next) = (Random::new(12), [0; 2]);
    let mut total = produce_more(&pipeline, &mut random, &mut next, 2_000);
    let before_status = wait_settled(&pipeline, "counter", total);
    let before = get_json(&pipeline, SCAN).1["entries"].clone();
    assert!(before.as_array().is_some_and(|e| !e.is_empty()), "{before}");
    let emitted_before = emitted_windows(&pipeline.consume("counts"));
    // The changelog: compacted, one partition per input partition.
    let described = pipeline.sluice_ok(&["topic", "describe", CHANGELOG, "--format", "json"]);
    let described: Value = serde_json::from_str(&described).unwrap();
    assert_eq!(described["partitions"].as_array().unwrap().len(), 2);
    let policy = described["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "cleanup.policy")
        .cloned();
    assert_eq!(policy.unwrap()["value"], "compact", "{described:#}");

    pipeline.restart_after(|data| std::fs::remove_dir_all(data.join("state")).unwrap());
    let status = wait_restored(&pipeline, 2);
    assert_eq!(
        committed_figures(&status),
        committed_figures(&before_status)
    );
    assert_eq!(status["records_in"], 0, "input processed again: {status:#}");
    assert_eq!(get_json(&pipeline, SCAN).1["entries"], before);
    assert_eq!(
        emitted_windows(&pipeline.consume("counts")),
        emitted_before,
        "outputs repeated"
    );

    // It carries on exactly, and a second loss restores again.
    total += produce_more(&pipeline, &mut random, &mut next, 1_000);
    wait_settled(&pipeline, "counter", total);
    pipeline.restart_after(|data| std::fs::remove_dir_all(data.join("state")).unwrap());
    wait_restored(&pipeline, 2);
    total += produce_more(&pipeline, &mut random, &mut next, 1_000);
    wait_settled(&pipeline, "counter", total);
    assert_exact(&pipeline);
}

#[test]
fn a_partition_restoring_its_state_answers_queries_503_until_the_restore_is_whole() {
    let mut pipeline = deployed();
    let (mut random, mut next) = (Random::new(5), [0; 2]);
    let total = produce_more(&pipeline, &mut random, &mut next, 1_000);
    let settled = wait_settled(&pipeline, "counter", total);
    let before = get_json(&pipeline, SCAN).1;
    let oracle = WindowOracle::compute(&input_log(&pipeline, "views"), 1000, 0);
    let (key, _) = oracle.open.keys().next().expect("an open window").clone();
    let windows = format!("/v1/processors/counter/stores/counts/windows/{key}");
    let windows_before = get_json(&pipeline, &windows).1;
    assert!(
        windows_before["windows"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "{windows_before:#}"
    );
    let missing = "/v1/processors/counter/stores/counts/keys/no-such-key";
    assert_eq!(get_json(&pipeline, missing).0, 404);

    // Each partition's restore holds with every entry written and its
    // marker still there: the entries are all in RocksDB, their commit
    // record is not.
    let hold_dir = tempfile::tempdir().unwrap();
    let hold = hold_dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let env = format!("before-restore-finish:{}", hold.display());
    pipeline.restart_after_with_env(&[("SLUICE_TEST_HOLD", &env)], |data| {
        std::fs::remove_dir_all(data.join("state")).unwrap()
    });
    for partition in 0..2 {
        let path = format!("{SCAN}&partition={partition}");
        let expected = format!("partition {partition} of processor counter is restoring its state");
        wait_answer(&pipeline, &path, 503, &expected);
    }
    // A key found nowhere else may be in a restoring partition: not a 404.
    let (code, answer) = get_json(&pipeline, missing);
    assert_eq!(code, 503, "{answer:#}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("partition 0") && error.contains("partition 1"),
        "{error}"
    );
    assert_eq!(get_json(&pipeline, &windows).0, 503);
    // A restore's entries so far are of no commit: not even stale answers.
    assert_eq!(get_json(&pipeline, &format!("{windows}?stale=true")).0, 503);
    let output = pipeline.sluice(&["processor", "state", "windows", "counter", "counts", &key]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("restoring its state from its changelog"),
        "{stderr}"
    );

    std::fs::remove_file(&hold).unwrap();
    let status = wait_restored(&pipeline, 2);
    assert_eq!(committed_figures(&status), committed_figures(&settled));
    // The same entries, and the same positions, as before the loss.
    assert_eq!(get_json(&pipeline, SCAN).1, before);
    assert_eq!(get_json(&pipeline, &windows).1, windows_before);
    assert_eq!(get_json(&pipeline, missing).0, 404);
}

#[test]
fn state_lost_after_kill_9s_mid_stream_is_restored_exactly() {
    let mut pipeline = deployed();
    let (mut random, mut next) = (Random::new(77), [0; 2]);
    let mut total = 0;
    for round in 0..8 {
        total += produce_more(&pipeline, &mut random, &mut next, 4_000);
        pause(random.below(80));
        // Every other kill also loses the state folder.
        pipeline.kill_and_restart_after(|data| {
            if round % 2 == 0 {
                let _ = std::fs::remove_dir_all(data.join("state"));
            }
        });
    }
    wait_settled(&pipeline, "counter", total);
    assert_exact(&pipeline);
}

#[test]
fn a_crash_between_markers_then_a_lost_state_folder_loses_and_repeats_nothing() {
    let mut pipeline = Pipeline::start_with_env(&[("SLUICE_TEST_CRASH", "between-markers")]);
    pipeline.create_topic("views", 2);
    pipeline.create_topic("counts", 3);
    deploy(&pipeline);
    // Paused while the input is written, so the crash cannot land during
    // the writing.
    pipeline.sluice_ok(&["processor", "pause", "counter"]);
    let (mut random, mut next) = (Random::new(9), [0; 2]);
    let total = produce_more(&pipeline, &mut random, &mut next, 3_000);
    // The answer may not come: the broker may abort first.
    let _ = pipeline.sluice(&["processor", "resume", "counter"]);
    // Aborted after the changelog's commit marker, before the outputs':
    // the restored commit must commit the outputs' open transactions.
    let status = pipeline.restart_after_exit_with(std::time::Duration::from_secs(60), |data| {
        std::fs::remove_dir_all(data.join("state")).unwrap();
    });
    assert!(!status.success(), "the broker should have aborted");
    // The task that crashed restores; the other may not have committed yet.
    wait_restored(&pipeline, 1);
    wait_settled(&pipeline, "counter", total);
    assert_exact(&pipeline);
}

#[test]
fn the_changelog_is_refused_where_it_cannot_be_exact_and_removed_with_the_processor() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("views", 2);
    pipeline.create_topic("counts", 2);
    let refused = |extra: &[&str], expected: &str| {
        let wasm = crate::plugins::wasm("windowed-count");
        let mut args = vec!["processor", "deploy", "counter", "--wasm"];
        args.push(wasm.to_str().unwrap());
        args.extend(["--input", "views", "--output", "counts", "--changelog"]);
        args.extend_from_slice(extra);
        let output = pipeline.sluice(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "{stderr}"
        );
    };
    refused(&[], "--store");
    refused(
        &["--store", "counts", "--guarantee", "at-least-once"],
        "exactly-once",
    );
    // Switched on for state built without it: only with a reset.
    super::deploy_window_count(&pipeline, "counter", ("views", "counts"), 1000, &[]);
    let (mut random, mut next) = (Random::new(3), [0; 2]);
    let total = produce_more(&pipeline, &mut random, &mut next, 100);
    wait_settled(&pipeline, "counter", total);
    refused(&["--store", "counts"], "--reset-state");
    super::deploy_window_count(
        &pipeline,
        "counter",
        ("views", "counts"),
        1000,
        &["--changelog", "--from", "earliest", "--reset-state"],
    );
    wait_settled(&pipeline, "counter", total);
    assert_eq!(pipeline.status("counter")["changelog"], true);
    pipeline.sluice_ok(&["topic", "describe", CHANGELOG]);
    pipeline.sluice_ok(&["processor", "remove", "counter"]);
    let gone = pipeline.sluice(&["topic", "describe", CHANGELOG]);
    assert!(
        !gone.status.success(),
        "the changelog outlived its processor"
    );
}

#[test]
fn the_repartition_topics_tasks_restore_from_their_own_changelog() {
    use super::repartition::{emitted, produce, views, wait_both_stages};
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("views", 3);
    pipeline.create_topic("page-counts", 2);
    let args = [
        "--input",
        "views",
        "--output",
        "page-counts",
        "--store",
        "counts",
    ];
    let mut args = args.to_vec();
    args.extend(["--config", "field=page", "--changelog"]);
    pipeline.deploy("per-page", "rekey-count", &args);
    let mut random = Random::new(31);
    let mut reference: BTreeMap<String, i64> = BTreeMap::new();
    let mut total = 0;
    let mut more = |pipeline: &Pipeline, random: &mut Random| {
        let records = views(random, 300);
        for (_, value) in &records {
            let page: Value = serde_json::from_str(value).unwrap();
            let page = page["page"].as_str().unwrap().to_string();
            *reference.entry(page).or_default() += 1;
        }
        produce(pipeline, &records);
        records.len() as i64
    };
    total += more(&pipeline, &mut random);
    wait_both_stages(&pipeline, total);
    let scan = "/v1/processors/per-page/stores/counts/keys?limit=1000";
    let before = get_json(&pipeline, scan).1["entries"].clone();
    let updates_before = emitted(&pipeline).1;
    let described = pipeline.sluice_ok(&[
        "topic",
        "describe",
        "sluice-processor-per-page-repartition-changelog",
        "--format",
        "json",
    ]);
    let described: Value = serde_json::from_str(&described).unwrap();
    assert_eq!(described["partitions"].as_array().unwrap().len(), 3);

    pipeline.restart_after(|data| std::fs::remove_dir_all(data.join("state")).unwrap());
    pipeline.wait_for("per-page", "both stages' tasks restored", |s| {
        let partitions = s["partitions"].as_array().cloned().unwrap_or_default();
        let restored_from = |changelog: &str| {
            let from = format!("restored it from the changelog {changelog}/");
            partitions
                .iter()
                .filter(|p| {
                    p["last_error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&from))
                })
                .count()
        };
        restored_from("sluice-processor-per-page-changelog") == 3
            && restored_from("sluice-processor-per-page-repartition-changelog") > 0
            && partitions
                .iter()
                .all(|p| p["stateful"].get("restoring").is_none())
    });
    assert_eq!(get_json(&pipeline, scan).1["entries"], before);
    assert_eq!(emitted(&pipeline).1, updates_before, "outputs repeated");
    total += more(&pipeline, &mut random);
    wait_both_stages(&pipeline, total);
    let (last, updates) = emitted(&pipeline);
    assert_eq!(last, reference);
    assert_eq!(updates as i64, total, "one update per view, none repeated");
}
