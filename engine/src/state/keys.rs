//! The key layout inside a processor's column family.
//!
//! ```text
//! task metadata   task:u32be 0x00
//! store entry     task:u32be 0x01 name_len:u8 name user_key
//! timer           task:u32be 0x02 domain:u8 at:i64 user_key
//! restoring       task:u32be 0x03
//! ```
//! `restoring` is present only while a restore from the changelog is
//! under way (the task's range is incomplete until it is gone).
//! `task` is the input partition. `at` is big-endian with the sign bit
//! flipped, so byte order is numeric order and timers sort by time. A
//! partition's state is the range `[task, task + 1)`.

use super::StateError;

/// Longest store name (it is part of every key of the store).
pub(crate) const STORE_NAME_BYTES_MAX: usize = 64;

const META: u8 = 0x00;
const STORE: u8 = 0x01;
const TIMER: u8 = 0x02;
const RESTORING: u8 = 0x03;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// Stream time (record timestamps).
    EventTime = 0,
    /// The broker's wall clock.
    ProcessingTime = 1,
}

impl Domain {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::EventTime),
            1 => Some(Self::ProcessingTime),
            _ => None,
        }
    }
}

/// Store names: `[A-Za-z0-9._-]`, 1 to 64 bytes.
pub(crate) fn validate_store_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= STORE_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadStoreName(name.to_string()))
    }
}

/// The first key of task `task` (inclusive).
pub(crate) fn task_start(task: u32) -> Vec<u8> {
    task.to_be_bytes().to_vec()
}

/// The first key after task `task` (exclusive end of its range).
pub(crate) fn task_end(task: u32) -> Vec<u8> {
    match task.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 5],
    }
}

pub(crate) fn meta(task: u32) -> Vec<u8> {
    let mut key = task_start(task);
    key.push(META);
    key
}

/// The marker of a restore under way in `task`.
pub(crate) fn restoring(task: u32) -> Vec<u8> {
    let mut key = task_start(task);
    key.push(RESTORING);
    key
}

/// Whether `suffix` (a key without its task) is a well-formed store entry
/// or timer key: what a changelog record may carry besides the metadata.
pub(crate) fn is_entry_suffix(suffix: &[u8]) -> bool {
    match suffix {
        [STORE, name_len, rest @ ..] => {
            *name_len as usize <= STORE_NAME_BYTES_MAX && rest.len() >= *name_len as usize
        }
        [TIMER, domain, rest @ ..] => Domain::from_byte(*domain).is_some() && rest.len() >= 8,
        _ => false,
    }
}

/// Whether `suffix` is the task metadata key without its task.
pub(crate) fn is_meta_suffix(suffix: &[u8]) -> bool {
    suffix == [META]
}

/// The range of every store entry of `task` (all its stores), `[start,
/// end)`.
pub(crate) fn stores_range(task: u32) -> (Vec<u8>, Vec<u8>) {
    let mut start = task_start(task);
    start.push(STORE);
    let mut end = task_start(task);
    end.push(STORE + 1);
    (start, end)
}

/// The prefix of every key of store `name` in `task`.
pub(crate) fn store_prefix(task: u32, name: &str) -> Vec<u8> {
    debug_assert!(name.len() <= STORE_NAME_BYTES_MAX);
    let mut key = Vec::with_capacity(6 + name.len());
    key.extend_from_slice(&task.to_be_bytes());
    key.push(STORE);
    key.push(name.len() as u8);
    key.extend_from_slice(name.as_bytes());
    key
}

/// The store name of a store entry's full key (or a store prefix); empty
/// for a key too short to hold one.
pub(crate) fn store_name(key: &[u8]) -> &[u8] {
    let Some(&len) = key.get(5) else {
        return &[];
    };
    key.get(6..6 + usize::from(len)).unwrap_or(&[])
}

/// Whether `key` (a full key, or a store prefix) is in one of `task`'s
/// stores.
pub(crate) fn is_store_entry_of(task: u32, key: &[u8]) -> bool {
    key.len() > 5 && key[..4] == task.to_be_bytes() && key[4] == STORE
}

pub(crate) fn entry(prefix: &[u8], user_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + user_key.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(user_key);
    key
}

/// The first key after every key starting with `prefix`, or `None` when
/// there is none (the prefix is all 0xff).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Whether `start <= key < end`.
pub(crate) fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && key < end
}

/// The end of the range of `cleared` (`[start, end)` each) holding
/// `key`, if one does.
pub(crate) fn in_cleared<'a>(cleared: &'a [(Vec<u8>, Vec<u8>)], key: &[u8]) -> Option<&'a [u8]> {
    cleared
        .iter()
        .find(|(from, to)| in_range(key, from, to))
        .map(|(_, to)| to.as_slice())
}

/// Sorts `items` by their keys in byte order, as `sort_unstable_by` with
/// `key(a).cmp(key(b))` would, reading each key a few times instead of
/// at every comparison.
///
/// Why: a commit sorts its staged writes (RocksDB inserts a sorted batch
/// into its memtable from a hint per prefix), tens of thousands of keys
/// that live in as many cache slots. A comparison sort reads two keys per
/// comparison, each a cache miss, and compares their shared prefix (task,
/// store, window) byte by byte; here the keys' common prefix is skipped,
/// and the next 8 bytes of each key are read once into an integer beside
/// it, so the sort compares integers in one compact array. Keys with the
/// same 8 bytes are sorted again past them (most-significant-digit radix
/// order); runs under 16 keys with a comparison sort.
pub(crate) fn sort_by_key<T>(items: &mut Vec<T>, key: impl Fn(&T) -> &[u8]) {
    /// Runs shorter than this are sorted by comparing their keys.
    const SMALL_RUN: usize = 16;
    if items.len() < 2 {
        return;
    }
    let mut keyed: Vec<(u64, T)> = items.drain(..).map(|item| (0, item)).collect();
    // Runs of `keyed` still to sort, `(start, end, depth)`: the keys of a
    // run share their first `depth` bytes, and are longer than `depth`
    // (but for the first run's, at depth 0).
    let mut runs = vec![(0, keyed.len(), 0)];
    while let Some((start, end, depth)) = runs.pop() {
        let run = &mut keyed[start..end];
        if run.len() < SMALL_RUN {
            run.sort_unstable_by(|a, b| key(&a.1)[depth..].cmp(&key(&b.1)[depth..]));
            continue;
        }
        let depth = words_past_common_prefix(run, depth, &key);
        run.sort_unstable_by_key(|(word, _)| *word);
        let past = depth + 8;
        let mut first = 0;
        while first < run.len() {
            let word = run[first].0;
            let mut last = first + 1;
            while last < run.len() && run[last].0 == word {
                last += 1;
            }
            if last - first > 1 {
                // Keys ending within the word are prefixes of the group's
                // others (the word pads them with zeros): first, shortest
                // first. The rest go on past the word.
                let group = &mut run[first..last];
                group.sort_unstable_by_key(|(_, item)| key(item).len().min(past + 1));
                let ended = group.partition_point(|(_, item)| key(item).len() <= past);
                if last - first - ended > 1 {
                    runs.push((start + first + ended, start + last, past));
                }
            }
            first = last;
        }
    }
    items.extend(keyed.into_iter().map(|(_, item)| item));
}

/// Sets each key's word past the run's common prefix (the keys share
/// their first `depth` bytes) and returns where the words start.
///
/// One pass over the keys in the common case: the prefix is guessed from
/// a sample, and each key's word is read as its prefix is checked; a key
/// that does not share the guess sends it back for the exact prefix (a
/// second pass).
fn words_past_common_prefix<T>(
    run: &mut [(u64, T)],
    depth: usize,
    key: &impl Fn(&T) -> &[u8],
) -> usize {
    /// Keys the guess is taken from.
    const SAMPLE: usize = 16;
    let first = key(&run[0].1).to_vec();
    let first = &first[depth..];
    let shared_with_first = |items: &mut dyn Iterator<Item = &(u64, T)>| {
        items.fold(first.len(), |common, (_, item)| {
            common.min(mismatch(first, &key(item)[depth..]))
        })
    };
    let step = (run.len() / SAMPLE).max(1);
    let guess = shared_with_first(&mut run.iter().step_by(step));
    let prefix = &first[..guess];
    let mut shared = true;
    for (word, item) in run.iter_mut() {
        let key = key(item);
        shared &= key.len() >= depth + guess && &key[depth..depth + guess] == prefix;
        *word = word_at(key, depth + guess);
    }
    if shared {
        return depth + guess;
    }
    let common = shared_with_first(&mut run.iter());
    for (word, item) in run.iter_mut() {
        *word = word_at(key(item), depth + common);
    }
    depth + common
}

/// The length of the longest common prefix of `a` and `b`.
fn mismatch(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let mut at = 0;
    while at + 8 <= len {
        let x = u64::from_be_bytes(a[at..at + 8].try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if x != y {
            return at + (x ^ y).leading_zeros() as usize / 8;
        }
        at += 8;
    }
    at + a[at..len]
        .iter()
        .zip(&b[at..len])
        .take_while(|(x, y)| x == y)
        .count()
}

/// The 8 bytes of `key` from `at`, big-endian, zeros past its end.
fn word_at(key: &[u8], at: usize) -> u64 {
    if let Some(bytes) = key.get(at..at + 8) {
        return u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
    }
    let tail = key.get(at..).unwrap_or_default();
    let mut bytes = [0; 8];
    bytes[..tail.len()].copy_from_slice(tail);
    u64::from_be_bytes(bytes)
}

/// `i64` as 8 bytes whose byte order is numeric order.
pub(crate) fn ordered_i64(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn from_ordered_i64(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The prefix of `task`'s timers in `domain`.
pub(crate) fn timer_prefix(task: u32, domain: Domain) -> Vec<u8> {
    let mut key = task_start(task);
    key.push(TIMER);
    key.push(domain as u8);
    key
}

pub(crate) fn timer(task: u32, domain: Domain, at: i64, user_key: &[u8]) -> Vec<u8> {
    let mut key = timer_prefix(task, domain);
    key.extend_from_slice(&ordered_i64(at));
    key.extend_from_slice(user_key);
    key
}

/// The exclusive end of `task`'s `domain` timers due at or before `at`.
pub(crate) fn timers_due_end(task: u32, domain: Domain, at: i64) -> Vec<u8> {
    match at.checked_add(1) {
        Some(next) => {
            let mut key = timer_prefix(task, domain);
            key.extend_from_slice(&ordered_i64(next));
            key
        }
        None => prefix_end(&timer_prefix(task, domain)).expect("the prefix has a successor"),
    }
}

/// Splits a timer key into `(domain, at, user key)`.
pub(crate) fn parse_timer(key: &[u8]) -> Option<(Domain, i64, &[u8])> {
    if key.len() < 14 || key[4] != TIMER {
        return None;
    }
    let domain = Domain::from_byte(key[5])?;
    let at = from_ordered_i64(key[6..14].try_into().ok()?);
    Some((domain, at, &key[14..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_integers_sort_as_numbers() {
        let values = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for pair in values.windows(2) {
            assert!(ordered_i64(pair[0]) < ordered_i64(pair[1]), "{pair:?}");
        }
        for value in values {
            assert_eq!(from_ordered_i64(ordered_i64(value)), value);
        }
    }

    #[test]
    fn timers_round_trip_and_sort_by_time_then_key() {
        let a = timer(3, Domain::EventTime, -10, b"z");
        let b = timer(3, Domain::EventTime, 5, b"a");
        let c = timer(3, Domain::EventTime, 5, b"b");
        assert!(a < b && b < c);
        assert_eq!(parse_timer(&b), Some((Domain::EventTime, 5, &b"a"[..])));
        assert!(c < timers_due_end(3, Domain::EventTime, 5));
        assert!(timer(3, Domain::EventTime, 6, b"") >= timers_due_end(3, Domain::EventTime, 5));
        assert!(timer(3, Domain::ProcessingTime, i64::MIN, b"") > c);
    }

    #[test]
    fn tasks_and_stores_are_disjoint_ranges() {
        let prefix = store_prefix(7, "counts");
        assert!(prefix.as_slice() >= task_start(7).as_slice());
        assert!(prefix.as_slice() < task_end(7).as_slice());
        assert!(meta(7) < prefix);
        // A store whose name is a prefix of another's does not overlap it.
        let short = entry(&store_prefix(7, "count"), b"s");
        assert!(!short.starts_with(&prefix));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
        assert_eq!(task_end(u32::MAX), vec![0xff; 5]);
        assert!(validate_store_name("page-counts.v1").is_ok());
        assert!(validate_store_name("").is_err());
        assert!(validate_store_name("a/b").is_err());
    }

    #[test]
    fn keys_sort_as_a_comparison_sort_would() {
        // Keys built to defeat the word at a time: common prefixes of
        // every length, keys that are prefixes of others, zero bytes that
        // look like the word's padding, long equal stretches, duplicates.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for round in 0..200 {
            let count = next(400) as usize;
            let prefix_len = next(30) as usize;
            let alphabet = 1 + next(4) as u8;
            let mut keys: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let mut key = vec![7u8; prefix_len];
                    for _ in 0..next(24) {
                        key.push(next(u64::from(alphabet)) as u8);
                    }
                    key
                })
                .collect();
            if round % 5 == 0 && count > 1 {
                let again = keys[0].clone();
                keys.push(again);
            }
            if round % 3 == 0 && count > 40 {
                // Keys off the prefix the sample shares (the sample takes
                // every (len / 16)th key from the first): shorter, smaller
                // and larger ones.
                keys[1].truncate(prefix_len / 2);
                if let Some(byte) = keys[2].get_mut(prefix_len / 2) {
                    *byte = 9;
                }
                if let Some(byte) = keys[3].get_mut(prefix_len / 3) {
                    *byte = 0;
                }
            }
            let mut expected = keys.clone();
            expected.sort();
            let mut items: Vec<(usize, &[u8])> =
                keys.iter().map(Vec::as_slice).enumerate().collect();
            sort_by_key(&mut items, |(_, key)| key);
            let sorted: Vec<&[u8]> = items.iter().map(|(_, key)| *key).collect();
            assert_eq!(sorted, expected, "round {round}");
            // Every item is kept once.
            let mut indices: Vec<usize> = items.iter().map(|(index, _)| *index).collect();
            indices.sort_unstable();
            assert_eq!(indices, (0..keys.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn suffixes_are_recognised() {
        let entry = entry(&store_prefix(7, "counts"), b"k");
        assert!(is_entry_suffix(&entry[4..]));
        assert!(is_entry_suffix(&timer(7, Domain::EventTime, 5, b"k")[4..]));
        assert!(is_meta_suffix(&meta(7)[4..]));
        assert!(!is_entry_suffix(&meta(7)[4..]));
        assert!(!is_entry_suffix(&restoring(7)[4..]));
        assert!(!is_entry_suffix(&[STORE, 9, b'a']));
        assert!(!is_entry_suffix(&[TIMER, 7, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_entry_suffix(&[]));
    }
}
