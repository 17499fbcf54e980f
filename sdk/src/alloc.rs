//! The plugin's global allocator (feature `talc`, on by default): talc,
//! with a cache of freed small blocks in front of it.
//!
//! Every record a plugin handles allocates a few small blocks (its key and
//! value, a store key, an output's JSON) and frees them before the next
//! batch. talc finds each one a fitting free chunk, splitting and merging
//! neighbours, about a quarter of a windowed count's guest time. Here a
//! freed block of at most [`SMALL_BYTES_MAX`] bytes goes on a free list of
//! its size class (multiples of [`CLASS_BYTES`]) and the next allocation
//! of that class takes it back: a pointer pop, no search.
//!
//! Bound: the lists hold at most [`CACHED_BYTES_MAX`] bytes together; a
//! block freed past that goes back to talc, so a plugin's memory is never
//! held for one size class beyond it (the instance's memory limit counts
//! the cached blocks like any other).
//!
//! A WebAssembly instance without threads (`target_feature = "atomics"`
//! off, the only build this is compiled for) runs one call at a time, so
//! the lists need no lock, as talc's `AssumeUnlockable` assumes too.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes are multiples of this (and blocks aligned to it).
pub const CLASS_BYTES: usize = 16;

/// The largest block the lists cache.
pub const SMALL_BYTES_MAX: usize = 256;

/// Bytes the lists hold at most, together.
pub const CACHED_BYTES_MAX: usize = 1 << 20;

const CLASSES: usize = SMALL_BYTES_MAX / CLASS_BYTES;

struct Lists {
    /// Per class, the first free block; each free block's first word
    /// points to the next.
    heads: [*mut u8; CLASSES],
    cached_bytes: usize,
}

/// An allocator with free lists of small blocks in front (see the module
/// docs); the plugin's is [`Allocator`].
pub struct Cached<A> {
    inner: A,
    lists: UnsafeCell<Lists>,
}

/// The plugin's global allocator: talc, cached.
#[cfg(target_family = "wasm")]
pub type Allocator = Cached<talc::wasm::WasmDynamicTalc>;

// SAFETY: compiled only for single-threaded WebAssembly (see the module
// docs): no two calls run at once.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<A: Sync> Sync for Cached<A> {}

#[cfg(target_family = "wasm")]
impl Allocator {
    /// The plugin's allocator, empty.
    pub const fn new() -> Self {
        Cached::over(talc::wasm::new_wasm_dynamic_allocator())
    }
}

impl<A> Cached<A> {
    /// `inner` with empty lists in front.
    pub const fn over(inner: A) -> Self {
        Self {
            inner,
            lists: UnsafeCell::new(Lists {
                heads: [ptr::null_mut(); CLASSES],
                cached_bytes: 0,
            }),
        }
    }

    /// Bytes the lists hold.
    #[cfg(test)]
    fn cached_bytes(&self) -> usize {
        // SAFETY: single-threaded (tests use a local allocator).
        unsafe { (*self.lists.get()).cached_bytes }
    }
}

/// The class of `layout` (0-based), if the lists cache it.
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size();
    if size == 0 || size > SMALL_BYTES_MAX || layout.align() > CLASS_BYTES {
        return None;
    }
    Some((size - 1) / CLASS_BYTES)
}

/// The layout talc allocates for class `class`: its whole size, aligned.
fn class_layout(class: usize) -> Layout {
    // SAFETY: a nonzero multiple of CLASS_BYTES, a power of two.
    unsafe { Layout::from_size_align_unchecked((class + 1) * CLASS_BYTES, CLASS_BYTES) }
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for Cached<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else {
            return unsafe { self.inner.alloc(layout) };
        };
        let lists = unsafe { &mut *self.lists.get() };
        let head = lists.heads[class];
        if head.is_null() {
            return unsafe { self.inner.alloc(class_layout(class)) };
        }
        lists.heads[class] = unsafe { head.cast::<*mut u8>().read() };
        lists.cached_bytes -= (class + 1) * CLASS_BYTES;
        head
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class(layout).is_none() {
            // The inner allocator's own (it may know fresh memory is zero).
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            unsafe { ptr::write_bytes(block, 0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class(layout) else {
            return unsafe { self.inner.dealloc(block, layout) };
        };
        let lists = unsafe { &mut *self.lists.get() };
        let bytes = (class + 1) * CLASS_BYTES;
        if lists.cached_bytes + bytes > CACHED_BYTES_MAX {
            return unsafe { self.inner.dealloc(block, class_layout(class)) };
        }
        unsafe { block.cast::<*mut u8>().write(lists.heads[class]) };
        lists.heads[class] = block;
        lists.cached_bytes += bytes;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract (nonzero size, no overflow when
        // rounded up to the alignment).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // Both large: talc grows or shrinks in place when it can.
            (None, None) => unsafe { self.inner.realloc(block, layout, new_size) },
            // The same class: the block already has room.
            (Some(old), Some(new)) if old == new => block,
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    let bytes = layout.size().min(new_size);
                    unsafe { ptr::copy_nonoverlapping(block, moved, bytes) };
                    unsafe { self.dealloc(block, layout) };
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    /// Fills `len` bytes at `block` with a pattern of `seed`.
    fn fill(block: *mut u8, len: usize, seed: u8) {
        for i in 0..len {
            unsafe { block.add(i).write(seed.wrapping_add(i as u8)) };
        }
    }

    fn holds(block: *const u8, len: usize, seed: u8) -> bool {
        (0..len).all(|i| unsafe { block.add(i).read() } == seed.wrapping_add(i as u8))
    }

    #[test]
    fn a_freed_small_block_is_reused_by_its_class_only() {
        let cached = Cached::over(System);
        let small = Layout::from_size_align(20, 8).unwrap();
        unsafe {
            let a = cached.alloc(small);
            fill(a, 20, 9);
            cached.dealloc(a, small);
            assert_eq!(cached.cached_bytes(), 32);
            // Another size of the same class (17..=32 bytes) takes it,
            // zeroed when asked.
            let b = cached.alloc_zeroed(Layout::from_size_align(32, 16).unwrap());
            assert_eq!(a, b);
            assert!((0..32).all(|i| b.add(i).read() == 0));
            assert_eq!(cached.cached_bytes(), 0);
            // Another class does not.
            cached.dealloc(b, Layout::from_size_align(32, 16).unwrap());
            let c = cached.alloc(Layout::from_size_align(40, 8).unwrap());
            assert_ne!(b, c);
            cached.dealloc(c, Layout::from_size_align(40, 8).unwrap());
            // Large blocks and stricter alignments go straight through.
            let large = Layout::from_size_align(SMALL_BYTES_MAX + 1, 8).unwrap();
            let aligned = Layout::from_size_align(64, 64).unwrap();
            let (l, x) = (cached.alloc_zeroed(large), cached.alloc(aligned));
            assert!((0..large.size()).all(|i| l.add(i).read() == 0));
            assert_eq!(x as usize % 64, 0);
            let before = cached.cached_bytes();
            cached.dealloc(l, large);
            cached.dealloc(x, aligned);
            assert_eq!(cached.cached_bytes(), before);
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_sizes() {
        let cached = Cached::over(System);
        unsafe {
            let mut layout = Layout::from_size_align(1, 1).unwrap();
            let mut block = cached.alloc(layout);
            fill(block, 1, 7);
            // Grow through every class and past them, then shrink back.
            let sizes = (2..=SMALL_BYTES_MAX + 64)
                .step_by(5)
                .chain((1..=SMALL_BYTES_MAX + 64).rev().step_by(7));
            for size in sizes {
                block = cached.realloc(block, layout, size);
                let kept = layout.size().min(size);
                assert!(holds(block, kept, 7), "{} -> {size} bytes", layout.size());
                layout = Layout::from_size_align(size, 1).unwrap();
                fill(block, size, 7);
            }
            cached.dealloc(block, layout);
        }
    }

    #[test]
    fn the_lists_hold_at_most_their_bound() {
        let cached = Cached::over(System);
        let layout = Layout::from_size_align(SMALL_BYTES_MAX, 8).unwrap();
        let count = CACHED_BYTES_MAX / SMALL_BYTES_MAX + 100;
        let blocks: Vec<_> = (0..count)
            .map(|n| unsafe {
                let block = cached.alloc(layout);
                fill(block, SMALL_BYTES_MAX, n as u8);
                block
            })
            .collect();
        for (n, &block) in blocks.iter().enumerate() {
            assert!(
                holds(block, SMALL_BYTES_MAX, n as u8),
                "block {n} was overwritten"
            );
        }
        for block in blocks {
            unsafe { cached.dealloc(block, layout) };
            assert!(cached.cached_bytes() <= CACHED_BYTES_MAX);
        }
        assert_eq!(cached.cached_bytes(), CACHED_BYTES_MAX);
        // What the lists hold is handed out again, intact as memory.
        let again: Vec<_> = (0..count)
            .map(|_| unsafe { cached.alloc(layout) })
            .collect();
        assert_eq!(cached.cached_bytes(), 0);
        for block in again {
            unsafe { cached.dealloc(block, layout) };
        }
    }
}
