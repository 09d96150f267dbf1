//! Reads of object data: one aligned O_DIRECT read per extent touched (for a packed record, the
//! aligned units that hold it), the CRC32C check of
//! every checksum block read, and the object cache (whole small objects, and single blocks).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;

use super::index::Extent;
use super::{Object, Shard};
use crate::buf::{round_down_u64, round_up_u64, AlignedBuf};
use crate::cache;
use crate::error::{Error, Result};

/// Reads spanning at most this many checksum blocks of one extent go through the block cache.
const CACHED_SPAN_MAX_BLOCKS: u64 = 4;
/// Largest single read (guards against absurd caller lengths).
const MAX_READ_BYTES: u64 = 64 << 20;
const _: () = assert!(CACHED_SPAN_MAX_BLOCKS >= 1);

/// Checksum blocks `first..end` of one extent, read into a buffer where block `first` starts at
/// byte `skip`.
pub(super) struct BlockRun {
    first: u64,
    end: u64,
    skip: u64,
    block_bytes: u64,
    /// Data bytes of the extent (its last block may be short).
    ext_len: u64,
}

impl BlockRun {
    /// Where block `b` lies in the buffer.
    #[inline]
    fn range(&self, b: u64) -> Range<usize> {
        let s = self.skip + (b - self.first) * self.block_bytes;
        let e = s + self.block_bytes.min(self.ext_len - b * self.block_bytes);
        s as usize..e as usize
    }
}

/// The pieces of a read, one per extent touched: a list only when there are several.
enum SmallParts {
    None,
    One(Bytes),
    Many(Vec<Bytes>),
}

impl SmallParts {
    fn push(&mut self, b: Bytes) {
        *self = match std::mem::replace(self, SmallParts::None) {
            SmallParts::None => SmallParts::One(b),
            SmallParts::One(a) => SmallParts::Many(vec![a, b]),
            SmallParts::Many(mut v) => {
                v.push(b);
                SmallParts::Many(v)
            }
        };
    }
}

impl Shard {
    /// `Shard::read`: whole small objects through the object cache, every other read through
    /// the block cache (when there is a cache).
    pub(super) async fn read_object(&self, obj: &Object, offset: u64, len: u64) -> Result<Bytes> {
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
        // The common case, a read inside one extent, allocates no list of parts.
        let mut parts: SmallParts = SmallParts::None;
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
        let parts = match parts {
            SmallParts::None => Vec::new(),
            SmallParts::One(b) => return Ok(b),
            SmallParts::Many(v) => v,
        };
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
    pub(super) async fn read_extent(
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
        // A packed record may start and end inside an aligned unit: the read covers the whole
        // units its blocks touch (bytes of neighbouring records or zero padding around them are
        // read and ignored). Those units were written whole, so the file holds them.
        assert!(
            a_hi <= round_up_u64(ext.record_offset + ext.span_bytes, align),
            "read span past the aligned end of the record"
        );
        assert!(a_lo >= round_down_u64(ext.record_offset, align));
        let span = (a_hi - a_lo) as usize;
        let run = BlockRun {
            first: b0,
            end: b1,
            skip: file_lo - a_lo,
            block_bytes: bb,
            ext_len: ext.len,
        };
        // A striped volume: one read of its member, or a decode from the stripe (ADR 19).
        if let Some((files, j)) = &ext.vol.stripe {
            let bytes = self.read_member(ext, files, *j, a_lo, span, &run).await?;
            return Ok(self.finish_read(bytes, &run, cached, ext, lo, hi, a_lo));
        }
        // One read of one copy (the shard's read copy); an I/O error or CRC failure there is
        // retried on the next live copy, and the first copy is marked failed if that one
        // serves (mirror, ADR 19).
        let first = self.read_copy.get();
        let mut copy = first;
        let mut first_err = None;
        let buf = loop {
            let (file, path) = ext.vol.copy_file(copy).expect("read copy exists");
            let checked = self.read_checked(file, path, ext, &run, a_lo, span).await;
            match checked {
                Ok(buf) => {
                    if let Some(e) = first_err {
                        self.mark_copy_failed(first, &e, "read");
                    }
                    break buf;
                }
                Err(e) => {
                    let Some(next) = self.next_read_copy(copy, first) else {
                        return Err(first_err.unwrap_or(e));
                    };
                    tracing::warn!(path = %path.display(), error = %e, "read failed on one copy; retrying another");
                    first_err.get_or_insert(e);
                    copy = next;
                }
            }
        };
        Ok(self.finish_read(buf.into_bytes(), &run, cached, ext, lo, hi, a_lo))
    }

    /// One O_DIRECT read of `[a_lo, a_lo + span)` of `file` into a pooled buffer (no
    /// allocation or zeroing per read; its capacity may exceed the span, so exactly the span
    /// is read through a slice of it), timed and counted, its blocks verified against the
    /// extent's CRCs.
    #[inline]
    pub(super) async fn read_checked(
        &self,
        file: &monoio::fs::File,
        path: &std::path::Path,
        ext: &Extent,
        run: &BlockRun,
        a_lo: u64,
        span: usize,
    ) -> Result<AlignedBuf> {
        let buf = AlignedBuf::for_read(span, self.cfg.align_bytes as usize).slice_mut(0..span);
        let started = std::time::Instant::now();
        let (res, buf) = file.read_exact_at(buf, a_lo).await;
        let mut buf = buf.into_inner();
        let m = &self.meters;
        m.device_read_ns.record(started.elapsed().as_nanos() as u64);
        m.device_read_bytes
            .set(m.device_read_bytes.get() + span as u64);
        res.map_err(|e| Error::io(format!("read {} at {a_lo} len {span}", path.display()), e))?;
        buf.set_len(span);
        self.verify_blocks(ext, buf.as_ref(), run, a_lo)?;
        Ok(buf)
    }

    /// Caches the verified blocks of a read and cuts `[lo, hi)` of the extent out of it.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn finish_read(
        &self,
        bytes: Bytes,
        run: &BlockRun,
        cached: Option<(u64, usize)>,
        ext: &Extent,
        lo: u64,
        hi: u64,
        a_lo: u64,
    ) -> Bytes {
        if let Some((seq, ei)) = cached {
            self.cache_blocks(&bytes, run, seq, ei);
        }
        let s = (ext.data_offset + lo - a_lo) as usize;
        let e = (ext.data_offset + hi - a_lo) as usize;
        Bytes::slice(&bytes, s..e)
    }

    /// Check the CRC32C of every block of `run` in `data` (read from file offset `a_lo`).
    pub(super) fn verify_blocks(
        &self,
        ext: &Extent,
        data: &[u8],
        run: &BlockRun,
        a_lo: u64,
    ) -> Result<()> {
        for b in run.first..run.end {
            let r = run.range(b);
            let got = crc32c::crc32c(&data[r.clone()]);
            let want = ext.crcs.get(b as usize);
            if got != want {
                self.corrupt_reads.set(self.corrupt_reads.get() + 1);
                let context = format!(
                    "{}: record at {} block {} (file offset {}, {} bytes): crc32c {:#010x} != {:#010x}",
                    ext.vol.path.display(),
                    ext.record_offset,
                    b,
                    a_lo + r.start as u64,
                    r.end - r.start,
                    got,
                    want
                );
                tracing::error!(%context, "corrupt read");
                return Err(Error::Corrupt { context });
            }
        }
        Ok(())
    }

    /// Put the blocks of `run` (verified, in `bytes`) into the block cache.
    fn cache_blocks(&self, bytes: &Bytes, run: &BlockRun, seq: u64, ei: usize) {
        if let Some(c) = self.cache.borrow_mut().as_mut() {
            for b in run.first..run.end {
                let r = run.range(b);
                // One block: share the read buffer (it is the block plus alignment slack).
                // Several: copy, so one cached block never pins its neighbours' bytes.
                let block = if run.end - run.first == 1 {
                    Bytes::slice(bytes, r)
                } else {
                    Bytes::copy_from_slice(&bytes[r])
                };
                c.insert(cache::block_key(seq, ei, b), block);
            }
        }
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
}
