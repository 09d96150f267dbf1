//! The packer: small PUTs' records (built in memory by `PutWriter`) written back to back into
//! fresh aligned spans of the active volume, one O_DIRECT write per `PACK_WRITE_MAX_BYTES`.
//! The committer calls it at the start of each batch; the records' volume is fdatasynced
//! together with the journal write that names them (ADR 22). Compaction uses `write_packed`
//! for its copies too.

use std::rc::Rc;

use super::commit::{Op, PutReq, Reply, VolSync};
use super::space::{release_writer, PackTail, VolFile, WriterSlot};
use super::{Object, Shard};
use crate::buf::round_up_u64;
use crate::error::{Error, Result};
use crate::format::{
    packed_span_bytes, MAX_KEY_BYTES, MAX_NS_BYTES, PACK_GRANULE_BYTES, RECORD_HEADER_BYTES,
    RECORD_HEADER_BYTES_NAMED,
};
use crate::Expect;

/// Packed records are written in aligned writes of at most this many bytes (a batch's records
/// beyond it go in further writes). Also bounds one write of compaction's packed copies.
pub(super) const PACK_WRITE_MAX_BYTES: u64 = 4 << 20;
/// Largest packed record: a version-1 record (still read and compacted) of an object of
/// `MAX_PACK_BYTES` with the longest names and the largest CRC table (512-byte checksum
/// blocks, the smallest alignment allows). A version-3 record is smaller.
pub(super) const PACKED_RECORD_MAX_BYTES: u64 = crate::MAX_PACK_BYTES
    + RECORD_HEADER_BYTES_NAMED
    + (MAX_NS_BYTES + MAX_KEY_BYTES) as u64
    + 8
    + 4 * (crate::MAX_PACK_BYTES / 512);
const _: () = assert!(crate::MAX_PACK_BYTES + RECORD_HEADER_BYTES <= PACKED_RECORD_MAX_BYTES);
const _: () = assert!(PACKED_RECORD_MAX_BYTES + PACK_GRANULE_BYTES <= PACK_WRITE_MAX_BYTES);

/// A writer slot on the volume of a packed write, released when the last record of the write
/// is committed or refused (compaction must not take the volume before its accounting knows
/// the records).
pub(super) struct PackSlot {
    shard: Rc<Shard>,
    volume_id: u32,
}

impl Drop for PackSlot {
    fn drop(&mut self) {
        release_writer(&self.shard.vols, self.volume_id);
    }
}

/// A packed PUT waiting for the packer: (put, record bytes, expect, reply).
pub(super) type PackedPut = (PutReq, Vec<u8>, Expect, Reply<Object>);

impl Shard {
    /// Write the packed records of one batch back to back into the active volume, in aligned
    /// writes of at most `PACK_WRITE_MAX_BYTES`, each starting on a fresh aligned boundary (a
    /// block holding acknowledged records is never written again). Returns, for each PUT in
    /// order, the `Op::Put` naming its place (its volume to be fdatasynced with the journal), or
    /// None when its write failed (its PUT was answered with the error). Nothing is synced here.
    pub(super) async fn place_packed(self: &Rc<Self>, puts: Vec<PackedPut>) -> Vec<Option<Op>> {
        let mut placed = Vec::with_capacity(puts.len());
        let mut groups: Vec<Vec<PackedPut>> = vec![Vec::new()];
        let mut group_bytes = 0u64;
        for p in puts {
            let span = packed_span_bytes(p.1.len() as u64);
            if group_bytes + span > PACK_WRITE_MAX_BYTES {
                groups.push(Vec::new());
                group_bytes = 0;
            }
            group_bytes += span;
            groups.last_mut().expect("a group").push(p);
        }
        for group in groups {
            self.place_group(group, &mut placed).await;
        }
        placed
    }

    /// One packed write; its records become `Op::Put`s in `placed` (None each if it failed).
    async fn place_group(self: &Rc<Self>, group: Vec<PackedPut>, placed: &mut Vec<Option<Op>>) {
        if group.is_empty() {
            return;
        }
        let records: Vec<&[u8]> = group.iter().map(|g| g.1.as_slice()).collect();
        match self.write_packed(&records).await {
            Ok((vol, offsets, slot)) => {
                // The slot passes to the records: released when the last one is committed.
                let volume_id = slot.volume_id;
                std::mem::forget(slot);
                let slot = Rc::new(PackSlot {
                    shard: self.clone(),
                    volume_id,
                });
                for ((mut put, record, expect, reply), off) in group.into_iter().zip(offsets) {
                    put.extent.volume_id = vol.id;
                    put.extent.record_offset = off;
                    put.extent.data_offset += off;
                    put.extent.span_bytes = packed_span_bytes(record.len() as u64);
                    placed.push(Some(Op::Put {
                        put,
                        sync: VolSync::WithJournal(vol.clone()),
                        slot: Some(slot.clone()),
                        expect,
                        reply,
                    }));
                }
            }
            Err(e) => {
                let e = self.copy_write_failed(e);
                tracing::warn!(dir = %self.dir.display(), records = group.len(), error = %e, "packed write failed");
                for (_, _, _, reply) in group {
                    let _ = reply.send(Err(e.duplicate()));
                    placed.push(None);
                }
            }
        }
    }

    /// Write `records` back to back (each at a multiple of `PACK_GRANULE_BYTES`, zeros between
    /// them and after the last up to the alignment) in one O_DIRECT write into the active
    /// volume: continuing the partly filled last unit of the previous packed write when
    /// nothing was reserved after it (that unit is written again with its bytes so far
    /// unchanged, then these records; ADR 25), else at a freshly reserved aligned span.
    /// Returns the volume, each record's offset, and the writer slot, which keeps compaction
    /// off the volume until the caller committed.
    pub(super) async fn write_packed(
        &self,
        records: &[&[u8]],
    ) -> Result<(Rc<VolFile>, Vec<u64>, WriterSlot<'_>)> {
        assert!(!records.is_empty());
        let align = self.cfg.align_bytes as u64;
        let mut rel = Vec::with_capacity(records.len());
        let mut total = 0u64;
        for r in records {
            assert!(!r.is_empty() && r.len() as u64 <= PACKED_RECORD_MAX_BYTES);
            rel.push(total);
            total += packed_span_bytes(r.len() as u64);
        }
        let span = self.reserve_packed(total)?;
        let (vol, off) = (span.vol.clone(), span.offset);
        let slot = WriterSlot {
            vols: &self.vols,
            volume_id: vol.id,
        };
        assert_eq!(off % align, 0, "packed write not aligned");
        let mut tail_bytes = span.tail;
        let fill = tail_bytes.len() as u64;
        assert!(fill < align && fill.is_multiple_of(PACK_GRANULE_BYTES));
        let used_bytes = fill + total;
        let span_bytes = round_up_u64(used_bytes, align);
        assert!(span_bytes <= PACK_WRITE_MAX_BYTES + 2 * align);
        let mut buf = self.take_pack_buf(&vol, span_bytes as usize);
        buf.extend_from_slice(&tail_bytes);
        for (r, at) in records.iter().zip(&rel) {
            buf.zero_fill_to((fill + at) as usize);
            buf.extend_from_slice(r);
        }
        buf.zero_fill_to(span_bytes as usize);
        assert_eq!(buf.len() as u64, span_bytes);
        let written = async {
            if let Some(p) = span.prealloc {
                p.wait(off + span_bytes).await?;
            }
            let (res, buf) = vol.write_all_at(buf, off).await;
            res.map_err(|e| {
                Error::io(
                    format!("write {} at {off} len {span_bytes}", vol.path.display()),
                    e,
                )
            })?;
            Ok::<_, Error>(buf)
        }
        .await;
        let buf = match written {
            Ok(buf) => buf,
            Err(e) => {
                // Nothing names the reserved span: give it back (nothing of it is in flight any
                // more). A continued unit is not continued again (its old records' bytes are
                // unchanged either way).
                if span.reserved_bytes > 0 {
                    let at = off + span_bytes - span.reserved_bytes;
                    self.reclaim_abandoned_span(&vol, at, span.reserved_bytes, false);
                }
                return Err(e);
            }
        };
        let last_fill = used_bytes % align;
        if last_fill != 0 {
            let unit_offset = off + span_bytes - align;
            let from = (span_bytes - align) as usize;
            // The previous tail's bytes (one unit's room, kept from write to write).
            tail_bytes.clear();
            tail_bytes.reserve_exact(align as usize);
            tail_bytes.extend_from_slice(&buf.as_ref()[from..from + last_fill as usize]);
            self.set_pack_tail(
                &vol,
                PackTail {
                    unit_offset,
                    bytes: tail_bytes,
                },
            );
        }
        self.keep_pack_buf(&vol, buf);
        let off = off + fill;
        let offsets = rel.into_iter().map(|r| off + r).collect();
        Ok((vol, offsets, slot))
    }
}
