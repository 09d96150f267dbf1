//! Aligned heap buffers for O_DIRECT I/O through monoio's io_uring ops.

use std::alloc::{self, Layout};
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
        // SAFETY: allocated with this exact layout in `new`.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
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
