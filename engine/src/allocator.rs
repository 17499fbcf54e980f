//! The process allocator of Sluice's binaries: jemalloc, for Rust's
//! allocations and, through its unprefixed `malloc`, for RocksDB's and the
//! other C and C++ code's. `sluice` and `sluice-bench` each say
//! `sluice::global_allocator!();` so the broker and its benchmarks run on
//! the same allocator.
//!
//! Measured against glibc's malloc (README, "Allocator"): the stateful
//! loop spent a sixth of its time in glibc's `_int_malloc`,
//! `malloc_consolidate` and `free`; with jemalloc the native call with
//! state went from 0.72-0.85M to 1.10-1.16M records/s, the 10M-key loop
//! from 70k to 87-99k, and Kafka produce used about 30% less CPU per GB.
//!
//! One setting: `oversize_threshold:0`. By default jemalloc serves
//! allocations of 8 MiB and more from an arena that returns their pages
//! at once, so every large fetch response was mapped, faulted in and
//! unmapped again (consume went from about 1 000 to 760-910 MB/s); with
//! the threshold off they are reused like the rest, and returned to the
//! system after jemalloc's usual decay (10 s).

pub use tikv_jemallocator::Jemalloc;

/// Declares jemalloc as the global allocator, with Sluice's options (see
/// the [module docs](self)). Once, in a binary's root module.
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::allocator::Jemalloc = $crate::allocator::Jemalloc;

        /// jemalloc's options, read at its first allocation (its
        /// documented `malloc_conf` symbol; the library's own is weak).
        #[allow(unsafe_code, non_upper_case_globals)]
        #[unsafe(export_name = "malloc_conf")]
        static malloc_conf: &[u8; 21] = b"oversize_threshold:0\0";
    };
}
