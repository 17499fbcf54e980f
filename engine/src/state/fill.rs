//! Whether a task's reads keep the table blocks they read in the block
//! cache (`state.block_cache_fill`).
//!
//! A state many times larger than its block cache, read at random, finds
//! few blocks there: each read inserts the block it read (a heap copy, the
//! LRU's lock and hash table) and evicts another, which is work for a hit
//! that rarely comes. The files are in the kernel's page cache either way,
//! so a read that skips the block cache costs a copy from it. At 10M keys
//! with 64 MiB of state memory (about 32 MiB of block cache), reads that
//! did not fill the cache ran 94.3k records/s against 74.1k (medians of
//! nine alternated pairs), and RocksDB alone 141k against 110k; at 100k
//! keys (the state in memory) and 1M keys (56 MB of files) neither way
//! was clearly faster. So with `auto` the tasks' reads fill the cache
//! while the live state files are at most twice its size, decided again
//! at most once a second: 90.6k against `always`' 69.8k at 10M keys
//! (medians of three pairs), the same at 100k keys.
//!
//! With the files on a disk and not in the page cache, a block the cache
//! would have kept is read from the disk again: `always` is for that.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::CacheFill;

/// How often `auto` looks at the state's size again.
const RECHECK: Duration = Duration::from_secs(1);

/// State files at most this many times the block cache: reads fill it.
const FILL_RATIO_MAX: u64 = 2;

/// The decision, shared by every task of the broker.
#[derive(Debug)]
pub(super) struct BlockFill {
    setting: CacheFill,
    /// The block cache's capacity, bytes.
    capacity: u64,
    /// What `auto` decided last.
    fill: AtomicBool,
    /// When it decided, in milliseconds after `since` (0: never).
    decided_ms: AtomicU64,
    since: Instant,
}

impl BlockFill {
    pub(super) fn new(setting: CacheFill, capacity: usize) -> Self {
        Self {
            setting,
            capacity: capacity as u64,
            fill: AtomicBool::new(true),
            decided_ms: AtomicU64::new(0),
            since: Instant::now(),
        }
    }

    /// Whether reads fill the cache now; `state_bytes` gives the live
    /// state files' size, and is called at most once a second.
    pub(super) fn fills(&self, state_bytes: impl FnOnce() -> u64) -> bool {
        match self.setting {
            CacheFill::Always => true,
            CacheFill::Never => false,
            CacheFill::Auto => {
                // 1 + elapsed, so that 0 stays "never decided".
                let now = 1 + self.since.elapsed().as_millis() as u64;
                let decided = self.decided_ms.load(Ordering::Relaxed);
                let due = decided == 0 || now.saturating_sub(decided) >= RECHECK.as_millis() as u64;
                // One thread decides; the others use the last decision.
                if due
                    && self
                        .decided_ms
                        .compare_exchange(decided, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    let fill = state_bytes() <= self.capacity.saturating_mul(FILL_RATIO_MAX);
                    self.fill.store(fill, Ordering::Relaxed);
                    return fill;
                }
                self.fill.load(Ordering::Relaxed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_fills_while_the_state_is_at_most_twice_the_cache_and_decides_once_a_second() {
        // Opened two seconds ago, so a decision made "at 1 ms" is due again.
        let fill = BlockFill {
            since: Instant::now() - RECHECK * 2,
            ..BlockFill::new(CacheFill::Auto, 100)
        };
        assert!(fill.fills(|| 200));
        // Within the second the last decision stands, unasked.
        assert!(fill.fills(|| unreachable!("decided a moment ago")));
        fill.decided_ms.store(1, Ordering::Relaxed);
        assert!(!fill.fills(|| 201));
        assert!(!fill.fills(|| unreachable!("decided a moment ago")));
        fill.decided_ms.store(1, Ordering::Relaxed);
        assert!(fill.fills(|| 150));
    }

    /// Another thread may record a decision at a later millisecond than
    /// this one read the clock: not due, and no overflow.
    #[test]
    fn a_decision_newer_than_this_threads_clock_stands() {
        let fill = BlockFill::new(CacheFill::Auto, 100);
        assert!(!fill.fills(|| 1_000));
        fill.decided_ms.store(u64::MAX / 2, Ordering::Relaxed);
        assert!(!fill.fills(|| unreachable!("decided after this clock read")));
    }

    #[test]
    fn always_and_never_do_not_look_at_the_state() {
        let always = BlockFill::new(CacheFill::Always, 1);
        let never = BlockFill::new(CacheFill::Never, 1 << 30);
        assert!(always.fills(|| unreachable!()));
        assert!(!never.fills(|| unreachable!()));
    }
}
