//! This core's reusable buffers and header maps: a connection takes its read and write
//! buffers here and gives them back when it ends, a response's header map comes back after
//! its head is written, so a warm hit allocates nothing.

use std::cell::RefCell;

/// Buffers kept per core for reuse (read and write buffers, header maps).
const POOL_MAX: usize = 256;
/// A buffer larger than this is freed, not pooled, bytes.
const POOL_MAX_BYTES: usize = 128 * 1024;

thread_local! {
    static BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static MAPS: RefCell<Vec<http::HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from this core's pool (empty; its capacity is kept).
pub(super) fn take_buf(min_cap: usize) -> Vec<u8> {
    let mut v = BUFS.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    v.clear();
    v.reserve(min_cap);
    v
}

pub(super) fn give_buf(v: Vec<u8>) {
    if v.capacity() == 0 || v.capacity() > POOL_MAX_BYTES {
        return;
    }
    BUFS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(v);
        }
    });
}

pub(super) fn take_map() -> http::HeaderMap {
    MAPS.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

pub(super) fn give_map(mut m: http::HeaderMap) {
    m.clear();
    MAPS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(m);
        }
    });
}
