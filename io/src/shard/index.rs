//! The in-memory index (ADR 17, 23): objects by (namespace, key). Per object it keeps the
//! key's bytes and a 48-byte `Slot` in a `KeyMap` block; a slot holds the common object
//! entirely (bit-packed, its ETag as a template's packed run) and names a wide entry for every
//! other. Wide entries keep their metadata (plus the CRC table of objects of more than one
//! block) in the arena, and objects of several extents (multipart) keep their extents in a
//! side table. `get` builds an `Object` handle from these by value, without allocating.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use super::arena::{Arena, NO_CHUNK};
pub(crate) use super::extent::{Crcs, Extent};
use super::keys::KeyMap;
use super::meta::{self, Dict, Meta};
pub(super) use super::plan::{Change, Overlay};
use super::slot::{Compact, Slot, Wide, NO_TEMPLATE, RUN_BYTES, SPILL_VOL, TEMPLATED};
use super::space::{Epoch, Vols};
use super::spill::Pager;
use super::{Extents, Object};
use crate::format::{self, block_count};

const _: () = assert!(meta::MAX_TEMPLATES <= NO_TEMPLATE as usize + 1);
const _: () = assert!(meta::MAX_TEMPLATES < TEMPLATED as usize);
const _: () = assert!(super::MAX_META_BYTES < TEMPLATED as usize);

/// (metadata bytes, bytes of them in the arena) of `w`.
fn meta_lens(dict: &Dict, w: &Wide) -> (usize, u32) {
    match w.template() {
        Some(id) => {
            let (whole, packed) = dict.lens(id);
            (whole, packed as u32)
        }
        None => (w.meta as usize, w.meta),
    }
}

/// Bytes of the arena piece of `w`.
fn arena_bytes(dict: &Dict, w: &Wide) -> u32 {
    meta_lens(dict, w).1 + w.crc_bytes()
}

/// The index: namespaces, their keys and slots, the wide entries, the arena and the side table.
#[derive(Default)]
pub(super) struct Index {
    spaces: BTreeMap<String, KeyMap<Slot>>,
    arena: Arena,
    /// Templates of objects' metadata (ADR 21).
    dict: Dict,
    /// Objects a slot cannot hold by itself; free entries are None.
    wide: Vec<Option<Wide>>,
    wide_free: Vec<u32>,
    /// Extents of spilled objects; free entries are None.
    spill: Vec<Option<Rc<[Extent]>>>,
    spill_free: Vec<u32>,
    objects: u64,
    /// The memory budget of the keys' blocks and their spill file (ADR 29).
    pager: Pager,
}

/// Fits one extent of `o` in a single-extent description: (head, tail) bytes when it does.
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

/// Put `v` in a free entry of `table` (or a new one, growing by an eighth): its index.
fn take_entry<T>(table: &mut Vec<Option<T>>, free: &mut Vec<u32>, v: T) -> u32 {
    if let Some(i) = free.pop() {
        table[i as usize] = Some(v);
        return i;
    }
    if table.len() == table.capacity() {
        table.reserve_exact(table.len() / 8 + 16);
    }
    table.push(Some(v));
    u32::try_from(table.len() - 1).expect("fewer than 2^32 objects per shard")
}

impl Index {
    /// An empty index whose blocks `pager` keeps within its budget.
    pub(super) fn with_pager(pager: Pager) -> Index {
        Index {
            pager,
            ..Index::default()
        }
    }

    /// Empty the index, keeping its pager (emptied as well).
    pub(super) fn clear(&mut self) -> crate::Result<()> {
        let mut pager = std::mem::take(&mut self.pager);
        pager.clear()?;
        *self = Index::with_pager(pager);
        Ok(())
    }

    /// The pager the keys' blocks are read through.
    pub(super) fn pager(&self) -> &Pager {
        &self.pager
    }

    /// Whether readers promoted spilled blocks past the budget (`trim` brings it back).
    #[inline]
    pub(super) fn over_budget(&self) -> bool {
        self.pager.over()
    }

    /// Spill cold blocks until the resident ones are within the budget (ADR 29).
    pub(super) fn trim(&mut self) {
        if !self.pager.over() {
            return;
        }
        for m in self.spaces.values_mut() {
            if m.trim(&mut self.pager) {
                return;
            }
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.objects
    }

    pub(super) fn has_any(&self, ns: &str) -> bool {
        self.spaces.get(ns).is_some_and(|m| !m.is_empty())
    }

    /// The object at `ns/key` as a handle holding `hold`.
    pub(super) fn get(&self, ns: &str, key: &str, vols: &Vols, hold: &Rc<Epoch>) -> Option<Object> {
        let slot = self.spaces.get(ns)?.get(key, &self.pager)?;
        Some(self.handle(slot, vols, hold))
    }

    fn wide_entry(&self, i: u32) -> &Wide {
        self.wide[i as usize]
            .as_ref()
            .expect("slot names a live wide entry")
    }

    /// The object's version.
    pub(super) fn seq_of(&self, s: &Slot) -> u64 {
        match s.get() {
            Ok(c) => c.seq,
            Err(i) => self.wide_entry(i).seq,
        }
    }

    /// The handle of the object `s` describes (no allocation).
    pub(super) fn handle(&self, s: &Slot, vols: &Vols, hold: &Rc<Epoch>) -> Object {
        let c = match s.get() {
            Ok(c) => c,
            Err(i) => return self.handle_wide(self.wide_entry(i), vols, hold),
        };
        let meta = if c.template == NO_TEMPLATE {
            Meta::default()
        } else {
            self.dict.rebuild(c.template, &c.run)
        };
        let vol = &vols
            .map
            .get(&c.vol)
            .expect("volume of a referenced record")
            .file;
        Object {
            size: c.size,
            mtime_ms: c.mtime_ms,
            seq: c.seq,
            meta,
            extents: Extents::One(Extent {
                vol: vol.clone(),
                record_offset: c.record_offset,
                data_offset: c.record_offset + u64::from(c.head_bytes),
                len: c.size,
                span_bytes: c.span_bytes(),
                block_bytes: c.block_bytes,
                crcs: Crcs::Inline {
                    n: c.n_crcs() as u8,
                    crc: c.crc,
                },
            }),
            _hold: hold.clone(),
        }
    }

    fn handle_wide(&self, s: &Wide, vols: &Vols, hold: &Rc<Epoch>) -> Object {
        let (meta_bytes, arena_meta) = meta_lens(&self.dict, s);
        let meta = match s.template() {
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

    /// The slot for `o`: the object itself when a slot holds it, else a wide entry (its
    /// metadata and CRCs stored in the arena, its extents in the side table when they are
    /// several).
    pub(super) fn store(&mut self, o: &Object) -> Slot {
        // The metadata as the index keeps it: a template's packed run, or verbatim.
        let mut packed = [0u8; meta::META_INLINE_BYTES / 2];
        let mut template = None;
        if let Some((start, run)) = meta::split(&o.meta) {
            if let Some(id) = self.dict.intern(&o.meta, start, run) {
                let n = meta::pack_hex(&o.meta[start..start + run], &mut packed);
                template = Some((id, n));
            }
        }
        if let Some(s) = self.store_compact(o, template, &packed) {
            return s;
        }
        let arena_meta: &[u8] = match template {
            Some((_, n)) => &packed[..n],
            None => &o.meta,
        };
        let mut w = Wide {
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
            meta: match template {
                Some((id, _)) => TEMPLATED | id,
                None => u32::try_from(o.meta.len()).expect("metadata bounded by MAX_META_BYTES"),
            },
            block_bytes: 0,
        };
        match slot_fit(o) {
            Some((head, tail)) => {
                let e = &o.extents[0];
                w.vol = e.vol.id;
                w.record_offset = e.record_offset;
                w.head_bytes = head;
                w.tail_bytes = tail;
                w.block_bytes = e.block_bytes;
                let table = if e.crcs.len() > 1 {
                    Some(&e.crcs)
                } else {
                    w.crc = if e.crcs.len() == 1 { e.crcs.get(0) } else { 0 };
                    None
                };
                (w.chunk, w.offset) = self.arena.put(arena_meta, table);
            }
            None => {
                let extents = match &o.extents {
                    Extents::Many(v) => v.clone(),
                    Extents::One(e) => Rc::from(vec![e.clone()]),
                };
                let i = take_entry(&mut self.spill, &mut self.spill_free, extents);
                w.record_offset = u64::from(i);
                (w.chunk, w.offset) = self.arena.put(arena_meta, None);
            }
        }
        assert_eq!(meta_lens(&self.dict, &w).0, o.meta.len());
        assert_eq!(
            arena_bytes(&self.dict, &w) as usize,
            arena_meta.len()
                + if w.spilled() || w.n_crcs() <= 1 {
                    0
                } else {
                    4 * w.n_crcs() as usize
                }
        );
        Slot::wide(take_entry(&mut self.wide, &mut self.wide_free, w))
    }

    /// The slot holding `o` itself, when one can: one extent, at most one block, and no
    /// metadata or a template's 16-byte run (`template`: its id and packed length).
    fn store_compact(
        &self,
        o: &Object,
        template: Option<(u32, usize)>,
        packed: &[u8],
    ) -> Option<Slot> {
        let (head_bytes, tail_bytes) = slot_fit(o)?;
        let e = &o.extents[0];
        let mut run = [0u8; RUN_BYTES];
        let template = match template {
            Some((id, RUN_BYTES)) if id < NO_TEMPLATE => {
                run.copy_from_slice(&packed[..RUN_BYTES]);
                id
            }
            None if o.meta.is_empty() => NO_TEMPLATE,
            _ => return None,
        };
        if e.crcs.len() > 1 {
            return None;
        }
        Slot::compact(&Compact {
            seq: o.seq,
            mtime_ms: o.mtime_ms,
            size: o.size,
            vol: e.vol.id,
            record_offset: e.record_offset,
            head_bytes,
            tail_bytes,
            block_bytes: e.block_bytes,
            crc: if e.crcs.len() == 1 { e.crcs.get(0) } else { 0 },
            template,
            run,
        })
    }

    /// Give back what `s` holds: its template, and a wide entry's arena piece and side table.
    pub(super) fn release(&mut self, s: &Slot) {
        let i = match s.get() {
            Ok(c) => {
                if c.template != NO_TEMPLATE {
                    self.dict.release(c.template);
                }
                return;
            }
            Err(i) => i,
        };
        let w = self.wide[i as usize]
            .take()
            .expect("wide entry released twice");
        self.wide_free.push(i);
        self.arena.release(w.chunk, arena_bytes(&self.dict, &w));
        if let Some(id) = w.template() {
            self.dict.release(id);
        }
        if w.spilled() {
            let i = w.record_offset as usize;
            assert!(
                self.spill[i].take().is_some(),
                "spill entry {i} released twice"
            );
            self.spill_free.push(i as u32);
        }
    }

    /// (volume, record offset, span) of each extent of `s`.
    pub(super) fn for_each_record(&self, s: &Slot, mut f: impl FnMut(u32, u64, u64)) {
        let w = match s.get() {
            Ok(c) => return f(c.vol, c.record_offset, c.span_bytes()),
            Err(i) => self.wide_entry(i),
        };
        if w.spilled() {
            let v = self.spill[w.record_offset as usize]
                .as_ref()
                .expect("spilled object's extents");
            for e in v.iter() {
                f(e.vol.id, e.record_offset, e.span_bytes);
            }
        } else {
            f(
                w.vol,
                w.record_offset,
                u64::from(w.head_bytes) + w.size + u64::from(w.tail_bytes),
            );
        }
    }

    /// Bytes `s` takes in the index snapshot.
    pub(super) fn snapshot_bytes_of(&self, ns: &str, key: &str, s: &Slot) -> u64 {
        let w = match s.get() {
            Ok(c) => {
                let meta_bytes = if c.template == NO_TEMPLATE {
                    0
                } else {
                    self.dict.lens(c.template).0
                };
                return format::snapshot_object_bytes(
                    ns.len(),
                    key.len(),
                    meta_bytes,
                    std::iter::once(c.n_crcs() as usize),
                );
            }
            Err(i) => self.wide_entry(i),
        };
        if w.spilled() {
            let v = self.spill[w.record_offset as usize]
                .as_ref()
                .expect("spilled object's extents");
            format::snapshot_object_bytes(
                ns.len(),
                key.len(),
                meta_lens(&self.dict, w).0,
                v.iter().map(|e| e.crcs.len()),
            )
        } else {
            format::snapshot_object_bytes(
                ns.len(),
                key.len(),
                meta_lens(&self.dict, w).0,
                std::iter::once(w.n_crcs() as usize),
            )
        }
    }

    pub(super) fn insert(&mut self, ns: &str, key: &str, s: Slot) -> Option<Slot> {
        let old = match self.spaces.get_mut(ns) {
            Some(m) => m.insert(key, s, &mut self.pager),
            None => {
                let mut m = KeyMap::default();
                m.insert(key, s, &mut self.pager);
                self.spaces.insert(ns.to_string(), m);
                None
            }
        };
        if old.is_none() {
            self.objects += 1;
        }
        self.trim();
        old
    }

    pub(super) fn remove(&mut self, ns: &str, key: &str) -> Option<Slot> {
        let m = self.spaces.get_mut(ns)?;
        let old = m.remove(key, &mut self.pager)?;
        if m.is_empty() {
            self.spaces.remove(ns);
        }
        self.objects -= 1;
        self.trim();
        Some(old)
    }

    /// The end of a batch of changes: the arena's staged pieces become readable, and the
    /// arena is rewritten when sparse.
    pub(super) fn end_batch(&mut self) {
        self.arena.freeze();
        self.compact_arena();
    }

    /// Rewrite the arena when it is sparse: every wide entry's piece copied into new, full
    /// chunks. O(wide entries), run only after the arena's overhead grew to a quarter of what
    /// objects use (amortized over the batches that made it).
    fn compact_arena(&mut self) {
        if !self.arena.sparse() {
            return;
        }
        let (before_bytes, before_chunks) = (self.arena.chunk_bytes, self.arena.chunks.len());
        let mut fresh = Arena::default();
        let (old, dict) = (&self.arena, &self.dict);
        for w in self.wide.iter_mut().flatten() {
            let n = arena_bytes(dict, w);
            if n == 0 {
                continue;
            }
            let piece = old.slice(w.chunk, w.offset, u64::from(n));
            (w.chunk, w.offset) = fresh.put(&piece, None);
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
