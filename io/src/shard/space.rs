//! Volumes and their space: the volume files, span allocation in the active volume (with the
//! disk reserve of ADR 5), and giving back the space of dead records and abandoned spans.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures::future::{FutureExt, LocalBoxFuture, Shared};

use super::{Shard, PUNCH_WAIT_NEAR_FULL};
use crate::buf::{round_down_u64, round_up_u64, AlignedBuf};
use crate::error::{Error, Result};
use crate::offload::{self, Offload};
use crate::sys;

/// Preallocate volume space (fallocate) in steps of this many bytes.
const PREALLOC_STEP_BYTES: u64 = 64 << 20;
/// Dead record spans are punched out in whole units of this size (the filesystem block size
/// bale assumes; a span's partial first and last units stay allocated until compaction).
const PUNCH_GRANULE_BYTES: u64 = 4096;
const _: () = assert!(PUNCH_GRANULE_BYTES.is_power_of_two());
const _: () = assert!(PREALLOC_STEP_BYTES.is_multiple_of(PUNCH_GRANULE_BYTES));

/// One open volume file. Held in an `Rc` by every extent that points into it, so a volume that
/// compaction unlinked stays readable for readers that still hold an old `Object`.
pub(crate) struct VolFile {
    pub(super) id: u32,
    pub(super) path: PathBuf,
    pub(super) file: monoio::fs::File,
    /// The directory entry naming this file is durable. A volume created while serving is not
    /// until the committer's directory fsync, which comes before any journal entry names it.
    pub(super) dir_synced: Cell<bool>,
    /// The same volume in the shard's other copies (mirror, ADR 19): every write and sync goes
    /// to each of them too; reads use `file` unless the shard's primary copy failed.
    pub(super) mirrors: Vec<MirrorFile>,
    /// A striped volume (ADR 19): its stripe and its member index. `file` is the member (no
    /// mirrors); when the member is lost, reads decode the span from the stripe's others.
    pub(super) stripe: Option<(Rc<super::stripe::StripeFiles>, usize)>,
}

/// One more copy of a shard file, in another data directory (mirror, ADR 19).
pub(crate) struct MirrorFile {
    pub(super) path: PathBuf,
    pub(super) file: monoio::fs::File,
}

impl MirrorFile {
    /// Opens the copy of a volume at `path` (O_DIRECT), creating it empty if it is missing (a
    /// volume the primary created just before a crash).
    pub(super) fn open_volume(path: PathBuf) -> Result<MirrorFile> {
        let f = match sys::open_direct(&path, false) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => sys::open_direct(&path, true),
            r => r,
        }
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let file = monoio::fs::File::from_std(f)
            .map_err(|e| Error::io(format!("register {}", path.display()), e))?;
        Ok(MirrorFile { path, file })
    }
}

/// Writes `buf` at `pos` to `file` and then to each mirror, one after the other (the buffer
/// is owned by the kernel during each write); the first error ends it.
pub(super) async fn write_all_copies<T: monoio::buf::IoBuf>(
    file: &monoio::fs::File,
    mirrors: &[MirrorFile],
    buf: T,
    pos: u64,
) -> (std::io::Result<()>, T) {
    let (res, mut buf) = file.write_all_at(buf, pos).await;
    if res.is_err() {
        return (res, buf);
    }
    for m in mirrors {
        let (res, b) = m.file.write_all_at(buf, pos).await;
        buf = b;
        if let Err(e) = res {
            tracing::error!(path = %m.path.display(), error = %e, "write to a mirror copy failed");
            return (Err(name_copy(&m.path, e)), buf);
        }
    }
    (Ok(()), buf)
}

/// An I/O error of a mirror's write, with the mirror's path in its message (the caller's
/// context names the primary; `Shard::copy_write_failed` finds the copy by its path). ENOSPC is
/// kept as it is (it becomes `Error::NoSpace`, not a failed copy).
fn name_copy(path: &Path, e: std::io::Error) -> std::io::Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return e;
    }
    std::io::Error::new(e.kind(), format!("copy {}: {e}", path.display()))
}

/// fdatasyncs `file` and every mirror at the same time (one sync round, ADR 22).
pub(super) async fn sync_data_copies(
    file: &monoio::fs::File,
    path: &Path,
    mirrors: &[MirrorFile],
) -> Result<()> {
    let home = async {
        file.sync_data()
            .await
            .map_err(|e| Error::io(format!("fdatasync {}", path.display()), e))
    };
    let others = futures::future::join_all(mirrors.iter().map(|m| async move {
        m.file
            .sync_data()
            .await
            .map_err(|e| Error::io(format!("fdatasync {}", m.path.display()), e))
    }));
    let (h, o) = futures::join!(home, others);
    o.into_iter().fold(h, |acc, r| acc.and(r))
}

impl VolFile {
    /// Writes `buf` at `pos` to every copy of the volume.
    pub(super) async fn write_all_at<T: monoio::buf::IoBuf>(
        &self,
        buf: T,
        pos: u64,
    ) -> (std::io::Result<()>, T) {
        write_all_copies(&self.file, &self.mirrors, buf, pos).await
    }

    /// fdatasyncs every copy of the volume at the same time.
    pub(super) async fn sync_data(&self) -> Result<()> {
        sync_data_copies(&self.file, &self.path, &self.mirrors).await
    }

    /// The file reads of copy `copy` use (0: the primary, then the mirrors), if it exists.
    pub(super) fn copy_file(&self, copy: usize) -> Option<(&monoio::fs::File, &Path)> {
        match copy {
            0 => Some((&self.file, &self.path)),
            c => self.mirrors.get(c - 1).map(|m| (&m.file, m.path.as_path())),
        }
    }
}

impl std::fmt::Debug for VolFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vol-{}", self.id)
    }
}

/// A record no index object references any more, waiting to be punched out of its volume.
#[derive(Debug, Clone, Copy)]
pub(super) struct DroppedRecord {
    pub(super) volume_id: u32,
    pub(super) record_offset: u64,
    pub(super) span_bytes: u64,
}

/// Readers' hold on dead records (ADR 17). Every `Object` handed out holds the epoch that was
/// current when it was made (one refcount, no allocation). A record that dies while the
/// current epoch has holders is parked on that epoch; each epoch holds the next one, so an
/// epoch ends only once its own holders and every earlier epoch are gone, and then hands its
/// records to the shard's drop queue (the committer punches them). A record is therefore
/// punched only after every `Object` that could name it is dropped, without a per-record
/// counter: the price is that one long-held `Object` delays the punching of records that die
/// after it was made (compaction and the reserve check still see them as garbage).
pub(crate) struct Epoch {
    dead: RefCell<Vec<DroppedRecord>>,
    next: RefCell<Option<Rc<Epoch>>>,
    sink: Rc<RefCell<Vec<DroppedRecord>>>,
}

impl Epoch {
    pub(super) fn new(sink: Rc<RefCell<Vec<DroppedRecord>>>) -> Rc<Epoch> {
        Rc::new(Epoch {
            dead: RefCell::new(Vec::new()),
            next: RefCell::new(None),
            sink,
        })
    }

    /// Hand `died` (records that stopped being referenced) to the readers' protocol: straight
    /// to the drop queue when no `Object` holds `cur`, else parked on `cur`, and a new epoch
    /// (which `cur` holds) is returned to become the current one.
    pub(super) fn retire(cur: &Rc<Epoch>, died: Vec<DroppedRecord>) -> Option<Rc<Epoch>> {
        if died.is_empty() {
            return None;
        }
        if Rc::strong_count(cur) == 1 {
            cur.sink.borrow_mut().extend(died);
            return None;
        }
        cur.dead.borrow_mut().extend(died);
        let next = Epoch::new(cur.sink.clone());
        let old = cur.next.borrow_mut().replace(next.clone());
        assert!(old.is_none(), "the current epoch has no successor");
        Some(next)
    }
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch({} dead)", self.dead.borrow().len())
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        let mut dead = std::mem::take(self.dead.get_mut());
        // Successors only this epoch held end too; unwound in a loop, not by recursion (a
        // long-held Object can leave a long chain).
        let mut next = self.next.get_mut().take();
        while let Some(n) = next {
            match Rc::try_unwrap(n) {
                Ok(mut e) => {
                    dead.append(e.dead.get_mut());
                    next = e.next.get_mut().take();
                }
                Err(_) => break,
            }
        }
        // The queue is only ever borrowed to push or to take it whole, never across a drop of
        // an Object; should that change, the spans are left to compaction (no panic in drop).
        if !dead.is_empty() {
            if let Ok(mut q) = self.sink.try_borrow_mut() {
                q.append(&mut dead);
            }
        }
    }
}

/// The records of one volume that index objects reference, with how many extents reference
/// each (ADR 25): offsets kept sorted (appends at the active volume's end are the common case)
/// as their low 32 bits, grouped by their high 32 bits in `pages` (one page for a volume under
/// 4 GiB); each count a `u8` beside them, counts of `COUNT_SPILLED` and more in `spilled`
/// (copies that share a record many times). A record whose count falls to zero stays as a
/// tombstone until they are many. 5 bytes per record (was 12: a `u64` and a `u32`).
#[derive(Default)]
pub(super) struct RecTable {
    /// Low 32 bits of each record offset, sorted by the whole offset.
    lows: Vec<u32>,
    /// Reference count of each, `COUNT_SPILLED` when it is in `spilled`.
    refs: Vec<u8>,
    /// (high 32 bits, index in `lows` of the first offset with them), sorted; pages are never
    /// empty except transiently.
    pages: Vec<(u32, u32)>,
    /// Counts of `COUNT_SPILLED` or more, by record offset.
    spilled: BTreeMap<u64, u32>,
    /// Entries with a count of zero.
    tombstones: usize,
}

/// A `refs` entry that says the count is in `RecTable::spilled`.
const COUNT_SPILLED: u8 = u8::MAX;

impl RecTable {
    /// The table of `recs` ((record offset, span) per reference, sorted by offset) and the
    /// bytes of the distinct records.
    pub(super) fn from_sorted(recs: &[(u64, u64)]) -> (RecTable, u64) {
        let mut t = RecTable::default();
        let mut live_bytes = 0u64;
        let mut last: Option<u64> = None;
        let mut count = 0u32;
        for &(off, span) in recs {
            if last == Some(off) {
                count += 1;
                continue;
            }
            assert!(last.is_none_or(|l| l < off), "records not sorted");
            if let Some(l) = last {
                t.push_sorted(l, count);
            }
            last = Some(off);
            count = 1;
            live_bytes += span;
        }
        if let Some(l) = last {
            t.push_sorted(l, count);
        }
        t.lows.shrink_to_fit();
        t.refs.shrink_to_fit();
        t.pages.shrink_to_fit();
        (t, live_bytes)
    }

    /// Append `off` (above every offset in the table) with `count` references.
    fn push_sorted(&mut self, off: u64, count: u32) {
        let (hi, lo) = split(off);
        if self.pages.last().is_none_or(|p| p.0 != hi) {
            self.pages.push((hi, self.lows.len() as u32));
        }
        self.lows.push(lo);
        self.refs.push(0);
        let i = self.lows.len() - 1;
        self.set_count(i, off, count);
    }

    /// Records with at least one reference.
    pub(super) fn live(&self) -> usize {
        self.lows.len() - self.tombstones
    }

    pub(super) fn is_empty(&self) -> bool {
        self.live() == 0
    }

    /// Entries of the page of `hi`: (its position in `pages`, the range in `lows`), or where
    /// the page would go.
    fn page(&self, hi: u32) -> std::result::Result<(usize, std::ops::Range<usize>), usize> {
        let p = self.pages.binary_search_by_key(&hi, |p| p.0)?;
        let start = self.pages[p].1 as usize;
        let end = self
            .pages
            .get(p + 1)
            .map_or(self.lows.len(), |n| n.1 as usize);
        Ok((p, start..end))
    }

    /// Position of `off` (Ok) or where it would go (Err: (page position or where a new page
    /// goes, whether that page exists, index in `lows`)).
    fn find(&self, off: u64) -> std::result::Result<usize, (usize, bool, usize)> {
        let (hi, lo) = split(off);
        match self.page(hi) {
            Ok((p, r)) => match self.lows[r.clone()].binary_search(&lo) {
                Ok(i) => Ok(r.start + i),
                Err(i) => Err((p, true, r.start + i)),
            },
            Err(p) => {
                let at = self.pages.get(p).map_or(self.lows.len(), |n| n.1 as usize);
                Err((p, false, at))
            }
        }
    }

    fn count(&self, i: usize, off: u64) -> u32 {
        match self.refs[i] {
            COUNT_SPILLED => self.spilled[&off],
            c => u32::from(c),
        }
    }

    fn set_count(&mut self, i: usize, off: u64, count: u32) {
        if count >= u32::from(COUNT_SPILLED) {
            self.refs[i] = COUNT_SPILLED;
            self.spilled.insert(off, count);
        } else {
            if self.refs[i] == COUNT_SPILLED {
                self.spilled.remove(&off);
            }
            self.refs[i] = count as u8;
        }
    }

    /// One more reference to the record at `off`; true when that made it live.
    pub(super) fn add(&mut self, off: u64) -> bool {
        match self.find(off) {
            Ok(i) => {
                let c = self.count(i, off) + 1;
                self.set_count(i, off, c);
                if c == 1 {
                    self.tombstones -= 1;
                }
                c == 1
            }
            Err((p, page_exists, i)) => {
                // Grow by an eighth, not by doubling (one table entry per record).
                if self.lows.len() == self.lows.capacity() {
                    let extra = (self.lows.len() / 8).max(64);
                    self.lows.reserve_exact(extra);
                    self.refs.reserve_exact(extra);
                }
                self.lows.insert(i, split(off).1);
                self.refs.insert(i, 1);
                let later = if page_exists {
                    p + 1
                } else {
                    self.pages.insert(p, (split(off).0, i as u32));
                    p + 1
                };
                for q in &mut self.pages[later..] {
                    q.1 += 1;
                }
                true
            }
        }
    }

    /// One reference less to the record at `off`; true when that killed it.
    pub(super) fn drop_ref(&mut self, off: u64) -> bool {
        let i = self
            .find(off)
            .expect("a referenced record is in its volume's table");
        let c = self.count(i, off);
        assert!(c > 0, "record at {off} referenced less than never");
        self.set_count(i, off, c - 1);
        if c > 1 {
            return false;
        }
        self.tombstones += 1;
        if self.tombstones > 1024 && self.tombstones > self.lows.len() / 2 {
            self.sweep();
        }
        true
    }

    /// Forget the tombstones (spilled counts are never zero: they stay).
    fn sweep(&mut self) {
        let mut j = 0;
        let mut pages = Vec::with_capacity(self.pages.len());
        for p in 0..self.pages.len() {
            let start = self.pages[p].1 as usize;
            let end = self
                .pages
                .get(p + 1)
                .map_or(self.lows.len(), |n| n.1 as usize);
            let first = j;
            for k in start..end {
                if self.refs[k] > 0 {
                    self.lows[j] = self.lows[k];
                    self.refs[j] = self.refs[k];
                    j += 1;
                }
            }
            if j > first {
                pages.push((self.pages[p].0, first as u32));
            }
        }
        self.pages = pages;
        self.lows.truncate(j);
        self.refs.truncate(j);
        self.lows.shrink_to_fit();
        self.refs.shrink_to_fit();
        self.tombstones = 0;
    }

    /// True if some extent of the index references the record at `off`.
    pub(super) fn is_live(&self, off: u64) -> bool {
        self.find(off).is_ok_and(|i| self.refs[i] > 0)
    }
}

/// (high, low) 32 bits of a record offset.
fn split(off: u64) -> (u32, u32) {
    ((off >> 32) as u32, off as u32)
}

pub(super) struct VolState {
    pub(super) file: Rc<VolFile>,
    /// End of the reserved region (next record goes here); the volume's logical size.
    pub(super) end_bytes: u64,
    /// Bytes preallocated with fallocate (file size while active).
    pub(super) allocated_bytes: u64,
    pub(super) live_bytes: u64,
    /// Live records by record offset, with the number of extents referencing each.
    pub(super) records: RecTable,
    /// Writers (PUTs, compaction copies) with a reserved span not yet committed or abandoned.
    pub(super) writers: u32,
    /// End of the furthest record any snapshot or journal entry seen since open names (live or
    /// not): recovery may resolve those records again, so the file never shrinks below this.
    pub(super) named_end: u64,
    pub(super) sealed: bool,
    /// Part of a stripe, or being encoded into one (ADR 19): its bytes must not change (no
    /// hole punching, no truncation, no removal by compaction or at open).
    pub(super) striped: bool,
    /// Preallocations queued on the shard's worker and not known to be done, oldest first.
    preallocs: Vec<Prealloc>,
    /// The partly filled last unit of the active volume's latest packed write, which the next
    /// packed write continues (ADR 25); None while a packed write continuing it is in flight.
    pub(super) pack_tail: Option<PackTail>,
    /// The staging buffer of the active volume's packed writes, kept between them (ADR 25:
    /// one aligned allocation per packed write left ~4 KiB free fragments between the index's
    /// long-lived allocations); None while a packed write uses it.
    pack_buf: Option<AlignedBuf>,
}

/// A packed write's staging buffer is at least this big (most batches fit it) and is kept for
/// the next packed write when it is at most `PACK_BUF_KEEP_BYTES`.
const PACK_BUF_MIN_BYTES: usize = 64 << 10;
const PACK_BUF_KEEP_BYTES: usize = 256 << 10;

/// The last `align_bytes` unit of a packed write that its records did not fill: where it
/// starts and a copy of its bytes up to the end of the last record (a multiple of 8, less than
/// a unit). The next packed write rewrites the unit with these bytes unchanged, then its own
/// records (ADR 25: an acknowledged record is never torn by it).
pub(super) struct PackTail {
    pub(super) unit_offset: u64,
    pub(super) bytes: Vec<u8>,
}

/// Where a packed write goes (`Shard::reserve_packed`).
pub(super) struct PackedSpan {
    pub(super) vol: Rc<VolFile>,
    /// The aligned offset the write starts at.
    pub(super) offset: u64,
    /// The bytes of the partly filled unit at `offset` the write continues (empty: a fresh
    /// span).
    pub(super) tail: Vec<u8>,
    /// Bytes reserved for the write beyond that unit (the whole write for a fresh span).
    pub(super) reserved_bytes: u64,
    pub(super) prealloc: Option<Prealloc>,
}

/// A preallocation of `[from, want)` of a volume queued on the shard's worker (offload.rs).
/// Writers of spans ending in `(from, want]` wait for it before writing: a failed step is
/// given back with a truncation to `from` (then retried for less), which must not cut written
/// data. Its result is how far the file is allocated.
#[derive(Clone)]
pub(super) struct Prealloc {
    from: u64,
    want: u64,
    done: Shared<LocalBoxFuture<'static, std::result::Result<u64, Rc<Error>>>>,
}

impl Prealloc {
    /// Waits until the span ending at `span_end` is allocated.
    pub(super) async fn wait(self, span_end: u64) -> Result<()> {
        match self.done.await {
            Ok(got) if span_end <= got => Ok(()),
            Ok(got) => Err(Error::NoSpace {
                context: format!(
                    "preallocation stopped at {got} bytes, below this record's end at {span_end}"
                ),
            }),
            Err(e) => Err(e.duplicate()),
        }
    }
}

impl VolState {
    /// A volume of `size_bytes` (all of them reserved and allocated) with no known records.
    pub(super) fn new(file: VolFile, size_bytes: u64, sealed: bool) -> VolState {
        VolState {
            file: Rc::new(file),
            end_bytes: size_bytes,
            allocated_bytes: size_bytes,
            live_bytes: 0,
            records: RecTable::default(),
            writers: 0,
            named_end: 0,
            sealed,
            striped: false,
            preallocs: Vec::new(),
            pack_tail: None,
            pack_buf: None,
        }
    }

    /// Seal the volume and give back its preallocated tail on the shard's worker (after the
    /// volume's queued preallocations); spans below `end_bytes` are untouched. The returned
    /// future is the truncation's end (close waits for it; a roll does not).
    fn seal(&mut self, offload: &Offload) -> impl std::future::Future<Output = ()> {
        self.sealed = true;
        self.pack_tail = None;
        self.pack_buf = None;
        self.preallocs.clear();
        let end_bytes = self.end_bytes;
        self.allocated_bytes = end_bytes;
        let path = self.file.path.clone();
        let fds: std::io::Result<Vec<_>> = std::iter::once(&self.file.file)
            .chain(self.file.mirrors.iter().map(|m| &m.file))
            .map(offload::dup)
            .collect();
        let done = fds.map(|fds| {
            offload.call(move || fds.iter().try_for_each(|fd| sys::ftruncate(fd, end_bytes)))
        });
        async move {
            let r = match done {
                Ok(f) => f.await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                tracing::warn!(path = %path.display(), error = %e, "truncating sealed volume failed");
            }
        }
    }
}

pub(super) struct Vols {
    pub(super) map: BTreeMap<u32, VolState>,
    pub(super) active: Option<u32>,
    pub(super) next_id: u32,
}

pub(super) fn vol_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("vol-{id:08}.dat"))
}

/// Releases a volume writer slot when dropped (compaction copies).
pub(super) struct WriterSlot<'a> {
    pub(super) vols: &'a RefCell<Vols>,
    pub(super) volume_id: u32,
}

impl Drop for WriterSlot<'_> {
    fn drop(&mut self) {
        release_writer(self.vols, self.volume_id);
    }
}

pub(super) fn release_writer(vols: &RefCell<Vols>, volume_id: u32) {
    let mut v = vols.borrow_mut();
    let st = v
        .map
        .get_mut(&volume_id)
        .expect("volume with a writer slot is registered");
    assert!(st.writers > 0, "writer slot underflow on vol {volume_id}");
    st.writers -= 1;
}

impl Shard {
    /// Reserve `span_bytes` in the active volume (rolling to a new one past the target size),
    /// preallocating with fallocate on the shard's worker. Takes a writer slot on the volume.
    /// The caller must wait for the returned preallocation, if any, before writing the span.
    pub(super) fn reserve(&self, span_bytes: u64) -> Result<(Rc<VolFile>, u64, Option<Prealloc>)> {
        // Space freed by deletes whose objects were let go since the last commit counts now.
        self.reclaim_dropped_records();
        let mut vols = self.vols.borrow_mut();
        let roll = match vols.active {
            None => true,
            Some(id) => {
                let v = &vols.map[&id];
                v.end_bytes > 0 && v.end_bytes + span_bytes > self.cfg.volume_target_bytes
            }
        };
        if roll {
            self.roll_volume(&mut vols)
                .map_err(|e| self.copy_write_failed(e))?;
        }
        let id = vols.active.expect("active volume");
        let v = vols.map.get_mut(&id).expect("active volume registered");
        // A fresh span after the last packed write's unit: that unit is not continued.
        v.pack_tail = None;
        let (off, wait) = self.extend(v, span_bytes)?;
        Ok((v.file.clone(), off, wait))
    }

    /// Append `span_bytes` to the reserved region of the active volume `v` (preallocating) and
    /// take a writer slot: the span's offset and the preallocation to wait for.
    fn extend(&self, v: &mut VolState, span_bytes: u64) -> Result<(u64, Option<Prealloc>)> {
        let need = v.end_bytes + span_bytes;
        if need > v.allocated_bytes {
            self.preallocate(v, need)?;
        }
        // Forget preallocations known to be done; wait for the one covering this span's end.
        v.preallocs.retain(|p| p.done.peek().is_none());
        let wait = v
            .preallocs
            .iter()
            .find(|p| p.from < need && need <= p.want)
            .cloned();
        let off = v.end_bytes;
        v.end_bytes += span_bytes;
        v.writers += 1;
        assert_eq!(off % self.cfg.align_bytes as u64, 0);
        Ok((off, wait))
    }

    /// Reserve room for a packed write of `record_bytes` (its records' spans back to back; ADR
    /// 25): when the active volume's latest packed write left its last unit partly filled and
    /// nothing was reserved after that unit since, the write continues in that unit (taken
    /// from the volume until the write is done: `set_pack_tail`) and only the units beyond it
    /// are reserved; else a fresh aligned span, as `reserve`. Takes a writer slot.
    pub(super) fn reserve_packed(&self, record_bytes: u64) -> Result<PackedSpan> {
        let align = self.cfg.align_bytes as u64;
        {
            self.reclaim_dropped_records();
            let mut vols = self.vols.borrow_mut();
            if let Some(id) = vols.active {
                let target = self.cfg.volume_target_bytes;
                let v = vols.map.get_mut(&id).expect("active volume registered");
                let fits = |t: &PackTail| {
                    let extra = round_up_u64(t.bytes.len() as u64 + record_bytes, align) - align;
                    (!v.sealed
                        && v.end_bytes == t.unit_offset + align
                        && (extra == 0 || v.end_bytes + extra <= target))
                        .then_some(extra)
                };
                if let Some(extra) = v.pack_tail.as_ref().and_then(fits) {
                    let t = v.pack_tail.take().expect("a tail");
                    let (at, prealloc) = self.extend(v, extra)?;
                    assert_eq!(at, t.unit_offset + align);
                    return Ok(PackedSpan {
                        vol: v.file.clone(),
                        offset: t.unit_offset,
                        tail: t.bytes,
                        reserved_bytes: extra,
                        prealloc,
                    });
                }
            }
        }
        let span_bytes = round_up_u64(record_bytes, align);
        let (vol, offset, prealloc) = self.reserve(span_bytes)?;
        Ok(PackedSpan {
            vol,
            offset,
            tail: Vec::new(),
            reserved_bytes: span_bytes,
            prealloc,
        })
    }

    /// An empty aligned buffer of at least `span_bytes` for a packed write into `vol`: the
    /// volume's kept one when it is big enough, else a new one (at least `PACK_BUF_MIN_BYTES`).
    pub(super) fn take_pack_buf(&self, vol: &Rc<VolFile>, span_bytes: usize) -> AlignedBuf {
        let kept = {
            let mut vols = self.vols.borrow_mut();
            vols.map
                .get_mut(&vol.id)
                .filter(|v| Rc::ptr_eq(&v.file, vol))
                .and_then(|v| v.pack_buf.take())
        };
        match kept {
            Some(mut b) if b.capacity() >= span_bytes => {
                b.clear();
                b
            }
            _ => AlignedBuf::new(
                span_bytes.max(PACK_BUF_MIN_BYTES),
                self.cfg.align_bytes as usize,
            ),
        }
    }

    /// Keep `buf` (a packed write's, done) for the next packed write into `vol`, if `vol` is
    /// still the active volume and `buf` is at most `PACK_BUF_KEEP_BYTES`.
    pub(super) fn keep_pack_buf(&self, vol: &Rc<VolFile>, buf: AlignedBuf) {
        if buf.capacity() > PACK_BUF_KEEP_BYTES {
            return;
        }
        let mut vols = self.vols.borrow_mut();
        if vols.active != Some(vol.id) {
            return;
        }
        if let Some(v) = vols.map.get_mut(&vol.id) {
            if Rc::ptr_eq(&v.file, vol) && !v.sealed && v.pack_buf.is_none() {
                v.pack_buf = Some(buf);
            }
        }
    }

    /// After a packed write to `vol` ending at `end` succeeded: `tail` (its last unit's offset
    /// and bytes up to its last record) is what the next packed write continues, if `vol` is
    /// still the active volume and nothing was reserved after that unit.
    pub(super) fn set_pack_tail(&self, vol: &Rc<VolFile>, tail: PackTail) {
        let align = self.cfg.align_bytes as u64;
        let mut vols = self.vols.borrow_mut();
        if vols.active != Some(vol.id) {
            return;
        }
        let Some(v) = vols.map.get_mut(&vol.id) else {
            return;
        };
        if Rc::ptr_eq(&v.file, vol) && !v.sealed && v.end_bytes == tail.unit_offset + align {
            v.pack_tail = Some(tail);
        }
    }

    /// Seal the active volume (if any) and make a new, empty one active.
    /// The new volume's directory entry is made durable by the committer before a journal
    /// entry names it (`dir_synced`), not here: the core does not wait for the directory fsync.
    fn roll_volume(&self, vols: &mut Vols) -> Result<()> {
        if let Some(old) = vols.active.take() {
            // The truncation runs on the worker; nothing waits for it.
            monoio::spawn(
                vols.map
                    .get_mut(&old)
                    .expect("active volume registered")
                    .seal(&self.offload),
            );
        }
        let id = vols.next_id;
        vols.next_id += 1;
        let path = vol_path(&self.dir, id);
        let f = sys::open_direct(&path, true)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        let file = monoio::fs::File::from_std(f)
            .map_err(|e| Error::io(format!("register {}", path.display()), e))?;
        tracing::debug!(path = %path.display(), "new active volume");
        let mirrors = self
            .mirror_dirs
            .iter()
            .map(|d| {
                let mpath = vol_path(d, id);
                let f = sys::open_direct(&mpath, true)
                    .map_err(|e| Error::io(format!("create {}", mpath.display()), e))?;
                let file = monoio::fs::File::from_std(f)
                    .map_err(|e| Error::io(format!("register {}", mpath.display()), e))?;
                Ok(MirrorFile { path: mpath, file })
            })
            .collect::<Result<Vec<_>>>()?;
        let vf = VolFile {
            id,
            path,
            file,
            dir_synced: Cell::new(false),
            mirrors,
            stripe: None,
        };
        vols.map.insert(id, VolState::new(vf, 0, false));
        vols.active = Some(id);
        Ok(())
    }

    /// Preallocate the active volume `v` up to at least `need` bytes: a whole step when the
    /// reserve allows it, else exactly `need`.
    fn preallocate(&self, v: &mut VolState, need: u64) -> Result<()> {
        let from = v.allocated_bytes;
        let mut want = round_up_u64(need, PREALLOC_STEP_BYTES);
        if self.check_headroom(v, want - from).is_err() {
            // Not room for a whole step above the reserve: exactly this record, or nothing.
            self.check_headroom(v, need - from)?;
            want = need;
        }
        let fd = offload::dup(&v.file.file)
            .map_err(|e| Error::io(format!("dup {}", v.file.path.display()), e))?;
        let path = v.file.path.clone();
        // Runs on the worker. Writers of spans in [from, want) wait for it (`Prealloc`), so the
        // fallback's truncation to `from` cuts nothing written.
        let job = self.offload.call(move || {
            if sys::fallocate(&fd, from, want - from).is_ok() {
                return Ok(Ok(want));
            }
            // A failed fallocate may leave part of the range allocated: give it back, then
            // retry with exactly what the record that asked needs before giving up.
            if let Err(e) = sys::ftruncate(&fd, from) {
                tracing::warn!(path = %path.display(), error = %e, "giving back a partial preallocation failed");
            }
            Ok(sys::fallocate(&fd, from, need - from)
                .map(|()| need)
                .map_err(|e| (path, e)))
        });
        let done = async move {
            match job.await {
                Ok(Ok(got)) => Ok(got),
                Ok(Err((path, e))) => Err(Rc::new(Error::io(
                    format!("fallocate {} to {need} bytes", path.display()),
                    e,
                ))),
                Err(e) => Err(Rc::new(Error::io("preallocate a volume", e))),
            }
        }
        .boxed_local()
        .shared();
        v.preallocs.push(Prealloc { from, want, done });
        v.allocated_bytes = want;
        Ok(())
    }

    /// Seal the active volume, giving back its preallocated tail (at close).
    pub(super) async fn seal_active(&self) {
        let sealed = {
            let mut vols = self.vols.borrow_mut();
            vols.active.take().map(|id| {
                vols.map
                    .get_mut(&id)
                    .expect("active volume registered")
                    .seal(&self.offload)
            })
        };
        if let Some(f) = sealed {
            f.await;
        }
    }

    /// Refuse an allocation of `grow_bytes` that would leave less free space than the reserve
    /// plus what a checkpoint needs now: journal appends (DELETE, multipart complete) and the
    /// index snapshot write must always find room (ADR 5). One fstatvfs per allocation step.
    fn check_headroom(&self, v: &VolState, grow_bytes: u64) -> Result<()> {
        let reserve_bytes = self.cfg.reserve_bytes;
        if reserve_bytes == 0 {
            return Ok(());
        }
        let mut free_bytes = sys::free_bytes(&v.file.file)
            .map_err(|e| Error::io(format!("fstatvfs {}", v.file.path.display()), e))?;
        let snapshot_bytes = self.snapshot_bytes.get();
        let required_bytes = grow_bytes
            .saturating_add(reserve_bytes)
            .saturating_add(snapshot_bytes);
        if free_bytes < required_bytes
            && self
                .puncher
                .state
                .pending_jobs
                .load(std::sync::atomic::Ordering::Acquire)
                > 0
        {
            // Near full with punches still queued: the space they free decides this allocation.
            // Blocking the core here is confined to a disk that is nearly full.
            self.puncher.wait_idle(PUNCH_WAIT_NEAR_FULL);
            if let Ok(b) = sys::free_bytes(&v.file.file) {
                free_bytes = b;
            }
        }
        if free_bytes < required_bytes {
            self.reserve_refusals.set(self.reserve_refusals.get() + 1);
            return Err(Error::NoSpace {
                context: format!(
                    "{}: {free_bytes} bytes free; allocating {grow_bytes} more would leave less than the reserve of \
                     {reserve_bytes} bytes plus {snapshot_bytes} bytes for an index snapshot",
                    self.dir.display()
                ),
            });
        }
        Ok(())
    }

    /// Punch the spans of dead records that no reader can name any more out of their volumes
    /// (FALLOC_FL_PUNCH_HOLE | KEEP_SIZE), giving the space back without copying. Safe because
    /// nothing can read such a record: no index object references it (checked again here: a
    /// record can be referenced again after it died, e.g. during replay), no `Object` that
    /// could name it is held (`Epoch`), the entry that killed it is durable (so replay kills it
    /// again), and recovery, compaction and the scrubber only read records the index
    /// references.
    pub(super) fn reclaim_dropped_records(&self) {
        let dropped = std::mem::take(&mut *self.dropped_records.borrow_mut());
        if dropped.is_empty() || !self.punch_enabled.get() {
            return;
        }
        let mut vols = self.vols.borrow_mut();
        for d in dropped {
            let Some(v) = vols.map.get_mut(&d.volume_id) else {
                continue; // the volume was compacted away
            };
            if v.records.is_live(d.record_offset) {
                continue;
            }
            assert!(d.record_offset + d.span_bytes <= v.end_bytes);
            self.punch_span(v, d.record_offset, d.span_bytes);
        }
    }

    /// Gives back the span of a PUT that was reserved but never handed to the committer (no
    /// journal entry can name it, so nothing will ever read it). At the tail of the active
    /// volume, with no write of it still in flight, the tail is rolled back and the next PUT
    /// reuses the (already allocated) space; anywhere else its whole filesystem blocks are
    /// punched out on the worker thread. A write still in flight may refill at most one
    /// staging buffer of a punched span: compaction takes that.
    pub(super) fn reclaim_abandoned_span(
        &self,
        vol: &Rc<VolFile>,
        record_offset: u64,
        span_bytes: u64,
        write_in_flight: bool,
    ) {
        let mut vols = self.vols.borrow_mut();
        let is_active = vols.active == Some(vol.id);
        let Some(v) = vols.map.get_mut(&vol.id) else {
            return;
        };
        if !Rc::ptr_eq(&v.file, vol) {
            return;
        }
        assert!(record_offset + span_bytes <= v.end_bytes);
        if is_active && !v.sealed && !write_in_flight && v.end_bytes == record_offset + span_bytes {
            v.end_bytes = record_offset;
            return;
        }
        self.punch_span(v, record_offset, span_bytes);
    }

    /// Queue a punch of the whole filesystem blocks of `[record_offset, +span_bytes)` of `v`.
    fn punch_span(&self, v: &VolState, record_offset: u64, span_bytes: u64) {
        // A stripe's parity covers its members' bytes as they are: a hole would make the
        // other members' degraded reads of that span decode wrong bytes.
        if v.striped {
            return;
        }
        let lo = round_up_u64(record_offset, PUNCH_GRANULE_BYTES);
        let hi = round_down_u64(record_offset + span_bytes, PUNCH_GRANULE_BYTES);
        if hi > lo {
            self.puncher.punch(&v.file.file, &v.file.path, lo, hi - lo);
            for m in &v.file.mirrors {
                self.puncher.punch(&m.file, &m.path, lo, hi - lo);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(off: u64) -> DroppedRecord {
        DroppedRecord {
            volume_id: 1,
            record_offset: off,
            span_bytes: 4096,
        }
    }

    #[test]
    fn rec_table_counts_references() {
        let (mut t, live_bytes) = RecTable::from_sorted(&[(0, 10), (100, 20), (100, 20), (300, 5)]);
        assert_eq!((t.live(), live_bytes), (3, 35));
        assert!(!t.drop_ref(100), "still referenced once");
        assert!(t.drop_ref(100));
        assert!(!t.is_live(100) && t.is_live(0));
        assert!(t.add(100), "revived");
        assert!(!t.add(100));
        assert!(t.add(200));
        assert_eq!(t.live(), 4);
        for off in [0, 200, 300] {
            assert!(t.drop_ref(off));
        }
        assert!(!t.drop_ref(100));
        assert!(t.drop_ref(100));
        assert!(t.is_empty());
        // Many tombstones are swept.
        for off in 0..5000u64 {
            assert!(t.add(1000 + off));
        }
        for off in 0..5000u64 {
            assert!(t.drop_ref(1000 + off));
        }
        assert!(t.is_empty());
        assert!(t.lows.len() < 5000);
    }

    #[test]
    fn rec_table_pages_and_spilled_counts() {
        // Offsets on both sides of 4 GiB boundaries land in their own pages, in order.
        let g = 1u64 << 32;
        let (mut t, live_bytes) = RecTable::from_sorted(&[(8, 1), (g + 8, 1), (3 * g, 1)]);
        assert_eq!((t.live(), live_bytes, t.pages.len()), (3, 3, 3));
        assert!(t.add(2 * g + 16), "a new page between two");
        assert!(t.add(g - 8), "the end of the first page");
        assert!(t.add(5 * g), "a new last page");
        assert_eq!(t.pages.len(), 5);
        for off in [8, g - 8, g + 8, 2 * g + 16, 3 * g, 5 * g] {
            assert!(t.is_live(off), "{off}");
        }
        for off in [0, g, 2 * g, 4 * g, 16] {
            assert!(!t.is_live(off), "{off}");
        }
        // A record shared more often than a u8 counts: the count spills and comes back.
        let n = 1000u32;
        for _ in 1..n {
            assert!(!t.add(g + 8));
        }
        assert_eq!(t.spilled.get(&(g + 8)), Some(&n));
        for _ in 1..n {
            assert!(!t.drop_ref(g + 8));
        }
        assert!(
            t.spilled.is_empty(),
            "a count below the spill mark is back in its u8"
        );
        assert!(t.drop_ref(g + 8), "the last reference");
        assert!(!t.is_live(g + 8) && t.is_live(8) && t.is_live(2 * g + 16));
        // from_sorted spills too.
        let many: Vec<(u64, u64)> = std::iter::repeat_n((g + 64, 10), 300).collect();
        let (mut t2, live_bytes) = RecTable::from_sorted(&many);
        assert_eq!(
            (t2.live(), live_bytes, t2.spilled.get(&(g + 64))),
            (1, 10, Some(&300))
        );
        for i in 0..300 {
            assert_eq!(t2.drop_ref(g + 64), i == 299);
        }
        assert!(t2.is_empty() && t2.spilled.is_empty());
        // A sweep keeps pages in step with the entries.
        for i in 0..3000u64 {
            assert!(t.add(4 * g + 8 * i));
        }
        for i in 0..3000u64 {
            assert!(t.drop_ref(4 * g + 8 * i));
        }
        assert!(t.lows.len() < 3000);
        for off in [8, g - 8, 2 * g + 16, 3 * g, 5 * g] {
            assert!(t.is_live(off), "{off} after the sweep");
        }
        assert!(t.add(4 * g + 8), "a swept page comes back");
        assert!(t.is_live(4 * g + 8) && t.is_live(5 * g));
        assert_eq!(t.live(), 6);
    }

    #[test]
    fn epochs_release_records_after_earlier_holders() {
        let sink = Rc::new(RefCell::new(Vec::new()));
        let mut cur = Epoch::new(sink.clone());
        // No holder: straight to the queue.
        assert!(Epoch::retire(&cur, vec![rec(0)]).is_none());
        assert_eq!(sink.borrow_mut().drain(..).count(), 1);
        // A holder of epoch 1 keeps records that die in epochs 1 and 2.
        let h1 = cur.clone();
        cur = Epoch::retire(&cur, vec![rec(1)]).expect("a new epoch");
        let h2 = cur.clone();
        cur = Epoch::retire(&cur, vec![rec(2)]).expect("a new epoch");
        drop(h2);
        assert!(sink.borrow().is_empty(), "epoch 1 still held");
        drop(h1);
        let got: Vec<u64> = sink
            .borrow_mut()
            .drain(..)
            .map(|d| d.record_offset)
            .collect();
        assert_eq!(got, vec![1, 2]);
        // A long chain unwinds without recursion.
        let h = cur.clone();
        for i in 0..200_000 {
            cur = Epoch::retire(&cur, vec![rec(10 + i)]).expect("a new epoch");
        }
        drop(h);
        assert_eq!(sink.borrow().len(), 200_000);
        drop(cur);
    }
}
