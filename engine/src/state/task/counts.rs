//! The change in a task's key count since its last commit, in all and per
//! store, so the task keeps an exact count of its keys (and of each
//! store's: the SDK's windowed stores hold one entry per open window)
//! without scanning them.

/// Store entries added (+1) and removed (-1) since the last commit.
#[derive(Debug, Default)]
pub(crate) struct KeyCounts {
    /// In all.
    delta: i64,
    /// `delta` at the savepoint.
    saved: i64,
    /// Per store that changed (by name), the few a task writes: a store
    /// is added once a commit, at its first key added or removed.
    stores: Vec<StoreDelta>,
}

#[derive(Debug)]
struct StoreDelta {
    name: Box<[u8]>,
    delta: i64,
    /// `delta` at the savepoint (0 for a store first changed after it).
    saved: i64,
}

impl KeyCounts {
    /// Entries added less entries removed, in all.
    pub(crate) fn delta(&self) -> i64 {
        self.delta
    }

    /// `delta` entries added to the store named `name` (negative: removed).
    pub(crate) fn add(&mut self, name: &[u8], delta: i64) {
        if delta == 0 {
            return;
        }
        self.delta += delta;
        match self.stores.iter_mut().find(|store| *store.name == *name) {
            Some(store) => store.delta += delta,
            None => self.stores.push(StoreDelta {
                name: name.into(),
                delta,
                saved: 0,
            }),
        }
    }

    /// Per store: its name and the entries added less those removed.
    pub(crate) fn per_store(&self) -> impl Iterator<Item = (&[u8], i64)> {
        self.stores
            .iter()
            .filter(|store| store.delta != 0)
            .map(|store| (&*store.name, store.delta))
    }

    /// A plugin call starts: what it changes can be undone.
    pub(crate) fn savepoint(&mut self) {
        self.saved = self.delta;
        for store in &mut self.stores {
            store.saved = store.delta;
        }
    }

    /// The call's changes are undone.
    pub(crate) fn rollback(&mut self) {
        self.delta = self.saved;
        for store in &mut self.stores {
            store.delta = store.saved;
        }
    }

    /// Commits or discards: back to no change. Returns the change in all.
    pub(crate) fn take(&mut self) -> i64 {
        self.saved = 0;
        self.stores.clear();
        std::mem::take(&mut self.delta)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyCounts;

    fn per_store(counts: &KeyCounts) -> Vec<(String, i64)> {
        counts
            .per_store()
            .map(|(name, delta)| (String::from_utf8(name.to_vec()).unwrap(), delta))
            .collect()
    }

    #[test]
    fn counts_per_store_and_in_all_and_rolls_back_to_the_savepoint() {
        let mut counts = KeyCounts::default();
        counts.add(b"a", 2);
        counts.add(b"b", 0);
        counts.savepoint();
        counts.add(b"a", -1);
        counts.add(b"b", 5);
        assert_eq!(counts.delta(), 6);
        assert_eq!(per_store(&counts), [("a".into(), 1), ("b".into(), 5)]);
        counts.rollback();
        assert_eq!(counts.delta(), 2);
        assert_eq!(
            per_store(&counts),
            [("a".into(), 2)],
            "b came after the savepoint"
        );
        counts.add(b"a", -2);
        assert_eq!(
            per_store(&counts),
            [],
            "a store back to no change is left out"
        );
        assert_eq!(counts.take(), 0);
        counts.add(b"c", 1);
        counts.rollback();
        assert_eq!((counts.delta(), per_store(&counts)), (0, vec![]));
    }
}
