//! The coordinator's state machine on a real log store and group
//! coordinator in a temporary directory, with a manual clock: begin,
//! write, commit and abort; retried and misplaced EndTxns; fencing by a
//! new producer; the timeout abort.

use std::sync::Arc;

use super::{TransactionCoordinator, TransactionError};
use crate::log::batch::build;
use crate::log::transactions::AbortedTransaction;
use crate::log::{Isolation, LogStore, ManualClock};
use crate::transaction::state::TransactionState;

/// A transaction open in a partition that the coordinator does not know
/// (its record lost) would hold the LSO forever: opening aborts it.
#[test]
fn a_hanging_transaction_is_aborted_on_open() {
    let first = setup();
    let p0 = first.store.partition("t", 0).unwrap();
    p0.append(&build::transactional(&[b"lost"], 99, 3, 0))
        .unwrap();
    assert_eq!(p0.watermarks(), (1, 0));
    let Setup {
        _dir: dir,
        clock,
        store,
        coordinator,
    } = first;
    drop((coordinator, p0));
    store.close().unwrap();
    drop(store);
    let (store, _, _reopened) = super::tests::restart(dir.path(), &clock);
    let p0 = store.partition("t", 0).unwrap();
    assert_eq!(p0.watermarks(), (2, 2), "an abort marker ended it");
    let read = p0
        .read_isolated(0, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert_eq!(
        read.aborted,
        vec![AbortedTransaction {
            producer_id: 99,
            first_offset: 0,
            last_offset: 1
        }]
    );
}

struct Setup {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: Arc<LogStore>,
    coordinator: TransactionCoordinator,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    super::tests::open_store(dir.path(), &clock)
        .create_topic("t", 2, Default::default())
        .unwrap();
    let (store, _, coordinator) = super::tests::restart(dir.path(), &clock);
    Setup {
        _dir: dir,
        clock,
        store,
        coordinator,
    }
}

fn topic_partitions() -> Vec<(String, i32)> {
    vec![("t".to_string(), 0), ("t".to_string(), 1)]
}

/// Writes one transactional record to partition `index` through the
/// coordinator, as a Produce does.
fn write(
    setup: &Setup,
    id: &str,
    producer: (i64, i16),
    index: i32,
    sequence: i32,
) -> Result<(), TransactionError> {
    let partition = setup.store.partition("t", index).unwrap();
    let records = build::transactional(&[b"v"], producer.0, producer.1, sequence);
    setup
        .coordinator
        .write_transactional(id, &partition, producer, || {
            partition.write_batches(&records)
        })
        .map(|info| partition.acknowledge(&info).unwrap())
}

/// "tx" with a transaction open on t-0 holding one record (timeout
/// `timeout_ms`); its producer.
fn open_on_partition_0(setup: &Setup, timeout_ms: i32) -> (i64, i16) {
    let c = &setup.coordinator;
    let producer = c.init_producer_id("tx", timeout_ms, None).unwrap();
    c.add_partitions("tx", producer.0, producer.1, &topic_partitions()[..1])
        .unwrap();
    write(setup, "tx", producer, 0, 0).unwrap();
    producer
}

/// Changes "tx"'s state durably, as a step of the coordinator would.
fn set_state(
    c: &TransactionCoordinator,
    change: impl FnOnce(&mut super::state::TransactionMetadata),
) {
    let entry = c.entry("tx").unwrap();
    let mut meta = super::coordinator::lock(&entry);
    c.update(&mut meta, change).unwrap();
}

#[test]
fn commit_and_abort_end_in_every_partition() {
    let setup = setup();
    let c = &setup.coordinator;
    let producer = c.init_producer_id("tx", 60_000, None).unwrap();
    assert_eq!(producer.1, 0);
    c.add_partitions("tx", producer.0, producer.1, &topic_partitions())
        .unwrap();
    write(&setup, "tx", producer, 0, 0).unwrap();
    write(&setup, "tx", producer, 1, 0).unwrap();
    let p0 = setup.store.partition("t", 0).unwrap();
    assert_eq!(p0.watermarks(), (1, 0), "open: the LSO holds");
    c.end("tx", producer.0, producer.1, true).unwrap();
    assert_eq!(
        p0.watermarks(),
        (2, 2),
        "committed: marker written, LSO moved"
    );
    c.end("tx", producer.0, producer.1, true)
        .expect("a retried commit succeeds");
    assert!(matches!(
        c.end("tx", producer.0, producer.1, false),
        Err(TransactionError::InvalidState(_))
    ));
    // A second transaction, aborted.
    c.add_partitions("tx", producer.0, producer.1, &topic_partitions()[..1])
        .unwrap();
    write(&setup, "tx", producer, 0, 1).unwrap();
    c.end("tx", producer.0, producer.1, false).unwrap();
    let read = p0
        .read_isolated(0, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert_eq!(
        read.aborted,
        vec![AbortedTransaction {
            producer_id: producer.0,
            first_offset: 2,
            last_offset: 3
        }]
    );
    assert_eq!(
        c.describe("tx").unwrap().state,
        TransactionState::CompleteAbort
    );
}

#[test]
fn writes_need_the_partition_added_and_the_current_epoch() {
    let setup = setup();
    let c = &setup.coordinator;
    let producer = c.init_producer_id("tx", 60_000, None).unwrap();
    assert!(matches!(
        write(&setup, "tx", producer, 0, 0),
        Err(TransactionError::InvalidState(_))
    ));
    assert!(
        matches!(
            c.end("tx", producer.0, producer.1, true),
            Err(TransactionError::InvalidState(_))
        ),
        "EndTxn without a transaction"
    );
    c.add_partitions("tx", producer.0, producer.1, &topic_partitions()[..1])
        .unwrap();
    write(&setup, "tx", producer, 0, 0).unwrap();
    assert!(
        matches!(
            write(&setup, "tx", producer, 1, 0),
            Err(TransactionError::InvalidState(_))
        ),
        "partition 1 was not added"
    );
    // A new producer with the same id fences this one and aborts its write.
    let newer = c.init_producer_id("tx", 60_000, None).unwrap();
    assert_eq!((newer.0, newer.1), (producer.0, producer.1 + 1));
    assert!(matches!(
        write(&setup, "tx", producer, 0, 1),
        Err(TransactionError::ProducerFenced { .. })
    ));
    assert!(matches!(
        c.end("tx", producer.0, producer.1, true),
        Err(TransactionError::ProducerFenced { .. })
    ));
    let p0 = setup.store.partition("t", 0).unwrap();
    assert_eq!(
        p0.watermarks(),
        (2, 2),
        "the fenced transaction was aborted"
    );
    assert_eq!(
        p0.read_isolated(0, 1 << 20, Isolation::ReadCommitted)
            .unwrap()
            .aborted
            .len(),
        1
    );
    assert!(matches!(
        c.add_partitions("tx", 12345, newer.1, &topic_partitions()),
        Err(TransactionError::InvalidProducerIdMapping { .. })
    ));
}

#[test]
fn a_transaction_open_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let setup = setup();
    let c = &setup.coordinator;
    let producer = open_on_partition_0(&setup, 1_000);
    setup.clock.advance(999);
    c.tick();
    assert_eq!(c.describe("tx").unwrap().state, TransactionState::Ongoing);
    setup.clock.advance(2);
    c.tick();
    let meta = c.describe("tx").unwrap();
    assert_eq!(meta.state, TransactionState::CompleteAbort);
    assert_eq!(meta.producer_epoch, producer.1 + 1, "fenced");
    let p0 = setup.store.partition("t", 0).unwrap();
    assert_eq!(p0.watermarks(), (2, 2));
    assert!(matches!(
        c.end("tx", producer.0, producer.1, true),
        Err(TransactionError::ProducerFenced { .. })
    ));
}

#[test]
fn timeouts_above_the_maximum_are_refused() {
    let setup = setup();
    assert!(matches!(
        setup.coordinator.init_producer_id("tx", 900_001, None),
        Err(TransactionError::InvalidTimeout { .. })
    ));
    assert!(matches!(
        setup.coordinator.init_producer_id("", 1000, None),
        Err(TransactionError::InvalidTransactionalId)
    ));
}

/// A fenced producer retrying its own epoch bump (KIP-360) with its old
/// epoch must not be handed the epoch of the producer that fenced it.
#[test]
fn a_fenced_producer_cannot_retry_into_the_new_epoch() {
    let setup = setup();
    let c = &setup.coordinator;
    let old = c.init_producer_id("tx", 60_000, None).unwrap();
    let new = c.init_producer_id("tx", 60_000, None).unwrap();
    assert_eq!(new, (old.0, old.1 + 1));
    assert!(matches!(
        c.init_producer_id("tx", 60_000, Some(old)),
        Err(TransactionError::ProducerFenced { .. })
    ));
    // The current producer bumping its own epoch may retry that bump.
    let bumped = c.init_producer_id("tx", 60_000, Some(new)).unwrap();
    assert_eq!(bumped, (new.0, new.1 + 1));
    assert_eq!(c.init_producer_id("tx", 60_000, Some(new)).unwrap(), bumped);
}

/// At the last epoch a producer may have, a timeout still fences it (the
/// fence takes `i16::MAX`, which no producer is given), and the next
/// InitProducerId hands out a new producer id.
#[test]
fn the_last_epoch_is_still_fenced_and_then_a_new_producer_id_is_used() {
    let setup = setup();
    let c = &setup.coordinator;
    let first = c.init_producer_id("tx", 1_000, None).unwrap();
    {
        set_state(c, |next| next.producer_epoch = i16::MAX - 1);
    }
    let producer = (first.0, i16::MAX - 1);
    c.add_partitions("tx", producer.0, producer.1, &topic_partitions()[..1])
        .unwrap();
    write(&setup, "tx", producer, 0, 0).unwrap();
    setup.clock.advance(1_001);
    c.tick();
    assert_eq!(c.describe("tx").unwrap().producer_epoch, i16::MAX);
    assert!(matches!(
        c.add_partitions("tx", producer.0, producer.1, &topic_partitions()[1..]),
        Err(TransactionError::ProducerFenced { .. })
    ));
    let next = c.init_producer_id("tx", 1_000, None).unwrap();
    assert_ne!(next.0, first.0, "a new producer id");
    assert_eq!(next.1, 0);
}

/// The current producer bumping its own epoch while its transaction is open
/// (KIP-360, after an abortable error) aborts it, and may retry that bump.
#[test]
fn a_producer_bumping_its_own_epoch_mid_transaction_may_retry() {
    let setup = setup();
    let c = &setup.coordinator;
    let producer = open_on_partition_0(&setup, 60_000);
    let bumped = c.init_producer_id("tx", 60_000, Some(producer)).unwrap();
    assert_eq!(bumped, (producer.0, producer.1 + 1));
    assert_eq!(
        c.describe("tx").unwrap().state,
        TransactionState::CompleteAbort
    );
    assert_eq!(
        c.init_producer_id("tx", 60_000, Some(producer)).unwrap(),
        bumped,
        "a retry of the same bump"
    );
}

/// A partition that cannot take its marker (here: refused to open after a
/// restart) keeps the transaction prepared, but does not hold up the
/// markers, and so the LSO, of the transaction's other partitions.
#[test]
fn an_unavailable_partition_does_not_hold_up_the_others() {
    let setup = setup();
    let c = &setup.coordinator;
    // One batch per segment, so partition 1's first batch is in a closed
    // segment, which refuses to open when damaged.
    let overrides = [("segment.bytes".to_string(), "14".to_string())];
    setup
        .store
        .create_topic("s", 2, overrides.into_iter().collect())
        .unwrap();
    let producer = c.init_producer_id("tx", 60_000, None).unwrap();
    let partitions = vec![("s".to_string(), 0), ("s".to_string(), 1)];
    c.add_partitions("tx", producer.0, producer.1, &partitions)
        .unwrap();
    for (index, sequence) in [(0, 0), (1, 0), (1, 1)] {
        let partition = setup.store.partition("s", index).unwrap();
        let records = build::transactional(&[b"v"], producer.0, producer.1, sequence);
        c.write_transactional("tx", &partition, producer, || {
            partition.write_batches(&records)
        })
        .unwrap();
    }
    {
        set_state(c, |next| next.state = TransactionState::PrepareCommit);
    }
    let damaged = setup
        .store
        .partition("s", 1)
        .unwrap()
        .dir()
        .join(format!("{:020}.log", 0));
    let Setup {
        _dir: dir,
        clock,
        store,
        coordinator,
    } = setup;
    drop(coordinator);
    store.close().unwrap();
    drop(store);
    // A base offset far past the segment's range: the closed segment
    // refuses to open, and so does the partition.
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[0..8].copy_from_slice(&i64::MAX.to_be_bytes());
    std::fs::write(&damaged, bytes).unwrap();

    let (store, _, reopened) = super::tests::restart(dir.path(), &clock);
    assert!(
        store.partition("s", 1).is_err(),
        "partition 1 is unavailable"
    );
    let p0 = store.partition("s", 0).unwrap();
    assert_eq!(p0.watermarks(), (2, 2), "partition 0 got its marker");
    assert_eq!(
        reopened.describe("tx").unwrap().state,
        TransactionState::PrepareCommit,
        "still prepared until partition 1 is back"
    );
}
