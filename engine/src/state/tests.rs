//! The state layer against a real RocksDB in a temporary folder.

use std::sync::Arc;

use rocksdb::perf::PerfMetric;

use super::*;

pub(super) fn open(dir: &std::path::Path) -> Arc<StateDb> {
    StateDb::open(dir, &StateConfig::default()).unwrap()
}

pub(super) fn task(db: &Arc<StateDb>, processor: &str, partition: u32) -> TaskState {
    let state = db.processor(processor).unwrap();
    TaskState::new(state, partition)
}

/// A random number below its argument each call (xorshift from `seed`):
/// the model tests' random work, the same for a seed every run.
pub(super) fn below_from(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut random = seed;
    move |n| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % n
    }
}

pub(super) fn keys_of(page: &Page) -> Vec<String> {
    page.entries
        .iter()
        .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
        .collect()
}

#[test]
fn staged_writes_are_read_back_and_reach_rocksdb_only_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    t.put(&counts, b"a", b"1").unwrap();
    assert_eq!(t.get(&counts, b"a").unwrap(), Some(b"1".to_vec()));
    let committed = db.existing("p").unwrap();
    assert_eq!(committed.get_committed(0, "counts", b"a").unwrap(), None);
    t.commit(b"meta-1", true).unwrap();
    assert_eq!(
        committed.get_committed(0, "counts", b"a").unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(t.meta().unwrap(), Some(b"meta-1".to_vec()));
    drop(t);
    drop(committed);
    drop(db);
    // Reopened: the commit is there, with its metadata.
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    assert_eq!(t.get(&counts, b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.meta().unwrap(), Some(b"meta-1".to_vec()));
    assert_eq!(db.processors(), vec!["p".to_string()]);
}

#[test]
fn a_rolled_back_call_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    t.add(&counts, b"k", 5).unwrap();
    t.commit(b"m", false).unwrap();
    t.savepoint();
    assert_eq!(t.add(&counts, b"k", 1).unwrap(), 6);
    t.put(&counts, b"new", b"x").unwrap();
    t.delete(&counts, b"k").unwrap();
    t.rollback();
    assert_eq!(t.get(&counts, b"k").unwrap(), Some(b"5".to_vec()));
    assert_eq!(t.get(&counts, b"new").unwrap(), None);
    t.savepoint();
    assert_eq!(t.add(&counts, b"k", 2).unwrap(), 7);
    t.release();
    t.commit(b"m", false).unwrap();
    assert_eq!(t.get(&counts, b"k").unwrap(), Some(b"7".to_vec()));
}

#[test]
fn counters_are_decimal_text_and_refuse_other_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    assert_eq!(t.add(&counts, b"c", -3).unwrap(), -3);
    assert_eq!(t.get(&counts, b"c").unwrap(), Some(b"-3".to_vec()));
    t.put(&counts, b"j", b"{}").unwrap();
    assert!(matches!(
        t.add(&counts, b"j", 1),
        Err(StateError::NotACounter(_))
    ));
    t.put(&counts, b"max", i64::MAX.to_string().into_bytes())
        .unwrap();
    assert!(matches!(
        t.add(&counts, b"max", 1),
        Err(StateError::CounterOverflow { .. })
    ));
}

#[test]
fn scans_merge_staged_writes_over_committed_state_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 3);
    let counts = t.store("counts").unwrap();
    let other = t.store("other").unwrap();
    for key in ["a", "b", "c", "d"] {
        t.put(&counts, key.as_bytes(), key.as_bytes()).unwrap();
    }
    t.put(&other, b"zz", b"not in counts").unwrap();
    t.commit(b"m", false).unwrap();
    // Staged over committed: a delete hides "b", a put adds "bb", "c" changes.
    t.delete(&counts, b"b").unwrap();
    t.put(&counts, b"bb", b"new").unwrap();
    t.put(&counts, b"c", b"changed").unwrap();
    let page = t.scan(&counts, b"", None, 2).unwrap();
    assert_eq!(keys_of(&page), vec!["a", "bb"]);
    assert_eq!(page.next.as_deref(), Some(&b"c"[..]));
    let page = t.scan(&counts, &page.next.unwrap(), None, 10).unwrap();
    assert_eq!(keys_of(&page), vec!["c", "d"]);
    assert_eq!(page.entries[0].1, b"changed".to_vec());
    assert_eq!(page.next, None);
    let page = t.scan(&counts, b"b", Some(b"d"), 10).unwrap();
    assert_eq!(keys_of(&page), vec!["bb", "c"]);
    // Committed reads see the last commit only.
    let committed = db.existing("p").unwrap();
    let view = committed.committed(3);
    let page = view.scan("counts", b"", None, 10).unwrap();
    assert_eq!(keys_of(&page), vec!["a", "b", "c", "d"]);
    // Another task's state is not visible.
    let page = committed
        .committed(2)
        .scan("counts", b"", None, 10)
        .unwrap();
    assert!(page.entries.is_empty());
    // A view is one instant: a commit after it changes none of its reads,
    // the commit record included, so an answer and its position agree.
    t.commit(b"m2", false).unwrap();
    assert_eq!(view.meta().unwrap(), Some(b"m".to_vec()));
    assert_eq!(view.get("counts", b"b").unwrap(), Some(b"b".to_vec()));
    assert_eq!(view.get("counts", b"bb").unwrap(), None);
    let page = view.scan("counts", b"", None, 10).unwrap();
    assert_eq!(keys_of(&page), vec!["a", "b", "c", "d"]);
    assert!(!view.restoring().unwrap());
    let now = committed.committed(3);
    assert_eq!(now.meta().unwrap(), Some(b"m2".to_vec()));
    assert_eq!(now.get("counts", b"b").unwrap(), None);
    let page = now.scan("counts", b"", None, 10).unwrap();
    assert_eq!(keys_of(&page), vec!["a", "bb", "c", "d"]);
}

#[test]
fn delete_range_counts_and_removes_merged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    for i in 0..10_000u32 {
        t.put(&counts, format!("k{i:05}").as_bytes(), vec![1])
            .unwrap();
    }
    t.commit(b"m", false).unwrap();
    t.put(&counts, b"k99999", vec![1]).unwrap();
    let deleted = t.delete_range(&counts, b"k00100", None).unwrap();
    assert_eq!(deleted, 9_901);
    let page = t.scan(&counts, b"", None, 1_000).unwrap();
    assert_eq!(page.entries.len(), 100);
    assert_eq!(page.next, None);
}

/// Every page of a scan of `store`, `limit` entries asked for each,
/// following `next`.
fn pages(t: &mut TaskState, store: &[u8], limit: usize) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut start = Vec::new();
    loop {
        let page = t.scan(store, &start, None, limit).unwrap();
        let next = page.next.clone();
        pages.push(page);
        match next {
            Some(next) => start = next,
            None => return pages,
        }
    }
}

/// Scan pages stop at `state.scan_bytes_max` of keys and values (past
/// their first entry): a plugin's, a query's and a range delete's passes.
/// Twenty values of 512 KiB with a limit of 100 were a 10 MiB page; 1 MiB
/// values with the default limit, 10 GiB.
#[test]
fn scan_pages_are_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    let big = vec![7u8; 512 << 10];
    let key = |i: u32| format!("k{i:02}").into_bytes();
    for i in 0..20 {
        t.put(&counts, &key(i), big.clone()).unwrap();
    }
    t.commit(b"m", false).unwrap();
    // A staged value counts as a committed one does.
    t.put(&counts, &key(20), big.clone()).unwrap();
    let max = StateConfig::default().scan_bytes_max;
    let page_bytes =
        |page: &Page| -> usize { page.entries.iter().map(|(k, v)| k.len() + v.len()).sum() };
    let mut seen = 0;
    for page in pages(&mut t, &counts, 100) {
        assert!(
            page_bytes(&page) <= max + big.len() + 16,
            "{}",
            page_bytes(&page)
        );
        assert!(!page.entries.is_empty());
        seen += page.entries.len();
    }
    assert_eq!(seen, 21);
    let first = t.scan(&counts, b"", None, 100).unwrap();
    assert!(first.entries.len() < 21 && first.next.is_some());
    // A query's page, from the committed snapshot.
    let committed = db.existing("p").unwrap();
    let page = committed
        .committed(0)
        .scan("counts", b"", None, 100)
        .unwrap();
    assert!(page.entries.len() < 20 && page.next.is_some());
    assert!(page_bytes(&page) <= max + big.len() + 16);
    // One value larger than the bound still comes back, alone.
    let huge = StateConfig {
        scan_bytes_max: 1,
        ..StateConfig::default()
    };
    drop((t, committed, db));
    let db = StateDb::open(dir.path(), &huge).unwrap();
    let mut t = task(&db, "p", 0);
    let page = t.scan(&counts, b"", None, 100).unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.next, Some(key(1)));
    // A range delete passes over the range a bounded page at a time.
    assert_eq!(t.delete_range(&counts, b"", None).unwrap(), 20);
    assert_eq!(t.scan(&counts, b"", None, 100).unwrap().entries.len(), 0);
}

/// A page of a scan over staged writes takes the staged writes it needs:
/// paging through 10k staged keys 100 at a time handed every page all
/// the staged writes to the range's end (about 500k for these 10k: a
/// window's close over uncommitted keys, page by page, was quadratic).
#[test]
fn paging_over_staged_writes_takes_each_about_once() {
    const KEYS: u32 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    for i in 0..KEYS {
        t.put(&counts, format!("k{i:05}").as_bytes(), vec![1])
            .unwrap();
    }
    let steps = || cache::STAGED_STEPS.with(std::cell::Cell::get);
    let before = steps();
    let seen: usize = pages(&mut t, &counts, 100)
        .iter()
        .map(|page| page.entries.len())
        .sum();
    assert_eq!(seen, KEYS as usize);
    let handed = steps() - before;
    assert!(
        handed <= 2 * u64::from(KEYS),
        "{handed} staged writes handed"
    );
    // Deleting them, a page at a time as the SDK's close does.
    let before = steps();
    let mut start = Vec::new();
    loop {
        let page = t.scan(&counts, &start, None, 256).unwrap();
        let until = page.next.clone();
        t.delete_range(&counts, &start, until.as_deref()).unwrap();
        match until {
            Some(next) => start = next,
            None => break,
        }
    }
    let handed = steps() - before;
    assert!(
        handed <= 4 * u64::from(KEYS),
        "{handed} staged writes handed"
    );
    assert!(t.scan(&counts, b"", None, 10).unwrap().entries.is_empty());
}

#[test]
fn timers_come_due_in_time_then_key_order_and_commit_with_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    t.schedule(Domain::EventTime, b"b", 20).unwrap();
    t.schedule(Domain::EventTime, b"a", 20).unwrap();
    t.schedule(Domain::EventTime, b"z", 10).unwrap();
    t.schedule(Domain::EventTime, b"late", 30).unwrap();
    t.schedule(Domain::ProcessingTime, b"p", 5).unwrap();
    t.commit(b"m", false).unwrap();
    t.cancel(Domain::EventTime, b"late", 30).unwrap();
    let due = t.due_timers(Domain::EventTime, 20, 10).unwrap();
    let order: Vec<_> = due.iter().map(|t| (t.at, t.key.clone())).collect();
    assert_eq!(
        order,
        vec![
            (10, b"z".to_vec()),
            (20, b"a".to_vec()),
            (20, b"b".to_vec())
        ]
    );
    assert_eq!(t.due_timers(Domain::EventTime, 9, 10).unwrap(), vec![]);
    assert_eq!(t.next_timer(Domain::ProcessingTime).unwrap(), Some(5));
    for timer in &due {
        t.remove_timer(timer).unwrap();
    }
    assert_eq!(t.next_timer(Domain::EventTime).unwrap(), None);
    t.discard();
    // Discarded: the committed timers are due again.
    assert_eq!(t.due_timers(Domain::EventTime, 100, 10).unwrap().len(), 4);
}

/// A task of processor `p` with `count` event-time timers committed, due
/// at `at`, for keys `k000000`, `k000001`, ...
fn with_committed_timers(dir: &std::path::Path, count: u64, at: i64) -> (Arc<StateDb>, TaskState) {
    let db = open(dir);
    let mut t = task(&db, "p", 0);
    for n in 0..count {
        t.schedule(Domain::EventTime, format!("k{n:06}").as_bytes(), at)
            .unwrap();
    }
    t.commit(b"m", false).unwrap();
    (db, t)
}

/// A window close of many keys: N timers due at once, fired a round at a
/// time as the task does (due, removed, next round), then committed.
/// Each scan starts past the timers already fired, so the rounds look at
/// each timer about once; before, every round walked the deleted ones
/// again (N²/2 entries per round size: 210k for these 20k), and after the
/// commit every `next_timer` walked their tombstones in RocksDB.
#[test]
fn firing_many_timers_in_rounds_looks_at_each_about_once() {
    const TIMERS: u64 = 20_000;
    const ROUND: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let (_db, mut t) = with_committed_timers(dir.path(), TIMERS, 100);
    let steps = || task::MERGED_STEPS.with(std::cell::Cell::get);
    let before = steps();
    let mut fired = Vec::new();
    loop {
        let due = t.due_timers(Domain::EventTime, 100, ROUND).unwrap();
        if due.is_empty() {
            break;
        }
        t.savepoint();
        for timer in &due {
            t.remove_timer(timer).unwrap();
        }
        t.release();
        assert_eq!(
            t.next_timer(Domain::EventTime).unwrap().is_some(),
            fired.len() + due.len() < TIMERS as usize
        );
        fired.extend(due.into_iter().map(|timer| timer.key));
    }
    let looked_at = steps() - before;
    assert_eq!(fired.len() as u64, TIMERS);
    assert!(
        fired.windows(2).all(|pair| pair[0] < pair[1]),
        "in key order, each once"
    );
    assert!(
        looked_at <= 3 * TIMERS,
        "the rounds looked at {looked_at} entries for {TIMERS} timers"
    );
    t.commit(b"m", false).unwrap();
    // Their tombstones are not walked again.
    let ((), skipped) = rocksdb_counted(PerfMetric::InternalDeleteSkippedCount, || {
        assert_eq!(t.next_timer(Domain::EventTime).unwrap(), None);
        assert!(t
            .due_timers(Domain::EventTime, 100, ROUND)
            .unwrap()
            .is_empty());
    });
    assert!(skipped < TIMERS / 10, "skipped {skipped} deleted timers");
    // A timer scheduled below where the scans start is still found.
    t.schedule(Domain::EventTime, b"early", 50).unwrap();
    t.schedule(Domain::EventTime, b"later", 100).unwrap();
    let due = t.due_timers(Domain::EventTime, 100, ROUND).unwrap();
    let keys: Vec<&[u8]> = due.iter().map(|timer| timer.key.as_slice()).collect();
    assert_eq!(keys, vec![&b"early"[..], &b"later"[..]]);
    // A call that removed a timer and is rolled back leaves it due: the
    // scan in between saw it removed.
    t.savepoint();
    t.remove_timer(&due[0]).unwrap();
    assert_eq!(
        t.due_timers(Domain::EventTime, 100, ROUND).unwrap().len(),
        1
    );
    t.rollback();
    assert_eq!(
        t.due_timers(Domain::EventTime, 100, ROUND).unwrap().len(),
        2
    );
}

#[test]
fn limits_and_bad_store_names_are_refused_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    assert!(t.store("a/b").is_err());
    let counts = t.store("counts").unwrap();
    let error = t.put(&counts, &vec![0; 20_000], vec![]).unwrap_err();
    assert!(error.to_string().contains("state.key_bytes_max"), "{error}");
    let error = t.put(&counts, b"k", vec![0; 2 << 20]).unwrap_err();
    assert!(
        error.to_string().contains("state.value_bytes_max"),
        "{error}"
    );
}

#[test]
fn dropping_a_processor_removes_its_state_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    for name in ["p", "q"] {
        let mut t = task(&db, name, 0);
        let counts = t.store("counts").unwrap();
        t.put(&counts, b"k", b"v").unwrap();
        t.commit(b"m", true).unwrap();
    }
    db.drop_processor("p").unwrap();
    assert!(db.existing("p").is_none());
    // Created again, it starts empty; q is untouched.
    let p = db.processor("p").unwrap();
    assert_eq!(p.get_committed(0, "counts", b"k").unwrap(), None);
    assert_eq!(p.meta(0).unwrap(), None);
    let q = db.existing("q").unwrap();
    assert_eq!(
        q.get_committed(0, "counts", b"k").unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(q.metas().unwrap(), vec![(0, b"m".to_vec())]);
}

#[test]
fn get_many_answers_in_order_from_stage_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    t.put(&counts, b"disk", b"1").unwrap();
    t.put(&counts, b"gone", b"2").unwrap();
    t.commit(b"m", false).unwrap();
    t.put(&counts, b"staged", b"3").unwrap();
    t.delete(&counts, b"gone").unwrap();
    let keys: Vec<Vec<u8>> = ["staged", "none", "disk", "gone"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    let answers = t.get_many(&counts, &keys).unwrap();
    assert_eq!(
        answers,
        vec![Some(b"3".to_vec()), None, Some(b"1".to_vec()), None]
    );
}

#[test]
fn a_reversed_range_is_empty_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    let counts = t.store("counts").unwrap();
    t.put(&counts, b"a", b"1").unwrap();
    // Staged writes present: BTreeMap::range would panic on start > end.
    let page = t.scan(&counts, b"b", Some(b"a"), 10).unwrap();
    assert!(page.entries.is_empty() && page.next.is_none());
    assert_eq!(t.delete_range(&counts, b"b", Some(b"a")).unwrap(), 0);
}

#[test]
fn rewriting_one_key_in_a_call_counts_its_undo_log_against_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config = StateConfig {
        staged_bytes_max: 4 << 20,
        ..StateConfig::default()
    };
    let db = StateDb::open(dir.path(), &config).unwrap();
    let mut t = TaskState::new(db.processor("p").unwrap(), 0);
    let counts = t.store("counts").unwrap();
    t.savepoint();
    let mut refused = None;
    for round in 0..100 {
        if let Err(error) = t.put(&counts, b"k", vec![round as u8; 512 << 10]) {
            refused = Some(error);
            break;
        }
    }
    assert!(
        matches!(refused, Some(StateError::StagedFull { .. })),
        "{refused:?}"
    );
    t.rollback();
    assert_eq!(t.get(&counts, b"k").unwrap(), None);
}

#[test]
fn the_staged_bound_is_per_call_and_the_task_commits_before_twice_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = StateConfig {
        staged_bytes_max: 1 << 20,
        commit_bytes_max: 1 << 20,
        ..StateConfig::default()
    };
    let db = StateDb::open(dir.path(), &config).unwrap();
    let mut t = TaskState::new(db.processor("p").unwrap(), 0);
    let counts = t.store("counts").unwrap();
    let value = vec![7u8; 100 << 10];
    // Calls of 800 KiB each: every one within the call bound, until the
    // task holds more than both bounds together.
    let mut key = 0u32;
    let mut call = |t: &mut TaskState| -> Result<(), StateError> {
        t.savepoint();
        for _ in 0..8 {
            key += 1;
            if let Err(error) = t.put(&counts, &key.to_be_bytes(), value.clone()) {
                t.rollback();
                return Err(error);
            }
        }
        t.release();
        Ok(())
    };
    call(&mut t).unwrap();
    call(&mut t).unwrap();
    let refused = call(&mut t).unwrap_err();
    assert!(refused.is_commit_first(), "{refused:?}");
    assert!(t.staged_bytes() < 2 << 20, "the refused call was undone");
    t.commit(b"meta", false).unwrap();
    call(&mut t).unwrap();
    // One call staging more than the call bound is the call's fault.
    t.savepoint();
    let over = (0..20)
        .map(|n| t.put(&counts, &(1_000_000u32 + n).to_be_bytes(), value.clone()))
        .find_map(Result::err);
    assert!(
        matches!(over, Some(StateError::StagedFull { .. })),
        "{over:?}"
    );
    t.rollback();
    // Settings that cannot hold one write are refused.
    let tight = StateConfig {
        staged_bytes_max: 1 << 10,
        ..StateConfig::default()
    };
    let error = tight.validate().unwrap_err().to_string();
    assert!(error.contains("staged_bytes_max"), "{error}");
    let no_scan = StateConfig {
        scan_bytes_max: 0,
        ..StateConfig::default()
    };
    let error = no_scan.validate().unwrap_err().to_string();
    assert!(error.contains("scan_bytes_max"), "{error}");
    assert!(StateConfig::default().validate().is_ok());
}

#[test]
fn writes_count_the_keys_they_add_and_remove_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let config = StateConfig {
        value_cache_bytes_max: 0, // blind writes read RocksDB
        ..StateConfig::default()
    };
    let db = StateDb::open(dir.path(), &config).unwrap();
    let mut t = TaskState::new(db.processor("p").unwrap(), 3);
    let counts = t.store("counts").unwrap();
    let other = t.store("other").unwrap();
    t.put(&counts, b"a", b"1").unwrap();
    t.put(&counts, b"a", b"2").unwrap(); // the same key again
    t.put(&other, b"a", b"1").unwrap(); // another store's key
    t.delete(&counts, b"missing").unwrap();
    t.schedule(Domain::EventTime, b"a", 5).unwrap(); // timers are not keys
    assert_eq!(t.add(&counts, b"n", 4).unwrap(), 4);
    assert_eq!(t.keys_delta(), 3);
    t.commit(b"meta", false).unwrap();
    assert_eq!(t.keys_delta(), 0);
    assert_eq!(t.count_keys().unwrap(), 3);
    // Blind writes and deletes of committed keys (not cached: RocksDB
    // says whether they exist).
    t.put(&counts, b"a", b"3").unwrap();
    t.delete(&other, b"a").unwrap();
    t.delete(&other, b"a").unwrap();
    assert_eq!(t.keys_delta(), -1);
    // A rolled back call leaves the count as it was.
    t.savepoint();
    t.put(&counts, b"b", b"1").unwrap();
    t.put(&counts, b"c", b"1").unwrap();
    assert_eq!(t.delete_range(&counts, b"", None).unwrap(), 4);
    assert_eq!(t.keys_delta(), -3);
    t.rollback();
    assert_eq!(t.keys_delta(), -1);
    t.commit(b"meta", false).unwrap();
    assert_eq!(t.count_keys().unwrap(), 2);
    // Another task's keys are its own.
    let mut u = TaskState::new(db.processor("p").unwrap(), 4);
    assert_eq!(u.count_keys().unwrap(), 0);
    u.put(&u.store("counts").unwrap(), b"a", b"1").unwrap();
    assert_eq!(u.keys_delta(), 1);
}

/// Tests of the task's cache of committed values (`cache`) through
/// `TaskState`: what it holds after reads, commits, rollbacks and deletes,
/// and that answers stay those of RocksDB plus the staged writes.
mod cached {
    use super::*;

    #[test]
    fn a_commit_caches_what_it_wrote_and_reads_see_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let mut t = task(&db, "p", 0);
        let counts = t.store("counts").unwrap();
        assert_eq!(t.get(&counts, b"a").unwrap(), None);
        assert_eq!(t.cached(&counts, b"a"), Some(None), "absence is cached");
        t.put(&counts, b"a", b"1").unwrap();
        t.put(&counts, b"b", b"2").unwrap();
        assert_eq!(
            t.cached(&counts, b"a"),
            Some(None),
            "staged is not committed"
        );
        t.commit(b"m", false).unwrap();
        assert_eq!(t.cached(&counts, b"a"), Some(Some(b"1".to_vec())));
        assert_eq!(t.cached(&counts, b"b"), Some(Some(b"2".to_vec())));
        t.delete(&counts, b"a").unwrap();
        t.commit(b"m", false).unwrap();
        assert_eq!(t.cached(&counts, b"a"), Some(None));
        let keys = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        assert_eq!(
            t.get_many(&counts, &keys).unwrap(),
            vec![None, Some(b"2".to_vec()), None]
        );
        assert_eq!(
            t.cached(&counts, b"c"),
            Some(None),
            "multi-get results are cached"
        );
        // Three keys of the store, one with a value byte.
        let key = 1 + counts.len();
        let entries = 2 * cache::entry_bytes(key) + cache::entry_bytes(key + 1);
        assert_eq!(db.value_cache.bytes(), entries);
        // Timers and the metadata record are not cached; what the task
        // knows of its timers (a hash of this one) is counted beside.
        t.schedule(Domain::EventTime, b"a", 5).unwrap();
        t.commit(b"m", false).unwrap();
        let beside = db.value_cache.bytes() - entries;
        assert!(beside > 0 && beside < cache::entry_bytes(0), "{beside}");
    }

    #[test]
    fn a_rolled_back_call_leaves_the_cache_as_committed() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let mut t = task(&db, "p", 0);
        let counts = t.store("counts").unwrap();
        t.add(&counts, b"k", 5).unwrap();
        t.commit(b"m", false).unwrap();
        t.savepoint();
        assert_eq!(t.add(&counts, b"k", 1).unwrap(), 6);
        t.delete(&counts, b"k").unwrap();
        t.put(&counts, b"new", b"x").unwrap();
        t.rollback();
        assert_eq!(t.cached(&counts, b"k"), Some(Some(b"5".to_vec())));
        assert_eq!(t.get(&counts, b"k").unwrap(), Some(b"5".to_vec()));
        assert_eq!(t.get(&counts, b"new").unwrap(), None);
        t.commit(b"m", false).unwrap();
        assert_eq!(t.get(&counts, b"k").unwrap(), Some(b"5".to_vec()));
        // Discarded work (an aborted transaction) empties the cache.
        t.add(&counts, b"k", 1).unwrap();
        t.discard();
        assert_eq!(t.cached(&counts, b"k"), None);
        assert_eq!(t.get(&counts, b"k").unwrap(), Some(b"5".to_vec()));
    }

    #[test]
    fn delete_range_reaches_the_cache_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let mut t = task(&db, "p", 0);
        let counts = t.store("counts").unwrap();
        for key in ["a", "b", "c"] {
            t.put(&counts, key.as_bytes(), key.as_bytes()).unwrap();
        }
        t.commit(b"m", false).unwrap();
        assert_eq!(t.delete_range(&counts, b"a", Some(b"c")).unwrap(), 2);
        assert_eq!(t.get(&counts, b"a").unwrap(), None);
        assert_eq!(t.cached(&counts, b"a"), Some(Some(b"a".to_vec())));
        t.commit(b"m", false).unwrap();
        assert_eq!(t.cached(&counts, b"a"), Some(None));
        assert_eq!(t.cached(&counts, b"b"), Some(None));
        let keys = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        assert_eq!(
            t.get_many(&counts, &keys).unwrap(),
            vec![None, None, Some(b"c".to_vec())]
        );
        let page = t.scan(&counts, b"", None, 10).unwrap();
        assert_eq!(keys_of(&page), vec!["c"]);
    }

    #[test]
    fn other_writers_keys_are_not_cached() {
        // A table's entries are written by its catch-up, not by the task:
        // the task must see each new version.
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let mut t = task(&db, "p", 0);
        let table = store_prefix(7, "table");
        let writer = db.existing("p").unwrap();
        writer
            .write(
                7,
                vec![(keys::entry(&table, b"k"), Some(b"1".to_vec()))],
                b"m",
            )
            .unwrap();
        assert_eq!(t.get(&table, b"k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(t.cached(&table, b"k"), None);
        writer
            .write(
                7,
                vec![(keys::entry(&table, b"k"), Some(b"2".to_vec()))],
                b"m",
            )
            .unwrap();
        assert_eq!(t.get(&table, b"k").unwrap(), Some(b"2".to_vec()));
        let keys = vec![b"k".to_vec()];
        assert_eq!(
            t.get_many(&table, &keys).unwrap(),
            vec![Some(b"2".to_vec())]
        );
    }

    #[test]
    fn the_bound_holds_and_evicted_keys_read_from_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let config = StateConfig {
            memory_bytes_max: 4 << 20,
            value_cache_bytes_max: 64 << 10,
            ..StateConfig::default()
        };
        let db = StateDb::open(dir.path(), &config).unwrap();
        let mut t = TaskState::new(db.processor("p").unwrap(), 0);
        let mut other = TaskState::new(db.processor("q").unwrap(), 0);
        let counts = t.store("counts").unwrap();
        for round in 0..3u8 {
            for n in 0..4000u32 {
                t.put(&counts, &n.to_be_bytes(), vec![round; 100]).unwrap();
                other
                    .put(&counts, &n.to_be_bytes(), vec![round; 100])
                    .unwrap();
            }
            t.commit(b"m", false).unwrap();
            other.commit(b"m", false).unwrap();
            assert!(
                db.value_cache.bytes() <= 64 << 10,
                "{}",
                db.value_cache.bytes()
            );
        }
        let keys: Vec<Vec<u8>> = (0..4000u32).map(|n| n.to_be_bytes().to_vec()).collect();
        let evicted = keys
            .iter()
            .filter(|key| t.cached(&counts, key).is_none())
            .count();
        assert!(evicted > 3000, "{evicted} of 4000 evicted");
        for (key, value) in keys.iter().zip(t.get_many(&counts, &keys).unwrap()) {
            assert_eq!(value, Some(vec![2; 100]), "{key:?}");
        }
        assert!(db.value_cache.bytes() <= 64 << 10);
        drop((t, other));
        assert_eq!(db.value_cache.bytes(), 0);
    }
}

/// What RocksDB's perf context counts as `metric` on this thread while
/// `f` runs.
pub(super) fn rocksdb_counted<T>(metric: PerfMetric, f: impl FnOnce() -> T) -> (T, u64) {
    rocksdb::perf::set_perf_stats(rocksdb::perf::PerfStatsLevel::EnableCount);
    let mut perf = rocksdb::perf::PerfContext::default();
    perf.reset();
    let value = f();
    let counted = perf.metric(metric);
    rocksdb::perf::set_perf_stats(rocksdb::perf::PerfStatsLevel::Disable);
    (value, counted)
}

/// RocksDB's integer property `name` of processor `p`'s column family.
pub(super) fn family_property(db: &Arc<StateDb>, name: &str) -> u64 {
    let processor = db.existing("p").unwrap();
    let family = processor.family().unwrap();
    db.db()
        .property_int_value_cf(&family, name)
        .unwrap()
        .unwrap()
}

/// RocksDB point reads (memtable lookups) on this thread while `f` runs.
fn rocksdb_gets<T>(f: impl FnOnce() -> T) -> (T, u64) {
    rocksdb_counted(PerfMetric::GetFromMemtableCount, f)
}

/// A timer due later than every committed one (a new window's, until a
/// commit holds one due at its time) is known to be new without a
/// RocksDB read: a window close of N keys schedules N new timers, and
/// each read a key that is not there. Whether a timer is
/// new still counts right: scheduled twice, already committed, after a
/// commit raised the bound, after staged timers were dropped.
#[test]
fn scheduling_timers_later_than_every_committed_one_reads_nothing() {
    const KEYS: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let (db, mut t) = with_committed_timers(dir.path(), KEYS, 60);
    // The next window: every key's timer at 120, some keys twice.
    let ((), gets) = rocksdb_gets(|| {
        for n in (0..KEYS).chain(0..KEYS / 4) {
            t.schedule(Domain::EventTime, format!("k{n:06}").as_bytes(), 120)
                .unwrap();
        }
    });
    assert_eq!(t.timers_delta(), KEYS as i64, "each new timer counted once");
    // One bound read (an iterator, not a point read), then none.
    assert_eq!(gets, 0, "RocksDB point reads for new timers");
    // A timer of the committed window is not new (and is read).
    let ((), gets) = rocksdb_gets(|| t.schedule(Domain::EventTime, b"k000007", 60).unwrap());
    assert_eq!(t.timers_delta(), KEYS as i64);
    assert!(gets > 0);
    t.commit(b"m", false).unwrap();
    // The commit raised the bound: the timers at 120 are committed now,
    // and scheduling one again is no new timer.
    t.schedule(Domain::EventTime, b"k000009", 120).unwrap();
    assert_eq!(t.timers_delta(), 0);
    // Dropped staged timers are forgotten: scheduled again, they are new.
    t.schedule(Domain::EventTime, b"k000001", 180).unwrap();
    t.discard();
    t.schedule(Domain::EventTime, b"k000001", 180).unwrap();
    t.schedule(Domain::ProcessingTime, b"k000001", 180).unwrap();
    assert_eq!(t.timers_delta(), 2);
    // Another task's state opened on the same database counts the
    // committed timers as there.
    t.commit(b"m", false).unwrap();
    let mut again = task(&db, "p", 0);
    again.schedule(Domain::EventTime, b"k000001", 180).unwrap();
    again.schedule(Domain::EventTime, b"k000002", 120).unwrap();
    assert_eq!(again.timers_delta(), 0);
    again.schedule(Domain::EventTime, b"k000002", 181).unwrap();
    assert_eq!(again.timers_delta(), 1);
}

/// A minute's tumbling windows share one due time, so after the minute's
/// first commit every window opened later has its timer due exactly at
/// the bound, not after it. The commit that raised the bound knows every
/// committed timer due there (it wrote them), so those timers are known
/// new too, without a RocksDB read; a timer committed there is still
/// read, and the counts stay exact.
#[test]
fn scheduling_timers_at_the_bound_a_commit_raised_reads_only_committed_ones() {
    const KEYS: u64 = 2_000;
    let key = |n: u64| format!("k{n:06}").into_bytes();
    let dir = tempfile::tempdir().unwrap();
    let (db, mut t) = with_committed_timers(dir.path(), KEYS, 60);
    // The minute's first commit: half the keys' windows, due at 120.
    for n in 0..KEYS / 2 {
        t.schedule(Domain::EventTime, &key(n), 120).unwrap();
    }
    t.commit(b"m", false).unwrap();
    // The other half, some twice: due at the bound, new, no read.
    let ((), gets) = rocksdb_gets(|| {
        for n in (KEYS / 2..KEYS).chain(KEYS / 2..KEYS / 2 + KEYS / 4) {
            t.schedule(Domain::EventTime, &key(n), 120).unwrap();
        }
    });
    assert_eq!(gets, 0, "RocksDB point reads for new timers at the bound");
    assert_eq!(t.timers_delta(), (KEYS / 2) as i64);
    // One committed at the bound is read, and not new.
    let ((), gets) = rocksdb_gets(|| t.schedule(Domain::EventTime, &key(5), 120).unwrap());
    assert!(gets > 0);
    assert_eq!(t.timers_delta(), (KEYS / 2) as i64);
    // A commit at the same bound adds what it wrote.
    t.commit(b"m", false).unwrap();
    t.schedule(Domain::EventTime, &key(KEYS - 1), 120).unwrap();
    assert_eq!(t.timers_delta(), 0);
    // A timer cancelled at the bound and scheduled again is new.
    t.cancel(Domain::EventTime, &key(7), 120).unwrap();
    t.commit(b"m", false).unwrap();
    t.schedule(Domain::EventTime, &key(7), 120).unwrap();
    assert_eq!(t.timers_delta(), 1);
    // Staged timers dropped: what the bound knew is forgotten, and the
    // timers are read again.
    t.discard();
    let ((), gets) = rocksdb_gets(|| t.schedule(Domain::EventTime, &key(KEYS + 1), 120).unwrap());
    assert!(gets > 0);
    assert_eq!(t.timers_delta(), 1);
    // A fresh task state reads its bound from RocksDB, not what is due
    // there: it reads, and counts the committed timers as there.
    let mut again = task(&db, "p", 0);
    let ((), gets) = rocksdb_gets(|| again.schedule(Domain::EventTime, &key(9), 120).unwrap());
    assert!(gets > 0);
    assert_eq!(again.timers_delta(), 0);
}

/// Task 0 of processor `p` over a fresh state with no value cache
/// (`value_cache_bytes_max = 0`: every write's key count reads RocksDB
/// unless the call read the key), and its store `counts`.
pub(super) fn task_without_value_cache() -> (tempfile::TempDir, Arc<StateDb>, TaskState, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let config = StateConfig {
        value_cache_bytes_max: 0,
        ..StateConfig::default()
    };
    let db = StateDb::open(dir.path(), &config).unwrap();
    let t = TaskState::new(db.processor("p").unwrap(), 0);
    let counts = t.store("counts").unwrap();
    (dir, db, t, counts)
}

/// With no value cache (`value_cache_bytes_max = 0`), a call that reads
/// keys and then writes them knows from its read whether each key is
/// new: one RocksDB lookup per key, not two (the write's point read for
/// the key count). After the call a blind write reads RocksDB again.
#[test]
fn with_no_value_cache_a_write_after_a_read_in_the_same_call_reads_nothing_more() {
    const KEYS: usize = 500;
    let (_dir, _db, mut t, counts) = task_without_value_cache();
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|n| format!("k{n:05}").into_bytes()).collect();
    for key in keys.iter().step_by(2) {
        t.put(&counts, key, b"1").unwrap();
    }
    t.commit(b"meta", false).unwrap();
    t.savepoint();
    let values = t.get_many(&counts, &keys).unwrap();
    assert_eq!(values.iter().flatten().count(), KEYS / 2);
    let ((), gets) = rocksdb_gets(|| {
        for key in &keys {
            t.put(&counts, key, b"2").unwrap();
        }
    });
    assert_eq!(gets, 0, "point reads for keys the call had read");
    assert_eq!(
        t.keys_delta(),
        (KEYS / 2) as i64,
        "the new keys, counted once"
    );
    t.release();
    t.commit(b"meta", false).unwrap();
    assert_eq!(t.count_keys().unwrap(), KEYS as u64);
    // The next call has not read the key: its write asks RocksDB.
    t.savepoint();
    let ((), gets) = rocksdb_gets(|| t.put(&counts, &keys[0], b"3").unwrap());
    assert_eq!(gets, 1, "a blind write reads whether its key exists");
    assert_eq!(t.keys_delta(), 0);
    t.release();
}

/// A range delete knows what it deletes from its own scan: it reads no
/// key again to count it (with no value cache, each was a point read),
/// and the key count and the entries still come out right.
#[test]
fn a_range_delete_reads_each_key_once_in_its_scan() {
    const KEYS: usize = 500;
    let (_dir, _db, mut t, counts) = task_without_value_cache();
    for n in 0..KEYS {
        t.put(&counts, format!("k{n:05}").as_bytes(), b"1").unwrap();
    }
    t.commit(b"meta", false).unwrap();
    t.savepoint();
    // One staged over a committed one, and one only staged.
    t.put(&counts, b"k00002", b"2").unwrap();
    t.put(&counts, b"k00002x", b"1").unwrap();
    let (deleted, gets) = rocksdb_gets(|| t.delete_range(&counts, b"k", None).unwrap());
    assert_eq!(deleted, KEYS as u64 + 1);
    assert_eq!(gets, 0, "point reads for keys the range delete had found");
    assert_eq!(t.keys_delta(), -(KEYS as i64));
    t.release();
    t.commit(b"meta", false).unwrap();
    assert_eq!(t.count_keys().unwrap(), 0);
    assert_eq!(t.get(&counts, b"k00002").unwrap(), None);
}

/// `state.block_cache_fill`: with `auto` a task's reads keep the blocks
/// they read in the block cache while the state files fit in twice the
/// cache, and stop once the state is larger (each read would evict a
/// block for one rarely read again); with `always` they keep them
/// whatever the size.
#[test]
fn reads_fill_the_block_cache_only_while_the_state_fits_twice_in_it() {
    // 4 MiB of state memory: about 3 MiB of block cache.
    let config = |fill| StateConfig {
        memory_bytes_max: 4 << 20,
        value_cache_bytes_max: 0, // every read reaches RocksDB
        block_cache_fill: fill,
        ..StateConfig::default()
    };
    let write = |db: &Arc<StateDb>, t: &mut TaskState, keys: std::ops::Range<u32>| {
        let counts = t.store("counts").unwrap();
        for n in keys {
            t.put(&counts, &n.to_be_bytes(), vec![1; 200]).unwrap();
            if n % 5_000 == 0 {
                t.commit(b"m", false).unwrap();
            }
        }
        t.commit(b"m", false).unwrap();
        let family = db.existing("p").unwrap();
        let family = family.family().unwrap();
        db.db().flush_cf(&family).unwrap();
        // Files that stay: no compaction replaces them (and their blocks'
        // cache keys) between two reads.
        db.db()
            .compact_range_cf(&family, None::<&[u8]>, None::<&[u8]>);
    };
    // Blocks read from files by the second of two reads of 500 keys from
    // `first` on.
    let reread = |t: &mut TaskState, first: u32| {
        let counts = t.store("counts").unwrap();
        let keys: Vec<Vec<u8>> = (first..first + 500)
            .map(|n| n.to_be_bytes().to_vec())
            .collect();
        t.get_many(&counts, &keys).unwrap();
        let (found, blocks) = rocksdb_counted(PerfMetric::BlockReadCount, || {
            t.get_many(&counts, &keys).unwrap()
        });
        assert!(found.iter().all(Option::is_some));
        blocks
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);

    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(dir.path(), &config(CacheFill::Auto)).unwrap();
    let mut t = TaskState::new(db.processor("p").unwrap(), 0);
    write(&db, &mut t, 0..2_000); // 400 KB
    assert_eq!(
        reread(&mut t, 0),
        0,
        "a small state's blocks stay in the cache"
    );
    // 12 MB, four times the cache: `auto` looks at the state's size
    // again within a second.
    write(&db, &mut t, 2_000..60_000);
    while db.fills_block_cache() {
        assert!(
            std::time::Instant::now() < deadline,
            "reads still fill the cache"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let blocks = reread(&mut t, 30_000);
    assert!(blocks >= 5, "the 500 keys span several blocks: {blocks}");
    drop((t, db));

    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(dir.path(), &config(CacheFill::Always)).unwrap();
    let mut t = TaskState::new(db.processor("p").unwrap(), 0);
    write(&db, &mut t, 0..60_000);
    assert_eq!(reread(&mut t, 30_000), 0, "`always` keeps what it reads");
}

/// `state.write_buffer_bytes` sizes a processor's memtable: committing
/// 4 MiB switches memtables with a 1 MiB one and none with the default
/// (32 MiB at the default state memory). Sizes outside 1 MiB to
/// `memory_bytes_max` (other than 0, the default) are refused.
#[test]
fn the_write_buffer_setting_sizes_the_memtable() {
    let switched = |config: &StateConfig| {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path(), config).unwrap();
        let mut t = task(&db, "p", 0);
        let counts = t.store("counts").unwrap();
        for round in 0..16u32 {
            for key in 0..256u32 {
                let key = (round * 256 + key).to_be_bytes();
                t.put(&counts, &key, vec![7; 1024]).unwrap();
            }
            t.commit(b"meta", false).unwrap();
        }
        // A memtable switched is still in memory, immutable, or flushed
        // to a table file by now (maybe compacted with others into one).
        let immutable = family_property(&db, "rocksdb.num-immutable-mem-table");
        let table_bytes = family_property(&db, "rocksdb.live-sst-files-size");
        immutable as usize + usize::from(table_bytes > 0)
    };
    let small = StateConfig {
        write_buffer_bytes: 1 << 20,
        ..StateConfig::default()
    };
    assert!(small.validate().is_ok());
    assert!(switched(&small) >= 1, "1 MiB memtables switched");
    assert_eq!(switched(&StateConfig::default()), 0);
    for bytes in [1 << 10, (256 << 20) + 1] {
        let wrong = StateConfig {
            write_buffer_bytes: bytes,
            ..StateConfig::default()
        };
        let error = wrong.validate().unwrap_err().to_string();
        assert!(error.contains("write_buffer_bytes"), "{error}");
    }
}
