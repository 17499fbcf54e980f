//! A stateful processor's life: plugin upgrade keeps state (gracefully and
//! after a crash), `--from` needs `--reset-state`, a reset rebuilds the
//! same state from the input, `remove` deletes the state, deploy errors
//! name what is wrong, and contract 0.1 plugins still run.

use serde_json::Value;

use super::{get_json, produce_at, wait_answer, wait_settled, Input};
use crate::processors::Pipeline;

const START_MS: i64 = 1_767_225_600_000;

/// Deploys `windowed-count` as `counter` from `views` to `counts`
/// (one-minute windows, `emit=update`), with `extra` arguments.
pub(crate) fn deploy(pipeline: &Pipeline, extra: &[&str]) -> String {
    deploy_build(pipeline, &crate::plugins::wasm("windowed-count"), extra)
}

/// [`deploy`] with the component at `wasm`.
fn deploy_build(pipeline: &Pipeline, wasm: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec![
        "--input",
        "views",
        "--output",
        "counts",
        "--store",
        "counts",
        "--config",
        "size_ms=60000",
        "--config",
        "emit=update",
    ];
    args.extend_from_slice(extra);
    pipeline.deploy_wasm("counter", wasm, &args)
}

/// A new build of `windowed-count` as far as the broker can tell (another
/// file, size and digest, so another stored blob and another compile):
/// the component with a custom section `tag` appended. Its code is the
/// same, so the state it finds is the state it wrote.
fn new_build(dir: &std::path::Path, tag: &str) -> std::path::PathBuf {
    let mut wasm = std::fs::read(crate::plugins::wasm("windowed-count")).unwrap();
    let name = b"sluice-test-build";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(tag.as_bytes());
    assert!(section.len() < 128, "one LEB128 byte for the size");
    wasm.push(0); // a custom section
    wasm.push(section.len() as u8);
    wasm.extend_from_slice(&section);
    let path = dir.join(format!("windowed-count-{tag}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    path
}

/// The size of the component the processor runs, from its status.
fn running_wasm_bytes(pipeline: &Pipeline) -> u64 {
    pipeline.status("counter")["wasm_bytes"].as_u64().unwrap()
}

fn window_count(pipeline: &Pipeline, key: &str) -> Option<u64> {
    let (code, answer) = get_json(
        pipeline,
        &format!("/v1/processors/counter/stores/counts/windows/{key}"),
    );
    assert_eq!(code, 200, "{answer:#}");
    answer["windows"][0]["value"].as_u64()
}

fn records(key: &str, count: i64) -> Vec<Input> {
    (0..count)
        .map(|i| (key.to_string(), START_MS + i))
        .collect()
}

/// The counter deployed over two partitions, with key `a` counted 30
/// times in partition 0 and `b` 20 times in partition 1, all committed.
fn counted_a_and_b() -> Pipeline {
    let pipeline = Pipeline::start();
    pipeline.create_topic("views", 2);
    pipeline.create_topic("counts", 2);
    deploy(&pipeline, &[]);
    produce_at(&pipeline, "views", 0, &records("a", 30));
    produce_at(&pipeline, "views", 1, &records("b", 20));
    wait_settled(&pipeline, "counter", 50);
    assert_eq!(window_count(&pipeline, "a"), Some(30));
    pipeline
}

#[test]
fn state_survives_redeploys_and_crashes_and_a_reset_rebuilds_it() {
    let mut pipeline = counted_a_and_b();
    let builds = tempfile::tempdir().unwrap();

    // A plugin upgrade (a redeploy with a new build) keeps state and
    // position.
    let first = running_wasm_bytes(&pipeline);
    let upgrade = new_build(builds.path(), "v2");
    deploy_build(&pipeline, &upgrade, &[]);
    let upgraded = std::fs::metadata(&upgrade).unwrap().len();
    assert!(upgraded != first && running_wasm_bytes(&pipeline) == upgraded);
    produce_at(&pipeline, "views", 0, &records("a", 5));
    wait_settled(&pipeline, "counter", 55);
    assert_eq!(window_count(&pipeline, "a"), Some(35));

    // So does a crash, and an upgrade right after it: the new build runs
    // from the last commit on the recovered state.
    pipeline.restart("KILL");
    assert_eq!(running_wasm_bytes(&pipeline), upgraded);
    let again = new_build(builds.path(), "v3-longer");
    deploy_build(&pipeline, &again, &[]);
    produce_at(&pipeline, "views", 1, &records("b", 4));
    wait_settled(&pipeline, "counter", 59);
    assert_eq!(
        running_wasm_bytes(&pipeline),
        std::fs::metadata(&again).unwrap().len()
    );
    assert_eq!(window_count(&pipeline, "b"), Some(24));
    assert_eq!(window_count(&pipeline, "a"), Some(35));
    // And a crash right after an upgrade: it survives, still running.
    let last = new_build(builds.path(), "v4-longest-yet");
    deploy_build(&pipeline, &last, &[]);
    pipeline.restart("KILL");
    assert_eq!(
        running_wasm_bytes(&pipeline),
        std::fs::metadata(&last).unwrap().len()
    );
    produce_at(&pipeline, "views", 0, &records("a", 1));
    wait_settled(&pipeline, "counter", 60);
    assert_eq!(window_count(&pipeline, "a"), Some(36));
    let before = get_json(
        &pipeline,
        "/v1/processors/counter/stores/counts/keys?limit=100",
    )
    .1;

    // --from alone would count the input twice: refused.
    let wasm = crate::plugins::wasm("windowed-count");
    let output = pipeline.sluice(&crate::processors::deploy_args(
        "counter",
        &wasm,
        &[
            "--input",
            "views",
            "--output",
            "counts",
            "--store",
            "counts",
            "--config",
            "size_ms=60000",
            "--from",
            "earliest",
        ],
    ));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--reset-state"), "{stderr}");
    assert_eq!(window_count(&pipeline, "a"), Some(36));

    // --from earliest --reset-state rebuilds the same state from the input.
    deploy(&pipeline, &["--from", "earliest", "--reset-state"]);
    wait_settled(&pipeline, "counter", 60);
    let after = get_json(
        &pipeline,
        "/v1/processors/counter/stores/counts/keys?limit=100",
    )
    .1;
    let entries = |v: &Value| v["entries"].clone();
    assert_eq!(entries(&after), entries(&before));
    assert_eq!(entries(&after).as_array().map(Vec::len), Some(2));

    // The text status shows the stateful figures.
    let text = pipeline.sluice_ok(&["processor", "status", "counter"]);
    assert!(
        text.contains("exactly-once") && text.contains("STREAM-TIME") && text.contains("STORES"),
        "{text}"
    );
    // Its windows: the two keys' windows, in the JSON and the table.
    let status = pipeline.status("counter");
    assert_eq!(
        super::stateful_total(&status, "open_windows"),
        2,
        "{status:#}"
    );
    let header = text
        .lines()
        .find(|l| l.contains("OPEN-WINDOWS"))
        .expect("the column");
    let column = header.find("OPEN-WINDOWS").unwrap();
    let shown: u64 = text
        .lines()
        .filter(|l| l.starts_with("views "))
        .map(|row| {
            let cell = row
                .get(column..)
                .and_then(|rest| rest.split_whitespace().next());
            cell.and_then(|c| c.parse::<u64>().ok()).expect(row)
        })
        .sum();
    assert_eq!(shown, 2, "{text}");
    let scrape = crate::metrics::Scrape::of(&pipeline);
    let counter = [("processor", "counter")];
    assert_eq!(scrape.sum("sluice_processor_open_windows", &counter), 2.0);
    assert_eq!(scrape.sum("sluice_processor_state_keys", &counter), 2.0);

    // remove deletes the state: deployed again, it starts from nothing.
    pipeline.sluice_ok(&["processor", "remove", "counter"]);
    deploy(&pipeline, &["--from", "latest"]);
    produce_at(&pipeline, "views", 0, &records("a", 1));
    wait_settled(&pipeline, "counter", 61);
    assert_eq!(window_count(&pipeline, "a"), Some(1));
}

#[test]
fn deploy_errors_name_the_setting_and_an_undeclared_store_is_refused() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("views", 1);
    pipeline.create_topic("counts", 1);
    let wasm = crate::plugins::wasm("windowed-count");
    let wasm = wasm.to_str().unwrap();
    let refused = |args: &[&str], needle: &str| {
        let mut all = vec!["processor", "deploy", "p", "--wasm", wasm];
        all.extend_from_slice(args);
        let output = pipeline.sluice(&all);
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    };
    refused(
        &["--input", "views", "--output", "counts", "--store", "a/b"],
        "store name",
    );
    refused(
        &[
            "--input",
            "views",
            "--output",
            "counts",
            "--store",
            "c",
            "--commit-interval-ms",
            "0",
        ],
        "commit_interval_ms",
    );
    // Without the store its plugin opens: refused at deploy (the trial
    // instance's init), saying which store to declare.
    refused(
        &[
            "--input",
            "views",
            "--output",
            "counts",
            "--config",
            "size_ms=1000",
        ],
        "--store counts",
    );
    let (code, _) = get_json(&pipeline, "/v1/processors/p");
    assert_eq!(code, 404, "nothing was deployed");
}

#[test]
fn a_contract_0_1_plugin_built_before_0_2_still_deploys_and_runs() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    let wasm = crate::plugins::repo_root().join("tests/fixtures/contract-0.1/uppercase.wasm");
    pipeline.sluice_ok(&[
        "processor",
        "deploy",
        "old",
        "--wasm",
        wasm.to_str().unwrap(),
        "--input",
        "in",
        "--output",
        "out",
    ]);
    pipeline.produce("in", &[(Some("k"), "hello")]);
    pipeline.wait_caught_up("old", 1);
    let out = pipeline.consume("out");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].value.as_deref(), Some("HELLO"));
    // And exactly-once works for a stateless 0.1 plugin too.
    pipeline.sluice_ok(&[
        "processor",
        "deploy",
        "old-eos",
        "--wasm",
        wasm.to_str().unwrap(),
        "--input",
        "in",
        "--output",
        "out",
        "--guarantee",
        "exactly-once",
        "--from",
        "earliest",
    ]);
    pipeline.wait_caught_up("old-eos", 1);
    assert_eq!(pipeline.consume("out").len(), 2);
    assert_eq!(pipeline.status("old-eos")["guarantee"], "exactly-once");
}

#[test]
fn a_deleted_state_folder_is_rebuilt_from_the_input_without_repeating_outputs() {
    use super::windows::traffic;
    use super::{emitted_windows, input_log, Random, WindowOracle};
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("views", 2);
    pipeline.create_topic("counts", 2);
    super::deploy_window_count(&pipeline, "counter", ("views", "counts"), 1000, &[]);
    let mut random = Random::new(4);
    let mut total = 0;
    for partition in 0..2 {
        let records = traffic(&mut random, partition, 2_000, 10);
        total += records.len() as i64;
        produce_at(&pipeline, "views", partition, &records);
    }
    wait_settled(&pipeline, "counter", total);
    let scan = "/v1/processors/counter/stores/counts/keys?limit=1000";
    let before = get_json(&pipeline, scan).1["entries"].clone();
    let emitted_before = emitted_windows(&pipeline.consume("counts"));

    pipeline.restart_after(|data| std::fs::remove_dir_all(data.join("state")).unwrap());
    let status = pipeline.wait_for("counter", "the state rebuilt", |s| {
        s["partitions"].as_array().is_some_and(|ps| {
            ps.len() == 2
                && ps.iter().all(|p| {
                    p["stateful"]["commits"].as_u64() > Some(0)
                        && p["stateful"].get("rebuilding_until").is_none()
                })
        })
    });
    let notice = status["last_error"]["message"].as_str().unwrap_or_default();
    assert!(notice.contains("rebuilding"), "{status:#}");
    assert_eq!(get_json(&pipeline, scan).1["entries"], before);
    assert_eq!(
        emitted_windows(&pipeline.consume("counts")),
        emitted_before,
        "outputs repeated"
    );

    // And it carries on exactly: more input closes more windows, once.
    for partition in 0..2 {
        let records: Vec<_> = traffic(&mut random, partition, 3_000, 10).split_off(2_000);
        total += records.len() as i64;
        produce_at(&pipeline, "views", partition, &records);
    }
    wait_settled(&pipeline, "counter", total);
    let oracle = WindowOracle::compute(&input_log(&pipeline, "views"), 1000, 0);
    let emitted = emitted_windows(&pipeline.consume("counts"));
    assert!(
        emitted.values().all(|c| c.len() == 1),
        "a window emitted twice"
    );
    let emitted: std::collections::BTreeMap<_, _> =
        emitted.into_iter().map(|(k, c)| (k, c[0])).collect();
    assert_eq!(emitted, oracle.closed);
}

#[test]
fn a_partition_rebuilding_lost_state_answers_503_unless_stale_answers_are_asked_for() {
    let mut pipeline = counted_a_and_b();

    // Each partition holds before it looks at its state, then right after
    // the commit that starts its rebuild.
    let hold_dir = tempfile::tempdir().unwrap();
    let (starting, rebuilding) = (
        hold_dir.path().join("start"),
        hold_dir.path().join("rebuild"),
    );
    std::fs::write(&starting, b"").unwrap();
    std::fs::write(&rebuilding, b"").unwrap();
    let env = format!(
        "before-recovery:{},rebuild-start:{}",
        starting.display(),
        rebuilding.display()
    );
    pipeline.restart_after_with_env(&[("SLUICE_TEST_HOLD", &env)], |data| {
        std::fs::remove_dir_all(data.join("state")).unwrap()
    });
    // Not yet begun: what it had is not "not found".
    let (code, answer) = get_json(&pipeline, "/v1/processors/counter/stores/counts/windows/a");
    assert_eq!(code, 503, "{answer:#}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("has not begun to rebuild it yet"), "{error}");
    std::fs::remove_file(&starting).unwrap();
    let windows = "/v1/processors/counter/stores/counts/windows/a?partition=0";
    wait_answer(
        &pipeline,
        windows,
        503,
        "partition 0 of processor counter is rebuilding lost state by processing views again, \
         at offset 0 of 30",
    );
    // Stale answers: the state as of where the rebuild is (nothing yet).
    let scan = "/v1/processors/counter/stores/counts/keys?partition=0";
    assert_eq!(get_json(&pipeline, scan).0, 503);
    let (code, answer) = get_json(&pipeline, &format!("{scan}&stale=true"));
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(answer["entries"], serde_json::json!([]), "{answer:#}");
    assert_eq!(answer["positions"][0]["offset"], 0, "{answer:#}");
    let cli = |extra: &[&str]| {
        let mut args = vec!["processor", "state", "scan", "counter", "counts"];
        args.extend_from_slice(extra);
        pipeline.sluice(&args)
    };
    let refused = cli(&["--partition", "0"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("rebuilding lost state"), "{stderr}");
    let stale = cli(&["--partition", "0", "--stale"]);
    assert!(
        stale.status.success(),
        "{}",
        String::from_utf8_lossy(&stale.stderr)
    );

    std::fs::remove_file(&rebuilding).unwrap();
    pipeline.wait_for("counter", "the state rebuilt", |s| {
        s["partitions"].as_array().is_some_and(|ps| {
            ps.len() == 2
                && ps.iter().all(|p| {
                    p["stateful"]["commits"].as_u64() > Some(0)
                        && p["stateful"].get("rebuilding_until").is_none()
                })
        })
    });
    assert_eq!(window_count(&pipeline, "a"), Some(30));
    assert_eq!(get_json(&pipeline, scan).0, 200);
}

#[test]
fn plugin_run_gives_a_stateful_plugin_local_state_and_fires_its_timers() {
    let input = tempfile::NamedTempFile::new().unwrap();
    let lines: String = [("a", 100), ("b", 200), ("a", 900), ("a", 1_500)]
        .iter()
        .map(|(key, ts)| format!("{{\"key\":\"{key}\",\"value\":\"v\",\"timestamp\":{ts}}}\n"))
        .collect();
    std::fs::write(input.path(), lines).unwrap();
    let wasm = crate::plugins::wasm("windowed-count");
    let output = std::process::Command::new(crate::harness::sluice_binary())
        .args(["plugin", "run"])
        .arg(&wasm)
        .args([
            "--store",
            "counts",
            "--config",
            "size_ms=1000",
            "--config",
            "emit=final",
        ])
        .arg("--input")
        .arg(input.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let closed: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line.get("timer").is_some())
        .map(|line| line["value"].clone())
        .collect();
    // [0, 1000) closes when stream time reaches 1000 (the record at 1500):
    // a counted twice, b once; [1000, 2000) stays open.
    assert_eq!(closed.len(), 2, "{stdout}");
    assert!(
        closed
            .contains(&serde_json::json!({"key":"a","window_start":0,"window_end":1000,"count":2})),
        "{stdout}"
    );
    assert!(
        closed
            .contains(&serde_json::json!({"key":"b","window_start":0,"window_end":1000,"count":1})),
        "{stdout}"
    );
    // Without the store its plugin opens, init fails and says which.
    let output = std::process::Command::new(crate::harness::sluice_binary())
        .args(["plugin", "run"])
        .arg(&wasm)
        .args(["--config", "size_ms=1000"])
        .arg("--input")
        .arg(input.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--store counts"));
}

#[test]
fn a_redeploy_without_state_drops_the_old_state_so_stores_come_back_fresh() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("views", 1);
    pipeline.create_topic("counts", 1);
    deploy(&pipeline, &[]);
    produce_at(&pipeline, "views", 0, &records("a", 3));
    wait_settled(&pipeline, "counter", 3);
    assert_eq!(window_count(&pipeline, "a"), Some(3));
    // Stateless for a while: it moves the consumer group on.
    let wasm = crate::plugins::repo_root().join("tests/fixtures/contract-0.1/uppercase.wasm");
    pipeline.sluice_ok(&[
        "processor",
        "deploy",
        "counter",
        "--wasm",
        wasm.to_str().unwrap(),
        "--input",
        "views",
        "--output",
        "counts",
    ]);
    produce_at(&pipeline, "views", 0, &records("a", 2));
    pipeline.wait_caught_up("counter", 2);
    // Stateful again: from the group's position with fresh state, not from
    // the old commit record (which would count the two records again).
    deploy(&pipeline, &[]);
    produce_at(&pipeline, "views", 0, &records("a", 1));
    wait_settled(&pipeline, "counter", 6);
    assert_eq!(window_count(&pipeline, "a"), Some(1));
}
