//! Aggregating by a key other than the input's: records keyed by user are
//! counted per page through the processor's own repartition topic,
//! exactly once across kill -9, and the repartition topic is purged after
//! commit and removed with the processor.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{get_json, Random};
use crate::processors::Pipeline;

const PAGES: [&str; 7] = ["/", "/a", "/b", "/c", "/d", "/e", "/f"];

fn deploy(pipeline: &Pipeline) {
    pipeline.deploy(
        "per-page",
        "rekey-count",
        &[
            "--input",
            "views",
            "--output",
            "page-counts",
            "--store",
            "counts",
            "--config",
            "field=page",
        ],
    );
}

/// `count` page views keyed by random users.
pub(super) fn views(random: &mut Random, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|_| {
            let user = format!("user-{}", random.below(40));
            let page = PAGES[random.below(PAGES.len() as u64) as usize];
            (user, format!(r#"{{"page":"{page}"}}"#))
        })
        .collect()
}

pub(super) fn produce(pipeline: &Pipeline, records: &[(String, String)]) {
    let pairs: Vec<(Option<&str>, &str)> = records
        .iter()
        .map(|(k, v)| (Some(k.as_str()), v.as_str()))
        .collect();
    pipeline.produce("views", &pairs);
}

/// Waits until both stages have committed everything: the input's
/// `total` records, and the repartition topic up to its end.
pub(super) fn wait_both_stages(pipeline: &Pipeline, total: i64) -> Value {
    pipeline.wait_for("per-page", "both stages caught up", |s| {
        let partitions = s["partitions"].as_array().cloned().unwrap_or_default();
        let input: i64 = partitions
            .iter()
            .filter(|p| p["topic"] == "views")
            .map(|p| p["committed_offset"].as_i64().unwrap_or(0))
            .sum();
        let stage_two = partitions.iter().any(|p| {
            p["topic"]
                .as_str()
                .is_some_and(|t| t.ends_with("-repartition"))
        });
        input >= total && stage_two && s["lag"] == 0
    })
}

/// The last count emitted per page, and how many updates there were.
pub(super) fn emitted(pipeline: &Pipeline) -> (BTreeMap<String, i64>, usize) {
    let records = pipeline.consume("page-counts");
    let mut last = BTreeMap::new();
    for record in &records {
        let value: Value = serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
        last.insert(
            value["key"].as_str().unwrap().to_string(),
            value["count"].as_i64().unwrap(),
        );
    }
    (last, records.len())
}

#[test]
fn counts_by_another_key_go_through_the_repartition_topic_exactly_once() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("views", 3);
    pipeline.create_topic("page-counts", 2);
    deploy(&pipeline);
    let mut random = Random::new(99);
    let mut reference: BTreeMap<String, i64> = BTreeMap::new();
    let mut total = 0;
    for round in 0..6 {
        let records = views(&mut random, 300);
        for (_, value) in &records {
            let page: Value = serde_json::from_str(value).unwrap();
            *reference
                .entry(page["page"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        total += records.len() as i64;
        produce(&pipeline, &records);
        if round % 2 == 1 {
            pipeline.restart("KILL");
        }
    }
    let status = wait_both_stages(&pipeline, total);
    let (last, updates) = emitted(&pipeline);
    assert_eq!(last, reference, "{status:#}");
    assert_eq!(updates as i64, total, "one update per view, none repeated");
    // Queried by page, from the stage that owns it.
    let (code, answer) = get_json(&pipeline, "/v1/processors/per-page/stores/counts/keys/%2Fa");
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(answer["value"].as_i64(), reference.get("/a").copied());

    // The repartition topic is purged once its records are committed.
    let topic = "sluice-processor-per-page-repartition";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let described: Value = serde_json::from_str(
            &pipeline.sluice_ok(&["topic", "describe", topic, "--format", "json"]),
        )
        .unwrap();
        let starts: i64 = described["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["log_start_offset"].as_i64().unwrap_or(0))
            .sum();
        if starts > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never purged: {described:#}"
        );
        // More input makes the stage-two tasks commit (and purge when due).
        produce(&pipeline, &views(&mut random, 10));
        super::pause(500);
    }
    // Removed with the processor.
    pipeline.sluice_ok(&["processor", "remove", "per-page"]);
    let output = pipeline.sluice(&["topic", "describe", topic]);
    assert!(
        !output.status.success(),
        "the repartition topic outlived its processor"
    );
}
