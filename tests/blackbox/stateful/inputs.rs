//! A stateful processor over several co-partitioned inputs: one task per
//! partition number reads that partition of every input, so a key's
//! records from all of them meet in one state; its stream time is the
//! smallest of the inputs' times, so a slower input's records are not
//! late just because another input ran ahead; and both positions commit
//! with the state, exactly once across kills.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{emitted_windows, get_json, pause, produce_at, Input, Random};
use crate::processors::Pipeline;

const START_MS: i64 = 1_767_225_600_000;

/// Deploys `windowed-count` over both `views` and `clicks`.
fn deploy_over_both(pipeline: &Pipeline, size_ms: i64, emit: &str, extra: &[&str]) {
    let size = format!("size_ms={size_ms}");
    let emit = format!("emit={emit}");
    let mut args = vec![
        "--input", "views", "--input", "clicks", "--output", "counts", "--store", "counts",
        "--config", &size, "--config", &emit,
    ];
    args.extend_from_slice(extra);
    pipeline.deploy("activity", "windowed-count", &args);
}

/// Waits until the processor's task has committed `views` and `clicks`
/// records in partition 0 of each.
fn wait_positions(pipeline: &Pipeline, views: i64, clicks: i64) -> Value {
    pipeline.wait_for(
        "activity",
        &format!("views at {views} and clicks at {clicks}"),
        |s| {
            let at = |topic: &str| {
                s["partitions"].as_array().and_then(|ps| {
                    ps.iter()
                        .find(|p| p["topic"] == topic && p["partition"] == 0)
                        .and_then(|p| p["committed_offset"].as_i64())
                })
            };
            at("views") == Some(views) && at("clicks") == Some(clicks)
        },
    )
}

#[test]
fn stream_time_is_the_slower_inputs_so_its_records_are_counted_not_dropped() {
    let pipeline = Pipeline::start();
    for topic in ["views", "clicks", "counts"] {
        pipeline.create_topic(topic, 2);
    }
    deploy_over_both(&pipeline, 1000, "final", &[]);
    // Clicks have reached START only; views run five seconds ahead.
    produce_at(&pipeline, "clicks", 0, &[("u1".into(), START_MS)]);
    let views: Vec<Input> = (0..=50)
        .map(|i| ("u1".to_string(), START_MS + i * 100))
        .collect();
    produce_at(&pipeline, "views", 0, &views);
    let status = wait_positions(&pipeline, 51, 1);
    let partition0 = |status: &Value, topic: &str| {
        status["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["topic"] == topic && p["partition"] == 0)
            .cloned()
            .unwrap()
    };
    // Both inputs of the task show its stream time: the clicks' time.
    for topic in ["views", "clicks"] {
        assert_eq!(
            partition0(&status, topic)["stateful"]["stream_time"].as_i64(),
            Some(START_MS),
            "{status:#}"
        );
    }
    assert!(
        pipeline.consume("counts").is_empty(),
        "no window closes before the clicks' time passes it"
    );

    // The clicks catch up: records within the first two windows are
    // counted with the views, then the clicks pass the views.
    produce_at(
        &pipeline,
        "clicks",
        0,
        &[
            ("u1".into(), START_MS + 300),
            ("u1".into(), START_MS + 1200),
            ("u1".into(), START_MS + 6000),
        ],
    );
    let status = wait_positions(&pipeline, 51, 4);
    assert_eq!(status["late_dropped"].as_u64(), Some(0), "{status:#}");
    assert_eq!(
        partition0(&status, "views")["stateful"]["stream_time"].as_i64(),
        Some(START_MS + 5000),
        "the smaller of the two inputs' times: {status:#}"
    );
    // Closed: windows ending by stream time (START + 5000).
    let expected: BTreeMap<(String, i64), Vec<u64>> = [12, 11, 10, 10, 10]
        .iter()
        .enumerate()
        .map(|(i, count)| (("u1".to_string(), START_MS + i as i64 * 1000), vec![*count]))
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let emitted = emitted_windows(&pipeline.consume("counts"));
        if emitted == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && emitted.len() <= expected.len(),
            "emitted {emitted:?}, expected {expected:?}"
        );
        pause(50);
    }
    // The open windows are queryable, counting both inputs, and the answer
    // carries the position in each input.
    let (code, body) = get_json(
        &pipeline,
        &format!(
            "/v1/processors/activity/stores/counts/windows/u1?from={}&to={}",
            START_MS + 5000,
            START_MS + 6000
        ),
    );
    assert_eq!(code, 200, "{body:#}");
    let windows: Vec<(i64, Value)> = body["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["start"].as_i64().unwrap(), w["value"].clone()))
        .collect();
    assert_eq!(
        windows,
        vec![
            (START_MS + 5000, Value::from(1)),
            (START_MS + 6000, Value::from(1))
        ],
        "{body:#}"
    );
    let position = body["positions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partition"] == 0)
        .cloned()
        .unwrap();
    let offsets: BTreeMap<String, i64> = position["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["topic"].as_str().unwrap().to_string(),
                i["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        offsets,
        BTreeMap::from([("views".to_string(), 51), ("clicks".to_string(), 4)]),
        "{body:#}"
    );
}

#[test]
fn counts_over_two_inputs_are_exact_across_kills() {
    let mut pipeline = Pipeline::start();
    for topic in ["views", "clicks", "counts"] {
        pipeline.create_topic(topic, 2);
    }
    // One window holding everything, emitting every update: the last
    // update per key is its count over both inputs, and there is exactly
    // one update per input record.
    deploy_over_both(
        &pipeline,
        1_000_000_000,
        "update",
        &["--commit-interval-ms", "20"],
    );
    let mut random = Random::new(5);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    for round in 0..6 {
        for topic in ["views", "clicks"] {
            for partition in 0..2 {
                let records: Vec<Input> = (0..200)
                    .map(|i| {
                        let key = format!("p{partition}-u{}", random.below(13));
                        (
                            key,
                            START_MS + round * 10_000 + i * 7 + random.below(50) as i64,
                        )
                    })
                    .collect();
                for (key, _) in &records {
                    *expected.entry(key.clone()).or_default() += 1;
                }
                total += records.len() as u64;
                produce_at(&pipeline, topic, partition, &records);
            }
        }
        pause(random.below(60));
        pipeline.restart("KILL");
    }
    let status = super::wait_settled(&pipeline, "activity", total as i64);
    assert_eq!(status["late_dropped"].as_u64(), Some(0), "{status:#}");
    let records = pipeline.consume("counts");
    assert_eq!(records.len() as u64, total, "one update per input record");
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for record in &records {
        let value: Value = serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
        last.insert(
            value["key"].as_str().unwrap().to_string(),
            value["count"].as_u64().unwrap(),
        );
    }
    assert_eq!(last, expected);
}

#[test]
fn inputs_that_are_not_co_partitioned_are_refused() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("views", 3);
    pipeline.create_topic("clicks", 2);
    pipeline.create_topic("counts", 2);
    let wasm = crate::plugins::wasm("windowed-count");
    let output = pipeline.sluice(&[
        "processor",
        "deploy",
        "activity",
        "--wasm",
        wasm.to_str().unwrap(),
        "--input",
        "views",
        "--input",
        "clicks",
        "--output",
        "counts",
        "--store",
        "counts",
        "--config",
        "size_ms=1000",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("co-partitioned")
            && stderr.contains("views has 3")
            && stderr.contains("clicks has 2"),
        "{stderr}"
    );
}
