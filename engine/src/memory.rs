//! The allocator's share of the broker's memory bound.
//!
//! glibc's malloc gives each thread that allocates an arena of its own, up
//! to eight per CPU, and keeps what a thread frees in that thread's arena.
//! The broker runs processor tasks, RocksDB's background jobs and blocking
//! I/O on many threads, so memory freed by one sat unused in its arena
//! while another grew its own: with 12 stateful partitions the process
//! grew 26 to 39 MiB past what the state itself held (the suite's bound
//! test). Two remedies, both measured there:
//! - at most one arena per CPU (`M_ARENA_MAX`), set before any thread
//!   starts;
//! - every few seconds, the free pages in every arena handed back to the
//!   system (`malloc_trim`: a walk over the arenas' free chunks, run off
//!   the async workers like the broker's other periodic work).
//!
//! And one for speed: no fastbins (`M_MXFAST` 0). A freed small chunk then
//! joins its free neighbours at once instead of waiting in a fastbin until
//! the next larger request sweeps every fastbin (`malloc_consolidate`); the
//! per-thread cache (tcache) still serves the hottest sizes. The stateful
//! loop frees millions of small keys, values and outputs between larger
//! buffers: the sweeps and the unlinking they cause were 11% of its
//! samples, and turning fastbins off made it 10 to 20% faster
//! (bench/STATEFUL.md, sixth round).

/// How often the allocator is asked to give freed memory back.
pub(crate) const RETURN_INTERVAL_MS: u64 = 5_000;

/// Tunes glibc's malloc for the broker: arenas capped at one per CPU (at
/// least two), fastbins off. Call before the broker starts its threads
/// (the benchmarks that run the broker's code in their own process call it
/// too, so they measure what the broker runs).
#[allow(unsafe_code)]
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cpus.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt changes a malloc tuning parameter; it takes no
        // pointers. M_ARENA_MAX is read when a thread first needs an arena;
        // M_MXFAST first sweeps the fastbins of the main arena, and other
        // arenas read it as they are created (none yet).
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
            libc::mallopt(libc::M_MXFAST, 0);
        }
    }
}

/// Gives the pages glibc's malloc holds free back to the system.
#[allow(unsafe_code)]
pub(crate) fn return_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and releases the allocator's own
    // free memory; it is thread-safe and takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
