//! The host's stand-in for a task's state (what stores and the clock use
//! off `wasm32`; on `wasm32` only the test harness holds one): the
//! stores, the timers, stream time, the late count and a wall clock, in
//! memory, with the broker's semantics, so a plugin is unit-testable
//! without WebAssembly.
//!
//! The state lives in a thread-local slot. A test harness
//! ([`testing::Task`](crate::testing::Task)) owns its task's state and
//! swaps it into the slot around each call, snapshotting it first: a
//! failing call is rolled back by restoring the snapshot, which is the
//! broker's "a failing call leaves no trace". Outside a harness the slot
//! holds a permissive task where any store name opens, for direct unit
//! tests of state code.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::clock::Domain;

/// The broker's default bound on a key (`state.key_bytes_max`).
pub(crate) const KEY_BYTES_MAX: usize = 16 * 1024;
/// The broker's default bound on a value (`state.value_bytes_max`).
pub(crate) const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// The most entries one scan page returns (`state.scan_entries_max`).
pub(crate) const SCAN_ENTRIES_MAX: u32 = 1_000;

/// One task's state, as the broker keeps it.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskState {
    /// The store names the deployment declares; `None` lets any name open.
    pub(crate) declared: Option<BTreeSet<String>>,
    /// Read-only stores (materialised tables): writes trap.
    pub(crate) tables: BTreeSet<String>,
    /// The stores opened as windowed (their entries are open windows).
    pub(crate) windowed: BTreeSet<String>,
    /// Every store's entries, by store name.
    pub(crate) stores: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// The largest timestamp of the records before the current batch.
    pub(crate) stream_time: Option<i64>,
    /// Scheduled timers, in firing order within a domain: `(at, key)`.
    pub(crate) timers: BTreeSet<(Domain, i64, Vec<u8>)>,
    /// Records counted as late.
    pub(crate) late_dropped: u64,
    /// The wall clock, milliseconds since the Unix epoch.
    pub(crate) wall_clock_ms: i64,
}

thread_local! {
    static TASK: RefCell<TaskState> = RefCell::new(TaskState::default());
}

/// Runs `f` on the current task's state.
pub(crate) fn with<T>(f: impl FnOnce(&mut TaskState) -> T) -> T {
    TASK.with_borrow_mut(f)
}

/// Installs `task` as the current task, returning the one it replaces.
pub(crate) fn replace(task: TaskState) -> TaskState {
    TASK.with_borrow_mut(|slot| std::mem::replace(slot, task))
}

/// Takes the current task out (leaving a permissive, empty one).
#[cfg(test)]
pub(crate) fn take() -> TaskState {
    replace(TaskState::default())
}

impl TaskState {
    /// Whether store `name` opens here.
    pub(crate) fn open(&self, name: &str) -> Result<(), String> {
        let known = self.tables.contains(name)
            || self
                .declared
                .as_ref()
                .is_none_or(|declared| declared.contains(name));
        if known {
            return Ok(());
        }
        Err(format!(
            "store `{name}` is not declared by this processor's deployment (declare it with --store {name})"
        ))
    }

    /// Whether store `name` opens here as windowed (not a table); it is
    /// remembered as windowed.
    pub(crate) fn open_windowed(&mut self, name: &str) -> Result<(), String> {
        if self.tables.contains(name) {
            return Err(format!(
                "store `{name}` is a read-only table: it cannot be opened as windowed"
            ));
        }
        self.open(name)?;
        self.windowed.insert(name.to_owned());
        Ok(())
    }

    /// Store `name`'s entries, for reading.
    pub(crate) fn entries(&self, name: &str) -> Option<&BTreeMap<Vec<u8>, Vec<u8>>> {
        self.stores.get(name)
    }

    /// Store `name`'s entries, for writing. Traps (panics) on a table, as
    /// the broker traps a write to a read-only store.
    pub(crate) fn entries_mut(&mut self, name: &str) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        assert!(
            !self.tables.contains(name),
            "store `{name}` is a read-only table: writes are refused"
        );
        self.stores.entry(name.to_owned()).or_default()
    }
}

/// Traps (panics) on a key or value over the broker's default bounds.
pub(crate) fn check_sizes(key: &[u8], value: Option<&[u8]>) {
    assert!(
        key.len() <= KEY_BYTES_MAX,
        "a state key of {} bytes is over state.key_bytes_max ({KEY_BYTES_MAX})",
        key.len()
    );
    if let Some(value) = value {
        assert!(
            value.len() <= VALUE_BYTES_MAX,
            "a state value of {} bytes is over state.value_bytes_max ({VALUE_BYTES_MAX})",
            value.len()
        );
    }
}
