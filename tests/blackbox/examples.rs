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
