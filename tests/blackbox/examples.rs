//! The scenarios in `examples/`, run as their READMEs say.

use std::process::Command;

use crate::harness::sluice_binary;
use crate::plugins::{repo_root, wasm};
use crate::processors::Pipeline;

#[test]
fn clickstream_example_routes_filters_and_reshapes() {
    let pipeline = Pipeline::start();
    let plugins = wasm("filter-json").parent().unwrap().to_path_buf();
    let output = Command::new(repo_root().join("examples/clickstream/run.sh"))
        .env("SLUICE", sluice_binary())
        .env("PLUGINS", plugins)
        .env("SLUICE_BROKERS", pipeline.broker.kafka.to_string())
        .env("SLUICE_ADMIN", format!("http://{}", pipeline.broker.http))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let alerts: Vec<&str> = stdout
        .lines()
        .skip_while(|l| *l != "alerts:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        alerts,
        [
            r#"ann {"alert":"big-purchase","amount":120,"customer":"ann"}"#,
            r#"dee {"alert":"big-purchase","amount":250,"customer":"dee"}"#,
        ],
        "{stdout}"
    );
    let routed = pipeline.status("router");
    assert_eq!(routed["records_in"], 8);
    assert_eq!(routed["records_out"], 8);
}

/// Runs `examples/<name>/run.sh` against `pipeline`'s broker with the
/// suite's built plugins; it must succeed. Returns its stdout.
fn run_example(pipeline: &Pipeline, name: &str) -> String {
    let plugins = wasm("aggregate-json").parent().unwrap().to_path_buf();
    let output = Command::new(repo_root().join(format!("examples/{name}/run.sh")))
        .env("SLUICE", sluice_binary())
        .env("PLUGINS", plugins)
        .env("SLUICE_BROKERS", pipeline.broker.kafka.to_string())
        .env("SLUICE_ADMIN", format!("http://{}", pipeline.broker.http))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "examples/{name}/run.sh failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The lines after `heading` up to the next empty line.
fn section<'a>(stdout: &'a str, heading: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn notifications_example_serves_unread_counts_matching_its_reference() {
    let pipeline = Pipeline::start();
    let stdout = run_example(&pipeline, "notifications");
    let unread = section(&stdout, "unread:");
    assert_eq!(unread.len(), 8, "{stdout}");
    assert!(unread.iter().all(|line| line.ends_with(" ok")), "{stdout}");
    let status = pipeline.status("unread");
    assert_eq!(status["records_in"], 300);
    assert_eq!(status["errors"], 0);
    // The query the script made, made again here: user-1's count is the
    // script's reference (a seeded input).
    let (code, body) = pipeline
        .broker
        .http_get("/v1/processors/unread/stores/aggregates/keys/user-1");
    assert_eq!(code, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["value"]["sum"], 17.0, "{body}");
}

#[test]
fn event_sourcing_example_projects_balances_and_a_rebuild_equals_the_live_projection() {
    let pipeline = Pipeline::start();
    let stdout = run_example(&pipeline, "event-sourcing");
    let balances = section(&stdout, "balances:");
    assert_eq!(balances.len(), 12, "{stdout}");
    assert!(
        balances.iter().all(|line| line.ends_with(" ok")),
        "{stdout}"
    );
    assert!(
        balances.iter().any(|line| line.contains(" closed ")),
        "the seeded input closes an account: {stdout}"
    );
    assert_eq!(
        section(&stdout, "rebuilt:"),
        ["topic equal (11 accounts)", "state equal"],
        "{stdout}"
    );
    assert_eq!(
        section(&stdout, "reset:"),
        ["topic equal (11 accounts)", "state equal"],
        "{stdout}"
    );
    // The live projection's figures count from its reset redeploy: all
    // 500 events processed again.
    for name in ["balances", "balances-rebuilt"] {
        let status = pipeline.status(name);
        assert_eq!(status["records_in"], 500, "{name}: {status:#}");
        assert_eq!(status["errors"], 0, "{name}: {status:#}");
    }
}

#[test]
fn analytics_example_counts_views_per_minute_sessions_and_top_pages_like_its_reference() {
    let pipeline = Pipeline::start();
    let stdout = run_example(&pipeline, "analytics");
    let results = section(&stdout, "results:");
    assert_eq!(results.len(), 3, "{stdout}");
    assert!(!stdout.contains("WRONG"), "{stdout}");
    assert_eq!(
        results[0], "(a) views per page per minute: 101 windows; busiest /home @ 1767226080000: 7",
        "counted per page: {stdout}"
    );
    assert_eq!(
        results[1], "(b) click sessions: 18 sessions, 90 clicks",
        "{stdout}"
    );
    assert_eq!(
        results[2], "(c) top pages: /home 57, /search 31, /product/2 18",
        "{stdout}"
    );
    for name in ["views-per-minute", "click-sessions", "top-pages"] {
        let status = pipeline.status(name);
        assert_eq!(status["errors"], 0, "{name}: {status:#}");
        assert_eq!(status["late_dropped"], 0, "{name}: {status:#}");
    }
}
