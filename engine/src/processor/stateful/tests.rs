//! The commit protocol against power cuts: the log runs on the injectable
//! I/O layer, which drops every byte not fsynced when the "power" goes;
//! RocksDB's commits are synced. After each cut and recovery, the outputs
//! (read_committed) and the state must account for the durable input
//! exactly once: committed state never ahead of the input or the outputs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::Compression;

use super::Stateful;
use crate::group::offsets::OffsetStore;
use crate::group::{GroupConfig, GroupCoordinator};
use crate::log::batch::build;
use crate::log::{
    FaultIo, Faults, FlushPolicy, Isolation, LogStore, StdIo, StoreOptions, SystemClock,
};
use crate::processor::host::{
    Batch, Factory, Invoke, InvokeError, Output, OutputRecord, Payload, TaskContext,
};
use crate::processor::spec::{Deployment, Guarantee, Limits};
use crate::processor::status::PartitionStats;
use crate::processor::worker::PartitionTask;
use crate::state::{store_prefix, StateConfig, StateDb, TaskState};

/// An output of the record or timer `source` writing `value`.
fn written(source: usize, key: Option<Vec<u8>>, value: &[u8]) -> Output {
    Output {
        source: source as u32,
        topic: None,
        payload: Payload::Emit(OutputRecord {
            key: key.map(Into::into),
            value: Some(value.to_vec().into()),
            headers: Vec::new(),
            timestamp: None,
        }),
    }
}

/// Counts records per key in store `counts` and writes the new count.
struct Counter;

impl Invoke for Counter {
    fn process(
        &mut self,
        batch: Batch<'_>,
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        let state = task.state.as_mut().expect("a stateful task");
        let prefix = store_prefix(0, "counts");
        let mut outputs = Vec::new();
        for (index, record) in batch.records.iter().enumerate() {
            let key = record.key.clone().unwrap_or_default();
            let count = state.add(&prefix, &key, 1).map_err(|e| InvokeError::Host {
                message: e.to_string(),
            })?;
            outputs.push(written(
                index,
                Some(key.to_vec()),
                count.to_string().as_bytes(),
            ));
        }
        Ok(outputs)
    }
}

struct Node {
    store: Arc<LogStore>,
    groups: Arc<GroupCoordinator>,
    state: Arc<StateDb>,
}

fn open(dir: &std::path::Path, faults: &Arc<Faults>) -> Node {
    let options = StoreOptions {
        flush: FlushPolicy::Never,
        ..StoreOptions::default()
    };
    let io = Arc::new(FaultIo::new(faults.clone()));
    let store =
        Arc::new(LogStore::open(&dir.join("data"), options, io, Arc::new(SystemClock)).unwrap());
    for topic in ["in", "out"] {
        if store.topic(topic).is_none() {
            store.create_topic(topic, 1, Default::default()).unwrap();
        }
    }
    let offsets = OffsetStore::open(Arc::new(StdIo), &dir.join("groups")).unwrap();
    let groups = Arc::new(GroupCoordinator::new(
        GroupConfig::default(),
        Arc::new(SystemClock),
        offsets,
    ));
    let state = StateDb::open(&dir.join("state"), &StateConfig::default()).unwrap();
    Node {
        store,
        groups,
        state,
    }
}

fn task(node: &Node, producer_ids: &Arc<AtomicI64>) -> PartitionTask {
    let deployment = Arc::new(Deployment {
        name: "p".into(),
        inputs: vec!["in".into()],
        outputs: vec!["out".into()],
        config: Vec::new(),
        on_error: "fail".into(),
        limits: Limits {
            batch_records_max: 7,
            ..Limits::default()
        },
        wasm_sha256: String::new(),
        wasm_bytes: 0,
        artifact_sha256: None,
        deployed_at_ms: 0,
        paused: false,
        stores: vec!["counts".into()],
        guarantee: Guarantee::ExactlyOnce,
        commit_interval_ms: 0,
        idle_advance_ms: None,
        changelog: false,
        tables: Vec::new(),
    });
    let factory: Factory = Arc::new(|| Ok(Box::new(Counter) as Box<dyn Invoke>));
    let stats = Arc::new(PartitionStats::new("in", 0));
    let ids = producer_ids.clone();
    let stateful = Stateful::new(
        true,
        false,
        Arc::new(move || Ok(ids.fetch_add(1, Ordering::SeqCst))),
        Duration::ZERO,
        None,
    );
    let state = TaskState::new(node.state.processor("p").unwrap(), 0);
    PartitionTask::new(
        node.store.clone(),
        node.groups.clone(),
        factory,
        deployment,
        stats,
        0,
    )
    .with_state(TaskContext::with_state(state), stateful)
}

/// The keys of the records of `topic`, read_committed, in offset order,
/// with their values.
fn committed_records(store: &LogStore, topic: &str) -> Vec<(Bytes, Option<Bytes>)> {
    let partition = store.partition(topic, 0).unwrap();
    let mut records = Vec::new();
    let mut offset = partition.log_start_offset();
    while offset < partition.last_stable_offset() {
        let read = partition
            .read_isolated(offset, 1 << 20, Isolation::ReadCommitted)
            .unwrap();
        if read.records.is_empty() {
            break;
        }
        offset = partition
            .committed_records(read, offset, |record| {
                records.push((record.key.unwrap_or_default(), record.value));
            })
            .unwrap();
    }
    records
}

/// Every invariant: each durable input record has exactly one committed
/// output, the outputs of a key count 1, 2, … with no gap or repeat, and
/// the state holds each key's count.
fn check_exactly_once(node: &Node, round: usize) {
    let inputs = committed_records(&node.store, "in");
    let outputs = committed_records(&node.store, "out");
    assert_eq!(
        outputs.len(),
        inputs.len(),
        "round {round}: outputs for the durable input"
    );
    let mut expected: BTreeMap<Bytes, i64> = BTreeMap::new();
    for (key, _) in &inputs {
        *expected.entry(key.clone()).or_default() += 1;
    }
    let mut seen: BTreeMap<Bytes, i64> = BTreeMap::new();
    for (key, value) in &outputs {
        let count = seen.entry(key.clone()).or_default();
        *count += 1;
        let value: i64 = std::str::from_utf8(value.as_ref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            value, *count,
            "round {round}: outputs of {key:?} out of sequence"
        );
    }
    assert_eq!(seen, expected, "round {round}");
    let state = node.state.existing("p").unwrap();
    for (key, count) in &expected {
        let stored = state.get_committed(0, "counts", key).unwrap().unwrap();
        assert_eq!(
            stored,
            count.to_string().into_bytes(),
            "round {round}: state of {key:?}"
        );
    }
}

fn append_inputs(node: &Node, round: usize, count: usize) {
    let entries: Vec<build::Entry> = (0..count)
        .map(|i| {
            (
                Some(format!("k{}", (round + i) % 5).into_bytes()),
                Some(b"v".to_vec()),
                1,
            )
        })
        .collect();
    let partition = node.store.partition("in", 0).unwrap();
    partition
        .append(&build::batch(&entries, Compression::None))
        .unwrap();
}

#[test]
fn after_power_cuts_the_outputs_and_state_count_the_durable_input_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let producer_ids = Arc::new(AtomicI64::new(0));
    for round in 0..12 {
        let node = open(dir.path(), &faults);
        let mut task = task(&node, &producer_ids);
        // Catch up on what survived the last cut (recovery first), check.
        while task.has_work() {
            task.step().unwrap();
        }
        check_exactly_once(&node, round);
        // New input, and a cut somewhere in its processing: after a few
        // steps, some committed and some not, some input synced, some not.
        append_inputs(&node, round, 20 + round * 3);
        if round % 3 == 0 {
            // Some input made durable before the cut, some not.
            node.store
                .partition("in", 0)
                .unwrap()
                .make_durable(i64::MAX)
                .unwrap();
            append_inputs(&node, round + 1, 9);
        }
        for _ in 0..(round % 5) {
            task.step().unwrap();
        }
        drop(task);
        drop(node);
        faults.drop_unsynced().unwrap();
    }
    let node = open(dir.path(), &faults);
    let mut task = task(&node, &producer_ids);
    while task.has_work() {
        task.step().unwrap();
    }
    check_exactly_once(&node, 99);
}

/// A commit record written before brokers counted keys (no `keys`) gets
/// its count at recovery, from one pass over the task's store entries,
/// and keeps it from then on.
#[test]
fn a_commit_record_without_a_key_count_is_counted_once_at_recovery() {
    use crate::processor::scratch::{NativeStore, Scratch, StatefulOptions};
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(dir.path()).unwrap();
    let store = NativeStore::open("counts");
    let mut context = scratch.context("p").unwrap();
    for key in ["a", "b", "c"] {
        store.put(&mut context, key.as_bytes(), b"1").unwrap();
    }
    // The scratch's commit record is a fresh one: no key count.
    Scratch::commit_context(&mut context, true).unwrap();
    drop(context);
    let factory: Factory = Arc::new(|| Ok(Box::new(Counter) as Box<dyn Invoke>));
    let options = StatefulOptions {
        exactly_once: true,
        commit_interval_ms: 100,
    };
    let mut task = scratch
        .stateful_task("p", factory, Limits::default(), &["counts"], options)
        .unwrap();
    task.step().unwrap();
    assert_eq!(Scratch::task_figures(&task).keys, 3);
    // Counted from then on: a new key, then one seen before.
    let input = scratch.store.partition("in", 0).unwrap();
    for key in ["d", "a"] {
        let entry = (Some(key.as_bytes().to_vec()), Some(b"x".to_vec()), 0);
        input
            .append(&build::batch(&[entry], Compression::None))
            .unwrap();
    }
    while task.position() < 2 {
        task.step().unwrap();
    }
    assert_eq!(Scratch::task_figures(&task).keys, 4);
}

/// Opens the stores `opens` as windowed at its first call (not in
/// `init`): puts each record's key in store `w`, or in store `plain` for
/// a value `p`; deletes it from `w` for a value `del`; clears all of `w`
/// for a value `clear`.
struct Windowing {
    opens: &'static [&'static str],
    windowed: Vec<String>,
}

impl Invoke for Windowing {
    fn process(
        &mut self,
        batch: Batch<'_>,
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        self.windowed = self.opens.iter().map(|s| s.to_string()).collect();
        let state = task.state.as_mut().expect("a stateful task");
        let (windows, plain) = (store_prefix(0, "w"), store_prefix(0, "plain"));
        let host = |e: crate::state::StateError| InvokeError::Host {
            message: e.to_string(),
        };
        for record in batch.records {
            let key = record.key.clone().unwrap_or_default();
            match record.value.as_deref().unwrap_or_default() {
                b"p" => state.put(&plain, &key, b"1"),
                b"del" => state.delete(&windows, &key),
                b"clear" => state.clear_range(&windows, &[], None),
                _ => state.put(&windows, &key, b"1"),
            }
            .map_err(host)?;
        }
        Ok(Vec::new())
    }

    fn windowed_stores(&self) -> &[String] {
        &self.windowed
    }
}

/// The status counts the entries of the stores the plugin opened as
/// windowed as its open windows, per store from the commit record, across
/// puts, deletes, a range cleared and a restart; a record without counts
/// per store (older brokers) is counted once at recovery; a store opened
/// as windowed after `init` counts from the next commit.
#[test]
fn open_windows_are_the_entries_of_the_windowed_stores() {
    use crate::processor::scratch::{NativeStore, Scratch, StatefulOptions};
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(dir.path()).unwrap();
    let mut context = scratch.context("p").unwrap();
    NativeStore::open("w")
        .put(&mut context, b"old", b"1")
        .unwrap();
    NativeStore::open("plain")
        .put(&mut context, b"old", b"1")
        .unwrap();
    // The scratch's commit record is a fresh one: no counts.
    Scratch::commit_context(&mut context, true).unwrap();
    drop(context);
    let options = StatefulOptions {
        exactly_once: true,
        commit_interval_ms: 100,
    };
    let start = |opens: &'static [&'static str]| {
        let factory: Factory = Arc::new(move || {
            let windowed = Vec::new();
            Ok(Box::new(Windowing { opens, windowed }) as Box<dyn Invoke>)
        });
        scratch
            .stateful_task("p", factory, Limits::default(), &["w", "plain"], options)
            .unwrap()
    };
    let input = scratch.store.partition("in", 0).unwrap();
    let append = |key: &str, value: &str| {
        let entry = (
            Some(key.as_bytes().to_vec()),
            Some(value.as_bytes().to_vec()),
            0,
        );
        input
            .append(&build::batch(&[entry], Compression::None))
            .unwrap();
    };
    let run_to = |task: &mut PartitionTask, end: i64| {
        while task.position() < end {
            task.step().unwrap();
        }
        task.commit_now().unwrap();
    };
    let figures = |task: &PartitionTask| {
        let figures = Scratch::task_figures(task);
        (figures.keys, figures.open_windows)
    };
    let mut task = start(&["w"]);
    task.step().unwrap();
    assert_eq!(
        figures(&task),
        (2, None),
        "counted at recovery; no store opened as windowed yet"
    );
    for (key, value) in [("a", "w"), ("b", "w"), ("c", "w"), ("x", "p"), ("a", "w")] {
        append(key, value);
    }
    run_to(&mut task, 5);
    assert_eq!(figures(&task), (6, Some(4)));
    append("a", "del");
    append("x", "del");
    run_to(&mut task, 7);
    assert_eq!(figures(&task), (5, Some(3)), "x was not in w");
    drop(task);
    // An upgrade that opens `plain` as windowed too, at its first call.
    let mut task = start(&["plain"]);
    task.step().unwrap();
    assert_eq!(
        figures(&task),
        (5, Some(3)),
        "from the commit record, before any call"
    );
    append("y", "p");
    append("any", "clear");
    run_to(&mut task, 9);
    assert_eq!(
        figures(&task),
        (3, Some(3)),
        "w cleared; plain (windowed now, and w still) keeps old, x and y"
    );
}

/// Schedules an event-time timer at 1 000 for each record stamped before
/// it and writes `r` per record; `on-timer` writes `t` per timer.
struct Closer;

impl Invoke for Closer {
    fn process(
        &mut self,
        batch: Batch<'_>,
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        let mut outputs = Vec::new();
        for (index, record) in batch.records.iter().enumerate() {
            if record.timestamp < 1_000 {
                let key = record.key.clone().unwrap_or_default();
                crate::processor::scratch::NativeStore::schedule(task, &key, 1_000)?;
            }
            outputs.push(written(index, None, b"r"));
        }
        Ok(outputs)
    }

    fn on_timer(
        &mut self,
        timers: &[crate::processor::host::Timer],
        _task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        Ok((0..timers.len()).map(|i| written(i, None, b"t")).collect())
    }
}

/// The committed outputs of topic `out` as runs of equal values.
fn value_runs(store: &LogStore) -> Vec<(String, usize)> {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for (_, value) in committed_records(store, "out") {
        let value = String::from_utf8(value.unwrap().to_vec()).unwrap();
        match runs.last_mut() {
            Some((last, count)) if *last == value => *count += 1,
            _ => runs.push((value, 1)),
        }
    }
    runs
}

/// Appends `entries` to partition 0 of `in`, 100 a batch.
fn append_in(store: &LogStore, entries: Vec<build::Entry>) {
    let input = store.partition("in", 0).unwrap();
    for chunk in entries.chunks(100) {
        input
            .append(&build::batch(chunk, Compression::None))
            .unwrap();
    }
}

/// A burst of due timers (a window close of many keys) no longer holds
/// up the records behind it: while records wait, each step fires about as
/// many timers as it processed records, and the rest once none wait.
#[test]
fn records_waiting_behind_a_burst_of_due_timers_are_not_held_up_by_all_of_it() {
    use crate::processor::worker::TIMERS_WHILE_RECORDS_WAIT_MIN as MIN;
    const KEYS: usize = 600;
    // A timer per key, due at 1 000; 40 records past it.
    let factory: Factory = Arc::new(|| Ok(Box::new(Closer) as Box<dyn Invoke>));
    let (runs, _) = timer_burst(factory, &[], KEYS, 16, 40);
    // Steps of 16, 16 and 8 records; a share of the timers after each of
    // the first two (records still waited), the rest after the last.
    assert_eq!(
        runs,
        vec![
            ("r".into(), KEYS + 16),
            ("t".into(), MIN),
            ("r".into(), 16),
            ("t".into(), MIN),
            ("r".into(), 8),
            ("t".into(), KEYS - 2 * MIN),
        ]
    );
}

/// Writes a `counts` key per record and schedules one event-time timer
/// at 1 000 for the records stamped before it, as the SDK's tumbling
/// windows do; `on-timer` deletes the keys a page of `PAGE` at a time,
/// a call each, scheduling the timer again while keys are left.
struct PageCloser;

impl PageCloser {
    const PAGE: usize = 100;
}

impl Invoke for PageCloser {
    fn process(
        &mut self,
        batch: Batch<'_>,
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        let counts = crate::processor::scratch::NativeStore::open("counts");
        let mut outputs = Vec::new();
        for (index, record) in batch.records.iter().enumerate() {
            if record.timestamp < 1_000 {
                let key = record.key.clone().unwrap_or_default();
                counts.put(task, &key, b"1")?;
                crate::processor::scratch::NativeStore::schedule(task, b"close", 1_000)?;
            }
            outputs.push(written(index, None, b"r"));
        }
        Ok(outputs)
    }

    fn on_timer(
        &mut self,
        timers: &[crate::processor::host::Timer],
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        let counts = crate::processor::scratch::NativeStore::open("counts");
        let (entries, next) = counts.scan(task, b"", None, Self::PAGE)?;
        for (key, _) in &entries {
            counts.delete(task, key)?;
        }
        if next.is_some() {
            crate::processor::scratch::NativeStore::schedule(task, b"close", 1_000)?;
        }
        Ok((0..timers.len()).map(|i| written(i, None, b"t")).collect())
    }
}

/// The committed outputs' runs when `keys` records stamped before 1 000
/// (for which `factory`'s plugin schedules timers at 1 000) are followed
/// by `late` records past 1 000, all waiting when the first of them makes
/// the timers due, in steps of at most `batch` records; and the store
/// entries (`stores`) the task has left.
fn timer_burst(
    factory: Factory,
    stores: &[&str],
    keys: usize,
    batch: u64,
    late: usize,
) -> (Vec<(String, usize)>, u64) {
    use crate::processor::scratch::{Scratch, StatefulOptions};
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(dir.path()).unwrap();
    let limits = Limits {
        batch_records_max: batch,
        ..Limits::default()
    };
    let options = StatefulOptions {
        exactly_once: true,
        commit_interval_ms: 0,
    };
    let mut task = scratch
        .stateful_task("p", factory, limits, stores, options)
        .unwrap();
    fn stamped(prefix: &str, count: usize, at: impl Fn(usize) -> i64) -> Vec<build::Entry> {
        (0..count)
            .map(|i| (Some(format!("{prefix}{i:04}").into_bytes()), None, at(i)))
            .collect()
    }
    for entries in [
        stamped("k", keys, |i| (i % 1_000) as i64),
        stamped("late", late, |_| 2_000),
    ] {
        append_in(&scratch.store, entries);
        while task.has_work() {
            task.step().unwrap();
        }
    }
    (
        value_runs(&scratch.store),
        Scratch::task_figures(&task).keys,
    )
}

/// [`timer_burst`] of [`PageCloser`], which closes every key.
fn page_close_runs(keys: usize, batch: u64, late: usize) -> Vec<(String, usize)> {
    let factory: Factory = Arc::new(|| Ok(Box::new(PageCloser) as Box<dyn Invoke>));
    let (runs, left) = timer_burst(factory, &["counts"], keys, batch, late);
    assert_eq!(left, 0, "every key closed");
    runs
}

/// One timer may do the work of many: a page of a window's keys closed
/// in one call counts as that much timer work against what a step does
/// while records wait, so a close of few timers and many keys no longer
/// runs whole between two batches.
#[test]
fn a_timer_that_writes_a_page_of_keys_counts_as_that_much_work() {
    use crate::processor::worker::TIMERS_WHILE_RECORDS_WAIT_MIN as MIN;
    const { assert!(PageCloser::PAGE > MIN, "a page is more than a step's share") };
    // A page after each of the first two steps (records still waited),
    // the other 18 after the last.
    let (r, t) = (|n| ("r".to_string(), n), |n| ("t".to_string(), n));
    assert_eq!(
        page_close_runs(2_000, 16, 40),
        vec![r(2_000 + 16), t(1), r(16), t(1), r(8), t(18)]
    );
}

/// A task that keeps up closes windows in its idle time (a minimum of
/// timer work a step while records wait); one behind its input has no
/// idle time, so its close keeps pace with its records instead: a step
/// then does as much timer work as it processed records.
#[test]
fn a_task_behind_its_input_closes_at_the_pace_of_its_records() {
    use crate::processor::worker::BEHIND_BATCHES;
    const KEYS: usize = 6_000;
    const BATCH: usize = 256;
    const LATE: usize = 20_000;
    let behind = BEHIND_BATCHES as usize * BATCH;
    assert!(LATE > behind + 10 * BATCH, "some steps behind, some not");
    // The rule step by step: after a step of 256 records, three pages
    // (300 of work: at least the records) while still behind, one (at
    // least the minimum, 64) while records wait, the rest once none do.
    let mut expected: Vec<(String, usize)> = Vec::new();
    let mut push = |label: &str, n: usize| match expected.last_mut() {
        _ if n == 0 => {}
        Some((last, count)) if last == label => *count += n,
        _ => expected.push((label.to_string(), n)),
    };
    push("r", KEYS);
    let (mut left, mut pages) = (LATE, KEYS / PageCloser::PAGE);
    while left > 0 {
        let step = left.min(BATCH);
        left -= step;
        push("r", step);
        let fired = match left {
            0 => pages,
            _ if left >= behind => pages.min(BATCH.div_ceil(PageCloser::PAGE)),
            _ => pages.min(1),
        };
        pages -= fired;
        push("t", fired);
    }
    let runs = page_close_runs(KEYS, BATCH as u64, LATE);
    assert!(runs.iter().any(|run| run == &("t".to_string(), 3)));
    assert_eq!(runs, expected);
}
