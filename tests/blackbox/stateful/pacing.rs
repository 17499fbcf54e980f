//! When a caught-up task commits: each commit syncs the outputs, RocksDB's
//! WAL and the markers, so a trickle of records commits a few times a
//! commit interval, not once a record; and its last records are committed
//! without more input coming (the driver wakes the task for it).

use std::time::Instant;

use super::{deploy_window_count_emitting, produce_at, stateful_total, wait_settled};
use crate::processors::Pipeline;

const INTERVAL_MS: u64 = 4_000;
/// `CAUGHT_UP_COMMITS_PER_INTERVAL` in the engine.
const CAUGHT_UP_COMMITS_PER_INTERVAL: u64 = 4;
const RECORDS: i64 = 20;

#[test]
fn a_trickle_of_records_commits_a_few_times_an_interval_and_its_last_ones_without_more_input() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("trickle", 1);
    pipeline.create_topic("trickle-counts", 1);
    let interval = INTERVAL_MS.to_string();
    deploy_window_count_emitting(
        &pipeline,
        "trickle",
        ("trickle", "trickle-counts"),
        60_000,
        "update",
        &["--commit-interval-ms", &interval],
    );
    let status = pipeline.wait_for("trickle", "recovered and idle", |s| {
        s["partitions"][0]["state"] == "idle"
    });
    let before = stateful_total(&status, "commits");
    let started = Instant::now();
    // One record at a time, each to a task that has caught up with the
    // one before (an update for every record: an output to commit).
    for i in 0..RECORDS {
        produce_at(&pipeline, "trickle", 0, &[(format!("user-{i}"), 1_000 + i)]);
        pipeline.wait_for("trickle", &format!("record {i} processed"), |s| {
            s["records_in"].as_i64() > Some(i)
        });
    }
    // Committed with no more input: every record, every output visible to
    // read_committed.
    let status = wait_settled(&pipeline, "trickle", RECORDS);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let outputs = pipeline.consume("trickle-counts");
    assert_eq!(outputs.len() as i64, RECORDS, "{outputs:?}");
    // At most one commit a pace (a quarter of the interval), plus the
    // first (due at once) and the last (the pace may end before it).
    let commits = stateful_total(&status, "commits") - before;
    let pace_ms = INTERVAL_MS / CAUGHT_UP_COMMITS_PER_INTERVAL;
    let bound = 2 + elapsed_ms / pace_ms;
    assert!(
        commits <= bound && bound < RECORDS as u64,
        "{commits} commits for {RECORDS} records over {elapsed_ms} ms (at most {bound}): {status:#}"
    );
    assert!(commits >= 1, "{status:#}");
}
