//! The cache's unit tests: slots, batch lookups, staging and eviction.

use super::*;

fn key(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

fn entries(budget: &Arc<CacheBudget>) -> Entries {
    Entries::new(budget.clone())
}

fn unknown(_: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    Ok(None)
}

#[test]
fn a_batch_lookup_answers_as_single_lookups_do() {
    let budget = Arc::new(CacheBudget::new(1 << 20));
    let mut entries = entries(&budget);
    // A slot whose hash equals key 7's but whose key differs (a 64-bit
    // collision), found first: the lookup of key 7 must pass over it.
    let colliding = entries.hash(&key(7));
    entries.insert(colliding, b"not key 7");
    // And one with key 30's hash, which is not there: the batch's
    // candidate for it (found by the hash alone) is not its slot.
    let colliding = entries.hash(&key(30));
    let index = entries.insert(colliding, b"not key 30");
    entries.set_committed(index, Some(b"its value"));
    for n in 0..10 {
        entries.fill(&key(n), (n % 3 != 0).then_some(&[n as u8; 3][..]));
    }
    entries.stage(&key(4), None, unknown).unwrap();
    entries
        .stage(&key(5), Some(b"staged".as_slice()), unknown)
        .unwrap();
    entries
        .stage(&key(20), Some(b"new".as_slice()), unknown)
        .unwrap();
    let keys: Vec<Vec<u8>> = [7, 4, 5, 20, 0, 1, 99, 7, 30].map(key).to_vec();
    let mut batch = Vec::new();
    entries.get_batch(
        keys.len(),
        |i| &keys[i],
        |i, known| batch.push((i, known.map(|v| v.map(<[u8]>::to_vec)))),
    );
    let single: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (i, entries.get(k).map(|v| v.map(<[u8]>::to_vec))))
        .collect();
    assert_eq!(batch, single);
    assert_eq!(batch[0].1, Some(Some(vec![7; 3])));
    assert_eq!(batch[1].1, Some(None), "a staged delete");
    assert_eq!(batch[2].1, Some(Some(b"staged".to_vec())));
    assert_eq!(batch[4].1, Some(None), "known absent");
    assert_eq!(batch[6].1, None, "unknown: read RocksDB");
    assert_eq!(batch[8].1, None, "not the colliding slot's");
}

#[test]
fn keys_and_values_in_the_slot_or_on_the_heap_keep_their_bytes() {
    let budget = Arc::new(CacheBudget::new(1 << 20));
    let mut entries = entries(&budget);
    let lengths = [
        0,
        1,
        40,
        INLINE_BYTES - 1,
        INLINE_BYTES,
        INLINE_BYTES + 1,
        300,
    ];
    let bytes = |len: usize, seed: u8| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    };
    for &key_len in &lengths {
        let key = bytes(key_len, 1);
        // Values that keep the data inline, cross to the heap and back,
        // and one as long as the last (written over in place).
        for (round, &value_len) in lengths.iter().chain(&[0, 300, 300]).enumerate() {
            let value = bytes(value_len, round as u8);
            entries.fill(&key, Some(&value));
            assert_eq!(
                entries.get(&key),
                Some(Some(&value[..])),
                "{key_len}+{value_len}"
            );
        }
        entries.fill(&key, None);
        assert_eq!(entries.committed(&key), Some(None));
        // A staged write beside a long committed value.
        entries.fill(&key, Some(&bytes(200, 7)));
        entries
            .stage(&key, Some(b"staged".as_slice()), unknown)
            .unwrap();
        assert_eq!(entries.get(&key), Some(Some(&b"staged"[..])));
        assert_eq!(entries.committed(&key), Some(Some(&bytes(200, 7)[..])));
    }
    let expected: usize = lengths
        .iter()
        .map(|&key_len| entry_bytes(key_len + 200))
        .sum();
    assert_eq!(entries.bytes(), expected);
}

#[test]
fn remembers_values_and_absence_and_replaces_them() {
    let budget = Arc::new(CacheBudget::new(1 << 20));
    let mut cache = entries(&budget);
    assert_eq!(cache.get(b"a"), None);
    cache.fill(b"a", Some(b"1"));
    cache.fill(b"b", None);
    assert_eq!(cache.get(b"a"), Some(Some(&b"1"[..])));
    assert_eq!(cache.get(b"b"), Some(None));
    cache.fill(b"a", None);
    cache.fill(b"b", Some(b"22"));
    assert_eq!(cache.get(b"a"), Some(None));
    assert_eq!(cache.get(b"b"), Some(Some(&b"22"[..])));
    // A value as long as the one held is written over it; others not.
    cache.fill(b"b", Some(b"33"));
    assert_eq!(cache.get(b"b"), Some(Some(&b"33"[..])));
    cache.fill(b"b", Some(b"4"));
    cache.fill(b"b", Some(b"22"));
    assert_eq!(cache.get(b"b"), Some(Some(&b"22"[..])));
    // Keys "a" and "b", the value "22".
    assert_eq!(cache.bytes(), entry_bytes(1) + entry_bytes(1 + 2));
    assert_eq!(budget.bytes(), cache.bytes());
    cache.clear();
    assert_eq!(cache.get(b"a"), None);
    assert_eq!(budget.bytes(), 0);
}

#[test]
fn stays_within_its_share_and_keeps_what_is_read() {
    let entry = entry_bytes(4 + 16);
    let budget = Arc::new(CacheBudget::new(100 * entry));
    let mut cache = entries(&budget);
    for n in 0..100 {
        cache.fill(&key(n), Some(&[0; 16]));
    }
    assert_eq!(cache.len(), 100);
    // Key 7 is read again and again while a thousand others go by.
    for n in 100..1100 {
        assert!(cache.get(&key(7)).is_some(), "key 7 evicted at {n}");
        cache.fill(&key(n), Some(&[0; 16]));
        assert!(cache.bytes() <= 100 * entry);
    }
    assert_eq!(cache.len(), 100);
    assert_eq!(cache.get(&key(1099)), Some(Some(&[0; 16][..])));
    // A value larger than the whole share is not kept, and takes the
    // key's old entry with it.
    cache.fill(&key(7), Some(&vec![1; 100 * entry]));
    assert_eq!(cache.get(&key(7)), None);
    assert_eq!(cache.len(), 99);
    assert_eq!(budget.bytes(), cache.bytes());
}

#[test]
fn tasks_split_the_bound() {
    let entry = entry_bytes(4);
    let budget = Arc::new(CacheBudget::new(10 * entry));
    let mut first = entries(&budget);
    for n in 0..10 {
        first.fill(&key(n), None);
    }
    assert_eq!(first.len(), 10);
    let mut second = entries(&budget);
    for n in 0..10 {
        second.fill(&key(n), None);
    }
    assert_eq!(second.len(), 5, "half the bound each");
    first.fill(&key(10), None);
    assert_eq!(
        first.len(),
        5,
        "the first shrinks to its share on its next write"
    );
    assert_eq!(budget.bytes(), 10 * entry);
    drop(second);
    assert_eq!(budget.bytes(), 5 * entry);
    let zero = Arc::new(CacheBudget::new(0));
    let mut off = Entries::new(zero);
    off.fill(b"k", Some(b"v"));
    assert_eq!(off.get(b"k"), None, "a bound of 0 turns the cache off");
    // Staging still works with no cache at all.
    assert_eq!(off.stage(b"k", Some(b"w".as_slice()), unknown), Ok(false));
    assert_eq!(off.get(b"k"), Some(Some(&b"w"[..])));
    off.committed_all();
    assert_eq!(off.get(b"k"), None);
}

#[test]
fn staged_writes_roll_back_exactly_and_are_never_evicted() {
    let entry = entry_bytes(4 + 1);
    let budget = Arc::new(CacheBudget::new(4 * entry));
    let mut cache = entries(&budget);
    cache.fill(&key(1), Some(b"1"));
    assert_eq!(
        cache.stage(&key(1), Some(b"2".as_slice()), unknown),
        Ok(true)
    );
    let before = cache.staged_bytes();
    cache.savepoint();
    assert_eq!(cache.stage(&key(1), None, unknown), Ok(true));
    assert_eq!(
        cache.stage(&key(1), Some(b"3".as_slice()), unknown),
        Ok(false)
    );
    // Far more new keys than the cache holds: staged, all kept.
    for n in 2..50 {
        assert_eq!(
            cache.stage(&key(n), Some(b"x".as_slice()), unknown),
            Ok(false)
        );
    }
    assert!(cache.call_bytes() > 0);
    // Their committed values (absent) are forgotten past the share.
    assert!(cache.bytes() <= 4 * entry, "{}", cache.bytes());
    for n in 2..50 {
        assert_eq!(cache.get(&key(n)), Some(Some(&b"x"[..])));
    }
    cache.order();
    let range = cache.staged_range(&key(3), Some(&key(6)));
    assert_eq!(range.len(), 3);
    cache.rollback();
    assert_eq!(cache.get(&key(1)), Some(Some(&b"2"[..])));
    assert_eq!(cache.staged_bytes(), before);
    assert_eq!(cache.staged_range(&key(0), None).len(), 1);
    assert!(cache.bytes() <= 4 * entry);
    let packed = cache.committed_all();
    assert_eq!(packed.sorted(), [(&key(1)[..], Some(&b"2"[..]))]);
    assert_eq!(cache.committed(&key(1)), Some(Some(&b"2"[..])));
    assert!(!cache.has_staged());
    assert_eq!(budget.bytes(), cache.bytes());
}

#[test]
fn writes_after_a_batch_lookup_land_on_their_own_keys_whatever_their_order() {
    let entry = entry_bytes(4 + 1);
    let budget = Arc::new(CacheBudget::new(8 * entry));
    let mut cache = entries(&budget);
    for n in 0..6 {
        cache.fill(&key(n), Some(b"c"));
    }
    let keys: Vec<Vec<u8>> = (0..6).map(key).collect();
    cache.get_batch(keys.len(), |i| &keys[i], |_, _| {});
    // In order, skipping some, out of order, and a key the lookup did not
    // find: each write is its key's.
    for (n, value) in [(0, b"a"), (2, b"b"), (1, b"d"), (5, b"e"), (9, b"f")] {
        cache.stage(&key(n), Some(value), unknown).unwrap();
    }
    // The recent slots evicted and reused by other keys since.
    cache.get_batch(keys.len(), |i| &keys[i], |_, _| {});
    cache.committed_all();
    for n in 100..120 {
        cache.fill(&key(n), Some(b"x"));
    }
    assert!(cache.get(&key(3)).is_none(), "key 3 was evicted");
    cache
        .stage(&key(3), Some(b"g".as_slice()), unknown)
        .unwrap();
    cache
        .stage(&key(4), Some(b"h".as_slice()), unknown)
        .unwrap();
    let packed = cache.committed_all();
    let written: Vec<(Vec<u8>, Option<Vec<u8>>)> = packed
        .sorted()
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(
        written,
        [(key(3), Some(b"g".to_vec())), (key(4), Some(b"h".to_vec()))]
    );
    for (n, value) in [(0, b"a"), (1, b"d"), (2, b"b"), (5, b"e")] {
        let held = cache.get(&key(n)).map(|v| v.map(<[u8]>::to_vec));
        assert!(
            held.is_none() || held == Some(Some(value.to_vec())),
            "key {n}: {held:?}"
        );
    }
    assert_eq!(cache.get(&key(3)), Some(Some(&b"g"[..])));
}
