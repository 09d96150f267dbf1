//! `KeyMap`: the ordered keys of one namespace with a fixed-size value each, kept compact (ADR
//! 17). Keys live in sorted blocks of up to `BLOCK_MAX_KEYS` entries; a block holds its keys'
//! bytes back to back in one buffer, the end offset of each key, and the values in key order.
//! Per key that is the key's bytes, 4 bytes of offset and the value (plus the slack of three
//! vectors that grow by an eighth), instead of one `String` and one B-tree slot per key.

use std::cmp::Ordering;
use std::ops::Bound;

/// Most keys per block: an insert moves at most this many values and their key bytes.
const BLOCK_MAX_KEYS: usize = 128;
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

struct Block<V> {
    /// The keys' bytes, in key order, back to back.
    keys: Vec<u8>,
    /// End offset in `keys` of each key.
    ends: Vec<u16>,
    vals: Vec<V>,
}

impl<V> Block<V> {
    fn new() -> Block<V> {
        Block {
            keys: Vec::new(),
            ends: Vec::new(),
            vals: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.vals.len()
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
    fn search(&self, k: &[u8]) -> Result<usize, usize> {
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
    fn with_room(key_bytes: usize) -> Block<V> {
        let mut b = Block::new();
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
    fn split_off(&mut self, at: usize) -> Block<V> {
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
        Block { keys, ends, vals }
    }

    /// Append all of `other` (whose keys all sort after ours).
    fn append(&mut self, other: Block<V>) {
        let base = self.keys.len() as u16;
        self.keys.extend_from_slice(&other.keys);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        self.vals.extend(other.vals);
    }
}

/// Ordered map from string keys to `V`, compact (see the module comment).
pub(super) struct KeyMap<V> {
    /// Boxed so that a split or merge moves 8 bytes per block, not the block's three vectors.
    #[allow(clippy::vec_box)]
    blocks: Vec<Box<Block<V>>>,
    len: usize,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            blocks: Vec::new(),
            len: 0,
        }
    }
}

impl<V> KeyMap<V> {
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
            .partition_point(|b| b.key(0) <= k)
            .saturating_sub(1)
    }

    pub(super) fn get(&self, k: &str) -> Option<&V> {
        if self.blocks.is_empty() {
            return None;
        }
        let b = &self.blocks[self.block_of(k.as_bytes())];
        b.search(k.as_bytes()).ok().map(|i| &b.vals[i])
    }

    /// Insert or replace; returns the value replaced.
    pub(super) fn insert(&mut self, k: &str, v: V) -> Option<V> {
        let k = k.as_bytes();
        if self.blocks.is_empty() {
            let mut b = Block::new();
            b.insert_at(0, k, v, true);
            self.blocks.push(Box::new(b));
            self.len += 1;
            return None;
        }
        // Keys past the last one (a snapshot loading, keys written in order) go to the end
        // of the last block without a search.
        let last = self.blocks.len() - 1;
        let n_last = self.blocks[last].len();
        let (mut bi, mut i) = if n_last > 0 && self.blocks[last].key(n_last - 1) < k {
            (last, n_last)
        } else {
            let bi = self.block_of(k);
            match self.blocks[bi].search(k) {
                Ok(i) => return Some(std::mem::replace(&mut self.blocks[bi].vals[i], v)),
                Err(i) => (bi, i),
            }
        };
        loop {
            let (n, key_bytes) = (self.blocks[bi].len(), self.blocks[bi].keys.len());
            if n < BLOCK_MAX_KEYS && key_bytes + k.len() <= BLOCK_MAX_KEY_BYTES {
                break;
            }
            let is_last = bi + 1 == self.blocks.len();
            if !is_last {
                // A full block whose successor has room: the new key goes there when it sorts
                // after this block's keys, else this block's last key moves there. Blocks of
                // keys written nearly in order stay full instead of being halved by late keys.
                let next = &self.blocks[bi + 1];
                let fits = |extra: usize| {
                    next.len() < BLOCK_MAX_KEYS && next.keys.len() + extra <= BLOCK_MAX_KEY_BYTES
                };
                if i == n && fits(k.len()) {
                    bi += 1;
                    i = 0;
                    continue;
                }
                let b = &self.blocks[bi];
                let moved_len = b.ends[n - 1] as usize - b.start(n - 1);
                if i < n && fits(moved_len) {
                    let mut moved = [0u8; crate::format::MAX_KEY_BYTES];
                    moved[..moved_len].copy_from_slice(b.key(n - 1));
                    let mv = self.blocks[bi].remove_at(n - 1);
                    let next_last = bi + 2 == self.blocks.len();
                    self.blocks[bi + 1].insert_at(0, &moved[..moved_len], mv, next_last);
                    continue;
                }
            }
            if is_last && i == n {
                // Appending past the last key (loading a snapshot, keys written in order):
                // leave the full block full and start a new one with room for a full block.
                self.blocks[bi].shrink();
                self.blocks.push(Box::new(Block::with_room(k.len())));
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
                let mut right = self.blocks[bi].split_off(at);
                if is_last {
                    right.make_room(k.len());
                }
                self.blocks.insert(bi + 1, Box::new(right));
                if i > at || (at != half && i == at) {
                    bi += 1;
                    i -= at;
                }
            }
        }
        let last = bi + 1 == self.blocks.len();
        self.blocks[bi].insert_at(i, k, v, last);
        self.len += 1;
        None
    }

    /// Remove `k`; returns its value.
    pub(super) fn remove(&mut self, k: &str) -> Option<V> {
        if self.blocks.is_empty() {
            return None;
        }
        let k = k.as_bytes();
        let bi = self.block_of(k);
        let i = self.blocks[bi].search(k).ok()?;
        let v = self.blocks[bi].remove_at(i);
        self.len -= 1;
        let n = self.blocks[bi].len();
        if n == 0 {
            self.blocks.remove(bi);
        } else if n < BLOCK_MIN_KEYS {
            // Merge with the smaller neighbour when both fit one block.
            let left = bi.checked_sub(1).map(|l| (l, self.blocks[l].len()));
            let right = (bi + 1 < self.blocks.len()).then(|| (bi + 1, self.blocks[bi + 1].len()));
            let pair = match (left, right) {
                (Some((l, ln)), Some((_, rn))) if ln <= rn => Some(l),
                (_, Some(_)) => Some(bi),
                (Some((l, _)), None) => Some(l),
                (None, None) => None,
            };
            if let Some(l) = pair {
                let (a, b) = (&self.blocks[l], &self.blocks[l + 1]);
                if a.len() + b.len() <= BLOCK_MAX_KEYS
                    && a.keys.len() + b.keys.len() <= BLOCK_MAX_KEY_BYTES
                {
                    let r = self.blocks.remove(l + 1);
                    self.blocks[l].append(*r);
                }
            }
        }
        Some(v)
    }

    /// Entries from `start` on, in key order.
    pub(super) fn range(&self, start: Bound<&str>) -> Iter<'_, V> {
        let (bi, i) = match start {
            Bound::Unbounded => (0, 0),
            Bound::Included(k) | Bound::Excluded(k) if !self.blocks.is_empty() => {
                let bi = self.block_of(k.as_bytes());
                match self.blocks[bi].search(k.as_bytes()) {
                    Ok(i) if matches!(start, Bound::Excluded(_)) => (bi, i + 1),
                    Ok(i) | Err(i) => (bi, i),
                }
            }
            _ => (0, 0),
        };
        Iter {
            map: self,
            block: bi,
            i,
        }
    }

    /// Bytes this map holds on the heap (capacity, not length), for the ADR's breakdown.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * 8
            + self
                .blocks
                .iter()
                .map(|b| {
                    std::mem::size_of::<Block<V>>()
                        + b.keys.capacity()
                        + b.ends.capacity() * 2
                        + b.vals.capacity() * std::mem::size_of::<V>()
                })
                .sum::<usize>()
    }

    /// Check the invariants (tests).
    #[cfg(test)]
    fn check(&self) {
        let mut n = 0;
        let mut prev: Option<&[u8]> = None;
        for b in &self.blocks {
            assert!(b.len() > 0 && b.len() <= BLOCK_MAX_KEYS);
            assert_eq!(b.ends.len(), b.len());
            assert_eq!(*b.ends.last().unwrap() as usize, b.keys.len());
            for i in 0..b.len() {
                let k = b.key(i);
                assert!(prev.is_none_or(|p| p < k), "keys out of order");
                prev = Some(k);
            }
            n += b.len();
        }
        assert_eq!(n, self.len);
    }
}

/// Iterator over a `KeyMap` in key order.
pub(super) struct Iter<'a, V> {
    map: &'a KeyMap<V>,
    block: usize,
    i: usize,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a str, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let b = self.map.blocks.get(self.block)?;
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

    fn key(r: &mut Rng, space: u64) -> String {
        let a = r.below(space);
        // Keys of different lengths sharing prefixes, like object keys.
        match a % 3 {
            0 => format!("a/{a:06}"),
            1 => format!("a/{:03}/b/{a}", a % 97),
            _ => format!("z{a}"),
        }
    }

    fn same(m: &KeyMap<u64>, model: &BTreeMap<String, u64>, r: &mut Rng, space: u64) {
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
            let mut m = KeyMap::default();
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
        let mut m = KeyMap::default();
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
        assert!(m.blocks.iter().all(|b| b.keys.len() <= BLOCK_MAX_KEY_BYTES));
        assert!(m.blocks.iter().any(|b| b.len() < BLOCK_MAX_KEYS / 2));
        for i in 0..1000u64 {
            assert_eq!(m.get(&key(i)), Some(&i));
        }
        for i in (0..1000u64).filter(|i| i % 3 != 0) {
            assert_eq!(m.remove(&key(i)), Some(i));
        }
        m.check();
        assert!(m.blocks.iter().all(|b| b.keys.len() <= BLOCK_MAX_KEY_BYTES));
        assert_eq!(m.range(Bound::Unbounded).count(), 334);
    }

    #[test]
    fn appends_fill_blocks() {
        let mut m = KeyMap::default();
        for i in 0..10_000u64 {
            assert!(m.insert(&format!("k{i:08}"), i).is_none());
        }
        m.check();
        assert_eq!(m.blocks.len(), 10_000usize.div_ceil(BLOCK_MAX_KEYS));
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
        let mut m = KeyMap::default();
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
        let mean_fill = n as f64 / m.blocks.len() as f64;
        assert!(
            mean_fill > BLOCK_MAX_KEYS as f64 * 0.8,
            "{mean_fill} keys per block"
        );
    }
}
