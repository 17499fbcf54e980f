//! Keyed state: the task's named stores (the contract's `state` import).
//!
//! [`Store`] is the raw byte handle, one method per WIT function.
//! [`KeyValueStore`] types it: keys through [`Key`], values as JSON, so the
//! broker's state queries show readable values. [`Table`] is a read-only
//! typed view of a table the broker materialises from a topic.
//! [`Prefetched`] reads a batch's keys in one crossing and writes them back
//! in one, which is what the aggregation and window helpers run on.
//!
//! Semantics (the broker's, mirrored on the host by an in-memory task, see
//! [`testing::Task`](crate::testing::Task)): stores are
//! declared in the deployment (`--store NAME`) and scoped to the task (one
//! input partition); writes are staged and roll back when the call fails
//! (an error or a trap), so a failing `process` or `on_timer` leaves no
//! trace; reads see the call's own writes. Keys are at most 16 KiB and
//! values 1 MiB by default: a larger one traps.

// Also compiled for wasm32, where only `testing` uses it (the stores and the
// clock there are the broker's).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) mod host;
mod packed;
mod prefetch;
mod typed;

pub use prefetch::Prefetched;
pub use typed::{Key, KeyBytes, KeyValueStore, Scan, Table};

use crate::{Error, Result};
#[cfg(target_arch = "wasm32")]
use packed::Packed;
pub(crate) use packed::PackedEntries;

/// One page of a scan, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// `(key, value)` entries in key order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The key to start the next page at; `None` when the range is
    /// exhausted.
    pub next: Option<Vec<u8>>,
}

/// One named store of the task, as raw bytes.
///
/// ```
/// use sluice_sdk::state::Store;
/// let store = Store::open("counts")?;
/// store.put(b"a", b"x");
/// assert_eq!(store.add(b"n", 2), 2);
/// assert_eq!(store.get(b"n").as_deref(), Some(&b"2"[..]));
/// # Ok::<(), sluice_sdk::Error>(())
/// ```
pub struct Store {
    name: String,
    #[cfg(target_arch = "wasm32")]
    handle: crate::bindings::sluice::processor::state::Store,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Store")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens store `name` of this task. Fails for a name the deployment
    /// does not declare.
    pub fn open(name: &str) -> Result<Self> {
        Self::opening(name, false)
    }

    /// Opens store `name` as a windowed store: one entry per key's
    /// window, so the broker counts its entries as the partition's open
    /// windows (`open_windows` in the processor's status). The SDK's
    /// windows ([`crate::window`]) open their stores so. Otherwise the
    /// same as [`Store::open`]; a table is refused.
    pub fn open_windowed(name: &str) -> Result<Self> {
        Self::opening(name, true)
    }

    fn opening(name: &str, windowed: bool) -> Result<Self> {
        #[cfg(target_arch = "wasm32")]
        let store = {
            use crate::bindings::sluice::processor::state::Store as Handle;
            match windowed {
                true => Handle::open_windowed(name),
                false => Handle::open(name),
            }
            .map(|handle| Self {
                name: name.to_owned(),
                handle,
            })
        };
        #[cfg(not(target_arch = "wasm32"))]
        let store = host::with(|task| match windowed {
            true => task.open_windowed(name),
            false => task.open(name),
        })
        .map(|()| Self {
            name: name.to_owned(),
        });
        store.map_err(|message| Error::new(message).context(format_args!("store `{name}`")))
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value at `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        #[cfg(target_arch = "wasm32")]
        return self.handle.get(key);
        #[cfg(not(target_arch = "wasm32"))]
        host::with(|task| task.entries(&self.name)?.get(key).cloned())
    }

    /// The values at `keys`, in the same order, in one crossing.
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Option<Vec<u8>>> {
        let mut values = vec![None; keys.len()];
        self.get_many_with(keys, |index, value| {
            values[index] = value.map(<[u8]>::to_vec)
        });
        values
    }

    /// [`get_many`](Self::get_many) handing value `i` to `answer(i,
    /// value)` as a slice, without copying it out: the keys cross as one
    /// buffer and the values come back as one.
    pub fn get_many_with<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        mut answer: impl FnMut(usize, Option<&[u8]>),
    ) {
        #[cfg(target_arch = "wasm32")]
        {
            let bytes = keys.iter().map(|key| key.as_ref().len()).sum();
            let mut packed = Packed::with_capacity(keys.len(), bytes);
            for key in keys {
                packed.push(key.as_ref());
            }
            let values = self.handle.get_many(&packed.data, &packed.spans);
            for (index, span) in values.spans.iter().enumerate() {
                answer(index, span.map(|span| packed::slice(&values.data, span)));
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        for (index, key) in keys.iter().enumerate() {
            answer(index, self.get(key.as_ref()).as_deref());
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &[u8], value: &[u8]) {
        #[cfg(target_arch = "wasm32")]
        self.handle.put(key, value);
        #[cfg(not(target_arch = "wasm32"))]
        {
            host::check_sizes(key, Some(value));
            host::with(|task| {
                task.entries_mut(&self.name)
                    .insert(key.to_vec(), value.to_vec())
            });
        }
    }

    /// Sets several entries in one crossing, in order.
    pub fn put_many(&self, entries: &[(Vec<u8>, Vec<u8>)]) {
        let bytes = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut packed = PackedEntries::with_capacity(entries.len(), bytes);
        for (key, value) in entries {
            packed.push(key, |data| data.extend_from_slice(value));
        }
        self.put_packed(&packed);
    }

    /// Writes entries packed in one buffer, in one crossing, in order.
    pub(crate) fn put_packed(&self, entries: &PackedEntries) {
        if entries.is_empty() {
            return;
        }
        #[cfg(target_arch = "wasm32")]
        self.handle.put_many(&entries.data, &entries.spans);
        #[cfg(not(target_arch = "wasm32"))]
        for (key, value) in entries.iter() {
            self.put(key, value);
        }
    }

    /// Deletes `key` (nothing happens if it is absent).
    pub fn delete(&self, key: &[u8]) {
        #[cfg(target_arch = "wasm32")]
        self.handle.delete(key);
        #[cfg(not(target_arch = "wasm32"))]
        {
            host::check_sizes(key, None);
            host::with(|task| task.entries_mut(&self.name).remove(key));
        }
    }

    /// Adds `delta` to the counter at `key` and returns the new value. A
    /// counter is stored as decimal ASCII text (`42`, `-7`): it reads as a
    /// JSON number, so a [`KeyValueStore`] of an integer type reads it too.
    /// An absent key counts as 0; a value that is not such a number, or an
    /// overflow, traps.
    pub fn add(&self, key: &[u8], delta: i64) -> i64 {
        #[cfg(target_arch = "wasm32")]
        return self.handle.add(key, delta);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let current = self.get(key).map_or(0, |text| {
                std::str::from_utf8(&text)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok())
                    .unwrap_or_else(|| panic!("store `{}`: add on a non-counter value", self.name))
            });
            let sum = current
                .checked_add(delta)
                .unwrap_or_else(|| panic!("store `{}`: counter overflow", self.name));
            self.put(key, sum.to_string().as_bytes());
            sum
        }
    }

    /// One page of the entries with `start <= key < end` (`end` `None`: to
    /// the last key), at most `limit` of them, in key order. Continue from
    /// [`Page::next`], or use [`scan_all`](Self::scan_all).
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Page {
        #[cfg(target_arch = "wasm32")]
        {
            let page = self.handle.scan(start, end, limit);
            Page {
                entries: page.entries,
                next: page.next,
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        host::with(|task| host_scan(task.entries(&self.name), start, end, limit))
    }

    /// Every entry with `start <= key < end`, fetched page by page.
    pub fn scan_all(&self, start: &[u8], end: Option<&[u8]>) -> RawScan<'_> {
        RawScan {
            store: self,
            next: Some(start.to_vec()),
            end: end.map(<[u8]>::to_vec),
            page: Vec::new().into_iter(),
        }
    }

    /// Deletes the entries with `start <= key < end` (`end` `None`: to the
    /// last key) and returns how many there were.
    pub fn delete_range(&self, start: &[u8], end: Option<&[u8]>) -> u64 {
        #[cfg(target_arch = "wasm32")]
        return self.handle.delete_range(start, end);
        #[cfg(not(target_arch = "wasm32"))]
        host::with(|task| {
            let entries = task.entries_mut(&self.name);
            let doomed: Vec<Vec<u8>> = entries
                .range(start.to_vec()..)
                .map(|(key, _)| key)
                .take_while(|key| end.is_none_or(|end| key.as_slice() < end))
                .cloned()
                .collect();
            for key in &doomed {
                entries.remove(key);
            }
            doomed.len() as u64
        })
    }

    /// Deletes the entries with `start <= key < end` (`end` `None`: to the
    /// last key) without reading them: the broker commits the range as one
    /// range tombstone however many keys it holds, where
    /// [`delete_range`](Self::delete_range) reads every key to count it.
    /// For ranges (a window's keys), not single keys: past a few ranges
    /// between two commits the broker deletes key by key.
    pub fn clear_range(&self, start: &[u8], end: Option<&[u8]>) {
        #[cfg(target_arch = "wasm32")]
        self.handle.clear_range(start, end);
        #[cfg(not(target_arch = "wasm32"))]
        self.delete_range(start, end);
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn host_scan(
    entries: Option<&std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
    start: &[u8],
    end: Option<&[u8]>,
    limit: u32,
) -> Page {
    let Some(entries) = entries else {
        return Page::default();
    };
    let limit = limit.clamp(1, host::SCAN_ENTRIES_MAX) as usize;
    let mut range = entries
        .range(start.to_vec()..)
        .take_while(|(key, _)| end.is_none_or(|end| key.as_slice() < end));
    let page: Vec<_> = range
        .by_ref()
        .take(limit)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Page {
        entries: page,
        next: range.next().map(|(key, _)| key.clone()),
    }
}

/// The entries of a raw range, fetched a page at a time (see
/// [`Store::scan_all`]).
#[derive(Debug)]
pub struct RawScan<'a> {
    store: &'a Store,
    next: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
}

/// How many entries a [`RawScan`] asks for per page.
const SCAN_PAGE_ENTRIES: u32 = 256;

impl Iterator for RawScan<'_> {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.page.next() {
                return Some(entry);
            }
            let start = self.next.take()?;
            let page = self
                .store
                .scan(&start, self.end.as_deref(), SCAN_PAGE_ENTRIES);
            self.next = page.next;
            self.page = page.entries.into_iter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() {
        host::replace(host::TaskState::default());
    }

    #[test]
    fn put_get_delete_and_counters() {
        fresh();
        let store = Store::open("s").unwrap();
        store.put(b"k", b"v");
        assert_eq!(store.get(b"k"), Some(b"v".to_vec()));
        assert_eq!(
            store.get_many(&[b"k".to_vec(), b"x".to_vec()]),
            [Some(b"v".to_vec()), None]
        );
        store.delete(b"k");
        assert_eq!(store.get(b"k"), None);
        assert_eq!(store.add(b"n", 5), 5);
        assert_eq!(store.add(b"n", -7), -2);
        assert_eq!(store.get(b"n"), Some(b"-2".to_vec()));
    }

    #[test]
    #[should_panic(expected = "non-counter")]
    fn add_on_text_traps() {
        fresh();
        let store = Store::open("s").unwrap();
        store.put(b"n", b"ten");
        store.add(b"n", 1);
    }

    #[test]
    fn scans_page_and_ranges_delete() {
        fresh();
        let store = Store::open("s").unwrap();
        for key in 0_u8..10 {
            store.put(&[key], &[key]);
        }
        let page = store.scan(&[2], Some(&[8]), 4);
        let keys: Vec<u8> = page.entries.iter().map(|(key, _)| key[0]).collect();
        assert_eq!(keys, [2, 3, 4, 5]);
        assert_eq!(page.next, Some(vec![6]));
        let all: Vec<u8> = store
            .scan_all(&[2], Some(&[8]))
            .map(|(k, _)| k[0])
            .collect();
        assert_eq!(all, [2, 3, 4, 5, 6, 7]);
        assert_eq!(store.scan(&[9], None, 4).next, None);
        assert_eq!(store.delete_range(&[3], Some(&[5])), 2);
        assert_eq!(store.delete_range(&[8], None), 2);
        let left: Vec<u8> = store.scan_all(&[], None).map(|(k, _)| k[0]).collect();
        assert_eq!(left, [0, 1, 2, 5, 6, 7]);
        store.clear_range(&[1], Some(&[6]));
        let left: Vec<u8> = store.scan_all(&[], None).map(|(k, _)| k[0]).collect();
        assert_eq!(left, [0, 6, 7]);
    }

    #[test]
    fn undeclared_stores_do_not_open_and_tables_refuse_writes() {
        let mut task = host::TaskState {
            declared: Some(["counts".to_owned()].into()),
            ..host::TaskState::default()
        };
        task.tables.insert("rates".to_owned());
        host::replace(task);
        let error = Store::open("other").unwrap_err();
        assert!(error.message().contains("--store other"), "{error}");
        assert!(Store::open("counts").is_ok());
        let table = Store::open("rates").unwrap();
        assert_eq!(table.get(b"x"), None);
        let write = std::panic::catch_unwind(|| table.put(b"x", b"1"));
        assert!(write.is_err());
        let error = Store::open_windowed("rates").unwrap_err();
        assert!(error.message().contains("read-only table"), "{error}");
        assert!(Store::open_windowed("other").is_err());
        Store::open_windowed("counts").unwrap();
        let task = host::take();
        assert_eq!(task.windowed, ["counts".to_owned()].into());
    }

    #[test]
    #[should_panic(expected = "state.key_bytes_max")]
    fn oversized_keys_trap() {
        fresh();
        Store::open("s")
            .unwrap()
            .put(&vec![0; host::KEY_BYTES_MAX + 1], b"");
    }
}
