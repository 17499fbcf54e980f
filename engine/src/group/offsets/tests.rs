//! The offsets store on disk: reopen, torn tails, damaged records, format 1
//! migration, the record bound, compaction, fsync poisoning.

use std::sync::Arc;

use super::format::{encode, encode_v1, OffsetRecord, FILE_HEADER};
use super::*;
use crate::log::{FaultIo, Faults, StdIo};

/// Offset `offset` committed for partition `t`/`partition`.
fn at(partition: i32, offset: i64) -> PartitionOffset {
    PartitionOffset {
        topic: "t".into(),
        partition,
        committed: Committed {
            offset,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp_ms: 1,
        },
    }
}

fn open(dir: &Path) -> OffsetStore {
    OffsetStore::open(Arc::new(StdIo), dir).unwrap()
}

fn offset(store: &OffsetStore, group: &str, partition: i32) -> Option<i64> {
    let partitions = store.group(group)?;
    partitions
        .get(&("t".to_string(), partition))
        .map(|c| c.offset)
}

fn file_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("offsets.log")).unwrap().len()
}

#[test]
fn commits_survive_reopen_and_torn_tails_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.commit("g", vec![at(0, 5), at(1, 7)]).unwrap();
        store.commit("g", vec![at(0, 9)]).unwrap();
        store.commit("h", vec![at(0, 1)]).unwrap();
        store.delete_group("h").unwrap();
    }
    // A crash mid-append leaves part of a record.
    let path = dir.path().join("offsets.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = bytes.len();
    let mut torn = Vec::new();
    encode(&OffsetRecord::DeleteGroup { group: "g".into() }, &mut torn).unwrap();
    bytes.extend_from_slice(&torn[..14]);
    std::fs::write(&path, &bytes).unwrap();
    let store = open(dir.path());
    assert_eq!(offset(&store, "g", 0), Some(9));
    assert_eq!(offset(&store, "g", 1), Some(7));
    assert!(store.group("h").is_none());
    assert_eq!(file_len(dir.path()), whole as u64);
}

#[test]
fn a_damaged_record_is_skipped_and_later_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut ends = Vec::new();
    {
        let store = open(dir.path());
        for (group, value) in [("a", 1), ("b", 2), ("c", 3)] {
            store.commit(group, vec![at(0, value)]).unwrap();
            ends.push(file_len(dir.path()) as usize);
        }
    }
    let path = dir.path().join("offsets.log");
    // Flip a byte in each of: b's payload, then (separately) b's length.
    for damaged in [(ends[0] + ends[1]) / 2, ends[0] + 5] {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[damaged] ^= 0x40;
        let dir2 = tempfile::tempdir().unwrap();
        std::fs::write(dir2.path().join("offsets.log"), &bytes).unwrap();
        let store = open(dir2.path());
        assert_eq!(offset(&store, "a", 0), Some(1), "byte {damaged}");
        assert_eq!(offset(&store, "b", 0), None, "byte {damaged}");
        assert_eq!(offset(&store, "c", 0), Some(3), "byte {damaged}");
        // The damage is gone from the file: a clean reopen.
        drop(store);
        let store = open(dir2.path());
        assert_eq!(offset(&store, "c", 0), Some(3));
    }
}

#[test]
fn a_format_1_file_is_migrated_and_its_damage_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let commit = |group: &str, offset| OffsetRecord::Commit {
        group: group.into(),
        topic: "t".into(),
        partition: 0,
        committed: at(0, offset).committed,
    };
    let mut bytes = encode_v1(&commit("a", 1));
    let second = bytes.len();
    bytes.extend(encode_v1(&commit("b", 2)));
    bytes.extend(encode_v1(&commit("c", 3)));
    bytes[second + 20] ^= 1;
    std::fs::write(dir.path().join("offsets.log"), &bytes).unwrap();
    let store = open(dir.path());
    assert_eq!(offset(&store, "a", 0), Some(1));
    assert_eq!(offset(&store, "b", 0), None);
    assert_eq!(offset(&store, "c", 0), Some(3));
    drop(store);
    let bytes = std::fs::read(dir.path().join("offsets.log")).unwrap();
    assert!(bytes.starts_with(&FILE_HEADER), "rewritten in format 2");
    assert_eq!(offset(&open(dir.path()), "c", 0), Some(3));
}

#[test]
fn an_undecodable_record_with_a_valid_crc_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).commit("a", vec![at(0, 1)]).unwrap();
    let path = dir.path().join("offsets.log");
    let mut bytes = std::fs::read(&path).unwrap();
    // A well-framed record of a kind this version does not know.
    let payload = br#"{"type":"from_the_future"}"#;
    let length = (payload.len() as u32).to_be_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&length), payload);
    bytes.extend_from_slice(&[0xFF, 0x4F, 0x46, 0xFE]);
    bytes.extend_from_slice(&length);
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes.extend_from_slice(payload);
    std::fs::write(&path, &bytes).unwrap();
    let error = OffsetStore::open(Arc::new(StdIo), dir.path())
        .err()
        .expect("refuses");
    let message = error.to_string();
    assert!(
        message.contains("offsets.log") && message.contains("byte"),
        "{message}"
    );
}

#[test]
fn an_oversized_record_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.commit("g", vec![at(0, 1)]).unwrap();
    let before = file_len(dir.path());
    let long = "x".repeat(format::RECORD_PAYLOAD_BYTES_MAX);
    assert!(store.commit(&long, vec![at(0, 2)]).is_err());
    assert_eq!(file_len(dir.path()), before);
    store.commit("g", vec![at(0, 3)]).unwrap();
    drop(store);
    assert_eq!(offset(&open(dir.path()), "g", 0), Some(3));
}

#[test]
fn a_commit_appends_only_its_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let many: Vec<PartitionOffset> = (0..20_000).map(|p| at(p, 1)).collect();
    store.commit("big", many).unwrap();
    let before = file_len(dir.path());
    store.commit("small", vec![at(0, 1)]).unwrap();
    let grown = file_len(dir.path()) - before;
    assert!(grown < 200, "one small commit appended {grown} bytes");
}

#[test]
fn compaction_keeps_every_offset_and_later_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for round in 0..4 {
        let commits = (0..5_000).map(|p| at(p, round)).collect();
        store.commit("g", commits).unwrap();
    }
    store.commit("h", vec![at(0, 8)]).unwrap();
    store.delete_group("h").unwrap();
    let before = file_len(dir.path());
    assert!(store.compact_if_due().unwrap(), "due at {before} bytes");
    let after = file_len(dir.path());
    assert!(after * 3 < before, "{before} -> {after}");
    assert!(!store.compact_if_due().unwrap(), "not due right after");
    store.commit("g", vec![at(7, 100)]).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(offset(&store, "g", 0), Some(3));
    assert_eq!(offset(&store, "g", 7), Some(100));
    assert_eq!(offset(&store, "g", 4_999), Some(3));
    assert!(store.group("h").is_none());
}

#[test]
fn a_failed_fsync_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let io = Arc::new(FaultIo::new(faults.clone()));
    let store = OffsetStore::open(io, dir.path()).unwrap();
    store.commit("g", vec![at(0, 1)]).unwrap();
    faults.set_fail_sync(true);
    assert!(store.commit("g", vec![at(0, 2)]).is_err());
    faults.set_fail_sync(false);
    assert!(store.commit("g", vec![at(0, 3)]).is_err(), "still poisoned");
    assert_eq!(offset(&store, "g", 0), Some(1));
}

/// A compaction whose rename went through but whose directory fsync
/// failed: the rename may not survive a power cut, so commits appended
/// after it (to the new file) could vanish with it. The store refuses
/// them instead of acknowledging them; what it had stays readable.
#[test]
fn a_failed_directory_fsync_after_compaction_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let io = Arc::new(FaultIo::new(faults.clone()));
    let store = OffsetStore::open(io, dir.path()).unwrap();
    // Over 1 MiB of log for one live entry: compaction is due.
    let mut commit = at(0, 0);
    commit.committed.metadata = "m".repeat(4000);
    for offset in 0..300 {
        commit.committed.offset = offset;
        store.commit("g", vec![commit.clone()]).unwrap();
    }
    faults.set_fail_sync_dir(true);
    assert!(
        store.compact_if_due().is_err(),
        "the directory fsync failed"
    );
    faults.set_fail_sync_dir(false);
    assert!(
        store.commit("g", vec![at(0, 1000)]).is_err(),
        "a commit after the failed compaction is refused, not acknowledged"
    );
    assert_eq!(offset(&store, "g", 0), Some(299));
    drop(store);
    assert_eq!(offset(&open(dir.path()), "g", 0), Some(299));
}

/// One flipped bit in the 8-byte file header must not make every record
/// unreadable (the file taken for format 1 and cut to nothing): the
/// records are read as format 2, and the original is kept aside.
#[test]
fn a_damaged_file_header_keeps_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.commit("a", vec![at(0, 7)]).unwrap();
    store.commit("b", vec![at(1, 9)]).unwrap();
    drop(store);
    let path = dir.path().join("offsets.log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let store = open(dir.path());
    assert_eq!(offset(&store, "a", 0), Some(7));
    assert_eq!(offset(&store, "b", 1), Some(9));
    assert_eq!(
        std::fs::read(dir.path().join("offsets.log.damaged")).unwrap(),
        bytes,
        "the damaged original is kept"
    );
    drop(store);
    let store = open(dir.path());
    assert_eq!(offset(&store, "b", 1), Some(9), "and the repair is durable");
}

/// The bytes on disk, pinned: the file header, then one commit record
/// (magic, length, CRC-32C of length and payload, JSON payload).
#[test]
fn the_format_2_bytes_on_disk_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).commit("g", vec![at(3, 5)]).unwrap();
    let bytes = std::fs::read(dir.path().join("offsets.log")).unwrap();
    let payload = br#"{"type":"commit","group":"g","topic":"t","partition":3,"offset":5,"leader_epoch":-1,"metadata":"m","commit_timestamp_ms":1}"#;
    let mut expected = b"SLUOFF\x00\x02".to_vec();
    expected.extend_from_slice(&[0xFF, 0x4F, 0x46, 0xFE]);
    expected.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    expected.extend_from_slice(&0x9B86_8707_u32.to_be_bytes());
    expected.extend_from_slice(payload);
    assert_eq!(bytes, expected);
}
