//! A bounded cache of opened closed segments (file handle plus index).
//!
//! Active segments stay open; closed ones are opened on first read and kept
//! until `open_segments_max` others are more recently used. Compaction and
//! retention evict entries when they replace or delete files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::segment::SegmentFiles;
use super::LogError;

/// The cache, shared by all partitions of a store.
pub(crate) struct HandleCache {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tick: u64,
    entries: HashMap<PathBuf, (u64, Arc<SegmentFiles>)>,
}

impl HandleCache {
    /// A cache holding at most `capacity` (at least 1) opened segments.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::default(),
        }
    }

    /// The cached files of `path`, or loads them with `load`.
    pub(crate) fn get_or_load(
        &self,
        path: &Path,
        load: impl FnOnce() -> Result<SegmentFiles, LogError>,
    ) -> Result<Arc<SegmentFiles>, LogError> {
        {
            let mut state = self.state.lock().expect("handle cache lock");
            state.tick += 1;
            let tick = state.tick;
            if let Some(entry) = state.entries.get_mut(path) {
                entry.0 = tick;
                return Ok(entry.1.clone());
            }
        }
        let files = Arc::new(load()?);
        let mut state = self.state.lock().expect("handle cache lock");
        if state.entries.len() >= self.capacity {
            // Linear eviction keeps the structure trivial; the cache is small
            // (a few thousand entries) and misses are rare next to reads.
            let oldest = state
                .entries
                .iter()
                .min_by_key(|(_, (tick, _))| *tick)
                .map(|(path, _)| path.clone());
            if let Some(oldest) = oldest {
                state.entries.remove(&oldest);
            }
        }
        let tick = state.tick;
        state
            .entries
            .insert(path.to_path_buf(), (tick, files.clone()));
        Ok(files)
    }

    /// Forgets `path` (its file was replaced or deleted).
    pub(crate) fn evict(&self, path: &Path) {
        self.state
            .lock()
            .expect("handle cache lock")
            .entries
            .remove(path);
    }
}
