//! Records through processors: mapping, filtering, routing, several inputs, and resuming from committed offsets across restarts and redeploys.

use super::*;

#[test]
fn uppercase_maps_every_record_keeping_keys_partitions_and_order() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("words", 3);
    pipeline.create_topic("shout", 3);
    let records: Vec<(String, String)> = (0..300)
        .map(|i| (format!("user-{}", i % 7), format!("hello {i}")))
        .collect();
    let borrowed: Vec<(Option<&str>, &str)> = records
        .iter()
        .map(|(k, v)| (Some(k.as_str()), v.as_str()))
        .collect();
    pipeline.produce("words", &borrowed[..150]);
    let deployed = pipeline.deploy(
        "shouter",
        "uppercase",
        &["--input", "words", "--output", "shout"],
    );
    assert!(deployed.contains("shouter"), "{deployed}");
    pipeline.produce("words", &borrowed[150..]);
    let status = pipeline.wait_caught_up("shouter", 300);
    assert_eq!(status["records_out"], 300);
    assert_eq!(status["errors"], 0);
    assert_eq!(status["group"], "sluice-processor-shouter");

    let inputs = pipeline.consume("words");
    let outputs = pipeline.consume("shout");
    assert_eq!(outputs.len(), 300);
    let expected: BTreeMap<String, Vec<String>> = per_key(&inputs)
        .into_iter()
        .map(|(k, v)| (k, v.iter().map(|s| s.to_uppercase()).collect()))
        .collect();
    assert_eq!(
        per_key(&outputs),
        expected,
        "same keys, upper-cased values, same order per key"
    );
    // murmur2 of the key, like the producer: each key stays in its partition.
    let partition_of = |records: &[Consumed]| -> BTreeMap<String, i64> {
        records
            .iter()
            .map(|r| (r.key.clone().unwrap(), r.partition))
            .collect()
    };
    assert_eq!(partition_of(&outputs), partition_of(&inputs));

    // The processor is a consumer group any Kafka tool can inspect.
    let described = pipeline.sluice_ok(&[
        "group",
        "describe",
        "sluice-processor-shouter",
        "--format",
        "json",
    ]);
    let described: Value = serde_json::from_str(&described).unwrap();
    let text = described.to_string();
    assert!(text.contains("words"), "{described:#}");
}

#[test]
fn json_plugins_filter_reshape_and_route() {
    let pipeline = Pipeline::start();
    for topic in ["events", "big", "slim", "clicks", "views", "other"] {
        pipeline.create_topic(topic, 2);
    }
    let events: Vec<String> = (0..40)
        .map(|i| {
            let kind = ["click", "view", "scroll"][i % 3];
            format!(
                r#"{{"id":{i},"kind":"{kind}","amount":{},"user":{{"name":"u{}"}}}}"#,
                i * 10,
                i % 4
            )
        })
        .collect();
    let produced: Vec<(Option<&str>, &str)> = events.iter().map(|e| (None, e.as_str())).collect();
    pipeline.produce("events", &produced);
    pipeline.deploy(
        "big-spenders",
        "filter-json",
        &[
            "--input",
            "events",
            "--output",
            "big",
            "--config",
            "field=amount",
            "--config",
            "gte=200",
        ],
    );
    pipeline.deploy(
        "slimmer",
        "map-json",
        &[
            "--input",
            "events",
            "--output",
            "slim",
            "--config",
            "select=id,user.name",
            "--config",
            "rename.user.name=who",
            "--config",
            "set.source=sluice",
        ],
    );
    pipeline.deploy(
        "router",
        "route-by-field",
        &[
            "--input",
            "events",
            "--output",
            "clicks",
            "--output",
            "views",
            "--output",
            "other",
            "--config",
            "field=kind",
            "--config",
            "route.click=clicks",
            "--config",
            "route.view=views",
            "--config",
            "default=other",
        ],
    );
    for name in ["big-spenders", "slimmer", "router"] {
        pipeline.wait_caught_up(name, 40);
    }
    let amounts = |records: &[Consumed]| -> Vec<i64> {
        let mut ids: Vec<i64> = records
            .iter()
            .map(|r| {
                serde_json::from_str::<Value>(r.value.as_deref().unwrap()).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        amounts(&pipeline.consume("big")),
        (20..40).collect::<Vec<_>>()
    );

    let slim = pipeline.consume("slim");
    assert_eq!(slim.len(), 40);
    for record in &slim {
        let value: Value = serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
        let id = value["id"].as_i64().unwrap();
        assert_eq!(
            value,
            serde_json::json!({"id": id, "who": format!("u{}", id % 4), "source": "sluice"})
        );
    }

    let by_kind = |topic: &str| amounts(&pipeline.consume(topic));
    assert_eq!(
        by_kind("clicks"),
        (0..40).filter(|i| i % 3 == 0).collect::<Vec<_>>()
    );
    assert_eq!(
        by_kind("views"),
        (0..40).filter(|i| i % 3 == 1).collect::<Vec<_>>()
    );
    assert_eq!(
        by_kind("other"),
        (0..40).filter(|i| i % 3 == 2).collect::<Vec<_>>()
    );
    // Forwarded records are the input bytes unchanged.
    let inputs: Vec<String> = values(&pipeline.consume("events"));
    for record in pipeline.consume("clicks") {
        assert!(inputs.contains(record.value.as_ref().unwrap()));
    }

    let listed = pipeline.sluice_ok(&["processor", "list", "--format", "json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big-spenders", "router", "slimmer"]);
}

#[test]
fn restart_mid_stream_loses_nothing_and_resumes_from_committed_offsets() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("in", 2);
    pipeline.create_topic("out", 2);
    let first: Vec<String> = (0..2_000).map(|i| format!("r{i}")).collect();
    let keys: Vec<String> = (0..2_000).map(|i| format!("k{}", i % 10)).collect();
    let records: Vec<(Option<&str>, &str)> = first
        .iter()
        .zip(&keys)
        .map(|(v, k)| (Some(k.as_str()), v.as_str()))
        .collect();
    pipeline.produce("in", &records);
    pipeline.deploy(
        "up",
        "uppercase",
        &["--input", "in", "--output", "out", "--batch-records", "50"],
    );
    pipeline.wait_for("up", "some progress", |s| {
        s["records_in"].as_u64() > Some(0)
    });
    pipeline.restart("KILL");
    // Deployments come back by themselves, from their committed offsets.
    let status = pipeline.wait_caught_up("up", 0);
    assert_eq!(status["lag"], 0);
    let outputs = pipeline.consume("out");
    let mut seen: Vec<String> = values(&outputs);
    seen.sort();
    seen.dedup();
    let mut expected: Vec<String> = first.iter().map(|v| v.to_uppercase()).collect();
    expected.sort();
    assert_eq!(seen, expected, "every input has its output (at least once)");
    // Per key, outputs are in input order (a replay repeats a suffix).
    for (key, values) in per_key(&outputs) {
        let mut deduped: Vec<String> = Vec::new();
        for value in values {
            if !deduped.contains(&value) {
                deduped.push(value);
            }
        }
        let wanted: Vec<String> = first
            .iter()
            .zip(&keys)
            .filter(|(_, k)| **k == key)
            .map(|(v, _)| v.to_uppercase())
            .collect();
        assert_eq!(deduped, wanted, "order of key {key}");
    }

    // A graceful restart commits what it wrote: no duplicates at all.
    let before = pipeline.consume("out").len();
    let more: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    let records: Vec<(Option<&str>, &str)> = more.iter().map(|v| (Some("m"), v.as_str())).collect();
    pipeline.produce("in", &records);
    pipeline.wait_for("up", "the new records", |s| {
        s["lag"] == 0
            && s["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["high_watermark"] == p["committed_offset"])
    });
    pipeline.restart("TERM");
    let status = pipeline.status("up");
    assert_eq!(status["lag"], 0);
    assert_eq!(pipeline.consume("out").len(), before + 100);
    // The compiled component came from the on-disk cache.
    let (_, listed) = pipeline.broker.http_get("/v1/processors");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["compile_cache"]["misses"], 0, "{listed:#}");
    assert!(
        listed["compile_cache"]["hits"].as_u64() >= Some(1),
        "{listed:#}"
    );

    // Paused stays paused across a restart and a redeploy.
    pipeline.sluice_ok(&["processor", "pause", "up"]);
    pipeline.deploy("up", "uppercase", &["--input", "in", "--output", "out"]);
    assert_eq!(pipeline.status("up")["state"], "paused");
    pipeline.produce("in", &[(Some("p"), "while paused")]);
    pipeline.restart("TERM");
    pipeline.deploy("up", "uppercase", &["--input", "in", "--output", "out"]);
    let status = pipeline.status("up");
    assert_eq!(status["state"], "paused", "{status:#}");
    assert_eq!(status["lag"], 1, "{status:#}");
    pipeline.sluice_ok(&["processor", "resume", "up"]);
    pipeline.wait_caught_up("up", 1);
    let out = values(&pipeline.consume("out"));
    assert_eq!(out.iter().filter(|v| *v == "WHILE PAUSED").count(), 1);
}

#[test]
fn redeploy_keeps_offsets_and_from_earliest_reprocesses() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("src", 1);
    pipeline.create_topic("dst", 1);
    let batch = |from: usize, to: usize| -> Vec<String> {
        (from..to).map(|i| format!(r#"{{"n":{i}}}"#)).collect()
    };
    let first = batch(0, 10);
    pipeline.produce(
        "src",
        &first.iter().map(|v| (None, v.as_str())).collect::<Vec<_>>(),
    );
    pipeline.deploy("proc", "uppercase", &["--input", "src", "--output", "dst"]);
    pipeline.wait_caught_up("proc", 10);
    // A new plugin under the same name starts where the old one stopped.
    pipeline.deploy(
        "proc",
        "filter-json",
        &[
            "--input", "src", "--output", "dst", "--config", "field=n", "--config", "gte=12",
        ],
    );
    let status = pipeline.status("proc");
    assert_eq!(
        status["partitions"][0]["committed_offset"], 10,
        "{status:#}"
    );
    let second = batch(10, 15);
    pipeline.produce(
        "src",
        &second
            .iter()
            .map(|v| (None, v.as_str()))
            .collect::<Vec<_>>(),
    );
    pipeline.wait_caught_up("proc", 5);
    let out = values(&pipeline.consume("dst"));
    assert_eq!(out.len(), 13, "{out:?}");
    assert_eq!(&out[10..], [r#"{"n":12}"#, r#"{"n":13}"#, r#"{"n":14}"#]);
    // --from earliest reprocesses everything with the current plugin.
    pipeline.deploy(
        "proc",
        "filter-json",
        &[
            "--input", "src", "--output", "dst", "--config", "field=n", "--config", "gte=12",
            "--from", "earliest",
        ],
    );
    pipeline.wait_caught_up("proc", 15);
    let out = values(&pipeline.consume("dst"));
    assert_eq!(out.len(), 16, "{out:?}");
    // --from latest skips what is there.
    pipeline.deploy(
        "proc",
        "uppercase",
        &["--input", "src", "--output", "dst", "--from", "latest"],
    );
    let status = pipeline.status("proc");
    assert_eq!(
        status["partitions"][0]["committed_offset"], 15,
        "{status:#}"
    );

    // An offset, a time, and a time past the end.
    for (from, committed) in [("3", 3), ("@0", 0), ("2999-01-01T00:00:00Z", 15)] {
        pipeline.deploy(
            "proc",
            "uppercase",
            &["--input", "src", "--output", "dst", "--from", from],
        );
        let status = pipeline.status("proc");
        let position = status["partitions"][0]["committed_offset"]
            .as_i64()
            .unwrap();
        // From 3 or 0 it may already be processing again: at or past it.
        assert!(position >= committed, "--from {from}: {status:#}");
        pipeline.wait_caught_up("proc", 0);
    }
    pipeline.deploy(
        "proc",
        "uppercase",
        &["--input", "src", "--output", "dst", "--from", "latest"],
    );

    // Pause stops processing; resume catches up.
    pipeline.sluice_ok(&["processor", "pause", "proc"]);
    assert_eq!(pipeline.status("proc")["state"], "paused");
    pipeline.produce("src", &[(None, "late")]);
    let (_, paused) = pipeline.broker.http_get("/v1/processors/proc");
    let paused: Value = serde_json::from_str(&paused).unwrap();
    assert_eq!(paused["partitions"][0]["committed_offset"], 15);
    pipeline.sluice_ok(&["processor", "resume", "proc"]);
    pipeline.wait_for("proc", "resumed processing", |s| {
        s["lag"] == 0 && s["records_in"] == 1
    });
    assert_eq!(values(&pipeline.consume("dst")).last().unwrap(), "LATE");

    // Remove forgets the processor and its group.
    pipeline.sluice_ok(&["processor", "remove", "proc"]);
    let (code, body) = pipeline.broker.http_get("/v1/processors/proc");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no processor named"), "{body}");
}

#[test]
fn one_processor_reads_several_input_topics() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("left", 2);
    pipeline.create_topic("right", 1);
    pipeline.create_topic("both", 2);
    pipeline.produce(
        "left",
        &[(Some("a"), "l1"), (Some("b"), "l2"), (Some("a"), "l3")],
    );
    pipeline.produce("right", &[(Some("a"), "r1"), (None, "r2")]);
    pipeline.deploy(
        "merge",
        "uppercase",
        &["--input", "left", "--input", "right", "--output", "both"],
    );
    let status = pipeline.wait_caught_up("merge", 5);
    // One instance per input partition: two of left, one of right.
    let partitions: Vec<(String, i64)> = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["topic"].as_str().unwrap().to_string(),
                p["partition"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        partitions,
        [("left".into(), 0), ("left".into(), 1), ("right".into(), 0)]
    );
    let mut out = values(&pipeline.consume("both"));
    out.sort();
    assert_eq!(out, ["L1", "L2", "L3", "R1", "R2"]);
    let by_key = per_key(&pipeline.consume("both"));
    assert_eq!(by_key["b"], ["L2"]);
    assert!(
        by_key["a"].iter().position(|v| v == "L1") < by_key["a"].iter().position(|v| v == "L3")
    );
}

/// A committed offset past the input's log end (here the log was cut off
/// while the broker was down, as recovery cuts an unsynced tail) restarts
/// the partition from the log start, with a status line saying so: the
/// records produced afterwards are processed, not skipped while the
/// partition waits for the log to grow past its old position.
#[test]
fn a_committed_offset_past_the_log_end_restarts_from_the_log_start() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    let first: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    let records: Vec<(Option<&str>, &str)> = first.iter().map(|v| (None, v.as_str())).collect();
    pipeline.produce("in", &records);
    pipeline.deploy("up", "uppercase", &["--input", "in", "--output", "out"]);
    pipeline.wait_caught_up("up", 10);
    pipeline.restart_after(|data| {
        let partition = crate::harness::topic_dir(data, "in")
            .expect("the input topic's directory")
            .join("0");
        for entry in std::fs::read_dir(&partition).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|extension| extension == "log") {
                let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                file.set_len(0).unwrap();
            }
        }
    });
    let later: Vec<String> = (0..3).map(|i| format!("b{i}")).collect();
    let records: Vec<(Option<&str>, &str)> = later.iter().map(|v| (None, v.as_str())).collect();
    pipeline.produce("in", &records);
    let status = pipeline.wait_for("up", "the records after the cut", |s| {
        s["partitions"][0]["committed_offset"] == 3 && s["partitions"][0]["high_watermark"] == 3
    });
    let notice = status["partitions"][0]["last_error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        notice.contains("past the log end") && notice.contains("restarted from the log start 0"),
        "{status:#}"
    );
    let outputs = values(&pipeline.consume("out"));
    for value in ["B0", "B1", "B2"] {
        assert!(outputs.iter().any(|v| v == value), "{value} in {outputs:?}");
    }
}

/// The nice value of each of the broker's threads named `name`.
fn thread_nices(pipeline: &Pipeline, name: &str) -> Vec<i64> {
    let tasks = format!("/proc/{}/task", pipeline.broker.pid());
    std::fs::read_dir(tasks)
        .unwrap()
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if comm.trim() != name {
                return None;
            }
            // `pid (comm) state ppid …`: nice is field 19, the 17th after
            // the comm's closing parenthesis.
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().nth(16)?.parse().ok()
        })
        .collect()
}

#[test]
fn processors_run_on_their_own_threads_below_the_brokers_priority() {
    for (config, nice) in [("", 5), ("[processors]\nnice = 0\n", 0)] {
        let pipeline = Pipeline::start_with_config(config);
        pipeline.create_topic("words", 1);
        pipeline.create_topic("shout", 1);
        pipeline.deploy(
            "shouter",
            "uppercase",
            &["--input", "words", "--output", "shout"],
        );
        pipeline.produce("words", &[(None, "hello")]);
        pipeline.wait_caught_up("shouter", 1);
        // Idle threads of the pool stay ten seconds.
        let steps = thread_nices(&pipeline, "sluice-step");
        assert!(!steps.is_empty(), "no sluice-step thread ({config:?})");
        assert!(steps.iter().all(|n| *n == nice), "{steps:?} ({config:?})");
        let workers = thread_nices(&pipeline, "tokio-rt-worker");
        assert!(!workers.is_empty());
        assert!(workers.iter().all(|n| *n == 0), "{workers:?}");
    }
    // Out of range: the broker refuses to start, naming the setting.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sluice.toml"), "[processors]\nnice = 25\n").unwrap();
    let output = std::process::Command::new(crate::harness::sluice_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--config")
        .arg(dir.path().join("sluice.toml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("nice = 25"),
        "{stderr}"
    );
}
