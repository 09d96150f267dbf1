//! Heap allocation counting for tests (cargo feature `count-allocs`).
//!
//! With the feature, the `bale` binary installs [`Counting`] as its global allocator (the
//! system allocator plus one relaxed atomic add per allocation) and answers
//! `GET /_bale/allocs` (unauthenticated, only in such a build) with the number of allocations
//! made so far. `scripts/allocs-per-get.sh --counter` reads it before and after a run of warm
//! GETs to count allocations per warm fast-path hit, and can fail when the number grows
//! (`--max`). A build without the feature has neither the allocator nor the endpoint.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations (`alloc`, `alloc_zeroed`, `realloc`).
pub struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made so far by this process (counted only when [`Counting`] is the global
/// allocator).
pub fn total() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// The path of the counter endpoint of a `count-allocs` build.
pub const ENDPOINT: &str = "/_bale/allocs";

/// Whether this build counts allocations.
pub const ENABLED: bool = cfg!(feature = "count-allocs");

#[cfg(test)]
mod tests {
    #[test]
    fn counts_only_when_installed() {
        // The test binary uses the system allocator: the counter does not move.
        let before = super::total();
        let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(100));
        assert!(v.capacity() >= 100);
        assert_eq!(super::total(), before);
    }
}
