//! Managing processors: refused deploys, `plugin run`, deployments that cannot resume, and removal.

use super::*;

#[test]
fn bad_deploys_are_refused_with_a_reason() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    let refused = |args: &[&str], expected: &str| {
        let output = pipeline.sluice(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    let filter = wasm("filter-json");
    let filter = filter.to_str().unwrap();
    refused(
        &[
            "processor",
            "deploy",
            "p",
            "--wasm",
            filter,
            "--input",
            "nope",
            "--output",
            "out",
        ],
        "does not exist",
    );
    refused(
        &[
            "processor",
            "deploy",
            "p",
            "--wasm",
            filter,
            "--input",
            "in",
            "--output",
            "in",
        ],
        "both an input and an output",
    );
    // init rejects a config without a condition.
    refused(
        &[
            "processor",
            "deploy",
            "p",
            "--wasm",
            filter,
            "--input",
            "in",
            "--output",
            "out",
        ],
        "init failed",
    );
    let not_component = pipeline.dir.path().join("fake.wasm");
    std::fs::write(&not_component, b"\0asm\x01\0\0\0").unwrap();
    refused(
        &[
            "processor",
            "deploy",
            "p",
            "--wasm",
            not_component.to_str().unwrap(),
            "--input",
            "in",
            "--output",
            "out",
        ],
        "component",
    );
    let (_, listed) = pipeline.broker.http_get("/v1/processors");
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["processors"],
        serde_json::json!([])
    );
}

#[test]
fn plugin_run_processes_json_lines_locally() {
    let filter = wasm("filter-json");
    let mut child = Command::new(sluice_binary())
        .args(["plugin", "run"])
        .arg(&filter)
        .args(["--config", "field=level", "--config", "equals=error"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"level\":\"info\",\"m\":1}\n{\"level\":\"error\",\"m\":2}\nnot json\n{\"key\":\"k\",\"value\":{\"level\":\"error\",\"m\":3}}\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        lines[0]["value"],
        serde_json::json!({"level": "error", "m": 2})
    );
    assert_eq!(lines[0]["source_offset"], 1);
    assert_eq!(lines[1]["key"], "k");
    assert_eq!(lines[1]["value"]["m"], 3);
    // The line that is not JSON fails, is named, and fails the command.
    assert!(stderr.contains("offset 2"), "{stderr}");
    assert!(!output.status.success());
}

#[test]
fn a_deployment_that_cannot_resume_is_listed_as_failed_until_removed() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    pipeline.deploy(
        "fragile",
        "uppercase",
        &["--input", "in", "--output", "out"],
    );
    let broker = pipeline.broker.kafka;
    pipeline.broker.stop_with("TERM", Duration::from_secs(10));
    let plugins = pipeline.dir.path().join("data/processors/plugins");
    for entry in std::fs::read_dir(&plugins).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    pipeline.broker = Pipeline::spawn(pipeline.dir.path(), &broker.to_string());
    let status = pipeline.status("fragile");
    assert_eq!(status["state"], "failed", "{status:#}");
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot resume") && message.contains("redeploy or remove"),
        "{message}"
    );
    let listed = pipeline.sluice_ok(&["processor", "list", "--format", "json"]);
    assert!(listed.contains("fragile"), "{listed}");
    pipeline.sluice_ok(&["processor", "remove", "fragile"]);
    let (code, _) = pipeline.broker.http_get("/v1/processors/fragile");
    assert_eq!(code, 404);
}

/// JoinGroup v3 for a consumer of `group`: its error code.
fn join_as_consumer(client: &mut KafkaClient, group: &str) -> i16 {
    let protocol = JoinGroupRequestProtocol::default()
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(Bytes::from_static(b"\0\0\0\0\0\x01\0\x02in\0\0\0\0"));
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_session_timeout_ms(120_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![protocol]);
    client.call(request, 3).error_code
}

/// A processor's group is the broker's: a Kafka client that joined it
/// would take partitions from the processor, a commit would move its
/// position, a delete would lose it. Clients may describe it (lag) and
/// read its offsets, nothing else, ACLs or not; the same for its topics
/// (a changelog): read, never written. Removing the processor still
/// deletes the offsets, so a new deployment starts from the beginning.
#[test]
fn kafka_clients_may_describe_a_processors_group_but_not_join_commit_or_delete_it() {
    const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    let lines: String = (0..10).map(|i| format!("r{i}\n")).collect();
    let mut produce = Command::new(sluice_binary())
        .args(["produce", "in"])
        .env("SLUICE_BROKERS", pipeline.broker.kafka.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .expect("sluice produce");
    let mut stdin = produce.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    drop(stdin);
    assert!(produce.wait().unwrap().success(), "sluice produce");
    pipeline.deploy("held", "uppercase", &["--input", "in", "--output", "out"]);
    pipeline.wait_caught_up("held", 10);

    let group = "sluice-processor-held";
    let mut client = KafkaClient::connect(pipeline.broker.kafka);
    assert_eq!(
        join_as_consumer(&mut client, group),
        GROUP_AUTHORIZATION_FAILED
    );
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("in")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(0)])]);
    let committed = client.call(commit, 8);
    assert_eq!(
        committed.topics[0].partitions[0].error_code, GROUP_AUTHORIZATION_FAILED,
        "{committed:?}"
    );
    let delete = DeleteGroupsRequest::default()
        .with_groups_names(vec![GroupId(StrBytes::from_static_str(group))]);
    assert_eq!(
        client.call(delete, 2).results[0].error_code,
        GROUP_AUTHORIZATION_FAILED
    );
    // Describing works: `sluice group describe` (a Kafka client) shows the
    // processor's committed position, untouched by the refused commit.
    let described = pipeline.sluice_ok(&["group", "describe", group, "--format", "json"]);
    let described: serde_json::Value = serde_json::from_str(&described).unwrap();
    let committed_offset = described["offsets"][0]["committed_offset"].clone();
    assert_eq!(committed_offset, 10, "{described:#}");
    // The processor's topics are not the clients' to write.
    let plain = crate::transactions::BatchAttributes {
        transactional: false,
        control: false,
    };
    let forged = crate::transactions::batch((-1, -1), plain, -1, &["forged"]);
    let code = client.produce("sluice-processor-held-changelog", 0, forged);
    assert_eq!(code, TOPIC_AUTHORIZATION_FAILED);

    // Removing the processor deletes its offsets for real: a new deployment
    // under the same name starts from the beginning (resuming from offset
    // 10 would leave records_in at 0).
    pipeline.sluice_ok(&["processor", "remove", "held"]);
    pipeline.deploy("held", "uppercase", &["--input", "in", "--output", "out"]);
    pipeline.wait_caught_up("held", 10);
}

/// A bad `from` in a deploy request is a 400 naming it, whatever the client
/// (the CLI checks it too, so this speaks HTTP directly): no panic on
/// non-ASCII where digits belong, no silent March 3 for February 31, no
/// overflow on a huge year. Nothing is deployed.
#[test]
fn a_bad_from_in_a_deploy_request_is_a_400_with_a_message() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    let wasm = std::fs::read(wasm("filter-json")).unwrap();
    let deploy = |from: &str| {
        let spec = serde_json::json!({
            "inputs": ["in"],
            "outputs": ["out"],
            "config": [["field", "n"], ["gte", "1"]],
            "from": from,
        });
        let spec = spec.to_string();
        pipeline.broker.http_put_multipart(
            "/v1/processors/p",
            &[("spec", spec.as_bytes()), ("wasm", &wasm)],
        )
    };
    for bad in [
        "2026-01-01T00:00:00.ééZ",
        "2026-02-31T00:00:00Z",
        "99999999999999999-01-01T00:00:00Z",
        "@-1",
        "soon",
    ] {
        let (status, body) = deploy(bad);
        assert_eq!(status, 400, "from {bad:?}: {body}");
        assert!(
            body.contains(bad),
            "from {bad:?}: the message names it: {body}"
        );
    }
    let (_, listed) = pipeline.broker.http_get("/v1/processors");
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["processors"],
        serde_json::json!([])
    );
    // The same request with a good `from` deploys.
    let (status, body) = deploy("2026-02-28T00:00:00Z");
    assert_eq!(status, 200, "{body}");
}

/// The broker caps the memory of all plugin instances together: a deploy
/// whose instances' memory limits would take the sum over
/// `processors.memory_bytes_max` is refused, saying so, and the processors
/// already deployed keep running.
#[test]
fn deploys_beyond_the_broker_wide_plugin_memory_are_refused() {
    let pipeline = Pipeline::start_with_config("[processors]\nmemory_bytes_max = 104857600\n");
    for topic in ["in", "out"] {
        pipeline.create_topic(topic, 2);
    }
    // Records in both partitions, so every partition holds an instance.
    let keys = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"];
    let records: Vec<_> = keys.iter().map(|key| (Some(*key), "a")).collect();
    pipeline.produce("in", &records);
    let deploy = |name: &str| {
        pipeline.sluice(&[
            "processor",
            "deploy",
            name,
            "--wasm",
            wasm("uppercase").to_str().unwrap(),
            "--input",
            "in",
            "--output",
            "out",
            "--memory-max",
            "20MiB",
        ])
    };
    // Two partitions of 20 MiB each: 40 MiB, then 80 MiB, then 120 MiB.
    for name in ["first", "second"] {
        let output = deploy(name);
        assert!(output.status.success(), "{output:?}");
    }
    let output = deploy("third");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("processors.memory_bytes_max"), "{stderr}");
    let (code, _) = pipeline.broker.http_get("/v1/processors/third");
    assert_eq!(code, 404);
    let status = pipeline.wait_caught_up("first", 8);
    assert_eq!(status["errors"], 0, "{status:#}");
    assert!(
        status["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["records_in"].as_u64() > Some(0)),
        "{status:#}"
    );
    pipeline.wait_caught_up("second", 8);
    // Redeploying one already counted does not count it twice, even at
    // the cap: 40 + 60 MiB, while the old 40 MiB still run during the deploy.
    let output = pipeline.sluice(&[
        "processor",
        "deploy",
        "second",
        "--wasm",
        wasm("uppercase").to_str().unwrap(),
        "--input",
        "in",
        "--output",
        "out",
        "--memory-max",
        "30MiB",
    ]);
    assert!(output.status.success(), "{output:?}");
    // Its new instances start within the cap and process a new record.
    pipeline.produce("in", &[(Some("k0"), "b")]);
    let status = pipeline.wait_caught_up("second", 1);
    assert_eq!(status["errors"], 0, "{status:#}");
}

/// The answer to a resume does not call a partition paused: until its task
/// has looked again it is starting.
#[test]
fn a_resumed_processors_partitions_are_not_reported_paused() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("quiet", 2);
    pipeline.create_topic("loud", 1);
    pipeline.deploy(
        "hush",
        "uppercase",
        &["--input", "quiet", "--output", "loud"],
    );
    pipeline.sluice_ok(&["processor", "pause", "hush"]);
    pipeline.wait_for("hush", "both partitions paused", |s| {
        s["partitions"]
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["state"] == "paused"))
    });
    let (code, body) = pipeline
        .broker
        .http_request("POST", "/v1/processors/hush/resume");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["state"], "running", "{status:#}");
    for partition in status["partitions"].as_array().unwrap() {
        assert_ne!(partition["state"], "paused", "{status:#}");
    }
}
