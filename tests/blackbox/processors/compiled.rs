//! The compile cache runs only what the broker compiled: a cached
//! artifact whose bytes do not hash to the one recorded with its
//! deployment is not loaded but compiled again from the plugin's `.wasm`.

use serde_json::Value;

use super::Pipeline;

#[test]
fn swapped_compiled_plugins_are_compiled_again_so_each_runs_its_own_code() {
    let mut pipeline = Pipeline::start();
    for topic in ["a-in", "a-out", "b-in", "b-out"] {
        pipeline.create_topic(topic, 1);
    }
    pipeline.deploy(
        "shout",
        "uppercase",
        &["--input", "a-in", "--output", "a-out"],
    );
    pipeline.deploy(
        "pass",
        "filter-json",
        &[
            "--input", "b-in", "--output", "b-out", "--config", "field=n", "--config", "gte=1",
        ],
    );
    pipeline.restart_after(|data| {
        let dir = data.join("processors/compiled");
        let mut artifacts: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(artifacts.len(), 2, "{artifacts:?}");
        artifacts.sort();
        let first = std::fs::read(&artifacts[0]).unwrap();
        let second = std::fs::read(&artifacts[1]).unwrap();
        std::fs::write(&artifacts[0], second).unwrap();
        std::fs::write(&artifacts[1], first).unwrap();
    });
    let (_, listed) = pipeline.broker.http_get("/v1/processors");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["compile_cache"]["hits"], 0, "{listed:#}");
    assert_eq!(listed["compile_cache"]["misses"], 2, "{listed:#}");
    pipeline.produce("a-in", &[(Some("k"), r#"{"n":1}"#)]);
    pipeline.produce("b-in", &[(Some("k"), r#"{"n":1}"#)]);
    pipeline.wait_caught_up("shout", 1);
    pipeline.wait_caught_up("pass", 1);
    let value = |topic: &str| pipeline.consume(topic)[0].value.clone().unwrap();
    assert_eq!(value("a-out"), r#"{"N":1}"#);
    assert_eq!(value("b-out"), r#"{"n":1}"#);
    // The artifacts were written again and verify: the next start loads
    // both from the cache.
    pipeline.restart("TERM");
    let (_, listed) = pipeline.broker.http_get("/v1/processors");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["compile_cache"]["hits"], 2, "{listed:#}");
    assert_eq!(listed["compile_cache"]["misses"], 0, "{listed:#}");
}
