//! Aligned heap buffers for O_DIRECT I/O through monoio's io_uring ops.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;

use bytes::Bytes;

/// A heap buffer whose start address and capacity are multiples of `align_bytes`.
///
/// `len` bytes (from the start) are initialized; `cap` bytes are allocated. Implements monoio's
/// `IoBuf`/`IoBufMut` so it can be handed to io_uring reads and writes, and converts into a
/// zero-copy `Bytes` with `into_bytes`.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: `AlignedBuf` exclusively owns its heap allocation (like `Vec<u8>`); it has no shared
// interior state and no thread affinity, so moving it to another thread is sound. `Bytes`
// requires `Send` for owners handed to `Bytes::from_owner`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]` of the initialized prefix; no interior mutability.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocate a zero-filled buffer of `cap_bytes` (rounded up to `align_bytes`), `len` = 0.
    pub fn new(cap_bytes: usize, align_bytes: usize) -> AlignedBuf {
        assert!(
            align_bytes.is_power_of_two(),
            "alignment must be a power of two"
        );
        let cap = round_up(cap_bytes.max(align_bytes), align_bytes);
        let layout = Layout::from_size_align(cap, align_bytes).expect("aligned buffer layout");
        // SAFETY: layout has non-zero size (cap >= align_bytes >= 1).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = match NonNull::new(raw) {
            Some(p) => p,
            None => alloc::handle_alloc_error(layout),
        };
        AlignedBuf {
            ptr,
            len: 0,
            layout,
        }
    }

    /// A buffer for one O_DIRECT read of up to `cap_bytes`, aligned to `align_bytes`, `len` = 0,
    /// taken from the calling thread's pool of read buffers when one of its size class is
    /// there (no allocation, no zeroing: a pooled buffer holds an earlier read's bytes, which
    /// the caller's read overwrites before it sets `len`). Only sizes that are whole 4 KiB
    /// classes are pooled, so a pooled buffer is exactly `cap_bytes` (a cache that counts the
    /// bytes it holds counts what is allocated); other sizes or alignments are allocated as by
    /// [`AlignedBuf::new`], whose capacity may exceed `cap_bytes`: read exactly what is wanted
    /// through `monoio::buf::IoBufMut::slice_mut(0..n)`. Every dropped buffer of a pool size class goes
    /// back to the pool of the thread that drops it, up to [`READ_POOL_CLASS_BYTES`] per class.
    pub fn for_read(cap_bytes: usize, align_bytes: usize) -> AlignedBuf {
        let class = pool_class(cap_bytes, align_bytes)
            .filter(|_| cap_bytes.is_multiple_of(READ_POOL_ALIGN_BYTES) && cap_bytes > 0);
        let Some(class) = class else {
            return AlignedBuf::new(cap_bytes, align_bytes);
        };
        let pooled = READ_POOL
            .try_with(|p| p.try_borrow_mut().ok()?.free[class].pop())
            .ok()
            .flatten();
        match pooled {
            Some(ptr) => AlignedBuf {
                ptr,
                len: 0,
                layout: class_layout(class),
            },
            None => AlignedBuf::new((class + 1) * READ_POOL_ALIGN_BYTES, READ_POOL_ALIGN_BYTES),
        }
    }

    /// Allocated capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// Initialized length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no byte is initialized.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Free capacity in bytes.
    pub fn remaining(&self) -> usize {
        self.capacity() - self.len
    }

    /// Append bytes; panics if they do not fit (callers check `remaining`).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        assert!(data.len() <= self.remaining(), "aligned buffer overflow");
        // SAFETY: bounds checked above; source and destination do not overlap (data is not
        // borrowed from self because `&mut self` is exclusive).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                data.len(),
            );
        }
        self.len += data.len();
    }

    /// Extend `len` to `new_len` with zero bytes.
    pub fn zero_fill_to(&mut self, new_len: usize) {
        assert!(new_len <= self.capacity() && new_len >= self.len);
        // SAFETY: range is within the allocation.
        unsafe {
            std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, new_len - self.len);
        }
        self.len = new_len;
    }

    /// Forget the contents (capacity kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Set the initialized length (for reads of a known size). The allocation is zero-filled at
    /// creation, so every byte below capacity is initialized memory.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity());
        self.len = len;
    }

    /// Zero-copy conversion into `Bytes` (covering the initialized prefix).
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialized (allocation is zeroed at creation).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl AsMut<[u8]> for AlignedBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Some(class) = pool_class(self.layout.size(), self.layout.align()) {
            if class_layout(class) == self.layout {
                let (ptr, kept) = (self.ptr, &mut false);
                let _ = READ_POOL.try_with(|p| {
                    if let Ok(mut p) = p.try_borrow_mut() {
                        *kept = p.put(class, ptr);
                    }
                });
                if *kept {
                    return; // the pool owns the allocation now
                }
            }
        }
        // SAFETY: allocated with this exact layout in `new` (or `for_read`, through `new`).
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Alignment of the pooled read buffers (O_DIRECT's strictest: a page); reads that need at
/// most this alignment can use them.
pub const READ_POOL_ALIGN_BYTES: usize = 4096;
/// Largest pooled read buffer: a read of up to 16 aligned units (64 KiB) takes its buffer
/// from the pool; larger reads (streams) allocate.
pub const READ_POOL_MAX_BYTES: usize = 16 * READ_POOL_ALIGN_BYTES;
/// Bytes each size class (one per multiple of 4 KiB) may keep per thread: 64 buffers of
/// 4 KiB, 4 of 64 KiB; at most 16 × 256 KiB = 4 MiB per thread in all.
pub const READ_POOL_CLASS_BYTES: usize = 256 << 10;
const READ_POOL_CLASSES: usize = READ_POOL_MAX_BYTES / READ_POOL_ALIGN_BYTES;

/// The size class (index: capacity / 4 KiB - 1) of a read of `cap_bytes` aligned to
/// `align_bytes`, when the pool holds such buffers.
fn pool_class(cap_bytes: usize, align_bytes: usize) -> Option<usize> {
    if !align_bytes.is_power_of_two()
        || align_bytes > READ_POOL_ALIGN_BYTES
        || cap_bytes > READ_POOL_MAX_BYTES
    {
        return None;
    }
    Some(round_up(cap_bytes.max(1), READ_POOL_ALIGN_BYTES) / READ_POOL_ALIGN_BYTES - 1)
}

/// The layout of a pooled buffer of size class `class`.
fn class_layout(class: usize) -> Layout {
    Layout::from_size_align((class + 1) * READ_POOL_ALIGN_BYTES, READ_POOL_ALIGN_BYTES)
        .expect("read pool layout")
}

/// Free read buffers of one thread, by size class: allocations of `class_layout(class)`,
/// every byte initialized (zeroed when first allocated, then overwritten by reads).
struct ReadPool {
    free: [Vec<NonNull<u8>>; READ_POOL_CLASSES],
}

impl ReadPool {
    /// Keeps `ptr` (an allocation of `class_layout(class)`) unless its class is full.
    fn put(&mut self, class: usize, ptr: NonNull<u8>) -> bool {
        let cap = READ_POOL_CLASS_BYTES / ((class + 1) * READ_POOL_ALIGN_BYTES);
        let list = &mut self.free[class];
        if list.len() >= cap {
            return false;
        }
        if list.capacity() == 0 {
            list.reserve_exact(cap);
        }
        list.push(ptr);
        true
    }
}

impl Drop for ReadPool {
    fn drop(&mut self) {
        for (class, list) in self.free.iter_mut().enumerate() {
            let layout = class_layout(class);
            for ptr in list.drain(..) {
                // SAFETY: every pooled pointer is an allocation of this class's layout that
                // no `AlignedBuf` owns any more.
                unsafe { alloc::dealloc(ptr.as_ptr(), layout) }
            }
        }
    }
}

thread_local! {
    static READ_POOL: RefCell<ReadPool> = const {
        RefCell::new(ReadPool {
            free: [const { Vec::new() }; READ_POOL_CLASSES],
        })
    };
}

/// Buffers in the calling thread's read pool.
#[cfg(test)]
fn read_pool_buffers() -> usize {
    READ_POOL
        .try_with(|p| {
            p.try_borrow()
                .map_or(0, |p| p.free.iter().map(Vec::len).sum())
        })
        .unwrap_or(0)
}

// SAFETY: the pointer is stable for the buffer's lifetime (heap allocation, never reallocated)
// and `bytes_init` never exceeds the allocation.
unsafe impl monoio::buf::IoBuf for AlignedBuf {
    fn read_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
}

// SAFETY: as above; `bytes_total` is the allocation size and `set_init` only grows `len`
// within it.
unsafe impl monoio::buf::IoBufMut for AlignedBuf {
    fn write_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn bytes_total(&mut self) -> usize {
        self.capacity()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        assert!(pos <= self.capacity());
        self.len = pos;
    }
}

/// Round `v` up to a multiple of `align` (a power of two).
pub fn round_up(v: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two());
    (v + align - 1) & !(align - 1)
}

/// Round `v` up to a multiple of `align` (a power of two), u64.
pub fn round_up_u64(v: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    (v + align - 1) & !(align - 1)
}

/// Round `v` down to a multiple of `align` (a power of two), u64.
pub fn round_down_u64(v: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    v & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::buf::IoBuf;

    #[test]
    fn read_buffers_come_back_to_the_pool() {
        let before = read_pool_buffers();
        let mut b = AlignedBuf::for_read(8192, 512);
        assert_eq!(b.capacity(), 8192);
        assert_eq!(b.read_ptr() as usize % READ_POOL_ALIGN_BYTES, 0);
        b.extend_from_slice(&[7u8; 100]);
        let ptr = b.read_ptr();
        drop(b);
        assert_eq!(read_pool_buffers(), before + 1);
        // The same allocation is handed out again, empty, with its old bytes still there
        // (initialized memory, overwritten by the next read).
        let b = AlignedBuf::for_read(8192, 4096);
        assert_eq!(b.read_ptr(), ptr);
        assert_eq!(b.len(), 0);
        assert_eq!(read_pool_buffers(), before);
        drop(b);
    }

    #[test]
    fn pool_is_bounded_per_class() {
        let cap = READ_POOL_CLASS_BYTES / READ_POOL_ALIGN_BYTES;
        let bufs: Vec<_> = (0..cap + 10)
            .map(|_| AlignedBuf::for_read(4096, 4096))
            .collect();
        drop(bufs);
        let kept = READ_POOL.with(|p| p.borrow().free[0].len());
        assert_eq!(kept, cap);
    }

    #[test]
    fn sizes_the_pool_does_not_hold_are_plain_allocations() {
        assert_eq!(pool_class(READ_POOL_MAX_BYTES + 1, 4096), None);
        assert_eq!(pool_class(4096, 8192), None);
        assert_eq!(pool_class(1, 512), Some(0));
        assert_eq!(
            pool_class(READ_POOL_MAX_BYTES, 4096),
            Some(READ_POOL_CLASSES - 1)
        );
        let before = read_pool_buffers();
        // Not a whole 4 KiB class: allocated at its own size, freed when dropped.
        let b = AlignedBuf::for_read(5000, 512);
        assert_eq!(b.capacity(), 5120);
        drop(b);
        assert_eq!(read_pool_buffers(), before);
        let b = AlignedBuf::for_read(READ_POOL_MAX_BYTES + 4096, 4096);
        assert_eq!(b.capacity(), READ_POOL_MAX_BYTES + 4096);
        drop(b);
        assert_eq!(read_pool_buffers(), before);
        // `new` buffers are zeroed; one of a class size is pooled when dropped, too.
        let z = AlignedBuf::new(4096, 4096);
        assert!(z.as_ref().iter().all(|&x| x == 0));
    }
}
