//! Property test: random sequences of appends, reads, rolls, retention,
//! truncation and restarts on one partition, each followed by a check of the
//! whole partition against an in-memory model of the log (a list of the
//! batches that should be there, byte for byte).

use crate::log::segment::SegmentMeta;
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::support::{self, Fixture};
use crate::log::batch;
use crate::log::{FlushPolicy, LogError, LogStore, Partition, StoreOptions, TopicConfig};

const TOPIC: &str = "model";

/// Per-case settings, small enough that every run rolls and retains.
#[derive(Debug, Clone)]
struct Setup {
    segment_bytes: u64,
    index_interval_bytes: u64,
    retention_bytes: i64,
    retention_ms: i64,
    segment_ms: i64,
}

#[derive(Debug, Clone)]
enum Op {
    /// One produce request: `(records, value bytes)` per batch.
    Append(Vec<(usize, usize)>),
    /// A fetch at a point of `[log start - 1, end + 1]` chosen by `at`.
    Read {
        at: u16,
        max_bytes: usize,
    },
    /// Time passes (rolls by `segment.ms`, ages segments for retention).
    Advance(i64),
    Retention,
    /// Truncation to a point of `[log start - 3, end + 1]` chosen by `at`.
    Truncate {
        at: u16,
    },
    /// Drop the store, after a clean close or not (as after a crash: index
    /// entries not yet written are lost), and open it again.
    Reopen {
        clean: bool,
    },
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        1024u64..=4096,
        prop_oneof![Just(0u64), Just(64), Just(256), Just(4096)],
        prop_oneof![Just(-1i64), 1024i64..=6144],
        prop_oneof![Just(-1i64), 20_000i64..=60_000],
        prop_oneof![Just(7 * 24 * 3_600_000i64), 30_000i64..=90_000],
    )
        .prop_map(
            |(segment_bytes, index_interval_bytes, retention_bytes, retention_ms, segment_ms)| {
                Setup {
                    segment_bytes,
                    index_interval_bytes,
                    retention_bytes,
                    retention_ms,
                    segment_ms,
                }
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let batch = (1usize..=5, 0usize..=300);
    let batches = prop_oneof![
        4 => prop::collection::vec(batch.clone(), 1..=1),
        1 => prop::collection::vec(batch, 2..=3),
    ];
    prop_oneof![
        10 => batches.prop_map(Op::Append),
        4 => (any::<u16>(), 0usize..=5000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        3 => (0i64..=20_000).prop_map(Op::Advance),
        3 => Just(Op::Retention),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// One batch as the store must hold it.
#[derive(Debug, Clone)]
struct ModelBatch {
    base_offset: i64,
    last_offset: i64,
    /// The produced bytes with the base offset the store must assign.
    bytes: Bytes,
    values: Vec<Bytes>,
}

#[derive(Debug, Default)]
struct Model {
    log_start_offset: i64,
    log_end_offset: i64,
    batches: Vec<ModelBatch>,
}

impl Model {
    /// Index of the batch holding `offset` (or the first after it).
    fn containing(&self, offset: i64) -> Option<usize> {
        self.batches
            .iter()
            .position(|batch| batch.last_offset >= offset)
    }
}

/// The partition under test and the store it lives in.
struct Subject {
    fixture: Fixture,
    store: Option<LogStore>,
    partition: Arc<Partition>,
}

impl Subject {
    fn new(setup: &Setup) -> anyhow::Result<Self> {
        let fixture = Fixture::with_options(StoreOptions {
            flush: FlushPolicy::Never,
            index_interval_bytes: setup.index_interval_bytes,
            ..StoreOptions::default()
        });
        let store = fixture.open_std()?;
        let segment_bytes = setup.segment_bytes.to_string();
        let retention_bytes = setup.retention_bytes.to_string();
        let retention_ms = setup.retention_ms.to_string();
        let segment_ms = setup.segment_ms.to_string();
        store.create_topic(
            TOPIC,
            1,
            support::overrides(&[
                ("segment.bytes", &segment_bytes),
                ("retention.bytes", &retention_bytes),
                ("retention.ms", &retention_ms),
                ("segment.ms", &segment_ms),
            ]),
        )?;
        let partition = store.partition(TOPIC, 0)?;
        Ok(Self {
            fixture,
            store: Some(store),
            partition,
        })
    }

    fn reopen(&mut self, clean: bool) -> anyhow::Result<()> {
        if let Some(store) = self.store.take() {
            if clean {
                store.close()?;
            }
        }
        let store = self.fixture.open_std()?;
        self.partition = store.partition(TOPIC, 0)?;
        self.store = Some(store);
        Ok(())
    }
}

fn run(setup: &Setup, ops: &[Op]) -> anyhow::Result<()> {
    let mut subject = Subject::new(setup)?;
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        apply(&mut subject, &mut model, step, op)
            .and_then(|()| check(&subject.partition, &model))
            .with_context(|| format!("step {step}: {op:?}"))?;
    }
    Ok(())
}

fn apply(subject: &mut Subject, model: &mut Model, step: usize, op: &Op) -> anyhow::Result<()> {
    let partition = subject.partition.clone();
    match op {
        Op::Append(shape) => append(&partition, model, subject.fixture.now_ms(), step, shape),
        Op::Read { at, max_bytes } => {
            let offset = pick(*at, model.log_start_offset - 1, model.log_end_offset + 1);
            check_read(&partition, model, offset, *max_bytes).map(drop)
        }
        Op::Advance(ms) => {
            subject.fixture.clock.advance(*ms);
            Ok(())
        }
        Op::Retention => retention(&partition, model, subject.fixture.now_ms()),
        Op::Truncate { at } => {
            let low = (model.log_start_offset - 3).max(0);
            let offset = pick(*at, low, model.log_end_offset + 1);
            partition.truncate_to(offset)?;
            truncate_model(model, offset);
            Ok(())
        }
        Op::Reopen { clean } => subject.reopen(*clean),
    }
}

/// A point of `[low, high]` chosen by `at`.
fn pick(at: u16, low: i64, high: i64) -> i64 {
    low + i64::from(at) % (high - low + 1)
}

fn append(
    partition: &Partition,
    model: &mut Model,
    now_ms: i64,
    step: usize,
    shape: &[(usize, usize)],
) -> anyhow::Result<()> {
    let mut buffer = BytesMut::new();
    let mut expected = Vec::new();
    let mut next_offset = model.log_end_offset;
    for (index, (count, value_bytes)) in shape.iter().enumerate() {
        let tag = format!("{step}.{index}");
        let produced = support::values_batch(&tag, *count, *value_bytes, now_ms);
        let mut stored = produced.clone();
        batch::set_base_offset(&mut stored, next_offset);
        expected.push(ModelBatch {
            base_offset: next_offset,
            last_offset: next_offset + *count as i64 - 1,
            bytes: stored.freeze(),
            values: (0..*count)
                .map(|record| Bytes::from(support::value(&tag, record, *value_bytes)))
                .collect(),
        });
        next_offset += *count as i64;
        buffer.extend_from_slice(&produced);
    }
    let info = partition.append(&buffer)?;
    ensure!(
        info.base_offset == model.log_end_offset && info.last_offset == next_offset - 1,
        "append got offsets {}..={}, expected {}..={}",
        info.base_offset,
        info.last_offset,
        model.log_end_offset,
        next_offset - 1
    );
    ensure!(
        info.log_append_time_ms == -1,
        "CreateTime topic reported an append time"
    );
    ensure!(
        info.log_start_offset == model.log_start_offset,
        "append reported log start {}, expected {}",
        info.log_start_offset,
        model.log_start_offset
    );
    model.batches.extend(expected);
    model.log_end_offset = next_offset;
    Ok(())
}

/// Kafka's retention rule over the segments as they were before the run:
/// delete the oldest closed segments while each is past `retention.ms` or
/// the log without it is still at least `retention.bytes`; an expired active
/// segment goes too once nothing older remains. Returns how many segments go
/// and the new log start offset.
fn expected_retention(metas: &[SegmentMeta], config: &TopicConfig, now_ms: i64) -> (usize, i64) {
    let expired = |meta: &SegmentMeta, total: u64| {
        (config.retention_ms >= 0 && now_ms - meta.max_timestamp > config.retention_ms)
            || (config.retention_bytes >= 0 && total - meta.size >= config.retention_bytes as u64)
    };
    let (active, closed) = metas
        .split_last()
        .expect("a partition has an active segment");
    let mut total: u64 = metas.iter().map(|meta| meta.size).sum();
    let mut count = 0;
    for meta in closed {
        if !expired(meta, total) {
            return (count, meta.base_offset);
        }
        total -= meta.size;
        count += 1;
    }
    if active.size > 0 && expired(active, total) {
        (count + 1, active.next_offset)
    } else {
        (count, active.base_offset)
    }
}

fn retention(partition: &Partition, model: &mut Model, now_ms: i64) -> anyhow::Result<()> {
    let before = partition.segment_metas();
    let (count, log_start_offset) = expected_retention(&before, &partition.config(), now_ms);
    let deleted = partition.enforce_retention()?;
    ensure!(
        deleted == count,
        "retention deleted {deleted} segments, expected {count} of {before:?}"
    );
    ensure!(
        log_start_offset >= model.log_start_offset,
        "retention moved the log start back"
    );
    model
        .batches
        .retain(|batch| batch.base_offset >= log_start_offset);
    if let Some(first) = model.batches.first() {
        ensure!(
            first.base_offset == log_start_offset,
            "retention cut inside a batch: new start {log_start_offset}, first batch {}",
            first.base_offset
        );
    }
    model.log_start_offset = log_start_offset;
    Ok(())
}

/// Everything at or after `offset` goes, a straddling batch whole; below
/// the log start the log restarts empty at `offset`.
fn truncate_model(model: &mut Model, offset: i64) {
    if offset >= model.log_end_offset {
        return;
    }
    if offset < model.log_start_offset {
        model.batches.clear();
        model.log_start_offset = offset;
        model.log_end_offset = offset;
        return;
    }
    if let Some(cut) = model.containing(offset) {
        model.log_end_offset = model.batches[cut].base_offset;
        model.batches.truncate(cut);
    }
}

/// Checks one read against the model: whole batches starting with the one
/// holding `offset`, as many as fit in `max_bytes` (at least one) without
/// leaving its segment. Returns the offset after the last batch served.
fn check_read(
    partition: &Partition,
    model: &Model,
    offset: i64,
    max_bytes: usize,
) -> anyhow::Result<i64> {
    let result = partition.read(offset, max_bytes);
    if offset < model.log_start_offset || offset > model.log_end_offset {
        match result {
            Err(LogError::OffsetOutOfRange {
                offset: reported,
                log_start_offset,
                high_watermark,
            }) if reported == offset
                && log_start_offset == model.log_start_offset
                && high_watermark == model.log_end_offset =>
            {
                return Ok(offset)
            }
            other => bail!("read at {offset} outside the log returned {other:?}"),
        }
    }
    let read = result.with_context(|| format!("read at {offset}"))?;
    ensure!(
        read.high_watermark == model.log_end_offset
            && read.log_start_offset == model.log_start_offset,
        "read reported high watermark {} and log start {}",
        read.high_watermark,
        read.log_start_offset
    );
    let served = support::split(&read.records)?;
    let Some(first) = model.containing(offset) else {
        ensure!(served.is_empty(), "read at the end {offset} served records");
        return Ok(offset);
    };
    ensure!(!served.is_empty(), "read at {offset} served nothing");
    let mut bytes = 0;
    for (index, (header, served_bytes)) in served.iter().enumerate() {
        let expected = model
            .batches
            .get(first + index)
            .with_context(|| format!("read at {offset} served a batch past the model"))?;
        ensure!(
            *served_bytes == expected.bytes,
            "read at {offset}: batch {index} is {header:?}, expected base {}",
            expected.base_offset
        );
        check_values(served_bytes, expected)?;
        bytes += served_bytes.len();
    }
    let budget = max_bytes.max(model.batches[first].bytes.len());
    ensure!(
        bytes <= budget,
        "read at {offset} served {bytes} bytes of {budget}"
    );
    // Stopping early is allowed only at the end of a segment.
    if let Some(next) = model.batches.get(first + served.len()) {
        let metas = partition.segment_metas();
        let segment = |offset: i64| metas.iter().rposition(|meta| meta.base_offset <= offset);
        let same_segment = segment(next.base_offset) == segment(model.batches[first].base_offset);
        ensure!(
            !same_segment || bytes + next.bytes.len() > max_bytes,
            "read at {offset} with max_bytes {max_bytes} stopped after {bytes} bytes inside a segment"
        );
    }
    Ok(model.batches[first + served.len() - 1].last_offset + 1)
}

/// Decodes a served batch and compares offsets and values with the model.
fn check_values(served: &Bytes, expected: &ModelBatch) -> anyhow::Result<()> {
    let records = support::decode(served)?;
    let got: Vec<(i64, Option<Bytes>)> = records
        .into_iter()
        .map(|record| (record.offset, record.value))
        .collect();
    let want: Vec<(i64, Option<Bytes>)> = expected
        .values
        .iter()
        .enumerate()
        .map(|(index, value)| (expected.base_offset + index as i64, Some(value.clone())))
        .collect();
    ensure!(got == want, "decoded records differ from the model");
    Ok(())
}

/// The whole partition against the model: offsets, a read at every offset
/// and just outside the log, a chained read of everything, and the active
/// segment's index.
fn check(partition: &Partition, model: &Model) -> anyhow::Result<()> {
    ensure!(
        partition.log_start_offset() == model.log_start_offset,
        "log start {} != model {}",
        partition.log_start_offset(),
        model.log_start_offset
    );
    ensure!(
        partition.log_end_offset() == model.log_end_offset,
        "log end {} != model {}",
        partition.log_end_offset(),
        model.log_end_offset
    );
    ensure!(
        partition.high_watermark() == model.log_end_offset,
        "high watermark {} != model end {}",
        partition.high_watermark(),
        model.log_end_offset
    );
    check_read(partition, model, model.log_end_offset, 4096)?;
    check_read(partition, model, model.log_end_offset + 1, 4096)?;
    if model.log_start_offset > 0 {
        check_read(partition, model, model.log_start_offset - 1, 4096)?;
    }
    // Every offset, one batch at a time; then everything in larger reads.
    for offset in model.log_start_offset..model.log_end_offset {
        check_read(partition, model, offset, 0)?;
    }
    let mut offset = model.log_start_offset;
    while offset < model.log_end_offset {
        offset = check_read(partition, model, offset, 4096)?;
    }
    support::check_active_index(partition)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn partition_matches_model(setup in setup(), ops in prop::collection::vec(op(), 1..60)) {
        run(&setup, &ops).map_err(|error| TestCaseError::fail(format!("{error:#}")))?;
    }
}
