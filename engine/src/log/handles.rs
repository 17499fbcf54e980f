//! A bounded cache of opened closed segments (file handle plus index).
//!
//! Active segments stay open; closed ones are opened on first read and kept
//! until `open_segments_max` others are more recently used. Compaction and
//! retention evict entries when they replace or delete files.
//!
//! Loading a segment's files reads its index from disk, which must not
//! happen under the partition lock (appends would wait on a cold read). So a
//! reader looks the entry up under the lock, loads without it, and installs
//! under it again only if nothing was evicted meanwhile: an eviction means
//! files may have been replaced (compaction swaps them under the partition
//! lock) and what was loaded may mix old and new. Loading twice in a race is
//! harmless; the first install wins.

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
    /// Calls of [`HandleCache::evict`] so far, in any partition.
    evictions: u64,
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

    /// The cached files of `path`, if any, and the eviction count to hand
    /// to [`Self::install`] after loading them on a miss.
    pub(crate) fn get(&self, path: &Path) -> Result<Arc<SegmentFiles>, u64> {
        let mut state = self.state.lock().expect("handle cache lock");
        state.tick += 1;
        let tick = state.tick;
        match state.entries.get_mut(path) {
            Some(entry) => {
                entry.0 = tick;
                Ok(entry.1.clone())
            }
            None => Err(state.evictions),
        }
    }

    /// Caches `files`, loaded for `path` after [`Self::get`] returned
    /// `evictions`, unless something was evicted since (`None`: load
    /// again). Returns what is cached, which is another loader's files if
    /// that loader installed first.
    pub(crate) fn install(
        &self,
        path: &Path,
        files: Arc<SegmentFiles>,
        evictions: u64,
    ) -> Option<Arc<SegmentFiles>> {
        let mut state = self.state.lock().expect("handle cache lock");
        if state.evictions != evictions {
            return None;
        }
        if let Some(entry) = state.entries.get(path) {
            return Some(entry.1.clone());
        }
        Self::insert(&mut state, self.capacity, path, files.clone());
        Some(files)
    }

    /// The cached files of `path`, or loads them with `load` (under the
    /// caller's locks: only for when [`Self::install`] keeps losing races).
    pub(crate) fn get_or_load(
        &self,
        path: &Path,
        load: impl FnOnce() -> Result<SegmentFiles, LogError>,
    ) -> Result<Arc<SegmentFiles>, LogError> {
        if let Ok(files) = self.get(path) {
            return Ok(files);
        }
        let files = Arc::new(load()?);
        let mut state = self.state.lock().expect("handle cache lock");
        Self::insert(&mut state, self.capacity, path, files.clone());
        Ok(files)
    }

    fn insert(state: &mut State, capacity: usize, path: &Path, files: Arc<SegmentFiles>) {
        if state.entries.len() >= capacity {
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
        state.entries.insert(path.to_path_buf(), (tick, files));
    }

    /// Forgets `path` (its file was replaced or deleted).
    pub(crate) fn evict(&self, path: &Path) {
        let mut state = self.state.lock().expect("handle cache lock");
        state.evictions += 1;
        state.entries.remove(path);
    }
}
