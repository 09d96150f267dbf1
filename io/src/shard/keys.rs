//! `KeyMap`: the ordered keys of one namespace with a fixed-size value each, kept compact (ADR
//! 17). Keys live in sorted blocks of up to `BLOCK_MAX_KEYS` entries; a block holds its keys'
//! bytes back to back in one buffer, the end offset of each key, and the values in key order.
//! Per key that is the key's bytes, 4 bytes of offset and the value (plus the slack of three
//! vectors that grow by an eighth), instead of one `String` and one B-tree slot per key.
//!
//! With a memory budget (ADR 29), a shard's `Pager` keeps the blocks' heap bytes under its
//! share: cold blocks (a clock bit per block, set on access) are written to the shard's spill
//! file and their buffers freed; a spilled block is read back (promoted) when a lookup, an
//! update or a listing needs it. The spill file is scratch space, never read across restarts;
//! its bytes and the `Pager` are `spill`'s room.

use std::cell::{Cell, OnceCell};
use std::cmp::Ordering;
use std::ops::Bound;

use super::spill::{Pager, Pod};

/// Most keys per block: an insert moves at most this many values and their key bytes.
pub(super) const BLOCK_MAX_KEYS: usize = 128;
/// Most key bytes per block, so that a key's end offset is a `u16` (a block splits when it
/// would pass this as well).
const BLOCK_MAX_KEY_BYTES: usize = u16::MAX as usize;
const _: () = assert!(2 * crate::format::MAX_KEY_BYTES < BLOCK_MAX_KEY_BYTES);
/// A block that falls below this after a removal is merged with a neighbour when they fit.
const BLOCK_MIN_KEYS: usize = BLOCK_MAX_KEYS / 4;

/// Make room for one more element in `v`, growing by an eighth (at least `min_extra`) rather
/// than doubling: the blocks hold most of the index's memory, and doubling would leave up to
/// half of it unused.
fn reserve_some<T>(v: &mut Vec<T>, need: usize, min_extra: usize) {
    if v.capacity() - v.len() < need {
        v.reserve_exact(need.max(v.len() / 8).max(min_extra));
    }
}

/// The keys and values of a block.
#[derive(Debug)]
pub(super) struct Data<V> {
    /// The keys' bytes, in key order, back to back.
    pub(super) keys: Vec<u8>,
    /// End offset in `keys` of each key.
    pub(super) ends: Vec<u16>,
    pub(super) vals: Vec<V>,
}

impl<V> Data<V> {
    fn new() -> Data<V> {
        Data {
            keys: Vec::new(),
            ends: Vec::new(),
            vals: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.vals.len()
    }

    /// Heap bytes of the buffers (capacity).
    fn heap_bytes(&self) -> usize {
        self.keys.capacity() + self.ends.capacity() * 2 + self.vals.capacity() * size_of::<V>()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        }
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.keys[self.start(i)..self.ends[i] as usize]
    }

    /// Position of `k` (Ok) or where it would go (Err).
    fn search(&self, k: &[u8]) -> std::result::Result<usize, usize> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(k) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// A block with room for `BLOCK_MAX_KEYS` keys of `key_bytes` each (or the byte bound):
    /// the last block of keys appended in order fills it without reallocating.
    fn with_room(key_bytes: usize) -> Data<V> {
        let mut b = Data::new();
        b.make_room(key_bytes);
        b
    }

    /// Reserve the rest of a full block's capacity (keys of `key_bytes` each).
    fn make_room(&mut self, key_bytes: usize) {
        let n = BLOCK_MAX_KEYS - self.len();
        let bytes = (key_bytes * n).min(BLOCK_MAX_KEY_BYTES - self.keys.len());
        self.keys.reserve_exact(bytes);
        self.ends.reserve_exact(n);
        self.vals.reserve_exact(n);
    }

    /// Insert `k` at `i`. The last block grows by an eighth; any other grows by exactly what
    /// the key needs (ADR 25: an eighth of slack left in every block that once took a key out
    /// of order cost ~18 bytes per object; a block that is not the last takes keys only out of
    /// order, so seldom).
    fn insert_at(&mut self, i: usize, k: &[u8], v: V, last: bool) {
        assert!(i <= self.len());
        let s = self.start(i);
        let old_len = self.keys.len();
        if last {
            reserve_some(&mut self.keys, k.len(), 64);
            reserve_some(&mut self.ends, 1, 4);
            reserve_some(&mut self.vals, 1, 4);
        } else {
            self.keys.reserve_exact(k.len());
            self.ends.reserve_exact(1);
            self.vals.reserve_exact(1);
        }
        self.keys.resize(old_len + k.len(), 0);
        self.keys.copy_within(s..old_len, s + k.len());
        self.keys[s..s + k.len()].copy_from_slice(k);
        self.ends.insert(i, (s + k.len()) as u16);
        for e in &mut self.ends[i + 1..] {
            *e += k.len() as u16;
        }
        self.vals.insert(i, v);
        assert_eq!(*self.ends.last().expect("a key") as usize, self.keys.len());
    }

    fn remove_at(&mut self, i: usize) -> V {
        let (s, e) = (self.start(i), self.ends[i] as usize);
        let n = e - s;
        self.keys.copy_within(e.., s);
        self.keys.truncate(self.keys.len() - n);
        self.ends.remove(i);
        for x in &mut self.ends[i..] {
            *x -= n as u16;
        }
        let v = self.vals.remove(i);
        if self.vals.capacity() > 2 * self.vals.len() + 8 {
            self.shrink();
        }
        v
    }

    fn shrink(&mut self) {
        self.keys.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.vals.shrink_to_fit();
    }

    /// Move the keys from `at` on into a new block.
    fn split_off(&mut self, at: usize) -> Data<V> {
        let s = self.start(at);
        let keys = self.keys[s..].to_vec();
        self.keys.truncate(s);
        let ends = self
            .ends
            .split_off(at)
            .into_iter()
            .map(|e| e - s as u16)
            .collect();
        let vals = self.vals.split_off(at);
        self.shrink();
        Data { keys, ends, vals }
    }

    /// Append all of `other` (whose keys all sort after ours).
    fn append(&mut self, other: Data<V>) {
        let base = self.keys.len() as u16;
        self.keys.extend_from_slice(&other.keys);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        self.vals.extend(other.vals);
    }
}

/// A block: its data when resident, where its spill copy is, and its clock bit.
struct Block<V> {
    /// The keys and values; empty while the block is spilled (set again, under `&self`, when a
    /// reader promotes it).
    data: OnceCell<Data<V>>,
    /// The first key while spilled (finding a key's block needs every block's first key).
    first: Box<[u8]>,
    /// The block's current copy in the spill file, if it has one: (offset, bytes).
    at: Option<(u64, u32)>,
    /// Heap bytes of `data` counted in the pager's resident total.
    counted: Cell<u32>,
    /// Clock (second-chance) bit: set on every access.
    used: Cell<bool>,
}

impl<V: Pod> Block<V> {
    fn resident(d: Data<V>) -> Block<V> {
        Block {
            data: OnceCell::from(d),
            first: Box::default(),
            at: None,
            counted: Cell::new(0),
            used: Cell::new(true),
        }
    }

    /// The block's data, read back from the spill file when spilled.
    #[inline]
    fn data(&self, pager: &Pager) -> &Data<V> {
        self.used.set(true);
        match self.data.get() {
            Some(d) => d,
            None => self.promote(pager),
        }
    }

    /// Read a spilled block back (a synchronous read on the shard's core: ADR 29).
    #[cold]
    #[inline(never)]
    fn promote(&self, pager: &Pager) -> &Data<V> {
        let at = self.at.expect("a spilled block has a spill copy");
        let d = pager.read::<V>(at).unwrap_or_else(|e| {
            // The heap copy is gone and the spill copy unreadable: the process cannot answer
            // for these keys. Restart rebuilds the index from the snapshot and journal.
            panic!("index block lost: {e}")
        });
        let n = d.heap_bytes() as u32;
        pager.resident.set(pager.resident.get() + n as usize);
        self.counted.set(n);
        let _ = self.data.set(d);
        self.data.get().expect("just set")
    }

    fn first_key(&self) -> &[u8] {
        match self.data.get() {
            Some(d) => d.key(0),
            None => &self.first,
        }
    }
}

/// Ordered map from string keys to `V`, compact (see the module comment). Every operation takes
/// the shard's `Pager`: a reader (`&self`) may promote spilled blocks, which takes resident
/// bytes past the budget until the next `trim`; a writer promotes the blocks it changes.
pub(super) struct KeyMap<V> {
    /// Boxed so that a split or merge moves 8 bytes per block, not the block's three vectors.
    #[allow(clippy::vec_box)]
    blocks: Vec<Box<Block<V>>>,
    len: usize,
    /// The clock's hand: the next block `trim` looks at.
    hand: usize,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            blocks: Vec::new(),
            len: 0,
            hand: 0,
        }
    }
}

impl<V: Pod> KeyMap<V> {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block `k` belongs in: the last whose first key is <= `k` (the first block if none).
    fn block_of(&self, k: &[u8]) -> usize {
        self.blocks
            .partition_point(|b| b.first_key() <= k)
            .saturating_sub(1)
    }

    fn d(&self, bi: usize, pager: &Pager) -> &Data<V> {
        self.blocks[bi].data(pager)
    }

    /// Block `bi`'s data for a change: promoted if spilled, its spill copy dropped.
    fn dm(&mut self, bi: usize, pager: &mut Pager) -> &mut Data<V> {
        let b = &mut self.blocks[bi];
        b.data(pager);
        if let Some(at) = b.at.take() {
            pager.release(at);
        }
        b.data.get_mut().expect("promoted")
    }

    /// Count block `bi`'s heap bytes again after a change.
    fn recount(&self, bi: usize, pager: &Pager) {
        let b = &self.blocks[bi];
        let n = b.data.get().map_or(0, |d| d.heap_bytes());
        pager.sub(b.counted.get() as usize);
        pager.add(n);
        b.counted.set(n as u32);
    }

    fn push_block(&mut self, at: usize, d: Data<V>, pager: &Pager) {
        self.blocks.insert(at, Box::new(Block::resident(d)));
        self.recount(at, pager);
    }

    /// Remove block `bi`: its resident bytes and spill copy given back, its data returned.
    fn take_block(&mut self, bi: usize, pager: &mut Pager) -> Data<V> {
        self.blocks[bi].data(pager);
        let mut b = self.blocks.remove(bi);
        pager.sub(b.counted.get() as usize);
        if let Some(at) = b.at.take() {
            pager.release(at);
        }
        b.data.take().expect("promoted")
    }

    pub(super) fn get(&self, k: &str, pager: &Pager) -> Option<&V> {
        if self.blocks.is_empty() {
            return None;
        }
        let b = self.blocks[self.block_of(k.as_bytes())].data(pager);
        b.search(k.as_bytes()).ok().map(|i| &b.vals[i])
    }

    /// Insert or replace; returns the value replaced.
    pub(super) fn insert(&mut self, k: &str, v: V, pager: &mut Pager) -> Option<V> {
        let k = k.as_bytes();
        if self.blocks.is_empty() {
            let mut b = Data::new();
            b.insert_at(0, k, v, true);
            self.push_block(0, b, pager);
            self.len += 1;
            return None;
        }
        // Keys past the last one (a snapshot loading, keys written in order) go to the end
        // of the last block without a search.
        let last = self.blocks.len() - 1;
        let lb = self.d(last, pager);
        let n_last = lb.len();
        let (mut bi, mut i) = if n_last > 0 && lb.key(n_last - 1) < k {
            (last, n_last)
        } else {
            let bi = self.block_of(k);
            match self.d(bi, pager).search(k) {
                Ok(i) => {
                    // Values are fixed-size: the block's bytes do not change.
                    let old = std::mem::replace(&mut self.dm(bi, pager).vals[i], v);
                    return Some(old);
                }
                Err(i) => (bi, i),
            }
        };
        loop {
            let b = self.d(bi, pager);
            let (n, key_bytes) = (b.len(), b.keys.len());
            if n < BLOCK_MAX_KEYS && key_bytes + k.len() <= BLOCK_MAX_KEY_BYTES {
                break;
            }
            let is_last = bi + 1 == self.blocks.len();
            if !is_last {
                // A full block whose successor has room: the new key goes there when it sorts
                // after this block's keys, else this block's last key moves there. Blocks of
                // keys written nearly in order stay full instead of being halved by late keys.
                let next = self.d(bi + 1, pager);
                let fits = |extra: usize| {
                    next.len() < BLOCK_MAX_KEYS && next.keys.len() + extra <= BLOCK_MAX_KEY_BYTES
                };
                if i == n && fits(k.len()) {
                    bi += 1;
                    i = 0;
                    continue;
                }
                let b = self.d(bi, pager);
                let moved_len = b.ends[n - 1] as usize - b.start(n - 1);
                if i < n && fits(moved_len) {
                    let mut moved = [0u8; crate::format::MAX_KEY_BYTES];
                    moved[..moved_len].copy_from_slice(b.key(n - 1));
                    let mv = self.dm(bi, pager).remove_at(n - 1);
                    self.recount(bi, pager);
                    let next_last = bi + 2 == self.blocks.len();
                    self.dm(bi + 1, pager)
                        .insert_at(0, &moved[..moved_len], mv, next_last);
                    self.recount(bi + 1, pager);
                    continue;
                }
            }
            if is_last && i == n {
                // Appending past the last key (loading a snapshot, keys written in order):
                // leave the full block full and start a new one with room for a full block.
                self.dm(bi, pager).shrink();
                self.recount(bi, pager);
                self.push_block(bi + 1, Data::with_room(k.len()), pager);
                bi += 1;
                i = 0;
            } else {
                // A block over the byte bound holds at least two keys (keys are short).
                assert!(n >= 2, "a key of {} bytes does not fit a block", k.len());
                let half = n / 2;
                // The last block of keys written nearly in order (a few late ones among
                // concurrent PUTs) splits where the key goes: the keys before stay a full
                // block, the new last block starts with room to fill.
                let at = if is_last && i > half { i } else { half };
                let mut right = self.dm(bi, pager).split_off(at);
                self.recount(bi, pager);
                if is_last {
                    right.make_room(k.len());
                }
                self.push_block(bi + 1, right, pager);
                if i > at || (at != half && i == at) {
                    bi += 1;
                    i -= at;
                }
            }
        }
        let last = bi + 1 == self.blocks.len();
        self.dm(bi, pager).insert_at(i, k, v, last);
        self.recount(bi, pager);
        self.len += 1;
        None
    }

    /// Remove `k`; returns its value.
    pub(super) fn remove(&mut self, k: &str, pager: &mut Pager) -> Option<V> {
        if self.blocks.is_empty() {
            return None;
        }
        let k = k.as_bytes();
        let bi = self.block_of(k);
        let i = self.d(bi, pager).search(k).ok()?;
        let v = self.dm(bi, pager).remove_at(i);
        self.recount(bi, pager);
        self.len -= 1;
        let n = self.d(bi, pager).len();
        if n == 0 {
            self.take_block(bi, pager);
        } else if n < BLOCK_MIN_KEYS {
            // Merge with the smaller neighbour when both fit one block.
            let left = bi.checked_sub(1).map(|l| (l, self.d(l, pager).len()));
            let right = (bi + 1 < self.blocks.len()).then(|| (bi + 1, self.d(bi + 1, pager).len()));
            let pair = match (left, right) {
                (Some((l, ln)), Some((_, rn))) if ln <= rn => Some(l),
                (_, Some(_)) => Some(bi),
                (Some((l, _)), None) => Some(l),
                (None, None) => None,
            };
            if let Some(l) = pair {
                let (a, b) = (self.d(l, pager), self.d(l + 1, pager));
                if a.len() + b.len() <= BLOCK_MAX_KEYS
                    && a.keys.len() + b.keys.len() <= BLOCK_MAX_KEY_BYTES
                {
                    let r = self.take_block(l + 1, pager);
                    self.dm(l, pager).append(r);
                    self.recount(l, pager);
                }
            }
        }
        Some(v)
    }

    /// Entries from `start` on, in key order.
    pub(super) fn range<'a>(&'a self, start: Bound<&str>, pager: &'a Pager) -> Iter<'a, V> {
        let (bi, i) = match start {
            Bound::Unbounded => (0, 0),
            Bound::Included(k) | Bound::Excluded(k) if !self.blocks.is_empty() => {
                let bi = self.block_of(k.as_bytes());
                match self.d(bi, pager).search(k.as_bytes()) {
                    Ok(i) if matches!(start, Bound::Excluded(_)) => (bi, i + 1),
                    Ok(i) | Err(i) => (bi, i),
                }
            }
            _ => (0, 0),
        };
        Iter {
            map: self,
            pager,
            block: bi,
            i,
        }
    }

    /// Spill cold blocks (clock order) until the pager is within its budget or every block
    /// was looked at twice; true when within budget. A block whose spill write fails stays
    /// resident (nothing is freed before its copy is written); the error is logged and the
    /// trim stops.
    pub(super) fn trim(&mut self, pager: &mut Pager) -> bool {
        let n = self.blocks.len();
        for _ in 0..2 * n {
            if !pager.over() {
                return true;
            }
            if self.hand >= self.blocks.len() {
                self.hand = 0;
            }
            let b = &mut self.blocks[self.hand];
            self.hand += 1;
            let Some(d) = b.data.get() else { continue };
            if b.used.replace(false) {
                continue;
            }
            if b.at.is_none() {
                match pager.write(&d.encode()) {
                    Ok(at) => b.at = Some(at),
                    Err(e) => {
                        pager.write_errors += 1;
                        // Every later change retries; the 1st, 2nd, 4th, 8th... failure is logged.
                        if pager.write_errors.is_power_of_two() {
                            tracing::warn!(error = %e, failures = pager.write_errors, resident_bytes = pager.resident.get(), "index block not spilled: it stays in memory, over the index budget");
                        }
                        return false;
                    }
                }
            }
            b.first = d.key(0).into();
            pager.sub(b.counted.replace(0) as usize);
            b.data.take();
        }
        !pager.over()
    }

    /// Bytes this map holds on the heap (capacity, not length), for the ADR's breakdown.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * 8
            + self
                .blocks
                .iter()
                .map(|b| {
                    std::mem::size_of::<Block<V>>() + b.data.get().map_or(0, |d| d.heap_bytes())
                })
                .sum::<usize>()
    }

    /// Check the invariants (tests).
    #[cfg(test)]
    fn check(&self, pager: &Pager) {
        let mut n = 0;
        let mut prev: Option<Vec<u8>> = None;
        for b in &self.blocks {
            assert_eq!(
                b.counted.get() as usize,
                b.data.get().map_or(0, |d| d.heap_bytes())
            );
            if b.data.get().is_none() {
                assert!(b.at.is_some(), "a spilled block without a spill copy");
            }
            let d = b.data(pager);
            assert!(d.len() > 0 && d.len() <= BLOCK_MAX_KEYS);
            assert_eq!(d.ends.len(), d.len());
            assert_eq!(*d.ends.last().unwrap() as usize, d.keys.len());
            for i in 0..d.len() {
                let k = d.key(i);
                assert!(prev.as_deref().is_none_or(|p| p < k), "keys out of order");
                prev = Some(k.to_vec());
            }
            n += d.len();
        }
        assert_eq!(n, self.len);
    }
}

/// Iterator over a `KeyMap` in key order (promoting the spilled blocks it reaches).
pub(super) struct Iter<'a, V> {
    map: &'a KeyMap<V>,
    pager: &'a Pager,
    block: usize,
    i: usize,
}

impl<'a, V: Pod> Iterator for Iter<'a, V> {
    type Item = (&'a str, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let b = self.map.blocks.get(self.block)?.data(self.pager);
            if self.i < b.len() {
                let k = std::str::from_utf8(b.key(self.i)).expect("keys are inserted as str");
                let v = &b.vals[self.i];
                self.i += 1;
                return Some((k, v));
            }
            self.block += 1;
            self.i = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::spill::SPILL_FILE;
    use super::*;
    use std::collections::BTreeMap;

    /// xorshift64*: a seeded RNG for the model test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A map and its pager, with the old method names (tests).
    struct Paged {
        m: KeyMap<u64>,
        p: Pager,
    }

    impl Paged {
        fn new() -> Paged {
            Paged {
                m: KeyMap::default(),
                p: Pager::default(),
            }
        }
        /// A map whose pager keeps at most `budget` bytes resident, spilling to a file in a
        /// fresh temporary directory.
        fn budget(budget: u64) -> (Paged, tempfile::TempDir) {
            let dir = tempfile::tempdir().unwrap();
            let p = Pager::open(dir.path(), budget).unwrap();
            (
                Paged {
                    m: KeyMap::default(),
                    p,
                },
                dir,
            )
        }
        fn get(&self, k: &str) -> Option<&u64> {
            self.m.get(k, &self.p)
        }
        fn insert(&mut self, k: &str, v: u64) -> Option<u64> {
            let r = self.m.insert(k, v, &mut self.p);
            self.m.trim(&mut self.p);
            r
        }
        fn remove(&mut self, k: &str) -> Option<u64> {
            let r = self.m.remove(k, &mut self.p);
            self.m.trim(&mut self.p);
            r
        }
        fn range<'a>(&'a self, b: Bound<&str>) -> Iter<'a, u64> {
            self.m.range(b, &self.p)
        }
        fn len(&self) -> usize {
            self.m.len()
        }
        fn is_empty(&self) -> bool {
            self.m.is_empty()
        }
        fn check(&self) {
            self.m.check(&self.p)
        }
        fn heap_bytes(&self) -> usize {
            self.m.heap_bytes()
        }
        fn blocks(&self) -> impl Iterator<Item = &Data<u64>> + '_ {
            self.m.blocks.iter().map(|b| b.data(&self.p))
        }
    }

    fn key(r: &mut Rng, space: u64) -> String {
        let a = r.below(space);
        // Keys of different lengths sharing prefixes, like object keys.
        match a % 3 {
            0 => format!("a/{a:06}"),
            1 => format!("a/{:03}/b/{a}", a % 97),
            _ => format!("z{a}"),
        }
    }

    fn same(m: &Paged, model: &BTreeMap<String, u64>, r: &mut Rng, space: u64) {
        m.check();
        assert_eq!(m.len(), model.len());
        let all: Vec<(String, u64)> = m
            .range(Bound::Unbounded)
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let want: Vec<(String, u64)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(all, want);
        for _ in 0..20 {
            let k = key(r, space);
            assert_eq!(m.get(&k), model.get(&k));
            for inc in [true, false] {
                let b = if inc {
                    Bound::Included(k.as_str())
                } else {
                    Bound::Excluded(k.as_str())
                };
                let got: Vec<&str> = m.range(b).take(5).map(|(k, _)| k).collect();
                let want: Vec<&str> = model
                    .range::<str, _>((b, Bound::Unbounded))
                    .take(5)
                    .map(|(k, _)| k.as_str())
                    .collect();
                assert_eq!(got, want, "seek {b:?}");
            }
        }
    }

    #[test]
    fn churn_matches_btreemap() {
        for seed in [1u64, 7, 42, 1234567] {
            let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut m = Paged::new();
            let mut model = BTreeMap::new();
            let space = 3000;
            for step in 0..40_000u64 {
                let k = key(&mut r, space);
                // Grow for the first half, shrink for the second: blocks split and merge.
                let insert = r.below(100) < if step < 20_000 { 70 } else { 30 };
                if insert {
                    assert_eq!(m.insert(&k, step), model.insert(k, step));
                } else {
                    assert_eq!(m.remove(&k), model.remove(&k));
                }
                if step % 4000 == 0 {
                    same(&m, &model, &mut r, space);
                }
            }
            same(&m, &model, &mut r, space);
            let keys: Vec<String> = model.keys().cloned().collect();
            for k in keys {
                assert_eq!(m.remove(&k), model.remove(&k));
            }
            assert!(m.is_empty());
            m.check();
        }
    }

    #[test]
    fn long_keys_split_blocks_by_bytes() {
        let mut m = Paged::new();
        let key = |i: u64| {
            format!(
                "{:04}{}",
                (i * 7919) % 1000,
                "x".repeat(1000 + (i % 80) as usize)
            )
        };
        for i in 0..1000u64 {
            assert!(m.insert(&key(i), i).is_none());
        }
        m.check();
        assert!(m.blocks().all(|b| b.keys.len() <= BLOCK_MAX_KEY_BYTES));
        assert!(m.blocks().any(|b| b.len() < BLOCK_MAX_KEYS / 2));
        for i in 0..1000u64 {
            assert_eq!(m.get(&key(i)), Some(&i));
        }
        for i in (0..1000u64).filter(|i| i % 3 != 0) {
            assert_eq!(m.remove(&key(i)), Some(i));
        }
        m.check();
        assert!(m.blocks().all(|b| b.keys.len() <= BLOCK_MAX_KEY_BYTES));
        assert_eq!(m.range(Bound::Unbounded).count(), 334);
    }

    #[test]
    fn appends_fill_blocks() {
        let mut m = Paged::new();
        for i in 0..10_000u64 {
            assert!(m.insert(&format!("k{i:08}"), i).is_none());
        }
        m.check();
        assert_eq!(m.m.blocks.len(), 10_000usize.div_ceil(BLOCK_MAX_KEYS));
        assert_eq!(
            m.range(Bound::Excluded("k00000099")).next(),
            Some(("k00000100", &100))
        );
        assert_eq!(m.range(Bound::Included("k00009999")).count(), 1);
        assert_eq!(m.range(Bound::Included("l")).count(), 0);
        assert_eq!(m.range(Bound::Included("")).count(), 10_000);
        // Per key: the key, its offset, the value, and little else.
        let per_key = m.heap_bytes() as f64 / 10_000.0;
        assert!(
            per_key < (9 + 4 + 8) as f64 * 1.2,
            "{per_key} bytes per key"
        );
    }

    #[test]
    fn keys_nearly_in_order_fill_blocks_without_slack() {
        // Concurrent PUTs of keys written in order: each key arrives up to 16 places late.
        let mut m = Paged::new();
        let n = 20_000u64;
        let mut order: Vec<u64> = (0..n).collect();
        let mut r = Rng(7);
        for c in order.chunks_mut(16) {
            for j in (1..c.len()).rev() {
                c.swap(j, r.below(j as u64 + 1) as usize);
            }
        }
        for i in &order {
            assert!(m.insert(&format!("files/{i:010}"), *i).is_none());
        }
        m.check();
        for i in 0..n {
            assert_eq!(m.get(&format!("files/{i:010}")), Some(&i));
        }
        // Blocks stay nearly full (the rightmost split) and hold no growth slack but the last
        // one's: per key the key (16), its end (2) and the value (8), and little else.
        let per_key = m.heap_bytes() as f64 / n as f64;
        assert!(
            per_key < (16 + 2 + 8) as f64 * 1.08,
            "{per_key} bytes per key"
        );
        let mean_fill = n as f64 / m.m.blocks.len() as f64;
        assert!(
            mean_fill > BLOCK_MAX_KEYS as f64 * 0.8,
            "{mean_fill} keys per block"
        );
    }

    fn spilled(m: &Paged) -> usize {
        m.m.blocks.iter().filter(|b| b.data.get().is_none()).count()
    }

    /// A tiny budget: most blocks live in the spill file. Random inserts, removes, gets and
    /// range scans (which cross spilled blocks) agree with a BTreeMap, and resident bytes stay
    /// within the budget after every change.
    #[test]
    fn budget_churn_matches_btreemap() {
        for seed in [3u64, 11, 99] {
            let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let budget = 16 << 10;
            let (mut m, _dir) = Paged::budget(budget);
            let mut model = BTreeMap::new();
            let space = 6000;
            let mut max_spilled = 0;
            for step in 0..30_000u64 {
                let k = key(&mut r, space);
                let insert = r.below(100) < if step < 15_000 { 75 } else { 35 };
                if insert {
                    assert_eq!(m.insert(&k, step), model.insert(k, step));
                } else if r.below(2) == 0 {
                    assert_eq!(m.remove(&k), model.remove(&k));
                } else {
                    assert_eq!(m.get(&k), model.get(&k));
                    m.m.trim(&mut m.p);
                }
                assert!(
                    m.p.resident_bytes() <= budget,
                    "{} resident bytes over a budget of {budget}",
                    m.p.resident_bytes()
                );
                max_spilled = max_spilled.max(spilled(&m));
                if step % 3000 == 0 {
                    same(&m, &model, &mut r, space);
                    m.m.trim(&mut m.p);
                }
            }
            assert!(max_spilled > 20, "only {max_spilled} blocks spilled");
            assert!(m.p.reads.get() > 100 && m.p.writes > 100);
            same(&m, &model, &mut r, space);
            m.m.trim(&mut m.p);
            let keys: Vec<String> = model.keys().cloned().collect();
            for k in keys {
                assert_eq!(m.remove(&k), model.remove(&k));
            }
            assert!(m.is_empty());
            m.check();
            // Every block gone: every spill copy given back.
            assert_eq!(m.p.spill_bytes(), 0);
            assert_eq!(m.p.resident_bytes(), 0);
        }
    }

    /// Keys appended in order (a snapshot loading) under a budget: resident bytes stay within
    /// it throughout, and a scan reads every key back in order from the spill file.
    #[test]
    fn budget_bounds_an_ordered_load() {
        let budget = 64 << 10;
        let (mut m, dir) = Paged::budget(budget);
        let n = 50_000u64;
        for i in 0..n {
            assert!(m.insert(&format!("bucket/key/{i:012}"), i).is_none());
            assert!(m.p.resident_bytes() <= budget);
        }
        m.check();
        let blocks = m.m.blocks.len();
        m.m.trim(&mut m.p);
        assert!(
            spilled(&m) > blocks * 3 / 4,
            "{} of {blocks} spilled",
            spilled(&m)
        );
        let file_len = std::fs::metadata(dir.path().join(SPILL_FILE))
            .unwrap()
            .len();
        assert!(file_len > 0 && file_len <= m.p.end && m.p.spill_bytes() <= m.p.end);
        let mut i = 0u64;
        for (k, v) in m.range(Bound::Unbounded) {
            assert_eq!((k, *v), (format!("bucket/key/{i:012}").as_str(), i));
            i += 1;
        }
        assert_eq!(i, n);
        for i in (0..n).step_by(97) {
            assert_eq!(m.get(&format!("bucket/key/{i:012}")), Some(&i));
        }
        // Readers promoted blocks past the budget; a trim brings it back.
        assert!(m.m.trim(&mut m.p));
        assert!(m.p.resident_bytes() <= budget);
    }

    /// The spill file cannot be written (opened read-only): no block's heap copy is freed,
    /// every key stays, the failures are counted, and the map stays correct over the budget.
    #[test]
    fn spill_write_failure_keeps_blocks_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SPILL_FILE);
        std::fs::write(&path, b"").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut m = Paged {
            m: KeyMap::default(),
            p: Pager::with_file(file, path.clone(), 8 << 10),
        };
        let mut model = BTreeMap::new();
        let mut r = Rng(5);
        for step in 0..5000u64 {
            let k = key(&mut r, 2000);
            assert_eq!(m.insert(&k, step), model.insert(k, step));
        }
        assert!(m.p.write_errors > 0);
        assert_eq!(m.p.writes, 0);
        assert_eq!(spilled(&m), 0);
        assert!(m.p.over());
        same(&m, &model, &mut r, 2000);
        // The write error names the file and the offset.
        let e = m.p.write(&[1, 2, 3]).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains(" at "),
            "{e}"
        );
    }

    /// A spilled block's copy is checked: a flipped byte is found, not decoded into keys.
    #[test]
    fn spilled_block_crc_is_checked() {
        let mut d = Data::<u64>::new();
        d.insert_at(0, b"a", 1, true);
        d.insert_at(1, b"bc", 2, true);
        let mut e = d.encode();
        let back = Data::<u64>::decode(&e).unwrap();
        assert_eq!(
            (back.keys, back.ends, back.vals),
            (d.keys.clone(), d.ends.clone(), d.vals.clone())
        );
        e[9] ^= 1;
        assert!(Data::<u64>::decode(&e).unwrap_err().contains("CRC"));
    }
}
