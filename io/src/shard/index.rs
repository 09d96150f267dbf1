//! The in-memory index (ADR 17): objects by (namespace, key) in compact form, the extents they
//! are made of, planning what a journal entry changes, applying changes (with the per-volume
//! live-record and snapshot size accounting), and listing.
//!
//! Per object the index keeps the key's bytes and a 64-byte `Slot` in a `KeyMap` block, and
//! the object's metadata (plus its CRC table when it has more than one block) in a shared
//! arena of `Bytes` chunks. Objects of several extents (multipart) keep their extents in a
//! side table. `get` builds an `Object` handle from these by value, without allocating.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::rc::Rc;

use bytes::Bytes;

use super::keys::KeyMap;
use super::meta::{self, Dict, Meta};
use super::space::{DroppedRecord, Epoch, RecTable, VolFile, Vols};
use super::{Extents, ListItem, Object, Shard};
use crate::error::{Error, Result};
use crate::format::{self, block_count, Entry, ExtentRec, Move};

/// One planned index change: (ns, key, the new object or None to remove the key).
pub(super) type Change = (String, String, Option<Object>);
/// Changes planned earlier in the same batch, by key (they see each other before applying).
pub(super) type Overlay = HashMap<(String, String), Option<Object>>;

/// The CRC32C table of one extent (one CRC per checksum block).
#[derive(Debug, Clone)]
pub(crate) enum Crcs {
    /// At most one block (`n` is 0 or 1): its CRC, inline.
    Inline { n: u8, crc: u32 },
    /// Little-endian CRCs: a slice of the index's arena.
    Arena(Bytes),
    /// As decoded from a journal entry or the snapshot.
    Owned(Rc<[u32]>),
}

impl Crcs {
    pub(super) fn len(&self) -> usize {
        match self {
            Crcs::Inline { n, .. } => *n as usize,
            Crcs::Arena(b) => b.len() / 4,
            Crcs::Owned(v) => v.len(),
        }
    }

    /// The CRC of block `i` (panics past the end, like a slice).
    pub(super) fn get(&self, i: usize) -> u32 {
        match self {
            Crcs::Inline { n, crc } => {
                assert!(i < *n as usize, "block {i} of a {n}-block extent");
                *crc
            }
            Crcs::Arena(b) => {
                let w = &b[4 * i..4 * i + 4];
                u32::from_le_bytes([w[0], w[1], w[2], w[3]])
            }
            Crcs::Owned(v) => v[i],
        }
    }

    pub(super) fn to_rc(&self) -> Rc<[u32]> {
        match self {
            Crcs::Owned(v) => v.clone(),
            _ => (0..self.len()).map(|i| self.get(i)).collect(),
        }
    }
}

/// One contiguous run of an object's data: the whole data of one record.
#[derive(Debug, Clone)]
pub(crate) struct Extent {
    pub(super) vol: Rc<VolFile>,
    pub(super) record_offset: u64,
    pub(super) data_offset: u64,
    pub(super) len: u64,
    pub(super) span_bytes: u64,
    pub(super) block_bytes: u32,
    pub(super) crcs: Crcs,
}

impl Extent {
    pub(super) fn to_rec(&self) -> ExtentRec {
        ExtentRec {
            volume_id: self.vol.id,
            record_offset: self.record_offset,
            data_offset: self.data_offset,
            len: self.len,
            span_bytes: self.span_bytes,
            block_bytes: self.block_bytes,
            crcs: self.crcs.to_rc(),
        }
    }
}

/// `Slot::vol` of an object whose extents are in the side table (`Index::spill`).
const SPILL_VOL: u32 = u32::MAX;
/// `Slot::chunk` of an object with nothing in the arena.
const NO_CHUNK: u32 = u32::MAX;
/// `Slot::chunk` of an object whose metadata is a template's run of `RUN_BYTES` packed bytes
/// kept in `Index::runs` (at `Slot::offset`), with nothing in the arena (ADR 21).
const RUN_SLAB: u32 = u32::MAX - 1;
/// Packed run of a slab entry: a 128-bit digest (an MD5 in hex).
const RUN_BYTES: usize = 16;

/// Fixed-size runs of templated metadata, one entry per object that has nothing else in the
/// arena (one checksum block): no per-batch chunk, no arena slack. Grows by an eighth; freed
/// entries are reused (the slab does not shrink).
#[derive(Default)]
struct Runs {
    slab: Vec<[u8; RUN_BYTES]>,
    free: Vec<u32>,
}

impl Runs {
    fn put(&mut self, run: &[u8]) -> u32 {
        let mut r = [0u8; RUN_BYTES];
        r.copy_from_slice(run);
        if let Some(i) = self.free.pop() {
            self.slab[i as usize] = r;
            return i;
        }
        if self.slab.len() == self.slab.capacity() {
            self.slab.reserve_exact(self.slab.len() / 8 + 64);
        }
        self.slab.push(r);
        u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 objects per shard")
    }

    fn get(&self, i: u32) -> &[u8] {
        &self.slab[i as usize]
    }

    fn release(&mut self, i: u32) {
        self.free.push(i);
    }
}

/// What the index keeps per object (64 bytes). A single-extent object is described in full;
/// a spilled one (`vol == SPILL_VOL`) names its extents' entry in the side table instead.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    seq: u64,
    mtime_ms: u64,
    size: u64,
    /// Offset of the record; for a spilled object, its index in `Index::spill`.
    record_offset: u64,
    vol: u32,
    /// `data_offset - record_offset`.
    head_bytes: u32,
    /// `span_bytes - head_bytes - size`.
    tail_bytes: u32,
    /// The CRC of the only block (objects of at most one block).
    crc: u32,
    /// Arena piece: the metadata (verbatim, or a template's packed run), then (more than one
    /// block) the CRC table, little-endian.
    chunk: u32,
    offset: u32,
    /// `TEMPLATED | template id` (ADR 21), or the length of verbatim metadata.
    meta: u32,
    block_bytes: u32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

impl Slot {
    fn spilled(&self) -> bool {
        self.vol == SPILL_VOL
    }

    /// CRCs of a single-extent object.
    fn n_crcs(&self) -> u64 {
        assert!(!self.spilled());
        block_count(self.size, self.block_bytes)
    }

    /// The template of its metadata, when it has one.
    fn template(&self) -> Option<u32> {
        (self.meta & TEMPLATED != 0).then_some(self.meta & !TEMPLATED)
    }

    /// Bytes of its CRC table in the arena.
    fn crc_bytes(&self) -> u32 {
        if !self.spilled() && self.n_crcs() > 1 {
            4 * self.n_crcs() as u32
        } else {
            0
        }
    }
}

/// `Slot::meta` of templated metadata (`MAX_META_BYTES` is far below it).
const TEMPLATED: u32 = 1 << 31;
const _: () = assert!(meta::MAX_TEMPLATES < TEMPLATED as usize);
const _: () = assert!(super::MAX_META_BYTES < TEMPLATED as usize);

/// (metadata bytes, bytes of them in the arena) of `s`.
fn meta_lens(dict: &Dict, s: &Slot) -> (usize, u32) {
    match s.template() {
        Some(id) => {
            let (whole, packed) = dict.lens(id);
            (whole, packed as u32)
        }
        None => (s.meta as usize, s.meta),
    }
}

/// Bytes of the arena piece of `s`.
fn arena_bytes(dict: &Dict, s: &Slot) -> u32 {
    if s.chunk == RUN_SLAB {
        return 0;
    }
    meta_lens(dict, s).1 + s.crc_bytes()
}

/// New arena pieces are staged up to this many bytes before they become a chunk (a batch's
/// pieces become one at the end of the batch, whatever their size).
const ARENA_CHUNK_BYTES: usize = 64 << 10;
/// The arena is rewritten when its chunks (with their table entries) hold more than a quarter
/// more than the bytes objects use, plus this much. Each batch makes one chunk (56 bytes of
/// table and allocator overhead besides its pieces), so under small batches this rewrites
/// after about a quarter as many batches as objects stored: a few piece copies per batch.
const ARENA_SLACK_BYTES: usize = 1 << 20;

struct Chunk {
    bytes: Bytes,
    /// Bytes of the chunk live objects still use; the chunk goes when none are.
    live_bytes: u32,
}

/// Chunks of `Bytes` holding metadata and CRC tables; pieces are handed out as
/// `Bytes::slice`s (a refcount, no allocation). New pieces are staged and become a chunk (one
/// allocation of their exact size) at the end of each batch (`freeze`), before any reader can
/// see them. A chunk is freed when no object uses it; `sparse` says when the chunks hold much
/// more than the objects use (the index then rewrites the arena).
#[derive(Default)]
struct Arena {
    chunks: Vec<Chunk>,
    free: Vec<u32>,
    staging: Vec<u8>,
    /// The chunk id `staging` becomes.
    staging_id: Option<u32>,
    staging_live: u32,
    /// Bytes of the chunks in the table, and the bytes of them objects use.
    chunk_bytes: usize,
    live_bytes: usize,
}

impl Arena {
    /// Store `meta` followed by `crcs` (little-endian) as one piece: (chunk, offset).
    fn put(&mut self, meta: &[u8], crcs: Option<&Crcs>) -> (u32, u32) {
        let n = meta.len() + crcs.map_or(0, |c| 4 * c.len());
        if n == 0 {
            return (NO_CHUNK, 0);
        }
        if !self.staging.is_empty() && self.staging.len() + n > ARENA_CHUNK_BYTES {
            self.freeze();
        }
        let id = match self.staging_id {
            Some(id) => id,
            None => {
                let id = self.free.pop().unwrap_or_else(|| {
                    self.chunks.push(Chunk {
                        bytes: Bytes::new(),
                        live_bytes: 0,
                    });
                    (self.chunks.len() - 1) as u32
                });
                assert!(id < RUN_SLAB, "arena chunk ids exhausted");
                self.staging_id = Some(id);
                id
            }
        };
        let off = u32::try_from(self.staging.len()).expect("staging bounded by one batch");
        if self.staging.capacity() == 0 {
            self.staging.reserve_exact(ARENA_CHUNK_BYTES.max(n));
        }
        self.staging.extend_from_slice(meta);
        if let Some(c) = crcs {
            for i in 0..c.len() {
                self.staging.extend_from_slice(&c.get(i).to_le_bytes());
            }
        }
        self.staging_live += n as u32;
        self.live_bytes += n;
        (id, off)
    }

    /// Make the staged pieces a chunk readers can slice.
    fn freeze(&mut self) {
        let Some(id) = self.staging_id.take() else {
            return;
        };
        let bytes = Bytes::copy_from_slice(&self.staging);
        // The first clone of a `Bytes` made from a vector allocates its shared header: do it
        // here, so that slicing the chunk in `get` never does.
        drop(bytes.clone());
        self.staging.clear();
        if self.staging.capacity() > 4 * ARENA_CHUNK_BYTES {
            self.staging = Vec::new();
        }
        let live_bytes = std::mem::take(&mut self.staging_live);
        self.chunk_bytes += bytes.len();
        self.chunks[id as usize] = Chunk { bytes, live_bytes };
        if live_bytes == 0 {
            self.drop_chunk(id);
        }
    }

    fn drop_chunk(&mut self, id: u32) {
        let b = std::mem::take(&mut self.chunks[id as usize].bytes);
        self.chunk_bytes -= b.len();
        self.free.push(id);
    }

    /// The bytes of a piece, borrowed.
    fn bytes(&self, chunk: u32, off: u32, len: u32) -> &[u8] {
        if len == 0 {
            return &[];
        }
        assert!(self.staging_id != Some(chunk), "piece of an unfrozen chunk");
        &self.chunks[chunk as usize].bytes[off as usize..(off + len) as usize]
    }

    fn slice(&self, chunk: u32, off: u32, len: u64) -> Bytes {
        if len == 0 {
            return Bytes::new();
        }
        assert!(self.staging_id != Some(chunk), "slice of an unfrozen chunk");
        let off = off as usize;
        self.chunks[chunk as usize]
            .bytes
            .slice(off..off + len as usize)
    }

    /// The piece of `n` bytes in `chunk` is no longer used.
    fn release(&mut self, chunk: u32, n: u32) {
        if n == 0 {
            return;
        }
        self.live_bytes -= n as usize;
        if self.staging_id == Some(chunk) {
            self.staging_live -= n;
            return;
        }
        let c = &mut self.chunks[chunk as usize];
        assert!(c.live_bytes >= n, "arena chunk {chunk} released twice");
        c.live_bytes -= n;
        if c.live_bytes == 0 {
            self.drop_chunk(chunk);
        }
    }

    /// The chunks (with their table entries) hold much more than the objects use: after
    /// deletes left chunks partly used, or many small batches made many small chunks.
    fn sparse(&self) -> bool {
        let used_chunks = self.chunks.len() - self.free.len();
        let held = self.chunk_bytes + used_chunks * (std::mem::size_of::<Chunk>() + 16);
        held > self.live_bytes + self.live_bytes / 4 + ARENA_SLACK_BYTES
    }
}

/// The index: namespaces, their keys and slots, the arena and the side table.
#[derive(Default)]
pub(super) struct Index {
    spaces: BTreeMap<String, KeyMap<Slot>>,
    arena: Arena,
    /// Templates of objects' metadata, and their runs of objects with nothing in the arena
    /// (ADR 21).
    dict: Dict,
    runs: Runs,
    /// Extents of spilled objects; free entries are None.
    spill: Vec<Option<Rc<[Extent]>>>,
    spill_free: Vec<u32>,
    objects: u64,
}

/// Fits one extent of `o` in a slot: (head, tail) bytes when it does.
fn slot_fit(o: &Object) -> Option<(u32, u32)> {
    let [e] = &*o.extents else { return None };
    let head = u32::try_from(e.data_offset.checked_sub(e.record_offset)?).ok()?;
    let tail = e.span_bytes.checked_sub(u64::from(head) + e.len)?;
    let tail = u32::try_from(tail).ok()?;
    let fits = e.vol.id != SPILL_VOL
        && e.len == o.size
        && e.block_bytes > 0
        && e.crcs.len() as u64 == block_count(e.len, e.block_bytes)
        && u32::try_from(o.meta.len() + 4 * e.crcs.len()).is_ok_and(|n| n < TEMPLATED);
    fits.then_some((head, tail))
}

impl Index {
    pub(super) fn len(&self) -> u64 {
        self.objects
    }

    pub(super) fn has_any(&self, ns: &str) -> bool {
        self.spaces.get(ns).is_some_and(|m| !m.is_empty())
    }

    /// The object at `ns/key` as a handle holding `hold`.
    pub(super) fn get(&self, ns: &str, key: &str, vols: &Vols, hold: &Rc<Epoch>) -> Option<Object> {
        let slot = self.spaces.get(ns)?.get(key)?;
        Some(self.handle(slot, vols, hold))
    }

    /// The handle of the object `s` describes (no allocation).
    pub(super) fn handle(&self, s: &Slot, vols: &Vols, hold: &Rc<Epoch>) -> Object {
        let (meta_bytes, arena_meta) = meta_lens(&self.dict, s);
        let meta = match s.template() {
            Some(id) if s.chunk == RUN_SLAB => self.dict.rebuild(id, self.runs.get(s.offset)),
            Some(id) => self
                .dict
                .rebuild(id, self.arena.bytes(s.chunk, s.offset, arena_meta)),
            None => Meta::from(self.arena.slice(s.chunk, s.offset, meta_bytes as u64)),
        };
        let extents = if s.spilled() {
            Extents::Many(
                self.spill[s.record_offset as usize]
                    .clone()
                    .expect("spilled object's extents"),
            )
        } else {
            let n = s.n_crcs();
            let crcs = if n <= 1 {
                Crcs::Inline {
                    n: n as u8,
                    crc: s.crc,
                }
            } else {
                Crcs::Arena(self.arena.slice(s.chunk, s.offset + arena_meta, 4 * n))
            };
            let vol = &vols
                .map
                .get(&s.vol)
                .expect("volume of a referenced record")
                .file;
            Extents::One(Extent {
                vol: vol.clone(),
                record_offset: s.record_offset,
                data_offset: s.record_offset + u64::from(s.head_bytes),
                len: s.size,
                span_bytes: u64::from(s.head_bytes) + s.size + u64::from(s.tail_bytes),
                block_bytes: s.block_bytes,
                crcs,
            })
        };
        Object {
            size: s.size,
            mtime_ms: s.mtime_ms,
            seq: s.seq,
            meta,
            extents,
            _hold: hold.clone(),
        }
    }

    /// The slot for `o`, its metadata and CRCs stored in the arena (and its extents in the
    /// side table when they do not fit a slot).
    fn store(&mut self, o: &Object) -> Slot {
        let mut s = Slot {
            seq: o.seq,
            mtime_ms: o.mtime_ms,
            size: o.size,
            record_offset: 0,
            vol: SPILL_VOL,
            head_bytes: 0,
            tail_bytes: 0,
            crc: 0,
            chunk: NO_CHUNK,
            offset: 0,
            meta: u32::try_from(o.meta.len()).expect("metadata bounded by MAX_META_BYTES"),
            block_bytes: 0,
        };
        // The metadata as the arena keeps it: a template's packed run, or verbatim.
        let mut packed = [0u8; meta::META_INLINE_BYTES / 2];
        let mut arena_meta: &[u8] = &o.meta;
        if let Some((start, run)) = meta::split(&o.meta) {
            if let Some(id) = self.dict.intern(&o.meta, start, run) {
                let n = meta::pack_hex(&o.meta[start..start + run], &mut packed);
                arena_meta = &packed[..n];
                s.meta = TEMPLATED | id;
            }
        }
        match slot_fit(o) {
            Some((head, tail)) => {
                let e = &o.extents[0];
                s.vol = e.vol.id;
                s.record_offset = e.record_offset;
                s.head_bytes = head;
                s.tail_bytes = tail;
                s.block_bytes = e.block_bytes;
                let table = if e.crcs.len() > 1 {
                    Some(&e.crcs)
                } else {
                    s.crc = if e.crcs.len() == 1 { e.crcs.get(0) } else { 0 };
                    None
                };
                (s.chunk, s.offset) =
                    if table.is_none() && s.template().is_some() && arena_meta.len() == RUN_BYTES {
                        (RUN_SLAB, self.runs.put(arena_meta))
                    } else {
                        self.arena.put(arena_meta, table)
                    };
            }
            None => {
                let extents = match &o.extents {
                    Extents::Many(v) => v.clone(),
                    Extents::One(e) => Rc::from(vec![e.clone()]),
                };
                let i = match self.spill_free.pop() {
                    Some(i) => {
                        self.spill[i as usize] = Some(extents);
                        i
                    }
                    None => {
                        self.spill.push(Some(extents));
                        (self.spill.len() - 1) as u32
                    }
                };
                s.record_offset = u64::from(i);
                (s.chunk, s.offset) = self.arena.put(arena_meta, None);
            }
        }
        assert_eq!(meta_lens(&self.dict, &s).0, o.meta.len());
        assert_eq!(
            arena_bytes(&self.dict, &s) as usize,
            if s.chunk == RUN_SLAB {
                0
            } else {
                arena_meta.len()
            } + if s.spilled() || s.n_crcs() <= 1 {
                0
            } else {
                4 * s.n_crcs() as usize
            }
        );
        s
    }

    /// Give back what `s` holds in the arena and the side table.
    fn release(&mut self, s: &Slot) {
        self.arena.release(s.chunk, arena_bytes(&self.dict, s));
        if s.chunk == RUN_SLAB {
            self.runs.release(s.offset);
        }
        if let Some(id) = s.template() {
            self.dict.release(id);
        }
        if s.spilled() {
            let i = s.record_offset as usize;
            assert!(
                self.spill[i].take().is_some(),
                "spill entry {i} released twice"
            );
            self.spill_free.push(i as u32);
        }
    }

    /// (volume, record offset, span) of each extent of `s`.
    fn for_each_record(&self, s: &Slot, mut f: impl FnMut(u32, u64, u64)) {
        if s.spilled() {
            let v = self.spill[s.record_offset as usize]
                .as_ref()
                .expect("spilled object's extents");
            for e in v.iter() {
                f(e.vol.id, e.record_offset, e.span_bytes);
            }
        } else {
            f(
                s.vol,
                s.record_offset,
                u64::from(s.head_bytes) + s.size + u64::from(s.tail_bytes),
            );
        }
    }

    /// Bytes `s` takes in the index snapshot.
    fn snapshot_bytes_of(&self, ns: &str, key: &str, s: &Slot) -> u64 {
        if s.spilled() {
            let v = self.spill[s.record_offset as usize]
                .as_ref()
                .expect("spilled object's extents");
            format::snapshot_object_bytes(
                ns.len(),
                key.len(),
                meta_lens(&self.dict, s).0,
                v.iter().map(|e| e.crcs.len()),
            )
        } else {
            format::snapshot_object_bytes(
                ns.len(),
                key.len(),
                meta_lens(&self.dict, s).0,
                std::iter::once(s.n_crcs() as usize),
            )
        }
    }

    fn insert(&mut self, ns: &str, key: &str, s: Slot) -> Option<Slot> {
        let old = match self.spaces.get_mut(ns) {
            Some(m) => m.insert(key, s),
            None => {
                let mut m = KeyMap::default();
                m.insert(key, s);
                self.spaces.insert(ns.to_string(), m);
                None
            }
        };
        if old.is_none() {
            self.objects += 1;
        }
        old
    }

    fn remove(&mut self, ns: &str, key: &str) -> Option<Slot> {
        let m = self.spaces.get_mut(ns)?;
        let old = m.remove(key)?;
        if m.is_empty() {
            self.spaces.remove(ns);
        }
        self.objects -= 1;
        Some(old)
    }

    /// Rewrite the arena when it is sparse: every object's piece copied into new, full chunks.
    /// O(objects), run only after the arena's overhead grew to a quarter of what objects use
    /// (amortized over the batches that made it).
    fn compact_arena(&mut self) {
        if !self.arena.sparse() {
            return;
        }
        let (before_bytes, before_chunks) = (self.arena.chunk_bytes, self.arena.chunks.len());
        let mut fresh = Arena::default();
        let (old, dict) = (&self.arena, &self.dict);
        for m in self.spaces.values_mut() {
            for s in m.values_mut() {
                let n = arena_bytes(dict, s);
                if n == 0 {
                    continue;
                }
                let piece = old.slice(s.chunk, s.offset, u64::from(n));
                (s.chunk, s.offset) = fresh.put(&piece, None);
            }
        }
        fresh.freeze();
        assert_eq!(
            fresh.live_bytes, self.arena.live_bytes,
            "arena rewrite lost bytes"
        );
        tracing::debug!(
            before_bytes,
            before_chunks,
            after_bytes = fresh.chunk_bytes,
            after_chunks = fresh.chunks.len(),
            "index arena rewritten"
        );
        self.arena = fresh;
    }

    /// The keys and slots of `ns`.
    pub(super) fn space(&self, ns: &str) -> Option<&KeyMap<Slot>> {
        self.spaces.get(ns)
    }

    /// Namespaces from `start` on, in order.
    pub(super) fn spaces_from<'a>(
        &'a self,
        start: &str,
    ) -> impl Iterator<Item = (&'a String, &'a KeyMap<Slot>)> + 'a {
        self.spaces
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
    }
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

/// Count one more reference to the record (a record's first makes it live).
fn add_ref(vols: &mut Vols, vol: u32, off: u64, span: u64) {
    let v = vols.map.get_mut(&vol).expect("extent volume registered");
    if v.records.add(off) {
        v.live_bytes += span;
    }
}

/// Count one reference less to the record (a record's last kills it: `died`).
fn drop_ref(vols: &mut Vols, vol: u32, off: u64, span: u64, died: &mut Vec<DroppedRecord>) {
    let v = vols.map.get_mut(&vol).expect("extent volume registered");
    if v.records.drop_ref(off) {
        assert!(
            v.live_bytes >= span,
            "live bytes of vol {vol} below a record's span"
        );
        v.live_bytes -= span;
        died.push(DroppedRecord {
            volume_id: vol,
            record_offset: off,
            span_bytes: span,
        });
    }
}

impl Shard {
    /// The epoch new `Object`s hold.
    pub(super) fn hold(&self) -> Rc<Epoch> {
        self.epoch.borrow().clone()
    }

    /// The extent `e` names.
    pub(super) fn resolve_extent(&self, e: &ExtentRec) -> Result<Extent> {
        let mut vols = self.vols.borrow_mut();
        let v = vols.map.get_mut(&e.volume_id).ok_or_else(|| {
            Error::corrupt(format!(
                "{}: volume {} referenced by the index is missing",
                self.dir.display(),
                e.volume_id
            ))
        })?;
        if e.record_offset + e.span_bytes > v.end_bytes
            || e.data_offset < e.record_offset
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
        Ok(Extent {
            vol: v.file.clone(),
            record_offset: e.record_offset,
            data_offset: e.data_offset,
            len: e.len,
            span_bytes: e.span_bytes,
            block_bytes: e.block_bytes,
            crcs: Crcs::Owned(e.crcs.clone()),
        })
    }

    /// The object at `ns/key` as the batch so far leaves it: `overlay`, else the index.
    pub(super) fn lookup(&self, overlay: &Overlay, ns: &str, key: &str) -> Option<Object> {
        if !overlay.is_empty() {
            if let Some(v) = overlay.get(&(ns.to_string(), key.to_string())) {
                return v.clone();
            }
        }
        self.get(ns, key)
    }

    /// What applying `entry` changes, given the index plus `overlay` (earlier entries of the batch).
    pub(super) fn plan_entry(&self, overlay: &Overlay, entry: &Entry) -> Result<Vec<Change>> {
        match entry {
            Entry::Put {
                seq,
                mtime_ms,
                ns,
                key,
                meta,
                extent,
            } => {
                let obj = self.plan_put(*seq, *mtime_ms, meta, extent)?;
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
                let (changes, _) = self.plan_compose(
                    overlay,
                    (*seq, *mtime_ms),
                    (ns, key),
                    meta,
                    *remove_sources,
                    sources,
                )?;
                Ok(changes)
            }
            Entry::Relocate {
                seq,
                ns,
                key,
                moves,
            } => {
                let obj = self.plan_relocate(overlay, *seq, ns, key, moves)?;
                Ok(vec![(ns.clone(), key.clone(), Some(obj))])
            }
        }
    }

    /// An object handle of `extents` (one inline, several shared).
    pub(super) fn new_object(
        &self,
        (seq, mtime_ms, size): (u64, u64, u64),
        meta: Meta,
        mut extents: Vec<Extent>,
    ) -> Object {
        assert_eq!(size, extents.iter().map(|e| e.len).sum::<u64>());
        let extents = if extents.len() == 1 {
            Extents::One(extents.pop().expect("one extent"))
        } else {
            Extents::Many(Rc::from(extents))
        };
        Object {
            size,
            mtime_ms,
            seq,
            meta,
            extents,
            _hold: self.hold(),
        }
    }

    /// The object a PUT entry makes: one extent, the record written.
    pub(super) fn plan_put(
        &self,
        seq: u64,
        mtime_ms: u64,
        meta: &Bytes,
        extent: &ExtentRec,
    ) -> Result<Object> {
        let ext = self.resolve_extent(extent)?;
        Ok(self.new_object(
            (seq, mtime_ms, ext.len),
            Meta::from(meta.clone()),
            vec![ext],
        ))
    }

    /// What a compose entry changes (sources removed if asked, then the new object, last) and
    /// the new object: the sources' extents, concatenated.
    pub(super) fn plan_compose(
        &self,
        overlay: &Overlay,
        (seq, mtime_ms): (u64, u64),
        (ns, key): (&String, &String),
        meta: &Bytes,
        remove_sources: bool,
        sources: &[(String, String, u64)],
    ) -> Result<(Vec<Change>, Object)> {
        let mut extents = Vec::new();
        for (sns, skey, sseq) in sources {
            let src = self
                .lookup(overlay, sns, skey)
                .filter(|o| o.seq == *sseq)
                .ok_or(Error::NotFound)?;
            extents.extend(src.extents.iter().cloned());
        }
        let size = extents.iter().map(|e| e.len).sum();
        let obj = self.new_object((seq, mtime_ms, size), Meta::from(meta.clone()), extents);
        let mut changes = Vec::new();
        if remove_sources {
            for (sns, skey, _) in sources {
                if (sns, skey) != (ns, key) {
                    changes.push((sns.clone(), skey.clone(), None));
                }
            }
        }
        changes.push((ns.clone(), key.clone(), Some(obj.clone())));
        Ok((changes, obj))
    }

    /// The object a relocate entry makes: version `seq` of `ns/key` with the moved extents
    /// pointing at their copies (PreconditionFailed if that version is gone).
    pub(super) fn plan_relocate(
        &self,
        overlay: &Overlay,
        seq: u64,
        ns: &str,
        key: &str,
        moves: &[Move],
    ) -> Result<Object> {
        let cur = self
            .lookup(overlay, ns, key)
            .filter(|o| o.seq == seq)
            .ok_or(Error::PreconditionFailed)?;
        let mut extents = cur.extents.to_vec();
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
                // Version-1 relocations (span 0) keep the span; compaction packs records now.
                span_bytes: if m.span_bytes == 0 {
                    old.span_bytes
                } else {
                    m.span_bytes
                },
                block_bytes: old.block_bytes,
                crcs: old.crcs.to_rc(),
            };
            extents[m.extent_index as usize] = self.resolve_extent(&rec)?;
        }
        Ok(self.new_object((cur.seq, cur.mtime_ms, cur.size), cur.meta.clone(), extents))
    }

    /// Apply planned changes to the index and the per-volume live-record accounting.
    pub(super) fn apply_changes(&self, changes: Vec<Change>) {
        let mut died = Vec::new();
        {
            let mut idx = self.index.borrow_mut();
            let mut vols = self.vols.borrow_mut();
            let mut snapshot_bytes = self.snapshot_bytes.get();
            for (ns, key, new) in changes {
                let new = new.map(|n| {
                    for e in n.extents.iter() {
                        add_ref(&mut vols, e.vol.id, e.record_offset, e.span_bytes);
                    }
                    let s = idx.store(&n);
                    snapshot_bytes += idx.snapshot_bytes_of(&ns, &key, &s);
                    s
                });
                let new_seq = new.map(|s| s.seq);
                let old = match new {
                    Some(s) => idx.insert(&ns, &key, s),
                    None => idx.remove(&ns, &key),
                };
                if let Some(o) = old {
                    snapshot_bytes -= idx.snapshot_bytes_of(&ns, &key, &o);
                    idx.for_each_record(&o, |vol, off, span| {
                        drop_ref(&mut vols, vol, off, span, &mut died)
                    });
                    idx.release(&o);
                    if new_seq != Some(o.seq) {
                        if let Some(c) = self.cache.borrow_mut().as_mut() {
                            c.remove(o.seq);
                        }
                    }
                }
            }
            idx.arena.freeze();
            idx.compact_arena();
            self.n_objects.set(idx.len());
            assert!(snapshot_bytes >= format::SNAPSHOT_EMPTY_BYTES);
            self.snapshot_bytes.set(snapshot_bytes);
        }
        let next = Epoch::retire(&self.epoch.borrow(), died);
        if let Some(next) = next {
            *self.epoch.borrow_mut() = next;
        }
    }

    /// Load the objects of a snapshot into an empty index: like `apply_changes` of their PUTs,
    /// but the records' reference counts are built in one sort per volume (the snapshot is in
    /// key order, not record order).
    pub(super) fn load_objects(&self, objects: Vec<(String, String, Object)>) {
        let mut idx = self.index.borrow_mut();
        let mut vols = self.vols.borrow_mut();
        assert_eq!(idx.len(), 0, "snapshot loaded into an empty index");
        let mut refs: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
        let mut snapshot_bytes = self.snapshot_bytes.get();
        for (ns, key, o) in objects {
            for e in o.extents.iter() {
                refs.entry(e.vol.id)
                    .or_default()
                    .push((e.record_offset, e.span_bytes));
            }
            let s = idx.store(&o);
            snapshot_bytes += idx.snapshot_bytes_of(&ns, &key, &s);
            let old = idx.insert(&ns, &key, s);
            assert!(old.is_none(), "snapshot names {ns}/{key} twice");
        }
        idx.arena.freeze();
        for (vol, mut recs) in refs {
            recs.sort_unstable();
            let v = vols.map.get_mut(&vol).expect("extent volume registered");
            let (table, live_bytes) = RecTable::from_sorted(&recs);
            v.records = table;
            v.live_bytes = live_bytes;
        }
        self.n_objects.set(idx.len());
        self.snapshot_bytes.set(snapshot_bytes);
    }

    /// `Shard::list`: keys of `ns` after `after` with `prefix`, collapsed at `delimiter`.
    pub(super) fn list_keys(
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
        let vols = self.vols.borrow();
        let hold = self.hold();
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
        let Some(m) = idx.space(ns) else {
            return out;
        };
        'outer: loop {
            for (k, o) in m.range(start.as_ref().map(|s| s.as_str())) {
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
                    key: k.to_string(),
                    obj: idx.handle(o, &vols, &hold),
                });
                if out.len() >= limit {
                    break 'outer;
                }
            }
            break;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_pieces_round_trip_and_free() {
        let mut a = Arena::default();
        let crcs = Crcs::Owned(Rc::from(vec![1u32, 0xdead_beef]));
        let (c1, o1) = a.put(b"meta-one", Some(&crcs));
        let (c2, o2) = a.put(b"two", None);
        assert_eq!(a.put(b"", None), (NO_CHUNK, 0));
        a.freeze();
        assert_eq!(c1, c2, "one batch, one chunk");
        assert_eq!(&a.slice(c1, o1, 8)[..], b"meta-one");
        let t = Crcs::Arena(a.slice(c1, o1 + 8, 8));
        assert_eq!((t.len(), t.get(0), t.get(1)), (2, 1, 0xdead_beef));
        assert_eq!(&*t.to_rc(), &[1, 0xdead_beef]);
        assert_eq!(&a.slice(c2, o2, 3)[..], b"two");
        assert_eq!(a.live_bytes, 19);
        a.release(c1, 16);
        assert_eq!(a.chunks[c1 as usize].bytes.len(), 19, "chunk still used");
        a.release(c2, 3);
        assert!(a.chunks[c1 as usize].bytes.is_empty() && a.free == vec![c1]);
        assert_eq!((a.live_bytes, a.chunk_bytes), (0, 0));
        // The freed id is reused by the next batch.
        let (c3, _) = a.put(b"x", None);
        a.freeze();
        assert_eq!(c3, c1);
    }

    #[test]
    fn arena_is_sparse_after_deletes() {
        let mut a = Arena::default();
        let mut pieces = Vec::new();
        for i in 0..100_000u32 {
            pieces.push(a.put(&i.to_le_bytes().repeat(16), None));
            if i % 1000 == 999 {
                a.freeze();
            }
        }
        a.freeze();
        assert!(!a.sparse());
        // Keep one piece in eight: every chunk stays, mostly garbage.
        for (i, (c, _)) in pieces.iter().enumerate() {
            if i % 8 != 0 {
                a.release(*c, 64);
            }
        }
        assert!(a.sparse());
    }
}
