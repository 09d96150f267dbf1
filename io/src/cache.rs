//! Per-shard object cache: S3-FIFO (small FIFO + main FIFO + ghost FIFO), bounded in bytes.
//!
//! An entry is either a whole small object or one checksum block of a larger one (ranged reads
//! of big objects, e.g. Parquet footers or Milvus index chunks). Keys carry the object version's
//! `seq` (a new version has a new seq, so overwrites never serve stale bytes).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

/// What a cache entry holds: `(seq, chunk)`, where chunk is [`WHOLE`] for a whole object or
/// `extent_index << 32 | block_index` for one checksum block of one extent.
pub type Key = (u64, u64);

/// The chunk value of a whole-object entry.
pub const WHOLE: u64 = u64::MAX;

/// The key of block `block` of extent `extent` of version `seq`.
pub fn block_key(seq: u64, extent: usize, block: u64) -> Key {
    debug_assert!(extent < (1 << 31) && block < (1 << 32));
    (seq, ((extent as u64) << 32) | block)
}

/// Keys are engine-made integers, not attacker-chosen strings: a multiply-xorshift mix is
/// enough and costs a few ns instead of SipHash's ~20 on every lookup.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x100_0000_01B3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(23) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type KeyBuild = BuildHasherDefault<KeyHasher>;

/// The ghost FIFO remembers at least this many evicted keys (more when the cache holds more).
const GHOST_MIN_ENTRIES: usize = 4096;

struct Entry {
    data: Bytes,
    /// Accesses since insertion (saturating at 3), as in S3-FIFO.
    freq: u8,
    in_main: bool,
}

/// S3-FIFO cache of object bytes (whole objects and single checksum blocks).
pub struct Cache {
    capacity_bytes: u64,
    small_capacity_bytes: u64,
    small_bytes: u64,
    main_bytes: u64,
    map: HashMap<Key, Entry, KeyBuild>,
    small: VecDeque<Key>,
    main: VecDeque<Key>,
    ghost: VecDeque<Key>,
    ghost_set: HashSet<Key, KeyBuild>,
    ghost_capacity_entries: usize,
    evictions: u64,
}

impl Cache {
    /// A cache holding at most `capacity_bytes` of object data.
    pub fn new(capacity_bytes: u64) -> Cache {
        Cache {
            capacity_bytes,
            small_capacity_bytes: capacity_bytes / 10,
            small_bytes: 0,
            main_bytes: 0,
            map: HashMap::default(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashSet::default(),
            ghost_capacity_entries: GHOST_MIN_ENTRIES,
            evictions: 0,
        }
    }

    /// Entries evicted to make room, since creation.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Bytes currently cached.
    pub fn used_bytes(&self) -> u64 {
        self.small_bytes + self.main_bytes
    }

    /// Look up an entry.
    pub fn get(&mut self, key: Key) -> Option<Bytes> {
        let e = self.map.get_mut(&key)?;
        e.freq = (e.freq + 1).min(3);
        Some(e.data.clone())
    }

    /// Insert an entry (a whole object's bytes, or one block's).
    pub fn insert(&mut self, key: Key, data: Bytes) {
        let size_bytes = data.len() as u64;
        if size_bytes > self.capacity_bytes || self.map.contains_key(&key) {
            return;
        }
        // Ghost hit: the object was evicted from small recently; it goes straight to main.
        let in_main = self.ghost_set.remove(&key);
        if in_main {
            self.main.push_back(key);
            self.main_bytes += size_bytes;
        } else {
            self.small.push_back(key);
            self.small_bytes += size_bytes;
        }
        self.map.insert(
            key,
            Entry {
                data,
                freq: 0,
                in_main,
            },
        );
        self.evict();
        assert!(self.used_bytes() <= self.capacity_bytes);
    }

    /// Drop a version's whole-object entry (deleted or overwritten). Its block entries, if any,
    /// can never be hit again (no later version shares its seq) and age out of the FIFOs.
    pub fn remove(&mut self, seq: u64) {
        if let Some(e) = self.map.remove(&(seq, WHOLE)) {
            let n = e.data.len() as u64;
            if e.in_main {
                self.main_bytes -= n;
            } else {
                self.small_bytes -= n;
            }
        }
    }

    fn evict(&mut self) {
        while self.used_bytes() > self.capacity_bytes {
            if self.small_bytes > self.small_capacity_bytes || self.main.is_empty() {
                self.evict_small();
            } else {
                self.evict_main();
            }
        }
    }

    fn evict_small(&mut self) {
        while let Some(key) = self.small.pop_front() {
            let Some(e) = self.map.get_mut(&key) else {
                continue;
            };
            if e.in_main {
                continue; // stale queue slot
            }
            let n = e.data.len() as u64;
            self.small_bytes -= n;
            if e.freq > 0 {
                e.in_main = true;
                e.freq = 0;
                self.main_bytes += n;
                self.main.push_back(key);
            } else {
                self.map.remove(&key);
                self.evictions += 1;
                self.ghost.push_back(key);
                self.ghost_set.insert(key);
                // S3-FIFO sizes the ghost like the cache itself (in entries), so a block of a
                // big working set read uniformly is still remembered when it comes back.
                let ghost_cap = self.ghost_capacity_entries.max(self.map.len());
                while self.ghost.len() > ghost_cap {
                    if let Some(g) = self.ghost.pop_front() {
                        self.ghost_set.remove(&g);
                    }
                }
            }
            return;
        }
        // small is empty: fall back to main.
        if !self.main.is_empty() {
            self.evict_main();
        }
    }

    fn evict_main(&mut self) {
        while let Some(key) = self.main.pop_front() {
            let Some(e) = self.map.get_mut(&key) else {
                continue;
            };
            if !e.in_main {
                continue;
            }
            if e.freq > 0 {
                e.freq -= 1;
                self.main.push_back(key);
                continue;
            }
            let n = e.data.len() as u64;
            self.main_bytes -= n;
            self.map.remove(&key);
            self.evictions += 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_scan_resistant() {
        let mut c = Cache::new(100 * 10);
        // A hot set of 5 objects, accessed repeatedly.
        for s in 0..5u64 {
            c.insert((s, WHOLE), Bytes::from(vec![0u8; 100]));
            c.get((s, WHOLE));
        }
        // A scan of 100 one-hit objects.
        for s in 100..200u64 {
            c.insert(block_key(s, 0, 7), Bytes::from(vec![0u8; 100]));
            assert!(c.used_bytes() <= 1000);
            for h in 0..5u64 {
                c.get((h, WHOLE));
            }
        }
        for h in 0..5u64 {
            assert!(
                c.get((h, WHOLE)).is_some(),
                "hot object {h} evicted by a scan"
            );
        }
        c.remove(0);
        assert!(c.get((0, WHOLE)).is_none());
    }

    #[test]
    fn uniform_working_set_that_fits_gets_warm() {
        // 8000 blocks read uniformly at random, room for 10000: the small FIFO holds only 1000,
        // so most blocks reach main through a hit in small or the ghost on a later access.
        let mut c = Cache::new(10_000 * 100);
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut hits_late = 0;
        for i in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = block_key(1, 0, x % 8000);
            let hit = c.get(k).is_some();
            if !hit {
                c.insert(k, Bytes::from(vec![0u8; 100]));
            }
            if i >= 190_000 && hit {
                hits_late += 1;
            }
            assert!(c.used_bytes() <= 1_000_000);
        }
        assert!(
            hits_late > 9_500,
            "hit rate after warm-up: {hits_late}/10000"
        );
    }

    #[test]
    fn block_keys_are_distinct_per_extent_and_block() {
        let mut c = Cache::new(1 << 20);
        c.insert(block_key(9, 0, 1), Bytes::from_static(b"e0b1"));
        c.insert(block_key(9, 1, 0), Bytes::from_static(b"e1b0"));
        c.insert((9, WHOLE), Bytes::from_static(b"whole"));
        assert_eq!(c.get(block_key(9, 0, 1)).as_deref(), Some(&b"e0b1"[..]));
        assert_eq!(c.get(block_key(9, 1, 0)).as_deref(), Some(&b"e1b0"[..]));
        assert!(c.get(block_key(9, 0, 0)).is_none());
        assert!(c.get(block_key(10, 0, 1)).is_none());
        // removing the version drops its whole entry; block entries are never hit by a newer seq
        c.remove(9);
        assert!(c.get((9, WHOLE)).is_none());
        assert_eq!(c.used_bytes(), 8);
    }
}
