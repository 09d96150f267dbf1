//! `PutWriter`: streams one object into the span reserved for its record, computing the
//! per-block CRC32Cs, with at most one write in flight; `finish` hands the record to the
//! committer.

use std::rc::Rc;

use bytes::Bytes;

use super::commit::{Op, PutReq, Reply, Req, VolSync, PACKED_RECORD_MAX_BYTES};
use super::space::{release_writer, Prealloc, VolFile};
use super::{check_meta, now_ms, Object, Shard, MAX_CRC_TABLE_BYTES, MAX_OBJECT_BYTES};
use crate::buf::{round_up, AlignedBuf};
use crate::error::{Error, Result};
use crate::format::{
    self, encode_record_head, encode_record_head_named, encode_record_trailer, ExtentRec,
    MAX_KEY_BYTES, MAX_NS_BYTES, RECORD_HEADER_BYTES, RECORD_VERSION_NAMED,
};
use crate::Expect;

/// Streams one object's data into its reserved span, computing the per-block CRC32Cs.
/// Dropping it without `finish` abandons the write: nothing becomes visible.
///
/// A small object (at most `EngineConfig::pack_max_bytes`) reserves no span: its record is
/// built in memory and handed whole to the committer, which packs the batch's records into one
/// aligned write (FORMAT.md, "Packed records").
pub struct PutWriter {
    shard: Rc<Shard>,
    ns: String,
    key: String,
    seq: u64,
    size_bytes: u64,
    /// Bytes of the record before its data (header; version 1: and names).
    head_bytes: u64,
    /// The record's exact bytes (header, data; version 1: names and trailer).
    raw_bytes: u64,
    /// Version 1 (`EngineConfig::record_version`): names in the record and a CRC trailer.
    named: bool,
    sink: Sink,
    received_bytes: u64,
    crcs: Vec<u32>,
    block_crc: u32,
    block_fill_bytes: u64,
    failed: bool,
    /// The record was handed to the committer: from then on its span may be named by a
    /// journal entry (even when the commit reports an error), so it is never reclaimed here.
    submitted: bool,
    /// `PutWriter::lazy`: the commit may wait for company (`commit::LAZY_COMMIT_WAIT`).
    lazy: bool,
}

/// Where a PUT's record goes.
enum Sink {
    /// Streamed into a span reserved at `put()`.
    Span(SpanWrite),
    /// Built in memory (header and data), placed by the committer.
    Packed(Vec<u8>),
}

/// The state of a record streamed into its reserved span.
struct SpanWrite {
    vol: Rc<VolFile>,
    record_offset: u64,
    span_bytes: u64,
    /// The preallocation of the span, waited for before the first write.
    prealloc: Option<Prealloc>,
    data_offset: u64,
    /// Staging buffer being filled.
    buf: Option<AlignedBuf>,
    buf_capacity_bytes: usize,
    /// The one write in flight (spawned so the caller can fill the next buffer meanwhile).
    inflight: Option<InFlightWrite>,
    /// Record bytes submitted for writing (all of them complete once `inflight` is None).
    written_bytes: u64,
}

struct InFlightWrite {
    handle: monoio::task::JoinHandle<(std::io::Result<()>, AlignedBuf)>,
    pos: u64,
    len_bytes: u64,
}

impl Drop for PutWriter {
    fn drop(&mut self) {
        let Sink::Span(s) = &self.sink else {
            return; // a packed record holds no span until the committer places it
        };
        if !self.submitted {
            // Abandoned (the client went away, a check failed): nothing names this span, so
            // its space goes back now instead of waiting for compaction.
            self.shard.reclaim_abandoned_span(
                &s.vol,
                s.record_offset,
                s.span_bytes,
                s.inflight.is_some(),
            );
        }
        release_writer(&self.shard.vols, s.vol.id);
    }
}

/// Refuse a PUT the format cannot hold: names too long, object or CRC table too large.
fn check_put(ns: &str, key: &str, size_bytes: u64, block_bytes: u32) -> Result<()> {
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
    if format::block_count(size_bytes, block_bytes) * 4 > MAX_CRC_TABLE_BYTES {
        return Err(Error::Invalid(format!(
            "object of {size_bytes} bytes needs more than {MAX_CRC_TABLE_BYTES} bytes of checksums at block_bytes {block_bytes}"
        )));
    }
    Ok(())
}

impl PutWriter {
    /// `Shard::put`: reserve the record's span and stage its header (streamed records), or
    /// start the record in memory (packed records, no span until the group commit).
    pub(super) fn start(
        shard: &Rc<Shard>,
        ns: &str,
        key: &str,
        size_bytes: u64,
    ) -> Result<PutWriter> {
        if shard.closed.get() {
            return Err(Error::Closed);
        }
        let bb = shard.cfg.block_bytes;
        let align = shard.cfg.align_bytes;
        check_put(ns, key, size_bytes, bb)?;
        let packed = size_bytes <= shard.cfg.pack_max_bytes;
        let named = shard.cfg.record_version == RECORD_VERSION_NAMED;
        let raw = if named {
            format::record_raw_bytes_named(ns.len(), key.len(), size_bytes, bb)
        } else {
            format::record_raw_bytes(size_bytes)
        };
        let reserved = if packed {
            None
        } else {
            let span_bytes = format::record_span_bytes(raw, align);
            Some((span_bytes, shard.reserve(span_bytes)?))
        };
        let seq = shard.next_seq.get();
        shard.next_seq.set(seq + 1);
        let mut head;
        if named {
            head = Vec::with_capacity(
                format::RECORD_HEADER_BYTES_NAMED as usize + ns.len() + key.len(),
            );
            encode_record_head_named(&mut head, ns, key, size_bytes, seq, bb);
        } else {
            head = Vec::with_capacity(RECORD_HEADER_BYTES as usize);
            encode_record_head(&mut head, ns, key, size_bytes, seq);
        }
        let head_bytes = head.len() as u64;
        let sink = match reserved {
            None => {
                assert!(
                    raw <= PACKED_RECORD_MAX_BYTES,
                    "packed record of {raw} bytes"
                );
                let mut rec = Vec::with_capacity(raw as usize);
                rec.extend_from_slice(&head);
                Sink::Packed(rec)
            }
            Some((span_bytes, (vol, record_offset, prealloc))) => {
                let data_offset = record_offset + head.len() as u64;
                let buf_bytes =
                    round_up(shard.cfg.write_buffer_bytes, align as usize).min(span_bytes as usize);
                let mut buf = AlignedBuf::new(buf_bytes, align as usize);
                assert!(head.len() < buf.capacity());
                buf.extend_from_slice(&head);
                Sink::Span(SpanWrite {
                    vol,
                    record_offset,
                    span_bytes,
                    prealloc,
                    data_offset,
                    buf: Some(buf),
                    buf_capacity_bytes: buf_bytes,
                    inflight: None,
                    written_bytes: 0,
                })
            }
        };
        Ok(PutWriter {
            shard: shard.clone(),
            ns: ns.to_string(),
            key: key.to_string(),
            seq,
            size_bytes,
            head_bytes,
            raw_bytes: raw,
            named,
            sink,
            received_bytes: 0,
            crcs: Vec::with_capacity(format::block_count(size_bytes, bb).min(1 << 20) as usize),
            block_crc: 0,
            block_fill_bytes: 0,
            failed: false,
            submitted: false,
            lazy: false,
        })
    }

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
        self.checksum(&data);
        let r = match &mut self.sink {
            Sink::Packed(rec) => {
                rec.extend_from_slice(&data);
                Ok(())
            }
            Sink::Span(s) => s.push(&self.shard, &data).await,
        };
        if r.is_err() {
            self.failed = true;
        }
        r.map_err(|e| self.shard.copy_write_failed(e))
    }

    /// Fold `d` into the CRC32Cs of the checksum blocks it fills.
    fn checksum(&mut self, mut d: &[u8]) {
        let bb = self.shard.cfg.block_bytes as u64;
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
    }

    /// The record's trailer (version 1: the CRC table; version 3 has none), once all data is
    /// in.
    fn trailer(&mut self) -> Vec<u8> {
        if self.block_fill_bytes > 0 {
            self.crcs.push(self.block_crc);
            self.block_fill_bytes = 0;
        }
        assert_eq!(
            self.crcs.len() as u64,
            format::block_count(self.size_bytes, self.shard.cfg.block_bytes)
        );
        if !self.named {
            return Vec::new();
        }
        let mut trailer = Vec::with_capacity(8 + 4 * self.crcs.len());
        encode_record_trailer(&mut trailer, &self.crcs);
        trailer
    }

    /// Marks this PUT as one nobody waits on (a cache fill: the caller already answered its
    /// client from the bytes it wrote): its commit may wait up to `LAZY_COMMIT_WAIT` for other
    /// requests to share the sync round, and starts at once when one that is not lazy arrives.
    /// Durability and atomicity are unchanged; only when the sync round starts.
    pub fn lazy(mut self) -> Self {
        self.lazy = true;
        self
    }

    /// Complete the PUT: returns once data and journal entry are durable (group commit); the
    /// object becomes visible at that moment.
    pub async fn finish(mut self, meta: Bytes, expect: Expect) -> Result<Object> {
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
        let trailer = self.trailer();
        let head_bytes = self.head_bytes;
        let mut put = PutReq {
            seq: self.seq,
            mtime_ms: now_ms(),
            ns: std::mem::take(&mut self.ns),
            key: std::mem::take(&mut self.key),
            meta,
            lazy: self.lazy,
            extent: ExtentRec {
                volume_id: 0,
                record_offset: 0,
                data_offset: head_bytes,
                len: self.size_bytes,
                span_bytes: 0,
                block_bytes: self.shard.cfg.block_bytes,
                crcs: std::mem::take(&mut self.crcs).into(),
            },
        };
        type MakeReq = Box<dyn FnOnce(Reply<Object>) -> Req>;
        let make: MakeReq = match &mut self.sink {
            Sink::Packed(rec) => {
                rec.extend_from_slice(&trailer);
                assert_eq!(rec.len() as u64, self.raw_bytes, "packed record length");
                let record = std::mem::take(rec);
                Box::new(move |reply| {
                    Req::Op(Op::PutPacked {
                        put,
                        record,
                        expect,
                        reply,
                    })
                })
            }
            Sink::Span(s) => {
                let written = async {
                    if !trailer.is_empty() {
                        s.push(&self.shard, &trailer).await?;
                    }
                    s.finish(&self.shard).await
                };
                written.await.map_err(|e| self.shard.copy_write_failed(e))?;
                put.extent.volume_id = s.vol.id;
                put.extent.record_offset = s.record_offset;
                put.extent.data_offset = s.data_offset;
                put.extent.span_bytes = s.span_bytes;
                assert_eq!(s.data_offset, s.record_offset + head_bytes);
                let vol = s.vol.clone();
                Box::new(move |reply| {
                    Req::Op(Op::Put {
                        put,
                        sync: VolSync::Before(vol),
                        slot: None,
                        expect,
                        reply,
                    })
                })
            }
        };
        self.submitted = true;
        self.shard.submit(make).await
    }
}

impl SpanWrite {
    async fn push(&mut self, shard: &Shard, mut d: &[u8]) -> Result<()> {
        while !d.is_empty() {
            let buf = self.buf.as_mut().expect("staging buffer present");
            let n = buf.remaining().min(d.len());
            buf.extend_from_slice(&d[..n]);
            d = &d[n..];
            if buf.remaining() == 0 {
                self.flush(shard, false).await?;
            }
        }
        Ok(())
    }

    /// Submit the full staging buffer. At most one write is in flight: the previous one is
    /// awaited first (its buffer becomes the next staging buffer). The last write of a record
    /// is awaited inline.
    async fn flush(&mut self, shard: &Shard, last: bool) -> Result<()> {
        if let Some(p) = self.prealloc.take() {
            p.wait(self.record_offset + self.span_bytes).await?;
        }
        let full = self.buf.take().expect("staging buffer present");
        let n = full.len() as u64;
        assert_eq!(n % shard.cfg.align_bytes as u64, 0, "unaligned flush");
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
            let (res, mut b) = self.vol.write_all_at(full, pos).await;
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
            let handle = monoio::spawn(async move { vol.write_all_at(full, pos).await });
            self.inflight = Some(InFlightWrite {
                handle,
                pos,
                len_bytes: n,
            });
            let align = shard.cfg.align_bytes as usize;
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

    /// Write the padding after the trailer, and wait until the whole span is written.
    async fn finish(&mut self, shard: &Shard) -> Result<()> {
        let align = shard.cfg.align_bytes as usize;
        let buf = self.buf.as_mut().expect("staging buffer present");
        if !buf.is_empty() {
            let padded = round_up(buf.len(), align);
            buf.zero_fill_to(padded);
            self.flush(shard, true).await?;
        }
        self.wait_inflight().await?;
        assert_eq!(
            self.written_bytes, self.span_bytes,
            "record span not fully written"
        );
        Ok(())
    }
}
