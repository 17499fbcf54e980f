//! Faulty plugins (traps, endless loops, memory hogs, huge outputs, errors) contained by the error policy.

use super::*;

#[test]
fn faulty_plugins_are_contained_by_the_error_policy() {
    let pipeline = Pipeline::start();
    for topic in ["in", "ok", "healthy", "bad-records"] {
        pipeline.create_topic(topic, 1);
    }
    let inputs = ["a", "b", "boom", "c", "d"];
    pipeline.produce(
        "in",
        &inputs.iter().map(|v| (Some("k"), *v)).collect::<Vec<_>>(),
    );
    // A healthy processor over the same input keeps working throughout.
    pipeline.deploy(
        "healthy",
        "uppercase",
        &["--input", "in", "--output", "healthy"],
    );

    // A trap, dead-lettered: only the offending record goes to the DLQ.
    pipeline.deploy(
        "trapper",
        "fault-trap",
        &[
            "--input",
            "in",
            "--output",
            "ok",
            "--on-error",
            "dead-letter=bad-records",
        ],
    );
    let status = pipeline.wait_caught_up("trapper", 5);
    assert_eq!(status["dead_lettered"], 1, "{status:#}");
    assert_eq!(status["errors"], 1);
    let error = &status["last_error"];
    assert_eq!(error["offset"], 2, "{status:#}");
    assert_eq!(error["topic"], "in");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("fault-trap: triggered by offset 2"),
        "{status:#}"
    );
    assert_eq!(values(&pipeline.consume("ok")), ["a", "b", "c", "d"]);
    let letters = pipeline.consume("bad-records");
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.value.as_deref(), Some("boom"));
    assert_eq!(letter.key.as_deref(), Some("k"));
    assert_eq!(letter.headers["sluice.processor"], "trapper");
    assert_eq!(letter.headers["sluice.source.topic"], "in");
    assert_eq!(letter.headers["sluice.source.partition"], "0");
    assert_eq!(letter.headers["sluice.source.offset"], "2");
    assert!(
        letter.headers["sluice.error"].contains("fault-trap"),
        "{letter:?}"
    );

    // An endless loop, skipped: interrupted by the time limit.
    pipeline.create_topic("loop-out", 1);
    pipeline.deploy(
        "looper",
        "fault-loop",
        &[
            "--input",
            "in",
            "--output",
            "loop-out",
            "--on-error",
            "skip",
            "--timeout-ms",
            "200",
        ],
    );
    let status = pipeline.wait_caught_up("looper", 5);
    assert_eq!(status["skipped"], 1, "{status:#}");
    assert_last_error(&status, "time limit");
    assert_eq!(values(&pipeline.consume("loop-out")), ["a", "b", "c", "d"]);

    // Unbounded allocation with the default policy: the partition stops at
    // the record, committed up to it, and says why.
    pipeline.create_topic("alloc-out", 1);
    pipeline.deploy(
        "hog",
        "fault-alloc",
        &[
            "--input",
            "in",
            "--output",
            "alloc-out",
            "--memory-max",
            "16777216",
        ],
    );
    let status = pipeline.wait_for("hog", "the partition to fail", |s| s["state"] == "failed");
    let partition = &status["partitions"][0];
    assert_eq!(partition["state"], "failed");
    assert_eq!(partition["committed_offset"], 2, "{status:#}");
    assert_eq!(partition["last_error"]["offset"], 2);
    assert_last_error(partition, "memory limit");
    assert_eq!(values(&pipeline.consume("alloc-out")), ["a", "b"]);
    let text = pipeline.sluice_ok(&["processor", "status", "hog"]);
    assert!(text.contains("memory limit"), "{text}");

    // A huge output hits the output limit; an error return is an error.
    pipeline.create_topic("huge-out", 1);
    pipeline.deploy(
        "flood",
        "fault-huge-output",
        &[
            "--input",
            "in",
            "--output",
            "huge-out",
            "--on-error",
            "skip",
        ],
    );
    let status = pipeline.wait_caught_up("flood", 5);
    assert_last_error(&status, "output limit");
    assert_eq!(values(&pipeline.consume("huge-out")), ["a", "b", "c", "d"]);
    // One output larger than the per-batch output budget.
    pipeline.create_topic("wide-out", 1);
    pipeline.deploy(
        "wide",
        "fault-huge-output",
        &[
            "--input",
            "in",
            "--output",
            "wide-out",
            "--on-error",
            "skip",
            "--config",
            "bytes=2000000",
            "--output-bytes-max",
            "1MiB",
        ],
    );
    let status = pipeline.wait_caught_up("wide", 5);
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("output_bytes_per_batch_max"), "{status:#}");
    assert_eq!(values(&pipeline.consume("wide-out")), ["a", "b", "c", "d"]);
    pipeline.create_topic("error-out", 1);
    pipeline.deploy(
        "rejecter",
        "fault-error",
        &[
            "--input",
            "in",
            "--output",
            "error-out",
            "--on-error",
            "skip",
        ],
    );
    let status = pipeline.wait_caught_up("rejecter", 5);
    assert_eq!(status["skipped"], 1);
    assert_last_error(&status, "fault-error");

    // Everything else kept serving.
    let status = pipeline.wait_caught_up("healthy", 5);
    assert_eq!(status["errors"], 0);
    assert_eq!(
        values(&pipeline.consume("healthy")),
        ["A", "B", "BOOM", "C", "D"]
    );
    let (code, _) = pipeline.broker.http_get("/health");
    assert_eq!(code, 200);
    // Resume retries the failed partition, which fails again the same way.
    pipeline.sluice_ok(&["processor", "resume", "hog"]);
    let status = pipeline.wait_for("hog", "the retry to fail", |s| {
        s["state"] == "failed" && s["errors"] == 2
    });
    assert_eq!(status["partitions"][0]["committed_offset"], 2);
}

/// Runs `sluice ARGS` on a thread and waits at most `bound` for it to
/// answer (a hung admin call fails the test instead of hanging it).
fn sluice_within(pipeline: &Pipeline, args: &[&str], bound: Duration) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut command = Command::new(sluice_binary());
    command
        .args(args)
        .env("SLUICE_BROKERS", pipeline.broker.kafka.to_string())
        .env("SLUICE_ADMIN", format!("http://{}", pipeline.broker.http));
    thread::spawn(move || {
        let _ = tx.send(command.output().expect("running sluice"));
    });
    rx.recv_timeout(bound)
        .unwrap_or_else(|_| panic!("sluice {args:?} did not answer within {bound:?}"))
}

/// A plugin that sleeps (`std::thread::sleep`: a WASI `poll` on a
/// monotonic-clock timer) is held to the time limit like one that spins:
/// the record fails with "time limit exceeded", `remove` answers, and the
/// broker still stops on SIGTERM while another sleeper is deployed.
#[test]
fn a_sleeping_plugin_cannot_outlast_the_time_limit() {
    let mut pipeline = Pipeline::start();
    for topic in ["in", "out", "out2"] {
        pipeline.create_topic(topic, 1);
    }
    pipeline.produce(
        "in",
        &[(Some("k"), "a"), (Some("k"), "boom"), (Some("k"), "c")],
    );
    let sleeper = |name: &str, output: &str, trigger: &str| {
        pipeline.deploy(
            name,
            "fault-sleep",
            &[
                "--input",
                "in",
                "--output",
                output,
                "--on-error",
                "skip",
                "--timeout-ms",
                "1000",
                "--config",
                trigger,
            ],
        );
    };
    // The default sleep is an hour; the time limit is a second.
    sleeper("sleeper", "out", "trigger=boom");
    let status = pipeline.wait_caught_up("sleeper", 3);
    assert_eq!(status["skipped"], 1, "{status:#}");
    assert_last_error(&status, "time limit exceeded");
    assert_eq!(values(&pipeline.consume("out")), ["a", "c"]);

    // Every record sleeps: removing it answers.
    sleeper("dozer", "out2", "trigger=");
    pipeline.wait_for("dozer", "a record to be tried", |s| {
        s["errors"].as_u64() >= Some(1)
    });
    let output = sluice_within(
        &pipeline,
        &["processor", "remove", "dozer"],
        Duration::from_secs(20),
    );
    assert!(output.status.success(), "{output:?}");

    // And SIGTERM stops the broker while another sleeper runs.
    sleeper("napper", "out2", "trigger=");
    let status = pipeline.broker.stop_with("TERM", Duration::from_secs(5));
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

/// Stopping a task ends its running call, whatever its time limit: with
/// a ten-minute limit, a plugin sleeping five minutes or spinning for
/// good does not hold up `remove` or a redeploy, and on SIGTERM the
/// broker does not wait out its grace period.
#[test]
fn stopping_a_task_ends_its_call_whatever_the_time_limit() {
    let mut pipeline = Pipeline::start();
    for topic in ["in", "out"] {
        pipeline.create_topic(topic, 1);
    }
    pipeline.produce("in", &[(Some("k"), "boom")]);
    let patient = |name: &str, plugin: &str, extra: &[&str]| {
        let mut args = vec!["--input", "in", "--output", "out", "--timeout-ms", "600000"];
        args.extend_from_slice(extra);
        pipeline.deploy(name, plugin, &args);
        pipeline.wait_for(name, "its call under way", |s| {
            s["partitions"][0]["state"] == "running" && s["records_in"] == 0
        });
    };
    let bound = Duration::from_secs(20);
    patient("sleeper", "fault-sleep", &["--config", "seconds=300"]);
    let output = sluice_within(&pipeline, &["processor", "remove", "sleeper"], bound);
    assert!(output.status.success(), "{output:?}");
    patient("spinner", "fault-loop", &[]);
    let wasm = crate::plugins::wasm("fault-loop");
    let redeploy = super::deploy_args(
        "spinner",
        &wasm,
        &[
            "--input",
            "in",
            "--output",
            "out",
            "--config",
            "trigger=never-seen",
        ],
    );
    let output = sluice_within(&pipeline, &redeploy, bound);
    assert!(output.status.success(), "{output:?}");
    pipeline.wait_caught_up("spinner", 1);
    pipeline.sluice_ok(&["processor", "remove", "spinner"]);
    patient("napper", "fault-sleep", &["--config", "seconds=300"]);
    let status = pipeline.broker.stop_with("TERM", bound);
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    // The call ended with the task, not with the grace period.
    let lines = pipeline.broker.stderr_lines();
    assert!(
        !lines.iter().any(|l| l.contains("did not finish")),
        "{lines:#?}"
    );
}

/// A plugin's error message is cut to a bound wherever it lands: a 10 MiB
/// message becomes at most about a kilobyte in the status and in the
/// dead letter's `sluice.error` header, and the dead letter is written.
#[test]
fn a_huge_error_message_is_cut_to_the_bound() {
    let pipeline = Pipeline::start();
    for topic in ["in", "out", "bad-records"] {
        pipeline.create_topic(topic, 1);
    }
    pipeline.produce(
        "in",
        &[(Some("k"), "a"), (Some("k"), "boom"), (Some("k"), "c")],
    );
    pipeline.deploy(
        "verbose",
        "fault-error",
        &[
            "--input",
            "in",
            "--output",
            "out",
            "--on-error",
            "dead-letter=bad-records",
            "--config",
            "message_bytes=10485760",
        ],
    );
    let status = pipeline.wait_caught_up("verbose", 3);
    assert_eq!(status["dead_lettered"], 1, "{status:#}");
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("fault-error: rejected offset 1"),
        "{message}"
    );
    assert!(
        message.len() <= 2048,
        "{} bytes in the status",
        message.len()
    );
    assert!(message.contains("truncated"), "{message}");
    let letters = pipeline.consume("bad-records");
    assert_eq!(letters.len(), 1);
    let header = &letters[0].headers["sluice.error"];
    assert!(header.starts_with("fault-error"), "{header}");
    assert!(header.len() <= 2048, "{} bytes in the header", header.len());
    assert_eq!(values(&pipeline.consume("out")), ["a", "c"]);
}

/// Outputs that all point at one region of guest memory are refused while
/// they are lifted, before the broker copies them: 200 views of 8 MiB
/// (1.6 GB if copied) fail with "output limit exceeded", and the broker's
/// peak memory stays far below what copying them would take.
#[test]
fn aliased_outputs_are_refused_before_they_are_copied() {
    let pipeline = Pipeline::start();
    for topic in ["in", "out"] {
        pipeline.create_topic(topic, 1);
    }
    pipeline.produce(
        "in",
        &[(Some("k"), "a"), (Some("k"), "boom"), (Some("k"), "c")],
    );
    pipeline.deploy(
        "aliaser",
        "fault-alias-output",
        &[
            "--input",
            "in",
            "--output",
            "out",
            "--on-error",
            "skip",
            "--config",
            "copies=200",
            "--config",
            "bytes=8388608",
        ],
    );
    let status = pipeline.wait_caught_up("aliaser", 3);
    assert_eq!(status["skipped"], 1, "{status:#}");
    assert_last_error(&status, "output limit exceeded");
    assert_eq!(values(&pipeline.consume("out")), ["a", "c"]);
    let peak = pipeline.broker.peak_rss_bytes();
    assert!(peak < 1 << 30, "the broker's peak RSS was {peak} bytes");
    let (code, _) = pipeline.broker.http_get("/health");
    assert_eq!(code, 200);
}
