//! The engine's raw system calls, each behind a small safe wrapper that returns
//! `std::io::Result`: the engine makes no `libc` call anywhere else.
//!
//! Descriptors are taken as `&impl AsRawFd`: the borrow keeps the file open for the call.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Turns a libc return code (0 or -1 with errno) into an `io::Result`.
fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Opens an existing (or, with `create_new`, a new) file read-write with O_DIRECT.
pub fn open_direct(path: &Path, create_new: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC);
    if create_new {
        o.create_new(true);
    }
    o.open(path)
}

/// Opens `path` read-write, creating it if missing, keeping its contents (buffered I/O).
pub fn open_or_create(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Takes an exclusive advisory lock on `f` without waiting (flock LOCK_EX | LOCK_NB).
pub fn lock_exclusive(f: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor the borrow keeps open.
    check(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) })
}

/// Sets the size of `f` to `len_bytes` (ftruncate).
pub fn ftruncate(f: &impl AsRawFd, len_bytes: u64) -> std::io::Result<()> {
    // SAFETY: ftruncate on a descriptor the borrow keeps open.
    check(unsafe { libc::ftruncate(f.as_raw_fd(), len_bytes as libc::off_t) })
}

/// Allocates `[offset_bytes, offset_bytes + len_bytes)` of `f` (fallocate, mode 0: the file
/// grows to cover the range).
pub fn fallocate(f: &impl AsRawFd, offset_bytes: u64, len_bytes: u64) -> std::io::Result<()> {
    // SAFETY: fallocate on a descriptor the borrow keeps open; the range is plain integers.
    check(unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            0,
            offset_bytes as libc::off_t,
            len_bytes as libc::off_t,
        )
    })
}

/// Deallocates `[offset_bytes, offset_bytes + len_bytes)` of `f`, keeping its size
/// (fallocate FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE).
pub fn punch_hole(f: &impl AsRawFd, offset_bytes: u64, len_bytes: u64) -> std::io::Result<()> {
    // SAFETY: fallocate on a descriptor the borrow keeps open; KEEP_SIZE never changes the size.
    check(unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset_bytes as libc::off_t,
            len_bytes as libc::off_t,
        )
    })
}

/// Flushes `f`'s data and metadata (fsync), synchronously.
pub fn fsync(f: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: fsync on a descriptor the borrow keeps open.
    check(unsafe { libc::fsync(f.as_raw_fd()) })
}

/// A new descriptor for the file open as `f` (close-on-exec), owned by the caller.
pub fn dup_cloexec(f: &impl AsRawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl on a descriptor the borrow keeps open.
    let dup = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Bytes available to unprivileged users on the filesystem holding `f` (fstatvfs).
pub fn free_bytes(f: &impl AsRawFd) -> std::io::Result<u64> {
    // SAFETY: a zeroed statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatvfs on a descriptor the borrow keeps open, into an owned struct.
    check(unsafe { libc::fstatvfs(f.as_raw_fd(), &mut st) })?;
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Makes the entries of directory `dir` durable (open + fsync).
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
