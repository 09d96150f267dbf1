//! The shard: one directory, one monoio runtime. This module holds the `Shard` struct, the
//! public types and the public API; the work is done in rooms by duty (ADR 7):
//!
//! - `recover`: `Shard::open`: lock, volumes, snapshot, journal replay, space nothing names.
//! - `read`: reads of object data, CRC checks, the object and block cache.
//! - `index`: the in-memory index: resolving extents, planning and applying changes, listing.
//! - `space`: volumes and their space: allocation, the reserve, hole punching of dead records.
//! - `commit`: the committer: requests, group commit, the journal.
//! - `checkpoint`: the committer's checkpoints: index snapshot, journal trim.
//! - `compact`: compaction, scrubbing and the chunked index walk they and checkpoints share.
//! - `writer`: `PutWriter`, streaming one object into its reserved span.

mod apply;
mod arena;
mod checkpoint;
mod commit;
mod compact;
mod extent;
mod index;
mod keys;
mod list;
mod meta;
mod pack;
mod plan;
mod read;
mod rebuild;
mod recover;
mod restripe;
mod slot;
mod space;
mod spill;
mod stripe;
mod striping;
mod writer;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::channel::mpsc;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::format::{MAX_JOURNAL_ENTRY_BYTES, MAX_KEY_BYTES, MAX_NS_BYTES};
use crate::stats::{HistSnapshot, LocalHist, BATCH_BOUNDS, LATENCY_BOUNDS_NS};
use crate::{EngineConfig, Expect};

use commit::{Journal, Op, Req};
use index::{Extent, Index};
use space::{DroppedRecord, Epoch, Vols};

pub use meta::{Meta, META_INLINE_BYTES};
pub use stripe::{rebuild_stripe_files, StripeLayout};
pub use writer::PutWriter;

/// Largest object accepted: its CRC table (4 bytes per block) must fit in one journal entry.
const MAX_OBJECT_BYTES: u64 = 64 << 30;
/// Largest CRC table of one record, bytes (bounds journal entries and per-object memory).
const MAX_CRC_TABLE_BYTES: u64 = 16 << 20;
/// Largest metadata blob accepted (it is journaled and kept in memory per object).
const MAX_META_BYTES: usize = 1 << 20;
/// Most sources of one compose (S3 multipart allows 10,000 parts).
const MAX_COMPOSE_SOURCES: usize = 100_000;
/// Snapshot writes and compaction/scrub I/O go in chunks of this size.
const CHUNK_BYTES: u64 = 1 << 20;
/// Longest wait for queued hole punches when an allocation finds the disk nearly full (and at
/// close).
const PUNCH_WAIT_NEAR_FULL: Duration = Duration::from_secs(2);

/// Most bytes a journal entry needs besides its CRC table or its compose sources: namespace,
/// key, metadata and fixed fields (generously).
const ENTRY_OVERHEAD_BYTES: u64 = (MAX_NS_BYTES + MAX_KEY_BYTES + MAX_META_BYTES + 4096) as u64;
// At the default block size, the largest object's CRC table fits the table bound...
const _: () = assert!(
    MAX_OBJECT_BYTES.div_ceil(crate::DEFAULT_BLOCK_BYTES as u64) * 4 <= MAX_CRC_TABLE_BYTES
);
// ...and the largest table fits one journal entry with everything else a PUT entry holds.
const _: () = assert!(MAX_CRC_TABLE_BYTES + ENTRY_OVERHEAD_BYTES <= MAX_JOURNAL_ENTRY_BYTES as u64);
// Compose sources are bounded to half an entry (`compose`); the rest fits in the other half.
const _: () = assert!(ENTRY_OVERHEAD_BYTES <= MAX_JOURNAL_ENTRY_BYTES as u64 / 2);
const _: () = assert!(MAX_COMPOSE_SOURCES >= 10_000);
// Chunked copies of records stay aligned at the default alignment.
const _: () = assert!(CHUNK_BYTES.is_multiple_of(crate::DEFAULT_ALIGN_BYTES as u64));

const SNAP_FILE: &str = "index.snap";
const SNAP_TMP_FILE: &str = "index.snap.tmp";
const JOURNAL_FILE: &str = "journal.log";
const LOCK_FILE: &str = "LOCK";

/// Immutable snapshot of one stored object version: a handle made from the index by value
/// (no allocation: `meta` is rebuilt inline or a slice of the index's arena, the extents are inline or
/// shared), holding the records it names readable until it is dropped (ADR 17).
#[derive(Debug, Clone)]
pub struct Object {
    pub size: u64,
    /// Unix ms at commit.
    pub mtime_ms: u64,
    /// Unique, increasing per shard (in allocation order); identifies this version.
    pub seq: u64,
    /// Opaque, given at finish/compose (ADR 21: held compactly by the index).
    pub meta: Meta,
    extents: Extents,
    /// Keeps the records this object names from being punched while it is held.
    _hold: Rc<Epoch>,
}

impl Object {
    /// One size per extent (multipart parts).
    pub fn part_sizes(&self) -> impl Iterator<Item = u64> + '_ {
        self.extents.iter().map(|e| e.len)
    }
}

/// The extents of an object handle: one inline (a PUT), or shared with the index (composed).
#[derive(Debug, Clone)]
enum Extents {
    One(Extent),
    Many(Rc<[Extent]>),
}

impl std::ops::Deref for Extents {
    type Target = [Extent];
    fn deref(&self) -> &[Extent] {
        match self {
            Extents::One(e) => std::slice::from_ref(e),
            Extents::Many(v) => v,
        }
    }
}

/// One entry of a listing.
// An `Object` carries its metadata inline (ADR 21); boxing it would allocate once per listed
// object, where a page is one `Vec` of items.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ListItem {
    Object { key: String, obj: Object },
    Prefix(String),
}

/// Shard counters.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    pub objects: u64,
    /// Bytes of live records on disk (headers, data, trailers, padding).
    pub live_bytes: u64,
    /// Bytes of all volume files (reserved spans).
    pub disk_bytes: u64,
    /// `disk_bytes - live_bytes`: reclaimable by compaction.
    pub garbage_bytes: u64,
    pub volumes: u32,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub corrupt_reads: u64,
    /// Journal fdatasyncs so far (group commit: fewer than commits under concurrency).
    pub journal_syncs: u64,
    /// Journal entries committed so far.
    pub commits: u64,
    /// Bytes of dead records given back to the filesystem by punching holes, since open.
    pub punched_bytes: u64,
    /// PUT or compaction allocations refused because free space would fall below the reserve.
    pub reserve_refusals: u64,
    /// Cache entries evicted, bytes held now and the cache's bound (0 when off).
    pub cache_evictions: u64,
    pub cache_used_bytes: u64,
    pub cache_capacity_bytes: u64,
    /// O_DIRECT reads of object data (foreground, compaction and scrub): latency in ns.
    pub device_reads: HistSnapshot,
    pub device_read_bytes: u64,
    /// Journal fdatasync latency, ns (one per group commit).
    pub journal_fsync: HistSnapshot,
    /// Journal entries per group commit.
    pub group_commit_entries: HistSnapshot,
    /// Size of the journal file now (trimmed at each checkpoint).
    pub journal_bytes: u64,
    /// Free bytes on the shard's filesystem (None if fstatvfs failed) and the reserve.
    pub free_bytes: Option<u64>,
    pub reserve_bytes: u64,
    /// Background work since open.
    pub background: BackgroundTotals,
    /// Copies a write needs (1 + m) and copies live now (ADR 19); fewer live than wanted means
    /// writes are refused.
    pub copies_wanted: u32,
    pub copies_live: u32,
    /// Copies marked failed while serving, since open.
    pub copy_failures: u64,
    /// Stripes of sealed volumes (ADR 19), stripe files lost or failed, reads decoded from a
    /// stripe's other files since open, and bytes of volumes encoded since open.
    pub stripes: u32,
    pub stripe_files_lost: u32,
    pub degraded_reads: u64,
    pub stripe_encoded_bytes: u64,
    /// Rebuild of lost stripe files while serving (ADR 19): files and bytes queued in the
    /// running pass and not yet rebuilt, files and bytes rebuilt since open, rebuilds failed
    /// (those files stay degraded until the next start).
    pub rebuild_pending_files: u32,
    pub rebuild_pending_bytes: u64,
    pub rebuilt_files: u64,
    pub rebuilt_bytes: u64,
    /// Index memory budget (ADR 29): heap bytes of the key blocks resident now, bytes of the
    /// spill file in use, blocks written to it and read back since open, spill writes failed.
    pub index_resident_bytes: u64,
    pub index_spill_bytes: u64,
    pub index_spill_writes: u64,
    pub index_spill_reads: u64,
    pub index_spill_errors: u64,
    pub rebuild_failures: u64,
}

/// Compaction and scrub totals since open (counted as the work proceeds: progress).
#[derive(Debug, Clone, Default)]
pub struct BackgroundTotals {
    pub compact_passes: u64,
    pub compact_volumes: u64,
    pub compact_records_moved: u64,
    pub compact_bytes_reclaimed: u64,
    pub compact_running: bool,
    pub scrub_passes: u64,
    pub scrub_objects_checked: u64,
    pub scrub_bytes_checked: u64,
    pub scrub_corrupt_objects: u64,
    /// Stripes whose parity the scrub checked against their members (erasure coding).
    pub scrub_stripes_checked: u64,
    /// Stripes whose parity did not match their members.
    pub scrub_bad_stripes: u64,
    pub scrub_running: bool,
}

/// The shard's own measurements, written only by its core.
struct Meters {
    device_read_ns: LocalHist,
    device_read_bytes: Cell<u64>,
    journal_fsync_ns: LocalHist,
    batch_entries: LocalHist,
    background: RefCell<BackgroundTotals>,
}

impl Meters {
    fn new() -> Meters {
        Meters {
            device_read_ns: LocalHist::new(LATENCY_BOUNDS_NS),
            device_read_bytes: Cell::new(0),
            journal_fsync_ns: LocalHist::new(LATENCY_BOUNDS_NS),
            batch_entries: LocalHist::new(BATCH_BOUNDS),
            background: RefCell::new(BackgroundTotals::default()),
        }
    }

    fn bg(&self, f: impl FnOnce(&mut BackgroundTotals)) {
        f(&mut self.background.borrow_mut());
    }
}

/// Result of `Shard::compact`.
#[derive(Debug, Clone, Default)]
pub struct CompactStats {
    pub volumes_compacted: u32,
    pub records_moved: u64,
    pub bytes_moved: u64,
    pub bytes_reclaimed: u64,
    /// Stripes deleted (ADR 19: their live records moved, their files removed); their
    /// members count in `volumes_compacted`, their member and parity bytes in
    /// `bytes_reclaimed`.
    pub stripes_compacted: u32,
    /// Copying stopped because free space would have fallen below the reserve.
    pub stopped_no_space: bool,
}

/// Result of `Shard::scrub`.
#[derive(Debug, Clone, Default)]
pub struct ScrubStats {
    pub objects_checked: u64,
    pub bytes_checked: u64,
    pub corrupt_objects: u64,
    /// Stripes whose parity was checked (every file present; a degraded stripe is skipped:
    /// its lost file is rebuilt at the next start).
    pub stripes_checked: u64,
    /// Stripes whose parity does not match their members (logged with the chunks).
    pub bad_stripes: u64,
}

/// One shard: owns one directory.
pub struct Shard {
    dir: PathBuf,
    cfg: EngineConfig,
    index: RefCell<Index>,
    n_objects: Cell<u64>,
    vols: RefCell<Vols>,
    next_seq: Cell<u64>,
    closed: Cell<bool>,
    compacting: Cell<bool>,
    tx: mpsc::UnboundedSender<Req>,
    journal: RefCell<Option<Journal>>,
    cache: RefCell<Option<Cache>>,
    cache_hits: Cell<u64>,
    cache_misses: Cell<u64>,
    corrupt_reads: Cell<u64>,
    journal_syncs: Cell<u64>,
    commits: Cell<u64>,
    /// Bytes `checkpoint` would write now (header, every object, CRC); kept exact by
    /// `apply_changes` and checked against the real size at every checkpoint.
    snapshot_bytes: Cell<u64>,
    /// Dead records no `Object` can name any more, waiting for `reclaim_dropped_records`.
    dropped_records: Rc<RefCell<Vec<DroppedRecord>>>,
    /// The epoch new `Object`s hold (`Epoch`).
    epoch: RefCell<Rc<Epoch>>,
    /// Off while opening: replayed entries are durable only once open has synced the journal.
    punch_enabled: Cell<bool>,
    /// Hole punching runs on this shard's worker thread, never on the reactor (punch.rs).
    puncher: crate::punch::Puncher,
    /// fallocate and ftruncate run on this shard's other worker thread (offload.rs, ADR 10).
    offload: crate::offload::Offload,
    /// The shard directory, open for its fsyncs through io_uring while serving (ADR 10).
    dir_file: monoio::fs::File,
    /// The shard's other copies' directories (mirror, ADR 19; empty without redundancy), open
    /// like `dir_file`. Every file of `dir` has its copy in each, written and synced with it.
    mirror_dirs: Vec<PathBuf>,
    mirror_dir_files: Vec<monoio::fs::File>,
    /// Copies a write must reach before it is acknowledged (1 + m); fewer live copies refuse
    /// writes with `Error::Unprotected`.
    copies_wanted: usize,
    /// Per copy (0: `dir`, then `mirror_dirs`): failed while serving (I/O error or CRC
    /// failure on a read that another copy then served).
    copy_failed: Vec<Cell<bool>>,
    /// The copy reads go to (the first that has not failed).
    read_copy: Cell<usize>,
    /// Copies marked failed since open.
    copy_failures: Cell<u64>,
    _mirror_locks: Vec<std::fs::File>,
    /// Erasure coding of sealed volumes (ADR 19); None without it.
    stripes: Option<stripe::Stripes>,
    reserve_refusals: Cell<u64>,
    meters: Meters,
    _lock: std::fs::File,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Makes the entries of `dir` durable, synchronously (recovery only: while serving, the shard's
/// `sync_dir` goes through io_uring).
fn fsync_dir(dir: &Path) -> Result<()> {
    crate::sys::fsync_dir(dir).map_err(|e| Error::io(format!("fsync dir {}", dir.display()), e))
}

fn check_meta(meta: &Bytes) -> Result<()> {
    if meta.len() > MAX_META_BYTES {
        return Err(Error::Invalid(format!(
            "metadata of {} bytes exceeds {MAX_META_BYTES}",
            meta.len()
        )));
    }
    Ok(())
}

/// Yield to the scheduler once (lets foreground reads run between background steps).
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Lets the core's other tasks run once before continuing (background steps here; the server
/// uses it between slices of PUT hashing and in its spinner).
pub fn yield_now() -> impl Future<Output = ()> {
    YieldNow(false)
}

impl Shard {
    /// Open (creating if missing) the shard directory and recover: load the snapshot, replay the
    /// journal (truncating a torn tail), drop volumes nothing references. Must run inside a
    /// monoio runtime with the io_uring driver.
    pub async fn open(dir: &Path, cfg: EngineConfig) -> Result<Rc<Shard>> {
        recover::open(dir, &[], 1, None, cfg).await
    }

    /// Open a shard kept in several copies (mirror, ADR 19): `copies[0]` is the primary
    /// (recovered and read from), the others get every write and sync too. `copies_wanted`
    /// (1 + m) is how many copies a write must reach: with fewer given (a copy is missing or
    /// being rebuilt), the shard serves reads and refuses writes with `Error::Unprotected`.
    /// The copies must be consistent up to an unacknowledged tail (the caller trusts only
    /// copies of the highest generation, `crate::copies`).
    pub async fn open_copies(
        copies: &[PathBuf],
        copies_wanted: usize,
        cfg: EngineConfig,
    ) -> Result<Rc<Shard>> {
        let Some((primary, mirrors)) = copies.split_first() else {
            return Err(Error::Invalid("a shard needs at least one copy".into()));
        };
        recover::open(primary, mirrors, copies_wanted.max(1), None, cfg).await
    }

    /// `open_copies` for an erasure-coded set (ADR 19): the copies hold the journal, snapshot
    /// and open volumes; sealed volumes are encoded into stripes over `stripes.dirs`
    /// (`encode_stripes`), read from their member with one device read, decoded from `k`
    /// others when the member is lost. Lost stripe files in live directories (and files that
    /// fail while serving) are rebuilt by a task of the shard while it serves (rebuild.rs).
    pub async fn open_striped(
        copies: &[PathBuf],
        copies_wanted: usize,
        stripes: StripeLayout,
        cfg: EngineConfig,
    ) -> Result<Rc<Shard>> {
        let Some((primary, mirrors)) = copies.split_first() else {
            return Err(Error::Invalid("a shard needs at least one copy".into()));
        };
        let shard =
            recover::open(primary, mirrors, copies_wanted.max(1), Some(stripes), cfg).await?;
        monoio::spawn(rebuild::run(Rc::downgrade(&shard)));
        Ok(shard)
    }

    /// Refuses a write while the shard has fewer live copies than it needs (no allocation
    /// when it has them).
    fn check_protected(&self) -> Result<()> {
        let live = self.copies_live();
        if live < self.copies_wanted {
            return Err(Error::Unprotected(format!(
                "shard {} has {live} of its {} copies live: writes are refused until the lost \
                 copy is rebuilt",
                self.dir.display(),
                self.copies_wanted
            )));
        }
        Ok(())
    }

    fn copies_live(&self) -> usize {
        self.copy_failed.iter().filter(|c| !c.get()).count()
    }

    /// The directory of copy `copy` (0: the primary).
    fn copy_dir(&self, copy: usize) -> &Path {
        match copy {
            0 => &self.dir,
            c => &self.mirror_dirs[c - 1],
        }
    }

    /// The next copy after `after` a read can retry from, skipping failed ones and `first`.
    fn next_read_copy(&self, after: usize, first: usize) -> Option<usize> {
        (after + 1..self.copy_failed.len()).find(|&c| c != first && !self.copy_failed[c].get())
    }

    /// A write, sync or create on one copy of the shard failed with an I/O error (ENOSPC is
    /// `NoSpace` and not a failure of the disk). With redundancy, the copy the error names is
    /// marked failed (`mark_copy_failed`: its disk is suspect, writes are refused until it is
    /// rebuilt, reads use the others) and the error becomes `Unprotected` (503 at the S3
    /// layer), saying why; the write it failed was not acknowledged. Without redundancy, or
    /// when the error names no copy, it is returned as it is.
    pub(super) fn copy_write_failed(&self, e: Error) -> Error {
        if !matches!(e, Error::Io { .. }) || self.copy_failed.len() < 2 {
            return e;
        }
        // A mirror's failure is reported with the primary's path in the context and the
        // mirror's path in the cause (`space::write_all_copies`): look for mirrors first.
        let text = e.to_string();
        let named = (1..self.copy_failed.len())
            .chain(std::iter::once(0))
            .find(|&c| text.contains(&*self.copy_dir(c).to_string_lossy()));
        let Some(copy) = named else {
            return e;
        };
        self.mark_copy_failed(copy, &e, "write");
        Error::Unprotected(format!(
            "a write to the shard's copy in {} failed ({e}): that copy is marked failed and \
             writes are refused until it is rebuilt",
            self.copy_dir(copy).display()
        ))
    }

    /// Marks `copy` failed (a read of it failed and another copy served the same bytes, or a
    /// write to it failed, `op`): counted, logged once, reads move to the next live copy,
    /// writes are refused from now on, and the surviving copies' generation is raised (on the
    /// worker thread) so the failed copy is never trusted again at a later start, only rebuilt
    /// (`crate::copies`).
    fn mark_copy_failed(&self, copy: usize, why: &Error, op: &'static str) {
        if self.copy_failed[copy].replace(true) {
            return;
        }
        self.copy_failures.set(self.copy_failures.get() + 1);
        if let Some(next) = (0..self.copy_failed.len()).find(|&c| !self.copy_failed[c].get()) {
            self.read_copy.set(next);
        }
        tracing::error!(
            failed_copy = %self.copy_dir(copy).display(),
            reads_from = %self.copy_dir(self.read_copy.get()).display(),
            error = %why,
            op,
            "a copy of the shard failed: marked failed; reads use the other copy, writes are refused until it is rebuilt"
        );
        let survivors: Vec<PathBuf> = (0..self.copy_failed.len())
            .filter(|&c| !self.copy_failed[c].get())
            .map(|c| self.copy_dir(c).to_path_buf())
            .collect();
        let job = self
            .offload
            .call(move || crate::copies::raise_generation(&survivors));
        monoio::spawn(async move {
            if let Err(e) = job.await {
                tracing::error!(error = %e, "raising the generation of the surviving copies failed");
            }
        });
    }

    /// Look up an object (in memory, no I/O, no allocation; with an index memory budget, a
    /// key whose block was spilled costs one read of the spill file: ADR 29).
    pub fn get(&self, ns: &str, key: &str) -> Option<Object> {
        let idx = self.index.borrow();
        let o = idx.get(ns, key, &self.vols.borrow(), &self.epoch.borrow());
        if idx.over_budget() {
            drop(idx);
            self.trim_index();
        }
        o
    }

    /// Spill index blocks readers promoted past the budget (skipped, for a later call, when
    /// the index is borrowed).
    #[cold]
    pub(super) fn trim_index(&self) {
        if let Ok(mut idx) = self.index.try_borrow_mut() {
            idx.trim();
        }
    }

    /// Read `[offset, offset+len)` of `obj` (clamped to its size), verifying the CRC32C of every
    /// checksum block the read covers. One aligned O_DIRECT read per extent touched.
    pub async fn read(&self, obj: &Object, offset: u64, len: u64) -> Result<Bytes> {
        self.read_object(obj, offset, len).await
    }

    /// Start a PUT of exactly `size_bytes`: reserves the record's whole span in the active volume.
    pub fn put(self: &Rc<Self>, ns: &str, key: &str, size_bytes: u64) -> Result<PutWriter> {
        self.check_protected()?;
        PutWriter::start(self, ns, key, size_bytes)
    }

    /// Delete; durable before return. Returns the removed version (None if absent).
    pub async fn delete(&self, ns: &str, key: &str, expect: Expect) -> Result<Option<Object>> {
        self.check_protected()?;
        self.submit(|reply| {
            Req::Op(Op::Delete {
                ns: ns.to_string(),
                key: key.to_string(),
                expect,
                reply,
            })
        })
        .await
    }

    /// New object = concatenation of the sources' extents; no data copied; one journal entry.
    pub async fn compose(
        &self,
        ns: &str,
        key: &str,
        sources: &[(String, String)],
        meta: Bytes,
        expect: Expect,
        remove_sources: bool,
    ) -> Result<Object> {
        if key.len() > MAX_KEY_BYTES || ns.len() > MAX_NS_BYTES {
            return Err(Error::Invalid("namespace or key too long".into()));
        }
        check_meta(&meta)?;
        self.check_protected()?;
        let entry_bytes: usize = sources.iter().map(|(a, b)| a.len() + b.len() + 12).sum();
        if sources.len() > MAX_COMPOSE_SOURCES || entry_bytes > MAX_JOURNAL_ENTRY_BYTES as usize / 2
        {
            return Err(Error::Invalid(format!(
                "{} compose sources (max {MAX_COMPOSE_SOURCES})",
                sources.len()
            )));
        }
        self.submit(|reply| {
            Req::Op(Op::Compose {
                ns: ns.to_string(),
                key: key.to_string(),
                sources: sources.to_vec(),
                meta,
                remove_sources,
                expect,
                reply,
            })
        })
        .await
    }

    /// List keys of `ns` starting with `prefix`, greater than `after`, ordered; with a delimiter,
    /// keys sharing the segment up to the next delimiter after the prefix collapse to one Prefix.
    pub fn list(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<&str>,
        limit: usize,
    ) -> Vec<ListItem> {
        self.list_keys(ns, prefix, after, delimiter, limit)
    }

    /// The namespaces that hold at least one object, in order.
    pub fn namespaces(&self) -> Vec<String> {
        self.index
            .borrow()
            .spaces_from("")
            .map(|(ns, _)| ns.clone())
            .collect()
    }

    /// True if the namespace holds any object.
    pub fn has_any(&self, ns: &str) -> bool {
        self.index.borrow().has_any(ns)
    }

    /// Write the index snapshot and trim the journal (runs in the committer, between batches).
    pub async fn checkpoint(&self) -> Result<()> {
        self.submit(Req::Checkpoint).await
    }

    /// Refuse new writes, checkpoint, and give back the active volume's preallocated tail.
    pub async fn close(&self) -> Result<()> {
        self.closed.set(true);
        self.checkpoint().await?;
        // Space of records deleted just before shutdown is given back before the process goes.
        self.reclaim_dropped_records();
        if !self.wait_punches_async(PUNCH_WAIT_NEAR_FULL).await {
            tracing::warn!(dir = %self.dir.display(), "hole punches still queued at close; left to compaction");
        }
        self.seal_active().await;
        Ok(())
    }

    /// `wait_punches` without blocking the core: polls the worker's queue between timer sleeps.
    async fn wait_punches_async(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let pending = || {
            self.puncher
                .state
                .pending_jobs
                .load(std::sync::atomic::Ordering::Acquire)
        };
        while pending() > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }

    /// Makes the entries of the shard directory durable through io_uring (the core does not
    /// wait in the kernel).
    async fn sync_dir(&self) -> Result<()> {
        let home = async {
            self.dir_file
                .sync_all()
                .await
                .map_err(|e| Error::io(format!("fsync dir {}", self.dir.display()), e))
        };
        let others =
            futures::future::join_all(self.mirror_dir_files.iter().zip(&self.mirror_dirs).map(
                |(f, d)| async move {
                    f.sync_all()
                        .await
                        .map_err(|e| Error::io(format!("fsync dir {}", d.display()), e))
                },
            ));
        let (h, o) = futures::join!(home, others);
        o.into_iter().fold(h, |acc, r| acc.and(r))
    }

    /// Waits (blocking this thread) until the hole punches queued so far are done, at most
    /// `timeout`; true when none is left. Punching runs on a worker thread (punch.rs); tests and
    /// `close` use this to see its effect.
    pub fn wait_punches(&self, timeout: Duration) -> bool {
        self.reclaim_dropped_records();
        self.puncher.wait_idle(timeout)
    }

    /// Counters.
    pub fn stats(&self) -> ShardStats {
        let vols = self.vols.borrow();
        let cache = self.cache.borrow();
        let live_bytes: u64 = vols.map.values().map(|v| v.live_bytes).sum();
        let disk_bytes: u64 = vols.map.values().map(|v| v.end_bytes).sum();
        let idx = self.index.borrow();
        let pager = idx.pager();
        ShardStats {
            index_resident_bytes: pager.resident_bytes(),
            index_spill_bytes: pager.spill_bytes(),
            index_spill_writes: pager.writes,
            index_spill_reads: pager.reads.get(),
            index_spill_errors: pager.write_errors,
            objects: self.n_objects.get(),
            live_bytes,
            disk_bytes,
            garbage_bytes: disk_bytes.saturating_sub(live_bytes),
            volumes: vols.map.len() as u32,
            cache_hits: self.cache_hits.get(),
            cache_misses: self.cache_misses.get(),
            corrupt_reads: self.corrupt_reads.get(),
            journal_syncs: self.journal_syncs.get(),
            commits: self.commits.get(),
            punched_bytes: self
                .puncher
                .state
                .punched_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
            reserve_refusals: self.reserve_refusals.get(),
            cache_evictions: cache.as_ref().map_or(0, Cache::evictions),
            cache_used_bytes: cache.as_ref().map_or(0, Cache::used_bytes),
            cache_capacity_bytes: cache.as_ref().map_or(0, |_| self.cfg.cache_bytes),
            device_reads: self.meters.device_read_ns.snapshot(),
            device_read_bytes: self.meters.device_read_bytes.get(),
            journal_fsync: self.meters.journal_fsync_ns.snapshot(),
            group_commit_entries: self.meters.batch_entries.snapshot(),
            journal_bytes: self.journal.borrow().as_ref().map_or(0, |j| j.len_bytes),
            free_bytes: crate::sys::free_bytes(&self.dir_file).ok(),
            reserve_bytes: self.cfg.reserve_bytes,
            background: self.meters.background.borrow().clone(),
            copies_wanted: self.copies_wanted as u32,
            copies_live: self.copies_live() as u32,
            copy_failures: self.copy_failures.get(),
            stripes: self.stripes.as_ref().map_or(0, |s| s.count()),
            stripe_files_lost: self.stripes.as_ref().map_or(0, |s| s.files_lost()),
            degraded_reads: self.stripes.as_ref().map_or(0, |s| s.degraded_reads.get()),
            stripe_encoded_bytes: self.stripes.as_ref().map_or(0, |s| s.encoded_bytes.get()),
            rebuild_pending_files: self
                .stripes
                .as_ref()
                .map_or(0, |s| s.rebuild.pending_files.get()),
            rebuild_pending_bytes: self
                .stripes
                .as_ref()
                .map_or(0, |s| s.rebuild.pending_bytes.get()),
            rebuilt_files: self
                .stripes
                .as_ref()
                .map_or(0, |s| s.rebuild.rebuilt_files.get()),
            rebuilt_bytes: self
                .stripes
                .as_ref()
                .map_or(0, |s| s.rebuild.rebuilt_bytes.get()),
            rebuild_failures: self
                .stripes
                .as_ref()
                .map_or(0, |s| s.rebuild.failures.get()),
        }
    }

    /// Compact sealed volumes whose garbage ratio exceeds `min_garbage_ratio`: copy their live
    /// records into the active volume (one I/O in flight, yielding between chunks so foreground
    /// reads go first), commit Relocate entries (applied only if the object's seq is unchanged),
    /// then unlink volumes nothing references any more. Readers holding old `Object`s keep
    /// working: extents hold the volume file open.
    pub async fn compact(&self, min_garbage_ratio: f64) -> Result<CompactStats> {
        let mut stats = CompactStats::default();
        // A shard missing a copy changes nothing on the copies it has (a copy that comes back
        // stays consistent with them); compaction waits for the rebuild.
        if self.check_protected().is_err() {
            return Ok(stats);
        }
        if self.compacting.replace(true) {
            return Ok(stats);
        }
        self.meters.bg(|b| b.compact_running = true);
        let r = self.compact_inner(min_garbage_ratio, &mut stats).await;
        self.compacting.set(false);
        self.meters.bg(|b| {
            b.compact_running = false;
            b.compact_passes += 1;
            b.compact_volumes += u64::from(stats.volumes_compacted);
            b.compact_records_moved += stats.records_moved;
            b.compact_bytes_reclaimed += stats.bytes_reclaimed;
        });
        r.map(|_| stats)
    }

    /// Walk every live object, verify the CRC32C of all its blocks, then the parity of every
    /// whole stripe against its members, at most `max_bytes_per_s` (0 = unlimited).
    /// Corruption is counted and logged, not returned as an error.
    pub async fn scrub(&self, max_bytes_per_s: u64) -> Result<ScrubStats> {
        self.meters.bg(|b| b.scrub_running = true);
        let r = match self.scrub_objects(max_bytes_per_s).await {
            Ok(mut stats) => self
                .scrub_stripes(max_bytes_per_s, &mut stats)
                .await
                .map(|_| stats),
            Err(e) => Err(e),
        };
        self.meters.bg(|b| {
            b.scrub_running = false;
            b.scrub_passes += 1;
        });
        r
    }
}
