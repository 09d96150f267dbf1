//! Background upkeep: compaction (copying the live records out of volumes that are mostly
//! garbage, then unlinking them), scrubbing (re-checking every block's CRC32C), and the chunked
//! walk of the index they share with checkpoints.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use super::commit::{Op, Req, MAX_BATCH_REQUESTS, PACKED_RECORD_MAX_BYTES, PACK_WRITE_MAX_BYTES};
use super::index::Extent;
use super::space::{VolFile, WriterSlot};
use super::{yield_now, CompactStats, Object, ScrubStats, Shard, CHUNK_BYTES};
use crate::buf::{round_down_u64, round_up_u64, AlignedBuf};
use crate::error::{Error, Result};
use crate::format::{
    self, decode_record_header, encode_record_head, packed_span_bytes, Move, RecordNames,
    RECORD_HEADER_BYTES,
};

/// Compaction waits for its relocation commits after this many (one group commit for all).
const COMPACT_COMMIT_GROUP: usize = 256;
const _: () = assert!(COMPACT_COMMIT_GROUP <= MAX_BATCH_REQUESTS);
/// Objects the scrubber holds at a time.
const SCRUB_CHUNK_OBJECTS: usize = 64;
/// Objects visited per step of `walk_index` (between yields).
const WALK_CHUNK_OBJECTS: usize = 4096;

/// Records read for one packed write of compaction: (record bytes, old offset, references).
#[derive(Default)]
struct PackGroup {
    records: Vec<(Vec<u8>, u64, Vec<RecordRef>)>,
    /// Sum of the records' packed spans.
    bytes: u64,
}

/// An object referencing a record: (ns, key, object seq, extent index, extent).
type RecordRef = (String, String, u64, u32, Extent);
/// The records of one volume still referenced, by record offset, with their references.
type RecordRefs = BTreeMap<u64, Vec<RecordRef>>;

/// A position in a walk of the index in (ns, key) order: after the object it names.
#[derive(Default)]
pub(super) struct IndexCursor(Option<(String, String)>);

impl IndexCursor {
    /// Visit the objects after the cursor in order until `f` answers false (the cursor then
    /// stays on that object, and false is returned) or the index ends (true).
    pub(super) fn step(
        &mut self,
        shard: &Shard,
        mut f: impl FnMut(&str, &str, &Object) -> bool,
    ) -> bool {
        let idx = shard.index.borrow();
        let vols = shard.vols.borrow();
        let hold = shard.hold();
        let mut stop = None;
        let ns_start = self.0.as_ref().map(|c| c.0.as_str()).unwrap_or("");
        'walk: for (ns, m) in idx.spaces_from(ns_start) {
            let lo = match &self.0 {
                Some((cns, ck)) if cns == ns => Bound::Excluded(ck.as_str()),
                _ => Bound::Unbounded,
            };
            for (k, s) in m.range(lo, idx.pager()) {
                if !f(ns, k, &idx.handle(s, &vols, &hold)) {
                    stop = Some((ns.clone(), k.to_string()));
                    break 'walk;
                }
            }
        }
        drop((idx, vols));
        shard.trim_index();
        match stop {
            Some(c) => {
                self.0 = Some(c);
                false
            }
            None => true,
        }
    }
}

/// Wait for queued relocations; one whose object changed meanwhile is fine (not moved).
async fn wait_relocations(pending: &mut Vec<oneshot::Receiver<Result<()>>>) -> Result<()> {
    for rx in pending.drain(..) {
        match rx.await.map_err(|_| Error::Closed)? {
            Ok(()) | Err(Error::PreconditionFailed) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sleep as long as needed to keep `bytes_checked` since `started` under `max_bytes_per_s`
/// (0 = unlimited: just yield).
async fn pace(bytes_checked: u64, max_bytes_per_s: u64, started: Instant) {
    if max_bytes_per_s > 0 {
        let due = Duration::from_secs_f64(bytes_checked as f64 / max_bytes_per_s as f64);
        let elapsed = started.elapsed();
        if due > elapsed {
            monoio::time::sleep(due - elapsed).await;
        }
    } else {
        yield_now().await;
    }
}

impl Shard {
    /// Visit every object in (ns, key) order, a chunk at a time, yielding between chunks (the
    /// index may change in between; callers tolerate that).
    async fn walk_index(&self, mut f: impl FnMut(&str, &str, &Object)) {
        let mut cursor = IndexCursor::default();
        loop {
            let mut n = 0usize;
            let done = cursor.step(self, |ns, k, o| {
                f(ns, k, o);
                n += 1;
                n < WALK_CHUNK_OBJECTS
            });
            if done {
                break;
            }
            yield_now().await;
        }
    }

    /// `Shard::compact`, once the compaction flag is taken.
    pub(super) async fn compact_inner(
        &self,
        min_garbage_ratio: f64,
        stats: &mut CompactStats,
    ) -> Result<()> {
        // Dead records readers let go of since the last commit.
        self.reclaim_dropped_records();
        // Records found referenced by the walk stay readable for the whole pass even if their
        // objects go meanwhile (ADR 17: records dying after this are not punched until then).
        let _hold = self.hold();
        let victims = self.pick_victims(min_garbage_ratio);
        let mut refs_by_victim = self.records_referenced(&victims).await;
        let mut processed = Vec::with_capacity(victims.len());
        for vid in victims {
            processed.push(vid);
            if self.closed.get() {
                return Err(Error::Closed);
            }
            let by_record = refs_by_victim.remove(&vid).unwrap_or_default();
            if !self.move_records(by_record, stats).await? {
                break;
            }
        }
        self.remove_emptied(&processed, stats).await?;
        // Stripes (ADR 19) after the plain volumes: their moves fill the open volume too.
        if !stats.stopped_no_space {
            self.compact_stripes(min_garbage_ratio, stats).await?;
        }
        Ok(())
    }

    /// Sealed volumes with more garbage than `min_garbage_ratio`, emptiest first: a fully dead
    /// volume needs no copy (no free space) to be removed, and the least live data frees the
    /// most space per byte copied.
    fn pick_victims(&self, min_garbage_ratio: f64) -> Vec<u32> {
        let vols = self.vols.borrow();
        let mut victims: Vec<(u64, u32)> = vols
            .map
            .iter()
            .filter(|(id, v)| {
                v.sealed
                    && !v.striped
                    && vols.active != Some(**id)
                    && v.writers == 0
                    && v.end_bytes > 0
                    && (1.0 - v.live_bytes as f64 / v.end_bytes as f64) > min_garbage_ratio
            })
            .map(|(id, v)| (v.live_bytes, *id))
            .collect();
        victims.sort_unstable();
        victims.into_iter().map(|(_, id)| id).collect()
    }

    /// Records of the victims still referenced, with the objects referencing them: one walk
    /// of the index in chunks, yielding between chunks so foreground work is not stalled.
    pub(super) async fn records_referenced(&self, victims: &[u32]) -> BTreeMap<u32, RecordRefs> {
        let victim_set: HashSet<u32> = victims.iter().copied().collect();
        let mut refs_by_victim: BTreeMap<u32, RecordRefs> = BTreeMap::new();
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
        refs_by_victim
    }

    /// Copy the referenced records of one victim into the active volume and commit their
    /// relocations. Small records (and every packed one) are packed densely: read whole, then
    /// written back to back in aligned writes of at most `PACK_WRITE_MAX_BYTES` (so records
    /// written one per aligned unit, e.g. at c=1 or by format 1, become dense); larger ones are
    /// copied verbatim in chunks. Relocations are committed in groups (one group commit, one
    /// volume sync per group); copies of a group's records are written before its entries are
    /// queued. False when copying stopped because there is no room above the reserve.
    pub(super) async fn move_records(
        &self,
        by_record: RecordRefs,
        stats: &mut CompactStats,
    ) -> Result<bool> {
        let mut pending: Vec<oneshot::Receiver<Result<()>>> = Vec::new();
        let mut slots: Vec<WriterSlot<'_>> = Vec::new();
        let mut pack = PackGroup::default();
        let n_records = by_record.len();
        for (i, (rec_off, refs)) in by_record.into_iter().enumerate() {
            let src = refs[0].4.clone();
            let last = i + 1 == n_records;
            let moved = match self.packable_bytes(&src) {
                Some(raw) => {
                    let record = self.read_record(&src, raw).await?;
                    let mut r = Ok(());
                    if pack.bytes + packed_span_bytes(raw) > PACK_WRITE_MAX_BYTES {
                        r = self
                            .flush_pack(&mut pack, &mut pending, &mut slots, stats)
                            .await;
                    }
                    pack.bytes += packed_span_bytes(raw);
                    pack.records.push((record, rec_off, refs));
                    r
                }
                None => {
                    self.move_streamed(&src, rec_off, refs, &mut pending, &mut slots, stats)
                        .await
                }
            };
            let moved = match moved {
                Ok(()) if pending.len() + pack.records.len() >= COMPACT_COMMIT_GROUP || last => {
                    self.flush_pack(&mut pack, &mut pending, &mut slots, stats)
                        .await
                }
                r => r,
            };
            match moved {
                Ok(()) => {}
                Err(Error::NoSpace { context }) => {
                    // No room above the reserve to copy into: finish what was copied, then
                    // still remove the volumes that are already empty (that needs no space).
                    tracing::warn!(dir = %self.dir.display(), %context, "compaction stopped: no free space above the reserve to copy into");
                    stats.stopped_no_space = true;
                    wait_relocations(&mut pending).await?;
                    slots.clear();
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
            if pending.len() >= COMPACT_COMMIT_GROUP || last {
                wait_relocations(&mut pending).await?;
                slots.clear();
            }
            yield_now().await;
        }
        Ok(true)
    }

    /// The exact bytes of `src`'s record when compaction packs it: a small object (at most
    /// `pack_max_bytes`) or a record that is already packed (not aligned). None: copy verbatim.
    /// The record's version comes from its head length (io/FORMAT.md, "Volume record").
    fn packable_bytes(&self, src: &Extent) -> Option<u64> {
        let align = self.cfg.align_bytes as u64;
        let raw = format::record_raw_bytes_of_extent(
            src.data_offset - src.record_offset,
            src.len,
            src.block_bytes,
        )?;
        assert!(raw <= src.span_bytes, "record bytes beyond its span");
        let packed =
            !src.record_offset.is_multiple_of(align) || !src.span_bytes.is_multiple_of(align);
        if packed {
            assert!(
                raw <= PACKED_RECORD_MAX_BYTES,
                "packed record of {raw} bytes"
            );
        }
        (packed || (src.len <= self.cfg.pack_max_bytes && raw <= PACKED_RECORD_MAX_BYTES))
            .then_some(raw)
    }

    /// Read one record's exact `raw_bytes` (one aligned read of the units holding it), check
    /// its header against the extent, and return it in the version written: a version-3
    /// record as it is, a version-1 record rewritten as version 3 (same seq and data; its
    /// names become their key check, its trailer is dropped: the index holds the CRCs).
    async fn read_record(&self, src: &Extent, raw_bytes: u64) -> Result<Vec<u8>> {
        let align = self.cfg.align_bytes as u64;
        let a_lo = round_down_u64(src.record_offset, align);
        let a_hi = round_up_u64(src.record_offset + raw_bytes, align);
        let n = (a_hi - a_lo) as usize;
        let (res, mut b) = src
            .vol
            .file
            .read_exact_at(AlignedBuf::new(n, align as usize), a_lo)
            .await;
        res.map_err(|e| {
            Error::io(
                format!("read {} at {a_lo} len {n}", src.vol.path.display()),
                e,
            )
        })?;
        b.set_len(n);
        let skip = (src.record_offset - a_lo) as usize;
        let rec = &b.as_ref()[skip..skip + raw_bytes as usize];
        let corrupt = |why: &str| {
            Error::corrupt(format!(
                "{}: record at {}: {why}",
                src.vol.path.display(),
                src.record_offset
            ))
        };
        let h = decode_record_header(rec).map_err(|why| corrupt(&why))?;
        let head = src.data_offset - src.record_offset;
        if h.head_bytes() != head || h.data_len != src.len {
            return Err(corrupt("header does not match the index's extent"));
        }
        let data = &rec[head as usize..(head + src.len) as usize];
        match h.names {
            RecordNames::KeyCheck(_) => Ok(rec.to_vec()),
            RecordNames::Inline {
                ns_len, key_len, ..
            } => {
                let at = format::RECORD_HEADER_BYTES_NAMED as usize;
                let names = &rec[at..at + ns_len as usize + key_len as usize];
                let (ns, key) = names.split_at(ns_len as usize);
                let (Ok(ns), Ok(key)) = (std::str::from_utf8(ns), std::str::from_utf8(key)) else {
                    return Err(corrupt("names are not UTF-8"));
                };
                let mut out = Vec::with_capacity(format::record_raw_bytes(src.len) as usize);
                encode_record_head(&mut out, ns, key, src.len, h.seq);
                out.extend_from_slice(data);
                Ok(out)
            }
        }
    }

    /// Write the records gathered in `pack` in one packed write and queue their relocations.
    async fn flush_pack<'a>(
        &'a self,
        pack: &mut PackGroup,
        pending: &mut Vec<oneshot::Receiver<Result<()>>>,
        slots: &mut Vec<WriterSlot<'a>>,
        stats: &mut CompactStats,
    ) -> Result<()> {
        if pack.records.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(pack);
        let records: Vec<&[u8]> = group.records.iter().map(|r| r.0.as_slice()).collect();
        let (dst, offsets, slot) = self.write_packed(&records).await?;
        slots.push(slot);
        for ((record, _, refs), dst_off) in group.records.into_iter().zip(offsets) {
            let span_bytes = packed_span_bytes(record.len() as u64);
            stats.records_moved += 1;
            stats.bytes_moved += span_bytes;
            let copy = (dst_off, RECORD_HEADER_BYTES, span_bytes);
            self.queue_relocations(refs, &dst, copy, pending)?;
        }
        Ok(())
    }

    /// Copy one large record verbatim (span unchanged) and queue its relocations.
    async fn move_streamed<'a>(
        &'a self,
        src: &Extent,
        rec_off: u64,
        refs: Vec<RecordRef>,
        pending: &mut Vec<oneshot::Receiver<Result<()>>>,
        slots: &mut Vec<WriterSlot<'a>>,
        stats: &mut CompactStats,
    ) -> Result<()> {
        let span = src.span_bytes;
        let (dst, dst_off, prealloc) = self.reserve(span)?;
        slots.push(WriterSlot {
            vols: &self.vols,
            volume_id: dst.id,
        });
        if let Some(p) = prealloc {
            p.wait(dst_off + span).await?;
        }
        self.copy_record(src, &dst, dst_off).await?;
        stats.records_moved += 1;
        stats.bytes_moved += span;
        let head = src.data_offset - rec_off;
        self.queue_relocations(refs, &dst, (dst_off, head, span), pending)
    }

    /// Queue the relocation of every object referencing a record to its copy in `dst`:
    /// `(offset, head bytes, span bytes)` of the copy (a packed copy is of version 3, whose
    /// head may be shorter than the original's).
    fn queue_relocations(
        &self,
        refs: Vec<RecordRef>,
        dst: &Rc<VolFile>,
        (dst_off, head_bytes, span_bytes): (u64, u64, u64),
        pending: &mut Vec<oneshot::Receiver<Result<()>>>,
    ) -> Result<()> {
        for (ns, key, seq, idx, _) in refs {
            let moves = vec![Move {
                extent_index: idx,
                volume_id: dst.id,
                record_offset: dst_off,
                data_offset: dst_off + head_bytes,
                span_bytes,
            }];
            let vol = dst.clone();
            pending.push(self.enqueue(|reply| {
                Req::Op(Op::Relocate {
                    seq,
                    ns,
                    key,
                    moves,
                    vol,
                    reply,
                })
            })?);
        }
        Ok(())
    }

    /// Unlink the processed volumes no longer referenced. Checkpoint first so no journal entry
    /// (which replay would resolve against the volume) refers to them.
    async fn remove_emptied(&self, processed: &[u32], stats: &mut CompactStats) -> Result<()> {
        let empty = |s: &Self| -> Vec<u32> {
            let vols = s.vols.borrow();
            processed
                .iter()
                .copied()
                .filter(|id| {
                    // A victim encoded into a stripe meanwhile (encoding runs between this
                    // pass's moves) is a stripe member now: only stripe compaction removes it.
                    vols.map
                        .get(id)
                        .is_some_and(|v| v.records.is_empty() && v.writers == 0 && !v.striped)
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
            for p in std::iter::once(&v.file.path).chain(v.file.mirrors.iter().map(|m| &m.path)) {
                monoio::fs::remove_file(p)
                    .await
                    .map_err(|e| Error::io(format!("remove {}", p.display()), e))?;
            }
            stats.volumes_compacted += 1;
            stats.bytes_reclaimed += v.end_bytes;
            tracing::info!(path = %v.file.path.display(), reclaimed_bytes = v.end_bytes, "volume compacted");
        }
        self.sync_dir().await
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
            let (res, b) = dst.write_all_at(b, to).await;
            res.map_err(|e| Error::io(format!("write {} at {to} len {n}", dst.path.display()), e))?;
            buf = b;
            done += n as u64;
            yield_now().await;
        }
        Ok(())
    }

    /// `Shard::scrub`: every object the index holds at the start, one at a time.
    pub(super) async fn scrub_objects(&self, max_bytes_per_s: u64) -> Result<ScrubStats> {
        let mut stats = ScrubStats::default();
        let started = Instant::now();
        // A chunk of objects at a time: held only while they are checked (a held `Object`
        // delays the punching of records that die meanwhile), then the walk goes on after the
        // last one (objects deleted meanwhile are skipped, new ones are checked too).
        let mut cursor = IndexCursor::default();
        loop {
            let mut objs: Vec<Object> = Vec::with_capacity(SCRUB_CHUNK_OBJECTS);
            let done = cursor.step(self, |_, _, o| {
                objs.push(o.clone());
                objs.len() < SCRUB_CHUNK_OBJECTS
            });
            for o in objs {
                let mut bad = false;
                for ext in o.extents.iter() {
                    bad = self
                        .scrub_extent(ext, &mut stats, max_bytes_per_s, started)
                        .await?;
                    if bad {
                        break;
                    }
                }
                stats.objects_checked += 1;
                if bad {
                    stats.corrupt_objects += 1;
                }
                self.meters.bg(|b| {
                    b.scrub_objects_checked += 1;
                    b.scrub_corrupt_objects += u64::from(bad);
                });
            }
            if done {
                break;
            }
        }
        Ok(stats)
    }

    /// Verify one extent a chunk at a time, paced; true at the first corrupt block.
    async fn scrub_extent(
        &self,
        ext: &Extent,
        stats: &mut ScrubStats,
        max_bytes_per_s: u64,
        started: Instant,
    ) -> Result<bool> {
        let step = (CHUNK_BYTES / ext.block_bytes as u64).max(1) * ext.block_bytes as u64;
        let mut lo = 0u64;
        while lo < ext.len {
            let hi = (lo + step).min(ext.len);
            let bad = match self.read_extent(ext, lo, hi, None).await {
                Ok(_) => false,
                Err(Error::Corrupt { .. }) => true,
                Err(e) => return Err(e),
            };
            stats.bytes_checked += hi - lo;
            self.meters.bg(|b| b.scrub_bytes_checked += hi - lo);
            lo = hi;
            pace(stats.bytes_checked, max_bytes_per_s, started).await;
            if bad {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
