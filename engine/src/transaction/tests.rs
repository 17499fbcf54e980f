//! Recovery at the coordinator level: a data directory as a crash leaves
//! it while a transaction ends (the Prepare state durable in the
//! transaction log, the transaction's batches in its partitions, a marker
//! in some of them), opened again. Opening the coordinator must finish the
//! transaction in every partition before it serves anything, as
//! `sluice serve` opens it before its ready line.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::state::{PendingOffset, TransactionMetadata, TransactionRecord, TransactionState};
use super::store::TransactionLog;
use super::{TransactionConfig, TransactionCoordinator};
use crate::group::offsets::{Committed, OffsetStore};
use crate::group::{GroupConfig, GroupCoordinator};
use crate::log::batch::build;
use crate::log::transactions::Marker;
use crate::log::{Isolation, LogStore, ManualClock, StdIo, StoreOptions};

const START_MS: i64 = 1_700_000_000_000;
const TOPIC: &str = "ledger";
const PARTITIONS: i32 = 3;
/// Records the transaction wrote to each partition.
const RECORDS: usize = 2;
const PRODUCER_ID: i64 = 7;
const GROUP: &str = "readers";

/// A transactional batch of `RECORDS` records from `PRODUCER_ID`.
fn transactional_batch() -> bytes::BytesMut {
    let values: Vec<String> = (0..RECORDS).map(|index| format!("v{index}")).collect();
    let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    build::transactional(&values, PRODUCER_ID, 0, 0)
}

pub(super) fn open_store(dir: &Path, clock: &Arc<ManualClock>) -> Arc<LogStore> {
    let store = LogStore::open(dir, StoreOptions::default(), Arc::new(StdIo), clock.clone());
    Arc::new(store.expect("opening the store"))
}

/// `PRODUCER_ID`'s transaction over every partition, in `state`, with an
/// offset of `GROUP` pending.
fn prepared(state: TransactionState) -> TransactionMetadata {
    let mut meta = TransactionMetadata::new("t".into(), PRODUCER_ID, 60_000, START_MS);
    meta.state = state;
    meta.start_ms = START_MS;
    meta.partitions = (0..PARTITIONS).map(|p| (TOPIC.to_string(), p)).collect();
    meta.groups.insert(GROUP.into());
    meta.pending_offsets.push(PendingOffset {
        group: GROUP.into(),
        topic: "input".into(),
        partition: 0,
        committed: Committed {
            offset: 42,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: START_MS,
        },
    });
    meta
}

/// Leaves in `dir` what a crash while ending a transaction (`state`)
/// leaves: its batches in every partition, the Prepare state in the
/// transaction log, and the marker in partition 0 only.
fn crash_while_ending(dir: &Path, clock: &Arc<ManualClock>, state: TransactionState) {
    let store = open_store(dir, clock);
    store
        .create_topic(TOPIC, PARTITIONS, BTreeMap::new())
        .expect("creating the topic");
    for partition in 0..PARTITIONS {
        let partition = store.partition(TOPIC, partition).unwrap();
        partition.append(&transactional_batch()).expect("appending");
    }
    let (log, _) = TransactionLog::open(Arc::new(StdIo), &dir.join("transactions")).unwrap();
    log.append(&[TransactionRecord::Put(prepared(state))])
        .expect("writing the Prepare state");
    let marker = Marker {
        producer_id: PRODUCER_ID,
        producer_epoch: 0,
        commit: state == TransactionState::PrepareCommit,
        coordinator_epoch: 0,
    };
    let first = store.partition(TOPIC, 0).unwrap();
    let info = first
        .write_marker(&marker)
        .expect("writing the first marker");
    first
        .acknowledge_durable(&info)
        .expect("the marker is durable");
    store.close().expect("closing the store");
}

/// Opens the store and the coordinator over `dir` again, as a restart does.
pub(super) fn restart(
    dir: &Path,
    clock: &Arc<ManualClock>,
) -> (Arc<LogStore>, Arc<GroupCoordinator>, TransactionCoordinator) {
    let store = open_store(dir, clock);
    let offsets = OffsetStore::open(Arc::new(StdIo), &dir.join("groups")).unwrap();
    let groups = Arc::new(GroupCoordinator::new(
        GroupConfig::default(),
        clock.clone(),
        offsets,
    ));
    let coordinator = TransactionCoordinator::open(
        TransactionConfig::default(),
        clock.clone(),
        Arc::new(StdIo),
        dir,
        store.clone(),
        groups.clone(),
        Default::default(),
    )
    .expect("opening the coordinator");
    (store, groups, coordinator)
}

#[test]
fn opening_finishes_a_prepared_commit_in_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    crash_while_ending(dir.path(), &clock, TransactionState::PrepareCommit);

    let (store, groups, coordinator) = restart(dir.path(), &clock);

    let meta = coordinator.describe("t").expect("the id is known");
    assert_eq!(meta.state, TransactionState::CompleteCommit);
    assert!(meta.pending_offsets.is_empty());
    for index in 0..PARTITIONS {
        let partition = store.partition(TOPIC, index).unwrap();
        let (high_watermark, last_stable_offset) = partition.watermarks();
        assert!(
            high_watermark > RECORDS as i64,
            "[{index}]: a marker after the records"
        );
        assert_eq!(
            last_stable_offset, high_watermark,
            "[{index}]: nothing open"
        );
        let read = partition
            .read_isolated(0, 1 << 20, Isolation::ReadCommitted)
            .unwrap();
        assert!(
            !read.records.is_empty(),
            "[{index}]: the records are readable"
        );
        assert!(read.aborted.is_empty(), "[{index}]: {:?}", read.aborted);
    }
    let committed = groups.committed(GROUP);
    assert_eq!(
        committed[&("input".to_string(), 0)].offset,
        42,
        "the offsets commit with it"
    );
    assert!(coordinator.pending_partitions(GROUP).is_empty());
}

#[test]
fn opening_finishes_a_prepared_abort_in_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    crash_while_ending(dir.path(), &clock, TransactionState::PrepareAbort);

    let (store, groups, coordinator) = restart(dir.path(), &clock);

    let meta = coordinator.describe("t").expect("the id is known");
    assert_eq!(meta.state, TransactionState::CompleteAbort);
    for index in 0..PARTITIONS {
        let partition = store.partition(TOPIC, index).unwrap();
        let (high_watermark, last_stable_offset) = partition.watermarks();
        assert_eq!(
            last_stable_offset, high_watermark,
            "[{index}]: nothing open"
        );
        let read = partition
            .read_isolated(0, 1 << 20, Isolation::ReadCommitted)
            .unwrap();
        let aborted: Vec<_> = read
            .aborted
            .iter()
            .map(|a| (a.producer_id, a.first_offset))
            .collect();
        assert_eq!(
            aborted,
            [(PRODUCER_ID, 0)],
            "[{index}]: the records are aborted"
        );
    }
    assert!(
        groups.committed(GROUP).is_empty(),
        "an abort commits no offsets"
    );
    assert!(coordinator.pending_partitions(GROUP).is_empty());
}
