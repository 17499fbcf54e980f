//! Long CLI work shows progress on a terminal and stays quiet when piped
//! (or with `--quiet`): run under a real pseudo-terminal (`script`).

use std::process::{Command, Stdio};

use crate::harness::sluice_binary;
use crate::processors::Pipeline;

/// Runs `shell` under a pseudo-terminal (util-linux `script`); returns
/// what the terminal showed.
fn on_a_terminal(pipeline: &Pipeline, shell: &str) -> String {
    let output = Command::new("script")
        .args(["-qec", shell, "/dev/null"])
        .env("SLUICE_BROKERS", pipeline.broker.kafka.to_string())
        .env("SLUICE", sluice_binary())
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert!(output.status.success(), "{shell}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn produce_and_consume_show_progress_on_a_terminal_only() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("big", 2);
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines");
    let text: String = (0..200_000).map(|i| format!("record {i}\n")).collect();
    std::fs::write(&lines, text).unwrap();
    let lines = lines.display().to_string();

    let shown = on_a_terminal(&pipeline, &format!("\"$SLUICE\" produce big < {lines}"));
    assert!(shown.contains("records ("), "no progress line: {shown}");
    assert!(shown.contains("to 'big'"), "{shown}");
    assert!(
        shown.contains("produced 200000 records to 'big'"),
        "{shown}"
    );

    // Records to a file, the terminal shows the bar towards -n.
    let out = dir.path().join("out").display().to_string();
    let shown = on_a_terminal(
        &pipeline,
        &format!("\"$SLUICE\" consume big -n 200000 > {out}"),
    );
    assert!(
        shown.contains("/200000 records"),
        "no progress bar: {shown}"
    );
    let consumed = std::fs::read_to_string(dir.path().join("out")).unwrap();
    assert_eq!(consumed.lines().count(), 200_000);

    // --quiet on a terminal, and piped: the summary only.
    let shown = on_a_terminal(&pipeline, &format!("\"$SLUICE\" produce big -q < {lines}"));
    assert!(!shown.contains("records ("), "{shown}");
    assert!(shown.contains("produced 200000 records"), "{shown}");
    let piped = Command::new(sluice_binary())
        .args(["produce", "big"])
        .env("SLUICE_BROKERS", pipeline.broker.kafka.to_string())
        .stdin(std::fs::File::open(&lines).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert_eq!(
        stderr.trim(),
        "produced 200000 records to 'big' (partitions: 0, 1)"
    );
}
