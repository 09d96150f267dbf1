//! The shard: in-memory index, volumes, journal, group committer, reads, writes, listing,
//! compaction and scrubbing. One shard owns one directory and runs on one monoio runtime.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Bound;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use crate::buf::{round_down_u64, round_up, round_up_u64, AlignedBuf};
use crate::cache::{self, Cache};
use crate::error::{Error, Result};
use crate::format::{
    self, decode_record_header, encode_journal_entry, encode_record_head, encode_record_trailer,
    encode_snapshot_header, encode_snapshot_object, Entry, ExtentRec, Move,
    MAX_JOURNAL_ENTRY_BYTES, MAX_KEY_BYTES, MAX_NS_BYTES, RECORD_HEADER_BYTES,
};
use crate::{EngineConfig, Expect};

/// Preallocate volume space (fallocate) in steps of this many bytes.
const PREALLOC_STEP_BYTES: u64 = 64 << 20;
/// Largest object accepted: its CRC table (4 bytes per block) must fit in one journal entry
/// (64 GiB at 16 KiB blocks is a 16 MiB table).
const MAX_OBJECT_BYTES: u64 = 64 << 30;
/// Largest CRC table of one record, bytes (bounds journal entries and per-object memory).
const MAX_CRC_TABLE_BYTES: u64 = 16 << 20;
/// Most commit requests taken into one group-commit batch.
const MAX_BATCH_REQUESTS: usize = 4096;
/// Checkpoint automatically once the journal grows past this.
/// (1M small entries are ~130 MB and replay in ~3.5 s on the build machine.)
const AUTO_CHECKPOINT_JOURNAL_BYTES: u64 = 64 << 20;
/// Compaction waits for its relocation commits after this many (one group commit for all).
const COMPACT_COMMIT_GROUP: usize = 256;
/// Snapshot writes and compaction/scrub I/O go in chunks of this size.
const CHUNK_BYTES: u64 = 1 << 20;
/// Reads spanning at most this many checksum blocks of one extent go through the block cache.
const CACHED_SPAN_MAX_BLOCKS: u64 = 4;
/// Largest single read (guards against absurd caller lengths).
const MAX_READ_BYTES: u64 = 64 << 20;
/// Dead record spans are punched out in whole units of this size (the filesystem block size
/// bale assumes; a span's partial first and last units stay allocated until compaction).
const PUNCH_GRANULE_BYTES: u64 = 4096;
/// Longest wait for queued hole punches when an allocation finds the disk nearly full.
const PUNCH_WAIT_NEAR_FULL: Duration = Duration::from_secs(2);
/// With a disk reserve, the journal is checkpointed once it passes half the reserve, but never
/// below this (so a tiny reserve does not checkpoint at every batch).
const MIN_AUTO_CHECKPOINT_JOURNAL_BYTES: u64 = 1 << 20;

const SNAP_FILE: &str = "index.snap";
const SNAP_TMP_FILE: &str = "index.snap.tmp";
const JOURNAL_FILE: &str = "journal.log";
const LOCK_FILE: &str = "LOCK";

/// One open volume file. Held in an `Rc` by every extent that points into it, so a volume that
/// compaction unlinked stays readable for readers that still hold an old `Object`.
pub(crate) struct VolFile {
    id: u32,
    path: PathBuf,
    file: monoio::fs::File,
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
    vol: Rc<VolFile>,
    record_offset: u64,
    span_bytes: u64,
    /// Set when the index stops referencing the record (in `apply_changes`, which runs only
    /// after the killing entry is durable); cleared if it is referenced again.
    dead: Cell<bool>,
    dropped: Rc<RefCell<Vec<DroppedRecord>>>,
}

/// A record whose last extent went away (see `RecordLife`).
struct DroppedRecord {
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

/// One contiguous run of an object's data: the whole data of one record.
#[derive(Debug, Clone)]
pub(crate) struct Extent {
    vol: Rc<VolFile>,
    life: Rc<RecordLife>,
    record_offset: u64,
    data_offset: u64,
    len: u64,
    span_bytes: u64,
    block_bytes: u32,
    crcs: Rc<[u32]>,
}

impl Extent {
    fn to_rec(&self) -> ExtentRec {
        ExtentRec {
            volume_id: self.vol.id,
            record_offset: self.record_offset,
            data_offset: self.data_offset,
            len: self.len,
            span_bytes: self.span_bytes,
            block_bytes: self.block_bytes,
            crcs: self.crcs.clone(),
        }
    }
}

/// Immutable snapshot of one stored object version.
#[derive(Debug)]
pub struct Object {
    pub size: u64,
    /// Unix ms at commit.
    pub mtime_ms: u64,
    /// Unique, increasing per shard (in allocation order); identifies this version.
    pub seq: u64,
    /// Opaque, given at finish/compose.
    pub meta: Bytes,
    extents: Vec<Extent>,
}

impl Object {
    /// One size per extent (multipart parts).
    pub fn part_sizes(&self) -> impl Iterator<Item = u64> + '_ {
        self.extents.iter().map(|e| e.len)
    }
}

/// One entry of a listing.
#[derive(Debug)]
pub enum ListItem {
    Object { key: String, obj: Rc<Object> },
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
}

/// Result of `Shard::compact`.
#[derive(Debug, Clone, Default)]
pub struct CompactStats {
    pub volumes_compacted: u32,
    pub records_moved: u64,
    pub bytes_moved: u64,
    pub bytes_reclaimed: u64,
    /// Copying stopped because free space would have fallen below the reserve.
    pub stopped_no_space: bool,
}

/// Result of `Shard::scrub`.
#[derive(Debug, Clone, Default)]
pub struct ScrubStats {
    pub objects_checked: u64,
    pub bytes_checked: u64,
    pub corrupt_objects: u64,
}

struct RecInfo {
    span_bytes: u64,
    refs: u32,
}

struct VolState {
    file: Rc<VolFile>,
    /// End of the reserved region (next record goes here); the volume's logical size.
    end_bytes: u64,
    /// Bytes preallocated with fallocate (file size while active).
    allocated_bytes: u64,
    live_bytes: u64,
    /// Live records by record offset, with the number of extents referencing each.
    records: HashMap<u64, RecInfo>,
    /// Writers (PUTs, compaction copies) with a reserved span not yet committed or abandoned.
    writers: u32,
    /// The life of each record some extent points at (one per record: every extent of a record
    /// shares it). Entries whose life is gone are pruned when its drop is processed.
    lives: HashMap<u64, Weak<RecordLife>>,
    /// End of the furthest record any snapshot or journal entry seen since open names (live or
    /// not): recovery may resolve those records again, so the file never shrinks below this.
    named_end: u64,
    sealed: bool,
}

struct Vols {
    map: BTreeMap<u32, VolState>,
    active: Option<u32>,
    next_id: u32,
}

/// An object referencing a record: (ns, key, object seq, extent index, extent).
type RecordRef = (String, String, u64, u32, Extent);
type Index = BTreeMap<String, BTreeMap<String, Rc<Object>>>;
type Change = (String, String, Option<Rc<Object>>);
type Overlay = HashMap<(String, String), Option<Rc<Object>>>;

enum Op {
    Put(Entry, Rc<VolFile>),
    Delete {
        ns: String,
        key: String,
    },
    Compose {
        ns: String,
        key: String,
        sources: Vec<(String, String)>,
        meta: Bytes,
        remove_sources: bool,
    },
    Relocate(Entry, Rc<VolFile>),
    Checkpoint,
}

enum Reply {
    Obj(Rc<Object>),
    Old(Option<Rc<Object>>),
    Done,
}

struct Req {
    op: Op,
    expect: Expect,
    reply: oneshot::Sender<Result<Reply>>,
}

struct Journal {
    file: Rc<monoio::fs::File>,
    len_bytes: u64,
    next_lsn: u64,
    /// Set when a journal write or sync failed: the tail is unknown, refuse further commits.
    broken: Option<String>,
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
    /// Records whose last extent went away, waiting for `reclaim_dropped_records`.
    dropped_records: Rc<RefCell<Vec<DroppedRecord>>>,
    /// Off while opening: replayed entries are durable only once open has synced the journal.
    punch_enabled: Cell<bool>,
    /// Hole punching runs on this shard's worker thread, never on the reactor (punch.rs).
    puncher: crate::punch::Puncher,
    reserve_refusals: Cell<u64>,
    _lock: std::fs::File,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    let d = std::fs::File::open(dir)
        .map_err(|e| Error::io(format!("open dir {}", dir.display()), e))?;
    d.sync_all()
        .map_err(|e| Error::io(format!("fsync dir {}", dir.display()), e))
}

/// Largest metadata blob accepted (it is journaled and kept in memory per object).
const MAX_META_BYTES: usize = 1 << 20;
/// Most sources of one compose (S3 multipart allows 10,000 parts).
const MAX_COMPOSE_SOURCES: usize = 100_000;

fn check_meta(meta: &Bytes) -> Result<()> {
    if meta.len() > MAX_META_BYTES {
        return Err(Error::Invalid(format!(
            "metadata of {} bytes exceeds {MAX_META_BYTES}",
            meta.len()
        )));
    }
    Ok(())
}

fn check_expect(expect: Expect, cur: &Option<Rc<Object>>) -> Result<()> {
    let ok = match expect {
        Expect::Any => true,
        Expect::Absent => cur.is_none(),
        Expect::Seq(s) => cur.as_ref().is_some_and(|o| o.seq == s),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::PreconditionFailed)
    }
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

fn vol_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("vol-{id:08}.dat"))
}

fn open_direct(path: &Path, create_new: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC);
    if create_new {
        o.create_new(true);
    }
    o.open(path)
}

/// Releases a volume writer slot when dropped (compaction copies).
struct WriterSlot<'a> {
    vols: &'a RefCell<Vols>,
    volume_id: u32,
}

impl Drop for WriterSlot<'_> {
    fn drop(&mut self) {
        release_writer(self.vols, self.volume_id);
    }
}

fn release_writer(vols: &RefCell<Vols>, volume_id: u32) {
    let mut v = vols.borrow_mut();
    let st = v
        .map
        .get_mut(&volume_id)
        .expect("volume with a writer slot is registered");
    assert!(st.writers > 0, "writer slot underflow on vol {volume_id}");
    st.writers -= 1;
}

impl Shard {
    /// Open (creating if missing) the shard directory and recover: load the snapshot, replay the
    /// journal (truncating a torn tail), drop volumes nothing references. Must run inside a
    /// monoio runtime with the io_uring driver.
    pub async fn open(dir: &Path, cfg: EngineConfig) -> Result<Rc<Shard>> {
        if !cfg.align_bytes.is_power_of_two() || cfg.align_bytes < 512 {
            return Err(Error::Invalid(format!(
                "align_bytes {} must be a power of two >= 512",
                cfg.align_bytes
            )));
        }
        if cfg.block_bytes == 0 || !cfg.block_bytes.is_multiple_of(cfg.align_bytes) {
            return Err(Error::Invalid(format!(
                "block_bytes {} must be a non-zero multiple of align_bytes {}",
                cfg.block_bytes, cfg.align_bytes
            )));
        }
        if cfg.write_buffer_bytes < 2 * cfg.align_bytes as usize {
            return Err(Error::Invalid(
                "write_buffer_bytes must be >= 2 * align_bytes".into(),
            ));
        }
        let started = Instant::now();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create dir {}", dir.display()), e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
        // SAFETY: flock on a valid, owned fd.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::io(
                format!(
                    "lock {} (is another shard using this directory?)",
                    lock_path.display()
                ),
                std::io::Error::last_os_error(),
            ));
        }
        let _ = std::fs::remove_file(dir.join(SNAP_TMP_FILE));

        // Volumes.
        let mut vols = Vols {
            map: BTreeMap::new(),
            active: None,
            next_id: 1,
        };
        let rd = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("read dir {}", dir.display()), e))?;
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(format!("read dir {}", dir.display()), e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(id) = name
                .strip_prefix("vol-")
                .and_then(|s| s.strip_suffix(".dat"))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let path = ent.path();
            let f = open_direct(&path, false)
                .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
            let size_bytes = f
                .metadata()
                .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
                .len();
            let file = monoio::fs::File::from_std(f)
                .map_err(|e| Error::io(format!("register {}", path.display()), e))?;
            vols.map.insert(
                id,
                VolState {
                    file: Rc::new(VolFile { id, path, file }),
                    end_bytes: size_bytes,
                    allocated_bytes: size_bytes,
                    live_bytes: 0,
                    records: HashMap::new(),
                    writers: 0,
                    lives: HashMap::new(),
                    named_end: 0,
                    sealed: true,
                },
            );
            vols.next_id = vols.next_id.max(id + 1);
        }

        // Journal file.
        let jpath = dir.join(JOURNAL_FILE);
        let jstd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_CLOEXEC)
            .open(&jpath)
            .map_err(|e| Error::io(format!("open {}", jpath.display()), e))?;
        let jimage =
            std::fs::read(&jpath).map_err(|e| Error::io(format!("read {}", jpath.display()), e))?;
        let jfile = monoio::fs::File::from_std(jstd)
            .map_err(|e| Error::io(format!("register {}", jpath.display()), e))?;

        let (tx, rx) = mpsc::unbounded();
        let puncher = crate::punch::Puncher::start(&dir.display().to_string()).map_err(|e| {
            Error::io(
                format!("start the hole-punch thread for {}", dir.display()),
                e,
            )
        })?;
        let shard = Rc::new(Shard {
            dir: dir.to_path_buf(),
            cache: RefCell::new((cfg.cache_bytes > 0).then(|| Cache::new(cfg.cache_bytes))),
            cfg,
            index: RefCell::new(BTreeMap::new()),
            n_objects: Cell::new(0),
            vols: RefCell::new(vols),
            next_seq: Cell::new(1),
            closed: Cell::new(false),
            compacting: Cell::new(false),
            tx,
            journal: RefCell::new(None),
            cache_hits: Cell::new(0),
            cache_misses: Cell::new(0),
            corrupt_reads: Cell::new(0),
            journal_syncs: Cell::new(0),
            commits: Cell::new(0),
            snapshot_bytes: Cell::new(format::SNAPSHOT_EMPTY_BYTES),
            dropped_records: Rc::new(RefCell::new(Vec::new())),
            punch_enabled: Cell::new(false),
            puncher,
            reserve_refusals: Cell::new(0),
            _lock: lock,
        });

        // The journal is scanned before the snapshot is trusted or discarded: whether a bad or
        // missing snapshot can be survived depends on the journal still holding every entry.
        let scan = format::scan_journal(&jimage);
        if scan.tail_error.is_some() {
            let bad = scan.valid_bytes as usize;
            let later = format::valid_frame_after(&jimage, bad);
            // A power loss during the last, unacknowledged journal write can leave whole
            // sectors unwritten (read back as zeros) with later sectors of the same write on
            // disk: that is a torn tail and is cut. Anything else followed by valid frames is
            // damage to acknowledged entries.
            let torn_write = later.is_some_and(|at| format::has_zero_sector(&jimage[..at], bad));
            if let Some(at) = later.filter(|_| !torn_write) {
                return Err(Error::corrupt(format!(
                    "journal {} is damaged at byte {} but valid entries follow at byte {}: refusing to start, \
                     because cutting it there would drop acknowledged writes (volumes and journal are untouched)",
                    jpath.display(),
                    scan.valid_bytes,
                    at
                )));
            }
        }
        let has_volumes = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("vol-"))
            })
            .unwrap_or(false);
        // Replaying the journal alone rebuilds everything only if it starts at the first entry.
        let journal_is_complete = match scan.entries.first() {
            Some((lsn, _)) => *lsn == 1,
            None => !has_volumes,
        };

        // Snapshot.
        let mut applied_lsn = 0u64;
        let mut snapshot_bad = false;
        let spath = dir.join(SNAP_FILE);
        match std::fs::read(&spath) {
            Ok(img) => match format::decode_snapshot(&img) {
                Ok(snap) => {
                    applied_lsn = snap.applied_lsn;
                    shard.next_seq.set(snap.next_seq.max(1));
                    let mut changes = Vec::with_capacity(snap.objects.len());
                    for o in snap.objects {
                        let extents = o
                            .extents
                            .iter()
                            .map(|e| shard.resolve_extent(e))
                            .collect::<Result<Vec<_>>>()?;
                        let obj = Rc::new(Object {
                            size: o.size,
                            mtime_ms: o.mtime_ms,
                            seq: o.seq,
                            meta: o.meta,
                            extents,
                        });
                        assert_eq!(obj.size, obj.extents.iter().map(|e| e.len).sum::<u64>());
                        changes.push((o.ns, o.key, Some(obj)));
                    }
                    shard.apply_changes(changes);
                }
                Err(e) if !journal_is_complete => {
                    return Err(Error::corrupt(format!(
                        "index snapshot {} is corrupt ({e}) and the journal no longer holds every entry: refusing to \
                         start rather than serve an incomplete index (volumes, journal and snapshot are untouched)",
                        spath.display()
                    )));
                }
                Err(e) => {
                    // Keep the bad file for forensics and reclaim nothing at this open: volumes
                    // the lost snapshot referenced must not look dead and be removed.
                    let keep = dir.join("index.snap.bad");
                    let _ = std::fs::rename(&spath, &keep);
                    snapshot_bad = true;
                    tracing::error!(dir = %dir.display(), error = %e, kept = %keep.display(), "ignoring bad index snapshot; replaying the whole journal");
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !journal_is_complete => {
                return Err(Error::corrupt(format!(
                    "index snapshot {} is missing and the journal no longer holds every entry: refusing to start \
                     rather than serve an incomplete index (volumes and journal are untouched)",
                    spath.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("read {}", spath.display()), e)),
        }

        // Journal replay.
        let mut next_lsn = applied_lsn + 1;
        let mut replayed = 0u64;
        for (lsn, entry) in scan.entries {
            next_lsn = next_lsn.max(lsn + 1);
            shard
                .next_seq
                .set(shard.next_seq.get().max(entry.seq() + 1));
            // Never reuse a volume id some journal entry names, even if that volume is gone: a
            // later replay of the entry must not resolve against a different file.
            let named_max = match &entry {
                Entry::Put { extent, .. } => Some(extent.volume_id),
                Entry::Relocate { moves, .. } => moves.iter().map(|m| m.volume_id).max(),
                _ => None,
            };
            if let Some(id) = named_max {
                let mut v = shard.vols.borrow_mut();
                v.next_id = v.next_id.max(id.saturating_add(1));
            }
            if lsn <= applied_lsn {
                continue;
            }
            match shard.plan_entry(&Overlay::new(), &entry) {
                Ok(changes) => {
                    shard.apply_changes(changes);
                    replayed += 1;
                }
                Err(e) => {
                    tracing::error!(dir = %dir.display(), lsn, error = %e, "journal entry cannot be applied; skipped");
                }
            }
        }
        if let Some(why) = &scan.tail_error {
            tracing::warn!(dir = %dir.display(), valid_bytes = scan.valid_bytes, file_bytes = jimage.len(), why = %why, "truncating torn journal tail");
            // SAFETY: ftruncate on a valid fd owned by jfile.
            if unsafe { libc::ftruncate(jfile.as_raw_fd(), scan.valid_bytes as libc::off_t) } != 0 {
                return Err(Error::io(
                    format!("truncate {}", jpath.display()),
                    std::io::Error::last_os_error(),
                ));
            }
            jfile
                .sync_all()
                .await
                .map_err(|e| Error::io(format!("fsync {}", jpath.display()), e))?;
        }
        *shard.journal.borrow_mut() = Some(Journal {
            file: Rc::new(jfile),
            len_bytes: scan.valid_bytes,
            next_lsn,
            broken: None,
        });

        // Give back space nothing can name: volumes no snapshot or journal entry mentions hold
        // only garbage (e.g. an abandoned write), and a volume's tail past the last record named
        // holds preallocation or unacknowledged bytes. Records named but dead (deleted later in
        // the journal) stay until compaction, which checkpoints before it unlinks, so a later
        // replay never meets a missing volume or a record past the end of its file.
        let mut removed = 0usize;
        if snapshot_bad {
            tracing::warn!(dir = %dir.display(), "bad snapshot: not reclaiming volume space at this open");
        } else {
            let dead: Vec<u32> = shard
                .vols
                .borrow()
                .map
                .iter()
                .filter(|(_, v)| v.records.is_empty() && v.named_end == 0)
                .map(|(id, _)| *id)
                .collect();
            for id in &dead {
                let v = shard
                    .vols
                    .borrow_mut()
                    .map
                    .remove(id)
                    .expect("dead volume registered");
                std::fs::remove_file(&v.file.path)
                    .map_err(|e| Error::io(format!("remove {}", v.file.path.display()), e))?;
            }
            removed = dead.len();
            for v in shard.vols.borrow_mut().map.values_mut() {
                let live_end = v
                    .records
                    .iter()
                    .map(|(off, r)| off + r.span_bytes)
                    .max()
                    .unwrap_or(0);
                let keep = live_end.max(v.named_end);
                if keep < v.end_bytes {
                    // SAFETY: ftruncate on a valid fd; no record at or past `keep` is named.
                    if unsafe { libc::ftruncate(v.file.file.as_raw_fd(), keep as libc::off_t) } == 0
                    {
                        v.end_bytes = keep;
                        v.allocated_bytes = keep;
                    } else {
                        tracing::warn!(path = %v.file.path.display(), error = %std::io::Error::last_os_error(), "truncating volume tail failed");
                    }
                }
            }
        }
        // Make the directory entries of a new journal and of removed volumes durable.
        fsync_dir(dir)?;
        // Records killed by replayed entries may be punched only once those entries are durable:
        // the previous process may have died between its journal write and its fdatasync.
        let jf = shard
            .journal
            .borrow()
            .as_ref()
            .expect("journal open")
            .file
            .clone();
        jf.sync_data()
            .await
            .map_err(|e| Error::io(format!("fdatasync {}", jpath.display()), e))?;
        // Nothing is reclaimed at an open that lost its snapshot (see above): the drops are
        // only forgotten.
        shard.punch_enabled.set(!snapshot_bad);
        shard.reclaim_dropped_records();
        shard.punch_enabled.set(true);

        tracing::info!(
            dir = %dir.display(),
            objects = shard.n_objects.get(),
            replayed,
            volumes = shard.vols.borrow().map.len(),
            removed_volumes = removed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shard open"
        );
        monoio::spawn(committer(Rc::downgrade(&shard), rx));
        Ok(shard)
    }

    /// Look up an object (in memory, no I/O).
    pub fn get(&self, ns: &str, key: &str) -> Option<Rc<Object>> {
        self.index.borrow().get(ns)?.get(key).cloned()
    }

    /// Read `[offset, offset+len)` of `obj` (clamped to its size), verifying the CRC32C of every
    /// checksum block the read covers. One aligned O_DIRECT read per extent touched.
    pub async fn read(&self, obj: &Object, offset: u64, len: u64) -> Result<Bytes> {
        let end = offset.saturating_add(len).min(obj.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        if end - offset > MAX_READ_BYTES {
            return Err(Error::Invalid(format!(
                "read of {} bytes exceeds {MAX_READ_BYTES}",
                end - offset
            )));
        }
        // Whole small objects are cached whole; every other read (part of a larger object) goes
        // through the per-block cache, one entry per checksum block, so a warm ranged read costs
        // what a warm small GET costs.
        let has_cache = self.cache.borrow().is_some();
        let whole_or_small =
            (offset == 0 && end == obj.size) || obj.size <= 4 * self.cfg.block_bytes as u64;
        if has_cache && obj.size <= self.cfg.cache_max_object_bytes && whole_or_small {
            let hit = self
                .cache
                .borrow_mut()
                .as_mut()
                .and_then(|c| c.get((obj.seq, cache::WHOLE)));
            if let Some(b) = hit {
                self.cache_hits.set(self.cache_hits.get() + 1);
                return Ok(Bytes::slice(&b, offset as usize..end as usize));
            }
            self.cache_misses.set(self.cache_misses.get() + 1);
            let whole = self.read_range(obj, 0, obj.size, false).await?;
            if let Some(c) = self.cache.borrow_mut().as_mut() {
                c.insert((obj.seq, cache::WHOLE), whole.clone());
            }
            return Ok(Bytes::slice(&whole, offset as usize..end as usize));
        }
        self.read_range(obj, offset, end, has_cache).await
    }

    async fn read_range(&self, obj: &Object, offset: u64, end: u64, blocks: bool) -> Result<Bytes> {
        let mut parts: Vec<Bytes> = Vec::new();
        let mut ext_start = 0u64;
        for (i, ext) in obj.extents.iter().enumerate() {
            let ext_end = ext_start + ext.len;
            // (zero-length extents, e.g. an empty multipart part, hold no bytes to read)
            if ext.len > 0 && ext_end > offset && ext_start < end {
                let lo = offset.max(ext_start) - ext_start;
                let hi = end.min(ext_end) - ext_start;
                let cached = blocks.then_some((obj.seq, i));
                parts.push(self.read_extent(ext, lo, hi, cached).await?);
            }
            if ext_end >= end {
                break;
            }
            ext_start = ext_end;
        }
        if parts.len() == 1 {
            return Ok(parts.pop().unwrap());
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for p in parts {
            out.extend_from_slice(&p);
        }
        assert_eq!(out.len() as u64, end - offset);
        Ok(out.freeze())
    }

    /// Read `[lo, hi)` of one extent's data: one aligned read covering whole checksum blocks.
    ///
    /// With `cached = Some((seq, extent_index))` and a span of at most
    /// [`CACHED_SPAN_MAX_BLOCKS`] blocks, the blocks come from the block cache when all of them
    /// are there, and fill it after a read otherwise (longer reads are streams: they bypass it).
    async fn read_extent(
        &self,
        ext: &Extent,
        lo: u64,
        hi: u64,
        cached: Option<(u64, usize)>,
    ) -> Result<Bytes> {
        assert!(lo < hi && hi <= ext.len);
        let bb = ext.block_bytes as u64;
        let b0 = lo / bb;
        let b1 = hi.div_ceil(bb);
        let cached = cached.filter(|_| b1 - b0 <= CACHED_SPAN_MAX_BLOCKS);
        if let Some((seq, ei)) = cached {
            if let Some(b) = self.cached_blocks(seq, ei, b0, b1, lo - b0 * bb, hi - b0 * bb) {
                self.cache_hits.set(self.cache_hits.get() + 1);
                return Ok(b);
            }
            self.cache_misses.set(self.cache_misses.get() + 1);
        }
        let align = self.cfg.align_bytes as u64;
        let file_lo = ext.data_offset + b0 * bb;
        let file_hi = ext.data_offset + (b1 * bb).min(ext.len);
        let a_lo = round_down_u64(file_lo, align);
        let a_hi = round_up_u64(file_hi, align);
        assert!(
            a_hi <= ext.record_offset + ext.span_bytes,
            "read span past record end"
        );
        let span = (a_hi - a_lo) as usize;
        let buf = AlignedBuf::new(span, align as usize);
        let (res, mut buf) = ext.vol.file.read_exact_at(buf, a_lo).await;
        res.map_err(|e| {
            Error::io(
                format!("read {} at {a_lo} len {span}", ext.vol.path.display()),
                e,
            )
        })?;
        buf.set_len(span);
        {
            let data = buf.as_ref();
            for b in b0..b1 {
                let s = (file_lo - a_lo + (b - b0) * bb) as usize;
                let e = (s as u64 + bb.min(ext.len - b * bb)) as usize;
                let got = crc32c::crc32c(&data[s..e]);
                let want = ext.crcs[b as usize];
                if got != want {
                    self.corrupt_reads.set(self.corrupt_reads.get() + 1);
                    let context = format!(
                        "{}: record at {} block {} (file offset {}, {} bytes): crc32c {:#010x} != {:#010x}",
                        ext.vol.path.display(),
                        ext.record_offset,
                        b,
                        a_lo + s as u64,
                        e - s,
                        got,
                        want
                    );
                    tracing::error!(%context, "corrupt read");
                    return Err(Error::Corrupt { context });
                }
            }
        }
        let bytes = buf.into_bytes();
        if let Some((seq, ei)) = cached {
            if let Some(c) = self.cache.borrow_mut().as_mut() {
                for b in b0..b1 {
                    let s = (file_lo - a_lo + (b - b0) * bb) as usize;
                    let e = (s as u64 + bb.min(ext.len - b * bb)) as usize;
                    // One block: share the read buffer (it is the block plus alignment slack).
                    // Several: copy, so one cached block never pins its neighbours' bytes.
                    let block = if b1 - b0 == 1 {
                        Bytes::slice(&bytes, s..e)
                    } else {
                        Bytes::copy_from_slice(&bytes[s..e])
                    };
                    c.insert(cache::block_key(seq, ei, b), block);
                }
            }
        }
        let s = (ext.data_offset + lo - a_lo) as usize;
        let e = (ext.data_offset + hi - a_lo) as usize;
        Ok(Bytes::slice(&bytes, s..e))
    }

    /// `[rel_lo, rel_hi)` (relative to the start of block `b0`) from blocks `b0..b1` of one
    /// extent when every one of them is cached; `None` on any miss.
    fn cached_blocks(
        &self,
        seq: u64,
        ei: usize,
        b0: u64,
        b1: u64,
        rel_lo: u64,
        rel_hi: u64,
    ) -> Option<Bytes> {
        let mut guard = self.cache.borrow_mut();
        let c = guard.as_mut()?;
        if b1 - b0 == 1 {
            let blk = c.get(cache::block_key(seq, ei, b0))?;
            return Some(Bytes::slice(&blk, rel_lo as usize..rel_hi as usize));
        }
        let bb = self.cfg.block_bytes as u64;
        let mut out = BytesMut::with_capacity((rel_hi - rel_lo) as usize);
        for b in b0..b1 {
            let blk = c.get(cache::block_key(seq, ei, b))?;
            let start = (b - b0) * bb;
            let lo = rel_lo.saturating_sub(start).min(blk.len() as u64) as usize;
            let hi = (rel_hi - start).min(blk.len() as u64) as usize;
            out.extend_from_slice(&blk[lo..hi]);
        }
        debug_assert_eq!(out.len() as u64, rel_hi - rel_lo);
        Some(out.freeze())
    }

    /// Start a PUT of exactly `size_bytes`: reserves the record's whole span in the active volume.
    pub fn put(self: &Rc<Self>, ns: &str, key: &str, size_bytes: u64) -> Result<PutWriter> {
        if self.closed.get() {
            return Err(Error::Closed);
        }
        if ns.len() > MAX_NS_BYTES || key.len() > MAX_KEY_BYTES {
            return Err(Error::Invalid(format!(
                "namespace ({} bytes, max {MAX_NS_BYTES}) or key ({} bytes, max {MAX_KEY_BYTES}) too long",
                ns.len(),
                key.len()
            )));
        }
        if size_bytes > MAX_OBJECT_BYTES {
            return Err(Error::Invalid(format!(
                "object of {size_bytes} bytes exceeds {MAX_OBJECT_BYTES}"
            )));
        }
        let bb = self.cfg.block_bytes;
        let align = self.cfg.align_bytes;
        if format::block_count(size_bytes, bb) * 4 > MAX_CRC_TABLE_BYTES {
            return Err(Error::Invalid(format!(
                "object of {size_bytes} bytes needs more than {MAX_CRC_TABLE_BYTES} bytes of checksums at block_bytes {bb}"
            )));
        }
        let span_bytes = format::record_span_bytes(ns.len(), key.len(), size_bytes, bb, align);
        let (vol, record_offset) = self.reserve(span_bytes)?;
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        let mut head = Vec::with_capacity(RECORD_HEADER_BYTES as usize + ns.len() + key.len());
        encode_record_head(&mut head, ns, key, size_bytes, seq, bb);
        let data_offset = record_offset + head.len() as u64;
        let buf_bytes =
            round_up(self.cfg.write_buffer_bytes, align as usize).min(span_bytes as usize);
        let mut buf = AlignedBuf::new(buf_bytes, align as usize);
        assert!(head.len() < buf.capacity());
        buf.extend_from_slice(&head);
        Ok(PutWriter {
            shard: self.clone(),
            ns: ns.to_string(),
            key: key.to_string(),
            seq,
            size_bytes,
            vol,
            record_offset,
            span_bytes,
            data_offset,
            buf: Some(buf),
            buf_capacity_bytes: buf_bytes,
            inflight: None,
            written_bytes: 0,
            received_bytes: 0,
            crcs: Vec::with_capacity(format::block_count(size_bytes, bb).min(1 << 20) as usize),
            block_crc: 0,
            block_fill_bytes: 0,
            failed: false,
            submitted: false,
        })
    }

    /// Reserve `span_bytes` in the active volume (rolling to a new one past the target size),
    /// preallocating with fallocate. Takes a writer slot on the volume.
    fn reserve(&self, span_bytes: u64) -> Result<(Rc<VolFile>, u64)> {
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
            if let Some(old) = vols.active.take() {
                let v = vols.map.get_mut(&old).expect("active volume registered");
                v.sealed = true;
                // Give back the preallocated tail; spans below end_bytes are untouched.
                // SAFETY: ftruncate on a valid fd.
                if unsafe { libc::ftruncate(v.file.file.as_raw_fd(), v.end_bytes as libc::off_t) }
                    == 0
                {
                    v.allocated_bytes = v.end_bytes;
                } else {
                    tracing::warn!(path = %v.file.path.display(), error = %std::io::Error::last_os_error(), "truncating sealed volume failed");
                }
            }
            let id = vols.next_id;
            vols.next_id += 1;
            let path = vol_path(&self.dir, id);
            let f = open_direct(&path, true)
                .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
            fsync_dir(&self.dir)?;
            let file = monoio::fs::File::from_std(f)
                .map_err(|e| Error::io(format!("register {}", path.display()), e))?;
            tracing::debug!(path = %path.display(), "new active volume");
            vols.map.insert(
                id,
                VolState {
                    file: Rc::new(VolFile { id, path, file }),
                    end_bytes: 0,
                    allocated_bytes: 0,
                    live_bytes: 0,
                    records: HashMap::new(),
                    writers: 0,
                    lives: HashMap::new(),
                    named_end: 0,
                    sealed: false,
                },
            );
            vols.active = Some(id);
        }
        let id = vols.active.expect("active volume");
        let v = vols.map.get_mut(&id).expect("active volume registered");
        let need = v.end_bytes + span_bytes;
        if need > v.allocated_bytes {
            let fd = v.file.file.as_raw_fd();
            let mut want = round_up_u64(need, PREALLOC_STEP_BYTES);
            if self.check_headroom(v, want - v.allocated_bytes).is_err() {
                // Not room for a whole step above the reserve: exactly this record, or nothing.
                self.check_headroom(v, need - v.allocated_bytes)?;
                want = need;
            }
            // SAFETY: fallocate on a valid fd; offsets are non-negative and bounded.
            let mut rc = unsafe {
                libc::fallocate(
                    fd,
                    0,
                    v.allocated_bytes as libc::off_t,
                    (want - v.allocated_bytes) as libc::off_t,
                )
            };
            let mut got = want;
            if rc != 0 {
                // A failed fallocate may leave part of the range allocated: give it back, then
                // retry with exactly what this record needs before giving up.
                // SAFETY: ftruncate on a valid fd, back to the size we own.
                unsafe { libc::ftruncate(fd, v.allocated_bytes as libc::off_t) };
                // SAFETY: as above.
                rc = unsafe {
                    libc::fallocate(
                        fd,
                        0,
                        v.allocated_bytes as libc::off_t,
                        (need - v.allocated_bytes) as libc::off_t,
                    )
                };
                got = need;
            }
            if rc != 0 {
                return Err(Error::io(
                    format!("fallocate {} to {need} bytes", v.file.path.display()),
                    std::io::Error::last_os_error(),
                ));
            }
            v.allocated_bytes = got;
        }
        let off = v.end_bytes;
        v.end_bytes += span_bytes;
        v.writers += 1;
        assert_eq!(off % self.cfg.align_bytes as u64, 0);
        Ok((v.file.clone(), off))
    }

    /// Delete; durable before return. Returns the removed version (None if absent).
    pub async fn delete(&self, ns: &str, key: &str, expect: Expect) -> Result<Option<Rc<Object>>> {
        match self
            .submit(
                Op::Delete {
                    ns: ns.to_string(),
                    key: key.to_string(),
                },
                expect,
            )
            .await?
        {
            Reply::Old(o) => Ok(o),
            _ => unreachable!("delete reply"),
        }
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
    ) -> Result<Rc<Object>> {
        if key.len() > MAX_KEY_BYTES || ns.len() > MAX_NS_BYTES {
            return Err(Error::Invalid("namespace or key too long".into()));
        }
        check_meta(&meta)?;
        let entry_bytes: usize = sources.iter().map(|(a, b)| a.len() + b.len() + 12).sum();
        if sources.len() > MAX_COMPOSE_SOURCES || entry_bytes > MAX_JOURNAL_ENTRY_BYTES as usize / 2
        {
            return Err(Error::Invalid(format!(
                "{} compose sources (max {MAX_COMPOSE_SOURCES})",
                sources.len()
            )));
        }
        match self
            .submit(
                Op::Compose {
                    ns: ns.to_string(),
                    key: key.to_string(),
                    sources: sources.to_vec(),
                    meta,
                    remove_sources,
                },
                expect,
            )
            .await?
        {
            Reply::Obj(o) => Ok(o),
            _ => unreachable!("compose reply"),
        }
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
        let mut out = Vec::new();
        if limit == 0 {
            return out;
        }
        let idx = self.index.borrow();
        let Some(m) = idx.get(ns) else { return out };
        let delim = delimiter.filter(|d| !d.is_empty());
        let mut start: Bound<String> = Bound::Included(prefix.to_string());
        let mut skip: Option<String> = None;
        if let Some(a) = after {
            if a >= prefix {
                // Keys strictly after `a`. A common prefix that contains `a` is still listed
                // when keys after `a` fall in it (S3's start-after semantics); callers that
                // want to skip a whole prefix pass an `after` past all of its keys.
                start = Bound::Excluded(a.to_string());
            }
        }
        'outer: loop {
            let range = m.range::<str, _>((start.as_ref().map(|s| s.as_str()), Bound::Unbounded));
            for (k, o) in range {
                if !k.starts_with(prefix) {
                    break 'outer;
                }
                if let Some(s) = &skip {
                    if k.starts_with(s.as_str()) {
                        continue;
                    }
                    skip = None;
                }
                if let Some(d) = delim {
                    if let Some(i) = k[prefix.len()..].find(d) {
                        let cp = k[..prefix.len() + i + d.len()].to_string();
                        let next = seek_past(&cp);
                        if next.is_none() {
                            skip = Some(cp.clone());
                        }
                        out.push(ListItem::Prefix(cp));
                        if out.len() >= limit {
                            break 'outer;
                        }
                        if let Some(n) = next {
                            start = Bound::Included(n);
                            continue 'outer;
                        }
                        continue;
                    }
                }
                out.push(ListItem::Object {
                    key: k.clone(),
                    obj: o.clone(),
                });
                if out.len() >= limit {
                    break 'outer;
                }
            }
            break;
        }
        out
    }

    /// True if the namespace holds any object.
    pub fn has_any(&self, ns: &str) -> bool {
        self.index.borrow().get(ns).is_some_and(|m| !m.is_empty())
    }

    /// Write the index snapshot and trim the journal (runs in the committer, between batches).
    pub async fn checkpoint(&self) -> Result<()> {
        self.submit(Op::Checkpoint, Expect::Any).await.map(|_| ())
    }

    /// Refuse new writes, checkpoint, and give back the active volume's preallocated tail.
    pub async fn close(&self) -> Result<()> {
        self.closed.set(true);
        self.checkpoint().await?;
        // Space of records deleted just before shutdown is given back before the process goes.
        if !self.wait_punches(PUNCH_WAIT_NEAR_FULL) {
            tracing::warn!(dir = %self.dir.display(), "hole punches still queued at close; left to compaction");
        }
        let mut vols = self.vols.borrow_mut();
        if let Some(id) = vols.active.take() {
            let v = vols.map.get_mut(&id).expect("active volume registered");
            v.sealed = true;
            // SAFETY: ftruncate on a valid fd; every reservation lies below end_bytes.
            if unsafe { libc::ftruncate(v.file.file.as_raw_fd(), v.end_bytes as libc::off_t) } == 0
            {
                v.allocated_bytes = v.end_bytes;
            }
        }
        Ok(())
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
        let live_bytes: u64 = vols.map.values().map(|v| v.live_bytes).sum();
        let disk_bytes: u64 = vols.map.values().map(|v| v.end_bytes).sum();
        ShardStats {
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
        }
    }

    async fn submit(&self, op: Op, expect: Expect) -> Result<Reply> {
        let rx = self.enqueue(op, expect)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Hand a request to the committer now; the reply comes on the returned channel.
    fn enqueue(&self, op: Op, expect: Expect) -> Result<oneshot::Receiver<Result<Reply>>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .unbounded_send(Req {
                op,
                expect,
                reply: tx,
            })
            .map_err(|_| Error::Closed)?;
        Ok(rx)
    }

    fn resolve_extent(&self, e: &ExtentRec) -> Result<Extent> {
        let mut vols = self.vols.borrow_mut();
        let v = vols.map.get_mut(&e.volume_id).ok_or_else(|| {
            Error::corrupt(format!(
                "{}: volume {} referenced by the index is missing",
                self.dir.display(),
                e.volume_id
            ))
        })?;
        if e.record_offset + e.span_bytes > v.end_bytes
            || e.data_offset + e.len > e.record_offset + e.span_bytes
        {
            return Err(Error::corrupt(format!(
                "{}: extent at {}+{} beyond volume end {}",
                v.file.path.display(),
                e.record_offset,
                e.span_bytes,
                v.end_bytes
            )));
        }
        v.named_end = v.named_end.max(e.record_offset + e.span_bytes);
        let life = match v.lives.get(&e.record_offset).and_then(Weak::upgrade) {
            Some(l) if l.span_bytes == e.span_bytes => l,
            Some(l) => {
                return Err(Error::corrupt(format!(
                    "{}: record at {} named with span {} and {}",
                    v.file.path.display(),
                    e.record_offset,
                    l.span_bytes,
                    e.span_bytes
                )))
            }
            None => {
                let l = Rc::new(RecordLife {
                    vol: v.file.clone(),
                    record_offset: e.record_offset,
                    span_bytes: e.span_bytes,
                    dead: Cell::new(false),
                    dropped: self.dropped_records.clone(),
                });
                v.lives.insert(e.record_offset, Rc::downgrade(&l));
                l
            }
        };
        Ok(Extent {
            vol: v.file.clone(),
            life,
            record_offset: e.record_offset,
            data_offset: e.data_offset,
            len: e.len,
            span_bytes: e.span_bytes,
            block_bytes: e.block_bytes,
            crcs: e.crcs.clone(),
        })
    }

    fn lookup(&self, overlay: &Overlay, ns: &str, key: &str) -> Option<Rc<Object>> {
        if !overlay.is_empty() {
            if let Some(v) = overlay.get(&(ns.to_string(), key.to_string())) {
                return v.clone();
            }
        }
        self.get(ns, key)
    }

    /// What applying `entry` changes, given the index plus `overlay` (earlier entries of the batch).
    fn plan_entry(&self, overlay: &Overlay, entry: &Entry) -> Result<Vec<Change>> {
        match entry {
            Entry::Put {
                seq,
                mtime_ms,
                ns,
                key,
                meta,
                extent,
            } => {
                let ext = self.resolve_extent(extent)?;
                let obj = Rc::new(Object {
                    size: ext.len,
                    mtime_ms: *mtime_ms,
                    seq: *seq,
                    meta: meta.clone(),
                    extents: vec![ext],
                });
                Ok(vec![(ns.clone(), key.clone(), Some(obj))])
            }
            Entry::Delete { ns, key, .. } => Ok(vec![(ns.clone(), key.clone(), None)]),
            Entry::Compose {
                seq,
                mtime_ms,
                ns,
                key,
                meta,
                remove_sources,
                sources,
            } => {
                let mut extents = Vec::new();
                for (sns, skey, sseq) in sources {
                    let src = self
                        .lookup(overlay, sns, skey)
                        .filter(|o| o.seq == *sseq)
                        .ok_or(Error::NotFound)?;
                    extents.extend(src.extents.iter().cloned());
                }
                let obj = Rc::new(Object {
                    size: extents.iter().map(|e| e.len).sum(),
                    mtime_ms: *mtime_ms,
                    seq: *seq,
                    meta: meta.clone(),
                    extents,
                });
                let mut changes = Vec::new();
                if *remove_sources {
                    for (sns, skey, _) in sources {
                        if (sns, skey) != (ns, key) {
                            changes.push((sns.clone(), skey.clone(), None));
                        }
                    }
                }
                changes.push((ns.clone(), key.clone(), Some(obj)));
                Ok(changes)
            }
            Entry::Relocate {
                seq,
                ns,
                key,
                moves,
            } => {
                let cur = self
                    .lookup(overlay, ns, key)
                    .filter(|o| o.seq == *seq)
                    .ok_or(Error::PreconditionFailed)?;
                let mut extents = cur.extents.clone();
                for m in moves {
                    let old = extents.get(m.extent_index as usize).ok_or_else(|| {
                        Error::corrupt(format!(
                            "relocate of {ns}/{key}: no extent {}",
                            m.extent_index
                        ))
                    })?;
                    let rec = ExtentRec {
                        volume_id: m.volume_id,
                        record_offset: m.record_offset,
                        data_offset: m.data_offset,
                        len: old.len,
                        span_bytes: old.span_bytes,
                        block_bytes: old.block_bytes,
                        crcs: old.crcs.clone(),
                    };
                    extents[m.extent_index as usize] = self.resolve_extent(&rec)?;
                }
                let obj = Rc::new(Object {
                    size: cur.size,
                    mtime_ms: cur.mtime_ms,
                    seq: cur.seq,
                    meta: cur.meta.clone(),
                    extents,
                });
                Ok(vec![(ns.clone(), key.clone(), Some(obj))])
            }
        }
    }

    /// Apply planned changes to the index and the per-volume live-record accounting.
    fn apply_changes(&self, changes: Vec<Change>) {
        let mut idx = self.index.borrow_mut();
        let mut vols = self.vols.borrow_mut();
        let mut snapshot_bytes = self.snapshot_bytes.get();
        for (ns, key, new) in changes {
            if let Some(n) = &new {
                snapshot_bytes += snapshot_object_bytes(&ns, &key, n);
                for e in &n.extents {
                    let v = vols
                        .map
                        .get_mut(&e.vol.id)
                        .expect("extent volume registered");
                    let r = v.records.entry(e.record_offset).or_insert(RecInfo {
                        span_bytes: e.span_bytes,
                        refs: 0,
                    });
                    if r.refs == 0 {
                        v.live_bytes += e.span_bytes;
                    }
                    assert_eq!(r.span_bytes, e.span_bytes, "record span mismatch");
                    r.refs += 1;
                    e.life.dead.set(false);
                }
            }
            let old = match new {
                Some(n) => idx.entry(ns.clone()).or_default().insert(key.clone(), n),
                None => {
                    let m = idx.get_mut(&ns);
                    let old = m.and_then(|m| m.remove(&key));
                    if idx.get(&ns).is_some_and(|m| m.is_empty()) {
                        idx.remove(&ns);
                    }
                    old
                }
            };
            if let Some(o) = &old {
                snapshot_bytes -= snapshot_object_bytes(&ns, &key, o);
                for e in &o.extents {
                    let v = vols
                        .map
                        .get_mut(&e.vol.id)
                        .expect("extent volume registered");
                    let r = v
                        .records
                        .get_mut(&e.record_offset)
                        .expect("live record registered");
                    assert!(r.refs > 0);
                    r.refs -= 1;
                    if r.refs == 0 {
                        v.live_bytes -= r.span_bytes;
                        v.records.remove(&e.record_offset);
                        e.life.dead.set(true);
                    }
                }
                let same_version =
                    matches!(idx.get(&ns).and_then(|m| m.get(&key)), Some(n) if n.seq == o.seq);
                if !same_version {
                    if let Some(c) = self.cache.borrow_mut().as_mut() {
                        c.remove(o.seq);
                    }
                }
            }
        }
        let n: usize = idx.values().map(|m| m.len()).sum();
        self.n_objects.set(n as u64);
        assert!(snapshot_bytes >= format::SNAPSHOT_EMPTY_BYTES);
        self.snapshot_bytes.set(snapshot_bytes);
    }

    /// Process records whose last extent went away: forget their lives and, for dead ones,
    /// punch their spans out of the volume (FALLOC_FL_PUNCH_HOLE | KEEP_SIZE), giving the space
    /// back without copying. Safe because nothing can read a dead record any more: no index
    /// object references it, no reader holds an extent of it, the entry that killed it is
    /// durable (so replay kills it again), and recovery, compaction and the scrubber only read
    /// records the index references.
    fn reclaim_dropped_records(&self) {
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
            let lo = round_up_u64(d.record_offset, PUNCH_GRANULE_BYTES);
            let hi = round_down_u64(d.record_offset + d.span_bytes, PUNCH_GRANULE_BYTES);
            if hi <= lo {
                continue;
            }
            self.puncher
                .punch(v.file.file.as_raw_fd(), &v.file.path, lo, hi - lo);
        }
    }

    /// Gives back the span of a PUT that was reserved but never handed to the committer (no
    /// journal entry can name it, so nothing will ever read it). At the tail of the active
    /// volume, with no write of it still in flight, the tail is rolled back and the next PUT
    /// reuses the (already allocated) space; anywhere else its whole filesystem blocks are
    /// punched out on the worker thread. A write still in flight may refill at most one
    /// staging buffer of a punched span: compaction takes that.
    fn reclaim_abandoned_span(
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
        let lo = round_up_u64(record_offset, PUNCH_GRANULE_BYTES);
        let hi = round_down_u64(record_offset + span_bytes, PUNCH_GRANULE_BYTES);
        if hi > lo {
            self.puncher
                .punch(v.file.file.as_raw_fd(), &v.file.path, lo, hi - lo);
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
        // SAFETY: fstatvfs on a valid fd into a zeroed, owned struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatvfs(v.file.file.as_raw_fd(), &mut st) } != 0 {
            return Err(Error::io(
                format!("fstatvfs {}", v.file.path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        let mut free_bytes = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
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
            // SAFETY: as above.
            if unsafe { libc::fstatvfs(v.file.file.as_raw_fd(), &mut st) } == 0 {
                free_bytes = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
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

    /// Journal size past which the committer checkpoints: with a reserve, half of it, so the
    /// journal never eats the room a checkpoint needs.
    fn auto_checkpoint_journal_bytes(&self) -> u64 {
        if self.cfg.reserve_bytes == 0 {
            return AUTO_CHECKPOINT_JOURNAL_BYTES;
        }
        AUTO_CHECKPOINT_JOURNAL_BYTES
            .min((self.cfg.reserve_bytes / 2).max(MIN_AUTO_CHECKPOINT_JOURNAL_BYTES))
    }
}

/// Bytes one object takes in the index snapshot.
fn snapshot_object_bytes(ns: &str, key: &str, o: &Object) -> u64 {
    format::snapshot_object_bytes(
        ns.len(),
        key.len(),
        o.meta.len(),
        o.extents.iter().map(|e| e.crcs.len()),
    )
}

/// The smallest string greater than every string starting with `cp`, when cheaply computable
/// (last byte ASCII below 0x7f, the usual case for "/").
fn seek_past(cp: &str) -> Option<String> {
    let last = *cp.as_bytes().last()?;
    if last < 0x7f {
        let mut s = cp[..cp.len() - 1].to_string();
        s.push((last + 1) as char);
        Some(s)
    } else {
        None
    }
}

/// The single committer task of a shard: takes every pending request, checks preconditions in
/// order, syncs dirty volumes once, appends all winners' entries in one write, fdatasyncs the
/// journal once, applies, wakes waiters.
async fn committer(weak: Weak<Shard>, mut rx: mpsc::UnboundedReceiver<Req>) {
    while let Some(first) = rx.next().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_REQUESTS {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let Some(shard) = weak.upgrade() else { break };
        shard.commit_batch(batch).await;
    }
}

impl Shard {
    async fn commit_batch(&self, batch: Vec<Req>) {
        // Drops since the last batch (e.g. the object a DELETE returned to its caller).
        self.reclaim_dropped_records();
        let mut overlay = Overlay::new();
        let mut winners: Vec<(oneshot::Sender<Result<Reply>>, Reply, Vec<Change>)> = Vec::new();
        let mut checkpoints = Vec::new();
        let mut sync_vols: BTreeMap<u32, Rc<VolFile>> = BTreeMap::new();
        let mut jbuf = Vec::new();
        let (mut next_lsn, broken) = {
            let j = self.journal.borrow();
            let j = j.as_ref().expect("journal open");
            (j.next_lsn, j.broken.clone())
        };
        let mut n_entries = 0u64;
        for req in batch {
            if let Op::Checkpoint = req.op {
                checkpoints.push(req.reply);
                continue;
            }
            if let Some(why) = &broken {
                tracing::error!(dir = %self.dir.display(), why = %why, "refusing commit: journal broken");
                let _ = req.reply.send(Err(Error::Closed));
                continue;
            }
            if self.closed.get() && !matches!(req.op, Op::Relocate(..)) {
                let _ = req.reply.send(Err(Error::Closed));
                continue;
            }
            match self.plan_req(&overlay, req.op, req.expect) {
                Err(e) => {
                    let _ = req.reply.send(Err(e));
                }
                Ok((entry, reply, sync)) => {
                    let changes = match &entry {
                        Some(e) => match self.plan_entry(&overlay, e) {
                            Ok(c) => c,
                            Err(err) => {
                                let _ = req.reply.send(Err(err));
                                continue;
                            }
                        },
                        None => Vec::new(),
                    };
                    if let Some(e) = &entry {
                        encode_journal_entry(&mut jbuf, next_lsn, e);
                        next_lsn += 1;
                        n_entries += 1;
                    }
                    if let Some(v) = sync {
                        sync_vols.insert(v.id, v);
                    }
                    for (ns, key, o) in &changes {
                        overlay.insert((ns.clone(), key.clone()), o.clone());
                    }
                    winners.push((req.reply, reply, changes));
                }
            }
        }

        if n_entries > 0 {
            if let Err(e) = self.make_durable(sync_vols, jbuf, next_lsn).await {
                for (tx, _, _) in winners {
                    let _ = tx.send(Err(e.duplicate()));
                }
                winners = Vec::new();
            } else {
                self.commits.set(self.commits.get() + n_entries);
            }
        }
        for (tx, reply, changes) in winners {
            let reply = match reply {
                Reply::Done => match changes.last() {
                    Some((_, _, Some(o))) => Reply::Obj(o.clone()),
                    _ => Reply::Done,
                },
                r => r,
            };
            self.apply_changes(changes);
            let _ = tx.send(Ok(reply));
        }
        self.reclaim_dropped_records();

        let journal_big = self
            .journal
            .borrow()
            .as_ref()
            .is_some_and(|j| j.len_bytes > self.auto_checkpoint_journal_bytes());
        if !checkpoints.is_empty() || journal_big {
            let r = self.do_checkpoint().await;
            if let Err(e) = &r {
                tracing::error!(dir = %self.dir.display(), error = %e, "checkpoint failed");
            }
            for tx in checkpoints {
                let _ = tx.send(match &r {
                    Ok(()) => Ok(Reply::Done),
                    Err(e) => Err(e.duplicate()),
                });
            }
        }
    }

    /// Turn a request into a journal entry (or none), its reply, and the volume to sync.
    #[allow(clippy::type_complexity)]
    fn plan_req(
        &self,
        overlay: &Overlay,
        op: Op,
        expect: Expect,
    ) -> Result<(Option<Entry>, Reply, Option<Rc<VolFile>>)> {
        match op {
            Op::Put(entry, vol) => {
                let Entry::Put { ns, key, .. } = &entry else {
                    unreachable!()
                };
                check_expect(expect, &self.lookup(overlay, ns, key))?;
                // The reply object is the one planned; fetched after apply below.
                Ok((Some(entry), Reply::Done, Some(vol)))
            }
            Op::Delete { ns, key } => {
                let cur = self.lookup(overlay, &ns, &key);
                check_expect(expect, &cur)?;
                if cur.is_none() {
                    return Ok((None, Reply::Old(None), None));
                }
                let seq = self.next_seq.get();
                self.next_seq.set(seq + 1);
                Ok((Some(Entry::Delete { seq, ns, key }), Reply::Old(cur), None))
            }
            Op::Compose {
                ns,
                key,
                sources,
                meta,
                remove_sources,
            } => {
                check_expect(expect, &self.lookup(overlay, &ns, &key))?;
                let mut srcs = Vec::with_capacity(sources.len());
                for (sns, skey) in sources {
                    let o = self.lookup(overlay, &sns, &skey).ok_or(Error::NotFound)?;
                    srcs.push((sns, skey, o.seq));
                }
                let seq = self.next_seq.get();
                self.next_seq.set(seq + 1);
                Ok((
                    Some(Entry::Compose {
                        seq,
                        mtime_ms: now_ms(),
                        ns,
                        key,
                        meta,
                        remove_sources,
                        sources: srcs,
                    }),
                    Reply::Done,
                    None,
                ))
            }
            Op::Relocate(entry, vol) => {
                let Entry::Relocate { ns, key, seq, .. } = &entry else {
                    unreachable!()
                };
                check_expect(Expect::Seq(*seq), &self.lookup(overlay, ns, key))?;
                Ok((Some(entry), Reply::Done, Some(vol)))
            }
            Op::Checkpoint => unreachable!("handled by the caller"),
        }
    }

    async fn make_durable(
        &self,
        sync_vols: BTreeMap<u32, Rc<VolFile>>,
        jbuf: Vec<u8>,
        next_lsn: u64,
    ) -> Result<()> {
        for v in sync_vols.values() {
            v.file
                .sync_data()
                .await
                .map_err(|e| Error::io(format!("fdatasync {}", v.path.display()), e))?;
        }
        let (file, at) = {
            let j = self.journal.borrow();
            let j = j.as_ref().expect("journal open");
            (j.file.clone(), j.len_bytes)
        };
        let n = jbuf.len() as u64;
        let (res, _) = file.write_all_at(jbuf, at).await;
        let res = match res {
            Ok(()) => {
                self.journal_syncs.set(self.journal_syncs.get() + 1);
                file.sync_data().await
            }
            Err(e) => Err(e),
        };
        let jpath = self.dir.join(JOURNAL_FILE);
        let mut jref = self.journal.borrow_mut();
        let j = jref.as_mut().expect("journal open");
        match res {
            Ok(()) => {
                j.len_bytes = at + n;
                j.next_lsn = next_lsn;
                Ok(())
            }
            Err(e) => {
                // Cut the partial append away so later entries are not hidden behind garbage at
                // replay; if even that fails, refuse all further commits.
                // SAFETY: ftruncate/fsync on a valid fd.
                let undone = unsafe {
                    libc::ftruncate(file.as_raw_fd(), at as libc::off_t) == 0
                        && libc::fsync(file.as_raw_fd()) == 0
                };
                if !undone {
                    j.broken = Some(format!(
                        "append to {} at {at} failed and could not be undone: {e}",
                        jpath.display()
                    ));
                }
                Err(Error::io(
                    format!("append {n} bytes to {} at {at}", jpath.display()),
                    e,
                ))
            }
        }
    }

    /// Write `index.snap` (tmp file, fsync, rename, fsync dir), then trim the journal. Runs in
    /// the committer, so the index does not change meanwhile.
    async fn do_checkpoint(&self) -> Result<()> {
        let started = Instant::now();
        let tmp = self.dir.join(SNAP_TMP_FILE);
        let fin = self.dir.join(SNAP_FILE);
        let std_file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        let file = monoio::fs::File::from_std(std_file)
            .map_err(|e| Error::io(format!("register {}", tmp.display()), e))?;
        let applied_lsn = self
            .journal
            .borrow()
            .as_ref()
            .expect("journal open")
            .next_lsn
            - 1;
        let n_objects = self.n_objects.get();
        let mut buf = Vec::with_capacity(CHUNK_BYTES as usize + 64 * 1024);
        encode_snapshot_header(&mut buf, self.next_seq.get(), applied_lsn, n_objects);
        let mut crc = 0u32;
        let mut pos = 0u64;
        let mut cursor: Option<(String, String)> = None;
        let mut written_objects = 0u64;
        loop {
            let mut done = true;
            {
                let idx = self.index.borrow();
                let ns_start = cursor.as_ref().map(|c| c.0.as_str()).unwrap_or("");
                'fill: for (ns, m) in
                    idx.range::<str, _>((Bound::Included(ns_start), Bound::Unbounded))
                {
                    let key_lo = match &cursor {
                        Some((cns, ckey)) if cns == ns => Bound::Excluded(ckey.as_str()),
                        _ => Bound::Unbounded,
                    };
                    for (k, o) in m.range::<str, _>((key_lo, Bound::Unbounded)) {
                        let recs: Vec<ExtentRec> = o.extents.iter().map(|e| e.to_rec()).collect();
                        encode_snapshot_object(
                            &mut buf, ns, k, o.size, o.mtime_ms, o.seq, &o.meta, &recs,
                        );
                        written_objects += 1;
                        if buf.len() as u64 >= CHUNK_BYTES {
                            cursor = Some((ns.clone(), k.clone()));
                            done = false;
                            break 'fill;
                        }
                    }
                }
            }
            if done {
                crc = crc32c::crc32c_append(crc, &buf);
                buf.extend_from_slice(&crc.to_le_bytes());
            } else {
                crc = crc32c::crc32c_append(crc, &buf);
            }
            let n = buf.len() as u64;
            let (res, b) = file.write_all_at(buf, pos).await;
            res.map_err(|e| Error::io(format!("write {} at {pos}", tmp.display()), e))?;
            pos += n;
            buf = b;
            buf.clear();
            if done {
                break;
            }
        }
        assert_eq!(
            written_objects, n_objects,
            "index changed during checkpoint"
        );
        assert_eq!(
            pos,
            self.snapshot_bytes.get(),
            "snapshot size accounting is off"
        );
        file.sync_all()
            .await
            .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
        drop(file);
        std::fs::rename(&tmp, &fin)
            .map_err(|e| Error::io(format!("rename {} -> {}", tmp.display(), fin.display()), e))?;
        fsync_dir(&self.dir)?;
        // The snapshot now covers every journal entry: trim the journal.
        let jfile = self
            .journal
            .borrow()
            .as_ref()
            .expect("journal open")
            .file
            .clone();
        let jpath = self.dir.join(JOURNAL_FILE);
        // SAFETY: ftruncate on a valid fd.
        if unsafe { libc::ftruncate(jfile.as_raw_fd(), 0) } != 0 {
            return Err(Error::io(
                format!("truncate {}", jpath.display()),
                std::io::Error::last_os_error(),
            ));
        }
        jfile
            .sync_all()
            .await
            .map_err(|e| Error::io(format!("fsync {}", jpath.display()), e))?;
        self.journal
            .borrow_mut()
            .as_mut()
            .expect("journal open")
            .len_bytes = 0;
        tracing::info!(dir = %self.dir.display(), objects = n_objects, snapshot_bytes = pos, elapsed_ms = started.elapsed().as_millis() as u64, "checkpoint");
        Ok(())
    }
}

impl Shard {
    /// Compact sealed volumes whose garbage ratio exceeds `min_garbage_ratio`: copy their live
    /// records into the active volume (one I/O in flight, yielding between chunks so foreground
    /// reads go first), commit Relocate entries (applied only if the object's seq is unchanged),
    /// then unlink volumes nothing references any more. Readers holding old `Object`s keep
    /// working: extents hold the volume file open.
    pub async fn compact(&self, min_garbage_ratio: f64) -> Result<CompactStats> {
        let mut stats = CompactStats::default();
        if self.compacting.replace(true) {
            return Ok(stats);
        }
        let r = self.compact_inner(min_garbage_ratio, &mut stats).await;
        self.compacting.set(false);
        r.map(|_| stats)
    }

    async fn compact_inner(&self, min_garbage_ratio: f64, stats: &mut CompactStats) -> Result<()> {
        // Dead records readers let go of since the last commit.
        self.reclaim_dropped_records();
        // Emptiest first: a fully dead volume needs no copy (no free space) to be removed, and
        // the least live data frees the most space per byte copied.
        let victims: Vec<u32> = {
            let vols = self.vols.borrow();
            let mut victims: Vec<(u64, u32)> = vols
                .map
                .iter()
                .filter(|(id, v)| {
                    v.sealed
                        && vols.active != Some(**id)
                        && v.writers == 0
                        && v.end_bytes > 0
                        && (1.0 - v.live_bytes as f64 / v.end_bytes as f64) > min_garbage_ratio
                })
                .map(|(id, v)| (v.live_bytes, *id))
                .collect();
            victims.sort_unstable();
            victims.into_iter().map(|(_, id)| id).collect()
        };
        let mut processed = Vec::with_capacity(victims.len());
        // Records of the victims still referenced, with the objects referencing them: one walk
        // of the index in chunks, yielding between chunks so foreground work is not stalled.
        let victim_set: std::collections::HashSet<u32> = victims.iter().copied().collect();
        let mut refs_by_victim: BTreeMap<u32, BTreeMap<u64, Vec<RecordRef>>> = BTreeMap::new();
        self.walk_index(|ns, k, o| {
            for (i, e) in o.extents.iter().enumerate() {
                if victim_set.contains(&e.vol.id) {
                    refs_by_victim
                        .entry(e.vol.id)
                        .or_default()
                        .entry(e.record_offset)
                        .or_default()
                        .push((ns.to_string(), k.to_string(), o.seq, i as u32, e.clone()));
                }
            }
        })
        .await;
        'victims: for vid in victims {
            processed.push(vid);
            if self.closed.get() {
                return Err(Error::Closed);
            }
            let by_record = refs_by_victim.remove(&vid).unwrap_or_default();
            // Relocations are committed in groups (one group commit, one volume sync per
            // group); copies of a group's records are written before its entries are queued.
            let mut pending: Vec<oneshot::Receiver<Result<Reply>>> = Vec::new();
            let mut slots: Vec<WriterSlot<'_>> = Vec::new();
            let n_records = by_record.len();
            for (i, (rec_off, refs)) in by_record.into_iter().enumerate() {
                let src = refs[0].4.clone();
                let span = src.span_bytes;
                let (dst, dst_off) = match self.reserve(span) {
                    Ok(r) => r,
                    Err(Error::NoSpace { context }) => {
                        // No room above the reserve to copy into: finish what was copied, then
                        // still remove the volumes that are already empty (that needs no space).
                        tracing::warn!(dir = %self.dir.display(), %context, "compaction stopped: no free space above the reserve to copy into");
                        stats.stopped_no_space = true;
                        for rx in pending.drain(..) {
                            match rx.await.map_err(|_| Error::Closed)? {
                                Ok(_) | Err(Error::PreconditionFailed) => {}
                                Err(e) => return Err(e),
                            }
                        }
                        slots.clear();
                        break 'victims;
                    }
                    Err(e) => return Err(e),
                };
                slots.push(WriterSlot {
                    vols: &self.vols,
                    volume_id: dst.id,
                });
                self.copy_record(&src, &dst, dst_off).await?;
                stats.records_moved += 1;
                stats.bytes_moved += span;
                for (ns, key, seq, idx, e) in refs {
                    let entry = Entry::Relocate {
                        seq,
                        ns,
                        key,
                        moves: vec![Move {
                            extent_index: idx,
                            volume_id: dst.id,
                            record_offset: dst_off,
                            data_offset: dst_off + (e.data_offset - rec_off),
                        }],
                    };
                    pending.push(self.enqueue(Op::Relocate(entry, dst.clone()), Expect::Seq(seq))?);
                }
                if pending.len() >= COMPACT_COMMIT_GROUP || i + 1 == n_records {
                    for rx in pending.drain(..) {
                        match rx.await.map_err(|_| Error::Closed)? {
                            Ok(_) | Err(Error::PreconditionFailed) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    slots.clear();
                }
                yield_now().await;
            }
        }
        // Volumes no longer referenced. Checkpoint first so no journal entry (which replay would
        // resolve against the volume) refers to them, then unlink.
        let empty = |s: &Self| -> Vec<u32> {
            let vols = s.vols.borrow();
            processed
                .iter()
                .copied()
                .filter(|id| {
                    vols.map
                        .get(id)
                        .is_some_and(|v| v.records.is_empty() && v.writers == 0)
                })
                .collect()
        };
        if empty(self).is_empty() {
            return Ok(());
        }
        self.checkpoint().await?;
        let removable = empty(self);
        for vid in removable {
            let v = self
                .vols
                .borrow_mut()
                .map
                .remove(&vid)
                .expect("victim registered");
            std::fs::remove_file(&v.file.path)
                .map_err(|e| Error::io(format!("remove {}", v.file.path.display()), e))?;
            stats.volumes_compacted += 1;
            stats.bytes_reclaimed += v.end_bytes;
            tracing::info!(path = %v.file.path.display(), reclaimed_bytes = v.end_bytes, "volume compacted");
        }
        fsync_dir(&self.dir)?;
        Ok(())
    }

    /// Visit every object in (ns, key) order, a chunk at a time, yielding between chunks (the
    /// index may change in between; callers tolerate that).
    async fn walk_index(&self, mut f: impl FnMut(&str, &str, &Rc<Object>)) {
        const WALK_CHUNK_OBJECTS: usize = 4096;
        let mut cursor: Option<(String, String)> = None;
        loop {
            let mut n = 0usize;
            let mut next = None;
            {
                let idx = self.index.borrow();
                let ns_start = cursor.as_ref().map(|c| c.0.as_str()).unwrap_or("");
                'outer: for (ns, m) in
                    idx.range::<str, _>((Bound::Included(ns_start), Bound::Unbounded))
                {
                    let lo = match &cursor {
                        Some((cns, ck)) if cns == ns => Bound::Excluded(ck.as_str()),
                        _ => Bound::Unbounded,
                    };
                    for (k, o) in m.range::<str, _>((lo, Bound::Unbounded)) {
                        f(ns, k, o);
                        n += 1;
                        if n >= WALK_CHUNK_OBJECTS {
                            next = Some((ns.clone(), k.clone()));
                            break 'outer;
                        }
                    }
                }
            }
            match next {
                Some(c) => {
                    cursor = Some(c);
                    yield_now().await;
                }
                None => break,
            }
        }
    }

    /// Copy one record verbatim (header, data, trailer, padding) in bounded chunks.
    async fn copy_record(&self, src: &Extent, dst: &Rc<VolFile>, dst_off: u64) -> Result<()> {
        let align = self.cfg.align_bytes as usize;
        let mut done = 0u64;
        let mut buf = AlignedBuf::new(CHUNK_BYTES.min(src.span_bytes) as usize, align);
        while done < src.span_bytes {
            let n = (src.span_bytes - done).min(CHUNK_BYTES) as usize;
            buf.clear();
            let rb = if n == buf.capacity() {
                buf
            } else {
                AlignedBuf::new(n, align)
            };
            assert_eq!(rb.capacity(), n);
            let from = src.record_offset + done;
            let (res, mut b) = src.vol.file.read_exact_at(rb, from).await;
            res.map_err(|e| {
                Error::io(
                    format!("read {} at {from} len {n}", src.vol.path.display()),
                    e,
                )
            })?;
            b.set_len(n);
            if done == 0 {
                if let Err(why) = decode_record_header(b.as_ref()) {
                    return Err(Error::corrupt(format!(
                        "{}: record at {}: {why}",
                        src.vol.path.display(),
                        src.record_offset
                    )));
                }
            }
            let to = dst_off + done;
            let (res, b) = dst.file.write_all_at(b, to).await;
            res.map_err(|e| Error::io(format!("write {} at {to} len {n}", dst.path.display()), e))?;
            buf = b;
            done += n as u64;
            yield_now().await;
        }
        Ok(())
    }

    /// Walk every live object, verify the CRC32C of all its blocks, at most `max_bytes_per_s`
    /// (0 = unlimited). Corruption is counted and logged, not returned as an error.
    pub async fn scrub(&self, max_bytes_per_s: u64) -> Result<ScrubStats> {
        let mut stats = ScrubStats::default();
        // Weak: an object deleted during the pass is not kept alive (its records can be reclaimed).
        let mut objs: Vec<Weak<Object>> = Vec::with_capacity(self.n_objects.get() as usize);
        self.walk_index(|_, _, o| objs.push(Rc::downgrade(o))).await;
        let started = Instant::now();
        for o in objs {
            let Some(o) = o.upgrade() else { continue };
            let mut bad = false;
            for ext in &o.extents {
                let step = (CHUNK_BYTES / ext.block_bytes as u64).max(1) * ext.block_bytes as u64;
                let mut lo = 0u64;
                while lo < ext.len && !bad {
                    let hi = (lo + step).min(ext.len);
                    match self.read_extent(ext, lo, hi, None).await {
                        Ok(_) => {}
                        Err(Error::Corrupt { .. }) => bad = true,
                        Err(e) => return Err(e),
                    }
                    stats.bytes_checked += hi - lo;
                    lo = hi;
                    if max_bytes_per_s > 0 {
                        let due = Duration::from_secs_f64(
                            stats.bytes_checked as f64 / max_bytes_per_s as f64,
                        );
                        let elapsed = started.elapsed();
                        if due > elapsed {
                            monoio::time::sleep(due - elapsed).await;
                        }
                    } else {
                        yield_now().await;
                    }
                }
            }
            stats.objects_checked += 1;
            if bad {
                stats.corrupt_objects += 1;
            }
        }
        Ok(stats)
    }
}

/// Streams one object's data into its reserved span, computing the per-block CRC32Cs.
/// Dropping it without `finish` abandons the write: nothing becomes visible.
pub struct PutWriter {
    shard: Rc<Shard>,
    ns: String,
    key: String,
    seq: u64,
    size_bytes: u64,
    vol: Rc<VolFile>,
    record_offset: u64,
    span_bytes: u64,
    data_offset: u64,
    /// Staging buffer being filled.
    buf: Option<AlignedBuf>,
    buf_capacity_bytes: usize,
    /// The one write in flight (spawned so the caller can fill the next buffer meanwhile).
    inflight: Option<InFlightWrite>,
    /// Record bytes submitted for writing (all of them complete once `inflight` is None).
    written_bytes: u64,
    received_bytes: u64,
    crcs: Vec<u32>,
    block_crc: u32,
    block_fill_bytes: u64,
    failed: bool,
    /// The record was handed to the committer: from then on its span may be named by a
    /// journal entry (even when the commit reports an error), so it is never reclaimed here.
    submitted: bool,
}

struct InFlightWrite {
    handle: monoio::task::JoinHandle<(std::io::Result<()>, AlignedBuf)>,
    pos: u64,
    len_bytes: u64,
}

impl Drop for PutWriter {
    fn drop(&mut self) {
        if !self.submitted {
            // Abandoned (the client went away, a check failed): nothing names this span, so
            // its space goes back now instead of waiting for compaction.
            self.shard.reclaim_abandoned_span(
                &self.vol,
                self.record_offset,
                self.span_bytes,
                self.inflight.is_some(),
            );
        }
        release_writer(&self.shard.vols, self.vol.id);
    }
}

impl PutWriter {
    /// Append data; at most one write I/O in flight (awaited before returning).
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.failed {
            return Err(Error::Invalid("write after a failed write".into()));
        }
        let got = self.received_bytes + data.len() as u64;
        if got > self.size_bytes {
            self.failed = true;
            return Err(Error::SizeMismatch {
                expected: self.size_bytes,
                got,
            });
        }
        self.received_bytes = got;
        let bb = self.shard.cfg.block_bytes as u64;
        let mut d = &data[..];
        while !d.is_empty() {
            let n = ((bb - self.block_fill_bytes) as usize).min(d.len());
            self.block_crc = crc32c::crc32c_append(self.block_crc, &d[..n]);
            self.block_fill_bytes += n as u64;
            if self.block_fill_bytes == bb {
                self.crcs.push(self.block_crc);
                self.block_crc = 0;
                self.block_fill_bytes = 0;
            }
            d = &d[n..];
        }
        let r = self.push(&data).await;
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    async fn push(&mut self, mut d: &[u8]) -> Result<()> {
        while !d.is_empty() {
            let buf = self.buf.as_mut().expect("staging buffer present");
            let n = buf.remaining().min(d.len());
            buf.extend_from_slice(&d[..n]);
            d = &d[n..];
            if buf.remaining() == 0 {
                self.flush(false).await?;
            }
        }
        Ok(())
    }

    /// Submit the full staging buffer. At most one write is in flight: the previous one is
    /// awaited first (its buffer becomes the next staging buffer). The last write of a record
    /// is awaited inline.
    async fn flush(&mut self, last: bool) -> Result<()> {
        let full = self.buf.take().expect("staging buffer present");
        let n = full.len() as u64;
        assert_eq!(n % self.shard.cfg.align_bytes as u64, 0, "unaligned flush");
        assert!(
            self.written_bytes + n <= self.span_bytes,
            "write past reserved span"
        );
        let spare = match self.wait_inflight().await {
            Ok(b) => b,
            Err(e) => {
                self.buf = Some(full);
                return Err(e);
            }
        };
        let pos = self.record_offset + self.written_bytes;
        self.written_bytes += n;
        if last {
            let (res, mut b) = self.vol.file.write_all_at(full, pos).await;
            b.clear();
            self.buf = Some(b);
            res.map_err(|e| {
                Error::io(
                    format!("write {} at {pos} len {n}", self.vol.path.display()),
                    e,
                )
            })?;
        } else {
            let vol = self.vol.clone();
            let handle = monoio::spawn(async move { vol.file.write_all_at(full, pos).await });
            self.inflight = Some(InFlightWrite {
                handle,
                pos,
                len_bytes: n,
            });
            let align = self.shard.cfg.align_bytes as usize;
            self.buf =
                Some(spare.unwrap_or_else(|| AlignedBuf::new(self.buf_capacity_bytes, align)));
        }
        Ok(())
    }

    /// Wait for the write in flight, if any; returns its (cleared) buffer.
    async fn wait_inflight(&mut self) -> Result<Option<AlignedBuf>> {
        let Some(w) = self.inflight.take() else {
            return Ok(None);
        };
        let (res, mut b) = w.handle.await;
        res.map_err(|e| {
            Error::io(
                format!(
                    "write {} at {} len {}",
                    self.vol.path.display(),
                    w.pos,
                    w.len_bytes
                ),
                e,
            )
        })?;
        b.clear();
        Ok(Some(b))
    }

    /// Complete the PUT: returns once data and journal entry are durable (group commit); the
    /// object becomes visible at that moment.
    pub async fn finish(mut self, meta: Bytes, expect: Expect) -> Result<Rc<Object>> {
        if self.failed {
            return Err(Error::Invalid("finish after a failed write".into()));
        }
        check_meta(&meta)?;
        if self.received_bytes != self.size_bytes {
            return Err(Error::SizeMismatch {
                expected: self.size_bytes,
                got: self.received_bytes,
            });
        }
        if self.block_fill_bytes > 0 {
            self.crcs.push(self.block_crc);
            self.block_fill_bytes = 0;
        }
        let bb = self.shard.cfg.block_bytes;
        assert_eq!(
            self.crcs.len() as u64,
            format::block_count(self.size_bytes, bb)
        );
        let mut trailer = Vec::with_capacity(8 + 4 * self.crcs.len());
        encode_record_trailer(&mut trailer, &self.crcs);
        self.push(&trailer).await?;
        let align = self.shard.cfg.align_bytes as usize;
        let buf = self.buf.as_mut().expect("staging buffer present");
        if !buf.is_empty() {
            let padded = round_up(buf.len(), align);
            buf.zero_fill_to(padded);
            self.flush(true).await?;
        }
        self.wait_inflight().await?;
        assert_eq!(
            self.written_bytes, self.span_bytes,
            "record span not fully written"
        );
        let entry = Entry::Put {
            seq: self.seq,
            mtime_ms: now_ms(),
            ns: std::mem::take(&mut self.ns),
            key: std::mem::take(&mut self.key),
            meta,
            extent: ExtentRec {
                volume_id: self.vol.id,
                record_offset: self.record_offset,
                data_offset: self.data_offset,
                len: self.size_bytes,
                span_bytes: self.span_bytes,
                block_bytes: bb,
                crcs: std::mem::take(&mut self.crcs).into(),
            },
        };
        self.submitted = true;
        match self
            .shard
            .submit(Op::Put(entry, self.vol.clone()), expect)
            .await?
        {
            Reply::Obj(o) => Ok(o),
            _ => unreachable!("put reply"),
        }
    }
}
