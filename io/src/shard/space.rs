//! Volumes and their space: the volume files, span allocation in the active volume (with the
//! disk reserve of ADR 5), and giving back the space of dead records and abandoned spans.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use futures::future::{FutureExt, LocalBoxFuture, Shared};

use super::{Shard, PUNCH_WAIT_NEAR_FULL};
use crate::buf::{round_down_u64, round_up_u64};
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
}

impl std::fmt::Debug for VolFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vol-{}", self.id)
    }
}

/// The life of one record on disk, shared by every extent that points at it: those of index
/// objects and those of objects readers still hold. When the last extent goes away after the
/// record was killed (no index object references it, and the journal entry that removed the
/// last reference is durable), the drop is queued and the committer punches the record's span
/// out of its volume: the space comes back without copying (ADR 5).
pub(crate) struct RecordLife {
    pub(super) vol: Rc<VolFile>,
    pub(super) record_offset: u64,
    pub(super) span_bytes: u64,
    /// Set when the index stops referencing the record (in `apply_changes`, which runs only
    /// after the killing entry is durable); cleared if it is referenced again.
    pub(super) dead: Cell<bool>,
    pub(super) dropped: Rc<RefCell<Vec<DroppedRecord>>>,
}

/// A record whose last extent went away (see `RecordLife`).
pub(super) struct DroppedRecord {
    vol: Rc<VolFile>,
    record_offset: u64,
    span_bytes: u64,
    dead: bool,
}

impl std::fmt::Debug for RecordLife {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {:?}@{}", self.vol, self.record_offset)
    }
}

impl Drop for RecordLife {
    fn drop(&mut self) {
        // The queue is only ever borrowed to push or to take it whole, never across a drop of a
        // RecordLife; should that change, the span is left to compaction (no panic in drop).
        if let Ok(mut q) = self.dropped.try_borrow_mut() {
            q.push(DroppedRecord {
                vol: self.vol.clone(),
                record_offset: self.record_offset,
                span_bytes: self.span_bytes,
                dead: self.dead.get(),
            });
        }
    }
}

pub(super) struct RecInfo {
    pub(super) span_bytes: u64,
    pub(super) refs: u32,
}

pub(super) struct VolState {
    pub(super) file: Rc<VolFile>,
    /// End of the reserved region (next record goes here); the volume's logical size.
    pub(super) end_bytes: u64,
    /// Bytes preallocated with fallocate (file size while active).
    pub(super) allocated_bytes: u64,
    pub(super) live_bytes: u64,
    /// Live records by record offset, with the number of extents referencing each.
    pub(super) records: HashMap<u64, RecInfo>,
    /// Writers (PUTs, compaction copies) with a reserved span not yet committed or abandoned.
    pub(super) writers: u32,
    /// The life of each record some extent points at (one per record: every extent of a record
    /// shares it). Entries whose life is gone are pruned when its drop is processed.
    pub(super) lives: HashMap<u64, Weak<RecordLife>>,
    /// End of the furthest record any snapshot or journal entry seen since open names (live or
    /// not): recovery may resolve those records again, so the file never shrinks below this.
    pub(super) named_end: u64,
    pub(super) sealed: bool,
    /// Preallocations queued on the shard's worker and not known to be done, oldest first.
    preallocs: Vec<Prealloc>,
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
            records: HashMap::new(),
            writers: 0,
            lives: HashMap::new(),
            named_end: 0,
            sealed,
            preallocs: Vec::new(),
        }
    }

    /// Seal the volume and give back its preallocated tail on the shard's worker (after the
    /// volume's queued preallocations); spans below `end_bytes` are untouched. The returned
    /// future is the truncation's end (close waits for it; a roll does not).
    fn seal(&mut self, offload: &Offload) -> impl std::future::Future<Output = ()> {
        self.sealed = true;
        self.preallocs.clear();
        let end_bytes = self.end_bytes;
        self.allocated_bytes = end_bytes;
        let path = self.file.path.clone();
        let fd = offload::dup(&self.file.file);
        let done = fd.map(|fd| offload.call(move || sys::ftruncate(&fd, end_bytes)));
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
            self.roll_volume(&mut vols)?;
        }
        let id = vols.active.expect("active volume");
        let v = vols.map.get_mut(&id).expect("active volume registered");
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
        Ok((v.file.clone(), off, wait))
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
        let vf = VolFile {
            id,
            path,
            file,
            dir_synced: Cell::new(false),
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

    /// Process records whose last extent went away: forget their lives and, for dead ones,
    /// punch their spans out of the volume (FALLOC_FL_PUNCH_HOLE | KEEP_SIZE), giving the space
    /// back without copying. Safe because nothing can read a dead record any more: no index
    /// object references it, no reader holds an extent of it, the entry that killed it is
    /// durable (so replay kills it again), and recovery, compaction and the scrubber only read
    /// records the index references.
    pub(super) fn reclaim_dropped_records(&self) {
        let dropped = std::mem::take(&mut *self.dropped_records.borrow_mut());
        if dropped.is_empty() {
            return;
        }
        let mut vols = self.vols.borrow_mut();
        for d in dropped {
            let Some(v) = vols.map.get_mut(&d.vol.id) else {
                continue; // the volume was compacted away
            };
            if !Rc::ptr_eq(&v.file, &d.vol) {
                continue;
            }
            if v.lives
                .get(&d.record_offset)
                .is_some_and(|w| w.strong_count() == 0)
            {
                v.lives.remove(&d.record_offset);
            }
            if !d.dead || !self.punch_enabled.get() {
                continue;
            }
            assert!(
                !v.records.contains_key(&d.record_offset),
                "dead record at {} of {:?} is live",
                d.record_offset,
                d.vol
            );
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
        let lo = round_up_u64(record_offset, PUNCH_GRANULE_BYTES);
        let hi = round_down_u64(record_offset + span_bytes, PUNCH_GRANULE_BYTES);
        if hi > lo {
            self.puncher.punch(&v.file.file, &v.file.path, lo, hi - lo);
        }
    }
}
