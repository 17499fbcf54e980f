//! What a task does when its entries hold every key it has, against a
//! real RocksDB: `clear_range` stages a range as a whole and commits it as
//! one range tombstone (key by key otherwise), and a key the entries do
//! not hold is absent without a read.

use std::sync::Arc;

use rocksdb::perf::PerfMetric;

use super::task::CLEARED_RANGES_MAX;
use super::tests::{
    below_from, family_property, keys_of, open, rocksdb_counted, task, task_without_value_cache,
};
use super::*;

/// RocksDB reads of any kind (point lookups and iterator seeks in the
/// memtables) on this thread while `f` runs.
fn rocksdb_reads<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let ((value, gets), seeks) = rocksdb_counted(PerfMetric::SeekOnMemtableCount, || {
        rocksdb_counted(PerfMetric::GetFromMemtableCount, f)
    });
    (value, gets + seeks)
}

/// `n` keys `{prefix}{i:05}` of `store`, value `1`, committed.
fn committed_keys(t: &mut TaskState, store: &[u8], prefix: &str, n: u32) {
    for i in 0..n {
        t.put(store, format!("{prefix}{i:05}").as_bytes(), b"1")
            .unwrap();
    }
    t.commit(b"m", false).unwrap();
}

/// Entries (puts, point deletes and range tombstones) and point deletes
/// in processor `p`'s active memtable.
fn memtable_counts(db: &Arc<StateDb>) -> (u64, u64) {
    (
        family_property(db, "rocksdb.num-entries-active-mem-table"),
        family_property(db, "rocksdb.num-deletes-active-mem-table"),
    )
}

/// Clears `counts` from `start` on in a call of its own and commits it,
/// leaving the task no key; returns the clear's RocksDB reads and the key
/// count's change it staged.
fn clear_to_the_end_and_commit(t: &mut TaskState, counts: &[u8], start: &[u8]) -> (u64, i64) {
    t.savepoint();
    let keys_before = t.keys_delta();
    let ((), reads) = rocksdb_reads(|| t.clear_range(counts, start, None).unwrap());
    let keys = t.keys_delta() - keys_before;
    t.release();
    t.commit(b"m", false).unwrap();
    assert_eq!(t.count_keys().unwrap(), 0);
    (reads, keys)
}

/// Task `t` (partition 0 of `p`) after a restart: a new task, its entries
/// empty, told it has `keys` committed keys (as recovery tells it).
fn restarted(db: &Arc<StateDb>, t: TaskState, keys: u64) -> TaskState {
    drop(t);
    let mut t = task(db, "p", 0);
    t.set_committed_keys(Some(keys));
    t
}

/// A fresh task (its entries hold every key it will have).
fn fresh(db: &Arc<StateDb>, partition: u32) -> (TaskState, Vec<u8>) {
    let mut t = task(db, "p", partition);
    t.set_committed_keys(Some(0));
    let counts = t.store("counts").unwrap();
    (t, counts)
}

/// Clears `[a, b)` of a task holding 3 000 `a` keys and 10 `b` keys, with
/// a staged write over an `a` key and a staged-only `a` key; checks what
/// the task reads, writes after the clear, and what commits. Returns the
/// RocksDB reads of the clear, and the point deletes and all entries the
/// commit put in the memtable.
fn clear_and_check(db: &Arc<StateDb>, t: &mut TaskState, counts: &[u8]) -> (u64, u64, u64) {
    committed_keys(t, counts, "a", 3_000);
    committed_keys(t, counts, "b", 10);
    t.savepoint();
    t.put(counts, b"a00002", b"2").unwrap();
    t.put(counts, b"a99999", b"1").unwrap();
    let keys_before = t.keys_delta();
    let ((), reads) = rocksdb_reads(|| t.clear_range(counts, b"a", Some(b"b")).unwrap());
    assert_eq!(t.keys_delta() - keys_before, -3_001, "keys cleared");
    for key in [&b"a00000"[..], b"a00002", b"a99999", b"a02999"] {
        assert_eq!(t.get(counts, key).unwrap(), None);
    }
    let asked = vec![b"a00001".to_vec(), b"b00001".to_vec(), b"a00003".to_vec()];
    assert_eq!(
        t.get_many(counts, &asked).unwrap(),
        vec![None, Some(b"1".to_vec()), None]
    );
    assert_eq!(t.scan(counts, b"", None, 100).unwrap().entries.len(), 10);
    // Written after the clear: there, and counted as new keys.
    t.put(counts, b"a00007", b"7").unwrap();
    assert_eq!(t.add(counts, b"a00008", 3).unwrap(), 3);
    assert_eq!(t.keys_delta() - keys_before, -2_999);
    let page = t.scan(counts, b"", Some(b"b"), 100).unwrap();
    assert_eq!(keys_of(&page), vec!["a00007", "a00008"]);
    t.release();
    let (entries_before, deletes_before) = memtable_counts(db);
    t.commit(b"m", false).unwrap();
    let (entries, deletes) = memtable_counts(db);
    assert_eq!(t.count_keys().unwrap(), 12);
    let committed = db.existing("p").unwrap();
    let now = committed.committed(0);
    assert_eq!(
        now.scan("counts", b"", None, 100).unwrap().entries.len(),
        12
    );
    assert_eq!(
        committed.get_committed(0, "counts", b"a00008").unwrap(),
        Some(b"3".to_vec())
    );
    assert_eq!(
        committed.get_committed(0, "counts", b"a00002").unwrap(),
        None
    );
    // After the commit RocksDB answers for the range.
    assert_eq!(t.get(counts, b"a00100").unwrap(), None);
    assert_eq!(t.get(counts, b"a00007").unwrap(), Some(b"7".to_vec()));
    (reads, deletes - deletes_before, entries - entries_before)
}

/// With every key in its entries, a clear reads nothing from RocksDB,
/// reads as empty at once (point reads, batches, scans), takes writes
/// after it, and commits as one range tombstone with no point delete,
/// leaving the keys outside it alone; the key count stays exact.
#[test]
fn a_clear_of_keys_the_task_holds_reads_nothing_and_commits_one_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (mut t, counts) = fresh(&db, 0);
    let (reads, deletes, entries) = clear_and_check(&db, &mut t, &counts);
    assert_eq!(reads, 0, "RocksDB reads by the clear");
    assert_eq!(deletes, 0, "point deletes committed");
    // Two puts, the metadata record and one range tombstone.
    assert_eq!(entries, 4, "entries committed");
}

/// A task whose entries may not hold every key (no value cache; a task
/// whose owner did not say how many keys it has) clears key by key, with
/// the same results.
#[test]
fn a_clear_of_keys_the_task_may_not_hold_deletes_key_by_key() {
    let (_dir, db, mut t, counts) = task_without_value_cache();
    t.set_committed_keys(Some(0));
    let (reads, deletes, _) = clear_and_check(&db, &mut t, &counts);
    assert!(reads > 0);
    // Every key the range held but the two written again after the clear.
    assert_eq!(deletes, 2_999, "point deletes committed");

    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    let (_, deletes, _) = clear_and_check(&db, &mut t, &counts);
    assert_eq!(deletes, 2_999);
}

/// After a restart the entries hold nothing: clears go key by key until
/// the entries hold every key again (read, written, or deleted since),
/// then by range.
#[test]
fn after_a_restart_clears_go_by_range_once_the_task_holds_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (mut t, counts) = fresh(&db, 0);
    committed_keys(&mut t, &counts, "a", 100);
    committed_keys(&mut t, &counts, "b", 100);
    let mut t = restarted(&db, t, 200);
    // Touch the b keys only.
    t.savepoint();
    for i in 0..100 {
        t.add(&counts, format!("b{i:05}").as_bytes(), 1).unwrap();
    }
    let ((), reads) = rocksdb_reads(|| t.clear_range(&counts, b"a", Some(b"b")).unwrap());
    assert!(reads > 0, "the a keys were not held: read to be counted");
    assert_eq!(t.keys_delta(), -100);
    t.release();
    t.commit(b"m", false).unwrap();
    let (reads, keys) = clear_to_the_end_and_commit(&mut t, &counts, b"b");
    assert_eq!(reads, 0, "every key held: cleared as a range");
    assert_eq!(keys, -100);
}

/// A call that cleared a range and fails leaves everything as it was:
/// values, staged writes from before it, the key count, and what the
/// task caches (its writes under the range learned "nothing there" from
/// the clear, which no longer holds).
#[test]
fn a_rolled_back_clear_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (mut t, counts) = fresh(&db, 0);
    committed_keys(&mut t, &counts, "a", 100);
    t.savepoint();
    t.put(&counts, b"a00001", b"staged").unwrap();
    t.release();
    let keys_before = t.keys_delta();
    t.savepoint();
    let ((), reads) = rocksdb_reads(|| t.clear_range(&counts, b"a", None).unwrap());
    assert_eq!(reads, 0);
    t.put(&counts, b"a00005", b"5").unwrap();
    t.add(&counts, b"a00006", 1).unwrap();
    assert_eq!(t.get(&counts, b"a00009").unwrap(), None);
    t.rollback();
    assert_eq!(t.keys_delta(), keys_before);
    assert_eq!(t.get(&counts, b"a00001").unwrap(), Some(b"staged".to_vec()));
    assert_eq!(t.get(&counts, b"a00005").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.get(&counts, b"a00006").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.add(&counts, b"a00006", 1).unwrap(), 2);
    assert_eq!(
        t.scan(&counts, b"", None, 1_000).unwrap().entries.len(),
        100
    );
    t.commit(b"m", false).unwrap();
    assert_eq!(t.count_keys().unwrap(), 100);
    let committed = db.existing("p").unwrap();
    assert_eq!(
        committed.get_committed(0, "counts", b"a00001").unwrap(),
        Some(b"staged".to_vec())
    );
    assert_eq!(
        committed.get_committed(0, "counts", b"a00005").unwrap(),
        Some(b"1".to_vec())
    );
    // What the rolled-back clear took out of the entries is not back: the
    // next clear reads the range to count it.
    let (reads, keys) = clear_to_the_end_and_commit(&mut t, &counts, b"a");
    assert!(reads > 0);
    assert_eq!(keys, -100);
}

/// A clear kept by its call stays when a later call fails, and an
/// aborted transaction forgets it.
#[test]
fn a_kept_clear_outlives_a_later_rollback_and_not_a_discard() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (mut t, counts) = fresh(&db, 0);
    committed_keys(&mut t, &counts, "a", 50);
    t.savepoint();
    t.clear_range(&counts, b"a", None).unwrap();
    t.release();
    t.savepoint();
    t.put(&counts, b"a00003", b"3").unwrap();
    t.rollback();
    assert_eq!(t.get(&counts, b"a00003").unwrap(), None);
    assert_eq!(t.scan(&counts, b"", None, 100).unwrap().entries, Vec::new());
    t.discard();
    assert_eq!(t.get(&counts, b"a00003").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.scan(&counts, b"", None, 100).unwrap().entries.len(), 50);
    clear_to_the_end_and_commit(&mut t, &counts, b"a");
}

/// Past `CLEARED_RANGES_MAX` ranges in a commit, and for a task with a
/// changelog (which records every deleted key), a clear deletes key by
/// key: the same state either way.
#[test]
fn clears_past_the_bound_or_with_a_changelog_go_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (mut t, counts) = fresh(&db, 0);
    let ranges = CLEARED_RANGES_MAX as u32 + 4;
    for range in 0..ranges {
        committed_keys(&mut t, &counts, &format!("r{range:03}-"), 3);
    }
    t.savepoint();
    for range in 0..ranges {
        let start = format!("r{range:03}-");
        let end = format!("r{range:03}.");
        t.clear_range(&counts, start.as_bytes(), Some(end.as_bytes()))
            .unwrap();
    }
    t.release();
    let (entries_before, deletes_before) = memtable_counts(&db);
    t.commit(b"m", false).unwrap();
    let (entries, deletes) = memtable_counts(&db);
    assert_eq!(
        deletes - deletes_before,
        3 * 4,
        "the last 4 ranges key by key"
    );
    assert_eq!(
        entries - entries_before,
        CLEARED_RANGES_MAX as u64 + 3 * 4 + 1,
        "a tombstone per range before, the deletes and the metadata record"
    );
    assert_eq!(t.count_keys().unwrap(), 0);

    let (logged, _) = fresh(&db, 1);
    let mut logged = logged.clear_key_by_key();
    let counts = logged.store("counts").unwrap();
    committed_keys(&mut logged, &counts, "a", 5);
    logged.savepoint();
    logged.clear_range(&counts, b"a", None).unwrap();
    logged.release();
    let deletes: Vec<_> = logged
        .staged_changes()
        .map(|(_, value)| value.is_none())
        .collect();
    assert_eq!(deletes, vec![true; 5], "a changelog record per deleted key");
}

/// Random puts, deletes, counter adds, reads, scans and clears, in calls
/// kept or rolled back, commits and restarts, against a model: every read
/// answers the model's value, the key count is the model's after every
/// call, and every commit holds exactly the model's entries. With a cache
/// of a few dozen entries (evicting) as well as a large one, so clears
/// take both paths.
#[test]
fn clears_among_random_work_match_a_model() {
    use std::collections::BTreeMap;
    let (mut range_clears, mut clears) = (0, 0);
    for (seed, cache_bytes) in [(1_u64, 32 << 20), (2, 32 << 20), (3, 6_000), (4, 6_000)] {
        let dir = tempfile::tempdir().unwrap();
        let config = StateConfig {
            value_cache_bytes_max: cache_bytes,
            ..StateConfig::default()
        };
        let db = StateDb::open(dir.path(), &config).unwrap();
        let restart = |keys: usize| {
            let mut t = TaskState::new(db.processor("p").unwrap(), 0);
            t.set_committed_keys(Some(keys as u64));
            t
        };
        let mut t = restart(0);
        let counts = t.store("counts").unwrap();
        let mut below = below_from(seed);
        let key = |n: u64| format!("{n:02}").into_bytes();
        let mut committed: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut model = committed.clone();
        for _ in 0..2_000 {
            t.savepoint();
            let before = model.clone();
            for _ in 0..=below(8) {
                let k = key(below(60));
                match below(10) {
                    0..=2 => {
                        let value = below(1_000).to_string().into_bytes();
                        t.put(&counts, &k, value.clone()).unwrap();
                        model.insert(k, value);
                    }
                    3 => {
                        t.delete(&counts, &k).unwrap();
                        model.remove(&k);
                    }
                    4 => {
                        let old: i64 = model
                            .get(&k)
                            .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                        assert_eq!(t.add(&counts, &k, 1).unwrap(), old + 1);
                        model.insert(k, (old + 1).to_string().into_bytes());
                    }
                    5 | 6 => {
                        let (a, b) = (below(61), below(61));
                        let (start, end) = (key(a.min(b)), key(a.max(b)));
                        let end = (a != b || below(2) == 0).then_some(end);
                        let ((), reads) = rocksdb_reads(|| {
                            t.clear_range(&counts, &start, end.as_deref()).unwrap()
                        });
                        clears += 1;
                        range_clears += u32::from(reads == 0);
                        model.retain(|k, _| *k < start || end.as_ref().is_some_and(|end| k >= end));
                    }
                    7 => assert_eq!(t.get(&counts, &k).unwrap().as_ref(), model.get(&k)),
                    8 => {
                        let asked = vec![k.clone(), key(below(60))];
                        let expected: Vec<_> =
                            asked.iter().map(|k| model.get(k).cloned()).collect();
                        assert_eq!(t.get_many(&counts, &asked).unwrap(), expected);
                    }
                    _ => {
                        let page = t.scan(&counts, b"", None, 100).unwrap();
                        let expected: Vec<_> =
                            model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                        assert_eq!(page.entries, expected);
                    }
                }
            }
            if below(8) == 0 {
                t.rollback();
                model = before;
            } else {
                t.release();
            }
            let keys = committed.len() as i64 + t.keys_delta();
            assert_eq!(keys, model.len() as i64, "the key count (seed {seed})");
            if below(4) == 0 {
                t.commit(b"m", false).unwrap();
                committed = model.clone();
                let processor = db.existing("p").unwrap();
                let now = processor.committed(0);
                let page = now.scan("counts", b"", None, 100).unwrap();
                let expected: Vec<_> = committed
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(page.entries, expected, "committed (seed {seed})");
            }
            if below(40) == 0 {
                drop(t);
                t = restart(committed.len());
                model = committed.clone();
            }
        }
    }
    assert!(
        range_clears > 0 && range_clears < clears,
        "{range_clears} of {clears} by range"
    );
}

/// `f` with the debug builds' check of every key answered absent without
/// a read (a read itself) off on this thread.
fn without_absent_check<T>(f: impl FnOnce() -> T) -> T {
    super::task::CHECK_ABSENT.with(|check| check.set(false));
    let value = f();
    super::task::CHECK_ABSENT.with(|check| check.set(true));
    value
}

/// While a task's entries hold every key it has, a key they do not hold
/// is absent: point reads, batch reads, counters and writes of new keys
/// read nothing from RocksDB (a new window's first count). After a
/// restart, and with a cache smaller than the state, they read RocksDB and
/// find what it holds.
#[test]
fn new_keys_are_known_absent_without_a_read_while_the_task_holds_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (mut t, counts) = fresh(&db, 0);
    committed_keys(&mut t, &counts, "a", 1_000);
    let work = |t: &mut TaskState| {
        t.savepoint();
        assert_eq!(t.get(&counts, b"new1").unwrap(), None);
        let many = t
            .get_many(&counts, &[b"new2".to_vec(), b"a00007".to_vec()])
            .unwrap();
        assert_eq!(many, vec![None, Some(b"1".to_vec())]);
        t.put(&counts, b"new3", b"x").unwrap();
        assert_eq!(t.add(&counts, b"new4", 2).unwrap(), 2);
        t.release();
    };
    let ((), reads) = without_absent_check(|| rocksdb_reads(|| work(&mut t)));
    assert_eq!(reads, 0, "every key held: new keys answered without a read");
    assert_eq!(t.keys_delta(), 2);
    t.commit(b"m", false).unwrap();
    assert_eq!(t.count_keys().unwrap(), 1_002);

    // After a restart nothing is held: reads go to RocksDB, and find what
    // the commit wrote.
    let mut t = restarted(&db, t, 1_002);
    let (value, reads) = rocksdb_reads(|| t.get(&counts, b"new3").unwrap());
    assert_eq!((value.as_deref(), reads > 0), (Some(&b"x"[..]), true));
    let (value, reads) = rocksdb_reads(|| t.get(&counts, b"new5").unwrap());
    assert_eq!((value, reads > 0), (None, true));

    // A cache that holds nothing never holds every key.
    let (_dir, _db, mut t, counts) = task_without_value_cache();
    t.set_committed_keys(Some(0));
    committed_keys(&mut t, &counts, "a", 10);
    let (value, reads) = rocksdb_reads(|| t.get(&counts, b"a00003").unwrap());
    assert_eq!((value.as_deref(), reads > 0), (Some(&b"1"[..]), true));
    let ((), reads) = without_absent_check(|| rocksdb_reads(|| work(&mut t)));
    assert!(reads > 0);
}

/// The check behind the shortcut is live in the tests' builds: a task told
/// a wrong key count (none, while RocksDB holds 10) answers a key absent
/// without reading, and the check finds the key in RocksDB.
#[test]
#[should_panic(expected = "absent without reading it, but RocksDB holds it")]
fn a_key_answered_absent_is_checked_against_rocksdb_in_debug_builds() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (mut t, counts) = fresh(&db, 0);
    committed_keys(&mut t, &counts, "a", 10);
    let mut t = restarted(&db, t, 0);
    let _ = t.get(&counts, b"a00001");
}
