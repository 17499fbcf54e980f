//! A task's uncommitted writes other than its store entries (timers,
//! above all; the store entries are staged in `cache::Entries`): an ordered
//! map of full keys to a put (`Some(value)`) or a delete (`None`), read
//! through before RocksDB, and an undo log since the last savepoint, so a
//! failed plugin call is rolled back exactly (its puts and deletes undone,
//! earlier calls' kept). The step reads due timers from it in key order.
//!
//! An ordered map rather than RocksDB's indexed write batch: scans merge it
//! with a RocksDB iterator by key, a savepoint is one integer, and the
//! whole thing is safe Rust. What one call stages is bounded by
//! `state.staged_bytes_max`; the task commits (emptying it) at
//! `state.commit_bytes_max`, and before a call would take it past the sum
//! of the two (`TaskState::stage`).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Bytes counted per entry beyond its key and value (map node, vectors).
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// An undo entry: a key and what the map held for it before (`None`:
/// nothing).
type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

/// A plugin call's undo log, and what its bounds need: whether a call is
/// under way, the bytes the log holds, and the staged bytes at the
/// savepoint. Shared by `Staged` and `cache::Entries`, each with its own
/// kind of entry.
#[derive(Debug)]
pub(crate) struct CallUndo<U> {
    /// Undo entries since the savepoint, newest last.
    entries: Vec<U>,
    /// Keeping entries only after `start`: writes outside a call (the
    /// host's own, e.g. removing fired timers) need none.
    recording: bool,
    /// Bytes the entries hold (overwritten values): counted with the staged
    /// bytes, so a call rewriting one key again and again is bounded too.
    bytes: usize,
    /// The staged bytes at the savepoint: what the call added is the rest.
    staged_at_start: usize,
}

impl<U> Default for CallUndo<U> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            recording: false,
            bytes: 0,
            staged_at_start: 0,
        }
    }
}

impl<U> CallUndo<U> {
    /// Starts a call, with `staged` bytes staged before it.
    pub(crate) fn start(&mut self, staged: usize) {
        self.entries.clear();
        self.bytes = 0;
        self.staged_at_start = staged;
        self.recording = true;
    }

    /// Ends the call (kept, rolled back, or committed with everything).
    pub(crate) fn end(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.recording = false;
    }

    /// Whether a call is under way.
    pub(crate) fn recording(&self) -> bool {
        self.recording
    }

    /// Records an undo entry holding `bytes`.
    pub(crate) fn push(&mut self, entry: U, bytes: usize) {
        self.bytes += bytes;
        self.entries.push(entry);
    }

    /// The newest undo entry, taken.
    pub(crate) fn pop(&mut self) -> Option<U> {
        self.entries.pop()
    }

    /// Bytes the undo entries hold.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes the current call staged, with `staged` bytes staged now: the
    /// growth since its start, its undo entries included (0 outside a
    /// call).
    pub(crate) fn call_bytes(&self, staged: usize) -> usize {
        match self.recording {
            true => (staged + self.bytes).saturating_sub(self.staged_at_start),
            false => 0,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Staged {
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// `(key, what the map held before)` per write since the savepoint.
    undo: CallUndo<Undo>,
    bytes: usize,
}

fn entry_bytes(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD_BYTES
}

impl Staged {
    /// What is staged for `key`: `Some(Some(v))` a put, `Some(None)` a
    /// delete, `None` nothing (read RocksDB).
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.writes.get(key).map(|value| value.as_deref())
    }

    /// Stages a put (`Some`) or delete (`None`).
    #[cfg(test)]
    pub(crate) fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let unknown = |_: &[u8]| Ok::<_, std::convert::Infallible>(false);
        let Ok(_) = self.write_with(key, value, unknown);
    }

    /// Stages a put (`Some`) or delete (`None`), and returns whether the
    /// key held a value before it: staged, else what `committed` says of a
    /// key with nothing staged (asked before anything changes; its error
    /// leaves the stage as it was). One search of the map either way.
    pub(crate) fn write_with<E>(
        &mut self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        committed: impl FnOnce(&[u8]) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let added = entry_bytes(&key, &value);
        let (existed, undo_key, old) = match self.writes.entry(key) {
            Entry::Occupied(mut entry) => {
                let existed = entry.get().is_some();
                let undo_key = self.undo.recording().then(|| entry.key().clone());
                let old = std::mem::replace(entry.get_mut(), value);
                self.bytes -= entry_bytes(entry.key(), &old);
                (existed, undo_key, Some(old))
            }
            Entry::Vacant(entry) => {
                let existed = committed(entry.key())?;
                let undo_key = self.undo.recording().then(|| entry.key().clone());
                entry.insert(value);
                (existed, undo_key, None)
            }
        };
        self.bytes += added;
        if let Some(key) = undo_key {
            let bytes = key.len()
                + old.as_ref().and_then(|v| v.as_ref()).map_or(0, Vec::len)
                + ENTRY_OVERHEAD_BYTES;
            self.undo.push((key, old), bytes);
        }
        Ok(existed)
    }

    /// Staged writes with keys in `[start, end)`, in key order.
    pub(crate) fn range<'a>(
        &'a self,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let upper = match end {
            // An empty range (BTreeMap::range would panic on it).
            Some(end) if end <= start => Bound::Excluded(start.to_vec()),
            Some(end) => Bound::Excluded(end.to_vec()),
            None => Bound::Unbounded,
        };
        self.writes
            .range::<Vec<u8>, _>((Bound::Included(start.to_vec()), upper))
            .map(|(key, value)| (key.as_slice(), value.as_deref()))
    }

    /// Starts a call: its writes can be undone by `rollback`.
    pub(crate) fn savepoint(&mut self) {
        self.undo.start(self.bytes);
    }

    /// Whether a call is under way (writes since `savepoint` are undoable).
    pub(crate) fn in_call(&self) -> bool {
        self.undo.recording()
    }

    /// Bytes the current call staged: the growth since its savepoint, its
    /// undo log included (0 outside a call).
    pub(crate) fn call_bytes(&self) -> usize {
        self.undo.call_bytes(self.bytes)
    }

    /// Keeps the call's writes.
    pub(crate) fn release(&mut self) {
        self.undo.end();
    }

    /// Undoes every write since `savepoint`.
    pub(crate) fn rollback(&mut self) {
        while let Some((key, previous)) = self.undo.pop() {
            let current = match previous {
                Some(old) => {
                    self.bytes += entry_bytes(&key, &old);
                    self.writes.insert(key.clone(), old)
                }
                None => self.writes.remove(&key),
            };
            if let Some(current) = current {
                self.bytes -= entry_bytes(&key, &current);
            }
        }
        self.undo.end();
    }

    /// Bytes staged (keys, values and a per-entry overhead), the undo
    /// log's included.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes + self.undo.bytes()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Stages `writes` again, on an empty stage: those of a commit in
    /// flight, so reads see them until it lands (outside a call).
    pub(crate) fn keep_in_flight(&mut self, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        debug_assert!(self.writes.is_empty() && !self.undo.recording());
        self.bytes = writes.iter().map(|(k, v)| entry_bytes(k, v)).sum();
        self.writes = writes;
    }

    /// After the commit of `landed` is written: unstages each of its
    /// writes staged the same since (outside a call).
    pub(crate) fn landed(&mut self, landed: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        debug_assert!(!self.undo.recording());
        for (key, value) in landed {
            if self.writes.get(key) == Some(value) {
                self.writes.remove(key);
                self.bytes -= entry_bytes(key, value);
            }
        }
    }

    /// Takes every staged write, leaving the stage empty.
    pub(crate) fn take(&mut self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.undo.end();
        self.bytes = 0;
        std::mem::take(&mut self.writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(staged: &mut Staged, key: &str, value: &str) {
        staged.write(key.into(), Some(value.into()));
    }

    #[test]
    fn rollback_undoes_exactly_the_call() {
        let mut staged = Staged::default();
        put(&mut staged, "a", "1");
        let before = staged.bytes();
        staged.savepoint();
        put(&mut staged, "a", "2");
        put(&mut staged, "b", "3");
        staged.write(b"a".to_vec(), None);
        put(&mut staged, "c", "4");
        staged.rollback();
        assert_eq!(staged.get(b"a"), Some(Some(&b"1"[..])));
        assert_eq!(staged.get(b"b"), None);
        assert_eq!(staged.get(b"c"), None);
        assert_eq!(staged.bytes(), before);
        // A released call is kept by a later rollback.
        staged.savepoint();
        put(&mut staged, "b", "5");
        staged.release();
        staged.savepoint();
        staged.write(b"b".to_vec(), None);
        staged.rollback();
        assert_eq!(staged.get(b"b"), Some(Some(&b"5"[..])));
    }

    #[test]
    fn ranges_are_ordered_and_bounded() {
        let mut staged = Staged::default();
        for key in ["d", "a", "c", "b"] {
            put(&mut staged, key, key);
        }
        let keys: Vec<_> = staged.range(b"b", Some(b"d")).map(|(k, _)| k).collect();
        assert_eq!(keys, vec![&b"b"[..], &b"c"[..]]);
        assert_eq!(staged.range(b"c", None).count(), 2);
        let taken = staged.take();
        assert_eq!(taken.len(), 4);
        assert!(staged.is_empty() && staged.bytes() == 0);
    }
}
