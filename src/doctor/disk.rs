//! Per data directory: can it be created and written, does O_DIRECT work and at what
//! alignment, which filesystem, how much free space, and the block device's queue settings.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{read_trim, Finding, Status};

/// bale's record alignment: every O_DIRECT read and write is a multiple of this.
const BALE_ALIGN_BYTES: usize = 4096;
/// Below this much free space a data directory gets a WARN, bytes.
const LOW_FREE_BYTES: u64 = 1 << 30;
/// Below this, a FAIL: the default --disk-reserve-mb (64 MiB) alone does not fit.
const MIN_FREE_BYTES: u64 = 64 << 20;

/// statfs f_type values (linux/magic.h).
const EXT4_MAGIC: i64 = 0xEF53;
const XFS_MAGIC: i64 = 0x5846_5342;
const BTRFS_MAGIC: i64 = 0x9123_683E;
const TMPFS_MAGIC: i64 = 0x0102_1994;
const OVERLAY_MAGIC: i64 = 0x794C_7630;
const NFS_MAGIC: i64 = 0x6969;
const FUSE_MAGIC: i64 = 0x6573_5546;
const ZFS_MAGIC: i64 = 0x2FC1_2FC1;

fn fs_name(magic: i64) -> (&'static str, Status, &'static str) {
    match magic {
        EXT4_MAGIC => ("ext4", Status::Pass, ""),
        XFS_MAGIC => ("xfs", Status::Pass, ""),
        BTRFS_MAGIC => (
            "btrfs",
            Status::Warn,
            "copy-on-write: O_DIRECT writes and fallocate holes cost more; prefer xfs or ext4",
        ),
        TMPFS_MAGIC => (
            "tmpfs",
            Status::Warn,
            "memory, not disk: nothing survives a reboot",
        ),
        OVERLAY_MAGIC => (
            "overlayfs",
            Status::Warn,
            "a container's layered root: mount a volume (xfs/ext4) for data",
        ),
        NFS_MAGIC => (
            "nfs",
            Status::Warn,
            "network filesystem: latency and O_DIRECT semantics are the server's",
        ),
        FUSE_MAGIC => (
            "fuse",
            Status::Warn,
            "user-space filesystem: every I/O crosses a daemon",
        ),
        ZFS_MAGIC => (
            "zfs",
            Status::Warn,
            "copy-on-write with its own cache (ARC); O_DIRECT support varies by version",
        ),
        _ => (
            "unknown",
            Status::Warn,
            "not a filesystem bale is tested on (xfs, ext4)",
        ),
    }
}

/// The first ancestor of `dir` (or `dir` itself) that does not exist.
fn first_missing(dir: &Path) -> Option<PathBuf> {
    let mut missing = None;
    let mut p = Some(dir);
    while let Some(d) = p {
        if d.exists() {
            break;
        }
        missing = Some(d.to_path_buf());
        p = d.parent();
    }
    missing
}

/// Every check for one directory; leaves nothing behind it did not find.
pub fn check_dir(out: &mut Vec<Finding>, dir: &Path) {
    let name = dir.display().to_string();
    let created = first_missing(dir);
    if let Err(e) = std::fs::create_dir_all(dir) {
        out.push(
            Finding::new(
                Status::Fail,
                format!("data dir {name}"),
                format!("cannot create it: {e}"),
            )
            .fix("create it and make it writable by bale's user, or pick another --data"),
        );
        return;
    }
    match &created {
        Some(_) => out.push(Finding::new(
            Status::Pass,
            format!("data dir {name}"),
            "could be created (removed again after the check)",
        )),
        None => out.push(Finding::new(
            Status::Pass,
            format!("data dir {name}"),
            "exists",
        )),
    }
    direct_io_check(out, dir, &name);
    statfs_check(out, dir, &name);
    device_check(out, dir, &name);
    if let Some(c) = created {
        // Only what this check made, and only if it is still empty.
        let mut p = Some(dir);
        while let Some(d) = p {
            if std::fs::remove_dir(d).is_err() || d == c {
                break;
            }
            p = d.parent();
        }
    }
}

/// An aligned, zeroed buffer for O_DIRECT.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, BALE_ALIGN_BYTES)
            .expect("valid O_DIRECT buffer layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory allocating {len} bytes");
        Self { ptr, layout }
    }
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes and owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// Writes `len` aligned bytes at offset 0 with O_DIRECT and reads them back.
fn direct_roundtrip(fd: i32, len: usize) -> Result<(), String> {
    let mut w = Aligned::new(len);
    for (i, b) in w.as_mut().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    // SAFETY: w is valid for len bytes.
    let n = unsafe { libc::pwrite(fd, w.ptr as *const libc::c_void, len, 0) };
    if n != len as isize {
        return Err(format!(
            "write of {len}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut r = Aligned::new(len);
    // SAFETY: r is valid for len bytes.
    let n = unsafe { libc::pread(fd, r.ptr as *mut libc::c_void, len, 0) };
    if n != len as isize {
        return Err(format!(
            "read of {len}: {}",
            std::io::Error::last_os_error()
        ));
    }
    if r.as_mut() != w.as_mut() {
        return Err(format!(
            "read back {len} bytes that differ from those written"
        ));
    }
    Ok(())
}

fn direct_io_check(out: &mut Vec<Finding>, dir: &Path, name: &str) {
    let check = format!("O_DIRECT {name}");
    let probe = dir.join(format!(".bale-doctor-{}", std::process::id()));
    let Ok(c) = CString::new(probe.as_os_str().as_bytes()) else {
        out.push(Finding::new(Status::Fail, check, "path has a NUL byte"));
        return;
    };
    // SAFETY: c is a valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_DIRECT | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let (detail, fix) = match e.raw_os_error() {
            Some(libc::EINVAL) => (
                format!("the filesystem refuses O_DIRECT ({e})"),
                "put the data directory on xfs or ext4 on a local disk",
            ),
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => (
                format!("cannot create a file in it ({e})"),
                "make it writable by bale's user (chown/chmod), or pick another --data",
            ),
            _ => (
                format!("cannot create a test file ({e})"),
                "check the directory and its filesystem",
            ),
        };
        out.push(Finding::new(Status::Fail, check, detail).fix(fix));
        return;
    }
    let smallest = [512usize, BALE_ALIGN_BYTES]
        .into_iter()
        .find(|&len| direct_roundtrip(fd, len).is_ok());
    let full = direct_roundtrip(fd, BALE_ALIGN_BYTES);
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    let _ = std::fs::remove_file(&probe);
    match full {
        Ok(()) => out.push(Finding::new(
            Status::Pass,
            check,
            format!(
                "aligned write+read back verified; smallest working O_DIRECT unit {} bytes (bale uses {BALE_ALIGN_BYTES})",
                smallest.unwrap_or(BALE_ALIGN_BYTES)
            ),
        )),
        Err(e) => out.push(
            Finding::new(
                Status::Fail,
                check,
                format!("a {BALE_ALIGN_BYTES}-byte aligned O_DIRECT write/read failed: {e}"),
            )
            .fix("use a device whose logical block size is at most 4096 bytes, on xfs or ext4"),
        ),
    }
}

fn statfs_check(out: &mut Vec<Finding>, dir: &Path, name: &str) {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: statfs is plain data that statfs() fills; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        out.push(Finding::unreadable(
            format!("filesystem {name}"),
            "statfs",
            &std::io::Error::last_os_error(),
        ));
        return;
    }
    let magic = st.f_type as i64;
    let (fs, status, why) = fs_name(magic);
    let mut f = Finding::new(
        status,
        format!("filesystem {name}"),
        if why.is_empty() {
            format!("{fs} (statfs magic {magic:#x})")
        } else {
            format!("{fs} (statfs magic {magic:#x}): {why}")
        },
    );
    if status != Status::Pass {
        f = f.fix("mount an xfs or ext4 filesystem on a local NVMe device for --data");
    }
    out.push(f);
    let free = st.f_bavail as u64 * st.f_bsize as u64;
    let total = st.f_blocks as u64 * st.f_bsize as u64;
    let mib = |b: u64| b >> 20;
    let detail = format!("{} MiB free of {} MiB", mib(free), mib(total));
    let check = format!("free space {name}");
    out.push(if free < MIN_FREE_BYTES {
        Finding::new(
            Status::Fail,
            check,
            format!("{detail}: less than the default 64 MiB reserve; PUTs will be refused"),
        )
        .fix("free space or pick another --data")
    } else if free < LOW_FREE_BYTES {
        Finding::new(Status::Warn, check, format!("{detail}: under 1 GiB"))
            .fix("free space or pick another --data")
    } else {
        Finding::new(Status::Pass, check, detail)
    });
}

/// The sysfs queue directory of the block device holding `dir` (the whole disk for a
/// partition).
fn queue_dir(dir: &Path) -> Result<Option<(String, PathBuf)>, std::io::Error> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir)?.dev();
    // SAFETY: major/minor are pure arithmetic on dev_t.
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    if maj == 0 {
        return Ok(None); // tmpfs, overlay, nfs...: no block device
    }
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    let sys = std::fs::canonicalize(&sys)?;
    let disk = if sys.join("partition").exists() {
        sys.parent().map(Path::to_path_buf).unwrap_or(sys)
    } else {
        sys
    };
    let name = disk
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{maj}:{min}"));
    Ok(Some((name, disk.join("queue"))))
}

fn device_check(out: &mut Vec<Finding>, dir: &Path, name: &str) {
    let (dev, q) = match queue_dir(dir) {
        Ok(Some(x)) => x,
        Ok(None) => {
            out.push(Finding::new(
                Status::Skip,
                format!("device {name}"),
                "not on a block device: no I/O scheduler or queue to check",
            ));
            return;
        }
        Err(e) => {
            out.push(Finding::unreadable(
                format!("device {name}"),
                "its block device in /sys/dev/block",
                &e,
            ));
            return;
        }
    };
    let qs = q.display().to_string();
    let rd = |f: &str| read_trim(&format!("{qs}/{f}"));
    let check = format!("scheduler {dev}");
    match rd("scheduler") {
        Ok(s) if s.is_empty() || s == "none" || s.contains("[none]") => out.push(Finding::new(
            Status::Pass,
            check,
            format!("{s} (for {name})"),
        )),
        Ok(s) => out.push(
            Finding::new(
                Status::Warn,
                check,
                format!("{s} (for {name}): a scheduler adds latency and a lock per I/O on NVMe"),
            )
            .fix(format!(
                "echo none > {qs}/scheduler (persist with a udev rule: tuning/README.md)"
            )),
        ),
        Err(e) => out.push(Finding::unreadable(check, &format!("{qs}/scheduler"), &e)),
    }
    let lbs = rd("logical_block_size").unwrap_or_default();
    let nr = rd("nr_requests").unwrap_or_default();
    let rot = rd("rotational").unwrap_or_default();
    let check = format!("queue {dev}");
    let detail = format!("logical_block_size {lbs}, nr_requests {nr}, rotational {rot}");
    out.push(if rot == "1" {
        Finding::new(
            Status::Warn,
            check,
            format!("{detail}: a rotational device; random reads cost a seek each"),
        )
        .fix("put --data on NVMe/SSD (in a VM the flag may be wrong: check the real device)")
    } else if lbs.parse::<usize>().is_ok_and(|b| b > BALE_ALIGN_BYTES) {
        Finding::new(
            Status::Fail,
            check,
            format!("{detail}: larger than bale's {BALE_ALIGN_BYTES}-byte alignment"),
        )
        .fix("reformat the namespace to a 512 or 4096-byte LBA format (nvme format --lbaf)")
    } else {
        Finding::new(Status::Pass, check, detail)
    });
}
