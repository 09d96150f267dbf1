//! Recovery: `Shard::open`. Lock the directory, find the volumes, check the journal's tail,
//! load the index snapshot, replay the journal (cutting a torn tail), give back the space no
//! snapshot or journal entry names, then start the committer.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use futures::channel::mpsc;

use super::commit::{committer, Journal, Req, PACKED_RECORD_MAX_BYTES};
use super::index::{Index, Overlay};
use super::space::{vol_path, Epoch, MirrorFile, VolFile, VolState, Vols};
use super::spill::Pager;
use super::{fsync_dir, Object, Shard, JOURNAL_FILE, LOCK_FILE, SNAP_FILE, SNAP_TMP_FILE};
use crate::buf::round_up_u64;
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::format::{self, Entry, JournalScan};
use crate::{sys, EngineConfig};

/// `Shard::open` and `Shard::open_copies`: `dir` is the primary copy (recovered from), each of
/// `mirrors` a copy that gets the same writes (mirror, ADR 19).
pub(super) async fn open(
    dir: &Path,
    mirrors: &[PathBuf],
    copies_wanted: usize,
    stripes: Option<super::stripe::StripeLayout>,
    cfg: EngineConfig,
) -> Result<Rc<Shard>> {
    check_config(&cfg)?;
    let started = Instant::now();
    let mut locks = Vec::with_capacity(mirrors.len());
    for d in std::iter::once(dir).chain(mirrors.iter().map(PathBuf::as_path)) {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::io(format!("create dir {}", d.display()), e))?;
        locks.push(lock_dir(d)?);
        remove_unfinished_snapshot(d);
        start_fresh_directory(d)?;
    }
    let lock = locks.remove(0);
    reconcile_journals(dir, mirrors)?;
    // Stripes first (ADR 19): their files are made to agree with the manifests (and lost ones
    // rebuilt) before the copies' volumes are scanned, which leave striped volumes alone.
    let stripes = stripes.map(super::stripe::Stripes::new).transpose()?;
    let manifests = match &stripes {
        Some(st) => {
            let ms = super::stripe::load_manifests(&st.layout)?;
            super::stripe::reconcile(&st.layout, &ms)?;
            ms
        }
        None => BTreeMap::new(),
    };
    let striped: std::collections::BTreeSet<u32> = manifests
        .values()
        .flat_map(|m| m.members.iter().map(|(id, _)| *id))
        .collect();
    let mut vols = scan_volumes(dir, mirrors, &striped)?;
    if let Some(st) = &stripes {
        for m in manifests.into_values() {
            let files = st.add(m);
            for j in 0..files.manifest.members.len() {
                let vf = super::stripe::member_volume(&files, j)?;
                let id = vf.id;
                let mut vs = VolState::new(vf, files.manifest.members[j].1, true);
                vs.striped = true;
                vols.map.insert(id, vs);
                vols.next_id = vols.next_id.max(id.saturating_add(1));
            }
        }
    }
    let jpath = dir.join(JOURNAL_FILE);
    let (jfile, jimage) = open_journal(&jpath)?;
    let jmirrors = mirrors
        .iter()
        .map(|d| {
            let path = d.join(JOURNAL_FILE);
            let (file, _) = open_journal(&path)?;
            Ok(MirrorFile { path, file })
        })
        .collect::<Result<Vec<_>>>()?;
    let (tx, rx) = mpsc::unbounded();
    let shard = new_shard(dir, cfg, vols, tx, lock)?;
    let shard = {
        let mut s = Rc::try_unwrap(shard).unwrap_or_else(|_| unreachable!("new shard is unshared"));
        s.mirror_dir_files = mirrors
            .iter()
            .map(|d| {
                std::fs::File::open(d)
                    .and_then(monoio::fs::File::from_std)
                    .map_err(|e| Error::io(format!("open dir {}", d.display()), e))
            })
            .collect::<Result<Vec<_>>>()?;
        s.mirror_dirs = mirrors.to_vec();
        s.copies_wanted = copies_wanted;
        s.copy_failed = (0..=mirrors.len()).map(|_| Cell::new(false)).collect();
        s._mirror_locks = locks;
        s.stripes = stripes;
        Rc::new(s)
    };

    // The journal is scanned before the snapshot is trusted or discarded: whether a bad or
    // missing snapshot can be survived depends on the journal still holding every entry.
    let mut scan = format::scan_journal(&jimage);
    check_journal_tail(&scan, &jimage, &jpath)?;
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
    let (applied_lsn, snapshot_bad) = shard.load_snapshot(journal_is_complete)?;
    shard.drop_unwritten_last_batch(&mut scan);
    let (next_lsn, replayed) = shard.replay_journal(scan.entries, applied_lsn);
    if let Some(why) = &scan.tail_error {
        tracing::warn!(dir = %dir.display(), valid_bytes = scan.valid_bytes, file_bytes = jimage.len(), why = %why, "truncating torn journal tail");
        for (f, p) in
            std::iter::once((&jfile, &jpath)).chain(jmirrors.iter().map(|m| (&m.file, &m.path)))
        {
            sys::ftruncate(f, scan.valid_bytes)
                .map_err(|e| Error::io(format!("truncate {}", p.display()), e))?;
            f.sync_all()
                .await
                .map_err(|e| Error::io(format!("fsync {}", p.display()), e))?;
        }
    }
    let jfile = Rc::new(jfile);
    let jmirrors = Rc::new(jmirrors);
    *shard.journal.borrow_mut() = Some(Journal {
        file: jfile.clone(),
        mirrors: jmirrors.clone(),
        len_bytes: scan.valid_bytes,
        next_lsn,
        broken: None,
    });

    let removed = if snapshot_bad {
        tracing::warn!(dir = %dir.display(), "bad snapshot: not reclaiming volume space at this open");
        0
    } else {
        shard.give_back_unnamed_space()?
    };
    // Make the directory entries of a new journal and of removed volumes durable.
    fsync_dir(dir)?;
    for d in mirrors {
        fsync_dir(d)?;
    }
    // Records killed by replayed entries may be punched only once those entries are durable:
    // the previous process may have died between its journal write and its fdatasync.
    super::space::sync_data_copies(&jfile, &jpath, &jmirrors).await?;
    // Nothing is reclaimed at an open that lost its snapshot (see `give_back_unnamed_space`):
    // the drops are only forgotten.
    shard.punch_enabled.set(!snapshot_bad);
    shard.reclaim_dropped_records();
    shard.punch_enabled.set(true);

    tracing::info!(
        dir = %dir.display(),
        mirrors = mirrors.len(),
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

/// Makes the journals of all copies equal before recovery: every copy gets the same bytes at
/// the same offsets, and an entry is acknowledged only once every copy synced it, so where
/// they differ (a crash during an append, or between the copies' trims at a checkpoint, which
/// come after every copy's snapshot was renamed into place) nothing past their common prefix
/// was acknowledged: each copy is cut to that prefix.
fn reconcile_journals(dir: &Path, mirrors: &[PathBuf]) -> Result<()> {
    if mirrors.is_empty() {
        return Ok(());
    }
    let read = |d: &Path| -> Result<Vec<u8>> {
        let p = d.join(JOURNAL_FILE);
        match std::fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(format!("read {}", p.display()), e)),
        }
    };
    let home = read(dir)?;
    let mut images = vec![(dir.to_path_buf(), home)];
    for d in mirrors {
        images.push((d.clone(), read(d)?));
    }
    let first = &images[0].1;
    let common = images[1..].iter().fold(first.len(), |n, (_, img)| {
        n.min(img.len())
            .min(first.iter().zip(img).take_while(|(a, b)| a == b).count())
    });
    for (d, img) in &images {
        if img.len() as u64 > common as u64 {
            let p = d.join(JOURNAL_FILE);
            tracing::warn!(path = %p.display(), file_bytes = img.len(), kept_bytes = common, "the copies' journals differ past this point (never acknowledged): cutting it");
            let f = sys::open_or_create(&p)
                .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
            sys::ftruncate(&f, common as u64)
                .and_then(|()| sys::fsync(&f))
                .map_err(|e| Error::io(format!("truncate {}", p.display()), e))?;
        }
    }
    Ok(())
}

fn check_config(cfg: &EngineConfig) -> Result<()> {
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
    if cfg.pack_max_bytes > crate::MAX_PACK_BYTES {
        return Err(Error::Invalid(format!(
            "pack_max_bytes {} exceeds {}",
            cfg.pack_max_bytes,
            crate::MAX_PACK_BYTES
        )));
    }
    if cfg.record_version != format::RECORD_VERSION
        && cfg.record_version != format::RECORD_VERSION_NAMED
    {
        return Err(Error::Invalid(format!(
            "record_version {} is not one this code writes ({} or {})",
            cfg.record_version,
            format::RECORD_VERSION,
            format::RECORD_VERSION_NAMED
        )));
    }
    if cfg.write_buffer_bytes < 2 * cfg.align_bytes as usize {
        return Err(Error::Invalid(
            "write_buffer_bytes must be >= 2 * align_bytes".into(),
        ));
    }
    Ok(())
}

/// Take the directory's lock file (one shard per directory).
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    let lock_path = dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
    sys::lock_exclusive(&lock).map_err(|e| {
        Error::io(
            format!(
                "lock {} (is another shard using this directory?)",
                lock_path.display()
            ),
            e,
        )
    })?;
    Ok(lock)
}

/// Remove a snapshot that was being written when the previous process stopped (never renamed
/// into place, so never read).
fn remove_unfinished_snapshot(dir: &Path) {
    let tmp = dir.join(SNAP_TMP_FILE);
    if let Err(e) = std::fs::remove_file(&tmp) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %tmp.display(), error = %e, "removing an unfinished snapshot failed");
        }
    }
}

/// A new shard directory (no journal, no snapshot, no volume) gets an empty snapshot before
/// anything else, made durable. Without it, a process killed between creating its first
/// volume and its first journal commit would leave volumes, an empty journal and no
/// snapshot: the same files as a directory whose snapshot was lost after a checkpoint
/// emptied the journal, which `load_snapshot` must refuse. With it, a missing snapshot
/// always means a lost one.
fn start_fresh_directory(dir: &Path) -> Result<()> {
    let mut fresh = true;
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("read dir {}", dir.display()), e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(format!("read dir {}", dir.display()), e))?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if name == JOURNAL_FILE || name == SNAP_FILE || name.starts_with("vol-") {
            fresh = false;
            break;
        }
    }
    if !fresh {
        return Ok(());
    }
    let mut img = Vec::with_capacity(format::SNAPSHOT_EMPTY_BYTES as usize);
    format::encode_snapshot_header(&mut img, 1, 0, 0);
    let crc = crc32c::crc32c(&img);
    img.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(img.len() as u64, format::SNAPSHOT_EMPTY_BYTES);
    let (tmp, fin) = (dir.join(SNAP_TMP_FILE), dir.join(SNAP_FILE));
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&img)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &fin)
    };
    write().map_err(|e| Error::io(format!("write the first snapshot {}", fin.display()), e))?;
    fsync_dir(dir)
}

/// Every `vol-*.dat` of the directory, opened (with its copy in each mirror directory, created
/// empty if missing), sealed, with no records known yet. A mirror's volume the primary does
/// not have is named by nothing (the primary's journal equals the mirror's): it is removed.
fn scan_volumes(
    dir: &Path,
    mirrors: &[PathBuf],
    striped: &std::collections::BTreeSet<u32>,
) -> Result<Vols> {
    let mut vols = Vols {
        map: BTreeMap::new(),
        active: None,
        next_id: 1,
    };
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("read dir {}", dir.display()), e))?;
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
        // A stripe's member: opened from its stripe's position, not as a copy.
        if striped.contains(&id) {
            continue;
        }
        let path = ent.path();
        let f = sys::open_direct(&path, false)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let size_bytes = f
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        let file = monoio::fs::File::from_std(f)
            .map_err(|e| Error::io(format!("register {}", path.display()), e))?;
        let mirror_files = mirrors
            .iter()
            .map(|d| MirrorFile::open_volume(vol_path(d, id)))
            .collect::<Result<Vec<_>>>()?;
        vols.map.insert(
            id,
            VolState::new(
                VolFile {
                    id,
                    path,
                    file,
                    dir_synced: Cell::new(true),
                    mirrors: mirror_files,
                    stripe: None,
                },
                size_bytes,
                true,
            ),
        );
        vols.next_id = vols.next_id.max(id + 1);
    }
    for d in mirrors {
        let rd =
            std::fs::read_dir(d).map_err(|e| Error::io(format!("read dir {}", d.display()), e))?;
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("vol-"))
                .and_then(|s| s.strip_suffix(".dat"))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if !vols.map.contains_key(&id) && !striped.contains(&id) {
                let p = ent.path();
                tracing::warn!(path = %p.display(), "removing a mirror volume the primary copy does not have (named by nothing)");
                std::fs::remove_file(&p)
                    .map_err(|e| Error::io(format!("remove {}", p.display()), e))?;
            }
        }
    }
    Ok(vols)
}

/// Open (creating if missing) the journal; returns it with its whole image.
fn open_journal(jpath: &Path) -> Result<(monoio::fs::File, Vec<u8>)> {
    let jstd = sys::open_or_create(jpath)
        .map_err(|e| Error::io(format!("open {}", jpath.display()), e))?;
    let jimage =
        std::fs::read(jpath).map_err(|e| Error::io(format!("read {}", jpath.display()), e))?;
    let jfile = monoio::fs::File::from_std(jstd)
        .map_err(|e| Error::io(format!("register {}", jpath.display()), e))?;
    Ok((jfile, jimage))
}

/// A shard with an empty index over `vols`; its journal is set once replayed.
fn new_shard(
    dir: &Path,
    cfg: EngineConfig,
    vols: Vols,
    tx: mpsc::UnboundedSender<Req>,
    lock: std::fs::File,
) -> Result<Rc<Shard>> {
    let puncher = crate::punch::Puncher::start(&dir.display().to_string()).map_err(|e| {
        Error::io(
            format!("start the hole-punch thread for {}", dir.display()),
            e,
        )
    })?;
    let offload = crate::offload::Offload::start(&dir.display().to_string()).map_err(|e| {
        Error::io(
            format!("start the blocking-call thread for {}", dir.display()),
            e,
        )
    })?;
    let dir_file = std::fs::File::open(dir)
        .and_then(monoio::fs::File::from_std)
        .map_err(|e| Error::io(format!("open dir {}", dir.display()), e))?;
    let dropped_records = Rc::new(RefCell::new(Vec::new()));
    let pager = Pager::open(dir, cfg.index_memory_bytes)?;
    Ok(Rc::new(Shard {
        dir: dir.to_path_buf(),
        cache: RefCell::new((cfg.cache_bytes > 0).then(|| Cache::new(cfg.cache_bytes))),
        cfg,
        index: RefCell::new(Index::with_pager(pager)),
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
        epoch: RefCell::new(Epoch::new(dropped_records.clone())),
        dropped_records,
        punch_enabled: Cell::new(false),
        puncher,
        offload,
        dir_file,
        mirror_dirs: Vec::new(),
        mirror_dir_files: Vec::new(),
        copies_wanted: 1,
        copy_failed: vec![Cell::new(false)],
        read_copy: Cell::new(0),
        copy_failures: Cell::new(0),
        _mirror_locks: Vec::new(),
        stripes: None,
        reserve_refusals: Cell::new(0),
        meters: super::Meters::new(),
        _lock: lock,
    }))
}

/// Refuse a journal damaged before acknowledged entries; a torn last write is fine (cut later).
fn check_journal_tail(scan: &JournalScan, jimage: &[u8], jpath: &Path) -> Result<()> {
    if scan.tail_error.is_none() {
        return Ok(());
    }
    let bad = scan.valid_bytes as usize;
    let later = format::valid_frame_after(jimage, bad);
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
    Ok(())
}

impl Shard {
    /// Load `index.snap` into the index; returns (its applied LSN, whether it was bad and set
    /// aside). A bad or missing snapshot is fatal unless the journal holds every entry.
    fn load_snapshot(&self, journal_is_complete: bool) -> Result<(u64, bool)> {
        let spath = self.dir.join(SNAP_FILE);
        match std::fs::read(&spath) {
            Ok(img) => match self.load_snapshot_image(&img, &spath)? {
                Ok(head) => {
                    self.next_seq.set(head.next_seq.max(1));
                    Ok((head.applied_lsn, false))
                }
                Err(e) if !journal_is_complete => Err(Error::corrupt(format!(
                    "index snapshot {} is corrupt ({e}) and the journal no longer holds every entry: refusing to \
                     start rather than serve an incomplete index (volumes, journal and snapshot are untouched)",
                    spath.display()
                ))),
                Err(e) => {
                    // Keep the bad file for forensics and reclaim nothing at this open: volumes
                    // the lost snapshot referenced must not look dead and be removed.
                    let keep = self.dir.join("index.snap.bad");
                    if let Err(re) = std::fs::rename(&spath, &keep) {
                        tracing::warn!(path = %spath.display(), error = %re, "setting the bad snapshot aside failed");
                    }
                    tracing::error!(dir = %self.dir.display(), error = %e, kept = %keep.display(), "ignoring bad index snapshot; replaying the whole journal");
                    Ok((0, true))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !journal_is_complete => {
                Err(Error::corrupt(format!(
                    "index snapshot {} is missing and the journal no longer holds every entry: refusing to start \
                     rather than serve an incomplete index (volumes and journal are untouched)",
                    spath.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, false)),
            Err(e) => Err(Error::io(format!("read {}", spath.display()), e)),
        }
    }

    /// Stream the objects of a snapshot image into the empty index. The outer error is fatal
    /// (an object names a missing volume or extents of another size: the index and the volumes
    /// disagree); the inner one says the image is corrupt, and the index is left empty again.
    fn load_snapshot_image(
        &self,
        img: &[u8],
        spath: &Path,
    ) -> Result<std::result::Result<format::SnapshotHead, Error>> {
        let mut load = self.start_load();
        let mut fatal = None;
        let decoded = format::decode_snapshot_each(img, |o| {
            let object = self.snapshot_object(o, spath);
            match object {
                Ok(obj) => {
                    self.load_object(&mut load, &o.ns, &o.key, &obj);
                    Ok(())
                }
                Err(e) => {
                    fatal = Some(e);
                    Err(Error::Invalid("stopped at a fatal error".into()))
                }
            }
        });
        if let Some(e) = fatal {
            return Err(e);
        }
        Ok(match decoded {
            Ok(head) => {
                self.finish_load(load);
                Ok(head)
            }
            Err(e) => {
                if let Err(c) = self.index.borrow_mut().clear() {
                    tracing::warn!(error = %c, "index spill file not emptied");
                }
                Err(e)
            }
        })
    }

    /// The index's object for a snapshot object: its extents resolved against the volumes.
    fn snapshot_object(&self, o: &format::SnapObject, spath: &Path) -> Result<Object> {
        let mut extents = Vec::with_capacity(o.extents.len());
        for e in &o.extents {
            extents.push(self.resolve_extent(e)?);
        }
        if o.size != extents.iter().map(|e| e.len).sum::<u64>() {
            return Err(Error::corrupt(format!(
                "{}: object {}/{} of {} bytes has extents of another size",
                spath.display(),
                o.ns,
                o.key,
                o.size
            )));
        }
        Ok(self.new_object(
            (o.seq, o.mtime_ms, o.size),
            super::Meta::from(o.meta.clone()),
            extents,
        ))
    }

    /// The journal's last batch (from its last entry flagged `ENTRY_BATCH_START`) is the only
    /// one whose packed records may not have reached the disk: their volume was fdatasynced at
    /// the same time as the journal, and the committer starts the next batch's journal write
    /// only after both syncs completed (ADR 22). Verify the record of every entry of that
    /// batch flagged `ENTRY_RECORD_SYNCED_WITH_JOURNAL` (header, names, seq, length, block
    /// CRCs against the entry, trailer CRC); if one fails, none of the batch was acknowledged:
    /// cut the journal at the batch's first entry, as a torn tail. Journals of versions 1 and 2
    /// have no flags: their records were durable before their entries were written.
    fn drop_unwritten_last_batch(&self, scan: &mut JournalScan) {
        let Some(start) = scan
            .frames
            .iter()
            .rposition(|(_, flags)| flags & format::ENTRY_BATCH_START != 0)
        else {
            return;
        };
        // Every copy's record is checked: the batch was acknowledged only if all reached disk.
        let mut files: BTreeMap<u32, Vec<Option<std::fs::File>>> = BTreeMap::new();
        let mut failed = None;
        for i in start..scan.entries.len() {
            if scan.frames[i].1 & format::ENTRY_RECORD_SYNCED_WITH_JOURNAL == 0 {
                continue;
            }
            let (lsn, entry) = &scan.entries[i];
            let Entry::Put {
                seq,
                ns,
                key,
                extent,
                ..
            } = entry
            else {
                failed = Some(format!(
                    "lsn {lsn}: record-synced flag on an entry that is not a Put"
                ));
                break;
            };
            let copies = files.entry(extent.volume_id).or_insert_with(|| {
                let v = self.vols.borrow();
                let Some(vs) = v.map.get(&extent.volume_id) else {
                    return vec![None];
                };
                std::iter::once(&vs.file.path)
                    .chain(vs.file.mirrors.iter().map(|m| &m.path))
                    .map(|p| std::fs::File::open(p).ok())
                    .collect()
            });
            let checked = copies.iter().try_for_each(|file| match file {
                Some(f) => verify_packed_record(f, ns, key, *seq, extent),
                None => Err(format!("volume {} is missing", extent.volume_id)),
            });
            if let Err(why) = checked {
                failed = Some(format!("lsn {lsn} ({ns}/{key}): {why}"));
                break;
            }
        }
        let Some(why) = failed else { return };
        let (at, _) = scan.frames[start];
        tracing::warn!(
            dir = %self.dir.display(),
            first_lsn = scan.entries[start].0,
            entries = scan.entries.len() - start,
            journal_bytes_kept = at,
            why = %why,
            "the journal's last batch names records that did not reach the disk (never acknowledged): dropping the batch"
        );
        scan.entries.truncate(start);
        scan.frames.truncate(start);
        scan.valid_bytes = at;
        scan.tail_error = Some(format!("last batch dropped: {why}"));
    }

    /// Apply the journal entries past `applied_lsn`; returns (next LSN, entries applied).
    fn replay_journal(&self, entries: Vec<(u64, Entry)>, applied_lsn: u64) -> (u64, u64) {
        let mut next_lsn = applied_lsn + 1;
        let mut replayed = 0u64;
        for (lsn, entry) in entries {
            next_lsn = next_lsn.max(lsn + 1);
            self.next_seq.set(self.next_seq.get().max(entry.seq() + 1));
            // Never reuse a volume id some journal entry names, even if that volume is gone: a
            // later replay of the entry must not resolve against a different file.
            let named_max = match &entry {
                Entry::Put { extent, .. } => Some(extent.volume_id),
                Entry::Relocate { moves, .. } => moves.iter().map(|m| m.volume_id).max(),
                _ => None,
            };
            if let Some(id) = named_max {
                let mut v = self.vols.borrow_mut();
                v.next_id = v.next_id.max(id.saturating_add(1));
            }
            if lsn <= applied_lsn {
                continue;
            }
            match self.plan_entry(&Overlay::new(), &entry) {
                Ok(changes) => {
                    self.apply_changes(changes);
                    replayed += 1;
                }
                Err(e) => {
                    tracing::error!(dir = %self.dir.display(), lsn, error = %e, "journal entry cannot be applied; skipped");
                }
            }
        }
        (next_lsn, replayed)
    }

    /// Give back space nothing can name: volumes no snapshot or journal entry mentions hold
    /// only garbage (e.g. an abandoned write), and a volume's tail past the last record named
    /// holds preallocation or unacknowledged bytes. Records named but dead (deleted later in
    /// the journal) stay until compaction, which checkpoints before it unlinks, so a later
    /// replay never meets a missing volume or a record past the end of its file. Not run at an
    /// open that lost its snapshot. Returns the number of volumes removed.
    fn give_back_unnamed_space(&self) -> Result<usize> {
        let dead: Vec<u32> = self
            .vols
            .borrow()
            .map
            .iter()
            .filter(|(_, v)| v.records.is_empty() && v.named_end == 0 && !v.striped)
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            let v = self
                .vols
                .borrow_mut()
                .map
                .remove(id)
                .expect("dead volume registered");
            for p in std::iter::once(&v.file.path).chain(v.file.mirrors.iter().map(|m| &m.path)) {
                std::fs::remove_file(p)
                    .map_err(|e| Error::io(format!("remove {}", p.display()), e))?;
            }
        }
        for v in self.vols.borrow_mut().map.values_mut() {
            // A stripe's member keeps its bytes (its parity covers them).
            if v.striped {
                continue;
            }
            // Every record the index references was resolved (snapshot or journal), so it
            // ends at or before `named_end`. Packed records end anywhere; their last aligned
            // unit was written whole (zero padded) and readers read whole aligned units, so the
            // file keeps it. A file cut inside that unit (a torn tail) is extended with zeros to
            // it instead: the records before the cut read whole, the ones reaching past it fail
            // their CRC.
            let align = self.cfg.align_bytes as u64;
            let keep = round_up_u64(v.named_end, align);
            assert!(
                keep <= round_up_u64(v.end_bytes, align),
                "named record past volume end"
            );
            if keep != v.end_bytes {
                // No record at or past `keep` is named.
                for m in &v.file.mirrors {
                    if let Err(e) = sys::ftruncate(&m.file, keep) {
                        tracing::warn!(path = %m.path.display(), error = %e, keep_bytes = keep, "setting the mirror volume's length failed");
                    }
                }
                match sys::ftruncate(&v.file.file, keep) {
                    Ok(()) => {
                        v.end_bytes = keep;
                        v.allocated_bytes = keep;
                    }
                    Err(e) => {
                        tracing::warn!(path = %v.file.path.display(), error = %e, keep_bytes = keep, "setting the volume's length to its last named record failed")
                    }
                }
            }
        }
        Ok(dead.len())
    }
}

/// Check the packed record an entry names against the entry: read its span (buffered, at open)
/// and compare header (magic, version, CRC), names (version 3: their CRC32C; version 1: the
/// bytes), seq, length, the CRC of every data block, and (version 1) the trailer. Err says
/// what does not match.
fn verify_packed_record(
    file: &std::fs::File,
    ns: &str,
    key: &str,
    seq: u64,
    e: &format::ExtentRec,
) -> std::result::Result<(), String> {
    use std::os::unix::fs::FileExt;
    let head = e
        .data_offset
        .checked_sub(e.record_offset)
        .ok_or("data before its record")?;
    let raw = format::record_raw_bytes_of_extent(head, e.len, e.block_bytes)
        .ok_or_else(|| format!("no record version has a head of {head} bytes"))?;
    if e.span_bytes != format::packed_span_bytes(raw) || e.span_bytes > PACKED_RECORD_MAX_BYTES + 8
    {
        return Err(format!(
            "span of {} bytes for a record of {raw}",
            e.span_bytes
        ));
    }
    let mut buf = vec![0u8; raw as usize];
    file.read_exact_at(&mut buf, e.record_offset)
        .map_err(|err| format!("read {raw} bytes at {}: {err}", e.record_offset))?;
    let h = format::decode_record_header(&buf)?;
    let block_bytes_match = match h.names {
        format::RecordNames::KeyCheck(_) => true,
        format::RecordNames::Inline { block_bytes, .. } => block_bytes == e.block_bytes,
    };
    if h.data_len != e.len
        || h.seq != seq
        || h.head_bytes() != head
        || !block_bytes_match
        || !h.names_match(&buf, ns, key)
    {
        return Err("record header does not match the entry".into());
    }
    let data_at = head as usize;
    let data = &buf[data_at..data_at + e.len as usize];
    let bb = e.block_bytes.max(1) as usize;
    if data.chunks(bb).count() != e.crcs.len()
        || data
            .chunks(bb)
            .zip(e.crcs.iter())
            .any(|(block, crc)| crc32c::crc32c(block) != *crc)
    {
        return Err("data does not match the entry's block CRCs".into());
    }
    if h.version == format::RECORD_VERSION_NAMED {
        let trailer = &buf[data_at + e.len as usize..];
        let (table, crc) = trailer.split_at(trailer.len() - 4);
        if crc32c::crc32c(table).to_le_bytes() != crc[..] {
            return Err("record trailer CRC mismatch".into());
        }
    }
    Ok(())
}
