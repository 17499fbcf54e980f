//! A commit in flight (`TaskState::commit_started`): the task reads as if
//! it were written, its timers stay staged until it lands, and a read of
//! RocksDB that it changes waits for it.

use std::time::Duration;

use super::tests::{open, task, task_without_value_cache};
use super::*;

/// The keys of the event-time timers due by time 100.
fn due_keys(t: &mut TaskState) -> Vec<Vec<u8>> {
    t.due_timers(Domain::EventTime, 100, 10)
        .unwrap()
        .into_iter()
        .map(|timer| timer.key)
        .collect()
}

#[test]
fn a_task_reads_its_commit_in_flight_as_written_and_its_timers_unstage_when_it_lands() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let committed = db.processor("p").unwrap();
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    t.put(&counts, b"a", b"1").unwrap();
    t.schedule(Domain::EventTime, b"a", 10).unwrap();
    t.schedule(Domain::EventTime, b"b", 20).unwrap();
    t.commit(b"m0", true).unwrap();

    let gate = db.committer.gate.lock().unwrap();
    t.put(&counts, b"a", b"2").unwrap();
    t.cancel(Domain::EventTime, b"a", 10).unwrap();
    t.schedule(Domain::EventTime, b"c", 30).unwrap();
    t.commit_started(b"m1", true).unwrap();
    assert!(t.commit_landed(false).is_none(), "held in flight");
    // RocksDB does not have it yet; the task reads it.
    assert_eq!(
        committed.get_committed(0, "counts", b"a").unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(t.get(&counts, b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(due_keys(&mut t), vec![b"b".to_vec(), b"c".to_vec()]);
    // Written again after the commit started: stays staged after it lands.
    t.cancel(Domain::EventTime, b"b", 20).unwrap();

    drop(gate);
    assert!(matches!(t.commit_landed(true), Some(Ok(()))));
    assert!(t.commit_landed(true).is_none());
    assert_eq!(
        committed.get_committed(0, "counts", b"a").unwrap(),
        Some(b"2".to_vec())
    );
    assert!(
        t.has_staged(),
        "the cancel of b since the start stays staged"
    );
    assert_eq!(due_keys(&mut t), vec![b"c".to_vec()]);
    t.commit(b"m2", true).unwrap();
    assert!(!t.has_staged());
    // What RocksDB holds after a restart: both commits.
    drop(t);
    let mut t = task(&db, "p", 0);
    assert_eq!(t.get(&counts, b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(t.next_timer(Domain::EventTime).unwrap(), Some(30));
    assert_eq!(t.meta().unwrap(), Some(b"m2".to_vec()));
}

/// Holds `db`'s commits in flight for a while from when it returns (see
/// the test below); join the handle to wait for the end.
fn gate_for_a_while(db: &std::sync::Arc<StateDb>) -> std::thread::JoinHandle<()> {
    let (locked, is_locked) = std::sync::mpsc::channel();
    let gated = db.clone();
    let release = std::thread::spawn(move || {
        let _gate = gated.committer.gate.lock().unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    is_locked.recv().unwrap();
    release
}

/// With no value cache every read of a store key goes to RocksDB: one made
/// while a commit is in flight waits for it instead of reading the value
/// before it. (The commit is held long enough for a read to run ahead of
/// it: the test passes either way when reads wait, and fails without the
/// wait unless a read is slower than that.)
#[test]
fn a_read_of_rocksdb_waits_for_the_commit_in_flight() {
    let (_dir, db, mut t, counts) = task_without_value_cache();
    t.put(&counts, b"k", b"old").unwrap();
    t.commit(b"m0", true).unwrap();

    t.put(&counts, b"k", b"new").unwrap();
    let release = gate_for_a_while(&db);
    t.commit_started(b"m1", true).unwrap();
    assert_eq!(t.get(&counts, b"k").unwrap(), Some(b"new".to_vec()));
    release.join().unwrap();
    assert!(matches!(t.commit_landed(false), Some(Ok(()))));

    t.put(&counts, b"k", b"newer").unwrap();
    let release = gate_for_a_while(&db);
    t.commit_started(b"m2", true).unwrap();
    assert_eq!(
        t.get_many(&counts, &[b"k".to_vec()]).unwrap(),
        vec![Some(b"newer".to_vec())]
    );
    release.join().unwrap();
    assert!(matches!(t.commit_landed(false), Some(Ok(()))));
}

/// A task dropped with a commit in flight waits for it: the task started
/// again on the partition finds it.
#[test]
fn a_task_dropped_with_a_commit_in_flight_leaves_it_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    t.put(&counts, b"k", b"1").unwrap();
    t.commit_started(b"m1", true).unwrap();
    drop(t);
    let mut t = task(&db, "p", 0);
    assert_eq!(t.meta().unwrap(), Some(b"m1".to_vec()));
    assert_eq!(t.get(&counts, b"k").unwrap(), Some(b"1".to_vec()));
}
