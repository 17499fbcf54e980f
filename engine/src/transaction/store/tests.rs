//! The transaction log on disk: reopen, the bytes, torn tails, damaged
//! records, undecodable records, the record bound, fsync poisoning,
//! compaction with appends meanwhile, the snapshot size it tracks.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::log::{FaultIo, Faults, StdIo};
use crate::transaction::state::TransactionState;

type State = BTreeMap<String, TransactionMetadata>;

/// `id` at producer epoch `epoch`, in a transaction over `partitions`
/// partitions.
fn metadata(id: &str, epoch: i16, partitions: i32) -> TransactionMetadata {
    let mut metadata = TransactionMetadata::new(id.into(), 1000, 60_000, 1);
    metadata.producer_epoch = epoch;
    metadata.state = TransactionState::Ongoing;
    metadata.start_ms = 2;
    metadata.partitions = (0..partitions).map(|p| ("orders".into(), p)).collect();
    metadata
}

fn put(metadata: &TransactionMetadata) -> TransactionRecord {
    TransactionRecord::Put(metadata.clone())
}

fn remove(id: &str) -> TransactionRecord {
    TransactionRecord::Remove {
        transactional_id: id.into(),
    }
}

fn open(dir: &Path) -> (TransactionLog, State) {
    TransactionLog::open(Arc::new(StdIo), dir).unwrap()
}

fn path(dir: &Path) -> std::path::PathBuf {
    dir.join(FILE_NAME)
}

fn file_len(dir: &Path) -> u64 {
    std::fs::metadata(path(dir)).unwrap().len()
}

/// A state holding `entries`.
fn state_of(entries: &[&TransactionMetadata]) -> State {
    entries
        .iter()
        .map(|metadata| (metadata.transactional_id.clone(), (*metadata).clone()))
        .collect()
}

#[test]
fn the_log_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<TransactionLog>();
}

#[test]
fn puts_and_removes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, b) = (
        metadata("a", 0, 1),
        metadata("a", 1, 3),
        metadata("b", 0, 2),
    );
    {
        let (log, state) = open(dir.path());
        assert!(state.is_empty());
        log.append(&[put(&a1)]).unwrap();
        log.append(&[put(&b), put(&a2)]).unwrap();
        log.append(&[remove("b"), remove("never-there")]).unwrap();
    }
    let (log, state) = open(dir.path());
    assert_eq!(state, state_of(&[&a2]));
    log.append(&[put(&b)]).unwrap();
    drop(log);
    assert_eq!(open(dir.path()).1, state_of(&[&a2, &b]));
}

/// The bytes on disk, pinned: the file header, then one record (magic,
/// length, CRC-32C of length and payload, JSON payload).
#[test]
fn the_bytes_on_disk_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).0.append(&[remove("t")]).unwrap();
    let payload = br#"{"type":"remove","transactional_id":"t"}"#;
    let mut expected = b"SLUTXN\x00\x01".to_vec();
    expected.extend_from_slice(&[0xFF, 0x54, 0x58, 0xFE]);
    expected.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    expected.extend_from_slice(&0xFE6B_B821_u32.to_be_bytes());
    expected.extend_from_slice(payload);
    assert_eq!(std::fs::read(path(dir.path())).unwrap(), expected);
}

#[test]
fn a_torn_tail_is_cut_and_later_appends_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (metadata("a", 0, 1), metadata("b", 0, 1));
    open(dir.path()).0.append(&[put(&a)]).unwrap();
    let whole = file_len(dir.path());
    // A crash mid-append leaves part of a record.
    let mut torn = Vec::new();
    FRAMING.encode_json(&put(&b), &mut torn).unwrap();
    let mut bytes = std::fs::read(path(dir.path())).unwrap();
    bytes.extend_from_slice(&torn[..torn.len() - 7]);
    std::fs::write(path(dir.path()), &bytes).unwrap();
    let (log, state) = open(dir.path());
    assert_eq!(state, state_of(&[&a]));
    assert_eq!(file_len(dir.path()), whole, "the torn tail is cut");
    log.append(&[put(&b)]).unwrap();
    drop(log);
    assert_eq!(open(dir.path()).1, state_of(&[&a, &b]));
    assert!(!dir.path().join("transactions.log.damaged").exists());
}

/// A damaged record with valid ones after it is skipped: its id keeps its
/// earlier state, later records (other ids' and its own) are kept, and
/// the original file is kept beside the repaired one.
#[test]
fn a_damaged_record_is_skipped_later_ones_kept_and_the_original_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, b, c) = (
        metadata("a", 0, 1),
        metadata("a", 1, 1),
        metadata("b", 0, 1),
        metadata("c", 0, 1),
    );
    let mut ends = Vec::new();
    {
        let (log, _) = open(dir.path());
        for record in [put(&a1), put(&b), put(&a2), put(&c)] {
            log.append(&[record]).unwrap();
            ends.push(file_len(dir.path()) as usize);
        }
    }
    // A flipped bit in each of: a2's payload, then (separately) its length.
    let original = std::fs::read(path(dir.path())).unwrap();
    for damaged in [(ends[1] + ends[2]) / 2, ends[1] + 5] {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = original.clone();
        bytes[damaged] ^= 0x40;
        std::fs::write(path(dir.path()), &bytes).unwrap();
        let (_, state) = open(dir.path());
        assert_eq!(state, state_of(&[&a1, &b, &c]), "byte {damaged}");
        let kept = std::fs::read(dir.path().join("transactions.log.damaged")).unwrap();
        assert_eq!(kept, bytes, "the damaged original is kept");
        // The damage is gone from the file: a clean reopen.
        let (_, state) = open(dir.path());
        assert_eq!(state, state_of(&[&a1, &b, &c]));
        assert!(std::fs::read(path(dir.path()))
            .unwrap()
            .starts_with(&FILE_HEADER));
    }
}

#[test]
fn a_record_with_a_valid_crc_that_does_not_decode_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path())
        .0
        .append(&[put(&metadata("a", 0, 1))])
        .unwrap();
    let mut bytes = std::fs::read(path(dir.path())).unwrap();
    let position = bytes.len();
    // A well-framed record of a kind this version does not know.
    let payload = br#"{"type":"from_the_future","transactional_id":"a"}"#;
    FRAMING.encode(payload, &mut bytes).unwrap();
    std::fs::write(path(dir.path()), &bytes).unwrap();
    let error = TransactionLog::open(Arc::new(StdIo), dir.path())
        .err()
        .expect("refuses");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    let message = error.to_string();
    assert!(
        message.contains("transactions.log") && message.contains(&format!("byte {position}")),
        "{message}"
    );
    assert_eq!(
        std::fs::read(path(dir.path())).unwrap(),
        bytes,
        "the file is left as it was"
    );
}

#[test]
fn a_failed_fsync_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let io = Arc::new(FaultIo::new(faults.clone()));
    let (log, _) = TransactionLog::open(io, dir.path()).unwrap();
    let (a0, a1, a2) = (
        metadata("a", 0, 1),
        metadata("a", 1, 1),
        metadata("a", 2, 1),
    );
    log.append(&[put(&a0)]).unwrap();
    faults.set_fail_sync(true);
    assert!(log.append(&[put(&a1)]).is_err());
    faults.set_fail_sync(false);
    let error = log.append(&[put(&a2)]).unwrap_err();
    assert!(error.to_string().contains("poisoned"), "{error}");
    let snapshot_bytes = log.sizes().snapshot_bytes();
    assert_eq!(
        snapshot_bytes,
        snapshot([a0.clone()]).unwrap().len() as u64,
        "refused records are not accounted"
    );
    assert!(
        !log.compact_if_due(&|| vec![a0.clone()]).unwrap(),
        "a poisoned log is not compacted"
    );
    drop(log);
    // a1 reached the page cache, maybe the disk: a restart reads what is
    // really there. a2 was never written.
    let (_, state) = open(dir.path());
    assert_ne!(state["a"], a2);
}

#[test]
fn an_oversized_record_is_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    let a = metadata("a", 0, 1);
    log.append(&[put(&a)]).unwrap();
    let before = file_len(dir.path());
    let mut huge = metadata("huge", 0, 1);
    huge.groups.insert("g".repeat(RECORD_PAYLOAD_BYTES_MAX));
    let b = metadata("b", 0, 1);
    let error = log.append(&[put(&b), put(&huge)]).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(
        file_len(dir.path()),
        before,
        "not even the record before it"
    );
    log.append(&[remove("a")]).unwrap();
    drop(log);
    assert!(open(dir.path()).1.is_empty());
}

/// The size the log tracks is what a snapshot takes, exactly, for records
/// this version wrote; also after a reopen.
#[test]
fn the_tracked_snapshot_size_is_a_snapshots_size() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    let (a, b, c) = (
        metadata("a", 0, 1),
        metadata("b", 3, 40),
        metadata("c", 0, 7),
    );
    log.append(&[put(&a), put(&b), put(&metadata("b", 4, 2))])
        .unwrap();
    log.append(&[put(&c), remove("a"), put(&b)]).unwrap();
    let expected = snapshot([b.clone(), c.clone()]).unwrap().len() as u64;
    assert_eq!(log.sizes().snapshot_bytes(), expected);
    drop(log);
    let (log, state) = open(dir.path());
    assert_eq!(state, state_of(&[&b, &c]));
    assert_eq!(log.sizes().snapshot_bytes(), expected);
}

/// Appends that make compaction due: `ids` ids, each rewritten `rounds`
/// times; returns the state.
fn grow(log: &TransactionLog, ids: usize, rounds: i16) -> State {
    let mut state = State::new();
    for round in 0..rounds {
        let records: Vec<TransactionRecord> = (0..ids)
            .map(|id| put(&metadata(&format!("t{id}"), round, 100)))
            .collect();
        log.append(&records).unwrap();
        for record in records {
            if let TransactionRecord::Put(metadata) = record {
                state.insert(metadata.transactional_id.clone(), metadata);
            }
        }
    }
    state
}

#[test]
fn compaction_shrinks_the_log_and_keeps_records_appended_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    let mut state = grow(&log, 10, 80);
    let before = file_len(dir.path());
    let newer = metadata("t0", 100, 1);
    // `live` runs without the log's locks: it stands for a coordinator
    // that appends while the snapshot is taken (the snapshot is the state
    // from before those appends).
    let live = || {
        log.append(&[put(&newer), remove("t1")]).unwrap();
        state.values().cloned().collect()
    };
    assert!(log.compact_if_due(&live).unwrap(), "due at {before} bytes");
    let after = file_len(dir.path());
    assert!(after * 10 < before, "{before} -> {after}");
    state.insert("t0".into(), newer.clone());
    state.remove("t1");
    assert!(
        !log.compact_if_due(&|| state.values().cloned().collect())
            .unwrap(),
        "not due right after"
    );
    // Appends go to the new file.
    let t2 = metadata("t2", 200, 1);
    log.append(&[put(&t2)]).unwrap();
    state.insert("t2".into(), t2);
    assert!(file_len(dir.path()) > after);
    drop(log);
    assert_eq!(open(dir.path()).1, state);
    assert!(!dir.path().join("transactions.log.compacting").exists());
}

/// A compaction whose rename went through but whose directory fsync
/// failed: records appended to the new file could vanish with the rename
/// in a power cut, so the log refuses them instead of acknowledging them.
#[test]
fn a_failed_directory_fsync_after_compaction_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let io = Arc::new(FaultIo::new(faults.clone()));
    let (log, _) = TransactionLog::open(io, dir.path()).unwrap();
    let state = grow(&log, 10, 80);
    faults.set_fail_sync_dir(true);
    assert!(log
        .compact_if_due(&|| state.values().cloned().collect())
        .is_err());
    faults.set_fail_sync_dir(false);
    assert!(
        log.append(&[remove("t0")]).is_err(),
        "an append after the failed compaction is refused, not acknowledged"
    );
    drop(log);
    assert_eq!(open(dir.path()).1, state);
}

/// One flipped bit in the file header must not lose the records after
/// it: they are read, the original is kept aside and the file rewritten.
#[test]
fn a_damaged_file_header_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (metadata("a", 0, 1), metadata("b", 0, 1));
    open(dir.path()).0.append(&[put(&a), put(&b)]).unwrap();
    let mut bytes = std::fs::read(path(dir.path())).unwrap();
    bytes[7] ^= 0x02;
    std::fs::write(path(dir.path()), &bytes).unwrap();
    assert_eq!(open(dir.path()).1, state_of(&[&a, &b]));
    let kept = std::fs::read(dir.path().join("transactions.log.damaged")).unwrap();
    assert_eq!(kept, bytes);
    assert!(std::fs::read(path(dir.path()))
        .unwrap()
        .starts_with(&FILE_HEADER));
    assert_eq!(open(dir.path()).1, state_of(&[&a, &b]));
}
