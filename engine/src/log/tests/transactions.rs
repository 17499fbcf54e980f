//! A partition's transaction state (open transactions, the last stable
//! offset, aborted ranges) survives a restart: it is rebuilt from the log,
//! markers included, across segments; and compaction drops aborted
//! records while keeping the markers.

use crate::log::batch::build;
use crate::log::transactions::{AbortedTransaction, Marker};
use crate::log::{FlushPolicy, Isolation, Partition};

use super::support::Fixture;

fn marker(producer_id: i64, commit: bool) -> Marker {
    Marker {
        producer_id,
        producer_epoch: 0,
        commit,
        coordinator_epoch: 0,
    }
}

fn end(partition: &Partition, producer_id: i64, commit: bool) {
    let info = partition
        .write_marker(&marker(producer_id, commit))
        .unwrap();
    partition.acknowledge(&info).unwrap();
}

/// Producer 1 commits, producer 2 aborts, producer 3 stays open.
fn three_transactions(partition: &Partition) {
    partition
        .append(&build::transactional(&[b"a", b"b"], 1, 0, 0))
        .unwrap(); // 0, 1
    partition
        .append(&build::transactional(&[b"x"], 2, 0, 0))
        .unwrap(); // 2
    end(partition, 1, true); // 3
    partition
        .append(&build::transactional(&[b"y"], 2, 0, 1))
        .unwrap(); // 4
    end(partition, 2, false); // 5
    partition
        .append(&build::transactional(&[b"open"], 3, 0, 0))
        .unwrap(); // 6
}

#[test]
fn transaction_state_is_rebuilt_from_the_log_on_open() {
    let fixture = Fixture::new(FlushPolicy::Always);
    let expected_aborted = vec![AbortedTransaction {
        producer_id: 2,
        first_offset: 2,
        last_offset: 5,
    }];
    {
        let store = fixture.open().unwrap();
        store.create_topic("t", 1, Default::default()).unwrap();
        let partition = store.partition("t", 0).unwrap();
        three_transactions(&partition);
        assert_eq!(partition.watermarks(), (7, 6));
        let read = partition
            .read_isolated(0, 1 << 20, Isolation::ReadCommitted)
            .unwrap();
        assert_eq!(read.aborted, expected_aborted);
        assert_eq!(read.last_stable_offset, 6);
    }
    let store = fixture.open_std().unwrap();
    let partition = store.partition("t", 0).unwrap();
    assert_eq!(
        partition.watermarks(),
        (7, 6),
        "producer 3 still open after restart"
    );
    let read = partition
        .read_isolated(0, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert_eq!(read.aborted, expected_aborted, "aborted range rebuilt");
    assert_eq!(
        crate::log::batch::end_offset(&read.records),
        Some(6),
        "read_committed stops at the LSO"
    );
    // The open transaction can still be ended after the restart.
    end(&partition, 3, true);
    assert_eq!(partition.watermarks(), (8, 8));
    let read = partition
        .read_isolated(6, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert!(read.aborted.is_empty());
}

#[test]
fn a_marker_with_an_older_epoch_is_refused() {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = fixture.open().unwrap();
    store.create_topic("t", 1, Default::default()).unwrap();
    let partition = store.partition("t", 0).unwrap();
    partition
        .append(&build::transactional(&[b"a"], 1, 5, 0))
        .unwrap();
    let stale = Marker {
        producer_epoch: 4,
        ..marker(1, true)
    };
    assert!(matches!(
        partition.write_marker(&stale),
        Err(crate::log::LogError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(
        partition.watermarks(),
        (1, 0),
        "nothing written, still open"
    );
}

/// Compaction below the last stable offset: an aborted transaction's
/// batches go and supersede nothing, a committed one supersedes older
/// values, markers stay, and an open transaction is left alone.
#[test]
fn compaction_removes_aborted_records_and_keeps_markers() {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = fixture.open().unwrap();
    // One batch per segment, so everything but the last batch is closed.
    let overrides =
        super::support::overrides(&[("cleanup.policy", "compact"), ("segment.bytes", "14")]);
    store.create_topic("t", 1, overrides).unwrap();
    let partition = store.partition("t", 0).unwrap();
    let plain = |key: &str, value: &str| {
        let entry = (
            Some(key.as_bytes().to_vec()),
            Some(value.as_bytes().to_vec()),
            0,
        );
        partition
            .append(&build::batch(
                &[entry],
                kafka_protocol::records::Compression::None,
            ))
            .unwrap();
    };
    let txn = |producer_id, key: &str, value: &str| {
        let record = (Some(key.as_bytes()), value.as_bytes());
        partition
            .append(&build::transactional_keyed(&[record], producer_id, 0, 0))
            .unwrap();
    };
    plain("a", "v1"); // 0
    txn(2, "a", "aborted"); // 1
    end(&partition, 2, false); // 2
    plain("b", "b1"); // 3
    txn(3, "b", "b2"); // 4
    end(&partition, 3, true); // 5
    txn(4, "a", "open"); // 6
    plain("c", "c1"); // 7
    assert_eq!(partition.watermarks(), (8, 6));
    let stats = partition.compact().unwrap();
    assert_eq!(stats.records_removed, 2, "{stats:?}");
    let mut kept = Vec::new();
    let mut offset = 0;
    while offset < 8 {
        let read = partition.read(offset, 1 << 20).unwrap();
        let mut batches = read.records;
        while !batches.is_empty() {
            let header = crate::log::batch::BatchHeader::parse(&batches).unwrap();
            let one = batches.split_to(header.total_bytes());
            offset = header.next_offset();
            if header.is_control() {
                kept.push((header.base_offset, "marker".to_string()));
                continue;
            }
            for record in partition.decode_batch(&one).unwrap() {
                let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                kept.push((record.offset, value));
            }
        }
    }
    let expected: Vec<(i64, String)> = [
        (0, "v1"),
        (2, "marker"),
        (4, "b2"),
        (5, "marker"),
        (6, "open"),
        (7, "c1"),
    ]
    .iter()
    .map(|(offset, value)| (*offset, value.to_string()))
    .collect();
    assert_eq!(kept, expected);
}
