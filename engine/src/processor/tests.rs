//! The partition loop's guarantees about positions and durability, on a
//! scratch pipeline (`flush = never`) with a host-side stand-in for a
//! plugin that forwards every record.

use kafka_protocol::records::Compression;

use super::host::Factory;
use super::scratch::{ForwardAll, Scratch};
use super::spec::Limits;
use crate::log::batch::build;

fn forward_all() -> Factory {
    ForwardAll::factory()
}

fn produce(scratch: &Scratch, count: usize) {
    let entries: Vec<build::Entry> = (0..count)
        .map(|i| (None, Some(format!("v{i}").into_bytes()), 1_700_000_000_000))
        .collect();
    let input = scratch.store.partition("in", 0).unwrap();
    input
        .append(&build::batch(&entries, Compression::None))
        .unwrap();
}

/// Under `flush = never` the input offset a step commits is fsynced, so
/// the outputs it depends on must be too: a power cut must not keep the
/// commit and lose the outputs.
#[test]
fn outputs_are_durable_before_the_input_is_committed_under_flush_never() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(dir.path()).unwrap();
    produce(&scratch, 3);
    let mut task = scratch.task("forward", forward_all(), Limits::default());
    task.step().unwrap();
    assert_eq!(task.position(), 3, "the step committed the batch");
    let output = scratch.store.partition("out", 0).unwrap();
    assert_eq!(output.high_watermark(), 3);
    assert_eq!(
        output.durable_offset(),
        3,
        "outputs fsynced before the commit"
    );
}

/// A committed position past the log end (topic recreated, tail cut off
/// by recovery) restarts from the log start with a status line, instead
/// of waiting for the log to pass it and skipping everything before.
#[test]
fn a_position_past_the_log_end_restarts_from_the_log_start_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(dir.path()).unwrap();
    produce(&scratch, 3);
    let mut task = scratch.task_at("forward", forward_all(), Limits::default(), 100);
    task.step().unwrap();
    assert_eq!(task.position(), 3, "the three records were processed");
    let output = scratch.store.partition("out", 0).unwrap();
    assert_eq!(output.high_watermark(), 3);
    let notice = task.stats().last_error().expect("a status line");
    assert!(
        notice.message.contains("past the log end 3")
            && notice.message.contains("restarted from the log start 0"),
        "{}",
        notice.message
    );
    assert_eq!(notice.offset, Some(100));
    assert_eq!(
        task.stats()
            .errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a notice, not an error"
    );
}

/// Processors read committed data only: nothing past an open transaction
/// (the last stable offset), never an aborted transaction's records, and
/// the control batches of markers are stepped over.
#[test]
fn processors_read_committed_records_only() {
    use crate::log::transactions::Marker;
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(dir.path()).unwrap();
    let input = scratch.store.partition("in", 0).unwrap();
    let marker = |producer_id, commit| Marker {
        producer_id,
        producer_epoch: 0,
        commit,
        coordinator_epoch: 0,
    };
    input
        .append(&build::transactional(&[b"a0", b"a1"], 1, 0, 0))
        .unwrap();
    produce(&scratch, 1);
    input
        .append(&build::transactional(&[b"b0"], 2, 0, 0))
        .unwrap();
    let info = input.write_marker(&marker(2, false)).unwrap();
    input.acknowledge(&info).unwrap();
    let mut task = scratch.task("forward", forward_all(), Limits::default());
    assert_eq!(
        input.watermarks(),
        (5, 0),
        "producer 1's transaction is open"
    );
    assert!(!task.has_work(), "nothing committed yet");
    let info = input.write_marker(&marker(1, true)).unwrap();
    input.acknowledge(&info).unwrap();
    assert_eq!(input.watermarks(), (6, 6));
    while task.has_work() {
        task.step().unwrap();
    }
    assert_eq!(task.position(), 6, "past both markers");
    let output = scratch.store.partition("out", 0).unwrap();
    let mut batches = output.read(0, 1 << 20).unwrap().records;
    let mut values = Vec::new();
    while !batches.is_empty() {
        let header = crate::log::batch::BatchHeader::parse(&batches).unwrap();
        let batch = batches.split_to(header.total_bytes());
        for record in output.decode_batch(&batch).unwrap() {
            values.push(record.value.unwrap());
        }
    }
    assert_eq!(
        values,
        [&b"a0"[..], b"a1", b"v0"],
        "committed records, in order; b0 aborted"
    );
}
